//! Shared helpers for the end-to-end tests: a tiny HTTP/1.1 client and polling waits.
//!
//! The client is deliberately minimal and independent of the gateway's HTTP stack, so the
//! tests speak to the gateway the way any outside client would: over a real socket.

pub mod broker;
pub mod browser;
pub mod peers;
pub mod postgres;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An HTTP response: status code and body parsed as JSON (Null when empty or not JSON).
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: serde_json::Value,
    pub text: String,
}

/// Sends one request with `Connection: close` and reads the whole response.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
) -> Response {
    let mut stream = TcpStream::connect(addr).await.expect("connect to gateway");
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{payload}",
        payload.len()
    );
    stream
        .write_all(req.as_bytes())
        .await
        .expect("send request");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read response");
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, text) = raw.split_once("\r\n\r\n").expect("HTTP response head");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let text = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(text)
    } else {
        text.to_owned()
    };
    let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
    Response { status, body, text }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
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
