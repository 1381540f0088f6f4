//! One room on every kind of field device: lights and door on a Modbus RTU bus (a real pty),
//! HVAC and presence on a BACnet/IP device, a card reader on a serial line (another pty).
//!
//! The gateway is loaded from a site file like an installer's and runs for real; only its
//! clock is manual. Assertions read the simulators' own state.

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use drivers::bacnet::PropertyValue;
use drivers::bacnet::sim::{self as bacsim, BacnetSim, BacnetSimConfig};
use drivers::serial::sim::{Fault, PtyPair, ReaderSim, ReaderWire};
use drivers::sim::SimKind;
use drivers::sim::rtu::RtuSimBus;
use gateway::clock::{Clock, ManualClock};
use roomgate_tests::{Api, http, wait_for};
use scenes::{Span, Timestamp};
use serde_json::json;

const DAY: i64 = 1_772_409_600_000; // 2026-03-02 00:00 UTC
const WAIT: Duration = Duration::from_secs(10);

fn at(hhmm: &str) -> Timestamp {
    let (h, m) = hhmm.split_once(':').expect("hh:mm");
    let minutes: i64 = h.parse::<i64>().expect("h") * 60 + m.parse::<i64>().expect("m");
    Timestamp::from_millis(DAY) + Span::minutes(minutes)
}

