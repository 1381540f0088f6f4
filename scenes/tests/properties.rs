//! Properties of the policy arithmetic, over random policies, bookings and presence.

use proptest::prelude::*;
use scenes::{
    Action, Booking, BookingId, CheckInMethod, Engine, Equipment, Event, Occupancy, OutcomeKind,
    Output, Policy, ReleaseCause, RoomConfig, RoomId, RoomKind, Span, Timestamp,
};

const T0: i64 = 1_772_409_600_000;

fn ts(min: i64) -> Timestamp {
    Timestamp::from_millis(T0 + min * 60_000)
}

/// Any policy the site loader would accept.
fn policy() -> impl Strategy<Value = Policy> {
    (
        0i64..30,
        0i64..30,
        1i64..30,
        1i64..19,
        prop::option::of(1i64..=20),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_flat_map(
            |(hvac, lights, no_show, dim, vacancy, required, presence)| {
                ((dim + 1)..=20).prop_map(move |off| Policy {
                    hvac_lead: Span::minutes(hvac),
                    lights_lead: Span::minutes(lights),
                    no_show_after: Span::minutes(no_show),
                    dim_after: Span::minutes(dim),
                    off_after: Span::minutes(off),
                    vacancy_release: vacancy.map(Span::minutes),
                    checkin_required: required,
                    checkin_on_presence: presence,
                    ..Policy::default()
                })
            },
        )
}

fn room(policy: Policy) -> RoomConfig {
    let mut cfg = RoomConfig::new("r1", "r1", RoomKind::Bookable);
    cfg.policy = policy;
    cfg.equipment = Equipment {
        lights: true,
        hvac: true,
        ..Equipment::NONE
    };
    cfg
}

fn booking(id: &str, start: i64, end: i64) -> Event {
    Event::BookingUpserted(Booking {
        id: BookingId::from(id),
        room: RoomId::from("r1"),
        start: ts(start),
        end: ts(end),
        subject: "s".into(),
        organizer: "o".into(),
        attendees: Vec::new(),
    })
}

/// Feeds timed events and runs every timer in order; returns every output with its time.
fn run(policy: Policy, mut events: Vec<(i64, Event)>, until: i64) -> Vec<Output> {
    events.sort_by_key(|(t, _)| *t);
    let mut engine = Engine::new(vec![room(policy)]).expect("room");
    let mut out = Vec::new();
    engine.handle_timeout(ts(0));
    let mut events = events.into_iter().peekable();
    loop {
        let next_ev = events.peek().map(|(t, _)| ts(*t));
        let next_timer = engine.poll_timeout().filter(|t| *t <= ts(until));
        let now = match (next_ev, next_timer) {
            (None, None) => break,
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) => a,
            (None, Some(b)) => b,
        };
        engine.handle_timeout(now);
        if next_ev == Some(now)
            && let Some((_, ev)) = events.next()
        {
            engine.handle_event(now, ev).expect("accepted");
        }
        out.extend(std::iter::from_fn(|| engine.poll()));
    }
    out
}

