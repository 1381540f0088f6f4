//! The local HTTP surface (warp): health, the rooms API, the live floor page, and the door
//! panels and lobby display (`panel`), Prometheus `/metrics` and the log filter
//! (`/api/log-level`).
//!
//! Handlers translate HTTP to `GatewayHandle` calls and API errors to status codes; no
//! automation logic lives here. The API listens on loopback by default: accounts, HTTPS and
//! panel tokens arrive with the installer console.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use scenes::{Span, Timestamp};
use std::net::SocketAddr;
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use warp::filters::BoxedFilter;

use crate::api::{CredentialRequest, ErrorDto, ExtendRequest, NewBooking};
use crate::console::auth::{Caller, Role};
use crate::console::{Console, RequestInfo, need};
use crate::metrics::MetricsSource;
use crate::panel::{PanelConfig, Panels};
use crate::runtime::{ApiError, BookingRequest, GatewayHandle, REQUEST_TIMEOUT, RoomAction};

const FLOOR_PAGE: &str = include_str!("web/floor.html");

/// What the web side serves with.
#[allow(missing_debug_implementations)]
pub struct WebParts {
    pub gateway: GatewayHandle,
    pub panel: PanelConfig,
    pub metrics: Arc<MetricsSource>,
    pub site: Arc<crate::reload::SiteSource>,
    pub backup: Arc<crate::backup::BackupSource>,
    pub console: Arc<Console>,
}

/// The web side while it runs.
#[derive(Debug)]
pub struct WebServing {
    /// The console's address (HTTPS unless started plain).
    pub addr: SocketAddr,
    /// The plain-HTTP redirector's address, when there is one.
    pub redirect_addr: Option<SocketAddr>,
    main: cloud_sync::webkit::serve::Serving,
    redirect: Option<cloud_sync::webkit::serve::Serving>,
    stopping: tokio::sync::watch::Sender<bool>,
}

impl WebServing {
    /// Ends live streams, stops accepting and closes connections.
    pub async fn shutdown(self) {
        let _ = self.stopping.send(true);
        self.main.shutdown().await;
        if let Some(r) = self.redirect {
            r.shutdown().await;
        }
    }
}

/// Serves the console, the API, the panels and the display on `listen` (over TLS with `tls`),
/// and when `redirect` is given, a plain-HTTP listener there that sends browsers to HTTPS.
pub async fn serve(
    listen: SocketAddr,
    tls: Option<Arc<rustls::ServerConfig>>,
    redirect: Option<SocketAddr>,
    parts: WebParts,
) -> std::io::Result<WebServing> {
    // Live streams never end by themselves: they end when this turns true.
    let (stopping, stopping_rx) = tokio::sync::watch::channel(false);
    let panels = Arc::new(Panels::new(parts.panel, stopping_rx));
    {
        // Door panels follow the rooms of a reloaded site.
        let panels = panels.clone();
        parts.site.on_applied(move |s| panels.set_site(s));
    }
    let c = parts.console;
    let g = parts.gateway;
    let pages = crate::console::page_routes(&crate::console::PageCtx {
        console: c.clone(),
        gateway: g.clone(),
        site: parts.site.clone(),
    });
    let files = site_routes(g.clone(), parts.site, c.clone())
        .or(backup_routes(g.clone(), parts.backup, c.clone()))
        .unify()
        .boxed();
    let first = pages.or(files).unify().boxed();
    let all = routes(g, panels, parts.metrics, c, first);
    let main = cloud_sync::webkit::serve::serve(listen, tls, all).await?;
    let redirect = match redirect {
        Some(addr) => Some(
            cloud_sync::webkit::serve::serve(
                addr,
                None,
                warp::path!("healthz")
                    .and(warp::get())
                    .map(|| {
                        warp::reply::json(&serde_json::json!({ "status": "ok" })).into_response()
                    })
                    .or(crate::console::redirect_to_https(main.addr.port()))
                    .unify()
                    .boxed(),
            )
            .await?,
        ),
        None => None,
    };
    Ok(WebServing {
        addr: main.addr,
        redirect_addr: redirect.as_ref().map(|r| r.addr),
        main,
        redirect,
        stopping,
    })
}

fn with_console(
    c: &Arc<Console>,
) -> impl Filter<Extract = (Arc<Console>,), Error = Infallible> + Clone + use<> {
    let c = c.clone();
    warp::any().map(move || c.clone())
}

