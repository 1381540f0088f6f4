//! The installer console's discovery page (`/discovery`): a BACnet Who-Is, a found device's
//! objects with checkboxes, the chosen objects imported as points of a new or existing
//! BACnet device in one site change, and Modbus unit scans of an RS-485 bus of the site or a
//! Modbus TCP address, each unit found with a link that pre-fills the add-device form.
//!
//! Searches are GET forms (`?whois=1`, `?browse=INSTANCE`, `?scan=1`): their results are
//! the page, and they change nothing. The import posts to `/discovery/import`, which composes
//! `site::edit::upsert_device` and `upsert_point` on one document ([`import_objects`]) inside
//! one `apply_edit`, so the device and all its points arrive in one reload, or nothing does.

use std::collections::{BTreeSet, HashMap};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;

use super::auth::{Caller, Role};
use super::devices::select;
use super::{
    PageCtx, RequestInfo, encode_component, esc, form_body, html, layout, need, page_lang,
    remember, with_ctx,
};
use crate::i18n::{Lang, catalog};
use crate::runtime::{ApiError, FoundDevice, ObjectSummary, ScanProbe, ScanTarget, UnitAnswer};
use crate::site::edit::{self, FieldError, Form, FormErrors};
use crate::site::{DeviceKind, Site, SiteDocument};
use drivers::point::ModbusTable;

/// BACnet/IP's port (0xBAC0), for a target given without one.
const BACNET_PORT: u16 = 47808;

catalog! {
    DiscMsg;
    Title => "Discovery", "设备发现";
    WhoIsTitle => "BACnet: Who-Is", "BACnet：Who-Is 查找";
    Low => "Lowest instance (empty: all)", "最小实例号（留空：全部）";
    High => "Highest instance (empty: all)", "最大实例号（留空：全部）";
    Target => "Send to ip:port (empty: broadcast)", "发送至 ip:端口（留空：广播）";
    Wait => "Wait for answers (s)", "等待应答（秒）";
    SendWhoIs => "Send Who-Is", "发送 Who-Is";
    Found => "{n} device(s) answered.", "{n} 台设备应答。";
    NoneFound => "No device answered.", "没有设备应答。";
    Instance => "Instance", "实例号";
    Address => "Address", "地址";
    Network => "Network", "网络号";
    Vendor => "Vendor id", "厂商编号";
    MaxApdu => "Max APDU", "最大 APDU";
    OnSite => "On this site", "本站点设备";
    NotOnSite => "not on the site", "未加入站点";
    Browse => "objects", "查看对象";
    ObjectsOf => "Objects of BACnet device {instance}", "BACnet 设备 {instance} 的对象";
    Object => "Object", "对象";
    Name => "Name", "名称";
    PresentValue => "Present value", "当前值";
    Kind => "Kind", "类型";
    Pick => "Import", "导入";
    PointId => "Point id", "点位标识";
    PointName => "Point name", "点位名称";
    Access => "Access", "读写权限";
    Unit => "Unit", "单位";
    Into => "Import into", "导入到";
    NewDevice => "a new device", "新设备";
    Existing => "device {id} (instance {instance})", "设备 {id}（实例号 {instance}）";
    NewId => "New device's id", "新设备标识";
    NewName => "New device's name", "新设备名称";
    ImportButton => "Import the chosen objects as points", "将所选对象导入为点位";
    ScanTitle => "Modbus: unit scan", "Modbus：单元扫描";
    Via => "Scan", "扫描对象";
    ViaTcp => "a Modbus TCP address", "Modbus TCP 地址";
    ViaBus => "RS-485 bus {bus}", "RS-485 总线 {bus}";
    Host => "Host (TCP)", "主机（TCP）";
    Port => "Port (TCP)", "端口（TCP）";
    From => "First unit", "起始单元";
    To => "Last unit", "结束单元";
    ProbeTable => "Probe table", "探测寄存器表";
    ProbeAddress => "Probe address", "探测地址";
    ProbeTimeout => "Wait per unit (ms; empty: default)", "每个单元等待（毫秒；留空：默认）";
    StartScan => "Scan", "开始扫描";
    UnitId => "Unit", "单元";
    Answer => "Answer", "应答";
    Took => "Time (ms)", "耗时（毫秒）";
    Device => "Device", "设备";
    Answered => "present", "在线";
    ExceptionAnswer => "present, exception {code}: {name}", "在线，异常 {code}：{name}";
    AddAsDevice => "add as device", "添加为设备";
    Absent => "No answer from: {units}", "无应答：{units}";
    NoUnits => "No unit answered.", "没有单元应答。";
    NotNumber => "'{text}' is not a whole number", "“{text}”不是整数";
    NotTarget => "'{text}' is not an IPv4 address with an optional port, e.g. 192.168.1.20:47808", "“{text}”不是 IPv4 地址（可带端口），例如 192.168.1.20:47808";
    NotSeconds => "'{text}' is not a number of seconds between 0 and 60", "“{text}”不是 0 到 60 之间的秒数";
    NotUnitId => "'{text}' is not a unit id (0 to 255)", "“{text}”不是单元号（0 到 255）";
    NotPort => "'{text}' is not a port (1 to 65535)", "“{text}”不是端口号（1 到 65535）";
    NotTable => "'{text}' is not a Modbus table", "“{text}”不是 Modbus 寄存器表";
    NeedHost => "the host to scan (an IP address or a name)", "请填写要扫描的主机（IP 地址或名称）";
    NothingChosen => "choose at least one object", "请至少选择一个对象";
    NotBacnet => "'{id}' is not a BACnet device of this site", "“{id}”不是本站点的 BACnet 设备";
}

