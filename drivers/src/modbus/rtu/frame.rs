//! Modbus RTU framing for the client side: CRC-16, request frames, and a scanner that finds the answer to one request in the bytes read from the line; pure, no I/O, no clock.
//!
//! An RTU frame is `unit, function, data..., CRC low, CRC high` (Modbus over serial line V1.02,
//! §2.5.1). RTU has no length field: a master knows the length of the answer from the request
//! it sent (Modbus Application Protocol V1.1b3, §6.1-6.12), so [`scan_response`] looks for
//! exactly that frame, or a 5-byte exception frame (§7), at every offset of its buffer. Bytes
//! before the answer (noise after a line turn-around, a late answer of another unit, a frame
//! with a bad CRC) are skipped and reported so the caller can count them as bad frames; nothing
//! the line sends can make the scanner panic or wait for more bytes than one answer needs.

use thiserror::Error;

/// Longest RTU frame: unit + 253 bytes of PDU + CRC (Modbus over serial line V1.02, §2.5.1).
pub const MAX_FRAME: usize = 256;

/// CRC-16/MODBUS (polynomial 0xA001 reflected, initial value 0xFFFF; Modbus over serial line
/// V1.02, §2.5.1.2 and Appendix B). Sent low byte first.
#[must_use]
pub fn crc16(bytes: &[u8]) -> u16 {
    bytes.iter().fold(0xffff_u16, |crc, &b| {
        let index = usize::from((crc ^ u16::from(b)) as u8);
        (crc >> 8) ^ CRC_TABLE[index]
    })
}

/// The CRC table for one byte at a time, built at compile time.
const CRC_TABLE: [u16; 256] = {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u16;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xa001
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

/// Appends the CRC of `frame` (low byte first).
pub fn push_crc(frame: &mut Vec<u8>) {
    let crc = crc16(frame);
    frame.extend_from_slice(&crc.to_le_bytes());
}

/// Whether the last two bytes of `frame` are the CRC of the bytes before them.
#[must_use]
pub fn crc_ok(frame: &[u8]) -> bool {
    match frame.len().checked_sub(2) {
        Some(body) if body > 0 => {
            crc16(&frame[..body]).to_le_bytes() == [frame[body], frame[body + 1]]
        }
        _ => false,
    }
}

/// A request the driver sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtuRequest {
    /// FC01 read coils, FC02 read discrete inputs, FC03 read holding registers, FC04 read input
    /// registers (§6.1-6.4): `function` is the code, `count` at most 2000 bits or 125 registers.
    Read {
        /// 0x01, 0x02, 0x03 or 0x04.
        function: u8,
        /// First address.
        start: u16,
        /// Quantity.
        count: u16,
    },
    /// FC05 write single coil (§6.5): 0xFF00 on, 0x0000 off.
    WriteSingleCoil {
        /// Coil address.
        address: u16,
        /// New state.
        on: bool,
    },
    /// FC06 write single register (§6.6).
    WriteSingleRegister {
        /// Register address.
        address: u16,
        /// New value.
        value: u16,
    },
    /// FC16 write multiple registers (§6.12), 1 to 123 registers.
    WriteMultipleRegisters {
        /// First register address.
        address: u16,
        /// Values in address order.
        values: Vec<u16>,
    },
}

/// A request that cannot be put in one RTU frame.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RequestError {
    /// Quantity outside what the function allows.
    #[error("FC{function:02} cannot carry a quantity of {count}")]
    BadQuantity {
        /// Function code.
        function: u8,
        /// Requested quantity.
        count: usize,
    },
    /// Not a read function code.
    #[error("FC{0:02} is not a read function")]
    NotARead(u8),
}

impl RtuRequest {
    /// The function code.
    #[must_use]
    pub fn function(&self) -> u8 {
        match self {
            RtuRequest::Read { function, .. } => *function,
            RtuRequest::WriteSingleCoil { .. } => 0x05,
            RtuRequest::WriteSingleRegister { .. } => 0x06,
            RtuRequest::WriteMultipleRegisters { .. } => 0x10,
        }
    }

    /// Checks function code and quantity limits.
    pub fn check(&self) -> Result<(), RequestError> {
        let (function, count, max) = match self {
            RtuRequest::Read {
                function: f @ (0x01 | 0x02),
                count,
                ..
            } => (*f, usize::from(*count), 2000),
            RtuRequest::Read {
                function: f @ (0x03 | 0x04),
                count,
                ..
            } => (*f, usize::from(*count), 125),
            RtuRequest::Read { function, .. } => return Err(RequestError::NotARead(*function)),
            RtuRequest::WriteMultipleRegisters { values, .. } => (0x10, values.len(), 123),
            RtuRequest::WriteSingleCoil { .. } | RtuRequest::WriteSingleRegister { .. } => {
                return Ok(());
            }
        };
        if count == 0 || count > max {
            return Err(RequestError::BadQuantity { function, count });
        }
        Ok(())
    }

