//! Door panels and the lobby display in a real browser, against a real gateway.
//!
//! The gateway runs for real (store on disk, Modbus TCP simulators, HTTP) with a manual clock;
//! headless Chromium opens `/panel/<room>` and `/display`, taps the buttons, and sees the
//! room change live (server-sent events) as the clock advances, in English and Chinese,
//! including a PIN check-in and a gateway restart under an open panel. The gateway serves
//! HTTPS with its generated certificate, which the browser trusts by its key; each tablet
//! opens its panel's link with the room's panel token once (then the page's cookie carries it).
//! Screenshots go to `target/artifacts/panel/`.

use std::collections::HashMap;
use std::time::Duration;

use drivers::sim::{SimDevice, SimKind};
use gateway::clock::{Clock, ManualClock};
use gateway::console::auth::Scope;
use roomgate_tests::browser::{Browser, Page, artifacts_dir};
use roomgate_tests::console::{wait_state, wait_text};
use roomgate_tests::{Api, Request, http, send, wait_for};
use scenes::{Span, Timestamp};
use serde_json::json;

/// 2026-03-02 00:00 UTC, a Monday.
const DAY: i64 = 1_772_409_600_000;
const WAIT: Duration = Duration::from_secs(15);

fn at(hhmm: &str) -> Timestamp {
    let (h, m) = hhmm.split_once(':').expect("hh:mm");
    let minutes: i64 = h.parse::<i64>().expect("h") * 60 + m.parse::<i64>().expect("m");
    Timestamp::from_millis(DAY) + Span::minutes(minutes)
}

fn iso(hhmm: &str) -> String {
    format!("2026-03-02T{hhmm}:00Z")
}

fn site(lights: u16, pir: u16) -> String {
    format!(
        r#"
[site]
name = "Level 4"
timezone = "UTC"

[[devices]]
id = "lights"
protocol = "modbus-tcp"
host = "127.0.0.1"
port = {lights}
poll = "50ms"
timeout = "300ms"
points = [
  {{ id = "r1", table = "coil", address = 0, type = "bool" }},
  {{ id = "h1", table = "coil", address = 1, type = "bool" }},
  {{ id = "r2", table = "coil", address = 2, type = "bool" }},
  {{ id = "r3", table = "coil", address = 3, type = "bool" }},
]

[[devices]]
id = "pir"
protocol = "modbus-tcp"
host = "127.0.0.1"
port = {pir}
poll = "50ms"
timeout = "300ms"
points = [
  {{ id = "r1", table = "discrete_input", address = 0, type = "bool" }},
  {{ id = "h1", table = "discrete_input", address = 1, type = "bool" }},
  {{ id = "r2", table = "discrete_input", address = 2, type = "bool" }},
]

[[rooms]]
id = "r1"
name = "Boardroom"
capacity = 12
kind = "bookable"
bindings = {{ light = "lights/r1", occupancy = "pir/r1" }}

[[rooms]]
id = "r2"
name = "Huddle 4.02"
capacity = 4
kind = "bookable"
bindings = {{ light = "lights/r2", occupancy = "pir/r2" }}
policy = {{ checkin_pin = true }}

[[rooms]]
id = "h1"
name = "Phone booth"
capacity = 1
kind = "instant_use"
bindings = {{ light = "lights/h1", occupancy = "pir/h1" }}

[[rooms]]
id = "r3"
name = "Training room"
capacity = 20
kind = "closed"
bindings = {{ light = "lights/r3" }}
"#
    )
}

struct Harness {
    _lights: SimDevice,
    _pir: SimDevice,
    site: String,
    clock: ManualClock,
    data: tempfile::TempDir,
    running: Option<gateway::app::Running>,
    /// The API as an operator (tokens live in the store, so they survive the restart).
    api: Option<Api>,
    /// Each room's panel token, and the lobby display's.
    panel_tokens: HashMap<&'static str, String>,
    display_token: String,
}

impl Harness {
    async fn start() -> Harness {
        let lights = SimDevice::spawn(SimKind::LightModule, ([127, 0, 0, 1], 0).into())
            .await
            .expect("lights simulator");
        let pir = SimDevice::spawn(SimKind::PirInput, ([127, 0, 0, 1], 0).into())
            .await
            .expect("pir simulator");
        let site = site(lights.addr().port(), pir.addr().port());
        let mut h = Harness {
            _lights: lights,
            _pir: pir,
            site,
            clock: ManualClock::new(at("08:00")),
            data: tempfile::tempdir().expect("data dir"),
            running: None,
            api: None,
            panel_tokens: HashMap::new(),
            display_token: String::new(),
        };
        h.boot(([127, 0, 0, 1], 0).into()).await;
        let running = h.running.as_ref().expect("running");
        for room in ["r1", "r2", "h1", "r3"] {
            let token = running
                .issue_token(
                    &format!("panel {room}"),
                    Scope::Panel {
                        room: room.to_owned(),
                    },
                )
                .expect("panel token");
            h.panel_tokens.insert(room, token);
        }
        h.display_token = running
            .issue_token("lobby", Scope::Display)
            .expect("display token");
        h
    }

