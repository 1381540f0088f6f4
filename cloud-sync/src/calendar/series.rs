//! Recurring series: daily or weekly rules expanded on the site's wall clock, with exceptions.
//!
//! A series starts at a civil date-time in its zone (`first`) and repeats by a [`Recurrence`].
//! Each occurrence is named by its original local date (a daily or weekly rule has at most one
//! occurrence a day), which is also how exceptions address it: an excluded date drops the
//! occurrence, an override moves it to another slot. `count` counts every occurrence the rule
//! generates, excluded ones included, as RFC 5545 §3.8.5.3 does for `COUNT` and `EXDATE`.
//!
//! The first occurrence is the first day on or after `first`'s date that the rule allows (if a
//! weekly rule's weekdays do not include `first`'s weekday, the series begins on the next one).
//! An override for a date the rule does not generate is ignored. See the module docs of
//! `calendar` for the daylight-saving rules.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use jiff::civil::{Date, DateTime, Weekday};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Span, Timestamp, Zoned};
use thiserror::Error;

use super::Window;
use super::booking::{Booking, BookingError, BookingId, BookingState, Calendar, Conflict};

/// A series' identity; its occurrences' booking ids are `{series}@{local date}`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeriesId(pub String);

impl fmt::Display for SeriesId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for SeriesId {
    fn from(id: &str) -> Self {
        Self(id.to_owned())
    }
}

/// A slot of time `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub start: Timestamp,
    pub end: Timestamp,
}

/// How long each occurrence lasts: whole local days (all-day events) plus an exact duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Length {
    /// Civil days: 23 or 25 hours across a daylight-saving switch.
    pub days: i32,
    /// Exact time, the same in every occurrence.
    pub exact: SignedDuration,
}

impl Length {
    /// An exact length (a one-hour meeting is one hour, whatever the clocks do).
    pub fn exact(duration: SignedDuration) -> Self {
        Self {
            days: 0,
            exact: duration,
        }
    }

    /// Whole local days.
    pub fn days(days: i32) -> Self {
        Self {
            days,
            exact: SignedDuration::ZERO,
        }
    }

    /// The length counting a day as 24 hours: what the limits are checked against.
    pub fn nominal(&self) -> SignedDuration {
        SignedDuration::from_hours(i64::from(self.days) * 24).saturating_add(self.exact)
    }

    /// The end of an occurrence starting at `start`.
    pub fn after(&self, start: &Zoned) -> Result<Zoned, jiff::Error> {
        start
            .checked_add(Span::new().try_days(self.days)?)?
            .checked_add(self.exact)
    }
}

/// How often a series repeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frequency {
    /// Every `interval` days.
    Daily,
    /// On these weekdays, every `interval` weeks; weeks begin on `week_start` (Monday unless an
    /// iCalendar `WKST` says otherwise; it matters only when `interval > 1`).
    Weekly {
        days: Vec<Weekday>,
        week_start: Weekday,
    },
}

/// When a series stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeriesEnd {
    /// After this many occurrences (excluded ones count).
    Count(u32),
    /// With the last occurrence starting at or before this instant.
    Until(Timestamp),
    /// Never: only a window of it can be expanded.
    Never,
}

/// The repetition rule of a series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recurrence {
    pub frequency: Frequency,
    /// Every `interval` days or weeks (at least 1).
    pub interval: u32,
    pub end: SeriesEnd,
}

/// A recurring booking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Series {
    pub id: SeriesId,
    /// The zone the wall-clock time is kept in: the site's zone, or an imported event's own.
    pub zone: TimeZone,
    /// The local start of the first occurrence.
    pub first: DateTime,
    pub length: Length,
    pub recurrence: Recurrence,
    /// Local dates whose occurrence is dropped.
    pub excluded: BTreeSet<Date>,
    /// Occurrences (by original local date) moved to another slot.
    pub overrides: BTreeMap<Date, Slot>,
    pub subject: String,
    pub organizer: String,
    pub attendees: Vec<String>,
}

/// Bounds on how much a series may expand to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeriesLimits {
    /// The most occurrences one expansion may produce, and the largest `count` (default 1,000).
    pub max_occurrences: usize,
}

impl Default for SeriesLimits {
    fn default() -> Self {
        Self {
            max_occurrences: 1_000,
        }
    }
}

