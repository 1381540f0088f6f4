//! One suite of hub store behaviours run against both backends, ripgrep's `rgtest!` style.
//!
//! Each case is an `async fn(&HubStore)`; `both_backends!` turns it into a module with two
//! tests, `embedded` (redb in a temp dir) and `postgres` (a fresh database on the test's own
//! PostgreSQL server, `roomgate_tests::postgres`). The embedded store is the reference: a case
//! that passes on one backend and fails on the other is a bug in the other. The cases after
//! the suite exercise what only PostgreSQL has: several replicas (here, several pools on one
//! database) writing at the same time, and the schema's version.

use std::collections::BTreeSet;
use std::sync::Arc;

use cloud_sync::hub::HubStore;
use cloud_sync::hub::store::{
    BookingRecord, CHANGE_LOG_KEPT, HubStoreError, POSTGRES_SCHEMA_VERSION, RoomKey, RoomWrites,
    SeriesRecord,
};
use cloud_sync::topics::GatewayId;
use cloud_sync::wire::{
    BookingChange, Event, EventBatch, EventKind, PointSample, Status, VERSION, WireBooking,
};
use roomgate_tests::postgres::PgServer;
use serde_json::json;

const DAY: i64 = 1_772_409_600_000; // 2026-03-02 00:00 UTC
const HOUR: i64 = 3_600_000;

/// What keeps a backend alive for the length of a test.
#[allow(dead_code)] // held, never read
enum Keep {
    Dir(tempfile::TempDir),
    Server(Arc<PgServer>),
}

fn embedded() -> (HubStore, Keep) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = HubStore::open_embedded(dir.path()).expect("embedded store");
    (store, Keep::Dir(dir))
}

async fn postgres() -> (HubStore, Keep) {
    let server = PgServer::shared().expect("a PostgreSQL server of the test's own");
    let url = server.create_database().expect("a fresh database");
    let store = HubStore::open_postgres(&url, 4)
        .await
        .expect("postgres store");
    (store, Keep::Server(server))
}

/// Runs each named case on both backends.
macro_rules! both_backends {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn embedded() {
                let (store, keep) = super::embedded();
                super::$case(&store).await;
                drop((store, keep));
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let (store, keep) = super::postgres().await;
                super::$case(&store).await;
                drop((store, keep));
            }
        }
    )*};
}

both_backends!(
    ingest_stores_each_event_once_and_acks_up_to_the_first_gap,
    events_between_is_by_time_then_sequence,
    no_shows_are_found_by_organizer_across_gateways,
    status_and_last_seen_make_the_gateway_list,
    the_change_log_answers_in_log_or_with_a_snapshot,
    the_change_log_keeps_the_newest_changes,
    a_room_transaction_reads_its_room_and_writes_all_or_nothing,
    bookings_are_found_by_id_and_by_time,
    every_series_is_listed_by_room,
    telemetry_keeps_the_newest_sample,
    documents_are_stored_by_kind_and_key,
);

fn gw(site: &str, name: &str) -> GatewayId {
    GatewayId::new(site, name).expect("gateway id")
}

fn event(seq: u64, at_ms: i64) -> Event {
    Event {
        seq,
        at_ms,
        room: format!("r{}", seq % 3),
        booking: seq.is_multiple_of(2).then(|| format!("b-{seq}")),
        kind: EventKind::CheckedIn,
        reason: format!("event {seq}"),
        data: json!({ "method": "panel", "n": seq, "ratio": 0.25 }),
    }
}

fn strike(seq: u64, at_ms: i64, organizer: &str) -> Event {
    Event {
        kind: EventKind::NoShowStrike,
        data: json!({ "organizer": organizer }),
        ..event(seq, at_ms)
    }
}

fn batch(id: &GatewayId, events: Vec<Event>) -> EventBatch {
    EventBatch {
        v: VERSION,
        gateway: id.to_string(),
        events,
    }
}

fn seqs(batch: &[Event]) -> Vec<u64> {
    batch.iter().map(|e| e.seq).collect()
}

fn booking(id: &str, room: &str, start_ms: i64, end_ms: i64) -> BookingRecord {
    BookingRecord {
        id: id.into(),
        room: room.into(),
        start_ms,
        end_ms,
        subject: format!("Meeting {id}"),
        organizer: "ana@example.com".into(),
        attendees: vec!["bo@example.com".into(), "cy@example.com".into()],
        state: "active".into(),
        series: None,
        source: "api".into(),
        source_uid: None,
        note: String::new(),
        updated_ms: DAY,
    }
}

fn wire(b: &BookingRecord) -> WireBooking {
    WireBooking {
        id: b.id.clone(),
        room: b.room.clone(),
        start_ms: b.start_ms,
        end_ms: b.end_ms,
        subject: b.subject.clone(),
        organizer: b.organizer.clone(),
        attendees: b.attendees.clone(),
    }
}

