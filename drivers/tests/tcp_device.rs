//! End-to-end tests of the Modbus TCP driver against the simulators over real sockets on 127.0.0.1 (no mocks, no fixed ports).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use drivers::modbus::tcp::{
    DeviceHandle, DriverError, LinkState, PointUpdate, TcpDeviceConfig, spawn_tcp_device,
};
use drivers::point::{Access, DataType, ModbusPoint, ModbusTable, Value};
use drivers::sim::{SimDevice, SimKind, SimWrite};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep, timeout};

fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Short timings so that failures and recoveries happen within a few hundred milliseconds.
fn fast(device: &str, addr: SocketAddr) -> TcpDeviceConfig {
    TcpDeviceConfig {
        poll_interval: Duration::from_millis(50),
        request_timeout: Duration::from_millis(150),
        backoff_min: Duration::from_millis(50),
        backoff_max: Duration::from_millis(200),
        queue_depth: 8,
        ..TcpDeviceConfig::new(device, addr, 1)
    }
}

fn coil(name: &str, a: u16) -> ModbusPoint {
    ModbusPoint::new(name, ModbusTable::Coil, a, DataType::Bool)
}

fn holding(name: &str, a: u16, data_type: DataType) -> ModbusPoint {
    ModbusPoint::new(name, ModbusTable::HoldingRegister, a, data_type)
}

fn input(name: &str, a: u16, data_type: DataType) -> ModbusPoint {
    ModbusPoint::new(name, ModbusTable::InputRegister, a, data_type)
}

fn discrete(name: &str, a: u16) -> ModbusPoint {
    ModbusPoint::new(name, ModbusTable::DiscreteInput, a, DataType::Bool)
}

async fn start(
    kind: SimKind,
    cfg: impl FnOnce(SocketAddr) -> TcpDeviceConfig,
    points: Vec<ModbusPoint>,
) -> (SimDevice, DeviceHandle, mpsc::Receiver<PointUpdate>) {
    let sim = SimDevice::spawn(kind, any_port())
        .await
        .expect("simulator binds 127.0.0.1:0");
    let (tx, rx) = mpsc::channel(64);
    let handle = spawn_tcp_device(cfg(sim.addr()), points, tx);
    (sim, handle, rx)
}

async fn next_update(rx: &mut mpsc::Receiver<PointUpdate>) -> PointUpdate {
    timeout(Duration::from_secs(3), rx.recv())
        .await
        .expect("no point update within 3 s")
        .expect("update channel closed")
}

/// Collects `n` updates as point -> value (order between points is not part of the contract).
async fn updates(
    rx: &mut mpsc::Receiver<PointUpdate>,
    n: usize,
) -> BTreeMap<String, Option<Value>> {
    let mut seen = BTreeMap::new();
    for _ in 0..n {
        let u = next_update(rx).await;
        assert!(
            seen.insert(u.point.clone(), u.value).is_none(),
            "second update for {} before the others: {u:?}",
            u.point
        );
    }
    seen
}

/// Waits for the next update of one point, skipping others.
async fn update_of(rx: &mut mpsc::Receiver<PointUpdate>, point: &str) -> Option<Value> {
    loop {
        let u = next_update(rx).await;
        if u.point == point {
            return u.value;
        }
    }
}

async fn assert_quiet(rx: &mut mpsc::Receiver<PointUpdate>, quiet_for: Duration) {
    if let Ok(u) = timeout(quiet_for, rx.recv()).await {
        panic!("expected no update, got {u:?}");
    }
}

async fn wait_state(handle: &DeviceHandle, state: LinkState, within: Duration) {
    let mut health = handle.watch_health();
    timeout(within, health.wait_for(|h| h.state == state))
        .await
        .unwrap_or_else(|_| panic!("not {state} within {within:?}: {:?}", handle.health()))
        .expect("driver gone");
}

fn map(entries: &[(&str, Option<Value>)]) -> BTreeMap<String, Option<Value>> {
    entries.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
}

const ON: Option<Value> = Some(Value::Bool(true));
const OFF: Option<Value> = Some(Value::Bool(false));

fn num(n: f64) -> Option<Value> {
    Some(Value::Number(n))
}

