//! The gateway as a system service: `systemd/gateway.service` passes `systemd-analyze verify`
//! and scores 2.5 or better on `systemd-analyze security`; the real binary speaks the notify
//! protocol (READY once the API answers, watchdog pings that stop when the process is stopped,
//! STOPPING on SIGTERM); `/metrics` on a floor of simulators; the log filter changed at runtime.
//! The console is HTTPS: the first start logs its setup code and writes it and the local
//! tools' token readable by the gateway's user only; requests carry that token.

mod common;

use common::Console;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use gateway::demo::DemoFloor;
use tokio::net::UnixDatagram;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// `systemd-analyze`, installed by the peers script when missing.
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

/// The unit with its binary at the path cargo built, in a temporary directory (verify needs
/// ExecStart to exist).
pub fn unit_copy(unit: &str, binary: &str, built: &Path, dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(repo_root().join("systemd").join(unit)).expect("unit");
    let installed = format!("/usr/lib/roomgate/{binary}");
    assert!(text.contains(&installed), "{unit} runs {installed}");
    let path = dir.join(unit);
    std::fs::write(
        &path,
        text.replace(&installed, &built.display().to_string()),
    )
    .expect("write unit copy");
    path
}

#[test]
fn the_unit_verifies_and_its_sandbox_scores_at_most_2_5() {
    let analyze = systemd_analyze();
    let dir = tempfile::tempdir().expect("tempdir");
    let unit = unit_copy(
        "gateway.service",
        "gateway",
        Path::new(env!("CARGO_BIN_EXE_gateway")),
        dir.path(),
    );
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
    let score = exposure(&report).unwrap_or_else(|| panic!("no exposure level in:\n{report}"));
    println!("gateway.service exposure level: {score}");
    assert!(
        score <= 2.5,
        "gateway.service exposure {score} > 2.5:\n{report}"
    );
}

/// "→ Overall exposure level for gateway.service: 1.6 OK 🙂" → 1.6
pub fn exposure(report: &str) -> Option<f64> {
    let line = report
        .lines()
        .find(|l| l.contains("Overall exposure level"))?;
    let after = line.rsplit_once(": ")?.1;
    after.split_whitespace().next()?.parse().ok()
}

/// A request with the CLI token; returns the status and the body.
fn http(console: &Console, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let a = console.request(method, path, body.unwrap_or("").as_bytes());
    (a.status, a.text())
}

/// The value of the first series whose line starts with `prefix`.
fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))?
        .rsplit_once(' ')?
        .1
        .parse()
        .ok()
}

fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill {sig}");
}

