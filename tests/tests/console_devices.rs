//! The installer console's device and discovery pages on a running gateway, against the
//! simulators over real sockets: a device and its points added through the forms (refusals
//! on the right field), live values on its page and over SSE, test reads and writes that reach
//! the simulator (audited), a point and a bus added and removed, a BACnet Who-Is, a device's
//! objects browsed and imported as points in one change, a Modbus unit scan; an operator is
//! refused everywhere.

use std::net::SocketAddr;
use std::time::Duration;

use drivers::bacnet::sim::{BacnetSim, BacnetSimConfig};
use drivers::sim::{SimDevice, SimKind};
use gateway::app::{Running, WebConfig};
use gateway::clock::{Clock, ManualClock};
use gateway::console::auth::{Caller, Role};
use roomgate_tests::wait_for;
use scenes::Timestamp;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// 2026-03-02 08:00 UTC.
const START: i64 = 1_772_438_400_000;
const WAIT: Duration = Duration::from_secs(15);
const PASSWORD: &str = "correct horse battery staple";

// ---------------------------------------------------------------------------------------
// A small HTTP/1.1 client with cookies and headers (independent of the shared helper).
// ---------------------------------------------------------------------------------------

#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    text: String,
    json: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim().to_ascii_lowercase() == name).then(|| v.trim())
        })
    }

    /// The message of a refused field.
    fn field_error(&self, field: &str) -> Option<String> {
        self.json["errors"].as_array()?.iter().find_map(|e| {
            (e["field"] == field).then(|| e["message"].as_str().unwrap_or("").to_owned())
        })
    }
}

/// Who sends a request: a session cookie and its CSRF token, or nobody.
#[derive(Debug, Clone, Default)]
struct Session {
    cookie: Option<String>,
    csrf: Option<String>,
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
    let pairs: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect();
    pairs.join("&")
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

fn request_head(
    addr: SocketAddr,
    method: &str,
    path: &str,
    who: &Session,
    accept: &str,
    body: &str,
) -> String {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: {accept}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(c) = &who.cookie {
        head.push_str(&format!("Cookie: {c}\r\n"));
    }
    if let Some(t) = &who.csrf {
        head.push_str(&format!("X-CSRF-Token: {t}\r\n"));
    }
    head.push_str("\r\n");
    head.push_str(body);
    head
}

async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    who: &Session,
    accept: &str,
    body: &str,
) -> Answer {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let req = request_head(addr, method, path, who, accept, body);
    stream.write_all(req.as_bytes()).await.expect("send");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut raw))
        .await
        .unwrap_or_else(|_| panic!("{method} {path}: no answer within 60 s"))
        .expect("read");
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, text) = raw.split_once("\r\n\r\n").expect("HTTP head");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let text = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(text)
    } else {
        text.to_owned()
    };
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Answer {
        status,
        head: head.to_owned(),
        text,
        json,
    }
}

async fn page(addr: SocketAddr, who: &Session, path: &str) -> Answer {
    send(addr, "GET", path, who, "text/html", "").await
}

async fn api(addr: SocketAddr, who: &Session, path: &str) -> Answer {
    send(addr, "GET", path, who, "application/json", "").await
}

async fn post(addr: SocketAddr, who: &Session, path: &str, fields: &[(&str, &str)]) -> Answer {
    send(addr, "POST", path, who, "application/json", &form(fields)).await
}

/// The first event of an SSE stream, as JSON.
async fn first_event(addr: SocketAddr, who: &Session, path: &str) -> Value {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let req = request_head(addr, "GET", path, who, "text/event-stream", "");
    stream.write_all(req.as_bytes()).await.expect("send");
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            let n = stream.read(&mut buf).await.expect("read");
            assert!(n > 0, "the stream ended before an event");
            raw.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&raw).into_owned();
            if let Some(data) = text
                .split("\n\n")
                .filter(|block| text.contains("\r\n\r\n") && block.contains("data:"))
                .find_map(|block| {
                    let data: Vec<&str> = block
                        .lines()
                        .filter_map(|l| l.strip_prefix("data:"))
                        .map(str::trim_start)
                        .collect();
                    serde_json::from_str::<Value>(&data.join("\n")).ok()
                })
            {
                return data;
            }
        }
    };
    tokio::time::timeout(WAIT, read)
        .await
        .expect("an event within the wait")
}

