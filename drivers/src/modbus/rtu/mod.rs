//! Modbus RTU buses: one owner task per RS-485 line (a serial port, or a serial server reached over TCP) that serializes every unit on it, with a [`DeviceHandle`] per unit.
//!
//! [`spawn_rtu_bus`] starts the owner task of one bus and returns an [`RtuBus`]: one
//! [`DeviceHandle`] per unit (the same face as a Modbus TCP or BACnet device) and bus statistics.
//! The owner task (see `owner.rs`) is the only code that touches the line. It
//!
//! * opens the port with tokio-serial (path, baud, parity, data bits, stop bits) or connects to
//!   an RTU-over-TCP serial server, and reopens it with backoff when it fails;
//! * sends one frame at a time and keeps the inter-frame silence of 3.5 character times (1.75 ms
//!   above 19200 baud; Modbus over serial line V1.02, §2.5.1.1) between frames, modelling the
//!   wire so that a pty or a serial server that answers "too fast" is paced as the line would be;
//! * polls each unit's points in block reads (FC01-FC04) at the unit's poll interval, or a
//!   point's own [`ModbusPoint::poll_interval`](crate::point::ModbusPoint::poll_interval) (blocks
//!   only merge points of equal interval), at a fixed rate, and publishes changes only;
//! * checks every unit's handle queue before every request (the priority lane): a scene's write
//!   waits behind at most the one request in flight, whichever unit it was for;
//! * bounds each request by the unit's `timeout` (plus the time the frames need on the wire) and
//!   retries it `retries` times. A unit that still does not answer is quarantined: its points
//!   become unavailable (`None`), its handle fails fast with
//!   [`DriverError::Offline`](crate::device::DriverError::Offline), and it is
//!   probed with a single request after a backoff that doubles up to `backoff_max`, while the
//!   other units keep their poll rate;
//! * keeps device exceptions (the unit answered; the link is fine) apart from timeouts and
//!   transport errors, and counts garbage, bad CRCs and stray frames as
//!   [`Counters::bad_frames`](crate::device::Counters::bad_frames): they are skipped, never fatal;
//! * runs unit scans for the installer console ([`RtuBus::scanner`]), one probe between two
//!   polls, so that a scan shares the line instead of stopping it.
//!
//! # Site configuration (suggested TOML)
//!
//! ```toml
//! [[modbus_rtu_bus]]
//! name = "floor3-rs485-a"
//! port = "/dev/ttyUSB0"        # or: tcp = "10.0.3.20:4001" for an RTU-over-TCP serial server
//! baud = 19200                 # line settings; for `tcp`, those of the server's serial side
//! parity = "even"              # "none" | "even" | "odd"
//! data_bits = 8
//! stop_bits = 1
//! backoff_min_ms = 1000        # quarantine probe delay, doubling ...
//! backoff_max_ms = 30000       # ... up to this
//! max_gap = 8                  # unused registers allowed inside one block read
//!
//! [[modbus_rtu_bus.unit]]
//! device = "hvac-r301"         # the device name points are bound by
//! unit = 12                    # Modbus unit id 1..=247
//! poll_interval_ms = 1000
//! timeout_ms = 200             # device response time, on top of the frames' wire time
//! retries = 1
//! # points as for Modbus TCP devices, e.g.
//! # { id = "mode", table = "holding", address = 0, type = "u16",
//! #   labels = { 0 = "off", 1 = "heat", 2 = "cool" } }
//! # { id = "energy", table = "input", address = 10, type = "u64", layout = "CDAB",
//! #   unit = "Wh", poll_interval_ms = 60000 }
//! ```

mod frame;
mod owner;
mod timing;

pub use frame::{
    MAX_FRAME, RequestError, RtuRequest, RtuResponse, Scan, crc_ok, crc16, push_crc, scan_response,
};
pub use timing::{Parity, SerialLine};

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::device::{Counters, DeviceHandle, HealthSender, PointInfo, PointUpdate};
use crate::modbus::scan::RtuScanner;
use crate::point::{ModbusPoint, PointError, validate_points};

