//! Serial line timing of Modbus RTU: character time, the 3.5-character inter-frame silence, and when the line is quiet enough to send; pure (time comes in as an argument).
//!
//! Modbus over serial line V1.02, §2.5.1.1: frames are separated by at least 3.5 character
//! times of silence (t3.5); above 19200 baud fixed values are used instead: 1.75 ms for t3.5 and
//! 750 µs for t1.5. A character is a start bit, the data bits, an optional parity bit and the stop
//! bits (11 bits in the spec's 8E1/8N2 RTU format).
//!
//! [`LineClock`] models the line rather than trusting the transport: a write returns as soon as
//! the bytes are buffered, a pty or a serial server delivers an answer faster than the wire
//! could. So the clock assumes each frame takes its full transmission time, that a device may
//! only start answering after t3.5 of silence, and never lets a frame start before t3.5 has
//! passed since the end of the previous one. On a real line these are no-ops; on a pty or an
//! RTU-over-TCP serial server they pace the bus as the wire would.

use std::time::Duration;

use tokio::time::Instant;

/// Parity of a serial line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Parity {
    /// No parity bit (Modbus then asks for two stop bits; many devices use one).
    None,
    /// Even parity, the Modbus default (§2.5.1).
    #[default]
    Even,
    /// Odd parity.
    Odd,
}

/// Settings of one serial line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SerialLine {
    /// Bits per second, e.g. 9600, 19200 (the Modbus default), 38400, 115200.
    pub baud: u32,
    /// Parity bit.
    pub parity: Parity,
    /// Data bits per character: 8 for RTU (7 is only for ASCII mode).
    pub data_bits: u8,
    /// Stop bits: 1 or 2.
    pub stop_bits: u8,
}

impl Default for SerialLine {
    /// 19200 baud 8E1, the Modbus default (§2.5.1, §3.3.3).
    fn default() -> Self {
        SerialLine {
            baud: 19_200,
            parity: Parity::Even,
            data_bits: 8,
            stop_bits: 1,
        }
    }
}

impl SerialLine {
    /// Bits per character on the wire.
    #[must_use]
    pub fn bits_per_char(&self) -> u32 {
        let parity = u32::from(self.parity != Parity::None);
        1 + u32::from(self.data_bits) + parity + u32::from(self.stop_bits)
    }

    /// Time to send one character.
    #[must_use]
    pub fn char_time(&self) -> Duration {
        let nanos = u64::from(self.bits_per_char()) * 1_000_000_000 / u64::from(self.baud.max(1));
        Duration::from_nanos(nanos)
    }

    /// Time to send `bytes` characters back to back.
    #[must_use]
    pub fn frame_time(&self, bytes: usize) -> Duration {
        let nanos = u64::from(self.bits_per_char())
            .saturating_mul(u64::try_from(bytes).unwrap_or(u64::MAX))
            .saturating_mul(1_000_000_000)
            / u64::from(self.baud.max(1));
        Duration::from_nanos(nanos)
    }

    /// t3.5: the silence between frames (§2.5.1.1): 3.5 character times, 1.75 ms above 19200
    /// baud.
    #[must_use]
    pub fn t35(&self) -> Duration {
        if self.baud > 19_200 {
            Duration::from_micros(1750)
        } else {
            self.char_time() * 7 / 2
        }
    }

    /// t1.5: the longest silence inside a frame (§2.5.1.1): 1.5 character times, 750 µs above
    /// 19200 baud.
    #[must_use]
    pub fn t15(&self) -> Duration {
        if self.baud > 19_200 {
            Duration::from_micros(750)
        } else {
            self.char_time() * 3 / 2
        }
    }

    /// The spec's ceiling of frames per second on this line for request/answer pairs of the
    /// given lengths: each transaction is the request, t3.5, the answer, t3.5 (a device that
    /// answers in no time), and carries two frames.
    #[must_use]
    pub fn max_frames_per_second(&self, request_len: usize, response_len: usize) -> f64 {
        let transaction =
            self.frame_time(request_len) + self.t35() + self.frame_time(response_len) + self.t35();
        2.0 / transaction.as_secs_f64()
    }
}

/// When the line is quiet enough to send the next frame.
#[derive(Debug, Clone)]
pub(crate) struct LineClock {
    line: Option<SerialLine>,
    /// The earliest start of the next frame.
    quiet_at: Option<Instant>,
    /// When the last request has left the wire.
    sent_end: Option<Instant>,
}

impl LineClock {
    /// `None`: no line to model (frames may follow each other at once).
    pub(crate) fn new(line: Option<SerialLine>) -> Self {
        LineClock {
            line,
            quiet_at: None,
            sent_end: None,
        }
    }

    /// The earliest time the next frame may start.
    pub(crate) fn ready_at(&self) -> Option<Instant> {
        self.quiet_at
    }

    /// A frame of `bytes` was handed to the transport at `now`.
    pub(crate) fn sent(&mut self, now: Instant, bytes: usize) {
        let Some(line) = self.line else { return };
        let start = self.quiet_at.map_or(now, |q| q.max(now));
        let end = start + line.frame_time(bytes);
        self.sent_end = Some(end);
        self.quiet_at = Some(end + line.t35());
    }

