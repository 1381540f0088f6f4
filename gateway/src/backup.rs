//! Backup and restore of a gateway's configuration and state as one archive, verified on
//! restore: `gateway backup`, `gateway restore`, `GET /api/backup`, `POST /api/restore`.
//!
//! An archive is a gzip'd tar (`tar tzf` lists it) of exactly these entries:
//!
//! | entry | what | why |
//! |---|---|---|
//! | `manifest.json` | format version, gateway version, store schema, created-at, site name, every file with its size and SHA-256, what was left out and why | restore checks everything against it |
//! | `manifest.sha256` | SHA-256 of `manifest.json` (`sha256sum -c` format) | a changed manifest is found |
//! | `site.toml` | the site file, as written | the configuration |
//! | `data/gateway.redb` | a snapshot of the store: every table copied in one read transaction into a fresh redb file | bookings, check-ins, activity, the outbox and the hub cursor |
//! | `data/panel-pin.key` | the door panels' PIN secret | PINs given out with bookings stay valid |
//! | `data/certs/<name>` | every file in `<data>/certs/` (the place for the cloud and HTTPS certificates and keys) | the box can talk to the hub again |
//!
//! Cloud TLS files the site names outside `<data>/certs/` are not copied (the manifest's
//! `not_included` says so): a restore writes only inside the data dir and the site file's own
//! path, never where an archive says. The archive holds secrets (PIN key, private keys): it is
//! written with mode 0600 and must be kept like one.
//!
//! The checksums find corruption and careless edits; they are not a signature (anyone who
//! can change the archive can recompute them). The HTTP routes get the console's accounts.
//!
//! Restore verifies first and touches nothing until everything checked out: every entry name
//! (nothing else is accepted, so no path traversal), types, sizes and checksums, the manifest's
//! own checksum, its format and store schema (newer ones are refused), the site file (it must
//! load), the PIN key's length, and the store (opened in a temporary directory, every record
//! decoded). Then it *stages* the files in `<data>/.restore/` (written, flushed, then renamed
//! into place: the rename is the commit) and *installs* them: every file is first copied
//! next to its target as `<target>.restore-new` and flushed (if that fails, nothing was
//! replaced and the restore is set aside in `<data>/.restore.failed`), then one by one the
//! current file is kept as `<target>.before-restore` (same owner as before) and the new one
//! renamed over it. A crash at any point leaves either the old file or the new one under each
//! name, and the next start (or restore) finishes the install. `gateway restore` stages and installs at once (the gateway must be
//! stopped: the store's lock says whether it is); `POST /api/restore` stages only, and the
//! next start of the gateway installs (`app::start_from_file`).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use ring::digest;
use serde::{Deserialize, Serialize};

use crate::site::SiteDocument;
use crate::store::{SCHEMA_VERSION, STORE_FILE, Store, StoreCounts, StoreError, StoreLock};

/// The archive layout's version; a newer one is refused.
pub const FORMAT_VERSION: u32 = 1;
/// The entries a backup can hold (certificates: [`CERTS_ENTRY`] + a plain file name).
pub const MANIFEST_ENTRY: &str = "manifest.json";
pub const MANIFEST_SUM_ENTRY: &str = "manifest.sha256";
pub const SITE_ENTRY: &str = "site.toml";
pub const STORE_ENTRY: &str = "data/gateway.redb";
pub const PIN_KEY_ENTRY: &str = "data/panel-pin.key";
pub const CERTS_ENTRY: &str = "data/certs/";
/// The directory in the data dir whose files are backed up as certificates.
pub const CERTS_DIR: &str = "certs";
/// Where a verified archive waits to be installed, in the data dir.
pub const STAGING_DIR: &str = ".restore";
/// Archives larger than this (unpacked) are refused, so a gzip bomb cannot fill the memory.
pub const MAX_UNPACKED_BYTES: u64 = 1 << 30;
/// Entries in one archive at most.
pub const MAX_ENTRIES: usize = 256;

/// Why a backup could not be made or an archive is refused. Archive problems name the entry.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{file}: {reason}")]
    Refused { file: String, reason: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A staged restore could not be prepared; nothing was replaced.
    #[error("the staged restore was not applied: {reason}")]
    NotApplied { reason: String },
}

fn refused(file: &str, reason: impl Into<String>) -> BackupError {
    BackupError::Refused {
        file: file.to_owned(),
        reason: reason.into(),
    }
}

fn io(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> BackupError {
    let what = what.to_string();
    move |source| BackupError::Io { what, source }
}

/// The archive's table of contents (`manifest.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub gateway_version: String,
    pub store_schema: u64,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub site: String,
    /// Records in the store snapshot.
    pub records: StoreCounts,
    pub files: Vec<ManifestFile>,
    /// Things a restore will not bring back, and why.
    #[serde(default)]
    pub not_included: Vec<NotIncluded>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    pub name: String,
    pub size: u64,
    /// Lowercase hex.
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotIncluded {
    pub what: String,
    pub why: String,
}

/// What goes into an archive besides the data dir's files.
pub struct BackupInput<'a> {
    /// The site file's text.
    pub site_text: &'a str,
    /// The data dir (PIN key, certificates).
    pub data: &'a Path,
    /// Writes a consistent snapshot of the store to the given (new) path.
    pub snapshot: &'a dyn Fn(&Path) -> Result<StoreCounts, StoreError>,
    /// The archive's creation time.
    pub created_at: jiff::Timestamp,
}

impl std::fmt::Debug for BackupInput<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupInput")
            .field("data", &self.data)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    let d = digest::digest(&digest::SHA256, bytes);
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `name` is an entry a backup may hold; certificates need a plain file name.
fn allowed_entry(name: &str) -> bool {
    match name {
        MANIFEST_ENTRY | MANIFEST_SUM_ENTRY | SITE_ENTRY | STORE_ENTRY | PIN_KEY_ENTRY => true,
        _ => name.strip_prefix(CERTS_ENTRY).is_some_and(plain_file_name),
    }
}

