//! The installer console's commissioning operations on a running gateway: a live test read and
//! test write of one point, Modbus unit scans (an RS-485 bus or a Modbus TCP address), and
//! BACnet discovery and object lists.
//!
//! The main loop only hands out what these need of the field (`FieldView`: the site, the
//! device handles, each bus's scan lane, the BACnet network); the requests themselves run in
//! the caller's task, through the devices' owner tasks, so a slow device never holds up the
//! loop. Results are wire types (`Serialize`) for the console's JSON.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use drivers::bacnet::{BacnetNetwork, BacnetNetworkConfig, ValueKind};
use drivers::device::{DeviceHandle, DriverError};
use drivers::modbus::scan::{self, RtuScanner, ScanError};
use drivers::point::{DataType, Value};
use serde::Serialize;
use tokio::time::Instant;

use super::{ApiError, GatewayHandle, MainLoop, Request};
use crate::site::{DeviceKind, PointDef, PointProtocol, Site};

pub use drivers::modbus::scan::ScanProbe;

/// How long a test read or write may take in all, beyond the drivers' own request timeouts.
const DEVICE_CALL_LIMIT: Duration = Duration::from_secs(30);
/// The longest wait for I-Am answers a discovery may ask for.
const MAX_DISCOVERY_WAIT: Duration = Duration::from_secs(60);
/// How long an object list waits for a device not seen yet to answer a Who-Is.
const LOCATE_WAIT: Duration = Duration::from_secs(3);
/// How long an object list may take in all.
const OBJECT_LIST_LIMIT: Duration = Duration::from_secs(120);
/// The highest BACnet device instance (4194303 is the wildcard, Clause 12.11.1).
const MAX_INSTANCE: u32 = 4_194_302;

/// A point read live from its device.
#[derive(Debug, Clone, Serialize)]
pub struct PointReading {
    pub device: String,
    pub point: String,
    /// `true`/`false` or a number, as the device answered (scaled).
    pub value: serde_json::Value,
    /// The label of a coded value ("heat"), where the point has labels.
    pub label: Option<String>,
    pub unit: Option<String>,
    /// How long the device took to answer, in milliseconds.
    pub took_ms: u64,
    /// The gateway clock's time of the answer, in the site's zone.
    pub at: String,
    pub at_ms: i64,
}

/// A test write and the device's value read back after it.
#[derive(Debug, Clone, Serialize)]
pub struct PointWriteAnswer {
    pub device: String,
    pub point: String,
    /// The value written, as parsed from the text.
    pub written: serde_json::Value,
    pub written_label: Option<String>,
    /// The value the device gave when read right after; `null` when that read failed.
    pub read_back: serde_json::Value,
    pub read_back_label: Option<String>,
    /// Why the read-back failed (the write itself succeeded).
    pub read_back_error: Option<String>,
    pub unit: Option<String>,
    /// Write and read-back together, in milliseconds.
    pub took_ms: u64,
    pub at: String,
    pub at_ms: i64,
}

/// What a Modbus unit scan covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanTarget {
    /// An RS-485 bus of the site, by id: probed through its owner task, between its polls.
    Bus(String),
    /// A Modbus TCP address (a device, or a serial-to-Ethernet gateway with several units),
    /// over a connection of the scan's own.
    Tcp { host: String, port: u16 },
}

/// A Modbus unit that answered a scan's probe.
#[derive(Debug, Clone, Serialize)]
pub struct UnitAnswer {
    pub unit: u8,
    /// The exception it answered with (the unit is there; it refused the probe's address).
    pub exception: Option<u8>,
    pub exception_name: Option<&'static str>,
    /// From the probe on the wire to the answer, in milliseconds.
    pub took_ms: u64,
    /// The site's device at this unit id of this bus or address, if there is one.
    pub device: Option<String>,
}

/// A BACnet device that answered a Who-Is.
#[derive(Debug, Clone, Serialize)]
pub struct FoundDevice {
    pub instance: u32,
    /// `ip:port` its I-Am came from (its router's, for a routed device).
    pub address: Option<String>,
    /// The BACnet network number of a device behind a router.
    pub network: Option<u16>,
    pub vendor_id: u16,
    pub max_apdu: u32,
    /// The site's device with this instance, if there is one.
    pub device: Option<String>,
}

