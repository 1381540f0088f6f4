//! The sans-IO engine: events and timeouts in, commands and outcomes out.
//!
//! In the style of quinn-proto: `handle_event(now, ev)`, `handle_timeout(now)`,
//! `poll_timeout()`, `poll()`. The engine never reads a clock or touches a device; the
//! gateway's main loop feeds it and carries its commands to the drivers.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt;

use crate::model::{
    Action, AirMetric, Booking, BookingId, Occupancy, Presenter, RoomConfig, RoomId, RoomKind,
    RoomState,
};
use crate::room::{Room, RoomView};
use crate::time::{Span, Timestamp};

/// An input to the engine.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A booking was created or changed (from the hub, or locally from a door panel).
    BookingUpserted(Booking),
    /// A booking was cancelled.
    BookingCancelled { room: RoomId, booking: BookingId },
    /// The room's presence sensors changed (or became unavailable: `Unknown`).
    Occupancy { room: RoomId, occupancy: Occupancy },
    /// Someone checked in at the room (reader, panel, API). `booking` names the booking when
    /// the caller knows it (a restart restoring a stored check-in); else the room's current or
    /// next booking in its check-in window is meant.
    CheckIn {
        room: RoomId,
        method: CheckInMethod,
        booking: Option<BookingId>,
    },
    /// Someone asked for a scene by name.
    RunScene {
        room: RoomId,
        scene: String,
        by: String,
    },
    /// Extend the running meeting to `until` (never into the next booking).
    Extend {
        room: RoomId,
        until: Timestamp,
        by: String,
    },
    /// End the running meeting now.
    EndNow { room: RoomId, by: String },
    /// A card or QR code at the room's reader, resolved by the gateway's directory.
    Credential { room: RoomId, presenter: Presenter },
    /// An air-quality reading (`None`: the sensor is unavailable).
    AirQuality {
        room: RoomId,
        metric: AirMetric,
        value: Option<f32>,
    },
}

/// How a check-in happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckInMethod {
    /// Button or PIN on the door panel.
    Panel,
    /// Card or QR at the room's reader.
    Card,
    /// Presence in the check-in window, where the policy allows it.
    Presence,
    /// The local API or the hub.
    Remote,
}

impl fmt::Display for CheckInMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CheckInMethod::Panel => "door panel",
            CheckInMethod::Card => "card",
            CheckInMethod::Presence => "presence",
            CheckInMethod::Remote => "remote",
        })
    }
}

/// Why a booking was released before its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseCause {
    NoShow,
    Vacancy,
}

/// Why the engine did something. Structured so the gateway can render times in the site's
/// time zone; `Display` renders them in UTC.
#[derive(Debug, Clone, PartialEq)]
pub enum Reason {
    HvacPrepare {
        start: Timestamp,
        lead: Span,
    },
    MeetingPrepare {
        start: Timestamp,
        lead: Span,
    },
    MeetingStart {
        start: Timestamp,
    },
    CheckedIn {
        method: CheckInMethod,
    },
    NoMeetingToCheckIn,
    NoShow {
        deadline: Timestamp,
        grace: Span,
    },
    VacancyStepDown {
        since: Timestamp,
        after: Span,
    },
    VacancyRelease {
        since: Timestamp,
        after: Span,
    },
    VacancyOff {
        since: Timestamp,
        after: Span,
    },
    PresenceBack,
    MeetingEnd {
        end: Timestamp,
    },
    BackToBack {
        next_start: Timestamp,
    },
    StillOccupiedAtEnd {
        end: Timestamp,
    },
    Cancelled,
    WalkIn,
    BookingTakesOver {
        start: Timestamp,
    },
    Manual {
        scene: String,
        by: String,
    },
    State {
        state: RoomState,
    },
    Extended {
        until: Timestamp,
        by: String,
    },
    ExtendedToNext {
        until: Timestamp,
        by: String,
    },
    NextBookingAt {
        next_start: Timestamp,
    },
    NotAfterEnd {
        end: Timestamp,
    },
    NoRunningMeeting,
    EndedEarly {
        by: String,
    },
    AccessAttendee {
        who: String,
    },
    AccessStaff {
        who: String,
        group: String,
    },
    AccessWalkIn {
        who: String,
    },
    AccessNotInvited {
        who: String,
    },
    AccessNoMeeting {
        who: String,
    },
    Relock {
        after: Span,
    },
    AirHigh {
        metric: AirMetric,
        value: f32,
        limit: f32,
    },
    AirBack {
        metric: AirMetric,
        value: f32,
        limit: f32,
    },
    SensorUnavailable,
    SensorRestored,
    OverrideHold {
        until: Timestamp,
    },
    OverrideExpired,
    Usage,
    /// The room's settings changed while the gateway ran (a site file reload).
    Reconfigured,
}

