//! Modbus TCP device driver: one owner task per device connection, and a cloneable [`DeviceHandle`] that queues writes and reads for it.
//!
//! The owner task (see `owner.rs`) is the only code that touches the socket. It
//!
//! * connects with `tokio_modbus::client::tcp::connect_slave`, every attempt bounded by
//!   [`TcpDeviceConfig::request_timeout`];
//! * polls the device every [`TcpDeviceConfig::poll_interval`] with the block reads planned by
//!   [`plan_reads`](crate::modbus::codec::plan_reads) (FC01/FC02/FC03/FC04), every request wrapped
//!   in `tokio::time::timeout` (tokio-modbus has no timeout of its own);
//! * serves handle requests from a bounded queue before the next poll request: the queue is checked
//!   between every single request, so a scene's write waits for at most the one request in flight;
//! * keeps a device exception (`Ok(Err(ExceptionCode))`) apart from a transport failure: an
//!   exception fails that request and is counted, the link stays up; a timeout or transport error
//!   drops the connection, marks the device [`LinkState::Offline`], publishes `None` for every
//!   polled point and reconnects with exponential backoff (`backoff_min` doubling up to `backoff_max`,
//!   reset by the next answer from the device);
//! * publishes a [`PointUpdate`] only when a polled point's value changes (the first value always
//!   counts as a change, `None` means unavailable). Write-only points get no updates.
//!
//! Points are named; [`DeviceHandle::write`] and [`DeviceHandle::read`] take the name. Points that
//! fail [`ModbusPoint::validate`](crate::point::ModbusPoint::validate) or repeat an earlier name are
//! logged and left out (they answer [`DriverError::UnknownPoint`]); the gateway should run
//! [`validate_points`](crate::point::validate_points) at load time so that never happens.

mod owner;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::sync::{mpsc, oneshot, watch};

use crate::modbus::codec::{self, CodecError, Encoded};
use crate::point::{ModbusPoint, Value};

/// Settings of one Modbus TCP device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpDeviceConfig {
    /// Device name, copied into every [`PointUpdate`].
    pub device: String,
    /// IP address and port (usually 502).
    pub addr: SocketAddr,
    /// Modbus unit identifier (255 for a device addressed by IP alone; the id of the serial
    /// device behind a TCP gateway otherwise).
    pub unit: u8,
    /// Time from the start of one poll cycle to the start of the next.
    pub poll_interval: Duration,
    /// Longest wait for a connection or for the answer to one request.
    pub request_timeout: Duration,
    /// First reconnect delay (at least 1 ms).
    pub backoff_min: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
    /// Handle requests that may wait for the owner task (at least 1); more fail with
    /// [`DriverError::QueueFull`].
    pub queue_depth: usize,
    /// Unused addresses allowed inside one block read (see `plan_reads`).
    pub max_gap: u16,
}

impl TcpDeviceConfig {
    /// Defaults: poll every 1 s, 1 s timeout, backoff 1 s to 60 s, queue of 32, gap of 8.
    #[must_use]
    pub fn new(device: impl Into<String>, addr: SocketAddr, unit: u8) -> Self {
        TcpDeviceConfig {
            device: device.into(),
            addr,
            unit,
            poll_interval: Duration::from_secs(1),
            request_timeout: Duration::from_secs(1),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            queue_depth: 32,
            max_gap: 8,
        }
    }

    fn sanitized(mut self) -> Self {
        self.queue_depth = self.queue_depth.max(1);
        self.backoff_min = self.backoff_min.max(Duration::from_millis(1));
        self.backoff_max = self.backoff_max.max(self.backoff_min);
        self
    }
}

/// A point's new value. `None` means the point is unavailable (device offline, exception, or a
/// value that cannot be decoded).
#[derive(Debug, Clone, PartialEq)]
pub struct PointUpdate {
    /// [`TcpDeviceConfig::device`].
    pub device: String,
    /// [`ModbusPoint::name`].
    pub point: String,
    /// The new value, or `None` for unavailable.
    pub value: Option<Value>,
}

/// State of the link to a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkState {
    /// First connection attempt under way; handle requests wait in the queue.
    Connecting,
    /// The device answers.
    Online,
    /// The last connection attempt or request failed; requests fail fast with
    /// [`DriverError::Offline`] until the device answers again.
    Offline,
}

