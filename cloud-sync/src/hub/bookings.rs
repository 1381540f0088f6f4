//! The hub's booking service: bookings, recurring series and the no-show blacklist over the
//! store, pushed to the gateways; and the gateways' booking facts reconciled into the hub's
//! bookings (PROTOCOL.md, "Reconciling changes made offline").
//!
//! # Rooms
//! The hub knows rooms from its gateways' last `Status` (`rooms`, `timezone`). A room is named
//! by its site and room id; the service finds the gateway that holds it. Two gateways of one
//! site claiming the same room id is refused with both named ([`ServiceError::AmbiguousRoom`]).
//!
//! # Changes
//! Every operation is one [`HubStore::transact_room`]: the room's bookings and series are loaded
//! into a [`Calendar`] (the pure rules: conflicts, validation, series), the operation runs, and
//! the bookings it changed are written with their [`BookingChange`]s in the same transaction.
//! The committed changes are then pushed to the gateway ([`Pusher`]); a gateway that misses a
//! push catches up from its cursor. What the gateway is told:
//! * an active booking that is new or whose time, subject or people changed: `upsert`;
//! * an active booking that became cancelled (by the API, a feed, or a reconciliation rule):
//!   `delete`;
//! * released and ended bookings are facts the gateway reported: nothing.
//!
//! # Series
//! A series is stored as a [`SeriesDoc`]; its occurrences are materialised as bookings (ids
//! `{series}@{local date}`) for the next [`HORIZON_DAYS`] days. Creating a series is all or
//! nothing over that horizon, every conflicting occurrence reported. The horizon job
//! ([`BookingService::extend_horizons`]) books the occurrences that enter the horizon as time
//! passes; one whose slot is taken by then is skipped and listed on the series (`skipped`),
//! never booked over another booking.
//!
//! # Blacklist
//! Creating a booking or a series is refused while the organizer is blocked by the no-show
//! policy ([`Blacklist`]; N, M, K from the `settings/blacklist` document, defaults 3 no-shows
//! within 30 days block 7 days). Imported calendars and walk-ins are facts from elsewhere and are
//! not refused.
//!
//! # Reconciliation (facts from gateways)
//! Applied by the replica that stored the events first ([`BookingService::apply_gateway_events`]):
//! 1. `booking_local` (a walk-in booked at the door panel): adopted under the same id when its
//!    slot is free at the hub. Otherwise the booking that starts first wins (a tie goes to the
//!    hub's booking): the walk-in wins over every later booking it overlaps, which is cancelled
//!    with a note and deleted at the gateway; or it gives way to an earlier one, is recorded as
//!    cancelled with a note and deleted at the gateway.
//! 2. `extended`: applied when the extra time is free; otherwise shortened to the start of the
//!    next booking, noted, and the shortened booking pushed down.
//! 3. `released`, `ended`: recorded as facts (state `released` / `ended`) unless the hub
//!    cancelled the booking first; `cancelled` at the gateway cancels it at the hub too.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use jiff::civil::{Date, DateTime, Weekday};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use super::service::Pusher;
use super::store::{
    BookingRecord, HubStore, HubStoreError, RoomDocs, RoomKey, RoomWrites, SeriesRecord,
};
use super::web::Now;
use crate::calendar::{
    Blacklist, Block, Booking, BookingError, BookingId, BookingRequest, BookingRules, BookingState,
    BookingUpdate, Calendar, Frequency, Length, Recurrence, Series, SeriesEnd, SeriesError,
    SeriesId, SeriesLimits, Slot, Window,
};
use crate::topics::GatewayId;
use crate::wire::{BookingChange, Event, EventKind, WireBooking};

/// How many days ahead series occurrences and imported events are booked.
pub const HORIZON_DAYS: i64 = 28;
/// The document kind of hub settings.
pub const SETTINGS_KIND: &str = "settings";
/// The key of the blacklist policy among the settings.
pub const BLACKLIST_KEY: &str = "blacklist";

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;
/// How far before `now` a room transaction loads bookings: a running booking may have started
/// up to 25 hours ago (a whole local day when the clocks go back), plus a margin.
const LOOKBACK_MS: i64 = 2 * DAY_MS;

/// A room as the hub knows it from its gateway's status.
#[derive(Debug, Clone)]
pub struct Room {
    pub site: String,
    pub id: String,
    pub name: String,
    pub gateway: GatewayId,
    /// The site's IANA time zone as the gateway reports it.
    pub timezone: String,
    pub zone: TimeZone,
    /// Whether the hub knows `timezone` (else `zone` is UTC and the room cannot be booked).
    pub zone_known: bool,
    pub online: bool,
    pub state: String,
    pub occupancy: String,
}

impl Room {
    pub fn key(&self) -> RoomKey {
        RoomKey {
            gateway: self.gateway.clone(),
            room: self.id.clone(),
        }
    }
}

/// Why a booking operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Store(#[from] HubStoreError),
    #[error("no room '{room}' at site '{site}' (the hub knows rooms from their gateways' status)")]
    UnknownRoom { site: String, room: String },
    #[error(
        "room '{room}' at site '{site}' is claimed by more than one gateway ({}): room ids must be unique within a site",
        .gateways.join(", ")
    )]
    AmbiguousRoom {
        site: String,
        room: String,
        gateways: Vec<String>,
    },
    #[error("gateway {gateway} reports the time zone '{zone}', which the hub does not know")]
    UnknownZone { gateway: String, zone: String },
    #[error("no booking '{0}'")]
    UnknownBooking(String),
    #[error("no series '{0}'")]
    UnknownSeries(String),
    #[error("series '{series}' has no occurrence on {date}")]
    UnknownOccurrence { series: String, date: Date },
    /// Bad input: which field, and why.
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    /// The slot is taken; `with` is the booking in the way.
    #[error("{message}")]
    Conflict {
        message: String,
        with: Box<BookingRecord>,
    },
    /// The organizer is blocked by the no-show policy; `reason` has the dates in the site's zone.
    #[error("{reason}")]
    Blocked {
        organizer: String,
        reason: String,
        until: Timestamp,
    },
    #[error(
        "{} occurrence(s) of the series conflict with other bookings; nothing was booked",
        .0.len()
    )]
    SeriesConflicts(Vec<OccurrenceClash>),
    #[error("booking '{id}' is {state}; only an active booking can be {action}")]
    NotActive {
        id: String,
        state: String,
        action: &'static str,
    },
    #[error("no random bytes for a new id")]
    Random,
}

/// One occurrence of a new series that cannot be booked, and what is in its way.
#[derive(Debug, Clone)]
pub struct OccurrenceClash {
    pub date: Date,
    pub start: Timestamp,
    pub end: Timestamp,
    /// The booking in the way (for another occurrence of the same series: `None`).
    pub with: Option<BookingRecord>,
    pub with_id: String,
    pub message: String,
}

/// A booking to make.
#[derive(Debug, Clone)]
pub struct NewBooking {
    pub start: Timestamp,
    pub end: Timestamp,
    pub subject: String,
    pub organizer: String,
    pub attendees: Vec<String>,
}

/// A change to a booking; `None` keeps the value.
#[derive(Debug, Clone, Default)]
pub struct BookingPatch {
    pub start: Option<Timestamp>,
    pub end: Option<Timestamp>,
    pub subject: Option<String>,
    pub organizer: Option<String>,
    pub attendees: Option<Vec<String>>,
}

/// A recurring booking to make; times are the site's wall clock.
#[derive(Debug, Clone)]
pub struct SeriesSpec {
    /// The local start of the first occurrence.
    pub first: DateTime,
    /// Each occurrence's exact length.
    pub length: SignedDuration,
    pub frequency: Frequency,
    pub interval: u32,
    pub end: SeriesEnd,
    pub subject: String,
    pub organizer: String,
    pub attendees: Vec<String>,
}

/// A recurring series as stored (`SeriesRecord::doc`) and shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesDoc {
    pub id: String,
    pub site: String,
    pub room: String,
    /// The zone the wall-clock times are kept in (the site's when the series was made).
    pub timezone: String,
    /// The local start of the first occurrence, `2026-03-23T09:00:00`.
    pub first: String,
    /// Each occurrence's length in minutes.
    pub minutes: i64,
    /// "daily" or "weekly".
    pub frequency: String,
    /// For weekly series: "mon" ... "sun".
    #[serde(default)]
    pub weekdays: Vec<String>,
    pub interval: u32,
    #[serde(default)]
    pub count: Option<u32>,
    #[serde(default)]
    pub until_ms: Option<i64>,
    /// Local dates whose occurrence is cancelled.
    #[serde(default)]
    pub excluded: BTreeSet<String>,
    /// Occurrences moved, by original local date.
    #[serde(default)]
    pub overrides: BTreeMap<String, SlotDoc>,
    pub subject: String,
    pub organizer: String,
    #[serde(default)]
    pub attendees: Vec<String>,
    /// Occurrences are booked up to this instant.
    pub materialised_until_ms: i64,
    /// Occurrences the horizon job could not book, with why.
    #[serde(default)]
    pub skipped: Vec<SkippedOccurrence>,
    pub created_ms: i64,
}

/// A moved occurrence's slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotDoc {
    pub start_ms: i64,
    pub end_ms: i64,
}

/// An occurrence the horizon job did not book.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedOccurrence {
    pub date: String,
    pub reason: String,
}