impl Reason {
    /// Renders the reason with times formatted by `clock` (the site's time zone).
    pub fn render_with(&self, clock: &dyn Fn(Timestamp) -> String) -> String {
        match self {
            Reason::HvacPrepare { start, lead } => {
                format!(
                    "pre-conditioning for the meeting at {} ({lead} ahead)",
                    clock(*start)
                )
            }
            Reason::MeetingPrepare { start, lead } => {
                format!("meeting at {} ({lead} ahead)", clock(*start))
            }
            Reason::MeetingStart { start } => format!("meeting started at {}", clock(*start)),
            Reason::CheckedIn { method } => format!("checked in by {method}"),
            Reason::NoMeetingToCheckIn => "no meeting to check in to right now".to_owned(),
            Reason::NoShow { deadline, grace } => {
                format!("no check-in by {} (policy: {grace})", clock(*deadline))
            }
            Reason::VacancyStepDown { since, after } => format!(
                "nobody seen since {}: lights step down after {after}",
                clock(*since)
            ),
            Reason::VacancyRelease { since, after } => {
                format!("nobody seen since {} (policy: {after})", clock(*since))
            }
            Reason::VacancyOff { since, after } => format!(
                "room empty since {}: everything off after {after}",
                clock(*since)
            ),
            Reason::PresenceBack => "presence again: lights restored".to_owned(),
            Reason::MeetingEnd { end } => format!("meeting ended at {}", clock(*end)),
            Reason::BackToBack { next_start } => format!(
                "next meeting at {} follows: the room stays as it is",
                clock(*next_start)
            ),
            Reason::StillOccupiedAtEnd { end } => format!(
                "meeting ended at {} with people still in the room: devices stay on until it is empty",
                clock(*end)
            ),
            Reason::Cancelled => "booking cancelled".to_owned(),
            Reason::WalkIn => "presence in an instant-use room".to_owned(),
            Reason::BookingTakesOver { start } => {
                format!("a booking starts at {}", clock(*start))
            }
            Reason::Manual { scene, by } => format!("scene '{scene}' run by {by}"),
            Reason::State { state } => format!("room is {state}"),
            Reason::Extended { until, by } => format!("extended to {} by {by}", clock(*until)),
            Reason::ExtendedToNext { until, by } => format!(
                "extended by {by} to {}, where the next meeting starts",
                clock(*until)
            ),
            Reason::NextBookingAt { next_start } => format!(
                "cannot extend: the next meeting starts at {}",
                clock(*next_start)
            ),
            Reason::NotAfterEnd { end } => {
                format!("cannot extend: the meeting already ends at {}", clock(*end))
            }
            Reason::NoRunningMeeting => "no meeting is running".to_owned(),
            Reason::EndedEarly { by } => format!("ended early by {by}"),
            Reason::AccessAttendee { who } => format!("{who} is invited to this meeting"),
            Reason::AccessStaff { who, group } => format!("{who} is staff ({group})"),
            Reason::AccessWalkIn { who } => format!("{who} may use this instant-use room"),
            Reason::AccessNotInvited { who } => format!("{who} is not invited to this meeting"),
            Reason::AccessNoMeeting { who } => {
                format!("no meeting now or soon that {who} could attend")
            }
            Reason::Relock { after } => format!("relocked after {after}"),
            Reason::AirHigh {
                metric,
                value,
                limit,
            } => format!("{metric} {value} above {limit}"),
            Reason::AirBack {
                metric,
                value,
                limit,
            } => format!("{metric} {value} back below {limit}"),
            Reason::SensorUnavailable => {
                "presence sensor unavailable: vacancy release suspended until it is back".to_owned()
            }
            Reason::SensorRestored => "presence sensor back".to_owned(),
            Reason::OverrideHold { until } => {
                format!("manual control: automation holds until {}", clock(*until))
            }
            Reason::OverrideExpired => "manual hold over: automation resumes".to_owned(),
            Reason::Usage => "usage of the booking".to_owned(),
            Reason::Reconfigured => "the room's settings changed".to_owned(),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render_with(&|t: Timestamp| t.utc_hh_mm()))
    }
}

/// A command for one room capability, with its reason.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    pub at: Timestamp,
    pub room: RoomId,
    pub action: Action,
    pub reason: Reason,
}

