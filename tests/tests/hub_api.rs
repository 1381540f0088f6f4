//! The hub's booking API end to end: a real Mosquitto, a hub replica with the embedded store and
//! its HTTP API on a free port, and a real gateway with its sync agent on a manual clock.
//!
//! Bookings made through the API run at the gateway; conflicts, bad input and missing tokens
//! are refused with the documented codes; a weekly series in Berlin stays at 09:00 across the
//! spring switch; no-shows reported by the gateway block the organizer; iCalendar feeds from a
//! file, over HTTP and over HTTPS are imported and re-imported without duplicates; and offline
//! changes at the gateway meet conflicting hub bookings by PROTOCOL.md's rules.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cloud_sync::hub::bookings::BookingService;
use cloud_sync::hub::feeds::Fetcher;
use cloud_sync::hub::service::Pusher;
use cloud_sync::hub::store::{BookingRecord, RoomKey};
use cloud_sync::hub::web::{self, Serving, WebState};
use cloud_sync::hub::{Hub, HubStore};
use cloud_sync::topics::GatewayId;
use cloud_sync::wire::Status;
use drivers::sim::{SimDevice, SimKind};
use gateway::clock::{Clock, ManualClock};
use gateway::sync::{AgentConfig, AgentStatus, spawn_agent};
use roomgate_tests::broker::Broker;
use roomgate_tests::{Response, wait_for, wait_until};
use scenes::Timestamp;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use warp::Filter;

const WAIT: Duration = Duration::from_secs(30);

fn t(s: &str) -> Timestamp {
    let ms = s
        .parse::<jiff::Timestamp>()
        .expect("RFC 3339")
        .as_millisecond();
    Timestamp::from_millis(ms)
}

fn ms(s: &str) -> i64 {
    t(s).as_millis()
}

/// One request to the hub's API, with a bearer token when given.
async fn api(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Response {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the hub");
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let auth = token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{payload}",
        payload.len()
    );
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send request");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read response");
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, text) = raw.split_once("\r\n\r\n").expect("HTTP response head");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "JSON answers have a length"
    );
    if status == 401 {
        assert!(
            head.to_ascii_lowercase()
                .contains("www-authenticate: bearer"),
            "{head}"
        );
    }
    Response {
        status,
        body: serde_json::from_str(text).unwrap_or(Value::Null),
        text: text.to_owned(),
        bytes: text.as_bytes().to_vec(),
        headers: head
            .split("\r\n")
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect(),
    }
}

/// The hub: a replica on the broker (when there is one), the booking service, the web API.
struct HubSide {
    store: Arc<HubStore>,
    hub: Option<Hub>,
    bookings: BookingService,
    web: Serving,
    token: String,
    _dir: tempfile::TempDir,
}

impl HubSide {
    async fn start(broker: Option<&Broker>, now: web::Now, fetcher: Fetcher) -> HubSide {
        let dir = tempfile::tempdir().expect("hub dir");
        let store = Arc::new(HubStore::open_embedded(dir.path()).expect("hub store"));
        let bookings = BookingService::new(Arc::clone(&store), Pusher::new(), now);
        let hub = broker.map(|b| {
            Hub::start_with_bookings(
                b.mqtt_options("hub-1", "hub/1").expect("hub options"),
                bookings.clone(),
                "hub",
            )
        });
        if let Some(hub) = &hub {
            wait_for("hub connected", WAIT, || hub.stats().connected).await;
        }
        let state = Arc::new(WebState::new(bookings.clone(), fetcher));
        let web = web::serve(([127, 0, 0, 1], 0).into(), None, web::routes(state))
            .await
            .expect("hub web");
        let token = cloud_sync::hub::web::api::create_token(&store, "tests")
            .await
            .expect("token");
        HubSide {
            store,
            hub,
            bookings,
            web,
            token,
            _dir: dir,
        }
    }

    async fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Response {
        api(self.web.addr, method, path, Some(&self.token), body).await
    }

    async fn booking(&self, id: &str) -> BookingRecord {
        self.store
            .find_booking(id)
            .await
            .expect("store")
            .expect("booking at the hub")
            .1
    }

    async fn stop(self) {
        self.web.shutdown().await;
        if let Some(hub) = self.hub {
            hub.stop().await;
        }
    }
}

/// A gateway floor: lights and a PIR simulator, the gateway on a manual clock, its agent.
struct Floor {
    lights: SimDevice,
    pir: SimDevice,
    clock: ManualClock,
    running: gateway::app::Running,
    /// The gateway's API as an operator.
    api: roomgate_tests::Api,
    gw: gateway::runtime::GatewayHandle,
    agent: tokio::sync::watch::Receiver<AgentStatus>,
    _data: tempfile::TempDir,
}

impl Floor {
    async fn start(broker: &Broker, id: &GatewayId, timezone: &str, start: Timestamp) -> Floor {
        let lights = SimDevice::spawn(SimKind::LightModule, ([127, 0, 0, 1], 0).into())
            .await
            .expect("light sim");
        let pir = SimDevice::spawn(SimKind::PirInput, ([127, 0, 0, 1], 0).into())
            .await
            .expect("pir sim");
        let site = format!(
            r#"
[site]
name = "Hub floor"
timezone = "{timezone}"

[[devices]]
id = "lights"
protocol = "modbus-tcp"
host = "127.0.0.1"
port = {lights}
poll = "50ms"
points = [
  {{ id = "r1", table = "coil", address = 0, type = "bool" }},
  {{ id = "r2", table = "coil", address = 1, type = "bool" }},
]

[[devices]]
id = "pir"
protocol = "modbus-tcp"
host = "127.0.0.1"
port = {pir}
poll = "50ms"
points = [{{ id = "r1", table = "discrete_input", address = 0, type = "bool" }}]

[[rooms]]
id = "r1"
name = "Boardroom"
kind = "bookable"
bindings = {{ light = "lights/r1", occupancy = "pir/r1" }}

[[rooms]]
id = "r2"
name = "Huddle"
kind = "bookable"
bindings = {{ light = "lights/r2" }}
"#,
            lights = lights.addr().port(),
            pir = pir.addr().port()
        );
        let site = gateway::site::load(&site).expect("site");
        let clock = ManualClock::new(start);
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
        let (_task, agent) = spawn_agent(
            cfg,
            running.gateway.store(),
            running.gateway.outbox_watch(),
            gw.clone(),
        );
        wait_for("agent connected", WAIT, || agent.borrow().connected).await;
        Floor {
            lights,
            pir,
            clock,
            running,
            api,
            gw,
            agent,
            _data: data,
        }
    }

