//! The `gateway` binary: `check`, `run` and `demo`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use cloud_sync::daemon::{LogFormat, Notifier, logging};
use gateway::clock::Clock;
use gateway::demo::{DemoFloor, run_scenario};

#[derive(Parser)]
#[command(
    name = "gateway",
    version,
    about = "roomgate: meeting rooms that run themselves"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log lines as text (journald-friendly under systemd) or JSON.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// A `RUST_LOG`-style filter ("info", "warn,gateway=debug"); default: `RUST_LOG`, else info.
    /// Changeable while running with `PUT /api/log-level`.
    #[arg(long, global = true)]
    log_filter: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a site file and report every error with its line and reason.
    Check { site: PathBuf },
    /// Run the gateway for a site.
    Run {
        #[arg(long)]
        site: PathBuf,
        /// Where the store lives (bookings, activity log, accounts, the console's certificate).
        #[arg(long)]
        data: PathBuf,
        /// The console's HTTPS address (API, door panels, display, metrics).
        #[arg(long, default_value = "0.0.0.0:8443")]
        listen: SocketAddr,
        /// Also listen for plain HTTP here, redirecting browsers to HTTPS (`/healthz` answers).
        #[arg(long)]
        http_redirect: Option<SocketAddr>,
        /// Serve plain HTTP on `--listen` instead of HTTPS: only behind a TLS-terminating proxy
        /// on the same machine.
        #[arg(long)]
        plain_http: bool,
    },
    /// Write an archive of the site file and the data dir (store snapshot, PIN key,
    /// certificates). Works while the gateway runs: its store is locked to other processes,
    /// so the archive is then fetched from the running gateway (`GET /api/backup`).
    Backup {
        #[arg(long)]
        site: PathBuf,
        #[arg(long)]
        data: PathBuf,
        /// The archive to write (a gzip'd tar, mode 0600: it holds secrets).
        #[arg(long)]
        out: PathBuf,
        /// The running gateway's HTTPS address, used when its store is locked (the request
        /// carries the token in `<data>/cli-token` and trusts only `<data>/certs/console.crt`).
        #[arg(long, default_value = "127.0.0.1:8443")]
        gateway: String,
    },
    /// Verify an archive and restore it (the gateway must be stopped); the files it replaces
    /// are kept as `*.before-restore`.
    Restore {
        #[arg(long)]
        site: PathBuf,
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        from: PathBuf,
        /// Only check the archive and show its manifest; change nothing.
        #[arg(long)]
        verify_only: bool,
    },
    /// Console accounts, while the gateway is stopped (its store is locked while it runs): the
    /// way back in when the only installer's password is lost.
    Account {
        #[command(subcommand)]
        action: AccountAction,
    },
    /// Run a simulated floor on loopback with people using it.
    Demo {
        /// The console's HTTPS address.
        #[arg(long, default_value = "127.0.0.1:8443")]
        listen: SocketAddr,
        /// Store directory (default: a fresh temporary one, removed at exit).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Time zone the floor shows (IANA name).
        #[arg(long, default_value = "UTC")]
        timezone: String,
        /// Print the demo's site file (with the simulators' ports) and exit.
        #[arg(long)]
        print_site: bool,
    },
}

