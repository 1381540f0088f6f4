//! The owner task of one RTU bus: opens the line, schedules every unit's polls, serves the priority lane, paces frames, quarantines units that stop answering.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use futures_util::FutureExt as _;
use futures_util::stream::{FuturesUnordered, StreamExt as _};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep_until, timeout, timeout_at};

use super::frame::{MAX_FRAME, RtuRequest, RtuResponse, Scan, scan_response};
use super::timing::{LineClock, Parity};
use super::{RtuBusConfig, RtuBusStats, RtuLink, RtuUnitConfig, UnitState};
use crate::device::{
    Backoff, DriverError, HealthSender, LinkState, PointPublisher, PointUpdate,
    Request as DeviceRequest,
};
use crate::modbus::codec::{self, Encoded, Raw, ReadBlock};
use crate::modbus::scan::{ScanError, ScanJob, ScanRequest, UnitAnswer};
use crate::modbus::schedule::PollSchedule;
use crate::point::{ModbusPoint, ModbusTable, Value};

/// What the owner needs of a transport: a byte stream to the line.
trait Line: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Line for T {}

type Io = Box<dyn Line>;

/// A unit as handed over by `spawn_rtu_bus`.
pub(super) struct UnitSetup {
    pub(super) cfg: RtuUnitConfig,
    pub(super) points: Arc<[ModbusPoint]>,
    pub(super) health: HealthSender,
    pub(super) requests: mpsc::Receiver<DeviceRequest>,
    pub(super) stop: watch::Receiver<bool>,
}

/// The port failed (read, write, closed); every unit waits for it to reopen.
struct LinkDown(String);

/// The owner must end (bus shut down, or every unit stopped).
struct Finished;

enum End {
    LinkDown(String),
    Finished,
}

impl From<LinkDown> for End {
    fn from(LinkDown(e): LinkDown) -> Self {
        End::LinkDown(e)
    }
}

impl From<Finished> for End {
    fn from(_: Finished) -> Self {
        End::Finished
    }
}

/// One frame sent and what came back for it.
struct Transaction {
    /// The answer (data, or the device's exception code); `None`: silence until the deadline.
    answer: Option<Result<RtuResponse, u8>>,
    /// Garbage came before the answer, or bytes that were no answer came instead of one.
    bad_frame: bool,
    /// From the frame on the wire to the answer.
    elapsed: Duration,
}

/// What one request got back.
enum Answer {
    Data(RtuResponse),
    Exception(u8),
    /// No valid answer in time, after every attempt.
    Silence,
}

/// A stop signal: one unit's handles, or the whole bus.
enum StopSignal {
    Unit(usize),
    Bus,
}

type StopFuture = Pin<Box<dyn Future<Output = StopSignal> + Send>>;

/// One poll job.
enum Job {
    /// The next block of the unit's current poll cycle.
    Poll(usize),
    /// One request to a quarantined unit.
    Probe(usize),
}

/// A poll cycle of one group in progress.
struct Cycle {
    group: usize,
    due: Instant,
    remaining: VecDeque<ReadBlock>,
    all: Vec<ReadBlock>,
    split: Vec<usize>,
}

struct Unit {
    cfg: RtuUnitConfig,
    points: Arc<[ModbusPoint]>,
    schedule: PollSchedule,
    cycle: Option<Cycle>,
    updates: PointPublisher,
    health: HealthSender,
    requests: mpsc::Receiver<DeviceRequest>,
    state: UnitState,
    next_probe: Instant,
    backoff: Backoff,
    polls: u64,
}

impl Unit {
    fn is_polled(&self, index: usize) -> bool {
        self.points.get(index).is_some_and(|p| p.access.can_read())
    }
}

pub(super) struct BusOwner {
    cfg: RtuBusConfig,
    units: Vec<Unit>,
    stops: Vec<watch::Receiver<bool>>,
    stats: watch::Sender<RtuBusStats>,
    started: Instant,
    clock: LineClock,
    /// Bytes read since the current request was sent.
    buf: Vec<u8>,
    /// Unit to look at first in the priority lane (round robin).
    next_lane: usize,
    port_backoff: Backoff,
    /// Scans asked for ([`crate::modbus::scan::RtuScanner`]).
    scans: mpsc::Receiver<ScanRequest>,
    /// The scan in progress.
    scan: Option<ScanJob>,
    /// Poll requests sent since the last scan probe: a probe goes before the next due poll
    /// once every running unit could have had one.
    polls_since_probe: usize,
}

