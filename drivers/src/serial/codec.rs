//! Streaming decoders for serial line devices: arbitrary byte chunks in, events and counted bad frames out. Pure: no I/O, no clock.
//!
//! A [`Decoder`] is built from a compiled [`Profile`] and fed whatever a read returned
//! ([`Decoder::feed`]): a frame split over many reads, several frames in one read, noise between
//! them. It yields [`Decoded`] items in stream order. The output depends only on the bytes, never
//! on how they were chunked, and on the calls to [`Decoder::idle`], by which the owner says the
//! line has been quiet for a frame gap (a partial frame is then reported as truncated: a decoder
//! that knows no clock cannot tell a slow frame from a cut one by itself).
//!
//! # Guarantees
//!
//! * Memory is bounded: an ASCII decoder holds at most the profile's `max_len` bytes, a binary
//!   decoder at most `max_payload + 4`. Longer input is reported as [`BadFrame::TooLong`] and
//!   skipped up to the next frame boundary.
//! * Every byte is consumed or waits for a frame that is still within bounds: the decoder never
//!   stalls, and no input makes it panic (fuzzed: `drivers/fuzz`, targets `serial_*`).
//! * A bad frame costs that frame only: the decoder resynchronises on the next start byte or
//!   terminator. In binary profiles a frame that fails its checksum is rescanned from its second
//!   byte, so a truncated frame does not swallow the good frame that cut it short (it is then
//!   reported as [`BadFrame::Truncated`]; a failed frame with no good frame inside it is
//!   [`BadFrame::BadChecksum`]).
//!
//! # What counts as what
//!
//! | item                     | ASCII lines / delimited                                        | binary                                               |
//! |--------------------------|-----------------------------------------------------------------|------------------------------------------------------|
//! | [`Decoded::Event`]       | a frame that matched a rule                                     | a valid frame of a configured type with a fitting payload |
//! | [`BadFrame::Unrecognized`] | a clean text frame that matched no rule                       | a valid frame of an unknown type, or a payload that does not fit its type |
//! | [`BadFrame::Garbage`]    | a frame holding control characters or invalid UTF-8; bytes outside STX..ETX (whitespace excepted) | bytes before a start byte (reported per run, at most 256 bytes a run) |
//! | [`BadFrame::Truncated`]  | a start byte inside a frame; a partial frame at [`Decoder::idle`] | a frame cut short by a good frame; a partial frame at idle |
//! | [`BadFrame::TooLong`]    | more than `max_len` bytes without an end                        | `LEN` above `max_payload`                            |
//! | [`BadFrame::BadChecksum`] | -                                                              | a complete frame whose checksum fails                |

use std::fmt::Write as _;

use super::pattern::parse_flag;
use super::profile::{
    Action, AsciiProfile, BinaryProfile, ChecksumSpec, CredentialEncoding, Profile, ProfileKind,
};
use crate::device::CredentialKind;

/// A garbage run is reported when it reaches this many bytes (and when it ends).
pub const GARBAGE_RUN: usize = 256;

/// One item of decoder output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A recognised frame.
    Event(FrameEvent),
    /// Something that was not a usable frame; counted and dropped.
    Bad(BadFrame),
}

impl Decoded {
    /// Whether a well-formed frame was seen (an event, or a frame no rule recognised): the
    /// device is alive and talking.
    #[must_use]
    pub fn is_frame(&self) -> bool {
        matches!(
            self,
            Decoded::Event(_) | Decoded::Bad(BadFrame::Unrecognized)
        )
    }
}

/// What a recognised frame says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameEvent {
    /// The occupancy `point` is now `occupied`.
    Occupancy { point: String, occupied: bool },
    /// A credential was presented at `reader`.
    Credential {
        reader: String,
        kind: CredentialKind,
        credential: String,
    },
    /// The device is alive (heartbeat, banner); nothing else.
    Heartbeat,
}

/// A frame that was dropped, and why (see the module docs for the exact rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BadFrame {
    /// Bytes that are not a frame.
    Garbage { bytes: usize },
    /// A frame cut short.
    Truncated,
    /// A frame longer than the profile allows.
    TooLong,
    /// A complete binary frame whose checksum fails.
    BadChecksum,
    /// A well-formed frame that no rule or message type recognises.
    Unrecognized,
}

