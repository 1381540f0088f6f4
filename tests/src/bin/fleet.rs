//! A fleet simulator and sync benchmark: gateways, a hub and a real Mosquitto; prints figures.
//!
//! Run (release, for figures):
//!
//! ```sh
//! cargo run -p roomgate-tests --release --bin fleet                      # everything, defaults
//! cargo run -p roomgate-tests --release --bin fleet -- --gateways 1000 --events 100
//! cargo run -p roomgate-tests --release --bin fleet -- --only ingest,storm --outage-ms 2000
//! cargo run -p roomgate-tests --release --bin fleet -- --help
//! ```
//!
//! It starts its own broker (`roomgate_tests::broker::Broker`, mutual TLS and the protocol's
//! ACL, one client certificate per gateway), a hub (`cloud_sync::hub::Hub` over a `HubStore` in
//! a temp dir) and measures, printing each figure under the command line that produced it:
//!
//! - **ingest**: `--gateways` simulated gateways flood `--events` events each, in batches of
//!   `--batch`, at most `--window` batches unacknowledged; from the first publish until the
//!   hub's stats count every event as stored (events/s and batches/s). Target >= 20,000 events/s.
//! - **drain**: one real gateway (`gateway::app::start`, its redb `Store`, the real sync agent
//!   `gateway::sync::spawn_agent`) whose outbox holds `--outbox` events written before the agent
//!   starts, as after a long outage; from the agent's connect until the hub acknowledged the
//!   last one. Target >= 5,000 events/s.
//! - **latency**: `--samples` booking changes made with `Hub::change_booking`, one at a time,
//!   each timed until that real gateway's store holds the new cursor (applied in the same
//!   transaction as the bookings); p50/p99/max.
//! - **storm**: the ingest fleet stays connected, the broker is restarted (`Broker::stop`, an
//!   optional `--outage-ms`, `Broker::start_again`); connects per 1 s bucket after the broker is
//!   back, the peak, and the time until every gateway is connected again, with the protocol's
//!   full-jitter backoff (`cloud_sync::backoff::Jittered`) scaled down: `--backoff-base-ms`,
//!   `--backoff-max-ms`, `--stable-after-ms`, `--first-spread-ms` (defaults 1/10 of PROTOCOL.md's
//!   1 s, 120 s, 60 s and 5 s). Full jitter spreads reconnects uniformly over the current ceiling,
//!   so wall times scale by the same factor (x10 for the protocol values) and rates by its
//!   inverse, for an outage that is also ten times longer.
//!
//! This is a benchmark that prints, never a timed test. Each simulated gateway needs a socket in
//! this process and one in Mosquitto: when the open-file limit (`ulimit -n`) is too low for
//! `--gateways`, the fleet is made smaller and says so (raise it with `ulimit -n 20000`).

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use cloud_sync::backoff::{Jitter, Jittered};
use cloud_sync::hub::{Hub, HubStore};
use cloud_sync::topics::{Channel, GatewayId};
use cloud_sync::wire::{
    self, Ack, BookingChange, BookingChanges, Event, EventKind, Status, SyncRequest, VERSION,
    WireBooking,
};
use roomgate_tests::broker::Broker;
use rumqttc::{AsyncClient, Event as MqttEvent, LastWill, MqttOptions, Packet, QoS};
use tokio::sync::watch;

const USAGE: &str = "\
fleet: a simulated gateway fleet, a hub and Mosquitto; prints sync figures.

options (defaults in brackets):
  --only LIST          phases to run, comma separated: ingest,drain,latency,storm [all]
  --gateways N         simulated gateways for ingest and storm [1000]
  --events N           events per simulated gateway [100]
  --batch N            events per batch, at most 500 [100]
  --window N           unacknowledged batches per simulated gateway [1]
  --outbox N           events in the real gateway's outbox for drain [100000]
  --samples N          booking changes timed for latency [200]
  --backoff-base-ms N  reconnect backoff base [100] (protocol: 1000)
  --backoff-max-ms N   reconnect backoff ceiling [12000] (protocol: 120000)
  --stable-after-ms N  a connection up this long resets the backoff [6000] (protocol: 60000)
  --first-spread-ms N  the first connect waits a random time up to this [500] (protocol: 5000)
  --ack-timeout-ms N   republish when no ack came for this long [3000] (protocol: 30000)
  --outage-ms N        extra time the broker stays down in the storm [0]
  --store KIND         the hub's store: embedded (redb) or postgres (a private server) [embedded]
";

/// Wall-clock limit for any one wait; a phase that takes longer reports what it saw.
const PHASE_LIMIT: Duration = Duration::from_secs(120);

/// Fixed epoch for simulated event times (2026-03-02 00:00 UTC).
const DAY_MS: i64 = 1_772_409_600_000;

