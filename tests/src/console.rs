//! What the browser tests of the console and the door panel share: waits on a condition in a
//! page that fail with what the page shows (not just "timed out"), choosing an option of a
//! `<select>` as a user does (failing when the option is not offered), and the setup code a
//! first start writes.
//!
//! The waits are generous ([`PAGE_WAIT`]): pages wait on a gateway that reloads devices and
//! writes files on a small machine shared with other tests.

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use crate::browser::Page;

/// How long a page may take to show what a test waits for.
pub const PAGE_WAIT: Duration = Duration::from_secs(60);

/// Waits until `script` is true in the page; fails naming `what`, with the page's text.
pub async fn wait_js(page: &Page, what: &str, script: &str) {
    if let Err(e) = page.wait_until(script, PAGE_WAIT).await {
        let body = page
            .eval("(document.querySelector('main') || document.body || {}).innerText || ''")
            .await
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        panic!("{what}: not seen ({e}); the page shows:\n{body}");
    }
}

/// Waits until the element `selector` matches has the text `want` (trimmed).
pub async fn wait_text(page: &Page, selector: &str, want: &str) {
    let script = format!(
        "(() => {{ const e = document.querySelector({sel}); return !!e && e.textContent.trim() === {want}; }})()",
        sel = json!(selector),
        want = json!(want)
    );
    if page.wait_until(&script, PAGE_WAIT).await.is_err() {
        let got = page.text(selector).await.ok().flatten();
        panic!("{selector}: wanted {want:?}, the page shows {got:?}");
    }
}

/// Waits until the door panel (`#panel`) shows the room's `state` (`free`, `in_meeting`, …).
pub async fn wait_state(page: &Page, state: &str) {
    let script = format!(
        "document.getElementById('panel').className === {}",
        json!(format!("state-{state}"))
    );
    if page.wait_until(&script, PAGE_WAIT).await.is_err() {
        let got = page
            .eval("document.getElementById('panel').className")
            .await
            .ok();
        panic!("the panel should show {state}, it shows {got:?}");
    }
}

/// Chooses the option `value` of the `<select>` `selector` matches (firing `input` and
/// `change`); fails when the select does not offer it, listing what it offers.
pub async fn choose(page: &Page, selector: &str, value: &str) {
    let offered = page
        .eval(&format!(
            "[...document.querySelector({}).options].map(o => o.value)",
            json!(selector)
        ))
        .await
        .unwrap_or_else(|e| panic!("{selector}: {e}"));
    let offered: Vec<&str> = offered
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    assert!(
        offered.contains(&value),
        "{selector} does not offer {value:?}; it offers {offered:?}"
    );
    page.fill(selector, value)
        .await
        .unwrap_or_else(|e| panic!("{selector}: {e}"));
}

/// The setup code a gateway's first start wrote to `<data>/setup-code`.
pub fn setup_code(data: &Path) -> String {
    let path = data.join(gateway::console::auth::SETUP_CODE_FILE);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading the setup code {}: {e}", path.display()))
        .trim()
        .to_owned()
}
