//! Applying a changed site file to a running gateway: which field owners a `ReloadPlan` stops
//! and starts (`field_change`, pure), what the reload did (`ReloadReport`), and the site file
//! behind `GET/POST /api/site` (`SiteSource`: validate, diff, apply, then write the file
//! atomically, keeping the previous one as `<file>.prev`).
//!
//! The main loop carries the plan out (`runtime::apply`); this module holds what needs no
//! loop. Only a time-zone change needs the whole gateway restarted; it is refused with the
//! reason, and so is a site with errors (each with its line and column), changing nothing.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::api::BookingDto;
use crate::runtime::{ApiError, GatewayHandle};
use crate::site::{DeviceKind, ReloadAction, ReloadPlan, Site, SiteDocument, SiteErrors};

pub(crate) use crate::runtime::FieldParts;

/// What a reload does to the field, in the order it is done: `fresh` owners (new ones that
/// replace nothing) start first, so a failure there touches nothing that runs; then `stop`
/// owners stop (removed ones, and the old side of a restart: they hold the same socket or
/// serial line as their successor) and `restart` owners start from the new site.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FieldChange {
    pub fresh: FieldParts,
    pub stop: FieldParts,
    pub restart: FieldParts,
}

impl FieldChange {
    pub fn is_empty(&self) -> bool {
        self.fresh.is_empty() && self.stop.is_empty() && self.restart.is_empty()
    }
}

fn own_owner(site: &Site, id: &str) -> bool {
    site.device(id)
        .is_some_and(|d| !matches!(d.kind, DeviceKind::ModbusRtu { .. }))
}

fn bacnet_ids(site: &Site) -> impl Iterator<Item = String> + '_ {
    (site.devices.iter())
        .filter(|d| matches!(d.kind, DeviceKind::Bacnet(_)))
        .map(|d| d.id.clone())
}

/// The owners `plan` stops and starts between `old` and `new`. A device that becomes an RTU
/// unit stops its own owner (its bus restarts with it); every BACnet device follows a
/// restarted or stopped network.
pub(crate) fn field_change(plan: &ReloadPlan, old: &Site, new: &Site) -> FieldChange {
    let mut stop = FieldParts::default();
    let mut start = FieldParts::default();
    for (id, r) in &plan.devices {
        if own_owner(old, id) {
            stop.devices.insert(id.clone());
        }
        if r.action != ReloadAction::Stop && own_owner(new, id) {
            start.devices.insert(id.clone());
        }
    }
    for (id, r) in &plan.buses {
        let stops = matches!(r.action, ReloadAction::Stop | ReloadAction::Restart);
        if stops && old.buses.iter().any(|b| &b.id == id) {
            stop.buses.insert(id.clone());
        }
        let starts = matches!(r.action, ReloadAction::Start | ReloadAction::Restart);
        if starts && new.buses.iter().any(|b| &b.id == id) {
            start.buses.insert(id.clone());
        }
    }
    if let Some(r) = &plan.bacnet_network {
        if matches!(r.action, ReloadAction::Stop | ReloadAction::Restart) {
            stop.bacnet_network = true;
            stop.devices.extend(bacnet_ids(old));
        }
        if matches!(r.action, ReloadAction::Start | ReloadAction::Restart) {
            start.bacnet_network = true;
            start.devices.extend(bacnet_ids(new));
        }
    }
    let new_bacnet: Vec<String> = bacnet_ids(new).collect();
    let mut fresh = FieldParts {
        bacnet_network: start.bacnet_network && !stop.bacnet_network,
        ..FieldParts::default()
    };
    let mut restart = FieldParts {
        bacnet_network: start.bacnet_network && stop.bacnet_network,
        ..FieldParts::default()
    };
    for id in start.devices {
        // A BACnet device rides on the network: when that restarts, so does the device.
        let after_stop =
            stop.devices.contains(&id) || (stop.bacnet_network && new_bacnet.contains(&id));
        if after_stop {
            restart.devices.insert(id);
        } else {
            fresh.devices.insert(id);
        }
    }
    for id in start.buses {
        if stop.buses.contains(&id) {
            restart.buses.insert(id);
        } else {
            fresh.buses.insert(id);
        }
    }
    FieldChange {
        fresh,
        stop,
        restart,
    }
}

/// What a reload did, or (for a dry run) would do.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ReloadReport {
    /// Whether the change was applied (false for a dry run).
    pub applied: bool,
    /// One line per thing started, stopped, restarted or reconfigured, with why.
    pub plan: Vec<String>,
    /// Running or future bookings of removed rooms: kept in the store, no longer run (they
    /// come back if the room does).
    pub kept_bookings: Vec<BookingDto>,
    /// Changes that take effect only at the next gateway restart (the cloud agent's
    /// connection: broker, identity, TLS files).
    pub pending_restart: Vec<String>,
}