#[derive(Debug, Clone)]
struct Options {
    phases: Vec<String>,
    gateways: usize,
    events: u64,
    batch: usize,
    window: usize,
    outbox: u64,
    samples: usize,
    backoff_base: Duration,
    backoff_max: Duration,
    stable_after: Duration,
    first_spread: Duration,
    ack_timeout: Duration,
    outage: Duration,
    /// "embedded" (redb) or "postgres" (a private PostgreSQL server started for the run).
    store: String,
}

impl Options {
    fn parse(args: &[String]) -> anyhow::Result<Options> {
        let mut o = Options {
            phases: ["ingest", "drain", "latency", "storm"]
                .map(String::from)
                .to_vec(),
            gateways: 1000,
            events: 100,
            batch: 100,
            window: 1,
            outbox: 100_000,
            samples: 200,
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_millis(12_000),
            stable_after: Duration::from_millis(6_000),
            first_spread: Duration::from_millis(500),
            ack_timeout: Duration::from_millis(3_000),
            outage: Duration::ZERO,
            store: "embedded".into(),
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            if flag == "--help" || flag == "-h" {
                print!("{USAGE}");
                std::process::exit(0);
            }
            let value = it
                .next()
                .ok_or_else(|| anyhow!("{flag} needs a value\n\n{USAGE}"))?;
            let number = || -> anyhow::Result<u64> {
                value
                    .parse::<u64>()
                    .with_context(|| format!("{flag} takes a whole number, not '{value}'"))
            };
            let ms = || number().map(Duration::from_millis);
            match flag.as_str() {
                "--only" => {
                    o.phases = value.split(',').map(|s| s.trim().to_owned()).collect();
                    for p in &o.phases {
                        if !["ingest", "drain", "latency", "storm"].contains(&p.as_str()) {
                            bail!("unknown phase '{p}' in --only\n\n{USAGE}");
                        }
                    }
                }
                "--gateways" => o.gateways = usize::try_from(number()?)?,
                "--events" => o.events = number()?,
                "--batch" => o.batch = usize::try_from(number()?)?,
                "--window" => o.window = usize::try_from(number()?)?,
                "--outbox" => o.outbox = number()?,
                "--samples" => o.samples = usize::try_from(number()?)?,
                "--backoff-base-ms" => o.backoff_base = ms()?,
                "--backoff-max-ms" => o.backoff_max = ms()?,
                "--stable-after-ms" => o.stable_after = ms()?,
                "--first-spread-ms" => o.first_spread = ms()?,
                "--ack-timeout-ms" => o.ack_timeout = ms()?,
                "--outage-ms" => o.outage = ms()?,
                "--store" => {
                    if value != "embedded" && value != "postgres" {
                        bail!("--store is 'embedded' or 'postgres', not '{value}'\n\n{USAGE}");
                    }
                    o.store = value.clone();
                }
                other => bail!("unknown option '{other}'\n\n{USAGE}"),
            }
        }
        if o.batch == 0 || o.batch > wire::MAX_BATCH_EVENTS {
            bail!(
                "--batch must be 1..={} (PROTOCOL.md)",
                wire::MAX_BATCH_EVENTS
            );
        }
        o.window = o.window.max(1);
        Ok(o)
    }

