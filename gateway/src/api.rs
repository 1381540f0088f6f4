//! The JSON shapes of the local HTTP API, and the time formatting they use.
//!
//! Wire types only: built from domain types at the edge, never used by the engine.

use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

use scenes::Timestamp;

/// Formats instants in the site's time zone.
#[derive(Debug, Clone)]
pub struct TimeFmt {
    pub tz: TimeZone,
}

impl TimeFmt {
    fn zoned(&self, t: Timestamp) -> Option<jiff::Zoned> {
        jiff::Timestamp::from_millisecond(t.as_millis())
            .ok()
            .map(|ts| ts.to_zoned(self.tz.clone()))
    }
    /// `09:05`, as the activity log and door panels show times.
    pub fn hh_mm(&self, t: Timestamp) -> String {
        self.zoned(t)
            .map_or_else(|| t.utc_hh_mm(), |z| z.strftime("%H:%M").to_string())
    }
    pub fn hh_mm_ss(&self, t: Timestamp) -> String {
        self.zoned(t)
            .map_or_else(|| t.utc_hh_mm(), |z| z.strftime("%H:%M:%S").to_string())
    }
    /// RFC 3339 with the site's offset.
    pub fn rfc3339(&self, t: Timestamp) -> String {
        self.zoned(t).map_or_else(String::new, |z| {
            z.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
        })
    }
    /// Parses RFC 3339 (with offset) or a civil `2026-11-21T09:00` in the site's zone.
    pub fn parse(&self, s: &str) -> Result<Timestamp, String> {
        if let Ok(ts) = s.parse::<jiff::Timestamp>() {
            return Ok(Timestamp::from_millis(ts.as_millisecond()));
        }
        let civil: jiff::civil::DateTime = s.parse().map_err(|_| {
            format!("'{s}' is not a time: use RFC 3339, e.g. 2026-11-21T09:00:00+01:00")
        })?;
        let z = civil
            .to_zoned(self.tz.clone())
            .map_err(|e| format!("'{s}': {e}"))?;
        Ok(Timestamp::from_millis(z.timestamp().as_millisecond()))
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct FloorSnapshot {
    pub site: String,
    pub timezone: String,
    pub now: String,
    pub now_ms: i64,
    pub rooms: Vec<RoomDto>,
    pub devices: Vec<DeviceDto>,
    pub buses: Vec<BusDto>,
    /// The link to the hub: `none` (the site has no `[cloud]`), `up` or `down`.
    pub cloud: &'static str,
}

/// An RS-485 bus (Modbus RTU) and its traffic.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BusDto {
    pub id: String,
    pub open: bool,
    pub frames_per_second: f64,
    /// Requests sent (retries and scan probes included).
    pub frames_sent: u64,
    pub frames_received: u64,
    /// Garbage, bad CRCs and stray frames, skipped.
    pub bad_frames: u64,
    pub timeouts: u64,
    pub exceptions: u64,
    pub transport_errors: u64,
    /// The last failure of the port (open, read, write), kept after it reopens.
    pub last_error: Option<String>,
    /// The units on the line, in site order.
    pub units: Vec<BusUnitDto>,
}

/// One unit of an RS-485 bus: where it stands on the line (its counters are its device's).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BusUnitDto {
    pub device: String,
    pub unit: u8,
    /// "connecting", "online", "quarantined" or "stopped".
    pub state: &'static str,
    /// Block reads answered (exceptions included).
    pub polls: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RoomDto {
    pub id: String,
    pub name: String,
    pub kind: &'static str,
    pub capacity: u32,
    pub state: &'static str,
    pub occupancy: &'static str,
    pub current: Option<BookingDto>,
    pub next: Option<BookingDto>,
    pub points: Vec<PointDto>,
    pub scenes: Vec<String>,
    /// Newest first.
    pub activity: Vec<ActivityDto>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BookingDto {
    pub id: String,
    pub room: String,
    pub subject: String,
    pub organizer: String,
    pub start: String,
    pub end: String,
    pub start_ms: i64,
    pub end_ms: i64,
    pub checked_in: bool,
}

/// A booking as a room's day shows it in the console: what was booked and what became of it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RoomBookingDto {
    #[serde(flatten)]
    pub booking: BookingDto,
    /// `local` (made on this gateway) or `hub`.
    pub source: &'static str,
    pub checked_in_ms: Option<i64>,
    /// When it ended or was released (its end is then no later than that).
    pub finished_ms: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PointDto {
    pub capability: &'static str,
    pub point: String,
    /// `true`/`false`, a number, or `null` while the device is unavailable.
    pub value: serde_json::Value,
    /// What a coded value means ("auto", "red", "on"), where the code is fixed.
    pub label: Option<&'static str>,
    pub unit: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ActivityDto {
    pub at: String,
    pub at_ms: i64,
    pub kind: String,
    pub text: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DeviceDto {
    pub id: String,
    pub name: String,
    pub address: String,
    pub state: &'static str,
    pub last_error: Option<String>,
    pub requests: u64,
    /// Answers received, exceptions included.
    pub responses: u64,
    pub timeouts: u64,
    pub exceptions: u64,
    pub transport_errors: u64,
    /// Garbage, bad CRCs and stray frames on the device's line (RTU units, serial devices).
    pub bad_frames: u64,
    /// The device's points with their last polled values, in site order.
    pub points: Vec<DevicePointDto>,
}

/// A point of a device and the value it last reported (the installer console's live values).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DevicePointDto {
    pub id: String,
    /// `true`/`false`, a number, or `null` while unknown or unavailable.
    pub value: serde_json::Value,
    /// The point's label of a coded value ("heat").
    pub label: Option<String>,
    pub unit: Option<String>,
}

/// `POST /api/rooms/{id}/bookings`: either `start` and `end`, or `minutes` from now.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewBooking {
    pub subject: Option<String>,
    pub organizer: Option<String>,
    pub start: Option<String>,
    pub end: Option<String>,
    pub minutes: Option<u32>,
    #[serde(default)]
    pub attendees: Vec<String>,
}

/// `POST /api/rooms/{id}/extend`: `minutes` more, or `until` a time.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtendRequest {
    pub minutes: Option<u32>,
    pub until: Option<String>,
}

/// `POST /api/rooms/{id}/credential`: a card number or QR payload read at the door.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialRequest {
    pub credential: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ErrorDto {
    pub error: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conflict: Option<BookingDto>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_times_follow_daylight_saving() {
        let fmt = TimeFmt {
            tz: jiff::tz::TimeZone::get("Europe/Berlin").expect("tzdb"),
        };
        // The day before and the day of the spring change (2026-03-29, 02:00 -> 03:00).
        let before = fmt.parse("2026-03-28T09:00").expect("civil time");
        let after = fmt.parse("2026-03-29T09:00").expect("civil time");
        assert_eq!(
            after.since(before),
            scenes::Span::minutes(23 * 60),
            "a 23-hour day"
        );
        assert_eq!(fmt.hh_mm(before), "09:00");
        assert_eq!(fmt.hh_mm(after), "09:00");
        assert_eq!(fmt.rfc3339(after), "2026-03-29T09:00:00+02:00");
        // 02:30 does not exist that night: it is read as 03:30 summer time.
        let gap = fmt
            .parse("2026-03-29T02:30")
            .expect("civil time in the gap");
        assert_eq!(fmt.hh_mm(gap), "03:30");
        // An explicit offset wins over the zone; on the autumn change (03:00 CEST back to
        // 02:00 CET at 01:00 UTC) 00:30Z and 01:30Z are both shown as 02:30, an hour apart.
        let first = fmt.parse("2026-10-25T00:30:00Z").expect("rfc3339");
        let second = fmt.parse("2026-10-25T01:30:00Z").expect("rfc3339");
        assert_eq!(fmt.rfc3339(first), "2026-10-25T02:30:00+02:00");
        assert_eq!(fmt.rfc3339(second), "2026-10-25T02:30:00+01:00");
        assert!(fmt.parse("next tuesday").is_err());
    }
}
