//! The site written back out as TOML: a loaded site file rendered short (defaults left out)
//! and in a human order, so that loading the output gives the same site.
//!
//! A [`SiteDocument`] keeps a site file's wire form next to the [`Site`] it validates to; the
//! console edits and diffs documents and writes them back with [`SiteDocument::to_toml`].
//! Sections come in the order [site], [cloud], [defaults.policy], [bacnet], serial profiles,
//! buses, devices with their points, scenes, templates, rooms, people; inside a table, keys
//! come in the order the README documents them. Tables below a section are written inline
//! (`policy = { ... }`), lists of tables one per line (`points = [ ... ]`). Comments and the
//! author's own layout are not kept.

use std::fmt::Write as _;

use toml::{Table, Value};

use super::{Site, SiteErrors, SiteFile, load_file};

/// A site file's wire form together with the validated site.
#[derive(Debug)]
pub struct SiteDocument {
    file: SiteFile,
    /// `[serial_profiles.*]` as written (the drivers' `ProfileSpec` has no serializer).
    serial_profiles: Table,
    site: Site,
}

/// The wire form could not be turned into TOML (a bug, never bad input).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the site cannot be written as TOML: {0}")]
pub struct ExportError(String);

impl SiteDocument {
    /// Parses and validates a site file; on failure every error, as [`super::load`].
    pub fn load(src: &str) -> Result<SiteDocument, SiteErrors> {
        let (file, site) = load_file(src)?;
        let serial_profiles = toml::from_str::<Table>(src)
            .ok()
            .and_then(|mut t| t.remove("serial_profiles"))
            .and_then(|v| match v {
                Value::Table(t) => Some(t),
                _ => None,
            })
            .unwrap_or_default();
        Ok(SiteDocument {
            file,
            serial_profiles,
            site,
        })
    }

    /// The validated site.
    pub fn site(&self) -> &Site {
        &self.site
    }

    /// The wire form as a TOML table, defaults left out.
    pub(super) fn to_table(&self) -> Result<Table, ExportError> {
        let mut table = match Value::try_from(&self.file) {
            Ok(Value::Table(t)) => t,
            Ok(other) => return Err(ExportError(format!("not a table: {other:?}"))),
            Err(e) => return Err(ExportError(e.to_string())),
        };
        if !self.serial_profiles.is_empty() {
            table.insert(
                "serial_profiles".into(),
                Value::Table(self.serial_profiles.clone()),
            );
        }
        Ok(table)
    }

    /// The site file as TOML; loading it gives this document's site again.
    pub fn to_toml(&self) -> Result<String, ExportError> {
        self.to_table().map(|t| render_document(&t))
    }
}

/// Top-level sections, in the order a person reads a site file.
const SECTIONS: &[&str] = &[
    "site",
    "cloud",
    "defaults",
    "bacnet",
    "serial_profiles",
    "buses",
    "devices",
    "scenes",
    "templates",
    "rooms",
    "people",
];

/// Point keys in their documented order (also the CSV columns' order).
pub(super) const POINT_KEYS: &[&str] = &[
    "id",
    "name",
    "table",
    "address",
    "type",
    "bit",
    "layout",
    "word_order",
    "scale",
    "offset",
    "object",
    "property",
    "kind",
    "priority",
    "cov",
    "unit",
    "access",
    "poll",
    "labels",
];

const STEP_KEYS: &[&str] = &[
    "lights",
    "sockets",
    "curtains",
    "hvac",
    "mode",
    "setpoint",
    "projector",
    "screen",
    "ventilation",
    "purifier",
    "fan",
    "wait",
];

