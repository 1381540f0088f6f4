//! A real Mosquitto broker for tests: its own CA, TLS with client certificates, the protocol's ACL.
//!
//! [`Broker::start`] generates (with rcgen, at test time) a CA, a server certificate for
//! `127.0.0.1`/`localhost` and a second, foreign CA; writes them, the ACL of PROTOCOL.md
//! ("Identity and confinement") and a `mosquitto.conf` into a temp dir; and runs
//! `mosquitto -c mosquitto.conf` as a child on a free loopback port until the port completes a
//! TLS handshake. Sessions and queued QoS 1 messages persist in the temp dir, so [`Broker::stop`]
//! then [`Broker::start_again`] (or [`Broker::restart`]) brings the same broker back on the
//! same port. Client certificates are issued on demand: [`Broker::client_tls`] for an identity
//! (`"{site}/{gateway}"` for a gateway, `"hub/{replica}"` for the hub).
//!
//! The calls block (a broker starts in tens of milliseconds); they may be made from async tests.
//! The broker is killed when the [`Broker`] is dropped.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use cloud_sync::tls::{self, EmptyClientId, TlsError, TlsFiles};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rumqttc::MqttOptions;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;

/// The address the broker listens on, and the name clients check its certificate against.
pub const HOST: &str = "127.0.0.1";

/// How long a start may take before it counts as failed.
const READY_WITHIN: Duration = Duration::from_secs(10);
/// How long `stop` waits for the broker to save and exit before it kills it.
const STOP_WITHIN: Duration = Duration::from_secs(5);
/// Fresh ports tried when another process takes the one found free in between.
const PORT_ATTEMPTS: usize = 10;

/// What a test broker knows before it starts.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Hub replicas granted `readwrite roomgate/v1/#` (a user line each: `hub/{replica}`).
    pub hub_replicas: Vec<String>,
}

impl Default for BrokerConfig {
    fn default() -> BrokerConfig {
        BrokerConfig {
            hub_replicas: vec!["1".to_owned()],
        }
    }
}

/// Why the test broker could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("mosquitto is not installed and tests/peers/ensure.sh could not install it: {0}")]
    NoMosquitto(String),
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    #[error("cannot generate a certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    ClientId(#[from] EmptyClientId),
    #[error("mosquitto exited ({status}) while starting; its log:\n{log}")]
    Exited { status: ExitStatus, log: String },
    #[error("mosquitto did not accept TLS on port {port} within {READY_WITHIN:?}; its log:\n{log}")]
    NotReady { port: u16, log: String },
    #[error("no free loopback port after {PORT_ATTEMPTS} attempts; the last log:\n{log}")]
    NoFreePort { log: String },
}

fn io_error(what: impl Into<String>) -> impl FnOnce(io::Error) -> BrokerError {
    let what = what.into();
    move |source| BrokerError::Io { what, source }
}

