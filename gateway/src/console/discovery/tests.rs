//! Unit tests of the discovery page's pure parts: the search forms, the import.

use super::*;
use crate::i18n::Texts;

fn form(pairs: &[(&str, &str)]) -> Form {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

const SITE: &str = r#"
[site]
name = "Import"

[[devices]]
id = "fcu"
protocol = "bacnet"
instance = 7
points = [{ id = "temperature", object = "analog-input:1" }]

[[devices]]
id = "meter"
protocol = "modbus-tcp"
host = "10.0.0.5"
points = [{ id = "co2", table = "input_register", address = 2, type = "u16" }]
"#;

#[test]
fn the_who_is_form_is_read_with_its_defaults() {
    let w = parse_whois(Lang::En, &form(&[("target", "10.0.0.9")])).expect("ok");
    assert_eq!(w.target, Some("10.0.0.9:47808".parse().expect("addr")));
    assert_eq!(
        (w.low, w.high, w.wait),
        (None, None, Duration::from_secs(2))
    );
    let w = parse_whois(
        Lang::En,
        &form(&[
            ("low", "5"),
            ("high", " 9 "),
            ("wait", "0.5"),
            ("target", ""),
        ]),
    )
    .expect("ok");
    assert_eq!((w.low, w.high, w.target), (Some(5), Some(9), None));
    assert_eq!(w.wait, Duration::from_millis(500));
    let errors = parse_whois(
        Lang::En,
        &form(&[("low", "x"), ("target", "host:1"), ("wait", "90")]),
    )
    .expect_err("three errors");
    let fields: Vec<&str> = errors.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(fields, ["low", "target", "wait"]);
}

#[test]
fn the_scan_form_names_a_bus_or_a_tcp_address() {
    let s = parse_scan(Lang::En, &form(&[("via", "bus:rs485-1"), ("to", "12")])).expect("ok");
    assert_eq!(s.target, ScanTarget::Bus("rs485-1".into()));
    assert_eq!(s.units, 1..=12);
    assert_eq!(s.probe, ScanProbe::default());
    let s = parse_scan(
        Lang::En,
        &form(&[
            ("via", "tcp"),
            ("host", "10.0.0.5"),
            ("from", "0"),
            ("to", "3"),
            ("table", "coil"),
            ("probe_address", "7"),
            ("timeout_ms", "150"),
        ]),
    )
    .expect("ok");
    assert_eq!(
        s.target,
        ScanTarget::Tcp {
            host: "10.0.0.5".into(),
            port: 502
        }
    );
    assert_eq!(s.units, 0..=3);
    assert_eq!(s.probe.table, ModbusTable::Coil);
    assert_eq!(s.probe.address, 7);
    assert_eq!(s.probe.timeout, Some(Duration::from_millis(150)));
    let errors = parse_scan(
        Lang::ZhCn,
        &form(&[("via", "tcp"), ("port", "0"), ("to", "300"), ("table", "x")]),
    )
    .expect_err("errors");
    let fields: Vec<&str> = errors.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(fields, ["port", "host", "to", "table"]);
    assert!(errors[0].1.contains("端口"), "{errors:?}");
}

#[test]
fn absent_units_are_runs() {
    assert_eq!(absent_units(&(1..=5), &[1, 4]), "2–3, 5");
    assert_eq!(absent_units(&(1..=3), &[1, 2, 3]), "");
    assert_eq!(absent_units(&(250..=255), &[252]), "250–251, 253–255");
}

#[test]
fn objects_get_point_ids_units_and_access() {
    assert_eq!(
        point_id_for("analog-input:1", Some("Zone Temp")),
        "zone_temp"
    );
    assert_eq!(point_id_for("analog-input:1", Some("  ")), "analog-input-1");
    assert_eq!(
        point_id_for("binary-output:3", Some("Light #1 (main)")),
        "light_1_main"
    );
    assert_eq!(point_id_for("x:1", Some(&"a".repeat(80))).len(), 64);
    assert_eq!(default_access("analog-input"), "read");
    assert_eq!(default_access("binary-output"), "read_write");
    assert_eq!(default_access("multi-state-value"), "read_write");
    assert_eq!(unit_symbol("degrees-celsius"), "°C");
    assert_eq!(unit_symbol("cubic-meters"), "cubic-meters");
}

#[test]
fn chosen_objects_become_points_of_a_new_device_in_one_document() {
    let doc = SiteDocument::load(SITE).expect("site");
    let posted = form(&[
        ("into", ""),
        ("id", "ahu"),
        ("name", "Air handler"),
        ("instance", "8"),
        ("address", "10.0.0.8:47808"),
        ("pick[0]", "on"),
        ("object[0]", "analog-input:1"),
        ("id[0]", "supply"),
        ("unit[0]", "°C"),
        ("access[0]", "read"),
        ("object[1]", "analog-input:2"),
        ("id[1]", "not_chosen"),
        ("pick[2]", "on"),
        ("object[2]", "analog-value:1"),
        ("id[2]", "setpoint"),
        ("access[2]", "read_write"),
    ]);
    let (into, rows) = import_request(&posted);
    assert_eq!(into.device_id(), "ahu");
    assert_eq!(rows.iter().map(|(n, _)| *n).collect::<Vec<_>>(), [0, 2]);
    let new = import_objects(Lang::En, &doc, &into, &rows).expect("imported");
    let ahu = new.site().device("ahu").expect("the new device");
    let ids: Vec<&str> = ahu.points.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["supply", "setpoint"]);
    assert_eq!(ahu.name, "Air handler");
    assert_eq!(ahu.points[0].unit.as_deref(), Some("°C"));
    assert!(ahu.points[1].access.can_write());
    assert!(
        doc.site().device("ahu").is_none(),
        "the input document is untouched"
    );
}

