//! Point telemetry and the hub's status snapshot, end to end: simulated Modbus devices, a
//! gateway whose `[cloud.telemetry]` selects some of their points, a real Mosquitto with
//! mutual TLS and a real hub.
//!
//! The gateway's clock is manual, so batches and rate limits run on time the test sets: counts
//! of samples are exact. A sample that must not have been sent is proven absent by ordering
//! (PROTOCOL.md: one publisher, one connection): a later sample of the same point arrives,
//! and nothing else came before it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cloud_sync::hub::{Hub, HubStore};
use cloud_sync::topics::{Channel, GatewayId};
use cloud_sync::wire::{self, PointSample, Telemetry};
use drivers::sim::{SimDevice, SimKind};
use gateway::clock::{Clock, ManualClock};
use roomgate_tests::broker::{Broker, BrokerConfig};
use roomgate_tests::{wait_for, wait_until};
use rumqttc::{AsyncClient, Event, Packet, QoS};
use scenes::{Span, Timestamp};

const T0: i64 = 1_772_438_400_000; // 2026-03-02 08:00 UTC
const WAIT: Duration = Duration::from_secs(20);

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_millis(T0) + Span::seconds(seconds)
}

/// Every telemetry sample a raw subscriber with a hub certificate saw, in arrival order.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<PointSample>>>);

impl Seen {
    fn all(&self) -> Vec<PointSample> {
        self.0.lock().expect("samples").clone()
    }

    fn of(&self, point: &str) -> Vec<Option<f64>> {
        self.all()
            .into_iter()
            .filter(|s| format!("{}/{}", s.device, s.point) == point)
            .map(|s| s.value)
            .collect()
    }
}