/// The blacklist policy as stored in the settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlacklistSettings {
    pub strikes: u32,
    pub within_days: u32,
    pub block_days: u32,
}

impl From<Blacklist> for BlacklistSettings {
    fn from(b: Blacklist) -> Self {
        BlacklistSettings {
            strikes: b.strikes,
            within_days: b.within_days,
            block_days: b.block_days,
        }
    }
}

impl From<BlacklistSettings> for Blacklist {
    fn from(b: BlacklistSettings) -> Self {
        Blacklist {
            strikes: b.strikes,
            within_days: b.within_days,
            block_days: b.block_days,
        }
    }
}

/// What the horizon job did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HorizonRun {
    pub series: usize,
    pub booked: usize,
    pub skipped: usize,
}

/// The booking service; a clone shares everything.
#[derive(Clone)]
pub struct BookingService {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<HubStore>,
    pusher: Pusher,
    now: Now,
    limits: SeriesLimits,
}

impl std::fmt::Debug for BookingService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BookingService").finish_non_exhaustive()
    }
}

/// An instant from milliseconds, clamped to the supported range.
pub fn ts(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(if ms < 0 {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}

/// `2026-03-30T09:00:00+02:00`: an instant on the site's wall clock.
pub fn local_text(t: Timestamp, zone: &TimeZone) -> String {
    t.to_zoned(zone.clone())
        .strftime("%Y-%m-%dT%H:%M:%S%:z")
        .to_string()
}

fn day_time(t: Timestamp, zone: &TimeZone) -> String {
    t.to_zoned(zone.clone())
        .strftime("%Y-%m-%d %H:%M")
        .to_string()
}

fn hh_mm(t: Timestamp, zone: &TimeZone) -> String {
    t.to_zoned(zone.clone()).strftime("%H:%M").to_string()
}

/// A new random id with a prefix: `b-3f9c...` (96 bits).
pub(crate) fn new_id(prefix: &str) -> Result<String, ServiceError> {
    let mut bytes = [0u8; 12];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| ServiceError::Random)?;
    Ok(format!("{prefix}-{}", hex(&bytes)))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn state_of(s: &str) -> BookingState {
    match s {
        "active" => BookingState::Active,
        "released" => BookingState::Released,
        "ended" => BookingState::Ended,
        _ => BookingState::Cancelled,
    }
}

fn domain_of(r: &BookingRecord) -> Booking {
    Booking {
        id: BookingId(r.id.clone()),
        room: r.room.clone(),
        start: ts(r.start_ms),
        end: ts(r.end_ms),
        subject: r.subject.clone(),
        organizer: r.organizer.clone(),
        attendees: r.attendees.clone(),
        state: state_of(&r.state),
        series: r.series.as_deref().map(SeriesId::from),
        source_uid: r.source_uid.clone(),
    }
}

/// The booking as a gateway gets it.
pub fn wire_of(r: &BookingRecord) -> WireBooking {
    WireBooking {
        id: r.id.clone(),
        room: r.room.clone(),
        start_ms: r.start_ms,
        end_ms: r.end_ms,
        subject: r.subject.clone(),
        organizer: r.organizer.clone(),
        attendees: r.attendees.clone(),
    }
}

/// An organizer as bookings and the blacklist key it: trimmed, lower-cased.
pub fn normalise_organizer(organizer: &str) -> Result<String, ServiceError> {
    let o = organizer.trim().to_lowercase();
    if o.is_empty() {
        return Err(ServiceError::Invalid {
            field: "organizer",
            reason: "the organizer is required (an e-mail address)".into(),
        });
    }
    if o.len() > 254 || o.contains(char::is_whitespace) {
        return Err(ServiceError::Invalid {
            field: "organizer",
            reason: format!("'{organizer}' is not an e-mail address"),
        });
    }
    Ok(o)
}

fn weekday_name(d: Weekday) -> &'static str {
    match d {
        Weekday::Monday => "mon",
        Weekday::Tuesday => "tue",
        Weekday::Wednesday => "wed",
        Weekday::Thursday => "thu",
        Weekday::Friday => "fri",
        Weekday::Saturday => "sat",
        Weekday::Sunday => "sun",
    }
}

/// A weekday from `mon`, `monday`, `MO` (iCalendar) and the like.
pub fn weekday_of(name: &str) -> Option<Weekday> {
    let n = name.trim().to_ascii_lowercase();
    let d = match n.get(..2)? {
        "mo" => Weekday::Monday,
        "tu" => Weekday::Tuesday,
        "we" => Weekday::Wednesday,
        "th" => Weekday::Thursday,
        "fr" => Weekday::Friday,
        "sa" => Weekday::Saturday,
        "su" => Weekday::Sunday,
        _ => return None,
    };
    let full = weekday_full(d);
    (n.len() >= 2 && full.starts_with(&n)).then_some(d)
}

fn weekday_full(d: Weekday) -> &'static str {
    match d {
        Weekday::Monday => "monday",
        Weekday::Tuesday => "tuesday",
        Weekday::Wednesday => "wednesday",
        Weekday::Thursday => "thursday",
        Weekday::Friday => "friday",
        Weekday::Saturday => "saturday",
        Weekday::Sunday => "sunday",
    }
}

fn corrupt_series(reason: String) -> ServiceError {
    ServiceError::Store(HubStoreError::Corrupt {
        table: "series",
        reason,
    })
}

impl SeriesDoc {
    fn new(id: String, room: &Room, spec: &SeriesSpec, organizer: String, now_ms: i64) -> Self {
        let (frequency, weekdays) = match &spec.frequency {
            Frequency::Daily => ("daily", Vec::new()),
            Frequency::Weekly { days, .. } => (
                "weekly",
                days.iter().map(|d| weekday_name(*d).to_owned()).collect(),
            ),
        };
        SeriesDoc {
            id,
            site: room.site.clone(),
            room: room.id.clone(),
            timezone: room.timezone.clone(),
            first: spec.first.to_string(),
            minutes: spec.length.as_secs() / 60,
            frequency: frequency.into(),
            weekdays,
            interval: spec.interval,
            count: match spec.end {
                SeriesEnd::Count(n) => Some(n),
                _ => None,
            },
            until_ms: match spec.end {
                SeriesEnd::Until(t) => Some(t.as_millisecond()),
                _ => None,
            },
            excluded: BTreeSet::new(),
            overrides: BTreeMap::new(),
            subject: spec.subject.clone(),
            organizer,
            attendees: spec.attendees.clone(),
            materialised_until_ms: now_ms,
            skipped: Vec::new(),
            created_ms: now_ms,
        }
    }

    /// The calendar's series for this document.
    pub fn to_series(&self) -> Result<Series, String> {
        let zone = jiff::tz::db()
            .get(&self.timezone)
            .map_err(|e| format!("series {}: time zone: {e}", self.id))?;
        let first: DateTime = self
            .first
            .parse()
            .map_err(|e| format!("series {}: first: {e}", self.id))?;
        let frequency = match self.frequency.as_str() {
            "daily" => Frequency::Daily,
            "weekly" => Frequency::Weekly {
                days: self
                    .weekdays
                    .iter()
                    .map(|d| weekday_of(d).ok_or_else(|| format!("weekday {d:?}")))
                    .collect::<Result<_, _>>()?,
                week_start: Weekday::Monday,
            },
            other => return Err(format!("series {}: frequency {other:?}", self.id)),
        };
        let end = match (self.count, self.until_ms) {
            (Some(n), _) => SeriesEnd::Count(n),
            (None, Some(u)) => SeriesEnd::Until(ts(u)),
            (None, None) => SeriesEnd::Never,
        };
        let date = |d: &str| -> Result<Date, String> {
            d.parse()
                .map_err(|e| format!("series {}: date {d:?}: {e}", self.id))
        };
        Ok(Series {
            id: SeriesId(self.id.clone()),
            zone,
            first,
            length: Length::exact(SignedDuration::from_mins(self.minutes)),
            recurrence: Recurrence {
                frequency,
                interval: self.interval,
                end,
            },
            excluded: self
                .excluded
                .iter()
                .map(|d| date(d))
                .collect::<Result<_, _>>()?,
            overrides: self
                .overrides
                .iter()
                .map(|(d, s)| {
                    Ok((
                        date(d)?,
                        Slot {
                            start: ts(s.start_ms),
                            end: ts(s.end_ms),
                        },
                    ))
                })
                .collect::<Result<_, String>>()?,
            subject: self.subject.clone(),
            organizer: self.organizer.clone(),
            attendees: self.attendees.clone(),
        })
    }

    fn record(&self) -> SeriesRecord {
        SeriesRecord {
            id: self.id.clone(),
            room: self.room.clone(),
            doc: serde_json::to_value(self).unwrap_or_default(),
        }
    }
}

fn series_doc(record: &SeriesRecord) -> Result<SeriesDoc, ServiceError> {
    serde_json::from_value(record.doc.clone())
        .map_err(|e| corrupt_series(format!("series {}: {e}", record.id)))
}

