//! One room's bookings: conflict detection and validated create, change, cancel, release, end.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use thiserror::Error;

use super::series::SeriesId;

/// A booking's identity, unique across the hub (it travels down to gateways as `WireBooking.id`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BookingId(pub String);

impl BookingId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BookingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for BookingId {
    fn from(id: &str) -> Self {
        Self(id.to_owned())
    }
}

impl From<String> for BookingId {
    fn from(id: String) -> Self {
        Self(id)
    }
}

/// Where a booking is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BookingState {
    /// Booked; it blocks its slot.
    Active,
    /// Cancelled by its organizer, an admin or its calendar feed; it frees its slot.
    Cancelled,
    /// Released by the gateway (no-show, vacancy); it frees the rest of its slot.
    Released,
    /// Ended (early, by "end now" or vacancy); its end is when it really ended.
    Ended,
}

impl BookingState {
    /// Whether a booking in this state keeps others out of its slot.
    pub fn blocks(self) -> bool {
        matches!(self, Self::Active | Self::Ended)
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Cancelled => "cancelled",
            Self::Released => "released",
            Self::Ended => "ended",
        }
    }
}

impl fmt::Display for BookingState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A booking of one room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Booking {
    pub id: BookingId,
    pub room: String,
    pub start: Timestamp,
    pub end: Timestamp,
    pub subject: String,
    /// The organizer's e-mail address, lower-cased (the no-show blacklist is keyed by it).
    pub organizer: String,
    pub attendees: Vec<String>,
    pub state: BookingState,
    /// The series this booking is an occurrence of, if any.
    pub series: Option<SeriesId>,
    /// The iCalendar UID it was imported from, if any.
    pub source_uid: Option<String>,
}

/// What a caller asks for when booking a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookingRequest {
    pub id: BookingId,
    pub start: Timestamp,
    pub end: Timestamp,
    pub subject: String,
    pub organizer: String,
    pub attendees: Vec<String>,
}

/// A change to an active booking; `None` keeps the current value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BookingUpdate {
    pub start: Option<Timestamp>,
    pub end: Option<Timestamp>,
    pub subject: Option<String>,
    pub organizer: Option<String>,
    pub attendees: Option<Vec<String>>,
}

/// Limits every booking of a calendar must respect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BookingRules {
    /// The longest booking allowed (default 24 h).
    pub max_length: SignedDuration,
}

impl Default for BookingRules {
    fn default() -> Self {
        Self {
            max_length: SignedDuration::from_hours(24),
        }
    }
}

impl BookingRules {
    /// Checks a slot on its own (not against other bookings). A whole local day in `zone`
    /// (midnight to midnight) is always allowed, though it lasts 25 hours when the clocks go back.
    pub fn validate(
        &self,
        start: Timestamp,
        end: Timestamp,
        now: Timestamp,
        zone: &TimeZone,
    ) -> Result<(), BookingError> {
        if end <= start {
            return Err(BookingError::EndNotAfterStart { start, end });
        }
        let length = start.duration_until(end);
        if length > self.max_length && !is_one_local_day(start, end, zone) {
            return Err(BookingError::TooLong {
                length: Hours(length),
                max: Hours(self.max_length),
            });
        }
        if end <= now {
            return Err(BookingError::InPast { end, now });
        }
        Ok(())
    }
}

/// Whether `[start, end)` is exactly one civil day, midnight to midnight, in `zone`.
fn is_one_local_day(start: Timestamp, end: Timestamp, zone: &TimeZone) -> bool {
    let (start, end) = (start.to_zoned(zone.clone()), end.to_zoned(zone.clone()));
    let midnight = |z: &jiff::Zoned| z.time() == jiff::civil::Time::midnight();
    midnight(&start) && midnight(&end) && start.date().tomorrow().ok() == Some(end.date())
}

/// A duration shown to an admin in hours and minutes ("25 h 30 min").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hours(pub SignedDuration);

impl fmt::Display for Hours {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let minutes = self.0.as_secs() / 60;
        let (h, m) = (minutes / 60, minutes % 60);
        match (h, m) {
            (h, 0) => write!(f, "{h} h"),
            (0, m) => write!(f, "{m} min"),
            (h, m) => write!(f, "{h} h {m} min"),
        }
    }
}

/// The room is already booked for (part of) the requested time.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("the room is already booked from {start} to {end} (booking {with})")]
pub struct Conflict {
    /// The booking in the way.
    pub with: BookingId,
    pub start: Timestamp,
    pub end: Timestamp,
}

