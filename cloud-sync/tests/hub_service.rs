//! The hub as a system service: `systemd/hub.service` passes `systemd-analyze verify` and
//! scores 2.5 or better on `systemd-analyze security`; `hub serve` sends READY=1 once its
//! store is open and its web listener bound, serves `/metrics`, keeps the log filter fixed
//! behind a proxy, and sends STOPPING=1 on SIGTERM. The broker is unreachable on purpose.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn systemd_analyze() -> PathBuf {
    let have = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have {
        let status = Command::new(repo_root().join("tests/peers/ensure.sh"))
            .stdout(Stdio::null())
            .status()
            .expect("tests/peers/ensure.sh runs");
        assert!(status.success(), "tests/peers/ensure.sh failed");
    }
    PathBuf::from("systemd-analyze")
}

#[test]
fn the_unit_verifies_and_its_sandbox_scores_at_most_2_5() {
    let analyze = systemd_analyze();
    let dir = tempfile::tempdir().expect("tempdir");
    let text =
        std::fs::read_to_string(repo_root().join("systemd/hub.service")).expect("hub.service");
    assert!(
        text.contains("/usr/lib/roomgate/hub "),
        "runs /usr/lib/roomgate/hub"
    );
    let unit = dir.path().join("hub.service");
    std::fs::write(
        &unit,
        text.replace(
            "/usr/lib/roomgate/hub ",
            &format!("{} ", env!("CARGO_BIN_EXE_hub")),
        ),
    )
    .expect("unit copy");
    let verify = Command::new(&analyze)
        .args(["verify", "--man=no"])
        .arg(&unit)
        .output()
        .expect("systemd-analyze verify runs");
    let complaints = String::from_utf8_lossy(&verify.stderr);
    assert!(
        verify.status.success() && complaints.trim().is_empty(),
        "systemd-analyze verify: {complaints}"
    );
    let security = Command::new(&analyze)
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&unit)
        .output()
        .expect("systemd-analyze security runs");
    let report = String::from_utf8_lossy(&security.stdout);
    let score: f64 = report
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .and_then(|l| l.rsplit_once(": "))
        .and_then(|(_, v)| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{report}"));
    println!("hub.service exposure level: {score}");
    assert!(
        score <= 2.5,
        "hub.service exposure {score} > 2.5:\n{report}"
    );
}

/// A CA and a client certificate "hub/1" for the broker it will never reach.
fn write_pki(dir: &Path) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "test CA");
    let ca = ca_params.self_signed(&ca_key).expect("ca cert");
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(DnType::CommonName, "hub/1");
    let cert = params.signed_by(&key, &issuer).expect("signed");
    std::fs::write(dir.join("ca.pem"), ca.pem()).expect("ca.pem");
    std::fs::write(dir.join("hub.pem"), cert.pem()).expect("hub.pem");
    std::fs::write(dir.join("hub.key"), key.serialize_pem()).expect("hub.key");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("read");
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn next_message(socket: &std::os::unix::net::UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let len = socket.recv(&mut buf).expect("a notify message within 30 s");
    String::from_utf8_lossy(&buf[..len]).into_owned()
}

#[test]
fn hub_serve_notifies_readiness_and_serves_metrics() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_pki(dir.path());
    let notify_path = dir.path().join("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).expect("notify socket");
    notify
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let p = |name: &str| dir.path().join(name).display().to_string();
    let web: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hub"))
        .args(["serve", "--broker", &format!("127.0.0.1:{}", free_port())])
        .args([
            "--ca",
            &p("ca.pem"),
            "--cert",
            &p("hub.pem"),
            "--key",
            &p("hub.key"),
        ])
        .args([
            "--data",
            &p("data"),
            "--http",
            &web.to_string(),
            "--http-plain",
        ])
        .args(["--log-format", "json"])
        .env("NOTIFY_SOCKET", &notify_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("hub serve starts");

    let ready = next_message(&notify);
    assert!(
        ready.starts_with("READY=1\nSTATUS=replica 1 serving"),
        "{ready:?}"
    );
    let (status, text) = http(web, "GET", "/metrics", "");
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("roomgate_hub_connected 0"), "{text}");
    assert!(text.contains("roomgate_hub_events_new_total 0"), "{text}");
    assert!(text.contains("roomgate_hub_gateways 0"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("roomgate_hub_store_bytes ") && !l.ends_with(" 0")),
        "{text}"
    );
    // Behind a proxy every peer is local: the filter stays as started.
    let (status, body) = http(web, "PUT", "/api/log-level", r#"{"filter":"debug"}"#);
    assert_eq!(status, 403, "{body}");

    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(kill.success());
    assert!(next_message(&notify).starts_with("STOPPING=1"));
    let status = child.wait().expect("hub exits");
    assert!(status.success(), "exit after SIGTERM: {status}");
}
