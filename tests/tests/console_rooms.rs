//! The console's floor, room and scenes pages on a real gateway against the Modbus simulators:
//! signed in through `/setup` (and an operator through `/login`), the pages are read as a
//! browser gets them and their forms posted as `console.js` posts them (urlencoded, with the
//! session's CSRF token); what they change is checked in the site file, the snapshot and the
//! simulators' registers.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use drivers::sim::{SimDevice, SimKind};
use gateway::clock::{Clock, ManualClock};
use gateway::console::auth::{Caller, Role};
use roomgate_tests::browser::{Browser, Page, artifacts_dir};
use roomgate_tests::console::wait_js;
use roomgate_tests::wait_for;
use scenes::{Span, Timestamp};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// 2026-03-02 00:00 UTC, a Monday.
const DAY: i64 = 1_772_409_600_000;
const WAIT: Duration = Duration::from_secs(15);
const PASSWORD: &str = "a long enough passphrase";

fn at(hhmm: &str) -> Timestamp {
    let (h, m) = hhmm.split_once(':').expect("hh:mm");
    let minutes: i64 = h.parse::<i64>().expect("h") * 60 + m.parse::<i64>().expect("m");
    Timestamp::from_millis(DAY) + Span::minutes(minutes)
}

fn site(lights: u16, sockets: u16, pir: u16) -> String {
    format!(
        r#"[site]
name = "Level 5"
timezone = "UTC"

[[devices]]
id = "lights"
name = "Light module"
protocol = "modbus-tcp"
host = "127.0.0.1"
port = {lights}
poll = "50ms"
timeout = "300ms"
points = [
  {{ id = "r1", table = "coil", address = 0, type = "bool" }},
  {{ id = "r2", table = "coil", address = 1, type = "bool" }},
]

[[devices]]
id = "sockets"
name = "Socket module"
protocol = "modbus-tcp"
host = "127.0.0.1"
port = {sockets}
poll = "50ms"
timeout = "300ms"
points = [
  {{ id = "s1", table = "coil", address = 0, type = "bool" }},
  {{ id = "s2", table = "coil", address = 1, type = "bool" }},
]

[[devices]]
id = "pir"
name = "Presence inputs"
protocol = "modbus-tcp"
host = "127.0.0.1"
port = {pir}
poll = "50ms"
timeout = "300ms"
points = [
  {{ id = "r1", table = "discrete_input", address = 0, type = "bool" }},
  {{ id = "r2", table = "discrete_input", address = 1, type = "bool" }},
]

[[rooms]]
id = "r1"
name = "Boardroom"
capacity = 10
kind = "bookable"
bindings = {{ light = "lights/r1", occupancy = "pir/r1" }}

[[rooms]]
id = "r2"
name = "Focus room"
capacity = 4
kind = "bookable"
bindings = {{ light = "lights/r2", occupancy = "pir/r2" }}
"#
    )
}

// ---------------------------------------------------------------------------------------
// A small HTTP client with cookies and headers (independent of roomgate_tests::http).
// ---------------------------------------------------------------------------------------

#[derive(Debug)]
struct Reply {
    status: u16,
    head: String,
    text: String,
}

impl Reply {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.text).unwrap_or(serde_json::Value::Null)
    }

    fn header(&self, name: &str) -> Option<String> {
        let want = format!("{}:", name.to_ascii_lowercase());
        self.head.lines().find_map(|l| {
            l.to_ascii_lowercase()
                .starts_with(&want)
                .then(|| l[want.len()..].trim().to_owned())
        })
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

/// A signed-in browser: its session cookie and CSRF token.
#[derive(Debug, Clone, Default)]
struct Session {
    cookie: String,
    csrf: String,
}

fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    session: Option<&Session>,
    body: Option<&str>,
) -> Reply {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to gateway");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: text/html\r\n"
    );
    if let Some(s) = session {
        head.push_str(&format!("Cookie: {}\r\n", s.cookie));
        if method != "GET" {
            head.push_str(&format!("X-CSRF-Token: {}\r\n", s.csrf));
        }
    }
    let body = body.unwrap_or("");
    if method != "GET" {
        head.push_str(&format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    stream
        .write_all(format!("{head}{body}").as_bytes())
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
    let text = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(text)
    } else {
        text.to_owned()
    };
    Reply {
        status,
        head: head.to_owned(),
        text,
    }
}

