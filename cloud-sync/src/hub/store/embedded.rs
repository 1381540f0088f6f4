//! The embedded backend (redb): the hub on one machine. Every write transaction is durable
//! (`Durability::Immediate`) before it returns, and redb serializes write transactions, which is
//! the exclusion `transact_room` promises.

use std::path::Path;

use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction,
};

use super::{
    BookingRecord, CHANGE_LOG_KEPT, GatewayRecord, HubStoreError, Ingested, RoomCommit, RoomDocs,
    RoomKey, RoomWrites, SeriesRecord,
};
use crate::topics::GatewayId;
use crate::wire::{
    BookingChange, BookingChanges, Event, EventBatch, EventKind, PointSample, Status, VERSION,
    WireBooking,
};

/// (gateway, seq) -> event.
const EVENTS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("events");
/// (gateway, at_ms, seq): events by time.
const EVENTS_BY_TIME: TableDefinition<(&str, i64, u64), ()> =
    TableDefinition::new("events_by_time");
/// (organizer, at_ms, gateway, seq): no-show strikes by organizer.
const NO_SHOWS: TableDefinition<(&str, i64, &str, u64), ()> = TableDefinition::new("no_shows");
const ACKED: TableDefinition<&str, u64> = TableDefinition::new("acked");
const STATUS: TableDefinition<&str, &[u8]> = TableDefinition::new("status");
const LAST_SEEN: TableDefinition<&str, i64> = TableDefinition::new("last_seen");
/// (gateway, room, booking id) -> booking record.
const BOOKINGS: TableDefinition<(&str, &str, &str), &[u8]> = TableDefinition::new("room_bookings");
/// booking id -> (gateway, room).
const BOOKING_ROOM: TableDefinition<&str, (&str, &str)> = TableDefinition::new("booking_room");
/// (gateway, room, series id) -> series record.
const SERIES: TableDefinition<(&str, &str, &str), &[u8]> = TableDefinition::new("series");
/// Change log per gateway: (gateway, cursor) -> change.
const CHANGES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("changes");
const CURSORS: TableDefinition<&str, u64> = TableDefinition::new("cursors");
/// (gateway, device, point) -> sample.
const TELEMETRY: TableDefinition<(&str, &str, &str), &[u8]> = TableDefinition::new("telemetry");
/// (kind, key) -> JSON document.
const DOCS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("docs");

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

/// The hub's embedded store, `hub.redb` in its data directory.
#[derive(Debug)]
pub struct Embedded {
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

/// The organizer a no-show strike names, if any.
pub(super) fn strike_organizer(e: &Event) -> Option<&str> {
    (e.kind == EventKind::NoShowStrike)
        .then(|| e.data.get("organizer").and_then(|o| o.as_str()))
        .flatten()
        .filter(|o| !o.is_empty())
}

/// The raw change's effect on the stored booking set (used by `change_booking`).
pub(super) fn record_of(booking: &WireBooking, source: &str, now_ms: i64) -> BookingRecord {
    BookingRecord {
        id: booking.id.clone(),
        room: booking.room.clone(),
        start_ms: booking.start_ms,
        end_ms: booking.end_ms,
        subject: booking.subject.clone(),
        organizer: booking.organizer.clone(),
        attendees: booking.attendees.clone(),
        state: "active".into(),
        series: None,
        source: source.into(),
        source_uid: None,
        note: String::new(),
        updated_ms: now_ms,
    }
}

/// The booking a gateway gets for a stored record.
pub(super) fn wire_of(b: &BookingRecord) -> WireBooking {
    WireBooking {
        id: b.id.clone(),
        room: b.room.clone(),
        start_ms: b.start_ms,
        end_ms: b.end_ms,
        subject: b.subject.clone(),
        organizer: b.organizer.clone(),
        attendees: b.attendees.clone(),
    }
}

impl Embedded {
    pub fn open(dir: &Path) -> Result<Embedded, HubStoreError> {
        let db = Database::create(dir.join("hub.redb"))?;
        let store = Embedded { db };
        let tx = store.write()?;
        tx.open_table(EVENTS)?;
        tx.open_table(EVENTS_BY_TIME)?;
        tx.open_table(NO_SHOWS)?;
        tx.open_table(ACKED)?;
        tx.open_table(STATUS)?;
        tx.open_table(LAST_SEEN)?;
        tx.open_table(BOOKINGS)?;
        tx.open_table(BOOKING_ROOM)?;
        tx.open_table(SERIES)?;
        tx.open_table(CHANGES)?;
        tx.open_table(CURSORS)?;
        tx.open_table(TELEMETRY)?;
        tx.open_table(DOCS)?;
        tx.commit()?;
        Ok(store)
    }

