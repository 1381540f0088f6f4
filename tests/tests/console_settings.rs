//! The console's settings, account, site-file and audit pages against a real gateway over
//! HTTPS (its site file in a temp dir, a Modbus simulator for its device), signed in through
//! `/setup`: accounts and roles, one's own password, a metrics token used and revoked, the
//! HTTPS certificate replaced (the next handshake presents it), the site settings (a time-zone
//! change refused, a hub connection saved for the next restart), a whole site file checked
//! then applied (the file on disk and `.prev`), a CSV point list refused by its bad row then
//! applied (the simulator is read at the new address), and the audit log and its CSV. Then
//! the same pages in Chromium (over HTTP/2): check before apply, a token, a backup verified.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use drivers::sim::{SimDevice, SimKind};
use gateway::app::WebConfig;
use gateway::clock::{Clock, ManualClock};
use gateway::console::auth::AuthConfig;
use roomgate_tests::browser::{Browser, Page, artifacts_dir};
use roomgate_tests::console::wait_js;
use roomgate_tests::wait_for;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use scenes::Timestamp;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const WAIT: Duration = Duration::from_secs(10);
/// 2026-03-02 09:00 UTC.
const START_MS: i64 = 1_772_442_000_000;
const ADA_PW: &str = "correct horse battery staple";
const OLGA_PW: &str = "another long phrase here";

fn site(port: u16) -> String {
    format!(
        r#"[site]
name = "Settings floor"
timezone = "UTC"

[[devices]]
id = "lights"
name = "Light module"
protocol = "modbus-tcp"
host = "127.0.0.1"
port = {port}
poll = "50ms"
points = [
  {{ id = "ch1", table = "coil", address = 0, type = "bool" }},
  {{ id = "ch2", table = "coil", address = 1, type = "bool" }},
]

[[rooms]]
id = "r1"
name = "Boardroom"
kind = "bookable"
bindings = {{ light = "lights/ch1" }}
"#
    )
}

// ---------------------------------------------------------------------------------------
// A small HTTPS client that remembers which certificate each handshake presented
// ---------------------------------------------------------------------------------------

/// Accepts any server certificate (the test checks which one it was), but still checks the
/// handshake's signatures, so the server must hold the certificate's key.
#[derive(Debug)]
struct Recorder {
    seen: Mutex<Option<CertificateDer<'static>>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.seen.lock().expect("lock") = Some(end_entity.clone().into_owned());
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    bytes: Vec<u8>,
    text: String,
    json: serde_json::Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        (self.headers.iter())
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The messages of a refused form on `field`.
    fn field_errors(&self, field: &str) -> Vec<String> {
        (self.json["errors"].as_array().into_iter().flatten())
            .filter(|e| e["field"] == field)
            .filter_map(|e| e["message"].as_str().map(str::to_owned))
            .collect()
    }

    fn lines(&self, key: &str) -> Vec<String> {
        (self.json[key].as_array().into_iter().flatten())
            .filter_map(|l| l.as_str().map(str::to_owned))
            .collect()
    }
}

/// A signed-in browser: the session cookie and the page's CSRF token.
#[derive(Debug, Clone)]
struct Session {
    cookie: String,
    csrf: String,
}

struct Client {
    addr: SocketAddr,
    connector: tokio_rustls::TlsConnector,
    recorder: Arc<Recorder>,
}

fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn form(fields: &[(&str, &str)]) -> String {
    let parts: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect();
    parts.join("&")
}

fn dechunk(mut s: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = s.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&s[..end]).unwrap_or("0");
        let n =
            usize::from_str_radix(size.split(';').next().unwrap_or("0").trim(), 16).unwrap_or(0);
        let rest = &s[end + 2..];
        if n == 0 || rest.len() < n {
            break;
        }
        out.extend_from_slice(&rest[..n]);
        s = rest[n..].strip_prefix(b"\r\n").unwrap_or(&rest[n..]);
    }
    out
}

impl Client {
    fn new(addr: SocketAddr) -> Client {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let recorder = Arc::new(Recorder {
            seen: Mutex::new(None),
            provider: provider.clone(),
        });
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .dangerous()
            .with_custom_certificate_verifier(recorder.clone())
            .with_no_client_auth();
        // Every connection a full handshake: a resumed session presents no certificate.
        config.resumption = rustls::client::Resumption::disabled();
        Client {
            addr,
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
            recorder,
        }
    }

