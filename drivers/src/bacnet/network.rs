//! The gateway's BACnet/IP network: one UDP socket per interface (one rusty-bacnet client), the devices' owner tasks spawned on it, and discovery (Who-Is/I-Am, object lists).

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bacnet_client::client::{BACnetClient, DeviceEventKind};
use bacnet_client::discovery::DiscoveredDevice;
use bacnet_encoding::primitives::decode_application_value;
use bacnet_services::who_is::DeviceInstanceRange;
use bacnet_transport::bip::{BipMode, BipTransport, ForeignDeviceConfig};
use bacnet_transport::bvll::{decode_bip_mac, encode_bip_mac};
use bacnet_types::constructed::{PropertyReference, ReadAccessSpecification};
use bacnet_types::enums::{EngineeringUnits, ObjectType, PropertyIdentifier};
use bacnet_types::error::Error as BacnetError;
use bacnet_types::primitives::{ObjectIdentifier, PropertyValue};
use thiserror::Error;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, timeout_at};

use super::owner::{self, Owner};
use super::point::{BacnetPoint, ObjectRef, ValueKind};
use crate::device::{DeviceHandle, DriverError, HealthSender, PointInfo, PointUpdate};
use crate::point::Value;

/// Settings of the gateway's BACnet/IP network on one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BacnetNetworkConfig {
    /// Address to bind (`0.0.0.0` for every interface).
    pub interface: Ipv4Addr,
    /// UDP port; 47808 (0xBAC0) on a real network, 0 for an ephemeral port in tests.
    pub port: u16,
    /// Directed broadcast address of the subnet, for Who-Is.
    pub broadcast: Ipv4Addr,
    /// Bind `interface` itself instead of `0.0.0.0`, so several BACnet nodes of one host can
    /// each have port 47808 on their own address (tests on 127.0.0.x). Needs an explicit
    /// interface and a nonzero port.
    pub share_port_by_address: bool,
    /// Register as a foreign device with this BBMD (Annex J.5), for devices on another IP
    /// subnet; broadcasts then go through the BBMD.
    pub foreign_bbmd: Option<SocketAddrV4>,
    /// Time-to-live of the foreign-device registration, renewed at half of it.
    pub foreign_ttl: Duration,
    /// Wait for one answer before the client retransmits (the Device object's APDU_Timeout,
    /// Clause 12.11).
    pub apdu_timeout: Duration,
    /// Retransmissions before a request times out (Number_Of_APDU_Retries,
    /// Clause 12.11).
    pub apdu_retries: u8,
}

impl BacnetNetworkConfig {
    /// Defaults: every interface, port 47808, limited broadcast, 3 s APDU timeout, 2 retries.
    #[must_use]
    pub fn new(interface: Ipv4Addr) -> Self {
        BacnetNetworkConfig {
            interface,
            port: 47808,
            broadcast: Ipv4Addr::BROADCAST,
            share_port_by_address: false,
            foreign_bbmd: None,
            foreign_ttl: Duration::from_secs(300),
            apdu_timeout: Duration::from_secs(3),
            apdu_retries: 2,
        }
    }

    /// The longest a confirmed request can take: every attempt's timeout, plus a margin.
    pub(crate) fn request_deadline(&self) -> Duration {
        self.apdu_timeout * (u32::from(self.apdu_retries) + 1) + Duration::from_millis(500)
    }
}

/// How a device is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceAddress {
    /// A global Who-Is for the device's instance (Clause 16.10); routed devices included.
    Discover,
    /// A Who-Is sent to this address only (devices that broadcasts do not reach).
    Directed(SocketAddrV4),
    /// This address, without Who-Is (devices that do not answer Who-Is).
    Static(SocketAddrV4),
}

