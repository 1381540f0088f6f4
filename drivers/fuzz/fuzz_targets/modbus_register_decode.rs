//! Fuzzes register decoding of every data type, layout and scaling: decoding device registers never panics, gives only finite numbers, and for unscaled values encoding the result gives the registers back.
#![no_main]

use drivers::modbus::codec::{Encoded, Raw, decode, encode};
use drivers::point::{ByteOrder, DataType, ModbusPoint, ModbusTable, Value, WordOrder};
use libfuzzer_sys::fuzz_target;

const TYPES: [DataType; 9] = [
    DataType::Bool,
    DataType::U16,
    DataType::I16,
    DataType::U32,
    DataType::I32,
    DataType::F32,
    DataType::U64,
    DataType::I64,
    DataType::F64,
];

fuzz_target!(|data: &[u8]| {
    let [kind, flags, scale_byte, rest @ ..] = data else {
        return;
    };
    let data_type = TYPES[usize::from(*kind) % TYPES.len()];
    let mut point = ModbusPoint::new("p", ModbusTable::HoldingRegister, 0, data_type)
        .with_word_order(if flags & 1 == 0 { WordOrder::HighFirst } else { WordOrder::LowFirst })
        .with_byte_order(if flags & 2 == 0 { ByteOrder::Normal } else { ByteOrder::Swapped });
    if data_type == DataType::Bool {
        point = point.with_bit(flags >> 4);
    }
    let identity = *scale_byte == 0;
    if !identity {
        point = point.with_scaling(f64::from(*scale_byte) / 16.0 - 8.0, f64::from(flags >> 2));
    }
    let words: Vec<u16> = rest
        .chunks_exact(2)
        .map(|w| u16::from_be_bytes([w[0], w[1]]))
        .collect();
    let Ok(value) = decode(&point, &Raw::Words(&words)) else {
        return;
    };
    let span = usize::from(point.span());
    if let Value::Number(n) = value {
        assert!(n.is_finite());
        let exact = match data_type {
            DataType::U64 | DataType::I64 => n.abs() < 9_007_199_254_740_992.0,
            _ => true,
        };
        if identity && exact {
            // -0.0 and 0.0 are the same number but different float bits: compare values.
            let Ok(Encoded::Registers(back)) = encode(&point, value) else {
                panic!("{data_type}: {n} decoded but does not encode");
            };
            assert_eq!(decode(&point, &Raw::Words(&back)), Ok(value));
            if n != 0.0 {
                assert_eq!(back, words[..span], "{data_type}: {n}");
            }
        }
    }
});
