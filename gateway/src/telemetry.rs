//! Point telemetry for the hub: which points go up, and the pure sampler that batches and
//! rate-limits their changes on the gateway's time (PROTOCOL.md, "telemetry").
//!
//! The main loop feeds every point update to the [`Sampler`] with `now`, tells it when the
//! hub link goes up or down, and asks it for a batch at each wake-up ([`Sampler::poll_batch`],
//! [`Sampler::poll_timeout`]). The sampler never reads a clock and does no I/O; the sync agent
//! publishes what it returns (QoS 0, never through the outbox).
//!
//! Rules, per selected point:
//! - A batch goes at most once per `batch` period, with at most `max_samples_per_batch`
//!   samples (oldest changes first; the rest wait for the next period).
//! - A point is sampled at most once per `min_interval`; within it the newest value wins, and
//!   a value that is back where it was last sent sends nothing.
//! - A number that moved less than the point's deadband since it was last sent is not a change.
//! - An unavailable point (its device offline) is sent once as `value: None`.
//! - Nothing is taken while the hub link is down: the newest values go once it is up again,
//!   and after every reconnect each point's current value is sent once more (the hub may have
//!   missed what went just before the link dropped).

use std::collections::BTreeMap;

use cloud_sync::wire::PointSample;
use scenes::{Span, Timestamp};

use crate::site::PointRef;

/// Default batch period.
pub const DEFAULT_BATCH: Span = Span::seconds(5);
/// Default per-point rate limit.
pub const DEFAULT_MIN_INTERVAL: Span = Span::seconds(30);
/// Default and largest number of samples in one batch (a sample is at most ~250 bytes, so a
/// full batch stays far below the protocol's packet limit).
pub const DEFAULT_MAX_SAMPLES: usize = 500;
pub const MAX_SAMPLES_LIMIT: usize = 2000;

/// What goes up, and how often: `[cloud.telemetry]` of the site file, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryConfig {
    /// The selected points, each with its rule.
    pub points: BTreeMap<PointRef, PointRule>,
    pub batch: Span,
    pub min_interval: Span,
    pub max_samples_per_batch: usize,
}

/// How one selected point is sampled.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PointRule {
    /// A number must move at least this much from the value last sent to count as a change
    /// (0: any change counts). The site file gives on/off points none.
    pub deadband: f64,
}

/// A point's value as the sampler keeps it: a finite number (on/off as 1/0), or `None`
/// while unavailable.
pub type SampleValue = Option<f64>;

/// The value a driver reports, as telemetry carries it. A non-finite number (a broken float
/// sensor) is sent as unavailable: JSON has no NaN.
pub fn sample_value(v: Option<drivers::point::Value>) -> SampleValue {
    v.map(|v| v.as_f64()).filter(|n| n.is_finite())
}

#[derive(Debug, Clone)]
struct PointState {
    rule: PointRule,
    /// The newest value seen, and when it was seen.
    latest: Option<(Timestamp, SampleValue)>,
    /// The value last handed out in a batch, and when that batch went.
    sent: Option<(Timestamp, SampleValue)>,
    /// Send the latest value even if unchanged (after a reconnect).
    refresh: bool,
}

impl PointState {
    /// Whether the newest value still has to go up (rate limit aside).
    fn owed(&self) -> bool {
        let Some((_, now)) = self.latest else {
            return false;
        };
        match self.sent {
            None => true,
            Some(_) if self.refresh => true,
            Some((_, before)) => changed(before, now, self.rule.deadband),
        }
    }

    /// When the rate limit lets this point go again.
    fn free_at(&self, min_interval: Span) -> Option<Timestamp> {
        self.sent.map(|(at, _)| at + min_interval)
    }
}

/// Whether `now` differs from `before` enough to be sent.
fn changed(before: SampleValue, now: SampleValue, deadband: f64) -> bool {
    match (before, now) {
        (Some(a), Some(b)) => {
            if deadband > 0.0 {
                (b - a).abs() >= deadband
            } else {
                a != b
            }
        }
        (None, None) => false,
        _ => true,
    }
}

