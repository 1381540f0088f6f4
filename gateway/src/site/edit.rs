//! Typed edits of the site file for the installer console's forms: one function per form (a
//! device, a point, an RS-485 bus, a room, its bindings, its policy, a scene, the site
//! settings), each taking the form as the browser posts it and giving back the new document,
//! or every error next to the field it belongs to.
//!
//! An edit changes the document's wire form (the table [`SiteDocument::to_toml`] writes) and
//! then loads the whole new site through [`SiteDocument::load`], the path every site file
//! takes, so a form obeys exactly the site file's rules and nothing else. Text that cannot be
//! a value at all (a port that is not a number, a missing id, a choice that is not offered) is
//! refused first, by field. The site's own errors are then mapped back: one whose path lies
//! inside the edited object (`devices[ahu1].port`, `rooms[r101].bindings.light`) goes to its
//! field (`port`, `light`); any other (a telemetry pattern elsewhere that the edit left
//! matching nothing) is a message for the whole form, with its path.
//!
//! Field names are the site file's keys inside the edited object (`host`, `port`, `address`,
//! `access.unlock_for`); the exceptions are said where they occur (scene steps, the cloud's
//! host and port). A field that is absent or empty unsets its key (the default applies):
//! a form stands for the whole object. Fields an operation does not know (a CSRF token, the
//! submit button) are ignored. Renaming a device, point, bus or scene renames it where the site
//! refers to it (bindings, `[cloud.telemetry]`, devices on a bus, rooms and templates naming a
//! scene); removing one is refused while something still uses it, listing the users.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use toml::{Table, Value};

use super::csv::{cell, parse_labels};
use super::export::{SiteDocument, render_document};
use super::{Capability, DeviceKind, PointRef, Site, SiteErrors, binding_fits, id_rule, valid_id};

/// A form as the browser posts it: field name → text.
pub type Form = BTreeMap<String, String>;

/// One error to show next to a field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// Why a form was refused: errors by field, and messages for the form as a whole.
#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
pub struct FormErrors {
    pub fields: Vec<FieldError>,
    pub form: Vec<String>,
}

impl FormErrors {
    /// The messages for one field, to show next to it.
    pub fn messages<'a>(&'a self, field: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        (self.fields.iter())
            .filter(move |e| e.field == field)
            .map(|e| e.message.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty() && self.form.is_empty()
    }

    fn on(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.fields.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    fn whole(message: impl Into<String>) -> FormErrors {
        FormErrors {
            fields: Vec::new(),
            form: vec![message.into()],
        }
    }

    /// `Err(self)` when there is anything to say.
    fn check(self) -> Result<(), FormErrors> {
        if self.is_empty() { Ok(()) } else { Err(self) }
    }
}

impl fmt::Display for FormErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fields = self
            .fields
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message));
        let lines: Vec<String> = fields.chain(self.form.iter().cloned()).collect();
        f.write_str(&lines.join("\n"))
    }
}

// ---------------------------------------------------------------------------------------
// What the select boxes offer (the site file's own words)
// ---------------------------------------------------------------------------------------

/// A device's `protocol`.
pub const PROTOCOLS: &[&str] = &["modbus-tcp", "modbus-rtu", "bacnet", "serial"];
/// A Modbus point's `table`.
pub const MODBUS_TABLES: &[&str] = &[
    "coil",
    "discrete_input",
    "input_register",
    "holding_register",
];
/// A Modbus point's `type`.
pub const DATA_TYPES: &[&str] = &[
    "bool", "u16", "i16", "u32", "i32", "f32", "u64", "i64", "f64",
];
/// A Modbus point's `layout` (the 64-bit names are accepted too).
pub const LAYOUTS: &[&str] = &["ABCD", "CDAB", "BADC", "DCBA"];
/// A Modbus point's `word_order` (or give `layout`).
pub const WORD_ORDERS: &[&str] = &["high_first", "low_first"];
/// A point's `access`.
pub const POINT_ACCESS: &[&str] = &["read", "write", "read_write"];
/// A BACnet point's `kind`.
pub const BACNET_KINDS: &[&str] = &["real", "unsigned", "enumerated", "boolean", "binary"];
/// A BACnet device's `address_mode`.
pub const ADDRESS_MODES: &[&str] = &["discover", "directed", "static"];
/// The `parity` of a bus or a serial device.
pub const PARITIES: &[&str] = &["none", "even", "odd"];
/// A room's `kind`.
pub const ROOM_KINDS: &[&str] = &["bookable", "instant_use", "closed"];
/// `hvac_mode` of a policy, `mode` of an hvac step.
pub const HVAC_MODES: &[&str] = &["heat", "cool", "auto", "fan"];
/// A policy's `closed_light`.
pub const CLOSED_LIGHTS: &[&str] = &["red", "off"];
/// What a scene step does: the key it sets, or `wait`.
pub const STEP_ACTIONS: &[&str] = &[
    "lights",
    "sockets",
    "curtains",
    "hvac",
    "projector",
    "screen",
    "ventilation",
    "purifier",
    "fan",
    "wait",
];
/// Scenes that exist without being defined (a site may redefine them).
const BUILT_IN_SCENES: &[&str] = &["meeting", "leave"];

// ---------------------------------------------------------------------------------------
// Fields
// ---------------------------------------------------------------------------------------

/// How a field's text becomes a site-file value.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// As typed (durations and addresses are checked by the site's rules).
    Text,
    Int,
    Float,
    /// `true`/`false`; also `on` (a checked box), `off`, `yes`, `no`.
    Bool,
    Choice(&'static [&'static str]),
    /// `0=off; 1=heat`, as in the CSV point lists.
    Labels,
    /// Comma-separated words.
    List,
}

type Fields = &'static [(&'static str, Kind)];

const DEVICE_FIELDS: Fields = &[
    ("id", Kind::Text),
    ("name", Kind::Text),
    ("protocol", Kind::Choice(PROTOCOLS)),
    ("host", Kind::Text),
    ("port", Kind::Int),
    ("bus", Kind::Text),
    ("unit", Kind::Int),
    ("instance", Kind::Int),
    ("address", Kind::Text),
    ("address_mode", Kind::Choice(ADDRESS_MODES)),
    ("serial_port", Kind::Text),
    ("baud", Kind::Int),
    ("parity", Kind::Choice(PARITIES)),
    ("data_bits", Kind::Int),
    ("stop_bits", Kind::Int),
    ("profile", Kind::Text),
    ("silence_timeout", Kind::Text),
    ("poll", Kind::Text),
    ("timeout", Kind::Text),
    ("retries", Kind::Int),
    ("cov", Kind::Text),
    ("rpm_batch", Kind::Int),
];