fn with(g: GatewayHandle) -> impl Filter<Extract = (GatewayHandle,), Error = Infallible> + Clone {
    warp::any().map(move || g.clone())
}

/// Every route: `first` (the console's pages, the site and backup files), health, the
/// console's public pages, the API (operator), the log filter (installer), metrics (scrape
/// token), panels (their tokens). Rejections are answered once, at the end of the whole
/// chain, so a page's 401 or 403 is not lost to a later route's "not found".
pub fn routes(
    g: GatewayHandle,
    panels: Arc<Panels>,
    metrics: Arc<MetricsSource>,
    c: Arc<Console>,
    first: BoxedFilter<(warp::reply::Response,)>,
) -> BoxedFilter<(warp::reply::Response,)> {
    let counted = {
        let metrics = metrics.clone();
        warp::log::custom(move |info| {
            metrics
                .http
                .request(info.path(), info.method().as_str(), info.status().as_u16());
        })
    };
    // Prometheus scrapes (text format 0.0.4). Unauthenticated like the rest of the local API
    // for now; the installer console's auth will have to let a scrape token through.
    let metrics_route = warp::path!("metrics")
        .and(warp::get())
        .and(crate::console::scrape(&c))
        .and(with(g.clone()))
        .and(warp::any().map(move || metrics.clone()))
        .then(|g: GatewayHandle, metrics: Arc<MetricsSource>| async move {
            let text = metrics.scrape(&g).await;
            warp::reply::with_header(text, "content-type", "text/plain; version=0.0.4")
                .into_response()
        });
    let audit = c.clone();
    // The service log's filter, changeable while running (RUST_LOG syntax).
    let get_log_level = warp::path!("api" / "log-level")
        .and(warp::get())
        .and(need(&c, Role::Installer))
        .map(
            |_: Caller, _: RequestInfo| match cloud_sync::daemon::logging::current_filter() {
                Some(filter) => {
                    warp::reply::json(&serde_json::json!({ "filter": filter })).into_response()
                }
                None => error(&ApiError::Unavailable(
                    "the log filter is fixed in this process".into(),
                )),
            },
        );
    let put_log_level = warp::path!("api" / "log-level")
        .and(warp::put())
        .and(need(&c, Role::Installer))
        .and(json_body::<LogLevelRequest>())
        .map(
            move |caller: Caller, req: RequestInfo, body: Result<LogLevelRequest, String>| {
                use cloud_sync::daemon::LoggingError;
                let body = match body {
                    Ok(b) => b,
                    Err(e) => return error(&ApiError::BadRequest(e)),
                };
                match cloud_sync::daemon::logging::set_filter(&body.filter) {
                    Ok(filter) => {
                        audit.audit(&caller, &req.from(), "log_level.set", "", &filter);
                        warp::reply::json(&serde_json::json!({ "filter": filter })).into_response()
                    }
                    Err(e @ LoggingError::BadFilter { .. }) => {
                        let body = ErrorDto {
                            error: e.to_string(),
                            conflict: None,
                        };
                        warp::reply::with_status(
                            warp::reply::json(&body),
                            StatusCode::UNPROCESSABLE_ENTITY,
                        )
                        .into_response()
                    }
                    Err(e) => error(&ApiError::Unavailable(e.to_string())),
                }
            },
        );
    let healthz = warp::path!("healthz")
        .and(warp::get())
        .and(with(g.clone()))
        .map(|g: GatewayHandle| {
            let s = g.snapshot();
            let online = s.devices.iter().filter(|d| d.state == "online").count();
            warp::reply::json(&serde_json::json!({
                "status": "ok",
                "site": s.site,
                "rooms": s.rooms.len(),
                "devices": s.devices.len(),
                "devices_online": online,
            }))
        });
    let page = warp::path::end()
        .and(warp::get())
        .and(need(&c, Role::Operator))
        .map(|_: Caller, _: RequestInfo| warp::reply::html(FLOOR_PAGE));
    let floor = warp::path!("api" / "floor")
        .and(warp::get())
        .and(need(&c, Role::Operator))
        .and(with(g.clone()))
        .map(|_: Caller, _: RequestInfo, g: GatewayHandle| warp::reply::json(&*g.snapshot()));
    let rooms = warp::path!("api" / "rooms")
        .and(warp::get())
        .and(need(&c, Role::Operator))
        .and(with(g.clone()))
        .map(|_: Caller, _: RequestInfo, g: GatewayHandle| warp::reply::json(&g.snapshot().rooms));
    let room = warp::path!("api" / "rooms" / String)
        .and(warp::get())
        .and(need(&c, Role::Operator))
        .and(with(g.clone()))
        .then(
            |id: String, _: Caller, _: RequestInfo, g: GatewayHandle| async move {
                let snap = g.snapshot();
                let Some(room) = snap.rooms.iter().find(|r| r.id == id) else {
                    return error(&ApiError::NotFound(format!("no room '{id}'")));
                };
                let mut room = serde_json::to_value(room).unwrap_or_default();
                match timed(g.activity(&id, 200)).await {
                    Ok(activity) => {
                        room["activity"] = serde_json::to_value(activity).unwrap_or_default()
                    }
                    Err(e) => return error(&e),
                }
                warp::reply::json(&room).into_response()
            },
        );
    let devices = warp::path!("api" / "devices")
        .and(warp::get())
        .and(need(&c, Role::Operator))
        .and(with(g.clone()))
        .map(|_: Caller, _: RequestInfo, g: GatewayHandle| {
            warp::reply::json(&g.snapshot().devices)
        });
    let buses = warp::path!("api" / "buses")
        .and(warp::get())
        .and(need(&c, Role::Operator))
        .and(with(g.clone()))
        .map(|_: Caller, _: RequestInfo, g: GatewayHandle| warp::reply::json(&g.snapshot().buses));
    let add_booking = warp::path!("api" / "rooms" / String / "bookings")
        .and(warp::post())
        .and(need(&c, Role::Operator))
        .and(json_body::<NewBooking>())
        .and(with(g.clone()))
        .and(warp::any().map({
            let panels = panels.clone();
            move || panels.clone()
        }))
        .then(
            |room: String,
             _: Caller,
             _: RequestInfo,
             body: Result<NewBooking, String>,
             g: GatewayHandle,
             panels: Arc<Panels>| async move {
                let req = match body.and_then(|b| booking_request(&g, room, b)) {
                    Ok(r) => r,
                    Err(e) => return error(&ApiError::BadRequest(e)),
                };
                match timed(g.add_booking(req)).await {
                    Ok(b) => {
                        let mut answer = serde_json::to_value(&b).unwrap_or_default();
                        // The organizer's PIN for a room whose panel asks for one.
                        if let Some(pin) = panels.pin_for(&b.room, &b.id) {
                            answer["pin"] = serde_json::Value::String(pin);
                        }
                        warp::reply::with_status(warp::reply::json(&answer), StatusCode::CREATED)
                            .into_response()
                    }
                    Err(e) => error(&e),
                }
            },
        );
    let cancel = warp::path!("api" / "rooms" / String / "bookings" / String)
        .and(warp::delete())
        .and(need(&c, Role::Operator))
        .and(with(g.clone()))
        .then(
            |room: String, id: String, _: Caller, _: RequestInfo, g: GatewayHandle| async move {
                match timed(g.cancel_booking(&room, &id)).await {
                    Ok(()) => StatusCode::NO_CONTENT.into_response(),
                    Err(e) => error(&e),
                }
            },
        );
    let checkin = warp::path!("api" / "rooms" / String / "checkin")
        .and(warp::post())
        .and(need(&c, Role::Operator))
        .and(with(g.clone()))
        .then(
            |room: String, _: Caller, _: RequestInfo, g: GatewayHandle| async move {
                action_reply(timed(g.room_action(&room, RoomAction::CheckIn)).await)
            },
        );
    let end = warp::path!("api" / "rooms" / String / "end")
        .and(warp::post())
        .and(need(&c, Role::Operator))
        .and(with(g.clone()))
        .then(
            |room: String, _: Caller, _: RequestInfo, g: GatewayHandle| async move {
                action_reply(timed(g.room_action(&room, RoomAction::EndNow)).await)
            },
        );
    let extend = warp::path!("api" / "rooms" / String / "extend")
        .and(warp::post())
        .and(need(&c, Role::Operator))
        .and(json_body::<ExtendRequest>())
        .and(with(g.clone()))
        .then(
            |room: String,
             _: Caller,
             _: RequestInfo,
             body: Result<ExtendRequest, String>,
             g: GatewayHandle| async move {
                match body.and_then(|b| extend_until(&g, &room, b)) {
                    Ok(until) => {
                        let action = RoomAction::Extend { until };
                        action_reply(timed(g.room_action(&room, action)).await)
                    }
                    Err(e) => error(&ApiError::BadRequest(e)),
                }
            },
        );
    let credential = warp::path!("api" / "rooms" / String / "credential")
        .and(warp::post())
        .and(need(&c, Role::Operator))
        .and(json_body::<CredentialRequest>())
        .and(with(g.clone()))
        .then(
            |room: String,
             _: Caller,
             _: RequestInfo,
             body: Result<CredentialRequest, String>,
             g: GatewayHandle| async move {
                match body {
                    Ok(b) if !b.credential.trim().is_empty() && b.credential.len() <= 256 => {
                        let action = RoomAction::Credential(b.credential);
                        action_reply(timed(g.room_action(&room, action)).await)
                    }
                    Ok(_) => error(&ApiError::BadRequest(
                        "credential must be 1 to 256 characters".into(),
                    )),
                    Err(e) => error(&ApiError::BadRequest(e)),
                }
            },
        );
    let scene = warp::path!("api" / "rooms" / String / "scenes" / String)
        .and(warp::post())
        .and(need(&c, Role::Operator))
        .and(with(g.clone()))
        .then(|room: String, scene: String, caller: Caller, _: RequestInfo, g: GatewayHandle| async move {
            match timed(g.run_scene(&room, &scene, &caller.who())).await {
                Ok(()) => warp::reply::json(&serde_json::json!({ "result": "ok" })).into_response(),
                Err(e) => error(&e),
            }
        });
    let chain = first
        .or(healthz.map(Reply::into_response))
        .unify()
        .boxed()
        .or(crate::console::public_routes(c.clone()))
        .unify()
        .boxed()
        .or(crate::console::logout_route(c.clone()))
        .unify()
        .boxed()
        .or(page.map(Reply::into_response))
        .unify()
        .boxed()
        .or(floor.map(Reply::into_response))
        .unify()
        .boxed()
        .or(rooms.map(Reply::into_response))
        .unify()
        .boxed()
        .or(room)
        .unify()
        .boxed()
        .or(devices.map(Reply::into_response))
        .unify()
        .boxed()
        .or(buses.map(Reply::into_response))
        .unify()
        .boxed()
        .or(add_booking)
        .unify()
        .boxed()
        .or(cancel)
        .unify()
        .boxed()
        .or(checkin)
        .unify()
        .boxed()
        .or(end)
        .unify()
        .boxed()
        .or(extend)
        .unify()
        .boxed()
        .or(credential)
        .unify()
        .boxed()
        .or(scene)
        .unify()
        .boxed()
        .or(metrics_route)
        .unify()
        .boxed()
        .or(get_log_level)
        .unify()
        .boxed()
        .or(put_log_level)
        .unify()
        .boxed()
        .or(crate::panel::routes(g, panels, c))
        .unify()
        .boxed();
    chain
        .recover(recover)
        .unify()
        .with(counted)
        .map(Reply::into_response)
        .boxed()
}

