//! Modbus: the pure point codec and read planner ([`codec`]), the Modbus TCP device driver ([`tcp`]), RS-485 buses ([`rtu`]) and unit scans for commissioning ([`scan`]).
//!
//! Function codes used: FC01 read coils, FC02 read discrete inputs, FC03 read holding registers,
//! FC04 read input registers, FC05 write single coil, FC06 write single register, FC16 write
//! multiple registers. Register-bit writes are a read-modify-write (FC03 then FC06).

pub mod codec;
pub mod rtu;
pub mod scan;
pub(crate) mod schedule;
pub mod tcp;