fn lights(o: &Output) -> Option<(Timestamp, bool)> {
    match o {
        Output::Command(c) => match c.action {
            Action::Lights { on, .. } => Some((c.at, on)),
            _ => None,
        },
        _ => None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Whatever the policy and however presence comes and goes, lights are never on in an
    /// empty room for longer than `off_after`.
    #[test]
    fn lights_never_stay_on_in_an_empty_room(
        p in policy(),
        start in 30i64..120,
        len in 10i64..120,
        toggles in prop::collection::vec(1i64..40, 0..12),
        checkin in prop::option::of(0i64..20),
    ) {
        let mut events = vec![(1, booking("b1", start, start + len)), (1, Event::Occupancy {
            room: RoomId::from("r1"), occupancy: Occupancy::Vacant })];
        let mut t = start - 20;
        let mut present = false;
        for d in &toggles {
            t += d;
            present = !present;
            let occupancy = if present { Occupancy::Occupied } else { Occupancy::Vacant };
            events.push((t, Event::Occupancy { room: RoomId::from("r1"), occupancy }));
        }
        if let Some(c) = checkin {
            events.push((start - 5 + c, Event::CheckIn {
                room: RoomId::from("r1"), method: CheckInMethod::Panel, booking: None }));
        }
        // Presence over time, to check against.
        let mut presence: Vec<(Timestamp, bool)> = vec![(ts(1), false)];
        for (t, e) in &events {
            if let Event::Occupancy { occupancy, .. } = e {
                presence.push((ts(*t), *occupancy == Occupancy::Occupied));
            }
        }
        presence.sort_by_key(|(t, _)| *t);
        let out = run(p, events, start + len + 60);
        let switches: Vec<(Timestamp, bool)> = out.iter().filter_map(lights).collect();
        // Walk minute by minute: lights on and nobody there for longer than off_after?
        let mut on_since: Option<Timestamp> = None;
        let mut empty_since: Option<Timestamp> = Some(ts(1));
        for m in 0..(start + len + 60) {
            let now = ts(m);
            for (t, on) in switches.iter().filter(|(t, _)| *t <= now && *t > now - Span::minutes(1)) {
                if *on && on_since.is_none() { on_since = Some(*t); }
                if !*on { on_since = None; }
            }
            for (t, here) in presence.iter().filter(|(t, _)| *t <= now && *t > now - Span::minutes(1)) {
                empty_since = if *here { None } else { empty_since.or(Some(*t)) };
            }
            if let (Some(on), Some(empty)) = (on_since, empty_since) {
                prop_assert!(now.since(on.max(empty)) <= p.off_after,
                    "lights on in an empty room at {now:?} since {:?} (policy {:?})", on.max(empty), p.off_after);
            }
        }
    }

    /// A meeting nobody comes to is released exactly at start + no_show_after (when check-in
    /// is required), never earlier and never twice.
    #[test]
    fn a_no_show_is_released_exactly_at_its_deadline(p in policy(), start in 30i64..300, len in 15i64..240) {
        let events = vec![(1, booking("b1", start, start + len)), (1, Event::Occupancy {
            room: RoomId::from("r1"), occupancy: Occupancy::Vacant })];
        let out = run(p, events, start + len + 30);
        let releases: Vec<(Timestamp, ReleaseCause)> = out.iter().filter_map(|o| match o {
            Output::Outcome(oc) => match oc.kind {
                OutcomeKind::Released(c) => Some((oc.at, c)),
                _ => None,
            },
            _ => None,
        }).collect();
        if p.checkin_required && p.no_show_after < Span::minutes(len) {
            prop_assert_eq!(releases, vec![(ts(start) + p.no_show_after, ReleaseCause::NoShow)]);
        } else {
            prop_assert!(releases.iter().all(|(_, c)| *c == ReleaseCause::Vacancy), "{:?}", releases);
            prop_assert!(releases.len() <= 1);
        }
    }

    /// A checked-in meeting with people in it is never released and ends at its end.
    #[test]
    fn a_meeting_with_people_is_never_released(p in policy(), start in 30i64..300, len in 15i64..240, arrive in 0i64..15) {
        // People arrive before the no-show deadline (after it, a release is right).
        let arrive = (start - 10 + arrive).min(start + p.no_show_after.whole_minutes() - 1);
        let events = vec![
            (1, booking("b1", start, start + len)),
            (arrive, Event::Occupancy { room: RoomId::from("r1"), occupancy: Occupancy::Occupied }),
            (arrive, Event::CheckIn { room: RoomId::from("r1"), method: CheckInMethod::Card, booking: None }),
        ];
        let out = run(p, events, start + len + 30);
        let kinds: Vec<(Timestamp, OutcomeKind)> = out.iter().filter_map(|o| match o {
            Output::Outcome(oc) if matches!(oc.kind, OutcomeKind::Released(_) | OutcomeKind::Ended) => Some((oc.at, oc.kind.clone())),
            _ => None,
        }).collect();
        prop_assert_eq!(kinds, vec![(ts(start + len), OutcomeKind::Ended)]);
    }

    /// However it is asked for, an extension never runs into the next booking.
    #[test]
    fn an_extension_never_overlaps_the_next_booking(gap in 0i64..60, ask in 1i64..120, at in 0i64..55) {
        let events = vec![
            (1, booking("b1", 60, 120)),
            (1, booking("b2", 120 + gap, 180 + gap)),
            (60, Event::CheckIn { room: RoomId::from("r1"), method: CheckInMethod::Panel, booking: None }),
            (60 + at, Event::Extend { room: RoomId::from("r1"), until: ts(120 + ask), by: "p".into() }),
        ];
        let out = run(Policy::default(), events, 300);
        for o in &out {
            if let Output::Outcome(oc) = o
                && let OutcomeKind::Extended { until } = oc.kind
            {
                prop_assert!(until <= ts(120 + gap), "extended to {until:?} past the next start");
                prop_assert!(until > ts(120));
            }
        }
    }
}
