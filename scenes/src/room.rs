//! One room's state machine: the meeting lifecycle, access, walk-in use, air quality and
//! staged shutdown.
//!
//! The room is evaluated as a whole at each event or timer ("given everything known now,
//! what must change?"), so late timers, clock jumps and changed bookings all converge on
//! the same state. Per-booking flags make every step happen once.
//!
//! Manual scenes put the room on hold: comfort automation (restoring lights, stepping them
//! down, resuming the meeting scene) waits until the hold ends or the room's use changes;
//! safety and energy rules (lights off in an empty room, releases, the leave scene) do not.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::engine::{
    CheckInMethod, Command, EngineError, Event, Outcome, OutcomeKind, Output, Reason, ReleaseCause,
    UsageFacts,
};
use crate::model::{
    Action, AirMetric, Booking, BookingId, Occupancy, Presenter, RoomConfig, RoomId, RoomKind,
    RoomState, Scene, StatusLight, Step,
};
use crate::time::{Span, Timestamp};

#[derive(Debug, Clone)]
struct Entry {
    booking: Booking,
    hvac_prepared: bool,
    lights_prepared: bool,
    checked_in: Option<Timestamp>,
    started: bool,
    finished: bool,
    first_presence: Option<Timestamp>,
    occupied: Span,
    devices_on: Span,
    /// The booked end of a meeting ended early ("end now" moves `booking.end` to the moment it
    /// ended); usage facts report this one as the scheduled end.
    booked_end: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    Idle,
    Meeting(BookingId),
    /// The meeting ended with people still in the room; staged shutdown when they leave.
    Overtime,
    /// An instant-use room in use.
    WalkIn,
}

/// What the engine last did with the lights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lights {
    Off,
    On,
    Dimmed,
    /// Switched off by the vacancy rule; presence brings them back.
    OffForVacancy,
}

#[derive(Debug, Clone)]
struct Pending {
    due: Timestamp,
    action: Action,
    reason: Reason,
}

const AIR_METRICS: usize = 5;

fn metric_index(m: AirMetric) -> usize {
    match m {
        AirMetric::Co2Ppm => 0,
        AirMetric::Pm25 => 1,
        AirMetric::Voc => 2,
        AirMetric::TemperatureC => 3,
        AirMetric::HumidityPct => 4,
    }
}

#[derive(Debug)]
pub(crate) struct Room {
    cfg: RoomConfig,
    bookings: Vec<Entry>,
    occupancy: Occupancy,
    vacant_since: Option<Timestamp>,
    occupied_since: Option<Timestamp>,
    phase: Phase,
    lights: Lights,
    lights_on_since: Option<Timestamp>,
    /// Whether automation has something switched on (for device-on accounting).
    devices_on: bool,
    pending: VecDeque<Pending>,
    relock_at: Option<Timestamp>,
    hold_until: Option<Timestamp>,
    air_values: [Option<f32>; AIR_METRICS],
    air_active: Vec<bool>,
    sensor_warned: bool,
    /// Whether the presence sensor ever gave a reading (rooms without one stay silent).
    ever_sensed: bool,
    last_account: Option<Timestamp>,
    state: Option<RoomState>,
}

/// A booking as a door panel shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookingView<'a> {
    pub booking: &'a Booking,
    pub checked_in: bool,
}

/// A read-only view of a room.
#[derive(Debug, Clone)]
pub struct RoomView<'a> {
    pub config: &'a RoomConfig,
    pub state: RoomState,
    pub occupancy: Occupancy,
    /// The booking that is running now (started, not finished), if any.
    pub current: Option<BookingView<'a>>,
    /// The next booking that has not started.
    pub next: Option<BookingView<'a>>,
    /// Until when a manual scene holds automation, if it does.
    pub hold_until: Option<Timestamp>,
}

struct Ctx<'a> {
    now: Timestamp,
    out: &'a mut VecDeque<Output>,
}

fn same_person(a: &str, b: &str) -> bool {
    a.trim().eq_ignore_ascii_case(b.trim())
}

impl Room {
    pub(crate) fn new(cfg: RoomConfig) -> Room {
        let rules = cfg.air.len();
        Room {
            cfg,
            bookings: Vec::new(),
            occupancy: Occupancy::Unknown,
            vacant_since: None,
            occupied_since: None,
            phase: Phase::Idle,
            lights: Lights::Off,
            lights_on_since: None,
            devices_on: false,
            pending: VecDeque::new(),
            relock_at: None,
            hold_until: None,
            air_values: [None; AIR_METRICS],
            air_active: vec![false; rules],
            sensor_warned: false,
            ever_sensed: false,
            last_account: None,
            state: None,
        }
    }

    pub(crate) fn id(&self) -> &RoomId {
        &self.cfg.id
    }

    pub(crate) fn kind(&self) -> RoomKind {
        self.cfg.kind
    }