#[tokio::test]
async fn polling_sends_first_values_then_only_changes() {
    let points = vec![
        discrete("occ0", 0),
        discrete("occ1", 1),
        discrete("occ7", 7),
    ];
    let (sim, handle, mut rx) = start(SimKind::PirInput, |a| fast("pir", a), points).await;
    assert_eq!(
        updates(&mut rx, 3).await,
        map(&[("occ0", OFF), ("occ1", OFF), ("occ7", OFF)])
    );
    let first = next_update_is_absent_for(&mut rx, &sim, 300).await;
    assert!(
        first >= 3,
        "polling went on ({first} requests) without updates"
    );

    sim.set_discrete_input(1, true);
    let u = next_update(&mut rx).await;
    assert_eq!(
        u,
        PointUpdate {
            device: "pir".into(),
            point: "occ1".into(),
            value: ON
        }
    );
    assert_quiet(&mut rx, Duration::from_millis(200)).await;

    let health = handle.health();
    assert_eq!(health.state, LinkState::Online);
    assert!(health.counters.requests >= 5);
    assert_eq!(health.counters.exceptions, 0);
    assert_eq!(health.counters.timeouts, 0);
    // The three inputs share one FC02 block read.
    assert!(
        sim.requests()
            .iter()
            .all(|r| (r.function, r.address, r.count) == (2, 0, 8))
    );
}

/// Asserts silence for `ms` and returns how many requests the device saw meanwhile.
async fn next_update_is_absent_for(
    rx: &mut mpsc::Receiver<PointUpdate>,
    sim: &SimDevice,
    ms: u64,
) -> u64 {
    let before = sim.request_count();
    assert_quiet(rx, Duration::from_millis(ms)).await;
    sim.request_count() - before
}

#[tokio::test]
async fn writes_land_in_the_simulator_and_show_up_as_updates() {
    let points = vec![
        coil("relay0", 0),
        holding("dim0", 0, DataType::U16),
        holding("dim1", 1, DataType::U16),
        holding("dim1_bit2", 1, DataType::Bool).with_bit(2),
    ];
    let (sim, handle, mut rx) = start(SimKind::LightModule, |a| fast("lights", a), points).await;
    assert_eq!(
        updates(&mut rx, 4).await,
        map(&[
            ("relay0", OFF),
            ("dim0", num(0.0)),
            ("dim1", num(0.0)),
            ("dim1_bit2", OFF)
        ])
    );

    handle.write("relay0", Value::Bool(true)).await.unwrap();
    assert!(sim.coil(0));
    assert_eq!(update_of(&mut rx, "relay0").await, ON);

    let started = Instant::now();
    handle.write("dim0", Value::Number(75.0)).await.unwrap();
    assert_eq!(sim.holding(0), 75);
    assert_eq!(update_of(&mut rx, "dim0").await, num(75.0));
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "update not prompt"
    );

    // A bool inside a register is a read-modify-write that keeps the other bits.
    handle.write("dim1", Value::Number(3.0)).await.unwrap();
    handle.write("dim1_bit2", Value::Bool(true)).await.unwrap();
    assert_eq!(sim.holding(1), 7);
    handle.write("dim1_bit2", Value::Number(0.0)).await.unwrap();
    assert_eq!(sim.holding(1), 3);

    let hr = ModbusTable::HoldingRegister;
    assert_eq!(
        sim.writes(),
        vec![
            SimWrite {
                table: ModbusTable::Coil,
                address: 0,
                values: vec![1]
            },
            SimWrite {
                table: hr,
                address: 0,
                values: vec![75]
            },
            SimWrite {
                table: hr,
                address: 1,
                values: vec![3]
            },
            SimWrite {
                table: hr,
                address: 1,
                values: vec![7]
            },
            SimWrite {
                table: hr,
                address: 1,
                values: vec![3]
            },
        ]
    );
    // Read-modify-write: FC03 of register 1 right before each bit write (FC06).
    let requests = sim.requests();
    let bit_writes: Vec<usize> = requests
        .iter()
        .enumerate()
        .filter(|(_, r)| r.function == 6 && r.address == 1)
        .map(|(i, _)| i)
        .skip(1)
        .collect();
    assert_eq!(bit_writes.len(), 2);
    for i in bit_writes {
        assert_eq!(
            (
                requests[i - 1].function,
                requests[i - 1].address,
                requests[i - 1].count
            ),
            (3, 1, 1)
        );
    }
    assert_eq!(handle.read("dim1").await, Ok(Value::Number(3.0)));
}

