//! The installer's web console and the gate in front of every route of the gateway's web side.
//!
//! - [`auth`]: accounts, roles, the setup code, sessions, tokens, the limiter, the audit log.
//! - [`tls`]: the HTTPS certificate (generated on first start, replaceable by an upload).
//! - [`gate`]: the one filter every private route passes: it finds the caller (session cookie
//!   or bearer token), answers 401 (API) or a redirect to the login page (pages) when there is
//!   none, and for a state change by a session requires the session's CSRF token in the
//!   `X-CSRF-Token` header and a same-origin request. Role checks follow in each route with
//!   [`require`].
//! - The login, setup and logout pages live here; the console's pages in the sibling modules,
//!   all rendered with [`layout`].
//!
//! Public without a caller: `/healthz`, `/login`, `/setup`, `/assets/*` (the console's CSS and
//! JS), and the door panels and display, which check their own tokens (`panel`).

pub mod audit_page;
pub mod auth;
pub mod devices;
pub mod discovery;
pub mod rooms;
pub mod scenes;
pub mod settings;
pub mod site_page;
pub mod tls;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use warp::http::{StatusCode, header};
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use crate::clock::Clock;
use crate::i18n::{Lang, Texts, catalog};
use auth::{Accounts, Caller, LoginOutcome, Role, SESSION_COOKIE, SESSION_LIFETIME_MS};

const CONSOLE_CSS: &str = include_str!("assets/console.css");
const CONSOLE_JS: &str = include_str!("assets/console.js");

/// What every console route shares.
#[derive(Debug)]
pub struct Console {
    pub accounts: Accounts,
    /// The HTTPS certificate (`None` when serving plain HTTP behind a proxy or in tests).
    pub cert: Option<tls::ConsoleCert>,
    /// The gateway's clock (sessions, the limiter and the audit log use it).
    pub clock: Clock,
}

impl Console {
    pub fn now_ms(&self) -> i64 {
        self.clock.now().as_millis()
    }

    /// Writes an audit record for `caller`.
    pub fn audit(&self, caller: &Caller, from: &str, action: &str, target: &str, detail: &str) {
        self.accounts
            .audit(self.now_ms(), &caller.who(), from, action, target, detail);
    }
}

/// A request refused by the gate: 401 (no caller) or 403 (wrong role, CSRF, origin).
#[derive(Debug)]
pub struct Denied {
    pub status: StatusCode,
    pub reason: String,
    /// Where a browser asking for a page is sent instead (the login page).
    pub redirect: Option<String>,
}

impl warp::reject::Reject for Denied {}

impl Denied {
    pub fn into_response(&self) -> Response {
        if let Some(to) = &self.redirect {
            return redirect(to, None);
        }
        let body = serde_json::json!({ "error": self.reason });
        let mut r = warp::reply::with_status(warp::reply::json(&body), self.status).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            set_header(
                &mut r,
                header::WWW_AUTHENTICATE,
                "Bearer realm=\"roomgate\"",
            );
        }
        r
    }
}

/// What the gate reads of a request.
#[derive(Debug, Clone, Default)]
pub struct RequestInfo {
    pub method: String,
    pub path: String,
    pub query: String,
    pub cookie: Option<String>,
    pub authorization: Option<String>,
    pub csrf: Option<String>,
    pub origin: Option<String>,
    pub host: Option<String>,
    pub fetch_site: Option<String>,
    pub accept: Option<String>,
    /// `X-Roomgate-Panel: 1` (sent by the door panel's page on every action).
    pub headers_panel: bool,
    pub peer: Option<SocketAddr>,
}

impl RequestInfo {
    /// The client's address as the audit log and the limiter name it.
    pub fn from(&self) -> String {
        self.peer.map(|p| p.ip().to_string()).unwrap_or_default()
    }

    fn wants_page(&self) -> bool {
        self.method == "GET"
            && !self.path.starts_with("/api/")
            && self
                .accept
                .as_deref()
                .is_some_and(|a| a.contains("text/html"))
    }

    fn unsafe_method(&self) -> bool {
        !matches!(self.method.as_str(), "GET" | "HEAD" | "OPTIONS")
    }

    /// A request another site made the browser send (`Sec-Fetch-Site`, or an `Origin` that is
    /// not this host).
    pub fn cross_site(&self) -> bool {
        if self
            .fetch_site
            .as_deref()
            .is_some_and(|s| s == "cross-site" || s == "same-site")
        {
            return true;
        }
        match (&self.origin, &self.host) {
            (Some(origin), Some(host)) if origin != "null" => {
                let origin_host = origin.split_once("://").map_or(origin.as_str(), |(_, h)| h);
                origin_host != host
            }
            (Some(_), _) => true,
            (None, _) => false,
        }
    }