/// Whether the rule of `series` (ignoring its exceptions) has an occurrence on `date`.
fn rule_has_date(series: &Series, date: Date, limits: &SeriesLimits) -> bool {
    let mut plain = series.clone();
    plain.excluded.clear();
    plain.overrides.clear();
    let zone = &series.zone;
    let (Ok(from), Ok(to)) = (
        date.yesterday().and_then(|d| d.to_zoned(zone.clone())),
        date.checked_add(jiff::Span::new().days(2))
            .and_then(|d| d.to_zoned(zone.clone())),
    ) else {
        return false;
    };
    plain
        .occurrences(Window::new(from.timestamp(), to.timestamp()), limits)
        .is_ok_and(|os| os.iter().any(|o| o.date == date))
}

/// How a series rule error reads at the API: the field it is about.
fn series_error(e: SeriesError) -> ServiceError {
    let field = match &e {
        SeriesError::ZeroInterval => "repeat.interval",
        SeriesError::NoWeekdays => "repeat.weekdays",
        SeriesError::ZeroCount => "repeat.count",
        SeriesError::UntilBeforeStart { .. } => "repeat.until",
        SeriesError::BadLength { .. } => "end",
        SeriesError::TooManyOccurrences { .. } => "repeat",
        _ => "start",
    };
    ServiceError::Invalid {
        field,
        reason: e.to_string(),
    }
}

/// Who set a booking's source and note.
#[derive(Debug, Clone, Default)]
struct Meta {
    source: String,
    note: String,
}

/// One room's bookings during a transaction: the calendar, what was loaded, and what the
/// operation set besides the calendar's fields.
struct RoomBook {
    cal: Calendar,
    before: BTreeMap<String, BookingRecord>,
    meta: BTreeMap<String, Meta>,
    /// Bookings the gateway already has exactly as the hub now does (adopted walk-ins,
    /// extensions applied as made, cancellations made at the gateway): nothing to push.
    quiet: BTreeSet<String>,
    now_ms: i64,
}

impl RoomBook {
    fn load(room: &str, zone: &TimeZone, bookings: &[BookingRecord], now_ms: i64) -> RoomBook {
        let mut cal = Calendar::new(room, zone.clone());
        let mut before = BTreeMap::new();
        let mut meta = BTreeMap::new();
        for r in bookings {
            cal.restore(domain_of(r));
            meta.insert(
                r.id.clone(),
                Meta {
                    source: r.source.clone(),
                    note: r.note.clone(),
                },
            );
            before.insert(r.id.clone(), r.clone());
        }
        RoomBook {
            cal,
            before,
            meta,
            quiet: BTreeSet::new(),
            now_ms,
        }
    }

    fn now(&self) -> Timestamp {
        ts(self.now_ms)
    }

    fn zone(&self) -> &TimeZone {
        self.cal.zone()
    }

    fn set_meta(&mut self, id: &str, source: Option<&str>, note: impl Into<String>) {
        let meta = self.meta.entry(id.to_owned()).or_default();
        if let Some(source) = source {
            source.clone_into(&mut meta.source);
        }
        meta.note = note.into();
    }

    fn record_of(&self, b: &Booking) -> BookingRecord {
        let meta = self.meta.get(b.id.as_str()).cloned().unwrap_or_default();
        BookingRecord {
            id: b.id.to_string(),
            room: b.room.clone(),
            start_ms: b.start.as_millisecond(),
            end_ms: b.end.as_millisecond(),
            subject: b.subject.clone(),
            organizer: b.organizer.clone(),
            attendees: b.attendees.clone(),
            state: b.state.to_string(),
            series: b.series.as_ref().map(|s| s.0.clone()),
            source: meta.source,
            source_uid: b.source_uid.clone(),
            note: meta.note,
            updated_ms: self
                .before
                .get(b.id.as_str())
                .map_or(self.now_ms, |r| r.updated_ms),
        }
    }

    /// The booking as it would be stored now.
    fn record(&self, id: &str) -> Option<BookingRecord> {
        let b = self.cal.get(&BookingId::from(id))?;
        let mut r = self.record_of(b);
        if self.before.get(id) != Some(&r) {
            r.updated_ms = self.now_ms;
        }
        Some(r)
    }

    /// A booking refused by the calendar, as the API explains it.
    fn error(&self, e: BookingError) -> ServiceError {
        match e {
            BookingError::Conflict(c) => {
                let with = self.cal.get(&c.with).map(|b| self.record_of(b));
                let zone = self.zone();
                let message = match &with {
                    Some(w) => format!(
                        "the room is already booked from {} to {} ('{}', booking {})",
                        day_time(c.start, zone),
                        hh_mm(c.end, zone),
                        w.subject,
                        w.id
                    ),
                    None => c.to_string(),
                };
                match with {
                    Some(with) => ServiceError::Conflict {
                        message,
                        with: Box::new(with),
                    },
                    None => ServiceError::Invalid {
                        field: "start",
                        reason: message,
                    },
                }
            }
            BookingError::EndNotAfterStart { .. } | BookingError::TooLong { .. } => {
                ServiceError::Invalid {
                    field: "end",
                    reason: e.to_string(),
                }
            }
            BookingError::InPast { .. } => ServiceError::Invalid {
                field: "end",
                reason: e.to_string(),
            },
            BookingError::Unknown(id) => ServiceError::UnknownBooking(id.0),
            BookingError::DuplicateId(id) => ServiceError::Invalid {
                field: "id",
                reason: format!("a booking with id {id} already exists"),
            },
            BookingError::NotActive { id, state, action } => ServiceError::NotActive {
                id: id.0,
                state: state.to_string(),
                action,
            },
        }
    }

    /// The changed bookings and the changes the gateway must hear about (deletions first).
    fn writes(&self) -> RoomWrites {
        let mut writes = RoomWrites::default();
        let mut upserts = Vec::new();
        for b in self.cal.bookings() {
            let id = b.id.as_str();
            let before = self.before.get(id);
            let mut record = self.record_of(b);
            if before == Some(&record) {
                continue;
            }
            record.updated_ms = self.now_ms;
            if !self.quiet.contains(id) {
                let was_active = before.is_none_or(|p| p.state == "active");
                match b.state {
                    BookingState::Active
                        if before.is_none_or(|p| {
                            p.state != "active" || wire_of(p) != wire_of(&record)
                        }) =>
                    {
                        upserts.push(BookingChange::Upsert {
                            booking: wire_of(&record),
                        });
                    }
                    BookingState::Cancelled if was_active => {
                        writes.changes.push(BookingChange::Delete {
                            id: record.id.clone(),
                            room: record.room.clone(),
                        });
                    }
                    _ => {}
                }
            }
            writes.bookings.push(record);
        }
        writes.changes.extend(upserts);
        writes
    }
}

/// A booking fact reported by a gateway.
#[derive(Debug, Clone, PartialEq)]
enum Fact {
    WalkIn { booking: WireBooking },
    Extended { id: String, until_ms: i64 },
    Released { id: String, reason: String },
    Ended { id: String, at_ms: i64 },
    Cancelled { id: String },
}

/// The fact an event reports, if it is one; malformed data is an error naming what is wrong.
fn fact_of(e: &Event) -> Result<Option<Fact>, String> {
    let id = || {
        e.booking
            .clone()
            .ok_or_else(|| format!("{:?} event {} names no booking", e.kind, e.seq))
    };
    Ok(Some(match e.kind {
        EventKind::BookingLocal => {
            let booking: WireBooking = serde_json::from_value(e.data["booking"].clone())
                .map_err(|err| format!("booking_local event {}: data.booking: {err}", e.seq))?;
            Fact::WalkIn { booking }
        }
        EventKind::Extended => {
            let until_ms = e.data["until_ms"]
                .as_i64()
                .ok_or_else(|| format!("extended event {}: no data.until_ms", e.seq))?;
            Fact::Extended {
                id: id()?,
                until_ms,
            }
        }
        EventKind::Released => Fact::Released {
            id: id()?,
            reason: e.reason.clone(),
        },
        EventKind::Ended => Fact::Ended {
            id: id()?,
            at_ms: e.at_ms,
        },
        EventKind::Cancelled => Fact::Cancelled { id: id()? },
        _ => return Ok(None),
    }))
}

/// Applies one gateway fact to a room's bookings (see the module docs for the rules).
fn reconcile(book: &mut RoomBook, fact: Fact) {
    match fact {
        Fact::WalkIn { booking } => walk_in(book, booking),
        Fact::Extended { id, until_ms } => extend(book, &id, ts(until_ms)),
        Fact::Released { id, reason } => {
            if book.active(&id) && book.cal.release(&BookingId::from(id.as_str())).is_ok() {
                book.set_meta(&id, None, format!("released by the gateway: {reason}"));
            }
        }
        Fact::Ended { id, at_ms } => {
            let at = ts(at_ms);
            if book.active(&id) && book.cal.end(&BookingId::from(id.as_str()), at).is_ok() {
                let note = format!("ended at the gateway at {}", hh_mm(at, book.zone()));
                book.set_meta(&id, None, note);
            }
        }
        Fact::Cancelled { id } => {
            if let Some(mut b) = book.cal.get(&BookingId::from(id.as_str())).cloned()
                && b.state == BookingState::Active
            {
                b.state = BookingState::Cancelled;
                book.cal.restore(b);
                book.set_meta(&id, None, "cancelled at the gateway");
                book.quiet.insert(id);
            }
        }
    }
}

impl RoomBook {
    fn active(&self, id: &str) -> bool {
        self.cal
            .get(&BookingId::from(id))
            .is_some_and(|b| b.state == BookingState::Active)
    }
}