const POINT_FIELDS: Fields = &[
    ("id", Kind::Text),
    ("name", Kind::Text),
    ("table", Kind::Choice(MODBUS_TABLES)),
    ("address", Kind::Int),
    ("type", Kind::Choice(DATA_TYPES)),
    ("bit", Kind::Int),
    ("layout", Kind::Text),
    ("word_order", Kind::Choice(WORD_ORDERS)),
    ("scale", Kind::Float),
    ("offset", Kind::Float),
    ("object", Kind::Text),
    ("property", Kind::Text),
    ("kind", Kind::Choice(BACNET_KINDS)),
    ("priority", Kind::Int),
    ("cov", Kind::Bool),
    ("unit", Kind::Text),
    ("access", Kind::Choice(POINT_ACCESS)),
    ("poll", Kind::Text),
    ("labels", Kind::Labels),
];

const BUS_FIELDS: Fields = &[
    ("id", Kind::Text),
    ("serial_port", Kind::Text),
    ("host", Kind::Text),
    ("port", Kind::Int),
    ("baud", Kind::Int),
    ("parity", Kind::Choice(PARITIES)),
    ("data_bits", Kind::Int),
    ("stop_bits", Kind::Int),
];

const ROOM_FIELDS: Fields = &[
    ("id", Kind::Text),
    ("name", Kind::Text),
    ("template", Kind::Text),
    ("capacity", Kind::Int),
    ("kind", Kind::Choice(ROOM_KINDS)),
    ("meeting_scene", Kind::Text),
    ("leave_scene", Kind::Text),
    ("walk_in_scene", Kind::Text),
    ("scenes", Kind::List),
];

/// A room's `access`, as `access.staff_groups` and `access.unlock_for` in the room's form.
const ACCESS_FIELDS: Fields = &[("staff_groups", Kind::List), ("unlock_for", Kind::Text)];

const POLICY_FIELDS: Fields = &[
    ("starting_soon", Kind::Text),
    ("hvac_lead", Kind::Text),
    ("lights_lead", Kind::Text),
    ("checkin_opens", Kind::Text),
    ("checkin_required", Kind::Bool),
    ("checkin_on_presence", Kind::Bool),
    ("no_show_after", Kind::Text),
    ("vacancy_release", Kind::Text),
    ("dim_after", Kind::Text),
    ("dim_level", Kind::Int),
    ("off_after", Kind::Text),
    ("back_to_back_gap", Kind::Text),
    ("hvac_setpoint", Kind::Float),
    ("hvac_mode", Kind::Choice(HVAC_MODES)),
    ("closed_light", Kind::Choice(CLOSED_LIGHTS)),
    ("override_hold", Kind::Text),
    ("walk_in_confirm", Kind::Text),
    ("checkin_by_card", Kind::Bool),
    ("checkin_pin", Kind::Bool),
];

const SITE_FIELDS: Fields = &[("name", Kind::Text), ("timezone", Kind::Text)];

/// `[cloud]` keys the settings form sets as they are (`broker` is split into host and port).
const CLOUD_FIELDS: Fields = &[
    ("site", Kind::Text),
    ("gateway", Kind::Text),
    ("ca", Kind::Text),
    ("cert", Kind::Text),
    ("key", Kind::Text),
];

/// A field's text, trimmed; `None` when absent or empty.
fn text<'a>(form: &'a Form, field: &str) -> Option<&'a str> {
    form.get(field).map(|s| s.trim()).filter(|s| !s.is_empty())
}

fn parse(kind: Kind, text: &str) -> Result<Value, String> {
    match kind {
        Kind::Text => Ok(Value::String(text.to_owned())),
        Kind::Int => text
            .parse::<i64>()
            .map(Value::Integer)
            .map_err(|_| format!("'{text}' is not a whole number")),
        Kind::Float => text
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(Value::Float)
            .ok_or_else(|| format!("'{text}' is not a number")),
        Kind::Bool => match text.to_ascii_lowercase().as_str() {
            "true" | "on" | "yes" => Ok(Value::Boolean(true)),
            "false" | "off" | "no" => Ok(Value::Boolean(false)),
            _ => Err(format!("'{text}': write true or false")),
        },
        Kind::Choice(options) => match options.iter().find(|o| **o == text) {
            Some(o) => Ok(Value::String((*o).to_owned())),
            None => Err(format!("'{text}' is not one of {}", options.join(", "))),
        },
        Kind::Labels => parse_labels(text).map(Value::Table),
        Kind::List => Ok(Value::Array(
            (text.split(','))
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_owned()))
                .collect(),
        )),
    }
}

/// Sets `table`'s `fields` from the form's `{prefix}{key}` fields: text is parsed by the
/// field's kind and set, an empty or absent field unsets the key. Parse errors go to `errors`.
fn apply(table: &mut Table, form: &Form, fields: Fields, prefix: &str, errors: &mut FormErrors) {
    for (key, kind) in fields {
        let field = format!("{prefix}{key}");
        match text(form, &field) {
            None => {
                table.remove(*key);
            }
            Some(t) => match parse(*kind, t) {
                Ok(v) => {
                    table.insert((*key).to_owned(), v);
                }
                Err(message) => errors.on(field, message),
            },
        }
    }
}

/// The form fields of `table`'s `fields` as `{prefix}{key}`, written as [`apply`] reads them.
fn fill(form: &mut Form, table: &Table, fields: Fields, prefix: &str) {
    for (key, _) in fields {
        if let Some(v) = table.get(*key) {
            form.insert(format!("{prefix}{key}"), show(key, v));
        }
    }
}

fn show(key: &str, v: &Value) -> String {
    match v {
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(|i| show(key, i)).collect();
            parts.join(", ")
        }
        other => cell(key, other),
    }
}

/// The id a form gives its object (field `field`), checked as the site file checks ids.
fn form_id(form: &Form, field: &str, what: &str, errors: &mut FormErrors) -> Option<String> {
    match text(form, field) {
        None => {
            errors.on(field, format!("a {what} needs an id"));
            None
        }
        Some(id) if !valid_id(id) => {
            errors.on(field, id_rule(id));
            None
        }
        Some(id) => Some(id.to_owned()),
    }
}

// ---------------------------------------------------------------------------------------
// The wire form
// ---------------------------------------------------------------------------------------

fn wire(doc: &SiteDocument) -> Result<Table, FormErrors> {
    doc.to_table().map_err(|e| FormErrors::whole(e.to_string()))
}

/// The list of tables under `key` (`devices`, `rooms`, ...), empty when there is none.
fn entries<'a>(table: &'a Table, key: &str) -> &'a [Value] {
    table
        .get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn entries_mut<'a>(table: &'a mut Table, key: &str) -> &'a mut Vec<Value> {
    let v = table
        .entry(key.to_owned())
        .or_insert_with(|| Value::Array(Vec::new()));
    if !v.is_array() {
        *v = Value::Array(Vec::new());
    }
    match v {
        Value::Array(items) => items,
        _ => unreachable!("made an array above"),
    }
}

fn table_mut<'a>(table: &'a mut Table, key: &str) -> &'a mut Table {
    let v = table
        .entry(key.to_owned())
        .or_insert_with(|| Value::Table(Table::new()));
    if !v.is_table() {
        *v = Value::Table(Table::new());
    }
    match v {
        Value::Table(t) => t,
        _ => unreachable!("made a table above"),
    }
}

