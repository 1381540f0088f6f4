//! Door panels (`/panel/{room}`) and the lobby display (`/display`): server-rendered pages
//! with a little embedded JavaScript, their live streams (server-sent events), and the panel's
//! actions (check-in by button or PIN, walk-in, extend, end) answered in the page's language.
//!
//! Everything here reads the snapshot the main loop publishes and acts through
//! `GatewayHandle`, so the panels keep working without the cloud. Pages and streams are built
//! from [`FloorView`], a translated, display-ready view of the rooms; the browser only places
//! its texts. Every panel route passes [`panel_access`], the one place the per-room panel token
//! will be checked.

pub mod pin;

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::Stream;
use scenes::{RoomKind, Span, Timestamp};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use crate::api::{FloorSnapshot, RoomDto, TimeFmt};
use crate::console::auth::{Caller, PANEL_COOKIE, Scope};
use crate::console::{Console, Denied, RequestInfo, request_info};
use crate::i18n::{Lang, Msg};
use crate::runtime::{ApiError, BookingRequest, GatewayHandle, REQUEST_TIMEOUT, RoomAction};
use crate::site::Site;
use pin::{Attempts, PinKey, PinKeyError};

const PANEL_PAGE: &str = include_str!("assets/panel.html");
const DISPLAY_PAGE: &str = include_str!("assets/display.html");
const PAGES_CSS: &str = include_str!("assets/pages.css");
const PANEL_JS: &str = include_str!("assets/panel.js");
const DISPLAY_JS: &str = include_str!("assets/display.js");

/// Walk-in lengths offered on a free room's panel, in minutes.
pub const WALK_IN_MINUTES: [u32; 3] = [15, 30, 60];
/// Extensions offered during a meeting, in minutes.
pub const EXTEND_MINUTES: [u32; 2] = [15, 30];
/// SSE keep-alive comments, so proxies and tablets notice a dead link.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How soon a browser reconnects a lost stream (sent as the SSE `retry` field).
const RECONNECT: Duration = Duration::from_secs(2);

/// What the panels need to know of a room beyond the snapshot: its check-in policy.
#[derive(Debug, Clone)]
pub struct PanelRoom {
    pub kind: RoomKind,
    pub checkin_required: bool,
    pub checkin_opens: Span,
    pub no_show_after: Span,
    /// The panel asks for the booking's PIN (`Policy::checkin_pin`).
    pub pin: bool,
}

/// The panels' configuration and state, shared by their routes.
#[derive(Debug)]
pub struct Panels {
    /// Swapped whole when a site reload changes the rooms (`set_site`).
    rooms: std::sync::RwLock<Arc<HashMap<String, PanelRoom>>>,
    pins: PinKey,
    attempts: Mutex<Attempts>,
    /// Turns `true` when the server stops, so open streams end and shutdown is not held up.
    stopping: watch::Receiver<bool>,
}

/// What `Panels` is made from (before the server runs).
#[derive(Debug)]
pub struct PanelConfig {
    pub rooms: HashMap<String, PanelRoom>,
    pub pins: PinKey,
}

impl PanelConfig {
    /// The rooms' check-in policies from the site, and the PIN key from the data directory.
    pub fn from_site(site: &Site, data: &Path) -> Result<PanelConfig, PinKeyError> {
        Ok(PanelConfig {
            rooms: panel_rooms(site),
            pins: PinKey::load_or_create(data)?,
        })
    }
}

/// Each room's check-in policy as its panel needs it.
fn panel_rooms(site: &Site) -> HashMap<String, PanelRoom> {
    site.rooms
        .iter()
        .map(|r| {
            let p = &r.config.policy;
            let room = PanelRoom {
                kind: r.config.kind,
                checkin_required: p.checkin_required,
                checkin_opens: p.checkin_opens,
                no_show_after: p.no_show_after,
                pin: p.checkin_pin,
            };
            (r.config.id.to_string(), room)
        })
        .collect()
}

impl Panels {
    pub fn new(cfg: PanelConfig, stopping: watch::Receiver<bool>) -> Panels {
        Panels {
            rooms: std::sync::RwLock::new(Arc::new(cfg.rooms)),
            pins: cfg.pins,
            attempts: Mutex::default(),
            stopping,
        }
    }

    /// The rooms' panel settings as they are now.
    fn rooms(&self) -> Arc<HashMap<String, PanelRoom>> {
        let rooms = self
            .rooms
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(&rooms)
    }

    /// Takes the rooms of a reloaded site (added, removed, changed check-in policies).
    pub fn set_site(&self, site: &Site) {
        let rooms = Arc::new(panel_rooms(site));
        *self
            .rooms
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = rooms;
    }

    /// The PIN to give the organizer of `booking`, when `room`'s panel asks for one.
    pub fn pin_for(&self, room: &str, booking: &str) -> Option<String> {
        self.rooms()
            .get(room)
            .filter(|r| r.pin)
            .map(|_| self.pins.pin(booking))
    }
}

// ---------------------------------------------------------------------------------------------
// Views: what a panel or the display shows, translated.

