//! The gateway's embedded store (redb): every table, its schema version, durable writes.
//!
//! All storage goes through this module. Each write is one redb transaction committed with
//! `Durability::Immediate`, so when a method returns `Ok` the data is on disk; callers
//! acknowledge (HTTP 201, hub ack) only after that. Values are versioned JSON records owned by
//! this module, converted to and from domain types at the edge.

use std::path::{Path, PathBuf};

use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
    TableHandle,
};
use serde::{Deserialize, Serialize};

/// The layout this gateway writes. To change a table's layout: bump this, and append to
/// [`MIGRATIONS`] the step that converts a store of the previous version.
pub const SCHEMA_VERSION: u64 = 2;

/// One schema step: converts every table of a store at version N to version N + 1, inside the
/// write transaction that opens the store (so a failed step leaves the store as it was).
type MigrationStep = fn(&redb::WriteTransaction) -> Result<(), StoreError>;

/// `MIGRATIONS[i]` converts schema version `i + 1` to `i + 2`; there is one entry per version
/// after the first, so `MIGRATIONS.len() + 1 == SCHEMA_VERSION` (checked by a test). Version 1
/// is the first layout (release 0.1); version 2 adds the console's tables (accounts, sessions,
/// tokens; the audit log), which a version-1 gateway would not back up. A release's store is
/// kept as a fixture (`gateway/tests/fixtures/store-v1/`) and opened by the tests, so a layout
/// change without its step fails them.
const MIGRATIONS: &[MigrationStep] = &[add_console_tables];

/// Version 1 → 2: the console's tables, empty (nothing else changes).
fn add_console_tables(tx: &redb::WriteTransaction) -> Result<(), StoreError> {
    tx.open_table(CONSOLE)?;
    tx.open_table(AUDIT)?;
    Ok(())
}
/// The store's file in the data directory.
pub const STORE_FILE: &str = "gateway.redb";

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const BOOKINGS: TableDefinition<&str, &[u8]> = TableDefinition::new("bookings");
const ACTIVITY: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("activity");
/// Events waiting for the hub's acknowledgement, by sequence number (PROTOCOL.md).
const OUTBOX: TableDefinition<u64, &[u8]> = TableDefinition::new("outbox");
/// The console's records by (kind, key): accounts, sessions (by the hash of their id), tokens
/// (by the hash of the secret). JSON owned by `console::auth`.
const CONSOLE: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("console");
/// The audit log by (time in ms, sequence): who changed what, kept [`AUDIT_KEPT_MS`].
const AUDIT: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("audit");