/// The plan in lines, `nothing to reload` when empty.
pub(crate) fn plan_lines(plan: &ReloadPlan) -> Vec<String> {
    plan.to_string().lines().map(str::to_owned).collect()
}

/// The answer to `POST /api/site`.
#[derive(Debug, Clone, Serialize)]
pub struct SiteAnswer {
    pub dry_run: bool,
    /// The changes as written in the file (`site::diff`), one per line.
    pub diff: Vec<String>,
    pub report: ReloadReport,
    /// Where the new site was written, or why it was not.
    pub file: String,
}

/// One located error of a refused site file.
#[derive(Debug, Clone, Serialize)]
pub struct SiteErrorDto {
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub path: String,
    pub message: String,
}

/// Why `GET/POST /api/site` was refused.
#[derive(Debug)]
pub enum SiteRefusal {
    /// The file has errors (422), each with where and why.
    Invalid(SiteErrors),
    /// The gateway refused or could not apply it.
    Gateway(ApiError),
    /// The running site came from memory without its document (404 for `GET`).
    NoDocument,
}

impl SiteRefusal {
    pub fn errors(&self) -> Vec<SiteErrorDto> {
        match self {
            SiteRefusal::Invalid(errors) => (errors.0.iter())
                .map(|e| SiteErrorDto {
                    line: e.line_col.map(|(l, _)| l),
                    column: e.line_col.map(|(_, c)| c),
                    path: e.path.clone(),
                    message: e.message.clone(),
                })
                .collect(),
            _ => Vec::new(),
        }
    }
}

impl std::fmt::Display for SiteRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SiteRefusal::Invalid(e) => write!(f, "{} error(s) in the site file:\n{e}", e.0.len()),
            SiteRefusal::Gateway(e) => write!(f, "{e}"),
            SiteRefusal::NoDocument => f.write_str(
                "this gateway was started from a site given in memory: it has no site file to show",
            ),
        }
    }
}

/// The site file the gateway runs: its document (for `GET`, and the diff of a change) and
/// where it was loaded from. One change at a time: a `POST` holds it until it has answered.
#[derive(Debug)]
pub struct SiteSource {
    path: Option<PathBuf>,
    doc: tokio::sync::Mutex<Option<SiteDocument>>,
    listeners: std::sync::Mutex<Listeners>,
}

/// Told about each applied site (the door panels' check-in settings follow it).
#[derive(Default)]
struct Listeners(Vec<Listener>);

type Listener = Box<dyn Fn(&Site) + Send + Sync>;

impl std::fmt::Debug for Listeners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} listener(s)", self.0.len())
    }
}

impl SiteSource {
    /// A site loaded from `path`: changes are written back there.
    pub fn file(path: PathBuf, doc: SiteDocument) -> SiteSource {
        SiteSource {
            path: Some(path),
            doc: tokio::sync::Mutex::new(Some(doc)),
            listeners: std::sync::Mutex::default(),
        }
    }

    /// A site in memory (the demo's embedded site, tests): changes apply in memory only.
    pub fn memory(doc: Option<SiteDocument>) -> SiteSource {
        SiteSource {
            path: None,
            doc: tokio::sync::Mutex::new(doc),
            listeners: std::sync::Mutex::default(),
        }
    }

    /// The site file changes are written to, when the site came from one.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Calls `f` with every site applied from now on.
    pub fn on_applied(&self, f: impl Fn(&Site) + Send + Sync + 'static) {
        let mut listeners =
            (self.listeners.lock()).unwrap_or_else(std::sync::PoisonError::into_inner);
        listeners.0.push(Box::new(f));
    }

    /// The running site as TOML.
    pub async fn current_toml(&self) -> Result<String, SiteRefusal> {
        let doc = self.doc.lock().await;
        let doc = doc.as_ref().ok_or(SiteRefusal::NoDocument)?;
        doc.to_toml()
            .map_err(|e| SiteRefusal::Gateway(ApiError::Unavailable(e.to_string())))
    }

    /// Validates `text`; on a dry run answers the diff and the plan; otherwise applies it to
    /// the running gateway, then writes it (as posted, comments kept) where the site was
    /// loaded from.
    pub async fn change(
        &self,
        g: &GatewayHandle,
        text: &str,
        dry_run: bool,
    ) -> Result<SiteAnswer, SiteRefusal> {
        let new = SiteDocument::load(text).map_err(SiteRefusal::Invalid)?;
        let mut current = self.doc.lock().await;
        self.apply_locked(&mut current, g, new, Some(text), dry_run)
            .await
    }

