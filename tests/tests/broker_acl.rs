//! The broker's confinement of PROTOCOL.md ("Identity and confinement"), over a real Mosquitto.
//!
//! A gateway's certificate (CN `{site}/{gateway}`) lets it publish and read only in its own
//! subtree; the hub (CN `hub/{replica}`) reads everything; a client without a certificate of
//! the deployment's CA never gets a session. A message that must not arrive is proven absent
//! by ordering: a control message sent after it on an allowed topic arrives, and then nothing
//! else within a further second.

use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, ConnectReturnCode, Event, MqttOptions, Packet, Publish, QoS};
use rustls::ClientConfig;
use tokio::sync::mpsc;
use tokio::time::timeout;

use roomgate_tests::broker::Broker;
use roomgate_tests::wait_for;

const SETTLE: Duration = Duration::from_secs(1);
const WITHIN: Duration = Duration::from_secs(5);

/// A connected MQTT client whose event loop runs in a task, forwarding what it receives.
struct Peer {
    client: AsyncClient,
    incoming: mpsc::UnboundedReceiver<Packet>,
}

impl Peer {
    /// Connects and waits for a successful CONNACK.
    async fn connect(options: MqttOptions) -> Peer {
        let (client, mut events) = AsyncClient::new(options, 16);
        let (tx, mut incoming) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            // Stops at the first error: these tests never expect a reconnect.
            while let Ok(event) = events.poll().await {
                if let Event::Incoming(packet) = event
                    && tx.send(packet).is_err()
                {
                    break;
                }
            }
        });
        let connack = timeout(WITHIN, incoming.recv())
            .await
            .expect("CONNACK in time")
            .expect("the connection stays up until CONNACK");
        match connack {
            Packet::ConnAck(ack) => assert_eq!(ack.code, ConnectReturnCode::Success),
            other => panic!("expected CONNACK, got {other:?}"),
        }
        Peer { client, incoming }
    }

    async fn subscribe(&mut self, filter: &str) -> Vec<rumqttc::SubscribeReasonCode> {
        self.client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .expect("queue SUBSCRIBE");
        loop {
            match self.next().await {
                Packet::SubAck(ack) => return ack.return_codes,
                Packet::Publish(p) => panic!("unexpected publish before SUBACK: {p:?}"),
                _ => {}
            }
        }
    }

    async fn publish(&self, topic: &str, payload: &str) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.as_bytes().to_vec())
            .await
            .expect("queue PUBLISH");
    }

    async fn next(&mut self) -> Packet {
        timeout(WITHIN, self.incoming.recv())
            .await
            .expect("a packet in time")
            .expect("the connection stays up")
    }

    async fn next_publish(&mut self) -> Publish {
        loop {
            if let Packet::Publish(p) = self.next().await {
                return p;
            }
        }
    }

    /// Every publish received until `SETTLE` passes without one.
    async fn publishes_until_quiet(&mut self) -> Vec<Publish> {
        let mut seen = Vec::new();
        while let Ok(Some(packet)) = timeout(SETTLE, self.incoming.recv()).await {
            if let Packet::Publish(p) = packet {
                seen.push(p);
            }
        }
        seen
    }
}

fn granted(codes: &[rumqttc::SubscribeReasonCode]) -> bool {
    codes
        .iter()
        .all(|c| matches!(c, rumqttc::SubscribeReasonCode::Success(_)))
}

/// The hub replica 1, subscribed as PROTOCOL.md says and to everything under the prefix.
async fn hub(broker: &Broker) -> Peer {
    let mut hub = Peer::connect(broker.mqtt_options("hub-1", "hub/1").expect("hub options")).await;
    assert!(granted(
        &hub.subscribe("$share/hub/roomgate/v1/+/+/events").await
    ));
    assert!(granted(&hub.subscribe("roomgate/v1/#").await));
    hub
}

async fn gateway_1(broker: &Broker) -> Peer {
    Peer::connect(
        broker
            .mqtt_options("gw-site-a-gw-1", "site-a/gw-1")
            .expect("gateway options"),
    )
    .await
}

fn text(p: &Publish) -> String {
    String::from_utf8_lossy(&p.payload).into_owned()
}

#[tokio::test]
async fn a_gateway_publishes_its_events_and_the_hub_receives_them() {
    let broker = Broker::start().expect("start mosquitto");
    let mut hub = hub(&broker).await;
    let gateway = gateway_1(&broker).await;

    gateway
        .publish("roomgate/v1/site-a/gw-1/events", "batch 1")
        .await;
    let got = hub.next_publish().await;
    assert_eq!(got.topic, "roomgate/v1/site-a/gw-1/events");
    assert_eq!(text(&got), "batch 1");
}

