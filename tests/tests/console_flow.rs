//! The installer console end to end, as an installer does it on a first visit: one Chromium,
//! a real gateway over HTTPS (its generated certificate, trusted by its key) and a Modbus TCP
//! light module simulator, and nothing but the pages.
//!
//! The site starts with one room and no devices. Through the pages: the first account from
//! the setup code; a Modbus TCP device and two points, online with a live value; a CSV point
//! list with one bad row refused with its line number and nothing applied; the room's light
//! bound to the new points; a scene with a wait, tried in the room (the simulator's coil and
//! register change, in order); a door panel link and a meeting booked now, checked in on the
//! tablet; the audit log naming the installer for each change; the settings page.
//! The test reads state (the snapshot, `/api/site`, the simulator, the audit log) only to check
//! what the pages did. Screenshots go to `target/artifacts/console-flow/`.

use std::net::SocketAddr;
use std::time::Duration;

use drivers::ModbusTable;
use drivers::sim::{SimDevice, SimKind};
use gateway::app::{Running, WebConfig};
use gateway::clock::Clock;
use roomgate_tests::browser::{Browser, Page, artifacts_dir};
use roomgate_tests::console::{choose, setup_code, wait_js, wait_state, wait_text};
use roomgate_tests::{Api, http, wait_for};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);
const INSTALLER: &str = "ines";
const PASSWORD: &str = "correct horse battery staple";

/// One room, no devices: what an installer starts from.
const SITE: &str = r#"
[site]
name = "Level 2"
timezone = "UTC"

[[rooms]]
id = "r1"
name = "Boardroom"
capacity = 8
kind = "bookable"
"#;

struct Floor {
    running: Running,
    lights: SimDevice,
    data: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Floor {
    async fn start() -> Floor {
        let lights = SimDevice::spawn(SimKind::LightModule, ([127, 0, 0, 1], 0).into())
            .await
            .expect("light module simulator");
        let dir = tempfile::tempdir().expect("temp dir");
        let site = dir.path().join("site.toml");
        std::fs::write(&site, SITE).expect("site file");
        let data = dir.path().join("data");
        let running = gateway::app::start_from_file(
            &site,
            &data,
            WebConfig::https(([127, 0, 0, 1], 0).into()),
            Clock::System,
        )
        .await
        .expect("gateway starts");
        assert!(running.https(), "the console is served over HTTPS");
        Floor {
            running,
            lights,
            data,
            _dir: dir,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.running.addr
    }

    fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr())
    }

    fn cert_pem(&self) -> Vec<u8> {
        let cert = self.running.console.cert.as_ref().expect("HTTPS");
        std::fs::read(cert.cert_path()).expect("the gateway's certificate")
    }

    fn device(&self, id: &str) -> Option<gateway::api::DeviceDto> {
        let snap = self.running.handle().snapshot();
        snap.devices.iter().find(|d| d.id == id).cloned()
    }

    fn point_ids(&self, device: &str) -> Vec<String> {
        self.device(device)
            .map(|d| d.points.into_iter().map(|p| p.id).collect())
            .unwrap_or_default()
    }

    fn room(&self, id: &str) -> gateway::api::RoomDto {
        let snap = self.running.handle().snapshot();
        snap.rooms
            .iter()
            .find(|r| r.id == id)
            .cloned()
            .unwrap_or_else(|| panic!("room {id} in the snapshot"))
    }

    /// The running site file, read as an installer's API client would.
    async fn site_file(&self, installer: &Api) -> String {
        let r = http(installer, "GET", "/api/site", None).await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.text
    }

    async fn stop(self) {
        self.running.shutdown().await;
        self.lights.shutdown();
    }
}

/// What a refused form shows in the page still open: every non-empty error slot.
const REFUSAL: &str = "[...document.querySelectorAll('.err')].map(e => e.textContent.trim()).filter(Boolean).join('; ')";

/// Clicks `button` of a form whose answer reloads or leaves the page, and waits until the
/// new page shows `ready` (a script); a refusal shown in the old page fails at once, with
/// its text.
async fn submit_and_load(page: &Page, button: &str, what: &str, ready: &str) {
    page.eval("window.__flowOld = true")
        .await
        .expect("mark the page");
    page.click(button)
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    wait_js(
        page,
        what,
        &format!(
            "(() => window.__flowOld ? ({REFUSAL}) !== '' \
             : document.readyState === 'complete' && ({ready}))()"
        ),
    )
    .await;
    let refused = page
        .eval(&format!("window.__flowOld ? ({REFUSAL}) : ''"))
        .await
        .expect("eval");
    assert_eq!(refused, json!(""), "{what}: the form was refused");
}

