//! The hub's web side: the booking API (HTTP + JSON, API tokens) and the admin dashboard
//! (server-rendered HTML, login). Only the hub binary serves it; the gateway's web lives in
//! `gateway` (ARCHITECTURE.md, decision "the hub's HTTP").

pub mod api;
pub mod auth;
pub mod dashboard;

use std::sync::Arc;

use warp::Filter;
use warp::filters::BoxedFilter;
use warp::reply::Response;

use crate::hub::bookings::BookingService;
use crate::hub::feeds::{Feeds, Fetcher};
use crate::hub::store::HubStore;

/// The hub's clock in milliseconds since the epoch; tests hand in a manual one.
pub type Now = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The system clock as [`Now`].
pub fn system_now() -> Now {
    Arc::new(wall_clock_ms)
}

/// The hub's wall clock in milliseconds since the epoch (last-seen times, token dates).
pub fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// What every route shares.
pub struct WebState {
    pub store: Arc<HubStore>,
    pub now: Now,
    /// Bookings, series and the blacklist (the same service the MQTT side applies gateway
    /// facts with).
    pub bookings: BookingService,
    /// Calendar feeds.
    pub feeds: Feeds,
}

impl WebState {
    /// The state around a booking service (its store and clock), fetching feeds with `fetcher`.
    pub fn new(bookings: BookingService, fetcher: Fetcher) -> WebState {
        WebState {
            store: Arc::clone(bookings.store()),
            now: bookings.clock(),
            feeds: Feeds::new(bookings.clone(), fetcher),
            bookings,
        }
    }
}

impl std::fmt::Debug for WebState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebState").finish_non_exhaustive()
    }
}

/// Every route of the hub's web side: the booking API (`/api/v1/...`) first, then the
/// dashboard.
pub fn routes(state: Arc<WebState>) -> BoxedFilter<(Response,)> {
    api::routes(Arc::clone(&state))
        .or(dashboard::routes(state))
        .unify()
        .boxed()
}

pub use crate::webkit::serve::{PeerAddr, Serving, peer_addr, serve};
