//! Interop tests against an independent Modbus implementation: pymodbus 3.16.1 as a Modbus TCP server and as an RTU server on a socat pty pair, with register contents encoded by Python's `struct`.

// Test helpers outside #[test] functions: a panic there is a test failure, which is the point.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use drivers::device::{LinkState, PointUpdate};
use drivers::modbus::rtu::{Parity, RtuBusConfig, RtuUnitConfig, SerialLine, spawn_rtu_bus};
use drivers::modbus::tcp::{TcpDeviceConfig, spawn_tcp_device};
use drivers::point::{ByteOrder, DataType, ModbusPoint, ModbusTable, Value, WordOrder};
use support::{PtyPair, peers_python};
use tokio::sync::mpsc;
use tokio::time::timeout;

/// A running `modbus_server.py`, killed on drop.
struct Peer {
    child: Child,
    io: Arc<Mutex<(ChildStdin, BufReader<ChildStdout>)>>,
    first_line: String,
}

impl Peer {
    fn start(args: &[&str]) -> Peer {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/modbus_server.py");
        let mut child = Command::new(peers_python())
            .arg(&script)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("pymodbus peer starts");
        let stdin = child.stdin.take().expect("stdin piped");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout piped"));
        let mut first_line = String::new();
        stdout
            .read_line(&mut first_line)
            .expect("peer says it is ready");
        assert!(
            !first_line.is_empty(),
            "pymodbus peer exited before it was ready"
        );
        Peer {
            child,
            io: Arc::new(Mutex::new((stdin, stdout))),
            first_line: first_line.trim().trim_matches('"').to_owned(),
        }
    }

    /// One command, one JSON line back (blocking I/O off the runtime's threads).
    async fn command(&self, line: String) -> String {
        let io = Arc::clone(&self.io);
        tokio::task::spawn_blocking(move || {
            let mut io = io.lock().unwrap();
            writeln!(io.0, "{line}").unwrap();
            io.0.flush().unwrap();
            let mut answer = String::new();
            io.1.read_line(&mut answer).unwrap();
            answer.trim().to_owned()
        })
        .await
        .unwrap()
    }

    async fn get(&self, dev: u8, fc: u8, addr: u16, count: u16) -> String {
        self.command(format!("get {dev} {fc} {addr} {count}")).await
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn hr(name: &str, a: u16, dt: DataType) -> ModbusPoint {
    ModbusPoint::new(name, ModbusTable::HoldingRegister, a, dt)
}

/// The peer's map (see `modbus_server.py`), decoded with every layout.
fn layout_points() -> Vec<ModbusPoint> {
    vec![
        hr("plain", 0, DataType::U16),
        hr("f32_abcd", 1, DataType::F32),
        hr("u32_cdab", 3, DataType::U32)
            .with_layout("CDAB")
            .unwrap(),
        hr("u32_badc", 5, DataType::U32)
            .with_layout("BADC")
            .unwrap(),
        hr("i32_dcba", 7, DataType::I32)
            .with_layout("DCBA")
            .unwrap(),
        hr("u64", 10, DataType::U64),
        hr("f64_cdab", 14, DataType::F64)
            .with_layout("GHEFCDAB")
            .unwrap(),
        hr("scaled", 18, DataType::I16).with_scaling(0.1, 0.0),
        ModbusPoint::new("coil0", ModbusTable::Coil, 0, DataType::Bool),
        ModbusPoint::new("coil7", ModbusTable::Coil, 7, DataType::Bool),
        ModbusPoint::new("di1", ModbusTable::DiscreteInput, 1, DataType::Bool),
        ModbusPoint::new("ir9", ModbusTable::InputRegister, 9, DataType::U16),
        // Written by the tests.
        hr("w_u32_cdab", 20, DataType::U32).with_word_order(WordOrder::LowFirst),
        hr("w_f64_dcba", 22, DataType::F64)
            .with_word_order(WordOrder::LowFirst)
            .with_byte_order(ByteOrder::Swapped),
        hr("w_bit3", 19, DataType::Bool).with_bit(3),
        ModbusPoint::new("w_coil3", ModbusTable::Coil, 3, DataType::Bool),
    ]
}

fn expected(name: &str) -> Value {
    match name {
        "plain" => Value::Number(1234.0),
        "f32_abcd" => Value::Number(21.5),
        "u32_cdab" | "u32_badc" => Value::Number(f64::from(0x1122_3344u32)),
        "i32_dcba" => Value::Number(-2.0),
        "u64" => Value::Number(0x0012_3456_789a_bcdeu64 as f64),
        "f64_cdab" => Value::Number(-1234.5),
        "scaled" => Value::Number(-30.0),
        "coil0" | "coil7" | "di1" => Value::Bool(true),
        "ir9" => Value::Number(109.0),
        "w_u32_cdab" | "w_f64_dcba" => Value::Number(0.0),
        "w_bit3" | "w_coil3" => Value::Bool(false),
        other => panic!("no expectation for {other}"),
    }
}

async fn check_first_values(rx: &mut mpsc::Receiver<PointUpdate>, device: &str, count: usize) {
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < count {
        let u = timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{device}: only {} of {count} values within 5 s: {seen:?}",
                    seen.len()
                )
            })
            .unwrap();
        if u.device != device || !seen.insert(u.point.clone()) {
            continue;
        }
        let got = u
            .value
            .unwrap_or_else(|| panic!("{device}/{} unavailable", u.point));
        let scaled_ok = matches!((got, expected(&u.point)), (Value::Number(a), Value::Number(b)) if (a - b).abs() < 1e-9);
        assert!(
            scaled_ok || got == expected(&u.point),
            "{device}/{}: {got}",
            u.point
        );
    }
}

