//! The protocol-agnostic face of every field device: named points in, values and health out.
//!
//! Every protocol (Modbus TCP today; RTU buses, BACnet/IP and serial line devices plug in the
//! same way) runs an owner task per connection or bus and hands out a [`DeviceHandle`]. The
//! gateway only ever sees this module: it writes and reads points by name, receives
//! [`PointUpdate`]s on a channel, and watches [`DeviceHealth`]. Protocol details (addresses,
//! codecs, function codes) stay in the protocol modules.

use std::fmt;
use std::sync::Arc;

use thiserror::Error;
use tokio::sync::{mpsc, oneshot, watch};

use crate::modbus::codec::CodecError;
use crate::point::{Access, Value};

/// A point's new value. `None` means the point is unavailable (device offline, exception, or a
/// value that cannot be decoded).
#[derive(Debug, Clone, PartialEq)]
pub struct PointUpdate {
    /// The device's name, as given when it was spawned.
    pub device: String,
    /// The point's name within its device.
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
    /// Frames off the wire that were garbage, truncated or failed their checksum (serial
    /// lines, RTU); counted and dropped, never fatal.
    pub bad_frames: u64,
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
    #[error("the device refused FC{function:02} with exception {code:02} ({})", crate::modbus::tcp::exception_name(*code))]
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
    /// The protocol has no such operation (e.g. relinquish on Modbus).
    #[error("{0} is not supported by this protocol")]
    Unsupported(&'static str),
    /// The BACnet device answered with an Error PDU (ASHRAE 135 Clause 20.1.7; classes and
    /// codes in Clause 18); the link stays up.
    #[error("the BACnet device refused {service}: {}", crate::bacnet::error_text(*class, *code))]
    BacnetError {
        /// The service, e.g. "WriteProperty".
        service: &'static str,
        /// Error class (Clause 18.1).
        class: u16,
        /// Error code (Clause 18.2 onwards).
        code: u16,
    },
    /// The BACnet device rejected the request as malformed or unsupported (Reject PDU,
    /// Clause 20.1.5; reasons in Clause 18.9); the link stays up.
    #[error("the BACnet device rejected {service}: {}", crate::bacnet::reject_text(*reason))]
    BacnetReject {
        /// The service.
        service: &'static str,
        /// Reject reason.
        reason: u8,
    },
    /// The BACnet device aborted the transaction (Abort PDU, Clause 20.1.6; reasons in
    /// Clause 18.10); the link stays up.
    #[error("the BACnet device aborted {service}: {}", crate::bacnet::abort_text(*reason))]
    BacnetAbort {
        /// The service.
        service: &'static str,
        /// Abort reason.
        reason: u8,
    },
    /// A value that does not fit a BACnet point's datatype, offered or received (nothing is
    /// sent; the link stays up).
    #[error("point `{point}`: {message}")]
    BacnetValue {
        /// The point's name.
        point: String,
        /// What does not fit.
        message: String,
    },
}

impl DriverError {
    /// Whether the error ends the connection (timeout or transport failure).
    #[must_use]
    pub fn is_link_failure(&self) -> bool {
        matches!(self, DriverError::Timeout | DriverError::Transport(_))
    }
}

/// How a credential was presented at a reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CredentialKind {
    Card,
    Qr,
    Pin,
}

/// A credential presented at a reader (card, QR code, PIN), as a serial or networked reader
/// reported it. Sent on its own channel: it is an event, not a point value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialRead {
    /// The reader device's name.
    pub device: String,
    /// The reader's point (one device may have several readers).
    pub reader: String,
    pub kind: CredentialKind,
    /// The credential as the reader sent it (card number, QR payload), trimmed.
    pub credential: String,
}

/// A request from a handle to a device's owner task. Points are addressed by their index in
/// the list the protocol's spawn function was given.
#[derive(Debug)]
pub(crate) enum Request {
    Write {
        index: usize,
        value: Value,
        reply: oneshot::Sender<Result<(), DriverError>>,
    },
    Read {
        index: usize,
        reply: oneshot::Sender<Result<Value, DriverError>>,
    },
    /// Hand control of a point back (BACnet: write NULL at the gateway's priority).
    Relinquish {
        index: usize,
        reply: oneshot::Sender<Result<(), DriverError>>,
    },
}

