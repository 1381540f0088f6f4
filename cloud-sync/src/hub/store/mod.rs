//! The hub's storage: one interface over two backends, the embedded redb store for a single
//! machine and PostgreSQL for several replicas sharing the ingest.
//!
//! Backends are dumb on purpose: they keep records and run the few transactions whose atomicity
//! matters (an event batch with its ack point; a room's bookings with the change log that pushes
//! them to the gateway). Every rule (conflicts, series, blacklist, statistics) lives above, in
//! pure code, so both backends behave the same by construction. `tests/tests/hub_store.rs` runs
//! one suite against both.
//!
//! # What is stored
//! * **events**: once per (gateway, seq), with the contiguous ack point per gateway, and indexed
//!   by time (statistics) and, for no-show strikes, by organizer (blacklist);
//! * **gateways**: the last status each gateway sent and when the hub last heard from it;
//! * **bookings and series** per room, the hub's source of truth, with a per-gateway change log
//!   (cursor) that the gateway syncs from;
//! * **telemetry**: the latest value of each point;
//! * **documents**: small JSON records by kind and key (accounts, sessions, API tokens, calendar
//!   feeds, settings), so that administrative data needs no schema change per feature.

mod embedded;
mod postgres;

use serde::{Deserialize, Serialize};

use crate::topics::GatewayId;
use crate::wire::{BookingChange, BookingChanges, Event, EventBatch, PointSample, Status};

pub use embedded::Embedded;
pub use postgres::{Postgres, SCHEMA_VERSION as POSTGRES_SCHEMA_VERSION};

/// How many changes per gateway the log keeps; an older cursor gets a full snapshot.
pub const CHANGE_LOG_KEPT: u64 = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum HubStoreError {
    #[error("hub store: {0}")]
    Db(#[from] redb::Error),
    #[error("hub database: {0}")]
    Postgres(String),
    #[error("hub store record in {table} is unreadable: {reason}")]
    Corrupt { table: &'static str, reason: String },
}

/// What an ingest did.
#[derive(Debug, Clone, PartialEq)]
pub struct Ingested {
    /// Events stored for the first time, in the batch's order: only the replica that stored an
    /// event acts on it (applies it to the bookings), so nothing is processed twice.
    pub fresh: Vec<Event>,
    /// Events already stored (redelivered on the wire), ignored.
    pub duplicates: usize,
    /// The gateway may forget every event up to this sequence number.
    pub ack_upto: u64,
}

/// A gateway as the hub knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayRecord {
    pub id: GatewayId,
    /// The last status it published (its retained snapshot, or the broker's last will).
    pub status: Option<Status>,
    /// The hub's clock when any message from it last arrived.
    pub last_seen_ms: i64,
}

/// A booking as the hub stores it (the calendar's `Booking` is the domain type; the booking
/// service converts at this edge).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookingRecord {
    /// Unique across the hub.
    pub id: String,
    pub room: String,
    pub start_ms: i64,
    pub end_ms: i64,
    pub subject: String,
    pub organizer: String,
    #[serde(default)]
    pub attendees: Vec<String>,
    /// "active", "cancelled", "released" or "ended".
    pub state: String,
    /// The series this booking is an occurrence of.
    #[serde(default)]
    pub series: Option<String>,
    /// Where it came from: "api", "gateway" (a walk-in), or "feed:<id>" (an iCalendar import).
    pub source: String,
    /// The iCalendar UID for imported bookings.
    #[serde(default)]
    pub source_uid: Option<String>,
    /// Why the hub changed it last (a conflict rule, an import), for the API and the dashboard.
    #[serde(default)]
    pub note: String,
    /// The hub's clock at the last change.
    pub updated_ms: i64,
}

/// A recurring series, stored as the booking service encodes it (backends do not look inside).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesRecord {
    pub id: String,
    pub room: String,
    pub doc: serde_json::Value,
}

/// Which room a transaction is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomKey {
    pub gateway: GatewayId,
    pub room: String,
}

