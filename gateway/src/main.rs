//! The `gateway` binary: `check`, `run` and `demo`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
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
}

#[derive(Subcommand)]
enum Command {
    /// Validate a site file and report every error with its line and reason.
    Check { site: PathBuf },
    /// Run the gateway for a site.
    Run {
        #[arg(long)]
        site: PathBuf,
        /// Where the store lives (bookings, activity log).
        #[arg(long)]
        data: PathBuf,
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
    },
    /// Run a simulated floor on loopback with people using it.
    Demo {
        #[arg(long, default_value = "127.0.0.1:8080")]
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_target(false)
        .init();
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
        Command::Check { .. } => Ok(()),
        Command::Run { site, data, listen } => {
            let site = gateway::app::load_site(&site)?;
            let running = gateway::app::start(site, &data, listen, Clock::System).await?;
            tracing::info!("gateway listening on http://{}", running.addr);
            shutdown_signal().await;
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
            let site = gateway::site::load(&text)
                .map_err(|e| anyhow::anyhow!("the embedded demo site is invalid:\n{e}"))?;
            let temp;
            let data = match data {
                Some(d) => d,
                None => {
                    temp = tempfile::tempdir().context("creating a temporary data dir")?;
                    temp.path().to_path_buf()
                }
            };
            let running = gateway::app::start(site, &data, listen, Clock::System).await?;
            let scenario = tokio::spawn(run_scenario(running.handle().clone(), floor.clone()));
            println!(
                "\nroomgate demo: a simulated floor of {} devices is running.\n  floor page: http://{}/\n  rooms API:  http://{}/api/rooms\n  data dir:   {}\nPress Ctrl-C to stop.\n",
                floor.device_count(),
                running.addr,
                running.addr,
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
