//! The installer console's device pages: `/devices` (every device with its state and
//! counters, every RS-485 bus with its traffic and units, live; forms to add a device and to
//! add, change or remove a bus) and `/devices/{id}` (the device's form, its points with their
//! live values, a test read and a test write of each point, the point forms).
//!
//! Live values come over SSE (`/api/console/devices/events`, or polled from
//! `/api/console/devices`), built on the gateway's snapshot watch plus a sample every two
//! seconds (device counters change without a new snapshot). `devices.js` puts them into the
//! page and shows the device form's fields for the chosen protocol. A device is *degraded*
//! when it is online but some of its requests failed within the last ten seconds.
//!
//! Forms post to `site::edit` through [`super::apply_edit`]; the test read and write go to
//! the running gateway (`GatewayHandle::read_point`, `write_point`) and are audited. Messages
//! that come from the site validator are in English only.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::convert::Infallible;
use std::time::{Duration, Instant};

use futures_util::Stream;
use serde::Serialize;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Reply};

use super::auth::{Caller, Role};
use super::{
    PageCtx, RequestInfo, esc, form_body, form_errors, html, layout, need, page_lang, remember,
    with_ctx,
};
use crate::api::{BusDto, DeviceDto, FloorSnapshot};
use crate::i18n::{Lang, catalog};
use crate::runtime::{ApiError, GatewayHandle};
use crate::site::edit::{self, Form};
use crate::site::{Device, DeviceKind, SiteDocument};

const DEVICES_JS: &str = include_str!("assets/devices.js");

/// How often the live stream samples the snapshot when nothing changes.
const SAMPLE: Duration = Duration::from_secs(2);
/// An online device with a failed request within this window is degraded.
const DEGRADED_WINDOW: Duration = Duration::from_secs(10);
/// The shortest time between two events of a live stream (fast polls change the counters in
/// every snapshot).
const MIN_GAP: Duration = Duration::from_millis(500);
/// How long a browser waits before it reconnects a dropped stream.
const RECONNECT: Duration = Duration::from_secs(3);

catalog! {
    DevMsg;
    Title => "Devices", "设备";
    Buses => "RS-485 buses", "RS-485 总线";
    AddDevice => "Add a device", "添加设备";
    AddBus => "Add a bus", "添加总线";
    EditBus => "Change the bus", "修改总线";
    RemoveBus => "Remove the bus", "删除总线";
    NoDevices => "No devices yet.", "尚无设备。";
    NoBuses => "No RS-485 buses.", "没有 RS-485 总线。";
    Id => "Id", "标识";
    Name => "Name", "名称";
    Protocol => "Protocol", "协议";
    Address => "Address", "地址";
    State => "State", "状态";
    LastError => "Last error", "最近错误";
    Requests => "Requests", "请求";
    Responses => "Responses", "应答";
    Timeouts => "Timeouts", "超时";
    Exceptions => "Exceptions", "异常应答";
    TransportErrors => "Transport errors", "传输错误";
    BadFrames => "Bad frames", "错误帧";
    PortOpen => "Port open", "端口已打开";
    Yes => "yes", "是";
    No => "no", "否";
    FramesPerSecond => "Frames/s", "帧/秒";
    FramesSent => "Sent", "已发送";
    FramesReceived => "Received", "已接收";
    Line => "Line", "线路";
    UnitsOnLine => "Units on the line", "线路上的单元";
    Unit => "Unit", "单元";
    Polls => "Polls answered", "已应答轮询";
    Device => "Device", "设备";
    Online => "online", "在线";
    Offline => "offline", "离线";
    Degraded => "degraded", "不稳定";
    Connecting => "connecting", "连接中";
    Quarantined => "quarantined", "已隔离";
    Stopped => "stopped", "已停止";
    NotRunning => "not running", "未运行";
    Host => "Host (IP address)", "主机（IP 地址）";
    Port => "Port", "端口";
    UnitId => "Unit id", "单元号";
    Bus => "Bus", "总线";
    Retries => "Retries", "重试次数";
    Instance => "Device instance", "设备实例号";
    BacnetAddress => "Address (ip:port; empty: found by Who-Is)", "地址（ip:端口；留空则通过 Who-Is 查找）";
    AddressMode => "Address mode", "寻址方式";
    DeviceCov => "COV lifetime (off: poll)", "COV 订阅时长（off：轮询）";
    RpmBatch => "Properties per ReadPropertyMultiple", "每次 RPM 读取的属性数";
    SerialPort => "Serial port", "串口";
    Baud => "Baud rate", "波特率";
    Parity => "Parity", "校验位";
    DataBits => "Data bits", "数据位";
    StopBits => "Stop bits", "停止位";
    Profile => "Profile", "设备配置文件";
    SilenceTimeout => "Silence timeout", "静默超时";
    Poll => "Poll interval (e.g. 1s)", "轮询间隔（如 1s）";
    Timeout => "Request timeout (e.g. 1s)", "请求超时（如 1s）";
    BusSerialPort => "Serial port of the RS-485 adapter", "RS-485 适配器的串口";
    BusHost => "or: serial server host", "或：串口服务器主机";
    BusPort => "Serial server port", "串口服务器端口";
    Table => "Table", "寄存器表";
    RegisterAddress => "Address (0-based)", "地址（从 0 开始）";
    DataType => "Data type", "数据类型";
    Bit => "Bit", "位";
    Layout => "Byte layout", "字节布局";
    WordOrder => "Word order", "字序";
    Scale => "Scale", "比例系数";
    Offset => "Offset", "偏移量";
    Object => "Object (type:instance)", "对象（类型:实例）";
    Property => "Property", "属性";
    Kind => "Value kind", "值类型";
    Priority => "Write priority", "写入优先级";
    PointCov => "COV", "COV";
    EngUnit => "Unit (°C, %, ppm)", "单位（°C、%、ppm）";
    Access => "Access", "读写权限";
    Labels => "Value labels (0=off; 1=on)", "值标签（0=off; 1=on）";
    Default => "(default)", "（默认）";
    Save => "Save", "保存";
    Add => "Add", "添加";
    Remove => "Remove", "删除";
    ConfirmRemove => "Remove {what}?", "确定删除 {what}？";
    TestRead => "Test read", "测试读取";
    TestWrite => "Write", "写入";
    Edit => "Change", "修改";
    Points => "Points", "点位";
    Value => "Value", "当前值";
    Where => "Where", "位置";
    Actions => "Test", "测试";
    AddPoint => "Add a point", "添加点位";
    EditDevice => "Change the device", "修改设备";
    RemoveDevice => "Remove the device", "删除设备";
    CsvLink => "Import or export the points as CSV", "以 CSV 导入或导出点位";
    SerialPoints => "A serial device's points come from its profile.", "串口设备的点位来自其配置文件。";
    NoPoints => "No points yet.", "尚无点位。";
    NoSuchDevice => "There is no device '{id}' on this site.", "此站点没有设备“{id}”。";
    NoBusYet => "Add an RS-485 bus first (below).", "请先在下方添加 RS-485 总线。";
    AllDevices => "All devices", "全部设备";
    Discover => "Find devices on the network", "在网络上查找设备";
    ReadAnswer => "The device answered {value} in {ms} ms ({at}).", "设备在 {ms} 毫秒内应答 {value}（{at}）。";
    WriteAnswer => "Wrote {written}; read back {read_back} ({ms} ms).", "已写入 {written}；读回 {read_back}（{ms} 毫秒）。";
    WriteNoReadBack => "Wrote {written}; the read-back failed: {error} ({ms} ms).", "已写入 {written}；读回失败：{error}（{ms} 毫秒）。";
}

