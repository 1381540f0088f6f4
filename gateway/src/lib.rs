//! The roomgate gateway: wires the engine, the drivers and the store, and serves the local web.
//!
//! Only this crate knows HTTP and config files. See ARCHITECTURE.md for the code map.

pub mod api;
pub mod app;
pub mod backup;
pub mod bindings;
pub mod clock;
pub mod console;
pub mod demo;
pub mod duration;
pub mod http;
pub mod i18n;
pub mod metrics;
pub mod panel;
pub mod reload;
pub mod runtime;
pub mod site;
pub mod store;
pub mod sync;
pub mod telemetry;
