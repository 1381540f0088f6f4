//! Interop tests of the BACnet/IP driver against an independent implementation: a bacpypes3 device (tests/peers/bacnet_room.py) on its own 127.0.0.x address.

mod support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;
use support::peers_python;

use drivers::bacnet::{
    BacnetDeviceConfig, BacnetNetwork, BacnetNetworkConfig, BacnetPoint, DeviceAddress, ObjectRef,
    ObjectType, PropertyIdentifier, ValueKind,
};
use drivers::device::{DeviceHandle, LinkState, PointUpdate};
use drivers::point::{Access, Value};
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};

/// A running bacpypes3 device; killed when dropped.
struct Peer {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::UnboundedReceiver<String>,
}

impl Peer {
    async fn start(instance: u32, address: Ipv4Addr) -> Peer {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers/bacnet_room.py");
        let mut child = Command::new(peers_python())
            .arg(&script)
            .args(["--name", &format!("peer-{instance}")])
            .args(["--instance", &instance.to_string()])
            .args(["--address", &format!("{address}/8:47808")])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("bacpypes3 peer starts");
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut peer = Peer {
            child,
            stdin,
            lines,
        };
        assert_eq!(peer.line().await, "ready");
        peer
    }

    async fn line(&mut self) -> String {
        timeout(Duration::from_secs(20), self.lines.recv())
            .await
            .expect("bacpypes3 peer answers within 20 s")
            .expect("bacpypes3 peer still running")
    }

    async fn command(&mut self, command: &str) -> String {
        writeln!(self.stdin, "{command}").expect("peer stdin open");
        self.stdin.flush().expect("peer stdin flushes");
        self.line().await
    }

