//! iCalendar import (RFC 5545 subset): VEVENTs of a room calendar export, with per-line errors.
//!
//! Read: `UID`, `DTSTART`/`DTEND` (UTC `Z`, `TZID`-qualified, floating = site zone, `DATE`
//! values for all-day events), `DURATION`, `SUMMARY`, `ORGANIZER` and `ATTENDEE` (`mailto:`),
//! `RRULE` (`FREQ=DAILY|WEEKLY`, `INTERVAL`, `COUNT`, `UNTIL`, `BYDAY`, `WKST`), `EXDATE`,
//! `RECURRENCE-ID` overrides and `STATUS:CANCELLED`. Content lines are unfolded (§3.1) and text
//! unescaped (§3.3.11). Other properties and components (`VALARM`, `VTIMEZONE`, `VTODO`...) are
//! ignored.
//!
//! Decisions:
//! * A malformed event is skipped and each of its bad lines reported with its number and, when
//!   known, its UID; the other events are kept. The UIDs of skipped events are reported, so an
//!   import leaves their bookings alone instead of cancelling them.
//! * The whole feed is refused (nothing imported) when it is too big, has too many events, does
//!   not begin with `BEGIN:VCALENDAR` (an HTML error page) or lacks `END:VCALENDAR` (a cut
//!   download): importing part of a feed would cancel the bookings of the missing part.
//! * A recurring event repeats in the zone of its `DTSTART`: its `TZID`, UTC for a `Z` time (as
//!   RFC 5545 says), the site's zone for floating times and all-day events. `TZID`s are looked
//!   up in the IANA database handed in; a path-like prefix (`/mozilla.org/.../Europe/Berlin`) and
//!   the common Windows names (`W. Europe Standard Time`) are understood; `VTIMEZONE` definitions
//!   are not read.
//! * An override (`RECURRENCE-ID`) moves its occurrence to its own `DTSTART`/`DTEND`; a cancelled
//!   one excludes the occurrence. Overrides of subject or attendees are not applied. An override
//!   whose series is not in the feed is kept as a single event.
//! * Rule parts that would change which days repeat (`BYMONTH`, `BYSETPOS`, `FREQ=MONTHLY`...) are
//!   errors, not ignored: ignoring them would book the room on the wrong days.
//! * `ORGANIZER`/`ATTENDEE` values other than `mailto:` (rooms, resources as URNs) are ignored;
//!   addresses are lower-cased.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use jiff::civil::{Date, DateTime, Time, Weekday};
use jiff::tz::{TimeZone, TimeZoneDatabase};
use jiff::{SignedDuration, Timestamp, Zoned};
use thiserror::Error;

use super::series::{Frequency, Length, Recurrence, Series, SeriesEnd, SeriesId, Slot};

/// Bounds on what an import reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcalLimits {
    /// Largest accepted input (default 4 MiB).
    pub max_bytes: usize,
    /// Most `VEVENT`s accepted (default 10,000).
    pub max_events: usize,
}

impl Default for IcalLimits {
    fn default() -> Self {
        Self {
            max_bytes: 4 * 1024 * 1024,
            max_events: 10_000,
        }
    }
}

/// Why a whole feed was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IcalError {
    #[error("the calendar file is {size} bytes; at most {max} bytes are accepted")]
    TooLarge { size: usize, max: usize },
    #[error("the calendar has more than {max} events (line {line}); nothing was imported")]
    TooManyEvents { max: usize, line: usize },
    #[error("not an iCalendar file: line {line} should be BEGIN:VCALENDAR")]
    NotCalendar { line: usize },
    #[error("the calendar file is cut short: END:VCALENDAR is missing; nothing was imported")]
    Truncated,
}

/// What is wrong with one line.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LineErrorKind {
    #[error("not a content line (expected NAME:value or NAME;PARAM=x:value)")]
    Syntax,
    #[error("{property}: {reason}")]
    BadValue { property: String, reason: String },
    #[error("{0} appears twice in one event")]
    Duplicate(String),
    #[error("the event has no {0}")]
    Missing(&'static str),
    #[error("the event has no END:VEVENT")]
    Unterminated,
    #[error("END:{0} without a matching BEGIN")]
    UnexpectedEnd(String),
    #[error("a VEVENT cannot contain another VEVENT")]
    Nested,
    #[error("another event already has UID {0:?}")]
    DuplicateUid(String),
}

/// A reported problem: the (first physical) line it is on, and the event's UID if known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub line: usize,
    pub uid: Option<String>,
    pub kind: LineErrorKind,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.kind)?;
        match &self.uid {
            Some(uid) => write!(f, " (event {uid}; skipped)"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for LineError {}

/// A time value as written: an instant in a zone, or a date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IcalTime {
    /// A date-time, in its zone (UTC for `Z`, the `TZID`, or the site's zone when floating).
    At(Zoned),
    /// A `DATE` value (all day).
    Date(Date),
}

impl IcalTime {
    /// The local date in `zone`.
    fn date_in(&self, zone: &TimeZone) -> Date {
        match self {
            Self::At(at) => at.with_time_zone(zone.clone()).date(),
            Self::Date(date) => *date,
        }
    }
}

/// One event of a feed, with its overrides merged in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IcalEvent {
    pub uid: String,
    /// The line of its `BEGIN:VEVENT`.
    pub line: usize,
    pub subject: String,
    /// Lower-cased e-mail address; empty when the event has no `mailto:` organizer.
    pub organizer: String,
    pub attendees: Vec<String>,
    /// The (first) start, in the zone the event repeats in.
    pub start: Zoned,
    pub all_day: bool,
    pub length: Length,
    pub recurrence: Option<Recurrence>,
    /// Local dates excluded by `EXDATE` or by a cancelled override.
    pub excluded: BTreeSet<Date>,
    /// Occurrences moved by overrides, by original local date.
    pub overrides: BTreeMap<Date, Slot>,
    pub cancelled: bool,
    /// Set for an override whose series is not in the feed: the occurrence's original date.
    pub recurrence_id: Option<Date>,
}

impl IcalEvent {
    /// The end of the first occurrence.
    pub fn end(&self) -> Option<Timestamp> {
        self.length
            .after(&self.start)
            .ok()
            .map(|end| end.timestamp())
    }