/// Removes `key` when it holds an empty list or table (the site file leaves those out).
fn drop_empty(table: &mut Table, key: &str) {
    let empty = match table.get(key) {
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::Table(t)) => t.is_empty(),
        _ => false,
    };
    if empty {
        table.remove(key);
    }
}

fn str_at<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// The index of the entry whose `key` is `id`.
fn find(list: &[Value], key: &str, id: &str) -> Option<usize> {
    list.iter().position(|v| str_at(v, key) == Some(id))
}

/// The index of the entry of `list` named `id`, or a form error saying there is none.
fn locate(list: &[Value], key: &str, id: &str, what: &str) -> Result<usize, FormErrors> {
    find(list, key, id).ok_or_else(|| FormErrors::whole(format!("there is no {what} '{id}'")))
}

/// [`locate`] for an edit of `original`; `None` for an object being added.
fn existing(
    list: &[Value],
    key: &str,
    original: Option<&str>,
    what: &str,
) -> Result<Option<usize>, FormErrors> {
    original.map(|o| locate(list, key, o, what)).transpose()
}

/// Loads the edited wire form as a whole site; errors inside `prefix` go to the field
/// `field(path below prefix)` gives, the rest to the form.
fn validate(
    wire: &Table,
    prefix: &str,
    field: impl Fn(&str) -> Option<String>,
) -> Result<SiteDocument, FormErrors> {
    SiteDocument::load(&render_document(wire)).map_err(|e| map_errors(&e, prefix, field))
}

fn map_errors(
    errors: &SiteErrors,
    prefix: &str,
    field: impl Fn(&str) -> Option<String>,
) -> FormErrors {
    let mut out = FormErrors::default();
    for e in &errors.0 {
        let below = if prefix.is_empty() {
            Some(e.path.as_str())
        } else {
            e.path
                .strip_prefix(prefix)
                .and_then(|r| r.strip_prefix('.'))
        };
        match below.and_then(&field) {
            Some(f) => out.on(f, e.message.clone()),
            // The object's own errors read well alone; others need their place.
            None if e.path.is_empty() || e.path == prefix => out.form.push(e.message.clone()),
            None => out.form.push(format!("{}: {}", e.path, e.message)),
        }
    }
    out
}

/// Paths below the object that are fields of the form, as they are.
fn one_of(fields: Fields) -> impl Fn(&str) -> Option<String> {
    move |below| {
        fields
            .iter()
            .any(|(k, _)| *k == below)
            .then(|| below.to_owned())
    }
}

/// Rewrites references to points, `device/point`, in room bindings and `[cloud.telemetry]`
/// (patterns and deadband keys): `rename(device, point)` gives the new reference, or `None`.
fn rename_point_refs(wire: &mut Table, rename: &dyn Fn(&str, &str) -> Option<String>) {
    let renamed = |v: &str| v.split_once('/').and_then(|(d, p)| rename(d, p));
    if let Some(Value::Array(rooms)) = wire.get_mut("rooms") {
        for room in rooms {
            if let Some(Value::Table(bindings)) = room.get_mut("bindings") {
                for (_, target) in bindings.iter_mut() {
                    if let Some(new) = target.as_str().and_then(renamed) {
                        *target = Value::String(new);
                    }
                }
            }
        }
    }
    let Some(Value::Table(telemetry)) = wire.get_mut("cloud").and_then(|c| c.get_mut("telemetry"))
    else {
        return;
    };
    if let Some(Value::Array(points)) = telemetry.get_mut("points") {
        for p in points {
            if let Some(new) = p.as_str().and_then(renamed) {
                *p = Value::String(new);
            }
        }
    }
    if let Some(Value::Table(deadband)) = telemetry.get_mut("deadband") {
        let keys: Vec<String> = deadband.keys().cloned().collect();
        for k in keys {
            if let Some(new) = renamed(&k)
                && let Some(v) = deadband.remove(&k)
            {
                deadband.insert(new, v);
            }
        }
    }
}

/// What refers to a device's points (or to one point): room bindings, and telemetry patterns
/// that name the device (and the point) without a wildcard.
fn point_users(doc: &SiteDocument, wire: &Table, device: &str, point: Option<&str>) -> Vec<String> {
    let hits = |r: &PointRef| r.device == device && point.is_none_or(|p| r.point == p);
    let mut users = Vec::new();
    for room in &doc.site().rooms {
        for (cap, r) in room.bindings.iter().filter(|(_, r)| hits(r)) {
            users.push(format!(
                "room {} ({}) binds {} to {r}",
                room.config.id.as_str(),
                room.config.name,
                cap.key()
            ));
        }
    }
    let names = |pattern: &str| {
        pattern
            .split_once('/')
            .is_some_and(|(d, p)| d == device && point.is_none_or(|pt| p == pt && !p.contains('*')))
    };
    let telemetry = wire.get("cloud").and_then(|c| c.get("telemetry"));
    let patterns = telemetry.map_or(&[][..], |t| entries_in(t, "points"));
    for p in patterns
        .iter()
        .filter_map(Value::as_str)
        .filter(|p| names(p))
    {
        users.push(format!("[cloud.telemetry] points include \"{p}\""));
    }
    if let Some(Value::Table(deadband)) = telemetry.and_then(|t| t.get("deadband")) {
        for p in deadband.keys().filter(|p| names(p)) {
            users.push(format!("[cloud.telemetry] deadband names \"{p}\""));
        }
    }
    users
}

fn entries_in<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// A refusal: what is in use, then each user.
fn in_use(what: String, users: Vec<String>) -> FormErrors {
    FormErrors {
        fields: Vec::new(),
        form: std::iter::once(format!("{what} is still in use:"))
            .chain(users)
            .collect(),
    }
}

// ---------------------------------------------------------------------------------------
// Devices
// ---------------------------------------------------------------------------------------

/// Keys a device of `protocol` cannot do without.
fn required_device_keys(protocol: &str) -> &'static [&'static str] {
    match protocol {
        "modbus-tcp" => &["host"],
        "modbus-rtu" => &["bus", "unit"],
        "bacnet" => &["instance"],
        "serial" => &["serial_port", "profile"],
        _ => &[],
    }
}

/// A device's form: `id`, `name`, `protocol`, then its protocol's keys (`host`, `port`,
/// `unit`; `bus`, `unit`, `retries`; `instance`, `address`, `address_mode`, `cov`,
/// `rpm_batch`; `serial_port`, `baud`, `parity`, `data_bits`, `stop_bits`, `profile`,
/// `silence_timeout`) and `poll`, `timeout`.
pub fn device_form(doc: &SiteDocument, id: &str) -> Result<Form, FormErrors> {
    let wire = wire(doc)?;
    let devices = entries(&wire, "devices");
    let i = locate(devices, "id", id, "device")?;
    let mut form = Form::new();
    if let Some(t) = devices.get(i).and_then(Value::as_table) {
        fill(&mut form, t, DEVICE_FIELDS, "");
    }
    Ok(form)
}

