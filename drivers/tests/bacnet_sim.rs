//! End-to-end tests of the BACnet/IP driver against the BACnet simulator over real UDP sockets on 127.0.0.1 (ephemeral ports; no mocks).

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use drivers::bacnet::sim::{self, BacnetSim, BacnetSimConfig, service};
use drivers::bacnet::{
    BacnetDeviceConfig, BacnetNetwork, BacnetNetworkConfig, BacnetPoint, DeviceAddress, ObjectRef,
    ObjectType, ValueKind,
};
use drivers::device::{DeviceHandle, DriverError, LinkState, PointUpdate};
use drivers::point::{Access, Value};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep, timeout};

const INSTANCE: u32 = 301_001;

fn object((object_type, instance): (ObjectType, u32)) -> ObjectRef {
    ObjectRef::new(object_type, instance)
}

fn room_points() -> Vec<BacnetPoint> {
    vec![
        BacnetPoint::present_value("light", object(sim::LIGHT), Access::ReadWrite),
        BacnetPoint::present_value("setpoint", object(sim::SETPOINT), Access::ReadWrite),
        BacnetPoint::present_value("temperature", object(sim::TEMPERATURE), Access::Read),
        BacnetPoint::present_value("occupancy", object(sim::OCCUPANCY), Access::Read),
        BacnetPoint::present_value("mode", object(sim::MODE), Access::ReadWrite),
    ]
}

/// A network on 127.0.0.1 with short timings: 150 ms per attempt, one retry.
async fn network() -> BacnetNetwork {
    let cfg = BacnetNetworkConfig {
        port: 0,
        broadcast: Ipv4Addr::LOCALHOST,
        apdu_timeout: Duration::from_millis(150),
        apdu_retries: 1,
        ..BacnetNetworkConfig::new(Ipv4Addr::LOCALHOST)
    };
    BacnetNetwork::start(cfg)
        .await
        .expect("network binds 127.0.0.1:0")
}

fn fast(sim: &BacnetSim) -> BacnetDeviceConfig {
    BacnetDeviceConfig {
        address: DeviceAddress::Directed(sim.addr()),
        poll_interval: Duration::from_millis(100),
        locate_timeout: Duration::from_millis(300),
        backoff_min: Duration::from_millis(50),
        backoff_max: Duration::from_millis(200),
        queue_depth: 8,
        ..BacnetDeviceConfig::new("room", INSTANCE)
    }
}

struct Rig {
    sim: BacnetSim,
    net: BacnetNetwork,
    handle: DeviceHandle,
    updates: mpsc::Receiver<PointUpdate>,
    /// Latest value per point.
    seen: HashMap<String, Option<Value>>,
}

async fn rig(
    cfg: impl FnOnce(&BacnetSim) -> BacnetDeviceConfig,
    prepare: impl FnOnce(&BacnetSim),
) -> Rig {
    let sim = BacnetSim::start(BacnetSimConfig::loopback(INSTANCE))
        .await
        .expect("simulator binds 127.0.0.1:0");
    prepare(&sim);
    let net = network().await;
    let (tx, updates) = mpsc::channel(64);
    let handle = net.spawn_device(cfg(&sim), room_points(), tx);
    Rig {
        sim,
        net,
        handle,
        updates,
        seen: HashMap::new(),
    }
}

impl Rig {
    /// Waits until `point` has been published as `value`.
    async fn until(&mut self, point: &str, value: Option<Value>) {
        let deadline = Instant::now() + Duration::from_secs(3);
        while self.seen.get(point) != Some(&value) {
            let update = timeout(deadline - Instant::now(), self.updates.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "{point} never became {value:?}; last values {:?}",
                        self.seen
                    )
                })
                .expect("update channel open");
            self.seen.insert(update.point, update.value);
        }
    }

    async fn until_state(&self, state: LinkState) {
        let mut health = self.handle.watch_health();
        timeout(
            Duration::from_secs(5),
            health.wait_for(|h| h.state == state),
        )
        .await
        .unwrap_or_else(|_| panic!("never {state}: {:?}", self.handle.health()))
        .expect("driver alive");
    }

    async fn stop(self) {
        self.handle.shutdown();
        self.net.stop().await;
        self.sim.stop().await.expect("simulator stops");
    }
}

