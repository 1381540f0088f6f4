//! The point model: a named value on a device, its protocol-typed Modbus address, and load-time validation.
//!
//! A *point* is the unit the rest of the system talks about ("light 1 relay", "room temperature").
//! Everything protocol-specific about it lives in [`ModbusAddress`], [`DataType`], [`WordOrder`],
//! [`ByteOrder`] and [`Scaling`]; what it means to people lives in its optional unit and
//! [`ValueLabels`] (0 "off", 1 "heat", ...). A point may also be polled at its own
//! [`ModbusPoint::poll_interval`]. [`ModbusPoint::validate`] refuses combinations a Modbus device
//! cannot serve, with messages an installer can act on. Points that fail validation are never
//! polled or written.
//!
//! # Register layouts of 32- and 64-bit values
//!
//! Modbus only says that the bytes of one register are big-endian (Modbus Application Protocol
//! V1.1b3, 4.2); devices disagree on everything beyond. Naming the bytes of a 32-bit value `A`
//! (most significant) to `D`, the four layouts seen in the field are:
//!
//! | layout | [`WordOrder`] | [`ByteOrder`] | registers on the wire |
//! |---|---|---|---|
//! | `ABCD` | `HighFirst` | `Normal` | `AB` `CD` (the Modbus convention) |
//! | `CDAB` | `LowFirst` | `Normal` | `CD` `AB` ("word swapped") |
//! | `BADC` | `HighFirst` | `Swapped` | `BA` `DC` ("byte swapped") |
//! | `DCBA` | `LowFirst` | `Swapped` | `DC` `BA` (little-endian) |
//!
//! 64-bit values extend the same way: `LowFirst` reverses the order of all four registers
//! (`GH EF CD AB`), `Swapped` swaps the two bytes inside each register. [`parse_layout`] reads
//! these names as an installer writes them. The byte order also applies to 16-bit values; a
//! `Bool` inside a register numbers its bits on the register as transmitted, whatever the byte
//! order.
//!
//! # Site configuration (suggested TOML, for Modbus TCP and RTU points alike)
//!
//! ```toml
//! # existing: id, table, address, type, bit, word_order, scale, offset, access, unit
//! { id = "energy", table = "input", address = 10, type = "u64",  # new types: u64, i64, f64
//!   layout = "CDAB",            # ABCD | CDAB | BADC | DCBA (or 64-bit names), see parse_layout;
//!                               # replaces word_order, which stays accepted
//!   unit = "Wh",                # ModbusPoint::unit
//!   poll_interval_ms = 60000 }  # ModbusPoint::poll_interval; omit to poll with the device
//! { id = "mode", table = "holding", address = 0, type = "u16",
//!   labels = { 0 = "off", 1 = "heat", 2 = "cool", 3 = "auto", 4 = "fan" } }  # ValueLabels
//! ```

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

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
    /// Four registers, unsigned. Values above 2^53 lose precision in [`Value::Number`].
    U64,
    /// Four registers, two's complement. Values beyond ±2^53 lose precision in
    /// [`Value::Number`].
    I64,
    /// Four registers, IEEE-754 double precision.
    F64,
}

impl DataType {
    /// Number of 16-bit registers the type occupies (a `Bool` occupies one coil, one discrete
    /// input, or one bit inside one register).
    #[must_use]
    pub fn register_count(self) -> u16 {
        match self {
            DataType::Bool | DataType::U16 | DataType::I16 => 1,
            DataType::U32 | DataType::I32 | DataType::F32 => 2,
            DataType::U64 | DataType::I64 | DataType::F64 => 4,
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
            DataType::U64 => "u64",
            DataType::I64 => "i64",
            DataType::F64 => "f64",
        }
    }

    /// Whether the type is a floating-point number.
    #[must_use]
    pub fn is_float(self) -> bool {
        matches!(self, DataType::F32 | DataType::F64)
    }