/// Adds a device (`original` `None`) or changes the device `original`, keeping its points.
/// A new id renames the device in bindings and telemetry patterns too.
pub fn upsert_device(
    doc: &SiteDocument,
    original: Option<&str>,
    form: &Form,
) -> Result<SiteDocument, FormErrors> {
    let mut wire = wire(doc)?;
    let devices = entries(&wire, "devices");
    let index = existing(devices, "id", original, "device")?;
    let mut errors = FormErrors::default();
    let id = form_id(form, "id", "device", &mut errors);
    if let Some(id) = &id
        && original != Some(id.as_str())
        && find(devices, "id", id).is_some()
    {
        errors.on("id", format!("there is already a device '{id}'"));
    }
    let mut entry = index
        .and_then(|i| devices[i].as_table().cloned())
        .unwrap_or_default();
    apply(&mut entry, form, DEVICE_FIELDS, "", &mut errors);
    match entry.get("protocol").and_then(Value::as_str) {
        Some(protocol) => {
            for key in required_device_keys(protocol) {
                if !entry.contains_key(*key) && errors.messages(key).next().is_none() {
                    errors.on(*key, format!("a {protocol} device needs `{key}`"));
                }
            }
        }
        None if errors.messages("protocol").next().is_none() => {
            errors.on(
                "protocol",
                format!("choose one of {}", PROTOCOLS.join(", ")),
            );
        }
        None => {}
    }
    // The bus check would name the bus; the installer is looking at the unit.
    if entry.get("protocol").and_then(Value::as_str) == Some("modbus-rtu")
        && let (Some(bus), Some(unit)) = (
            entry.get("bus").and_then(Value::as_str),
            entry.get("unit").and_then(Value::as_integer),
        )
    {
        let clash = devices.iter().enumerate().find(|(i, d)| {
            Some(*i) != index
                && str_at(d, "protocol") == Some("modbus-rtu")
                && str_at(d, "bus") == Some(bus)
                && d.get("unit").and_then(Value::as_integer) == Some(unit)
        });
        if let Some((_, other)) = clash {
            errors.on(
                "unit",
                format!(
                    "unit {unit} on bus '{bus}' is already device '{}'",
                    str_at(other, "id").unwrap_or("?")
                ),
            );
        }
    }
    errors.check()?;
    let Some(id) = id else {
        return Err(FormErrors::whole("a device needs an id"));
    };
    if let Some(old) = original.filter(|o| *o != id) {
        rename_point_refs(&mut wire, &|d, p| (d == old).then(|| format!("{id}/{p}")));
    }
    let devices = entries_mut(&mut wire, "devices");
    match index {
        Some(i) => devices[i] = Value::Table(entry),
        None => devices.push(Value::Table(entry)),
    }
    validate(&wire, &format!("devices[{id}]"), one_of(DEVICE_FIELDS))
}

/// Removes a device; refused while a room binding or `[cloud.telemetry]` names its points.
pub fn remove_device(doc: &SiteDocument, id: &str) -> Result<SiteDocument, FormErrors> {
    let mut wire = wire(doc)?;
    let index = locate(entries(&wire, "devices"), "id", id, "device")?;
    let users = point_users(doc, &wire, id, None);
    if !users.is_empty() {
        return Err(in_use(format!("device '{id}'"), users));
    }
    entries_mut(&mut wire, "devices").remove(index);
    drop_empty(&mut wire, "devices");
    validate(&wire, &format!("devices[{id}]"), |_| None)
}

// ---------------------------------------------------------------------------------------
// Points
// ---------------------------------------------------------------------------------------

/// The device's table in the wire form and its index, or why it takes no point list.
fn point_device(wire: &Table, device: &str) -> Result<usize, FormErrors> {
    let devices = entries(wire, "devices");
    let i = locate(devices, "id", device, "device")?;
    if devices.get(i).and_then(|d| str_at(d, "protocol")) == Some("serial") {
        return Err(FormErrors::whole(format!(
            "device '{device}' is a serial device: its points come from its profile"
        )));
    }
    Ok(i)
}

/// A point's form: the site file's point keys (the CSV columns): Modbus `id`, `name`,
/// `table`, `address`, `type`, `bit`, `layout`, `word_order`, `scale`, `offset`, `unit`,
/// `access`, `poll`, `labels` (`0=off; 1=heat`); BACnet `object`, `property`, `kind`,
/// `priority`, `cov` instead of the register keys.
pub fn point_form(doc: &SiteDocument, device: &str, point: &str) -> Result<Form, FormErrors> {
    let wire = wire(doc)?;
    let d = point_device(&wire, device)?;
    let points = entries(&wire, "devices")
        .get(d)
        .map_or(&[][..], |d| entries_in(d, "points"));
    let i = locate(
        points,
        "id",
        point,
        &format!("point of device '{device}' named"),
    )?;
    let mut form = Form::new();
    if let Some(t) = points.get(i).and_then(Value::as_table) {
        fill(&mut form, t, POINT_FIELDS, "");
    }
    Ok(form)
}

/// Adds a point to `device` (`original` `None`) or changes its point `original`. A new id
/// renames the point in bindings and telemetry patterns too.
pub fn upsert_point(
    doc: &SiteDocument,
    device: &str,
    original: Option<&str>,
    form: &Form,
) -> Result<SiteDocument, FormErrors> {
    let mut wire = wire(doc)?;
    let d = point_device(&wire, device)?;
    let dev = &entries(&wire, "devices")[d];
    let bacnet = str_at(dev, "protocol") == Some("bacnet");
    let points = entries_in(dev, "points");
    let index = existing(
        points,
        "id",
        original,
        &format!("point of device '{device}' named"),
    )?;
    let mut errors = FormErrors::default();
    let id = form_id(form, "id", "point", &mut errors);
    if let Some(id) = &id
        && original != Some(id.as_str())
        && find(points, "id", id).is_some()
    {
        errors.on(
            "id",
            format!("device '{device}' already has a point '{id}'"),
        );
    }
    let mut entry = index
        .and_then(|i| points[i].as_table().cloned())
        .unwrap_or_default();
    apply(&mut entry, form, POINT_FIELDS, "", &mut errors);
    let required: &[&str] = if bacnet {
        &["object"]
    } else {
        &["table", "address", "type"]
    };
    for key in required {
        if !entry.contains_key(*key) && errors.messages(key).next().is_none() {
            let what = if bacnet { "BACnet" } else { "Modbus" };
            errors.on(*key, format!("a {what} point needs `{key}`"));
        }
    }
    errors.check()?;
    let Some(id) = id else {
        return Err(FormErrors::whole("a point needs an id"));
    };
    if let Some(old) = original.filter(|o| *o != id) {
        rename_point_refs(&mut wire, &|dv, p| {
            (dv == device && p == old).then(|| format!("{device}/{id}"))
        });
    }
    let dev = &mut entries_mut(&mut wire, "devices")[d];
    if let Value::Table(dev) = dev {
        let points = entries_mut(dev, "points");
        match index {
            Some(i) => points[i] = Value::Table(entry),
            None => points.push(Value::Table(entry)),
        }
    }
    validate(
        &wire,
        &format!("devices[{device}].points[{id}]"),
        one_of(POINT_FIELDS),
    )
}