    /// The hub's clock: the gateway's.
    fn now(&self) -> web::Now {
        let clock = self.clock.clone();
        Arc::new(move || clock.now().as_millis())
    }

    async fn advance(&self, to: &str) {
        self.clock.set(t(to));
        self.gw.settle().await.expect("settle");
    }

    /// The gateway's stored booking, if any.
    fn stored(&self, id: &str) -> Option<gateway::store::StoredBooking> {
        self.running
            .gateway
            .store()
            .booking(id)
            .expect("gateway store")
    }

    /// A gateway API call (its local HTTPS, as an operator).
    async fn local(&self, method: &str, path: &str, body: Option<&Value>) -> Response {
        roomgate_tests::http(&self.api, method, path, body).await
    }
}

/// Waits until the hub lists the gateway's rooms.
async fn rooms_known(hub: &HubSide, id: &GatewayId) {
    wait_until("the hub knows the gateway's rooms", WAIT, || async {
        hub.store
            .status(id)
            .await
            .is_ok_and(|s| s.is_some_and(|s| s.online && s.rooms.len() == 2))
    })
    .await;
}

fn booking_body(site: &str, room: &str, start: &str, end: &str, organizer: &str) -> Value {
    json!({ "site": site, "room": room, "start": start, "end": end,
            "subject": "Planning", "organizer": organizer, "attendees": ["Bob@Example.com"] })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bookings_made_through_the_api_run_at_the_gateway() {
    let broker = Broker::start().expect("mosquitto with mutual TLS");
    let id = GatewayId::new("site-a", "gw-1").expect("id");
    let floor = Floor::start(&broker, &id, "UTC", t("2026-03-02T07:00:00Z")).await;
    let hub = HubSide::start(
        Some(&broker),
        floor.now(),
        Fetcher::with_system_roots().expect("fetcher"),
    )
    .await;
    rooms_known(&hub, &id).await;

    // No token, a wrong token: 401 with a Bearer challenge.
    let r = api(hub.web.addr, "GET", "/api/v1/rooms", None, None).await;
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (401, Some("unauthorized")),
        "{}",
        r.text
    );
    let r = api(hub.web.addr, "GET", "/api/v1/rooms", Some("rgt_0000"), None).await;
    assert_eq!(r.status, 401, "{}", r.text);
    assert!(r.text.contains("not valid"), "{}", r.text);

    let r = hub.call("GET", "/api/v1/rooms", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let rooms = r.body["rooms"].as_array().expect("rooms");
    assert_eq!(rooms.len(), 2, "{}", r.text);
    assert_eq!(rooms[0]["site"], "site-a");
    assert_eq!(rooms[0]["room"], "r1");
    assert_eq!(rooms[0]["gateway"], "gw-1");
    assert_eq!(rooms[0]["timezone"], "UTC");

    // A booking through the API reaches the gateway.
    let r = hub
        .call(
            "POST",
            "/api/v1/bookings",
            Some(&booking_body(
                "site-a",
                "r1",
                "2026-03-02T09:00:00Z",
                "2026-03-02T10:00",
                "Ana@Example.com",
            )),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let booking = r.body["id"].as_str().expect("id").to_owned();
    assert_eq!(r.body["organizer"], "ana@example.com");
    assert_eq!(r.body["attendees"], json!(["bob@example.com"]));
    assert_eq!(r.body["end"], "2026-03-02T10:00:00Z");
    assert_eq!(r.body["start_local"], "2026-03-02T09:00:00+00:00");
    assert_eq!(r.body["state"], "active");
    wait_for("the booking is at the gateway", WAIT, || {
        floor
            .stored(&booking)
            .is_some_and(|b| b.start_ms == ms("2026-03-02T09:00:00Z"))
    })
    .await;

    // The slot is taken: 409 with the booking in the way.
    let r = hub
        .call(
            "POST",
            "/api/v1/bookings",
            Some(&booking_body(
                "site-a",
                "r1",
                "2026-03-02T09:30:00Z",
                "2026-03-02T10:30:00Z",
                "carl@example.com",
            )),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert_eq!(r.body["error"], "conflict");
    assert_eq!(r.body["conflict"]["id"], booking.as_str());
    assert_eq!(r.body["conflict"]["start"], "2026-03-02T09:00:00Z");
    assert_eq!(
        r.body["message"],
        format!(
            "the room is already booked from 2026-03-02 09:00 to 10:00 ('Planning', booking {booking})"
        )
    );

    // Bad input: 422 naming the field; unknown rooms: 404; bad JSON: 400.
    let bad = [
        (
            booking_body(
                "site-a",
                "r1",
                "2026-03-02T11:00:00Z",
                "2026-03-02T10:00:00Z",
                "a@x.io",
            ),
            "end",
        ),
        (
            booking_body("site-a", "r1", "noon", "2026-03-02T13:00:00Z", "a@x.io"),
            "start",
        ),
        (
            booking_body(
                "site-a",
                "r1",
                "2026-03-02T11:00:00Z",
                "2026-03-02T12:00:00Z",
                " ",
            ),
            "organizer",
        ),
        (
            json!({ "site": "site-a", "room": "r1", "end": "2026-03-02T12:00:00Z", "organizer": "a@x.io" }),
            "start",
        ),
        (
            json!({ "site": "site-a", "room": "r1", "start": "2026-03-02T11:00:00Z", "end": "2026-03-02T12:00:00Z", "organizer": "a@x.io", "colour": "red" }),
            "colour",
        ),
    ];
    for (body, field) in bad {
        let r = hub.call("POST", "/api/v1/bookings", Some(&body)).await;
        assert_eq!(
            (r.status, r.body["field"].as_str()),
            (422, Some(field)),
            "{}",
            r.text
        );
    }
    let r = hub
        .call(
            "POST",
            "/api/v1/bookings",
            Some(&booking_body(
                "site-a",
                "r9",
                "2026-03-02T11:00:00Z",
                "2026-03-02T12:00:00Z",
                "a@x.io",
            )),
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.text);
    let r = api(
        hub.web.addr,
        "POST",
        "/api/v1/bookings",
        Some(&hub.token),
        Some(&json!("x")),
    )
    .await;
    assert_eq!(r.status, 422, "{}", r.text);

    // Changed through the API, changed at the gateway.
    let r = hub
        .call(
            "PATCH",
            &format!("/api/v1/bookings/{booking}"),
            Some(&json!({ "subject": "Board meeting", "end": "2026-03-02T10:30:00Z" })),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["subject"], "Board meeting");
    wait_for("the change is at the gateway", WAIT, || {
        floor
            .stored(&booking)
            .is_some_and(|b| b.end_ms == ms("2026-03-02T10:30:00Z") && b.subject == "Board meeting")
    })
    .await;
    let r = hub
        .call(
            "GET",
            "/api/v1/rooms/site-a/r1/bookings?from=2026-03-02&to=2026-03-03",
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.body["bookings"].as_array().map(Vec::len),
        Some(1),
        "{}",
        r.text
    );
    let r = hub
        .call("GET", &format!("/api/v1/bookings/{booking}"), None)
        .await;
    assert_eq!(
        (r.status, r.body["end_local"].as_str()),
        (200, Some("2026-03-02T10:30:00+00:00"))
    );

    // The gateway runs the meeting.
    floor.advance("2026-03-02T08:58:00Z").await;
    wait_for("lights on for the API's booking", WAIT, || {
        floor.lights.coil(0)
    })
    .await;
    floor.advance("2026-03-02T09:01:00Z").await;
    wait_for("the meeting runs", WAIT, || {
        floor
            .gw
            .snapshot()
            .rooms
            .iter()
            .any(|r| r.id == "r1" && r.current.as_ref().is_some_and(|c| c.id == booking))
    })
    .await;

    // Cancelled through the API, gone from the gateway.
    let r = hub
        .call(
            "POST",
            "/api/v1/bookings",
            Some(&booking_body(
                "site-a",
                "r2",
                "2026-03-02T11:00:00Z",
                "2026-03-02T12:00:00Z",
                "ana@example.com",
            )),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let later = r.body["id"].as_str().expect("id").to_owned();
    wait_for("the second booking at the gateway", WAIT, || {
        floor.stored(&later).is_some()
    })
    .await;
    let r = hub
        .call("DELETE", &format!("/api/v1/bookings/{later}"), None)
        .await;
    assert_eq!(
        (r.status, r.body["state"].as_str()),
        (200, Some("cancelled")),
        "{}",
        r.text
    );
    wait_for("cancelled at the gateway", WAIT, || {
        floor.stored(&later).is_none()
    })
    .await;
    let r = hub
        .call(
            "PATCH",
            &format!("/api/v1/bookings/{later}"),
            Some(&json!({ "subject": "x" })),
        )
        .await;
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (409, Some("not_active")),
        "{}",
        r.text
    );

    hub.stop().await;
    floor.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_weekly_series_in_berlin_stays_at_nine_across_the_spring_switch() {
    let broker = Broker::start().expect("mosquitto with mutual TLS");
    let id = GatewayId::new("berlin", "gw-1").expect("id");
    let floor = Floor::start(&broker, &id, "Europe/Berlin", t("2026-03-20T08:00:00Z")).await;
    let hub = HubSide::start(
        Some(&broker),
        floor.now(),
        Fetcher::with_system_roots().expect("fetcher"),
    )
    .await;
    rooms_known(&hub, &id).await;

    let r = hub
        .call(
            "POST",
            "/api/v1/series",
            Some(&json!({
                "site": "berlin", "room": "r1", "subject": "Weekly", "organizer": "ana@example.com",
                "start": "2026-03-23T09:00", "end": "2026-03-23T10:00",
                "repeat": { "frequency": "weekly", "weekdays": ["mon"] },
            })),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let series = r.body["id"].as_str().expect("series id").to_owned();
    let shown: Vec<(String, String)> = r.body["occurrences"]
        .as_array()
        .expect("occurrences")
        .iter()
        .map(|o| {
            (
                o["start_local"].as_str().unwrap_or_default().to_owned(),
                o["start"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let expected = [
        ("2026-03-23T09:00:00+01:00", "2026-03-23T08:00:00Z"),
        ("2026-03-30T09:00:00+02:00", "2026-03-30T07:00:00Z"),
        ("2026-04-06T09:00:00+02:00", "2026-04-06T07:00:00Z"),
        ("2026-04-13T09:00:00+02:00", "2026-04-13T07:00:00Z"),
    ];
    assert_eq!(
        shown,
        expected.map(|(l, u)| (l.to_owned(), u.to_owned())),
        "09:00 local before and after the switch, for the 28-day horizon"
    );
    let occurrence = |date: &str| format!("{series}@{date}");
    wait_for("the occurrences are at the gateway", WAIT, || {
        expected
            .iter()
            .zip(["2026-03-23", "2026-03-30", "2026-04-06", "2026-04-13"])
            .all(|((_, utc), date)| {
                floor
                    .stored(&occurrence(date))
                    .is_some_and(|b| b.start_ms == ms(utc))
            })
    })
    .await;

    // All or nothing: a daily series whose first two days are taken books nothing and names both.
    let r = hub
        .call(
            "POST",
            "/api/v1/bookings",
            Some(&booking_body(
                "berlin",
                "r1",
                "2026-03-31T09:30",
                "2026-03-31T10:30",
                "ana@example.com",
            )),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["start"], "2026-03-31T07:30:00Z");
    let single = r.body["id"].as_str().expect("id").to_owned();
    let r = hub
        .call(
            "POST",
            "/api/v1/series",
            Some(&json!({
                "site": "berlin", "room": "r1", "subject": "Daily", "organizer": "bob@example.com",
                "start": "2026-03-30T09:15", "minutes": 30,
                "repeat": { "frequency": "daily", "count": 3 },
            })),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.text);
    let conflicts = r.body["conflicts"].as_array().expect("conflicts");
    let with: Vec<(&str, &str)> = conflicts
        .iter()
        .map(|c| {
            (
                c["date"].as_str().unwrap_or(""),
                c["with"]["id"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        with,
        [
            ("2026-03-30", occurrence("2026-03-30").as_str()),
            ("2026-03-31", single.as_str())
        ],
        "{}",
        r.text
    );
    let r = hub
        .call(
            "GET",
            "/api/v1/rooms/berlin/r1/bookings?from=2026-04-01&to=2026-04-02",
            None,
        )
        .await;
    assert_eq!(
        r.body["bookings"],
        json!([]),
        "nothing of the refused series was booked"
    );
    let r = hub
        .call(
            "POST",
            "/api/v1/series",
            Some(&json!({
                "site": "berlin", "room": "r1", "subject": "Bad", "organizer": "bob@example.com",
                "start": "2026-03-30T09:15", "minutes": 30,
                "repeat": { "frequency": "weekly", "weekdays": ["mon", "someday"] },
            })),
        )
        .await;
    assert_eq!(
        (r.status, r.body["field"].as_str()),
        (422, Some("repeat.weekdays")),
        "{}",
        r.text
    );

    // Exceptions: one occurrence cancelled, one moved; the gateway follows.
    let r = hub
        .call(
            "DELETE",
            &format!("/api/v1/series/{series}/occurrences/2026-04-06"),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["booking"]["state"], "cancelled");
    let r = hub
        .call(
            "PUT",
            &format!("/api/v1/series/{series}/occurrences/2026-04-13"),
            Some(&json!({ "start": "2026-04-13T14:00", "end": "2026-04-13T15:00" })),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["booking"]["start"], "2026-04-13T12:00:00Z");
    let r = hub
        .call(
            "DELETE",
            &format!("/api/v1/series/{series}/occurrences/2026-04-14"),
            None,
        )
        .await;
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (404, Some("not_found")),
        "{}",
        r.text
    );
    wait_for("the exceptions are at the gateway", WAIT, || {
        floor.stored(&occurrence("2026-04-06")).is_none()
            && floor
                .stored(&occurrence("2026-04-13"))
                .is_some_and(|b| b.start_ms == ms("2026-04-13T12:00:00Z"))
    })
    .await;

    // Three weeks later the horizon job books the weeks that came into the horizon.
    floor.advance("2026-04-10T08:00:00Z").await;
    let run = hub.bookings.extend_horizons().await.expect("horizon");
    assert_eq!((run.series, run.booked, run.skipped), (1, 3, 0), "{run:?}");
    let again = hub.bookings.extend_horizons().await.expect("horizon again");
    assert_eq!(again.booked, 0, "nothing twice");
    wait_for("the new weeks are at the gateway", WAIT, || {
        ["2026-04-20", "2026-04-27", "2026-05-04"].iter().all(|d| {
            floor.stored(&occurrence(d)).is_some_and(|b| {
                let local = jiff::Timestamp::from_millisecond(b.start_ms)
                    .expect("ts")
                    .to_zoned(jiff::tz::db().get("Europe/Berlin").expect("zone"));
                local.time() == jiff::civil::time(9, 0, 0, 0)
            })
        })
    })
    .await;
    let r = hub
        .call("GET", &format!("/api/v1/series/{series}"), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["excluded"], json!(["2026-04-06"]));
    assert_eq!(
        r.body["overrides"]["2026-04-13"]["start_local"],
        "2026-04-13T14:00:00+02:00"
    );

    // Cancelled from now on: the future occurrences leave the gateway.
    let r = hub
        .call("DELETE", &format!("/api/v1/series/{series}"), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.body["cancelled"].as_array().map(Vec::len),
        Some(4),
        "{}",
        r.text
    );
    wait_for("the series is gone from the gateway", WAIT, || {
        floor.stored(&occurrence("2026-04-27")).is_none()
            && floor.stored(&occurrence("2026-04-13")).is_none()
    })
    .await;
    let r = hub
        .call("GET", &format!("/api/v1/series/{series}"), None)
        .await;
    assert_eq!(r.status, 404, "{}", r.text);

    hub.stop().await;
    floor.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_shows_at_the_gateway_block_the_organizer() {
    let broker = Broker::start().expect("mosquitto with mutual TLS");
    let id = GatewayId::new("site-a", "gw-1").expect("id");
    let floor = Floor::start(&broker, &id, "Europe/Berlin", t("2026-03-02T07:00:00Z")).await;
    let hub = HubSide::start(
        Some(&broker),
        floor.now(),
        Fetcher::with_system_roots().expect("fetcher"),
    )
    .await;
    rooms_known(&hub, &id).await;

    let mut ids = Vec::new();
    for hour in ["09", "10", "11"] {
        let r = hub
            .call(
                "POST",
                "/api/v1/bookings",
                Some(&booking_body(
                    "site-a",
                    "r2",
                    &format!("2026-03-02T{hour}:00:00Z"),
                    &format!("2026-03-02T{hour}:30:00Z"),
                    "nora@example.com",
                )),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        ids.push(r.body["id"].as_str().expect("id").to_owned());
    }
    wait_for("the bookings are at the gateway", WAIT, || {
        ids.iter().all(|id| floor.stored(id).is_some())
    })
    .await;
    // Nobody comes: three no-shows.
    for at in [
        "2026-03-02T09:15:00Z",
        "2026-03-02T10:15:00Z",
        "2026-03-02T11:15:00Z",
    ] {
        floor.advance(at).await;
    }
    wait_until("three strikes at the hub", WAIT, || async {
        hub.store
            .no_shows("nora@example.com", 0)
            .await
            .is_ok_and(|s| s.len() == 3)
    })
    .await;
    wait_until("the releases are recorded", WAIT, || async {
        let mut all = true;
        for id in &ids {
            all &= hub.booking(id).await.state == "released";
        }
        all
    })
    .await;

    let r = hub
        .call(
            "POST",
            "/api/v1/bookings",
            Some(&booking_body(
                "site-a",
                "r1",
                "2026-03-03T09:00",
                "2026-03-03T10:00",
                "Nora@example.com",
            )),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert_eq!(r.body["error"], "blocked");
    assert_eq!(
        r.body["message"],
        "nora@example.com: 3 no-shows within 30 days (last 2026-03-02): bookings blocked until 2026-03-09"
    );
    // Seven days after the last no-show (11:10 UTC, give or take the clock step).
    let until = r.body["until"].as_str().unwrap_or_default();
    assert!(until.starts_with("2026-03-09T11:1"), "{until}");
    let until_local = r.body["until_local"].as_str().unwrap_or_default();
    assert!(
        until_local.starts_with("2026-03-09T12:1") && until_local.ends_with("+01:00"),
        "{until_local}"
    );
    let r = hub
        .call(
            "GET",
            "/api/v1/organizers/nora%40example.com/blacklist?site=site-a",
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["blocked"], true);
    assert_eq!(r.body["no_shows"].as_array().map(Vec::len), Some(3));
    assert_eq!(
        r.body["policy"],
        json!({ "strikes": 3, "within_days": 30, "block_days": 7 })
    );
    // A series is refused too; someone else books fine.
    let r = hub
        .call(
            "POST",
            "/api/v1/series",
            Some(
                &json!({ "site": "site-a", "room": "r1", "organizer": "nora@example.com",
                          "start": "2026-03-04T09:00", "minutes": 30,
                          "repeat": { "frequency": "daily", "count": 2 } }),
            ),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
    let r = hub
        .call(
            "POST",
            "/api/v1/bookings",
            Some(&booking_body(
                "site-a",
                "r1",
                "2026-03-03T09:00",
                "2026-03-03T10:00",
                "otto@example.com",
            )),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    // A laxer policy lifts the block.
    let r = hub
        .call(
            "PUT",
            "/api/v1/settings/blacklist",
            Some(&json!({ "strikes": 4, "within_days": 30, "block_days": 7 })),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = hub
        .call(
            "POST",
            "/api/v1/bookings",
            Some(&booking_body(
                "site-a",
                "r1",
                "2026-03-03T10:00",
                "2026-03-03T11:00",
                "nora@example.com",
            )),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = hub
        .call(
            "PUT",
            "/api/v1/settings/blacklist",
            Some(&json!({ "strikes": 0, "within_days": 30, "block_days": 7 })),
        )
        .await;
    assert_eq!(
        (r.status, r.body["field"].as_str()),
        (422, Some("strikes")),
        "{}",
        r.text
    );

    hub.stop().await;
    floor.running.shutdown().await;
}

const CALENDAR: &str = "BEGIN:VCALENDAR\r
VERSION:2.0\r
PRODID:-//roomgate tests//EN\r
BEGIN:VEVENT\r
UID:review@example.com\r
DTSTART;TZID=Europe/Berlin:20260323T100000\r
DTEND;TZID=Europe/Berlin:20260323T110000\r
SUMMARY:Design review\r
ORGANIZER:mailto:ana@example.com\r
END:VEVENT\r
BEGIN:VEVENT\r
UID:weekly@example.com\r
DTSTART;TZID=Europe/Berlin:20260324T140000\r
DTEND;TZID=Europe/Berlin:20260324T150000\r
RRULE:FREQ=WEEKLY;COUNT=3\r
SUMMARY:Team sync\r
ORGANIZER:mailto:bob@example.com\r
END:VEVENT\r
BEGIN:VEVENT\r
UID:broken@example.com\r
DTSTART:not-a-date\r
DTEND:20260325T100000Z\r
SUMMARY:Broken\r
END:VEVENT\r
END:VCALENDAR\r
";

/// The calendar after a week: the review moved, the weekly sync gone, a new event whose slot
/// is taken at the hub.
const CALENDAR_V2: &str = "BEGIN:VCALENDAR\r
VERSION:2.0\r
PRODID:-//roomgate tests//EN\r
BEGIN:VEVENT\r
UID:review@example.com\r
DTSTART;TZID=Europe/Berlin:20260323T110000\r
DTEND;TZID=Europe/Berlin:20260323T120000\r
SUMMARY:Design review (moved)\r
ORGANIZER:mailto:ana@example.com\r
END:VEVENT\r
BEGIN:VEVENT\r
UID:clash@example.com\r
DTSTART;TZID=Europe/Berlin:20260325T090000\r
DTEND;TZID=Europe/Berlin:20260325T100000\r
SUMMARY:Clash\r
END:VEVENT\r
END:VCALENDAR\r
";

fn status_with(rooms: &[&str]) -> Status {
    serde_json::from_value(json!({
        "v": 1, "online": true, "at_ms": 0, "timezone": "Europe/Berlin",
        "rooms": rooms.iter().map(|r| json!({ "id": r, "state": "free", "occupancy": "vacant", "name": r })).collect::<Vec<_>>(),
    }))
    .expect("status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calendar_feeds_from_a_file_http_and_https_are_imported_and_updated() {
    // A local HTTPS server's certificate, trusted by the hub's fetcher.
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
        .expect("certificate");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).expect("root");
    let dir = tempfile::tempdir().expect("dir");
    let mut fetcher = Fetcher::with_roots(roots).expect("fetcher");
    fetcher.file_root = Some(dir.path().to_owned());
    let now = Arc::new(|| ms("2026-03-20T08:00:00Z"));
    let hub = HubSide::start(None, now, fetcher).await;
    let gw = GatewayId::new("hq", "gw-1").expect("id");
    hub.store
        .put_status(&gw, &status_with(&["r1", "r2", "r3"]), 0)
        .await
        .expect("status");

    // From a file (in the feed directory: other files are refused).
    let outside = tempfile::NamedTempFile::new().expect("outside file");
    let r = hub
        .call(
            "POST",
            "/api/v1/feeds",
            Some(&json!({ "site": "hq", "room": "r1", "source": outside.path().display().to_string() })),
        )
        .await;
    assert_eq!(
        (r.status, r.body["field"].as_str()),
        (422, Some("source")),
        "{}",
        r.text
    );
    assert!(r.text.contains("outside the feed directory"), "{}", r.text);
    let path = dir.path().join("r1.ics");
    std::fs::write(&path, CALENDAR).expect("write calendar");
    let r = hub
        .call(
            "POST",
            "/api/v1/feeds",
            Some(&json!({ "site": "hq", "room": "r1", "source": path.display().to_string(), "interval_minutes": 30 })),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let feed = r.body["id"].as_str().expect("feed id").to_owned();
    let run = |feed: String| {
        let hub = &hub;
        async move {
            let r = hub
                .call("POST", &format!("/api/v1/feeds/{feed}/run"), None)
                .await;
            assert_eq!(r.status, 200, "{}", r.text);
            r.body["status"].clone()
        }
    };
    let status = run(feed.clone()).await;
    assert_eq!(status["ok"], true, "{status}");
    assert_eq!(
        (
            &status["events"],
            &status["created"],
            &status["updated"],
            &status["cancelled"]
        ),
        (&json!(2), &json!(4), &json!(0), &json!(0)),
        "{status}"
    );
    let malformed = status["malformed"].as_array().expect("malformed");
    assert!(
        malformed
            .iter()
            .any(|m| m["line"] == 21 && m["uid"] == "broken@example.com"),
        "the broken event is reported with its line: {status}"
    );
    let r1 = RoomKey {
        gateway: gw.clone(),
        room: "r1".into(),
    };
    let r1_bookings = || async {
        hub.store
            .bookings(&r1, ms("2026-03-20T00:00:00Z"), ms("2026-04-30T00:00:00Z"))
            .await
            .expect("bookings")
    };
    let imported = r1_bookings().await;
    assert_eq!(imported.len(), 4);
    assert!(
        imported
            .iter()
            .all(|b| b.source == format!("feed:{feed}") && b.state == "active")
    );
    let review = imported
        .iter()
        .find(|b| b.subject == "Design review")
        .expect("review");
    assert_eq!(review.start_ms, ms("2026-03-23T09:00:00Z"));
    assert_eq!(review.organizer, "ana@example.com");

    // The same calendar again: nothing new, nothing duplicated.
    let status = run(feed.clone()).await;
    assert_eq!(
        (&status["created"], &status["updated"]),
        (&json!(0), &json!(0)),
        "{status}"
    );
    assert_eq!(r1_bookings().await.len(), 4);

    // A week later: the review moved, the weekly sync removed, a new event over an API booking.
    let r = hub
        .call(
            "POST",
            "/api/v1/bookings",
            Some(&booking_body(
                "hq",
                "r1",
                "2026-03-25T09:30",
                "2026-03-25T10:30",
                "otto@example.com",
            )),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    std::fs::write(&path, CALENDAR_V2).expect("rewrite calendar");
    let status = run(feed.clone()).await;
    assert_eq!(
        (&status["created"], &status["updated"], &status["cancelled"]),
        (&json!(0), &json!(1), &json!(3)),
        "{status}"
    );
    let refused = status["refused"].as_array().expect("refused");
    assert_eq!(refused.len(), 1, "{status}");
    assert_eq!(refused[0]["uid"], "clash@example.com");
    assert!(
        refused[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("already booked from 2026-03-25 09:30 to 10:30")),
        "{status}"
    );
    let now_active: Vec<BookingRecord> = r1_bookings()
        .await
        .into_iter()
        .filter(|b| b.state == "active")
        .collect();
    assert_eq!(
        now_active.len(),
        2,
        "the moved review and the API booking: {now_active:?}"
    );
    assert!(
        now_active
            .iter()
            .any(|b| b.id == review.id && b.start_ms == ms("2026-03-23T10:00:00Z"))
    );
    let r = hub
        .call("GET", &format!("/api/v1/feeds/{feed}"), None)
        .await;
    assert_eq!(r.body["status"]["updated"], 1, "{}", r.text);

    // Over HTTP from a local server that knows ETags.
    let hits = Arc::new(AtomicUsize::new(0));
    let not_modified = Arc::new(AtomicUsize::new(0));
    let calendar = Arc::new(Mutex::new(CALENDAR.to_owned()));
    let route = {
        let (hits, not_modified, calendar) = (
            Arc::clone(&hits),
            Arc::clone(&not_modified),
            Arc::clone(&calendar),
        );
        warp::path!("cal.ics")
            .and(warp::header::optional::<String>("if-none-match"))
            .map(move |etag: Option<String>| -> warp::reply::Response {
                use warp::Reply;
                hits.fetch_add(1, Ordering::SeqCst);
                if etag.as_deref() == Some("\"v1\"") {
                    not_modified.fetch_add(1, Ordering::SeqCst);
                    return warp::http::StatusCode::NOT_MODIFIED.into_response();
                }
                let text = calendar.lock().expect("calendar").clone();
                warp::reply::with_header(text, "etag", "\"v1\"").into_response()
            })
            .boxed()
    };
    let plain = web::serve(([127, 0, 0, 1], 0).into(), None, route.clone())
        .await
        .expect("calendar server");
    let r = hub
        .call(
            "POST",
            "/api/v1/feeds",
            Some(&json!({ "site": "hq", "room": "r2",
                          "source": format!("http://{}/cal.ics", plain.addr) })),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let http_feed = r.body["id"].as_str().expect("id").to_owned();
    let status = run(http_feed.clone()).await;
    assert_eq!(
        (&status["ok"], &status["created"]),
        (&json!(true), &json!(4)),
        "{status}"
    );
    assert_eq!(status["etag"], "\"v1\"");
    let status = run(http_feed.clone()).await;
    assert_eq!(status["not_modified"], true, "{status}");
    assert_eq!(status["created"], 0, "{status}");
    assert_eq!(
        (
            hits.load(Ordering::SeqCst),
            not_modified.load(Ordering::SeqCst)
        ),
        (2, 1)
    );

    // Over HTTPS (the same server code with TLS).
    let key = rustls::pki_types::PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der());
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(vec![cert.cert.der().clone()], key.into())
    .expect("server config");
    let secure = web::serve(([127, 0, 0, 1], 0).into(), Some(Arc::new(tls)), route)
        .await
        .expect("https calendar server");
    let r = hub
        .call(
            "POST",
            "/api/v1/feeds",
            Some(&json!({ "site": "hq", "room": "r3",
                          "source": format!("https://127.0.0.1:{}/cal.ics", secure.addr.port()) })),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let status = run(r.body["id"].as_str().expect("id").to_owned()).await;
    assert_eq!(
        (&status["ok"], &status["created"]),
        (&json!(true), &json!(4)),
        "{status}"
    );

    // A feed that cannot be fetched says why; a bad source is refused up front.
    let r = hub
        .call(
            "POST",
            "/api/v1/feeds",
            Some(&json!({ "site": "hq", "room": "r3", "source": "https://127.0.0.1:1/none.ics" })),
        )
        .await;
    let status = run(r.body["id"].as_str().expect("id").to_owned()).await;
    assert_eq!(status["ok"], false, "{status}");
    assert!(
        status["error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot connect")),
        "{status}"
    );
    let r = hub
        .call(
            "POST",
            "/api/v1/feeds",
            Some(&json!({ "site": "hq", "room": "r3", "source": "calendars/r3.ics" })),
        )
        .await;
    assert_eq!(
        (r.status, r.body["field"].as_str()),
        (422, Some("source")),
        "{}",
        r.text
    );
    let r = hub.call("GET", "/api/v1/feeds", None).await;
    assert_eq!(
        r.body["feeds"].as_array().map(Vec::len),
        Some(4),
        "{}",
        r.text
    );
    let r = hub
        .call("DELETE", &format!("/api/v1/feeds/{http_feed}"), None)
        .await;
    assert_eq!(r.status, 204);
    let r = hub
        .call("GET", &format!("/api/v1/feeds/{http_feed}"), None)
        .await;
    assert_eq!(r.status, 404);

    // Two gateways of one site claiming one room: refused, naming both.
    let other = GatewayId::new("hq", "gw-2").expect("id");
    hub.store
        .put_status(&other, &status_with(&["r3"]), 0)
        .await
        .expect("status");
    let r = hub
        .call(
            "POST",
            "/api/v1/bookings",
            Some(&booking_body(
                "hq",
                "r3",
                "2026-03-25T09:30",
                "2026-03-25T10:30",
                "otto@example.com",
            )),
        )
        .await;
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (409, Some("ambiguous_room")),
        "{}",
        r.text
    );
    assert_eq!(r.body["gateways"], json!(["hq/gw-1", "hq/gw-2"]));

    plain.shutdown().await;
    secure.shutdown().await;
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_changes_meet_hub_bookings_by_the_protocol_rules() {
    let mut broker = Broker::start().expect("mosquitto with mutual TLS");
    let id = GatewayId::new("site-a", "gw-1").expect("id");
    let floor = Floor::start(&broker, &id, "UTC", t("2026-03-02T08:00:00Z")).await;
    let hub = HubSide::start(
        Some(&broker),
        floor.now(),
        Fetcher::with_system_roots().expect("fetcher"),
    )
    .await;
    rooms_known(&hub, &id).await;
    let book = |room: &'static str, start: &'static str, end: &'static str, who: &'static str| {
        let hub = &hub;
        async move {
            let r = hub
                .call(
                    "POST",
                    "/api/v1/bookings",
                    Some(&booking_body(
                        "site-a",
                        room,
                        &format!("2026-03-02T{start}:00Z"),
                        &format!("2026-03-02T{end}:00Z"),
                        who,
                    )),
                )
                .await;
            assert_eq!(r.status, 201, "{}", r.text);
            r.body["id"].as_str().expect("id").to_owned()
        }
    };

    // Before the outage: A runs in r1 (people are in), G waits in r2.
    let a = book("r1", "09:00", "10:00", "ana@example.com").await;
    let g = book("r2", "09:30", "10:00", "bob@example.com").await;
    wait_for("A and G at the gateway", WAIT, || {
        floor.stored(&a).is_some() && floor.stored(&g).is_some()
    })
    .await;
    floor.pir.set_discrete_input(0, true);
    wait_for("presence in r1", WAIT, || {
        floor
            .gw
            .snapshot()
            .rooms
            .iter()
            .any(|r| r.id == "r1" && r.occupancy == "occupied")
    })
    .await;
    floor.advance("2026-03-02T09:00:00Z").await;
    let r = floor.local("POST", "/api/rooms/r1/checkin", None).await;
    assert_eq!(r.status, 200, "{}", r.text);

    // The broker goes away.
    broker.stop().expect("stop broker");
    wait_for("the gateway is offline", WAIT, || {
        !floor.agent.borrow().connected
    })
    .await;

    // At the gateway: A is extended to 10:45, three walk-ins are booked at the door panel.
    floor.advance("2026-03-02T09:20:00Z").await;
    let r = floor
        .local(
            "POST",
            "/api/rooms/r1/extend",
            Some(&json!({ "until": "2026-03-02T10:45:00Z" })),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let mut walk_ins = Vec::new();
    for (start, end) in [("12:00", "13:00"), ("14:30", "15:30"), ("16:00", "17:00")] {
        let r = floor
            .local(
                "POST",
                "/api/rooms/r1/bookings",
                Some(&json!({ "start": format!("2026-03-02T{start}:00Z"),
                              "end": format!("2026-03-02T{end}:00Z"),
                              "subject": "Walk-in", "organizer": "walk@example.com" })),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        walk_ins.push(r.body["id"].as_str().expect("local id").to_owned());
    }
    let (w, w2, w3) = (
        walk_ins[0].clone(),
        walk_ins[1].clone(),
        walk_ins[2].clone(),
    );

    // At the hub, meanwhile: D right after A's old end, E over W (which starts first), F before
    // W2 (F starts first); and G is cancelled.
    let d = book("r1", "10:15", "11:00", "dora@example.com").await;
    let e = book("r1", "12:30", "13:30", "emil@example.com").await;
    let f = book("r1", "14:00", "15:00", "fritz@example.com").await;
    let r = hub
        .call("DELETE", &format!("/api/v1/bookings/{g}"), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    // Nobody came for G: the gateway releases it (it does not know it was cancelled).
    floor.advance("2026-03-02T09:45:00Z").await;

    // The broker is back: everything is reconciled.
    broker.start_again().expect("broker back");
    wait_for("the gateway reconnected", WAIT, || {
        floor.agent.borrow().connected
    })
    .await;
    let store = floor.running.gateway.store();
    wait_for("the outbox drained", WAIT, || {
        store.outbox_depth().is_ok_and(|d| d == 0)
    })
    .await;
    wait_until("the hub applied the gateway's facts", WAIT, || async {
        hub.store.find_booking(&w3).await.is_ok_and(|b| b.is_some())
    })
    .await;

    // Rule 2: the extension is shortened to D's start.
    let hub_a = hub.booking(&a).await;
    assert_eq!(hub_a.end_ms, ms("2026-03-02T10:15:00Z"), "{hub_a:?}");
    assert!(hub_a.note.contains("shortened to 10:15"), "{}", hub_a.note);
    // Rule 1: W started first and is adopted, E gives way; F started first, W2 gives way; W3
    // was free.
    let hub_w = hub.booking(&w).await;
    assert_eq!(
        (hub_w.state.as_str(), hub_w.source.as_str()),
        ("active", "gateway")
    );
    let hub_e = hub.booking(&e).await;
    assert_eq!(hub_e.state, "cancelled");
    assert!(hub_e.note.contains(&w), "{}", hub_e.note);
    let hub_w2 = hub.booking(&w2).await;
    assert_eq!(hub_w2.state, "cancelled");
    assert!(hub_w2.note.contains(&f), "{}", hub_w2.note);
    assert_eq!(hub.booking(&w3).await.state, "active");
    assert_eq!(hub.booking(&d).await.state, "active");
    assert_eq!(hub.booking(&f).await.state, "active");
    // Rule 3: the hub's cancellation wins over the gateway's later release.
    assert_eq!(hub.booking(&g).await.state, "cancelled");

    // The gateway follows: A ends at 10:15, E and W2 are gone, D and F are there.
    let reconciled = || {
        floor
            .stored(&a)
            .is_some_and(|b| b.end_ms == ms("2026-03-02T10:15:00Z"))
            && floor.stored(&e).is_none()
            && floor.stored(&w2).is_none()
            && floor.stored(&g).is_none()
            && floor.stored(&d).is_some()
            && floor.stored(&f).is_some()
            && floor.stored(&w).is_some()
            && floor.stored(&w3).is_some()
    };
    let deadline = std::time::Instant::now() + WAIT;
    while !reconciled() {
        let held: Vec<(String, i64, i64)> = store
            .bookings()
            .expect("gateway bookings")
            .into_iter()
            .map(|b| (b.id, b.start_ms, b.end_ms))
            .collect();
        if std::time::Instant::now() >= deadline {
            let log = hub.store.changes_since(&id, 0).await.expect("log");
            eprintln!("hub change log: {log:?}");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the gateway never had the reconciled bookings; it has {held:?} \
             (a {a}, d {d}, e {e}, f {f}, g {g}, w {w}, w2 {w2}, w3 {w3})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = hub
        .call(
            "GET",
            "/api/v1/rooms/site-a/r1/bookings?from=2026-03-02&to=2026-03-03",
            None,
        )
        .await;
    let active: Vec<&str> = r.body["bookings"]
        .as_array()
        .expect("bookings")
        .iter()
        .filter(|b| b["state"] == "active")
        .filter_map(|b| b["id"].as_str())
        .collect();
    assert_eq!(
        active,
        [a.as_str(), d.as_str(), w.as_str(), f.as_str(), w3.as_str()]
    );

    // A ends at its shortened end; the hub records the fact.
    floor.advance("2026-03-02T10:16:00Z").await;
    wait_until("A ended at the hub", WAIT, || async {
        hub.booking(&a).await.state == "ended"
    })
    .await;

    hub.stop().await;
    floor.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_from_the_hub_end_a_meeting_and_expire_when_late() {
    let broker = Broker::start().expect("mosquitto with mutual TLS");
    let id = GatewayId::new("site-a", "gw-1").expect("id");
    let floor = Floor::start(&broker, &id, "UTC", t("2026-03-02T07:00:00Z")).await;
    // The hub's clock is the gateway's, minus a lag the test sets (to send stale commands).
    let lag = Arc::new(std::sync::atomic::AtomicI64::new(0));
    let hub_now: web::Now = {
        let (clock, lag) = (floor.clock.clone(), Arc::clone(&lag));
        Arc::new(move || clock.now().as_millis() - lag.load(Ordering::SeqCst))
    };
    let hub = HubSide::start(
        Some(&broker),
        hub_now,
        Fetcher::with_system_roots().expect("fetcher"),
    )
    .await;
    rooms_known(&hub, &id).await;
    let book = |start: &str, end: &str| booking_body("site-a", "r1", start, end, "ana@example.com");
    let r = hub
        .call(
            "POST",
            "/api/v1/bookings",
            Some(&book("2026-03-02T09:00:00Z", "2026-03-02T10:00:00Z")),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let first = r.body["id"].as_str().expect("id").to_owned();
    let r = hub
        .call(
            "POST",
            "/api/v1/bookings",
            Some(&book("2026-03-02T11:00:00Z", "2026-03-02T12:00:00Z")),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let second = r.body["id"].as_str().expect("id").to_owned();
    wait_for("both bookings at the gateway", WAIT, || {
        floor.stored(&first).is_some() && floor.stored(&second).is_some()
    })
    .await;

    // A running meeting, ended from the hub: the gateway ends it and turns the lights off.
    floor.advance("2026-03-02T09:00:00Z").await;
    let r = floor.local("POST", "/api/rooms/r1/checkin", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    wait_for("lights on for the meeting", WAIT, || floor.lights.coil(0)).await;
    let end = json!({ "command": "end_meeting" });
    let r = hub
        .call("POST", "/api/v1/rooms/site-a/r1/commands", Some(&end))
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(r.body["sent_to"], "site-a/gw-1");
    assert_eq!(r.body["gateway_online"], true);
    wait_for("the meeting ended at the gateway", WAIT, || {
        floor
            .stored(&first)
            .is_some_and(|b| b.finished_ms.is_some())
    })
    .await;
    wait_for("lights off", WAIT, || !floor.lights.coil(0)).await;

    // A command older than its five minutes (queued while the gateway was away) is ignored:
    // the next meeting runs to its end.
    floor.advance("2026-03-02T11:00:00Z").await;
    let r = floor.local("POST", "/api/rooms/r1/checkin", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    wait_for("lights on for the second meeting", WAIT, || {
        floor.lights.coil(0)
    })
    .await;
    lag.store(6 * 60 * 1000, Ordering::SeqCst);
    let r = hub
        .call("POST", "/api/v1/rooms/site-a/r1/commands", Some(&end))
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    // Commands arrive in order: once the resync sent after it is answered, the stale one was
    // received and passed over.
    lag.store(0, Ordering::SeqCst);
    let syncs_before = hub.hub.as_ref().expect("hub").stats().syncs;
    let scene = json!({ "command": "run_scene", "scene": "no-such-scene" });
    let r = hub
        .call("POST", "/api/v1/rooms/site-a/r1/commands", Some(&scene))
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    let r = hub
        .call("POST", "/api/v1/gateways/site-a/gw-1/resync", None)
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    wait_for("the gateway resynced after the commands", WAIT, || {
        hub.hub.as_ref().expect("hub").stats().syncs > syncs_before
    })
    .await;
    floor.advance("2026-03-02T11:01:00Z").await;
    assert!(
        floor
            .stored(&second)
            .is_some_and(|b| b.finished_ms.is_none()),
        "the stale end_meeting did not end the second meeting"
    );
    assert!(floor.lights.coil(0), "the second meeting's lights stay on");

    // Refusals: an unknown room, an unknown command, an unknown gateway.
    let r = hub
        .call("POST", "/api/v1/rooms/site-a/nope/commands", Some(&end))
        .await;
    assert_eq!(r.status, 404, "{}", r.text);
    let r = hub
        .call(
            "POST",
            "/api/v1/rooms/site-a/r1/commands",
            Some(&json!({ "command": "explode" })),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text);
    let r = hub
        .call("POST", "/api/v1/gateways/site-a/gw-9/resync", None)
        .await;
    assert_eq!(r.status, 404, "{}", r.text);
    hub.stop().await;
}