    fn runs(&self, phase: &str) -> bool {
        self.phases.iter().any(|p| p == phase)
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut opts = Options::parse(&args)?;
    let command = format!(
        "cargo run -p roomgate-tests --release --bin fleet --{}",
        args.iter().map(|a| format!(" {a}")).collect::<String>()
    );
    println!("# {command}");
    println!(
        "# {} cores, load average {} at start",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    );
    if cfg!(debug_assertions) {
        println!("# WARNING: a debug build; figures are only meaningful with --release");
    }
    fit_to_file_limit(&mut opts);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?
        .block_on(run(opts))
}

/// The soft open-file limit from /proc (no unsafe `getrlimit` here: the workspace forbids it).
fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Lowers the fleet when the open-file limit cannot hold it (this process and Mosquitto, which
/// inherits the limit, each need a socket per gateway, plus some headroom).
fn fit_to_file_limit(opts: &mut Options) {
    const HEADROOM: u64 = 200;
    let Some(limit) = open_file_limit() else {
        println!(
            "# open-file limit unknown; running {} gateways",
            opts.gateways
        );
        return;
    };
    let fits = usize::try_from(limit.saturating_sub(HEADROOM)).unwrap_or(usize::MAX);
    if opts.gateways > fits {
        println!(
            "# WARNING: the open-file limit is {limit} (ulimit -n): running {fits} gateways instead of {}. \
             Raise it with `ulimit -n {}` to run them all.",
            opts.gateways,
            opts.gateways as u64 + HEADROOM
        );
        opts.gateways = fits;
    } else {
        println!("# open-file limit {limit} holds {} gateways", opts.gateways);
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

async fn run(opts: Options) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut broker = Broker::start().context("starting Mosquitto with mutual TLS")?;
    println!(
        "# broker on {} (data in {})",
        broker.addr(),
        broker.dir().display()
    );
    let hub_dir = tempfile::Builder::new()
        .prefix("roomgate-fleet-hub-")
        .tempdir()
        .context("creating the hub's temp dir")?;
    // Kept alive for the run when the hub is on PostgreSQL.
    let mut _postgres = None;
    let hub_store = Arc::new(if opts.store == "postgres" {
        let server = roomgate_tests::postgres::PgServer::start()
            .map_err(|e| anyhow!("starting PostgreSQL: {e}"))?;
        let url = server
            .create_database()
            .map_err(|e| anyhow!("creating the hub's database: {e}"))?;
        println!("# hub store: PostgreSQL on port {}", server.port());
        _postgres = Some(server);
        HubStore::open_postgres(&url, 8)
            .await
            .context("opening the hub's PostgreSQL store")?
    } else {
        println!("# hub store: embedded (redb)");
        HubStore::open_embedded(hub_dir.path()).context("opening the hub store")?
    });
    // The real hub's path: fresh events also go through the booking service's fact rules.
    let bookings = cloud_sync::hub::bookings::BookingService::new(
        Arc::clone(&hub_store),
        cloud_sync::hub::service::Pusher::new(),
        cloud_sync::hub::web::system_now(),
    );
    let hub = Hub::start_with_bookings(
        broker
            .mqtt_options("hub-1", "hub/1")
            .context("hub certificate")?,
        bookings,
        "hub",
    );
    wait_until("the hub to connect", PHASE_LIMIT, || hub.stats().connected).await?;

    let fleet = if opts.runs("ingest") || opts.runs("storm") {
        Some(start_fleet(&opts, &broker, &hub).await?)
    } else {
        None
    };
    if let Some(fleet) = &fleet
        && opts.runs("ingest")
    {
        ingest(&opts, fleet, &hub).await?;
    }
    if opts.runs("drain") || opts.runs("latency") {
        real_gateway(&opts, &broker, &hub).await?;
    }
    if let Some(fleet) = &fleet
        && opts.runs("storm")
    {
        storm(&opts, fleet, &mut broker, &hub).await?;
    }
    if let Some(fleet) = fleet {
        fleet.stop();
    }
    hub.stop().await;
    broker.stop().context("stopping the broker")?;
    // Mosquitto drops QoS 1 messages for a client whose queue is full (max_queued_messages,
    // 1000 by default) and says so once per episode.
    let log = broker.log();
    println!(
        "# broker log: {} \"messages are being dropped\" notices ({} for the hub)",
        log.matches("are being dropped").count(),
        log.lines()
            .filter(|l| l.contains("are being dropped") && l.contains("hub-1"))
            .count()
    );
    println!(
        "# done in {:.1} s; load average {} at the end",
        started.elapsed().as_secs_f64(),
        load_average()
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The simulated fleet.

/// Settings every simulated gateway shares.
#[derive(Debug, Clone)]
struct SimConfig {
    events: u64,
    batch: usize,
    window: usize,
    backoff_base: Duration,
    backoff_max: Duration,
    stable_after: Duration,
    first_spread: Duration,
    ack_timeout: Duration,
}

/// What the whole fleet has done, shared by its gateways and read by the phases.
#[derive(Debug, Default)]
struct FleetStats {
    connected: AtomicUsize,
    /// Every completed connect (CONNACK), when it happened.
    connects: Mutex<Vec<Instant>>,
    failed_attempts: AtomicU64,
    acked_events: AtomicU64,
    republishes: AtomicU64,
    booking_messages: AtomicU64,
    refused: AtomicU64,
}

impl FleetStats {
    fn connects_since(&self, from: Instant) -> Vec<Instant> {
        let all = self.connects.lock().map(|v| v.clone()).unwrap_or_default();
        all.into_iter().filter(|t| *t >= from).collect()
    }
}

#[derive(Debug)]
struct Fleet {
    stats: Arc<FleetStats>,
    /// Flips to true to make every gateway write its events and send them.
    flood: watch::Sender<bool>,
    /// When the first batch went out.
    first_publish: Arc<Mutex<Option<Instant>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    gateways: usize,
}

impl Fleet {
    fn stop(self) {
        for t in self.tasks {
            t.abort();
        }
    }
}

async fn start_fleet(opts: &Options, broker: &Broker, hub: &Hub) -> anyhow::Result<Fleet> {
    // One certificate per gateway: the ACL confines each to the subtree named by its CN.
    let t = Instant::now();
    let mut identities = Vec::with_capacity(opts.gateways);
    for i in 0..opts.gateways {
        let id = GatewayId::new(&format!("site-{}", i / 100), &format!("gw-{i}"))
            .context("gateway id")?;
        let options = broker
            .mqtt_options(&id.client_id(), &id.to_string())
            .with_context(|| format!("certificate for {id}"))?;
        identities.push((id, options));
    }
    let per_cert = t.elapsed().as_secs_f64() * 1000.0 / opts.gateways.max(1) as f64;
    println!(
        "# {} client certificates issued, written and loaded in {:.2} s ({per_cert:.2} ms each)",
        opts.gateways,
        t.elapsed().as_secs_f64()
    );

    let cfg = SimConfig {
        events: opts.events,
        batch: opts.batch,
        window: opts.window,
        backoff_base: opts.backoff_base,
        backoff_max: opts.backoff_max,
        stable_after: opts.stable_after,
        first_spread: opts.first_spread,
        ack_timeout: opts.ack_timeout,
    };
    let stats = Arc::new(FleetStats::default());
    let (flood, flood_rx) = watch::channel(false);
    let first_publish = Arc::new(Mutex::new(None));
    let syncs_before = hub.stats().syncs;
    let t = Instant::now();
    let tasks = identities
        .into_iter()
        .enumerate()
        .map(|(i, (id, options))| {
            let gw = SimGateway {
                id,
                options,
                cfg: cfg.clone(),
                stats: Arc::clone(&stats),
                first_publish: Arc::clone(&first_publish),
                jitter: Jitter::new(0x5eed ^ i as u64),
                outbox: VecDeque::new(),
                acked_upto: 0,
                published_upto: 0,
                written: false,
                cursor: 0,
                bookings: BTreeMap::new(),
            };
            tokio::spawn(gw.run(flood_rx.clone()))
        })
        .collect();
    let fleet = Fleet {
        stats,
        flood,
        first_publish,
        tasks,
        gateways: opts.gateways,
    };
    let all = fleet.gateways;
    let connected = wait_until("the fleet to connect", PHASE_LIMIT, || {
        fleet.stats.connected.load(Ordering::Relaxed) >= all
    })
    .await;
    println!(
        "# fleet: {}/{all} gateways connected in {:.2} s (first connects spread over {} ms)",
        fleet.stats.connected.load(Ordering::Relaxed),
        t.elapsed().as_secs_f64(),
        opts.first_spread.as_millis()
    );
    connected?;
    // Each connect sends a retained status and a sync request; let the hub finish them so the
    // ingest figure measures events only.
    let answered = settle_syncs(hub, syncs_before, all as u64).await;
    println!(
        "# hub answered {answered}/{all} sync requests of the connect burst {:.2} s after the first connect{}",
        t.elapsed().as_secs_f64(),
        if answered < all as u64 {
            " (the rest were dropped on the way: see the broker's queue limits)"
        } else {
            ""
        }
    );
    Ok(fleet)
}

/// Waits until the hub has answered `expected` more sync requests than `before`, or their count
/// stops moving for 2 s; returns how many it answered.
async fn settle_syncs(hub: &Hub, before: u64, expected: u64) -> u64 {
    let deadline = Instant::now() + PHASE_LIMIT;
    let mut last = (hub.stats().syncs, Instant::now());
    loop {
        let now = hub.stats().syncs;
        if now - before >= expected || Instant::now() >= deadline {
            return now - before;
        }
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(2) {
            return now - before;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A simulated gateway: an in-memory outbox, events up in order, acks, bookings down, and
/// reconnects with full-jitter backoff. It speaks the protocol with rumqttc directly.
struct SimGateway {
    id: GatewayId,
    options: MqttOptions,
    cfg: SimConfig,
    stats: Arc<FleetStats>,
    first_publish: Arc<Mutex<Option<Instant>>>,
    jitter: Jitter,
    /// Unacknowledged events, oldest first.
    outbox: VecDeque<Event>,
    acked_upto: u64,
    /// Highest sequence number published on the current connection.
    published_upto: u64,
    written: bool,
    cursor: u64,
    bookings: BTreeMap<String, WireBooking>,
}

impl SimGateway {
    async fn run(mut self, mut flood: watch::Receiver<bool>) {
        let mut backoff = Jittered::new(self.cfg.backoff_base, self.cfg.backoff_max);
        tokio::time::sleep(self.cfg.first_spread.mul_f64(self.jitter.uniform())).await;
        loop {
            let mut options = self.options.clone();
            let offline = Status::offline();
            options.set_last_will(LastWill::new(
                self.id.topic(Channel::Status),
                wire::encode(&offline),
                QoS::AtLeastOnce,
                true,
            ));
            let (client, eventloop) = AsyncClient::new(options, 64);
            let up = self.serve(&client, eventloop, &mut flood).await;
            match up {
                Some(since) => {
                    self.stats.connected.fetch_sub(1, Ordering::Relaxed);
                    if since.elapsed() >= self.cfg.stable_after {
                        backoff.reset();
                    }
                }
                None => {
                    self.stats.failed_attempts.fetch_add(1, Ordering::Relaxed);
                }
            }
            tokio::time::sleep(backoff.next_delay(self.jitter.uniform())).await;
        }
    }

    /// Serves one connection until it fails; returns when it came up, if it did.
    async fn serve(
        &mut self,
        client: &AsyncClient,
        mut eventloop: rumqttc::EventLoop,
        flood: &mut watch::Receiver<bool>,
    ) -> Option<Instant> {
        let mut up: Option<Instant> = None;
        let mut last_progress = Instant::now();
        loop {
            let ack_due = tokio::time::Instant::from_std(last_progress + self.cfg.ack_timeout);
            let waiting = up.is_some() && self.published_upto > self.acked_upto;
            tokio::select! {
                ev = eventloop.poll() => match ev {
                    Ok(MqttEvent::Incoming(Packet::ConnAck(_))) => {
                        let now = Instant::now();
                        up = Some(now);
                        self.stats.connected.fetch_add(1, Ordering::Relaxed);
                        if let Ok(mut c) = self.stats.connects.lock() {
                            c.push(now);
                        }
                        self.on_connect(client);
                        last_progress = now;
                    }
                    Ok(MqttEvent::Incoming(Packet::Publish(p))) => {
                        if self.on_message(&p.topic, &p.payload) {
                            last_progress = Instant::now();
                            self.publish_pending(client);
                        }
                    }
                    Ok(_) => {}
                    Err(_) => return up,
                },
                changed = flood.changed() => {
                    if changed.is_err() {
                        // The fleet is being dropped; stay quiet until aborted.
                        std::future::pending::<()>().await;
                    }
                    if *flood.borrow_and_update() && !self.written {
                        self.write_events();
                        if up.is_some() {
                            last_progress = Instant::now();
                            self.publish_pending(client);
                        }
                    }
                }
                () = tokio::time::sleep_until(ack_due), if waiting => {
                    // No ack in time (PROTOCOL.md): send again from the oldest unacknowledged.
                    self.stats.republishes.fetch_add(1, Ordering::Relaxed);
                    self.published_upto = self.acked_upto;
                    last_progress = Instant::now();
                    self.publish_pending(client);
                }
            }
        }
    }

    /// "Durably" appends the gateway's events (in memory here: the drain phase measures the
    /// real redb outbox).
    fn write_events(&mut self) {
        self.written = true;
        let next = self.acked_upto.max(self.outbox.back().map_or(0, |e| e.seq)) + 1;
        for seq in next..next + self.cfg.events {
            self.outbox.push_back(sample_event(seq));
        }
    }

    fn on_connect(&mut self, client: &AsyncClient) {
        for c in [Channel::Acks, Channel::Bookings, Channel::Commands] {
            let _ = client.try_subscribe(self.id.topic(c), QoS::AtLeastOnce);
        }
        let online = Status {
            v: VERSION,
            online: true,
            at_ms: DAY_MS,
            rooms: Vec::new(),
            devices_offline: Vec::new(),
            outbox_depth: self.outbox.len() as u64,
            timezone: "UTC".into(),
            devices_total: 0,
        };
        let _ = client.try_publish(
            self.id.topic(Channel::Status),
            QoS::AtLeastOnce,
            true,
            wire::encode(&online),
        );
        let _ = client.try_publish(
            self.id.topic(Channel::Sync),
            QoS::AtLeastOnce,
            false,
            wire::encode(&SyncRequest {
                v: VERSION,
                cursor: self.cursor,
            }),
        );
        // Everything unacknowledged goes again; the hub ignores what it already has.
        self.published_upto = self.acked_upto;
        self.publish_pending(client);
    }

    /// Publishes outbox events after `published_upto`, in order, within the window.
    fn publish_pending(&mut self, client: &AsyncClient) {
        let limit = self.cfg.window * self.cfg.batch;
        loop {
            let in_flight = self.published_upto.saturating_sub(self.acked_upto) as usize;
            if in_flight >= limit {
                return;
            }
            let skip = in_flight;
            let take = self.cfg.batch.min(limit - in_flight);
            let events: Vec<Event> = self.outbox.iter().skip(skip).take(take).cloned().collect();
            let Some(last) = events.last().map(|e| e.seq) else {
                return;
            };
            let batch = wire::EventBatch {
                v: VERSION,
                gateway: self.id.to_string(),
                events,
            };
            if client
                .try_publish(
                    self.id.topic(Channel::Events),
                    QoS::AtLeastOnce,
                    false,
                    wire::encode(&batch),
                )
                .is_err()
            {
                return; // the request queue is full: the rest goes after the next ack
            }
            if let Ok(mut first) = self.first_publish.lock() {
                first.get_or_insert_with(Instant::now);
            }
            self.published_upto = last;
        }
    }

    /// Handles a message from the hub; true when it made progress (an ack).
    fn on_message(&mut self, topic: &str, payload: &[u8]) -> bool {
        let Some((_, channel)) = GatewayId::parse(topic) else {
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
            return false;
        };
        match channel {
            Channel::Acks => match wire::decode::<Ack>(payload) {
                Ok(ack) if ack.upto > self.acked_upto => {
                    let mut forgotten = 0;
                    while self.outbox.front().is_some_and(|e| e.seq <= ack.upto) {
                        self.outbox.pop_front();
                        forgotten += 1;
                    }
                    self.acked_upto = ack.upto;
                    self.published_upto = self.published_upto.max(ack.upto);
                    self.stats
                        .acked_events
                        .fetch_add(forgotten, Ordering::Relaxed);
                    true
                }
                Ok(_) => false,
                Err(_) => {
                    self.stats.refused.fetch_add(1, Ordering::Relaxed);
                    false
                }
            },
            Channel::Bookings => {
                match wire::decode::<BookingChanges>(payload) {
                    Ok(changes) => {
                        self.stats.booking_messages.fetch_add(1, Ordering::Relaxed);
                        let base = changes.cursor.saturating_sub(changes.changes.len() as u64);
                        if changes.full {
                            self.bookings.clear();
                        }
                        if changes.full || base == self.cursor {
                            for c in changes.changes {
                                match c {
                                    BookingChange::Upsert { booking } => {
                                        self.bookings.insert(booking.id.clone(), booking);
                                    }
                                    BookingChange::Delete { id, .. } => {
                                        self.bookings.remove(&id);
                                    }
                                }
                            }
                            self.cursor = changes.cursor;
                        }
                    }
                    Err(_) => {
                        self.stats.refused.fetch_add(1, Ordering::Relaxed);
                    }
                }
                false
            }
            _ => false,
        }
    }
}

/// A check-in, the most common event, with the size of a real one.
fn sample_event(seq: u64) -> Event {
    Event {
        seq,
        at_ms: DAY_MS + seq as i64 * 1000,
        room: format!("r{}", seq % 12),
        booking: Some(format!("b-{seq}")),
        kind: EventKind::CheckedIn,
        reason: "checked in at the door panel".into(),
        data: serde_json::json!({ "method": "panel" }),
    }
}

// ---------------------------------------------------------------------------------------------
// Phases.

async fn ingest(opts: &Options, fleet: &Fleet, hub: &Hub) -> anyhow::Result<()> {
    println!(
        "\n## ingest: {} gateways x {} events, batches of {}, window {}",
        fleet.gateways, opts.events, opts.batch, opts.window
    );
    let total = fleet.gateways as u64 * opts.events;
    let before = hub.stats();
    let acked_before = fleet.stats.acked_events.load(Ordering::Relaxed);
    let republished_before = fleet.stats.republishes.load(Ordering::Relaxed);
    let signal = Instant::now();
    fleet.flood.send_replace(true);
    let stored = wait_until("the hub to store every event", PHASE_LIMIT, || {
        hub.stats().events_new - before.events_new >= total
    })
    .await;
    let end = Instant::now();
    let acked = wait_until("every event to be acked", Duration::from_secs(30), || {
        fleet.stats.acked_events.load(Ordering::Relaxed) - acked_before >= total
    })
    .await;
    let acked_at = Instant::now();
    let after = hub.stats();
    let first = fleet
        .first_publish
        .lock()
        .ok()
        .and_then(|f| *f)
        .unwrap_or(signal);
    let secs = end.duration_since(first).as_secs_f64().max(1e-9);
    let new = after.events_new - before.events_new;
    let batches = after.batches - before.batches;
    println!(
        "ingest: {new}/{total} events stored in {secs:.2} s from the first publish: \
         {:.0} events/s, {:.0} batches/s ({batches} batches, {} duplicates, target >= 20000 events/s)",
        new as f64 / secs,
        batches as f64 / secs,
        after.events_duplicate - before.events_duplicate,
    );
    println!(
        "ingest: every event acked back at the gateways {:.2} s after the first publish; \
         {} republished after no ack in {} ms; {} payloads refused by the hub",
        acked_at.duration_since(first).as_secs_f64(),
        fleet.stats.republishes.load(Ordering::Relaxed) - republished_before,
        opts.ack_timeout.as_millis(),
        after.refused_payloads - before.refused_payloads
    );
    stored?;
    acked?;
    // Exactly once, in order: check a sample of gateways' stored sequences.
    for i in [0, fleet.gateways / 2, fleet.gateways.saturating_sub(1)] {
        let id = GatewayId::new(&format!("site-{}", i / 100), &format!("gw-{i}"))
            .context("gateway id")?;
        let seqs: Vec<u64> = hub
            .store()
            .events(&id)
            .await
            .context("reading the hub's events")?
            .iter()
            .map(|e| e.seq)
            .collect();
        if seqs != (1..=opts.events).collect::<Vec<_>>() {
            bail!(
                "{id}: the hub holds {} events, not 1..={} once each",
                seqs.len(),
                opts.events
            );
        }
    }
    println!("ingest: checked: sampled gateways' events are stored once each, in order");
    Ok(())
}

const SITE: &str = r#"
[site]
name = "Fleet benchmark floor"

[[rooms]]
id = "r1"
name = "Boardroom"
kind = "bookable"
"#;

/// The drain and latency phases, with a real gateway (store, main loop, sync agent).
async fn real_gateway(opts: &Options, broker: &Broker, hub: &Hub) -> anyhow::Result<()> {
    use gateway::store::{OUTBOX_MAX_EVENTS, Store};
    use gateway::sync::{AgentConfig, spawn_agent};

    let id = GatewayId::new("site-real", "gw-1").context("gateway id")?;
    let data = tempfile::Builder::new()
        .prefix("roomgate-fleet-gw-")
        .tempdir()
        .context("creating the gateway's temp dir")?;
    let outbox = if opts.runs("drain") { opts.outbox } else { 0 };
    if outbox > 0 {
        // A long outage: the outbox fills while the hub is unreachable.
        let store = Store::open(data.path()).context("opening the gateway store")?;
        let t = Instant::now();
        let mut seq = 0;
        while seq < outbox {
            let n = (outbox - seq).min(10_000);
            let events = (seq + 1..=seq + n).map(sample_event).collect();
            store
                .append_outbox(events, OUTBOX_MAX_EVENTS)
                .context("filling the outbox")?;
            seq += n;
        }
        println!(
            "\n## drain: a real gateway with {outbox} events in its redb outbox \
             (written in {:.2} s, batches of 10000)",
            t.elapsed().as_secs_f64()
        );
    }
    let site = gateway::site::load(SITE).map_err(|e| anyhow!("the benchmark's site: {e}"))?;
    let running = gateway::app::start(
        site,
        data.path(),
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        gateway::clock::Clock::System,
    )
    .await
    .context("starting the gateway")?;
    let store = running.gateway.store();
    let mut cfg = AgentConfig::new(
        id.clone(),
        broker
            .mqtt_options(&id.client_id(), &id.to_string())
            .context("gateway certificate")?,
    );
    cfg.backoff_min = opts.backoff_base;
    cfg.backoff_max = opts.backoff_max;
    cfg.first_attempt_spread = Duration::ZERO;
    cfg.ack_timeout = opts.ack_timeout;
    let before = hub.stats();
    let spawned = Instant::now();
    let (agent, status) = spawn_agent(
        cfg,
        Arc::clone(&store),
        running.gateway.outbox_watch(),
        running.handle().clone(),
    );
    let result = async {
        wait_until("the agent to connect", PHASE_LIMIT, || {
            status.borrow().connected
        })
        .await?;
        let connected = Instant::now();
        if outbox > 0 {
            let drained = wait_until("the outbox to drain", PHASE_LIMIT, || {
                status.borrow().acked_upto >= outbox
            })
            .await;
            let secs = connected.elapsed().as_secs_f64().max(1e-9);
            let after = hub.stats();
            let acked = status.borrow().acked_upto;
            println!(
                "drain: {acked}/{outbox} events acked by the hub in {secs:.2} s from the connect \
                 ({:.2} s from the agent's start): {:.0} events/s (target >= 5000); \
                 {} batches, {} duplicates; ack timeout {} ms (protocol: 30 s)",
                spawned.elapsed().as_secs_f64(),
                acked as f64 / secs,
                after.batches - before.batches,
                after.events_duplicate - before.events_duplicate,
                opts.ack_timeout.as_millis()
            );
            drained?;
            wait_until("the outbox to be empty", PHASE_LIMIT, || {
                store.outbox_depth().is_ok_and(|d| d == 0)
            })
            .await?;
            println!(
                "drain: checked: the outbox is empty and the hub holds {} events of this gateway",
                hub.store().events(&id).await.context("hub events")?.len()
            );
        }
        if opts.runs("latency") {
            latency(opts, hub, &id, &store, &running).await?;
        }
        anyhow::Ok(())
    }
    .await;
    agent.abort();
    running.shutdown().await;
    result
}

async fn latency(
    opts: &Options,
    hub: &Hub,
    id: &GatewayId,
    store: &gateway::store::Store,
    running: &gateway::app::Running,
) -> anyhow::Result<()> {
    println!(
        "\n## latency: {} hub booking changes, one at a time, to the real gateway's store",
        opts.samples
    );
    // The first sync answer may still be on its way; start from a settled cursor.
    let hub_cursor = hub
        .store()
        .changes_since(id, 0)
        .await
        .context("hub cursor")?
        .cursor;
    wait_until("the gateway's first sync", PHASE_LIMIT, || {
        store.hub_cursor().is_ok_and(|c| c >= hub_cursor)
    })
    .await?;
    let mut snapshots = running.handle().watch();
    let now_ms = gateway::clock::system_now().as_millis();
    let mut samples = Vec::with_capacity(opts.samples);
    for i in 0..opts.samples {
        // Half-hour bookings, one after another from tomorrow on, within the 14-day window.
        let start_ms = now_ms + 86_400_000 + i as i64 * 1_800_000;
        let change = BookingChange::Upsert {
            booking: WireBooking {
                id: format!("bench-{i}"),
                room: "r1".into(),
                start_ms,
                end_ms: start_ms + 1_500_000,
                subject: "Latency probe".into(),
                organizer: "bench@example.com".into(),
                attendees: Vec::new(),
            },
        };
        let t = Instant::now();
        let cursor = hub
            .change_booking(id, change)
            .await
            .context("hub booking change")?;
        let deadline = t + Duration::from_secs(30);
        // Woken by the gateway's snapshot (published after each request), checked every 1 ms.
        while !store.hub_cursor().is_ok_and(|c| c >= cursor) {
            if Instant::now() > deadline {
                bail!("booking change {cursor} not applied within 30 s");
            }
            tokio::select! {
                _ = snapshots.changed() => {}
                () = tokio::time::sleep(Duration::from_millis(1)) => {}
            }
        }
        samples.push(t.elapsed());
    }
    samples.sort();
    let pick = |q: f64| {
        samples
            .get(((samples.len() as f64 * q).ceil() as usize).saturating_sub(1))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "latency: hub change_booking -> applied in the gateway's store: p50 {:.1} ms, p99 {:.1} ms, \
         max {:.1} ms over {} changes (includes the hub's durable write; 1 ms polling resolution)",
        pick(0.5),
        pick(0.99),
        pick(1.0),
        samples.len()
    );
    Ok(())
}

async fn storm(
    opts: &Options,
    fleet: &Fleet,
    broker: &mut Broker,
    hub: &Hub,
) -> anyhow::Result<()> {
    let n = fleet.gateways;
    println!(
        "\n## storm: {n} gateways connected, broker restarted; full-jitter backoff {}..{} ms \
         (protocol 1 s..120 s), reset after {} ms up, extra outage {} ms",
        opts.backoff_base.as_millis(),
        opts.backoff_max.as_millis(),
        opts.stable_after.as_millis(),
        opts.outage.as_millis()
    );
    wait_until("the fleet to be connected", PHASE_LIMIT, || {
        fleet.stats.connected.load(Ordering::Relaxed) >= n
    })
    .await?;
    let failed_before = fleet.stats.failed_attempts.load(Ordering::Relaxed);
    let syncs_before = hub.stats().syncs;
    let down = Instant::now();
    broker.stop().context("stopping the broker")?;
    if !opts.outage.is_zero() {
        tokio::time::sleep(opts.outage).await;
    }
    broker.start_again().context("starting the broker again")?;
    let back = Instant::now();
    println!(
        "storm: broker down for {:.2} s (stop, outage, start until it accepts TLS)",
        back.duration_since(down).as_secs_f64()
    );
    let all = wait_until("every gateway to reconnect", PHASE_LIMIT, || {
        fleet.stats.connected.load(Ordering::Relaxed) >= n
    })
    .await;
    let done = Instant::now();
    let connects = fleet.stats.connects_since(down);
    let mut buckets: Vec<u64> = Vec::new();
    for t in &connects {
        let b = t.saturating_duration_since(back).as_secs() as usize;
        if buckets.len() <= b {
            buckets.resize(b + 1, 0);
        }
        buckets[b] += 1;
    }
    let peak = buckets.iter().copied().max().unwrap_or(0);
    println!(
        "storm: {}/{n} reconnected {:.2} s after the broker was back ({:.2} s after it went down); \
         peak {peak} connects/s; {} failed attempts while it was down or busy",
        connects.len(),
        done.duration_since(back).as_secs_f64(),
        done.duration_since(down).as_secs_f64(),
        fleet.stats.failed_attempts.load(Ordering::Relaxed) - failed_before
    );
    println!("storm: connects per 1 s bucket after the broker was back: {buckets:?}");
    let answered = settle_syncs(hub, syncs_before, n as u64).await;
    println!(
        "storm: the hub answered {answered}/{n} sync requests {:.2} s after the broker was back",
        back.elapsed().as_secs_f64()
    );
    let scale = 1.0 / opts.backoff_base.as_secs_f64().max(1e-3);
    println!(
        "storm: scaled to the protocol's values (x{scale:.0} on every duration, for an outage {scale:.0}x as long): \
         about {:.1} s until all are back, peak about {:.0} connects/s",
        done.duration_since(back).as_secs_f64() * scale,
        peak as f64 / scale
    );
    all
}

/// Polls `cond` every 5 ms until it holds, or fails after `within`.
async fn wait_until(
    what: &str,
    within: Duration,
    mut cond: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > within {
            bail!("timed out after {within:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}