#[tokio::test]
async fn reads_writes_at_priority_and_relinquishes() {
    let mut r = rig(fast, |_| {}).await;
    r.until("temperature", Some(Value::Number(21.5))).await;
    r.until("occupancy", Some(Value::Bool(false))).await;
    r.until("light", Some(Value::Bool(false))).await;
    r.until("setpoint", Some(Value::Number(21.0))).await;
    r.until("mode", Some(Value::Number(1.0))).await;
    assert_eq!(r.handle.health().state, LinkState::Online);

    // WriteProperty at the default priority 12 lands in slot 12 of the priority array.
    r.handle
        .write("light", Value::Bool(true))
        .await
        .expect("light on");
    r.until("light", Some(Value::Bool(true))).await;
    assert_eq!(
        r.sim.present_value(sim::LIGHT).await.unwrap(),
        bacnet_types::primitives::PropertyValue::Enumerated(1)
    );
    assert_eq!(
        r.sim.priority_slot(sim::LIGHT, 12).await.unwrap(),
        bacnet_types::primitives::PropertyValue::Enumerated(1)
    );
    r.handle
        .write("setpoint", Value::Number(23.5))
        .await
        .expect("setpoint");
    r.until("setpoint", Some(Value::Number(23.5))).await;
    r.handle
        .write("mode", Value::Number(2.0))
        .await
        .expect("mode");
    r.until("mode", Some(Value::Number(2.0))).await;

    // Relinquish writes NULL at 12: the slot empties and the value falls back to the
    // Relinquish_Default (Clause 19.2.1).
    r.handle.relinquish("setpoint").await.expect("relinquish");
    r.until("setpoint", Some(Value::Number(21.0))).await;
    assert_eq!(
        r.sim.priority_slot(sim::SETPOINT, 12).await.unwrap(),
        bacnet_types::primitives::PropertyValue::Null
    );
    r.handle
        .relinquish("light")
        .await
        .expect("relinquish light");
    r.until("light", Some(Value::Bool(false))).await;

    // Reads through the queue; refusals are typed.
    assert_eq!(r.handle.read("temperature").await, Ok(Value::Number(21.5)));
    assert_eq!(
        r.handle.write("temperature", Value::Number(1.0)).await,
        Err(DriverError::NotWritable("temperature".into()))
    );
    assert_eq!(
        r.handle
            .write("mode", Value::Number(2.5))
            .await
            .map_err(|e| e.to_string()),
        Err("point `mode`: 2.5 cannot be written as unsigned".into())
    );
    // Mode has 3 states: 7 is refused by the device with an Error PDU; the link stays up.
    let refused = r.handle.write("mode", Value::Number(7.0)).await;
    assert!(
        matches!(
            refused,
            Err(DriverError::BacnetError {
                service: "WriteProperty",
                ..
            })
        ),
        "{refused:?}"
    );
    let health = r.handle.health();
    assert_eq!(health.state, LinkState::Online);
    assert!(health.counters.exceptions >= 1, "{health:?}");
    assert!(health.counters.requests >= health.counters.responses);
    assert_eq!(health.counters.timeouts, 0, "{health:?}");
    r.stop().await;
}

#[tokio::test]
async fn cov_notifications_become_point_updates() {
    // Polling every minute: only COV can deliver the change in time.
    let mut r = rig(
        |sim| BacnetDeviceConfig {
            poll_interval: Duration::from_secs(60),
            ..fast(sim)
        },
        |_| {},
    )
    .await;
    r.until("temperature", Some(Value::Number(21.5))).await;
    r.until("occupancy", Some(Value::Bool(false))).await;
    assert!(r.sim.requests_seen(service::SUBSCRIBE_COV) >= 4);
    r.sim.set_temperature(24.0).await.unwrap();
    r.until("temperature", Some(Value::Number(24.0))).await;
    r.sim.set_occupancy(true).await.unwrap();
    r.until("occupancy", Some(Value::Bool(true))).await;
    r.stop().await;
}