    fn write(&self) -> Result<WriteTransaction, HubStoreError> {
        let mut tx = self.db.begin_write()?;
        tx.set_durability(Durability::Immediate)?;
        Ok(tx)
    }

    pub fn ingest(
        &self,
        gw: &GatewayId,
        batch: &EventBatch,
        now_ms: i64,
    ) -> Result<Ingested, HubStoreError> {
        let key = gw.to_string();
        let key = key.as_str();
        let tx = self.write()?;
        let result = {
            let mut events = tx.open_table(EVENTS)?;
            let mut by_time = tx.open_table(EVENTS_BY_TIME)?;
            let mut no_shows = tx.open_table(NO_SHOWS)?;
            let mut acked = tx.open_table(ACKED)?;
            let mut upto = acked.get(key)?.map_or(0, |v| v.value());
            let mut fresh = Vec::new();
            let mut duplicates = 0;
            for e in &batch.events {
                if e.seq <= upto || events.get((key, e.seq))?.is_some() {
                    duplicates += 1;
                    continue;
                }
                events.insert((key, e.seq), json(e).as_slice())?;
                by_time.insert((key, e.at_ms, e.seq), ())?;
                if let Some(organizer) = strike_organizer(e) {
                    no_shows.insert((organizer, e.at_ms, key, e.seq), ())?;
                }
                fresh.push(e.clone());
            }
            while events.get((key, upto + 1))?.is_some() {
                upto += 1;
            }
            acked.insert(key, upto)?;
            tx.open_table(LAST_SEEN)?.insert(key, now_ms)?;
            Ingested {
                fresh,
                duplicates,
                ack_upto: upto,
            }
        };
        tx.commit()?;
        Ok(result)
    }

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

    pub fn events_between(
        &self,
        gw: &GatewayId,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<Event>, HubStoreError> {
        let key = gw.to_string();
        let key = key.as_str();
        let mut out = Vec::new();
        if from_ms >= to_ms {
            return Ok(out);
        }
        let tx = self.db.begin_read()?;
        let index = tx.open_table(EVENTS_BY_TIME)?;
        let events = tx.open_table(EVENTS)?;
        for row in index.range((key, from_ms, 0)..(key, to_ms, 0))? {
            let (k, _) = row?;
            let (_, _, seq) = k.value();
            if let Some(v) = events.get((key, seq))? {
                out.push(parse("events", v.value())?);
            }
        }
        Ok(out)
    }

    pub fn no_shows(&self, organizer: &str, since_ms: i64) -> Result<Vec<i64>, HubStoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(NO_SHOWS)?;
        let mut out = Vec::new();
        for row in
            t.range((organizer, since_ms, "", 0)..=(organizer, i64::MAX, "\u{10FFFF}", u64::MAX))?
        {
            let (k, _) = row?;
            out.push(k.value().1);
        }
        Ok(out)
    }