/// How long audit records are kept: 13 months (the requirement is at least 6).
pub const AUDIT_KEPT_MS: i64 = 396 * 24 * 60 * 60 * 1000;

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
    #[error(
        "store at {path} is open in another process (a running gateway holds its lock); stop it first"
    )]
    InUse { path: PathBuf },
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
        let path = dir.join(STORE_FILE);
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
        self.migrate_to(SCHEMA_VERSION, MIGRATIONS)
    }

    /// Brings the store to schema version `target` with `steps` (`steps[i]`: version `i + 1`
    /// to `i + 2`), all in one write transaction: a step that fails leaves the store untouched
    /// at its old version. A new store is created at `target`; a newer one is refused.
    fn migrate_to(&self, target: u64, steps: &[MigrationStep]) -> Result<(), StoreError> {
        let tx = self.write()?;
        {
            let found = tx
                .open_table(META)?
                .get("schema_version")?
                .map(|v| v.value());
            match found {
                Some(v) if v > target => return Err(StoreError::TooNew { found: v }),
                Some(0) => {
                    return Err(StoreError::Corrupt {
                        table: "meta",
                        key: "schema_version".into(),
                        reason: "version 0 does not exist (versions start at 1)".into(),
                    });
                }
                Some(v) => {
                    for from in v..target {
                        let step = usize::try_from(from - 1)
                            .ok()
                            .and_then(|i| steps.get(i))
                            .ok_or_else(|| StoreError::Corrupt {
                                table: "meta",
                                key: "schema_version".into(),
                                reason: format!("no migration from version {from} to {}", from + 1),
                            })?;
                        step(&tx)?;
                        tracing::info!(from, to = from + 1, "store schema migrated");
                    }
                }
                // A new store: created at the current layout.
                None => {}
            }
            tx.open_table(META)?.insert("schema_version", target)?;
            tx.open_table(BOOKINGS)?;
            tx.open_table(ACTIVITY)?;
            tx.open_table(OUTBOX)?;
            tx.open_table(CONSOLE)?;
            tx.open_table(AUDIT)?;
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

/// One audit record: who did what, when, from where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub at_ms: i64,
    /// The account (or `token:<label>`, or `setup`) that acted.
    pub who: String,
    /// The client's address, when known.
    #[serde(default)]
    pub from: String,
    /// What kind of change, e.g. `site.change`, `account.add`, `login.failed`.
    pub action: String,
    /// What it was about (a device id, a room, an account name).
    #[serde(default)]
    pub target: String,
    /// What changed, in words (a site diff, say).
    #[serde(default)]
    pub detail: String,
}

impl Store {
    /// A console record by kind and key.
    pub fn console_get(
        &self,
        kind: &str,
        key: &str,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(CONSOLE)?;
        t.get((kind, key))?
            .map(|v| decode("console", &format!("{kind}/{key}"), v.value()))
            .transpose()
    }

    /// Every console record of a kind, by key.
    pub fn console_all(&self, kind: &str) -> Result<Vec<(String, serde_json::Value)>, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(CONSOLE)?;
        let mut out = Vec::new();
        for row in t.range((kind, "")..)? {
            let (k, v) = row?;
            let (k_kind, key) = k.value();
            if k_kind != kind {
                break;
            }
            out.push((
                key.to_owned(),
                decode("console", &format!("{kind}/{key}"), v.value())?,
            ));
        }
        Ok(out)
    }

    /// Writes console records and removes others, in one durable transaction.
    pub fn console_write(
        &self,
        puts: &[(&str, &str, &serde_json::Value)],
        deletes: &[(&str, &str)],
    ) -> Result<(), StoreError> {
        let tx = self.write()?;
        {
            let mut t = tx.open_table(CONSOLE)?;
            for (kind, key, value) in puts {
                t.insert((*kind, *key), encode(value).as_slice())?;
            }
            for (kind, key) in deletes {
                t.remove((*kind, *key))?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Appends an audit record and removes those older than [`AUDIT_KEPT_MS`].
    pub fn append_audit(&self, rec: &AuditRecord) -> Result<(), StoreError> {
        let tx = self.write()?;
        {
            let mut meta = tx.open_table(META)?;
            let seq = meta.get("audit_seq")?.map_or(0, |v| v.value()) + 1;
            meta.insert("audit_seq", seq)?;
            let mut t = tx.open_table(AUDIT)?;
            let at = u64::try_from(rec.at_ms).unwrap_or(0);
            t.insert((at, seq), encode(rec).as_slice())?;
            let cutoff = u64::try_from(rec.at_ms - AUDIT_KEPT_MS).unwrap_or(0);
            let old: Vec<(u64, u64)> = t
                .range(..(cutoff, 0))?
                .map(|r| r.map(|(k, _)| k.value()))
                .collect::<Result<_, _>>()?;
            for k in old {
                t.remove(k)?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Audit records from `since_ms` on, newest first, at most `limit`.
    pub fn audit(&self, since_ms: i64, limit: usize) -> Result<Vec<AuditRecord>, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(AUDIT)?;
        let since = u64::try_from(since_ms).unwrap_or(0);
        let mut out = Vec::new();
        for row in t.range((since, 0)..)?.rev().take(limit) {
            let (k, v) = row?;
            let (at, seq) = k.value();
            out.push(decode("audit", &format!("{at}#{seq}"), v.value())?);
        }
        Ok(out)
    }
}

/// Every table of the store, for backups: a snapshot refuses a store with another table,
/// so a table added without a backup is found at once, not missing from an archive.
const TABLE_NAMES: [&str; 6] = ["meta", "bookings", "activity", "outbox", "console", "audit"];

/// What a snapshot or a check found in a store: records per table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreCounts {
    pub bookings: u64,
    pub activity: u64,
    pub outbox: u64,
    /// Console records (accounts, sessions, tokens); absent in archives of version 1.
    #[serde(default)]
    pub console: u64,
    #[serde(default)]
    pub audit: u64,
}

/// A stopped gateway's store held open read-only: while this lives, no gateway can open it
/// (redb's file lock), so a restore cannot race a starting gateway.
pub struct StoreLock {
    db: redb::ReadOnlyDatabase,
}

impl std::fmt::Debug for StoreLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreLock(..)")
    }
}

impl StoreLock {
    /// Opens the store in `dir` read-only: `Ok(None)` when there is none, `InUse` when a
    /// gateway (or anything else) has it open. redb's default locking lets no second process
    /// open a database a writer holds, not even read-only.
    pub fn stopped(dir: &Path) -> Result<Option<StoreLock>, StoreError> {
        let path = dir.join(STORE_FILE);
        if !path.exists() {
            return Ok(None);
        }
        match redb::ReadOnlyDatabase::open(&path) {
            Ok(db) => Ok(Some(StoreLock { db })),
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => Err(StoreError::InUse { path }),
            Err(source) => Err(StoreError::Open { path, source }),
        }
    }

    /// [`Store::snapshot`] of this stopped store.
    pub fn snapshot(&self, dest: &Path) -> Result<StoreCounts, StoreError> {
        snapshot(&self.db, dest)
    }
}

impl Store {
    /// Copies every table, as of one read transaction, into a new redb file at `dest`
    /// (which must not exist): a consistent snapshot taken while the gateway runs; writers
    /// go on meanwhile (redb readers see the last commit and never block them).
    pub fn snapshot(&self, dest: &Path) -> Result<StoreCounts, StoreError> {
        snapshot(&self.db, dest)
    }

    /// Reads and decodes every record of every table (a restored store is checked with this
    /// before it replaces anything); the first unreadable one is the error.
    pub fn check_records(&self) -> Result<StoreCounts, StoreError> {
        let tx = self.db.begin_read()?;
        let mut counts = StoreCounts::default();
        for row in tx.open_table(BOOKINGS)?.iter()? {
            let (k, v) = row?;
            decode::<StoredBooking>("bookings", k.value(), v.value())?;
            counts.bookings += 1;
        }
        for row in tx.open_table(ACTIVITY)?.iter()? {
            let (k, v) = row?;
            let (room, seq) = k.value();
            decode::<ActivityRecord>("activity", &format!("{room}#{seq}"), v.value())?;
            counts.activity += 1;
        }
        for row in tx.open_table(OUTBOX)?.iter()? {
            let (k, v) = row?;
            decode::<cloud_sync::wire::Event>("outbox", &k.value().to_string(), v.value())?;
            counts.outbox += 1;
        }
        for row in tx.open_table(CONSOLE)?.iter()? {
            let (k, v) = row?;
            let (kind, key) = k.value();
            decode::<serde_json::Value>("console", &format!("{kind}/{key}"), v.value())?;
            counts.console += 1;
        }
        for row in tx.open_table(AUDIT)?.iter()? {
            let (k, v) = row?;
            let (at, seq) = k.value();
            decode::<AuditRecord>("audit", &format!("{at}#{seq}"), v.value())?;
            counts.audit += 1;
        }
        Ok(counts)
    }
}

fn snapshot(src: &impl ReadableDatabase, dest: &Path) -> Result<StoreCounts, StoreError> {
    let rtx = src.begin_read()?;
    for t in rtx.list_tables()? {
        if !TABLE_NAMES.contains(&t.name()) {
            return Err(StoreError::Corrupt {
                table: "(tables)",
                key: t.name().to_owned(),
                reason: "a table this gateway does not know: a snapshot would leave it out".into(),
            });
        }
    }
    let db = Database::create(dest).map_err(|source| StoreError::Open {
        path: dest.to_path_buf(),
        source,
    })?;
    let mut wtx = db.begin_write()?;
    wtx.set_durability(Durability::Immediate)?;
    let mut counts = StoreCounts::default();
    {
        macro_rules! copy {
            ($def:expr) => {{
                let mut to = wtx.open_table($def)?;
                let mut n = 0u64;
                match rtx.open_table($def) {
                    Ok(from) => {
                        for row in from.iter()? {
                            let (k, v) = row?;
                            to.insert(k.value(), v.value())?;
                            n += 1;
                        }
                    }
                    Err(redb::TableError::TableDoesNotExist(_)) => {}
                    Err(e) => return Err(e.into()),
                }
                n
            }};
        }
        copy!(META);
        counts.bookings = copy!(BOOKINGS);
        counts.activity = copy!(ACTIVITY);
        counts.outbox = copy!(OUTBOX);
        counts.console = copy!(CONSOLE);
        counts.audit = copy!(AUDIT);
    }
    wtx.commit()?;
    Ok(counts)
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

    /// The store of release 0.1 (schema version 1), committed so every later gateway must open
    /// it. Written by [`write_release_1_fixture`]; regenerate only for a new release's fixture
    /// (`ROOMGATE_WRITE_STORE_FIXTURE=<dir> cargo test -p gateway --lib store::tests::release`).
    const RELEASE_1_FIXTURE: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/store-v1/gateway.redb"
    );

    /// What release 0.1's store holds: two bookings, a room's activity, the hub cursor.
    fn write_release_1_fixture(dir: &Path) {
        let s = Store::open(dir).expect("open");
        s.put_booking(&booking("local-1", 1_000)).expect("put");
        let mut hub = booking("hub-1", 2_000);
        hub.source = BookingSource::Hub;
        hub.checked_in_ms = Some(500);
        hub.attendees = vec!["ana@example.com".into()];
        s.apply_hub_bookings(7, false, &[hub], &[]).expect("hub");
        let line = ActivityRecord {
            at_ms: 42,
            kind: "command".into(),
            text: "lights on".into(),
        };
        s.append_activity(&[("r1".into(), line)]).expect("activity");
    }

    /// A copy of the release 1 fixture in a fresh directory (tests never write the original).
    fn release_1_store() -> tempfile::TempDir {
        if let Some(out) = std::env::var_os("ROOMGATE_WRITE_STORE_FIXTURE") {
            let out = PathBuf::from(out);
            std::fs::create_dir_all(&out).expect("fixture dir");
            let _ = std::fs::remove_file(out.join(STORE_FILE));
            write_release_1_fixture(&out);
        }
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::copy(RELEASE_1_FIXTURE, dir.path().join(STORE_FILE)).expect("copy fixture");
        dir
    }

    fn schema_version_in(dir: &Path) -> u64 {
        let db = Database::open(dir.join(STORE_FILE)).expect("open raw");
        let tx = db.begin_read().expect("read");
        let meta = tx.open_table(META).expect("meta");
        meta.get("schema_version")
            .expect("get")
            .map_or(0, |v| v.value())
    }

    #[test]
    fn there_is_one_migration_step_per_version_after_the_first() {
        assert_eq!(MIGRATIONS.len() as u64 + 1, SCHEMA_VERSION);
    }

    #[test]
    fn release_1_store_opens_with_its_data_at_the_current_schema() {
        let dir = release_1_store();
        assert_eq!(schema_version_in(dir.path()), 1);
        let s = Store::open(dir.path()).expect("open the release 1 store");
        assert_eq!(s.schema_version().expect("version"), SCHEMA_VERSION);
        let ids: Vec<String> = s
            .bookings()
            .expect("bookings")
            .into_iter()
            .map(|b| b.id)
            .collect();
        assert_eq!(ids, vec!["hub-1".to_owned(), "local-1".to_owned()]);
        let hub = s.booking("hub-1").expect("get").expect("hub booking kept");
        assert_eq!(hub.checked_in_ms, Some(500));
        assert_eq!(hub.attendees, vec!["ana@example.com".to_owned()]);
        assert_eq!(s.hub_cursor().expect("cursor"), 7);
        let activity = s.activity("r1", 10).expect("activity");
        assert_eq!(activity.len(), 1);
        assert_eq!(activity[0].text, "lights on");
    }

    /// A stand-in for a real layout change (none exists yet): version 2 keeps booking
    /// subjects upper-case and counts the bookings in `meta`.
    fn test_step_1_to_2(tx: &redb::WriteTransaction) -> Result<(), StoreError> {
        let mut t = tx.open_table(BOOKINGS)?;
        let rows: Vec<(String, StoredBooking)> = t
            .iter()?
            .map(|row| {
                let (k, v) = row?;
                let id = k.value().to_owned();
                let b: StoredBooking = decode("bookings", &id, v.value())?;
                Ok((id, b))
            })
            .collect::<Result<_, StoreError>>()?;
        for (id, mut b) in rows.iter().cloned() {
            b.subject = b.subject.to_uppercase();
            t.insert(id.as_str(), encode(&b).as_slice())?;
        }
        tx.open_table(META)?
            .insert("test_booking_count", rows.len() as u64)?;
        Ok(())
    }

    fn failing_step(tx: &redb::WriteTransaction) -> Result<(), StoreError> {
        // Writes first, then fails: the write must not survive.
        tx.open_table(BOOKINGS)?.remove("local-1")?;
        Err(StoreError::Corrupt {
            table: "bookings",
            key: "local-1".into(),
            reason: "test step fails".into(),
        })
    }

    fn unmigrated(dir: &Path) -> Store {
        Store {
            db: Database::create(dir.join(STORE_FILE)).expect("open raw"),
        }
    }

    #[test]
    fn release_1_store_migrates_through_a_step_when_the_schema_is_bumped() {
        let dir = release_1_store();
        unmigrated(dir.path())
            .migrate_to(2, &[test_step_1_to_2])
            .expect("migrate 1 -> 2");
        assert_eq!(schema_version_in(dir.path()), 2);
        let s = unmigrated(dir.path());
        let subjects: Vec<String> = s
            .bookings()
            .expect("bookings")
            .into_iter()
            .map(|b| b.subject)
            .collect();
        assert_eq!(subjects, vec!["S".to_owned(), "S".to_owned()]);
        let tx = s.db.begin_read().expect("read");
        let count = tx
            .open_table(META)
            .expect("meta")
            .get("test_booking_count")
            .expect("get")
            .map(|v| v.value());
        assert_eq!(count, Some(2));
        drop(tx);
        // Opening again at version 2 runs no step twice.
        s.migrate_to(2, &[failing_step])
            .expect("already at version 2");
        assert_eq!(s.bookings().expect("bookings").len(), 2);
    }

    #[test]
    fn a_failing_migration_step_leaves_the_store_at_its_old_version() {
        let dir = release_1_store();
        let err = unmigrated(dir.path())
            .migrate_to(3, &[test_step_1_to_2, failing_step])
            .expect_err("step 2 -> 3 fails");
        assert!(matches!(err, StoreError::Corrupt { key, .. } if key == "local-1"));
        assert_eq!(schema_version_in(dir.path()), 1);
        let s = unmigrated(dir.path());
        let subjects: Vec<String> = s
            .bookings()
            .expect("bookings")
            .into_iter()
            .map(|b| b.subject)
            .collect();
        assert_eq!(subjects, vec!["s".to_owned(), "s".to_owned()], "untouched");
    }

    #[test]
    fn a_version_without_its_step_is_refused() {
        let dir = release_1_store();
        let err = unmigrated(dir.path())
            .migrate_to(2, &[])
            .expect_err("no step");
        assert!(
            matches!(&err, StoreError::Corrupt { reason, .. } if reason.contains("no migration from version 1 to 2")),
            "{err}"
        );
        assert_eq!(schema_version_in(dir.path()), 1);
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
