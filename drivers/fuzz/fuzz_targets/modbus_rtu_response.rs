//! Fuzzes the Modbus RTU answer scanner with arbitrary line bytes: it never panics, what it finds lies inside the buffer and passes its CRC, and feeding the bytes in pieces finds the same answer as feeding them at once.
#![no_main]

use drivers::modbus::rtu::{RtuRequest, RtuResponse, Scan, crc_ok, scan_response};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [unit, kind, a, b, line @ ..] = data else {
        return;
    };
    let count = u16::from_be_bytes([*a, *b]);
    let request = match kind % 7 {
        0 => RtuRequest::Read { function: 0x01, start: 0, count: count % 2001 },
        1 => RtuRequest::Read { function: 0x02, start: 0, count: count % 2001 },
        2 => RtuRequest::Read { function: 0x03, start: 0, count: count % 126 },
        3 => RtuRequest::Read { function: 0x04, start: 0, count: count % 126 },
        4 => RtuRequest::WriteSingleCoil { address: count, on: kind & 0x80 != 0 },
        5 => RtuRequest::WriteSingleRegister { address: count, value: u16::from(*a) },
        _ => RtuRequest::WriteMultipleRegisters {
            address: count,
            values: vec![0; usize::from(*b % 124)],
        },
    };
    let full = scan_response(line, *unit, &request);
    match &full {
        Scan::NeedMore { skipped } => assert!(*skipped <= line.len()),
        Scan::Frame { skipped, len, answer } => {
            let frame = &line[*skipped..*skipped + *len];
            assert!(crc_ok(frame));
            assert_eq!(frame[0], *unit);
            if let (Ok(data), RtuRequest::Read { count, .. }) = (answer, &request) {
                match data {
                    RtuResponse::Bits(bits) => assert_eq!(bits.len(), usize::from(*count)),
                    RtuResponse::Words(words) => assert_eq!(words.len(), usize::from(*count)),
                    RtuResponse::Written => panic!("a read answered as a write"),
                }
            }
        }
    }
    // Streaming: a prefix either needs more bytes or already finds exactly this answer.
    for cut in [line.len() / 3, line.len() / 2, line.len().saturating_sub(1)] {
        match scan_response(&line[..cut], *unit, &request) {
            Scan::NeedMore { skipped } => assert!(skipped <= cut),
            found => assert_eq!(found, full, "prefix of {cut} bytes"),
        }
    }
});