/// How the bus is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtuLink {
    /// A local serial port (an RS-485 adapter): path and line settings.
    Serial {
        /// e.g. `/dev/ttyUSB0`, `/dev/ttyAMA0`, or a pty in tests.
        path: String,
        /// Baud, parity, data bits, stop bits.
        line: SerialLine,
    },
    /// RTU frames over a TCP connection to a serial server ("RTU over TCP", no MBAP header).
    Tcp {
        /// The serial server's address.
        addr: SocketAddr,
        /// The line settings of the server's serial side, to keep the inter-frame silence;
        /// `None` when the server does its own pacing.
        line: Option<SerialLine>,
    },
}

impl RtuLink {
    /// The line to pace frames for.
    #[must_use]
    pub fn line(&self) -> Option<SerialLine> {
        match self {
            RtuLink::Serial { line, .. } => Some(*line),
            RtuLink::Tcp { line, .. } => *line,
        }
    }
}

/// Settings of one RS-485 bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtuBusConfig {
    /// Bus name for logs and statistics.
    pub name: String,
    /// Serial port or serial server.
    pub link: RtuLink,
    /// First quarantine probe delay of a unit, and first reopen delay of the port (≥ 1 ms).
    pub backoff_min: Duration,
    /// Longest probe and reopen delay.
    pub backoff_max: Duration,
    /// Handle requests that may wait per unit (≥ 1); more fail with `QueueFull`.
    pub queue_depth: usize,
    /// Unused addresses allowed inside one block read.
    pub max_gap: u16,
    /// Longest wait to open the port or connect to the serial server.
    pub open_timeout: Duration,
}

impl RtuBusConfig {
    /// Defaults: backoff 1 s to 30 s, queue of 32 per unit, gap of 8, open timeout 2 s.
    #[must_use]
    pub fn new(name: impl Into<String>, link: RtuLink) -> Self {
        RtuBusConfig {
            name: name.into(),
            link,
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
            queue_depth: 32,
            max_gap: 8,
            open_timeout: Duration::from_secs(2),
        }
    }

    /// A local serial port.
    #[must_use]
    pub fn serial(name: impl Into<String>, path: impl Into<String>, line: SerialLine) -> Self {
        RtuBusConfig::new(
            name,
            RtuLink::Serial {
                path: path.into(),
                line,
            },
        )
    }

    /// A serial server over TCP.
    #[must_use]
    pub fn tcp(name: impl Into<String>, addr: SocketAddr, line: Option<SerialLine>) -> Self {
        RtuBusConfig::new(name, RtuLink::Tcp { addr, line })
    }
}

/// One unit (slave) on a bus.
#[derive(Debug, Clone, PartialEq)]
pub struct RtuUnitConfig {
    /// Device name, copied into every [`PointUpdate`].
    pub device: String,
    /// Modbus unit id, 1 to 247 (0 is broadcast, 248-255 are reserved; §2.2).
    pub unit: u8,
    /// The unit's points.
    pub points: Vec<ModbusPoint>,
    /// Default poll interval of the unit's points.
    pub poll_interval: Duration,
    /// Longest wait for the unit's answer once the frames have had their time on the wire.
    pub timeout: Duration,
    /// How many times a request that got no answer is repeated before the unit is quarantined.
    pub retries: u8,
}

impl RtuUnitConfig {
    /// Defaults: poll every 1 s, timeout 200 ms, 1 retry.
    #[must_use]
    pub fn new(device: impl Into<String>, unit: u8, points: Vec<ModbusPoint>) -> Self {
        RtuUnitConfig {
            device: device.into(),
            unit,
            points,
            poll_interval: Duration::from_secs(1),
            timeout: Duration::from_millis(200),
            retries: 1,
        }
    }
}

