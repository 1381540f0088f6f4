//! End-to-end tests of serial line devices over real pty pairs (socat): the owner task on one end, the simulators on the other; and one over an injected in-memory transport.

mod support;

use std::time::Duration;

use drivers::serial::SerialTransport;
use drivers::serial::sim::{Fault, PirSim, PirWire, PtyPair, ReaderSim, ReaderWire};
use drivers::serial::{Profile, ProfileSpec};
use drivers::{
    CredentialKind, CredentialRead, DeviceHandle, DeviceHealth, DriverError, LinkState,
    PointUpdate, SerialDeviceConfig, SerialPortConfig, Value, spawn_serial_device,
    spawn_serial_device_on,
};
use tokio::io::AsyncWriteExt as _;
use tokio::sync::mpsc;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(5);

/// `socat`, installed with the other peers by `tests/peers/ensure.sh` when missing.
fn socat() -> &'static str {
    support::peers_python();
    "socat"
}

struct Rig {
    _dir: tempfile::TempDir,
    pair: PtyPair,
    device: DeviceHandle,
    updates: mpsc::Receiver<PointUpdate>,
    credentials: mpsc::Receiver<CredentialRead>,
}

async fn rig(profile: &str, tune: impl FnOnce(&mut SerialDeviceConfig)) -> Rig {
    let dir = tempfile::tempdir().expect("temp dir");
    let pair = PtyPair::spawn(socat(), dir.path().join("dev"), dir.path().join("sim"))
        .await
        .expect("socat pty pair");
    let spec = ProfileSpec::builtin(profile).expect("built-in profile");
    let profile = Profile::compile(&spec).expect("built-in profiles compile");
    let port = SerialPortConfig::new(pair.device_link().to_string_lossy(), 9600);
    let mut cfg = SerialDeviceConfig::new("dev1", port, profile);
    cfg.frame_gap = Duration::from_millis(50);
    cfg.backoff_min = Duration::from_millis(20);
    cfg.backoff_max = Duration::from_millis(200);
    tune(&mut cfg);
    let (updates_tx, updates) = mpsc::channel(64);
    let (credentials_tx, credentials) = mpsc::channel(64);
    let device = spawn_serial_device(cfg, updates_tx, credentials_tx);
    wait_health(&device, |h| h.state == LinkState::Online).await;
    Rig {
        _dir: dir,
        pair,
        device,
        updates,
        credentials,
    }
}

async fn wait_health(device: &DeviceHandle, ok: impl Fn(&DeviceHealth) -> bool) -> DeviceHealth {
    let mut health = device.watch_health();
    timeout(WAIT, health.wait_for(|h| ok(h)))
        .await
        .unwrap_or_else(|_| panic!("health never matched; last: {:?}", device.health()))
        .expect("driver alive")
        .clone()
}

async fn next<T>(rx: &mut mpsc::Receiver<T>) -> T {
    timeout(WAIT, rx.recv())
        .await
        .expect("nothing arrived in time")
        .expect("channel closed")
}

fn occupancy(value: Option<bool>) -> PointUpdate {
    PointUpdate {
        device: "dev1".into(),
        point: "occupancy".into(),
        value: value.map(Value::Bool),
    }
}

fn credential(kind: CredentialKind, credential: &str) -> CredentialRead {
    CredentialRead {
        device: "dev1".into(),
        reader: "reader".into(),
        kind,
        credential: credential.into(),
    }
}

