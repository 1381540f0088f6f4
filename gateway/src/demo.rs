//! `gateway demo`: a simulated floor on loopback, and people who use it.
//!
//! Starts one Modbus TCP simulator per device of the demo site, fills their ports into the
//! embedded site file, and runs a scenario against the real gateway: bookings made through
//! the same API a door panel uses, and PIR presence set on the simulators, so that within
//! minutes a meeting starts, a booking is released as a no-show, a room is vacated and shut
//! down in stages, and walk-in rooms fill and empty. The scenario repeats every 20 minutes.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use drivers::bacnet::sim::{BacnetSim, BacnetSimConfig};
use drivers::sim::rtu::RtuSimBus;
use drivers::sim::{SimDevice, SimKind};
use scenes::Span;

use crate::runtime::{BookingRequest, GatewayHandle, RoomAction};

const TEMPLATE: &str = include_str!("demo/site.toml");
const HVAC_ROOMS: [&str; 3] = ["102", "103", "104"];
const STATUS_ROOMS: [&str; 7] = ["101", "102", "103", "104", "h1", "h2", "s1"];
/// PIR input channel (discrete input address) per room.
const PIR: [(&str, u16); 6] = [
    ("r101", 0),
    ("r102", 1),
    ("r103", 2),
    ("r104", 3),
    ("h1", 4),
    ("h2", 5),
];
const CYCLE: Duration = Duration::from_secs(20 * 60);

/// The simulators of the demo floor: Modbus TCP devices by id, an RS-485 line behind a
/// serial server, and a BACnet controller.
#[derive(Debug)]
pub struct DemoFloor {
    pub sims: BTreeMap<String, SimDevice>,
    pub rtu: RtuSimBus,
    pub bacnet: BacnetSim,
}

impl DemoFloor {
    /// Starts every simulator on `127.0.0.1:0`.
    pub async fn start() -> std::io::Result<DemoFloor> {
        let mut sims = BTreeMap::new();
        let any: SocketAddr = ([127, 0, 0, 1], 0).into();
        let mut spawn = async |id: String, kind: SimKind| -> std::io::Result<()> {
            sims.insert(id, SimDevice::spawn(kind, any).await?);
            Ok(())
        };
        for (id, kind) in tcp_sims() {
            spawn(id, kind).await?;
        }
        let rtu = RtuSimBus::spawn_tcp(any, &[(1, SimKind::LightModule)]).await?;
        let bacnet = BacnetSim::start(BacnetSimConfig::loopback(101))
            .await
            .map_err(std::io::Error::other)?;
        Ok(DemoFloor { sims, rtu, bacnet })
    }

    /// How many simulated devices the floor has.
    pub fn device_count(&self) -> usize {
        self.sims.len() + 2
    }

    /// The demo site file with this floor's simulator ports filled in.
    pub fn site_toml(&self, timezone: &str) -> String {
        let ports: BTreeMap<String, u16> = (self.sims.iter())
            .map(|(id, sim)| (id.clone(), sim.addr().port()))
            .collect();
        let rtu = self.rtu.addr().map_or(0, |a| a.port());
        site_text(timezone, &ports, rtu, self.bacnet.addr().into())
    }

    fn pir(&self, room: &str, present: bool) {
        if let (Some(sim), Some((_, ch))) =
            (self.sims.get("pir"), PIR.iter().find(|(r, _)| *r == room))
        {
            sim.set_discrete_input(*ch, present);
        }
    }

    pub async fn shutdown(self) {
        for s in self.sims.values() {
            s.shutdown();
        }
        self.rtu.shutdown();
        let _ = self.bacnet.stop().await;
    }
}

/// The Modbus TCP simulators of the demo floor: device id and kind.
fn tcp_sims() -> Vec<(String, SimKind)> {
    let mut sims: Vec<(String, SimKind)> = [
        ("lights", SimKind::LightModule),
        ("sockets", SimKind::SocketModule),
        ("pir", SimKind::PirInput),
        ("curtain-103", SimKind::CurtainMotor),
        ("doors", SimKind::SocketModule),
        ("ventilation", SimKind::LightModule),
    ]
    .into_iter()
    .map(|(id, kind)| (id.to_owned(), kind))
    .collect();
    for r in HVAC_ROOMS {
        sims.push((format!("hvac-{r}"), SimKind::HvacController));
    }
    for r in STATUS_ROOMS {
        sims.push((format!("status-{r}"), SimKind::StatusLight));
    }
    sims
}

/// The demo site file with the simulators' ports (Modbus TCP devices by id, the serial
/// server of the RS-485 line) and the BACnet controller's address filled in.
fn site_text(
    timezone: &str,
    ports: &BTreeMap<String, u16>,
    rtu_port: u16,
    bacnet: SocketAddr,
) -> String {
    let mut hvac = String::new();
    for r in HVAC_ROOMS {
        let _ = write!(
            hvac,
            r#"
[[devices]]
id = "hvac-{r}"
name = "HVAC controller, room {r}"
protocol = "modbus-tcp"
host = "127.0.0.1"
port = @hvac-{r}@
points = [
  {{ id = "power", table = "coil", address = 0, type = "bool" }},
  {{ id = "mode", table = "holding_register", address = 0, type = "u16" }},
  {{ id = "setpoint", table = "holding_register", address = 1, type = "f32", unit = "°C" }},
  {{ id = "temperature", table = "input_register", address = 0, type = "f32", unit = "°C" }},
  {{ id = "co2", table = "input_register", address = 2, type = "u16", unit = "ppm" }},
]
"#
        );
    }
    let mut status = String::new();
    for r in STATUS_ROOMS {
        let _ = write!(
            status,
            r#"
[[devices]]
id = "status-{r}"
name = "Status light, room {r}"
protocol = "modbus-tcp"
host = "127.0.0.1"
port = @status-{r}@
points = [{{ id = "colour", table = "holding_register", address = 0, type = "u16" }}]
"#
        );
    }
    let mut s = TEMPLATE
        .replace("@HVAC@", &hvac)
        .replace("@STATUS@", &status)
        .replace("@TZ@", timezone);
    for (id, port) in ports {
        s = s.replace(&format!("@{id}@"), &port.to_string());
    }
    s.replace("@rtu@", &rtu_port.to_string())
        .replace("@bacnet@", &bacnet.to_string())
}