/// What happened to a booking or a room, for the activity log and the hub.
#[derive(Debug, Clone, PartialEq)]
pub enum OutcomeKind {
    MeetingStarted,
    CheckedIn(CheckInMethod),
    CheckInRefused,
    Released(ReleaseCause),
    Ended,
    Cancelled,
    WalkInStarted,
    WalkInEnded,
    /// The booking now ends at this time (the gateway stores it and tells the hub).
    Extended {
        until: Timestamp,
    },
    ExtendRefused,
    AccessGranted,
    AccessDenied,
    /// A no-show by this organizer, for the hub's blacklist policy.
    NoShowStrike {
        organizer: String,
    },
    SensorUnavailable,
    SensorRestored,
    OverrideStarted {
        until: Timestamp,
    },
    OverrideEnded,
    /// The facts of a finished booking, for the hub's statistics.
    Usage(UsageFacts),
}

/// What a booking actually used, reported when it finishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageFacts {
    pub organizer: String,
    pub scheduled_start: Timestamp,
    pub scheduled_end: Timestamp,
    /// Check-in, or the first presence where no check-in is needed; `None` if nobody came.
    pub actual_start: Option<Timestamp>,
    pub actual_end: Timestamp,
    pub release: Option<ReleaseCause>,
    /// Time with presence in the room while the booking ran.
    pub occupied: Span,
    /// Time the booking kept devices on (from preparation to its end).
    pub devices_on: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub at: Timestamp,
    pub room: RoomId,
    pub booking: Option<BookingId>,
    pub kind: OutcomeKind,
    pub reason: Reason,
}

/// Everything the engine emits, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Command(Command),
    Outcome(Outcome),
    /// The door-sign state of a room changed.
    State {
        at: Timestamp,
        room: RoomId,
        state: RoomState,
    },
}

/// An event the engine refused; nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("unknown room '{0}'")]
    UnknownRoom(RoomId),
    #[error("room '{room}' has no scene named '{scene}'")]
    UnknownScene { room: RoomId, scene: String },
    #[error("room '{0}' is closed: it takes no bookings, check-ins or scenes")]
    RoomClosed(RoomId),
    #[error("booking '{0}' ends before it starts")]
    BookingEndsBeforeStart(BookingId),
    #[error("room '{0}' is declared twice")]
    DuplicateRoom(RoomId),
}

/// The automation engine of a floor.
#[derive(Debug)]
pub struct Engine {
    rooms: Vec<Room>,
    by_id: HashMap<RoomId, usize>,
    timers: BTreeSet<(Timestamp, usize)>,
    wake: Vec<Option<Timestamp>>,
    out: VecDeque<Output>,
}

impl Engine {
    /// Builds an engine for these rooms. Every room is evaluated at the first `handle_timeout`.
    pub fn new(rooms: Vec<RoomConfig>) -> Result<Engine, EngineError> {
        let mut by_id = HashMap::new();
        for (i, r) in rooms.iter().enumerate() {
            if by_id.insert(r.id.clone(), i).is_some() {
                return Err(EngineError::DuplicateRoom(r.id.clone()));
            }
        }
        let n = rooms.len();
        let first = Timestamp::from_millis(i64::MIN);
        Ok(Engine {
            rooms: rooms.into_iter().map(Room::new).collect(),
            by_id,
            timers: (0..n).map(|i| (first, i)).collect(),
            wake: vec![Some(first); n],
            out: VecDeque::new(),
        })
    }

    fn index(&self, room: &RoomId) -> Result<usize, EngineError> {
        self.by_id
            .get(room)
            .copied()
            .ok_or_else(|| EngineError::UnknownRoom(room.clone()))
    }

    /// Feeds one event. On error nothing changed.
    pub fn handle_event(&mut self, now: Timestamp, event: Event) -> Result<(), EngineError> {
        let idx = match &event {
            Event::BookingUpserted(b) => self.index(&b.room)?,
            Event::BookingCancelled { room, .. }
            | Event::Occupancy { room, .. }
            | Event::CheckIn { room, .. }
            | Event::RunScene { room, .. }
            | Event::Extend { room, .. }
            | Event::EndNow { room, .. }
            | Event::Credential { room, .. }
            | Event::AirQuality { room, .. } => self.index(room)?,
        };
        self.rooms[idx].apply(now, event, &mut self.out)?;
        self.reschedule(idx, now);
        Ok(())
    }

    /// Loads a booking as it was before a restart, with its check-in, without evaluating the
    /// room: the room is evaluated at the next `handle_timeout`, with everything restored.
    pub fn restore_booking(
        &mut self,
        booking: Booking,
        checked_in: Option<Timestamp>,
    ) -> Result<(), EngineError> {
        let idx = self.index(&booking.room)?;
        self.rooms[idx].restore(booking, checked_in)?;
        if let Some(old) = self.wake[idx].take() {
            self.timers.remove(&(old, idx));
        }
        let first = Timestamp::from_millis(i64::MIN);
        self.timers.insert((first, idx));
        self.wake[idx] = Some(first);
        Ok(())
    }