/// One object of a BACnet device.
#[derive(Debug, Clone, Serialize)]
pub struct ObjectSummary {
    /// `analog-value:1`, as the site file writes objects.
    pub object: String,
    /// `analog-value`.
    pub object_type: String,
    pub instance: u32,
    pub name: Option<String>,
    /// The point kind its Present_Value would have ("real", "binary", "unsigned").
    pub kind: Option<&'static str>,
    /// `true`/`false` or a number; `null` when not read.
    pub present_value: serde_json::Value,
    /// Engineering units ("degrees-celsius"), for analog objects.
    pub units: Option<String>,
}

/// What the commissioning operations need of the running field, handed out by the loop.
#[derive(Debug)]
pub(super) struct FieldView {
    site: Arc<Site>,
    devices: HashMap<String, DeviceHandle>,
    scanners: BTreeMap<String, RtuScanner>,
    bacnet: Option<BacnetNetwork>,
}

impl MainLoop {
    /// The site, the device handles, the buses' scan lanes and the BACnet network, as they run.
    pub(super) async fn field_view(&self) -> FieldView {
        let field = self.field.lock().await;
        FieldView {
            site: Arc::clone(&self.site),
            devices: self.devices.clone(),
            scanners: (field.buses.iter())
                .map(|(id, bus)| (id.clone(), bus.scanner()))
                .collect(),
            bacnet: field.bacnet.clone(),
        }
    }
}

impl FieldView {
    /// A point's definition and its device's handle.
    fn point(&self, device: &str, point: &str) -> Result<(&PointDef, &DeviceHandle), ApiError> {
        let d = self
            .site
            .device(device)
            .ok_or_else(|| ApiError::NotFound(format!("no device '{device}' on this site")))?;
        let def = (d.points.iter()).find(|p| p.id == point).ok_or_else(|| {
            ApiError::NotFound(format!("device '{device}' has no point '{point}'"))
        })?;
        let handle = self
            .devices
            .get(device)
            .ok_or_else(|| ApiError::Unavailable(format!("device '{device}' is not running")))?;
        Ok((def, handle))
    }
}

impl GatewayHandle {
    async fn field_view(&self) -> Result<FieldView, ApiError> {
        tokio::time::timeout(super::REQUEST_TIMEOUT, self.call(Request::FieldView))
            .await
            .unwrap_or_else(|_| {
                Err(ApiError::Unavailable(
                    "the gateway is busy (a site reload?); try again".into(),
                ))
            })
    }

    /// Reads a point now, through its device's owner task (not the last polled value), and
    /// says what the device answered and how long it took.
    pub async fn read_point(&self, device: &str, point: &str) -> Result<PointReading, ApiError> {
        let view = self.field_view().await?;
        let (def, handle) = view.point(device, point)?;
        let at = format!("{device}/{point}");
        let started = Instant::now();
        let value = device_call(&at, handle.read(point)).await?;
        let took_ms = millis(started.elapsed());
        let now = self.clock.now();
        Ok(PointReading {
            device: device.to_owned(),
            point: point.to_owned(),
            value: json_value(def, value),
            label: def.labels.label(value).map(str::to_owned),
            unit: def.unit.clone(),
            took_ms,
            at: self.time.rfc3339(now),
            at_ms: now.as_millis(),
        })
    }

    /// Writes a point from text (true/false/on/off/1/0, a number, or one of the point's
    /// labels), then reads it back. Read-only points, text that is not a value of the point
    /// and values out of its range are refused before anything is sent; what the device
    /// refuses comes back in its own words. Every attempt is logged (`commission` target).
    pub async fn write_point(
        &self,
        device: &str,
        point: &str,
        value: &str,
    ) -> Result<PointWriteAnswer, ApiError> {
        let view = self.field_view().await?;
        let (def, handle) = view.point(device, point)?;
        let result = self.test_write(device, def, handle, value).await;
        match &result {
            Ok(answer) => tracing::info!(
                target: "commission",
                device,
                point,
                value,
                read_back = %answer.read_back,
                "test write"
            ),
            Err(error) => tracing::info!(
                target: "commission",
                device,
                point,
                value,
                %error,
                "test write refused"
            ),
        }
        result
    }

