//! What the tests of the `gateway` binary share: finding the console's address in its log, and
//! a small blocking HTTPS client that trusts only the gateway's own certificate
//! (`<data>/certs/console.crt`, as the only root, for the name `localhost` a generated
//! certificate lists) and carries the token the gateway writes to `<data>/cli-token`.
#![allow(dead_code)]

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// What the gateway logs once its console serves HTTPS (the address follows).
pub const CONSOLE_AT: &str = "console at https://";

/// The console's address in a log line, if the line announces it.
pub fn console_addr(line: &str) -> Option<String> {
    line.split(CONSOLE_AT).nth(1).map(|a| a.trim().to_owned())
}

/// A running gateway binary's console as its local tools reach it.
#[derive(Clone)]
pub struct Console {
    pub addr: String,
    pub data: PathBuf,
    token: Option<String>,
    tls: Arc<rustls::ClientConfig>,
}

/// An answer: status, head (status line and headers) and body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Console {
    /// The console at `addr` of the gateway whose data directory is `data`: trusting
    /// `<data>/certs/console.crt`, with `<data>/cli-token` as the bearer.
    pub fn new(addr: &str, data: &Path) -> Console {
        let token_path = data.join("cli-token");
        let token = std::fs::read_to_string(&token_path)
            .unwrap_or_else(|e| panic!("{}: {e}", token_path.display()))
            .trim()
            .to_owned();
        Console {
            token: Some(token),
            ..Console::anonymous(addr, data)
        }
    }

    /// The same console without a token.
    pub fn anonymous(addr: &str, data: &Path) -> Console {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject as _;
        let cert_path = data.join("certs/console.crt");
        let pem =
            std::fs::read(&cert_path).unwrap_or_else(|e| panic!("{}: {e}", cert_path.display()));
        let cert = CertificateDer::pem_slice_iter(&pem)
            .next()
            .expect("a certificate")
            .expect("a readable certificate");
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert).expect("the certificate as the only root");
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        Console {
            addr: addr.to_owned(),
            data: data.to_path_buf(),
            token: None,
            tls: Arc::new(tls),
        }
    }

    /// One request (`Connection: close`); the whole answer.
    pub fn request(&self, method: &str, path: &str, body: &[u8]) -> Answer {
        let auth = self
            .token
            .as_ref()
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.addr,
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(body);
        let tcp = TcpStream::connect(&self.addr).expect("connect to the gateway");
        tcp.set_read_timeout(Some(Duration::from_secs(60)))
            .expect("timeout");
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let conn = rustls::ClientConnection::new(self.tls.clone(), name).expect("a TLS connection");
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        tls.write_all(&req)
            .expect("send (the TLS handshake trusts only the gateway's certificate)");
        tls.flush().expect("send");
        let mut raw = Vec::new();
        match tls.read_to_end(&mut raw) {
            Ok(_) => {}
            // Closed without close_notify: complete when the length says so (checked below).
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
            Err(e) => panic!("reading the answer to {method} {path}: {e}"),
        }
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("an HTTP answer");
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        let mut body = raw.split_off(split + 4);
        let lower = head.to_ascii_lowercase();
        if lower.contains("transfer-encoding: chunked") {
            body = dechunk(&body);
        } else if let Some(len) = lower
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok())
        {
            assert_eq!(body.len(), len, "the whole body of {method} {path} arrived");
        }
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .expect("a status code");
        Answer { status, head, body }
    }
}

fn dechunk(mut s: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = s.windows(2).position(|w| w == b"\r\n") {
        let n = usize::from_str_radix(String::from_utf8_lossy(&s[..i]).trim(), 16).unwrap_or(0);
        let rest = &s[i + 2..];
        if n == 0 || rest.len() < n {
            break;
        }
        out.extend_from_slice(&rest[..n]);
        s = rest[n..].strip_prefix(b"\r\n").unwrap_or(&rest[n..]);
    }
    out
}