impl BusOwner {
    pub(super) fn new(
        cfg: RtuBusConfig,
        setups: Vec<UnitSetup>,
        updates: mpsc::Sender<PointUpdate>,
        stats: watch::Sender<RtuBusStats>,
        scans: mpsc::Receiver<ScanRequest>,
        now: Instant,
    ) -> Self {
        let mut units = Vec::new();
        let mut stops = Vec::new();
        for s in setups {
            let blocks = codec::plan_reads(&s.points, cfg.max_gap);
            let schedule = PollSchedule::new(blocks, s.cfg.poll_interval);
            stops.push(s.stop);
            let names = s.points.iter().map(|p| p.name.clone()).collect();
            units.push(Unit {
                updates: PointPublisher::new(&s.cfg.device, names, updates.clone()),
                points: s.points,
                schedule,
                cycle: None,
                health: s.health,
                requests: s.requests,
                state: UnitState::Connecting,
                next_probe: now,
                backoff: Backoff::new(cfg.backoff_min, cfg.backoff_max),
                polls: 0,
                cfg: s.cfg,
            });
        }
        BusOwner {
            clock: LineClock::new(cfg.link.line()),
            port_backoff: Backoff::new(cfg.backoff_min, cfg.backoff_max),
            cfg,
            units,
            stops,
            stats,
            started: now,
            buf: Vec::with_capacity(MAX_FRAME * 2),
            next_lane: 0,
            scans,
            scan: None,
            polls_since_probe: 0,
        }
    }

    /// Open, serve, fall over, back off, reopen; until stopped.
    pub(super) async fn run(mut self, mut bus_stop: watch::Receiver<bool>) {
        let mut stops: FuturesUnordered<StopFuture> = FuturesUnordered::new();
        for (i, mut rx) in std::mem::take(&mut self.stops).into_iter().enumerate() {
            stops.push(Box::pin(async move {
                // Err: every handle is gone, which stops the unit as well.
                let _ = rx.wait_for(|stop| *stop).await;
                StopSignal::Unit(i)
            }));
        }
        stops.push(Box::pin(async move {
            let stopped = bus_stop.wait_for(|stop| *stop).await.is_ok();
            if !stopped {
                // The RtuBus was dropped: the units live on through their handles.
                std::future::pending::<()>().await;
            }
            StopSignal::Bus
        }));
        loop {
            let io = match self.open(&mut stops).await {
                Ok(Some(io)) => io,
                Ok(None) => {
                    if self.wait_port_backoff(&mut stops).await.is_err() {
                        break;
                    }
                    continue;
                }
                Err(Finished) => break,
            };
            match self.serve_line(io, &mut stops).await {
                End::Finished => break,
                End::LinkDown(error) => {
                    tracing::warn!(bus = %self.cfg.name, %error, "bus port failed");
                    self.end_scan_port_down(&error);
                    self.stat(|s| {
                        s.transport_errors += 1;
                        s.open = false;
                        s.last_error = Some(error.clone());
                    });
                    self.all_units_down(&error).await;
                    if self.wait_port_backoff(&mut stops).await.is_err() {
                        break;
                    }
                }
            }
        }
        self.finish();
    }

    /// One attempt to open the port. `Ok(None)`: it failed (units are down, backoff follows).
    async fn open(
        &mut self,
        stops: &mut FuturesUnordered<StopFuture>,
    ) -> Result<Option<Io>, Finished> {
        let attempt = open_link(self.cfg.clone());
        tokio::pin!(attempt);
        let result = loop {
            tokio::select! {
                biased;
                stop = stops.next() => self.on_stop(stop)?,
                result = &mut attempt => break result,
            }
        };
        match result {
            Ok(io) => {
                tracing::debug!(bus = %self.cfg.name, "bus port open");
                self.port_backoff.reset();
                self.stat(|s| s.open = true);
                self.clock = LineClock::new(self.cfg.link.line());
                let now = Instant::now();
                for unit in &mut self.units {
                    match unit.state {
                        UnitState::Connecting => unit.schedule.start(now),
                        UnitState::Quarantined => unit.next_probe = now,
                        UnitState::Online | UnitState::Stopped => {}
                    }
                }
                Ok(Some(io))
            }
            Err(error) => {
                self.stat(|s| {
                    s.transport_errors += 1;
                    s.open = false;
                    s.last_error = Some(error.clone());
                });
                self.all_units_down(&error).await;
                Ok(None)
            }
        }
    }

    /// Waits out the port backoff (failing handle requests meanwhile), then doubles it.
    async fn wait_port_backoff(
        &mut self,
        stops: &mut FuturesUnordered<StopFuture>,
    ) -> Result<(), Finished> {
        let deadline = Instant::now() + self.port_backoff.next_delay();
        loop {
            let units = &mut self.units;
            tokio::select! {
                biased;
                stop = stops.next() => self.on_stop(stop)?,
                (u, request) = next_request(units) => match request {
                    Some(request) => request.fail(DriverError::Offline),
                    None => self.stop_unit(u)?,
                },
                Some(scan) = self.scans.recv() => {
                    let message = self.stats.borrow().last_error.clone().unwrap_or_default();
                    let _ = scan.reply.send(Err(ScanError::PortDown {
                        bus: self.cfg.name.clone(),
                        message,
                    }));
                }
                () = sleep_until(deadline) => return Ok(()),
            }
        }
    }