/// The rooms as the pages show them, in one language.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FloorView {
    pub lang: &'static str,
    pub site: String,
    /// The gateway's time, `09:05` (the tablet's own clock may be wrong).
    pub clock: String,
    pub date: String,
    pub summary: String,
    pub rooms: Vec<RoomView>,
}

/// One room on a panel or the display.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RoomView {
    pub id: String,
    pub name: String,
    /// `free`, `starting_soon`, `in_meeting`, `occupied`, `closed`: the colour.
    pub state: String,
    pub label: String,
    /// What the state means now: "Free until 14:00", "Busy until 10:30".
    pub headline: String,
    pub seats: String,
    pub current: Option<MeetingView>,
    pub next: Option<MeetingView>,
    /// Shown when there is no next meeting.
    pub nothing_next: String,
    pub can_check_in: bool,
    /// Check-in asks for the booking's PIN.
    pub pin: bool,
    /// Walk-in lengths; empty when the room cannot be booked now.
    pub walk_in: Vec<Choice>,
    /// Extensions; empty when no meeting runs.
    pub extend: Vec<Choice>,
    pub can_end: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MeetingView {
    pub subject: String,
    pub organizer: String,
    /// `09:00–10:00`.
    pub time: String,
    /// "Checked in" or "Check in by 09:10" where check-in matters.
    pub note: Option<String>,
    pub checked_in: bool,
}

/// A button with minutes, enabled or not.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Choice {
    pub minutes: u32,
    pub enabled: bool,
}

fn ts(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms)
}

/// The rooms of `snap` (all, or only `room`) as the pages show them in `lang`.
pub fn floor_view(
    snap: &FloorSnapshot,
    panels: &Panels,
    time: &TimeFmt,
    lang: Lang,
    room: Option<&str>,
) -> FloorView {
    let now = ts(snap.now_ms);
    let cfgs = panels.rooms();
    let rooms: Vec<RoomView> = snap
        .rooms
        .iter()
        .filter(|r| room.is_none_or(|id| r.id == id))
        .map(|r| room_view(r, cfgs.get(&r.id), now, time, lang))
        .collect();
    let free = snap.rooms.iter().filter(|r| r.state == "free").count();
    let (free, total) = (free.to_string(), snap.rooms.len().to_string());
    FloorView {
        lang: lang.tag(),
        site: snap.site.clone(),
        clock: time.hh_mm(now),
        date: date_line(time, now, lang),
        summary: lang.f(Msg::RoomsFree, &[("free", &free), ("total", &total)]),
        rooms,
    }
}

fn date_line(time: &TimeFmt, now: Timestamp, lang: Lang) -> String {
    let Ok(t) = jiff::Timestamp::from_millisecond(now.as_millis()) else {
        return String::new();
    };
    let z = t.to_zoned(time.tz.clone());
    let day = z.day().to_string();
    lang.f(
        Msg::DateLine,
        &[
            (
                "weekday",
                lang.t(Msg::weekday(z.weekday().to_monday_one_offset())),
            ),
            ("month", lang.t(Msg::month(z.month()))),
            ("day", &day),
        ],
    )
}

/// Same local day (for "free until 14:00" rather than a time tomorrow).
fn same_day(time: &TimeFmt, a: Timestamp, b: Timestamp) -> bool {
    let (a, b) = (time.rfc3339(a), time.rfc3339(b));
    a.get(..10) == b.get(..10)
}