/// `PUT /api/log-level`: a `RUST_LOG`-style filter.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct LogLevelRequest {
    filter: String,
}

/// A JSON body, or the reason it could not be read (as a value, so the handler answers 400).
fn json_body<T: serde::de::DeserializeOwned + Send>()
-> impl Filter<Extract = (Result<T, String>,), Error = Rejection> + Clone {
    warp::body::content_length_limit(64 * 1024)
        .and(warp::body::bytes())
        .map(|body: warp::hyper::body::Bytes| {
            serde_json::from_slice::<T>(&body).map_err(|e| format!("invalid JSON body: {e}"))
        })
}

fn booking_request(
    g: &GatewayHandle,
    room: String,
    b: NewBooking,
) -> Result<BookingRequest, String> {
    let now = g.clock.now();
    let (start, end) = match (b.start, b.end, b.minutes) {
        (None, None, Some(m)) if (1..=24 * 60).contains(&m) => {
            (now, now + Span::minutes(i64::from(m)))
        }
        (None, None, Some(m)) => return Err(format!("minutes must be 1..=1440 (got {m})")),
        (Some(s), Some(e), None) => (g.time.parse(&s)?, g.time.parse(&e)?),
        _ => return Err("give either start and end, or minutes from now".into()),
    };
    let subject = b.subject.unwrap_or_else(|| "Walk-in".into());
    if subject.chars().count() > 200 {
        return Err("subject is longer than 200 characters".into());
    }
    Ok(BookingRequest {
        room,
        subject,
        organizer: b.organizer.unwrap_or_else(|| "door panel".into()),
        start,
        end,
        attendees: b.attendees,
    })
}