/// A certificate authority kept in memory: its certificate and the means to sign with it.
struct Authority {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Authority {
    fn new(name: &str) -> Result<Authority, BrokerError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key)?;
        Ok(Authority {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// Issues a leaf certificate; returns (certificate PEM, key PEM).
    fn issue(
        &self,
        common_name: &str,
        sans: Vec<SanType>,
        usage: ExtendedKeyUsagePurpose,
    ) -> Result<(String, String), BrokerError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.subject_alt_names = sans;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

/// Where a client's PEM files are, for tests that hand paths to a gateway's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientPaths {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A running (or stopped) Mosquitto with its certificates, configuration and data.
pub struct Broker {
    dir: tempfile::TempDir,
    port: u16,
    ca: Authority,
    foreign_ca: Authority,
    child: Option<Child>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("dir", &self.dir.path())
            .field("port", &self.port)
            .field("pid", &self.child.as_ref().map(Child::id))
            .finish()
    }
}

impl Broker {
    /// Starts a broker with the default configuration (one hub replica, `hub/1`).
    pub fn start() -> Result<Broker, BrokerError> {
        Broker::start_with(BrokerConfig::default())
    }

    /// Generates the PKI, writes the files and starts Mosquitto on a free loopback port.
    pub fn start_with(config: BrokerConfig) -> Result<Broker, BrokerError> {
        let dir = tempfile::Builder::new()
            .prefix("roomgate-broker-")
            .tempdir()
            .map_err(io_error("create the broker's temp dir"))?;
        let ca = Authority::new("roomgate test CA")?;
        let foreign_ca = Authority::new("some other CA")?;
        let (server_cert, server_key) = ca.issue(
            "localhost",
            vec![
                SanType::DnsName("localhost".try_into()?),
                SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            ],
            ExtendedKeyUsagePurpose::ServerAuth,
        )?;
        let root = dir.path();
        write(&root.join("ca.crt"), &ca.cert_pem)?;
        write(&root.join("server.crt"), &server_cert)?;
        write(&root.join("server.key"), &server_key)?;
        write(&root.join("acl"), &acl(&config))?;
        fs::create_dir_all(root.join("data")).map_err(io_error("create the data dir"))?;
        fs::create_dir_all(root.join("clients")).map_err(io_error("create the clients dir"))?;

        let mut broker = Broker {
            dir,
            port: 0,
            ca,
            foreign_ca,
            child: None,
        };
        let mut last_log = String::new();
        for _ in 0..PORT_ATTEMPTS {
            broker.port = free_port()?;
            write(&broker.conf_path(), &broker.conf())?;
            match broker.launch() {
                Ok(()) => return Ok(broker),
                Err(Launch::PortInUse(log)) => last_log = log,
                Err(Launch::Failed(e)) => return Err(e),
            }
        }
        Err(BrokerError::NoFreePort { log: last_log })
    }

    /// The loopback port the broker listens on; it stays the same across restarts.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The broker's address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The CA certificate (PEM) that signed the broker's and the clients' certificates.
    pub fn ca_pem(&self) -> &str {
        &self.ca.cert_pem
    }

    /// The temp dir holding the configuration, certificates, data and `mosquitto.log`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Everything Mosquitto has logged so far, across restarts.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Issues a client certificate with Common Name `identity` (`"site-a/gw-1"`, `"hub/1"`),
    /// writes it, its key and the CA under `clients/`, and returns the paths.
    pub fn client_paths(&self, identity: &str) -> Result<ClientPaths, BrokerError> {
        self.issue_client(identity, &self.ca, "")
    }

    /// The PEM inputs of a client whose certificate has Common Name `identity`.
    pub fn client_tls(&self, identity: &str) -> Result<TlsFiles, BrokerError> {
        let paths = self.client_paths(identity)?;
        Ok(TlsFiles::read(&paths.ca, &paths.cert, &paths.key)?)
    }

    /// The rustls configuration of a client whose certificate has Common Name `identity`.
    pub fn client_config(&self, identity: &str) -> Result<Arc<ClientConfig>, BrokerError> {
        Ok(tls::client_config(&self.client_tls(identity)?)?)
    }

    /// A client that trusts this broker but presents a certificate (Common Name `identity`)
    /// signed by another CA: the broker must refuse it.
    pub fn foreign_client_tls(&self, identity: &str) -> Result<TlsFiles, BrokerError> {
        let paths = self.issue_client(identity, &self.foreign_ca, "foreign-")?;
        Ok(TlsFiles::read(&paths.ca, &paths.cert, &paths.key)?)
    }

    /// A client that trusts this broker and presents no certificate: the broker must refuse it.
    pub fn anonymous_config(&self) -> Result<Arc<ClientConfig>, BrokerError> {
        Ok(tls::server_auth_only_config(&tls::Pem::new(
            "the test CA",
            self.ca.cert_pem.as_bytes(),
        ))?)
    }

    /// The protocol's MQTT options (cloud_sync::tls::mqtt_options) to reach this broker with
    /// `config`.
    pub fn options_with(
        &self,
        client_id: &str,
        config: Arc<ClientConfig>,
    ) -> Result<MqttOptions, BrokerError> {
        Ok(tls::mqtt_options(client_id, HOST, self.port, Some(config))?)
    }

    /// The protocol's MQTT options for a client with a certificate for `identity`.
    pub fn mqtt_options(
        &self,
        client_id: &str,
        identity: &str,
    ) -> Result<MqttOptions, BrokerError> {
        self.options_with(client_id, self.client_config(identity)?)
    }

    /// Whether the Mosquitto process is alive.
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Stops the broker gracefully (SIGTERM): it saves sessions and queued messages and exits.
    /// Killed if it has not exited within 5 s. Does nothing if it is not running.
    pub fn stop(&mut self) -> Result<(), BrokerError> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .map_err(io_error("run kill -TERM"))?;
        let deadline = Instant::now() + STOP_WITHIN;
        while status.success() && Instant::now() < deadline {
            if child
                .try_wait()
                .map_err(io_error("wait for mosquitto"))?
                .is_some()
            {
                return Ok(());
            }
            thread::sleep(Duration::from_millis(10));
        }
        kill_and_reap(&mut child)
    }

    /// Kills the broker (SIGKILL): what it had not saved yet is lost, like in a power cut.
    /// (Mosquitto saves on a graceful stop and every `autosave_interval`, 30 min by default.)
    pub fn kill(&mut self) -> Result<(), BrokerError> {
        match self.child.take() {
            Some(mut child) => kill_and_reap(&mut child),
            None => Ok(()),
        }
    }

    /// Starts a stopped or killed broker again on the same port, with the same data.
    pub fn start_again(&mut self) -> Result<(), BrokerError> {
        if self.is_running() {
            return Ok(());
        }
        // The port was ours a moment ago; give it a little while to be free again.
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            match self.launch() {
                Ok(()) => return Ok(()),
                Err(Launch::PortInUse(log)) if Instant::now() >= deadline => {
                    return Err(BrokerError::NoFreePort { log });
                }
                Err(Launch::PortInUse(_)) => thread::sleep(Duration::from_millis(50)),
                Err(Launch::Failed(e)) => return Err(e),
            }
        }
    }

