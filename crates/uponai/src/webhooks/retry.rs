//! When a failed delivery is tried again: exponential backoff with jitter, capped, within a
//! budget of attempts. Pure: the random roll is an input.

use std::time::Duration;

/// How hard delivery tries. The hosted API retries 3 times within its timeout; the default
/// here is longer, so a receiver down for most of an hour still gets every event.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Attempts before an event is given up (the first one included); at least 4.
    pub max_attempts: u32,
    /// The delay after the first failure; doubles after each further one.
    pub base: Duration,
    /// The longest delay between two attempts.
    pub cap: Duration,
}

impl RetryPolicy {
    pub const DEFAULT: Self = Self { max_attempts: 16, base: Duration::from_secs(1), cap: Duration::from_secs(600) };

    /// The delay before the next attempt after `attempts_made` failed ones in this series, or
    /// `None` when the budget is spent. `roll` in [0, 1) picks the jitter: the delay is drawn
    /// from the upper half of the exponential step, so retries of many events spread out
    /// without ever coming sooner than half the step.
    pub fn next_delay(&self, attempts_made: u32, roll: f64) -> Option<Duration> {
        if attempts_made >= self.max_attempts {
            return None;
        }
        let exponent = attempts_made.saturating_sub(1).min(30);
        let step = self.base.saturating_mul(1u32 << exponent).min(self.cap);
        Some(step.mul_f64(0.5 + 0.5 * roll.clamp(0.0, 1.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RetryPolicy = RetryPolicy { max_attempts: 5, base: Duration::from_millis(100), cap: Duration::from_millis(500) };

    #[test]
    fn delays_double_from_the_base_and_stop_at_the_cap() {
        let at_top: Vec<_> = (1..5).map(|n| POLICY.next_delay(n, 1.0).unwrap().as_millis()).collect();
        assert_eq!(at_top, [100, 200, 400, 500]);
    }

    #[test]
    fn jitter_keeps_each_delay_within_the_upper_half_of_its_step() {
        for n in 1..5 {
            let low = POLICY.next_delay(n, 0.0).unwrap();
            let high = POLICY.next_delay(n, 0.999).unwrap();
            assert!(low * 2 >= POLICY.next_delay(n, 1.0).unwrap() && low < high, "attempt {n}: {low:?} {high:?}");
        }
    }

    #[test]
    fn the_budget_counts_every_attempt_including_the_first() {
        assert!(POLICY.next_delay(4, 0.5).is_some());
        assert_eq!(POLICY.next_delay(5, 0.5), None);
    }

    #[test]
    fn the_default_retries_more_than_the_hosted_apis_three_times_for_about_an_hour() {
        let policy = RetryPolicy::DEFAULT;
        assert!(policy.max_attempts > 4);
        let total: Duration = (1..policy.max_attempts).map(|n| policy.next_delay(n, 1.0).unwrap()).sum();
        assert!(total > Duration::from_secs(3600) && total < Duration::from_secs(2 * 3600), "{total:?}");
    }
}
