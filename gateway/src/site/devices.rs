//! The site file's field side: devices, their points, RS-485 buses, the BACnet network and
//! serial profiles, for Modbus TCP, Modbus RTU, BACnet/IP and serial line devices.
//!
//! One `[[devices]]` list whatever the protocol (`protocol = "modbus-tcp" | "modbus-rtu" |
//! "bacnet" | "serial"`); a key that belongs to another protocol is an error, not silently
//! ignored. Every check reports its line, column and path through the site's `Checker`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use drivers::bacnet::{
    BacnetDeviceConfig, BacnetNetworkConfig, BacnetPoint, DeviceAddress, ObjectRef, ValueKind,
    parse_property,
};
use drivers::modbus::rtu::{
    Parity as RtuParity, RtuBusConfig, RtuLink, RtuUnitConfig, SerialLine, validate_bus,
};
use drivers::point::{
    Access, DataType, ModbusAddress, ModbusPoint, ModbusTable, ValueLabels, WordOrder,
};
use drivers::serial::{Parity as SerialParity, ProfileSpec, SerialDeviceConfig, SerialDeviceSpec};
use scenes::Span;
use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::{Checker, id_rule, valid_id};

// ---------------------------------------------------------------------------------------
// Wire format
// ---------------------------------------------------------------------------------------

#[derive(Debug, Serialize, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub(super) enum ProtocolFile {
    ModbusTcp,
    ModbusRtu,
    Bacnet,
    Serial,
}

impl ProtocolFile {
    fn name(self) -> &'static str {
        match self {
            ProtocolFile::ModbusTcp => "modbus-tcp",
            ProtocolFile::ModbusRtu => "modbus-rtu",
            ProtocolFile::Bacnet => "bacnet",
            ProtocolFile::Serial => "serial",
        }
    }
}

#[derive(Debug, Serialize, Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub(super) enum ParityFile {
    None,
    Even,
    Odd,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DeviceFile {
    pub(super) id: Spanned<String>,
    name: Option<String>,
    protocol: Spanned<ProtocolFile>,
    poll: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    // Modbus TCP
    host: Option<Spanned<String>>,
    port: Option<Spanned<i64>>,
    // Modbus TCP and RTU
    unit: Option<Spanned<i64>>,
    // Modbus RTU
    bus: Option<Spanned<String>>,
    retries: Option<Spanned<i64>>,
    // BACnet
    instance: Option<Spanned<i64>>,
    address: Option<Spanned<String>>,
    /// "discover" (default), "directed" (Who-Is to `address` only) or "static" (no Who-Is).
    address_mode: Option<Spanned<String>>,
    /// COV subscription lifetime, or "off" to poll everything.
    cov: Option<Spanned<String>>,
    rpm_batch: Option<Spanned<i64>>,
    // Serial line devices
    serial_port: Option<Spanned<String>>,
    baud: Option<Spanned<i64>>,
    parity: Option<ParityFile>,
    data_bits: Option<Spanned<i64>>,
    stop_bits: Option<Spanned<i64>>,
    profile: Option<Spanned<String>>,
    silence_timeout: Option<Spanned<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    points: Vec<PointFile>,
}

#[derive(Debug, Serialize, Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum TableFile {
    Coil,
    DiscreteInput,
    InputRegister,
    HoldingRegister,
}

#[derive(Debug, Serialize, Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum WordOrderFile {
    HighFirst,
    LowFirst,
}

#[derive(Debug, Serialize, Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum PointAccessFile {
    Read,
    Write,
    ReadWrite,
}

