//! Engine transcripts: a timeline in, the command and outcome log out.
//!
//! Each test reads as a day in a room. Snapshots are reviewed by hand; regenerate them with
//! `UPDATE_EXPECT=1 cargo test -p scenes` and read the diff before committing.

use expect_test::{Expect, expect};
use scenes::{
    Action, Booking, BookingId, CheckInMethod, Engine, EngineError, Equipment, Event, Occupancy,
    OutcomeKind, Output, Policy, RoomConfig, RoomId, RoomKind, Scene, Span, Step, Timestamp,
};

fn t(hhmm: &str) -> Timestamp {
    let (h, m) = hhmm.split_once(':').expect("hh:mm");
    let minutes: i64 = h.parse::<i64>().expect("hour") * 60 + m.parse::<i64>().expect("minute");
    Timestamp::from_millis(minutes * 60_000)
}

struct Day {
    engine: Engine,
    now: Timestamp,
    log: Vec<String>,
}

impl Day {
    fn new(rooms: Vec<RoomConfig>) -> Day {
        let mut day = Day {
            engine: Engine::new(rooms).expect("rooms"),
            now: t("07:00"),
            log: Vec::new(),
        };
        day.engine.handle_timeout(day.now);
        day.drain();
        day
    }

    /// Runs every timer up to `until`, in order, as a real clock would.
    fn run_until(&mut self, until: &str) {
        let until = t(until);
        while let Some(next) = self.engine.poll_timeout() {
            if next > until {
                break;
            }
            self.now = next.max(self.now);
            self.engine.handle_timeout(self.now);
            self.drain();
        }
        self.now = until;
    }

    fn at(&mut self, when: &str, event: Event) {
        self.run_until(when);
        self.engine
            .handle_event(self.now, event)
            .expect("event accepted");
        self.drain();
    }

    fn drain(&mut self) {
        while let Some(o) = self.engine.poll() {
            self.log.push(match o {
                Output::Command(c) => format!("{} {} {} — {}", c.at, c.room, c.action, c.reason),
                Output::Outcome(o) => {
                    let booking = o.booking.map(|b| format!(" [{b}]")).unwrap_or_default();
                    match o.kind {
                        OutcomeKind::Usage(u) => format!(
                            "{} {} usage{booking}: booked {}–{}, came {}, left {}, occupied {}, devices on {}{}",
                            o.at,
                            o.room,
                            u.scheduled_start,
                            u.scheduled_end,
                            u.actual_start.map_or("-".to_owned(), |t| t.to_string()),
                            u.actual_end,
                            u.occupied,
                            u.devices_on,
                            u.release
                                .map(|r| format!(", released {r:?}"))
                                .unwrap_or_default()
                        ),
                        kind => format!("{} {} {kind:?}{booking} — {}", o.at, o.room, o.reason),
                    }
                }
                Output::State { at, room, state } => format!("{at} {room} state {state}"),
            });
        }
    }

    fn check(mut self, until: &str, expect: Expect) {
        self.run_until(until);
        expect.assert_eq(&(self.log.join("\n") + "\n"));
    }
}

/// A typical meeting room: lights, HVAC, curtains, sockets and a status light.
fn room(id: &str) -> RoomConfig {
    let mut cfg = RoomConfig::new(id, id, RoomKind::Bookable);
    cfg.equipment = ROOM;
    cfg
}

const ROOM: Equipment = Equipment {
    lights: true,
    hvac: true,
    curtains: true,
    sockets: true,
    status_light: true,
    ..Equipment::NONE
};

fn booking(id: &str, room: &str, start: &str, end: &str) -> Event {
    Event::BookingUpserted(Booking {
        id: BookingId::from(id),
        room: RoomId::from(room),
        start: t(start),
        end: t(end),
        subject: "Weekly".into(),
        organizer: "ana@example.com".into(),
        attendees: vec!["bo@example.com".into()],
    })
}

fn occupancy(room: &str, o: Occupancy) -> Event {
    Event::Occupancy {
        room: RoomId::from(room),
        occupancy: o,
    }
}

fn check_in(room: &str) -> Event {
    Event::CheckIn {
        room: RoomId::from(room),
        method: CheckInMethod::Panel,
        booking: None,
    }
}

