//! What changes between two versions of a site: a field-by-field [`SiteDiff`] for people to
//! read before applying ("device ahu-1: point supply_temp: scale 0.1 → 0.01"), and the
//! [`ReloadPlan`] that applies it: which devices, buses and rooms restart or are reconfigured,
//! whether the cloud agent restarts, and what (if anything) needs the whole gateway restarted.
//!
//! The diff compares the documents as written (so a template's change is shown once, on the
//! template); the plan compares the validated sites (so it names every room the template
//! reaches, and a scene edited in one place reconfigures exactly the rooms that use it).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use toml::{Table, Value};

use super::export::{ExportError, SiteDocument, key_order, ordered, render_inline};
use super::{Device, DeviceKind, Directory, PointDef, RoomSite, Site};

// ---------------------------------------------------------------------------------------
// The diff
// ---------------------------------------------------------------------------------------

/// The part of a site file a change is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Section {
    Site,
    Cloud,
    Telemetry,
    /// `[defaults.policy]`: the policy every room starts from.
    Defaults,
    Bacnet,
    SerialProfile,
    Bus,
    Device,
    Scene,
    Template,
    Room,
    Person,
}

impl Section {
    /// How the section is named in a sentence.
    pub fn word(self) -> &'static str {
        match self {
            Section::Site => "site",
            Section::Cloud => "cloud",
            Section::Telemetry => "telemetry",
            Section::Defaults => "defaults",
            Section::Bacnet => "bacnet",
            Section::SerialProfile => "serial profile",
            Section::Bus => "bus",
            Section::Device => "device",
            Section::Scene => "scene",
            Section::Template => "template",
            Section::Room => "room",
            Section::Person => "person",
        }
    }
}

/// What happened to the thing a [`Change`] names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeKind {
    Added,
    Removed,
    /// A field's value, `None` where the file leaves it to its default.
    Changed {
        before: Option<String>,
        after: Option<String>,
    },
}

/// One change: an item (or a device's point) added or removed, or one field of it changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub section: Section,
    /// The item's id (device, room, scene name, profile name...); `None` for `[site]`,
    /// `[cloud]`, `[cloud.telemetry]`, `[defaults]` and `[bacnet]`.
    pub item: Option<String>,
    /// The point's id, for a change inside a device's points.
    pub point: Option<String>,
    /// The field's path within the item or point (`scale`, `policy.off_after`); `None` when
    /// the whole item or point was added or removed.
    pub field: Option<String>,
    pub kind: ChangeKind,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.section.word())?;
        if let Some(item) = &self.item {
            write!(f, " {item}")?;
        }
        if let Some(point) = &self.point {
            write!(f, ": point {point}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": {field}")?;
        }
        match &self.kind {
            ChangeKind::Added => f.write_str(" added"),
            ChangeKind::Removed => f.write_str(" removed"),
            ChangeKind::Changed { before, after } => {
                let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "(default)".into());
                write!(f, " {} → {}", show(before), show(after))
            }
        }
    }
}

/// Every change between two site documents, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SiteDiff {
    pub changes: Vec<Change>,
}