    /// Stops the broker gracefully and starts it again on the same port with the same data.
    pub fn restart(&mut self) -> Result<(), BrokerError> {
        self.stop()?;
        self.start_again()
    }

    fn conf_path(&self) -> PathBuf {
        self.dir.path().join("mosquitto.conf")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("mosquitto.log")
    }

    fn conf(&self) -> String {
        let root = self.dir.path();
        let p = |name: &str| root.join(name).display().to_string();
        // Run as root, Mosquitto switches to the `mosquitto` user, which cannot read our temp
        // dir; `user root` keeps it as it is (the option is ignored when not run as root).
        let as_root = fs::metadata(root).map(|m| m.uid() == 0).unwrap_or(false);
        let user = if as_root { "user root\n" } else { "" };
        format!(
            "# A roomgate test broker (tests/src/broker.rs). PROTOCOL.md, \"Identity and confinement\".\n\
             {user}\
             per_listener_settings false\n\
             allow_anonymous false\n\
             max_queued_messages 100000\n\
             max_inflight_messages 100\n\
             acl_file {acl}\n\
             persistence true\n\
             persistence_location {data}/\n\
             persistence_file mosquitto.db\n\
             log_dest stderr\n\
             log_type error\nlog_type warning\nlog_type notice\nlog_type information\n\
             log_timestamp_format %H:%M:%S\n\
             connection_messages true\n\
             \n\
             listener {port} {HOST}\n\
             cafile {ca}\n\
             certfile {cert}\n\
             keyfile {key}\n\
             require_certificate true\n\
             use_identity_as_username true\n",
            acl = p("acl"),
            data = p("data"),
            port = self.port,
            ca = p("ca.crt"),
            cert = p("server.crt"),
            key = p("server.key"),
        )
    }

    fn issue_client(
        &self,
        identity: &str,
        authority: &Authority,
        prefix: &str,
    ) -> Result<ClientPaths, BrokerError> {
        let (cert, key) =
            authority.issue(identity, Vec::new(), ExtendedKeyUsagePurpose::ClientAuth)?;
        let base = self.dir.path().join("clients");
        let stem = format!("{prefix}{}", identity.replace(['/', '\\', '.'], "_"));
        let paths = ClientPaths {
            ca: self.dir.path().join("ca.crt"),
            cert: base.join(format!("{stem}.crt")),
            key: base.join(format!("{stem}.key")),
        };
        write(&paths.cert, &cert)?;
        write(&paths.key, &key)?;
        Ok(paths)
    }