    async fn test_write(
        &self,
        device: &str,
        def: &PointDef,
        handle: &DeviceHandle,
        text: &str,
    ) -> Result<PointWriteAnswer, ApiError> {
        let at = &format!("{device}/{}", def.id);
        if !def.access.can_write() {
            return Err(ApiError::BadRequest(format!(
                "{at} is read-only; it cannot be written"
            )));
        }
        let value =
            parse_value(def, text).map_err(|why| ApiError::BadRequest(format!("{at}: {why}")))?;
        check_fits(def, value).map_err(|why| ApiError::BadRequest(format!("{at}: {why}")))?;
        let started = Instant::now();
        device_call(at, handle.write(&def.id, value)).await?;
        let (read_back, read_back_error) = match device_call(at, handle.read(&def.id)).await {
            Ok(v) => (Some(v), None),
            Err(e) => (None, Some(e.to_string())),
        };
        let took_ms = millis(started.elapsed());
        let now = self.clock.now();
        Ok(PointWriteAnswer {
            device: device.to_owned(),
            point: def.id.clone(),
            written: json_value(def, value),
            written_label: def.labels.label(value).map(str::to_owned),
            read_back: read_back.map_or(serde_json::Value::Null, |v| json_value(def, v)),
            read_back_label: read_back
                .and_then(|v| def.labels.label(v))
                .map(str::to_owned),
            read_back_error,
            unit: def.unit.clone(),
            took_ms,
            at: self.time.rfc3339(now),
            at_ms: now.as_millis(),
        })
    }

    /// Finds which Modbus unit ids answer on a bus of the site (through its owner task, so
    /// the bus's polling goes on) or at a Modbus TCP address. Units that answer with an
    /// exception are present; silent ones are not.
    pub async fn modbus_scan(
        &self,
        target: ScanTarget,
        units: RangeInclusive<u8>,
        probe: ScanProbe,
    ) -> Result<Vec<UnitAnswer>, ApiError> {
        let view = self.field_view().await?;
        let on_bus = matches!(target, ScanTarget::Bus(_));
        scan::check_units(&units, on_bus).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let per_unit = probe.timeout_or(if on_bus {
            scan::RTU_PROBE_TIMEOUT
        } else {
            scan::TCP_PROBE_TIMEOUT
        });
        // The drivers bound the scan; this only guards against a stuck owner task.
        let limit = probe.limit_for(&units, per_unit) + Duration::from_secs(10);
        let what = match &target {
            ScanTarget::Bus(bus) => format!("bus '{bus}'"),
            ScanTarget::Tcp { host, port } => format!("{host}:{port}"),
        };
        tracing::info!(target: "commission", scan = %what, ?units, "Modbus unit scan");
        let mut tcp_addr = None;
        let scanned = match &target {
            ScanTarget::Bus(id) => {
                let bus = (view.site.buses.iter())
                    .find(|b| &b.id == id)
                    .ok_or_else(|| {
                        ApiError::NotFound(format!("no RS-485 bus '{id}' on this site"))
                    })?;
                let run = async {
                    match view.scanners.get(id) {
                        Some(scanner) => scanner.scan(units, &probe).await,
                        // A bus with no units yet has no owner task: one for the scan alone.
                        None => scan::scan_line(bus.config.clone(), units, &probe).await,
                    }
                };
                tokio::time::timeout(limit, run).await
            }
            ScanTarget::Tcp { host, port } => {
                let addr = resolve(host, *port).await?;
                tcp_addr = Some(addr);
                tokio::time::timeout(limit, scan::scan_tcp(addr, units, &probe)).await
            }
        };
        let found = scanned
            .map_err(|_| {
                ApiError::Unavailable(format!("the scan of {what} did not finish in time"))
            })?
            .map_err(scan_error)?;
        let known = |unit: u8| -> Option<String> {
            view.site.devices.iter().find_map(|d| {
                let here = match (&target, &d.kind) {
                    (ScanTarget::Bus(id), DeviceKind::ModbusRtu { bus, unit: u }) => {
                        bus == id && u.unit == unit
                    }
                    (ScanTarget::Tcp { .. }, DeviceKind::ModbusTcp { addr, unit: u, .. }) => {
                        Some(*addr) == tcp_addr && *u == unit
                    }
                    _ => false,
                };
                here.then(|| d.id.clone())
            })
        };
        Ok(found
            .into_iter()
            .map(|a| UnitAnswer {
                unit: a.unit,
                exception: a.exception,
                exception_name: a.exception_name(),
                took_ms: millis(a.elapsed),
                device: known(a.unit),
            })
            .collect())
    }