impl SiteDiff {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

impl fmt::Display for SiteDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.changes.is_empty() {
            return f.write_str("no changes");
        }
        for (i, c) in self.changes.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

/// The changes from `old` to `new`, as written in their files.
pub fn diff(old: &SiteDocument, new: &SiteDocument) -> Result<SiteDiff, ExportError> {
    let (old, new) = (old.to_table()?, new.to_table()?);
    let mut out = Vec::new();
    let empty = Table::new();
    let table = |t: &Table, key: &str| -> Option<Table> {
        match t.get(key) {
            Some(Value::Table(t)) => Some(t.clone()),
            _ => None,
        }
    };
    // Singletons where "absent" means "all defaults".
    for (key, section) in [
        ("site", Section::Site),
        ("defaults", Section::Defaults),
        ("bacnet", Section::Bacnet),
    ] {
        let (a, b) = (table(&old, key), table(&new, key));
        fields(
            &mut out,
            (section, None, None),
            "",
            key,
            a.as_ref().unwrap_or(&empty),
            b.as_ref().unwrap_or(&empty),
        );
    }
    // The cloud and its telemetry, which are on or off.
    let (mut cloud_a, mut cloud_b) = (table(&old, "cloud"), table(&new, "cloud"));
    let tele_a = cloud_a.as_mut().and_then(|c| c.remove("telemetry"));
    let tele_b = cloud_b.as_mut().and_then(|c| c.remove("telemetry"));
    present(&mut out, Section::Cloud, "cloud", cloud_a, cloud_b);
    let as_table = |v: Option<Value>| match v {
        Some(Value::Table(t)) => Some(t),
        _ => None,
    };
    present(
        &mut out,
        Section::Telemetry,
        "telemetry",
        as_table(tele_a),
        as_table(tele_b),
    );
    // Serial profiles by name.
    let (pa, pb) = (
        table(&old, "serial_profiles").unwrap_or_default(),
        table(&new, "serial_profiles").unwrap_or_default(),
    );
    items(
        &mut out,
        Section::SerialProfile,
        "serial_profiles",
        keyed_map(&pa),
        keyed_map(&pb),
    );
    for (key, id, section) in [
        ("buses", "id", Section::Bus),
        ("devices", "id", Section::Device),
        ("scenes", "name", Section::Scene),
        ("templates", "id", Section::Template),
        ("rooms", "id", Section::Room),
        ("people", "id", Section::Person),
    ] {
        items(
            &mut out,
            section,
            key,
            keyed_list(old.get(key), id),
            keyed_list(new.get(key), id),
        );
    }
    Ok(SiteDiff { changes: out })
}

type Where = (Section, Option<String>, Option<String>);

/// A section that is either there or not (`[cloud]`, `[cloud.telemetry]`).
fn present(out: &mut Vec<Change>, section: Section, key: &str, a: Option<Table>, b: Option<Table>) {
    match (a, b) {
        (None, None) => {}
        (None, Some(_)) => out.push(whole(section, None, ChangeKind::Added)),
        (Some(_), None) => out.push(whole(section, None, ChangeKind::Removed)),
        (Some(a), Some(b)) => fields(out, (section, None, None), "", key, &a, &b),
    }
}

fn whole(section: Section, item: Option<String>, kind: ChangeKind) -> Change {
    Change {
        section,
        item,
        point: None,
        field: None,
        kind,
    }
}

/// The items of a list section by id, in file order.
fn keyed_list(v: Option<&Value>, id: &str) -> Vec<(String, Table)> {
    let Some(Value::Array(items)) = v else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|v| match v {
            Value::Table(t) => {
                let key = match t.get(id) {
                    Some(Value::String(s)) => s.clone(),
                    other => other.map(|v| render_inline(id, v)).unwrap_or_default(),
                };
                Some((key, t.clone()))
            }
            _ => None,
        })
        .collect()
}

fn keyed_map(t: &Table) -> Vec<(String, Table)> {
    t.iter()
        .filter_map(|(k, v)| match v {
            Value::Table(t) => Some((k.clone(), t.clone())),
            _ => None,
        })
        .collect()
}

/// Items matched by id: added, removed, or compared field by field (a device's points too).
fn items(
    out: &mut Vec<Change>,
    section: Section,
    key: &str,
    old: Vec<(String, Table)>,
    new: Vec<(String, Table)>,
) {
    let old_ids: BTreeSet<&String> = old.iter().map(|(id, _)| id).collect();
    let new_ids: BTreeSet<&String> = new.iter().map(|(id, _)| id).collect();
    for (id, b) in &new {
        match old.iter().find(|(o, _)| o == id) {
            None => out.push(whole(section, Some(id.clone()), ChangeKind::Added)),
            Some((_, a)) => {
                let mut a = a.clone();
                let mut b = b.clone();
                let points = if section == Section::Device {
                    Some((a.remove("points"), b.remove("points")))
                } else {
                    None
                };
                fields(out, (section, Some(id.clone()), None), "", key, &a, &b);
                if let Some((pa, pb)) = points {
                    point_changes(out, id, keyed_list(pa.as_ref(), "id"), {
                        keyed_list(pb.as_ref(), "id")
                    });
                }
            }
        }
    }
    for (id, _) in &old {
        if !new_ids.contains(id) && old_ids.contains(id) {
            out.push(whole(section, Some(id.clone()), ChangeKind::Removed));
        }
    }
}

