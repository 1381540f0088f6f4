//! The hub's web side: the booking API (HTTP + JSON, API tokens) and the admin dashboard
//! (server-rendered HTML, login). Only the hub binary serves it; the gateway's web lives in
//! `gateway` (ARCHITECTURE.md, decision "the hub's HTTP").

pub mod api;
pub mod dashboard;

use std::sync::Arc;

use crate::hub::store::HubStore;

/// The hub's clock in milliseconds since the epoch; tests hand in a manual one.
pub type Now = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The system clock.
pub fn system_now() -> Now {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    })
}

/// What every route shares.
pub struct WebState {
    pub store: Arc<HubStore>,
    pub now: Now,
}

impl std::fmt::Debug for WebState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebState").finish_non_exhaustive()
    }
}