#[tokio::test]
async fn cov_subscriptions_are_renewed_before_they_lapse() {
    let mut r = rig(
        |sim| BacnetDeviceConfig {
            poll_interval: Duration::from_secs(60),
            cov_lifetime: Some(Duration::from_secs(2)),
            ..fast(sim)
        },
        |_| {},
    )
    .await;
    r.until("temperature", Some(Value::Number(21.5))).await;
    let first = r.sim.requests_seen(service::SUBSCRIBE_COV);
    // Renewed at half the lifetime: after 2.5 s the first subscriptions would have lapsed.
    sleep(Duration::from_millis(2500)).await;
    assert!(r.sim.requests_seen(service::SUBSCRIBE_COV) >= 2 * first);
    r.sim.set_temperature(19.0).await.unwrap();
    r.until("temperature", Some(Value::Number(19.0))).await;
    r.stop().await;
}

#[tokio::test]
async fn refused_cov_falls_back_to_polling() {
    let mut r = rig(fast, |sim| sim.refuse_service(service::SUBSCRIBE_COV, true)).await;
    r.until("temperature", Some(Value::Number(21.5))).await;
    r.sim.set_temperature(26.0).await.unwrap();
    r.until("temperature", Some(Value::Number(26.0))).await;
    // Refused once per object, and remembered.
    sleep(Duration::from_millis(300)).await;
    assert_eq!(r.sim.requests_seen(service::SUBSCRIBE_COV), 5);
    r.stop().await;
}

#[tokio::test]
async fn refused_rpm_falls_back_to_read_property_and_is_remembered() {
    let mut r = rig(
        |sim| BacnetDeviceConfig {
            cov_lifetime: None,
            ..fast(sim)
        },
        |sim| sim.refuse_service(service::READ_PROPERTY_MULTIPLE, true),
    )
    .await;
    r.until("temperature", Some(Value::Number(21.5))).await;
    r.until("mode", Some(Value::Number(1.0))).await;
    r.sim.set_occupancy(true).await.unwrap();
    r.until("occupancy", Some(Value::Bool(true))).await;
    // Two more cycles of five ReadProperty each, and no second RPM.
    sleep(Duration::from_millis(350)).await;
    assert_eq!(r.sim.requests_seen(service::READ_PROPERTY_MULTIPLE), 1);
    assert!(r.sim.requests_seen(service::READ_PROPERTY) >= 10);
    let health = r.handle.health();
    assert_eq!(health.state, LinkState::Online);
    assert!(
        health
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("rejected ReadPropertyMultiple: unrecognized-service")),
        "{health:?}"
    );
    r.stop().await;
}

#[tokio::test]
async fn rpm_batches_respect_the_configured_size() {
    let mut r = rig(
        |sim| BacnetDeviceConfig {
            cov_lifetime: None,
            rpm_max_properties: 2,
            poll_interval: Duration::from_secs(60),
            ..fast(sim)
        },
        |_| {},
    )
    .await;
    r.until("mode", Some(Value::Number(1.0))).await;
    r.until("temperature", Some(Value::Number(21.5))).await;
    // Five points in batches of two: three requests, no ReadProperty.
    assert_eq!(r.sim.requests_seen(service::READ_PROPERTY_MULTIPLE), 3);
    assert_eq!(r.sim.requests_seen(service::READ_PROPERTY), 0);
    r.stop().await;
}