// ---------------------------------------------------------------------------------------
// Reading the searches
// ---------------------------------------------------------------------------------------

/// Field errors of a search form, in the page's language.
type Errors = Vec<(String, String)>;

fn text<'a>(q: &'a Form, key: &str) -> Option<&'a str> {
    q.get(key).map(|s| s.trim()).filter(|s| !s.is_empty())
}

fn number<T: std::str::FromStr>(lang: Lang, q: &Form, key: &str, errors: &mut Errors) -> Option<T> {
    let t = text(q, key)?;
    match t.parse() {
        Ok(v) => Some(v),
        Err(_) => {
            errors.push((key.to_owned(), lang.f(DiscMsg::NotNumber, &[("text", t)])));
            None
        }
    }
}

/// `192.168.1.20:47808`, or an address alone (BACnet's port).
fn bacnet_target(t: &str) -> Option<SocketAddrV4> {
    t.parse::<SocketAddrV4>().ok().or_else(|| {
        t.parse::<Ipv4Addr>()
            .ok()
            .map(|ip| SocketAddrV4::new(ip, BACNET_PORT))
    })
}

/// A Who-Is as the form asks for it.
#[derive(Debug, Clone, PartialEq)]
pub struct WhoIs {
    pub low: Option<u32>,
    pub high: Option<u32>,
    pub target: Option<SocketAddrV4>,
    pub wait: Duration,
}

/// Reads the Who-Is form (`low`, `high`, `target`, `wait` in seconds; default 2 s).
pub fn parse_whois(lang: Lang, q: &Form) -> Result<WhoIs, Errors> {
    let mut errors = Errors::new();
    let low = number(lang, q, "low", &mut errors);
    let high = number(lang, q, "high", &mut errors);
    let target = text(q, "target").and_then(|t| {
        let a = bacnet_target(t);
        if a.is_none() {
            errors.push(("target".into(), lang.f(DiscMsg::NotTarget, &[("text", t)])));
        }
        a
    });
    let wait = match text(q, "wait") {
        None => Duration::from_secs(2),
        Some(t) => match t.parse::<f64>() {
            Ok(s) if s > 0.0 && s <= 60.0 => Duration::from_secs_f64(s),
            _ => {
                errors.push(("wait".into(), lang.f(DiscMsg::NotSeconds, &[("text", t)])));
                Duration::ZERO
            }
        },
    };
    if errors.is_empty() {
        Ok(WhoIs {
            low,
            high,
            target,
            wait,
        })
    } else {
        Err(errors)
    }
}

/// A unit scan as the form asks for it.
#[derive(Debug, Clone, PartialEq)]
pub struct Scan {
    pub target: ScanTarget,
    pub units: std::ops::RangeInclusive<u8>,
    pub probe: ScanProbe,
}

/// Reads the scan form: `via` (`tcp`, or `bus:ID`), `host` and `port` (502) for TCP, `from`
/// and `to` (1 to 247), `table` and `probe_address` of the probe (holding register 0),
/// `timeout_ms`. (`address` is the browsed BACnet device's, on the same page.)
pub fn parse_scan(lang: Lang, q: &Form) -> Result<Scan, Errors> {
    let mut errors = Errors::new();
    let target = match text(q, "via").and_then(|v| v.strip_prefix("bus:")) {
        Some(bus) => Some(ScanTarget::Bus(bus.to_owned())),
        None => {
            let port = match text(q, "port") {
                None => Some(502),
                Some(t) => match t.parse::<u16>() {
                    Ok(p) if p > 0 => Some(p),
                    _ => {
                        errors.push(("port".into(), lang.f(DiscMsg::NotPort, &[("text", t)])));
                        None
                    }
                },
            };
            match (text(q, "host"), port) {
                (None, _) => {
                    errors.push(("host".into(), lang.t(DiscMsg::NeedHost).to_owned()));
                    None
                }
                (Some(host), Some(port)) => Some(ScanTarget::Tcp {
                    host: host.to_owned(),
                    port,
                }),
                (Some(_), None) => None,
            }
        }
    };
    let mut unit = |key: &str, default: u8| match text(q, key) {
        None => default,
        Some(t) => t.parse::<u8>().unwrap_or_else(|_| {
            errors.push((key.to_owned(), lang.f(DiscMsg::NotUnitId, &[("text", t)])));
            default
        }),
    };
    let units = unit("from", 1)..=unit("to", 247);
    let table = match text(q, "table") {
        None => ModbusTable::HoldingRegister,
        Some(t) => match modbus_table(t) {
            Some(table) => table,
            None => {
                errors.push(("table".into(), lang.f(DiscMsg::NotTable, &[("text", t)])));
                ModbusTable::HoldingRegister
            }
        },
    };
    let address = number::<u16>(lang, q, "probe_address", &mut errors).unwrap_or(0);
    let timeout = number::<u64>(lang, q, "timeout_ms", &mut errors).map(Duration::from_millis);
    match target {
        Some(target) if errors.is_empty() => Ok(Scan {
            target,
            units,
            probe: ScanProbe {
                table,
                address,
                timeout,
                ..ScanProbe::default()
            },
        }),
        _ => Err(errors),
    }
}