/// Why a booking was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BookingError {
    #[error("the booking must end after it starts (start {start}, end {end})")]
    EndNotAfterStart { start: Timestamp, end: Timestamp },
    #[error("the booking lasts {length}; at most {max} is allowed")]
    TooLong { length: Hours, max: Hours },
    #[error(
        "the booking is over (it ends {end}, now is {now}); past bookings cannot be made or changed"
    )]
    InPast { end: Timestamp, now: Timestamp },
    #[error(transparent)]
    Conflict(#[from] Conflict),
    #[error("there is no booking {0} in this room")]
    Unknown(BookingId),
    #[error("a booking with id {0} already exists")]
    DuplicateId(BookingId),
    #[error("booking {id} is {state}; only an active booking can be {action}")]
    NotActive {
        id: BookingId,
        state: BookingState,
        action: &'static str,
    },
}

/// The bookings of one room, with conflict detection.
///
/// Bookings are kept by id and indexed by start, so a conflict check looks only at bookings that
/// start within `max_length` before the candidate's end.
#[derive(Debug, Clone)]
pub struct Calendar {
    room: String,
    zone: TimeZone,
    rules: BookingRules,
    bookings: BTreeMap<BookingId, Booking>,
    by_start: BTreeSet<(Timestamp, BookingId)>,
}

impl Calendar {
    /// An empty calendar for `room`, in a site whose time zone is `zone`, with the default rules.
    pub fn new(room: impl Into<String>, zone: TimeZone) -> Self {
        Self::with_rules(room, zone, BookingRules::default())
    }

    /// An empty calendar for `room` in `zone` with `rules`.
    pub fn with_rules(room: impl Into<String>, zone: TimeZone, rules: BookingRules) -> Self {
        Self {
            room: room.into(),
            zone,
            rules,
            bookings: BTreeMap::new(),
            by_start: BTreeSet::new(),
        }
    }

    pub fn room(&self) -> &str {
        &self.room
    }

    pub fn rules(&self) -> &BookingRules {
        &self.rules
    }

    /// The site's time zone.
    pub fn zone(&self) -> &TimeZone {
        &self.zone
    }

    /// Checks a slot against the rules (not against other bookings).
    pub fn validate(
        &self,
        start: Timestamp,
        end: Timestamp,
        now: Timestamp,
    ) -> Result<(), BookingError> {
        self.rules.validate(start, end, now, &self.zone)
    }

    pub fn get(&self, id: &BookingId) -> Option<&Booking> {
        self.bookings.get(id)
    }

    /// Every booking, in any state, by start time.
    pub fn bookings(&self) -> impl Iterator<Item = &Booking> {
        self.by_start
            .iter()
            .filter_map(|(_, id)| self.bookings.get(id))
    }

    /// The bookings that block part of `[start, end)`, by start time.
    pub fn blocking(&self, start: Timestamp, end: Timestamp) -> impl Iterator<Item = &Booking> {
        // Every stored booking is at most `max_length` (or one 25-hour local day) long, so one
        // that overlaps `start` began no earlier than `start - max_length - 1 h`.
        let from = start
            .checked_sub(self.rules.max_length + SignedDuration::from_hours(1))
            .unwrap_or(Timestamp::MIN);
        self.by_start
            .range((from, BookingId(String::new()))..)
            .take_while(move |(s, _)| *s < end)
            .filter_map(|(_, id)| self.bookings.get(id))
            .filter(move |b| b.state.blocks() && b.start < end && b.end > start)
    }

    /// Whether `candidate` fits: the first blocking booking in its slot (other than one with the
    /// candidate's own id, so a change is checked against everything but itself).
    pub fn check(&self, candidate: &Booking) -> Result<(), Conflict> {
        self.check_slot(candidate.start, candidate.end, Some(&candidate.id))
    }

    /// Whether `[start, end)` is free, ignoring the booking `ignoring`.
    pub fn check_slot(
        &self,
        start: Timestamp,
        end: Timestamp,
        ignoring: Option<&BookingId>,
    ) -> Result<(), Conflict> {
        match self.blocking(start, end).find(|b| Some(&b.id) != ignoring) {
            Some(b) => Err(Conflict {
                with: b.id.clone(),
                start: b.start,
                end: b.end,
            }),
            None => Ok(()),
        }
    }