fn point_changes(
    out: &mut Vec<Change>,
    device: &str,
    old: Vec<(String, Table)>,
    new: Vec<(String, Table)>,
) {
    let at = |point: &str| {
        (
            Section::Device,
            Some(device.to_owned()),
            Some(point.to_owned()),
        )
    };
    for (id, b) in &new {
        match old.iter().find(|(o, _)| o == id) {
            None => out.push(Change {
                section: Section::Device,
                item: Some(device.to_owned()),
                point: Some(id.clone()),
                field: None,
                kind: ChangeKind::Added,
            }),
            Some((_, a)) => fields(out, at(id), "", "points", a, b),
        }
    }
    for (id, _) in &old {
        if !new.iter().any(|(n, _)| n == id) {
            out.push(Change {
                section: Section::Device,
                item: Some(device.to_owned()),
                point: Some(id.clone()),
                field: None,
                kind: ChangeKind::Removed,
            });
        }
    }
}

/// Field by field, into sub-tables (`policy.off_after`); lists are compared whole.
fn fields(out: &mut Vec<Change>, at: Where, prefix: &str, key: &str, a: &Table, b: &Table) {
    let mut keys: Vec<&str> = ordered(b, key_order(key))
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    for (k, _) in ordered(a, key_order(key)) {
        if !b.contains_key(k) {
            keys.push(k);
        }
    }
    for k in keys {
        let path = if prefix.is_empty() {
            k.to_owned()
        } else {
            format!("{prefix}.{k}")
        };
        let none = Table::new();
        match (a.get(k), b.get(k)) {
            (Some(Value::Table(x)), Some(Value::Table(y))) => {
                fields(out, at.clone(), &path, k, x, y);
            }
            (Some(Value::Table(x)), None) => fields(out, at.clone(), &path, k, x, &none),
            (None, Some(Value::Table(y))) => fields(out, at.clone(), &path, k, &none, y),
            (x, y) if x != y => out.push(Change {
                section: at.0,
                item: at.1.clone(),
                point: at.2.clone(),
                field: Some(path),
                kind: ChangeKind::Changed {
                    before: x.map(|v| show(k, v)),
                    after: y.map(|v| show(k, v)),
                },
            }),
            _ => {}
        }
    }
}

/// A value for people: strings bare where that is unambiguous.
fn show(key: &str, v: &Value) -> String {
    match v {
        Value::String(s) if !s.is_empty() && !s.contains(char::is_whitespace) => s.clone(),
        other => render_inline(key, other),
    }
}

// ---------------------------------------------------------------------------------------
// The reload plan
// ---------------------------------------------------------------------------------------

/// What happens to one device, bus, room, the BACnet network, the directory or the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadAction {
    /// New: start it.
    Start,
    /// Gone: stop it.
    Stop,
    /// Its connection or what it polls changed: stop it and start it again.
    Restart,
    /// A room (or the directory) takes its new settings without a restart of anything else.
    Reconfigure,
}

impl ReloadAction {
    fn word(self) -> &'static str {
        match self {
            ReloadAction::Start => "start",
            ReloadAction::Stop => "stop",
            ReloadAction::Restart => "restart",
            ReloadAction::Reconfigure => "reconfigure",
        }
    }
}

/// One thing to reload, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reload {
    pub action: ReloadAction,
    pub reasons: Vec<String>,
}

/// How to go from one site to the next without restarting the gateway: each entry names what
/// to start, stop, restart or reconfigure. Modbus RTU devices are restarted through their
/// bus (one task owns a line and all its units); BACnet devices ride on the BACnet network,
/// which restarts them all when its own settings change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadPlan {
    /// Modbus TCP, BACnet and serial devices by id.
    pub devices: BTreeMap<String, Reload>,
    /// RS-485 lines (with their RTU units) by id.
    pub buses: BTreeMap<String, Reload>,
    pub bacnet_network: Option<Reload>,
    pub rooms: BTreeMap<String, Reload>,
    /// The people directory the door readers use.
    pub people: Option<Reload>,
    /// The sync agent (the hub connection and telemetry).
    pub cloud: Option<Reload>,
    /// Why the whole gateway must restart; empty when the parts above suffice.
    pub full_restart: Vec<String>,
}