/// `[A-Za-z0-9._-]`, not starting with a dot, at most 100 characters: no separators, no
/// `..`, no hidden files.
fn plain_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Writes a whole archive to `out` and returns its manifest.
pub fn write_archive(out: impl Write, input: BackupInput<'_>) -> Result<Manifest, BackupError> {
    let doc = SiteDocument::load(input.site_text).map_err(|errors| {
        refused(
            SITE_ENTRY,
            format!("the site file has errors, fix it before a backup:\n{errors}"),
        )
    })?;
    let site = doc.site();
    let mut files: Vec<(String, Vec<u8>)> = vec![(SITE_ENTRY.into(), input.site_text.into())];

    let tmp = tempfile::tempdir().map_err(io("a temporary directory for the store snapshot"))?;
    let snap_path = tmp.path().join(STORE_FILE);
    let records = (input.snapshot)(&snap_path)?;
    let snap = std::fs::read(&snap_path).map_err(io(snap_path.display()))?;
    files.push((STORE_ENTRY.into(), snap));

    let pin = input.data.join(crate::panel::pin::KEY_FILE);
    match std::fs::read(&pin) {
        Ok(bytes) => files.push((PIN_KEY_ENTRY.into(), bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(pin.display())(e)),
    }
    let mut not_included = Vec::new();
    let certs = input.data.join(CERTS_DIR);
    match std::fs::read_dir(&certs) {
        Ok(entries) => {
            let mut names = Vec::new();
            for e in entries {
                let e = e.map_err(io(certs.display()))?;
                let name = e.file_name().to_string_lossy().into_owned();
                let is_file = e.file_type().map_err(io(e.path().display()))?.is_file();
                if is_file && plain_file_name(&name) {
                    names.push(name);
                } else {
                    not_included.push(NotIncluded {
                        what: e.path().display().to_string(),
                        why: "not a plain file with a plain name ([A-Za-z0-9._-])".into(),
                    });
                }
            }
            names.sort();
            for name in names {
                let path = certs.join(&name);
                let bytes = std::fs::read(&path).map_err(io(path.display()))?;
                files.push((format!("{CERTS_ENTRY}{name}"), bytes));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(certs.display())(e)),
    }
    if let Some((ca, cert, key)) = site.cloud.as_ref().and_then(|c| c.tls.as_ref()) {
        for f in [ca, cert, key] {
            let inside = f.parent().is_some_and(|p| p == certs) && f.is_file();
            if !inside {
                not_included.push(NotIncluded {
                    what: f.display().to_string(),
                    why: format!(
                        "the site's cloud TLS file is outside {}: back it up with the system \
                         (or keep it there)",
                        certs.display()
                    ),
                });
            }
        }
    }

    let manifest = Manifest {
        format: FORMAT_VERSION,
        gateway_version: env!("CARGO_PKG_VERSION").into(),
        store_schema: SCHEMA_VERSION,
        created_at: input.created_at.to_string(),
        site: site.name.clone(),
        records,
        files: files
            .iter()
            .map(|(name, bytes)| ManifestFile {
                name: name.clone(),
                size: bytes.len() as u64,
                sha256: sha256_hex(bytes),
            })
            .collect(),
        not_included,
    };
    let manifest_json = serde_json::to_vec_pretty(&manifest).map_err(|e| {
        refused(MANIFEST_ENTRY, format!("cannot be written: {e}")) // plain data: not reached
    })?;
    let manifest_sum = format!("{}  {MANIFEST_ENTRY}\n", sha256_hex(&manifest_json));

    let mtime = u64::try_from(input.created_at.as_second()).unwrap_or(0);
    let gz = flate2::write::GzEncoder::new(out, flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    let mut append = |name: &str, bytes: &[u8]| -> Result<(), BackupError> {
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o600);
        h.set_mtime(mtime);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, name, bytes)
            .map_err(io(format!("writing {name} into the archive")))
    };
    append(MANIFEST_ENTRY, &manifest_json)?;
    append(MANIFEST_SUM_ENTRY, manifest_sum.as_bytes())?;
    for (name, bytes) in &files {
        append(name, bytes)?;
    }
    let gz = tar.into_inner().map_err(io("finishing the archive"))?;
    let mut out = gz.finish().map_err(io("finishing the archive"))?;
    out.flush().map_err(io("finishing the archive"))?;
    Ok(manifest)
}

/// Writes an archive to the file `path` (mode 0600: it holds secrets) atomically: a
/// temporary file next to it, flushed, then renamed.
pub fn write_archive_file(path: &Path, input: BackupInput<'_>) -> Result<Manifest, BackupError> {
    let tmp = sibling(path, ".backup-new");
    let manifest = {
        let f = create_private(&tmp).map_err(io(tmp.display()))?;
        let mut w = std::io::BufWriter::new(f);
        let manifest = write_archive(&mut w, input)?;
        let f = w
            .into_inner()
            .map_err(|e| io(tmp.display())(e.into_error()))?;
        f.sync_all().map_err(io(tmp.display()))?;
        manifest
    };
    std::fs::rename(&tmp, path).map_err(io(path.display()))?;
    sync_parent(path)?;
    Ok(manifest)
}

fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        o.mode(0o600);
    }
    o.open(path)
}

/// An archive that passed every check, in memory.
#[derive(Debug)]
pub struct Verified {
    pub manifest: Manifest,
    files: BTreeMap<String, Vec<u8>>,
}

impl Verified {
    /// The entries that a restore installs, by name.
    pub fn file_names(&self) -> impl Iterator<Item = &str> {
        self.files.keys().map(String::as_str)
    }
}

