//! The hub's booking logic: room calendars, recurring series, iCalendar import, no-show blacklist.
//!
//! Everything here is pure: no I/O, no clock, no async. Time is an argument (`now`), and the time
//! zone database is handed in by the caller (`jiff::tz::db()` in the hub, the same in tests).
//!
//! # Rules
//!
//! * **Times** are [`jiff::Timestamp`]s (UTC instants); a booking covers the half-open interval
//!   `[start, end)`, so a meeting ending at 10:00 and the next starting at 10:00 do not conflict.
//!   The wire carries the same instants as milliseconds (`Timestamp::as_millisecond`).
//! * **Which bookings block a room**: `active` ones, and `ended` ones for the time they really ran.
//!   `cancelled` and `released` bookings never block.
//! * **Validation** ([`BookingRules`]): the end is after the start, a booking lasts at most 24 h,
//!   and a booking wholly in the past (`end <= now`) is refused. A booking that already started
//!   (a walk-in, an extension of the running meeting) is allowed.
//! * **Recurring series** ([`Series`]) repeat daily or weekly on chosen weekdays, every `interval`
//!   days or weeks, for `count` occurrences or `until` an instant, minus excluded dates, with
//!   per-occurrence time overrides. An occurrence is named by its original *local date*.
//! * **iCalendar** ([`parse_ical`]) reads the RFC 5545 subset a room calendar export uses; each
//!   malformed event is reported with its line and skipped. [`expand_feed`] and [`diff`] turn a
//!   feed into booking changes with stable ids, so re-importing a feed updates, never duplicates.
//! * **No-shows** ([`Blacklist`]): N no-shows within M days block new bookings for K days.
//!
//! # Daylight saving time
//!
//! Occurrences are computed on the *civil* (wall-clock) time of the series' zone: a weekly 09:00
//! meeting in Europe/Berlin is at 09:00 local before and after the switch, so its UTC instant
//! moves by an hour. When a civil time does not exist or exists twice, RFC 5545 §3.3.5 decides,
//! which is jiff's "compatible" disambiguation:
//!
//! * **gap** (spring forward, e.g. 02:30 on 2026-03-29 in Berlin): the time is read with the
//!   offset *before* the gap, so the occurrence moves *forward* by the gap's length (03:30 CEST);
//! * **fold** (autumn back, e.g. 02:30 on 2026-10-25 in Berlin): the *first* of the two instants
//!   is taken (02:30 CEST, not 02:30 CET).
//!
//! An occurrence keeps the series' *exact* length (RFC 5545 §3.8.5.3), so a one-hour meeting
//! stays one hour even when the clock changes during it; all-day events last whole local days
//! (23 or 25 hours on a switch day).

mod blacklist;
mod booking;
mod ical;
mod import;
mod series;

pub use blacklist::{Blacklist, Block};
pub use booking::{
    Booking, BookingError, BookingId, BookingRequest, BookingRules, BookingState, BookingUpdate,
    Calendar, Conflict, Hours,
};
pub use ical::{
    Feed, IcalError, IcalEvent, IcalLimits, IcalTime, LineError, LineErrorKind, parse_ical,
};
pub use import::{Expansion, ImportChange, booking_id_for, diff, expand_feed};
pub use series::{
    Frequency, Length, Occurrence, OccurrenceConflict, Recurrence, Series, SeriesEnd, SeriesError,
    SeriesId, SeriesLimits, Slot,
};

use jiff::Timestamp;

/// A half-open span of time `[start, end)`: which bookings or occurrences to look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: Timestamp,
    pub end: Timestamp,
}

impl Window {
    /// The window `[start, end)`.
    pub fn new(start: Timestamp, end: Timestamp) -> Self {
        Self { start, end }
    }

    /// The next `days` days from `now` (24-hour days): the hub's sync horizon is 14.
    pub fn days_from(now: Timestamp, days: i64) -> Self {
        // Beyond ±4 million days is beyond the supported range anyway.
        let hours = days.clamp(-4_000_000, 4_000_000) * 24;
        let end = now
            .checked_add(jiff::SignedDuration::from_hours(hours))
            .unwrap_or(if days < 0 {
                Timestamp::MIN
            } else {
                Timestamp::MAX
            });
        Self { start: now, end }
    }

    /// Whether `[start, end)` overlaps this window.
    pub fn overlaps(&self, start: Timestamp, end: Timestamp) -> bool {
        start < self.end && end > self.start
    }
}
