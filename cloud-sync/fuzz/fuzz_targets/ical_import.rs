//! Fuzzes the iCalendar import: any text parses without panicking, every event expands within the
//! occurrence cap, and diffing a feed's bookings against themselves finds nothing to change.
#![no_main]

use cloud_sync::calendar::{IcalLimits, SeriesLimits, Window, diff, expand_feed, parse_ical};
use jiff::tz::TimeZone;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let site = jiff::tz::db()
        .get("Europe/Berlin")
        .unwrap_or(TimeZone::UTC);
    let Ok(feed) = parse_ical(text, &site, jiff::tz::db(), &IcalLimits::default()) else {
        return;
    };
    for error in &feed.errors {
        let _ = error.to_string();
    }
    let now = jiff::Timestamp::from_second(1_774_000_000).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let limits = SeriesLimits { max_occurrences: 200 };
    let expansion = expand_feed(&feed, "r-1", Window::days_from(now, 14), &limits);
    for event in &feed.events {
        if let Some(series) = event.to_series("s".into()) {
            let _ = series.occurrences(Window::new(jiff::Timestamp::MIN, jiff::Timestamp::MAX), &limits);
        }
    }
    assert!(expansion.bookings.len() <= feed.events.len() * limits.max_occurrences);
    assert_eq!(diff(&expansion.bookings, &expansion), [], "a feed differs from itself");
});