    /// Serves the bus over one open port until the port fails or the owner must end.
    async fn serve_line(&mut self, mut io: Io, stops: &mut FuturesUnordered<StopFuture>) -> End {
        match self.serve_line_inner(&mut io, stops).await {
            Ok(never) => match never {},
            Err(end) => end,
        }
    }

    async fn serve_line_inner(
        &mut self,
        io: &mut Io,
        stops: &mut FuturesUnordered<StopFuture>,
    ) -> Result<std::convert::Infallible, End> {
        for unit in &self.units {
            if unit.schedule.is_empty() && unit.state == UnitState::Connecting {
                // Nothing to poll: the open port is all the evidence there will be.
                unit.health.set_state(LinkState::Online, None);
            }
        }
        loop {
            while let Some(Some(stop)) = stops.next().now_or_never() {
                self.on_stop(Some(stop))?;
            }
            // The priority lane: any unit's queued request goes before any poll.
            if let Some((u, request)) = self.try_next_request()? {
                self.serve(io, u, request).await?;
                continue;
            }
            while let Ok(scan) = self.scans.try_recv() {
                self.start_scan(scan);
            }
            // While polls are due, a scan's probe goes after a round of them (one poll per
            // running unit), so the units keep their pace and the scan its progress.
            let running = (self.units.iter())
                .filter(|u| u.state != UnitState::Stopped)
                .count();
            if self.scan.is_some() && self.polls_since_probe >= running {
                self.polls_since_probe = 0;
                self.scan_step(io).await?;
                continue;
            }
            let now = Instant::now();
            if let Some(job) = self.next_job(now) {
                match job {
                    Job::Poll(u) => self.poll_next_block(io, u).await?,
                    Job::Probe(u) => self.probe(io, u).await?,
                }
                self.polls_since_probe = self.polls_since_probe.saturating_add(1);
                continue;
            }
            if self.scan.is_some() {
                self.polls_since_probe = 0;
                self.scan_step(io).await?;
                continue;
            }
            let wake = self.next_wake();
            let units = &mut self.units;
            tokio::select! {
                biased;
                stop = stops.next() => self.on_stop(stop)?,
                (u, request) = next_request(units) => match request {
                    Some(request) => self.serve(io, u, request).await?,
                    None => self.stop_unit(u)?,
                },
                Some(scan) = self.scans.recv() => self.start_scan(scan),
                () = sleep_until(wake.unwrap_or_else(far_future)), if wake.is_some() => {}
            }
        }
    }

    /// A queued handle request of any unit, round robin.
    fn try_next_request(&mut self) -> Result<Option<(usize, DeviceRequest)>, Finished> {
        let n = self.units.len();
        for k in 0..n {
            let u = (self.next_lane + k) % n;
            if self.units[u].state == UnitState::Stopped {
                continue;
            }
            match self.units[u].requests.try_recv() {
                Ok(request) => {
                    self.next_lane = (u + 1) % n;
                    return Ok(Some((u, request)));
                }
                Err(mpsc::error::TryRecvError::Empty) => {}
                Err(mpsc::error::TryRecvError::Disconnected) => self.stop_unit(u)?,
            }
        }
        Ok(None)
    }

    /// The poll or probe that has waited longest, if any is due at `now`.
    fn next_job(&mut self, now: Instant) -> Option<Job> {
        let mut best: Option<(Instant, usize, bool)> = None;
        for (u, unit) in self.units.iter().enumerate() {
            let candidate = match unit.state {
                UnitState::Stopped => None,
                UnitState::Quarantined => {
                    (unit.next_probe <= now).then_some((unit.next_probe, u, true))
                }
                UnitState::Online | UnitState::Connecting => match &unit.cycle {
                    Some(cycle) => Some((cycle.due, u, false)),
                    None => unit
                        .schedule
                        .due(now)
                        .and_then(|g| unit.schedule.due_since(g))
                        .map(|due| (due, u, false)),
                },
            };
            if let Some(c) = candidate
                && best.is_none_or(|b| (c.0, c.1) < (b.0, b.1))
            {
                best = Some(c);
            }
        }
        let (_, u, probe) = best?;
        if probe {
            return Some(Job::Probe(u));
        }
        let unit = &mut self.units[u];
        if unit.cycle.is_none() {
            let group = unit.schedule.due(now)?;
            let due = unit.schedule.due_since(group).unwrap_or(now);
            let all = unit
                .schedule
                .group(group)
                .map(|g| g.blocks.clone())
                .unwrap_or_default();
            unit.cycle = Some(Cycle {
                group,
                due,
                remaining: all.iter().cloned().collect(),
                all,
                split: Vec::new(),
            });
        }
        Some(Job::Poll(u))
    }