/// The key order inside a table found under `key` (a section, or the list it is an item of).
pub(super) fn key_order(key: &str) -> &'static [&'static str] {
    match key {
        "site" => &["name", "timezone"],
        "cloud" => &[
            "broker",
            "site",
            "gateway",
            "ca",
            "cert",
            "key",
            "tls",
            "telemetry",
        ],
        "telemetry" => &[
            "points",
            "batch",
            "min_interval",
            "max_samples_per_batch",
            "deadband",
        ],
        "policy" => &[
            "starting_soon",
            "hvac_lead",
            "lights_lead",
            "checkin_opens",
            "checkin_required",
            "checkin_on_presence",
            "no_show_after",
            "vacancy_release",
            "dim_after",
            "dim_level",
            "off_after",
            "back_to_back_gap",
            "hvac_setpoint",
            "hvac_mode",
            "closed_light",
            "override_hold",
            "walk_in_confirm",
            "checkin_by_card",
            "checkin_pin",
        ],
        "bacnet" => &[
            "interface",
            "port",
            "broadcast",
            "bbmd",
            "bbmd_ttl",
            "apdu_timeout",
            "apdu_retries",
        ],
        "buses" => &[
            "id",
            "serial_port",
            "host",
            "port",
            "baud",
            "parity",
            "data_bits",
            "stop_bits",
        ],
        "devices" => &[
            "id",
            "name",
            "protocol",
            "host",
            "port",
            "bus",
            "unit",
            "instance",
            "address",
            "address_mode",
            "serial_port",
            "baud",
            "parity",
            "data_bits",
            "stop_bits",
            "profile",
            "silence_timeout",
            "poll",
            "timeout",
            "retries",
            "cov",
            "rpm_batch",
            "points",
        ],
        "points" => POINT_KEYS,
        "scenes" => &["name", "steps"],
        "steps" | "on" | "off" => STEP_KEYS,
        "templates" => &[
            "id",
            "meeting_scene",
            "leave_scene",
            "walk_in_scene",
            "scenes",
            "policy",
            "access",
            "air",
        ],
        "rooms" => &[
            "id",
            "name",
            "template",
            "capacity",
            "kind",
            "meeting_scene",
            "leave_scene",
            "walk_in_scene",
            "scenes",
            "policy",
            "access",
            "air",
            "bindings",
        ],
        "access" => &["staff_groups", "unlock_for"],
        "air" => &["metric", "on_above", "off_below", "on", "off"],
        "people" => &["id", "name", "credentials", "groups"],
        "serial_profiles" | "" => &[],
        _ => &["format", "start", "end", "event", "match", "type"],
    }
}

/// A table's entries: known keys in `order`, then the rest (numerically when all are whole
/// numbers, as label values are, else alphabetically).
pub(super) fn ordered<'a>(table: &'a Table, order: &[&str]) -> Vec<(&'a str, &'a Value)> {
    let mut entries: Vec<(&str, &Value)> = table.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let numeric = entries.iter().all(|(k, _)| k.trim().parse::<i64>().is_ok());
    entries.sort_by(|(a, _), (b, _)| {
        let rank = |k: &str| order.iter().position(|o| *o == k).unwrap_or(order.len());
        rank(a).cmp(&rank(b)).then_with(|| {
            if numeric {
                let n = |k: &str| k.trim().parse::<i64>().unwrap_or(0);
                n(a).cmp(&n(b))
            } else {
                a.cmp(b)
            }
        })
    });
    entries
}

pub(super) fn render_document(doc: &Table) -> String {
    let mut out = String::new();
    for (key, value) in ordered(doc, SECTIONS) {
        match value {
            Value::Table(t) => render_section(&mut out, &[key], t),
            Value::Array(items) if is_table_list(items) => {
                for item in items {
                    if let Value::Table(t) = item {
                        header(&mut out, &format!("[[{}]]", render_key(key)));
                        render_body(&mut out, key, t);
                    }
                }
            }
            other => {
                let _ = writeln!(out, "{} = {}", render_key(key), render_inline(key, other));
            }
        }
    }
    out
}

fn header(out: &mut String, line: &str) {
    if !out.is_empty() {
        out.push('\n');
    }
    out.push_str(line);
    out.push('\n');
}

