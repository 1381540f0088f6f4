//! Two hub replicas share the ingest of several gateways through a shared subscription, over
//! one PostgreSQL database and a real Mosquitto with mutual TLS; one is stopped mid-stream.
//!
//! The gateways are simulated with their own MQTT clients and certificates (CN
//! `{site}/{gateway}`): they publish `EventBatch`es on their events topic with a window of
//! unacknowledged batches, forget events only when an ack covers them, send everything
//! unacknowledged again when no ack came in time (PROTOCOL.md), and redeliver on purpose: every
//! fourth batch goes twice, and now and then an already acknowledged batch goes again. The
//! replicas (`hub/1`, `hub/2`, group `hub`) are the real `cloud_sync::hub::Hub` on
//! `HubStore::open_postgres`, each with its own pool.

use std::sync::Arc;
use std::time::Duration;

use cloud_sync::hub::{Hub, HubStats, HubStore};
use cloud_sync::topics::{Channel, GatewayId};
use cloud_sync::wire::{self, Ack, Event, EventBatch, EventKind, SyncRequest, VERSION};
use roomgate_tests::broker::{Broker, BrokerConfig};
use roomgate_tests::postgres::PgServer;
use roomgate_tests::{wait_for, wait_until};
use rumqttc::{AsyncClient, Event as MqttEvent, MqttOptions, Packet, QoS};
use tokio::sync::watch;
use tokio::time::Instant;

const DAY: i64 = 1_772_409_600_000; // 2026-03-02 00:00 UTC
const GATEWAYS: usize = 6;
/// Events per gateway while both replicas run.
const BEFORE_STOP: u64 = 300;
/// Events per gateway written while replica 2 stops and after.
const AROUND_STOP: u64 = 300;
const BATCH: usize = 20;
/// Unacknowledged batches a gateway may have out.
const WINDOW: usize = 3;
/// A gateway sends again from its oldest unacknowledged event after this long without an ack
/// (PROTOCOL.md says 30 s; scaled down for the test).
const ACK_TIMEOUT: Duration = Duration::from_millis(1500);
/// Liveness limit of each wait (never a timed assertion: a healthy run takes seconds).
const WAIT: Duration = Duration::from_secs(120);

/// What a simulated gateway has seen, for the test to read.
#[derive(Debug, Clone, Default)]
struct Progress {
    /// The gateway has forgotten every event up to here.
    acked: u64,
    /// The highest sequence number it ever published.
    published_max: u64,
    /// The highest ack it ever received (must never exceed `published_max`).
    ack_max: u64,
    /// Sends of everything unacknowledged after an ack timeout.
    resends: u64,
    /// Batches sent again on purpose (twice in a row, or already acknowledged).
    redeliveries: u64,
}

/// The events gateway `g` writes: distinct per gateway, so that a mix-up would show.
fn gateway_event(g: usize, seq: u64) -> Event {
    Event {
        seq,
        at_ms: DAY + seq as i64 * 1000,
        room: format!("r{}", seq % 5),
        booking: Some(format!("b-{g}-{seq}")),
        kind: if seq.is_multiple_of(7) {
            EventKind::Released
        } else {
            EventKind::CheckedIn
        },
        reason: format!("gateway {g}, event {seq}"),
        data: serde_json::json!({ "gateway": g, "seq": seq }),
    }
}

struct SimGateway {
    index: usize,
    id: GatewayId,
    options: MqttOptions,
    /// How many events the floor has written so far (the test raises it).
    written: watch::Receiver<u64>,
    progress: watch::Sender<Progress>,
    acked: u64,
    /// Highest sequence number sent since the last (re)send from `acked`.
    published: u64,
    batches_sent: u64,
    acks_advanced: u64,
}

