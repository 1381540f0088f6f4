//! Shared helpers of the drivers test binaries: the independent peers (socat, pymodbus, bacpypes3) installed on demand, and socat pty pairs in temporary directories.
#![allow(dead_code)] // each test binary uses a different part

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The Python interpreter of the peers' venv. Runs `tests/peers/ensure.sh` once per test
/// binary (it installs socat and the venv when missing); never skips, fails loudly instead.
pub fn peers_python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        if let Ok(py) = std::env::var("ROOMGATE_PEERS_PY")
            && Path::new(&py).exists()
            && which("socat")
        {
            return PathBuf::from(py);
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/peers/ensure.sh");
        let out = Command::new("bash")
            .arg(&script)
            .stderr(Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "{} failed ({}); the interop peers are required, not optional",
            script.display(),
            out.status
        );
        let py = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        assert!(
            Path::new(&py).exists(),
            "ensure.sh printed `{py}`, which does not exist"
        );
        PathBuf::from(py)
    })
}

fn which(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A fresh temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "roomgate-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Two connected ptys made by socat: what is written to one end is read at the other.
pub struct PtyPair {
    /// The driver's end.
    pub a: String,
    /// The simulator's (or peer's) end.
    pub b: String,
    child: Child,
    _dir: TempDir,
}

impl PtyPair {
    pub fn new() -> PtyPair {
        peers_python(); // socat comes with the peers
        let dir = TempDir::new("pty");
        let a = dir.0.join("a");
        let b = dir.0.join("b");
        let child = Command::new("socat")
            .arg("-d")
            .arg("-d")
            .arg(format!("pty,raw,echo=0,link={}", a.display()))
            .arg(format!("pty,raw,echo=0,link={}", b.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("socat starts");
        let deadline = Instant::now() + Duration::from_secs(5);
        while !(a.exists() && b.exists()) {
            assert!(
                Instant::now() < deadline,
                "socat made no pty pair within 5 s"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        PtyPair {
            a: a.display().to_string(),
            b: b.display().to_string(),
            child,
            _dir: dir,
        }
    }
}

impl Drop for PtyPair {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
