//! Starting a whole gateway (store, devices, loop, HTTP) from a site, for main and tests.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;

use crate::clock::Clock;
use crate::console::Console;
use crate::console::auth::{Accounts, AuthConfig, Scope};
use crate::reload::SiteSource;
use crate::runtime::{Gateway, GatewayHandle};
use crate::site::{Site, SiteDocument};
use crate::store::Store;

/// How the web side listens.
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// The console's address.
    pub listen: SocketAddr,
    /// HTTPS with the certificate in `<data>/certs/` (generated when missing), or plain HTTP
    /// (behind a TLS-terminating proxy, or in tests of other things).
    pub tls: bool,
    /// A plain-HTTP listener that redirects browsers to HTTPS.
    pub redirect: Option<SocketAddr>,
    /// Limiter and hashing settings.
    pub auth: AuthConfig,
}

impl WebConfig {
    /// HTTPS on `listen` (the default).
    pub fn https(listen: SocketAddr) -> WebConfig {
        WebConfig {
            listen,
            tls: true,
            redirect: None,
            auth: AuthConfig::default(),
        }
    }

    /// Plain HTTP on `listen`.
    pub fn plain(listen: SocketAddr) -> WebConfig {
        WebConfig {
            tls: false,
            ..WebConfig::https(listen)
        }
    }
}

impl From<SocketAddr> for WebConfig {
    fn from(listen: SocketAddr) -> WebConfig {
        WebConfig::https(listen)
    }
}

/// A gateway serving its web side.
#[derive(Debug)]
pub struct Running {
    /// The sync agent, when the site has a `[cloud]` section.
    agent: Option<tokio::task::JoinHandle<()>>,
    pub gateway: Gateway,
    /// The console's address.
    pub addr: SocketAddr,
    /// The plain-HTTP redirector's address, if started.
    pub redirect_addr: Option<SocketAddr>,
    /// Accounts, tokens, the certificate.
    pub console: Arc<Console>,
    web: crate::http::WebServing,
}

impl Running {
    pub fn handle(&self) -> &GatewayHandle {
        &self.gateway.handle
    }

    /// Whether the console is served over HTTPS.
    pub fn https(&self) -> bool {
        self.console.cert.is_some()
    }

    /// Creates a token (the console does this for installers; tests and the demo call it).
    pub fn issue_token(&self, label: &str, scope: Scope) -> anyhow::Result<String> {
        let (secret, _) = self.console.accounts.create_token(
            self.console.now_ms(),
            "gateway",
            "",
            label,
            scope,
        )?;
        Ok(secret)
    }

    pub async fn shutdown(self) {
        if let Some(agent) = &self.agent {
            agent.abort();
        }
        self.web.shutdown().await;
        self.gateway.shutdown().await;
    }
}

/// Opens the store in `data`, starts the site's devices and loop, and serves HTTP on `listen`.
/// The site is in memory: `POST /api/site` applies changes without writing a file, and
/// `GET /api/site` has no document to show (see [`start_from_file`], [`start_document`]).
pub async fn start(
    site: Site,
    data: &Path,
    listen: impl Into<WebConfig>,
    clock: Clock,
) -> anyhow::Result<Running> {
    start_with_source(site, SiteSource::memory(None), data, listen, clock).await
}

/// [`start`] from a site file: `POST /api/site` writes accepted changes back to `path`
/// (atomically, the previous file kept as `<path>.prev`).
pub async fn start_from_file(
    path: &Path,
    data: &Path,
    listen: impl Into<WebConfig>,
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
    listen: impl Into<WebConfig>,
    clock: Clock,
) -> anyhow::Result<Running> {
    let site = doc.site().clone();
    start_with_source(site, SiteSource::memory(Some(doc)), data, listen, clock).await
}

async fn start_with_source(
    site: Site,
    source: SiteSource,
    data: &Path,
    web: impl Into<WebConfig>,
    clock: Clock,
) -> anyhow::Result<Running> {
    let web = web.into();
    std::fs::create_dir_all(data)
        .with_context(|| format!("creating data dir {}", data.display()))?;
    let store = Store::open(data).context("opening the store")?;
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
    let source = Arc::new(source);
    let backup = Arc::new(crate::backup::BackupSource {
        store: gateway.store(),
        data: data.to_path_buf(),
        site: source.clone(),
    });
    let cert = if web.tls {
        let names = crate::console::tls::default_names(web.listen);
        Some(
            crate::console::tls::ConsoleCert::load_or_create(data, &names)
                .context("the console's HTTPS certificate")?,
        )
    } else {
        None
    };
    let accounts = Accounts::open(gateway.store(), data, web.auth.clone())
        .context("the console's accounts")?;
    let console = Arc::new(Console {
        accounts,
        cert,
        clock: gateway.handle.clock.clone(),
    });
    write_cli_token(&console, data).context("the local command line's token")?;
    let served = crate::http::serve(
        web.listen,
        console.cert.as_ref().map(|c| c.server_config()),
        web.redirect,
        crate::http::WebParts {
            gateway: gateway.handle.clone(),
            panel,
            metrics,
            site: source,
            backup,
            console: console.clone(),
        },
    )
    .await
    .with_context(|| format!("listening on {}", web.listen))?;
    let scheme = if web.tls { "https" } else { "http" };
    if let Some(code) = console.accounts.setup_code() {
        tracing::warn!(
            "first start: open {scheme}://<this gateway>:{}/setup and enter the setup code {code} \
             to create the installer account (also in {}, readable only here)",
            served.addr.port(),
            console.accounts.setup_path().display()
        );
    }
    tracing::info!("console at {scheme}://{}", served.addr);
    Ok(Running {
        agent: agent.map(|(task, _)| task),
        gateway,
        addr: served.addr,
        redirect_addr: served.redirect_addr,
        console,
        web: served,
    })
}

/// The file holding the local command line's API token (`gateway backup` of a running gateway,
/// scripts on the box): readable by the gateway's user only, replaced at every start.
pub const CLI_TOKEN_FILE: &str = "cli-token";
const CLI_TOKEN_LABEL: &str = "local command line";

/// Revokes the previous start's command-line token and writes a new one to
/// `<data>/cli-token` (mode 0600).
fn write_cli_token(console: &Console, data: &Path) -> anyhow::Result<()> {
    let now = console.now_ms();
    for t in console.accounts.tokens()? {
        if t.label == CLI_TOKEN_LABEL && t.created_by == "gateway" {
            let by = crate::console::auth::Caller::Token {
                id: t.id.clone(),
                label: CLI_TOKEN_LABEL.into(),
                scope: t.scope.clone(),
            };
            console.accounts.revoke_token(now, &by, "", &t.id)?;
        }
    }
    let (secret, _) = console.accounts.create_token(
        now,
        "gateway",
        "",
        CLI_TOKEN_LABEL,
        Scope::Api {
            role: crate::console::auth::Role::Installer,
        },
    )?;
    let path = data.join(CLI_TOKEN_FILE);
    crate::backup::write_file_private(&path, format!("{secret}\n").as_bytes())?;
    Ok(())
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
