//! The PostgreSQL backend: the hub as several replicas sharing one database and the ingest.
//!
//! Same semantics as the embedded store (`embedded.rs` is the reference), over a small pool of
//! tokio-postgres connections. Replicas receive messages of the same gateway at the same time
//! (a shared subscription distributes per message), so what embedded gets from redb's single
//! writer is spelled out here with row locks, always taken in the same order:
//!
//! * **ingest** locks the gateway's `acked` row first (an upsert: the row exists after it), so
//!   batches of one gateway are stored one after the other across replicas; events go in with
//!   `ON CONFLICT DO NOTHING RETURNING seq`, which says which are fresh, and the contiguous ack
//!   point is computed under the same lock. The (gateway, seq) primary key is the last word:
//!   an event can never be stored twice, whatever a replica believes.
//! * **transact_room** and **change_booking** lock the room's `rooms` row `FOR UPDATE`, then
//!   the gateway's `cursors` row (the change log's counter): room transactions exclude each
//!   other across replicas, and cursors are handed out one transaction at a time, in commit
//!   order.
//! * **changes_since** reads in one `REPEATABLE READ` snapshot, so a cursor and the log it
//!   points into always agree.
//!
//! Transactions run at `READ COMMITTED` (each statement sees what committed before it, which
//! is what the locks rely on) and commit with the server's `synchronous_commit` (on by
//! default): a batch is on disk before it is acked.
//!
//! Text key columns use the "C" collation, so rows sort by bytes as redb's keys do, whatever
//! the database's locale. What a gateway sends (events, status) is kept as `json`, which holds
//! any JSON exactly; a no-show strike's organizer, a key column, has U+0000 (which PostgreSQL
//! text cannot hold) replaced by U+FFFD, in storage and in queries alike, so no batch is ever
//! refused for it. A record is stored under the room of its transaction: a `BookingRecord` or
//! `SeriesRecord` reads back with that room.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt::Display;

use deadpool_postgres::{
    GenericClient, Manager, ManagerConfig, Object, Pool, RecyclingMethod, Transaction,
};
use tokio_postgres::types::ToSql;
use tokio_postgres::types::{FromSql, Json};
use tokio_postgres::{IsolationLevel, NoTls, Row};

use super::embedded::{record_of, strike_organizer, wire_of};
use super::{
    BookingRecord, CHANGE_LOG_KEPT, GatewayRecord, HubStoreError, Ingested, RoomCommit, RoomDocs,
    RoomKey, RoomWrites, SeriesRecord,
};
use crate::topics::GatewayId;
use crate::wire::{BookingChange, BookingChanges, Event, EventBatch, PointSample, Status, VERSION};

/// The schema this code reads and writes.
pub const SCHEMA_VERSION: i32 = 1;

/// Serializes schema migrations of replicas starting together (`pg_advisory_xact_lock`).
const MIGRATION_LOCK: i64 = 0x726f_6f6d_6761_7465; // "roomgate"

