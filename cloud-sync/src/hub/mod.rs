//! The central service (`hub`): ingests gateway events exactly once and keeps the bookings
//! each gateway syncs from.

pub mod store;
