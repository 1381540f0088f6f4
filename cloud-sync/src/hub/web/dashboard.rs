//! The admin dashboard: buildings, gateways and rooms live, faults, statistics; login.
