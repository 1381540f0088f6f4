//! A real browser for page tests: headless Chromium driven over the DevTools protocol.
//!
//! `Browser::launch()` starts Debian's `chromium` with its own profile in a temporary directory
//! and a DevTools port chosen by the browser (`--remote-debugging-port=0`, read back from
//! `DevToolsActivePort`), then opens one page. A `Page` navigates, runs JavaScript in the page
//! (to click, fill forms and read the DOM as a user's browser would), waits for conditions and
//! takes screenshots. `Browser::launch_trusting(cert)` accepts exactly one more certificate,
//! the gateway's self-signed one, by its public key's hash
//! (`--ignore-certificate-errors-spki-list`); other certificate errors still fail. Chromium is
//! installed by `tests/peers/ensure.sh` when missing; a test that
//! needs the browser fails (never skips) when it cannot start.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::sync::{Mutex, broadcast, oneshot};
use tokio_tungstenite::tungstenite::Message;

/// Why the browser could not do what a test asked.
#[derive(Debug, thiserror::Error)]
pub enum BrowserError {
    #[error("cannot start chromium: {0}")]
    Launch(String),
    #[error("DevTools connection: {0}")]
    Connection(String),
    #[error("DevTools {method} failed: {message}")]
    Command { method: String, message: String },
    #[error("script threw: {0}")]
    Script(String),
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(Duration, String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Value, String>>>>>;
type WsSink = futures_util::stream::SplitSink<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    Message,
>;

/// A running headless Chromium.
#[derive(Debug)]
pub struct Browser {
    child: tokio::process::Child,
    _profile: tempfile::TempDir,
    conn: Arc<Connection>,
}

struct Connection {
    sink: Mutex<WsSink>,
    pending: Pending,
    events: broadcast::Sender<Value>,
    next_id: AtomicU64,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").finish_non_exhaustive()
    }
}

impl Connection {
    async fn call(
        &self,
        session: Option<&str>,
        method: &str,
        params: Value,
    ) -> Result<Value, BrowserError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().await.insert(id, tx);
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        self.sink
            .lock()
            .await
            .send(Message::text(msg.to_string()))
            .await
            .map_err(|e| BrowserError::Connection(e.to_string()))?;
        match tokio::time::timeout(Duration::from_secs(30), rx).await {
            Ok(Ok(Ok(v))) => Ok(v),
            Ok(Ok(Err(message))) => Err(BrowserError::Command {
                method: method.to_owned(),
                message,
            }),
            Ok(Err(_)) => Err(BrowserError::Connection("closed".into())),
            Err(_) => Err(BrowserError::Timeout(
                Duration::from_secs(30),
                format!("the answer to {method}"),
            )),
        }
    }
}

/// Base64 of the SHA-256 of the first certificate's SubjectPublicKeyInfo (DER), the form
/// Chromium's `--ignore-certificate-errors-spki-list` takes.
pub fn spki_pin(cert_pem: &[u8]) -> Option<String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let cert = CertificateDer::pem_slice_iter(cert_pem).next()?.ok()?;
    let spki = subject_public_key_info(cert.as_ref())?;
    let hash = ring::digest::digest(&ring::digest::SHA256, spki);
    Some(base64::engine::general_purpose::STANDARD.encode(hash.as_ref()))
}

/// The SubjectPublicKeyInfo of an X.509 certificate, tag and length included (RFC 5280
/// 4.1: Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL, serial,
/// signature, issuer, validity, subject, subjectPublicKeyInfo, ... }, ... }).
fn subject_public_key_info(cert: &[u8]) -> Option<&[u8]> {
    let (_, certificate, _) = der(cert)?;
    let (_, tbs, _) = der(certificate)?;
    let mut rest = tbs;
    let (tag, _, after) = der(rest)?;
    if tag == 0xA0 {
        rest = after; // the explicit version
    }
    for _ in 0..5 {
        rest = der(rest)?.2; // serial, signature, issuer, validity, subject
    }
    let (tag, _, after) = der(rest)?;
    (tag == 0x30).then(|| &rest[..rest.len() - after.len()])
}

/// One DER element: (tag, contents, what follows). Single-byte tags, definite lengths.
fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// Where Debian installs Chromium.
pub fn chromium_path() -> Option<PathBuf> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

impl Browser {
    /// Starts headless Chromium (installing it through `tests/peers/ensure.sh` when missing).
    pub async fn launch() -> Result<Browser, BrowserError> {
        Browser::start(None).await
    }

    /// [`Browser::launch`], trusting the (self-signed) certificate in `cert_pem` as well: the
    /// first certificate of the PEM, pinned by the SHA-256 of its public key.
    pub async fn launch_trusting(cert_pem: &[u8]) -> Result<Browser, BrowserError> {
        let pin = spki_pin(cert_pem).ok_or_else(|| {
            BrowserError::Launch("no certificate with a public key in the PEM".into())
        })?;
        Browser::start(Some(pin)).await
    }