/// Settings of one BACnet device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BacnetDeviceConfig {
    /// Device name, copied into every [`PointUpdate`].
    pub device: String,
    /// Device object instance (0..=4194302).
    pub instance: u32,
    /// How to find it.
    pub address: DeviceAddress,
    /// Time from the start of one poll cycle to the start of the next.
    pub poll_interval: Duration,
    /// Longest wait for the I-Am after a Who-Is.
    pub locate_timeout: Duration,
    /// First delay before looking for an offline device again (at least 1 ms).
    pub backoff_min: Duration,
    /// Longest such delay.
    pub backoff_max: Duration,
    /// Handle requests that may wait for the owner task (at least 1).
    pub queue_depth: usize,
    /// Properties per ReadPropertyMultiple; 0 reads every point with ReadProperty.
    pub rpm_max_properties: usize,
    /// Lifetime of COV subscriptions (renewed at half of it); `None` polls every point.
    pub cov_lifetime: Option<Duration>,
}

impl BacnetDeviceConfig {
    /// Defaults: found by Who-Is, poll every 5 s, 3 s for the I-Am, backoff 1 s to 60 s, queue
    /// of 32, 16 properties per RPM, COV subscriptions of 300 s.
    #[must_use]
    pub fn new(device: impl Into<String>, instance: u32) -> Self {
        BacnetDeviceConfig {
            device: device.into(),
            instance,
            address: DeviceAddress::Discover,
            poll_interval: Duration::from_secs(5),
            locate_timeout: Duration::from_secs(3),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            queue_depth: 32,
            rpm_max_properties: 16,
            cov_lifetime: Some(Duration::from_secs(300)),
        }
    }

    pub(crate) fn sanitized(mut self) -> Self {
        self.queue_depth = self.queue_depth.max(1);
        self.backoff_min = self.backoff_min.max(Duration::from_millis(1));
        self.backoff_max = self.backoff_max.max(self.backoff_min);
        self.cov_lifetime = self
            .cov_lifetime
            .filter(|l| !l.is_zero())
            .map(|l| l.max(Duration::from_secs(2)));
        self
    }
}

/// Why the network could not start.
#[derive(Debug, Error)]
pub enum NetworkError {
    /// The configuration is unusable (e.g. sharing the port without an interface).
    #[error("BACnet/IP network configuration: {0}")]
    Config(String),
    /// The socket could not be opened.
    #[error("cannot open the BACnet/IP socket on {addr}: {source}")]
    Bind {
        /// Address and port.
        addr: SocketAddrV4,
        /// What the stack said.
        source: BacnetError,
    },
}

/// A device that answered a Who-Is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundDevice {
    /// Device instance.
    pub instance: u32,
    /// The address its I-Am came from (its router's, for a routed device).
    pub address: Option<SocketAddrV4>,
    /// For a device behind a router: its network number (Clause 6.2.2 SNET).
    pub network: Option<u16>,
    /// Vendor identifier (ASHRAE's vendor list).
    pub vendor_id: u16,
    /// Largest APDU it accepts.
    pub max_apdu: u32,
}

/// One object of a device, as the installer console lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectSummary {
    /// The object.
    pub object: ObjectRef,
    /// Its Object_Name, if it could be read.
    pub name: Option<String>,
    /// The kind a point on its Present_Value would have, for standard object types.
    pub kind: Option<ValueKind>,
    /// Its Present_Value, for objects with a standard kind that could be read.
    pub present_value: Option<Value>,
    /// Its engineering Units (analog objects, Clause 12.2.8), as the standard's name in
    /// lower case ("degrees-celsius"), or the number of a proprietary unit; `None` when the
    /// object has none or it could not be read.
    pub units: Option<String>,
}

pub(crate) type Client = BACnetClient<BipTransport>;

/// State shared by the network handle and every device owner task.
pub(crate) struct NetShared {
    pub(crate) client: Client,
    pub(crate) cfg: BacnetNetworkConfig,
    next_process_id: AtomicU32,
    pub(crate) stop: watch::Sender<bool>,
}

impl std::fmt::Debug for NetShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetShared")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

/// The gateway's BACnet/IP endpoint on one interface. Cheap to clone; [`BacnetNetwork::stop`]
/// ends every device of it.
#[derive(Debug, Clone)]
pub struct BacnetNetwork {
    shared: Arc<NetShared>,
}

