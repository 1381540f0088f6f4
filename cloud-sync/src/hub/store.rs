//! The hub's embedded store (redb): events once per (gateway, seq), the contiguous ack
//! point per gateway, gateway status, and a per-gateway log of booking changes with cursors.

use std::path::Path;

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use crate::topics::GatewayId;
use crate::wire::{BookingChange, BookingChanges, Event, EventBatch, Status, VERSION, WireBooking};

const EVENTS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("events");
const ACKED: TableDefinition<&str, u64> = TableDefinition::new("acked");
const STATUS: TableDefinition<&str, &[u8]> = TableDefinition::new("status");
/// Current bookings per gateway: (gateway, booking id) -> booking.
const BOOKINGS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("bookings");
/// Change log per gateway: (gateway, cursor) -> change.
const CHANGES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("changes");
const CURSORS: TableDefinition<&str, u64> = TableDefinition::new("cursors");

/// How many changes per gateway the log keeps; an older cursor gets a full snapshot.
pub const CHANGE_LOG_KEPT: u64 = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum HubStoreError {
    #[error("hub store: {0}")]
    Db(#[from] redb::Error),
    #[error("hub store record in {table} is unreadable: {reason}")]
    Corrupt { table: &'static str, reason: String },
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for HubStoreError {
            fn from(e: $t) -> Self {
                HubStoreError::Db(e.into())
            }
        }
    )*};
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

/// What an ingest did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ingested {
    /// Events stored for the first time.
    pub new: usize,
    /// Events already stored (redelivered on the wire), ignored.
    pub duplicates: usize,
    /// The gateway may forget every event up to this sequence number.
    pub ack_upto: u64,
}

#[derive(Debug)]
pub struct HubStore {
    db: Database,
}

fn json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

fn parse<T: serde::de::DeserializeOwned>(
    table: &'static str,
    bytes: &[u8],
) -> Result<T, HubStoreError> {
    serde_json::from_slice(bytes).map_err(|e| HubStoreError::Corrupt {
        table,
        reason: e.to_string(),
    })
}

impl HubStore {
    pub fn open(dir: &Path) -> Result<HubStore, HubStoreError> {
        let db = Database::create(dir.join("hub.redb"))?;
        let store = HubStore { db };
        let tx = store.write()?;
        tx.open_table(EVENTS)?;
        tx.open_table(ACKED)?;
        tx.open_table(STATUS)?;
        tx.open_table(BOOKINGS)?;
        tx.open_table(CHANGES)?;
        tx.open_table(CURSORS)?;
        tx.commit()?;
        Ok(store)
    }

    fn write(&self) -> Result<redb::WriteTransaction, HubStoreError> {
        let mut tx = self.db.begin_write()?;
        tx.set_durability(Durability::Immediate)?;
        Ok(tx)
    }

    /// Stores a batch's new events durably (a redelivered event is ignored) and says up to
    /// which sequence number the gateway may forget its outbox.
    pub fn ingest(&self, gw: &GatewayId, batch: &EventBatch) -> Result<Ingested, HubStoreError> {
        let key = gw.to_string();
        let tx = self.write()?;
        let result = {
            let mut events = tx.open_table(EVENTS)?;
            let mut acked = tx.open_table(ACKED)?;
            let mut upto = acked.get(key.as_str())?.map_or(0, |v| v.value());
            let (mut new, mut duplicates) = (0, 0);
            for e in &batch.events {
                if e.seq <= upto || events.get((key.as_str(), e.seq))?.is_some() {
                    duplicates += 1;
                    continue;
                }
                events.insert((key.as_str(), e.seq), json(e).as_slice())?;
                new += 1;
            }
            while events.get((key.as_str(), upto + 1))?.is_some() {
                upto += 1;
            }
            acked.insert(key.as_str(), upto)?;
            Ingested {
                new,
                duplicates,
                ack_upto: upto,
            }
        };
        tx.commit()?;
        Ok(result)
    }

    /// Every stored event of a gateway, in sequence order.
    pub fn events(&self, gw: &GatewayId) -> Result<Vec<Event>, HubStoreError> {
        let key = gw.to_string();
        let tx = self.db.begin_read()?;
        let t = tx.open_table(EVENTS)?;
        let mut out = Vec::new();
        for row in t.range((key.as_str(), 0)..=(key.as_str(), u64::MAX))? {
            let (_, v) = row?;
            out.push(parse("events", v.value())?);
        }
        Ok(out)
    }

    pub fn put_status(&self, gw: &GatewayId, status: &Status) -> Result<(), HubStoreError> {
        let tx = self.write()?;
        tx.open_table(STATUS)?
            .insert(gw.to_string().as_str(), json(status).as_slice())?;
        tx.commit()?;
        Ok(())
    }