    /// When the next poll or probe is due.
    fn next_wake(&self) -> Option<Instant> {
        self.units
            .iter()
            .filter_map(|unit| match unit.state {
                UnitState::Stopped => None,
                UnitState::Quarantined => Some(unit.next_probe),
                UnitState::Online | UnitState::Connecting => unit.schedule.next_due(),
            })
            .min()
    }

    /// Reads the next block of a unit's poll cycle.
    async fn poll_next_block(&mut self, io: &mut Io, u: usize) -> Result<(), End> {
        let Some(cycle) = self.units[u].cycle.as_mut() else {
            return Ok(());
        };
        let index = cycle.all.len() - cycle.remaining.len();
        let Some(block) = cycle.remaining.pop_front() else {
            self.finish_cycle(u);
            return Ok(());
        };
        let attempts = 1 + u32::from(self.units[u].cfg.retries);
        let split = self.read_block(io, u, &block, attempts).await?;
        if let Some(cycle) = self.units[u].cycle.as_mut() {
            if split {
                cycle.split.push(index);
            }
            if cycle.remaining.is_empty() {
                self.finish_cycle(u);
            }
        }
        Ok(())
    }

    fn finish_cycle(&mut self, u: usize) {
        let unit = &mut self.units[u];
        let Some(cycle) = unit.cycle.take() else {
            return;
        };
        unit.schedule.polled(cycle.group, Instant::now());
        if !cycle.split.is_empty() {
            let mut blocks = Vec::new();
            for (b, block) in cycle.all.into_iter().enumerate() {
                if cycle.split.contains(&b) {
                    tracing::warn!(device = %unit.cfg.device, start = block.start, count = block.count, "unit refused a merged read (exception 02); reading these points one by one");
                    blocks.extend(
                        block
                            .points
                            .iter()
                            .filter_map(|&i| ReadBlock::single(&unit.points, i)),
                    );
                } else {
                    blocks.push(block);
                }
            }
            unit.schedule.set_blocks(cycle.group, blocks);
        }
    }

    /// One request to a quarantined unit: its first block, no retries.
    async fn probe(&mut self, io: &mut Io, u: usize) -> Result<(), End> {
        let block = self.units[u].schedule.blocks().next().cloned();
        let Some(block) = block else {
            // Nothing to read: let it be tried again by writes.
            self.set_online(u);
            return Ok(());
        };
        tracing::debug!(bus = %self.cfg.name, device = %self.units[u].cfg.device, "probing quarantined unit");
        self.read_block(io, u, &block, 1).await?;
        if self.units[u].state == UnitState::Quarantined {
            let unit = &mut self.units[u];
            unit.next_probe = Instant::now() + unit.backoff.next_delay();
        }
        Ok(())
    }

    /// Reads one block and publishes its points. Returns whether the block should be split
    /// (a merged read refused with exception 02).
    async fn read_block(
        &mut self,
        io: &mut Io,
        u: usize,
        block: &ReadBlock,
        attempts: u32,
    ) -> Result<bool, End> {
        let request = RtuRequest::Read {
            function: block.function_code(),
            start: block.start,
            count: block.count,
        };
        match self.exchange(io, u, &request, attempts).await? {
            Answer::Data(data) => {
                self.units[u].polls += 1;
                self.sync_unit_stats(u);
                let points = Arc::clone(&self.units[u].points);
                for &i in &block.points {
                    let offset = block.offset_of(&points[i]).unwrap_or_default();
                    let value = match &data {
                        RtuResponse::Bits(bits) => codec::decode(
                            &points[i],
                            &Raw::Bits(bits.get(offset..).unwrap_or_default()),
                        ),
                        RtuResponse::Words(words) => codec::decode(
                            &points[i],
                            &Raw::Words(words.get(offset..).unwrap_or_default()),
                        ),
                        RtuResponse::Written => continue,
                    };
                    if let Err(error) = &value {
                        tracing::debug!(device = %self.units[u].cfg.device, point = %points[i].name, %error, "point unavailable");
                    }
                    self.units[u].updates.publish(i, value.ok()).await;
                }
                Ok(false)
            }
            Answer::Exception(code) => {
                self.units[u].polls += 1;
                self.sync_unit_stats(u);
                tracing::debug!(device = %self.units[u].cfg.device, start = block.start, count = block.count, code, "block read refused");
                for &i in &block.points {
                    self.units[u].updates.publish(i, None).await;
                }
                Ok(block.points.len() > 1 && code == 0x02)
            }
            Answer::Silence => {
                self.quarantine(u).await;
                Ok(false)
            }
        }
    }

