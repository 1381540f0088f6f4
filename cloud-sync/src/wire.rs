//! The payloads of the gateway-hub protocol (PROTOCOL.md), as versioned JSON.
//!
//! Wire types only: the gateway and the hub convert them to and from their domain types at
//! the edge. Every message carries `v`; `decode` refuses a version it does not know.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The protocol version this crate speaks.
pub const VERSION: u32 = 1;

/// Most events in one batch (PROTOCOL.md: at most 500 events or 256 KiB).
pub const MAX_BATCH_EVENTS: usize = 500;
/// Largest batch payload in bytes.
pub const MAX_BATCH_BYTES: usize = 256 * 1024;

/// Why a payload was refused.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("payload is not valid JSON for {what}: {source}")]
    Json {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("{what} has protocol version {got}; this side speaks version {VERSION}")]
    Version { what: &'static str, got: u32 },
}

/// What happened, as the hub records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    MeetingStarted,
    CheckedIn,
    Released,
    Ended,
    Cancelled,
    WalkInStarted,
    WalkInEnded,
    Extended,
    NoShowStrike,
    Usage,
    AccessGranted,
    AccessDenied,
    DeviceOffline,
    DeviceOnline,
    BookingLocal,
    /// The outbox had to drop droppable events; `data.dropped` says how many.
    OutboxDropped,
}

impl EventKind {
    /// Events the outbox may drop when it is full (PROTOCOL.md, "Outbox bounds"); everything
    /// else (check-ins, releases, endings, extensions, strikes, usage, local bookings) is kept.
    pub fn droppable(self) -> bool {
        matches!(
            self,
            EventKind::DeviceOffline
                | EventKind::DeviceOnline
                | EventKind::AccessGranted
                | EventKind::AccessDenied
        )
    }
}

/// One event from a gateway's outbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The gateway's sequence number: 1, 2, 3 ..., never reused.
    pub seq: u64,
    pub at_ms: i64,
    pub room: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub booking: Option<String>,
    pub kind: EventKind,
    /// Why, in words (the activity log's text).
    pub reason: String,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub data: serde_json::Value,
}

/// Events published together, in sequence order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventBatch {
    pub v: u32,
    pub gateway: String,
    pub events: Vec<Event>,
}

/// The hub has stored every event with `seq <= upto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    pub v: u32,
    pub upto: u64,
}

/// A room as the status snapshot shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomStatus {
    pub id: String,
    pub state: String,
    pub occupancy: String,
    /// The room's display name (its id when the site file gives none).
    #[serde(default)]
    pub name: String,
    /// The booking running now, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<BookingGlance>,
    /// The next booking today or later, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<BookingGlance>,
    /// Devices this room uses that are offline now (their ids).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<String>,
}

/// A booking at a glance, for status pages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookingGlance {
    pub id: String,
    pub subject: String,
    pub organizer: String,
    pub start_ms: i64,
    pub end_ms: i64,
}

/// The retained status of a gateway; its last will is `online: false`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub v: u32,
    pub online: bool,
    pub at_ms: i64,
    #[serde(default)]
    pub rooms: Vec<RoomStatus>,
    #[serde(default)]
    pub devices_offline: Vec<String>,
    #[serde(default)]
    pub outbox_depth: u64,
    /// The site's IANA time zone ("UTC" when the site file names none); the hub shows and
    /// books this gateway's rooms in it.
    #[serde(default = "utc")]
    pub timezone: String,
    /// How many field devices the gateway has.
    #[serde(default)]
    pub devices_total: u32,
}

fn utc() -> String {
    "UTC".to_owned()
}

impl Status {
    /// The last will: "offline", nothing else (the hub keeps the rooms it last saw).
    pub fn offline() -> Status {
        Status {
            v: VERSION,
            online: false,
            at_ms: 0,
            rooms: Vec::new(),
            devices_offline: Vec::new(),
            outbox_depth: 0,
            timezone: utc(),
            devices_total: 0,
        }
    }
}

/// One point's value at a moment, as telemetry carries it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointSample {
    /// The device's id in the gateway's site file.
    pub device: String,
    /// The point's name on that device.
    pub point: String,
    pub at_ms: i64,
    /// The engineering value (a bool point is 0 or 1); `None` when the point is unavailable
    /// (its device is offline).
    pub value: Option<f64>,
}

/// Changed point values, batched and rate-limited by the gateway (QoS 0, never queued in the
/// outbox: a lost sample is superseded by the next one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Telemetry {
    pub v: u32,
    pub samples: Vec<PointSample>,
}

/// "Send me the booking changes after this cursor" (0: everything).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRequest {
    pub v: u32,
    pub cursor: u64,
}

/// A booking as it travels down.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireBooking {
    pub id: String,
    pub room: String,
    pub start_ms: i64,
    pub end_ms: i64,
    pub subject: String,
    pub organizer: String,
    #[serde(default)]
    pub attendees: Vec<String>,
}

/// One change to a gateway's bookings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum BookingChange {
    Upsert { booking: WireBooking },
    Delete { id: String, room: String },
}

/// Booking changes after a cursor; `full` means "this is every booking: replace yours".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookingChanges {
    pub v: u32,
    pub cursor: u64,
    pub full: bool,
    pub changes: Vec<BookingChange>,
}

