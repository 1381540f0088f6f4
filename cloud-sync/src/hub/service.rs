//! The hub's MQTT side: ingests events exactly once and acks them, stores gateway status,
//! and answers booking sync requests; replicas share the load through shared subscriptions.

use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event as MqttEvent, MqttOptions, Packet, QoS};
use tokio::sync::watch;

use super::bookings::BookingService;
use super::store::{HubStore, HubStoreError};
use crate::backoff::{Jitter, Jittered};
use crate::topics::{Channel, GatewayId, hub_subscriptions};
use crate::wire::{
    self, Ack, BookingChange, BookingChanges, CommandEnvelope, EventBatch, HubCommand, Status,
    SyncRequest, Telemetry, VERSION,
};

/// What a hub replica has done, for health pages and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HubStats {
    pub connected: bool,
    pub batches: u64,
    pub events_new: u64,
    pub events_duplicate: u64,
    pub refused_payloads: u64,
    pub syncs: u64,
    /// Acks and sync answers that could not even be queued (the gateway will resend).
    pub replies_dropped: u64,
    /// Telemetry samples received and stored (the newest per point is kept).
    pub telemetry_samples: u64,
}

/// Replies (acks, sync answers) waiting for the publishing task.
const REPLY_QUEUE: usize = 65_536;

/// A running hub replica.
#[derive(Debug)]
pub struct Hub {
    pusher: Pusher,
    stats: watch::Receiver<HubStats>,
    store: Arc<HubStore>,
    task: tokio::task::JoinHandle<()>,
}

impl Hub {
    /// Connects with `options` (TLS and identity already set) and serves until stopped.
    /// `group` names the shared subscription group of the replicas.
    pub fn start(options: MqttOptions, store: Arc<HubStore>, group: &str) -> Hub {
        Hub::launch(options, store, group, Pusher::new(), None)
    }

    /// Like [`Hub::start`], with the booking service: the gateways' booking facts in fresh
    /// events are applied to the hub's bookings (PROTOCOL.md, "Reconciling changes made
    /// offline"), and the service's changes are pushed through this replica's connection.
    pub fn start_with_bookings(options: MqttOptions, bookings: BookingService, group: &str) -> Hub {
        let store = Arc::clone(bookings.store());
        let pusher = bookings.pusher().clone();
        Hub::launch(options, store, group, pusher, Some(bookings))
    }

    fn launch(
        options: MqttOptions,
        store: Arc<HubStore>,
        group: &str,
        pusher: Pusher,
        bookings: Option<BookingService>,
    ) -> Hub {
        let (stats_tx, stats) = watch::channel(HubStats::default());
        let task = tokio::spawn(run(
            options,
            Arc::clone(&store),
            group.to_owned(),
            stats_tx,
            pusher.clone(),
            bookings,
        ));
        Hub {
            pusher,
            stats,
            store,
            task,
        }
    }

    /// Pushes booking changes down through this replica's connection.
    pub fn pusher(&self) -> &Pusher {
        &self.pusher
    }

    pub fn stats(&self) -> HubStats {
        self.stats.borrow().clone()
    }

    pub fn watch_stats(&self) -> watch::Receiver<HubStats> {
        self.stats.clone()
    }

    pub fn store(&self) -> &Arc<HubStore> {
        &self.store
    }