/// socat, installed by tests/peers/ensure.sh when missing (once per test binary).
fn socat() -> &'static str {
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| {
        let have = std::process::Command::new("sh")
            .args(["-c", "command -v socat"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !have {
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/ensure.sh");
            let status = std::process::Command::new("bash")
                .arg(script)
                .status()
                .expect("run tests/peers/ensure.sh");
            assert!(
                status.success(),
                "tests/peers/ensure.sh failed to install socat"
            );
        }
    });
    "socat"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_meeting_runs_across_modbus_rtu_bacnet_and_a_serial_card_reader() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The RS-485 line: a pty pair, the RTU simulator on one end with two units.
    let line = PtyPair::spawn(
        socat(),
        dir.path().join("rs485"),
        dir.path().join("rs485-sim"),
    )
    .await
    .expect("pty pair for the bus");
    let rtu = RtuSimBus::spawn_on(
        line.open_sim_end().expect("sim end"),
        &[(1, SimKind::LightModule), (2, SimKind::SocketModule)],
    );
    // The door reader: another pty pair.
    let door = PtyPair::spawn(
        socat(),
        dir.path().join("reader"),
        dir.path().join("reader-sim"),
    )
    .await
    .expect("pty pair for the reader");
    let mut reader = ReaderSim::new(door.open_sim_end().expect("sim end"), ReaderWire::CardStx);
    // The BACnet controller of the room's HVAC and presence sensor.
    let bac = BacnetSim::start(BacnetSimConfig::loopback(4242))
        .await
        .expect("BACnet simulator");

    let site = format!(
        r#"
[site]
name = "Mixed floor"

[bacnet]
interface = "127.0.0.1"
port = 0
broadcast = "127.0.0.1"
apdu_timeout = "300ms"

[[buses]]
id = "rs485-1"
serial_port = "{line}"
baud = 19200

[[devices]]
id = "lights"
protocol = "modbus-rtu"
bus = "rs485-1"
unit = 1
poll = "50ms"
timeout = "200ms"
points = [
  {{ id = "relay", table = "coil", address = 0, type = "bool" }},
  {{ id = "dim", table = "holding_register", address = 0, type = "u16", unit = "%" }},
]

[[devices]]
id = "doors"
protocol = "modbus-rtu"
bus = "rs485-1"
unit = 2
poll = "50ms"
timeout = "200ms"
points = [{{ id = "lock", table = "coil", address = 0, type = "bool" }}]

[[devices]]
id = "fcu"
protocol = "bacnet"
instance = 4242
address = "{bac}"
poll = "100ms"
cov = "off"
points = [
  {{ id = "power", object = "binary-output:1", access = "read_write", priority = 10 }},
  {{ id = "setpoint", object = "analog-value:1", access = "read_write", unit = "°C" }},
  {{ id = "temperature", object = "analog-input:1" }},
  {{ id = "presence", object = "binary-input:1" }},
]

[[devices]]
id = "door-reader"
protocol = "serial"
serial_port = "{reader}"
profile = "ascii-card-stx"

[[rooms]]
id = "r1"
name = "Boardroom"
kind = "bookable"
access = {{ unlock_for = "5s" }}
bindings = {{ light = "lights/relay", light_level = "lights/dim", door_lock = "doors/lock", hvac_power = "fcu/power", hvac_setpoint = "fcu/setpoint", temperature = "fcu/temperature", occupancy = "fcu/presence", reader = "door-reader/reader" }}

[[people]]
id = "ana@example.com"
credentials = ["0004512345"]
"#,
        line = dir.path().join("rs485").display(),
        reader = dir.path().join("reader").display(),
        bac = bac.addr(),
    );
    let site = gateway::site::load(&site).unwrap_or_else(|e| panic!("site: {e}"));
    let clock = ManualClock::new(at("08:00"));
    let data = tempfile::tempdir().expect("data");
    let running = gateway::app::start(
        site,
        data.path(),
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        Clock::Manual(clock.clone()),
    )
    .await
    .expect("gateway starts");
    let api = Api::operator(&running);
    let gw = running.handle().clone();
    wait_for("every device online", WAIT, || {
        let s = gw.snapshot();
        s.devices.len() == 4 && s.devices.iter().all(|d| d.state == "online")
    })
    .await;
    let advance = |to: &str| {
        clock.set(at(to));
        let gw = gw.clone();
        async move { gw.settle().await.expect("settle") }
    };

    let r = http(
        &api,
        "POST",
        "/api/rooms/r1/bookings",
        Some(
            &json!({ "start": "2026-03-02T09:00:00Z", "end": "2026-03-02T10:00:00Z",
                      "organizer": "ana@example.com" }),
        ),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);

    // HVAC prepares over BACnet: power on at the configured priority, setpoint written.
    advance("08:45").await;
    let prio10 = || async { bac.priority_slot(bacsim::LIGHT, 10).await.expect("slot") };
    let mut ok = false;
    for _ in 0..200 {
        if prio10().await == PropertyValue::Enumerated(1)
            && bac.present_value(bacsim::SETPOINT).await.expect("pv") == PropertyValue::Real(21.5)
        {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ok, "BACnet power at priority 10 and setpoint 21.5 written");

    // Lights over the RTU bus two minutes ahead.
    advance("08:58").await;
    wait_for("RTU light relay on at 100%", WAIT, || {
        rtu.coil(1, 0) && rtu.holding(1, 0) == 100
    })
    .await;

    // Ana's card at the serial reader: the door on the RTU bus opens, the meeting is checked in.
    advance("09:01").await;
    reader
        .card("0004512345", Fault::None)
        .await
        .expect("card frame");
    wait_for("door unlocked over RTU", WAIT, || rtu.coil(2, 0)).await;
    wait_for("checked in by card", WAIT, || {
        gw.snapshot()
            .rooms
            .iter()
            .any(|r| r.id == "r1" && r.state == "in_meeting")
    })
    .await;
    advance("09:02").await;
    wait_for("door relocked", WAIT, || !rtu.coil(2, 0)).await;

    // Presence from the BACnet sensor; when it goes, the staged shutdown runs over both.
    bac.set_occupancy(true).await.expect("occupancy");
    wait_for("occupied (BACnet)", WAIT, || {
        gw.snapshot()
            .rooms
            .iter()
            .any(|r| r.id == "r1" && r.occupancy == "occupied")
    })
    .await;
    advance("09:20").await;
    bac.set_occupancy(false).await.expect("occupancy");
    wait_for("vacant (BACnet)", WAIT, || {
        gw.snapshot()
            .rooms
            .iter()
            .any(|r| r.id == "r1" && r.occupancy == "vacant")
    })
    .await;
    advance("09:25").await;
    wait_for("lights stepped down over RTU", WAIT, || {
        rtu.holding(1, 0) == 30
    })
    .await;
    advance("09:35").await;
    wait_for("released: lights off over RTU", WAIT, || !rtu.coil(1, 0)).await;
    let mut off = false;
    for _ in 0..200 {
        if prio10().await == PropertyValue::Enumerated(0) {
            off = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(off, "BACnet HVAC power off at priority 10");
    let devices = gw.snapshot().devices.clone();
    let reader_health = devices
        .iter()
        .find(|d| d.id == "door-reader")
        .expect("reader");
    assert_eq!(reader_health.state, "online");
    assert!(
        devices
            .iter()
            .any(|d| d.id == "lights" && d.address == "bus rs485-1 unit 1")
    );

    let r = http(&api, "GET", "/api/buses", None).await;
    let bus = &r.body[0];
    assert_eq!(bus["id"], "rs485-1");
    assert_eq!(bus["open"], true);
    assert!(
        bus["frames_received"].as_u64().unwrap_or(0) > 10,
        "{}",
        r.text
    );

    running.shutdown().await;
    rtu.shutdown();
    bac.stop().await.expect("stop");
}
