//! The gateway's side of cloud sync: what goes into the outbox, and the agent that carries
//! it to the hub (see cloud-sync/PROTOCOL.md).

use cloud_sync::wire::{Event, EventKind};
use scenes::{CheckInMethod, Outcome, OutcomeKind, ReleaseCause};

/// The outbox event for an engine outcome, or `None` for outcomes that stay local (refused
/// check-ins, manual holds, sensor notices: they are in the activity log).
pub fn outcome_event(o: &Outcome, reason: &str) -> Option<Event> {
    use serde_json::json;
    let (kind, data) = match &o.kind {
        OutcomeKind::MeetingStarted => (EventKind::MeetingStarted, json!(null)),
        OutcomeKind::CheckedIn(method) => (
            EventKind::CheckedIn,
            json!({ "method": match method {
                CheckInMethod::Panel => "panel",
                CheckInMethod::Card => "card",
                CheckInMethod::Presence => "presence",
                CheckInMethod::Remote => "remote",
            } }),
        ),
        OutcomeKind::Released(cause) => (
            EventKind::Released,
            json!({ "cause": match cause {
                ReleaseCause::NoShow => "no_show",
                ReleaseCause::Vacancy => "vacancy",
            } }),
        ),
        OutcomeKind::Ended => (EventKind::Ended, json!(null)),
        OutcomeKind::Cancelled => (EventKind::Cancelled, json!(null)),
        OutcomeKind::WalkInStarted => (EventKind::WalkInStarted, json!(null)),
        OutcomeKind::WalkInEnded => (EventKind::WalkInEnded, json!(null)),
        OutcomeKind::Extended { until } => (
            EventKind::Extended,
            json!({ "until_ms": until.as_millis() }),
        ),
        OutcomeKind::AccessGranted => (EventKind::AccessGranted, json!(null)),
        OutcomeKind::AccessDenied => (EventKind::AccessDenied, json!(null)),
        OutcomeKind::NoShowStrike { organizer } => {
            (EventKind::NoShowStrike, json!({ "organizer": organizer }))
        }
        OutcomeKind::Usage(u) => (
            EventKind::Usage,
            json!({
                "organizer": u.organizer,
                "scheduled_start_ms": u.scheduled_start.as_millis(),
                "scheduled_end_ms": u.scheduled_end.as_millis(),
                "actual_start_ms": u.actual_start.map(|t| t.as_millis()),
                "actual_end_ms": u.actual_end.as_millis(),
                "release": u.release.map(|r| match r {
                    ReleaseCause::NoShow => "no_show",
                    ReleaseCause::Vacancy => "vacancy",
                }),
                "occupied_ms": u.occupied.as_millis(),
                "devices_on_ms": u.devices_on.as_millis(),
            }),
        ),
        OutcomeKind::CheckInRefused
        | OutcomeKind::ExtendRefused
        | OutcomeKind::SensorUnavailable
        | OutcomeKind::SensorRestored
        | OutcomeKind::OverrideStarted { .. }
        | OutcomeKind::OverrideEnded => return None,
    };
    Some(Event {
        seq: 0,
        at_ms: o.at.as_millis(),
        room: o.room.to_string(),
        booking: o.booking.as_ref().map(ToString::to_string),
        kind,
        reason: reason.to_owned(),
        data,
    })
}