#[derive(Debug, Serialize, Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum KindFile {
    Real,
    Unsigned,
    Enumerated,
    Boolean,
    Binary,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PointFile {
    pub(super) id: Spanned<String>,
    name: Option<String>,
    access: Option<PointAccessFile>,
    unit: Option<String>,
    /// Poll this point at its own pace (slower than the device's).
    poll: Option<Spanned<String>>,
    /// Value labels: `{ 0 = "off", 1 = "heat" }`.
    labels: Option<Spanned<BTreeMap<String, String>>>,
    // Modbus
    table: Option<TableFile>,
    address: Option<Spanned<i64>>,
    #[serde(rename = "type")]
    data_type: Option<Spanned<String>>,
    bit: Option<Spanned<i64>>,
    word_order: Option<WordOrderFile>,
    /// "ABCD", "CDAB", "BADC", "DCBA" (and 64-bit forms): word and byte order together.
    layout: Option<Spanned<String>>,
    scale: Option<f64>,
    offset: Option<f64>,
    // BACnet
    object: Option<Spanned<String>>,
    property: Option<Spanned<String>>,
    priority: Option<Spanned<i64>>,
    kind: Option<KindFile>,
    cov: Option<bool>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BusFile {
    id: Spanned<String>,
    /// A local serial port, e.g. "/dev/ttyUSB0"; or `host`/`port` for a serial server.
    serial_port: Option<Spanned<String>>,
    host: Option<Spanned<String>>,
    port: Option<Spanned<i64>>,
    baud: Option<Spanned<i64>>,
    parity: Option<ParityFile>,
    data_bits: Option<Spanned<i64>>,
    stop_bits: Option<Spanned<i64>>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BacnetFile {
    /// The local IPv4 address to bind (default 0.0.0.0).
    interface: Option<Spanned<String>>,
    port: Option<Spanned<i64>>,
    /// The broadcast address of the BACnet network (default 255.255.255.255).
    broadcast: Option<Spanned<String>>,
    /// Register as a foreign device with this BBMD ("ip:port") for routed networks.
    bbmd: Option<Spanned<String>>,
    bbmd_ttl: Option<Spanned<String>>,
    apdu_timeout: Option<Spanned<String>>,
    apdu_retries: Option<Spanned<i64>>,
}

// ---------------------------------------------------------------------------------------
// The validated model
// ---------------------------------------------------------------------------------------

/// A field device and how to reach it.
#[derive(Debug, Clone, PartialEq)]
pub struct Device {
    pub id: String,
    pub name: String,
    pub kind: DeviceKind,
    pub points: Vec<PointDef>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum DeviceKind {
    ModbusTcp {
        addr: SocketAddr,
        unit: u8,
        poll: Duration,
        timeout: Duration,
    },
    ModbusRtu {
        bus: String,
        unit: RtuUnitConfig,
    },
    Bacnet(BacnetDeviceConfig),
    Serial(SerialDeviceConfig),
}

impl Device {
    /// Where the device is, for people: "10.0.3.21:502 unit 1", "bus rs485-1 unit 3", ...
    pub fn address(&self) -> String {
        match &self.kind {
            DeviceKind::ModbusTcp { addr, unit, .. } => format!("{addr} unit {unit}"),
            DeviceKind::ModbusRtu { bus, unit } => format!("bus {bus} unit {}", unit.unit),
            DeviceKind::Bacnet(c) => match c.address {
                DeviceAddress::Discover => format!("BACnet device {}", c.instance),
                DeviceAddress::Directed(a) | DeviceAddress::Static(a) => {
                    format!("BACnet device {} at {a}", c.instance)
                }
            },
            DeviceKind::Serial(c) => format!("serial {}", c.port.path),
        }
    }
}

/// A point of a device, whatever the protocol.
#[derive(Debug, Clone, PartialEq)]
pub struct PointDef {
    /// The point's id within its device.
    pub id: String,
    pub name: String,
    pub unit: Option<String>,
    pub access: Access,
    /// Whether the point carries on/off (else a number).
    pub is_bool: bool,
    pub labels: ValueLabels,
    pub protocol: PointProtocol,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PointProtocol {
    Modbus(ModbusPoint),
    Bacnet(BacnetPoint),
    /// An occupancy point reported by a serial device's profile.
    Serial,
}

/// An RS-485 line (or a serial server) carrying Modbus RTU units.
#[derive(Debug, Clone, PartialEq)]
pub struct Bus {
    pub id: String,
    pub config: RtuBusConfig,
}

/// Everything on the field side of a site.
#[derive(Debug, Clone, Default)]
pub struct Field {
    pub devices: Vec<Device>,
    pub buses: Vec<Bus>,
    /// Present when the site has BACnet devices.
    pub bacnet: Option<BacnetNetworkConfig>,
    /// Reader names per serial device (`device` -> readers), for `reader` bindings.
    pub readers: HashMap<String, Vec<String>>,
}

// ---------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------

fn int_in<T: TryFrom<i64>>(
    ck: &mut Checker<'_>,
    v: &Spanned<i64>,
    path: String,
    what: &str,
    range: &str,
) -> Option<T> {
    match T::try_from(*v.get_ref()) {
        Ok(x) => Some(x),
        Err(_) => {
            ck.err(
                v,
                path,
                format!("{what} {} is out of range {range}", v.get_ref()),
            );
            None
        }
    }
}

fn millis(s: Span) -> Duration {
    Duration::from_millis(s.as_millis().unsigned_abs())
}

fn socket_v4(ck: &mut Checker<'_>, v: &Spanned<String>, path: String) -> Option<SocketAddrV4> {
    let text = v.get_ref();
    let parsed = text.parse::<SocketAddrV4>().ok().or_else(|| {
        text.parse::<Ipv4Addr>()
            .ok()
            .map(|ip| SocketAddrV4::new(ip, 47808))
    });
    if parsed.is_none() {
        ck.err(
            v,
            path,
            format!("'{text}' is not an IPv4 address (with an optional :port)"),
        );
    }
    parsed
}

/// Keys that only one protocol takes, and which one, for a clear error when misplaced.
fn foreign_keys(
    d: &DeviceFile,
) -> Vec<(
    &'static str,
    std::ops::Range<usize>,
    &'static [ProtocolFile],
)> {
    use ProtocolFile::*;
    let mut out = Vec::new();
    let mut check =
        |name: &'static str, span: Option<std::ops::Range<usize>>, ok: &'static [ProtocolFile]| {
            if let Some(span) = span {
                out.push((name, span, ok));
            }
        };
    check("host", d.host.as_ref().map(Spanned::span), &[ModbusTcp]);
    check("port", d.port.as_ref().map(Spanned::span), &[ModbusTcp]);
    check(
        "unit",
        d.unit.as_ref().map(Spanned::span),
        &[ModbusTcp, ModbusRtu],
    );
    check("bus", d.bus.as_ref().map(Spanned::span), &[ModbusRtu]);
    check(
        "retries",
        d.retries.as_ref().map(Spanned::span),
        &[ModbusRtu],
    );
    check(
        "instance",
        d.instance.as_ref().map(Spanned::span),
        &[Bacnet],
    );
    check("address", d.address.as_ref().map(Spanned::span), &[Bacnet]);
    check(
        "address_mode",
        d.address_mode.as_ref().map(Spanned::span),
        &[Bacnet],
    );
    check("cov", d.cov.as_ref().map(Spanned::span), &[Bacnet]);
    check(
        "rpm_batch",
        d.rpm_batch.as_ref().map(Spanned::span),
        &[Bacnet],
    );
    check(
        "serial_port",
        d.serial_port.as_ref().map(Spanned::span),
        &[Serial],
    );
    check("baud", d.baud.as_ref().map(Spanned::span), &[Serial]);
    check(
        "data_bits",
        d.data_bits.as_ref().map(Spanned::span),
        &[Serial],
    );
    check(
        "stop_bits",
        d.stop_bits.as_ref().map(Spanned::span),
        &[Serial],
    );
    check("profile", d.profile.as_ref().map(Spanned::span), &[Serial]);
    check(
        "silence_timeout",
        d.silence_timeout.as_ref().map(Spanned::span),
        &[Serial],
    );
    out.retain(|(_, _, ok)| !ok.contains(d.protocol.get_ref()));
    out
}

fn require<'a, T>(
    ck: &mut Checker<'_>,
    v: &'a Option<Spanned<T>>,
    d: &DeviceFile,
    path: &str,
    key: &str,
) -> Option<&'a Spanned<T>> {
    if v.is_none() {
        ck.err(
            &d.id,
            path,
            format!("a {} device needs `{key}`", d.protocol.get_ref().name()),
        );
    }
    v.as_ref()
}

/// Loads buses, the BACnet network, serial profiles and devices; every error into `ck`.
pub(super) fn build_field(
    ck: &mut Checker<'_>,
    devices: &[DeviceFile],
    buses: &[BusFile],
    bacnet: Option<&BacnetFile>,
    profiles: &BTreeMap<String, ProfileSpec>,
) -> Field {
    let mut field = Field::default();
    let mut bus_ids = HashSet::new();
    for b in buses {
        let id = b.id.get_ref().clone();
        let path = format!("buses[{id}]");
        if !valid_id(&id) {
            ck.err(&b.id, format!("{path}.id"), id_rule(&id));
        }
        if !bus_ids.insert(id.clone()) {
            ck.err(&b.id, &path, format!("bus id '{id}' is used twice"));
        }
        if let Some(config) = build_bus(ck, b, &path) {
            field.buses.push(Bus { id, config });
        }
    }
    for (name, spec) in profiles {
        if let Err(e) = drivers::serial::Profile::compile(spec) {
            ck.errors.push(super::SiteError {
                line_col: None,
                path: format!("serial_profiles.{name}"),
                message: e.to_string(),
            });
        }
    }

    let mut ids = HashSet::new();
    let mut rtu_units: HashMap<String, Vec<RtuUnitConfig>> = HashMap::new();
    for d in devices {
        let id = d.id.get_ref().clone();
        let path = format!("devices[{id}]");
        if !valid_id(&id) {
            ck.err(&d.id, format!("{path}.id"), id_rule(&id));
        }
        if !ids.insert(id.clone()) {
            ck.err(&d.id, &path, format!("device id '{id}' is used twice"));
        }
        let protocol = *d.protocol.get_ref();
        for (key, span, ok) in foreign_keys(d) {
            let lc = ck.line_col(span.start);
            let owners: Vec<&str> = ok.iter().map(|p| p.name()).collect();
            ck.errors.push(super::SiteError {
                line_col: Some(lc),
                path: format!("{path}.{key}"),
                message: format!(
                    "`{key}` is for {} devices; this one is {}",
                    owners.join(" and "),
                    protocol.name()
                ),
            });
        }
        let poll = ck.span_duration(&d.poll, &format!("{path}.poll"), Span::seconds(1));
        let timeout = ck.span_duration(&d.timeout, &format!("{path}.timeout"), Span::seconds(1));
        for (v, what, span) in [(&d.poll, "poll", poll), (&d.timeout, "timeout", timeout)] {
            if let Some(at) = v
                && span < Span::from_millis(10)
            {
                ck.err(at, format!("{path}.{what}"), "must be at least 10ms");
            }
        }
        let mut points = Vec::new();
        let mut point_ids = HashSet::new();
        if protocol == ProtocolFile::Serial && !d.points.is_empty() {
            ck.err(
                &d.points[0].id,
                format!("{path}.points"),
                "a serial device's points come from its profile; list none here",
            );
        }
        for p in d.points.iter().filter(|_| protocol != ProtocolFile::Serial) {
            let pid = p.id.get_ref().clone();
            let ppath = format!("{path}.points[{pid}]");
            if !valid_id(&pid) {
                ck.err(&p.id, format!("{ppath}.id"), id_rule(&pid));
            }
            if !point_ids.insert(pid.clone()) {
                ck.err(
                    &p.id,
                    &ppath,
                    format!("point id '{pid}' is used twice in device '{id}'"),
                );
            }
            let built = match protocol {
                ProtocolFile::Bacnet => build_bacnet_point(ck, p, &ppath),
                _ => build_modbus_point(ck, p, &ppath),
            };
            match built {
                Some(def) => points.push(def),
                None => {
                    ck.invalid_points.insert(format!("{id}/{pid}"));
                }
            }
        }
        let name = d.name.clone().unwrap_or_else(|| id.clone());
        let kind = match protocol {
            ProtocolFile::ModbusTcp => {
                let Some(host) = require(ck, &d.host, d, &path, "host") else {
                    continue;
                };
                let ip: IpAddr = match host.get_ref().parse() {
                    Ok(ip) => ip,
                    Err(_) => {
                        ck.err(
                            host,
                            format!("{path}.host"),
                            format!("'{}' is not an IP address", host.get_ref()),
                        );
                        IpAddr::from([0, 0, 0, 0])
                    }
                };
                let port = match &d.port {
                    None => 502,
                    Some(p) => match u16::try_from(*p.get_ref()) {
                        Ok(v) if v > 0 => v,
                        _ => {
                            ck.err(
                                p,
                                format!("{path}.port"),
                                format!("port {} is out of range 1..=65535", p.get_ref()),
                            );
                            502
                        }
                    },
                };
                let unit = d.unit.as_ref().map_or(Some(1), |u| {
                    int_in(ck, u, format!("{path}.unit"), "Modbus unit id", "0..=255")
                });
                DeviceKind::ModbusTcp {
                    addr: SocketAddr::new(ip, port),
                    unit: unit.unwrap_or(1),
                    poll: millis(poll),
                    timeout: millis(timeout),
                }
            }
            ProtocolFile::ModbusRtu => {
                let Some(bus) = require(ck, &d.bus, d, &path, "bus") else {
                    continue;
                };
                if !bus_ids.contains(bus.get_ref()) {
                    let known: Vec<&str> = field.buses.iter().map(|b| b.id.as_str()).collect();
                    ck.err(
                        bus,
                        format!("{path}.bus"),
                        format!(
                            "unknown bus '{}' (defined: {})",
                            bus.get_ref(),
                            if known.is_empty() {
                                "none: add a [[buses]] entry".to_owned()
                            } else {
                                known.join(", ")
                            }
                        ),
                    );
                }
                let Some(unit) = require(ck, &d.unit, d, &path, "unit") else {
                    continue;
                };
                let unit =
                    match u8::try_from(*unit.get_ref()) {
                        Ok(u) if (1..=247).contains(&u) => u,
                        _ => {
                            ck.err(unit, format!("{path}.unit"), format!(
                            "Modbus RTU unit id {} is out of range 1..=247 (0 is broadcast)",
                            unit.get_ref()
                        ));
                            1
                        }
                    };
                let retries = d.retries.as_ref().map_or(Some(1), |r| {
                    int_in(ck, r, format!("{path}.retries"), "retries", "0..=255")
                });
                let config = RtuUnitConfig {
                    device: id.clone(),
                    unit,
                    points: modbus_points(&points),
                    poll_interval: millis(poll),
                    timeout: millis(timeout),
                    retries: retries.unwrap_or(1),
                };
                rtu_units
                    .entry(bus.get_ref().clone())
                    .or_default()
                    .push(config.clone());
                DeviceKind::ModbusRtu {
                    bus: bus.get_ref().clone(),
                    unit: config,
                }
            }
            ProtocolFile::Bacnet => {
                let Some(instance) = require(ck, &d.instance, d, &path, "instance") else {
                    continue;
                };
                let instance = match u32::try_from(*instance.get_ref()) {
                    Ok(i) if i <= 4_194_302 => i,
                    _ => {
                        ck.err(
                            instance,
                            format!("{path}.instance"),
                            format!(
                                "BACnet device instance {} is out of range 0..=4194302",
                                instance.get_ref()
                            ),
                        );
                        0
                    }
                };
                let mut cfg = BacnetDeviceConfig::new(id.clone(), instance);
                cfg.poll_interval = millis(poll);
                let addr = d
                    .address
                    .as_ref()
                    .and_then(|a| socket_v4(ck, a, format!("{path}.address")));
                cfg.address = match (
                    d.address_mode.as_ref().map(|m| (m, m.get_ref().as_str())),
                    addr,
                ) {
                    (None | Some((_, "discover")), None) => DeviceAddress::Discover,
                    (None | Some((_, "directed")), Some(a)) => DeviceAddress::Directed(a),
                    (Some((_, "static")), Some(a)) => DeviceAddress::Static(a),
                    (Some((m, "directed" | "static")), None) => {
                        ck.err(m, format!("{path}.address_mode"), "needs an `address`");
                        DeviceAddress::Discover
                    }
                    (Some((m, "discover")), Some(_)) => {
                        ck.err(
                            m,
                            format!("{path}.address_mode"),
                            "\"discover\" takes no `address` (use \"directed\" or \"static\")",
                        );
                        DeviceAddress::Discover
                    }
                    (Some((m, other)), _) => {
                        ck.err(
                            m,
                            format!("{path}.address_mode"),
                            format!("'{other}': use \"discover\", \"directed\" or \"static\""),
                        );
                        DeviceAddress::Discover
                    }
                };
                if let Some(cov) = &d.cov {
                    cfg.cov_lifetime = if cov.get_ref() == "off" {
                        None
                    } else {
                        let s = ck.span_duration(
                            &Some(cov.clone()),
                            &format!("{path}.cov"),
                            Span::minutes(5),
                        );
                        if s < Span::seconds(10) {
                            ck.err(
                                cov,
                                format!("{path}.cov"),
                                "a COV lifetime is at least 10s (or \"off\")",
                            );
                        }
                        Some(millis(s))
                    };
                }
                if let Some(b) = &d.rpm_batch
                    && let Some(n) =
                        int_in::<usize>(ck, b, format!("{path}.rpm_batch"), "rpm_batch", "0..")
                {
                    cfg.rpm_max_properties = n;
                }
                DeviceKind::Bacnet(cfg)
            }
            ProtocolFile::Serial => {
                let Some(port) = require(ck, &d.serial_port, d, &path, "serial_port") else {
                    continue;
                };
                let Some(profile) = require(ck, &d.profile, d, &path, "profile") else {
                    continue;
                };
                let small =
                    |ck: &mut Checker<'_>, v: &Option<Spanned<i64>>, key: &str, default: u8| {
                        v.as_ref().map_or(default, |x| {
                            int_in(ck, x, format!("{path}.{key}"), key, "1..=255")
                                .unwrap_or(default)
                        })
                    };
                let data_bits = small(ck, &d.data_bits, "data_bits", 8);
                let stop_bits = small(ck, &d.stop_bits, "stop_bits", 1);
                let baud = d.baud.as_ref().map_or(9600, |b| {
                    int_in(ck, b, format!("{path}.baud"), "baud", "1..=4294967295").unwrap_or(9600)
                });
                let silence = d.silence_timeout.as_ref().map(|s| {
                    ck.span_duration(
                        &Some(s.clone()),
                        &format!("{path}.silence_timeout"),
                        Span::minutes(2),
                    )
                });
                let spec = SerialDeviceSpec {
                    name: id.clone(),
                    port: port.get_ref().clone(),
                    baud,
                    parity: match d.parity {
                        None | Some(ParityFile::None) => SerialParity::None,
                        Some(ParityFile::Even) => SerialParity::Even,
                        Some(ParityFile::Odd) => SerialParity::Odd,
                    },
                    data_bits,
                    stop_bits,
                    profile: profile.get_ref().clone(),
                    silence_timeout_ms: silence.map(|s| s.as_millis().unsigned_abs()),
                    frame_gap_ms: 200,
                    backoff_min_ms: 500,
                    backoff_max_ms: 10_000,
                };
                match spec.to_config(profiles) {
                    Ok(cfg) => {
                        for p in cfg.profile.points() {
                            points.push(PointDef {
                                id: p.clone(),
                                name: p.clone(),
                                unit: None,
                                access: Access::Read,
                                is_bool: true,
                                labels: ValueLabels::default(),
                                protocol: PointProtocol::Serial,
                            });
                        }
                        field
                            .readers
                            .insert(id.clone(), cfg.profile.readers().to_vec());
                        DeviceKind::Serial(cfg)
                    }
                    Err(e) => {
                        ck.err(profile, format!("{path}.profile"), e.to_string());
                        continue;
                    }
                }
            }
        };
        field.devices.push(Device {
            id,
            name,
            kind,
            points,
        });
    }
    // Each bus with its units, as the driver will run it.
    for bus in &field.buses {
        let units = rtu_units.remove(&bus.id).unwrap_or_default();
        if units.is_empty() {
            continue; // a spare line is fine
        }
        if let Err(e) = validate_bus(&bus.config, &units) {
            ck.errors.push(super::SiteError {
                line_col: None,
                path: format!("buses[{}]", bus.id),
                message: e.to_string(),
            });
        }
    }
    // The network's settings are kept when written even before the first BACnet device is
    // added: the console's discovery (Who-Is) runs on them.
    if bacnet.is_some()
        || field
            .devices
            .iter()
            .any(|d| matches!(d.kind, DeviceKind::Bacnet(_)))
    {
        field.bacnet = Some(build_bacnet(ck, bacnet));
    }
    field
}

fn modbus_points(points: &[PointDef]) -> Vec<ModbusPoint> {
    points
        .iter()
        .filter_map(|p| match &p.protocol {
            PointProtocol::Modbus(m) => Some(m.clone()),
            _ => None,
        })
        .collect()
}

fn build_bus(ck: &mut Checker<'_>, b: &BusFile, path: &str) -> Option<RtuBusConfig> {
    let baud = b.baud.as_ref().map_or(Some(19_200), |v| {
        int_in(ck, v, format!("{path}.baud"), "baud", "1..=4294967295")
    })?;
    let byte = |ck: &mut Checker<'_>, v: &Option<Spanned<i64>>, key: &str, default: u8| {
        v.as_ref().map_or(Some(default), |x| {
            int_in(ck, x, format!("{path}.{key}"), key, "1..=255")
        })
    };
    let line = SerialLine {
        baud,
        parity: match b.parity {
            None | Some(ParityFile::Even) => RtuParity::Even,
            Some(ParityFile::None) => RtuParity::None,
            Some(ParityFile::Odd) => RtuParity::Odd,
        },
        data_bits: byte(ck, &b.data_bits, "data_bits", 8)?,
        stop_bits: byte(ck, &b.stop_bits, "stop_bits", 1)?,
    };
    let link = match (&b.serial_port, &b.host) {
        (Some(p), None) => RtuLink::Serial {
            path: p.get_ref().clone(),
            line,
        },
        (None, Some(h)) => {
            let ip: IpAddr = match h.get_ref().parse() {
                Ok(ip) => ip,
                Err(_) => {
                    ck.err(
                        h,
                        format!("{path}.host"),
                        format!("'{}' is not an IP address", h.get_ref()),
                    );
                    return None;
                }
            };
            let port = b.port.as_ref().map_or(Some(502), |p| {
                int_in(ck, p, format!("{path}.port"), "port", "1..=65535")
            })?;
            RtuLink::Tcp {
                addr: SocketAddr::new(ip, port),
                line: Some(line),
            }
        }
        _ => {
            ck.err(
                &b.id,
                path,
                "a bus needs either `serial_port` (RS-485 adapter) or `host` (serial server)",
            );
            return None;
        }
    };
    Some(RtuBusConfig::new(b.id.get_ref().clone(), link))
}

