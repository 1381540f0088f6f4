//! Shared helpers for the end-to-end tests: a tiny HTTP/1.1 client (plain or TLS, with a
//! bearer token) and polling waits.
//!
//! The client is deliberately minimal and independent of the gateway's HTTP stack, so the
//! tests speak to the gateway the way any outside client would: over a real socket. Over TLS
//! it trusts exactly one certificate, the gateway's own (`<data>/certs/console.crt`), as the
//! only root, for the name `localhost` the generated certificate lists.

pub mod broker;
pub mod browser;
pub mod console;
pub mod peers;
pub mod postgres;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway::console::auth::{Role, Scope};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Where and how to reach a gateway's web side: its address, a bearer token (if any), and
/// TLS trusting only the gateway's certificate (if it serves HTTPS).
///
/// `http(...)` takes anything that converts into one: a bare `SocketAddr` is plain HTTP
/// without credentials, `&Api` is the usual form.
#[derive(Clone)]
pub struct Api {
    pub addr: SocketAddr,
    /// Sent as `Authorization: Bearer <token>`.
    pub token: Option<String>,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("addr", &self.addr)
            .field("token", &self.token.as_ref().map(|_| "…"))
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Api {
    /// Plain HTTP to `addr`, no credentials.
    pub fn plain(addr: SocketAddr) -> Api {
        Api {
            addr,
            token: None,
            tls: None,
        }
    }

    /// HTTPS to `addr`, trusting only the certificate in `cert_pem` (the gateway's
    /// `<data>/certs/console.crt`; the first certificate of the file when it holds a chain).
    pub fn pinned(addr: SocketAddr, cert_pem: &[u8]) -> Api {
        Api {
            addr,
            token: None,
            tls: Some(trusting(cert_pem)),
        }
    }

    /// [`Api::pinned`] with the certificate read from `<data>/certs/console.crt`.
    pub fn pinned_to_data(addr: SocketAddr, data: &Path) -> Api {
        let path = data.join(gateway::console::tls::CERT_FILE);
        let pem = std::fs::read(&path).unwrap_or_else(|e| {
            panic!("reading the gateway's certificate {}: {e}", path.display())
        });
        Api::pinned(addr, &pem)
    }

    /// A running gateway's console, over HTTPS when it serves it, without credentials.
    pub fn of(running: &gateway::app::Running) -> Api {
        match &running.console.cert {
            Some(cert) => {
                let path = cert.cert_path();
                let pem = std::fs::read(&path).unwrap_or_else(|e| {
                    panic!("reading the gateway's certificate {}: {e}", path.display())
                });
                Api::pinned(running.addr, &pem)
            }
            None => Api::plain(running.addr),
        }
    }

    /// A running gateway's console with a new token of `scope` (labelled `label`).
    pub fn issue(running: &gateway::app::Running, label: &str, scope: Scope) -> Api {
        let token = running
            .issue_token(label, scope)
            .expect("the gateway issues a token");
        Api::of(running).bearer(token)
    }

    /// A running gateway's API as an operator (reads, bookings, room actions).
    pub fn operator(running: &gateway::app::Running) -> Api {
        Api::issue(
            running,
            "tests (operator)",
            Scope::Api {
                role: Role::Operator,
            },
        )
    }

    /// A running gateway's API as an installer (also the site file, backups, the log filter).
    pub fn installer(running: &gateway::app::Running) -> Api {
        Api::issue(
            running,
            "tests (installer)",
            Scope::Api {
                role: Role::Installer,
            },
        )
    }

    /// The same gateway with `token` as the bearer.
    pub fn bearer(mut self, token: impl Into<String>) -> Api {
        self.token = Some(token.into());
        self
    }

    /// The same gateway without credentials.
    pub fn anonymous(&self) -> Api {
        Api {
            token: None,
            ..self.clone()
        }
    }

    /// The same credentials and trust at another address (a restarted gateway's new port).
    pub fn at(&self, addr: SocketAddr) -> Api {
        Api {
            addr,
            ..self.clone()
        }
    }

    /// Whether requests go over TLS.
    pub fn is_https(&self) -> bool {
        self.tls.is_some()
    }

    /// The URL of `path` (starting with `/`) on this gateway, as a browser opens it.
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.is_https() { "https" } else { "http" };
        format!("{scheme}://{}{path}", self.addr)
    }
}

impl From<SocketAddr> for Api {
    fn from(addr: SocketAddr) -> Api {
        Api::plain(addr)
    }
}

impl From<&Api> for Api {
    fn from(api: &Api) -> Api {
        api.clone()
    }
}

/// A client configuration whose only root is the first certificate in `cert_pem`.
fn trusting(cert_pem: &[u8]) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let cert = CertificateDer::pem_slice_iter(cert_pem)
        .next()
        .expect("a certificate in the PEM")
        .expect("a readable certificate");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).expect("the certificate as a trust anchor");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    Arc::new(config)
}

