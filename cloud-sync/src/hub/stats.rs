//! Room statistics from gateway events: utilization, meetings held, no-shows, releases by
//! reason, walk-ins, extensions and device time saved, per room, floor (gateway) and building
//! (site), per local day and ISO week in the site's time zone. Pure: no I/O, no clock; the
//! time zone, the working hours, the range and "now" are arguments.
//!
//! # Definitions
//! * **Bookable hours**: the site's working hours ([`WorkingHours`], by default 08:00-18:00
//!   Monday to Friday, local wall time) of every room, each day. They are real elapsed time
//!   between the local start and end, so a daylight-saving change inside them counts.
//! * **Booked hours**: the scheduled span of every booking that finished (its `usage` event:
//!   ended, released, or cancelled while running), extensions included; a booking cancelled
//!   before it started never ran and is not counted. **Used hours**: from the check-in (or the
//!   first presence where no check-in is needed) to the real end or release, plus walk-ins from
//!   their start to their end. The parts inside bookable hours give the **booked share** and
//!   the **occupancy share** (used hours inside bookable hours / bookable hours).
//! * Every duration is split across local days at local midnight (a meeting from 22:00 to
//!   01:00 gives two hours to its first day and one to the next); every count goes to one day:
//!   a booking, its no-show and its release to the day of its scheduled start, a walk-in to the
//!   day it started, an extension to the day it was made.
//! * **Meetings held**: bookings somebody came to. **No-shows**: bookings released because
//!   nobody checked in; their share is of all finished bookings.
//! * **Releases by reason**: `no_show` and `vacancy` (the gateway released the booking),
//!   `ended_early` (ended from a panel or the hub before its end), `cancelled` (cancelled while
//!   running); a reason this version does not know is kept under its own name.
//! * **Device time saved**: for each released or early-ended booking, the time from its real
//!   end to its scheduled end, when the meeting scene would otherwise have kept the room's
//!   devices on.
//!
//! Events of bookings that started before the fetched window are only partly seen; the caller
//! fetches from [`Range::fetch_window`], one day before the range and two after, so bookings
//! up to a day long and meetings crossing midnight are whole.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;

use crate::wire::{Event, EventKind};

/// The longest range one computation covers, in days.
pub const MAX_RANGE_DAYS: i64 = 366;

/// A release whose real end is this close to the scheduled end is not "early".
const EARLY_TOLERANCE_MS: i64 = 60_000;

const DAY_MS: i64 = 86_400_000;

/// Why statistics could not be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatsError {
    #[error("the range ends ({to}) before it starts ({from})")]
    Reversed { from: Date, to: Date },
    #[error("the range from {from} to {to} is longer than {MAX_RANGE_DAYS} days")]
    TooLong { from: Date, to: Date },
    #[error("working hours: {0}")]
    WorkingHours(String),
    #[error("{date} cannot be placed in the time zone: {reason}")]
    Zone { date: Date, reason: String },
}

/// The hours a room can be booked, in the site's local time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkingHours {
    /// Minutes after local midnight: `start < end <= 1440` (1440 is the next midnight).
    start_min: u16,
    end_min: u16,
    /// Monday is 0.
    days: [bool; 7],
}

impl Default for WorkingHours {
    /// 08:00-18:00, Monday to Friday.
    fn default() -> WorkingHours {
        WorkingHours {
            start_min: 8 * 60,
            end_min: 18 * 60,
            days: [true, true, true, true, true, false, false],
        }
    }
}

impl WorkingHours {
    /// Working hours from `start_min` to `end_min` (minutes after local midnight, `end_min`
    /// up to 1440) on the given weekdays.
    pub fn new(
        start_min: u16,
        end_min: u16,
        weekdays: &[Weekday],
    ) -> Result<WorkingHours, StatsError> {
        if start_min >= end_min || end_min > 1440 {
            return Err(StatsError::WorkingHours(format!(
                "{} to {} is not a span within one day",
                hhmm(start_min),
                hhmm(end_min)
            )));
        }
        if weekdays.is_empty() {
            return Err(StatsError::WorkingHours("no working day".to_owned()));
        }
        let mut days = [false; 7];
        for d in weekdays {
            days[weekday_index(*d)] = true;
        }
        Ok(WorkingHours {
            start_min,
            end_min,
            days,
        })
    }

    /// Reads the setting document `{"start": "08:00", "end": "18:00", "days": ["mon", ...]}`
    /// (every key optional; missing ones keep the default).
    pub fn from_setting(doc: &serde_json::Value) -> Result<WorkingHours, StatsError> {
        let default = WorkingHours::default();
        let time = |key: &str, fallback: u16| -> Result<u16, StatsError> {
            match doc.get(key) {
                None => Ok(fallback),
                Some(v) => v.as_str().and_then(parse_hhmm).ok_or_else(|| {
                    StatsError::WorkingHours(format!("'{key}' must be a time like \"08:00\""))
                }),
            }
        };
        let start = time("start", default.start_min)?;
        let end = time("end", default.end_min)?;
        let days = match doc.get("days") {
            None => default.weekdays(),
            Some(v) => {
                let list = v.as_array().ok_or_else(|| {
                    StatsError::WorkingHours("'days' must be a list like [\"mon\", \"tue\"]".into())
                })?;
                let mut days = Vec::new();
                for d in list {
                    let name = d.as_str().unwrap_or_default();
                    days.push(parse_weekday(name).ok_or_else(|| {
                        StatsError::WorkingHours(format!("'{d}' is not a weekday (mon..sun)"))
                    })?);
                }
                days
            }
        };
        WorkingHours::new(start, end, &days)
    }

    fn weekdays(&self) -> Vec<Weekday> {
        ALL_WEEKDAYS
            .into_iter()
            .filter(|d| self.days[weekday_index(*d)])
            .collect()
    }

    /// "08:00-18:00 Mon-Fri" style, for page footnotes.
    pub fn describe(&self) -> String {
        let names: Vec<&str> = self
            .weekdays()
            .into_iter()
            .map(|d| &WEEKDAY_NAMES[weekday_index(d)][..3])
            .collect();
        format!(
            "{}-{} {}",
            hhmm(self.start_min),
            hhmm(self.end_min),
            names.join(" ")
        )
    }
}

