//! The main loop: owns the engine, feeds it events and time, carries its commands to devices.
//!
//! One task owns the engine and the store handle. Drivers push point updates in; the HTTP
//! layer sends requests through `GatewayHandle` and reads a published `FloorSnapshot`.
//! Device writes go to one writer task per device, so a slow device never blocks the loop.
//! Point values selected for telemetry pass through a pure sampler (`telemetry::Sampler`) on
//! the loop's time, and its batches go to the sync agent.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use drivers::device::{CredentialRead, DeviceHandle, LinkState, PointUpdate};
use drivers::modbus::rtu::{RtuBus, RtuBusStats, UnitState};
use drivers::point::Value;
use scenes::{
    Booking, BookingId, CheckInMethod, Engine, EngineError, Event, Occupancy, OutcomeKind, Output,
    Presenter, ReleaseCause, RoomId, RoomKind, Span, Timestamp, UsageFacts,
};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::api::{
    ActivityDto, BookingDto, BusDto, BusUnitDto, DeviceDto, DevicePointDto, FloorSnapshot,
    PointDto, RoomBookingDto, RoomDto, TimeFmt,
};
use crate::bindings::{PointWrite, writes_for};
use crate::clock::Clock;
use crate::site::{Capability, PointRef, Site};
use crate::store::{ActivityRecord, BookingSource, Store, StoreError, StoredBooking};
use crate::telemetry::Sampler;

/// How many activity lines each room keeps in memory for the live views.
const RECENT_ACTIVITY: usize = 30;
/// How long `GatewayHandle::apply_site` waits for the loop (stopping a BACnet network waits
/// for its devices' requests to end).
const RELOAD_TIMEOUT: Duration = Duration::from_secs(30);

// Site reloads (`apply`), the field owners they start and stop (`field`), and the installer
// console's commissioning operations (`commission`).
mod apply;
mod commission;
mod field;
pub use commission::{
    FoundDevice, ObjectSummary, PointReading, PointWriteAnswer, ScanProbe, ScanTarget, UnitAnswer,
};
pub(crate) use field::FieldParts;
use field::{Field, FieldOutputs};
/// Telemetry batches waiting for the sync agent (it publishes each at once).
const TELEMETRY_QUEUE: usize = 64;
/// Bookings ended longer ago than this are pruned from the store.
const KEEP_PAST_BOOKINGS: Span = Span::minutes(7 * 24 * 60);

/// A request the API could not carry out, and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{message}")]
    Conflict {
        message: String,
        with: Box<BookingDto>,
    },
    #[error("{0}")]
    Unavailable(String),
    /// Understood but not done, and why (a site change that needs a restart).
    #[error("{0}")]
    Refused(String),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::Unavailable(format!("the store refused the change: {e}"))
    }
}