/// The demo site with made-up ports, for unit tests that load it without simulators.
#[cfg(test)]
pub(crate) fn site_for_tests() -> String {
    let ports: BTreeMap<String, u16> = (tcp_sims().into_iter().zip(15_020u16..))
        .map(|((id, _), port)| (id, port))
        .collect();
    site_text(
        "Europe/Berlin",
        &ports,
        15_001,
        ([127, 0, 0, 1], 47_809).into(),
    )
}

#[derive(Debug, Clone, Copy)]
enum Act {
    Book {
        room: &'static str,
        from: Span,
        to: Span,
        subject: &'static str,
        organizer: &'static str,
    },
    Presence(&'static str, bool),
    CheckIn(&'static str),
    /// A card or QR code at a room's door.
    Credential(&'static str, &'static str),
    /// Room 103's CO2 reading, in ppm.
    Co2(u16),
}

/// One cycle of the demo: what happens, at which offset from the cycle's start.
fn script() -> Vec<(Span, Act)> {
    use Act::*;
    let s = Span::seconds;
    let m = Span::minutes;
    let book = |room, from, to, subject, organizer| Book {
        room,
        from,
        to,
        subject,
        organizer,
    };
    let mut v = vec![
        // Summit: a meeting already running (Mei's card opens the door and checks in), CO2
        // climbs and the ventilation runs at full until it falls, people stay past the end,
        // then leave: the staged shutdown (dim, then everything off).
        (
            s(0),
            book("r103", m(-1), m(3), "Design review", "mei@example.com"),
        ),
        (s(0), Presence("r103", true)),
        (s(1), Credential("r103", "0A0B0C0D")),
        (s(60), Co2(1350)),
        (s(150), Co2(720)),
        (m(5), Presence("r103", false)),
        // Fjord: booked soon; presence checks the meeting in (its policy allows it).
        (
            s(0),
            book("r101", m(1), m(8), "Sprint planning", "ana@example.com"),
        ),
        (s(75), Presence("r101", true)),
        (m(6), Presence("r101", false)),
        // Glacier: nobody comes: released as a no-show 2 minutes after start.
        (
            s(0),
            book("r102", m(2), m(12), "Vendor call", "tom@example.com"),
        ),
        // Delta: a stranger's card is refused; Lee's QR code opens the door and checks in;
        // a second check-in on the panel is refused (already checked in).
        (s(0), book("r104", m(5), m(15), "1:1", "lee@example.com")),
        (s(310), Credential("r104", "DEADBEEF")),
        (s(320), Presence("r104", true)),
        (s(330), Credential("r104", "QR:lee-2231")),
        (s(400), CheckIn("r104")),
        (m(14), Presence("r104", false)),
        // Huddle rooms: walk-ins.
        (s(30), Presence("h1", true)),
        (m(4), Presence("h1", false)),
        (m(8), Presence("h2", true)),
        (m(10), Presence("h2", false)),
    ];
    v.sort_by_key(|(t, _)| *t);
    v
}

/// Plays the demo scenario forever (until the gateway goes away).
pub async fn run_scenario(g: GatewayHandle, floor: std::sync::Arc<DemoFloor>) {
    loop {
        let t0 = g.clock.now();
        let started = tokio::time::Instant::now();
        for (offset, act) in script() {
            let at = started + Duration::from_millis(offset.as_millis().max(0).unsigned_abs());
            tokio::time::sleep_until(at).await;
            let result = match act {
                Act::Book {
                    room,
                    from,
                    to,
                    subject,
                    organizer,
                } => g
                    .add_booking(BookingRequest {
                        room: room.into(),
                        subject: subject.into(),
                        organizer: organizer.into(),
                        start: t0 + from,
                        end: t0 + to,
                        attendees: Vec::new(),
                    })
                    .await
                    .map(|_| ()),
                Act::Presence(room, present) => {
                    floor.pir(room, present);
                    Ok(())
                }
                Act::CheckIn(room) => g.check_in(room).await.map(|_| ()),
                Act::Credential(room, credential) => g
                    .room_action(room, RoomAction::Credential(credential.into()))
                    .await
                    .map(|_| ()),
                Act::Co2(ppm) => {
                    if let Some(sim) = floor.sims.get("hvac-103") {
                        sim.set_input_register(2, ppm);
                    }
                    Ok(())
                }
            };
            if let Err(e) = result {
                tracing::warn!("demo scenario step {act:?}: {e}");
            }
        }
        tokio::time::sleep_until(started + CYCLE).await;
    }
}