/// What a room transaction sees: the room's bookings that end after `since_ms` and all its
/// series.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RoomDocs {
    pub bookings: Vec<BookingRecord>,
    pub series: Vec<SeriesRecord>,
}

/// What a room transaction writes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RoomWrites {
    /// Inserted or replaced by id.
    pub bookings: Vec<BookingRecord>,
    /// Inserted or replaced by id.
    pub series: Vec<SeriesRecord>,
    pub series_deleted: Vec<String>,
    /// Appended to the gateway's change log, in order, in the same transaction.
    pub changes: Vec<BookingChange>,
}

/// The result of a committed room transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomCommit<T> {
    pub value: T,
    /// The changes appended to the gateway's log, ready to push: `cursor` is the log's position
    /// after the last of them (unchanged, with no changes, when nothing was appended).
    pub pushed: BookingChanges,
}

/// The hub's storage.
#[derive(Debug)]
pub enum HubStore {
    Embedded(Embedded),
    Postgres(Postgres),
}

/// Calls the same method on whichever backend: embedded methods are synchronous, PostgreSQL's
/// are awaited.
macro_rules! dispatch {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            HubStore::Embedded($s) => $call,
            HubStore::Postgres($s) => $call.await,
        }
    };
}

impl HubStore {
    /// The embedded store in `dir` (created when missing).
    pub fn open_embedded(dir: &std::path::Path) -> Result<HubStore, HubStoreError> {
        Ok(HubStore::Embedded(Embedded::open(dir)?))
    }

    /// The PostgreSQL store at `url` (`postgres://user:password@host:port/database`) with at
    /// most `pool_size` connections; creates or migrates its schema, and refuses a database
    /// whose schema is newer than this hub.
    pub async fn open_postgres(url: &str, pool_size: usize) -> Result<HubStore, HubStoreError> {
        Ok(HubStore::Postgres(Postgres::open(url, pool_size).await?))
    }

    /// Stores a batch's new events durably with their indexes (a redelivered event is ignored),
    /// notes that the gateway was seen at `now_ms`, and says up to which sequence number the
    /// gateway may forget its outbox.
    pub async fn ingest(
        &self,
        gw: &GatewayId,
        batch: &EventBatch,
        now_ms: i64,
    ) -> Result<Ingested, HubStoreError> {
        dispatch!(self, s => s.ingest(gw, batch, now_ms))
    }

    /// Every stored event of a gateway, in sequence order.
    pub async fn events(&self, gw: &GatewayId) -> Result<Vec<Event>, HubStoreError> {
        dispatch!(self, s => s.events(gw))
    }