// ---------------------------------------------------------------------------------------
// Live state
// ---------------------------------------------------------------------------------------

/// Failed requests (timeouts, exceptions, transport errors) of a device so far.
fn failures(d: &DeviceDto) -> u64 {
    d.timeouts + d.exceptions + d.transport_errors
}

/// Each device's failed requests as sampled over the last [`DEGRADED_WINDOW`], to tell an
/// online device that keeps failing ("degraded") from a healthy one. Time is an argument.
#[derive(Debug, Default)]
pub struct FailureWindow {
    samples: VecDeque<(Instant, HashMap<String, u64>)>,
}

impl FailureWindow {
    /// Takes a sample of the devices' counters at `now`; samples older than the window go,
    /// except the newest of them, which is the window's baseline.
    pub fn observe(&mut self, now: Instant, devices: &[DeviceDto]) {
        let counts = devices
            .iter()
            .map(|d| (d.id.clone(), failures(d)))
            .collect();
        self.samples.push_back((now, counts));
        while self
            .samples
            .get(1)
            .is_some_and(|(t, _)| now.duration_since(*t) >= DEGRADED_WINDOW)
        {
            self.samples.pop_front();
        }
    }

    /// `online`, `degraded` (online, with failures since the window's baseline), `offline`
    /// or `connecting`.
    pub fn condition(&self, d: &DeviceDto) -> &'static str {
        match d.state {
            "online" => {
                let baseline = self.samples.front().and_then(|(_, c)| c.get(&d.id));
                if baseline.is_some_and(|b| failures(d) > *b) {
                    "degraded"
                } else {
                    "online"
                }
            }
            other => other,
        }
    }
}

/// A state word in the page's language.
fn state_text(lang: Lang, state: &str) -> &'static str {
    lang.t(match state {
        "online" => DevMsg::Online,
        "offline" => DevMsg::Offline,
        "degraded" => DevMsg::Degraded,
        "connecting" => DevMsg::Connecting,
        "quarantined" => DevMsg::Quarantined,
        "stopped" => DevMsg::Stopped,
        _ => DevMsg::NotRunning,
    })
}

/// What the live stream sends: every device with its condition, every bus, and the state
/// words in the page's language.
#[derive(Debug, Serialize, PartialEq)]
pub struct LiveView {
    pub devices: Vec<LiveDevice>,
    pub buses: Vec<BusDto>,
    pub words: BTreeMap<&'static str, &'static str>,
}

/// A device as the live stream sends it.
#[derive(Debug, Serialize, PartialEq)]
pub struct LiveDevice {
    #[serde(flatten)]
    pub device: DeviceDto,
    /// `online`, `degraded`, `offline`, `connecting`.
    pub condition: &'static str,
}

/// The live view of a snapshot.
pub fn live_view(snap: &FloorSnapshot, window: &FailureWindow, lang: Lang) -> LiveView {
    let words = [
        "online",
        "offline",
        "degraded",
        "connecting",
        "quarantined",
        "stopped",
    ]
    .into_iter()
    .map(|w| (w, state_text(lang, w)))
    .chain([("yes", lang.t(DevMsg::Yes)), ("no", lang.t(DevMsg::No))])
    .collect();
    LiveView {
        devices: (snap.devices.iter())
            .map(|d| LiveDevice {
                condition: window.condition(d),
                device: d.clone(),
            })
            .collect(),
        buses: snap.buses.clone(),
        words,
    }
}

/// The live view as SSE events: one at once, then one at each change of the snapshot or of
/// a device's condition, at most one per [`MIN_GAP`]. A task per stream; it ends when the
/// browser goes away or the gateway stops (the server aborts open connections when it stops).
fn live_stream(
    g: GatewayHandle,
    lang: Lang,
) -> impl Stream<Item = Result<warp::sse::Event, Infallible>> + Send + Sync + 'static {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<warp::sse::Event>(4);
    let mut snapshots = g.watch();
    tokio::spawn(async move {
        let mut window = FailureWindow::default();
        let mut last: Option<LiveView> = None;
        let mut sample = tokio::time::interval(SAMPLE);
        let mut sampled = true;
        loop {
            let snap = snapshots.borrow_and_update().clone();
            if sampled {
                window.observe(Instant::now(), &snap.devices);
            }
            let view = live_view(&snap, &window, lang);
            if last.as_ref() != Some(&view) {
                // Unnamed events: `rg.live` listens to `message`.
                let mut event = warp::sse::Event::default();
                if last.is_none() {
                    event = event.retry(RECONNECT);
                }
                if let Ok(event) = event.json_data(&view)
                    && tx.send(event).await.is_err()
                {
                    return;
                }
                last = Some(view);
                tokio::select! {
                    () = tokio::time::sleep(MIN_GAP) => {}
                    () = tx.closed() => return,
                }
            }
            sampled = false;
            tokio::select! {
                changed = snapshots.changed() => if changed.is_err() { return },
                _ = sample.tick() => sampled = true,
                () = tx.closed() => return,
            }
        }
    });
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|e| e.map(Ok)))
}

// ---------------------------------------------------------------------------------------
// Form parts (shared with the discovery page)
// ---------------------------------------------------------------------------------------

/// A text input with its label and its error slot.
pub(crate) fn input(name: &str, label: &str, value: &str) -> String {
    format!(
        "<label>{label}<input name=\"{name}\" value=\"{value}\"></label>\
         <small class=\"err\" data-for=\"{name}\"></small>",
        name = esc(name),
        label = esc(label),
        value = esc(value),
    )
}

/// A select with its label and error slot; `default` adds an empty first option. A value
/// not among the options is offered too, so an edit never loses it.
pub(crate) fn select(
    name: &str,
    label: &str,
    options: &[(&str, &str)],
    value: &str,
    default: Option<&str>,
) -> String {
    let mut opts = String::new();
    if let Some(d) = default {
        opts.push_str(&format!("<option value=\"\">{}</option>", esc(d)));
    }
    let mut listed = false;
    for (v, text) in options {
        let selected = if *v == value {
            listed = true;
            " selected"
        } else {
            ""
        };
        opts.push_str(&format!(
            "<option value=\"{}\"{selected}>{}</option>",
            esc(v),
            esc(text)
        ));
    }
    if !listed && !value.is_empty() {
        opts.push_str(&format!(
            "<option value=\"{v}\" selected>{v}</option>",
            v = esc(value)
        ));
    }
    format!(
        "<label>{label}<select name=\"{name}\">{opts}</select></label>\
         <small class=\"err\" data-for=\"{name}\"></small>",
        name = esc(name),
        label = esc(label),
    )
}