/// Removes a point; refused while a room binding or `[cloud.telemetry]` names it.
pub fn remove_point(
    doc: &SiteDocument,
    device: &str,
    point: &str,
) -> Result<SiteDocument, FormErrors> {
    let mut wire = wire(doc)?;
    let d = point_device(&wire, device)?;
    let points = entries(&wire, "devices")
        .get(d)
        .map_or(&[][..], |d| entries_in(d, "points"));
    let i = locate(
        points,
        "id",
        point,
        &format!("point of device '{device}' named"),
    )?;
    let users = point_users(doc, &wire, device, Some(point));
    if !users.is_empty() {
        return Err(in_use(format!("point '{device}/{point}'"), users));
    }
    if let Value::Table(dev) = &mut entries_mut(&mut wire, "devices")[d] {
        entries_mut(dev, "points").remove(i);
        drop_empty(dev, "points");
    }
    validate(&wire, &format!("devices[{device}].points[{point}]"), |_| {
        None
    })
}

// ---------------------------------------------------------------------------------------
// Buses
// ---------------------------------------------------------------------------------------

/// An RS-485 bus's form: `id`, `serial_port` (a local adapter) or `host` and `port` (a serial
/// server), `baud`, `parity`, `data_bits`, `stop_bits`.
pub fn bus_form(doc: &SiteDocument, id: &str) -> Result<Form, FormErrors> {
    let wire = wire(doc)?;
    let buses = entries(&wire, "buses");
    let i = locate(buses, "id", id, "bus")?;
    let mut form = Form::new();
    if let Some(t) = buses.get(i).and_then(Value::as_table) {
        fill(&mut form, t, BUS_FIELDS, "");
    }
    Ok(form)
}

/// Adds a bus (`original` `None`) or changes the bus `original`; a new id moves its units.
pub fn upsert_bus(
    doc: &SiteDocument,
    original: Option<&str>,
    form: &Form,
) -> Result<SiteDocument, FormErrors> {
    let mut wire = wire(doc)?;
    let buses = entries(&wire, "buses");
    let index = existing(buses, "id", original, "bus")?;
    let mut errors = FormErrors::default();
    let id = form_id(form, "id", "bus", &mut errors);
    if let Some(id) = &id
        && original != Some(id.as_str())
        && find(buses, "id", id).is_some()
    {
        errors.on("id", format!("there is already a bus '{id}'"));
    }
    let mut entry = index
        .and_then(|i| buses[i].as_table().cloned())
        .unwrap_or_default();
    apply(&mut entry, form, BUS_FIELDS, "", &mut errors);
    match (
        entry.contains_key("serial_port"),
        entry.contains_key("host"),
    ) {
        (false, false) => errors.on(
            "serial_port",
            "give the RS-485 adapter's serial port, or the host of a serial server",
        ),
        (true, true) => errors.on(
            "host",
            "a bus is a local serial port or a serial server, not both",
        ),
        _ => {}
    }
    errors.check()?;
    let Some(id) = id else {
        return Err(FormErrors::whole("a bus needs an id"));
    };
    if let Some(old) = original.filter(|o| *o != id) {
        for d in entries_mut(&mut wire, "devices") {
            if str_at(d, "bus") == Some(old)
                && let Value::Table(d) = d
            {
                d.insert("bus".into(), Value::String(id.clone()));
            }
        }
    }
    let buses = entries_mut(&mut wire, "buses");
    match index {
        Some(i) => buses[i] = Value::Table(entry),
        None => buses.push(Value::Table(entry)),
    }
    validate(&wire, &format!("buses[{id}]"), one_of(BUS_FIELDS))
}

/// Removes a bus; refused while devices are units on it.
pub fn remove_bus(doc: &SiteDocument, id: &str) -> Result<SiteDocument, FormErrors> {
    let mut wire = wire(doc)?;
    let index = locate(entries(&wire, "buses"), "id", id, "bus")?;
    let users: Vec<String> = entries(&wire, "devices")
        .iter()
        .filter(|d| str_at(d, "bus") == Some(id))
        .map(|d| format!("device {} is a unit on it", str_at(d, "id").unwrap_or("?")))
        .collect();
    if !users.is_empty() {
        return Err(in_use(format!("bus '{id}'"), users));
    }
    entries_mut(&mut wire, "buses").remove(index);
    drop_empty(&mut wire, "buses");
    validate(&wire, &format!("buses[{id}]"), |_| None)
}

// ---------------------------------------------------------------------------------------
// Rooms: the room, its bindings, its policy
// ---------------------------------------------------------------------------------------

fn room_index(wire: &Table, room: &str) -> Result<usize, FormErrors> {
    locate(entries(wire, "rooms"), "id", room, "room")
}

fn room_table(wire: &mut Table, i: usize) -> Option<&mut Table> {
    entries_mut(wire, "rooms")
        .get_mut(i)
        .and_then(Value::as_table_mut)
}

/// A room's form: `id`, `name`, `template`, `capacity`, `kind`, `meeting_scene`,
/// `leave_scene`, `walk_in_scene`, `scenes` (comma-separated; empty: every site scene),
/// `access.staff_groups` (comma-separated) and `access.unlock_for`. Bindings, policy and air
/// rules have their own forms and are kept.
pub fn room_form(doc: &SiteDocument, id: &str) -> Result<Form, FormErrors> {
    let wire = wire(doc)?;
    let i = room_index(&wire, id)?;
    let mut form = Form::new();
    if let Some(t) = entries(&wire, "rooms").get(i).and_then(Value::as_table) {
        fill(&mut form, t, ROOM_FIELDS, "");
        if let Some(Value::Table(access)) = t.get("access") {
            fill(&mut form, access, ACCESS_FIELDS, "access.");
        }
    }
    Ok(form)
}

