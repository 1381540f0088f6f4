//! Prometheus metrics (`GET /metrics`, text format 0.0.4): field, engine, outbox and sync
//! lag, HTTP requests, the store's size and the build.
//!
//! Counters are kept where things happen (`LoopCounters` by the main loop, `HttpCounters` by
//! the HTTP layer); the rest is read at scrape time from the floor snapshot and the store.
//! Written by hand: the format is a few lines of text and needs no registry.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use crate::api::FloorSnapshot;
use tokio::sync::watch;

use crate::clock::Clock;
use crate::runtime::GatewayHandle;
use crate::store::Store;
use crate::sync::AgentStatus;

/// Everything `/metrics` reads, shared by the HTTP layer and the sync agent.
#[derive(Debug)]
pub struct MetricsSource {
    pub http: HttpCounters,
    pub hub_ack: Arc<HubAck>,
    store: Arc<Store>,
    store_file: PathBuf,
    /// The sync agent's report, when the site syncs with a hub.
    agent: Option<watch::Receiver<AgentStatus>>,
}

impl MetricsSource {
    /// `data` is the store's directory; `agent` the sync agent's report when the site syncs
    /// with a hub (a task notes the time of each new acknowledgement on `clock`).
    pub fn new(
        store: Arc<Store>,
        data: &Path,
        agent: Option<watch::Receiver<AgentStatus>>,
        clock: Clock,
    ) -> MetricsSource {
        let hub_ack = Arc::<HubAck>::default();
        if let Some(mut rx) = agent.clone() {
            let hub_ack = hub_ack.clone();
            tokio::spawn(async move {
                let mut acked = rx.borrow_and_update().acked_upto;
                while rx.changed().await.is_ok() {
                    let now = rx.borrow_and_update().acked_upto;
                    if now != acked {
                        acked = now;
                        hub_ack.record(clock.now().as_millis());
                    }
                }
            });
        }
        MetricsSource {
            http: HttpCounters::default(),
            hub_ack,
            store,
            store_file: data.join(crate::store::STORE_FILE),
            agent,
        }
    }

    /// One scrape: lets the main loop catch up (so device counters are fresh; a busy loop
    /// answers with the last snapshot), then reads the snapshot, the store and the counters.
    pub async fn scrape(&self, g: &GatewayHandle) -> String {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), g.settle()).await;
        let snapshot = g.snapshot();
        let now_ms = g.clock.now().as_millis();
        let outbox_depth = self.store.outbox_depth().ok();
        let oldest_unacked_s = self
            .store
            .outbox_after(0, 1)
            .ok()
            .and_then(|events| events.first().map(|e| e.at_ms))
            .map(|at| (now_ms - at).max(0) as f64 / 1000.0);
        let store_bytes = std::fs::metadata(&self.store_file).ok().map(|m| m.len());
        let readings = Readings {
            snapshot: &snapshot,
            outbox_depth,
            oldest_unacked_s,
            store_bytes,
            now_ms,
            agent: self.agent.as_ref().map(|rx| rx.borrow().clone()),
        };
        render(&readings, &g.counters, &self.http, &self.hub_ack)
    }
}

/// What the main loop counts: engine events in, commands and outcomes out, by kind.
#[derive(Debug, Default)]
pub struct LoopCounters {
    counts: Mutex<BTreeMap<(Family, String), u64>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Family {
    Event,
    EventRefused,
    Command,
    Outcome,
}

impl LoopCounters {
    /// An event given to the engine (`kind` is its variant: `Occupancy`, `CheckIn`, ...).
    pub fn event(&self, kind: &str, accepted: bool) {
        self.add(Family::Event, kind);
        if !accepted {
            self.add(Family::EventRefused, kind);
        }
    }

    /// A command the engine gave (`kind`: `Lights`, `Hvac`, `Door`, ...).
    pub fn command(&self, kind: &str) {
        self.add(Family::Command, kind);
    }

    /// An outcome the engine reported (`kind`: `CheckedIn`, `Released`, ...).
    pub fn outcome(&self, kind: &str) {
        self.add(Family::Outcome, kind);
    }