/// Why a bus configuration was refused.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum RtuConfigError {
    /// No units.
    #[error("bus `{bus}` has no units")]
    NoUnits {
        /// Bus name.
        bus: String,
    },
    /// A unit id outside 1..=247.
    #[error(
        "bus `{bus}`, device `{device}`: unit id {unit} is not usable; RTU unit ids run from 1 to 247"
    )]
    BadUnitId {
        /// Bus name.
        bus: String,
        /// Device name.
        device: String,
        /// The id.
        unit: u8,
    },
    /// Two devices with one unit id.
    #[error("bus `{bus}`: unit id {unit} is used by both `{first}` and `{second}`")]
    DuplicateUnitId {
        /// Bus name.
        bus: String,
        /// The id.
        unit: u8,
        /// First device.
        first: String,
        /// Second device.
        second: String,
    },
    /// Two units with one device name.
    #[error("bus `{bus}`: device name `{device}` is used twice")]
    DuplicateDevice {
        /// Bus name.
        bus: String,
        /// The name.
        device: String,
    },
    /// Line settings no UART supports.
    #[error(
        "bus `{bus}`: {baud} baud with {data_bits} data bits and {stop_bits} stop bits is not a usable line; use 1200-1000000 baud, 7 or 8 data bits, 1 or 2 stop bits"
    )]
    BadLine {
        /// Bus name.
        bus: String,
        /// Baud.
        baud: u32,
        /// Data bits.
        data_bits: u8,
        /// Stop bits.
        stop_bits: u8,
    },
    /// A zero timeout or poll interval.
    #[error("bus `{bus}`, device `{device}`: timeout and poll interval must be above zero")]
    BadTiming {
        /// Bus name.
        bus: String,
        /// Device name.
        device: String,
    },
    /// A point that no Modbus device can serve.
    #[error("bus `{bus}`, device `{device}`: {error}")]
    Point {
        /// Bus name.
        bus: String,
        /// Device name.
        device: String,
        /// What is wrong.
        error: PointError,
    },
}

/// Where a unit stands on its bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnitState {
    /// Not answered yet since the bus opened.
    Connecting,
    /// Answering.
    Online,
    /// Did not answer; probed once per backoff while the others are polled.
    Quarantined,
    /// Its handles were shut down or dropped.
    Stopped,
}

/// One unit in [`RtuBusStats`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtuUnitStats {
    /// Device name.
    pub device: String,
    /// Unit id.
    pub unit: u8,
    /// State.
    pub state: UnitState,
    /// Block reads answered (exceptions included).
    pub polls: u64,
    /// The unit's own counters (as in its [`DeviceHealth`](crate::device::DeviceHealth)).
    pub counters: Counters,
}

/// Bus statistics: frames, errors and per-unit state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtuBusStats {
    /// Bus name.
    pub bus: String,
    /// Whether the port is open.
    pub open: bool,
    /// Time since the owner task started, as of the last change.
    pub elapsed: Duration,
    /// Frames sent.
    pub frames_sent: u64,
    /// Valid frames received (answers and exceptions).
    pub frames_received: u64,
    /// Garbage, bad CRCs, stray frames.
    pub bad_frames: u64,
    /// Requests without an answer in time.
    pub timeouts: u64,
    /// Exception answers.
    pub exceptions: u64,
    /// Port failures (open, read, write).
    pub transport_errors: u64,
    /// The most recent port failure, kept after the port reopens, for diagnosis.
    pub last_error: Option<String>,
    /// Per unit, in configuration order.
    pub units: Vec<RtuUnitStats>,
}

impl RtuBusStats {
    /// Valid frames (sent and received) per second since the bus started.
    #[must_use]
    pub fn frames_per_second(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            (self.frames_sent + self.frames_received) as f64 / secs
        } else {
            0.0
        }
    }

    /// Valid frames per second between an earlier snapshot and this one.
    #[must_use]
    pub fn frames_per_second_since(&self, earlier: &RtuBusStats) -> f64 {
        let secs = self.elapsed.saturating_sub(earlier.elapsed).as_secs_f64();
        let frames = (self.frames_sent + self.frames_received)
            .saturating_sub(earlier.frames_sent + earlier.frames_received);
        if secs > 0.0 {
            frames as f64 / secs
        } else {
            0.0
        }
    }
}