#[tokio::test]
async fn hvac_float_points_and_one_off_reads() {
    let points = vec![
        coil("power", 0),
        holding("mode", 0, DataType::U16),
        holding("setpoint", 1, DataType::F32),
        input("temperature", 0, DataType::F32),
        input("co2", 2, DataType::U16).with_scaling(0.001, 0.0), // ppm -> per mille
        holding("mode_cmd", 0, DataType::U16).with_access(Access::Write),
    ];
    let (sim, handle, mut rx) = start(SimKind::HvacController, |a| fast("hvac", a), points).await;
    let first = updates(&mut rx, 5).await;
    assert_eq!(first["setpoint"], num(21.0));
    assert_eq!(first["temperature"], num(24.0));
    assert!((first["co2"].unwrap().as_f64() - 0.42).abs() < 1e-9);
    assert_eq!(handle.read("setpoint").await, Ok(Value::Number(21.0)));

    handle.write("setpoint", Value::Number(22.5)).await.unwrap();
    // 22.5f32 = 0x41B4_0000, high word first, in one FC16 request.
    assert_eq!((sim.holding(1), sim.holding(2)), (0x41b4, 0x0000));
    assert_eq!(
        sim.writes().last().map(|w| w.values.clone()),
        Some(vec![0x41b4, 0])
    );
    assert_eq!(update_of(&mut rx, "setpoint").await, num(22.5));
    assert_eq!(handle.read("setpoint").await, Ok(Value::Number(22.5)));

    // A write-only point is never polled but can be written and read on demand.
    handle.write("mode_cmd", Value::Number(2.0)).await.unwrap();
    assert_eq!(sim.holding(0), 2);
    assert_eq!(handle.read("mode_cmd").await, Ok(Value::Number(2.0)));
    assert_eq!(update_of(&mut rx, "mode").await, num(2.0));
}

#[tokio::test]
async fn bad_writes_are_refused_without_touching_the_device() {
    let points = vec![
        holding("colour_set", 0, DataType::U16),
        holding("colour", 0, DataType::U16).with_access(Access::Read),
    ];
    let (sim, handle, mut rx) = start(SimKind::StatusLight, |a| fast("status", a), points).await;
    updates(&mut rx, 2).await;
    assert_eq!(
        handle.write("nope", Value::Number(1.0)).await,
        Err(DriverError::UnknownPoint("nope".into()))
    );
    assert_eq!(
        handle.read("nope").await,
        Err(DriverError::UnknownPoint("nope".into()))
    );
    assert_eq!(
        handle.write("colour", Value::Number(1.0)).await,
        Err(DriverError::NotWritable("colour".into()))
    );
    for bad in [
        Value::Number(70000.0),
        Value::Number(-1.0),
        Value::Number(f64::NAN),
        Value::Bool(true),
    ] {
        let err = handle.write("colour_set", bad).await.unwrap_err();
        assert!(matches!(err, DriverError::Codec(_)), "{bad}: {err}");
    }
    // The device refuses colour 9 (exception 03): the write fails, the link stays up.
    let err = handle
        .write("colour_set", Value::Number(9.0))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        DriverError::Exception {
            function: 6,
            code: 3
        }
    );
    assert_eq!(
        err.to_string(),
        "the device refused FC06 with exception 03 (illegal data value)"
    );
    assert!(sim.writes().is_empty());
    assert_eq!(handle.health().state, LinkState::Online);
}

