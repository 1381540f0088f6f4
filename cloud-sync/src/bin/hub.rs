//! The `hub` binary: one replica of the central service (MQTT ingest, booking API, admin
//! dashboard), and the commands that create admin accounts and API tokens.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};
use cloud_sync::daemon::{LogFormat, LoggingError, Notifier, logging};
use cloud_sync::hub::bookings::BookingService;
use cloud_sync::hub::feeds::Fetcher;
use cloud_sync::hub::service::HubStats;
use cloud_sync::hub::service::Pusher;
use cloud_sync::hub::web::{self, WebState};
use cloud_sync::hub::{Hub, HubStore};
use warp::Filter as _;

#[derive(Parser)]
#[command(
    name = "hub",
    version,
    about = "roomgate hub: the central service for every building"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log lines as text (journald-friendly under systemd) or JSON.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// A `RUST_LOG`-style filter ("info", "warn,cloud_sync=debug"); default: `RUST_LOG`, else
    /// info. Changeable while running with `PUT /api/log-level` (localhost only).
    #[arg(long, global = true)]
    log_filter: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Runs one replica: ingest over MQTT, the booking API and the dashboard over HTTPS.
    Serve(Box<Serve>),
    /// Admin accounts of the dashboard.
    User {
        #[command(subcommand)]
        action: UserAction,
    },
    /// API tokens of the booking API.
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
}

#[derive(Subcommand)]
enum UserAction {
    /// Creates an admin account; asks for the password (or reads one line from stdin when
    /// stdin is not a terminal).
    Add {
        name: String,
        #[command(flatten)]
        storage: Storage,
    },
}

#[derive(Subcommand)]
enum TokenAction {
    /// Creates a token and prints it once (the hub keeps only its hash).
    Create {
        name: String,
        #[command(flatten)]
        storage: Storage,
    },
    /// Revokes every token with this name.
    Revoke {
        name: String,
        #[command(flatten)]
        storage: Storage,
    },
}

/// Where the hub keeps its data: an embedded store on this machine, or PostgreSQL shared by
/// every replica.
#[derive(Args)]
struct Storage {
    /// The embedded store's directory (one machine).
    #[arg(
        long,
        conflicts_with = "postgres",
        required_unless_present = "postgres"
    )]
    data: Option<PathBuf>,
    /// A PostgreSQL URL ("postgres://user@host/db"), shared by the replicas.
    #[arg(long)]
    postgres: Option<String>,
    /// Connections in the PostgreSQL pool.
    #[arg(long, default_value_t = 8)]
    pool: usize,
}

impl Storage {
    async fn open(&self) -> anyhow::Result<Arc<HubStore>> {
        let store = match (&self.data, &self.postgres) {
            (_, Some(url)) => HubStore::open_postgres(url, self.pool)
                .await
                .context("opening the hub's PostgreSQL database")?,
            (Some(dir), None) => {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                HubStore::open_embedded(dir).context("opening the hub store")?
            }
            (None, None) => bail!("give --data DIR or --postgres URL"),
        };
        Ok(Arc::new(store))
    }
}

#[derive(Args)]
struct Serve {
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
    #[command(flatten)]
    storage: Storage,
    /// Where the booking API and the dashboard listen.
    #[arg(long, default_value = "0.0.0.0:8443")]
    http: SocketAddr,
    /// The web server's certificate chain and key (PEM).
    #[arg(long, requires = "http_key", required_unless_present = "http_plain")]
    http_cert: Option<PathBuf>,
    #[arg(long, requires = "http_cert")]
    http_key: Option<PathBuf>,
    /// Serve plain HTTP, for a TLS-terminating reverse proxy in front of the hub only.
    #[arg(long, conflicts_with_all = ["http_cert", "http_key"])]
    http_plain: bool,
    /// The directory calendar feeds may name local files in (none: URL feeds only).
    #[arg(long)]
    feeds_dir: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    logging::init(cli.log_format, cli.log_filter.as_deref())?;
    match cli.command {
        Command::Serve(serve) => run(*serve).await,
        Command::User {
            action: UserAction::Add { name, storage },
        } => {
            let store = storage.open().await?;
            let password = read_password(&name)?;
            let now = (web::system_now())();
            cloud_sync::hub::web::auth::add_user(&store, &name, &password, now)
                .await
                .with_context(|| format!("adding admin '{name}'"))?;
            println!("admin '{name}' created");
            Ok(())
        }
        Command::Token {
            action: TokenAction::Create { name, storage },
        } => {
            let store = storage.open().await?;
            let token = cloud_sync::hub::web::api::create_token(&store, &name)
                .await
                .with_context(|| format!("creating token '{name}'"))?;
            println!("{token}");
            eprintln!("token '{name}' created; this is the only time it is shown");
            Ok(())
        }
        Command::Token {
            action: TokenAction::Revoke { name, storage },
        } => {
            let store = storage.open().await?;
            let n = cloud_sync::hub::web::api::revoke_tokens(&store, &name)
                .await
                .with_context(|| format!("revoking token '{name}'"))?;
            println!("{n} token(s) named '{name}' revoked");
            Ok(())
        }
    }
}

