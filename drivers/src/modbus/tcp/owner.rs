//! The owner task of one Modbus TCP device: connection, polling, the priority lane for handle requests, offline handling and backoff.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until, timeout};
use tokio_modbus::client::{Client as _, Context};
use tokio_modbus::{Request, Response, Slave};

use super::{DriverError, LinkState, PointUpdate, TcpDeviceConfig};
use crate::device::{Backoff, HandlesGone, HealthSender, PointPublisher, Request as DeviceRequest};
use crate::modbus::codec::{self, Encoded, Raw, ReadBlock};
use crate::modbus::schedule::PollSchedule;
use crate::point::{ModbusPoint, ModbusTable, Value};

/// A request failed in a way that ends the connection.
struct LinkDown(DriverError);

/// Why a session ended.
enum SessionEnd {
    LinkDown(DriverError),
    HandlesGone,
}

impl From<LinkDown> for SessionEnd {
    fn from(LinkDown(error): LinkDown) -> Self {
        SessionEnd::LinkDown(error)
    }
}

impl From<HandlesGone> for SessionEnd {
    fn from(_: HandlesGone) -> Self {
        SessionEnd::HandlesGone
    }
}

/// Data of one block read.
enum BlockData {
    Bits(Vec<bool>),
    Words(Vec<u16>),
}

impl BlockData {
    fn raw_from(&self, offset: usize) -> Raw<'_> {
        match self {
            BlockData::Bits(bits) => Raw::Bits(bits.get(offset..).unwrap_or_default()),
            BlockData::Words(words) => Raw::Words(words.get(offset..).unwrap_or_default()),
        }
    }
}

pub(super) struct Owner {
    cfg: TcpDeviceConfig,
    points: Arc<[ModbusPoint]>,
    /// Points that passed validation and have a unique name.
    usable: Vec<bool>,
    /// Block reads grouped by poll interval.
    schedule: PollSchedule,
    updates: PointPublisher,
    health: HealthSender,
    commands: mpsc::Receiver<DeviceRequest>,
    backoff: Backoff,
}

impl Owner {
    pub(super) fn new(
        cfg: TcpDeviceConfig,
        points: Arc<[ModbusPoint]>,
        usable: Vec<bool>,
        updates: mpsc::Sender<PointUpdate>,
        health: HealthSender,
        commands: mpsc::Receiver<DeviceRequest>,
    ) -> Self {
        let mut blocks = codec::plan_reads(&points, cfg.max_gap);
        for block in &mut blocks {
            block
                .points
                .retain(|&i| usable.get(i).copied().unwrap_or(false));
        }
        blocks.retain(|b| !b.points.is_empty());
        let schedule = PollSchedule::new(blocks, cfg.poll_interval);
        let names = points.iter().map(|p| p.name.clone()).collect();
        Owner {
            backoff: Backoff::new(cfg.backoff_min, cfg.backoff_max),
            updates: PointPublisher::new(&cfg.device, names, updates),
            cfg,
            points,
            usable,
            schedule,
            health,
            commands,
        }
    }

    /// Connect, poll, serve, fall offline, back off, reconnect; until the handles are gone.
    pub(super) async fn run(&mut self) {
        loop {
            let error = match self.connect().await {
                Err(HandlesGone) => return,
                Ok(Err(error)) => error,
                Ok(Ok(mut context)) => match self.session(&mut context).await {
                    SessionEnd::HandlesGone => return,
                    SessionEnd::LinkDown(error) => error,
                },
            };
            self.go_offline(&error).await;
            if self.backoff.wait(&mut self.commands).await.is_err() {
                return;
            }
        }
    }

    /// Called once the task is told to stop: refuse further requests, report the link as down.
    pub(super) fn stopped(&mut self) {
        self.commands.close();
        self.health.set_state(LinkState::Offline, None);
        tracing::debug!(device = %self.cfg.device, "driver stopped");
    }