/// Counters change silently; poll until they reach `n`.
async fn wait_bad_frames(device: &DeviceHandle, n: u64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while device.health().counters.bad_frames < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "bad_frames stayed at {:?}",
            device.health().counters
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn ascii_pir_occupancy_arrives_and_reads_return_the_last_value() {
    let mut rig = rig("ascii-occupancy", |_| {}).await;
    assert_eq!(rig.device.point_names().collect::<Vec<_>>(), ["occupancy"]);
    assert!(matches!(
        rig.device.read("occupancy").await,
        Err(DriverError::Unsupported(_))
    ));
    let mut pir = PirSim::new(rig.pair.open_sim_end().unwrap(), PirWire::Ascii);
    pir.occupancy(true).await.unwrap();
    assert_eq!(next(&mut rig.updates).await, occupancy(Some(true)));
    // Repeats and heartbeats publish nothing; the change does.
    pir.occupancy(true).await.unwrap();
    pir.heartbeat().await.unwrap();
    pir.occupancy(false).await.unwrap();
    assert_eq!(next(&mut rig.updates).await, occupancy(Some(false)));
    assert_eq!(rig.device.read("occupancy").await, Ok(Value::Bool(false)));
    assert_eq!(
        rig.device.write("occupancy", Value::Bool(true)).await,
        Err(DriverError::NotWritable("occupancy".into()))
    );
    assert_eq!(
        rig.device.relinquish("occupancy").await,
        Err(DriverError::NotWritable("occupancy".into()))
    );
    let counters = rig.device.health().counters;
    assert_eq!(counters.responses, 4);
    assert_eq!(counters.bad_frames, 0);
    rig.device.shutdown();
}

#[tokio::test]
async fn card_and_qr_reads_arrive_from_binary_and_stx_readers() {
    let mut rig = rig("binary-aa", |_| {}).await;
    let mut reader = ReaderSim::new(rig.pair.open_sim_end().unwrap(), ReaderWire::Binary);
    reader.card("046A1FC2", Fault::None).await.unwrap();
    reader.qr("ROOM-301", Fault::None).await.unwrap();
    assert_eq!(
        next(&mut rig.credentials).await,
        credential(CredentialKind::Card, "046A1FC2")
    );
    assert_eq!(
        next(&mut rig.credentials).await,
        credential(CredentialKind::Qr, "ROOM-301")
    );
    // The same card twice is two events.
    reader.card("046A1FC2", Fault::None).await.unwrap();
    assert_eq!(
        next(&mut rig.credentials).await,
        credential(CredentialKind::Card, "046A1FC2")
    );

    let mut rig = self::rig("ascii-card-stx", |_| {}).await;
    let mut reader = ReaderSim::new(rig.pair.open_sim_end().unwrap(), ReaderWire::CardStx);
    reader.card("0004618125", Fault::None).await.unwrap();
    assert_eq!(
        next(&mut rig.credentials).await,
        credential(CredentialKind::Card, "0004618125")
    );

    let mut rig = self::rig("ascii-qr", |_| {}).await;
    let mut reader = ReaderSim::new(rig.pair.open_sim_end().unwrap(), ReaderWire::QrLines);
    reader
        .qr("https://rooms.example/r301", Fault::None)
        .await
        .unwrap();
    reader.pin("4711", Fault::None).await.unwrap();
    assert_eq!(
        next(&mut rig.credentials).await,
        credential(CredentialKind::Qr, "https://rooms.example/r301")
    );
    assert_eq!(
        next(&mut rig.credentials).await,
        credential(CredentialKind::Pin, "4711")
    );
}

#[tokio::test]
async fn faults_are_counted_and_the_next_good_frame_gets_through() {
    let mut rig = rig("binary-aa", |_| {}).await;
    let mut reader = ReaderSim::new(rig.pair.open_sim_end().unwrap(), ReaderWire::Binary);
    reader.card("DEADBEEF", Fault::BadChecksum).await.unwrap();
    reader.card("CAFE", Fault::None).await.unwrap();
    assert_eq!(
        next(&mut rig.credentials).await,
        credential(CredentialKind::Card, "CAFE")
    );
    wait_bad_frames(&rig.device, 1).await;

    // Cut short, then a good frame right behind it: the truncated one does not swallow it.
    reader
        .card("0102030405060708", Fault::Truncated)
        .await
        .unwrap();
    reader.card("BEEF", Fault::None).await.unwrap();
    assert_eq!(
        next(&mut rig.credentials).await,
        credential(CredentialKind::Card, "BEEF")
    );
    wait_bad_frames(&rig.device, 2).await;

    // Garbage and line noise, a pause, then a good frame.
    reader.garbage(b"\x00\x00\xff junk").await.unwrap();
    reader.line_noise(300).await.unwrap();
    tokio::time::sleep(Duration::from_millis(120)).await;
    reader.card("0BADF00D", Fault::None).await.unwrap();
    assert_eq!(
        next(&mut rig.credentials).await,
        credential(CredentialKind::Card, "0BADF00D")
    );
    wait_bad_frames(&rig.device, 3).await;
    assert!(rig.credentials.try_recv().is_err(), "no bogus credential");
    assert_eq!(rig.device.health().state, LinkState::Online);

    // ASCII PIR: a bit error, a truncated line (completed by the frame gap), noise.
    let mut rig = self::rig("ascii-occupancy", |_| {}).await;
    let mut pir = PirSim::new(rig.pair.open_sim_end().unwrap(), PirWire::Ascii);
    pir.occupancy_with(true, Fault::BadChecksum).await.unwrap();
    pir.occupancy_with(true, Fault::Truncated).await.unwrap();
    tokio::time::sleep(Duration::from_millis(120)).await;
    pir.line_noise(64).await.unwrap();
    tokio::time::sleep(Duration::from_millis(120)).await;
    pir.occupancy(true).await.unwrap();
    assert_eq!(next(&mut rig.updates).await, occupancy(Some(true)));
    wait_bad_frames(&rig.device, 3).await;
    assert!(rig.updates.try_recv().is_err(), "no bogus update");
}

#[tokio::test]
async fn unplugged_port_goes_offline_and_recovers_at_the_same_path() {
    let mut rig = rig("ascii-occupancy", |_| {}).await;
    let mut pir = PirSim::new(rig.pair.open_sim_end().unwrap(), PirWire::Ascii);
    pir.occupancy(true).await.unwrap();
    assert_eq!(next(&mut rig.updates).await, occupancy(Some(true)));

    // Unplug: socat dies, the pty and its link vanish.
    let device_link = rig.pair.device_link().to_path_buf();
    let sim_link = rig.pair.sim_link().to_path_buf();
    rig.pair.kill().unwrap();
    drop(pir);
    let health = wait_health(&rig.device, |h| h.state == LinkState::Offline).await;
    assert!(health.last_error.is_some(), "{health:?}");
    assert_eq!(next(&mut rig.updates).await, occupancy(None));
    assert_eq!(
        rig.device.read("occupancy").await,
        Err(DriverError::Offline)
    );
    // Reopen attempts fail while nothing is there.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rig.device.health().state, LinkState::Offline);
    let failures = rig.device.health().counters.transport_errors;
    assert!(failures >= 2, "reopen attempts: {failures}");

    // Plug in again: a new pty at the same path.
    let pair = PtyPair::spawn(socat(), device_link, sim_link)
        .await
        .unwrap();
    wait_health(&rig.device, |h| h.state == LinkState::Online).await;
    let mut pir = PirSim::new(pair.open_sim_end().unwrap(), PirWire::Ascii);
    pir.occupancy(false).await.unwrap();
    assert_eq!(next(&mut rig.updates).await, occupancy(Some(false)));
    rig.device.shutdown();
}

#[tokio::test]
async fn a_silent_device_goes_offline_and_comes_back_with_its_next_frame() {
    let mut rig = rig("binary-aa", |cfg| {
        cfg.silence_timeout = Some(Duration::from_millis(300));
    })
    .await;
    let mut pir = PirSim::new(rig.pair.open_sim_end().unwrap(), PirWire::Binary);
    pir.occupancy(true).await.unwrap();
    assert_eq!(next(&mut rig.updates).await, occupancy(Some(true)));
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        pir.heartbeat().await.unwrap();
    }
    assert_eq!(
        rig.device.health().state,
        LinkState::Online,
        "heartbeats keep it online"
    );

    // Silence.
    let health = wait_health(&rig.device, |h| h.state == LinkState::Offline).await;
    assert!(
        health
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("no frame")),
        "{health:?}"
    );
    assert_eq!(health.counters.timeouts, 1);
    assert_eq!(next(&mut rig.updates).await, occupancy(None));

    pir.occupancy(false).await.unwrap();
    wait_health(&rig.device, |h| h.state == LinkState::Online).await;
    assert_eq!(next(&mut rig.updates).await, occupancy(Some(false)));
}