    /// Spawns Mosquitto with the written configuration and waits until it accepts TLS.
    fn launch(&mut self) -> Result<(), Launch> {
        let program = mosquitto().map_err(Launch::Failed)?;
        let log_start = self.log().len();
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(|e| Launch::Failed(io_error("open mosquitto.log")(e)))?;
        let log_err = log
            .try_clone()
            .map_err(|e| Launch::Failed(io_error("open mosquitto.log")(e)))?;
        let child = Command::new(program)
            .arg("-c")
            .arg(self.conf_path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| Launch::Failed(io_error("spawn mosquitto")(e)))?;
        self.child = Some(child);

        let probe = self.client_config("hub/probe").map_err(Launch::Failed)?;
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
                    Launch::Failed(BrokerError::Exited { status, log })
                });
            }
            if tls_handshake(self.addr(), &probe).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = self.kill();
                return Err(Launch::Failed(BrokerError::NotReady {
                    port: self.port,
                    log: self.log().get(log_start..).unwrap_or_default().to_owned(),
                }));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

enum Launch {
    PortInUse(String),
    Failed(BrokerError),
}

/// The ACL: exactly the gateway patterns of PROTOCOL.md, then one user block per hub replica.
fn acl(config: &BrokerConfig) -> String {
    let mut acl = String::from(
        "# PROTOCOL.md, \"Identity and confinement\": %u is the certificate's CN, {site}/{gateway}.\n\
         pattern write roomgate/v1/%u/events\n\
         pattern write roomgate/v1/%u/status\n\
         pattern write roomgate/v1/%u/telemetry\n\
         pattern write roomgate/v1/%u/sync\n\
         pattern read  roomgate/v1/%u/acks\n\
         pattern read  roomgate/v1/%u/bookings\n\
         pattern read  roomgate/v1/%u/commands\n",
    );
    for replica in &config.hub_replicas {
        acl.push_str(&format!(
            "\nuser hub/{replica}\ntopic readwrite roomgate/v1/#\n"
        ));
    }
    acl
}

/// A loopback port that was free a moment ago (bound to port 0, then released).
fn free_port() -> Result<u16, BrokerError> {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(io_error("bind a free port"))?;
    let port = listener
        .local_addr()
        .map_err(io_error("read the free port"))?
        .port();
    Ok(port)
}

/// Completes a TLS handshake with the broker, then closes the connection.
fn tls_handshake(
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut socket = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    socket.set_read_timeout(Some(Duration::from_secs(1)))?;
    socket.set_write_timeout(Some(Duration::from_secs(1)))?;
    let name = ServerName::IpAddress(addr.ip().into());
    let mut conn = rustls::ClientConnection::new(Arc::clone(config), name)?;
    while conn.is_handshaking() {
        conn.complete_io(&mut socket)?;
    }
    conn.send_close_notify();
    let _ = conn.complete_io(&mut socket);
    Ok(())
}

fn kill_and_reap(child: &mut Child) -> Result<(), BrokerError> {
    if child
        .try_wait()
        .map_err(io_error("wait for mosquitto"))?
        .is_none()
    {
        // Fails only when it has just exited by itself; the wait below reaps it either way.
        let _ = child.kill();
    }
    child.wait().map_err(io_error("wait for mosquitto"))?;
    Ok(())
}

fn write(path: &Path, contents: &str) -> Result<(), BrokerError> {
    let mut file = File::create(path).map_err(io_error(format!("create {}", path.display())))?;
    file.write_all(contents.as_bytes())
        .map_err(io_error(format!("write {}", path.display())))
}

/// The Mosquitto binary; runs `tests/peers/ensure.sh` once per test binary when it is missing.
fn mosquitto() -> Result<PathBuf, BrokerError> {
    static FOUND: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    FOUND
        .get_or_init(|| crate::peers::find_or_install(find_mosquitto))
        .clone()
        .map_err(BrokerError::NoMosquitto)
}

fn find_mosquitto() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("mosquitto"));
    on_path
        .chain([PathBuf::from("/usr/sbin/mosquitto")])
        .find(|p| p.is_file())
}