/// Migration `i` brings the schema from version `i` to `i + 1`.
const MIGRATIONS: [&str; SCHEMA_VERSION as usize] = [r#"
CREATE TABLE events (
    gateway text COLLATE "C" NOT NULL,
    seq bigint NOT NULL,
    at_ms bigint NOT NULL,
    kind text NOT NULL,
    -- The organizer of a no_show_strike event, else NULL.
    strike_organizer text COLLATE "C",
    -- The event as the gateway sent it.
    body json NOT NULL,
    PRIMARY KEY (gateway, seq)
);
CREATE INDEX events_by_time ON events (gateway, at_ms, seq);
CREATE INDEX no_show_strikes ON events (strike_organizer, at_ms, gateway, seq)
    WHERE strike_organizer IS NOT NULL;

-- The contiguous ack point per gateway; its row is the gateway's ingest lock.
CREATE TABLE acked (
    gateway text COLLATE "C" PRIMARY KEY,
    upto bigint NOT NULL
);

CREATE TABLE gateways (
    gateway text COLLATE "C" PRIMARY KEY,
    status json,
    last_seen_ms bigint NOT NULL
);

-- One row per room ever transacted on: the lock of its transactions.
CREATE TABLE rooms (
    gateway text COLLATE "C" NOT NULL,
    room text COLLATE "C" NOT NULL,
    PRIMARY KEY (gateway, room)
);

CREATE TABLE bookings (
    gateway text COLLATE "C" NOT NULL,
    room text COLLATE "C" NOT NULL,
    id text COLLATE "C" NOT NULL,
    start_ms bigint NOT NULL,
    end_ms bigint NOT NULL,
    subject text NOT NULL,
    organizer text NOT NULL,
    attendees text[] NOT NULL,
    state text NOT NULL,
    series text,
    source text NOT NULL,
    source_uid text,
    note text NOT NULL,
    updated_ms bigint NOT NULL,
    PRIMARY KEY (gateway, room, id)
);
CREATE INDEX bookings_by_time ON bookings (gateway, room, start_ms);

-- Where a booking id was last written.
CREATE TABLE booking_rooms (
    id text COLLATE "C" PRIMARY KEY,
    gateway text COLLATE "C" NOT NULL,
    room text COLLATE "C" NOT NULL
);

CREATE TABLE series (
    gateway text COLLATE "C" NOT NULL,
    room text COLLATE "C" NOT NULL,
    id text COLLATE "C" NOT NULL,
    doc jsonb NOT NULL,
    PRIMARY KEY (gateway, room, id)
);

-- The change log per gateway, trimmed to the last CHANGE_LOG_KEPT.
CREATE TABLE changes (
    gateway text COLLATE "C" NOT NULL,
    cursor bigint NOT NULL,
    change jsonb NOT NULL,
    PRIMARY KEY (gateway, cursor)
);

-- The log's position per gateway; its row serializes cursor allocation.
CREATE TABLE cursors (
    gateway text COLLATE "C" PRIMARY KEY,
    cursor bigint NOT NULL
);

CREATE TABLE telemetry (
    gateway text COLLATE "C" NOT NULL,
    device text COLLATE "C" NOT NULL,
    point text COLLATE "C" NOT NULL,
    at_ms bigint NOT NULL,
    value double precision,
    PRIMARY KEY (gateway, device, point)
);

CREATE TABLE docs (
    kind text COLLATE "C" NOT NULL,
    key text COLLATE "C" NOT NULL,
    value jsonb NOT NULL,
    PRIMARY KEY (kind, key)
);
"#];

const BOOKING_COLUMNS: &str = "id, start_ms, end_ms, subject, organizer, attendees, state, \
                               series, source, source_uid, note, updated_ms";

/// The hub's PostgreSQL store: a pool of connections to one database.
#[derive(Debug)]
pub struct Postgres {
    pool: Pool,
}

/// Puts the operation's name in front of a database or pool error.
trait During<T> {
    fn during(self, op: &'static str) -> Result<T, HubStoreError>;
}

impl<T, E: Display> During<T> for Result<T, E> {
    fn during(self, op: &'static str) -> Result<T, HubStoreError> {
        self.map_err(|e| HubStoreError::Postgres(format!("{op}: {e}")))
    }
}

/// Runs a statement (prepared once per connection) and says how many rows it touched.
async fn exec(
    c: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
    op: &'static str,
) -> Result<u64, HubStoreError> {
    let stmt = c.prepare_cached(sql).await.during(op)?;
    c.execute(&stmt, params).await.during(op)
}

/// Runs a query (prepared once per connection) and returns its rows.
async fn rows(
    c: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
    op: &'static str,
) -> Result<Vec<Row>, HubStoreError> {
    let stmt = c.prepare_cached(sql).await.during(op)?;
    c.query(&stmt, params).await.during(op)
}

/// Runs a query that returns exactly one row.
async fn one(
    c: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
    op: &'static str,
) -> Result<Row, HubStoreError> {
    let stmt = c.prepare_cached(sql).await.during(op)?;
    c.query_one(&stmt, params).await.during(op)
}

/// Runs a query that returns at most one row.
async fn opt(
    c: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
    op: &'static str,
) -> Result<Option<Row>, HubStoreError> {
    let stmt = c.prepare_cached(sql).await.during(op)?;
    c.query_opt(&stmt, params).await.during(op)
}

/// A column of a row, or a `Corrupt` error naming the table.
fn get<'a, T: FromSql<'a>>(
    row: &'a Row,
    table: &'static str,
    column: &str,
) -> Result<T, HubStoreError> {
    row.try_get(column).map_err(|e| HubStoreError::Corrupt {
        table,
        reason: format!("{column}: {e}"),
    })
}

/// A stored counter (sequence number, cursor); never negative when written by this code.
fn counter(table: &'static str, value: i64) -> Result<u64, HubStoreError> {
    u64::try_from(value).map_err(|_| HubStoreError::Corrupt {
        table,
        reason: format!("negative counter {value}"),
    })
}

/// A sequence number or cursor as a bigint.
fn bigint(op: &'static str, what: &str, value: u64) -> Result<i64, HubStoreError> {
    i64::try_from(value).map_err(|_| {
        HubStoreError::Postgres(format!(
            "{op}: {what} {value} is beyond PostgreSQL's bigint (at most {})",
            i64::MAX
        ))
    })
}

/// A key column's text: PostgreSQL text cannot hold U+0000.
fn key_text(s: &str) -> String {
    s.replace('\0', "\u{FFFD}")
}

fn parse_gateway(key: &str) -> Option<GatewayId> {
    let (site, name) = key.split_once('/')?;
    GatewayId::new(site, name).ok()
}

fn booking_of(row: &Row, room: &str) -> Result<BookingRecord, HubStoreError> {
    const T: &str = "bookings";
    Ok(BookingRecord {
        id: get(row, T, "id")?,
        room: room.to_owned(),
        start_ms: get(row, T, "start_ms")?,
        end_ms: get(row, T, "end_ms")?,
        subject: get(row, T, "subject")?,
        organizer: get(row, T, "organizer")?,
        attendees: get(row, T, "attendees")?,
        state: get(row, T, "state")?,
        series: get(row, T, "series")?,
        source: get(row, T, "source")?,
        source_uid: get(row, T, "source_uid")?,
        note: get(row, T, "note")?,
        updated_ms: get(row, T, "updated_ms")?,
    })
}

impl Postgres {
    /// Connects to the database at `url` (`postgres://user:password@host:port/database`) with
    /// at most `pool_size` connections, and creates or migrates the schema. A database whose
    /// schema is newer than this code is refused.
    pub async fn open(url: &str, pool_size: usize) -> Result<Postgres, HubStoreError> {
        const OP: &str = "open the hub database";
        if pool_size == 0 {
            return Err(HubStoreError::Postgres(format!(
                "{OP}: the pool size must be at least 1"
            )));
        }
        // The URL may hold a password: errors name the problem, never the URL.
        let mut config: tokio_postgres::Config = url.parse().map_err(|e| {
            HubStoreError::Postgres(format!("{OP}: the database URL is not valid: {e}"))
        })?;
        if config.get_application_name().is_none() {
            config.application_name("roomgate-hub");
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(std::time::Duration::from_secs(10));
        }
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(pool_size)
            .build()
            .during(OP)?;
        let store = Postgres { pool };
        store.migrate().await?;
        Ok(store)
    }

    async fn client(&self, op: &'static str) -> Result<Object, HubStoreError> {
        self.pool.get().await.during(op)
    }

    /// Creates the schema, or brings it to [`SCHEMA_VERSION`], in one transaction.
    async fn migrate(&self) -> Result<(), HubStoreError> {
        const OP: &str = "migrate the hub database";
        let mut client = self.client(OP).await?;
        let tx = client.transaction().await.during(OP)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .during(OP)?;
        tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)")
            .await
            .during(OP)?;
        let found: Option<i32> = tx
            .query_one("SELECT max(version) FROM schema_version", &[])
            .await
            .during(OP)?
            .try_get(0)
            .during(OP)?;
        let found = found.unwrap_or(0);
        if found > SCHEMA_VERSION {
            return Err(HubStoreError::Postgres(format!(
                "{OP}: the database has schema version {found}, newer than this hub's \
                 {SCHEMA_VERSION}: run a hub at least as new as the one that wrote it"
            )));
        }
        let from = usize::try_from(found).unwrap_or(0);
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(from) {
            tx.batch_execute(sql).await.map_err(|e| {
                HubStoreError::Postgres(format!("{OP}: migration to version {}: {e}", i + 1))
            })?;
        }
        if found < SCHEMA_VERSION {
            tx.execute("DELETE FROM schema_version", &[])
                .await
                .during(OP)?;
            tx.execute(
                "INSERT INTO schema_version (version) VALUES ($1)",
                &[&SCHEMA_VERSION],
            )
            .await
            .during(OP)?;
        }
        tx.commit().await.during(OP)
    }

    pub async fn ingest(
        &self,
        gw: &GatewayId,
        batch: &EventBatch,
        now_ms: i64,
    ) -> Result<Ingested, HubStoreError> {
        const OP: &str = "ingest an event batch";
        let key = gw.to_string();
        let mut client = self.client(OP).await?;
        let tx = client.transaction().await.during(OP)?;
        // The gateway's ingest lock, held until commit: a batch of the same gateway that
        // another replica is storing right now is waited for, and seen once committed.
        let stored_upto: i64 = one(
            &tx,
            "INSERT INTO acked (gateway, upto) VALUES ($1, 0) \
             ON CONFLICT (gateway) DO UPDATE SET upto = acked.upto RETURNING upto",
            &[&key],
            OP,
        )
        .await?
        .get(0);
        let mut upto = counter("acked", stored_upto)?;

        // Each sequence number once (its first occurrence), above the ack point.
        let mut seen = HashSet::new();
        let candidates: Vec<&Event> = batch
            .events
            .iter()
            .filter(|e| e.seq > upto && seen.insert(e.seq))
            .collect();
        let mut stored = HashSet::new();
        if !candidates.is_empty() {
            let mut seqs = Vec::with_capacity(candidates.len());
            let mut at = Vec::with_capacity(candidates.len());
            let mut kinds = Vec::with_capacity(candidates.len());
            let mut organizers = Vec::with_capacity(candidates.len());
            let mut bodies = Vec::with_capacity(candidates.len());
            for e in &candidates {
                seqs.push(bigint(OP, "event seq", e.seq)?);
                at.push(e.at_ms);
                kinds.push(match serde_json::to_value(e.kind) {
                    Ok(serde_json::Value::String(kind)) => kind,
                    _ => format!("{:?}", e.kind),
                });
                organizers.push(strike_organizer(e).map(key_text));
                bodies.push(Json(*e));
            }
            let inserted = rows(
                &tx,
                "INSERT INTO events (gateway, seq, at_ms, kind, strike_organizer, body) \
                 SELECT $1, e.* FROM unnest($2::bigint[], $3::bigint[], $4::text[], \
                                            $5::text[], $6::json[]) AS e \
                 ON CONFLICT (gateway, seq) DO NOTHING RETURNING seq",
                &[&key, &seqs, &at, &kinds, &organizers, &bodies],
                OP,
            )
            .await?;
            stored.extend(inserted.iter().map(|r| r.get::<_, i64>(0)));
        }
        let fresh: Vec<Event> = candidates
            .into_iter()
            .filter(|e| i64::try_from(e.seq).is_ok_and(|s| stored.contains(&s)))
            .cloned()
            .collect();

        // The ack point moves only when the event right after it arrived; it then runs to the
        // end of the contiguous run (seq - row_number stays at the ack point until a gap).
        let next = i64::try_from(upto.saturating_add(1)).unwrap_or(i64::MAX);
        if stored.contains(&next) {
            let new_upto: i64 = one(
                &tx,
                "SELECT COALESCE(max(seq), $2) FROM ( \
                     SELECT seq, seq - row_number() OVER (ORDER BY seq) AS base \
                     FROM events WHERE gateway = $1 AND seq > $2) AS run \
                 WHERE base = $2",
                &[&key, &stored_upto],
                OP,
            )
            .await?
            .get(0);
            exec(
                &tx,
                "UPDATE acked SET upto = $2 WHERE gateway = $1",
                &[&key, &new_upto],
                OP,
            )
            .await?;
            upto = counter("events", new_upto)?;
        }
        exec(
            &tx,
            "INSERT INTO gateways (gateway, last_seen_ms) VALUES ($1, $2) \
             ON CONFLICT (gateway) DO UPDATE SET last_seen_ms = EXCLUDED.last_seen_ms",
            &[&key, &now_ms],
            OP,
        )
        .await?;
        tx.commit().await.during(OP)?;
        let duplicates = batch.events.len() - fresh.len();
        Ok(Ingested {
            fresh,
            duplicates,
            ack_upto: upto,
        })
    }

    pub async fn events(&self, gw: &GatewayId) -> Result<Vec<Event>, HubStoreError> {
        const OP: &str = "read events";
        let client = self.client(OP).await?;
        let found = rows(
            &client,
            "SELECT body FROM events WHERE gateway = $1 ORDER BY seq",
            &[&gw.to_string()],
            OP,
        )
        .await?;
        found.iter().map(event_of).collect()
    }

    pub async fn events_between(
        &self,
        gw: &GatewayId,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<Event>, HubStoreError> {
        const OP: &str = "read events by time";
        let client = self.client(OP).await?;
        let found = rows(
            &client,
            "SELECT body FROM events WHERE gateway = $1 AND at_ms >= $2 AND at_ms < $3 \
             ORDER BY at_ms, seq",
            &[&gw.to_string(), &from_ms, &to_ms],
            OP,
        )
        .await?;
        found.iter().map(event_of).collect()
    }

    pub async fn no_shows(
        &self,
        organizer: &str,
        since_ms: i64,
    ) -> Result<Vec<i64>, HubStoreError> {
        const OP: &str = "read no-show strikes";
        let client = self.client(OP).await?;
        let found = rows(
            &client,
            "SELECT at_ms FROM events WHERE strike_organizer = $1 AND at_ms >= $2 \
             ORDER BY at_ms, gateway, seq",
            &[&key_text(organizer), &since_ms],
            OP,
        )
        .await?;
        found.iter().map(|r| get(r, "events", "at_ms")).collect()
    }

    pub async fn put_status(
        &self,
        gw: &GatewayId,
        status: &Status,
        now_ms: i64,
    ) -> Result<(), HubStoreError> {
        const OP: &str = "store a gateway status";
        let client = self.client(OP).await?;
        exec(
            &client,
            "INSERT INTO gateways (gateway, status, last_seen_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (gateway) DO UPDATE \
             SET status = EXCLUDED.status, last_seen_ms = EXCLUDED.last_seen_ms",
            &[&gw.to_string(), &Json(status), &now_ms],
            OP,
        )
        .await?;
        Ok(())
    }

    pub async fn status(&self, gw: &GatewayId) -> Result<Option<Status>, HubStoreError> {
        const OP: &str = "read a gateway status";
        let client = self.client(OP).await?;
        let Some(row) = opt(
            &client,
            "SELECT status FROM gateways WHERE gateway = $1",
            &[&gw.to_string()],
            OP,
        )
        .await?
        else {
            return Ok(None);
        };
        Ok(get::<Option<Json<Status>>>(&row, "gateways", "status")?.map(|j| j.0))
    }

    pub async fn gateways(&self) -> Result<Vec<GatewayRecord>, HubStoreError> {
        const OP: &str = "list gateways";
        let client = self.client(OP).await?;
        let found = rows(
            &client,
            "SELECT gateway, status, last_seen_ms FROM gateways ORDER BY gateway",
            &[],
            OP,
        )
        .await?;
        let mut out = Vec::with_capacity(found.len());
        for row in &found {
            let Some(id) = parse_gateway(get(row, "gateways", "gateway")?) else {
                continue;
            };
            out.push(GatewayRecord {
                id,
                status: get::<Option<Json<Status>>>(row, "gateways", "status")?.map(|j| j.0),
                last_seen_ms: get(row, "gateways", "last_seen_ms")?,
            });
        }
        Ok(out)
    }

    pub async fn change_booking(
        &self,
        gw: &GatewayId,
        change: BookingChange,
    ) -> Result<u64, HubStoreError> {
        const OP: &str = "change a booking";
        let key = gw.to_string();
        let mut client = self.client(OP).await?;
        let tx = client.transaction().await.during(OP)?;
        match &change {
            BookingChange::Upsert { booking } => {
                lock_room(&tx, &key, &booking.room, OP).await?;
                let record = record_of(booking, "api", 0);
                upsert_booking(&tx, &key, &booking.room, &record, OP).await?;
                note_booking_rooms(&tx, &key, &booking.room, [booking.id.as_str()], OP).await?;
            }
            BookingChange::Delete { id, room } => {
                lock_room(&tx, &key, room, OP).await?;
                exec(
                    &tx,
                    "UPDATE bookings SET state = 'cancelled' \
                     WHERE gateway = $1 AND room = $2 AND id = $3",
                    &[&key, room, id],
                    OP,
                )
                .await?;
            }
        }
        let cursor = append_changes(&tx, &key, std::slice::from_ref(&change), OP).await?;
        tx.commit().await.during(OP)?;
        Ok(cursor)
    }

    pub async fn changes_since(
        &self,
        gw: &GatewayId,
        after: u64,
    ) -> Result<BookingChanges, HubStoreError> {
        const OP: &str = "read booking changes";
        let key = gw.to_string();
        let mut client = self.client(OP).await?;
        // One snapshot: the cursor and the log (or the bookings) it describes.
        let tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .during(OP)?;
        let current = current_cursor(&tx, &key, OP).await?;
        let oldest: Option<i64> = one(
            &tx,
            "SELECT min(cursor) FROM changes WHERE gateway = $1",
            &[&key],
            OP,
        )
        .await?
        .try_get(0)
        .during(OP)?;
        let oldest = oldest.map(|o| counter("changes", o)).transpose()?;
        let in_log = after == current
            || oldest.is_some_and(|o| after.saturating_add(1) >= o && after <= current);
        let mut changes = Vec::new();
        if in_log {
            // In the log, `after <= current`, which came from a bigint.
            let after = bigint(OP, "cursor", after)?;
            let found = rows(
                &tx,
                "SELECT change FROM changes WHERE gateway = $1 AND cursor > $2 ORDER BY cursor",
                &[&key, &after],
                OP,
            )
            .await?;
            for row in &found {
                changes.push(get::<Json<BookingChange>>(row, "changes", "change")?.0);
            }
        } else {
            let found = rows(
                &tx,
                &format!(
                    "SELECT room, {BOOKING_COLUMNS} FROM bookings \
                     WHERE gateway = $1 AND state = 'active' ORDER BY room, id"
                ),
                &[&key],
                OP,
            )
            .await?;
            for row in &found {
                let room: String = get(row, "bookings", "room")?;
                changes.push(BookingChange::Upsert {
                    booking: wire_of(&booking_of(row, &room)?),
                });
            }
        }
        tx.commit().await.during(OP)?;
        Ok(BookingChanges {
            v: VERSION,
            cursor: current,
            full: !in_log,
            changes,
        })
    }

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
        const OP: &str = "room transaction";
        let gw = room.gateway.to_string();
        let name = room.room.as_str();
        let mut client = self.client(OP).await?;
        let tx = client.transaction().await.during(OP)?;
        lock_room(&tx, &gw, name, OP).await?;

        let mut docs = RoomDocs::default();
        let found = rows(
            &tx,
            &format!(
                "SELECT {BOOKING_COLUMNS} FROM bookings \
                 WHERE gateway = $1 AND room = $2 AND end_ms > $3 ORDER BY start_ms, id"
            ),
            &[&gw, &name, &since_ms],
            OP,
        )
        .await?;
        for row in &found {
            docs.bookings.push(booking_of(row, name)?);
        }
        let found = rows(
            &tx,
            "SELECT id, doc FROM series WHERE gateway = $1 AND room = $2 ORDER BY id",
            &[&gw, &name],
            OP,
        )
        .await?;
        for row in &found {
            docs.series.push(SeriesRecord {
                id: get(row, "series", "id")?,
                room: name.to_owned(),
                doc: get(row, "series", "doc")?,
            });
        }

        let (value, writes) = match decide(docs) {
            Ok(decided) => decided,
            Err(e) => {
                // Nothing was written. A rollback that fails has lost the connection, which
                // rolls back all the same.
                let _ = tx.rollback().await;
                return Ok(Err(e));
            }
        };
        for b in &writes.bookings {
            upsert_booking(&tx, &gw, name, b, OP).await?;
        }
        note_booking_rooms(
            &tx,
            &gw,
            name,
            writes.bookings.iter().map(|b| b.id.as_str()),
            OP,
        )
        .await?;
        for s in &writes.series {
            exec(
                &tx,
                "INSERT INTO series (gateway, room, id, doc) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (gateway, room, id) DO UPDATE SET doc = EXCLUDED.doc",
                &[&gw, &name, &s.id, &s.doc],
                OP,
            )
            .await?;
        }
        for id in &writes.series_deleted {
            exec(
                &tx,
                "DELETE FROM series WHERE gateway = $1 AND room = $2 AND id = $3",
                &[&gw, &name, id],
                OP,
            )
            .await?;
        }
        let cursor = if writes.changes.is_empty() {
            current_cursor(&tx, &gw, OP).await?
        } else {
            append_changes(&tx, &gw, &writes.changes, OP).await?
        };
        tx.commit().await.during(OP)?;
        Ok(Ok(RoomCommit {
            value,
            pushed: BookingChanges {
                v: VERSION,
                cursor,
                full: false,
                changes: writes.changes,
            },
        }))
    }

    pub async fn bookings(
        &self,
        room: &RoomKey,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<BookingRecord>, HubStoreError> {
        const OP: &str = "read a room's bookings";
        let client = self.client(OP).await?;
        let found = rows(
            &client,
            &format!(
                "SELECT {BOOKING_COLUMNS} FROM bookings \
                 WHERE gateway = $1 AND room = $2 AND start_ms < $4 AND end_ms > $3 \
                 ORDER BY start_ms, id"
            ),
            &[&room.gateway.to_string(), &room.room, &from_ms, &to_ms],
            OP,
        )
        .await?;
        found.iter().map(|r| booking_of(r, &room.room)).collect()
    }

    pub async fn find_booking(
        &self,
        id: &str,
    ) -> Result<Option<(RoomKey, BookingRecord)>, HubStoreError> {
        const OP: &str = "find a booking";
        let client = self.client(OP).await?;
        let Some(row) = opt(
            &client,
            "SELECT r.gateway AS at_gateway, r.room AS at_room, b.* \
             FROM booking_rooms r JOIN bookings b \
               ON b.gateway = r.gateway AND b.room = r.room AND b.id = r.id \
             WHERE r.id = $1",
            &[&id],
            OP,
        )
        .await?
        else {
            return Ok(None);
        };
        let Some(gateway) = parse_gateway(get(&row, "booking_rooms", "at_gateway")?) else {
            return Ok(None);
        };
        let room: String = get(&row, "booking_rooms", "at_room")?;
        let record = booking_of(&row, &room)?;
        Ok(Some((RoomKey { gateway, room }, record)))
    }

    pub async fn all_series(&self) -> Result<Vec<(RoomKey, SeriesRecord)>, HubStoreError> {
        const OP: &str = "read every series";
        let client = self.client(OP).await?;
        let found = rows(
            &client,
            "SELECT gateway, room, id, doc FROM series ORDER BY gateway, room, id",
            &[],
            OP,
        )
        .await?;
        let mut out = Vec::with_capacity(found.len());
        for row in &found {
            let Some(gateway) = parse_gateway(get(row, "series", "gateway")?) else {
                continue;
            };
            let room: String = get(row, "series", "room")?;
            let series = SeriesRecord {
                id: get(row, "series", "id")?,
                room: room.clone(),
                doc: get(row, "series", "doc")?,
            };
            out.push((RoomKey { gateway, room }, series));
        }
        Ok(out)
    }

    pub async fn put_telemetry(
        &self,
        gw: &GatewayId,
        samples: &[PointSample],
    ) -> Result<(), HubStoreError> {
        const OP: &str = "store telemetry";
        // The newest sample of each point in the batch (the later one on a tie, as applying
        // them in order does), in key order: concurrent batches lock rows in the same order.
        let mut newest: BTreeMap<(&str, &str), &PointSample> = BTreeMap::new();
        for s in samples {
            let slot = newest
                .entry((s.device.as_str(), s.point.as_str()))
                .or_insert(s);
            if slot.at_ms <= s.at_ms {
                *slot = s;
            }
        }
        if newest.is_empty() {
            return Ok(());
        }
        let mut devices = Vec::with_capacity(newest.len());
        let mut points = Vec::with_capacity(newest.len());
        let mut at = Vec::with_capacity(newest.len());
        let mut values = Vec::with_capacity(newest.len());
        for s in newest.values() {
            devices.push(s.device.as_str());
            points.push(s.point.as_str());
            at.push(s.at_ms);
            values.push(s.value);
        }
        let client = self.client(OP).await?;
        exec(
            &client,
            "INSERT INTO telemetry (gateway, device, point, at_ms, value) \
             SELECT $1, t.* FROM unnest($2::text[], $3::text[], $4::bigint[], $5::float8[]) AS t \
             ON CONFLICT (gateway, device, point) DO UPDATE \
             SET at_ms = EXCLUDED.at_ms, value = EXCLUDED.value \
             WHERE telemetry.at_ms <= EXCLUDED.at_ms",
            &[&gw.to_string(), &devices, &points, &at, &values],
            OP,
        )
        .await?;
        Ok(())
    }

    pub async fn telemetry(&self, gw: &GatewayId) -> Result<Vec<PointSample>, HubStoreError> {
        const OP: &str = "read telemetry";
        let client = self.client(OP).await?;
        let found = rows(
            &client,
            "SELECT device, point, at_ms, value FROM telemetry WHERE gateway = $1 \
             ORDER BY device, point",
            &[&gw.to_string()],
            OP,
        )
        .await?;
        found
            .iter()
            .map(|r| {
                Ok(PointSample {
                    device: get(r, "telemetry", "device")?,
                    point: get(r, "telemetry", "point")?,
                    at_ms: get(r, "telemetry", "at_ms")?,
                    value: get(r, "telemetry", "value")?,
                })
            })
            .collect()
    }

    pub async fn put_doc(
        &self,
        kind: &str,
        key: &str,
        value: &serde_json::Value,
    ) -> Result<(), HubStoreError> {
        const OP: &str = "store a document";
        let client = self.client(OP).await?;
        exec(
            &client,
            "INSERT INTO docs (kind, key, value) VALUES ($1, $2, $3) \
             ON CONFLICT (kind, key) DO UPDATE SET value = EXCLUDED.value",
            &[&kind, &key, value],
            OP,
        )
        .await?;
        Ok(())
    }

    pub async fn doc(
        &self,
        kind: &str,
        key: &str,
    ) -> Result<Option<serde_json::Value>, HubStoreError> {
        const OP: &str = "read a document";
        let client = self.client(OP).await?;
        let row = opt(
            &client,
            "SELECT value FROM docs WHERE kind = $1 AND key = $2",
            &[&kind, &key],
            OP,
        )
        .await?;
        row.map(|r| get(&r, "docs", "value")).transpose()
    }

    pub async fn docs(
        &self,
        kind: &str,
    ) -> Result<Vec<(String, serde_json::Value)>, HubStoreError> {
        const OP: &str = "read documents";
        let client = self.client(OP).await?;
        let found = rows(
            &client,
            "SELECT key, value FROM docs WHERE kind = $1 ORDER BY key",
            &[&kind],
            OP,
        )
        .await?;
        found
            .iter()
            .map(|r| Ok((get(r, "docs", "key")?, get(r, "docs", "value")?)))
            .collect()
    }

    pub async fn delete_doc(&self, kind: &str, key: &str) -> Result<bool, HubStoreError> {
        const OP: &str = "delete a document";
        let client = self.client(OP).await?;
        let removed = exec(
            &client,
            "DELETE FROM docs WHERE kind = $1 AND key = $2",
            &[&kind, &key],
            OP,
        )
        .await?;
        Ok(removed > 0)
    }
}

fn event_of(row: &Row) -> Result<Event, HubStoreError> {
    Ok(get::<Json<Event>>(row, "events", "body")?.0)
}

/// The log's position of a gateway (0 before its first change).
async fn current_cursor(
    c: &impl GenericClient,
    gw: &str,
    op: &'static str,
) -> Result<u64, HubStoreError> {
    match opt(
        c,
        "SELECT cursor FROM cursors WHERE gateway = $1",
        &[&gw],
        op,
    )
    .await?
    {
        Some(row) => counter("cursors", get(&row, "cursors", "cursor")?),
        None => Ok(0),
    }
}

/// Takes the room's lock for the rest of the transaction (creating its row the first time).
async fn lock_room(
    tx: &Transaction<'_>,
    gw: &str,
    room: &str,
    op: &'static str,
) -> Result<(), HubStoreError> {
    exec(
        tx,
        "INSERT INTO rooms (gateway, room) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        &[&gw, &room],
        op,
    )
    .await?;
    exec(
        tx,
        "SELECT 1 FROM rooms WHERE gateway = $1 AND room = $2 FOR UPDATE",
        &[&gw, &room],
        op,
    )
    .await?;
    Ok(())
}

async fn upsert_booking(
    tx: &Transaction<'_>,
    gw: &str,
    room: &str,
    b: &BookingRecord,
    op: &'static str,
) -> Result<(), HubStoreError> {
    exec(
        tx,
        "INSERT INTO bookings (gateway, room, id, start_ms, end_ms, subject, organizer, \
             attendees, state, series, source, source_uid, note, updated_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
         ON CONFLICT (gateway, room, id) DO UPDATE SET \
             start_ms = EXCLUDED.start_ms, end_ms = EXCLUDED.end_ms, \
             subject = EXCLUDED.subject, organizer = EXCLUDED.organizer, \
             attendees = EXCLUDED.attendees, state = EXCLUDED.state, \
             series = EXCLUDED.series, source = EXCLUDED.source, \
             source_uid = EXCLUDED.source_uid, note = EXCLUDED.note, \
             updated_ms = EXCLUDED.updated_ms",
        &[
            &gw,
            &room,
            &b.id,
            &b.start_ms,
            &b.end_ms,
            &b.subject,
            &b.organizer,
            &b.attendees,
            &b.state,
            &b.series,
            &b.source,
            &b.source_uid,
            &b.note,
            &b.updated_ms,
        ],
        op,
    )
    .await?;
    Ok(())
}

/// Records in which room booking ids live, in id order: this table's rows are shared by every
/// room, and one order for every transaction means no deadlock between them.
async fn note_booking_rooms<'a>(
    tx: &Transaction<'_>,
    gw: &str,
    room: &str,
    ids: impl IntoIterator<Item = &'a str>,
    op: &'static str,
) -> Result<(), HubStoreError> {
    let ids: Vec<&str> = ids
        .into_iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if ids.is_empty() {
        return Ok(());
    }
    exec(
        tx,
        "INSERT INTO booking_rooms (id, gateway, room) \
         SELECT id, $2, $3 FROM unnest($1::text[]) AS id \
         ON CONFLICT (id) DO UPDATE SET gateway = EXCLUDED.gateway, room = EXCLUDED.room",
        &[&ids, &gw, &room],
        op,
    )
    .await?;
    Ok(())
}

/// Appends changes to a gateway's log, trimming it to [`CHANGE_LOG_KEPT`]; returns the cursor
/// of the last one. The upsert locks the gateway's `cursors` row until commit: cursors are
/// handed out to one transaction at a time, so no reader sees a later one before an earlier.
async fn append_changes(
    tx: &Transaction<'_>,
    gw: &str,
    changes: &[BookingChange],
    op: &'static str,
) -> Result<u64, HubStoreError> {
    let n = i64::try_from(changes.len()).unwrap_or(i64::MAX);
    let last: i64 = one(
        tx,
        "INSERT INTO cursors (gateway, cursor) VALUES ($1, $2) \
         ON CONFLICT (gateway) DO UPDATE SET cursor = cursors.cursor + EXCLUDED.cursor \
         RETURNING cursor",
        &[&gw, &n],
        op,
    )
    .await?
    .get(0);
    let cursors: Vec<i64> = (last - n + 1..=last).collect();
    let bodies: Vec<Json<&BookingChange>> = changes.iter().map(Json).collect();
    exec(
        tx,
        "INSERT INTO changes (gateway, cursor, change) \
         SELECT $1, c.* FROM unnest($2::bigint[], $3::jsonb[]) AS c",
        &[&gw, &cursors, &bodies],
        op,
    )
    .await?;
    let kept = i64::try_from(CHANGE_LOG_KEPT).unwrap_or(i64::MAX);
    if last > kept {
        exec(
            tx,
            "DELETE FROM changes WHERE gateway = $1 AND cursor <= $2",
            &[&gw, &(last - kept)],
            op,
        )
        .await?;
    }
    counter("cursors", last)
}