    /// The certificate the last handshake presented.
    fn last_certificate(&self) -> CertificateDer<'static> {
        self.recorder
            .seen
            .lock()
            .expect("lock")
            .clone()
            .expect("a handshake happened")
    }

    /// One request on a new TLS connection (`Connection: close`).
    async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: &[u8],
    ) -> Answer {
        let tcp = tokio::net::TcpStream::connect(self.addr)
            .await
            .expect("connect to the console");
        let name = ServerName::try_from("localhost").expect("name");
        let mut tls = self
            .connector
            .connect(name, tcp)
            .await
            .expect("TLS handshake");
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        tls.write_all(head.as_bytes()).await.expect("send head");
        tls.write_all(body).await.expect("send body");
        tls.flush().await.expect("flush");
        let mut raw = Vec::new();
        match tls.read_to_end(&mut raw).await {
            Ok(_) => {}
            // A server that closes without close_notify: what arrived is the answer.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
            Err(e) => panic!("reading the answer to {method} {path}: {e}"),
        }
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("an HTTP head");
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .expect("a status");
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let mut body = raw[split + 4..].to_vec();
        if headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
        {
            body = dechunk(&body);
        }
        let text = String::from_utf8_lossy(&body).into_owned();
        let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
        Answer {
            status,
            headers,
            bytes: body,
            text,
            json,
        }
    }

    /// A page as a browser asks for it.
    async fn page(&self, path: &str, s: &Session) -> Answer {
        self.send(
            "GET",
            path,
            &[
                ("Accept", "text/html".into()),
                ("Cookie", format!("rg_session={}", s.cookie)),
            ],
            b"",
        )
        .await
    }

    /// A console form as `console.js` posts it (urlencoded, with the CSRF header).
    async fn post(&self, path: &str, s: &Session, fields: &[(&str, &str)]) -> Answer {
        self.send(
            "POST",
            path,
            &[
                ("Accept", "application/json".into()),
                ("Cookie", format!("rg_session={}", s.cookie)),
                ("X-CSRF-Token", s.csrf.clone()),
                ("Content-Type", "application/x-www-form-urlencoded".into()),
            ],
            form(fields).as_bytes(),
        )
        .await
    }

    /// A plain form post without a session (login, setup); the new session if one began.
    async fn sign_in(&self, path: &str, fields: &[(&str, &str)]) -> (Answer, Option<Session>) {
        let a = self
            .send(
                "POST",
                path,
                &[("Content-Type", "application/x-www-form-urlencoded".into())],
                form(fields).as_bytes(),
            )
            .await;
        let cookie = a
            .header("set-cookie")
            .and_then(|c| c.strip_prefix("rg_session="))
            .and_then(|c| c.split(';').next())
            .map(str::to_owned);
        let Some(cookie) = cookie else {
            return (a, None);
        };
        let mut s = Session {
            cookie,
            csrf: String::new(),
        };
        let page = self.page("/account", &s).await;
        assert_eq!(page.status, 200, "{}", page.text);
        s.csrf = scrape_csrf(&page.text);
        (a, Some(s))
    }

    async fn bearer(&self, path: &str, token: &str) -> Answer {
        self.send(
            "GET",
            path,
            &[("Authorization", format!("Bearer {token}"))],
            b"",
        )
        .await
    }
}

fn scrape_csrf(page: &str) -> String {
    let marker = "<meta name=\"csrf\" content=\"";
    let start = page.find(marker).expect("a csrf meta tag") + marker.len();
    let end = page[start..].find('"').expect("end of the csrf token");
    page[start..start + end].to_owned()
}

fn pem_certificate(pem: &[u8]) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem).expect("a PEM certificate")
}

// ---------------------------------------------------------------------------------------
// The gateway
// ---------------------------------------------------------------------------------------

struct Harness {
    sim: SimDevice,
    running: gateway::app::Running,
    path: PathBuf,
    data: PathBuf,
    client: Client,
    dir: tempfile::TempDir,
}