fn csrf_of(html: &str) -> String {
    let at = html
        .find("<meta name=\"csrf\" content=\"")
        .expect("the page has the CSRF meta tag");
    let rest = &html[at + "<meta name=\"csrf\" content=\"".len()..];
    rest[..rest.find('"').expect("end of the token")].to_owned()
}

fn session_cookie(answer: &Answer) -> String {
    let set = answer.header("set-cookie").expect("a session cookie");
    set.split(';').next().expect("name=value").to_owned()
}

// ---------------------------------------------------------------------------------------
// The floor
// ---------------------------------------------------------------------------------------

struct Floor {
    running: Running,
    data: std::path::PathBuf,
    site: std::path::PathBuf,
    lights: SimDevice,
    gateway_sim: SimDevice,
    bac_site: BacnetSim,
    bac_new: BacnetSim,
    _dir: tempfile::TempDir,
}

impl Floor {
    async fn start() -> Floor {
        let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let lights = SimDevice::spawn(SimKind::LightModule, any)
            .await
            .expect("light sim");
        lights.set_units(Some(vec![1]));
        // A serial-to-Ethernet gateway with units 1 and 4, none of them on the site yet.
        let gateway_sim = SimDevice::spawn(SimKind::SocketModule, any)
            .await
            .expect("socket sim");
        gateway_sim.set_units(Some(vec![1, 4]));
        let bac_site = BacnetSim::start(BacnetSimConfig::loopback(4242))
            .await
            .expect("BACnet simulator on the site");
        let bac_new = BacnetSim::start(BacnetSimConfig::loopback(4243))
            .await
            .expect("BACnet simulator not on the site");
        let dir = tempfile::tempdir().expect("temp dir");
        let site = dir.path().join("site.toml");
        std::fs::write(
            &site,
            format!(
                r#"
[site]
name = "Console floor"
timezone = "UTC"

[bacnet]
interface = "127.0.0.1"
port = 0
broadcast = "127.0.0.1"
apdu_timeout = "300ms"

[[devices]]
id = "fcu"
protocol = "bacnet"
instance = 4242
address = "{bac}"
poll = "100ms"
cov = "off"
points = [{{ id = "temperature", object = "analog-input:1", unit = "°C" }}]

[[rooms]]
id = "r1"
name = "Room one"
kind = "bookable"
bindings = {{ temperature = "fcu/temperature" }}
"#,
                bac = bac_site.addr()
            ),
        )
        .expect("site file");
        let data = dir.path().join("data");
        let running = gateway::app::start_from_file(
            &site,
            &data,
            WebConfig::plain(([127, 0, 0, 1], 0).into()),
            Clock::Manual(ManualClock::new(Timestamp::from_millis(START))),
        )
        .await
        .expect("gateway starts");
        Floor {
            running,
            data,
            site,
            lights,
            gateway_sim,
            bac_site,
            bac_new,
            _dir: dir,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.running.addr
    }

    /// Signs the installer in through the real `/setup` form.
    async fn installer(&self) -> Session {
        let code = std::fs::read_to_string(self.data.join("setup-code")).expect("setup code");
        let answer = send(
            self.addr(),
            "POST",
            "/setup",
            &Session::default(),
            "text/html",
            &form(&[
                ("code", code.trim()),
                ("name", "ines"),
                ("password", PASSWORD),
                ("repeat", PASSWORD),
            ]),
        )
        .await;
        assert_eq!(answer.status, 303, "setup: {}", answer.text);
        let cookie = session_cookie(&answer);
        let mut who = Session {
            cookie: Some(cookie),
            csrf: None,
        };
        let devices = page(self.addr(), &who, "/devices").await;
        assert_eq!(devices.status, 200, "{}", devices.text);
        who.csrf = Some(csrf_of(&devices.text));
        who
    }

    /// An operator account, signed in through `/login`, with its session's CSRF token (so a
    /// refusal is the role's, not the CSRF check's).
    async fn operator(&self) -> Session {
        let accounts = &self.running.console.accounts;
        accounts
            .add_local(START, "otto", Role::Operator, PASSWORD)
            .expect("operator account");
        let answer = send(
            self.addr(),
            "POST",
            "/login",
            &Session::default(),
            "text/html",
            &form(&[("name", "otto"), ("password", PASSWORD), ("next", "/")]),
        )
        .await;
        assert_eq!(answer.status, 303, "login: {}", answer.text);
        let cookie = session_cookie(&answer);
        let value = cookie.split_once('=').expect("name=value").1;
        let csrf = match accounts.session(START, value).expect("sessions") {
            Some(Caller::Session { csrf, .. }) => csrf,
            other => panic!("an operator session, got {other:?}"),
        };
        Session {
            cookie: Some(cookie),
            csrf: Some(csrf),
        }
    }

    async fn site_text(&self, who: &Session) -> String {
        let answer = api(self.addr(), who, "/api/site").await;
        assert_eq!(answer.status, 200, "{}", answer.text);
        answer.text
    }

    fn device(&self, id: &str) -> Option<gateway::api::DeviceDto> {
        let snap = self.running.handle().snapshot();
        snap.devices.iter().find(|d| d.id == id).cloned()
    }

    fn point_value(&self, device: &str, point: &str) -> Value {
        self.device(device)
            .and_then(|d| d.points.into_iter().find(|p| p.id == point))
            .map_or(Value::Null, |p| p.value)
    }

    async fn stop(self) {
        self.running.shutdown().await;
        self.lights.shutdown();
        self.gateway_sim.shutdown();
        self.bac_site.stop().await.expect("stop");
        self.bac_new.stop().await.expect("stop");
    }
}

/// `name="object[N]" value="OBJECT"`: the row N of an object in the import form.
fn object_row(html: &str, object: &str) -> String {
    let needle = format!("\" value=\"{object}\">");
    let at = html
        .find(&needle)
        .unwrap_or_else(|| panic!("{object} in the object list"));
    let before = &html[..at];
    let start = before.rfind("name=\"object[").expect("the row's field") + "name=\"object[".len();
    before[start..]
        .strip_suffix(']')
        .expect("row number")
        .to_owned()
}

fn audit_actions(floor: &Floor) -> Vec<(String, String, String)> {
    floor
        .running
        .console
        .accounts
        .audit_log(0, 1000)
        .expect("audit log")
        .into_iter()
        .map(|a| (a.action, a.target, a.detail))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_are_added_tested_and_discovered_through_the_console() {
    let floor = Floor::start().await;
    let addr = floor.addr();
    // Nobody signed in: the page sends the browser to set up the first account.
    let nobody = page(addr, &Session::default(), "/devices").await;
    assert_eq!(nobody.status, 303, "{}", nobody.text);
    assert_eq!(nobody.header("location"), Some("/setup"));
    let me = floor.installer().await;
    let lights_port = floor.lights.addr().port().to_string();

    // The list shows the site's device.
    let list = page(addr, &me, "/devices").await;
    assert!(
        list.text.contains("<tr data-device=\"fcu\">"),
        "{}",
        list.text
    );
    assert!(list.text.contains("BACnet device 4242"), "{}", list.text);

    // Refusals: a bad port, a duplicate id; nothing changes.
    let before = floor.site_text(&me).await;
    let answer = post(
        addr,
        &me,
        "/devices",
        &[
            ("id", "lights"),
            ("protocol", "modbus-tcp"),
            ("host", "127.0.0.1"),
            ("port", "70000"),
        ],
    )
    .await;
    assert_eq!(answer.status, 422, "{}", answer.text);
    let why = answer.field_error("port").expect("an error on port");
    assert!(why.contains("70000"), "{why}");
    let answer = post(
        addr,
        &me,
        "/devices",
        &[
            ("id", "fcu"),
            ("protocol", "modbus-tcp"),
            ("host", "127.0.0.1"),
            ("port", &lights_port),
        ],
    )
    .await;
    assert_eq!(answer.status, 422, "{}", answer.text);
    let why = answer.field_error("id").expect("an error on id");
    assert!(why.contains("already a device 'fcu'"), "{why}");
    assert_eq!(
        floor.site_text(&me).await,
        before,
        "refusals change nothing"
    );

    // A Modbus TCP device with two points, through the forms.
    let answer = post(
        addr,
        &me,
        "/devices",
        &[
            ("id", "lights"),
            ("name", "Light module"),
            ("protocol", "modbus-tcp"),
            ("host", "127.0.0.1"),
            ("port", &lights_port),
            ("poll", "50ms"),
        ],
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.json["redirect"], "/devices/lights");
    let answer = post(
        addr,
        &me,
        "/devices/lights/points",
        &[
            ("id", "dim"),
            ("table", "holding_register"),
            ("address", "0"),
            ("type", "u99"),
        ],
    )
    .await;
    assert_eq!(answer.status, 422, "{}", answer.text);
    assert!(answer.field_error("type").is_some(), "{}", answer.text);
    for point in [
        [
            ("id", "dim"),
            ("table", "holding_register"),
            ("address", "0"),
            ("type", "u16"),
            ("unit", "%"),
            ("access", "read_write"),
        ],
        [
            ("id", "relay"),
            ("table", "coil"),
            ("address", "0"),
            ("type", "bool"),
            ("unit", ""),
            ("access", "read_write"),
        ],
    ] {
        let answer = post(addr, &me, "/devices/lights/points", &point).await;
        assert_eq!(answer.status, 200, "{}", answer.text);
        assert_eq!(answer.json["reload"], true);
    }
    let text = floor.site_text(&me).await;
    assert!(
        text.contains("id = \"lights\"") && text.contains("id = \"dim\""),
        "{text}"
    );
    let on_disk = std::fs::read_to_string(&floor.site).expect("site file");
    assert_eq!(text, on_disk, "the site file follows the running site");

    // It comes online and its page shows the polled values.
    floor.lights.set_holding(0, 37);
    wait_for("lights online with dim = 37", WAIT, || {
        floor.device("lights").is_some_and(|d| d.state == "online")
            && floor.point_value("lights", "dim") == json!(37)
    })
    .await;
    let device_page = page(addr, &me, "/devices/lights").await;
    assert_eq!(device_page.status, 200);
    assert!(
        device_page
            .text
            .contains("data-point=\"lights/dim\">37 %</td>"),
        "{}",
        device_page.text
    );
    assert!(device_page.text.contains("href=\"/site#csv\""));
    let live = api(addr, &me, "/api/console/devices").await;
    let lights = live.json["devices"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["id"] == "lights"))
        .cloned()
        .expect("lights in the live view");
    assert_eq!(lights["condition"], "online");
    assert_eq!(lights["points"][0]["value"], 37);
    let event = first_event(addr, &me, "/api/console/devices/events").await;
    let streamed = event["devices"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["id"] == "lights"))
        .cloned()
        .expect("lights in the streamed view");
    assert_eq!(streamed["points"][0]["value"], 37, "{event}");
    assert_eq!(event["words"]["online"], "online");