/// Totals since the decoder was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecoderStats {
    /// Well-formed frames (events and unrecognised frames).
    pub frames: u64,
    /// Frames that gave an event (heartbeats included).
    pub events: u64,
    /// Garbage runs.
    pub garbage: u64,
    /// Bytes in garbage runs.
    pub garbage_bytes: u64,
    pub truncated: u64,
    pub too_long: u64,
    pub bad_checksum: u64,
    pub unrecognized: u64,
}

impl DecoderStats {
    /// Everything that was dropped: garbage runs, truncated, over-long, bad-checksum and
    /// unrecognised frames.
    #[must_use]
    pub fn bad_frames(&self) -> u64 {
        self.garbage + self.truncated + self.too_long + self.bad_checksum + self.unrecognized
    }

    fn count(&mut self, item: &Decoded) {
        match item {
            Decoded::Event(_) => {
                self.frames += 1;
                self.events += 1;
            }
            Decoded::Bad(BadFrame::Unrecognized) => {
                self.frames += 1;
                self.unrecognized += 1;
            }
            Decoded::Bad(BadFrame::Garbage { bytes }) => {
                self.garbage += 1;
                self.garbage_bytes += *bytes as u64;
            }
            Decoded::Bad(BadFrame::Truncated) => self.truncated += 1,
            Decoded::Bad(BadFrame::TooLong) => self.too_long += 1,
            Decoded::Bad(BadFrame::BadChecksum) => self.bad_checksum += 1,
        }
    }
}

/// Collects output and keeps the totals.
struct Sink<'a> {
    out: &'a mut Vec<Decoded>,
    stats: &'a mut DecoderStats,
}

impl Sink<'_> {
    fn emit(&mut self, item: Decoded) {
        self.stats.count(&item);
        self.out.push(item);
    }

    fn bad(&mut self, bad: BadFrame) {
        self.emit(Decoded::Bad(bad));
    }
}

/// A streaming decoder for one profile.
#[derive(Debug, Clone)]
pub struct Decoder {
    inner: Inner,
    stats: DecoderStats,
}

#[derive(Debug, Clone)]
enum Inner {
    Ascii(AsciiDecoder),
    Binary(BinaryDecoder),
}

impl Decoder {
    /// A decoder in its initial state (between frames).
    #[must_use]
    pub fn new(profile: &Profile) -> Decoder {
        let inner = match &profile.kind {
            ProfileKind::Ascii(p) => Inner::Ascii(AsciiDecoder::new(p.clone())),
            ProfileKind::Binary(p) => Inner::Binary(BinaryDecoder::new(p.clone())),
        };
        Decoder {
            inner,
            stats: DecoderStats::default(),
        }
    }

    /// Feeds the next bytes of the stream; appends what they complete to `out`, in order.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<Decoded>) {
        let mut sink = Sink {
            out,
            stats: &mut self.stats,
        };
        match &mut self.inner {
            Inner::Ascii(d) => chunk.iter().for_each(|&b| d.byte(b, &mut sink)),
            Inner::Binary(d) => chunk.iter().for_each(|&b| d.byte(b, &mut sink)),
        }
    }

    /// The line has been quiet for a frame gap: whatever is pending is reported (a partial
    /// frame as [`BadFrame::Truncated`], a garbage run as [`BadFrame::Garbage`]) and the decoder
    /// waits for a new frame. Does nothing between frames.
    pub fn idle(&mut self, out: &mut Vec<Decoded>) {
        let mut sink = Sink {
            out,
            stats: &mut self.stats,
        };
        match &mut self.inner {
            Inner::Ascii(d) => d.idle(&mut sink),
            Inner::Binary(d) => d.idle(&mut sink),
        }
    }

    /// Whether bytes are pending (a partial frame or an unreported garbage run): the owner
    /// calls [`Decoder::idle`] after a frame gap only then.
    #[must_use]
    pub fn is_mid_frame(&self) -> bool {
        match &self.inner {
            Inner::Ascii(d) => d.is_mid_frame(),
            Inner::Binary(d) => d.is_mid_frame(),
        }
    }

    /// Totals so far.
    #[must_use]
    pub fn stats(&self) -> DecoderStats {
        self.stats
    }
}

// ---------------------------------------------------------------------------------------------
// ASCII

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AsciiState {
    /// Delimited framing, waiting for the start byte.
    Outside,
    /// Collecting a frame.
    Inside,
    /// After an over-long frame was reported: skipping to the next boundary.
    Skipping,
}

#[derive(Debug, Clone)]
struct AsciiDecoder {
    profile: AsciiProfile,
    state: AsciiState,
    buf: Vec<u8>,
    garbage: usize,
}