/// Reads an archive (gzip'd or plain tar) and checks everything (see the module docs);
/// the first problem is the error, naming the entry and the reason.
pub fn verify(archive: &[u8]) -> Result<Verified, BackupError> {
    let gzip = archive.starts_with(&[0x1f, 0x8b]);
    let reader: Box<dyn Read + '_> = if gzip {
        Box::new(flate2::read::GzDecoder::new(archive))
    } else {
        Box::new(archive)
    };
    let mut entries: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut total = 0u64;
    let mut tar = tar::Archive::new(reader);
    let unreadable = |e: std::io::Error| {
        refused(
            "archive",
            format!("not a readable roomgate backup (a gzip'd tar): {e}"),
        )
    };
    for entry in tar.entries().map_err(unreadable)? {
        let mut entry = entry.map_err(unreadable)?;
        let name = String::from_utf8(entry.path_bytes().into_owned())
            .map_err(|_| refused("archive", "an entry name is not UTF-8"))?;
        if !allowed_entry(&name) {
            return Err(refused(
                &name,
                "not a file a backup holds (only manifest.json, manifest.sha256, site.toml, \
                 data/gateway.redb, data/panel-pin.key and data/certs/<plain name>)",
            ));
        }
        if !entry.header().entry_type().is_file() {
            return Err(refused(&name, "not a regular file"));
        }
        if entries.contains_key(&name) {
            return Err(refused(&name, "appears twice"));
        }
        if entries.len() >= MAX_ENTRIES {
            return Err(refused(
                "archive",
                format!("more than {MAX_ENTRIES} entries"),
            ));
        }
        let size = entry
            .header()
            .size()
            .map_err(|e| refused(&name, e.to_string()))?;
        total = total.saturating_add(size);
        if total > MAX_UNPACKED_BYTES {
            return Err(refused(
                &name,
                format!("the archive unpacks to more than {MAX_UNPACKED_BYTES} bytes"),
            ));
        }
        let mut bytes = Vec::new();
        entry
            .read_to_end(&mut bytes)
            .map_err(|e| refused(&name, format!("truncated or corrupt: {e}")))?;
        if bytes.len() as u64 != size {
            return Err(refused(&name, "truncated"));
        }
        entries.insert(name, bytes);
    }
    // A gzip stream must end with its trailer (length and CRC): reading to the end checks it.
    let mut rest = Vec::new();
    tar.into_inner()
        .read_to_end(&mut rest)
        .map_err(|e| refused("archive", format!("truncated or corrupt: {e}")))?;

    let manifest_json = entries.remove(MANIFEST_ENTRY).ok_or_else(|| {
        refused(
            MANIFEST_ENTRY,
            "missing: not a roomgate backup, or truncated",
        )
    })?;
    let sum = entries
        .remove(MANIFEST_SUM_ENTRY)
        .ok_or_else(|| refused(MANIFEST_SUM_ENTRY, "missing: the archive is truncated"))?;
    let sum = String::from_utf8_lossy(&sum);
    let expected = sum.split_whitespace().next().unwrap_or_default();
    if expected != sha256_hex(&manifest_json) {
        return Err(refused(
            MANIFEST_ENTRY,
            "its SHA-256 does not match manifest.sha256: the manifest was changed or damaged",
        ));
    }
    let manifest: Manifest = serde_json::from_slice(&manifest_json)
        .map_err(|e| refused(MANIFEST_ENTRY, format!("unreadable: {e}")))?;
    if manifest.format > FORMAT_VERSION {
        return Err(refused(
            MANIFEST_ENTRY,
            format!(
                "archive format {} was written by a newer gateway ({}); this one ({}) reads up \
                 to format {FORMAT_VERSION}",
                manifest.format,
                manifest.gateway_version,
                env!("CARGO_PKG_VERSION")
            ),
        ));
    }
    if manifest.store_schema > SCHEMA_VERSION {
        return Err(refused(
            STORE_ENTRY,
            format!(
                "store schema {} was written by a newer gateway ({}); this one knows up to \
                 schema {SCHEMA_VERSION}: restore with that version or newer",
                manifest.store_schema, manifest.gateway_version
            ),
        ));
    }
    for f in &manifest.files {
        let Some(bytes) = entries.get(&f.name) else {
            return Err(refused(
                &f.name,
                "listed in the manifest but missing from the archive (truncated?)",
            ));
        };
        if bytes.len() as u64 != f.size {
            return Err(refused(
                &f.name,
                format!("{} bytes, the manifest says {}", bytes.len(), f.size),
            ));
        }
        if sha256_hex(bytes) != f.sha256 {
            return Err(refused(
                &f.name,
                "SHA-256 does not match the manifest: the file is damaged or was changed",
            ));
        }
    }
    for name in entries.keys() {
        if !manifest.files.iter().any(|f| &f.name == name) {
            return Err(refused(name, "not listed in the manifest"));
        }
    }
    let site_text = entries
        .get(SITE_ENTRY)
        .ok_or_else(|| refused(SITE_ENTRY, "missing"))?;
    let site_text =
        std::str::from_utf8(site_text).map_err(|_| refused(SITE_ENTRY, "not UTF-8 text"))?;
    let doc = SiteDocument::load(site_text)
        .map_err(|errors| refused(SITE_ENTRY, format!("the site file has errors:\n{errors}")))?;
    if doc.site().name != manifest.site {
        return Err(refused(
            SITE_ENTRY,
            format!(
                "site '{}', the manifest says '{}'",
                doc.site().name,
                manifest.site
            ),
        ));
    }
    if let Some(key) = entries.get(PIN_KEY_ENTRY)
        && key.len() != 32
    {
        return Err(refused(
            PIN_KEY_ENTRY,
            format!("a PIN key is 32 bytes, this one has {}", key.len()),
        ));
    }
    let store = entries
        .get(STORE_ENTRY)
        .ok_or_else(|| refused(STORE_ENTRY, "missing"))?;
    let counts = check_store(store)?;
    if counts != manifest.records {
        return Err(refused(
            STORE_ENTRY,
            format!("holds {counts:?}, the manifest says {:?}", manifest.records),
        ));
    }
    Ok(Verified {
        manifest,
        files: entries,
    })
}

/// Opens a copy of the snapshot in a temporary directory and reads every record.
fn check_store(bytes: &[u8]) -> Result<StoreCounts, BackupError> {
    let tmp = tempfile::tempdir().map_err(io("a temporary directory to check the store"))?;
    let path = tmp.path().join(STORE_FILE);
    std::fs::write(&path, bytes).map_err(io(path.display()))?;
    let bad = |e: StoreError| refused(STORE_ENTRY, e.to_string());
    let store = Store::open(tmp.path()).map_err(bad)?;
    store.check_records().map_err(bad)
}

/// Where each entry goes in the staging dir.
fn staged_name(entry: &str) -> &str {
    entry.strip_prefix("data/").unwrap_or(entry)
}