#[tokio::test]
async fn a_gateway_cannot_publish_into_another_gateways_subtree() {
    let mut broker = Broker::start().expect("start mosquitto");
    let mut hub = hub(&broker).await;
    let gateway = gateway_1(&broker).await;

    gateway
        .publish("roomgate/v1/site-a/gw-2/events", "forged")
        .await;
    gateway
        .publish("roomgate/v1/site-b/gw-1/status", "forged")
        .await;
    gateway
        .publish("roomgate/v1/site-a/gw-1/acks", "forged")
        .await;
    gateway
        .publish("roomgate/v1/site-a/gw-1/events", "control")
        .await;

    // Messages of one client are delivered in order: the control message arrives, so a
    // forged one sent before it would already have.
    let mut seen = vec![hub.next_publish().await];
    seen.extend(hub.publishes_until_quiet().await);
    let seen: Vec<_> = seen.iter().map(|p| (p.topic.clone(), text(p))).collect();
    assert!(
        seen.iter().all(|(_, body)| body == "control"),
        "the hub received a forged message: {seen:?}"
    );
    assert!(
        seen.iter()
            .any(|(topic, _)| topic == "roomgate/v1/site-a/gw-1/events"),
        "{seen:?}"
    );
    assert!(broker.is_running(), "the broker survives forged publishes");
}

#[tokio::test]
async fn a_gateway_cannot_read_another_gateways_acks() {
    let broker = Broker::start().expect("start mosquitto");
    let hub = hub(&broker).await;
    let mut gateway = gateway_1(&broker).await;

    // Mosquitto may refuse the subscription or accept it and filter on delivery; either way
    // nothing of gw-2 may arrive.
    gateway.subscribe("roomgate/v1/site-a/gw-2/acks").await;
    gateway.subscribe("roomgate/v1/site-a/+/commands").await;
    assert!(granted(
        &gateway.subscribe("roomgate/v1/site-a/gw-1/acks").await
    ));

    hub.publish("roomgate/v1/site-a/gw-2/acks", "for gw-2")
        .await;
    hub.publish("roomgate/v1/site-a/gw-2/commands", "for gw-2")
        .await;
    hub.publish("roomgate/v1/site-a/gw-1/acks", "control").await;

    let mut seen = vec![gateway.next_publish().await];
    seen.extend(gateway.publishes_until_quiet().await);
    let seen: Vec<_> = seen.iter().map(|p| (p.topic.clone(), text(p))).collect();
    assert_eq!(
        seen,
        vec![(
            "roomgate/v1/site-a/gw-1/acks".to_owned(),
            "control".to_owned()
        )]
    );
}

/// Connects with `config` and returns what the first poll of the event loop gave.
async fn first_event(broker: &Broker, config: Arc<ClientConfig>) -> Result<Event, String> {
    let options = broker
        .options_with("intruder", config)
        .expect("intruder options");
    let (_client, mut events) = AsyncClient::new(options, 16);
    timeout(WITHIN, async {
        // The first Ok is the CONNACK (Incoming), anything else is the refusal.
        loop {
            match events.poll().await {
                Ok(Event::Incoming(packet)) => return Ok(Event::Incoming(packet)),
                Ok(Event::Outgoing(_)) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    })
    .await
    .expect("the broker answers in time")
}

/// The broker ended the handshake with a TLS alert (CertificateRequired, UnknownCA, ...):
/// refused for the certificate, not for a timeout or a closed port.
fn assert_refused_by_tls(result: Result<Event, String>, how: &str) {
    match result {
        Ok(event) => panic!("connected {how}: {event:?}"),
        Err(e) => assert!(e.contains("alert"), "refused {how}, but not by TLS: {e}"),
    }
}

#[tokio::test]
async fn a_client_without_a_certificate_is_refused() {
    let broker = Broker::start().expect("start mosquitto");
    let config = broker.anonymous_config().expect("anonymous config");
    let result = first_event(&broker, config).await;
    assert_refused_by_tls(result, "without a certificate");
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused() {
    let broker = Broker::start().expect("start mosquitto");
    let files = broker
        .foreign_client_tls("site-a/gw-1")
        .expect("foreign certificate");
    let config = cloud_sync::tls::client_config(&files).expect("a valid config on our side");
    let result = first_event(&broker, config).await;
    assert_refused_by_tls(result, "with another CA's certificate");
}

#[tokio::test]
async fn queued_messages_survive_a_broker_restart() {
    let mut broker = Broker::start().expect("start mosquitto");
    let hub = hub(&broker).await;
    hub.client.disconnect().await.expect("queue DISCONNECT");
    wait_for("the hub to disconnect", WITHIN, || {
        broker.log().contains("Client hub-1 disconnected")
    })
    .await;

    let mut gateway = gateway_1(&broker).await;
    gateway
        .publish("roomgate/v1/site-a/gw-1/events", "while the hub was away")
        .await;
    while !matches!(gateway.next().await, Packet::PubAck(_)) {}
    drop(gateway);

    broker.restart().expect("restart mosquitto");

    // Same client id, clean session off: the broker kept the session and its queue.
    let options = broker.mqtt_options("hub-1", "hub/1").expect("hub options");
    let mut hub = Peer::connect(options).await;
    let got = hub.next_publish().await;
    assert_eq!(got.topic, "roomgate/v1/site-a/gw-1/events");
    assert_eq!(text(&got), "while the hub was away");
}

#[tokio::test]
async fn a_killed_broker_comes_back_on_the_same_port() {
    let mut broker = Broker::start().expect("start mosquitto");
    let port = broker.port();
    broker.kill().expect("kill mosquitto");
    assert!(!broker.is_running());
    broker.start_again().expect("start mosquitto again");
    assert_eq!(broker.port(), port);
    gateway_1(&broker).await;
}