/// Control characters other than tab, CR and LF, and DEL, are line noise inside a text frame.
fn is_noise(b: u8) -> bool {
    (b < 0x20 && !matches!(b, b'\t' | b'\r' | b'\n')) || b == 0x7f
}

impl AsciiDecoder {
    fn new(profile: AsciiProfile) -> Self {
        let state = if profile.start.is_some() {
            AsciiState::Outside
        } else {
            AsciiState::Inside
        };
        AsciiDecoder {
            buf: Vec::with_capacity(profile.max_len),
            profile,
            state,
            garbage: 0,
        }
    }

    /// The state between frames.
    fn rest_state(&self) -> AsciiState {
        if self.profile.start.is_some() {
            AsciiState::Outside
        } else {
            AsciiState::Inside
        }
    }

    fn byte(&mut self, b: u8, sink: &mut Sink<'_>) {
        let is_start = self.profile.start == Some(b);
        let is_end = self.profile.end.contains(&b);
        match self.state {
            AsciiState::Outside => {
                if is_start {
                    self.flush_garbage(sink);
                    self.state = AsciiState::Inside;
                } else if !matches!(b, b' ' | b'\t' | b'\r' | b'\n') {
                    self.garbage += 1;
                    if self.garbage >= GARBAGE_RUN {
                        self.flush_garbage(sink);
                    }
                }
            }
            AsciiState::Inside => {
                if is_start {
                    // A new frame began before this one ended.
                    sink.bad(BadFrame::Truncated);
                    self.buf.clear();
                } else if is_end {
                    let delimited = self.profile.start.is_some();
                    // Lines: empty lines (CR LF pairs, blank lines) are not frames.
                    if delimited || !self.buf.is_empty() {
                        let item = self.frame();
                        sink.emit(item);
                    }
                    self.buf.clear();
                    self.state = self.rest_state();
                } else if self.buf.len() >= self.profile.max_len {
                    sink.bad(BadFrame::TooLong);
                    self.buf.clear();
                    self.state = AsciiState::Skipping;
                } else {
                    self.buf.push(b);
                }
            }
            AsciiState::Skipping => {
                if is_start {
                    self.state = AsciiState::Inside;
                } else if is_end {
                    self.state = self.rest_state();
                }
            }
        }
    }

    fn idle(&mut self, sink: &mut Sink<'_>) {
        self.flush_garbage(sink);
        let delimited = self.profile.start.is_some();
        if self.state == AsciiState::Inside && (delimited || !self.buf.is_empty()) {
            sink.bad(BadFrame::Truncated);
        }
        self.buf.clear();
        self.state = self.rest_state();
    }

    fn is_mid_frame(&self) -> bool {
        self.garbage > 0
            || !self.buf.is_empty()
            || self.state == AsciiState::Skipping
            || (self.state == AsciiState::Inside && self.profile.start.is_some())
    }

    fn flush_garbage(&mut self, sink: &mut Sink<'_>) {
        if self.garbage > 0 {
            sink.bad(BadFrame::Garbage {
                bytes: self.garbage,
            });
            self.garbage = 0;
        }
    }

    /// Interprets the complete frame in `buf`.
    fn frame(&self) -> Decoded {
        let garbage = Decoded::Bad(BadFrame::Garbage {
            bytes: self.buf.len(),
        });
        if self.buf.iter().any(|&b| is_noise(b)) {
            return garbage;
        }
        let Ok(text) = std::str::from_utf8(&self.buf) else {
            return garbage;
        };
        let text = if self.profile.trim {
            text.trim_matches([' ', '\t', '\r', '\n'])
        } else {
            text
        };
        for rule in &self.profile.rules {
            let Some(found) = rule.pattern.matches(text) else {
                continue;
            };
            let event = match &rule.action {
                Action::Occupancy { point, value } => {
                    let occupied = match value {
                        Some(v) => Some(*v),
                        None => found.captured.and_then(parse_flag),
                    };
                    occupied.map(|occupied| FrameEvent::Occupancy {
                        point: point.clone(),
                        occupied,
                    })
                }
                Action::Credential { reader, kind, .. } => {
                    found.captured.map(|credential| FrameEvent::Credential {
                        reader: reader.clone(),
                        kind: *kind,
                        credential: credential.to_owned(),
                    })
                }
                Action::Heartbeat => Some(FrameEvent::Heartbeat),
            };
            // Profile::compile makes sure a matching rule can always produce its event.
            return event.map_or(Decoded::Bad(BadFrame::Unrecognized), Decoded::Event);
        }
        Decoded::Bad(BadFrame::Unrecognized)
    }
}