/// Writes a verified archive's files to `<data>/.restore/` (replacing an earlier staged one),
/// each flushed, then renamed into place in one step: the next start or [`install_staged`]
/// installs it.
pub fn stage(verified: &Verified, data: &Path) -> Result<PathBuf, BackupError> {
    std::fs::create_dir_all(data).map_err(io(data.display()))?;
    let partial = data.join(".restore.partial");
    let staging = data.join(STAGING_DIR);
    for dir in [&partial, &staging] {
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(io(dir.display()))?;
        }
    }
    std::fs::create_dir_all(partial.join(CERTS_DIR)).map_err(io(partial.display()))?;
    let manifest = serde_json::to_vec_pretty(&verified.manifest).unwrap_or_default();
    let write = |name: &str, bytes: &[u8]| -> Result<(), BackupError> {
        let path = partial.join(name);
        let mut f = create_private(&path).map_err(io(path.display()))?;
        f.write_all(bytes).map_err(io(path.display()))?;
        f.sync_all().map_err(io(path.display()))
    };
    for (name, bytes) in &verified.files {
        write(staged_name(name), bytes)?;
    }
    // Written last: a staging dir is complete only with it (it is also what a report shows).
    write(MANIFEST_ENTRY, &manifest)?;
    sync_dir(&partial.join(CERTS_DIR))?;
    sync_dir(&partial)?;
    std::fs::rename(&partial, &staging).map_err(io(staging.display()))?;
    sync_dir(data)?;
    Ok(staging)
}

/// What a restore installed.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    pub manifest: Manifest,
    /// Every file written, where.
    pub installed: Vec<String>,
    /// The files they replaced, kept.
    pub kept: Vec<String>,
}

impl std::fmt::Display for RestoreReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = &self.manifest;
        writeln!(
            f,
            "restored site '{}' from a backup of {} (gateway {}, store schema {}): {} bookings, \
             {} activity lines, {} events waiting for the hub",
            m.site,
            m.created_at,
            m.gateway_version,
            m.store_schema,
            m.records.bookings,
            m.records.activity,
            m.records.outbox
        )?;
        for i in &self.installed {
            writeln!(f, "  installed {i}")?;
        }
        for k in &self.kept {
            writeln!(f, "  kept the previous file as {k}")?;
        }
        for n in &m.not_included {
            writeln!(f, "  not in the backup: {} ({})", n.what, n.why)?;
        }
        Ok(())
    }
}

/// Written in the staging dir once every file sits next to its target: from then on the
/// install only renames, and a re-run after a crash goes on from there.
const INSTALLING_MARK: &str = "INSTALLING";

/// Installs a staged restore, if there is one, in two phases. Prepare: each file is copied
/// next to its target as `<target>.restore-new` and flushed; if that fails (a read-only
/// `/etc`, a full disk) nothing was replaced: the copies are removed, the staged restore is
/// moved to `<data>/.restore.failed`, and the error is [`BackupError::NotApplied`]. Then each
/// current file is kept as `<target>.before-restore` and the new one renamed over it.
/// Resumable: run again after a crash, it finishes what is left. The store must not be open
/// (a running gateway holds its lock).
pub fn install_staged(site: &Path, data: &Path) -> Result<Option<RestoreReport>, BackupError> {
    let staging = data.join(STAGING_DIR);
    let manifest_path = staging.join(MANIFEST_ENTRY);
    let manifest_bytes = match std::fs::read(&manifest_path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(manifest_path.display())(e)),
    };
    let manifest: Manifest = serde_json::from_slice(&manifest_bytes).map_err(|e| {
        refused(
            &manifest_path.display().to_string(),
            format!("the staged restore's manifest is unreadable: {e}"),
        )
    })?;
    let mut files = Vec::new();
    for f in &manifest.files {
        if !allowed_entry(&f.name) {
            return Err(refused(&f.name, "not a file a backup holds"));
        }
        let target = if f.name == SITE_ENTRY {
            site.to_path_buf()
        } else {
            data.join(staged_name(&f.name))
        };
        let new = sibling(&target, ".restore-new");
        files.push((staging.join(staged_name(&f.name)), new, target));
    }
    let mark = staging.join(INSTALLING_MARK);
    if !mark.exists() {
        if let Err(e) = prepare(&files) {
            for (_, new, _) in &files {
                let _ = std::fs::remove_file(new);
            }
            let failed = data.join(".restore.failed");
            let _ = std::fs::remove_dir_all(&failed);
            let kept = match std::fs::rename(&staging, &failed) {
                Ok(()) => format!("kept in {}", failed.display()),
                Err(_) => format!("still in {}", staging.display()),
            };
            return Err(BackupError::NotApplied {
                reason: format!("{e}; nothing was replaced, the restore is {kept}"),
            });
        }
        let f = create_private(&mark).map_err(io(mark.display()))?;
        f.sync_all().map_err(io(mark.display()))?;
        sync_dir(&staging)?;
    }
    let mut report = RestoreReport {
        manifest,
        installed: Vec::new(),
        kept: Vec::new(),
    };
    for (_, new, target) in &files {
        if !new.exists() {
            continue; // installed before a crash
        }
        if target.exists() {
            let before = sibling(target, ".before-restore");
            let _ = std::fs::remove_file(&before);
            if std::fs::hard_link(target, &before).is_err() {
                std::fs::copy(target, &before).map_err(io(before.display()))?;
            }
            report.kept.push(before.display().to_string());
        }
        std::fs::rename(new, target).map_err(io(target.display()))?;
        sync_parent(target)?;
        report.installed.push(target.display().to_string());
    }
    std::fs::remove_dir_all(&staging).map_err(io(staging.display()))?;
    sync_dir(data)?;
    Ok(Some(report))
}

/// Copies every staged file next to its target (flushed), replacing nothing.
fn prepare(files: &[(PathBuf, PathBuf, PathBuf)]) -> Result<(), BackupError> {
    for (staged, new, target) in files {
        if let Some(dir) = new.parent() {
            std::fs::create_dir_all(dir).map_err(io(dir.display()))?;
        }
        let bytes = std::fs::read(staged).map_err(io(staged.display()))?;
        let mut f = create_private(new).map_err(io(new.display()))?;
        f.write_all(&bytes).map_err(io(new.display()))?;
        f.sync_all().map_err(io(new.display()))?;
        owned_like(new, target);
        sync_parent(new)?;
    }
    Ok(())
}

