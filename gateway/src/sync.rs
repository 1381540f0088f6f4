//! The gateway's side of cloud sync: what goes into the outbox, and the agent that carries
//! it to the hub (see cloud-sync/PROTOCOL.md).

use cloud_sync::wire::{Event, EventKind};
use scenes::{CheckInMethod, Outcome, OutcomeKind, ReleaseCause};

/// The outbox event for an engine outcome, or `None` for outcomes that stay local (refused
/// check-ins, manual holds, sensor notices: they are in the activity log).
pub fn outcome_event(o: &Outcome, reason: &str) -> Option<Event> {
    use serde_json::json;
    let (kind, data) = match &o.kind {
        OutcomeKind::MeetingStarted => (EventKind::MeetingStarted, json!(null)),
        OutcomeKind::CheckedIn(method) => (
            EventKind::CheckedIn,
            json!({ "method": match method {
                CheckInMethod::Panel => "panel",
                CheckInMethod::Card => "card",
                CheckInMethod::Presence => "presence",
                CheckInMethod::Remote => "remote",
            } }),
        ),
        OutcomeKind::Released(cause) => (
            EventKind::Released,
            json!({ "cause": match cause {
                ReleaseCause::NoShow => "no_show",
                ReleaseCause::Vacancy => "vacancy",
            } }),
        ),
        OutcomeKind::Ended => (EventKind::Ended, json!(null)),
        OutcomeKind::Cancelled => (EventKind::Cancelled, json!(null)),
        OutcomeKind::WalkInStarted => (EventKind::WalkInStarted, json!(null)),
        OutcomeKind::WalkInEnded => (EventKind::WalkInEnded, json!(null)),
        OutcomeKind::Extended { until } => (
            EventKind::Extended,
            json!({ "until_ms": until.as_millis() }),
        ),
        OutcomeKind::AccessGranted => (EventKind::AccessGranted, json!(null)),
        OutcomeKind::AccessDenied => (EventKind::AccessDenied, json!(null)),
        OutcomeKind::NoShowStrike { organizer } => {
            (EventKind::NoShowStrike, json!({ "organizer": organizer }))
        }
        OutcomeKind::Usage(u) => (
            EventKind::Usage,
            json!({
                "organizer": u.organizer,
                "scheduled_start_ms": u.scheduled_start.as_millis(),
                "scheduled_end_ms": u.scheduled_end.as_millis(),
                "actual_start_ms": u.actual_start.map(|t| t.as_millis()),
                "actual_end_ms": u.actual_end.as_millis(),
                "release": u.release.map(|r| match r {
                    ReleaseCause::NoShow => "no_show",
                    ReleaseCause::Vacancy => "vacancy",
                }),
                "occupied_ms": u.occupied.as_millis(),
                "devices_on_ms": u.devices_on.as_millis(),
            }),
        ),
        OutcomeKind::CheckInRefused
        | OutcomeKind::ExtendRefused
        | OutcomeKind::SensorUnavailable
        | OutcomeKind::SensorRestored
        | OutcomeKind::OverrideStarted { .. }
        | OutcomeKind::OverrideEnded => return None,
    };
    Some(Event {
        seq: 0,
        at_ms: o.at.as_millis(),
        room: o.room.to_string(),
        booking: o.booking.as_ref().map(ToString::to_string),
        kind,
        reason: reason.to_owned(),
        data,
    })
}

/// How the agent reaches the hub.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub id: cloud_sync::topics::GatewayId,
    /// Broker address, TLS and client id already set (`cloud_sync::tls::mqtt_options`).
    pub options: rumqttc::MqttOptions,
    /// Republish from the oldest unacknowledged event when no ack came for this long.
    pub ack_timeout: std::time::Duration,
    /// Reconnect backoff (full jitter between these).
    pub backoff_min: std::time::Duration,
    pub backoff_max: std::time::Duration,
    /// A connection that stayed up this long resets the backoff.
    pub stable_after: std::time::Duration,
    /// The first attempt after start waits a random time up to this.
    pub first_attempt_spread: std::time::Duration,
    /// A sync request without an answer for this long is sent again; each further wait
    /// doubles, with jitter, up to `sync_timeout_max`.
    pub sync_timeout: std::time::Duration,
    pub sync_timeout_max: std::time::Duration,
    /// The retained status is republished when it changes, at most once per this.
    pub status_interval: std::time::Duration,
}

