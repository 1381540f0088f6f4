//! The protocol-agnostic face of every field device: named points in, values and health out.
//!
//! Every protocol (Modbus TCP today; RTU buses, BACnet/IP and serial line devices plug in the
//! same way) runs an owner task per connection or bus and hands out a [`DeviceHandle`]. The
//! gateway only ever sees this module: it writes and reads points by name, receives
//! [`PointUpdate`]s on a channel, and watches [`DeviceHealth`]. Protocol details (addresses,
//! codecs, function codes) stay in the protocol modules.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, sleep_until};

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

/// The handles are gone (or the task was told to stop); the owner task should end.
#[derive(Debug)]
pub(crate) struct HandlesGone;

/// The owner task's side of a device's [`DeviceHealth`]. Every protocol keeps its link state,
/// last error and counters through this one type, so that watchers wake on the same things
/// everywhere: a change of state or of `last_error`, never a counter alone.
#[derive(Debug)]
pub(crate) struct HealthSender {
    /// The device's name, for logs.
    device: String,
    tx: watch::Sender<DeviceHealth>,
}

impl HealthSender {
    /// A new device's health (connecting, no error, zero counters) and the receiver for its
    /// handles.
    pub(crate) fn channel(device: &str) -> (HealthSender, watch::Receiver<DeviceHealth>) {
        let (tx, rx) = watch::channel(DeviceHealth {
            state: LinkState::Connecting,
            last_error: None,
            counters: Counters::default(),
        });
        let sender = HealthSender {
            device: device.to_owned(),
            tx,
        };
        (sender, rx)
    }

    /// The current link state.
    pub(crate) fn state(&self) -> LinkState {
        self.tx.borrow().state
    }

    /// The current counters.
    pub(crate) fn counters(&self) -> Counters {
        self.tx.borrow().counters
    }

    /// Changes the counters without waking watchers.
    pub(crate) fn count(&self, change: impl FnOnce(&mut Counters)) {
        self.tx.send_if_modified(|h| {
            change(&mut h.counters);
            false
        });
    }

    /// Sets the state and, when given, the last error; wakes watchers only if either changed.
    /// Logs nothing: for owners that say in their own words what happened.
    pub(crate) fn set_state(&self, state: LinkState, error: Option<String>) {
        self.tx.send_if_modified(|h| {
            let mut changed = h.state != state;
            h.state = state;
            if let Some(error) = error
                && h.last_error.as_deref() != Some(error.as_str())
            {
                h.last_error = Some(error);
                changed = true;
            }
            changed
        });
    }

    /// The device answers: online, logged once on the change.
    pub(crate) fn set_online(&self) {
        let was = self.state();
        self.set_state(LinkState::Online, None);
        if was != LinkState::Online {
            tracing::info!(device = %self.device, "device online");
        }
    }

    /// The link failed: offline with `message` as the last error, logged once on the change.
    pub(crate) fn set_offline(&self, message: String) {
        let was = self.state();
        self.set_state(LinkState::Offline, Some(message.clone()));
        if was != LinkState::Offline {
            tracing::warn!(device = %self.device, error = %message, "device offline");
        }
    }

    /// A failure that leaves the link up (a device exception); wakes watchers only if the text
    /// changed.
    pub(crate) fn set_last_error(&self, message: String) {
        self.tx.send_if_modified(|h| {
            if h.last_error.as_deref() == Some(message.as_str()) {
                false
            } else {
                h.last_error = Some(message);
                true
            }
        });
    }
}

/// The owner task's side of a device's [`PointUpdate`]s: remembers the last value sent per
/// point, so that an update goes out only when a point's value changes.
#[derive(Debug)]
pub(crate) struct PointPublisher {
    device: String,
    /// Point names by index.
    names: Vec<String>,
    /// Last value sent per point: `None` = nothing sent yet, `Some(None)` = sent as unavailable.
    sent: Vec<Option<Option<Value>>>,
    updates: mpsc::Sender<PointUpdate>,
}

impl PointPublisher {
    /// `names` are the device's points by index.
    pub(crate) fn new(
        device: &str,
        names: Vec<String>,
        updates: mpsc::Sender<PointUpdate>,
    ) -> PointPublisher {
        PointPublisher {
            device: device.to_owned(),
            sent: vec![None; names.len()],
            names,
            updates,
        }
    }

    /// Sends an update if the point's value changed since the last one (`None`: unavailable).
    pub(crate) async fn publish(&mut self, index: usize, value: Option<Value>) {
        let (Some(slot), Some(point)) = (self.sent.get_mut(index), self.names.get(index)) else {
            return;
        };
        if *slot == Some(value) {
            return;
        }
        *slot = Some(value);
        let update = PointUpdate {
            device: self.device.clone(),
            point: point.clone(),
            value,
        };
        if self.updates.send(update).await.is_err() {
            tracing::trace!(device = %self.device, "nobody listens to point updates");
        }
    }
}