/// Gives `new` the owner of the file it replaces, or of its directory: `gateway restore` runs
/// as root, the gateway as its own user, which must still read its store and key. Best
/// effort: without the right to change owners, the files were ours to begin with.
fn owned_like(new: &Path, target: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        let like = std::fs::metadata(target)
            .or_else(|_| std::fs::metadata(target.parent().unwrap_or(Path::new("."))));
        if let (Ok(like), Ok(now)) = (like, std::fs::metadata(new))
            && (like.uid(), like.gid()) != (now.uid(), now.gid())
        {
            let _ = std::os::unix::fs::chown(new, Some(like.uid()), Some(like.gid()));
        }
    }
}

/// `gateway restore`: verifies the archive, refuses while a gateway runs on `data`, then
/// stages and installs it. With `verify_only`, stops after the checks (returns no report).
pub fn restore_archive(
    archive: &[u8],
    site: &Path,
    data: &Path,
    verify_only: bool,
) -> Result<(Manifest, Option<RestoreReport>), BackupError> {
    let verified = verify(archive)?;
    if verify_only {
        return Ok((verified.manifest, None));
    }
    // Held until the install is done: no gateway can open the store meanwhile.
    let _lock = StoreLock::stopped(data)?;
    stage(&verified, data)?;
    let report = install_staged(site, data)?;
    Ok((verified.manifest, report))
}

/// `gateway backup` of a stopped gateway: the store is opened read-only. When a gateway runs
/// on `data` its lock refuses this (`StoreError::InUse`), and the backup goes through its
/// HTTP API instead (`GET /api/backup`).
pub fn backup_stopped(
    site: &Path,
    data: &Path,
    out: &Path,
    created_at: jiff::Timestamp,
) -> Result<Manifest, BackupError> {
    let site_text = std::fs::read_to_string(site).map_err(io(site.display()))?;
    let lock = StoreLock::stopped(data)?.ok_or_else(|| {
        refused(
            &data.join(STORE_FILE).display().to_string(),
            "no store here: is this the gateway's data dir?",
        )
    })?;
    write_archive_file(
        out,
        BackupInput {
            site_text: &site_text,
            data,
            snapshot: &|dest| lock.snapshot(dest),
            created_at,
        },
    )
}

/// What the HTTP routes need: the running store, the data dir and where the site comes from.
#[derive(Debug)]
pub struct BackupSource {
    pub store: std::sync::Arc<Store>,
    pub data: PathBuf,
    pub site: std::sync::Arc<crate::reload::SiteSource>,
}

impl BackupSource {
    /// The site file's text: the file itself (comments kept), or the running site as TOML
    /// when it was given in memory (the demo).
    pub async fn site_text(&self) -> Result<String, BackupError> {
        match self.site.path() {
            Some(path) => std::fs::read_to_string(path).map_err(io(path.display())),
            None => self
                .site
                .current_toml()
                .await
                .map_err(|e| refused(SITE_ENTRY, e.to_string())),
        }
    }

    /// Writes an archive of the running gateway to a temporary file (removed when dropped).
    pub fn archive_to_temp(
        &self,
        site_text: &str,
        created_at: jiff::Timestamp,
    ) -> Result<(tempfile::NamedTempFile, Manifest), BackupError> {
        let mut tmp = tempfile::NamedTempFile::new().map_err(io("a temporary archive file"))?;
        let manifest = {
            let mut w = std::io::BufWriter::new(tmp.as_file_mut());
            let manifest = write_archive(
                &mut w,
                BackupInput {
                    site_text,
                    data: &self.data,
                    snapshot: &|dest| self.store.snapshot(dest),
                    created_at,
                },
            )?;
            w.flush().map_err(io("the temporary archive file"))?;
            manifest
        };
        Ok((tmp, manifest))
    }

    /// `POST /api/restore` without `verify_only`: verifies and stages the archive; the next
    /// start installs it. Refused when the site was not loaded from a file (nothing to
    /// restore it to).
    pub fn stage_upload(&self, archive: &[u8]) -> Result<Manifest, BackupError> {
        if self.site.path().is_none() {
            return Err(refused(
                SITE_ENTRY,
                "this gateway runs on a site given in memory (the demo): a restore needs \
                 `gateway run --site <file>`",
            ));
        }
        let verified = verify(archive)?;
        stage(&verified, &self.data)?;
        Ok(verified.manifest)
    }
}

