//! Pure Modbus point codec and read planner: raw coils/registers <-> [`Value`], no I/O, no clock.
//!
//! * [`decode`] turns the bits of FC01/FC02 or the registers of FC03/FC04 into a [`Value`].
//! * [`encode`] turns a [`Value`] into what a write needs: FC05 (one coil), FC06/FC16 (registers)
//!   or a read-modify-write of one register bit (FC03 then FC06).
//! * [`plan_reads`] groups a device's points into as few read requests as the protocol allows.
//!
//! Registers are big-endian on the wire (Modbus Application Protocol V1.1b3, 4.2); the transports
//! hand us `u16`s, so what is ours is the order of the registers of a 32/64-bit value
//! ([`WordOrder`]) and devices that store the bytes of a register the other way round
//! ([`ByteOrder`]); see [`crate::point`] for the four layouts.

use std::time::Duration;

use thiserror::Error;

use crate::point::{ByteOrder, DataType, ModbusPoint, ModbusTable, PointError, Value, WordOrder};

/// Largest register quantity of one FC03/FC04 request.
pub const MAX_READ_REGISTERS: u16 = 125;
/// Largest bit quantity of one FC01/FC02 request.
pub const MAX_READ_BITS: u16 = 2000;

/// Raw data of one point, as read from the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Raw<'a> {
    /// Coils (FC01) or discrete inputs (FC02), starting at the point's address.
    Bits(&'a [bool]),
    /// Holding (FC03) or input (FC04) registers, starting at the point's address.
    Words(&'a [u16]),
}

/// What a write of one point sends to the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Encoded {
    /// FC05 write single coil.
    Coil(bool),
    /// FC06 (one register) or FC16 (two registers), in wire order.
    Registers(Vec<u16>),
    /// One bit of a holding register: the driver reads the register (FC03), changes the bit and
    /// writes it back (FC06).
    RegisterBit {
        /// Bit number, 0 to 15.
        bit: u8,
        /// New state of the bit.
        on: bool,
    },
}

impl Encoded {
    /// Applies a register-bit change to the register's current contents.
    #[must_use]
    pub fn apply_bit(current: u16, bit: u8, on: bool) -> u16 {
        let mask = 1u16 << (bit & 0x0f);
        if on { current | mask } else { current & !mask }
    }
}

/// Why a value could not be converted.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum CodecError {
    /// The point itself is misconfigured.
    #[error(transparent)]
    InvalidPoint(#[from] PointError),
    /// A bool value for a number point or the other way round.
    #[error("point `{point}` is {data_type}; the value {value} does not fit")]
    TypeMismatch {
        /// Point name.
        point: String,
        /// The point's type.
        data_type: DataType,
        /// The offered value.
        value: Value,
    },
    /// NaN or infinity, written or read.
    #[error("point `{point}`: {value} is not a finite number")]
    NotFinite {
        /// Point name.
        point: String,
        /// The offending number.
        value: f64,
    },
    /// The number does not fit the wire type once scaling is undone.
    #[error("point `{point}`: {value} becomes {raw} on the wire, outside the range of {data_type}")]
    OutOfRange {
        /// Point name.
        point: String,
        /// The engineering value offered.
        value: f64,
        /// The raw number after inverse scaling and rounding.
        raw: f64,
        /// The point's type.
        data_type: DataType,
    },
    /// Bits were given for a register point or registers for a bit point.
    #[error("point `{point}` is in the {table} table; the data read does not match it")]
    RawMismatch {
        /// Point name.
        point: String,
        /// The point's table.
        table: ModbusTable,
    },
    /// Fewer bits or registers than the point spans.
    #[error("point `{point}` needs {needed} items but only {got} were read")]
    RawTooShort {
        /// Point name.
        point: String,
        /// Items the point spans.
        needed: usize,
        /// Items available.
        got: usize,
    },
}