impl fmt::Display for LinkState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LinkState::Connecting => "connecting",
            LinkState::Online => "online",
            LinkState::Offline => "offline",
        })
    }
}

/// Request statistics since the driver started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Requests sent (connection attempts not included).
    pub requests: u64,
    /// Answers received, exception answers included.
    pub responses: u64,
    /// Requests and connection attempts that got no answer in time.
    pub timeouts: u64,
    /// Exception answers.
    pub exceptions: u64,
    /// Connection failures and broken or malformed answers.
    pub transport_errors: u64,
}

/// A snapshot of a device's link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceHealth {
    /// Link state.
    pub state: LinkState,
    /// The most recent failure, kept after recovery for diagnosis.
    pub last_error: Option<String>,
    /// Request statistics.
    pub counters: Counters,
}

/// Why a handle request failed.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum DriverError {
    /// No point of that name on this device.
    #[error("no point named `{0}` on this device")]
    UnknownPoint(String),
    /// The point's access does not allow writing.
    #[error("point `{0}` is not writable")]
    NotWritable(String),
    /// The value does not fit the point.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The device answered with a Modbus exception (the link stays up).
    #[error("the device refused FC{function:02} with exception {code:02} ({})", exception_name(*code))]
    Exception {
        /// Function code of the request.
        function: u8,
        /// Modbus exception code (01 illegal function, 02 illegal data address, ...).
        code: u8,
    },
    /// No answer within the request timeout (the connection is dropped).
    #[error("the device did not answer in time")]
    Timeout,
    /// The connection failed or the answer was malformed (the connection is dropped).
    #[error("connection failed: {0}")]
    Transport(String),
    /// The device is offline; nothing was sent.
    #[error("the device is offline")]
    Offline,
    /// Too many requests are waiting for this device; nothing was queued.
    #[error("too many requests are waiting for this device")]
    QueueFull,
    /// The driver has stopped.
    #[error("the device driver has stopped")]
    Closed,
}

impl DriverError {
    /// Whether the error ends the connection (timeout or transport failure).
    #[must_use]
    pub fn is_link_failure(&self) -> bool {
        matches!(self, DriverError::Timeout | DriverError::Transport(_))
    }
}

/// Name of a Modbus exception code (Modbus Application Protocol V1.1b3, 7).
#[must_use]
pub fn exception_name(code: u8) -> &'static str {
    match code {
        0x01 => "illegal function",
        0x02 => "illegal data address",
        0x03 => "illegal data value",
        0x04 => "server device failure",
        0x05 => "acknowledge",
        0x06 => "server device busy",
        0x08 => "memory parity error",
        0x0a => "gateway path unavailable",
        0x0b => "gateway target device failed to respond",
        _ => "unknown exception",
    }
}

/// A request from a handle to the owner task.
#[derive(Debug)]
enum Command {
    Write {
        index: usize,
        encoded: Encoded,
        reply: oneshot::Sender<Result<(), DriverError>>,
    },
    Read {
        index: usize,
        reply: oneshot::Sender<Result<Value, DriverError>>,
    },
}

impl Command {
    fn fail(self, error: DriverError) {
        // The caller may have given up waiting; nothing to do then.
        match self {
            Command::Write { reply, .. } => {
                let _ = reply.send(Err(error));
            }
            Command::Read { reply, .. } => {
                let _ = reply.send(Err(error));
            }
        }
    }
}

/// Cloneable access to one device's owner task. The task ends on [`DeviceHandle::shutdown`] or
/// when the last handle is dropped.
#[derive(Debug, Clone)]
pub struct DeviceHandle {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    device: String,
    points: Arc<[ModbusPoint]>,
    by_name: HashMap<String, usize>,
    commands: mpsc::Sender<Command>,
    health: watch::Receiver<DeviceHealth>,
    stop: watch::Sender<bool>,
}

