//! A real PostgreSQL server for tests: its own cluster in a temp dir, on a free loopback port.
//!
//! [`PgServer::start`] runs `initdb` into a temp dir (trust authentication, superuser
//! `postgres`), then `postgres` on a free loopback port with its unix socket in the same temp
//! dir, and waits until it accepts connections (`pg_isready`). [`PgServer::create_database`]
//! makes a fresh database and returns its `postgres://` URL, so every test gets an empty one.
//! The server is stopped (fast shutdown, then SIGKILL) when the [`PgServer`] is dropped.
//!
//! PostgreSQL refuses to run as root: when the tests run as root, `initdb` and `postgres` run
//! as the `postgres` system user, which owns the temp dir. The binaries are found under
//! `/usr/lib/postgresql/*/bin` (newest version first); when there are none,
//! `tests/peers/ensure.sh` installs them once per test binary. The machine's own PostgreSQL
//! service, if any, is never used.
//!
//! [`PgServer::shared`] hands out one server per test binary while any test holds it, so a
//! suite of short tests does not pay an `initdb` each.
//!
//! The calls block (a start takes a second or two); they may be made from async tests.

use std::fs::{self, OpenOptions};
use std::io;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::thread;
use std::time::{Duration, Instant};

/// How long a start may take before it counts as failed.
const READY_WITHIN: Duration = Duration::from_secs(60);
/// How long a fast shutdown may take before the server is killed.
const STOP_WITHIN: Duration = Duration::from_secs(10);
/// Fresh ports tried when another process takes the one found free in between.
const PORT_ATTEMPTS: usize = 10;
/// The superuser `initdb` creates.
const SUPERUSER: &str = "postgres";

/// Why the test server could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error(
        "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/postgres) and \
         tests/peers/ensure.sh could not install it: {0}"
    )]
    NotInstalled(String),
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    #[error("the tests run as root and there is no `postgres` system user to run PostgreSQL as")]
    NoPostgresUser,
    #[error("{program} failed ({status}):\n{output}")]
    Failed {
        program: String,
        status: ExitStatus,
        output: String,
    },
    #[error("postgres exited ({status}) while starting; its log:\n{log}")]
    Exited { status: ExitStatus, log: String },
    #[error(
        "postgres did not accept connections on port {port} within {READY_WITHIN:?}; its log:\n{log}"
    )]
    NotReady { port: u16, log: String },
    #[error("no free loopback port after {PORT_ATTEMPTS} attempts; the last log:\n{log}")]
    NoFreePort { log: String },
}

fn io_error(what: impl Into<String>) -> impl FnOnce(io::Error) -> PgError {
    let what = what.into();
    move |source| PgError::Io { what, source }
}

/// A running PostgreSQL cluster of the test's own.
pub struct PgServer {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    /// The (uid, gid) the server runs as, when the tests run as root.
    run_as: Option<(u32, u32)>,
    child: Option<Child>,
    databases: AtomicU64,
}

impl std::fmt::Debug for PgServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgServer")
            .field("dir", &self.dir.path())
            .field("bin", &self.bin)
            .field("port", &self.port)
            .field("pid", &self.child.as_ref().map(Child::id))
            .finish()
    }
}

