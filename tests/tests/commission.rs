//! The installer console's commissioning operations on a running gateway, against the
//! simulators over real sockets and ptys: test reads and writes of one point (what the
//! simulator holds afterwards), Modbus unit scans of an RS-485 bus while it polls and of a
//! Modbus TCP gateway, and BACnet discovery with object lists.

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use drivers::bacnet::sim::{self as bacsim, BacnetSim, BacnetSimConfig};
use drivers::bacnet::{BacnetNetworkConfig, PropertyValue};
use drivers::point::ModbusTable;
use drivers::serial::sim::PtyPair;
use drivers::sim::rtu::RtuSimBus;
use drivers::sim::{SimDevice, SimKind};
use gateway::app::Running;
use gateway::clock::{Clock, ManualClock};
use gateway::runtime::{ApiError, GatewayHandle, ScanProbe, ScanTarget, UnitAnswer};
use gateway::site::Site;
use roomgate_tests::wait_for;
use scenes::Timestamp;
use serde_json::json;
use tokio::time::Instant;

/// 2026-03-02 08:00 UTC.
const START: i64 = 1_772_438_400_000;
const WAIT: Duration = Duration::from_secs(10);

/// socat, from this machine or `tests/peers/ensure.sh` (once per test binary).
fn socat() -> &'static Path {
    static SOCAT: OnceLock<std::path::PathBuf> = OnceLock::new();
    SOCAT.get_or_init(|| {
        roomgate_tests::peers::find_or_install(|| {
            let out = std::process::Command::new("sh")
                .args(["-c", "command -v socat"])
                .output()
                .ok()?;
            let path = String::from_utf8(out.stdout).ok()?;
            let path = path.trim();
            (out.status.success() && !path.is_empty()).then(|| path.into())
        })
        .unwrap_or_else(|e| panic!("socat: {e}"))
    })
}

/// Starts a gateway on `site` with a manual clock and a fresh data directory.
async fn start(site: Site) -> (Running, GatewayHandle, tempfile::TempDir) {
    let data = tempfile::tempdir().expect("data dir");
    let clock = ManualClock::new(Timestamp::from_millis(START));
    let running = gateway::app::start(
        site,
        data.path(),
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        Clock::Manual(clock),
    )
    .await
    .expect("gateway starts");
    let gw = running.handle().clone();
    (running, gw, data)
}

fn load(site: &str) -> Site {
    gateway::site::load(site).unwrap_or_else(|e| panic!("site: {e}"))
}

async fn wait_online(gw: &GatewayHandle, devices: usize) {
    wait_for("every device online", WAIT, || {
        let s = gw.snapshot();
        s.devices.len() == devices && s.devices.iter().all(|d| d.state == "online")
    })
    .await;
}

fn bad_request(result: Result<impl std::fmt::Debug, ApiError>) -> String {
    match result {
        Err(ApiError::BadRequest(text)) => text,
        other => panic!("expected a bad request, got {other:?}"),
    }
}