// ---------------------------------------------------------------------------------------------
// Binary

/// A candidate that failed (bad checksum or over-long length) and the bytes of its claimed
/// extent still ahead: a good frame starting within them shows it was cut short.
#[derive(Debug, Clone, Copy)]
struct Failed {
    kind: BadFrame,
    span_left: usize,
}

#[derive(Debug, Clone)]
struct BinaryDecoder {
    profile: BinaryProfile,
    buf: Vec<u8>,
    garbage: usize,
    failed: Option<Failed>,
}

impl BinaryDecoder {
    fn new(profile: BinaryProfile) -> Self {
        BinaryDecoder {
            buf: Vec::with_capacity(usize::from(profile.max_payload) + 4),
            profile,
            garbage: 0,
            failed: None,
        }
    }

    fn byte(&mut self, b: u8, sink: &mut Sink<'_>) {
        self.buf.push(b);
        self.scan(sink);
    }

    /// Consumes as much of `buf` as can be decided. Leaves at most one incomplete candidate
    /// (shorter than `max_payload + 4`) in the buffer.
    fn scan(&mut self, sink: &mut Sink<'_>) {
        loop {
            let Some(&first) = self.buf.first() else {
                return;
            };
            if first != self.profile.start {
                self.drop_byte(sink);
                continue;
            }
            let Some(&len) = self.buf.get(1) else {
                return;
            };
            if len > self.profile.max_payload {
                let span = usize::from(len) + 3;
                self.fail(BadFrame::TooLong, span, sink);
                continue;
            }
            let need = usize::from(len) + 4;
            let Some(frame) = self.buf.get(..need) else {
                return;
            };
            let (covered, sent) = frame[1..].split_at(need - 2);
            if checksum(self.profile.checksum, covered) != sent[0] {
                self.fail(BadFrame::BadChecksum, need - 1, sink);
                continue;
            }
            let item = self.interpret(frame[2], &frame[3..need - 1]);
            if let Some(failed) = self.failed.take() {
                // The failed candidate's extent reaches into this good frame: it was cut short.
                sink.bad(match failed.kind {
                    BadFrame::BadChecksum => BadFrame::Truncated,
                    other => other,
                });
            }
            self.flush_garbage(sink);
            sink.emit(item);
            self.buf.drain(..need);
        }
    }

    /// The candidate at the front failed: remember it (unless an earlier failure's extent
    /// covers it, then it is part of that one) and rescan from its second byte.
    fn fail(&mut self, kind: BadFrame, span_left: usize, sink: &mut Sink<'_>) {
        if self.failed.is_some() {
            self.drop_byte(sink);
        } else {
            self.flush_garbage(sink);
            self.failed = Some(Failed { kind, span_left });
            self.buf.drain(..1);
        }
    }

    /// Drops the front byte: part of a failed frame's extent, or garbage.
    fn drop_byte(&mut self, sink: &mut Sink<'_>) {
        self.buf.drain(..1);
        match &mut self.failed {
            Some(failed) => {
                failed.span_left = failed.span_left.saturating_sub(1);
                if failed.span_left == 0 {
                    sink.bad(failed.kind);
                    self.failed = None;
                }
            }
            None => {
                self.garbage += 1;
                if self.garbage >= GARBAGE_RUN {
                    self.flush_garbage(sink);
                }
            }
        }
    }

    fn flush_garbage(&mut self, sink: &mut Sink<'_>) {
        if self.garbage > 0 {
            sink.bad(BadFrame::Garbage {
                bytes: self.garbage,
            });
            self.garbage = 0;
        }
    }

    fn idle(&mut self, sink: &mut Sink<'_>) {
        self.flush_garbage(sink);
        if let Some(failed) = self.failed.take() {
            sink.bad(failed.kind);
            let absorbed = failed.span_left.min(self.buf.len());
            self.buf.drain(..absorbed);
        }
        if !self.buf.is_empty() {
            sink.bad(BadFrame::Truncated);
            self.buf.clear();
        }
    }

    fn is_mid_frame(&self) -> bool {
        !self.buf.is_empty() || self.garbage > 0 || self.failed.is_some()
    }