    /// Serves one handle request.
    async fn serve(&mut self, io: &mut Io, u: usize, request: DeviceRequest) -> Result<(), End> {
        if self.units[u].state == UnitState::Quarantined {
            request.fail(DriverError::Offline);
            return Ok(());
        }
        let attempts = 1 + u32::from(self.units[u].cfg.retries);
        match request {
            DeviceRequest::Write {
                index,
                value,
                reply,
            } => {
                let encoded = match self.units[u]
                    .points
                    .get(index)
                    .map(|p| codec::encode(p, value))
                {
                    Some(Ok(encoded)) => encoded,
                    Some(Err(e)) => {
                        let _ = reply.send(Err(DriverError::Codec(e)));
                        return Ok(());
                    }
                    None => {
                        let _ = reply.send(Err(DriverError::UnknownPoint(index.to_string())));
                        return Ok(());
                    }
                };
                let result = self.write_point(io, u, index, &encoded, attempts).await?;
                let written = result.is_ok();
                let _ = reply.send(result);
                if written && self.units[u].is_polled(index) {
                    // Show the effect at once instead of waiting for the next poll.
                    if let Ok(value) = self.read_point(io, u, index, attempts).await? {
                        self.units[u].updates.publish(index, Some(value)).await;
                    }
                }
            }
            DeviceRequest::Read { index, reply } => {
                let result = self.read_point(io, u, index, attempts).await?;
                let value = result.as_ref().ok().copied();
                let _ = reply.send(result);
                if let (Some(value), true) = (value, self.units[u].is_polled(index)) {
                    self.units[u].updates.publish(index, Some(value)).await;
                }
            }
            DeviceRequest::Relinquish { reply, .. } => {
                let _ = reply.send(Err(DriverError::Unsupported(
                    "relinquish (Modbus has no command priorities)",
                )));
            }
        }
        Ok(())
    }

    async fn write_point(
        &mut self,
        io: &mut Io,
        u: usize,
        index: usize,
        encoded: &Encoded,
        attempts: u32,
    ) -> Result<Result<(), DriverError>, End> {
        let Some(address) = self.units[u].points.get(index).map(|p| p.address.address) else {
            return Ok(Err(DriverError::UnknownPoint(index.to_string())));
        };
        let request = match encoded {
            // FC05 write single coil.
            Encoded::Coil(on) => RtuRequest::WriteSingleCoil { address, on: *on },
            // FC06 write single register.
            Encoded::Registers(words) if words.len() == 1 => RtuRequest::WriteSingleRegister {
                address,
                value: words[0],
            },
            // FC16 write multiple registers (32/64-bit values in one request).
            Encoded::Registers(words) => RtuRequest::WriteMultipleRegisters {
                address,
                values: words.clone(),
            },
            // Read-modify-write: FC03 read the register, FC06 write it back with the bit changed.
            Encoded::RegisterBit { bit, on } => {
                let read = RtuRequest::Read {
                    function: ModbusTable::HoldingRegister.read_function_code(),
                    start: address,
                    count: 1,
                };
                let current = match self.exchange(io, u, &read, attempts).await? {
                    Answer::Data(RtuResponse::Words(words)) => {
                        words.first().copied().unwrap_or_default()
                    }
                    other => return Ok(Err(self.failure(u, &read, other).await)),
                };
                RtuRequest::WriteSingleRegister {
                    address,
                    value: Encoded::apply_bit(current, *bit, *on),
                }
            }
        };
        Ok(match self.exchange(io, u, &request, attempts).await? {
            Answer::Data(_) => Ok(()),
            other => Err(self.failure(u, &request, other).await),
        })
    }

    async fn read_point(
        &mut self,
        io: &mut Io,
        u: usize,
        index: usize,
        attempts: u32,
    ) -> Result<Result<Value, DriverError>, End> {
        let points = Arc::clone(&self.units[u].points);
        let Some(block) = ReadBlock::single(&points, index) else {
            return Ok(Err(DriverError::UnknownPoint(index.to_string())));
        };
        let request = RtuRequest::Read {
            function: block.function_code(),
            start: block.start,
            count: block.count,
        };
        Ok(match self.exchange(io, u, &request, attempts).await? {
            Answer::Data(RtuResponse::Bits(bits)) => {
                codec::decode(&points[index], &Raw::Bits(&bits)).map_err(DriverError::from)
            }
            Answer::Data(RtuResponse::Words(words)) => {
                codec::decode(&points[index], &Raw::Words(&words)).map_err(DriverError::from)
            }
            Answer::Data(RtuResponse::Written) => Err(DriverError::Transport(
                "a read was answered as a write".to_owned(),
            )),
            other => Err(self.failure(u, &request, other).await),
        })
    }

    /// The error for an exception or a missing answer; a missing answer quarantines the unit.
    async fn failure(&mut self, u: usize, request: &RtuRequest, answer: Answer) -> DriverError {
        match answer {
            Answer::Exception(code) => {
                let error = DriverError::Exception {
                    function: request.function(),
                    code,
                };
                self.units[u]
                    .health
                    .set_state(LinkState::Online, Some(error.to_string()));
                error
            }
            Answer::Silence => {
                self.quarantine(u).await;
                DriverError::Timeout
            }
            Answer::Data(_) => DriverError::Transport("unexpected answer".to_owned()),
        }
    }

