//! The central service (`hub`): ingests gateway events exactly once and keeps the bookings
//! each gateway syncs from.

pub mod bookings;
pub mod feeds;
pub mod service;
pub mod stats;
pub mod store;
pub mod web;

pub use service::{Hub, HubStats};
pub use store::HubStore;