impl ReloadPlan {
    /// Whether nothing needs reloading (names and other labels may still differ).
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
            && self.buses.is_empty()
            && self.bacnet_network.is_none()
            && self.rooms.is_empty()
            && self.people.is_none()
            && self.cloud.is_none()
            && self.full_restart.is_empty()
    }
}

impl fmt::Display for ReloadPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut lines = Vec::new();
        for why in &self.full_restart {
            lines.push(format!("full restart: {why}"));
        }
        let mut add = |what: String, r: &Reload| {
            lines.push(format!(
                "{} {what}: {}",
                r.action.word(),
                r.reasons.join("; ")
            ));
        };
        if let Some(r) = &self.bacnet_network {
            add("the BACnet network".into(), r);
        }
        for (id, r) in &self.buses {
            add(format!("bus {id}"), r);
        }
        for (id, r) in &self.devices {
            add(format!("device {id}"), r);
        }
        for (id, r) in &self.rooms {
            add(format!("room {id}"), r);
        }
        if let Some(r) = &self.people {
            add("the people directory".into(), r);
        }
        if let Some(r) = &self.cloud {
            add("the cloud agent".into(), r);
        }
        if lines.is_empty() {
            return f.write_str("nothing to reload");
        }
        f.write_str(&lines.join("\n"))
    }
}

/// Adds `reason` to `key`'s entry; a start or stop stays one.
fn note(map: &mut BTreeMap<String, Reload>, key: &str, action: ReloadAction, reason: String) {
    let entry = map.entry(key.to_owned()).or_insert(Reload {
        action,
        reasons: Vec::new(),
    });
    entry.reasons.push(reason);
}

fn note_one(slot: &mut Option<Reload>, action: ReloadAction, reason: String) {
    slot.get_or_insert(Reload {
        action,
        reasons: Vec::new(),
    })
    .reasons
    .push(reason);
}

/// What must be reloaded to go from `old` to `new`.
pub fn plan(old: &Site, new: &Site) -> ReloadPlan {
    let mut p = ReloadPlan::default();
    if old.timezone_name != new.timezone_name {
        p.full_restart.push(format!(
            "the site's time zone changed ({} → {}): every schedule is computed in it",
            old.timezone_name, new.timezone_name
        ));
    }
    plan_buses(&mut p, old, new);
    plan_devices(&mut p, old, new);
    match (&old.bacnet, &new.bacnet) {
        (None, Some(_)) => note_one(
            &mut p.bacnet_network,
            ReloadAction::Start,
            "the site has BACnet devices now".into(),
        ),
        (Some(_), None) => note_one(
            &mut p.bacnet_network,
            ReloadAction::Stop,
            "the site has no BACnet devices any more".into(),
        ),
        (Some(a), Some(b)) if a != b => note_one(
            &mut p.bacnet_network,
            ReloadAction::Restart,
            "network settings changed ([bacnet]); every BACnet device restarts with it".into(),
        ),
        _ => {}
    }
    plan_rooms(&mut p, old, new);
    if let Some(why) = directory_change(&old.people, &new.people) {
        note_one(&mut p.people, ReloadAction::Reconfigure, why);
    }
    match (&old.cloud, &new.cloud) {
        (None, Some(_)) => note_one(&mut p.cloud, ReloadAction::Start, "[cloud] added".into()),
        (Some(_), None) => note_one(&mut p.cloud, ReloadAction::Stop, "[cloud] removed".into()),
        (Some(a), Some(b)) => {
            let mut why = Vec::new();
            if (&a.host, a.port) != (&b.host, b.port) {
                why.push(format!(
                    "broker {}:{} → {}:{}",
                    a.host, a.port, b.host, b.port
                ));
            }
            if a.id != b.id {
                why.push(format!("identity {} → {}", a.id, b.id));
            }
            if a.tls != b.tls {
                why.push("TLS files changed".to_owned());
            }
            if a.telemetry != b.telemetry {
                why.push("telemetry changed".to_owned());
            }
            for w in why {
                note_one(&mut p.cloud, ReloadAction::Restart, w);
            }
        }
        (None, None) => {}
    }
    p
}