impl AgentConfig {
    /// PROTOCOL.md's values.
    pub fn new(id: cloud_sync::topics::GatewayId, options: rumqttc::MqttOptions) -> AgentConfig {
        use std::time::Duration;
        AgentConfig {
            id,
            options,
            ack_timeout: Duration::from_secs(30),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(120),
            stable_after: Duration::from_secs(60),
            first_attempt_spread: Duration::from_secs(5),
            sync_timeout: Duration::from_secs(10),
            sync_timeout_max: Duration::from_secs(180),
            status_interval: Duration::from_secs(5),
        }
    }
}

/// What the agent reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentStatus {
    pub connected: bool,
    /// The hub has every event up to this sequence number.
    pub acked_upto: u64,
    pub connects: u64,
    /// Sync requests sent again because no answer came in time.
    pub syncs_resent: u64,
    /// Retained status messages published (on connect and on changes).
    pub statuses_published: u64,
    /// Telemetry samples handed to the broker (QoS 0: best effort from there).
    pub telemetry_sent: u64,
    /// Telemetry samples not published: the link was down or the client's queue was full.
    pub telemetry_dropped: u64,
    /// Telemetry batches the agent fell too far behind to read (their samples are unknown).
    pub telemetry_batches_missed: u64,
}

/// Starts the sync agent: it owns the MQTT connection to the hub.
pub fn spawn_agent(
    cfg: AgentConfig,
    store: std::sync::Arc<crate::store::Store>,
    outbox: tokio::sync::watch::Receiver<u64>,
    gateway: crate::runtime::GatewayHandle,
) -> (
    tokio::task::JoinHandle<()>,
    tokio::sync::watch::Receiver<AgentStatus>,
) {
    let (tx, rx) = tokio::sync::watch::channel(AgentStatus::default());
    let task = tokio::spawn(agent::run(cfg, store, outbox, gateway, tx));
    (task, rx)
}

/// The retained status the hub shows for this gateway, from the floor's snapshot: rooms with
/// their names, current and next bookings and the offline devices their bindings use.
pub fn hub_status(
    snap: &crate::api::FloorSnapshot,
    online: bool,
    outbox_depth: u64,
) -> cloud_sync::wire::Status {
    use cloud_sync::wire::{BookingGlance, RoomStatus, Status, VERSION};
    use std::collections::BTreeSet;
    let offline: BTreeSet<&str> = snap
        .devices
        .iter()
        .filter(|d| d.state == "offline")
        .map(|d| d.id.as_str())
        .collect();
    let glance = |b: &crate::api::BookingDto| BookingGlance {
        id: b.id.clone(),
        subject: b.subject.clone(),
        organizer: b.organizer.clone(),
        start_ms: b.start_ms,
        end_ms: b.end_ms,
    };
    let rooms = snap
        .rooms
        .iter()
        .map(|r| {
            // A point is "device/point"; device ids never contain '/'.
            let faults: BTreeSet<&str> = r
                .points
                .iter()
                .filter_map(|p| p.point.split_once('/').map(|(device, _)| device))
                .filter(|device| offline.contains(device))
                .collect();
            RoomStatus {
                id: r.id.clone(),
                state: r.state.to_owned(),
                occupancy: r.occupancy.to_owned(),
                name: if r.name.is_empty() {
                    r.id.clone()
                } else {
                    r.name.clone()
                },
                current: r.current.as_ref().map(glance),
                next: r.next.as_ref().map(glance),
                faults: faults.into_iter().map(str::to_owned).collect(),
            }
        })
        .collect();
    Status {
        v: VERSION,
        online,
        at_ms: snap.now_ms,
        rooms,
        devices_offline: offline.iter().map(|d| (*d).to_owned()).collect(),
        outbox_depth,
        timezone: snap.timezone.clone(),
        devices_total: u32::try_from(snap.devices.len()).unwrap_or(u32::MAX),
    }
}

mod agent {
    //! The agent's connection loop.

    use std::sync::Arc;
    use std::time::Duration;

    use cloud_sync::backoff::{Jitter, Jittered};
    use cloud_sync::topics::Channel;
    use cloud_sync::wire::{
        self, Ack, BookingChanges, CommandEnvelope, HubCommand, Status, SyncRequest, Telemetry,
        VERSION,
    };
    use rumqttc::{AsyncClient, Event as MqttEvent, LastWill, Packet, QoS};
    use tokio::sync::{broadcast, watch};
    use tokio::time::Instant;

    use super::{AgentConfig, AgentStatus, hub_status};
    use crate::api::FloorSnapshot;
    use crate::runtime::{GatewayHandle, RoomAction};
    use crate::store::Store;

    /// Batches in flight without an ack (each up to 500 events).
    const WINDOW_BATCHES: usize = 8;

