//! `gateway check`: a broken site file gets every error with its line, column, path and reason.

use std::process::Command;

use expect_test::expect;

const BROKEN: &str = r#"
[site]
name = "Broken floor"
timezone = "Mars/Olympus"

[defaults.policy]
off_after = "25m"

[[devices]]
id = "lights"
protocol = "modbus-tcp"
host = "10.0.0.300"
port = 502
unit = 300
poll = "fast"
points = [
  { id = "r1", table = "coil", address = 70000, type = "bool" },
  { id = "r1", table = "coil", address = 1, type = "bool" },
  { id = "pir", table = "discrete_input", address = 0, type = "bool" },
  { id = "temp", table = "input_register", address = 0, type = "u16", bit = 3 },
]

[[scenes]]
name = "presentation"
steps = [{ curtains = 120 }, { lights = "dim" }, { wait = "30s", lights = 20 }]

[[rooms]]
id = "r1"
name = "One"
kind = "bookable"
meeting_scene = "party"
bindings = { light = "lights/nope", socket = "sockets/s1", status_light = "lights/pir", occupancy = "lights/r1", aircon = "lights/r1" }

[[rooms]]
id = "r1"
name = "Again"
kind = "instant_use"
policy = { no_show_after = "10", dim_after = "2m", vacancy_release = "off", dim_level = 0 }
"#;

#[test]
fn every_error_in_a_broken_site_is_reported_with_where_and_why() {
    let errors = gateway::site::load(BROKEN).expect_err("broken");
    let text = errors.to_string();
    expect![[r#"
        4:12: site.timezone: unknown time zone 'Mars/Olympus': use an IANA name such as "Europe/Berlin"
        7:13: defaults.policy.off_after: off_after must not exceed 20 min: energy codes require lights off within 20 min of vacancy (got 25 min)
        12:8: devices[lights].host: '10.0.0.300' is not an IP address
        14:8: devices[lights].unit: Modbus unit id 300 is out of range 0..=255
        15:8: devices[lights].poll: 'fast' is not a duration: write a number and a unit (ms, s, m, h), e.g. "10m"
        17:42: devices[lights].points[r1].address: Modbus address 70000 is out of range 0..=65535 (addresses are 0-based: register 40001 is address 0)
        18:10: devices[lights].points[r1]: point id 'r1' is used twice in device 'lights'
        20:10: devices[lights].points[temp]: point `temp`: a bit number is only allowed for a bool in a holding or input register, not for a u16 in the input register table
        25:10: scenes[presentation].steps[0]: curtain position 120 is out of range 0..=100 (% open)
        25:30: scenes[presentation].steps[1]: 'dim': write "on", "off" or a level 0..=100
        25:50: scenes[presentation].steps[2]: a step sets exactly one of lights, sockets, curtains, hvac, projector, screen, ventilation, purifier, fan or wait
        31:17: rooms[r1].meeting_scene: unknown scene 'party' (defined: leave, meeting, presentation)
        32:22: rooms[r1].bindings.light: unknown point 'lights/nope': device 'lights' has r1, pir
        32:46: rooms[r1].bindings.socket: unknown point 'sockets/s1': there is no device 'sockets'
        32:75: rooms[r1].bindings.status_light: point 'lights/pir' is read-only, but status_light is written by the gateway
        32:123: rooms[r1].bindings.aircon: unknown capability 'aircon' (known: light, light_level, hvac_power, hvac_mode, hvac_setpoint, curtain, socket, status_light, occupancy, temperature, co2, projector, screen, ventilation, purifier, hvac_fan, door_lock, humidity, pm25, voc, reader)
        35:6: rooms[r1]: room id 'r1' is used twice
        38:28: rooms[r1].policy.no_show_after: '10' has a number without a unit (ms, s, m or h)
        38:89: rooms[r1].policy.dim_level: dim_level must be between 1 and 99 percent (got 0)"#]]
    .assert_eq(&text);
}

#[test]
fn syntax_and_type_errors_point_at_the_line() {
    let errors = gateway::site::load(
        "[site]\nname = \"x\"\n\n[[rooms]]\nid = \"r1\"\nname = \"One\"\nkind = \"boardroom\"\n",
    )
    .expect_err("bad kind");
    expect![
        "7:8: unknown variant `boardroom`, expected one of `bookable`, `instant_use`, `closed`"
    ]
    .assert_eq(&errors.to_string());
    let errors =
        gateway::site::load("[site]\nname = \"x\"\ncolour = 1\n").expect_err("unknown key");
    expect!["3:1: unknown field `colour`, expected `name` or `timezone`"]
        .assert_eq(&errors.to_string());
}

fn gateway_bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gateway"))
}

#[test]
fn the_check_command_exits_non_zero_and_lists_errors_with_the_file_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("site.toml");
    std::fs::write(&path, BROKEN).expect("write");
    let out = gateway_bin()
        .arg("check")
        .arg(&path)
        .output()
        .expect("run gateway check");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("error(s) in the site file"), "{stderr}");
    assert!(
        stderr.contains(&format!("{}:17:", path.display())),
        "errors carry file:line: {stderr}"
    );
}

