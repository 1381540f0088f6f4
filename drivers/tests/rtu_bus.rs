//! End-to-end tests of the Modbus RTU bus driver against the RTU simulator on socat pty pairs (and over TCP), including the fault-tolerance ratios: a dead unit leaves its neighbours' poll period alone, a scene write waits behind at most one request.

// Test helpers outside #[test] functions: a panic there is a test failure, which is the point.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use drivers::device::{DeviceHandle, DriverError, LinkState, PointUpdate};
use drivers::modbus::rtu::{
    Parity, RtuBus, RtuBusConfig, RtuConfigError, RtuUnitConfig, SerialLine, UnitState,
    spawn_rtu_bus, validate_bus,
};
use drivers::point::{DataType, ModbusPoint, ModbusTable, Value};
use drivers::sim::SimKind;
use drivers::sim::rtu::{RtuSimBus, RtuSimRequest};
use support::PtyPair;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep, timeout};

const LINE: SerialLine = SerialLine {
    baud: 115_200,
    parity: Parity::None,
    data_bits: 8,
    stop_bits: 1,
};

const HVAC: u8 = 1;
const LIGHT: u8 = 2;
const PIR: u8 = 3;
const STATUS: u8 = 4;

fn hvac_points() -> Vec<ModbusPoint> {
    vec![
        ModbusPoint::new("power", ModbusTable::Coil, 0, DataType::Bool),
        ModbusPoint::new("mode", ModbusTable::HoldingRegister, 0, DataType::U16).with_labels([
            (0, "off"),
            (1, "heat"),
            (2, "cool"),
            (3, "auto"),
            (4, "fan"),
        ]),
        ModbusPoint::new("setpoint", ModbusTable::HoldingRegister, 1, DataType::F32)
            .with_unit("°C"),
        ModbusPoint::new("temperature", ModbusTable::InputRegister, 0, DataType::F32),
        ModbusPoint::new("co2", ModbusTable::InputRegister, 2, DataType::U16).with_unit("ppm"),
    ]
}

fn light_points() -> Vec<ModbusPoint> {
    vec![
        ModbusPoint::new("ch1", ModbusTable::Coil, 0, DataType::Bool),
        ModbusPoint::new("dim1", ModbusTable::HoldingRegister, 0, DataType::U16),
    ]
}

fn pir_points() -> Vec<ModbusPoint> {
    vec![ModbusPoint::new(
        "in1",
        ModbusTable::DiscreteInput,
        0,
        DataType::Bool,
    )]
}

fn status_points() -> Vec<ModbusPoint> {
    vec![ModbusPoint::new(
        "colour",
        ModbusTable::HoldingRegister,
        0,
        DataType::U16,
    )]
}

fn unit(device: &str, id: u8, points: Vec<ModbusPoint>, poll_ms: u64) -> RtuUnitConfig {
    RtuUnitConfig {
        poll_interval: Duration::from_millis(poll_ms),
        timeout: Duration::from_millis(60),
        retries: 1,
        ..RtuUnitConfig::new(device, id, points)
    }
}

fn bus_config(path: &str) -> RtuBusConfig {
    RtuBusConfig {
        backoff_min: Duration::from_millis(200),
        backoff_max: Duration::from_millis(400),
        ..RtuBusConfig::serial("test-bus", path, LINE)
    }
}

struct Rig {
    _pty: PtyPair,
    sim: RtuSimBus,
    bus: RtuBus,
    updates: mpsc::Receiver<PointUpdate>,
}

fn rig(units: Vec<RtuUnitConfig>, kinds: &[(u8, SimKind)]) -> Rig {
    let pty = PtyPair::new();
    let sim = RtuSimBus::spawn_serial(&pty.b, LINE.baud, kinds).expect("simulator opens its pty");
    let (tx, updates) = mpsc::channel(256);
    let bus = spawn_rtu_bus(bus_config(&pty.a), units, tx).expect("valid bus");
    Rig {
        _pty: pty,
        sim,
        bus,
        updates,
    }
}

fn handle<'a>(bus: &'a RtuBus, device: &str) -> &'a DeviceHandle {
    bus.handle(device).expect("device on the bus")
}

