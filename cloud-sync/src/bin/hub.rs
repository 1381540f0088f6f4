//! The `hub` binary: one replica of the central service, ingesting every gateway's events.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use cloud_sync::hub::{Hub, HubStore};

#[derive(Parser)]
#[command(
    name = "hub",
    version,
    about = "roomgate hub: the central service for every building"
)]
struct Cli {
    /// The broker, "host:port".
    #[arg(long)]
    broker: String,
    /// This replica's number; its certificate's CN is "hub/<replica>".
    #[arg(long, default_value = "1")]
    replica: String,
    /// The shared-subscription group of the replicas.
    #[arg(long, default_value = "hub")]
    group: String,
    /// PEM files: the broker's CA, this replica's certificate and key.
    #[arg(long)]
    ca: PathBuf,
    #[arg(long)]
    cert: PathBuf,
    #[arg(long)]
    key: PathBuf,
    /// Where the embedded store lives.
    #[arg(long)]
    data: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let (host, port) = cli
        .broker
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.to_owned(), p.parse::<u16>().ok()?)))
        .with_context(|| format!("--broker '{}': write host:port", cli.broker))?;
    let files = cloud_sync::tls::TlsFiles::read(&cli.ca, &cli.cert, &cli.key)
        .context("reading the hub's certificates")?;
    let tls = cloud_sync::tls::client_config(&files).context("the hub's certificates")?;
    let options =
        cloud_sync::tls::mqtt_options(&format!("hub-{}", cli.replica), &host, port, Some(tls))
            .context("the broker connection")?;
    std::fs::create_dir_all(&cli.data)
        .with_context(|| format!("creating {}", cli.data.display()))?;
    let store = Arc::new(HubStore::open_embedded(&cli.data).context("opening the hub store")?);
    let hub = Hub::start(options, store, &cli.group);
    tracing::info!(
        "hub replica {} serving {host}:{port} in group '{}'",
        cli.replica,
        cli.group
    );
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    hub.stop().await;
    Ok(())
}
