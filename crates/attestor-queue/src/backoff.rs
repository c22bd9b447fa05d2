//! Retry delays: exponential backoff with jitter.
//!
//! Owns [`Backoff`], the pure function from "attempt number" to "how long
//! to wait before the next try". It must never touch the database, sleep,
//! or read the clock: callers pass the result to [`crate::lease::fail`].

use std::time::Duration;

/// Exponential backoff with "equal jitter": the delay for attempt `n`
/// (1-based) is `d = min(max, base * factor^(n-1))`, randomised uniformly
/// in `[d/2, d]` so that jobs failing together do not retry together.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// Delay after the first failed attempt (before jitter).
    pub base: Duration,
    /// Growth factor per attempt.
    pub factor: f64,
    /// Upper bound on any delay.
    pub max: Duration,
    /// Fraction of the delay that is randomised (0 = none, 1 = full jitter,
    /// 0.5 = the default "equal jitter").
    pub jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_secs(1),
            factor: 2.0,
            max: Duration::from_secs(15 * 60),
            jitter: 0.5,
        }
    }
}

impl Backoff {
    /// The un-jittered delay after failed attempt `attempt` (1-based).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(63) as i32;
        let secs = self.base.as_secs_f64() * self.factor.max(1.0).powi(exp);
        if !secs.is_finite() || secs >= self.max.as_secs_f64() {
            self.max
        } else {
            Duration::from_secs_f64(secs)
        }
    }

    /// The delay after failed attempt `attempt`, jittered with `unit`, a
    /// number in `[0, 1)` (use [`random_unit`] in production).
    pub fn delay_with(&self, attempt: u32, unit: f64) -> Duration {
        let ceiling = self.ceiling(attempt).as_secs_f64();
        let jitter = self.jitter.clamp(0.0, 1.0);
        let unit = unit.clamp(0.0, 1.0);
        Duration::from_secs_f64(ceiling * (1.0 - jitter) + ceiling * jitter * unit)
    }

    /// The delay after failed attempt `attempt`, with random jitter.
    pub fn delay(&self, attempt: u32) -> Duration {
        self.delay_with(attempt, random_unit())
    }
}

/// A uniformly distributed number in `[0, 1)` from the OS random source
/// (through `uuid`'s v4 generator, so no extra dependency).
pub fn random_unit() -> f64 {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[..8]);
    (u64::from_le_bytes(word) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_and_caps() {
        let b = Backoff {
            base: Duration::from_millis(100),
            factor: 2.0,
            max: Duration::from_secs(1),
            jitter: 0.0,
        };
        assert_eq!(b.delay(1), Duration::from_millis(100));
        assert_eq!(b.delay(2), Duration::from_millis(200));
        assert_eq!(b.delay(4), Duration::from_millis(800));
        assert_eq!(b.delay(5), Duration::from_secs(1));
        assert_eq!(b.delay(1000), Duration::from_secs(1));
    }

    #[test]
    fn jitter_stays_within_bounds() {
        let b = Backoff::default();
        for attempt in 1..20 {
            let ceiling = b.ceiling(attempt);
            for _ in 0..50 {
                let d = b.delay(attempt);
                assert!(d <= ceiling && d >= ceiling / 2, "{d:?} vs {ceiling:?}");
            }
        }
        assert_eq!(b.delay_with(3, 0.0), b.ceiling(3) / 2);
    }

    #[test]
    fn random_unit_in_range() {
        for _ in 0..1000 {
            let u = random_unit();
            assert!((0.0..1.0).contains(&u));
        }
    }
}
