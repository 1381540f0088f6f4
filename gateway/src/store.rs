//! The gateway's embedded store (redb): every table, its schema version, durable writes.
//!
//! All storage goes through this module. Each write is one redb transaction committed with
//! `Durability::Immediate`, so when a method returns `Ok` the data is on disk; callers
//! acknowledge (HTTP 201, hub ack) only after that. Values are versioned JSON records owned by
//! this module, converted to and from domain types at the edge.

use std::path::{Path, PathBuf};

use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
};
use serde::{Deserialize, Serialize};

/// Bump when a table's layout changes, and add the migration in `migrate`.
pub const SCHEMA_VERSION: u64 = 1;

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const BOOKINGS: TableDefinition<&str, &[u8]> = TableDefinition::new("bookings");
const ACTIVITY: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("activity");
/// Events waiting for the hub's acknowledgement, by sequence number (PROTOCOL.md).
const OUTBOX: TableDefinition<u64, &[u8]> = TableDefinition::new("outbox");

/// Events the outbox holds before it drops droppable ones (PROTOCOL.md, "Outbox bounds").
pub const OUTBOX_MAX_EVENTS: u64 = 200_000;

/// How many activity entries each room keeps on disk.
pub const ACTIVITY_KEPT_PER_ROOM: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store at {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: redb::DatabaseError,
    },
    #[error("store: {0}")]
    Db(#[from] redb::Error),
    #[error(
        "store schema version {found} was written by a newer gateway (this one knows up to {SCHEMA_VERSION}); refusing to touch it"
    )]
    TooNew { found: u64 },
    #[error("store record {key} in {table} is unreadable: {reason}")]
    Corrupt {
        table: &'static str,
        key: String,
        reason: String,
    },
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Db(e.into())
            }
        }
    )*};
}
from_redb!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

/// Where a booking came from; the hub's are authoritative, local ones were made here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BookingSource {
    Local,
    Hub,
}

/// A booking as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredBooking {
    pub id: String,
    pub room: String,
    pub start_ms: i64,
    pub end_ms: i64,
    pub subject: String,
    pub organizer: String,
    pub source: BookingSource,
    #[serde(default)]
    pub checked_in_ms: Option<i64>,
    #[serde(default)]
    pub attendees: Vec<String>,
    /// When the booking ended or was released; a restart does not run it again.
    #[serde(default)]
    pub finished_ms: Option<i64>,
}

/// One line of a room's activity log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivityRecord {
    pub at_ms: i64,
    /// `command`, `outcome`, `state`, `error`.
    pub kind: String,
    pub text: String,
}

#[derive(Debug)]
pub struct Store {
    db: Database,
}

