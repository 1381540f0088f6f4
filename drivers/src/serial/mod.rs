//! Serial line devices (PIR/occupancy sensors, card/QR/PIN readers on RS-232/RS-485): installer-defined profiles, pure streaming decoders, one owner task per port, and simulators.
//!
//! # Layers
//!
//! * [`pattern`]: the pattern language of ASCII rules (`OCC={flag}`, `QR:{text}`,
//!   `{digits:10}`). Pure.
//! * [`profile`]: a profile says how frames are cut and what they mean. [`ProfileSpec`] is the
//!   serde form an installer writes; [`Profile::compile`] validates it. Four are built in.
//! * [`codec`]: the streaming [`Decoder`]: any byte chunks in, [`Decoded`] events and counted
//!   bad frames out. Pure (no I/O, no clock), bounded memory, fuzzed.
//! * `owner`: the task that owns one port (see [`spawn_serial_device`]).
//! * [`transport`]: [`SerialTransport`] (inject any `AsyncRead`) and [`TtyTransport`]
//!   (tokio-serial).
//! * [`sim`]: a serial PIR sensor and a card/QR reader that write frames to a pty, with fault
//!   injection, and [`sim::PtyPair`] (a socat pty pair). Written without the codec.
//!
//! # The device
//!
//! [`spawn_serial_device`] starts the owner task of one port and returns the usual
//! [`DeviceHandle`]. Its points are the profile's occupancy points (read-only booleans):
//!
//! * an occupancy frame sends `PointUpdate { value: Some(Value::Bool(_)) }` when the value
//!   changes (the first value always counts);
//! * a credential frame sends a [`CredentialRead`] on the second channel, every time (it is an
//!   event, not a state);
//! * [`DeviceHandle::read`] returns the last value received since the device was last online
//!   ([`DriverError::Unsupported`](crate::device::DriverError::Unsupported) before the first
//!   one); [`DeviceHandle::write`] and `relinquish` answer
//!   [`DriverError::NotWritable`](crate::device::DriverError::NotWritable): these devices are inputs.
//!
//! Health: [`LinkState::Online`](crate::device::LinkState::Online) once the port is open;
//! [`LinkState::Offline`](crate::device::LinkState::Offline) with the reason
//! in `last_error` when the port cannot be opened, disappears (a USB adapter unplugged: the read
//! fails or ends) or, with `silence_timeout` set, when no well-formed frame (event, heartbeat or
//! unrecognised frame) arrived for that long. Going offline publishes `None` for every point.
//! A lost port is reopened after a backoff (`backoff_min` doubling to `backoff_max`, reset by
//! the first good frame); a silent device comes back online with its next frame. Counters:
//! `responses` = well-formed frames, `bad_frames` = garbage runs, truncated, over-long,
//! bad-checksum and unrecognised frames, `timeouts` = silence timeouts, `transport_errors` =
//! failed opens and lost ports.
//!
//! # Site file (suggested format for the gateway)
//!
//! A device names a profile: one of the site's own `[serial_profiles.NAME]` tables, or a
//! built-in one. [`SerialDeviceSpec`] and [`ProfileSpec`] deserialize exactly these tables.
//!
//! ```toml
//! [[serial_devices]]
//! name = "pir-r301"                                    # device name in PointUpdates
//! port = "/dev/serial/by-id/usb-FTDI_FT232R_A10K-if00-port0"
//! baud = 9600                                          # default 9600
//! parity = "none"                                      # none | even | odd (default none)
//! data_bits = 8                                        # 7 | 8 (default 8)
//! stop_bits = 1                                        # 1 | 2 (default 1)
//! profile = "ascii-occupancy"                          # built-in or [serial_profiles.*]
//! silence_timeout_ms = 90000    # optional: offline when no frame for this long (use with heartbeats)
//! frame_gap_ms = 200            # optional: a partial frame older than this is truncated (default 200)
//! backoff_min_ms = 500          # optional: first reopen delay (default 500)
//! backoff_max_ms = 10000        # optional: longest reopen delay (default 10000)
//!
//! [[serial_devices]]
//! name = "door-r301"
//! port = "/dev/ttyS1"
//! profile = "door-125khz"
//!
//! # Text frames between STX and ETX: a 10-digit card number.
//! [serial_profiles.door-125khz]
//! format = "ascii"
//! start = "\u0002"              # optional; absent = frames are lines cut by `end`
//! end = "\u0003"                # any of these characters ends a frame (default "\r\n")
//! max_len = 64                  # longest frame in bytes (default 256, at most 4096)
//! trim = true                   # strip spaces/tabs/CR/LF around the frame (default true)
//! rules = [
//!   { event = "credential", match = "{digits:10}", reader = "door", kind = "card" },
//! ]
//!
//! # Lines from a PIR that says MOTION / CLEAR, with a heartbeat.
//! [serial_profiles.pir-motion]
//! format = "ascii"
//! end = "\n"
//! rules = [
//!   { event = "occupancy", match = "MOTION", point = "occupancy", value = true },
//!   { event = "occupancy", match = "CLEAR",  point = "occupancy", value = false },
//!   { event = "occupancy", match = "OCC={flag}", point = "occupancy" },  # value from the frame
//!   { event = "heartbeat", match = "ALIVE {digits}" },
//! ]
//!
//! # Binary frames: START LEN TYPE PAYLOAD CHECKSUM (checksum over LEN, TYPE, PAYLOAD).
//! [serial_profiles.desk-unit]
//! format = "binary"
//! start = 0xAA                  # default 0xAA
//! checksum = "xor"              # xor | sum8 (default xor)
//! max_payload = 32              # larger LEN = over-long frame (default 32)
//! messages = [
//!   { event = "occupancy", type = 0x10, point = "seat", value = true },   # empty payload
//!   { event = "occupancy", type = 0x11, point = "seat", value = false },
//!   { event = "occupancy", type = 0x12, point = "seat" },                 # payload 0x00 / 0x01
//!   { event = "credential", type = 0x20, reader = "desk", kind = "card", encoding = "decimal" },
//!   { event = "credential", type = 0x21, reader = "desk", kind = "qr", encoding = "ascii" },
//!   { event = "heartbeat", type = 0x7F },
//! ]
//! ```
//!
//! ASCII `rules` are tried in order, the first match wins; the pattern language is in
//! [`pattern`]. `event` is `occupancy` (with `point`, and `value` or a `{flag}` capture),
//! `credential` (with `reader`, `kind` = `card` | `qr` | `pin`, and a capture) or `heartbeat`.
//! Binary credentials are rendered per `encoding`: `hex` (default, `046A1FC2`), `decimal`
//! (big-endian unsigned, at most 16 bytes) or `ascii` (printable text, trimmed). A device's
//! points are `NAME/POINT` (e.g. `pir-r301/occupancy`) for the room bindings; its credentials
//! arrive as `CredentialRead { device: NAME, reader, .. }`.
//!
//! Built-in profiles ([`ProfileSpec::builtin`]):
//!
//! | name              | frames                                                                 |
//! |-------------------|------------------------------------------------------------------------|
//! | `ascii-occupancy` | lines `OCC=1` / `OCC=0` (any `{flag}`) for point `occupancy`; `HB` heartbeat |
//! | `ascii-card-stx`  | `STX` 4-20 digits `ETX`: card at reader `reader`                        |
//! | `ascii-qr`        | lines `QR:<text>` (QR) and `PIN:<4-12 digits>` (PIN) at reader `reader` |
//! | `binary-aa`       | `AA LEN TYPE PAYLOAD XOR`: `01` occupancy 0/1 of `occupancy`, `02` card (hex), `03` QR (ASCII) at `reader`, `7F` heartbeat |