/// One occurrence of a series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Occurrence {
    /// The original local date: the occurrence's name.
    pub date: Date,
    pub start: Timestamp,
    pub end: Timestamp,
    /// Whether an override moved it.
    pub overridden: bool,
}

/// An occurrence of a new series that cannot be booked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OccurrenceConflict {
    pub date: Date,
    pub start: Timestamp,
    pub end: Timestamp,
    pub conflict: Conflict,
}

impl fmt::Display for OccurrenceConflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.date, self.conflict)
    }
}

/// Why a series was refused or could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SeriesError {
    #[error("the repeat interval must be at least 1")]
    ZeroInterval,
    #[error("a weekly series needs at least one weekday")]
    NoWeekdays,
    #[error("a series needs at least one occurrence (count is 0)")]
    ZeroCount,
    #[error("the series ends before its first occurrence ({until} is before {first})")]
    UntilBeforeStart { until: Timestamp, first: DateTime },
    #[error(
        "each occurrence must last more than zero and at most {max} minutes (it lasts {length} minutes)"
    )]
    BadLength { length: i64, max: i64 },
    #[error("the series has more than {max} occurrences; shorten it or use a smaller window")]
    TooManyOccurrences { max: usize },
    #[error("the series' times are outside the supported calendar range: {0}")]
    OutOfRange(String),
    #[error("occurrence {date}: {error}")]
    Occurrence { date: Date, error: BookingError },
    #[error("{} occurrence(s) conflict with other bookings: {}", .0.len(), list(.0))]
    Conflicts(Vec<OccurrenceConflict>),
}