fn modbus_table(t: &str) -> Option<ModbusTable> {
    match t {
        "coil" => Some(ModbusTable::Coil),
        "discrete_input" => Some(ModbusTable::DiscreteInput),
        "input_register" => Some(ModbusTable::InputRegister),
        "holding_register" => Some(ModbusTable::HoldingRegister),
        _ => None,
    }
}

/// The units of `range` that did not answer, as short runs: `2–3, 5, 7–247`.
pub fn absent_units(range: &std::ops::RangeInclusive<u8>, present: &[u8]) -> String {
    let present: BTreeSet<u8> = present.iter().copied().collect();
    let mut runs: Vec<(u8, u8)> = Vec::new();
    for u in range.clone().filter(|u| !present.contains(u)) {
        match runs.last_mut() {
            Some((_, end)) if end.checked_add(1) == Some(u) => *end = u,
            _ => runs.push((u, u)),
        }
    }
    let parts: Vec<String> = runs
        .iter()
        .map(|(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}–{b}")
            }
        })
        .collect();
    parts.join(", ")
}

// ---------------------------------------------------------------------------------------
// Importing objects as points
// ---------------------------------------------------------------------------------------

/// A point id from a BACnet object's name (`Zone Temp` → `zone_temp`), or from the object
/// (`analog-value-1`) when the name gives none.
pub fn point_id_for(object: &str, name: Option<&str>) -> String {
    let from_name: String = name
        .unwrap_or("")
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    let mut id = String::new();
    for c in from_name.chars() {
        if c == '_' && (id.is_empty() || id.ends_with('_')) {
            continue;
        }
        id.push(c);
    }
    let id = id.trim_end_matches('_');
    if id.is_empty() {
        object.replace(':', "-")
    } else {
        id.chars().take(64).collect()
    }
}

/// The access an imported object starts with: inputs are read, outputs and values written.
pub fn default_access(object_type: &str) -> &'static str {
    if object_type.ends_with("-output") || object_type.ends_with("-value") {
        "read_write"
    } else {
        "read"
    }
}

/// A BACnet engineering unit as people write it on a point (`degrees-celsius` → `°C`).
pub fn unit_symbol(units: &str) -> &str {
    match units {
        "degrees-celsius" => "°C",
        "degrees-fahrenheit" => "°F",
        "degrees-kelvin" => "K",
        "percent" => "%",
        "percent-relative-humidity" => "%RH",
        "parts-per-million" => "ppm",
        "watts" => "W",
        "kilowatts" => "kW",
        "kilowatt-hours" => "kWh",
        "pascals" => "Pa",
        "kilopascals" => "kPa",
        "luxes" => "lx",
        "volts" => "V",
        "amperes" => "A",
        "no-units" => "",
        other => other,
    }
}

/// What imported objects become points of.
#[derive(Debug, Clone, PartialEq)]
pub enum ImportInto {
    /// A new BACnet device: its form (`protocol = bacnet`, `id`, `name`, `instance`, `address`).
    New(Form),
    /// A BACnet device of the site, by id.
    Existing(String),
}

impl ImportInto {
    /// The id of the device the points go to.
    pub fn device_id(&self) -> String {
        match self {
            ImportInto::New(form) => form.get("id").map_or("", |s| s.trim()).to_owned(),
            ImportInto::Existing(id) => id.clone(),
        }
    }
}