    /// The bearer token of an `Authorization` header.
    pub fn bearer(&self) -> Option<&str> {
        self.authorization
            .as_deref()
            .and_then(|a| {
                a.strip_prefix("Bearer ")
                    .or_else(|| a.strip_prefix("bearer "))
            })
            .map(str::trim)
    }
}

/// Reads what the gate needs of the request.
pub fn request_info() -> impl Filter<Extract = (RequestInfo,), Error = Infallible> + Clone {
    warp::method()
        .and(warp::path::full())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::header::headers_cloned())
        .and(cloud_sync::webkit::serve::cookies())
        .and(cloud_sync::webkit::serve::host())
        .and(cloud_sync::webkit::serve::peer_addr())
        .map(
            |method: warp::http::Method,
             path: warp::path::FullPath,
             query: String,
             headers: warp::http::HeaderMap,
             cookie: Option<String>,
             host: Option<String>,
             peer: Option<SocketAddr>| {
                let get = |name: &str| {
                    headers
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                };
                RequestInfo {
                    method: method.as_str().to_owned(),
                    path: path.as_str().to_owned(),
                    query,
                    cookie,
                    authorization: get("authorization"),
                    csrf: get("x-csrf-token"),
                    origin: get("origin"),
                    host,
                    fetch_site: get("sec-fetch-site"),
                    accept: get("accept"),
                    headers_panel: get("x-roomgate-panel").as_deref() == Some("1"),
                    peer,
                }
            },
        )
}

/// The caller of a request, if any: a bearer token, else the session cookie.
pub fn find_caller(c: &Console, req: &RequestInfo) -> Option<Caller> {
    if let Some(token) = req.bearer() {
        return match c.accounts.token(token) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!("reading tokens: {e}");
                None
            }
        };
    }
    let value = cloud_sync::webkit::auth::cookie_value(req.cookie.as_deref(), SESSION_COOKIE)?;
    match c.accounts.session(c.now_ms(), value) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("reading sessions: {e}");
            None
        }
    }
}

/// The gate of every private route: the caller, or a rejection (see the module docs).
pub fn gate(
    c: Arc<Console>,
) -> impl Filter<Extract = (Caller, RequestInfo), Error = Rejection> + Clone {
    request_info()
        .and(warp::any().map(move || c.clone()))
        .and_then(|req: RequestInfo, c: Arc<Console>| async move {
            let Some(caller) = find_caller(&c, &req) else {
                c.accounts.note_unauthenticated();
                let redirect = req.wants_page().then(|| {
                    if c.accounts.setup_pending() {
                        "/setup".to_owned()
                    } else {
                        format!("/login?next={}", encode_component(&req.path))
                    }
                });
                return Err(warp::reject::custom(Denied {
                    status: StatusCode::UNAUTHORIZED,
                    reason: "sign in first (a session, or an API token as a bearer)".into(),
                    redirect,
                }));
            };
            if req.unsafe_method()
                && let Caller::Session { csrf, .. } = &caller
            {
                {
                    let ok = req
                        .csrf
                        .as_deref()
                        .is_some_and(|t| cloud_sync::webkit::auth::constant_time_eq(t, csrf));
                    if !ok || req.cross_site() {
                        c.accounts.note_csrf_refused();
                        return Err(warp::reject::custom(Denied {
                            status: StatusCode::FORBIDDEN,
                            reason: "refused: the request lacks this session's CSRF token or \
                                     comes from another site; reload the page"
                                .into(),
                            redirect: None,
                        }));
                    }
                }
            }
            Ok((caller, req))
        })
        .untuple_one()
}

pub fn set_header(r: &mut Response, name: header::HeaderName, value: &str) {
    if let Ok(v) = header::HeaderValue::from_str(value) {
        r.headers_mut().append(name, v);
    }
}

/// A 303 to `to`, optionally setting a cookie.
pub fn redirect(to: &str, cookie: Option<&str>) -> Response {
    let mut r = warp::reply::with_status(warp::reply(), StatusCode::SEE_OTHER).into_response();
    set_header(&mut r, header::LOCATION, to);
    if let Some(c) = cookie {
        set_header(&mut r, header::SET_COOKIE, c);
    }
    r
}