    /// The raw integer range of an integer type as `(min, max)`, both exactly representable;
    /// `None` for `Bool` and the floating-point types.
    #[must_use]
    pub fn integer_range(self) -> Option<(f64, f64)> {
        // 2^64 and 2^63 are exact in f64; u64::MAX and i64::MAX are not (they round up to the
        // next power of two), so the upper bounds of the 64-bit types are the largest f64 below.
        const TWO_POW_64: f64 = 18_446_744_073_709_551_616.0;
        const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;
        match self {
            DataType::U16 => Some((0.0, f64::from(u16::MAX))),
            DataType::I16 => Some((f64::from(i16::MIN), f64::from(i16::MAX))),
            DataType::U32 => Some((0.0, f64::from(u32::MAX))),
            DataType::I32 => Some((f64::from(i32::MIN), f64::from(i32::MAX))),
            DataType::U64 => Some((0.0, TWO_POW_64 - 2048.0)),
            DataType::I64 => Some((-TWO_POW_63, TWO_POW_63 - 1024.0)),
            DataType::Bool | DataType::F32 | DataType::F64 => None,
        }
    }
}

impl std::str::FromStr for DataType {
    type Err = PointError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            DataType::Bool,
            DataType::U16,
            DataType::I16,
            DataType::U32,
            DataType::I32,
            DataType::F32,
            DataType::U64,
            DataType::I64,
            DataType::F64,
        ]
        .into_iter()
        .find(|t| t.name() == s)
        .ok_or_else(|| PointError::UnknownDataType(s.to_owned()))
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Order of the registers of a 32- or 64-bit value (see the module docs for the layouts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum WordOrder {
    /// The register at the lower address holds the high word (the Modbus convention).
    #[default]
    HighFirst,
    /// The register at the lower address holds the low word ("word-swapped" devices); for
    /// 64-bit values the order of all four registers is reversed.
    LowFirst,
}

/// Order of the two bytes inside each register. Modbus sends the high byte first (Modbus
/// Application Protocol V1.1b3, 4.2); some devices put their values in the other way round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ByteOrder {
    /// High byte first, as Modbus specifies.
    #[default]
    Normal,
    /// Low byte first inside every register ("byte swapped", layouts `BADC` and `DCBA`).
    Swapped,
}

/// Reads a register layout as an installer writes it: `ABCD`, `CDAB`, `BADC`, `DCBA` (32-bit
/// names, which also fit 16- and 64-bit points) or the 64-bit names `ABCDEFGH`, `GHEFCDAB`,
/// `BADCFEHG`, `HGFEDCBA`. Case does not matter.
pub fn parse_layout(layout: &str) -> Result<(WordOrder, ByteOrder), PointError> {
    match layout.trim().to_ascii_uppercase().as_str() {
        "ABCD" | "AB" | "ABCDEFGH" => Ok((WordOrder::HighFirst, ByteOrder::Normal)),
        "CDAB" | "GHEFCDAB" => Ok((WordOrder::LowFirst, ByteOrder::Normal)),
        "BADC" | "BA" | "BADCFEHG" => Ok((WordOrder::HighFirst, ByteOrder::Swapped)),
        "DCBA" | "HGFEDCBA" => Ok((WordOrder::LowFirst, ByteOrder::Swapped)),
        _ => Err(PointError::UnknownLayout(layout.to_owned())),
    }
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

/// An enumeration: the labels of a point's coded values, e.g. HVAC mode 0 "off", 1 "heat",
/// 2 "cool". Values are engineering values (after scaling) and must be whole numbers; for a
/// `Bool` point `false` is 0 and `true` is 1. Kept in configuration order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ValueLabels {
    entries: Vec<(i64, String)>,
}

impl ValueLabels {
    /// Labels from `(value, label)` pairs; [`ModbusPoint::validate`] checks them.
    pub fn new<S: Into<String>>(entries: impl IntoIterator<Item = (i64, S)>) -> Self {
        ValueLabels {
            entries: entries.into_iter().map(|(v, l)| (v, l.into())).collect(),
        }
    }

    /// Whether there are no labels.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The `(value, label)` pairs in configuration order.
    pub fn iter(&self) -> impl Iterator<Item = (i64, &str)> {
        self.entries.iter().map(|(v, l)| (*v, l.as_str()))
    }

    /// The label of a value, if it has one. Numbers within 1e-6 of a whole number count as that
    /// number (scaling may leave a rounding error).
    #[must_use]
    pub fn label(&self, value: Value) -> Option<&str> {
        let n = value.as_f64();
        let whole = n.round();
        if !n.is_finite() || (n - whole).abs() > 1e-6 {
            return None;
        }
        self.entries
            .iter()
            .find(|(v, _)| *v as f64 == whole)
            .map(|(_, l)| l.as_str())
    }