/// Reads the import form: `into` (a device id, or empty for a new device with `id`, `name`,
/// `instance`, `address`), and the chosen rows N (`pick[N]`) with `object[N]`, `id[N]`,
/// `name[N]`, `unit[N]`, `access[N]`, `kind[N]` as point forms.
pub fn import_request(form: &Form) -> (ImportInto, Vec<(usize, Form)>) {
    let get = |k: &str| form.get(k).map(|s| s.trim()).filter(|s| !s.is_empty());
    let into = match get("into") {
        Some(id) => ImportInto::Existing(id.to_owned()),
        None => {
            let mut device = Form::new();
            device.insert("protocol".into(), "bacnet".into());
            for key in ["id", "name", "instance", "address"] {
                if let Some(v) = get(key) {
                    device.insert(key.into(), v.to_owned());
                }
            }
            ImportInto::New(device)
        }
    };
    let rows: BTreeSet<usize> = form
        .iter()
        .filter(|(_, v)| matches!(v.trim(), "on" | "true" | "1" | "yes"))
        .filter_map(|(k, _)| k.strip_prefix("pick[")?.strip_suffix(']')?.parse().ok())
        .collect();
    let points = rows
        .into_iter()
        .map(|n| {
            let mut point = Form::new();
            for key in ["object", "id", "name", "unit", "access", "kind"] {
                if let Some(v) = get(&format!("{key}[{n}]")) {
                    point.insert(key.into(), v.to_owned());
                }
            }
            (n, point)
        })
        .collect();
    (into, points)
}

/// Adds the chosen objects as points of a new or existing BACnet device, as one change of
/// `doc`: the device first (for a new one), then each point, every error kept. A point's
/// field errors are on `FIELD[N]` (its row); the device's on its own fields (`id`, ...).
pub fn import_objects(
    lang: Lang,
    doc: &SiteDocument,
    into: &ImportInto,
    rows: &[(usize, Form)],
) -> Result<SiteDocument, FormErrors> {
    let mut errors = FormErrors::default();
    if rows.is_empty() {
        errors.form.push(lang.t(DiscMsg::NothingChosen).to_owned());
    }
    let device = into.device_id();
    // The document so far: `None` while it is still `doc` (points into an existing device).
    let mut current = match into {
        ImportInto::New(form) => Some(edit::upsert_device(doc, None, form)?),
        ImportInto::Existing(id) => {
            if !matches!(
                doc.site().device(id).map(|d| &d.kind),
                Some(DeviceKind::Bacnet(_))
            ) {
                errors.fields.push(FieldError {
                    field: "into".into(),
                    message: lang.f(DiscMsg::NotBacnet, &[("id", id)]),
                });
                return Err(errors);
            }
            None
        }
    };
    for (n, point) in rows {
        match edit::upsert_point(current.as_ref().unwrap_or(doc), &device, None, point) {
            Ok(next) => current = Some(next),
            Err(e) => {
                let object = point.get("object").map_or("?", String::as_str);
                errors
                    .fields
                    .extend(e.fields.into_iter().map(|f| FieldError {
                        field: format!("{}[{n}]", f.field),
                        message: f.message,
                    }));
                errors
                    .form
                    .extend(e.form.into_iter().map(|m| format!("{object}: {m}")));
            }
        }
    }
    match current {
        Some(done) if errors.is_empty() => Ok(done),
        _ => Err(errors),
    }
}

// ---------------------------------------------------------------------------------------
// The page
// ---------------------------------------------------------------------------------------

/// A browsed device (instance, address) and its objects.
pub type Browsed = (
    u32,
    Option<SocketAddrV4>,
    Result<Vec<ObjectSummary>, ApiError>,
);

/// What the page's searches found.
#[derive(Debug, Default)]
pub struct Results {
    /// Field errors of the search forms.
    pub errors: Errors,
    pub whois: Option<Result<Vec<FoundDevice>, ApiError>>,
    /// The device browsed (instance, address) and its objects.
    pub objects: Option<Browsed>,
    pub scan: Option<(Scan, Result<Vec<UnitAnswer>, ApiError>)>,
}