/// The session cookie for a new session.
pub fn session_cookie(value: &str) -> String {
    format!(
        "{SESSION_COOKIE}={value}; HttpOnly; SameSite=Strict; Secure; Path=/; Max-Age={}",
        SESSION_LIFETIME_MS / 1000
    )
}

fn cleared_session_cookie() -> String {
    format!("{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Secure; Path=/; Max-Age=0")
}

/// Percent-encodes a URL component (for `next=`).
pub fn encode_component(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A safe place to go after login: a path on this host only.
fn safe_next(next: Option<&String>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.clone(),
        _ => "/".to_owned(),
    }
}

/// Escapes text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

catalog! {
    Ui;
    Console => "Installer console", "安装调试控制台";
    Floor => "Floor", "楼层";
    Rooms => "Rooms", "会议室";
    Devices => "Devices", "设备";
    Discovery => "Discovery", "设备发现";
    Scenes => "Scenes", "场景";
    SiteFile => "Site file", "站点文件";
    Settings => "Settings", "设置";
    Audit => "Audit log", "审计日志";
    SignIn => "Sign in", "登录";
    SignOut => "Sign out", "退出登录";
    UserName => "User name", "用户名";
    Password => "Password", "密码";
    RepeatPassword => "Repeat the password", "再次输入密码";
    WrongLogin => "Wrong user name or password.", "用户名或密码错误。";
    LockedFor => "Too many attempts. Try again in {seconds} s.", "尝试次数过多，请在 {seconds} 秒后重试。";
    SetupTitle => "First start: create the installer account", "首次启动：创建安装调试账户";
    SetupHelp => "Enter the setup code from the gateway's log or the file {path} (readable only on the gateway itself). It works once.", "请输入网关日志或文件 {path} 中的设置码（仅能在网关本机读取）。设置码仅可使用一次。";
    SetupCode => "Setup code", "设置码";
    CreateAccount => "Create the account and sign in", "创建账户并登录";
    PasswordRules => "At least 12 characters; not your user name.", "至少 12 个字符，且不能包含用户名。";
    SignedInAs => "Signed in as {user} ({role})", "当前用户 {user}（{role}）";
    RoleInstaller => "installer", "安装调试员";
    RoleOperator => "operator", "操作员";
    Language => "Language", "语言";
}

/// The console's page frame: header with navigation (by role), language switch, the body.
/// Pages are server-rendered; `console.js` adds live updates and form submission with the
/// session's CSRF token (from the `csrf` meta tag).
pub fn layout(lang: Lang, title: &str, caller: Option<&Caller>, body: &str) -> String {
    let mut nav = String::new();
    let csrf = match caller {
        Some(Caller::Session { csrf, .. }) => csrf.as_str(),
        _ => "",
    };
    if let Some(caller) = caller {
        let installer = caller.role() == Some(Role::Installer);
        let mut links: Vec<(&str, Ui)> = vec![("/", Ui::Floor), ("/rooms", Ui::Rooms)];
        if installer {
            links.extend([
                ("/devices", Ui::Devices),
                ("/discovery", Ui::Discovery),
                ("/scenes", Ui::Scenes),
                ("/site", Ui::SiteFile),
                ("/settings", Ui::Settings),
                ("/audit", Ui::Audit),
            ]);
        }
        for (href, msg) in links {
            nav.push_str(&format!("<a href=\"{href}\">{}</a>", esc(lang.t(msg))));
        }
        let role = match caller.role() {
            Some(Role::Installer) => lang.t(Ui::RoleInstaller),
            Some(Role::Operator) => lang.t(Ui::RoleOperator),
            None => "",
        };
        nav.push_str(&format!(
            "<a class=\"who\" href=\"/account\">{}</a><button class=\"link\" data-post=\"/logout\">{}</button>",
            esc(&lang.f(Ui::SignedInAs, &[("user", &caller.who()), ("role", role)])),
            esc(lang.t(Ui::SignOut)),
        ));
    }
    let other = match lang {
        Lang::En => Lang::ZhCn,
        Lang::ZhCn => Lang::En,
    };
    format!(
        "<!doctype html><html lang=\"{tag}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"csrf\" content=\"{csrf}\"><meta name=\"referrer\" content=\"same-origin\">\
         <title>{title} · roomgate</title><link rel=\"stylesheet\" href=\"/assets/console.css\">\
         <script src=\"/assets/console.js\" defer></script></head><body>\
         <header><strong>roomgate</strong><nav>{nav}</nav>\
         <a class=\"lang\" href=\"?lang={other_tag}\">{other_name}</a></header>\
         <main><h1>{title}</h1>{body}</main></body></html>",
        tag = lang.tag(),
        csrf = esc(csrf),
        title = esc(title),
        other_tag = other.tag(),
        other_name = other.native_name(),
    )
}