impl Store {
    /// Opens (or creates) the store in `dir`, migrating an older schema.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let path = dir.join("gateway.redb");
        let db = Database::create(&path).map_err(|source| StoreError::Open {
            path: path.clone(),
            source,
        })?;
        let store = Store { db };
        store.migrate()?;
        Ok(store)
    }

    fn write(&self) -> Result<redb::WriteTransaction, StoreError> {
        let mut tx = self.db.begin_write()?;
        tx.set_durability(Durability::Immediate)?;
        Ok(tx)
    }

    fn migrate(&self) -> Result<(), StoreError> {
        let tx = self.write()?;
        {
            let mut meta = tx.open_table(META)?;
            let found = meta.get("schema_version")?.map(|v| v.value());
            match found {
                Some(v) if v > SCHEMA_VERSION => return Err(StoreError::TooNew { found: v }),
                Some(v) if v == SCHEMA_VERSION => {}
                // A new store, or an older one: version 1 is the first layout, so there is
                // nothing to convert yet. Later migrations go here, one step per version.
                _ => {
                    meta.insert("schema_version", SCHEMA_VERSION)?;
                }
            }
            tx.open_table(BOOKINGS)?;
            tx.open_table(ACTIVITY)?;
            tx.open_table(OUTBOX)?;
        }
        tx.commit()?;
        Ok(())
    }

    pub fn schema_version(&self) -> Result<u64, StoreError> {
        let tx = self.db.begin_read()?;
        let meta = tx.open_table(META)?;
        Ok(meta.get("schema_version")?.map_or(0, |v| v.value()))
    }

    /// Stores (or replaces) a booking; durable when this returns.
    pub fn put_booking(&self, b: &StoredBooking) -> Result<(), StoreError> {
        let bytes = encode(b);
        let tx = self.write()?;
        tx.open_table(BOOKINGS)?
            .insert(b.id.as_str(), bytes.as_slice())?;
        tx.commit()?;
        Ok(())
    }

    pub fn delete_booking(&self, id: &str) -> Result<bool, StoreError> {
        let tx = self.write()?;
        let existed = tx.open_table(BOOKINGS)?.remove(id)?.is_some();
        tx.commit()?;
        Ok(existed)
    }

    pub fn booking(&self, id: &str) -> Result<Option<StoredBooking>, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(BOOKINGS)?;
        t.get(id)?
            .map(|v| decode("bookings", id, v.value()))
            .transpose()
    }

    /// Every stored booking. A record that cannot be read is reported, not skipped silently.
    pub fn bookings(&self) -> Result<Vec<StoredBooking>, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(BOOKINGS)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            let (k, v) = row?;
            out.push(decode("bookings", k.value(), v.value())?);
        }
        Ok(out)
    }

    /// Removes bookings that ended before `before_ms`; returns how many.
    pub fn prune_bookings(&self, before_ms: i64) -> Result<usize, StoreError> {
        let old: Vec<String> = self
            .bookings()?
            .into_iter()
            .filter(|b| b.end_ms < before_ms)
            .map(|b| b.id)
            .collect();
        if old.is_empty() {
            return Ok(0);
        }
        let tx = self.write()?;
        {
            let mut t = tx.open_table(BOOKINGS)?;
            for id in &old {
                t.remove(id.as_str())?;
            }
        }
        tx.commit()?;
        Ok(old.len())
    }

    /// Appends activity lines (one transaction for the batch) and trims each room's log.
    pub fn append_activity(&self, rows: &[(String, ActivityRecord)]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let tx = self.write()?;
        {
            let mut meta = tx.open_table(META)?;
            let mut seq = meta.get("activity_seq")?.map_or(0, |v| v.value());
            let mut t = tx.open_table(ACTIVITY)?;
            let mut rooms: Vec<&str> = Vec::new();
            for (room, rec) in rows {
                seq += 1;
                t.insert((room.as_str(), seq), encode(rec).as_slice())?;
                if !rooms.contains(&room.as_str()) {
                    rooms.push(room);
                }
            }
            meta.insert("activity_seq", seq)?;
            for room in rooms {
                let keys: Vec<u64> = t
                    .range((room, 0)..=(room, u64::MAX))?
                    .rev()
                    .skip(ACTIVITY_KEPT_PER_ROOM)
                    .map(|r| r.map(|(k, _)| k.value().1))
                    .collect::<Result<_, _>>()?;
                for k in keys {
                    t.remove((room, k))?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The newest `limit` activity lines of a room, newest first.
    pub fn activity(&self, room: &str, limit: usize) -> Result<Vec<ActivityRecord>, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(ACTIVITY)?;
        let mut out = Vec::new();
        for row in t.range((room, 0)..=(room, u64::MAX))?.rev().take(limit) {
            let (k, v) = row?;
            out.push(decode(
                "activity",
                &format!("{room}#{}", k.value().1),
                v.value(),
            )?);
        }
        Ok(out)
    }
}

/// What the outbox did with a batch of new events.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Appended {
    /// The sequence numbers given to the new events, in order.
    pub seqs: Vec<u64>,
    /// Droppable events removed to stay within the bound.
    pub dropped: u64,
}

impl Store {
    /// Appends events to the outbox with the next sequence numbers, in one durable
    /// transaction, keeping the bound: when full, the oldest droppable events go first (and a
    /// counted `outbox_dropped` event says so); events that must never be dropped are kept.
    pub fn append_outbox(
        &self,
        events: Vec<cloud_sync::wire::Event>,
        max_events: u64,
    ) -> Result<Appended, StoreError> {
        if events.is_empty() {
            return Ok(Appended::default());
        }
        let tx = self.write()?;
        let mut out = Appended::default();
        {
            let mut meta = tx.open_table(META)?;
            let mut next = meta.get("outbox_next_seq")?.map_or(1, |v| v.value());
            let mut t = tx.open_table(OUTBOX)?;
            let incoming = events.len() as u64;
            let mut excess = (t.len()? + incoming).saturating_sub(max_events);
            if excess > 0 {
                let mut victims = Vec::new();
                for row in t.iter()? {
                    if excess == 0 {
                        break;
                    }
                    let (k, v) = row?;
                    let droppable = serde_json::from_slice::<cloud_sync::wire::Event>(v.value())
                        .map(|e| e.kind.droppable())
                        .unwrap_or(true); // an unreadable record is worth less than a fact
                    if droppable {
                        victims.push(k.value());
                        excess -= 1;
                    }
                }
                for k in &victims {
                    t.remove(k)?;
                }
                out.dropped = victims.len() as u64;
            }
            let mut put = |t: &mut redb::Table<u64, &[u8]>, mut e: cloud_sync::wire::Event| {
                e.seq = next;
                let bytes = encode(&e);
                let r = t.insert(next, bytes.as_slice()).map(|_| next);
                next += 1;
                r
            };
            if out.dropped > 0 {
                let gap = cloud_sync::wire::Event {
                    seq: 0,
                    at_ms: events[0].at_ms,
                    room: String::new(),
                    booking: None,
                    kind: cloud_sync::wire::EventKind::OutboxDropped,
                    reason: format!(
                        "the outbox was full: {} device and access events dropped",
                        out.dropped
                    ),
                    data: serde_json::json!({ "dropped": out.dropped }),
                };
                put(&mut t, gap)?;
            }
            for e in events {
                out.seqs.push(put(&mut t, e)?);
            }
            meta.insert("outbox_next_seq", next)?;
        }
        tx.commit()?;
        Ok(out)
    }

    /// Up to `max` outbox events with `seq > after`, in order.
    pub fn outbox_after(
        &self,
        after: u64,
        max: usize,
    ) -> Result<Vec<cloud_sync::wire::Event>, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(OUTBOX)?;
        let mut out = Vec::new();
        for row in t.range((after.saturating_add(1))..)?.take(max) {
            let (k, v) = row?;
            out.push(decode("outbox", &k.value().to_string(), v.value())?);
        }
        Ok(out)
    }

    /// The hub stored every event up to `upto`: forget them. Returns how many were removed.
    pub fn ack_outbox(&self, upto: u64) -> Result<u64, StoreError> {
        let tx = self.write()?;
        let removed = {
            let mut t = tx.open_table(OUTBOX)?;
            let keys: Vec<u64> = t
                .range(..=upto)?
                .map(|r| r.map(|(k, _)| k.value()))
                .collect::<Result<_, _>>()?;
            for k in &keys {
                t.remove(k)?;
            }
            keys.len() as u64
        };
        tx.commit()?;
        Ok(removed)
    }

    /// How many events wait for the hub.
    pub fn outbox_depth(&self) -> Result<u64, StoreError> {
        let tx = self.db.begin_read()?;
        Ok(tx.open_table(OUTBOX)?.len()?)
    }

    /// The last booking cursor applied from the hub (0 before the first sync).
    pub fn hub_cursor(&self) -> Result<u64, StoreError> {
        let tx = self.db.begin_read()?;
        let meta = tx.open_table(META)?;
        Ok(meta.get("hub_cursor")?.map_or(0, |v| v.value()))
    }

    /// Applies booking changes from the hub and its cursor in one transaction, so they can
    /// never be out of step. A full snapshot replaces every hub booking. Returns the bookings
    /// removed (with their rooms), for the engine; ids that were not stored are skipped.
    pub fn apply_hub_bookings(
        &self,
        cursor: u64,
        full: bool,
        upserts: &[StoredBooking],
        deletes: &[String],
    ) -> Result<Vec<StoredBooking>, StoreError> {
        let mut gone: Vec<String> = deletes.to_vec();
        if full {
            let keep: std::collections::HashSet<&str> =
                upserts.iter().map(|b| b.id.as_str()).collect();
            for b in self.bookings()? {
                if b.source == BookingSource::Hub && !keep.contains(b.id.as_str()) {
                    gone.push(b.id);
                }
            }
        }
        let tx = self.write()?;
        let mut removed = Vec::new();
        {
            let mut t = tx.open_table(BOOKINGS)?;
            for id in &gone {
                if let Some(old) = t.remove(id.as_str())? {
                    removed.push(decode("bookings", id, old.value())?);
                }
            }
            for b in upserts {
                t.insert(b.id.as_str(), encode(b).as_slice())?;
            }
            tx.open_table(META)?.insert("hub_cursor", cursor)?;
        }
        tx.commit()?;
        Ok(removed)
    }
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    // Serializing these plain records cannot fail (no maps with non-string keys, no I/O).
    serde_json::to_vec(v).unwrap_or_default()
}