    // Test write: the simulator's register changes and the answer reads it back.
    let answer = post(
        addr,
        &me,
        "/devices/lights/points/dim/write",
        &[("value", "55")],
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(floor.lights.holding(0), 55);
    assert_eq!(answer.json["answer"]["written"], 55);
    assert_eq!(answer.json["answer"]["read_back"], 55);
    let message = answer.json["message"].as_str().expect("message");
    assert!(message.contains("read back 55 %"), "{message}");
    // Refusals: text that is no value (on the field), and the device's own refusal.
    let answer = post(
        addr,
        &me,
        "/devices/lights/points/dim/write",
        &[("value", "bright")],
    )
    .await;
    assert_eq!(answer.status, 422, "{}", answer.text);
    let why = answer.field_error("value").expect("an error on value");
    assert!(why.contains("'bright' is not a number"), "{why}");
    let answer = post(
        addr,
        &me,
        "/devices/lights/points/dim/write",
        &[("value", "150")],
    )
    .await;
    assert_eq!(answer.status, 409, "{}", answer.text);
    let why = answer.json["error"].as_str().expect("the device's refusal");
    assert!(why.contains("exception 03"), "{why}");
    assert_eq!(floor.lights.holding(0), 55);
    let writes: Vec<(String, String, String)> = audit_actions(&floor)
        .into_iter()
        .filter(|(a, _, _)| a == "device.test_write")
        .collect();
    assert_eq!(writes.len(), 3, "{writes:?}");
    assert!(
        writes.iter().all(|(_, target, _)| target == "lights/dim")
            && writes.iter().any(|(_, _, d)| d.contains("read back 55"))
            && writes
                .iter()
                .filter(|(_, _, d)| d.contains("refused"))
                .count()
                == 2,
        "{writes:?}"
    );

    // Test read asks the device now.
    floor.lights.set_holding(0, 42);
    let answer = post(addr, &me, "/devices/lights/points/dim/read", &[]).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.json["answer"]["value"], 42);
    let message = answer.json["message"].as_str().expect("message");
    assert!(message.contains("answered 42 %"), "{message}");
    assert!(
        audit_actions(&floor)
            .iter()
            .any(|(a, t, _)| a == "device.test_read" && t == "lights/dim")
    );