    /// The whole frame for `unit`, CRC included.
    pub fn encode(&self, unit: u8) -> Result<Vec<u8>, RequestError> {
        self.check()?;
        let mut frame = vec![unit, self.function()];
        let mut word = |w: u16| frame.extend_from_slice(&w.to_be_bytes());
        match self {
            RtuRequest::Read { start, count, .. } => {
                word(*start);
                word(*count);
            }
            RtuRequest::WriteSingleCoil { address, on } => {
                word(*address);
                word(if *on { 0xff00 } else { 0x0000 });
            }
            RtuRequest::WriteSingleRegister { address, value } => {
                word(*address);
                word(*value);
            }
            RtuRequest::WriteMultipleRegisters { address, values } => {
                word(*address);
                // check() keeps the count within 1..=123, so both casts are exact.
                word(values.len() as u16);
                frame.push((values.len() * 2) as u8);
                for v in values {
                    frame.extend_from_slice(&v.to_be_bytes());
                }
            }
        }
        push_crc(&mut frame);
        Ok(frame)
    }

    /// Length of the normal answer frame, CRC included.
    #[must_use]
    pub fn response_len(&self) -> usize {
        match self {
            RtuRequest::Read { .. } => 3 + self.data_len() + 2,
            _ => 8,
        }
    }

    /// Length of this request's frame, CRC included.
    #[must_use]
    pub fn request_len(&self) -> usize {
        match self {
            RtuRequest::WriteMultipleRegisters { values, .. } => 9 + 2 * values.len(),
            _ => 8,
        }
    }

    /// Byte count field of a read answer.
    fn data_len(&self) -> usize {
        match self {
            RtuRequest::Read {
                function: 0x01 | 0x02,
                count,
                ..
            } => usize::from(*count).div_ceil(8),
            RtuRequest::Read { count, .. } => 2 * usize::from(*count),
            _ => 0,
        }
    }
}

/// The data of a normal answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtuResponse {
    /// FC01/FC02: exactly the requested number of bits.
    Bits(Vec<bool>),
    /// FC03/FC04: exactly the requested number of registers.
    Words(Vec<u16>),
    /// FC05/FC06/FC16: the device echoed the request.
    Written,
}

/// What [`scan_response`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scan {
    /// No answer yet. `skipped` leading bytes can never start one (drop them); read more.
    NeedMore {
        /// Leading bytes that are garbage.
        skipped: usize,
    },
    /// The answer: `skipped` garbage bytes, then a frame of `len` bytes.
    Frame {
        /// Garbage bytes before the frame.
        skipped: usize,
        /// Length of the frame, CRC included.
        len: usize,
        /// The data, or the device's exception code (§7).
        answer: Result<RtuResponse, u8>,
    },
}

/// Looks for the answer of `unit` to `request` in `buf` (the bytes read since the request was
/// sent). Never reads beyond `buf`, never panics.
#[must_use]
pub fn scan_response(buf: &[u8], unit: u8, request: &RtuRequest) -> Scan {
    for offset in 0..buf.len() {
        match candidate(&buf[offset..], unit, request) {
            Candidate::Invalid => {}
            Candidate::Incomplete => return Scan::NeedMore { skipped: offset },
            Candidate::Frame(len, answer) => {
                return Scan::Frame {
                    skipped: offset,
                    len,
                    answer,
                };
            }
        }
    }
    Scan::NeedMore { skipped: buf.len() }
}

enum Candidate {
    /// No answer starts here.
    Invalid,
    /// An answer may start here; more bytes are needed to tell.
    Incomplete,
    /// A whole answer starts here.
    Frame(usize, Result<RtuResponse, u8>),
}

fn candidate(b: &[u8], unit: u8, request: &RtuRequest) -> Candidate {
    if b.first() != Some(&unit) {
        return Candidate::Invalid;
    }
    let Some(&function) = b.get(1) else {
        return Candidate::Incomplete;
    };
    let expected = request.function();
    if function == expected | 0x80 {
        // Exception answer: unit, function | 0x80, code, CRC (§7).
        return match b.get(..5) {
            None => Candidate::Incomplete,
            Some(frame) if crc_ok(frame) => Candidate::Frame(5, Err(frame[2])),
            Some(_) => Candidate::Invalid,
        };
    }
    if function != expected {
        return Candidate::Invalid;
    }
    let len = request.response_len();
    if let RtuRequest::Read { .. } = request {
        match b.get(2) {
            None => return Candidate::Incomplete,
            Some(&count) if usize::from(count) != request.data_len() => {
                return Candidate::Invalid;
            }
            Some(_) => {}
        }
    }
    let Some(frame) = b.get(..len) else {
        return Candidate::Incomplete;
    };
    if !crc_ok(frame) {
        return Candidate::Invalid;
    }
    match parse_answer(frame, request) {
        Some(answer) => Candidate::Frame(len, Ok(answer)),
        None => Candidate::Invalid,
    }
}

