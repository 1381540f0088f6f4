//! The hub's admin dashboard end to end: a real Mosquitto, a hub replica ingesting simulated
//! gateways' status and events over MQTT into an embedded store, the dashboard served on a free
//! port and spoken to over a raw socket (cookies, forms, redirects as a browser sends them),
//! and headless Chromium signing in through the login form and saving screenshots under
//! `target/artifacts/hub/`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use cloud_sync::hub::bookings::BookingService;
use cloud_sync::hub::feeds::Fetcher;
use cloud_sync::hub::service::Pusher;
use cloud_sync::hub::web::auth::{self, Auth, AuthConfig};
use cloud_sync::hub::web::{self, WebState, dashboard};
use cloud_sync::hub::{Hub, HubStore};
use cloud_sync::topics::{Channel, GatewayId};
use cloud_sync::wire::{
    self, BookingGlance, Event, EventKind, PointSample, RoomStatus, Status, VERSION,
};
use roomgate_tests::broker::Broker;
use roomgate_tests::browser::{Browser, artifacts_dir};
use roomgate_tests::wait_until;
use rumqttc::{AsyncClient, Event as MqttEvent, LastWill, Packet, QoS};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(20);
const MIN: i64 = 60_000;
const PASSWORD: &str = "correct horse battery";

fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .expect("clock after 1970")
}

/// A simulated gateway: one MQTT connection with the gateway's certificate and last will.
struct SimGateway {
    id: GatewayId,
    client: AsyncClient,
    task: tokio::task::JoinHandle<()>,
}

