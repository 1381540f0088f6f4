//! Time as plain values: the engine never reads a clock, callers pass `now` in.

use std::fmt;
use std::ops::{Add, Sub};

/// An instant, in milliseconds since the Unix epoch (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(i64);

/// A length of time in milliseconds. Never negative in policies; differences may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Span(i64);

impl Timestamp {
    pub const fn from_millis(ms: i64) -> Self {
        Timestamp(ms)
    }
    pub const fn as_millis(self) -> i64 {
        self.0
    }
    /// Minutes since midnight UTC, for compact transcripts and default rendering.
    pub fn utc_hh_mm(self) -> String {
        let minutes = self.0.div_euclid(60_000).rem_euclid(24 * 60);
        format!("{:02}:{:02}", minutes / 60, minutes % 60)
    }
    /// `self - other` as a span (may be negative).
    pub fn since(self, other: Timestamp) -> Span {
        Span(self.0.saturating_sub(other.0))
    }
}

impl fmt::Display for Timestamp {
    /// `HH:MM` in UTC, with `:SS` when the seconds are not zero.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.utc_hh_mm())?;
        let seconds = self.0.div_euclid(1000).rem_euclid(60);
        if seconds != 0 {
            write!(f, ":{seconds:02}")?;
        }
        Ok(())
    }
}

impl Span {
    pub const ZERO: Span = Span(0);
    pub const fn from_millis(ms: i64) -> Self {
        Span(ms)
    }
    pub const fn seconds(s: i64) -> Self {
        Span(s * 1000)
    }
    pub const fn minutes(m: i64) -> Self {
        Span(m * 60_000)
    }
    pub const fn as_millis(self) -> i64 {
        self.0
    }
    pub fn whole_minutes(self) -> i64 {
        self.0 / 60_000
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 % 60_000 == 0 {
            write!(f, "{} min", self.0 / 60_000)
        } else {
            write!(f, "{} s", self.0 / 1000)
        }
    }
}

impl Add<Span> for Timestamp {
    type Output = Timestamp;
    fn add(self, rhs: Span) -> Timestamp {
        Timestamp(self.0.saturating_add(rhs.0))
    }
}

impl Sub<Span> for Timestamp {
    type Output = Timestamp;
    fn sub(self, rhs: Span) -> Timestamp {
        Timestamp(self.0.saturating_sub(rhs.0))
    }
}

impl Sub for Span {
    type Output = Span;
    fn sub(self, rhs: Span) -> Span {
        Span(self.0.saturating_sub(rhs.0))
    }
}

impl Add for Span {
    type Output = Span;
    fn add(self, rhs: Span) -> Span {
        Span(self.0.saturating_add(rhs.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_utc_clock_time_and_spans() {
        let t = Timestamp::from_millis(0) + Span::minutes(9 * 60 + 5);
        assert_eq!(t.to_string(), "09:05");
        assert_eq!(Timestamp::from_millis(-60_000).to_string(), "23:59");
        assert_eq!(Span::minutes(10).to_string(), "10 min");
        assert_eq!(Span::seconds(90).to_string(), "90 s");
    }
}