/// The session cookie a sign-in answer sets.
fn session_cookie(r: &Reply) -> String {
    let set = r.header("set-cookie").expect("a session cookie");
    let pair = set
        .split(';')
        .next()
        .expect("cookie pair")
        .trim()
        .to_owned();
    assert!(pair.starts_with("rg_session="), "{set}");
    pair
}

/// The CSRF token a console page carries in its `csrf` meta tag.
fn csrf_of(page: &str) -> String {
    let tag = "<meta name=\"csrf\" content=\"";
    let start = page.find(tag).expect("csrf meta") + tag.len();
    let end = page[start..].find('"').expect("end of csrf") + start;
    page[start..end].to_owned()
}

/// The value of the first `attr="…"` after `after` in `page`.
fn attr_after(page: &str, after: &str, attr: &str) -> Option<String> {
    let from = page.find(after)?;
    let tag = format!("{attr}=\"");
    let start = page[from..].find(&tag)? + from + tag.len();
    let end = page[start..].find('"')? + start;
    Some(page[start..end].to_owned())
}

/// The `<select name="…">` element of a page.
fn select_of<'a>(page: &'a str, name: &str) -> &'a str {
    let start = page
        .find(&format!("<select name=\"{name}\">"))
        .unwrap_or_else(|| panic!("no select '{name}'"));
    let end = page[start..].find("</select>").expect("end of select") + start;
    &page[start..end]
}

// ---------------------------------------------------------------------------------------

struct Harness {
    lights: SimDevice,
    sockets: SimDevice,
    pir: SimDevice,
    clock: ManualClock,
    site_path: PathBuf,
    dir: tempfile::TempDir,
    running: gateway::app::Running,
}

impl Harness {
    async fn start() -> Harness {
        let local: SocketAddr = ([127, 0, 0, 1], 0).into();
        let lights = SimDevice::spawn(SimKind::LightModule, local)
            .await
            .expect("lights simulator");
        let sockets = SimDevice::spawn(SimKind::SocketModule, local)
            .await
            .expect("sockets simulator");
        let pir = SimDevice::spawn(SimKind::PirInput, local)
            .await
            .expect("pir simulator");
        let dir = tempfile::tempdir().expect("temp dir");
        let site_path = dir.path().join("site.toml");
        std::fs::write(
            &site_path,
            site(
                lights.addr().port(),
                sockets.addr().port(),
                pir.addr().port(),
            ),
        )
        .expect("write site");
        let clock = ManualClock::new(at("08:00"));
        let running = gateway::app::start_from_file(
            &site_path,
            &dir.path().join("data"),
            gateway::app::WebConfig::plain(local),
            Clock::Manual(clock.clone()),
        )
        .await
        .expect("gateway starts");
        let h = running.handle().clone();
        wait_for("every device online", WAIT, || {
            let s = h.snapshot();
            s.devices.len() == 3 && s.devices.iter().all(|d| d.state == "online")
        })
        .await;
        Harness {
            lights,
            sockets,
            pir,
            clock,
            site_path,
            dir,
            running,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.running.addr
    }

    fn gw(&self) -> &gateway::runtime::GatewayHandle {
        self.running.handle()
    }

    async fn get(&self, path: &str, s: &Session) -> Reply {
        request(self.addr(), "GET", path, Some(s), None).await
    }

    async fn post(&self, path: &str, s: &Session, pairs: &[(&str, &str)]) -> Reply {
        request(self.addr(), "POST", path, Some(s), Some(&form(pairs))).await
    }

    /// A page that must answer 200.
    async fn page(&self, path: &str, s: &Session) -> String {
        let r = self.get(path, s).await;
        assert_eq!(r.status, 200, "GET {path}: {}", r.text);
        r.text
    }

    /// The installer account, made through the real `/setup` form.
    async fn setup(&self) -> Session {
        let code_file = self.dir.path().join("data").join("setup-code");
        let code = std::fs::read_to_string(&code_file).expect("setup code file");
        let r = request(
            self.addr(),
            "POST",
            "/setup",
            None,
            Some(&form(&[
                ("code", code.trim()),
                ("name", "ada"),
                ("password", PASSWORD),
                ("repeat", PASSWORD),
            ])),
        )
        .await;
        assert_eq!(r.status, 303, "setup: {}", r.text);
        self.signed_in(session_cookie(&r)).await
    }

    /// An operator account, signed in through `/login`.
    async fn operator(&self) -> Session {
        let installer = Caller::Session {
            user: "ada".into(),
            role: Role::Installer,
            csrf: String::new(),
        };
        self.running
            .console
            .accounts
            .add_account(
                self.clock.now().as_millis(),
                &installer,
                "test",
                "olga",
                Role::Operator,
                PASSWORD,
                PASSWORD,
            )
            .expect("operator account");
        let r = request(
            self.addr(),
            "POST",
            "/login",
            None,
            Some(&form(&[
                ("name", "olga"),
                ("password", PASSWORD),
                ("next", "/"),
            ])),
        )
        .await;
        assert_eq!(r.status, 303, "login: {}", r.text);
        self.signed_in(session_cookie(&r)).await
    }

    async fn signed_in(&self, cookie: String) -> Session {
        let mut s = Session {
            cookie,
            csrf: String::new(),
        };
        let page = self.page("/", &s).await;
        s.csrf = csrf_of(&page);
        assert!(!s.csrf.is_empty());
        s
    }

    async fn site_file(&self, s: &Session) -> String {
        let r = self.get("/api/site", s).await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.text
    }

    fn room_state(&self, id: &str) -> String {
        let snap = self.gw().snapshot();
        snap.rooms
            .iter()
            .find(|r| r.id == id)
            .map(|r| r.state.to_owned())
            .expect("room")
    }
}

/// The card of `room` on the floor page.
fn card<'a>(floor: &'a str, room: &str) -> &'a str {
    let start = floor
        .find(&format!("data-room=\"{room}\""))
        .unwrap_or_else(|| panic!("no card for {room}"));
    let end = floor[start..].find("</a>").expect("end of card") + start;
    &floor[start..end]
}