/// Decodes a point's value from its raw bits or registers (the slice starts at the point's
/// address; longer slices are fine).
pub fn decode(point: &ModbusPoint, raw: &Raw<'_>) -> Result<Value, CodecError> {
    point.validate()?;
    let needed = usize::from(point.span());
    let mismatch = || CodecError::RawMismatch {
        point: point.name.clone(),
        table: point.address.table,
    };
    let too_short = |got: usize| CodecError::RawTooShort {
        point: point.name.clone(),
        needed,
        got,
    };
    match (point.address.table.is_bit_table(), raw) {
        (true, Raw::Bits(bits)) => bits
            .first()
            .map(|b| Value::Bool(*b))
            .ok_or_else(|| too_short(0)),
        (false, Raw::Words(words)) => {
            if words.len() < needed {
                return Err(too_short(words.len()));
            }
            if point.data_type == DataType::Bool {
                // Bits are numbered on the register as transmitted.
                let bit = point.address.bit.unwrap_or(0);
                return Ok(Value::Bool((words[0] >> bit) & 1 == 1));
            }
            let bits = join_words(point, &words[..needed]);
            // The `as` casts below reinterpret the joined bits at their own width on purpose.
            let raw_number = match point.data_type {
                DataType::U16 => f64::from(bits as u16),
                DataType::I16 => f64::from(bits as u16 as i16),
                DataType::U32 => f64::from(bits as u32),
                DataType::I32 => f64::from(bits as u32 as i32),
                DataType::F32 => f64::from(f32::from_bits(bits as u32)),
                DataType::U64 => bits as f64,
                DataType::I64 => bits as i64 as f64,
                DataType::F64 => f64::from_bits(bits),
                DataType::Bool => return Err(mismatch()),
            };
            let value = point.scaling.to_engineering(raw_number);
            if value.is_finite() {
                Ok(Value::Number(value))
            } else {
                Err(CodecError::NotFinite {
                    point: point.name.clone(),
                    value,
                })
            }
        }
        _ => Err(mismatch()),
    }
}

/// Encodes a value for writing. A `Number` 0 or 1 is accepted for a `Bool` point.
pub fn encode(point: &ModbusPoint, value: Value) -> Result<Encoded, CodecError> {
    point.validate()?;
    let mismatch = || CodecError::TypeMismatch {
        point: point.name.clone(),
        data_type: point.data_type,
        value,
    };
    if point.data_type == DataType::Bool {
        let on = match value {
            Value::Bool(b) => b,
            Value::Number(0.0) => false,
            Value::Number(1.0) => true,
            Value::Number(_) => return Err(mismatch()),
        };
        return Ok(match point.address.bit {
            Some(bit) if !point.address.table.is_bit_table() => Encoded::RegisterBit { bit, on },
            _ => Encoded::Coil(on),
        });
    }
    let Value::Number(engineering) = value else {
        return Err(mismatch());
    };
    if !engineering.is_finite() {
        return Err(CodecError::NotFinite {
            point: point.name.clone(),
            value: engineering,
        });
    }
    let unscaled = point.scaling.to_raw(engineering);
    let out_of_range = |raw: f64| CodecError::OutOfRange {
        point: point.name.clone(),
        value: engineering,
        raw,
        data_type: point.data_type,
    };
    let bits: u64 = match point.data_type {
        DataType::F32 => {
            // f32::MAX as f64 is the largest finite f32; anything beyond would become infinity.
            if !unscaled.is_finite() || unscaled.abs() > f64::from(f32::MAX) {
                return Err(out_of_range(unscaled));
            }
            u64::from((unscaled as f32).to_bits())
        }
        DataType::F64 => {
            if !unscaled.is_finite() {
                return Err(out_of_range(unscaled));
            }
            unscaled.to_bits()
        }
        DataType::Bool => return Err(mismatch()),
        integer => {
            let raw = unscaled.round();
            let Some((min, max)) = integer.integer_range() else {
                return Err(mismatch());
            };
            if !raw.is_finite() || raw < min || raw > max {
                return Err(out_of_range(raw));
            }
            // The range check above makes these casts exact; negative numbers keep their
            // two's complement bits at the type's width (split_words takes the low words).
            match integer {
                DataType::U64 => raw as u64,
                DataType::U16 | DataType::U32 => raw as u64,
                _ => raw as i64 as u64,
            }
        }
    };
    Ok(Encoded::Registers(split_words(
        point,
        bits,
        usize::from(point.span()),
    )))
}

/// Joins the registers of a number into its bits (the value sits in the low `16 * n` bits).
fn join_words(point: &ModbusPoint, words: &[u16]) -> u64 {
    let fix = |w: u16| match point.byte_order {
        ByteOrder::Normal => w,
        ByteOrder::Swapped => w.swap_bytes(),
    };
    let fold = |acc: u64, w: &u16| (acc << 16) | u64::from(fix(*w));
    match point.word_order {
        WordOrder::HighFirst => words.iter().fold(0, fold),
        WordOrder::LowFirst => words.iter().rev().fold(0, fold),
    }
}

/// Splits the low `16 * count` bits of a number into registers in wire order.
fn split_words(point: &ModbusPoint, bits: u64, count: usize) -> Vec<u16> {
    let mut words: Vec<u16> = (0..count)
        .rev()
        .map(|i| (bits >> (16 * i)) as u16)
        .map(|w| match point.byte_order {
            ByteOrder::Normal => w,
            ByteOrder::Swapped => w.swap_bytes(),
        })
        .collect();
    if point.word_order == WordOrder::LowFirst {
        words.reverse();
    }
    words
}

