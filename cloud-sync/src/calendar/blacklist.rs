//! The no-show blacklist: an organizer with N no-shows within M days may not book for K days.
//!
//! Gateways report each no-show with its organizer (`no_show_strike` events); the hub keeps the
//! timestamps and asks [`Blacklist::block`] before accepting a booking.
//!
//! Rules (days are 24-hour days, so the policy does not depend on a time zone):
//! * N no-shows whose first and last are at most M days apart trigger a block that lasts K days
//!   from the last of them.
//! * The no-shows that triggered a block are spent: counting starts again after it, so an
//!   organizer who has served a block is not blocked again by one more no-show. A repeat
//!   offender needs N fresh no-shows, which may fall inside the running block and extend it.
//! * No-shows after `now` are ignored (they cannot have happened yet).

use std::fmt;

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

/// The blacklist policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blacklist {
    /// How many no-shows trigger a block (N, default 3).
    pub strikes: u32,
    /// Within how many days they must fall (M, default 30).
    pub within_days: u32,
    /// How many days the block lasts from the last no-show (K, default 7).
    pub block_days: u32,
}

impl Default for Blacklist {
    fn default() -> Self {
        Self {
            strikes: 3,
            within_days: 30,
            block_days: 7,
        }
    }
}

/// An organizer's current block, with what explains it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    /// No new bookings before this instant.
    pub until: Timestamp,
    /// The no-show that triggered (or last extended) the block.
    pub last_no_show: Timestamp,
    pub strikes: u32,
    pub within_days: u32,
}

impl Block {
    /// The reason shown to the organizer and the admin, with dates in the site's zone:
    /// "3 no-shows within 30 days (last 2026-03-04): bookings blocked until 2026-03-11".
    pub fn reason(&self, zone: &TimeZone) -> String {
        format!(
            "{} no-shows within {} days (last {}): bookings blocked until {}",
            self.strikes,
            self.within_days,
            self.last_no_show.to_zoned(zone.clone()).date(),
            self.until.to_zoned(zone.clone()).date(),
        )
    }
}

impl fmt::Display for Block {
    /// The reason with UTC dates; prefer [`Block::reason`] with the site's zone.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason(&TimeZone::UTC))
    }
}

fn days(n: u32) -> SignedDuration {
    SignedDuration::from_hours(i64::from(n) * 24)
}

impl Blacklist {
    /// The block in force at `now` given an organizer's no-show times (any order), if any.
    pub fn block(&self, no_shows: &[Timestamp], now: Timestamp) -> Option<Block> {
        let mut times: Vec<Timestamp> = no_shows.iter().copied().filter(|t| *t <= now).collect();
        times.sort_unstable();
        let needed = usize::try_from(self.strikes.max(1)).unwrap_or(usize::MAX);
        let mut latest: Option<Block> = None;
        // Index of the first no-show not yet spent on a block.
        let mut fresh = 0;
        for last in 0..times.len() {
            if last + 1 < fresh + needed {
                continue;
            }
            let first = last + 1 - needed;
            let (t_first, t_last) = (times[first], times[last]);
            if t_first.duration_until(t_last) <= days(self.within_days) {
                let until = t_last
                    .checked_add(days(self.block_days))
                    .unwrap_or(Timestamp::MAX);
                latest = Some(Block {
                    until,
                    last_no_show: t_last,
                    strikes: self.strikes,
                    within_days: self.within_days,
                });
                fresh = last + 1;
            }
        }
        latest.filter(|block| block.until > now)
    }

