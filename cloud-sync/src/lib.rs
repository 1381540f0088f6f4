//! The protocol between a gateway and the central hub: reserved for the sync agent and the hub.
//!
//! Only this crate will know MQTT topics and payloads (ARCHITECTURE.md). It is empty until the
//! cloud-sync work gives it the durable outbox, the bookings inbox and the hub.