/// A running bus: one handle per unit, statistics, and a stop switch. Dropping it leaves the bus
/// running for as long as any unit handle lives.
#[derive(Debug)]
pub struct RtuBus {
    handles: Vec<DeviceHandle>,
    stats: watch::Receiver<RtuBusStats>,
    scanner: RtuScanner,
    stop: watch::Sender<bool>,
}

impl RtuBus {
    /// One handle per unit, in configuration order.
    #[must_use]
    pub fn handles(&self) -> &[DeviceHandle] {
        &self.handles
    }

    /// The handle of a device by name.
    #[must_use]
    pub fn handle(&self, device: &str) -> Option<&DeviceHandle> {
        self.handles.iter().find(|h| h.device() == device)
    }

    /// The handles, for the gateway to keep (the bus keeps running while any lives).
    #[must_use]
    pub fn into_handles(self) -> Vec<DeviceHandle> {
        self.handles
    }

    /// A snapshot of the statistics.
    #[must_use]
    pub fn stats(&self) -> RtuBusStats {
        self.stats.borrow().clone()
    }

    /// The bus's scan lane: which unit ids answer on the line (see
    /// [`scan`](crate::modbus::scan)), probed by the owner task between its polls.
    #[must_use]
    pub fn scanner(&self) -> RtuScanner {
        self.scanner.clone()
    }

    /// A receiver of the statistics (it wakes on unit state changes; counters change silently).
    #[must_use]
    pub fn watch_stats(&self) -> watch::Receiver<RtuBusStats> {
        self.stats.clone()
    }

    /// Stops the owner task and every unit; their requests fail with `Closed`.
    pub fn shutdown(&self) {
        self.stop.send_replace(true);
    }
}

/// Checks a bus configuration: unit ids 1..=247 and unique, device names unique, points valid,
/// a usable line, timings above zero.
pub fn validate_bus(cfg: &RtuBusConfig, units: &[RtuUnitConfig]) -> Result<(), RtuConfigError> {
    let bus = || cfg.name.clone();
    if units.is_empty() {
        return Err(RtuConfigError::NoUnits { bus: bus() });
    }
    if let Some(line) = cfg.link.line()
        && (!(1200..=1_000_000).contains(&line.baud)
            || !(7..=8).contains(&line.data_bits)
            || !(1..=2).contains(&line.stop_bits))
    {
        return Err(RtuConfigError::BadLine {
            bus: bus(),
            baud: line.baud,
            data_bits: line.data_bits,
            stop_bits: line.stop_bits,
        });
    }
    let mut names = HashSet::new();
    for (i, u) in units.iter().enumerate() {
        if !(1..=247).contains(&u.unit) {
            return Err(RtuConfigError::BadUnitId {
                bus: bus(),
                device: u.device.clone(),
                unit: u.unit,
            });
        }
        if let Some(first) = units[..i].iter().find(|o| o.unit == u.unit) {
            return Err(RtuConfigError::DuplicateUnitId {
                bus: bus(),
                unit: u.unit,
                first: first.device.clone(),
                second: u.device.clone(),
            });
        }
        if !names.insert(u.device.as_str()) {
            return Err(RtuConfigError::DuplicateDevice {
                bus: bus(),
                device: u.device.clone(),
            });
        }
        if u.timeout.is_zero() || u.poll_interval.is_zero() {
            return Err(RtuConfigError::BadTiming {
                bus: bus(),
                device: u.device.clone(),
            });
        }
        validate_points(&u.points).map_err(|error| RtuConfigError::Point {
            bus: bus(),
            device: u.device.clone(),
            error,
        })?;
    }
    Ok(())
}