fn build_bacnet(ck: &mut Checker<'_>, f: Option<&BacnetFile>) -> BacnetNetworkConfig {
    let mut cfg = BacnetNetworkConfig::new(Ipv4Addr::UNSPECIFIED);
    let Some(f) = f else { return cfg };
    if let Some(i) = &f.interface {
        match i.get_ref().parse::<Ipv4Addr>() {
            Ok(ip) => cfg.interface = ip,
            Err(_) => ck.err(
                i,
                "bacnet.interface",
                format!("'{}' is not an IPv4 address", i.get_ref()),
            ),
        }
    }
    if let Some(p) = &f.port
        && let Some(port) = int_in::<u16>(ck, p, "bacnet.port".into(), "port", "1..=65535")
    {
        cfg.port = port;
    }
    if let Some(b) = &f.broadcast {
        match b.get_ref().parse::<Ipv4Addr>() {
            Ok(ip) => cfg.broadcast = ip,
            Err(_) => ck.err(
                b,
                "bacnet.broadcast",
                format!("'{}' is not an IPv4 address", b.get_ref()),
            ),
        }
    }
    if let Some(b) = &f.bbmd {
        cfg.foreign_bbmd = socket_v4(ck, b, "bacnet.bbmd".into());
    }
    if f.bbmd_ttl.is_some() {
        cfg.foreign_ttl =
            millis(ck.span_duration(&f.bbmd_ttl, "bacnet.bbmd_ttl", Span::minutes(5)));
    }
    if f.apdu_timeout.is_some() {
        cfg.apdu_timeout =
            millis(ck.span_duration(&f.apdu_timeout, "bacnet.apdu_timeout", Span::seconds(3)));
    }
    if let Some(r) = &f.apdu_retries
        && let Some(n) = int_in::<u8>(
            ck,
            r,
            "bacnet.apdu_retries".into(),
            "apdu_retries",
            "0..=255",
        )
    {
        cfg.apdu_retries = n;
    }
    cfg
}