    /// Books the room: validates the slot, checks conflicts, stores an active booking.
    pub fn create(
        &mut self,
        request: BookingRequest,
        now: Timestamp,
    ) -> Result<&Booking, BookingError> {
        let booking = Booking {
            id: request.id,
            room: self.room.clone(),
            start: request.start,
            end: request.end,
            subject: request.subject,
            organizer: request.organizer,
            attendees: request.attendees,
            state: BookingState::Active,
            series: None,
            source_uid: None,
        };
        self.insert(booking, now)
    }

    /// Stores a prepared active booking (a series occurrence, an imported event) after the same
    /// checks as [`Calendar::create`]. Its room is set to this calendar's room.
    pub fn insert(
        &mut self,
        mut booking: Booking,
        now: Timestamp,
    ) -> Result<&Booking, BookingError> {
        if self.bookings.contains_key(&booking.id) {
            return Err(BookingError::DuplicateId(booking.id));
        }
        self.validate(booking.start, booking.end, now)?;
        self.check_slot(booking.start, booking.end, None)?;
        booking.room.clone_from(&self.room);
        booking.state = BookingState::Active;
        Ok(self.put(booking))
    }

    /// Puts a booking back as it was stored, in any state and without checks (rebuilding a
    /// calendar from storage, or recording a fact a gateway reported); it replaces a booking
    /// with the same id.
    pub fn restore(&mut self, booking: Booking) -> &Booking {
        self.take(&booking.id);
        self.put(booking)
    }

    /// Changes an active booking; the new slot is validated and checked against every other
    /// booking.
    pub fn change(
        &mut self,
        id: &BookingId,
        update: BookingUpdate,
        now: Timestamp,
    ) -> Result<&Booking, BookingError> {
        let current = self.active(id, "changed")?;
        let start = update.start.unwrap_or(current.start);
        let end = update.end.unwrap_or(current.end);
        if current.end <= now {
            return Err(BookingError::InPast {
                end: current.end,
                now,
            });
        }
        self.validate(start, end, now)?;
        self.check_slot(start, end, Some(id))?;
        let mut booking = self
            .take(id)
            .ok_or_else(|| BookingError::Unknown(id.clone()))?;
        booking.start = start;
        booking.end = end;
        if let Some(subject) = update.subject {
            booking.subject = subject;
        }
        if let Some(organizer) = update.organizer {
            booking.organizer = organizer;
        }
        if let Some(attendees) = update.attendees {
            booking.attendees = attendees;
        }
        Ok(self.put(booking))
    }

    /// Cancels a booking that is not over yet. Cancelling a cancelled booking changes nothing.
    pub fn cancel(&mut self, id: &BookingId, now: Timestamp) -> Result<&Booking, BookingError> {
        let booking = self
            .get(id)
            .ok_or_else(|| BookingError::Unknown(id.clone()))?;
        if booking.state != BookingState::Cancelled {
            let booking = self.active(id, "cancelled")?;
            if booking.end <= now {
                return Err(BookingError::InPast {
                    end: booking.end,
                    now,
                });
            }
        }
        self.set_state(id, BookingState::Cancelled, None)
    }

    /// Records a release reported by a gateway (no-show, vacancy): the slot is free again.
    pub fn release(&mut self, id: &BookingId) -> Result<&Booking, BookingError> {
        self.active(id, "released")?;
        self.set_state(id, BookingState::Released, None)
    }

    /// Records that a meeting ended at `at` (end now, vacancy); the room is free from `at`.
    pub fn end(&mut self, id: &BookingId, at: Timestamp) -> Result<&Booking, BookingError> {
        let booking = self.active(id, "ended")?;
        let end = at.clamp(booking.start, booking.end);
        self.set_state(id, BookingState::Ended, Some(end))
    }

    fn active(&self, id: &BookingId, action: &'static str) -> Result<&Booking, BookingError> {
        let booking = self
            .get(id)
            .ok_or_else(|| BookingError::Unknown(id.clone()))?;
        if booking.state != BookingState::Active {
            return Err(BookingError::NotActive {
                id: id.clone(),
                state: booking.state,
                action,
            });
        }
        Ok(booking)
    }

    fn set_state(
        &mut self,
        id: &BookingId,
        state: BookingState,
        end: Option<Timestamp>,
    ) -> Result<&Booking, BookingError> {
        let booking = self
            .bookings
            .get_mut(id)
            .ok_or_else(|| BookingError::Unknown(id.clone()))?;
        booking.state = state;
        if let Some(end) = end {
            booking.end = end;
        }
        Ok(booking)
    }