pub fn room_view(
    r: &RoomDto,
    cfg: Option<&PanelRoom>,
    now: Timestamp,
    time: &TimeFmt,
    lang: Lang,
) -> RoomView {
    let checkin_required = cfg.is_none_or(|c| c.checkin_required);
    let closed = r.kind == "closed" || r.state == "closed";
    let meeting = |b: &crate::api::BookingDto| {
        let note = if b.checked_in {
            Some(lang.t(Msg::CheckedIn).to_owned())
        } else if checkin_required {
            let by = ts(b.start_ms) + cfg.map_or(Span::minutes(10), |c| c.no_show_after);
            Some(lang.f(Msg::CheckInBy, &[("time", &time.hh_mm(by))]))
        } else {
            None
        };
        MeetingView {
            subject: b.subject.clone(),
            organizer: lang.f(Msg::ByOrganizer, &[("name", &b.organizer)]),
            time: format!(
                "{}–{}",
                time.hh_mm(ts(b.start_ms)),
                time.hh_mm(ts(b.end_ms))
            ),
            note,
            checked_in: b.checked_in,
        }
    };
    // The booking a check-in now would be for: the running one, or the next once its window
    // is open.
    let opens = cfg.map_or(Span::minutes(15), |c| c.checkin_opens);
    let due = r
        .current
        .as_ref()
        .or(r.next.as_ref().filter(|n| ts(n.start_ms) - opens <= now));
    let can_check_in = checkin_required && !closed && due.is_some_and(|b| !b.checked_in);
    let headline = match r.state {
        "free" => match &r.next {
            Some(n) if same_day(time, now, ts(n.start_ms)) => {
                lang.f(Msg::FreeUntil, &[("time", &time.hh_mm(ts(n.start_ms)))])
            }
            _ => lang.t(Msg::FreeNoBooking).to_owned(),
        },
        "starting_soon" => match &r.next {
            Some(n) => lang.f(Msg::StartsAt, &[("time", &time.hh_mm(ts(n.start_ms)))]),
            None => String::new(),
        },
        "in_meeting" => match &r.current {
            Some(c) => lang.f(Msg::BusyUntil, &[("time", &time.hh_mm(ts(c.end_ms)))]),
            None => String::new(),
        },
        "occupied" => lang.t(Msg::OccupiedWalkIn).to_owned(),
        _ => lang.t(Msg::ClosedNotBookable).to_owned(),
    };
    let minutes_left = |until_ms: Option<i64>, from: Timestamp, m: u32| {
        until_ms.is_none_or(|u| ts(u) >= from + Span::minutes(i64::from(m)))
    };
    let next_start = r.next.as_ref().map(|n| n.start_ms);
    let walk_in = if r.state == "free" && !closed && r.current.is_none() {
        WALK_IN_MINUTES
            .iter()
            .map(|&m| Choice {
                minutes: m,
                enabled: minutes_left(next_start, now, m),
            })
            .collect()
    } else {
        Vec::new()
    };
    let running = r.state == "in_meeting" && !closed;
    // The engine extends up to the next booking at most, so an extension is offered while
    // any time is left before it (and the answer says the end it got).
    let extend = match (&r.current, running) {
        (Some(c), true) => EXTEND_MINUTES
            .iter()
            .map(|&m| Choice {
                minutes: m,
                enabled: next_start.is_none_or(|n| n > c.end_ms),
            })
            .collect(),
        _ => Vec::new(),
    };
    RoomView {
        id: r.id.clone(),
        name: r.name.clone(),
        state: r.state.to_owned(),
        label: Msg::for_state(r.state).map_or_else(|| r.state.to_owned(), |m| lang.t(m).to_owned()),
        headline,
        seats: match r.capacity {
            0 => String::new(),
            1 => lang.t(Msg::OneSeat).to_owned(),
            n => lang.f(Msg::Seats, &[("n", &n.to_string())]),
        },
        current: r.current.as_ref().map(meeting),
        next: r.next.as_ref().map(meeting),
        nothing_next: lang.t(Msg::NothingNext).to_owned(),
        can_check_in,
        pin: can_check_in && cfg.is_some_and(|c| c.pin),
        walk_in,
        extend,
        can_end: running && r.current.is_some(),
    }
}

// ---------------------------------------------------------------------------------------------
// Routes.

fn with<T: Clone + Send>(v: T) -> impl Filter<Extract = (T,), Error = Infallible> + Clone {
    warp::any().map(move || v.clone())
}

/// The page's language and whether it came from `?lang=` (then it is remembered in a cookie).
pub(crate) fn lang() -> impl Filter<Extract = (Lang, bool), Error = Rejection> + Clone {
    let query = warp::query::<HashMap<String, String>>()
        .or(warp::any().map(HashMap::new))
        .unify();
    query
        .and(warp::cookie::optional::<String>("lang"))
        .and(warp::header::optional::<String>("accept-language"))
        .map(
            |q: HashMap<String, String>, cookie: Option<String>, accept: Option<String>| {
                let asked = q.get("lang").and_then(|l| Lang::from_tag(l));
                let lang = Lang::choose(
                    q.get("lang").map(String::as_str),
                    cookie.as_deref(),
                    accept.as_deref(),
                );
                (lang, asked.is_some())
            },
        )
        .untuple_one()
}

/// What a panel or display request was let in with: a cookie to set when the token came in
/// the URL (`?token=`, the link the installer puts on the tablet), so later requests carry it.
#[derive(Debug, Clone, Default)]
pub struct Grant {
    set_cookie: Option<String>,
}

impl Grant {
    fn apply(&self, mut r: warp::reply::Response) -> warp::reply::Response {
        if let Some(c) = &self.set_cookie {
            crate::console::set_header(&mut r, warp::http::header::SET_COOKIE, c);
        }
        r
    }
}

/// The caller of a panel or display request: a token from `?token=`, the panel cookie, a
/// bearer, or a console session.
fn panel_caller(c: &Console, req: &RequestInfo) -> (Option<Caller>, Grant) {
    let query_token = req
        .query
        .split('&')
        .find_map(|kv| kv.strip_prefix("token="))
        .filter(|t| !t.is_empty());
    if let Some(token) = query_token {
        let caller = c.accounts.token(token).ok().flatten();
        // Scoped to what the token opens, so one browser can hold a panel's and the display's
        // cookie side by side (room ids are path-safe: the site file's id rule).
        let set_cookie = caller.as_ref().map(|k| {
            let path = match k {
                Caller::Token {
                    scope: Scope::Panel { room },
                    ..
                } => format!("/panel/{room}"),
                Caller::Token {
                    scope: Scope::Display,
                    ..
                } => "/display".to_owned(),
                _ => "/".to_owned(),
            };
            format!(
                "{PANEL_COOKIE}={token}; HttpOnly; SameSite=Strict; Secure; Path={path}; Max-Age=315360000"
            )
        });
        return (caller, Grant { set_cookie });
    }
    if let Some(token) = cloud_sync::webkit::auth::cookie_value(req.cookie.as_deref(), PANEL_COOKIE)
        && req.bearer().is_none()
        && let Ok(Some(caller)) = c.accounts.token(token)
    {
        return (Some(caller), Grant::default());
    }
    (crate::console::find_caller(c, req), Grant::default())
}

