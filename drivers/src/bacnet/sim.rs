//! A BACnet/IP room controller simulator served by rusty-bacnet's server, with fault injection on its link (silence, delay, refused services).
//!
//! The simulated device holds one room's objects (Clause 12 object types):
//!
//! | object              | name          | what                                                   |
//! |---------------------|---------------|--------------------------------------------------------|
//! | binary-output:1     | `light`       | commandable (priority array), relinquish default off   |
//! | analog-value:1      | `setpoint`    | °C, commandable, relinquish default 21.0               |
//! | analog-input:1      | `temperature` | °C, 21.5 at start, set by the test                     |
//! | binary-input:1      | `occupancy`   | inactive at start, set by the test                     |
//! | multi-state-value:1 | `mode`        | 3 states (1 off, 2 comfort, 3 eco), commandable        |
//!
//! The server answers Who-Is, ReadProperty, ReadPropertyMultiple, WriteProperty and
//! SubscribeCOV, and sends COV notifications, all by itself. Faults act on the link, in a
//! transport wrapped around the B/IP transport: a *silent* device drops everything it receives
//! and sends nothing; a *delayed* one holds each received frame for a while (latency, frames
//! are not queued behind each other); a *refused*
//! confirmed service has its service choice replaced by an unknown one before the server sees
//! it, so the server itself answers with a Reject (unrecognized-service, Clause 18.9), as a
//! device without that service does. Nothing here uses the driver's code.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bacnet_objects::analog::{AnalogInputObject, AnalogValueObject};
use bacnet_objects::binary::{BinaryInputObject, BinaryOutputObject};
use bacnet_objects::device_identity::{DeviceIdentity, build_database_with_extra};
use bacnet_objects::multistate::MultiStateValueObject;
use bacnet_objects::traits::BACnetObject;
use bacnet_server::server::BACnetServer;
use bacnet_transport::bip::BipTransport;
use bacnet_transport::port::{GroupDestinations, ReceivedNpdu, TransportPort};
use bacnet_types::enums::{EngineeringUnits, ObjectType, PropertyIdentifier};
use bacnet_types::error::Error as BacnetError;
use bacnet_types::primitives::{ObjectIdentifier, PropertyValue};
use thiserror::Error;
use tokio::sync::mpsc;

/// The simulator's light (binary-output:1).
pub const LIGHT: (ObjectType, u32) = (ObjectType::BINARY_OUTPUT, 1);
/// The simulator's setpoint (analog-value:1).
pub const SETPOINT: (ObjectType, u32) = (ObjectType::ANALOG_VALUE, 1);
/// The simulator's temperature (analog-input:1).
pub const TEMPERATURE: (ObjectType, u32) = (ObjectType::ANALOG_INPUT, 1);
/// The simulator's occupancy (binary-input:1).
pub const OCCUPANCY: (ObjectType, u32) = (ObjectType::BINARY_INPUT, 1);
/// The simulator's mode (multi-state-value:1).
pub const MODE: (ObjectType, u32) = (ObjectType::MULTI_STATE_VALUE, 1);

/// Confirmed service choices (Clause 21, BACnetConfirmedServiceChoice) the fault switches name.
pub mod service {
    /// SubscribeCOV.
    pub const SUBSCRIBE_COV: u8 = 5;
    /// ReadProperty.
    pub const READ_PROPERTY: u8 = 12;
    /// ReadPropertyMultiple.
    pub const READ_PROPERTY_MULTIPLE: u8 = 14;
    /// WriteProperty.
    pub const WRITE_PROPERTY: u8 = 15;
}

/// Settings of a simulated device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BacnetSimConfig {
    /// Address to bind.
    pub interface: Ipv4Addr,
    /// UDP port; 0 for an ephemeral one.
    pub port: u16,
    /// Directed broadcast address for its own broadcasts.
    pub broadcast: Ipv4Addr,
    /// Bind the interface address itself so that other nodes on other 127.0.0.x addresses
    /// can have the same port (broadcast tests on one host).
    pub share_port_by_address: bool,
    /// Device instance.
    pub instance: u32,
}