    /// When the organizer may book again, if blocked at `now`.
    pub fn blocked_until(&self, no_shows: &[Timestamp], now: Timestamp) -> Option<Timestamp> {
        self.block(no_shows, now).map(|block| block.until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn ts(list: &[&str]) -> Vec<Timestamp> {
        list.iter().map(|s| t(s)).collect()
    }

    #[test]
    fn three_no_shows_within_thirty_days_block_for_seven() {
        let policy = Blacklist::default();
        let no_shows = ts(&[
            "2026-03-04T09:10:00Z",
            "2026-02-10T09:10:00Z",
            "2026-02-20T14:10:00Z",
        ]);
        let block = policy.block(&no_shows, t("2026-03-05T08:00:00Z")).unwrap();
        assert_eq!(block.until, t("2026-03-11T09:10:00Z"));
        assert_eq!(
            block.reason(&TimeZone::UTC),
            "3 no-shows within 30 days (last 2026-03-04): bookings blocked until 2026-03-11"
        );
        // Until the block runs out, then free again.
        assert_eq!(
            policy.blocked_until(&no_shows, t("2026-03-11T09:09:59Z")),
            Some(t("2026-03-11T09:10:00Z"))
        );
        assert_eq!(
            policy.blocked_until(&no_shows, t("2026-03-11T09:10:00Z")),
            None
        );
    }

    #[test]
    fn reason_uses_the_site_dates() {
        let policy = Blacklist::default();
        let no_shows = ts(&[
            "2026-03-01T10:00:00Z",
            "2026-03-02T10:00:00Z",
            "2026-03-03T23:30:00Z",
        ]);
        let block = policy.block(&no_shows, t("2026-03-04T00:00:00Z")).unwrap();
        let tokyo = TimeZone::fixed(jiff::tz::offset(9));
        assert_eq!(
            block.reason(&tokyo),
            "3 no-shows within 30 days (last 2026-03-04): bookings blocked until 2026-03-11"
        );
        assert_eq!(
            block.to_string(),
            "3 no-shows within 30 days (last 2026-03-03): bookings blocked until 2026-03-10"
        );
    }

    #[test]
    fn no_shows_spread_wider_than_the_window_do_not_block() {
        let policy = Blacklist::default();
        // 31 days between the first and the third.
        let no_shows = ts(&[
            "2026-01-01T09:00:00Z",
            "2026-01-15T09:00:00Z",
            "2026-02-01T09:00:01Z",
        ]);
        assert_eq!(policy.block(&no_shows, t("2026-02-02T00:00:00Z")), None);
        // Exactly 30 days apart is "within".
        let no_shows = ts(&[
            "2026-01-01T09:00:00Z",
            "2026-01-15T09:00:00Z",
            "2026-01-31T09:00:00Z",
        ]);
        assert!(policy.block(&no_shows, t("2026-02-01T00:00:00Z")).is_some());
    }

    #[test]
    fn spent_strikes_do_not_block_again_but_fresh_ones_do() {
        let policy = Blacklist::default();
        let mut no_shows = ts(&[
            "2026-03-01T09:00:00Z",
            "2026-03-02T09:00:00Z",
            "2026-03-03T09:00:00Z",
        ]);
        // Served the block; one more no-show right after does not block again.
        no_shows.push(t("2026-03-12T09:00:00Z"));
        assert_eq!(policy.block(&no_shows, t("2026-03-12T10:00:00Z")), None);
        // Two more make three fresh ones: blocked again from the last.
        no_shows.extend(ts(&["2026-03-13T09:00:00Z", "2026-03-14T09:00:00Z"]));
        assert_eq!(
            policy.blocked_until(&no_shows, t("2026-03-14T10:00:00Z")),
            Some(t("2026-03-21T09:00:00Z"))
        );
    }

    #[test]
    fn future_no_shows_and_other_policies() {
        let policy = Blacklist {
            strikes: 2,
            within_days: 7,
            block_days: 1,
        };
        let no_shows = ts(&["2026-03-01T09:00:00Z", "2026-03-05T09:00:00Z"]);
        assert_eq!(policy.block(&no_shows, t("2026-03-04T00:00:00Z")), None);
        assert_eq!(
            policy.blocked_until(&no_shows, t("2026-03-05T12:00:00Z")),
            Some(t("2026-03-06T09:00:00Z"))
        );
        assert_eq!(
            Blacklist::default().block(&[], t("2026-03-04T00:00:00Z")),
            None
        );
    }
}