impl Results {
    /// 422 for bad input, the gateway's status for a failed search, else 200.
    pub fn status(&self) -> StatusCode {
        if !self.errors.is_empty() {
            return StatusCode::UNPROCESSABLE_ENTITY;
        }
        let failures = [
            self.whois.as_ref().and_then(|r| r.as_ref().err()),
            self.objects.as_ref().and_then(|(_, _, r)| r.as_ref().err()),
            self.scan.as_ref().and_then(|(_, r)| r.as_ref().err()),
        ];
        match failures.into_iter().flatten().next() {
            None => StatusCode::OK,
            Some(ApiError::BadRequest(_)) => StatusCode::UNPROCESSABLE_ENTITY,
            Some(ApiError::NotFound(_)) => StatusCode::NOT_FOUND,
            Some(ApiError::Refused(_) | ApiError::Conflict { .. }) => StatusCode::CONFLICT,
            Some(ApiError::Unavailable(_)) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// A text input with its label and its error, if the search had one.
fn field(name: &str, label: &str, value: &str, errors: &Errors) -> String {
    let error = errors
        .iter()
        .filter(|(f, _)| f == name)
        .map(|(_, m)| m.as_str())
        .collect::<Vec<_>>()
        .join("; ");
    format!(
        "<div><label>{label}<input name=\"{name}\" value=\"{value}\"{invalid}></label>\
         <small class=\"err\" data-for=\"{name}\">{error}</small></div>",
        name = esc(name),
        label = esc(label),
        value = esc(value),
        invalid = if error.is_empty() {
            ""
        } else {
            " class=\"invalid\""
        },
        error = esc(&error),
    )
}

fn error_line(e: &ApiError) -> String {
    format!("<p class=\"err\">{}</p>", esc(&e.to_string()))
}

fn value_of<'a>(q: &'a Form, key: &str) -> &'a str {
    q.get(key).map_or("", String::as_str)
}

/// The whole page body: the three searches with their results.
pub fn discovery_body(lang: Lang, site: &Site, q: &Form, results: &Results) -> String {
    let mut out = String::new();
    out.push_str(&whois_section(lang, q, results));
    if let Some((instance, address, objects)) = &results.objects {
        out.push_str(&objects_section(lang, site, *instance, *address, objects));
    }
    out.push_str(&scan_section(lang, site, q, results));
    out
}

fn whois_section(lang: Lang, q: &Form, results: &Results) -> String {
    let e = &results.errors;
    let mut out = format!(
        "<h2 id=\"whois\">{title}</h2><form method=\"get\" action=\"/discovery#whois\" data-plain>\
         <input type=\"hidden\" name=\"whois\" value=\"1\"><div class=\"row\">{low}{high}{target}{wait}</div>\
         <button type=\"submit\">{send}</button></form>",
        title = esc(lang.t(DiscMsg::WhoIsTitle)),
        low = field("low", lang.t(DiscMsg::Low), value_of(q, "low"), e),
        high = field("high", lang.t(DiscMsg::High), value_of(q, "high"), e),
        target = field("target", lang.t(DiscMsg::Target), value_of(q, "target"), e),
        wait = field(
            "wait",
            lang.t(DiscMsg::Wait),
            q.get("wait").map_or("2", String::as_str),
            e
        ),
        send = esc(lang.t(DiscMsg::SendWhoIs)),
    );
    match &results.whois {
        None => {}
        Some(Err(err)) => out.push_str(&error_line(err)),
        Some(Ok(found)) if found.is_empty() => out.push_str(&format!(
            "<p class=\"muted\">{}</p>",
            esc(lang.t(DiscMsg::NoneFound))
        )),
        Some(Ok(found)) => {
            out.push_str(&format!(
                "<p>{}</p><table id=\"found\"><thead><tr><th>{}</th><th>{}</th><th>{}</th>\
                 <th>{}</th><th>{}</th><th>{}</th><th></th></tr></thead><tbody>",
                esc(&lang.f(DiscMsg::Found, &[("n", &found.len().to_string())])),
                esc(lang.t(DiscMsg::Instance)),
                esc(lang.t(DiscMsg::Address)),
                esc(lang.t(DiscMsg::Network)),
                esc(lang.t(DiscMsg::Vendor)),
                esc(lang.t(DiscMsg::MaxApdu)),
                esc(lang.t(DiscMsg::OnSite)),
            ));
            for d in found {
                let on_site = match &d.device {
                    Some(id) => format!("<a href=\"/devices/{id}\">{id}</a>", id = esc(id)),
                    None => format!(
                        "<span class=\"muted\">{}</span>",
                        esc(lang.t(DiscMsg::NotOnSite))
                    ),
                };
                let mut browse = format!("/discovery?browse={}", d.instance);
                if let Some(a) = &d.address {
                    browse.push_str(&format!("&address={}", encode_component(a)));
                }
                browse.push_str("#objects");
                out.push_str(&format!(
                    "<tr data-instance=\"{instance}\"><td>{instance}</td><td>{address}</td>\
                     <td>{network}</td><td>{vendor}</td><td>{apdu}</td><td>{on_site}</td>\
                     <td><a href=\"{browse}\">{label}</a></td></tr>",
                    instance = d.instance,
                    address = esc(d.address.as_deref().unwrap_or("")),
                    network = d.network.map(|n| n.to_string()).unwrap_or_default(),
                    vendor = d.vendor_id,
                    apdu = d.max_apdu,
                    browse = esc(&browse),
                    label = esc(lang.t(DiscMsg::Browse)),
                ));
            }
            out.push_str("</tbody></table>");
        }
    }
    out
}

fn objects_section(
    lang: Lang,
    site: &Site,
    instance: u32,
    address: Option<SocketAddrV4>,
    objects: &Result<Vec<ObjectSummary>, ApiError>,
) -> String {
    let mut out = format!(
        "<h2 id=\"objects\">{}</h2>",
        esc(&lang.f(DiscMsg::ObjectsOf, &[("instance", &instance.to_string())]))
    );
    let objects = match objects {
        Err(e) => {
            out.push_str(&error_line(e));
            return out;
        }
        Ok(o) => o,
    };
    // Where the points go: the site's device with this instance, else a new one.
    let bacnet: Vec<(&str, u32)> = (site.devices.iter())
        .filter_map(|d| match &d.kind {
            DeviceKind::Bacnet(c) => Some((d.id.as_str(), c.instance)),
            _ => None,
        })
        .collect();
    let known = bacnet
        .iter()
        .find(|(_, i)| *i == instance)
        .map(|(id, _)| *id);
    let labels: Vec<String> = bacnet
        .iter()
        .map(|(id, i)| {
            lang.f(
                DiscMsg::Existing,
                &[("id", id), ("instance", &i.to_string())],
            )
        })
        .collect();
    let options: Vec<(&str, &str)> = bacnet
        .iter()
        .zip(&labels)
        .map(|((id, _), label)| (*id, label.as_str()))
        .collect();
    let mut new_id = format!("bacnet-{instance}");
    let mut k = 2;
    while site.device(&new_id).is_some() {
        new_id = format!("bacnet-{instance}-{k}");
        k += 1;
    }
    out.push_str(&format!(
        "<form method=\"post\" action=\"/discovery/import\">\
         <input type=\"hidden\" name=\"instance\" value=\"{instance}\">\
         <input type=\"hidden\" name=\"address\" value=\"{address}\">\
         {into}<div class=\"row\">{id}{name}</div><small class=\"err\" data-for=\"instance\"></small>\
         <small class=\"err\" data-for=\"address\"></small>\
         <table id=\"object-list\"><thead><tr><th>{pick}</th><th>{object}</th><th>{oname}</th>\
         <th>{pv}</th><th>{kind}</th><th>{pid}</th><th>{pname}</th><th>{access}</th><th>{unit}</th>\
         </tr></thead><tbody>",
        address = address.map(|a| a.to_string()).unwrap_or_default(),
        into = select(
            "into",
            lang.t(DiscMsg::Into),
            &options,
            known.unwrap_or(""),
            Some(lang.t(DiscMsg::NewDevice))
        ),
        id = field("id", lang.t(DiscMsg::NewId), &new_id, &Errors::new()),
        name = field("name", lang.t(DiscMsg::NewName), "", &Errors::new()),
        pick = esc(lang.t(DiscMsg::Pick)),
        object = esc(lang.t(DiscMsg::Object)),
        oname = esc(lang.t(DiscMsg::Name)),
        pv = esc(lang.t(DiscMsg::PresentValue)),
        kind = esc(lang.t(DiscMsg::Kind)),
        pid = esc(lang.t(DiscMsg::PointId)),
        pname = esc(lang.t(DiscMsg::PointName)),
        access = esc(lang.t(DiscMsg::Access)),
        unit = esc(lang.t(DiscMsg::Unit)),
    ));
    let mut used: BTreeSet<String> = BTreeSet::new();
    for (n, o) in objects.iter().enumerate() {
        let value =
            super::devices::value_text(&o.present_value, None, o.units.as_deref().map(unit_symbol));
        let importable = o.kind.is_some();
        let pick = if importable {
            format!(
                "<input type=\"checkbox\" name=\"pick[{n}]\" value=\"on\" aria-label=\"{}\">\
                 <input type=\"hidden\" name=\"object[{n}]\" value=\"{}\">\
                 <small class=\"err\" data-for=\"object[{n}]\"></small>",
                esc(lang.t(DiscMsg::Pick)),
                esc(&o.object),
            )
        } else {
            String::new()
        };
        out.push_str(&format!(
            "<tr data-object=\"{object}\"><td>{pick}</td><td>{object}</td><td>{name}</td>\
             <td>{value}</td><td>{kind}</td>",
            object = esc(&o.object),
            name = esc(o.name.as_deref().unwrap_or("")),
            value = esc(&value),
            kind = esc(o.kind.unwrap_or("")),
        ));
        if !importable {
            // No present value to make a point of (the device object, files, ...).
            out.push_str("<td></td><td></td><td></td><td></td></tr>");
            continue;
        }
        let mut id = point_id_for(&o.object, o.name.as_deref());
        let base = id.clone();
        let mut k = 2;
        while !used.insert(id.clone()) {
            id = format!("{base}-{k}");
            k += 1;
        }
        let cell = |key: &str, value: &str| {
            format!(
                "<td><input name=\"{key}[{n}]\" value=\"{}\"><small class=\"err\" \
                 data-for=\"{key}[{n}]\"></small></td>",
                esc(value)
            )
        };
        out.push_str(&cell("id", &id));
        out.push_str(&cell("name", o.name.as_deref().unwrap_or("")));
        let chosen = default_access(&o.object_type);
        let options: String = (edit::POINT_ACCESS.iter())
            .map(|a| {
                let selected = if *a == chosen { " selected" } else { "" };
                format!("<option value=\"{a}\"{selected}>{a}</option>")
            })
            .collect();
        out.push_str(&format!(
            "<td><select name=\"access[{n}]\" aria-label=\"{}\">{options}</select>\
             <small class=\"err\" data-for=\"access[{n}]\"></small></td>",
            esc(lang.t(DiscMsg::Access))
        ));
        out.push_str(&cell(
            "unit",
            o.units.as_deref().map(unit_symbol).unwrap_or(""),
        ));
        out.push_str("</tr>");
    }
    out.push_str(&format!(
        "</tbody></table><button type=\"submit\">{}</button></form>",
        esc(lang.t(DiscMsg::ImportButton))
    ));
    out
}

fn scan_section(lang: Lang, site: &Site, q: &Form, results: &Results) -> String {
    let e = &results.errors;
    let bus_labels: Vec<(String, String)> = (site.buses.iter())
        .map(|b| {
            (
                format!("bus:{}", b.id),
                lang.f(DiscMsg::ViaBus, &[("bus", &b.id)]),
            )
        })
        .collect();
    let mut via: Vec<(&str, &str)> = vec![("tcp", lang.t(DiscMsg::ViaTcp))];
    via.extend(bus_labels.iter().map(|(v, l)| (v.as_str(), l.as_str())));
    let tables: Vec<(&str, &str)> = edit::MODBUS_TABLES.iter().map(|t| (*t, *t)).collect();
    let mut out = format!(
        "<h2 id=\"scan\">{title}</h2><form method=\"get\" action=\"/discovery#scan\" data-plain>\
         <input type=\"hidden\" name=\"scan\" value=\"1\"><div class=\"row\"><div>{via}</div>{host}{port}</div>\
         <div class=\"row\">{from}{to}<div>{table}</div>{address}{timeout}</div>\
         <button type=\"submit\">{start}</button></form>",
        title = esc(lang.t(DiscMsg::ScanTitle)),
        via = select(
            "via",
            lang.t(DiscMsg::Via),
            &via,
            q.get("via").map_or("tcp", String::as_str),
            None
        ),
        host = field("host", lang.t(DiscMsg::Host), value_of(q, "host"), e),
        port = field(
            "port",
            lang.t(DiscMsg::Port),
            q.get("port").map_or("502", String::as_str),
            e
        ),
        from = field(
            "from",
            lang.t(DiscMsg::From),
            q.get("from").map_or("1", String::as_str),
            e
        ),
        to = field(
            "to",
            lang.t(DiscMsg::To),
            q.get("to").map_or("247", String::as_str),
            e
        ),
        table = select(
            "table",
            lang.t(DiscMsg::ProbeTable),
            &tables,
            q.get("table").map_or("holding_register", String::as_str),
            None
        ),
        address = field(
            "probe_address",
            lang.t(DiscMsg::ProbeAddress),
            q.get("probe_address").map_or("0", String::as_str),
            e
        ),
        timeout = field(
            "timeout_ms",
            lang.t(DiscMsg::ProbeTimeout),
            value_of(q, "timeout_ms"),
            e
        ),
        start = esc(lang.t(DiscMsg::StartScan)),
    );
    let Some((scan, found)) = &results.scan else {
        return out;
    };
    let found = match found {
        Err(err) => {
            out.push_str(&error_line(err));
            return out;
        }
        Ok(f) => f,
    };
    if found.is_empty() {
        out.push_str(&format!(
            "<p class=\"muted\">{}</p>",
            esc(lang.t(DiscMsg::NoUnits))
        ));
    } else {
        out.push_str(&format!(
            "<table id=\"units\"><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>\
             </thead><tbody>",
            esc(lang.t(DiscMsg::UnitId)),
            esc(lang.t(DiscMsg::Answer)),
            esc(lang.t(DiscMsg::Took)),
            esc(lang.t(DiscMsg::Device)),
        ));
        for u in found {
            let answer = match u.exception {
                None => lang.t(DiscMsg::Answered).to_owned(),
                Some(code) => lang.f(
                    DiscMsg::ExceptionAnswer,
                    &[
                        ("code", &format!("{code:02X}")),
                        ("name", u.exception_name.unwrap_or("")),
                    ],
                ),
            };
            let device = match &u.device {
                Some(id) => format!("<a href=\"/devices/{id}\">{id}</a>", id = esc(id)),
                None => format!(
                    "<a href=\"{}\">{}</a>",
                    esc(&add_link(&scan.target, u.unit)),
                    esc(lang.t(DiscMsg::AddAsDevice))
                ),
            };
            out.push_str(&format!(
                "<tr data-unit=\"{unit}\"><td>{unit}</td><td>{answer}</td><td>{took}</td>\
                 <td>{device}</td></tr>",
                unit = u.unit,
                answer = esc(&answer),
                took = u.took_ms,
            ));
        }
        out.push_str("</tbody></table>");
    }
    let present: Vec<u8> = found.iter().map(|u| u.unit).collect();
    let absent = absent_units(&scan.units, &present);
    if !absent.is_empty() {
        out.push_str(&format!(
            "<p class=\"muted\">{}</p>",
            esc(&lang.f(DiscMsg::Absent, &[("units", &absent)]))
        ));
    }
    out
}

/// The add-device form of `/devices`, pre-filled for a unit a scan found.
pub fn add_link(target: &ScanTarget, unit: u8) -> String {
    let mut link = String::from("/devices?");
    match target {
        ScanTarget::Bus(bus) => link.push_str(&format!(
            "protocol=modbus-rtu&bus={}&unit={unit}&id={}",
            encode_component(bus),
            encode_component(&format!("{bus}-unit-{unit}")),
        )),
        ScanTarget::Tcp { host, port } => link.push_str(&format!(
            "protocol=modbus-tcp&host={}&port={port}&unit={unit}",
            encode_component(host),
        )),
    }
    link.push_str("#add");
    link
}

// ---------------------------------------------------------------------------------------
// Routes
// ---------------------------------------------------------------------------------------

/// Runs the searches the query asks for.
async fn search(ctx: &PageCtx, lang: Lang, q: &Form) -> Results {
    let mut results = Results::default();
    let g = &ctx.gateway;
    if q.contains_key("whois") {
        match parse_whois(lang, q) {
            Ok(w) => {
                results.whois = Some(g.bacnet_discover(w.low, w.high, w.target, w.wait).await);
            }
            Err(e) => results.errors.extend(e),
        }
    }
    if let Some(instance) = text(q, "browse") {
        let mut errors = Errors::new();
        let instance = match instance.parse::<u32>() {
            Ok(i) => Some(i),
            Err(_) => {
                errors.push((
                    "browse".into(),
                    lang.f(DiscMsg::NotNumber, &[("text", instance)]),
                ));
                None
            }
        };
        let address = text(q, "address").and_then(|t| {
            let a = bacnet_target(t);
            if a.is_none() {
                errors.push(("address".into(), lang.f(DiscMsg::NotTarget, &[("text", t)])));
            }
            a
        });
        match instance {
            Some(i) if errors.is_empty() => {
                results.objects = Some((i, address, g.bacnet_objects(i, address).await));
            }
            _ => results.errors.extend(errors),
        }
    }
    if q.contains_key("scan") {
        match parse_scan(lang, q) {
            Ok(scan) => {
                let found = g
                    .modbus_scan(scan.target.clone(), scan.units.clone(), scan.probe.clone())
                    .await;
                results.scan = Some((scan, found));
            }
            Err(e) => results.errors.extend(e),
        }
    }
    results
}

/// The page, the searches and the import.
pub fn routes(ctx: &PageCtx) -> BoxedFilter<(Response,)> {
    let c = &ctx.console;
    let page = warp::path!("discovery")
        .and(warp::get())
        .and(need(c, Role::Installer))
        .and(page_lang())
        .and(
            warp::query::<HashMap<String, String>>()
                .or(warp::any().map(HashMap::new))
                .unify(),
        )
        .and(with_ctx(ctx))
        .then(
            |caller: Caller,
             _: RequestInfo,
             lang: Lang,
             chosen: bool,
             q: HashMap<String, String>,
             ctx: PageCtx| async move {
                let q: Form = q.into_iter().filter(|(k, _)| k != "lang").collect();
                let title = lang.t(DiscMsg::Title);
                let doc = match super::devices::document(&ctx).await {
                    Ok(doc) => doc,
                    Err(why) => {
                        return super::devices::page(
                            lang,
                            chosen,
                            &caller,
                            title,
                            Err((StatusCode::SERVICE_UNAVAILABLE, why)),
                        );
                    }
                };
                let results = search(&ctx, lang, &q).await;
                let body = discovery_body(lang, doc.site(), &q, &results);
                let mut r = html(layout(lang, title, Some(&caller), &body));
                *r.status_mut() = results.status();
                remember(r, lang, chosen)
            },
        )
        .boxed();
    let import = warp::path!("discovery" / "import")
        .and(warp::post())
        .and(need(c, Role::Installer))
        .and(page_lang())
        .and(form_body())
        .and(with_ctx(ctx))
        .then(
            |caller: Caller,
             req: RequestInfo,
             lang: Lang,
             _: bool,
             f: HashMap<String, String>,
             ctx: PageCtx| async move {
                let form: Form = f.into_iter().collect();
                let (into, rows) = import_request(&form);
                let device = into.device_id();
                ctx.apply_edit(
                    &caller,
                    &req,
                    "discovery.import",
                    &device,
                    &format!("/devices/{device}"),
                    |doc| import_objects(lang, doc, &into, &rows),
                )
                .await
            },
        )
        .boxed();
    page.or(import).unify().boxed()
}

#[cfg(test)]
mod tests;
