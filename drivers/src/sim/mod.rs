//! Modbus TCP simulators of the devices found in a meeting room, for tests and the demo site; written independently of the driver's codec.
//!
//! Each [`SimDevice`] runs a tokio-modbus TCP server (`server::tcp::Server` with a `Service`
//! implementation) and a physics task that ticks every 100 ms. Register banks sit behind one
//! `std::sync::Mutex` per device, held only for the few instructions of a request or a tick
//! (never across an `.await`); there is no other lock, so no lock ordering to keep.
//!
//! # Register maps
//!
//! Addresses are 0-based protocol addresses. Anything outside the map answers exception 02
//! (illegal data address); function codes other than FC01-FC06, FC15 and FC16 answer exception 01
//! (illegal function); quantities outside the Modbus limits and the value ranges below answer
//! exception 03 (illegal data value). Unit identifiers are ignored unless
//! [`SimDevice::set_units`] limits the ids answered (several units behind one gateway).
//!
//! | kind | table | address | meaning |
//! |---|---|---|---|
//! | [`SimKind::LightModule`] | coils | 0..=3 | channel relays on/off |
//! | | holding | 0..=3 | dim level per channel, 0..=100 % |
//! | [`SimKind::SocketModule`] | coils | 0..=3 | socket relays on/off |
//! | [`SimKind::CurtainMotor`] | holding | 0 | target position, 0..=100 % open |
//! | | input | 0 | actual position, % open; moves towards the target at 10 %/s |
//! | | discrete input | 0 | moving |
//! | [`SimKind::HvacController`] | coils | 0 | power |
//! | | holding | 0 | mode: 0 off, 1 heat, 2 cool, 3 auto, 4 fan |
//! | | holding | 1..=2 | setpoint, f32 IEEE-754, high word first (starts at 21.0 °C) |
//! | | input | 0..=1 | room temperature, f32 high word first; starts at 24.0 °C and drifts 0.1 °C/s towards the setpoint while the power is on |
//! | | input | 2 | CO2 in ppm, u16 (420 baseline) |
//! | [`SimKind::PirInput`] | discrete input | 0..=7 | occupancy per channel (set with [`SimDevice::set_discrete_input`]) |
//! | [`SimKind::StatusLight`] | holding | 0 | colour: 0 off, 1 green, 2 yellow, 3 yellow blinking, 4 red |
//!
//! Discrete inputs and input registers are read-only over Modbus (there is no function to write
//! them); tests and the demo change them with [`SimDevice::set_discrete_input`] and
//! [`SimDevice::set_input_register`].
//!
//! # Fault injection
//!
//! [`SimDevice::set_silent`] makes the device accept connections and requests but never answer
//! (a dead device behind a live switch port); [`SimDevice::set_response_delay`] makes it slow.
//!
//! # Modbus RTU
//!
//! [`rtu::RtuSimBus`] puts several of these devices on one serial line (a pty) or behind an
//! RTU-over-TCP listener, one unit id each, with its own hand-written RTU framing and per-unit
//! faults (silence, latency, exceptions, bad CRCs, garbage).

mod plant;
pub mod rtu;

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use thiserror::Error;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_modbus::server::tcp::Server;
use tokio_modbus::{ExceptionCode, Response, SlaveRequest};

use crate::point::ModbusTable;
use plant::Plant;

/// Physics tick period.
const TICK: Duration = Duration::from_millis(100);

/// The kinds of room device that can be simulated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SimKind {
    /// Four dimmable light channels.
    LightModule,
    /// A curtain or blind motor with position feedback.
    CurtainMotor,
    /// A room HVAC controller with temperature and CO2 sensors.
    HvacController,
    /// Eight PIR occupancy inputs.
    PirInput,
    /// Four switched sockets.
    SocketModule,
    /// A room status light (free / booked / in use).
    StatusLight,
}

impl SimKind {
    /// Every kind.
    pub const ALL: [SimKind; 6] = [
        SimKind::LightModule,
        SimKind::CurtainMotor,
        SimKind::HvacController,
        SimKind::PirInput,
        SimKind::SocketModule,
        SimKind::StatusLight,
    ];

    /// Snake-case name ("light_module").
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            SimKind::LightModule => "light_module",
            SimKind::CurtainMotor => "curtain_motor",
            SimKind::HvacController => "hvac_controller",
            SimKind::PirInput => "pir_input",
            SimKind::SocketModule => "socket_module",
            SimKind::StatusLight => "status_light",
        }
    }
}

