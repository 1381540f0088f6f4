//! The room domain and the automation engine of a floor: pure and deterministic.
//!
//! No I/O, no tokio, no clock: every call takes `now`, and the engine says when it next
//! needs to run (`Engine::poll_timeout`). A month of meetings runs in milliseconds.

mod engine;
mod model;
mod room;
mod time;

pub use engine::{
    CheckInMethod, Command, Engine, EngineError, Event, Outcome, OutcomeKind, Output, Reason,
    ReleaseCause, UsageFacts,
};
pub use model::{
    AccessPolicy, Action, AirMetric, AirRule, Booking, BookingId, Equipment, HvacMode,
    MAX_LIGHTS_IN_EMPTY_ROOM, Occupancy, Policy, PolicyError, Presenter, RoomConfig, RoomId,
    RoomKind, RoomState, Scene, StatusLight, Step,
};
pub use room::{BookingView, RoomView};
pub use time::{Span, Timestamp};
