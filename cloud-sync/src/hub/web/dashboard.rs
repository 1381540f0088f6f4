//! The admin dashboard: buildings, gateways and rooms live, faults, statistics; login.
//!
//! Server-rendered HTML behind a login ([`super::auth`]); every value from outside (gateway
//! statuses, room names, bookings, telemetry, query strings) is escaped where it is written.
//! The stylesheet and one small script are embedded in the binary. Pages:
//!
//! * `/` — buildings (sites) with their gateways online and offline, rooms by state, rooms
//!   with faults;
//! * `/sites/{site}` — a building's gateways (online, last seen, outbox, devices) and their
//!   rooms (state, presence, current and next booking, faults);
//! * `/sites/{site}/{gateway}` — one gateway: its rooms, offline devices and latest telemetry;
//! * `/stats` — statistics ([`crate::hub::stats`]) of a building, floor or room per day or
//!   ISO week over a date range, as a table and bars;
//! * `/login`, `/logout`.
//!
//! "Live": the live pages carry their data in `<div id="live">`, which the script reloads every
//! few seconds from the same URL with `part=live` (an HTML fragment; 401 when the session
//! ended, and the script then reloads the page, which leads to the login).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

use jiff::civil::Date;
use jiff::tz::TimeZone;
use warp::filters::BoxedFilter;
use warp::http::{HeaderValue, StatusCode, header};
use warp::reply::Response;
use warp::{Filter, Reply};

use super::WebState;
use super::auth::{self, Auth, AuthConfig, LoginOutcome, Session};
use crate::hub::stats::{
    self, FloorEvents, Granularity, Level, Range, Release, Row, Scope, Selection, WorkingHours,
};
use crate::hub::store::{GatewayRecord, HubStoreError};
use crate::topics::GatewayId;
use crate::wire::{BookingGlance, PointSample, RoomStatus};

const CSS: &str = include_str!("assets/dashboard.css");
const JS: &str = include_str!("assets/dashboard.js");

/// Seconds between refreshes of a page's live part.
pub const REFRESH_SECS: u32 = 5;
/// Document kind and key of the working-hours setting (`stats::WorkingHours::from_setting`).
pub const SETTING_KIND: &str = "setting";
pub const WORKING_HOURS_KEY: &str = "working_hours";
/// Days shown by the statistics page when no range is asked for.
const DEFAULT_STATS_DAYS: i64 = 7;
/// Largest form body accepted.
const FORM_LIMIT: u64 = 16 * 1024;

/// The dashboard's routes with a fresh login limiter.
pub fn routes(state: Arc<WebState>) -> BoxedFilter<(Response,)> {
    routes_with(state, Arc::new(Auth::new(AuthConfig::default())))
}

/// The dashboard's routes with the given login side (tests read its counters).
pub fn routes_with(state: Arc<WebState>, auth: Arc<Auth>) -> BoxedFilter<(Response,)> {
    let ctx = Arc::new(Ctx { state, auth });
    let with_ctx = warp::any().map(move || Arc::clone(&ctx));
    let query = warp::query::raw().or(warp::any().map(String::new)).unify();
    // Over HTTPS browsers speak HTTP/2: cookies may come in several fields and the host in the
    // authority, so both are read the way `webkit::serve` says.
    let request = crate::webkit::serve::cookies()
        .and(super::peer_addr())
        .and(warp::path::full())
        .and(query)
        .and(warp::header::optional::<String>("origin"))
        .and(crate::webkit::serve::host())
        .and(warp::header::optional::<String>("sec-fetch-site"))
        .map(
            |cookie, addr, path: warp::path::FullPath, query: String, origin, host, fetch_site| {
                Request {
                    cookie,
                    addr,
                    path: path.as_str().to_owned(),
                    query: parse_form(&query),
                    raw_query: query,
                    origin,
                    host,
                    fetch_site,
                }
            },
        );
    let form = warp::body::content_length_limit(FORM_LIMIT)
        .and(warp::body::bytes())
        .map(|b: warp::hyper::body::Bytes| parse_form(&String::from_utf8_lossy(&b)));

    let asset = warp::path!("assets" / String)
        .and(warp::get())
        .map(|name: String| asset(&name));
    let login_page = warp::path!("login")
        .and(warp::get())
        .and(with_ctx.clone())
        .and(request.clone())
        .then(|ctx: Arc<Ctx>, req: Request| async move { ctx.login_page(req).await });
    let login = warp::path!("login")
        .and(warp::post())
        .and(with_ctx.clone())
        .and(request.clone())
        .and(form)
        .then(|ctx: Arc<Ctx>, req: Request, form| async move { ctx.login(req, form).await });
    let logout = warp::path!("logout")
        .and(warp::post())
        .and(with_ctx.clone())
        .and(request.clone())
        .and(form)
        .then(|ctx: Arc<Ctx>, req: Request, form| async move { ctx.logout(req, form).await });
    let overview = warp::path::end()
        .and(warp::get())
        .and(with_ctx.clone())
        .and(request.clone())
        .then(|ctx: Arc<Ctx>, req: Request| async move {
            ctx.page(req, |ctx, s, req| Box::pin(ctx.overview(s, req)))
                .await
        });
    let site = warp::path!("sites" / String)
        .and(warp::get())
        .and(with_ctx.clone())
        .and(request.clone())
        .then(|site: String, ctx: Arc<Ctx>, req: Request| async move {
            ctx.page(req, move |ctx, s, req| Box::pin(ctx.site(s, req, site)))
                .await
        });
    let gateway = warp::path!("sites" / String / String)
        .and(warp::get())
        .and(with_ctx.clone())
        .and(request.clone())
        .then(
            |site: String, gw: String, ctx: Arc<Ctx>, req: Request| async move {
                ctx.page(req, move |ctx, s, req| {
                    Box::pin(ctx.gateway(s, req, site, gw))
                })
                .await
            },
        );
    let statistics = warp::path!("stats")
        .and(warp::get())
        .and(with_ctx)
        .and(request)
        .then(|ctx: Arc<Ctx>, req: Request| async move {
            ctx.page(req, |ctx, s, req| Box::pin(ctx.statistics(s, req)))
                .await
        });
    asset
        .or(login_page)
        .unify()
        .or(login)
        .unify()
        .or(logout)
        .unify()
        .or(overview)
        .unify()
        .or(site)
        .unify()
        .or(gateway)
        .unify()
        .or(statistics)
        .unify()
        .boxed()
}

/// What a handler needs of the request.
#[derive(Debug, Clone)]
struct Request {
    cookie: Option<String>,
    addr: Option<SocketAddr>,
    path: String,
    raw_query: String,
    query: HashMap<String, String>,
    origin: Option<String>,
    host: Option<String>,
    fetch_site: Option<String>,
}