fn decode<T: for<'de> Deserialize<'de>>(
    table: &'static str,
    key: &str,
    bytes: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        table,
        key: key.to_owned(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn booking(id: &str, end_ms: i64) -> StoredBooking {
        StoredBooking {
            id: id.into(),
            room: "r1".into(),
            start_ms: 0,
            end_ms,
            subject: "s".into(),
            organizer: "o".into(),
            source: BookingSource::Local,
            checked_in_ms: None,
            attendees: Vec::new(),
            finished_ms: None,
        }
    }

    #[test]
    fn bookings_survive_reopening_and_prune_by_end() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let s = Store::open(dir.path()).expect("open");
            s.put_booking(&booking("a", 10)).expect("put");
            s.put_booking(&booking("b", 1000)).expect("put");
        }
        let s = Store::open(dir.path()).expect("reopen");
        assert_eq!(s.schema_version().expect("version"), SCHEMA_VERSION);
        assert_eq!(s.bookings().expect("list").len(), 2);
        assert_eq!(s.prune_bookings(100).expect("prune"), 1);
        assert_eq!(s.booking("b").expect("get"), Some(booking("b", 1000)));
        assert!(s.delete_booking("b").expect("delete"));
        assert!(s.bookings().expect("list").is_empty());
    }

    #[test]
    fn activity_is_kept_per_room_newest_first_and_trimmed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Store::open(dir.path()).expect("open");
        let rows: Vec<(String, ActivityRecord)> = (0..ACTIVITY_KEPT_PER_ROOM as i64 + 5)
            .map(|i| {
                let room = if i % 2 == 0 { "r1" } else { "r2" };
                (
                    room.to_owned(),
                    ActivityRecord {
                        at_ms: i,
                        kind: "command".into(),
                        text: format!("line {i}"),
                    },
                )
            })
            .collect();
        s.append_activity(&rows).expect("append");
        s.append_activity(&rows).expect("append again");
        let r1 = s.activity("r1", usize::MAX).expect("r1");
        assert_eq!(r1.len(), ACTIVITY_KEPT_PER_ROOM);
        assert_eq!(r1[0].at_ms, ACTIVITY_KEPT_PER_ROOM as i64 + 4);
        assert!(s.activity("nowhere", 10).expect("empty").is_empty());
    }

    fn wire_event(kind: cloud_sync::wire::EventKind) -> cloud_sync::wire::Event {
        cloud_sync::wire::Event {
            seq: 0,
            at_ms: 1,
            room: "r1".into(),
            booking: None,
            kind,
            reason: "why".into(),
            data: serde_json::Value::Null,
        }
    }

    #[test]
    fn the_outbox_numbers_events_survives_restarts_and_forgets_only_on_ack() {
        use cloud_sync::wire::EventKind::*;
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let s = Store::open(dir.path()).expect("open");
            let a = s
                .append_outbox(vec![wire_event(CheckedIn), wire_event(Released)], 100)
                .expect("append");
            assert_eq!(a.seqs, vec![1, 2]);
        }
        let s = Store::open(dir.path()).expect("reopen after a crash");
        let a = s
            .append_outbox(vec![wire_event(Ended)], 100)
            .expect("append");
        assert_eq!(a.seqs, vec![3], "numbers are never reused");
        let pending = s.outbox_after(0, 10).expect("read");
        assert_eq!(
            pending.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert_eq!(s.outbox_after(1, 1).expect("read")[0].seq, 2);
        assert_eq!(s.ack_outbox(2).expect("ack"), 2);
        assert_eq!(s.outbox_depth().expect("depth"), 1);
        assert_eq!(
            s.ack_outbox(2).expect("ack again"),
            0,
            "acks are idempotent"
        );
    }

    #[test]
    fn a_full_outbox_drops_device_noise_first_and_never_a_fact() {
        use cloud_sync::wire::EventKind::*;
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Store::open(dir.path()).expect("open");
        s.append_outbox(
            vec![
                wire_event(DeviceOffline),
                wire_event(CheckedIn),
                wire_event(DeviceOnline),
                wire_event(Released),
            ],
            4,
        )
        .expect("append");
        let a = s
            .append_outbox(vec![wire_event(Usage), wire_event(NoShowStrike)], 4)
            .expect("append when full");
        assert_eq!(a.dropped, 2);
        let kinds: Vec<_> = s
            .outbox_after(0, 10)
            .expect("read")
            .into_iter()
            .map(|e| e.kind)
            .collect();
        assert_eq!(
            kinds,
            vec![CheckedIn, Released, OutboxDropped, Usage, NoShowStrike]
        );
        // Only facts left: the bound gives way rather than lose one.
        let a = s.append_outbox(vec![wire_event(Ended)], 4).expect("append");
        assert_eq!(a.dropped, 0);
        assert_eq!(s.outbox_depth().expect("depth"), 6);
    }

    #[test]
    fn hub_bookings_and_their_cursor_move_together() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Store::open(dir.path()).expect("open");
        let mut hub = booking("h1", 1000);
        hub.source = BookingSource::Hub;
        let mut other = booking("h2", 1000);
        other.source = BookingSource::Hub;
        s.put_booking(&booking("local-1", 1000)).expect("local");
        s.apply_hub_bookings(5, false, &[hub.clone(), other], &[])
            .expect("apply");
        assert_eq!(s.hub_cursor().expect("cursor"), 5);
        let removed = s
            .apply_hub_bookings(9, true, &[hub], &[])
            .expect("snapshot");
        let removed: Vec<&str> = removed.iter().map(|b| b.id.as_str()).collect();
        assert_eq!(removed, vec!["h2"], "a snapshot replaces hub bookings only");
        let ids: Vec<String> = s
            .bookings()
            .expect("list")
            .into_iter()
            .map(|b| b.id)
            .collect();
        assert_eq!(ids, vec!["h1".to_owned(), "local-1".to_owned()]);
        assert_eq!(s.hub_cursor().expect("cursor"), 9);
    }

    #[test]
    fn a_store_from_a_newer_gateway_is_refused_untouched() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let s = Store::open(dir.path()).expect("open");
            let tx = s.write().expect("tx");
            tx.open_table(META)
                .expect("meta")
                .insert("schema_version", SCHEMA_VERSION + 1)
                .expect("insert");
            tx.commit().expect("commit");
        }
        let err = Store::open(dir.path()).expect_err("too new");
        assert!(matches!(err, StoreError::TooNew { found } if found == SCHEMA_VERSION + 1));
    }
}