pub mod codec;
mod owner;
pub mod pattern;
pub mod profile;
pub mod sim;
pub mod transport;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;
use tokio::sync::{mpsc, watch};

pub use codec::{BadFrame, Decoded, Decoder, DecoderStats, FrameEvent};
pub use pattern::{Pattern, PatternError};
pub use profile::{Profile, ProfileError, ProfileSpec};
pub use transport::{DataBits, Parity, SerialPortConfig, SerialTransport, StopBits, TtyTransport};

use crate::device::{CredentialRead, DeviceHandle, HealthSender, PointInfo, PointUpdate};
use crate::point::Access;

/// Settings of one serial line device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialDeviceConfig {
    /// Device name, copied into every [`PointUpdate`] and [`CredentialRead`].
    pub device: String,
    /// The port and its line settings.
    pub port: SerialPortConfig,
    /// How frames are cut and what they mean.
    pub profile: Profile,
    /// Offline when no well-formed frame arrived for this long (`None`: online while the port is
    /// open). Set it for devices that send heartbeats.
    pub silence_timeout: Option<Duration>,
    /// A partial frame is reported as truncated after this long without a byte.
    pub frame_gap: Duration,
    /// First reopen delay (at least 1 ms).
    pub backoff_min: Duration,
    /// Longest reopen delay.
    pub backoff_max: Duration,
    /// Handle requests that may wait for the owner task (at least 1).
    pub queue_depth: usize,
}

