//! The browser harness itself: headless Chromium loads a page from a real socket, a click runs
//! the page's script, a form field is filled, and a screenshot is written as a PNG.

use std::time::Duration;

use roomgate_tests::browser::{Browser, artifacts_dir};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PAGE: &str = r#"<!doctype html><html><body>
<p id="out">before</p><input id="name">
<button id="go" onclick="document.getElementById('out').textContent = 'hello ' + document.getElementById('name').value">go</button>
</body></html>"#;

/// Serves `PAGE` to every request on a port chosen by the system.
async fn serve() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{PAGE}",
                    PAGE.len()
                );
                let _ = s.write_all(reply.as_bytes()).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_loads_clicks_fills_and_screenshots_a_real_page() {
    let addr = serve().await;
    let browser = Browser::launch().await.expect("chromium starts");
    let page = browser.page(800, 600).await.expect("a page");
    page.goto(&format!("http://{addr}/")).await.expect("loads");
    assert_eq!(
        page.text("#out").await.expect("text").as_deref(),
        Some("before")
    );
    page.fill("#name", "room 4.01").await.expect("fill");
    page.click("#go").await.expect("click");
    page.wait_until(
        "document.getElementById('out').textContent === 'hello room 4.01'",
        Duration::from_secs(5),
    )
    .await
    .expect("the click ran the page's script");
    assert!(
        page.click("#missing").await.is_err(),
        "a missing element is an error"
    );
    let shot = artifacts_dir("harness").join("page.png");
    page.screenshot(&shot).await.expect("screenshot");
    let png = std::fs::read(&shot).expect("png written");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG file");
    browser.close().await;
}