    async fn start(spki_pin: Option<String>) -> Result<Browser, BrowserError> {
        let exe = tokio::task::spawn_blocking(|| crate::peers::find_or_install(chromium_path))
            .await
            .map_err(|e| BrowserError::Launch(e.to_string()))?
            .map_err(BrowserError::Launch)?;
        let profile = tempfile::tempdir()?;
        let child = tokio::process::Command::new(exe)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--remote-debugging-port=0",
                "--remote-debugging-address=127.0.0.1",
                "--window-size=1280,900",
                "about:blank",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(spki_pin.map(|p| format!("--ignore-certificate-errors-spki-list={p}")))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| BrowserError::Launch(e.to_string()))?;
        let url = devtools_url(profile.path()).await?;
        let (ws, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .map_err(|e| BrowserError::Connection(e.to_string()))?;
        let (sink, mut stream) = ws.split();
        let pending: Pending = Arc::default();
        let (events, _) = broadcast::channel(1024);
        let conn = Arc::new(Connection {
            sink: Mutex::new(sink),
            pending: Arc::clone(&pending),
            events: events.clone(),
            next_id: AtomicU64::new(1),
        });
        tokio::spawn(async move {
            while let Some(Ok(msg)) = stream.next().await {
                let Message::Text(text) = msg else { continue };
                let Ok(v) = serde_json::from_str::<Value>(text.as_str()) else {
                    continue;
                };
                if let Some(id) = v.get("id").and_then(Value::as_u64) {
                    if let Some(tx) = pending.lock().await.remove(&id) {
                        let result = match v.get("error") {
                            Some(e) => Err(e.to_string()),
                            None => Ok(v.get("result").cloned().unwrap_or(Value::Null)),
                        };
                        let _ = tx.send(result);
                    }
                } else {
                    let _ = events.send(v);
                }
            }
        });
        Ok(Browser {
            child,
            _profile: profile,
            conn,
        })
    }

    /// Opens a new page (tab) of `width` × `height` CSS pixels.
    pub async fn page(&self, width: u32, height: u32) -> Result<Page, BrowserError> {
        let target = self
            .conn
            .call(None, "Target.createTarget", json!({ "url": "about:blank" }))
            .await?;
        let target_id = target["targetId"].as_str().unwrap_or_default().to_owned();
        let attached = self
            .conn
            .call(
                None,
                "Target.attachToTarget",
                json!({ "targetId": target_id, "flatten": true }),
            )
            .await?;
        let session = attached["sessionId"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let page = Page {
            conn: Arc::clone(&self.conn),
            session,
        };
        page.call("Page.enable", json!({})).await?;
        page.call("Runtime.enable", json!({})).await?;
        page.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": false }),
        )
        .await?;
        Ok(page)
    }

    /// Stops the browser.
    pub async fn close(mut self) {
        let _ = self.conn.call(None, "Browser.close", json!({})).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
        let _ = self.child.kill().await;
    }
}

