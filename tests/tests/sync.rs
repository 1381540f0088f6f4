//! Cloud sync end to end: a gateway and a hub over a real Mosquitto with mutual TLS.
//!
//! Bookings come down from the hub; the day's events go up and are stored by the hub exactly
//! once, in order, also across a broker outage during which the floor keeps running.

use std::sync::Arc;
use std::time::Duration;

use cloud_sync::hub::{Hub, HubStore};
use cloud_sync::topics::GatewayId;
use cloud_sync::wire::{BookingChange, EventKind, WireBooking};
use drivers::sim::{SimDevice, SimKind};
use gateway::clock::{Clock, ManualClock};
use gateway::sync::{AgentConfig, spawn_agent};
use roomgate_tests::broker::Broker;
use roomgate_tests::{wait_for, wait_until};
use scenes::{Span, Timestamp};

const DAY: i64 = 1_772_409_600_000; // 2026-03-02 00:00 UTC
const WAIT: Duration = Duration::from_secs(15);

fn at(hhmm: &str) -> Timestamp {
    let (h, m) = hhmm.split_once(':').expect("hh:mm");
    let minutes: i64 = h.parse::<i64>().expect("h") * 60 + m.parse::<i64>().expect("m");
    Timestamp::from_millis(DAY) + Span::minutes(minutes)
}

