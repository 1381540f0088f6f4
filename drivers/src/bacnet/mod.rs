//! BACnet/IP (ASHRAE 135 Annex J) devices behind the protocol-agnostic [`DeviceHandle`], discovery for the installer console, and a simulator of a room controller.
//!
//! # Shape: one network, many devices
//!
//! BACnet/IP devices talk to UDP port 47808 (0xBAC0) of one address per interface, and they
//! answer, and send COV notifications, to the address and port a request came from. A gateway
//! therefore has **one socket per interface** shared by every BACnet device it talks to: two
//! sockets on 47808 of one address cannot both receive broadcasts (I-Am) and a second socket on
//! another port would need a second registration with every BBMD and COV subscription. So:
//!
//! * [`BacnetNetwork`] (see `network.rs`) owns that socket through one rusty-bacnet
//!   `BACnetClient`, whose dispatch task is the only reader of the socket and whose transaction
//!   state machine (Clause 5.4) matches answers to requests by invoke id, runs the APDU timeout
//!   and retries, and acknowledges confirmed COV notifications. It also runs foreign-device
//!   registration with a BBMD (Annex J.5) when the devices sit on another IP subnet.
//! * [`BacnetNetwork::spawn_device`] starts one **owner task per device** (see `owner.rs`) that
//!   keeps the Modbus driver's invariants: one request at a time to its device, a bounded queue
//!   of handle requests served before any polling or COV bookkeeping, health on a watch,
//!   [`PointUpdate`]s on change only, `None` for every point while the device is offline, and
//!   exponential backoff. A dead device never slows its neighbours: they have their own tasks
//!   and the shared client keeps one transaction per request.
//!
//! # What a device's owner task does
//!
//! 1. **Find the device** by its instance (Clause 16.10, Who-Is/I-Am): a global Who-Is limited
//!    to its instance ([`DeviceAddress::Discover`]), a Who-Is sent to one address
//!    ([`DeviceAddress::Directed`], for devices behind NAT or without broadcast), or a static
//!    address with no Who-Is at all ([`DeviceAddress::Static`]). Routed devices (I-Am with an
//!    SNET/SADR, Clause 6.2.2) are reached through their router automatically.
//! 2. **Subscribe** to change of value (Clause 13.14, SubscribeCOV) for every object with a
//!    COV-enabled Present_Value point. Subscriptions are *confirmed* and have a finite lifetime
//!    ([`BacnetDeviceConfig::cov_lifetime`], default 300 s), renewed at half of it. Confirmed,
//!    because an unconfirmed notification lost on UDP leaves a light showing the wrong state
//!    until the next renewal, while a confirmed one is retried by the device (Clause 13.7); and
//!    a device whose notifications are never acknowledged (gateway gone) stops sending them.
//!    Finite, because a device keeps a subscription from a gateway that was replaced or
//!    renumbered forever otherwise (Clause 13.14.1: lifetime 0 means indefinite; we never use
//!    it). A renewal makes the device send a fresh notification (Clause 13.14.2, service procedure), so every
//!    covered value is re-confirmed at each renewal as well. Objects whose subscription the
//!    device refuses (Error, Reject or Abort) are polled instead, and that is remembered.
//! 3. **Poll** the other points every [`BacnetDeviceConfig::poll_interval`] with
//!    ReadPropertyMultiple (Clause 15.7) in batches of at most
//!    [`BacnetDeviceConfig::rpm_max_properties`] properties. A device that rejects RPM (Reject,
//!    or an Error of class `services`) is read point by point with ReadProperty (Clause 15.5)
//!    from then on; an Abort (answer too long for an unsegmented device, Clause 20.1.6) halves
//!    the batch size instead. A per-property error inside an RPM answer makes that one point
//!    unavailable.
//! 4. **Write** with WriteProperty (Clause 15.9) at the point's priority, and **relinquish** by
//!    writing NULL at that priority (Clause 19.2.1), after which the device falls back to the
//!    next lower-numbered active priority or the Relinquish_Default. A written point is read
//!    back at once.
//! 5. **Health**: every confirmed request counts in `requests`; every answer in `responses`;
//!    Error/Reject/Abort PDUs in `exceptions` (the link stays up, the request fails with
//!    [`DriverError::BacnetError`], [`DriverError::BacnetReject`] or
//!    [`DriverError::BacnetAbort`]); a request unanswered after the client's APDU timeout and
//!    retries in `timeouts`, and it takes the device offline: its points become `None`, handle
//!    requests fail fast with [`DriverError::Offline`], and it is looked for again after a
//!    backoff (`backoff_min` doubling to `backoff_max`).
//!
//! # Site file (suggested TOML for the gateway, which owns config files)
//!
//! ```toml
//! [bacnet]                        # one per gateway interface -> BacnetNetworkConfig
//! interface = "192.168.10.2"      # address to bind; "0.0.0.0" for all
//! port = 47808                    # UDP port (0xBAC0)
//! broadcast = "192.168.10.255"    # directed broadcast of that subnet
//! apdu_timeout_ms = 3000          # per attempt (the gateway's APDU_Timeout, Clause 12.11)
//! apdu_retries = 2                # Number_Of_APDU_Retries (Clause 12.11)
//! # foreign_bbmd = "10.1.0.5:47808"   # register as a foreign device (Annex J.5)
//! # foreign_ttl_s = 300
//!
//! [[bacnet.devices]]              # -> BacnetDeviceConfig
//! name = "room-301-controller"
//! instance = 301001               # device instance, 0..=4194302
//! # address = "192.168.10.41:47808"  # directed Who-Is to this address
//! # static = true                 # with address: no Who-Is, use the address as is
//! poll_interval_ms = 5000
//! locate_timeout_ms = 3000        # wait for I-Am
//! rpm_max_properties = 16         # 0 = always ReadProperty
//! cov_lifetime_s = 300            # 0 = never subscribe, poll everything
//! backoff_min_ms = 1000
//! backoff_max_ms = 60000
//!
//! [[bacnet.devices.points]]       # -> BacnetPoint
//! name = "light"
//! object = "binary-output:1"      # type:instance; types by name or number
//! property = "present-value"      # default
//! # array_index = 3               # one element of an array property
//! access = "read_write"           # read | write | read_write
//! # kind = "binary"               # real | unsigned | enumerated | boolean | binary;
//!                                 # default from the object type for present-value
//! priority = 12                   # 1..=16, not 6; default 12
//! cov = true                      # default true
//! ```
//!
//! `name`, `object` and `access` are required; [`BacnetPoint::present_value`] fills the
//! defaults and [`validate_bacnet_points`] gives installer-readable errors.
//!
//! # Discovery (installer console)
//!
//! [`BacnetNetwork::discover`] sends a Who-Is (broadcast or to one address) and returns the
//! devices whose I-Am arrived within the wait ([`FoundDevice`]: instance, address, vendor).
//! [`BacnetNetwork::list_objects`] reads a device's Object_List and each object's name,
//! Present_Value and units ([`ObjectSummary`]); [`BacnetNetwork::list_objects_at`] finds a
//! device not seen yet with a Who-Is to its address.
//!
//! # Simulator
//!
//! [`sim::BacnetSim`] is a BACnet/IP room controller served by rusty-bacnet's server, with
//! fault injection (silence, delay, services refused). It shares no code with the driver.