    /// Adds a room while the engine runs (a site reload). It is evaluated at the next
    /// `handle_timeout`, like every room of a new engine.
    pub fn add_room(&mut self, cfg: RoomConfig) -> Result<(), EngineError> {
        if self.by_id.contains_key(&cfg.id) {
            return Err(EngineError::DuplicateRoom(cfg.id));
        }
        let idx = self.rooms.len();
        self.by_id.insert(cfg.id.clone(), idx);
        self.rooms.push(Room::new(cfg));
        let first = Timestamp::from_millis(i64::MIN);
        self.timers.insert((first, idx));
        self.wake.push(Some(first));
        Ok(())
    }

    /// Removes a room (a site reload). The engine does not refuse: the site file is the
    /// authority on which rooms exist. It hands back the room's unfinished bookings (running
    /// or to come) so the caller can keep and report them; nothing is sent to the room's
    /// devices (its bindings are gone with it), and outputs already queued for it stay queued.
    pub fn remove_room(&mut self, room: &RoomId) -> Result<Vec<Booking>, EngineError> {
        let idx = self.index(room)?;
        let removed = self.rooms.remove(idx);
        self.wake.remove(idx);
        // Indices above the removed room move down by one.
        self.timers = (self.timers.iter())
            .filter(|(_, i)| *i != idx)
            .map(|&(t, i)| (t, if i > idx { i - 1 } else { i }))
            .collect();
        self.by_id = (self.rooms.iter().enumerate())
            .map(|(i, r)| (r.id().clone(), i))
            .collect();
        Ok(removed.unfinished())
    }

    /// Swaps a room's configuration, keeping its bookings, check-ins and occupancy, and
    /// re-derives its phase at `now` under the new rules (see the room's `reconfigure`: a
    /// changed scene is run again where the room's current use needs it; a shorter no-show
    /// window applies at once). The room's id must stay the same.
    pub fn reconfigure_room(&mut self, now: Timestamp, cfg: RoomConfig) -> Result<(), EngineError> {
        let idx = self.index(&cfg.id)?;
        self.rooms[idx].reconfigure(now, cfg, &mut self.out);
        self.reschedule(idx, now);
        Ok(())
    }

    /// Runs every room whose timer is due at `now`.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        while let Some(&(t, idx)) = self.timers.first() {
            if t > now {
                break;
            }
            self.timers.pop_first();
            self.wake[idx] = None;
            self.rooms[idx].evaluate(now, &mut self.out);
            self.reschedule(idx, now);
        }
    }

    /// When the engine next needs `handle_timeout`, if ever. A new engine answers the
    /// earliest possible instant: it wants its first `handle_timeout` right away.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.timers.first().map(|(t, _)| *t)
    }

    /// The next output, in the order the engine produced them.
    pub fn poll(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// A read-only view of one room, for APIs and door panels.
    pub fn room(&self, room: &RoomId) -> Option<RoomView<'_>> {
        self.by_id.get(room).map(|&i| self.rooms[i].view())
    }

    /// Every room's view, in configuration order.
    pub fn rooms(&self) -> impl Iterator<Item = RoomView<'_>> {
        self.rooms.iter().map(Room::view)
    }

    /// Approximate memory the engine holds per room, in bytes (rooms' state, bookings and
    /// timers; scenes shared between rooms are not counted per room).
    pub fn bytes_per_room(&self) -> usize {
        if self.rooms.is_empty() {
            return 0;
        }
        let rooms: usize = self.rooms.iter().map(Room::footprint).sum();
        let index = self.by_id.capacity() * (std::mem::size_of::<(RoomId, usize)>() + 8);
        let timers = self.timers.len() * (std::mem::size_of::<(Timestamp, usize)>() + 16);
        (rooms + index + timers + self.wake.capacity() * 16) / self.rooms.len()
    }

    /// Whether a room accepts bookings at all.
    pub fn is_bookable(&self, room: &RoomId) -> bool {
        self.by_id
            .get(room)
            .is_some_and(|&i| self.rooms[i].kind() != RoomKind::Closed)
    }

    fn reschedule(&mut self, idx: usize, now: Timestamp) {
        if let Some(old) = self.wake[idx].take() {
            self.timers.remove(&(old, idx));
        }
        if let Some(t) = self.rooms[idx].next_wake(now) {
            self.timers.insert((t, idx));
            self.wake[idx] = Some(t);
        }
    }
}
