//! The console's security, proven against a real gateway serving HTTPS on a port the system
//! chose (its generated certificate trusted, and nothing else): every route refuses a caller
//! without credentials; door panels and the display take their own tokens only; a session's
//! state changes need its CSRF token and the same origin; roles and token scopes decide; the
//! login limiter locks and unlocks on the gateway's clock; sessions end at logout, after 2 h
//! idle and after 12 h; the plain-HTTP listener only redirects; the audit log says who did what
//! from where; the setup code works once, from a file only the gateway's user reads.

use std::net::SocketAddr;
use std::path::PathBuf;

use gateway::app::{Running, WebConfig};
use gateway::clock::{Clock, ManualClock};
use gateway::console::auth::{AuthConfig, Caller, Role, Scope};
use roomgate_tests::{Api, Request, Response, http, send};
use scenes::{Span, Timestamp};
use serde_json::json;

/// 2026-03-02 08:00 UTC.
const T0: i64 = 1_772_409_600_000 + 8 * 3_600_000;
const NAME: &str = "ada";
const PASSWORD: &str = "correct horse battery";
const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;

const SITE: &str = r#"
[site]
name = "Security lab"
timezone = "UTC"

[[rooms]]
id = "r1"
name = "Boardroom"
kind = "bookable"

[[rooms]]
id = "r2"
name = "Focus room"
kind = "bookable"
"#;

/// Every private route of the gateway's web side (http.rs, panel/mod.rs, console/mod.rs), with
/// the method it answers.
const PRIVATE: &[(&str, &str)] = &[
    ("GET", "/"),
    ("GET", "/api/floor"),
    ("GET", "/api/rooms"),
    ("GET", "/api/rooms/r1"),
    ("GET", "/api/devices"),
    ("GET", "/api/buses"),
    ("POST", "/api/rooms/r1/bookings"),
    ("DELETE", "/api/rooms/r1/bookings/b1"),
    ("POST", "/api/rooms/r1/checkin"),
    ("POST", "/api/rooms/r1/end"),
    ("POST", "/api/rooms/r1/extend"),
    ("POST", "/api/rooms/r1/credential"),
    ("POST", "/api/rooms/r1/scenes/presentation"),
    ("GET", "/api/site"),
    ("POST", "/api/site"),
    ("GET", "/api/backup"),
    ("POST", "/api/restore"),
    ("GET", "/api/log-level"),
    ("PUT", "/api/log-level"),
    ("GET", "/metrics"),
    ("POST", "/logout"),
    ("GET", "/panel/r1"),
    ("GET", "/panel/r1/state"),
    ("GET", "/panel/r1/events"),
    ("POST", "/panel/r1/checkin"),
    ("POST", "/panel/r1/walkin"),
    ("GET", "/display"),
    ("GET", "/display/state"),
    ("GET", "/display/events"),
    ("GET", "/api/events"),
];

/// A gateway from a site file, HTTPS on 127.0.0.1:0, a manual clock, cheap password hashes.
struct Gw {
    running: Running,
    clock: ManualClock,
    data: PathBuf,
    site: PathBuf,
    /// HTTPS trusting only this gateway's certificate, no credentials.
    anon: Api,
    _dir: tempfile::TempDir,
}

/// A signed-in browser: its session cookie and the session's CSRF token.
#[derive(Debug, Clone)]
struct Session {
    cookie: String,
    csrf: String,
}

impl Gw {
    async fn start() -> Gw {
        Gw::start_with(|web| web).await
    }

    async fn start_with(web: impl FnOnce(WebConfig) -> WebConfig) -> Gw {
        let dir = tempfile::tempdir().expect("temp dir");
        let site = dir.path().join("site.toml");
        std::fs::write(&site, SITE).expect("site file");
        let data = dir.path().join("data");
        let clock = ManualClock::new(Timestamp::from_millis(T0));
        let config = WebConfig {
            auth: AuthConfig {
                argon: Some(argon2::Params::new(1024, 1, 1, None).expect("argon2 params")),
                ..AuthConfig::default()
            },
            ..WebConfig::https(SocketAddr::from(([127, 0, 0, 1], 0)))
        };
        let running =
            gateway::app::start_from_file(&site, &data, web(config), Clock::Manual(clock.clone()))
                .await
                .expect("gateway starts");
        assert!(running.https(), "the console serves HTTPS");
        let anon = Api::of(&running);
        Gw {
            running,
            clock,
            data,
            site,
            anon,
            _dir: dir,
        }
    }