const ALL_WEEKDAYS: [Weekday; 7] = [
    Weekday::Monday,
    Weekday::Tuesday,
    Weekday::Wednesday,
    Weekday::Thursday,
    Weekday::Friday,
    Weekday::Saturday,
    Weekday::Sunday,
];
const WEEKDAY_NAMES: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

fn weekday_index(d: Weekday) -> usize {
    usize::try_from(d.to_monday_zero_offset()).unwrap_or(0)
}

fn parse_weekday(s: &str) -> Option<Weekday> {
    let s = s.to_ascii_lowercase();
    if s.len() < 3 {
        return None;
    }
    ALL_WEEKDAYS
        .into_iter()
        .zip(WEEKDAY_NAMES)
        .find(|(_, name)| name.to_ascii_lowercase().starts_with(&s))
        .map(|(d, _)| d)
}

fn parse_hhmm(s: &str) -> Option<u16> {
    let (h, m) = s.split_once(':')?;
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    (h <= 24 && m < 60 && h * 60 + m <= 1440).then_some(h * 60 + m)
}

fn hhmm(min: u16) -> String {
    format!("{:02}:{:02}", min / 60, min % 60)
}

/// Local days, first and last included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    from: Date,
    to: Date,
}

impl Range {
    pub fn new(from: Date, to: Date) -> Result<Range, StatsError> {
        if to < from {
            return Err(StatsError::Reversed { from, to });
        }
        let days = i64::from((to - from).get_days()) + 1;
        if days > MAX_RANGE_DAYS {
            return Err(StatsError::TooLong { from, to });
        }
        Ok(Range { from, to })
    }

    /// One day.
    pub fn day(d: Date) -> Range {
        Range { from: d, to: d }
    }

    pub fn from(&self) -> Date {
        self.from
    }

    pub fn to(&self) -> Date {
        self.to
    }

    /// The local days of the range, in order.
    pub fn days(&self) -> Vec<Date> {
        let mut out = Vec::new();
        let mut d = self.from;
        while d <= self.to {
            out.push(d);
            match d.tomorrow() {
                Ok(next) => d = next,
                Err(_) => break,
            }
        }
        out
    }

    /// The range's real start and end (`[from, to)` in ms since the epoch) in `zone`.
    pub fn bounds(&self, zone: &TimeZone) -> Result<(i64, i64), StatsError> {
        let start = day_start(zone, self.from)?;
        let end = day_start(zone, next_day(self.to)?)?;
        Ok((start, end))
    }

    /// Which events to fetch for the range: from one day before its start to two days after
    /// its end, so bookings up to a day long that touch the range are seen whole (a booking's
    /// `usage` event comes at its end).
    pub fn fetch_window(&self, zone: &TimeZone) -> Result<(i64, i64), StatsError> {
        let (start, end) = self.bounds(zone)?;
        Ok((start.saturating_sub(DAY_MS), end.saturating_add(2 * DAY_MS)))
    }
}

fn next_day(d: Date) -> Result<Date, StatsError> {
    d.tomorrow().map_err(|e| StatsError::Zone {
        date: d,
        reason: e.to_string(),
    })
}

/// The instant a local day starts (the first instant of the day when midnight falls in a gap).
fn day_start(zone: &TimeZone, d: Date) -> Result<i64, StatsError> {
    local_instant(zone, d, 0)
}

/// The instant of a local time `min` minutes after midnight (1440: the next midnight); a local
/// time in a gap is moved forward by the gap's length, as calendars do.
fn local_instant(zone: &TimeZone, d: Date, min: u16) -> Result<i64, StatsError> {
    let zone_error = |e: jiff::Error| StatsError::Zone {
        date: d,
        reason: e.to_string(),
    };
    let (date, min) = if min >= 1440 {
        (next_day(d)?, min - 1440)
    } else {
        (d, min)
    };
    let h = i8::try_from(min / 60).unwrap_or(0);
    let m = i8::try_from(min % 60).unwrap_or(0);
    let ts = zone
        .to_ambiguous_timestamp(date.at(h, m, 0, 0))
        .compatible()
        .map_err(zone_error)?;
    Ok(ts.as_millisecond())
}

/// A room of the site: the gateway (floor) it belongs to, by its id within the site.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomRef {
    pub gateway: String,
    pub room: String,
}

/// One gateway's input: its rooms (from its last status) and its events of the fetch window.
#[derive(Debug, Clone, Copy)]
pub struct FloorEvents<'a> {
    /// The gateway's id within the site.
    pub gateway: &'a str,
    pub rooms: &'a [String],
    pub events: &'a [Event],
}

/// Why a booking was released or ended before its time.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Release {
    NoShow,
    Vacancy,
    EndedEarly,
    Cancelled,
    /// A cause this version does not know, by the name the gateway sent.
    Other(String),
}

impl Release {
    pub fn name(&self) -> &str {
        match self {
            Release::NoShow => "no_show",
            Release::Vacancy => "vacancy",
            Release::EndedEarly => "ended_early",
            Release::Cancelled => "cancelled",
            Release::Other(s) => s,
        }
    }

    /// For people: "no-show", "vacancy", "ended early", "cancelled".
    pub fn label(&self) -> String {
        match self {
            Release::NoShow => "no-show".to_owned(),
            Release::EndedEarly => "ended early".to_owned(),
            other => other.name().replace('_', " "),
        }
    }

    fn from_cause(s: &str) -> Release {
        match s {
            "no_show" => Release::NoShow,
            "vacancy" => Release::Vacancy,
            "ended_early" => Release::EndedEarly,
            "cancelled" => Release::Cancelled,
            other => Release::Other(other.to_owned()),
        }
    }
}

/// The figures of one room, floor or building over one day, week or the whole range.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Figures {
    /// Working hours of every room counted (ms).
    pub bookable_ms: i64,
    /// Scheduled time of finished bookings (ms), and its part inside working hours.
    pub booked_ms: i64,
    pub booked_bookable_ms: i64,
    /// Time really used: held meetings and walk-ins (ms), and its part inside working hours.
    pub used_ms: i64,
    pub used_bookable_ms: i64,
    /// Finished bookings (ended, released, or cancelled while running).
    pub bookings: u32,
    /// Bookings somebody came to.
    pub held: u32,
    pub no_shows: u32,
    pub releases: BTreeMap<Release, u32>,
    pub walk_ins: u32,
    pub extensions: u32,
    /// Devices-on time avoided by releases and early ends (ms).
    pub saved_device_ms: i64,
}

