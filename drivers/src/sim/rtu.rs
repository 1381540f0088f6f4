//! A Modbus RTU simulator: several room devices (units) on one serial line (a pty) or behind an RTU-over-TCP listener, with hand-written framing and CRC and per-unit fault injection.
//!
//! Written independently of `crate::modbus::rtu`: the frame parser, the answer encoder and the
//! CRC (bit by bit here, table-driven in the driver) are this file's own, so a framing bug in
//! the driver is not mirrored by the simulator it is tested against. The register maps are the
//! TCP simulators' (see [`crate::sim`]), one [`SimKind`] per unit id, physics included.
//!
//! The simulator is a serial *slave*: it reads requests (FC01-FC06, FC15, FC16; anything else
//! with a valid CRC answers exception 01), ignores frames for unit ids it does not simulate,
//! executes broadcast writes (unit 0) without answering, and drops bytes with a bad CRC.
//! An incomplete frame followed by 20 ms of silence is dropped (a real slave uses t1.5/t3.5; a
//! pty's scheduling jitter makes a looser gap safer).
//!
//! # Fault injection (per unit)
//!
//! * [`RtuSimBus::set_silent`]: the unit never answers (a dead device on a live bus);
//! * [`RtuSimBus::set_response_delay`]: it answers late;
//! * [`RtuSimBus::set_exception`]: it answers every request with an exception code;
//! * [`RtuSimBus::corrupt_crc`]: its next `n` answers carry a wrong CRC;
//! * [`RtuSimBus::garbage_before`]: its next `n` answers are preceded by garbage bytes;
//! * [`RtuSimBus::inject_garbage`]: bytes on the line right now, unasked.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior, timeout};
use tokio_modbus::{Request, Response};

use super::plant::Plant;
use super::{SimKind, SimWrite};

/// Silence after which an incomplete frame is dropped.
const FRAME_GAP: Duration = Duration::from_millis(20);
/// Physics tick period.
const TICK: Duration = Duration::from_millis(100);
/// Oldest entries of the request log are dropped beyond this many.
const LOG_CAP: usize = 65_536;

/// One request frame the simulator received for one of its units (answered or not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtuSimRequest {
    /// Unit id addressed (0 for broadcast).
    pub unit: u8,
    /// Function code.
    pub function: u8,
    /// First address (0 for unknown functions).
    pub address: u16,
    /// Quantity read or written.
    pub count: u16,
    /// When the frame was complete.
    pub at: Instant,
}

#[derive(Debug, Default, Clone)]
struct Faults {
    silent: bool,
    delay: Duration,
    exception: Option<u8>,
    corrupt_crc: u32,
    garbage: Option<(u32, Vec<u8>)>,
}

#[derive(Debug)]
struct SimUnit {
    plant: Plant,
    faults: Faults,
}

#[derive(Debug)]
struct BusState {
    units: Mutex<HashMap<u8, SimUnit>>,
    log: Mutex<VecDeque<RtuSimRequest>>,
    /// Frames dropped for a bad CRC or as an incomplete fragment.
    dropped: Mutex<u64>,
}

impl BusState {
    fn units(&self) -> MutexGuard<'_, HashMap<u8, SimUnit>> {
        self.units.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running simulated RTU bus. Clones share it; it stops on [`RtuSimBus::shutdown`] or when the
/// last clone is dropped.
#[derive(Debug, Clone)]
pub struct RtuSimBus {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    state: Arc<BusState>,
    inject: mpsc::UnboundedSender<Vec<u8>>,
    addr: Option<SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl RtuSimBus {
    /// Serves the units on a serial port (a pty end in tests). Line settings other than the
    /// baud are RTU's 8 data bits, no parity, 1 stop bit; a pty ignores them anyway.
    pub fn spawn_serial(path: &str, baud: u32, units: &[(u8, SimKind)]) -> io::Result<RtuSimBus> {
        use tokio_serial::SerialPortBuilderExt as _;
        let port = tokio_serial::new(path, baud)
            .open_native_async()
            .map_err(io::Error::other)?;
        Ok(Self::spawn_on(port, units))
    }

    /// Serves the units on any byte stream.
    pub fn spawn_on<T>(io: T, units: &[(u8, SimKind)]) -> RtuSimBus
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let state = new_state(units);
        let (inject_tx, inject_rx) = mpsc::unbounded_channel();
        let server = tokio::spawn(serve_logged(io, Arc::clone(&state), inject_rx));
        let physics = tokio::spawn(physics(Arc::clone(&state)));
        RtuSimBus {
            inner: Arc::new(Inner {
                state,
                inject: inject_tx,
                addr: None,
                tasks: vec![server, physics],
            }),
        }
    }