    pub(crate) fn view(&self) -> RoomView<'_> {
        fn bv(e: &Entry) -> BookingView<'_> {
            BookingView {
                booking: &e.booking,
                checked_in: e.checked_in.is_some(),
            }
        }
        let current = match &self.phase {
            Phase::Meeting(id) => self.find(id).map(|i| bv(&self.bookings[i])),
            _ => None,
        };
        let next = self
            .bookings
            .iter()
            .find(|e| !e.finished && !e.started)
            .map(bv);
        RoomView {
            config: &self.cfg,
            state: self.state.unwrap_or(RoomState::Free),
            occupancy: self.occupancy,
            current,
            next,
            hold_until: self.hold_until,
        }
    }

    /// Approximate heap and inline bytes this room holds (for the memory benchmark).
    pub(crate) fn footprint(&self) -> usize {
        let bookings: usize = self
            .bookings
            .iter()
            .map(|e| {
                std::mem::size_of::<Entry>()
                    + e.booking.subject.capacity()
                    + e.booking.organizer.capacity()
                    + e.booking
                        .attendees
                        .iter()
                        .map(|a| a.capacity() + 24)
                        .sum::<usize>()
            })
            .sum();
        std::mem::size_of::<Room>()
            + self.cfg.name.capacity()
            + self.cfg.extra_scenes.capacity() * std::mem::size_of::<Arc<Scene>>()
            + self.air_active.capacity()
            + self.pending.capacity() * std::mem::size_of::<Pending>()
            + self.bookings.capacity().saturating_sub(self.bookings.len())
                * std::mem::size_of::<Entry>()
            + bookings
    }

    fn find(&self, id: &BookingId) -> Option<usize> {
        self.bookings.iter().position(|e| &e.booking.id == id)
    }

    /// Applies one event, then re-evaluates the room.
    pub(crate) fn apply(
        &mut self,
        now: Timestamp,
        event: Event,
        out: &mut VecDeque<Output>,
    ) -> Result<(), EngineError> {
        let closed = self.cfg.kind == RoomKind::Closed;
        let room_id = self.cfg.id.clone();
        let refuse_if_closed = || {
            if closed {
                Err(EngineError::RoomClosed(room_id.clone()))
            } else {
                Ok(())
            }
        };
        self.account(now);
        let mut cx = Ctx { now, out };
        match event {
            Event::BookingUpserted(b) => {
                refuse_if_closed()?;
                if b.end <= b.start {
                    return Err(EngineError::BookingEndsBeforeStart(b.id));
                }
                self.upsert(b);
            }
            Event::BookingCancelled { booking, .. } => self.cancel(&mut cx, &booking),
            Event::Occupancy { occupancy, .. } => self.set_occupancy(now, occupancy),
            Event::CheckIn {
                method, booking, ..
            } => {
                refuse_if_closed()?;
                self.check_in(&mut cx, method, booking.as_ref());
            }
            Event::RunScene { scene, by, .. } => {
                refuse_if_closed()?;
                let Some(s) = self.cfg.scene(&scene).cloned() else {
                    return Err(EngineError::UnknownScene {
                        room: self.cfg.id.clone(),
                        scene,
                    });
                };
                let until = now + self.cfg.policy.override_hold;
                self.hold_until = Some(until);
                self.outcome(
                    &mut cx,
                    None,
                    OutcomeKind::OverrideStarted { until },
                    Reason::OverrideHold { until },
                );
                self.run_scene(&mut cx, &s, Reason::Manual { scene, by });
            }
            Event::Extend { until, by, .. } => {
                refuse_if_closed()?;
                self.extend(&mut cx, until, by);
            }
            Event::EndNow { by, .. } => {
                refuse_if_closed()?;
                match self.running() {
                    Some(i) => {
                        let e = &mut self.bookings[i];
                        e.booked_end.get_or_insert(e.booking.end);
                        e.booking.end = now;
                        self.end_meeting(&mut cx, i, Some(Reason::EndedEarly { by }));
                    }
                    None => self.outcome(
                        &mut cx,
                        None,
                        OutcomeKind::ExtendRefused,
                        Reason::NoRunningMeeting,
                    ),
                }
            }
            Event::Credential { presenter, .. } => self.credential(&mut cx, &presenter),
            Event::AirQuality { metric, value, .. } => {
                self.air_values[metric_index(metric)] = value.filter(|v| v.is_finite());
            }
        }
        self.evaluate(now, cx.out);
        Ok(())
    }

    pub(crate) fn restore(
        &mut self,
        b: Booking,
        checked_in: Option<Timestamp>,
    ) -> Result<(), EngineError> {
        if self.cfg.kind == RoomKind::Closed {
            return Err(EngineError::RoomClosed(self.cfg.id.clone()));
        }
        if b.end <= b.start {
            return Err(EngineError::BookingEndsBeforeStart(b.id));
        }
        let id = b.id.clone();
        self.upsert(b);
        if let Some(i) = self.find(&id) {
            self.bookings[i].checked_in = checked_in;
        }
        Ok(())
    }

    /// The unfinished bookings this room holds (running or to come), for a caller removing it.
    pub(crate) fn unfinished(&self) -> Vec<Booking> {
        (self.bookings.iter())
            .filter(|e| !e.finished)
            .map(|e| e.booking.clone())
            .collect()
    }

    /// Swaps the room's configuration (policy, scenes, equipment, kind, access, air rules),
    /// keeping its bookings, check-ins, occupancy and what it has switched on, then
    /// re-derives its phase at `now` under the new rules: a shorter no-show window releases a
    /// meeting whose new deadline has passed; a longer one keeps it.
    ///
    /// Devices are re-asserted the way a restart would, but only where the change touches
    /// them: a running meeting (or walk-in, or a prepared booking) runs its scene again when
    /// that scene, the HVAC settings or the equipment changed. A room that becomes closed
    /// ends its current use with the leave scene; its bookings stay (a closed room ignores
    /// them until it opens again).
    pub(crate) fn reconfigure(
        &mut self,
        now: Timestamp,
        cfg: RoomConfig,
        out: &mut VecDeque<Output>,
    ) {
        self.account(now);
        let old = std::mem::replace(&mut self.cfg, cfg);
        if old.air != self.cfg.air {
            // New rules start switched off; leaving them active would never switch them back.
            self.air_active = vec![false; self.cfg.air.len()];
        }
        let mut cx = Ctx { now, out };
        let reason = Reason::Reconfigured;
        if self.cfg.kind == RoomKind::Closed {
            if old.kind != RoomKind::Closed {
                self.close(&mut cx);
            }
            self.evaluate(now, cx.out);
            return;
        }
        let equipment = old.equipment != self.cfg.equipment;
        let hvac = equipment
            || old.policy.hvac_mode != self.cfg.policy.hvac_mode
            || old.policy.hvac_setpoint_c != self.cfg.policy.hvac_setpoint_c;
        let held = self.hold_until.is_some();
        match &self.phase {
            Phase::Meeting(_) => {
                if hvac {
                    self.command(&mut cx, self.hvac_on(), reason.clone());
                }
                if !held && (equipment || old.meeting_scene != self.cfg.meeting_scene) {
                    let scene = Arc::clone(&self.cfg.meeting_scene);
                    self.run_scene(&mut cx, &scene, reason);
                }
            }
            Phase::WalkIn => {
                if !held && (equipment || old.walk_in_scene != self.cfg.walk_in_scene) {
                    let scene = Arc::clone(&self.cfg.walk_in_scene);
                    self.run_scene(&mut cx, &scene, reason);
                }
            }
            Phase::Overtime => {}
            Phase::Idle => {
                // A booking being prepared gets its preparation again where it changed.
                if let Some(i) = (self.bookings.iter())
                    .position(|e| !e.finished && !e.started && e.booking.end > now)
                {
                    let (hvac_prepared, lights_prepared) = {
                        let e = &self.bookings[i];
                        (e.hvac_prepared, e.lights_prepared)
                    };
                    if hvac_prepared && hvac {
                        self.command(&mut cx, self.hvac_on(), reason.clone());
                    }
                    if lights_prepared
                        && !held
                        && (equipment || old.meeting_scene != self.cfg.meeting_scene)
                    {
                        let scene = Arc::clone(&self.cfg.meeting_scene);
                        self.run_scene(&mut cx, &scene, reason);
                    }
                }
            }
        }
        if old.kind == RoomKind::Closed {
            // Opening again: the door sign is re-derived from scratch.
            self.state = None;
        }
        self.evaluate(now, cx.out);
    }

    /// The room is closed by a reload: a running meeting ends (once, with its usage), a
    /// walk-in ends, and everything automation switched on goes to rest with the whole leave
    /// scene (no booking keeps it on: a closed room runs none). Bookings to come stay.
    fn close(&mut self, cx: &mut Ctx<'_>) {
        let reason = Reason::Reconfigured;
        if let Some(i) = self.running() {
            self.usage(cx, i, None);
            self.bookings[i].finished = true;
            let id = self.bookings[i].booking.id.clone();
            self.outcome(cx, Some(id), OutcomeKind::Ended, reason.clone());
        }
        if self.phase == Phase::WalkIn {
            self.outcome(cx, None, OutcomeKind::WalkInEnded, reason.clone());
        }
        let in_use = self.phase != Phase::Idle || self.devices_on;
        self.set_phase(Phase::Idle);
        for e in self.bookings.iter_mut().filter(|e| !e.finished) {
            e.hvac_prepared = false;
            e.lights_prepared = false;
        }
        if in_use {
            let scene = Arc::clone(&self.cfg.leave_scene);
            self.run_scene(cx, &scene, reason);
            self.devices_on = false;
        }
    }

    fn set_occupancy(&mut self, now: Timestamp, occupancy: Occupancy) {
        if occupancy == self.occupancy {
            return;
        }
        self.ever_sensed |= occupancy != Occupancy::Unknown;
        self.vacant_since = (occupancy == Occupancy::Vacant).then_some(now);
        self.occupied_since = (occupancy == Occupancy::Occupied).then_some(now);
        self.occupancy = occupancy;
    }

    fn running(&self) -> Option<usize> {
        match &self.phase {
            Phase::Meeting(id) => self.find(id),
            _ => None,
        }
    }

    fn upsert(&mut self, b: Booking) {
        if let Some(i) = self.find(&b.id) {
            let e = &mut self.bookings[i];
            if e.booking.start != b.start && !e.started {
                // Moved before it began: prepare again for the new time.
                e.hvac_prepared = false;
                e.lights_prepared = false;
            }
            e.booking = b;
        } else {
            self.bookings.push(Entry {
                booking: b,
                hvac_prepared: false,
                lights_prepared: false,
                checked_in: None,
                started: false,
                finished: false,
                first_presence: None,
                occupied: Span::ZERO,
                devices_on: Span::ZERO,
                booked_end: None,
            });
        }
        self.bookings.sort_by(|a, b| {
            (a.booking.start, &a.booking.id).cmp(&(b.booking.start, &b.booking.id))
        });
    }

    fn cancel(&mut self, cx: &mut Ctx<'_>, id: &BookingId) {
        let Some(i) = self.find(id) else { return };
        let running = self.phase == Phase::Meeting(id.clone());
        if running {
            self.usage(cx, i, None);
        }
        let entry = self.bookings.remove(i);
        if running || (!entry.started && (entry.hvac_prepared || entry.lights_prepared)) {
            self.outcome(
                cx,
                Some(id.clone()),
                OutcomeKind::Cancelled,
                Reason::Cancelled,
            );
            if running && self.occupancy == Occupancy::Occupied {
                self.set_phase(Phase::Overtime);
            } else {
                self.set_phase(Phase::Idle);
                self.run_leave(cx, Reason::Cancelled);
            }
        }
    }

    /// The booking a check-in now would apply to: the running one, or the next whose window
    /// opened.
    fn checkin_candidate(&self, now: Timestamp, only: Option<&BookingId>) -> Option<usize> {
        let opens = self.cfg.policy.checkin_opens;
        self.bookings.iter().position(|e| {
            only.is_none_or(|id| &e.booking.id == id)
                && !e.finished
                && e.checked_in.is_none()
                && e.booking.start - opens <= now
                && now < e.booking.end
        })
    }

    fn check_in(&mut self, cx: &mut Ctx<'_>, method: CheckInMethod, only: Option<&BookingId>) {
        match self.checkin_candidate(cx.now, only) {
            Some(i) => {
                self.bookings[i].checked_in = Some(cx.now);
                let id = self.bookings[i].booking.id.clone();
                self.outcome(
                    cx,
                    Some(id),
                    OutcomeKind::CheckedIn(method),
                    Reason::CheckedIn { method },
                );
            }
            None => self.outcome(
                cx,
                None,
                OutcomeKind::CheckInRefused,
                Reason::NoMeetingToCheckIn,
            ),
        }
    }

    fn extend(&mut self, cx: &mut Ctx<'_>, until: Timestamp, by: String) {
        let Some(i) = self.running() else {
            self.outcome(
                cx,
                None,
                OutcomeKind::ExtendRefused,
                Reason::NoRunningMeeting,
            );
            return;
        };
        let id = self.bookings[i].booking.id.clone();
        let end = self.bookings[i].booking.end;
        if until <= end {
            self.outcome(
                cx,
                Some(id),
                OutcomeKind::ExtendRefused,
                Reason::NotAfterEnd { end },
            );
            return;
        }
        let next_start = self
            .bookings
            .iter()
            .filter(|e| !e.finished && e.booking.id != id && e.booking.start >= end)
            .map(|e| e.booking.start)
            .min();
        let (until, reason) = match next_start {
            Some(ns) if ns <= end => {
                let reason = Reason::NextBookingAt { next_start: ns };
                self.outcome(cx, Some(id), OutcomeKind::ExtendRefused, reason);
                return;
            }
            Some(ns) if ns < until => (ns, Reason::ExtendedToNext { until: ns, by }),
            _ => (until, Reason::Extended { until, by }),
        };
        self.bookings[i].booking.end = until;
        self.outcome(cx, Some(id), OutcomeKind::Extended { until }, reason);
    }

    fn credential(&mut self, cx: &mut Ctx<'_>, p: &Presenter) {
        let who = p
            .person
            .clone()
            .unwrap_or_else(|| "an unknown card".to_owned());
        if self.cfg.kind == RoomKind::Closed {
            let staff = self.staff_group(p);
            match staff {
                Some(group) => self.grant(cx, None, Reason::AccessStaff { who, group }),
                None => self.outcome(
                    cx,
                    None,
                    OutcomeKind::AccessDenied,
                    Reason::State {
                        state: RoomState::Closed,
                    },
                ),
            }
            return;
        }
        let now = cx.now;
        let opens = self.cfg.policy.checkin_opens;
        // The current meeting and any imminent one (its check-in window open) count.
        let in_window =
            |e: &Entry| !e.finished && e.booking.start - opens <= now && now < e.booking.end;
        let meeting = self.bookings.iter().position(in_window);
        let invited = self.bookings.iter().position(|e| {
            in_window(e)
                && p.person.as_deref().is_some_and(|person| {
                    same_person(person, &e.booking.organizer)
                        || e.booking.attendees.iter().any(|a| same_person(person, a))
                })
        });
        if let Some(i) = invited {
            let id = self.bookings[i].booking.id.clone();
            self.grant(cx, Some(id.clone()), Reason::AccessAttendee { who });
            if self.cfg.policy.checkin_by_card && self.bookings[i].checked_in.is_none() {
                self.check_in(cx, CheckInMethod::Card, Some(&id));
            }
        } else if let Some(group) = self.staff_group(p) {
            self.grant(cx, None, Reason::AccessStaff { who, group });
        } else if self.cfg.kind == RoomKind::InstantUse && p.person.is_some() && meeting.is_none() {
            self.grant(cx, None, Reason::AccessWalkIn { who });
        } else {
            let reason = if meeting.is_some() {
                Reason::AccessNotInvited { who }
            } else {
                Reason::AccessNoMeeting { who }
            };
            let booking = meeting.map(|i| self.bookings[i].booking.id.clone());
            self.outcome(cx, booking, OutcomeKind::AccessDenied, reason);
        }
    }

    fn staff_group(&self, p: &Presenter) -> Option<String> {
        p.groups
            .iter()
            .find(|g| {
                self.cfg
                    .access
                    .staff_groups
                    .iter()
                    .any(|s| same_person(s, g))
            })
            .cloned()
    }

    fn grant(&mut self, cx: &mut Ctx<'_>, booking: Option<BookingId>, reason: Reason) {
        self.outcome(cx, booking, OutcomeKind::AccessGranted, reason.clone());
        self.command(cx, Action::DoorLock { unlocked: true }, reason);
        let after = self.cfg.access.unlock_for;
        self.relock_at = (after > Span::ZERO).then_some(cx.now + after);
    }

    /// Attributes the time since the last call to the bookings it belongs to.
    fn account(&mut self, now: Timestamp) {
        let last = self.last_account.replace(now);
        let Some(last) = last else { return };
        let dt = now.since(last);
        if dt <= Span::ZERO {
            return; // the clock went back: attribute nothing
        }
        let occupied = self.occupancy == Occupancy::Occupied;
        let target = match &self.phase {
            Phase::Meeting(id) => self.find(id),
            Phase::Idle => self
                .bookings
                .iter()
                .position(|e| !e.finished && (e.hvac_prepared || e.lights_prepared)),
            _ => None,
        };
        if let Some(i) = target {
            let in_meeting = matches!(self.phase, Phase::Meeting(_));
            let e = &mut self.bookings[i];
            if in_meeting && occupied {
                e.occupied = e.occupied + dt;
            }
            if self.devices_on {
                e.devices_on = e.devices_on + dt;
            }
        }
    }

    /// Brings the room up to date with everything known at `now`.
    pub(crate) fn evaluate(&mut self, now: Timestamp, out: &mut VecDeque<Output>) {
        self.account(now);
        let mut cx = Ctx { now, out };
        if self.cfg.kind == RoomKind::Closed {
            self.relock_if_due(&mut cx);
            self.publish_state(&mut cx);
            return;
        }
        self.run_pending(&mut cx);
        self.relock_if_due(&mut cx);
        if self.hold_until.is_some_and(|h| h <= now) {
            self.hold_until = None;
            self.outcome(
                &mut cx,
                None,
                OutcomeKind::OverrideEnded,
                Reason::OverrideExpired,
            );
            self.resume(&mut cx);
        }
        // Bookings wholly in the past that never started (the clock jumped, or they arrived
        // late) are retired without touching devices.
        for e in &mut self.bookings {
            if !e.started && !e.finished && e.booking.end <= now {
                e.finished = true;
            }
        }
        let p = self.cfg.policy;
        if p.checkin_on_presence
            && self.occupancy == Occupancy::Occupied
            && self.checkin_candidate(now, None).is_some()
        {
            self.check_in(&mut cx, CheckInMethod::Presence, None);
        }
        if self.occupancy == Occupancy::Occupied
            && let Some(i) = self.running()
            && self.bookings[i].first_presence.is_none()
        {
            self.bookings[i].first_presence = Some(now);
        }

        // A late evaluation may start a meeting whose deadlines have already passed: go round
        // until the room's use settles (a start, then its no-show, then the next booking).
        for _ in 0..4 {
            let before = self.phase.clone();
            self.lifecycle(&mut cx);
            if self.phase == before {
                break;
            }
        }

        // Presence came back to a room whose lights stepped down: restore them.
        if self.occupancy == Occupancy::Occupied
            && matches!(self.lights, Lights::Dimmed | Lights::OffForVacancy)
            && self.phase != Phase::Idle
            && self.hold_until.is_none()
        {
            let action = self
                .phase_scene()
                .light_action()
                .cloned()
                .unwrap_or(Action::Lights {
                    on: true,
                    level: None,
                });
            self.command(&mut cx, action, Reason::PresenceBack);
        }

        self.energy_rule(&mut cx);
        self.air_rules(&mut cx);
        self.sensor_watch(&mut cx);
        self.publish_state(&mut cx);
    }

    /// One pass of the meeting lifecycle: end, release, staged shutdown, start, prepare.
    fn lifecycle(&mut self, cx: &mut Ctx<'_>) {
        let now = cx.now;
        let p = self.cfg.policy;
        if let Some(i) = self.running() {
            let e = &self.bookings[i];
            let running = e.checked_in.is_some() || !p.checkin_required;
            let deadline = e.booking.start + p.no_show_after;
            if now < e.booking.start {
                // Moved later while it was running: wait for the new start.
                self.bookings[i].started = false;
                self.set_phase(Phase::Idle);
            } else if now >= e.booking.end {
                self.end_meeting(cx, i, None);
            } else if !running && now >= deadline {
                let reason = Reason::NoShow {
                    deadline,
                    grace: p.no_show_after,
                };
                self.release(cx, i, ReleaseCause::NoShow, reason);
            } else if let (true, Some(after), Some(since)) =
                (running, p.vacancy_release, self.meeting_vacancy_ref(i))
                && now >= since + after
            {
                let reason = Reason::VacancyRelease { since, after };
                self.release(cx, i, ReleaseCause::Vacancy, reason);
            }
        } else if matches!(self.phase, Phase::Meeting(_)) {
            self.set_phase(Phase::Idle);
        }

        if matches!(self.phase, Phase::Overtime | Phase::WalkIn)
            && let Some(since) = self.vacancy_ref()
            && now >= since + p.off_after
        {
            let reason = Reason::VacancyOff {
                since,
                after: p.off_after,
            };
            if self.phase == Phase::WalkIn {
                self.outcome(cx, None, OutcomeKind::WalkInEnded, reason.clone());
            }
            self.set_phase(Phase::Idle);
            self.run_leave(cx, reason);
        }

        if !matches!(self.phase, Phase::Meeting(_)) {
            self.start_or_prepare(cx);
        }
    }

    /// The scene that describes the room's current use.
    fn phase_scene(&self) -> &Scene {
        if self.phase == Phase::WalkIn {
            &self.cfg.walk_in_scene
        } else {
            &self.cfg.meeting_scene
        }
    }

    /// After a manual hold: put the room back as automation wants it for its current use.
    fn resume(&mut self, cx: &mut Ctx<'_>) {
        let in_use = match &self.phase {
            Phase::Meeting(_) => true,
            Phase::WalkIn | Phase::Overtime => self.occupancy == Occupancy::Occupied,
            Phase::Idle => false,
        };
        if in_use {
            let scene = Arc::clone(if self.phase == Phase::WalkIn {
                &self.cfg.walk_in_scene
            } else {
                &self.cfg.meeting_scene
            });
            self.run_scene(cx, &scene, Reason::OverrideExpired);
        }
    }

    /// The energy rule, whatever the phase: in an empty room lights step down, then go off.
    /// A manual hold suspends the step-down, never the switch-off.
    fn energy_rule(&mut self, cx: &mut Ctx<'_>) {
        let p = self.cfg.policy;
        if !matches!(self.lights, Lights::On | Lights::Dimmed) {
            return;
        }
        let Some(since) = self.vacancy_ref() else {
            return;
        };
        if cx.now >= since + p.off_after {
            let reason = Reason::VacancyOff {
                since,
                after: p.off_after,
            };
            let off = Action::Lights {
                on: false,
                level: None,
            };
            self.command(cx, off, reason);
            self.lights = Lights::OffForVacancy;
        } else if self.lights == Lights::On
            && cx.now >= since + p.dim_after
            && self.hold_until.is_none()
        {
            let reason = Reason::VacancyStepDown {
                since,
                after: p.dim_after,
            };
            let level = Some(p.dim_level);
            self.command(cx, Action::Lights { on: true, level }, reason);
            self.lights = Lights::Dimmed;
        }
    }

    /// Air-quality rules with hysteresis, while the room is in use. Leaving use resets them
    /// silently: the leave scene puts the devices to rest.
    fn air_rules(&mut self, cx: &mut Ctx<'_>) {
        if self.cfg.air.is_empty() {
            return;
        }
        let in_use = match &self.phase {
            Phase::Meeting(_) | Phase::WalkIn | Phase::Overtime => true,
            Phase::Idle => false,
        };
        let rules = std::mem::take(&mut self.cfg.air);
        for (i, rule) in rules.iter().enumerate() {
            if !in_use {
                self.air_active[i] = false;
                continue;
            }
            let Some(value) = self.air_values[metric_index(rule.metric)] else {
                continue; // unavailable: keep the current state
            };
            if !self.air_active[i] && value > rule.on_above {
                self.air_active[i] = true;
                let reason = Reason::AirHigh {
                    metric: rule.metric,
                    value,
                    limit: rule.on_above,
                };
                for a in &rule.on {
                    self.command(cx, a.clone(), reason.clone());
                }
            } else if self.air_active[i] && value < rule.off_below {
                self.air_active[i] = false;
                let reason = Reason::AirBack {
                    metric: rule.metric,
                    value,
                    limit: rule.off_below,
                };
                for a in &rule.off {
                    self.command(cx, a.clone(), reason.clone());
                }
            }
        }
        self.cfg.air = rules;
    }

    /// Says so, once, when a room in use loses its presence sensor, and when it is back.
    fn sensor_watch(&mut self, cx: &mut Ctx<'_>) {
        let in_use = self.phase != Phase::Idle;
        let unknown = self.occupancy == Occupancy::Unknown;
        if in_use && unknown && !self.sensor_warned && self.ever_sensed {
            self.sensor_warned = true;
            let booking = self.running().map(|i| self.bookings[i].booking.id.clone());
            self.outcome(
                cx,
                booking,
                OutcomeKind::SensorUnavailable,
                Reason::SensorUnavailable,
            );
        } else if self.sensor_warned && !unknown {
            self.sensor_warned = false;
            self.outcome(
                cx,
                None,
                OutcomeKind::SensorRestored,
                Reason::SensorRestored,
            );
        }
    }

    fn start_or_prepare(&mut self, cx: &mut Ctx<'_>) {
        let now = cx.now;
        let p = self.cfg.policy;
        let current = self
            .bookings
            .iter()
            .position(|e| !e.finished && e.booking.start <= now && now < e.booking.end);
        if let Some(i) = current {
            let start = self.bookings[i].booking.start;
            if self.phase == Phase::WalkIn {
                let reason = Reason::BookingTakesOver { start };
                self.outcome(cx, None, OutcomeKind::WalkInEnded, reason);
            }
            let id = self.bookings[i].booking.id.clone();
            self.set_phase(Phase::Meeting(id.clone()));
            self.bookings[i].started = true;
            if self.occupancy == Occupancy::Occupied {
                self.bookings[i].first_presence = Some(now);
            }
            let reason = Reason::MeetingStart { start };
            self.outcome(cx, Some(id), OutcomeKind::MeetingStarted, reason.clone());
            if !self.bookings[i].hvac_prepared {
                self.bookings[i].hvac_prepared = true;
                self.command(cx, self.hvac_on(), reason.clone());
            }
            if !self.bookings[i].lights_prepared {
                self.bookings[i].lights_prepared = true;
                let scene = Arc::clone(&self.cfg.meeting_scene);
                self.run_scene(cx, &scene, reason);
            }
            return;
        }
        if let Some(i) = self
            .bookings
            .iter()
            .position(|e| !e.finished && e.booking.start > now)
        {
            let start = self.bookings[i].booking.start;
            if !self.bookings[i].hvac_prepared && now >= start - p.hvac_lead {
                self.bookings[i].hvac_prepared = true;
                let reason = Reason::HvacPrepare {
                    start,
                    lead: p.hvac_lead,
                };
                self.command(cx, self.hvac_on(), reason);
            }
            if !self.bookings[i].lights_prepared && now >= start - p.lights_lead {
                self.bookings[i].lights_prepared = true;
                let scene = Arc::clone(&self.cfg.meeting_scene);
                let reason = Reason::MeetingPrepare {
                    start,
                    lead: p.lights_lead,
                };
                self.run_scene(cx, &scene, reason);
            }
        }
        if self.cfg.kind == RoomKind::InstantUse
            && self.phase == Phase::Idle
            && self
                .occupied_since
                .is_some_and(|s| now >= s + p.walk_in_confirm)
        {
            self.set_phase(Phase::WalkIn);
            self.outcome(cx, None, OutcomeKind::WalkInStarted, Reason::WalkIn);
            let scene = Arc::clone(&self.cfg.walk_in_scene);
            self.run_scene(cx, &scene, Reason::WalkIn);
        }
    }

    /// Changes the room's use; a manual hold belongs to one use and ends with it.
    fn set_phase(&mut self, phase: Phase) {
        if phase != self.phase {
            self.hold_until = None;
            self.phase = phase;
        }
    }

    fn hvac_on(&self) -> Action {
        Action::Hvac {
            on: true,
            mode: Some(self.cfg.policy.hvac_mode),
            setpoint_c: Some(self.cfg.policy.hvac_setpoint_c),
        }
    }

    fn end_meeting(&mut self, cx: &mut Ctx<'_>, i: usize, early: Option<Reason>) {
        let end = self.bookings[i].booking.end;
        self.usage(cx, i, None);
        self.bookings[i].finished = true;
        let id = self.bookings[i].booking.id.clone();
        let gap = self.cfg.policy.back_to_back_gap;
        let next = self
            .bookings
            .iter()
            .position(|e| !e.finished && e.booking.start <= end + gap && e.booking.end > cx.now);
        if let Some(n) = next {
            let next_start = self.bookings[n].booking.start;
            self.bookings[n].hvac_prepared = true;
            self.bookings[n].lights_prepared = true;
            self.set_phase(Phase::Idle);
            let reason = early.unwrap_or(Reason::BackToBack { next_start });
            self.outcome(cx, Some(id), OutcomeKind::Ended, reason);
        } else if self.occupancy == Occupancy::Occupied {
            self.set_phase(Phase::Overtime);
            let reason = early.unwrap_or(Reason::StillOccupiedAtEnd { end });
            self.outcome(cx, Some(id), OutcomeKind::Ended, reason);
        } else {
            self.set_phase(Phase::Idle);
            let reason = early.unwrap_or(Reason::MeetingEnd { end });
            self.outcome(cx, Some(id), OutcomeKind::Ended, reason.clone());
            self.run_leave(cx, reason);
        }
    }

    fn release(&mut self, cx: &mut Ctx<'_>, i: usize, cause: ReleaseCause, reason: Reason) {
        self.usage(cx, i, Some(cause));
        self.bookings[i].finished = true;
        let id = self.bookings[i].booking.id.clone();
        self.set_phase(Phase::Idle);
        self.outcome(
            cx,
            Some(id.clone()),
            OutcomeKind::Released(cause),
            reason.clone(),
        );
        if cause == ReleaseCause::NoShow {
            let organizer = self.bookings[i].booking.organizer.clone();
            self.outcome(
                cx,
                Some(id),
                OutcomeKind::NoShowStrike { organizer },
                reason.clone(),
            );
        }
        self.run_leave(cx, reason);
    }

    fn usage(&self, cx: &mut Ctx<'_>, i: usize, release: Option<ReleaseCause>) {
        let e = &self.bookings[i];
        let actual_start = e.checked_in.or(if self.cfg.policy.checkin_required {
            None
        } else {
            e.first_presence
        });
        let facts = UsageFacts {
            organizer: e.booking.organizer.clone(),
            scheduled_start: e.booking.start,
            scheduled_end: e.booked_end.unwrap_or(e.booking.end),
            actual_start,
            actual_end: cx.now,
            release,
            occupied: e.occupied,
            devices_on: e.devices_on,
        };
        let id = e.booking.id.clone();
        self.outcome(cx, Some(id), OutcomeKind::Usage(facts), Reason::Usage);
    }

    /// Runs the leave scene, keeping what an imminent booking already needs on: HVAC inside
    /// its pre-conditioning lead, everything inside its lights lead. No off-then-on flaps.
    fn run_leave(&mut self, cx: &mut Ctx<'_>, reason: Reason) {
        let now = cx.now;
        let p = self.cfg.policy;
        self.hold_until = None;
        let next = self
            .bookings
            .iter()
            .find(|e| !e.finished && e.booking.end > now)
            .map(|e| e.booking.start);
        let keep_hvac = next.is_some_and(|s| now >= s - p.hvac_lead);
        let keep_all = next.is_some_and(|s| now >= s - p.lights_lead);
        if keep_all {
            return;
        }
        for e in self.bookings.iter_mut().filter(|e| !e.finished) {
            e.lights_prepared = false;
            if !keep_hvac {
                e.hvac_prepared = false;
            }
        }
        let scene = Arc::clone(&self.cfg.leave_scene);
        let keep = |s: &Step| !(keep_hvac && matches!(s, Step::Do(Action::Hvac { .. })));
        self.run_steps(cx, scene.steps.iter().filter(|s| keep(s)), &reason);
        self.devices_on = keep_hvac;
    }

    /// Runs a scene: steps up to the first wait now, the rest when their time comes. A new
    /// scene supersedes the unfinished steps of the previous one.
    fn run_scene(&mut self, cx: &mut Ctx<'_>, scene: &Scene, reason: Reason) {
        self.run_steps(cx, scene.steps.iter(), &reason);
    }

    fn run_steps<'s>(
        &mut self,
        cx: &mut Ctx<'_>,
        steps: impl Iterator<Item = &'s Step>,
        reason: &Reason,
    ) {
        self.pending.clear();
        let mut due = cx.now;
        // Automation does not brighten an empty room whose lights are already on (stepped
        // down, or held): presence brings full light back the moment someone arrives, and the
        // energy rule's clock keeps running.
        let keep_lights = !matches!(reason, Reason::Manual { .. })
            && self.occupancy == Occupancy::Vacant
            && matches!(self.lights, Lights::On | Lights::Dimmed);
        for step in steps {
            match step {
                Step::Wait(d) => due = due + *d,
                Step::Do(Action::Lights { on: true, .. }) if keep_lights => {}
                Step::Do(action) if due <= cx.now => {
                    self.command(cx, action.clone(), reason.clone());
                }
                Step::Do(action) => self.pending.push_back(Pending {
                    due,
                    action: action.clone(),
                    reason: reason.clone(),
                }),
            }
        }
    }

    fn run_pending(&mut self, cx: &mut Ctx<'_>) {
        while self.pending.front().is_some_and(|p| p.due <= cx.now) {
            if let Some(p) = self.pending.pop_front() {
                self.command(cx, p.action, p.reason);
            }
        }
    }

    fn relock_if_due(&mut self, cx: &mut Ctx<'_>) {
        if self.relock_at.is_some_and(|t| t <= cx.now) {
            self.relock_at = None;
            let after = self.cfg.access.unlock_for;
            self.command(
                cx,
                Action::DoorLock { unlocked: false },
                Reason::Relock { after },
            );
        }
    }

    fn command(&mut self, cx: &mut Ctx<'_>, action: Action, reason: Reason) {
        if !self.cfg.equipment.has(&action) {
            return;
        }
        match &action {
            Action::Lights { on, level } => {
                let was_on = matches!(self.lights, Lights::On | Lights::Dimmed);
                let step_down = matches!(reason, Reason::VacancyStepDown { .. });
                self.lights = match (on, level) {
                    (false, _) => Lights::Off,
                    (true, Some(l)) if *l < 100 && step_down => Lights::Dimmed,
                    (true, _) => Lights::On,
                };
                // The vacancy clock for lights starts when they go from off to on; lighting
                // an already lit room again (the next meeting's scene) does not restart it.
                if !*on {
                    self.lights_on_since = None;
                } else if !was_on {
                    self.lights_on_since = Some(cx.now);
                }
                self.devices_on |= *on;
            }
            Action::Hvac { on: true, .. }
            | Action::Sockets { on: true }
            | Action::Projector { on: true }
            | Action::Purifier { on: true } => self.devices_on = true,
            Action::Ventilation { level } if *level > 0 => self.devices_on = true,
            _ => {}
        }
        cx.out.push_back(Output::Command(Command {
            at: cx.now,
            room: self.cfg.id.clone(),
            action,
            reason,
        }));
    }

    fn outcome(
        &self,
        cx: &mut Ctx<'_>,
        booking: Option<BookingId>,
        kind: OutcomeKind,
        reason: Reason,
    ) {
        cx.out.push_back(Output::Outcome(Outcome {
            at: cx.now,
            room: self.cfg.id.clone(),
            booking,
            kind,
            reason,
        }));
    }

    /// Since when the room has been empty with its lights on (the later of the two).
    fn vacancy_ref(&self) -> Option<Timestamp> {
        let since = self
            .vacant_since
            .filter(|_| self.occupancy == Occupancy::Vacant)?;
        Some(self.lights_on_since.map_or(since, |l| l.max(since)))
    }

    /// Since when a running meeting has been empty: not before it started or was checked in.
    fn meeting_vacancy_ref(&self, i: usize) -> Option<Timestamp> {
        let since = self
            .vacant_since
            .filter(|_| self.occupancy == Occupancy::Vacant)?;
        let e = &self.bookings[i];
        let mut r = since.max(e.booking.start);
        if let Some(c) = e.checked_in {
            r = r.max(c);
        }
        Some(r)
    }

    fn derive_state(&self, now: Timestamp) -> RoomState {
        let p = &self.cfg.policy;
        match &self.phase {
            _ if self.cfg.kind == RoomKind::Closed => RoomState::Closed,
            Phase::Meeting(id) => match self.find(id) {
                Some(i) if self.bookings[i].checked_in.is_some() || !p.checkin_required => {
                    RoomState::InMeeting
                }
                _ => RoomState::StartingSoon,
            },
            Phase::WalkIn | Phase::Overtime => RoomState::Occupied,
            Phase::Idle => {
                let soon = self.bookings.iter().any(|e| {
                    !e.finished && e.booking.start > now && e.booking.start - p.starting_soon <= now
                });
                if soon {
                    RoomState::StartingSoon
                } else {
                    RoomState::Free
                }
            }
        }
    }

    fn publish_state(&mut self, cx: &mut Ctx<'_>) {
        let state = self.derive_state(cx.now);
        if self.state == Some(state) {
            return;
        }
        self.state = Some(state);
        cx.out.push_back(Output::State {
            at: cx.now,
            room: self.cfg.id.clone(),
            state,
        });
        let light = match state {
            RoomState::Free => StatusLight::Green,
            RoomState::StartingSoon => StatusLight::YellowBlinking,
            RoomState::InMeeting | RoomState::Occupied => StatusLight::Red,
            RoomState::Closed => self.cfg.policy.closed_light,
        };
        self.command(cx, Action::StatusLight(light), Reason::State { state });
    }

    /// The next instant at which evaluating this room could change something.
    pub(crate) fn next_wake(&self, now: Timestamp) -> Option<Timestamp> {
        let mut best: Option<Timestamp> = None;
        let mut consider = |t: Timestamp| {
            if t > now && best.is_none_or(|b| t < b) {
                best = Some(t);
            }
        };
        if let Some(t) = self.relock_at {
            consider(t);
        }
        if self.cfg.kind == RoomKind::Closed {
            return best;
        }
        let p = &self.cfg.policy;
        if let Some(x) = self.pending.front() {
            consider(x.due);
        }
        if let Some(t) = self.hold_until {
            consider(t);
        }
        if let Some(i) = self.running() {
            let e = &self.bookings[i];
            consider(e.booking.end);
            if e.checked_in.is_none() && p.checkin_required {
                consider(e.booking.start + p.no_show_after);
            }
            if let (Some(v), Some(r)) = (p.vacancy_release, self.meeting_vacancy_ref(i)) {
                consider(r + v);
            }
        }
        // Only the first booking that has not started can be the next to act.
        if let Some(e) = self.bookings.iter().find(|e| !e.finished && !e.started) {
            let s = e.booking.start;
            consider(s - p.hvac_lead);
            consider(s - p.lights_lead);
            consider(s - p.starting_soon);
            consider(s);
            consider(e.booking.end);
            if p.checkin_on_presence {
                consider(s - p.checkin_opens);
            }
        }
        if let Some(r) = self.vacancy_ref() {
            consider(r + p.dim_after);
            consider(r + p.off_after);
        }
        if self.cfg.kind == RoomKind::InstantUse
            && self.phase == Phase::Idle
            && let Some(s) = self.occupied_since
        {
            consider(s + p.walk_in_confirm);
        }
        best
    }
}