/// The new admin's password: asked twice without echo on a terminal, else one stdin line.
fn read_password(name: &str) -> anyhow::Result<String> {
    use std::io::IsTerminal as _;
    if !std::io::stdin().is_terminal() {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("reading the password from stdin")?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_owned());
    }
    let first = rpassword::prompt_password(format!("password for {name}: "))
        .context("reading the password")?;
    let again = rpassword::prompt_password("again: ").context("reading the password")?;
    if first != again {
        bail!("the two passwords differ");
    }
    Ok(first)
}

async fn run(cli: Serve) -> anyhow::Result<()> {
    let (host, port) = cli
        .broker
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.to_owned(), p.parse::<u16>().ok()?)))
        .with_context(|| format!("--broker '{}': write host:port", cli.broker))?;
    let files = cloud_sync::tls::TlsFiles::read(&cli.ca, &cli.cert, &cli.key)
        .context("reading the hub's certificates")?;
    let tls = cloud_sync::tls::client_config(&files).context("the hub's certificates")?;
    let mut options =
        cloud_sync::tls::mqtt_options(&format!("hub-{}", cli.replica), &host, port, Some(tls))
            .context("the broker connection")?;
    // Replicas share a subscription: a stopped replica with a persistent session would keep
    // receiving its share of new messages, queued until it returns, and the gateways would
    // wait for their ack timeouts. Nothing the protocol needs lives in that session (events
    // and sync requests are resent until answered, status is retained), so replicas start clean.
    if cli.storage.postgres.is_some() {
        options.set_clean_session(true);
    }
    let web_tls = match (&cli.http_cert, &cli.http_key) {
        (Some(cert), Some(key)) => {
            let read = |p: &PathBuf| {
                std::fs::read(p)
                    .map(|b| cloud_sync::tls::Pem::new(p.display().to_string(), b))
                    .with_context(|| format!("reading {}", p.display()))
            };
            Some(
                cloud_sync::tls::server_config(&read(cert)?, &read(key)?)
                    .context("the web server's certificate")?,
            )
        }
        _ => None,
    };
    let store = cli.storage.open().await?;
    let bookings = BookingService::new(Arc::clone(&store), Pusher::new(), web::system_now());
    let hub = Hub::start_with_bookings(options, bookings.clone(), &cli.group);
    let horizon = bookings.spawn_horizon_job(Duration::from_secs(3600));
    let mut fetcher = Fetcher::with_system_roots().context("the feed fetcher's TLS roots")?;
    fetcher.file_root = cli.feeds_dir.clone();
    let state = Arc::new(WebState::new(bookings, fetcher));
    let feeds = state.feeds.spawn_scheduler(Duration::from_secs(60));
    let ops = Arc::new(Ops {
        stats: hub.watch_stats(),
        store: Arc::clone(&store),
        store_file: cli.storage.data.as_ref().map(|d| d.join("hub.redb")),
        replica: cli.replica.clone(),
        // Behind a proxy every peer looks local, so the filter is then fixed at start.
        log_level_over_http: !cli.http_plain,
    });
    let routes = ops_routes(ops)
        .or(web::routes(Arc::clone(&state)))
        .unify()
        .boxed();
    let serving = web::serve(cli.http, web_tls, routes)
        .await
        .with_context(|| format!("listening on {}", cli.http))?;
    tracing::info!(
        "hub replica {} on {host}:{port} in group '{}'; web on {}://{}",
        cli.replica,
        cli.group,
        if cli.http_plain { "http" } else { "https" },
        serving.addr
    );
    // The store is open and the web listener bound: ready (a no-op outside systemd).
    let notifier = Notifier::from_env();
    notifier.ready(&format!(
        "replica {} serving on {}",
        cli.replica, serving.addr
    ));
    stop_signal().await?;
    notifier.stopping("stopping");
    tracing::info!("stopping");
    serving.shutdown().await;
    horizon.abort();
    feeds.abort();
    hub.stop().await;
    Ok(())
}

/// Waits for SIGTERM (systemd's stop) or SIGINT (Ctrl-C).
async fn stop_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("listening for SIGTERM")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("listening for Ctrl-C")?,
        _ = term.recv() => {}
    }
    Ok(())
}

/// What `/metrics` reads.
struct Ops {
    stats: tokio::sync::watch::Receiver<HubStats>,
    store: Arc<HubStore>,
    store_file: Option<PathBuf>,
    replica: String,
    log_level_over_http: bool,
}