#[tokio::test]
async fn a_write_is_served_before_pending_polls() {
    // Four separate block reads per poll cycle (no gaps allowed), each answered after 60 ms:
    // a write that waited for the cycle would see up to three polls go first.
    let points = vec![
        coil("relay0", 0),
        coil("relay2", 2),
        holding("dim0", 0, DataType::U16),
        holding("dim2", 2, DataType::U16),
    ];
    let cfg = |a| TcpDeviceConfig {
        poll_interval: Duration::from_millis(1),
        request_timeout: Duration::from_millis(1000),
        max_gap: 0,
        ..fast("lights", a)
    };
    let (sim, handle, mut rx) = start(SimKind::LightModule, cfg, points).await;
    updates(&mut rx, 4).await;
    sim.set_response_delay(Duration::from_millis(60));

    for (round, delay_ms) in [0u64, 25, 70, 130, 190].into_iter().enumerate() {
        sleep(Duration::from_millis(delay_ms)).await;
        let queued_at = sim.requests().len();
        let level = 10.0 + round as f64;
        let started = Instant::now();
        handle.write("dim2", Value::Number(level)).await.unwrap();
        let requests = sim.requests();
        let write_at = requests[queued_at..]
            .iter()
            .position(|r| r.function == 6)
            .expect("write request not seen");
        assert!(
            write_at <= 1,
            "round {round}: {write_at} poll requests went before the write: {:?}",
            &requests[queued_at..]
        );
        assert!(
            started.elapsed() < Duration::from_millis(400),
            "round {round}: write too slow"
        );
        assert_eq!(sim.holding(2), level as u16);
    }
}

#[tokio::test]
async fn a_full_queue_fails_fast() {
    let points = vec![holding("colour", 0, DataType::U16)];
    let cfg = |a| TcpDeviceConfig {
        queue_depth: 1,
        request_timeout: Duration::from_secs(2),
        poll_interval: Duration::from_secs(10),
        ..fast("status", a)
    };
    let (sim, handle, mut rx) = start(SimKind::StatusLight, cfg, points).await;
    updates(&mut rx, 1).await;
    sim.set_response_delay(Duration::from_millis(300));
    let started = Instant::now();
    let results = futures_util::future::join_all(
        (1..=4).map(|c| handle.write("colour", Value::Number(f64::from(c)))),
    )
    .await;
    let full = results
        .iter()
        .filter(|r| **r == Err(DriverError::QueueFull))
        .count();
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert!(full >= 1, "{results:?}");
    assert!(ok >= 1, "{results:?}");
    assert_eq!(full + ok, 4, "{results:?}");
    assert_eq!(sim.writes().len(), ok);
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn a_silent_device_goes_offline_and_comes_back() {
    let points = vec![holding("colour", 0, DataType::U16), colour_red_point()];
    let (sim, handle, mut rx) = start(SimKind::StatusLight, |a| fast("status", a), points).await;
    assert_eq!(
        updates(&mut rx, 2).await,
        map(&[("colour", num(0.0)), ("colour_red", OFF)])
    );
    wait_state(&handle, LinkState::Online, Duration::from_secs(1)).await;

    sim.set_silent(true);
    let silenced = Instant::now();
    // Offline within one poll interval plus one request timeout (50 + 150 ms), with slack.
    wait_state(&handle, LinkState::Offline, Duration::from_millis(600)).await;
    assert!(silenced.elapsed() < Duration::from_millis(600));
    assert_eq!(
        updates(&mut rx, 2).await,
        map(&[("colour", None), ("colour_red", None)])
    );
    let health = handle.health();
    assert!(health.counters.timeouts >= 1, "{health:?}");
    assert!(
        health
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("no answer"),
        "{health:?}"
    );

    // Writes fail fast while offline.
    let started = Instant::now();
    assert_eq!(
        handle.write("colour", Value::Number(1.0)).await,
        Err(DriverError::Offline)
    );
    assert_eq!(handle.read("colour").await, Err(DriverError::Offline));
    assert!(started.elapsed() < Duration::from_millis(50));
    // Reconnect attempts to the silent device do not resend None.
    assert_quiet(&mut rx, Duration::from_millis(400)).await;
    assert_eq!(handle.health().state, LinkState::Offline);

    sim.set_holding(0, 4); // someone set it red on the device meanwhile
    sim.set_silent(false);
    wait_state(&handle, LinkState::Online, Duration::from_secs(2)).await;
    assert_eq!(
        updates(&mut rx, 2).await,
        map(&[("colour", num(4.0)), ("colour_red", ON)])
    );
    handle.write("colour", Value::Number(1.0)).await.unwrap();
    assert_eq!(sim.holding(0), 1);
}

/// Bit 2 of the status light's colour register: set for red (4).
fn colour_red_point() -> ModbusPoint {
    holding("colour_red", 0, DataType::Bool)
        .with_bit(2)
        .with_access(Access::Read)
}

#[tokio::test]
async fn an_exception_is_counted_and_keeps_the_link_up() {
    let points = vec![
        holding("colour", 0, DataType::U16),
        holding("ghost", 100, DataType::U16), // not in the status light's map
    ];
    let (sim, handle, mut rx) = start(SimKind::StatusLight, |a| fast("status", a), points).await;
    assert_eq!(
        updates(&mut rx, 2).await,
        map(&[("colour", num(0.0)), ("ghost", None)])
    );
    let started = Instant::now();
    while handle.health().counters.exceptions < 3 {
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            handle.health()
        );
        sleep(Duration::from_millis(20)).await;
    }
    let health = handle.health();
    assert_eq!(health.state, LinkState::Online);
    assert_eq!(health.counters.timeouts, 0);
    assert_eq!(health.counters.transport_errors, 0);
    assert!(health.counters.responses >= health.counters.exceptions);
    assert_eq!(
        health.last_error.as_deref(),
        Some("the device refused FC03 with exception 02 (illegal data address)")
    );
    assert_eq!(
        handle.write("ghost", Value::Number(1.0)).await,
        Err(DriverError::Exception {
            function: 6,
            code: 2
        })
    );
    // The good point still works on the same connection.
    sim.set_holding(0, 3);
    assert_eq!(update_of(&mut rx, "colour").await, num(3.0));
    handle.write("colour", Value::Number(2.0)).await.unwrap();
    assert_eq!(sim.holding(0), 2);
    assert_eq!(handle.health().state, LinkState::Online);
}