fn room(gateway: &GatewayId, name: &str) -> RoomKey {
    RoomKey {
        gateway: gateway.clone(),
        room: name.into(),
    }
}

/// Writes bookings into a room in one transaction, each with its upsert change; returns the
/// cursor after them.
async fn write_bookings(store: &HubStore, at: &RoomKey, bookings: Vec<BookingRecord>) -> u64 {
    let commit = store
        .transact_room(at, i64::MIN, |_| {
            let changes = bookings
                .iter()
                .map(|b| BookingChange::Upsert { booking: wire(b) })
                .collect();
            Ok::<_, String>((
                (),
                RoomWrites {
                    bookings,
                    changes,
                    ..RoomWrites::default()
                },
            ))
        })
        .await
        .expect("store")
        .expect("decided");
    commit.pushed.cursor
}

fn status(at_ms: i64, online: bool) -> Status {
    Status {
        at_ms,
        online,
        outbox_depth: 3,
        timezone: "Europe/Zurich".into(),
        devices_total: 4,
        ..Status::offline()
    }
}

// ---------------------------------------------------------------------------------------------
// The suite.

async fn ingest_stores_each_event_once_and_acks_up_to_the_first_gap(store: &HubStore) {
    let a = gw("hq", "gw-1");
    let sent: Vec<Event> = (1..=9).map(|s| event(s, DAY + s as i64)).collect();
    let pick =
        |s: &[u64]| -> Vec<Event> { s.iter().map(|&s| sent[s as usize - 1].clone()).collect() };

    let r = store
        .ingest(&a, &batch(&a, pick(&[1, 2, 4])), DAY)
        .await
        .expect("ingest");
    assert_eq!(
        (seqs(&r.fresh), r.duplicates, r.ack_upto),
        (vec![1, 2, 4], 0, 2),
        "4 waits for 3"
    );

    // Redelivered on the wire together with new ones: only the new ones are fresh.
    let r = store
        .ingest(&a, &batch(&a, pick(&[2, 3, 4, 5])), DAY)
        .await
        .expect("redelivery");
    assert_eq!(
        (seqs(&r.fresh), r.duplicates, r.ack_upto),
        (vec![3, 5], 2, 5)
    );

    // The same event twice in one batch is stored once; fresh keeps the batch's order.
    let r = store
        .ingest(&a, &batch(&a, pick(&[8, 7, 7, 6])), DAY)
        .await
        .expect("out of order");
    assert_eq!(
        (seqs(&r.fresh), r.duplicates, r.ack_upto),
        (vec![8, 7, 6], 1, 8)
    );

    // Everything already acked, and an empty batch: nothing fresh, the same ack point.
    let r = store
        .ingest(&a, &batch(&a, pick(&[1, 2, 3])), DAY)
        .await
        .expect("old");
    assert_eq!((r.fresh.len(), r.duplicates, r.ack_upto), (0, 3, 8));
    let r = store
        .ingest(&a, &batch(&a, Vec::new()), DAY)
        .await
        .expect("empty");
    assert_eq!((r.fresh.len(), r.duplicates, r.ack_upto), (0, 0, 8));

    // A redelivered copy that differs is still the stored event, not the new text.
    let mut changed = sent[8].clone();
    changed.reason = "a different text".into();
    let r = store
        .ingest(&a, &batch(&a, vec![sent[8].clone(), changed]), DAY)
        .await
        .expect("9");
    assert_eq!((seqs(&r.fresh), r.duplicates, r.ack_upto), (vec![9], 1, 9));

    assert_eq!(
        store.events(&a).await.expect("events"),
        sent,
        "each once, in sequence order"
    );
    let other = gw("hq", "gw-2");
    assert!(store.events(&other).await.expect("other").is_empty());
    let r = store
        .ingest(&other, &batch(&other, pick(&[1])), DAY)
        .await
        .expect("other");
    assert_eq!(r.ack_upto, 1, "ack points are per gateway");
}

async fn events_between_is_by_time_then_sequence(store: &HubStore) {
    let a = gw("hq", "gw-1");
    let at = [DAY + 30, DAY + 10, DAY + 20, DAY + 10, DAY + 40];
    let sent: Vec<Event> = at
        .iter()
        .enumerate()
        .map(|(i, &t)| event(i as u64 + 1, t))
        .collect();
    store
        .ingest(&a, &batch(&a, sent), DAY)
        .await
        .expect("ingest");
    let b = gw("hq", "gw-2");
    store
        .ingest(&b, &batch(&b, vec![event(1, DAY + 20)]), DAY)
        .await
        .expect("other");

    let between = |from: i64, to: i64| {
        let a = a.clone();
        async move { seqs(&store.events_between(&a, from, to).await.expect("between")) }
    };
    assert_eq!(between(DAY, DAY + 100).await, vec![2, 4, 3, 1, 5]);
    assert_eq!(
        between(DAY + 10, DAY + 30).await,
        vec![2, 4, 3],
        "from included, to excluded"
    );
    assert_eq!(between(DAY + 11, DAY + 20).await, Vec::<u64>::new());
    assert_eq!(
        between(DAY + 40, DAY + 10).await,
        Vec::<u64>::new(),
        "an empty range"
    );
}