impl BacnetSimConfig {
    /// A device on `127.0.0.1`, ephemeral port, no port sharing.
    #[must_use]
    pub fn loopback(instance: u32) -> Self {
        BacnetSimConfig {
            interface: Ipv4Addr::LOCALHOST,
            port: 0,
            broadcast: Ipv4Addr::LOCALHOST,
            share_port_by_address: false,
            instance,
        }
    }
}

/// Why the simulator could not start or be changed.
#[derive(Debug, Error)]
pub enum BacnetSimError {
    /// The stack refused.
    #[error("BACnet simulator: {0}")]
    Stack(#[from] BacnetError),
    /// The bound address is not a B/IP address.
    #[error("BACnet simulator: no local address")]
    NoAddress,
}

/// Fault switches shared by the simulator handle and its transport.
#[derive(Debug, Default)]
struct Faults {
    silent: AtomicBool,
    delay_ms: AtomicU64,
    refused: Mutex<Vec<u8>>,
    /// Confirmed requests received, by service choice (counted before faults apply).
    seen: Mutex<HashMap<u8, u64>>,
}

/// The B/IP transport with the fault switches in its receive and send paths.
struct FaultyTransport {
    inner: BipTransport,
    faults: Arc<Faults>,
    pump: Option<tokio::task::JoinHandle<()>>,
}

/// Where the service choice octet of a confirmed request sits in an NPDU (Clause 6.2 header,
/// Clause 20.1.2 Confirmed-Request PDU), or `None` for anything else.
fn confirmed_service_offset(npdu: &[u8]) -> Option<usize> {
    let control = *npdu.get(1)?;
    if control & 0x80 != 0 {
        return None; // network layer message
    }
    let mut at = 2;
    let has_dnet = control & 0x20 != 0;
    if has_dnet {
        let dlen = usize::from(*npdu.get(at + 2)?);
        at += 3 + dlen;
    }
    if control & 0x08 != 0 {
        let slen = usize::from(*npdu.get(at + 2)?);
        at += 3 + slen;
    }
    if has_dnet {
        at += 1; // hop count
    }
    let pdu = *npdu.get(at)?;
    if pdu >> 4 != 0 {
        return None;
    }
    let segmented = pdu & 0x08 != 0;
    let offset = at + if segmented { 5 } else { 3 };
    npdu.get(offset).map(|_| offset)
}

impl TransportPort for FaultyTransport {
    fn bip_broadcast_endpoint(&self) -> Option<SocketAddrV4> {
        self.inner.bip_broadcast_endpoint()
    }