fn list(conflicts: &[OccurrenceConflict]) -> String {
    conflicts
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

fn out_of_range(error: jiff::Error) -> SeriesError {
    SeriesError::OutOfRange(error.to_string())
}

fn add_days(date: Date, days: i64) -> Option<Date> {
    date.checked_add(Span::new().try_days(days).ok()?).ok()
}

impl Series {
    /// The booking id of the occurrence originally on `date`.
    pub fn occurrence_id(&self, date: Date) -> BookingId {
        BookingId(format!("{}@{date}", self.id))
    }

    /// Checks the rule itself: interval, weekdays, count, until, length.
    pub fn validate(
        &self,
        max_length: SignedDuration,
        limits: &SeriesLimits,
    ) -> Result<(), SeriesError> {
        let rule = &self.recurrence;
        if rule.interval == 0 {
            return Err(SeriesError::ZeroInterval);
        }
        if matches!(&rule.frequency, Frequency::Weekly { days, .. } if days.is_empty()) {
            return Err(SeriesError::NoWeekdays);
        }
        match rule.end {
            SeriesEnd::Count(0) => return Err(SeriesError::ZeroCount),
            SeriesEnd::Count(n)
                if usize::try_from(n).unwrap_or(usize::MAX) > limits.max_occurrences =>
            {
                return Err(SeriesError::TooManyOccurrences {
                    max: limits.max_occurrences,
                });
            }
            SeriesEnd::Until(until) => {
                let first = self.local_start(self.first).map_err(out_of_range)?;
                if until < first.timestamp() {
                    return Err(SeriesError::UntilBeforeStart {
                        until,
                        first: self.first,
                    });
                }
            }
            _ => {}
        }
        let length = self.length.nominal();
        // Counted with 24-hour days: an all-day series fits the default 24 h even though its
        // occurrence on a clock-change day lasts 23 or 25 hours.
        if length <= SignedDuration::ZERO || length > max_length {
            return Err(SeriesError::BadLength {
                length: length.as_secs() / 60,
                max: max_length.as_secs() / 60,
            });
        }
        Ok(())
    }

    /// The occurrences that overlap `window`, in order, exceptions applied.
    ///
    /// Fails when the rule is invalid or more than `limits.max_occurrences` occurrences fall in
    /// the window.
    pub fn occurrences(
        &self,
        window: Window,
        limits: &SeriesLimits,
    ) -> Result<Vec<Occurrence>, SeriesError> {
        let rule = &self.recurrence;
        if rule.interval == 0 {
            return Err(SeriesError::ZeroInterval);
        }
        let margin = i64::from(self.length.days.max(0)) + self.length.exact.as_hours() / 24 + 2;
        let window_first = window.start.to_zoned(self.zone.clone()).date();
        let window_last = window.end.to_zoned(self.zone.clone()).date();
        let mut lo = add_days(window_first, -margin).unwrap_or(Date::MIN);
        let mut hi = add_days(window_last, 2).unwrap_or(Date::MAX);
        if let Some((&first_override, _)) = self.overrides.first_key_value() {
            lo = lo.min(first_override);
        }
        if let Some((&last_override, _)) = self.overrides.last_key_value() {
            hi = hi.max(last_override);
        }
        // Jump to the period before the window (and its first override) instead of walking
        // there; `count` still counts from the first occurrence (`RuleDates::skipped`).
        let dates = RuleDates::new(&self.first.date(), rule, lo)?;
        let skipped = dates.skipped;
        let mut found = Vec::new();
        for (index, date) in dates.enumerate() {
            let n = skipped.saturating_add(u64::try_from(index).unwrap_or(u64::MAX));
            if matches!(rule.end, SeriesEnd::Count(count) if n >= u64::from(count)) || date > hi {
                break;
            }
            let start = self
                .local_start(date.to_datetime(self.first.time()))
                .map_err(out_of_range)?;
            if matches!(rule.end, SeriesEnd::Until(until) if start.timestamp() > until) {
                break;
            }
            if self.excluded.contains(&date) {
                continue;
            }
            let occurrence = match self.overrides.get(&date) {
                Some(slot) => Occurrence {
                    date,
                    start: slot.start,
                    end: slot.end,
                    overridden: true,
                },
                None => Occurrence {
                    date,
                    start: start.timestamp(),
                    end: self.length.after(&start).map_err(out_of_range)?.timestamp(),
                    overridden: false,
                },
            };
            if window.overlaps(occurrence.start, occurrence.end) {
                if found.len() >= limits.max_occurrences {
                    return Err(SeriesError::TooManyOccurrences {
                        max: limits.max_occurrences,
                    });
                }
                found.push(occurrence);
            }
        }
        found.sort_by_key(|o| (o.start, o.date));
        Ok(found)
    }

    /// The instant of a local time in the series' zone: a time in a gap moves forward by the
    /// gap's length, a time in a fold takes its first instant (RFC 5545 §3.3.5).
    fn local_start(&self, local: DateTime) -> Result<Zoned, jiff::Error> {
        self.zone.to_ambiguous_zoned(local).compatible()
    }
}

/// The dates a rule generates, in order, from the period that holds `skip_to` (or the first).
struct RuleDates {
    first: Date,
    /// The first day of period 0 (the first date, or the start of its week).
    anchor: Date,
    /// Days in a period: `interval` or `7 * interval`.
    period_days: i64,
    /// Day offsets within a period, ascending.
    offsets: Vec<i64>,
    period: i64,
    next_offset: usize,
    /// How many dates the rule generated before the period it starts from.
    skipped: u64,
}

impl RuleDates {
    fn new(first: &Date, rule: &Recurrence, skip_to: Date) -> Result<Self, SeriesError> {
        let interval = i64::from(rule.interval.max(1));
        let (anchor, period_days, offsets) = match &rule.frequency {
            Frequency::Daily => (*first, interval, vec![0]),
            Frequency::Weekly { days, week_start } => {
                let back = i64::from(first.weekday().since(*week_start));
                let anchor = add_days(*first, -back).ok_or_else(|| {
                    SeriesError::OutOfRange(format!("the week of {first} starts before year -9999"))
                })?;
                let mut offsets: Vec<i64> = days
                    .iter()
                    .map(|d| i64::from(d.since(*week_start)))
                    .collect();
                offsets.sort_unstable();
                offsets.dedup();
                if offsets.is_empty() {
                    return Err(SeriesError::NoWeekdays);
                }
                (anchor, 7 * interval, offsets)
            }
        };
        let period = if skip_to > anchor {
            let days = i64::from(anchor.until(skip_to).map_err(out_of_range)?.get_days());
            days / period_days
        } else {
            0
        };
        // Period 0 holds the offsets on or after the first date; every later one all of them.
        let in_first = offsets
            .iter()
            .filter(|o| add_days(anchor, **o).is_some_and(|d| d >= *first))
            .count();
        let skipped = match u64::try_from(period) {
            Ok(0) | Err(_) => 0,
            Ok(p) => (in_first as u64).saturating_add((p - 1).saturating_mul(offsets.len() as u64)),
        };
        Ok(Self {
            first: *first,
            anchor,
            period_days,
            offsets,
            period,
            next_offset: 0,
            skipped,
        })
    }
}

impl Iterator for RuleDates {
    type Item = Date;

    fn next(&mut self) -> Option<Date> {
        loop {
            if self.next_offset >= self.offsets.len() {
                self.next_offset = 0;
                self.period = self.period.checked_add(1)?;
            }
            let offset = self.offsets.get(self.next_offset)?;
            self.next_offset += 1;
            let days = self
                .period
                .checked_mul(self.period_days)?
                .checked_add(*offset)?;
            let date = add_days(self.anchor, days)?;
            if date >= self.first {
                return Some(date);
            }
        }
    }
}

impl Calendar {
    /// Books every occurrence of `series` that overlaps `window` and is not over at `now`.
    ///
    /// All or nothing: when any occurrence conflicts (with a booking, or with another occurrence
    /// moved by an override), nothing is booked and *every* conflicting occurrence is reported.
    /// Returns the new bookings' ids in time order.
    pub fn create_series(
        &mut self,
        series: &Series,
        window: Window,
        now: Timestamp,
        limits: &SeriesLimits,
    ) -> Result<Vec<BookingId>, SeriesError> {
        series.validate(self.rules().max_length, limits)?;
        let occurrences: Vec<Occurrence> = series
            .occurrences(window, limits)?
            .into_iter()
            .filter(|o| o.end > now)
            .collect();
        let mut conflicts = Vec::new();
        for (i, o) in occurrences.iter().enumerate() {
            let id = series.occurrence_id(o.date);
            let occurrence_error = |error| SeriesError::Occurrence {
                date: o.date,
                error,
            };
            if self.get(&id).is_some() {
                return Err(occurrence_error(BookingError::DuplicateId(id)));
            }
            self.validate(o.start, o.end, now)
                .map_err(occurrence_error)?;
            let sibling = occurrences[..i]
                .iter()
                .find(|p| p.start < o.end && p.end > o.start)
                .map(|p| Conflict {
                    with: series.occurrence_id(p.date),
                    start: p.start,
                    end: p.end,
                });
            if let Some(conflict) = self.check_slot(o.start, o.end, None).err().or(sibling) {
                conflicts.push(OccurrenceConflict {
                    date: o.date,
                    start: o.start,
                    end: o.end,
                    conflict,
                });
            }
        }
        if !conflicts.is_empty() {
            return Err(SeriesError::Conflicts(conflicts));
        }
        let mut ids = Vec::with_capacity(occurrences.len());
        for o in occurrences {
            let booking = Booking {
                id: series.occurrence_id(o.date),
                room: self.room().to_owned(),
                start: o.start,
                end: o.end,
                subject: series.subject.clone(),
                organizer: series.organizer.clone(),
                attendees: series.attendees.clone(),
                state: BookingState::Active,
                series: Some(series.id.clone()),
                source_uid: None,
            };
            let id = booking.id.clone();
            self.insert(booking, now)
                .map_err(|error| SeriesError::Occurrence {
                    date: o.date,
                    error,
                })?;
            ids.push(id);
        }
        Ok(ids)
    }

    /// Cancels the occurrences of `series` that are not over at `now` ("cancel this and all
    /// following"); returns their ids. Past occurrences stay as they were.
    pub fn cancel_series(&mut self, series: &SeriesId, now: Timestamp) -> Vec<BookingId> {
        let ids: Vec<BookingId> = self
            .bookings()
            .filter(|b| {
                b.series.as_ref() == Some(series) && b.state == BookingState::Active && b.end > now
            })
            .map(|b| b.id.clone())
            .collect();
        ids.into_iter()
            .filter(|id| self.cancel(id, now).is_ok())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::BookingRequest;
    use jiff::civil::date;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn zone(name: &str) -> TimeZone {
        jiff::tz::db().get(name).unwrap()
    }

    fn series(
        zone_name: &str,
        first: DateTime,
        minutes: i64,
        frequency: Frequency,
        end: SeriesEnd,
    ) -> Series {
        Series {
            id: "s1".into(),
            zone: zone(zone_name),
            first,
            length: Length::exact(SignedDuration::from_mins(minutes)),
            recurrence: Recurrence {
                frequency,
                interval: 1,
                end,
            },
            excluded: BTreeSet::new(),
            overrides: BTreeMap::new(),
            subject: "stand-up".into(),
            organizer: "ada@example.com".into(),
            attendees: vec![],
        }
    }

    fn weekly(days: &[Weekday]) -> Frequency {
        Frequency::Weekly {
            days: days.to_vec(),
            week_start: Weekday::Monday,
        }
    }

    /// Occurrences as "local start / local end (UTC start)".
    fn show(s: &Series, window: Window) -> Vec<String> {
        s.occurrences(window, &SeriesLimits::default())
            .unwrap()
            .iter()
            .map(|o| {
                let start = o.start.to_zoned(s.zone.clone());
                let end = o.end.to_zoned(s.zone.clone());
                format!(
                    "{} {}-{} {} ({}){}",
                    start.strftime("%a %F"),
                    start.strftime("%H:%M"),
                    end.strftime("%H:%M"),
                    start.strftime("%:z"),
                    o.start.strftime("%H:%MZ"),
                    if o.overridden { " moved" } else { "" }
                )
            })
            .collect()
    }

    fn window(start: &str, end: &str) -> Window {
        Window::new(t(start), t(end))
    }

    #[test]
    fn weekly_meeting_stays_at_nine_across_berlin_spring_switch() {
        use Weekday::*;
        let s = series(
            "Europe/Berlin",
            date(2026, 3, 23).at(9, 0, 0, 0),
            60,
            weekly(&[Monday, Wednesday, Friday]),
            SeriesEnd::Never,
        );
        assert_eq!(
            show(&s, window("2026-03-20T00:00:00Z", "2026-04-04T00:00:00Z")),
            [
                "Mon 2026-03-23 09:00-10:00 +01:00 (08:00Z)",
                "Wed 2026-03-25 09:00-10:00 +01:00 (08:00Z)",
                "Fri 2026-03-27 09:00-10:00 +01:00 (08:00Z)",
                "Mon 2026-03-30 09:00-10:00 +02:00 (07:00Z)",
                "Wed 2026-04-01 09:00-10:00 +02:00 (07:00Z)",
                "Fri 2026-04-03 09:00-10:00 +02:00 (07:00Z)",
            ]
        );
    }

    #[test]
    fn weekly_meeting_stays_at_nine_across_berlin_autumn_switch() {
        let s = series(
            "Europe/Berlin",
            date(2026, 10, 19).at(9, 0, 0, 0),
            30,
            weekly(&[Weekday::Monday]),
            SeriesEnd::Count(3),
        );
        assert_eq!(
            show(&s, window("2026-10-01T00:00:00Z", "2026-12-01T00:00:00Z")),
            [
                "Mon 2026-10-19 09:00-09:30 +02:00 (07:00Z)",
                "Mon 2026-10-26 09:00-09:30 +01:00 (08:00Z)",
                "Mon 2026-11-02 09:00-09:30 +01:00 (08:00Z)",
            ]
        );
    }

    #[test]
    fn weekly_meeting_stays_at_nine_in_new_york() {
        // US switches on 2026-03-08 and 2026-11-01, weeks before and after Europe.
        let s = series(
            "America/New_York",
            date(2026, 3, 5).at(9, 0, 0, 0),
            60,
            weekly(&[Weekday::Thursday]),
            SeriesEnd::Count(2),
        );
        assert_eq!(
            show(&s, window("2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z")),
            [
                "Thu 2026-03-05 09:00-10:00 -05:00 (14:00Z)",
                "Thu 2026-03-12 09:00-10:00 -04:00 (13:00Z)",
            ]
        );
        let s = series(
            "America/New_York",
            date(2026, 10, 29).at(9, 0, 0, 0),
            60,
            weekly(&[Weekday::Thursday]),
            SeriesEnd::Count(2),
        );
        assert_eq!(
            show(&s, window("2026-10-01T00:00:00Z", "2026-12-01T00:00:00Z")),
            [
                "Thu 2026-10-29 09:00-10:00 -04:00 (13:00Z)",
                "Thu 2026-11-05 09:00-10:00 -05:00 (14:00Z)",
            ]
        );
    }

    #[test]
    fn a_time_in_the_spring_gap_moves_forward() {
        // 02:30 does not exist in Berlin on 2026-03-29: the occurrence is at 03:30 CEST.
        let s = series(
            "Europe/Berlin",
            date(2026, 3, 28).at(2, 30, 0, 0),
            60,
            Frequency::Daily,
            SeriesEnd::Count(3),
        );
        assert_eq!(
            show(&s, window("2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z")),
            [
                "Sat 2026-03-28 02:30-03:30 +01:00 (01:30Z)",
                "Sun 2026-03-29 03:30-04:30 +02:00 (01:30Z)",
                "Mon 2026-03-30 02:30-03:30 +02:00 (00:30Z)",
            ]
        );
    }

    #[test]
    fn a_time_in_the_autumn_fold_takes_the_first_instant() {
        // 02:30 happens twice in Berlin on 2026-10-25: the CEST one (00:30Z) is taken.
        let s = series(
            "Europe/Berlin",
            date(2026, 10, 24).at(2, 30, 0, 0),
            60,
            Frequency::Daily,
            SeriesEnd::Count(3),
        );
        assert_eq!(
            show(&s, window("2026-10-01T00:00:00Z", "2026-11-01T00:00:00Z")),
            [
                "Sat 2026-10-24 02:30-03:30 +02:00 (00:30Z)",
                // One exact hour later is 02:30 again, in CET.
                "Sun 2026-10-25 02:30-02:30 +02:00 (00:30Z)",
                "Mon 2026-10-26 02:30-03:30 +01:00 (01:30Z)",
            ]
        );
    }

    #[test]
    fn count_includes_excluded_dates_and_overrides_move_occurrences() {
        let mut s = series(
            "Europe/Berlin",
            date(2026, 3, 2).at(9, 0, 0, 0),
            60,
            Frequency::Daily,
            SeriesEnd::Count(4),
        );
        s.excluded.insert(date(2026, 3, 3));
        s.overrides.insert(
            date(2026, 3, 4),
            Slot {
                start: t("2026-03-04T13:00:00Z"),
                end: t("2026-03-04T13:30:00Z"),
            },
        );
        // An override of a date the rule does not produce is ignored.
        s.overrides.insert(
            date(2026, 3, 9),
            Slot {
                start: t("2026-03-09T13:00:00Z"),
                end: t("2026-03-09T13:30:00Z"),
            },
        );
        assert_eq!(
            show(&s, window("2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z")),
            [
                "Mon 2026-03-02 09:00-10:00 +01:00 (08:00Z)",
                "Wed 2026-03-04 14:00-14:30 +01:00 (13:00Z) moved",
                "Thu 2026-03-05 09:00-10:00 +01:00 (08:00Z)",
            ]
        );
    }

    #[test]
    fn until_is_inclusive_and_interval_skips_weeks() {
        let mut s = series(
            "Europe/Berlin",
            date(2026, 3, 2).at(9, 0, 0, 0),
            60,
            Frequency::Weekly {
                days: vec![Weekday::Tuesday, Weekday::Monday],
                week_start: Weekday::Monday,
            },
            SeriesEnd::Until(t("2026-03-16T08:00:00Z")),
        );
        s.recurrence.interval = 2;
        assert_eq!(
            show(&s, window("2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z")),
            [
                "Mon 2026-03-02 09:00-10:00 +01:00 (08:00Z)",
                "Tue 2026-03-03 09:00-10:00 +01:00 (08:00Z)",
                "Mon 2026-03-16 09:00-10:00 +01:00 (08:00Z)",
            ]
        );
    }

    #[test]
    fn a_window_far_from_the_start_is_expanded_without_walking_there() {
        // Every third day since 2020-01-01; 2026-03-03 is day 2253 = 3 * 751.
        let mut s = series(
            "UTC",
            date(2020, 1, 1).at(9, 0, 0, 0),
            60,
            Frequency::Daily,
            SeriesEnd::Never,
        );
        s.recurrence.interval = 3;
        assert_eq!(
            show(&s, window("2026-03-02T00:00:00Z", "2026-03-09T00:00:00Z")),
            [
                "Tue 2026-03-03 09:00-10:00 +00:00 (09:00Z)",
                "Fri 2026-03-06 09:00-10:00 +00:00 (09:00Z)",
            ]
        );
        // A weekly rule whose first day is not one of its weekdays begins on the next one.
        let s = series(
            "UTC",
            date(2026, 3, 4).at(9, 0, 0, 0),
            60,
            weekly(&[Weekday::Monday]),
            SeriesEnd::Never,
        );
        assert_eq!(
            show(&s, window("2026-03-01T00:00:00Z", "2026-03-10T00:00:00Z")),
            ["Mon 2026-03-09 09:00-10:00 +00:00 (09:00Z)"]
        );
    }

    #[test]
    fn a_window_sees_what_a_full_expansion_sees() {
        use Weekday::*;
        let mut configs = Vec::new();
        for (frequency, interval, end) in [
            (Frequency::Daily, 3, SeriesEnd::Count(300)),
            (
                Frequency::Weekly {
                    days: vec![Monday, Wednesday, Friday],
                    week_start: Sunday,
                },
                2,
                SeriesEnd::Count(200),
            ),
            (
                weekly(&[Tuesday, Sunday]),
                1,
                SeriesEnd::Until(t("2027-06-01T00:00:00Z")),
            ),
        ] {
            let mut s = series(
                "Europe/Berlin",
                date(2026, 3, 4).at(9, 0, 0, 0),
                60,
                frequency,
                end,
            );
            s.recurrence.interval = interval;
            s.excluded.insert(date(2026, 5, 4));
            configs.push(s);
        }
        let all_time = Window::new(Timestamp::MIN, Timestamp::MAX);
        for s in configs {
            let all = s.occurrences(all_time, &SeriesLimits::default()).unwrap();
            let mut start = t("2026-02-01T00:00:00Z");
            while start < t("2028-01-01T00:00:00Z") {
                let window = Window::days_from(start, 14);
                let expected: Vec<_> = all
                    .iter()
                    .copied()
                    .filter(|o| window.overlaps(o.start, o.end))
                    .collect();
                let got = s.occurrences(window, &SeriesLimits::default()).unwrap();
                assert_eq!(got, expected, "{:?} from {start}", s.recurrence);
                start = start
                    .checked_add(SignedDuration::from_hours(24 * 5))
                    .unwrap();
            }
        }
    }

    #[test]
    fn expansions_are_capped() {
        let s = series(
            "UTC",
            date(2026, 1, 1).at(9, 0, 0, 0),
            60,
            Frequency::Daily,
            SeriesEnd::Never,
        );
        let years = window("2026-01-01T00:00:00Z", "2031-01-01T00:00:00Z");
        let err = s.occurrences(years, &SeriesLimits::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the series has more than 1000 occurrences; shorten it or use a smaller window"
        );
        let all_time = Window::new(Timestamp::MIN, Timestamp::MAX);
        assert!(s.occurrences(all_time, &SeriesLimits::default()).is_err());
        let limits = SeriesLimits {
            max_occurrences: 10,
        };
        let long = series(
            "UTC",
            date(2026, 1, 1).at(9, 0, 0, 0),
            60,
            Frequency::Daily,
            SeriesEnd::Count(11),
        );
        assert_eq!(
            long.validate(SignedDuration::from_hours(24), &limits),
            Err(SeriesError::TooManyOccurrences { max: 10 })
        );
    }

    #[test]
    fn bad_rules_are_explained() {
        let max = SignedDuration::from_hours(24);
        let limits = SeriesLimits::default();
        let mut s = series(
            "UTC",
            date(2026, 3, 2).at(9, 0, 0, 0),
            60,
            weekly(&[]),
            SeriesEnd::Count(2),
        );
        assert_eq!(s.validate(max, &limits), Err(SeriesError::NoWeekdays));
        s.recurrence.frequency = Frequency::Daily;
        s.recurrence.interval = 0;
        assert_eq!(s.validate(max, &limits), Err(SeriesError::ZeroInterval));
        s.recurrence.interval = 1;
        s.recurrence.end = SeriesEnd::Until(t("2026-03-01T00:00:00Z"));
        assert_eq!(
            s.validate(max, &limits).unwrap_err().to_string(),
            "the series ends before its first occurrence (2026-03-01T00:00:00Z is before 2026-03-02T09:00:00)"
        );
        s.recurrence.end = SeriesEnd::Never;
        s.length = Length::exact(SignedDuration::from_hours(25));
        assert_eq!(
            s.validate(max, &limits).unwrap_err().to_string(),
            "each occurrence must last more than zero and at most 1440 minutes (it lasts 1500 minutes)"
        );
    }

    #[test]
    fn creating_a_series_reports_every_conflict_and_books_nothing() {
        let now = t("2026-03-01T00:00:00Z");
        let mut cal = Calendar::new("r-101", zone("Europe/Berlin"));
        for (id, start, end) in [
            ("x", "2026-03-04T08:30:00Z", "2026-03-04T09:00:00Z"),
            ("y", "2026-03-06T07:00:00Z", "2026-03-06T08:01:00Z"),
            // Back to back with the occurrence of 2026-03-09: no conflict.
            ("z", "2026-03-09T09:00:00Z", "2026-03-09T10:00:00Z"),
        ] {
            cal.create(
                BookingRequest {
                    id: id.into(),
                    start: t(start),
                    end: t(end),
                    subject: String::new(),
                    organizer: String::new(),
                    attendees: vec![],
                },
                now,
            )
            .unwrap();
        }
        use Weekday::*;
        let s = series(
            "Europe/Berlin",
            date(2026, 3, 2).at(9, 0, 0, 0),
            60,
            weekly(&[Monday, Wednesday, Friday]),
            SeriesEnd::Count(6),
        );
        let window = Window::days_from(now, 14);
        let limits = SeriesLimits::default();
        let err = cal.create_series(&s, window, now, &limits).unwrap_err();
        assert_eq!(
            err.to_string(),
            "2 occurrence(s) conflict with other bookings: \
             2026-03-04: the room is already booked from 2026-03-04T08:30:00Z to 2026-03-04T09:00:00Z (booking x); \
             2026-03-06: the room is already booked from 2026-03-06T07:00:00Z to 2026-03-06T08:01:00Z (booking y)"
        );
        assert_eq!(cal.bookings().count(), 3);

        cal.cancel(&"x".into(), now).unwrap();
        cal.cancel(&"y".into(), now).unwrap();
        let ids = cal.create_series(&s, window, now, &limits).unwrap();
        let ids: Vec<_> = ids.iter().map(BookingId::as_str).collect();
        assert_eq!(
            ids,
            [
                "s1@2026-03-02",
                "s1@2026-03-04",
                "s1@2026-03-06",
                "s1@2026-03-09",
                "s1@2026-03-11",
                "s1@2026-03-13"
            ]
        );
        // Occurrences already over are not booked; "this and following" cancels the rest.
        let cancelled = cal.cancel_series(&"s1".into(), t("2026-03-09T12:00:00Z"));
        let cancelled: Vec<_> = cancelled.iter().map(BookingId::as_str).collect();
        assert_eq!(cancelled, ["s1@2026-03-11", "s1@2026-03-13"]);
    }

    #[test]
    fn overrides_that_collide_within_the_series_are_conflicts() {
        let now = t("2026-03-01T00:00:00Z");
        let mut cal = Calendar::new("r-101", TimeZone::UTC);
        let mut s = series(
            "UTC",
            date(2026, 3, 2).at(9, 0, 0, 0),
            60,
            Frequency::Daily,
            SeriesEnd::Count(3),
        );
        s.overrides.insert(
            date(2026, 3, 4),
            Slot {
                start: t("2026-03-03T09:30:00Z"),
                end: t("2026-03-03T10:30:00Z"),
            },
        );
        let err = cal
            .create_series(
                &s,
                Window::days_from(now, 14),
                now,
                &SeriesLimits::default(),
            )
            .unwrap_err();
        let SeriesError::Conflicts(conflicts) = err else {
            panic!("{err}")
        };
        assert_eq!(conflicts.len(), 1);
        assert_eq!(conflicts[0].date, date(2026, 3, 4));
        assert_eq!(conflicts[0].conflict.with.as_str(), "s1@2026-03-03");
    }

    #[test]
    fn an_all_day_booking_on_the_long_autumn_day_is_allowed() {
        let berlin = zone("Europe/Berlin");
        let mut cal = Calendar::new("r-101", berlin.clone());
        let mut s = series(
            "Europe/Berlin",
            date(2026, 10, 24).at(0, 0, 0, 0),
            0,
            Frequency::Daily,
            SeriesEnd::Count(3),
        );
        s.length = Length::days(1);
        let now = t("2026-10-01T00:00:00Z");
        cal.create_series(
            &s,
            Window::days_from(now, 60),
            now,
            &SeriesLimits::default(),
        )
        .unwrap();
        let hours: Vec<i64> = cal
            .bookings()
            .map(|b| b.start.duration_until(b.end).as_hours())
            .collect();
        assert_eq!(hours, [24, 25, 24]);
    }
}