async fn no_shows_are_found_by_organizer_across_gateways(store: &HubStore) {
    let a = gw("hq", "gw-1");
    let b = gw("branch", "gw-1");
    let not_a_strike = Event {
        data: json!({ "organizer": "ana@example.com" }),
        ..event(4, DAY + 5)
    };
    store
        .ingest(
            &a,
            &batch(
                &a,
                vec![
                    strike(1, DAY + 30, "ana@example.com"),
                    strike(2, DAY + 10, "bo@example.com"),
                    strike(3, DAY + 50, "ana@example.com"),
                    not_a_strike,
                    strike(5, DAY + 60, ""),
                ],
            ),
            DAY,
        )
        .await
        .expect("a");
    store
        .ingest(
            &b,
            &batch(&b, vec![strike(1, DAY + 40, "ana@example.com")]),
            DAY,
        )
        .await
        .expect("b");
    // Redelivered: not a second strike.
    store
        .ingest(
            &b,
            &batch(&b, vec![strike(1, DAY + 40, "ana@example.com")]),
            DAY,
        )
        .await
        .expect("b again");

    let ana = store.no_shows("ana@example.com", DAY).await.expect("ana");
    assert_eq!(
        ana,
        vec![DAY + 30, DAY + 40, DAY + 50],
        "ascending, across gateways"
    );
    let since = store
        .no_shows("ana@example.com", DAY + 40)
        .await
        .expect("since");
    assert_eq!(since, vec![DAY + 40, DAY + 50], "since included");
    assert_eq!(
        store.no_shows("bo@example.com", DAY).await.expect("bo"),
        vec![DAY + 10]
    );
    assert!(
        store
            .no_shows("cy@example.com", DAY)
            .await
            .expect("cy")
            .is_empty()
    );
    assert!(
        store.no_shows("", DAY).await.expect("nobody").is_empty(),
        "no empty organizer"
    );
}