    /// An RTU-over-TCP serial server: binds `bind` (port 0 in tests) and serves RTU frames on
    /// each connection, one connection at a time (as a serial server does).
    pub async fn spawn_tcp(bind: SocketAddr, units: &[(u8, SimKind)]) -> io::Result<RtuSimBus> {
        let listener = TcpListener::bind(bind).await?;
        let addr = listener.local_addr()?;
        let state = new_state(units);
        let (inject_tx, mut inject_rx) = mpsc::unbounded_channel();
        let server_state = Arc::clone(&state);
        let server = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let _ = stream.set_nodelay(true);
                let (tx, rx) = mpsc::unbounded_channel();
                let conn = serve(stream, Arc::clone(&server_state), rx);
                tokio::pin!(conn);
                loop {
                    tokio::select! {
                        result = &mut conn => {
                            if let Err(error) = result {
                                tracing::debug!(%error, "RTU simulator connection ended");
                            }
                            break;
                        }
                        Some(bytes) = inject_rx.recv() => { let _ = tx.send(bytes); }
                    }
                }
            }
        });
        let physics = tokio::spawn(physics(Arc::clone(&state)));
        Ok(RtuSimBus {
            inner: Arc::new(Inner {
                state,
                inject: inject_tx,
                addr: Some(addr),
                tasks: vec![server, physics],
            }),
        })
    }

    /// The TCP address of an RTU-over-TCP simulator.
    #[must_use]
    pub fn addr(&self) -> Option<SocketAddr> {
        self.inner.addr
    }

    fn with_unit<R>(&self, unit: u8, f: impl FnOnce(&mut SimUnit) -> R) -> Option<R> {
        self.inner.state.units().get_mut(&unit).map(f)
    }

    fn faults(&self, unit: u8, f: impl FnOnce(&mut Faults)) {
        if self.with_unit(unit, |u| f(&mut u.faults)).is_none() {
            tracing::warn!(unit, "no such unit on the simulated bus; fault ignored");
        }
    }

    /// Coil `a` of a unit; false outside the map or for an unknown unit.
    #[must_use]
    pub fn coil(&self, unit: u8, a: u16) -> bool {
        self.with_unit(unit, |u| u.plant.coils.get(usize::from(a)).copied())
            .flatten()
            .unwrap_or(false)
    }

    /// Discrete input `a` of a unit.
    #[must_use]
    pub fn discrete_input(&self, unit: u8, a: u16) -> bool {
        self.with_unit(unit, |u| {
            u.plant.discrete_inputs.get(usize::from(a)).copied()
        })
        .flatten()
        .unwrap_or(false)
    }

    /// Holding register `a` of a unit; 0 outside the map.
    #[must_use]
    pub fn holding(&self, unit: u8, a: u16) -> u16 {
        self.with_unit(unit, |u| u.plant.holding.get(usize::from(a)).copied())
            .flatten()
            .unwrap_or(0)
    }

    /// Input register `a` of a unit; 0 outside the map.
    #[must_use]
    pub fn input_register(&self, unit: u8, a: u16) -> u16 {
        self.with_unit(unit, |u| u.plant.input.get(usize::from(a)).copied())
            .flatten()
            .unwrap_or(0)
    }

    /// Sets a discrete input as the physical world would.
    pub fn set_discrete_input(&self, unit: u8, a: u16, v: bool) {
        self.with_unit(unit, |u| u.plant.set_discrete_input(a, v));
    }

    /// Sets an input register as the physical world would.
    pub fn set_input_register(&self, unit: u8, a: u16, v: u16) {
        self.with_unit(unit, |u| u.plant.set_input_register(a, v));
    }

    /// Changes a holding register locally (not a Modbus write).
    pub fn set_holding(&self, unit: u8, a: u16, v: u16) {
        self.with_unit(unit, |u| u.plant.set_holding(a, v));
    }

    /// Changes a coil locally (not a Modbus write).
    pub fn set_coil(&self, unit: u8, a: u16, v: bool) {
        self.with_unit(unit, |u| u.plant.set_coil(a, v));
    }

    /// Every write a unit accepted, oldest first.
    #[must_use]
    pub fn writes(&self, unit: u8) -> Vec<SimWrite> {
        self.with_unit(unit, |u| u.plant.writes())
            .unwrap_or_default()
    }

    /// Every request frame received for a simulated unit (or broadcast), oldest first.
    #[must_use]
    pub fn requests(&self) -> Vec<RtuSimRequest> {
        self.inner
            .state
            .log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .copied()
            .collect()
    }

    /// Frames dropped for a bad CRC, and incomplete fragments.
    #[must_use]
    pub fn dropped_frames(&self) -> u64 {
        *self
            .inner
            .state
            .dropped
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Fault: the unit never answers.
    pub fn set_silent(&self, unit: u8, silent: bool) {
        self.faults(unit, |f| f.silent = silent);
    }

    /// Fault: the unit answers after `delay`.
    pub fn set_response_delay(&self, unit: u8, delay: Duration) {
        self.faults(unit, |f| f.delay = delay);
    }

    /// Fault: the unit answers every request with this exception code (`None` ends it).
    pub fn set_exception(&self, unit: u8, code: Option<u8>) {
        self.faults(unit, |f| f.exception = code);
    }

    /// Fault: the unit's next `answers` answers carry a wrong CRC.
    pub fn corrupt_crc(&self, unit: u8, answers: u32) {
        self.faults(unit, |f| f.corrupt_crc = answers);
    }

    /// Fault: the unit's next `answers` answers are preceded by `bytes` of garbage.
    pub fn garbage_before(&self, unit: u8, answers: u32, bytes: Vec<u8>) {
        self.faults(unit, |f| f.garbage = Some((answers, bytes)));
    }

    /// Fault: puts `bytes` on the line now, unasked.
    pub fn inject_garbage(&self, bytes: Vec<u8>) {
        let _ = self.inner.inject.send(bytes);
    }

    /// Stops serving (the port or listener closes) and the physics.
    pub fn shutdown(&self) {
        for task in &self.inner.tasks {
            task.abort();
        }
    }
}