    pub fn put_status(
        &self,
        gw: &GatewayId,
        status: &Status,
        now_ms: i64,
    ) -> Result<(), HubStoreError> {
        let key = gw.to_string();
        let tx = self.write()?;
        tx.open_table(STATUS)?
            .insert(key.as_str(), json(status).as_slice())?;
        tx.open_table(LAST_SEEN)?.insert(key.as_str(), now_ms)?;
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

    pub fn gateways(&self) -> Result<Vec<GatewayRecord>, HubStoreError> {
        let tx = self.db.begin_read()?;
        let seen = tx.open_table(LAST_SEEN)?;
        let status = tx.open_table(STATUS)?;
        let mut out = Vec::new();
        for row in seen.iter()? {
            let (k, v) = row?;
            let Some((site, name)) = k.value().split_once('/') else {
                continue;
            };
            let Ok(id) = GatewayId::new(site, name) else {
                continue;
            };
            let status = status
                .get(k.value())?
                .map(|s| parse("status", s.value()))
                .transpose()?;
            out.push(GatewayRecord {
                id,
                status,
                last_seen_ms: v.value(),
            });
        }
        Ok(out)
    }

    pub fn change_booking(
        &self,
        gw: &GatewayId,
        change: BookingChange,
    ) -> Result<u64, HubStoreError> {
        let key = gw.to_string();
        let key = key.as_str();
        let tx = self.write()?;
        let cursor = {
            let mut bookings = tx.open_table(BOOKINGS)?;
            let mut rooms = tx.open_table(BOOKING_ROOM)?;
            match &change {
                BookingChange::Upsert { booking } => {
                    let record = record_of(booking, "api", 0);
                    bookings.insert(
                        (key, booking.room.as_str(), booking.id.as_str()),
                        json(&record).as_slice(),
                    )?;
                    rooms.insert(booking.id.as_str(), (key, booking.room.as_str()))?;
                }
                BookingChange::Delete { id, room } => {
                    let old = bookings
                        .get((key, room.as_str(), id.as_str()))?
                        .map(|v| parse::<BookingRecord>("room_bookings", v.value()))
                        .transpose()?;
                    if let Some(mut record) = old {
                        record.state = "cancelled".into();
                        bookings
                            .insert((key, room.as_str(), id.as_str()), json(&record).as_slice())?;
                    }
                }
            }
            append_changes(&tx, key, std::slice::from_ref(&change))?
        };
        tx.commit()?;
        Ok(cursor)
    }

    pub fn changes_since(
        &self,
        gw: &GatewayId,
        after: u64,
    ) -> Result<BookingChanges, HubStoreError> {
        let key = gw.to_string();
        let key = key.as_str();
        let tx = self.db.begin_read()?;
        let current = tx.open_table(CURSORS)?.get(key)?.map_or(0, |v| v.value());
        let log = tx.open_table(CHANGES)?;
        let oldest = log
            .range((key, 0)..=(key, u64::MAX))?
            .next()
            .transpose()?
            .map(|(k, _)| k.value().1);
        let in_log = after == current
            || oldest.is_some_and(|o| after.saturating_add(1) >= o && after <= current);
        if in_log {
            let mut changes = Vec::new();
            for row in log.range((key, after.saturating_add(1))..=(key, u64::MAX))? {
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
        for row in bookings.range((key, "", "")..)? {
            let (k, v) = row?;
            if k.value().0 != key {
                break;
            }
            let booking: BookingRecord = parse("room_bookings", v.value())?;
            if booking.state == "active" {
                changes.push(BookingChange::Upsert {
                    booking: wire_of(&booking),
                });
            }
        }
        Ok(BookingChanges {
            v: VERSION,
            cursor: current,
            full: true,
            changes,
        })
    }

    pub fn transact_room<T, E, F>(
        &self,
        room: &RoomKey,
        since_ms: i64,
        decide: F,
    ) -> Result<Result<RoomCommit<T>, E>, HubStoreError>
    where
        F: FnOnce(RoomDocs) -> Result<(T, RoomWrites), E>,
    {
        let key = room.gateway.to_string();
        let (gw, name) = (key.as_str(), room.room.as_str());
        let tx = self.write()?;
        let commit = {
            let mut bookings = tx.open_table(BOOKINGS)?;
            let mut series = tx.open_table(SERIES)?;
            let mut docs = RoomDocs::default();
            for row in bookings.range((gw, name, "")..)? {
                let (k, v) = row?;
                let (g, r, _) = k.value();
                if g != gw || r != name {
                    break;
                }
                let b: BookingRecord = parse("room_bookings", v.value())?;
                if b.end_ms > since_ms {
                    docs.bookings.push(b);
                }
            }
            docs.bookings
                .sort_by(|a, b| (a.start_ms, &a.id).cmp(&(b.start_ms, &b.id)));
            for row in series.range((gw, name, "")..)? {
                let (k, v) = row?;
                let (g, r, _) = k.value();
                if g != gw || r != name {
                    break;
                }
                docs.series.push(parse("series", v.value())?);
            }
            let (value, writes) = match decide(docs) {
                Ok(decided) => decided,
                // Dropping the transaction without commit writes nothing.
                Err(e) => return Ok(Err(e)),
            };
            let mut rooms = tx.open_table(BOOKING_ROOM)?;
            for b in &writes.bookings {
                bookings.insert((gw, name, b.id.as_str()), json(b).as_slice())?;
                rooms.insert(b.id.as_str(), (gw, name))?;
            }
            for s in &writes.series {
                series.insert((gw, name, s.id.as_str()), json(s).as_slice())?;
            }
            for id in &writes.series_deleted {
                series.remove((gw, name, id.as_str()))?;
            }
            drop((bookings, series, rooms));
            let cursor = if writes.changes.is_empty() {
                tx.open_table(CURSORS)?.get(gw)?.map_or(0, |v| v.value())
            } else {
                append_changes(&tx, gw, &writes.changes)?
            };
            RoomCommit {
                value,
                pushed: BookingChanges {
                    v: VERSION,
                    cursor,
                    full: false,
                    changes: writes.changes,
                },
            }
        };
        tx.commit()?;
        Ok(Ok(commit))
    }

    pub fn bookings(
        &self,
        room: &RoomKey,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<BookingRecord>, HubStoreError> {
        let key = room.gateway.to_string();
        let (gw, name) = (key.as_str(), room.room.as_str());
        let tx = self.db.begin_read()?;
        let t = tx.open_table(BOOKINGS)?;
        let mut out = Vec::new();
        for row in t.range((gw, name, "")..)? {
            let (k, v) = row?;
            let (g, r, _) = k.value();
            if g != gw || r != name {
                break;
            }
            let b: BookingRecord = parse("room_bookings", v.value())?;
            if b.start_ms < to_ms && b.end_ms > from_ms {
                out.push(b);
            }
        }
        out.sort_by(|a, b| (a.start_ms, &a.id).cmp(&(b.start_ms, &b.id)));
        Ok(out)
    }

    pub fn find_booking(
        &self,
        id: &str,
    ) -> Result<Option<(RoomKey, BookingRecord)>, HubStoreError> {
        let tx = self.db.begin_read()?;
        let rooms = tx.open_table(BOOKING_ROOM)?;
        let Some(at) = rooms.get(id)? else {
            return Ok(None);
        };
        let (gw, room) = at.value();
        let Some((site, name)) = gw.split_once('/') else {
            return Ok(None);
        };
        let Ok(gateway) = GatewayId::new(site, name) else {
            return Ok(None);
        };
        let bookings = tx.open_table(BOOKINGS)?;
        let Some(v) = bookings.get((gw, room, id))? else {
            return Ok(None);
        };
        let record = parse("room_bookings", v.value())?;
        Ok(Some((
            RoomKey {
                gateway,
                room: room.to_owned(),
            },
            record,
        )))
    }

    pub fn all_series(&self) -> Result<Vec<(RoomKey, SeriesRecord)>, HubStoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(SERIES)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            let (k, v) = row?;
            let (gw, room, _) = k.value();
            let Some((site, name)) = gw.split_once('/') else {
                continue;
            };
            let Ok(gateway) = GatewayId::new(site, name) else {
                continue;
            };
            out.push((
                RoomKey {
                    gateway,
                    room: room.to_owned(),
                },
                parse("series", v.value())?,
            ));
        }
        Ok(out)
    }

    pub fn put_telemetry(
        &self,
        gw: &GatewayId,
        samples: &[PointSample],
    ) -> Result<(), HubStoreError> {
        let key = gw.to_string();
        let tx = self.write()?;
        {
            let mut t = tx.open_table(TELEMETRY)?;
            for s in samples {
                let k = (key.as_str(), s.device.as_str(), s.point.as_str());
                let newer = match t.get(k)? {
                    Some(old) => parse::<PointSample>("telemetry", old.value())
                        .map_or(true, |old| old.at_ms <= s.at_ms),
                    None => true,
                };
                if newer {
                    t.insert(k, json(s).as_slice())?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    pub fn telemetry(&self, gw: &GatewayId) -> Result<Vec<PointSample>, HubStoreError> {
        let key = gw.to_string();
        let key = key.as_str();
        let tx = self.db.begin_read()?;
        let t = tx.open_table(TELEMETRY)?;
        let mut out = Vec::new();
        for row in t.range((key, "", "")..)? {
            let (k, v) = row?;
            if k.value().0 != key {
                break;
            }
            out.push(parse("telemetry", v.value())?);
        }
        Ok(out)
    }

    pub fn put_doc(
        &self,
        kind: &str,
        key: &str,
        value: &serde_json::Value,
    ) -> Result<(), HubStoreError> {
        let tx = self.write()?;
        tx.open_table(DOCS)?
            .insert((kind, key), json(value).as_slice())?;
        tx.commit()?;
        Ok(())
    }

    pub fn doc(&self, kind: &str, key: &str) -> Result<Option<serde_json::Value>, HubStoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(DOCS)?;
        t.get((kind, key))?
            .map(|v| parse("docs", v.value()))
            .transpose()
    }

    pub fn docs(&self, kind: &str) -> Result<Vec<(String, serde_json::Value)>, HubStoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(DOCS)?;
        let mut out = Vec::new();
        for row in t.range((kind, "")..)? {
            let (k, v) = row?;
            let (k_kind, k_key) = k.value();
            if k_kind != kind {
                break;
            }
            out.push((k_key.to_owned(), parse("docs", v.value())?));
        }
        Ok(out)
    }

    pub fn delete_doc(&self, kind: &str, key: &str) -> Result<bool, HubStoreError> {
        let tx = self.write()?;
        let was = tx.open_table(DOCS)?.remove((kind, key))?.is_some();
        tx.commit()?;
        Ok(was)
    }
}

/// Appends changes to a gateway's log in `tx`, trimming it to [`CHANGE_LOG_KEPT`]; returns the
/// cursor of the last one.
fn append_changes(
    tx: &WriteTransaction,
    gw: &str,
    changes: &[BookingChange],
) -> Result<u64, HubStoreError> {
    let mut cursors = tx.open_table(CURSORS)?;
    let mut log = tx.open_table(CHANGES)?;
    let mut cursor = cursors.get(gw)?.map_or(0, |v| v.value());
    for change in changes {
        cursor += 1;
        log.insert((gw, cursor), json(change).as_slice())?;
        if cursor > CHANGE_LOG_KEPT {
            log.remove((gw, cursor - CHANGE_LOG_KEPT))?;
        }
    }
    cursors.insert(gw, cursor)?;
    Ok(cursor)
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
        let s = Embedded::open(dir.path()).expect("open");
        let r = s.ingest(&gw, &batch(&[1, 2, 4]), 0).expect("ingest");
        assert_eq!(
            (r.fresh.len(), r.duplicates, r.ack_upto),
            (3, 0, 2),
            "4 waits for 3"
        );
        let r = s.ingest(&gw, &batch(&[2, 3, 4, 5]), 0).expect("redelivery");
        assert_eq!((r.fresh.len(), r.duplicates, r.ack_upto), (2, 2, 5));
        drop(s);
        let s = Embedded::open(dir.path()).expect("reopen");
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
        let s = Embedded::open(dir.path()).expect("open");
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
