//! A deterministic month on a 50-room floor: random bookings, cancellations, late arrivals,
//! no-shows, presence noise, sensor outages and cards at the door, checked against the rules
//! that must always hold. The same seed always gives the same log.

use std::collections::{BTreeMap, HashMap, HashSet};

use scenes::{
    Action, Booking, BookingId, CheckInMethod, Engine, Equipment, Event, Occupancy, OutcomeKind,
    Output, Presenter, ReleaseCause, RoomConfig, RoomId, RoomKind, Span, Timestamp,
};

/// SplitMix64: small, fast, and the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn minutes(&mut self, lo: i64, hi: i64) -> Span {
        Span::minutes(lo + self.below((hi - lo + 1) as u64) as i64)
    }
}

const DAY: i64 = 24 * 60 * 60 * 1000;
const ROOMS: usize = 50;
const DAYS: i64 = 30;

fn at(day: i64, minute: i64) -> Timestamp {
    // 2026-03-02 00:00 UTC, a Monday.
    Timestamp::from_millis(1_772_409_600_000 + day * DAY + minute * 60_000)
}

#[derive(Debug, Clone)]
enum Input {
    Engine(Event),
    /// Nothing happens: a chance for the checker to look at the rooms.
    Tick,
}

struct Floor {
    rooms: Vec<RoomConfig>,
    inputs: BTreeMap<(Timestamp, u64), Input>,
    seq: u64,
    bookings: HashMap<BookingId, Booking>,
}

impl Floor {
    fn push(&mut self, t: Timestamp, input: Input) {
        self.seq += 1;
        self.inputs.insert((t, self.seq), input);
    }

    fn presence(&mut self, room: &RoomId, from: Timestamp, to: Timestamp) {
        let ev = |o| {
            Input::Engine(Event::Occupancy {
                room: room.clone(),
                occupancy: o,
            })
        };
        self.push(from, ev(Occupancy::Occupied));
        self.push(to, ev(Occupancy::Vacant));
    }
}