    /// One connection attempt, bounded by the request timeout. After the first failure, handle
    /// requests arriving meanwhile fail fast with `Offline`; during the very first attempt they
    /// wait in the queue.
    async fn connect(&mut self) -> Result<Result<Context, DriverError>, HandlesGone> {
        let first_attempt = self.health.state() == LinkState::Connecting;
        let addr = self.cfg.addr;
        let attempt = timeout(
            self.cfg.request_timeout,
            tokio_modbus::client::tcp::connect_slave(addr, Slave(self.cfg.unit)),
        );
        tokio::pin!(attempt);
        loop {
            tokio::select! {
                biased;
                result = &mut attempt => {
                    return Ok(match result {
                        Ok(Ok(context)) => {
                            tracing::debug!(device = %self.cfg.device, %addr, "connected");
                            Ok(context)
                        }
                        Ok(Err(error)) => {
                            self.health.count(|c| c.transport_errors += 1);
                            Err(DriverError::Transport(format!("connect to {addr}: {error}")))
                        }
                        Err(_) => {
                            self.health.count(|c| c.timeouts += 1);
                            Err(DriverError::Timeout)
                        }
                    });
                }
                command = self.commands.recv(), if !first_attempt => match command {
                    Some(command) => command.fail(DriverError::Offline),
                    None => return Err(HandlesGone),
                },
            }
        }
    }

    /// Poll and serve over one connection until it fails or the handles are gone.
    async fn session(&mut self, context: &mut Context) -> SessionEnd {
        match self.session_inner(context).await {
            Ok(never) => match never {},
            Err(end) => end,
        }
    }

    async fn session_inner(
        &mut self,
        context: &mut Context,
    ) -> Result<std::convert::Infallible, SessionEnd> {
        if self.schedule.is_empty() {
            // Nothing to poll: a connection is all the evidence there will be.
            self.health.set_online();
        }
        self.schedule.start(Instant::now());
        loop {
            self.serve_queued(context).await?;
            if let Some(group) = self.schedule.due(Instant::now()) {
                self.poll_group(context, group).await?;
                self.schedule.polled(group, Instant::now());
                continue;
            }
            let next_poll = self.schedule.next_due();
            tokio::select! {
                biased;
                command = self.commands.recv() => match command {
                    Some(command) => self.serve(context, command).await?,
                    None => return Err(SessionEnd::HandlesGone),
                },
                () = sleep_until(next_poll.unwrap_or_else(far_future)), if next_poll.is_some() => {}
            }
        }
    }

    /// The priority lane: serve every queued handle request.
    async fn serve_queued(&mut self, context: &mut Context) -> Result<(), SessionEnd> {
        loop {
            match self.commands.try_recv() {
                Ok(command) => self.serve(context, command).await?,
                Err(mpsc::error::TryRecvError::Empty) => return Ok(()),
                Err(mpsc::error::TryRecvError::Disconnected) => return Err(HandlesGone.into()),
            }
        }
    }

    /// Read every block of one poll group once, checking the priority lane before each request.
    async fn poll_group(&mut self, context: &mut Context, group: usize) -> Result<(), SessionEnd> {
        let blocks = self
            .schedule
            .group(group)
            .map(|g| g.blocks.clone())
            .unwrap_or_default();
        let mut to_split = Vec::new();
        for (b, block) in blocks.iter().enumerate() {
            self.serve_queued(context).await?;
            if self.poll_block(context, block).await? {
                to_split.push(b);
            }
        }
        if !to_split.is_empty() {
            let split = self.split_blocks(blocks, &to_split);
            self.schedule.set_blocks(group, split);
        }
        Ok(())
    }

    /// Reads one block and publishes its points. Returns whether the block should be split
    /// (the device refused a merged read with exception 02: some address inside is not mapped).
    async fn poll_block(
        &mut self,
        context: &mut Context,
        block: &ReadBlock,
    ) -> Result<bool, LinkDown> {
        let points = Arc::clone(&self.points);
        match self
            .read_block(context, block.table, block.start, block.count)
            .await
        {
            Ok(data) => {
                for &i in &block.points {
                    // Blocks come from `plan_reads`, so every member lies inside its block.
                    let offset = block.offset_of(&points[i]).unwrap_or_default();
                    let value = codec::decode(&points[i], &data.raw_from(offset));
                    if let Err(error) = &value {
                        tracing::debug!(device = %self.cfg.device, point = %points[i].name, %error, "point unavailable");
                    }
                    self.updates.publish(i, value.ok()).await;
                }
                Ok(false)
            }
            Err(error) if error.is_link_failure() => Err(LinkDown(error)),
            Err(error) => {
                tracing::debug!(device = %self.cfg.device, start = block.start, count = block.count, %error, "block read refused");
                for &i in &block.points {
                    self.updates.publish(i, None).await;
                }
                let merged = block.points.len() > 1;
                Ok(merged && matches!(error, DriverError::Exception { code: 0x02, .. }))
            }
        }
    }

