//! Simulator tests over real TCP on 127.0.0.1, using the plain tokio-modbus client (not our driver), so the register maps are checked independently.

use std::net::SocketAddr;
use std::time::Duration;

use drivers::point::ModbusTable;
use drivers::sim::{SimDevice, SimKind, SimRequest, SimWrite};
use tokio::time::{Instant, sleep, timeout};
use tokio_modbus::client::{Context, Reader, Writer, tcp};
use tokio_modbus::{ExceptionCode, Slave};

fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

async fn device(kind: SimKind) -> (SimDevice, Context) {
    let sim = SimDevice::spawn(kind, any_port())
        .await
        .expect("simulator binds 127.0.0.1:0");
    let client = tcp::connect_slave(sim.addr(), Slave(1))
        .await
        .expect("simulator accepts connections");
    (sim, client)
}

fn f32_of(high: u16, low: u16) -> f32 {
    f32::from_bits((u32::from(high) << 16) | u32::from(low))
}

/// (coils, discrete inputs, holding registers, input registers) per kind, from the module docs.
fn documented_sizes(kind: SimKind) -> [u16; 4] {
    match kind {
        SimKind::LightModule => [4, 0, 4, 0],
        SimKind::SocketModule => [4, 0, 0, 0],
        SimKind::CurtainMotor => [0, 1, 1, 1],
        SimKind::HvacController => [1, 0, 3, 3],
        SimKind::PirInput => [0, 8, 0, 0],
        SimKind::StatusLight => [0, 0, 1, 0],
    }
}

#[tokio::test]
async fn every_kind_serves_exactly_its_documented_map() {
    for kind in SimKind::ALL {
        let (sim, mut c) = device(kind).await;
        assert_eq!(sim.kind(), kind);
        assert_eq!(kind.name().parse::<SimKind>(), Ok(kind));
        let [coils, inputs, holding, input_regs] = documented_sizes(kind);
        // FC01 / FC02: whole map answers, one past the end is exception 02.
        if coils > 0 {
            assert_eq!(
                c.read_coils(0, coils).await.unwrap().unwrap().len(),
                usize::from(coils)
            );
        }
        assert_eq!(
            c.read_coils(coils, 1).await.unwrap(),
            Err(ExceptionCode::IllegalDataAddress),
            "{kind} coils"
        );
        if inputs > 0 {
            assert_eq!(
                c.read_discrete_inputs(0, inputs)
                    .await
                    .unwrap()
                    .unwrap()
                    .len(),
                usize::from(inputs)
            );
        }
        assert_eq!(
            c.read_discrete_inputs(inputs, 1).await.unwrap(),
            Err(ExceptionCode::IllegalDataAddress),
            "{kind} discrete inputs"
        );
        // FC03 / FC04.
        if holding > 0 {
            assert_eq!(
                c.read_holding_registers(0, holding)
                    .await
                    .unwrap()
                    .unwrap()
                    .len(),
                usize::from(holding)
            );
        }
        assert_eq!(
            c.read_holding_registers(holding, 1).await.unwrap(),
            Err(ExceptionCode::IllegalDataAddress),
            "{kind} holding"
        );
        if input_regs > 0 {
            assert_eq!(
                c.read_input_registers(0, input_regs)
                    .await
                    .unwrap()
                    .unwrap()
                    .len(),
                usize::from(input_regs)
            );
        }
        assert_eq!(
            c.read_input_registers(input_regs, 1).await.unwrap(),
            Err(ExceptionCode::IllegalDataAddress),
            "{kind} input registers"
        );
        // Out-of-map writes are exception 02, and change nothing.
        assert_eq!(
            c.write_single_coil(coils, true).await.unwrap(),
            Err(ExceptionCode::IllegalDataAddress)
        );
        assert_eq!(
            c.write_single_register(holding, 1).await.unwrap(),
            Err(ExceptionCode::IllegalDataAddress)
        );
        // Unsupported function codes are exception 01 (FC22 mask write register, FC23).
        assert_eq!(
            c.masked_write_register(0, 0xffff, 0).await.unwrap(),
            Err(ExceptionCode::IllegalFunction)
        );
        assert_eq!(
            c.read_write_multiple_registers(0, 1, 0, &[0])
                .await
                .unwrap(),
            Err(ExceptionCode::IllegalFunction)
        );
        assert!(sim.writes().is_empty(), "{kind}");
    }
}

#[tokio::test]
async fn light_module_writes_land_and_are_logged_in_order() {
    let (sim, mut c) = device(SimKind::LightModule).await;
    c.write_single_coil(2, true).await.unwrap().unwrap(); // FC05
    c.write_single_register(1, 55).await.unwrap().unwrap(); // FC06
    c.write_multiple_registers(2, &[10, 100])
        .await
        .unwrap()
        .unwrap(); // FC16
    c.write_multiple_coils(0, &[true, false])
        .await
        .unwrap()
        .unwrap(); // FC15
    assert!(sim.coil(0) && !sim.coil(1) && sim.coil(2) && !sim.coil(3));
    assert_eq!(
        (0..4).map(|a| sim.holding(a)).collect::<Vec<_>>(),
        vec![0, 55, 10, 100]
    );
    assert_eq!(
        c.read_holding_registers(0, 4).await.unwrap().unwrap(),
        vec![0, 55, 10, 100]
    );
    // Dim levels run 0..=100 %: 101 is exception 03 and is not applied.
    assert_eq!(
        c.write_single_register(0, 101).await.unwrap(),
        Err(ExceptionCode::IllegalDataValue)
    );
    assert_eq!(sim.holding(0), 0);
    let hr = ModbusTable::HoldingRegister;
    assert_eq!(
        sim.writes(),
        vec![
            SimWrite {
                table: ModbusTable::Coil,
                address: 2,
                values: vec![1]
            },
            SimWrite {
                table: hr,
                address: 1,
                values: vec![55]
            },
            SimWrite {
                table: hr,
                address: 2,
                values: vec![10, 100]
            },
            SimWrite {
                table: ModbusTable::Coil,
                address: 0,
                values: vec![1, 0]
            },
        ]
    );
    let requests = sim.requests();
    assert_eq!(requests.len() as u64, sim.request_count());
    assert_eq!(
        requests[0],
        SimRequest {
            function: 5,
            address: 2,
            count: 1
        }
    );
    assert_eq!(
        requests.iter().map(|r| r.function).collect::<Vec<_>>(),
        vec![5, 6, 16, 15, 3, 6]
    );
}