#[test]
fn checked_in_meeting_prepares_runs_and_leaves() {
    let mut day = Day::new(vec![room("r1")]);
    day.at("08:00", booking("b1", "r1", "09:00", "10:00"));
    day.at("08:00", occupancy("r1", Occupancy::Vacant));
    day.at("08:57", occupancy("r1", Occupancy::Occupied));
    day.at("09:03", check_in("r1"));
    day.at("09:58", occupancy("r1", Occupancy::Vacant));
    day.check(
        "11:00",
        expect![[r#"
            07:00 r1 state free
            07:00 r1 status light Green — room is free
            08:45 r1 hvac on Auto 21.5C — pre-conditioning for the meeting at 09:00 (15 min ahead)
            08:45 r1 state starting_soon
            08:45 r1 status light YellowBlinking — room is starting_soon
            08:58 r1 lights 100% — meeting at 09:00 (2 min ahead)
            08:58 r1 sockets on — meeting at 09:00 (2 min ahead)
            08:58 r1 curtains 100% — meeting at 09:00 (2 min ahead)
            09:00 r1 MeetingStarted [b1] — meeting started at 09:00
            09:03 r1 CheckedIn(Panel) [b1] — checked in by door panel
            09:03 r1 state in_meeting
            09:03 r1 status light Red — room is in_meeting
            10:00 r1 usage [b1]: booked 09:00–10:00, came 09:03, left 10:00, occupied 58 min, devices on 75 min
            10:00 r1 Ended [b1] — meeting ended at 10:00
            10:00 r1 curtains 100% — meeting ended at 10:00
            10:00 r1 lights off — meeting ended at 10:00
            10:00 r1 sockets off — meeting ended at 10:00
            10:00 r1 hvac off — meeting ended at 10:00
            10:00 r1 state free
            10:00 r1 status light Green — room is free
        "#]],
    );
}

#[test]
fn nobody_checks_in_and_the_booking_is_released_as_a_no_show() {
    let mut day = Day::new(vec![room("r1")]);
    day.at("08:00", booking("b1", "r1", "09:00", "10:00"));
    day.at("08:00", occupancy("r1", Occupancy::Vacant));
    day.check(
        "10:30",
        expect![[r#"
            07:00 r1 state free
            07:00 r1 status light Green — room is free
            08:45 r1 hvac on Auto 21.5C — pre-conditioning for the meeting at 09:00 (15 min ahead)
            08:45 r1 state starting_soon
            08:45 r1 status light YellowBlinking — room is starting_soon
            08:58 r1 lights 100% — meeting at 09:00 (2 min ahead)
            08:58 r1 sockets on — meeting at 09:00 (2 min ahead)
            08:58 r1 curtains 100% — meeting at 09:00 (2 min ahead)
            09:00 r1 MeetingStarted [b1] — meeting started at 09:00
            09:03 r1 lights 30% — nobody seen since 08:58: lights step down after 5 min
            09:10 r1 usage [b1]: booked 09:00–10:00, came -, left 09:10, occupied 0 min, devices on 25 min, released NoShow
            09:10 r1 Released(NoShow) [b1] — no check-in by 09:10 (policy: 10 min)
            09:10 r1 NoShowStrike { organizer: "ana@example.com" } [b1] — no check-in by 09:10 (policy: 10 min)
            09:10 r1 curtains 100% — no check-in by 09:10 (policy: 10 min)
            09:10 r1 lights off — no check-in by 09:10 (policy: 10 min)
            09:10 r1 sockets off — no check-in by 09:10 (policy: 10 min)
            09:10 r1 hvac off — no check-in by 09:10 (policy: 10 min)
            09:10 r1 state free
            09:10 r1 status light Green — room is free
        "#]],
    );
}

#[test]
fn an_emptied_meeting_steps_lights_down_then_is_released_for_vacancy() {
    let mut day = Day::new(vec![room("r1")]);
    day.at("08:00", booking("b1", "r1", "09:00", "11:00"));
    day.at("09:01", occupancy("r1", Occupancy::Occupied));
    day.at("09:02", check_in("r1"));
    day.at("09:20", occupancy("r1", Occupancy::Vacant));
    day.check(
        "10:00",
        expect![[r#"
            07:00 r1 state free
            07:00 r1 status light Green — room is free
            08:45 r1 hvac on Auto 21.5C — pre-conditioning for the meeting at 09:00 (15 min ahead)
            08:45 r1 state starting_soon
            08:45 r1 status light YellowBlinking — room is starting_soon
            08:58 r1 lights 100% — meeting at 09:00 (2 min ahead)
            08:58 r1 sockets on — meeting at 09:00 (2 min ahead)
            08:58 r1 curtains 100% — meeting at 09:00 (2 min ahead)
            09:00 r1 MeetingStarted [b1] — meeting started at 09:00
            09:02 r1 CheckedIn(Panel) [b1] — checked in by door panel
            09:02 r1 state in_meeting
            09:02 r1 status light Red — room is in_meeting
            09:25 r1 lights 30% — nobody seen since 09:20: lights step down after 5 min
            09:35 r1 usage [b1]: booked 09:00–11:00, came 09:02, left 09:35, occupied 19 min, devices on 50 min, released Vacancy
            09:35 r1 Released(Vacancy) [b1] — nobody seen since 09:20 (policy: 15 min)
            09:35 r1 curtains 100% — nobody seen since 09:20 (policy: 15 min)
            09:35 r1 lights off — nobody seen since 09:20 (policy: 15 min)
            09:35 r1 sockets off — nobody seen since 09:20 (policy: 15 min)
            09:35 r1 hvac off — nobody seen since 09:20 (policy: 15 min)
            09:35 r1 state free
            09:35 r1 status light Green — room is free
        "#]],
    );
}

#[test]
fn presence_returning_before_release_restores_the_lights() {
    let mut day = Day::new(vec![room("r1")]);
    day.at("08:00", booking("b1", "r1", "09:00", "10:00"));
    day.at("09:01", check_in("r1"));
    day.at("09:10", occupancy("r1", Occupancy::Vacant));
    day.at("09:18", occupancy("r1", Occupancy::Occupied));
    day.check(
        "09:59",
        expect![[r#"
        07:00 r1 state free
        07:00 r1 status light Green — room is free
        08:45 r1 hvac on Auto 21.5C — pre-conditioning for the meeting at 09:00 (15 min ahead)
        08:45 r1 state starting_soon
        08:45 r1 status light YellowBlinking — room is starting_soon
        08:58 r1 lights 100% — meeting at 09:00 (2 min ahead)
        08:58 r1 sockets on — meeting at 09:00 (2 min ahead)
        08:58 r1 curtains 100% — meeting at 09:00 (2 min ahead)
        09:00 r1 MeetingStarted [b1] — meeting started at 09:00
        09:01 r1 CheckedIn(Panel) [b1] — checked in by door panel
        09:01 r1 state in_meeting
        09:01 r1 status light Red — room is in_meeting
        09:15 r1 lights 30% — nobody seen since 09:10: lights step down after 5 min
        09:18 r1 lights 100% — presence again: lights restored
    "#]],
    );
}

#[test]
fn people_staying_after_the_end_get_a_staged_shutdown_when_they_leave() {
    let mut day = Day::new(vec![room("r1")]);
    day.at("08:00", booking("b1", "r1", "09:00", "10:00"));
    day.at("08:59", occupancy("r1", Occupancy::Occupied));
    day.at("09:00", check_in("r1"));
    day.at("10:07", occupancy("r1", Occupancy::Vacant));
    day.check("11:00", expect![[r#"
        07:00 r1 state free
        07:00 r1 status light Green — room is free
        08:45 r1 hvac on Auto 21.5C — pre-conditioning for the meeting at 09:00 (15 min ahead)
        08:45 r1 state starting_soon
        08:45 r1 status light YellowBlinking — room is starting_soon
        08:58 r1 lights 100% — meeting at 09:00 (2 min ahead)
        08:58 r1 sockets on — meeting at 09:00 (2 min ahead)
        08:58 r1 curtains 100% — meeting at 09:00 (2 min ahead)
        09:00 r1 MeetingStarted [b1] — meeting started at 09:00
        09:00 r1 CheckedIn(Panel) [b1] — checked in by door panel
        09:00 r1 state in_meeting
        09:00 r1 status light Red — room is in_meeting
        10:00 r1 usage [b1]: booked 09:00–10:00, came 09:00, left 10:00, occupied 60 min, devices on 75 min
        10:00 r1 Ended [b1] — meeting ended at 10:00 with people still in the room: devices stay on until it is empty
        10:00 r1 state occupied
        10:00 r1 status light Red — room is occupied
        10:12 r1 lights 30% — nobody seen since 10:07: lights step down after 5 min
        10:22 r1 curtains 100% — room empty since 10:07: everything off after 15 min
        10:22 r1 lights off — room empty since 10:07: everything off after 15 min
        10:22 r1 sockets off — room empty since 10:07: everything off after 15 min
        10:22 r1 hvac off — room empty since 10:07: everything off after 15 min
        10:22 r1 state free
        10:22 r1 status light Green — room is free
    "#]]);
}

#[test]
fn back_to_back_meetings_keep_the_room_as_it_is() {
    let mut day = Day::new(vec![room("r1")]);
    day.at("08:00", booking("b1", "r1", "09:00", "10:00"));
    day.at("08:00", booking("b2", "r1", "10:00", "11:00"));
    day.at("09:00", check_in("r1"));
    day.at("10:02", check_in("r1"));
    day.at("10:30", occupancy("r1", Occupancy::Vacant));
    day.check(
        "11:30",
        expect![[r#"
            07:00 r1 state free
            07:00 r1 status light Green — room is free
            08:45 r1 hvac on Auto 21.5C — pre-conditioning for the meeting at 09:00 (15 min ahead)
            08:45 r1 state starting_soon
            08:45 r1 status light YellowBlinking — room is starting_soon
            08:58 r1 lights 100% — meeting at 09:00 (2 min ahead)
            08:58 r1 sockets on — meeting at 09:00 (2 min ahead)
            08:58 r1 curtains 100% — meeting at 09:00 (2 min ahead)
            09:00 r1 MeetingStarted [b1] — meeting started at 09:00
            09:00 r1 CheckedIn(Panel) [b1] — checked in by door panel
            09:00 r1 state in_meeting
            09:00 r1 status light Red — room is in_meeting
            10:00 r1 usage [b1]: booked 09:00–10:00, came 09:00, left 10:00, occupied 0 min, devices on 75 min
            10:00 r1 Ended [b1] — next meeting at 10:00 follows: the room stays as it is
            10:00 r1 MeetingStarted [b2] — meeting started at 10:00
            10:00 r1 state starting_soon
            10:00 r1 status light YellowBlinking — room is starting_soon
            10:02 r1 CheckedIn(Panel) [b2] — checked in by door panel
            10:02 r1 state in_meeting
            10:02 r1 status light Red — room is in_meeting
            10:35 r1 lights 30% — nobody seen since 10:30: lights step down after 5 min
            10:45 r1 usage [b2]: booked 10:00–11:00, came 10:02, left 10:45, occupied 0 min, devices on 45 min, released Vacancy
            10:45 r1 Released(Vacancy) [b2] — nobody seen since 10:30 (policy: 15 min)
            10:45 r1 curtains 100% — nobody seen since 10:30 (policy: 15 min)
            10:45 r1 lights off — nobody seen since 10:30 (policy: 15 min)
            10:45 r1 sockets off — nobody seen since 10:30 (policy: 15 min)
            10:45 r1 hvac off — nobody seen since 10:30 (policy: 15 min)
            10:45 r1 state free
            10:45 r1 status light Green — room is free
        "#]],
    );
}

#[test]
fn an_instant_use_room_is_occupied_by_presence_and_freed_by_absence() {
    let mut huddle = RoomConfig::new("huddle", "Huddle", RoomKind::InstantUse);
    huddle.equipment = Equipment {
        lights: true,
        status_light: true,
        ..Equipment::NONE
    };
    let mut day = Day::new(vec![huddle]);
    day.at("09:00", occupancy("huddle", Occupancy::Occupied));
    day.at("09:40", occupancy("huddle", Occupancy::Vacant));
    day.at("09:43", occupancy("huddle", Occupancy::Occupied));
    day.at("09:50", occupancy("huddle", Occupancy::Vacant));
    day.check(
        "10:30",
        expect![[r#"
            07:00 huddle state free
            07:00 huddle status light Green — room is free
            09:00:30 huddle WalkInStarted — presence in an instant-use room
            09:00:30 huddle lights 100% — presence in an instant-use room
            09:00:30 huddle state occupied
            09:00:30 huddle status light Red — room is occupied
            09:55 huddle lights 30% — nobody seen since 09:50: lights step down after 5 min
            10:05 huddle WalkInEnded — room empty since 09:50: everything off after 15 min
            10:05 huddle lights off — room empty since 09:50: everything off after 15 min
            10:05 huddle state free
            10:05 huddle status light Green — room is free
        "#]],
    );
}

#[test]
fn presence_checks_in_where_the_policy_allows_it() {
    let mut cfg = room("r1");
    cfg.policy.checkin_on_presence = true;
    let mut day = Day::new(vec![cfg]);
    day.at("08:00", booking("b1", "r1", "09:00", "09:30"));
    day.at("08:30", occupancy("r1", Occupancy::Occupied));
    day.check("09:31", expect![[r#"
        07:00 r1 state free
        07:00 r1 status light Green — room is free
        08:45 r1 CheckedIn(Presence) [b1] — checked in by presence
        08:45 r1 hvac on Auto 21.5C — pre-conditioning for the meeting at 09:00 (15 min ahead)
        08:45 r1 state starting_soon
        08:45 r1 status light YellowBlinking — room is starting_soon
        08:58 r1 lights 100% — meeting at 09:00 (2 min ahead)
        08:58 r1 sockets on — meeting at 09:00 (2 min ahead)
        08:58 r1 curtains 100% — meeting at 09:00 (2 min ahead)
        09:00 r1 MeetingStarted [b1] — meeting started at 09:00
        09:00 r1 state in_meeting
        09:00 r1 status light Red — room is in_meeting
        09:30 r1 usage [b1]: booked 09:00–09:30, came 08:45, left 09:30, occupied 30 min, devices on 45 min
        09:30 r1 Ended [b1] — meeting ended at 09:30 with people still in the room: devices stay on until it is empty
        09:30 r1 state occupied
        09:30 r1 status light Red — room is occupied
    "#]]);
}

#[test]
fn an_unavailable_sensor_never_releases_a_running_meeting() {
    let mut day = Day::new(vec![room("r1")]);
    day.at("08:00", booking("b1", "r1", "09:00", "10:00"));
    day.at("09:00", check_in("r1"));
    day.at("09:05", occupancy("r1", Occupancy::Unknown));
    day.check(
        "10:01",
        expect![[r#"
            07:00 r1 state free
            07:00 r1 status light Green — room is free
            08:45 r1 hvac on Auto 21.5C — pre-conditioning for the meeting at 09:00 (15 min ahead)
            08:45 r1 state starting_soon
            08:45 r1 status light YellowBlinking — room is starting_soon
            08:58 r1 lights 100% — meeting at 09:00 (2 min ahead)
            08:58 r1 sockets on — meeting at 09:00 (2 min ahead)
            08:58 r1 curtains 100% — meeting at 09:00 (2 min ahead)
            09:00 r1 MeetingStarted [b1] — meeting started at 09:00
            09:00 r1 CheckedIn(Panel) [b1] — checked in by door panel
            09:00 r1 state in_meeting
            09:00 r1 status light Red — room is in_meeting
            10:00 r1 usage [b1]: booked 09:00–10:00, came 09:00, left 10:00, occupied 0 min, devices on 75 min
            10:00 r1 Ended [b1] — meeting ended at 10:00
            10:00 r1 curtains 100% — meeting ended at 10:00
            10:00 r1 lights off — meeting ended at 10:00
            10:00 r1 sockets off — meeting ended at 10:00
            10:00 r1 hvac off — meeting ended at 10:00
            10:00 r1 state free
            10:00 r1 status light Green — room is free
        "#]],
    );
}

#[test]
fn cancelling_a_running_meeting_ends_it_and_cancelling_a_prepared_one_undoes_it() {
    let mut day = Day::new(vec![room("r1")]);
    day.at("08:00", booking("b1", "r1", "09:00", "10:00"));
    day.at("08:00", booking("b2", "r1", "11:00", "12:00"));
    day.at("09:05", check_in("r1"));
    let cancel = |id: &str| Event::BookingCancelled {
        room: RoomId::from("r1"),
        booking: BookingId::from(id),
    };
    day.at("09:30", cancel("b1"));
    day.at("10:50", cancel("b2"));
    day.check(
        "12:00",
        expect![[r#"
            07:00 r1 state free
            07:00 r1 status light Green — room is free
            08:45 r1 hvac on Auto 21.5C — pre-conditioning for the meeting at 09:00 (15 min ahead)
            08:45 r1 state starting_soon
            08:45 r1 status light YellowBlinking — room is starting_soon
            08:58 r1 lights 100% — meeting at 09:00 (2 min ahead)
            08:58 r1 sockets on — meeting at 09:00 (2 min ahead)
            08:58 r1 curtains 100% — meeting at 09:00 (2 min ahead)
            09:00 r1 MeetingStarted [b1] — meeting started at 09:00
            09:05 r1 CheckedIn(Panel) [b1] — checked in by door panel
            09:05 r1 state in_meeting
            09:05 r1 status light Red — room is in_meeting
            09:30 r1 usage [b1]: booked 09:00–10:00, came 09:05, left 09:30, occupied 0 min, devices on 45 min
            09:30 r1 Cancelled [b1] — booking cancelled
            09:30 r1 curtains 100% — booking cancelled
            09:30 r1 lights off — booking cancelled
            09:30 r1 sockets off — booking cancelled
            09:30 r1 hvac off — booking cancelled
            09:30 r1 state free
            09:30 r1 status light Green — room is free
            10:45 r1 hvac on Auto 21.5C — pre-conditioning for the meeting at 11:00 (15 min ahead)
            10:45 r1 state starting_soon
            10:45 r1 status light YellowBlinking — room is starting_soon
            10:50 r1 Cancelled [b2] — booking cancelled
            10:50 r1 curtains 100% — booking cancelled
            10:50 r1 lights off — booking cancelled
            10:50 r1 sockets off — booking cancelled
            10:50 r1 hvac off — booking cancelled
            10:50 r1 state free
            10:50 r1 status light Green — room is free
        "#]],
    );
}

#[test]
fn a_scene_with_a_wait_runs_its_steps_in_time_and_a_check_in_without_booking_is_refused() {
    let mut cfg = room("r1");
    cfg.extra_scenes.push(std::sync::Arc::new(Scene::new(
        "presentation",
        vec![
            Step::Do(Action::Curtains { position: 0 }),
            Step::Wait(Span::seconds(30)),
            Step::Do(Action::Lights {
                on: true,
                level: Some(40),
            }),
        ],
    )));
    let mut day = Day::new(vec![cfg]);
    day.at("09:00", occupancy("r1", Occupancy::Occupied));
    day.at(
        "09:00",
        Event::RunScene {
            room: RoomId::from("r1"),
            scene: "presentation".into(),
            by: "installer".into(),
        },
    );
    day.at("09:02", check_in("r1"));
    day.check(
        "09:05",
        expect![[r#"
            07:00 r1 state free
            07:00 r1 status light Green — room is free
            09:00 r1 OverrideStarted { until: Timestamp(36000000) } — manual control: automation holds until 10:00
            09:00 r1 curtains 0% — scene 'presentation' run by installer
            09:00:30 r1 lights 40% — scene 'presentation' run by installer
            09:02 r1 CheckInRefused — no meeting to check in to right now
        "#]],
    );
}

#[test]
fn refused_events_change_nothing() {
    let mut engine = Engine::new(vec![
        room("r1"),
        RoomConfig::new("store", "Store", RoomKind::Closed),
    ])
    .expect("rooms");
    let now = t("08:00");
    engine.handle_timeout(now);
    while engine.poll().is_some() {}
    let err = engine
        .handle_event(now, booking("b1", "nowhere", "09:00", "10:00"))
        .expect_err("unknown room");
    assert_eq!(err, EngineError::UnknownRoom(RoomId::from("nowhere")));
    let err = engine
        .handle_event(now, booking("b1", "store", "09:00", "10:00"))
        .expect_err("closed room");
    assert_eq!(
        err.to_string(),
        "room 'store' is closed: it takes no bookings, check-ins or scenes"
    );
    let err = engine
        .handle_event(now, booking("b1", "r1", "10:00", "09:00"))
        .expect_err("backwards booking");
    assert_eq!(err.to_string(), "booking 'b1' ends before it starts");
    let err = engine
        .handle_event(
            now,
            Event::RunScene {
                room: RoomId::from("r1"),
                scene: "disco".into(),
                by: "x".into(),
            },
        )
        .expect_err("unknown scene");
    assert_eq!(err.to_string(), "room 'r1' has no scene named 'disco'");
    assert!(engine.poll().is_none());
    assert!(engine.room(&RoomId::from("r1")).expect("r1").next.is_none());
}

#[test]
fn policies_beyond_the_energy_code_are_refused_with_the_field_named() {
    let policy = Policy {
        off_after: Span::minutes(25),
        vacancy_release: Some(Span::minutes(30)),
        dim_after: Span::minutes(26),
        dim_level: 0,
        ..Policy::default()
    };
    let errors: Vec<String> = policy
        .validate()
        .expect_err("invalid")
        .iter()
        .map(ToString::to_string)
        .collect();
    expect![[r#"
        [
            "off_after must not exceed 20 min: energy codes require lights off within 20 min of vacancy (got 25 min)",
            "vacancy_release must not exceed 20 min: energy codes require lights off within 20 min of vacancy (got 30 min)",
            "dim_after (26 min) must be shorter than off_after (25 min): lights step down before everything goes off",
            "dim_level must be between 1 and 99 percent (got 0)",
        ]
    "#]]
    .assert_debug_eq(&errors);
    assert!(Policy::default().validate().is_ok());
}

#[test]
fn a_clock_jump_past_a_whole_booking_retires_it_without_touching_devices() {
    let mut engine = Engine::new(vec![room("r1")]).expect("rooms");
    engine.handle_timeout(t("08:00"));
    engine
        .handle_event(t("08:00"), booking("b1", "r1", "09:00", "10:00"))
        .expect("booking");
    while engine.poll().is_some() {}
    // NTP sets the clock to 12:00 after a long outage.
    engine.handle_timeout(t("12:00"));
    let outputs: Vec<Output> = std::iter::from_fn(|| engine.poll()).collect();
    assert!(
        outputs.iter().all(
            |o| !matches!(o, Output::Command(c) if !matches!(c.action, Action::StatusLight(_)))
        ),
        "no device command for a booking wholly in the past: {outputs:?}"
    );
    assert!(engine.room(&RoomId::from("r1")).expect("r1").next.is_none());
}

fn extend(room: &str, until: &str) -> Event {
    Event::Extend {
        room: RoomId::from(room),
        until: t(until),
        by: "door panel".into(),
    }
}

#[test]
fn extensions_never_run_into_the_next_booking_and_end_now_leaves_at_once() {
    let mut day = Day::new(vec![room("r1")]);
    day.at("08:00", booking("b1", "r1", "09:00", "10:00"));
    day.at("08:00", booking("b2", "r1", "10:30", "11:00"));
    day.at("09:00", check_in("r1"));
    day.at("09:50", extend("r1", "10:15"));
    day.at("10:10", extend("r1", "11:00"));
    day.at("10:20", extend("r1", "10:25"));
    day.at("10:31", check_in("r1"));
    day.at(
        "10:40",
        Event::EndNow {
            room: RoomId::from("r1"),
            by: "door panel".into(),
        },
    );
    day.at("10:41", extend("r1", "11:30"));
    day.check("11:00", expect![[r#"
        07:00 r1 state free
        07:00 r1 status light Green — room is free
        08:45 r1 hvac on Auto 21.5C — pre-conditioning for the meeting at 09:00 (15 min ahead)
        08:45 r1 state starting_soon
        08:45 r1 status light YellowBlinking — room is starting_soon
        08:58 r1 lights 100% — meeting at 09:00 (2 min ahead)
        08:58 r1 sockets on — meeting at 09:00 (2 min ahead)
        08:58 r1 curtains 100% — meeting at 09:00 (2 min ahead)
        09:00 r1 MeetingStarted [b1] — meeting started at 09:00
        09:00 r1 CheckedIn(Panel) [b1] — checked in by door panel
        09:00 r1 state in_meeting
        09:00 r1 status light Red — room is in_meeting
        09:50 r1 Extended { until: Timestamp(36900000) } [b1] — extended to 10:15 by door panel
        10:10 r1 Extended { until: Timestamp(37800000) } [b1] — extended by door panel to 10:30, where the next meeting starts
        10:20 r1 ExtendRefused [b1] — cannot extend: the meeting already ends at 10:30
        10:30 r1 usage [b1]: booked 09:00–10:30, came 09:00, left 10:30, occupied 0 min, devices on 105 min
        10:30 r1 Ended [b1] — next meeting at 10:30 follows: the room stays as it is
        10:30 r1 MeetingStarted [b2] — meeting started at 10:30
        10:30 r1 state starting_soon
        10:30 r1 status light YellowBlinking — room is starting_soon
        10:31 r1 CheckedIn(Panel) [b2] — checked in by door panel
        10:31 r1 state in_meeting
        10:31 r1 status light Red — room is in_meeting
        10:40 r1 usage [b2]: booked 10:30–11:00, came 10:31, left 10:40, occupied 0 min, devices on 10 min
        10:40 r1 Ended [b2] — ended early by door panel
        10:40 r1 curtains 100% — ended early by door panel
        10:40 r1 lights off — ended early by door panel
        10:40 r1 sockets off — ended early by door panel
        10:40 r1 hvac off — ended early by door panel
        10:40 r1 state free
        10:40 r1 status light Green — room is free
        10:41 r1 ExtendRefused — no meeting is running
    "#]]);
}

#[test]
fn a_manual_scene_holds_comfort_automation_then_automation_resumes() {
    let mut cfg = room("r1");
    cfg.policy.override_hold = Span::minutes(20);
    cfg.extra_scenes.push(std::sync::Arc::new(Scene::new(
        "presentation",
        vec![
            Step::Do(Action::Curtains { position: 0 }),
            Step::Do(Action::Lights {
                on: true,
                level: Some(40),
            }),
        ],
    )));
    let mut day = Day::new(vec![cfg]);
    day.at("08:00", booking("b1", "r1", "09:00", "11:00"));
    day.at("09:00", occupancy("r1", Occupancy::Occupied));
    day.at("09:01", check_in("r1"));
    day.at(
        "09:10",
        Event::RunScene {
            room: RoomId::from("r1"),
            scene: "presentation".into(),
            by: "ana".into(),
        },
    );
    // Everyone steps out for a moment: no step-down during the hold...
    day.at("09:12", occupancy("r1", Occupancy::Vacant));
    day.at("09:19", occupancy("r1", Occupancy::Occupied));
    // ...and when the hold ends, the meeting scene comes back.
    day.check("09:45", expect![[r#"
        07:00 r1 state free
        07:00 r1 status light Green — room is free
        08:45 r1 hvac on Auto 21.5C — pre-conditioning for the meeting at 09:00 (15 min ahead)
        08:45 r1 state starting_soon
        08:45 r1 status light YellowBlinking — room is starting_soon
        08:58 r1 lights 100% — meeting at 09:00 (2 min ahead)
        08:58 r1 sockets on — meeting at 09:00 (2 min ahead)
        08:58 r1 curtains 100% — meeting at 09:00 (2 min ahead)
        09:00 r1 MeetingStarted [b1] — meeting started at 09:00
        09:01 r1 CheckedIn(Panel) [b1] — checked in by door panel
        09:01 r1 state in_meeting
        09:01 r1 status light Red — room is in_meeting
        09:10 r1 OverrideStarted { until: Timestamp(34200000) } — manual control: automation holds until 09:30
        09:10 r1 curtains 0% — scene 'presentation' run by ana
        09:10 r1 lights 40% — scene 'presentation' run by ana
        09:30 r1 OverrideEnded — manual hold over: automation resumes
        09:30 r1 lights 100% — manual hold over: automation resumes
        09:30 r1 sockets on — manual hold over: automation resumes
        09:30 r1 curtains 100% — manual hold over: automation resumes
    "#]]);
}

fn card(room: &str, person: Option<&str>, groups: &[&str]) -> Event {
    Event::Credential {
        room: RoomId::from(room),
        presenter: scenes::Presenter {
            person: person.map(Into::into),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        },
    }
}

#[test]
fn the_door_opens_for_the_meeting_people_and_staff_and_a_card_checks_in() {
    let mut cfg = room("r1");
    cfg.equipment.door_lock = true;
    cfg.access.staff_groups = vec!["cleaning".into()];
    let mut day = Day::new(vec![cfg]);
    day.at("08:00", booking("b1", "r1", "09:00", "10:00"));
    day.at("08:00", card("r1", Some("ana@example.com"), &[]));
    day.at("08:50", card("r1", Some("eve@example.com"), &["sales"]));
    day.at("08:52", card("r1", None, &[]));
    day.at("08:55", card("r1", Some("BO@example.com"), &[]));
    day.at("09:30", card("r1", Some("kim@example.com"), &["cleaning"]));
    day.check(
        "09:31",
        expect![[r#"
        07:00 r1 state free
        07:00 r1 status light Green — room is free
        08:00 r1 AccessDenied — no meeting now or soon that ana@example.com could attend
        08:45 r1 hvac on Auto 21.5C — pre-conditioning for the meeting at 09:00 (15 min ahead)
        08:45 r1 state starting_soon
        08:45 r1 status light YellowBlinking — room is starting_soon
        08:50 r1 AccessDenied [b1] — eve@example.com is not invited to this meeting
        08:52 r1 AccessDenied [b1] — an unknown card is not invited to this meeting
        08:55 r1 AccessGranted [b1] — BO@example.com is invited to this meeting
        08:55 r1 door unlocked — BO@example.com is invited to this meeting
        08:55 r1 CheckedIn(Card) [b1] — checked in by card
        08:55:05 r1 door locked — relocked after 5 s
        08:58 r1 lights 100% — meeting at 09:00 (2 min ahead)
        08:58 r1 sockets on — meeting at 09:00 (2 min ahead)
        08:58 r1 curtains 100% — meeting at 09:00 (2 min ahead)
        09:00 r1 MeetingStarted [b1] — meeting started at 09:00
        09:00 r1 state in_meeting
        09:00 r1 status light Red — room is in_meeting
        09:30 r1 AccessGranted — kim@example.com is staff (cleaning)
        09:30 r1 door unlocked — kim@example.com is staff (cleaning)
        09:30:05 r1 door locked — relocked after 5 s
    "#]],
    );
}

#[test]
fn air_quality_rules_switch_with_hysteresis_only_while_the_room_is_in_use() {
    let mut cfg = room("r1");
    cfg.equipment.ventilation = true;
    cfg.air = vec![scenes::AirRule {
        metric: scenes::AirMetric::Co2Ppm,
        on_above: 1000.0,
        off_below: 800.0,
        on: vec![Action::Ventilation { level: 100 }],
        off: vec![Action::Ventilation { level: 30 }],
    }];
    let co2 = |v: Option<f32>| Event::AirQuality {
        room: RoomId::from("r1"),
        metric: scenes::AirMetric::Co2Ppm,
        value: v,
    };
    let mut day = Day::new(vec![cfg]);
    day.at("08:00", co2(Some(1200.0)));
    day.at("08:30", booking("b1", "r1", "09:00", "10:00"));
    day.at("09:00", occupancy("r1", Occupancy::Occupied));
    day.at("09:01", check_in("r1"));
    day.at("09:20", co2(Some(950.0)));
    day.at("09:25", co2(None));
    day.at("09:30", co2(Some(790.0)));
    day.at("09:40", co2(Some(1001.0)));
    day.at("09:59", occupancy("r1", Occupancy::Vacant));
    day.check(
        "10:30",
        expect![[r#"
            07:00 r1 state free
            07:00 r1 status light Green — room is free
            08:45 r1 hvac on Auto 21.5C — pre-conditioning for the meeting at 09:00 (15 min ahead)
            08:45 r1 state starting_soon
            08:45 r1 status light YellowBlinking — room is starting_soon
            08:58 r1 lights 100% — meeting at 09:00 (2 min ahead)
            08:58 r1 sockets on — meeting at 09:00 (2 min ahead)
            08:58 r1 curtains 100% — meeting at 09:00 (2 min ahead)
            09:00 r1 MeetingStarted [b1] — meeting started at 09:00
            09:00 r1 ventilation 100% — CO2 1200 above 1000
            09:01 r1 CheckedIn(Panel) [b1] — checked in by door panel
            09:01 r1 state in_meeting
            09:01 r1 status light Red — room is in_meeting
            09:30 r1 ventilation 30% — CO2 790 back below 800
            09:40 r1 ventilation 100% — CO2 1001 above 1000
            10:00 r1 usage [b1]: booked 09:00–10:00, came 09:01, left 10:00, occupied 59 min, devices on 75 min
            10:00 r1 Ended [b1] — meeting ended at 10:00
            10:00 r1 ventilation off — meeting ended at 10:00
            10:00 r1 curtains 100% — meeting ended at 10:00
            10:00 r1 lights off — meeting ended at 10:00
            10:00 r1 sockets off — meeting ended at 10:00
            10:00 r1 hvac off — meeting ended at 10:00
            10:00 r1 state free
            10:00 r1 status light Green — room is free
        "#]],
    );
}

#[test]
fn a_presence_sensor_that_disappears_mid_meeting_is_reported_and_its_return_too() {
    let mut day = Day::new(vec![room("r1")]);
    day.at("08:00", booking("b1", "r1", "09:00", "10:00"));
    day.at("09:00", occupancy("r1", Occupancy::Occupied));
    day.at("09:01", check_in("r1"));
    day.at("09:10", occupancy("r1", Occupancy::Unknown));
    day.at("09:40", occupancy("r1", Occupancy::Vacant));
    day.check("10:00", expect![[r#"
        07:00 r1 state free
        07:00 r1 status light Green — room is free
        08:45 r1 hvac on Auto 21.5C — pre-conditioning for the meeting at 09:00 (15 min ahead)
        08:45 r1 state starting_soon
        08:45 r1 status light YellowBlinking — room is starting_soon
        08:58 r1 lights 100% — meeting at 09:00 (2 min ahead)
        08:58 r1 sockets on — meeting at 09:00 (2 min ahead)
        08:58 r1 curtains 100% — meeting at 09:00 (2 min ahead)
        09:00 r1 MeetingStarted [b1] — meeting started at 09:00
        09:01 r1 CheckedIn(Panel) [b1] — checked in by door panel
        09:01 r1 state in_meeting
        09:01 r1 status light Red — room is in_meeting
        09:10 r1 SensorUnavailable [b1] — presence sensor unavailable: vacancy release suspended until it is back
        09:40 r1 SensorRestored — presence sensor back
        09:45 r1 lights 30% — nobody seen since 09:40: lights step down after 5 min
        09:55 r1 usage [b1]: booked 09:00–10:00, came 09:01, left 09:55, occupied 10 min, devices on 70 min, released Vacancy
        09:55 r1 Released(Vacancy) [b1] — nobody seen since 09:40 (policy: 15 min)
        09:55 r1 curtains 100% — nobody seen since 09:40 (policy: 15 min)
        09:55 r1 lights off — nobody seen since 09:40 (policy: 15 min)
        09:55 r1 sockets off — nobody seen since 09:40 (policy: 15 min)
        09:55 r1 hvac off — nobody seen since 09:40 (policy: 15 min)
        09:55 r1 state free
        09:55 r1 status light Green — room is free
    "#]]);
}

#[test]
fn someone_walking_past_an_instant_use_room_does_not_occupy_it() {
    let mut huddle = RoomConfig::new("huddle", "Huddle", RoomKind::InstantUse);
    huddle.equipment = Equipment {
        lights: true,
        status_light: true,
        ..Equipment::NONE
    };
    let mut day = Day::new(vec![huddle]);
    day.at("09:00", occupancy("huddle", Occupancy::Occupied));
    day.at("09:00", occupancy("huddle", Occupancy::Vacant));
    day.at("09:10", occupancy("huddle", Occupancy::Occupied));
    day.check(
        "09:12",
        expect![[r#"
        07:00 huddle state free
        07:00 huddle status light Green — room is free
        09:10:30 huddle WalkInStarted — presence in an instant-use room
        09:10:30 huddle lights 100% — presence in an instant-use room
        09:10:30 huddle state occupied
        09:10:30 huddle status light Red — room is occupied
    "#]],
    );
}

#[test]
fn a_booking_moved_or_shortened_mid_meeting_is_followed() {
    let mut day = Day::new(vec![room("r1")]);
    day.at("08:00", booking("b1", "r1", "09:00", "11:00"));
    day.at("09:00", occupancy("r1", Occupancy::Occupied));
    day.at("09:02", check_in("r1"));
    // The organizer shortens the meeting in their calendar while it runs.
    day.at("09:30", booking("b1", "r1", "09:00", "09:45"));
    day.at("09:46", occupancy("r1", Occupancy::Vacant));
    day.check("10:10", expect![[r#"
        07:00 r1 state free
        07:00 r1 status light Green — room is free
        08:45 r1 hvac on Auto 21.5C — pre-conditioning for the meeting at 09:00 (15 min ahead)
        08:45 r1 state starting_soon
        08:45 r1 status light YellowBlinking — room is starting_soon
        08:58 r1 lights 100% — meeting at 09:00 (2 min ahead)
        08:58 r1 sockets on — meeting at 09:00 (2 min ahead)
        08:58 r1 curtains 100% — meeting at 09:00 (2 min ahead)
        09:00 r1 MeetingStarted [b1] — meeting started at 09:00
        09:02 r1 CheckedIn(Panel) [b1] — checked in by door panel
        09:02 r1 state in_meeting
        09:02 r1 status light Red — room is in_meeting
        09:45 r1 usage [b1]: booked 09:00–09:45, came 09:02, left 09:45, occupied 45 min, devices on 60 min
        09:45 r1 Ended [b1] — meeting ended at 09:45 with people still in the room: devices stay on until it is empty
        09:45 r1 state occupied
        09:45 r1 status light Red — room is occupied
        09:51 r1 lights 30% — nobody seen since 09:46: lights step down after 5 min
        10:01 r1 curtains 100% — room empty since 09:46: everything off after 15 min
        10:01 r1 lights off — room empty since 09:46: everything off after 15 min
        10:01 r1 sockets off — room empty since 09:46: everything off after 15 min
        10:01 r1 hvac off — room empty since 09:46: everything off after 15 min
        10:01 r1 state free
        10:01 r1 status light Green — room is free
    "#]]);
}

#[test]
fn the_clock_going_back_after_an_ntp_correction_neither_repeats_nor_loses_steps() {
    let mut engine = Engine::new(vec![room("r1")]).expect("rooms");
    let mut log = Vec::new();
    let mut run = |engine: &mut Engine, now: Timestamp| {
        engine.handle_timeout(now);
        while let Some(o) = engine.poll() {
            if let Output::Command(c) = o {
                log.push(format!("{} {}", c.at, c.action));
            }
        }
    };
    run(&mut engine, t("08:00"));
    engine
        .handle_event(t("08:00"), booking("b1", "r1", "09:00", "10:00"))
        .expect("booking");
    run(&mut engine, t("08:58"));
    // NTP sets the clock 20 minutes back, then time runs on.
    run(&mut engine, t("08:38"));
    run(&mut engine, t("08:59"));
    run(&mut engine, t("09:11"));
    expect![[r#"
        [
            "08:00 status light Green",
            "08:58 hvac on Auto 21.5C",
            "08:58 lights 100%",
            "08:58 sockets on",
            "08:58 curtains 100%",
            "08:58 status light YellowBlinking",
            "09:11 curtains 100%",
            "09:11 lights off",
            "09:11 sockets off",
            "09:11 hvac off",
            "09:11 status light Green",
        ]
    "#]]
    .assert_debug_eq(&log);
}

#[test]
fn a_meeting_restored_after_a_restart_keeps_its_check_in_and_its_devices_come_back() {
    let mut engine = Engine::new(vec![room("r1")]).expect("rooms");
    let Event::BookingUpserted(b) = booking("b1", "r1", "09:00", "10:00") else {
        unreachable!("a booking event")
    };
    // The gateway restarts at 09:20; the store says the meeting was checked in at 09:02.
    engine
        .restore_booking(b, Some(t("09:02")))
        .expect("restored");
    engine.handle_timeout(t("09:20"));
    let log: Vec<String> = std::iter::from_fn(|| engine.poll())
        .map(|o| match o {
            Output::Command(c) => format!("{} {}", c.at, c.action),
            Output::Outcome(o) => format!("{} {:?}", o.at, o.kind),
            Output::State { at, state, .. } => format!("{at} state {state}"),
        })
        .collect();
    expect![[r#"
        [
            "09:20 MeetingStarted",
            "09:20 hvac on Auto 21.5C",
            "09:20 lights 100%",
            "09:20 sockets on",
            "09:20 curtains 100%",
            "09:20 state in_meeting",
            "09:20 status light Red",
        ]
    "#]]
    .assert_debug_eq(&log);
}

impl Day {
    /// A site reload at `when`: the room takes `cfg`, keeping its bookings and state.
    fn reconfigure(&mut self, when: &str, cfg: RoomConfig) {
        self.run_until(when);
        self.log
            .push(format!("{} {} (reconfigured)", self.now, cfg.id));
        self.engine
            .reconfigure_room(self.now, cfg)
            .expect("room reconfigured");
        self.drain();
    }
}

#[test]
fn a_shorter_no_show_window_applied_mid_day_releases_the_next_meeting_sooner() {
    let mut day = Day::new(vec![room("r1")]);
    day.at("08:00", occupancy("r1", Occupancy::Vacant));
    day.at("08:00", booking("b1", "r1", "09:00", "09:30"));
    day.at("08:00", booking("b2", "r1", "11:00", "11:30"));
    // b1 is released on the old rule (10 min); the site file then says 5 min.
    let mut cfg = room("r1");
    cfg.policy.no_show_after = Span::minutes(5);
    day.reconfigure("10:00", cfg);
    day.check(
        "11:30",
        expect![[r#"
            07:00 r1 state free
            07:00 r1 status light Green — room is free
            08:45 r1 hvac on Auto 21.5C — pre-conditioning for the meeting at 09:00 (15 min ahead)
            08:45 r1 state starting_soon
            08:45 r1 status light YellowBlinking — room is starting_soon
            08:58 r1 lights 100% — meeting at 09:00 (2 min ahead)
            08:58 r1 sockets on — meeting at 09:00 (2 min ahead)
            08:58 r1 curtains 100% — meeting at 09:00 (2 min ahead)
            09:00 r1 MeetingStarted [b1] — meeting started at 09:00
            09:03 r1 lights 30% — nobody seen since 08:58: lights step down after 5 min
            09:10 r1 usage [b1]: booked 09:00–09:30, came -, left 09:10, occupied 0 min, devices on 25 min, released NoShow
            09:10 r1 Released(NoShow) [b1] — no check-in by 09:10 (policy: 10 min)
            09:10 r1 NoShowStrike { organizer: "ana@example.com" } [b1] — no check-in by 09:10 (policy: 10 min)
            09:10 r1 curtains 100% — no check-in by 09:10 (policy: 10 min)
            09:10 r1 lights off — no check-in by 09:10 (policy: 10 min)
            09:10 r1 sockets off — no check-in by 09:10 (policy: 10 min)
            09:10 r1 hvac off — no check-in by 09:10 (policy: 10 min)
            09:10 r1 state free
            09:10 r1 status light Green — room is free
            10:00 r1 (reconfigured)
            10:45 r1 hvac on Auto 21.5C — pre-conditioning for the meeting at 11:00 (15 min ahead)
            10:45 r1 state starting_soon
            10:45 r1 status light YellowBlinking — room is starting_soon
            10:58 r1 lights 100% — meeting at 11:00 (2 min ahead)
            10:58 r1 sockets on — meeting at 11:00 (2 min ahead)
            10:58 r1 curtains 100% — meeting at 11:00 (2 min ahead)
            11:00 r1 MeetingStarted [b2] — meeting started at 11:00
            11:03 r1 lights 30% — nobody seen since 10:58: lights step down after 5 min
            11:05 r1 usage [b2]: booked 11:00–11:30, came -, left 11:05, occupied 0 min, devices on 20 min, released NoShow
            11:05 r1 Released(NoShow) [b2] — no check-in by 11:05 (policy: 5 min)
            11:05 r1 NoShowStrike { organizer: "ana@example.com" } [b2] — no check-in by 11:05 (policy: 5 min)
            11:05 r1 curtains 100% — no check-in by 11:05 (policy: 5 min)
            11:05 r1 lights off — no check-in by 11:05 (policy: 5 min)
            11:05 r1 sockets off — no check-in by 11:05 (policy: 5 min)
            11:05 r1 hvac off — no check-in by 11:05 (policy: 5 min)
            11:05 r1 state free
            11:05 r1 status light Green — room is free
        "#]],
    );
}

#[test]
fn a_changed_meeting_scene_is_run_again_in_the_running_meeting_and_not_in_an_idle_room() {
    let mut day = Day::new(vec![room("r1"), room("r2")]);
    day.at("08:00", booking("b1", "r1", "09:00", "10:00"));
    day.at("08:00", occupancy("r1", Occupancy::Occupied));
    day.at("09:01", check_in("r1"));
    let dimmer = |id: &str| {
        let mut cfg = room(id);
        cfg.meeting_scene = std::sync::Arc::new(Scene::new(
            "meeting",
            vec![
                Step::Do(Action::Lights {
                    on: true,
                    level: Some(60),
                }),
                Step::Do(Action::Curtains { position: 50 }),
            ],
        ));
        cfg
    };
    day.reconfigure("09:30", dimmer("r1"));
    // r2 has no meeting: nothing to re-assert.
    day.reconfigure("09:30", dimmer("r2"));
    day.check(
        "09:45",
        expect![[r#"
        07:00 r1 state free
        07:00 r1 status light Green — room is free
        07:00 r2 state free
        07:00 r2 status light Green — room is free
        08:45 r1 hvac on Auto 21.5C — pre-conditioning for the meeting at 09:00 (15 min ahead)
        08:45 r1 state starting_soon
        08:45 r1 status light YellowBlinking — room is starting_soon
        08:58 r1 lights 100% — meeting at 09:00 (2 min ahead)
        08:58 r1 sockets on — meeting at 09:00 (2 min ahead)
        08:58 r1 curtains 100% — meeting at 09:00 (2 min ahead)
        09:00 r1 MeetingStarted [b1] — meeting started at 09:00
        09:01 r1 CheckedIn(Panel) [b1] — checked in by door panel
        09:01 r1 state in_meeting
        09:01 r1 status light Red — room is in_meeting
        09:30 r1 (reconfigured)
        09:30 r1 lights 60% — the room's settings changed
        09:30 r1 curtains 50% — the room's settings changed
        09:30 r2 (reconfigured)
    "#]],
    );
}

#[test]
fn a_running_meeting_past_its_new_no_show_deadline_is_released_at_the_reload() {
    let mut day = Day::new(vec![room("r1")]);
    day.at("08:00", occupancy("r1", Occupancy::Vacant));
    day.at("08:00", booking("b1", "r1", "09:00", "10:00"));
    day.run_until("09:07");
    day.log.clear();
    let mut cfg = room("r1");
    cfg.policy.no_show_after = Span::minutes(5);
    day.reconfigure("09:07", cfg);
    day.check("09:20", expect![[r#"
        09:07 r1 (reconfigured)
        09:07 r1 usage [b1]: booked 09:00–10:00, came -, left 09:07, occupied 0 min, devices on 22 min, released NoShow
        09:07 r1 Released(NoShow) [b1] — no check-in by 09:05 (policy: 5 min)
        09:07 r1 NoShowStrike { organizer: "ana@example.com" } [b1] — no check-in by 09:05 (policy: 5 min)
        09:07 r1 curtains 100% — no check-in by 09:05 (policy: 5 min)
        09:07 r1 lights off — no check-in by 09:05 (policy: 5 min)
        09:07 r1 sockets off — no check-in by 09:05 (policy: 5 min)
        09:07 r1 hvac off — no check-in by 09:05 (policy: 5 min)
        09:07 r1 state free
        09:07 r1 status light Green — room is free
    "#]]);
}

#[test]
fn rooms_added_and_removed_while_running_keep_the_others_going() {
    let mut day = Day::new(vec![room("r1")]);
    day.at("08:00", booking("b1", "r1", "09:00", "10:00"));
    day.run_until("08:30");
    day.engine.add_room(room("r2")).expect("added");
    assert_eq!(
        day.engine.add_room(room("r2")),
        Err(EngineError::DuplicateRoom(RoomId::from("r2")))
    );
    day.at("08:31", booking("b2", "r2", "09:30", "10:00"));
    // r1 leaves the site with its meeting still to come: the engine hands it back.
    let kept = day
        .engine
        .remove_room(&RoomId::from("r1"))
        .expect("removed");
    assert_eq!(
        kept.iter().map(|b| b.id.as_str()).collect::<Vec<_>>(),
        ["b1"]
    );
    assert!(day.engine.room(&RoomId::from("r1")).is_none());
    assert_eq!(
        day.engine.remove_room(&RoomId::from("r1")),
        Err(EngineError::UnknownRoom(RoomId::from("r1")))
    );
    day.check(
        "09:31",
        expect![[r#"
        07:00 r1 state free
        07:00 r1 status light Green — room is free
        08:30 r2 state free
        08:30 r2 status light Green — room is free
        09:15 r2 hvac on Auto 21.5C — pre-conditioning for the meeting at 09:30 (15 min ahead)
        09:15 r2 state starting_soon
        09:15 r2 status light YellowBlinking — room is starting_soon
        09:28 r2 lights 100% — meeting at 09:30 (2 min ahead)
        09:28 r2 sockets on — meeting at 09:30 (2 min ahead)
        09:28 r2 curtains 100% — meeting at 09:30 (2 min ahead)
        09:30 r2 MeetingStarted [b2] — meeting started at 09:30
    "#]],
    );
}

#[test]
fn a_room_closed_by_a_reload_ends_its_meeting_with_the_leave_scene_and_keeps_the_booking() {
    let mut day = Day::new(vec![room("r1")]);
    day.at("08:00", booking("b1", "r1", "09:00", "10:00"));
    day.at("08:00", occupancy("r1", Occupancy::Occupied));
    day.at("09:01", check_in("r1"));
    day.at("09:20", booking("b2", "r1", "10:30", "11:00"));
    day.run_until("09:30");
    day.log.clear();
    let mut closed = room("r1");
    closed.kind = RoomKind::Closed;
    day.reconfigure("09:30", closed);
    // Opened again within the booking: the meeting ended once and is not started again;
    // the next booking runs as usual.
    day.reconfigure("09:40", room("r1"));
    day.check("10:31", expect![[r#"
        09:30 r1 (reconfigured)
        09:30 r1 usage [b1]: booked 09:00–10:00, came 09:01, left 09:30, occupied 30 min, devices on 45 min
        09:30 r1 Ended [b1] — the room's settings changed
        09:30 r1 curtains 100% — the room's settings changed
        09:30 r1 lights off — the room's settings changed
        09:30 r1 sockets off — the room's settings changed
        09:30 r1 hvac off — the room's settings changed
        09:30 r1 state closed
        09:30 r1 status light Red — room is closed
        09:40 r1 (reconfigured)
        09:40 r1 state free
        09:40 r1 status light Green — room is free
        10:15 r1 hvac on Auto 21.5C — pre-conditioning for the meeting at 10:30 (15 min ahead)
        10:15 r1 state starting_soon
        10:15 r1 status light YellowBlinking — room is starting_soon
        10:28 r1 lights 100% — meeting at 10:30 (2 min ahead)
        10:28 r1 sockets on — meeting at 10:30 (2 min ahead)
        10:28 r1 curtains 100% — meeting at 10:30 (2 min ahead)
        10:30 r1 MeetingStarted [b2] — meeting started at 10:30
    "#]]);
}