fn new_state(units: &[(u8, SimKind)]) -> Arc<BusState> {
    Arc::new(BusState {
        units: Mutex::new(
            units
                .iter()
                .map(|&(id, kind)| {
                    (
                        id,
                        SimUnit {
                            plant: Plant::new(kind),
                            faults: Faults::default(),
                        },
                    )
                })
                .collect(),
        ),
        log: Mutex::new(VecDeque::new()),
        dropped: Mutex::new(0),
    })
}

async fn physics(state: Arc<BusState>) {
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last = Instant::now();
    loop {
        ticker.tick().await;
        let now = Instant::now();
        for unit in state.units().values_mut() {
            unit.plant.tick(now - last);
        }
        last = now;
    }
}

async fn serve_logged<T>(io: T, state: Arc<BusState>, inject: mpsc::UnboundedReceiver<Vec<u8>>)
where
    T: AsyncRead + AsyncWrite + Unpin + Send,
{
    if let Err(error) = serve(io, state, inject).await {
        tracing::debug!(%error, "RTU simulator line ended");
    }
}

/// Reads request frames and writes answers until the line closes.
async fn serve<T>(
    io: T,
    state: Arc<BusState>,
    mut inject: mpsc::UnboundedReceiver<Vec<u8>>,
) -> io::Result<()>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let (mut rd, mut wr) = tokio::io::split(io);
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 512];
    loop {
        loop {
            match split_frame(&buf) {
                Split::Incomplete => break,
                Split::Drop(n) => {
                    buf.drain(..n.min(buf.len()));
                    *state.dropped.lock().unwrap_or_else(PoisonError::into_inner) += 1;
                }
                Split::Frame(len) => {
                    let frame: Vec<u8> = buf.drain(..len).collect();
                    if let Some((delay, bytes)) = answer(&state, &frame) {
                        if !delay.is_zero() {
                            tokio::time::sleep(delay).await;
                        }
                        wr.write_all(&bytes).await?;
                        wr.flush().await?;
                    }
                }
            }
        }
        tokio::select! {
            read = timeout(FRAME_GAP, rd.read(&mut chunk)) => match read {
                Err(_) => {
                    if !buf.is_empty() {
                        buf.clear();
                        *state.dropped.lock().unwrap_or_else(PoisonError::into_inner) += 1;
                    }
                }
                Ok(Ok(0)) => return Ok(()),
                Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
                Ok(Err(e)) => return Err(e),
            },
            Some(bytes) = inject.recv() => {
                wr.write_all(&bytes).await?;
                wr.flush().await?;
            }
        }
    }
}