    async fn start(&mut self) -> Result<mpsc::Receiver<ReceivedNpdu>, BacnetError> {
        let mut from_link = self.inner.start().await?;
        let (to_server, receiver) = mpsc::channel(256);
        let faults = Arc::clone(&self.faults);
        self.pump = Some(tokio::spawn(async move {
            while let Some(mut frame) = from_link.recv().await {
                let offset = confirmed_service_offset(&frame.npdu);
                let choice = offset.and_then(|o| frame.npdu.get(o).copied());
                if let Some(choice) = choice {
                    *faults
                        .seen
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .entry(choice)
                        .or_default() += 1;
                }
                if faults.silent.load(Ordering::Relaxed) {
                    continue;
                }
                let refused = choice.is_some_and(|c| {
                    faults
                        .refused
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .contains(&c)
                });
                if let (true, Some(offset)) = (refused, offset) {
                    let mut npdu = frame.npdu.to_vec();
                    // 0x7F is no confirmed service: the server rejects it (unrecognized-service).
                    npdu[offset] = 0x7F;
                    frame.npdu = npdu.into();
                }
                let delay = faults.delay_ms.load(Ordering::Relaxed);
                if delay > 0 {
                    // Latency, not a bottleneck: every frame is held on its own.
                    let to_server = to_server.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(delay)).await;
                        let _ = to_server.send(frame).await;
                    });
                } else if to_server.send(frame).await.is_err() {
                    return;
                }
            }
        }));
        Ok(receiver)
    }

    async fn stop(&mut self) -> Result<(), BacnetError> {
        if let Some(pump) = self.pump.take() {
            pump.abort();
        }
        self.inner.stop().await
    }

    fn abort(&mut self) {
        if let Some(pump) = self.pump.take() {
            pump.abort();
        }
        self.inner.abort();
    }

    async fn send_unicast(&self, npdu: &[u8], mac: &[u8]) -> Result<(), BacnetError> {
        if self.faults.silent.load(Ordering::Relaxed) {
            return Ok(());
        }
        self.inner.send_unicast(npdu, mac).await
    }

    async fn send_broadcast(&self, npdu: &[u8]) -> Result<(), BacnetError> {
        if self.faults.silent.load(Ordering::Relaxed) {
            return Ok(());
        }
        self.inner.send_broadcast(npdu).await
    }

    fn local_mac(&self) -> &[u8] {
        self.inner.local_mac()
    }

    fn local_receive_apdu_capacity(&self) -> u16 {
        self.inner.local_receive_apdu_capacity()
    }

    fn egress_apdu_limit(&self) -> u16 {
        self.inner.egress_apdu_limit()
    }

    fn max_npdu(&self) -> bacnet_npdu::NpduLimits {
        self.inner.max_npdu()
    }

    fn is_broadcast_mac(&self, mac: &[u8]) -> bool {
        self.inner.is_broadcast_mac(mac)
    }

    fn is_group_destination(&self, mac: &[u8]) -> bool {
        self.inner.is_group_destination(mac)
    }

    fn group_destinations(&self) -> GroupDestinations {
        self.inner.group_destinations()
    }

    fn local_broadcast_destinations(&self) -> GroupDestinations {
        self.inner.local_broadcast_destinations()
    }
}

/// A running simulated room controller.
pub struct BacnetSim {
    server: BACnetServer<FaultyTransport>,
    faults: Arc<Faults>,
    addr: SocketAddrV4,
    instance: u32,
}

impl std::fmt::Debug for BacnetSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BacnetSim")
            .field("addr", &self.addr)
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

fn oid((object_type, instance): (ObjectType, u32)) -> Result<ObjectIdentifier, BacnetError> {
    ObjectIdentifier::new(object_type, instance)
}

impl BacnetSim {
    /// Starts the device (needs a Tokio runtime).
    pub async fn start(cfg: BacnetSimConfig) -> Result<BacnetSim, BacnetSimError> {
        let identity = DeviceIdentity::new(cfg.instance, 999)?;
        let mut light = BinaryOutputObject::new(LIGHT.1, "light")?;
        light.set_description("room light relay");
        let mut setpoint =
            AnalogValueObject::new(SETPOINT.1, "setpoint", EngineeringUnits::DEGREES_CELSIUS)?;
        setpoint.set_relinquish_default(21.0)?;
        let mut temperature = AnalogInputObject::new(
            TEMPERATURE.1,
            "temperature",
            EngineeringUnits::DEGREES_CELSIUS,
        )?;
        temperature.set_present_value(21.5);
        let occupancy = BinaryInputObject::new(OCCUPANCY.1, "occupancy")?;
        let mode = MultiStateValueObject::new(MODE.1, "mode", 3)?;
        let objects: Vec<Box<dyn BACnetObject>> = vec![
            Box::new(light),
            Box::new(setpoint),
            Box::new(temperature),
            Box::new(occupancy),
            Box::new(mode),
        ];
        let database = build_database_with_extra(&identity, objects)?;
        let mut link = BipTransport::new(cfg.interface, cfg.port, cfg.broadcast);
        link.set_share_port_by_address(cfg.share_port_by_address);
        let faults = Arc::new(Faults::default());
        let transport = FaultyTransport {
            inner: link,
            faults: Arc::clone(&faults),
            pump: None,
        };
        let server = BACnetServer::generic_builder()
            .device(identity)
            .database(database)
            .transport(transport)
            .build()
            .await?;
        let mac = server.local_mac();
        let addr = bacnet_transport::bvll::decode_bip_mac(mac)
            .map(|(ip, port)| SocketAddrV4::new(Ipv4Addr::from(ip), port))
            .map_err(|_| BacnetSimError::NoAddress)?;
        Ok(BacnetSim {
            server,
            faults,
            addr,
            instance: cfg.instance,
        })
    }