/// A `[a.b]` section; tables directly below a top-level section get their own header.
fn render_section(out: &mut String, path: &[&str], table: &Table) {
    let key = path.last().copied().unwrap_or("");
    let nested = path.len() < 2;
    let (subs, plain): (Vec<_>, Vec<_>) = ordered(table, key_order(key))
        .into_iter()
        .partition(|(_, v)| nested && matches!(v, Value::Table(_)));
    if !plain.is_empty() || subs.is_empty() {
        let name: Vec<String> = path.iter().map(|k| render_key(k)).collect();
        header(out, &format!("[{}]", name.join(".")));
        for (k, v) in plain {
            render_entry(out, k, v);
        }
    }
    for (k, v) in subs {
        if let Value::Table(t) = v {
            let mut sub = path.to_vec();
            sub.push(k);
            render_section(out, &sub, t);
        }
    }
}

fn render_body(out: &mut String, key: &str, table: &Table) {
    for (k, v) in ordered(table, key_order(key)) {
        render_entry(out, k, v);
    }
}

/// `key = value`; a list of tables one per line when it does not fit on one.
fn render_entry(out: &mut String, key: &str, value: &Value) {
    let line = format!("{} = {}", render_key(key), render_inline(key, value));
    match value {
        Value::Array(items) if is_table_list(items) && (line.len() > 100 || key == "points") => {
            let _ = writeln!(out, "{} = [", render_key(key));
            for item in items {
                let _ = writeln!(out, "  {},", render_inline(key, item));
            }
            out.push_str("]\n");
        }
        _ => {
            out.push_str(&line);
            out.push('\n');
        }
    }
}

fn is_table_list(items: &[Value]) -> bool {
    !items.is_empty() && items.iter().all(|v| matches!(v, Value::Table(_)))
}

/// A value on one line; `key` is what it is found under (for the key order of tables).
pub(super) fn render_inline(key: &str, value: &Value) -> String {
    match value {
        Value::String(s) => render_string(s),
        Value::Integer(i) => i.to_string(),
        Value::Float(f) => render_float(*f),
        Value::Boolean(b) => b.to_string(),
        Value::Datetime(d) => d.to_string(),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(|v| render_inline(key, v)).collect();
            format!("[{}]", parts.join(", "))
        }
        Value::Table(t) if t.is_empty() => "{}".to_owned(),
        Value::Table(t) => {
            let parts: Vec<String> = ordered(t, key_order(key))
                .into_iter()
                .map(|(k, v)| format!("{} = {}", render_key(k), render_inline(k, v)))
                .collect();
            format!("{{ {} }}", parts.join(", "))
        }
    }
}

fn render_float(f: f64) -> String {
    if f.is_nan() {
        "nan".to_owned()
    } else if f.is_infinite() {
        if f > 0.0 { "inf" } else { "-inf" }.to_owned()
    } else {
        // Debug keeps a fraction or an exponent ("1.0", "0.1", "1e-7"), as TOML floats need.
        format!("{f:?}")
    }
}

/// A key, bare where TOML allows it, else quoted.
pub(super) fn render_key(key: &str) -> String {
    if !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        key.to_owned()
    } else {
        render_string(key)
    }
}

/// A TOML basic string.
pub(super) fn render_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
pub(super) mod tests {
    use super::SiteDocument;
    use crate::site::diff;