    async fn boot(&mut self, listen: std::net::SocketAddr) {
        let site = gateway::site::load(&self.site).expect("test site is valid");
        let running = gateway::app::start(
            site,
            self.data.path(),
            listen,
            Clock::Manual(self.clock.clone()),
        )
        .await
        .expect("gateway starts");
        assert!(running.https(), "the panels are served over HTTPS");
        self.api = Some(match self.api.take() {
            Some(api) => api.at(running.addr),
            None => Api::operator(&running),
        });
        self.running = Some(running);
        let h = self.gw().clone();
        wait_for("every device online", WAIT, || {
            let s = h.snapshot();
            !s.devices.is_empty() && s.devices.iter().all(|d| d.state == "online")
        })
        .await;
    }

    async fn restart(&mut self) {
        let addr = self.addr();
        if let Some(running) = self.running.take() {
            running.shutdown().await;
        }
        // The same port, as a restarted gateway has: the open panel must find it again.
        self.boot(addr).await;
    }

    fn gw(&self) -> &gateway::runtime::GatewayHandle {
        self.running.as_ref().expect("running").handle()
    }

    fn addr(&self) -> std::net::SocketAddr {
        self.running.as_ref().expect("running").addr
    }

    fn api(&self) -> &Api {
        self.api.as_ref().expect("running")
    }

    /// A page's URL without a token (the tablet's cookie carries it).
    fn url(&self, path: &str) -> String {
        self.api().url(path)
    }

    /// The link an installer puts on `room`'s tablet: its panel with the room's token.
    fn panel_link(&self, room: &str, lang: &str) -> String {
        self.url(&format!(
            "/panel/{room}?lang={lang}&token={}",
            self.panel_tokens[room]
        ))
    }

    /// The lobby display's link, with its token.
    fn display_link(&self, lang: &str) -> String {
        self.url(&format!(
            "/display?lang={lang}&token={}",
            self.display_token
        ))
    }

    /// The gateway's certificate, for the browser to trust.
    fn cert_pem(&self) -> Vec<u8> {
        let running = self.running.as_ref().expect("running");
        let cert = running.console.cert.as_ref().expect("HTTPS");
        std::fs::read(cert.cert_path()).expect("the gateway's certificate")
    }

    /// Moves the clock to `hhmm` a minute at a time, as real time would.
    async fn advance_to(&self, hhmm: &str) {
        let target = at(hhmm);
        self.gw().settle().await.expect("settle");
        while self.clock.now() < target {
            let step = (self.clock.now() + Span::minutes(1)).min(target);
            self.clock.set(step);
            self.gw().settle().await.expect("settle");
        }
    }

    async fn book(&self, room: &str, from: &str, to: &str, subject: &str) -> serde_json::Value {
        let r = http(
            self.api(),
            "POST",
            &format!("/api/rooms/{room}/bookings"),
            Some(&json!({ "start": iso(from), "end": iso(to), "subject": subject, "organizer": "Ana Lima" })),
        )
        .await;
        assert_eq!(r.status, 201, "booking {subject}: {}", r.text);
        r.body
    }
}

/// Waits until the element's text contains `want`.
async fn wait_contains(page: &Page, selector: &str, want: &str) {
    let script = format!(
        "(() => {{ const e = document.querySelector({sel}); return !!e && e.textContent.includes({want}); }})()",
        sel = json!(selector),
        want = json!(want)
    );
    if page.wait_until(&script, WAIT).await.is_err() {
        let got = page.text(selector).await.ok().flatten();
        panic!("{selector}: wanted text containing {want:?}, the page shows {got:?}");
    }
}

async fn visible(page: &Page, selector: &str) -> bool {
    let script = format!(
        "(() => {{ const e = document.querySelector({sel}); return !!e && !e.hidden && e.getClientRects().length > 0; }})()",
        sel = json!(selector)
    );
    page.eval(&script).await.expect("eval") == json!(true)
}

async fn enabled(page: &Page, selector: &str) -> bool {
    let script = format!(
        "(() => {{ const e = document.querySelector({sel}); return !!e && !e.disabled; }})()",
        sel = json!(selector)
    );
    page.eval(&script).await.expect("eval") == json!(true)
}