    /// The address and port it listens on.
    #[must_use]
    pub fn addr(&self) -> SocketAddrV4 {
        self.addr
    }

    /// Its device instance.
    #[must_use]
    pub fn instance(&self) -> u32 {
        self.instance
    }

    /// An object's Present_Value as the server holds it.
    pub async fn present_value(
        &self,
        object: (ObjectType, u32),
    ) -> Result<PropertyValue, BacnetSimError> {
        Ok(self
            .server
            .read_local(&oid(object)?, PropertyIdentifier::PRESENT_VALUE, None)
            .await?)
    }

    /// One slot (1..=16) of a commandable object's Priority_Array: `Null` when relinquished.
    pub async fn priority_slot(
        &self,
        object: (ObjectType, u32),
        priority: u8,
    ) -> Result<PropertyValue, BacnetSimError> {
        Ok(self
            .server
            .read_local(
                &oid(object)?,
                PropertyIdentifier::PRIORITY_ARRAY,
                Some(u32::from(priority)),
            )
            .await?)
    }

    /// Sets the temperature input (notifies COV subscribers).
    pub async fn set_temperature(&self, celsius: f32) -> Result<(), BacnetSimError> {
        Ok(self
            .server
            .set_present_value_local(&oid(TEMPERATURE)?, PropertyValue::Real(celsius))
            .await?)
    }

    /// Sets the occupancy input (notifies COV subscribers).
    pub async fn set_occupancy(&self, occupied: bool) -> Result<(), BacnetSimError> {
        Ok(self
            .server
            .set_present_value_local(
                &oid(OCCUPANCY)?,
                PropertyValue::Enumerated(u32::from(occupied)),
            )
            .await?)
    }

    /// A silent device drops every frame it receives and sends nothing.
    pub fn set_silent(&self, silent: bool) {
        self.faults.silent.store(silent, Ordering::Relaxed);
    }

    /// Holds every received frame for `delay` before the server sees it.
    pub fn set_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.faults.delay_ms.store(ms, Ordering::Relaxed);
    }

    /// Makes the device answer a confirmed service (see [`service`]) with a Reject
    /// (unrecognized-service), as a device without it does.
    pub fn refuse_service(&self, choice: u8, refuse: bool) {
        let mut refused = self
            .faults
            .refused
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        refused.retain(|&c| c != choice);
        if refuse {
            refused.push(choice);
        }
    }

    /// Confirmed requests of one service received so far (faults or not).
    #[must_use]
    pub fn requests_seen(&self, choice: u8) -> u64 {
        self.faults
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&choice)
            .copied()
            .unwrap_or(0)
    }

    /// Stops the server and closes its socket.
    pub async fn stop(mut self) -> Result<(), BacnetSimError> {
        Ok(self.server.stop().await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_service_choice() {
        // Local confirmed request: version, control 0x04, PDU 0x00, max 0x05, invoke 1, RP.
        assert_eq!(
            confirmed_service_offset(&[1, 0x04, 0x00, 0x05, 0x01, 0x0C]),
            Some(5)
        );
        // With DNET (net 5, len 1, addr 7) and hop count.
        assert_eq!(
            confirmed_service_offset(&[1, 0x24, 0, 5, 1, 7, 255, 0x00, 0x05, 0x01, 0x0E]),
            Some(10)
        );
        // Unconfirmed request (Who-Is) and network messages are not confirmed requests.
        assert_eq!(
            confirmed_service_offset(&[1, 0x20, 0xFF, 0xFF, 0, 0xFF, 0x10, 0x08]),
            None
        );
        assert_eq!(confirmed_service_offset(&[1, 0x80, 0x00]), None);
        assert_eq!(confirmed_service_offset(&[1]), None);
    }
}
