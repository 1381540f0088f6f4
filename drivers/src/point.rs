//! The point model: a named value on a device, its protocol-typed Modbus address, and load-time validation.
//!
//! A *point* is the unit the rest of the system talks about ("light 1 relay", "room temperature").
//! Everything protocol-specific about it lives in [`ModbusAddress`], [`DataType`], [`WordOrder`] and
//! [`Scaling`]; [`ModbusPoint::validate`] refuses combinations a Modbus device cannot serve, with
//! messages an installer can act on. Points that fail validation are never polled or written.

use std::collections::HashSet;
use std::fmt;

use thiserror::Error;

/// How a point's raw Modbus data is interpreted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    /// One bit: a coil, a discrete input, or one bit of a register.
    Bool,
    /// One register, unsigned.
    U16,
    /// One register, two's complement.
    I16,
    /// Two registers, unsigned.
    U32,
    /// Two registers, two's complement.
    I32,
    /// Two registers, IEEE-754 single precision.
    F32,
}

impl DataType {
    /// Number of 16-bit registers the type occupies (a `Bool` occupies one coil, one discrete
    /// input, or one bit inside one register).
    #[must_use]
    pub fn register_count(self) -> u16 {
        match self {
            DataType::Bool | DataType::U16 | DataType::I16 => 1,
            DataType::U32 | DataType::I32 | DataType::F32 => 2,
        }
    }

    /// Short lower-case name, as an installer would write it.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            DataType::Bool => "bool",
            DataType::U16 => "u16",
            DataType::I16 => "i16",
            DataType::U32 => "u32",
            DataType::I32 => "i32",
            DataType::F32 => "f32",
        }
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Order of the two registers of a 32-bit value. Bytes inside a register are always big-endian
/// (Modbus Application Protocol V1.1b3, 4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum WordOrder {
    /// The register at the lower address holds the high word (the Modbus convention).
    #[default]
    HighFirst,
    /// The register at the lower address holds the low word ("word-swapped" devices).
    LowFirst,
}

/// What the rest of the system may do with a point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// Polled; writes are refused.
    Read,
    /// Written only; never polled (command registers).
    Write,
    /// Polled and writable.
    ReadWrite,
}

impl Access {
    /// Whether the point is polled and may be read.
    #[must_use]
    pub fn can_read(self) -> bool {
        matches!(self, Access::Read | Access::ReadWrite)
    }

    /// Whether the point may be written.
    #[must_use]
    pub fn can_write(self) -> bool {
        matches!(self, Access::Write | Access::ReadWrite)
    }
}

/// The four Modbus data tables (Modbus Application Protocol V1.1b3, 4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ModbusTable {
    /// Single bits, read with FC01, written with FC05/FC15.
    Coil,
    /// Single bits, read-only, read with FC02.
    DiscreteInput,
    /// 16-bit registers, read-only, read with FC04.
    InputRegister,
    /// 16-bit registers, read with FC03, written with FC06/FC16.
    HoldingRegister,
}

impl ModbusTable {
    /// Whether Modbus has a write function for this table (coils: FC05/FC15,
    /// holding registers: FC06/FC16).
    #[must_use]
    pub fn is_writable(self) -> bool {
        matches!(self, ModbusTable::Coil | ModbusTable::HoldingRegister)
    }

    /// Whether the table holds single bits rather than 16-bit registers.
    #[must_use]
    pub fn is_bit_table(self) -> bool {
        matches!(self, ModbusTable::Coil | ModbusTable::DiscreteInput)
    }

    /// The function code that reads this table: FC01, FC02, FC04 or FC03.
    #[must_use]
    pub fn read_function_code(self) -> u8 {
        match self {
            ModbusTable::Coil => 0x01,
            ModbusTable::DiscreteInput => 0x02,
            ModbusTable::HoldingRegister => 0x03,
            ModbusTable::InputRegister => 0x04,
        }
    }