    /// Sends a Who-Is (to `target`, or broadcast), limited to the instances `low..=high` when
    /// given, and returns the devices whose I-Am came within `wait`. Uses the running BACnet
    /// network; when the site has none running, a temporary one on the site's `[bacnet]`
    /// settings (every interface, port 47808 without them).
    pub async fn bacnet_discover(
        &self,
        low: Option<u32>,
        high: Option<u32>,
        target: Option<SocketAddrV4>,
        wait: Duration,
    ) -> Result<Vec<FoundDevice>, ApiError> {
        let range = instance_range(low, high)?;
        if wait > MAX_DISCOVERY_WAIT || wait.is_zero() {
            return Err(ApiError::BadRequest(format!(
                "a discovery waits between 1 ms and {} s for answers",
                MAX_DISCOVERY_WAIT.as_secs()
            )));
        }
        let view = self.field_view().await?;
        tracing::info!(target: "commission", ?range, ?target, "BACnet discovery");
        let (net, temporary) = network(&view).await?;
        let found = net.discover(target, range, wait).await;
        if temporary {
            net.stop().await;
        }
        let found = found.map_err(|e| ApiError::Unavailable(format!("BACnet discovery: {e}")))?;
        Ok(found
            .into_iter()
            .map(|d| FoundDevice {
                instance: d.instance,
                address: d.address.map(|a| a.to_string()),
                network: d.network,
                vendor_id: d.vendor_id,
                max_apdu: d.max_apdu,
                device: (view.site.devices.iter())
                    .find(|s| matches!(&s.kind, DeviceKind::Bacnet(c) if c.instance == d.instance))
                    .map(|s| s.id.clone()),
            })
            .collect())
    }

    /// Lists a BACnet device's objects with their names, present values and units. A device
    /// not seen yet is looked for with a Who-Is (to `address` when given).
    pub async fn bacnet_objects(
        &self,
        instance: u32,
        address: Option<SocketAddrV4>,
    ) -> Result<Vec<ObjectSummary>, ApiError> {
        if instance > MAX_INSTANCE {
            return Err(ApiError::BadRequest(format!(
                "{instance} is not a device instance; instances run from 0 to {MAX_INSTANCE}"
            )));
        }
        let view = self.field_view().await?;
        let (net, temporary) = network(&view).await?;
        let listed = tokio::time::timeout(
            OBJECT_LIST_LIMIT,
            net.list_objects_at(instance, address, LOCATE_WAIT),
        )
        .await;
        if temporary {
            net.stop().await;
        }
        let objects = listed
            .map_err(|_| {
                ApiError::Unavailable(format!(
                    "the objects of BACnet device {instance} were not listed within {} s",
                    OBJECT_LIST_LIMIT.as_secs()
                ))
            })?
            .map_err(|e| ApiError::Unavailable(format!("BACnet device {instance}: {e}")))?;
        Ok(objects
            .into_iter()
            .map(|o| {
                let object = o.object.to_string();
                let object_type = object
                    .rsplit_once(':')
                    .map_or_else(|| object.clone(), |(t, _)| t.to_owned());
                ObjectSummary {
                    object_type,
                    instance: o.object.instance,
                    name: o.name,
                    kind: o.kind.map(ValueKind::name),
                    present_value: o.present_value.map_or(serde_json::Value::Null, |v| {
                        number_json(v, o.kind == Some(ValueKind::Real))
                    }),
                    units: o.units,
                    object,
                }
            })
            .collect())
    }
}