impl SerialDeviceConfig {
    /// Defaults: no silence timeout, frame gap 200 ms, backoff 500 ms to 10 s, queue of 8.
    #[must_use]
    pub fn new(device: impl Into<String>, port: SerialPortConfig, profile: Profile) -> Self {
        SerialDeviceConfig {
            device: device.into(),
            port,
            profile,
            silence_timeout: None,
            frame_gap: Duration::from_millis(200),
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(10),
            queue_depth: 8,
        }
    }

    fn sanitized(mut self) -> Self {
        self.queue_depth = self.queue_depth.max(1);
        self.frame_gap = self.frame_gap.max(Duration::from_millis(1));
        self.backoff_min = self.backoff_min.max(Duration::from_millis(1));
        self.backoff_max = self.backoff_max.max(self.backoff_min);
        self
    }
}

/// One `[[serial_devices]]` entry of the site file (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SerialDeviceSpec {
    pub name: String,
    pub port: String,
    #[serde(default = "default_baud")]
    pub baud: u32,
    #[serde(default)]
    pub parity: Parity,
    #[serde(default = "default_data_bits")]
    pub data_bits: u8,
    #[serde(default = "default_stop_bits")]
    pub stop_bits: u8,
    pub profile: String,
    #[serde(default)]
    pub silence_timeout_ms: Option<u64>,
    #[serde(default = "default_frame_gap_ms")]
    pub frame_gap_ms: u64,
    #[serde(default = "default_backoff_min_ms")]
    pub backoff_min_ms: u64,
    #[serde(default = "default_backoff_max_ms")]
    pub backoff_max_ms: u64,
}

fn default_baud() -> u32 {
    9600
}
fn default_data_bits() -> u8 {
    8
}
fn default_stop_bits() -> u8 {
    1
}
fn default_frame_gap_ms() -> u64 {
    200
}
fn default_backoff_min_ms() -> u64 {
    500
}
fn default_backoff_max_ms() -> u64 {
    10_000
}

/// Why a `[[serial_devices]]` entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SerialConfigError {
    #[error("device `{device}`: profile `{profile}`: {error}")]
    Profile {
        device: String,
        profile: String,
        error: ProfileError,
    },
    #[error("device `{device}`: `data_bits` must be 7 or 8 (got {got})")]
    DataBits { device: String, got: u8 },
    #[error("device `{device}`: `stop_bits` must be 1 or 2 (got {got})")]
    StopBits { device: String, got: u8 },
    #[error("device `{device}`: `baud` must not be 0")]
    Baud { device: String },
    #[error("device `{device}`: the profile reports no occupancy point and no reader")]
    NothingToReport { device: String },
}

impl SerialDeviceSpec {
    /// Resolves the profile (the site's `serial_profiles` first, then the built-in ones),
    /// compiles it and checks the line settings.
    pub fn to_config(
        &self,
        site_profiles: &BTreeMap<String, ProfileSpec>,
    ) -> Result<SerialDeviceConfig, SerialConfigError> {
        let device = || self.name.clone();
        let profile = ProfileSpec::resolve(&self.profile, site_profiles)
            .and_then(|spec| Profile::compile(&spec))
            .map_err(|error| SerialConfigError::Profile {
                device: device(),
                profile: self.profile.clone(),
                error,
            })?;
        if profile.points().is_empty() && profile.readers().is_empty() {
            return Err(SerialConfigError::NothingToReport { device: device() });
        }
        if self.baud == 0 {
            return Err(SerialConfigError::Baud { device: device() });
        }
        let data_bits = match self.data_bits {
            7 => DataBits::Seven,
            8 => DataBits::Eight,
            got => {
                return Err(SerialConfigError::DataBits {
                    device: device(),
                    got,
                });
            }
        };
        let stop_bits = match self.stop_bits {
            1 => StopBits::One,
            2 => StopBits::Two,
            got => {
                return Err(SerialConfigError::StopBits {
                    device: device(),
                    got,
                });
            }
        };
        let port = SerialPortConfig {
            path: self.port.clone(),
            baud: self.baud,
            parity: self.parity,
            data_bits,
            stop_bits,
        };
        Ok(SerialDeviceConfig {
            silence_timeout: self.silence_timeout_ms.map(Duration::from_millis),
            frame_gap: Duration::from_millis(self.frame_gap_ms),
            backoff_min: Duration::from_millis(self.backoff_min_ms),
            backoff_max: Duration::from_millis(self.backoff_max_ms),
            ..SerialDeviceConfig::new(self.name.clone(), port, profile)
        })
    }
}