    /// The largest quantity one read request may ask for: 2000 bits for FC01/FC02, 125 registers
    /// for FC03/FC04 (Modbus Application Protocol V1.1b3, 6.1-6.4).
    #[must_use]
    pub fn max_read_quantity(self) -> u16 {
        if self.is_bit_table() { 2000 } else { 125 }
    }

    /// Lower-case name as used in installer messages ("holding register").
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            ModbusTable::Coil => "coil",
            ModbusTable::DiscreteInput => "discrete input",
            ModbusTable::InputRegister => "input register",
            ModbusTable::HoldingRegister => "holding register",
        }
    }
}

impl fmt::Display for ModbusTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a point lives on a Modbus device. `address` is the 0-based protocol address (what goes
/// on the wire), not the 1-based "40001" notation of some data sheets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ModbusAddress {
    /// The data table.
    pub table: ModbusTable,
    /// 0-based protocol address of the first coil or register.
    pub address: u16,
    /// For a `Bool` kept inside a register: the bit number, 0 (least significant) to 15.
    pub bit: Option<u8>,
}

impl ModbusAddress {
    /// An address without a bit number.
    #[must_use]
    pub fn new(table: ModbusTable, address: u16) -> Self {
        ModbusAddress {
            table,
            address,
            bit: None,
        }
    }
}

/// Linear conversion between the raw number on the wire and engineering units:
/// `engineering = raw * scale + offset`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scaling {
    /// Multiplier applied to the raw value; finite and non-zero.
    pub scale: f64,
    /// Added after scaling; finite.
    pub offset: f64,
}

impl Scaling {
    /// No conversion: scale 1, offset 0.
    pub const IDENTITY: Scaling = Scaling {
        scale: 1.0,
        offset: 0.0,
    };

    /// Raw wire number to engineering units.
    #[must_use]
    pub fn to_engineering(self, raw: f64) -> f64 {
        raw * self.scale + self.offset
    }

    /// Engineering units to the raw wire number (before rounding to the data type).
    #[must_use]
    pub fn to_raw(self, engineering: f64) -> f64 {
        (engineering - self.offset) / self.scale
    }
}

impl Default for Scaling {
    fn default() -> Self {
        Scaling::IDENTITY
    }
}

/// A point's value in engineering units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    /// On/off, open/closed, occupied/free.
    Bool(bool),
    /// Any numeric value, already scaled.
    Number(f64),
}

impl Value {
    /// The value as a number: `true` is 1, `false` is 0.
    #[must_use]
    pub fn as_f64(&self) -> f64 {
        match *self {
            Value::Bool(b) => {
                if b {
                    1.0
                } else {
                    0.0
                }
            }
            Value::Number(n) => n,
        }
    }