#[tokio::test]
async fn a_silent_device_goes_offline_and_comes_back() {
    let mut r = rig(fast, |_| {}).await;
    r.until("temperature", Some(Value::Number(21.5))).await;
    r.sim.set_silent(true);
    r.until_state(LinkState::Offline).await;
    for point in ["light", "setpoint", "temperature", "occupancy", "mode"] {
        r.until(point, None).await;
    }
    assert_eq!(
        r.handle.write("light", Value::Bool(true)).await,
        Err(DriverError::Offline)
    );
    let health = r.handle.health();
    assert!(health.counters.timeouts >= 1, "{health:?}");
    assert!(
        health
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("did not answer")),
        "{health:?}"
    );
    r.sim.set_silent(false);
    r.until_state(LinkState::Online).await;
    r.until("temperature", Some(Value::Number(21.5))).await;
    // COV works again after the comeback (subscriptions re-made).
    r.sim.set_temperature(22.5).await.unwrap();
    r.until("temperature", Some(Value::Number(22.5))).await;
    r.handle
        .write("light", Value::Bool(true))
        .await
        .expect("writes work again");
    r.stop().await;
}

#[tokio::test]
async fn a_slow_device_is_served_within_the_timeout() {
    // 100 ms per frame: slow, but inside one attempt (150 ms).
    let mut r = rig(fast, |sim| sim.set_delay(Duration::from_millis(100))).await;
    r.until("temperature", Some(Value::Number(21.5))).await;
    r.handle
        .write("setpoint", Value::Number(22.0))
        .await
        .expect("written despite delay");
    assert_eq!(r.handle.health().state, LinkState::Online);
    r.stop().await;
}

#[tokio::test]
async fn an_absent_device_is_offline_and_requests_fail_fast() {
    let sim = BacnetSim::start(BacnetSimConfig::loopback(INSTANCE))
        .await
        .unwrap();
    let net = network().await;
    let (tx, _updates) = mpsc::channel(64);
    // Another instance than the simulator's: no I-Am comes.
    let handle = net.spawn_device(
        BacnetDeviceConfig {
            instance: INSTANCE + 1,
            ..fast(&sim)
        },
        room_points(),
        tx,
    );
    let mut health = handle.watch_health();
    timeout(
        Duration::from_secs(3),
        health.wait_for(|h| h.state == LinkState::Offline),
    )
    .await
    .expect("offline in time")
    .unwrap();
    let health = handle.health();
    assert!(
        health
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("301002 did not answer Who-Is")),
        "{health:?}"
    );
    assert_eq!(handle.read("light").await, Err(DriverError::Offline));
    handle.shutdown();
    net.stop().await;
    sim.stop().await.unwrap();
}

#[tokio::test]
async fn static_address_and_point_validation() {
    let sim = BacnetSim::start(BacnetSimConfig::loopback(INSTANCE))
        .await
        .unwrap();
    let net = network().await;
    let (tx, mut updates) = mpsc::channel(64);
    let mut bad = BacnetPoint::present_value("bad", object(sim::SETPOINT), Access::ReadWrite);
    bad.kind = ValueKind::Boolean;
    let good = BacnetPoint::present_value("setpoint", object(sim::SETPOINT), Access::ReadWrite);
    let handle = net.spawn_device(
        BacnetDeviceConfig {
            address: DeviceAddress::Static(sim.addr()),
            ..fast(&sim)
        },
        vec![bad, good],
        tx,
    );
    assert_eq!(handle.point_names().collect::<Vec<_>>(), ["setpoint"]);
    let update = timeout(Duration::from_secs(3), updates.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (update.point.as_str(), update.value),
        ("setpoint", Some(Value::Number(21.0)))
    );
    assert_eq!(
        handle.read("bad").await,
        Err(DriverError::UnknownPoint("bad".into()))
    );
    handle.shutdown();
    net.stop().await;
    sim.stop().await.unwrap();
}