    /// Sends one request to a unit and waits for its answer, up to `attempts` times. Keeps the
    /// counters and the statistics. Only a port failure is an `Err`.
    async fn exchange(
        &mut self,
        io: &mut Io,
        u: usize,
        request: &RtuRequest,
        attempts: u32,
    ) -> Result<Answer, LinkDown> {
        let unit_id = self.units[u].cfg.unit;
        let frame = request
            .encode(unit_id)
            .map_err(|e| LinkDown(format!("cannot frame a request: {e}")))?;
        for _ in 0..attempts.max(1) {
            let wait = self.units[u].cfg.timeout;
            self.units[u].health.count(|c| c.requests += 1);
            let done = self.transact(io, unit_id, &frame, request, wait).await?;
            if done.bad_frame {
                self.units[u].health.count(|c| c.bad_frames += 1);
            }
            match done.answer {
                Some(answer) => {
                    self.units[u].health.count(|c| c.responses += 1);
                    self.sync_unit_stats(u);
                    if self.units[u].state != UnitState::Online {
                        self.set_online(u);
                    }
                    return Ok(match answer {
                        Ok(data) => Answer::Data(data),
                        Err(code) => {
                            self.units[u].health.count(|c| c.exceptions += 1);
                            self.stat(|s| s.exceptions += 1);
                            Answer::Exception(code)
                        }
                    });
                }
                None => {
                    self.units[u].health.count(|c| c.timeouts += 1);
                    self.stat(|s| s.timeouts += 1);
                    self.sync_unit_stats(u);
                }
            }
        }
        Ok(Answer::Silence)
    }

    /// Sends one frame to `unit_id` and waits for the answer to `request` until `wait` after
    /// the frames' time on the wire. Keeps the line's silence and the bus's frame counts (the
    /// caller counts per unit). Only a port failure is an `Err`.
    async fn transact(
        &mut self,
        io: &mut Io,
        unit_id: u8,
        frame: &[u8],
        request: &RtuRequest,
        wait: Duration,
    ) -> Result<Transaction, LinkDown> {
        self.drain(io)?;
        if let Some(ready) = self.clock.ready_at() {
            sleep_until(ready).await;
        }
        io.write_all(frame)
            .await
            .map_err(|e| LinkDown(format!("write: {e}")))?;
        io.flush()
            .await
            .map_err(|e| LinkDown(format!("write: {e}")))?;
        let sent = Instant::now();
        self.clock.sent(sent, frame.len());
        self.stat(|s| s.frames_sent += 1);
        let deadline = sent
            + self
                .clock
                .transfer_time(frame.len(), request.response_len())
            + wait;
        self.buf.clear();
        let mut garbage = false;
        let mut chunk = [0u8; MAX_FRAME];
        let answer = loop {
            match scan_response(&self.buf, unit_id, request) {
                Scan::Frame {
                    skipped,
                    len,
                    answer,
                } => {
                    garbage |= skipped > 0;
                    self.buf.drain(..skipped + len);
                    break Some((len, answer));
                }
                Scan::NeedMore { skipped } => {
                    garbage |= skipped > 0;
                    self.buf.drain(..skipped);
                }
            }
            match timeout_at(deadline, io.read(&mut chunk)).await {
                Err(_) => break None,
                Ok(Ok(0)) => return Err(LinkDown("the port closed".to_owned())),
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
                Ok(Err(e)) => return Err(LinkDown(format!("read: {e}"))),
            }
        };
        let now = Instant::now();
        let bad_frame = garbage || (answer.is_none() && !self.buf.is_empty());
        if bad_frame {
            self.stat(|s| s.bad_frames += 1);
        }
        let answer = match answer {
            Some((len, answer)) => {
                self.clock.received(now, len);
                self.stat(|s| s.frames_received += 1);
                Some(answer)
            }
            None => {
                self.clock.noise(now);
                None
            }
        };
        Ok(Transaction {
            answer,
            bad_frame,
            elapsed: now - sent,
        })
    }

    /// Takes a scan asked for, unless one runs already.
    fn start_scan(&mut self, scan: ScanRequest) {
        if self.scan.is_some() {
            let _ = scan.reply.send(Err(ScanError::Busy {
                bus: self.cfg.name.clone(),
            }));
            return;
        }
        tracing::info!(bus = %self.cfg.name, units = ?scan.units, "unit scan started");
        self.scan = Some(ScanJob::new(scan));
        self.polls_since_probe = usize::MAX;
    }