fn walk_in(book: &mut RoomBook, w: WireBooking) {
    let id = BookingId(w.id.clone());
    if book.cal.get(&id).is_some() {
        return; // adopted (or refused) before
    }
    let (start, end) = (ts(w.start_ms), ts(w.end_ms));
    if end <= start {
        tracing::warn!("walk-in {} ignored: it ends before it starts", w.id);
        return;
    }
    let mut walk_in = Booking {
        id: id.clone(),
        room: book.cal.room().to_owned(),
        start,
        end,
        subject: w.subject,
        organizer: w.organizer.trim().to_lowercase(),
        attendees: w.attendees,
        state: BookingState::Active,
        series: None,
        source_uid: None,
    };
    let rivals: Vec<Booking> = book.cal.blocking(start, end).cloned().collect();
    let zone = book.zone().clone();
    let earlier = rivals
        .iter()
        .filter(|r| r.start <= start)
        .min_by_key(|r| (r.start, r.id.clone()));
    if let Some(winner) = earlier {
        walk_in.state = BookingState::Cancelled;
        let note = format!(
            "conflict: booking {} ('{}', {}–{}) started first; the walk-in booked at the door \
             panel gave way (PROTOCOL.md, reconciling rule 1)",
            winner.id,
            winner.subject,
            day_time(winner.start, &zone),
            hh_mm(winner.end, &zone)
        );
        book.cal.restore(walk_in);
        book.set_meta(id.as_str(), Some("gateway"), note);
        return;
    }
    book.cal.restore(walk_in);
    book.set_meta(
        id.as_str(),
        Some("gateway"),
        "walk-in booked at the door panel; adopted by the hub",
    );
    book.quiet.insert(id.0.clone());
    for mut loser in rivals {
        if loser.state != BookingState::Active {
            continue;
        }
        let note = format!(
            "conflict: the walk-in {} booked at the door panel from {} started first \
             (PROTOCOL.md, reconciling rule 1)",
            id,
            day_time(start, &zone)
        );
        loser.state = BookingState::Cancelled;
        let loser_id = loser.id.0.clone();
        book.cal.restore(loser);
        book.set_meta(&loser_id, None, note);
    }
}

fn extend(book: &mut RoomBook, id: &str, until: Timestamp) {
    let Some(mut b) = book.cal.get(&BookingId::from(id)).cloned() else {
        tracing::warn!("extension of unknown booking {id} ignored");
        return;
    };
    if b.state != BookingState::Active || until <= b.end {
        return; // a cancellation at the hub wins; a release or ending is final
    }
    let zone = book.zone().clone();
    let next = book
        .cal
        .blocking(b.end, until)
        .filter(|o| o.id != b.id)
        .min_by_key(|o| (o.start, o.id.clone()))
        .map(|o| (o.start, o.id.clone()));
    match next {
        None => {
            b.end = until;
            book.cal.restore(b);
            let note = format!("extended at the door panel until {}", hh_mm(until, &zone));
            book.set_meta(id, None, note);
            book.quiet.insert(id.to_owned());
        }
        Some((next_start, next_id)) => {
            let end = next_start.max(b.end);
            b.end = end;
            book.cal.restore(b);
            let note = format!(
                "extension at the door panel until {} shortened to {}: booking {} starts then \
                 (PROTOCOL.md, reconciling rule 2)",
                hh_mm(until, &zone),
                hh_mm(end, &zone),
                next_id
            );
            book.set_meta(id, None, note);
            book.quiet.remove(id);
        }
    }
}

impl BookingService {
    pub fn new(store: Arc<HubStore>, pusher: Pusher, now: Now) -> BookingService {
        BookingService {
            inner: Arc::new(Inner {
                store,
                pusher,
                now,
                limits: SeriesLimits::default(),
            }),
        }
    }

    pub fn store(&self) -> &Arc<HubStore> {
        &self.inner.store
    }

    pub fn pusher(&self) -> &Pusher {
        &self.inner.pusher
    }

    /// The hub's clock.
    pub fn clock(&self) -> Now {
        Arc::clone(&self.inner.now)
    }

    /// The hub's clock, in milliseconds.
    pub fn now_ms(&self) -> i64 {
        (self.inner.now)()
    }

    /// Every room of every gateway that has sent a status, by site, room and gateway.
    pub async fn rooms(&self) -> Result<Vec<Room>, ServiceError> {
        let mut rooms = Vec::new();
        for g in self.store().gateways().await? {
            let Some(status) = g.status else { continue };
            let zone = jiff::tz::db().get(&status.timezone).ok();
            for r in &status.rooms {
                rooms.push(Room {
                    site: g.id.site().to_owned(),
                    id: r.id.clone(),
                    name: if r.name.is_empty() {
                        r.id.clone()
                    } else {
                        r.name.clone()
                    },
                    gateway: g.id.clone(),
                    timezone: status.timezone.clone(),
                    zone: zone.clone().unwrap_or(TimeZone::UTC),
                    zone_known: zone.is_some(),
                    online: status.online,
                    state: r.state.clone(),
                    occupancy: r.occupancy.clone(),
                });
            }
        }
        rooms.sort_by(|a, b| {
            (&a.site, &a.id, a.gateway.gateway()).cmp(&(&b.site, &b.id, b.gateway.gateway()))
        });
        Ok(rooms)
    }

    /// The room `room` of site `site`, found through the gateway that holds it.
    pub async fn room(&self, site: &str, room: &str) -> Result<Room, ServiceError> {
        let mut claims: Vec<Room> = self
            .rooms()
            .await?
            .into_iter()
            .filter(|r| r.site == site && r.id == room)
            .collect();
        if claims.len() > 1 {
            return Err(ServiceError::AmbiguousRoom {
                site: site.to_owned(),
                room: room.to_owned(),
                gateways: claims.iter().map(|r| r.gateway.to_string()).collect(),
            });
        }
        let room = claims.pop().ok_or_else(|| ServiceError::UnknownRoom {
            site: site.to_owned(),
            room: room.to_owned(),
        })?;
        if !room.zone_known {
            return Err(ServiceError::UnknownZone {
                gateway: room.gateway.to_string(),
                zone: room.timezone,
            });
        }
        Ok(room)
    }

