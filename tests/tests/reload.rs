//! A site file changed while the gateway runs (`POST /api/site`), over real sockets against the
//! Modbus simulators: only what changed reloads, everything else keeps its connection and its
//! meeting; refused changes (a restart needed, errors in the file) change nothing.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use drivers::sim::{SimDevice, SimKind};
use gateway::clock::{Clock, ManualClock};
use roomgate_tests::{Api, Request, http, send, wait_for};
use scenes::{Span, Timestamp};
use serde_json::json;

/// 2026-03-02 00:00 UTC, a Monday.
const DAY: i64 = 1_772_409_600_000;
const WAIT: Duration = Duration::from_secs(10);

fn at(hhmm: &str) -> Timestamp {
    let (h, m) = hhmm.split_once(':').expect("hh:mm");
    let minutes: i64 = h.parse::<i64>().expect("h") * 60 + m.parse::<i64>().expect("m");
    Timestamp::from_millis(DAY) + Span::minutes(minutes)
}

fn iso(hhmm: &str) -> String {
    format!("2026-03-02T{hhmm}:00Z")
}

/// The simulators, by device id. `unused` is on the site but bound to no room.
const DEVICES: [(&str, SimKind); 6] = [
    ("lights", SimKind::LightModule),
    ("hvac", SimKind::HvacController),
    ("pir", SimKind::PirInput),
    ("status", SimKind::StatusLight),
    ("meter", SimKind::HvacController),
    ("unused", SimKind::LightModule),
];

fn site(sims: &BTreeMap<&str, SimDevice>) -> String {
    let port = |id: &str| sims[id].addr().port();
    format!(
        r#"[site]
name = "Reload floor"
timezone = "UTC"

[[devices]]
id = "lights"
protocol = "modbus-tcp"
host = "127.0.0.1"
port = {lights}
poll = "50ms"
points = [
  {{ id = "r1", table = "coil", address = 0, type = "bool" }},
  {{ id = "r2", table = "coil", address = 1, type = "bool" }},
  {{ id = "spare", table = "coil", address = 2, type = "bool" }},
]

[[devices]]
id = "hvac"
protocol = "modbus-tcp"
host = "127.0.0.1"
port = {hvac}
poll = "50ms"
points = [{{ id = "power", table = "coil", address = 0, type = "bool" }}]

[[devices]]
id = "pir"
protocol = "modbus-tcp"
host = "127.0.0.1"
port = {pir}
poll = "50ms"
points = [
  {{ id = "r1", table = "discrete_input", address = 0, type = "bool" }},
  {{ id = "r2", table = "discrete_input", address = 1, type = "bool" }},
]

[[devices]]
id = "status"
protocol = "modbus-tcp"
host = "127.0.0.1"
port = {status}
poll = "50ms"
points = [{{ id = "r1", table = "holding_register", address = 0, type = "u16" }}]

[[devices]]
id = "meter"
protocol = "modbus-tcp"
host = "127.0.0.1"
port = {meter}
poll = "50ms"
points = [{{ id = "co2", table = "input_register", address = 2, type = "u16", unit = "ppm" }}]

[[devices]]
id = "unused"
protocol = "modbus-tcp"
host = "127.0.0.1"
port = {unused}
poll = "50ms"
points = [{{ id = "relay", table = "coil", address = 0, type = "bool" }}]

[[rooms]]
id = "r1"
name = "Boardroom"
kind = "bookable"
bindings = {{ light = "lights/r1", hvac_power = "hvac/power", occupancy = "pir/r1", status_light = "status/r1" }}

[[rooms]]
id = "r2"
name = "Focus room"
kind = "bookable"
bindings = {{ light = "lights/r2", occupancy = "pir/r2", co2 = "meter/co2" }}
"#,
        lights = port("lights"),
        hvac = port("hvac"),
        pir = port("pir"),
        status = port("status"),
        meter = port("meter"),
        unused = port("unused"),
    )
}

fn edit(src: &str, edits: &[(&str, &str)]) -> String {
    let mut out = src.to_owned();
    for (from, to) in edits {
        assert!(out.contains(from), "'{from}' is not in the site");
        out = out.replacen(from, to, 1);
    }
    out
}