/// Batches and rate-limits point changes; time is an argument (see the module doc).
#[derive(Debug, Clone)]
pub struct Sampler {
    points: BTreeMap<PointRef, PointState>,
    batch: Span,
    min_interval: Span,
    max_samples: usize,
    link_up: bool,
    /// No batch goes before this.
    next_batch: Timestamp,
}

impl Sampler {
    /// A sampler for `cfg`, started at `now` (the first batch may go at `now + batch`).
    pub fn new(cfg: &TelemetryConfig, now: Timestamp) -> Sampler {
        Sampler {
            points: cfg
                .points
                .iter()
                .map(|(p, rule)| {
                    let state = PointState {
                        rule: *rule,
                        latest: None,
                        sent: None,
                        refresh: false,
                    };
                    (p.clone(), state)
                })
                .collect(),
            batch: cfg.batch,
            min_interval: cfg.min_interval,
            max_samples: cfg.max_samples_per_batch.max(1),
            link_up: false,
            next_batch: now + cfg.batch,
        }
    }

    /// Whether this point is selected.
    pub fn selects(&self, point: &PointRef) -> bool {
        self.points.contains_key(point)
    }

    /// A point's new value (points that are not selected are ignored).
    pub fn observe(&mut self, now: Timestamp, point: &PointRef, value: SampleValue) {
        if let Some(state) = self.points.get_mut(point) {
            let same = state.latest.is_some_and(|(_, v)| v == value);
            if !same {
                state.latest = Some((now, value));
            }
        }
    }

    /// The hub link went up or down. Going up, every point with a value is owed once more.
    pub fn set_link(&mut self, up: bool) {
        if up && !self.link_up {
            for state in self.points.values_mut() {
                state.refresh = state.latest.is_some() && state.sent.is_some();
            }
        }
        self.link_up = up;
    }

    pub fn link_up(&self) -> bool {
        self.link_up
    }

    /// When the loop should call [`Sampler::poll_batch`] next (`None`: not while the link is
    /// down; a point update or the link coming up is the next reason to look).
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.link_up.then_some(self.next_batch)
    }

    /// The batch due at `now`, if one is due and has anything in it.
    pub fn poll_batch(&mut self, now: Timestamp) -> Option<Vec<PointSample>> {
        if !self.link_up {
            return None;
        }
        if now < self.next_batch {
            // A clock set back by more than a period must not stall telemetry.
            if self.next_batch.since(now) > self.batch {
                self.next_batch = now + self.batch;
            }
            return None;
        }
        self.next_batch = now + self.batch;
        let min_interval = self.min_interval;
        let mut due: Vec<(Timestamp, &PointRef)> = self
            .points
            .iter()
            .filter(|(_, s)| s.owed() && s.free_at(min_interval).is_none_or(|t| t <= now))
            .filter_map(|(p, s)| s.latest.map(|(at, _)| (at, p)))
            .collect();
        if due.is_empty() {
            return None;
        }
        // The oldest changes first; the rest wait for the next batch.
        due.sort_by_key(|(at, _)| *at);
        due.truncate(self.max_samples);
        let chosen: Vec<PointRef> = due.into_iter().map(|(_, p)| p.clone()).collect();
        let mut samples = Vec::with_capacity(chosen.len());
        for p in chosen {
            let Some(state) = self.points.get_mut(&p) else {
                continue;
            };
            let Some((at, value)) = state.latest else {
                continue;
            };
            state.sent = Some((now, value));
            state.refresh = false;
            samples.push(PointSample {
                device: p.device,
                point: p.point,
                at_ms: at.as_millis(),
                value,
            });
        }
        Some(samples)
    }
}

