//! One room's state machine: the meeting lifecycle, walk-in use and staged shutdown.
//!
//! The room is evaluated as a whole at each event or timer ("given everything known now,
//! what must change?"), so late timers, clock jumps and changed bookings all converge on
//! the same state. Per-booking flags make every step happen once.

use std::collections::VecDeque;

use crate::engine::{
    CheckInMethod, Command, EngineError, Event, Outcome, OutcomeKind, Output, Reason, ReleaseCause,
};
use crate::model::{
    Action, Booking, BookingId, Occupancy, RoomConfig, RoomKind, RoomState, Scene, StatusLight,
    Step,
};
use crate::time::Timestamp;

#[derive(Debug, Clone)]
struct Entry {
    booking: Booking,
    hvac_prepared: bool,
    lights_prepared: bool,
    checked_in: Option<Timestamp>,
    started: bool,
    finished: bool,
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

#[derive(Debug)]
pub(crate) struct Room {
    cfg: RoomConfig,
    bookings: Vec<Entry>,
    occupancy: Occupancy,
    vacant_since: Option<Timestamp>,
    phase: Phase,
    lights: Lights,
    lights_on_since: Option<Timestamp>,
    pending: VecDeque<Pending>,
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
}

struct Ctx<'a> {
    now: Timestamp,
    out: &'a mut VecDeque<Output>,
}

