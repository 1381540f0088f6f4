//! Starting a whole gateway (store, devices, loop, HTTP) from a site, for main and tests.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::clock::Clock;
use crate::reload::SiteSource;
use crate::runtime::{Gateway, GatewayHandle};
use crate::site::{Site, SiteDocument};
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
/// The site is in memory: `POST /api/site` applies changes without writing a file, and
/// `GET /api/site` has no document to show (see [`start_from_file`], [`start_document`]).
pub async fn start(
    site: Site,
    data: &Path,
    listen: SocketAddr,
    clock: Clock,
) -> anyhow::Result<Running> {
    start_with_source(site, SiteSource::memory(None), data, listen, clock).await
}

/// [`start`] from a site file: `POST /api/site` writes accepted changes back to `path`
/// (atomically, the previous file kept as `<path>.prev`).
pub async fn start_from_file(
    path: &Path,
    data: &Path,
    listen: SocketAddr,
    clock: Clock,
) -> anyhow::Result<Running> {
    // A restore staged by `POST /api/restore` (or one a crash interrupted) is installed
    // before anything reads the site file or opens the store.
    // If it cannot even be prepared (nothing replaced), the gateway starts on its current
    // files and says why; a failure midway stops the start (the next one finishes it).
    match crate::backup::install_staged(path, data) {
        Ok(Some(report)) => tracing::warn!("{report}"),
        Ok(None) => {}
        Err(e @ crate::backup::BackupError::NotApplied { .. }) => tracing::error!("{e}"),
        Err(e) => {
            return Err(anyhow::Error::new(e)
                .context("installing the staged restore (fix the cause and start again)"));
        }
    }
    let doc = load_document(path)?;
    let site = doc.site().clone();
    let source = SiteSource::file(path.to_path_buf(), doc);
    start_with_source(site, source, data, listen, clock).await
}

/// [`start`] from a site document kept in memory (the demo's embedded site): changes apply in
/// memory only, and `GET /api/site` shows the running site.
pub async fn start_document(
    doc: SiteDocument,
    data: &Path,
    listen: SocketAddr,
    clock: Clock,
) -> anyhow::Result<Running> {
    let site = doc.site().clone();
    start_with_source(site, SiteSource::memory(Some(doc)), data, listen, clock).await
}

async fn start_with_source(
    site: Site,
    source: SiteSource,
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
    let panel =
        crate::panel::PanelConfig::from_site(&site, data).context("the door panels' PIN key")?;
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
    let metrics = Arc::new(crate::metrics::MetricsSource::new(
        gateway.store(),
        data,
        agent.as_ref().map(|(_, status)| status.clone()),
        gateway.handle.clock.clone(),
    ));
    let (stop_http, stopped) = oneshot::channel::<()>();
    let source = Arc::new(source);
    let backup = Arc::new(crate::backup::BackupSource {
        store: gateway.store(),
        data: data.to_path_buf(),
        site: source.clone(),
    });
    let http = tokio::spawn(crate::http::serve(
        listener,
        gateway.handle.clone(),
        panel,
        metrics,
        source,
        backup,
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

/// Reads and validates a site file into a document (the running site's TOML and diffs come
/// from it), with every error in the message.
pub fn load_document(path: &Path) -> anyhow::Result<SiteDocument> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    SiteDocument::load(&text).map_err(|errors| {
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