    /// The series of a recurring event, named `id`; `None` for a single event.
    pub fn to_series(&self, id: SeriesId) -> Option<Series> {
        let recurrence = self.recurrence.clone()?;
        Some(Series {
            id,
            zone: self.start.time_zone().clone(),
            first: self.start.datetime(),
            length: self.length,
            recurrence,
            excluded: self.excluded.clone(),
            overrides: self.overrides.clone(),
            subject: self.subject.clone(),
            organizer: self.organizer.clone(),
            attendees: self.attendees.clone(),
        })
    }
}

/// A parsed feed: the good events and the problems found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Feed {
    pub events: Vec<IcalEvent>,
    pub errors: Vec<LineError>,
}

impl Feed {
    /// The UIDs of events that were skipped for errors: an import must leave their bookings be.
    pub fn skipped_uids(&self) -> BTreeSet<&str> {
        self.errors
            .iter()
            .filter_map(|e| e.uid.as_deref())
            .collect()
    }
}

/// Parses a VCALENDAR text. Floating times and all-day events are read in `site`; `TZID`s are
/// looked up in `zones` (pass `jiff::tz::db()`).
pub fn parse_ical(
    input: &str,
    site: &TimeZone,
    zones: &TimeZoneDatabase,
    limits: &IcalLimits,
) -> Result<Feed, IcalError> {
    if input.len() > limits.max_bytes {
        return Err(IcalError::TooLarge {
            size: input.len(),
            max: limits.max_bytes,
        });
    }
    let lines = unfold(input.strip_prefix('\u{feff}').unwrap_or(input));
    let mut lines = lines
        .into_iter()
        .filter(|(_, text)| !text.trim().is_empty());
    match lines.next() {
        Some((_, text)) if text.trim_end().eq_ignore_ascii_case("BEGIN:VCALENDAR") => {}
        Some((line, _)) => return Err(IcalError::NotCalendar { line }),
        None => return Err(IcalError::NotCalendar { line: 1 }),
    }
    let context = Context { site, zones };
    let mut errors = Vec::new();
    let mut parsed = Vec::new();
    let mut event: Option<EventBuilder> = None;
    // Components being skipped (VALARM, VTIMEZONE...), innermost last.
    let mut skipping: Vec<String> = Vec::new();
    let mut events_seen = 0usize;
    let mut ended = false;

    for (line, text) in lines {
        if ended {
            break;
        }
        let content = match ContentLine::parse(&text) {
            Some(content) => content,
            None => {
                match event.as_mut() {
                    Some(builder) => builder.fail(line, LineErrorKind::Syntax),
                    None => errors.push(LineError {
                        line,
                        uid: None,
                        kind: LineErrorKind::Syntax,
                    }),
                }
                continue;
            }
        };
        match content.name.as_str() {
            "BEGIN" => {
                let component = content.value.trim().to_ascii_uppercase();
                if component == "VEVENT" && skipping.is_empty() {
                    if let Some(builder) = event.as_mut() {
                        builder.fail(line, LineErrorKind::Nested);
                        skipping.push(component);
                        continue;
                    }
                    events_seen += 1;
                    if events_seen > limits.max_events {
                        return Err(IcalError::TooManyEvents {
                            max: limits.max_events,
                            line,
                        });
                    }
                    event = Some(EventBuilder::new(line));
                } else {
                    skipping.push(component);
                }
            }
            "END" => {
                let component = content.value.trim().to_ascii_uppercase();
                if let Some(at) = skipping.iter().rposition(|c| *c == component) {
                    skipping.truncate(at);
                } else if component == "VEVENT" && event.is_some() {
                    skipping.clear();
                    if let Some(builder) = event.take() {
                        match builder.finish(&context) {
                            Ok(done) => parsed.push(done),
                            Err(mut failed) => errors.append(&mut failed),
                        }
                    }
                } else if component == "VCALENDAR" {
                    if let Some(builder) = event.take() {
                        errors.extend(builder.abandon(LineErrorKind::Unterminated));
                    }
                    ended = true;
                } else {
                    let kind = LineErrorKind::UnexpectedEnd(component);
                    match event.as_mut() {
                        Some(builder) => builder.fail(line, kind),
                        None => errors.push(LineError {
                            line,
                            uid: None,
                            kind,
                        }),
                    }
                }
            }
            _ => {
                if let (Some(builder), true) = (event.as_mut(), skipping.is_empty()) {
                    builder.property(line, content, &context);
                }
            }
        }
    }
    if !ended {
        return Err(IcalError::Truncated);
    }
    let events = merge(parsed, &mut errors);
    errors.sort_by_key(|e| e.line);
    Ok(Feed { events, errors })
}

/// Joins folded lines (CRLF or LF followed by a space or tab, RFC 5545 §3.1); each logical line
/// keeps the number of its first physical line.
fn unfold(input: &str) -> Vec<(usize, String)> {
    let mut lines: Vec<(usize, String)> = Vec::new();
    for (index, raw) in input.split('\n').enumerate() {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        match (raw.strip_prefix([' ', '\t']), lines.last_mut()) {
            (Some(rest), Some((_, last))) => last.push_str(rest),
            _ => lines.push((index + 1, raw.to_owned())),
        }
    }
    lines
}

/// `NAME;PARAM=value;PARAM="quoted":value` (RFC 5545 §3.1), name and parameter names upper-cased.
#[derive(Debug)]
struct ContentLine {
    name: String,
    params: Vec<(String, String)>,
    value: String,
}

impl ContentLine {
    fn parse(text: &str) -> Option<Self> {
        let is_name = |c: char| c.is_ascii_alphanumeric() || c == '-';
        let name_end = text.find(|c: char| !is_name(c))?;
        let (name, mut rest) = text.split_at(name_end);
        if name.is_empty() {
            return None;
        }
        let mut params = Vec::new();
        while let Some(after) = rest.strip_prefix(';') {
            let eq = after.find('=')?;
            let (param, after) = after.split_at(eq);
            if param.is_empty() || !param.chars().all(is_name) {
                return None;
            }
            let after = &after[1..];
            // A value runs to the next unquoted ';' or ':'.
            let mut quoted = false;
            let mut end = None;
            for (i, c) in after.char_indices() {
                match c {
                    '"' => quoted = !quoted,
                    ';' | ':' if !quoted => {
                        end = Some(i);
                        break;
                    }
                    _ => {}
                }
            }
            let end = end?;
            let value = after[..end].trim_matches('"').to_owned();
            params.push((param.to_ascii_uppercase(), value));
            rest = &after[end..];
        }
        let value = rest.strip_prefix(':')?;
        Some(Self {
            name: name.to_ascii_uppercase(),
            params,
            value: value.to_owned(),
        })
    }

    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Undoes TEXT escaping (RFC 5545 §3.3.11): `\\`, `\;`, `\,`, `\n`/`\N`.
fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n' | 'N') => out.push('\n'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

struct Context<'a> {
    site: &'a TimeZone,
    zones: &'a TimeZoneDatabase,
}