/// CRC-16/MODBUS computed bit by bit (Modbus over serial line V1.02, §6.2.2).
fn crc(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0xffff;
    for &byte in bytes {
        crc ^= u16::from(byte);
        for _ in 0..8 {
            let lsb = crc & 0x0001;
            crc >>= 1;
            if lsb != 0 {
                crc ^= 0xa001;
            }
        }
    }
    crc
}

fn with_crc(mut frame: Vec<u8>) -> Vec<u8> {
    let c = crc(&frame);
    frame.push((c & 0xff) as u8);
    frame.push((c >> 8) as u8);
    frame
}

fn crc_matches(frame: &[u8]) -> bool {
    if frame.len() < 4 {
        return false;
    }
    let (body, tail) = frame.split_at(frame.len() - 2);
    let c = crc(body);
    tail[0] == (c & 0xff) as u8 && tail[1] == (c >> 8) as u8
}

enum Split {
    Incomplete,
    Drop(usize),
    Frame(usize),
}

/// Finds the request frame at the start of `buf`: its length follows from the function code
/// (FC01-FC06: 8 bytes; FC15/FC16: 9 + byte count); unknown functions are recognised by their
/// CRC alone.
fn split_frame(buf: &[u8]) -> Split {
    let Some(&function) = buf.get(1) else {
        return Split::Incomplete;
    };
    let len = match function {
        0x01..=0x06 => 8,
        0x0f | 0x10 => match buf.get(6) {
            Some(&bytes) => 9 + usize::from(bytes),
            None => return Split::Incomplete,
        },
        _ => {
            return match (4..=buf.len().min(256)).find(|&n| crc_matches(&buf[..n])) {
                Some(n) => Split::Frame(n),
                None if buf.len() >= 256 => Split::Drop(1),
                None => Split::Incomplete,
            };
        }
    };
    match buf.get(..len) {
        None => Split::Incomplete,
        Some(frame) if crc_matches(frame) => Split::Frame(len),
        Some(_) => Split::Drop(1),
    }
}

fn be(frame: &[u8], i: usize) -> u16 {
    u16::from_be_bytes([
        frame.get(i).copied().unwrap_or(0),
        frame.get(i + 1).copied().unwrap_or(0),
    ])
}

/// Decodes a request PDU by hand into the plant's request type. `Err` carries the exception
/// code for a malformed request.
fn parse_request(frame: &[u8]) -> Result<Request<'static>, u8> {
    let function = frame.get(1).copied().unwrap_or(0);
    let a = be(frame, 2);
    let n = be(frame, 4);
    match function {
        0x01 => Ok(Request::ReadCoils(a, n)),
        0x02 => Ok(Request::ReadDiscreteInputs(a, n)),
        0x03 => Ok(Request::ReadHoldingRegisters(a, n)),
        0x04 => Ok(Request::ReadInputRegisters(a, n)),
        0x05 => match n {
            0xff00 => Ok(Request::WriteSingleCoil(a, true)),
            0x0000 => Ok(Request::WriteSingleCoil(a, false)),
            _ => Err(0x03),
        },
        0x06 => Ok(Request::WriteSingleRegister(a, n)),
        0x0f => {
            let bytes = frame.get(7..frame.len() - 2).unwrap_or_default();
            if usize::from(n) > bytes.len() * 8 || usize::from(n).div_ceil(8) != bytes.len() {
                return Err(0x03);
            }
            let bits = (0..usize::from(n))
                .map(|i| bytes[i / 8] >> (i % 8) & 1 == 1)
                .collect::<Vec<_>>();
            Ok(Request::WriteMultipleCoils(a, Cow::Owned(bits)))
        }
        0x10 => {
            let bytes = frame.get(7..frame.len() - 2).unwrap_or_default();
            if usize::from(n) * 2 != bytes.len() {
                return Err(0x03);
            }
            let words = bytes
                .chunks_exact(2)
                .map(|w| u16::from_be_bytes([w[0], w[1]]))
                .collect::<Vec<_>>();
            Ok(Request::WriteMultipleRegisters(a, Cow::Owned(words)))
        }
        _ => Err(0x01),
    }
}