fn point_access(p: &PointFile, default: Access) -> Access {
    match p.access {
        Some(PointAccessFile::Read) => Access::Read,
        Some(PointAccessFile::Write) => Access::Write,
        Some(PointAccessFile::ReadWrite) => Access::ReadWrite,
        None => default,
    }
}

fn build_labels(ck: &mut Checker<'_>, p: &PointFile, path: &str) -> Option<ValueLabels> {
    let Some(l) = &p.labels else {
        return Some(ValueLabels::default());
    };
    let mut entries = Vec::new();
    for (k, v) in l.get_ref() {
        match k.trim().parse::<i64>() {
            Ok(n) => entries.push((n, v.clone())),
            Err(_) => {
                ck.err(
                    l,
                    format!("{path}.labels"),
                    format!("label key '{k}' is not a whole number"),
                );
                return None;
            }
        }
    }
    Some(ValueLabels::new(entries))
}

fn misplaced(
    ck: &mut Checker<'_>,
    p: &PointFile,
    path: &str,
    keys: &[(&str, bool)],
    protocol: &str,
) {
    for (key, set) in keys {
        if *set {
            ck.err(
                &p.id,
                format!("{path}.{key}"),
                format!("`{key}` is not a {protocol} point key"),
            );
        }
    }
}

pub(super) fn build_modbus_point(
    ck: &mut Checker<'_>,
    p: &PointFile,
    path: &str,
) -> Option<PointDef> {
    misplaced(
        ck,
        p,
        path,
        &[
            ("object", p.object.is_some()),
            ("property", p.property.is_some()),
            ("priority", p.priority.is_some()),
            ("kind", p.kind.is_some()),
            ("cov", p.cov.is_some()),
        ],
        "Modbus",
    );
    let (Some(table), Some(address), Some(data_type)) = (p.table, &p.address, &p.data_type) else {
        ck.err(
            &p.id,
            path,
            "a Modbus point needs `table`, `address` and `type`",
        );
        return None;
    };
    let address = match u16::try_from(*address.get_ref()) {
        Ok(a) => a,
        Err(_) => {
            ck.err(
                address,
                format!("{path}.address"),
                format!(
                    "Modbus address {} is out of range 0..=65535 (addresses are 0-based: register 40001 is address 0)",
                    address.get_ref()
                ),
            );
            return None;
        }
    };
    let data_type: DataType = match data_type.get_ref().parse() {
        Ok(t) => t,
        Err(e) => {
            ck.err(data_type, format!("{path}.type"), format!("{e}"));
            return None;
        }
    };
    let bit = match &p.bit {
        None => None,
        Some(b) => Some(int_in::<u8>(ck, b, format!("{path}.bit"), "bit", "0..=15")?),
    };
    let table = match table {
        TableFile::Coil => ModbusTable::Coil,
        TableFile::DiscreteInput => ModbusTable::DiscreteInput,
        TableFile::InputRegister => ModbusTable::InputRegister,
        TableFile::HoldingRegister => ModbusTable::HoldingRegister,
    };
    let access = point_access(
        p,
        if table.is_writable() {
            Access::ReadWrite
        } else {
            Access::Read
        },
    );
    let labels = build_labels(ck, p, path)?;
    let mut point = ModbusPoint::new(p.id.get_ref().clone(), table, address, data_type)
        .with_access(access)
        .with_scaling(p.scale.unwrap_or(1.0), p.offset.unwrap_or(0.0));
    point.labels = labels.clone();
    point.address = ModbusAddress {
        table,
        address,
        bit,
    };
    if let Some(unit) = &p.unit {
        point = point.with_unit(unit.clone());
    }
    match (&p.layout, p.word_order) {
        (Some(l), None) => match point.clone().with_layout(l.get_ref()) {
            Ok(with) => point = with,
            Err(e) => {
                ck.err(l, format!("{path}.layout"), e.to_string());
                return None;
            }
        },
        (Some(l), Some(_)) => {
            ck.err(
                l,
                format!("{path}.layout"),
                "give `layout` or `word_order`, not both",
            );
            return None;
        }
        (None, Some(WordOrderFile::LowFirst)) => point = point.with_word_order(WordOrder::LowFirst),
        (None, _) => {}
    }
    if let Some(poll) = &p.poll {
        let s = ck.span_duration(
            &Some(poll.clone()),
            &format!("{path}.poll"),
            Span::seconds(1),
        );
        point = point.with_poll_interval(millis(s));
    }
    if let Err(e) = point.validate() {
        ck.err(&p.id, path, e.to_string());
        return None;
    }
    Some(PointDef {
        id: p.id.get_ref().clone(),
        name: p.name.clone().unwrap_or_else(|| p.id.get_ref().clone()),
        unit: p.unit.clone(),
        access,
        is_bool: data_type == DataType::Bool,
        labels,
        protocol: PointProtocol::Modbus(point),
    })
}