    fn split_blocks(&self, old: Vec<ReadBlock>, to_split: &[usize]) -> Vec<ReadBlock> {
        let mut blocks = Vec::new();
        for (b, block) in old.into_iter().enumerate() {
            if to_split.contains(&b) {
                tracing::warn!(
                    device = %self.cfg.device,
                    table = %block.table,
                    start = block.start,
                    count = block.count,
                    "device refused a merged read (exception 02); reading these points one by one"
                );
                blocks.extend(
                    block
                        .points
                        .iter()
                        .filter_map(|&i| ReadBlock::single(&self.points, i)),
                );
            } else {
                blocks.push(block);
            }
        }
        blocks
    }

    /// Serves one handle request. The reply goes out before any follow-up read.
    async fn serve(
        &mut self,
        context: &mut Context,
        command: DeviceRequest,
    ) -> Result<(), LinkDown> {
        match command {
            DeviceRequest::Write {
                index,
                value,
                reply,
            } => {
                let result = match self.points.get(index).map(|p| codec::encode(p, value)) {
                    Some(Ok(encoded)) => self.write_point(context, index, &encoded).await,
                    Some(Err(e)) => Err(DriverError::Codec(e)),
                    None => Err(DriverError::UnknownPoint(index.to_string())),
                };
                let link_failure = result
                    .as_ref()
                    .err()
                    .filter(|e| e.is_link_failure())
                    .cloned();
                let written = result.is_ok();
                let _ = reply.send(result);
                if let Some(error) = link_failure {
                    return Err(LinkDown(error));
                }
                if written && self.is_polled(index) {
                    // Show the effect at once instead of waiting for the next poll.
                    self.refresh(context, index).await?;
                }
                Ok(())
            }
            DeviceRequest::Relinquish { index, reply } => {
                tracing::debug!(
                    point = index,
                    "relinquish refused: Modbus has no priorities"
                );
                let _ = reply.send(Err(DriverError::Unsupported(
                    "relinquish (Modbus has no command priorities)",
                )));
                Ok(())
            }
            DeviceRequest::Read { index, reply } => {
                let result = self.read_point(context, index).await;
                let link_failure = result
                    .as_ref()
                    .err()
                    .filter(|e| e.is_link_failure())
                    .cloned();
                let value = result.as_ref().ok().copied();
                let _ = reply.send(result);
                if let Some(error) = link_failure {
                    return Err(LinkDown(error));
                }
                if let (Some(value), true) = (value, self.is_polled(index)) {
                    self.updates.publish(index, Some(value)).await;
                }
                Ok(())
            }
        }
    }

    fn is_polled(&self, index: usize) -> bool {
        self.usable.get(index).copied().unwrap_or(false)
            && self.points.get(index).is_some_and(|p| p.access.can_read())
    }

    async fn refresh(&mut self, context: &mut Context, index: usize) -> Result<(), LinkDown> {
        match self.read_point(context, index).await {
            Ok(value) => self.updates.publish(index, Some(value)).await,
            Err(error) if error.is_link_failure() => return Err(LinkDown(error)),
            Err(error) => {
                tracing::debug!(device = %self.cfg.device, index, %error, "read-back after write failed");
            }
        }
        Ok(())
    }