/// `document.querySelector(selector).textContent.includes(text)`, as a script.
fn includes(selector: &str, text: &str) -> String {
    format!(
        "(() => {{ const e = document.querySelector({}); return !!e && e.textContent.includes({}); }})()",
        json!(selector),
        json!(text)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_installer_commissions_a_room_through_the_console() {
    let floor = Floor::start().await;
    let shots = artifacts_dir("console-flow");
    let browser = Browser::launch_trusting(&floor.cert_pem())
        .await
        .expect("chromium starts");
    let page = browser.page(1366, 900).await.expect("a laptop page");
    // Only to read what the pages did.
    let reader = Api::installer(&floor.running);

    // 1. First visit: the console asks for the setup code and the first account.
    page.goto(&floor.url("/?lang=en"))
        .await
        .expect("the console loads");
    wait_js(
        &page,
        "the setup page",
        "location.pathname === '/setup' && !!document.querySelector('form[action=\"/setup\"]')",
    )
    .await;
    page.fill("input[name=code]", &setup_code(&floor.data))
        .await
        .expect("code");
    page.fill("input[name=name]", INSTALLER)
        .await
        .expect("name");
    page.fill("input[name=password]", PASSWORD)
        .await
        .expect("password");
    page.fill("input[name=repeat]", PASSWORD)
        .await
        .expect("repeat");
    page.screenshot(&shots.join("01-setup.png"))
        .await
        .expect("screenshot");
    page.click_and_wait("form[action=\"/setup\"] button[type=submit]")
        .await
        .expect("setup submitted");
    wait_js(
        &page,
        "signed in on the floor page",
        "location.pathname === '/' && !!document.querySelector('#room-r1') \
         && document.querySelector('header .who').textContent.includes('ines')",
    )
    .await;
    page.screenshot(&shots.join("02-floor.png"))
        .await
        .expect("screenshot");

    // 2. A Modbus TCP device at the simulator, then its points, on its own page.
    page.goto(&floor.url("/devices")).await.expect("devices");
    let add = "form[action=\"/devices\"]";
    page.fill(&format!("{add} input[name=id]"), "lights")
        .await
        .expect("id");
    page.fill(&format!("{add} input[name=name]"), "Light module")
        .await
        .expect("name");
    choose(&page, &format!("{add} select[name=protocol]"), "bacnet").await;
    wait_js(
        &page,
        "the BACnet fields for BACnet",
        "document.querySelector('form[action=\"/devices\"] [name=host]').closest('fieldset').disabled",
    )
    .await;
    choose(&page, &format!("{add} select[name=protocol]"), "modbus-tcp").await;
    wait_js(
        &page,
        "the Modbus TCP fields for Modbus TCP",
        "!document.querySelector('form[action=\"/devices\"] [name=host]').closest('fieldset').disabled",
    )
    .await;
    page.fill(&format!("{add} input[name=host]"), "127.0.0.1")
        .await
        .expect("host");
    page.fill(
        &format!("{add} input[name=port]"),
        &floor.lights.addr().port().to_string(),
    )
    .await
    .expect("port");
    page.fill(&format!("{add} input[name=poll]"), "100ms")
        .await
        .expect("poll");
    submit_and_load(
        &page,
        &format!("{add} button[type=submit]"),
        "the device added",
        "location.pathname === '/devices/lights' && !!document.querySelector('form[action=\"/devices/lights/points\"]')",
    )
    .await;

    let points = "form[action=\"/devices/lights/points\"]";
    for (id, name, table, address, kind, unit) in [
        ("relay", "Light relay", "coil", "0", "bool", ""),
        ("level", "Light level", "holding_register", "0", "u16", "%"),
    ] {
        page.fill(&format!("{points} input[name=id]"), id)
            .await
            .expect("id");
        page.fill(&format!("{points} input[name=name]"), name)
            .await
            .expect("name");
        choose(&page, &format!("{points} select[name=table]"), table).await;
        page.fill(&format!("{points} input[name=address]"), address)
            .await
            .expect("address");
        choose(&page, &format!("{points} select[name=type]"), kind).await;
        page.fill(&format!("{points} input[name=unit]"), unit)
            .await
            .expect("unit");
        choose(
            &page,
            &format!("{points} select[name=access]"),
            "read_write",
        )
        .await;
        submit_and_load(
            &page,
            &format!("{points} button[type=submit]"),
            &format!("point {id} added"),
            &format!("!!document.querySelector('tr[data-point-row=\"{id}\"]')"),
        )
        .await;
    }
    assert_eq!(floor.point_ids("lights"), ["relay", "level"]);
    wait_text(
        &page,
        "table[data-device=lights] [data-k=condition]",
        "online",
    )
    .await;
    // A value set at the device arrives on the open page.
    floor.lights.set_holding(0, 25);
    wait_text(&page, "[data-point=\"lights/level\"]", "25 %").await;
    wait_text(&page, "[data-point=\"lights/relay\"]", "false").await;
    page.screenshot(&shots.join("04-device.png"))
        .await
        .expect("screenshot");
    page.goto(&floor.url("/devices")).await.expect("devices");
    wait_text(&page, "tr[data-device=lights] [data-k=condition]", "online").await;
    page.screenshot(&shots.join("03-devices.png"))
        .await
        .expect("screenshot");

    // 3. A CSV point list with one bad row: refused with its line, nothing applied.
    let site_before = floor.site_file(&reader).await;
    page.goto(&floor.url("/site")).await.expect("site page");
    choose(&page, "#csv-form select[name=device]", "lights").await;
    let csv = "id,name,table,address,type,unit,access\n\
               relay,Light relay,coil,0,bool,,read_write\n\
               level,Light level,holding_register,0,u16,%,read_write\n\
               scene,Scene select,holding_register,one,u16,,read_write\n";
    page.fill("#csv-text", csv).await.expect("the CSV");
    page.click("#csv-form button[data-step=check]")
        .await
        .expect("check");
    wait_js(
        &page,
        "the bad row's line number",
        &includes("#csv-form [data-out]", "line 4, column address"),
    )
    .await;
    wait_js(
        &page,
        "nothing applied",
        &includes("#csv-form [data-out]", "1 bad row(s); nothing was applied."),
    )
    .await;
    assert_eq!(
        page.eval("document.querySelector('#csv-form button[data-step=apply]').disabled")
            .await
            .expect("eval"),
        json!(true),
        "a refused list cannot be applied"
    );
    page.screenshot(&shots.join("05-csv-refused.png"))
        .await
        .expect("screenshot");
    assert_eq!(
        floor.site_file(&reader).await,
        site_before,
        "the site is unchanged"
    );
    assert_eq!(floor.point_ids("lights"), ["relay", "level"]);

    // 4. The room's light on the new points.
    page.goto(&floor.url("/rooms/r1")).await.expect("room page");
    choose(&page, "#bindings select[name=light]", "lights/relay").await;
    choose(&page, "#bindings select[name=light_level]", "lights/level").await;
    submit_and_load(
        &page,
        "#bindings button[type=submit]",
        "the bindings saved",
        "document.querySelector('#bindings select[name=light]').value === 'lights/relay'",
    )
    .await;
    let file = floor.site_file(&reader).await;
    assert!(
        file.contains("light = \"lights/relay\"")
            && file.contains("light_level = \"lights/level\""),
        "{file}"
    );
    page.screenshot(&shots.join("06-room.png"))
        .await
        .expect("screenshot");

    // 5. A scene with a wait, tried in the room: the module switches, then dims.
    page.goto(&floor.url("/scenes")).await.expect("scenes page");
    let form = "#add-scene";
    page.fill(&format!("{form} [name=name]"), "present")
        .await
        .expect("name");
    for _ in 0..2 {
        page.click(&format!("{form} [data-add-row]"))
            .await
            .expect("add a row");
    }
    wait_js(
        &page,
        "three step rows",
        "document.querySelectorAll('#add-scene .steps .step-row').length === 3",
    )
    .await;
    for (n, action, value) in [(0, "lights", "40"), (1, "wait", "1s"), (2, "lights", "70")] {
        choose(&page, &format!("{form} [name='steps[{n}].action']"), action).await;
        page.fill(&format!("{form} [name='steps[{n}].value']"), value)
            .await
            .expect("value");
    }
    submit_and_load(
        &page,
        &format!("{form} button[type=submit]"),
        "the scene saved",
        "!!document.querySelector('#scene-present form.try-now')",
    )
    .await;
    let writes_before = floor.lights.writes().len();
    choose(&page, "#scene-present form.try-now select[name=room]", "r1").await;
    page.click("#scene-present form.try-now button[type=submit]")
        .await
        .expect("try now");
    wait_js(
        &page,
        "the run's answer",
        &includes(
            "#scene-present form.try-now .form-result",
            "Scene 'present' runs in Boardroom",
        ),
    )
    .await;
    wait_for("the module on at 70 % after the wait", WAIT, || {
        floor.lights.coil(0) && floor.lights.holding(0) == 70
    })
    .await;
    let writes: Vec<(ModbusTable, u16, Vec<u16>)> = floor.lights.writes()[writes_before..]
        .iter()
        .map(|w| (w.table, w.address, w.values.clone()))
        .collect();
    let at = |want: &(ModbusTable, u16, Vec<u16>)| {
        writes
            .iter()
            .position(|w| w == want)
            .unwrap_or_else(|| panic!("{want:?} written; the module got {writes:?}"))
    };
    let on = at(&(ModbusTable::Coil, 0, vec![1]));
    let forty = at(&(ModbusTable::HoldingRegister, 0, vec![40]));
    let seventy = at(&(ModbusTable::HoldingRegister, 0, vec![70]));
    assert!(
        on < seventy && forty < seventy,
        "the first step before the one after the wait: {writes:?}"
    );
    page.screenshot(&shots.join("07-scenes.png"))
        .await
        .expect("screenshot");

    // 6. The door panel: a link for r1's tablet, a meeting booked now, checked in there.
    page.goto(&floor.url("/rooms/r1")).await.expect("room page");
    let tokens = "form[action=\"/rooms/r1/tokens\"]";
    page.fill(&format!("{tokens} input[name=label]"), "Boardroom door")
        .await
        .expect("label");
    page.click(&format!("{tokens} button[type=submit]"))
        .await
        .expect("create the link");
    wait_js(
        &page,
        "the panel link",
        &includes(&format!("{tokens} .token-link"), "/panel/r1?token="),
    )
    .await;
    let shown = page
        .text(&format!("{tokens} .token-link"))
        .await
        .expect("text")
        .unwrap_or_default();
    let link = shown
        .split_whitespace()
        .find(|w| w.starts_with("https://") && w.contains("/panel/r1?token="))
        .unwrap_or_else(|| panic!("a link in {shown:?}"))
        .to_owned();
    assert!(
        link.starts_with(&floor.url("/panel/r1?token=")),
        "the link names this gateway: {link}"
    );
    page.fill("#add-booking input[name=subject]", "Commissioning check")
        .await
        .expect("subject");
    page.fill("#add-booking input[name=minutes]", "30")
        .await
        .expect("minutes");
    submit_and_load(
        &page,
        "#add-booking button[type=submit]",
        "the booking added",
        &includes(".bookings tbody", "Commissioning check"),
    )
    .await;

    let tablet = browser.page(1280, 800).await.expect("a tablet");
    tablet.goto(&link).await.expect("the panel loads");
    wait_text(&tablet, "#current-subject", "Commissioning check").await;
    wait_js(
        &tablet,
        "the check-in button",
        "(() => { const b = document.querySelector('#checkin'); \
         return !!b && !b.hidden && !b.disabled && b.getClientRects().length > 0; })()",
    )
    .await;
    tablet.click("#checkin").await.expect("check in");
    wait_js(
        &tablet,
        "the check-in's answer",
        &includes("#result", "Checked in"),
    )
    .await;
    wait_state(&tablet, "in_meeting").await;
    wait_text(&tablet, "#state", "In meeting").await;
    wait_text(&tablet, "#current-note", "Checked in").await;
    tablet
        .screenshot(&shots.join("08-panel.png"))
        .await
        .expect("screenshot");
    let r1 = floor.room("r1");
    assert_eq!(r1.state, "in_meeting", "{r1:?}");
    assert!(
        r1.current
            .as_ref()
            .is_some_and(|b| b.subject == "Commissioning check" && b.checked_in),
        "{r1:?}"
    );

    // 7. The audit log names the installer for every change; the settings page.
    page.goto(&floor.url("/audit")).await.expect("audit page");
    // (action, target, part of the detail); the first account is made by the setup code.
    for (action, target, detail) in [
        ("setup.done", INSTALLER, ""),
        ("device.add", "lights", "lights"),
        ("point.add", "lights/relay", "relay"),
        ("point.add", "lights/level", "level"),
        ("room.bindings", "r1", "lights/relay"),
        ("scene.add", "present", "present"),
        ("scene.run", "r1/present", ""),
        ("token.create", "", "Boardroom door"),
        ("booking.add", "r1", "Commissioning check"),
    ] {
        let script = format!(
            "[...document.querySelectorAll('#audit tr[data-action]')].some(tr => \
             tr.dataset.action === {action} && tr.cells[1].textContent === {who} \
             && tr.cells[4].textContent.includes({target}) && tr.cells[5].textContent.includes({detail}))",
            action = json!(action),
            who = json!(if action == "setup.done" {
                "setup"
            } else {
                INSTALLER
            }),
            target = json!(target),
            detail = json!(detail),
        );
        wait_js(&page, &format!("{action} {target} by {INSTALLER}"), &script).await;
    }
    assert_eq!(
        page.eval("document.querySelectorAll('#audit tr[data-action=\"points.import\"]').length")
            .await
            .expect("eval"),
        json!(0),
        "the refused import changed nothing"
    );
    page.screenshot(&shots.join("09-audit.png"))
        .await
        .expect("screenshot");
    page.goto(&floor.url("/settings"))
        .await
        .expect("settings page");
    wait_js(
        &page,
        "the settings page",
        "document.querySelector('main h1').textContent === 'Settings'",
    )
    .await;
    page.screenshot(&shots.join("10-settings.png"))
        .await
        .expect("screenshot");

    browser.close().await;
    floor.stop().await;
}
