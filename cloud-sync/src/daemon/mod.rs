//! What both binaries (`gateway`, `hub`) need to run as system services: the systemd notify
//! protocol (`notify`) and service logs for journald with a runtime-changeable filter
//! (`logging`).
//!
//! This lives here because `cloud-sync` is the one library both binaries share; nothing in it
//! knows MQTT, rooms or HTTP.

pub mod logging;
pub mod notify;

pub use logging::{LogFormat, LoggingError};
pub use notify::Notifier;