/// Subscribes to the gateway's telemetry topic as hub replica "spy" and records the samples.
async fn spy(broker: &Broker, gw: &GatewayId) -> Seen {
    let options = broker.mqtt_options("spy", "hub/spy").expect("spy options");
    let (client, mut events) = AsyncClient::new(options, 16);
    client
        .subscribe(gw.topic(Channel::Telemetry), QoS::AtMostOnce)
        .await
        .expect("subscribe");
    let seen = Seen::default();
    let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
    let mut subscribed_tx = Some(subscribed_tx);
    let sink = seen.clone();
    tokio::spawn(async move {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(tx) = subscribed_tx.take() {
                        let _ = tx.send(());
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let batch: Telemetry = wire::decode(&p.payload).expect("a telemetry batch");
                    sink.0.lock().expect("samples").extend(batch.samples);
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    });
    tokio::time::timeout(WAIT, subscribed)
        .await
        .expect("SUBACK in time")
        .expect("the spy runs");
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selected_points_go_up_rate_limited_and_the_status_shows_rooms_and_faults() {
    let broker = Broker::start_with(BrokerConfig {
        hub_replicas: vec!["1".into(), "spy".into()],
    })
    .expect("mosquitto with mutual TLS");
    let id = GatewayId::new("site-t", "gw-1").expect("id");
    let files = broker
        .client_paths(&id.to_string())
        .expect("client certificates");
    let hvac = SimDevice::spawn(SimKind::HvacController, ([127, 0, 0, 1], 0).into())
        .await
        .expect("hvac sim");
    let pir = SimDevice::spawn(SimKind::PirInput, ([127, 0, 0, 1], 0).into())
        .await
        .expect("pir sim");
    let lights = SimDevice::spawn(SimKind::LightModule, ([127, 0, 0, 1], 0).into())
        .await
        .expect("light sim");

    let hub_dir = tempfile::tempdir().expect("hub dir");
    let hub_store = Arc::new(HubStore::open_embedded(hub_dir.path()).expect("hub store"));
    let hub = Hub::start(
        broker.mqtt_options("hub-1", "hub/1").expect("hub options"),
        Arc::clone(&hub_store),
        "hub",
    );
    wait_for("hub connected", WAIT, || hub.stats().connected).await;
    let seen = spy(&broker, &id).await;

    let site = format!(
        r#"
[site]
name = "Telemetry floor"
timezone = "Europe/Berlin"

[cloud]
broker = "127.0.0.1:{port}"
site = "site-t"
gateway = "gw-1"
ca = "{ca}"
cert = "{cert}"
key = "{key}"

[cloud.telemetry]
points = ["hvac/*", "lights/r1"]
batch = "5s"
min_interval = "30s"
deadband = {{ "hvac/co2" = 20 }}

[[devices]]
id = "hvac"
protocol = "modbus-tcp"
host = "127.0.0.1"
port = {hvac}
poll = "50ms"
timeout = "300ms"
points = [
  {{ id = "power", table = "coil", address = 0, type = "bool" }},
  {{ id = "mode", table = "holding_register", address = 0, type = "u16" }},
  {{ id = "setpoint", table = "holding_register", address = 1, type = "f32" }},
  {{ id = "temp", table = "input_register", address = 0, type = "f32" }},
  {{ id = "co2", table = "input_register", address = 2, type = "u16", unit = "ppm" }},
]

[[devices]]
id = "pir"
protocol = "modbus-tcp"
host = "127.0.0.1"
port = {pir}
poll = "50ms"
timeout = "300ms"
points = [{{ id = "r1", table = "discrete_input", address = 0, type = "bool" }}]

[[devices]]
id = "lights"
protocol = "modbus-tcp"
host = "127.0.0.1"
port = {lights}
poll = "50ms"
timeout = "300ms"
points = [
  {{ id = "r1", table = "coil", address = 0, type = "bool" }},
  {{ id = "level", table = "holding_register", address = 0, type = "u16" }},
]

[[rooms]]
id = "r1"
name = "Boardroom"
kind = "bookable"
bindings = {{ light = "lights/r1", light_level = "lights/level", occupancy = "pir/r1", hvac_power = "hvac/power", hvac_mode = "hvac/mode", hvac_setpoint = "hvac/setpoint", temperature = "hvac/temp", co2 = "hvac/co2" }}
"#,
        port = broker.port(),
        ca = files.ca.display(),
        cert = files.cert.display(),
        key = files.key.display(),
        hvac = hvac.addr().port(),
        pir = pir.addr().port(),
        lights = lights.addr().port(),
    );
    let site = gateway::site::load(&site).expect("site with [cloud.telemetry]");
    let clock = ManualClock::new(at(0));
    let data = tempfile::tempdir().expect("data");
    let running = gateway::app::start(
        site,
        data.path(),
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        Clock::Manual(clock.clone()),
    )
    .await
    .expect("gateway");
    let api = roomgate_tests::Api::operator(&running);
    let gw = running.handle().clone();
    let advance = |s: i64| {
        clock.set(at(s));
        let gw = gw.clone();
        async move { gw.settle().await.expect("settle") }
    };
    // The value of a bound point as the gateway sees it now.
    let value = |point: &'static str| {
        let gw = gw.clone();
        move || -> Option<f64> {
            gw.snapshot()
                .rooms
                .iter()
                .flat_map(|r| r.points.iter())
                .find(|p| p.point == point)
                .and_then(|p| match &p.value {
                    serde_json::Value::Bool(b) => Some(f64::from(u8::from(*b))),
                    v => v.as_f64(),
                })
        }
    };
    let co2 = value("hvac/co2");
    let set_co2 = |ppm: u16| {
        hvac.set_input_register(2, ppm);
        let co2 = co2.clone();
        async move {
            wait_for(&format!("the gateway reads {ppm} ppm"), WAIT, || {
                co2() == Some(f64::from(ppm))
            })
            .await;
        }
    };

    wait_until("the hub sees the gateway online", WAIT, || async {
        hub_store
            .status(&id)
            .await
            .is_ok_and(|s| s.is_some_and(|s| s.online))
    })
    .await;
    for p in [
        "hvac/power",
        "hvac/mode",
        "hvac/setpoint",
        "hvac/temp",
        "hvac/co2",
        "pir/r1",
        "lights/r1",
        "lights/level",
    ] {
        let v = value(p);
        wait_for(&format!("a value for {p}"), WAIT, || v().is_some()).await;
    }
    gw.settle().await.expect("settle");
    assert!(
        seen.all().is_empty(),
        "nothing before the first batch period"
    );

    // The first batch: every selected point once, nothing of the others.
    advance(5).await;
    wait_for("the first batch at the spy", WAIT, || seen.all().len() >= 6).await;
    assert_eq!(seen.of("hvac/co2"), vec![Some(420.0)]);

    // A change in every batch period inside the rate limit: only the newest goes, once the
    // 30 s are over.
    for (ppm, s) in [(600, 10), (700, 15), (800, 20), (900, 25), (1000, 30)] {
        set_co2(ppm).await;
        advance(s).await;
    }
    advance(35).await;
    wait_for("the burst's newest value", WAIT, || {
        seen.of("hvac/co2").contains(&Some(1000.0))
    })
    .await;
    assert_eq!(
        seen.of("hvac/co2"),
        vec![Some(420.0), Some(1000.0)],
        "five changes, one sample"
    );

    // Less than the deadband (20 ppm) from the value sent is no change; more is.
    set_co2(1010).await;
    for s in [40, 45, 50, 55, 60, 65] {
        advance(s).await;
    }
    set_co2(1030).await;
    advance(70).await;
    wait_for("the change beyond the deadband", WAIT, || {
        seen.of("hvac/co2").contains(&Some(1030.0))
    })
    .await;
    assert_eq!(
        seen.of("hvac/co2"),
        vec![Some(420.0), Some(1000.0), Some(1030.0)]
    );
    let all = seen.all();
    assert!(
        all.iter()
            .all(|s| s.device == "hvac" || (s.device == "lights" && s.point == "r1")),
        "only the selected points: {all:?}"
    );
    wait_for("the hub counted every sample the spy saw", WAIT, || {
        hub.stats().telemetry_samples == all.len() as u64
    })
    .await;

    // The hub keeps the newest value of exactly the selected points.
    let latest = |hub_store: Arc<HubStore>, id: GatewayId| async move {
        hub_store.telemetry(&id).await.expect("hub telemetry")
    };
    let stored = latest(Arc::clone(&hub_store), id.clone()).await;
    let points: Vec<String> = stored
        .iter()
        .map(|s| format!("{}/{}", s.device, s.point))
        .collect();
    assert_eq!(
        points,
        [
            "hvac/co2",
            "hvac/mode",
            "hvac/power",
            "hvac/setpoint",
            "hvac/temp",
            "lights/r1"
        ]
    );
    for s in &stored {
        let point = format!("{}/{}", s.device, s.point);
        let now = match point.as_str() {
            "hvac/co2" => value("hvac/co2")(),
            "hvac/mode" => value("hvac/mode")(),
            "hvac/power" => value("hvac/power")(),
            "hvac/setpoint" => value("hvac/setpoint")(),
            "hvac/temp" => value("hvac/temp")(),
            _ => value("lights/r1")(),
        };
        let rounded = s.value.map(|v| (v * 100.0).round() / 100.0);
        assert_eq!(rounded, now, "the hub's {point} is the gateway's");
    }

    // The status: the site's time zone, the room's name, its current booking...
    let r = roomgate_tests::http(
        &api,
        "POST",
        "/api/rooms/r1/bookings",
        Some(&serde_json::json!({ "minutes": 30, "subject": "Telemetry review" })),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    wait_until(
        "the hub's status shows the current booking",
        WAIT,
        || async {
            hub_store.status(&id).await.is_ok_and(|s| {
                s.is_some_and(|s| {
                    s.rooms.iter().any(|r| {
                        r.current
                            .as_ref()
                            .is_some_and(|b| b.subject == "Telemetry review")
                    })
                })
            })
        },
    )
    .await;
    let status = hub_store
        .status(&id)
        .await
        .expect("status")
        .expect("a status");
    assert_eq!(status.timezone, "Europe/Berlin");
    assert_eq!(status.devices_total, 3);
    let room = &status.rooms[0];
    assert_eq!((room.id.as_str(), room.name.as_str()), ("r1", "Boardroom"));
    assert!(room.faults.is_empty(), "{room:?}");

    // ...and a fault when a device the room uses dies; its points go up once as unavailable.
    hvac.shutdown();
    wait_until("the hub's status shows the dead device", WAIT, || async {
        hub_store.status(&id).await.is_ok_and(|s| {
            s.is_some_and(|s| {
                s.rooms.iter().any(|r| r.faults == ["hvac"]) && s.devices_offline == ["hvac"]
            })
        })
    })
    .await;
    wait_for("the gateway sees hvac unavailable", WAIT, || {
        co2().is_none()
    })
    .await;
    for s in [100, 105] {
        advance(s).await;
    }
    let hvac_unavailable = |stored: &[PointSample]| {
        stored
            .iter()
            .filter(|s| s.device == "hvac" && s.value.is_none())
            .count()
    };
    wait_until(
        "the hub has the hvac points as unavailable",
        WAIT,
        || async { hvac_unavailable(&latest(Arc::clone(&hub_store), id.clone()).await) == 5 },
    )
    .await;
    for s in [200, 205, 300] {
        advance(s).await;
    }
    // Once each: a later sample (the light switched at the module) proves nothing else came.
    let light = value("lights/r1");
    let switched = light() != Some(1.0);
    lights.set_coil(0, switched);
    wait_for("the gateway reads the switched light", WAIT, || {
        light() == Some(f64::from(u8::from(switched)))
    })
    .await;
    advance(305).await;
    wait_for("the switched light at the spy", WAIT, || {
        seen.all()
            .last()
            .is_some_and(|s| s.point == "r1" && s.value == Some(f64::from(u8::from(switched))))
    })
    .await;
    assert_eq!(
        hvac_unavailable(&seen.all()),
        5,
        "each unavailable point once"
    );

    hub.stop().await;
    running.shutdown().await;
}