/// Starts the owner task of one RTU bus (needs a Tokio runtime). The configuration is checked
/// first ([`validate_bus`]); the port is opened by the task, so a missing adapter shows as
/// quarantined units and a `last_error`, not as a failure here. Updates of every unit go to
/// `updates`; the task waits when that channel is full.
pub fn spawn_rtu_bus(
    cfg: RtuBusConfig,
    units: Vec<RtuUnitConfig>,
    updates: mpsc::Sender<PointUpdate>,
) -> Result<RtuBus, RtuConfigError> {
    validate_bus(&cfg, &units)?;
    let mut cfg = cfg;
    cfg.queue_depth = cfg.queue_depth.max(1);
    cfg.backoff_min = cfg.backoff_min.max(Duration::from_millis(1));
    cfg.backoff_max = cfg.backoff_max.max(cfg.backoff_min);

    let mut handles = Vec::new();
    let mut owned = Vec::new();
    let mut unit_stats = Vec::new();
    for u in units {
        let (requests_tx, requests_rx) = mpsc::channel(cfg.queue_depth);
        let (health_tx, health_rx) = HealthSender::channel(&u.device);
        let (stop_tx, stop_rx) = watch::channel(false);
        let infos = u
            .points
            .iter()
            .enumerate()
            .map(|(index, p)| PointInfo {
                name: p.name.clone(),
                index,
                access: p.access,
            })
            .collect();
        handles.push(DeviceHandle::new(
            u.device.clone(),
            infos,
            requests_tx,
            health_rx,
            stop_tx,
        ));
        unit_stats.push(RtuUnitStats {
            device: u.device.clone(),
            unit: u.unit,
            state: UnitState::Connecting,
            polls: 0,
            counters: Counters::default(),
        });
        let points: Arc<[ModbusPoint]> = u.points.clone().into();
        owned.push(owner::UnitSetup {
            cfg: u,
            points,
            health: health_tx,
            requests: requests_rx,
            stop: stop_rx,
        });
    }
    let (stats_tx, stats_rx) = watch::channel(RtuBusStats {
        bus: cfg.name.clone(),
        open: false,
        elapsed: Duration::ZERO,
        frames_sent: 0,
        frames_received: 0,
        bad_frames: 0,
        timeouts: 0,
        exceptions: 0,
        transport_errors: 0,
        last_error: None,
        units: unit_stats,
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    // One scan at a time: a second one while the first is queued is refused as busy.
    let (scans_tx, scans_rx) = mpsc::channel(1);
    let scanner = RtuScanner {
        bus: cfg.name.clone(),
        scans: scans_tx,
    };
    let owner = owner::BusOwner::new(cfg, owned, updates, stats_tx, scans_rx, Instant::now());
    tokio::spawn(owner.run(stop_rx));
    Ok(RtuBus {
        handles,
        stats: stats_rx,
        scanner,
        stop: stop_tx,
    })
}

/// Starts an owner task for a line without units, that only scans (a bus named in the site
/// before any of its units are): the scanner, the stop switch, and the task to wait for.
pub(crate) fn spawn_scan_only(
    cfg: RtuBusConfig,
) -> (RtuScanner, watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let (stats_tx, _stats_rx) = watch::channel(RtuBusStats {
        bus: cfg.name.clone(),
        open: false,
        elapsed: Duration::ZERO,
        frames_sent: 0,
        frames_received: 0,
        bad_frames: 0,
        timeouts: 0,
        exceptions: 0,
        transport_errors: 0,
        last_error: None,
        units: Vec::new(),
    });
    // Nothing is polled, so nothing is published.
    let (updates, _) = mpsc::channel(1);
    let (scans_tx, scans_rx) = mpsc::channel(1);
    let (stop_tx, stop_rx) = watch::channel(false);
    let scanner = RtuScanner {
        bus: cfg.name.clone(),
        scans: scans_tx,
    };
    let owner = owner::BusOwner::new(cfg, Vec::new(), updates, stats_tx, scans_rx, Instant::now());
    let task = tokio::spawn(owner.run(stop_rx));
    (scanner, stop_tx, task)
}