impl Room {
    pub(crate) fn new(cfg: RoomConfig) -> Room {
        Room {
            cfg,
            bookings: Vec::new(),
            occupancy: Occupancy::Unknown,
            vacant_since: None,
            phase: Phase::Idle,
            lights: Lights::Off,
            lights_on_since: None,
            pending: VecDeque::new(),
            state: None,
        }
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
        }
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
        let mut cx = Ctx { now, out };
        match event {
            Event::BookingUpserted(b) => {
                if closed {
                    return Err(EngineError::RoomClosed(self.cfg.id.clone()));
                }
                if b.end <= b.start {
                    return Err(EngineError::BookingEndsBeforeStart(b.id));
                }
                self.upsert(b);
            }
            Event::BookingCancelled { booking, .. } => self.cancel(&mut cx, &booking),
            Event::Occupancy { occupancy, .. } => {
                if occupancy == Occupancy::Vacant && self.occupancy != Occupancy::Vacant {
                    self.vacant_since = Some(now);
                } else if occupancy != Occupancy::Vacant {
                    self.vacant_since = None;
                }
                self.occupancy = occupancy;
            }
            Event::CheckIn {
                method, booking, ..
            } => {
                if closed {
                    return Err(EngineError::RoomClosed(self.cfg.id.clone()));
                }
                self.check_in(&mut cx, method, booking.as_ref());
            }
            Event::RunScene { scene, by, .. } => {
                if closed {
                    return Err(EngineError::RoomClosed(self.cfg.id.clone()));
                }
                let Some(s) = self.cfg.scene(&scene).cloned() else {
                    return Err(EngineError::UnknownScene {
                        room: self.cfg.id.clone(),
                        scene,
                    });
                };
                self.run_scene(&mut cx, &s, Reason::Manual { scene, by });
            }
        }
        self.evaluate(now, cx.out);
        Ok(())
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
            });
        }
        self.bookings.sort_by(|a, b| {
            (a.booking.start, &a.booking.id).cmp(&(b.booking.start, &b.booking.id))
        });
    }

    fn cancel(&mut self, cx: &mut Ctx<'_>, id: &BookingId) {
        let Some(i) = self.find(id) else { return };
        let entry = self.bookings.remove(i);
        let running = self.phase == Phase::Meeting(id.clone());
        if running || (!entry.started && (entry.hvac_prepared || entry.lights_prepared)) {
            self.outcome(
                cx,
                Some(id.clone()),
                OutcomeKind::Cancelled,
                Reason::Cancelled,
            );
            if running && self.occupancy == Occupancy::Occupied {
                self.phase = Phase::Overtime;
            } else {
                self.phase = Phase::Idle;
                self.run_leave(cx, Reason::Cancelled);
            }
        }
    }

    /// The booking a check-in now would apply to: the running one, or the next whose window opened.
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

    /// Brings the room up to date with everything known at `now`.
    pub(crate) fn evaluate(&mut self, now: Timestamp, out: &mut VecDeque<Output>) {
        let mut cx = Ctx { now, out };
        if self.cfg.kind == RoomKind::Closed {
            self.publish_state(&mut cx);
            return;
        }
        self.run_pending(&mut cx);
        // Bookings wholly in the past that never started (the clock jumped, or they arrived
        // late) are retired without touching devices.
        for e in &mut self.bookings {
            if !e.started && !e.finished && e.booking.end <= now {
                e.finished = true;
            }
        }
        let p = self.cfg.policy.clone();
        if p.checkin_on_presence
            && self.occupancy == Occupancy::Occupied
            && self.checkin_candidate(now, None).is_some()
        {
            self.check_in(&mut cx, CheckInMethod::Presence, None);
        }

        if let Phase::Meeting(id) = self.phase.clone() {
            match self.find(&id) {
                None => self.phase = Phase::Idle,
                Some(i) => {
                    let e = &self.bookings[i];
                    let running = e.checked_in.is_some() || !p.checkin_required;
                    let deadline = e.booking.start + p.no_show_after;
                    if now < e.booking.start {
                        // Moved later while it was running: wait for the new start.
                        self.bookings[i].started = false;
                        self.phase = Phase::Idle;
                    } else if now >= e.booking.end {
                        self.end_meeting(&mut cx, i);
                    } else if !running && now >= deadline {
                        let reason = Reason::NoShow {
                            deadline,
                            grace: p.no_show_after,
                        };
                        self.release(&mut cx, i, ReleaseCause::NoShow, reason);
                    } else if let (true, Some(after), Some(since)) =
                        (running, p.vacancy_release, self.meeting_vacancy_ref(i))
                        && now >= since + after
                    {
                        let reason = Reason::VacancyRelease { since, after };
                        self.release(&mut cx, i, ReleaseCause::Vacancy, reason);
                    }
                }
            }
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
                self.outcome(&mut cx, None, OutcomeKind::WalkInEnded, reason.clone());
            }
            self.phase = Phase::Idle;
            self.run_leave(&mut cx, reason);
        }

        if !matches!(self.phase, Phase::Meeting(_)) {
            self.start_or_prepare(&mut cx);
        }

        // Presence came back to a room whose lights stepped down: restore them.
        if self.occupancy == Occupancy::Occupied
            && matches!(self.lights, Lights::Dimmed | Lights::OffForVacancy)
            && self.phase != Phase::Idle
        {
            let scene = if self.phase == Phase::WalkIn {
                &self.cfg.walk_in_scene
            } else {
                &self.cfg.meeting_scene
            };
            let action = scene.light_action().cloned().unwrap_or(Action::Lights {
                on: true,
                level: None,
            });
            self.command(&mut cx, action, Reason::PresenceBack);
        }

        // The energy rule, whatever the phase: lights step down, then go off, in an empty room.
        if matches!(self.lights, Lights::On | Lights::Dimmed)
            && let Some(since) = self.vacancy_ref()
        {
            if now >= since + p.off_after {
                let reason = Reason::VacancyOff {
                    since,
                    after: p.off_after,
                };
                self.command(
                    &mut cx,
                    Action::Lights {
                        on: false,
                        level: None,
                    },
                    reason,
                );
                self.lights = Lights::OffForVacancy;
            } else if self.lights == Lights::On && now >= since + p.dim_after {
                let reason = Reason::VacancyStepDown {
                    since,
                    after: p.dim_after,
                };
                let level = Some(p.dim_level);
                self.command(&mut cx, Action::Lights { on: true, level }, reason);
                self.lights = Lights::Dimmed;
            }
        }

        self.publish_state(&mut cx);
    }

    fn start_or_prepare(&mut self, cx: &mut Ctx<'_>) {
        let now = cx.now;
        let p = self.cfg.policy.clone();
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
            self.phase = Phase::Meeting(id.clone());
            self.bookings[i].started = true;
            let reason = Reason::MeetingStart { start };
            self.outcome(cx, Some(id), OutcomeKind::MeetingStarted, reason.clone());
            if !self.bookings[i].hvac_prepared {
                self.bookings[i].hvac_prepared = true;
                self.command(cx, self.hvac_on(), reason.clone());
            }
            if !self.bookings[i].lights_prepared {
                self.bookings[i].lights_prepared = true;
                let scene = self.cfg.meeting_scene.clone();
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
                let scene = self.cfg.meeting_scene.clone();
                let reason = Reason::MeetingPrepare {
                    start,
                    lead: p.lights_lead,
                };
                self.run_scene(cx, &scene, reason);
            }
        }
        if self.cfg.kind == RoomKind::InstantUse
            && self.phase == Phase::Idle
            && self.occupancy == Occupancy::Occupied
        {
            self.phase = Phase::WalkIn;
            self.outcome(cx, None, OutcomeKind::WalkInStarted, Reason::WalkIn);
            let scene = self.cfg.walk_in_scene.clone();
            self.run_scene(cx, &scene, Reason::WalkIn);
        }
    }

    fn hvac_on(&self) -> Action {
        Action::Hvac {
            on: true,
            mode: Some(self.cfg.policy.hvac_mode),
            setpoint_c: Some(self.cfg.policy.hvac_setpoint_c),
        }
    }

    fn end_meeting(&mut self, cx: &mut Ctx<'_>, i: usize) {
        let end = self.bookings[i].booking.end;
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
            self.phase = Phase::Idle;
            self.outcome(
                cx,
                Some(id),
                OutcomeKind::Ended,
                Reason::BackToBack { next_start },
            );
        } else if self.occupancy == Occupancy::Occupied {
            self.phase = Phase::Overtime;
            let reason = Reason::StillOccupiedAtEnd { end };
            self.outcome(cx, Some(id), OutcomeKind::Ended, reason);
        } else {
            self.phase = Phase::Idle;
            let reason = Reason::MeetingEnd { end };
            self.outcome(cx, Some(id), OutcomeKind::Ended, reason.clone());
            self.run_leave(cx, reason);
        }
    }

    fn release(&mut self, cx: &mut Ctx<'_>, i: usize, cause: ReleaseCause, reason: Reason) {
        self.bookings[i].finished = true;
        let id = self.bookings[i].booking.id.clone();
        self.phase = Phase::Idle;
        self.outcome(cx, Some(id), OutcomeKind::Released(cause), reason.clone());
        self.run_leave(cx, reason);
    }

    /// Runs the leave scene, keeping what an imminent booking already needs on: HVAC inside
    /// its pre-conditioning lead, everything inside its lights lead. No off-then-on flaps.
    fn run_leave(&mut self, cx: &mut Ctx<'_>, reason: Reason) {
        let now = cx.now;
        let p = &self.cfg.policy;
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
        let mut scene = self.cfg.leave_scene.clone();
        if keep_hvac {
            scene
                .steps
                .retain(|s| !matches!(s, Step::Do(Action::Hvac { .. })));
        }
        self.run_scene(cx, &scene, reason);
    }

    /// Runs a scene: steps up to the first wait now, the rest when their time comes. A new
    /// scene supersedes the unfinished steps of the previous one.
    fn run_scene(&mut self, cx: &mut Ctx<'_>, scene: &Scene, reason: Reason) {
        self.pending.clear();
        let mut due = cx.now;
        for step in &scene.steps {
            match step {
                Step::Wait(d) => due = due + *d,
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

    fn command(&mut self, cx: &mut Ctx<'_>, action: Action, reason: Reason) {
        if let Action::Lights { on, level } = &action {
            let was_on = matches!(self.lights, Lights::On | Lights::Dimmed);
            self.lights = match (on, level) {
                (false, _) => Lights::Off,
                (true, Some(l)) if *l < 100 && matches!(reason, Reason::VacancyStepDown { .. }) => {
                    Lights::Dimmed
                }
                (true, _) => Lights::On,
            };
            if !*on {
                self.lights_on_since = None;
            } else if !was_on || self.lights == Lights::On {
                self.lights_on_since = Some(cx.now);
            }
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
        if self.cfg.kind == RoomKind::Closed {
            return None;
        }
        let p = &self.cfg.policy;
        let mut c: Vec<Timestamp> = Vec::with_capacity(12);
        if let Some(x) = self.pending.front() {
            c.push(x.due);
        }
        if let Phase::Meeting(id) = &self.phase
            && let Some(i) = self.find(id)
        {
            let e = &self.bookings[i];
            c.push(e.booking.end);
            if e.checked_in.is_none() && p.checkin_required {
                c.push(e.booking.start + p.no_show_after);
            }
            if let (Some(v), Some(r)) = (p.vacancy_release, self.meeting_vacancy_ref(i)) {
                c.push(r + v);
            }
        }
        for e in self.bookings.iter().filter(|e| !e.finished && !e.started) {
            let s = e.booking.start;
            c.extend([
                s - p.hvac_lead,
                s - p.lights_lead,
                s - p.starting_soon,
                s,
                e.booking.end,
            ]);
            if p.checkin_on_presence {
                c.push(s - p.checkin_opens);
            }
        }
        if let Some(r) = self.vacancy_ref() {
            c.extend([r + p.dim_after, r + p.off_after]);
        }
        c.into_iter().filter(|t| *t > now).min()
    }
}