/// Encodes the plant's answer by hand.
fn encode_response(unit: u8, function: u8, response: &Response) -> Vec<u8> {
    let mut out = vec![unit, function];
    let word = |out: &mut Vec<u8>, w: u16| out.extend_from_slice(&w.to_be_bytes());
    match response {
        Response::ReadCoils(bits) | Response::ReadDiscreteInputs(bits) => {
            let mut packed = vec![0u8; bits.len().div_ceil(8)];
            for (i, _) in bits.iter().enumerate().filter(|(_, b)| **b) {
                packed[i / 8] |= 1 << (i % 8);
            }
            out.push(packed.len() as u8);
            out.extend(packed);
        }
        Response::ReadHoldingRegisters(words) | Response::ReadInputRegisters(words) => {
            out.push((words.len() * 2) as u8);
            for &w in words {
                word(&mut out, w);
            }
        }
        Response::WriteSingleCoil(a, on) => {
            word(&mut out, *a);
            word(&mut out, if *on { 0xff00 } else { 0 });
        }
        Response::WriteSingleRegister(a, v) => {
            word(&mut out, *a);
            word(&mut out, *v);
        }
        Response::WriteMultipleCoils(a, n) | Response::WriteMultipleRegisters(a, n) => {
            word(&mut out, *a);
            word(&mut out, *n);
        }
        _ => {
            out[1] |= 0x80;
            out.push(0x04);
        }
    }
    with_crc(out)
}