/// The next notify message, within a generous bound (the test fails rather than hangs).
async fn next_message(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let len = tokio::time::timeout(Duration::from_secs(30), socket.recv(&mut buf))
        .await
        .expect("a notify message within 30 s")
        .expect("recv");
    String::from_utf8_lossy(&buf[..len]).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_notifies_systemd_serves_metrics_and_changes_its_log_filter() {
    let floor = DemoFloor::start().await.expect("simulators");
    let dir = tempfile::tempdir().expect("tempdir");
    let site = dir.path().join("site.toml");
    std::fs::write(&site, floor.site_toml("UTC")).expect("site file");
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).expect("notify socket");

    let data = dir.path().join("data");
    let mut child = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["run", "--listen", "127.0.0.1:0", "--site"])
        .arg(&site)
        .arg("--data")
        .arg(&data)
        .env("NOTIFY_SOCKET", &notify_path)
        // Pings every 0.25 s.
        .env("WATCHDOG_USEC", "500000")
        .env("RUST_LOG", "info")
        .env_remove("JOURNAL_STREAM")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gateway starts");
    let (lines_tx, lines) = mpsc::channel::<String>();
    let stderr = child.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });

    // READY=1 comes first, and by then the API answers.
    let ready = next_message(&notify).await;
    assert!(ready.starts_with("READY=1\nSTATUS=serving "), "{ready:?}");
    let mut setup_logged = false;
    let addr = loop {
        let line = lines
            .recv_timeout(Duration::from_secs(30))
            .expect("the gateway logs its address");
        setup_logged |= line.contains("setup code");
        if let Some(addr) = common::console_addr(&line) {
            break addr;
        }
    };
    // A first start: no account yet, so a setup code, logged and in a file only the gateway's
    // user reads; and the local tools' token, likewise.
    assert!(setup_logged, "the first start logs the setup code");
    use std::os::unix::fs::PermissionsExt as _;
    for file in ["setup-code", "cli-token"] {
        let mode = std::fs::metadata(data.join(file))
            .unwrap_or_else(|e| panic!("{file}: {e}"))
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file} is private");
    }
    let console = Console::new(&addr, &data);
    let anonymous = Console::anonymous(&addr, &data);
    let (status, body) = http(&anonymous, "GET", "/healthz", None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(http(&anonymous, "GET", "/metrics", None).0, 401);

    // The watchdog keeps being pinged while the loop runs.
    for _ in 0..3 {
        assert_eq!(next_message(&notify).await, "WATCHDOG=1");
    }

    // Metrics from a floor of simulators: device request counters move, the outbox depth and
    // the store size are numbers, HTTP requests are counted by route.
    let (status, first) = http(&console, "GET", "/metrics", None);
    assert_eq!(status, 200);
    let polled = |text: &str| {
        metric(text, "roomgate_device_requests_total{device=\"lights\"}").expect("lights requests")
    };
    let bus_frames = |text: &str| metric(text, "roomgate_bus_frames_sent_total{").expect("bus");
    let before = (polled(&first), bus_frames(&first));
    let mut later = first.clone();
    for _ in 0..100 {
        if polled(&later) > before.0 && bus_frames(&later) > before.1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        later = http(&console, "GET", "/metrics", None).1;
    }
    assert!(polled(&later) > before.0, "device requests moved:\n{later}");
    assert!(bus_frames(&later) > before.1, "bus frames moved:\n{later}");
    assert_eq!(metric(&later, "roomgate_outbox_depth "), Some(0.0));
    assert!(metric(&later, "roomgate_store_bytes ").is_some_and(|b| b > 0.0));
    assert!(
        later.contains(
            "roomgate_http_requests_total{route=\"/healthz\",method=\"GET\",status=\"200\"} 1"
        ),
        "{later}"
    );
    assert!(
        later.contains("roomgate_engine_commands_total{kind="),
        "{later}"
    );
    assert!(
        later.contains("roomgate_device_online{device=\"pir\"} 1"),
        "{later}"
    );

    // The log filter: a bad one is refused with 422, a good one takes effect.
    let (status, body) = http(
        &console,
        "PUT",
        "/api/log-level",
        Some(r#"{"filter":"gateway=loudest"}"#),
    );
    assert_eq!(status, 422, "{body}");
    let (status, body) = http(
        &console,
        "PUT",
        "/api/log-level",
        Some(r#"{"filter":"warn,gateway=debug"}"#),
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = http(&console, "GET", "/api/log-level", None);
    assert_eq!(status, 200);
    assert!(body.contains("gateway=debug"), "{body}");

    // A stopped process sends nothing: what was queued is drained, then silence.
    signal(&child, "-STOP");
    let mut buf = [0u8; 4096];
    while notify.try_recv(&mut buf).is_ok() {}
    let silent = tokio::time::timeout(Duration::from_millis(1500), notify.recv(&mut buf)).await;
    assert!(silent.is_err(), "no watchdog ping from a stopped process");
    signal(&child, "-CONT");
    assert_eq!(next_message(&notify).await, "WATCHDOG=1");

    // SIGTERM: STOPPING=1, then a clean exit.
    signal(&child, "-TERM");
    loop {
        let m = next_message(&notify).await;
        if m.starts_with("STOPPING=1") {
            break;
        }
        assert_eq!(m, "WATCHDOG=1");
    }
    let status = child.wait().expect("gateway exits");
    assert!(status.success(), "exit after SIGTERM: {status}");
    floor.shutdown().await;
}