/// `POST path` with a text body (the site file); the answer's status and JSON.
async fn post_text(api: &Api, path: &str, text: &str) -> (u16, serde_json::Value) {
    let r = send(
        api,
        Request::new("POST", path).body("application/toml", text.as_bytes().to_vec()),
    )
    .await;
    (r.status, r.body)
}

fn lines(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|l| l.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

struct Harness {
    sims: BTreeMap<&'static str, SimDevice>,
    clock: ManualClock,
    running: gateway::app::Running,
    /// The API as an installer (site changes need the role).
    api: Api,
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Harness {
    async fn start() -> (Harness, String) {
        let mut sims = BTreeMap::new();
        for (id, kind) in DEVICES {
            let sim = SimDevice::spawn(kind, ([127, 0, 0, 1], 0).into())
                .await
                .expect("simulator");
            sims.insert(id, sim);
        }
        let text = site(&sims);
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("site.toml");
        std::fs::write(&path, &text).expect("site file written");
        let clock = ManualClock::new(at("07:00"));
        let running = gateway::app::start_from_file(
            &path,
            &dir.path().join("data"),
            SocketAddr::from(([127, 0, 0, 1], 0)),
            Clock::Manual(clock.clone()),
        )
        .await
        .expect("gateway starts");
        let api = Api::installer(&running);
        let h = Harness {
            sims,
            clock,
            running,
            api,
            path,
            _dir: dir,
        };
        h.all_online().await;
        (h, text)
    }

    fn gw(&self) -> &gateway::runtime::GatewayHandle {
        self.running.handle()
    }

    fn api(&self) -> &Api {
        &self.api
    }

    async fn all_online(&self) {
        let gw = self.gw().clone();
        wait_for("every device online", WAIT, || {
            let s = gw.snapshot();
            !s.devices.is_empty() && s.devices.iter().all(|d| d.state == "online")
        })
        .await;
    }

    fn connections(&self) -> BTreeMap<&'static str, u64> {
        (self.sims.iter())
            .map(|(id, s)| (*id, s.connection_count()))
            .collect()
    }

    async fn advance_to(&self, hhmm: &str) {
        let target = at(hhmm);
        self.gw().settle().await.expect("settle");
        loop {
            let step = (self.clock.now() + Span::minutes(1)).min(target);
            self.clock.set(step);
            self.gw().settle().await.expect("settle");
            if step >= target {
                break;
            }
        }
    }

    async fn presence(&self, channel: u16, present: bool, room: &str) {
        self.sims["pir"].set_discrete_input(channel, present);
        let want = if present { "occupied" } else { "vacant" };
        let gw = self.gw().clone();
        wait_for(&format!("{room} {want}"), WAIT, || {
            gw.snapshot()
                .rooms
                .iter()
                .any(|r| r.id == room && r.occupancy == want)
        })
        .await;
    }

    fn state(&self, room: &str) -> String {
        (self.gw().snapshot().rooms.iter())
            .find(|r| r.id == room)
            .map(|r| r.state.to_owned())
            .unwrap_or_default()
    }

    async fn book(&self, room: &str, from: &str, to: &str) -> (u16, serde_json::Value) {
        let r = http(
            self.api(),
            "POST",
            &format!("/api/rooms/{room}/bookings"),
            Some(&json!({ "start": iso(from), "end": iso(to), "subject": "Review", "organizer": "ana@example.com" })),
        )
        .await;
        (r.status, r.body)
    }

    async fn running_site(&self) -> String {
        let r = http(self.api(), "GET", "/api/site", None).await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.text
    }

    fn file(&self) -> String {
        std::fs::read_to_string(&self.path).expect("site file")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn site_changes_reload_only_what_changed() {
    let (h, original) = Harness::start().await;
    h.presence(1, false, "r2").await;

    // A meeting runs in r1 with its lights on, people in the room.
    h.advance_to("08:00").await;
    h.presence(0, true, "r1").await;
    let (status, body) = h.book("r1", "09:00", "12:00").await;
    assert_eq!(status, 201, "{body}");
    h.advance_to("09:00").await;
    let r = http(h.api(), "POST", "/api/rooms/r1/checkin", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    wait_for("r1's lights on", WAIT, || h.sims["lights"].coil(0)).await;
    assert_eq!(h.state("r1"), "in_meeting");
    let before = h.connections();
    let running_before = h.running_site().await;

    // The meter (r2's CO₂ sensor) gets a new point. A dry run changes nothing.
    let meter_point = edit(
        &original,
        &[(
            "[{ id = \"co2\", table = \"input_register\", address = 2, type = \"u16\", unit = \"ppm\" }]",
            "[\n  { id = \"co2\", table = \"input_register\", address = 2, type = \"u16\", unit = \"ppm\" },\n  { id = \"temp\", table = \"input_register\", address = 3, type = \"u16\" },\n]",
        )],
    );
    let (status, body) = post_text(h.api(), "/api/site?dry_run=1", &meter_point).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["dry_run"], true);
    assert_eq!(lines(&body["diff"]), ["device meter: point temp added"]);
    assert_eq!(
        lines(&body["report"]["plan"]),
        ["restart device meter: points added: temp"]
    );
    assert_eq!(body["report"]["applied"], false);
    h.gw().settle().await.expect("settle");
    assert_eq!(h.connections(), before, "a dry run restarts nothing");
    assert_eq!(h.file(), original, "a dry run writes nothing");
    assert_eq!(h.running_site().await, running_before);

    // Applied: only the meter's connection restarts; r1's meeting goes on, lights on.
    let (status, body) = post_text(h.api(), "/api/site", &meter_point).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["report"]["applied"], true);
    assert_eq!(
        lines(&body["report"]["plan"]),
        ["restart device meter: points added: temp"]
    );
    wait_for("the meter reconnected", WAIT, || {
        h.sims["meter"].connection_count() > before["meter"]
    })
    .await;
    h.all_online().await;
    h.gw().settle().await.expect("settle");
    let after = h.connections();
    for (id, n) in &before {
        if *id != "meter" {
            assert_eq!(after[id], *n, "device {id} kept its connection");
        }
    }
    assert!(h.sims["lights"].coil(0), "r1's lights stay on");
    assert_eq!(h.state("r1"), "in_meeting");
    assert_eq!(
        h.file(),
        meter_point,
        "the new site is written where it was loaded"
    );
    let prev = std::fs::read_to_string(h.path.with_file_name("site.toml.prev")).expect("prev");
    assert_eq!(prev, original, "the previous site file is kept");
    assert!(h.running_site().await.contains("id = \"temp\""));

    // r2's no-show window goes from 10 to 5 minutes: its next booking is released at 10:05.
    let (status, body) = h.book("r2", "10:00", "11:00").await;
    assert_eq!(status, 201, "{body}");
    let shorter = edit(
        &meter_point,
        &[(
            "name = \"Focus room\"\nkind = \"bookable\"\n",
            "name = \"Focus room\"\nkind = \"bookable\"\npolicy = { no_show_after = \"5m\" }\n",
        )],
    );
    let counts = h.connections();
    let (status, body) = post_text(h.api(), "/api/site", &shorter).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        lines(&body["report"]["plan"]),
        ["reconfigure room r2: policy"]
    );
    h.gw().settle().await.expect("settle");
    assert_eq!(h.connections(), counts, "a room change restarts no device");
    h.advance_to("10:04").await;
    assert_eq!(h.state("r2"), "starting_soon", "not released before 10:05");
    h.advance_to("10:05").await;
    assert_eq!(h.state("r2"), "free", "released by the new 5-minute rule");
    let r = http(h.api(), "GET", "/api/rooms/r2", None).await;
    assert!(
        r.text.contains("released as a no-show") && r.text.contains("policy: 5 min"),
        "{}",
        r.text
    );
    assert!(
        h.sims["lights"].coil(0),
        "r1's meeting still has its lights"
    );

    // A new room on a spare point, and the unused device removed.
    let counts = h.connections();
    // The unused device's whole section goes; a room is added at the end.
    let start = shorter
        .find("[[devices]]\nid = \"unused\"")
        .expect("section");
    let end = start + shorter[start..].find("[[rooms]]").expect("rooms follow");
    let grown = format!(
        "{}{}\n[[rooms]]\nid = \"r3\"\nname = \"Huddle\"\nkind = \"bookable\"\nbindings = {{ light = \"lights/spare\" }}\n",
        &shorter[..start],
        &shorter[end..]
    );
    let (status, body) = post_text(h.api(), "/api/site", &grown).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        lines(&body["report"]["plan"]),
        ["stop device unused: removed", "start room r3: added"]
    );
    h.gw().settle().await.expect("settle");
    let snap = h.gw().snapshot();
    assert!(
        snap.devices.iter().all(|d| d.id != "unused"),
        "unused stopped"
    );
    assert!(snap.rooms.iter().any(|r| r.id == "r3"), "r3 runs");
    for id in ["lights", "hvac", "pir", "status", "meter"] {
        assert_eq!(
            h.connections()[id],
            counts[id],
            "device {id} kept its connection"
        );
    }
    let (status, body) = h.book("r3", "13:00", "14:00").await;
    assert_eq!(status, 201, "r3 takes bookings: {body}");

    // r3 goes again with its booking: the booking is kept in the store and reported.
    let (status, body) = post_text(h.api(), "/api/site", &shorter).await;
    assert_eq!(status, 200, "{body}");
    let kept = body["report"]["kept_bookings"].as_array().expect("kept");
    assert_eq!(kept.len(), 1, "{body}");
    assert_eq!(kept[0]["room"], "r3");
    let stored = h.running.gateway.store().bookings().expect("bookings");
    assert!(
        stored.iter().any(|b| b.room == "r3"),
        "the store keeps r3's booking"
    );
    h.all_online().await;

    // A time-zone change needs a restart: refused with the reason, nothing changes.
    let written = h.file();
    let running = h.running_site().await;
    let counts = h.connections();
    let oslo = edit(
        &written,
        &[("timezone = \"UTC\"", "timezone = \"Europe/Oslo\"")],
    );
    let (status, body) = post_text(h.api(), "/api/site", &oslo).await;
    assert_eq!(status, 409, "{body}");
    let why = body["error"].as_str().unwrap_or_default();
    assert!(
        why.contains("restart") && why.contains("time zone"),
        "{why}"
    );
    assert_eq!(h.file(), written);
    assert_eq!(h.running_site().await, running);

    // A site with an error: 422 with the line, nothing changes.
    let broken = edit(
        &written,
        &[("no_show_after = \"5m\"", "no_show_after = \"5 parsecs\"")],
    );
    let line = broken
        .lines()
        .position(|l| l.contains("5 parsecs"))
        .expect("the bad line")
        + 1;
    let (status, body) = post_text(h.api(), "/api/site", &broken).await;
    assert_eq!(status, 422, "{body}");
    let errors = body["errors"].as_array().expect("errors");
    assert!(
        errors.iter().any(|e| e["line"] == line),
        "an error on line {line}: {body}"
    );
    assert_eq!(h.file(), written);
    assert_eq!(h.running_site().await, running);
    h.gw().settle().await.expect("settle");
    assert_eq!(h.connections(), counts, "refused changes restart nothing");
    assert_eq!(h.state("r1"), "in_meeting");

    // A new owner that cannot start (the BACnet port is taken): refused, the old site runs.
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").expect("a UDP port");
    let port = taken.local_addr().expect("its address").port();
    let bacnet = format!(
        "{written}\n[bacnet]\ninterface = \"127.0.0.1\"\nport = {port}\nbroadcast = \"127.0.0.1\"\n\n[[devices]]\nid = \"fcu\"\nprotocol = \"bacnet\"\ninstance = 4242\naddress = \"127.0.0.1:47809\"\npoints = [{{ id = \"power\", object = \"binary-output:1\" }}]\n"
    );
    let (status, body) = post_text(h.api(), "/api/site", &bacnet).await;
    assert_eq!(status, 503, "{body}");
    let why = body["error"].as_str().unwrap_or_default();
    assert!(why.contains("nothing was changed"), "{why}");
    assert_eq!(h.file(), written);
    assert_eq!(h.running_site().await, running);
    h.gw().settle().await.expect("settle");
    assert!(h.gw().snapshot().devices.iter().all(|d| d.id != "fcu"));
    assert_eq!(h.connections(), counts, "a refused start restarts nothing");
    drop(taken);

    h.running.shutdown().await;
}