    fn token(&self, label: &str, scope: Scope) -> String {
        self.running.issue_token(label, scope).expect("token")
    }

    fn bearer(&self, label: &str, scope: Scope) -> Api {
        self.anon.clone().bearer(self.token(label, scope))
    }

    fn advance(&self, ms: i64) {
        self.clock.set(self.clock.now() + Span::from_millis(ms));
    }

    fn now_ms(&self) -> i64 {
        self.clock.now().as_millis()
    }

    fn setup_code(&self) -> String {
        std::fs::read_to_string(self.data.join("setup-code"))
            .expect("the setup code file")
            .trim()
            .to_owned()
    }

    async fn setup(&self, code: &str) -> Response {
        send(
            &self.anon,
            Request::new("POST", "/setup").form(&[
                ("code", code),
                ("name", NAME),
                ("password", PASSWORD),
                ("repeat", PASSWORD),
            ]),
        )
        .await
    }

    async fn login(&self, name: &str, password: &str) -> Response {
        send(
            &self.anon,
            Request::new("POST", "/login").form(&[
                ("name", name),
                ("password", password),
                ("next", "/"),
            ]),
        )
        .await
    }

    /// The session a login or setup answer opened, with its CSRF token (which the console's
    /// pages carry in `<meta name="csrf">`; read here from the gateway's accounts).
    fn session(&self, answer: &Response) -> Session {
        let cookie = answer
            .cookie_value("rg_session")
            .unwrap_or_else(|| panic!("a session cookie: {answer:?}"))
            .to_owned();
        let caller = self
            .running
            .console
            .accounts
            .session(self.now_ms(), &cookie)
            .expect("sessions")
            .expect("a live session");
        let Caller::Session { csrf, .. } = caller else {
            panic!("a session caller");
        };
        Session { cookie, csrf }
    }

    /// The installer account made through `/setup`, signed in.
    async fn installer_session(&self) -> Session {
        let r = self.setup(&self.setup_code()).await;
        assert_eq!(r.status, 303, "{}", r.text);
        self.session(&r)
    }

    fn origin(&self) -> String {
        format!("https://{}", self.running.addr)
    }

    /// The room's current and next booking ids, as the API shows them.
    async fn bookings(&self, room: &str) -> (Option<String>, Option<String>) {
        let api = self.bearer(
            "bookings check",
            Scope::Api {
                role: Role::Operator,
            },
        );
        let r = http(&api, "GET", &format!("/api/rooms/{room}"), None).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let id = |k: &str| r.body[k]["id"].as_str().map(str::to_owned);
        (id("current"), id("next"))
    }
}

/// `req` as the browser with `s` sends it (the cookie; the CSRF header when `csrf`).
fn as_browser(req: Request, s: &Session, csrf: bool) -> Request {
    let req = req.header("Cookie", format!("rg_session={}", s.cookie));
    if csrf {
        req.header("X-CSRF-Token", &s.csrf)
    } else {
        req
    }
}