/// The wait before the next connection attempt: starts at `min`, doubles after every wait up
/// to `max`, and is back at `min` once the device answers.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub(crate) fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max,
            next: min,
        }
    }

    /// The delay to wait now; the one after it is twice as long, at most `max`.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = delay.checked_mul(2).unwrap_or(self.max).min(self.max);
        delay
    }

    /// The device answered: the next delay is `min` again.
    pub(crate) fn reset(&mut self) {
        self.next = self.min;
    }

    /// Waits out the next delay, failing handle requests with [`DriverError::Offline`]
    /// meanwhile. `Err` as soon as every handle is gone.
    pub(crate) async fn wait(
        &mut self,
        requests: &mut mpsc::Receiver<Request>,
    ) -> Result<(), HandlesGone> {
        let deadline = Instant::now() + self.next_delay();
        loop {
            tokio::select! {
                biased;
                request = requests.recv() => match request {
                    Some(request) => request.fail(DriverError::Offline),
                    None => return Err(HandlesGone),
                },
                () = sleep_until(deadline) => return Ok(()),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_change_without_waking_watchers() {
        let (health, mut rx) = HealthSender::channel("d");
        health.count(|c| c.requests += 1);
        assert!(!rx.has_changed().unwrap_or(true));
        assert_eq!(rx.borrow_and_update().counters.requests, 1);
        assert_eq!(health.counters().requests, 1);
    }

    #[test]
    fn watchers_wake_on_state_and_error_changes_only() {
        let (health, mut rx) = HealthSender::channel("d");
        health.set_online();
        assert!(rx.has_changed().unwrap_or(false));
        rx.borrow_and_update();
        health.set_online();
        assert!(!rx.has_changed().unwrap_or(true));

        health.set_last_error("exception 02".to_owned());
        assert!(rx.has_changed().unwrap_or(false));
        rx.borrow_and_update();
        health.set_last_error("exception 02".to_owned());
        assert!(!rx.has_changed().unwrap_or(true));

        health.set_offline("no answer".to_owned());
        let seen = rx.borrow_and_update().clone();
        assert_eq!(seen.state, LinkState::Offline);
        assert_eq!(seen.last_error.as_deref(), Some("no answer"));
        health.set_offline("no answer".to_owned());
        assert!(!rx.has_changed().unwrap_or(true));

        // A stop keeps the last error.
        health.set_state(LinkState::Online, None);
        health.set_state(LinkState::Offline, None);
        assert_eq!(health.state(), LinkState::Offline);
        assert_eq!(rx.borrow().last_error.as_deref(), Some("no answer"));
    }

    #[tokio::test]
    async fn a_point_update_goes_out_only_on_a_change() {
        let (tx, mut rx) = mpsc::channel(8);
        let mut points = PointPublisher::new("d", vec!["a".to_owned(), "b".to_owned()], tx);
        points.publish(0, Some(Value::Bool(true))).await;
        points.publish(0, Some(Value::Bool(true))).await;
        points.publish(1, None).await;
        points.publish(1, None).await;
        points.publish(0, None).await;
        points.publish(2, None).await;
        drop(points);
        let mut seen = Vec::new();
        while let Some(update) = rx.recv().await {
            seen.push((update.point, update.value));
        }
        assert_eq!(
            seen,
            [
                ("a".to_owned(), Some(Value::Bool(true))),
                ("b".to_owned(), None),
                ("a".to_owned(), None),
            ]
        );
    }

    #[test]
    fn backoff_doubles_up_to_max_and_resets() {
        let ms = Duration::from_millis;
        let mut backoff = Backoff::new(ms(100), ms(350));
        let delays: Vec<_> = (0..4).map(|_| backoff.next_delay()).collect();
        assert_eq!(delays, [ms(100), ms(200), ms(350), ms(350)]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), ms(100));

        let mut huge = Backoff::new(Duration::MAX, Duration::MAX);
        assert_eq!(huge.next_delay(), Duration::MAX);
        assert_eq!(huge.next_delay(), Duration::MAX);
    }

    #[tokio::test]
    async fn backoff_wait_refuses_requests_and_ends_with_the_handles() {
        let (tx, mut rx) = mpsc::channel(4);
        let (reply, answer) = oneshot::channel();
        let queued = tx.try_send(Request::Read { index: 0, reply });
        assert!(queued.is_ok());
        drop(tx);
        let mut backoff = Backoff::new(Duration::from_secs(3600), Duration::from_secs(3600));
        assert!(backoff.wait(&mut rx).await.is_err());
        assert_eq!(answer.await.ok(), Some(Err(DriverError::Offline)));
    }
}