/// A state change from a panel page must carry `X-Roomgate-Panel: 1` (a header other sites
/// cannot make a browser send) or, from a console session, its CSRF token; and must not come
/// from another site.
fn panel_write_allowed(req: &RequestInfo, caller: &Caller) -> bool {
    if req.cross_site() {
        return false;
    }
    match caller {
        Caller::Session { csrf, .. } => {
            req.headers_panel
                || req
                    .csrf
                    .as_deref()
                    .is_some_and(|t| cloud_sync::webkit::auth::constant_time_eq(t, csrf))
        }
        Caller::Token { .. } => req.headers_panel,
    }
}

fn denied(status: StatusCode, reason: &str) -> Rejection {
    warp::reject::custom(Denied {
        status,
        reason: reason.to_owned(),
        redirect: None,
    })
}

/// The one place a door panel's right to `room` is checked: a panel token of that room (or an
/// API token, or a console session); 401 otherwise, and 403 for a write without the panel
/// header (see [`panel_write_allowed`]).
fn panel_access(
    c: Arc<Console>,
) -> impl Filter<Extract = (String, Grant), Error = Rejection> + Clone {
    warp::path::param::<String>()
        .and(request_info())
        .and(warp::any().map(move || c.clone()))
        .and_then(|room: String, req: RequestInfo, c: Arc<Console>| async move {
            let (caller, grant) = panel_caller(&c, &req);
            let Some(caller) = caller.filter(|k| k.may_use_panel(&room)) else {
                c.accounts.note_unauthenticated();
                return Err(denied(
                    StatusCode::UNAUTHORIZED,
                    "this door panel needs its link with the room's panel token; ask the installer",
                ));
            };
            if req.method == "POST" && !panel_write_allowed(&req, &caller) {
                c.accounts.note_csrf_refused();
                return Err(denied(StatusCode::FORBIDDEN, "refused: not sent by the panel page"));
            }
            Ok((room, grant))
        })
        .untuple_one()
}

/// The lobby display's check: a display token (or an API token, or a console session).
fn display_access(c: Arc<Console>) -> impl Filter<Extract = (Grant,), Error = Rejection> + Clone {
    request_info()
        .and(warp::any().map(move || c.clone()))
        .and_then(|req: RequestInfo, c: Arc<Console>| async move {
            let (caller, grant) = panel_caller(&c, &req);
            if caller.is_some_and(|k| k.may_see_display()) {
                Ok(grant)
            } else {
                c.accounts.note_unauthenticated();
                Err(denied(
                    StatusCode::UNAUTHORIZED,
                    "the lobby display needs its link with a display token; ask the installer",
                ))
            }
        })
}