async fn status_and_last_seen_make_the_gateway_list(store: &HubStore) {
    let a = gw("hq", "gw-1");
    let b = gw("branch", "gw-9");
    assert!(store.gateways().await.expect("none").is_empty());
    assert_eq!(store.status(&a).await.expect("no status"), None);

    store
        .put_status(&a, &status(DAY, true), DAY + 1)
        .await
        .expect("status");
    store
        .ingest(&b, &batch(&b, vec![event(1, DAY)]), DAY + 2)
        .await
        .expect("events");
    let list = store.gateways().await.expect("list");
    let summary: Vec<(String, Option<bool>, i64)> = list
        .iter()
        .map(|g| {
            (
                g.id.to_string(),
                g.status.as_ref().map(|s| s.online),
                g.last_seen_ms,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("branch/gw-9".to_owned(), None, DAY + 2),
            ("hq/gw-1".to_owned(), Some(true), DAY + 1),
        ],
        "by id; events alone make a gateway seen, without a status"
    );

    // Events refresh last_seen and keep the status; a new status replaces the old.
    store
        .ingest(&a, &batch(&a, vec![event(1, DAY)]), DAY + 5)
        .await
        .expect("events");
    assert_eq!(
        store.status(&a).await.expect("status"),
        Some(status(DAY, true))
    );
    store
        .put_status(&a, &status(DAY + 6, false), DAY + 7)
        .await
        .expect("offline");
    assert_eq!(
        store.status(&a).await.expect("status"),
        Some(status(DAY + 6, false))
    );
    let list = store.gateways().await.expect("list");
    assert_eq!(list[1].last_seen_ms, DAY + 7);
    assert_eq!(list[1].status, Some(status(DAY + 6, false)));
}

async fn the_change_log_answers_in_log_or_with_a_snapshot(store: &HubStore) {
    let a = gw("hq", "gw-1");
    let b1 = booking("b1", "r2", DAY, DAY + HOUR);
    let b2 = booking("b2", "r1", DAY, DAY + HOUR);
    let b3 = booking("b3", "r1", DAY + HOUR, DAY + 2 * HOUR);
    let up = |b: &BookingRecord| BookingChange::Upsert { booking: wire(b) };
    let before = store.changes_since(&a, 0).await.expect("empty");
    assert_eq!(
        (before.cursor, before.full, before.changes.len()),
        (0, false, 0)
    );

    assert_eq!(store.change_booking(&a, up(&b1)).await.expect("b1"), 1);
    assert_eq!(store.change_booking(&a, up(&b2)).await.expect("b2"), 2);
    assert_eq!(store.change_booking(&a, up(&b3)).await.expect("b3"), 3);
    let delete = BookingChange::Delete {
        id: "b2".into(),
        room: "r1".into(),
    };
    assert_eq!(
        store
            .change_booking(&a, delete.clone())
            .await
            .expect("delete"),
        4
    );

    let all = store.changes_since(&a, 0).await.expect("from 0");
    assert_eq!(
        (all.cursor, all.full),
        (4, false),
        "the whole log, not a snapshot"
    );
    assert_eq!(all.changes, vec![up(&b1), up(&b2), up(&b3), delete.clone()]);
    let since2 = store.changes_since(&a, 2).await.expect("since 2");
    assert_eq!(
        (since2.cursor, since2.full, since2.changes),
        (4, false, vec![up(&b3), delete])
    );
    let current = store.changes_since(&a, 4).await.expect("up to date");
    assert_eq!(
        (current.cursor, current.full, current.changes.len()),
        (4, false, 0)
    );

    // A cursor from another life of the hub: every active booking, by room then id.
    let lost = store.changes_since(&a, 99).await.expect("from elsewhere");
    assert_eq!((lost.cursor, lost.full), (4, true));
    assert_eq!(lost.changes, vec![up(&b3), up(&b1)]);
    let huge = store
        .changes_since(&a, u64::MAX - 1)
        .await
        .expect("absurd cursor");
    assert!(huge.full);

    // The raw changes also changed the booking set: the deleted one is cancelled.
    let (at, cancelled) = store.find_booking("b2").await.expect("find").expect("b2");
    assert_eq!(
        (at, cancelled.state.as_str()),
        (room(&a, "r1"), "cancelled")
    );
    let other = gw("hq", "gw-2");
    let none = store.changes_since(&other, 0).await.expect("other gateway");
    assert_eq!(
        (none.cursor, none.changes.len()),
        (0, 0),
        "logs are per gateway"
    );
}

async fn the_change_log_keeps_the_newest_changes(store: &HubStore) {
    let a = gw("hq", "gw-1");
    let kept = CHANGE_LOG_KEPT;
    let changes: Vec<BookingChange> = (1..=kept + 2)
        .map(|n| BookingChange::Delete {
            id: format!("gone-{n}"),
            room: "r1".into(),
        })
        .collect();
    let commit = store
        .transact_room(&room(&a, "r1"), 0, |_| {
            Ok::<_, String>((
                (),
                RoomWrites {
                    changes,
                    ..RoomWrites::default()
                },
            ))
        })
        .await
        .expect("store")
        .expect("decided");
    assert_eq!(commit.pushed.cursor, kept + 2);
    // Cursors 3 ..= kept + 2 are kept: 2 can still catch up, 1 cannot.
    let from2 = store.changes_since(&a, 2).await.expect("from 2");
    assert!(!from2.full);
    assert_eq!(from2.changes.len() as u64, kept);
    assert_eq!(
        from2.changes.first(),
        Some(&BookingChange::Delete {
            id: "gone-3".into(),
            room: "r1".into()
        })
    );
    let from1 = store.changes_since(&a, 1).await.expect("from 1");
    assert!(from1.full, "older than the log: a snapshot");
    assert!(from1.changes.is_empty(), "no active booking");
}

async fn a_room_transaction_reads_its_room_and_writes_all_or_nothing(store: &HubStore) {
    let a = gw("hq", "gw-1");
    let r1 = room(&a, "r1");
    let early = booking("early", "r1", DAY - 2 * HOUR, DAY - HOUR);
    let late = booking("late", "r1", DAY + 2 * HOUR, DAY + 3 * HOUR);
    let soon = booking("soon", "r1", DAY, DAY + HOUR);
    assert_eq!(
        write_bookings(store, &r1, vec![late.clone(), early, soon.clone()]).await,
        3
    );
    write_bookings(
        store,
        &room(&a, "r2"),
        vec![booking("next-door", "r2", DAY, DAY + 1)],
    )
    .await;
    let b = gw("hq", "gw-2");
    write_bookings(
        store,
        &room(&b, "r1"),
        vec![booking("elsewhere", "r1", DAY, DAY + 1)],
    )
    .await;
    let series = SeriesRecord {
        id: "weekly".into(),
        room: "r1".into(),
        doc: json!({ "rule": "FREQ=WEEKLY", "until": null, "count": 12 }),
    };
    let old_series = SeriesRecord {
        id: "old".into(),
        room: "r1".into(),
        doc: json!({ "rule": "FREQ=DAILY" }),
    };
    let unrelated = SeriesRecord {
        id: "daily".into(),
        room: "r2".into(),
        doc: json!({ "rule": "FREQ=DAILY" }),
    };
    store
        .transact_room(&room(&a, "r2"), 0, |_| {
            Ok::<_, String>((
                (),
                RoomWrites {
                    series: vec![unrelated],
                    ..RoomWrites::default()
                },
            ))
        })
        .await
        .expect("store")
        .expect("r2 series");

    // It sees only its room's bookings ending after `since`, by start, and its series.
    let mut updated = soon.clone();
    updated.subject = "Moved subject".into();
    updated.series = Some("weekly".into());
    let walk_in = BookingRecord {
        source: "gateway".into(),
        source_uid: Some("uid-1".into()),
        note: "walk-in".into(),
        attendees: Vec::new(),
        ..booking("walk-in", "r1", DAY + 4 * HOUR, DAY + 5 * HOUR)
    };
    let changes = vec![
        BookingChange::Upsert {
            booking: wire(&updated),
        },
        BookingChange::Upsert {
            booking: wire(&walk_in),
        },
    ];
    let commit = store
        .transact_room(&r1, DAY - HOUR, |docs| {
            let ids: Vec<&str> = docs.bookings.iter().map(|b| b.id.as_str()).collect();
            assert_eq!(
                ids,
                vec!["soon", "late"],
                "ends after since, by start, this room only"
            );
            assert_eq!(docs.bookings[0], soon);
            assert!(docs.series.is_empty());
            Ok::<_, String>((
                "decided",
                RoomWrites {
                    bookings: vec![updated.clone(), walk_in.clone()],
                    series: vec![series.clone(), old_series.clone()],
                    series_deleted: Vec::new(),
                    changes: changes.clone(),
                },
            ))
        })
        .await
        .expect("store")
        .expect("decided");
    assert_eq!(commit.value, "decided");
    assert_eq!(
        commit.pushed.cursor, 6,
        "two changes after r1's three and r2's one"
    );
    assert_eq!(
        (commit.pushed.full, &commit.pushed.changes),
        (false, &changes)
    );
    let since4 = store.changes_since(&a, 4).await.expect("since 4");
    assert_eq!((since4.cursor, since4.changes), (6, changes));

    // A failing decision writes nothing, whatever it would have written.
    let failed = store
        .transact_room(&r1, i64::MIN, |docs| {
            assert_eq!(docs.bookings.len(), 4);
            assert_eq!(
                docs.series,
                vec![old_series.clone(), series.clone()],
                "by id"
            );
            Err::<((), RoomWrites), _>("conflict with soon")
        })
        .await
        .expect("store");
    assert_eq!(failed.err(), Some("conflict with soon"));
    let all = store
        .bookings(&r1, i64::MIN, i64::MAX)
        .await
        .expect("bookings");
    let ids: Vec<&str> = all.iter().map(|b| b.id.as_str()).collect();
    assert_eq!(ids, vec!["early", "soon", "late", "walk-in"]);
    assert_eq!(all[1], updated);
    assert_eq!(all[3], walk_in);

    // Deleting a series; no changes leaves the cursor where it was.
    let commit = store
        .transact_room(&r1, i64::MIN, |docs| {
            assert_eq!(docs.series.len(), 2);
            Ok::<_, String>((
                (),
                RoomWrites {
                    series_deleted: vec!["old".into(), "never-existed".into()],
                    ..RoomWrites::default()
                },
            ))
        })
        .await
        .expect("store")
        .expect("decided");
    assert_eq!((commit.pushed.cursor, commit.pushed.changes.len()), (6, 0));
    let series_now: Vec<String> = store
        .all_series()
        .await
        .expect("series")
        .into_iter()
        .map(|(at, s)| format!("{}/{}/{}", at.gateway, at.room, s.id))
        .collect();
    assert_eq!(series_now, vec!["hq/gw-1/r1/weekly", "hq/gw-1/r2/daily"]);
}

async fn bookings_are_found_by_id_and_by_time(store: &HubStore) {
    let a = gw("hq", "gw-1");
    let r1 = room(&a, "r1");
    let nine = booking("nine", "r1", DAY + 9 * HOUR, DAY + 10 * HOUR);
    let ten = booking("ten", "r1", DAY + 10 * HOUR, DAY + 11 * HOUR);
    write_bookings(store, &r1, vec![ten.clone(), nine.clone()]).await;

    let ids = |v: Vec<BookingRecord>| v.into_iter().map(|b| b.id).collect::<Vec<_>>();
    let at = |from: i64, to: i64| store.bookings(&r1, from, to);
    assert_eq!(
        ids(at(DAY, DAY + 24 * HOUR).await.expect("day")),
        vec!["nine", "ten"]
    );
    assert_eq!(
        ids(at(DAY + 10 * HOUR, DAY + 10 * HOUR + 1)
            .await
            .expect("10:00")),
        vec!["ten"],
        "touching ends do not overlap"
    );
    assert_eq!(
        ids(at(DAY + 9 * HOUR + 1, DAY + 10 * HOUR + 1)
            .await
            .expect("overlap")),
        vec!["nine", "ten"]
    );
    assert!(
        at(DAY + 11 * HOUR, DAY + 12 * HOUR)
            .await
            .expect("after")
            .is_empty()
    );
    assert!(
        store
            .bookings(&room(&a, "r9"), i64::MIN, i64::MAX)
            .await
            .expect("r9")
            .is_empty()
    );

    let (found_at, found) = store
        .find_booking("nine")
        .await
        .expect("find")
        .expect("nine");
    assert_eq!((found_at, found), (r1.clone(), nine));
    assert_eq!(store.find_booking("nobody").await.expect("find"), None);

    // Written again in another room, the id is found where it was written last.
    let moved = booking("ten", "r2", DAY + 10 * HOUR, DAY + 11 * HOUR);
    write_bookings(store, &room(&a, "r2"), vec![moved.clone()]).await;
    let (found_at, found) = store.find_booking("ten").await.expect("find").expect("ten");
    assert_eq!((found_at, found), (room(&a, "r2"), moved));
}

async fn every_series_is_listed_by_room(store: &HubStore) {
    let a = gw("hq", "gw-1");
    let b = gw("branch", "gw-1");
    let put = |at: RoomKey, ids: &'static [&'static str]| async move {
        let series = ids
            .iter()
            .map(|id| SeriesRecord {
                id: (*id).into(),
                room: at.room.clone(),
                doc: json!({ "id": id, "weeks": [1, 2, 3] }),
            })
            .collect();
        store
            .transact_room(&at, 0, |_| {
                Ok::<_, String>((
                    (),
                    RoomWrites {
                        series,
                        ..RoomWrites::default()
                    },
                ))
            })
            .await
            .expect("store")
            .expect("decided");
    };
    assert!(store.all_series().await.expect("none").is_empty());
    put(room(&a, "r2"), &["s3"]).await;
    put(room(&a, "r1"), &["s2", "s1"]).await;
    put(room(&b, "r1"), &["s9"]).await;
    let listed: Vec<(String, String, String, serde_json::Value)> = store
        .all_series()
        .await
        .expect("series")
        .into_iter()
        .map(|(at, s)| (at.gateway.to_string(), at.room, s.id, s.doc))
        .collect();
    let names: Vec<String> = listed
        .iter()
        .map(|(g, r, s, _)| format!("{g}/{r}/{s}"))
        .collect();
    assert_eq!(
        names,
        vec![
            "branch/gw-1/r1/s9",
            "hq/gw-1/r1/s1",
            "hq/gw-1/r1/s2",
            "hq/gw-1/r2/s3"
        ]
    );
    assert_eq!(listed[1].3, json!({ "id": "s1", "weeks": [1, 2, 3] }));
}