/// Hands out the read halves of in-memory pipes, one per open; fails to open when none is left.
struct Pipes(Vec<tokio::io::DuplexStream>);

impl SerialTransport for Pipes {
    type Port = tokio::io::DuplexStream;

    async fn open(&mut self) -> std::io::Result<Self::Port> {
        self.0
            .pop()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no pipe left"))
    }

    fn describe(&self) -> String {
        "pipe".into()
    }
}

#[tokio::test]
async fn the_owner_runs_over_any_async_read() {
    let (port, mut wire) = tokio::io::duplex(64);
    let profile = Profile::compile(&ProfileSpec::builtin("ascii-occupancy").unwrap()).unwrap();
    let mut cfg = SerialDeviceConfig::new("dev1", SerialPortConfig::new("pipe", 9600), profile);
    cfg.backoff_min = Duration::from_millis(10);
    let (updates_tx, mut updates) = mpsc::channel(8);
    let (credentials_tx, _credentials) = mpsc::channel(8);
    let device = spawn_serial_device_on(cfg, Pipes(vec![port]), updates_tx, credentials_tx);
    wire.write_all(b"OC").await.unwrap();
    wire.write_all(b"C=1\r\nOCC=0\r").await.unwrap();
    assert_eq!(next(&mut updates).await, occupancy(Some(true)));
    assert_eq!(next(&mut updates).await, occupancy(Some(false)));
    drop(wire);
    let health = wait_health(&device, |h| h.state == LinkState::Offline).await;
    assert_eq!(next(&mut updates).await, occupancy(None));
    assert!(health.last_error.unwrap().contains("pipe"));
    // Reopening fails: the device stays offline with the open error.
    let health = wait_health(&device, |h| {
        h.last_error
            .as_deref()
            .is_some_and(|e| e.contains("no pipe left"))
    })
    .await;
    assert_eq!(health.state, LinkState::Offline);
}