/// Adds a room (`original` `None`) or changes the room `original`. (A room's id is what its
/// bookings are kept under: a new id is a new room to the running gateway.)
pub fn upsert_room(
    doc: &SiteDocument,
    original: Option<&str>,
    form: &Form,
) -> Result<SiteDocument, FormErrors> {
    let mut wire = wire(doc)?;
    let rooms = entries(&wire, "rooms");
    let index = existing(rooms, "id", original, "room")?;
    let mut errors = FormErrors::default();
    let id = form_id(form, "id", "room", &mut errors);
    if let Some(id) = &id
        && original != Some(id.as_str())
        && find(rooms, "id", id).is_some()
    {
        errors.on("id", format!("there is already a room '{id}'"));
    }
    let mut entry = index
        .and_then(|i| rooms[i].as_table().cloned())
        .unwrap_or_default();
    apply(&mut entry, form, ROOM_FIELDS, "", &mut errors);
    if !entry.contains_key("name") {
        errors.on("name", "a room needs a name (the panels show it)");
    }
    if !entry.contains_key("kind") && errors.messages("kind").next().is_none() {
        errors.on("kind", format!("choose one of {}", ROOM_KINDS.join(", ")));
    }
    if let Some(c) = entry.get("capacity").and_then(Value::as_integer)
        && u32::try_from(c).is_err()
    {
        errors.on(
            "capacity",
            format!("capacity {c} is not a number of people"),
        );
    }
    let had_access = entry.get("access").cloned();
    let mut access = match &had_access {
        Some(Value::Table(t)) => t.clone(),
        _ => Table::new(),
    };
    apply(&mut access, form, ACCESS_FIELDS, "access.", &mut errors);
    if !access.is_empty() {
        entry.insert("access".into(), Value::Table(access));
    } else if !matches!(&had_access, Some(Value::Table(t)) if t.is_empty()) {
        // Nothing given: the template's access applies (an explicit `access = {}` is kept).
        entry.remove("access");
    }
    errors.check()?;
    let Some(id) = id else {
        return Err(FormErrors::whole("a room needs an id"));
    };
    let rooms = entries_mut(&mut wire, "rooms");
    match index {
        Some(i) => rooms[i] = Value::Table(entry),
        None => rooms.push(Value::Table(entry)),
    }
    let fields = |below: &str| {
        let access = below
            .strip_prefix("access.")
            .is_some_and(|k| ACCESS_FIELDS.iter().any(|(f, _)| *f == k));
        one_of(ROOM_FIELDS)(below).or_else(|| access.then(|| below.to_owned()))
    };
    validate(&wire, &format!("rooms[{id}]"), fields)
}

/// Removes a room. (Its bookings stay in the gateway's store, as for any room a reload removes.)
pub fn remove_room(doc: &SiteDocument, id: &str) -> Result<SiteDocument, FormErrors> {
    let mut wire = wire(doc)?;
    let i = room_index(&wire, id)?;
    entries_mut(&mut wire, "rooms").remove(i);
    drop_empty(&mut wire, "rooms");
    validate(&wire, &format!("rooms[{id}]"), |_| None)
}

/// A room's bindings form: each capability's key (`light`, `occupancy`, ..., `reader`) with
/// its point as `device/point`.
pub fn bindings_form(doc: &SiteDocument, room: &str) -> Result<Form, FormErrors> {
    let wire = wire(doc)?;
    let i = room_index(&wire, room)?;
    let mut form = Form::new();
    if let Some(Value::Table(b)) = entries(&wire, "rooms")
        .get(i)
        .and_then(|r| r.get("bindings"))
    {
        for (cap, target) in b {
            if let Some(t) = target.as_str() {
                form.insert(cap.clone(), t.to_owned());
            }
        }
    }
    Ok(form)
}

/// Binds a room's capabilities: each capability key in the form (`light`, ...) to the point
/// `device/point` it names, or unbound when empty. Capabilities the form leaves out stay as
/// they are. Errors are on the capability's field.
pub fn set_bindings(
    doc: &SiteDocument,
    room: &str,
    form: &Form,
) -> Result<SiteDocument, FormErrors> {
    let mut wire = wire(doc)?;
    let i = room_index(&wire, room)?;
    if let Some(entry) = room_table(&mut wire, i) {
        let bindings = table_mut(entry, "bindings");
        for cap in Capability::ALL {
            let key = cap.key();
            if !form.contains_key(key) {
                continue;
            }
            match text(form, key) {
                Some(target) => bindings.insert(key.to_owned(), Value::String(target.to_owned())),
                None => bindings.remove(key),
            };
        }
        drop_empty(entry, "bindings");
    }
    validate(&wire, &format!("rooms[{room}].bindings"), |below| {
        Capability::from_key(below).map(|c| c.key().to_owned())
    })
}

fn policy_fill(policy: Option<&Value>) -> Form {
    let mut form = Form::new();
    if let Some(Value::Table(p)) = policy {
        fill(&mut form, p, POLICY_FIELDS, "");
    }
    form
}

/// How a form shows one of its fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldInput {
    /// Free text (durations such as `10m`, addresses).
    Text,
    /// A number.
    Number,
    /// `true` or `false`.
    YesNo,
    /// One of these words.
    Choice(&'static [&'static str]),
}

impl From<Kind> for FieldInput {
    fn from(k: Kind) -> FieldInput {
        match k {
            Kind::Text | Kind::Labels | Kind::List => FieldInput::Text,
            Kind::Int | Kind::Float => FieldInput::Number,
            Kind::Bool => FieldInput::YesNo,
            Kind::Choice(options) => FieldInput::Choice(options),
        }
    }
}

/// The fields of a policy form ([`policy_form`], [`set_policy`]) in the site file's order,
/// with how each is entered, so a page can draw the form without repeating the list.
pub fn policy_fields() -> Vec<(&'static str, FieldInput)> {
    (POLICY_FIELDS.iter())
        .map(|(key, kind)| (*key, FieldInput::from(*kind)))
        .collect()
}

/// A room's own policy form: the policy keys it sets (`no_show_after`, `off_after`, ...);
/// the others come from its template and the site defaults.
pub fn policy_form(doc: &SiteDocument, room: &str) -> Result<Form, FormErrors> {
    let wire = wire(doc)?;
    let i = room_index(&wire, room)?;
    Ok(policy_fill(
        entries(&wire, "rooms").get(i).and_then(|r| r.get("policy")),
    ))
}

/// The site defaults' policy form (`[defaults.policy]`).
pub fn default_policy_form(doc: &SiteDocument) -> Result<Form, FormErrors> {
    let wire = wire(doc)?;
    Ok(policy_fill(
        wire.get("defaults").and_then(|d| d.get("policy")),
    ))
}

/// Sets a room's own policy: each policy key with text is set, an empty one inherits from
/// the room's template and the site defaults. Durations as `"90s"`, `"10m"`; yes/no keys as
/// `true`/`false`.
pub fn set_policy(doc: &SiteDocument, room: &str, form: &Form) -> Result<SiteDocument, FormErrors> {
    let mut wire = wire(doc)?;
    let i = room_index(&wire, room)?;
    let mut errors = FormErrors::default();
    if let Some(entry) = room_table(&mut wire, i) {
        apply(
            table_mut(entry, "policy"),
            form,
            POLICY_FIELDS,
            "",
            &mut errors,
        );
        drop_empty(entry, "policy");
    }
    errors.check()?;
    validate(
        &wire,
        &format!("rooms[{room}].policy"),
        one_of(POLICY_FIELDS),
    )
}

/// Sets the site defaults' policy (`[defaults.policy]`), which every room starts from.
pub fn set_default_policy(doc: &SiteDocument, form: &Form) -> Result<SiteDocument, FormErrors> {
    let mut wire = wire(doc)?;
    let mut errors = FormErrors::default();
    let defaults = table_mut(&mut wire, "defaults");
    apply(
        table_mut(defaults, "policy"),
        form,
        POLICY_FIELDS,
        "",
        &mut errors,
    );
    drop_empty(defaults, "policy");
    drop_empty(&mut wire, "defaults");
    errors.check()?;
    validate(&wire, "defaults.policy", one_of(POLICY_FIELDS))
}