#[tokio::test]
async fn a_merged_read_refused_by_the_device_is_split() {
    // Holding 0 and 5 merge into one read of 0..=5 (gap 8), but only holding 0 exists.
    let points = vec![
        holding("colour", 0, DataType::U16),
        holding("ghost", 5, DataType::U16),
    ];
    let (sim, handle, mut rx) = start(SimKind::StatusLight, |a| fast("status", a), points).await;
    assert_eq!(
        updates(&mut rx, 2).await,
        map(&[("colour", None), ("ghost", None)])
    );
    assert_eq!(update_of(&mut rx, "colour").await, num(0.0));
    assert_eq!(handle.health().state, LinkState::Online);
    let requests = sim.requests();
    assert_eq!(
        (requests[0].function, requests[0].address, requests[0].count),
        (3, 0, 6)
    );
    assert!(
        requests
            .iter()
            .any(|r| (r.function, r.address, r.count) == (3, 0, 1))
    );
}

#[tokio::test]
async fn an_unreachable_device_backs_off_and_fails_fast() {
    // A port that was just free: connections are refused.
    let addr = {
        let listener = std::net::TcpListener::bind(any_port()).unwrap();
        listener.local_addr().unwrap()
    };
    let cfg = TcpDeviceConfig {
        backoff_min: Duration::from_millis(40),
        backoff_max: Duration::from_millis(320),
        ..fast("gone", addr)
    };
    let (tx, mut rx) = mpsc::channel(16);
    let handle = spawn_tcp_device(cfg, vec![coil("relay0", 0), coil("relay1", 1)], tx);
    wait_state(&handle, LinkState::Offline, Duration::from_secs(1)).await;
    assert_eq!(
        updates(&mut rx, 2).await,
        map(&[("relay0", None), ("relay1", None)])
    );
    assert_eq!(
        handle.write("relay0", Value::Bool(true)).await,
        Err(DriverError::Offline)
    );
    assert!(
        handle
            .health()
            .last_error
            .unwrap_or_default()
            .contains("connect to")
    );

    // Attempts at about 0, 40, 120, 280, 600, 920 ms: six in one second, not 25.
    sleep(Duration::from_millis(1000)).await;
    let attempts = handle.health().counters.transport_errors;
    assert!(
        (4..=8).contains(&attempts),
        "{attempts} connection attempts in 1 s"
    );
    assert_eq!(handle.health().counters.requests, 0);
    assert_quiet(&mut rx, Duration::from_millis(10)).await;
}