impl fmt::Display for SimKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A simulator kind name that does not exist.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "unknown simulator kind `{0}`; known kinds: light_module, curtain_motor, hvac_controller, pir_input, socket_module, status_light"
)]
pub struct UnknownSimKind(pub String);

impl FromStr for SimKind {
    type Err = UnknownSimKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SimKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| UnknownSimKind(s.to_owned()))
    }
}

/// One write the simulator accepted: coils (FC05/FC15) as 0/1, holding registers (FC06/FC16) as
/// words. Writes refused with an exception are not logged (they changed nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimWrite {
    /// [`ModbusTable::Coil`] or [`ModbusTable::HoldingRegister`].
    pub table: ModbusTable,
    /// First address written.
    pub address: u16,
    /// Values written, in address order.
    pub values: Vec<u16>,
}

/// One request the simulator received (answered or not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimRequest {
    /// Modbus function code.
    pub function: u8,
    /// First address of the request (0 for functions without one).
    pub address: u16,
    /// Quantity read or written.
    pub count: u16,
}

/// A running simulated device. Clones share the device; it stops on [`SimDevice::shutdown`] or
/// when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct SimDevice {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    kind: SimKind,
    addr: SocketAddr,
    state: Arc<SimState>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// What the server and physics tasks share with the handle.
#[derive(Debug)]
struct SimState {
    plant: Mutex<Plant>,
    silent: AtomicBool,
    /// The unit ids answered; `None` answers every id.
    units: Mutex<Option<Vec<u8>>>,
    delay_micros: AtomicU64,
    requests: AtomicU64,
    /// TCP connections accepted since the start (a client reconnecting counts again).
    connections: AtomicU64,
}

impl SimState {
    fn plant(&self) -> MutexGuard<'_, Plant> {
        // A panic while holding the lock cannot leave the banks half-written in a way that
        // matters to a simulator; keep serving.
        self.plant.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The tokio-modbus service of one connection.
#[derive(Debug, Clone)]
struct SimService {
    state: Arc<SimState>,
}

type Answer = Result<Option<Response>, ExceptionCode>;

impl tokio_modbus::server::Service for SimService {
    type Request = SlaveRequest<'static>;
    type Response = Option<Response>;
    type Exception = ExceptionCode;
    type Future = Pin<Box<dyn Future<Output = Answer> + Send>>;

    fn call(&self, request: Self::Request) -> Self::Future {
        let SlaveRequest { slave, request } = request;
        self.state.requests.fetch_add(1, Ordering::Relaxed);
        self.state.plant().log_request(&request);
        let answered = self
            .state
            .units
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_none_or(|units| units.contains(&slave));
        if self.state.silent.load(Ordering::Relaxed) || !answered {
            // No response at all: the client waits until its own timeout.
            return Box::pin(std::future::ready(Ok(None)));
        }
        let answer = self.state.plant().handle(&request).map(Some);
        let delay = Duration::from_micros(self.state.delay_micros.load(Ordering::Relaxed));
        Box::pin(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            answer
        })
    }
}