impl SimGateway {
    async fn connect(broker: &Broker, id: GatewayId) -> SimGateway {
        let mut options = broker
            .mqtt_options(&id.client_id(), &id.to_string())
            .expect("gateway options");
        options.set_last_will(LastWill::new(
            id.topic(Channel::Status),
            wire::encode(&Status::offline()),
            QoS::AtLeastOnce,
            true,
        ));
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        let (up_tx, up_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut up = Some(up_tx);
            loop {
                match eventloop.poll().await {
                    Ok(MqttEvent::Incoming(Packet::ConnAck(_))) => {
                        if let Some(tx) = up.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        tokio::time::timeout(WAIT, up_rx)
            .await
            .expect("gateway connects in time")
            .expect("gateway connects");
        SimGateway { id, client, task }
    }

    async fn status(&self, status: &Status) {
        self.client
            .publish(
                self.id.topic(Channel::Status),
                QoS::AtLeastOnce,
                true,
                wire::encode(status),
            )
            .await
            .expect("publish status");
    }

    async fn events(&self, events: Vec<Event>) {
        for batch in wire::batches(&self.id.to_string(), events) {
            self.client
                .publish(
                    self.id.topic(Channel::Events),
                    QoS::AtLeastOnce,
                    false,
                    wire::encode(&batch),
                )
                .await
                .expect("publish events");
        }
    }

    /// Drops the connection without a DISCONNECT: the broker publishes the last will.
    fn vanish(self) {
        self.task.abort();
    }
}

fn room(id: &str, name: &str, state: &str, occupancy: &str) -> RoomStatus {
    RoomStatus {
        id: id.into(),
        state: state.into(),
        occupancy: occupancy.into(),
        name: name.into(),
        current: None,
        next: None,
        faults: Vec::new(),
    }
}

fn status(rooms: Vec<RoomStatus>, offline: &[&str], total: u32) -> Status {
    Status {
        v: VERSION,
        online: true,
        at_ms: wall_ms(),
        rooms,
        devices_offline: offline.iter().map(|s| s.to_string()).collect(),
        outbox_depth: 2,
        timezone: "Europe/Berlin".into(),
        devices_total: total,
    }
}

/// 2026-03-02 00:00 UTC.
const MARCH_2_UTC: i64 = 1_772_409_600_000;

/// A Berlin wall-clock time in the first days of March 2026 (CET, UTC+1) in ms.
fn berlin(day: i64, h: i64, m: i64) -> i64 {
    MARCH_2_UTC + (day - 2) * 24 * 60 * MIN + (h - 1) * 60 * MIN + m * MIN
}

/// The day of room r101 that stats.rs's unit test computes by hand: three bookings (held and
/// extended; a no-show; a vacancy release) and a walk-in.
fn known_day() -> Vec<Event> {
    let mut events = Vec::new();
    let mut push = |at_ms: i64, booking: Option<&str>, kind: EventKind, data: serde_json::Value| {
        events.push(Event {
            seq: events.len() as u64 + 1,
            at_ms,
            room: "r101".into(),
            booking: booking.map(Into::into),
            kind,
            reason: String::new(),
            data,
        });
    };
    let usage = |s: (i64, i64), a: Option<i64>, end: i64, release: Option<&str>| {
        json!({
            "organizer": "ada",
            "scheduled_start_ms": s.0,
            "scheduled_end_ms": s.1,
            "actual_start_ms": a,
            "actual_end_ms": end,
            "release": release,
            "occupied_ms": 0,
            "devices_on_ms": 0,
        })
    };
    push(
        berlin(2, 9, 50),
        Some("b1"),
        EventKind::Extended,
        json!({ "until_ms": berlin(2, 10, 0) }),
    );
    push(
        berlin(2, 10, 0),
        Some("b1"),
        EventKind::Usage,
        usage(
            (berlin(2, 9, 0), berlin(2, 10, 0)),
            Some(berlin(2, 9, 5)),
            berlin(2, 10, 0),
            None,
        ),
    );
    push(
        berlin(2, 11, 10),
        Some("b2"),
        EventKind::Usage,
        usage(
            (berlin(2, 11, 0), berlin(2, 12, 0)),
            None,
            berlin(2, 11, 10),
            Some("no_show"),
        ),
    );
    push(
        berlin(2, 14, 30),
        Some("b3"),
        EventKind::Usage,
        usage(
            (berlin(2, 14, 0), berlin(2, 15, 0)),
            Some(berlin(2, 14, 0)),
            berlin(2, 14, 30),
            Some("vacancy"),
        ),
    );
    push(
        berlin(2, 16, 0),
        None,
        EventKind::WalkInStarted,
        serde_json::Value::Null,
    );
    push(
        berlin(2, 16, 45),
        None,
        EventKind::WalkInEnded,
        serde_json::Value::Null,
    );
    events
}

/// A response as the raw client saw it.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The session cookie's value from `Set-Cookie`.
    fn session_cookie(&self) -> Option<String> {
        let set = self.header("set-cookie")?;
        let value = set.strip_prefix(&format!("{}=", auth::COOKIE))?;
        Some(value.split(';').next()?.to_owned())
    }

    /// The value of the first hidden `csrf` input.
    fn csrf(&self) -> String {
        let at = self
            .body
            .find(r#"name="csrf" value=""#)
            .expect("a csrf field");
        let rest = &self.body[at + r#"name="csrf" value=""#.len()..];
        rest[..rest.find('"').expect("end of value")].to_owned()
    }
}

/// One HTTP/1.1 request over a fresh connection.
async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    extra: &[(&str, &str)],
    form: Option<&str>,
) -> Reply {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(c) = cookie {
        head.push_str(&format!("Cookie: theme=dark; {}={c}\r\n", auth::COOKIE));
    }
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    let body = form.unwrap_or_default();
    if form.is_some() {
        head.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(head.as_bytes()).await.expect("send");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read");
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").expect("response head");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Reply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

fn login_form(user: &str, password: &str, next: &str) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    char::from(b).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect::<String>()
    };
    format!(
        "user={}&password={}&next={}",
        enc(user),
        enc(password),
        enc(next)
    )
}

/// The text of a statistics cell: the row whose `data-row` is `row`, the cell `data-k=key`,
/// tags stripped and spaces collapsed.
fn cell(html: &str, table: &str, row: &str, key: &str) -> String {
    let table_at = html
        .find(&format!(r#"<table class="figures" id="{table}">"#))
        .unwrap_or_else(|| panic!("no table {table}"));
    let html = &html[table_at..];
    let html = &html[..html.find("</table>").expect("table end")];
    let row_at = html
        .find(&format!(r#"data-row="{row}""#))
        .unwrap_or_else(|| panic!("no row {row} in {table}"));
    let tr = &html[row_at..];
    let tr = &tr[..tr.find("</tr>").expect("row end")];
    let k_at = tr
        .find(&format!(r#"data-k="{key}">"#))
        .unwrap_or_else(|| panic!("no cell {key} in row {row}"));
    let td = &tr[k_at + key.len() + 9..];
    let td = &td[..td.find("</td>").expect("cell end")];
    let mut text = String::new();
    let mut in_tag = false;
    for c in td.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_estate_behind_a_login() {
    let broker = Broker::start().expect("broker");
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(HubStore::open_embedded(dir.path()).expect("hub store"));
    let hub = Hub::start(
        broker.mqtt_options("hub-1", "hub/1").expect("hub options"),
        Arc::clone(&store),
        "hub",
    );
    roomgate_tests::wait_for("hub connected", WAIT, || hub.stats().connected).await;

    // Building "hq": floor gw-3 stays online, floor gw-4 reports and then vanishes; building
    // "lab" has one gateway.
    let gw3 = GatewayId::new("hq", "gw-3").expect("id");
    let gw4 = GatewayId::new("hq", "gw-4").expect("id");
    let lab = GatewayId::new("lab", "gw-1").expect("id");
    let now = wall_ms();
    let mut board = room("r101", "Boardroom", "in_meeting", "occupied");
    board.current = Some(BookingGlance {
        id: "b-now".into(),
        subject: r#"Quarterly <review> & "plans""#.into(),
        organizer: "ada@example.com".into(),
        start_ms: now - 10 * MIN,
        end_ms: now + 50 * MIN,
    });
    board.next = Some(BookingGlance {
        id: "b-next".into(),
        subject: "Board sync".into(),
        organizer: "grace@example.com".into(),
        start_ms: now + 60 * MIN,
        end_ms: now + 90 * MIN,
    });
    let mut huddle = room("r102", "Huddle 2", "free", "unknown");
    huddle.faults = vec!["pir-2".into()];
    let floor3 = status(
        vec![
            board,
            huddle,
            room("r103", "Focus", "starting_soon", "vacant"),
        ],
        &["pir-2"],
        6,
    );
    let floor4 = status(
        vec![
            room("r201", "Lounge", "occupied", "occupied"),
            room("r202", "Studio", "free", "vacant"),
        ],
        &[],
        4,
    );
    let sim3 = SimGateway::connect(&broker, gw3.clone()).await;
    let sim4 = SimGateway::connect(&broker, gw4.clone()).await;
    let sim_lab = SimGateway::connect(&broker, lab.clone()).await;
    sim3.status(&floor3).await;
    sim4.status(&floor4).await;
    sim_lab
        .status(&status(vec![room("l1", "Lab", "closed", "vacant")], &[], 1))
        .await;
    let day = known_day();
    let count = day.len();
    sim3.events(day).await;
    wait_until("statuses and events stored", WAIT, || {
        let store = Arc::clone(&store);
        let gw3 = gw3.clone();
        async move {
            let gws = store.gateways().await.expect("gateways");
            let events = store.events(&gw3).await.expect("events");
            gws.iter().filter(|g| g.status.is_some()).count() == 3 && events.len() == count
        }
    })
    .await;
    sim4.vanish();
    wait_until("gw-4's last will stored", WAIT, || {
        let store = Arc::clone(&store);
        let gw4 = gw4.clone();
        async move {
            store
                .status(&gw4)
                .await
                .expect("status")
                .is_some_and(|s| !s.online)
        }
    })
    .await;
    let gw4_seen = store
        .gateways()
        .await
        .expect("gateways")
        .into_iter()
        .find(|g| g.id == gw4)
        .expect("gw-4 known")
        .last_seen_ms;
    store
        .put_telemetry(
            &gw3,
            &[
                PointSample {
                    device: "meter".into(),
                    point: "power_kw".into(),
                    at_ms: now,
                    value: Some(3.25),
                },
                PointSample {
                    device: "pir-2".into(),
                    point: "in1".into(),
                    at_ms: now - 3 * MIN,
                    value: None,
                },
            ],
        )
        .await
        .expect("telemetry");

    // The dashboard on a free port, on a clock the test moves: 7 minutes after gw-4 vanished.
    let clock = Arc::new(AtomicI64::new(gw4_seen + 7 * MIN + 5_000));
    let now_fn: web::Now = {
        let clock = Arc::clone(&clock);
        Arc::new(move || clock.load(Ordering::SeqCst))
    };
    let bookings = BookingService::new(Arc::clone(&store), Pusher::new(), now_fn);
    let fetcher = Fetcher::with_roots(rustls::RootCertStore::empty()).expect("fetcher");
    let state = Arc::new(WebState::new(bookings, fetcher));
    let auth = Arc::new(Auth::new(AuthConfig::default()));
    let serving = web::serve(
        "127.0.0.1:0".parse().expect("addr"),
        None,
        dashboard::routes_with(Arc::clone(&state), Arc::clone(&auth)),
    )
    .await
    .expect("serve");
    let addr = serving.addr;

    // Every page refuses the unauthenticated: to the login, coming back afterwards.
    for path in [
        "/",
        "/sites/hq",
        "/sites/hq/gw-3",
        "/stats?site=hq&view=week",
    ] {
        let r = request(addr, "GET", path, None, &[], None).await;
        assert_eq!(r.status, 303, "{path}: {r:?}");
        let location = r.header("location").expect("location");
        assert_eq!(
            location,
            format!(
                "/login?next={}",
                path.replace('?', "%3F")
                    .replace('=', "%3D")
                    .replace('&', "%26")
            )
        );
    }
    let r = request(addr, "GET", "/sites/hq?part=live", None, &[], None).await;
    assert_eq!(r.status, 401, "a live part answers 401");
    let forged = "ab".repeat(32);
    let r = request(addr, "GET", "/", Some(&forged), &[], None).await;
    assert_eq!(r.status, 303, "an unknown session id is no session");

    // No admin yet: the login page says how to create one, and no password works.
    let r = request(addr, "GET", "/login", None, &[], None).await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("No admin account exists yet"), "{}", r.body);
    assert!(r.body.contains("hub user add NAME"));
    let r = request(
        addr,
        "POST",
        "/login",
        None,
        &[],
        Some(&login_form("admin", "admin", "/")),
    )
    .await;
    assert_eq!(r.status, 401);
    assert!(r.body.contains("Wrong user name or password."));

    let weak = auth::add_user(&store, "ada", "ada12345", clock.load(Ordering::SeqCst))
        .await
        .expect_err("weak password");
    assert!(weak.to_string().starts_with("password refused: "), "{weak}");
    auth::add_user(&store, "ada", PASSWORD, clock.load(Ordering::SeqCst))
        .await
        .expect("add admin");
    let r = request(addr, "GET", "/login", None, &[], None).await;
    assert!(!r.body.contains("No admin account exists yet"));

    // A wrong password and an unknown user get the same answer.
    let wrong = request(
        addr,
        "POST",
        "/login",
        None,
        &[],
        Some(&login_form("ada", "not the password", "/")),
    )
    .await;
    let unknown = request(
        addr,
        "POST",
        "/login",
        None,
        &[],
        Some(&login_form("nobody", PASSWORD, "/")),
    )
    .await;
    assert_eq!((wrong.status, unknown.status), (401, 401));
    for r in [&wrong, &unknown] {
        assert!(r.body.contains("Wrong user name or password."));
        assert!(r.session_cookie().is_none());
    }
    // A sign-in posted from another site is refused.
    let r = request(
        addr,
        "POST",
        "/login",
        None,
        &[("Origin", "https://evil.example")],
        Some(&login_form("ada", PASSWORD, "/")),
    )
    .await;
    assert_eq!(r.status, 403);

    // The right password: a session cookie with the safe attributes, and back where we were.
    let r = request(
        addr,
        "POST",
        "/login",
        None,
        &[],
        Some(&login_form("ada", PASSWORD, "/sites/hq")),
    )
    .await;
    assert_eq!(r.status, 303, "{r:?}");
    assert_eq!(r.header("location"), Some("/sites/hq"));
    let set = r.header("set-cookie").expect("set-cookie").to_owned();
    for attr in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/"] {
        assert!(set.contains(attr), "{set}");
    }
    let cookie = r.session_cookie().expect("session cookie");
    assert_eq!(cookie.len(), 64);

    // The overview: both buildings, gw-4 offline with its last-seen time, faults counted.
    let r = request(addr, "GET", "/", Some(&cookie), &[], None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let csp = r.header("content-security-policy").expect("CSP");
    assert!(csp.contains("script-src 'self'"), "{csp}");
    let page = &r.body;
    assert!(page.contains(r#"data-site="hq""#) && page.contains(r#"data-site="lab""#));
    assert!(
        page.contains(r#"<div class="n" id="gateways-offline">1</div>"#),
        "{page}"
    );
    assert!(page.contains(r#"<div class="n" id="rooms-faulty">1</div>"#));
    let offline_at = page
        .find(r#"<tr class="offline" data-gateway="hq/gw-4">"#)
        .expect("gw-4 listed offline");
    let offline_row =
        &page[offline_at..offline_at + page[offline_at..].find("</tr>").expect("row")];
    assert!(offline_row.contains("7 minutes ago"), "{offline_row}");
    assert!(offline_row.contains("badge offline"));
    // Rooms by state: gw-3's as reported, gw-4's unknown while it is offline.
    assert!(
        page.contains(r#"data-state="in_meeting">1 in meeting"#),
        "{page}"
    );
    assert!(page.contains(r#"data-state="unknown">2 unknown (gateway offline)"#));

    // A building: its gateways and their rooms.
    let r = request(addr, "GET", "/sites/hq", Some(&cookie), &[], None).await;
    assert_eq!(r.status, 200);
    let page = &r.body;
    let row3 = &page[page.find(r#"data-gateway="hq/gw-3""#).expect("gw-3 row")..];
    let row3 = &row3[..row3.find("</tr>").expect("row")];
    assert!(
        row3.contains("badge online") && row3.contains("1 / 6"),
        "{row3}"
    );
    let row4 = &page[page
        .find(r#"<tr class="offline" data-gateway="hq/gw-4""#)
        .expect("gw-4")..];
    assert!(row4[..row4.find("</tr>").expect("row")].contains("7 minutes ago"));
    assert!(page.contains("Gateway offline since about"));
    assert!(page.contains(r#"data-room="r101" data-state="in_meeting""#));
    assert!(page.contains("<span>In meeting</span>"));
    assert!(page.contains("Quarterly &lt;review&gt; &amp; &quot;plans&quot;"));
    assert!(!page.contains("<review>"), "text from gateways is escaped");
    let huddle = &page[page.find(r#"data-room="r102""#).expect("r102")..];
    let huddle = &huddle[..huddle.find("</article>").expect("card")];
    assert!(
        huddle.contains(r#"<span class="chip fault">⚠ pir-2</span>"#),
        "{huddle}"
    );
    // Its live part alone, for the refresh.
    let r = request(addr, "GET", "/sites/hq?part=live", Some(&cookie), &[], None).await;
    assert_eq!(r.status, 200);
    assert!(!r.body.contains("<html") && r.body.contains(r#"data-room="r101""#));

    // A gateway: rooms and the latest telemetry.
    let r = request(addr, "GET", "/sites/hq/gw-3", Some(&cookie), &[], None).await;
    assert_eq!(r.status, 200);
    assert!(
        r.body.contains(r#"<td class="num">3.25</td>"#),
        "{}",
        r.body
    );
    assert!(r.body.contains("unavailable"));
    let r = request(addr, "GET", "/sites/hq/gw-99", Some(&cookie), &[], None).await;
    assert_eq!(r.status, 404);

    // Statistics of the known day for room r101 (computed by hand in stats.rs's tests).
    let r = request(
        addr,
        "GET",
        "/stats?site=hq&floor=gw-3&room=gw-3%2Fr101&view=day&from=2026-03-02&to=2026-03-02",
        Some(&cookie),
        &[],
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    let page = &r.body;
    assert!(page.contains("room Boardroom (gw-3)"), "{page}");
    let c = |k: &str| cell(page, "stats-periods", "2026-03-02", k);
    assert_eq!(c("bookable_h"), "10.0");
    assert_eq!(c("booked_h"), "3.0");
    assert_eq!(c("used_h"), "2.2");
    assert_eq!(c("occupancy"), "21.7 %");
    assert_eq!(c("bookings"), "3");
    assert_eq!(c("held"), "2");
    assert_eq!(c("no_shows"), "1 (33.3 %)");
    assert_eq!(c("released_no_show"), "1");
    assert_eq!(c("released_vacancy"), "1");
    assert_eq!(c("released_ended_early"), "0");
    assert_eq!(c("walk_ins"), "1");
    assert_eq!(c("extensions"), "1");
    assert_eq!(c("saved"), "1 h 20 min");
    assert!(page.contains(r#"<div class="chart" id="stats-chart">"#));
    // The building per ISO week: five rooms, five working days of ten hours.
    let r = request(
        addr,
        "GET",
        "/stats?site=hq&view=week&from=2026-03-02&to=2026-03-08",
        Some(&cookie),
        &[],
        None,
    )
    .await;
    let page = &r.body;
    assert_eq!(
        cell(page, "stats-periods", "2026-W10", "bookable_h"),
        "250.0"
    );
    assert_eq!(cell(page, "stats-periods", "2026-W10", "used_h"), "2.2");
    assert_eq!(
        cell(page, "stats-periods", "2026-W10", "occupancy"),
        "0.9 %"
    );
    assert_eq!(cell(page, "stats-breakdown", "gw-3", "bookable_h"), "150.0");
    assert_eq!(cell(page, "stats-breakdown", "gw-4", "bookings"), "0");
    // A bad date is said, not crashed on.
    let r = request(
        addr,
        "GET",
        "/stats?site=hq&from=02.03.2026",
        Some(&cookie),
        &[],
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(
        r.body
            .contains("&#39;02.03.2026&#39; is not a date like 2026-03-02")
    );

    // Logout is a POST that needs the session's CSRF token and a same-site origin.
    let csrf = request(addr, "GET", "/", Some(&cookie), &[], None)
        .await
        .csrf();
    for (form, headers) in [
        (String::new(), vec![]),
        ("csrf=0000".to_owned(), vec![]),
        (
            format!("csrf={csrf}"),
            vec![("Origin", "https://evil.example")],
        ),
    ] {
        let r = request(
            addr,
            "POST",
            "/logout",
            Some(&cookie),
            &headers,
            Some(&form),
        )
        .await;
        assert_eq!(r.status, 403, "{form} {headers:?}");
    }
    assert_eq!(
        auth.counts().csrf_refused,
        4,
        "three logouts and the foreign sign-in"
    );
    let r = request(addr, "GET", "/", Some(&cookie), &[], None).await;
    assert_eq!(r.status, 200, "the session survived the refused POSTs");
    let r = request(
        addr,
        "POST",
        "/logout",
        Some(&cookie),
        &[("Origin", &format!("http://{addr}"))],
        Some(&format!("csrf={csrf}")),
    )
    .await;
    assert_eq!(r.status, 303);
    assert!(
        r.header("set-cookie")
            .is_some_and(|c| c.contains("Max-Age=0"))
    );
    let r = request(addr, "GET", "/", Some(&cookie), &[], None).await;
    assert_eq!(r.status, 303, "the session is gone");

    // The limiter: five failures lock the user (and this address), even for the right
    // password; the lock ends with time.
    for _ in 0..5 {
        let r = request(
            addr,
            "POST",
            "/login",
            None,
            &[],
            Some(&login_form("ada", "guess guess guess", "/")),
        )
        .await;
        assert_eq!(r.status, 401);
    }
    let r = request(
        addr,
        "POST",
        "/login",
        None,
        &[],
        Some(&login_form("ada", PASSWORD, "/")),
    )
    .await;
    assert_eq!(r.status, 429);
    assert!(
        r.body
            .contains("Too many failed sign-ins. Try again in 1 minute.")
    );
    assert_eq!(r.header("retry-after"), Some("60"));
    assert!(r.session_cookie().is_none());
    let counts = auth.counts();
    assert_eq!((counts.lockouts, counts.refused_locked), (1, 1));
    clock.fetch_add(61_000, Ordering::SeqCst);
    let r = request(
        addr,
        "POST",
        "/login",
        None,
        &[],
        Some(&login_form("ada", PASSWORD, "/")),
    )
    .await;
    assert_eq!(r.status, 303, "unlocked after a minute");

    // A real browser signs in through the form and sees the pages; screenshots for people.
    let shots = artifacts_dir("hub");
    let browser = Browser::launch().await.expect("chromium starts");
    let tab = browser.page(1366, 860).await.expect("tab");
    let base = format!("http://{addr}");
    tab.goto(&format!("{base}/sites/hq")).await.expect("open");
    assert!(tab.url().await.expect("url").contains("/login?next="));
    tab.fill("#user", "ada").await.expect("user");
    tab.fill("#password", PASSWORD).await.expect("password");
    tab.click_and_wait("button[type=submit]")
        .await
        .expect("sign in");
    assert_eq!(tab.url().await.expect("url"), format!("{base}/sites/hq"));
    // The live part refreshes itself (the script runs under the page's CSP).
    tab.wait_until(
        "document.getElementById('live-state').textContent.startsWith('live ·')",
        Duration::from_secs(15),
    )
    .await
    .expect("live refresh");
    tab.screenshot(&shots.join("building.png"))
        .await
        .expect("building screenshot");
    tab.goto(&format!("{base}/")).await.expect("overview");
    assert_eq!(
        tab.text("#gateways-offline")
            .await
            .expect("text")
            .as_deref(),
        Some("1")
    );
    tab.screenshot(&shots.join("overview.png"))
        .await
        .expect("overview screenshot");
    tab.goto(&format!(
        "{base}/stats?site=hq&view=day&from=2026-03-02&to=2026-03-08"
    ))
    .await
    .expect("stats");
    assert!(
        tab.text("#stats-scope")
            .await
            .expect("text")
            .is_some_and(|t| t.contains("building hq"))
    );
    tab.screenshot(&shots.join("stats.png"))
        .await
        .expect("stats screenshot");
    for name in ["overview.png", "building.png", "stats.png"] {
        let len = std::fs::metadata(shots.join(name))
            .expect("screenshot")
            .len();
        assert!(len > 10_000, "{name} is {len} bytes");
    }
    browser.close().await;

    sim3.vanish();
    sim_lab.vanish();
    serving.shutdown().await;
    hub.stop().await;
}