    /// An edit of the running site (a console form): `edit` gets the current document and
    /// returns the new one, or its own refusal (field errors) which is handed back untouched.
    /// The site is held from the read to the write, so two edits never undo each other.
    pub async fn edit<E>(
        &self,
        g: &GatewayHandle,
        dry_run: bool,
        edit: impl FnOnce(&SiteDocument) -> Result<SiteDocument, E>,
    ) -> Result<Result<SiteAnswer, SiteRefusal>, E> {
        let mut current = self.doc.lock().await;
        let Some(doc) = current.as_ref() else {
            return Ok(Err(SiteRefusal::NoDocument));
        };
        let new = edit(doc)?;
        Ok(self.apply_locked(&mut current, g, new, None, dry_run).await)
    }

    /// Diffs, plans or applies `new`, and writes it (`text` as posted, comments kept, or the
    /// document rendered) where the site was loaded from.
    async fn apply_locked(
        &self,
        current: &mut Option<SiteDocument>,
        g: &GatewayHandle,
        new: SiteDocument,
        text: Option<&str>,
        dry_run: bool,
    ) -> Result<SiteAnswer, SiteRefusal> {
        let diff = match current.as_ref() {
            Some(old) => match crate::site::diff(old, &new) {
                Ok(d) if d.is_empty() => vec!["no changes".to_owned()],
                Ok(d) => d.changes.iter().map(ToString::to_string).collect(),
                Err(e) => vec![format!("(no diff: {e})")],
            },
            None => vec!["(the running site was given in memory: no diff by field)".to_owned()],
        };
        let site = new.site().clone();
        if dry_run {
            let report = g.plan_site(site).await.map_err(SiteRefusal::Gateway)?;
            return Ok(SiteAnswer {
                dry_run,
                diff,
                report,
                file: "dry run: nothing applied or written".into(),
            });
        }
        let rendered;
        let text = match text {
            Some(t) => t,
            None => {
                rendered = new
                    .to_toml()
                    .map_err(|e| SiteRefusal::Gateway(ApiError::Unavailable(e.to_string())))?;
                &rendered
            }
        };
        let report = g.apply_site(site).await.map_err(SiteRefusal::Gateway)?;
        {
            let listeners =
                (self.listeners.lock()).unwrap_or_else(std::sync::PoisonError::into_inner);
            for f in &listeners.0 {
                f(new.site());
            }
        }
        let file = match &self.path {
            None => "applied in memory only: the gateway runs on a site given in memory (the \
                     embedded demo site), so no file was written"
                .to_owned(),
            Some(path) => match write_site_file(path, text) {
                Ok(prev) => format!(
                    "written to {} (the previous file kept as {})",
                    path.display(),
                    prev.display()
                ),
                Err(e) => {
                    tracing::error!("site applied but not written to {}: {e}", path.display());
                    format!(
                        "applied, but NOT written to {}: {e}; the gateway runs the new site and \
                         will load the old file at its next start",
                        path.display()
                    )
                }
            },
        };
        *current = Some(new);
        Ok(SiteAnswer {
            dry_run,
            diff,
            report,
            file,
        })
    }
}

/// `site.toml` → `site.toml.prev`.
pub fn previous_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".prev");
    path.with_file_name(name)
}

/// Writes `text` to `path` atomically: a temporary file next to it, flushed to disk, then
/// renamed over it (a crash leaves the old file or the new one, never half of one), the
/// directory flushed too. The previous file is kept as `<file>.prev` (returned).
pub fn write_site_file(path: &Path, text: &str) -> std::io::Result<PathBuf> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(path.file_name().unwrap_or_default());
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    let prev = previous_path(path);
    if path.exists() {
        // A hard link keeps the old file under its new name without a moment with no
        // `path`; a copy where links are not possible.
        let _ = std::fs::remove_file(&prev);
        if std::fs::hard_link(path, &prev).is_err() {
            std::fs::copy(path, &prev)?;
        }
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(&dir)?.sync_all()?;
    Ok(prev)
}

#[cfg(test)]
mod tests {
    use super::{field_change, write_site_file};
    use crate::site::SiteDocument;
    use crate::site::plan;

