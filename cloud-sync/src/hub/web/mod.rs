//! The hub's web side: the booking API (HTTP + JSON, API tokens) and the admin dashboard
//! (server-rendered HTML, login). Only the hub binary serves it; the gateway's web lives in
//! `gateway` (ARCHITECTURE.md, decision "the hub's HTTP").

pub mod api;
pub mod auth;
pub mod dashboard;

use std::net::SocketAddr;
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

/// The peer's address, set by [`serve`] on every request (a filter for rate limits and logs;
/// `warp::addr::remote()` only works under warp's own server, so this falls back to it).
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

/// The address of the peer that sent the request, when known.
pub fn peer_addr()
-> impl Filter<Extract = (Option<SocketAddr>,), Error = std::convert::Infallible> + Clone {
    warp::ext::optional::<PeerAddr>()
        .and(warp::addr::remote())
        .map(|peer: Option<PeerAddr>, remote: Option<SocketAddr>| peer.map(|p| p.0).or(remote))
}

/// A running web server.
#[derive(Debug)]
pub struct Serving {
    /// The address it listens on (the real port when asked for port 0).
    pub addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Serving {
    /// Stops accepting connections, closes the open ones, and waits for that.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// How long a client has for its TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Serves `routes` on `addr` over plain TCP, or over TLS with `tls` (tokio-rustls; warp 0.4 has
/// no TLS of its own), HTTP/1.1 and HTTP/2. Returns once listening.
pub async fn serve(
    addr: SocketAddr,
    tls: Option<Arc<rustls::ServerConfig>>,
    routes: BoxedFilter<(Response,)>,
) -> std::io::Result<Serving> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let task = tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                accepted = listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            // Out of file descriptors and the like: wait a little, go on.
                            tracing::warn!("web: accept failed: {e}");
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let routes = routes.clone();
                    let acceptor = acceptor.clone();
                    connections.spawn(async move {
                        match acceptor {
                            None => connection(stream, peer, routes).await,
                            Some(acceptor) => {
                                match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                                    Ok(Ok(tls)) => connection(tls, peer, routes).await,
                                    Ok(Err(e)) => tracing::debug!("web: TLS handshake with {peer}: {e}"),
                                    Err(_) => tracing::debug!("web: TLS handshake with {peer} timed out"),
                                }
                            }
                        }
                    });
                }
            }
        }
        connections.shutdown().await;
    });
    Ok(Serving { addr, stop, task })
}

/// Serves one connection; every request carries the peer's address ([`peer_addr`]).
async fn connection<I>(io: I, peer: SocketAddr, routes: BoxedFilter<(Response,)>)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper_util::service::TowerToHyperService::new(warp::service(routes));
    let with_peer =
        hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(PeerAddr(peer));
            hyper::service::Service::call(&service, request)
        });
    let builder =
        hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    if let Err(e) = builder
        .serve_connection(hyper_util::rt::TokioIo::new(io), with_peer)
        .await
    {
        tracing::debug!("web: connection with {peer}: {e}");
    }
}
