//! Simulators of serial line devices (a PIR sensor, a card/QR reader) that write frames to a pty, with fault injection; and a socat pty pair to run them on. Written without the codec.
//!
//! The frame encoders here are written out by hand from the wire formats in the
//! [`serial`](crate::serial) docs, deliberately not with the decoder's code, so a test checks
//! one against the other.
//!
//! | simulator          | wire                | frames                                                       |
//! |--------------------|---------------------|--------------------------------------------------------------|
//! | [`PirSim`]         | [`PirWire::Ascii`]  | `OCC=1\r\n`, `OCC=0\r\n`, `HB\r\n` (built-in `ascii-occupancy`) |
//! | [`PirSim`]         | [`PirWire::Binary`] | `AA 01 01 <0/1> XOR`, heartbeat `AA 00 7F XOR` (`binary-aa`)  |
//! | [`ReaderSim`]      | [`ReaderWire::CardStx`] | `STX <digits> ETX` (`ascii-card-stx`)                    |
//! | [`ReaderSim`]      | [`ReaderWire::QrLines`] | `QR:<text>\r\n`, `PIN:<digits>\r\n` (`ascii-qr`)         |
//! | [`ReaderSim`]      | [`ReaderWire::Binary`]  | card `AA LEN 02 <bytes> XOR`, QR `AA LEN 03 <text> XOR` (`binary-aa`) |
//!
//! Faults: [`Fault::BadChecksum`] (binary: a wrong checksum byte; ASCII, which has no checksum:
//! one character hit by a bit error that turns it into a control character), [`Fault::Truncated`]
//! (only the first half of the frame is sent), and on every simulator `garbage` (given bytes),
//! `line_noise` (pseudo-random bytes) and silence (send nothing).

use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt as _};

const STX: u8 = 0x02;
const ETX: u8 = 0x03;
const BINARY_START: u8 = 0xAA;

/// What to do to the next frame.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Fault {
    /// Send it as it should be.
    #[default]
    None,
    /// Binary: wrong checksum. ASCII: one body character becomes a control character.
    BadChecksum,
    /// Only the first half of the frame.
    Truncated,
}

/// Byte writer shared by the simulators.
#[derive(Debug)]
struct Wire<W> {
    port: W,
    noise_state: u64,
}

impl<W: AsyncWrite + Unpin> Wire<W> {
    fn new(port: W) -> Self {
        Wire {
            port,
            noise_state: 0x9E37_79B9_7F4A_7C15,
        }
    }

    async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.port.write_all(bytes).await?;
        self.port.flush().await
    }

    /// Sends `frame` with `fault` applied; `body` is the range of bytes an ASCII bit error may hit.
    async fn send_frame(
        &mut self,
        mut frame: Vec<u8>,
        binary: bool,
        body: std::ops::Range<usize>,
        fault: Fault,
    ) -> io::Result<()> {
        match fault {
            Fault::None => {}
            Fault::BadChecksum if binary => {
                if let Some(last) = frame.last_mut() {
                    *last ^= 0x5A;
                }
            }
            Fault::BadChecksum => {
                let at = body.start + (body.end - body.start) / 2;
                if let Some(b) = frame.get_mut(at) {
                    *b &= 0x1F; // a printable character with its 0x40/0x20 bits lost
                    if matches!(*b, b'\t' | b'\r' | b'\n' | STX | ETX) {
                        *b = 0x15;
                    }
                }
            }
            Fault::Truncated => frame.truncate(frame.len() / 2),
        }
        self.send(&frame).await
    }

    async fn line_noise(&mut self, len: usize) -> io::Result<()> {
        let mut bytes = Vec::with_capacity(len);
        for _ in 0..len {
            // xorshift64*: deterministic noise.
            let mut x = self.noise_state;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.noise_state = x;
            bytes.push((x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8);
        }
        self.send(&bytes).await
    }
}

