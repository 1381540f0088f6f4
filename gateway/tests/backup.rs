//! Backup and restore end to end with the real `gateway` binary: bookings, check-ins and
//! activity survive a backup taken while the gateway runs, a wiped data dir and a restore;
//! tampered archives are refused naming the file; a restore uploaded over HTTP is applied at
//! the next start. The gateway serves HTTPS; the tests and `gateway backup` trust only its
//! certificate and carry its `cli-token`.

mod common;

use common::Console;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// Starts `gateway run`; returns the child and its console (the address read from its log).
fn start(site: &Path, data: &Path) -> (Child, Console) {
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
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the gateway logs 'console at https://' within a minute");
    (child, Console::new(&addr, data))
}

/// SIGTERM, then wait: the gateway closes its store and exits.
fn stop(mut child: Child) {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill -TERM");
    let status = child.wait().expect("wait");
    assert!(status.success(), "the gateway stops cleanly: {status}");
}

/// One request with the CLI token; returns status, head and body.
fn http(gw: &Console, method: &str, path: &str, body: &[u8]) -> (u16, String, Vec<u8>) {
    let a = gw.request(method, path, body);
    (a.status, a.head, a.body)
}

fn json(console: &Console, path: &str) -> serde_json::Value {
    let (status, _, body) = http(console, "GET", path, b"");
    assert_eq!(status, 200, "GET {path}");
    serde_json::from_slice(&body).expect("JSON")
}

fn restore(site: &Path, data: &Path, from: &Path, verify_only: bool) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gateway"));
    cmd.arg("restore")
        .arg("--site")
        .arg(site)
        .arg("--data")
        .arg(data)
        .arg("--from")
        .arg(from);
    if verify_only {
        cmd.arg("--verify-only");
    }
    cmd.output().expect("gateway restore runs")
}

/// The rooms' current bookings once the main loop has published its first snapshot after a
/// start (it derives the rooms' phases from the store at its first tick).
fn bookings_after_start(console: &Console) -> Vec<(String, String, bool)> {
    for _ in 0..500 {
        let b = bookings(console);
        if !b.is_empty() {
            return b;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Vec::new()
}

/// Each room's current booking: (room, booking id, checked in).
fn bookings(console: &Console) -> Vec<(String, String, bool)> {
    let rooms = json(console, "/api/rooms");
    rooms
        .as_array()
        .expect("rooms")
        .iter()
        .filter_map(|r| {
            let c = r.get("current")?.as_object()?;
            Some((
                r["id"].as_str()?.to_owned(),
                c["id"].as_str()?.to_owned(),
                c["checked_in"].as_bool()?,
            ))
        })
        .collect()
}

fn activity(console: &Console, room: &str) -> Vec<String> {
    let room = json(console, &format!("/api/rooms/{room}"));
    room["activity"]
        .as_array()
        .expect("activity")
        .iter()
        .map(|a| a.to_string())
        .collect()
}

/// The archive with one entry's bytes changed and everything else (manifest included) kept.
fn tampered(archive: &[u8], entry: &str) -> Vec<u8> {
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive));
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut out = tar::Builder::new(gz);
    for e in tar.entries().expect("entries") {
        let mut e = e.expect("entry");
        let name = String::from_utf8(e.path_bytes().into_owned()).expect("name");
        let mut bytes = Vec::new();
        e.read_to_end(&mut bytes).expect("read");
        if name == entry {
            bytes[0] ^= 0x20;
        }
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o600);
        out.append_data(&mut h, &name, bytes.as_slice())
            .expect("append");
    }
    out.into_inner().expect("tar").finish().expect("gz")
}