    /// Probes the next unit of the scan in progress; answers the scan when it is done or out
    /// of time. A unit that does not answer is absent: no bus timeout, no quarantine.
    async fn scan_step(&mut self, io: &mut Io) -> Result<(), End> {
        let Some(mut job) = self.scan.take() else {
            return Ok(());
        };
        if Instant::now() >= job.deadline {
            tracing::info!(bus = %self.cfg.name, "unit scan out of time");
            job.out_of_time();
            return Ok(());
        }
        let Some(unit) = job.units.next() else {
            job.finish(Ok(Vec::new()));
            return Ok(());
        };
        match job.request.encode(unit) {
            Ok(frame) => {
                let request = job.request.clone();
                let wait = job.timeout;
                // The job is put back before the await, so a port failure ends it properly.
                self.scan = Some(job);
                let done = self.transact(io, unit, &frame, &request, wait).await?;
                let Some(job) = self.scan.as_mut() else {
                    return Ok(());
                };
                if let Some(answer) = done.answer {
                    job.found.push(UnitAnswer {
                        unit,
                        exception: answer.err(),
                        elapsed: done.elapsed,
                    });
                }
            }
            Err(error) => {
                // The probe was checked when the scan was asked for; this cannot happen.
                tracing::warn!(bus = %self.cfg.name, %error, "scan probe cannot be framed");
                self.scan = Some(job);
            }
        }
        if self.scan.as_ref().is_some_and(|job| job.units.is_empty())
            && let Some(mut job) = self.scan.take()
        {
            tracing::info!(bus = %self.cfg.name, found = job.found.len(), "unit scan done");
            let found = std::mem::take(&mut job.found);
            job.finish(Ok(found));
        }
        Ok(())
    }

    /// The port failed: the scan in progress ends with the port's error.
    fn end_scan_port_down(&mut self, error: &str) {
        if let Some(job) = self.scan.take() {
            job.finish(Err(ScanError::PortDown {
                bus: self.cfg.name.clone(),
                message: error.to_owned(),
            }));
        }
    }

    /// Reads and drops whatever is waiting on the line (a late answer, noise) before a request.
    fn drain(&mut self, io: &mut Io) -> Result<(), LinkDown> {
        let mut chunk = [0u8; MAX_FRAME];
        let mut stray = 0usize;
        loop {
            match io.read(&mut chunk).now_or_never() {
                None => break,
                Some(Ok(0)) => return Err(LinkDown("the port closed".to_owned())),
                Some(Ok(n)) => stray += n,
                Some(Err(e)) => return Err(LinkDown(format!("read: {e}"))),
            }
            if stray > 64 * MAX_FRAME {
                break;
            }
        }
        if stray > 0 {
            tracing::debug!(bus = %self.cfg.name, bytes = stray, "dropped stray bytes");
            self.stat(|s| s.bad_frames += 1);
            self.clock.noise(Instant::now());
        }
        Ok(())
    }

    fn set_online(&mut self, u: usize) {
        let now = Instant::now();
        let unit = &mut self.units[u];
        if unit.state == UnitState::Quarantined || unit.state == UnitState::Connecting {
            if unit.state == UnitState::Quarantined {
                tracing::info!(device = %unit.cfg.device, "unit answers again");
                unit.schedule.start(now);
            }
            unit.state = UnitState::Online;
        }
        unit.backoff.reset();
        unit.health.set_state(LinkState::Online, None);
        self.publish_unit_state(u);
    }

    /// The unit did not answer: its points become unavailable, its queue fails, it is probed
    /// after its backoff.
    async fn quarantine(&mut self, u: usize) {
        let now = Instant::now();
        let unit = &mut self.units[u];
        if unit.state == UnitState::Stopped {
            return;
        }
        let was = unit.state;
        unit.cycle = None;
        if was != UnitState::Quarantined {
            unit.state = UnitState::Quarantined;
            unit.next_probe = now + unit.backoff.next_delay();
            let message = format!(
                "unit {} did not answer within {} ms ({} tries)",
                unit.cfg.unit,
                unit.cfg.timeout.as_millis(),
                1 + u32::from(unit.cfg.retries)
            );
            tracing::warn!(device = %unit.cfg.device, error = %message, "unit quarantined");
            unit.health.set_state(LinkState::Offline, Some(message));
            while let Ok(request) = unit.requests.try_recv() {
                request.fail(DriverError::Offline);
            }
            self.publish_unit_state(u);
            self.unit_unavailable(u).await;
        }
    }

    /// Every unit is down with the port.
    async fn all_units_down(&mut self, error: &str) {
        for u in 0..self.units.len() {
            let unit = &mut self.units[u];
            if unit.state == UnitState::Stopped {
                continue;
            }
            unit.cycle = None;
            unit.state = UnitState::Quarantined;
            unit.health
                .set_state(LinkState::Offline, Some(format!("bus port: {error}")));
            while let Ok(request) = unit.requests.try_recv() {
                request.fail(DriverError::Offline);
            }
            self.publish_unit_state(u);
            self.unit_unavailable(u).await;
        }
    }

    async fn unit_unavailable(&mut self, u: usize) {
        for index in 0..self.units[u].points.len() {
            if self.units[u].is_polled(index) {
                self.units[u].updates.publish(index, None).await;
            }
        }
    }

    fn on_stop(&mut self, stop: Option<StopSignal>) -> Result<(), Finished> {
        match stop {
            Some(StopSignal::Unit(u)) => self.stop_unit(u),
            Some(StopSignal::Bus) | None => Err(Finished),
        }
    }