#[tokio::test]
async fn the_demo_site_passes_the_check() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("demo.toml");
    let out = gateway_bin()
        .args(["demo", "--print-site"])
        .output()
        .expect("gateway demo --print-site");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(&path, &out.stdout).expect("write");
    let out = gateway_bin()
        .arg("check")
        .arg(&path)
        .output()
        .expect("check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("7 rooms, 18 devices"), "{stdout}");
}

const TEMPLATED: &str = r#"
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

#[test]
fn a_room_takes_its_template_and_overrides_what_it_sets() {
    let site = gateway::site::load(TEMPLATED).expect("valid");
    let a = &site.rooms[0].config;
    assert_eq!(
        a.policy.no_show_after,
        scenes::Span::minutes(5),
        "from the template"
    );
    assert_eq!(
        a.policy.off_after,
        scenes::Span::minutes(12),
        "the room's own"
    );
    assert_eq!(a.policy.dim_after, scenes::Span::minutes(3));
    assert_eq!(a.access.staff_groups, vec!["cleaning".to_owned()]);
    assert_eq!(a.air.len(), 1);
    assert!(a.equipment.lights && a.equipment.ventilation && !a.equipment.hvac);
    assert_eq!(
        site.people.lookup(" 04a1 ").map(|p| p.id.as_str()),
        Some("ana@example.com")
    );
    assert!(site.people.lookup("04A2").is_none());
}

#[test]
fn template_people_and_air_mistakes_are_reported_where_they_are() {
    let broken = TEMPLATED
        .replace("template = \"small\"", "template = \"small\"\n\n[[rooms]]\nid = \"b\"\nname = \"B\"\nkind = \"bookable\"\ntemplate = \"tiny\"")
        .replace("off_below = 800", "off_below = 1200")
        .replace("[[people]]\nid = \"ana@example.com\"\ncredentials = [\"04A1\"]", "[[people]]\nid = \"ana@example.com\"\ncredentials = [\"04A1\"]\n\n[[people]]\nid = \"bo@example.com\"\ncredentials = [\" 04a1\"]");
    let errors = gateway::site::load(&broken).expect_err("broken");
    expect![[r#"
        20:8: templates[small].air[0]: an air rule for CO2 must switch off below the level it switches on above (1200 is not below 1000)
        32:12: rooms[b].template: unknown template 'tiny' (defined: small)
        42:16: people[bo@example.com].credentials: credential ' 04a1' already belongs to ana@example.com"#]]
    .assert_eq(&errors.to_string());
}

#[test]
fn the_demo_site_and_the_templated_site_export_to_toml_that_loads_the_same() {
    let out = gateway_bin()
        .args(["demo", "--print-site"])
        .output()
        .expect("gateway demo --print-site");
    assert!(out.status.success());
    let demo = String::from_utf8(out.stdout).expect("utf-8");
    for src in [demo.as_str(), TEMPLATED] {
        let first = gateway::site::SiteDocument::load(src).expect("loads");
        let text = first.to_toml().expect("export");
        let second = gateway::site::SiteDocument::load(&text)
            .unwrap_or_else(|e| panic!("the export loads: {e}\n{text}"));
        let diff = gateway::site::diff(&first, &second).expect("diff");
        assert!(diff.is_empty(), "{diff}\n{text}");
        let plan = gateway::site::plan(first.site(), second.site());
        assert!(plan.is_empty(), "{plan}\n{text}");
        assert_eq!(second.to_toml().expect("again"), text, "a fixpoint");
        assert_eq!(
            (first.site().rooms.len(), first.site().devices.len()),
            (second.site().rooms.len(), second.site().devices.len())
        );
    }
}