    // A point removed; a device still used by a room is not.
    let answer = post(addr, &me, "/devices/lights/points/relay/remove", &[]).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let text = floor.site_text(&me).await;
    assert!(
        text.contains("id = \"dim\"") && !text.contains("id = \"relay\""),
        "{text}"
    );
    let answer = post(addr, &me, "/devices/fcu/remove", &[]).await;
    assert_eq!(answer.status, 422, "{}", answer.text);
    let why = answer.json["error"].as_str().expect("refusal");
    assert!(
        why.contains("still in use") && why.contains("room r1"),
        "{why}"
    );

    // A bus added, changed, shown and removed; one without a port is refused.
    let answer = post(addr, &me, "/buses", &[("id", "rs485-9")]).await;
    assert_eq!(answer.status, 422, "{}", answer.text);
    assert!(
        answer.field_error("serial_port").is_some(),
        "{}",
        answer.text
    );
    let answer = post(
        addr,
        &me,
        "/buses",
        &[
            ("id", "rs485-9"),
            ("serial_port", "/dev/ttyRG9"),
            ("baud", "9600"),
        ],
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let answer = post(
        addr,
        &me,
        "/buses/rs485-9",
        &[
            ("id", "rs485-9"),
            ("serial_port", "/dev/ttyRG9"),
            ("baud", "19200"),
        ],
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert!(floor.site_text(&me).await.contains("baud = 19200"));
    let list = page(addr, &me, "/devices").await;
    assert!(
        list.text.contains("<table data-bus=\"rs485-9\">") && list.text.contains("/dev/ttyRG9"),
        "{}",
        list.text
    );
    let answer = post(addr, &me, "/buses/rs485-9/remove", &[]).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert!(!floor.site_text(&me).await.contains("rs485-9"));

    // BACnet: Who-Is finds the controller that is not on the site yet.
    let bac_new = floor.bac_new.addr().to_string();
    let found = page(
        addr,
        &me,
        &format!("/discovery?whois=1&target={}&wait=0.5", encode(&bac_new)),
    )
    .await;
    assert_eq!(found.status, 200, "{}", found.text);
    assert!(
        found.text.contains("<tr data-instance=\"4243\">")
            && found.text.contains("not on the site"),
        "{}",
        found.text
    );
    let known = page(
        addr,
        &me,
        &format!(
            "/discovery?whois=1&target={}&wait=0.5",
            encode(&floor.bac_site.addr().to_string())
        ),
    )
    .await;
    assert!(
        known.text.contains("<a href=\"/devices/fcu\">fcu</a>"),
        "{}",
        known.text
    );
    let bad = page(addr, &me, "/discovery?whois=1&target=nowhere&wait=0.5").await;
    assert_eq!(bad.status, 422);
    assert!(bad.text.contains("is not an IPv4 address"), "{}", bad.text);

    // Its objects, and two of them imported as the points of a new device.
    let objects = page(
        addr,
        &me,
        &format!("/discovery?browse=4243&address={}", encode(&bac_new)),
    )
    .await;
    assert_eq!(objects.status, 200, "{}", objects.text);
    for object in ["analog-input:1", "analog-value:1", "multi-state-value:1"] {
        assert!(
            objects
                .text
                .contains(&format!("<tr data-object=\"{object}\">")),
            "{object}: {}",
            objects.text
        );
    }
    let t = object_row(&objects.text, "analog-input:1");
    let s = object_row(&objects.text, "analog-value:1");
    let import = |into: &'static str, id: &'static str| {
        let (t, s) = (t.clone(), s.clone());
        let bac_new = bac_new.clone();
        move || -> Vec<(String, String)> {
            vec![
                ("into".into(), into.into()),
                ("id".into(), id.into()),
                ("name".into(), "Second controller".into()),
                ("instance".into(), "4243".into()),
                ("address".into(), bac_new.clone()),
                (format!("pick[{t}]"), "on".into()),
                (format!("object[{t}]"), "analog-input:1".into()),
                (format!("id[{t}]"), "temperature".into()),
                (format!("access[{t}]"), "read".into()),
                (format!("unit[{t}]"), "°C".into()),
                (format!("pick[{s}]"), "on".into()),
                (format!("object[{s}]"), "analog-value:1".into()),
                (format!("id[{s}]"), "setpoint".into()),
                (format!("access[{s}]"), "read_write".into()),
            ]
        }
    };
    let fields = import("", "fcu")();
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (&**k, &**v)).collect();
    let answer = post(addr, &me, "/discovery/import", &fields).await;
    assert_eq!(answer.status, 422, "{}", answer.text);
    assert!(answer.field_error("id").is_some(), "{}", answer.text);
    let fields = import("", "fcu2")();
    let mut fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (&**k, &**v)).collect();
    // A row that is not picked is not imported.
    let m = object_row(&objects.text, "multi-state-value:1");
    let skipped = [(format!("object[{m}]"), format!("id[{m}]"))];
    fields.push((&skipped[0].0, "multi-state-value:1"));
    fields.push((&skipped[0].1, "mode"));
    let answer = post(addr, &me, "/discovery/import", &fields).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.json["redirect"], "/devices/fcu2");
    let text = floor.site_text(&me).await;
    let fcu2 = &text[text.find("id = \"fcu2\"").expect("fcu2 in the site")..];
    assert!(
        fcu2.contains("object = \"analog-input:1\"")
            && fcu2.contains("id = \"setpoint\"")
            && !fcu2.contains("multi-state-value:1"),
        "{text}"
    );
    wait_for("fcu2 online with its temperature", WAIT, || {
        floor.device("fcu2").is_some_and(|d| d.state == "online")
            && floor.point_value("fcu2", "temperature") == json!(21.5)
    })
    .await;
    assert!(
        audit_actions(&floor)
            .iter()
            .any(|(a, t, _)| a == "discovery.import" && t == "fcu2")
    );

    // Modbus: a unit scan of the TCP address of a serial gateway finds its units.
    let scan = page(
        addr,
        &me,
        &format!(
            "/discovery?scan=1&via=tcp&host=127.0.0.1&port={}&from=1&to=5&table=coil&probe_address=0&timeout_ms=150",
            floor.gateway_sim.addr().port()
        ),
    )
    .await;
    assert_eq!(scan.status, 200, "{}", scan.text);
    assert!(
        scan.text.contains("<tr data-unit=\"1\">")
            && scan.text.contains("<tr data-unit=\"4\">")
            && !scan.text.contains("<tr data-unit=\"2\">"),
        "{}",
        scan.text
    );
    assert!(
        scan.text.contains("No answer from: 2–3, 5"),
        "{}",
        scan.text
    );
    let add = format!(
        "/devices?protocol=modbus-tcp&amp;host=127.0.0.1&amp;port={}&amp;unit=4#add",
        floor.gateway_sim.addr().port()
    );
    assert!(scan.text.contains(&add), "{}", scan.text);
    // The link pre-fills the add-device form.
    let prefilled = page(addr, &me, &add.replace("&amp;", "&").replace("#add", "")).await;
    assert!(
        prefilled.text.contains(&format!(
            "<input name=\"port\" value=\"{}\">",
            floor.gateway_sim.addr().port()
        )) && prefilled.text.contains("<input name=\"unit\" value=\"4\">"),
        "{}",
        prefilled.text
    );
    // The site's own device is named at its unit.
    let scan = page(
        addr,
        &me,
        &format!(
            "/discovery?scan=1&via=tcp&host=127.0.0.1&port={lights_port}&from=1&to=2&timeout_ms=150"
        ),
    )
    .await;
    assert!(
        scan.text.contains("<a href=\"/devices/lights\">lights</a>"),
        "{}",
        scan.text
    );

    // An operator is refused everywhere, with a valid CSRF token.
    let op = floor.operator().await;
    let holding = floor.lights.holding(0);
    for path in [
        "/devices",
        "/devices/lights",
        "/discovery",
        "/discovery?whois=1&wait=0.1",
        "/api/console/devices",
        "/api/console/devices/events",
    ] {
        let answer = api(addr, &op, path).await;
        assert_eq!(answer.status, 403, "{path}: {}", answer.text);
        assert!(answer.text.contains("installer"), "{path}: {}", answer.text);
    }
    let answer = page(addr, &op, "/devices").await;
    assert_eq!(answer.status, 403, "{}", answer.text);
    let nobody = page(addr, &Session::default(), "/devices/lights").await;
    assert_eq!(nobody.status, 303, "{}", nobody.text);
    assert_eq!(
        nobody.header("location"),
        Some("/login?next=/devices/lights")
    );
    let before = floor.site_text(&me).await;
    let posts: [(&str, Vec<(&str, &str)>); 12] = [
        (
            "/devices",
            vec![
                ("id", "x"),
                ("protocol", "modbus-tcp"),
                ("host", "127.0.0.1"),
            ],
        ),
        ("/devices/lights", vec![("id", "lights2")]),
        ("/devices/lights/remove", vec![]),
        (
            "/devices/lights/points",
            vec![
                ("id", "p"),
                ("table", "coil"),
                ("address", "1"),
                ("type", "bool"),
            ],
        ),
        ("/devices/lights/points/dim", vec![("id", "dim2")]),
        ("/devices/lights/points/dim/remove", vec![]),
        ("/devices/lights/points/dim/read", vec![]),
        ("/devices/lights/points/dim/write", vec![("value", "10")]),
        ("/buses", vec![("id", "b"), ("serial_port", "/dev/x")]),
        ("/buses/b", vec![("id", "b"), ("serial_port", "/dev/x")]),
        ("/buses/b/remove", vec![]),
        ("/discovery/import", vec![("into", "fcu")]),
    ];
    for (path, fields) in &posts {
        let answer = post(addr, &op, path, fields).await;
        assert_eq!(answer.status, 403, "{path}: {}", answer.text);
        assert!(answer.text.contains("installer"), "{path}: {}", answer.text);
    }
    assert_eq!(
        floor.lights.holding(0),
        holding,
        "no write from an operator"
    );
    assert_eq!(
        floor.site_text(&me).await,
        before,
        "no change from an operator"
    );
    let tests: Vec<_> = audit_actions(&floor)
        .into_iter()
        .filter(|(a, _, _)| a.starts_with("device.test"))
        .collect();
    assert_eq!(tests.len(), 4, "{tests:?}");

    floor.stop().await;
}