impl Request {
    fn param(&self, key: &str) -> Option<&str> {
        self.query
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// Only the live part of the page was asked for.
    fn live_part(&self) -> bool {
        self.param("part") == Some("live")
    }

    /// The path and query, to come back to after login.
    fn here(&self) -> String {
        if self.raw_query.is_empty() {
            self.path.clone()
        } else {
            format!("{}?{}", self.path, self.raw_query)
        }
    }

    /// A POST from another site: a foreign `Origin`, or a browser saying it is cross-site.
    fn cross_site(&self) -> bool {
        if self.fetch_site.as_deref() == Some("cross-site") {
            return true;
        }
        match (&self.origin, &self.host) {
            (Some(origin), Some(host)) => {
                let origin_host = origin
                    .strip_prefix("https://")
                    .or_else(|| origin.strip_prefix("http://"));
                origin_host != Some(host.as_str())
            }
            (Some(_), None) => true,
            (None, _) => false,
        }
    }
}

/// Something went wrong while building a page.
#[derive(Debug, thiserror::Error)]
enum PageError {
    #[error("the hub's store could not be read: {0}")]
    Store(#[from] HubStoreError),
    #[error("{0}")]
    Auth(#[from] auth::AuthError),
    #[error("{0}")]
    NotFound(String),
}

type PageFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Page, PageError>> + Send + 'a>>;

/// A rendered page: its title, the active navigation entry, its body, and its live part.
struct Page {
    title: String,
    nav: Nav,
    crumbs: String,
    /// Static HTML before the live part (forms, headings).
    head: String,
    /// The part the script refreshes, when the page is live.
    live: Option<String>,
    /// Static HTML after the live part.
    tail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Nav {
    Buildings,
    Statistics,
}

struct Ctx {
    state: Arc<WebState>,
    auth: Arc<Auth>,
}

impl Ctx {
    fn now(&self) -> i64 {
        (self.state.now)()
    }

    /// The session of the request's cookie, if live.
    async fn session(&self, req: &Request) -> Result<Option<(String, Session)>, PageError> {
        let Some(value) = auth::session_cookie(req.cookie.as_deref()) else {
            return Ok(None);
        };
        let s = auth::session(&self.state.store, value, self.now()).await?;
        Ok(s.map(|s| (value.to_owned(), s)))
    }

    /// Runs a page behind the login: without a session a page redirects to the login (its
    /// live part answers 401).
    async fn page<F>(&self, req: Request, build: F) -> Response
    where
        F: for<'a> FnOnce(&'a Ctx, &'a Session, &'a Request) -> PageFuture<'a>,
    {
        let session = match self.session(&req).await {
            Ok(Some((_, s))) => s,
            Ok(None) if req.live_part() => {
                return respond(
                    StatusCode::UNAUTHORIZED,
                    "text/plain",
                    "sign in again".into(),
                );
            }
            Ok(None) => {
                return redirect(&format!("/login?next={}", url_encode(&req.here())));
            }
            Err(e) => return error_page(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        };
        match build(self, &session, &req).await {
            Ok(page) if req.live_part() => match page.live {
                Some(live) => respond(StatusCode::OK, "text/html; charset=utf-8", live),
                None => respond(StatusCode::NOT_FOUND, "text/plain", "no live part".into()),
            },
            Ok(page) => respond(
                StatusCode::OK,
                "text/html; charset=utf-8",
                layout(&page, Some(&session)),
            ),
            Err(PageError::NotFound(what)) => error_page(StatusCode::NOT_FOUND, &what),
            Err(e) => {
                tracing::error!("dashboard page {}: {e}", req.path);
                error_page(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string())
            }
        }
    }

    async fn login_page(&self, req: Request) -> Response {
        match self.session(&req).await {
            Ok(Some(_)) => return redirect(&safe_next(req.param("next"))),
            Ok(None) => {}
            Err(e) => return error_page(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        }
        let next = safe_next(req.param("next"));
        self.login_form(StatusCode::OK, &next, "", None).await
    }

    async fn login_form(
        &self,
        status: StatusCode,
        next: &str,
        user: &str,
        message: Option<&str>,
    ) -> Response {
        let no_admin = match auth::has_users(&self.state.store).await {
            Ok(has) => !has,
            Err(e) => return error_page(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        };
        let mut body = String::new();
        body.push_str(r#"<div class="login"><h1>roomgate hub</h1>"#);
        if no_admin {
            body.push_str(
                r#"<div class="notice" id="no-admin"><b>No admin account exists yet.</b> On the hub's machine, create the first one with <code>hub user add NAME</code>; it asks for the password. There is no default password.</div>"#,
            );
        }
        if let Some(m) = message {
            let _ = write!(
                body,
                r#"<div class="error" id="login-error">{}</div>"#,
                esc(m)
            );
        }
        let _ = write!(
            body,
            r#"<form method="post" action="/login">
<input type="hidden" name="next" value="{next}">
<label for="user">User name</label><input id="user" name="user" autocomplete="username" value="{user}" required autofocus>
<label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password" required>
<button class="primary" type="submit">Sign in</button>
</form></div>"#,
            next = esc(next),
            user = esc(user),
        );
        respond(
            status,
            "text/html; charset=utf-8",
            document("Sign in", "", &body),
        )
    }

    async fn login(&self, req: Request, form: HashMap<String, String>) -> Response {
        let next = safe_next(form.get("next").map(String::as_str));
        if req.cross_site() {
            self.auth.note_csrf_refused();
            return error_page(
                StatusCode::FORBIDDEN,
                "Sign-in from another site is refused.",
            );
        }
        let user = form.get("user").map(String::as_str).unwrap_or_default();
        let password = form.get("password").map(String::as_str).unwrap_or_default();
        let addr = req
            .addr
            .map_or_else(|| "unknown".to_owned(), |a| a.ip().to_string());
        let now = self.now();
        match self
            .auth
            .login(&self.state.store, &addr, user, password, now)
            .await
        {
            Ok(LoginOutcome::SignedIn(new)) => {
                let mut r = redirect(&next);
                set_header(
                    &mut r,
                    header::SET_COOKIE,
                    &auth::session_set_cookie(&new.cookie_value),
                );
                r
            }
            Ok(LoginOutcome::Refused) => {
                self.login_form(
                    StatusCode::UNAUTHORIZED,
                    &next,
                    user,
                    Some("Wrong user name or password."),
                )
                .await
            }
            Ok(LoginOutcome::Locked { until_ms }) => {
                let minutes = ((until_ms - now) + 59_999) / 60_000;
                let m = format!(
                    "Too many failed sign-ins. Try again in {minutes} minute{}.",
                    if minutes == 1 { "" } else { "s" }
                );
                let mut r = self
                    .login_form(StatusCode::TOO_MANY_REQUESTS, &next, user, Some(&m))
                    .await;
                set_header(
                    &mut r,
                    header::RETRY_AFTER,
                    &((until_ms - now + 999) / 1000).to_string(),
                );
                r
            }
            Err(e) => {
                tracing::error!("login: {e}");
                error_page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Sign-in failed on the hub's side.",
                )
            }
        }
    }

    async fn logout(&self, req: Request, form: HashMap<String, String>) -> Response {
        let (value, session) = match self.session(&req).await {
            Ok(Some(s)) => s,
            Ok(None) => return redirect("/login"),
            Err(e) => return error_page(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        };
        let token = form.get("csrf").map(String::as_str).unwrap_or_default();
        if req.cross_site() || !auth::constant_time_eq(token, &session.csrf) {
            self.auth.note_csrf_refused();
            return error_page(
                StatusCode::FORBIDDEN,
                "This form has expired or did not come from this dashboard. Reload the page and try again.",
            );
        }
        if let Err(e) = self.auth.logout(&self.state.store, &value).await {
            return error_page(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string());
        }
        let mut r = redirect("/login");
        set_header(&mut r, header::SET_COOKIE, &auth::cleared_cookie());
        r
    }

    async fn overview(&self, _s: &Session, _req: &Request) -> Result<Page, PageError> {
        let now = self.now();
        let gateways = self.state.store.gateways().await?;
        let sites = by_site(gateways);
        let mut live = String::new();
        let all: Vec<&GatewayRecord> = sites.values().flatten().collect();
        let online = all.iter().filter(|g| is_online(g)).count();
        let offline = all.len() - online;
        let rooms: Vec<(&GatewayRecord, &RoomStatus)> = all
            .iter()
            .flat_map(|g| rooms_of(g).iter().map(move |r| (*g, r)))
            .collect();
        let in_use = rooms
            .iter()
            .filter(|(g, r)| is_online(g) && matches!(r.state.as_str(), "in_meeting" | "occupied"))
            .count();
        let faulty = rooms.iter().filter(|(_, r)| !r.faults.is_empty()).count();
        let _ = write!(
            live,
            r#"<div class="tiles">
<div class="tile"><div class="n">{}</div><div class="l">buildings</div></div>
<div class="tile"><div class="n">{online}<span class="muted small"> / {}</span></div><div class="l">gateways online</div></div>
<div class="tile{}"><div class="n" id="gateways-offline">{offline}</div><div class="l">gateways offline</div></div>
<div class="tile"><div class="n">{in_use}<span class="muted small"> / {}</span></div><div class="l">rooms in use</div></div>
<div class="tile{}"><div class="n" id="rooms-faulty">{faulty}</div><div class="l">rooms with faults</div></div>
</div>"#,
            sites.len(),
            all.len(),
            if offline > 0 { " alert" } else { "" },
            rooms.len(),
            if faulty > 0 { " alert" } else { "" },
        );
        if sites.is_empty() {
            live.push_str(r#"<div class="notice">No gateway has reported to this hub yet.</div>"#);
        } else {
            live.push_str(
                r#"<h2>Buildings</h2><table id="buildings"><thead><tr><th>Building</th><th class="num">Gateways online</th><th class="num">Offline</th><th>Rooms by state</th><th class="num">Rooms with faults</th><th class="num">Devices offline</th><th>Last heard</th></tr></thead><tbody>"#,
            );
            for (site, gws) in &sites {
                let online = gws.iter().filter(|g| is_online(g)).count();
                let offline = gws.len() - online;
                let faulty = gws
                    .iter()
                    .flat_map(rooms_of)
                    .filter(|r| !r.faults.is_empty())
                    .count();
                let devices_off: usize = gws
                    .iter()
                    .filter_map(|g| g.status.as_ref())
                    .map(|s| s.devices_offline.len())
                    .sum();
                let devices_total: u32 = gws
                    .iter()
                    .filter_map(|g| g.status.as_ref())
                    .map(|s| s.devices_total)
                    .sum();
                let last = gws.iter().map(|g| g.last_seen_ms).max().unwrap_or(0);
                let _ = write!(
                    live,
                    r#"<tr data-site="{s}" class="{cls}"><td><a href="/sites/{su}"><b>{s}</b></a></td><td class="num">{online} / {total}</td><td class="num">{off}</td><td>{chips}</td><td class="num">{faulty}</td><td class="num">{devices_off} / {devices_total}</td><td title="{abs}">{ago}</td></tr>"#,
                    s = esc(site),
                    su = url_encode(site),
                    cls = if offline > 0 { "offline" } else { "" },
                    total = gws.len(),
                    off = if offline > 0 {
                        format!(r#"<span class="badge offline">{offline} offline</span>"#)
                    } else {
                        "0".to_owned()
                    },
                    chips = state_chips(gws),
                    abs = esc(&utc_text(last)),
                    ago = esc(&ago(now, last)),
                );
            }
            live.push_str("</tbody></table>");
            let down: Vec<&GatewayRecord> = all.iter().copied().filter(|g| !is_online(g)).collect();
            if !down.is_empty() {
                live.push_str(
                    r#"<h2>Offline gateways</h2><table id="offline-gateways"><thead><tr><th>Gateway</th><th>Last seen</th><th class="num">Rooms</th><th class="num">Events waiting (last known)</th></tr></thead><tbody>"#,
                );
                for g in down {
                    let tz = zone_of_record(g);
                    let _ = write!(
                        live,
                        r#"<tr class="offline" data-gateway="{id}"><td><a href="{href}">{id}</a> <span class="badge offline">offline</span></td><td><b>{ago}</b> <span class="muted small">({abs})</span></td><td class="num">{rooms}</td><td class="num">{outbox}</td></tr>"#,
                        id = esc(&g.id.to_string()),
                        href = gateway_href(&g.id),
                        ago = esc(&ago(now, g.last_seen_ms)),
                        abs = esc(&local_text(g.last_seen_ms, &tz, "%Y-%m-%d %H:%M %Z")),
                        rooms = rooms_of(g).len(),
                        outbox = g.status.as_ref().map_or(0, |s| s.outbox_depth),
                    );
                }
                live.push_str("</tbody></table>");
            }
        }
        Ok(Page {
            title: "Buildings".into(),
            nav: Nav::Buildings,
            crumbs: String::new(),
            head: "<h1>Buildings</h1>".into(),
            live: Some(live),
            tail: String::new(),
        })
    }

    async fn site(&self, _s: &Session, _req: &Request, site: String) -> Result<Page, PageError> {
        let now = self.now();
        let gateways: Vec<GatewayRecord> = self
            .state
            .store
            .gateways()
            .await?
            .into_iter()
            .filter(|g| g.id.site() == site)
            .collect();
        if gateways.is_empty() {
            return Err(PageError::NotFound(format!(
                "No building '{site}' has reported."
            )));
        }
        let mut live = String::new();
        live.push_str(
            r#"<table id="gateways"><thead><tr><th>Gateway (floor)</th><th>State</th><th>Last seen</th><th class="num">Outbox</th><th class="num">Devices offline</th><th class="num">Rooms</th><th>Time zone</th></tr></thead><tbody>"#,
        );
        for g in &gateways {
            gateway_row(&mut live, g, now);
        }
        live.push_str("</tbody></table>");
        for g in &gateways {
            floor_section(&mut live, g, now, true);
        }
        Ok(Page {
            title: format!("Building {site}"),
            nav: Nav::Buildings,
            crumbs: r#"<a href="/">Buildings</a> ›"#.into(),
            head: format!(
                r#"<h1>Building {}</h1><p class="small"><a href="/stats?site={}">Statistics of this building</a></p>"#,
                esc(&site),
                url_encode(&site)
            ),
            live: Some(live),
            tail: String::new(),
        })
    }

    async fn gateway(
        &self,
        _s: &Session,
        _req: &Request,
        site: String,
        gw: String,
    ) -> Result<Page, PageError> {
        let now = self.now();
        let not_found = || PageError::NotFound(format!("No gateway '{site}/{gw}' has reported."));
        let id = GatewayId::new(&site, &gw).map_err(|_| not_found())?;
        let record = self
            .state
            .store
            .gateways()
            .await?
            .into_iter()
            .find(|g| g.id == id)
            .ok_or_else(not_found)?;
        let telemetry = self.state.store.telemetry(&id).await?;
        let tz = zone_of_record(&record);
        let mut live = String::new();
        live.push_str(
            r#"<table id="gateways"><thead><tr><th>Gateway (floor)</th><th>State</th><th>Last seen</th><th class="num">Outbox</th><th class="num">Devices offline</th><th class="num">Rooms</th><th>Time zone</th></tr></thead><tbody>"#,
        );
        gateway_row(&mut live, &record, now);
        live.push_str("</tbody></table>");
        floor_section(&mut live, &record, now, false);
        if let Some(s) = &record.status
            && !s.devices_offline.is_empty()
        {
            live.push_str(r#"<h2>Devices offline</h2><p id="devices-offline">"#);
            for d in &s.devices_offline {
                let _ = write!(live, r#"<span class="chip fault">{}</span>"#, esc(d));
            }
            live.push_str("</p>");
        }
        live.push_str("<h2>Latest telemetry</h2>");
        telemetry_table(&mut live, &telemetry, now, &tz);
        Ok(Page {
            title: format!("Gateway {id}"),
            nav: Nav::Buildings,
            crumbs: format!(
                r#"<a href="/">Buildings</a> › <a href="/sites/{}">{}</a> ›"#,
                url_encode(&site),
                esc(&site)
            ),
            head: format!("<h1>Gateway {}</h1>", esc(&id.to_string())),
            live: Some(live),
            tail: String::new(),
        })
    }

    async fn statistics(&self, _s: &Session, req: &Request) -> Result<Page, PageError> {
        let now = self.now();
        let sites = by_site(self.state.store.gateways().await?);
        let mut head = String::from("<h1>Statistics</h1>");
        let Some(site) = req
            .param("site")
            .filter(|s| sites.contains_key(*s))
            .or_else(|| sites.keys().next().map(String::as_str))
            .map(str::to_owned)
        else {
            head.push_str(r#"<div class="notice">No gateway has reported to this hub yet.</div>"#);
            return Ok(stats_page(head, String::new()));
        };
        let gws = sites.get(&site).map(Vec::as_slice).unwrap_or_default();
        let (tz, tz_name, tz_note) = zone_of_site(gws);
        let mut notes: Vec<String> = Vec::new();
        if let Some(n) = tz_note {
            notes.push(n);
        }
        let hours = match self
            .state
            .store
            .doc(SETTING_KIND, WORKING_HOURS_KEY)
            .await?
        {
            Some(doc) => WorkingHours::from_setting(&doc).unwrap_or_else(|e| {
                notes.push(format!("The working-hours setting is ignored: {e}."));
                WorkingHours::default()
            }),
            None => WorkingHours::default(),
        };
        let today = jiff::Timestamp::from_millisecond(now)
            .map(|t| t.to_zoned(tz.clone()).date())
            .unwrap_or_else(|_| jiff::civil::date(1970, 1, 1));
        let (range, range_error) = requested_range(req, today);
        let floor = req
            .param("floor")
            .filter(|f| gws.iter().any(|g| g.id.gateway() == *f));
        let room = req
            .param("room")
            .and_then(|r| r.split_once('/'))
            .filter(|(g, r)| {
                gws.iter()
                    .any(|x| x.id.gateway() == *g && rooms_of(x).iter().any(|y| y.id == *r))
                    && floor.is_none_or(|f| f == *g)
            });
        let view = if req.param("view") == Some("week") {
            Granularity::Week
        } else {
            Granularity::Day
        };
        selector_form(&mut head, &sites, &site, floor, room, view, &range);
        if let Some(e) = range_error {
            let _ = write!(
                head,
                r#"<div class="error" id="range-error">{}</div>"#,
                esc(&e)
            );
        }
        // Every gateway's events over the fetch window.
        let (from_ms, to_ms) = match range.fetch_window(&tz) {
            Ok(w) => w,
            Err(e) => {
                let _ = write!(head, r#"<div class="error">{}</div>"#, esc(&e.to_string()));
                return Ok(stats_page(head, String::new()));
            }
        };
        let mut inputs: Vec<(String, Vec<String>, Vec<crate::wire::Event>)> = Vec::new();
        for g in gws {
            let events = self
                .state
                .store
                .events_between(&g.id, from_ms, to_ms)
                .await?;
            let rooms = rooms_of(g).iter().map(|r| r.id.clone()).collect();
            inputs.push((g.id.gateway().to_owned(), rooms, events));
        }
        let floors: Vec<FloorEvents<'_>> = inputs
            .iter()
            .map(|(g, rooms, events)| FloorEvents {
                gateway: g,
                rooms,
                events,
            })
            .collect();
        let computed = match stats::compute(&tz, &hours, &range, now, &floors) {
            Ok(s) => s,
            Err(e) => {
                let _ = write!(head, r#"<div class="error">{}</div>"#, esc(&e.to_string()));
                return Ok(stats_page(head, String::new()));
            }
        };
        let select = Selection {
            gateway: room.map(|(g, _)| g).or(floor),
            room: room.map(|(_, r)| r),
        };
        let level = match (floor, room) {
            (_, Some(_)) => Level::Room,
            (Some(_), None) => Level::Gateway,
            (None, None) => Level::Site,
        };
        let names = room_names(gws);
        let scope_name = match (floor, room) {
            (_, Some((g, r))) => format!(
                "room {} ({g})",
                names
                    .get(&(g.to_owned(), r.to_owned()))
                    .map_or(r, String::as_str)
            ),
            (Some(f), None) => format!("floor {f}"),
            (None, None) => format!("building {site}"),
        };
        let rows = computed.rows(level, view, select);
        let total = computed.rows(level, Granularity::Range, select);
        let mut body = String::new();
        let _ = write!(
            body,
            r#"<h2 id="stats-scope">{} · {} to {} · per {}</h2>"#,
            esc(&scope_name),
            range.from(),
            range.to(),
            if view == Granularity::Week {
                "ISO week"
            } else {
                "day"
            },
        );
        bar_chart(&mut body, &rows);
        body.push_str(r#"<div class="scroll">"#);
        figures_table(
            &mut body,
            "stats-periods",
            "Period",
            &rows,
            total.first(),
            |r| r.period.label(),
        );
        body.push_str("</div>");
        // The breakdown: floors of a building, rooms of a floor.
        if room.is_none() {
            let (by, title) = if floor.is_some() {
                (Level::Room, "Rooms")
            } else {
                (Level::Gateway, "Floors (gateways)")
            };
            let parts = computed.rows(by, Granularity::Range, select);
            let _ = write!(body, "<h2>{title}, whole range</h2>");
            body.push_str(r#"<div class="scroll">"#);
            figures_table(
                &mut body,
                "stats-breakdown",
                title,
                &parts,
                None,
                |r| match &r.scope {
                    Scope::Room(x) => names
                        .get(&(x.gateway.clone(), x.room.clone()))
                        .cloned()
                        .unwrap_or_else(|| x.room.clone()),
                    Scope::Gateway(g) => g.clone(),
                    Scope::Site => site.clone(),
                },
            );
            body.push_str("</div>");
        }
        if !computed.skipped.is_empty() {
            notes.push(format!(
                "{} event(s) could not be used, for example: {} (gateway {}, seq {}).",
                computed.skipped.len(),
                computed.skipped[0].why,
                computed.skipped[0].gateway,
                computed.skipped[0].seq
            ));
        }
        let _ = write!(
            body,
            r#"<footer class="notes"><p>Days and weeks are local to the building's time zone, <b>{tz}</b>. Bookable hours are the working hours, <b>{hours}</b>, of every room. Booked hours: the scheduled time of bookings that took place or were released (extensions included). Used hours: from check-in (or first presence) to the real end, and walk-ins. Occupancy is used hours within working hours over bookable hours. No-show share: no-shows over bookings. Device time saved: the time between a release or early end and the booking's scheduled end.</p>{notes}</footer>"#,
            tz = esc(&tz_name),
            hours = esc(&hours.describe()),
            notes = notes
                .iter()
                .map(|n| format!("<p>{}</p>", esc(n)))
                .collect::<String>(),
        );
        Ok(stats_page(head, body))
    }
}

fn stats_page(head: String, tail: String) -> Page {
    Page {
        title: "Statistics".into(),
        nav: Nav::Statistics,
        crumbs: String::new(),
        head,
        live: None,
        tail,
    }
}

/// The range the query asks for (`from`, `to` as YYYY-MM-DD), or the last seven days; a bad
/// range falls back to the default and says why.
fn requested_range(req: &Request, today: Date) -> (Range, Option<String>) {
    let default_from = today
        .checked_sub(jiff::Span::new().days(DEFAULT_STATS_DAYS - 1))
        .unwrap_or(today);
    let fallback = Range::new(default_from, today).unwrap_or_else(|_| Range::day(today));
    let parse = |key: &str| -> Result<Option<Date>, String> {
        match req.param(key) {
            None => Ok(None),
            Some(v) => v
                .parse::<Date>()
                .map(Some)
                .map_err(|_| format!("'{v}' is not a date like 2026-03-02")),
        }
    };
    let (from, to) = match (parse("from"), parse("to")) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(e), _) | (_, Err(e)) => return (fallback, Some(e)),
    };
    let to = to.unwrap_or(today);
    let from = from.unwrap_or_else(|| {
        to.checked_sub(jiff::Span::new().days(DEFAULT_STATS_DAYS - 1))
            .unwrap_or(to)
    });
    match Range::new(from, to) {
        Ok(r) => (r, None),
        Err(e) => (fallback, Some(format!("{e}; showing the last seven days"))),
    }
}

#[allow(clippy::too_many_arguments)]
fn selector_form(
    out: &mut String,
    sites: &BTreeMap<String, Vec<GatewayRecord>>,
    site: &str,
    floor: Option<&str>,
    room: Option<(&str, &str)>,
    view: Granularity,
    range: &Range,
) {
    out.push_str(r#"<form class="select" method="get" action="/stats" id="stats-form">"#);
    out.push_str(
        r#"<div><label for="site">Building</label><select id="site" name="site" data-autosubmit>"#,
    );
    for s in sites.keys() {
        option(out, s, s, s == site);
    }
    out.push_str("</select></div>");
    out.push_str(
        r#"<div><label for="floor">Floor</label><select id="floor" name="floor" data-autosubmit>"#,
    );
    option(out, "", "All floors", floor.is_none());
    let gws = sites.get(site).map(Vec::as_slice).unwrap_or_default();
    for g in gws {
        option(
            out,
            g.id.gateway(),
            g.id.gateway(),
            floor == Some(g.id.gateway()),
        );
    }
    out.push_str("</select></div>");
    out.push_str(
        r#"<div><label for="room">Room</label><select id="room" name="room" data-autosubmit>"#,
    );
    option(out, "", "All rooms", room.is_none());
    for g in gws {
        if floor.is_some_and(|f| f != g.id.gateway()) {
            continue;
        }
        for r in rooms_of(g) {
            let value = format!("{}/{}", g.id.gateway(), r.id);
            let label = format!("{} · {}", g.id.gateway(), display_name(r));
            option(
                out,
                &value,
                &label,
                room == Some((g.id.gateway(), r.id.as_str())),
            );
        }
    }
    out.push_str("</select></div>");
    out.push_str(r#"<div><label for="view">View</label><select id="view" name="view">"#);
    option(out, "day", "Per day", view == Granularity::Day);
    option(out, "week", "Per ISO week", view == Granularity::Week);
    out.push_str("</select></div>");
    let _ = write!(
        out,
        r#"<div><label for="from">From</label><input id="from" name="from" type="date" value="{}"></div><div><label for="to">To</label><input id="to" name="to" type="date" value="{}"></div><div><button class="primary" type="submit">Show</button></div></form>"#,
        range.from(),
        range.to()
    );
}

fn option(out: &mut String, value: &str, label: &str, selected: bool) {
    let _ = write!(
        out,
        r#"<option value="{}"{}>{}</option>"#,
        esc(value),
        if selected { " selected" } else { "" },
        esc(label)
    );
}

/// Booked and used share of bookable hours per period, as bars.
fn bar_chart(out: &mut String, rows: &[Row]) {
    if rows.is_empty() {
        return;
    }
    let n = rows.len() as f64;
    let (w, h, top, bottom, left) = (1000.0, 190.0, 8.0, 22.0, 34.0);
    let plot_h: f64 = h - top - bottom;
    let slot = (w - left) / n;
    let bar = (slot * 0.38).max(0.5);
    out.push_str(r#"<div class="chart" id="stats-chart"><svg viewBox="0 0 1000 190" preserveAspectRatio="none" role="img" aria-label="Booked and used share of bookable hours">"#);
    for pct in [0, 50, 100] {
        let y = top + plot_h * (1.0 - f64::from(pct) / 100.0);
        let _ = write!(
            out,
            r#"<line class="grid" x1="{left}" x2="{w}" y1="{y:.1}" y2="{y:.1}"/><text x="0" y="{:.1}">{pct}%</text>"#,
            y + 4.0
        );
    }
    let every = (rows.len() / 14).max(1);
    for (i, r) in rows.iter().enumerate() {
        let x = left + slot * i as f64 + slot * 0.1;
        for (k, (class, share)) in [
            ("booked", r.figures.booked_share()),
            ("used", r.figures.occupancy_share()),
        ]
        .into_iter()
        .enumerate()
        {
            let v = share.unwrap_or(0.0).clamp(0.0, 1.0);
            let bh = plot_h * v;
            let _ = write!(
                out,
                r#"<rect class="{class}" x="{:.1}" y="{:.1}" width="{bar:.1}" height="{bh:.1}"><title>{} {class}: {}</title></rect>"#,
                x + bar * k as f64,
                top + plot_h - bh,
                esc(&r.period.label()),
                percent(share),
            );
        }
        if i % every == 0 {
            let label = match r.period.iso_week {
                Some((_, wk)) => format!("W{wk:02}"),
                None => r.period.first.strftime("%m-%d").to_string(),
            };
            let _ = write!(
                out,
                r#"<text x="{:.1}" y="{:.1}">{}</text>"#,
                x,
                h - 6.0,
                esc(&label)
            );
        }
    }
    out.push_str(r#"</svg><div class="legend"><i class="booked"></i>booked share<i class="used"></i>occupancy (used share) of bookable hours</div></div>"#);
}

/// A table of figures, one row per `rows` entry and an optional total row.
fn figures_table(
    out: &mut String,
    id: &str,
    first: &str,
    rows: &[Row],
    total: Option<&Row>,
    label: impl Fn(&Row) -> String,
) {
    let _ = write!(
        out,
        r#"<table class="figures" id="{id}"><thead><tr><th rowspan="2">{first}</th><th class="group" colspan="3">Hours</th><th rowspan="2">Occupancy</th><th class="group" colspan="3">Bookings</th><th class="group" colspan="4">Released or ended early</th><th class="num" rowspan="2">Walk-ins</th><th class="num" rowspan="2">Exten&shy;sions</th><th class="num" rowspan="2">Device time saved</th></tr><tr><th class="num">bookable</th><th class="num">booked</th><th class="num">used</th><th class="num">all</th><th class="num">held</th><th class="num">no-shows</th><th class="num">no-show</th><th class="num">vacancy</th><th class="num">early</th><th class="num">cancelled</th></tr></thead><tbody>"#,
    );
    for r in rows {
        figures_row(out, &label(r), r, "");
    }
    if let Some(t) = total {
        figures_row(out, "Total", t, "total");
    }
    out.push_str("</tbody></table>");
}

fn figures_row(out: &mut String, label: &str, r: &Row, class: &str) {
    let f = &r.figures;
    let other: u32 = f
        .releases
        .iter()
        .filter(|(k, _)| {
            !matches!(
                k,
                Release::NoShow | Release::Vacancy | Release::EndedEarly | Release::Cancelled
            )
        })
        .map(|(_, n)| n)
        .sum();
    let occupancy = f.occupancy_share();
    let _ = write!(
        out,
        r#"<tr class="{class}" data-row="{key}"><td>{label}</td><td class="num" data-k="bookable_h">{}</td><td class="num" data-k="booked_h">{}</td><td class="num" data-k="used_h">{}</td><td data-k="occupancy">{} {}</td><td class="num" data-k="bookings">{}</td><td class="num" data-k="held">{}</td><td class="num" data-k="no_shows">{} <span class="muted small">({})</span></td><td class="num" data-k="released_no_show">{}</td><td class="num" data-k="released_vacancy">{}</td><td class="num" data-k="released_ended_early">{}</td><td class="num" data-k="released_cancelled">{}{}</td><td class="num" data-k="walk_ins">{}</td><td class="num" data-k="extensions">{}</td><td class="num" data-k="saved">{}</td></tr>"#,
        hours_text(f.bookable_ms),
        hours_text(f.booked_ms),
        hours_text(f.used_ms),
        share_bar(occupancy),
        percent(occupancy),
        f.bookings,
        f.held,
        f.no_shows,
        percent(f.no_show_share()),
        f.released(&Release::NoShow),
        f.released(&Release::Vacancy),
        f.released(&Release::EndedEarly),
        f.released(&Release::Cancelled),
        if other > 0 {
            format!(r#" <span class="muted small">(+{other} other)</span>"#)
        } else {
            String::new()
        },
        f.walk_ins,
        f.extensions,
        duration_text(f.saved_device_ms),
        class = class,
        key = esc(&if class == "total" {
            "total".to_owned()
        } else {
            label.to_owned()
        }),
        label = esc(label),
    );
}

fn share_bar(share: Option<f64>) -> String {
    let v = share.unwrap_or(0.0).clamp(0.0, 1.0);
    format!(
        r#"<svg class="bar" viewBox="0 0 100 10" preserveAspectRatio="none" aria-hidden="true"><rect class="track" width="100" height="10"/><rect class="used" width="{:.1}" height="10"/></svg>"#,
        v * 100.0
    )
}

fn hours_text(ms: i64) -> String {
    format!("{:.1}", ms as f64 / 3_600_000.0)
}

fn percent(share: Option<f64>) -> String {
    share.map_or_else(|| "–".to_owned(), |s| format!("{:.1} %", s * 100.0))
}

/// "1 h 20 min", "45 min", "0 min".
fn duration_text(ms: i64) -> String {
    let min = ms / 60_000;
    match (min / 60, min % 60) {
        (0, m) => format!("{m} min"),
        (h, 0) => format!("{h} h"),
        (h, m) => format!("{h} h {m} min"),
    }
}

fn gateway_href(id: &GatewayId) -> String {
    format!(
        "/sites/{}/{}",
        url_encode(id.site()),
        url_encode(id.gateway())
    )
}

fn gateway_row(out: &mut String, g: &GatewayRecord, now: i64) {
    let online = is_online(g);
    let tz = zone_of_record(g);
    let (outbox, devices_off, devices_total, tz_name) = match &g.status {
        Some(s) => (
            s.outbox_depth,
            s.devices_offline.len(),
            s.devices_total,
            s.timezone.as_str(),
        ),
        None => (0, 0, 0, "UTC"),
    };
    let _ = write!(
        out,
        r#"<tr class="{cls}" data-gateway="{id}"><td><a href="{href}"><b>{gw}</b></a></td><td>{badge}</td><td><span class="ago">{ago}</span> <span class="muted small">{abs}</span></td><td class="num">{outbox}</td><td class="num">{devices_off} / {devices_total}</td><td class="num">{rooms}</td><td>{tz_name}</td></tr>"#,
        cls = if online { "" } else { "offline" },
        id = esc(&g.id.to_string()),
        href = gateway_href(&g.id),
        gw = esc(g.id.gateway()),
        badge = online_badge(online),
        ago = esc(&ago(now, g.last_seen_ms)),
        abs = esc(&local_text(g.last_seen_ms, &tz, "%Y-%m-%d %H:%M")),
        rooms = rooms_of(g).len(),
        tz_name = esc(tz_name),
    );
}

fn online_badge(online: bool) -> &'static str {
    if online {
        r#"<span class="badge online">online</span>"#
    } else {
        r#"<span class="badge offline">offline</span>"#
    }
}

/// A floor's rooms as cards; an offline gateway's rooms are shown as last reported.
fn floor_section(out: &mut String, g: &GatewayRecord, now: i64, heading: bool) {
    let online = is_online(g);
    let tz = zone_of_record(g);
    let _ = write!(
        out,
        r#"<section class="floor{}" data-floor="{}">"#,
        if online { "" } else { " offline" },
        esc(&g.id.to_string())
    );
    if heading {
        let _ = write!(
            out,
            r#"<div class="floor-head"><h3><a href="{}">{}</a></h3>{}<span class="facts">last seen {}</span></div>"#,
            gateway_href(&g.id),
            esc(g.id.gateway()),
            online_badge(online),
            esc(&ago(now, g.last_seen_ms)),
        );
    }
    if !online {
        let _ = write!(
            out,
            r#"<div class="offline-note">Gateway offline since about {} ({}). Room states below are as it last reported them.</div>"#,
            esc(&local_text(g.last_seen_ms, &tz, "%Y-%m-%d %H:%M %Z")),
            esc(&ago(now, g.last_seen_ms)),
        );
    }
    let rooms = rooms_of(g);
    if rooms.is_empty() {
        out.push_str(r#"<p class="muted">No rooms reported.</p>"#);
    } else {
        out.push_str(r#"<div class="rooms">"#);
        for r in rooms {
            room_card(out, r, &tz, now, online);
        }
        out.push_str("</div>");
    }
    out.push_str("</section>");
}

fn room_card(out: &mut String, r: &RoomStatus, tz: &TimeZone, now: i64, online: bool) {
    let state_class = if online {
        state_class(&r.state)
    } else {
        "unknown"
    };
    let _ = write!(
        out,
        r#"<article class="room" data-room="{id}" data-state="{state}"><div class="band s-{class}"><b title="{id}">{name}</b><span>{label}</span></div><div class="body"><div class="line muted">presence: {occ}</div>"#,
        id = esc(&r.id),
        state = esc(&r.state),
        class = state_class,
        name = esc(display_name(r)),
        label = esc(&state_label(&r.state)),
        occ = esc(&r.occupancy),
    );
    booking_line(out, "Now", r.current.as_ref(), tz, now);
    booking_line(out, "Next", r.next.as_ref(), tz, now);
    if !r.faults.is_empty() {
        out.push_str(r#"<div class="line faults">"#);
        for f in &r.faults {
            let _ = write!(out, r#"<span class="chip fault">⚠ {}</span>"#, esc(f));
        }
        out.push_str("</div>");
    }
    out.push_str("</div></article>");
}

fn booking_line(out: &mut String, what: &str, b: Option<&BookingGlance>, tz: &TimeZone, now: i64) {
    let Some(b) = b else { return };
    let same_day = |ms: i64| local_text(ms, tz, "%Y-%m-%d") == local_text(now, tz, "%Y-%m-%d");
    let start_fmt = if same_day(b.start_ms) {
        "%H:%M"
    } else {
        "%a %d %b %H:%M"
    };
    let _ = write!(
        out,
        r#"<div class="line"><span class="muted">{what}</span> {}–{} <b>{}</b> <span class="muted">{}</span></div>"#,
        esc(&local_text(b.start_ms, tz, start_fmt)),
        esc(&local_text(b.end_ms, tz, "%H:%M")),
        esc(&b.subject),
        esc(&b.organizer),
    );
}

fn telemetry_table(out: &mut String, samples: &[PointSample], now: i64, tz: &TimeZone) {
    if samples.is_empty() {
        out.push_str(r#"<p class="muted" id="telemetry">No telemetry received.</p>"#);
        return;
    }
    out.push_str(
        r#"<table id="telemetry"><thead><tr><th>Device</th><th>Point</th><th class="num">Value</th><th>At</th></tr></thead><tbody>"#,
    );
    for s in samples {
        let value = match s.value {
            Some(v) if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 => format!("{v:.0}"),
            Some(v) => format!("{v:.2}"),
            None => r#"<span class="badge offline">unavailable</span>"#.to_owned(),
        };
        let _ = write!(
            out,
            r#"<tr><td>{}</td><td>{}</td><td class="num">{}</td><td title="{}">{}</td></tr>"#,
            esc(&s.device),
            esc(&s.point),
            value,
            esc(&local_text(s.at_ms, tz, "%Y-%m-%d %H:%M:%S")),
            esc(&ago(now, s.at_ms)),
        );
    }
    out.push_str("</tbody></table>");
}

/// Chips of a building's rooms by state (rooms of offline gateways as "unknown").
fn state_chips(gws: &[GatewayRecord]) -> String {
    let mut counts: BTreeMap<(usize, String), usize> = BTreeMap::new();
    for g in gws {
        for r in rooms_of(g) {
            let state = if is_online(g) {
                r.state.clone()
            } else {
                "unknown".to_owned()
            };
            *counts.entry((state_order(&state), state)).or_default() += 1;
        }
    }
    if counts.is_empty() {
        return r#"<span class="muted">no rooms</span>"#.to_owned();
    }
    counts
        .into_iter()
        .map(|((_, state), n)| {
            format!(
                r#"<span class="chip s-{}" data-state="{}">{n} {}</span>"#,
                state_class(&state),
                esc(&state),
                esc(&state_label(&state).to_lowercase())
            )
        })
        .collect()
}

fn state_order(state: &str) -> usize {
    ["in_meeting", "occupied", "starting_soon", "free", "closed"]
        .iter()
        .position(|s| *s == state)
        .unwrap_or(9)
}

/// The CSS class of a room state (unknown states get a neutral colour).
fn state_class(state: &str) -> &'static str {
    match state {
        "free" => "free",
        "starting_soon" => "starting_soon",
        "in_meeting" => "in_meeting",
        "occupied" => "occupied",
        "closed" => "closed",
        _ => "unknown",
    }
}

fn state_label(state: &str) -> String {
    match state {
        "free" => "Free".to_owned(),
        "starting_soon" => "Starting soon".to_owned(),
        "in_meeting" => "In meeting".to_owned(),
        "occupied" => "Occupied (walk-in)".to_owned(),
        "closed" => "Closed".to_owned(),
        "unknown" => "Unknown (gateway offline)".to_owned(),
        other => other.replace('_', " "),
    }
}

fn display_name(r: &RoomStatus) -> &str {
    if r.name.trim().is_empty() {
        &r.id
    } else {
        &r.name
    }
}

fn room_names(gws: &[GatewayRecord]) -> HashMap<(String, String), String> {
    gws.iter()
        .flat_map(|g| {
            rooms_of(g).iter().map(move |r| {
                (
                    (g.id.gateway().to_owned(), r.id.clone()),
                    display_name(r).to_owned(),
                )
            })
        })
        .collect()
}

fn is_online(g: &GatewayRecord) -> bool {
    g.status.as_ref().is_some_and(|s| s.online)
}

fn rooms_of(g: &GatewayRecord) -> &[RoomStatus] {
    g.status.as_ref().map_or(&[], |s| s.rooms.as_slice())
}

fn by_site(gateways: Vec<GatewayRecord>) -> BTreeMap<String, Vec<GatewayRecord>> {
    let mut sites: BTreeMap<String, Vec<GatewayRecord>> = BTreeMap::new();
    for g in gateways {
        sites.entry(g.id.site().to_owned()).or_default().push(g);
    }
    for gws in sites.values_mut() {
        gws.sort_by(|a, b| a.id.gateway().cmp(b.id.gateway()));
    }
    sites
}

fn zone_of_record(g: &GatewayRecord) -> TimeZone {
    g.status
        .as_ref()
        .and_then(|s| TimeZone::get(&s.timezone).ok())
        .unwrap_or(TimeZone::UTC)
}

/// A building's time zone: its first gateway's (by id) that names a known one; with a note
/// when the gateways disagree or name an unknown zone.
fn zone_of_site(gws: &[GatewayRecord]) -> (TimeZone, String, Option<String>) {
    let names: Vec<&str> = gws
        .iter()
        .filter_map(|g| g.status.as_ref())
        .map(|s| s.timezone.as_str())
        .collect();
    let mut note = None;
    if names.windows(2).any(|w| w[0] != w[1]) {
        note = Some(format!(
            "The building's gateways report different time zones ({}); the first known one is used.",
            names.join(", ")
        ));
    }
    for n in &names {
        if let Ok(tz) = TimeZone::get(n) {
            return (tz, (*n).to_owned(), note);
        }
    }
    if let Some(n) = names.first() {
        note = Some(format!(
            "The time zone '{n}' is unknown to the hub; UTC is used."
        ));
    }
    (TimeZone::UTC, "UTC".to_owned(), note)
}

/// "just now", "3 minutes ago", "2 hours ago", "5 days ago"; "never" for 0.
fn ago(now: i64, then: i64) -> String {
    if then <= 0 {
        return "never".to_owned();
    }
    let secs = (now - then) / 1000;
    if secs < 0 {
        return "just now".to_owned();
    }
    let plural = |n: i64, unit: &str| format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" });
    match secs {
        0..=59 => "just now".to_owned(),
        60..=5_399 => plural(secs / 60, "minute"),
        5_400..=172_799 => plural((secs + 1_800) / 3_600, "hour"),
        _ => plural(secs / 86_400, "day"),
    }
}

fn local_text(ms: i64, tz: &TimeZone, fmt: &str) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_zoned(tz.clone()).strftime(fmt).to_string())
        .unwrap_or_default()
}

fn utc_text(ms: i64) -> String {
    local_text(ms, &TimeZone::UTC, "%Y-%m-%d %H:%M UTC")
}

/// A full page with the header, navigation and the logout form.
fn layout(page: &Page, session: Option<&Session>) -> String {
    let mut header =
        String::from(r#"<header class="top"><a class="brand" href="/">roomgate hub</a><nav>"#);
    for (nav, href, label) in [
        (Nav::Buildings, "/", "Buildings"),
        (Nav::Statistics, "/stats", "Statistics"),
    ] {
        let _ = write!(
            header,
            r#"<a href="{href}"{}>{label}</a>"#,
            if nav == page.nav {
                r#" class="on""#
            } else {
                ""
            }
        );
    }
    header.push_str("</nav>");
    if let Some(s) = session {
        let _ = write!(
            header,
            r#"<div class="who">{}<span>{}</span><form method="post" action="/logout"><input type="hidden" name="csrf" value="{}"><button type="submit">Sign out</button></form></div>"#,
            if page.live.is_some() {
                r#"<span class="live-state" id="live-state">live</span>"#
            } else {
                ""
            },
            esc(&s.user),
            esc(&s.csrf),
        );
    }
    header.push_str("</header>");
    let mut body = String::new();
    let _ = write!(
        body,
        r#"<main>{}{}"#,
        if page.crumbs.is_empty() {
            String::new()
        } else {
            format!(r#"<div class="crumbs">{}</div>"#, page.crumbs)
        },
        page.head
    );
    if let Some(live) = &page.live {
        let _ = write!(
            body,
            r#"<div id="live" data-refresh="{REFRESH_SECS}">{live}</div>"#
        );
    }
    body.push_str(&page.tail);
    body.push_str("</main>");
    document(&page.title, &header, &body)
}

fn document(title: &str, header: &str, body: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{} · roomgate hub</title><link rel="stylesheet" href="/assets/dashboard.css"><script src="/assets/dashboard.js" defer></script></head>
<body>{header}{body}</body></html>"#,
        esc(title)
    )
}

fn error_page(status: StatusCode, message: &str) -> Response {
    let body = format!(
        r#"<main><h1>{}</h1><div class="error">{}</div><p><a href="/">Back to the buildings</a></p></main>"#,
        status.canonical_reason().unwrap_or("Error"),
        esc(message)
    );
    respond(
        status,
        "text/html; charset=utf-8",
        document("Error", "", &body),
    )
}

fn asset(name: &str) -> Response {
    let (body, mime) = match name {
        "dashboard.css" => (CSS, "text/css; charset=utf-8"),
        "dashboard.js" => (JS, "text/javascript; charset=utf-8"),
        _ => return respond(StatusCode::NOT_FOUND, "text/plain", "no such asset".into()),
    };
    let mut r = respond(StatusCode::OK, mime, body.to_owned());
    set_header(&mut r, header::CACHE_CONTROL, "max-age=300");
    r
}

/// A response with the dashboard's security headers.
fn respond(status: StatusCode, content_type: &str, body: String) -> Response {
    let mut r = warp::reply::with_status(body, status).into_response();
    set_header(&mut r, header::CONTENT_TYPE, content_type);
    set_header(&mut r, header::CACHE_CONTROL, "no-store");
    set_header(
        &mut r,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    set_header(&mut r, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set_header(&mut r, header::X_FRAME_OPTIONS, "DENY");
    set_header(&mut r, header::REFERRER_POLICY, "same-origin");
    r
}

fn redirect(location: &str) -> Response {
    let mut r = respond(StatusCode::SEE_OTHER, "text/plain", String::new());
    set_header(&mut r, header::LOCATION, location);
    r
}

fn set_header(r: &mut Response, name: header::HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        r.headers_mut().insert(name, v);
    }
}

/// Where to go after login: a local path only (no other host, no scheme).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && !n.chars().any(char::is_control)
                && !n.starts_with("/login") =>
        {
            n.to_owned()
        }
        _ => "/".to_owned(),
    }
}

/// HTML-escapes text for element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
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

/// Percent-encodes everything but unreserved characters and '/'.
fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Parses `application/x-www-form-urlencoded` text (a query string or a form body); the first
/// of repeated keys wins, undecodable pairs are dropped.
fn parse_form(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for pair in s.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if let (Some(k), Some(v)) = (form_decode(k), form_decode(v)) {
            out.entry(k).or_insert(v);
        }
    }
    out
}

fn form_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
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
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_outside_is_escaped() {
        assert_eq!(
            esc(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
    }

    #[test]
    fn forms_and_queries_decode() {
        let f = parse_form("user=ada+l&password=a%26b%3Dc&next=%2Fsites%2Fa&user=eve&bad=%zz&x");
        assert_eq!(f["user"], "ada l");
        assert_eq!(f["password"], "a&b=c");
        assert_eq!(f["next"], "/sites/a");
        assert_eq!(f["bad"], "%zz");
        assert_eq!(f["x"], "");
        assert_eq!(form_decode("%"), Some("%".into()));
        assert_eq!(form_decode("a%4"), Some("a%4".into()));
        assert_eq!(form_decode("%ff"), None, "not UTF-8");
        assert_eq!(url_encode("/stats?site=a b"), "/stats%3Fsite%3Da%20b");
    }

    #[test]
    fn only_local_paths_are_followed_after_login() {
        assert_eq!(safe_next(Some("/sites/a?x=1")), "/sites/a?x=1");
        for bad in [
            "//evil.example/",
            "https://evil.example/",
            "/\\evil",
            "/login",
            "",
        ] {
            assert_eq!(safe_next(Some(bad)), "/", "{bad}");
        }
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn times_read_like_people_say_them() {
        let now = 10_000_000_000;
        assert_eq!(ago(now, now - 30_000), "just now");
        assert_eq!(ago(now, now - 60_000), "1 minute ago");
        assert_eq!(ago(now, now - 7 * 60_000), "7 minutes ago");
        assert_eq!(ago(now, now - 3 * 3_600_000), "3 hours ago");
        assert_eq!(ago(now, now - 3 * 86_400_000), "3 days ago");
        assert_eq!(ago(now, 0), "never");
        assert_eq!(duration_text(80 * 60_000), "1 h 20 min");
        assert_eq!(duration_text(45 * 60_000), "45 min");
        assert_eq!(duration_text(120 * 60_000), "2 h");
        assert_eq!(percent(Some(0.2166)), "21.7 %");
        assert_eq!(percent(None), "–");
    }

    #[test]
    fn cross_site_posts_are_recognized() {
        let req = |origin: Option<&str>, site: Option<&str>| Request {
            cookie: None,
            addr: None,
            path: "/logout".into(),
            raw_query: String::new(),
            query: HashMap::new(),
            origin: origin.map(Into::into),
            host: Some("hub.example:8443".into()),
            fetch_site: site.map(Into::into),
        };
        assert!(!req(None, None).cross_site());
        assert!(!req(Some("https://hub.example:8443"), Some("same-origin")).cross_site());
        assert!(req(Some("https://evil.example"), None).cross_site());
        assert!(req(Some("null"), None).cross_site());
        assert!(req(None, Some("cross-site")).cross_site());
    }
}