    fn add(&self, family: Family, kind: &str) {
        if let Ok(mut counts) = self.counts.lock() {
            *counts.entry((family, kind.to_owned())).or_default() += 1;
        }
    }

    fn snapshot(&self) -> BTreeMap<(Family, String), u64> {
        self.counts.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

/// The variant name of a value's `Debug` form (`Occupancy { .. }` → `Occupancy`): a label of
/// bounded cardinality that follows new variants without a list to keep in step.
pub fn variant_name(value: &impl std::fmt::Debug) -> String {
    let text = format!("{value:?}");
    let end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    text[..end].to_owned()
}

/// HTTP requests by route (a template: ids replaced by `{id}`), method and status.
#[derive(Debug, Default)]
pub struct HttpCounters {
    counts: Mutex<BTreeMap<(String, String, u16), u64>>,
}

impl HttpCounters {
    /// Counts one answered request.
    pub fn request(&self, path: &str, method: &str, status: u16) {
        let key = (route_template(path), method.to_owned(), status);
        if let Ok(mut counts) = self.counts.lock() {
            *counts.entry(key).or_default() += 1;
        }
    }
}

/// When the hub last acknowledged events (unix ms; 0: not since the process started).
#[derive(Debug, Default)]
pub struct HubAck(AtomicI64);

impl HubAck {
    pub fn record(&self, at_ms: i64) {
        self.0.store(at_ms, Ordering::Relaxed);
    }

    fn get(&self) -> Option<i64> {
        Some(self.0.load(Ordering::Relaxed)).filter(|t| *t > 0)
    }
}

/// Keeps route labels few: known words stay, anything else (room, booking and device ids,
/// scene names, unknown paths) becomes `{id}`.
fn route_template(path: &str) -> String {
    const WORDS: &[&str] = &[
        "api",
        "healthz",
        "metrics",
        "floor",
        "rooms",
        "bookings",
        "checkin",
        "end",
        "extend",
        "credential",
        "scenes",
        "devices",
        "buses",
        "log-level",
        "panel",
        "display",
        "events",
        "assets",
    ];
    let parts: Vec<&str> = path
        .split('/')
        .filter(|p| !p.is_empty())
        .take(6)
        .map(|p| if WORDS.contains(&p) { p } else { "{id}" })
        .collect();
    format!("/{}", parts.join("/"))
}

/// What a scrape reads besides the counters.
#[derive(Debug)]
pub struct Readings<'a> {
    pub snapshot: &'a FloorSnapshot,
    /// Events waiting for the hub.
    pub outbox_depth: Option<u64>,
    /// Age of the oldest of them, in seconds.
    pub oldest_unacked_s: Option<f64>,
    /// The store file's size in bytes.
    pub store_bytes: Option<u64>,
    /// The wall clock now (unix ms), for ages.
    pub now_ms: i64,
    /// The sync agent's report, when the site syncs with a hub.
    pub agent: Option<AgentStatus>,
}

/// Renders every metric in the Prometheus text format (0.0.4).
pub fn render(
    r: &Readings<'_>,
    counters: &LoopCounters,
    http: &HttpCounters,
    hub_ack: &HubAck,
) -> String {
    let mut out = String::with_capacity(8 * 1024);
    let s = r.snapshot;
    header(
        &mut out,
        "roomgate_build_info",
        "gauge",
        "The running gateway's version.",
    );
    line(
        &mut out,
        "roomgate_build_info",
        &[("version", env!("CARGO_PKG_VERSION")), ("site", &s.site)],
        1.0,
    );
    header(&mut out, "roomgate_rooms", "gauge", "Rooms on this floor.");
    line(&mut out, "roomgate_rooms", &[], s.rooms.len() as f64);

    // Devices: one series per device, from its owner task's counters.
    let device_counters: [Series<crate::api::DeviceDto>; 4] = [
        (
            "roomgate_device_requests_total",
            "Requests sent to the device.",
            |d| d.requests,
        ),
        (
            "roomgate_device_timeouts_total",
            "Requests and connection attempts without an answer in time.",
            |d| d.timeouts,
        ),
        (
            "roomgate_device_exceptions_total",
            "Exception answers (the device refused a request).",
            |d| d.exceptions,
        ),
        (
            "roomgate_device_transport_errors_total",
            "Connection failures and broken answers.",
            |d| d.transport_errors,
        ),
    ];
    for (name, help, get) in device_counters {
        header(&mut out, name, "counter", help);
        for d in &s.devices {
            line(&mut out, name, &[("device", &d.id)], get(d) as f64);
        }
    }
    header(
        &mut out,
        "roomgate_device_online",
        "gauge",
        "1 when the device answers, 0 when offline or connecting.",
    );
    for d in &s.devices {
        let online = if d.state == "online" { 1.0 } else { 0.0 };
        line(
            &mut out,
            "roomgate_device_online",
            &[("device", &d.id)],
            online,
        );
    }

    // RS-485 buses.
    let bus_counters: [Series<crate::api::BusDto>; 6] = [
        (
            "roomgate_bus_frames_sent_total",
            "Frames sent on the line.",
            |b| b.frames_sent,
        ),
        (
            "roomgate_bus_frames_received_total",
            "Valid frames received (answers and exceptions).",
            |b| b.frames_received,
        ),
        (
            "roomgate_bus_bad_frames_total",
            "Garbage, bad CRCs and stray frames.",
            |b| b.bad_frames,
        ),
        (
            "roomgate_bus_timeouts_total",
            "Requests without an answer in time.",
            |b| b.timeouts,
        ),
        ("roomgate_bus_exceptions_total", "Exception answers.", |b| {
            b.exceptions
        }),
        (
            "roomgate_bus_transport_errors_total",
            "Port failures (open, read, write).",
            |b| b.transport_errors,
        ),
    ];
    for (name, help, get) in bus_counters {
        header(&mut out, name, "counter", help);
        for b in &s.buses {
            line(&mut out, name, &[("bus", &b.id)], get(b) as f64);
        }
    }
    header(
        &mut out,
        "roomgate_bus_open",
        "gauge",
        "1 when the bus's port is open.",
    );
    for b in &s.buses {
        let open = if b.open { 1.0 } else { 0.0 };
        line(&mut out, "roomgate_bus_open", &[("bus", &b.id)], open);
    }

    // The engine.
    let counts = counters.snapshot();
    for (family, name, help) in [
        (
            Family::Event,
            "roomgate_engine_events_total",
            "Events given to the engine, by kind.",
        ),
        (
            Family::EventRefused,
            "roomgate_engine_events_refused_total",
            "Events the engine refused (unknown room, bad request), by kind.",
        ),
        (
            Family::Command,
            "roomgate_engine_commands_total",
            "Commands the engine gave, by action.",
        ),
        (
            Family::Outcome,
            "roomgate_engine_outcomes_total",
            "Outcomes the engine reported, by kind.",
        ),
    ] {
        header(&mut out, name, "counter", help);
        for ((f, kind), n) in &counts {
            if *f == family {
                line(&mut out, name, &[("kind", kind)], *n as f64);
            }
        }
    }
    header(
        &mut out,
        "roomgate_rooms_by_state",
        "gauge",
        "Rooms in each state.",
    );
    let mut states: BTreeMap<&str, u64> = BTreeMap::new();
    for room in &s.rooms {
        *states.entry(room.state).or_default() += 1;
    }
    for (state, n) in states {
        line(
            &mut out,
            "roomgate_rooms_by_state",
            &[("state", state)],
            n as f64,
        );
    }

    // Sync with the hub.
    header(
        &mut out,
        "roomgate_outbox_depth",
        "gauge",
        "Events in the outbox waiting for the hub's acknowledgement.",
    );
    if let Some(depth) = r.outbox_depth {
        line(&mut out, "roomgate_outbox_depth", &[], depth as f64);
    }
    header(
        &mut out,
        "roomgate_outbox_oldest_age_seconds",
        "gauge",
        "Age of the oldest unacknowledged event (0 when the outbox is empty).",
    );
    line(
        &mut out,
        "roomgate_outbox_oldest_age_seconds",
        &[],
        r.oldest_unacked_s.unwrap_or(0.0),
    );
    if let Some(agent) = &r.agent {
        header(
            &mut out,
            "roomgate_hub_connected",
            "gauge",
            "1 while the sync agent is connected to the broker.",
        );
        let up = if agent.connected { 1.0 } else { 0.0 };
        line(&mut out, "roomgate_hub_connected", &[], up);
        for (name, help, value) in [
            (
                "roomgate_hub_acked_seq",
                "The hub has every event up to this sequence number.",
                agent.acked_upto,
            ),
            (
                "roomgate_hub_connects_total",
                "Connections made to the broker.",
                agent.connects,
            ),
            (
                "roomgate_hub_sync_requests_resent_total",
                "Sync requests sent again for want of an answer.",
                agent.syncs_resent,
            ),
            (
                "roomgate_telemetry_samples_sent_total",
                "Telemetry samples handed to the broker.",
                agent.telemetry_sent,
            ),
            (
                "roomgate_telemetry_samples_dropped_total",
                "Telemetry samples not published (link down, queue full).",
                agent.telemetry_dropped,
            ),
        ] {
            let kind = if name.ends_with("_total") {
                "counter"
            } else {
                "gauge"
            };
            header(&mut out, name, kind, help);
            line(&mut out, name, &[], value as f64);
        }
        header(
            &mut out,
            "roomgate_hub_last_ack_age_seconds",
            "gauge",
            "Seconds since the hub last acknowledged events (absent before the first ack).",
        );
        if let Some(at) = hub_ack.get() {
            let age = (r.now_ms - at).max(0) as f64 / 1000.0;
            line(&mut out, "roomgate_hub_last_ack_age_seconds", &[], age);
        }
    }

    // The store and HTTP.
    header(
        &mut out,
        "roomgate_store_bytes",
        "gauge",
        "Size of the store file (gateway.redb).",
    );
    if let Some(bytes) = r.store_bytes {
        line(&mut out, "roomgate_store_bytes", &[], bytes as f64);
    }
    header(
        &mut out,
        "roomgate_http_requests_total",
        "counter",
        "HTTP requests answered, by route, method and status.",
    );
    let http = http.counts.lock().map(|c| c.clone()).unwrap_or_default();
    for ((route, method, status), n) in http {
        line(
            &mut out,
            "roomgate_http_requests_total",
            &[
                ("route", &route),
                ("method", &method),
                ("status", &status.to_string()),
            ],
            n as f64,
        );
    }
    out
}

/// A metric read off each item of a kind: name, help, and the reading.
type Series<T> = (&'static str, &'static str, fn(&T) -> u64);

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn line(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{k}=\"{}\"", escape(v));
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

/// Label values escape backslash, double quote and newline (text format 0.0.4).
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_keep_their_words_and_lose_their_ids() {
        assert_eq!(
            route_template("/api/rooms/r101/bookings/b-7"),
            "/api/rooms/{id}/bookings/{id}"
        );
        assert_eq!(route_template("/metrics"), "/metrics");
        assert_eq!(route_template("/"), "/");
        assert_eq!(route_template("/wp-admin/x.php"), "/{id}/{id}");
    }

    #[test]
    fn variant_names_and_escaped_labels() {
        #[derive(Debug)]
        #[allow(dead_code)]
        enum E {
            Occupancy { room: u8 },
            Unit,
            Tuple(u8),
        }
        assert_eq!(variant_name(&E::Occupancy { room: 1 }), "Occupancy");
        assert_eq!(variant_name(&E::Unit), "Unit");
        assert_eq!(variant_name(&E::Tuple(3)), "Tuple");
        let mut out = String::new();
        line(&mut out, "m", &[("a", "x\"y\\z\nw")], 2.0);
        assert_eq!(out, "m{a=\"x\\\"y\\\\z\\nw\"} 2\n");
    }
}