    /// A unit's handles were shut down or dropped. Ends the owner when no unit is left.
    fn stop_unit(&mut self, u: usize) -> Result<(), Finished> {
        if let Some(unit) = self.units.get_mut(u)
            && unit.state != UnitState::Stopped
        {
            unit.state = UnitState::Stopped;
            unit.cycle = None;
            unit.requests.close();
            while let Ok(request) = unit.requests.try_recv() {
                request.fail(DriverError::Closed);
            }
            unit.health.set_state(LinkState::Offline, None);
            tracing::debug!(device = %unit.cfg.device, "unit stopped");
            self.publish_unit_state(u);
        }
        if self
            .units
            .iter()
            .all(|unit| unit.state == UnitState::Stopped)
        {
            Err(Finished)
        } else {
            Ok(())
        }
    }

    fn finish(&mut self) {
        for u in 0..self.units.len() {
            let _ = self.stop_unit(u);
        }
        if let Some(job) = self.scan.take() {
            job.finish(Err(ScanError::Closed {
                bus: self.cfg.name.clone(),
            }));
        }
        self.scans.close();
        self.stat(|s| s.open = false);
        tracing::debug!(bus = %self.cfg.name, "bus stopped");
    }

    /// Counters change without waking stats watchers.
    fn stat(&self, change: impl FnOnce(&mut RtuBusStats)) {
        let elapsed = self.started.elapsed();
        self.stats.send_if_modified(|s| {
            change(s);
            s.elapsed = elapsed;
            false
        });
    }

    /// Copies a unit's poll count and counters into the statistics without waking watchers.
    fn sync_unit_stats(&self, u: usize) {
        let unit = &self.units[u];
        let counters = unit.health.counters();
        let elapsed = self.started.elapsed();
        self.stats.send_if_modified(|s| {
            s.elapsed = elapsed;
            if let Some(entry) = s.units.get_mut(u) {
                entry.polls = unit.polls;
                entry.counters = counters;
            }
            false
        });
    }

    /// Copies a unit's state and counters into the statistics and wakes watchers.
    fn publish_unit_state(&self, u: usize) {
        let unit = &self.units[u];
        let counters = unit.health.counters();
        let elapsed = self.started.elapsed();
        self.stats.send_modify(|s| {
            s.elapsed = elapsed;
            if let Some(entry) = s.units.get_mut(u) {
                entry.state = unit.state;
                entry.polls = unit.polls;
                entry.counters = counters;
            }
        });
    }
}

impl Drop for BusOwner {
    fn drop(&mut self) {
        // Keep the per-unit figures in the statistics current at the end.
        for u in 0..self.units.len() {
            self.sync_unit_stats(u);
        }
    }
}

/// The next request of any running unit (`None` request: that unit's handles are all gone).
async fn next_request(units: &mut [Unit]) -> (usize, Option<DeviceRequest>) {
    std::future::poll_fn(|cx| {
        for (u, unit) in units.iter_mut().enumerate() {
            if unit.state == UnitState::Stopped {
                continue;
            }
            if let Poll::Ready(request) = unit.requests.poll_recv(cx) {
                return Poll::Ready((u, request));
            }
        }
        Poll::Pending
    })
    .await
}

/// Opens the serial port or connects to the serial server, bounded by the open timeout.
async fn open_link(cfg: RtuBusConfig) -> Result<Io, String> {
    match &cfg.link {
        RtuLink::Serial { path, line } => {
            use tokio_serial::SerialPortBuilderExt as _;
            let builder = tokio_serial::new(path, line.baud)
                .data_bits(if line.data_bits == 7 {
                    tokio_serial::DataBits::Seven
                } else {
                    tokio_serial::DataBits::Eight
                })
                .parity(match line.parity {
                    Parity::None => tokio_serial::Parity::None,
                    Parity::Even => tokio_serial::Parity::Even,
                    Parity::Odd => tokio_serial::Parity::Odd,
                })
                .stop_bits(if line.stop_bits == 2 {
                    tokio_serial::StopBits::Two
                } else {
                    tokio_serial::StopBits::One
                });
            let stream = builder
                .open_native_async()
                .map_err(|e| format!("open {path}: {e}"))?;
            Ok(Box::new(stream))
        }
        RtuLink::Tcp { addr, .. } => {
            let stream = timeout(cfg.open_timeout, tokio::net::TcpStream::connect(addr))
                .await
                .map_err(|_| format!("connect to {addr}: no answer in time"))?
                .map_err(|e| format!("connect to {addr}: {e}"))?;
            stream
                .set_nodelay(true)
                .map_err(|e| format!("connect to {addr}: {e}"))?;
            Ok(Box::new(stream))
        }
    }
}

/// A deadline that never comes (for a disabled `select!` branch, which still evaluates it).
fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365)
}