    /// A floor with an RS-485 bus, a Modbus TCP device and a BACnet device.
    const MIXED: &str = r#"
[site]
name = "Mixed floor"
timezone = "Europe/Berlin"

[bacnet]
interface = "127.0.0.1"
port = 0
broadcast = "127.0.0.1"
apdu_timeout = "300ms"

[[buses]]
id = "rs485-1"
serial_port = "/dev/ttyUSB0"
baud = 19200

[[devices]]
id = "lights"
protocol = "modbus-rtu"
bus = "rs485-1"
unit = 1
points = [{ id = "relay", table = "coil", address = 0, type = "bool" }]

[[devices]]
id = "hvac"
protocol = "modbus-tcp"
host = "127.0.0.1"
port = 1502
points = [
  { id = "power", table = "coil", address = 0, type = "bool" },
  { id = "temp", table = "input_register", address = 10, type = "i16", scale = 0.1 },
]

[[devices]]
id = "fcu"
protocol = "bacnet"
instance = 4242
address = "127.0.0.1:47809"
points = [{ id = "power", object = "binary-output:1", access = "read_write", priority = 10 }]

[[rooms]]
id = "r1"
name = "One"
kind = "bookable"
policy = { no_show_after = "5m", off_after = "10m" }
bindings = { light = "lights/relay", hvac_power = "hvac/power" }
"#;

    fn change(edits: &[(&str, &str)]) -> super::FieldChange {
        let mut src = MIXED.to_owned();
        for (from, to) in edits {
            assert!(src.contains(from), "{from} not in the site");
            src = src.replacen(from, to, 1);
        }
        let a = SiteDocument::load(MIXED).expect("loads");
        let b = SiteDocument::load(&src).expect("loads");
        field_change(&plan(a.site(), b.site()), a.site(), b.site())
    }

    fn ids(s: &std::collections::BTreeSet<String>) -> Vec<&str> {
        s.iter().map(String::as_str).collect()
    }

    #[test]
    fn a_point_change_restarts_its_device_only() {
        let c = change(&[(
            "type = \"i16\", scale = 0.1",
            "type = \"i16\", scale = 0.01",
        )]);
        assert_eq!(ids(&c.stop.devices), ["hvac"]);
        assert_eq!(ids(&c.restart.devices), ["hvac"]);
        assert!(c.fresh.is_empty() && c.stop.buses.is_empty() && !c.stop.bacnet_network);
    }

    #[test]
    fn nothing_changes_nothing_and_a_room_change_touches_no_owner() {
        assert!(change(&[]).is_empty());
        let c = change(&[(
            "policy = { no_show_after = \"5m\", off_after = \"10m\"",
            "policy = { no_show_after = \"5m\", off_after = \"12m\"",
        )]);
        assert!(c.is_empty(), "{c:?}");
    }

    #[test]
    fn a_new_device_starts_first_and_a_bus_change_restarts_the_bus() {
        let extra = "\n[[devices]]\nid = \"io\"\nprotocol = \"modbus-tcp\"\nhost = \"10.0.0.9\"\n";
        let a = SiteDocument::load(MIXED).expect("loads");
        let b = SiteDocument::load(&format!("{MIXED}{extra}")).expect("loads");
        let c = field_change(&plan(a.site(), b.site()), a.site(), b.site());
        assert_eq!(ids(&c.fresh.devices), ["io"]);
        assert!(c.stop.is_empty() && c.restart.is_empty());
        let back = field_change(&plan(b.site(), a.site()), b.site(), a.site());
        assert_eq!(ids(&back.stop.devices), ["io"]);
        assert!(back.fresh.is_empty() && back.restart.is_empty());
        let c = change(&[("baud = 19200", "baud = 9600")]);
        assert_eq!(ids(&c.stop.buses), ["rs485-1"]);
        assert_eq!(ids(&c.restart.buses), ["rs485-1"]);
    }

    #[test]
    fn a_bacnet_network_change_restarts_every_bacnet_device_with_it() {
        let c = change(&[("apdu_timeout = \"300ms\"", "apdu_timeout = \"1s\"")]);
        assert!(c.stop.bacnet_network && c.restart.bacnet_network);
        assert_eq!(ids(&c.stop.devices), ids(&c.restart.devices));
        assert!(c.stop.devices.contains("fcu"));
        assert!(c.fresh.is_empty());
    }

    #[test]
    fn the_site_file_is_replaced_whole_and_the_previous_one_kept() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("site.toml");
        std::fs::write(&path, "old").expect("written");
        let prev = write_site_file(&path, "new").expect("replaced");
        assert_eq!(prev, dir.path().join("site.toml.prev"));
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "new");
        assert_eq!(std::fs::read_to_string(&prev).expect("read"), "old");
        write_site_file(&path, "newer").expect("replaced");
        assert_eq!(std::fs::read_to_string(&prev).expect("read"), "new");
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .expect("dir")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(left.is_empty(), "temporary files left: {left:?}");
    }
}