/// Taps a button and waits for the server's answer on screen.
async fn tap(page: &Page, selector: &str, answer: &str) {
    assert!(enabled(page, selector).await, "{selector} is enabled");
    page.click(selector).await.expect("click");
    wait_text_prefix(page, "#result", answer).await;
}

async fn wait_text_prefix(page: &Page, selector: &str, want: &str) {
    let script = format!(
        "(() => {{ const e = document.querySelector({sel}); return !!e && !e.hidden && e.textContent.startsWith({want}); }})()",
        sel = json!(selector),
        want = json!(want)
    );
    if page.wait_until(&script, WAIT).await.is_err() {
        let got = page.text(selector).await.ok().flatten();
        panic!("{selector}: wanted {want:?}…, the page shows {got:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn door_panels_and_the_lobby_display_work_live_in_two_languages() {
    let mut h = Harness::start().await;
    let shots = artifacts_dir("panel");
    let r1 = h.book("r1", "09:00", "10:00", "Quarterly review").await;
    assert!(r1.get("pin").is_none(), "r1's panel asks for no PIN");
    let r2 = h.book("r2", "09:00", "09:30", "Design sync").await;
    let pin = r2["pin"]
        .as_str()
        .expect("r2 bookings come with a PIN")
        .to_owned();
    assert_eq!(pin.len(), 4);

    let browser = Browser::launch_trusting(&h.cert_pem())
        .await
        .expect("chromium starts");
    let page = browser.page(1280, 800).await.expect("a landscape tablet");

    // 08:00, free: every walk-in fits before the 09:00 meeting.
    page.goto(&h.panel_link("r1", "en"))
        .await
        .expect("panel loads");
    wait_text(&page, "#state", "Free").await;
    wait_text(&page, "#headline", "Free until 09:00").await;
    wait_text(&page, "#next-subject", "Quarterly review").await;
    for m in [15, 30, 60] {
        assert!(
            enabled(&page, &format!("#walkin-{m}")).await,
            "{m} min fits"
        );
    }
    assert!(!visible(&page, "#end").await && !visible(&page, "#extend").await);
    page.screenshot(&shots.join("panel-free.png"))
        .await
        .expect("screenshot");

    // 08:20: the clock moves on the panel by itself, and 60 minutes no longer fit.
    h.advance_to("08:20").await;
    wait_text(&page, "#clock", "08:20").await;
    assert!(
        !enabled(&page, "#walkin-60").await,
        "60 min would run into 09:00"
    );
    assert!(enabled(&page, "#walkin-30").await);

    // A walk-in for 15 minutes: booked and checked in at once.
    tap(&page, "#walkin-15", "Booked until 08:35").await;
    wait_state(&page, "in_meeting").await;
    wait_text(&page, "#state", "In meeting").await;
    wait_text(&page, "#current-note", "Checked in").await;
    tap(&page, "#extend-15", "Extended until 08:50").await;
    wait_text(&page, "#headline", "Busy until 08:50").await;
    // +30 would overlap the 09:00 meeting: the engine stops the extension there.
    tap(&page, "#extend-30", "Extended until 09:00").await;
    wait_text(&page, "#headline", "Busy until 09:00").await;
    assert!(
        !enabled(&page, "#extend-15").await,
        "no time left before 09:00"
    );
    // The same request as the panel's page sends it: its token, its header.
    let refused = send(
        h.api().anonymous().bearer(&h.panel_tokens["r1"]),
        Request::new("POST", "/panel/r1/extend?lang=en")
            .header("X-Roomgate-Panel", "1")
            .json(&json!({ "minutes": 15 })),
    )
    .await;
    assert_eq!(refused.status, 409, "{}", refused.text);
    assert_eq!(refused.body["message"], "The meeting cannot be extended");
    assert!(
        refused.body["detail"]
            .as_str()
            .is_some_and(|d| !d.is_empty()),
        "the engine's reason comes along: {}",
        refused.text
    );
    // End now asks first, then frees the room.
    page.click("#end").await.expect("end");
    assert!(visible(&page, "#confirm").await, "ending asks to confirm");
    tap(&page, "#confirm-ok", "Meeting ended").await;
    wait_state(&page, "free").await;

    // 08:45: the next meeting is soon; the panel turns yellow live and offers check-in.
    h.advance_to("08:45").await;
    wait_state(&page, "starting_soon").await;
    wait_text(&page, "#state", "Starting soon").await;
    assert!(visible(&page, "#checkin").await, "check-in window is open");
    tap(&page, "#checkin", "Checked in").await;
    h.advance_to("09:00").await;
    wait_state(&page, "in_meeting").await;
    wait_text(&page, "#current-subject", "Quarterly review").await;
    wait_text(&page, "#current-note", "Checked in").await;
    page.screenshot(&shots.join("panel-in-meeting.png"))
        .await
        .expect("screenshot");

    // The language switch: every label in Chinese, remembered by the tablet.
    page.click_and_wait("#lang-zh-CN").await.expect("switch");
    wait_text(&page, "#state", "会议中").await;
    wait_text(&page, "#headline", "使用至 10:00").await;
    wait_text(&page, "#end", "结束会议").await;
    wait_contains(&page, "#extend .caption", "延长").await;
    wait_text(&page, "#current-note", "已签到").await;
    wait_contains(&page, "#current-organizer", "预订人").await;
    page.screenshot(&shots.join("panel-zh-CN.png"))
        .await
        .expect("screenshot");
    page.goto(&h.url("/panel/r1")).await.expect("reload");
    wait_text(&page, "#state", "会议中").await;
    // The same panel on a tablet mounted upright.
    let upright = browser.page(800, 1280).await.expect("a portrait tablet");
    upright.goto(&h.url("/panel/r1")).await.expect("portrait");
    wait_text(&upright, "#state", "会议中").await;
    upright
        .screenshot(&shots.join("panel-portrait-zh-CN.png"))
        .await
        .expect("screenshot");

    // A PIN room: a wrong PIN is refused, the booking's PIN checks in.
    page.goto(&h.panel_link("r2", "en")).await.expect("r2");
    wait_text(&page, "#current-subject", "Design sync").await;
    wait_text(&page, "#current-note", "Check in by 09:10").await;
    page.click("#checkin").await.expect("check in");
    assert!(visible(&page, "#pin").await, "the PIN pad opens");
    let wrong = if pin == "0000" { "1111" } else { "0000" };
    for d in wrong.chars() {
        page.click(&format!("#pin [data-key='{d}']"))
            .await
            .expect("digit");
    }
    tap(&page, "#pin-ok", "Wrong PIN").await;
    page.click("#checkin").await.expect("check in");
    for d in pin.chars() {
        page.click(&format!("#pin [data-key='{d}']"))
            .await
            .expect("digit");
    }
    tap(&page, "#pin-ok", "Checked in").await;
    wait_text(&page, "#current-note", "Checked in").await;

    // The lobby display: every room at once, live.
    let lobby = browser.page(1920, 1080).await.expect("a lobby screen");
    lobby
        .goto(&h.display_link("en"))
        .await
        .expect("display loads");
    let rooms = lobby
        .eval("[...document.querySelectorAll('.card')].map(c => c.dataset.room + ':' + c.dataset.state).join(' ')")
        .await
        .expect("cards");
    assert_eq!(
        rooms,
        json!("r1:in_meeting r2:in_meeting h1:free r3:closed"),
        "every room of the floor, in the site's order"
    );
    wait_text(&lobby, "#summary", "1 of 4 rooms free").await;
    lobby
        .screenshot(&shots.join("display.png"))
        .await
        .expect("screenshot");
    let ended = http(h.api(), "POST", "/api/rooms/r1/end", None).await;
    assert_eq!(ended.status, 200, "{}", ended.text);
    lobby
        .wait_until(
            "document.querySelector('.card[data-room=r1]').dataset.state === 'free'",
            WAIT,
        )
        .await
        .expect("the display follows the room live");
    wait_text(&lobby, "#summary", "2 of 4 rooms free").await;

    // A gateway restart under an open panel: it finds the gateway again by itself.
    page.goto(&h.panel_link("r1", "en")).await.expect("r1");
    wait_state(&page, "free").await;
    page.eval("window.notReloaded = true").await.expect("mark");
    h.restart().await;
    h.book("r1", "09:30", "10:30", "After the restart").await;
    h.advance_to("09:20").await;
    wait_state(&page, "starting_soon").await;
    wait_text(&page, "#next-subject", "After the restart").await;
    wait_text(&page, "#conn", "").await;
    assert_eq!(
        page.eval("window.notReloaded === true")
            .await
            .expect("eval"),
        json!(true),
        "the panel recovered without a reload"
    );

    // An unknown room is a clear 404 in the page's language.
    let missing = http(h.api(), "GET", "/panel/nope/state?lang=zh-CN", None).await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.body["error"], "本层没有会议室“nope”");

    browser.close().await;
    if let Some(running) = h.running.take() {
        running.shutdown().await;
    }
}