    /// Present value and priority array of one object, as the peer holds them.
    async fn show(&mut self, object: &str) -> String {
        self.command(&format!("show {object}")).await
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn point(name: &str, object_type: ObjectType, access: Access) -> BacnetPoint {
    BacnetPoint::present_value(name, ObjectRef::new(object_type, 1), access)
}

async fn until(
    rx: &mut mpsc::Receiver<PointUpdate>,
    seen: &mut HashMap<String, Option<Value>>,
    point: &str,
    value: Option<Value>,
) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while seen.get(point) != Some(&value) {
        let update = timeout(deadline - Instant::now(), rx.recv())
            .await
            .unwrap_or_else(|_| panic!("{point} never became {value:?}; last values {seen:?}"))
            .expect("update channel open");
        seen.insert(update.point, update.value);
    }
}

#[tokio::test]
async fn reads_writes_relinquishes_and_gets_cov_from_bacpypes3() {
    let peer_addr = Ipv4Addr::new(127, 0, 47, 3);
    let mut peer = Peer::start(4001, peer_addr).await;
    let net = BacnetNetwork::start(BacnetNetworkConfig {
        port: 0,
        broadcast: Ipv4Addr::LOCALHOST,
        apdu_timeout: Duration::from_millis(500),
        apdu_retries: 1,
        ..BacnetNetworkConfig::new(Ipv4Addr::LOCALHOST)
    })
    .await
    .expect("network on 127.0.0.1:0");
    let mut slot12 = point("setpoint-slot-12", ObjectType::ANALOG_VALUE, Access::Read);
    slot12.property = PropertyIdentifier::PRIORITY_ARRAY;
    slot12.array_index = Some(12);
    slot12.kind = ValueKind::Real;
    slot12.cov = false;
    let points = vec![
        point("light", ObjectType::BINARY_OUTPUT, Access::ReadWrite),
        point("setpoint", ObjectType::ANALOG_VALUE, Access::ReadWrite),
        point("temperature", ObjectType::ANALOG_INPUT, Access::Read),
        point("occupancy", ObjectType::BINARY_INPUT, Access::Read),
        point("mode", ObjectType::MULTI_STATE_VALUE, Access::ReadWrite),
        slot12,
    ];
    let (tx, mut rx) = mpsc::channel(64);
    let handle: DeviceHandle = net.spawn_device(
        BacnetDeviceConfig {
            address: DeviceAddress::Directed(SocketAddrV4::new(peer_addr, 47808)),
            // Only COV can deliver input changes within the test's waits.
            poll_interval: Duration::from_secs(60),
            locate_timeout: Duration::from_secs(2),
            ..BacnetDeviceConfig::new("peer", 4001)
        },
        points,
        tx,
    );
    let mut seen = HashMap::new();
    let rx = &mut rx;
    until(rx, &mut seen, "temperature", Some(Value::Number(21.5))).await;
    until(rx, &mut seen, "light", Some(Value::Bool(false))).await;
    until(rx, &mut seen, "setpoint", Some(Value::Number(21.0))).await;
    until(rx, &mut seen, "mode", Some(Value::Number(1.0))).await;
    until(rx, &mut seen, "occupancy", Some(Value::Bool(false))).await;
    // An empty slot of the priority array is NULL: no number.
    until(rx, &mut seen, "setpoint-slot-12", None).await;
    assert_eq!(handle.health().state, LinkState::Online);

    // WriteProperty with priority 12 fills slot 12 (index 11 of the peer's list).
    handle
        .write("setpoint", Value::Number(23.5))
        .await
        .expect("setpoint written");
    until(rx, &mut seen, "setpoint", Some(Value::Number(23.5))).await;
    let shown = peer.show("setpoint").await;
    assert!(shown.starts_with(r#"{"pv": 23.5, "pa": [null, null, null, null, null, null, null, null, null, null, null, 23.5, null"#), "{shown}");
    assert_eq!(
        handle.read("setpoint-slot-12").await,
        Ok(Value::Number(23.5))
    );

    handle
        .write("light", Value::Bool(true))
        .await
        .expect("light on");
    until(rx, &mut seen, "light", Some(Value::Bool(true))).await;
    let shown = peer.show("light").await;
    assert!(
        !shown.contains(
            r#""pa": [null, null, null, null, null, null, null, null, null, null, null, null"#
        ),
        "slot 12 set: {shown}"
    );

    // Relinquish: NULL at 12, the slot empties, the value falls back to Relinquish_Default.
    handle.relinquish("setpoint").await.expect("relinquished");
    until(rx, &mut seen, "setpoint", Some(Value::Number(21.0))).await;
    let shown = peer.show("setpoint").await;
    assert_eq!(
        shown,
        r#"{"pv": 21.0, "pa": [null, null, null, null, null, null, null, null, null, null, null, null, null, null, null, null]}"#
    );
    assert!(
        handle.read("setpoint-slot-12").await.is_err(),
        "slot 12 is NULL now"
    );
    handle
        .relinquish("light")
        .await
        .expect("light relinquished");
    until(rx, &mut seen, "light", Some(Value::Bool(false))).await;

    handle
        .write("mode", Value::Number(3.0))
        .await
        .expect("mode written");
    until(rx, &mut seen, "mode", Some(Value::Number(3.0))).await;

    // COV from bacpypes3: input changes arrive without polling.
    assert_eq!(peer.command("set temperature 24.5").await, "ok");
    until(rx, &mut seen, "temperature", Some(Value::Number(24.5))).await;
    assert_eq!(peer.command("set occupancy active").await, "ok");
    until(rx, &mut seen, "occupancy", Some(Value::Bool(true))).await;

    // bacpypes3 0.0.110 refuses COV on its multi-state value (it looks for a COV_Increment
    // such objects do not have): that object is polled instead, and the link stays up.
    let health = handle.health();
    assert_eq!(health.state, LinkState::Online, "{health:?}");
    assert_eq!(health.counters.timeouts, 0, "{health:?}");
    handle.shutdown();
    net.stop().await;
}

/// Broadcast discovery with bacpypes3 cannot run on one host: bacpypes3 takes every
/// 127.x.x.x address on its own port (47808 for broadcasts) for itself and never answers it.
/// So bacpypes3 is found with a directed Who-Is here; broadcast discovery runs against
/// simulators in bacnet_sim.rs.
#[tokio::test]
async fn directed_who_is_finds_bacpypes3_and_lists_its_objects() {
    let peer_addr = SocketAddrV4::new(Ipv4Addr::new(127, 0, 48, 3), 47808);
    let _peer = Peer::start(4002, *peer_addr.ip()).await;
    let net = BacnetNetwork::start(BacnetNetworkConfig {
        port: 0,
        broadcast: Ipv4Addr::LOCALHOST,
        apdu_timeout: Duration::from_millis(500),
        apdu_retries: 1,
        ..BacnetNetworkConfig::new(Ipv4Addr::LOCALHOST)
    })
    .await
    .expect("network on 127.0.0.1:0");
    let found = net
        .discover(Some(peer_addr), None, Duration::from_secs(1))
        .await
        .expect("Who-Is sent");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].instance, 4002);
    assert_eq!(found[0].address, Some(peer_addr));
    assert_eq!(found[0].vendor_id, 999);

    let objects = net
        .list_objects(4002, Duration::from_secs(1))
        .await
        .expect("bacpypes3 object list");
    let setpoint = objects
        .iter()
        .find(|o| o.name.as_deref() == Some("setpoint"))
        .unwrap_or_else(|| panic!("setpoint listed: {objects:?}"));
    assert_eq!(setpoint.object, ObjectRef::new(ObjectType::ANALOG_VALUE, 1));
    assert_eq!(setpoint.kind, Some(ValueKind::Real));
    assert_eq!(setpoint.present_value, Some(Value::Number(21.0)));
    assert!(
        objects
            .iter()
            .any(|o| o.name.as_deref() == Some("light")
                && o.present_value == Some(Value::Bool(false))),
        "{objects:?}"
    );
    assert!(
        objects
            .iter()
            .any(|o| o.object == ObjectRef::new(ObjectType::DEVICE, 4002)),
        "{objects:?}"
    );
    net.stop().await;
}