    /// The room a stored booking or series is in, even if its gateway no longer lists it.
    pub async fn room_of(&self, key: &RoomKey) -> Result<Room, ServiceError> {
        let status = self.store().status(&key.gateway).await?;
        let timezone = status
            .as_ref()
            .map_or_else(|| "UTC".to_owned(), |s| s.timezone.clone());
        let zone = jiff::tz::db().get(&timezone).ok();
        let listed = status
            .as_ref()
            .and_then(|s| s.rooms.iter().find(|r| r.id == key.room));
        Ok(Room {
            site: key.gateway.site().to_owned(),
            id: key.room.clone(),
            name: listed
                .map(|r| r.name.clone())
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| key.room.clone()),
            gateway: key.gateway.clone(),
            timezone,
            zone: zone.clone().unwrap_or(TimeZone::UTC),
            zone_known: zone.is_some(),
            online: status.as_ref().is_some_and(|s| s.online),
            state: listed.map(|r| r.state.clone()).unwrap_or_default(),
            occupancy: listed.map(|r| r.occupancy.clone()).unwrap_or_default(),
        })
    }

    /// Runs `decide` in a room transaction, then pushes what it changed to the gateway.
    async fn commit<T, F>(&self, key: &RoomKey, since_ms: i64, decide: F) -> Result<T, ServiceError>
    where
        F: FnOnce(RoomDocs) -> Result<(T, RoomWrites), ServiceError> + Send,
        T: Send,
    {
        let commit = self.store().transact_room(key, since_ms, decide).await??;
        self.pusher().push(&key.gateway, &commit.pushed).await;
        Ok(commit.value)
    }

    /// A booking with its room.
    pub async fn booking(&self, id: &str) -> Result<(Room, BookingRecord), ServiceError> {
        let (key, record) = self
            .store()
            .find_booking(id)
            .await?
            .ok_or_else(|| ServiceError::UnknownBooking(id.to_owned()))?;
        Ok((self.room_of(&key).await?, record))
    }

    /// A room's bookings overlapping `[from, to)`, every state, by start.
    pub async fn bookings(
        &self,
        room: &Room,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<BookingRecord>, ServiceError> {
        Ok(self
            .store()
            .bookings(&room.key(), from.as_millisecond(), to.as_millisecond())
            .await?)
    }

    /// The blacklist policy in force (the settings document, or the defaults).
    pub async fn blacklist_policy(&self) -> Result<Blacklist, ServiceError> {
        let doc = self.store().doc(SETTINGS_KIND, BLACKLIST_KEY).await?;
        Ok(doc
            .and_then(|d| serde_json::from_value::<BlacklistSettings>(d).ok())
            .map_or_else(Blacklist::default, Blacklist::from))
    }

    /// Stores a new blacklist policy; every number must be at least 1.
    pub async fn set_blacklist_policy(&self, policy: Blacklist) -> Result<(), ServiceError> {
        for (field, n) in [
            ("strikes", policy.strikes),
            ("within_days", policy.within_days),
            ("block_days", policy.block_days),
        ] {
            if n == 0 || n > 3650 {
                return Err(ServiceError::Invalid {
                    field,
                    reason: format!("must be between 1 and 3650 (got {n})"),
                });
            }
        }
        let doc = serde_json::to_value(BlacklistSettings::from(policy)).unwrap_or_default();
        Ok(self
            .store()
            .put_doc(SETTINGS_KIND, BLACKLIST_KEY, &doc)
            .await?)
    }

    /// An organizer's no-shows and the block in force now, if any.
    pub async fn block_of(
        &self,
        organizer: &str,
    ) -> Result<(Blacklist, Option<Block>, Vec<Timestamp>), ServiceError> {
        let policy = self.blacklist_policy().await?;
        // Every strike counts: the policy spends strikes block by block, so a cut history
        // could count spent ones again.
        let times: Vec<Timestamp> = self
            .store()
            .no_shows(organizer, i64::MIN)
            .await?
            .into_iter()
            .map(ts)
            .collect();
        let block = policy.block(&times, ts(self.now_ms()));
        Ok((policy, block, times))
    }

    async fn check_blacklist(&self, organizer: &str, room: &Room) -> Result<(), ServiceError> {
        match self.block_of(organizer).await?.1 {
            Some(block) => Err(ServiceError::Blocked {
                organizer: organizer.to_owned(),
                reason: format!("{organizer}: {}", block.reason(&room.zone)),
                until: block.until,
            }),
            None => Ok(()),
        }
    }

    /// Books a room for an organizer who is not blocked; refused with the booking in the way.
    pub async fn create_booking(
        &self,
        room: &Room,
        new: NewBooking,
    ) -> Result<BookingRecord, ServiceError> {
        let organizer = normalise_organizer(&new.organizer)?;
        self.check_blacklist(&organizer, room).await?;
        let id = new_id("b")?;
        let now = self.now_ms();
        let (room_id, zone) = (room.id.clone(), room.zone.clone());
        self.commit(&room.key(), now - LOOKBACK_MS, move |docs| {
            let mut book = RoomBook::load(&room_id, &zone, &docs.bookings, now);
            let request = BookingRequest {
                id: BookingId(id.clone()),
                start: new.start,
                end: new.end,
                subject: new.subject,
                organizer,
                attendees: new.attendees,
            };
            let created = book.cal.create(request, book.now()).map(drop);
            created.map_err(|e| book.error(e))?;
            book.set_meta(&id, Some("api"), "");
            let record = book
                .record(&id)
                .ok_or_else(|| ServiceError::UnknownBooking(id.clone()))?;
            Ok((record, book.writes()))
        })
        .await
    }

    /// Changes an active booking (an occurrence of a series is moved as an exception).
    pub async fn change_booking(
        &self,
        id: &str,
        patch: BookingPatch,
    ) -> Result<(Room, BookingRecord), ServiceError> {
        let (room, _) = self.booking(id).await?;
        let organizer = patch
            .organizer
            .as_deref()
            .map(normalise_organizer)
            .transpose()?;
        let now = self.now_ms();
        let (room_id, zone, id) = (room.id.clone(), room.zone.clone(), id.to_owned());
        let record = self
            .commit(&room.key(), now - LOOKBACK_MS, move |docs| {
                let mut book = RoomBook::load(&room_id, &zone, &docs.bookings, now);
                let update = BookingUpdate {
                    start: patch.start,
                    end: patch.end,
                    subject: patch.subject,
                    organizer,
                    attendees: patch.attendees,
                };
                let moved = update.start.is_some() || update.end.is_some();
                let changed = book
                    .cal
                    .change(&BookingId(id.clone()), update, book.now())
                    .map(drop);
                changed.map_err(|e| book.error(e))?;
                let record = book
                    .record(&id)
                    .ok_or_else(|| ServiceError::UnknownBooking(id.clone()))?;
                let mut writes = book.writes();
                // A moved occurrence is an exception of its series.
                if moved
                    && let Some((series, date)) = occurrence_of(&record)
                    && let Some(s) = docs.series.iter().find(|s| s.id == series)
                {
                    let mut doc = series_doc(s)?;
                    doc.overrides.insert(
                        date,
                        SlotDoc {
                            start_ms: record.start_ms,
                            end_ms: record.end_ms,
                        },
                    );
                    writes.series.push(doc.record());
                }
                Ok((record, writes))
            })
            .await?;
        Ok((room, record))
    }

    /// Cancels a booking that is not over (cancelling twice changes nothing).
    pub async fn cancel_booking(&self, id: &str) -> Result<(Room, BookingRecord), ServiceError> {
        let (room, _) = self.booking(id).await?;
        let now = self.now_ms();
        let (room_id, zone, id) = (room.id.clone(), room.zone.clone(), id.to_owned());
        let record = self
            .commit(&room.key(), now - LOOKBACK_MS, move |docs| {
                let mut book = RoomBook::load(&room_id, &zone, &docs.bookings, now);
                let cancelled = book
                    .cal
                    .cancel(&BookingId(id.clone()), book.now())
                    .map(drop);
                cancelled.map_err(|e| book.error(e))?;
                let record = book
                    .record(&id)
                    .ok_or_else(|| ServiceError::UnknownBooking(id.clone()))?;
                let mut writes = book.writes();
                if let Some((series, date)) = occurrence_of(&record)
                    && let Some(s) = docs.series.iter().find(|s| s.id == series)
                {
                    let mut doc = series_doc(s)?;
                    if doc.excluded.insert(date) {
                        writes.series.push(doc.record());
                    }
                }
                Ok((record, writes))
            })
            .await?;
        Ok((room, record))
    }

    /// Books a recurring series: every occurrence within the horizon, or nothing (with every
    /// conflicting occurrence reported).
    pub async fn create_series(
        &self,
        room: &Room,
        spec: SeriesSpec,
    ) -> Result<(SeriesDoc, Vec<BookingRecord>), ServiceError> {
        let organizer = normalise_organizer(&spec.organizer)?;
        self.check_blacklist(&organizer, room).await?;
        let now = self.now_ms();
        let horizon = now.saturating_add(HORIZON_DAYS * DAY_MS);
        let mut doc = SeriesDoc::new(new_id("s")?, room, &spec, organizer, now);
        doc.materialised_until_ms = horizon;
        let series = doc.to_series().map_err(|reason| ServiceError::Invalid {
            field: "repeat",
            reason,
        })?;
        let limits = self.inner.limits;
        series
            .validate(BookingRules::default().max_length, &limits)
            .map_err(series_error)?;
        let (room_id, zone) = (room.id.clone(), room.zone.clone());
        self.commit(&room.key(), now - LOOKBACK_MS, move |docs| {
            let mut book = RoomBook::load(&room_id, &zone, &docs.bookings, now);
            let window = Window::new(ts(now), ts(horizon));
            let ids = match book.cal.create_series(&series, window, ts(now), &limits) {
                Ok(ids) => ids,
                Err(SeriesError::Conflicts(list)) => {
                    let clashes = list
                        .into_iter()
                        .map(|c| {
                            let with = book.cal.get(&c.conflict.with).map(|b| book.record_of(b));
                            let message = format!(
                                "{}: the room is already booked from {} to {} ({})",
                                c.date,
                                day_time(c.conflict.start, &zone),
                                hh_mm(c.conflict.end, &zone),
                                with.as_ref().map_or_else(
                                    || format!("occurrence {} of this series", c.conflict.with),
                                    |w| format!("'{}', booking {}", w.subject, w.id)
                                )
                            );
                            OccurrenceClash {
                                date: c.date,
                                start: c.start,
                                end: c.end,
                                with,
                                with_id: c.conflict.with.0,
                                message,
                            }
                        })
                        .collect();
                    return Err(ServiceError::SeriesConflicts(clashes));
                }
                Err(SeriesError::Occurrence { date, error }) => {
                    return Err(match book.error(error) {
                        ServiceError::Invalid { field, reason } => ServiceError::Invalid {
                            field,
                            reason: format!("occurrence {date}: {reason}"),
                        },
                        other => other,
                    });
                }
                Err(e) => return Err(series_error(e)),
            };
            let mut records = Vec::with_capacity(ids.len());
            for id in &ids {
                book.set_meta(id.as_str(), Some("api"), "");
            }
            for id in &ids {
                records.extend(book.record(id.as_str()));
            }
            let mut writes = book.writes();
            writes.series.push(doc.record());
            Ok(((doc, records), writes))
        })
        .await
    }

    /// Finds a series and its room.
    async fn find_series(&self, id: &str) -> Result<(Room, SeriesDoc), ServiceError> {
        let (key, record) = self
            .store()
            .all_series()
            .await?
            .into_iter()
            .find(|(_, s)| s.id == id)
            .ok_or_else(|| ServiceError::UnknownSeries(id.to_owned()))?;
        Ok((self.room_of(&key).await?, series_doc(&record)?))
    }

    /// A series with its room and its booked occurrences from a day ago to the horizon.
    pub async fn series(
        &self,
        id: &str,
    ) -> Result<(Room, SeriesDoc, Vec<BookingRecord>), ServiceError> {
        let (room, doc) = self.find_series(id).await?;
        let now = self.now_ms();
        let bookings = self
            .store()
            .bookings(&room.key(), now - DAY_MS, now + (HORIZON_DAYS + 1) * DAY_MS)
            .await?
            .into_iter()
            .filter(|b| b.series.as_deref() == Some(id))
            .collect();
        Ok((room, doc, bookings))
    }

    /// Cancels a series from now on: every occurrence not over yet; past ones stay as they were.
    pub async fn cancel_series(
        &self,
        id: &str,
    ) -> Result<(Room, Vec<BookingRecord>), ServiceError> {
        let (room, _) = self.find_series(id).await?;
        let now = self.now_ms();
        let (room_id, zone, id) = (room.id.clone(), room.zone.clone(), id.to_owned());
        let cancelled = self
            .commit(&room.key(), now - LOOKBACK_MS, move |docs| {
                let mut book = RoomBook::load(&room_id, &zone, &docs.bookings, now);
                let ids = book.cal.cancel_series(&SeriesId(id.clone()), book.now());
                for b in &ids {
                    book.set_meta(b.as_str(), None, "the series was cancelled");
                }
                let records = ids.iter().filter_map(|b| book.record(b.as_str())).collect();
                let mut writes = book.writes();
                writes.series_deleted.push(id);
                Ok((records, writes))
            })
            .await?;
        Ok((room, cancelled))
    }

    /// Cancels one occurrence of a series (named by its original local date).
    pub async fn cancel_occurrence(
        &self,
        series_id: &str,
        date: Date,
    ) -> Result<(Room, SeriesDoc, Option<BookingRecord>), ServiceError> {
        let (room, _) = self.find_series(series_id).await?;
        let now = self.now_ms();
        let limits = self.inner.limits;
        let (room_id, zone, sid) = (room.id.clone(), room.zone.clone(), series_id.to_owned());
        let (doc, record) = self
            .commit(&room.key(), now - LOOKBACK_MS, move |docs| {
                let mut book = RoomBook::load(&room_id, &zone, &docs.bookings, now);
                let (mut doc, series) = series_in(&docs, &sid)?;
                if !rule_has_date(&series, date, &limits) {
                    return Err(ServiceError::UnknownOccurrence { series: sid, date });
                }
                let oid = series.occurrence_id(date);
                let mut record = None;
                if let Some(b) = book.cal.get(&oid) {
                    if b.state == BookingState::Active {
                        let cancelled = book.cal.cancel(&oid, book.now()).map(drop);
                        cancelled.map_err(|e| book.error(e))?;
                        book.set_meta(oid.as_str(), None, "this occurrence was cancelled");
                    }
                    record = book.record(oid.as_str());
                }
                doc.excluded.insert(date.to_string());
                let mut writes = book.writes();
                writes.series.push(doc.record());
                Ok(((doc, record), writes))
            })
            .await?;
        Ok((room, doc, record))
    }

    /// Moves one occurrence of a series to another slot (an exception of the series).
    pub async fn move_occurrence(
        &self,
        series_id: &str,
        date: Date,
        start: Timestamp,
        end: Timestamp,
    ) -> Result<(Room, SeriesDoc, Option<BookingRecord>), ServiceError> {
        let (room, _) = self.find_series(series_id).await?;
        let now = self.now_ms();
        let horizon = now.saturating_add(HORIZON_DAYS * DAY_MS);
        let limits = self.inner.limits;
        let (room_id, zone, sid) = (room.id.clone(), room.zone.clone(), series_id.to_owned());
        let (doc, record) = self
            .commit(&room.key(), now - LOOKBACK_MS, move |docs| {
                let mut book = RoomBook::load(&room_id, &zone, &docs.bookings, now);
                let (mut doc, series) = series_in(&docs, &sid)?;
                if !rule_has_date(&series, date, &limits) {
                    return Err(ServiceError::UnknownOccurrence { series: sid, date });
                }
                if doc.excluded.contains(&date.to_string()) {
                    return Err(ServiceError::Invalid {
                        field: "date",
                        reason: format!("the occurrence on {date} is cancelled"),
                    });
                }
                let oid = series.occurrence_id(date);
                let update = BookingUpdate {
                    start: Some(start),
                    end: Some(end),
                    ..BookingUpdate::default()
                };
                if book.cal.get(&oid).is_some() {
                    let changed = book.cal.change(&oid, update, book.now()).map(drop);
                    changed.map_err(|e| book.error(e))?;
                } else {
                    let valid = book.cal.validate(start, end, book.now());
                    valid.map_err(|e| book.error(e))?;
                    let free = book.cal.check_slot(start, end, None);
                    free.map_err(|c| book.error(BookingError::Conflict(c)))?;
                    if start.as_millisecond() < horizon {
                        let occurrence = Booking {
                            id: oid.clone(),
                            room: room_id.clone(),
                            start,
                            end,
                            subject: series.subject.clone(),
                            organizer: series.organizer.clone(),
                            attendees: series.attendees.clone(),
                            state: BookingState::Active,
                            series: Some(series.id.clone()),
                            source_uid: None,
                        };
                        let inserted = book.cal.insert(occurrence, book.now()).map(drop);
                        inserted.map_err(|e| book.error(e))?;
                        book.set_meta(oid.as_str(), Some("api"), "");
                    }
                }
                doc.overrides.insert(
                    date.to_string(),
                    SlotDoc {
                        start_ms: start.as_millisecond(),
                        end_ms: end.as_millisecond(),
                    },
                );
                let record = book.record(oid.as_str());
                let mut writes = book.writes();
                writes.series.push(doc.record());
                Ok(((doc, record), writes))
            })
            .await?;
        Ok((room, doc, record))
    }

    /// Books the occurrences of every series that entered the horizon since the last run.
    pub async fn extend_horizons(&self) -> Result<HorizonRun, ServiceError> {
        let now = self.now_ms();
        let horizon = now.saturating_add(HORIZON_DAYS * DAY_MS);
        let limits = self.inner.limits;
        let mut run = HorizonRun::default();
        for (key, record) in self.store().all_series().await? {
            let doc = series_doc(&record)?;
            if doc.materialised_until_ms >= horizon {
                continue;
            }
            let room = self.room_of(&key).await?;
            let (room_id, zone, sid) = (room.id.clone(), room.zone.clone(), record.id.clone());
            let (booked, skipped) = self
                .commit(&key, now - LOOKBACK_MS, move |docs| {
                    let mut book = RoomBook::load(&room_id, &zone, &docs.bookings, now);
                    let (mut doc, series) = series_in(&docs, &sid)?;
                    let window = Window::new(ts(now), ts(horizon));
                    let occurrences = series
                        .occurrences(window, &limits)
                        .map_err(|e| corrupt_series(format!("series {sid}: {e}")))?;
                    let (mut booked, mut skipped) = (0, 0);
                    let now_ts = book.now();
                    for o in occurrences.into_iter().filter(|o| o.end > now_ts) {
                        let oid = series.occurrence_id(o.date);
                        let date = o.date.to_string();
                        if book.cal.get(&oid).is_some()
                            || doc.skipped.iter().any(|s| s.date == date)
                        {
                            continue;
                        }
                        let occurrence = Booking {
                            id: oid.clone(),
                            room: room_id.clone(),
                            start: o.start,
                            end: o.end,
                            subject: series.subject.clone(),
                            organizer: series.organizer.clone(),
                            attendees: series.attendees.clone(),
                            state: BookingState::Active,
                            series: Some(series.id.clone()),
                            source_uid: None,
                        };
                        let inserted = book.cal.insert(occurrence, book.now()).map(drop);
                        match inserted {
                            Ok(()) => {
                                book.set_meta(oid.as_str(), Some("api"), "");
                                booked += 1;
                            }
                            Err(e) => {
                                let reason = book.error(e).to_string();
                                doc.skipped.push(SkippedOccurrence { date, reason });
                                skipped += 1;
                            }
                        }
                    }
                    doc.materialised_until_ms = horizon;
                    let mut writes = book.writes();
                    writes.series.push(doc.record());
                    Ok(((booked, skipped), writes))
                })
                .await?;
            run.series += 1;
            run.booked += booked;
            run.skipped += skipped;
        }
        Ok(run)
    }

    /// Runs [`BookingService::extend_horizons`] now and then every `every` (the hub binary
    /// starts it; every replica may run it: the room transactions make it idempotent).
    pub fn spawn_horizon_job(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let service = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match service.extend_horizons().await {
                    Ok(run) if run.booked + run.skipped > 0 => tracing::info!(
                        "series horizon: {} occurrence(s) booked, {} skipped",
                        run.booked,
                        run.skipped
                    ),
                    Ok(_) => {}
                    Err(e) => tracing::error!("series horizon not extended: {e}"),
                }
            }
        })
    }

    /// Applies the booking facts among a gateway's fresh events (walk-ins, extensions,
    /// releases, endings, cancellations) to the hub's bookings; returns how many facts there
    /// were. Malformed facts are logged and skipped.
    pub async fn apply_gateway_events(
        &self,
        gw: &GatewayId,
        events: &[Event],
    ) -> Result<usize, ServiceError> {
        let mut by_room: BTreeMap<&str, Vec<(i64, Fact)>> = BTreeMap::new();
        for e in events {
            match fact_of(e) {
                Ok(Some(fact)) => by_room.entry(&e.room).or_default().push((e.at_ms, fact)),
                Ok(None) => {}
                Err(why) => tracing::warn!("from {gw}: {why}; ignored"),
            }
        }
        let mut applied = 0;
        for (room, facts) in by_room {
            let key = RoomKey {
                gateway: gw.clone(),
                room: room.to_owned(),
            };
            // Booking ids are unique across the hub: a walk-in id already used in another
            // room cannot be adopted.
            let mut usable = Vec::with_capacity(facts.len());
            for (at, fact) in facts {
                if let Fact::WalkIn { booking } = &fact
                    && let Some((elsewhere, _)) = self.store().find_booking(&booking.id).await?
                    && elsewhere != key
                {
                    tracing::warn!(
                        "walk-in {} from {gw} not adopted: the id is taken in {}/{}",
                        booking.id,
                        elsewhere.gateway,
                        elsewhere.room
                    );
                    continue;
                }
                usable.push((at, fact));
            }
            let now = self.now_ms();
            let since = usable
                .iter()
                .map(|(at, _)| *at)
                .min()
                .unwrap_or(now)
                .min(now)
                - LOOKBACK_MS;
            let zone = self.room_of(&key).await?.zone;
            applied += usable.len();
            let room_id = room.to_owned();
            self.commit(&key, since, move |docs| {
                let mut book = RoomBook::load(&room_id, &zone, &docs.bookings, now);
                for (_, fact) in usable {
                    reconcile(&mut book, fact);
                }
                Ok(((), book.writes()))
            })
            .await?;
        }
        Ok(applied)
    }
}