/// Why a gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the BACnet network could not start: {0}")]
    Bacnet(#[from] drivers::bacnet::NetworkError),
    #[error("an RS-485 bus could not start: {0}")]
    Bus(#[from] drivers::modbus::rtu::RtuConfigError),
    #[error("the site's rooms do not make a floor: {0}")]
    Engine(#[from] EngineError),
}

/// A local booking request, already parsed.
#[derive(Debug, Clone)]
pub struct BookingRequest {
    pub room: String,
    pub subject: String,
    pub organizer: String,
    pub start: Timestamp,
    pub end: Timestamp,
    pub attendees: Vec<String>,
}

type Reply<T> = oneshot::Sender<Result<T, ApiError>>;

#[derive(Debug)]
enum Request {
    AddBooking(BookingRequest, Reply<BookingDto>),
    CancelBooking {
        room: String,
        booking: String,
        reply: Reply<()>,
    },
    RunScene {
        room: String,
        scene: String,
        by: String,
        reply: Reply<()>,
    },
    Activity {
        room: String,
        limit: usize,
        reply: Reply<Vec<ActivityDto>>,
    },
    /// A room's stored bookings that overlap `[from_ms, to_ms)`.
    Bookings {
        room: String,
        from_ms: i64,
        to_ms: i64,
        reply: Reply<Vec<RoomBookingDto>>,
    },
    /// Extend the running meeting, end it now, or present a credential: answered with the
    /// outcome's words.
    Room {
        room: String,
        action: RoomAction,
        reply: Reply<String>,
    },
    /// Booking changes from the hub: stored with their cursor, then given to the engine.
    HubBookings(cloud_sync::wire::BookingChanges, Reply<()>),
    /// The sync agent's link to the hub went up or down (telemetry goes only while it is up).
    HubLink(bool),
    /// Resolves once everything sent before it, and the clock as it is now, is processed.
    Settle(Reply<()>),
    /// What the commissioning operations need of the field (`commission.rs`).
    FieldView(Reply<commission::FieldView>),
    /// A changed site: planned, and applied unless `dry_run` (`apply.rs`).
    ApplySite {
        site: Box<Site>,
        dry_run: bool,
        reply: Reply<crate::reload::ReloadReport>,
    },
}

/// Things people do at a room (door panel, API).
#[derive(Debug, Clone)]
pub enum RoomAction {
    CheckIn,
    Extend {
        until: Timestamp,
    },
    EndNow,
    /// A card number or QR payload, resolved through the site's directory.
    Credential(String),
}

/// The way into a running gateway, for the HTTP layer, the demo and tests.
#[derive(Debug, Clone)]
pub struct GatewayHandle {
    tx: mpsc::Sender<Request>,
    snapshot: watch::Receiver<Arc<FloorSnapshot>>,
    telemetry: broadcast::Sender<Arc<cloud_sync::wire::Telemetry>>,
    /// Engine events, commands and outcomes by kind, for `/metrics` (systemd/metrics work).
    pub counters: Arc<crate::metrics::LoopCounters>,
    pub time: TimeFmt,
    pub clock: Clock,
}

impl GatewayHandle {
    pub fn snapshot(&self) -> Arc<FloorSnapshot> {
        self.snapshot.borrow().clone()
    }

    pub fn watch(&self) -> watch::Receiver<Arc<FloorSnapshot>> {
        self.snapshot.clone()
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Request) -> Result<T, ApiError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(make(tx))
            .await
            .map_err(|_| ApiError::Unavailable("the gateway is shutting down".into()))?;
        rx.await
            .map_err(|_| ApiError::Unavailable("the gateway is shutting down".into()))?
    }

    pub async fn add_booking(&self, req: BookingRequest) -> Result<BookingDto, ApiError> {
        self.call(|r| Request::AddBooking(req, r)).await
    }

    pub async fn cancel_booking(&self, room: &str, booking: &str) -> Result<(), ApiError> {
        self.call(|reply| Request::CancelBooking {
            room: room.into(),
            booking: booking.into(),
            reply,
        })
        .await
    }

    /// Checks in the room's current or imminent meeting; returns what happened.
    pub async fn check_in(&self, room: &str) -> Result<String, ApiError> {
        self.room_action(room, RoomAction::CheckIn).await
    }

    /// Does something at a room; returns what happened, in words.
    pub async fn room_action(&self, room: &str, action: RoomAction) -> Result<String, ApiError> {
        self.call(|reply| Request::Room {
            room: room.into(),
            action,
            reply,
        })
        .await
    }

    pub async fn run_scene(&self, room: &str, scene: &str, by: &str) -> Result<(), ApiError> {
        self.call(|reply| Request::RunScene {
            room: room.into(),
            scene: scene.into(),
            by: by.into(),
            reply,
        })
        .await
    }

    /// A room's activity log from the store, newest first.
    pub async fn activity(&self, room: &str, limit: usize) -> Result<Vec<ActivityDto>, ApiError> {
        self.call(|reply| Request::Activity {
            room: room.into(),
            limit,
            reply,
        })
        .await
    }

    /// A room's bookings that overlap `[from_ms, to_ms)`, as stored (finished ones too, until
    /// they are pruned a week after), by start.
    pub async fn bookings(
        &self,
        room: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<RoomBookingDto>, ApiError> {
        self.call(|reply| Request::Bookings {
            room: room.into(),
            from_ms,
            to_ms,
            reply,
        })
        .await
    }

    /// Applies booking changes that came down from the hub.
    pub async fn hub_bookings(
        &self,
        changes: cloud_sync::wire::BookingChanges,
    ) -> Result<(), ApiError> {
        self.call(|reply| Request::HubBookings(changes, reply))
            .await
    }

    /// Tells the loop whether the hub can be reached (the sync agent calls it on connect and
    /// disconnect): telemetry batches are made only while it can.
    pub async fn hub_link(&self, connected: bool) {
        let _ = self.tx.send(Request::HubLink(connected)).await;
    }

    /// Telemetry batches for the hub (`[cloud.telemetry]`), as the loop makes them; made only
    /// while a subscriber exists and the hub link is up.
    pub fn telemetry(&self) -> broadcast::Receiver<Arc<cloud_sync::wire::Telemetry>> {
        self.telemetry.subscribe()
    }

    /// Applies a changed site without a restart: only the devices, buses and rooms it changes
    /// are restarted or reconfigured. Refused (nothing changes) when it needs a restart (a
    /// time-zone change) or when a new device owner cannot start.
    pub async fn apply_site(&self, new: Site) -> Result<crate::reload::ReloadReport, ApiError> {
        self.site_request(new, false).await
    }

    /// What [`GatewayHandle::apply_site`] would do, without doing it.
    pub async fn plan_site(&self, new: Site) -> Result<crate::reload::ReloadReport, ApiError> {
        self.site_request(new, true).await
    }

    async fn site_request(
        &self,
        new: Site,
        dry_run: bool,
    ) -> Result<crate::reload::ReloadReport, ApiError> {
        let call = self.call(|reply| Request::ApplySite {
            site: Box::new(new),
            dry_run,
            reply,
        });
        tokio::time::timeout(RELOAD_TIMEOUT, call)
            .await
            .unwrap_or_else(|_| {
                Err(ApiError::Unavailable(
                    "the reload did not finish in time; see the log".into(),
                ))
            })
    }

    /// Waits until the loop has caught up with every earlier request and with the clock.
    pub async fn settle(&self) -> Result<(), ApiError> {
        self.call(Request::Settle).await
    }
}

/// A running gateway: its devices and its main loop.
#[derive(Debug)]
pub struct Gateway {
    pub handle: GatewayHandle,
    /// Shared with the loop, which starts and stops parts of it on a site reload.
    field: Arc<tokio::sync::Mutex<Field>>,
    task: tokio::task::JoinHandle<()>,
    store: Arc<Store>,
    outbox: watch::Receiver<u64>,
}

impl Gateway {
    /// Starts the devices and the main loop. The store must already be open.
    pub async fn start(site: Site, store: Store, clock: Clock) -> Result<Gateway, StartError> {
        let site = Arc::new(site);
        let store = Arc::new(store);
        let (updates_tx, updates_rx) = mpsc::channel(1024);
        let (failures_tx, failures_rx) = mpsc::channel(256);
        let (credentials_tx, credentials_rx) = mpsc::channel(256);
        let outputs = FieldOutputs {
            updates: updates_tx,
            credentials: credentials_tx,
        };
        let field = Field::start(&site, &outputs).await?;
        let writers = field
            .devices
            .iter()
            .map(|(id, handle)| {
                (
                    id.clone(),
                    spawn_writer(handle.clone(), failures_tx.clone()),
                )
            })
            .collect();
        let devices = field.devices.clone();
        let time = TimeFmt {
            tz: site.timezone.clone(),
        };
        let engine = Engine::new(site.rooms.iter().map(|r| r.config.clone()).collect())?;
        let inputs = apply::inputs_of(&site);
        let buses = (site.buses.iter())
            .filter_map(|b| field.buses.get(&b.id))
            .map(RtuBus::watch_stats)
            .collect();
        let field = Arc::new(tokio::sync::Mutex::new(field));
        let empty = Arc::new(FloorSnapshot {
            site: site.name.clone(),
            timezone: site.timezone_name.clone(),
            now: String::new(),
            now_ms: 0,
            rooms: Vec::new(),
            devices: Vec::new(),
            buses: Vec::new(),
            cloud: if site.cloud.is_some() { "down" } else { "none" },
        });
        let (snap_tx, snap_rx) = watch::channel(empty);
        let (outbox_tx, outbox_rx) = watch::channel(0u64);
        let (telemetry_tx, _) = broadcast::channel(TELEMETRY_QUEUE);
        let (tx, rx) = mpsc::channel(64);
        let sampler = site
            .cloud
            .as_ref()
            .and_then(|c| c.telemetry.as_ref())
            .map(|cfg| Sampler::new(cfg, clock.now()));
        let mut main = MainLoop {
            site: site.clone(),
            engine,
            store: store.clone(),
            clock: clock.clone(),
            time: time.clone(),
            devices: devices.clone(),
            writers,
            values: HashMap::new(),
            inputs,
            recent: HashMap::new(),
            unsaved: Vec::new(),
            snapshot: snap_tx,
            buses,
            device_states: HashMap::new(),
            local_seq: 0,
            outcome_texts: Vec::new(),
            unsent: Vec::new(),
            outbox_tx: outbox_tx.clone(),
            sampler,
            hub_link: false,
            telemetry: telemetry_tx.clone(),
            counters: Arc::default(),
            field: Arc::clone(&field),
            outputs,
            failures_tx,
        };
        main.restore()?;
        let main_counters = main.counters.clone();
        let task = tokio::spawn(main.run(rx, updates_rx, failures_rx, credentials_rx));
        Ok(Gateway {
            store,
            outbox: outbox_rx,
            handle: GatewayHandle {
                tx,
                snapshot: snap_rx,
                telemetry: telemetry_tx,
                counters: main_counters,
                time,
                clock,
            },
            field,
            task,
        })
    }

    /// The store, shared with the sync agent (and tests).
    pub fn store(&self) -> Arc<Store> {
        Arc::clone(&self.store)
    }

    /// Changes to the highest outbox sequence number written, for the sync agent.
    pub fn outbox_watch(&self) -> watch::Receiver<u64> {
        self.outbox.clone()
    }

    /// Stops the loop and every device task.
    pub async fn shutdown(self) {
        drop(self.handle);
        self.task.abort();
        let _ = self.task.await;
        let field = std::mem::take(&mut *self.field.lock().await);
        field.stop().await;
    }
}

#[derive(Debug)]
struct WriteJob {
    room: RoomId,
    write: PointWrite,
    what: String,
}

#[derive(Debug)]
struct WriteFailure {
    room: RoomId,
    text: String,
}

/// One writer per device keeps a scene's writes to that device in order.
fn spawn_writer(
    device: DeviceHandle,
    failures: mpsc::Sender<WriteFailure>,
) -> mpsc::Sender<WriteJob> {
    let (tx, mut rx) = mpsc::channel::<WriteJob>(256);
    tokio::spawn(async move {
        while let Some(job) = rx.recv().await {
            if let Err(e) = device.write(&job.write.point.point, job.write.value).await {
                let text = format!(
                    "{} failed: writing {} to {}: {e}",
                    job.what, job.write.value, job.write.point
                );
                tracing::warn!(room = %job.room, "{text}");
                let _ = failures
                    .send(WriteFailure {
                        room: job.room,
                        text,
                    })
                    .await;
            }
        }
    });
    tx
}

struct MainLoop {
    site: Arc<Site>,
    engine: Engine,
    store: Arc<Store>,
    clock: Clock,
    time: TimeFmt,
    devices: HashMap<String, DeviceHandle>,
    writers: HashMap<String, mpsc::Sender<WriteJob>>,
    values: HashMap<PointRef, Option<Value>>,
    inputs: HashMap<PointRef, Vec<(RoomId, Capability)>>,
    recent: HashMap<RoomId, VecDeque<ActivityDto>>,
    unsaved: Vec<(String, ActivityRecord)>,
    snapshot: watch::Sender<Arc<FloorSnapshot>>,
    /// Statistics of each RS-485 bus, as its owner task publishes them.
    buses: Vec<watch::Receiver<RtuBusStats>>,
    /// Each device's last link state, to log changes as events.
    device_states: HashMap<String, &'static str>,
    local_seq: u64,
    /// Outcome texts of the last drain, so a room action can answer with what it caused.
    outcome_texts: Vec<(RoomId, String)>,
    /// Events for the hub, written to the outbox at the next flush.
    unsent: Vec<cloud_sync::wire::Event>,
    /// Tells the sync agent that the outbox has new events.
    outbox_tx: watch::Sender<u64>,
    /// Batches and rate-limits point values for the hub, when the site asks for telemetry.
    sampler: Option<Sampler>,
    /// Whether the sync agent reports the hub link up.
    hub_link: bool,
    /// Where telemetry batches go (the sync agent subscribes).
    telemetry: broadcast::Sender<Arc<cloud_sync::wire::Telemetry>>,
    /// Engine events, commands and outcomes by kind (`/metrics`).
    counters: Arc<crate::metrics::LoopCounters>,
    /// The field owners, which a site reload starts and stops in parts (`apply.rs`).
    field: Arc<tokio::sync::Mutex<Field>>,
    /// Where owners started by a reload send their updates and credentials.
    outputs: FieldOutputs,
    /// Where writers started by a reload report failed writes.
    failures_tx: mpsc::Sender<WriteFailure>,
}

impl MainLoop {
    /// Loads stored bookings and check-ins into the engine after a restart.
    fn restore(&mut self) -> Result<(), StoreError> {
        let now = self.clock.now();
        let pruned = self
            .store
            .prune_bookings((now - KEEP_PAST_BOOKINGS).as_millis())?;
        if pruned > 0 {
            tracing::info!("pruned {pruned} bookings older than a week");
        }
        for b in self.store.bookings()? {
            if b.end_ms <= now.as_millis() || b.finished_ms.is_some() {
                continue;
            }
            // Loaded with its check-in before the room is evaluated, so a restarted meeting
            // is neither released nor started twice.
            let checked_in = b.checked_in_ms.map(Timestamp::from_millis);
            if let Err(e) = self.engine.restore_booking(to_booking(&b), checked_in) {
                tracing::warn!("stored booking {} not restored: {e}", b.id);
            }
        }
        for r in &self.site.rooms {
            let rows = self.store.activity(r.config.id.as_str(), RECENT_ACTIVITY)?;
            let recent = rows.into_iter().map(|a| self.activity_dto(a)).collect();
            self.recent.insert(r.config.id.clone(), recent);
        }
        // The first tick evaluates every room and sends what is due now, re-asserting the
        // devices of running meetings (they may have lost power with the gateway).
        Ok(())
    }

    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Request>,
        mut updates: mpsc::Receiver<PointUpdate>,
        mut failures: mpsc::Receiver<WriteFailure>,
        mut credentials: mpsc::Receiver<CredentialRead>,
    ) {
        let mut waiter = self.clock.waiter();
        loop {
            self.tick();
            let telemetry_due = self.sampler.as_ref().and_then(Sampler::poll_timeout);
            let deadline = match (self.engine.poll_timeout(), telemetry_due) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            tokio::select! {
                req = rx.recv() => match req {
                    // A site reload awaits its owners starting and stopping (`apply.rs`).
                    Some(Request::ApplySite { site, dry_run, reply }) => {
                        let result = self.apply_site(*site, dry_run).await;
                        let _ = reply.send(result);
                    }
                    // The field's owners are behind the lock a reload holds.
                    Some(Request::FieldView(reply)) => {
                        let _ = reply.send(Ok(self.field_view().await));
                    }
                    Some(r) => self.handle_request(r),
                    None => break,
                },
                Some(u) = updates.recv() => self.handle_update(u),
                Some(c) = credentials.recv() => self.handle_credential(c),
                Some(f) = failures.recv() => self.log(&f.room, "error", f.text, self.clock.now()),
                _ = waiter.wait(deadline) => {}
            }
        }
        self.flush_activity();
    }

    /// Runs due timers, carries out outputs, saves the activity log, publishes the snapshot.
    fn tick(&mut self) {
        let now = self.clock.now();
        self.engine.handle_timeout(now);
        self.drain(now);
        self.flush_activity();
        self.publish(now);
        self.send_telemetry(now);
    }

    /// Hands the sync agent the telemetry batch due now, if any.
    fn send_telemetry(&mut self, now: Timestamp) {
        let Some(sampler) = &mut self.sampler else {
            return;
        };
        if self.telemetry.receiver_count() == 0 {
            // No agent listens: nothing would be sent, so nothing is taken.
            return;
        }
        if let Some(samples) = sampler.poll_batch(now) {
            let batch = cloud_sync::wire::Telemetry {
                v: cloud_sync::wire::VERSION,
                samples,
            };
            let _ = self.telemetry.send(Arc::new(batch));
        }
    }

    fn drain(&mut self, now: Timestamp) {
        while let Some(out) = self.engine.poll() {
            match out {
                Output::Command(c) => {
                    self.counters
                        .command(&crate::metrics::variant_name(&c.action));
                    let reason = c.reason.render_with(&|t| self.time.hh_mm(t));
                    let text = format!("{}: {reason}", c.action);
                    self.log(&c.room, "command", text.clone(), c.at);
                    let Some(room) = self.site.room(c.room.as_str()) else {
                        continue;
                    };
                    for w in writes_for(&room.bindings, &c.action) {
                        let Some(writer) = self.writers.get(&w.point.device) else {
                            continue;
                        };
                        let job = WriteJob {
                            room: c.room.clone(),
                            write: w,
                            what: c.action.to_string(),
                        };
                        if writer.try_send(job).is_err() {
                            let msg = format!("{text}: not sent, the device's write queue is full");
                            self.log(&c.room, "error", msg, now);
                        }
                    }
                }
                Output::Outcome(o) => {
                    self.counters
                        .outcome(&crate::metrics::variant_name(&o.kind));
                    let reason = o.reason.render_with(&|t| self.time.hh_mm(t));
                    let booking = o
                        .booking
                        .as_ref()
                        .map(|b| format!(" [{b}]"))
                        .unwrap_or_default();
                    let text = match &o.kind {
                        OutcomeKind::Usage(u) => format!("usage{booking}: {}", self.usage_text(u)),
                        kind => format!("{}{booking}: {reason}", outcome_words(kind)),
                    };
                    self.outcome_texts.push((o.room.clone(), text.clone()));
                    if let Some(e) = crate::sync::outcome_event(&o, &reason) {
                        self.unsent.push(e);
                    }
                    self.log(&o.room, "outcome", text, o.at);
                    if let Some(b) = &o.booking {
                        self.persist_outcome(b, &o.kind, o.at);
                    }
                }
                Output::State { at, room, state } => {
                    self.log(&room, "state", format!("room is {state}"), at);
                }
            }
        }
    }

    /// Keeps what a restart must know about a booking: its check-in, a changed end, and
    /// whether it is over (so it is never started or released twice).
    fn persist_outcome(&mut self, booking: &BookingId, kind: &OutcomeKind, at: Timestamp) {
        /// What an outcome changes in a stored booking.
        enum Fact {
            CheckedIn,
            EndsAt(i64),
            Finished,
        }
        let fact = match kind {
            OutcomeKind::CheckedIn(_) => Fact::CheckedIn,
            OutcomeKind::Extended { until } => Fact::EndsAt(until.as_millis()),
            OutcomeKind::Ended | OutcomeKind::Released(_) => Fact::Finished,
            _ => return,
        };
        let at = at.as_millis();
        let result = self.store.booking(booking.as_str()).and_then(|b| match b {
            Some(mut b) => {
                match fact {
                    Fact::CheckedIn => b.checked_in_ms = b.checked_in_ms.or(Some(at)),
                    Fact::EndsAt(end) => b.end_ms = end,
                    Fact::Finished => {
                        b.finished_ms = Some(at);
                        b.end_ms = b.end_ms.min(at.max(b.start_ms + 1));
                    }
                }
                self.store.put_booking(&b)
            }
            None => Ok(()),
        });
        if let Err(e) = result {
            tracing::error!("outcome of {booking} not stored: {e}");
        }
    }

    fn usage_text(&self, u: &UsageFacts) -> String {
        let came = u.actual_start.map_or_else(
            || "nobody came".to_owned(),
            |t| format!("came {}", self.time.hh_mm(t)),
        );
        format!(
            "{came}, left {}, occupied {}, devices on {}",
            self.time.hh_mm(u.actual_end),
            u.occupied,
            u.devices_on
        )
    }

    fn log(&mut self, room: &RoomId, kind: &str, text: String, at: Timestamp) {
        tracing::info!(room = %room, kind, "{text}");
        let rec = ActivityRecord {
            at_ms: at.as_millis(),
            kind: kind.to_owned(),
            text,
        };
        let dto = self.activity_dto(rec.clone());
        let recent = self.recent.entry(room.clone()).or_default();
        recent.push_front(dto);
        recent.truncate(RECENT_ACTIVITY);
        self.unsaved.push((room.as_str().to_owned(), rec));
    }

    fn activity_dto(&self, a: ActivityRecord) -> ActivityDto {
        ActivityDto {
            at: self.time.hh_mm_ss(Timestamp::from_millis(a.at_ms)),
            at_ms: a.at_ms,
            kind: a.kind,
            text: a.text,
        }
    }

    fn flush_activity(&mut self) {
        self.flush_outbox();
        if self.unsaved.is_empty() {
            return;
        }
        if let Err(e) = self.store.append_activity(&self.unsaved) {
            tracing::error!(
                "activity log not stored ({} lines kept in memory): {e}",
                self.unsaved.len()
            );
            // Keep them for the next attempt, bounded so a dead disk cannot eat the memory.
            let excess = self.unsaved.len().saturating_sub(10_000);
            self.unsaved.drain(..excess);
            return;
        }
        self.unsaved.clear();
    }

    /// Makes the hub's events durable (before anything could publish them) and wakes the
    /// sync agent. On a store failure they stay queued in memory for the next attempt.
    fn flush_outbox(&mut self) {
        if self.unsent.is_empty() {
            return;
        }
        let events = std::mem::take(&mut self.unsent);
        match self
            .store
            .append_outbox(events.clone(), crate::store::OUTBOX_MAX_EVENTS)
        {
            Ok(appended) => {
                if appended.dropped > 0 {
                    tracing::warn!(
                        "outbox full: {} device/access events dropped",
                        appended.dropped
                    );
                }
                if let Some(last) = appended.seqs.last() {
                    self.outbox_tx.send_replace(*last);
                }
            }
            Err(e) => {
                tracing::error!(
                    "outbox not written ({} events kept in memory): {e}",
                    events.len()
                );
                self.unsent = events;
            }
        }
    }

    fn handle_update(&mut self, u: PointUpdate) {
        let r = PointRef {
            device: u.device,
            point: u.point,
        };
        if let Some(sampler) = &mut self.sampler {
            sampler.observe(
                self.clock.now(),
                &r,
                crate::telemetry::sample_value(u.value),
            );
        }
        if let Some(listeners) = self.inputs.get(&r).cloned() {
            let now = self.clock.now();
            self.engine.handle_timeout(now);
            for (room, cap) in listeners {
                let ev = match cap.air_metric() {
                    Some(metric) => Event::AirQuality {
                        room,
                        metric,
                        value: u.value.map(|v| v.as_f64() as f32),
                    },
                    None => Event::Occupancy {
                        room,
                        occupancy: match u.value {
                            Some(v) if v.as_bool() => Occupancy::Occupied,
                            Some(_) => Occupancy::Vacant,
                            None => Occupancy::Unknown,
                        },
                    },
                };
                if let Err(e) = self.engine_event(now, ev) {
                    tracing::warn!("input from {r} refused: {e}");
                }
            }
        }
        self.values.insert(r, u.value);
    }

    /// A card, QR code or PIN at a reader: to every room whose door the reader serves.
    fn handle_credential(&mut self, c: CredentialRead) {
        let at = PointRef {
            device: c.device,
            point: c.reader,
        };
        let rooms: Vec<RoomId> = self
            .site
            .rooms
            .iter()
            .filter(|r| r.bindings.get(&Capability::Reader) == Some(&at))
            .map(|r| r.config.id.clone())
            .collect();
        if rooms.is_empty() {
            tracing::info!("credential at {at}, a reader bound to no room");
        }
        let now = self.clock.now();
        for room in rooms {
            if let Err(e) = self.room_action(
                now,
                room.as_str(),
                RoomAction::Credential(c.credential.clone()),
            ) {
                tracing::warn!("credential at {at} for {room}: {e}");
            }
        }
    }

    fn handle_request(&mut self, req: Request) {
        let now = self.clock.now();
        self.engine.handle_timeout(now);
        self.drain(now);
        match req {
            Request::AddBooking(b, reply) => {
                let _ = reply.send(self.add_booking(b, now));
            }
            Request::CancelBooking {
                room,
                booking,
                reply,
            } => {
                let _ = reply.send(self.cancel_booking(&room, &booking, now));
            }
            Request::Room {
                room,
                action,
                reply,
            } => {
                let _ = reply.send(self.room_action(now, &room, action));
            }
            Request::RunScene {
                room,
                scene,
                by,
                reply,
            } => {
                let ev = Event::RunScene {
                    room: RoomId::from(room.as_str()),
                    scene,
                    by,
                };
                let _ = reply.send(self.room_event(now, ev));
            }
            Request::Activity { room, limit, reply } => {
                self.flush_activity();
                let result = if self.site.room(&room).is_none() {
                    Err(ApiError::NotFound(format!("no room '{room}'")))
                } else {
                    self.store
                        .activity(&room, limit)
                        .map(|rows| rows.into_iter().map(|a| self.activity_dto(a)).collect())
                        .map_err(ApiError::from)
                };
                let _ = reply.send(result);
            }
            Request::Bookings {
                room,
                from_ms,
                to_ms,
                reply,
            } => {
                let _ = reply.send(self.room_bookings(&room, from_ms, to_ms));
            }
            Request::HubBookings(changes, reply) => {
                let _ = reply.send(self.apply_hub_bookings(now, changes));
            }
            Request::HubLink(up) => {
                self.hub_link = up;
                if let Some(sampler) = &mut self.sampler {
                    sampler.set_link(up);
                }
            }
            Request::ApplySite { reply, .. } => {
                // `run` takes these before they get here: applying one awaits the field.
                let _ = reply.send(Err(ApiError::Unavailable(
                    "a site change must go through the main loop".into(),
                )));
            }
            Request::FieldView(reply) => {
                // `run` takes these before they get here, for the same reason.
                let _ = reply.send(Err(ApiError::Unavailable(
                    "the field must be looked at from the main loop".into(),
                )));
            }
            Request::Settle(reply) => {
                self.tick();
                let _ = reply.send(Ok(()));
                return;
            }
        }
        self.tick();
    }

    /// Carries out a room action and answers with the outcome it produced, in words.
    fn room_action(
        &mut self,
        now: Timestamp,
        room: &str,
        action: RoomAction,
    ) -> Result<String, ApiError> {
        let room_id = RoomId::from(room);
        let by = "door panel".to_owned();
        let ev = match action {
            RoomAction::CheckIn => Event::CheckIn {
                room: room_id.clone(),
                method: CheckInMethod::Panel,
                booking: None,
            },
            RoomAction::Extend { until } => Event::Extend {
                room: room_id.clone(),
                until,
                by,
            },
            RoomAction::EndNow => Event::EndNow {
                room: room_id.clone(),
                by,
            },
            RoomAction::Credential(credential) => {
                let presenter = match self.site.people.lookup(&credential) {
                    Some(p) => Presenter {
                        person: Some(p.id.clone()),
                        groups: p.groups.clone(),
                    },
                    None => Presenter::default(),
                };
                Event::Credential {
                    room: room_id.clone(),
                    presenter,
                }
            }
        };
        self.drain(now);
        self.outcome_texts.clear();
        self.room_event(now, ev)?;
        self.drain(now);
        // The outcomes the event produced say what happened.
        let words: Vec<String> = self
            .outcome_texts
            .drain(..)
            .filter(|(r, _)| *r == room_id)
            .map(|(_, t)| t)
            .collect();
        Ok(words.join("; "))
    }

    /// Gives the engine an event, counted by kind for `/metrics`.
    fn engine_event(&mut self, now: Timestamp, ev: Event) -> Result<(), EngineError> {
        let kind = crate::metrics::variant_name(&ev);
        let result = self.engine.handle_event(now, ev);
        self.counters.event(&kind, result.is_ok());
        result
    }

    fn room_event(&mut self, now: Timestamp, ev: Event) -> Result<(), ApiError> {
        self.engine_event(now, ev).map_err(|e| match e {
            EngineError::UnknownRoom(_) | EngineError::UnknownScene { .. } => {
                ApiError::NotFound(e.to_string())
            }
            _ => ApiError::BadRequest(e.to_string()),
        })
    }

    fn booking_dto(&self, b: &Booking, checked_in: bool) -> BookingDto {
        BookingDto {
            id: b.id.to_string(),
            room: b.room.to_string(),
            subject: b.subject.clone(),
            organizer: b.organizer.clone(),
            start: self.time.rfc3339(b.start),
            end: self.time.rfc3339(b.end),
            start_ms: b.start.as_millis(),
            end_ms: b.end.as_millis(),
            checked_in,
        }
    }

    fn add_booking(&mut self, req: BookingRequest, now: Timestamp) -> Result<BookingDto, ApiError> {
        let room = self
            .site
            .room(&req.room)
            .ok_or_else(|| ApiError::NotFound(format!("no room '{}'", req.room)))?;
        if room.config.kind == RoomKind::Closed {
            return Err(ApiError::BadRequest(format!(
                "room '{}' is closed and takes no bookings",
                req.room
            )));
        }
        if req.end <= req.start {
            return Err(ApiError::BadRequest(
                "the booking must end after it starts".into(),
            ));
        }
        if req.end <= now {
            return Err(ApiError::BadRequest("the booking is already over".into()));
        }
        if req.end.since(req.start) > Span::minutes(24 * 60) {
            return Err(ApiError::BadRequest(
                "a booking lasts at most 24 hours".into(),
            ));
        }
        for existing in self.store.bookings()? {
            if existing.room == req.room
                && existing.start_ms < req.end.as_millis()
                && req.start.as_millis() < existing.end_ms
            {
                let b = to_booking(&existing);
                let running_or_future = self.engine.room(&b.room).is_some_and(|v| {
                    v.current.as_ref().is_some_and(|c| c.booking.id == b.id) || b.start > now
                });
                if running_or_future {
                    let dto = self.booking_dto(&b, existing.checked_in_ms.is_some());
                    return Err(ApiError::Conflict {
                        message: format!(
                            "the room is booked from {} to {} ('{}')",
                            self.time.hh_mm(b.start),
                            self.time.hh_mm(b.end),
                            b.subject
                        ),
                        with: Box::new(dto),
                    });
                }
            }
        }
        self.local_seq += 1;
        let id = format!("local-{}-{}", now.as_millis(), self.local_seq);
        let stored = StoredBooking {
            id,
            room: req.room.clone(),
            start_ms: req.start.as_millis(),
            end_ms: req.end.as_millis(),
            subject: req.subject,
            organizer: req.organizer,
            source: BookingSource::Local,
            checked_in_ms: None,
            attendees: req.attendees,
            finished_ms: None,
        };
        // Durable first, then the engine, then the answer.
        self.store.put_booking(&stored)?;
        let booking = to_booking(&stored);
        self.room_event(now, Event::BookingUpserted(booking.clone()))?;
        let text = format!(
            "booking [{}] added: '{}' {}–{} by {}",
            booking.id,
            booking.subject,
            self.time.hh_mm(booking.start),
            self.time.hh_mm(booking.end),
            booking.organizer
        );
        self.log(&booking.room, "booking", text.clone(), now);
        self.unsent.push(cloud_sync::wire::Event {
            seq: 0,
            at_ms: now.as_millis(),
            room: booking.room.to_string(),
            booking: Some(booking.id.to_string()),
            kind: cloud_sync::wire::EventKind::BookingLocal,
            reason: text,
            data: serde_json::json!({ "booking": {
                "id": booking.id.to_string(),
                "room": booking.room.to_string(),
                "start_ms": booking.start.as_millis(),
                "end_ms": booking.end.as_millis(),
                "subject": booking.subject,
                "organizer": booking.organizer,
                "attendees": booking.attendees,
            } }),
        });
        Ok(self.booking_dto(&booking, false))
    }

    /// Stores the hub's changes and cursor in one transaction, then tells the engine. Bookings
    /// for rooms this gateway does not have are refused (counted in the log), never half-applied.
    fn apply_hub_bookings(
        &mut self,
        now: Timestamp,
        changes: cloud_sync::wire::BookingChanges,
    ) -> Result<(), ApiError> {
        use cloud_sync::wire::BookingChange;
        // Each change replaces the whole booking, so in-order application is the same as
        // applying the last change of each booking: "add E, remove E" leaves E removed.
        let mut last: Vec<BookingChange> = Vec::with_capacity(changes.changes.len());
        let mut at: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        for change in changes.changes {
            let id = match &change {
                BookingChange::Upsert { booking } => booking.id.clone(),
                BookingChange::Delete { id, .. } => id.clone(),
            };
            match at.get(&id) {
                Some(&i) => last[i] = change,
                None => {
                    at.insert(id, last.len());
                    last.push(change);
                }
            }
        }
        let mut upserts = Vec::new();
        let mut deletes = Vec::new();
        for change in last {
            match change {
                BookingChange::Upsert { booking: b } => {
                    if self.site.room(&b.room).is_none() || b.end_ms <= b.start_ms {
                        tracing::warn!(
                            "hub booking {} refused: unknown room '{}' or empty time",
                            b.id,
                            b.room
                        );
                        continue;
                    }
                    let old = self.store.booking(&b.id)?;
                    // What happened here stays true: a check-in, and the end of a meeting
                    // that is over (a later hub change to it is only information).
                    let checked_in = old.as_ref().and_then(|old| old.checked_in_ms);
                    let finished = old.as_ref().and_then(|old| old.finished_ms);
                    upserts.push(StoredBooking {
                        id: b.id,
                        room: b.room,
                        start_ms: b.start_ms,
                        end_ms: b.end_ms,
                        subject: b.subject,
                        organizer: b.organizer,
                        source: BookingSource::Hub,
                        checked_in_ms: checked_in,
                        attendees: b.attendees,
                        finished_ms: finished,
                    });
                }
                BookingChange::Delete { id, .. } => deletes.push(id),
            }
        }
        let removed =
            self.store
                .apply_hub_bookings(changes.cursor, changes.full, &upserts, &deletes)?;
        for b in upserts.iter().filter(|b| b.finished_ms.is_none()) {
            if let Err(e) = self
                .engine
                .handle_event(now, Event::BookingUpserted(to_booking(b)))
            {
                tracing::warn!("hub booking {} refused by the engine: {e}", b.id);
            }
        }
        for b in removed {
            let ev = Event::BookingCancelled {
                room: RoomId::from(b.room.as_str()),
                booking: BookingId::from(b.id.as_str()),
            };
            if let Err(e) = self.engine_event(now, ev) {
                tracing::warn!("hub cancellation of {} refused by the engine: {e}", b.id);
            }
        }
        Ok(())
    }

    fn room_bookings(
        &self,
        room: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<RoomBookingDto>, ApiError> {
        if self.site.room(room).is_none() {
            return Err(ApiError::NotFound(format!("no room '{room}'")));
        }
        let mut out: Vec<RoomBookingDto> = (self.store.bookings()?.into_iter())
            .filter(|b| b.room == room && b.start_ms < to_ms && from_ms < b.end_ms)
            .map(|b| RoomBookingDto {
                booking: self.booking_dto(&to_booking(&b), b.checked_in_ms.is_some()),
                source: match b.source {
                    BookingSource::Local => "local",
                    BookingSource::Hub => "hub",
                },
                checked_in_ms: b.checked_in_ms,
                finished_ms: b.finished_ms,
            })
            .collect();
        out.sort_by(|a, b| {
            (a.booking.start_ms, &a.booking.id).cmp(&(b.booking.start_ms, &b.booking.id))
        });
        Ok(out)
    }

    fn cancel_booking(&mut self, room: &str, id: &str, now: Timestamp) -> Result<(), ApiError> {
        match self.store.booking(id)? {
            Some(b) if b.room == room => {}
            _ => {
                return Err(ApiError::NotFound(format!(
                    "no booking '{id}' in room '{room}'"
                )));
            }
        }
        self.store.delete_booking(id)?;
        self.room_event(
            now,
            Event::BookingCancelled {
                room: RoomId::from(room),
                booking: BookingId::from(id),
            },
        )?;
        self.log(
            &RoomId::from(room),
            "booking",
            format!("booking [{id}] cancelled"),
            now,
        );
        Ok(())
    }

    fn publish(&mut self, now: Timestamp) {
        let mut rooms = Vec::with_capacity(self.site.rooms.len());
        for rs in &self.site.rooms {
            let Some(view) = self.engine.room(&rs.config.id) else {
                continue;
            };
            let points = rs
                .bindings
                .iter()
                .map(|(cap, p)| PointDto {
                    capability: cap.key(),
                    point: p.to_string(),
                    value: match self.values.get(p) {
                        Some(Some(Value::Bool(b))) => serde_json::Value::Bool(*b),
                        Some(Some(Value::Number(n))) => {
                            serde_json::Number::from_f64((n * 100.0).round() / 100.0)
                                .map_or(serde_json::Value::Null, serde_json::Value::Number)
                        }
                        _ => serde_json::Value::Null,
                    },
                    label: self
                        .values
                        .get(p)
                        .and_then(|v| v.as_ref())
                        .and_then(|v| crate::bindings::label(*cap, v)),
                    unit: self.site.point(p).and_then(|d| d.unit.clone()),
                })
                .collect();
            rooms.push(RoomDto {
                id: rs.config.id.to_string(),
                name: rs.config.name.clone(),
                kind: match rs.config.kind {
                    RoomKind::Bookable => "bookable",
                    RoomKind::InstantUse => "instant_use",
                    RoomKind::Closed => "closed",
                },
                capacity: rs.capacity,
                state: view.state.as_str(),
                occupancy: match view.occupancy {
                    Occupancy::Occupied => "occupied",
                    Occupancy::Vacant => "vacant",
                    Occupancy::Unknown => "unknown",
                },
                current: view
                    .current
                    .as_ref()
                    .map(|c| self.booking_dto(c.booking, c.checked_in)),
                next: view
                    .next
                    .as_ref()
                    .map(|c| self.booking_dto(c.booking, c.checked_in)),
                points,
                scenes: rs
                    .config
                    .extra_scenes
                    .iter()
                    .map(|s| s.name.clone())
                    .collect(),
                activity: self
                    .recent
                    .get(&rs.config.id)
                    .map(|r| r.iter().cloned().collect())
                    .unwrap_or_default(),
            });
        }
        let mut devices: Vec<DeviceDto> = self
            .site
            .devices
            .iter()
            .filter_map(|d| {
                let h = self.devices.get(&d.id)?.health();
                Some(DeviceDto {
                    id: d.id.clone(),
                    name: d.name.clone(),
                    address: d.address(),
                    state: match h.state {
                        LinkState::Online => "online",
                        LinkState::Offline => "offline",
                        LinkState::Connecting => "connecting",
                    },
                    last_error: h.last_error.clone(),
                    requests: h.counters.requests,
                    responses: h.counters.responses,
                    timeouts: h.counters.timeouts,
                    exceptions: h.counters.exceptions,
                    transport_errors: h.counters.transport_errors,
                    bad_frames: h.counters.bad_frames,
                    points: self.point_values(d),
                })
            })
            .collect();
        devices.sort_by(|a, b| a.id.cmp(&b.id));
        self.device_events(&devices, now);
        let buses = self
            .buses
            .iter()
            .map(|rx| {
                let s = rx.borrow();
                BusDto {
                    id: s.bus.clone(),
                    open: s.open,
                    frames_per_second: (s.frames_per_second() * 10.0).round() / 10.0,
                    frames_sent: s.frames_sent,
                    frames_received: s.frames_received,
                    bad_frames: s.bad_frames,
                    timeouts: s.timeouts,
                    exceptions: s.exceptions,
                    transport_errors: s.transport_errors,
                    last_error: s.last_error.clone(),
                    units: (s.units.iter())
                        .map(|u| BusUnitDto {
                            device: u.device.clone(),
                            unit: u.unit,
                            state: match u.state {
                                UnitState::Connecting => "connecting",
                                UnitState::Online => "online",
                                UnitState::Quarantined => "quarantined",
                                UnitState::Stopped => "stopped",
                            },
                            polls: u.polls,
                        })
                        .collect(),
                }
            })
            .collect();
        let snap = FloorSnapshot {
            site: self.site.name.clone(),
            timezone: self.site.timezone_name.clone(),
            now: self.time.rfc3339(now),
            now_ms: now.as_millis(),
            rooms,
            devices,
            buses,
            cloud: match (&self.site.cloud, self.hub_link) {
                (None, _) => "none",
                (Some(_), true) => "up",
                (Some(_), false) => "down",
            },
        };
        self.snapshot.send_replace(Arc::new(snap));
    }

    /// A device's points with their last values (what the installer console shows live).
    fn point_values(&self, d: &crate::site::Device) -> Vec<DevicePointDto> {
        (d.points.iter())
            .map(|p| {
                let at = PointRef {
                    device: d.id.clone(),
                    point: p.id.clone(),
                };
                let value = self.values.get(&at).copied().flatten();
                DevicePointDto {
                    id: p.id.clone(),
                    value: value.map_or(serde_json::Value::Null, |v| commission::json_value(p, v)),
                    label: value.and_then(|v| p.labels.label(v)).map(str::to_owned),
                    unit: p.unit.clone(),
                }
            })
            .collect()
    }

    /// A device going offline or coming back is an event in the activity log of every room
    /// that uses it (and in the service log).
    fn device_events(&mut self, devices: &[DeviceDto], now: Timestamp) {
        for d in devices {
            let before = self.device_states.insert(d.id.clone(), d.state);
            let text = match (before, d.state) {
                (Some(a), b) if a == b => continue,
                (None | Some("connecting"), "online") => continue, // a normal start
                (_, "offline") => format!(
                    "device '{}' ({}) is offline: {}",
                    d.id,
                    d.address,
                    d.last_error.as_deref().unwrap_or("no answer")
                ),
                (Some("offline"), "online") => format!("device '{}' is back online", d.id),
                _ => continue,
            };
            tracing::warn!(device = %d.id, "{text}");
            self.unsent.push(cloud_sync::wire::Event {
                seq: 0,
                at_ms: now.as_millis(),
                room: String::new(),
                booking: None,
                kind: if d.state == "offline" {
                    cloud_sync::wire::EventKind::DeviceOffline
                } else {
                    cloud_sync::wire::EventKind::DeviceOnline
                },
                reason: text.clone(),
                data: serde_json::json!({ "device": d.id }),
            });
            let rooms: Vec<RoomId> = self
                .site
                .rooms
                .iter()
                .filter(|r| r.bindings.values().any(|p| p.device == d.id))
                .map(|r| r.config.id.clone())
                .collect();
            for room in rooms {
                self.log(&room, "device", text.clone(), now);
            }
        }
    }
}

fn to_booking(b: &StoredBooking) -> Booking {
    Booking {
        id: BookingId::from(b.id.as_str()),
        room: RoomId::from(b.room.as_str()),
        start: Timestamp::from_millis(b.start_ms),
        end: Timestamp::from_millis(b.end_ms),
        subject: b.subject.clone(),
        organizer: b.organizer.clone(),
        attendees: b.attendees.clone(),
    }
}

/// An outcome in words, for the activity log.
fn outcome_words(kind: &OutcomeKind) -> String {
    match kind {
        OutcomeKind::MeetingStarted => "meeting started".into(),
        OutcomeKind::CheckedIn(_) => "check-in".into(),
        OutcomeKind::CheckInRefused => "check-in refused".into(),
        OutcomeKind::Released(ReleaseCause::NoShow) => "released as a no-show".into(),
        OutcomeKind::Released(ReleaseCause::Vacancy) => "released for vacancy".into(),
        OutcomeKind::Ended => "ended".into(),
        OutcomeKind::Cancelled => "cancelled".into(),
        OutcomeKind::WalkInStarted => "walk-in started".into(),
        OutcomeKind::WalkInEnded => "walk-in ended".into(),
        OutcomeKind::Extended { .. } => "extended".into(),
        OutcomeKind::ExtendRefused => "not extended".into(),
        OutcomeKind::AccessGranted => "door opened".into(),
        OutcomeKind::AccessDenied => "access denied".into(),
        OutcomeKind::NoShowStrike { organizer } => format!("no-show strike for {organizer}"),
        OutcomeKind::SensorUnavailable => "presence sensor unavailable".into(),
        OutcomeKind::SensorRestored => "presence sensor back".into(),
        OutcomeKind::OverrideStarted { .. } => "manual control".into(),
        OutcomeKind::OverrideEnded => "automation resumed".into(),
        OutcomeKind::Usage(_) => "usage".into(),
    }
}

/// How long HTTP handlers wait for the loop before answering 503.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