/// The panel and display routes (pages, streams, actions).
pub fn routes(
    g: GatewayHandle,
    panels: Arc<Panels>,
    c: Arc<Console>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    let panel = warp::path("panel").and(panel_access(c.clone()));
    let page = panel
        .clone()
        .and(warp::path::end())
        .and(warp::get())
        .and(lang())
        .and(with(g.clone()))
        .and(with(panels.clone()))
        .map(
            |room: String,
             grant: Grant,
             lang: Lang,
             remember: bool,
             g: GatewayHandle,
             p: Arc<Panels>| {
                grant.apply(remember_lang(
                    panel_page(&g, &p, &room, lang),
                    lang,
                    remember,
                ))
            },
        );
    let state = panel
        .clone()
        .and(warp::path("state"))
        .and(warp::path::end())
        .and(warp::get())
        .and(lang())
        .and(with(g.clone()))
        .and(with(panels.clone()))
        .map(
            |room: String, _: Grant, lang: Lang, _: bool, g: GatewayHandle, p: Arc<Panels>| {
                let snap = g.snapshot();
                if !snap.rooms.iter().any(|r| r.id == room) {
                    return not_found_json(lang, &room);
                }
                warp::reply::json(&floor_view(&snap, &p, &g.time, lang, Some(&room)))
                    .into_response()
            },
        );
    let events = panel
        .clone()
        .and(warp::path("events"))
        .and(warp::path::end())
        .and(warp::get())
        .and(lang())
        .and(with(g.clone()))
        .and(with(panels.clone()))
        .map(
            |room: String, _: Grant, lang: Lang, _: bool, g: GatewayHandle, p: Arc<Panels>| {
                if !g.snapshot().rooms.iter().any(|r| r.id == room) {
                    return not_found_json(lang, &room);
                }
                sse(stream(g, p, lang, Some(room)))
            },
        );
    let action = panel
        .and(warp::path::param::<String>())
        .and(warp::path::end())
        .and(warp::post())
        .and(lang())
        .and(
            warp::body::content_length_limit(4 * 1024)
                .and(warp::body::bytes())
                .map(|b: warp::hyper::body::Bytes| {
                    serde_json::from_slice::<ActionBody>(&b).unwrap_or_default()
                }),
        )
        .and(with(g.clone()))
        .and(with(panels.clone()))
        .then(
            |room: String,
             _: Grant,
             what: String,
             lang: Lang,
             _: bool,
             body: ActionBody,
             g: GatewayHandle,
             p: Arc<Panels>| async move {
                let answer = act(&g, &p, &room, &what, body, lang).await;
                let status = answer.status;
                warp::reply::with_status(warp::reply::json(&answer), status).into_response()
            },
        );
    let display = warp::path("display")
        .and(warp::path::end())
        .and(warp::get())
        .and(display_access(c.clone()))
        .and(lang())
        .and(with(g.clone()))
        .and(with(panels.clone()))
        .map(
            |grant: Grant, lang: Lang, remember: bool, g: GatewayHandle, p: Arc<Panels>| {
                grant.apply(remember_lang(display_page(&g, &p, lang), lang, remember))
            },
        );
    let display_state = warp::path!("display" / "state")
        .and(warp::get())
        .and(display_access(c.clone()))
        .and(lang())
        .and(with(g.clone()))
        .and(with(panels.clone()))
        .map(
            |_: Grant, lang: Lang, _: bool, g: GatewayHandle, p: Arc<Panels>| {
                warp::reply::json(&floor_view(&g.snapshot(), &p, &g.time, lang, None))
                    .into_response()
            },
        );
    let floor_events = warp::path!("display" / "events")
        .or(warp::path!("api" / "events"))
        .unify()
        .and(warp::get())
        .and(display_access(c))
        .and(lang())
        .and(with(g))
        .and(with(panels))
        .map(
            |_: Grant, lang: Lang, _: bool, g: GatewayHandle, p: Arc<Panels>| {
                sse(stream(g, p, lang, None))
            },
        );
    page.or(state)
        .unify()
        .or(events)
        .unify()
        .or(action)
        .unify()
        .or(display)
        .unify()
        .or(display_state)
        .unify()
        .or(floor_events)
        .unify()
}

fn remember_lang(page: warp::reply::Response, lang: Lang, remember: bool) -> warp::reply::Response {
    if !remember {
        return page;
    }
    let cookie = format!(
        "lang={}; Path=/; Max-Age=31536000; SameSite=Lax",
        lang.tag()
    );
    warp::reply::with_header(page, "set-cookie", cookie).into_response()
}

fn not_found_json(lang: Lang, room: &str) -> warp::reply::Response {
    let body = serde_json::json!({ "error": lang.f(Msg::NoSuchRoom, &[("room", room)]) });
    warp::reply::with_status(warp::reply::json(&body), StatusCode::NOT_FOUND).into_response()
}

fn sse(
    events: impl Stream<Item = Result<warp::sse::Event, Infallible>> + Send + Sync + 'static,
) -> warp::reply::Response {
    let events = warp::sse::keep_alive().interval(KEEP_ALIVE).stream(events);
    warp::reply::with_header(warp::sse::reply(events), "cache-control", "no-store").into_response()
}

/// The floor (or one room) as `view` events: one at once, then one at each change. A task per
/// stream follows the snapshot and ends when the browser goes away, the gateway stops or the
/// server stops (the browser then reconnects by itself).
fn stream(
    g: GatewayHandle,
    panels: Arc<Panels>,
    lang: Lang,
    room: Option<String>,
) -> impl Stream<Item = Result<warp::sse::Event, Infallible>> + Send + Sync + 'static {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<warp::sse::Event>(4);
    let mut snapshots = g.watch();
    let mut stopping = panels.stopping.clone();
    tokio::spawn(async move {
        let mut last: Option<FloorView> = None;
        loop {
            let snap = snapshots.borrow_and_update().clone();
            let view = floor_view(&snap, &panels, &g.time, lang, room.as_deref());
            if last.as_ref() != Some(&view) {
                let mut event = warp::sse::Event::default().event("view");
                if last.is_none() {
                    event = event.retry(RECONNECT);
                }
                if let Ok(event) = event.json_data(&view)
                    && tx.send(event).await.is_err()
                {
                    return;
                }
                last = Some(view);
            }
            tokio::select! {
                changed = snapshots.changed() => if changed.is_err() { return },
                _ = stopping.wait_for(|stop| *stop) => return,
                () = tx.closed() => return,
            }
        }
    });
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|e| e.map(Ok)))
}

// ---------------------------------------------------------------------------------------------
// Pages.

/// Escapes text for HTML content and attribute values.
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

/// JSON for a `<script type="application/json">` block (no `</script>` can end it early).
fn script_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v)
        .unwrap_or_else(|_| "null".into())
        .replace('<', "\\u003c")
}

