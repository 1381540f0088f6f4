//! A whole meeting day on a simulated floor, over real sockets, with time advanced fast.
//!
//! The gateway runs for real (store on disk, Modbus TCP drivers, HTTP API); only its clock is
//! manual. Devices are the Modbus simulators, and every assertion reads what a simulator's
//! registers hold, as a building would see it.

use std::collections::BTreeMap;
use std::time::Duration;

use drivers::sim::{SimDevice, SimKind};
use gateway::clock::{Clock, ManualClock};
use roomgate_tests::{Api, f32_from_words, http, wait_for};
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

struct Floor {
    sims: BTreeMap<&'static str, SimDevice>,
}

impl Floor {
    async fn start() -> Floor {
        let mut sims = BTreeMap::new();
        for (id, kind) in [
            ("lights", SimKind::LightModule),
            ("hvac", SimKind::HvacController),
            ("pir", SimKind::PirInput),
            ("status", SimKind::StatusLight),
            ("curtain", SimKind::CurtainMotor),
        ] {
            let sim = SimDevice::spawn(kind, ([127, 0, 0, 1], 0).into())
                .await
                .expect("simulator");
            sims.insert(id, sim);
        }
        Floor { sims }
    }

    fn sim(&self, id: &str) -> &SimDevice {
        &self.sims[id]
    }

    fn site(&self) -> String {
        let port = |id: &str| self.sims[id].addr().port();
        format!(
            r#"
[site]
name = "Test floor"
timezone = "UTC"

[[devices]]
id = "lights"
protocol = "modbus-tcp"
host = "127.0.0.1"
port = {lights}
poll = "50ms"
timeout = "300ms"
points = [
  {{ id = "r1", table = "coil", address = 0, type = "bool" }},
  {{ id = "r1-level", table = "holding_register", address = 0, type = "u16" }},
  {{ id = "h1", table = "coil", address = 1, type = "bool" }},
  {{ id = "door", table = "coil", address = 2, type = "bool" }},
  {{ id = "vent", table = "holding_register", address = 3, type = "u16", unit = "%" }},
]

[[devices]]
id = "hvac"
protocol = "modbus-tcp"
host = "127.0.0.1"
port = {hvac}
poll = "50ms"
timeout = "300ms"
points = [
  {{ id = "power", table = "coil", address = 0, type = "bool" }},
  {{ id = "mode", table = "holding_register", address = 0, type = "u16" }},
  {{ id = "setpoint", table = "holding_register", address = 1, type = "f32" }},
  {{ id = "co2", table = "input_register", address = 2, type = "u16", unit = "ppm" }},
]

[[devices]]
id = "pir"
protocol = "modbus-tcp"
host = "127.0.0.1"
port = {pir}
poll = "50ms"
timeout = "300ms"
points = [
  {{ id = "r1", table = "discrete_input", address = 0, type = "bool" }},
  {{ id = "h1", table = "discrete_input", address = 1, type = "bool" }},
]

[[devices]]
id = "status"
protocol = "modbus-tcp"
host = "127.0.0.1"
port = {status}
poll = "50ms"
points = [{{ id = "r1", table = "holding_register", address = 0, type = "u16" }}]

[[devices]]
id = "curtain"
protocol = "modbus-tcp"
host = "127.0.0.1"
port = {curtain}
poll = "50ms"
points = [{{ id = "target", table = "holding_register", address = 0, type = "u16" }}]

[[rooms]]
id = "r1"
name = "Boardroom"
capacity = 10
kind = "bookable"
access = {{ staff_groups = ["cleaning"], unlock_for = "5s" }}
air = [{{ metric = "co2", on_above = 1000, off_below = 800, on = [{{ ventilation = 100 }}], off = [{{ ventilation = 30 }}] }}]
bindings = {{ light = "lights/r1", light_level = "lights/r1-level", hvac_power = "hvac/power", hvac_mode = "hvac/mode", hvac_setpoint = "hvac/setpoint", occupancy = "pir/r1", status_light = "status/r1", curtain = "curtain/target", door_lock = "lights/door", ventilation = "lights/vent", co2 = "hvac/co2" }}

[[rooms]]
id = "h1"
name = "Phone booth"
kind = "instant_use"
bindings = {{ light = "lights/h1", occupancy = "pir/h1" }}

[[people]]
id = "ana@example.com"
credentials = ["04A1B2C3"]

[[people]]
id = "bo@example.com"
credentials = ["QR:bo-7731"]

[[people]]
id = "kim@example.com"
credentials = ["C0FFEE"]
groups = ["cleaning"]
"#,
            lights = port("lights"),
            hvac = port("hvac"),
            pir = port("pir"),
            status = port("status"),
            curtain = port("curtain"),
        )
    }
}