/// What an import of a feed into a room did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImportOutcome {
    pub created: usize,
    pub updated: usize,
    pub cancelled: usize,
    /// Changes the calendar refused (a conflict, a booking over): booking id, the event's
    /// UID, its start, and why.
    pub refused: Vec<RefusedImport>,
}

/// An imported event the hub did not book (or change), with why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedImport {
    pub booking: String,
    #[serde(default)]
    pub uid: Option<String>,
    #[serde(default)]
    pub start_ms: Option<i64>,
    pub reason: String,
}

impl BookingService {
    /// Imports a parsed feed into a room within `window` (the rules of `calendar::import`): the bookings this source made before are diffed with the feed's
    /// expansion and the changes applied in one room transaction. `source` is the bookings'
    /// `source` ("feed:<id>").
    pub async fn import_feed(
        &self,
        room: &Room,
        source: &str,
        feed: crate::calendar::Feed,
        window: Window,
    ) -> Result<ImportOutcome, ServiceError> {
        use crate::calendar::{ImportChange, diff, expand_feed};
        let now = self.now_ms();
        let limits = self.inner.limits;
        let (room_id, zone, source) = (room.id.clone(), room.zone.clone(), source.to_owned());
        // Ids hash the room's full name, so two sites' rooms "r1" importing one calendar do not
        // share booking ids.
        let qualified = format!("{}/{}", room.gateway, room.id);
        let since = window.start.as_millisecond().min(now) - LOOKBACK_MS;
        self.commit(&room.key(), since, move |docs| {
            let mut book = RoomBook::load(&room_id, &zone, &docs.bookings, now);
            let old: Vec<Booking> = book
                .cal
                .bookings()
                .filter(|b| {
                    book.meta
                        .get(b.id.as_str())
                        .is_some_and(|m| m.source == source)
                })
                .cloned()
                .collect();
            let expansion = expand_feed(&feed, &qualified, window, &limits);
            let mut outcome = ImportOutcome::default();
            for (uid, error) in &expansion.errors {
                outcome.refused.push(RefusedImport {
                    booking: String::new(),
                    uid: Some(uid.clone()),
                    start_ms: None,
                    reason: error.to_string(),
                });
            }
            let events: BTreeMap<&BookingId, &Booking> =
                expansion.bookings.iter().map(|b| (&b.id, b)).collect();
            let changes = diff(&old, &expansion);
            let planned: Vec<(BookingId, &'static str)> = changes
                .iter()
                .map(|c| match c {
                    ImportChange::Cancel(id) => (id.clone(), "cancel"),
                    ImportChange::Update(b) => (b.id.clone(), "update"),
                    ImportChange::Create(b) => (b.id.clone(), "create"),
                })
                .collect();
            let refused = book.cal.apply_import(changes, book.now());
            let refused_ids: BTreeSet<&BookingId> = refused.iter().map(|(id, _)| id).collect();
            for (id, kind) in &planned {
                if refused_ids.contains(id) {
                    continue;
                }
                match *kind {
                    "create" => {
                        outcome.created += 1;
                        book.set_meta(id.as_str(), Some(&source), "imported from a calendar feed");
                    }
                    "update" => {
                        outcome.updated += 1;
                        book.set_meta(id.as_str(), None, "updated by its calendar feed");
                    }
                    _ => {
                        outcome.cancelled += 1;
                        book.set_meta(id.as_str(), None, "removed from its calendar feed");
                    }
                }
            }
            for (id, error) in refused {
                let event = events.get(&id);
                outcome.refused.push(RefusedImport {
                    booking: id.0.clone(),
                    uid: event.and_then(|b| b.source_uid.clone()),
                    start_ms: event.map(|b| b.start.as_millisecond()),
                    reason: book.error(error).to_string(),
                });
            }
            Ok((outcome, book.writes()))
        })
        .await
    }
}

/// Makes every change of a sync answer carry its booking's latest state: each change is
/// replaced by the last change of the same booking, so the answer's length (from which a
/// gateway checks that it continues from its cursor) stays the same, and a gateway that applies
/// the answer's deletions and upserts as two sets (not in order) still ends with the right
/// bookings (an upsert followed by a delete must not bring the booking back).
pub fn latest_per_booking(changes: &mut [BookingChange]) {
    let id = |c: &BookingChange| match c {
        BookingChange::Upsert { booking } => booking.id.clone(),
        BookingChange::Delete { id, .. } => id.clone(),
    };
    let mut last: BTreeMap<String, BookingChange> = BTreeMap::new();
    for c in changes.iter() {
        last.insert(id(c), c.clone());
    }
    for c in changes.iter_mut() {
        if let Some(latest) = last.get(&id(c)) {
            c.clone_from(latest);
        }
    }
}

fn series_in(docs: &RoomDocs, id: &str) -> Result<(SeriesDoc, Series), ServiceError> {
    let record = docs
        .series
        .iter()
        .find(|s| s.id == id)
        .ok_or_else(|| ServiceError::UnknownSeries(id.to_owned()))?;
    let doc = series_doc(record)?;
    let series = doc.to_series().map_err(corrupt_series)?;
    Ok((doc, series))
}

/// The series and original local date of an occurrence (its id is `{series}@{date}`).
fn occurrence_of(record: &BookingRecord) -> Option<(String, String)> {
    let series = record.series.as_ref()?;
    let date = record.id.strip_prefix(series.as_str())?.strip_prefix('@')?;
    Some((series.clone(), date.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::BookingState;

    fn t(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn berlin() -> TimeZone {
        jiff::tz::db().get("Europe/Berlin").expect("zone")
    }

    fn record(id: &str, start: &str, end: &str, state: &str) -> BookingRecord {
        BookingRecord {
            id: id.into(),
            room: "r1".into(),
            start_ms: t(start).as_millisecond(),
            end_ms: t(end).as_millisecond(),
            subject: format!("meeting {id}"),
            organizer: "ada@example.com".into(),
            attendees: Vec::new(),
            state: state.into(),
            series: None,
            source: "api".into(),
            source_uid: None,
            note: String::new(),
            updated_ms: 1,
        }
    }

    const NOW: &str = "2026-03-02T08:00:00Z";

    fn book(records: &[BookingRecord]) -> RoomBook {
        RoomBook::load("r1", &berlin(), records, t(NOW).as_millisecond())
    }

    fn walk_in_fact(id: &str, start: &str, end: &str) -> Fact {
        Fact::WalkIn {
            booking: WireBooking {
                id: id.into(),
                room: "r1".into(),
                start_ms: t(start).as_millisecond(),
                end_ms: t(end).as_millisecond(),
                subject: "Walk-in".into(),
                organizer: "Bob@Example.com".into(),
                attendees: Vec::new(),
            },
        }
    }

    /// The writes as "id state [note]" lines and the changes as "upsert id end" / "delete id".
    fn show(book: &RoomBook) -> (Vec<String>, Vec<String>) {
        let w = book.writes();
        let records = w
            .bookings
            .iter()
            .map(|r| format!("{} {} {}", r.id, r.state, r.note))
            .collect();
        let changes = w
            .changes
            .iter()
            .map(|c| match c {
                BookingChange::Upsert { booking } => {
                    format!("upsert {} until {}", booking.id, ts(booking.end_ms))
                }
                BookingChange::Delete { id, .. } => format!("delete {id}"),
            })
            .collect();
        (records, changes)
    }

    #[test]
    fn a_walk_in_in_a_free_slot_is_adopted_quietly() {
        let mut b = book(&[record(
            "a",
            "2026-03-02T09:00:00Z",
            "2026-03-02T10:00:00Z",
            "active",
        )]);
        reconcile(
            &mut b,
            walk_in_fact("local-1", "2026-03-02T10:00:00Z", "2026-03-02T11:00:00Z"),
        );
        let (records, changes) = show(&b);
        assert_eq!(
            records,
            ["local-1 active walk-in booked at the door panel; adopted by the hub"]
        );
        assert!(
            changes.is_empty(),
            "the gateway has it already: {changes:?}"
        );
        let adopted = b.record("local-1").expect("adopted");
        assert_eq!(
            (adopted.source.as_str(), adopted.organizer.as_str()),
            ("gateway", "bob@example.com")
        );
        // The same fact again (a redelivery applied twice) changes nothing more.
        reconcile(
            &mut b,
            walk_in_fact("local-1", "2026-03-02T10:00:00Z", "2026-03-02T11:30:00Z"),
        );
        assert_eq!(
            b.record("local-1").expect("kept").end_ms,
            t("2026-03-02T11:00:00Z").as_millisecond()
        );
    }

    #[test]
    fn the_booking_that_started_first_wins() {
        // The walk-in started first: the later hub booking is cancelled and deleted below.
        let mut b = book(&[record(
            "hub",
            "2026-03-02T10:30:00Z",
            "2026-03-02T11:30:00Z",
            "active",
        )]);
        reconcile(
            &mut b,
            walk_in_fact("local-1", "2026-03-02T10:00:00Z", "2026-03-02T11:00:00Z"),
        );
        let (records, changes) = show(&b);
        assert_eq!(
            records,
            [
                "local-1 active walk-in booked at the door panel; adopted by the hub",
                "hub cancelled conflict: the walk-in local-1 booked at the door panel from \
                 2026-03-02 11:00 started first (PROTOCOL.md, reconciling rule 1)",
            ]
        );
        assert_eq!(changes, ["delete hub"]);

        // The hub booking started first: the walk-in gives way and is deleted at the gateway.
        let mut b = book(&[record(
            "hub",
            "2026-03-02T09:30:00Z",
            "2026-03-02T10:30:00Z",
            "active",
        )]);
        reconcile(
            &mut b,
            walk_in_fact("local-2", "2026-03-02T10:00:00Z", "2026-03-02T11:00:00Z"),
        );
        let (records, changes) = show(&b);
        assert_eq!(
            records,
            [
                "local-2 cancelled conflict: booking hub ('meeting hub', 2026-03-02 10:30–11:30) \
              started first; the walk-in booked at the door panel gave way (PROTOCOL.md, \
              reconciling rule 1)"
            ]
        );
        assert_eq!(changes, ["delete local-2"]);
        // A cancelled booking does not stand in the way.
        let mut b = book(&[record(
            "hub",
            "2026-03-02T09:30:00Z",
            "2026-03-02T10:30:00Z",
            "cancelled",
        )]);
        reconcile(
            &mut b,
            walk_in_fact("local-3", "2026-03-02T10:00:00Z", "2026-03-02T11:00:00Z"),
        );
        assert_eq!(b.record("local-3").expect("adopted").state, "active");
    }

    #[test]
    fn an_extension_is_applied_or_shortened_to_the_next_booking() {
        let records = [
            record(
                "a",
                "2026-03-02T09:00:00Z",
                "2026-03-02T10:00:00Z",
                "active",
            ),
            record(
                "next",
                "2026-03-02T10:15:00Z",
                "2026-03-02T11:00:00Z",
                "active",
            ),
        ];
        let mut b = book(&records);
        reconcile(
            &mut b,
            Fact::Extended {
                id: "a".into(),
                until_ms: t("2026-03-02T10:10:00Z").as_millisecond(),
            },
        );
        assert_eq!(
            show(&b).1,
            Vec::<String>::new(),
            "applied as made: nothing to push"
        );
        reconcile(
            &mut b,
            Fact::Extended {
                id: "a".into(),
                until_ms: t("2026-03-02T10:45:00Z").as_millisecond(),
            },
        );
        let (records, changes) = show(&b);
        assert_eq!(
            records,
            [
                "a active extension at the door panel until 11:45 shortened to 11:15: booking next \
              starts then (PROTOCOL.md, reconciling rule 2)"
            ]
        );
        assert_eq!(changes, ["upsert a until 2026-03-02T10:15:00Z"]);
    }

    #[test]
    fn releases_and_endings_are_facts_unless_the_hub_cancelled_first() {
        let records = [
            record(
                "a",
                "2026-03-02T09:00:00Z",
                "2026-03-02T10:00:00Z",
                "active",
            ),
            record(
                "b",
                "2026-03-02T11:00:00Z",
                "2026-03-02T12:00:00Z",
                "cancelled",
            ),
            record(
                "c",
                "2026-03-02T12:00:00Z",
                "2026-03-02T13:00:00Z",
                "active",
            ),
        ];
        let mut b = book(&records);
        reconcile(
            &mut b,
            Fact::Ended {
                id: "a".into(),
                at_ms: t("2026-03-02T09:40:00Z").as_millisecond(),
            },
        );
        for id in ["b", "c"] {
            reconcile(
                &mut b,
                Fact::Released {
                    id: id.into(),
                    reason: "no check-in by 13:10".into(),
                },
            );
        }
        let (records, changes) = show(&b);
        assert_eq!(
            records,
            [
                "a ended ended at the gateway at 10:40",
                "c released released by the gateway: no check-in by 13:10",
            ]
        );
        assert!(changes.is_empty(), "facts are not pushed back: {changes:?}");
        assert_eq!(
            b.record("a").expect("a").end_ms,
            t("2026-03-02T09:40:00Z").as_millisecond()
        );
        assert_eq!(b.record("b").expect("b").state, "cancelled");
    }

    #[test]
    fn facts_are_read_from_events_and_bad_ones_explained() {
        let event = |kind, data: serde_json::Value| Event {
            seq: 7,
            at_ms: 5,
            room: "r1".into(),
            booking: Some("x".into()),
            kind,
            reason: "why".into(),
            data,
        };
        assert_eq!(
            fact_of(&event(
                EventKind::Extended,
                serde_json::json!({ "until_ms": 9 })
            )),
            Ok(Some(Fact::Extended {
                id: "x".into(),
                until_ms: 9
            }))
        );
        assert_eq!(
            fact_of(&event(EventKind::Extended, serde_json::json!({}))),
            Err("extended event 7: no data.until_ms".into())
        );
        assert!(
            fact_of(&event(
                EventKind::BookingLocal,
                serde_json::json!({ "booking": 3 })
            ))
            .is_err_and(|e| e.starts_with("booking_local event 7: data.booking:"))
        );
        assert_eq!(
            fact_of(&event(EventKind::CheckedIn, serde_json::Value::Null)),
            Ok(None)
        );
    }

    #[test]
    fn changes_push_upserts_for_active_and_deletes_for_cancelled() {
        let mut b = book(&[record(
            "a",
            "2026-03-02T09:00:00Z",
            "2026-03-02T10:00:00Z",
            "active",
        )]);
        assert!(
            b.writes().bookings.is_empty(),
            "nothing changed, nothing written"
        );
        b.cal.cancel(&"a".into(), b.now()).expect("cancel");
        let (_, changes) = show(&b);
        assert_eq!(changes, ["delete a"]);
        let _ = BookingState::Active;
    }

    #[test]
    fn a_sync_answer_carries_each_bookings_latest_state() {
        let upsert = |id: &str, end: i64| BookingChange::Upsert {
            booking: WireBooking {
                id: id.into(),
                room: "r1".into(),
                start_ms: 0,
                end_ms: end,
                subject: String::new(),
                organizer: String::new(),
                attendees: Vec::new(),
            },
        };
        let delete = |id: &str| BookingChange::Delete {
            id: id.into(),
            room: "r1".into(),
        };
        let mut changes = vec![upsert("e", 1), upsert("a", 1), delete("e"), upsert("a", 2)];
        latest_per_booking(&mut changes);
        assert_eq!(
            changes,
            [delete("e"), upsert("a", 2), delete("e"), upsert("a", 2)],
            "same length, no stale state"
        );
    }

    #[test]
    fn series_documents_round_trip() {
        let room = Room {
            site: "hq".into(),
            id: "r1".into(),
            name: "r1".into(),
            gateway: GatewayId::new("hq", "gw").expect("id"),
            timezone: "Europe/Berlin".into(),
            zone: berlin(),
            zone_known: true,
            online: true,
            state: String::new(),
            occupancy: String::new(),
        };
        let spec = SeriesSpec {
            first: "2026-03-23T09:00".parse().expect("first"),
            length: SignedDuration::from_mins(60),
            frequency: Frequency::Weekly {
                days: vec![Weekday::Monday, Weekday::Thursday],
                week_start: Weekday::Monday,
            },
            interval: 2,
            end: SeriesEnd::Count(6),
            subject: "Planning".into(),
            organizer: "ada@example.com".into(),
            attendees: vec![],
        };
        let doc = SeriesDoc::new("s-1".into(), &room, &spec, "ada@example.com".into(), 0);
        let back: SeriesDoc = serde_json::from_value(doc.record().doc).expect("stored form parses");
        let series = back.to_series().expect("series");
        assert_eq!(series.recurrence.interval, 2);
        assert_eq!(series.first, spec.first);
        assert!(rule_has_date(
            &series,
            jiff::civil::date(2026, 3, 26),
            &SeriesLimits::default()
        ));
        assert!(!rule_has_date(
            &series,
            jiff::civil::date(2026, 3, 30),
            &SeriesLimits::default()
        ));
        assert_eq!(weekday_of("Tuesday"), Some(Weekday::Tuesday));
        assert_eq!(weekday_of("TU"), Some(Weekday::Tuesday));
        assert_eq!(weekday_of("tux"), None);
    }
}