/// The running BACnet network, or a temporary one (`true`) on the site's settings.
async fn network(view: &FieldView) -> Result<(BacnetNetwork, bool), ApiError> {
    if let Some(net) = &view.bacnet {
        return Ok((net.clone(), false));
    }
    let cfg = (view.site.bacnet.clone())
        .unwrap_or_else(|| BacnetNetworkConfig::new(Ipv4Addr::UNSPECIFIED));
    let addr = SocketAddrV4::new(cfg.interface, cfg.port);
    let net = BacnetNetwork::start(cfg).await.map_err(|e| {
        ApiError::Unavailable(format!(
            "no BACnet network runs, and a temporary one on {addr} could not start: {e}"
        ))
    })?;
    Ok((net, true))
}

/// A Who-Is range from optional bounds.
fn instance_range(low: Option<u32>, high: Option<u32>) -> Result<Option<(u32, u32)>, ApiError> {
    let range = match (low, high) {
        (None, None) => return Ok(None),
        (low, high) => (low.unwrap_or(0), high.unwrap_or(MAX_INSTANCE)),
    };
    if range.0 > range.1 || range.1 > MAX_INSTANCE {
        return Err(ApiError::BadRequest(format!(
            "instances {} to {} are not a range of device instances (0 to {MAX_INSTANCE})",
            range.0, range.1
        )));
    }
    Ok(Some(range))
}

/// Resolves a scan's host (an IP address or a name).
async fn resolve(host: &str, port: u16) -> Result<SocketAddr, ApiError> {
    let mut addrs = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| ApiError::BadRequest(format!("cannot find host '{host}': {e}")))?;
    addrs
        .next()
        .ok_or_else(|| ApiError::BadRequest(format!("host '{host}' has no address")))
}

/// A driver call bounded as a whole; its failure in the API's terms.
async fn device_call<T>(
    at: &str,
    call: impl Future<Output = Result<T, DriverError>>,
) -> Result<T, ApiError> {
    tokio::time::timeout(DEVICE_CALL_LIMIT, call)
        .await
        .map_err(|_| {
            ApiError::Unavailable(format!(
                "{at}: no answer within {} s",
                DEVICE_CALL_LIMIT.as_secs()
            ))
        })?
        .map_err(|e| device_error(at, e))
}

/// A driver's error, saying what the device answered.
fn device_error(at: &str, error: DriverError) -> ApiError {
    let text = format!("{at}: {error}");
    match error {
        DriverError::UnknownPoint(_) => ApiError::NotFound(text),
        DriverError::NotWritable(_) | DriverError::Codec(_) | DriverError::BacnetValue { .. } => {
            ApiError::BadRequest(text)
        }
        DriverError::Exception { .. }
        | DriverError::BacnetError { .. }
        | DriverError::BacnetReject { .. }
        | DriverError::BacnetAbort { .. }
        | DriverError::Unsupported(_) => ApiError::Refused(text),
        DriverError::Timeout
        | DriverError::Transport(_)
        | DriverError::Offline
        | DriverError::QueueFull
        | DriverError::Closed => ApiError::Unavailable(text),
    }
}

fn scan_error(error: ScanError) -> ApiError {
    let text = error.to_string();
    match error {
        ScanError::BadUnits { .. } => ApiError::BadRequest(text),
        ScanError::Busy { .. } => ApiError::Refused(text),
        ScanError::Connect { .. }
        | ScanError::PortDown { .. }
        | ScanError::OutOfTime { .. }
        | ScanError::Closed { .. } => ApiError::Unavailable(text),
    }
}