impl Harness {
    async fn start() -> Harness {
        let sim = SimDevice::spawn(SimKind::LightModule, ([127, 0, 0, 1], 0).into())
            .await
            .expect("simulator");
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("site.toml");
        std::fs::write(&path, site(sim.addr().port())).expect("site file written");
        let data = dir.path().join("data");
        let web = WebConfig {
            auth: AuthConfig {
                argon: Some(argon2::Params::new(1024, 1, 1, None).expect("argon2 params")),
                ..AuthConfig::default()
            },
            ..WebConfig::https(([127, 0, 0, 1], 0).into())
        };
        let clock = ManualClock::new(Timestamp::from_millis(START_MS));
        let running =
            gateway::app::start_from_file(&path, &data, web, Clock::Manual(clock.clone()))
                .await
                .expect("gateway starts");
        assert!(running.https());
        let client = Client::new(running.addr);
        let gw = running.handle().clone();
        wait_for("the light module online", WAIT, || {
            gw.snapshot().devices.iter().all(|d| d.state == "online")
        })
        .await;
        Harness {
            sim,
            running,
            path,
            data,
            client,
            dir,
        }
    }

    fn file(&self) -> String {
        std::fs::read_to_string(&self.path).expect("site file")
    }

    async fn setup(&self) -> Session {
        let code = std::fs::read_to_string(self.data.join("setup-code")).expect("setup code");
        let (a, s) = self
            .client
            .sign_in(
                "/setup",
                &[
                    ("code", code.trim()),
                    ("name", "ada"),
                    ("password", ADA_PW),
                    ("repeat", ADA_PW),
                ],
            )
            .await;
        assert_eq!(a.status, 303, "{}", a.text);
        s.expect("the installer's session")
    }

    /// Whether the simulator was read at coil `address`.
    fn coil_read(&self, address: u16) -> bool {
        self.sim
            .requests()
            .iter()
            .any(|r| r.function == 1 && r.address <= address && address < r.address + r.count)
    }
}