    /// A gateway's events with `from_ms <= at_ms < to_ms`, by time (then sequence).
    pub async fn events_between(
        &self,
        gw: &GatewayId,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<Event>, HubStoreError> {
        dispatch!(self, s => s.events_between(gw, from_ms, to_ms))
    }

    /// When `organizer` had no-show strikes (`no_show_strike` events whose `data.organizer` is
    /// theirs) at or after `since_ms`, across every gateway, ascending.
    pub async fn no_shows(
        &self,
        organizer: &str,
        since_ms: i64,
    ) -> Result<Vec<i64>, HubStoreError> {
        dispatch!(self, s => s.no_shows(organizer, since_ms))
    }

    /// Stores a gateway's status and notes it was seen at `now_ms`.
    pub async fn put_status(
        &self,
        gw: &GatewayId,
        status: &Status,
        now_ms: i64,
    ) -> Result<(), HubStoreError> {
        dispatch!(self, s => s.put_status(gw, status, now_ms))
    }

    pub async fn status(&self, gw: &GatewayId) -> Result<Option<Status>, HubStoreError> {
        dispatch!(self, s => s.status(gw))
    }

    /// Every gateway the hub has heard from, by id.
    pub async fn gateways(&self) -> Result<Vec<GatewayRecord>, HubStoreError> {
        dispatch!(self, s => s.gateways())
    }

    /// Appends a raw change to a gateway's log (and applies it to its booking set); returns its
    /// cursor. The booking service uses [`HubStore::transact_room`] instead.
    pub async fn change_booking(
        &self,
        gw: &GatewayId,
        change: BookingChange,
    ) -> Result<u64, HubStoreError> {
        dispatch!(self, s => s.change_booking(gw, change))
    }

    /// The answer to a gateway's `SyncRequest{cursor}`: the changes after it, or a full
    /// snapshot of the gateway's active bookings when the cursor is older than the log (or from
    /// another life of the hub).
    pub async fn changes_since(
        &self,
        gw: &GatewayId,
        after: u64,
    ) -> Result<BookingChanges, HubStoreError> {
        dispatch!(self, s => s.changes_since(gw, after))
    }

    /// Runs `decide` on a room's bookings (those ending after `since_ms`) and series, then
    /// writes what it returns, all in one transaction that excludes every other transaction on
    /// the same room (on PostgreSQL, across replicas). When `decide` fails nothing is written.
    ///
    /// A booking upserted here with state "active" is also the gateway's booking; the caller
    /// puts the matching [`BookingChange`]s in `RoomWrites::changes`.
    pub async fn transact_room<T, E, F>(
        &self,
        room: &RoomKey,
        since_ms: i64,
        decide: F,
    ) -> Result<Result<RoomCommit<T>, E>, HubStoreError>
    where
        F: FnOnce(RoomDocs) -> Result<(T, RoomWrites), E> + Send,
        T: Send,
        E: Send,
    {
        dispatch!(self, s => s.transact_room(room, since_ms, decide))
    }

    /// A room's bookings overlapping `[from_ms, to_ms)`, every state, by start.
    pub async fn bookings(
        &self,
        room: &RoomKey,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<BookingRecord>, HubStoreError> {
        dispatch!(self, s => s.bookings(room, from_ms, to_ms))
    }

    /// A booking by its id, with the room it is in.
    pub async fn find_booking(
        &self,
        id: &str,
    ) -> Result<Option<(RoomKey, BookingRecord)>, HubStoreError> {
        dispatch!(self, s => s.find_booking(id))
    }

    /// Every series of every room (the horizon job extends them as time passes).
    pub async fn all_series(&self) -> Result<Vec<(RoomKey, SeriesRecord)>, HubStoreError> {
        dispatch!(self, s => s.all_series())
    }

    /// Keeps the newest sample of each point (an older sample never replaces a newer one).
    pub async fn put_telemetry(
        &self,
        gw: &GatewayId,
        samples: &[PointSample],
    ) -> Result<(), HubStoreError> {
        dispatch!(self, s => s.put_telemetry(gw, samples))
    }

    /// The newest sample of each point of a gateway, by device then point.
    pub async fn telemetry(&self, gw: &GatewayId) -> Result<Vec<PointSample>, HubStoreError> {
        dispatch!(self, s => s.telemetry(gw))
    }

    /// Inserts or replaces a document.
    pub async fn put_doc(
        &self,
        kind: &str,
        key: &str,
        value: &serde_json::Value,
    ) -> Result<(), HubStoreError> {
        dispatch!(self, s => s.put_doc(kind, key, value))
    }

    pub async fn doc(
        &self,
        kind: &str,
        key: &str,
    ) -> Result<Option<serde_json::Value>, HubStoreError> {
        dispatch!(self, s => s.doc(kind, key))
    }

    /// Every document of a kind, by key.
    pub async fn docs(
        &self,
        kind: &str,
    ) -> Result<Vec<(String, serde_json::Value)>, HubStoreError> {
        dispatch!(self, s => s.docs(kind))
    }

    /// Removes a document; says whether it was there.
    pub async fn delete_doc(&self, kind: &str, key: &str) -> Result<bool, HubStoreError> {
        dispatch!(self, s => s.delete_doc(kind, key))
    }
}