/// `GET /api/backup` from the gateway at `addr` (`gateway backup` while the gateway runs:
/// its store is locked to every other process), over HTTPS trusting only the certificate in
/// `<data>/certs/console.crt` and with the token in `<data>/cli-token` as the bearer (both
/// written by the gateway at start, readable by its user).
pub fn fetch_from_gateway(addr: &str, data: &Path) -> Result<Vec<u8>, BackupError> {
    use std::net::ToSocketAddrs as _;
    let token_path = data.join(crate::app::CLI_TOKEN_FILE);
    let token = match std::fs::read_to_string(&token_path) {
        Ok(t) if !t.trim().is_empty() => t.trim().to_owned(),
        Ok(_) => {
            return Err(refused(
                &token_path.display().to_string(),
                "empty: the running gateway writes its token there at every start",
            ));
        }
        Err(e) => {
            return Err(refused(
                &token_path.display().to_string(),
                format!(
                    "{e}: the running gateway writes this token at every start, readable only by \
                     its user (is --data the running gateway's data dir, and are you its user?)"
                ),
            ));
        }
    };
    let cert_path = data.join(crate::console::tls::CERT_FILE);
    if let Err(e) = std::fs::metadata(&cert_path) {
        return Err(refused(
            &cert_path.display().to_string(),
            format!(
                "{e}: the gateway writes its HTTPS certificate there at start (a gateway run \
                 with --plain-http has none: fetch /api/backup through its proxy instead)"
            ),
        ));
    }
    let tls = crate::console::tls::pinned_client_config(&cert_path)
        .map_err(|e| refused(&cert_path.display().to_string(), e.to_string()))?;
    let what = format!("GET https://{addr}/api/backup");
    let target = addr
        .to_socket_addrs()
        .map_err(io(&what))?
        .next()
        .ok_or_else(|| refused(addr, "no address to connect to"))?;
    let host = addr
        .rsplit_once(':')
        .map_or(addr, |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']');
    // The pin decides, not the name; the name only goes out as SNI when it is one.
    let name = rustls::pki_types::ServerName::try_from(host.to_owned())
        .or_else(|_| rustls::pki_types::ServerName::try_from("localhost"))
        .map_err(|e| refused(addr, e.to_string()))?;
    let conn =
        rustls::ClientConnection::new(tls, name).map_err(|e| refused(&what, e.to_string()))?;
    let s = std::net::TcpStream::connect_timeout(&target, std::time::Duration::from_secs(10))
        .map_err(io(&what))?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(300)))
        .map_err(io(&what))?;
    let mut s = rustls::StreamOwned::new(conn, s);
    write!(
        s,
        "GET /api/backup HTTP/1.0\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\r\n"
    )
    .and_then(|()| s.flush())
    .map_err(io(&what))?;
    let mut answer = Vec::new();
    match s.read_to_end(&mut answer) {
        Ok(_) => {}
        // Closed without a TLS close_notify: the length below says whether all came.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !answer.is_empty() => {}
        Err(e) => return Err(io(&what)(e)),
    }
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| refused(&what, "no HTTP answer"))?;
    let head = String::from_utf8_lossy(&answer[..split]).into_owned();
    let body = answer.split_off(split + 4);
    let status = head.split_whitespace().nth(1).unwrap_or_default();
    match status {
        "200" => {}
        "401" | "403" => {
            return Err(refused(
                &what,
                format!(
                    "answered {status}: {} (the token in {} belongs to the gateway that wrote \
                     it; is the gateway at {addr} the one using this data dir?)",
                    String::from_utf8_lossy(&body),
                    token_path.display()
                ),
            ));
        }
        _ => {
            return Err(refused(
                &what,
                format!("answered {status}: {}", String::from_utf8_lossy(&body)),
            ));
        }
    }
    let length = head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse::<usize>().ok())?
    });
    if let Some(length) = length
        && length != body.len()
    {
        return Err(refused(
            &what,
            format!(
                "the archive was cut short ({} of {length} bytes)",
                body.len()
            ),
        ));
    }
    Ok(body)
}

/// Writes `bytes` to `path` (mode 0600) atomically: temporary file, flushed, renamed.
pub fn write_file_private(path: &Path, bytes: &[u8]) -> Result<(), BackupError> {
    let tmp = sibling(path, ".backup-new");
    let mut f = create_private(&tmp).map_err(io(tmp.display()))?;
    f.write_all(bytes).map_err(io(tmp.display()))?;
    f.sync_all().map_err(io(tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(io(path.display()))?;
    sync_parent(path)
}

/// A dated file name for an archive: `roomgate-<site>-<YYYYMMDD-HHMMSS>Z.tar.gz`.
pub fn archive_file_name(site: &str, at: jiff::Timestamp) -> String {
    let site: String = site
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("roomgate-{site}-{}Z.tar.gz", at.strftime("%Y%m%d-%H%M%S"))
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

fn sync_dir(dir: &Path) -> Result<(), BackupError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir.display()))
}