#[derive(Subcommand)]
enum AccountAction {
    /// Add an account; the password is read from stdin (one line).
    Add {
        #[arg(long)]
        data: PathBuf,
        name: String,
        /// installer or operator.
        #[arg(long, default_value = "installer")]
        role: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = logging::init(cli.log_format, cli.log_filter.as_deref()) {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    if let Command::Check { site } = &cli.command {
        return match gateway::app::load_site(site) {
            Ok(s) => {
                let points: usize = s.devices.iter().map(|d| d.points.len()).sum();
                println!(
                    "{}: OK: site '{}', {} rooms, {} devices, {} points",
                    site.display(),
                    s.name,
                    s.rooms.len(),
                    s.devices.len(),
                    points
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        };
    }
    match &cli.command {
        Command::Backup {
            site,
            data,
            out,
            gateway,
        } => return report(backup(site, data, out, gateway)),
        Command::Restore {
            site,
            data,
            from,
            verify_only,
        } => return report(restore(site, data, from, *verify_only)),
        Command::Account {
            action: AccountAction::Add { data, name, role },
        } => return report(account_add(data, name, role)),
        _ => {}
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Check { .. }
        | Command::Backup { .. }
        | Command::Restore { .. }
        | Command::Account { .. } => Ok(()),
        Command::Run {
            site,
            data,
            listen,
            http_redirect,
            plain_http,
        } => {
            let notifier = Arc::new(Notifier::from_env());
            // From the file, so `POST /api/site` can write accepted changes back to it.
            let doc = gateway::app::load_document(&site)?;
            let rooms = doc.site().rooms.len();
            let devices = doc.site().devices.len();
            let web = gateway::app::WebConfig {
                tls: !plain_http,
                redirect: http_redirect,
                ..gateway::app::WebConfig::https(listen)
            };
            let running = gateway::app::start_from_file(&site, &data, web, Clock::System).await?;
            let scheme = if running.https() { "https" } else { "http" };
            // The store is open, the field owners run and HTTP is bound: ready.
            notifier.ready(&format!(
                "serving {rooms} rooms, {devices} devices on {scheme}://{}",
                running.addr
            ));
            let watchdog = spawn_watchdog(notifier.clone(), running.handle().clone());
            shutdown_signal().await;
            notifier.stopping("stopping: finishing requests, closing devices");
            tracing::info!("stopping");
            if let Some(w) = watchdog {
                w.abort();
            }
            running.shutdown().await;
            Ok(())
        }
        Command::Demo {
            listen,
            data,
            timezone,
            print_site,
        } => {
            let floor = Arc::new(
                DemoFloor::start()
                    .await
                    .context("starting the simulators")?,
            );
            let text = floor.site_toml(&timezone);
            if print_site {
                print!("{text}");
                if let Ok(floor) = Arc::try_unwrap(floor) {
                    floor.shutdown().await;
                }
                return Ok(());
            }
            // Kept as a document: `POST /api/site` applies changes in memory only.
            let site = gateway::site::SiteDocument::load(&text)
                .map_err(|e| anyhow::anyhow!("the embedded demo site is invalid:\n{e}"))?;
            let temp;
            let data = match data {
                Some(d) => d,
                None => {
                    temp = tempfile::tempdir().context("creating a temporary data dir")?;
                    temp.path().to_path_buf()
                }
            };
            let running = gateway::app::start_document(site, &data, listen, Clock::System).await?;
            let scenario = tokio::spawn(run_scenario(running.handle().clone(), floor.clone()));
            let display = running
                .issue_token("demo lobby display", gateway::console::auth::Scope::Display)
                .context("a display token")?;
            let first_room = running
                .handle()
                .snapshot()
                .rooms
                .first()
                .map(|r| r.id.clone())
                .unwrap_or_default();
            let panel = running
                .issue_token(
                    "demo door panel",
                    gateway::console::auth::Scope::Panel {
                        room: first_room.clone(),
                    },
                )
                .context("a panel token")?;
            let setup = match running.console.accounts.setup_code() {
                Some(code) => {
                    format!("  setup code: {code}  (first visit: create the installer account)\n")
                }
                None => String::new(),
            };
            let a = running.addr;
            println!(
                "\nroomgate demo: a simulated floor of {} devices is running.\n  console:     https://{a}/  (self-signed certificate: accept it once)\n{setup}  door panel:  https://{a}/panel/{first_room}?token={panel}\n  lobby:       https://{a}/display?token={display}\n  data dir:    {}\nPress Ctrl-C to stop.\n",
                floor.device_count(),
                data.display()
            );
            shutdown_signal().await;
            scenario.abort();
            let _ = scenario.await;
            running.shutdown().await;
            if let Ok(floor) = Arc::try_unwrap(floor) {
                floor.shutdown().await;
            }
            Ok(())
        }
    }
}

fn report(r: anyhow::Result<String>) -> ExitCode {
    match r {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `gateway backup`: straight from the store when the gateway is stopped, else through it.
fn backup(
    site: &std::path::Path,
    data: &std::path::Path,
    out: &std::path::Path,
    gateway: &str,
) -> anyhow::Result<String> {
    use gateway::backup::{self, BackupError};
    use gateway::store::StoreError;
    let (manifest, how) = match backup::backup_stopped(site, data, out, jiff::Timestamp::now()) {
        Ok(m) => (m, "from the stopped gateway's store".to_owned()),
        Err(BackupError::Store(StoreError::InUse { .. })) => {
            let bytes = backup::fetch_from_gateway(gateway, data).context(
                "the gateway runs (its store is locked): fetching its backup over HTTPS",
            )?;
            // Checked before it is kept: a backup nobody can restore is worse than none.
            let verified = backup::verify(&bytes).context("the archive the gateway sent")?;
            backup::write_file_private(out, &bytes)?;
            (
                verified.manifest,
                format!("through the running gateway at {gateway}"),
            )
        }
        Err(e) => return Err(e.into()),
    };
    Ok(format!(
        "{}: backup of site '{}' ({how}): {} bookings, {} activity lines, {} outbox events, {} files\n{}",
        out.display(),
        manifest.site,
        manifest.records.bookings,
        manifest.records.activity,
        manifest.records.outbox,
        manifest.files.len(),
        manifest
            .not_included
            .iter()
            .map(|n| format!("  not included: {} ({})\n", n.what, n.why))
            .collect::<String>()
    ))
}

/// `gateway account add`: straight into the stopped gateway's store.
fn account_add(data: &std::path::Path, name: &str, role: &str) -> anyhow::Result<String> {
    use gateway::console::auth::{Accounts, AuthConfig, Role};
    let role = Role::parse(role)
        .ok_or_else(|| anyhow::anyhow!("--role must be installer or operator, not '{role}'"))?;
    let store = gateway::store::Store::open(data).with_context(|| {
        format!(
            "opening the store in {} (stop the gateway first)",
            data.display()
        )
    })?;
    let accounts = Accounts::open(Arc::new(store), data, AuthConfig::default())?;
    let mut password = String::new();
    std::io::stdin()
        .read_line(&mut password)
        .context("reading the password from stdin")?;
    let password = password.trim_end_matches(['\r', '\n']);
    let now = jiff::Timestamp::now().as_millisecond();
    let info = accounts.add_local(now, name, role, password)?;
    Ok(format!(
        "account '{}' ({}) added\n",
        info.name,
        info.role.key()
    ))
}

/// `gateway restore`: verify, refuse while the gateway runs, install.
fn restore(
    site: &std::path::Path,
    data: &std::path::Path,
    from: &std::path::Path,
    verify_only: bool,
) -> anyhow::Result<String> {
    let bytes = std::fs::read(from).with_context(|| format!("reading {}", from.display()))?;
    let (manifest, report) = gateway::backup::restore_archive(&bytes, site, data, verify_only)
        .with_context(|| format!("{} refused", from.display()))?;
    Ok(match report {
        Some(r) => r.to_string(),
        None => format!(
            "{}: verified (nothing changed)\n{}\n",
            from.display(),
            serde_json::to_string_pretty(&manifest).unwrap_or_default()
        ),
    })
}

/// Pings systemd's watchdog (`WatchdogSec=`) at half its interval, but only after the main
/// loop has answered a round trip (`settle`): a hung loop stops the pings and systemd restarts
/// the service, not just when the process dies.
fn spawn_watchdog(
    notifier: Arc<Notifier>,
    gateway: gateway::runtime::GatewayHandle,
) -> Option<tokio::task::JoinHandle<()>> {
    let interval = notifier.watchdog()? / 2;
    tracing::info!("systemd watchdog: pinging every {interval:?} while the main loop answers");
    Some(tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            match tokio::time::timeout(interval, gateway.settle()).await {
                Ok(Ok(())) => notifier.watchdog_ping(),
                Ok(Err(e)) => tracing::warn!("main loop gone, no watchdog ping: {e}"),
                Err(_) => {
                    tracing::warn!("main loop did not answer within {interval:?}: no watchdog ping")
                }
            }
        }
    }))
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