#[tokio::test]
async fn the_first_connection_queues_requests_instead_of_failing() {
    let sim = SimDevice::spawn(SimKind::SocketModule, any_port())
        .await
        .unwrap();
    let (tx, _rx) = mpsc::channel(16);
    let handle = spawn_tcp_device(fast("sockets", sim.addr()), vec![coil("socket3", 3)], tx);
    // Issued before the owner task has even connected.
    handle.write("socket3", Value::Bool(true)).await.unwrap();
    assert!(sim.coil(3));
}

#[tokio::test]
async fn shutdown_or_dropping_every_handle_ends_the_owner_task() {
    let (sim, handle, mut rx) = start(
        SimKind::SocketModule,
        |a| fast("sockets", a),
        vec![coil("socket0", 0)],
    )
    .await;
    updates(&mut rx, 1).await;
    let other = handle.clone();
    other.shutdown();
    // The owner task held the only sender: the channel closes when it ends.
    assert_eq!(timeout(Duration::from_secs(1), rx.recv()).await, Ok(None));
    assert_eq!(
        handle.write("socket0", Value::Bool(true)).await,
        Err(DriverError::Closed)
    );
    assert_eq!(handle.health().state, LinkState::Offline);

    let (tx, mut rx) = mpsc::channel(16);
    let handle = spawn_tcp_device(fast("sockets", sim.addr()), vec![coil("socket0", 0)], tx);
    updates(&mut rx, 1).await;
    let clone = handle.clone();
    drop(handle);
    assert_quiet(&mut rx, Duration::from_millis(100)).await; // a clone keeps it alive
    drop(clone);
    assert_eq!(timeout(Duration::from_secs(1), rx.recv()).await, Ok(None));
}

#[tokio::test]
async fn invalid_points_are_left_out() {
    let points = vec![
        holding("bad_bool", 0, DataType::Bool), // no bit number
        input("ro", 0, DataType::U16).with_access(Access::ReadWrite),
        coil("relay0", 0),
        coil("relay0", 1), // repeated name: ignored
    ];
    let (_sim, handle, mut rx) = start(SimKind::LightModule, |a| fast("lights", a), points).await;
    assert_eq!(updates(&mut rx, 1).await, map(&[("relay0", OFF)]));
    assert_eq!(
        handle.write("bad_bool", Value::Bool(true)).await,
        Err(DriverError::UnknownPoint("bad_bool".into()))
    );
    assert_eq!(
        handle.read("ro").await,
        Err(DriverError::UnknownPoint("ro".into()))
    );
    handle.write("relay0", Value::Bool(true)).await.unwrap();
    assert_eq!(update_of(&mut rx, "relay0").await, ON);
    assert_quiet(&mut rx, Duration::from_millis(200)).await;
}

#[tokio::test]
async fn a_point_can_be_polled_slower_than_its_device() {
    let points = vec![
        holding("mode", 0, DataType::U16),
        input("co2", 2, DataType::U16).with_poll_interval(Duration::from_millis(400)),
    ];
    let (sim, _handle, mut rx) = start(
        SimKind::HvacController,
        |addr| TcpDeviceConfig {
            poll_interval: Duration::from_millis(40),
            ..fast("hvac", addr)
        },
        points,
    )
    .await;
    let _ = updates(&mut rx, 2).await;
    let count = |function: u8| {
        sim.requests()
            .iter()
            .filter(|r| r.function == function)
            .count()
    };
    let (fast0, slow0) = (count(0x03), count(0x04));
    sleep(Duration::from_millis(1200)).await;
    let (fast, slow) = (count(0x03) - fast0, count(0x04) - slow0);
    assert!(slow >= 2 && fast >= 5 * slow, "fast {fast}, slow {slow}");
    sim.set_input_register(2, 900);
    assert_eq!(update_of(&mut rx, "co2").await, num(900.0));
}
