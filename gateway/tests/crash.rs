//! Nothing is lost when the gateway process is killed (SIGKILL) while its outbox drains, or
//! when the hub restarts mid-stream: every event reaches the hub exactly once, in order.
//!
//! Runs the real `gateway` binary against a Mosquitto started here (plain TCP on a free
//! loopback port: `tls = false`, as a lab would; TLS is tested in tests/tests/sync.rs). Its
//! console is HTTPS, reached with its certificate and `cli-token`.

mod common;

use common::Console;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cloud_sync::hub::{Hub, HubStore};
use cloud_sync::topics::GatewayId;

struct Broker {
    child: Child,
    port: u16,
}

impl Broker {
    fn start(dir: &Path) -> Broker {
        let port = free_port();
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nuser root\n"
            ),
        )
        .expect("write conf");
        let mosquitto = if Path::new("/usr/sbin/mosquitto").exists() {
            "/usr/sbin/mosquitto".to_owned()
        } else {
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/peers/ensure.sh");
            let ok = Command::new("bash")
                .arg(script)
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "tests/peers/ensure.sh could not install mosquitto");
            "mosquitto".to_owned()
        };
        let child = Command::new(mosquitto)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto starts");
        wait("broker listening", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Broker { child, port }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn wait(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts `gateway run`; returns the child and its console (the address read from its log).
fn gateway(site: &Path, data: &Path) -> (Child, Console) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["run", "--listen", "127.0.0.1:0", "--site"])
        .arg(site)
        .arg("--data")
        .arg(data)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gateway starts");
    // The log goes to stderr (journald reads it there). Read it on a thread, so a gateway
    // that never says where it listens fails the test instead of hanging it.
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if !sent && let Some(addr) = common::console_addr(&line) {
                let _ = tx.send(addr);
                sent = true;
            }
            // Keep draining the log so the child never blocks on a full pipe.
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the gateway logs 'console at https://' within a minute");
    (child, Console::new(&addr, data))
}

fn post(console: &Console, path: &str, body: &str) -> u16 {
    console.request("POST", path, body.as_bytes()).status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_gateway_and_a_restarted_hub_lose_and_duplicate_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(dir.path());
    let id = GatewayId::new("lab", "gw-1").expect("id");
    let hub_dir = dir.path().join("hub");
    std::fs::create_dir_all(&hub_dir).expect("hub dir");
    let options = |client: &str| {
        cloud_sync::tls::mqtt_options(client, "127.0.0.1", broker.port, None).expect("options")
    };
    let store = Arc::new(HubStore::open_embedded(&hub_dir).expect("hub store"));
    let mut hub = Some(Hub::start(options("hub-1"), Arc::clone(&store), "hub"));

    let site = dir.path().join("site.toml");
    let rooms: String = (0..40)
        .map(|i| format!("\n[[rooms]]\nid = \"r{i}\"\nname = \"Room {i}\"\nkind = \"bookable\"\n"))
        .collect();
    std::fs::write(
        &site,
        format!(
            "[site]\nname = \"Crash lab\"\n\n[cloud]\nbroker = \"127.0.0.1:{}\"\nsite = \"lab\"\ngateway = \"gw-1\"\ntls = false\n{rooms}",
            broker.port
        ),
    )
    .expect("site");
    let data = dir.path().join("data");
    let (mut gw, console) = gateway(&site, &data);

    // 40 local bookings: 40 events; some reach the hub, then the gateway dies hard.
    for i in 0..40 {
        let status = post(
            &console,
            &format!("/api/rooms/r{i}/bookings"),
            r#"{"minutes": 30}"#,
        );
        assert_eq!(status, 201);
        if i == 20
            && let Some(h) = hub.take()
        {
            // The hub goes away while events are in flight; it comes back below.
            h.stop().await;
        }
    }
    let before_kill = store.events(&id).await.expect("events").len();
    gw.kill().expect("SIGKILL");
    let _ = gw.wait();
    let hub = Hub::start(options("hub-1"), Arc::clone(&store), "hub");

    // Restarted on the same data: the outbox resumes; the hub ends with each event once.
    let (mut gw, console) = gateway(&site, &data);
    assert_eq!(post(&console, "/api/rooms/r0/checkin", ""), 200);
    let store2 = Arc::clone(&store);
    let id2 = id.clone();
    let rt = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        wait("every event at the hub", || {
            rt.block_on(store2.events(&id2)).is_ok_and(|e| {
                e.iter()
                    .filter(|e| e.kind == cloud_sync::wire::EventKind::BookingLocal)
                    .count()
                    == 40
                    && e.iter()
                        .any(|e| e.kind == cloud_sync::wire::EventKind::CheckedIn)
            })
        })
    })
    .await
    .expect("wait");
    let events = store.events(&id).await.expect("events");
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (1..=events.len() as u64).collect::<Vec<_>>(),
        "exactly once, in order ({before_kill} had arrived before the kill)"
    );
    let mut rooms: Vec<&str> = events
        .iter()
        .filter(|e| e.kind == cloud_sync::wire::EventKind::BookingLocal)
        .map(|e| e.room.as_str())
        .collect();
    rooms.sort_unstable();
    rooms.dedup();
    assert_eq!(rooms.len(), 40, "one booking per room, none twice");
    let _ = gw.kill();
    let _ = gw.wait();
    hub.stop().await;
}