/// Security headers on every console page.
pub fn html(page: String) -> Response {
    let mut r = warp::reply::html(page).into_response();
    set_header(
        &mut r,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; \
         frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    );
    set_header(&mut r, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set_header(&mut r, header::REFERRER_POLICY, "same-origin");
    set_header(&mut r, header::CACHE_CONTROL, "no-store");
    r
}

/// The public routes: the console's assets and the login, setup and logout pages.
pub fn public_routes(
    c: Arc<Console>,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone + Send + Sync + 'static {
    let with_c = {
        let c = c.clone();
        warp::any().map(move || c.clone())
    };
    let css = warp::path!("assets" / "console.css")
        .and(warp::get())
        .map(|| {
            warp::reply::with_header(CONSOLE_CSS, "content-type", "text/css; charset=utf-8")
                .into_response()
        });
    let js = warp::path!("assets" / "console.js")
        .and(warp::get())
        .map(|| {
            warp::reply::with_header(CONSOLE_JS, "content-type", "text/javascript; charset=utf-8")
                .into_response()
        });
    let login_page = warp::path!("login")
        .and(warp::get())
        .and(crate::panel::lang())
        .and(warp::query::<HashMap<String, String>>())
        .and(with_c.clone())
        .map(
            |lang: Lang, _: bool, q: HashMap<String, String>, c: Arc<Console>| {
                if c.accounts.setup_pending() {
                    return redirect("/setup", None);
                }
                login_form(lang, q.get("next"), None, StatusCode::OK)
            },
        );
    let login =
        warp::path!("login")
            .and(warp::post())
            .and(crate::panel::lang())
            .and(form_body())
            .and(request_info())
            .and(with_c.clone())
            .then(
                |lang: Lang,
                 _: bool,
                 f: HashMap<String, String>,
                 req: RequestInfo,
                 c: Arc<Console>| async move {
                    if req.cross_site() {
                        c.accounts.note_csrf_refused();
                        return StatusCode::FORBIDDEN.into_response();
                    }
                    let name = f.get("name").cloned().unwrap_or_default();
                    let password = f.get("password").cloned().unwrap_or_default();
                    let now = c.now_ms();
                    let from = req.from();
                    let c2 = c.clone();
                    let outcome = tokio::task::spawn_blocking(move || {
                        c2.accounts.login(now, &from, &name, &password)
                    })
                    .await;
                    match outcome {
                        Ok(Ok(LoginOutcome::SignedIn(s))) => redirect(
                            &safe_next(f.get("next")),
                            Some(&session_cookie(&s.cookie_value)),
                        ),
                        Ok(Ok(LoginOutcome::Refused)) => login_form(
                            lang,
                            f.get("next"),
                            Some(lang.t(Ui::WrongLogin).to_owned()),
                            StatusCode::UNAUTHORIZED,
                        ),
                        Ok(Ok(LoginOutcome::Locked { until_ms })) => {
                            let secs = ((until_ms - now) / 1000).max(1);
                            let mut r = login_form(
                                lang,
                                f.get("next"),
                                Some(lang.f(Ui::LockedFor, &[("seconds", &secs.to_string())])),
                                StatusCode::TOO_MANY_REQUESTS,
                            );
                            set_header(&mut r, header::RETRY_AFTER, &secs.to_string());
                            r
                        }
                        Ok(Err(e)) => server_error(&e.to_string()),
                        Err(e) => server_error(&e.to_string()),
                    }
                },
            );
    let setup_page = warp::path!("setup")
        .and(warp::get())
        .and(crate::panel::lang())
        .and(with_c.clone())
        .map(|lang: Lang, _: bool, c: Arc<Console>| {
            if !c.accounts.setup_pending() {
                return redirect("/login", None);
            }
            setup_form(&c, lang, &HashMap::new(), None, StatusCode::OK)
        });
    let setup =
        warp::path!("setup")
            .and(warp::post())
            .and(crate::panel::lang())
            .and(form_body())
            .and(request_info())
            .and(with_c)
            .then(
                |lang: Lang,
                 _: bool,
                 f: HashMap<String, String>,
                 req: RequestInfo,
                 c: Arc<Console>| async move {
                    if req.cross_site() {
                        c.accounts.note_csrf_refused();
                        return StatusCode::FORBIDDEN.into_response();
                    }
                    if !c.accounts.setup_pending() {
                        return redirect("/login", None);
                    }
                    let get = |k: &str| f.get(k).cloned().unwrap_or_default();
                    let (code, name, pw, repeat) =
                        (get("code"), get("name"), get("password"), get("repeat"));
                    let now = c.now_ms();
                    let from = req.from();
                    let c2 = c.clone();
                    let done = tokio::task::spawn_blocking(move || {
                        c2.accounts
                            .complete_setup(now, &from, &code, &name, &pw, &repeat)
                    })
                    .await;
                    match done {
                        Ok(Ok(s)) => redirect("/", Some(&session_cookie(&s.cookie_value))),
                        Ok(Err(e)) => {
                            let (field, status) = match &e {
                                auth::AuthError::WrongSetupCode => {
                                    ("code", StatusCode::UNAUTHORIZED)
                                }
                                auth::AuthError::Locked(_) => {
                                    ("code", StatusCode::TOO_MANY_REQUESTS)
                                }
                                auth::AuthError::Mismatch => {
                                    ("repeat", StatusCode::UNPROCESSABLE_ENTITY)
                                }
                                auth::AuthError::Credential(
                                    cloud_sync::webkit::auth::CredentialError::BadName(_),
                                ) => ("name", StatusCode::UNPROCESSABLE_ENTITY),
                                auth::AuthError::Credential(_) => {
                                    ("password", StatusCode::UNPROCESSABLE_ENTITY)
                                }
                                _ => ("", StatusCode::INTERNAL_SERVER_ERROR),
                            };
                            setup_form(&c, lang, &f, Some((field, e.to_string())), status)
                        }
                        Err(e) => server_error(&e.to_string()),
                    }
                },
            );
    css.or(js)
        .unify()
        .or(login_page)
        .unify()
        .or(login)
        .unify()
        .or(setup_page)
        .unify()
        .or(setup)
        .unify()
}

/// `POST /logout` (behind the gate: it needs the session's CSRF token).
pub fn logout_route(
    c: Arc<Console>,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone + Send + Sync + 'static {
    warp::path!("logout")
        .and(warp::post())
        .and(gate(c.clone()))
        .and(warp::any().map(move || c.clone()))
        .map(|_caller: Caller, req: RequestInfo, c: Arc<Console>| {
            if let Some(v) =
                cloud_sync::webkit::auth::cookie_value(req.cookie.as_deref(), SESSION_COOKIE)
                && let Err(e) = c.accounts.logout(c.now_ms(), &req.from(), v)
            {
                tracing::error!("logout: {e}");
            }
            let mut r =
                warp::reply::json(&serde_json::json!({ "redirect": "/login" })).into_response();
            set_header(&mut r, header::SET_COOKIE, &cleared_session_cookie());
            r
        })
}

/// A URL-encoded form body (at most 64 KiB).
pub fn form_body() -> impl Filter<Extract = (HashMap<String, String>,), Error = Rejection> + Clone {
    warp::body::content_length_limit(64 * 1024)
        .and(warp::body::bytes())
        .map(|b: warp::hyper::body::Bytes| parse_form(&b))
}

/// Parses `application/x-www-form-urlencoded` (the last value of a repeated name wins).
pub fn parse_form(body: &[u8]) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for pair in body.split(|&b| b == b'&') {
        if pair.is_empty() {
            continue;
        }
        let (k, v) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &b""[..]),
        };
        out.insert(percent_decode(k), percent_decode(v));
    }
    out
}