fn bad(property: &str, reason: impl Into<String>) -> LineErrorKind {
    LineErrorKind::BadValue {
        property: property.to_owned(),
        reason: reason.into(),
    }
}

impl Context<'_> {
    /// A DATE or DATE-TIME value with its `TZID`/`VALUE` parameters (RFC 5545 §3.3.4, §3.3.5).
    fn time(
        &self,
        property: &str,
        content: &ContentLine,
        value: &str,
    ) -> Result<IcalTime, LineErrorKind> {
        let value = value.trim();
        let is_date = content
            .param("VALUE")
            .is_some_and(|v| v.eq_ignore_ascii_case("DATE"))
            || value.len() == 8;
        if is_date {
            return parse_date(value)
                .map(IcalTime::Date)
                .ok_or_else(|| bad(property, format!("{value:?} is not a date (YYYYMMDD)")));
        }
        let (local, utc) = match value.strip_suffix(['Z', 'z']) {
            Some(local) => (local, true),
            None => (value, false),
        };
        let datetime = parse_datetime(local).ok_or_else(|| {
            bad(
                property,
                format!("{value:?} is not a date-time (YYYYMMDDTHHMMSS[Z])"),
            )
        })?;
        let zone = if utc {
            TimeZone::UTC
        } else if let Some(tzid) = content.param("TZID") {
            lookup_zone(tzid, self.zones)
                .ok_or_else(|| bad(property, format!("unknown time zone {tzid:?}")))?
        } else {
            self.site.clone()
        };
        zone.to_ambiguous_zoned(datetime)
            .compatible()
            .map(IcalTime::At)
            .map_err(|e| bad(property, format!("{value:?} is out of range: {e}")))
    }

    fn times(&self, property: &str, content: &ContentLine) -> Result<Vec<IcalTime>, LineErrorKind> {
        content
            .value
            .split(',')
            .filter(|v| !v.trim().is_empty())
            .map(|v| self.time(property, content, v))
            .collect()
    }
}

fn digits<T: std::str::FromStr>(text: &str) -> Option<T> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn parse_date(text: &str) -> Option<Date> {
    if text.len() != 8 || !text.is_ascii() {
        return None;
    }
    Date::new(
        digits(&text[..4])?,
        digits(&text[4..6])?,
        digits(&text[6..8])?,
    )
    .ok()
}

fn parse_datetime(text: &str) -> Option<DateTime> {
    if text.len() != 15 || !text.is_ascii() || !text[8..9].eq_ignore_ascii_case("T") {
        return None;
    }
    let date = parse_date(&text[..8])?;
    // A leap second (60) is read as 59.
    let second: i8 = digits::<i8>(&text[13..15])?.min(59);
    let time = Time::new(digits(&text[9..11])?, digits(&text[11..13])?, second, 0).ok()?;
    Some(date.to_datetime(time))
}

/// `P15M`, `PT1H30M`, `P1D`, `P2W`, `P1DT12H` (RFC 5545 §3.3.6): days and weeks are civil, the
/// rest exact. Negative durations are refused.
fn parse_duration(text: &str) -> Option<Length> {
    let text = text.trim();
    let text = text.strip_prefix('+').unwrap_or(text);
    let mut rest = text.strip_prefix(['P', 'p'])?;
    let mut days: i64 = 0;
    let mut seconds: i64 = 0;
    let mut in_time = false;
    let mut any = false;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix(['T', 't']) {
            in_time = true;
            rest = after;
            continue;
        }
        let split = rest.find(|c: char| !c.is_ascii_digit())?;
        let number: i64 = digits(&rest[..split])?;
        let unit = rest[split..].chars().next()?;
        rest = &rest[split + unit.len_utf8()..];
        any = true;
        match (unit.to_ascii_uppercase(), in_time) {
            ('W', false) => days = days.checked_add(number.checked_mul(7)?)?,
            ('D', false) => days = days.checked_add(number)?,
            ('H', true) => seconds = seconds.checked_add(number.checked_mul(3600)?)?,
            ('M', true) => seconds = seconds.checked_add(number.checked_mul(60)?)?,
            ('S', true) => seconds = seconds.checked_add(number)?,
            _ => return None,
        }
    }
    if !any {
        return None;
    }
    Some(Length {
        days: i32::try_from(days).ok()?,
        exact: SignedDuration::from_secs(seconds),
    })
}

fn parse_weekday(text: &str) -> Option<Weekday> {
    Some(match text.to_ascii_uppercase().as_str() {
        "MO" => Weekday::Monday,
        "TU" => Weekday::Tuesday,
        "WE" => Weekday::Wednesday,
        "TH" => Weekday::Thursday,
        "FR" => Weekday::Friday,
        "SA" => Weekday::Saturday,
        "SU" => Weekday::Sunday,
        _ => return None,
    })
}