fn booking(id: &str, from: &str, to: &str) -> BookingChange {
    BookingChange::Upsert {
        booking: WireBooking {
            id: id.into(),
            room: "r1".into(),
            start_ms: at(from).as_millis(),
            end_ms: at(to).as_millis(),
            subject: "Synced".into(),
            organizer: "ana@example.com".into(),
            attendees: Vec::new(),
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bookings_come_down_and_every_event_reaches_the_hub_once_even_across_an_outage() {
    let mut broker = Broker::start().expect("mosquitto with mutual TLS");
    let lights = SimDevice::spawn(SimKind::LightModule, ([127, 0, 0, 1], 0).into())
        .await
        .expect("light sim");
    let pir = SimDevice::spawn(SimKind::PirInput, ([127, 0, 0, 1], 0).into())
        .await
        .expect("pir sim");
    let site = format!(
        r#"
[site]
name = "Synced floor"

[[devices]]
id = "lights"
protocol = "modbus-tcp"
host = "127.0.0.1"
port = {}
poll = "50ms"
points = [{{ id = "r1", table = "coil", address = 0, type = "bool" }}]

[[devices]]
id = "pir"
protocol = "modbus-tcp"
host = "127.0.0.1"
port = {}
poll = "50ms"
points = [{{ id = "r1", table = "discrete_input", address = 0, type = "bool" }}]

[[rooms]]
id = "r1"
name = "Boardroom"
kind = "bookable"
bindings = {{ light = "lights/r1", occupancy = "pir/r1" }}
"#,
        lights.addr().port(),
        pir.addr().port()
    );
    let site = gateway::site::load(&site).expect("site");
    let clock = ManualClock::new(at("07:00"));
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

    // The hub, as replica 1.
    let hub_dir = tempfile::tempdir().expect("hub dir");
    let hub_store = Arc::new(HubStore::open_embedded(hub_dir.path()).expect("hub store"));
    let hub = Hub::start(
        broker.mqtt_options("hub-1", "hub/1").expect("hub options"),
        Arc::clone(&hub_store),
        "hub",
    );
    let id = GatewayId::new("site-a", "gw-1").expect("id");
    wait_for("hub connected", WAIT, || hub.stats().connected).await;

    // The gateway's agent, with short timings for the test.
    let mut cfg = AgentConfig::new(
        id.clone(),
        broker
            .mqtt_options(&id.client_id(), &id.to_string())
            .expect("gateway options"),
    );
    cfg.backoff_min = Duration::from_millis(100);
    cfg.backoff_max = Duration::from_millis(800);
    cfg.first_attempt_spread = Duration::from_millis(100);
    cfg.ack_timeout = Duration::from_secs(2);
    let (_agent, status) = spawn_agent(
        cfg,
        running.gateway.store(),
        running.gateway.outbox_watch(),
        gw.clone(),
    );
    wait_for("agent connected", WAIT, || status.borrow().connected).await;

    // A booking made at the hub arrives at the gateway and drives the room.
    hub.change_booking(&id, booking("hub-1", "09:00", "10:00"))
        .await
        .expect("hub booking");
    wait_for("the hub's booking is at the gateway", WAIT, || {
        gw.snapshot().rooms.iter().any(|r| {
            r.next
                .as_ref()
                .is_some_and(|b| b.id == "hub-1" && b.subject == "Synced")
        })
    })
    .await;
    let advance = |to: &str| {
        clock.set(at(to));
        let gw = gw.clone();
        async move { gw.settle().await.expect("settle") }
    };
    advance("08:58").await;
    wait_for("lights on for the hub's booking", WAIT, || lights.coil(0)).await;
    advance("09:10").await; // nobody came: released as a no-show
    wait_for("released", WAIT, || !lights.coil(0)).await;
    wait_until("the hub has the morning's events", WAIT, || async {
        hub_store
            .events(&id)
            .await
            .is_ok_and(|e| e.iter().any(|e| e.kind == EventKind::NoShowStrike))
    })
    .await;
    let store = running.gateway.store();
    wait_for("acked and forgotten", WAIT, || {
        store.outbox_depth().is_ok_and(|d| d == 0)
    })
    .await;

    // The broker goes away; the floor keeps running and queues everything.
    broker.stop().expect("stop broker");
    wait_for("agent sees the outage", WAIT, || !status.borrow().connected).await;
    let r = roomgate_tests::http(
        &api,
        "POST",
        "/api/rooms/r1/bookings",
        Some(
            &serde_json::json!({ "start": "2026-03-02T11:00:00Z", "end": "2026-03-02T12:00:00Z",
                                  "subject": "Offline walk-in" }),
        ),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    advance("10:58").await;
    pir.set_discrete_input(0, true);
    wait_for("presence seen", WAIT, || {
        gw.snapshot()
            .rooms
            .iter()
            .any(|r| r.occupancy == "occupied")
    })
    .await;
    let r = roomgate_tests::http(&api, "POST", "/api/rooms/r1/checkin", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    advance("11:00").await;
    advance("11:30").await;
    advance("12:00").await; // the meeting ends; people still there
    pir.set_discrete_input(0, false);
    wait_for("vacant", WAIT, || {
        gw.snapshot().rooms.iter().any(|r| r.occupancy == "vacant")
    })
    .await;
    advance("12:20").await; // staged shutdown
    let queued = store.outbox_depth().expect("depth");
    assert!(
        queued >= 5,
        "the outage's events wait in the outbox ({queued})"
    );

    // The broker is back: everything arrives, once, in order.
    broker.start_again().expect("broker back");
    wait_for("agent reconnected", WAIT, || status.borrow().connected).await;
    wait_for("outbox drained", WAIT, || {
        store.outbox_depth().is_ok_and(|d| d == 0)
    })
    .await;
    let events = hub_store.events(&id).await.expect("hub events");
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (1..=events.len() as u64).collect::<Vec<_>>(),
        "every event exactly once, in order"
    );
    let kinds: Vec<EventKind> = events.iter().map(|e| e.kind).collect();
    for k in [
        EventKind::MeetingStarted,
        EventKind::Released,
        EventKind::NoShowStrike,
        EventKind::BookingLocal,
        EventKind::CheckedIn,
        EventKind::Ended,
        EventKind::Usage,
    ] {
        assert!(kinds.contains(&k), "the hub lacks {k:?}: {kinds:?}");
    }
    let local = events
        .iter()
        .find(|e| e.kind == EventKind::BookingLocal)
        .expect("local booking");
    assert_eq!(local.data["booking"]["subject"], "Offline walk-in");
    assert!(
        hub_store
            .status(&id)
            .await
            .expect("status")
            .is_some_and(|s| s.online),
        "the retained status says online again"
    );

    // A booking cancelled at the hub disappears from the gateway's room.
    hub.change_booking(&id, booking("hub-2", "14:00", "15:00"))
        .await
        .expect("hub booking");
    let next_is = |id: &'static str| {
        let gw = gw.clone();
        move || {
            gw.snapshot()
                .rooms
                .iter()
                .any(|r| r.next.as_ref().is_some_and(|b| b.id == id))
        }
    };
    wait_for("hub-2 at the gateway", WAIT, next_is("hub-2")).await;
    hub.change_booking(
        &id,
        BookingChange::Delete {
            id: "hub-2".into(),
            room: "r1".into(),
        },
    )
    .await
    .expect("hub cancellation");
    let gone = next_is("hub-2");
    wait_for("hub-2 cancelled at the gateway", WAIT, move || !gone()).await;

    hub.stop().await;
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_with_a_cloud_section_syncs_by_itself() {
    let broker = Broker::start().expect("mosquitto with mutual TLS");
    let id = GatewayId::new("site-b", "gw-9").expect("id");
    let files = broker
        .client_paths(&id.to_string())
        .expect("client certificates");
    let hub_dir = tempfile::tempdir().expect("hub dir");
    let hub_store = Arc::new(HubStore::open_embedded(hub_dir.path()).expect("hub store"));
    let hub = Hub::start(
        broker.mqtt_options("hub-1", "hub/1").expect("hub options"),
        Arc::clone(&hub_store),
        "hub",
    );
    let site = format!(
        r#"
[site]
name = "Cloud floor"

[cloud]
broker = "127.0.0.1:{port}"
site = "site-b"
gateway = "gw-9"
ca = "{ca}"
cert = "{cert}"
key = "{key}"

[[rooms]]
id = "r1"
name = "Boardroom"
kind = "bookable"
"#,
        port = broker.port(),
        ca = files.ca.display(),
        cert = files.cert.display(),
        key = files.key.display(),
    );
    let site = gateway::site::load(&site).expect("site with [cloud]");
    let data = tempfile::tempdir().expect("data");
    let running = gateway::app::start(
        site,
        data.path(),
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        Clock::Manual(ManualClock::new(at("08:00"))),
    )
    .await
    .expect("gateway");
    let api = roomgate_tests::Api::operator(&running);
    wait_until("the hub sees the gateway online", WAIT, || async {
        hub_store
            .status(&id)
            .await
            .is_ok_and(|s| s.is_some_and(|s| s.online))
    })
    .await;
    let r = roomgate_tests::http(
        &api,
        "POST",
        "/api/rooms/r1/bookings",
        Some(&serde_json::json!({ "minutes": 30, "subject": "From the panel" })),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    wait_until("the local booking reaches the hub", WAIT, || async {
        hub_store
            .events(&id)
            .await
            .is_ok_and(|e| e.iter().any(|e| e.kind == EventKind::BookingLocal))
    })
    .await;

    // A [cloud] section that cannot work is refused with the reason.
    let err = gateway::site::load(
        "[site]\nname = \"x\"\n[cloud]\nbroker = \"hub.example.com\"\nsite = \"a\"\ngateway = \"b\"\n",
    )
    .expect_err("no port");
    assert!(err.to_string().contains("host:port"), "{err}");
    let err = gateway::site::load(
        "[site]\nname = \"x\"\n[cloud]\nbroker = \"hub.example.com:8883\"\nsite = \"a\"\ngateway = \"b\"\n",
    )
    .expect_err("no certificates");
    assert!(
        err.to_string().contains("TLS needs `ca`, `cert` and `key`"),
        "{err}"
    );

    hub.stop().await;
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_request_nobody_answered_is_sent_again_without_reconnecting() {
    let broker = Broker::start().expect("mosquitto with mutual TLS");
    let id = GatewayId::new("site-c", "gw-2").expect("id");
    // The hub already has a booking for the gateway, but is not running yet.
    let hub_dir = tempfile::tempdir().expect("hub dir");
    let hub_store = Arc::new(HubStore::open_embedded(hub_dir.path()).expect("hub store"));
    hub_store
        .change_booking(&id, booking("waiting", "09:00", "10:00"))
        .await
        .expect("hub booking");

    let site = gateway::site::load(
        "[site]\nname = \"Late hub\"\n[[rooms]]\nid = \"r1\"\nname = \"Boardroom\"\nkind = \"bookable\"\n",
    )
    .expect("site");
    let data = tempfile::tempdir().expect("data");
    let running = gateway::app::start(
        site,
        data.path(),
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        Clock::Manual(ManualClock::new(at("08:00"))),
    )
    .await
    .expect("gateway");
    let gw = running.handle().clone();
    let mut cfg = AgentConfig::new(
        id.clone(),
        broker
            .mqtt_options(&id.client_id(), &id.to_string())
            .expect("gateway options"),
    );
    cfg.first_attempt_spread = Duration::from_millis(100);
    cfg.sync_timeout = Duration::from_millis(300);
    cfg.sync_timeout_max = Duration::from_secs(2);
    let (_agent, status) = spawn_agent(
        cfg,
        running.gateway.store(),
        running.gateway.outbox_watch(),
        gw.clone(),
    );
    // Connected, and its sync request went to a shared subscription nobody holds: lost.
    wait_for("agent connected", WAIT, || status.borrow().connected).await;
    wait_for("the unanswered request sent again", WAIT, || {
        status.borrow().syncs_resent >= 1
    })
    .await;
    assert!(
        gw.snapshot().rooms.iter().all(|r| r.next.is_none()),
        "no hub, no bookings"
    );

    // The hub comes; a resent request reaches it and the bookings come down.
    let hub = Hub::start(
        broker.mqtt_options("hub-1", "hub/1").expect("hub options"),
        Arc::clone(&hub_store),
        "hub",
    );
    wait_for("the hub's booking at the gateway", WAIT, || {
        gw.snapshot()
            .rooms
            .iter()
            .any(|r| r.next.as_ref().is_some_and(|b| b.id == "waiting"))
    })
    .await;
    assert_eq!(status.borrow().connects, 1, "without reconnecting");
    assert!(hub.stats().syncs >= 1, "the hub answered a request");

    hub.stop().await;
    running.shutdown().await;
}