// ---------------------------------------------------------------------------------------
// Scenes
// ---------------------------------------------------------------------------------------

/// The keys of the rooms and templates that name scenes.
const SCENE_REFS: &[&str] = &["meeting_scene", "leave_scene", "walk_in_scene"];

/// A scene's form: `name`, and its steps in order as rows `steps[N].action` (one of
/// [`STEP_ACTIONS`]), `steps[N].value` (`on`, `off`, a level, a duration for `wait`, `down` or
/// `up` for `screen`) and, for `hvac`, `steps[N].mode` and `steps[N].setpoint`. Rows are taken
/// in the order of N (gaps are fine; an empty row is skipped); an error about a step as a
/// whole is on `steps[N]`.
pub fn scene_form(doc: &SiteDocument, name: &str) -> Result<Form, FormErrors> {
    let wire = wire(doc)?;
    let scenes = entries(&wire, "scenes");
    let i = locate(scenes, "name", name, "scene")?;
    let mut form = Form::new();
    form.insert("name".into(), name.to_owned());
    for (n, step) in scenes
        .get(i)
        .map_or(&[][..], |s| entries_in(s, "steps"))
        .iter()
        .enumerate()
    {
        let Some(step) = step.as_table() else {
            continue;
        };
        for (key, v) in step {
            let field = if STEP_ACTIONS.contains(&key.as_str()) {
                form.insert(format!("steps[{n}].action"), key.clone());
                "value"
            } else {
                key.as_str()
            };
            form.insert(format!("steps[{n}].{field}"), show(key, v));
        }
    }
    Ok(form)
}

/// The rows of a scene form, in order: the row's N and the step as the site file writes it.
fn scene_steps(form: &Form, errors: &mut FormErrors) -> Vec<(usize, Table)> {
    let rows: BTreeSet<usize> = form
        .keys()
        .filter_map(|k| {
            let (n, _) = k.strip_prefix("steps[")?.split_once("].")?;
            n.parse().ok()
        })
        .collect();
    let mut steps = Vec::new();
    for n in rows {
        let field = |k: &str| format!("steps[{n}].{k}");
        let get = |k: &str| text(form, &field(k));
        let (action, value, mode, setpoint) =
            (get("action"), get("value"), get("mode"), get("setpoint"));
        if action.is_none() && value.is_none() && mode.is_none() && setpoint.is_none() {
            continue;
        }
        let Some(action) = action else {
            errors.on(field("action"), "choose what the step does");
            continue;
        };
        let Some(action) = STEP_ACTIONS.iter().find(|a| **a == action) else {
            errors.on(
                field("action"),
                format!("'{action}' is not one of {}", STEP_ACTIONS.join(", ")),
            );
            continue;
        };
        let mut step = Table::new();
        let value = match value {
            None => Err(if *action == "wait" {
                "a wait needs a duration, e.g. 5s".to_owned()
            } else {
                format!("a {action} step needs a value")
            }),
            Some(v) => match *action {
                "curtains" | "fan" => parse(Kind::Int, v),
                "wait" | "screen" => Ok(Value::String(v.to_owned())),
                // "on", "off" or a level.
                _ => Ok(v
                    .parse::<i64>()
                    .map_or_else(|_| Value::String(v.to_owned()), Value::Integer)),
            },
        };
        match value {
            Ok(v) => {
                step.insert((*action).to_owned(), v);
            }
            Err(m) => errors.on(field("value"), m),
        }
        for (key, text, kind) in [
            ("mode", mode, Kind::Choice(HVAC_MODES)),
            ("setpoint", setpoint, Kind::Float),
        ] {
            if let Some(t) = text {
                match parse(kind, t) {
                    Ok(v) => {
                        step.insert(key.to_owned(), v);
                    }
                    Err(m) => errors.on(field(key), m),
                }
            }
        }
        steps.push((n, step));
    }
    steps
}

/// Adds a scene (`original` `None`) or changes the scene `original`; a new name is carried to
/// the rooms and templates that name it.
pub fn upsert_scene(
    doc: &SiteDocument,
    original: Option<&str>,
    form: &Form,
) -> Result<SiteDocument, FormErrors> {
    let mut wire = wire(doc)?;
    let scenes = entries(&wire, "scenes");
    let index = existing(scenes, "name", original, "scene")?;
    let mut errors = FormErrors::default();
    let name = match text(form, "name") {
        None => {
            errors.on("name", "a scene needs a name");
            None
        }
        Some(n) if !valid_id(n) => {
            errors.on("name", id_rule(n));
            None
        }
        Some(n) => Some(n.to_owned()),
    };
    if let Some(n) = &name
        && original != Some(n.as_str())
        && find(scenes, "name", n).is_some()
    {
        errors.on("name", format!("there is already a scene '{n}'"));
    }
    let steps = scene_steps(form, &mut errors);
    errors.check()?;
    let Some(name) = name else {
        return Err(FormErrors::whole("a scene needs a name"));
    };
    let rows: Vec<usize> = steps.iter().map(|(n, _)| *n).collect();
    let mut entry = Table::new();
    entry.insert("name".into(), Value::String(name.clone()));
    entry.insert(
        "steps".into(),
        Value::Array(steps.into_iter().map(|(_, s)| Value::Table(s)).collect()),
    );
    if let Some(old) = original.filter(|o| *o != name) {
        rename_scene_refs(&mut wire, old, &name);
    }
    let scenes = entries_mut(&mut wire, "scenes");
    match index {
        Some(i) => scenes[i] = Value::Table(entry),
        None => scenes.push(Value::Table(entry)),
    }
    validate(&wire, &format!("scenes[{name}]"), |below| {
        if below == "name" {
            return Some(below.to_owned());
        }
        let j: usize = below
            .strip_prefix("steps[")?
            .strip_suffix(']')?
            .parse()
            .ok()?;
        rows.get(j).map(|n| format!("steps[{n}]"))
    })
}

fn rename_scene_refs(wire: &mut Table, old: &str, new: &str) {
    for list in ["rooms", "templates"] {
        for entry in entries_mut(wire, list)
            .iter_mut()
            .filter_map(Value::as_table_mut)
        {
            for key in SCENE_REFS {
                if entry.get(*key).and_then(Value::as_str) == Some(old) {
                    entry.insert((*key).to_owned(), Value::String(new.to_owned()));
                }
            }
            if let Some(Value::Array(names)) = entry.get_mut("scenes") {
                for n in names.iter_mut().filter(|n| n.as_str() == Some(old)) {
                    *n = Value::String(new.to_owned());
                }
            }
        }
        drop_empty(wire, list);
    }
}