impl Request {
    /// Answers the request with an error (the caller may have stopped waiting: nothing to do).
    pub(crate) fn fail(self, error: DriverError) {
        match self {
            Request::Write { reply, .. } => {
                let _ = reply.send(Err(error));
            }
            Request::Read { reply, .. } => {
                let _ = reply.send(Err(error));
            }
            Request::Relinquish { reply, .. } => {
                let _ = reply.send(Err(error));
            }
        }
    }
}

/// What a handle knows of one point, to refuse bad requests without queueing them.
#[derive(Debug, Clone)]
pub(crate) struct PointInfo {
    pub(crate) name: String,
    pub(crate) index: usize,
    pub(crate) access: Access,
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
    points: Vec<PointInfo>,
    requests: mpsc::Sender<Request>,
    health: watch::Receiver<DeviceHealth>,
    stop: watch::Sender<bool>,
}

impl DeviceHandle {
    /// Used by each protocol's spawn function.
    pub(crate) fn new(
        device: String,
        points: Vec<PointInfo>,
        requests: mpsc::Sender<Request>,
        health: watch::Receiver<DeviceHealth>,
        stop: watch::Sender<bool>,
    ) -> DeviceHandle {
        DeviceHandle {
            shared: Arc::new(Shared {
                device,
                points,
                requests,
                health,
                stop,
            }),
        }
    }

    /// Writes a point. Served before the device's next poll. Fails at once with
    /// [`DriverError::Offline`] while the device is offline and with [`DriverError::QueueFull`]
    /// when too many requests wait.
    pub async fn write(&self, point: &str, value: Value) -> Result<(), DriverError> {
        let p = self.lookup(point)?;
        if !p.access.can_write() {
            return Err(DriverError::NotWritable(point.to_owned()));
        }
        let (reply, answer) = oneshot::channel();
        self.submit(Request::Write {
            index: p.index,
            value,
            reply,
        })?;
        answer.await.map_err(|_| DriverError::Closed)?
    }

    /// Reads a point now, through the owner task (one request). Any point can be read this way,
    /// write-only ones included (they are only left out of polling); a changed value of a polled
    /// point is also published as a [`PointUpdate`].
    pub async fn read(&self, point: &str) -> Result<Value, DriverError> {
        let p = self.lookup(point)?;
        let (reply, answer) = oneshot::channel();
        self.submit(Request::Read {
            index: p.index,
            reply,
        })?;
        answer.await.map_err(|_| DriverError::Closed)?
    }

    /// Hands control of a point back to the device's own logic (BACnet: relinquishes the
    /// gateway's priority slot). Protocols without command priorities answer
    /// [`DriverError::Unsupported`].
    pub async fn relinquish(&self, point: &str) -> Result<(), DriverError> {
        let p = self.lookup(point)?;
        if !p.access.can_write() {
            return Err(DriverError::NotWritable(point.to_owned()));
        }
        let (reply, answer) = oneshot::channel();
        self.submit(Request::Relinquish {
            index: p.index,
            reply,
        })?;
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

    /// The names of the device's usable points, in configuration order.
    pub fn point_names(&self) -> impl Iterator<Item = &str> {
        self.shared.points.iter().map(|p| p.name.as_str())
    }

    fn lookup(&self, name: &str) -> Result<&PointInfo, DriverError> {
        self.shared
            .points
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| DriverError::UnknownPoint(name.to_owned()))
    }

    fn submit(&self, request: Request) -> Result<(), DriverError> {
        if self.shared.requests.is_closed() {
            return Err(DriverError::Closed);
        }
        if self.shared.health.borrow().state == LinkState::Offline {
            return Err(DriverError::Offline);
        }
        self.shared
            .requests
            .try_send(request)
            .map_err(|error| match error {
                mpsc::error::TrySendError::Full(_) => DriverError::QueueFull,
                mpsc::error::TrySendError::Closed(_) => DriverError::Closed,
            })
    }
}
