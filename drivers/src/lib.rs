//! Field protocols behind one point interface (Modbus TCP today) and simulators of room devices; knows points and devices, never rooms.
//!
//! # Code map
//!
//! * [`device`]: the protocol-agnostic face of a device: [`device::DeviceHandle`] (write and
//!   read points by name), [`device::PointUpdate`]s, [`device::DeviceHealth`], [`device::DriverError`].
//!   Every protocol's spawn function returns this handle; the gateway sees nothing else.
//! * [`point`]: the point model. A point has a name, a protocol-typed [`point::ModbusAddress`],
//!   a [`point::DataType`], word order, scaling and access; [`point::ModbusPoint::validate`]
//!   refuses configurations no device can serve.
//! * [`modbus::codec`]: pure conversions between raw coils/registers and [`point::Value`], and
//!   the read planner that merges neighbouring points into block reads. No I/O.
//! * [`modbus::tcp`]: the Modbus TCP driver. One owner task per device connection; cloneable
//!   [`modbus::tcp::DeviceHandle`]s queue writes and reads to it by point name.
//! * [`modbus::rtu`]: Modbus RTU buses (RS-485 ports via tokio-serial, or serial servers over
//!   TCP). One owner task per bus serializes every unit on it; one [`DeviceHandle`] per unit.
//!   Its module docs list the site-file settings a bus and its units need.
//! * [`modbus::scan`]: which unit ids answer on an RS-485 bus (through its owner task) or at
//!   a Modbus TCP address, for the installer console.
//! * [`bacnet`]: BACnet/IP. One [`bacnet::BacnetNetwork`] per interface owns the UDP socket
//!   (port 47808 is shared by every BACnet device); one owner task per device behind a
//!   [`device::DeviceHandle`] (Who-Is/I-Am, COV subscriptions, RPM/RP polling, writes at a
//!   priority, relinquish); discovery for the installer console; [`bacnet::BacnetPoint`] and
//!   its validation; a room-controller simulator ([`bacnet::sim`]) with fault injection.
//! * [`serial`]: serial line devices (PIR sensors, card/QR/PIN readers on RS-232/RS-485):
//!   installer-defined profiles, pure streaming decoders, one owner task per port, simulators.
//! * [`sim`]: Modbus TCP simulators of light modules, curtain motors, HVAC controllers, PIR inputs,
//!   socket modules and status lights, with fault injection. Written without the codec.
//!
//! # Invariants
//!
//! * Only a device's owner task touches its socket, and it sends one request at a time (a real
//!   device serves one request at a time).
//! * Handle requests always go before polling; the queue is checked between every two requests.
//! * Every request is bounded by a timeout. A device exception fails one request; a timeout or
//!   transport error takes the link down, makes the device's points unavailable (`None`) and
//!   starts the backoff. Other devices are unaffected (they have their own tasks).
//! * Queues are bounded: a full handle queue fails fast instead of blocking the caller.
//! * The codec and the planner never do I/O and never read the clock.
//! * Nothing received from a device or a socket is `unwrap()`ed.

pub mod bacnet;
pub mod device;
pub mod modbus;
pub mod point;
pub mod serial;
pub mod sim;

pub use device::{
    Counters, CredentialKind, CredentialRead, DeviceHandle, DeviceHealth, DriverError, LinkState,
    PointUpdate,
};
pub use modbus::codec::{CodecError, Encoded, Raw, ReadBlock, decode, encode, plan_reads};
pub use modbus::rtu::{RtuBus, RtuBusConfig, RtuBusStats, RtuLink, RtuUnitConfig, spawn_rtu_bus};
pub use modbus::tcp::{TcpDeviceConfig, spawn_tcp_device};
pub use point::{
    Access, DataType, ModbusAddress, ModbusPoint, ModbusTable, PointError, Scaling, Value,
    WordOrder, validate_points,
};
pub use point::{ByteOrder, ValueLabels, parse_layout};
pub use serial::{
    SerialDeviceConfig, SerialDeviceSpec, SerialPortConfig, spawn_serial_device,
    spawn_serial_device_on,
};
pub use sim::{SimDevice, SimKind, SimRequest, SimWrite};
