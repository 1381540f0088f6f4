//! The protocol between a gateway and the central hub: topics, payloads and their rules.
//!
//! Only this crate knows MQTT topics and payloads (ARCHITECTURE.md); `PROTOCOL.md` beside this
//! crate is the specification. `wire` holds the versioned payloads, `topics` the layout.

pub mod backoff;
pub mod calendar;
pub mod daemon;
pub mod hub;
pub mod tls;
pub mod topics;
pub mod webkit;
pub mod wire;
