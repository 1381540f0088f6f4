//! The `hub` binary as an operator uses it: create an admin (password on stdin) and an API
//! token, then `hub serve` over HTTPS with its own certificate, answering the booking API with
//! that token and sending the dashboard to its login, and stopping cleanly on SIGTERM. The
//! broker is unreachable on purpose: the web side must not depend on it.

use std::io::Write as _;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

fn hub() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hub"))
}

fn run_with_stdin(args: &[&str], stdin: &str) -> Output {
    let mut child = hub()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("hub runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("hub exits")
}

/// A free loopback port (bound and released; the hub binds it right after).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

struct Pki {
    ca_pem: String,
}

/// A CA, a server certificate for 127.0.0.1 (the web side) and a client certificate "hub/1"
/// (for the broker it will never reach), written into `dir`.
fn write_pki(dir: &Path) -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "test CA");
    let ca = ca_params.self_signed(&ca_key).expect("ca cert");
    let ca_pem = ca.pem();
    let issuer = Issuer::new(ca_params, ca_key);
    let issue = |names: Vec<String>, cn: &str| {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(names).expect("params");
        params.distinguished_name.push(DnType::CommonName, cn);
        let cert = params.signed_by(&key, &issuer).expect("signed");
        (cert.pem(), key.serialize_pem())
    };
    let (web_cert, web_key) = issue(vec!["127.0.0.1".into()], "hub web");
    let (mqtt_cert, mqtt_key) = issue(Vec::new(), "hub/1");
    for (name, pem) in [
        ("ca.pem", ca_pem.clone()),
        ("web.pem", web_cert),
        ("web.key", web_key),
        ("hub.pem", mqtt_cert),
        ("hub.key", mqtt_key),
    ] {
        std::fs::write(dir.join(name), pem).expect("write pem");
    }
    Pki { ca_pem }
}

/// One HTTPS request trusting only `ca_pem`; returns the status line's code and the whole text.
async fn https(port: u16, ca_pem: &str, request: &str) -> std::io::Result<(u16, String)> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile_certs(ca_pem) {
        roots.add(cert).map_err(std::io::Error::other)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(std::io::Error::other)?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let name =
        rustls::pki_types::ServerName::try_from("127.0.0.1").map_err(std::io::Error::other)?;
    let mut tls = connector.connect(name, tcp).await?;
    tls.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    // The server closes after answering (Connection: close); a TLS close_notify may be absent.
    let _ = tls.read_to_end(&mut raw).await;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((code, text))
}

fn rustls_pemfile_certs(pem: &str) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject as _;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .filter_map(Result::ok)
        .collect()
}

fn get(path: &str, token: Option<&str>) -> String {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Connection: close\r\n\r\n")
}

struct Serving(Child);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_creates_an_admin_and_a_token_and_the_hub_serves_https() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let data_arg = data.to_str().expect("utf-8 path");
    let pki = write_pki(dir.path());

    // Accounts: a weak password is refused with the reason; a good one creates the admin.
    let weak = run_with_stdin(&["user", "add", "ada", "--data", data_arg], "short\n");
    assert!(!weak.status.success(), "a weak password is refused");
    let why = String::from_utf8_lossy(&weak.stderr);
    assert!(why.contains("adding admin 'ada'"), "{why}");
    let ok = run_with_stdin(
        &["user", "add", "ada", "--data", data_arg],
        "correct horse battery staple\n",
    );
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("admin 'ada' created"));

    // A token, printed once on stdout.
    let made = run_with_stdin(&["token", "create", "booking-tool", "--data", data_arg], "");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let token = String::from_utf8_lossy(&made.stdout).trim().to_owned();
    assert!(token.len() >= 32, "a long random token: {token}");

    // Serving needs --http-cert/--http-key or an explicit --http-plain.
    let refused = hub()
        .args(["serve", "--broker", "127.0.0.1:1", "--data", data_arg])
        .args(["--ca", "x", "--cert", "x", "--key", "x"])
        .output()
        .expect("hub runs");
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--http-cert"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    let web = free_port();
    let broker = free_port(); // nothing listens there
    let p = |name: &str| dir.path().join(name).display().to_string();
    let child = hub()
        .args(["serve", "--broker", &format!("127.0.0.1:{broker}")])
        .args([
            "--ca",
            &p("ca.pem"),
            "--cert",
            &p("hub.pem"),
            "--key",
            &p("hub.key"),
        ])
        .args(["--data", data_arg, "--http", &format!("127.0.0.1:{web}")])
        .args(["--http-cert", &p("web.pem"), "--http-key", &p("web.key")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("hub serve starts");
    let mut serving = Serving(child);

    let start = Instant::now();
    let rooms = loop {
        match https(web, &pki.ca_pem, &get("/api/v1/rooms", Some(&token))).await {
            Ok(answer) => break answer,
            Err(e) => {
                assert!(
                    start.elapsed() < Duration::from_secs(20),
                    "the hub never answered over HTTPS: {e}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    assert_eq!(rooms.0, 200, "{}", rooms.1);
    let (code, text) = https(web, &pki.ca_pem, &get("/api/v1/rooms", None))
        .await
        .expect("https");
    assert_eq!(code, 401, "no token: {text}");
    let (code, text) = https(web, &pki.ca_pem, &get("/api/v1/rooms", Some("rgt_wrong")))
        .await
        .expect("https");
    assert_eq!(code, 401, "a wrong token: {text}");
    let (code, text) = https(web, &pki.ca_pem, &get("/", None))
        .await
        .expect("https");
    assert!(
        (300..400).contains(&code) && text.to_ascii_lowercase().contains("location: /login"),
        "the dashboard sends strangers to its login: {text}"
    );

    // SIGTERM (systemd's stop) ends it cleanly.
    let pid = serving.0.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let start = Instant::now();
    let status = loop {
        if let Some(status) = serving.0.try_wait().expect("wait") {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "the hub did not stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "a clean exit on SIGTERM: {status:?}");
}
