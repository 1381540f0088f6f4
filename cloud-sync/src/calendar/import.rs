//! From a parsed feed to booking changes: stable ids per UID, and the diff a re-import applies.
//!
//! An imported event's booking id is derived from the room and the event's UID (and, for an
//! occurrence, its original local date), so importing the same feed again finds the same ids and
//! updates instead of duplicating. Rules of [`diff`]:
//! * a booking the feed has and the hub does not is created; one whose time, subject, organizer
//!   or attendees changed is updated;
//! * an active imported booking in the window that the feed no longer has (its UID or occurrence
//!   was removed, or the event is `STATUS:CANCELLED`) is cancelled;
//! * bookings of UIDs the parse skipped for errors are left alone (a typo in the feed must not
//!   cancel a meeting), and so are bookings outside the window and bookings not from a feed;
//! * a cancelled, released or ended booking is never revived or changed by an import: those are
//!   facts or decisions at the hub that win over the feed (PROTOCOL.md, "Reconciling").

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use jiff::civil::Date;

use super::Window;
use super::booking::{Booking, BookingError, BookingId, BookingState, BookingUpdate, Calendar};
use super::ical::{Feed, IcalEvent};
use super::series::{SeriesError, SeriesId, SeriesLimits};

/// The booking id of an imported event in `room`: `ical-{hash of room and UID}`, with
/// `@{original local date}` for an occurrence of a recurring event.
///
/// The hash is 64-bit FNV-1a, fixed here so ids stay the same across releases and machines.
pub fn booking_id_for(room: &str, uid: &str, occurrence: Option<Date>) -> BookingId {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in room.bytes().chain([0]).chain(uid.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    match occurrence {
        Some(date) => BookingId(format!("ical-{hash:016x}@{date}")),
        None => BookingId(format!("ical-{hash:016x}")),
    }
}

/// A feed expanded into the bookings of one room within a window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expansion {
    pub window: Window,
    /// Every booking the feed has in the window; cancelled events come as cancelled bookings.
    pub bookings: Vec<Booking>,
    /// UIDs whose bookings an import must not touch: skipped for errors or not expandable.
    pub untouched: BTreeSet<String>,
    /// Events that parsed but could not be expanded (too many occurrences...), by UID.
    pub errors: Vec<(String, SeriesError)>,
}

/// Expands every event of `feed` into `room`'s bookings overlapping `window`.
pub fn expand_feed(feed: &Feed, room: &str, window: Window, limits: &SeriesLimits) -> Expansion {
    let mut expansion = Expansion {
        window,
        bookings: Vec::new(),
        untouched: feed.skipped_uids().into_iter().map(str::to_owned).collect(),
        errors: Vec::new(),
    };
    for event in &feed.events {
        if let Err(error) = expand_event(event, room, window, limits, &mut expansion.bookings) {
            expansion.untouched.insert(event.uid.clone());
            expansion.errors.push((event.uid.clone(), error));
        }
    }
    expansion
        .bookings
        .sort_by(|a, b| (a.start, &a.id).cmp(&(b.start, &b.id)));
    expansion
}

fn expand_event(
    event: &IcalEvent,
    room: &str,
    window: Window,
    limits: &SeriesLimits,
    out: &mut Vec<Booking>,
) -> Result<(), SeriesError> {
    let booking =
        |id: BookingId, start: Timestamp, end: Timestamp, series: Option<SeriesId>| Booking {
            id,
            room: room.to_owned(),
            start,
            end,
            subject: event.subject.clone(),
            organizer: event.organizer.clone(),
            attendees: event.attendees.clone(),
            state: if event.cancelled {
                BookingState::Cancelled
            } else {
                BookingState::Active
            },
            series,
            source_uid: Some(event.uid.clone()),
        };
    let series_id = SeriesId(booking_id_for(room, &event.uid, None).0);
    match event.to_series(series_id.clone()) {
        Some(series) => {
            for o in series.occurrences(window, limits)? {
                let id = booking_id_for(room, &event.uid, Some(o.date));
                out.push(booking(id, o.start, o.end, Some(series_id.clone())));
            }
        }
        None => {
            let end = event.end().ok_or_else(|| {
                SeriesError::OutOfRange(format!("the end of event {}", event.uid))
            })?;
            if window.overlaps(event.start.timestamp(), end) {
                let id = booking_id_for(room, &event.uid, event.recurrence_id);
                out.push(booking(id, event.start.timestamp(), end, None));
            }
        }
    }
    Ok(())
}