/// The answer to a room action: what happened, in words.
fn action_reply(r: Result<String, ApiError>) -> warp::reply::Response {
    match r {
        Ok(text) => warp::reply::json(&serde_json::json!({ "result": text })).into_response(),
        Err(e) => error(&e),
    }
}

/// The new end of the running meeting: `minutes` after its current end, or `until`.
fn extend_until(g: &GatewayHandle, room: &str, b: ExtendRequest) -> Result<Timestamp, String> {
    match (b.minutes, b.until) {
        (Some(m), None) if (1..=480).contains(&m) => {
            let snap = g.snapshot();
            let current = snap
                .rooms
                .iter()
                .find(|r| r.id == room)
                .and_then(|r| r.current.as_ref())
                .ok_or_else(|| format!("no meeting is running in '{room}'"))?;
            Ok(Timestamp::from_millis(current.end_ms) + Span::minutes(i64::from(m)))
        }
        (Some(m), None) => Err(format!("minutes must be 1..=480 (got {m})")),
        (None, Some(u)) => g.time.parse(&u),
        _ => Err("give either minutes or until".into()),
    }
}

async fn timed<T>(f: impl Future<Output = Result<T, ApiError>>) -> Result<T, ApiError> {
    tokio::time::timeout(REQUEST_TIMEOUT, f)
        .await
        .unwrap_or_else(|_| {
            Err(ApiError::Unavailable(
                "the gateway is busy; try again".into(),
            ))
        })
}