async fn update_of(
    rx: &mut mpsc::Receiver<PointUpdate>,
    device: &str,
    point: &str,
) -> Option<Value> {
    loop {
        let u = timeout(Duration::from_secs(3), rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no update of {device}/{point} within 3 s"))
            .expect("update channel open");
        if u.device == device && u.point == point {
            return u.value;
        }
    }
}

/// Collects the first value of every listed point.
async fn first_values(
    rx: &mut mpsc::Receiver<PointUpdate>,
    wanted: usize,
) -> BTreeMap<String, Option<Value>> {
    let mut seen = BTreeMap::new();
    while seen.len() < wanted {
        let u = timeout(Duration::from_secs(3), rx.recv())
            .await
            .expect("first values within 3 s")
            .expect("update channel open");
        seen.entry(format!("{}/{}", u.device, u.point))
            .or_insert(u.value);
    }
    seen
}

async fn wait_state(handle: &DeviceHandle, state: LinkState, within: Duration) {
    let mut health = handle.watch_health();
    timeout(within, health.wait_for(|h| h.state == state))
        .await
        .unwrap_or_else(|_| {
            panic!(
                "{} not {state} within {within:?}: {:?}",
                handle.device(),
                handle.health()
            )
        })
        .expect("driver alive");
}

fn num(n: f64) -> Option<Value> {
    Some(Value::Number(n))
}

#[tokio::test]
async fn polls_every_unit_on_one_line_and_publishes_changes() {
    let mut r = rig(
        vec![
            unit("hvac", HVAC, hvac_points(), 50),
            unit("light", LIGHT, light_points(), 50),
            unit("pir", PIR, pir_points(), 50),
        ],
        &[
            (HVAC, SimKind::HvacController),
            (LIGHT, SimKind::LightModule),
            (PIR, SimKind::PirInput),
        ],
    );
    let first = first_values(&mut r.updates, 8).await;
    assert_eq!(first["hvac/mode"], num(0.0));
    assert_eq!(first["hvac/setpoint"], num(21.0));
    assert_eq!(first["hvac/temperature"], num(24.0));
    assert_eq!(first["hvac/co2"], num(420.0));
    assert_eq!(first["light/ch1"], Some(Value::Bool(false)));
    assert_eq!(first["pir/in1"], Some(Value::Bool(false)));
    r.sim.set_discrete_input(PIR, 0, true);
    assert_eq!(
        update_of(&mut r.updates, "pir", "in1").await,
        Some(Value::Bool(true))
    );
    for h in r.bus.handles() {
        assert_eq!(h.health().state, LinkState::Online, "{}", h.device());
    }
    let stats = r.bus.stats();
    assert!(stats.open);
    assert!(stats.frames_sent > 0 && stats.frames_received > 0);
    assert_eq!(stats.bad_frames, 0);
    assert!(
        stats
            .units
            .iter()
            .all(|u| u.state == UnitState::Online && u.polls > 0)
    );
    // Labels come with the point model: the gateway names the coded value.
    assert_eq!(hvac_points()[1].label(Value::Number(1.0)), Some("heat"));
}

#[tokio::test]
async fn writes_land_in_the_right_unit() {
    let mut r = rig(
        vec![
            unit("hvac", HVAC, hvac_points(), 100),
            unit("light", LIGHT, light_points(), 100),
        ],
        &[
            (HVAC, SimKind::HvacController),
            (LIGHT, SimKind::LightModule),
        ],
    );
    let _ = first_values(&mut r.updates, 7).await;
    let hvac = handle(&r.bus, "hvac");
    let light = handle(&r.bus, "light");
    // FC16 (f32, two registers), FC06, FC05.
    hvac.write("setpoint", Value::Number(22.5)).await.unwrap();
    assert_eq!(
        (r.sim.holding(HVAC, 1), r.sim.holding(HVAC, 2)),
        (0x41b4, 0x0000)
    );
    let heat = hvac_points()[1].value_for_label("heat").unwrap();
    hvac.write("mode", heat).await.unwrap();
    assert_eq!(r.sim.holding(HVAC, 0), 1);
    light.write("ch1", Value::Bool(true)).await.unwrap();
    light.write("dim1", Value::Number(40.0)).await.unwrap();
    assert!(r.sim.coil(LIGHT, 0));
    assert_eq!(r.sim.holding(LIGHT, 0), 40);
    assert!(!r.sim.coil(HVAC, 0), "the other unit is untouched");
    // The write shows up as an update without waiting for the next poll.
    assert_eq!(update_of(&mut r.updates, "light", "dim1").await, num(40.0));
    assert_eq!(hvac.read("setpoint").await, Ok(Value::Number(22.5)));
    // A value the device refuses is an exception; the unit stays online.
    let refused = light.write("dim1", Value::Number(101.0)).await;
    assert_eq!(
        refused,
        Err(DriverError::Exception {
            function: 0x06,
            code: 0x03
        })
    );
    assert_eq!(light.health().state, LinkState::Online);
    assert_eq!(light.health().counters.exceptions, 1);
    assert_eq!(
        light.relinquish("dim1").await,
        Err(DriverError::Unsupported(
            "relinquish (Modbus has no command priorities)"
        ))
    );
}

#[tokio::test]
async fn exceptions_garbage_and_bad_crcs_are_counted_not_fatal() {
    let mut r = rig(
        vec![
            unit("status", STATUS, status_points(), 40),
            unit("light", LIGHT, light_points(), 40),
        ],
        &[
            (STATUS, SimKind::StatusLight),
            (LIGHT, SimKind::LightModule),
        ],
    );
    let _ = first_values(&mut r.updates, 3).await;
    let status = handle(&r.bus, "status");
    // Server device failure on every request: points unavailable, link up.
    r.sim.set_exception(STATUS, Some(0x04));
    assert_eq!(update_of(&mut r.updates, "status", "colour").await, None);
    assert_eq!(status.health().state, LinkState::Online);
    assert!(matches!(
        status.read("colour").await,
        Err(DriverError::Exception {
            function: 0x03,
            code: 0x04
        })
    ));
    r.sim.set_exception(STATUS, None);
    assert_eq!(
        update_of(&mut r.updates, "status", "colour").await,
        num(0.0)
    );

    // Garbage before answers, bad CRCs (answered by a retry), noise between frames.
    r.sim
        .garbage_before(LIGHT, 3, vec![0x00, 0xff, LIGHT, 0x03, 0x99]);
    r.sim.corrupt_crc(STATUS, 1);
    r.sim.inject_garbage(vec![0x55; 40]);
    r.sim.set_holding(STATUS, 0, 3);
    assert_eq!(
        update_of(&mut r.updates, "status", "colour").await,
        num(3.0)
    );
    r.sim.set_holding(LIGHT, 0, 70);
    assert_eq!(update_of(&mut r.updates, "light", "dim1").await, num(70.0));
    let stats = r.bus.stats();
    assert!(stats.bad_frames >= 3, "{stats:?}");
    assert!(stats.exceptions >= 2);
    let light = handle(&r.bus, "light").health();
    assert!(light.counters.bad_frames >= 1, "{light:?}");
    assert_eq!(light.state, LinkState::Online);
    assert_eq!(status.health().state, LinkState::Online);
}

/// Mean period between consecutive FC`function` requests to `unit` within [from, to).
fn mean_period(
    log: &[RtuSimRequest],
    unit: u8,
    function: u8,
    from: Instant,
    to: Instant,
) -> (Duration, usize) {
    let at: Vec<Instant> = log
        .iter()
        .filter(|r| r.unit == unit && r.function == function && r.at >= from && r.at < to)
        .map(|r| r.at)
        .collect();
    assert!(
        at.len() >= 5,
        "too few polls of unit {unit} in the window: {}",
        at.len()
    );
    let span = *at.last().unwrap() - at[0];
    (span / (at.len() as u32 - 1), at.len())
}

#[tokio::test]
async fn a_dead_unit_does_not_slow_its_neighbours() {
    let poll = 100;
    let r = rig(
        vec![
            unit("light", LIGHT, light_points(), poll),
            unit("pir", PIR, pir_points(), poll),
            unit("status", STATUS, status_points(), poll),
        ],
        &[
            (LIGHT, SimKind::LightModule),
            (PIR, SimKind::PirInput),
            (STATUS, SimKind::StatusLight),
        ],
    );
    wait_state(
        handle(&r.bus, "status"),
        LinkState::Online,
        Duration::from_secs(3),
    )
    .await;
    let window = Duration::from_millis(1500);
    let t0 = Instant::now();
    sleep(window).await;
    let t1 = Instant::now();
    r.sim.set_silent(STATUS, true);
    wait_state(
        handle(&r.bus, "status"),
        LinkState::Offline,
        Duration::from_secs(3),
    )
    .await;
    assert_eq!(
        handle(&r.bus, "status")
            .write("colour", Value::Number(1.0))
            .await,
        Err(DriverError::Offline),
        "a quarantined unit fails fast"
    );
    let t2 = Instant::now();
    sleep(window).await;
    let t3 = Instant::now();
    let log = r.sim.requests();
    for (id, function) in [(LIGHT, 0x01), (PIR, 0x02)] {
        let (before, n1) = mean_period(&log, id, function, t0, t1);
        let (after, n2) = mean_period(&log, id, function, t2, t3);
        let change = (after.as_secs_f64() - before.as_secs_f64()).abs() / before.as_secs_f64();
        println!(
            "unit {id}: mean poll period {before:?} ({n1} polls) with every unit alive, {after:?} ({n2} polls) with unit {STATUS} dead: {:.1} % change",
            change * 100.0
        );
        assert!(change <= 0.10, "unit {id}: {before:?} -> {after:?}");
    }
    // The dead unit is only probed now and then (backoff 200 ms doubling to 400 ms).
    let probes = log
        .iter()
        .filter(|q| q.unit == STATUS && q.at >= t2 && q.at < t3)
        .count();
    println!("unit {STATUS}: {probes} probes in {window:?}");
    assert!(probes <= 6, "{probes} probes");
    // It comes back.
    r.sim.set_silent(STATUS, false);
    wait_state(
        handle(&r.bus, "status"),
        LinkState::Online,
        Duration::from_secs(3),
    )
    .await;
    let stats = r.bus.stats();
    assert!(stats.timeouts >= 2);
    assert_eq!(stats.units[2].state, UnitState::Online);
}

#[tokio::test]
async fn a_scene_write_waits_behind_at_most_one_request() {
    // A slow HVAC unit polled back to back keeps the line busy all the time.
    let mut slow = unit("hvac", HVAC, hvac_points(), 10);
    slow.timeout = Duration::from_millis(200);
    let r = rig(
        vec![slow, unit("light", LIGHT, light_points(), 10)],
        &[
            (HVAC, SimKind::HvacController),
            (LIGHT, SimKind::LightModule),
        ],
    );
    wait_state(
        handle(&r.bus, "light"),
        LinkState::Online,
        Duration::from_secs(3),
    )
    .await;
    wait_state(
        handle(&r.bus, "hvac"),
        LinkState::Online,
        Duration::from_secs(3),
    )
    .await;
    r.sim.set_response_delay(HVAC, Duration::from_millis(30));
    sleep(Duration::from_millis(200)).await;
    let light = handle(&r.bus, "light");
    for round in 0..5u16 {
        let issued = Instant::now();
        light
            .write("dim1", Value::Number(f64::from(10 + round)))
            .await
            .unwrap();
        let log = r.sim.requests();
        let write = log
            .iter()
            .find(|q| q.unit == LIGHT && q.function == 0x06 && q.at >= issued)
            .expect("the write reached the simulator");
        let ahead = log
            .iter()
            .filter(|q| q.at >= issued && q.at < write.at)
            .count();
        assert!(
            ahead <= 1,
            "round {round}: {ahead} requests went before the write"
        );
        sleep(Duration::from_millis(37)).await;
    }
}

#[tokio::test]
async fn a_point_can_be_polled_slower_than_its_device() {
    let points = vec![
        ModbusPoint::new("mode", ModbusTable::HoldingRegister, 0, DataType::U16),
        ModbusPoint::new("co2", ModbusTable::InputRegister, 2, DataType::U16)
            .with_poll_interval(Duration::from_millis(400)),
    ];
    let mut r = rig(
        vec![unit("hvac", HVAC, points, 40)],
        &[(HVAC, SimKind::HvacController)],
    );
    let _ = first_values(&mut r.updates, 2).await;
    let from = Instant::now();
    sleep(Duration::from_millis(1200)).await;
    let log = r.sim.requests();
    let count = |function: u8| {
        log.iter()
            .filter(|q| q.at >= from && q.function == function)
            .count()
    };
    let (fast, slow) = (count(0x03), count(0x04));
    println!("1.2 s: {fast} reads of the 40 ms point, {slow} of the 400 ms point");
    assert!(slow >= 2 && fast >= 5 * slow, "fast {fast}, slow {slow}");
    // Change detection: the slow point's change arrives on its own schedule.
    r.sim.set_input_register(HVAC, 2, 800);
    assert_eq!(update_of(&mut r.updates, "hvac", "co2").await, num(800.0));
}

#[tokio::test]
async fn rtu_over_tcp_uses_the_same_bus_owner() {
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let sim = RtuSimBus::spawn_tcp(
        any,
        &[
            (HVAC, SimKind::HvacController),
            (LIGHT, SimKind::LightModule),
        ],
    )
    .await
    .unwrap();
    let (tx, mut rx) = mpsc::channel(64);
    let cfg = RtuBusConfig {
        backoff_min: Duration::from_millis(100),
        ..RtuBusConfig::tcp(
            "serial-server",
            sim.addr().unwrap(),
            Some(SerialLine::default()),
        )
    };
    let bus = spawn_rtu_bus(
        cfg,
        vec![
            unit("hvac", HVAC, hvac_points(), 50),
            unit("light", LIGHT, light_points(), 50),
        ],
        tx,
    )
    .unwrap();
    let first = first_values(&mut rx, 7).await;
    assert_eq!(first["hvac/setpoint"], num(21.0));
    bus.handle("light")
        .unwrap()
        .write("ch1", Value::Bool(true))
        .await
        .unwrap();
    assert!(sim.coil(LIGHT, 0));
    // Dropping the connection: every unit down, then back after the reopen.
    sim.shutdown();
    wait_state(
        bus.handle("hvac").unwrap(),
        LinkState::Offline,
        Duration::from_secs(3),
    )
    .await;
    assert!(bus.stats().transport_errors >= 1);
    bus.shutdown();
    timeout(Duration::from_secs(3), async {
        while !bus
            .stats()
            .units
            .iter()
            .all(|u| u.state == UnitState::Stopped)
        {
            sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("shutdown stops every unit");
    assert_eq!(
        bus.handle("light")
            .unwrap()
            .write("ch1", Value::Bool(false))
            .await,
        Err(DriverError::Closed)
    );
}

#[tokio::test]
async fn a_missing_port_quarantines_every_unit_and_reports_why() {
    let (tx, _rx) = mpsc::channel(8);
    let bus = spawn_rtu_bus(
        bus_config("/nonexistent/roomgate-tty"),
        vec![unit("pir", PIR, pir_points(), 50)],
        tx,
    )
    .unwrap();
    let pir = handle(&bus, "pir");
    wait_state(pir, LinkState::Offline, Duration::from_secs(3)).await;
    let error = pir.health().last_error.unwrap();
    assert!(error.contains("/nonexistent/roomgate-tty"), "{error}");
    assert_eq!(pir.read("in1").await, Err(DriverError::Offline));
    pir.shutdown();
    timeout(Duration::from_secs(3), async {
        while !bus
            .stats()
            .units
            .iter()
            .all(|u| u.state == UnitState::Stopped)
        {
            sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the last unit's shutdown ends the bus");
}

#[test]
fn bad_bus_configurations_are_refused_with_installer_messages() {
    let cfg = bus_config("/dev/ttyUSB0");
    let light = |id| unit("light", id, light_points(), 100);
    let err = |units: Vec<RtuUnitConfig>| validate_bus(&cfg, &units).unwrap_err();
    assert_eq!(
        err(vec![light(0)]).to_string(),
        "bus `test-bus`, device `light`: unit id 0 is not usable; RTU unit ids run from 1 to 247"
    );
    assert!(matches!(
        err(vec![light(248)]),
        RtuConfigError::BadUnitId { unit: 248, .. }
    ));
    let mut other = light(5);
    other.device = "other".into();
    assert_eq!(
        err(vec![light(5), other]).to_string(),
        "bus `test-bus`: unit id 5 is used by both `light` and `other`"
    );
    assert!(matches!(
        err(vec![light(5), light(6)]),
        RtuConfigError::DuplicateDevice { .. }
    ));
    assert!(matches!(err(vec![]), RtuConfigError::NoUnits { .. }));
    let mut bad_point = light(5);
    bad_point.points.push(ModbusPoint::new(
        "x",
        ModbusTable::InputRegister,
        0,
        DataType::Bool,
    ));
    assert!(err(vec![bad_point]).to_string().starts_with(
        "bus `test-bus`, device `light`: point `x` is a bool inside a input register"
    ));
    let slow_line = RtuBusConfig::serial(
        "b",
        "/dev/ttyS0",
        SerialLine {
            baud: 300,
            ..SerialLine::default()
        },
    );
    assert!(matches!(
        validate_bus(&slow_line, &[light(1)]),
        Err(RtuConfigError::BadLine { baud: 300, .. })
    ));
    assert!(validate_bus(&cfg, &[light(1)]).is_ok());
}