/// What the hub may ask a gateway to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum HubCommand {
    EndMeeting { room: String },
    RunScene { room: String, scene: String },
    Resync,
}

/// A versioned message.
pub trait Versioned {
    const WHAT: &'static str;
    fn version(&self) -> u32;
}

macro_rules! versioned {
    ($($t:ty => $what:literal),* $(,)?) => {$(
        impl Versioned for $t {
            const WHAT: &'static str = $what;
            fn version(&self) -> u32 {
                self.v
            }
        }
    )*};
}
versioned!(
    EventBatch => "an event batch",
    Ack => "an ack",
    Status => "a status",
    SyncRequest => "a sync request",
    BookingChanges => "booking changes",
    Telemetry => "telemetry",
);

/// Hub commands carry no `v` of their own; they ride in a versioned envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandEnvelope {
    pub v: u32,
    /// After this instant (the hub's clock) the gateway ignores the command: an "end the
    /// meeting" queued by the broker while the gateway was offline must not end a later one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_ms: Option<i64>,
    #[serde(flatten)]
    pub command: HubCommand,
}
versioned!(CommandEnvelope => "a hub command");

/// Parses a payload and checks its version.
pub fn decode<T: DeserializeOwned + Versioned>(bytes: &[u8]) -> Result<T, WireError> {
    let value: T = serde_json::from_slice(bytes).map_err(|source| WireError::Json {
        what: T::WHAT,
        source,
    })?;
    if value.version() != VERSION {
        return Err(WireError::Version {
            what: T::WHAT,
            got: value.version(),
        });
    }
    Ok(value)
}

/// Serializes a payload (these types always serialize).
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

/// Splits events into batches within the size limits, keeping their order.
pub fn batches(gateway: &str, events: Vec<Event>) -> Vec<EventBatch> {
    let mut out = Vec::new();
    let mut current: Vec<Event> = Vec::new();
    let mut bytes = 0usize;
    for e in events {
        let size = serde_json::to_vec(&e).map_or(0, |v| v.len()) + 1;
        if !current.is_empty()
            && (current.len() >= MAX_BATCH_EVENTS || bytes + size > MAX_BATCH_BYTES)
        {
            out.push(EventBatch {
                v: VERSION,
                gateway: gateway.to_owned(),
                events: std::mem::take(&mut current),
            });
            bytes = 0;
        }
        bytes += size;
        current.push(e);
    }
    if !current.is_empty() {
        out.push(EventBatch {
            v: VERSION,
            gateway: gateway.to_owned(),
            events: current,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: u64) -> Event {
        Event {
            seq,
            at_ms: 1_772_409_600_000,
            room: "r1".into(),
            booking: Some("b1".into()),
            kind: EventKind::Released,
            reason: "no check-in by 09:10 (policy: 10 min)".into(),
            data: serde_json::json!({ "cause": "no_show" }),
        }
    }

    #[test]
    fn payloads_round_trip_and_refuse_other_versions() {
        let batch = EventBatch {
            v: VERSION,
            gateway: "site-a/gw-1".into(),
            events: vec![event(1), event(2)],
        };
        let back: EventBatch = decode(&encode(&batch)).expect("round trip");
        assert_eq!(back, batch);
        let text = String::from_utf8(encode(&event(7))).expect("utf8");
        assert!(text.contains("\"kind\":\"released\""), "{text}");
        let err = decode::<Ack>(br#"{"v":2,"upto":5}"#).expect_err("v2");
        assert_eq!(
            err.to_string(),
            "an ack has protocol version 2; this side speaks version 1"
        );
        assert!(decode::<Ack>(b"{oops").is_err());
        let cmd: CommandEnvelope =
            decode(br#"{"v":1,"command":"run_scene","room":"r1","scene":"presentation"}"#)
                .expect("command");
        assert_eq!(
            cmd.command,
            HubCommand::RunScene {
                room: "r1".into(),
                scene: "presentation".into()
            }
        );
        let changes: BookingChanges = decode(
            br#"{"v":1,"cursor":9,"full":false,"changes":[{"op":"delete","id":"b1","room":"r1"}]}"#,
        )
        .expect("changes");
        assert_eq!(changes.changes.len(), 1);
    }

    #[test]
    fn batches_respect_the_limits_and_keep_order() {
        let events: Vec<Event> = (1..=1201).map(event).collect();
        let b = batches("g", events);
        assert_eq!(
            b.iter().map(|x| x.events.len()).collect::<Vec<_>>(),
            vec![500, 500, 201]
        );
        assert_eq!(b[1].events[0].seq, 501);
        let mut big = event(1);
        big.reason = "x".repeat(200 * 1024);
        let b = batches("g", vec![big.clone(), big]);
        assert_eq!(
            b.len(),
            2,
            "two 200 KiB events do not share a 256 KiB batch"
        );
        assert!(batches("g", Vec::new()).is_empty());
    }

    #[test]
    fn only_operational_noise_may_be_dropped() {
        assert!(EventKind::DeviceOffline.droppable());
        for k in [
            EventKind::CheckedIn,
            EventKind::Released,
            EventKind::Ended,
            EventKind::Extended,
            EventKind::NoShowStrike,
            EventKind::Usage,
            EventKind::BookingLocal,
        ] {
            assert!(!k.droppable(), "{k:?} must never be dropped");
        }
    }
}
