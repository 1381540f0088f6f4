//! Starting a whole gateway (store, devices, loop, HTTP) from a site, for main and tests.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::clock::Clock;
use crate::runtime::{Gateway, GatewayHandle};
use crate::site::Site;
use crate::store::Store;

/// A gateway serving HTTP.
#[derive(Debug)]
pub struct Running {
    /// The sync agent, when the site has a `[cloud]` section.
    agent: Option<tokio::task::JoinHandle<()>>,
    pub gateway: Gateway,
    pub addr: SocketAddr,
    stop_http: oneshot::Sender<()>,
    http: tokio::task::JoinHandle<()>,
}

impl Running {
    pub fn handle(&self) -> &GatewayHandle {
        &self.gateway.handle
    }

    pub async fn shutdown(self) {
        if let Some(agent) = &self.agent {
            agent.abort();
        }
        let _ = self.stop_http.send(());
        let _ = self.http.await;
        self.gateway.shutdown().await;
    }
}

/// Opens the store in `data`, starts the site's devices and loop, and serves HTTP on `listen`.
pub async fn start(
    site: Site,
    data: &Path,
    listen: SocketAddr,
    clock: Clock,
) -> anyhow::Result<Running> {
    std::fs::create_dir_all(data)
        .with_context(|| format!("creating data dir {}", data.display()))?;
    let store = Store::open(data).context("opening the store")?;
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    let cloud = site.cloud.clone();
    let gateway = Gateway::start(site, store, clock)
        .await
        .context("starting the gateway")?;
    let agent = match cloud {
        None => None,
        Some(c) => {
            let tls = match &c.tls {
                None => {
                    tracing::warn!("cloud sync over plain TCP (tls = false): lab use only");
                    None
                }
                Some((ca, cert, key)) => {
                    let files = cloud_sync::tls::TlsFiles::read(ca, cert, key)
                        .context("reading the cloud certificates")?;
                    Some(cloud_sync::tls::client_config(&files).context("the cloud certificates")?)
                }
            };
            let options = cloud_sync::tls::mqtt_options(&c.id.client_id(), &c.host, c.port, tls)
                .context("the cloud connection")?;
            tracing::info!("syncing with the hub at {}:{} as {}", c.host, c.port, c.id);
            let cfg = crate::sync::AgentConfig::new(c.id.clone(), options);
            Some(crate::sync::spawn_agent(
                cfg,
                gateway.store(),
                gateway.outbox_watch(),
                gateway.handle.clone(),
            ))
        }
    };
    let (stop_http, stopped) = oneshot::channel::<()>();
    let http = tokio::spawn(crate::http::serve(
        listener,
        gateway.handle.clone(),
        async {
            let _ = stopped.await;
        },
    ));
    Ok(Running {
        agent: agent.map(|(task, _)| task),
        gateway,
        addr,
        stop_http,
        http,
    })
}

/// Reads and validates a site file, with every error in the message.
pub fn load_site(path: &Path) -> anyhow::Result<Site> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    crate::site::load(&text).map_err(|errors| {
        let lines: Vec<String> = errors
            .0
            .iter()
            .map(|e| format!("{}:{e}", path.display()))
            .collect();
        anyhow::anyhow!(
            "{} error(s) in the site file:\n{}",
            lines.len(),
            lines.join("\n")
        )
    })
}
