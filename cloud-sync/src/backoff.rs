//! Reconnect backoff with full jitter (PROTOCOL.md, "Reconnects"): rumqttc has none.
//!
//! Pure: the caller passes the random numbers and the durations, so a thousand simulated
//! gateways can be checked for how they spread without waiting a second.

use std::time::Duration;

/// Exponential backoff with full jitter: each delay is uniform in `[0, min(max, base·2^n)]`.
#[derive(Debug, Clone)]
pub struct Jittered {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Jittered {
    /// PROTOCOL.md's defaults: from 1 s up to 120 s.
    pub fn protocol_default() -> Jittered {
        Jittered::new(Duration::from_secs(1), Duration::from_secs(120))
    }

    pub fn new(base: Duration, max: Duration) -> Jittered {
        Jittered {
            base: base.max(Duration::from_millis(1)),
            max: max.max(base),
            attempt: 0,
        }
    }

    /// The ceiling of the next delay (before jitter).
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// The next delay, given a uniform random number in `[0, 1)`; the one after doubles.
    pub fn next_delay(&mut self, uniform: f64) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        ceiling.mul_f64(uniform.clamp(0.0, 1.0))
    }

    /// After a connection that stayed up long enough, start again from the base.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// A small, seedable random source (SplitMix64) for jitter; not for secrets.
#[derive(Debug, Clone)]
pub struct Jitter(u64);

impl Jitter {
    pub fn new(seed: u64) -> Jitter {
        Jitter(seed)
    }

    /// A uniform number in `[0, 1)`.
    pub fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_double_up_to_the_maximum_and_reset() {
        let mut b = Jittered::protocol_default();
        let ceilings: Vec<u64> = (0..9)
            .map(|_| {
                let c = b.ceiling().as_secs();
                b.next_delay(0.5);
                c
            })
            .collect();
        assert_eq!(ceilings, vec![1, 2, 4, 8, 16, 32, 64, 120, 120]);
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_secs(1));
        assert_eq!(b.next_delay(1.5), Duration::from_secs(1), "clamped");
    }

    #[test]
    fn a_thousand_gateways_spread_their_reconnects() {
        // After a broker outage every gateway is at its 120 s ceiling: with full jitter the
        // reconnects spread evenly instead of arriving together.
        let mut buckets = [0u32; 12];
        for g in 0..1000u64 {
            let mut b = Jittered::protocol_default();
            for _ in 0..8 {
                b.next_delay(0.0);
            }
            let d = b.next_delay(Jitter::new(g).uniform());
            buckets[(d.as_secs() / 10).min(11) as usize] += 1;
        }
        assert!(
            buckets.iter().all(|&n| (50..=130).contains(&n)),
            "reconnects per 10 s over two minutes: {buckets:?}"
        );
    }
}