#[tokio::test]
async fn hvac_starts_with_documented_values() {
    let (sim, mut c) = device(SimKind::HvacController).await;
    let holding = c.read_holding_registers(0, 3).await.unwrap().unwrap();
    assert_eq!(holding[0], 0, "mode off");
    assert_eq!(
        f32_of(holding[1], holding[2]),
        21.0,
        "setpoint, high word first"
    );
    let input = c.read_input_registers(0, 3).await.unwrap().unwrap();
    assert_eq!(f32_of(input[0], input[1]), 24.0, "room temperature");
    assert_eq!(input[2], 420, "CO2 ppm");
    assert!(!c.read_coils(0, 1).await.unwrap().unwrap()[0], "power off");
    // Modes run 0..=4.
    assert_eq!(
        c.write_single_register(0, 5).await.unwrap(),
        Err(ExceptionCode::IllegalDataValue)
    );
    c.write_single_register(0, 4).await.unwrap().unwrap();
    assert_eq!(sim.holding(0), 4);
    sim.set_input_register(2, 900);
    assert_eq!(
        c.read_input_registers(2, 1).await.unwrap().unwrap(),
        vec![900]
    );
}

#[tokio::test]
async fn hvac_room_temperature_drifts_while_powered() {
    let (sim, mut c) = device(SimKind::HvacController).await;
    c.write_single_coil(0, true).await.unwrap().unwrap();
    let started = Instant::now();
    // 0.1 °C/s towards 21.0: below 24.0 within a few ticks.
    loop {
        let t = f32_of(sim.input_register(0), sim.input_register(1));
        if t < 23.99 {
            assert!(t > 23.0, "{t}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(2), "no drift");
        sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn curtain_moves_towards_target_and_reports_moving() {
    let (sim, mut c) = device(SimKind::CurtainMotor).await;
    assert_eq!(
        c.read_input_registers(0, 1).await.unwrap().unwrap(),
        vec![0]
    );
    c.write_single_register(0, 2).await.unwrap().unwrap();
    assert!(
        c.read_discrete_inputs(0, 1).await.unwrap().unwrap()[0],
        "moving"
    );
    // 2 % at 10 %/s: about 200 ms.
    let started = Instant::now();
    while sim.input_register(0) != 2 || sim.discrete_input(0) {
        assert!(started.elapsed() < Duration::from_secs(2), "curtain stuck");
        sleep(Duration::from_millis(20)).await;
    }
    assert!(started.elapsed() >= Duration::from_millis(100), "too fast");
    assert_eq!(
        c.read_input_registers(0, 1).await.unwrap().unwrap(),
        vec![2]
    );
    assert!(!c.read_discrete_inputs(0, 1).await.unwrap().unwrap()[0]);
}

#[tokio::test]
async fn pir_inputs_follow_the_test() {
    let (sim, mut c) = device(SimKind::PirInput).await;
    sim.set_discrete_input(3, true);
    sim.set_discrete_input(7, true);
    sim.set_discrete_input(8, true); // outside the map: ignored
    let bits = c.read_discrete_inputs(0, 8).await.unwrap().unwrap();
    assert_eq!(
        bits,
        vec![false, false, false, true, false, false, false, true]
    );
    assert!(sim.discrete_input(3) && !sim.discrete_input(8));
}

#[tokio::test]
async fn silent_device_accepts_requests_but_never_answers() {
    let (sim, mut c) = device(SimKind::StatusLight).await;
    sim.set_silent(true);
    let before = sim.request_count();
    assert!(
        timeout(Duration::from_millis(200), c.read_holding_registers(0, 1))
            .await
            .is_err(),
        "a silent device must not answer"
    );
    assert_eq!(sim.request_count(), before + 1, "the request was received");
    sim.set_silent(false);
    let mut fresh = tcp::connect_slave(sim.addr(), Slave(1)).await.unwrap();
    assert_eq!(
        fresh.read_holding_registers(0, 1).await.unwrap(),
        Ok(vec![0])
    );
}

#[tokio::test]
async fn response_delay_slows_answers() {
    let (sim, mut c) = device(SimKind::SocketModule).await;
    sim.set_response_delay(Duration::from_millis(150));
    let started = Instant::now();
    c.read_coils(0, 4).await.unwrap().unwrap();
    assert!(started.elapsed() >= Duration::from_millis(150));
}

#[tokio::test]
async fn shutdown_closes_the_port() {
    let (sim, _c) = device(SimKind::SocketModule).await;
    let addr = sim.addr();
    sim.shutdown();
    let started = Instant::now();
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "port still open"
        );
        sleep(Duration::from_millis(20)).await;
    }
}