/// Writes every layout and checks the registers pymodbus holds afterwards.
async fn write_and_check(handle: &drivers::DeviceHandle, peer: &Peer, dev: u8) {
    handle
        .write("w_u32_cdab", Value::Number(f64::from(0x0102_0304u32)))
        .await
        .unwrap();
    assert_eq!(peer.get(dev, 3, 20, 2).await, "[772, 258]"); // 0x0304, 0x0102
    handle
        .write("w_f64_dcba", Value::Number(2.5))
        .await
        .unwrap();
    // 2.5 = 0x4004_0000_0000_0000; DCBA: 00 00 | 00 00 | 00 00 | 04 40
    assert_eq!(peer.get(dev, 3, 22, 4).await, "[0, 0, 0, 1088]");
    handle.write("w_bit3", Value::Bool(true)).await.unwrap();
    assert_eq!(peer.get(dev, 3, 19, 1).await, "[8]");
    handle.write("w_coil3", Value::Bool(true)).await.unwrap();
    assert_eq!(peer.get(dev, 1, 0, 8).await, "[1, 0, 1, 1, 0, 0, 0, 1]");
    assert_eq!(
        handle.read("w_u32_cdab").await,
        Ok(Value::Number(f64::from(0x0102_0304u32)))
    );
    assert_eq!(handle.read("w_f64_dcba").await, Ok(Value::Number(2.5)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_driver_against_pymodbus() {
    let peer = Peer::start(&["tcp"]);
    let port: u16 = peer
        .first_line
        .strip_prefix("PORT ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line from the peer: {}", peer.first_line));
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let (tx, mut rx) = mpsc::channel(64);
    let cfg = TcpDeviceConfig {
        poll_interval: Duration::from_millis(50),
        ..TcpDeviceConfig::new("py", addr, 1)
    };
    let points = layout_points();
    let count = points.len();
    let handle = spawn_tcp_device(cfg, points, tx);
    check_first_values(&mut rx, "py", count).await;
    write_and_check(&handle, &peer, 1).await;
    // A change made in pymodbus arrives as an update.
    assert_eq!(peer.command("set 1 2 1 0".into()).await, "\"ok\"");
    loop {
        let u = timeout(Duration::from_secs(3), rx.recv())
            .await
            .unwrap()
            .unwrap();
        if u.point == "di1" {
            assert_eq!(u.value, Some(Value::Bool(false)));
            break;
        }
    }
    assert_eq!(handle.health().state, LinkState::Online);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtu_bus_against_pymodbus_on_a_pty() {
    let pty = PtyPair::new();
    let peer = Peer::start(&["rtu", &pty.b, "115200"]);
    assert_eq!(peer.first_line, "READY");
    let line = SerialLine {
        baud: 115_200,
        parity: Parity::None,
        data_bits: 8,
        stop_bits: 1,
    };
    let (tx, mut rx) = mpsc::channel(128);
    let unit = |device: &str, id: u8| RtuUnitConfig {
        poll_interval: Duration::from_millis(100),
        timeout: Duration::from_millis(300),
        retries: 2,
        ..RtuUnitConfig::new(device, id, layout_points())
    };
    let bus = spawn_rtu_bus(
        RtuBusConfig::serial("py-bus", &pty.a, line),
        vec![unit("py1", 1), unit("py2", 2)],
        tx,
    )
    .unwrap();
    let count = layout_points().len();
    // Updates of both units interleave; check each unit's first values in turn.
    let (tx1, mut rx1) = mpsc::channel(128);
    let (tx2, mut rx2) = mpsc::channel(128);
    tokio::spawn(async move {
        while let Some(u) = rx.recv().await {
            let target = if u.device == "py1" { &tx1 } else { &tx2 };
            let _ = target.send(u).await;
        }
    });
    check_first_values(&mut rx1, "py1", count).await;
    check_first_values(&mut rx2, "py2", count).await;
    write_and_check(bus.handle("py2").unwrap(), &peer, 2).await;
    // Unit 1 was not written.
    assert_eq!(peer.get(1, 3, 20, 2).await, "[0, 0]");
    let stats = bus.stats();
    println!("pymodbus RTU bus: {stats:?}");
    assert_eq!(stats.exceptions, 0);
    for h in bus.handles() {
        assert_eq!(h.health().state, LinkState::Online, "{}", h.device());
    }
}