#[test]
fn bookings_check_ins_and_activity_come_back_from_a_backup() {
    let dir = tempfile::tempdir().expect("tempdir");
    let site = dir.path().join("site.toml");
    let rooms: String = (0..3)
        .map(|i| format!("\n[[rooms]]\nid = \"r{i}\"\nname = \"Room {i}\"\nkind = \"bookable\"\n"))
        .collect();
    std::fs::write(&site, format!("[site]\nname = \"Backup lab\"\n{rooms}")).expect("site");
    let data = dir.path().join("data");

    let (gw, console) = start(&site, &data);
    for i in 0..3 {
        let (status, _, body) = http(
            &console,
            "POST",
            &format!("/api/rooms/r{i}/bookings"),
            format!(r#"{{"minutes": 45, "subject": "Meeting {i}"}}"#).as_bytes(),
        );
        assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    }
    assert_eq!(http(&console, "POST", "/api/rooms/r0/checkin", b"").0, 200);
    let before = bookings(&console);
    assert_eq!(before.len(), 3);
    assert!(
        before
            .iter()
            .any(|(r, _, checked_in)| r == "r0" && *checked_in)
    );
    let r0_activity = activity(&console, "r0");
    assert!(!r0_activity.is_empty());

    // While it runs: over HTTP, and with the CLI (which finds the store locked and asks it).
    let (status, head, archive) = http(&console, "GET", "/api/backup", b"");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&archive));
    let head = head.to_ascii_lowercase();
    assert!(
        head.contains("content-disposition: attachment; filename=\"roomgate-backup-lab-"),
        "{head}"
    );
    assert!(head.contains(".tar.gz\""), "{head}");
    let from = dir.path().join("http.tar.gz");
    std::fs::write(&from, &archive).expect("write archive");
    let cli_archive = dir.path().join("cli.tar.gz");
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["backup", "--gateway", &console.addr, "--site"])
        .arg(&site)
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(&cli_archive)
        .output()
        .expect("gateway backup");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("through the running gateway"), "{said}");
    assert!(said.contains("3 bookings"), "{said}");

    // The CLI trusts only this gateway's certificate and needs its token: without the token
    // file, with a wrong token, or pinned to another certificate, it says why and writes nothing.
    let cli_backup = |out: &Path| {
        Command::new(env!("CARGO_BIN_EXE_gateway"))
            .args(["backup", "--gateway", &console.addr, "--site"])
            .arg(&site)
            .arg("--data")
            .arg(&data)
            .arg("--out")
            .arg(out)
            .output()
            .expect("gateway backup")
    };
    let refused_out = dir.path().join("refused.tar.gz");
    let token_file = data.join("cli-token");
    let token = std::fs::read(&token_file).expect("cli-token");
    std::fs::remove_file(&token_file).expect("hide the token");
    let out = cli_backup(&refused_out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("cli-token") && err.contains("writes this token at every start"),
        "{err}"
    );
    std::fs::write(&token_file, "0".repeat(64)).expect("a wrong token");
    let out = cli_backup(&refused_out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("answered 401"), "{err}");
    std::fs::write(&token_file, &token).expect("the token back");
    let cert_file = data.join("certs/console.crt");
    let cert = std::fs::read(&cert_file).expect("certificate");
    let other = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("another certificate");
    std::fs::write(&cert_file, other.cert.pem()).expect("pin another certificate");
    let out = cli_backup(&refused_out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("certificate is not the one in") && err.contains("console.crt"),
        "{err}"
    );
    std::fs::write(&cert_file, &cert).expect("the certificate back");
    assert!(!refused_out.exists(), "a refused backup writes no file");

    // A restore while the gateway runs is refused, and so is an upload that was changed.
    let out = restore(&site, &data, &from, false);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("stop it first"), "{err}");
    let bad = tampered(&archive, "data/gateway.redb");
    let (status, _, body) = http(&console, "POST", "/api/restore?verify_only=1", &bad);
    assert_eq!(status, 422);
    assert!(
        String::from_utf8_lossy(&body).contains("data/gateway.redb: SHA-256 does not match"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    let (status, _, body) = http(&console, "POST", "/api/restore?verify_only=1", &archive);
    assert_eq!(status, 200);
    let answer: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(answer["manifest"]["site"], "Backup lab");
    assert_eq!(answer["manifest"]["records"]["bookings"], 3);
    stop(gw);

    // The box loses its data.
    std::fs::remove_dir_all(&data).expect("wipe");
    let bad_path = dir.path().join("tampered.tar.gz");
    std::fs::write(&bad_path, tampered(&archive, "data/panel-pin.key")).expect("write");
    let out = restore(&site, &data, &bad_path, false);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("data/panel-pin.key: SHA-256 does not match"),
        "{err}"
    );
    assert!(!data.exists(), "a refused archive touches nothing");
    let out = restore(&site, &data, &from, true);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("verified (nothing changed)"));
    assert!(!data.exists(), "--verify-only touches nothing");
    let out = restore(&site, &data, &cli_archive, false);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("restored site 'Backup lab'"), "{said}");
    assert!(said.contains("gateway.redb"), "{said}");

    let (gw, console) = start(&site, &data);
    assert_eq!(
        bookings_after_start(&console),
        before,
        "bookings and check-ins are back"
    );
    let now = activity(&console, "r0");
    for line in &r0_activity {
        assert!(now.contains(line), "activity line {line} is back");
    }

    // A new booking, then the old archive uploaded: staged now, applied at the next start.
    let (status, _, _) = http(
        &console,
        "POST",
        "/api/rooms/r1/bookings",
        br#"{"minutes": 30, "subject": "Later"}"#,
    );
    assert_eq!(
        status, 409,
        "r1 is busy: the conflict proves the restored booking runs"
    );
    assert_eq!(http(&console, "POST", "/api/rooms/r1/end", b"").0, 200);
    assert_ne!(bookings(&console), before);
    let (status, _, body) = http(&console, "POST", "/api/restore", &archive);
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));
    assert!(data.join(".restore").is_dir());
    stop(gw);
    let (gw, console) = start(&site, &data);
    assert_eq!(
        bookings_after_start(&console),
        before,
        "the uploaded restore was applied at start"
    );
    assert!(!data.join(".restore").exists());
    assert!(data.join("gateway.redb.before-restore").exists());
    stop(gw);
}