impl Figures {
    fn add(&mut self, o: &Figures) {
        self.bookable_ms += o.bookable_ms;
        self.booked_ms += o.booked_ms;
        self.booked_bookable_ms += o.booked_bookable_ms;
        self.used_ms += o.used_ms;
        self.used_bookable_ms += o.used_bookable_ms;
        self.bookings += o.bookings;
        self.held += o.held;
        self.no_shows += o.no_shows;
        for (r, n) in &o.releases {
            *self.releases.entry(r.clone()).or_default() += n;
        }
        self.walk_ins += o.walk_ins;
        self.extensions += o.extensions;
        self.saved_device_ms += o.saved_device_ms;
    }

    /// Used time inside working hours over working hours; `None` without working hours.
    pub fn occupancy_share(&self) -> Option<f64> {
        share(self.used_bookable_ms, self.bookable_ms)
    }

    /// Booked time inside working hours over working hours.
    pub fn booked_share(&self) -> Option<f64> {
        share(self.booked_bookable_ms, self.bookable_ms)
    }

    /// No-shows over finished bookings; `None` without bookings.
    pub fn no_show_share(&self) -> Option<f64> {
        share(i64::from(self.no_shows), i64::from(self.bookings))
    }

    pub fn released(&self, r: &Release) -> u32 {
        self.releases.get(r).copied().unwrap_or(0)
    }
}

fn share(part: i64, whole: i64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// An event that could not be used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub gateway: String,
    pub seq: u64,
    pub why: String,
}

/// What the rows add up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Site,
    Gateway,
    Room,
}

/// The period of each row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    Day,
    Week,
    /// One row for the whole range.
    Range,
}

/// Which rooms count: all, one floor's, or one room.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Selection<'a> {
    pub gateway: Option<&'a str>,
    pub room: Option<&'a str>,
}

impl Selection<'_> {
    fn matches(&self, r: &RoomRef) -> bool {
        self.gateway.is_none_or(|g| g == r.gateway) && self.room.is_none_or(|x| x == r.room)
    }
}

/// What a row adds up.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    Site,
    Gateway(String),
    Room(RoomRef),
}

/// The days a row covers (only days of the range: a week cut by the range's edge is partial).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Period {
    pub first: Date,
    pub last: Date,
    /// The ISO week (year, week) for week rows.
    pub iso_week: Option<(i16, i8)>,
}

impl Period {
    /// "2026-03-02", "2026-W10" (with its days when cut by the range), "2026-03-02 - 2026-03-08".
    pub fn label(&self) -> String {
        match self.iso_week {
            Some((y, w)) => {
                let full = self.first.weekday() == Weekday::Monday
                    && self.last.weekday() == Weekday::Sunday;
                if full {
                    format!("{y}-W{w:02}")
                } else {
                    format!("{y}-W{w:02} ({} - {})", self.first, self.last)
                }
            }
            None if self.first == self.last => self.first.to_string(),
            None => format!("{} - {}", self.first, self.last),
        }
    }
}

/// One row of a report.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub scope: Scope,
    pub period: Period,
    pub figures: Figures,
}

/// A building's statistics over a range: figures per room and local day.
#[derive(Debug, Clone)]
pub struct SiteStats {
    range: Range,
    days: Vec<Date>,
    rooms: BTreeSet<RoomRef>,
    /// Per room, one entry per day of the range.
    figures: BTreeMap<RoomRef, Vec<Figures>>,
    /// Events that could not be used, with why.
    pub skipped: Vec<Skipped>,
}

/// A day of the range: its real bounds and working hours.
#[derive(Debug, Clone, Copy)]
struct DayFrame {
    start: i64,
    end: i64,
    work: Option<(i64, i64)>,
}

struct Frames {
    days: Vec<DayFrame>,
}

impl Frames {
    /// The index of the day that holds instant `t`, if it is in the range.
    fn day_of(&self, t: i64) -> Option<usize> {
        let i = self.days.partition_point(|d| d.end <= t);
        self.days.get(i).filter(|d| d.start <= t).map(|_| i)
    }

    /// Calls `f(day, ms, ms inside working hours)` for each day of the range that `[a, b)`
    /// touches.
    fn split(&self, a: i64, b: i64, mut f: impl FnMut(usize, i64, i64)) {
        if b <= a {
            return;
        }
        let first = self.days.partition_point(|d| d.end <= a);
        for (i, d) in self.days.iter().enumerate().skip(first) {
            if d.start >= b {
                break;
            }
            let piece = overlap((a, b), (d.start, d.end));
            let work = d.work.map_or(0, |w| overlap((a, b), w));
            if piece > 0 {
                f(i, piece, work);
            }
        }
    }
}

fn overlap(x: (i64, i64), y: (i64, i64)) -> i64 {
    (x.1.min(y.1) - x.0.max(y.0)).max(0)
}

/// The facts of a `usage` event (gateway `sync::outcome_event`).
struct Usage {
    scheduled_start: i64,
    scheduled_end: i64,
    actual_start: Option<i64>,
    actual_end: i64,
    release: Option<String>,
}

fn usage_facts(e: &Event) -> Result<Usage, String> {
    let d = &e.data;
    let int = |key: &str| -> Result<i64, String> {
        d.get(key)
            .and_then(serde_json::Value::as_i64)
            .ok_or_else(|| format!("usage event has no integer '{key}'"))
    };
    let opt_int = |key: &str| -> Result<Option<i64>, String> {
        match d.get(key) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| format!("usage event's '{key}' is not an integer")),
        }
    };
    let u = Usage {
        scheduled_start: int("scheduled_start_ms")?,
        scheduled_end: int("scheduled_end_ms")?,
        actual_start: opt_int("actual_start_ms")?,
        actual_end: int("actual_end_ms")?,
        release: match d.get("release") {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => Some(
                v.as_str()
                    .ok_or("usage event's 'release' is not a string")?
                    .to_owned(),
            ),
        },
    };
    if u.scheduled_end < u.scheduled_start {
        return Err("usage event's scheduled end is before its start".to_owned());
    }
    if u.actual_start.is_some_and(|s| s > u.actual_end) {
        return Err("usage event's real end is before its real start".to_owned());
    }
    Ok(u)
}

/// What other events say about a booking's end.
#[derive(Default)]
struct EndNotes {
    cancelled: bool,
    ended_early: bool,
}