    pub fn status(&self, gw: &GatewayId) -> Result<Option<Status>, HubStoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(STATUS)?;
        t.get(gw.to_string().as_str())?
            .map(|v| parse("status", v.value()))
            .transpose()
    }

    /// Records a booking change for a gateway's room; returns its cursor.
    pub fn change_booking(
        &self,
        gw: &GatewayId,
        change: BookingChange,
    ) -> Result<u64, HubStoreError> {
        let key = gw.to_string();
        let tx = self.write()?;
        let cursor = {
            let mut cursors = tx.open_table(CURSORS)?;
            let cursor = cursors.get(key.as_str())?.map_or(0, |v| v.value()) + 1;
            cursors.insert(key.as_str(), cursor)?;
            let mut bookings = tx.open_table(BOOKINGS)?;
            match &change {
                BookingChange::Upsert { booking } => {
                    bookings.insert(
                        (key.as_str(), booking.id.as_str()),
                        json(booking).as_slice(),
                    )?;
                }
                BookingChange::Delete { id, .. } => {
                    bookings.remove((key.as_str(), id.as_str()))?;
                }
            }
            let mut log = tx.open_table(CHANGES)?;
            log.insert((key.as_str(), cursor), json(&change).as_slice())?;
            if cursor > CHANGE_LOG_KEPT {
                log.remove((key.as_str(), cursor - CHANGE_LOG_KEPT))?;
            }
            cursor
        };
        tx.commit()?;
        Ok(cursor)
    }

    /// The answer to a gateway's `SyncRequest{cursor}`: the changes after it, or a full
    /// snapshot when the cursor is older than the log (or from another life of the hub).
    pub fn changes_since(
        &self,
        gw: &GatewayId,
        after: u64,
    ) -> Result<BookingChanges, HubStoreError> {
        let key = gw.to_string();
        let tx = self.db.begin_read()?;
        let current = tx
            .open_table(CURSORS)?
            .get(key.as_str())?
            .map_or(0, |v| v.value());
        let log = tx.open_table(CHANGES)?;
        let oldest = log
            .range((key.as_str(), 0)..=(key.as_str(), u64::MAX))?
            .next()
            .transpose()?
            .map(|(k, _)| k.value().1);
        let in_log = after == current || oldest.is_some_and(|o| after + 1 >= o && after <= current);
        if in_log {
            let mut changes = Vec::new();
            for row in log.range((key.as_str(), after + 1)..=(key.as_str(), u64::MAX))? {
                let (_, v) = row?;
                changes.push(parse("changes", v.value())?);
            }
            return Ok(BookingChanges {
                v: VERSION,
                cursor: current,
                full: false,
                changes,
            });
        }
        let bookings = tx.open_table(BOOKINGS)?;
        let mut changes = Vec::new();
        for row in bookings.range((key.as_str(), "")..)? {
            let (k, v) = row?;
            if k.value().0 != key {
                break;
            }
            let booking: WireBooking = parse("bookings", v.value())?;
            changes.push(BookingChange::Upsert { booking });
        }
        Ok(BookingChanges {
            v: VERSION,
            cursor: current,
            full: true,
            changes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::EventKind;

    fn batch(seqs: &[u64]) -> EventBatch {
        EventBatch {
            v: VERSION,
            gateway: "hq/gw".into(),
            events: seqs
                .iter()
                .map(|&seq| Event {
                    seq,
                    at_ms: 0,
                    room: "r1".into(),
                    booking: None,
                    kind: EventKind::CheckedIn,
                    reason: String::new(),
                    data: serde_json::Value::Null,
                })
                .collect(),
        }
    }

    #[test]
    fn events_are_stored_once_and_acked_up_to_the_first_gap() {
        let dir = tempfile::tempdir().expect("tempdir");
        let gw = GatewayId::new("hq", "gw").expect("id");
        let s = HubStore::open(dir.path()).expect("open");
        let r = s.ingest(&gw, &batch(&[1, 2, 4])).expect("ingest");
        assert_eq!(
            (r.new, r.duplicates, r.ack_upto),
            (3, 0, 2),
            "4 waits for 3"
        );
        let r = s.ingest(&gw, &batch(&[2, 3, 4, 5])).expect("redelivery");
        assert_eq!((r.new, r.duplicates, r.ack_upto), (2, 2, 5));
        drop(s);
        let s = HubStore::open(dir.path()).expect("reopen");
        let seqs: Vec<u64> = s
            .events(&gw)
            .expect("events")
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
        let other = GatewayId::new("hq", "gw2").expect("id");
        assert!(s.events(&other).expect("none").is_empty());
    }

    #[test]
    fn a_gateway_catches_up_from_its_cursor_or_gets_a_snapshot() {
        let dir = tempfile::tempdir().expect("tempdir");
        let gw = GatewayId::new("hq", "gw").expect("id");
        let s = HubStore::open(dir.path()).expect("open");
        let b = |id: &str| WireBooking {
            id: id.into(),
            room: "r1".into(),
            start_ms: 0,
            end_ms: 1,
            subject: "s".into(),
            organizer: "o".into(),
            attendees: Vec::new(),
        };
        s.change_booking(&gw, BookingChange::Upsert { booking: b("a") })
            .expect("a");
        s.change_booking(&gw, BookingChange::Upsert { booking: b("b") })
            .expect("b");
        let c = s
            .change_booking(
                &gw,
                BookingChange::Delete {
                    id: "a".into(),
                    room: "r1".into(),
                },
            )
            .expect("delete a");
        assert_eq!(c, 3);
        let since1 = s.changes_since(&gw, 1).expect("since 1");
        assert!(!since1.full);
        assert_eq!((since1.cursor, since1.changes.len()), (3, 2));
        let up_to_date = s.changes_since(&gw, 3).expect("since 3");
        assert!(!up_to_date.full && up_to_date.changes.is_empty());
        let lost = s
            .changes_since(&gw, 99)
            .expect("a cursor from another life");
        assert!(lost.full);
        assert_eq!(
            lost.changes,
            vec![BookingChange::Upsert { booking: b("b") }]
        );
    }
}