fn booking() -> serde_json::Value {
    json!({ "minutes": 30, "subject": "Walk-in" })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_refuses_a_caller_without_credentials() {
    let gw = Gw::start().await;
    for (method, path) in PRIVATE {
        let r = send(
            &gw.anon,
            Request::new(method, path).json(&json!({ "minutes": 30 })),
        )
        .await;
        assert_eq!(r.status, 401, "{method} {path}: {}", r.text);
        if !path.starts_with("/panel") && !path.contains("display") && *path != "/api/events" {
            assert_eq!(
                r.header("www-authenticate"),
                Some("Bearer realm=\"roomgate\""),
                "{method} {path}"
            );
        }
        // Any other method on the same path is refused too (not found is no answer here:
        // the path exists).
        for other in ["GET", "POST", "PUT", "DELETE"] {
            let r = http(&gw.anon, other, path, None).await;
            assert!(
                r.status == 401 || r.status == 405,
                "{other} {path}: {} {}",
                r.status,
                r.text
            );
        }
        // A garbage bearer is no credential.
        let r = http(
            gw.anon.clone().bearer("not-a-token"),
            method,
            path,
            Some(&json!({ "minutes": 30 })),
        )
        .await;
        assert_eq!(r.status, 401, "{method} {path} with a garbage bearer");
    }
    let counts = gw.running.console.accounts.counts();
    assert!(counts.unauthenticated >= PRIVATE.len() as u64);

    // A browser asking for a page is sent to the setup page while there is no account.
    let r = send(
        &gw.anon,
        Request::new("GET", "/").header("Accept", "text/html"),
    )
    .await;
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/setup"));
    let r = send(
        &gw.anon,
        Request::new("GET", "/login").header("Accept", "text/html"),
    )
    .await;
    assert_eq!((r.status, r.header("location")), (303, Some("/setup")));

    // Public: health, the setup page, the console's assets.
    for path in [
        "/healthz",
        "/setup",
        "/assets/console.css",
        "/assets/console.js",
    ] {
        let r = http(&gw.anon, "GET", path, None).await;
        assert_eq!(r.status, 200, "GET {path}");
    }
    assert_eq!(
        http(&gw.anon, "GET", "/healthz", None).await.body["status"],
        "ok"
    );

    // Door panels: the room's own token opens it (in the link, then as the cookie the page
    // set); another room's token, the display's, a metrics token or garbage do not.
    let r1 = gw.token("panel r1", Scope::Panel { room: "r1".into() });
    let r2 = gw.token("panel r2", Scope::Panel { room: "r2".into() });
    let display = gw.token("lobby", Scope::Display);
    let metrics = gw.token("prometheus", Scope::Metrics);
    let page = http(&gw.anon, "GET", &format!("/panel/r1?token={r1}"), None).await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(page.text.contains("Boardroom"));
    let cookie = page.set_cookie("rg_panel").expect("the panel's cookie");
    for attr in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/panel/r1;"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    let r = send(
        &gw.anon,
        Request::new("GET", "/panel/r1/state").header("Cookie", format!("rg_panel={r1}")),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    for wrong in [&r2, &display, &metrics, &"0".repeat(64), &"zzz".to_owned()] {
        for path in ["/panel/r1", "/panel/r1/state"] {
            let r = http(&gw.anon, "GET", &format!("{path}?token={wrong}"), None).await;
            assert_eq!(r.status, 401, "{path} with token {wrong}");
            assert!(r.set_cookie("rg_panel").is_none());
            let r = send(
                &gw.anon,
                Request::new("GET", path).header("Cookie", format!("rg_panel={wrong}")),
            )
            .await;
            assert_eq!(r.status, 401, "{path} with cookie {wrong}");
            let r = http(gw.anon.clone().bearer(wrong.as_str()), "GET", path, None).await;
            assert_eq!(r.status, 401, "{path} with bearer {wrong}");
        }
    }
    // The lobby display: its token; not a panel's or the metrics token.
    let r = http(
        &gw.anon,
        "GET",
        &format!("/display/state?token={display}"),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = http(&gw.anon, "GET", &format!("/display?token={display}"), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let cookie = r.set_cookie("rg_panel").expect("the display's cookie");
    assert!(cookie.contains("Path=/display;"), "{cookie}");
    for wrong in [&r1, &metrics] {
        let r = http(&gw.anon, "GET", &format!("/display?token={wrong}"), None).await;
        assert_eq!(r.status, 401);
        let r = http(
            gw.anon.clone().bearer(wrong.as_str()),
            "GET",
            "/api/events",
            None,
        )
        .await;
        assert_eq!(r.status, 401);
    }

    // A revoked token opens nothing any more.
    let id = gw
        .running
        .console
        .accounts
        .tokens()
        .expect("tokens")
        .into_iter()
        .find(|t| t.label == "panel r1")
        .expect("listed")
        .id;
    let installer = Caller::Token {
        id: id.clone(),
        label: "tests".into(),
        scope: Scope::Api {
            role: Role::Installer,
        },
    };
    gw.running
        .console
        .accounts
        .revoke_token(gw.now_ms(), &installer, "127.0.0.1", &id)
        .expect("revoke");
    let r = http(
        &gw.anon,
        "GET",
        &format!("/panel/r1/state?token={r1}"),
        None,
    )
    .await;
    assert_eq!(r.status, 401, "revoked");
    gw.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_setup_code_works_once_and_opens_a_session() {
    let gw = Gw::start().await;
    use std::os::unix::fs::PermissionsExt as _;
    let code_file = gw.data.join("setup-code");
    let mode = std::fs::metadata(&code_file)
        .expect("setup code file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "only the gateway's user reads it");
    let code = gw.setup_code();

    // A wrong code: 401, no account, the code still waits.
    let r = gw.setup("AAAA-BBBB-CCCC").await;
    assert_eq!(r.status, 401, "{}", r.text);
    assert!(r.set_cookie("rg_session").is_none());
    assert!(
        gw.running
            .console
            .accounts
            .accounts()
            .expect("accounts")
            .is_empty()
    );
    assert!(code_file.exists() && gw.running.console.accounts.setup_pending());
    // From another site: refused before the code is even looked at.
    let r = send(
        &gw.anon,
        Request::new("POST", "/setup")
            .header("Origin", "https://evil.example")
            .form(&[
                ("code", &code),
                ("name", "eve"),
                ("password", PASSWORD),
                ("repeat", PASSWORD),
            ]),
    )
    .await;
    assert_eq!(r.status, 403);
    assert!(
        gw.running
            .console
            .accounts
            .accounts()
            .expect("accounts")
            .is_empty()
    );

    // The right code: the installer account, signed in, sent to the floor.
    let r = gw.setup(&code).await;
    assert_eq!(r.status, 303, "{}", r.text);
    assert_eq!(r.header("location"), Some("/"));
    let cookie = r
        .set_cookie("rg_session")
        .expect("session cookie")
        .to_owned();
    for attr in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    let s = gw.session(&r);
    let accounts = gw.running.console.accounts.accounts().expect("accounts");
    assert_eq!(accounts.len(), 1);
    assert_eq!(
        (accounts[0].name.as_str(), accounts[0].role),
        (NAME, Role::Installer)
    );
    let r = send(
        &gw.anon,
        as_browser(Request::new("GET", "/api/rooms"), &s, false),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);

    // Once: the file is gone, the page sends to the login, the code does nothing more.
    assert!(!code_file.exists(), "the setup code file is removed");
    let r = http(&gw.anon, "GET", "/setup", None).await;
    assert_eq!((r.status, r.header("location")), (303, Some("/login")));
    let r = send(
        &gw.anon,
        Request::new("POST", "/setup").form(&[
            ("code", &code),
            ("name", "eve"),
            ("password", PASSWORD),
            ("repeat", PASSWORD),
        ]),
    )
    .await;
    assert_eq!((r.status, r.header("location")), (303, Some("/login")));
    assert_eq!(gw.running.console.accounts.accounts().expect("a").len(), 1);
    // A page without a session now goes to the login, coming back to it after.
    let r = send(
        &gw.anon,
        Request::new("GET", "/").header("Accept", "text/html"),
    )
    .await;
    assert_eq!(
        (r.status, r.header("location")),
        (303, Some("/login?next=/"))
    );
    gw.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_changes_state_only_with_its_csrf_token_from_this_origin() {
    let gw = Gw::start().await;
    gw.installer_session().await;
    let r = gw.login(NAME, PASSWORD).await;
    assert_eq!((r.status, r.header("location")), (303, Some("/")));
    let s = gw.session(&r);
    // Reading needs no CSRF token.
    let r = send(
        &gw.anon,
        as_browser(Request::new("GET", "/api/rooms"), &s, false),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    // HTTP/2 browsers send each cookie in its own field: the session is found among them.
    let r = send(
        &gw.anon,
        Request::new("GET", "/api/rooms")
            .header("Cookie", "lang=en")
            .header("Cookie", format!("rg_session={}", s.cookie)),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);

    // A booking without the token, with a wrong one, or from another site: 403, nothing booked.
    let post = || Request::new("POST", "/api/rooms/r1/bookings").json(&booking());
    let wrong = Session {
        csrf: "0".repeat(64),
        ..s.clone()
    };
    let refused = [
        as_browser(post(), &s, false),
        as_browser(post(), &wrong, true),
        as_browser(post(), &s, true).header("Origin", "https://evil.example"),
        as_browser(post(), &s, true).header("Origin", "null"),
        as_browser(post(), &s, true).header("Sec-Fetch-Site", "cross-site"),
    ];
    let n = refused.len() as u64;
    for req in refused {
        let what = format!("{:?}", req.headers);
        let r = send(&gw.anon, req).await;
        assert_eq!(r.status, 403, "{what}: {}", r.text);
    }
    assert_eq!(gw.running.console.accounts.counts().csrf_refused, n);
    assert_eq!(gw.bookings("r1").await, (None, None), "nothing was booked");
    // Logout is a state change too.
    let r = send(
        &gw.anon,
        as_browser(Request::new("POST", "/logout"), &s, false),
    )
    .await;
    assert_eq!(r.status, 403);

    // With the session's token from this origin: booked.
    let r = send(
        &gw.anon,
        as_browser(post(), &s, true).header("Origin", gw.origin()),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let booked = r.body["id"].as_str().expect("booking id").to_owned();
    assert_eq!(gw.bookings("r1").await.0, Some(booked));

    // A door panel's actions need the panel page's header, whoever sends them.
    let panel = gw.bearer("panel r2", Scope::Panel { room: "r2".into() });
    let walk_in =
        || Request::new("POST", "/panel/r2/walkin?lang=en").json(&json!({ "minutes": 15 }));
    let r = send(&panel, walk_in()).await;
    assert_eq!(r.status, 403, "{}", r.text);
    let r = send(
        &panel,
        walk_in()
            .header("X-Roomgate-Panel", "1")
            .header("Origin", "https://evil.example"),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.text);
    let r = send(&gw.anon, as_browser(walk_in(), &s, false)).await;
    assert_eq!(r.status, 403, "a session without the header or its token");
    assert_eq!(gw.bookings("r2").await, (None, None), "nothing was booked");
    let r = send(&panel, walk_in().header("X-Roomgate-Panel", "1")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(gw.bookings("r2").await.0.is_some(), "the walk-in is booked");

    // A login from another site, or to a page on another host after it, goes nowhere.
    let r = send(
        &gw.anon,
        Request::new("POST", "/login")
            .header("Origin", "https://evil.example")
            .form(&[("name", NAME), ("password", PASSWORD)]),
    )
    .await;
    assert_eq!(r.status, 403);
    assert!(r.set_cookie("rg_session").is_none());
    let r = send(
        &gw.anon,
        Request::new("POST", "/login").form(&[
            ("name", NAME),
            ("password", PASSWORD),
            ("next", "//evil.example/"),
        ]),
    )
    .await;
    assert_eq!((r.status, r.header("location")), (303, Some("/")));
    gw.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_end_at_logout_after_two_idle_hours_and_after_twelve() {
    let gw = Gw::start().await;
    gw.installer_session().await;
    let rooms = |s: &Session| as_browser(Request::new("GET", "/api/rooms"), s, false);

    // Logout ends the session: the old cookie is refused afterwards.
    let s = gw.session(&gw.login(NAME, PASSWORD).await);
    let r = send(
        &gw.anon,
        as_browser(Request::new("POST", "/logout"), &s, true),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let cleared = r.set_cookie("rg_session").expect("the cookie is cleared");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    assert_eq!(send(&gw.anon, rooms(&s)).await.status, 401);

    // Two idle hours end a session; using it keeps it alive.
    let s = gw.session(&gw.login(NAME, PASSWORD).await);
    gw.advance(HOUR + 59 * MINUTE);
    assert_eq!(
        send(&gw.anon, rooms(&s)).await.status,
        200,
        "used after 1 h 59"
    );
    gw.advance(HOUR + 59 * MINUTE);
    assert_eq!(
        send(&gw.anon, rooms(&s)).await.status,
        200,
        "idle 1 h 59 again"
    );
    gw.advance(2 * HOUR + 1);
    assert_eq!(send(&gw.anon, rooms(&s)).await.status, 401, "idle 2 h");

    // Used every hour, a session still ends 12 hours after the login.
    let s = gw.session(&gw.login(NAME, PASSWORD).await);
    for hour in 1..12 {
        gw.advance(HOUR);
        assert_eq!(send(&gw.anon, rooms(&s)).await.status, 200, "hour {hour}");
    }
    gw.advance(HOUR);
    assert_eq!(
        send(&gw.anon, rooms(&s)).await.status,
        401,
        "12 h after login"
    );
    gw.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_and_token_scopes_decide_what_a_caller_may_do() {
    let gw = Gw::start().await;
    let installer_session = gw.installer_session().await;
    let site = std::fs::read_to_string(&gw.site).expect("site");

    // An operator token reads and books, and touches nothing of the installer's.
    let operator = gw.bearer(
        "front desk",
        Scope::Api {
            role: Role::Operator,
        },
    );
    assert_eq!(http(&operator, "GET", "/api/rooms", None).await.status, 200);
    assert_eq!(
        http(
            &operator,
            "POST",
            "/api/rooms/r1/bookings",
            Some(&booking())
        )
        .await
        .status,
        201
    );
    let installer_only = [
        Request::new("GET", "/api/site"),
        Request::new("POST", "/api/site").body("application/toml", site.clone().into_bytes()),
        Request::new("GET", "/api/backup"),
        Request::new("POST", "/api/restore?verify_only=1").body("application/gzip", vec![0; 16]),
        Request::new("GET", "/api/log-level"),
        Request::new("PUT", "/api/log-level").json(&json!({ "filter": "debug" })),
    ];
    for req in &installer_only {
        let r = send(&operator, req.clone()).await;
        assert_eq!(r.status, 403, "{} {}: {}", req.method, req.path, r.text);
    }
    assert_eq!(http(&operator, "GET", "/metrics", None).await.status, 200);

    // An operator account's session: the same.
    let ada = Caller::Session {
        user: NAME.into(),
        role: Role::Installer,
        csrf: installer_session.csrf.clone(),
    };
    gw.running
        .console
        .accounts
        .add_account(
            gw.now_ms(),
            &ada,
            "127.0.0.1",
            "olga",
            Role::Operator,
            "another long phrase",
            "another long phrase",
        )
        .expect("operator account");
    let olga = gw.session(&gw.login("olga", "another long phrase").await);
    let r = send(
        &gw.anon,
        as_browser(Request::new("GET", "/api/rooms"), &olga, false),
    )
    .await;
    assert_eq!(r.status, 200);
    for req in &installer_only {
        let r = send(
            &gw.anon,
            as_browser(req.clone(), &olga, true).header("Origin", gw.origin()),
        )
        .await;
        assert_eq!(
            r.status, 403,
            "olga: {} {}: {}",
            req.method, req.path, r.text
        );
    }

    // The installer may: the site file and a backup.
    let installer = gw.bearer(
        "installer tool",
        Scope::Api {
            role: Role::Installer,
        },
    );
    let r = http(&installer, "GET", "/api/site", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.text.contains("Security lab"));
    let r = http(&installer, "GET", "/api/backup", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("content-type"), Some("application/gzip"));
    assert!(r.bytes.starts_with(&[0x1f, 0x8b]), "a gzip archive");

    // A metrics token scrapes and does nothing else.
    let metrics = gw.bearer("prometheus", Scope::Metrics);
    let r = http(&metrics, "GET", "/metrics", None).await;
    assert_eq!(r.status, 200);
    assert!(r.text.contains("roomgate_"), "{}", r.text);
    for path in ["/api/rooms", "/api/floor", "/"] {
        let status = http(&metrics, "GET", path, None).await.status;
        assert!(
            status == 401 || status == 403,
            "metrics token on {path}: {status}"
        );
    }
    assert_eq!(
        http(&metrics, "GET", "/display/state", None).await.status,
        401
    );

    // Panel and display tokens are for their pages only.
    let panel = gw.bearer("panel r1", Scope::Panel { room: "r1".into() });
    let display = gw.bearer("lobby", Scope::Display);
    for api in [&panel, &display] {
        for (method, path) in [
            ("GET", "/api/rooms"),
            ("POST", "/api/rooms/r2/bookings"),
            ("GET", "/metrics"),
            ("GET", "/api/site"),
        ] {
            let status = http(api, method, path, Some(&booking())).await.status;
            assert!(status == 401 || status == 403, "{method} {path}: {status}");
        }
    }
    assert_eq!(
        http(&panel, "GET", "/panel/r1/state", None).await.status,
        200
    );
    assert_eq!(
        http(&display, "GET", "/display/state", None).await.status,
        200
    );
    assert_eq!(gw.bookings("r2").await, (None, None));
    gw.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_login_limiter_locks_after_five_failures_and_unlocks_on_the_clock() {
    let gw = Gw::start().await;
    gw.installer_session().await;
    for i in 1..=5 {
        let r = gw.login(NAME, "wrong password number").await;
        assert_eq!(r.status, 401, "failure {i}: {}", r.text);
        assert!(r.set_cookie("rg_session").is_none());
    }
    // The sixth attempt, even with the right password: locked for a minute.
    let r = gw.login(NAME, PASSWORD).await;
    assert_eq!(r.status, 429, "{}", r.text);
    assert_eq!(r.header("retry-after"), Some("60"));
    assert!(r.set_cookie("rg_session").is_none());
    gw.advance(59 * 1000);
    assert_eq!(gw.login(NAME, PASSWORD).await.status, 429, "still locked");
    let counts = gw.running.console.accounts.counts();
    assert_eq!(
        (counts.failures, counts.lockouts, counts.refused_locked),
        (5, 1, 2)
    );
    gw.advance(2 * 1000);
    let r = gw.login(NAME, PASSWORD).await;
    assert_eq!(r.status, 303, "unlocked after the minute: {}", r.text);
    gw.session(&r);
    gw.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plain_listener_only_redirects_to_https() {
    let gw = Gw::start_with(|web| WebConfig {
        redirect: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        ..web
    })
    .await;
    let plain = Api::plain(gw.running.redirect_addr.expect("the redirect listener"));
    let port = gw.running.addr.port();
    let r = http(&plain, "GET", "/rooms?lang=en", None).await;
    assert_eq!(r.status, 308);
    assert_eq!(
        r.header("location"),
        Some(format!("https://127.0.0.1:{port}/rooms?lang=en").as_str())
    );
    for (host, to) in [
        (
            "gw.example:80",
            format!("https://gw.example:{port}/api/rooms"),
        ),
        (
            "[fe80::1]:80",
            format!("https://[fe80::1]:{port}/api/rooms"),
        ),
        ("gw.example", format!("https://gw.example:{port}/api/rooms")),
    ] {
        let r = send(
            plain.clone().bearer("0".repeat(64)),
            Request::new("POST", "/api/rooms")
                .header("Host", host)
                .json(&booking()),
        )
        .await;
        assert_eq!(
            (r.status, r.header("location")),
            (308, Some(to.as_str())),
            "{host}"
        );
    }
    let r = http(&plain, "GET", "/healthz", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["status"], "ok");
    // Nothing private is served in the clear.
    let installer = gw.token(
        "installer tool",
        Scope::Api {
            role: Role::Installer,
        },
    );
    let r = http(plain.clone().bearer(installer), "GET", "/api/site", None).await;
    assert_eq!(r.status, 308);
    assert!(!r.text.contains("Security lab"));
    gw.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_says_who_did_what_from_where() {
    let gw = Gw::start().await;
    gw.installer_session().await;
    let installer = gw.bearer(
        "installer tool",
        Scope::Api {
            role: Role::Installer,
        },
    );
    let site = std::fs::read_to_string(&gw.site)
        .expect("site")
        .replace("Focus room", "Quiet room");
    let r = send(
        &installer,
        Request::new("POST", "/api/site").body("application/toml", site.into_bytes()),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(gw.login(NAME, "not the password").await.status, 401);
    assert_eq!(gw.login("mallory", "not the password").await.status, 401);

    let log = gw
        .running
        .console
        .accounts
        .audit_log(0, 100)
        .expect("audit log");
    let find = |action: &str, who: &str| {
        log.iter()
            .find(|r| r.action == action && r.who == who)
            .unwrap_or_else(|| panic!("no {action} by {who} in {log:#?}"))
    };
    let setup = find("setup.done", "setup");
    assert_eq!(
        (setup.from.as_str(), setup.target.as_str()),
        ("127.0.0.1", NAME)
    );
    let made = find("token.create", "gateway");
    assert!(
        log.iter().any(|r| r.action == "token.create"
            && r.detail.contains("installer tool")
            && r.detail.contains("API (installer)")),
        "{log:#?}"
    );
    assert!(made.at_ms >= T0);
    let change = find("site.change", "token:installer tool");
    assert_eq!(change.from, "127.0.0.1");
    assert!(change.detail.contains("Quiet room"), "{}", change.detail);
    for who in [NAME, "mallory"] {
        let failed = find("login.failed", who);
        assert_eq!(failed.from, "127.0.0.1");
    }
    gw.running.shutdown().await;
}