/// Waits for Chromium to write its DevTools port and path into the profile directory.
async fn devtools_url(profile: &Path) -> Result<String, BrowserError> {
    let file = profile.join("DevToolsActivePort");
    let start = Instant::now();
    loop {
        if let Ok(text) = tokio::fs::read_to_string(&file).await {
            let mut lines = text.lines();
            if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
                return Ok(format!("ws://127.0.0.1:{port}{path}"));
            }
        }
        if start.elapsed() > Duration::from_secs(30) {
            return Err(BrowserError::Launch(
                "chromium wrote no DevToolsActivePort within 30 s".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One tab.
#[derive(Debug, Clone)]
pub struct Page {
    conn: Arc<Connection>,
    session: String,
}

impl Page {
    /// Sends a DevTools command to this page.
    pub async fn call(&self, method: &str, params: Value) -> Result<Value, BrowserError> {
        self.conn.call(Some(&self.session), method, params).await
    }

    /// Loads `url` and waits for its load event.
    pub async fn goto(&self, url: &str) -> Result<(), BrowserError> {
        let mut events = self.conn.events.subscribe();
        let nav = self.call("Page.navigate", json!({ "url": url })).await?;
        if let Some(err) = nav.get("errorText").and_then(Value::as_str) {
            return Err(BrowserError::Command {
                method: "Page.navigate".into(),
                message: format!("{url}: {err}"),
            });
        }
        self.wait_event(&mut events, "Page.loadEventFired").await
    }

    async fn wait_event(
        &self,
        events: &mut broadcast::Receiver<Value>,
        method: &str,
    ) -> Result<(), BrowserError> {
        let within = Duration::from_secs(30);
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let next = tokio::time::timeout_at(deadline, events.recv()).await;
            match next {
                Ok(Ok(e)) if e["method"] == method && e["sessionId"] == self.session.as_str() => {
                    return Ok(());
                }
                Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
                Ok(Err(broadcast::error::RecvError::Closed)) => {
                    return Err(BrowserError::Connection("closed".into()));
                }
                Err(_) => return Err(BrowserError::Timeout(within, method.to_owned())),
            }
        }
    }

    /// Evaluates `script` in the page (awaiting a promise) and returns its value as JSON.
    pub async fn eval(&self, script: &str) -> Result<Value, BrowserError> {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": script, "awaitPromise": true, "returnByValue": true }),
            )
            .await?;
        if let Some(ex) = r.get("exceptionDetails") {
            let text = ex["exception"]["description"]
                .as_str()
                .or_else(|| ex["text"].as_str())
                .unwrap_or("exception")
                .to_owned();
            return Err(BrowserError::Script(text));
        }
        Ok(r["result"]["value"].clone())
    }

    /// Waits until `script` evaluates to `true` (polling every 50 ms).
    pub async fn wait_until(&self, script: &str, within: Duration) -> Result<(), BrowserError> {
        let start = Instant::now();
        loop {
            if self.eval(script).await.ok() == Some(Value::Bool(true)) {
                return Ok(());
            }
            if start.elapsed() > within {
                return Err(BrowserError::Timeout(within, script.to_owned()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Clicks the element `selector` matches (as a user would: focus, then click).
    pub async fn click(&self, selector: &str) -> Result<(), BrowserError> {
        let sel = json!(selector);
        self.eval(&format!(
            "(() => {{ const e = document.querySelector({sel}); \
             if (!e) throw new Error('nothing matches ' + {sel}); e.focus(); e.click(); return true; }})()"
        ))
        .await
        .map(drop)
    }

    /// Clicks and waits for the navigation the click starts (a form submit, a link).
    pub async fn click_and_wait(&self, selector: &str) -> Result<(), BrowserError> {
        let mut events = self.conn.events.subscribe();
        self.click(selector).await?;
        self.wait_event(&mut events, "Page.loadEventFired").await
    }

    /// Types `value` into the input `selector` matches, firing `input` and `change` events.
    pub async fn fill(&self, selector: &str, value: &str) -> Result<(), BrowserError> {
        let (sel, val) = (json!(selector), json!(value));
        self.eval(&format!(
            "(() => {{ const e = document.querySelector({sel}); \
             if (!e) throw new Error('nothing matches ' + {sel}); e.focus(); e.value = {val}; \
             e.dispatchEvent(new Event('input', {{bubbles: true}})); \
             e.dispatchEvent(new Event('change', {{bubbles: true}})); return true; }})()"
        ))
        .await
        .map(drop)
    }

    /// The text content of the first element `selector` matches (`None` when nothing does).
    pub async fn text(&self, selector: &str) -> Result<Option<String>, BrowserError> {
        let sel = json!(selector);
        let v = self
            .eval(&format!(
                "(() => {{ const e = document.querySelector({sel}); return e ? e.textContent : null; }})()"
            ))
            .await?;
        Ok(v.as_str().map(str::to_owned))
    }

    /// The page's current URL.
    pub async fn url(&self) -> Result<String, BrowserError> {
        Ok(self
            .eval("location.href")
            .await?
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    /// Saves a PNG screenshot of the page to `path` (creating its directory).
    pub async fn screenshot(&self, path: &Path) -> Result<(), BrowserError> {
        let shot = self
            .call(
                "Page.captureScreenshot",
                json!({ "format": "png", "captureBeyondViewport": true }),
            )
            .await?;
        let data = shot["data"].as_str().unwrap_or_default();
        let png = base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|e| BrowserError::Command {
                method: "Page.captureScreenshot".into(),
                message: e.to_string(),
            })?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, png)?;
        Ok(())
    }
}

/// Where tests save screenshots: `target/artifacts/<what>/`.
pub fn artifacts_dir(what: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/artifacts")
        .join(what)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spki_pin_hashes_the_certificates_public_key() {
        use rcgen::PublicKeyData as _;
        let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
        let spki = subject_public_key_info(made.cert.der()).expect("spki");
        assert_eq!(spki, made.signing_key.subject_public_key_info().as_slice());
        let pin = spki_pin(made.cert.pem().as_bytes()).expect("pin");
        let want = ring::digest::digest(
            &ring::digest::SHA256,
            &made.signing_key.subject_public_key_info(),
        );
        assert_eq!(
            pin,
            base64::engine::general_purpose::STANDARD.encode(want.as_ref())
        );
        assert!(spki_pin(b"no certificate").is_none());
    }
}