/// Starts the owner task of one serial device on its tty (needs a Tokio runtime). Occupancy
/// goes to `updates`, credentials to `credentials`; the task waits when `updates` or
/// `credentials` is full.
pub fn spawn_serial_device(
    cfg: SerialDeviceConfig,
    updates: mpsc::Sender<PointUpdate>,
    credentials: mpsc::Sender<CredentialRead>,
) -> DeviceHandle {
    let transport = TtyTransport::new(cfg.port.clone());
    spawn_serial_device_on(cfg, transport, updates, credentials)
}

/// Like [`spawn_serial_device`], over any transport (`cfg.port` is then only descriptive).
pub fn spawn_serial_device_on<T: SerialTransport>(
    cfg: SerialDeviceConfig,
    transport: T,
    updates: mpsc::Sender<PointUpdate>,
    credentials: mpsc::Sender<CredentialRead>,
) -> DeviceHandle {
    let cfg = cfg.sanitized();
    let points = cfg
        .profile
        .points()
        .iter()
        .enumerate()
        .map(|(index, name)| PointInfo {
            name: name.clone(),
            index,
            access: Access::Read,
        })
        .collect();
    let (requests_tx, requests_rx) = mpsc::channel(cfg.queue_depth);
    let (health_tx, health_rx) = HealthSender::channel(&cfg.device);
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let device = cfg.device.clone();
    let mut owner = owner::Owner::new(cfg, transport, updates, credentials, health_tx, requests_rx);
    tokio::spawn(async move {
        tokio::select! {
            biased;
            // Err means every handle is gone: stop as well.
            _ = stop_rx.wait_for(|stop| *stop) => {}
            () = owner.run() => {}
        }
        owner.stopped();
    });
    DeviceHandle::new(device, points, requests_tx, health_rx, stop_tx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct SiteExample {
        serial_devices: Vec<SerialDeviceSpec>,
        serial_profiles: BTreeMap<String, ProfileSpec>,
    }

    /// The TOML example of the module docs, taken from this file so the docs stay true.
    fn doc_example() -> String {
        let source = include_str!("mod.rs");
        source
            .lines()
            .filter_map(|l| l.strip_prefix("//!"))
            .map(|l| l.strip_prefix(' ').unwrap_or(l))
            .skip_while(|l| *l != "```toml")
            .skip(1)
            .take_while(|l| *l != "```")
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn the_documented_site_file_parses_and_resolves() {
        let text = doc_example();
        assert!(text.contains("[[serial_devices]]"), "{text}");
        let site: SiteExample = toml::from_str(&text).unwrap();
        for profile in site.serial_profiles.values() {
            Profile::compile(profile).unwrap();
        }
        let pir = site.serial_devices[0]
            .to_config(&site.serial_profiles)
            .unwrap();
        assert_eq!(pir.device, "pir-r301");
        assert_eq!(pir.profile.points(), ["occupancy"]);
        assert_eq!(pir.silence_timeout, Some(Duration::from_secs(90)));
        assert_eq!(
            pir.port.to_string(),
            "/dev/serial/by-id/usb-FTDI_FT232R_A10K-if00-port0 (9600 8N1)"
        );
        let door = site.serial_devices[1]
            .to_config(&site.serial_profiles)
            .unwrap();
        assert_eq!(door.profile.readers(), ["door"]);
        assert_eq!(door.frame_gap, Duration::from_millis(200));
        let desk = Profile::compile(&site.serial_profiles["desk-unit"]).unwrap();
        assert_eq!(desk.points(), ["seat"]);
        assert_eq!(desk.readers(), ["desk"]);
    }

    #[test]
    fn bad_device_entries_are_refused() {
        let spec = |extra: &str| -> SerialDeviceSpec {
            toml::from_str(&format!(
                "name = \"d\"\nport = \"/dev/x\"\nprofile = \"ascii-qr\"\n{extra}"
            ))
            .unwrap()
        };
        let none = BTreeMap::new();
        assert!(spec("").to_config(&none).is_ok());
        assert_eq!(
            spec("data_bits = 9").to_config(&none),
            Err(SerialConfigError::DataBits {
                device: "d".into(),
                got: 9
            })
        );
        assert_eq!(
            spec("stop_bits = 3").to_config(&none),
            Err(SerialConfigError::StopBits {
                device: "d".into(),
                got: 3
            })
        );
        assert_eq!(
            spec("baud = 0").to_config(&none),
            Err(SerialConfigError::Baud { device: "d".into() })
        );
        let unknown: Result<SerialDeviceSpec, _> =
            toml::from_str("name = \"d\"\nport = \"/dev/x\"\nprofile = \"p\"\nbaudrate = 1");
        assert!(unknown.is_err());
        let mut other = spec("");
        other.profile = "nope".into();
        assert!(matches!(
            other.to_config(&none),
            Err(SerialConfigError::Profile { .. })
        ));
    }
}