fn plan_buses(p: &mut ReloadPlan, old: &Site, new: &Site) {
    for b in &new.buses {
        match old.buses.iter().find(|o| o.id == b.id) {
            None => note(&mut p.buses, &b.id, ReloadAction::Start, "added".into()),
            Some(o) if o.config != b.config => note(
                &mut p.buses,
                &b.id,
                ReloadAction::Restart,
                "line settings changed".into(),
            ),
            Some(_) => {}
        }
    }
    for o in &old.buses {
        if !new.buses.iter().any(|b| b.id == o.id) {
            note(&mut p.buses, &o.id, ReloadAction::Stop, "removed".into());
        }
    }
}

fn rtu_bus(d: &Device) -> Option<&str> {
    match &d.kind {
        DeviceKind::ModbusRtu { bus, .. } => Some(bus),
        _ => None,
    }
}

fn protocol(d: &Device) -> &'static str {
    match d.kind {
        DeviceKind::ModbusTcp { .. } => "modbus-tcp",
        DeviceKind::ModbusRtu { .. } => "modbus-rtu",
        DeviceKind::Bacnet(_) => "bacnet",
        DeviceKind::Serial(_) => "serial",
    }
}

fn plan_devices(p: &mut ReloadPlan, old: &Site, new: &Site) {
    // A device change restarts the device, or for an RTU unit the bus it is on (a new bus
    // stays a start).
    let restart =
        |p: &mut ReloadPlan, d: &Device, action: ReloadAction, why: String| match rtu_bus(d) {
            Some(bus) => note(
                &mut p.buses,
                bus,
                ReloadAction::Restart,
                format!("unit {}: {why}", d.id),
            ),
            None => note(&mut p.devices, &d.id, action, why),
        };
    for d in &new.devices {
        let Some(o) = old.devices.iter().find(|o| o.id == d.id) else {
            restart(p, d, ReloadAction::Start, "added".into());
            continue;
        };
        let why = device_change(o, d);
        if why.is_empty() {
            continue;
        }
        let why = why.join(", ");
        // A unit that leaves a bus (for another bus, or another protocol) is stopped there;
        // a device that was a unit starts on its own.
        let moved = rtu_bus(o).is_some() && rtu_bus(o) != rtu_bus(d);
        if moved {
            restart(p, o, ReloadAction::Stop, format!("moved away: {why}"));
        }
        let action = if moved && rtu_bus(d).is_none() {
            ReloadAction::Start
        } else {
            ReloadAction::Restart
        };
        restart(p, d, action, why);
    }
    for o in &old.devices {
        if !new.devices.iter().any(|d| d.id == o.id) {
            restart(p, o, ReloadAction::Stop, "removed".into());
        }
    }
}

/// Why a device must restart: its address, protocol settings or points; nothing for a name.
fn device_change(o: &Device, d: &Device) -> Vec<String> {
    let mut why = Vec::new();
    if protocol(o) != protocol(d) {
        why.push(format!("protocol {} → {}", protocol(o), protocol(d)));
    } else {
        if o.address() != d.address() {
            why.push(format!("address {} → {}", o.address(), d.address()));
        }
        if settings(o) != settings(d) {
            why.push("protocol settings changed".to_owned());
        }
    }
    let same = |a: &PointDef, b: &PointDef| {
        PointDef {
            name: String::new(),
            ..a.clone()
        } == PointDef {
            name: String::new(),
            ..b.clone()
        }
    };
    let ids = |v: Vec<&str>| v.join(" ");
    let added: Vec<&str> = (d.points.iter())
        .filter(|p| !o.points.iter().any(|q| q.id == p.id))
        .map(|p| p.id.as_str())
        .collect();
    let removed: Vec<&str> = (o.points.iter())
        .filter(|p| !d.points.iter().any(|q| q.id == p.id))
        .map(|p| p.id.as_str())
        .collect();
    let changed: Vec<&str> = (d.points.iter())
        .filter(|p| o.points.iter().any(|q| q.id == p.id && !same(p, q)))
        .map(|p| p.id.as_str())
        .collect();
    if !added.is_empty() {
        why.push(format!("points added: {}", ids(added)));
    }
    if !removed.is_empty() {
        why.push(format!("points removed: {}", ids(removed)));
    }
    if !changed.is_empty() {
        why.push(format!("points changed: {}", ids(changed)));
    }
    why
}