fn generate(seed: u64) -> Floor {
    let mut rng = Rng(seed);
    let mut rooms = Vec::new();
    for i in 0..ROOMS {
        let kind = match i {
            0..=39 => RoomKind::Bookable,
            40..=47 => RoomKind::InstantUse,
            _ => RoomKind::Closed,
        };
        let mut cfg = RoomConfig::new(&format!("r{i:02}"), &format!("Room {i}"), kind);
        cfg.equipment = Equipment {
            projector: false,
            screen: false,
            purifier: false,
            hvac_fan: false,
            ..Equipment::ALL
        };
        cfg.access.staff_groups = vec!["cleaning".into()];
        match i % 5 {
            1 => cfg.policy.checkin_on_presence = true,
            2 => cfg.policy.checkin_required = false,
            3 => cfg.policy.vacancy_release = None,
            4 => {
                cfg.policy.no_show_after = Span::minutes(5);
                cfg.policy.off_after = Span::minutes(20);
                cfg.policy.dim_after = Span::minutes(10);
            }
            _ => {}
        }
        rooms.push(cfg);
    }
    let mut floor = Floor {
        rooms,
        inputs: BTreeMap::new(),
        seq: 0,
        bookings: HashMap::new(),
    };
    let people: Vec<String> = (0..40).map(|p| format!("p{p}@example.com")).collect();
    let mut next_id = 0;
    for day in 0..DAYS {
        let weekday = day % 7 < 5;
        for minute in (0..24 * 60).step_by(1) {
            floor.push(at(day, minute), Input::Tick);
        }
        for r in 0..ROOMS {
            let room = floor.rooms[r].id.clone();
            match floor.rooms[r].kind {
                RoomKind::Closed => {
                    if rng.chance(30) {
                        let who = people[rng.below(40) as usize].clone();
                        floor.push(at(day, 600), card(&room, Some(&who), &[]));
                    }
                    continue;
                }
                RoomKind::InstantUse => {
                    // Walk-ins, and people walking past the door.
                    let mut t = 8 * 60 + rng.below(60) as i64;
                    while t < 18 * 60 {
                        let stay = rng.minutes(1, 50);
                        let from = at(day, t);
                        floor.presence(&room, from, from + stay);
                        t += stay.whole_minutes() + 5 + rng.below(90) as i64;
                    }
                    continue;
                }
                RoomKind::Bookable => {}
            }
            if !weekday {
                continue;
            }
            let policy = floor.rooms[r].policy;
            let mut t = 8 * 60 + rng.below(45) as i64;
            while t < 18 * 60 {
                next_id += 1;
                let id = BookingId::new(format!("b{next_id}"));
                let len = rng.minutes(3, 16).whole_minutes() * 10;
                let start = at(day, t);
                let end = start + Span::minutes(len);
                let organizer = people[rng.below(40) as usize].clone();
                let attendees = vec![people[rng.below(40) as usize].clone()];
                let booking = Booking {
                    id: id.clone(),
                    room: room.clone(),
                    start,
                    end,
                    subject: "Meeting".into(),
                    organizer: organizer.clone(),
                    attendees: attendees.clone(),
                };
                // Most bookings are known a day ahead; some arrive late.
                let known = if rng.chance(80) {
                    at(day, 0)
                } else {
                    start - rng.minutes(0, 60)
                };
                floor.push(
                    known,
                    Input::Engine(Event::BookingUpserted(booking.clone())),
                );
                floor.bookings.insert(id.clone(), booking);
                let roll = rng.below(100);
                if roll < 8 {
                    // Cancelled, sometimes while running.
                    let when = start + Span::minutes(rng.below(len as u64) as i64 - 30);
                    floor.push(
                        when,
                        Input::Engine(Event::BookingCancelled {
                            room: room.clone(),
                            booking: id.clone(),
                        }),
                    );
                } else if roll < 23 {
                    // A no-show (a cleaner may still pass by).
                    if rng.chance(20) {
                        let from = start + rng.minutes(0, 30);
                        floor.presence(&room, from, from + rng.minutes(1, 3));
                        floor.push(from, card(&room, Some("kim@example.com"), &["cleaning"]));
                    }
                } else {
                    // People come, on time or late, by card or at the panel.
                    let late = if rng.chance(30) {
                        rng.minutes(0, 9)
                    } else {
                        Span::ZERO - rng.minutes(0, 5)
                    };
                    let arrive = start + late;
                    let leave = if rng.chance(20) {
                        arrive + rng.minutes(5, len / 2) // leave early: vacancy
                    } else if rng.chance(15) {
                        end + rng.minutes(1, 25) // overrun
                    } else {
                        end - rng.minutes(0, 3)
                    };
                    floor.presence(&room, arrive, leave.max(arrive + Span::minutes(1)));
                    let who = if rng.chance(50) {
                        &organizer
                    } else {
                        &attendees[0]
                    };
                    if rng.chance(60) {
                        floor.push(arrive, card(&room, Some(who), &[]));
                    } else if !policy.checkin_on_presence || rng.chance(50) {
                        floor.push(
                            arrive,
                            Input::Engine(Event::CheckIn {
                                room: room.clone(),
                                method: CheckInMethod::Panel,
                                booking: None,
                            }),
                        );
                    }
                    // A stranger tries the door now and then.
                    if rng.chance(10) {
                        let stranger = people[rng.below(40) as usize].clone();
                        floor.push(arrive + Span::minutes(3), card(&room, Some(&stranger), &[]));
                    }
                    // Presence noise: the PIR misses people for a moment.
                    if rng.chance(30) {
                        let blip = arrive + rng.minutes(1, 20);
                        if blip + Span::minutes(2) < leave {
                            floor.presence(&room, blip + Span::minutes(2), leave);
                            floor.push(
                                blip,
                                Input::Engine(Event::Occupancy {
                                    room: room.clone(),
                                    occupancy: Occupancy::Vacant,
                                }),
                            );
                        }
                    }
                    // Extensions from the panel.
                    if rng.chance(10) {
                        floor.push(
                            end - Span::minutes(5),
                            Input::Engine(Event::Extend {
                                room: room.clone(),
                                until: end + rng.minutes(10, 40),
                                by: "panel".into(),
                            }),
                        );
                    }
                }
                // Sensor outages.
                if rng.chance(3) {
                    let from = start + rng.minutes(0, 30);
                    floor.push(
                        from,
                        Input::Engine(Event::Occupancy {
                            room: room.clone(),
                            occupancy: Occupancy::Unknown,
                        }),
                    );
                    floor.push(
                        from + rng.minutes(10, 60),
                        Input::Engine(Event::Occupancy {
                            room: room.clone(),
                            occupancy: Occupancy::Vacant,
                        }),
                    );
                }
                let gap = if rng.chance(25) {
                    0
                } else {
                    rng.below(90) as i64
                };
                t += len + gap;
            }
        }
    }
    floor
}

fn card(room: &RoomId, person: Option<&str>, groups: &[&str]) -> Input {
    Input::Engine(Event::Credential {
        room: room.clone(),
        presenter: Presenter {
            person: person.map(str::to_owned),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        },
    })
}

/// What the checker knows of a room, from the inputs it fed and the outputs it saw.
#[derive(Default)]
struct Watch {
    occupancy: Option<(Occupancy, Timestamp)>,
    lights_on_since: Option<Timestamp>,
    last: HashMap<&'static str, Vec<(Timestamp, String)>>,
}

#[derive(Default, Debug)]
struct Tally {
    events: u64,
    outputs: u64,
    started: u64,
    no_shows: u64,
    vacancy_releases: u64,
    ended: u64,
    cancelled: u64,
    walk_ins: u64,
    doors_opened: u64,
    doors_refused: u64,
    extended: u64,
}