    fn interpret(&self, message_type: u8, payload: &[u8]) -> Decoded {
        let unrecognized = Decoded::Bad(BadFrame::Unrecognized);
        let Some(action) = self.profile.messages.get(&message_type) else {
            return unrecognized;
        };
        let event = match action {
            Action::Occupancy { point, value } => {
                let occupied = match (value, payload) {
                    (Some(v), []) => Some(*v),
                    (None, [0]) => Some(false),
                    (None, [1]) => Some(true),
                    _ => None,
                };
                occupied.map(|occupied| FrameEvent::Occupancy {
                    point: point.clone(),
                    occupied,
                })
            }
            Action::Credential {
                reader,
                kind,
                encoding,
            } => render_credential(*encoding, payload).map(|credential| FrameEvent::Credential {
                reader: reader.clone(),
                kind: *kind,
                credential,
            }),
            Action::Heartbeat => Some(FrameEvent::Heartbeat),
        };
        event.map_or(unrecognized, Decoded::Event)
    }
}

/// The checksum of a binary frame over `LEN TYPE PAYLOAD`.
fn checksum(kind: ChecksumSpec, covered: &[u8]) -> u8 {
    match kind {
        ChecksumSpec::Xor => covered.iter().fold(0, |acc, b| acc ^ b),
        ChecksumSpec::Sum8 => covered.iter().fold(0u8, |acc, &b| acc.wrapping_add(b)),
    }
}