/// `AA LEN TYPE PAYLOAD XOR(LEN TYPE PAYLOAD)`.
fn binary_frame(message_type: u8, payload: &[u8]) -> Vec<u8> {
    let len = u8::try_from(payload.len()).unwrap_or(u8::MAX);
    let payload = payload.get(..usize::from(len)).unwrap_or(payload);
    let mut check = len ^ message_type;
    for b in payload {
        check ^= b;
    }
    let mut frame = Vec::with_capacity(payload.len() + 4);
    frame.push(BINARY_START);
    frame.push(len);
    frame.push(message_type);
    frame.extend_from_slice(payload);
    frame.push(check);
    frame
}

/// A text line ending in CR LF; the body range excludes the terminator.
fn text_line(body: &str) -> (Vec<u8>, std::ops::Range<usize>) {
    let mut frame = body.as_bytes().to_vec();
    let range = 0..frame.len();
    frame.extend_from_slice(b"\r\n");
    (frame, range)
}

/// How the simulated PIR talks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PirWire {
    /// `OCC=1` / `OCC=0` / `HB` lines, CR LF.
    Ascii,
    /// `binary-aa` frames.
    Binary,
}

/// A serial PIR occupancy sensor.
#[derive(Debug)]
pub struct PirSim<W> {
    wire: Wire<W>,
    kind: PirWire,
}

impl<W: AsyncWrite + Unpin> PirSim<W> {
    #[must_use]
    pub fn new(port: W, kind: PirWire) -> Self {
        PirSim {
            wire: Wire::new(port),
            kind,
        }
    }

    /// Reports occupancy.
    pub async fn occupancy(&mut self, occupied: bool) -> io::Result<()> {
        self.occupancy_with(occupied, Fault::None).await
    }

    /// Reports occupancy with a fault.
    pub async fn occupancy_with(&mut self, occupied: bool, fault: Fault) -> io::Result<()> {
        match self.kind {
            PirWire::Ascii => {
                let (frame, body) = text_line(if occupied { "OCC=1" } else { "OCC=0" });
                self.wire.send_frame(frame, false, body, fault).await
            }
            PirWire::Binary => {
                let frame = binary_frame(0x01, &[u8::from(occupied)]);
                let body = 3..4;
                self.wire.send_frame(frame, true, body, fault).await
            }
        }
    }

    /// Sends a heartbeat.
    pub async fn heartbeat(&mut self) -> io::Result<()> {
        match self.kind {
            PirWire::Ascii => self.wire.send(b"HB\r\n").await,
            PirWire::Binary => self.wire.send(&binary_frame(0x7F, &[])).await,
        }
    }

    /// Sends raw bytes.
    pub async fn garbage(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.wire.send(bytes).await
    }

    /// Sends `len` pseudo-random bytes.
    pub async fn line_noise(&mut self, len: usize) -> io::Result<()> {
        self.wire.line_noise(len).await
    }
}

/// How the simulated reader talks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReaderWire {
    /// `STX <card number> ETX`.
    CardStx,
    /// `QR:<text>` and `PIN:<digits>` lines, CR LF.
    QrLines,
    /// `binary-aa` frames: card id bytes (type 02), QR text (type 03).
    Binary,
}

/// A card / QR / PIN reader.
#[derive(Debug)]
pub struct ReaderSim<W> {
    wire: Wire<W>,
    kind: ReaderWire,
}

impl<W: AsyncWrite + Unpin> ReaderSim<W> {
    #[must_use]
    pub fn new(port: W, kind: ReaderWire) -> Self {
        ReaderSim {
            wire: Wire::new(port),
            kind,
        }
    }

    /// A card is presented. `CardStx` sends `number` as text; `Binary` sends it as bytes (the
    /// number is read as hex, two digits a byte: `"046A1FC2"`); `QrLines` has no cards and
    /// sends nothing.
    pub async fn card(&mut self, number: &str, fault: Fault) -> io::Result<()> {
        match self.kind {
            ReaderWire::CardStx => {
                let mut frame = vec![STX];
                frame.extend_from_slice(number.as_bytes());
                frame.push(ETX);
                let body = 1..frame.len() - 1;
                self.wire.send_frame(frame, false, body, fault).await
            }
            ReaderWire::Binary => {
                let bytes: Vec<u8> = number
                    .as_bytes()
                    .chunks(2)
                    .filter_map(|pair| {
                        let s = std::str::from_utf8(pair).ok()?;
                        u8::from_str_radix(s, 16).ok()
                    })
                    .collect();
                let frame = binary_frame(0x02, &bytes);
                let body = 3..frame.len() - 1;
                self.wire.send_frame(frame, true, body, fault).await
            }
            ReaderWire::QrLines => Ok(()),
        }
    }