/// Starts the owner task of one Modbus TCP device (needs a Tokio runtime). Updates go to
/// `updates`; the task waits when that channel is full.
pub fn spawn_tcp_device(
    cfg: TcpDeviceConfig,
    points: Vec<ModbusPoint>,
    updates: mpsc::Sender<PointUpdate>,
) -> DeviceHandle {
    let cfg = cfg.sanitized();
    let points: Arc<[ModbusPoint]> = points.into();
    let mut by_name = HashMap::new();
    let mut usable = vec![false; points.len()];
    for (index, point) in points.iter().enumerate() {
        if let Err(error) = point.validate() {
            tracing::warn!(device = %cfg.device, point = %point.name, %error, "point ignored");
            continue;
        }
        if by_name.contains_key(&point.name) {
            tracing::warn!(device = %cfg.device, point = %point.name, "point name repeated; the later point is ignored");
            continue;
        }
        by_name.insert(point.name.clone(), index);
        usable[index] = true;
    }

    let (commands_tx, commands_rx) = mpsc::channel(cfg.queue_depth);
    let (health_tx, health_rx) = watch::channel(DeviceHealth {
        state: LinkState::Connecting,
        last_error: None,
        counters: Counters::default(),
    });
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let device = cfg.device.clone();
    let mut owner = owner::Owner::new(
        cfg,
        Arc::clone(&points),
        usable,
        updates,
        health_tx,
        commands_rx,
    );
    tokio::spawn(async move {
        tokio::select! {
            biased;
            // Err means every handle is gone: stop as well.
            _ = stop_rx.wait_for(|stop| *stop) => {}
            () = owner.run() => {}
        }
        owner.stopped();
    });
    DeviceHandle {
        shared: Arc::new(Shared {
            device,
            points,
            by_name,
            commands: commands_tx,
            health: health_rx,
            stop: stop_tx,
        }),
    }
}

impl DeviceHandle {
    /// Writes a point (FC05, FC06, FC16, or FC03+FC06 for a register bit). Served before the next
    /// poll request. Fails at once with [`DriverError::Offline`] while the device is offline and
    /// with [`DriverError::QueueFull`] when too many requests wait.
    pub async fn write(&self, point: &str, value: Value) -> Result<(), DriverError> {
        let (index, p) = self.lookup(point)?;
        if !p.access.can_write() {
            return Err(DriverError::NotWritable(point.to_owned()));
        }
        let encoded = codec::encode(p, value)?;
        let (reply, answer) = oneshot::channel();
        self.submit(Command::Write {
            index,
            encoded,
            reply,
        })?;
        answer.await.map_err(|_| DriverError::Closed)?
    }

    /// Reads a point now, through the owner task (one request). Any point can be read this way,
    /// write-only ones included (they are only left out of polling); a changed value of a polled
    /// point is also published as a [`PointUpdate`].
    pub async fn read(&self, point: &str) -> Result<Value, DriverError> {
        let (index, _) = self.lookup(point)?;
        let (reply, answer) = oneshot::channel();
        self.submit(Command::Read { index, reply })?;
        answer.await.map_err(|_| DriverError::Closed)?
    }

    /// The current link state and counters.
    #[must_use]
    pub fn health(&self) -> DeviceHealth {
        self.shared.health.borrow().clone()
    }

    /// A receiver that wakes on link-state and `last_error` changes (counters change silently;
    /// read them with `borrow`).
    #[must_use]
    pub fn watch_health(&self) -> watch::Receiver<DeviceHealth> {
        self.shared.health.clone()
    }

    /// Stops the owner task; queued and later requests fail with [`DriverError::Closed`].
    pub fn shutdown(&self) {
        self.shared.stop.send_replace(true);
    }

    /// The device name.
    #[must_use]
    pub fn device(&self) -> &str {
        &self.shared.device
    }

    /// The points as given to [`spawn_tcp_device`].
    #[must_use]
    pub fn points(&self) -> &[ModbusPoint] {
        &self.shared.points
    }

    fn lookup(&self, name: &str) -> Result<(usize, &ModbusPoint), DriverError> {
        self.shared
            .by_name
            .get(name)
            .and_then(|&i| self.shared.points.get(i).map(|p| (i, p)))
            .ok_or_else(|| DriverError::UnknownPoint(name.to_owned()))
    }

    fn submit(&self, command: Command) -> Result<(), DriverError> {
        if self.shared.commands.is_closed() {
            return Err(DriverError::Closed);
        }
        if self.shared.health.borrow().state == LinkState::Offline {
            return Err(DriverError::Offline);
        }
        self.shared
            .commands
            .try_send(command)
            .map_err(|error| match error {
                mpsc::error::TrySendError::Full(_) => DriverError::QueueFull,
                mpsc::error::TrySendError::Closed(_) => DriverError::Closed,
            })
    }
}