/// Removes a scene; refused while a room or template names it (a redefined built-in scene,
/// `meeting` or `leave`, may go: the built-in one takes its place).
pub fn remove_scene(doc: &SiteDocument, name: &str) -> Result<SiteDocument, FormErrors> {
    let mut wire = wire(doc)?;
    let index = locate(entries(&wire, "scenes"), "name", name, "scene")?;
    let mut users = Vec::new();
    if !BUILT_IN_SCENES.contains(&name) {
        for (list, what) in [("rooms", "room"), ("templates", "template")] {
            for entry in entries(&wire, list) {
                let id = str_at(entry, "id").unwrap_or("?");
                for key in SCENE_REFS {
                    if str_at(entry, key) == Some(name) {
                        users.push(format!("{what} {id} uses it as {key}"));
                    }
                }
                if entries_in(entry, "scenes")
                    .iter()
                    .any(|n| n.as_str() == Some(name))
                {
                    users.push(format!("{what} {id} offers it (scenes)"));
                }
            }
        }
    }
    if !users.is_empty() {
        return Err(in_use(format!("scene '{name}'"), users));
    }
    entries_mut(&mut wire, "scenes").remove(index);
    drop_empty(&mut wire, "scenes");
    validate(&wire, &format!("scenes[{name}]"), |_| None)
}

// ---------------------------------------------------------------------------------------
// Site settings
// ---------------------------------------------------------------------------------------

/// The settings form: `site.name`, `site.timezone` (an IANA name; empty: UTC), and the hub
/// connection: `cloud.host` and `cloud.port` (the site file's `broker = "host:port"`),
/// `cloud.site`, `cloud.gateway`, `cloud.ca`, `cloud.cert`, `cloud.key`, and `cloud.tls`
/// (`false` for a lab broker without TLS; empty or absent: TLS). All cloud fields empty: the
/// gateway runs without a hub.
pub fn settings_form(doc: &SiteDocument) -> Result<Form, FormErrors> {
    let wire = wire(doc)?;
    let mut form = Form::new();
    if let Some(Value::Table(site)) = wire.get("site") {
        fill(&mut form, site, SITE_FIELDS, "site.");
    }
    if let Some(Value::Table(cloud)) = wire.get("cloud") {
        if let Some((host, port)) = cloud
            .get("broker")
            .and_then(Value::as_str)
            .and_then(|b| b.rsplit_once(':'))
        {
            form.insert("cloud.host".into(), host.to_owned());
            form.insert("cloud.port".into(), port.to_owned());
        }
        fill(&mut form, cloud, CLOUD_FIELDS, "cloud.");
        let tls = cloud.get("tls").and_then(Value::as_bool).unwrap_or(true);
        form.insert("cloud.tls".into(), tls.to_string());
    }
    Ok(form)
}

/// Sets the site's name, time zone and hub connection (all cloud fields empty removes
/// `[cloud]`, its telemetry with it). A running gateway needs a restart for a new time zone.
pub fn set_settings(doc: &SiteDocument, form: &Form) -> Result<SiteDocument, FormErrors> {
    let mut wire = wire(doc)?;
    let mut errors = FormErrors::default();
    let site = table_mut(&mut wire, "site");
    apply(site, form, SITE_FIELDS, "site.", &mut errors);
    if !site.contains_key("name") {
        errors.on("site.name", "the site needs a name");
    }
    let connection = ["host", "port", "site", "gateway", "ca", "cert", "key"]
        .iter()
        .any(|k| text(form, &format!("cloud.{k}")).is_some());
    if connection {
        let cloud = table_mut(&mut wire, "cloud");
        apply(cloud, form, CLOUD_FIELDS, "cloud.", &mut errors);
        let port = match text(form, "cloud.port").map(|p| (p, p.parse::<u16>())) {
            None => {
                errors.on(
                    "cloud.port",
                    "the broker's port, e.g. 8883 for MQTT over TLS",
                );
                None
            }
            Some((_, Ok(p))) if p > 0 => Some(p),
            Some((p, _)) => {
                errors.on("cloud.port", format!("'{p}' is not a port (1 to 65535)"));
                None
            }
        };
        match (text(form, "cloud.host"), port) {
            (None, _) => errors.on("cloud.host", "the broker's host name or address"),
            (Some(host), Some(port)) => {
                cloud.insert("broker".into(), Value::String(format!("{host}:{port}")));
            }
            (Some(_), None) => {}
        }
        for key in ["site", "gateway"] {
            let field = format!("cloud.{key}");
            match text(form, &field) {
                None => errors.on(
                    &field,
                    format!("the gateway's {key} id (the certificate's CN is site/gateway)"),
                ),
                Some(v) => {
                    if let Err(e) = cloud_sync::topics::GatewayId::new(v, v) {
                        errors.on(&field, e.to_string());
                    }
                }
            }
        }
        let tls = match text(form, "cloud.tls").map(|t| parse(Kind::Bool, t)) {
            None => true,
            Some(Ok(v)) => v.as_bool().unwrap_or(true),
            Some(Err(m)) => {
                errors.on("cloud.tls", m);
                true
            }
        };
        if tls {
            cloud.remove("tls");
            for (key, what) in [
                (
                    "ca",
                    "the CA certificate that signed the broker's (PEM file)",
                ),
                ("cert", "this gateway's certificate (PEM file)"),
                ("key", "this gateway's private key (PEM file)"),
            ] {
                if !cloud.contains_key(key) {
                    errors.on(format!("cloud.{key}"), format!("TLS needs {what}"));
                }
            }
        } else {
            cloud.insert("tls".into(), Value::Boolean(false));
        }
    } else {
        wire.remove("cloud");
    }
    errors.check()?;
    validate(&wire, "", |path| match path {
        "site.name" | "site.timezone" | "cloud.site" | "cloud.gateway" => Some(path.to_owned()),
        "cloud.broker" => Some("cloud.host".to_owned()),
        _ => None,
    })
}

// ---------------------------------------------------------------------------------------
// Choices for the bindings form
// ---------------------------------------------------------------------------------------

/// A point offered for a capability.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PointChoice {
    /// What the form posts, as `device/point`.
    pub point: PointRef,
    /// For people: "Light module A: r301 (%)".
    pub label: String,
}

/// The points that can be bound to `capability`, by the site file's own rule (a written
/// capability needs a writable point, a read one a readable point, the on/off ones a bool
/// point); for `reader`, the readers of the serial devices.
pub fn binding_choices(site: &Site, capability: Capability) -> Vec<PointChoice> {
    let mut out = Vec::new();
    for d in &site.devices {
        if capability == Capability::Reader {
            if let DeviceKind::Serial(cfg) = &d.kind {
                for r in cfg.profile.readers() {
                    out.push(PointChoice {
                        point: PointRef {
                            device: d.id.clone(),
                            point: r.clone(),
                        },
                        label: format!("{}: {r}", d.name),
                    });
                }
            }
            continue;
        }
        for p in &d.points {
            let point = PointRef {
                device: d.id.clone(),
                point: p.id.clone(),
            };
            if binding_fits(capability, p, &point.to_string()).is_ok() {
                let unit = p
                    .unit
                    .as_ref()
                    .map(|u| format!(" ({u})"))
                    .unwrap_or_default();
                out.push(PointChoice {
                    label: format!("{}: {}{unit}", d.name, p.name),
                    point,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