/// The data of a CRC-checked normal answer of the right length, or `None` when a write echo
/// does not match the request.
fn parse_answer(frame: &[u8], request: &RtuRequest) -> Option<RtuResponse> {
    let word = |i: usize| -> Option<u16> {
        Some(u16::from_be_bytes([*frame.get(i)?, *frame.get(i + 1)?]))
    };
    match request {
        RtuRequest::Read {
            function: 0x01 | 0x02,
            count,
            ..
        } => {
            // Bits packed LSB first, first coil in the first byte (§6.1).
            let data = frame.get(3..3 + request.data_len())?;
            let bits = (0..usize::from(*count))
                .map(|i| {
                    data.get(i / 8)
                        .is_some_and(|byte| (byte >> (i % 8)) & 1 == 1)
                })
                .collect();
            Some(RtuResponse::Bits(bits))
        }
        RtuRequest::Read { count, .. } => {
            let words = (0..usize::from(*count))
                .map(|i| word(3 + 2 * i))
                .collect::<Option<Vec<u16>>>()?;
            Some(RtuResponse::Words(words))
        }
        RtuRequest::WriteSingleCoil { address, on } => {
            let value = if *on { 0xff00 } else { 0x0000 };
            (word(2)? == *address && word(4)? == value).then_some(RtuResponse::Written)
        }
        RtuRequest::WriteSingleRegister { address, value } => {
            (word(2)? == *address && word(4)? == *value).then_some(RtuResponse::Written)
        }
        RtuRequest::WriteMultipleRegisters { address, values } => {
            let count = u16::try_from(values.len()).ok()?;
            (word(2)? == *address && word(4)? == count).then_some(RtuResponse::Written)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(function: u8, start: u16, count: u16) -> RtuRequest {
        RtuRequest::Read {
            function,
            start,
            count,
        }
    }

    fn framed(body: &[u8]) -> Vec<u8> {
        let mut f = body.to_vec();
        push_crc(&mut f);
        f
    }

    #[test]
    fn crc_matches_the_spec_example() {
        // Modbus over serial line V1.02, Appendix B: 02 07 -> CRC 0x1241, sent 41 12.
        assert_eq!(crc16(&[0x02, 0x07]), 0x1241);
        assert_eq!(framed(&[0x02, 0x07]), vec![0x02, 0x07, 0x41, 0x12]);
        // The widely published read of 10 holding registers from unit 1 at 0.
        assert_eq!(
            read(0x03, 0, 10).encode(1),
            Ok(vec![0x01, 0x03, 0x00, 0x00, 0x00, 0x0a, 0xc5, 0xcd])
        );
        assert!(crc_ok(&[0x02, 0x07, 0x41, 0x12]));
        assert!(!crc_ok(&[0x02, 0x07, 0x41, 0x13]));
        assert!(!crc_ok(&[0x41, 0x12]));
        assert!(!crc_ok(&[]));
    }

    #[test]
    fn encodes_every_request_and_refuses_bad_quantities() {
        let fc16 = RtuRequest::WriteMultipleRegisters {
            address: 1,
            values: vec![0x41a8, 0x0000],
        };
        let frame = fc16.encode(7).unwrap();
        assert_eq!(&frame[..11], &[7, 0x10, 0, 1, 0, 2, 4, 0x41, 0xa8, 0, 0]);
        assert_eq!(frame.len(), fc16.request_len());
        assert!(crc_ok(&frame));
        let coil = RtuRequest::WriteSingleCoil {
            address: 3,
            on: true,
        };
        assert_eq!(&coil.encode(2).unwrap()[..6], &[2, 5, 0, 3, 0xff, 0]);
        assert_eq!(
            read(0x03, 0, 126).encode(1),
            Err(RequestError::BadQuantity {
                function: 3,
                count: 126
            })
        );
        assert!(read(0x01, 0, 2000).encode(1).is_ok());
        assert!(read(0x02, 0, 0).encode(1).is_err());
        assert_eq!(read(0x07, 0, 1).encode(1), Err(RequestError::NotARead(7)));
        let too_many = RtuRequest::WriteMultipleRegisters {
            address: 0,
            values: vec![0; 124],
        };
        assert!(too_many.encode(1).is_err());
        assert_eq!(read(0x01, 0, 9).response_len(), 3 + 2 + 2);
        assert_eq!(read(0x04, 0, 125).response_len(), 255);
    }

    #[test]
    fn finds_a_clean_answer() {
        let req = read(0x03, 0, 2);
        let answer = framed(&[1, 3, 4, 0x41, 0xa8, 0, 0]);
        assert_eq!(
            scan_response(&answer, 1, &req),
            Scan::Frame {
                skipped: 0,
                len: 9,
                answer: Ok(RtuResponse::Words(vec![0x41a8, 0]))
            }
        );
        let bits = framed(&[1, 1, 2, 0b1000_0101, 0b0000_0001]);
        assert_eq!(
            scan_response(&bits, 1, &read(0x01, 0, 9)),
            Scan::Frame {
                skipped: 0,
                len: 7,
                answer: Ok(RtuResponse::Bits(vec![
                    true, false, true, false, false, false, false, true, true
                ]))
            }
        );
    }

    #[test]
    fn every_partial_answer_asks_for_more() {
        let req = read(0x03, 0, 2);
        let answer = framed(&[1, 3, 4, 0, 1, 0, 2]);
        for cut in 0..answer.len() {
            assert_eq!(
                scan_response(&answer[..cut], 1, &req),
                Scan::NeedMore { skipped: 0 },
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn exceptions_are_answers_not_errors() {
        let req = RtuRequest::WriteSingleRegister {
            address: 0,
            value: 200,
        };
        let answer = framed(&[4, 0x86, 0x03]);
        assert_eq!(
            scan_response(&answer, 4, &req),
            Scan::Frame {
                skipped: 0,
                len: 5,
                answer: Err(3)
            }
        );
        // An exception for another function is not ours.
        assert_eq!(
            scan_response(&framed(&[4, 0x83, 0x02]), 4, &req),
            Scan::NeedMore { skipped: 5 }
        );
    }

    #[test]
    fn skips_garbage_bad_crc_and_other_units() {
        let req = read(0x04, 2, 1);
        let good = framed(&[9, 4, 2, 0x01, 0xa4]);
        let mut bad_crc = good.clone();
        bad_crc[4] ^= 0xff;
        let other_unit = framed(&[8, 4, 2, 0, 0]);
        let mut line = vec![0x00, 0xff, 9, 9];
        line.extend(&bad_crc);
        line.extend(&other_unit);
        line.extend(&good);
        let skipped = line.len() - good.len();
        assert_eq!(
            scan_response(&line, 9, &req),
            Scan::Frame {
                skipped,
                len: 7,
                answer: Ok(RtuResponse::Words(vec![420]))
            }
        );
        // Garbage that starts like an answer waits only until it can be judged.
        assert_eq!(
            scan_response(&[0x55, 9, 4], 9, &req),
            Scan::NeedMore { skipped: 1 }
        );
        assert_eq!(
            scan_response(&[9, 4, 7], 9, &req),
            Scan::NeedMore { skipped: 3 },
            "wrong byte count"
        );
    }

    #[test]
    fn write_echoes_must_match() {
        let req = RtuRequest::WriteSingleCoil {
            address: 2,
            on: false,
        };
        let echo = framed(&[1, 5, 0, 2, 0, 0]);
        assert!(matches!(
            scan_response(&echo, 1, &req),
            Scan::Frame {
                answer: Ok(RtuResponse::Written),
                ..
            }
        ));
        let wrong = framed(&[1, 5, 0, 2, 0xff, 0]);
        assert_eq!(
            scan_response(&wrong, 1, &req),
            Scan::NeedMore { skipped: 8 }
        );
        let fc16 = RtuRequest::WriteMultipleRegisters {
            address: 1,
            values: vec![1, 2],
        };
        assert!(matches!(
            scan_response(&framed(&[1, 0x10, 0, 1, 0, 2]), 1, &fc16),
            Scan::Frame {
                answer: Ok(RtuResponse::Written),
                ..
            }
        ));
    }

    /// Deterministic noise never panics, and a clean answer after any noise is still found.
    #[test]
    fn noise_then_answer() {
        let req = read(0x03, 0, 3);
        let good = framed(&[5, 3, 6, 0, 1, 0, 2, 0, 3]);
        let mut seed: u32 = 0x1234_5678;
        for round in 0..500 {
            let mut line = Vec::new();
            for _ in 0..(round % 40) {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                line.push(seed as u8);
            }
            let _ = scan_response(&line, 5, &req);
            line.extend(&good);
            match scan_response(&line, 5, &req) {
                Scan::Frame { answer, len, .. } => {
                    assert_eq!(len, good.len());
                    assert_eq!(answer, Ok(RtuResponse::Words(vec![1, 2, 3])));
                }
                other => panic!("round {round}: {other:?}"),
            }
        }
    }
}