/// Parses a test write's text as a value of the point: a label of the point; for on/off
/// points true/false, on/off or 1/0; for number points a finite number (one of the labelled
/// values when the point has labels).
fn parse_value(def: &PointDef, text: &str) -> Result<Value, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("no value given".into());
    }
    if let Some(v) = def.labels.value_of(t) {
        return Ok(if def.is_bool {
            Value::Bool(v != 0)
        } else {
            Value::Number(v as f64)
        });
    }
    let labels = labels_text(def);
    if def.is_bool {
        return match t.to_ascii_lowercase().as_str() {
            "true" | "on" | "1" => Ok(Value::Bool(true)),
            "false" | "off" | "0" => Ok(Value::Bool(false)),
            _ => Err(format!(
                "'{t}' is not on or off; write true/false, on/off or 1/0{labels}"
            )),
        };
    }
    let n = t
        .parse::<f64>()
        .ok()
        .filter(|n| n.is_finite())
        .ok_or_else(|| format!("'{t}' is not a number{labels}"))?;
    if !def.labels.is_empty() && def.labels.label(Value::Number(n)).is_none() {
        return Err(format!("{n} is none of the point's values{labels}"));
    }
    Ok(Value::Number(n))
}

/// ", or one of: off (0), heat (1)" for a point with labels.
fn labels_text(def: &PointDef) -> String {
    if def.labels.is_empty() {
        return String::new();
    }
    let list: Vec<String> = (def.labels.iter())
        .map(|(v, l)| format!("{l} ({v})"))
        .collect();
    format!("; the point takes {}", list.join(", "))
}

/// Whether the value fits the point on the wire (its type, scaling and datatype).
fn check_fits(def: &PointDef, value: Value) -> Result<(), String> {
    match &def.protocol {
        PointProtocol::Modbus(m) => drivers::encode(m, value).map(drop).map_err(|e| match e {
            drivers::CodecError::OutOfRange {
                value, data_type, ..
            } => match data_type.integer_range() {
                Some((lo, hi)) => {
                    let a = m.scaling.to_engineering(lo);
                    let b = m.scaling.to_engineering(hi);
                    format!(
                        "{value} is out of range; the point ({data_type}) takes {} to {}",
                        a.min(b),
                        a.max(b)
                    )
                }
                None => format!("{value} is out of range for a {data_type} point"),
            },
            other => other.to_string(),
        }),
        PointProtocol::Bacnet(b) => b
            .kind
            .to_property_value(value)
            .map(drop)
            .map_err(|e| e.to_string()),
        PointProtocol::Serial => Err("serial line points cannot be written".into()),
    }
}

/// A value as JSON; single-precision numbers without the digits a widening to f64 invents.
pub(super) fn json_value(def: &PointDef, value: Value) -> serde_json::Value {
    let single = match &def.protocol {
        PointProtocol::Modbus(m) => m.data_type == DataType::F32,
        PointProtocol::Bacnet(b) => b.kind == ValueKind::Real,
        PointProtocol::Serial => false,
    };
    number_json(value, single)
}