/// One request: method, path (with query), extra headers and a body.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn new(method: &str, path: &str) -> Request {
        Request {
            method: method.to_owned(),
            path: path.to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Request {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    /// A JSON body (`Content-Type: application/json`).
    pub fn json(self, body: &serde_json::Value) -> Request {
        self.body("application/json", body.to_string().into_bytes())
    }

    /// A URL-encoded form (what a browser's `<form method=post>` sends).
    pub fn form(self, fields: &[(&str, &str)]) -> Request {
        let text = fields
            .iter()
            .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        self.body("application/x-www-form-urlencoded", text.into_bytes())
    }

    pub fn body(mut self, content_type: &str, body: Vec<u8>) -> Request {
        self.headers
            .push(("Content-Type".to_owned(), content_type.to_owned()));
        self.body = body;
        self
    }
}

fn form_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(b))
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// An HTTP response: status code, headers and body parsed as JSON (Null when empty or not JSON).
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: serde_json::Value,
    pub text: String,
    /// The body as received (after de-chunking).
    pub bytes: Vec<u8>,
    /// Header names in lower case, in the order sent.
    pub headers: Vec<(String, String)>,
}

impl Response {
    /// The first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every `Set-Cookie` header.
    pub fn set_cookies(&self) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == "set-cookie")
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The `Set-Cookie` header of the cookie `name`, whole (value and attributes).
    pub fn set_cookie(&self, name: &str) -> Option<&str> {
        self.set_cookies()
            .into_iter()
            .find(|c| c.split_once('=').is_some_and(|(n, _)| n.trim() == name))
    }

    /// The value `name` is set to by a `Set-Cookie` of this response.
    pub fn cookie_value(&self, name: &str) -> Option<&str> {
        self.set_cookie(name)
            .and_then(|c| c.split(';').next())
            .and_then(|kv| kv.split_once('='))
            .map(|(_, v)| v.trim())
    }
}

/// Sends one request with `Connection: close` and a JSON body (if any), with the bearer token
/// of `to`, and reads the whole response.
pub async fn http(
    to: impl Into<Api>,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
) -> Response {
    let mut req = Request::new(method, path);
    req = match body {
        Some(b) => req.json(b),
        None => req.body("application/json", Vec::new()),
    };
    send(to, req).await
}

/// Sends `req` with `Connection: close` (and `Host: <addr>` and the bearer token of `to`, unless
/// `req` has its own `Host` or `Authorization`), and reads the whole response.
pub async fn send(to: impl Into<Api>, req: Request) -> Response {
    let to = to.into();
    let has = |name: &str| {
        req.headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
    };
    let mut head = format!(
        "{} {} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        req.method,
        req.path,
        req.body.len()
    );
    if !has("host") {
        head.push_str(&format!("Host: {}\r\n", to.addr));
    }
    let own_auth = has("authorization");
    if let (Some(t), false) = (&to.token, own_auth) {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    for (n, v) in &req.headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut raw_req = head.into_bytes();
    raw_req.extend_from_slice(&req.body);
    let tcp = TcpStream::connect(to.addr)
        .await
        .expect("connect to gateway");
    let raw = match &to.tls {
        None => exchange(tcp, &raw_req).await,
        Some(config) => {
            let name = rustls::pki_types::ServerName::try_from("localhost").expect("a name");
            let tls = tokio_rustls::TlsConnector::from(config.clone())
                .connect(name, tcp)
                .await
                .expect("a TLS handshake with the gateway, trusting only its certificate");
            exchange(tls, &raw_req).await
        }
    };
    parse(&raw)
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, req: &[u8]) -> Vec<u8> {
    stream.write_all(req).await.expect("send request");
    stream.flush().await.expect("send request");
    let mut raw = Vec::new();
    match stream.read_to_end(&mut raw).await {
        Ok(_) => {}
        // A TLS peer closing without close_notify: the response is complete when its length says so.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        Err(e) => panic!("read response: {e}"),
    }
    raw
}

fn parse(raw: &[u8]) -> Response {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("HTTP response head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut bytes = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    if chunked {
        bytes = dechunk(&bytes);
    } else if let Some(len) = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        assert_eq!(bytes.len(), len, "the whole body arrived");
    }
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    Response {
        status,
        body,
        text,
        bytes,
        headers,
    }
}

fn dechunk(mut s: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = s.windows(2).position(|w| w == b"\r\n") {
        let size = String::from_utf8_lossy(&s[..i]);
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        let rest = &s[i + 2..];
        if n == 0 || rest.len() < n {
            break;
        }
        out.extend_from_slice(&rest[..n]);
        s = rest[n..].strip_prefix(b"\r\n").unwrap_or(&rest[n..]);
    }
    out
}

/// Polls `cond` every 10 ms until it holds or `within` passes; panics with `what` if not.
pub async fn wait_for(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < within,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Like [`wait_for`], for a condition that has to await (a store query, say).
pub async fn wait_until<F, Fut>(what: &str, within: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !cond().await {
        assert!(
            start.elapsed() < within,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// An IEEE-754 f32 from two Modbus registers, high word first.
pub fn f32_from_words(hi: u16, lo: u16) -> f32 {
    f32::from_bits((u32::from(hi) << 16) | u32::from(lo))
}