/// One read request covering one or more points of the same table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadBlock {
    /// The table read (FC01, FC02, FC03 or FC04).
    pub table: ModbusTable,
    /// First address requested.
    pub start: u16,
    /// Quantity requested: at most 2000 bits or 125 registers.
    pub count: u16,
    /// Indexes into the slice given to [`plan_reads`], ordered by address.
    pub points: Vec<usize>,
    /// The poll interval shared by every point of the block (`None`: the device's).
    pub poll_interval: Option<Duration>,
}

impl ReadBlock {
    /// The Modbus function code of the request.
    #[must_use]
    pub fn function_code(&self) -> u8 {
        self.table.read_function_code()
    }

    /// Offset of a point's data inside the block's response, if the point lies inside it.
    #[must_use]
    pub fn offset_of(&self, point: &ModbusPoint) -> Option<usize> {
        let offset = point.address.address.checked_sub(self.start)?;
        let end = u32::from(offset) + u32::from(point.span());
        (point.address.table == self.table && end <= u32::from(self.count))
            .then_some(usize::from(offset))
    }

    /// A block reading exactly one point.
    #[must_use]
    pub fn single(points: &[ModbusPoint], index: usize) -> Option<ReadBlock> {
        let point = points.get(index)?;
        Some(ReadBlock {
            table: point.address.table,
            start: point.address.address,
            count: point.span(),
            points: vec![index],
            poll_interval: point.poll_interval,
        })
    }
}

/// Groups readable points into read requests: points of the same table whose addresses are at
/// most `max_gap` unused addresses apart share one request, as long as the request stays within
/// 125 registers (FC03/FC04) or 2000 bits (FC01/FC02) and the points share one poll interval
/// ([`ModbusPoint::poll_interval`]). Write-only points and points that fail
/// [`ModbusPoint::validate`] are left out. Blocks come ordered by poll interval (the device's
/// own first), then table, then address.
#[must_use]
pub fn plan_reads(points: &[ModbusPoint], max_gap: u16) -> Vec<ReadBlock> {
    let mut readable: Vec<usize> = (0..points.len())
        .filter(|&i| points[i].access.can_read() && points[i].validate().is_ok())
        .collect();
    readable.sort_by_key(|&i| {
        let p = &points[i];
        (p.poll_interval, p.address.table, p.address.address, i)
    });

    let mut blocks: Vec<ReadBlock> = Vec::new();
    let mut open: Option<Open> = None;
    for i in readable {
        let p = &points[i];
        let table = p.address.table;
        // Work in u32 so that address + span never overflows.
        let start = u32::from(p.address.address);
        let end = start + u32::from(p.span());
        let limit = u32::from(table.max_read_quantity());
        if let Some(o) = open.as_mut() {
            let gap = start.saturating_sub(o.end);
            let new_end = end.max(o.end);
            if o.table == table
                && o.interval == p.poll_interval
                && gap <= u32::from(max_gap)
                && new_end - o.start <= limit
            {
                o.end = new_end;
                o.points.push(i);
                continue;
            }
        }
        if let Some(done) = open.take() {
            blocks.push(done.close());
        }
        open = Some(Open {
            table,
            interval: p.poll_interval,
            start,
            end,
            points: vec![i],
        });
    }
    if let Some(done) = open.take() {
        blocks.push(done.close());
    }
    blocks
}

/// A block being planned.
struct Open {
    table: ModbusTable,
    interval: Option<Duration>,
    start: u32,
    /// Exclusive.
    end: u32,
    points: Vec<usize>,
}