    fn take(&mut self, id: &BookingId) -> Option<Booking> {
        let booking = self.bookings.remove(id)?;
        self.by_start.remove(&(booking.start, booking.id.clone()));
        Some(booking)
    }

    fn put(&mut self, booking: Booking) -> &Booking {
        let id = booking.id.clone();
        self.by_start.insert((booking.start, id.clone()));
        self.bookings.entry(id).insert_entry(booking).into_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn req(id: &str, start: &str, end: &str) -> BookingRequest {
        BookingRequest {
            id: id.into(),
            start: t(start),
            end: t(end),
            subject: format!("meeting {id}"),
            organizer: "ada@example.com".into(),
            attendees: vec!["bob@example.com".into()],
        }
    }

    const NOW: &str = "2026-03-02T08:00:00Z";

    fn calendar() -> Calendar {
        let mut cal = Calendar::new("r-101", TimeZone::UTC);
        cal.create(
            req("a", "2026-03-02T09:00:00Z", "2026-03-02T10:00:00Z"),
            t(NOW),
        )
        .unwrap();
        cal.create(
            req("b", "2026-03-02T11:00:00Z", "2026-03-02T12:00:00Z"),
            t(NOW),
        )
        .unwrap();
        cal
    }

    #[test]
    fn back_to_back_is_not_a_conflict() {
        let mut cal = calendar();
        cal.create(
            req("c", "2026-03-02T10:00:00Z", "2026-03-02T11:00:00Z"),
            t(NOW),
        )
        .unwrap();
        let ids: Vec<_> = cal.bookings().map(|b| b.id.as_str()).collect();
        assert_eq!(ids, ["a", "c", "b"]);
        assert_eq!(cal.get(&"c".into()).unwrap().room, "r-101");
    }

    #[test]
    fn overlaps_name_the_booking_in_the_way() {
        let mut cal = calendar();
        for (start, end, with) in [
            ("2026-03-02T09:30:00Z", "2026-03-02T10:30:00Z", "a"), // overlaps the end
            ("2026-03-02T08:30:00Z", "2026-03-02T09:01:00Z", "a"), // overlaps the start
            ("2026-03-02T09:10:00Z", "2026-03-02T09:20:00Z", "a"), // inside
            ("2026-03-02T08:00:00Z", "2026-03-02T13:00:00Z", "a"), // around both: the first
            ("2026-03-02T10:30:00Z", "2026-03-02T11:01:00Z", "b"),
        ] {
            let err = cal.create(req("x", start, end), t(NOW)).unwrap_err();
            let BookingError::Conflict(conflict) = err else {
                panic!("{err}")
            };
            assert_eq!(conflict.with.as_str(), with, "{start}..{end}");
        }
        let err = cal
            .create(
                req("x", "2026-03-02T09:30:00Z", "2026-03-02T10:30:00Z"),
                t(NOW),
            )
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "the room is already booked from 2026-03-02T09:00:00Z to 2026-03-02T10:00:00Z (booking a)"
        );
    }

    #[test]
    fn a_long_booking_long_before_still_conflicts() {
        let mut cal = calendar();
        cal.create(
            req("day", "2026-03-03T00:00:00Z", "2026-03-04T00:00:00Z"),
            t(NOW),
        )
        .unwrap();
        let err = cal
            .create(
                req("x", "2026-03-03T23:00:00Z", "2026-03-04T01:00:00Z"),
                t(NOW),
            )
            .unwrap_err();
        assert!(matches!(err, BookingError::Conflict(c) if c.with.as_str() == "day"));
    }

    #[test]
    fn cancelled_and_released_bookings_do_not_block() {
        let mut cal = calendar();
        cal.cancel(&"a".into(), t(NOW)).unwrap();
        cal.release(&"b".into()).unwrap();
        cal.create(
            req("c", "2026-03-02T09:00:00Z", "2026-03-02T12:00:00Z"),
            t(NOW),
        )
        .unwrap();
        assert_eq!(cal.get(&"a".into()).unwrap().state, BookingState::Cancelled);
        assert_eq!(cal.get(&"b".into()).unwrap().state, BookingState::Released);
    }

    #[test]
    fn an_ended_meeting_frees_the_rest_of_its_slot() {
        let mut cal = calendar();
        cal.end(&"a".into(), t("2026-03-02T09:20:00Z")).unwrap();
        assert_eq!(cal.get(&"a".into()).unwrap().end, t("2026-03-02T09:20:00Z"));
        let err = cal
            .create(
                req("x", "2026-03-02T09:10:00Z", "2026-03-02T09:30:00Z"),
                t(NOW),
            )
            .unwrap_err();
        assert!(matches!(err, BookingError::Conflict(_)));
        cal.create(
            req("x", "2026-03-02T09:20:00Z", "2026-03-02T09:50:00Z"),
            t(NOW),
        )
        .unwrap();
    }