pub(super) fn build_bacnet_point(
    ck: &mut Checker<'_>,
    p: &PointFile,
    path: &str,
) -> Option<PointDef> {
    misplaced(
        ck,
        p,
        path,
        &[
            ("table", p.table.is_some()),
            ("address", p.address.is_some()),
            ("type", p.data_type.is_some()),
            ("bit", p.bit.is_some()),
            ("word_order", p.word_order.is_some()),
            ("layout", p.layout.is_some()),
            ("scale", p.scale.is_some()),
            ("offset", p.offset.is_some()),
            ("poll", p.poll.is_some()),
        ],
        "BACnet",
    );
    let Some(object) = &p.object else {
        ck.err(
            &p.id,
            path,
            "a BACnet point needs `object`, e.g. \"analog-value:3\"",
        );
        return None;
    };
    let object_ref: ObjectRef = match object.get_ref().parse() {
        Ok(o) => o,
        Err(e) => {
            ck.err(object, format!("{path}.object"), e.to_string());
            return None;
        }
    };
    let mut point = BacnetPoint::present_value(
        p.id.get_ref().clone(),
        object_ref,
        point_access(p, Access::Read),
    );
    if let Some(prop) = &p.property {
        match parse_property(prop.get_ref()) {
            Ok(id) => {
                point.property = id;
                if let Some(kind) = ValueKind::default_for(object_ref.object_type, id) {
                    point.kind = kind;
                }
            }
            Err(e) => {
                ck.err(prop, format!("{path}.property"), e.to_string());
                return None;
            }
        }
    }
    if let Some(kind) = p.kind {
        point.kind = match kind {
            KindFile::Real => ValueKind::Real,
            KindFile::Unsigned => ValueKind::Unsigned,
            KindFile::Enumerated => ValueKind::Enumerated,
            KindFile::Boolean => ValueKind::Boolean,
            KindFile::Binary => ValueKind::Binary,
        };
    }
    if let Some(pr) = &p.priority {
        point.priority = int_in::<u8>(ck, pr, format!("{path}.priority"), "priority", "1..=16")?;
    }
    if let Some(cov) = p.cov {
        point.cov = cov;
    }
    if let Err(e) = point.validate() {
        ck.err(&p.id, path, e.to_string());
        return None;
    }
    let labels = build_labels(ck, p, path)?;
    Some(PointDef {
        id: p.id.get_ref().clone(),
        name: p.name.clone().unwrap_or_else(|| p.id.get_ref().clone()),
        unit: p.unit.clone(),
        access: point.access,
        is_bool: matches!(point.kind, ValueKind::Boolean | ValueKind::Binary),
        labels,
        protocol: PointProtocol::Bacnet(point),
    })
}