/// Options whose value is their text.
fn same(options: &[&'static str]) -> Vec<(&'static str, &'static str)> {
    options.iter().map(|o| (*o, *o)).collect()
}

fn value_of<'a>(form: &'a Form, key: &str) -> &'a str {
    form.get(key).map_or("", String::as_str)
}

/// A value for people: `55 %`, `true`, `2 (cool)`, or `—` when unknown.
pub fn value_text(value: &serde_json::Value, label: Option<&str>, unit: Option<&str>) -> String {
    let mut text = match value {
        serde_json::Value::Null => return "—".to_owned(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if let Some(l) = label {
        text = format!("{text} ({l})");
    }
    if let Some(u) = unit.filter(|u| !u.is_empty()) {
        text = format!("{text} {u}");
    }
    text
}

/// The site file's protocol word for a device.
pub fn protocol_of(d: &Device) -> &'static str {
    match d.kind {
        DeviceKind::ModbusTcp { .. } => "modbus-tcp",
        DeviceKind::ModbusRtu { .. } => "modbus-rtu",
        DeviceKind::Bacnet(_) => "bacnet",
        DeviceKind::Serial(_) => "serial",
    }
}

// ---------------------------------------------------------------------------------------
// The device form
// ---------------------------------------------------------------------------------------

const TCP: &[&str] = &["modbus-tcp"];
const RTU: &[&str] = &["modbus-rtu"];
const MODBUS: &[&str] = &["modbus-tcp", "modbus-rtu"];
const BACNET: &[&str] = &["bacnet"];
const SERIAL: &[&str] = &["serial"];
const ALL: &[&str] = &["modbus-tcp", "modbus-rtu", "bacnet", "serial"];

/// The device form's protocol fields: key, label, the protocols it belongs to.
const DEVICE_INPUTS: &[(&str, DevMsg, &[&str])] = &[
    ("host", DevMsg::Host, TCP),
    ("port", DevMsg::Port, TCP),
    ("bus", DevMsg::Bus, RTU),
    ("unit", DevMsg::UnitId, MODBUS),
    ("retries", DevMsg::Retries, RTU),
    ("instance", DevMsg::Instance, BACNET),
    ("address", DevMsg::BacnetAddress, BACNET),
    ("address_mode", DevMsg::AddressMode, BACNET),
    ("cov", DevMsg::DeviceCov, BACNET),
    ("rpm_batch", DevMsg::RpmBatch, BACNET),
    ("serial_port", DevMsg::SerialPort, SERIAL),
    ("baud", DevMsg::Baud, SERIAL),
    ("parity", DevMsg::Parity, SERIAL),
    ("data_bits", DevMsg::DataBits, SERIAL),
    ("stop_bits", DevMsg::StopBits, SERIAL),
    ("profile", DevMsg::Profile, SERIAL),
    ("silence_timeout", DevMsg::SilenceTimeout, SERIAL),
    ("poll", DevMsg::Poll, ALL),
    ("timeout", DevMsg::Timeout, ALL),
];

/// A protocol's fieldset: no frame, a cell of the form's row.
const PF_STYLE: &str = "border:0;padding:0;margin:0;flex:1;min-width:9rem";

/// Fields that belong to some protocols only: shown (and posted) for the chosen one.
/// Without script the protocol the page was rendered with applies; `devices.js` switches.
fn protocol_fields(protocols: &[&str], current: &str, inner: &str) -> String {
    let on = protocols.contains(&current);
    format!(
        "<fieldset class=\"pf\" data-protocols=\"{}\" style=\"{PF_STYLE}\"{}>{inner}</fieldset>",
        protocols.join(" "),
        if on { "" } else { " hidden disabled" },
    )
}

/// A device form (to add one when `original` is `None`) posting to `action`.
pub fn device_form_html(
    lang: Lang,
    action: &str,
    form: &Form,
    buses: &[String],
    submit: DevMsg,
) -> String {
    let protocol = match value_of(form, "protocol") {
        "" => "modbus-tcp",
        p => p,
    };
    let mut body = String::from("<div class=\"row\">");
    body.push_str(&format!(
        "<div>{}</div><div>{}</div><div>{}</div></div><div class=\"row\">",
        input("id", lang.t(DevMsg::Id), value_of(form, "id")),
        input("name", lang.t(DevMsg::Name), value_of(form, "name")),
        select(
            "protocol",
            lang.t(DevMsg::Protocol),
            &same(edit::PROTOCOLS),
            protocol,
            None,
        ),
    ));
    let default = lang.t(DevMsg::Default);
    for (key, label, protocols) in DEVICE_INPUTS {
        let value = value_of(form, key);
        let label = lang.t(*label);
        let field = match *key {
            "bus" => {
                let options: Vec<(&str, &str)> =
                    buses.iter().map(|b| (b.as_str(), b.as_str())).collect();
                let mut s = select(key, label, &options, value, None);
                if buses.is_empty() {
                    s.push_str(&format!(
                        "<p class=\"hint\">{}</p>",
                        esc(lang.t(DevMsg::NoBusYet))
                    ));
                }
                s
            }
            "address_mode" => select(key, label, &same(edit::ADDRESS_MODES), value, Some(default)),
            "parity" => select(key, label, &same(edit::PARITIES), value, Some(default)),
            _ => input(key, label, value),
        };
        body.push_str(&protocol_fields(protocols, protocol, &field));
    }
    body.push_str("</div>");
    format!(
        "<form method=\"post\" action=\"{action}\" data-device-form>{body}\
         <button type=\"submit\">{submit}</button><pre class=\"form-result\" hidden></pre></form>",
        action = esc(action),
        submit = esc(lang.t(submit)),
    )
}

/// A bus form (add, or change `original`).
fn bus_form_html(lang: Lang, action: &str, form: &Form, submit: DevMsg) -> String {
    let default = lang.t(DevMsg::Default);
    let mut body = String::new();
    body.push_str(&input("id", lang.t(DevMsg::Id), value_of(form, "id")));
    body.push_str(&input(
        "serial_port",
        lang.t(DevMsg::BusSerialPort),
        value_of(form, "serial_port"),
    ));
    body.push_str("<div class=\"row\"><div>");
    body.push_str(&input(
        "host",
        lang.t(DevMsg::BusHost),
        value_of(form, "host"),
    ));
    body.push_str("</div><div>");
    body.push_str(&input(
        "port",
        lang.t(DevMsg::BusPort),
        value_of(form, "port"),
    ));
    body.push_str("</div></div><div class=\"row\"><div>");
    body.push_str(&input("baud", lang.t(DevMsg::Baud), value_of(form, "baud")));
    body.push_str("</div><div>");
    body.push_str(&select(
        "parity",
        lang.t(DevMsg::Parity),
        &same(edit::PARITIES),
        value_of(form, "parity"),
        Some(default),
    ));
    body.push_str("</div><div>");
    body.push_str(&input(
        "data_bits",
        lang.t(DevMsg::DataBits),
        value_of(form, "data_bits"),
    ));
    body.push_str("</div><div>");
    body.push_str(&input(
        "stop_bits",
        lang.t(DevMsg::StopBits),
        value_of(form, "stop_bits"),
    ));
    body.push_str("</div></div>");
    format!(
        "<form method=\"post\" action=\"{action}\">{body}\
         <button type=\"submit\">{submit}</button></form>",
        action = esc(action),
        submit = esc(lang.t(submit)),
    )
}

/// A removal: a button that posts to `action` after a confirmation; a refusal (what still
/// uses the object) shows below it.
fn button_form(action: &str, text: &str, confirm: &str) -> String {
    let slot: String = action
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!(
        "<button type=\"button\" class=\"danger\" data-post=\"{action}\" data-confirm=\"{confirm}\" \
         data-result=\"rm{slot}\">{text}</button><p class=\"err\" id=\"rm{slot}\"></p>",
        action = esc(action),
        confirm = esc(confirm),
        text = esc(text),
    )
}

// ---------------------------------------------------------------------------------------
// Point forms
// ---------------------------------------------------------------------------------------

const MODBUS_POINT_INPUTS: &[(&str, DevMsg)] = &[
    ("id", DevMsg::Id),
    ("name", DevMsg::Name),
    ("table", DevMsg::Table),
    ("address", DevMsg::RegisterAddress),
    ("type", DevMsg::DataType),
    ("bit", DevMsg::Bit),
    ("layout", DevMsg::Layout),
    ("word_order", DevMsg::WordOrder),
    ("scale", DevMsg::Scale),
    ("offset", DevMsg::Offset),
    ("unit", DevMsg::EngUnit),
    ("access", DevMsg::Access),
    ("poll", DevMsg::Poll),
    ("labels", DevMsg::Labels),
];

const BACNET_POINT_INPUTS: &[(&str, DevMsg)] = &[
    ("id", DevMsg::Id),
    ("name", DevMsg::Name),
    ("object", DevMsg::Object),
    ("property", DevMsg::Property),
    ("kind", DevMsg::Kind),
    ("priority", DevMsg::Priority),
    ("cov", DevMsg::PointCov),
    ("unit", DevMsg::EngUnit),
    ("access", DevMsg::Access),
    ("labels", DevMsg::Labels),
];

/// A point form for a device of `protocol` (`modbus-*` or `bacnet`).
pub fn point_form_html(
    lang: Lang,
    protocol: &str,
    action: &str,
    form: &Form,
    submit: DevMsg,
) -> String {
    let inputs = if protocol == "bacnet" {
        BACNET_POINT_INPUTS
    } else {
        MODBUS_POINT_INPUTS
    };
    let default = lang.t(DevMsg::Default);
    let mut body = String::from("<div class=\"row\">");
    for (key, label) in inputs {
        let value = value_of(form, key);
        let label = lang.t(*label);
        let choices: Option<&[&str]> = match *key {
            "table" => Some(edit::MODBUS_TABLES),
            "type" => Some(edit::DATA_TYPES),
            "layout" => Some(edit::LAYOUTS),
            "word_order" => Some(edit::WORD_ORDERS),
            "access" => Some(edit::POINT_ACCESS),
            "kind" => Some(edit::BACNET_KINDS),
            "cov" => Some(&["true", "false"]),
            _ => None,
        };
        let field = match choices {
            Some(c) => select(key, label, &same(c), value, Some(default)),
            None => input(key, label, value),
        };
        body.push_str(&format!("<div>{field}</div>"));
    }
    body.push_str("</div>");
    format!(
        "<form method=\"post\" action=\"{action}\">{body}\
         <button type=\"submit\">{submit}</button></form>",
        action = esc(action),
        submit = esc(lang.t(submit)),
    )
}

/// Where a point is on its device, from its form: `holding_register 0 (u16)`, `analog-value:1`.
fn point_where(form: &Form) -> String {
    if let Some(object) = form.get("object") {
        return match form.get("property") {
            Some(p) => format!("{object} {p}"),
            None => object.clone(),
        };
    }
    let mut s = format!("{} {}", value_of(form, "table"), value_of(form, "address"));
    if let Some(bit) = form.get("bit") {
        s.push_str(&format!(".{bit}"));
    }
    if let Some(t) = form.get("type") {
        s.push_str(&format!(" ({t})"));
    }
    s
}

// ---------------------------------------------------------------------------------------
// Pages
// ---------------------------------------------------------------------------------------

fn live_hook() -> String {
    "<div id=\"live\" data-live=\"/api/console/devices/events\" \
     data-poll=\"/api/console/devices\" hidden></div>\
     <script src=\"/assets/devices.js\" defer></script>"
        .to_owned()
}

fn condition_cell(lang: Lang, condition: &str) -> String {
    format!(
        "<span class=\"{c}\" data-k=\"condition\">{t}</span>",
        c = esc(condition),
        t = esc(state_text(lang, condition)),
    )
}

fn counter_cells(d: Option<&DeviceDto>) -> String {
    let n = |f: fn(&DeviceDto) -> u64| d.map_or(String::new(), |d| f(d).to_string());
    let cells: [(&str, String); 6] = [
        ("requests", n(|d| d.requests)),
        ("responses", n(|d| d.responses)),
        ("timeouts", n(|d| d.timeouts)),
        ("exceptions", n(|d| d.exceptions)),
        ("transport_errors", n(|d| d.transport_errors)),
        ("bad_frames", n(|d| d.bad_frames)),
    ];
    cells
        .iter()
        .map(|(k, v)| format!("<td data-k=\"{k}\">{v}</td>"))
        .collect()
}

fn counter_heads(lang: Lang) -> String {
    [
        DevMsg::Requests,
        DevMsg::Responses,
        DevMsg::Timeouts,
        DevMsg::Exceptions,
        DevMsg::TransportErrors,
        DevMsg::BadFrames,
    ]
    .iter()
    .map(|m| format!("<th>{}</th>", esc(lang.t(*m))))
    .collect()
}

/// The body of `/devices`: `add` pre-fills the add-device form (from the query, e.g. the
/// discovery page's "add as device").
pub fn devices_body(
    lang: Lang,
    doc: &SiteDocument,
    snap: &FloorSnapshot,
    window: &FailureWindow,
    add: &Form,
) -> String {
    let site = doc.site();
    let mut out = String::new();
    out.push_str(&format!(
        "<p><a href=\"/discovery\">{}</a></p>",
        esc(lang.t(DevMsg::Discover))
    ));
    // Devices.
    if site.devices.is_empty() {
        out.push_str(&format!(
            "<p class=\"muted\">{}</p>",
            esc(lang.t(DevMsg::NoDevices))
        ));
    } else {
        out.push_str(&format!(
            "<table id=\"devices\"><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th>\
             <th>{}</th><th>{}</th>{}</tr></thead><tbody>",
            esc(lang.t(DevMsg::Id)),
            esc(lang.t(DevMsg::Name)),
            esc(lang.t(DevMsg::Protocol)),
            esc(lang.t(DevMsg::Address)),
            esc(lang.t(DevMsg::State)),
            esc(lang.t(DevMsg::LastError)),
            counter_heads(lang),
        ));
        for d in &site.devices {
            let dto = snap.devices.iter().find(|x| x.id == d.id);
            let condition = dto.map_or("not_running", |x| window.condition(x));
            out.push_str(&format!(
                "<tr data-device=\"{id}\"><td><a href=\"/devices/{id}\">{id}</a></td>\
                 <td>{name}</td><td>{protocol}</td><td>{address}</td><td>{state}</td>\
                 <td data-k=\"last_error\">{error}</td>{counters}</tr>",
                id = esc(&d.id),
                name = esc(&d.name),
                protocol = protocol_of(d),
                address = esc(&d.address()),
                state = condition_cell(lang, condition),
                error = esc(dto.and_then(|x| x.last_error.as_deref()).unwrap_or("")),
                counters = counter_cells(dto),
            ));
        }
        out.push_str("</tbody></table>");
    }
    // Buses.
    out.push_str(&format!("<h2>{}</h2>", esc(lang.t(DevMsg::Buses))));
    if site.buses.is_empty() {
        out.push_str(&format!(
            "<p class=\"muted\">{}</p>",
            esc(lang.t(DevMsg::NoBuses))
        ));
    }
    for bus in &site.buses {
        out.push_str(&bus_section(lang, doc, &bus.id, snap));
    }
    out.push_str(&format!(
        "<details><summary>{}</summary>{}</details>",
        esc(lang.t(DevMsg::AddBus)),
        bus_form_html(lang, "/buses", &Form::new(), DevMsg::Add)
    ));
    // Adding a device.
    let buses: Vec<String> = site.buses.iter().map(|b| b.id.clone()).collect();
    out.push_str(&format!(
        "<h2 id=\"add\">{}</h2>{}",
        esc(lang.t(DevMsg::AddDevice)),
        device_form_html(lang, "/devices", add, &buses, DevMsg::Add)
    ));
    out.push_str(&live_hook());
    out
}

fn bus_section(lang: Lang, doc: &SiteDocument, id: &str, snap: &FloorSnapshot) -> String {
    let form = edit::bus_form(doc, id).unwrap_or_default();
    let line = match form.get("serial_port") {
        Some(p) => p.clone(),
        None => format!("{}:{}", value_of(&form, "host"), value_of(&form, "port")),
    };
    let stats = snap.buses.iter().find(|b| b.id == id);
    let yes_no = |b: bool| lang.t(if b { DevMsg::Yes } else { DevMsg::No });
    let cell = |k: &str, v: String| format!("<td data-k=\"{k}\">{}</td>", esc(&v));
    let num = |f: fn(&BusDto) -> u64| stats.map_or(String::new(), |s| f(s).to_string());
    let mut out = format!(
        "<h3>{id}</h3><table data-bus=\"{id}\"><thead><tr><th>{}</th><th>{}</th><th>{}</th>\
         <th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>\
         </thead><tbody><tr><td>{}</td>{}{}{}{}{}{}{}{}{}</tr></tbody></table>",
        esc(lang.t(DevMsg::Line)),
        esc(lang.t(DevMsg::PortOpen)),
        esc(lang.t(DevMsg::FramesPerSecond)),
        esc(lang.t(DevMsg::FramesSent)),
        esc(lang.t(DevMsg::FramesReceived)),
        esc(lang.t(DevMsg::BadFrames)),
        esc(lang.t(DevMsg::Timeouts)),
        esc(lang.t(DevMsg::Exceptions)),
        esc(lang.t(DevMsg::TransportErrors)),
        esc(lang.t(DevMsg::LastError)),
        esc(&line),
        cell(
            "open",
            stats.map_or(String::new(), |s| yes_no(s.open).to_owned())
        ),
        cell(
            "frames_per_second",
            stats.map_or(String::new(), |s| s.frames_per_second.to_string())
        ),
        cell("frames_sent", num(|s| s.frames_sent)),
        cell("frames_received", num(|s| s.frames_received)),
        cell("bad_frames", num(|s| s.bad_frames)),
        cell("timeouts", num(|s| s.timeouts)),
        cell("exceptions", num(|s| s.exceptions)),
        cell("transport_errors", num(|s| s.transport_errors)),
        cell(
            "last_error",
            stats.and_then(|s| s.last_error.clone()).unwrap_or_default()
        ),
        id = esc(id),
    );
    if let Some(s) = stats.filter(|s| !s.units.is_empty()) {
        out.push_str(&format!(
            "<table><caption>{}</caption><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th>\
             </tr></thead><tbody>",
            esc(lang.t(DevMsg::UnitsOnLine)),
            esc(lang.t(DevMsg::Unit)),
            esc(lang.t(DevMsg::Device)),
            esc(lang.t(DevMsg::State)),
            esc(lang.t(DevMsg::Polls)),
        ));
        for u in &s.units {
            out.push_str(&format!(
                "<tr data-unit=\"{bus}/{device}\"><td>{unit}</td>\
                 <td><a href=\"/devices/{device}\">{device}</a></td>\
                 <td><span class=\"{state}\" data-k=\"state\">{text}</span></td>\
                 <td data-k=\"polls\">{polls}</td></tr>",
                bus = esc(id),
                device = esc(&u.device),
                unit = u.unit,
                state = esc(u.state),
                text = esc(state_text(lang, u.state)),
                polls = u.polls,
            ));
        }
        out.push_str("</tbody></table>");
    }
    out.push_str(&format!(
        "<details><summary>{}</summary>{}</details>{}",
        esc(lang.t(DevMsg::EditBus)),
        bus_form_html(lang, &format!("/buses/{id}"), &form, DevMsg::Save),
        button_form(
            &format!("/buses/{id}/remove"),
            lang.t(DevMsg::RemoveBus),
            &lang.f(DevMsg::ConfirmRemove, &[("what", id)]),
        ),
    ));
    out
}

/// The body of `/devices/{id}`.
pub fn device_body(
    lang: Lang,
    doc: &SiteDocument,
    device: &Device,
    snap: &FloorSnapshot,
    window: &FailureWindow,
) -> String {
    let id = &device.id;
    let protocol = protocol_of(device);
    let dto = snap.devices.iter().find(|d| &d.id == id);
    let condition = dto.map_or("not_running", |d| window.condition(d));
    let mut out = format!(
        "<p><a href=\"/devices\">{all}</a> · <a href=\"/site#csv\">{csv}</a></p>\
         <table data-device=\"{idq}\"><thead><tr><th>{protocol_h}</th><th>{address_h}</th>\
         <th>{state_h}</th><th>{error_h}</th>{heads}</tr></thead><tbody><tr><td>{protocol}</td>\
         <td>{address}</td><td>{state}</td><td data-k=\"last_error\">{error}</td>{counters}</tr>\
         </tbody></table>",
        all = esc(lang.t(DevMsg::AllDevices)),
        csv = esc(lang.t(DevMsg::CsvLink)),
        idq = esc(id),
        protocol_h = esc(lang.t(DevMsg::Protocol)),
        address_h = esc(lang.t(DevMsg::Address)),
        state_h = esc(lang.t(DevMsg::State)),
        error_h = esc(lang.t(DevMsg::LastError)),
        heads = counter_heads(lang),
        address = esc(&device.address()),
        state = condition_cell(lang, condition),
        error = esc(dto.and_then(|d| d.last_error.as_deref()).unwrap_or("")),
        counters = counter_cells(dto),
    );
    // Points.
    out.push_str(&format!("<h2>{}</h2>", esc(lang.t(DevMsg::Points))));
    let serial = protocol == "serial";
    if serial {
        out.push_str(&format!(
            "<p class=\"muted\">{}</p>",
            esc(lang.t(DevMsg::SerialPoints))
        ));
    }
    if device.points.is_empty() && !serial {
        out.push_str(&format!(
            "<p class=\"muted\">{}</p>",
            esc(lang.t(DevMsg::NoPoints))
        ));
    } else if !device.points.is_empty() {
        out.push_str(&format!(
            "<table id=\"points\"><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th>\
             <th>{}</th><th>{}</th></tr></thead><tbody>",
            esc(lang.t(DevMsg::Id)),
            esc(lang.t(DevMsg::Name)),
            esc(lang.t(DevMsg::Where)),
            esc(lang.t(DevMsg::Access)),
            esc(lang.t(DevMsg::Value)),
            esc(lang.t(DevMsg::Actions)),
        ));
        for (n, p) in device.points.iter().enumerate() {
            let form = if serial {
                Form::new()
            } else {
                edit::point_form(doc, id, &p.id).unwrap_or_default()
            };
            let live = dto.and_then(|d| d.points.iter().find(|x| x.id == p.id));
            let value = live.map_or_else(
                || "—".to_owned(),
                |v| value_text(&v.value, v.label.as_deref(), v.unit.as_deref()),
            );
            let base = format!("/devices/{id}/points/{}", p.id);
            let access = match p.access {
                drivers::point::Access::Read => "read",
                drivers::point::Access::Write => "write",
                drivers::point::Access::ReadWrite => "read_write",
            };
            let mut tests = String::new();
            if !serial {
                tests.push_str(&format!(
                    "<button type=\"button\" class=\"secondary\" data-post=\"{base}/read\" \
                     data-result=\"read-{n}\">{read}</button><pre class=\"read-result\" id=\"read-{n}\"></pre>",
                    base = esc(&base),
                    read = esc(lang.t(DevMsg::TestRead)),
                ));
            }
            if !serial && p.access.can_write() {
                tests.push_str(&format!(
                    "<form method=\"post\" action=\"{base}/write\" class=\"test-write\">\
                     <div class=\"row\"><div><input name=\"value\" aria-label=\"{write}\">\
                     <small class=\"err\" data-for=\"value\"></small></div>\
                     <div><button type=\"submit\">{write}</button></div></div>\
                     <pre class=\"form-result\"></pre></form>",
                    base = esc(&base),
                    write = esc(lang.t(DevMsg::TestWrite)),
                ));
            }
            out.push_str(&format!(
                "<tr data-point-row=\"{pid}\"><td>{pid}</td><td>{name}</td><td>{where_}</td>\
                 <td>{access}</td><td data-point=\"{idq}/{pid}\">{value}</td><td>{tests}</td></tr>",
                pid = esc(&p.id),
                idq = esc(id),
                name = esc(&p.name),
                where_ = esc(&point_where(&form)),
                value = esc(&value),
            ));
            if !serial {
                out.push_str(&format!(
                    "<tr class=\"point-edit\"><td colspan=\"6\"><details><summary>{edit} {pid}\
                     </summary>{form}{remove}</details></td></tr>",
                    edit = esc(lang.t(DevMsg::Edit)),
                    pid = esc(&p.id),
                    form = point_form_html(lang, protocol, &base, &form, DevMsg::Save),
                    remove = button_form(
                        &format!("{base}/remove"),
                        lang.t(DevMsg::Remove),
                        &lang.f(
                            DevMsg::ConfirmRemove,
                            &[("what", &format!("{id}/{}", p.id))]
                        ),
                    ),
                ));
            }
        }
        out.push_str("</tbody></table>");
    }
    if !serial {
        out.push_str(&format!(
            "<h2>{}</h2>{}",
            esc(lang.t(DevMsg::AddPoint)),
            point_form_html(
                lang,
                protocol,
                &format!("/devices/{id}/points"),
                &Form::new(),
                DevMsg::Add
            )
        ));
    }
    // The device itself.
    let form = edit::device_form(doc, id).unwrap_or_default();
    let buses: Vec<String> = doc.site().buses.iter().map(|b| b.id.clone()).collect();
    out.push_str(&format!(
        "<h2>{}</h2>{}{}",
        esc(lang.t(DevMsg::EditDevice)),
        device_form_html(lang, &format!("/devices/{id}"), &form, &buses, DevMsg::Save),
        button_form(
            &format!("/devices/{id}/remove"),
            lang.t(DevMsg::RemoveDevice),
            &lang.f(DevMsg::ConfirmRemove, &[("what", id)]),
        ),
    ));
    out.push_str(&live_hook());
    out
}

// ---------------------------------------------------------------------------------------
// Routes
// ---------------------------------------------------------------------------------------

/// The running site's document (for display and pre-filled forms; edits use `PageCtx::apply_edit`).
pub(crate) async fn document(ctx: &PageCtx) -> Result<SiteDocument, String> {
    let text = ctx.site.current_toml().await.map_err(|e| e.to_string())?;
    SiteDocument::load(&text).map_err(|e| e.to_string())
}

/// A page, or the reason it cannot be shown.
pub(crate) fn page(
    lang: Lang,
    chosen: bool,
    caller: &Caller,
    title: &str,
    body: Result<String, (StatusCode, String)>,
) -> Response {
    let (status, body) = match body {
        Ok(b) => (StatusCode::OK, b),
        Err((status, why)) => (status, format!("<p class=\"err\">{}</p>", esc(&why))),
    };
    let mut r = html(layout(lang, title, Some(caller), &body));
    *r.status_mut() = status;
    remember(r, lang, chosen)
}

/// An API error as a form's answer: a bad request on `field` (or the whole form), the rest
/// with their own status and the text shown above the button.
pub(crate) fn api_error(e: &ApiError, field: Option<&str>) -> Response {
    let (status, text) = match e {
        ApiError::BadRequest(t) => {
            return match field {
                Some(f) => form_errors(&[(f.to_owned(), t.clone())], None),
                None => form_errors(&[], Some(t)),
            };
        }
        ApiError::NotFound(t) => (StatusCode::NOT_FOUND, t.clone()),
        ApiError::Conflict { message, .. } => (StatusCode::CONFLICT, message.clone()),
        ApiError::Refused(t) => (StatusCode::CONFLICT, t.clone()),
        ApiError::Unavailable(t) => (StatusCode::SERVICE_UNAVAILABLE, t.clone()),
    };
    warp::reply::with_status(
        warp::reply::json(&serde_json::json!({ "error": text })),
        status,
    )
    .into_response()
}

/// The answer to a test read or write: the message for people and the gateway's answer.
fn tested(message: &str, answer: &impl Serialize) -> Response {
    warp::reply::json(&serde_json::json!({ "message": message, "answer": answer })).into_response()
}

fn form_of(f: HashMap<String, String>) -> Form {
    f.into_iter().collect()
}

/// The id a form names (to go to its page after the change).
fn form_id(form: &Form) -> String {
    value_of(form, "id").trim().to_owned()
}

/// The pages, the live stream, the forms and the tests of this module.
pub fn routes(ctx: &PageCtx) -> BoxedFilter<(Response,)> {
    let c = &ctx.console;
    let query = || {
        warp::query::<HashMap<String, String>>()
            .or(warp::any().map(HashMap::new))
            .unify()
    };
    let script = warp::path!("assets" / "devices.js")
        .and(warp::get())
        .map(|| {
            warp::reply::with_header(DEVICES_JS, "content-type", "text/javascript; charset=utf-8")
                .into_response()
        })
        .boxed();
    let list = warp::path!("devices")
        .and(warp::get())
        .and(need(c, Role::Installer))
        .and(page_lang())
        .and(query())
        .and(with_ctx(ctx))
        .then(
            |caller: Caller,
             _: RequestInfo,
             lang: Lang,
             chosen: bool,
             q: HashMap<String, String>,
             ctx: PageCtx| async move {
                let add: Form = q.into_iter().filter(|(k, _)| k != "lang").collect();
                let body = document(&ctx).await.map_or_else(
                    |e| Err((StatusCode::SERVICE_UNAVAILABLE, e)),
                    |doc| {
                        let snap = ctx.gateway.snapshot();
                        Ok(devices_body(
                            lang,
                            &doc,
                            &snap,
                            &FailureWindow::default(),
                            &add,
                        ))
                    },
                );
                page(lang, chosen, &caller, lang.t(DevMsg::Title), body)
            },
        )
        .boxed();
    let one =
        warp::path!("devices" / String)
            .and(warp::get())
            .and(need(c, Role::Installer))
            .and(page_lang())
            .and(with_ctx(ctx))
            .then(
                |id: String,
                 caller: Caller,
                 _: RequestInfo,
                 lang: Lang,
                 chosen: bool,
                 ctx: PageCtx| async move {
                    let body = match document(&ctx).await {
                        Err(e) => Err((StatusCode::SERVICE_UNAVAILABLE, e)),
                        Ok(doc) => match doc.site().device(&id) {
                            None => Err((
                                StatusCode::NOT_FOUND,
                                lang.f(DevMsg::NoSuchDevice, &[("id", &id)]),
                            )),
                            Some(d) => {
                                let snap = ctx.gateway.snapshot();
                                Ok(device_body(lang, &doc, d, &snap, &FailureWindow::default()))
                            }
                        },
                    };
                    let title = format!("{} {id}", lang.t(DevMsg::Device));
                    page(lang, chosen, &caller, &title, body)
                },
            )
            .boxed();
    let events = warp::path!("api" / "console" / "devices" / "events")
        .and(warp::get())
        .and(need(c, Role::Installer))
        .and(page_lang())
        .and(with_ctx(ctx))
        .map(
            |_: Caller, _: RequestInfo, lang: Lang, _: bool, ctx: PageCtx| {
                let events = warp::sse::keep_alive()
                    .interval(Duration::from_secs(15))
                    .stream(live_stream(ctx.gateway.clone(), lang));
                warp::reply::with_header(warp::sse::reply(events), "cache-control", "no-store")
                    .into_response()
            },
        )
        .boxed();
    let state = warp::path!("api" / "console" / "devices")
        .and(warp::get())
        .and(need(c, Role::Installer))
        .and(page_lang())
        .and(with_ctx(ctx))
        .map(
            |_: Caller, _: RequestInfo, lang: Lang, _: bool, ctx: PageCtx| {
                let snap = ctx.gateway.snapshot();
                warp::reply::json(&live_view(&snap, &FailureWindow::default(), lang))
                    .into_response()
            },
        )
        .boxed();
    let add_device = warp::path!("devices")
        .and(warp::post())
        .and(need(c, Role::Installer))
        .and(form_body())
        .and(with_ctx(ctx))
        .then(
            |caller: Caller, req: RequestInfo, f: HashMap<String, String>, ctx: PageCtx| async move {
                let form = form_of(f);
                let id = form_id(&form);
                ctx.apply_edit(
                    &caller,
                    &req,
                    "device.add",
                    &id,
                    &format!("/devices/{id}"),
                    |doc| edit::upsert_device(doc, None, &form),
                )
                .await
            },
        )
        .boxed();
    let edit_device = warp::path!("devices" / String)
        .and(warp::post())
        .and(need(c, Role::Installer))
        .and(form_body())
        .and(with_ctx(ctx))
        .then(
            |original: String,
             caller: Caller,
             req: RequestInfo,
             f: HashMap<String, String>,
             ctx: PageCtx| async move {
                let form = form_of(f);
                let id = form_id(&form);
                ctx.apply_edit(
                    &caller,
                    &req,
                    "device.edit",
                    &original,
                    &format!("/devices/{id}"),
                    |doc| edit::upsert_device(doc, Some(&original), &form),
                )
                .await
            },
        )
        .boxed();
    let remove_device = warp::path!("devices" / String / "remove")
        .and(warp::post())
        .and(need(c, Role::Installer))
        .and(with_ctx(ctx))
        .then(
            |id: String, caller: Caller, req: RequestInfo, ctx: PageCtx| async move {
                ctx.apply_edit(&caller, &req, "device.remove", &id, "/devices", |doc| {
                    edit::remove_device(doc, &id)
                })
                .await
            },
        )
        .boxed();
    let add_point = warp::path!("devices" / String / "points")
        .and(warp::post())
        .and(need(c, Role::Installer))
        .and(form_body())
        .and(with_ctx(ctx))
        .then(
            |device: String,
             caller: Caller,
             req: RequestInfo,
             f: HashMap<String, String>,
             ctx: PageCtx| async move {
                let form = form_of(f);
                let target = format!("{device}/{}", form_id(&form));
                ctx.apply_edit(&caller, &req, "point.add", &target, "reload", |doc| {
                    edit::upsert_point(doc, &device, None, &form)
                })
                .await
            },
        )
        .boxed();
    let edit_point = warp::path!("devices" / String / "points" / String)
        .and(warp::post())
        .and(need(c, Role::Installer))
        .and(form_body())
        .and(with_ctx(ctx))
        .then(
            |device: String,
             point: String,
             caller: Caller,
             req: RequestInfo,
             f: HashMap<String, String>,
             ctx: PageCtx| async move {
                let form = form_of(f);
                ctx.apply_edit(
                    &caller,
                    &req,
                    "point.edit",
                    &format!("{device}/{point}"),
                    "reload",
                    |doc| edit::upsert_point(doc, &device, Some(&point), &form),
                )
                .await
            },
        )
        .boxed();
    let remove_point = warp::path!("devices" / String / "points" / String / "remove")
        .and(warp::post())
        .and(need(c, Role::Installer))
        .and(with_ctx(ctx))
        .then(
            |device: String, point: String, caller: Caller, req: RequestInfo, ctx: PageCtx| async move {
                ctx.apply_edit(
                    &caller,
                    &req,
                    "point.remove",
                    &format!("{device}/{point}"),
                    "reload",
                    |doc| edit::remove_point(doc, &device, &point),
                )
                .await
            },
        )
        .boxed();
    let test_read = warp::path!("devices" / String / "points" / String / "read")
        .and(warp::post())
        .and(need(c, Role::Installer))
        .and(page_lang())
        .and(with_ctx(ctx))
        .then(
            |device: String,
             point: String,
             caller: Caller,
             req: RequestInfo,
             lang: Lang,
             _: bool,
             ctx: PageCtx| async move {
                let target = format!("{device}/{point}");
                let result = ctx.gateway.read_point(&device, &point).await;
                let detail = match &result {
                    Ok(r) => format!("read {} in {} ms", r.value, r.took_ms),
                    Err(e) => format!("failed: {e}"),
                };
                ctx.console
                    .audit(&caller, &req.from(), "device.test_read", &target, &detail);
                match result {
                    Ok(r) => {
                        let value = value_text(&r.value, r.label.as_deref(), r.unit.as_deref());
                        let message = lang.f(
                            DevMsg::ReadAnswer,
                            &[
                                ("value", &value),
                                ("ms", &r.took_ms.to_string()),
                                ("at", &r.at),
                            ],
                        );
                        tested(&message, &r)
                    }
                    Err(e) => api_error(&e, None),
                }
            },
        )
        .boxed();
    let test_write = warp::path!("devices" / String / "points" / String / "write")
        .and(warp::post())
        .and(need(c, Role::Installer))
        .and(page_lang())
        .and(form_body())
        .and(with_ctx(ctx))
        .then(
            |device: String,
             point: String,
             caller: Caller,
             req: RequestInfo,
             lang: Lang,
             _: bool,
             f: HashMap<String, String>,
             ctx: PageCtx| async move {
                let target = format!("{device}/{point}");
                let text = f.get("value").map_or("", String::as_str);
                let result = ctx.gateway.write_point(&device, &point, text).await;
                let detail = match &result {
                    Ok(a) => format!(
                        "value {text:?}: wrote {}, read back {} ({} ms)",
                        a.written, a.read_back, a.took_ms
                    ),
                    Err(e) => format!("value {text:?}: refused: {e}"),
                };
                ctx.console
                    .audit(&caller, &req.from(), "device.test_write", &target, &detail);
                match result {
                    Ok(a) => {
                        let unit = a.unit.as_deref();
                        let written = value_text(&a.written, a.written_label.as_deref(), unit);
                        let ms = a.took_ms.to_string();
                        let message = match &a.read_back_error {
                            None => lang.f(
                                DevMsg::WriteAnswer,
                                &[
                                    ("written", &written),
                                    (
                                        "read_back",
                                        &value_text(
                                            &a.read_back,
                                            a.read_back_label.as_deref(),
                                            unit,
                                        ),
                                    ),
                                    ("ms", &ms),
                                ],
                            ),
                            Some(error) => lang.f(
                                DevMsg::WriteNoReadBack,
                                &[("written", &written), ("error", error), ("ms", &ms)],
                            ),
                        };
                        tested(&message, &a)
                    }
                    Err(e) => api_error(&e, Some("value")),
                }
            },
        )
        .boxed();
    let add_bus = warp::path!("buses")
        .and(warp::post())
        .and(need(c, Role::Installer))
        .and(form_body())
        .and(with_ctx(ctx))
        .then(
            |caller: Caller, req: RequestInfo, f: HashMap<String, String>, ctx: PageCtx| async move {
                let form = form_of(f);
                ctx.apply_edit(
                    &caller,
                    &req,
                    "bus.add",
                    &form_id(&form),
                    "reload",
                    |doc| edit::upsert_bus(doc, None, &form),
                )
                .await
            },
        )
        .boxed();
    let edit_bus = warp::path!("buses" / String)
        .and(warp::post())
        .and(need(c, Role::Installer))
        .and(form_body())
        .and(with_ctx(ctx))
        .then(
            |original: String,
             caller: Caller,
             req: RequestInfo,
             f: HashMap<String, String>,
             ctx: PageCtx| async move {
                let form = form_of(f);
                ctx.apply_edit(&caller, &req, "bus.edit", &original, "reload", |doc| {
                    edit::upsert_bus(doc, Some(&original), &form)
                })
                .await
            },
        )
        .boxed();
    let remove_bus = warp::path!("buses" / String / "remove")
        .and(warp::post())
        .and(need(c, Role::Installer))
        .and(with_ctx(ctx))
        .then(
            |id: String, caller: Caller, req: RequestInfo, ctx: PageCtx| async move {
                ctx.apply_edit(&caller, &req, "bus.remove", &id, "reload", |doc| {
                    edit::remove_bus(doc, &id)
                })
                .await
            },
        )
        .boxed();
    script
        .or(list)
        .unify()
        .boxed()
        .or(one)
        .unify()
        .boxed()
        .or(events)
        .unify()
        .boxed()
        .or(state)
        .unify()
        .boxed()
        .or(add_device)
        .unify()
        .boxed()
        .or(edit_device)
        .unify()
        .boxed()
        .or(remove_device)
        .unify()
        .boxed()
        .or(add_point)
        .unify()
        .boxed()
        .or(edit_point)
        .unify()
        .boxed()
        .or(remove_point)
        .unify()
        .boxed()
        .or(test_read)
        .unify()
        .boxed()
        .or(test_write)
        .unify()
        .boxed()
        .or(add_bus)
        .unify()
        .boxed()
        .or(edit_bus)
        .unify()
        .boxed()
        .or(remove_bus)
        .unify()
        .boxed()
}

#[cfg(test)]
mod tests;
