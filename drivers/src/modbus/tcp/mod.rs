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
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

pub use crate::device::{
    Counters, DeviceHandle, DeviceHealth, DriverError, LinkState, PointUpdate,
};
use crate::device::{HealthSender, PointInfo};
use crate::point::ModbusPoint;

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
    let (health_tx, health_rx) = HealthSender::channel(&cfg.device);
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let device = cfg.device.clone();
    let mut owner = owner::Owner::new(
        cfg,
        Arc::clone(&points),
        usable.clone(),
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
    let names = points
        .iter()
        .enumerate()
        .filter(|(i, _)| usable[*i])
        .map(|(i, p)| PointInfo {
            name: p.name.clone(),
            index: i,
            access: p.access,
        })
        .collect();
    DeviceHandle::new(device, names, commands_tx, health_rx, stop_tx)
}