mod network;
mod owner;
pub mod point;
pub mod sim;

pub use bacnet_types::enums::{ObjectType, PropertyIdentifier};
pub use bacnet_types::primitives::PropertyValue;
pub use network::{
    BacnetDeviceConfig, BacnetNetwork, BacnetNetworkConfig, DeviceAddress, FoundDevice,
    NetworkError, ObjectSummary, units_name,
};
pub use point::{
    BacnetPoint, BacnetPointError, DEFAULT_PRIORITY, ObjectRef, ValueKind, parse_property,
    validate_bacnet_points,
};

#[allow(unused_imports)]
pub(crate) use crate::device::{DeviceHandle, DriverError, PointUpdate};

use bacnet_types::enums::{AbortReason, ErrorClass, ErrorCode, RejectReason};

/// Every application-tagged value of a property's encoding (Clause 20.2), up to the first that
/// does not decode: what the driver does with the value bytes of a ReadProperty-ACK, an RPM
/// result or a COV notification before [`ValueKind::to_value`]. Pure; fuzzed.
#[must_use]
pub fn decode_property_values(bytes: &[u8]) -> Vec<PropertyValue> {
    network::decode_all(bytes)
}

/// An error class and code as an installer reads them: `property / write-access-denied`.
#[must_use]
pub fn error_text(class: u16, code: u16) -> String {
    let class_name = ErrorClass::from_raw(class)
        .name()
        .map_or_else(|| format!("class {class}"), point::kebab);
    let code_name = ErrorCode::from_raw(code)
        .name()
        .map_or_else(|| format!("code {code}"), point::kebab);
    format!("{code_name} ({class_name})")
}

/// A reject reason by name (Clause 18.9): `unrecognized-service`.
#[must_use]
pub fn reject_text(reason: u8) -> String {
    RejectReason::from_raw(reason)
        .name()
        .map_or_else(|| format!("reason {reason}"), point::kebab)
}

/// An abort reason by name (Clause 18.10): `segmentation-not-supported`.
#[must_use]
pub fn abort_text(reason: u8) -> String {
    AbortReason::from_raw(reason)
        .name()
        .map_or_else(|| format!("reason {reason}"), point::kebab)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_errors_read_well() {
        let e = DriverError::BacnetError {
            service: "WriteProperty",
            class: 2,
            code: 40,
        };
        assert_eq!(
            e.to_string(),
            "the BACnet device refused WriteProperty: write-access-denied (property)"
        );
        let e = DriverError::BacnetReject {
            service: "ReadPropertyMultiple",
            reason: 9,
        };
        assert_eq!(
            e.to_string(),
            "the BACnet device rejected ReadPropertyMultiple: unrecognized-service"
        );
        assert_eq!(abort_text(4), "segmentation-not-supported");
        assert_eq!(reject_text(200), "reason 200");
    }
}