impl PgServer {
    /// Initializes a cluster in a temp dir and starts it on a free loopback port.
    pub fn start() -> Result<PgServer, PgError> {
        let bin = binaries()?;
        let dir = tempfile::Builder::new()
            .prefix("roomgate-pg-")
            .tempdir()
            .map_err(io_error("create the PostgreSQL temp dir"))?;
        // A dir we just made is ours: its owner says whether we are root.
        let as_root = fs::metadata(dir.path())
            .map_err(io_error("read the temp dir's owner"))?
            .uid()
            == 0;
        let run_as = if as_root {
            Some(postgres_user()?)
        } else {
            None
        };
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .map_err(io_error("give the temp dir to the postgres user"))?;
        }
        let mut server = PgServer {
            dir,
            bin,
            port: 0,
            run_as,
            child: None,
            databases: AtomicU64::new(0),
        };
        server.initdb()?;
        let mut last_log = String::new();
        for _ in 0..PORT_ATTEMPTS {
            server.port = free_port()?;
            match server.launch() {
                Ok(()) => return Ok(server),
                Err(Launch::PortInUse(log)) => last_log = log,
                Err(Launch::Failed(e)) => return Err(e),
            }
        }
        Err(PgError::NoFreePort { log: last_log })
    }

    /// One server for every test of this binary that runs while another holds it; a new one
    /// starts when none is held (the last holder's drop stopped it).
    pub fn shared() -> Result<Arc<PgServer>, PgError> {
        static SHARED: Mutex<Weak<PgServer>> = Mutex::new(Weak::new());
        let mut slot = SHARED
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(server) = slot.upgrade() {
            return Ok(server);
        }
        let server = Arc::new(PgServer::start()?);
        *slot = Arc::downgrade(&server);
        Ok(server)
    }

    /// The loopback port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The temp dir holding the cluster (`data/`), the socket and `postgres.log`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Everything the server has logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The URL of a database on this server.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://{SUPERUSER}@{}:{}/{database}",
            Ipv4Addr::LOCALHOST,
            self.port
        )
    }

    /// Creates a fresh, empty database and returns its URL.
    pub fn create_database(&self) -> Result<String, PgError> {
        let n = self.databases.fetch_add(1, Ordering::Relaxed);
        let name = format!("roomgate_test_{n}");
        let output = Command::new(self.bin.join("createdb"))
            .args(["-h", &Ipv4Addr::LOCALHOST.to_string()])
            .args(["-p", &self.port.to_string()])
            .args(["-U", SUPERUSER])
            .arg(&name)
            .stdin(Stdio::null())
            .output()
            .map_err(io_error("run createdb"))?;
        if !output.status.success() {
            return Err(PgError::Failed {
                program: "createdb".into(),
                status: output.status,
                output: String::from_utf8_lossy(&output.stderr).into_owned(),
            });
        }
        Ok(self.url(&name))
    }

    /// Runs SQL on a database of this server with `psql` and returns what it printed
    /// (unaligned, tuples only): for tests that look at or tamper with the schema.
    pub fn psql(&self, url: &str, sql: &str) -> Result<String, PgError> {
        let output = Command::new(self.bin.join("psql"))
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                url,
                "-c",
                sql,
            ])
            .stdin(Stdio::null())
            .output()
            .map_err(io_error("run psql"))?;
        if !output.status.success() {
            return Err(PgError::Failed {
                program: "psql".into(),
                status: output.status,
                output: String::from_utf8_lossy(&output.stderr).into_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Stops the server (fast shutdown: open sessions are ended, then it checkpoints and
    /// exits); killed when it has not exited within 10 s. Does nothing if it is not running.
    pub fn stop(&mut self) -> Result<(), PgError> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let signalled = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .map_err(io_error("run kill -INT"))?;
        let deadline = Instant::now() + STOP_WITHIN;
        while signalled.success() && Instant::now() < deadline {
            if child
                .try_wait()
                .map_err(io_error("wait for postgres"))?
                .is_some()
            {
                return Ok(());
            }
            thread::sleep(Duration::from_millis(20));
        }
        if child
            .try_wait()
            .map_err(io_error("wait for postgres"))?
            .is_none()
        {
            // Fails only when it has just exited by itself; the wait below reaps it either way.
            let _ = child.kill();
        }
        child.wait().map_err(io_error("wait for postgres"))?;
        Ok(())
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// A command for one of the server's programs, as the user the server runs as.
    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(program));
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid);
        }
        // The postgres user may not be able to enter the test's working directory.
        cmd.current_dir(self.dir.path()).stdin(Stdio::null());
        cmd
    }

    fn initdb(&self) -> Result<(), PgError> {
        let output = self
            .command("initdb")
            .arg("-D")
            .arg(self.data_dir())
            .args([
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
            ])
            .arg("--no-sync")
            .output()
            .map_err(io_error("run initdb"))?;
        if !output.status.success() {
            return Err(PgError::Failed {
                program: "initdb".into(),
                status: output.status,
                output: format!(
                    "{}{}",
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                ),
            });
        }
        Ok(())
    }

    /// Spawns `postgres` and waits until it accepts connections.
    fn launch(&mut self) -> Result<(), Launch> {
        let log_start = self.log().len();
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(|e| Launch::Failed(io_error("open postgres.log")(e)))?;
        let log_err = log
            .try_clone()
            .map_err(|e| Launch::Failed(io_error("open postgres.log")(e)))?;
        let child = self
            .command("postgres")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-c", &format!("port={}", self.port)])
            .args(["-c", &format!("listen_addresses={}", Ipv4Addr::LOCALHOST)])
            .args([
                "-c",
                &format!("unix_socket_directories={}", self.dir.path().display()),
            ])
            // Parallel tests each open a pool of a few connections.
            .args(["-c", "max_connections=200"])
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| Launch::Failed(io_error("spawn postgres")(e)))?;
        self.child = Some(child);

        let deadline = Instant::now() + READY_WITHIN;
        loop {
            let exited = match &mut self.child {
                Some(child) => child.try_wait().ok().flatten(),
                None => None,
            };
            if let Some(status) = exited {
                self.child = None;
                let log = self.log().get(log_start..).unwrap_or_default().to_owned();
                return Err(if log.contains("Address already in use") {
                    Launch::PortInUse(log)
                } else {
                    Launch::Failed(PgError::Exited { status, log })
                });
            }
            if self.accepts_connections() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = self.stop();
                return Err(Launch::Failed(PgError::NotReady {
                    port: self.port,
                    log: self.log().get(log_start..).unwrap_or_default().to_owned(),
                }));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn accepts_connections(&self) -> bool {
        Command::new(self.bin.join("pg_isready"))
            .args(["-h", &Ipv4Addr::LOCALHOST.to_string()])
            .args(["-p", &self.port.to_string()])
            .args(["-U", SUPERUSER, "-d", "postgres", "-t", "1"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

enum Launch {
    PortInUse(String),
    Failed(PgError),
}

/// The uid and gid of the `postgres` system user (from /etc/passwd).
fn postgres_user() -> Result<(u32, u32), PgError> {
    let passwd = fs::read_to_string("/etc/passwd").map_err(io_error("read /etc/passwd"))?;
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            match fields.as_slice() {
                ["postgres", _, uid, gid, ..] => Some((uid.parse().ok()?, gid.parse().ok()?)),
                _ => None,
            }
        })
        .ok_or(PgError::NoPostgresUser)
}

/// A loopback port that was free a moment ago (bound to port 0, then released).
fn free_port() -> Result<u16, PgError> {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(io_error("bind a free port"))?;
    let port = listener
        .local_addr()
        .map_err(io_error("read the free port"))?
        .port();
    Ok(port)
}

/// The newest `/usr/lib/postgresql/<version>/bin` holding a server; runs
/// `tests/peers/ensure.sh` once per test binary when there is none.
fn binaries() -> Result<PathBuf, PgError> {
    static FOUND: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    FOUND
        .get_or_init(|| crate::peers::find_or_install(find_binaries))
        .clone()
        .map_err(PgError::NotInstalled)
}

fn find_binaries() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            ["initdb", "postgres", "createdb", "pg_isready", "psql"]
                .iter()
                .all(|p| bin.join(p).is_file())
                .then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}