struct Harness {
    floor: Floor,
    clock: ManualClock,
    running: Option<gateway::app::Running>,
    /// The API as an operator (the token is kept in the store across restarts).
    api: Option<Api>,
    data: tempfile::TempDir,
}

impl Harness {
    async fn start() -> Harness {
        let floor = Floor::start().await;
        let clock = ManualClock::new(at("07:00"));
        let data = tempfile::tempdir().expect("data dir");
        let mut h = Harness {
            floor,
            clock,
            running: None,
            api: None,
            data,
        };
        h.boot().await;
        h
    }

    async fn boot(&mut self) {
        let site = gateway::site::load(&self.floor.site()).expect("test site is valid");
        let running = gateway::app::start(
            site,
            self.data.path(),
            std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            Clock::Manual(self.clock.clone()),
        )
        .await
        .expect("gateway starts");
        self.api = Some(match self.api.take() {
            // A restarted gateway: a new port, the same certificate and token.
            Some(api) => api.at(running.addr),
            None => Api::operator(&running),
        });
        self.running = Some(running);
        let h = self.gw().clone();
        wait_for("every device online", WAIT, || {
            h.snapshot().devices.iter().all(|d| d.state == "online")
                && !h.snapshot().devices.is_empty()
        })
        .await;
    }

    fn gw(&self) -> &gateway::runtime::GatewayHandle {
        self.running.as_ref().expect("running").handle()
    }

    fn api(&self) -> &Api {
        self.api.as_ref().expect("running")
    }

    /// Moves the clock to `hhmm` through every engine deadline on the way, as real time would.
    async fn advance_to(&self, hhmm: &str) {
        let target = at(hhmm);
        self.gw().settle().await.expect("settle");
        loop {
            let now = self.clock.now();
            let step = (now + Span::minutes(1)).min(target);
            self.clock.set(step);
            self.gw().settle().await.expect("settle");
            if step >= target {
                break;
            }
        }
    }