fn error(e: &ApiError) -> warp::reply::Response {
    let (status, conflict) = match e {
        ApiError::NotFound(_) => (StatusCode::NOT_FOUND, None),
        ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, None),
        ApiError::Conflict { with, .. } => (StatusCode::CONFLICT, Some((**with).clone())),
        ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, None),
        ApiError::Refused(_) => (StatusCode::CONFLICT, None),
    };
    let body = ErrorDto {
        error: e.to_string(),
        conflict,
    };
    warp::reply::with_status(warp::reply::json(&body), status).into_response()
}

async fn recover(r: Rejection) -> Result<warp::reply::Response, Infallible> {
    if let Some(d) = r.find::<crate::console::Denied>() {
        return Ok(d.into_response());
    }
    let (status, msg) = if r.is_not_found() {
        (StatusCode::NOT_FOUND, "no such page".to_owned())
    } else if r.find::<warp::reject::MethodNotAllowed>().is_some() {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed".to_owned(),
        )
    } else if r.find::<warp::reject::PayloadTooLarge>().is_some() {
        (StatusCode::PAYLOAD_TOO_LARGE, "body too large".to_owned())
    } else {
        (StatusCode::BAD_REQUEST, format!("{r:?}"))
    };
    let body = ErrorDto {
        error: msg,
        conflict: None,
    };
    Ok(warp::reply::with_status(warp::reply::json(&body), status).into_response())
}

// ---------------------------------------------------------------------------------------
// The site file: GET /api/site, POST /api/site[?dry_run=1]
// ---------------------------------------------------------------------------------------