/// Computes a building's figures per room and local day of `range` from its gateways' events
/// (fetched over [`Range::fetch_window`]). `until_ms` is now: a walk-in still running counts
/// until then.
pub fn compute(
    zone: &TimeZone,
    hours: &WorkingHours,
    range: &Range,
    until_ms: i64,
    floors: &[FloorEvents<'_>],
) -> Result<SiteStats, StatsError> {
    let days = range.days();
    let mut frames = Vec::with_capacity(days.len());
    for &d in &days {
        let start = day_start(zone, d)?;
        let end = day_start(zone, next_day(d)?)?;
        let work = if hours.days[weekday_index(d.weekday())] {
            Some((
                local_instant(zone, d, hours.start_min)?,
                local_instant(zone, d, hours.end_min)?,
            ))
        } else {
            None
        };
        frames.push(DayFrame { start, end, work });
    }
    let frames = Frames { days: frames };
    let mut stats = SiteStats {
        range: *range,
        days,
        rooms: BTreeSet::new(),
        figures: BTreeMap::new(),
        skipped: Vec::new(),
    };
    for floor in floors {
        for room in floor.rooms {
            stats.room_days(&frames, floor.gateway, room);
        }
        stats.add_floor(&frames, until_ms, floor);
    }
    Ok(stats)
}

impl SiteStats {
    /// The room's per-day figures, created with its bookable hours.
    fn room_days(&mut self, frames: &Frames, gateway: &str, room: &str) -> &mut Vec<Figures> {
        let key = RoomRef {
            gateway: gateway.to_owned(),
            room: room.to_owned(),
        };
        self.rooms.insert(key.clone());
        self.figures.entry(key).or_insert_with(|| {
            frames
                .days
                .iter()
                .map(|d| Figures {
                    bookable_ms: d.work.map_or(0, |(a, b)| b - a),
                    ..Figures::default()
                })
                .collect()
        })
    }

    fn add_floor(&mut self, frames: &Frames, until_ms: i64, floor: &FloorEvents<'_>) {
        let mut events: Vec<&Event> = floor.events.iter().collect();
        events.sort_by_key(|e| (e.at_ms, e.seq));
        let mut notes: HashMap<&str, EndNotes> = HashMap::new();
        for e in &events {
            let Some(b) = e.booking.as_deref() else {
                continue;
            };
            match e.kind {
                EventKind::Cancelled => notes.entry(b).or_default().cancelled = true,
                // The gateway sets the end to "now" before it reports an end-now, so the
                // usage facts alone do not show it; the ended event's reason does.
                EventKind::Ended if e.reason.starts_with("ended early") => {
                    notes.entry(b).or_default().ended_early = true;
                }
                _ => {}
            }
        }
        let mut walk_ins: BTreeMap<&str, i64> = BTreeMap::new();
        let range_end = frames.days.last().map_or(i64::MIN, |d| d.end);
        for e in events {
            if matches!(
                e.kind,
                EventKind::Usage
                    | EventKind::WalkInStarted
                    | EventKind::WalkInEnded
                    | EventKind::Extended
            ) {
                self.room_days(frames, floor.gateway, &e.room);
            }
            match e.kind {
                EventKind::Usage => match usage_facts(e) {
                    Ok(u) => {
                        let note = e.booking.as_deref().and_then(|b| notes.get(b));
                        self.add_usage(frames, floor.gateway, &e.room, &u, note);
                    }
                    Err(why) => self.skipped.push(Skipped {
                        gateway: floor.gateway.to_owned(),
                        seq: e.seq,
                        why,
                    }),
                },
                EventKind::WalkInStarted => {
                    walk_ins.entry(&e.room).or_insert(e.at_ms);
                    if let Some(i) = frames.day_of(e.at_ms) {
                        self.room_days(frames, floor.gateway, &e.room)[i].walk_ins += 1;
                    }
                }
                EventKind::WalkInEnded => {
                    // An end without its start began before the fetched window: not counted.
                    if let Some(start) = walk_ins.remove(e.room.as_str()) {
                        self.add_used(frames, floor.gateway, &e.room, start, e.at_ms);
                    }
                }
                EventKind::Extended => {
                    if let Some(i) = frames.day_of(e.at_ms) {
                        self.room_days(frames, floor.gateway, &e.room)[i].extensions += 1;
                    }
                }
                _ => {}
            }
        }
        for (room, start) in walk_ins {
            self.add_used(frames, floor.gateway, room, start, until_ms.min(range_end));
        }
    }

    fn add_used(&mut self, frames: &Frames, gateway: &str, room: &str, a: i64, b: i64) {
        let days = self.room_days(frames, gateway, room);
        frames.split(a, b, |i, ms, work| {
            days[i].used_ms += ms;
            days[i].used_bookable_ms += work;
        });
    }

    fn add_usage(
        &mut self,
        frames: &Frames,
        gateway: &str,
        room: &str,
        u: &Usage,
        note: Option<&EndNotes>,
    ) {
        let release = match &u.release {
            Some(cause) => Some(Release::from_cause(cause)),
            None if note.is_some_and(|n| n.cancelled) => Some(Release::Cancelled),
            None if note.is_some_and(|n| n.ended_early)
                || u.actual_end < u.scheduled_end - EARLY_TOLERANCE_MS =>
            {
                Some(Release::EndedEarly)
            }
            None => None,
        };
        let days = self.room_days(frames, gateway, room);
        if let Some(i) = frames.day_of(u.scheduled_start) {
            let f = &mut days[i];
            f.bookings += 1;
            if u.actual_start.is_some() {
                f.held += 1;
            }
            if let Some(r) = &release {
                if *r == Release::NoShow {
                    f.no_shows += 1;
                }
                *f.releases.entry(r.clone()).or_default() += 1;
            }
        }
        frames.split(u.scheduled_start, u.scheduled_end, |i, ms, work| {
            days[i].booked_ms += ms;
            days[i].booked_bookable_ms += work;
        });
        if let Some(start) = u.actual_start {
            frames.split(start, u.actual_end, |i, ms, work| {
                days[i].used_ms += ms;
                days[i].used_bookable_ms += work;
            });
        }
        if release.is_some() {
            frames.split(u.actual_end, u.scheduled_end, |i, ms, _| {
                days[i].saved_device_ms += ms;
            });
        }
    }

    pub fn range(&self) -> Range {
        self.range
    }

    /// Every room counted: those the gateways list and those their events name.
    pub fn rooms(&self) -> impl Iterator<Item = &RoomRef> {
        self.rooms.iter()
    }

    /// Rows of `level` per `granularity` period over the selected rooms, by scope then period.
    pub fn rows(&self, level: Level, granularity: Granularity, select: Selection<'_>) -> Vec<Row> {
        let periods = self.periods(granularity);
        let mut acc: BTreeMap<(Scope, usize), Figures> = BTreeMap::new();
        for (room, per_day) in &self.figures {
            if !select.matches(room) {
                continue;
            }
            let scope = match level {
                Level::Site => Scope::Site,
                Level::Gateway => Scope::Gateway(room.gateway.clone()),
                Level::Room => Scope::Room(room.clone()),
            };
            for (p, (_, days)) in periods.iter().enumerate() {
                let f = acc.entry((scope.clone(), p)).or_default();
                for &i in days {
                    if let Some(day) = per_day.get(i) {
                        f.add(day);
                    }
                }
            }
        }
        acc.into_iter()
            .map(|((scope, p), figures)| Row {
                scope,
                period: periods[p].0,
                figures,
            })
            .collect()
    }

    /// The periods of a granularity with the indexes of their days.
    fn periods(&self, granularity: Granularity) -> Vec<(Period, Vec<usize>)> {
        let day = |i: usize| self.days[i];
        match granularity {
            Granularity::Day => (0..self.days.len())
                .map(|i| {
                    let p = Period {
                        first: day(i),
                        last: day(i),
                        iso_week: None,
                    };
                    (p, vec![i])
                })
                .collect(),
            Granularity::Range => {
                let p = Period {
                    first: self.range.from,
                    last: self.range.to,
                    iso_week: None,
                };
                vec![(p, (0..self.days.len()).collect())]
            }
            Granularity::Week => {
                let mut out: Vec<(Period, Vec<usize>)> = Vec::new();
                for (i, d) in self.days.iter().enumerate() {
                    let w = d.iso_week_date();
                    let key = (w.year(), w.week());
                    match out.last_mut() {
                        Some((p, days)) if p.iso_week == Some(key) => {
                            p.last = *d;
                            days.push(i);
                        }
                        _ => out.push((
                            Period {
                                first: *d,
                                last: *d,
                                iso_week: Some(key),
                            },
                            vec![i],
                        )),
                    }
                }
                out
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;
    use serde_json::json;

    const MIN: i64 = 60_000;
    const HOUR: i64 = 60 * MIN;

    fn berlin() -> TimeZone {
        TimeZone::get("Europe/Berlin").expect("tzdata has Europe/Berlin")
    }

    fn at(zone: &TimeZone, d: Date, h: i8, m: i8) -> i64 {
        zone.to_ambiguous_timestamp(d.at(h, m, 0, 0))
            .compatible()
            .expect("local time")
            .as_millisecond()
    }

    struct Log {
        events: Vec<Event>,
    }

    impl Log {
        fn new() -> Log {
            Log { events: Vec::new() }
        }

        fn push(&mut self, at_ms: i64, room: &str, booking: Option<&str>, kind: EventKind) {
            self.push_with(at_ms, room, booking, kind, "", serde_json::Value::Null);
        }

        fn push_with(
            &mut self,
            at_ms: i64,
            room: &str,
            booking: Option<&str>,
            kind: EventKind,
            reason: &str,
            data: serde_json::Value,
        ) {
            let seq = self.events.len() as u64 + 1;
            self.events.push(Event {
                seq,
                at_ms,
                room: room.into(),
                booking: booking.map(Into::into),
                kind,
                reason: reason.into(),
                data,
            });
        }

        /// A finished booking's usage event, at its real end.
        #[allow(clippy::too_many_arguments)]
        fn usage(
            &mut self,
            room: &str,
            booking: &str,
            scheduled: (i64, i64),
            actual_start: Option<i64>,
            actual_end: i64,
            release: Option<&str>,
        ) {
            self.push_with(
                actual_end,
                room,
                Some(booking),
                EventKind::Usage,
                "usage",
                json!({
                    "organizer": "ada",
                    "scheduled_start_ms": scheduled.0,
                    "scheduled_end_ms": scheduled.1,
                    "actual_start_ms": actual_start,
                    "actual_end_ms": actual_end,
                    "release": release,
                    "occupied_ms": 0,
                    "devices_on_ms": 0,
                }),
            );
        }
    }

    fn one_floor(
        zone: &TimeZone,
        hours: &WorkingHours,
        range: Range,
        rooms: &[&str],
        log: &Log,
        until: i64,
    ) -> SiteStats {
        let rooms: Vec<String> = rooms.iter().map(|r| r.to_string()).collect();
        let floors = [FloorEvents {
            gateway: "gw-3",
            rooms: &rooms,
            events: &log.events,
        }];
        compute(zone, hours, &range, until, &floors).expect("stats")
    }

    fn day_rows(s: &SiteStats, level: Level) -> Vec<Row> {
        s.rows(level, Granularity::Day, Selection::default())
    }

    #[test]
    fn a_working_day_by_hand() {
        // Monday 2026-03-02 in Berlin (CET, UTC+1), room r1:
        //  09:00-10:00 held from 09:05, ended on time, extended once at 09:50 (to 10:00);
        //  11:00-12:00 nobody came: released 11:10 (no-show);
        //  14:00-15:00 held from 14:00, everyone left: released 14:30 (vacancy);
        //  16:00-16:45 a walk-in.
        let z = berlin();
        let mon = date(2026, 3, 2);
        let mut log = Log::new();
        log.push(at(&z, mon, 9, 50), "r1", Some("b1"), EventKind::Extended);
        log.usage(
            "r1",
            "b1",
            (at(&z, mon, 9, 0), at(&z, mon, 10, 0)),
            Some(at(&z, mon, 9, 5)),
            at(&z, mon, 10, 0),
            None,
        );
        log.usage(
            "r1",
            "b2",
            (at(&z, mon, 11, 0), at(&z, mon, 12, 0)),
            None,
            at(&z, mon, 11, 10),
            Some("no_show"),
        );
        log.usage(
            "r1",
            "b3",
            (at(&z, mon, 14, 0), at(&z, mon, 15, 0)),
            Some(at(&z, mon, 14, 0)),
            at(&z, mon, 14, 30),
            Some("vacancy"),
        );
        log.push(at(&z, mon, 16, 0), "r1", None, EventKind::WalkInStarted);
        log.push(at(&z, mon, 16, 45), "r1", None, EventKind::WalkInEnded);
        let range = Range::new(mon, mon).expect("range");
        let s = one_floor(
            &z,
            &WorkingHours::default(),
            range,
            &["r1", "r2"],
            &log,
            at(&z, mon, 23, 0),
        );
        let rows = day_rows(&s, Level::Room);
        assert_eq!(rows.len(), 2, "two rooms, one day");
        let r1 = &rows[0].figures;
        assert_eq!(
            rows[0].scope,
            Scope::Room(RoomRef {
                gateway: "gw-3".into(),
                room: "r1".into()
            })
        );
        assert_eq!(r1.bookable_ms, 10 * HOUR);
        assert_eq!(r1.booked_ms, 3 * HOUR);
        assert_eq!(r1.booked_bookable_ms, 3 * HOUR);
        // 55 min + 30 min + 45 min walk-in.
        assert_eq!(r1.used_ms, 130 * MIN);
        assert_eq!(r1.used_bookable_ms, 130 * MIN);
        assert_eq!((r1.bookings, r1.held, r1.no_shows), (3, 2, 1));
        assert_eq!(r1.released(&Release::NoShow), 1);
        assert_eq!(r1.released(&Release::Vacancy), 1);
        assert_eq!(r1.released(&Release::EndedEarly), 0);
        assert_eq!((r1.walk_ins, r1.extensions), (1, 1));
        // 11:10 -> 12:00 and 14:30 -> 15:00.
        assert_eq!(r1.saved_device_ms, 80 * MIN);
        assert_eq!(r1.no_show_share(), Some(1.0 / 3.0));
        assert_eq!(r1.occupancy_share(), Some(130.0 / 600.0));
        assert_eq!(r1.booked_share(), Some(0.3));
        let r2 = &rows[1].figures;
        assert_eq!(r2.bookable_ms, 10 * HOUR);
        assert_eq!((r2.bookings, r2.used_ms), (0, 0));
        assert_eq!(r2.no_show_share(), None);
        // The floor and the building add both rooms up.
        let site = &day_rows(&s, Level::Site)[0].figures;
        assert_eq!(site.bookable_ms, 20 * HOUR);
        assert_eq!(site.used_ms, 130 * MIN);
        assert_eq!(site.occupancy_share(), Some(130.0 / 1200.0));
        assert!(s.skipped.is_empty());
    }

    #[test]
    fn hours_outside_working_hours_count_as_booked_and_used_but_not_bookable() {
        // 17:00-19:00 on a Monday: 2 h booked and used, 1 h of it inside 08-18.
        let z = TimeZone::UTC;
        let mon = date(2026, 3, 2);
        let mut log = Log::new();
        log.usage(
            "r1",
            "b1",
            (at(&z, mon, 17, 0), at(&z, mon, 19, 0)),
            Some(at(&z, mon, 17, 0)),
            at(&z, mon, 19, 0),
            None,
        );
        let range = Range::new(mon, mon).expect("range");
        let s = one_floor(&z, &WorkingHours::default(), range, &["r1"], &log, 0);
        let f = &day_rows(&s, Level::Room)[0].figures;
        assert_eq!((f.booked_ms, f.booked_bookable_ms), (2 * HOUR, HOUR));
        assert_eq!((f.used_ms, f.used_bookable_ms), (2 * HOUR, HOUR));
        assert_eq!(f.releases.len(), 0, "ended on time: no release");
        // A Saturday has no bookable hours.
        let sat = date(2026, 3, 7);
        let s = one_floor(
            &z,
            &WorkingHours::default(),
            Range::new(sat, sat).expect("range"),
            &["r1"],
            &Log::new(),
            0,
        );
        assert_eq!(day_rows(&s, Level::Room)[0].figures.bookable_ms, 0);
        assert_eq!(day_rows(&s, Level::Room)[0].figures.occupancy_share(), None);
    }

    #[test]
    fn daylight_saving_days_are_23_and_25_hours_long() {
        // Berlin springs forward on Sunday 2026-03-29 at 02:00 (to 03:00) and falls back on
        // Sunday 2026-10-25 at 03:00 (to 02:00). With round-the-clock working hours the
        // bookable time is the day's real length.
        let z = berlin();
        let all_day = WorkingHours::new(0, 1440, &ALL_WEEKDAYS).expect("hours");
        let spring = date(2026, 3, 29);
        let mut log = Log::new();
        // 00:30 CET (23:30Z) to 04:00 CEST (02:00Z): 2 h 30 min, not 3 h 30 min.
        log.usage(
            "r1",
            "b1",
            (at(&z, spring, 0, 30), at(&z, spring, 4, 0)),
            Some(at(&z, spring, 0, 30)),
            at(&z, spring, 4, 0),
            None,
        );
        // A walk-in 01:30 CET (00:30Z) to 03:30 CEST (01:30Z): one real hour.
        log.push(at(&z, spring, 1, 30), "r2", None, EventKind::WalkInStarted);
        log.push(at(&z, spring, 3, 30), "r2", None, EventKind::WalkInEnded);
        let range = Range::new(date(2026, 3, 28), date(2026, 3, 30)).expect("range");
        let s = one_floor(&z, &all_day, range, &["r1", "r2"], &log, i64::MAX);
        let rows = day_rows(&s, Level::Room);
        let day = |room: &str, d: Date| {
            rows.iter()
                .find(|r| {
                    r.period.first == d && matches!(&r.scope, Scope::Room(x) if x.room == room)
                })
                .map(|r| r.figures.clone())
                .expect("row")
        };
        assert_eq!(day("r1", date(2026, 3, 28)).bookable_ms, 24 * HOUR);
        assert_eq!(day("r1", spring).bookable_ms, 23 * HOUR);
        assert_eq!(day("r1", spring).booked_ms, 150 * MIN);
        assert_eq!(day("r1", spring).used_ms, 150 * MIN);
        assert_eq!(day("r2", spring).used_ms, HOUR);
        assert_eq!(day("r2", spring).walk_ins, 1);
        assert_eq!(day("r1", date(2026, 3, 30)).bookable_ms, 24 * HOUR);
        // The default working hours (08-18 Mon-Fri) are 10 h on the Monday after the change.
        let s = one_floor(
            &z,
            &WorkingHours::default(),
            Range::new(date(2026, 3, 30), date(2026, 3, 30)).expect("range"),
            &["r1"],
            &Log::new(),
            0,
        );
        assert_eq!(day_rows(&s, Level::Room)[0].figures.bookable_ms, 10 * HOUR);
        // Autumn: a meeting 01:00 to 04:00 local lasts four real hours.
        let autumn = date(2026, 10, 25);
        let mut log = Log::new();
        log.usage(
            "r1",
            "b9",
            (at(&z, autumn, 1, 0), at(&z, autumn, 4, 0)),
            Some(at(&z, autumn, 1, 0)),
            at(&z, autumn, 4, 0),
            None,
        );
        let s = one_floor(
            &z,
            &all_day,
            Range::new(autumn, autumn).expect("range"),
            &["r1"],
            &log,
            0,
        );
        let f = &day_rows(&s, Level::Room)[0].figures;
        assert_eq!(f.bookable_ms, 25 * HOUR);
        assert_eq!(f.booked_ms, 4 * HOUR);
    }

    #[test]
    fn a_meeting_across_midnight_is_split_and_counted_once() {
        // Tuesday 2026-03-03 22:00 to Wednesday 01:00 (Berlin), held throughout; its usage
        // event arrives on Wednesday.
        let z = berlin();
        let tue = date(2026, 3, 3);
        let wed = date(2026, 3, 4);
        let mut log = Log::new();
        log.usage(
            "r1",
            "late",
            (at(&z, tue, 22, 0), at(&z, wed, 1, 0)),
            Some(at(&z, tue, 22, 0)),
            at(&z, wed, 1, 0),
            None,
        );
        let all_day = WorkingHours::new(0, 1440, &ALL_WEEKDAYS).expect("hours");
        let s = one_floor(
            &z,
            &all_day,
            Range::new(tue, wed).expect("range"),
            &["r1"],
            &log,
            0,
        );
        let rows = day_rows(&s, Level::Room);
        assert_eq!(rows[0].period.first, tue);
        assert_eq!(
            (rows[0].figures.booked_ms, rows[0].figures.used_ms),
            (2 * HOUR, 2 * HOUR)
        );
        assert_eq!((rows[0].figures.bookings, rows[0].figures.held), (1, 1));
        assert_eq!(
            (rows[1].figures.booked_ms, rows[1].figures.used_ms),
            (HOUR, HOUR)
        );
        assert_eq!(rows[1].figures.bookings, 0, "counted on its first day only");
        // Only Wednesday asked for: its hour, no booking counted.
        let s = one_floor(
            &z,
            &all_day,
            Range::new(wed, wed).expect("range"),
            &["r1"],
            &log,
            0,
        );
        let f = &day_rows(&s, Level::Room)[0].figures;
        assert_eq!((f.booked_ms, f.bookings), (HOUR, 0));
        // The whole range at once equals the sum of its days.
        let s = one_floor(
            &z,
            &all_day,
            Range::new(tue, wed).expect("range"),
            &["r1"],
            &log,
            0,
        );
        let total = &s.rows(Level::Site, Granularity::Range, Selection::default())[0];
        assert_eq!(total.figures.booked_ms, 3 * HOUR);
        assert_eq!(total.period.label(), "2026-03-03 - 2026-03-04");
    }

    #[test]
    fn early_ends_and_cancellations_are_releases_that_save_device_time() {
        let z = TimeZone::UTC;
        let mon = date(2026, 3, 2);
        let mut log = Log::new();
        // Ended from the hub at 10:30 of 10:00-11:00 (the usage keeps the booked end).
        log.usage(
            "r1",
            "b1",
            (at(&z, mon, 10, 0), at(&z, mon, 11, 0)),
            Some(at(&z, mon, 10, 0)),
            at(&z, mon, 10, 30),
            None,
        );
        // Ended from the panel: the gateway reports the end as the scheduled end, and the
        // ended event says why.
        log.usage(
            "r1",
            "b2",
            (at(&z, mon, 12, 0), at(&z, mon, 12, 20)),
            Some(at(&z, mon, 12, 0)),
            at(&z, mon, 12, 20),
            None,
        );
        log.push_with(
            at(&z, mon, 12, 20),
            "r1",
            Some("b2"),
            EventKind::Ended,
            "ended early by ada",
            serde_json::Value::Null,
        );
        // Cancelled while running, 14:15 of 14:00-15:00.
        log.usage(
            "r1",
            "b3",
            (at(&z, mon, 14, 0), at(&z, mon, 15, 0)),
            Some(at(&z, mon, 14, 0)),
            at(&z, mon, 14, 15),
            None,
        );
        log.push(at(&z, mon, 14, 15), "r1", Some("b3"), EventKind::Cancelled);
        // Ended 30 s before its end: on time.
        log.usage(
            "r1",
            "b4",
            (at(&z, mon, 16, 0), at(&z, mon, 17, 0)),
            Some(at(&z, mon, 16, 0)),
            at(&z, mon, 17, 0) - 30_000,
            None,
        );
        // A cause from a newer gateway.
        log.usage(
            "r1",
            "b5",
            (at(&z, mon, 17, 0), at(&z, mon, 17, 30)),
            None,
            at(&z, mon, 17, 5),
            Some("fire_alarm"),
        );
        let s = one_floor(
            &z,
            &WorkingHours::default(),
            Range::new(mon, mon).expect("range"),
            &["r1"],
            &log,
            0,
        );
        let f = &day_rows(&s, Level::Room)[0].figures;
        assert_eq!(f.released(&Release::EndedEarly), 2);
        assert_eq!(f.released(&Release::Cancelled), 1);
        assert_eq!(f.released(&Release::Other("fire_alarm".into())), 1);
        assert_eq!(f.no_shows, 0);
        assert_eq!((f.bookings, f.held), (5, 4));
        // 30 min (b1) + 0 (b2: end unknown) + 45 min (b3) + 25 min (b5).
        assert_eq!(f.saved_device_ms, 100 * MIN);
        assert_eq!(Release::Other("fire_alarm".into()).label(), "fire alarm");
        assert_eq!(Release::NoShow.label(), "no-show");
    }

    #[test]
    fn floors_weeks_and_selections_add_up() {
        // Two floors; a range from Thursday 2026-03-05 to Tuesday 2026-03-10 cuts two ISO
        // weeks (W10 Thu-Sun, W11 Mon-Tue).
        let z = TimeZone::UTC;
        let thu = date(2026, 3, 5);
        let mon = date(2026, 3, 9);
        let mut a = Log::new();
        a.usage(
            "r1",
            "b1",
            (at(&z, thu, 9, 0), at(&z, thu, 10, 0)),
            None,
            at(&z, thu, 9, 10),
            Some("no_show"),
        );
        let mut b = Log::new();
        b.usage(
            "r7",
            "b2",
            (at(&z, mon, 9, 0), at(&z, mon, 11, 0)),
            Some(at(&z, mon, 9, 0)),
            at(&z, mon, 11, 0),
            None,
        );
        let rooms_a = vec!["r1".to_string()];
        let rooms_b = vec!["r7".to_string(), "r8".to_string()];
        let floors = [
            FloorEvents {
                gateway: "gw-1",
                rooms: &rooms_a,
                events: &a.events,
            },
            FloorEvents {
                gateway: "gw-2",
                rooms: &rooms_b,
                events: &b.events,
            },
        ];
        let range = Range::new(thu, date(2026, 3, 10)).expect("range");
        let s = compute(&z, &WorkingHours::default(), &range, 0, &floors).expect("stats");
        let weeks = s.rows(Level::Site, Granularity::Week, Selection::default());
        assert_eq!(weeks.len(), 2);
        assert_eq!(
            weeks[0].period.label(),
            "2026-W10 (2026-03-05 - 2026-03-08)"
        );
        assert_eq!(
            weeks[1].period.label(),
            "2026-W11 (2026-03-09 - 2026-03-10)"
        );
        // W10: Thu and Fri are working days, 3 rooms x 2 days x 10 h.
        assert_eq!(weeks[0].figures.bookable_ms, 60 * HOUR);
        assert_eq!(weeks[0].figures.no_shows, 1);
        assert_eq!(weeks[1].figures.bookable_ms, 60 * HOUR);
        assert_eq!(weeks[1].figures.used_ms, 2 * HOUR);
        let floors = s.rows(Level::Gateway, Granularity::Range, Selection::default());
        assert_eq!(floors.len(), 2);
        assert_eq!(floors[0].scope, Scope::Gateway("gw-1".into()));
        assert_eq!(floors[0].figures.bookable_ms, 40 * HOUR);
        assert_eq!(floors[1].figures.bookable_ms, 80 * HOUR);
        assert_eq!(floors[1].figures.booked_ms, 2 * HOUR);
        let one = s.rows(
            Level::Room,
            Granularity::Range,
            Selection {
                gateway: Some("gw-2"),
                room: Some("r7"),
            },
        );
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].figures.held, 1);
        assert_eq!(s.rooms().count(), 3);
        // A full week is labelled without its days.
        let full = Period {
            first: mon,
            last: date(2026, 3, 15),
            iso_week: Some((2026, 11)),
        };
        assert_eq!(full.label(), "2026-W11");
    }

    #[test]
    fn a_running_walk_in_counts_until_now_and_bad_events_are_skipped_with_why() {
        let z = TimeZone::UTC;
        let mon = date(2026, 3, 2);
        let mut log = Log::new();
        log.push(at(&z, mon, 10, 0), "r1", None, EventKind::WalkInStarted);
        // An end whose start is outside the window: ignored.
        log.push(at(&z, mon, 8, 0), "r2", None, EventKind::WalkInEnded);
        log.push_with(
            at(&z, mon, 9, 0),
            "r1",
            Some("bad"),
            EventKind::Usage,
            "usage",
            json!({ "scheduled_end_ms": 5 }),
        );
        log.push_with(
            at(&z, mon, 9, 0),
            "r1",
            Some("worse"),
            EventKind::Usage,
            "usage",
            json!({ "scheduled_start_ms": 10, "scheduled_end_ms": 5, "actual_end_ms": 5 }),
        );
        let s = one_floor(
            &z,
            &WorkingHours::default(),
            Range::new(mon, mon).expect("range"),
            &["r1"],
            &log,
            at(&z, mon, 10, 40),
        );
        let rows = day_rows(&s, Level::Room);
        assert_eq!(rows[0].figures.used_ms, 40 * MIN);
        assert_eq!(rows[0].figures.walk_ins, 1);
        assert_eq!(rows[1].figures.used_ms, 0, "r2 is known from its event");
        assert_eq!(s.skipped.len(), 2);
        assert_eq!(
            s.skipped[0].why,
            "usage event has no integer 'scheduled_start_ms'"
        );
        assert_eq!(
            s.skipped[1].why,
            "usage event's scheduled end is before its start"
        );
    }

    #[test]
    fn ranges_and_working_hours_are_checked() {
        let err = Range::new(date(2026, 3, 2), date(2026, 3, 1)).expect_err("reversed");
        assert_eq!(
            err.to_string(),
            "the range ends (2026-03-01) before it starts (2026-03-02)"
        );
        assert!(matches!(
            Range::new(date(2026, 1, 1), date(2027, 1, 2)),
            Err(StatsError::TooLong { .. })
        ));
        assert!(Range::new(date(2024, 1, 1), date(2024, 12, 31)).is_ok());
        let r = Range::new(date(2026, 3, 2), date(2026, 3, 2)).expect("range");
        let (from, to) = r.fetch_window(&TimeZone::UTC).expect("window");
        assert_eq!(to - from, 4 * DAY_MS);
        assert!(WorkingHours::new(600, 600, &[Weekday::Monday]).is_err());
        let h = WorkingHours::from_setting(&json!({"start": "07:30", "days": ["mon", "Sat"]}))
            .expect("setting");
        assert_eq!(h.describe(), "07:30-18:00 Mon Sat");
        assert_eq!(
            WorkingHours::default().describe(),
            "08:00-18:00 Mon Tue Wed Thu Fri"
        );
        let err = WorkingHours::from_setting(&json!({"end": "25:00"})).expect_err("bad end");
        assert_eq!(
            err.to_string(),
            "working hours: 'end' must be a time like \"08:00\""
        );
        assert!(WorkingHours::from_setting(&json!({"days": ["xx"]})).is_err());
        assert!(WorkingHours::from_setting(&json!({"end": "24:00"})).is_ok());
    }
}
