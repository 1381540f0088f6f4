//! The independent peers the tests need (Mosquitto, PostgreSQL, Chromium, socat, the Python
//! peers): found on this machine, or installed by `tests/peers/ensure.sh` first.

use std::path::Path;
use std::process::{Command, Stdio};

/// `find()`, or, when it finds nothing, runs `tests/peers/ensure.sh` and asks again; the error
/// says what the script printed. Callers keep the answer in a `OnceLock`, so the script runs at
/// most once per test binary and peer.
pub fn find_or_install<T>(find: impl Fn() -> Option<T>) -> Result<T, String> {
    if let Some(found) = find() {
        return Ok(found);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/ensure.sh");
    let output = Command::new("bash")
        .arg(&script)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    find().ok_or_else(|| {
        format!(
            "{} exited with {}: {}",
            script.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
    })
}