    /// An answer of `bytes` was complete at `now`.
    pub(crate) fn received(&mut self, now: Instant, bytes: usize) {
        let Some(line) = self.line else { return };
        // The device could only start after t3.5 of silence, and the answer took its time.
        let earliest = self
            .sent_end
            .map_or(now, |end| end + line.t35() + line.frame_time(bytes));
        self.quiet_at = Some(now.max(earliest) + line.t35());
    }

    /// The line saw bytes at `now` that were not an answer (noise): wait t3.5 after them.
    pub(crate) fn noise(&mut self, now: Instant) {
        let Some(line) = self.line else { return };
        let after = now + line.t35();
        self.quiet_at = Some(self.quiet_at.map_or(after, |q| q.max(after)));
    }

    /// Extra time an answer of `response_len` bytes to a request of `request_len` needs on the
    /// wire; added to the device's response timeout.
    pub(crate) fn transfer_time(&self, request_len: usize, response_len: usize) -> Duration {
        self.line.map_or(Duration::ZERO, |line| {
            line.frame_time(request_len) + line.t35() + line.frame_time(response_len)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(baud: u32, parity: Parity, stop_bits: u8) -> SerialLine {
        SerialLine {
            baud,
            parity,
            data_bits: 8,
            stop_bits,
        }
    }

    #[test]
    fn t35_is_three_and_a_half_characters_up_to_19200_baud() {
        let l = line(9600, Parity::Even, 1);
        assert_eq!(l.bits_per_char(), 11);
        // 11 bits at 9600 baud = 1145.833 µs per character.
        assert_eq!(l.char_time(), Duration::from_nanos(1_145_833));
        assert_eq!(l.t35(), Duration::from_nanos(4_010_415));
        assert_eq!(l.t15(), Duration::from_nanos(1_718_749));
        let l = line(19_200, Parity::None, 2);
        assert_eq!(l.bits_per_char(), 11);
        assert_eq!(l.t35(), Duration::from_nanos(2_005_206));
        assert_eq!(line(19_200, Parity::None, 1).bits_per_char(), 10);
    }

    #[test]
    fn t35_is_fixed_above_19200_baud() {
        for baud in [19_201, 38_400, 115_200] {
            let l = line(baud, Parity::Even, 1);
            assert_eq!(l.t35(), Duration::from_micros(1750));
            assert_eq!(l.t15(), Duration::from_micros(750));
        }
        assert_eq!(
            line(115_200, Parity::None, 1).frame_time(8),
            Duration::from_nanos(694_444)
        );
    }

    #[test]
    fn ceiling_of_frames_per_second() {
        // 19200 8E1, read of one register: 8-byte request, 7-byte answer.
        // 15 chars * 572.9 µs + 2 * 2005.2 µs = 12.60 ms per transaction -> 158.7 frames/s.
        let fps = SerialLine::default().max_frames_per_second(8, 7);
        assert!((fps - 158.7).abs() < 0.1, "{fps}");
        // 115200 8N1: 15 chars * 86.8 µs + 2 * 1750 µs = 4.80 ms -> 416.5 frames/s.
        let fast = line(115_200, Parity::None, 1).max_frames_per_second(8, 7);
        assert!((fast - 416.5).abs() < 0.1, "{fast}");
    }

    #[test]
    fn the_clock_paces_a_line_that_answers_too_fast() {
        let l = SerialLine::default();
        let mut clock = LineClock::new(Some(l));
        let t0 = Instant::now();
        assert_eq!(clock.ready_at(), None);
        clock.sent(t0, 8);
        let sent_end = t0 + l.frame_time(8);
        assert_eq!(clock.ready_at(), Some(sent_end + l.t35()));
        // A pty hands the 7-byte answer over at once.
        clock.received(t0, 7);
        let answer_end = sent_end + l.t35() + l.frame_time(7);
        assert_eq!(clock.ready_at(), Some(answer_end + l.t35()));
        // A slow device: the answer ends later than the wire minimum.
        let late = t0 + Duration::from_millis(50);
        clock.received(late, 7);
        assert_eq!(clock.ready_at(), Some(late + l.t35()));
        // A frame handed over before the line is quiet starts when it is.
        let early = t0 + Duration::from_millis(51);
        clock.sent(early, 8);
        assert_eq!(
            clock.ready_at(),
            Some(late + l.t35() + l.frame_time(8) + l.t35())
        );
        clock.noise(late + Duration::from_secs(1));
        assert_eq!(
            clock.ready_at(),
            Some(late + Duration::from_secs(1) + l.t35())
        );
        assert_eq!(
            clock.transfer_time(8, 7),
            l.frame_time(8) + l.t35() + l.frame_time(7)
        );
    }

    #[test]
    fn no_line_no_pacing() {
        let mut clock = LineClock::new(None);
        let t0 = Instant::now();
        clock.sent(t0, 8);
        clock.received(t0, 7);
        assert_eq!(clock.ready_at(), None);
        assert_eq!(clock.transfer_time(8, 255), Duration::ZERO);
    }
}
