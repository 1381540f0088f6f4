//! Modbus driver benchmark: TCP read throughput across 50 simulated devices, scene write latency under that polling load, and RTU frames/s on a pty against the spec ceiling of the line.
//!
//! Run: `cargo run -p drivers --release --example modbus_bench` (needs `socat` for the RTU part;
//! `tests/peers/ensure.sh` installs it). Prints figures; asserts nothing.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use drivers::device::{DeviceHandle, PointUpdate};
use drivers::modbus::rtu::{Parity, RtuBusConfig, RtuUnitConfig, SerialLine, spawn_rtu_bus};
use drivers::modbus::tcp::{TcpDeviceConfig, spawn_tcp_device};
use drivers::point::{DataType, ModbusPoint, ModbusTable, Value};
use drivers::sim::rtu::RtuSimBus;
use drivers::sim::{SimDevice, SimKind};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep};

const DEVICES: usize = 50;
const MEASURE: Duration = Duration::from_secs(5);

fn light_points() -> Vec<ModbusPoint> {
    let mut points = Vec::new();
    for ch in 0..4u16 {
        points.push(ModbusPoint::new(
            format!("ch{ch}"),
            ModbusTable::Coil,
            ch,
            DataType::Bool,
        ));
        points.push(ModbusPoint::new(
            format!("dim{ch}"),
            ModbusTable::HoldingRegister,
            ch,
            DataType::U16,
        ));
    }
    points
}

/// Drains point updates so that the owner tasks never wait on the channel.
fn sink() -> mpsc::Sender<PointUpdate> {
    let (tx, mut rx) = mpsc::channel(4096);
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    tx
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn tcp_bench() -> Result<(), Box<dyn std::error::Error>> {
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut sims = Vec::new();
    let mut handles: Vec<DeviceHandle> = Vec::new();
    let updates = sink();
    for i in 0..DEVICES {
        let sim = SimDevice::spawn(SimKind::LightModule, any).await?;
        let cfg = TcpDeviceConfig {
            // As fast as the device answers: every cycle is due again when the last one ends.
            poll_interval: Duration::from_millis(1),
            request_timeout: Duration::from_secs(2),
            ..TcpDeviceConfig::new(format!("light{i}"), sim.addr(), 1)
        };
        handles.push(spawn_tcp_device(cfg, light_points(), updates.clone()));
        sims.push(sim);
    }
    sleep(Duration::from_secs(1)).await; // connect and warm up
    let count = |sims: &[SimDevice]| sims.iter().map(SimDevice::request_count).sum::<u64>();
    let (c0, t0) = (count(&sims), Instant::now());
    sleep(MEASURE).await;
    let (c1, t1) = (count(&sims), Instant::now());
    let secs = (t1 - t0).as_secs_f64();
    let requests = (c1 - c0) as f64 / secs;
    // Each poll cycle is two reads: FC01 of 4 coils and FC03 of 4 holding registers.
    println!("Modbus TCP, {DEVICES} simulated devices on 127.0.0.1, polled back to back:");
    println!(
        "  read requests/s:      {requests:>9.0}  (FC01 4 coils + FC03 4 registers per cycle)"
    );
    println!(
        "  register reads/s:     {:>9.0}  (FC03 requests x 4 registers)",
        requests / 2.0 * 4.0
    );
    println!(
        "  point values/s:       {:>9.0}  (8 points per cycle)",
        requests / 2.0 * 8.0
    );

    // Scene writes while every device is polled flat out.
    let mut latencies = Vec::new();
    for n in 0..400usize {
        let handle = &handles[n % DEVICES];
        let started = Instant::now();
        handle
            .write("dim0", Value::Number((n % 100) as f64))
            .await?;
        latencies.push(started.elapsed());
    }
    latencies.sort();
    println!(
        "  scene write latency under that load: p50 {:?}, p99 {:?}, max {:?} ({} writes)",
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or_default(),
        latencies.len()
    );
    for h in &handles {
        h.shutdown();
    }
    Ok(())
}

async fn rtu_bench(line: SerialLine) -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("roomgate-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let (a, b) = (dir.join("a"), dir.join("b"));
    let mut socat = Command::new("socat")
        .arg(format!("pty,raw,echo=0,link={}", a.display()))
        .arg(format!("pty,raw,echo=0,link={}", b.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            format!("socat is needed for the RTU part (tests/peers/ensure.sh installs it): {e}")
        })?;
    while !(a.exists() && b.exists()) {
        sleep(Duration::from_millis(10)).await;
    }
    let units: Vec<(u8, SimKind)> = (1..=4).map(|id| (id, SimKind::StatusLight)).collect();
    let sim = RtuSimBus::spawn_serial(&b.display().to_string(), line.baud, &units)?;
    let configs = units
        .iter()
        .map(|&(id, _)| RtuUnitConfig {
            poll_interval: Duration::from_millis(1),
            ..RtuUnitConfig::new(
                format!("status{id}"),
                id,
                vec![ModbusPoint::new(
                    "colour",
                    ModbusTable::HoldingRegister,
                    0,
                    DataType::U16,
                )],
            )
        })
        .collect();
    let bus = spawn_rtu_bus(
        RtuBusConfig::serial("bench", a.display().to_string(), line),
        configs,
        sink(),
    )?;
    sleep(Duration::from_millis(500)).await;
    let before = bus.stats();
    sleep(Duration::from_secs(3)).await;
    let after = bus.stats();
    let fps = after.frames_per_second_since(&before);
    // FC03 of one register: 8-byte request, 7-byte answer.
    let ceiling = line.max_frames_per_second(8, 7);
    println!(
        "Modbus RTU on a pty, {} baud {}{}{}, 4 units polled back to back (FC03, 1 register):",
        line.baud,
        line.data_bits,
        match line.parity {
            Parity::None => "N",
            Parity::Even => "E",
            Parity::Odd => "O",
        },
        line.stop_bits
    );
    println!(
        "  frames/s: {fps:.1} of a spec ceiling of {ceiling:.1} ({:.1} %); t3.5 = {:?}; bad frames {}, timeouts {}",
        fps / ceiling * 100.0,
        line.t35(),
        after.bad_frames,
        after.timeouts
    );
    bus.shutdown();
    sim.shutdown();
    let _ = socat.kill();
    let _ = socat.wait();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tcp_bench().await?;
    rtu_bench(SerialLine::default()).await?;
    rtu_bench(SerialLine {
        baud: 115_200,
        parity: Parity::None,
        data_bits: 8,
        stop_bits: 1,
    })
    .await?;
    Ok(())
}