    fn seed(cfg: &AgentConfig) -> u64 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos() as u64);
        cfg.id
            .to_string()
            .bytes()
            .fold(nanos ^ u64::from(std::process::id()), |h, b| {
                h.rotate_left(5) ^ u64::from(b)
            })
    }

    fn status(g: &GatewayHandle, store: &Store, online: bool) -> Status {
        hub_status(&g.snapshot(), online, store.outbox_depth().unwrap_or(0))
    }

    /// The same status apart from the time it was taken.
    fn same(a: &Status, b: &Status) -> bool {
        Status {
            at_ms: 0,
            ..a.clone()
        } == Status {
            at_ms: 0,
            ..b.clone()
        }
    }

    pub(super) async fn run(
        cfg: AgentConfig,
        store: Arc<Store>,
        mut outbox: watch::Receiver<u64>,
        gateway: GatewayHandle,
        report: watch::Sender<AgentStatus>,
    ) {
        let mut jitter = Jitter::new(seed(&cfg));
        let mut backoff = Jittered::new(cfg.backoff_min, cfg.backoff_max);
        let mut telemetry = gateway.telemetry();
        let mut floor = gateway.watch();
        tokio::time::sleep(cfg.first_attempt_spread.mul_f64(jitter.uniform())).await;
        loop {
            let mut options = cfg.options.clone();
            let offline = Status::offline();
            options.set_last_will(LastWill::new(
                cfg.id.topic(Channel::Status),
                wire::encode(&offline),
                QoS::AtLeastOnce,
                true,
            ));
            let started = Instant::now();
            let mut session = Session {
                cfg: &cfg,
                store: &store,
                gateway: &gateway,
                report: &report,
                jitter: &mut jitter,
                published_upto: 0,
                acked_upto: 0,
                last_progress: Instant::now(),
                connected: false,
                sync_wait: None,
                status_sent: None,
                status_dirty: false,
            };
            let (client, eventloop) = AsyncClient::new(options, 64);
            let reason = session
                .serve(client, eventloop, &mut outbox, &mut telemetry, &mut floor)
                .await;
            report.send_modify(|s| s.connected = false);
            gateway.hub_link(false).await;
            tracing::warn!("hub connection lost: {reason}");
            if started.elapsed() >= cfg.stable_after {
                backoff.reset();
            }
            tokio::time::sleep(backoff.next_delay(jitter.uniform())).await;
        }
    }

    /// A sync request waiting for its answer.
    #[derive(Debug, Clone, Copy)]
    struct SyncWait {
        cursor: u64,
        /// When to send it again.
        due: Instant,
        /// The wait before `due` (doubles with each resend).
        waited: Duration,
    }

    struct Session<'a> {
        cfg: &'a AgentConfig,
        store: &'a Store,
        gateway: &'a GatewayHandle,
        report: &'a watch::Sender<AgentStatus>,
        jitter: &'a mut Jitter,
        /// Highest sequence published on this connection.
        published_upto: u64,
        acked_upto: u64,
        last_progress: Instant,
        connected: bool,
        sync_wait: Option<SyncWait>,
        /// The status last published (and when).
        status_sent: Option<(Status, Instant)>,
        /// The floor changed since the status was last looked at.
        status_dirty: bool,
    }

    impl Session<'_> {
        async fn serve(
            &mut self,
            client: AsyncClient,
            mut eventloop: rumqttc::EventLoop,
            outbox: &mut watch::Receiver<u64>,
            telemetry: &mut broadcast::Receiver<Arc<Telemetry>>,
            floor: &mut watch::Receiver<Arc<FloorSnapshot>>,
        ) -> String {
            loop {
                let ack_due = self.last_progress + self.cfg.ack_timeout;
                let sync_due = self.sync_wait.map(|w| w.due);
                let status_due = self
                    .status_sent
                    .as_ref()
                    .map_or_else(Instant::now, |(_, at)| *at + self.cfg.status_interval);
                tokio::select! {
                    ev = eventloop.poll() => match ev {
                        Ok(MqttEvent::Incoming(Packet::ConnAck(_))) => self.on_connect(&client).await,
                        Ok(MqttEvent::Incoming(Packet::Publish(p))) => {
                            self.on_message(&client, &p.topic, &p.payload).await;
                        }
                        Ok(_) => {}
                        Err(e) => return e.to_string(),
                    },
                    changed = outbox.changed() => {
                        if changed.is_err() {
                            return "the gateway stopped".into();
                        }
                        self.publish_pending(&client);
                    }
                    batch = telemetry.recv() => match batch {
                        Ok(batch) => self.publish_telemetry(&client, &batch),
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            tracing::warn!("{n} telemetry batches missed: the agent fell behind");
                            self.report.send_modify(|s| s.telemetry_batches_missed += n);
                        }
                        Err(broadcast::error::RecvError::Closed) => {
                            return "the gateway stopped".into();
                        }
                    },
                    changed = floor.changed(), if !self.status_dirty => {
                        if changed.is_err() {
                            return "the gateway stopped".into();
                        }
                        self.status_dirty = true;
                    }
                    () = tokio::time::sleep_until(status_due), if self.connected && self.status_dirty => {
                        self.status_dirty = false;
                        self.publish_status(&client, false);
                    }
                    () = tokio::time::sleep_until(ack_due), if self.connected && self.published_upto > self.acked_upto => {
                        // No ack in time: send again from the oldest unacknowledged event.
                        tracing::info!("no ack from the hub for {:?}: republishing", self.cfg.ack_timeout);
                        self.published_upto = self.acked_upto;
                        self.last_progress = Instant::now();
                        self.publish_pending(&client);
                    }
                    () = sleep_until_some(sync_due), if self.connected => self.resend_sync(&client),
                }
            }
        }

        async fn on_connect(&mut self, client: &AsyncClient) {
            self.connected = true;
            self.report.send_modify(|s| {
                s.connected = true;
                s.connects += 1;
            });
            for c in [Channel::Acks, Channel::Bookings, Channel::Commands] {
                let _ = client.try_subscribe(self.cfg.id.topic(c), QoS::AtLeastOnce);
            }
            // Before the status goes: whoever sees us online may count on telemetry flowing.
            self.gateway.hub_link(true).await;
            self.publish_status(client, true);
            let cursor = self.store.hub_cursor().unwrap_or(0);
            self.request_sync(client, cursor);
            // Everything not acknowledged goes again; the hub drops what it already has.
            self.published_upto = self.acked_upto;
            self.last_progress = Instant::now();
            self.publish_pending(client);
        }

        /// Publishes the retained status if it changed since the last one (or `always`).
        fn publish_status(&mut self, client: &AsyncClient, always: bool) {
            let now = status(self.gateway, self.store, true);
            if !always
                && self
                    .status_sent
                    .as_ref()
                    .is_some_and(|(s, _)| same(s, &now))
            {
                return;
            }
            let sent = client.try_publish(
                self.cfg.id.topic(Channel::Status),
                QoS::AtLeastOnce,
                true,
                wire::encode(&now),
            );
            if sent.is_ok() {
                self.report.send_modify(|s| s.statuses_published += 1);
                self.status_sent = Some((now, Instant::now()));
            } else {
                // The client's queue is full: try again after the interval.
                self.status_dirty = true;
                let last = self
                    .status_sent
                    .take()
                    .map_or_else(Status::offline, |(s, _)| s);
                self.status_sent = Some((last, Instant::now()));
            }
        }

        /// Asks the hub for the booking changes after `cursor`, and waits for the answer.
        fn request_sync(&mut self, client: &AsyncClient, cursor: u64) {
            let waited = self.cfg.sync_timeout;
            self.send_sync(client, cursor, waited);
        }

        /// No answer in time: the same request again, after a longer wait next time.
        fn resend_sync(&mut self, client: &AsyncClient) {
            let Some(w) = self.sync_wait else {
                return;
            };
            tracing::info!(
                "no answer from the hub to the sync request (cursor {}) for {:?}: asking again",
                w.cursor,
                w.waited
            );
            self.report.send_modify(|s| s.syncs_resent += 1);
            let waited = (w.waited * 2).min(self.cfg.sync_timeout_max);
            self.send_sync(client, w.cursor, waited);
        }

        fn send_sync(&mut self, client: &AsyncClient, cursor: u64, waited: Duration) {
            let _ = client.try_publish(
                self.cfg.id.topic(Channel::Sync),
                QoS::AtLeastOnce,
                false,
                wire::encode(&SyncRequest { v: VERSION, cursor }),
            );
            // Between half and all of the wait, so gateways that lost their requests together
            // do not ask again together.
            let wait = waited.mul_f64(0.5 + 0.5 * self.jitter.uniform());
            self.sync_wait = Some(SyncWait {
                cursor,
                due: Instant::now() + wait,
                waited,
            });
        }

        /// QoS 0 and never queued: a batch that cannot go now is superseded by the next one.
        fn publish_telemetry(&mut self, client: &AsyncClient, batch: &Telemetry) {
            let n = batch.samples.len() as u64;
            let sent = self.connected
                && client
                    .try_publish(
                        self.cfg.id.topic(Channel::Telemetry),
                        QoS::AtMostOnce,
                        false,
                        wire::encode(batch),
                    )
                    .is_ok();
            self.report.send_modify(|s| {
                if sent {
                    s.telemetry_sent += n;
                } else {
                    s.telemetry_dropped += n;
                }
            });
        }

        fn publish_pending(&mut self, client: &AsyncClient) {
            if !self.connected {
                return;
            }
            let window = WINDOW_BATCHES * wire::MAX_BATCH_EVENTS;
            let in_flight = self.published_upto.saturating_sub(self.acked_upto) as usize;
            if in_flight >= window {
                return;
            }
            let events = match self
                .store
                .outbox_after(self.published_upto, window - in_flight)
            {
                Ok(e) => e,
                Err(e) => {
                    tracing::error!("outbox not readable: {e}");
                    return;
                }
            };
            let gateway = self.cfg.id.to_string();
            for batch in wire::batches(&gateway, events) {
                let last = batch.events.last().map_or(self.published_upto, |e| e.seq);
                let sent = client.try_publish(
                    self.cfg.id.topic(Channel::Events),
                    QoS::AtLeastOnce,
                    false,
                    wire::encode(&batch),
                );
                if sent.is_err() {
                    break; // the request queue is full: the rest goes after the next ack
                }
                self.published_upto = last;
            }
        }

        async fn on_message(&mut self, client: &AsyncClient, topic: &str, payload: &[u8]) {
            let Some((_, channel)) = cloud_sync::topics::GatewayId::parse(topic) else {
                return;
            };
            match channel {
                Channel::Acks => match wire::decode::<Ack>(payload) {
                    Ok(ack) if ack.upto > self.acked_upto => {
                        match self.store.ack_outbox(ack.upto) {
                            Ok(_) => {
                                self.acked_upto = ack.upto;
                                self.published_upto = self.published_upto.max(ack.upto);
                                self.last_progress = Instant::now();
                                self.report.send_modify(|s| s.acked_upto = ack.upto);
                                self.publish_pending(client);
                            }
                            Err(e) => tracing::error!("ack not applied to the outbox: {e}"),
                        }
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!("refused ack: {e}"),
                },
                Channel::Bookings => match wire::decode::<BookingChanges>(payload) {
                    Ok(changes) => self.on_bookings(client, changes).await,
                    Err(e) => tracing::warn!("refused booking changes: {e}"),
                },
                Channel::Commands => match wire::decode::<CommandEnvelope>(payload) {
                    Ok(env) => {
                        let now = self.gateway.snapshot().now_ms;
                        match env.expires_ms {
                            Some(expires) if now > expires => tracing::warn!(
                                "hub command {:?} ignored: it expired {} s ago",
                                env.command,
                                (now - expires) / 1000
                            ),
                            _ => self.on_command(client, env.command).await,
                        }
                    }
                    Err(e) => tracing::warn!("refused hub command: {e}"),
                },
                _ => {}
            }
        }

        /// Applies changes that continue from our cursor (or a full snapshot); a gap means we
        /// missed some, so ask for everything after our cursor instead.
        async fn on_bookings(&mut self, client: &AsyncClient, changes: BookingChanges) {
            let ours = self.store.hub_cursor().unwrap_or(0);
            let base = changes.cursor.saturating_sub(changes.changes.len() as u64);
            if changes.full || base == ours {
                match self.gateway.hub_bookings(changes).await {
                    // Up to date: a waiting sync request has its answer.
                    Ok(()) => self.sync_wait = None,
                    // Not stored: the waiting request (if any) is sent again in time.
                    Err(e) => tracing::error!("hub bookings not applied: {e}"),
                }
            } else if changes.cursor > ours {
                self.request_sync(client, ours);
            }
        }

        async fn on_command(&mut self, client: &AsyncClient, command: HubCommand) {
            let result = match command {
                HubCommand::EndMeeting { room } => self
                    .gateway
                    .room_action(&room, RoomAction::EndNow)
                    .await
                    .map(|_| ()),
                HubCommand::RunScene { room, scene } => {
                    self.gateway.run_scene(&room, &scene, "the hub").await
                }
                HubCommand::Resync => {
                    self.request_sync(client, 0);
                    Ok(())
                }
            };
            if let Err(e) = result {
                tracing::warn!("hub command refused: {e}");
            }
        }
    }

    /// Sleeps until `at`, or forever when there is nothing to wait for.
    async fn sleep_until_some(at: Option<Instant>) {
        match at {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    }
}