/// The device's protocol settings with its points and address left out.
fn settings(d: &Device) -> DeviceKind {
    let mut kind = d.kind.clone();
    match &mut kind {
        DeviceKind::ModbusTcp { addr, unit, .. } => {
            *addr = std::net::SocketAddr::from(([0, 0, 0, 0], 0));
            *unit = 0;
        }
        DeviceKind::ModbusRtu { bus, unit } => {
            bus.clear();
            unit.points.clear();
            unit.unit = 0;
        }
        DeviceKind::Bacnet(c) => {
            c.instance = 0;
            c.address = drivers::bacnet::DeviceAddress::Discover;
        }
        DeviceKind::Serial(_) => {}
    }
    kind
}

fn plan_rooms(p: &mut ReloadPlan, old: &Site, new: &Site) {
    for r in &new.rooms {
        let id = r.config.id.as_str();
        match old.rooms.iter().find(|o| o.config.id == r.config.id) {
            None => note(&mut p.rooms, id, ReloadAction::Start, "added".into()),
            Some(o) => {
                for why in room_change(o, r) {
                    note(&mut p.rooms, id, ReloadAction::Reconfigure, why);
                }
            }
        }
    }
    for o in &old.rooms {
        if !new.rooms.iter().any(|r| r.config.id == o.config.id) {
            note(
                &mut p.rooms,
                o.config.id.as_str(),
                ReloadAction::Stop,
                "removed".into(),
            );
        }
    }
}

/// What changed in a room's effective settings (its template and scenes resolved).
fn room_change(o: &RoomSite, r: &RoomSite) -> Vec<String> {
    let (a, b) = (&o.config, &r.config);
    let mut why = Vec::new();
    let mut check = |differs: bool, what: &str| {
        if differs {
            why.push(what.to_owned());
        }
    };
    check(a.name != b.name, "name");
    check(a.kind != b.kind, "kind");
    check(o.capacity != r.capacity, "capacity");
    check(a.policy != b.policy, "policy");
    check(a.meeting_scene != b.meeting_scene, "meeting scene");
    check(a.leave_scene != b.leave_scene, "leave scene");
    check(a.walk_in_scene != b.walk_in_scene, "walk-in scene");
    check(a.extra_scenes != b.extra_scenes, "scenes");
    check(a.access != b.access, "access");
    check(a.air != b.air, "air rules");
    let caps: BTreeSet<_> = o.bindings.keys().chain(r.bindings.keys()).collect();
    let moved: Vec<&str> = caps
        .into_iter()
        .filter(|c| o.bindings.get(c) != r.bindings.get(c))
        .map(|c| c.key())
        .collect();
    if !moved.is_empty() {
        why.push(format!("bindings: {}", moved.join(" ")));
    }
    why
}

fn directory_change(a: &Directory, b: &Directory) -> Option<String> {
    if a.people == b.people && a.by_credential == b.by_credential {
        return None;
    }
    let added = (b.people.iter())
        .filter(|p| !a.people.iter().any(|q| q.id == p.id))
        .count();
    let removed = (a.people.iter())
        .filter(|p| !b.people.iter().any(|q| q.id == p.id))
        .count();
    Some(format!(
        "people directory changed ({added} added, {removed} removed, {} in all)",
        b.people.len()
    ))
}

#[cfg(test)]
mod tests {
    use expect_test::expect;

    use super::{ReloadAction, diff, plan};
    use crate::site::SiteDocument;
    use crate::site::export::tests::MIXED;

    fn doc(src: &str) -> SiteDocument {
        SiteDocument::load(src).unwrap_or_else(|e| panic!("loads: {e}"))
    }

    /// The diff and the plan from MIXED to MIXED with `edits` applied.
    fn changes(edits: &[(&str, &str)]) -> (String, String) {
        let mut src = MIXED.to_owned();
        for (from, to) in edits {
            assert!(src.contains(from), "{from} not in the site");
            src = src.replacen(from, to, 1);
        }
        let (a, b) = (doc(MIXED), doc(&src));
        let d = diff(&a, &b).expect("diff").to_string();
        let p = plan(a.site(), b.site()).to_string();
        (d, p)
    }