impl SimDevice {
    /// Binds `bind` (use port 0 in tests) and starts the Modbus TCP server and the physics tick.
    pub async fn spawn(kind: SimKind, bind: SocketAddr) -> io::Result<SimDevice> {
        let listener = TcpListener::bind(bind).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(SimState {
            plant: Mutex::new(Plant::new(kind)),
            silent: AtomicBool::new(false),
            units: Mutex::new(None),
            delay_micros: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            connections: AtomicU64::new(0),
        });

        let service_state = Arc::clone(&state);
        let server = tokio::spawn(async move {
            let server = Server::new(listener);
            let on_connected = move |stream: TcpStream, _peer: SocketAddr| {
                service_state.connections.fetch_add(1, Ordering::Relaxed);
                let service = SimService {
                    state: Arc::clone(&service_state),
                };
                async move { Ok::<_, io::Error>(Some((service, stream))) }
            };
            let on_process_error = move |error: io::Error| {
                tracing::debug!(%error, "simulator connection ended");
            };
            if let Err(error) = server.serve(&on_connected, on_process_error).await {
                tracing::warn!(%addr, %error, "simulator stopped accepting connections");
            }
        });

        let physics_state = Arc::clone(&state);
        let physics = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(TICK);
            ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
            let mut last = Instant::now();
            loop {
                ticker.tick().await;
                let now = Instant::now();
                physics_state.plant().tick(now - last);
                last = now;
            }
        });

        tracing::debug!(%kind, %addr, "simulator listening");
        Ok(SimDevice {
            inner: Arc::new(Inner {
                kind,
                addr,
                state,
                tasks: vec![server, physics],
            }),
        })
    }

    /// The address the server listens on.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// The simulated kind.
    #[must_use]
    pub fn kind(&self) -> SimKind {
        self.inner.kind
    }

    /// Coil `a`; false outside the map.
    #[must_use]
    pub fn coil(&self, a: u16) -> bool {
        self.state()
            .coils
            .get(usize::from(a))
            .copied()
            .unwrap_or(false)
    }

    /// Discrete input `a`; false outside the map.
    #[must_use]
    pub fn discrete_input(&self, a: u16) -> bool {
        self.state()
            .discrete_inputs
            .get(usize::from(a))
            .copied()
            .unwrap_or(false)
    }

    /// Holding register `a`; 0 outside the map.
    #[must_use]
    pub fn holding(&self, a: u16) -> u16 {
        self.state()
            .holding
            .get(usize::from(a))
            .copied()
            .unwrap_or(0)
    }

    /// Input register `a`; 0 outside the map.
    #[must_use]
    pub fn input_register(&self, a: u16) -> u16 {
        self.state().input.get(usize::from(a)).copied().unwrap_or(0)
    }

    /// Sets a discrete input as the physical world would (a PIR detecting someone). Outside the
    /// map: logged and ignored.
    pub fn set_discrete_input(&self, a: u16, v: bool) {
        if !self.state().set_discrete_input(a, v) {
            self.outside_map("discrete input", a);
        }
    }

    /// Sets an input register as the physical world would; physics continues from there.
    /// Outside the map: logged and ignored.
    pub fn set_input_register(&self, a: u16, v: u16) {
        if !self.state().set_input_register(a, v) {
            self.outside_map("input register", a);
        }
    }

    /// Changes a coil locally (a push button on the device); not a Modbus write, not logged in
    /// [`SimDevice::writes`]. Outside the map: logged and ignored.
    pub fn set_coil(&self, a: u16, v: bool) {
        if !self.state().set_coil(a, v) {
            self.outside_map("coil", a);
        }
    }

    /// Changes a holding register locally (a setting on the device's own panel); no range check,
    /// not logged in [`SimDevice::writes`]. Outside the map: logged and ignored.
    pub fn set_holding(&self, a: u16, v: u16) {
        if !self.state().set_holding(a, v) {
            self.outside_map("holding register", a);
        }
    }

    /// Fault injection: while silent the device accepts connections and requests but never
    /// answers.
    pub fn set_silent(&self, silent: bool) {
        self.inner.state.silent.store(silent, Ordering::Relaxed);
    }

    /// Answers only requests for these unit ids, as a serial-to-Ethernet gateway with several
    /// units behind one address does; requests for other ids get no answer. `None` (the
    /// start) answers every id, as a device addressed by IP alone.
    pub fn set_units(&self, units: Option<Vec<u8>>) {
        *self
            .inner
            .state
            .units
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = units;
    }

    /// Fault injection: every answer is held back by `delay` (a slow device or link).
    pub fn set_response_delay(&self, delay: Duration) {
        let micros = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        self.inner
            .state
            .delay_micros
            .store(micros, Ordering::Relaxed);
    }

    /// How many TCP connections the server has accepted (a client that reconnects, or a
    /// restarted client, counts again).
    #[must_use]
    pub fn connection_count(&self) -> u64 {
        self.inner.state.connections.load(Ordering::Relaxed)
    }

    /// Every write the device accepted, oldest first (the last 65536).
    #[must_use]
    pub fn writes(&self) -> Vec<SimWrite> {
        self.state().writes()
    }

    /// Every request received, oldest first (the last 4096).
    #[must_use]
    pub fn requests(&self) -> Vec<SimRequest> {
        self.state().requests()
    }

    /// Number of requests received, answered or not.
    #[must_use]
    pub fn request_count(&self) -> u64 {
        self.inner.state.requests.load(Ordering::Relaxed)
    }

    /// Stops the server (the port closes, open connections drop) and the physics. The register
    /// contents stay readable.
    pub fn shutdown(&self) {
        for task in &self.inner.tasks {
            task.abort();
        }
    }

    fn state(&self) -> MutexGuard<'_, Plant> {
        self.inner.state.plant()
    }

    fn outside_map(&self, table: &str, a: u16) {
        tracing::warn!(kind = %self.inner.kind, table, address = a, "address outside the simulator's map; ignored");
    }
}