#[test]
fn import_errors_are_on_the_rows_and_into_existing_devices_too() {
    let doc = SiteDocument::load(SITE).expect("site");
    // Into the existing BACnet device: one clashing id, one bad object; both reported.
    let posted = form(&[
        ("into", "fcu"),
        ("pick[3]", "on"),
        ("object[3]", "analog-input:2"),
        ("id[3]", "temperature"),
        ("pick[5]", "on"),
        ("object[5]", "no-such-thing"),
        ("id[5]", "odd"),
        ("pick[6]", "on"),
        ("object[6]", "analog-value:4"),
        ("id[6]", "fine"),
    ]);
    let (into, rows) = import_request(&posted);
    assert_eq!(into, ImportInto::Existing("fcu".into()));
    let errors = import_objects(Lang::En, &doc, &into, &rows).expect_err("refused");
    let fields: Vec<&str> = errors.fields.iter().map(|f| f.field.as_str()).collect();
    assert!(fields.contains(&"id[3]"), "{errors:?}");
    assert!(fields.contains(&"object[5]"), "{errors:?}");
    assert!(!fields.iter().any(|f| f.ends_with("[6]")), "{errors:?}");
    // The good rows alone go in.
    let good: Vec<(usize, Form)> = rows.into_iter().filter(|(n, _)| *n == 6).collect();
    let new = import_objects(Lang::En, &doc, &into, &good).expect("imported");
    let fcu = new.site().device("fcu").expect("fcu");
    assert_eq!(fcu.points.len(), 2);
    // Not a BACnet device; nothing chosen; a new device with a taken id.
    let errors = import_objects(Lang::En, &doc, &ImportInto::Existing("meter".into()), &good)
        .expect_err("not BACnet");
    assert_eq!(errors.fields[0].field, "into");
    let errors = import_objects(Lang::En, &doc, &ImportInto::Existing("fcu".into()), &[])
        .expect_err("empty");
    assert_eq!(errors.form, ["choose at least one object"]);
    let (into, rows) = import_request(&form(&[
        ("id", "meter"),
        ("instance", "9"),
        ("pick[0]", "on"),
        ("object[0]", "analog-input:1"),
        ("id[0]", "t"),
    ]));
    let errors = import_objects(Lang::En, &doc, &into, &rows).expect_err("taken id");
    assert_eq!(errors.fields[0].field, "id");
}

#[test]
fn found_units_link_to_a_prefilled_device_form() {
    assert_eq!(
        add_link(&ScanTarget::Bus("rs485-1".into()), 5),
        "/devices?protocol=modbus-rtu&bus=rs485-1&unit=5&id=rs485-1-unit-5#add"
    );
    assert_eq!(
        add_link(
            &ScanTarget::Tcp {
                host: "10.0.0.5".into(),
                port: 5020
            },
            4
        ),
        "/devices?protocol=modbus-tcp&host=10.0.0.5&port=5020&unit=4#add"
    );
}

#[test]
fn every_text_has_both_languages() {
    for m in DiscMsg::ALL {
        let (en, zh) = m.texts();
        assert!(!en.is_empty() && !zh.is_empty(), "{m:?}");
        let names = |t: &str| -> Vec<String> {
            let mut v: Vec<String> = t
                .split('{')
                .skip(1)
                .filter_map(|r| r.split_once('}').map(|(n, _)| n.to_owned()))
                .collect();
            v.sort();
            v
        };
        assert_eq!(names(en), names(zh), "{m:?}: the same placeholders");
    }
}