/// Whether `text` matches `pattern`, where `*` stands for any run of characters (none too).
pub fn glob_matches(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Iterative matching with one backtrack point (the last star).
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Timestamp = Timestamp::from_millis(1_772_409_600_000);

    fn at(s: i64) -> Timestamp {
        T0 + Span::seconds(s)
    }

    fn point(s: &str) -> PointRef {
        let (device, point) = s.split_once('/').expect("device/point");
        PointRef {
            device: device.into(),
            point: point.into(),
        }
    }

    fn config(points: &[(&str, f64)]) -> TelemetryConfig {
        TelemetryConfig {
            points: points
                .iter()
                .map(|(p, deadband)| {
                    (
                        point(p),
                        PointRule {
                            deadband: *deadband,
                        },
                    )
                })
                .collect(),
            batch: Span::seconds(5),
            min_interval: Span::seconds(30),
            max_samples_per_batch: 500,
        }
    }

    /// A connected sampler over `points`.
    fn sampler(points: &[(&str, f64)]) -> Sampler {
        let mut s = Sampler::new(&config(points), T0);
        s.set_link(true);
        s
    }

    /// The batch at `t` as `device/point=value@second` words, or "-" for none.
    fn batch(s: &mut Sampler, t: i64) -> String {
        match s.poll_batch(at(t)) {
            None => "-".into(),
            Some(b) => b
                .iter()
                .map(|x| {
                    let v = x.value.map_or("none".to_owned(), |v| v.to_string());
                    format!(
                        "{}/{}={v}@{}",
                        x.device,
                        x.point,
                        (x.at_ms - T0.as_millis()) / 1000
                    )
                })
                .collect::<Vec<_>>()
                .join(" "),
        }
    }

    #[test]
    fn changes_go_in_the_next_batch_and_the_newest_value_wins_within_the_interval() {
        let mut s = sampler(&[("ahu/temp", 0.0)]);
        let temp = point("ahu/temp");
        s.observe(at(0), &temp, Some(21.0));
        assert_eq!(s.poll_timeout(), Some(at(5)));
        assert_eq!(batch(&mut s, 4), "-", "not before the batch period");
        assert_eq!(batch(&mut s, 5), "ahu/temp=21@0");
        // A burst inside the rate limit: only the newest goes, when the interval is over.
        for (t, v) in [(6, 21.5), (7, 22.0), (8, 22.5), (9, 23.0)] {
            s.observe(at(t), &temp, Some(v));
        }
        for t in [10, 15, 20, 25, 30] {
            assert_eq!(batch(&mut s, t), "-", "rate-limited at {t}s");
        }
        assert_eq!(batch(&mut s, 35), "ahu/temp=23@9");
        // A change after a quiet period goes in the next batch.
        assert_eq!(batch(&mut s, 100), "-");
        s.observe(at(101), &temp, Some(24.0));
        assert_eq!(
            batch(&mut s, 103),
            "-",
            "the batch period since the last look"
        );
        assert_eq!(batch(&mut s, 105), "ahu/temp=24@101");
    }

    #[test]
    fn a_value_back_where_it_was_sent_sends_nothing() {
        let mut s = sampler(&[("ahu/temp", 0.0)]);
        let temp = point("ahu/temp");
        s.observe(at(0), &temp, Some(21.0));
        assert_eq!(batch(&mut s, 5), "ahu/temp=21@0");
        s.observe(at(10), &temp, Some(25.0));
        s.observe(at(12), &temp, Some(21.0));
        assert_eq!(batch(&mut s, 40), "-");
    }

    #[test]
    fn the_deadband_holds_back_small_moves_of_numbers_only() {
        let mut s = sampler(&[("room/co2", 25.0), ("room/fan", 0.0)]);
        let (co2, fan) = (point("room/co2"), point("room/fan"));
        s.observe(at(0), &co2, Some(600.0));
        s.observe(at(0), &fan, Some(0.0));
        assert_eq!(batch(&mut s, 5), "room/co2=600@0 room/fan=0@0");
        // Creeping up by less than the deadband each time: measured from the value sent.
        s.observe(at(31), &co2, Some(610.0));
        assert_eq!(batch(&mut s, 40), "-");
        s.observe(at(41), &co2, Some(620.0));
        assert_eq!(batch(&mut s, 45), "-");
        s.observe(at(46), &co2, Some(630.0));
        assert_eq!(batch(&mut s, 50), "room/co2=630@46");
        // Exactly the deadband counts; a point without one sends any change.
        s.observe(at(81), &co2, Some(605.0));
        s.observe(at(81), &fan, Some(1.0));
        assert_eq!(batch(&mut s, 85), "room/co2=605@81 room/fan=1@81");
    }

    #[test]
    fn an_unavailable_point_is_sent_once_as_none() {
        let mut s = sampler(&[("ahu/temp", 0.5)]);
        let temp = point("ahu/temp");
        s.observe(at(0), &temp, Some(21.0));
        assert_eq!(batch(&mut s, 5), "ahu/temp=21@0");
        s.observe(at(40), &temp, None);
        s.observe(at(41), &temp, None);
        assert_eq!(batch(&mut s, 45), "ahu/temp=none@40");
        s.observe(at(50), &temp, None);
        assert_eq!(batch(&mut s, 80), "-", "once");
        // Back with the same value: a change from unavailable, whatever the deadband.
        s.observe(at(90), &temp, Some(21.0));
        assert_eq!(batch(&mut s, 95), "ahu/temp=21@90");
    }

    #[test]
    fn batches_are_capped_and_the_rest_waits_oldest_first() {
        let mut cfg = config(&[("d/a", 0.0), ("d/b", 0.0), ("d/c", 0.0)]);
        cfg.max_samples_per_batch = 2;
        let mut s = Sampler::new(&cfg, T0);
        s.set_link(true);
        s.observe(at(3), &point("d/a"), Some(1.0));
        s.observe(at(1), &point("d/b"), Some(2.0));
        s.observe(at(2), &point("d/c"), Some(3.0));
        assert_eq!(batch(&mut s, 5), "d/b=2@1 d/c=3@2");
        assert_eq!(batch(&mut s, 6), "-", "one batch per period");
        assert_eq!(batch(&mut s, 10), "d/a=1@3");
    }

    #[test]
    fn nothing_goes_while_the_link_is_down_and_the_newest_values_go_when_it_is_back() {
        let mut s = sampler(&[("ahu/temp", 0.0), ("ahu/fan", 0.0)]);
        let (temp, fan) = (point("ahu/temp"), point("ahu/fan"));
        s.observe(at(0), &temp, Some(21.0));
        s.observe(at(0), &fan, Some(1.0));
        assert_eq!(batch(&mut s, 5), "ahu/fan=1@0 ahu/temp=21@0");
        s.set_link(false);
        assert_eq!(s.poll_timeout(), None);
        s.observe(at(50), &temp, Some(22.0));
        s.observe(at(60), &temp, Some(23.0));
        assert_eq!(batch(&mut s, 65), "-", "the link is down");
        s.set_link(true);
        // The newest values, and the unchanged ones once more (the hub may have missed them).
        assert_eq!(batch(&mut s, 120), "ahu/fan=1@0 ahu/temp=23@60");
        // A reconnect inside the rate limit waits for it.
        s.set_link(false);
        s.set_link(true);
        assert_eq!(batch(&mut s, 125), "-");
        assert_eq!(batch(&mut s, 150), "ahu/fan=1@0 ahu/temp=23@60");
        assert_eq!(batch(&mut s, 200), "-", "once per reconnect");
    }

    #[test]
    fn unselected_points_and_unseen_points_send_nothing() {
        let mut s = sampler(&[("ahu/temp", 0.0)]);
        s.observe(at(0), &point("pir/r1"), Some(1.0));
        assert!(!s.selects(&point("pir/r1")));
        assert_eq!(batch(&mut s, 5), "-");
        assert_eq!(
            sample_value(Some(drivers::point::Value::Bool(true))),
            Some(1.0)
        );
        assert_eq!(
            sample_value(Some(drivers::point::Value::Number(f64::NAN))),
            None
        );
    }

    #[test]
    fn a_clock_set_back_does_not_stall_batches() {
        let mut s = sampler(&[("ahu/temp", 0.0)]);
        s.observe(at(0), &point("ahu/temp"), Some(21.0));
        assert_eq!(batch(&mut s, -3600), "-");
        assert_eq!(batch(&mut s, -3595), "ahu/temp=21@0");
    }

    #[test]
    fn globs_match_any_run_of_characters() {
        assert!(glob_matches("*", "anything"));
        assert!(glob_matches("ahu-*", "ahu-1"));
        assert!(glob_matches("*-co2", "room-4-01-co2"));
        assert!(glob_matches("a*b*c", "axxbyyc"));
        assert!(glob_matches("a*b*c", "abc"));
        assert!(glob_matches("co2", "co2"));
        assert!(!glob_matches("co2", "co2x"));
        assert!(!glob_matches("ahu-*", "ahu"));
        assert!(!glob_matches("a*b*c", "axxbyy"));
    }
}