    /// Sites from the project's tests (ports and paths filled in), covering every section.
    pub(in crate::site) const MIXED: &str = r#"
[site]
name = "Mixed floor"
timezone = "Europe/Berlin"

[cloud]
broker = "127.0.0.1:8883"
site = "site-t"
gateway = "gw-1"
ca = "/etc/roomgate/ca.pem"
cert = "/etc/roomgate/gw.pem"
key = "/etc/roomgate/gw.key"

[cloud.telemetry]
points = ["hvac/*", "lights/relay"]
batch = "5s"
deadband = { "hvac/co2" = 20 }

[defaults.policy]
no_show_after = "5m"
vacancy_release = "off"

[bacnet]
interface = "127.0.0.1"
port = 0
broadcast = "127.0.0.1"
apdu_timeout = "300ms"

[serial_profiles.pir-motion]
format = "ascii"
end = "\n"
rules = [
  { event = "occupancy", match = "MOTION", point = "occupancy", value = true },
  { event = "occupancy", match = "CLEAR",  point = "occupancy", value = false },
  { event = "heartbeat", match = "ALIVE {digits}" },
]

[[buses]]
id = "rs485-1"
serial_port = "/dev/ttyUSB0"
baud = 19200

[[devices]]
id = "lights"
protocol = "modbus-rtu"
bus = "rs485-1"
unit = 1
poll = "50ms"
timeout = "200ms"
points = [
  { id = "relay", table = "coil", address = 0, type = "bool" },
  { id = "dim", table = "holding_register", address = 0, type = "u16", unit = "%" },
]

[[devices]]
id = "hvac"
name = "HVAC \"north\", room 1"
protocol = "modbus-tcp"
host = "127.0.0.1"
port = 1502
points = [
  { id = "power", table = "coil", address = 0, type = "bool" },
  { id = "mode", table = "holding_register", address = 0, type = "u16", labels = { 0 = "off", 1 = "heat", 2 = "cool", 10 = "eco" } },
  { id = "setpoint", table = "holding_register", address = 1, type = "f32", layout = "CDAB" },
  { id = "temp", table = "input_register", address = 10, type = "i16", scale = 0.1, offset = -2.5, unit = "°C", poll = "1m" },
  { id = "co2", table = "input_register", address = 2, type = "u16", unit = "ppm", access = "read" },
  { id = "alarm", table = "holding_register", address = 7, type = "bool", bit = 3 },
]

[[devices]]
id = "fcu"
protocol = "bacnet"
instance = 4242
address = "127.0.0.1:47809"
poll = "100ms"
cov = "off"
points = [
  { id = "power", object = "binary-output:1", access = "read_write", priority = 10 },
  { id = "setpoint", object = "analog-value:1", access = "read_write", unit = "°C" },
  { id = "temperature", object = "analog-input:1" },
  { id = "presence", object = "binary-input:1" },
  { id = "oos", object = "analog-input:1", property = "out-of-service", kind = "boolean", cov = false },
]

[[devices]]
id = "door-reader"
protocol = "serial"
serial_port = "/dev/ttyS1"
profile = "ascii-card-stx"

[[devices]]
id = "pir-serial"
protocol = "serial"
serial_port = "/dev/ttyS2"
profile = "pir-motion"
silence_timeout = "90s"

[[scenes]]
name = "presentation"
steps = [{ lights = 40 }, { wait = "5s" }, { hvac = "on", mode = "cool", setpoint = 22.0 }]

[[templates]]
id = "small"
policy = { no_show_after = "5m", off_after = "10m", dim_after = "3m" }
access = { staff_groups = ["cleaning"] }

[[rooms]]
id = "r1"
name = "Boardroom"
capacity = 8
kind = "bookable"
template = "small"
scenes = ["presentation"]
access = { unlock_for = "5s" }
air = [{ metric = "co2", on_above = 1000, off_below = 800, on = [{ lights = "on" }] }]
bindings = { light = "lights/relay", light_level = "lights/dim", hvac_power = "fcu/power", hvac_setpoint = "fcu/setpoint", temperature = "fcu/temperature", occupancy = "fcu/presence", reader = "door-reader/reader", co2 = "hvac/co2" }

[[rooms]]
id = "h1"
name = "Huddle"
kind = "instant_use"
policy = { closed_light = "off", dim_level = 20 }
bindings = { occupancy = "pir-serial/occupancy" }

[[people]]
id = "ana@example.com"
credentials = ["0004512345"]

[[people]]
id = "kim@example.com"
name = "Kim (cleaning)"
credentials = ["C0FFEE01", "QR:kim"]
groups = ["cleaning"]
"#;

    /// `load(export(load(x)))` is `load(x)`, and exporting again changes nothing.
    pub(in crate::site) fn assert_round_trip(src: &str) -> String {
        let first = SiteDocument::load(src).unwrap_or_else(|e| panic!("site loads: {e}"));
        let text = first.to_toml().expect("export");
        let second =
            SiteDocument::load(&text).unwrap_or_else(|e| panic!("export loads: {e}\n{text}"));
        let d = diff::diff(&first, &second).expect("diff");
        assert!(d.is_empty(), "export changed the site:\n{d}\n{text}");
        let p = diff::plan(first.site(), second.site());
        assert!(p.is_empty(), "export changed the site:\n{p}\n{text}");
        assert_eq!(second.to_toml().expect("export again"), text, "a fixpoint");
        text
    }

