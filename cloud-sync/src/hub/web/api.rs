//! The booking API: `/api/v1/...`, JSON over HTTP, `Authorization: Bearer <token>`.
//!
//! Handlers turn JSON into [`BookingService`] and [`Feeds`] calls and their errors into status
//! codes; the rules live in `hub::bookings` and `calendar`. README.md ("Booking API") is the
//! reference with examples.
//!
//! * **Tokens** are 32 random bytes (`rgt_` + 64 hex digits), shown once; the hub keeps only
//!   their SHA-256 (document kind [`TOKEN_KIND`], keyed by the hash), so a copy of the database
//!   does not hold usable tokens. No or a wrong token: `401` with `WWW-Authenticate: Bearer`.
//! * **Times in** are RFC 3339 with an offset (`2026-03-30T09:00:00+02:00`, `...Z`) or the
//!   site's local civil time (`2026-03-30T09:00`). A local time that does not exist (in the
//!   spring-forward gap) is refused; one that exists twice (the autumn fold) is the first.
//!   In a query string, write `+` as `%2B`.
//! * **Times out** come as UTC (`start`), on the site's wall clock (`start_local`, with its
//!   offset) and in milliseconds (`start_ms`), with the site's `timezone`.
//! * **Errors** are `{"error": code, "message": text, ...}`: `400` unreadable JSON, `401`,
//!   `403 blocked` (the no-show blacklist, with the date it ends in the site's zone), `404`,
//!   `409 conflict` (with the booking in the way, or every conflicting occurrence of a series),
//!   `409 ambiguous_room`, `409 not_active`, `422 invalid` (with the `field` and why).

use std::convert::Infallible;
use std::sync::Arc;

use jiff::civil::{Date, DateTime};
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{SignedDuration, Timestamp};
use serde::Deserialize;
use serde_json::{Value, json};
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use super::WebState;
use crate::calendar::{Blacklist, Frequency, SeriesEnd};
use crate::hub::bookings::{
    BookingPatch, NewBooking, Room, SeriesDoc, SeriesSpec, ServiceError, local_text, ts, weekday_of,
};
use crate::hub::feeds::{FeedConfig, FeedError, FeedPatch, FeedStatus};
use crate::hub::store::{BookingRecord, HubStore, HubStoreError};

/// The document kind of API tokens (keyed by the SHA-256 of the token, in hex).
pub const TOKEN_KIND: &str = "api_token";
/// Largest request body accepted.
const BODY_LIMIT: u64 = 64 * 1024;
/// Longest range a booking list may ask for.
const MAX_LIST_DAYS: i64 = 92;
/// The list range when none is given.
const DEFAULT_LIST_DAYS: i64 = 7;
/// Minutes between feed runs when a new feed names none.
const DEFAULT_FEED_MINUTES: u32 = 15;

/// Why a token could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(transparent)]
    Store(#[from] HubStoreError),
    #[error("no random bytes for a token")]
    Random,
    #[error("a token's name is 1 to 64 printable characters (got {0:?})")]
    BadName(String),
}

fn token_hash(token: &str) -> String {
    crate::hub::bookings::hex(
        ring::digest::digest(&ring::digest::SHA256, token.as_bytes()).as_ref(),
    )
}

/// Makes an API token named `name` (who or what uses it) and returns it; the hub keeps only
/// its hash, so this is the only time it is seen. For `hub token create`.
pub async fn create_token(store: &HubStore, name: &str) -> Result<String, TokenError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        return Err(TokenError::BadName(name.to_owned()));
    }
    let mut bytes = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| TokenError::Random)?;
    let token = format!("rgt_{}", crate::hub::bookings::hex(&bytes));
    let doc = json!({ "name": name, "created_ms": super::wall_clock_ms() });
    store.put_doc(TOKEN_KIND, &token_hash(&token), &doc).await?;
    Ok(token)
}

/// The tokens' names and when each was made, by hash.
pub async fn tokens(store: &HubStore) -> Result<Vec<(String, i64)>, TokenError> {
    Ok(store
        .docs(TOKEN_KIND)
        .await?
        .into_iter()
        .map(|(_, d)| {
            (
                d["name"].as_str().unwrap_or_default().to_owned(),
                d["created_ms"].as_i64().unwrap_or_default(),
            )
        })
        .collect())
}

/// Revokes every token named `name`; returns how many there were. For `hub token revoke`.
pub async fn revoke_tokens(store: &HubStore, name: &str) -> Result<usize, TokenError> {
    let mut revoked = 0;
    for (hash, doc) in store.docs(TOKEN_KIND).await? {
        if doc["name"].as_str() == Some(name.trim()) && store.delete_doc(TOKEN_KIND, &hash).await? {
            revoked += 1;
        }
    }
    Ok(revoked)
}

/// The name of the token a request carries, or why it is refused.
async fn authorize(store: &HubStore, header: Option<String>) -> Result<String, Rejection> {
    let Some(token) = header
        .as_deref()
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
    else {
        return Err(warp::reject::custom(Unauthorized(
            "this API needs 'Authorization: Bearer <token>' (make one with 'hub token create')",
        )));
    };
    match store.doc(TOKEN_KIND, &token_hash(token)).await {
        Ok(Some(doc)) => Ok(doc["name"].as_str().unwrap_or_default().to_owned()),
        Ok(None) => Err(warp::reject::custom(Unauthorized(
            "the token is not valid (revoked, or never made here)",
        ))),
        Err(e) => {
            tracing::error!("API tokens not readable: {e}");
            Err(warp::reject::custom(StoreDown))
        }
    }
}