    async fn write_point(
        &mut self,
        context: &mut Context,
        index: usize,
        encoded: &Encoded,
    ) -> Result<(), DriverError> {
        let address = self
            .points
            .get(index)
            .map(|p| p.address.address)
            .ok_or(DriverError::Closed)?;
        let request = match encoded {
            // FC05 write single coil.
            Encoded::Coil(on) => Request::WriteSingleCoil(address, *on),
            // FC06 write single register.
            Encoded::Registers(words) if words.len() == 1 => {
                Request::WriteSingleRegister(address, words[0])
            }
            // FC16 write multiple registers (32-bit values go in one request).
            Encoded::Registers(words) => {
                Request::WriteMultipleRegisters(address, Cow::Owned(words.clone()))
            }
            // Read-modify-write: FC03 read the register, FC06 write it back with the bit changed.
            Encoded::RegisterBit { bit, on } => {
                let current = match self
                    .read_block(context, ModbusTable::HoldingRegister, address, 1)
                    .await?
                {
                    BlockData::Words(words) => words.first().copied().unwrap_or_default(),
                    BlockData::Bits(_) => return Err(self.malformed("FC03 answered with bits")),
                };
                Request::WriteSingleRegister(address, Encoded::apply_bit(current, *bit, *on))
            }
        };
        self.exchange(context, request).await.map(drop)
    }

    async fn read_point(
        &mut self,
        context: &mut Context,
        index: usize,
    ) -> Result<Value, DriverError> {
        let points = Arc::clone(&self.points);
        let block = ReadBlock::single(&points, index).ok_or(DriverError::Closed)?;
        let data = self
            .read_block(context, block.table, block.start, block.count)
            .await?;
        Ok(codec::decode(&points[index], &data.raw_from(0))?)
    }

    /// One read request: FC01, FC02, FC03 or FC04.
    async fn read_block(
        &mut self,
        context: &mut Context,
        table: ModbusTable,
        start: u16,
        count: u16,
    ) -> Result<BlockData, DriverError> {
        let request = match table {
            ModbusTable::Coil => Request::ReadCoils(start, count),
            ModbusTable::DiscreteInput => Request::ReadDiscreteInputs(start, count),
            ModbusTable::HoldingRegister => Request::ReadHoldingRegisters(start, count),
            ModbusTable::InputRegister => Request::ReadInputRegisters(start, count),
        };
        let wanted = usize::from(count);
        match self.exchange(context, request).await? {
            Response::ReadCoils(mut bits) | Response::ReadDiscreteInputs(mut bits)
                if bits.len() >= wanted =>
            {
                bits.truncate(wanted);
                Ok(BlockData::Bits(bits))
            }
            Response::ReadHoldingRegisters(words) | Response::ReadInputRegisters(words)
                if words.len() >= wanted =>
            {
                Ok(BlockData::Words(words))
            }
            other => Err(self.malformed(&format!(
                "short answer to FC{:02}: {other:?}",
                table.read_function_code()
            ))),
        }
    }

    fn malformed(&self, what: &str) -> DriverError {
        self.health.count(|c| c.transport_errors += 1);
        DriverError::Transport(format!("malformed answer: {what}"))
    }

    /// Sends one request and waits for its answer, at most `request_timeout`. Keeps the
    /// counters, and treats any answer (exceptions included) as proof that the device lives.
    async fn exchange(
        &mut self,
        context: &mut Context,
        request: Request<'_>,
    ) -> Result<Response, DriverError> {
        let function = request.function_code().value();
        self.health.count(|c| c.requests += 1);
        match timeout(self.cfg.request_timeout, context.call(request)).await {
            Err(_) => {
                self.health.count(|c| c.timeouts += 1);
                Err(DriverError::Timeout)
            }
            Ok(Err(error)) => {
                self.health.count(|c| c.transport_errors += 1);
                Err(DriverError::Transport(error.to_string()))
            }
            Ok(Ok(answer)) => {
                self.health.count(|c| c.responses += 1);
                self.backoff.reset();
                self.health.set_online();
                answer.map_err(|code| {
                    self.health.count(|c| c.exceptions += 1);
                    let error = DriverError::Exception {
                        function,
                        code: code.into(),
                    };
                    self.health.set_last_error(error.to_string());
                    error
                })
            }
        }
    }

    async fn go_offline(&mut self, error: &DriverError) {
        let message = match error {
            DriverError::Timeout => format!(
                "no answer from {} within {} ms",
                self.cfg.addr,
                self.cfg.request_timeout.as_millis()
            ),
            other => other.to_string(),
        };
        self.health.set_offline(message);
        // Only polled points ever get values, so only they are told they have none.
        for index in 0..self.points.len() {
            if self.is_polled(index) {
                self.updates.publish(index, None).await;
            }
        }
    }
}

/// A deadline that never comes (for a disabled `select!` branch, which still evaluates it).
pub(crate) fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365)
}