/// One change for the hub to apply after an import, in the order returned (cancellations first,
/// so a moved meeting can take a slot another one left).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportChange {
    Cancel(BookingId),
    Update(Booking),
    Create(Booking),
}

/// What must change so that `old` (the bookings earlier imports of this feed made) matches the
/// feed's `new` expansion. See the module docs for the rules.
pub fn diff(old: &[Booking], new: &Expansion) -> Vec<ImportChange> {
    let old_by_id: BTreeMap<&BookingId, &Booking> = old.iter().map(|b| (&b.id, b)).collect();
    let new_ids: BTreeSet<&BookingId> = new.bookings.iter().map(|b| &b.id).collect();
    let (mut cancels, mut updates, mut creates) = (Vec::new(), Vec::new(), Vec::new());
    for booking in &new.bookings {
        match old_by_id.get(&booking.id) {
            None if booking.state == BookingState::Active => {
                creates.push(ImportChange::Create(booking.clone()))
            }
            None => {}
            Some(before) if before.state != BookingState::Active => {}
            Some(_) if booking.state == BookingState::Cancelled => {
                cancels.push(ImportChange::Cancel(booking.id.clone()));
            }
            Some(before) if differs(before, booking) => {
                updates.push(ImportChange::Update(booking.clone()))
            }
            Some(_) => {}
        }
    }
    for before in old {
        let from_this_feed = before
            .source_uid
            .as_ref()
            .is_some_and(|uid| !new.untouched.contains(uid));
        if from_this_feed
            && before.state == BookingState::Active
            && new.window.overlaps(before.start, before.end)
            && !new_ids.contains(&before.id)
        {
            cancels.push(ImportChange::Cancel(before.id.clone()));
        }
    }
    cancels.into_iter().chain(updates).chain(creates).collect()
}

fn differs(before: &Booking, after: &Booking) -> bool {
    (
        before.start,
        before.end,
        &before.subject,
        &before.organizer,
        &before.attendees,
    ) != (
        after.start,
        after.end,
        &after.subject,
        &after.organizer,
        &after.attendees,
    )
}