    /// The value as a flag: any number other than 0 is `true`.
    #[must_use]
    pub fn as_bool(&self) -> bool {
        match *self {
            Value::Bool(b) => b,
            Value::Number(n) => n != 0.0,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Bool(b) => write!(f, "{b}"),
            Value::Number(n) => write!(f, "{n}"),
        }
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

impl From<f64> for Value {
    fn from(n: f64) -> Self {
        Value::Number(n)
    }
}

/// One point on a Modbus device.
#[derive(Debug, Clone, PartialEq)]
pub struct ModbusPoint {
    /// Unique within its device.
    pub name: String,
    /// Table, address and optional bit.
    pub address: ModbusAddress,
    /// How the raw data is interpreted.
    pub data_type: DataType,
    /// Register order of 32-bit types; ignored for 16-bit and bit types.
    pub word_order: WordOrder,
    /// Raw to engineering conversion; ignored for `Bool`.
    pub scaling: Scaling,
    /// Polled, written, or both.
    pub access: Access,
}

impl ModbusPoint {
    /// A point with default word order and scaling. Access is `ReadWrite` on writable tables
    /// (coils, holding registers) and `Read` on the read-only ones.
    #[must_use]
    pub fn new(
        name: impl Into<String>,
        table: ModbusTable,
        address: u16,
        data_type: DataType,
    ) -> Self {
        ModbusPoint {
            name: name.into(),
            address: ModbusAddress::new(table, address),
            data_type,
            word_order: WordOrder::default(),
            scaling: Scaling::default(),
            access: if table.is_writable() {
                Access::ReadWrite
            } else {
                Access::Read
            },
        }
    }

    /// Sets the bit number (for a `Bool` inside a register).
    #[must_use]
    pub fn with_bit(mut self, bit: u8) -> Self {
        self.address.bit = Some(bit);
        self
    }

    /// Sets the access.
    #[must_use]
    pub fn with_access(mut self, access: Access) -> Self {
        self.access = access;
        self
    }

    /// Sets the scaling.
    #[must_use]
    pub fn with_scaling(mut self, scale: f64, offset: f64) -> Self {
        self.scaling = Scaling { scale, offset };
        self
    }

    /// Sets the word order.
    #[must_use]
    pub fn with_word_order(mut self, word_order: WordOrder) -> Self {
        self.word_order = word_order;
        self
    }

    /// Number of coils, inputs or registers the point spans on the wire (1 or 2).
    #[must_use]
    pub fn span(&self) -> u16 {
        self.data_type.register_count()
    }

    /// Checks that a Modbus device can serve this point as configured.
    pub fn validate(&self) -> Result<(), PointError> {
        let point = || self.name.clone();
        let ModbusAddress {
            table,
            address,
            bit,
        } = self.address;
        if self.name.trim().is_empty() {
            return Err(PointError::EmptyName);
        }
        if table.is_bit_table() {
            if self.data_type != DataType::Bool {
                return Err(PointError::BitTableNeedsBool {
                    point: point(),
                    table,
                    data_type: self.data_type,
                });
            }
            if bit.is_some() {
                return Err(PointError::BitNotAllowed {
                    point: point(),
                    table,
                    data_type: self.data_type,
                });
            }
        } else if self.data_type == DataType::Bool {
            match bit {
                None => {
                    return Err(PointError::BitMissing {
                        point: point(),
                        table,
                    });
                }
                Some(b) if b > 15 => {
                    return Err(PointError::BitOutOfRange {
                        point: point(),
                        bit: b,
                    });
                }
                Some(_) => {}
            }
        } else if bit.is_some() {
            return Err(PointError::BitNotAllowed {
                point: point(),
                table,
                data_type: self.data_type,
            });
        }
        let last = u32::from(address) + u32::from(self.span()) - 1;
        if last > u32::from(u16::MAX) {
            return Err(PointError::AddressOverflow {
                point: point(),
                address,
                count: self.span(),
            });
        }
        if self.access.can_write() && !table.is_writable() {
            return Err(PointError::ReadOnlyTable {
                point: point(),
                table,
            });
        }
        if !self.scaling.scale.is_finite() || self.scaling.scale == 0.0 {
            return Err(PointError::BadScale {
                point: point(),
                scale: self.scaling.scale,
            });
        }
        if !self.scaling.offset.is_finite() {
            return Err(PointError::BadOffset {
                point: point(),
                offset: self.scaling.offset,
            });
        }
        Ok(())
    }
}

/// Validates every point of one device and checks that names are unique.
pub fn validate_points(points: &[ModbusPoint]) -> Result<(), PointError> {
    let mut seen = HashSet::new();
    for p in points {
        p.validate()?;
        if !seen.insert(p.name.as_str()) {
            return Err(PointError::DuplicateName {
                point: p.name.clone(),
            });
        }
    }
    Ok(())
}

/// Why a point's configuration cannot work on a Modbus device.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum PointError {
    /// The name is empty.
    #[error("a point needs a name")]
    EmptyName,
    /// Two points of one device share a name.
    #[error("point `{point}` is defined twice on the same device; point names must be unique")]
    DuplicateName {
        /// The repeated name.
        point: String,
    },
    /// A coil or discrete input carries a single bit.
    #[error(
        "point `{point}`: a {table} holds a single on/off bit, so the data type must be bool, not {data_type}"
    )]
    BitTableNeedsBool {
        /// Point name.
        point: String,
        /// Its table.
        table: ModbusTable,
        /// The configured type.
        data_type: DataType,
    },
    /// A bool in a register needs its bit number.
    #[error("point `{point}` is a bool inside a {table}: give the bit number (0 to 15)")]
    BitMissing {
        /// Point name.
        point: String,
        /// Its table.
        table: ModbusTable,
    },
    /// Bit numbers run from 0 to 15.
    #[error("point `{point}`: bit {bit} does not exist; a register has bits 0 to 15")]
    BitOutOfRange {
        /// Point name.
        point: String,
        /// The configured bit.
        bit: u8,
    },
    /// A bit number only makes sense for a bool in a register.
    #[error(
        "point `{point}`: a bit number is only allowed for a bool in a holding or input register, not for a {data_type} in the {table} table"
    )]
    BitNotAllowed {
        /// Point name.
        point: String,
        /// Its table.
        table: ModbusTable,
        /// The configured type.
        data_type: DataType,
    },
    /// The point runs past the last Modbus address.
    #[error(
        "point `{point}` starts at address {address} and needs {count} registers, which runs past the last Modbus address 65535"
    )]
    AddressOverflow {
        /// Point name.
        point: String,
        /// First address.
        address: u16,
        /// Registers needed.
        count: u16,
    },
    /// Discrete inputs and input registers cannot be written over Modbus.
    #[error("point `{point}` is a {table}, which Modbus cannot write; set its access to read")]
    ReadOnlyTable {
        /// Point name.
        point: String,
        /// Its table.
        table: ModbusTable,
    },
    /// Scale must be a finite non-zero number.
    #[error(
        "point `{point}`: scale {scale} is not usable; it must be a finite number other than 0"
    )]
    BadScale {
        /// Point name.
        point: String,
        /// The configured scale.
        scale: f64,
    },
    /// Offset must be finite.
    #[error("point `{point}`: offset {offset} is not usable; it must be a finite number")]
    BadOffset {
        /// Point name.
        point: String,
        /// The configured offset.
        offset: f64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holding(data_type: DataType) -> ModbusPoint {
        ModbusPoint::new("p", ModbusTable::HoldingRegister, 10, data_type)
    }

    #[test]
    fn register_counts() {
        assert_eq!(DataType::Bool.register_count(), 1);
        assert_eq!(DataType::U16.register_count(), 1);
        assert_eq!(DataType::I16.register_count(), 1);
        assert_eq!(DataType::U32.register_count(), 2);
        assert_eq!(DataType::I32.register_count(), 2);
        assert_eq!(DataType::F32.register_count(), 2);
    }

    #[test]
    fn defaults_and_access() {
        assert_eq!(WordOrder::default(), WordOrder::HighFirst);
        assert_eq!(
            Scaling::default(),
            Scaling {
                scale: 1.0,
                offset: 0.0
            }
        );
        assert!(Access::Read.can_read() && !Access::Read.can_write());
        assert!(!Access::Write.can_read() && Access::Write.can_write());
        assert!(Access::ReadWrite.can_read() && Access::ReadWrite.can_write());
        assert!(ModbusTable::Coil.is_writable());
        assert!(ModbusTable::HoldingRegister.is_writable());
        assert!(!ModbusTable::DiscreteInput.is_writable());
        assert!(!ModbusTable::InputRegister.is_writable());
        let p = ModbusPoint::new("t", ModbusTable::InputRegister, 0, DataType::F32);
        assert_eq!(p.access, Access::Read);
        assert_eq!(p.validate(), Ok(()));
    }

    #[test]
    fn value_conversions_and_display() {
        assert_eq!(Value::Bool(true).as_f64(), 1.0);
        assert_eq!(Value::Bool(false).as_f64(), 0.0);
        assert!(Value::Number(-0.5).as_bool());
        assert!(!Value::Number(0.0).as_bool());
        assert_eq!(Value::Number(21.5).to_string(), "21.5");
        assert_eq!(Value::Number(3.0).to_string(), "3");
        assert_eq!(Value::Bool(true).to_string(), "true");
    }

    #[test]
    fn valid_points_pass() {
        for dt in [
            DataType::U16,
            DataType::I16,
            DataType::U32,
            DataType::I32,
            DataType::F32,
        ] {
            assert_eq!(holding(dt).validate(), Ok(()), "{dt}");
        }
        assert_eq!(holding(DataType::Bool).with_bit(15).validate(), Ok(()));
        let coil = ModbusPoint::new("relay", ModbusTable::Coil, 65535, DataType::Bool);
        assert_eq!(coil.validate(), Ok(()));
        let last = ModbusPoint::new("x", ModbusTable::HoldingRegister, 65534, DataType::U32);
        assert_eq!(last.validate(), Ok(()));
    }

    #[test]
    fn bit_tables_need_bool() {
        let p = ModbusPoint::new("pir", ModbusTable::DiscreteInput, 0, DataType::U16);
        let err = p.validate().unwrap_err();
        assert!(matches!(err, PointError::BitTableNeedsBool { .. }));
        assert_eq!(
            err.to_string(),
            "point `pir`: a discrete input holds a single on/off bit, so the data type must be bool, not u16"
        );
        let p = ModbusPoint::new("c", ModbusTable::Coil, 0, DataType::Bool).with_bit(1);
        assert!(matches!(
            p.validate(),
            Err(PointError::BitNotAllowed { .. })
        ));
    }

    #[test]
    fn bool_in_register_needs_bit_0_to_15() {
        assert!(matches!(
            holding(DataType::Bool).validate(),
            Err(PointError::BitMissing { .. })
        ));
        assert_eq!(
            holding(DataType::Bool).with_bit(16).validate(),
            Err(PointError::BitOutOfRange {
                point: "p".into(),
                bit: 16
            })
        );
        assert!(matches!(
            holding(DataType::U16).with_bit(3).validate(),
            Err(PointError::BitNotAllowed { .. })
        ));
    }

    #[test]
    fn address_must_not_run_past_65535() {
        let p = ModbusPoint::new("x", ModbusTable::HoldingRegister, 65535, DataType::F32);
        let err = p.validate().unwrap_err();
        assert_eq!(
            err,
            PointError::AddressOverflow {
                point: "x".into(),
                address: 65535,
                count: 2
            }
        );
        assert!(
            err.to_string()
                .contains("runs past the last Modbus address 65535")
        );
    }

    #[test]
    fn writes_to_read_only_tables_are_refused() {
        for table in [ModbusTable::DiscreteInput, ModbusTable::InputRegister] {
            let dt = if table.is_bit_table() {
                DataType::Bool
            } else {
                DataType::U16
            };
            for access in [Access::Write, Access::ReadWrite] {
                let p = ModbusPoint::new("ro", table, 0, dt).with_access(access);
                assert_eq!(
                    p.validate(),
                    Err(PointError::ReadOnlyTable {
                        point: "ro".into(),
                        table
                    })
                );
            }
        }
    }

    #[test]
    fn scaling_must_be_finite_and_scale_non_zero() {
        for scale in [0.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert!(matches!(
                holding(DataType::U16).with_scaling(scale, 0.0).validate(),
                Err(PointError::BadScale { .. })
            ));
        }
        assert!(matches!(
            holding(DataType::U16)
                .with_scaling(0.1, f64::NAN)
                .validate(),
            Err(PointError::BadOffset { .. })
        ));
        assert_eq!(
            holding(DataType::I16).with_scaling(-0.5, -40.0).validate(),
            Ok(())
        );
    }

    #[test]
    fn names_must_be_present_and_unique() {
        let mut p = holding(DataType::U16);
        p.name = " ".into();
        assert_eq!(p.validate(), Err(PointError::EmptyName));
        let a = holding(DataType::U16);
        assert_eq!(
            validate_points(&[a.clone(), a]),
            Err(PointError::DuplicateName { point: "p".into() })
        );
    }
}