impl BacnetNetwork {
    /// Opens the socket and starts the client (and the foreign-device registration).
    pub async fn start(cfg: BacnetNetworkConfig) -> Result<BacnetNetwork, NetworkError> {
        let addr = SocketAddrV4::new(cfg.interface, cfg.port);
        let mode = match cfg.foreign_bbmd {
            None => BipMode::Normal,
            Some(bbmd) => {
                let ttl = u16::try_from(cfg.foreign_ttl.as_secs())
                    .unwrap_or(u16::MAX)
                    .max(2);
                BipMode::Foreign(ForeignDeviceConfig {
                    bbmd_ip: *bbmd.ip(),
                    bbmd_port: bbmd.port(),
                    ttl,
                    renewal_interval: None,
                })
            }
        };
        let timeout_ms = u64::try_from(cfg.apdu_timeout.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let client = BACnetClient::bip_builder()
            .interface(cfg.interface)
            .port(cfg.port)
            .broadcast_address(cfg.broadcast)
            .share_port_by_address(cfg.share_port_by_address)
            .mode(mode)
            .apdu_timeout_ms(timeout_ms)
            .apdu_retries(cfg.apdu_retries)
            // A burst of notifications (a whole floor switching scenes) must not lag receivers.
            .cov_channel_capacity(1024)
            .build()
            .await
            .map_err(|source| match source {
                BacnetError::Encoding(message) => NetworkError::Config(message),
                source => NetworkError::Bind { addr, source },
            })?;
        let (stop, _) = watch::channel(false);
        Ok(BacnetNetwork {
            shared: Arc::new(NetShared {
                client,
                cfg,
                next_process_id: AtomicU32::new(1),
                stop,
            }),
        })
    }

    /// The address and port the socket is bound to.
    #[must_use]
    pub fn local_addr(&self) -> Option<SocketAddrV4> {
        mac_to_addr(self.shared.client.local_mac())
    }

    /// Starts the owner task of one device on this network and returns its handle. Points that
    /// fail [`BacnetPoint::validate`] or repeat a name are logged and left out (they answer
    /// [`DriverError::UnknownPoint`]).
    pub fn spawn_device(
        &self,
        cfg: BacnetDeviceConfig,
        points: Vec<BacnetPoint>,
        updates: mpsc::Sender<PointUpdate>,
    ) -> DeviceHandle {
        let cfg = cfg.sanitized();
        let points: Arc<[BacnetPoint]> = points.into();
        let mut names = HashMap::new();
        let mut usable = vec![false; points.len()];
        for (index, point) in points.iter().enumerate() {
            if let Err(error) = point.validate() {
                tracing::warn!(device = %cfg.device, point = %point.name, %error, "point ignored");
                continue;
            }
            if names.insert(point.name.clone(), index).is_some() {
                tracing::warn!(device = %cfg.device, point = %point.name, "point name repeated; the later point is ignored");
                continue;
            }
            usable[index] = true;
        }
        let (commands_tx, commands_rx) = mpsc::channel(cfg.queue_depth);
        let (health_tx, health_rx) = HealthSender::channel(&cfg.device);
        let (stop_tx, mut stop_rx) = watch::channel(false);
        let mut net_stop = self.shared.stop.subscribe();
        let process_id = self.shared.next_process_id.fetch_add(1, Ordering::Relaxed);
        let device = cfg.device.clone();
        let infos = points
            .iter()
            .enumerate()
            .filter(|(i, _)| usable[*i])
            .map(|(index, p)| PointInfo {
                name: p.name.clone(),
                index,
                access: p.access,
            })
            .collect();
        let mut owner = Owner::new(owner::Setup {
            net: Arc::clone(&self.shared),
            cfg,
            points,
            usable,
            process_id,
            updates,
            health: health_tx,
            commands: commands_rx,
        });
        tokio::spawn(async move {
            tokio::select! {
                biased;
                _ = stop_rx.wait_for(|stop| *stop) => {}
                _ = net_stop.wait_for(|stop| *stop) => {}
                () = owner.run() => {}
            }
            owner.stopped().await;
        });
        DeviceHandle::new(device, infos, commands_tx, health_rx, stop_tx)
    }

    /// Sends a Who-Is (to `target`, or broadcast when `None`), optionally limited to the
    /// instances in `range`, and returns every device whose I-Am arrived within `wait`, by
    /// instance. With a wait of 400 ms or more the Who-Is goes out a second time at half the
    /// wait: it is unconfirmed on UDP and may be lost, and devices coalesce Who-Is requests
    /// from one address within a short window (rusty-bacnet's server: 200 ms), so one sent
    /// just after a device owner located its device would go unanswered.
    pub async fn discover(
        &self,
        target: Option<SocketAddrV4>,
        range: Option<(u32, u32)>,
        wait: Duration,
    ) -> Result<Vec<FoundDevice>, DriverError> {
        let client = &self.shared.client;
        let mut events = client.device_events();
        let range = match range {
            Some((low, high)) => Some(
                DeviceInstanceRange::new(low, high)
                    .map_err(|e| DriverError::Transport(format!("Who-Is range: {e}")))?,
            ),
            None => None,
        };
        let who_is = || async {
            let sent = match target {
                Some(addr) => client.who_is_directed(&addr_to_mac(addr), range).await,
                None => client.who_is(range).await,
            };
            sent.map_err(|e| DriverError::Transport(format!("Who-Is: {e}")))
        };
        who_is().await?;
        let started = Instant::now();
        let deadline = started + wait;
        let mut again = (wait >= Duration::from_millis(400)).then(|| started + wait / 2);
        let mut found = std::collections::BTreeMap::new();
        loop {
            let until = again.map_or(deadline, |at| at.min(deadline));
            match timeout_at(until, events.recv()).await {
                Err(_) if again.is_some() => {
                    again = None;
                    who_is().await?;
                }
                Err(_) | Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => break,
                Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => continue,
                Ok(Ok(event)) => {
                    if matches!(
                        event.kind,
                        DeviceEventKind::Discovered | DeviceEventKind::Updated
                    ) {
                        let device = found_device(&event.device);
                        found.insert(device.instance, device);
                    }
                }
            }
        }
        Ok(found.into_values().collect())
    }

    /// Reads a device's Object_List (Device object, Clause 12.11) and each object's name,
    /// Present_Value and (analog objects) Units.
    /// The device must have answered a Who-Is of this network before (see [`Self::discover`]);
    /// if not, a Who-Is for it is sent and answered within `wait`.
    pub async fn list_objects(
        &self,
        instance: u32,
        wait: Duration,
    ) -> Result<Vec<ObjectSummary>, DriverError> {
        self.list_objects_at(instance, None, wait).await
    }

    /// As [`Self::list_objects`]; a device not found yet is looked for with a Who-Is sent to
    /// `address` when given (devices that broadcasts do not reach), a global one otherwise.
    pub async fn list_objects_at(
        &self,
        instance: u32,
        address: Option<SocketAddrV4>,
        wait: Duration,
    ) -> Result<Vec<ObjectSummary>, DriverError> {
        let client = &self.shared.client;
        if client.get_device(instance).await.is_none() {
            self.discover(address, Some((instance, instance)), wait)
                .await?;
            if client.get_device(instance).await.is_none() {
                return Err(DriverError::Transport(format!(
                    "device {instance} did not answer Who-Is within {} ms",
                    wait.as_millis()
                )));
            }
        }
        let device = ObjectIdentifier::new(ObjectType::DEVICE, instance)
            .map_err(|e| DriverError::Transport(e.to_string()))?;
        let objects = self.read_object_list(instance, device).await?;
        let mut summaries = Vec::with_capacity(objects.len());
        for oid in objects {
            let object = ObjectRef::from_identifier(oid);
            let kind =
                ValueKind::default_for(object.object_type, PropertyIdentifier::PRESENT_VALUE);
            let mut properties = vec![PropertyIdentifier::OBJECT_NAME];
            if kind.is_some() {
                properties.push(PropertyIdentifier::PRESENT_VALUE);
            }
            let has_units = kind == Some(ValueKind::Real);
            if has_units {
                properties.push(PropertyIdentifier::UNITS);
            }
            let values = self.read_properties(instance, oid, &properties).await?;
            let name = match values.first() {
                Some(Some(PropertyValue::CharacterString(s))) => Some(s.clone()),
                _ => None,
            };
            let present_value = match (kind, values.get(1)) {
                (Some(kind), Some(Some(value))) => kind.to_value(value),
                _ => None,
            };
            let units = match values.get(2) {
                Some(Some(PropertyValue::Enumerated(raw))) if has_units => Some(units_name(*raw)),
                _ => None,
            };
            summaries.push(ObjectSummary {
                object,
                name,
                kind,
                present_value,
                units,
            });
        }
        Ok(summaries)
    }

    /// The whole Object_List in one read; element by element when the device cannot send it
    /// in one answer (Clause 15.5.1.1.3: array index 0 reads the length).
    async fn read_object_list(
        &self,
        instance: u32,
        device: ObjectIdentifier,
    ) -> Result<Vec<ObjectIdentifier>, DriverError> {
        let client = &self.shared.client;
        let deadline = self.shared.cfg.request_deadline();
        let whole = tokio::time::timeout(
            deadline,
            client.read_property_from_device(
                instance,
                device,
                PropertyIdentifier::OBJECT_LIST,
                None,
            ),
        )
        .await
        .map_err(|_| DriverError::Timeout)?;
        match whole {
            Ok(ack) => Ok(decode_all(&ack.property_value)
                .into_iter()
                .filter_map(|v| match v {
                    PropertyValue::ObjectIdentifier(oid) => Some(oid),
                    _ => None,
                })
                .collect()),
            Err(error) => {
                let error = owner::driver_error("ReadProperty", error);
                if error.is_link_failure() {
                    return Err(error);
                }
                tracing::debug!(instance, %error, "Object_List in one read refused; reading it element by element");
                let length = self
                    .read_element(instance, device, 0)
                    .await?
                    .and_then(|v| match v {
                        PropertyValue::Unsigned(n) => u32::try_from(n).ok(),
                        _ => None,
                    })
                    .ok_or(error)?;
                let mut objects = Vec::new();
                for index in 1..=length {
                    if let Some(PropertyValue::ObjectIdentifier(oid)) =
                        self.read_element(instance, device, index).await?
                    {
                        objects.push(oid);
                    }
                }
                Ok(objects)
            }
        }
    }

    async fn read_element(
        &self,
        instance: u32,
        device: ObjectIdentifier,
        index: u32,
    ) -> Result<Option<PropertyValue>, DriverError> {
        let answer = tokio::time::timeout(
            self.shared.cfg.request_deadline(),
            self.shared.client.read_property_from_device(
                instance,
                device,
                PropertyIdentifier::OBJECT_LIST,
                Some(index),
            ),
        )
        .await
        .map_err(|_| DriverError::Timeout)?
        .map_err(|e| owner::driver_error("ReadProperty", e))?;
        Ok(decode_all(&answer.property_value).into_iter().next())
    }

    /// Reads some properties of one object: one RPM, or one ReadProperty each when refused.
    /// A property the device cannot give is `None`.
    async fn read_properties(
        &self,
        instance: u32,
        oid: ObjectIdentifier,
        properties: &[PropertyIdentifier],
    ) -> Result<Vec<Option<PropertyValue>>, DriverError> {
        let client = &self.shared.client;
        let deadline = self.shared.cfg.request_deadline();
        let spec = ReadAccessSpecification {
            object_identifier: oid,
            list_of_property_references: properties
                .iter()
                .map(|&property_identifier| PropertyReference {
                    property_identifier,
                    property_array_index: None,
                })
                .collect(),
        };
        let rpm = tokio::time::timeout(
            deadline,
            client.read_property_multiple_from_device(instance, vec![spec]),
        )
        .await
        .map_err(|_| DriverError::Timeout)?;
        match rpm {
            Ok(ack) => Ok(properties
                .iter()
                .map(|&property| {
                    ack.list_of_read_access_results
                        .iter()
                        .filter(|r| r.object_identifier == oid)
                        .flat_map(|r| r.list_of_results.iter())
                        .find(|e| {
                            e.property_identifier == property && e.property_array_index.is_none()
                        })
                        .and_then(|e| e.property_value.as_deref())
                        .and_then(|bytes| decode_all(bytes).into_iter().next())
                })
                .collect()),
            Err(error) => {
                let error = owner::driver_error("ReadPropertyMultiple", error);
                if error.is_link_failure() {
                    return Err(error);
                }
                let mut values = Vec::new();
                for &property in properties {
                    let answer = tokio::time::timeout(
                        deadline,
                        client.read_property_from_device(instance, oid, property, None),
                    )
                    .await
                    .map_err(|_| DriverError::Timeout)?;
                    values.push(match answer {
                        Ok(ack) => decode_all(&ack.property_value).into_iter().next(),
                        Err(e) => {
                            let e = owner::driver_error("ReadProperty", e);
                            if e.is_link_failure() {
                                return Err(e);
                            }
                            None
                        }
                    });
                }
                Ok(values)
            }
        }
    }

    /// Ends every device task of this network, then closes the socket.
    pub async fn stop(self) {
        self.shared.stop.send_replace(true);
        let mut shared = self.shared;
        // Device tasks hold the client until they have cancelled their subscriptions.
        let deadline = Instant::now() + shared.cfg.request_deadline() + Duration::from_secs(1);
        loop {
            match Arc::try_unwrap(shared) {
                Ok(mut inner) => {
                    if let Err(error) = inner.client.stop().await {
                        tracing::debug!(%error, "BACnet client stopped with an error");
                    }
                    return;
                }
                Err(still_shared) => {
                    if Instant::now() >= deadline {
                        tracing::debug!("BACnet network dropped while other handles still use it");
                        return;
                    }
                    shared = still_shared;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }
}

/// Every application-tagged value in `bytes`, until the first that does not decode.
pub(crate) fn decode_all(bytes: &[u8]) -> Vec<PropertyValue> {
    let mut values = Vec::new();
    let mut offset = 0;
    while offset < bytes.len() {
        match decode_application_value(bytes, offset) {
            Ok((value, next)) if next > offset => {
                values.push(value);
                offset = next;
            }
            _ => break,
        }
    }
    values
}

/// An engineering unit's name (Clause 21, BACnetEngineeringUnits) in lower case
/// ("degrees-celsius"), or its number for a proprietary one.
#[must_use]
pub fn units_name(raw: u32) -> String {
    EngineeringUnits::from_raw(raw)
        .name()
        .map_or_else(|| raw.to_string(), super::point::kebab)
}

fn found_device(device: &DiscoveredDevice) -> FoundDevice {
    FoundDevice {
        instance: device.object_identifier.instance_number(),
        address: mac_to_addr(&device.mac_address),
        network: device.source_network,
        vendor_id: device.vendor_id,
        max_apdu: device.max_apdu_length,
    }
}

/// A B/IP MAC is the IPv4 address and UDP port, 6 octets (Annex J.1.2).
pub(crate) fn addr_to_mac(addr: SocketAddrV4) -> [u8; 6] {
    encode_bip_mac(addr.ip().octets(), addr.port())
}

pub(crate) fn mac_to_addr(mac: &[u8]) -> Option<SocketAddrV4> {
    decode_bip_mac(mac)
        .ok()
        .map(|(ip, port)| SocketAddrV4::new(Ipv4Addr::from(ip), port))
}
