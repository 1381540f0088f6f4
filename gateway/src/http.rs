//! The local HTTP surface (warp): health, the rooms API, and the live floor page.
//!
//! Handlers translate HTTP to `GatewayHandle` calls and API errors to status codes; no
//! automation logic lives here. The API listens on loopback by default: accounts, HTTPS and
//! panel tokens arrive with the installer console.

use std::convert::Infallible;
use std::future::Future;

use scenes::{Span, Timestamp};
use tokio::net::TcpListener;
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use crate::api::{CredentialRequest, ErrorDto, ExtendRequest, NewBooking};
use crate::runtime::{ApiError, BookingRequest, GatewayHandle, REQUEST_TIMEOUT, RoomAction};

const FLOOR_PAGE: &str = include_str!("web/floor.html");

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    gateway: GatewayHandle,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    warp::serve(routes(gateway))
        .incoming(listener)
        .graceful(shutdown)
        .run()
        .await;
}

fn with(g: GatewayHandle) -> impl Filter<Extract = (GatewayHandle,), Error = Infallible> + Clone {
    warp::any().map(move || g.clone())
}

pub fn routes(
    g: GatewayHandle,
) -> impl Filter<Extract = (impl Reply,), Error = Infallible> + Clone + Send + Sync + 'static {
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
        .map(|| warp::reply::html(FLOOR_PAGE));
    let floor = warp::path!("api" / "floor")
        .and(warp::get())
        .and(with(g.clone()))
        .map(|g: GatewayHandle| warp::reply::json(&*g.snapshot()));
    let rooms = warp::path!("api" / "rooms")
        .and(warp::get())
        .and(with(g.clone()))
        .map(|g: GatewayHandle| warp::reply::json(&g.snapshot().rooms));
    let room = warp::path!("api" / "rooms" / String)
        .and(warp::get())
        .and(with(g.clone()))
        .then(|id: String, g: GatewayHandle| async move {
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
        });
    let devices = warp::path!("api" / "devices")
        .and(warp::get())
        .and(with(g.clone()))
        .map(|g: GatewayHandle| warp::reply::json(&g.snapshot().devices));
    let buses = warp::path!("api" / "buses")
        .and(warp::get())
        .and(with(g.clone()))
        .map(|g: GatewayHandle| warp::reply::json(&g.snapshot().buses));
    let add_booking = warp::path!("api" / "rooms" / String / "bookings")
        .and(warp::post())
        .and(json_body::<NewBooking>())
        .and(with(g.clone()))
        .then(
            |room: String, body: Result<NewBooking, String>, g: GatewayHandle| async move {
                let req = match body.and_then(|b| booking_request(&g, room, b)) {
                    Ok(r) => r,
                    Err(e) => return error(&ApiError::BadRequest(e)),
                };
                match timed(g.add_booking(req)).await {
                    Ok(b) => warp::reply::with_status(warp::reply::json(&b), StatusCode::CREATED)
                        .into_response(),
                    Err(e) => error(&e),
                }
            },
        );
    let cancel = warp::path!("api" / "rooms" / String / "bookings" / String)
        .and(warp::delete())
        .and(with(g.clone()))
        .then(|room: String, id: String, g: GatewayHandle| async move {
            match timed(g.cancel_booking(&room, &id)).await {
                Ok(()) => StatusCode::NO_CONTENT.into_response(),
                Err(e) => error(&e),
            }
        });
    let checkin = warp::path!("api" / "rooms" / String / "checkin")
        .and(warp::post())
        .and(with(g.clone()))
        .then(|room: String, g: GatewayHandle| async move {
            action_reply(timed(g.room_action(&room, RoomAction::CheckIn)).await)
        });
    let end = warp::path!("api" / "rooms" / String / "end")
        .and(warp::post())
        .and(with(g.clone()))
        .then(|room: String, g: GatewayHandle| async move {
            action_reply(timed(g.room_action(&room, RoomAction::EndNow)).await)
        });
    let extend = warp::path!("api" / "rooms" / String / "extend")
        .and(warp::post())
        .and(json_body::<ExtendRequest>())
        .and(with(g.clone()))
        .then(
            |room: String, body: Result<ExtendRequest, String>, g: GatewayHandle| async move {
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
        .and(json_body::<CredentialRequest>())
        .and(with(g.clone()))
        .then(
            |room: String, body: Result<CredentialRequest, String>, g: GatewayHandle| async move {
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
        .and(with(g.clone()))
        .then(|room: String, scene: String, g: GatewayHandle| async move {
            match timed(g.run_scene(&room, &scene, "local API")).await {
                Ok(()) => warp::reply::json(&serde_json::json!({ "result": "ok" })).into_response(),
                Err(e) => error(&e),
            }
        });
    healthz
        .or(page)
        .or(floor)
        .or(rooms)
        .or(room)
        .or(devices)
        .or(buses)
        .or(add_booking)
        .or(cancel)
        .or(checkin)
        .or(end)
        .or(extend)
        .or(credential)
        .or(scene)
        .recover(recover)
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
    };
    let body = ErrorDto {
        error: e.to_string(),
        conflict,
    };
    warp::reply::with_status(warp::reply::json(&body), status).into_response()
}

async fn recover(r: Rejection) -> Result<warp::reply::Response, Infallible> {
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