    /// The value of a label (exact match first, then ignoring ASCII case).
    #[must_use]
    pub fn value_of(&self, label: &str) -> Option<i64> {
        self.entries
            .iter()
            .find(|(_, l)| l == label)
            .or_else(|| {
                self.entries
                    .iter()
                    .find(|(_, l)| l.eq_ignore_ascii_case(label))
            })
            .map(|(v, _)| *v)
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
    /// Register order of 32- and 64-bit types; ignored for 16-bit and bit types.
    pub word_order: WordOrder,
    /// Byte order inside each register of a number; ignored for `Bool`.
    pub byte_order: ByteOrder,
    /// Raw to engineering conversion; ignored for `Bool`.
    pub scaling: Scaling,
    /// Polled, written, or both.
    pub access: Access,
    /// Engineering unit shown to people ("°C", "%", "ppm"); `None` for none.
    pub unit: Option<String>,
    /// Labels of coded values (an enumeration); empty for a plain number or bool.
    pub labels: ValueLabels,
    /// How often the point is polled; `None` polls it at its device's interval. Points of
    /// different intervals never share a block read.
    pub poll_interval: Option<Duration>,
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
            byte_order: ByteOrder::default(),
            scaling: Scaling::default(),
            access: if table.is_writable() {
                Access::ReadWrite
            } else {
                Access::Read
            },
            unit: None,
            labels: ValueLabels::default(),
            poll_interval: None,
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

    /// Sets the byte order inside each register.
    #[must_use]
    pub fn with_byte_order(mut self, byte_order: ByteOrder) -> Self {
        self.byte_order = byte_order;
        self
    }

    /// Sets word and byte order from a layout name (`ABCD`, `CDAB`, `BADC`, `DCBA`, see
    /// [`parse_layout`]).
    pub fn with_layout(mut self, layout: &str) -> Result<Self, PointError> {
        let (word_order, byte_order) = parse_layout(layout)?;
        self.word_order = word_order;
        self.byte_order = byte_order;
        Ok(self)
    }

    /// Sets the engineering unit.
    #[must_use]
    pub fn with_unit(mut self, unit: impl Into<String>) -> Self {
        self.unit = Some(unit.into());
        self
    }

    /// Sets the value labels (an enumeration).
    #[must_use]
    pub fn with_labels<S: Into<String>>(
        mut self,
        labels: impl IntoIterator<Item = (i64, S)>,
    ) -> Self {
        self.labels = ValueLabels::new(labels);
        self
    }

    /// Polls the point every `interval` instead of at its device's interval.
    #[must_use]
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = Some(interval);
        self
    }

    /// The label of a value of this point, if it has one.
    #[must_use]
    pub fn label(&self, value: Value) -> Option<&str> {
        self.labels.label(value)
    }

    /// The value to write for a label ("heat" -> `Number(1)`; `Bool` for a bool point).
    #[must_use]
    pub fn value_for_label(&self, label: &str) -> Option<Value> {
        let v = self.labels.value_of(label)?;
        Some(if self.data_type == DataType::Bool {
            Value::Bool(v != 0)
        } else {
            Value::Number(v as f64)
        })
    }

    /// Number of coils, inputs or registers the point spans on the wire (1, 2 or 4).
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
        if let Some(unit) = &self.unit
            && (unit.trim().is_empty() || unit.chars().any(char::is_control))
        {
            return Err(PointError::BadUnit {
                point: point(),
                unit: unit.clone(),
            });
        }
        if let Some(interval) = self.poll_interval
            && interval < MIN_POLL_INTERVAL
        {
            return Err(PointError::PollIntervalTooShort {
                point: point(),
                interval,
            });
        }
        self.validate_labels()
    }

    fn validate_labels(&self) -> Result<(), PointError> {
        let point = || self.name.clone();
        let mut values = HashSet::new();
        let mut labels = HashSet::new();
        for (value, label) in self.labels.iter() {
            if label.trim().is_empty() {
                return Err(PointError::EmptyLabel {
                    point: point(),
                    value,
                });
            }
            if !values.insert(value) {
                return Err(PointError::DuplicateLabelValue {
                    point: point(),
                    value,
                });
            }
            if !labels.insert(label.to_ascii_lowercase()) {
                return Err(PointError::DuplicateLabel {
                    point: point(),
                    label: label.to_owned(),
                });
            }
            let fits = match self.data_type {
                DataType::Bool => value == 0 || value == 1,
                DataType::F32 | DataType::F64 => true,
                integer => {
                    let raw = self.scaling.to_raw(value as f64).round();
                    integer
                        .integer_range()
                        .is_some_and(|(min, max)| raw >= min && raw <= max)
                }
            };
            if !fits {
                return Err(PointError::LabelOutOfRange {
                    point: point(),
                    value,
                    label: label.to_owned(),
                    data_type: self.data_type,
                });
            }
        }
        Ok(())
    }
}