/// Reads server-sent events from `path` until one of them contains every `want`.
async fn sse_until(addr: SocketAddr, path: &str, s: &Session, want: &[&str]) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to gateway");
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\nCookie: {}\r\n\r\n",
        s.cookie
    );
    stream.write_all(req.as_bytes()).await.expect("send");
    let mut seen = String::new();
    let mut buf = vec![0u8; 16 * 1024];
    let read = async {
        loop {
            let n = stream.read(&mut buf).await.expect("read stream");
            assert!(n > 0, "the stream ended: {seen}");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            for event in seen.split("\n\n") {
                let data: String = event
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .collect();
                if !data.is_empty() && want.iter().all(|w| data.contains(w)) {
                    return data;
                }
            }
        }
    };
    tokio::time::timeout(WAIT, read)
        .await
        .unwrap_or_else(|_| panic!("no event with {want:?} on {path}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floor_room_and_scene_pages_drive_the_gateway() {
    let h = Harness::start().await;

    // Without a session, a page sends the browser to sign in.
    let r = request(h.addr(), "GET", "/", None, None).await;
    assert_eq!(r.status, 303, "{}", r.text);
    assert_eq!(r.header("location").as_deref(), Some("/setup"));

    let ada = h.setup().await;

    // The floor: every room as a card with its state, devices and the floor's health.
    let floor = h.page("/", &ada).await;
    for room in ["r1", "r2"] {
        let c = card(&floor, room);
        assert!(c.contains("data-state=\"free\""), "{c}");
        assert!(c.contains("class=\"state free\""), "{c}");
        assert!(c.contains("Devices 2/2 online"), "{c}");
        assert!(c.contains(&format!("href=\"/rooms/{room}\"")), "{c}");
    }
    assert!(floor.contains("Boardroom") && floor.contains("Focus room"));
    assert!(floor.contains("Floor devices online: 3/3"), "{floor}");
    assert!(floor.contains("Hub: not configured"));
    assert!(floor.contains("src=\"/assets/rooms.js\""));
    // The floor page is the console's now (the old page with its own POSTs is gone).
    assert!(floor.contains("<meta name=\"csrf\""));

    // A local booking from the room page's form; a form without an end is refused by field.
    let r = h
        .post(
            "/rooms/r1/bookings",
            &ada,
            &[("subject", "Planning"), ("start", "2026-03-02T08:30")],
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!(r.json()["errors"][0]["field"], "end", "{}", r.text);
    let r = h
        .post(
            "/rooms/r1/bookings",
            &ada,
            &[
                ("subject", "Planning <Q2>"),
                ("organizer", "Ana Lima"),
                ("start", "2026-03-02T08:00"),
                ("end", "2026-03-02T09:00"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["reload"], true);
    // It conflicts with itself: the gateway's refusal is shown for the form.
    let r = h
        .post(
            "/rooms/r1/bookings",
            &ada,
            &[("start", "2026-03-02T08:30"), ("minutes", "15")],
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert!(
        r.json()["error"]
            .as_str()
            .is_some_and(|e| e.contains("booked")),
        "{}",
        r.text
    );
    // Checked in through the API with the same session (CSRF header): the room is in a meeting.
    let r = h.post("/api/rooms/r1/checkin", &ada, &[]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    wait_for("r1 in a meeting", WAIT, || {
        h.room_state("r1") == "in_meeting"
    })
    .await;
    let floor = h.page("/", &ada).await;
    let c = card(&floor, "r1");
    assert!(c.contains("data-state=\"in_meeting\""), "{c}");
    assert!(c.contains("Planning &lt;Q2&gt;"), "{c}");
    assert!(
        c.contains("08:00–09:00") && c.contains("by Ana Lima"),
        "{c}"
    );
    assert!(c.contains("Checked in"), "{c}");
    assert!(card(&floor, "r2").contains("data-state=\"free\""));

    // The floor follows the gateway live: presence in r2 shows on its card.
    let first = sse_until(h.addr(), "/floor/events", &ada, &["Boardroom"]).await;
    assert!(first.contains("in_meeting"), "{first}");
    h.pir.set_discrete_input(1, true);
    let live = sse_until(
        h.addr(),
        "/floor/events",
        &ada,
        &["data-room=\\\"r2\\\"", "Someone is in the room"],
    )
    .await;
    assert!(live.contains("grid"), "{live}");
    h.pir.set_discrete_input(1, false);

    // The room page: today's timeline with the booking and its check-in, the log with reasons.
    let room = h.page("/rooms/r1", &ada).await;
    assert!(room.contains("class=\"timeline\""), "{room}");
    assert!(
        room.contains("class=\"tl-block tl-booking checked\" style=\"left:"),
        "{room}"
    );
    assert!(room.contains(">Planning &lt;Q2&gt;</div>"), "{room}");
    assert!(room.contains("class=\"tl-mark checkin\""));
    assert!(room.contains("class=\"tl-now\""));
    assert!(
        room.contains("data-start=\"2026-03-02T07:00:00+00:00\""),
        "{room}"
    );
    assert!(room.contains("check-in"), "the activity log: {room}");
    assert!(room.contains("booking ["), "{room}");
    // Installers see the policy, bindings, links and the room's settings.
    for section in [
        "id=\"policy\"",
        "id=\"bindings\"",
        "/rooms/r1/tokens",
        "id=\"room-form\"",
    ] {
        assert!(room.contains(section), "{section}");
    }
    // Chinese, chosen with ?lang= and remembered.
    let r = h.get("/rooms/r1?lang=zh-CN", &ada).await;
    assert_eq!(r.status, 200);
    assert!(r.text.contains("活动记录") && r.text.contains("会议中"));
    assert!(
        r.header("set-cookie")
            .is_some_and(|c| c.starts_with("lang=zh-CN"))
    );

    // A policy change applies: the site file has it, the room page shows it in force.
    let r = h
        .post("/rooms/r1/policy", &ada, &[("no_show_after", "5m")])
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let file = h.site_file(&ada).await;
    assert!(file.contains("no_show_after = \"5m\""), "{file}");
    let on_disk = std::fs::read_to_string(&h.site_path).expect("site file");
    assert!(on_disk.contains("no_show_after = \"5m\""), "{on_disk}");
    let room = h.page("/rooms/r1", &ada).await;
    assert!(room.contains("in force: 5 min"), "{room}");
    // A bad value answers 422 on its field and changes nothing.
    let r = h
        .post("/rooms/r1/policy", &ada, &[("no_show_after", "banana")])
        .await;
    assert_eq!(r.status, 422, "{}", r.text);
    let errors = r.json()["errors"].clone();
    assert_eq!(errors[0]["field"], "no_show_after", "{}", r.text);
    assert_eq!(h.site_file(&ada).await, file);

    // A binding chosen from the select (never a typed id) applies.
    let room2 = h.page("/rooms/r2", &ada).await;
    let socket = select_of(&room2, "socket");
    assert!(socket.contains("<option value=\"\" selected>"), "{socket}");
    assert!(
        socket.contains("<option value=\"sockets/s2\">Socket module: s2 (sockets/s2)</option>"),
        "{socket}"
    );
    assert!(
        !socket.contains("value=\"pir/"),
        "PIR inputs cannot be sockets: {socket}"
    );
    let r = h
        .post("/rooms/r2/bindings", &ada, &[("socket", "sockets/s2")])
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    wait_for("r2's socket in the snapshot", WAIT, || {
        let snap = h.gw().snapshot();
        snap.rooms.iter().any(|r| {
            r.id == "r2"
                && (r.points.iter()).any(|p| p.capability == "socket" && p.point == "sockets/s2")
        })
    })
    .await;
    assert!(h.site_file(&ada).await.contains("socket = \"sockets/s2\""));
    let room2 = h.page("/rooms/r2", &ada).await;
    assert!(select_of(&room2, "socket").contains("<option value=\"sockets/s2\" selected>"));
    // A point that does not fit is refused on its field.
    let r = h
        .post("/rooms/r2/bindings", &ada, &[("socket", "pir/r2")])
        .await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!(r.json()["errors"][0]["field"], "socket", "{}", r.text);

    // A scene with two set steps around a wait; a step without a value is refused first.
    let r = h
        .post(
            "/scenes",
            &ada,
            &[("name", "focus"), ("steps[0].action", "lights")],
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!(
        r.json()["errors"][0]["field"],
        "steps[0].value",
        "{}",
        r.text
    );
    let r = h
        .post(
            "/scenes",
            &ada,
            &[
                ("name", "focus"),
                ("steps[0].action", "lights"),
                ("steps[0].value", "on"),
                ("steps[1].action", "wait"),
                ("steps[1].value", "2s"),
                ("steps[5].action", "sockets"),
                ("steps[5].value", "on"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["redirect"], "/scenes");
    let scenes = h.page("/scenes", &ada).await;
    assert!(scenes.contains("id=\"scene-focus\""), "{scenes}");
    assert!(
        scenes.contains("name=\"steps[2].action\""),
        "rows renumbered in order"
    );
    assert!(
        scenes.contains("<option value=\"r2\">Focus room</option>"),
        "{scenes}"
    );
    // Try it now in r2: the light goes on at once, the socket after the wait.
    assert!(!h.lights.coil(1) && !h.sockets.coil(1));
    let r = h.post("/scenes/focus/try", &ada, &[("room", "r2")]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let message = r.json()["message"].as_str().unwrap_or_default().to_owned();
    assert!(
        message.contains("Scene 'focus' runs in Focus room") && message.contains("lights on"),
        "{message}"
    );
    wait_for("the light of r2 on", WAIT, || h.lights.coil(1)).await;
    assert!(!h.sockets.coil(1), "the socket waits for the wait");
    h.clock.set(h.clock.now() + Span::seconds(3));
    h.gw().settle().await.expect("settle");
    wait_for("the socket of r2 on", WAIT, || h.sockets.coil(1)).await;
    let log = h.running.console.accounts.audit_log(0, 50).expect("audit");
    assert!(
        log.iter()
            .any(|a| a.action == "scene.run" && a.target == "r2/focus" && a.who == "ada"),
        "{log:?}"
    );
    assert!(log.iter().any(|a| a.action == "room.policy"));

    // An operator views and runs scenes, but may not change the policy or see scenes.
    let olga = h.operator().await;
    let room = h.page("/rooms/r2", &olga).await;
    assert!(
        room.contains("class=\"secondary scene-button\">leave<"),
        "{room}"
    );
    assert!(
        !room.contains("id=\"policy\""),
        "no installer forms for an operator"
    );
    let r = h
        .post("/rooms/r1/policy", &olga, &[("no_show_after", "1m")])
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
    let r = h.get("/scenes", &olga).await;
    assert_eq!(r.status, 403, "{}", r.text);
    let r = h
        .post("/rooms/r2/scene", &olga, &[("scene", "leave")])
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    wait_for("the leave scene turns r2's light off", WAIT, || {
        !h.lights.coil(1)
    })
    .await;
    assert!(h.site_file(&ada).await.contains("no_show_after = \"5m\""));

    // A door panel link: made once on the room page, it opens that room's panel only.
    let r = h
        .post("/rooms/r1/tokens", &ada, &[("label", "Tablet at r1")])
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let message = r.json()["message"].as_str().unwrap_or_default().to_owned();
    let link_at = message.find("https://").expect("the link");
    let link = message[link_at..].trim();
    let host = h.addr().to_string();
    assert!(
        link.starts_with(&format!("https://{host}/panel/r1?token=")),
        "{link}"
    );
    let token = link.rsplit("token=").next().expect("token").to_owned();
    let r = request(
        h.addr(),
        "GET",
        &format!("/panel/r1?token={token}"),
        None,
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.text.contains("Boardroom"));
    let r = request(
        h.addr(),
        "GET",
        &format!("/panel/r2?token={token}"),
        None,
        None,
    )
    .await;
    assert_eq!(r.status, 401, "another room's panel: {}", r.text);
    let room = h.page("/rooms/r1", &ada).await;
    assert!(room.contains("Tablet at r1") && !room.contains(&token));
    let id = attr_after(&room, "<tr data-token=", "data-token").expect("the link's id");
    let r = h
        .post(&format!("/rooms/r2/tokens/{id}/revoke"), &ada, &[])
        .await;
    assert_eq!(r.status, 404, "only r1's page revokes r1's links");
    let r = h
        .post(&format!("/rooms/r1/tokens/{id}/revoke"), &ada, &[])
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = request(
        h.addr(),
        "GET",
        &format!("/panel/r1?token={token}"),
        None,
        None,
    )
    .await;
    assert_eq!(r.status, 401, "revoked: {}", r.text);

    // A room added from the rooms list; a bad id is refused on its field.
    let r = h
        .post(
            "/rooms",
            &ada,
            &[("id", "r 3"), ("name", "Lab"), ("kind", "bookable")],
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!(r.json()["errors"][0]["field"], "id", "{}", r.text);
    let r = h
        .post(
            "/rooms",
            &ada,
            &[("id", "r3"), ("name", "Lab"), ("kind", "bookable")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["redirect"], "/rooms/r3");
    let list = h.page("/rooms", &ada).await;
    assert!(list.contains("href=\"/rooms/r3\">Lab</a>"), "{list}");
    let r = h.post("/rooms/r3/remove", &ada, &[]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    wait_for("r3 gone", WAIT, || {
        !h.gw().snapshot().rooms.iter().any(|r| r.id == "r3")
    })
    .await;

    h.running.shutdown().await;
}

/// No sideways scrolling: the page fits the screen's width.
async fn fits(page: &Page, what: &str) {
    let wide = page
        .eval("document.documentElement.scrollWidth - window.innerWidth")
        .await
        .expect("eval");
    assert!(
        wide.as_i64().is_some_and(|w| w <= 0),
        "{what} is {wide} px too wide"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_work_in_a_browser_on_a_laptop_and_a_tablet() {
    let h = Harness::start().await;
    let ada = h.setup().await;
    let r = h
        .post(
            "/rooms/r1/bookings",
            &ada,
            &[
                ("subject", "Design review"),
                ("start", "2026-03-02T09:00"),
                ("end", "2026-03-02T10:30"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let shots = artifacts_dir("console-rooms");
    let browser = Browser::launch().await.expect("chromium starts");
    let url = |path: &str| format!("http://{}{path}", h.addr());
    let (name, value) = ada.cookie.split_once('=').expect("cookie");
    for (label, width, height) in [("laptop", 1366, 900), ("tablet", 800, 1280)] {
        let page = browser.page(width, height).await.expect("a page");
        page.call(
            "Network.setCookie",
            serde_json::json!({ "name": name, "value": value, "url": url("/") }),
        )
        .await
        .expect("session cookie");

        // The floor follows presence live (rooms.js on the floor's stream).
        page.goto(&url("/?lang=en")).await.expect("floor");
        wait_js(
            &page,
            "r1's card",
            "!!document.querySelector('#room-r1 .state.free')",
        )
        .await;
        fits(&page, &format!("the floor on a {label}")).await;
        page.screenshot(&shots.join(format!("floor-{label}.png")))
            .await
            .expect("screenshot");
        h.pir.set_discrete_input(1, true);
        wait_js(
            &page,
            "presence in r2 on its card",
            "document.querySelector('#room-r2').textContent.includes('Someone is in the room')",
        )
        .await;
        h.pir.set_discrete_input(1, false);
        wait_js(
            &page,
            "r2 empty again",
            "document.querySelector('#room-r2').textContent.includes('Empty')",
        )
        .await;

        // The room page: the timeline, and a scene button that answers in place.
        page.goto(&url("/rooms/r1")).await.expect("room page");
        wait_js(
            &page,
            "the timeline",
            "!!document.querySelector('.tl-booking')",
        )
        .await;
        let block = page
            .eval(
                "(() => { const b = document.querySelector('.tl-booking').getBoundingClientRect(); \
                   const t = document.querySelector('.tl-track').getBoundingClientRect(); \
                   return [b.left - t.left, b.width, t.width]; })()",
            )
            .await
            .expect("geometry");
        let (left, w, track) = (
            block[0].as_f64().expect("left"),
            block[1].as_f64().expect("width"),
            block[2].as_f64().expect("track"),
        );
        // 09:00–10:30 on 07:00–20:00: 2/13 in, 1.5/13 wide.
        assert!(
            (left / track - 2.0 / 13.0).abs() < 0.01,
            "{left} of {track}"
        );
        assert!((w / track - 1.5 / 13.0).abs() < 0.01, "{w} of {track}");
        fits(&page, &format!("the room page on a {label}")).await;
        page.screenshot(&shots.join(format!("room-{label}.png")))
            .await
            .expect("screenshot");
        page.click("form[action='/rooms/r1/scene'] input[value='leave'] + button")
            .await
            .expect("leave scene");
        wait_js(
            &page,
            "the scene's answer",
            "document.querySelector('#scene-result').textContent.includes(\"Scene 'leave' runs in Boardroom\")",
        )
        .await;
    }

    // The scenes page: rows are added in the browser and the new scene is saved with them.
    let page = browser.page(1366, 900).await.expect("a page");
    page.call(
        "Network.setCookie",
        serde_json::json!({ "name": name, "value": value, "url": url("/") }),
    )
    .await
    .expect("session cookie");
    page.goto(&url("/scenes")).await.expect("scenes page");
    let form = "#add-scene";
    page.fill(&format!("{form} [name='name']"), "present")
        .await
        .expect("name");
    page.click(&format!("{form} [data-add-row]"))
        .await
        .expect("add row");
    page.click(&format!("{form} [data-add-row]"))
        .await
        .expect("add row");
    wait_js(
        &page,
        "three rows",
        "document.querySelectorAll('#add-scene .steps .step-row').length === 3",
    )
    .await;
    for (n, action, value) in [(0, "lights", "40"), (1, "wait", "1s"), (2, "lights", "off")] {
        page.fill(&format!("{form} [name='steps[{n}].action']"), action)
            .await
            .expect("action");
        page.fill(&format!("{form} [name='steps[{n}].value']"), value)
            .await
            .expect("value");
    }
    // A removed row is not saved.
    page.click(&format!("{form} [data-add-row]"))
        .await
        .expect("add row");
    page.fill(&format!("{form} [name='steps[3].action']"), "projector")
        .await
        .expect("action");
    page.click(&format!("{form} .step-row[data-row='3'] [data-remove-row]"))
        .await
        .expect("remove row");
    // Saving reloads the page: mark this one, so the wait is for the reloaded page.
    page.eval("window.__beforeSave = true").await.expect("mark");
    page.click(&format!("{form} button[type='submit']"))
        .await
        .expect("save");
    wait_js(
        &page,
        "the saved scene on the reloaded page",
        "!window.__beforeSave && document.readyState === 'complete' \
         && !!document.querySelector('#scene-present')",
    )
    .await;
    page.screenshot(&shots.join("scenes-laptop.png"))
        .await
        .expect("screenshot");
    let file = h.site_file(&ada).await;
    assert!(file.contains("name = \"present\""), "{file}");
    assert!(!file.contains("projector"), "{file}");
    browser.close().await;
    h.running.shutdown().await;
}