async fn telemetry_keeps_the_newest_sample(store: &HubStore) {
    let a = gw("hq", "gw-1");
    let sample = |device: &str, point: &str, at_ms: i64, value: Option<f64>| PointSample {
        device: device.into(),
        point: point.into(),
        at_ms,
        value,
    };
    assert!(store.telemetry(&a).await.expect("none").is_empty());
    store
        .put_telemetry(
            &a,
            &[
                sample("pir", "r1", DAY + 10, Some(1.0)),
                sample("lights", "r1", DAY + 10, Some(0.0)),
                sample("co2", "r1", DAY + 10, Some(612.5)),
                // The same point twice in a batch: the newer one counts, wherever it is.
                sample("co2", "r1", DAY + 5, Some(400.0)),
            ],
        )
        .await
        .expect("first");
    store
        .put_telemetry(
            &a,
            &[
                sample("pir", "r1", DAY + 5, Some(0.0)),     // older: ignored
                sample("lights", "r1", DAY + 10, Some(1.0)), // as new: replaces
                sample("co2", "r1", DAY + 20, None),         // newer: unavailable now
                sample("co2", "r0", DAY + 1, Some(500.0)),
            ],
        )
        .await
        .expect("second");
    store.put_telemetry(&a, &[]).await.expect("nothing");
    let b = gw("hq", "gw-2");
    store
        .put_telemetry(&b, &[sample("pir", "r1", DAY, Some(1.0))])
        .await
        .expect("other");
    assert_eq!(
        store.telemetry(&a).await.expect("newest"),
        vec![
            sample("co2", "r0", DAY + 1, Some(500.0)),
            sample("co2", "r1", DAY + 20, None),
            sample("lights", "r1", DAY + 10, Some(1.0)),
            sample("pir", "r1", DAY + 10, Some(1.0)),
        ],
        "by device then point"
    );
}