impl SimGateway {
    async fn run(mut self) {
        let (client, mut eventloop) = AsyncClient::new(self.options.clone(), 256);
        let mut last_progress = Instant::now();
        let mut connected = false;
        loop {
            let waiting = connected && self.published > self.acked;
            tokio::select! {
                ev = eventloop.poll() => match ev {
                    Ok(MqttEvent::Incoming(Packet::ConnAck(_))) => {
                        connected = true;
                        let _ = client.try_subscribe(self.id.topic(Channel::Acks), QoS::AtLeastOnce);
                        // Everything unacknowledged goes again; the hub ignores what it has.
                        self.published = self.acked;
                        last_progress = Instant::now();
                        self.publish_pending(&client);
                    }
                    Ok(MqttEvent::Incoming(Packet::Publish(p))) => {
                        if self.on_ack(&client, &p.payload) {
                            last_progress = Instant::now();
                            self.publish_pending(&client);
                        }
                    }
                    Ok(_) => {}
                    Err(_) => {
                        // rumqttc reconnects on the next poll; do not spin meanwhile.
                        connected = false;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                changed = self.written.changed() => {
                    if changed.is_err() {
                        return; // the test is over
                    }
                    if connected {
                        self.publish_pending(&client);
                    }
                }
                () = tokio::time::sleep_until(last_progress + ACK_TIMEOUT), if waiting => {
                    self.progress.send_modify(|p| p.resends += 1);
                    self.published = self.acked;
                    last_progress = Instant::now();
                    self.publish_pending(&client);
                }
            }
        }
    }

    fn publish(&mut self, client: &AsyncClient, from: u64, to: u64) -> bool {
        let batch = EventBatch {
            v: VERSION,
            gateway: self.id.to_string(),
            events: (from..=to).map(|s| gateway_event(self.index, s)).collect(),
        };
        client
            .try_publish(
                self.id.topic(Channel::Events),
                QoS::AtLeastOnce,
                false,
                wire::encode(&batch),
            )
            .is_ok()
    }

    /// Publishes written events after `published`, within the window.
    fn publish_pending(&mut self, client: &AsyncClient) {
        let written = *self.written.borrow();
        let limit = (WINDOW * BATCH) as u64;
        while self.published < written && self.published - self.acked < limit {
            let from = self.published + 1;
            let to = (self.published + BATCH as u64).min(written);
            if !self.publish(client, from, to) {
                return; // the request queue is full: the ack timeout sends it again
            }
            self.batches_sent += 1;
            if self.batches_sent.is_multiple_of(4) && self.publish(client, from, to) {
                self.progress.send_modify(|p| p.redeliveries += 1);
            }
            self.published = to;
            self.progress
                .send_modify(|p| p.published_max = p.published_max.max(to));
        }
    }

    /// Handles an ack; true when it moved the ack point.
    fn on_ack(&mut self, client: &AsyncClient, payload: &[u8]) -> bool {
        let Ok(ack) = wire::decode::<Ack>(payload) else {
            panic!("{}: an ack that does not decode", self.id);
        };
        self.progress
            .send_modify(|p| p.ack_max = p.ack_max.max(ack.upto));
        if ack.upto <= self.acked {
            return false;
        }
        self.acked = ack.upto;
        self.published = self.published.max(ack.upto);
        self.acks_advanced += 1;
        self.progress.send_modify(|p| p.acked = ack.upto);
        // Now and then, a batch the hub already acknowledged arrives again.
        if self.acks_advanced.is_multiple_of(5) {
            let from = ack.upto.saturating_sub(BATCH as u64 - 1).max(1);
            if self.publish(client, from, ack.upto) {
                self.progress.send_modify(|p| p.redeliveries += 1);
            }
        }
        true
    }
}

/// Publishes sync requests as a probe gateway until both replicas have answered one: then
/// both shared subscriptions are in place.
async fn wait_until_both_replicas_subscribed(broker: &Broker, hubs: [&Hub; 2]) {
    let probe = GatewayId::new("probe", "gw").expect("id");
    let options = broker
        .mqtt_options(&probe.client_id(), &probe.to_string())
        .expect("probe options");
    let (client, mut eventloop) = AsyncClient::new(options, 64);
    let polling = tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    let request = wire::encode(&SyncRequest {
        v: VERSION,
        cursor: 0,
    });
    let topic = probe.topic(Channel::Sync);
    wait_until("both replicas answer sync requests", WAIT, || {
        let (client, topic, request) = (client.clone(), topic.clone(), request.clone());
        async move {
            let _ = client
                .publish(topic, QoS::AtLeastOnce, false, request)
                .await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            hubs.iter().all(|h| h.stats().syncs > 0)
        }
    })
    .await;
    polling.abort();
}

fn totals(stats: &[HubStats]) -> (u64, u64, u64) {
    stats.iter().fold((0, 0, 0), |(b, n, d), s| {
        (b + s.batches, n + s.events_new, d + s.events_duplicate)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_share_the_ingest_and_one_takes_over_when_the_other_stops() {
    let database = PgServer::start().expect("a PostgreSQL server of the test's own");
    let url = database.create_database().expect("database");
    let broker = Broker::start_with(BrokerConfig {
        hub_replicas: vec!["1".into(), "2".into()],
    })
    .expect("mosquitto with mutual TLS");

    let store = |pool| {
        let url = url.clone();
        async move { Arc::new(HubStore::open_postgres(&url, pool).await.expect("store")) }
    };
    let (store1, store2) = (store(2).await, store(2).await);
    let hub1 = Hub::start(
        broker.mqtt_options("hub-1", "hub/1").expect("hub/1"),
        Arc::clone(&store1),
        "hub",
    );
    let hub2 = Hub::start(
        broker.mqtt_options("hub-2", "hub/2").expect("hub/2"),
        Arc::clone(&store2),
        "hub",
    );
    wait_for("both replicas connected", WAIT, || {
        hub1.stats().connected && hub2.stats().connected
    })
    .await;
    wait_until_both_replicas_subscribed(&broker, [&hub1, &hub2]).await;
    let syncs = [hub1.stats(), hub2.stats()];

    // The gateways, each with its own certificate.
    let (written, written_rx) = watch::channel(0u64);
    let mut gateways = Vec::new();
    for index in 0..GATEWAYS {
        let id =
            GatewayId::new(&format!("site-{}", index % 2), &format!("gw-{index}")).expect("id");
        let options = broker
            .mqtt_options(&id.client_id(), &id.to_string())
            .expect("gateway options");
        let (progress_tx, progress) = watch::channel(Progress::default());
        let gateway = SimGateway {
            index,
            id: id.clone(),
            options,
            written: written_rx.clone(),
            progress: progress_tx,
            acked: 0,
            published: 0,
            batches_sent: 0,
            acks_advanced: 0,
        };
        let task = tokio::spawn(gateway.run());
        gateways.push((index, id, progress, task));
    }
    let all_acked = |upto: u64| {
        let views: Vec<_> = gateways.iter().map(|(_, _, p, _)| p.clone()).collect();
        move || views.iter().all(|p| p.borrow().acked >= upto)
    };

    // Both replicas run: the shared subscription splits the load between them.
    written.send_replace(BEFORE_STOP);
    wait_for(
        "every gateway acked before the stop",
        WAIT,
        all_acked(BEFORE_STOP),
    )
    .await;
    let (s1, s2) = (hub1.stats(), hub2.stats());
    println!("# before the stop: hub/1 {s1:?}");
    println!("# before the stop: hub/2 {s2:?}");
    assert!(
        s1.batches > 0 && s2.batches > 0,
        "both replicas ingested part of the load: hub/1 {} batches, hub/2 {}",
        s1.batches,
        s2.batches
    );
    let (_, fresh, duplicates) = totals(&[s1.clone(), s2.clone()]);
    assert_eq!(
        fresh,
        GATEWAYS as u64 * BEFORE_STOP,
        "every event was fresh at exactly one replica, once"
    );
    assert!(
        duplicates > 0,
        "the redeliveries reached the hub and were recognised"
    );
    assert_eq!(s1.refused_payloads + s2.refused_payloads, 0);
    assert!(syncs.iter().all(|s| s.refused_payloads == 0));

    // Replica 2 stops while the gateways are writing; replica 1 takes over.
    let mut hub2_stats = hub2.watch_stats();
    let step = AROUND_STOP / 10;
    let mut now_written = BEFORE_STOP;
    for _ in 0..5 {
        now_written += step;
        written.send_replace(now_written);
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    let hub1_at_stop = hub1.stats();
    let stopped_at = Instant::now();
    hub2.stop().await;
    let hub2_final = hub2_stats.borrow_and_update().clone();
    for _ in 0..5 {
        now_written += step;
        written.send_replace(now_written);
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    let total = BEFORE_STOP + AROUND_STOP;
    assert_eq!(now_written, total);
    wait_for("every gateway acked after the stop", WAIT, all_acked(total)).await;
    println!(
        "# every gateway fully acked {:.2} s after replica 2 stopped (ack timeout {:.1} s)",
        stopped_at.elapsed().as_secs_f64(),
        ACK_TIMEOUT.as_secs_f64()
    );
    let s1 = hub1.stats();
    println!("# after the stop: hub/1 {s1:?}");
    println!("# hub/2 when stopped: {hub2_final:?}");
    assert!(
        s1.batches > hub1_at_stop.batches,
        "replica 1 ingested what was written after replica 2 stopped"
    );
    assert!(
        s1.events_new + hub2_final.events_new <= GATEWAYS as u64 * total,
        "nothing was fresh twice"
    );

    // Every event stored exactly once, in each gateway's order; every gateway fully acked.
    for (index, id, progress, task) in gateways {
        let stored = store1.events(&id).await.expect("events");
        let expected: Vec<Event> = (1..=total).map(|s| gateway_event(index, s)).collect();
        assert_eq!(stored.len(), expected.len(), "{id}: every event, once");
        assert!(
            stored == expected,
            "{id}: the events as sent, in sequence order"
        );
        let p = progress.borrow().clone();
        println!("# {id}: {p:?}");
        assert_eq!(p.acked, total, "{id} fully acked");
        assert!(
            p.ack_max <= p.published_max,
            "{id}: never acked beyond what it sent"
        );
        assert!(p.redeliveries > 0, "{id} redelivered on purpose");
        task.abort();
    }
    // The other replica's pool sees the same database.
    let gateways_seen = store2.gateways().await.expect("gateways");
    assert_eq!(
        gateways_seen.len(),
        GATEWAYS,
        "the probe sent no events, the gateways did"
    );
    hub1.stop().await;
}