    #[test]
    fn validation_explains_itself() {
        let mut cal = calendar();
        let cases = [
            (
                req("x", "2026-03-02T15:00:00Z", "2026-03-02T15:00:00Z"),
                "the booking must end after it starts (start 2026-03-02T15:00:00Z, end 2026-03-02T15:00:00Z)",
            ),
            (
                req("x", "2026-03-02T15:00:00Z", "2026-03-03T16:30:00Z"),
                "the booking lasts 25 h 30 min; at most 24 h is allowed",
            ),
            (
                req("x", "2026-03-02T06:00:00Z", "2026-03-02T08:00:00Z"),
                "the booking is over (it ends 2026-03-02T08:00:00Z, now is 2026-03-02T08:00:00Z); past bookings cannot be made or changed",
            ),
            (
                req("a", "2026-03-02T15:00:00Z", "2026-03-02T16:00:00Z"),
                "a booking with id a already exists",
            ),
        ];
        for (request, message) in cases {
            assert_eq!(
                cal.create(request, t(NOW)).unwrap_err().to_string(),
                message
            );
        }
        // Exactly 24 h is allowed, and so is a booking that is already running.
        cal.create(
            req("day", "2026-03-05T00:00:00Z", "2026-03-06T00:00:00Z"),
            t(NOW),
        )
        .unwrap();
        cal.create(
            req("walk-in", "2026-03-02T07:50:00Z", "2026-03-02T08:30:00Z"),
            t(NOW),
        )
        .unwrap();
    }

    #[test]
    fn change_checks_against_everything_but_itself() {
        let mut cal = calendar();
        // Extending "a" into "b" is refused; moving it within its own slot is fine.
        let err = cal
            .change(
                &"a".into(),
                BookingUpdate {
                    end: Some(t("2026-03-02T11:30:00Z")),
                    ..Default::default()
                },
                t(NOW),
            )
            .unwrap_err();
        assert!(matches!(err, BookingError::Conflict(c) if c.with.as_str() == "b"));
        let changed = cal
            .change(
                &"a".into(),
                BookingUpdate {
                    start: Some(t("2026-03-02T09:30:00Z")),
                    end: Some(t("2026-03-02T11:00:00Z")),
                    subject: Some("longer".into()),
                    ..Default::default()
                },
                t(NOW),
            )
            .unwrap();
        assert_eq!(
            (changed.start, changed.subject.as_str()),
            (t("2026-03-02T09:30:00Z"), "longer")
        );
        let ids: Vec<_> = cal.bookings().map(|b| b.id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        // The old slot is free now.
        cal.create(
            req("c", "2026-03-02T09:00:00Z", "2026-03-02T09:30:00Z"),
            t(NOW),
        )
        .unwrap();
    }

    #[test]
    fn change_and_cancel_refuse_what_cannot_be_changed() {
        let mut cal = calendar();
        let late = t("2026-03-02T10:30:00Z");
        let err = cal.cancel(&"a".into(), late).unwrap_err();
        assert!(matches!(err, BookingError::InPast { .. }), "{err}");
        let err = cal
            .change(&"a".into(), BookingUpdate::default(), late)
            .unwrap_err();
        assert!(matches!(err, BookingError::InPast { .. }), "{err}");
        cal.release(&"b".into()).unwrap();
        let err = cal.cancel(&"b".into(), t(NOW)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "booking b is released; only an active booking can be cancelled"
        );
        let err = cal.cancel(&"zz".into(), t(NOW)).unwrap_err();
        assert_eq!(err.to_string(), "there is no booking zz in this room");
        // Cancelling twice is harmless.
        cal.cancel(&"a".into(), t(NOW)).unwrap();
        cal.cancel(&"a".into(), t(NOW)).unwrap();
    }

    #[test]
    fn check_ignores_the_candidates_own_id() {
        let cal = calendar();
        let mut moved = cal.get(&"a".into()).unwrap().clone();
        moved.end = t("2026-03-02T10:30:00Z");
        assert_eq!(cal.check(&moved), Ok(()));
        moved.end = t("2026-03-02T11:30:00Z");
        assert_eq!(cal.check(&moved).unwrap_err().with.as_str(), "b");
    }
}