impl Calendar {
    /// Applies an import's changes in order; each refused change (a conflict, a booking in the
    /// past) is returned with its reason and the others still apply.
    pub fn apply_import(
        &mut self,
        changes: Vec<ImportChange>,
        now: Timestamp,
    ) -> Vec<(BookingId, BookingError)> {
        let mut refused = Vec::new();
        for change in changes {
            let (id, result) = match change {
                ImportChange::Cancel(id) => {
                    let result = self.cancel(&id, now).map(drop);
                    (id, result)
                }
                ImportChange::Update(booking) => {
                    let update = BookingUpdate {
                        start: Some(booking.start),
                        end: Some(booking.end),
                        subject: Some(booking.subject),
                        organizer: Some(booking.organizer),
                        attendees: Some(booking.attendees),
                    };
                    let result = self.change(&booking.id, update, now).map(drop);
                    (booking.id, result)
                }
                ImportChange::Create(booking) => {
                    let id = booking.id.clone();
                    (id, self.insert(booking, now).map(drop))
                }
            };
            if let Err(error) = result {
                refused.push((id, error));
            }
        }
        refused
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::{IcalLimits, parse_ical};
    use jiff::tz::TimeZone;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn berlin() -> TimeZone {
        jiff::tz::db().get("Europe/Berlin").unwrap()
    }

    fn feed(events: &str) -> Feed {
        let text = format!("BEGIN:VCALENDAR\nVERSION:2.0\n{events}END:VCALENDAR\n");
        parse_ical(&text, &berlin(), jiff::tz::db(), &IcalLimits::default()).unwrap()
    }

    const NOW: &str = "2026-03-20T00:00:00Z";

    fn expand(feed: &Feed) -> Expansion {
        expand_feed(
            feed,
            "r-101",
            Window::days_from(t(NOW), 14),
            &SeriesLimits::default(),
        )
    }

    const STANDUP: &str = "BEGIN:VEVENT\nUID:standup\nDTSTART;TZID=Europe/Berlin:20260323T091500\n\
        DURATION:PT15M\nRRULE:FREQ=DAILY;BYDAY=MO,TU,WE,TH,FR\nSUMMARY:Stand-up\n\
        ORGANIZER:mailto:ada@example.com\nEND:VEVENT\n";
    const REVIEW: &str = "BEGIN:VEVENT\nUID:review\nDTSTART:20260325T130000Z\nDTEND:20260325T140000Z\n\
        SUMMARY:Review\nEND:VEVENT\n";

    fn summary(changes: &[ImportChange]) -> Vec<String> {
        changes
            .iter()
            .map(|c| match c {
                ImportChange::Cancel(id) => format!("cancel {id}"),
                ImportChange::Update(b) => format!("update {} {}", b.id, b.start),
                ImportChange::Create(b) => format!("create {} {}", b.id, b.start),
            })
            .collect()
    }

    #[test]
    fn ids_are_stable_per_room_uid_and_occurrence() {
        let id = booking_id_for("r-101", "standup", None);
        assert_eq!(id, booking_id_for("r-101", "standup", None));
        assert_ne!(id, booking_id_for("r-102", "standup", None));
        assert_eq!(id.as_str().len(), "ical-".len() + 16);
        let date = jiff::civil::date(2026, 3, 23);
        assert_eq!(
            booking_id_for("r-101", "standup", Some(date)).as_str(),
            format!("{id}@2026-03-23")
        );
    }

    #[test]
    fn first_import_creates_and_reimport_changes_nothing() {
        let first = expand(&feed(&format!("{STANDUP}{REVIEW}")));
        // Nine weekdays of stand-ups from the 23rd to the window's end, and the review.
        assert_eq!(first.bookings.len(), 10);
        assert!(
            first
                .bookings
                .iter()
                .all(|b| b.room == "r-101" && b.state == BookingState::Active)
        );
        let changes = diff(&[], &first);
        assert_eq!(changes.len(), 10);

        let mut calendar = Calendar::new("r-101", berlin());
        assert_eq!(calendar.apply_import(changes, t(NOW)), []);
        let again = expand(&feed(&format!("{STANDUP}{REVIEW}")));
        let old: Vec<Booking> = calendar.bookings().cloned().collect();
        assert_eq!(diff(&old, &again), []);
    }

    #[test]
    fn reimport_updates_moved_events_and_cancels_removed_ones() {
        let mut calendar = Calendar::new("r-101", berlin());
        let first = expand(&feed(&format!("{STANDUP}{REVIEW}")));
        assert_eq!(calendar.apply_import(diff(&[], &first), t(NOW)), []);

        // The review moves an hour later, the stand-up loses 2026-03-24 and its series ends on
        // the 26th, and a new event appears.
        let edited = format!(
            "{}{}BEGIN:VEVENT\nUID:new\nDTSTART:20260401T080000Z\nDURATION:PT1H\nEND:VEVENT\n",
            STANDUP
                .replace(
                    "BYDAY=MO,TU,WE,TH,FR",
                    "BYDAY=MO,TU,WE,TH,FR;UNTIL=20260326T235959Z"
                )
                .replace(
                    "SUMMARY",
                    "EXDATE;TZID=Europe/Berlin:20260324T091500\nSUMMARY"
                ),
            REVIEW
                .replace("DTEND:20260325T140000Z", "DTEND:20260325T150000Z")
                .replace("DTSTART:20260325T130000Z", "DTSTART:20260325T140000Z"),
        );
        let second = expand(&feed(&edited));
        let old: Vec<Booking> = calendar.bookings().cloned().collect();
        let changes = diff(&old, &second);
        let standup = booking_id_for("r-101", "standup", None);
        let expected: Vec<String> = [
            "2026-03-24",
            "2026-03-27",
            "2026-03-30",
            "2026-03-31",
            "2026-04-01",
            "2026-04-02",
        ]
        .iter()
        .map(|d| format!("cancel {standup}@{d}"))
        .chain([
            format!(
                "update {} 2026-03-25T14:00:00Z",
                booking_id_for("r-101", "review", None)
            ),
            format!(
                "create {} 2026-04-01T08:00:00Z",
                booking_id_for("r-101", "new", None)
            ),
        ])
        .collect();
        assert_eq!(summary(&changes), expected);
        assert_eq!(calendar.apply_import(changes, t(NOW)), []);
        let active = calendar
            .bookings()
            .filter(|b| b.state == BookingState::Active)
            .count();
        assert_eq!(active, 5); // 23rd, 25th, 26th, the review, the new one

        // The whole feed emptied: everything in the window is cancelled.
        let old: Vec<Booking> = calendar.bookings().cloned().collect();
        let changes = diff(&old, &expand(&feed("")));
        assert_eq!(changes.len(), 5);
        assert!(changes.iter().all(|c| matches!(c, ImportChange::Cancel(_))));
    }

    #[test]
    fn a_broken_event_leaves_its_bookings_alone_and_facts_win() {
        let mut calendar = Calendar::new("r-101", berlin());
        let first = expand(&feed(&format!("{STANDUP}{REVIEW}")));
        assert_eq!(calendar.apply_import(diff(&[], &first), t(NOW)), []);
        let review = booking_id_for("r-101", "review", None);

        // A typo in the review's DTEND: reported, and the review is not cancelled.
        let broken = feed(&format!(
            "{STANDUP}{}",
            REVIEW.replace("DTEND:20260325T140000Z", "DTEND:2026-03-25")
        ));
        assert_eq!(broken.errors.len(), 1);
        let old: Vec<Booking> = calendar.bookings().cloned().collect();
        let expansion = expand(&broken);
        assert!(expansion.untouched.contains("review"));
        assert_eq!(diff(&old, &expansion), []);

        // A released stand-up is a fact: the feed's (changed) version does not revive or move it.
        let released = booking_id_for("r-101", "standup", Some(jiff::civil::date(2026, 3, 23)));
        calendar.release(&released).unwrap();
        let old: Vec<Booking> = calendar.bookings().cloned().collect();
        let moved = feed(&format!(
            "{}{REVIEW}",
            STANDUP.replace("T091500", "T093000")
        ));
        let changes = diff(&old, &expand(&moved));
        assert!(summary(&changes).iter().all(|c| c.starts_with("update")));
        assert_eq!(changes.len(), 8);
        assert!(
            !summary(&changes)
                .iter()
                .any(|c| c.contains(released.as_str()))
        );

        // STATUS:CANCELLED in the feed cancels the booking.
        let cancelled = feed(&format!(
            "{STANDUP}{}",
            REVIEW.replace("SUMMARY", "STATUS:CANCELLED\nSUMMARY")
        ));
        let old: Vec<Booking> = calendar.bookings().cloned().collect();
        assert_eq!(
            summary(&diff(&old, &expand(&cancelled))),
            [format!("cancel {review}")]
        );
    }

    #[test]
    fn conflicts_in_a_feed_are_refused_one_by_one() {
        let mut calendar = Calendar::new("r-101", berlin());
        let clash = "BEGIN:VEVENT\nUID:clash\nDTSTART:20260325T133000Z\nDTEND:20260325T143000Z\nEND:VEVENT\n";
        let expansion = expand(&feed(&format!("{REVIEW}{clash}")));
        let refused = calendar.apply_import(diff(&[], &expansion), t(NOW));
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0].0, booking_id_for("r-101", "clash", None));
        assert!(matches!(refused[0].1, BookingError::Conflict(_)));
    }
}