impl Open {
    fn close(self) -> ReadBlock {
        // start <= 65535 and end - start <= 2000 by construction.
        ReadBlock {
            table: self.table,
            start: self.start as u16,
            count: (self.end - self.start) as u16,
            points: self.points,
            poll_interval: self.interval,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::point::{Access, ByteOrder};

    fn hr(name: &str, address: u16, data_type: DataType) -> ModbusPoint {
        ModbusPoint::new(name, ModbusTable::HoldingRegister, address, data_type)
    }

    fn number(v: Value) -> f64 {
        match v {
            Value::Number(n) => n,
            Value::Bool(b) => panic!("expected a number, got {b}"),
        }
    }

    #[test]
    fn decodes_bits() {
        let p = ModbusPoint::new("relay", ModbusTable::Coil, 3, DataType::Bool);
        assert_eq!(
            decode(&p, &Raw::Bits(&[true, false])),
            Ok(Value::Bool(true))
        );
        assert_eq!(decode(&p, &Raw::Bits(&[false])), Ok(Value::Bool(false)));
        assert!(matches!(
            decode(&p, &Raw::Bits(&[])),
            Err(CodecError::RawTooShort {
                needed: 1,
                got: 0,
                ..
            })
        ));
        assert!(matches!(
            decode(&p, &Raw::Words(&[1])),
            Err(CodecError::RawMismatch { .. })
        ));
    }

    #[test]
    fn decodes_bit_in_register() {
        let p = hr("alarm", 0, DataType::Bool).with_bit(15);
        assert_eq!(decode(&p, &Raw::Words(&[0x8000])), Ok(Value::Bool(true)));
        assert_eq!(decode(&p, &Raw::Words(&[0x7fff])), Ok(Value::Bool(false)));
        let p0 = hr("b0", 0, DataType::Bool).with_bit(0);
        assert_eq!(decode(&p0, &Raw::Words(&[0x0001])), Ok(Value::Bool(true)));
        assert_eq!(decode(&p0, &Raw::Words(&[0xfffe])), Ok(Value::Bool(false)));
        assert!(matches!(
            decode(&p0, &Raw::Bits(&[true])),
            Err(CodecError::RawMismatch { .. })
        ));
    }

    #[test]
    fn decodes_signed_and_unsigned_16_bit() {
        assert_eq!(
            decode(&hr("u", 0, DataType::U16), &Raw::Words(&[0xffff])),
            Ok(Value::Number(65535.0))
        );
        assert_eq!(
            decode(&hr("i", 0, DataType::I16), &Raw::Words(&[0xffff])),
            Ok(Value::Number(-1.0))
        );
        assert_eq!(
            decode(&hr("i", 0, DataType::I16), &Raw::Words(&[0x8000])),
            Ok(Value::Number(-32768.0))
        );
    }

    #[test]
    fn decodes_32_bit_in_both_word_orders() {
        let u = hr("u", 0, DataType::U32);
        assert_eq!(
            decode(&u, &Raw::Words(&[0x0001, 0x0002])),
            Ok(Value::Number(65538.0))
        );
        let u_low = u.clone().with_word_order(WordOrder::LowFirst);
        assert_eq!(
            decode(&u_low, &Raw::Words(&[0x0002, 0x0001])),
            Ok(Value::Number(65538.0))
        );
        let i = hr("i", 0, DataType::I32);
        assert_eq!(
            decode(&i, &Raw::Words(&[0xffff, 0xfffe])),
            Ok(Value::Number(-2.0))
        );
        assert_eq!(
            decode(
                &i.with_word_order(WordOrder::LowFirst),
                &Raw::Words(&[0xfffe, 0xffff])
            ),
            Ok(Value::Number(-2.0))
        );
        // 21.0f32 = 0x41A8_0000
        let f = hr("f", 0, DataType::F32);
        assert_eq!(
            decode(&f, &Raw::Words(&[0x41a8, 0x0000])),
            Ok(Value::Number(21.0))
        );
        assert_eq!(
            decode(
                &f.clone().with_word_order(WordOrder::LowFirst),
                &Raw::Words(&[0x0000, 0x41a8])
            ),
            Ok(Value::Number(21.0))
        );
        assert!(matches!(
            decode(&f, &Raw::Words(&[0x41a8])),
            Err(CodecError::RawTooShort {
                needed: 2,
                got: 1,
                ..
            })
        ));
        // NaN from the device is not a value.
        assert!(matches!(
            decode(&f, &Raw::Words(&[0x7fc0, 0x0000])),
            Err(CodecError::NotFinite { .. })
        ));
    }

    #[test]
    fn decode_applies_scaling() {
        let p = hr("t", 0, DataType::I16).with_scaling(0.1, 0.0);
        let v = number(decode(&p, &Raw::Words(&[215])).unwrap());
        assert!((v - 21.5).abs() < 1e-9);
        let neg = number(decode(&p, &Raw::Words(&[(-55i16) as u16])).unwrap());
        assert!((neg + 5.5).abs() < 1e-9);
        let offset = hr("o", 0, DataType::U16).with_scaling(0.5, -40.0);
        assert_eq!(
            decode(&offset, &Raw::Words(&[100])),
            Ok(Value::Number(10.0))
        );
    }

    #[test]
    fn decode_refuses_invalid_points() {
        let p = hr("bad", 0, DataType::Bool);
        assert!(matches!(
            decode(&p, &Raw::Words(&[1])),
            Err(CodecError::InvalidPoint(PointError::BitMissing { .. }))
        ));
    }

    #[test]
    fn encodes_bools() {
        let coil = ModbusPoint::new("relay", ModbusTable::Coil, 0, DataType::Bool);
        assert_eq!(encode(&coil, Value::Bool(true)), Ok(Encoded::Coil(true)));
        assert_eq!(encode(&coil, Value::Number(0.0)), Ok(Encoded::Coil(false)));
        assert_eq!(encode(&coil, Value::Number(1.0)), Ok(Encoded::Coil(true)));
        assert!(matches!(
            encode(&coil, Value::Number(2.0)),
            Err(CodecError::TypeMismatch { .. })
        ));
        let bit = hr("b", 4, DataType::Bool).with_bit(7);
        assert_eq!(
            encode(&bit, Value::Bool(true)),
            Ok(Encoded::RegisterBit { bit: 7, on: true })
        );
        assert_eq!(Encoded::apply_bit(0x0f0f, 7, true), 0x0f8f);
        assert_eq!(Encoded::apply_bit(0x0f8f, 0, false), 0x0f8e);
        assert_eq!(Encoded::apply_bit(0xffff, 15, false), 0x7fff);
    }

    #[test]
    fn encodes_numbers_with_word_order_and_sign() {
        assert_eq!(
            encode(&hr("u", 0, DataType::U16), Value::Number(65535.0)),
            Ok(Encoded::Registers(vec![0xffff]))
        );
        assert_eq!(
            encode(&hr("i", 0, DataType::I16), Value::Number(-1.0)),
            Ok(Encoded::Registers(vec![0xffff]))
        );
        assert_eq!(
            encode(&hr("u", 0, DataType::U32), Value::Number(65538.0)),
            Ok(Encoded::Registers(vec![1, 2]))
        );
        assert_eq!(
            encode(
                &hr("u", 0, DataType::U32).with_word_order(WordOrder::LowFirst),
                Value::Number(65538.0)
            ),
            Ok(Encoded::Registers(vec![2, 1]))
        );
        assert_eq!(
            encode(&hr("i", 0, DataType::I32), Value::Number(-2.0)),
            Ok(Encoded::Registers(vec![0xffff, 0xfffe]))
        );
        assert_eq!(
            encode(&hr("f", 0, DataType::F32), Value::Number(22.5)),
            Ok(Encoded::Registers(vec![0x41b4, 0x0000]))
        );
        assert_eq!(
            encode(
                &hr("f", 0, DataType::F32).with_word_order(WordOrder::LowFirst),
                Value::Number(22.5)
            ),
            Ok(Encoded::Registers(vec![0x0000, 0x41b4]))
        );
    }

    #[test]
    fn encode_undoes_scaling_and_rounds() {
        let p = hr("t", 0, DataType::I16).with_scaling(0.1, 0.0);
        assert_eq!(
            encode(&p, Value::Number(21.5)),
            Ok(Encoded::Registers(vec![215]))
        );
        assert_eq!(
            encode(&p, Value::Number(-5.5)),
            Ok(Encoded::Registers(vec![(-55i16) as u16]))
        );
        let o = hr("o", 0, DataType::U16).with_scaling(0.5, -40.0);
        assert_eq!(
            encode(&o, Value::Number(10.0)),
            Ok(Encoded::Registers(vec![100]))
        );
        // -40 engineering is raw 0, -40.5 would be raw -1.
        assert_eq!(
            encode(&o, Value::Number(-40.0)),
            Ok(Encoded::Registers(vec![0]))
        );
        assert!(matches!(
            encode(&o, Value::Number(-40.5)),
            Err(CodecError::OutOfRange { .. })
        ));
    }

    #[test]
    fn encode_rejects_out_of_range() {
        let u16p = hr("dim", 0, DataType::U16);
        for bad in [70000.0, -1.0, 65535.6] {
            let err = encode(&u16p, Value::Number(bad)).unwrap_err();
            assert!(matches!(err, CodecError::OutOfRange { .. }), "{bad}: {err}");
        }
        assert_eq!(
            encode(&u16p, Value::Number(70000.0))
                .unwrap_err()
                .to_string(),
            "point `dim`: 70000 becomes 70000 on the wire, outside the range of u16"
        );
        assert!(matches!(
            encode(&hr("i", 0, DataType::I16), Value::Number(32768.0)),
            Err(CodecError::OutOfRange { .. })
        ));
        assert!(matches!(
            encode(&hr("i", 0, DataType::I32), Value::Number(-2_147_483_649.0)),
            Err(CodecError::OutOfRange { .. })
        ));
        assert!(matches!(
            encode(&hr("u", 0, DataType::U32), Value::Number(4_294_967_296.0)),
            Err(CodecError::OutOfRange { .. })
        ));
        assert!(matches!(
            encode(&hr("f", 0, DataType::F32), Value::Number(1e39)),
            Err(CodecError::OutOfRange { .. })
        ));
        // A tiny scale can push a finite value to infinity.
        let tiny = hr("f", 0, DataType::F32).with_scaling(1e-300, 0.0);
        assert!(matches!(
            encode(&tiny, Value::Number(1e300)),
            Err(CodecError::OutOfRange { .. })
        ));
    }

    #[test]
    fn encode_rejects_non_finite_and_type_mismatch() {
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert!(matches!(
                encode(&hr("f", 0, DataType::F32), Value::Number(bad)),
                Err(CodecError::NotFinite { .. })
            ));
        }
        assert!(matches!(
            encode(&hr("u", 0, DataType::U16), Value::Bool(true)),
            Err(CodecError::TypeMismatch { .. })
        ));
        let ro = ModbusPoint::new("ro", ModbusTable::InputRegister, 0, DataType::U16)
            .with_access(Access::Write);
        assert!(matches!(
            encode(&ro, Value::Number(1.0)),
            Err(CodecError::InvalidPoint(PointError::ReadOnlyTable { .. }))
        ));
    }

    /// Round trip over many values with a small deterministic generator (no extra crates).
    #[test]
    fn encode_decode_round_trip() {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let kinds = [DataType::U16, DataType::I16, DataType::U32, DataType::I32];
        for _ in 0..2000 {
            let r = next();
            let dt = kinds[(r % 4) as usize];
            let order = if r & 8 == 0 {
                WordOrder::HighFirst
            } else {
                WordOrder::LowFirst
            };
            let p = hr("p", 0, dt).with_word_order(order);
            let raw = match dt {
                DataType::U16 => f64::from((r >> 16) as u16),
                DataType::I16 => f64::from((r >> 16) as u16 as i16),
                DataType::U32 => f64::from((r >> 16) as u32),
                _ => f64::from((r >> 16) as u32 as i32),
            };
            let Encoded::Registers(words) = encode(&p, Value::Number(raw)).unwrap() else {
                panic!("registers expected");
            };
            assert_eq!(words.len(), usize::from(dt.register_count()));
            assert_eq!(decode(&p, &Raw::Words(&words)), Ok(Value::Number(raw)));
            // Arbitrary register contents always decode to a finite number for integer types.
            let junk = [(r >> 3) as u16, (r >> 29) as u16];
            assert!(decode(&p, &Raw::Words(&junk)).is_ok());
        }
    }

    #[test]
    fn plan_merges_neighbours_within_gap() {
        let points = vec![
            hr("a", 0, DataType::U16),
            hr("b", 1, DataType::F32), // 1..=2
            hr("c", 5, DataType::U16), // gap of 2 after b
            hr("d", 20, DataType::U16),
        ];
        let blocks = plan_reads(&points, 2);
        assert_eq!(
            blocks,
            vec![
                ReadBlock {
                    table: ModbusTable::HoldingRegister,
                    start: 0,
                    count: 6,
                    points: vec![0, 1, 2],
                    poll_interval: None,
                },
                ReadBlock {
                    table: ModbusTable::HoldingRegister,
                    start: 20,
                    count: 1,
                    points: vec![3],
                    poll_interval: None,
                },
            ]
        );
        // With no gap allowed, only touching points merge.
        let tight = plan_reads(&points, 0);
        assert_eq!(tight.len(), 3);
        assert_eq!(
            (tight[0].start, tight[0].count, tight[0].points.clone()),
            (0, 3, vec![0, 1])
        );
        assert_eq!(blocks[0].function_code(), 0x03);
        assert_eq!(blocks[0].offset_of(&points[2]), Some(5));
        assert_eq!(blocks[0].offset_of(&points[3]), None);
    }

    #[test]
    fn plan_keeps_tables_apart_and_sorted() {
        let points = vec![
            hr("h", 0, DataType::U16),
            ModbusPoint::new("ir", ModbusTable::InputRegister, 1, DataType::U16),
            ModbusPoint::new("c", ModbusTable::Coil, 0, DataType::Bool),
            ModbusPoint::new("di", ModbusTable::DiscreteInput, 0, DataType::Bool),
            ModbusPoint::new("c2", ModbusTable::Coil, 1, DataType::Bool),
        ];
        let blocks = plan_reads(&points, 8);
        let summary: Vec<_> = blocks
            .iter()
            .map(|b| (b.function_code(), b.start, b.count, b.points.clone()))
            .collect();
        assert_eq!(
            summary,
            vec![
                (0x01, 0, 2, vec![2, 4]),
                (0x02, 0, 1, vec![3]),
                (0x04, 1, 1, vec![1]),
                (0x03, 0, 1, vec![0]),
            ]
        );
    }

    #[test]
    fn plan_respects_request_limits() {
        // 200 contiguous registers: 125 + 75.
        let regs: Vec<_> = (0..200).map(|a| hr("r", a, DataType::U16)).collect();
        let blocks = plan_reads(&regs, 0);
        assert_eq!(
            blocks
                .iter()
                .map(|b| (b.start, b.count))
                .collect::<Vec<_>>(),
            vec![(0, 125), (125, 75)]
        );
        // A 32-bit value that would straddle the limit starts a new block.
        let mut straddle: Vec<_> = (0..124).map(|a| hr("r", a, DataType::U16)).collect();
        straddle.push(hr("f", 124, DataType::F32));
        let blocks = plan_reads(&straddle, 0);
        assert_eq!(
            blocks
                .iter()
                .map(|b| (b.start, b.count))
                .collect::<Vec<_>>(),
            vec![(0, 124), (124, 2)]
        );
        // 2500 coils: 2000 + 500.
        let coils: Vec<_> = (0..2500)
            .map(|a| ModbusPoint::new("c", ModbusTable::Coil, a, DataType::Bool))
            .collect();
        let blocks = plan_reads(&coils, 0);
        assert_eq!(
            blocks
                .iter()
                .map(|b| (b.start, b.count))
                .collect::<Vec<_>>(),
            vec![(0, 2000), (2000, 500)]
        );
        for b in &blocks {
            assert!(b.count <= MAX_READ_BITS);
        }
    }

    #[test]
    fn plan_merges_bits_of_one_register_and_edge_addresses() {
        let points = vec![
            hr("b0", 65535, DataType::Bool).with_bit(0),
            hr("b1", 65535, DataType::Bool).with_bit(1),
            hr("x", 65534, DataType::U16),
        ];
        let blocks = plan_reads(&points, 0);
        assert_eq!(
            blocks,
            vec![ReadBlock {
                table: ModbusTable::HoldingRegister,
                start: 65534,
                count: 2,
                points: vec![2, 0, 1],
                poll_interval: None,
            }]
        );
    }

    #[test]
    fn plan_skips_write_only_and_invalid_points() {
        let points = vec![
            hr("cmd", 0, DataType::U16).with_access(Access::Write),
            hr("bad", 1, DataType::Bool), // no bit
            hr("ok", 2, DataType::U16),
        ];
        let blocks = plan_reads(&points, 8);
        assert_eq!(blocks.len(), 1);
        assert_eq!(blocks[0].points, vec![2]);
        assert_eq!((blocks[0].start, blocks[0].count), (2, 1));
        assert!(plan_reads(&[], 8).is_empty());
    }

    /// 0x11223344 in all four layouts, decoded and encoded (bytes A=11 B=22 C=33 D=44).
    #[test]
    fn all_four_32_bit_layouts() {
        let cases = [
            ("ABCD", [0x1122, 0x3344]),
            ("CDAB", [0x3344, 0x1122]),
            ("BADC", [0x2211, 0x4433]),
            ("DCBA", [0x4433, 0x2211]),
        ];
        for (layout, wire) in cases {
            let p = hr("u", 0, DataType::U32).with_layout(layout).unwrap();
            assert_eq!(
                decode(&p, &Raw::Words(&wire)),
                Ok(Value::Number(f64::from(0x1122_3344u32))),
                "{layout}"
            );
            assert_eq!(
                encode(&p, Value::Number(f64::from(0x1122_3344u32))),
                Ok(Encoded::Registers(wire.to_vec())),
                "{layout}"
            );
        }
        // f32 21.5 = 0x41AC0000 little-endian (DCBA): 00 00 AC 41.
        let f = hr("f", 0, DataType::F32).with_layout("dcba").unwrap();
        assert_eq!(
            decode(&f, &Raw::Words(&[0x0000, 0xac41])),
            Ok(Value::Number(21.5))
        );
        assert!(matches!(
            hr("f", 0, DataType::F32).with_layout("ACBD"),
            Err(PointError::UnknownLayout(_))
        ));
    }

    #[test]
    fn byte_order_applies_to_16_bit_values_but_not_to_bit_numbers() {
        let p = hr("u", 0, DataType::U16).with_byte_order(ByteOrder::Swapped);
        assert_eq!(
            decode(&p, &Raw::Words(&[0x3412])),
            Ok(Value::Number(4660.0))
        );
        assert_eq!(
            encode(&p, Value::Number(4660.0)),
            Ok(Encoded::Registers(vec![0x3412]))
        );
        let i = hr("i", 0, DataType::I16).with_byte_order(ByteOrder::Swapped);
        assert_eq!(decode(&i, &Raw::Words(&[0xfeff])), Ok(Value::Number(-2.0)));
        let bit = hr("b", 0, DataType::Bool)
            .with_bit(0)
            .with_byte_order(ByteOrder::Swapped);
        assert_eq!(decode(&bit, &Raw::Words(&[0x0001])), Ok(Value::Bool(true)));
    }

    /// 0x0012_3456_789A_BCDE (below 2^53, so exact in an f64) in the four 64-bit layouts.
    #[test]
    fn all_four_64_bit_layouts() {
        let n = 0x0012_3456_789a_bcdeu64;
        let cases = [
            ("ABCDEFGH", [0x0012, 0x3456, 0x789a, 0xbcde]),
            ("GHEFCDAB", [0xbcde, 0x789a, 0x3456, 0x0012]),
            ("BADCFEHG", [0x1200, 0x5634, 0x9a78, 0xdebc]),
            ("HGFEDCBA", [0xdebc, 0x9a78, 0x5634, 0x1200]),
        ];
        for (layout, wire) in cases {
            let p = hr("u", 0, DataType::U64).with_layout(layout).unwrap();
            assert_eq!(p.span(), 4);
            assert_eq!(decode(&p, &Raw::Words(&wire)), Ok(Value::Number(n as f64)));
            assert_eq!(
                encode(&p, Value::Number(n as f64)),
                Ok(Encoded::Registers(wire.to_vec())),
                "{layout}"
            );
        }
        let f = hr("f", 0, DataType::F64);
        // 21.5 = 0x4035_8000_0000_0000
        assert_eq!(
            decode(&f, &Raw::Words(&[0x4035, 0x8000, 0, 0])),
            Ok(Value::Number(21.5))
        );
        assert_eq!(
            encode(&f.clone().with_layout("CDAB").unwrap(), Value::Number(21.5)),
            Ok(Encoded::Registers(vec![0, 0, 0x8000, 0x4035]))
        );
        assert!(matches!(
            decode(&f, &Raw::Words(&[0x4035, 0x8000, 0])),
            Err(CodecError::RawTooShort {
                needed: 4,
                got: 3,
                ..
            })
        ));
        // NaN and infinity from the device are not values.
        for bad in [[0x7ff8, 0, 0, 0], [0x7ff0, 0, 0, 0], [0xfff0, 0, 0, 0]] {
            assert!(matches!(
                decode(&f, &Raw::Words(&bad)),
                Err(CodecError::NotFinite { .. })
            ));
        }
    }

    #[test]
    fn sixty_four_bit_integer_edges() {
        let u = hr("u", 0, DataType::U64);
        assert_eq!(
            decode(&u, &Raw::Words(&[0xffff; 4])),
            Ok(Value::Number(u64::MAX as f64))
        );
        // 2^64 itself is the first value that does not fit (u64::MAX as f64 rounds up to it).
        assert!(matches!(
            encode(&u, Value::Number(18_446_744_073_709_551_616.0)),
            Err(CodecError::OutOfRange { .. })
        ));
        let largest = 18_446_744_073_709_549_568.0; // the largest f64 below 2^64
        assert_eq!(
            encode(&u, Value::Number(largest)),
            Ok(Encoded::Registers(vec![0xffff, 0xffff, 0xffff, 0xf800]))
        );
        assert!(matches!(
            encode(&u, Value::Number(-1.0)),
            Err(CodecError::OutOfRange { .. })
        ));
        let i = hr("i", 0, DataType::I64);
        assert_eq!(
            decode(&i, &Raw::Words(&[0xffff, 0xffff, 0xffff, 0xfffe])),
            Ok(Value::Number(-2.0))
        );
        assert_eq!(
            encode(&i, Value::Number(-2.0)),
            Ok(Encoded::Registers(vec![0xffff, 0xffff, 0xffff, 0xfffe]))
        );
        assert_eq!(
            encode(&i, Value::Number(-9_223_372_036_854_775_808.0)),
            Ok(Encoded::Registers(vec![0x8000, 0, 0, 0]))
        );
        assert!(matches!(
            encode(&i, Value::Number(9_223_372_036_854_775_808.0)),
            Err(CodecError::OutOfRange { .. })
        ));
        assert_eq!(
            decode(&i, &Raw::Words(&[0x8000, 0, 0, 0])),
            Ok(Value::Number(-9_223_372_036_854_775_808.0))
        );
        // A scale can push an f64 point past the largest double.
        let f = hr("f", 0, DataType::F64).with_scaling(1e-300, 0.0);
        assert!(matches!(
            encode(&f, Value::Number(1e300)),
            Err(CodecError::OutOfRange { .. })
        ));
    }

    #[test]
    fn plan_merges_only_points_of_one_poll_interval() {
        let slow = Duration::from_secs(60);
        let points = vec![
            hr("a", 0, DataType::U16),
            hr("b", 1, DataType::U16).with_poll_interval(slow),
            hr("c", 2, DataType::U16),
            hr("d", 3, DataType::U16).with_poll_interval(slow),
        ];
        let summary: Vec<_> = plan_reads(&points, 8)
            .iter()
            .map(|b| (b.poll_interval, b.start, b.count, b.points.clone()))
            .collect();
        assert_eq!(
            summary,
            vec![(None, 0, 3, vec![0, 2]), (Some(slow), 1, 3, vec![1, 3]),]
        );
        assert_eq!(
            ReadBlock::single(&points, 1).map(|b| b.poll_interval),
            Some(Some(slow))
        );
    }

    #[test]
    fn gap_larger_than_limit_never_overflows() {
        let points = vec![hr("a", 0, DataType::U16), hr("b", 65535, DataType::U16)];
        let blocks = plan_reads(&points, u16::MAX);
        assert_eq!(blocks.len(), 2);
    }
}
