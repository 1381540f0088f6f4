//! The console's edits on real site files: the demo floor and the mixed-protocol test site.

use expect_test::{Expect, expect};

use super::*;
use crate::site::export::tests::{MIXED, assert_round_trip};
use crate::site::{SiteFile, diff};

fn demo() -> SiteDocument {
    let text = crate::demo::site_for_tests();
    SiteDocument::load(&text).unwrap_or_else(|e| panic!("the demo site loads: {e}"))
}

fn mixed() -> SiteDocument {
    SiteDocument::load(MIXED).unwrap_or_else(|e| panic!("the mixed site loads: {e}"))
}

fn form(fields: &[(&str, &str)]) -> Form {
    (fields.iter())
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// The edit succeeded, and its document is written and read back unchanged.
fn ok(result: Result<SiteDocument, FormErrors>) -> SiteDocument {
    let doc = result.unwrap_or_else(|e| panic!("the edit is accepted, but:\n{e}"));
    assert_round_trip(&doc.to_toml().expect("export"));
    doc
}

fn refused(result: Result<SiteDocument, FormErrors>) -> FormErrors {
    match result {
        Ok(doc) => panic!(
            "the edit is refused, but gave:\n{}",
            doc.to_toml().expect("export")
        ),
        Err(e) => e,
    }
}

/// What an edit changed, as the console shows it before applying.
fn changes(before: &SiteDocument, after: &SiteDocument, expected: Expect) {
    expected.assert_eq(&diff(before, after).expect("diff").to_string());
}

// ---------------------------------------------------------------------------------------
// An installer's session on the demo floor
// ---------------------------------------------------------------------------------------

#[test]
fn a_new_device_with_two_points_bound_to_a_new_room_with_a_scene_and_a_policy() {
    let start = demo();
    let doc = ok(upsert_device(
        &start,
        None,
        &form(&[
            ("id", "io-201"),
            ("name", "I/O module, room 201"),
            ("protocol", "modbus-tcp"),
            ("host", "10.0.3.40"),
            ("port", "1502"),
            ("unit", "3"),
            ("poll", "500ms"),
            // What a generic form posts for the other protocols' fields.
            ("instance", ""),
            ("serial_port", " "),
            ("_csrf", "token"),
        ]),
    ));
    let doc = ok(upsert_point(
        &doc,
        "io-201",
        None,
        &form(&[
            ("id", "light"),
            ("table", "coil"),
            ("address", "0"),
            ("type", "bool"),
        ]),
    ));
    let doc = ok(upsert_point(
        &doc,
        "io-201",
        None,
        &form(&[
            ("id", "temp"),
            ("name", "Room temperature"),
            ("table", "input_register"),
            ("address", "4"),
            ("type", "i16"),
            ("scale", "0.1"),
            ("unit", "°C"),
            ("labels", ""),
        ]),
    ));
    let doc = ok(upsert_room(
        &doc,
        None,
        &form(&[
            ("id", "r201"),
            ("name", "Atrium"),
            ("capacity", "10"),
            ("kind", "bookable"),
            ("template", "meeting-room"),
        ]),
    ));
    let doc = ok(set_bindings(
        &doc,
        "r201",
        &form(&[("light", "io-201/light"), ("temperature", "io-201/temp")]),
    ));
    let doc = ok(upsert_scene(
        &doc,
        None,
        &form(&[
            ("name", "focus"),
            ("steps[0].action", "lights"),
            ("steps[0].value", "60"),
            ("steps[1].action", "wait"),
            ("steps[1].value", "5s"),
            ("steps[2].action", "hvac"),
            ("steps[2].value", "on"),
            ("steps[2].mode", "cool"),
            ("steps[2].setpoint", "22"),
        ]),
    ));
    let doc = ok(set_policy(
        &doc,
        "r201",
        &form(&[("no_show_after", "5m"), ("checkin_on_presence", "on")]),
    ));
    changes(
        &start,
        &doc,
        expect![[r#"
            device io-201 added
            scene focus added
            room r201 added"#]],
    );
    let site = doc.site();
    let room = site.room("r201").expect("the new room");
    assert_eq!(room.config.policy.no_show_after, scenes::Span::minutes(5));
    assert!(room.config.policy.checkin_on_presence);
    assert_eq!(
        room.config.access.staff_groups,
        vec!["cleaning".to_owned()],
        "from its template"
    );
    assert_eq!(
        room.bindings
            .get(&Capability::Light)
            .map(ToString::to_string),
        Some("io-201/light".to_owned())
    );
    let text = doc.to_toml().expect("export");
    for written in [
        "[[devices]]\nid = \"io-201\"\nname = \"I/O module, room 201\"\nprotocol = \"modbus-tcp\"\nhost = \"10.0.3.40\"\nport = 1502\nunit = 3\npoll = \"500ms\"\npoints = [\n  { id = \"light\", table = \"coil\", address = 0, type = \"bool\" },\n  { id = \"temp\", name = \"Room temperature\", table = \"input_register\", address = 4, type = \"i16\", scale = 0.1, unit = \"°C\" },\n]\n",
        "[[scenes]]\nname = \"focus\"\nsteps = [{ lights = 60 }, { wait = \"5s\" }, { hvac = \"on\", mode = \"cool\", setpoint = 22.0 }]\n",
        "id = \"r201\"\nname = \"Atrium\"\ntemplate = \"meeting-room\"\ncapacity = 10\nkind = \"bookable\"\npolicy = { checkin_on_presence = true, no_show_after = \"5m\" }\nbindings = { light = \"io-201/light\", temperature = \"io-201/temp\" }\n",
    ] {
        assert!(text.contains(written), "{written}\nin\n{text}");
    }
}

#[test]
fn a_policy_change_on_a_demo_room() {
    let start = demo();
    let doc = ok(set_policy(
        &start,
        "r101",
        &form(&[
            ("checkin_on_presence", "true"),
            ("off_after", "10m"),
            ("vacancy_release", "off"),
            ("hvac_mode", "heat"),
        ]),
    ));
    changes(
        &start,
        &doc,
        expect![[r#"
            room r101: policy.vacancy_release (default) → off
            room r101: policy.off_after (default) → 10m
            room r101: policy.hvac_mode (default) → heat"#]],
    );
    // Emptying the form gives the room its template's and the site's policy again.
    let back = ok(set_policy(&doc, "r101", &form(&[])));
    changes(
        &doc,
        &back,
        expect![[r#"
            room r101: policy.checkin_on_presence true → (default)
            room r101: policy.vacancy_release off → (default)
            room r101: policy.off_after 10m → (default)
            room r101: policy.hvac_mode heat → (default)"#]],
    );
    // The defaults' form is the whole section: what it leaves out goes back to the default.
    let mut all = default_policy_form(&start).expect("form");
    all.insert("no_show_after".into(), "4m".into());
    let defaults = ok(set_default_policy(&start, &all));
    let e = refused(set_default_policy(
        &start,
        &form(&[("no_show_after", "4m"), ("off_after", "3m")]),
    ));
    expect!["dim_after: dim_after (5 min) must be shorter than off_after (3 min): lights step down before everything goes off"]
        .assert_eq(&e.to_string());
    assert_eq!(
        defaults
            .site()
            .room("r102")
            .map(|r| r.config.policy.no_show_after),
        Some(scenes::Span::minutes(4))
    );
}

// ---------------------------------------------------------------------------------------
// Errors on the right field
// ---------------------------------------------------------------------------------------

fn tcp_device(id: &str, port: &str) -> Form {
    form(&[
        ("id", id),
        ("protocol", "modbus-tcp"),
        ("host", "10.0.3.40"),
        ("port", port),
    ])
}

#[test]
fn a_bad_port_is_an_error_on_the_port() {
    let doc = demo();
    let e = refused(upsert_device(&doc, None, &tcp_device("io", "5o2")));
    expect!["port: '5o2' is not a whole number"].assert_eq(&e.to_string());
    // In range is the site file's rule, mapped back from its path `devices[io].port`.
    let e = refused(upsert_device(&doc, None, &tcp_device("io", "70000")));
    expect!["port: port 70000 is out of range 1..=65535"].assert_eq(&e.to_string());
    assert_eq!(e.messages("port").count(), 1);
    assert!(e.form.is_empty());
}

#[test]
fn duplicate_ids_are_errors_on_the_id() {
    let doc = demo();
    let e = refused(upsert_device(&doc, None, &tcp_device("lights", "502")));
    expect!["id: there is already a device 'lights'"].assert_eq(&e.to_string());
    let e = refused(upsert_device(
        &doc,
        Some("pir"),
        &tcp_device("doors", "502"),
    ));
    expect!["id: there is already a device 'doors'"].assert_eq(&e.to_string());
    let e = refused(upsert_point(
        &doc,
        "lights",
        None,
        &form(&[
            ("id", "ch2"),
            ("table", "coil"),
            ("address", "9"),
            ("type", "bool"),
        ]),
    ));
    expect!["id: device 'lights' already has a point 'ch2'"].assert_eq(&e.to_string());
    let e = refused(upsert_room(
        &doc,
        None,
        &form(&[("id", "h1"), ("name", "Huddle"), ("kind", "closed")]),
    ));
    expect!["id: there is already a room 'h1'"].assert_eq(&e.to_string());
    let e = refused(upsert_scene(
        &doc,
        Some("cleaning"),
        &form(&[("name", "presentation")]),
    ));
    expect!["name: there is already a scene 'presentation'"].assert_eq(&e.to_string());
    let e = refused(upsert_bus(
        &doc,
        None,
        &form(&[("id", "rs485-huddles"), ("serial_port", "/dev/ttyUSB1")]),
    ));
    expect!["id: there is already a bus 'rs485-huddles'"].assert_eq(&e.to_string());
}

#[test]
fn missing_and_malformed_fields_are_refused_before_validation() {
    let doc = demo();
    let e = refused(upsert_device(
        &doc,
        None,
        &form(&[("id", "bad id"), ("protocol", "modbus-rtu"), ("unit", "x")]),
    ));
    expect![[r#"
        id: 'bad id' is not a valid id: use 1 to 64 letters, digits, '-' or '_'
        unit: 'x' is not a whole number
        bus: a modbus-rtu device needs `bus`"#]]
    .assert_eq(&e.to_string());
    let e = refused(upsert_device(&doc, None, &form(&[("protocol", "knx")])));
    expect![[r#"
        id: a device needs an id
        protocol: 'knx' is not one of modbus-tcp, modbus-rtu, bacnet, serial"#]]
    .assert_eq(&e.to_string());
    let e = refused(upsert_point(
        &doc,
        "fcu-101",
        None,
        &form(&[("id", "fan"), ("kind", "analog"), ("priority", "high")]),
    ));
    expect![[r#"
        kind: 'analog' is not one of real, unsigned, enumerated, boolean, binary
        priority: 'high' is not a whole number
        object: a BACnet point needs `object`"#]]
    .assert_eq(&e.to_string());
    let e = refused(upsert_room(
        &doc,
        None,
        &form(&[("id", "r9"), ("capacity", "-2")]),
    ));
    expect![[r#"
        name: a room needs a name (the panels show it)
        kind: choose one of bookable, instant_use, closed
        capacity: capacity -2 is not a number of people"#]]
    .assert_eq(&e.to_string());
}

#[test]
fn an_address_out_of_range_is_an_error_on_the_address() {
    let doc = demo();
    let e = refused(upsert_point(
        &doc,
        "lights",
        Some("dim4"),
        &form(&[
            ("id", "dim4"),
            ("table", "holding_register"),
            ("address", "70000"),
            ("type", "u16"),
        ]),
    ));
    expect![[r#"
        address: Modbus address 70000 is out of range 0..=65535 (addresses are 0-based: register 40001 is address 0)
        rooms[r104].bindings.light_level: point 'lights/dim4' is invalid (see its own error)"#]]
        .assert_eq(&e.to_string());
    // A register type that is not offered.
    let e = refused(upsert_point(
        &doc,
        "lights",
        Some("dim4"),
        &form(&[
            ("id", "dim4"),
            ("table", "holding"),
            ("address", "3"),
            ("type", "u17"),
        ]),
    ));
    expect![[r#"
        table: 'holding' is not one of coil, discrete_input, input_register, holding_register
        type: 'u17' is not one of bool, u16, i16, u32, i32, f32, u64, i64, f64"#]]
    .assert_eq(&e.to_string());
}

#[test]
fn a_read_only_point_cannot_drive_an_output() {
    let doc = demo();
    let e = refused(set_bindings(
        &doc,
        "r101",
        &form(&[("light", "pir/in1"), ("light_level", "lights/ch1")]),
    ));
    expect![[r#"
        light: point 'pir/in1' is read-only, but light is written by the gateway
        light_level: light_level needs a numeric point, but 'lights/ch1' is bool"#]]
    .assert_eq(&e.to_string());
    let e = refused(set_bindings(&doc, "r101", &form(&[("occupancy", "pir")])));
    expect![[r#"occupancy: 'pir' is not a point reference: write "device/point""#]]
        .assert_eq(&e.to_string());
    // Unbinding: the room no longer has lights.
    let doc = ok(set_bindings(
        &doc,
        "h1",
        &form(&[("light", ""), ("occupancy", "pir/in5")]),
    ));
    let h1 = doc.site().room("h1").expect("h1");
    assert!(!h1.config.equipment.lights);
    assert!(h1.bindings.contains_key(&Capability::StatusLight), "kept");
}

#[test]
fn a_change_that_breaks_something_elsewhere_is_a_message_for_the_form() {
    // lights/ch1 is room r101's light; made a register, it is no longer on/off.
    let e = refused(upsert_point(
        &demo(),
        "lights",
        Some("ch1"),
        &form(&[
            ("id", "ch1"),
            ("table", "holding_register"),
            ("address", "9"),
            ("type", "u16"),
        ]),
    ));
    assert!(e.fields.is_empty(), "{e}");
    expect!["rooms[r101].bindings.light: light needs a bool point, but 'lights/ch1' is numeric"]
        .assert_eq(&e.to_string());
}

#[test]
fn policy_and_scene_errors_are_on_their_fields() {
    let doc = demo();
    let e = refused(set_policy(
        &doc,
        "r102",
        &form(&[
            ("dim_level", "half"),
            ("hvac_mode", "warm"),
            ("checkin_pin", "maybe"),
        ]),
    ));
    expect![[r#"
        dim_level: 'half' is not a whole number
        hvac_mode: 'warm' is not one of heat, cool, auto, fan
        checkin_pin: 'maybe': write true or false"#]]
    .assert_eq(&e.to_string());
    let e = refused(set_policy(
        &doc,
        "r102",
        &form(&[("off_after", "30m"), ("no_show_after", "soon")]),
    ));
    assert_eq!(e.fields.len(), 2, "{e}");
    assert!(e.messages("off_after").any(|m| m.contains("20")), "{e}");
    assert!(e.messages("no_show_after").next().is_some(), "{e}");
    // Rows are the form's own numbers, gaps and all.
    let e = refused(upsert_scene(
        &doc,
        None,
        &form(&[
            ("name", "dim"),
            ("steps[0].action", "lights"),
            ("steps[0].value", "30"),
            ("steps[4].action", "curtains"),
            ("steps[4].value", "half"),
            ("steps[7].action", "lights"),
            ("steps[7].value", "150"),
            ("steps[9].value", "on"),
        ]),
    ));
    expect![[r#"
        steps[4].value: 'half' is not a whole number
        steps[9].action: choose what the step does"#]]
    .assert_eq(&e.to_string());
    let e = refused(upsert_scene(
        &doc,
        None,
        &form(&[
            ("name", "dim"),
            ("steps[0].action", "lights"),
            ("steps[0].value", "30"),
            ("steps[3].action", "wait"),
            ("steps[3].value", ""),
            ("steps[4].action", "curtains"),
            ("steps[4].value", "50"),
            ("steps[4].mode", "cool"),
            ("steps[7].action", "lights"),
            ("steps[7].value", "150"),
        ]),
    ));
    expect!["steps[3].value: a wait needs a duration, e.g. 5s"].assert_eq(&e.to_string());
    let e = refused(upsert_scene(
        &doc,
        None,
        &form(&[
            ("name", "dim"),
            ("steps[0].action", "lights"),
            ("steps[0].value", "30"),
            ("steps[4].action", "curtains"),
            ("steps[4].value", "50"),
            ("steps[4].mode", "cool"),
            ("steps[7].action", "lights"),
            ("steps[7].value", "150"),
        ]),
    ));
    expect![[r#"
        steps[4]: mode and setpoint belong to an hvac step
        steps[7]: level 150 is out of range 0..=100"#]]
    .assert_eq(&e.to_string());
}

#[test]
fn settings_errors_are_on_their_fields() {
    let doc = demo();
    let e = refused(set_settings(
        &doc,
        &form(&[("site.name", "Demo"), ("site.timezone", "Europe/Atlantis")]),
    ));
    expect![[r#"site.timezone: unknown time zone 'Europe/Atlantis': use an IANA name such as "Europe/Berlin""#]]
        .assert_eq(&e.to_string());
    let e = refused(set_settings(
        &doc,
        &form(&[
            ("site.name", ""),
            ("cloud.host", "mqtt.example.com"),
            ("cloud.port", "88830"),
            ("cloud.site", "hq"),
            ("cloud.gateway", "floor/3"),
            ("cloud.ca", "/etc/roomgate/ca.pem"),
        ]),
    ));
    expect![[r#"
        site.name: the site needs a name
        cloud.port: '88830' is not a port (1 to 65535)
        cloud.gateway: 'floor/3' is not a valid site or gateway id: use 1 to 64 of a-z, 0-9 and '-'
        cloud.cert: TLS needs this gateway's certificate (PEM file)
        cloud.key: TLS needs this gateway's private key (PEM file)"#]]
    .assert_eq(&e.to_string());
}

#[test]
fn the_hub_connection_is_set_and_removed() {
    let start = demo();
    let doc = ok(set_settings(
        &start,
        &form(&[
            ("site.name", "Demo floor (simulated)"),
            ("site.timezone", "Europe/Berlin"),
            ("cloud.host", "mqtt.example.com"),
            ("cloud.port", "8883"),
            ("cloud.site", "hq"),
            ("cloud.gateway", "floor-3"),
            ("cloud.ca", "/etc/roomgate/ca.pem"),
            ("cloud.cert", "/etc/roomgate/gw.pem"),
            ("cloud.key", "/etc/roomgate/gw.key"),
            ("cloud.tls", "on"),
        ]),
    ));
    changes(&start, &doc, expect!["cloud added"]);
    let cloud = doc.site().cloud.as_ref().expect("a hub connection");
    assert_eq!(
        (cloud.host.as_str(), cloud.port),
        ("mqtt.example.com", 8883)
    );
    assert!(cloud.tls.is_some());
    let lab = ok(set_settings(
        &doc,
        &form(&[
            ("site.name", "Demo floor (simulated)"),
            ("site.timezone", "Europe/Berlin"),
            ("cloud.host", "127.0.0.1"),
            ("cloud.port", "1883"),
            ("cloud.site", "hq"),
            ("cloud.gateway", "floor-3"),
            ("cloud.tls", "false"),
        ]),
    ));
    assert!(lab.site().cloud.as_ref().is_some_and(|c| c.tls.is_none()));
    let alone = ok(set_settings(
        &lab,
        &form(&[("site.name", "Demo floor"), ("cloud.tls", "false")]),
    ));
    changes(
        &lab,
        &alone,
        expect![[r#"
            site: name "Demo floor (simulated)" → "Demo floor"
            site: timezone Europe/Berlin → (default)
            cloud removed"#]],
    );
}

// ---------------------------------------------------------------------------------------
// Renames carry through; removals are refused while something uses the object
// ---------------------------------------------------------------------------------------

#[test]
fn removing_a_bound_device_lists_its_users() {
    let doc = demo();
    let e = refused(remove_device(&doc, "lights-huddle"));
    expect![[r#"
        device 'lights-huddle' is still in use:
        room h1 (Huddle A) binds light to lights-huddle/ch1
        room h2 (Huddle B) binds light to lights-huddle/ch2"#]]
    .assert_eq(&e.to_string());
    let e = refused(remove_point(&mixed(), "hvac", "co2"));
    expect![[r#"
        point 'hvac/co2' is still in use:
        room r1 (Boardroom) binds co2 to hvac/co2
        [cloud.telemetry] deadband names "hvac/co2""#]]
    .assert_eq(&e.to_string());
    let e = refused(remove_device(&mixed(), "lights"));
    expect![[r#"
        device 'lights' is still in use:
        room r1 (Boardroom) binds light to lights/relay
        room r1 (Boardroom) binds light_level to lights/dim
        [cloud.telemetry] points include "lights/relay""#]]
    .assert_eq(&e.to_string());
    let e = refused(remove_bus(&doc, "rs485-huddles"));
    expect![[r#"
        bus 'rs485-huddles' is still in use:
        device lights-huddle is a unit on it"#]]
    .assert_eq(&e.to_string());
    let e = refused(remove_scene(&doc, "presentation"));
    expect![[r#"
        scene 'presentation' is still in use:
        room r103 offers it (scenes)"#]]
    .assert_eq(&e.to_string());
}

#[test]
fn what_nothing_uses_can_be_removed() {
    let start = demo();
    let doc = ok(set_bindings(&start, "h1", &form(&[("light", "")])));
    let doc = ok(set_bindings(&doc, "h2", &form(&[("light", "")])));
    let doc = ok(remove_device(&doc, "lights-huddle"));
    let doc = ok(remove_bus(&doc, "rs485-huddles"));
    let doc = ok(remove_point(&doc, "curtain-103", "position"));
    let mut r103 = room_form(&doc, "r103").expect("form");
    r103.insert("scenes".into(), "presentation".into());
    let doc = ok(upsert_room(&doc, Some("r103"), &r103));
    let doc = ok(remove_scene(&doc, "cleaning"));
    let doc = ok(remove_room(&doc, "s1"));
    changes(
        &start,
        &doc,
        expect![[r#"
            bus rs485-huddles removed
            device curtain-103: point position removed
            device lights-huddle removed
            scene cleaning removed
            room r103: scenes ["presentation", "cleaning"] → ["presentation"]
            room h1: bindings.light lights-huddle/ch1 → (default)
            room h2: bindings.light lights-huddle/ch2 → (default)
            room s1 removed"#]],
    );
    let e = refused(remove_room(&doc, "s1"));
    expect!["there is no room 's1'"].assert_eq(&e.to_string());
    let e = refused(remove_point(&doc, "curtain-103", "position"));
    expect!["there is no point of device 'curtain-103' named 'position'"].assert_eq(&e.to_string());
}

#[test]
fn renames_carry_through_to_what_refers_to_them() {
    let start = mixed();
    let mut device = device_form(&start, "hvac").expect("form");
    device.insert("id".into(), "ahu-1".into());
    let doc = ok(upsert_device(&start, Some("hvac"), &device));
    let mut point = point_form(&doc, "ahu-1", "co2").expect("form");
    point.insert("id".into(), "co2-room".into());
    let doc = ok(upsert_point(&doc, "ahu-1", Some("co2"), &point));
    let mut bus = bus_form(&doc, "rs485-1").expect("form");
    bus.insert("id".into(), "line-a".into());
    let doc = ok(upsert_bus(&doc, Some("rs485-1"), &bus));
    let mut scene = scene_form(&doc, "presentation").expect("form");
    scene.insert("name".into(), "talk".into());
    let doc = ok(upsert_scene(&doc, Some("presentation"), &scene));
    changes(
        &start,
        &doc,
        expect![[r#"
            telemetry: points ["hvac/*", "lights/relay"] → ["ahu-1/*", "lights/relay"]
            telemetry: deadband.ahu-1/co2-room (default) → 20.0
            telemetry: deadband.hvac/co2 20.0 → (default)
            bus line-a added
            bus rs485-1 removed
            device lights: bus rs485-1 → line-a
            device ahu-1 added
            device hvac removed
            scene talk added
            scene presentation removed
            room r1: scenes ["presentation"] → ["talk"]
            room r1: bindings.co2 hvac/co2 → ahu-1/co2-room"#]],
    );
}

// ---------------------------------------------------------------------------------------
// Forms of what is there give it back unchanged
// ---------------------------------------------------------------------------------------

#[test]
fn every_object_edited_through_its_own_form_is_unchanged() {
    for doc in [demo(), mixed()] {
        let mut edited = 0;
        let same = |result: Result<SiteDocument, FormErrors>, what: &str| {
            let again = result.unwrap_or_else(|e| panic!("{what}: {e}"));
            let d = diff(&doc, &again).expect("diff");
            assert!(d.is_empty(), "{what}:\n{d}");
        };
        for device in &doc.site().devices {
            let id = device.id.as_str();
            let f = device_form(&doc, id).expect("form");
            same(upsert_device(&doc, Some(id), &f), id);
            if !matches!(device.kind, DeviceKind::Serial(_)) {
                for p in &device.points {
                    let f = point_form(&doc, id, &p.id).expect("form");
                    same(upsert_point(&doc, id, Some(&p.id), &f), &p.id);
                    edited += 1;
                }
            }
        }
        for bus in &doc.site().buses {
            let f = bus_form(&doc, &bus.id).expect("form");
            same(upsert_bus(&doc, Some(&bus.id), &f), &bus.id);
        }
        for room in &doc.site().rooms {
            let id = room.config.id.as_str();
            same(
                upsert_room(&doc, Some(id), &room_form(&doc, id).expect("form")),
                id,
            );
            let f = bindings_form(&doc, id).expect("form");
            same(set_bindings(&doc, id, &f), id);
            same(
                set_policy(&doc, id, &policy_form(&doc, id).expect("form")),
                id,
            );
            edited += 1;
        }
        let toml = doc.to_toml().expect("export");
        let file: SiteFile = toml::from_str(&toml).expect("wire form");
        for scene in &file.scenes {
            let name = scene.name.get_ref();
            let f = scene_form(&doc, name).expect("form");
            same(upsert_scene(&doc, Some(name), &f), name);
            edited += 1;
        }
        same(
            set_default_policy(&doc, &default_policy_form(&doc).expect("form")),
            "defaults",
        );
        same(
            set_settings(&doc, &settings_form(&doc).expect("form")),
            "settings",
        );
        assert!(edited > 10);
    }
}

#[test]
fn forms_are_filled_with_the_site_files_words() {
    let doc = mixed();
    let show = |f: Form| {
        let lines: Vec<String> = f.iter().map(|(k, v)| format!("{k} = {v}")).collect();
        lines.join("\n")
    };
    expect![[r#"
        address = 0
        id = mode
        labels = 0=off; 1=heat; 2=cool; 10=eco
        table = holding_register
        type = u16"#]]
    .assert_eq(&show(point_form(&doc, "hvac", "mode").expect("form")));
    expect![[r#"
        name = presentation
        steps[0].action = lights
        steps[0].value = 40
        steps[1].action = wait
        steps[1].value = 5s
        steps[2].action = hvac
        steps[2].mode = cool
        steps[2].setpoint = 22
        steps[2].value = on"#]]
    .assert_eq(&show(scene_form(&doc, "presentation").expect("form")));
    expect![[r#"
        access.unlock_for = 5s
        capacity = 8
        id = r1
        kind = bookable
        name = Boardroom
        scenes = presentation
        template = small"#]]
    .assert_eq(&show(room_form(&doc, "r1").expect("form")));
    expect![[r#"
        cloud.ca = /etc/roomgate/ca.pem
        cloud.cert = /etc/roomgate/gw.pem
        cloud.gateway = gw-1
        cloud.host = 127.0.0.1
        cloud.key = /etc/roomgate/gw.key
        cloud.port = 8883
        cloud.site = site-t
        cloud.tls = true
        site.name = Mixed floor
        site.timezone = Europe/Berlin"#]]
    .assert_eq(&show(settings_form(&doc).expect("form")));
    let e = refused(upsert_point(
        &doc,
        "door-reader",
        None,
        &form(&[("id", "x")]),
    ));
    expect!["device 'door-reader' is a serial device: its points come from its profile"]
        .assert_eq(&e.to_string());
}

// ---------------------------------------------------------------------------------------
// Choices
// ---------------------------------------------------------------------------------------

fn offered(site: &Site, cap: Capability) -> String {
    let all: Vec<String> = binding_choices(site, cap)
        .iter()
        .map(|c| format!("{} ({})", c.point, c.label))
        .collect();
    all.join("\n")
}

#[test]
fn binding_choices_follow_the_site_files_rule() {
    let doc = mixed();
    let site = doc.site();
    expect![[r#"
        lights/relay (lights: relay)
        hvac/power (HVAC "north", room 1: power)
        hvac/alarm (HVAC "north", room 1: alarm)
        fcu/power (fcu: power)"#]]
    .assert_eq(&offered(site, Capability::Light));
    expect![[r#"
        lights/dim (lights: dim (%))
        hvac/mode (HVAC "north", room 1: mode)
        hvac/setpoint (HVAC "north", room 1: setpoint)
        fcu/setpoint (fcu: setpoint (°C))"#]]
    .assert_eq(&offered(site, Capability::LightLevel));
    expect![[r#"
        lights/dim (lights: dim (%))
        hvac/mode (HVAC "north", room 1: mode)
        hvac/setpoint (HVAC "north", room 1: setpoint)
        hvac/temp (HVAC "north", room 1: temp (°C))
        hvac/co2 (HVAC "north", room 1: co2 (ppm))
        fcu/setpoint (fcu: setpoint (°C))
        fcu/temperature (fcu: temperature)"#]]
    .assert_eq(&offered(site, Capability::Co2));
    expect!["door-reader/reader (door-reader: reader)"]
        .assert_eq(&offered(site, Capability::Reader));
    // Every choice is accepted by the bindings form, and the demo's PIR inputs drive nothing.
    for cap in Capability::ALL {
        for c in binding_choices(site, cap) {
            ok(set_bindings(
                &doc,
                "r1",
                &form(&[(cap.key(), &c.point.to_string())]),
            ));
        }
    }
    let demo = demo();
    assert!(!offered(demo.site(), Capability::Light).contains("pir/"));
    assert!(offered(demo.site(), Capability::Occupancy).contains("pir/in1"));
}

#[test]
fn the_select_boxes_offer_what_the_site_file_reads() {
    let loads = |text: String| {
        toml::from_str::<SiteFile>(&text)
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    let site = |device: &str, point: &str, room: &str, step: &str| {
        format!(
            "[site]\nname = \"x\"\n[[devices]]\nid = \"d\"\n{device}\npoints = [{{ id = \"p\", {point} }}]\n\
             [[scenes]]\nname = \"s\"\nsteps = [{{ {step} }}]\n\
             [[rooms]]\nid = \"r\"\nname = \"R\"\n{room}\n"
        )
    };
    let ok_room = "kind = \"closed\"";
    let ok_device = "protocol = \"modbus-tcp\"";
    let mut checked = 0;
    let mut check = |text: String| {
        if let Err(e) = loads(text.clone()) {
            panic!("{e}\n{text}");
        }
        checked += 1;
    };
    for v in PROTOCOLS {
        check(site(
            &format!("protocol = \"{v}\""),
            "",
            ok_room,
            "wait = \"1s\"",
        ));
    }
    for v in PARITIES {
        check(site(
            &format!("{ok_device}\nparity = \"{v}\""),
            "",
            ok_room,
            "wait = \"1s\"",
        ));
    }
    for (key, values) in [
        ("table", MODBUS_TABLES),
        ("word_order", WORD_ORDERS),
        ("access", POINT_ACCESS),
        ("kind", BACNET_KINDS),
    ] {
        for v in values {
            check(site(
                ok_device,
                &format!("{key} = \"{v}\""),
                ok_room,
                "wait = \"1s\"",
            ));
        }
    }
    for v in ROOM_KINDS {
        check(site(
            ok_device,
            "",
            &format!("kind = \"{v}\""),
            "wait = \"1s\"",
        ));
    }
    for (key, values) in [("hvac_mode", HVAC_MODES), ("closed_light", CLOSED_LIGHTS)] {
        for v in values {
            let room = format!("{ok_room}\npolicy = {{ {key} = \"{v}\" }}");
            check(site(ok_device, "", &room, "wait = \"1s\""));
        }
    }
    for v in HVAC_MODES {
        check(site(
            ok_device,
            "",
            ok_room,
            &format!("hvac = \"on\", mode = \"{v}\""),
        ));
    }
    for v in STEP_ACTIONS {
        let value = if matches!(*v, "curtains" | "fan") {
            "50"
        } else {
            "\"on\""
        };
        check(site(ok_device, "", ok_room, &format!("{v} = {value}")));
    }
    assert!(checked > 40);
    assert!(
        loads(site(
            ok_device,
            "table = \"holding\"",
            ok_room,
            "wait = \"1s\""
        ))
        .is_err()
    );
    // Data types, layouts and address modes are read by the drivers' parsers.
    for v in DATA_TYPES {
        let t: drivers::point::DataType = v.parse().expect("a data type");
        assert_eq!(t.name(), *v);
    }
    for v in LAYOUTS {
        drivers::point::parse_layout(v).expect("a layout");
    }
    let bacnet = |mode: &str| {
        format!(
            "[site]\nname = \"x\"\n[[devices]]\nid = \"b\"\nprotocol = \"bacnet\"\ninstance = 1\n\
             address = \"10.0.0.1\"\naddress_mode = \"{mode}\"\n"
        )
    };
    for v in &ADDRESS_MODES[1..] {
        SiteDocument::load(&bacnet(v)).unwrap_or_else(|e| panic!("{v}: {e}"));
    }
    assert!(SiteDocument::load(&bacnet("broadcast")).is_err());
}