/// An RRULE (RFC 5545 §3.3.10) limited to DAILY and WEEKLY; `start` is the event's DTSTART.
fn parse_rrule(text: &str, start: &Zoned) -> Result<Recurrence, String> {
    let mut frequency = None;
    let mut interval = 1u32;
    let mut count = None;
    let mut until = None;
    let mut by_day: Option<Vec<Weekday>> = None;
    let mut week_start = Weekday::Monday;
    for part in text.trim().split(';').filter(|p| !p.is_empty()) {
        let (key, value) = part
            .split_once('=')
            .ok_or_else(|| format!("{part:?} is not KEY=value"))?;
        let value = value.trim();
        match key.trim().to_ascii_uppercase().as_str() {
            "FREQ" => {
                frequency = Some(match value.to_ascii_uppercase().as_str() {
                    "DAILY" => "DAILY",
                    "WEEKLY" => "WEEKLY",
                    other => {
                        return Err(format!(
                            "FREQ={other} is not supported (only DAILY and WEEKLY)"
                        ));
                    }
                })
            }
            "INTERVAL" => {
                interval = digits::<u32>(value).filter(|n| *n >= 1).ok_or_else(|| {
                    format!("INTERVAL={value} is not a whole number of at least 1")
                })?
            }
            "COUNT" => {
                count =
                    Some(digits::<u32>(value).filter(|n| *n >= 1).ok_or_else(|| {
                        format!("COUNT={value} is not a whole number of at least 1")
                    })?)
            }
            "UNTIL" => until = Some(parse_until(value, start)?),
            "BYDAY" => {
                let days = value
                    .split(',')
                    .map(|d| {
                        parse_weekday(d.trim()).ok_or_else(|| {
                            if d.trim().starts_with(|c: char| c.is_ascii_digit() || c == '+' || c == '-') {
                                format!("BYDAY={d} (a numbered weekday) needs a monthly rule, which is not supported")
                            } else {
                                format!("BYDAY={d} is not a weekday (MO..SU)")
                            }
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                by_day = Some(days);
            }
            "WKST" => {
                week_start = parse_weekday(value)
                    .ok_or_else(|| format!("WKST={value} is not a weekday (MO..SU)"))?
            }
            other => return Err(format!("{other} is not supported")),
        }
    }
    let end = match (count, until) {
        (Some(_), Some(_)) => return Err("COUNT and UNTIL cannot both be given".into()),
        (Some(n), None) => SeriesEnd::Count(n),
        (None, Some(t)) => SeriesEnd::Until(t),
        (None, None) => SeriesEnd::Never,
    };
    let frequency = match (frequency, by_day) {
        (None, _) => return Err("FREQ is missing".into()),
        (Some("DAILY"), None) => Frequency::Daily,
        // Every day, but only on these weekdays: the same as weekly on them.
        (Some("DAILY"), Some(days)) if interval == 1 => Frequency::Weekly { days, week_start },
        (Some("DAILY"), Some(_)) => {
            return Err("BYDAY with FREQ=DAILY and INTERVAL above 1 is not supported".into());
        }
        (Some(_), days) => Frequency::Weekly {
            days: days.unwrap_or_else(|| vec![start.date().weekday()]),
            week_start,
        },
    };
    Ok(Recurrence {
        frequency,
        interval,
        end,
    })
}

/// UNTIL is inclusive: a date means "through the end of that local day".
fn parse_until(value: &str, start: &Zoned) -> Result<Timestamp, String> {
    let zone = start.time_zone();
    let local = if let Some(date) = parse_date(value) {
        date.to_datetime(Time::MAX)
    } else {
        let (local, utc) = match value.strip_suffix(['Z', 'z']) {
            Some(local) => (local, true),
            None => (value, false),
        };
        let datetime = parse_datetime(local)
            .ok_or_else(|| format!("UNTIL={value} is not a date or date-time"))?;
        if utc {
            return datetime
                .to_zoned(TimeZone::UTC)
                .map(|z| z.timestamp())
                .map_err(|e| format!("UNTIL={value} is out of range: {e}"));
        }
        datetime
    };
    zone.to_ambiguous_zoned(local)
        .compatible()
        .map(|z| z.timestamp())
        .map_err(|e| format!("UNTIL={value} is out of range: {e}"))
}

/// Windows zone names Outlook and Exchange write as TZID (CLDR windowsZones, territory 001).
const WINDOWS_ZONES: &[(&str, &str)] = &[
    ("W. Europe Standard Time", "Europe/Berlin"),
    ("Central Europe Standard Time", "Europe/Budapest"),
    ("Central European Standard Time", "Europe/Warsaw"),
    ("Romance Standard Time", "Europe/Paris"),
    ("GMT Standard Time", "Europe/London"),
    ("Greenwich Standard Time", "Atlantic/Reykjavik"),
    ("E. Europe Standard Time", "Europe/Chisinau"),
    ("FLE Standard Time", "Europe/Kiev"),
    ("GTB Standard Time", "Europe/Bucharest"),
    ("Russian Standard Time", "Europe/Moscow"),
    ("Eastern Standard Time", "America/New_York"),
    ("Central Standard Time", "America/Chicago"),
    ("Mountain Standard Time", "America/Denver"),
    ("US Mountain Standard Time", "America/Phoenix"),
    ("Pacific Standard Time", "America/Los_Angeles"),
    ("Alaskan Standard Time", "America/Anchorage"),
    ("Hawaiian Standard Time", "Pacific/Honolulu"),
    ("Atlantic Standard Time", "America/Halifax"),
    ("China Standard Time", "Asia/Shanghai"),
    ("Tokyo Standard Time", "Asia/Tokyo"),
    ("India Standard Time", "Asia/Kolkata"),
    ("Singapore Standard Time", "Asia/Singapore"),
    ("AUS Eastern Standard Time", "Australia/Sydney"),
    ("UTC", "Etc/UTC"),
    ("Coordinated Universal Time", "Etc/UTC"),
];

/// An IANA zone by TZID: the name itself, a path suffix of it, or a Windows name.
fn lookup_zone(tzid: &str, zones: &TimeZoneDatabase) -> Option<TimeZone> {
    let tzid = tzid.trim();
    if tzid.is_empty() || tzid.len() > 128 {
        return None;
    }
    if let Some((_, iana)) = WINDOWS_ZONES
        .iter()
        .find(|(w, _)| w.eq_ignore_ascii_case(tzid))
    {
        return zones.get(iana).ok();
    }
    std::iter::once(tzid)
        .chain(tzid.match_indices('/').map(|(i, _)| &tzid[i + 1..]))
        .filter(|name| !name.is_empty())
        .find_map(|name| zones.get(name).ok())
}

fn mailto(value: &str) -> Option<String> {
    let value = value.trim();
    let prefix = value.get(..7)?;
    if !prefix.eq_ignore_ascii_case("mailto:") {
        return None;
    }
    let address = value[7..].trim();
    (!address.is_empty()).then(|| address.to_lowercase())
}

/// An event as read, before its overrides are merged.
struct Parsed {
    event: IcalEvent,
    recurrence_id: Option<(usize, IcalTime)>,
}

/// Collects one VEVENT's properties and errors.
struct EventBuilder {
    line: usize,
    errors: Vec<(usize, LineErrorKind)>,
    uid: Option<String>,
    start: Option<(usize, IcalTime)>,
    end: Option<(usize, IcalTime)>,
    duration: Option<(usize, Length)>,
    summary: Option<String>,
    organizer: Option<String>,
    attendees: Vec<String>,
    rrule: Option<(usize, String)>,
    exdates: Vec<IcalTime>,
    recurrence_id: Option<(usize, IcalTime)>,
    cancelled: bool,
}

/// Stores `value` in `slot` unless the property was already seen.
fn once<T>(slot: &mut Option<T>, value: T, name: &str) -> Result<(), LineErrorKind> {
    if slot.is_some() {
        return Err(LineErrorKind::Duplicate(name.to_owned()));
    }
    *slot = Some(value);
    Ok(())
}

impl EventBuilder {
    fn new(line: usize) -> Self {
        Self {
            line,
            errors: Vec::new(),
            uid: None,
            start: None,
            end: None,
            duration: None,
            summary: None,
            organizer: None,
            attendees: Vec::new(),
            rrule: None,
            exdates: Vec::new(),
            recurrence_id: None,
            cancelled: false,
        }
    }

    fn fail(&mut self, line: usize, kind: LineErrorKind) {
        self.errors.push((line, kind));
    }

    fn property(&mut self, line: usize, content: ContentLine, context: &Context<'_>) {
        if let Err(kind) = self.read(line, &content, context) {
            self.fail(line, kind);
        }
    }

    fn read(
        &mut self,
        line: usize,
        content: &ContentLine,
        context: &Context<'_>,
    ) -> Result<(), LineErrorKind> {
        let name = content.name.as_str();
        match name {
            "UID" => {
                let uid = content.value.trim();
                if uid.is_empty() {
                    return Err(bad(name, "is empty"));
                }
                once(&mut self.uid, uid.to_owned(), name)
            }
            "DTSTART" => {
                let time = context.time(name, content, &content.value)?;
                once(&mut self.start, (line, time), name)
            }
            "DTEND" => {
                let time = context.time(name, content, &content.value)?;
                once(&mut self.end, (line, time), name)
            }
            "RECURRENCE-ID" => {
                if content
                    .param("RANGE")
                    .is_some_and(|r| r.eq_ignore_ascii_case("THISANDFUTURE"))
                {
                    return Err(bad(name, "RANGE=THISANDFUTURE is not supported"));
                }
                let time = context.time(name, content, &content.value)?;
                once(&mut self.recurrence_id, (line, time), name)
            }
            "DURATION" => {
                let length = parse_duration(&content.value).ok_or_else(|| {
                    bad(
                        name,
                        format!(
                            "{:?} is not a positive duration (like PT1H30M)",
                            content.value
                        ),
                    )
                })?;
                once(&mut self.duration, (line, length), name)
            }
            "SUMMARY" => once(&mut self.summary, unescape(&content.value), name),
            "ORGANIZER" => match mailto(&content.value) {
                Some(address) => once(&mut self.organizer, address, name),
                None => Ok(()),
            },
            "ATTENDEE" => {
                if let Some(address) = mailto(&content.value) {
                    self.attendees.push(address);
                }
                Ok(())
            }
            "RRULE" => once(&mut self.rrule, (line, content.value.clone()), name),
            "EXDATE" => {
                let mut times = context.times(name, content)?;
                self.exdates.append(&mut times);
                Ok(())
            }
            "STATUS" => {
                self.cancelled = content.value.trim().eq_ignore_ascii_case("CANCELLED");
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// The errors of an event that cannot be completed.
    fn abandon(mut self, kind: LineErrorKind) -> Vec<LineError> {
        self.errors.push((self.line, kind));
        self.into_errors()
    }

    fn into_errors(self) -> Vec<LineError> {
        let uid = self.uid;
        self.errors
            .into_iter()
            .map(|(line, kind)| LineError {
                line,
                uid: uid.clone(),
                kind,
            })
            .collect()
    }

    fn finish(mut self, context: &Context<'_>) -> Result<Parsed, Vec<LineError>> {
        // A property already refused would only be reported again as missing.
        if !self.errors.is_empty() {
            return Err(self.into_errors());
        }
        match self.build(context) {
            Ok(parsed) => Ok(parsed),
            Err((line, kind)) => {
                self.errors.push((line, kind));
                Err(self.into_errors())
            }
        }
    }

    fn build(&mut self, context: &Context<'_>) -> Result<Parsed, (usize, LineErrorKind)> {
        let line = self.line;
        let uid = self
            .uid
            .clone()
            .ok_or((line, LineErrorKind::Missing("UID")))?;
        let (start_line, start) = self
            .start
            .clone()
            .ok_or((line, LineErrorKind::Missing("DTSTART")))?;
        let (start, all_day) = match start {
            IcalTime::At(at) => (at, false),
            IcalTime::Date(date) => {
                let at = context
                    .site
                    .to_ambiguous_zoned(date.to_datetime(Time::midnight()))
                    .compatible()
                    .map_err(|e| {
                        (
                            start_line,
                            bad("DTSTART", format!("{date} is out of range: {e}")),
                        )
                    })?;
                (at, true)
            }
        };
        let length = match (self.end.clone(), self.duration) {
            (Some(_), Some((duration_line, _))) => {
                return Err((
                    duration_line,
                    bad("DURATION", "an event cannot have both DTEND and DURATION"),
                ));
            }
            (Some((end_line, IcalTime::Date(end))), None) if all_day => {
                let days = start
                    .date()
                    .until(end)
                    .map_err(|e| (end_line, bad("DTEND", e.to_string())))?
                    .get_days();
                Length::days(days)
            }
            (Some((_, IcalTime::At(end))), None) if !all_day => {
                Length::exact(start.timestamp().duration_until(end.timestamp()))
            }
            (Some((end_line, _)), None) => {
                return Err((
                    end_line,
                    bad(
                        "DTEND",
                        "must be a date when DTSTART is a date, a date-time otherwise",
                    ),
                ));
            }
            (None, Some((_, length))) => length,
            (None, None) if all_day => Length::days(1),
            (None, None) => return Err((line, LineErrorKind::Missing("DTEND or DURATION"))),
        };
        if length.nominal() <= SignedDuration::ZERO {
            let at = self
                .end
                .as_ref()
                .map(|(l, _)| *l)
                .or(self.duration.map(|(l, _)| l))
                .unwrap_or(line);
            return Err((at, bad("DTEND", "the event must end after it starts")));
        }
        let recurrence = match &self.rrule {
            Some((rule_line, text)) => Some(
                parse_rrule(text, &start).map_err(|reason| (*rule_line, bad("RRULE", reason)))?,
            ),
            None => None,
        };
        let zone = start.time_zone().clone();
        let excluded = self.exdates.iter().map(|t| t.date_in(&zone)).collect();
        Ok(Parsed {
            event: IcalEvent {
                uid,
                line,
                subject: self.summary.clone().unwrap_or_default(),
                organizer: self.organizer.clone().unwrap_or_default(),
                attendees: std::mem::take(&mut self.attendees),
                start,
                all_day,
                length,
                recurrence,
                excluded,
                overrides: BTreeMap::new(),
                cancelled: self.cancelled,
                recurrence_id: None,
            },
            recurrence_id: self.recurrence_id.clone(),
        })
    }
}

/// Attaches overrides (events with RECURRENCE-ID) to their series and refuses duplicate UIDs.
fn merge(parsed: Vec<Parsed>, errors: &mut Vec<LineError>) -> Vec<IcalEvent> {
    let mut events: Vec<IcalEvent> = Vec::new();
    let mut by_uid: HashMap<String, usize> = HashMap::new();
    let mut overrides = Vec::new();
    for item in parsed {
        if item.recurrence_id.is_some() {
            overrides.push(item);
            continue;
        }
        if by_uid.contains_key(&item.event.uid) {
            errors.push(LineError {
                line: item.event.line,
                uid: None,
                kind: LineErrorKind::DuplicateUid(item.event.uid),
            });
            continue;
        }
        by_uid.insert(item.event.uid.clone(), events.len());
        events.push(item.event);
    }
    let mut lone: Vec<IcalEvent> = Vec::new();
    for Parsed {
        mut event,
        recurrence_id,
    } in overrides
    {
        let Some((id_line, original)) = recurrence_id else {
            continue;
        };
        match by_uid.get(&event.uid).and_then(|&i| events.get_mut(i)) {
            Some(series) if series.recurrence.is_some() => {
                let date = original.date_in(series.start.time_zone());
                if event.cancelled {
                    series.excluded.insert(date);
                } else if let Some(end) = event.end() {
                    series.overrides.insert(
                        date,
                        Slot {
                            start: event.start.timestamp(),
                            end,
                        },
                    );
                }
            }
            Some(_) => errors.push(LineError {
                line: id_line,
                uid: Some(event.uid.clone()),
                kind: bad("RECURRENCE-ID", "the event with this UID does not repeat"),
            }),
            None => {
                event.recurrence_id = Some(original.date_in(event.start.time_zone()));
                lone.push(event);
            }
        }
    }
    events.append(&mut lone);
    events
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    fn berlin() -> TimeZone {
        jiff::tz::db().get("Europe/Berlin").unwrap()
    }

    fn parse(text: &str) -> Result<Feed, IcalError> {
        parse_ical(text, &berlin(), jiff::tz::db(), &IcalLimits::default())
    }

    fn crlf(text: &str) -> String {
        text.lines().map(|l| format!("{l}\r\n")).collect()
    }

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    const OUTLOOK: &str = "\
BEGIN:VCALENDAR
PRODID:-//Microsoft Corporation//Outlook 16.0 MIMEDIR//EN
VERSION:2.0
BEGIN:VTIMEZONE
TZID:W. Europe Standard Time
BEGIN:STANDARD
DTSTART:16011028T030000
TZOFFSETFROM:+0200
TZOFFSETTO:+0100
END:STANDARD
END:VTIMEZONE
BEGIN:VEVENT
UID:weekly-1@example.com
DTSTART;TZID=W. Europe Standard Time:20260323T090000
DTEND;TZID=W. Europe Standard Time:20260323T100000
RRULE:FREQ=WEEKLY;BYDAY=MO,WE,FR;UNTIL=20260415T070000Z
EXDATE;TZID=W. Europe Standard Time:20260325T090000,20260327T090000
SUMMARY:Team sync\\, weekly\\; bring notes\\nand coffee \\\\o/
ORGANIZER;CN=\"Lovelace, Ada\":mailto:Ada@Example.com
ATTENDEE;ROLE=REQ-PARTICIPANT;CN=Bob:MAILTO:bob@example.com
ATTENDEE;CUTYPE=RESOURCE:urn:x-room:r-101
X-MICROSOFT-CDO-BUSYSTATUS:BUSY
BEGIN:VALARM
TRIGGER:-PT15M
DESCRIPTION:this alarm's DTSTART must not leak
DTSTART:20990101T000000Z
END:VALARM
END:VEVENT
BEGIN:VEVENT
UID:weekly-1@example.com
RECURRENCE-ID;TZID=W. Europe Standard Time:20260330T090000
DTSTART;TZID=W. Europe Standard Time:20260330T140000
DTEND;TZID=W. Europe Standard Time:20260330T150000
SUMMARY:Team sync (moved)
END:VEVENT
BEGIN:VEVENT
UID:weekly-1@example.com
RECURRENCE-ID;TZID=W. Europe Standard Time:20260401T090000
DTSTART;TZID=W. Europe Standard Time:20260401T090000
DTEND;TZID=W. Europe Standard Time:20260401T100000
STATUS:CANCELLED
END:VEVENT
BEGIN:VEVENT
UID:utc-1
DTSTART:20260324T130000Z
DURATION:PT45M
SUMMARY:Interview
END:VEVENT
BEGIN:VEVENT
UID:floating-1
DTSTART:20260324T150000
DTEND:20260324T1
 63000
SUMMARY:Fol
	ded
END:VEVENT
BEGIN:VEVENT
UID:allday-1
DTSTART;VALUE=DATE:20260329
SUMMARY:Offsite
END:VEVENT
BEGIN:VEVENT
UID:gone-1
DTSTART;TZID=/mozilla.org/20050126_1/America/New_York:20260325T090000
DTEND;TZID=/mozilla.org/20050126_1/America/New_York:20260325T093000
STATUS:CANCELLED
END:VEVENT
END:VCALENDAR
";

    #[test]
    fn reads_an_outlook_export() {
        let feed = parse(&crlf(OUTLOOK)).unwrap();
        assert_eq!(feed.errors, []);
        let uids: Vec<_> = feed.events.iter().map(|e| e.uid.as_str()).collect();
        assert_eq!(
            uids,
            [
                "weekly-1@example.com",
                "utc-1",
                "floating-1",
                "allday-1",
                "gone-1"
            ]
        );

        let weekly = &feed.events[0];
        assert_eq!(weekly.line, 12);
        assert_eq!(
            weekly.subject,
            "Team sync, weekly; bring notes\nand coffee \\o/"
        );
        assert_eq!(weekly.organizer, "ada@example.com");
        assert_eq!(weekly.attendees, ["bob@example.com"]);
        assert_eq!(weekly.start.timestamp(), t("2026-03-23T08:00:00Z"));
        assert_eq!(weekly.start.time_zone().iana_name(), Some("Europe/Berlin"));
        assert_eq!(weekly.length, Length::exact(SignedDuration::from_hours(1)));
        assert_eq!(
            weekly.recurrence,
            Some(Recurrence {
                frequency: Frequency::Weekly {
                    days: vec![Weekday::Monday, Weekday::Wednesday, Weekday::Friday],
                    week_start: Weekday::Monday,
                },
                interval: 1,
                end: SeriesEnd::Until(t("2026-04-15T07:00:00Z")),
            })
        );
        let excluded: Vec<_> = weekly.excluded.iter().copied().collect();
        assert_eq!(
            excluded,
            [date(2026, 3, 25), date(2026, 3, 27), date(2026, 4, 1)]
        );
        assert_eq!(
            weekly.overrides.get(&date(2026, 3, 30)),
            Some(&Slot {
                start: t("2026-03-30T12:00:00Z"),
                end: t("2026-03-30T13:00:00Z"),
            })
        );
        assert!(!weekly.cancelled);

        let utc = &feed.events[1];
        assert_eq!(
            (utc.start.timestamp(), utc.end()),
            (t("2026-03-24T13:00:00Z"), Some(t("2026-03-24T13:45:00Z")))
        );
        assert_eq!(utc.start.time_zone(), &TimeZone::UTC);

        let floating = &feed.events[2];
        assert_eq!(floating.subject, "Folded");
        assert_eq!(floating.start.timestamp(), t("2026-03-24T14:00:00Z"));
        assert_eq!(floating.end(), Some(t("2026-03-24T15:30:00Z")));

        // All day on the spring switch day: 23 hours, midnight to midnight in the site's zone.
        let all_day = &feed.events[3];
        assert!(all_day.all_day);
        assert_eq!(all_day.length, Length::days(1));
        assert_eq!(all_day.start.timestamp(), t("2026-03-28T23:00:00Z"));
        assert_eq!(all_day.end(), Some(t("2026-03-29T22:00:00Z")));

        let gone = &feed.events[4];
        assert!(gone.cancelled);
        assert_eq!(gone.start.timestamp(), t("2026-03-25T13:00:00Z"));
    }

    #[test]
    fn plain_lf_line_endings_are_read_too() {
        let feed = parse(OUTLOOK).unwrap();
        assert_eq!(feed.errors, []);
        assert_eq!(feed.events.len(), 5);
    }

    const BROKEN: &str = "\
BEGIN:VCALENDAR
VERSION:2.0
BEGIN:VEVENT
UID:good-1
DTSTART:20260324T090000Z
DTEND:20260324T100000Z
END:VEVENT
BEGIN:VEVENT
UID:bad-date
DTSTART:20261324T090000Z
DTEND:20260324T100000Z
END:VEVENT
BEGIN:VEVENT
DTSTART:20260324T090000Z
DTEND:20260324T100000Z
END:VEVENT
BEGIN:VEVENT
UID:monthly
DTSTART;TZID=Europe/Berlin:20260324T090000
DURATION:PT1H
RRULE:FREQ=MONTHLY;BYMONTHDAY=24
END:VEVENT
BEGIN:VEVENT
UID:nowhere
DTSTART;TZID=Mars/Olympus_Mons:20260324T090000
DTEND;TZID=Mars/Olympus_Mons:20260324T100000
this line has no colon
END:VEVENT
BEGIN:VEVENT
UID:backwards
DTSTART:20260324T100000Z
DTEND:20260324T090000Z
END:VEVENT
BEGIN:VEVENT
UID:twice
DTSTART:20260324T100000Z
DTSTART:20260324T110000Z
DURATION:-PT1H
END:VEVENT
BEGIN:VEVENT
UID:good-1
DTSTART:20260325T090000Z
DTEND:20260325T100000Z
END:VEVENT
BEGIN:VEVENT
UID:unterminated
DTSTART:20260326T090000Z
DTEND:20260326T100000Z
END:VCALENDAR
";

    #[test]
    fn malformed_events_are_reported_by_line_and_skipped() {
        let feed = parse(BROKEN).unwrap();
        let uids: Vec<_> = feed.events.iter().map(|e| e.uid.as_str()).collect();
        assert_eq!(uids, ["good-1"]);
        let errors: Vec<String> = feed.errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            errors,
            [
                "line 10: DTSTART: \"20261324T090000Z\" is not a date-time (YYYYMMDDTHHMMSS[Z]) (event bad-date; skipped)",
                "line 13: the event has no UID",
                "line 21: RRULE: FREQ=MONTHLY is not supported (only DAILY and WEEKLY) (event monthly; skipped)",
                "line 25: DTSTART: unknown time zone \"Mars/Olympus_Mons\" (event nowhere; skipped)",
                "line 26: DTEND: unknown time zone \"Mars/Olympus_Mons\" (event nowhere; skipped)",
                "line 27: not a content line (expected NAME:value or NAME;PARAM=x:value) (event nowhere; skipped)",
                "line 32: DTEND: the event must end after it starts (event backwards; skipped)",
                "line 37: DTSTART appears twice in one event (event twice; skipped)",
                "line 38: DURATION: \"-PT1H\" is not a positive duration (like PT1H30M) (event twice; skipped)",
                "line 40: another event already has UID \"good-1\"",
                "line 45: the event has no END:VEVENT (event unterminated; skipped)",
            ]
        );
        let skipped: Vec<_> = feed.skipped_uids().into_iter().collect();
        assert_eq!(
            skipped,
            [
                "backwards",
                "bad-date",
                "monthly",
                "nowhere",
                "twice",
                "unterminated"
            ]
        );
    }

    #[test]
    fn rule_variants() {
        let event = |rule: &str| {
            let text = format!(
                "BEGIN:VCALENDAR\nBEGIN:VEVENT\nUID:x\nDTSTART;TZID=Europe/Berlin:20260302T090000\n\
                 DURATION:PT30M\nRRULE:{rule}\nEND:VEVENT\nEND:VCALENDAR\n"
            );
            let feed = parse(&text).unwrap();
            match (feed.events.first(), feed.errors.first()) {
                (Some(event), None) => Ok(event.recurrence.clone().unwrap()),
                (_, Some(error)) => Err(error.kind.to_string()),
                (None, None) => Err("nothing".into()),
            }
        };
        use Weekday::*;
        let weekdays = Recurrence {
            frequency: Frequency::Weekly {
                days: vec![Monday, Tuesday, Wednesday, Thursday, Friday],
                week_start: Sunday,
            },
            interval: 1,
            end: SeriesEnd::Count(10),
        };
        assert_eq!(
            event("FREQ=DAILY;BYDAY=MO,TU,WE,TH,FR;COUNT=10;WKST=SU"),
            Ok(weekdays)
        );
        assert_eq!(
            event("FREQ=WEEKLY;INTERVAL=2"),
            Ok(Recurrence {
                frequency: Frequency::Weekly {
                    days: vec![Monday],
                    week_start: Monday,
                },
                interval: 2,
                end: SeriesEnd::Never,
            })
        );
        // A floating UNTIL date is inclusive, through the end of that day in the event's zone.
        assert_eq!(
            event("FREQ=DAILY;UNTIL=20260305").map(|r| r.end),
            Ok(SeriesEnd::Until(t("2026-03-05T22:59:59.999999999Z")))
        );
        for (rule, message) in [
            (
                "FREQ=WEEKLY;BYDAY=1MO",
                "RRULE: BYDAY=1MO (a numbered weekday) needs a monthly rule, which is not supported",
            ),
            (
                "FREQ=WEEKLY;COUNT=2;UNTIL=20260401T000000Z",
                "RRULE: COUNT and UNTIL cannot both be given",
            ),
            (
                "FREQ=DAILY;INTERVAL=0",
                "RRULE: INTERVAL=0 is not a whole number of at least 1",
            ),
            ("FREQ=WEEKLY;BYMONTH=3", "RRULE: BYMONTH is not supported"),
            ("INTERVAL=2", "RRULE: FREQ is missing"),
            (
                "FREQ=DAILY;INTERVAL=2;BYDAY=MO",
                "RRULE: BYDAY with FREQ=DAILY and INTERVAL above 1 is not supported",
            ),
        ] {
            assert_eq!(event(rule), Err(message.into()), "{rule}");
        }
    }

    #[test]
    fn whole_feed_failures() {
        assert_eq!(
            parse("<html>502 Bad Gateway</html>"),
            Err(IcalError::NotCalendar { line: 1 })
        );
        assert_eq!(parse(""), Err(IcalError::NotCalendar { line: 1 }));
        let cut = "BEGIN:VCALENDAR\nBEGIN:VEVENT\nUID:a\nDTSTART:20260324T090000Z\n";
        assert_eq!(parse(cut), Err(IcalError::Truncated));
        let limits = IcalLimits {
            max_bytes: 64,
            max_events: 1,
        };
        let err = parse_ical(OUTLOOK, &berlin(), jiff::tz::db(), &limits).unwrap_err();
        assert!(matches!(err, IcalError::TooLarge { max: 64, .. }), "{err}");
        let limits = IcalLimits {
            max_events: 2,
            ..IcalLimits::default()
        };
        let err = parse_ical(OUTLOOK, &berlin(), jiff::tz::db(), &limits).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the calendar has more than 2 events (line 36); nothing was imported"
        );
    }

    #[test]
    fn a_lone_override_is_kept_as_a_single_event() {
        let text = "BEGIN:VCALENDAR\nBEGIN:VEVENT\nUID:s\nRECURRENCE-ID:20260330T080000Z\n\
                    DTSTART:20260330T120000Z\nDTEND:20260330T130000Z\nEND:VEVENT\nEND:VCALENDAR\n";
        let feed = parse(text).unwrap();
        assert_eq!(feed.errors, []);
        assert_eq!(feed.events[0].recurrence_id, Some(date(2026, 3, 30)));
    }

    #[test]
    fn durations_and_escapes() {
        assert_eq!(
            parse_duration("PT1H30M"),
            Some(Length::exact(SignedDuration::from_mins(90)))
        );
        assert_eq!(
            parse_duration("P1DT2H"),
            Some(Length {
                days: 1,
                exact: SignedDuration::from_hours(2)
            })
        );
        assert_eq!(parse_duration("P2W"), Some(Length::days(14)));
        for bad in [
            "",
            "P",
            "PT",
            "P1H",
            "PT1D",
            "-PT1H",
            "PT99999999999999999999H",
            "P1.5D",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
        assert_eq!(unescape(r"a\,b\;c\\d\Ne\"), "a,b;c\\d\ne\\");
        assert!(ContentLine::parse(":value").is_none());
        assert!(ContentLine::parse("NAME;P=\"unterminated:x").is_none());
        let line = ContentLine::parse("attendee;cn=\"a;b:c\";role=chair:mailto:x@y").unwrap();
        assert_eq!(line.name, "ATTENDEE");
        assert_eq!(line.param("CN"), Some("a;b:c"));
        assert_eq!(line.value, "mailto:x@y");
    }
}