    #[test]
    fn a_site_with_every_section_round_trips() {
        let text = assert_round_trip(MIXED);
        // Defaults stay out, keys come in the documented order, lists of points one per line.
        assert!(!text.contains("tls") && !text.contains("{}"), "{text}");
        assert!(
            text.contains("[defaults.policy]\nno_show_after = \"5m\""),
            "{text}"
        );
        assert!(text.contains(
            "points = [\n  { id = \"relay\", table = \"coil\", address = 0, type = \"bool\" },\n"
        ));
        assert!(text.contains(r#"labels = { 0 = "off", 1 = "heat", 2 = "cool", 10 = "eco" }"#));
        assert!(
            text.contains(r#"name = "HVAC \"north\", room 1""#),
            "{text}"
        );
        assert!(
            text.contains("[serial_profiles.pir-motion]\nformat = \"ascii\""),
            "{text}"
        );
        let order: Vec<usize> = [
            "[site]",
            "[cloud]",
            "[cloud.telemetry]",
            "[defaults.policy]",
            "[bacnet]",
            "[serial_profiles.pir-motion]",
            "[[buses]]",
            "[[devices]]",
            "[[scenes]]",
            "[[templates]]",
            "[[rooms]]",
            "[[people]]",
        ]
        .iter()
        .map(|h| text.find(h).unwrap_or_else(|| panic!("{h} in\n{text}")))
        .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");
    }

    #[test]
    fn the_site_check_sites_round_trip() {
        for src in [
            SMALL,
            "[site]\nname = \"Empty\"\n",
            "[site]\nname = \"Lab\"\n\n[cloud]\nbroker = \"h:1883\"\nsite = \"s\"\ngateway = \"g\"\ntls = false\n",
        ] {
            assert_round_trip(src);
        }
    }

    #[test]
    fn a_room_without_capacity_and_bacnet_settings_without_devices_survive_a_round_trip() {
        let src = "[site]\nname = \"Lab\"\n\n[bacnet]\ninterface = \"127.0.0.7\"\n\n\
                   [[rooms]]\nid = \"r1\"\nname = \"Room 1\"\nkind = \"bookable\"\n";
        let doc = SiteDocument::load(src).expect("valid");
        // Discovery runs on the configured interface before the first BACnet device exists.
        let net = doc
            .site()
            .bacnet
            .as_ref()
            .expect("[bacnet] kept without devices");
        assert_eq!(net.interface.to_string(), "127.0.0.7");
        let text = doc.to_toml().expect("toml");
        assert!(
            !text.contains("capacity"),
            "no capacity = 0 written:\n{text}"
        );
        assert!(text.contains("interface = \"127.0.0.7\""), "{text}");
        assert_round_trip(src);
    }

    const SMALL: &str = r#"
[site]
name = "Templates"
timezone = "Europe/Berlin"

[[devices]]
id = "io"
protocol = "modbus-tcp"
host = "127.0.0.1"
points = [
  { id = "light", table = "coil", address = 0, type = "bool" },
  { id = "vent", table = "holding_register", address = 0, type = "u16" },
  { id = "co2", table = "input_register", address = 0, type = "u16" },
]

[[templates]]
id = "small"
policy = { no_show_after = "5m", off_after = "10m", dim_after = "3m" }
access = { staff_groups = ["cleaning"] }
air = [{ metric = "co2", on_above = 1000, off_below = 800, on = [{ ventilation = 100 }], off = [{ ventilation = "off" }] }]

[[rooms]]
id = "a"
name = "A"
kind = "bookable"
template = "small"
policy = { off_after = "12m" }
bindings = { light = "io/light", ventilation = "io/vent", co2 = "io/co2" }

[[people]]
id = "ana@example.com"
credentials = ["04A1"]
"#;
}