/// The pages' script in Chromium: the add-device form switches its fields with the protocol,
/// values arrive live, and the test write and read answer in the page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_device_pages_work_in_a_browser() {
    use roomgate_tests::browser::{Browser, artifacts_dir};

    let floor = Floor::start().await;
    let addr = floor.addr();
    let me = floor.installer().await;
    let port = floor.lights.addr().port().to_string();
    let answer = post(
        addr,
        &me,
        "/devices",
        &[
            ("id", "lights"),
            ("protocol", "modbus-tcp"),
            ("host", "127.0.0.1"),
            ("port", &port),
            ("poll", "50ms"),
        ],
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let answer = post(
        addr,
        &me,
        "/devices/lights/points",
        &[
            ("id", "dim"),
            ("table", "holding_register"),
            ("address", "0"),
            ("type", "u16"),
            ("unit", "%"),
            ("access", "read_write"),
        ],
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    floor.lights.set_holding(0, 37);
    wait_for("dim = 37", WAIT, || {
        floor.point_value("lights", "dim") == json!(37)
    })
    .await;

    let browser = Browser::launch().await.expect("chromium");
    let tab = browser.page(1280, 900).await.expect("a tab");
    let cookie = me.cookie.clone().expect("cookie");
    let (name, value) = cookie.split_once('=').expect("name=value");
    tab.call(
        "Network.setCookie",
        json!({ "name": name, "value": value, "url": format!("http://{addr}/") }),
    )
    .await
    .expect("session cookie");
    let shots = artifacts_dir("console-devices");

    // The add form shows the chosen protocol's fields only.
    tab.goto(&format!("http://{addr}/devices"))
        .await
        .expect("devices page");
    let form = "form[action=\"/devices\"]";
    let disabled = |field: &str| {
        format!(
            "document.querySelector('{form} [name={field}]').closest('fieldset').disabled",
            form = form.replace('"', "\\\"")
        )
    };
    assert_eq!(
        tab.eval(&disabled("host")).await.expect("eval"),
        json!(false)
    );
    assert_eq!(
        tab.eval(&disabled("instance")).await.expect("eval"),
        json!(true)
    );
    tab.fill(&format!("{form} select[name=protocol]"), "bacnet")
        .await
        .expect("protocol");
    assert_eq!(
        tab.eval(&disabled("host")).await.expect("eval"),
        json!(true)
    );
    assert_eq!(
        tab.eval(&disabled("instance")).await.expect("eval"),
        json!(false)
    );
    tab.wait_until(
        "document.querySelector('[data-device=\"lights\"] [data-k=condition]').textContent === 'online'",
        WAIT,
    )
    .await
    .expect("lights online in the list");
    tab.screenshot(&shots.join("devices.png"))
        .await
        .expect("screenshot");

    // The device page: a value that changes at the device changes on the page.
    tab.goto(&format!("http://{addr}/devices/lights"))
        .await
        .expect("device page");
    let cell = "[data-point=\"lights/dim\"]";
    assert_eq!(tab.text(cell).await.expect("text").as_deref(), Some("37 %"));
    floor.lights.set_holding(0, 61);
    tab.wait_until(
        "document.querySelector('[data-point=\"lights/dim\"]').textContent === '61 %'",
        WAIT,
    )
    .await
    .expect("the value follows the device");

    // Test write and test read answer in the page.
    let write = "form[action=\"/devices/lights/points/dim/write\"]";
    tab.fill(&format!("{write} input[name=value]"), "12")
        .await
        .expect("value");
    tab.click(&format!("{write} button[type=submit]"))
        .await
        .expect("write");
    tab.wait_until(
        "document.querySelector('form[action=\"/devices/lights/points/dim/write\"] .form-result').textContent.includes('read back 12 %')",
        WAIT,
    )
    .await
    .expect("the write's answer");
    assert_eq!(floor.lights.holding(0), 12);
    tab.fill(&format!("{write} input[name=value]"), "lots")
        .await
        .expect("value");
    tab.click(&format!("{write} button[type=submit]"))
        .await
        .expect("write");
    tab.wait_until(
        "document.querySelector('form[action=\"/devices/lights/points/dim/write\"] .err[data-for=value]').textContent.includes('not a number')",
        WAIT,
    )
    .await
    .expect("the refusal next to the field");
    tab.click("button[data-post=\"/devices/lights/points/dim/read\"]")
        .await
        .expect("read");
    tab.wait_until(
        "document.getElementById('read-0').textContent.includes('answered 12 %')",
        WAIT,
    )
    .await
    .expect("the read's answer");
    tab.screenshot(&shots.join("device.png"))
        .await
        .expect("screenshot");

    // Discovery: a Who-Is and a device's objects on one page.
    let bac = encode(&floor.bac_new.addr().to_string());
    tab.goto(&format!(
        "http://{addr}/discovery?whois=1&target={bac}&wait=0.3&browse=4243&address={bac}"
    ))
    .await
    .expect("discovery page");
    assert_eq!(
        tab.eval("document.querySelectorAll('#object-list input[type=checkbox]').length > 3")
            .await
            .expect("eval"),
        json!(true)
    );
    tab.screenshot(&shots.join("discovery.png"))
        .await
        .expect("screenshot");

    // In Chinese.
    tab.goto(&format!("http://{addr}/devices/lights?lang=zh-CN"))
        .await
        .expect("device page in Chinese");
    tab.wait_until(
        "document.querySelector('[data-k=condition]').textContent === '在线'",
        WAIT,
    )
    .await
    .expect("state in Chinese");

    browser.close().await;
    floor.stop().await;
}
