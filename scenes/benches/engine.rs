//! Engine throughput and memory: prints events/s through `handle_event` + `handle_timeout` +
//! `poll`, and memory per room. A benchmark that prints figures, never a timed test.
//!
//! Run: `cargo bench -p scenes --bench engine`

use std::time::Instant;

use scenes::{
    Booking, BookingId, CheckInMethod, Engine, Equipment, Event, Occupancy, RoomConfig, RoomId,
    RoomKind, Span, Timestamp,
};

const T0: i64 = 1_772_409_600_000;

fn ts(ms: i64) -> Timestamp {
    Timestamp::from_millis(T0 + ms)
}

fn rooms(n: usize) -> Vec<RoomConfig> {
    (0..n)
        .map(|i| {
            let kind = if i % 5 == 4 {
                RoomKind::InstantUse
            } else {
                RoomKind::Bookable
            };
            let mut cfg = RoomConfig::new(&format!("r{i}"), &format!("Room {i}"), kind);
            cfg.equipment = Equipment {
                projector: false,
                screen: false,
                purifier: false,
                ..Equipment::ALL
            };
            cfg
        })
        .collect()
}

/// A working day of bookings per bookable room: 8 meetings of 45 min, 15 min apart.
fn bookings(n: usize) -> Vec<Event> {
    let mut out = Vec::new();
    for i in (0..n).filter(|i| i % 5 != 4) {
        for k in 0..8 {
            let start = ts((8 * 60 + k * 60) * 60_000);
            out.push(Event::BookingUpserted(Booking {
                id: BookingId::new(format!("b{i}-{k}")),
                room: RoomId::new(format!("r{i}")),
                start,
                end: start + Span::minutes(45),
                subject: "Weekly sync".into(),
                organizer: "ana@example.com".into(),
                attendees: vec!["bo@example.com".into()],
            }));
        }
    }
    out
}

fn rss_kib() -> Option<usize> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: usize = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4)
}

fn main() {
    // Throughput: 1,000 rooms, a day of bookings, a stream of presence changes and check-ins
    // spread over the day in time order.
    let n = 1000;
    let mut engine = Engine::new(rooms(n)).expect("rooms");
    engine.handle_timeout(ts(0));
    for b in bookings(n) {
        engine.handle_event(ts(0), b).expect("booking");
    }
    while engine.poll().is_some() {}
    let ids: Vec<RoomId> = (0..n).map(|i| RoomId::new(format!("r{i}"))).collect();
    let events_total = 2_000_000usize;
    let day_ms = 14 * 3_600_000i64;
    let mut stream = Vec::with_capacity(events_total);
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    for k in 0..events_total {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let room = ids[(x % n as u64) as usize].clone();
        let at = ts(7 * 3_600_000 + (k as i64 * day_ms) / events_total as i64);
        let ev = if x.is_multiple_of(10) {
            Event::CheckIn {
                room,
                method: CheckInMethod::Card,
                booking: None,
            }
        } else {
            let occupancy = if (x >> 8).is_multiple_of(2) {
                Occupancy::Occupied
            } else {
                Occupancy::Vacant
            };
            Event::Occupancy { room, occupancy }
        };
        stream.push((at, ev));
    }
    let start = Instant::now();
    let mut outputs = 0u64;
    for (at, ev) in stream {
        if engine.poll_timeout().is_some_and(|t| t <= at) {
            engine.handle_timeout(at);
        }
        // Every event here names a known, open room.
        let _ = engine.handle_event(at, ev);
        while engine.poll().is_some() {
            outputs += 1;
        }
    }
    let elapsed = start.elapsed();
    let per_s = events_total as f64 / elapsed.as_secs_f64();
    println!(
        "engine throughput: {events_total} events over {n} rooms (a 14 h day) in {:.2} s = {:.0} events/s ({outputs} outputs)",
        elapsed.as_secs_f64(),
        per_s
    );

    // Memory: 100,000 rooms without bookings (the fixed cost of a room), then with a day of
    // bookings each; resident-set growth per room, and the engine's own estimate.
    let n = 100_000;
    let before = rss_kib();
    let bare = Engine::new(rooms(n)).expect("rooms");
    if let (Some(b), Some(a)) = (before, rss_kib()) {
        println!(
            "memory: {n} rooms, no bookings: RSS +{} KiB = {:.0} bytes per room",
            a.saturating_sub(b),
            (a.saturating_sub(b) * 1024) as f64 / n as f64
        );
    }
    drop(bare);
    let before = rss_kib();
    let configs = rooms(n);
    let mut engine = Engine::new(configs).expect("rooms");
    engine.handle_timeout(ts(0));
    for b in bookings(n) {
        engine.handle_event(ts(0), b).expect("booking");
    }
    while engine.poll().is_some() {}
    let after = rss_kib();
    if let (Some(b), Some(a)) = (before, after) {
        println!(
            "memory: {n} rooms with 8 bookings each (80% bookable): RSS +{} KiB = {:.0} bytes per room",
            a.saturating_sub(b),
            (a.saturating_sub(b) * 1024) as f64 / n as f64
        );
    }
    println!(
        "memory (engine's own estimate, state and bookings): {} bytes per room",
        engine.bytes_per_room()
    );
}