async fn documents_are_stored_by_kind_and_key(store: &HubStore) {
    let ana = json!({ "name": "Ana", "admin": true, "rooms": ["r1", "r2"], "quota": 1.5 });
    store.put_doc("account", "ana", &ana).await.expect("ana");
    store
        .put_doc("account", "Bo", &json!({ "name": "Bo" }))
        .await
        .expect("bo");
    store
        .put_doc("account", "cy", &json!({ "name": "Cy" }))
        .await
        .expect("cy");
    store
        .put_doc("session", "ana", &json!("token"))
        .await
        .expect("session");
    assert_eq!(store.doc("account", "ana").await.expect("read"), Some(ana));
    assert_eq!(store.doc("account", "nobody").await.expect("read"), None);
    assert_eq!(store.doc("feed", "ana").await.expect("read"), None);

    let keys: Vec<String> = store
        .docs("account")
        .await
        .expect("list")
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys, vec!["Bo", "ana", "cy"], "by key, bytewise");

    store
        .put_doc("account", "ana", &json!({ "name": "Ana B." }))
        .await
        .expect("replace");
    assert_eq!(
        store.doc("account", "ana").await.expect("read"),
        Some(json!({ "name": "Ana B." }))
    );
    assert!(store.delete_doc("account", "ana").await.expect("delete"));
    assert!(!store.delete_doc("account", "ana").await.expect("again"));
    assert_eq!(store.doc("account", "ana").await.expect("gone"), None);
    assert_eq!(
        store.docs("session").await.expect("other kind"),
        vec![("ana".to_owned(), json!("token"))]
    );
    assert!(store.docs("none").await.expect("empty kind").is_empty());
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL only: replicas at the same time, and the schema.