/// The language switch: each language in its own name, the current one marked.
fn lang_switch(lang: Lang) -> String {
    Lang::ALL
        .iter()
        .map(|l| {
            let current = if *l == lang {
                " aria-current=\"true\""
            } else {
                ""
            };
            format!(
                r#"<a id="lang-{tag}" href="?lang={tag}" lang="{tag}"{current}>{name}</a>"#,
                tag = l.tag(),
                name = l.native_name()
            )
        })
        .collect::<Vec<_>>()
        .join("")
}

/// Fills the `{{name}}` slots of a page template in one pass (values are already escaped, and
/// a value that happens to contain `{{x}}` is never filled again).
fn render(template: &str, slots: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + 8 * 1024);
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        match after.find("}}") {
            Some(close) => {
                let name = &after[..close];
                match slots.iter().find(|(k, _)| *k == name) {
                    Some((_, v)) => out.push_str(v),
                    None => out.push_str(&rest[open..open + close + 4]),
                }
                rest = &after[close + 2..];
            }
            None => {
                out.push_str(&rest[open..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

fn page_reply(html: String, status: StatusCode) -> warp::reply::Response {
    let r = warp::reply::with_status(warp::reply::html(html), status);
    warp::reply::with_header(r, "cache-control", "no-store").into_response()
}

fn panel_page(g: &GatewayHandle, p: &Panels, room: &str, lang: Lang) -> warp::reply::Response {
    let snap = g.snapshot();
    if !snap.rooms.iter().any(|r| r.id == room) {
        let text = esc(&lang.f(Msg::NoSuchRoom, &[("room", room)]));
        let html = format!(
            "<!doctype html><html lang=\"{}\"><meta charset=\"utf-8\"><title>{text}</title>\
             <style>{PAGES_CSS}</style><body class=\"missing\"><p>{text}</p></body></html>",
            lang.tag()
        );
        return page_reply(html, StatusCode::NOT_FOUND);
    }
    let view = floor_view(&snap, p, &g.time, lang, Some(room));
    let Some(r) = view.rooms.first() else {
        return page_reply(String::new(), StatusCode::NOT_FOUND);
    };
    let t = |m: Msg| esc(lang.t(m));
    let walk_in = WALK_IN_MINUTES
        .iter()
        .map(|m| {
            format!(
                r#"<button id="walkin-{m}" class="choice" data-minutes="{m}">{}</button>"#,
                esc(&lang.f(Msg::Minutes, &[("n", &m.to_string())]))
            )
        })
        .collect::<String>();
    let extend = EXTEND_MINUTES
        .iter()
        .map(|m| {
            format!(
                r#"<button id="extend-{m}" class="choice" data-minutes="{m}">{}</button>"#,
                esc(&lang.f(Msg::PlusMinutes, &[("n", &m.to_string())]))
            )
        })
        .collect::<String>();
    let html = render(
        PANEL_PAGE,
        &[
            ("lang", lang.tag()),
            ("css", PAGES_CSS),
            ("js", PANEL_JS),
            ("room_id", &esc(room)),
            ("room_name", &esc(&r.name)),
            ("seats", &esc(&r.seats)),
            ("state", &esc(&r.state)),
            ("label", &esc(&r.label)),
            ("headline", &esc(&r.headline)),
            ("clock", &esc(&view.clock)),
            ("date", &esc(&view.date)),
            ("now", &t(Msg::Now)),
            ("next", &t(Msg::Next)),
            ("no_meeting", &t(Msg::NoMeeting)),
            ("check_in", &t(Msg::CheckIn)),
            ("book_now", &t(Msg::BookNow)),
            ("walk_in_buttons", &walk_in),
            ("extend", &t(Msg::Extend)),
            ("extend_buttons", &extend),
            ("end_meeting", &t(Msg::EndMeeting)),
            ("end_confirm", &t(Msg::EndMeetingConfirm)),
            ("cancel", &t(Msg::Cancel)),
            ("ok", &t(Msg::Ok)),
            ("clear", &t(Msg::Clear)),
            ("enter_pin", &t(Msg::EnterPin)),
            ("working", &t(Msg::Working)),
            ("unreachable", &t(Msg::Unreachable)),
            ("lang_switch", &lang_switch(lang)),
            ("view_json", &script_json(&view)),
        ],
    );
    page_reply(html, StatusCode::OK)
}

fn display_page(g: &GatewayHandle, p: &Panels, lang: Lang) -> warp::reply::Response {
    let view = floor_view(&g.snapshot(), p, &g.time, lang, None);
    let t = |m: Msg| esc(lang.t(m));
    let html = render(
        DISPLAY_PAGE,
        &[
            ("lang", lang.tag()),
            ("css", PAGES_CSS),
            ("js", DISPLAY_JS),
            ("title", &t(Msg::FloorTitle)),
            ("site", &esc(&view.site)),
            ("summary", &esc(&view.summary)),
            ("clock", &esc(&view.clock)),
            ("date", &esc(&view.date)),
            ("now", &t(Msg::Now)),
            ("next", &t(Msg::Next)),
            ("unreachable", &t(Msg::Unreachable)),
            ("lang_switch", &lang_switch(lang)),
            ("view_json", &script_json(&view)),
        ],
    );
    page_reply(html, StatusCode::OK)
}

// ---------------------------------------------------------------------------------------------
// Actions.

/// The body of a panel action: minutes for walk-in and extend, the PIN for check-in.
#[derive(Debug, Default, Deserialize)]
struct ActionBody {
    minutes: Option<u32>,
    pin: Option<String>,
}

/// The server's answer to a panel action, in the page's language.
#[derive(Debug, Serialize)]
pub struct ActionAnswer {
    pub ok: bool,
    pub message: String,
    /// The gateway's own words (the engine's reason), when they add something.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip)]
    status: StatusCode,
}

impl ActionAnswer {
    fn ok(message: String) -> ActionAnswer {
        ActionAnswer {
            ok: true,
            message,
            detail: None,
            status: StatusCode::OK,
        }
    }
    fn refused(status: StatusCode, message: String, detail: Option<String>) -> ActionAnswer {
        ActionAnswer {
            ok: false,
            message,
            detail: detail.filter(|d| !d.trim().is_empty()),
            status,
        }
    }
    fn from_error(lang: Lang, headline: Msg, e: &ApiError, time: &TimeFmt) -> ActionAnswer {
        match e {
            ApiError::Conflict { with, .. } => ActionAnswer::refused(
                StatusCode::CONFLICT,
                lang.f(
                    Msg::BookedBetween,
                    &[
                        ("start", &time.hh_mm(ts(with.start_ms))),
                        ("end", &time.hh_mm(ts(with.end_ms))),
                    ],
                ),
                None,
            ),
            ApiError::NotFound(d) => ActionAnswer::refused(
                StatusCode::NOT_FOUND,
                lang.t(headline).into(),
                Some(d.clone()),
            ),
            ApiError::BadRequest(d) => ActionAnswer::refused(
                StatusCode::BAD_REQUEST,
                lang.t(headline).into(),
                Some(d.clone()),
            ),
            ApiError::Unavailable(d) => ActionAnswer::refused(
                StatusCode::SERVICE_UNAVAILABLE,
                lang.t(headline).into(),
                Some(d.clone()),
            ),
            ApiError::Refused(d) => ActionAnswer::refused(
                StatusCode::CONFLICT,
                lang.t(headline).into(),
                Some(d.clone()),
            ),
        }
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

/// Does `what` at `room` and says what came of it, judged by the room's state afterwards (the
/// engine answers a refused check-in or extension with its reason, not with an error).
async fn act(
    g: &GatewayHandle,
    p: &Panels,
    room: &str,
    what: &str,
    body: ActionBody,
    lang: Lang,
) -> ActionAnswer {
    let snap = g.snapshot();
    let Some(before) = snap.rooms.iter().find(|r| r.id == room).cloned() else {
        return ActionAnswer::refused(
            StatusCode::NOT_FOUND,
            lang.f(Msg::NoSuchRoom, &[("room", room)]),
            None,
        );
    };
    let cfgs = p.rooms();
    let cfg = cfgs.get(room);
    let now = g.clock.now();
    let after = || async {
        let _ = timed(g.settle()).await;
        g.snapshot().rooms.iter().find(|r| r.id == room).cloned()
    };
    match what {
        "checkin" => {
            let opens = cfg.map_or(Span::minutes(15), |c| c.checkin_opens);
            let due = before.current.clone().or(before
                .next
                .clone()
                .filter(|n| ts(n.start_ms) - opens <= now));
            if cfg.is_some_and(|c| c.pin) {
                let Some(due) = &due else {
                    return ActionAnswer::refused(
                        StatusCode::CONFLICT,
                        lang.t(Msg::RefusedCheckIn).into(),
                        None,
                    );
                };
                if let Err(answer) = check_pin(p, room, &due.id, body.pin.as_deref(), now, g, lang)
                {
                    return answer;
                }
            }
            let words = match timed(g.room_action(room, RoomAction::CheckIn)).await {
                Ok(w) => w,
                Err(e) => return ActionAnswer::from_error(lang, Msg::RefusedCheckIn, &e, &g.time),
            };
            let checked = after().await.is_some_and(|r| {
                [r.current, r.next]
                    .into_iter()
                    .flatten()
                    .any(|b| b.checked_in && due.as_ref().is_none_or(|d| d.id == b.id))
            });
            if checked {
                ActionAnswer::ok(lang.t(Msg::DoneCheckedIn).into())
            } else {
                ActionAnswer::refused(
                    StatusCode::CONFLICT,
                    lang.t(Msg::RefusedCheckIn).into(),
                    Some(words),
                )
            }
        }
        "walkin" => {
            let minutes = body.minutes.unwrap_or(0);
            if !WALK_IN_MINUTES.contains(&minutes) {
                return ActionAnswer::refused(
                    StatusCode::BAD_REQUEST,
                    lang.t(Msg::RefusedBooking).into(),
                    Some(format!("minutes must be one of {WALK_IN_MINUTES:?}")),
                );
            }
            let req = BookingRequest {
                room: room.to_owned(),
                subject: lang.t(Msg::WalkInSubject).into(),
                organizer: "door panel".into(),
                start: now,
                end: now + Span::minutes(i64::from(minutes)),
                attendees: Vec::new(),
            };
            let booking = match timed(g.add_booking(req)).await {
                Ok(b) => b,
                Err(e) => return ActionAnswer::from_error(lang, Msg::RefusedBooking, &e, &g.time),
            };
            // The person booking stands at the door: the walk-in is checked in at once.
            if cfg.is_none_or(|c| c.checkin_required)
                && let Err(e) = timed(g.room_action(room, RoomAction::CheckIn)).await
            {
                tracing::warn!("walk-in {} booked but not checked in: {e}", booking.id);
            }
            let _ = after().await;
            ActionAnswer::ok(lang.f(
                Msg::DoneBooked,
                &[("time", &g.time.hh_mm(ts(booking.end_ms)))],
            ))
        }
        "extend" => {
            let minutes = body.minutes.unwrap_or(0);
            let Some(current) = before
                .current
                .as_ref()
                .filter(|_| before.state == "in_meeting")
            else {
                return ActionAnswer::refused(
                    StatusCode::CONFLICT,
                    lang.t(Msg::RefusedExtend).into(),
                    None,
                );
            };
            if !EXTEND_MINUTES.contains(&minutes) {
                return ActionAnswer::refused(
                    StatusCode::BAD_REQUEST,
                    lang.t(Msg::RefusedExtend).into(),
                    Some(format!("minutes must be one of {EXTEND_MINUTES:?}")),
                );
            }
            let until = ts(current.end_ms) + Span::minutes(i64::from(minutes));
            let words = match timed(g.room_action(room, RoomAction::Extend { until })).await {
                Ok(w) => w,
                Err(e) => return ActionAnswer::from_error(lang, Msg::RefusedExtend, &e, &g.time),
            };
            // The engine stops an extension at the next booking: the answer says the new end.
            let extended = after()
                .await
                .and_then(|r| r.current)
                .filter(|c| c.id == current.id && c.end_ms > current.end_ms);
            if let Some(c) = extended {
                let end = g.time.hh_mm(ts(c.end_ms));
                ActionAnswer::ok(lang.f(Msg::DoneExtended, &[("time", &end)]))
            } else {
                ActionAnswer::refused(
                    StatusCode::CONFLICT,
                    lang.t(Msg::RefusedExtend).into(),
                    Some(words),
                )
            }
        }
        "end" => {
            let Some(current) = before.current.as_ref() else {
                return ActionAnswer::refused(
                    StatusCode::CONFLICT,
                    lang.t(Msg::RefusedEnd).into(),
                    None,
                );
            };
            let words = match timed(g.room_action(room, RoomAction::EndNow)).await {
                Ok(w) => w,
                Err(e) => return ActionAnswer::from_error(lang, Msg::RefusedEnd, &e, &g.time),
            };
            let ended = after()
                .await
                .is_some_and(|r| r.current.is_none_or(|c| c.id != current.id));
            if ended {
                ActionAnswer::ok(lang.t(Msg::DoneEnded).into())
            } else {
                ActionAnswer::refused(
                    StatusCode::CONFLICT,
                    lang.t(Msg::RefusedEnd).into(),
                    Some(words),
                )
            }
        }
        _ => ActionAnswer::refused(
            StatusCode::NOT_FOUND,
            lang.f(Msg::NoSuchRoom, &[("room", room)]),
            Some(format!("no panel action '{what}'")),
        ),
    }
}

/// Checks the PIN for `booking`, counting wrong ones; `Err` is the answer to give.
fn check_pin(
    p: &Panels,
    room: &str,
    booking: &str,
    given: Option<&str>,
    now: Timestamp,
    g: &GatewayHandle,
    lang: Lang,
) -> Result<(), ActionAnswer> {
    let mut attempts = p
        .attempts
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(until) = attempts.locked_until(room, now) {
        return Err(ActionAnswer::refused(
            StatusCode::TOO_MANY_REQUESTS,
            lang.f(Msg::PinLocked, &[("time", &g.time.hh_mm(until))]),
            None,
        ));
    }
    let Some(given) = given.map(str::trim).filter(|s| !s.is_empty()) else {
        return Err(ActionAnswer::refused(
            StatusCode::FORBIDDEN,
            lang.t(Msg::PinNeeded).into(),
            None,
        ));
    };
    if given == p.pins.pin(booking) {
        attempts.right(room);
        Ok(())
    } else {
        attempts.wrong(room, now);
        tracing::info!(room, "wrong PIN at the door panel");
        Err(ActionAnswer::refused(
            StatusCode::FORBIDDEN,
            lang.t(Msg::WrongPin).into(),
            None,
        ))
    }
}