fn percent_decode(s: &[u8]) -> String {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < s.len() => {
                let hex = std::str::from_utf8(&s[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn server_error(why: &str) -> Response {
    tracing::error!("console: {why}");
    warp::reply::with_status(
        warp::reply::json(&serde_json::json!({ "error": why })),
        StatusCode::INTERNAL_SERVER_ERROR,
    )
    .into_response()
}

fn field(
    lang: Lang,
    name: &str,
    label: impl Texts,
    kind: &str,
    value: &str,
    error: Option<&str>,
) -> String {
    let err = error
        .map(|e| {
            format!(
                "<small class=\"err\" data-for=\"{name}\">{}</small>",
                esc(e)
            )
        })
        .unwrap_or_else(|| format!("<small class=\"err\" data-for=\"{name}\"></small>"));
    let auto = match kind {
        "password" => " autocomplete=\"current-password\"",
        _ => "",
    };
    format!(
        "<label>{label}<input name=\"{name}\" type=\"{kind}\" value=\"{value}\"{auto}></label>{err}",
        label = esc(lang.t(label)),
        value = esc(value),
    )
}

fn login_form(
    lang: Lang,
    next: Option<&String>,
    error: Option<String>,
    status: StatusCode,
) -> Response {
    let body = format!(
        "<form method=\"post\" action=\"/login\" class=\"narrow\" data-plain>\
         <input type=\"hidden\" name=\"next\" value=\"{next}\">{name}{pw}\
         <p class=\"err\" id=\"login-error\">{error}</p>\
         <button type=\"submit\">{submit}</button></form>",
        next = esc(&safe_next(next)),
        name = field(lang, "name", Ui::UserName, "text", "", None),
        pw = field(lang, "password", Ui::Password, "password", "", None),
        error = esc(error.as_deref().unwrap_or("")),
        submit = esc(lang.t(Ui::SignIn)),
    );
    let mut r = html(layout(lang, lang.t(Ui::SignIn), None, &body));
    *r.status_mut() = status;
    r
}

fn setup_form(
    c: &Console,
    lang: Lang,
    values: &HashMap<String, String>,
    error: Option<(&str, String)>,
    status: StatusCode,
) -> Response {
    let err = |f: &str| {
        error
            .as_ref()
            .filter(|(n, _)| *n == f)
            .map(|(_, m)| m.as_str())
    };
    let val = |f: &str| values.get(f).map(String::as_str).unwrap_or("");
    let general = error
        .as_ref()
        .filter(|(n, _)| n.is_empty())
        .map(|(_, m)| m.as_str())
        .unwrap_or("");
    let body = format!(
        "<p>{help}</p><form method=\"post\" action=\"/setup\" class=\"narrow\" data-plain>\
         {code}{name}<p class=\"hint\">{rules}</p>{pw}{repeat}<p class=\"err\">{general}</p>\
         <button type=\"submit\">{submit}</button></form>",
        help = esc(&lang.f(
            Ui::SetupHelp,
            &[("path", &c.accounts.setup_path().display().to_string())]
        )),
        code = field(
            lang,
            "code",
            Ui::SetupCode,
            "text",
            val("code"),
            err("code")
        ),
        name = field(lang, "name", Ui::UserName, "text", val("name"), err("name")),
        rules = esc(lang.t(Ui::PasswordRules)),
        pw = field(
            lang,
            "password",
            Ui::Password,
            "password",
            "",
            err("password")
        ),
        repeat = field(
            lang,
            "repeat",
            Ui::RepeatPassword,
            "password",
            "",
            err("repeat")
        ),
        general = esc(general),
        submit = esc(lang.t(Ui::CreateAccount)),
    );
    let mut r = html(layout(lang, lang.t(Ui::SetupTitle), None, &body));
    *r.status_mut() = status;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode_and_next_stays_on_this_host() {
        let f = parse_form(b"name=ada+l&password=a%26b%3Dc&empty=&bad=%zz&x");
        assert_eq!(f["name"], "ada l");
        assert_eq!(f["password"], "a&b=c");
        assert_eq!(f["empty"], "");
        assert_eq!(f["bad"], "%zz");
        assert_eq!(f["x"], "");
        assert_eq!(safe_next(Some(&"/devices?x=1".to_owned())), "/devices?x=1");
        for evil in [
            "//evil.example/",
            "https://evil.example/",
            "\\\\evil",
            "/\\evil",
        ] {
            assert_eq!(safe_next(Some(&evil.to_owned())), "/", "{evil}");
        }
        assert_eq!(encode_component("/rooms/r 1?a=b"), "/rooms/r%201%3Fa%3Db");
    }

    #[test]
    fn cross_site_requests_are_recognized() {
        let mut r = RequestInfo {
            host: Some("gw.local:8443".into()),
            ..RequestInfo::default()
        };
        assert!(!r.cross_site());
        r.origin = Some("https://gw.local:8443".into());
        assert!(!r.cross_site());
        r.origin = Some("https://evil.example".into());
        assert!(r.cross_site());
        r.origin = None;
        r.fetch_site = Some("cross-site".into());
        assert!(r.cross_site());
        r.fetch_site = Some("same-origin".into());
        assert!(!r.cross_site());
    }

    #[test]
    fn every_console_text_has_both_languages() {
        for m in Ui::ALL {
            let (en, zh) = m.texts();
            assert!(!en.is_empty() && !zh.is_empty(), "{m:?}");
        }
    }
}

/// The gate, then a role check: the caller acts with at least `role` (403 otherwise).
pub fn need(
    c: &Arc<Console>,
    role: Role,
) -> impl Filter<Extract = (Caller, RequestInfo), Error = Rejection> + Clone + use<> {
    let c2 = c.clone();
    gate(c.clone())
        .and(warp::any().map(move || c2.clone()))
        .and_then(
            move |caller: Caller, req: RequestInfo, c: Arc<Console>| async move {
                if caller.role().is_some_and(|r| r >= role) {
                    return Ok((caller, req));
                }
                c.accounts.note_forbidden();
                Err(warp::reject::custom(Denied {
                    status: StatusCode::FORBIDDEN,
                    reason: format!("this needs the {} role", role.key()),
                    redirect: None,
                }))
            },
        )
        .untuple_one()
}

/// The gate for `/metrics`: a metrics token, an API token or a session.
pub fn scrape(c: &Arc<Console>) -> impl Filter<Extract = (), Error = Rejection> + Clone + use<> {
    let c2 = c.clone();
    gate(c.clone())
        .and(warp::any().map(move || c2.clone()))
        .and_then(
            |caller: Caller, _req: RequestInfo, c: Arc<Console>| async move {
                if caller.may_scrape() {
                    return Ok(());
                }
                c.accounts.note_forbidden();
                Err(warp::reject::custom(Denied {
                    status: StatusCode::FORBIDDEN,
                    reason: "this token may not read metrics".into(),
                    redirect: None,
                }))
            },
        )
        .untuple_one()
}

/// The plain-HTTP side: `/healthz` answers; everything else is redirected to HTTPS on
/// `https_port` at the host the client asked for.
pub fn redirect_to_https(
    https_port: u16,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone + Send + Sync + 'static {
    warp::path::full()
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::header::optional::<String>("host"))
        .map(
            move |path: warp::path::FullPath, query: String, host: Option<String>| {
                let host = host.unwrap_or_else(|| "localhost".into());
                // The host without its port (IPv6 literals keep their brackets).
                let name = match host.rfind(':') {
                    Some(i) if !host[i..].contains(']') => &host[..i],
                    _ => host.as_str(),
                };
                let q = if query.is_empty() {
                    String::new()
                } else {
                    format!("?{query}")
                };
                let to = format!("https://{name}:{https_port}{}{q}", path.as_str());
                let mut r = redirect(&to, None);
                *r.status_mut() = StatusCode::PERMANENT_REDIRECT;
                r
            },
        )
}

/// The answer to a console form that was refused: 422 with each error next to its field
/// (`console.js` puts `message` into `<small class="err" data-for="FIELD">`) and the rest
/// above the button.
pub fn form_errors(fields: &[(String, String)], general: Option<&str>) -> Response {
    let errors: Vec<serde_json::Value> = fields
        .iter()
        .map(|(f, m)| serde_json::json!({ "field": f, "message": m }))
        .collect();
    let mut body = serde_json::json!({ "errors": errors });
    if let Some(g) = general {
        body["error"] = serde_json::Value::String(g.to_owned());
    }
    warp::reply::with_status(warp::reply::json(&body), StatusCode::UNPROCESSABLE_ENTITY)
        .into_response()
}

/// The answer to a console form that worked: a message shown in the form's `.form-result`.
pub fn form_done(message: &str) -> Response {
    warp::reply::json(&serde_json::json!({ "message": message })).into_response()
}

/// The answer to a console form that worked and leads elsewhere (or `reload`s this page).
pub fn form_go(url: &str) -> Response {
    if url == "reload" {
        return warp::reply::json(&serde_json::json!({ "reload": true })).into_response();
    }
    warp::reply::json(&serde_json::json!({ "redirect": url })).into_response()
}

/// The console as a filter argument.
pub fn with_console(
    c: &Arc<Console>,
) -> impl Filter<Extract = (Arc<Console>,), Error = Infallible> + Clone + use<> {
    let c = c.clone();
    warp::any().map(move || c.clone())
}

/// A console page's language: `?lang=`, then the `lang` cookie, then `Accept-Language`; a
/// tap on the switch is remembered in the cookie (see [`remember`]).
pub fn page_lang() -> impl Filter<Extract = (Lang, bool), Error = Rejection> + Clone {
    crate::panel::lang()
}

/// Sets the `lang` cookie when the page's language was chosen with `?lang=`.
pub fn remember(mut r: Response, lang: Lang, chosen: bool) -> Response {
    if chosen {
        set_header(
            &mut r,
            header::SET_COOKIE,
            &format!(
                "lang={}; Path=/; Max-Age=31536000; SameSite=Lax",
                lang.tag()
            ),
        );
    }
    r
}

/// A time in the site's zone for pages and logs: `YYYY-MM-DD HH:MM:SS` (RFC 3339 without
/// the offset).
pub fn local_time(g: &crate::runtime::GatewayHandle, ms: i64) -> String {
    let t = g.time.rfc3339(::scenes::Timestamp::from_millis(ms));
    t.get(..19).map(|s| s.replace('T', " ")).unwrap_or(t)
}

/// What the console's pages work with.
#[derive(Clone)]
pub struct PageCtx {
    pub console: Arc<Console>,
    pub gateway: crate::runtime::GatewayHandle,
    pub site: Arc<crate::reload::SiteSource>,
}

impl PageCtx {
    /// Applies a console form's edit of the site (`crate::site::edit`) and answers the form: its
    /// field errors (422), the gateway's refusal, or `reload` (or `then`) after the change is live
    /// and written back to the site file. The change goes into the audit log with its diff.
    pub async fn apply_edit(
        &self,
        caller: &Caller,
        req: &RequestInfo,
        action: &str,
        target: &str,
        then: &str,
        edit: impl FnOnce(
            &crate::site::SiteDocument,
        ) -> Result<crate::site::SiteDocument, crate::site::edit::FormErrors>,
    ) -> Response {
        match self.site.edit(&self.gateway, false, edit).await {
            Err(errors) => {
                let fields: Vec<(String, String)> = errors
                    .fields
                    .iter()
                    .map(|f| (f.field.clone(), f.message.clone()))
                    .collect();
                let general = errors.form.join("; ");
                form_errors(&fields, (!general.is_empty()).then_some(general.as_str()))
            }
            Ok(Err(refusal)) => {
                let mut text = refusal.to_string();
                for e in refusal.errors() {
                    text.push_str(&format!("\n{}: {}", e.path, e.message));
                }
                form_errors(&[], Some(&text))
            }
            Ok(Ok(answer)) => {
                self.console
                    .audit(caller, &req.from(), action, target, &answer.diff.join("\n"));
                form_go(then)
            }
        }
    }
}

impl std::fmt::Debug for PageCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PageCtx").finish_non_exhaustive()
    }
}

/// The context as a filter argument.
pub fn with_ctx(
    ctx: &PageCtx,
) -> impl Filter<Extract = (PageCtx,), Error = Infallible> + Clone + use<> {
    let ctx = ctx.clone();
    warp::any().map(move || ctx.clone())
}

/// Every console page (each module adds its routes here; boxed at each step, see
/// ARCHITECTURE.md on warp's compile times).
pub fn page_routes(ctx: &PageCtx) -> warp::filters::BoxedFilter<(Response,)> {
    // A route that never matches, so the chain below can start uniformly.
    let none = warp::any()
        .and_then(|| async { Err::<Response, Rejection>(warp::reject::not_found()) })
        .boxed();
    let modules = vec![
        rooms::routes(ctx),
        scenes::routes(ctx),
        settings::routes(ctx),
        site_page::routes(ctx),
        audit_page::routes(ctx),
        devices::routes(ctx),
        discovery::routes(ctx),
    ];
    (modules.into_iter()).fold(none, |all, m| all.or(m).unify().boxed())
}

/// The console's security counters in Prometheus text format (appended to `/metrics`).
pub fn metrics_text(c: &auth::AuthCounts) -> String {
    let rows: [(&str, &str, u64); 7] = [
        (
            "roomgate_console_logins_total",
            "Successful console logins.",
            c.logins,
        ),
        (
            "roomgate_console_login_failures_total",
            "Refused console logins (wrong name, password or setup code).",
            c.failures,
        ),
        (
            "roomgate_console_login_locked_total",
            "Login attempts refused because the address or name was locked.",
            c.refused_locked,
        ),
        (
            "roomgate_console_lockouts_total",
            "Times an address or name became locked.",
            c.lockouts,
        ),
        (
            "roomgate_console_csrf_refused_total",
            "State changes refused for a missing or wrong CSRF token, a foreign origin or a missing panel header.",
            c.csrf_refused,
        ),
        (
            "roomgate_console_unauthenticated_total",
            "Requests refused for want of a session or token.",
            c.unauthenticated,
        ),
        (
            "roomgate_console_forbidden_total",
            "Requests refused for the caller's role or token scope.",
            c.forbidden,
        ),
    ];
    let mut out = String::new();
    for (name, help, value) in rows {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}\n"
        ));
    }
    out
}