/// Two stores on one database, as two hub replicas would have.
async fn replicas(pool_size: usize) -> (Arc<PgServer>, String, [Arc<HubStore>; 2]) {
    let server = PgServer::shared().expect("postgres server");
    let url = server.create_database().expect("database");
    let one = HubStore::open_postgres(&url, pool_size)
        .await
        .expect("replica 1");
    let two = HubStore::open_postgres(&url, pool_size)
        .await
        .expect("replica 2");
    (server, url, [Arc::new(one), Arc::new(two)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_ingests_of_one_gateway_store_every_event_once() {
    let (_server, _url, stores) = replicas(4).await;
    let a = gw("hq", "gw-1");
    const EVENTS: u64 = 600;
    const TASKS: u64 = 8;
    let sent: Vec<Event> = (1..=EVENTS).map(|s| event(s, DAY + s as i64)).collect();
    // Every task sends every event once, in overlapping batches of different sizes and
    // starting points, so that batches of the same events race across the two stores.
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let store = Arc::clone(&stores[(t % 2) as usize]);
            let (a, sent) = (a.clone(), sent.clone());
            tokio::spawn(async move {
                let size = 7 + 5 * t as usize;
                let start = (t as usize * 37) % sent.len();
                let rotated: Vec<Event> = sent[start..]
                    .iter()
                    .chain(&sent[..start])
                    .cloned()
                    .collect();
                let (mut fresh, mut duplicates) = (0usize, 0usize);
                let mut acks = Vec::new();
                for chunk in rotated.chunks(size) {
                    // Each batch overlaps the previous one by two events.
                    let mut events = chunk.to_vec();
                    events.extend(chunk.iter().take(2).cloned());
                    let r = store
                        .ingest(&a, &batch(&a, events), DAY)
                        .await
                        .expect("ingest");
                    fresh += r.fresh.len();
                    duplicates += r.duplicates;
                    acks.push(r.ack_upto);
                }
                (fresh, duplicates, acks)
            })
        })
        .collect();
    let (mut fresh, mut duplicates, mut sent_total) = (0, 0, 0);
    for t in tasks {
        let (f, d, acks) = t.await.expect("task");
        fresh += f;
        duplicates += d;
        sent_total += f + d;
        assert!(
            acks.windows(2).all(|w| w[0] <= w[1]),
            "a task's acks never go back: {acks:?}"
        );
    }
    assert_eq!(
        fresh as u64, EVENTS,
        "each event was fresh for exactly one ingest"
    );
    assert_eq!(duplicates, sent_total - EVENTS as usize);
    assert_eq!(
        stores[1].events(&a).await.expect("events"),
        sent,
        "each once, in order"
    );
    let last = stores[0]
        .ingest(&a, &batch(&a, Vec::new()), DAY)
        .await
        .expect("ack");
    assert_eq!(last.ack_upto, EVENTS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_room_transactions_never_lose_an_update() {
    let (_server, _url, stores) = replicas(4).await;
    let a = gw("hq", "gw-1");
    let r1 = room(&a, "r1");
    const WRITERS: usize = 20;
    // Read-modify-write: each one appends a booking numbered after the ones it sees.
    let tasks: Vec<_> = (0..WRITERS)
        .map(|n| {
            let store = Arc::clone(&stores[n % 2]);
            let r1 = r1.clone();
            tokio::spawn(async move {
                let commit = store
                    .transact_room(&r1, i64::MIN, |docs| {
                        let seen = docs.bookings.len();
                        let b = BookingRecord {
                            note: format!("writer {n}"),
                            ..booking(&format!("b{seen:02}"), "r1", DAY + seen as i64, DAY + HOUR)
                        };
                        let change = BookingChange::Upsert { booking: wire(&b) };
                        Ok::<_, String>((
                            seen,
                            RoomWrites {
                                bookings: vec![b],
                                changes: vec![change],
                                ..RoomWrites::default()
                            },
                        ))
                    })
                    .await
                    .expect("store")
                    .expect("decided");
                (commit.value, commit.pushed.cursor)
            })
        })
        .collect();
    // Raw changes to other rooms of the same gateway take cursors at the same time.
    let raw: Vec<_> = (0..WRITERS)
        .map(|n| {
            let store = Arc::clone(&stores[(n + 1) % 2]);
            let a = a.clone();
            tokio::spawn(async move {
                let b = booking(&format!("raw{n:02}"), &format!("room-{n}"), DAY, DAY + HOUR);
                store
                    .change_booking(&a, BookingChange::Upsert { booking: wire(&b) })
                    .await
                    .expect("raw change")
            })
        })
        .collect();
    let mut seen = BTreeSet::new();
    let mut cursors = BTreeSet::new();
    for t in tasks {
        let (saw, cursor) = t.await.expect("writer");
        seen.insert(saw);
        cursors.insert(cursor);
    }
    for t in raw {
        cursors.insert(t.await.expect("raw"));
    }
    assert_eq!(
        seen,
        (0..WRITERS).collect(),
        "each writer saw all the ones before it"
    );
    assert_eq!(
        cursors,
        (1..=2 * WRITERS as u64).collect(),
        "every cursor handed out once"
    );
    let all = stores[0]
        .bookings(&r1, i64::MIN, i64::MAX)
        .await
        .expect("bookings");
    assert_eq!(all.len(), WRITERS, "no update lost");
    let log = stores[1].changes_since(&a, 0).await.expect("log");
    assert_eq!(
        (log.cursor, log.full, log.changes.len()),
        (2 * WRITERS as u64, false, 2 * WRITERS)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schema_is_versioned_and_a_newer_one_is_refused() {
    let server = PgServer::shared().expect("postgres server");
    let url = server.create_database().expect("database");
    let store = HubStore::open_postgres(&url, 1).await.expect("create");
    let a = gw("hq", "gw-1");
    store
        .ingest(&a, &batch(&a, vec![event(1, DAY)]), DAY)
        .await
        .expect("ingest");
    store
        .put_doc("settings", "site", &json!({ "k": 1 }))
        .await
        .expect("doc");
    drop(store);

    // Opened again (a restart, or a second replica): the same schema and data.
    let again = HubStore::open_postgres(&url, 2).await.expect("reopen");
    assert_eq!(again.events(&a).await.expect("events").len(), 1);
    assert_eq!(
        server
            .psql(&url, "SELECT version FROM schema_version")
            .expect("psql")
            .trim(),
        POSTGRES_SCHEMA_VERSION.to_string()
    );
    let tables = server
        .psql(
            &url,
            "SELECT string_agg(indexname, ',' ORDER BY indexname) FROM pg_indexes \
             WHERE tablename = 'events'",
        )
        .expect("psql");
    assert_eq!(tables.trim(), "events_by_time,events_pkey,no_show_strikes");
    drop(again);

    server
        .psql(&url, "UPDATE schema_version SET version = 99")
        .expect("a newer hub was here");
    let err = HubStore::open_postgres(&url, 1).await.expect_err("refused");
    let text = err.to_string();
    assert!(
        matches!(err, HubStoreError::Postgres(_)) && text.contains("schema version 99"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_url_or_an_absent_server_is_a_clear_error() {
    let err = HubStore::open_postgres("mysql://nope", 2)
        .await
        .expect_err("bad url");
    assert!(err.to_string().contains("URL is not valid"), "{err}");
    let err = HubStore::open_postgres("postgres://postgres@127.0.0.1/x", 0)
        .await
        .expect_err("no pool");
    assert!(err.to_string().contains("pool size"), "{err}");
    // A port nobody listens on (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let url = format!("postgres://postgres@127.0.0.1:{port}/hub?connect_timeout=2");
    let err = HubStore::open_postgres(&url, 1)
        .await
        .expect_err("no server");
    assert!(
        err.to_string()
            .starts_with("hub database: migrate the hub database:"),
        "{err}"
    );
}