/// `GET /metrics` (Prometheus text 0.0.4, unauthenticated like a scrape target usually is; it
/// holds counts, no bookings) and `GET|PUT /api/log-level`, which only answers peers on
/// loopback (an operator on the machine; the hub's web is public), and not at all behind a
/// reverse proxy (`--http-plain`), where every peer is the proxy on loopback.
fn ops_routes(ops: Arc<Ops>) -> warp::filters::BoxedFilter<(warp::reply::Response,)> {
    use warp::Reply as _;
    let over_http = ops.log_level_over_http;
    let metrics = warp::path!("metrics")
        .and(warp::get())
        .and(warp::any().map(move || Arc::clone(&ops)))
        .then(|ops: Arc<Ops>| async move {
            let text = render_metrics(&ops).await;
            warp::reply::with_header(text, "content-type", "text/plain; version=0.0.4")
                .into_response()
        });
    let log_level = warp::path!("api" / "log-level")
        .and(web::peer_addr())
        .and(warp::method())
        .and(warp::body::content_length_limit(4096))
        .and(warp::body::bytes())
        .map(
            move |peer: Option<SocketAddr>,
                  method: warp::http::Method,
                  body: warp::hyper::body::Bytes| {
                use warp::http::StatusCode;
                let answer = |status: StatusCode, v: serde_json::Value| {
                    warp::reply::with_status(warp::reply::json(&v), status).into_response()
                };
                if !over_http || !peer.is_some_and(|p| p.ip().is_loopback()) {
                    return answer(
                        StatusCode::FORBIDDEN,
                        serde_json::json!({
                            "error": "only from the hub's own machine, and not behind a proxy"
                        }),
                    );
                }
                if method == warp::http::Method::GET {
                    return answer(
                        StatusCode::OK,
                        serde_json::json!({ "filter": logging::current_filter() }),
                    );
                }
                if method != warp::http::Method::PUT {
                    return answer(
                        StatusCode::METHOD_NOT_ALLOWED,
                        serde_json::json!({ "error": "GET or PUT" }),
                    );
                }
                #[derive(serde::Deserialize)]
                #[serde(deny_unknown_fields)]
                struct LogLevel {
                    filter: String,
                }
                let req: LogLevel = match serde_json::from_slice(&body) {
                    Ok(r) => r,
                    Err(e) => {
                        return answer(
                            StatusCode::BAD_REQUEST,
                            serde_json::json!({ "error": format!("invalid JSON body: {e}") }),
                        );
                    }
                };
                match logging::set_filter(&req.filter) {
                    Ok(f) => answer(StatusCode::OK, serde_json::json!({ "filter": f })),
                    Err(e @ LoggingError::BadFilter { .. }) => answer(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        serde_json::json!({ "error": e.to_string() }),
                    ),
                    Err(e) => answer(
                        StatusCode::SERVICE_UNAVAILABLE,
                        serde_json::json!({ "error": e.to_string() }),
                    ),
                }
            },
        );
    metrics.or(log_level).unify().boxed()
}

async fn render_metrics(ops: &Ops) -> String {
    use std::fmt::Write as _;
    let stats = ops.stats.borrow().clone();
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: f64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    metric(
        "roomgate_hub_connected",
        "gauge",
        "1 while this replica is connected to the broker.",
        if stats.connected { 1.0 } else { 0.0 },
    );
    for (name, help, value) in [
        (
            "roomgate_hub_event_batches_total",
            "Event batches received.",
            stats.batches,
        ),
        (
            "roomgate_hub_events_new_total",
            "Events stored (first delivery).",
            stats.events_new,
        ),
        (
            "roomgate_hub_events_duplicate_total",
            "Events received again and acknowledged without storing.",
            stats.events_duplicate,
        ),
        (
            "roomgate_hub_refused_payloads_total",
            "Payloads refused (bad version, bad JSON, wrong topic).",
            stats.refused_payloads,
        ),
        (
            "roomgate_hub_syncs_total",
            "Sync requests answered.",
            stats.syncs,
        ),
        (
            "roomgate_hub_replies_dropped_total",
            "Acks and sync answers that could not be queued.",
            stats.replies_dropped,
        ),
        (
            "roomgate_hub_telemetry_samples_total",
            "Telemetry samples received and stored.",
            stats.telemetry_samples,
        ),
    ] {
        metric(name, "counter", help, value as f64);
    }
    if let Ok(gateways) = ops.store.gateways().await {
        metric(
            "roomgate_hub_gateways",
            "gauge",
            "Gateways the hub has heard from.",
            gateways.len() as f64,
        );
        let now = (web::system_now())();
        let newest = gateways.iter().map(|g| g.last_seen_ms).max();
        if let Some(seen) = newest {
            metric(
                "roomgate_hub_newest_message_age_seconds",
                "gauge",
                "Seconds since any gateway's last message arrived.",
                (now - seen).max(0) as f64 / 1000.0,
            );
        }
    }
    if let Some(bytes) = ops
        .store_file
        .as_ref()
        .and_then(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
    {
        metric(
            "roomgate_hub_store_bytes",
            "gauge",
            "Size of the embedded store file (hub.redb).",
            bytes as f64,
        );
    }
    let _ = writeln!(
        out,
        "# HELP roomgate_build_info The running hub's version.\n# TYPE roomgate_build_info gauge\nroomgate_build_info{{version=\"{}\",replica=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION"),
        ops.replica.replace(['\\', '"', '\n'], "_")
    );
    out
}