fn kind_of(a: &Action) -> &'static str {
    match a {
        Action::Lights { .. } => "lights",
        Action::Hvac { .. } => "hvac",
        Action::Curtains { .. } => "curtains",
        Action::Sockets { .. } => "sockets",
        Action::StatusLight(_) => "status",
        Action::Projector { .. } => "projector",
        Action::Screen { .. } => "screen",
        Action::Ventilation { .. } => "ventilation",
        Action::Purifier { .. } => "purifier",
        Action::HvacFan { .. } => "fan",
        Action::DoorLock { .. } => "door",
    }
}

/// Runs the month and checks every invariant as it goes; returns the log and the tally.
fn run(seed: u64) -> (Vec<String>, Tally) {
    let floor = generate(seed);
    let policies: HashMap<RoomId, scenes::Policy> = floor
        .rooms
        .iter()
        .map(|r| (r.id.clone(), r.policy))
        .collect();
    let mut bookings = floor.bookings.clone();
    let mut engine = Engine::new(floor.rooms.clone()).expect("rooms");
    let mut watch: HashMap<RoomId, Watch> = HashMap::new();
    let mut log = Vec::new();
    let mut tally = Tally::default();
    let mut checked_in: HashSet<BookingId> = HashSet::new();
    let mut started: HashSet<BookingId> = HashSet::new();
    let mut terminal: HashMap<BookingId, u32> = HashMap::new();
    let mut cancelled: HashSet<BookingId> = HashSet::new();
    let mut known: HashSet<BookingId> = HashSet::new();
    let mut may_enter: Option<bool> = None;

    let first = floor.inputs.keys().next().map(|(t, _)| *t).expect("inputs");
    let mut inputs = floor.inputs.into_iter().peekable();
    loop {
        let next_input = inputs.peek().map(|((t, _), _)| *t);
        let next_timer = engine.poll_timeout();
        let now = match (next_input, next_timer) {
            (None, None) => break,
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) => a,
            (None, Some(b)) => b,
        }
        .max(first);
        engine.handle_timeout(now);
        let mut outputs: Vec<Output> = std::iter::from_fn(|| engine.poll()).collect();
        let mut fed = false;
        if next_input == Some(now)
            && let Some((_, input)) = inputs.next()
        {
            fed = true;
            if let Input::Engine(ev) = input {
                tally.events += 1;
                match &ev {
                    Event::Occupancy { room, occupancy } => {
                        let w = watch.entry(room.clone()).or_default();
                        if w.occupancy.map(|(o, _)| o) != Some(*occupancy) {
                            w.occupancy = Some((*occupancy, now));
                        }
                    }
                    Event::BookingCancelled { booking, .. } => {
                        cancelled.insert(booking.clone());
                    }
                    Event::BookingUpserted(b) => {
                        known.insert(b.id.clone());
                    }
                    Event::Credential { room, presenter } => {
                        // The door rule, decided independently of the engine.
                        let p = policies[room];
                        let staff = presenter.groups.iter().any(|g| g == "cleaning");
                        let member = bookings.values().any(|b| {
                            &b.room == room
                                && known.contains(&b.id)
                                && b.start - p.checkin_opens <= now
                                && now < b.end
                                && !cancelled.contains(&b.id)
                                && !terminal.contains_key(&b.id)
                                && presenter.person.as_deref().is_some_and(|who| {
                                    who == b.organizer || b.attendees.iter().any(|a| a == who)
                                })
                        });
                        may_enter = Some(staff || member);
                    }
                    _ => {}
                }
                // Events for closed rooms (bookings, check-ins) are refused by design.
                let _ = engine.handle_event(now, ev);
                outputs.extend(std::iter::from_fn(|| engine.poll()));
            }
        }
        for o in &outputs {
            tally.outputs += 1;
            match o {
                Output::Command(c) => {
                    let w = watch.entry(c.room.clone()).or_default();
                    if let Action::Lights { on, .. } = c.action {
                        if !on {
                            w.lights_on_since = None;
                        } else if w.lights_on_since.is_none() {
                            w.lights_on_since = Some(now);
                        }
                    }
                    if let Action::DoorLock { unlocked: true } = c.action {
                        assert_eq!(
                            may_enter.take(),
                            Some(true),
                            "{now:?} {}: the door opened for someone without a right to enter",
                            c.room
                        );
                    }
                    // No flapping: equipment never goes A, B, A within a second. (The status
                    // light is a sign, not equipment: two inputs at one instant, such as a
                    // back-to-back start and a card at the door, may rightly change it twice.)
                    let kind = kind_of(&c.action);
                    let hist = w.last.entry(kind).or_default();
                    hist.push((now, c.action.to_string()));
                    if hist.len() > 3 {
                        hist.remove(0);
                    }
                    if let [(t1, a), (_, b), (t3, c3)] = hist.as_slice()
                        && kind != "status"
                        && a == c3
                        && a != b
                        && t3.since(*t1) < Span::seconds(1)
                    {
                        panic!("{now:?} {}: {kind} flapped: {a} / {b} / {c3}", c.room);
                    }
                    log.push(format!("{} {} {}", now.as_millis(), c.room, c.action));
                }
                Output::Outcome(oc) => {
                    log.push(format!("{} {} {:?}", now.as_millis(), oc.room, oc.kind));
                    let id = oc.booking.clone();
                    match &oc.kind {
                        OutcomeKind::MeetingStarted => {
                            tally.started += 1;
                            if let Some(id) = id {
                                started.insert(id);
                            }
                        }
                        OutcomeKind::CheckedIn(_) => {
                            if let Some(id) = id {
                                checked_in.insert(id);
                            }
                        }
                        OutcomeKind::Released(cause) => {
                            let id = id.expect("a release names its booking");
                            let p = policies[&oc.room];
                            match cause {
                                ReleaseCause::NoShow => {
                                    tally.no_shows += 1;
                                    assert!(
                                        !checked_in.contains(&id) && p.checkin_required,
                                        "{id}: a checked-in meeting was released as a no-show"
                                    );
                                }
                                ReleaseCause::Vacancy => {
                                    tally.vacancy_releases += 1;
                                    // A meeting with presence is never released.
                                    let w = &watch[&oc.room];
                                    let (o, since) = w.occupancy.expect("a vacancy was seen");
                                    let after = p.vacancy_release.expect("vacancy release on");
                                    assert!(
                                        o == Occupancy::Vacant && now.since(since) >= after,
                                        "{id}: released for vacancy while {o:?} since {since:?}"
                                    );
                                }
                            }
                            *terminal.entry(id).or_default() += 1;
                        }
                        OutcomeKind::Ended => {
                            tally.ended += 1;
                            *terminal.entry(id.expect("named")).or_default() += 1;
                        }
                        OutcomeKind::Cancelled => {
                            tally.cancelled += 1;
                            if let Some(id) = id
                                && started.contains(&id)
                            {
                                *terminal.entry(id).or_default() += 1;
                            }
                        }
                        OutcomeKind::Extended { until } => {
                            tally.extended += 1;
                            let id = id.expect("named");
                            if let Some(b) = bookings.get_mut(&id) {
                                b.end = *until;
                            }
                        }
                        OutcomeKind::WalkInStarted => tally.walk_ins += 1,
                        OutcomeKind::AccessGranted => {}
                        OutcomeKind::AccessDenied => {
                            tally.doors_refused += 1;
                            assert_ne!(
                                may_enter.take(),
                                Some(true),
                                "{now:?} {}: someone with a right to enter was refused: {:?}",
                                oc.room,
                                oc.reason,
                            );
                        }
                        _ => {}
                    }
                }
                Output::State { .. } => {}
            }
        }
        if let Some(true) = may_enter {
            tally.doors_opened += 1;
        }
        may_enter = None;
        // Lights never stay on in an empty room longer than the policy allows.
        if fed {
            for (room, w) in &watch {
                if let (Some(on), Some((Occupancy::Vacant, since))) =
                    (w.lights_on_since, w.occupancy)
                {
                    let limit = policies[room].off_after;
                    assert!(
                        now.since(on.max(since)) <= limit,
                        "{now:?} {room}: lights on in an empty room since {:?}",
                        on.max(since)
                    );
                }
            }
        }
    }
    // Every meeting that started ended exactly once (ended, released, or cancelled).
    for id in &started {
        assert_eq!(
            terminal.get(id),
            Some(&1),
            "{id} started but ended {:?} times",
            terminal.get(id)
        );
    }
    (log, tally)
}

#[test]
fn a_month_on_fifty_rooms_keeps_every_rule() {
    let start = std::time::Instant::now();
    let (log, tally) = run(7);
    println!(
        "{tally:#?}\n{} log lines in {:?}",
        log.len(),
        start.elapsed()
    );
    assert!(tally.started > 3000, "a busy month: {tally:?}");
    assert!(
        tally.no_shows > 100 && tally.vacancy_releases > 50,
        "{tally:?}"
    );
    assert!(
        tally.walk_ins > 100 && tally.doors_refused > 10 && tally.extended > 50,
        "{tally:?}"
    );
}

#[test]
fn the_same_seed_gives_the_same_log() {
    let (a, _) = run(11);
    let (b, _) = run(11);
    assert_eq!(a.len(), b.len());
    assert!(a == b, "two runs of seed 11 differ");
    let (c, _) = run(12);
    assert!(a != c, "different seeds give different months");
}