    /// Records a booking change for a gateway and pushes it down (the gateway catches up
    /// from its cursor if it missed earlier ones).
    pub async fn change_booking(
        &self,
        gw: &GatewayId,
        change: BookingChange,
    ) -> Result<u64, HubStoreError> {
        let cursor = self.store.change_booking(gw, change.clone()).await?;
        let push = BookingChanges {
            v: VERSION,
            cursor,
            full: false,
            changes: vec![change],
        };
        self.pusher.push(gw, &push).await;
        Ok(cursor)
    }

    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

async fn run(
    options: MqttOptions,
    store: Arc<HubStore>,
    group: String,
    stats: watch::Sender<HubStats>,
    pusher: Pusher,
    bookings: Option<BookingService>,
) {
    let mut backoff = Jittered::new(Duration::from_millis(200), Duration::from_secs(30));
    let mut jitter = Jitter::new(std::process::id() as u64);
    loop {
        let (client, mut eventloop) = AsyncClient::new(options.clone(), 256);
        pusher.connected(client.clone());
        // Replies go through their own queue to a task that may wait for room in the client's
        // request queue while this loop keeps polling: an ack is never dropped because the
        // client was momentarily busy (the gateway would otherwise resend whole batches).
        let (replies, mut queued) = tokio::sync::mpsc::channel::<(String, Vec<u8>)>(REPLY_QUEUE);
        let publisher = {
            let client = client.clone();
            tokio::spawn(async move {
                while let Some((topic, payload)) = queued.recv().await {
                    if client
                        .publish(topic, QoS::AtLeastOnce, false, payload)
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            })
        };
        loop {
            match eventloop.poll().await {
                Ok(MqttEvent::Incoming(Packet::ConnAck(_))) => {
                    backoff.reset();
                    stats.send_modify(|s| s.connected = true);
                    for topic in hub_subscriptions(&group) {
                        let _ = client.try_subscribe(topic, QoS::AtLeastOnce);
                    }
                }
                Ok(MqttEvent::Incoming(Packet::Publish(p))) => {
                    let bookings = bookings.as_ref();
                    handle(&replies, &store, bookings, &stats, &p.topic, &p.payload).await;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!("hub connection: {e}");
                    stats.send_modify(|s| s.connected = false);
                    break;
                }
            }
        }
        publisher.abort();
        tokio::time::sleep(backoff.next_delay(jitter.uniform())).await;
    }
}

async fn handle(
    replies: &tokio::sync::mpsc::Sender<(String, Vec<u8>)>,
    store: &HubStore,
    bookings: Option<&BookingService>,
    stats: &watch::Sender<HubStats>,
    topic: &str,
    payload: &[u8],
) {
    let Some((gw, channel)) = GatewayId::parse(topic) else {
        stats.send_modify(|s| s.refused_payloads += 1);
        return;
    };
    let reply = |topic: String, payload: Vec<u8>| {
        if replies.try_send((topic, payload)).is_err() {
            stats.send_modify(|s| s.replies_dropped += 1);
        }
    };
    let refused = |what: String| {
        tracing::warn!("from {gw}: {what}");
        stats.send_modify(|s| s.refused_payloads += 1);
    };
    match channel {
        Channel::Events => match wire::decode::<EventBatch>(payload) {
            Ok(batch) => match store.ingest(&gw, &batch, super::web::wall_clock_ms()).await {
                Ok(r) => {
                    stats.send_modify(|s| {
                        s.batches += 1;
                        s.events_new += r.fresh.len() as u64;
                        s.events_duplicate += r.duplicates as u64;
                    });
                    let ack = Ack {
                        v: VERSION,
                        upto: r.ack_upto,
                    };
                    reply(gw.topic(Channel::Acks), wire::encode(&ack));
                    // Only the replica that stored an event first applies it to the bookings.
                    if let Some(bookings) = bookings
                        && let Err(e) = bookings.apply_gateway_events(&gw, &r.fresh).await
                    {
                        tracing::error!("booking facts from {gw} not applied: {e}");
                    }
                }
                // Not stored, not acked: the gateway will send it again.
                Err(e) => tracing::error!("events from {gw} not stored: {e}"),
            },
            Err(e) => refused(e.to_string()),
        },
        Channel::Status => match wire::decode::<Status>(payload) {
            Ok(mut status) => {
                // A last will says only "offline": keep the rooms last seen, for the dashboard.
                if !status.online
                    && status.rooms.is_empty()
                    && let Ok(Some(last)) = store.status(&gw).await
                {
                    status = Status {
                        online: false,
                        ..last
                    };
                }
                if let Err(e) = store
                    .put_status(&gw, &status, super::web::wall_clock_ms())
                    .await
                {
                    tracing::error!("status of {gw} not stored: {e}");
                }
            }
            Err(e) => refused(e.to_string()),
        },
        Channel::Sync => match wire::decode::<SyncRequest>(payload) {
            Ok(req) => match store.changes_since(&gw, req.cursor).await {
                Ok(mut changes) => {
                    super::bookings::latest_per_booking(&mut changes.changes);
                    stats.send_modify(|s| s.syncs += 1);
                    reply(gw.topic(Channel::Bookings), wire::encode(&changes));
                }
                Err(e) => tracing::error!("bookings for {gw} not read: {e}"),
            },
            Err(e) => refused(e.to_string()),
        },
        // Best effort (QoS 0): a batch not stored is superseded by the next one.
        Channel::Telemetry => match wire::decode::<Telemetry>(payload) {
            Ok(t) => match store.put_telemetry(&gw, &t.samples).await {
                Ok(()) => stats.send_modify(|s| s.telemetry_samples += t.samples.len() as u64),
                Err(e) => tracing::error!("telemetry of {gw} not stored: {e}"),
            },
            Err(e) => refused(e.to_string()),
        },
        _ => refused(format!("unexpected message on {topic}")),
    }
}

/// Publishes booking changes to gateways through a hub replica's current MQTT connection; a
/// clone is cheap. Without a connection (or before the first) nothing is sent: the gateway
/// catches up from its cursor when it next connects or notices a gap.
#[derive(Debug, Clone)]
pub struct Pusher {
    client: Arc<watch::Sender<Option<AsyncClient>>>,
}

impl Default for Pusher {
    fn default() -> Self {
        Pusher::new()
    }
}

impl Pusher {
    /// A pusher with no connection yet (a hub replica gives it one).
    pub fn new() -> Pusher {
        Pusher {
            client: Arc::new(watch::channel(None).0),
        }
    }

    fn connected(&self, client: AsyncClient) {
        self.client.send_replace(Some(client));
    }

    /// Queues `changes` for the gateway (QoS 1); empty changes are not sent.
    pub async fn push(&self, gw: &GatewayId, changes: &BookingChanges) {
        if changes.changes.is_empty() && !changes.full {
            return;
        }
        let client = self.client.borrow().clone();
        if let Some(client) = client {
            // Never wait for room in the client's queue (the broker may be away for long): a
            // push that does not fit is caught up from the gateway's cursor.
            let sent = client.try_publish(
                gw.topic(Channel::Bookings),
                QoS::AtLeastOnce,
                false,
                wire::encode(changes),
            );
            if let Err(e) = sent {
                tracing::warn!("booking changes for {gw} not queued (it will catch up): {e}");
            }
        }
    }
}

/// Why a command did not leave the hub.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("the hub is not connected to the broker; try again")]
    NotConnected,
    #[error("the hub's queue to the broker is full; try again")]
    Busy,
}

/// How long a hub command stays valid: a gateway offline for longer ignores it when it comes
/// back (PROTOCOL.md, "Commands").
pub const COMMAND_TTL_MS: i64 = 5 * 60 * 1000;

impl Pusher {
    /// Sends a command to a gateway (QoS 1), valid for [`COMMAND_TTL_MS`] from `now_ms`.
    pub fn command(
        &self,
        gw: &GatewayId,
        command: HubCommand,
        now_ms: i64,
    ) -> Result<(), CommandError> {
        let client = self.client.borrow().clone();
        let client = client.ok_or(CommandError::NotConnected)?;
        let envelope = CommandEnvelope {
            v: VERSION,
            expires_ms: Some(now_ms.saturating_add(COMMAND_TTL_MS)),
            command,
        };
        client
            .try_publish(
                gw.topic(Channel::Commands),
                QoS::AtLeastOnce,
                false,
                wire::encode(&envelope),
            )
            .map_err(|_| CommandError::Busy)
    }
}