    async fn presence(&self, room: &str, present: bool) {
        let ch = if room == "r1" { 0 } else { 1 };
        self.floor.sim("pir").set_discrete_input(ch, present);
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

    async fn expect_registers(&self, what: &str, cond: impl Fn(&Floor) -> bool) {
        wait_for(what, WAIT, || cond(&self.floor)).await;
    }

    fn state(&self, room: &str) -> String {
        let s = self.gw().snapshot();
        s.rooms
            .iter()
            .find(|r| r.id == room)
            .map(|r| r.state.to_owned())
            .unwrap_or_default()
    }

    async fn book(&self, room: &str, from: &str, to: &str, subject: &str) -> String {
        let r = http(
            self.api(),
            "POST",
            &format!("/api/rooms/{room}/bookings"),
            Some(&json!({ "start": iso(from), "end": iso(to), "subject": subject, "organizer": "ana@example.com" })),
        )
        .await;
        assert_eq!(r.status, 201, "booking {subject}: {}", r.text);
        r.body["id"].as_str().expect("id").to_owned()
    }

    async fn check_in(&self, room: &str) -> String {
        let r = http(
            self.api(),
            "POST",
            &format!("/api/rooms/{room}/checkin"),
            None,
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.body["result"].as_str().unwrap_or_default().to_owned()
    }

    /// Presents a card or QR code at the room's door; returns what happened, in words.
    async fn credential(&self, room: &str, credential: &str) -> String {
        let r = http(
            self.api(),
            "POST",
            &format!("/api/rooms/{room}/credential"),
            Some(&json!({ "credential": credential })),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.body["result"].as_str().unwrap_or_default().to_owned()
    }

    async fn activity(&self, room: &str) -> Vec<String> {
        let r = http(self.api(), "GET", &format!("/api/rooms/{room}"), None).await;
        assert_eq!(r.status, 200);
        r.body["activity"]
            .as_array()
            .expect("activity")
            .iter()
            .map(|a| {
                format!(
                    "{} {}",
                    a["at"].as_str().unwrap_or(""),
                    a["text"].as_str().unwrap_or("")
                )
            })
            .collect()
    }
}

fn light_on(f: &Floor) -> bool {
    f.sim("lights").coil(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_meeting_day_drives_the_devices_the_building_sees() {
    let h = Harness::start().await;
    let status = |f: &Floor| f.sim("status").holding(0);
    h.expect_registers("status light green at start", |f| status(f) == 1)
        .await;
    h.presence("r1", false).await;

    // 08:00 three bookings arrive over the API.
    h.advance_to("08:00").await;
    h.book("r1", "09:00", "10:00", "Board meeting").await;
    h.book("r1", "11:00", "12:00", "No-show review").await;
    h.book("r1", "14:00", "15:30", "Workshop").await;

    // Pre-conditioning 15 minutes ahead: HVAC on, auto mode, 21.5 degrees; status yellow blinking.
    h.advance_to("08:45").await;
    h.expect_registers("hvac on in auto at 21.5", |f| {
        let hv = f.sim("hvac");
        hv.coil(0) && hv.holding(0) == 3 && f32_from_words(hv.holding(1), hv.holding(2)) == 21.5
    })
    .await;
    h.expect_registers("status yellow blinking", |f| status(f) == 3)
        .await;
    assert!(
        !light_on(&h.floor),
        "lights stay off until 2 minutes before start"
    );

    // Lights 2 minutes ahead.
    h.advance_to("08:58").await;
    h.expect_registers("lights on at 100%", |f| {
        light_on(f) && f.sim("lights").holding(0) == 100
    })
    .await;

    // People arrive and check in at the door panel: in meeting, red.
    h.advance_to("09:01").await;
    h.presence("r1", true).await;
    let answer = h.check_in("r1").await;
    assert!(
        answer.contains("checked in by door panel"),
        "check-in answer: {answer}"
    );
    h.expect_registers("status red", |f| status(f) == 4).await;
    assert_eq!(h.state("r1"), "in_meeting");
    let gw = h.gw().clone();
    wait_for("the API shows the status light as red", WAIT, || {
        gw.snapshot().rooms.iter().any(|r| {
            r.id == "r1"
                && r.points
                    .iter()
                    .any(|p| p.capability == "status_light" && p.label == Some("red"))
        })
    })
    .await;

    // They leave just before the end; at the end the leave scene switches everything off.
    h.advance_to("09:58").await;
    h.presence("r1", false).await;
    h.advance_to("10:00").await;
    h.expect_registers("lights, hvac off; curtains open; green", |f| {
        !light_on(f)
            && !f.sim("hvac").coil(0)
            && f.sim("curtain").holding(0) == 100
            && status(f) == 1
    })
    .await;

    // 11:00 nobody comes: released as a no-show at 11:10, devices back off.
    h.advance_to("11:05").await;
    assert!(
        light_on(&h.floor) && h.floor.sim("hvac").coil(0),
        "prepared for 11:00"
    );
    h.advance_to("11:10").await;
    h.expect_registers("no-show release switches off", |f| {
        !light_on(f) && !f.sim("hvac").coil(0)
    })
    .await;
    let log = h.activity("r1").await;
    assert!(
        log.iter().any(|l| l.contains("released as a no-show")
            && l.contains("no check-in by 11:10 (policy: 10 min)")),
        "activity log explains the release: {log:#?}"
    );

    // 14:00 workshop: checked in, then the room empties at 14:20: lights step down at 14:25,
    // the meeting is released for vacancy at 14:35 and everything goes off.
    h.advance_to("14:00").await;
    h.presence("r1", true).await;
    h.check_in("r1").await;
    h.advance_to("14:20").await;
    h.presence("r1", false).await;
    h.advance_to("14:24").await;
    assert_eq!(
        h.floor.sim("lights").holding(0),
        100,
        "still full before the step-down"
    );
    h.advance_to("14:25").await;
    h.expect_registers("lights stepped down to 30%", |f| {
        light_on(f) && f.sim("lights").holding(0) == 30
    })
    .await;
    h.advance_to("14:35").await;
    h.expect_registers("released for vacancy: all off", |f| {
        !light_on(f) && !f.sim("hvac").coil(0)
    })
    .await;
    assert_eq!(h.state("r1"), "free");

    // A walk-in in the phone booth: presence for 30 s occupies it (someone walking past does
    // not), absence frees it after 15 minutes.
    h.advance_to("16:00").await;
    h.presence("h1", true).await;
    assert!(!h.floor.sim("lights").coil(1), "not a walk-in yet");
    h.advance_to("16:01").await;
    h.expect_registers("booth light on", |f| f.sim("lights").coil(1))
        .await;
    assert_eq!(h.state("h1"), "occupied");
    h.advance_to("16:30").await;
    h.presence("h1", false).await;
    h.advance_to("16:44").await;
    assert!(
        h.floor.sim("lights").coil(1),
        "not before 15 minutes of absence"
    );
    h.advance_to("16:45").await;
    h.expect_registers("booth light off", |f| !f.sim("lights").coil(1))
        .await;
    assert_eq!(h.state("h1"), "free");

    // Every write the light module saw, in order: no flapping, nothing unexplained.
    let coil0: Vec<u16> = h
        .floor
        .sim("lights")
        .writes()
        .iter()
        .filter(|w| w.table == drivers::ModbusTable::Coil && w.address == 0)
        .flat_map(|w| w.values.clone())
        .collect();
    // 08:58 on, 10:00 off, 10:58 on (prepare 11:00), 11:03 on at 30% (empty room steps down),
    // 11:10 off (no-show), 13:58 on, 14:25 on at 30%, 14:35 off (vacancy release).
    assert_eq!(
        coil0,
        vec![1, 0, 1, 1, 0, 1, 1, 0],
        "r1 light relay writes over the day"
    );

    // Everything the hub must learn is in the durable outbox, numbered in order.
    let store = h.running.as_ref().expect("running").gateway.store();
    let outbox = store.outbox_after(0, 1000).expect("outbox");
    let seqs: Vec<u64> = outbox.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=outbox.len() as u64).collect::<Vec<_>>());
    let kinds: Vec<String> = outbox
        .iter()
        .filter(|e| e.room == "r1")
        .map(|e| {
            serde_json::to_value(e.kind)
                .expect("kind")
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    for k in [
        "booking_local",
        "meeting_started",
        "checked_in",
        "ended",
        "usage",
        "released",
        "no_show_strike",
    ] {
        assert!(kinds.iter().any(|x| x == k), "outbox lacks {k}: {kinds:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_mid_meeting_keeps_the_booking_and_the_check_in() {
    let mut h = Harness::start().await;
    h.presence("r1", true).await;
    h.advance_to("08:30").await;
    h.book("r1", "09:00", "10:00", "Survives a restart").await;
    h.advance_to("09:02").await;
    h.check_in("r1").await;
    h.expect_registers("status red", |f| f.sim("status").holding(0) == 4)
        .await;

    // Power cut: the gateway stops; the store on disk is all that remains.
    let running = h.running.take().expect("running");
    running.shutdown().await;
    h.clock.set(at("09:20"));
    h.boot().await;
    h.advance_to("09:30").await;
    assert_eq!(
        h.state("r1"),
        "in_meeting",
        "the check-in survived; no no-show release"
    );
    let log = h.activity("r1").await;
    assert!(!log.iter().any(|l| l.contains("no-show")), "{log:#?}");
    assert!(
        log.iter()
            .any(|l| l.contains("booking [") && l.contains("added")),
        "activity log survived: {log:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_device_makes_its_points_unavailable_and_never_releases_a_meeting() {
    let h = Harness::start().await;
    h.presence("r1", true).await;
    h.advance_to("08:30").await;
    h.book("r1", "09:00", "10:00", "Sensor dies").await;
    h.advance_to("09:01").await;
    h.check_in("r1").await;

    h.floor.sim("pir").set_silent(true);
    let gw = h.gw().clone();
    wait_for("pir offline and r1 occupancy unknown", WAIT, || {
        let s = gw.snapshot();
        s.devices
            .iter()
            .any(|d| d.id == "pir" && d.state == "offline")
            && s.rooms
                .iter()
                .any(|r| r.id == "r1" && r.occupancy == "unknown")
    })
    .await;
    h.advance_to("09:50").await;
    assert_eq!(
        h.state("r1"),
        "in_meeting",
        "missing data never releases a meeting"
    );
    assert!(light_on(&h.floor));
    let r = http(h.api(), "GET", "/api/devices", None).await;
    let pir = r
        .body
        .as_array()
        .expect("devices")
        .iter()
        .find(|d| d["id"] == "pir")
        .cloned()
        .expect("pir");
    assert_eq!(pir["state"], "offline");
    assert!(pir["timeouts"].as_u64().unwrap_or(0) >= 1, "{pir}");
    let log = h.activity("r1").await;
    assert!(
        log.iter()
            .any(|l| l.contains("device 'pir'") && l.contains("is offline")),
        "the outage is an event in the room's log: {log:#?}"
    );
    h.floor.sim("pir").set_silent(false);
    wait_for("pir back online", WAIT, || {
        gw.snapshot().devices.iter().all(|d| d.state == "online")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_refuses_bad_requests_with_reasons() {
    let h = Harness::start().await;
    h.advance_to("08:00").await;
    let id = h.book("r1", "09:00", "10:00", "First").await;

    let r = http(
        h.api(),
        "POST",
        "/api/rooms/r1/bookings",
        Some(&json!({ "start": iso("09:30"), "end": iso("10:30") })),
    )
    .await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert_eq!(r.body["conflict"]["id"], id.as_str());
    assert!(
        r.body["error"]
            .as_str()
            .unwrap_or("")
            .contains("09:00 to 10:00"),
        "{}",
        r.text
    );

    let r = http(
        h.api(),
        "POST",
        "/api/rooms/r1/bookings",
        Some(&json!({ "start": "tomorrow", "end": iso("10:30") })),
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(
        r.body["error"]
            .as_str()
            .unwrap_or("")
            .contains("'tomorrow' is not a time"),
        "{}",
        r.text
    );

    let r = http(
        h.api(),
        "POST",
        "/api/rooms/r1/bookings",
        Some(&json!({ "start": iso("11:00"), "end": iso("10:30") })),
    )
    .await;
    assert_eq!(r.status, 400);

    let r = http(
        h.api(),
        "POST",
        "/api/rooms/r1/bookings",
        Some(&json!({ "minutes": 30, "colour": "red" })),
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(
        r.body["error"]
            .as_str()
            .unwrap_or("")
            .contains("unknown field `colour`"),
        "{}",
        r.text
    );

    let r = http(
        h.api(),
        "POST",
        "/api/rooms/nowhere/bookings",
        Some(&json!({ "minutes": 30 })),
    )
    .await;
    assert_eq!(r.status, 404);

    let r = http(h.api(), "POST", "/api/rooms/r1/scenes/disco", None).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.body["error"], "room 'r1' has no scene named 'disco'");

    let r = http(
        h.api(),
        "DELETE",
        &format!("/api/rooms/r1/bookings/{id}"),
        None,
    )
    .await;
    assert_eq!(r.status, 204);
    let r = http(
        h.api(),
        "DELETE",
        &format!("/api/rooms/r1/bookings/{id}"),
        None,
    )
    .await;
    assert_eq!(r.status, 404);

    let r = http(h.api(), "GET", "/healthz", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["status"], "ok");
    let r = http(h.api(), "GET", "/", None).await;
    assert_eq!(r.status, 200);
    assert!(
        r.text.contains(" · roomgate</title>") && r.text.contains("class=\"card"),
        "the console's floor page is served: {}",
        r.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cards_open_the_door_for_the_meeting_air_is_kept_fresh_and_meetings_extend_and_end() {
    let h = Harness::start().await;
    h.presence("r1", false).await;
    h.advance_to("08:00").await;
    let r = http(
        h.api(),
        "POST",
        "/api/rooms/r1/bookings",
        Some(
            &json!({ "start": iso("09:00"), "end": iso("10:00"), "subject": "Review",
                      "organizer": "ana@example.com", "attendees": ["bo@example.com"] }),
        ),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let door = |f: &Floor| f.sim("lights").coil(2);

    // Too early for the meeting: refused, the door stays locked.
    let answer = h.credential("r1", "04a1b2c3").await;
    assert!(answer.contains("access denied"), "{answer}");

    // An attendee's QR code 10 minutes before: the door opens, relocks, and the meeting is
    // checked in. A stranger's card is refused; the cleaner always gets in.
    h.advance_to("08:50").await;
    let answer = h.credential("r1", " qr:BO-7731 ").await;
    assert!(
        answer.contains("door opened") && answer.contains("checked in by card"),
        "{answer}"
    );
    h.expect_registers("door unlocked", door).await;
    h.advance_to("08:51").await;
    h.expect_registers("door relocked", |f| !door(f)).await;
    let answer = h.credential("r1", "DEADBEEF").await;
    assert!(
        answer.contains("an unknown card is not invited"),
        "{answer}"
    );
    assert!(!door(&h.floor));
    let answer = h.credential("r1", "c0ffee").await;
    assert!(answer.contains("staff (cleaning)"), "{answer}");

    // The meeting runs; CO2 climbs, ventilation goes to full, and back when it falls.
    h.advance_to("09:01").await;
    h.presence("r1", true).await;
    assert_eq!(
        h.state("r1"),
        "in_meeting",
        "checked in by the QR code at the door"
    );
    h.floor.sim("hvac").set_input_register(2, 1250);
    let gw = h.gw().clone();
    wait_for("co2 seen", WAIT, || {
        gw.snapshot().rooms.iter().any(|r| {
            r.id == "r1"
                && r.points
                    .iter()
                    .any(|p| p.capability == "co2" && p.value == json!(1250.0))
        })
    })
    .await;
    h.advance_to("09:02").await;
    h.expect_registers("ventilation 100%", |f| f.sim("lights").holding(3) == 100)
        .await;
    h.floor.sim("hvac").set_input_register(2, 900);
    wait_for("co2 900 seen", WAIT, || {
        gw.snapshot().rooms.iter().any(|r| {
            r.id == "r1"
                && r.points
                    .iter()
                    .any(|p| p.capability == "co2" && p.value == json!(900.0))
        })
    })
    .await;
    h.advance_to("09:03").await;
    assert_eq!(
        h.floor.sim("lights").holding(3),
        100,
        "hysteresis: 900 is not below 800"
    );
    h.floor.sim("hvac").set_input_register(2, 700);
    wait_for("co2 700 seen", WAIT, || {
        gw.snapshot().rooms.iter().any(|r| {
            r.id == "r1"
                && r.points
                    .iter()
                    .any(|p| p.capability == "co2" && p.value == json!(700.0))
        })
    })
    .await;
    h.advance_to("09:04").await;
    h.expect_registers("ventilation back to 30%", |f| {
        f.sim("lights").holding(3) == 30
    })
    .await;

    // Extended by 15 minutes from the panel, then ended early: the room is left at once.
    h.advance_to("09:55").await;
    let r = http(
        h.api(),
        "POST",
        "/api/rooms/r1/extend",
        Some(&json!({ "minutes": 15 })),
    )
    .await;
    assert!(
        r.body["result"]
            .as_str()
            .unwrap_or("")
            .contains("extended to 10:15"),
        "{}",
        r.text
    );
    h.advance_to("10:05").await;
    assert_eq!(
        h.state("r1"),
        "in_meeting",
        "the extension holds past the old end"
    );
    h.presence("r1", false).await;
    let r = http(h.api(), "POST", "/api/rooms/r1/end", None).await;
    assert!(
        r.body["result"]
            .as_str()
            .unwrap_or("")
            .contains("ended early"),
        "{}",
        r.text
    );
    h.expect_registers("all off after end now", |f| {
        !light_on(f) && !f.sim("hvac").coil(0) && f.sim("lights").holding(3) == 0
    })
    .await;
    assert_eq!(h.state("r1"), "free");
    let r = http(
        h.api(),
        "POST",
        "/api/rooms/r1/extend",
        Some(&json!({ "minutes": 15 })),
    )
    .await;
    assert_eq!(r.status, 400, "nothing to extend: {}", r.text);
}