fn sync_parent(path: &Path) -> Result<(), BackupError> {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => sync_dir(d),
        _ => sync_dir(Path::new(".")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{ActivityRecord, BookingSource, StoredBooking};

    const SITE: &str = r#"
[site]
name = "HQ floor 3"
timezone = "UTC"
"#;

    fn booking(id: &str) -> StoredBooking {
        StoredBooking {
            id: id.into(),
            room: "r1".into(),
            start_ms: 1_000,
            end_ms: 2_000,
            subject: "Planning".into(),
            organizer: "ana".into(),
            source: BookingSource::Local,
            checked_in_ms: Some(1_100),
            attendees: vec!["bo".into()],
            finished_ms: None,
        }
    }

    /// A data dir with a store (2 bookings, 1 activity line), a PIN key and a certificate.
    fn gateway_data() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let site = dir.path().join("site.toml");
        std::fs::create_dir_all(data.join(CERTS_DIR)).expect("certs dir");
        std::fs::write(&site, SITE).expect("site");
        std::fs::write(data.join(crate::panel::pin::KEY_FILE), [7u8; 32]).expect("pin");
        std::fs::write(data.join(CERTS_DIR).join("gateway.pem"), "CERT").expect("cert");
        let store = Store::open(&data).expect("store");
        store.put_booking(&booking("b1")).expect("put");
        store.put_booking(&booking("b2")).expect("put");
        store
            .append_activity(&[(
                "r1".into(),
                ActivityRecord {
                    at_ms: 1_100,
                    kind: "outcome".into(),
                    text: "checked in".into(),
                },
            )])
            .expect("activity");
        (dir, site, data)
    }

    fn backup_of(store: &Store, data: &Path) -> Vec<u8> {
        let mut out = Vec::new();
        write_archive(
            &mut out,
            BackupInput {
                site_text: SITE,
                data,
                snapshot: &|dest| store.snapshot(dest),
                created_at: jiff::Timestamp::from_second(1_790_000_000).expect("time"),
            },
        )
        .expect("backup");
        out
    }

    /// Rebuilds an archive from entries, without any check (to make bad ones).
    fn tar_of(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut tar = tar::Builder::new(gz);
        for (name, bytes) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(bytes.len() as u64);
            h.set_mode(0o600);
            h.set_entry_type(tar::EntryType::Regular);
            // Bypasses `set_path`'s checks so `../` names can be tested.
            let raw = &mut h.as_old_mut().name;
            raw[..name.len()].copy_from_slice(name.as_bytes());
            h.set_cksum();
            tar.append(&h, bytes.as_slice()).expect("append");
        }
        tar.into_inner().expect("tar").finish().expect("gz")
    }

    fn entries_of(archive: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive));
        tar.entries()
            .expect("entries")
            .map(|e| {
                let mut e = e.expect("entry");
                let name = String::from_utf8(e.path_bytes().into_owned()).expect("name");
                let mut bytes = Vec::new();
                e.read_to_end(&mut bytes).expect("read");
                (name, bytes)
            })
            .collect()
    }

    fn rebuilt(archive: &[u8], change: impl Fn(&str, &mut Vec<u8>)) -> Vec<u8> {
        let mut entries = entries_of(archive);
        for (name, bytes) in &mut entries {
            change(name, bytes);
        }
        let refs: Vec<(&str, Vec<u8>)> = entries
            .iter()
            .map(|(n, b)| (n.as_str(), b.clone()))
            .collect();
        tar_of(&refs)
    }

    /// Everything in the data dir and the site file, to prove a refusal touched nothing.
    fn fingerprint(site: &Path, data: &Path) -> Vec<(String, String)> {
        let read = |p: &Path| sha256_hex(&std::fs::read(p).unwrap_or_default());
        let mut out = vec![("site".to_owned(), read(site))];
        let mut stack = vec![data.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir).expect("read_dir") {
                let p = e.expect("entry").path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    out.push((p.display().to_string(), read(&p)));
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn a_backup_round_trips_into_an_emptied_data_dir() {
        let (_dir, site, data) = gateway_data();
        let archive = {
            let store = Store::open(&data).expect("store");
            let archive = backup_of(&store, &data);
            // Written after the backup: not in it, and gone after the restore.
            store.put_booking(&booking("later")).expect("put");
            archive
        };
        let names: Vec<String> = entries_of(&archive).into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "manifest.json",
                "manifest.sha256",
                "site.toml",
                "data/gateway.redb",
                "data/panel-pin.key",
                "data/certs/gateway.pem"
            ]
        );
        std::fs::write(&site, "[site]\nname = \"changed\"\ntimezone = \"UTC\"\n").expect("site");
        std::fs::remove_file(data.join(crate::panel::pin::KEY_FILE)).expect("rm pin");

        let (manifest, report) = restore_archive(&archive, &site, &data, false).expect("restore");
        let report = report.expect("a report");
        assert_eq!(manifest.site, "HQ floor 3");
        assert_eq!(
            manifest.records,
            StoreCounts {
                bookings: 2,
                activity: 1,
                outbox: 0,
                console: 0,
                audit: 0,
            }
        );
        assert_eq!(report.installed.len(), 4, "{report}");
        assert!(report.to_string().contains("2 bookings"), "{report}");

        assert_eq!(std::fs::read_to_string(&site).expect("site"), SITE);
        assert!(
            std::fs::read_to_string(sibling(&site, ".before-restore"))
                .expect("old site kept")
                .contains("changed")
        );
        assert_eq!(
            std::fs::read(data.join(crate::panel::pin::KEY_FILE)).expect("pin"),
            [7u8; 32]
        );
        assert!(data.join("gateway.redb.before-restore").exists());
        assert!(!data.join(STAGING_DIR).exists());
        let store = Store::open(&data).expect("restored store");
        let ids: Vec<String> = store
            .bookings()
            .expect("bookings")
            .into_iter()
            .map(|b| b.id)
            .collect();
        assert_eq!(ids, ["b1", "b2"]);
        assert_eq!(store.booking("b1").expect("b1"), Some(booking("b1")));
        assert_eq!(
            store.activity("r1", 10).expect("activity")[0].text,
            "checked in"
        );
    }

    #[test]
    fn every_kind_of_damage_is_refused_naming_the_file_and_touching_nothing() {
        let (_dir, site, data) = gateway_data();
        let archive = {
            let store = Store::open(&data).expect("store");
            backup_of(&store, &data)
        };
        let before = fingerprint(&site, &data);
        let flip_last = |bytes: &mut Vec<u8>| {
            if let Some(b) = bytes.last_mut() {
                *b ^= 1;
            }
        };
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            (
                "garbage",
                b"this is not an archive at all".to_vec(),
                "archive",
            ),
            ("empty", Vec::new(), "manifest.json"),
            (
                // Cut inside the store's entry (the largest by far).
                "truncated",
                archive[..archive.len() / 2].to_vec(),
                "data/gateway.redb",
            ),
            (
                "cut before the gzip trailer",
                archive[..archive.len() - 4].to_vec(),
                "archive",
            ),
            (
                "store changed",
                rebuilt(&archive, |n, b| {
                    if n == STORE_ENTRY {
                        flip_last(b)
                    }
                }),
                "data/gateway.redb",
            ),
            (
                "PIN key changed",
                rebuilt(&archive, |n, b| {
                    if n == PIN_KEY_ENTRY {
                        b[0] ^= 1
                    }
                }),
                "data/panel-pin.key",
            ),
            (
                "manifest edited",
                rebuilt(&archive, |n, b| {
                    if n == MANIFEST_ENTRY {
                        let t = String::from_utf8(b.clone()).expect("utf8");
                        *b = t.replace("HQ floor 3", "HQ floor 4").into_bytes();
                    }
                }),
                "manifest.json",
            ),
            (
                "a file missing",
                {
                    let e = entries_of(&archive);
                    let kept: Vec<(&str, Vec<u8>)> = e
                        .iter()
                        .filter(|(n, _)| n != PIN_KEY_ENTRY)
                        .map(|(n, b)| (n.as_str(), b.clone()))
                        .collect();
                    tar_of(&kept)
                },
                "data/panel-pin.key",
            ),
            (
                "a file not in the manifest",
                {
                    let mut e = entries_of(&archive);
                    e.push(("data/certs/extra.pem".into(), b"x".to_vec()));
                    let refs: Vec<(&str, Vec<u8>)> =
                        e.iter().map(|(n, b)| (n.as_str(), b.clone())).collect();
                    tar_of(&refs)
                },
                "data/certs/extra.pem",
            ),
        ];
        for (what, bad, file) in cases {
            let err = restore_archive(&bad, &site, &data, false)
                .expect_err(what)
                .to_string();
            assert!(
                err.starts_with(&format!("{file}: ")),
                "{what}: the error names {file}: {err}"
            );
            let err = restore_archive(&bad, &site, &data, true).expect_err(what);
            assert!(err.to_string().starts_with(&format!("{file}: ")), "{what}");
            assert_eq!(fingerprint(&site, &data), before, "{what} touched the data");
        }
    }

    #[test]
    fn names_outside_the_backup_are_refused() {
        let (_dir, site, data) = gateway_data();
        let before = fingerprint(&site, &data);
        for name in [
            "../evil",
            "/etc/passwd",
            "data/../../evil",
            "data/certs/../../evil",
            "data/certs/.hidden",
            "data/certs/sub/x",
            "data/other.bin",
            "./site.toml",
        ] {
            let bad = tar_of(&[(name, b"x".to_vec())]);
            let err = restore_archive(&bad, &site, &data, false)
                .expect_err(name)
                .to_string();
            assert!(
                err.starts_with(&format!("{name}: not a file a backup holds")),
                "{err}"
            );
        }
        assert!(!data.parent().expect("parent").join("evil").exists());
        assert_eq!(fingerprint(&site, &data), before);
    }

    #[test]
    fn a_newer_store_schema_or_format_is_refused_with_the_reason() {
        let (_dir, site, data) = gateway_data();
        let archive = {
            let store = Store::open(&data).expect("store");
            backup_of(&store, &data)
        };
        let before = fingerprint(&site, &data);
        for (field, value, file, says) in [
            (
                "store_schema",
                SCHEMA_VERSION + 1,
                STORE_ENTRY,
                "newer gateway",
            ),
            (
                "format",
                u64::from(FORMAT_VERSION) + 1,
                MANIFEST_ENTRY,
                "newer gateway",
            ),
        ] {
            // A consistent archive from "a newer gateway": manifest and its checksum agree.
            let mut entries = entries_of(&archive);
            let mut manifest: serde_json::Value =
                serde_json::from_slice(&entries[0].1).expect("manifest");
            manifest[field] = value.into();
            let json = serde_json::to_vec_pretty(&manifest).expect("json");
            entries[1].1 = format!("{}  manifest.json\n", sha256_hex(&json)).into_bytes();
            entries[0].1 = json;
            let refs: Vec<(&str, Vec<u8>)> = entries
                .iter()
                .map(|(n, b)| (n.as_str(), b.clone()))
                .collect();
            let err = restore_archive(&tar_of(&refs), &site, &data, true)
                .expect_err(field)
                .to_string();
            assert!(err.starts_with(&format!("{file}: ")), "{err}");
            assert!(err.contains(says), "{err}");
        }
        assert_eq!(fingerprint(&site, &data), before);
    }

    #[test]
    fn a_running_gateway_is_detected_by_the_store_lock() {
        let (_dir, site, data) = gateway_data();
        let store = Store::open(&data).expect("the running gateway's store");
        let archive = backup_of(&store, &data);
        let before = fingerprint(&site, &data);
        // In-process redb refuses a second open of a held file the same way another process
        // is refused (the file lock).
        let err = restore_archive(&archive, &site, &data, false).expect_err("running");
        assert!(
            matches!(err, BackupError::Store(StoreError::InUse { .. })),
            "{err}"
        );
        assert!(err.to_string().contains("stop it first"), "{err}");
        assert_eq!(fingerprint(&site, &data), before);
        drop(store);
    }

    #[test]
    fn an_interrupted_install_finishes_on_the_next_run() {
        let (_dir, site, data) = gateway_data();
        let archive = {
            let store = Store::open(&data).expect("store");
            backup_of(&store, &data)
        };
        std::fs::write(&site, "[site]\nname = \"old\"\ntimezone = \"UTC\"\n").expect("old site");
        let verified = verify(&archive).expect("verify");
        stage(&verified, &data).expect("stage");
        // A crash after the prepare phase and the site file's install.
        let files: Vec<(PathBuf, PathBuf, PathBuf)> = verified
            .file_names()
            .map(|name| {
                let target = if name == SITE_ENTRY {
                    site.clone()
                } else {
                    data.join(staged_name(name))
                };
                (
                    data.join(STAGING_DIR).join(staged_name(name)),
                    sibling(&target, ".restore-new"),
                    target,
                )
            })
            .collect();
        prepare(&files).expect("prepare");
        std::fs::write(data.join(STAGING_DIR).join(INSTALLING_MARK), "").expect("mark");
        std::fs::copy(&site, sibling(&site, ".before-restore")).expect("keep");
        std::fs::rename(sibling(&site, ".restore-new"), &site).expect("install site");

        let report = install_staged(&site, &data)
            .expect("install")
            .expect("staged");
        assert_eq!(report.installed.len(), 3, "the rest: {report}");
        assert_eq!(std::fs::read_to_string(&site).expect("site"), SITE);
        assert!(
            std::fs::read_to_string(sibling(&site, ".before-restore"))
                .expect("kept")
                .contains("old"),
            "the old site stays kept, not the new one"
        );
        assert!(install_staged(&site, &data).expect("again").is_none());
        let store = Store::open(&data).expect("restored store");
        assert_eq!(store.bookings().expect("bookings").len(), 2);
    }

    #[test]
    fn a_restore_that_cannot_be_prepared_replaces_nothing_and_is_set_aside() {
        let (dir, site, data) = gateway_data();
        let archive = {
            let store = Store::open(&data).expect("store");
            backup_of(&store, &data)
        };
        stage(&verify(&archive).expect("verify"), &data).expect("stage");
        // The site file's directory cannot take the new file (as a read-only /etc would).
        let blocked = dir.path().join("not-a-dir");
        std::fs::write(&blocked, "a file").expect("file");
        let site_in_blocked = blocked.join("site.toml");
        let mut before = fingerprint(&site, &data);
        before.retain(|(p, _)| !p.contains("/.restore"));
        let err = install_staged(&site_in_blocked, &data).expect_err("cannot prepare");
        assert!(matches!(err, BackupError::NotApplied { .. }), "{err}");
        assert!(err.to_string().contains(".restore.failed"), "{err}");
        assert!(
            !data.join(STAGING_DIR).exists(),
            "not retried at every start"
        );
        assert!(!data.join("gateway.redb.restore-new").exists());
        let mut after = fingerprint(&site, &data);
        after.retain(|(p, _)| !p.contains("/.restore"));
        assert_eq!(after, before);
    }
}