fn render_credential(encoding: CredentialEncoding, payload: &[u8]) -> Option<String> {
    if payload.is_empty() {
        return None;
    }
    match encoding {
        CredentialEncoding::Hex => {
            let mut s = String::with_capacity(payload.len() * 2);
            for b in payload {
                let _ = write!(s, "{b:02X}");
            }
            Some(s)
        }
        CredentialEncoding::Decimal => {
            if payload.len() > 16 {
                return None;
            }
            let n = payload
                .iter()
                .fold(0u128, |acc, &b| (acc << 8) | u128::from(b));
            Some(n.to_string())
        }
        CredentialEncoding::Ascii => {
            let text = std::str::from_utf8(payload).ok()?.trim();
            let printable = text.bytes().all(|b| (0x20..0x7f).contains(&b));
            (printable && !text.is_empty()).then(|| text.to_owned())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serial::profile::{
        AsciiProfileSpec, AsciiRuleSpec, BinaryMessageSpec, BinaryProfileSpec, CredentialKindSpec,
        ProfileSpec,
    };

    fn builtin(name: &str) -> Profile {
        Profile::compile(&ProfileSpec::builtin(name).unwrap()).unwrap()
    }

    fn decode_chunks(profile: &Profile, chunks: &[&[u8]]) -> (Vec<Decoded>, DecoderStats) {
        let mut d = Decoder::new(profile);
        let mut out = Vec::new();
        for c in chunks {
            d.feed(c, &mut out);
        }
        d.idle(&mut out);
        assert!(!d.is_mid_frame());
        (out, d.stats())
    }

    fn decode(profile: &Profile, bytes: &[u8]) -> Vec<Decoded> {
        decode_chunks(profile, &[bytes]).0
    }

    /// Every split into two chunks, every split into three around each point, and one byte at
    /// a time all give the output of the whole stream at once.
    fn assert_chunking_invariant(profile: &Profile, bytes: &[u8]) -> Vec<Decoded> {
        let whole = decode(profile, bytes);
        for i in 0..=bytes.len() {
            let (a, b) = bytes.split_at(i);
            assert_eq!(decode_chunks(profile, &[a, b]).0, whole, "split at {i}");
            for j in i..=bytes.len() {
                let (b1, b2) = b.split_at(j - i);
                assert_eq!(
                    decode_chunks(profile, &[a, b1, b2]).0,
                    whole,
                    "split at {i},{j}"
                );
            }
        }
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(decode_chunks(profile, &singles).0, whole, "byte by byte");
        whole
    }

    fn occ(point: &str, occupied: bool) -> Decoded {
        Decoded::Event(FrameEvent::Occupancy {
            point: point.into(),
            occupied,
        })
    }

    fn cred(kind: CredentialKind, credential: &str) -> Decoded {
        Decoded::Event(FrameEvent::Credential {
            reader: "reader".into(),
            kind,
            credential: credential.into(),
        })
    }

    fn bad(b: BadFrame) -> Decoded {
        Decoded::Bad(b)
    }

    /// `AA LEN TYPE PAYLOAD XOR`, written out by hand.
    fn bin(message_type: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0xAA, payload.len() as u8, message_type];
        f.extend_from_slice(payload);
        let x = f[1..].iter().fold(0, |a, b| a ^ b);
        f.push(x);
        f
    }

    #[test]
    fn ascii_lines_any_chunking() {
        let p = builtin("ascii-occupancy");
        let stream = b"OCC=1\r\nHB\n\r\nOCC=0\rOCC=2\r\n OCC=on \n";
        let out = assert_chunking_invariant(&p, stream);
        assert_eq!(
            out,
            vec![
                occ("occupancy", true),
                Decoded::Event(FrameEvent::Heartbeat),
                occ("occupancy", false),
                bad(BadFrame::Unrecognized),
                occ("occupancy", true),
            ]
        );
    }

    #[test]
    fn ascii_noise_costs_one_line() {
        let p = builtin("ascii-occupancy");
        let stream = b"\x13\x99OCC=1\r\n\xff\xfe\nOCC=1\r\n";
        let out = assert_chunking_invariant(&p, stream);
        assert_eq!(
            out,
            vec![
                bad(BadFrame::Garbage { bytes: 7 }),
                bad(BadFrame::Garbage { bytes: 2 }),
                occ("occupancy", true),
            ]
        );
    }

    #[test]
    fn ascii_lines_truncated_at_idle_and_too_long() {
        let p = builtin("ascii-occupancy");
        let mut d = Decoder::new(&p);
        let mut out = Vec::new();
        d.feed(b"OCC=1\r\nOC", &mut out);
        assert!(d.is_mid_frame());
        d.idle(&mut out);
        d.idle(&mut out); // a second idle has nothing to report
        d.feed(b"C=0\n", &mut out);
        assert_eq!(
            out,
            vec![
                occ("occupancy", true),
                bad(BadFrame::Truncated),
                bad(BadFrame::Unrecognized)
            ]
        );

        let mut long = vec![b'A'; 1000];
        long.extend_from_slice(b"\nOCC=0\n");
        let (out, stats) = decode_chunks(&p, &[&long]);
        assert_eq!(out, vec![bad(BadFrame::TooLong), occ("occupancy", false)]);
        assert_eq!(stats.too_long, 1);
        assert_eq!(stats.bad_frames(), 1);
    }

    #[test]
    fn stx_etx_cards_any_chunking() {
        let p = builtin("ascii-card-stx");
        let stream = b"\x020004618125\x03\r\n\x02123\x03zz\x0200012\x020004618126\x03\x02\x03\x0212345678901234567890123456789012345678901234567890123456789012345\x03\x0277\x03\x02  4242 \x03";
        let out = assert_chunking_invariant(&p, stream);
        assert_eq!(
            out,
            vec![
                cred(CredentialKind::Card, "0004618125"),
                bad(BadFrame::Unrecognized), // 3 digits: below the 4-digit minimum
                bad(BadFrame::Garbage { bytes: 2 }),
                bad(BadFrame::Truncated),
                cred(CredentialKind::Card, "0004618126"),
                bad(BadFrame::Unrecognized), // empty frame
                bad(BadFrame::TooLong),
                bad(BadFrame::Unrecognized), // "77"
                cred(CredentialKind::Card, "4242"),
            ]
        );
    }

    #[test]
    fn stx_without_etx_is_truncated_at_idle() {
        let p = builtin("ascii-card-stx");
        let out = decode(&p, b"\x021234");
        assert_eq!(out, vec![bad(BadFrame::Truncated)]);
        let out = decode(&p, b"xyz");
        assert_eq!(out, vec![bad(BadFrame::Garbage { bytes: 3 })]);
    }

    #[test]
    fn qr_and_pin_lines() {
        let p = builtin("ascii-qr");
        let out = assert_chunking_invariant(
            &p,
            "QR:https://x.test/r/301?a=1 b\r\nPIN:1234\r\nPIN:12\r\nQR:Zimmer-Größe\n".as_bytes(),
        );
        assert_eq!(
            out,
            vec![
                cred(CredentialKind::Qr, "https://x.test/r/301?a=1 b"),
                cred(CredentialKind::Pin, "1234"),
                bad(BadFrame::Unrecognized),
                cred(CredentialKind::Qr, "Zimmer-Größe"),
            ]
        );
    }

    #[test]
    fn garbage_runs_are_reported_in_bounded_pieces() {
        let p = builtin("ascii-card-stx");
        let junk = vec![b'#'; GARBAGE_RUN * 2 + 3];
        let mut d = Decoder::new(&p);
        let mut out = Vec::new();
        d.feed(&junk, &mut out);
        assert_eq!(out.len(), 2, "reported without waiting for a frame");
        d.feed(b"\x021234\x03", &mut out);
        assert_eq!(
            out[2..],
            [
                bad(BadFrame::Garbage { bytes: 3 }),
                cred(CredentialKind::Card, "1234")
            ]
        );
    }

    #[test]
    fn binary_frames_any_chunking() {
        let p = builtin("binary-aa");
        let mut stream = Vec::new();
        stream.extend(bin(0x01, &[1]));
        stream.extend(bin(0x02, &[0x04, 0x6A, 0x1F, 0xC2]));
        stream.extend([0x00, 0x55, 0x13]); // noise
        stream.extend(bin(0x03, b" ROOM-301 "));
        stream.extend(bin(0x7F, &[]));
        stream.extend(bin(0x01, &[0]));
        stream.extend(bin(0x55, &[9])); // unknown type
        stream.extend(bin(0x01, &[7])); // bad payload for its type
        let out = assert_chunking_invariant(&p, &stream);
        assert_eq!(
            out,
            vec![
                occ("occupancy", true),
                cred(CredentialKind::Card, "046A1FC2"),
                bad(BadFrame::Garbage { bytes: 3 }),
                cred(CredentialKind::Qr, "ROOM-301"),
                Decoded::Event(FrameEvent::Heartbeat),
                occ("occupancy", false),
                bad(BadFrame::Unrecognized),
                bad(BadFrame::Unrecognized),
            ]
        );
    }

    #[test]
    fn binary_bad_checksum_then_good_frame() {
        let p = builtin("binary-aa");
        let mut corrupt = bin(0x02, &[1, 2, 3, 4]);
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0x40;
        let mut stream = corrupt.clone();
        stream.extend(bin(0x01, &[1]));
        let out = assert_chunking_invariant(&p, &stream);
        assert_eq!(
            out,
            vec![bad(BadFrame::BadChecksum), occ("occupancy", true)]
        );
        // A corrupted payload byte, not the checksum.
        let mut corrupt = bin(0x02, &[1, 2, 3, 4]);
        corrupt[4] = 0xAA;
        corrupt.extend(bin(0x01, &[0]));
        let (out, stats) = decode_chunks(&p, &[&corrupt]);
        assert_eq!(
            out,
            vec![bad(BadFrame::BadChecksum), occ("occupancy", false)]
        );
        assert_eq!(stats.bad_frames(), 1);
    }

    #[test]
    fn binary_truncated_frame_does_not_swallow_the_next() {
        let p = builtin("binary-aa");
        let card = bin(0x02, &[0xDE, 0xAD, 0xBE, 0xEF, 0x01, 0x02]);
        let mut stream = card[..5].to_vec(); // cut after two payload bytes
        stream.extend(bin(0x01, &[1]));
        stream.extend(bin(0x01, &[0]));
        stream.extend(card.clone());
        let out = assert_chunking_invariant(&p, &stream);
        assert_eq!(
            out,
            vec![
                bad(BadFrame::Truncated),
                occ("occupancy", true),
                occ("occupancy", false),
                cred(CredentialKind::Card, "DEADBEEF0102"),
            ]
        );
        // Cut and then silence.
        assert_eq!(decode(&p, &card[..4]), vec![bad(BadFrame::Truncated)]);
    }

    #[test]
    fn binary_over_long_length_is_skipped() {
        let p = builtin("binary-aa");
        let mut stream = vec![0xAA, 200, 0x02, 1, 2, 3];
        stream.extend(bin(0x01, &[1]));
        let out = assert_chunking_invariant(&p, &stream);
        assert_eq!(out, vec![bad(BadFrame::TooLong), occ("occupancy", true)]);
        // Alone, it is reported once its claimed extent has passed (or at idle).
        let out = decode(&p, &[0xAA, 200, 0x02]);
        assert_eq!(out, vec![bad(BadFrame::TooLong)]);
    }

    #[test]
    fn binary_buffer_stays_bounded() {
        let p = builtin("binary-aa");
        let mut d = Decoder::new(&p);
        let mut out = Vec::new();
        // Start bytes claiming the longest allowed payload, never completed with a valid sum.
        for _ in 0..100 {
            d.feed(&[0xAA, 32], &mut out);
            d.feed(&[0x55; 40], &mut out);
            let Inner::Binary(b) = &d.inner else {
                unreachable!()
            };
            assert!(b.buf.len() <= 36);
        }
        d.feed(&bin(0x01, &[1]), &mut out);
        assert_eq!(out.last(), Some(&occ("occupancy", true)));
    }

    #[test]
    fn decimal_and_sum8_binary_profile() {
        let spec = ProfileSpec::Binary(BinaryProfileSpec {
            start: 0x02,
            checksum: ChecksumSpec::Sum8,
            max_payload: 20,
            messages: vec![
                BinaryMessageSpec::Credential {
                    message_type: 0x20,
                    reader: "reader".into(),
                    kind: CredentialKindSpec::Card,
                    encoding: CredentialEncoding::Decimal,
                },
                BinaryMessageSpec::Occupancy {
                    message_type: 0x10,
                    point: "seat".into(),
                    value: Some(true),
                },
            ],
        });
        let p = Profile::compile(&spec).unwrap();
        let frame = |t: u8, payload: &[u8]| {
            let mut f = vec![0x02, payload.len() as u8, t];
            f.extend_from_slice(payload);
            let s = f[1..].iter().fold(0u8, |a, &b| a.wrapping_add(b));
            f.push(s);
            f
        };
        let mut stream = frame(0x20, &[0x00, 0x46, 0x7A, 0x2D]);
        stream.extend(frame(0x10, &[]));
        stream.extend(frame(0x10, &[1])); // fixed value: payload must be empty
        stream.extend(frame(0x20, &[0xFF; 17])); // too wide for a decimal
        assert_eq!(
            assert_chunking_invariant(&p, &stream),
            vec![
                cred(CredentialKind::Card, "4618797"),
                occ("seat", true),
                bad(BadFrame::Unrecognized),
                bad(BadFrame::Unrecognized),
            ]
        );
    }

    #[test]
    fn custom_ascii_profile_with_fixed_values_and_no_trim() {
        let spec = ProfileSpec::Ascii(AsciiProfileSpec {
            start: None,
            end: "\n".into(),
            max_len: 16,
            trim: false,
            rules: vec![
                AsciiRuleSpec::Occupancy {
                    pattern: "MOTION".into(),
                    point: "pir".into(),
                    value: Some(true),
                },
                AsciiRuleSpec::Occupancy {
                    pattern: "CLEAR".into(),
                    point: "pir".into(),
                    value: Some(false),
                },
            ],
        });
        let p = Profile::compile(&spec).unwrap();
        assert_eq!(
            assert_chunking_invariant(&p, b"MOTION\n MOTION\nCLEAR\r\n"),
            vec![
                occ("pir", true),
                bad(BadFrame::Unrecognized),
                // CR is not a terminator here and not trimmed: unrecognised.
                bad(BadFrame::Unrecognized),
            ]
        );
    }

    /// Deterministic pseudo-random corruption of a good stream: never a panic, the buffer stays
    /// bounded, and every output is accounted for in the stats.
    #[test]
    fn corrupted_streams_never_panic() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for name in ["ascii-occupancy", "ascii-card-stx", "ascii-qr", "binary-aa"] {
            let p = builtin(name);
            let mut good = Vec::new();
            for i in 0..50u8 {
                match name {
                    "binary-aa" => good.extend(bin(1 + i % 3, &[i % 2, i, 3])),
                    "ascii-card-stx" => {
                        good.extend(format!("\x02{:010}\x03", u32::from(i) * 7919).bytes())
                    }
                    _ => good.extend(format!("OCC={}\r\nQR:{i}\r\n", i % 2).bytes()),
                }
            }
            for _ in 0..200 {
                let mut s = good.clone();
                for _ in 0..(next() % 8) {
                    let at = (next() as usize) % s.len();
                    match next() % 3 {
                        0 => s[at] = next() as u8,
                        1 => {
                            s.remove(at);
                        }
                        _ => s.insert(at, next() as u8),
                    }
                }
                let cut = (next() as usize) % (s.len() + 1);
                let (out, stats) = decode_chunks(&p, &[&s[..cut], &s[cut..]]);
                let events = out
                    .iter()
                    .filter(|d| matches!(d, Decoded::Event(_)))
                    .count();
                assert_eq!(stats.events, events as u64);
                assert_eq!(stats.bad_frames() + stats.events, out.len() as u64);
            }
        }
    }
}