/// `GET /api/site` (the running site as TOML) and `POST /api/site` (a whole site file as the
/// body: validated, diffed, applied without a restart, written back; `?dry_run=1` answers the
/// diff and the plan only). Errors in the file answer 422 with each error's line and column.
///
/// No authentication yet, like the rest of the local API (which listens on loopback by
/// default): these routes get the console's accounts when they arrive, and must not be
/// exposed before then.
pub fn site_routes(
    g: GatewayHandle,
    source: Arc<crate::reload::SiteSource>,
    c: Arc<Console>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone + Send + Sync + 'static
{
    let with_source = {
        let source = source.clone();
        warp::any().map(move || source.clone())
    };
    let get = warp::path!("api" / "site")
        .and(warp::get())
        .and(need(&c, Role::Installer))
        .and(with_source.clone())
        .then(
            |_: Caller, _: RequestInfo, source: Arc<crate::reload::SiteSource>| async move {
                match source.current_toml().await {
                    Ok(text) => warp::reply::with_header(
                        text,
                        "content-type",
                        "application/toml; charset=utf-8",
                    )
                    .into_response(),
                    Err(e) => site_refusal(&e),
                }
            },
        );
    let post = warp::path!("api" / "site")
        .and(warp::post())
        .and(need(&c, Role::Installer))
        .and(with_console(&c))
        .and(warp::query::<std::collections::HashMap<String, String>>())
        .and(warp::body::content_length_limit(1024 * 1024))
        .and(warp::body::bytes())
        .and(with(g))
        .and(with_source)
        .then(
            |caller: Caller,
             req: RequestInfo,
             c: Arc<Console>,
             query: std::collections::HashMap<String, String>,
             body: warp::hyper::body::Bytes,
             g: GatewayHandle,
             source: Arc<crate::reload::SiteSource>| async move {
                let dry_run = query
                    .get("dry_run")
                    .is_some_and(|v| matches!(v.as_str(), "1" | "true" | "yes"));
                let Ok(text) = std::str::from_utf8(&body) else {
                    return error(&ApiError::BadRequest(
                        "the site file must be UTF-8 text".into(),
                    ));
                };
                match source.change(&g, text, dry_run).await {
                    Ok(answer) => {
                        if !dry_run {
                            let detail = answer.diff.join("\n");
                            c.audit(&caller, &req.from(), "site.change", "site file", &detail);
                        }
                        warp::reply::json(&answer).into_response()
                    }
                    Err(e) => site_refusal(&e),
                }
            },
        );
    get.or(post).unify()
}

// ---------------------------------------------------------------------------------------
// Backup and restore: GET /api/backup, POST /api/restore[?verify_only=1]
// ---------------------------------------------------------------------------------------

/// Uploaded archives larger than this are refused (the body is held in memory to verify it).
const MAX_RESTORE_BODY: u64 = 512 * 1024 * 1024;

/// `GET /api/backup` streams an archive of the running gateway (`backup.rs`: site file, a
/// consistent store snapshot, PIN key, certificates) as `roomgate-<site>-<time>Z.tar.gz`.
/// `POST /api/restore` takes an archive as the body: `?verify_only=1` answers its manifest
/// after every check; otherwise it is verified and staged, and the next start of the gateway
/// installs it (answer 202: restart to apply). A refused archive answers 422 with the entry
/// and the reason, and changes nothing.
///
/// No authentication yet, like the rest of the local API (loopback by default): the console's
/// accounts will protect these routes (a backup holds the PIN key and private keys), and they
/// must not be exposed before then.
pub fn backup_routes(
    g: GatewayHandle,
    backup: Arc<crate::backup::BackupSource>,
    c: Arc<Console>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone + Send + Sync + 'static
{
    let with_backup = warp::any().map(move || backup.clone());
    let get = warp::path!("api" / "backup")
        .and(warp::get())
        .and(need(&c, Role::Installer))
        .and(with_console(&c))
        .and(with(g))
        .and(with_backup.clone())
        .then(
            |caller: Caller,
             req: RequestInfo,
             c: Arc<Console>,
             g: GatewayHandle,
             backup: Arc<crate::backup::BackupSource>| async move {
                c.audit(&caller, &req.from(), "backup.download", "", "");
                let at = jiff::Timestamp::from_millisecond(g.clock.now().as_millis())
                    .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
                let text = match backup.site_text().await {
                    Ok(t) => t,
                    Err(e) => return error(&ApiError::Unavailable(e.to_string())),
                };
                let made =
                    tokio::task::spawn_blocking(move || backup.archive_to_temp(&text, at)).await;
                let (tmp, manifest) = match made {
                    Ok(Ok(m)) => m,
                    Ok(Err(e)) => return error(&ApiError::Unavailable(format!("backup: {e}"))),
                    Err(e) => return error(&ApiError::Unavailable(format!("backup: {e}"))),
                };
                let (file, len) = match tmp.reopen().and_then(|f| Ok((f.metadata()?.len(), f))) {
                    Ok((len, f)) => (tokio::fs::File::from_std(f), len),
                    Err(e) => return error(&ApiError::Unavailable(format!("backup: {e}"))),
                };
                let name = crate::backup::archive_file_name(&manifest.site, at);
                let reply = warp::reply::stream(archive_stream(file, tmp));
                let reply = warp::reply::with_header(reply, "content-type", "application/gzip");
                let reply = warp::reply::with_header(reply, "content-length", len.to_string());
                warp::reply::with_header(
                    reply,
                    "content-disposition",
                    format!("attachment; filename=\"{name}\""),
                )
                .into_response()
            },
        );
    let post = warp::path!("api" / "restore")
        .and(warp::post())
        .and(need(&c, Role::Installer))
        .and(with_console(&c))
        .and(warp::query::<std::collections::HashMap<String, String>>())
        .and(warp::body::content_length_limit(MAX_RESTORE_BODY))
        .and(warp::body::bytes())
        .and(with_backup)
        .then(
            |caller: Caller,
             req: RequestInfo,
             c: Arc<Console>,
             query: std::collections::HashMap<String, String>,
             body: warp::hyper::body::Bytes,
             backup: Arc<crate::backup::BackupSource>| async move {
                let verify_only = query
                    .get("verify_only")
                    .is_some_and(|v| matches!(v.as_str(), "1" | "true" | "yes"));
                let done = tokio::task::spawn_blocking(move || {
                    if verify_only {
                        crate::backup::verify(&body).map(|v| v.manifest)
                    } else {
                        backup.stage_upload(&body)
                    }
                })
                .await;
                match done {
                    Ok(Ok(manifest)) if verify_only => warp::reply::json(&serde_json::json!({
                        "verified": true,
                        "manifest": manifest,
                    }))
                    .into_response(),
                    Ok(Ok(manifest)) => {
                        c.audit(
                            &caller,
                            &req.from(),
                            "restore.staged",
                            &manifest.site,
                            "applies at the next start",
                        );
                        warp::reply::with_status(
                            warp::reply::json(&serde_json::json!({
                                "verified": true,
                                "staged": true,
                                "manifest": manifest,
                                "next": "restart the gateway to apply it; the current files are \
                                         kept as *.before-restore",
                            })),
                            StatusCode::ACCEPTED,
                        )
                        .into_response()
                    }
                    Ok(Err(e @ crate::backup::BackupError::Refused { .. })) => {
                        warp::reply::with_status(
                            warp::reply::json(&ErrorDto {
                                error: e.to_string(),
                                conflict: None,
                            }),
                            StatusCode::UNPROCESSABLE_ENTITY,
                        )
                        .into_response()
                    }
                    Ok(Err(e)) => error(&ApiError::Unavailable(format!("restore: {e}"))),
                    Err(e) => error(&ApiError::Unavailable(format!("restore: {e}"))),
                }
            },
        );
    get.or(post).unify()
}

/// The archive file in 64 KiB chunks; the temporary file is removed when the stream ends.
fn archive_stream(
    file: tokio::fs::File,
    tmp: tempfile::NamedTempFile,
) -> impl futures_util::Stream<Item = Result<warp::hyper::body::Bytes, std::io::Error>> + Send + Sync
{
    use tokio::io::AsyncReadExt as _;
    futures_util::stream::unfold(Some((file, tmp)), |state| async move {
        let (mut file, tmp) = state?;
        let mut buf = vec![0u8; 64 * 1024];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(buf.into()), Some((file, tmp))))
            }
            Err(e) => Some((Err(e), None)),
        }
    })
}

fn site_refusal(e: &crate::reload::SiteRefusal) -> warp::reply::Response {
    use crate::reload::SiteRefusal;
    match e {
        SiteRefusal::Gateway(api) => error(api),
        SiteRefusal::Invalid(_) => warp::reply::with_status(
            warp::reply::json(&serde_json::json!({
                "error": e.to_string(),
                "errors": e.errors(),
            })),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .into_response(),
        SiteRefusal::NoDocument => warp::reply::with_status(
            warp::reply::json(&ErrorDto {
                error: e.to_string(),
                conflict: None,
            }),
            StatusCode::NOT_FOUND,
        )
        .into_response(),
    }
}