/// The answer to one CRC-checked frame, with the delay to wait before sending it; `None` for
/// frames of other units, broadcasts and silent units.
fn answer(state: &BusState, frame: &[u8]) -> Option<(Duration, Vec<u8>)> {
    let unit_id = frame[0];
    let function = frame[1];
    let mut units = state.units();
    let known = unit_id == 0 || units.contains_key(&unit_id);
    if !known {
        return None;
    }
    let (address, count) = match function {
        0x01..=0x04 | 0x0f | 0x10 => (be(frame, 2), be(frame, 4)),
        0x05 | 0x06 => (be(frame, 2), 1),
        _ => (0, 0),
    };
    {
        let mut log = state.log.lock().unwrap_or_else(PoisonError::into_inner);
        if log.len() == LOG_CAP {
            log.pop_front();
        }
        log.push_back(RtuSimRequest {
            unit: unit_id,
            function,
            address,
            count,
            at: Instant::now(),
        });
    }
    if unit_id == 0 {
        // Broadcast: writes only, executed by every unit, never answered (§2.1).
        if let Ok(request) = parse_request(frame)
            && matches!(function, 0x05 | 0x06 | 0x0f | 0x10)
        {
            for unit in units.values_mut() {
                let _ = unit.plant.handle(&request);
            }
        }
        return None;
    }
    let unit = units.get_mut(&unit_id)?;
    if unit.faults.silent {
        return None;
    }
    let exception = |code: u8| with_crc(vec![unit_id, function | 0x80, code]);
    let mut bytes = match (unit.faults.exception, parse_request(frame)) {
        (Some(code), _) | (None, Err(code)) => exception(code),
        (None, Ok(request)) => match unit.plant.handle(&request) {
            Ok(response) => encode_response(unit_id, function, &response),
            Err(code) => exception(code.into()),
        },
    };
    if unit.faults.corrupt_crc > 0 {
        unit.faults.corrupt_crc -= 1;
        if let Some(last) = bytes.last_mut() {
            *last ^= 0x5a;
        }
    }
    if let Some((left, garbage)) = unit.faults.garbage.as_mut()
        && *left > 0
    {
        *left -= 1;
        let mut prefixed = garbage.clone();
        prefixed.extend(bytes);
        bytes = prefixed;
    }
    Some((unit.faults.delay, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(units: &[(u8, SimKind)]) -> Arc<BusState> {
        new_state(units)
    }

    #[test]
    fn crc_is_the_spec_example() {
        // Modbus over serial line V1.02, §6.2.2 example frame 02 07 -> 41 12.
        assert_eq!(with_crc(vec![0x02, 0x07]), vec![0x02, 0x07, 0x41, 0x12]);
    }

    #[test]
    fn answers_reads_and_writes_per_unit() {
        let s = state(&[(1, SimKind::HvacController), (2, SimKind::LightModule)]);
        let read = with_crc(vec![1, 3, 0, 0, 0, 3]);
        let (_, reply) = answer(&s, &read).unwrap();
        assert_eq!(reply, with_crc(vec![1, 3, 6, 0, 0, 0x41, 0xa8, 0, 0]));
        let write = with_crc(vec![2, 5, 0, 1, 0xff, 0]);
        let (_, reply) = answer(&s, &write).unwrap();
        assert_eq!(reply, write, "FC05 echoes the request");
        let coils = with_crc(vec![2, 1, 0, 0, 0, 4]);
        assert_eq!(
            answer(&s, &coils).unwrap().1,
            with_crc(vec![2, 1, 1, 0b0010])
        );
        // Another unit's frame is not ours.
        assert!(answer(&s, &with_crc(vec![9, 3, 0, 0, 0, 1])).is_none());
        // Out of the map: exception 02; unknown function: 01.
        assert_eq!(
            answer(&s, &with_crc(vec![2, 3, 0, 4, 0, 1])).unwrap().1,
            with_crc(vec![2, 0x83, 2])
        );
        assert_eq!(
            answer(&s, &with_crc(vec![2, 0x2b, 0x0e, 1, 0])).unwrap().1,
            with_crc(vec![2, 0xab, 1])
        );
        // Broadcast write: executed, not answered.
        assert!(answer(&s, &with_crc(vec![0, 6, 0, 0, 0, 50])).is_none());
        assert_eq!(s.units().get(&2).map(|u| u.plant.holding[0]), Some(50));
        assert_eq!(s.log.lock().unwrap().len(), 7 - 1);
    }

    #[test]
    fn splits_frames_and_drops_bad_ones() {
        let read = with_crc(vec![1, 3, 0, 0, 0, 1]);
        assert!(matches!(split_frame(&read[..5]), Split::Incomplete));
        assert!(matches!(split_frame(&read), Split::Frame(8)));
        let mut bad = read.clone();
        bad[7] ^= 1;
        assert!(matches!(split_frame(&bad), Split::Drop(1)));
        let fc16 = with_crc(vec![1, 0x10, 0, 1, 0, 2, 4, 0x41, 0xa8, 0, 0]);
        assert!(matches!(split_frame(&fc16[..6]), Split::Incomplete));
        assert!(matches!(split_frame(&fc16), Split::Frame(13)));
        assert!(matches!(split_frame(&[7]), Split::Incomplete));
        assert!(matches!(split_frame(&[0x55; 256]), Split::Drop(1)));
    }

    #[test]
    fn faults_apply_per_unit() {
        let s = state(&[(1, SimKind::StatusLight), (2, SimKind::StatusLight)]);
        let read = |u: u8| with_crc(vec![u, 3, 0, 0, 0, 1]);
        s.units().get_mut(&1).unwrap().faults.exception = Some(4);
        assert_eq!(answer(&s, &read(1)).unwrap().1, with_crc(vec![1, 0x83, 4]));
        assert_eq!(
            answer(&s, &read(2)).unwrap().1,
            with_crc(vec![2, 3, 2, 0, 0])
        );
        s.units().get_mut(&2).unwrap().faults.corrupt_crc = 1;
        assert!(!crc_matches(&answer(&s, &read(2)).unwrap().1));
        assert!(crc_matches(&answer(&s, &read(2)).unwrap().1));
        s.units().get_mut(&2).unwrap().faults.garbage = Some((1, vec![0xde, 0xad]));
        assert_eq!(&answer(&s, &read(2)).unwrap().1[..2], &[0xde, 0xad]);
        s.units().get_mut(&2).unwrap().faults.silent = true;
        assert!(answer(&s, &read(2)).is_none());
    }
}