    /// A QR code is shown (`QrLines`, `Binary`; a `CardStx` reader sends nothing).
    pub async fn qr(&mut self, text: &str, fault: Fault) -> io::Result<()> {
        match self.kind {
            ReaderWire::QrLines => {
                let (frame, body) = text_line(&format!("QR:{text}"));
                self.wire.send_frame(frame, false, body, fault).await
            }
            ReaderWire::Binary => {
                let frame = binary_frame(0x03, text.as_bytes());
                let body = 3..frame.len() - 1;
                self.wire.send_frame(frame, true, body, fault).await
            }
            ReaderWire::CardStx => Ok(()),
        }
    }

    /// A PIN is typed (`QrLines` only).
    pub async fn pin(&mut self, digits: &str, fault: Fault) -> io::Result<()> {
        if self.kind != ReaderWire::QrLines {
            return Ok(());
        }
        let (frame, body) = text_line(&format!("PIN:{digits}"));
        self.wire.send_frame(frame, false, body, fault).await
    }

    /// Sends raw bytes.
    pub async fn garbage(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.wire.send(bytes).await
    }

    /// Sends `len` pseudo-random bytes.
    pub async fn line_noise(&mut self, len: usize) -> io::Result<()> {
        self.wire.line_noise(len).await
    }
}

/// A pair of connected ptys made by `socat -d -d pty,raw,echo=0,link=A pty,raw,echo=0,link=B`:
/// the device driver opens one link, a simulator the other. Killing it is what unplugging a
/// USB adapter looks like to the driver (reads fail, the path disappears).
#[derive(Debug)]
pub struct PtyPair {
    child: Option<Child>,
    device_link: PathBuf,
    sim_link: PathBuf,
}

impl PtyPair {
    /// Starts socat (`socat` is the program to run) and waits up to 10 s for both links.
    /// Stale links at these paths are removed first.
    pub async fn spawn(
        socat: impl AsRef<OsStr>,
        device_link: impl Into<PathBuf>,
        sim_link: impl Into<PathBuf>,
    ) -> io::Result<PtyPair> {
        let device_link = device_link.into();
        let sim_link = sim_link.into();
        for link in [&device_link, &sim_link] {
            match std::fs::remove_file(link) {
                Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
                _ => {}
            }
        }
        let arg = |link: &Path| {
            let mut a = std::ffi::OsString::from("pty,raw,echo=0,link=");
            a.push(link.as_os_str());
            a
        };
        let child = Command::new(socat)
            .arg("-d")
            .arg("-d")
            .arg(arg(&device_link))
            .arg(arg(&sim_link))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let mut pair = PtyPair {
            child: Some(child),
            device_link,
            sim_link,
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if pair.device_link.exists() && pair.sim_link.exists() {
                return Ok(pair);
            }
            if let Some(child) = &mut pair.child
                && let Some(status) = child.try_wait()?
            {
                return Err(io::Error::other(format!("socat exited early: {status}")));
            }
            if tokio::time::Instant::now() > deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "socat made no pty links within 10 s",
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The link the device driver opens.
    #[must_use]
    pub fn device_link(&self) -> &Path {
        &self.device_link
    }

    /// The link the simulator opens.
    #[must_use]
    pub fn sim_link(&self) -> &Path {
        &self.sim_link
    }

    /// Opens the simulator's end, raw, 8N1.
    pub fn open_sim_end(&self) -> io::Result<tokio_serial::SerialStream> {
        let path = self.sim_link.to_string_lossy();
        let builder = tokio_serial::new(path, 9600);
        tokio_serial::SerialStream::open(&builder).map_err(io::Error::from)
    }

    /// Kills socat (SIGKILL) and removes its links, as an unplugged adapter's device node
    /// disappears.
    pub fn kill(&mut self) -> io::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        for link in [&self.device_link, &self.sim_link] {
            let _ = std::fs::remove_file(link);
        }
        Ok(())
    }
}

impl Drop for PtyPair {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}