    #[test]
    fn the_same_site_has_no_changes() {
        let (d, p) = changes(&[]);
        assert_eq!(
            (d.as_str(), p.as_str()),
            ("no changes", "nothing to reload")
        );
    }

    #[test]
    fn a_point_change_restarts_only_its_device() {
        let (d, p) = changes(&[(
            "type = \"i16\", scale = 0.1",
            "type = \"i16\", scale = 0.01",
        )]);
        expect!["device hvac: point temp: scale 0.1 → 0.01"].assert_eq(&d);
        expect!["restart device hvac: points changed: temp"].assert_eq(&p);
    }

    #[test]
    fn points_added_removed_and_device_settings() {
        let (d, p) = changes(&[
            ("port = 1502", "port = 1503\ntimeout = \"2s\""),
            (
                "  { id = \"alarm\", table = \"holding_register\", address = 7, type = \"bool\", bit = 3 },\n",
                "  { id = \"fan\", name = \"Supply fan\", table = \"coil\", address = 1, type = \"bool\" },\n",
            ),
            (
                "name = \"HVAC \\\"north\\\", room 1\"",
                "name = \"HVAC north\"",
            ),
        ]);
        expect![[r#"
            device hvac: name "HVAC \"north\", room 1" → "HVAC north"
            device hvac: port 1502 → 1503
            device hvac: timeout (default) → 2s
            device hvac: point fan added
            device hvac: point alarm removed"#]]
        .assert_eq(&d);
        // The telemetry selects "hvac/*": its points changed too.
        expect![[r#"
            restart device hvac: address 127.0.0.1:1502 unit 1 → 127.0.0.1:1503 unit 1, protocol settings changed, points added: fan, points removed: alarm
            restart the cloud agent: telemetry changed"#]]
        .assert_eq(&p);
    }

    #[test]
    fn a_name_alone_restarts_nothing() {
        let (d, p) = changes(&[(
            "{ id = \"co2\", table = \"input_register\"",
            "{ id = \"co2\", name = \"CO₂\", table = \"input_register\"",
        )]);
        expect!["device hvac: point co2: name (default) → CO₂"].assert_eq(&d);
        expect!["nothing to reload"].assert_eq(&p);
    }

    #[test]
    fn an_rtu_unit_or_line_change_restarts_its_bus() {
        let (d, p) = changes(&[("unit = 1\npoll = \"50ms\"", "unit = 2\npoll = \"50ms\"")]);
        expect!["device lights: unit 1 → 2"].assert_eq(&d);
        expect![
            "restart bus rs485-1: unit lights: address bus rs485-1 unit 1 → bus rs485-1 unit 2"
        ]
        .assert_eq(&p);
        let (d, p) = changes(&[("baud = 19200", "baud = 9600\nparity = \"none\"")]);
        expect![[r#"
            bus rs485-1: baud 19200 → 9600
            bus rs485-1: parity (default) → none"#]]
        .assert_eq(&d);
        expect!["restart bus rs485-1: line settings changed"].assert_eq(&p);
    }

    #[test]
    fn bacnet_network_and_devices() {
        let (d, p) = changes(&[("apdu_timeout = \"300ms\"", "apdu_timeout = \"1s\"")]);
        expect!["bacnet: apdu_timeout 300ms → 1s"].assert_eq(&d);
        expect!["restart the BACnet network: network settings changed ([bacnet]); every BACnet device restarts with it"]
            .assert_eq(&p);
        let (d, p) = changes(&[("priority = 10", "priority = 8")]);
        expect!["device fcu: point power: priority 10 → 8"].assert_eq(&d);
        expect!["restart device fcu: points changed: power"].assert_eq(&p);
    }

    #[test]
    fn a_template_change_reconfigures_the_rooms_that_use_it() {
        let (d, p) = changes(&[(
            "policy = { no_show_after = \"5m\", off_after = \"10m\"",
            "policy = { no_show_after = \"5m\", off_after = \"12m\"",
        )]);
        expect!["template small: policy.off_after 10m → 12m"].assert_eq(&d);
        expect!["reconfigure room r1: policy"].assert_eq(&p);
        let (_, p) = changes(&[(
            "[defaults.policy]\nno_show_after = \"5m\"",
            "[defaults.policy]\nno_show_after = \"7m\"",
        )]);
        expect!["reconfigure room h1: policy"].assert_eq(&p);
    }

    #[test]
    fn scenes_and_bindings_and_rooms() {
        let (d, p) = changes(&[
            ("steps = [{ lights = 40 }", "steps = [{ lights = 60 }"),
            ("bindings = { occupancy = \"pir-serial/occupancy\" }", ""),
            ("kind = \"instant_use\"", "kind = \"closed\""),
            (
                "[[people]]\nid = \"ana@example.com\"\ncredentials = [\"0004512345\"]\n",
                "",
            ),
        ]);
        expect![[r#"
            scene presentation: steps [{ lights = 40 }, { wait = "5s" }, { hvac = "on", mode = "cool", setpoint = 22.0 }] → [{ lights = 60 }, { wait = "5s" }, { hvac = "on", mode = "cool", setpoint = 22.0 }]
            room h1: kind instant_use → closed
            room h1: bindings.occupancy pir-serial/occupancy → (default)
            person ana@example.com removed"#]]
        .assert_eq(&d);
        expect![[r#"
            reconfigure room h1: kind; scenes; bindings: occupancy
            reconfigure room r1: scenes
            reconfigure the people directory: people directory changed (0 added, 1 removed, 1 in all)"#]]
        .assert_eq(&p);
    }

    #[test]
    fn rooms_and_devices_added_and_removed() {
        let extra = "\n[[devices]]\nid = \"io\"\nprotocol = \"modbus-tcp\"\nhost = \"10.0.0.9\"\n\n[[rooms]]\nid = \"r9\"\nname = \"Nine\"\nkind = \"bookable\"\n";
        let a = doc(MIXED);
        let b = doc(&format!("{MIXED}{extra}"));
        let d = diff(&a, &b).expect("diff");
        expect![[r#"
            device io added
            room r9 added"#]]
        .assert_eq(&d.to_string());
        let p = plan(a.site(), b.site());
        assert_eq!(p.devices["io"].action, ReloadAction::Start);
        assert_eq!(p.rooms["r9"].action, ReloadAction::Start);
        let back = plan(b.site(), a.site());
        assert_eq!(back.devices["io"].action, ReloadAction::Stop);
        assert_eq!(back.rooms["r9"].action, ReloadAction::Stop);
        expect![[r#"
            device io removed
            room r9 removed"#]]
        .assert_eq(&diff(&b, &a).expect("diff").to_string());
    }

    #[test]
    fn cloud_telemetry_and_time_zone() {
        let (d, p) = changes(&[
            ("batch = \"5s\"", "batch = \"10s\""),
            ("timezone = \"Europe/Berlin\"", "timezone = \"Europe/Oslo\""),
        ]);
        expect![[r#"
            site: timezone Europe/Berlin → Europe/Oslo
            telemetry: batch 5s → 10s"#]]
        .assert_eq(&d);
        expect![[r#"
            full restart: the site's time zone changed (Europe/Berlin → Europe/Oslo): every schedule is computed in it
            restart the cloud agent: telemetry changed"#]]
        .assert_eq(&p);
        let (d, p) = changes(&[(
            "[cloud.telemetry]\npoints = [\"hvac/*\", \"lights/relay\"]\nbatch = \"5s\"\ndeadband = { \"hvac/co2\" = 20 }\n",
            "",
        )]);
        expect!["telemetry removed"].assert_eq(&d);
        expect!["restart the cloud agent: telemetry changed"].assert_eq(&p);
        let (d, p) = changes(&[(
            "broker = \"127.0.0.1:8883\"",
            "broker = \"hub.example:8883\"",
        )]);
        expect!["cloud: broker 127.0.0.1:8883 → hub.example:8883"].assert_eq(&d);
        expect!["restart the cloud agent: broker 127.0.0.1:8883 → hub.example:8883"].assert_eq(&p);
    }

    #[test]
    fn serial_profiles_restart_the_devices_that_use_them() {
        let (d, p) = changes(&[("match = \"CLEAR\",  point", "match = \"IDLE\", point")]);
        assert!(d.starts_with("serial profile pir-motion: rules "), "{d}");
        expect!["restart device pir-serial: protocol settings changed"].assert_eq(&p);
    }
}