/// The shortest per-point poll interval accepted (a bus cannot usefully poll faster).
pub const MIN_POLL_INTERVAL: Duration = Duration::from_millis(10);

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
    /// A data type name that does not exist.
    #[error("unknown data type `{0}`; use one of bool, u16, i16, u32, i32, f32, u64, i64, f64")]
    UnknownDataType(String),
    /// A register layout name that does not exist.
    #[error(
        "unknown register layout `{0}`; use ABCD (Modbus order), CDAB (word swapped), BADC (byte swapped) or DCBA (both swapped)"
    )]
    UnknownLayout(String),
    /// A unit that is blank or contains control characters.
    #[error(
        "point `{point}`: unit {unit:?} is not usable; leave it out or give text such as \"°C\""
    )]
    BadUnit {
        /// Point name.
        point: String,
        /// The configured unit.
        unit: String,
    },
    /// A per-point poll interval below [`MIN_POLL_INTERVAL`].
    #[error(
        "point `{point}`: a poll interval of {interval:?} is too short; use at least 10 ms, or leave it out to poll with the device"
    )]
    PollIntervalTooShort {
        /// Point name.
        point: String,
        /// The configured interval.
        interval: Duration,
    },
    /// A value label that is blank.
    #[error("point `{point}`: the label of value {value} is empty")]
    EmptyLabel {
        /// Point name.
        point: String,
        /// The labelled value.
        value: i64,
    },
    /// Two labels for one value.
    #[error("point `{point}`: value {value} is labelled twice; each value takes one label")]
    DuplicateLabelValue {
        /// Point name.
        point: String,
        /// The repeated value.
        value: i64,
    },
    /// One label for two values.
    #[error(
        "point `{point}`: label \"{label}\" is used for two values; labels must be unique (ignoring case)"
    )]
    DuplicateLabel {
        /// Point name.
        point: String,
        /// The repeated label.
        label: String,
    },
    /// A labelled value the point's data type cannot hold.
    #[error(
        "point `{point}`: value {value} (\"{label}\") cannot be stored in a {data_type} with this scaling"
    )]
    LabelOutOfRange {
        /// Point name.
        point: String,
        /// The labelled value.
        value: i64,
        /// Its label.
        label: String,
        /// The point's type.
        data_type: DataType,
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
    fn sixty_four_bit_types_span_four_registers() {
        for dt in [DataType::U64, DataType::I64, DataType::F64] {
            assert_eq!(dt.register_count(), 4);
            assert_eq!(dt.name().parse::<DataType>(), Ok(dt));
            assert_eq!(holding(dt).validate(), Ok(()));
        }
        let last = ModbusPoint::new("x", ModbusTable::HoldingRegister, 65532, DataType::F64);
        assert_eq!(last.validate(), Ok(()));
        let over = ModbusPoint::new("x", ModbusTable::HoldingRegister, 65533, DataType::U64);
        assert!(matches!(
            over.validate(),
            Err(PointError::AddressOverflow { count: 4, .. })
        ));
        assert_eq!(
            "u128".parse::<DataType>().unwrap_err().to_string(),
            "unknown data type `u128`; use one of bool, u16, i16, u32, i32, f32, u64, i64, f64"
        );
    }

    #[test]
    fn layouts_parse_as_installers_write_them() {
        use ByteOrder::*;
        use WordOrder::*;
        for (name, want) in [
            ("ABCD", (HighFirst, Normal)),
            ("cdab", (LowFirst, Normal)),
            (" BADC ", (HighFirst, Swapped)),
            ("DCBA", (LowFirst, Swapped)),
            ("HGFEDCBA", (LowFirst, Swapped)),
            ("GHEFCDAB", (LowFirst, Normal)),
        ] {
            assert_eq!(parse_layout(name), Ok(want), "{name}");
        }
        assert!(
            parse_layout("big")
                .unwrap_err()
                .to_string()
                .contains("use ABCD (Modbus order), CDAB (word swapped)")
        );
    }

    #[test]
    fn labels_look_up_both_ways() {
        let mode = holding(DataType::U16).with_labels([(0, "off"), (1, "heat"), (2, "cool")]);
        assert_eq!(mode.validate(), Ok(()));
        assert_eq!(mode.label(Value::Number(1.0)), Some("heat"));
        assert_eq!(mode.label(Value::Number(1.000_000_1)), Some("heat"));
        assert_eq!(mode.label(Value::Number(1.5)), None);
        assert_eq!(mode.label(Value::Number(7.0)), None);
        assert_eq!(mode.label(Value::Number(f64::NAN)), None);
        assert_eq!(mode.value_for_label("cool"), Some(Value::Number(2.0)));
        assert_eq!(mode.value_for_label("HEAT"), Some(Value::Number(1.0)));
        assert_eq!(mode.value_for_label("fan"), None);
        let door = ModbusPoint::new("door", ModbusTable::DiscreteInput, 0, DataType::Bool)
            .with_labels([(0, "closed"), (1, "open")]);
        assert_eq!(door.validate(), Ok(()));
        assert_eq!(door.label(Value::Bool(true)), Some("open"));
        assert_eq!(door.value_for_label("closed"), Some(Value::Bool(false)));
        assert!(holding(DataType::U16).labels.is_empty());
        assert_eq!(
            mode.labels.iter().collect::<Vec<_>>(),
            vec![(0, "off"), (1, "heat"), (2, "cool")]
        );
    }

    #[test]
    fn bad_labels_are_refused_with_installer_messages() {
        let dup = holding(DataType::U16).with_labels([(0, "off"), (0, "heat")]);
        assert_eq!(
            dup.validate().unwrap_err().to_string(),
            "point `p`: value 0 is labelled twice; each value takes one label"
        );
        let dup = holding(DataType::U16).with_labels([(0, "off"), (1, "Off")]);
        assert_eq!(
            dup.validate().unwrap_err().to_string(),
            "point `p`: label \"Off\" is used for two values; labels must be unique (ignoring case)"
        );
        let blank = holding(DataType::U16).with_labels([(3, " ")]);
        assert_eq!(
            blank.validate(),
            Err(PointError::EmptyLabel {
                point: "p".into(),
                value: 3
            })
        );
        let negative = holding(DataType::U16).with_labels([(-1, "fault")]);
        assert_eq!(
            negative.validate().unwrap_err().to_string(),
            "point `p`: value -1 (\"fault\") cannot be stored in a u16 with this scaling"
        );
        assert_eq!(
            holding(DataType::I16)
                .with_labels([(-1, "fault")])
                .validate(),
            Ok(())
        );
        // Scaling applies: raw 0..=65535 at scale 0.5 covers 0..=32767.5.
        let scaled = holding(DataType::U16)
            .with_scaling(0.5, 0.0)
            .with_labels([(40_000, "x")]);
        assert!(matches!(
            scaled.validate(),
            Err(PointError::LabelOutOfRange { .. })
        ));
        let bool_label =
            ModbusPoint::new("c", ModbusTable::Coil, 0, DataType::Bool).with_labels([(2, "maybe")]);
        assert!(matches!(
            bool_label.validate(),
            Err(PointError::LabelOutOfRange { .. })
        ));
    }

    #[test]
    fn units_and_poll_intervals_are_checked() {
        assert_eq!(holding(DataType::F32).with_unit("°C").validate(), Ok(()));
        assert!(matches!(
            holding(DataType::F32).with_unit("  ").validate(),
            Err(PointError::BadUnit { .. })
        ));
        assert!(matches!(
            holding(DataType::F32).with_unit("a\nb").validate(),
            Err(PointError::BadUnit { .. })
        ));
        assert_eq!(
            holding(DataType::U16)
                .with_poll_interval(Duration::from_secs(60))
                .validate(),
            Ok(())
        );
        assert_eq!(
            holding(DataType::U16)
                .with_poll_interval(Duration::from_millis(5))
                .validate()
                .unwrap_err()
                .to_string(),
            "point `p`: a poll interval of 5ms is too short; use at least 10 ms, or leave it out to poll with the device"
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