#[tokio::test]
async fn directed_discovery_and_object_listing() {
    let sim = BacnetSim::start(BacnetSimConfig::loopback(INSTANCE))
        .await
        .unwrap();
    let net = network().await;
    let found = net
        .discover(Some(sim.addr()), None, Duration::from_millis(500))
        .await
        .expect("Who-Is sent");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].instance, INSTANCE);
    assert_eq!(found[0].address, Some(sim.addr()));
    assert_eq!(found[0].vendor_id, 999);

    let objects = net
        .list_objects(INSTANCE, Duration::from_millis(500))
        .await
        .expect("object list");
    let by_name: HashMap<_, _> = objects
        .iter()
        .filter_map(|o| o.name.clone().map(|n| (n, o)))
        .collect();
    let temperature = by_name.get("temperature").expect("temperature listed");
    assert_eq!(temperature.object, object(sim::TEMPERATURE));
    assert_eq!(temperature.kind, Some(ValueKind::Real));
    assert_eq!(temperature.present_value, Some(Value::Number(21.5)));
    assert_eq!(temperature.units.as_deref(), Some("degrees-celsius"));
    let light = by_name.get("light").expect("light listed");
    assert_eq!(light.present_value, Some(Value::Bool(false)));
    assert_eq!(light.units, None, "binary objects have no units");
    assert!(
        objects
            .iter()
            .any(|o| o.object.object_type == ObjectType::DEVICE && o.object.instance == INSTANCE),
        "{objects:?}"
    );
    net.stop().await;
    sim.stop().await.unwrap();
}

/// Broadcast Who-Is on one host: every node has port 47808 on its own loopback address and
/// broadcasts go to 127.255.255.255 (rusty-bacnet's share_port_by_address).
#[tokio::test]
async fn broadcast_who_is_finds_every_device_and_locates_by_instance() {
    let broadcast = Ipv4Addr::new(127, 255, 255, 255);
    let on = |last: u8, instance: u32| BacnetSimConfig {
        interface: Ipv4Addr::new(127, 0, 46, last),
        port: 47808,
        broadcast,
        share_port_by_address: true,
        instance,
    };
    let first = BacnetSim::start(on(2, 4601))
        .await
        .expect("127.0.46.2:47808");
    let second = BacnetSim::start(on(3, 4602))
        .await
        .expect("127.0.46.3:47808");
    let net = BacnetNetwork::start(BacnetNetworkConfig {
        port: 47808,
        broadcast,
        share_port_by_address: true,
        apdu_timeout: Duration::from_millis(150),
        apdu_retries: 1,
        ..BacnetNetworkConfig::new(Ipv4Addr::new(127, 0, 46, 1))
    })
    .await
    .expect("network on 127.0.46.1:47808");
    let found = net
        .discover(None, None, Duration::from_millis(500))
        .await
        .expect("Who-Is broadcast");
    let addresses: HashMap<u32, _> = found.iter().map(|d| (d.instance, d.address)).collect();
    assert_eq!(addresses.get(&4601), Some(&Some(first.addr())), "{found:?}");
    assert_eq!(
        addresses.get(&4602),
        Some(&Some(second.addr())),
        "{found:?}"
    );
    // A range limits who answers (Clause 16.10.1.1).
    let only = net
        .discover(None, Some((4602, 4602)), Duration::from_millis(300))
        .await
        .expect("Who-Is broadcast");
    assert!(
        only.iter().all(|d| d.instance == 4602) && !only.is_empty(),
        "{only:?}"
    );

    // A device found by a global Who-Is for its instance.
    let (tx, mut updates) = mpsc::channel(64);
    let handle = net.spawn_device(
        BacnetDeviceConfig {
            address: DeviceAddress::Discover,
            ..fast(&second)
        }
        .with_instance(4602),
        vec![BacnetPoint::present_value(
            "temperature",
            object(sim::TEMPERATURE),
            Access::Read,
        )],
        tx,
    );
    let update = timeout(Duration::from_secs(3), updates.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(update.value, Some(Value::Number(21.5)));
    second.set_temperature(20.0).await.unwrap();
    let update = timeout(Duration::from_secs(3), updates.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(update.value, Some(Value::Number(20.0)));
    handle.shutdown();
    net.stop().await;
    first.stop().await.unwrap();
    second.stop().await.unwrap();
}

trait WithInstance {
    fn with_instance(self, instance: u32) -> Self;
}

impl WithInstance for BacnetDeviceConfig {
    fn with_instance(mut self, instance: u32) -> Self {
        self.instance = instance;
        self
    }
}