fn prev(path: &Path) -> PathBuf {
    path.with_file_name("site.toml.prev")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_accounts_tokens_certificate_site_file_csv_and_audit() {
    let h = Harness::start().await;
    let c = &h.client;
    let ada = h.setup().await;

    // --- Accounts: a weak password is refused on its field, then the operator is added.
    let weak = c
        .post(
            "/settings/accounts",
            &ada,
            &[
                ("name", "olga"),
                ("role", "operator"),
                ("password", "short"),
                ("repeat", "short"),
            ],
        )
        .await;
    assert_eq!(weak.status, 422, "{}", weak.text);
    assert!(
        weak.field_errors("password")
            .iter()
            .any(|m| m.contains("characters")),
        "{}",
        weak.text
    );
    let added = c
        .post(
            "/settings/accounts",
            &ada,
            &[
                ("name", "olga"),
                ("role", "operator"),
                ("password", OLGA_PW),
                ("repeat", OLGA_PW),
            ],
        )
        .await;
    assert_eq!(added.status, 200, "{}", added.text);
    let settings = c.page("/settings", &ada).await;
    assert_eq!(settings.status, 200, "{}", settings.text);
    assert!(settings.text.contains("<tr data-account=\"olga\">"));
    // The last installer cannot be removed.
    let last = c.post("/settings/accounts/ada/remove", &ada, &[]).await;
    assert_eq!(last.status, 409, "{}", last.text);

    // --- The operator: no settings, but its own password.
    let (_, olga) = c
        .sign_in("/login", &[("name", "olga"), ("password", OLGA_PW)])
        .await;
    let olga = olga.expect("the operator signs in");
    for path in ["/settings", "/site", "/audit", "/audit.csv"] {
        let a = c.page(path, &olga).await;
        assert_eq!(a.status, 403, "{path}: {}", a.text);
    }
    let a = c
        .post(
            "/settings/tokens",
            &olga,
            &[("label", "x"), ("scope", "metrics")],
        )
        .await;
    assert_eq!(a.status, 403, "{}", a.text);
    let account = c.page("/account", &olga).await;
    assert!(
        account.text.contains("id=\"own-password\""),
        "{}",
        account.text
    );
    let new_pw = "a brand new passphrase";
    let wrong = c
        .post(
            "/account/password",
            &olga,
            &[
                ("current", "not it at all"),
                ("password", new_pw),
                ("repeat", new_pw),
            ],
        )
        .await;
    assert_eq!(wrong.status, 422, "{}", wrong.text);
    assert!(!wrong.field_errors("current").is_empty(), "{}", wrong.text);
    let changed = c
        .post(
            "/account/password",
            &olga,
            &[
                ("current", OLGA_PW),
                ("password", new_pw),
                ("repeat", new_pw),
            ],
        )
        .await;
    assert_eq!(changed.status, 200, "{}", changed.text);
    let (old, none) = c
        .sign_in("/login", &[("name", "olga"), ("password", OLGA_PW)])
        .await;
    assert!(
        none.is_none(),
        "the old password still works: {}",
        old.status
    );
    let (_, again) = c
        .sign_in("/login", &[("name", "olga"), ("password", new_pw)])
        .await;
    assert!(again.is_some(), "the new password works");

    // --- A metrics token: shown once, works on /metrics, revoked.
    let made = c
        .post(
            "/settings/tokens",
            &ada,
            &[("label", "prometheus"), ("scope", "metrics")],
        )
        .await;
    assert_eq!(made.status, 200, "{}", made.text);
    let secret = made.json["secret"].as_str().expect("the secret").to_owned();
    let id = made.json["id"].as_str().expect("the id").to_owned();
    assert!(
        made.json["message"]
            .as_str()
            .unwrap_or("")
            .contains(&secret)
    );
    let settings = c.page("/settings", &ada).await;
    assert!(settings.text.contains(&format!("data-token=\"{id}\"")));
    assert!(!settings.text.contains(&secret), "the secret is shown once");
    let scraped = c.bearer("/metrics", &secret).await;
    assert_eq!(scraped.status, 200, "{}", scraped.text);
    // A metrics token opens nothing else.
    assert_eq!(c.bearer("/api/site", &secret).await.status, 403);
    let revoked = c
        .post(&format!("/settings/tokens/{id}/revoke"), &ada, &[])
        .await;
    assert_eq!(revoked.status, 200, "{}", revoked.text);
    assert_eq!(c.bearer("/metrics", &secret).await.status, 401);

    // --- The HTTPS certificate: a key of another certificate is refused on the key field
    //     and changes nothing; a matching pair is presented by the next handshake.
    let generated = pem_certificate(
        &std::fs::read(h.data.join("certs/console.crt")).expect("the generated certificate"),
    );
    assert_eq!(c.last_certificate(), generated);
    let settings = c.page("/settings", &ada).await;
    assert!(settings.text.contains("id=\"cert-summary\""));
    let one = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("one");
    let two = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("two");
    let mismatch = c
        .post(
            "/settings/certificate",
            &ada,
            &[
                ("cert", &one.cert.pem()),
                ("key", &two.signing_key.serialize_pem()),
            ],
        )
        .await;
    assert_eq!(mismatch.status, 422, "{}", mismatch.text);
    assert!(
        mismatch
            .field_errors("key")
            .iter()
            .any(|m| m.contains("does not match")),
        "{}",
        mismatch.text
    );
    assert_eq!(c.last_certificate(), generated, "nothing changed");
    let installed = c
        .post(
            "/settings/certificate",
            &ada,
            &[
                ("cert", &one.cert.pem()),
                ("key", &one.signing_key.serialize_pem()),
            ],
        )
        .await;
    assert_eq!(installed.status, 200, "{}", installed.text);
    assert_eq!(
        c.last_certificate(),
        generated,
        "that connection began before"
    );
    let after = c.page("/settings", &ada).await;
    assert_eq!(after.status, 200);
    assert_eq!(
        c.last_certificate(),
        one.cert.der().clone(),
        "the next handshake presents the upload"
    );
    let fingerprint = h
        .running
        .console
        .cert
        .as_ref()
        .expect("HTTPS")
        .summary()
        .fingerprint;
    assert!(after.text.contains(&fingerprint));

    // --- Site settings: a new time zone is refused on its field; a hub connection is
    //     saved and waits for the next restart.
    let before = h.file();
    let tz = c
        .post(
            "/settings/site",
            &ada,
            &[
                ("site.name", "Settings floor"),
                ("site.timezone", "Europe/Berlin"),
            ],
        )
        .await;
    assert_eq!(tz.status, 409, "{}", tz.text);
    assert!(!tz.field_errors("site.timezone").is_empty(), "{}", tz.text);
    assert_eq!(h.file(), before, "nothing written");
    let missing = c
        .post(
            "/settings/site",
            &ada,
            &[
                ("site.name", "Settings floor"),
                ("site.timezone", "UTC"),
                ("cloud.host", "127.0.0.1"),
            ],
        )
        .await;
    assert_eq!(missing.status, 422, "{}", missing.text);
    assert!(
        !missing.field_errors("cloud.port").is_empty(),
        "{}",
        missing.text
    );
    assert_eq!(h.file(), before, "nothing written");
    let cloud = c
        .post(
            "/settings/site",
            &ada,
            &[
                ("site.name", "Settings floor"),
                ("site.timezone", "UTC"),
                ("cloud.host", "127.0.0.1"),
                ("cloud.port", "1883"),
                ("cloud.site", "hq"),
                ("cloud.gateway", "gw1"),
                ("cloud.tls", "false"),
            ],
        )
        .await;
    assert_eq!(cloud.status, 200, "{}", cloud.text);
    assert!(!cloud.lines("pending_restart").is_empty(), "{}", cloud.text);
    assert!(h.file().contains("127.0.0.1:1883"), "{}", h.file());

    // --- The whole site file: a check shows the diff and changes nothing; apply writes it
    //     (the previous file kept); a broken file answers its errors with their lines.
    let running = c.page("/api/site", &ada).await;
    assert_eq!(running.status, 200, "{}", running.text);
    let page = c.page("/site", &ada).await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(page.text.contains("id=\"site-form\""));
    let on_disk = h.file();
    let renamed = on_disk.replacen("name = \"Boardroom\"", "name = \"Big boardroom\"", 1);
    assert_ne!(renamed, on_disk);
    let check = c.post("/site/check", &ada, &[("text", &renamed)]).await;
    assert_eq!(check.status, 200, "{}", check.text);
    assert!(
        check
            .lines("diff")
            .iter()
            .any(|l| l.contains("Big boardroom")),
        "{}",
        check.text
    );
    assert!(!check.lines("plan").is_empty(), "{}", check.text);
    assert_eq!(h.file(), on_disk, "a check writes nothing");
    assert!(
        !h.running
            .handle()
            .snapshot()
            .rooms
            .iter()
            .any(|r| r.name == "Big boardroom"),
        "a check applies nothing"
    );
    let apply = c.post("/site/apply", &ada, &[("text", &renamed)]).await;
    assert_eq!(apply.status, 200, "{}", apply.text);
    assert_eq!(h.file(), renamed);
    assert_eq!(
        std::fs::read_to_string(prev(&h.path)).expect("site.toml.prev"),
        on_disk
    );
    assert!(
        h.running
            .handle()
            .snapshot()
            .rooms
            .iter()
            .any(|r| r.name == "Big boardroom"),
        "the change is live"
    );
    let broken = renamed.replacen("kind = \"bookable\"", "kind = \"sometimes\"", 1);
    let bad_line = broken
        .lines()
        .position(|l| l.contains("sometimes"))
        .expect("the broken line")
        + 1;
    let refused = c.post("/site/check", &ada, &[("text", &broken)]).await;
    assert_eq!(refused.status, 422, "{}", refused.text);
    let errors = refused.field_errors("text");
    assert!(
        errors
            .iter()
            .any(|m| m.starts_with(&format!("line {bad_line}, column "))),
        "{errors:?}"
    );
    let refused = c.post("/site/apply", &ada, &[("text", &broken)]).await;
    assert_eq!(refused.status, 422, "{}", refused.text);
    assert_eq!(h.file(), renamed, "a broken file is never written");

    // --- A device's points as CSV: export; an import with one bad row is refused by its line
    //     and applies nothing; a good one applies (the simulator is read at the new address).
    let export = c.page("/site/points.csv?device=lights", &ada).await;
    assert_eq!(export.status, 200, "{}", export.text);
    assert!(export.text.contains("ch1,coil,0,bool"), "{}", export.text);
    let bad_csv = "id,table,address,type\nch1,coil,0,bool\nch2,coil,1,bool\nch4,coil,x,bool\n";
    for step in ["check", "apply"] {
        let a = c
            .post(
                &format!("/site/points/{step}"),
                &ada,
                &[("device", "lights"), ("csv", bad_csv)],
            )
            .await;
        assert_eq!(a.status, 422, "{}", a.text);
        let rows = a.field_errors("csv");
        assert!(rows.len() == 1 && rows[0].starts_with("line 4"), "{rows:?}");
    }
    assert_eq!(h.file(), renamed, "nothing applied");
    assert!(!h.coil_read(3), "the bad row's point was never polled");
    let good_csv = "id,table,address,type\nch1,coil,0,bool\nch2,coil,1,bool\nch4,coil,3,bool\n";
    let check = c
        .post(
            "/site/points/check",
            &ada,
            &[("device", "lights"), ("csv", good_csv)],
        )
        .await;
    assert_eq!(check.status, 200, "{}", check.text);
    assert!(
        check.lines("diff").iter().any(|l| l.contains("ch4")),
        "{}",
        check.text
    );
    assert_eq!(h.file(), renamed, "a check applies nothing");
    let apply = c
        .post(
            "/site/points/apply",
            &ada,
            &[("device", "lights"), ("csv", good_csv)],
        )
        .await;
    assert_eq!(apply.status, 200, "{}", apply.text);
    assert!(h.file().contains("ch4"), "{}", h.file());
    let sim = h.sim.clone();
    wait_for("the new point polled", WAIT, move || {
        sim.requests()
            .iter()
            .any(|r| r.function == 1 && r.address <= 3 && 3 < r.address + r.count)
    })
    .await;

    // --- The audit log: each change with who made it; a filter; the CSV export.
    let audit = c.page("/audit?period=7d", &ada).await;
    assert_eq!(audit.status, 200, "{}", audit.text);
    let rows: Vec<&str> = audit.text.split("<tr data-action=").skip(1).collect();
    let has = |action: &str, who: &str| {
        rows.iter().any(|r| {
            r.starts_with(&format!("\"{action}\"")) && r.contains(&format!("<td>{who}</td>"))
        })
    };
    for (action, who) in [
        ("setup.done", "setup"),
        ("account.add", "ada"),
        ("account.password", "olga"),
        ("token.create", "ada"),
        ("token.revoke", "ada"),
        ("cert.install", "ada"),
        ("site.settings", "ada"),
        ("site.change", "ada"),
        ("points.import", "ada"),
    ] {
        assert!(has(action, who), "{action} by {who} not in the audit page");
    }
    // Newest first: the import was the last change.
    assert!(rows[0].starts_with("\"points.import\""), "{}", rows[0]);
    assert!(
        audit.text.contains("Big boardroom"),
        "the diff is in the detail"
    );
    let tokens = c.page("/audit?period=30d&action=token.", &ada).await;
    let actions: Vec<&str> = tokens
        .text
        .split("<tr data-action=\"")
        .skip(1)
        .filter_map(|r| r.split('"').next())
        .collect();
    // The gateway's own command-line token, made at start, is the oldest.
    assert_eq!(
        actions,
        ["token.revoke", "token.create", "token.create"],
        "{}",
        tokens.text
    );
    assert!(tokens.text.contains("<td>gateway</td>"));
    let csv = c.page("/audit.csv?period=6m", &ada).await;
    assert_eq!(csv.status, 200, "{}", csv.text);
    assert!(
        csv.header("content-type")
            .is_some_and(|t| t.starts_with("text/csv")),
        "{:?}",
        csv.headers
    );
    assert!(
        csv.text
            .starts_with("time,time_utc,who,from,action,target,detail\r\n")
    );
    for row in [
        ",ada,127.0.0.1,points.import,lights,",
        ",ada,127.0.0.1,site.change,site file,",
        ",olga,127.0.0.1,account.password,olga,",
        ",ada,127.0.0.1,cert.install,console certificate,",
    ] {
        assert!(csv.text.contains(row), "{row} not in:\n{}", csv.text);
    }

    h.running.shutdown().await;
}

async fn disabled(page: &Page, selector: &str) -> bool {
    let sel = serde_json::json!(selector);
    page.eval(&format!("document.querySelector({sel}).disabled"))
        .await
        .expect("eval")
        == serde_json::Value::Bool(true)
}

/// The pages' script in Chromium: a site file is offered for applying only after its check
/// passed, a broken one shows its lines, a token is shown once, a backup verifies from a chosen
/// file; screenshots in `target/artifacts/console-settings/`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_check_before_they_apply_in_a_browser() {
    let h = Harness::start().await;
    let ada = h.setup().await;
    let shots = artifacts_dir("console-settings");
    let url = |path: &str| format!("https://{}{path}", h.running.addr);

    let cert = h.running.console.cert.as_ref().expect("HTTPS");
    let pem = std::fs::read(cert.cert_path()).expect("the gateway's certificate");
    let browser = Browser::launch_trusting(&pem)
        .await
        .expect("chromium starts");
    let page = browser.page(1280, 900).await.expect("a page");
    page.goto(&url("/login?lang=en")).await.expect("login page");
    page.fill("input[name=name]", "ada").await.expect("name");
    page.fill("input[name=password]", ADA_PW)
        .await
        .expect("password");
    page.click_and_wait("button[type=submit]")
        .await
        .expect("signed in");

    // The site file: check shows the diff and offers apply; an edit withdraws it.
    page.goto(&url("/site")).await.expect("site page");
    let on_disk = h.file();
    let renamed = on_disk.replacen("name = \"Boardroom\"", "name = \"Big boardroom\"", 1);
    page.fill("#site-text", &renamed).await.expect("edited");
    assert!(disabled(&page, "#site-form button[data-step=apply]").await);
    page.click("#site-form button[data-step=check]")
        .await
        .expect("check");
    wait_js(
        &page,
        "the check's diff",
        "document.querySelector('#site-form [data-out]').textContent.includes('Big boardroom')",
    )
    .await;
    assert!(!disabled(&page, "#site-form button[data-step=apply]").await);
    assert_eq!(h.file(), on_disk, "a check writes nothing");
    page.screenshot(&shots.join("site-checked.png"))
        .await
        .expect("screenshot");
    page.click("#site-form button[data-step=apply]")
        .await
        .expect("apply");
    wait_js(
        &page,
        "the apply's answer",
        "document.querySelector('#site-form [data-out]').textContent.includes('Applied.')",
    )
    .await;
    assert_eq!(h.file(), renamed);
    let broken = renamed.replacen("kind = \"bookable\"", "kind = \"sometimes\"", 1);
    let bad_line = broken
        .lines()
        .position(|l| l.contains("sometimes"))
        .expect("the broken line")
        + 1;
    page.fill("#site-text", &broken).await.expect("broken");
    assert!(disabled(&page, "#site-form button[data-step=apply]").await);
    page.click("#site-form button[data-step=check]")
        .await
        .expect("check");
    wait_js(
        &page,
        "the broken line's number",
        &format!(
            "document.querySelector('#site-form [data-out]').textContent.includes('line {bad_line}, column')"
        ),
    )
    .await;
    assert!(disabled(&page, "#site-form button[data-step=apply]").await);
    page.screenshot(&shots.join("site-errors.png"))
        .await
        .expect("screenshot");

    // Settings in Chinese: a token's secret shown once in the form.
    page.goto(&url("/settings?lang=zh-CN"))
        .await
        .expect("settings page");
    page.fill("#token-create input[name=label]", "大厅屏")
        .await
        .expect("label");
    page.fill("#token-create select[name=scope]", "display")
        .await
        .expect("scope");
    page.click("#token-create button[type=submit]")
        .await
        .expect("create");
    wait_js(
        &page,
        "the token's secret",
        "/[0-9a-f]{64}/.test(document.querySelector('#token-create .form-result').textContent)",
    )
    .await;

    // A backup downloaded, chosen in the restore form and verified there.
    let backup = h.client.page("/api/backup", &ada).await;
    assert_eq!(backup.status, 200, "{}", backup.text);
    let archive = h.dir.path().join("backup.tar.gz");
    std::fs::write(&archive, &backup.bytes).expect("archive written");
    let doc = page
        .call("DOM.getDocument", serde_json::json!({}))
        .await
        .expect("document");
    let node = page
        .call(
            "DOM.querySelector",
            serde_json::json!({ "nodeId": doc["root"]["nodeId"], "selector": "#restore-file" }),
        )
        .await
        .expect("the restore input");
    page.call(
        "DOM.setFileInputFiles",
        serde_json::json!({ "nodeId": node["nodeId"], "files": [archive.display().to_string()] }),
    )
    .await
    .expect("file chosen");
    assert!(disabled(&page, "button[data-restore=stage]").await);
    page.click("button[data-restore=verify]")
        .await
        .expect("verify");
    wait_js(
        &page,
        "the backup verified",
        "document.querySelector('#restore-result').textContent.includes('校验通过')",
    )
    .await;
    assert!(!disabled(&page, "button[data-restore=stage]").await);
    page.screenshot(&shots.join("settings-zh.png"))
        .await
        .expect("screenshot");

    browser.close().await;
    h.running.shutdown().await;
}