#[derive(Debug)]
struct Unauthorized(&'static str);
impl warp::reject::Reject for Unauthorized {}

#[derive(Debug)]
struct StoreDown;
impl warp::reject::Reject for StoreDown {}

fn reply(status: StatusCode, body: &Value) -> Response {
    warp::reply::with_status(warp::reply::json(body), status).into_response()
}

fn problem(status: StatusCode, code: &str, message: impl std::fmt::Display) -> Response {
    reply(
        status,
        &json!({ "error": code, "message": message.to_string() }),
    )
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ServiceError {
    ServiceError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// A booking as the API shows it.
pub fn booking_json(room: &Room, r: &BookingRecord) -> Value {
    let zone = &room.zone;
    json!({
        "id": r.id,
        "site": room.site,
        "room": r.room,
        "gateway": room.gateway.gateway(),
        "subject": r.subject,
        "organizer": r.organizer,
        "attendees": r.attendees,
        "state": r.state,
        "start": ts(r.start_ms).to_string(),
        "end": ts(r.end_ms).to_string(),
        "start_local": local_text(ts(r.start_ms), zone),
        "end_local": local_text(ts(r.end_ms), zone),
        "start_ms": r.start_ms,
        "end_ms": r.end_ms,
        "timezone": room.timezone,
        "series": r.series,
        "source": r.source,
        "note": r.note,
        "updated": ts(r.updated_ms).to_string(),
    })
}

fn room_json(r: &Room) -> Value {
    json!({
        "site": r.site,
        "room": r.id,
        "name": r.name,
        "gateway": r.gateway.gateway(),
        "timezone": r.timezone,
        "online": r.online,
        "state": r.state,
        "occupancy": r.occupancy,
    })
}

fn series_json(room: &Room, doc: &SeriesDoc, bookings: &[BookingRecord]) -> Value {
    let zone = &room.zone;
    let overrides: serde_json::Map<String, Value> = doc
        .overrides
        .iter()
        .map(|(date, slot)| {
            (
                date.clone(),
                json!({
                    "start": ts(slot.start_ms).to_string(),
                    "end": ts(slot.end_ms).to_string(),
                    "start_local": local_text(ts(slot.start_ms), zone),
                    "end_local": local_text(ts(slot.end_ms), zone),
                }),
            )
        })
        .collect();
    json!({
        "id": doc.id,
        "site": doc.site,
        "room": doc.room,
        "timezone": doc.timezone,
        "subject": doc.subject,
        "organizer": doc.organizer,
        "attendees": doc.attendees,
        "first_local": doc.first,
        "minutes": doc.minutes,
        "repeat": {
            "frequency": doc.frequency,
            "interval": doc.interval,
            "weekdays": doc.weekdays,
            "count": doc.count,
            "until": doc.until_ms.map(|u| ts(u).to_string()),
        },
        "excluded": doc.excluded,
        "overrides": overrides,
        "skipped": doc.skipped,
        "booked_until": ts(doc.materialised_until_ms).to_string(),
        "occurrences": bookings.iter().map(|b| booking_json(room, b)).collect::<Vec<_>>(),
    })
}

fn feed_json(config: &FeedConfig, status: &FeedStatus) -> Value {
    let mut status_json = serde_json::to_value(status).unwrap_or_default();
    if let Some(last) = status.last_run_ms {
        status_json["last_run"] = json!(ts(last).to_string());
    }
    json!({
        "id": config.id,
        "site": config.site,
        "room": config.room,
        "source": config.source,
        "interval_minutes": config.interval_minutes,
        "enabled": config.enabled,
        "created": ts(config.created_ms).to_string(),
        "status": status_json,
    })
}

/// The response for a refused or failed operation; `room` gives the conflicting bookings and
/// dates their site's wall clock.
fn service_error(e: &ServiceError, room: Option<&Room>) -> Response {
    match e {
        ServiceError::Store(_) | ServiceError::Random => {
            tracing::error!("booking API: {e}");
            problem(StatusCode::INTERNAL_SERVER_ERROR, "internal", e)
        }
        ServiceError::UnknownRoom { .. }
        | ServiceError::UnknownBooking(_)
        | ServiceError::UnknownSeries(_)
        | ServiceError::UnknownOccurrence { .. } => problem(StatusCode::NOT_FOUND, "not_found", e),
        ServiceError::AmbiguousRoom { gateways, .. } => reply(
            StatusCode::CONFLICT,
            &json!({ "error": "ambiguous_room", "message": e.to_string(), "gateways": gateways }),
        ),
        ServiceError::UnknownZone { .. } => problem(StatusCode::CONFLICT, "unknown_time_zone", e),
        ServiceError::Invalid { field, reason } => reply(
            StatusCode::UNPROCESSABLE_ENTITY,
            &json!({ "error": "invalid", "field": field, "message": reason }),
        ),
        ServiceError::Conflict { message, with } => reply(
            StatusCode::CONFLICT,
            &json!({
                "error": "conflict",
                "message": message,
                "conflict": room.map_or_else(|| json!({ "id": with.id }), |r| booking_json(r, with)),
            }),
        ),
        ServiceError::Blocked {
            organizer,
            reason,
            until,
        } => reply(
            StatusCode::FORBIDDEN,
            &json!({
                "error": "blocked",
                "message": reason,
                "organizer": organizer,
                "until": until.to_string(),
                "until_local": room.map(|r| local_text(*until, &r.zone)),
            }),
        ),
        ServiceError::SeriesConflicts(clashes) => {
            let zone = room.map_or(TimeZone::UTC, |r| r.zone.clone());
            let list: Vec<Value> = clashes
                .iter()
                .map(|c| {
                    json!({
                        "date": c.date.to_string(),
                        "start": c.start.to_string(),
                        "end": c.end.to_string(),
                        "start_local": local_text(c.start, &zone),
                        "end_local": local_text(c.end, &zone),
                        "message": c.message,
                        "with_id": c.with_id,
                        "with": match (room, &c.with) {
                            (Some(r), Some(w)) => booking_json(r, w),
                            _ => Value::Null,
                        },
                    })
                })
                .collect();
            reply(
                StatusCode::CONFLICT,
                &json!({ "error": "conflict", "message": e.to_string(), "conflicts": list }),
            )
        }
        ServiceError::NotActive { .. } => problem(StatusCode::CONFLICT, "not_active", e),
    }
}

fn feed_error(e: &FeedError, room: Option<&Room>) -> Response {
    match e {
        FeedError::Unknown(_) => problem(StatusCode::NOT_FOUND, "not_found", e),
        FeedError::Service(s) => service_error(s, room),
    }
}

/// A time as the API accepts it: RFC 3339 with an offset, or local civil time in `zone`.
pub fn parse_time(
    text: &str,
    zone: &TimeZone,
    field: &'static str,
) -> Result<Timestamp, ServiceError> {
    let text = text.trim();
    if let Ok(t) = text.parse::<Timestamp>() {
        return Ok(t);
    }
    let Ok(local) = text.parse::<DateTime>() else {
        return Err(invalid(
            field,
            format!(
                "{text:?} is not a time: use RFC 3339 with an offset (2026-03-30T09:00:00+02:00, \
                 2026-03-30T07:00:00Z) or the site's local time (2026-03-30T09:00)"
            ),
        ));
    };
    let ambiguous = zone.to_ambiguous_zoned(local);
    if matches!(ambiguous.offset(), AmbiguousOffset::Gap { .. }) {
        return Err(invalid(
            field,
            format!(
                "{local} does not exist in {} (the clocks go forward then)",
                zone.iana_name().unwrap_or("the site's time zone")
            ),
        ));
    }
    ambiguous
        .compatible()
        .map(|z| z.timestamp())
        .map_err(|e| invalid(field, format!("{text:?}: {e}")))
}

/// A range bound: a time as [`parse_time`] reads it, or a date (its local midnight).
fn parse_bound(
    text: &str,
    zone: &TimeZone,
    field: &'static str,
) -> Result<Timestamp, ServiceError> {
    if let Ok(date) = text.trim().parse::<Date>() {
        return date
            .to_zoned(zone.clone())
            .map(|z| z.timestamp())
            .map_err(|e| invalid(field, format!("{text:?}: {e}")));
    }
    parse_time(text, zone, field)
}

/// A wall-clock time in `zone`: RFC 3339 (converted to the zone) or local civil time.
fn parse_local(text: &str, zone: &TimeZone, field: &'static str) -> Result<DateTime, ServiceError> {
    let text = text.trim();
    if let Ok(t) = text.parse::<Timestamp>() {
        return Ok(t.to_zoned(zone.clone()).datetime());
    }
    text.parse::<DateTime>().map_err(|_| {
        invalid(
            field,
            format!(
                "{text:?} is not a time: use 2026-03-30T09:00 (the site's local time) or RFC 3339"
            ),
        )
    })
}

/// Decodes `%XX` escapes (a `+` stays a `+`: times carry offsets).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query_param(raw: &str, name: &str) -> Option<String> {
    raw.split('&')
        .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
        .find(|(k, _)| percent_decode(k) == name)
        .map(|(_, v)| percent_decode(v))
}

/// A JSON body, or the response refusing it.
fn body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, Box<Response>> {
    serde_json::from_slice(bytes).map_err(|e| Box::new(refusal(&e)))
}

/// Why a body was refused: `400` when it is not JSON, `422` naming the field otherwise.
fn refusal(e: &serde_json::Error) -> Response {
    if e.is_syntax() || e.is_eof() {
        return problem(
            StatusCode::BAD_REQUEST,
            "bad_json",
            format!("the body is not JSON: {e}"),
        );
    }
    let text = e.to_string();
    let field = text
        .split('`')
        .nth(1)
        .filter(|_| text.starts_with("missing field") || text.starts_with("unknown field"))
        .unwrap_or("body");
    reply(
        StatusCode::UNPROCESSABLE_ENTITY,
        &json!({ "error": "invalid", "field": field, "message": text }),
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewBookingBody {
    site: String,
    room: String,
    start: String,
    end: String,
    #[serde(default)]
    subject: String,
    organizer: String,
    #[serde(default)]
    attendees: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchBody {
    start: Option<String>,
    end: Option<String>,
    subject: Option<String>,
    organizer: Option<String>,
    attendees: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RepeatBody {
    /// "daily" or "weekly".
    frequency: String,
    #[serde(default)]
    interval: Option<u32>,
    /// For weekly: "mon", "tuesday", "WE"...; default the first occurrence's weekday.
    #[serde(default)]
    weekdays: Option<Vec<String>>,
    #[serde(default)]
    count: Option<u32>,
    /// A date (through that local day) or a time.
    #[serde(default)]
    until: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SeriesBody {
    site: String,
    room: String,
    /// The first occurrence's start (the site's local time, or RFC 3339).
    start: String,
    /// The first occurrence's end; or give `minutes`.
    #[serde(default)]
    end: Option<String>,
    #[serde(default)]
    minutes: Option<i64>,
    #[serde(default)]
    subject: String,
    organizer: String,
    #[serde(default)]
    attendees: Vec<String>,
    repeat: RepeatBody,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SlotBody {
    start: String,
    end: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FeedBody {
    site: String,
    room: String,
    source: String,
    #[serde(default)]
    interval_minutes: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FeedPatchBody {
    source: Option<String>,
    interval_minutes: Option<u32>,
    enabled: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BlacklistBody {
    strikes: u32,
    within_days: u32,
    block_days: u32,
}

fn check_text(field: &'static str, text: &str, max: usize) -> Result<(), ServiceError> {
    if text.chars().count() > max {
        return Err(invalid(field, format!("at most {max} characters")));
    }
    Ok(())
}

fn check_attendees(attendees: &[String]) -> Result<Vec<String>, ServiceError> {
    if attendees.len() > 500 {
        return Err(invalid("attendees", "at most 500 attendees"));
    }
    Ok(attendees
        .iter()
        .map(|a| a.trim().to_lowercase())
        .filter(|a| !a.is_empty())
        .collect())
}

/// What every handler gets.
type State = Arc<WebState>;

async fn list_rooms(state: State) -> Response {
    match state.bookings.rooms().await {
        Ok(rooms) => reply(
            StatusCode::OK,
            &json!({ "rooms": rooms.iter().map(room_json).collect::<Vec<_>>() }),
        ),
        Err(e) => service_error(&e, None),
    }
}

/// What `POST .../commands` asks a room's gateway to do.
#[derive(Debug, serde::Deserialize)]
#[serde(tag = "command", rename_all = "snake_case", deny_unknown_fields)]
enum RoomCommandBody {
    EndMeeting,
    RunScene { scene: String },
}

/// Sends a command to the gateway that holds the room: 202 when it left the hub (the gateway
/// acts on it when it arrives, within five minutes, else ignores it).
async fn room_command(
    state: State,
    site: String,
    room: String,
    bytes: warp::hyper::body::Bytes,
) -> Response {
    let command: RoomCommandBody = match body(&bytes) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let room = match state.bookings.room(&site, &room).await {
        Ok(r) => r,
        Err(e) => return service_error(&e, None),
    };
    let command = match command {
        RoomCommandBody::EndMeeting => crate::wire::HubCommand::EndMeeting {
            room: room.id.clone(),
        },
        RoomCommandBody::RunScene { scene } => {
            if let Err(e) = check_text("scene", &scene, 100) {
                return service_error(&e, Some(&room));
            }
            crate::wire::HubCommand::RunScene {
                room: room.id.clone(),
                scene,
            }
        }
    };
    send_command(&state, &room.gateway, command, room.online)
}

/// Asks a gateway to fetch all its bookings again (a full snapshot).
async fn gateway_resync(state: State, site: String, gateway: String) -> Response {
    let Ok(gw) = crate::topics::GatewayId::new(&site, &gateway) else {
        return problem(StatusCode::NOT_FOUND, "not_found", "no such gateway");
    };
    let online = match state.store.status(&gw).await {
        Ok(Some(status)) => status.online,
        Ok(None) => return problem(StatusCode::NOT_FOUND, "not_found", "no such gateway"),
        Err(e) => {
            tracing::error!("booking API: {e}");
            return problem(StatusCode::INTERNAL_SERVER_ERROR, "internal", e);
        }
    };
    send_command(&state, &gw, crate::wire::HubCommand::Resync, online)
}

fn send_command(
    state: &State,
    gw: &crate::topics::GatewayId,
    command: crate::wire::HubCommand,
    online: bool,
) -> Response {
    match state.bookings.pusher().command(gw, command, (state.now)()) {
        Ok(()) => reply(
            StatusCode::ACCEPTED,
            &json!({
                "sent_to": gw.to_string(),
                "gateway_online": online,
                "note": if online { "the gateway acts on it when it arrives" }
                        else { "the gateway is offline: it acts on the command only if it is back within five minutes" },
            }),
        ),
        Err(e) => problem(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e),
    }
}

async fn list_bookings(state: State, site: String, room: String, query: String) -> Response {
    let room = match state.bookings.room(&site, &room).await {
        Ok(r) => r,
        Err(e) => return service_error(&e, None),
    };
    let range = (|| {
        let from = match query_param(&query, "from") {
            Some(f) => parse_bound(&f, &room.zone, "from")?,
            None => ts((state.now)()),
        };
        let to = match query_param(&query, "to") {
            Some(t) => parse_bound(&t, &room.zone, "to")?,
            None => from
                .checked_add(SignedDuration::from_hours(DEFAULT_LIST_DAYS * 24))
                .unwrap_or(Timestamp::MAX),
        };
        if to <= from {
            return Err(invalid("to", "must be after from"));
        }
        if from.duration_until(to) > SignedDuration::from_hours(MAX_LIST_DAYS * 24) {
            return Err(invalid(
                "to",
                format!("a list covers at most {MAX_LIST_DAYS} days"),
            ));
        }
        Ok((from, to))
    })();
    let (from, to) = match range {
        Ok(r) => r,
        Err(e) => return service_error(&e, Some(&room)),
    };
    match state.bookings.bookings(&room, from, to).await {
        Ok(list) => reply(
            StatusCode::OK,
            &json!({
                "site": room.site,
                "room": room.id,
                "timezone": room.timezone,
                "from": from.to_string(),
                "to": to.to_string(),
                "bookings": list.iter().map(|b| booking_json(&room, b)).collect::<Vec<_>>(),
            }),
        ),
        Err(e) => service_error(&e, Some(&room)),
    }
}

async fn create_booking(state: State, bytes: warp::hyper::body::Bytes) -> Response {
    let b: NewBookingBody = match body(&bytes) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let room = match state.bookings.room(&b.site, &b.room).await {
        Ok(r) => r,
        Err(e) => return service_error(&e, None),
    };
    let new = (|| {
        check_text("subject", &b.subject, 500)?;
        Ok::<_, ServiceError>(NewBooking {
            start: parse_time(&b.start, &room.zone, "start")?,
            end: parse_time(&b.end, &room.zone, "end")?,
            subject: b.subject.trim().to_owned(),
            organizer: b.organizer.clone(),
            attendees: check_attendees(&b.attendees)?,
        })
    })();
    let result = match new {
        Ok(new) => state.bookings.create_booking(&room, new).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(record) => reply(StatusCode::CREATED, &booking_json(&room, &record)),
        Err(e) => service_error(&e, Some(&room)),
    }
}

async fn get_booking(state: State, id: String) -> Response {
    match state.bookings.booking(&id).await {
        Ok((room, record)) => reply(StatusCode::OK, &booking_json(&room, &record)),
        Err(e) => service_error(&e, None),
    }
}

async fn patch_booking(state: State, id: String, bytes: warp::hyper::body::Bytes) -> Response {
    let b: PatchBody = match body(&bytes) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let room = match state.bookings.booking(&id).await {
        Ok((room, _)) => room,
        Err(e) => return service_error(&e, None),
    };
    let patch = (|| {
        if let Some(s) = &b.subject {
            check_text("subject", s, 500)?;
        }
        Ok::<_, ServiceError>(BookingPatch {
            start: b
                .start
                .as_deref()
                .map(|t| parse_time(t, &room.zone, "start"))
                .transpose()?,
            end: b
                .end
                .as_deref()
                .map(|t| parse_time(t, &room.zone, "end"))
                .transpose()?,
            subject: b.subject.as_deref().map(|s| s.trim().to_owned()),
            organizer: b.organizer.clone(),
            attendees: b.attendees.as_deref().map(check_attendees).transpose()?,
        })
    })();
    let result = match patch {
        Ok(patch) => state.bookings.change_booking(&id, patch).await,
        Err(e) => Err(e),
    };
    match result {
        Ok((room, record)) => reply(StatusCode::OK, &booking_json(&room, &record)),
        Err(e) => service_error(&e, Some(&room)),
    }
}

async fn cancel_booking(state: State, id: String) -> Response {
    match state.bookings.cancel_booking(&id).await {
        Ok((room, record)) => reply(StatusCode::OK, &booking_json(&room, &record)),
        Err(e) => service_error(&e, None),
    }
}

fn series_spec(b: &SeriesBody, room: &Room) -> Result<SeriesSpec, ServiceError> {
    check_text("subject", &b.subject, 500)?;
    let first = parse_local(&b.start, &room.zone, "start")?;
    let length = match (&b.end, b.minutes) {
        (Some(end), None) => {
            let start = parse_time(&first.to_string(), &room.zone, "start")?;
            let end = parse_time(end, &room.zone, "end")?;
            start.duration_until(end)
        }
        (None, Some(minutes)) => SignedDuration::from_mins(minutes),
        _ => return Err(invalid("end", "give either end or minutes")),
    };
    let r = &b.repeat;
    let frequency = match r.frequency.trim().to_ascii_lowercase().as_str() {
        "daily" => {
            if r.weekdays.is_some() {
                return Err(invalid(
                    "repeat.weekdays",
                    "only a weekly series has weekdays",
                ));
            }
            Frequency::Daily
        }
        "weekly" => {
            let days = match &r.weekdays {
                Some(days) => days
                    .iter()
                    .map(|d| {
                        weekday_of(d).ok_or_else(|| {
                            invalid(
                                "repeat.weekdays",
                                format!("{d:?} is not a weekday (mon..sun)"),
                            )
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?,
                None => vec![first.date().weekday()],
            };
            Frequency::Weekly {
                days,
                week_start: jiff::civil::Weekday::Monday,
            }
        }
        other => {
            return Err(invalid(
                "repeat.frequency",
                format!("{other:?}: use \"daily\" or \"weekly\""),
            ));
        }
    };
    let end = match (r.count, &r.until) {
        (Some(_), Some(_)) => return Err(invalid("repeat.until", "give count or until, not both")),
        (Some(n), None) => SeriesEnd::Count(n),
        (None, Some(until)) => SeriesEnd::Until(match until.trim().parse::<Date>() {
            // Through the end of that local day.
            Ok(date) => date
                .tomorrow()
                .and_then(|d| d.to_zoned(room.zone.clone()))
                .map(|z| z.timestamp() - SignedDuration::from_secs(1))
                .map_err(|e| invalid("repeat.until", e.to_string()))?,
            Err(_) => parse_time(until, &room.zone, "repeat.until")?,
        }),
        (None, None) => SeriesEnd::Never,
    };
    Ok(SeriesSpec {
        first,
        length,
        frequency,
        interval: r.interval.unwrap_or(1),
        end,
        subject: b.subject.trim().to_owned(),
        organizer: b.organizer.clone(),
        attendees: check_attendees(&b.attendees)?,
    })
}

async fn create_series(state: State, bytes: warp::hyper::body::Bytes) -> Response {
    let b: SeriesBody = match body(&bytes) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let room = match state.bookings.room(&b.site, &b.room).await {
        Ok(r) => r,
        Err(e) => return service_error(&e, None),
    };
    let result = match series_spec(&b, &room) {
        Ok(spec) => state.bookings.create_series(&room, spec).await,
        Err(e) => Err(e),
    };
    match result {
        Ok((doc, bookings)) => reply(StatusCode::CREATED, &series_json(&room, &doc, &bookings)),
        Err(e) => service_error(&e, Some(&room)),
    }
}

async fn get_series(state: State, id: String) -> Response {
    match state.bookings.series(&id).await {
        Ok((room, doc, bookings)) => reply(StatusCode::OK, &series_json(&room, &doc, &bookings)),
        Err(e) => service_error(&e, None),
    }
}

async fn cancel_series(state: State, id: String) -> Response {
    match state.bookings.cancel_series(&id).await {
        Ok((room, cancelled)) => reply(
            StatusCode::OK,
            &json!({
                "id": id,
                "cancelled": cancelled.iter().map(|b| booking_json(&room, b)).collect::<Vec<_>>(),
            }),
        ),
        Err(e) => service_error(&e, None),
    }
}

fn occurrence_date(text: &str) -> Result<Date, ServiceError> {
    text.parse()
        .map_err(|_| invalid("date", format!("{text:?} is not a date (2026-03-30)")))
}

async fn cancel_occurrence(state: State, id: String, date: String) -> Response {
    let date = match occurrence_date(&date) {
        Ok(d) => d,
        Err(e) => return service_error(&e, None),
    };
    match state.bookings.cancel_occurrence(&id, date).await {
        Ok((room, doc, booking)) => reply(
            StatusCode::OK,
            &json!({
                "series": series_json(&room, &doc, &[]),
                "booking": booking.as_ref().map(|b| booking_json(&room, b)),
            }),
        ),
        Err(e) => service_error(&e, None),
    }
}

async fn move_occurrence(
    state: State,
    id: String,
    date: String,
    bytes: warp::hyper::body::Bytes,
) -> Response {
    let b: SlotBody = match body(&bytes) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let room = match state.bookings.series(&id).await {
        Ok((room, _, _)) => room,
        Err(e) => return service_error(&e, None),
    };
    let slot = (|| {
        Ok::<_, ServiceError>((
            occurrence_date(&date)?,
            parse_time(&b.start, &room.zone, "start")?,
            parse_time(&b.end, &room.zone, "end")?,
        ))
    })();
    let result = match slot {
        Ok((date, start, end)) => state.bookings.move_occurrence(&id, date, start, end).await,
        Err(e) => Err(e),
    };
    match result {
        Ok((room, doc, booking)) => reply(
            StatusCode::OK,
            &json!({
                "series": series_json(&room, &doc, &[]),
                "booking": booking.as_ref().map(|b| booking_json(&room, b)),
            }),
        ),
        Err(e) => service_error(&e, Some(&room)),
    }
}

async fn list_feeds(state: State) -> Response {
    match state.feeds.list().await {
        Ok(feeds) => reply(
            StatusCode::OK,
            &json!({ "feeds": feeds.iter().map(|(c, s)| feed_json(c, s)).collect::<Vec<_>>() }),
        ),
        Err(e) => feed_error(&e, None),
    }
}

async fn create_feed(state: State, bytes: warp::hyper::body::Bytes) -> Response {
    let b: FeedBody = match body(&bytes) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let interval = b.interval_minutes.unwrap_or(DEFAULT_FEED_MINUTES);
    match state
        .feeds
        .create(&b.site, &b.room, &b.source, interval)
        .await
    {
        Ok(config) => reply(
            StatusCode::CREATED,
            &feed_json(&config, &FeedStatus::default()),
        ),
        Err(e) => feed_error(&e, None),
    }
}

async fn get_feed(state: State, id: String) -> Response {
    match state.feeds.get(&id).await {
        Ok((config, status)) => reply(StatusCode::OK, &feed_json(&config, &status)),
        Err(e) => feed_error(&e, None),
    }
}

async fn patch_feed(state: State, id: String, bytes: warp::hyper::body::Bytes) -> Response {
    let b: FeedPatchBody = match body(&bytes) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let patch = FeedPatch {
        source: b.source,
        interval_minutes: b.interval_minutes,
        enabled: b.enabled,
    };
    match state.feeds.update(&id, patch).await {
        Ok(config) => match state.feeds.get(&config.id).await {
            Ok((config, status)) => reply(StatusCode::OK, &feed_json(&config, &status)),
            Err(e) => feed_error(&e, None),
        },
        Err(e) => feed_error(&e, None),
    }
}

async fn delete_feed(state: State, id: String) -> Response {
    match state.feeds.delete(&id).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => feed_error(&e, None),
    }
}

async fn run_feed(state: State, id: String) -> Response {
    match state.feeds.run(&id).await {
        Ok(_) => match state.feeds.get(&id).await {
            Ok((config, status)) => reply(StatusCode::OK, &feed_json(&config, &status)),
            Err(e) => feed_error(&e, None),
        },
        Err(e) => feed_error(&e, None),
    }
}

fn policy_json(p: &Blacklist) -> Value {
    json!({ "strikes": p.strikes, "within_days": p.within_days, "block_days": p.block_days })
}

async fn blacklist_status(state: State, organizer: String, query: String) -> Response {
    let organizer = percent_decode(&organizer).trim().to_lowercase();
    // Dates in the zone of the site asked for (any of its rooms), else UTC.
    let zone = match query_param(&query, "site") {
        Some(site) => match state.bookings.rooms().await {
            Ok(rooms) => rooms
                .into_iter()
                .find(|r| r.site == site && r.zone_known)
                .map_or(TimeZone::UTC, |r| r.zone),
            Err(e) => return service_error(&e, None),
        },
        None => TimeZone::UTC,
    };
    match state.bookings.block_of(&organizer).await {
        Ok((policy, block, no_shows)) => reply(
            StatusCode::OK,
            &json!({
                "organizer": organizer,
                "blocked": block.is_some(),
                "until": block.map(|b| b.until.to_string()),
                "until_local": block.map(|b| local_text(b.until, &zone)),
                "reason": block.map(|b| b.reason(&zone)),
                "no_shows": no_shows.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "policy": policy_json(&policy),
            }),
        ),
        Err(e) => service_error(&e, None),
    }
}

async fn get_blacklist_policy(state: State) -> Response {
    match state.bookings.blacklist_policy().await {
        Ok(p) => reply(StatusCode::OK, &policy_json(&p)),
        Err(e) => service_error(&e, None),
    }
}

async fn put_blacklist_policy(state: State, bytes: warp::hyper::body::Bytes) -> Response {
    let b: BlacklistBody = match body(&bytes) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let policy = Blacklist {
        strikes: b.strikes,
        within_days: b.within_days,
        block_days: b.block_days,
    };
    match state.bookings.set_blacklist_policy(policy).await {
        Ok(()) => reply(StatusCode::OK, &policy_json(&policy)),
        Err(e) => service_error(&e, None),
    }
}

async fn recover(rejection: Rejection) -> Result<Response, Infallible> {
    if let Some(Unauthorized(why)) = rejection.find::<Unauthorized>() {
        let mut response = problem(StatusCode::UNAUTHORIZED, "unauthorized", why);
        response.headers_mut().insert(
            warp::http::header::WWW_AUTHENTICATE,
            warp::http::HeaderValue::from_static("Bearer realm=\"roomgate\""),
        );
        return Ok(response);
    }
    if rejection.find::<StoreDown>().is_some() {
        return Ok(problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the hub's store is not available",
        ));
    }
    if rejection.is_not_found() {
        return Ok(problem(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such endpoint",
        ));
    }
    if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
        return Ok(problem(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("a request body is at most {BODY_LIMIT} bytes"),
        ));
    }
    if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        return Ok(problem(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this endpoint does not take that method",
        ));
    }
    Ok(problem(
        StatusCode::BAD_REQUEST,
        "bad_request",
        format!("{rejection:?}"),
    ))
}

/// The API's routes, all under `/api/v1/` (other paths are left to the next filter).
pub fn routes(state: Arc<WebState>) -> BoxedFilter<(Response,)> {
    let with = {
        let state = Arc::clone(&state);
        warp::any().map(move || Arc::clone(&state))
    };
    let auth = {
        let state = Arc::clone(&state);
        warp::header::optional::<String>("authorization")
            .and_then(move |header: Option<String>| {
                let state = Arc::clone(&state);
                async move { authorize(&state.store, header).await }
            })
            .map(|_token_name: String| ())
            .untuple_one()
    };
    let json_body = || warp::body::content_length_limit(BODY_LIMIT).and(warp::body::bytes());
    let query = || warp::query::raw().or(warp::any().map(String::new)).unify();

    let rooms = warp::path!("rooms")
        .and(warp::get())
        .and(with.clone())
        .then(list_rooms);
    let room_bookings = warp::path!("rooms" / String / String / "bookings")
        .and(warp::get())
        .and(query())
        .and(with.clone())
        .then(|site, room, q, s| list_bookings(s, site, room, q));
    let command = warp::path!("rooms" / String / String / "commands")
        .and(warp::post())
        .and(with.clone())
        .and(json_body())
        .then(|site, room, s, body| room_command(s, site, room, body));
    let resync = warp::path!("gateways" / String / String / "resync")
        .and(warp::post())
        .and(with.clone())
        .then(|site, gw, s| gateway_resync(s, site, gw));
    let create = warp::path!("bookings")
        .and(warp::post())
        .and(with.clone())
        .and(json_body())
        .then(create_booking);
    let get = warp::path!("bookings" / String)
        .and(warp::get())
        .and(with.clone())
        .then(|id, s| get_booking(s, id));
    let patch = warp::path!("bookings" / String)
        .and(warp::patch())
        .and(with.clone())
        .and(json_body())
        .then(|id, s, b| patch_booking(s, id, b));
    let cancel = warp::path!("bookings" / String)
        .and(warp::delete())
        .and(with.clone())
        .then(|id, s| cancel_booking(s, id));
    let series_create = warp::path!("series")
        .and(warp::post())
        .and(with.clone())
        .and(json_body())
        .then(create_series);
    let series_get = warp::path!("series" / String)
        .and(warp::get())
        .and(with.clone())
        .then(|id, s| get_series(s, id));
    let series_cancel = warp::path!("series" / String)
        .and(warp::delete())
        .and(with.clone())
        .then(|id, s| cancel_series(s, id));
    let occurrence_cancel = warp::path!("series" / String / "occurrences" / String)
        .and(warp::delete())
        .and(with.clone())
        .then(|id, date, s| cancel_occurrence(s, id, date));
    let occurrence_move = warp::path!("series" / String / "occurrences" / String)
        .and(warp::put())
        .and(with.clone())
        .and(json_body())
        .then(|id, date, s, b| move_occurrence(s, id, date, b));
    let feeds = warp::path!("feeds")
        .and(warp::get())
        .and(with.clone())
        .then(list_feeds);
    let feed_create = warp::path!("feeds")
        .and(warp::post())
        .and(with.clone())
        .and(json_body())
        .then(create_feed);
    let feed_get = warp::path!("feeds" / String)
        .and(warp::get())
        .and(with.clone())
        .then(|id, s| get_feed(s, id));
    let feed_patch = warp::path!("feeds" / String)
        .and(warp::patch())
        .and(with.clone())
        .and(json_body())
        .then(|id, s, b| patch_feed(s, id, b));
    let feed_delete = warp::path!("feeds" / String)
        .and(warp::delete())
        .and(with.clone())
        .then(|id, s| delete_feed(s, id));
    let feed_run = warp::path!("feeds" / String / "run")
        .and(warp::post())
        .and(with.clone())
        .then(|id, s| run_feed(s, id));
    let blacklist = warp::path!("organizers" / String / "blacklist")
        .and(warp::get())
        .and(query())
        .and(with.clone())
        .then(|organizer, q, s| blacklist_status(s, organizer, q));
    let policy_get = warp::path!("settings" / "blacklist")
        .and(warp::get())
        .and(with.clone())
        .then(get_blacklist_policy);
    let policy_put = warp::path!("settings" / "blacklist")
        .and(warp::put())
        .and(with)
        .and(json_body())
        .then(put_blacklist_policy);

    // Boxed at every step: warp's nested `Or` types otherwise make the debug build take
    // many minutes to compile.
    let endpoints = rooms
        .or(room_bookings)
        .unify()
        .boxed()
        .or(command)
        .unify()
        .boxed()
        .or(resync)
        .unify()
        .boxed()
        .or(create)
        .unify()
        .boxed()
        .or(get)
        .unify()
        .boxed()
        .or(patch)
        .unify()
        .boxed()
        .or(cancel)
        .unify()
        .boxed()
        .or(series_create)
        .unify()
        .boxed()
        .or(series_get)
        .unify()
        .boxed()
        .or(series_cancel)
        .unify()
        .boxed()
        .or(occurrence_cancel)
        .unify()
        .boxed()
        .or(occurrence_move)
        .unify()
        .boxed()
        .or(feeds)
        .unify()
        .boxed()
        .or(feed_create)
        .unify()
        .boxed()
        .or(feed_get)
        .unify()
        .boxed()
        .or(feed_patch)
        .unify()
        .boxed()
        .or(feed_delete)
        .unify()
        .boxed()
        .or(feed_run)
        .unify()
        .boxed()
        .or(blacklist)
        .unify()
        .boxed()
        .or(policy_get)
        .unify()
        .boxed()
        .or(policy_put)
        .unify()
        .boxed();
    warp::path("api")
        .and(warp::path("v1"))
        .and(auth.and(endpoints).recover(recover).unify())
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn berlin() -> TimeZone {
        jiff::tz::db().get("Europe/Berlin").expect("zone")
    }

    #[test]
    fn times_are_read_with_an_offset_or_on_the_site_clock() {
        let z = berlin();
        let utc = |s: &str| {
            parse_time(s, &z, "start")
                .map(|t| t.to_string())
                .map_err(|e| e.to_string())
        };
        assert_eq!(
            utc("2026-03-30T09:00:00+02:00").as_deref(),
            Ok("2026-03-30T07:00:00Z")
        );
        assert_eq!(
            utc("2026-03-30T07:00:00Z").as_deref(),
            Ok("2026-03-30T07:00:00Z")
        );
        assert_eq!(
            utc("2026-03-30T09:00").as_deref(),
            Ok("2026-03-30T07:00:00Z")
        );
        assert_eq!(
            utc("2026-03-27T09:00:00").as_deref(),
            Ok("2026-03-27T08:00:00Z")
        );
        // The autumn fold takes the first 02:30 (CEST).
        assert_eq!(
            utc("2026-10-25T02:30").as_deref(),
            Ok("2026-10-25T00:30:00Z")
        );
        let gap = parse_time("2026-03-29T02:30", &z, "start").expect_err("gap");
        assert_eq!(
            gap.to_string(),
            "start: 2026-03-29T02:30:00 does not exist in Europe/Berlin (the clocks go forward then)"
        );
        let bad = parse_time("tomorrow", &z, "end").expect_err("bad");
        assert!(
            bad.to_string()
                .starts_with("end: \"tomorrow\" is not a time"),
            "{bad}"
        );
        assert_eq!(
            parse_bound("2026-03-30", &z, "from")
                .map(|t| t.to_string())
                .map_err(|e| e.to_string())
                .as_deref(),
            Ok("2026-03-29T22:00:00Z")
        );
        assert_eq!(
            local_text("2026-03-30T07:00:00Z".parse().expect("ts"), &z),
            "2026-03-30T09:00:00+02:00"
        );
    }

    #[test]
    fn queries_decode_escapes_but_keep_plus() {
        let q = "from=2026-03-30T09:00:00%2B02:00&to=2026-03-31T09:00:00+02:00&site=h%71";
        assert_eq!(
            query_param(q, "from").as_deref(),
            Some("2026-03-30T09:00:00+02:00")
        );
        assert_eq!(
            query_param(q, "to").as_deref(),
            Some("2026-03-31T09:00:00+02:00")
        );
        assert_eq!(query_param(q, "site").as_deref(), Some("hq"));
        assert_eq!(query_param(q, "nope"), None);
        assert_eq!(percent_decode("ana%40example.com"), "ana@example.com");
        assert_eq!(percent_decode("100%"), "100%");
    }

    #[test]
    fn bad_bodies_name_the_field() {
        let r = body::<NewBookingBody>(br#"{"site":"hq","room":"r1","end":"x","organizer":"a"}"#)
            .expect_err("missing start");
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let r = body::<NewBookingBody>(b"{nope").expect_err("not json");
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(token_hash("rgt_x").len(), 64);
    }
}
