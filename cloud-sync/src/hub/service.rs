//! The hub's MQTT side: ingests events exactly once and acks them, stores gateway status,
//! and answers booking sync requests; replicas share the load through shared subscriptions.

use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event as MqttEvent, MqttOptions, Packet, QoS};
use tokio::sync::watch;

use super::store::{HubStore, HubStoreError};
use crate::backoff::{Jitter, Jittered};
use crate::topics::{Channel, GatewayId, hub_subscriptions};
use crate::wire::{
    self, Ack, BookingChange, BookingChanges, EventBatch, Status, SyncRequest, VERSION,
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
}

/// Replies (acks, sync answers) waiting for the publishing task.
const REPLY_QUEUE: usize = 65_536;

/// A running hub replica.
#[derive(Debug)]
pub struct Hub {
    client_tx: watch::Sender<Option<AsyncClient>>,
    stats: watch::Receiver<HubStats>,
    store: Arc<HubStore>,
    task: tokio::task::JoinHandle<()>,
}

impl Hub {
    /// Connects with `options` (TLS and identity already set) and serves until stopped.
    /// `group` names the shared subscription group of the replicas.
    pub fn start(options: MqttOptions, store: Arc<HubStore>, group: &str) -> Hub {
        let (stats_tx, stats) = watch::channel(HubStats::default());
        let (client_tx, _) = watch::channel(None);
        let task = tokio::spawn(run(
            options,
            Arc::clone(&store),
            group.to_owned(),
            stats_tx,
            client_tx.clone(),
        ));
        Hub {
            client_tx,
            stats,
            store,
            task,
        }
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
        let client = self.client_tx.borrow().clone();
        if let Some(client) = client {
            let push = BookingChanges {
                v: VERSION,
                cursor,
                full: false,
                changes: vec![change],
            };
            let _ = client
                .publish(
                    gw.topic(Channel::Bookings),
                    QoS::AtLeastOnce,
                    false,
                    wire::encode(&push),
                )
                .await;
        }
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
    client_tx: watch::Sender<Option<AsyncClient>>,
) {
    let mut backoff = Jittered::new(Duration::from_millis(200), Duration::from_secs(30));
    let mut jitter = Jitter::new(std::process::id() as u64);
    loop {
        let (client, mut eventloop) = AsyncClient::new(options.clone(), 256);
        client_tx.send_replace(Some(client.clone()));
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
                    handle(&replies, &store, &stats, &p.topic, &p.payload).await;
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
            Ok(batch) => match store.ingest(&gw, &batch, now_ms()).await {
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
                if let Err(e) = store.put_status(&gw, &status, now_ms()).await {
                    tracing::error!("status of {gw} not stored: {e}");
                }
            }
            Err(e) => refused(e.to_string()),
        },
        Channel::Sync => match wire::decode::<SyncRequest>(payload) {
            Ok(req) => match store.changes_since(&gw, req.cursor).await {
                Ok(changes) => {
                    stats.send_modify(|s| s.syncs += 1);
                    reply(gw.topic(Channel::Bookings), wire::encode(&changes));
                }
                Err(e) => tracing::error!("bookings for {gw} not read: {e}"),
            },
            Err(e) => refused(e.to_string()),
        },
        _ => refused(format!("unexpected message on {topic}")),
    }
}

/// The hub's wall clock in milliseconds (when a gateway was last heard from).
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
