//! Serving a warp filter over plain TCP or TLS (tokio-rustls; warp 0.4 has no TLS of its own)
//! with hyper-util, HTTP/1.1 and HTTP/2, every request carrying the peer's address. The hub's
//! web side and the gateway's console both serve through this.

use std::net::SocketAddr;
use std::sync::Arc;

use warp::Filter;
use warp::filters::BoxedFilter;
use warp::reply::Response;

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

/// The request's cookies as one `Cookie` value. HTTP/2 clients may send each cookie in its own
/// `cookie` field (RFC 9113 §8.2.3; Chromium does): they are joined again with "; ".
pub fn cookies()
-> impl Filter<Extract = (Option<String>,), Error = std::convert::Infallible> + Clone {
    warp::header::headers_cloned().map(|headers: warp::http::HeaderMap| {
        let all: Vec<&str> = headers
            .get_all("cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        (!all.is_empty()).then(|| all.join("; "))
    })
}

/// The host the client asked for: the `Host` header (HTTP/1.1), else the request's authority
/// (HTTP/2, which browsers speak over HTTPS, has no `Host` header).
pub fn host() -> impl Filter<Extract = (Option<String>,), Error = std::convert::Infallible> + Clone
{
    warp::header::optional::<String>("host")
        .or(warp::any().map(|| None))
        .unify()
        .and(warp::host::optional().or(warp::any().map(|| None)).unify())
        .map(
            |host: Option<String>, authority: Option<warp::host::Authority>| {
                host.or_else(|| authority.map(|a| a.to_string()))
            },
        )
}