/// Whole numbers are JSON integers (a register's 37, not 37.0).
fn number_json(value: Value, single: bool) -> serde_json::Value {
    match value {
        Value::Bool(b) => serde_json::Value::Bool(b),
        Value::Number(n) if n.fract() == 0.0 && n.abs() < 9_007_199_254_740_992.0 => {
            serde_json::Value::from(n as i64)
        }
        Value::Number(n) => {
            let n = if single {
                // f32's shortest text is the number the device meant (21.3, not 21.2999992).
                (n as f32).to_string().parse::<f64>().unwrap_or(n)
            } else {
                n
            };
            serde_json::Number::from_f64(n)
                .map_or(serde_json::Value::Null, serde_json::Value::Number)
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use drivers::point::{Access, ModbusPoint, ModbusTable, ValueLabels};

    fn modbus(point: ModbusPoint) -> PointDef {
        PointDef {
            id: point.name.clone(),
            name: point.name.clone(),
            unit: point.unit.clone(),
            access: point.access,
            is_bool: point.data_type == DataType::Bool,
            labels: point.labels.clone(),
            protocol: PointProtocol::Modbus(point),
        }
    }

    #[test]
    fn on_off_points_take_words_and_digits() {
        let relay = modbus(ModbusPoint::new(
            "relay",
            ModbusTable::Coil,
            0,
            DataType::Bool,
        ));
        for (text, on) in [
            ("true", true),
            ("ON", true),
            ("1", true),
            ("off", false),
            (" 0 ", false),
            ("False", false),
        ] {
            assert_eq!(parse_value(&relay, text), Ok(Value::Bool(on)), "{text}");
        }
        let error = parse_value(&relay, "maybe").expect_err("not on/off");
        assert!(error.contains("'maybe' is not on or off"), "{error}");
    }

    #[test]
    fn numbers_are_parsed_and_labels_name_values() {
        let dim = modbus(ModbusPoint::new(
            "dim",
            ModbusTable::HoldingRegister,
            0,
            DataType::U16,
        ));
        assert_eq!(parse_value(&dim, "42.5"), Ok(Value::Number(42.5)));
        assert!(parse_value(&dim, "NaN").is_err());
        assert!(parse_value(&dim, "").is_err());

        let mode =
            modbus(
                ModbusPoint::new("mode", ModbusTable::HoldingRegister, 0, DataType::U16)
                    .with_labels([(0, "off"), (1, "heat"), (2, "cool")]),
            );
        assert_eq!(parse_value(&mode, "heat"), Ok(Value::Number(1.0)));
        assert_eq!(parse_value(&mode, "COOL"), Ok(Value::Number(2.0)));
        assert_eq!(parse_value(&mode, "2"), Ok(Value::Number(2.0)));
        let error = parse_value(&mode, "7").expect_err("no such mode");
        assert_eq!(
            error,
            "7 is none of the point's values; the point takes off (0), heat (1), cool (2)"
        );
        let mut door = modbus(ModbusPoint::new(
            "door",
            ModbusTable::Coil,
            0,
            DataType::Bool,
        ));
        door.labels = ValueLabels::new([(0, "closed"), (1, "open")]);
        assert_eq!(parse_value(&door, "open"), Ok(Value::Bool(true)));
    }

    #[test]
    fn out_of_range_values_say_the_range_of_the_point() {
        let dim = modbus(ModbusPoint::new(
            "dim",
            ModbusTable::HoldingRegister,
            0,
            DataType::U16,
        ));
        assert_eq!(
            check_fits(&dim, Value::Number(70000.0)),
            Err("70000 is out of range; the point (u16) takes 0 to 65535".into())
        );
        let scaled = modbus(
            ModbusPoint::new("t", ModbusTable::HoldingRegister, 0, DataType::I16)
                .with_scaling(0.1, 0.0),
        );
        assert!(check_fits(&scaled, Value::Number(3000.0)).is_ok());
        let error = check_fits(&scaled, Value::Number(4000.0)).expect_err("beyond i16 / 10");
        assert!(error.contains("takes -3276.8 to 3276.7"), "{error}");
        assert!(check_fits(&dim, Value::Number(12.0)).is_ok());
        let read_only = modbus(
            ModbusPoint::new("x", ModbusTable::InputRegister, 0, DataType::U16)
                .with_access(Access::Read),
        );
        assert!(!read_only.access.can_write());
    }

    #[test]
    fn single_precision_numbers_lose_the_widening_digits() {
        assert_eq!(
            number_json(Value::Number(f64::from(21.3f32)), true),
            serde_json::json!(21.3)
        );
        assert_eq!(
            number_json(Value::Number(0.1), false),
            serde_json::json!(0.1)
        );
        assert_eq!(
            number_json(Value::Bool(true), false),
            serde_json::json!(true)
        );
    }

    #[test]
    fn instance_ranges_are_checked() {
        assert_eq!(instance_range(None, None), Ok(None));
        assert_eq!(instance_range(Some(5), None), Ok(Some((5, MAX_INSTANCE))));
        assert_eq!(instance_range(None, Some(9)), Ok(Some((0, 9))));
        assert!(instance_range(Some(9), Some(5)).is_err());
        assert!(instance_range(None, Some(MAX_INSTANCE + 1)).is_err());
    }
}