fn units(found: &[UnitAnswer]) -> Vec<(u8, Option<u8>, Option<&str>)> {
    found
        .iter()
        .map(|a| (a.unit, a.exception, a.device.as_deref()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_reads_and_writes_show_the_devices_answer() {
    let any = "127.0.0.1:0".parse().expect("addr");
    let lights = SimDevice::spawn(SimKind::LightModule, any)
        .await
        .expect("light sim");
    let hvac = SimDevice::spawn(SimKind::HvacController, any)
        .await
        .expect("hvac sim");
    // A serial-to-Ethernet gateway with units 1 and 4 behind one address; 4 is on the site.
    let serial_gw = SimDevice::spawn(SimKind::SocketModule, any)
        .await
        .expect("gateway sim");
    serial_gw.set_units(Some(vec![1, 4]));
    let site = load(&format!(
        r#"
[site]
name = "Commissioning"
timezone = "UTC"

[[devices]]
id = "lights"
protocol = "modbus-tcp"
host = "127.0.0.1"
port = {lights}
poll = "50ms"
points = [
  {{ id = "relay", table = "coil", address = 0, type = "bool" }},
  {{ id = "dim", table = "holding_register", address = 0, type = "u16", unit = "%" }},
]

[[devices]]
id = "hvac"
protocol = "modbus-tcp"
host = "127.0.0.1"
port = {hvac}
poll = "50ms"
timeout = "300ms"
points = [
  {{ id = "mode", table = "holding_register", address = 0, type = "u16", labels = {{ 0 = "off", 1 = "heat", 2 = "cool", 3 = "auto", 4 = "fan" }} }},
  {{ id = "setpoint", table = "holding_register", address = 1, type = "f32", unit = "°C" }},
  {{ id = "temperature", table = "input_register", address = 0, type = "f32", unit = "°C" }},
]

[[devices]]
id = "sockets"
protocol = "modbus-tcp"
host = "127.0.0.1"
port = {serial_gw}
unit = 4
poll = "50ms"
points = [{{ id = "s1", table = "coil", address = 0, type = "bool" }}]
"#,
        lights = lights.addr().port(),
        hvac = hvac.addr().port(),
        serial_gw = serial_gw.addr().port(),
    ));
    let (running, gw, _data) = start(site).await;
    wait_online(&gw, 3).await;

    // A test read asks the device now: a value set at the simulator a moment ago.
    lights.set_holding(0, 37);
    let reading = gw.read_point("lights", "dim").await.expect("read dim");
    assert_eq!(reading.value, json!(37));
    assert_eq!(reading.unit.as_deref(), Some("%"));
    assert_eq!(reading.at, "2026-03-02T08:00:00+00:00");
    assert!(reading.took_ms < 2000, "{reading:?}");
    let temperature = gw
        .read_point("hvac", "temperature")
        .await
        .expect("read temperature");
    assert_eq!(temperature.value, json!(24));
    assert_eq!(temperature.unit.as_deref(), Some("°C"));

    // A test write changes the simulator's register and reads it back.
    let answer = gw
        .write_point("lights", "dim", "55")
        .await
        .expect("write dim");
    assert_eq!(
        lights.holding(0),
        55,
        "the simulator holds the written level"
    );
    assert_eq!(answer.written, json!(55));
    assert_eq!(answer.read_back, json!(55));
    assert_eq!(answer.read_back_error, None);
    let answer = gw
        .write_point("lights", "relay", "on")
        .await
        .expect("write relay");
    assert!(lights.coil(0));
    assert_eq!(answer.read_back, json!(true));
    let answer = gw
        .write_point("hvac", "mode", "cool")
        .await
        .expect("write mode");
    assert_eq!(hvac.holding(0), 2);
    assert_eq!(answer.read_back_label.as_deref(), Some("cool"));
    let answer = gw
        .write_point("hvac", "setpoint", "22.5")
        .await
        .expect("write setpoint");
    assert_eq!(answer.read_back, json!(22.5));
    assert_eq!(
        roomgate_tests::f32_from_words(hvac.holding(1), hvac.holding(2)),
        22.5
    );

    // Refusals name the point, and nothing reaches the simulator.
    let writes_before = lights.writes().len() + hvac.writes().len();
    let text = bad_request(gw.write_point("hvac", "temperature", "20").await);
    assert!(
        text.contains("hvac/temperature") && text.contains("read-only"),
        "{text}"
    );
    let text = bad_request(gw.write_point("lights", "dim", "bright").await);
    assert!(
        text.contains("lights/dim") && text.contains("'bright' is not a number"),
        "{text}"
    );
    let text = bad_request(gw.write_point("lights", "dim", "70000").await);
    assert!(
        text.contains("lights/dim") && text.contains("takes 0 to 65535"),
        "{text}"
    );
    let text = bad_request(gw.write_point("hvac", "mode", "7").await);
    assert!(
        text.contains("hvac/mode") && text.contains("off (0), heat (1)"),
        "{text}"
    );
    let text = bad_request(gw.write_point("lights", "relay", "maybe").await);
    assert!(text.contains("lights/relay"), "{text}");
    assert_eq!(lights.writes().len() + hvac.writes().len(), writes_before);

    // The device's own refusal comes back in its words (the dim level runs 0..=100).
    match gw.write_point("lights", "dim", "150").await {
        Err(ApiError::Refused(text)) => assert!(
            text.contains("lights/dim")
                && text.contains("exception 03")
                && text.contains("illegal data value"),
            "{text}"
        ),
        other => panic!("expected the device's refusal, got {other:?}"),
    }
    assert_eq!(lights.holding(0), 55);

    // Unknown devices and points.
    match gw.read_point("lights", "nope").await {
        Err(ApiError::NotFound(text)) => assert!(text.contains("'nope'"), "{text}"),
        other => panic!("expected not found, got {other:?}"),
    }
    match gw.write_point("ghost", "x", "1").await {
        Err(ApiError::NotFound(text)) => assert!(text.contains("'ghost'"), "{text}"),
        other => panic!("expected not found, got {other:?}"),
    }

    // A Modbus TCP scan finds the units behind the gateway's address, and knows unit 4.
    let probe = ScanProbe {
        table: ModbusTable::Coil,
        timeout: Some(Duration::from_millis(150)),
        ..ScanProbe::default()
    };
    let target = ScanTarget::Tcp {
        host: "127.0.0.1".into(),
        port: serial_gw.addr().port(),
    };
    let found = gw
        .modbus_scan(target.clone(), 1..=6, probe.clone())
        .await
        .expect("TCP scan");
    assert_eq!(units(&found), [(1, None, None), (4, None, Some("sockets"))]);
    // A register the socket module does not have: exception 02, and still present.
    let found = gw
        .modbus_scan(target, 3..=5, ScanProbe::default())
        .await
        .expect("TCP scan");
    assert_eq!(units(&found), [(4, Some(2), Some("sockets"))]);
    assert_eq!(found[0].exception_name, Some("illegal data address"));
    let json = serde_json::to_value(&found).expect("serializable");
    assert_eq!(json[0]["unit"], 4);

    // A device that stops answering: the test read says so.
    hvac.set_silent(true);
    match gw.read_point("hvac", "setpoint").await {
        Err(ApiError::Unavailable(text)) => assert!(
            text.contains("hvac/setpoint")
                && (text.contains("did not answer") || text.contains("offline")),
            "{text}"
        ),
        other => panic!("expected no answer, got {other:?}"),
    }

    running.shutdown().await;
    lights.shutdown();
    hvac.shutdown();
    serial_gw.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rtu_scan_finds_the_units_while_the_bus_keeps_polling() {
    let dir = tempfile::tempdir().expect("tempdir");
    let line = PtyPair::spawn(
        socat(),
        dir.path().join("rs485"),
        dir.path().join("rs485-sim"),
    )
    .await
    .expect("pty pair for the bus");
    // Units 1 and 2 are on the site; unit 5 is a device nobody has configured yet.
    let rtu = RtuSimBus::spawn_on(
        line.open_sim_end().expect("sim end"),
        &[
            (1, SimKind::LightModule),
            (2, SimKind::SocketModule),
            (5, SimKind::HvacController),
        ],
    );
    // A second line, named on the site before any of its units.
    let spare = PtyPair::spawn(
        socat(),
        dir.path().join("rs485-b"),
        dir.path().join("rs485-b-sim"),
    )
    .await
    .expect("pty pair for the spare bus");
    let spare_sim = RtuSimBus::spawn_on(
        spare.open_sim_end().expect("sim end"),
        &[(9, SimKind::StatusLight)],
    );
    let site = load(&format!(
        r#"
[site]
name = "RS-485 floor"
timezone = "UTC"

[[buses]]
id = "rs485-1"
serial_port = "{line}"
baud = 38400

[[buses]]
id = "rs485-2"
serial_port = "{spare}"
baud = 38400

[[devices]]
id = "lights"
protocol = "modbus-rtu"
bus = "rs485-1"
unit = 1
poll = "50ms"
timeout = "200ms"
points = [{{ id = "dim", table = "holding_register", address = 0, type = "u16" }}]

[[devices]]
id = "sockets"
protocol = "modbus-rtu"
bus = "rs485-1"
unit = 2
poll = "50ms"
timeout = "200ms"
points = [{{ id = "s1", table = "coil", address = 0, type = "bool" }}]
"#,
        line = dir.path().join("rs485").display(),
        spare = dir.path().join("rs485-b").display(),
    ));
    let (running, gw, _data) = start(site).await;
    wait_online(&gw, 2).await;

    // While a scan runs, a second one on the same bus is refused.
    let scanning = {
        let gw = gw.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let found = gw
                .modbus_scan(
                    ScanTarget::Bus("rs485-1".into()),
                    1..=12,
                    ScanProbe::default(),
                )
                .await;
            (started, Instant::now(), found)
        })
    };
    // Unit 2 is polled with FC01: an FC03 to it is the scan's probe (units 3 to 12 follow).
    wait_for("the scan probes unit 2", WAIT, || {
        rtu.requests()
            .iter()
            .any(|r| r.unit == 2 && r.function == 3)
    })
    .await;
    match gw
        .modbus_scan(
            ScanTarget::Bus("rs485-1".into()),
            1..=2,
            ScanProbe::default(),
        )
        .await
    {
        Err(ApiError::Refused(text)) => assert!(text.contains("scanned already"), "{text}"),
        other => panic!("expected a busy bus, got {other:?}"),
    }
    let (started, ended, found) = scanning.await.expect("scan task");
    let found = found.expect("bus scan");
    // Exactly the simulator's units; the socket module has no holding register 0 and says so.
    assert_eq!(
        units(&found),
        [
            (1, None, Some("lights")),
            (2, Some(2), Some("sockets")),
            (5, None, None)
        ]
    );
    // The bus's polling went on during the scan: unit 1 was polled all along.
    let polls: Vec<Instant> = rtu
        .requests()
        .iter()
        .filter(|r| r.unit == 1 && r.at >= started && r.at <= ended)
        .map(|r| r.at)
        .collect();
    let longest_gap = polls
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or(Duration::MAX);
    assert!(
        polls.len() >= 3 && longest_gap < Duration::from_secs(1),
        "unit 1 polled {} times during a {:?} scan, longest gap {longest_gap:?}",
        polls.len(),
        ended - started
    );
    // ... and after it: values keep coming, nobody was quarantined by the scan.
    rtu.set_holding(1, 0, 61);
    let reading = gw.read_point("lights", "dim").await.expect("read");
    assert_eq!(reading.value, json!(61));
    let after = rtu.requests().iter().filter(|r| r.unit == 1).count();
    wait_for("unit 1 polled after the scan", WAIT, || {
        rtu.requests().iter().filter(|r| r.unit == 1).count() > after + 3
    })
    .await;
    let snap = gw.snapshot();
    assert!(snap.devices.iter().all(|d| d.state == "online"), "{snap:?}");
    let bus = snap.buses.iter().find(|b| b.id == "rs485-1").expect("bus");
    assert!(bus.open);
    assert_eq!(bus.last_error, None);
    let states: Vec<(&str, u8, &str)> = bus
        .units
        .iter()
        .map(|u| (u.device.as_str(), u.unit, u.state))
        .collect();
    assert_eq!(states, [("lights", 1, "online"), ("sockets", 2, "online")]);
    assert_eq!(bus.timeouts, 0, "absent units are no bus timeouts");
    let lights = snap
        .devices
        .iter()
        .find(|d| d.id == "lights")
        .expect("lights");
    assert!(lights.responses > 0 && lights.timeouts == 0, "{lights:?}");

    // The line with no units yet: a scan of its own.
    let found = gw
        .modbus_scan(
            ScanTarget::Bus("rs485-2".into()),
            7..=10,
            ScanProbe {
                timeout: Some(Duration::from_millis(100)),
                ..ScanProbe::default()
            },
        )
        .await
        .expect("spare bus scan");
    assert_eq!(units(&found), [(9, None, None)]);

    // Refusals: an unknown bus, unit ids a bus cannot have.
    match gw
        .modbus_scan(ScanTarget::Bus("nope".into()), 1..=2, ScanProbe::default())
        .await
    {
        Err(ApiError::NotFound(text)) => assert!(text.contains("'nope'"), "{text}"),
        other => panic!("expected not found, got {other:?}"),
    }
    let text = bad_request(
        gw.modbus_scan(
            ScanTarget::Bus("rs485-1".into()),
            0..=3,
            ScanProbe::default(),
        )
        .await,
    );
    assert!(text.contains("1 to 247"), "{text}");

    running.shutdown().await;
    rtu.shutdown();
    spare_sim.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bacnet_discovery_finds_the_controller_and_lists_its_objects() {
    let bac = BacnetSim::start(BacnetSimConfig::loopback(4242))
        .await
        .expect("BACnet simulator");
    let site = load(&format!(
        r#"
[site]
name = "BACnet floor"
timezone = "UTC"

[bacnet]
interface = "127.0.0.1"
port = 0
broadcast = "127.0.0.1"
apdu_timeout = "300ms"

[[devices]]
id = "fcu"
protocol = "bacnet"
instance = 4242
address = "{bac}"
poll = "100ms"
cov = "off"
points = [
  {{ id = "setpoint", object = "analog-value:1", access = "read_write", unit = "°C" }},
  {{ id = "mode", object = "multi-state-value:1", access = "read_write" }},
  {{ id = "temperature", object = "analog-input:1" }},
]
"#,
        bac = bac.addr(),
    ));
    let (running, gw, _data) = start(site).await;
    wait_online(&gw, 1).await;

    let found = gw
        .bacnet_discover(None, None, Some(bac.addr()), Duration::from_millis(500))
        .await
        .expect("discovery");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].instance, 4242);
    assert_eq!(found[0].address, Some(bac.addr().to_string()));
    assert_eq!(found[0].device.as_deref(), Some("fcu"));
    // A range that leaves the device out finds nothing.
    let none = gw
        .bacnet_discover(
            Some(1),
            Some(100),
            Some(bac.addr()),
            Duration::from_millis(300),
        )
        .await
        .expect("discovery");
    assert!(none.is_empty(), "{none:?}");

    let objects = gw.bacnet_objects(4242, None).await.expect("objects");
    let temperature = objects
        .iter()
        .find(|o| o.name.as_deref() == Some("temperature"))
        .unwrap_or_else(|| panic!("temperature listed: {objects:?}"));
    assert_eq!(temperature.object, "analog-input:1");
    assert_eq!(temperature.object_type, "analog-input");
    assert_eq!(temperature.present_value, json!(21.5));
    assert_eq!(temperature.units.as_deref(), Some("degrees-celsius"));
    assert_eq!(temperature.kind, Some("real"));
    for name in ["light", "setpoint", "occupancy", "mode"] {
        assert!(
            objects.iter().any(|o| o.name.as_deref() == Some(name)),
            "{name} listed: {objects:?}"
        );
    }
    let json = serde_json::to_value(&objects).expect("serializable");
    assert!(json.as_array().is_some_and(|a| a.len() == objects.len()));

    // Test read and write go through BACnet as well.
    bac.set_temperature(19.5).await.expect("temperature");
    let reading = gw.read_point("fcu", "temperature").await.expect("read");
    assert_eq!(reading.value, json!(19.5));
    let answer = gw
        .write_point("fcu", "setpoint", "22.5")
        .await
        .expect("write setpoint");
    assert_eq!(answer.read_back, json!(22.5));
    assert_eq!(
        bac.present_value(bacsim::SETPOINT).await.expect("pv"),
        PropertyValue::Real(22.5)
    );
    let text = bad_request(gw.write_point("fcu", "mode", "1.5").await);
    assert!(text.contains("fcu/mode"), "{text}");

    running.shutdown().await;
    bac.stop().await.expect("stop");
}

/// A site with no BACnet device yet: discovery runs on a temporary network on the site's
/// BACnet settings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bacnet_discovery_without_bacnet_devices_uses_a_temporary_network() {
    let bac = BacnetSim::start(BacnetSimConfig::loopback(4243))
        .await
        .expect("BACnet simulator");
    let meter = SimDevice::spawn(
        SimKind::HvacController,
        "127.0.0.1:0".parse().expect("addr"),
    )
    .await
    .expect("sim");
    let mut site = load(&format!(
        r#"
[site]
name = "Modbus floor"
timezone = "UTC"

[[devices]]
id = "meter"
protocol = "modbus-tcp"
host = "127.0.0.1"
port = {port}
points = [{{ id = "co2", table = "input_register", address = 2, type = "u16" }}]
"#,
        port = meter.addr().port()
    ));
    // The interface settings the site's `[bacnet]` section gives (a loopback one here).
    site.bacnet = Some(BacnetNetworkConfig {
        port: 0,
        broadcast: Ipv4Addr::LOCALHOST,
        apdu_timeout: Duration::from_millis(300),
        apdu_retries: 1,
        ..BacnetNetworkConfig::new(Ipv4Addr::LOCALHOST)
    });
    let (running, gw, _data) = start(site).await;
    let found = gw
        .bacnet_discover(
            Some(4243),
            Some(4243),
            Some(bac.addr()),
            Duration::from_millis(500),
        )
        .await
        .expect("discovery");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].device, None);
    let objects = gw
        .bacnet_objects(4243, Some(bac.addr()))
        .await
        .expect("objects on a temporary network");
    assert!(
        objects.iter().any(|o| o.name.as_deref() == Some("setpoint")
            && o.units.as_deref() == Some("degrees-celsius")),
        "{objects:?}"
    );
    let text = bad_request(
        gw.bacnet_discover(Some(9), Some(3), None, Duration::from_millis(100))
            .await,
    );
    assert!(text.contains("9 to 3"), "{text}");

    running.shutdown().await;
    meter.shutdown();
    bac.stop().await.expect("stop");
}
