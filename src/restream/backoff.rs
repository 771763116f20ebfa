//! When a failing destination tries again: from `reconnect_min`, doubling on every failure up to
//! `reconnect_max`, and back to `reconnect_min` once a connection has stayed up for a healthy
//! period (a blip after an hour of streaming is not the tenth failure in a row). Pure.

use std::time::Duration;

/// The reconnect schedule of one destination.
#[derive(Debug, Clone)]
pub struct Backoff {
    /// The first wait, and the wait after a reset.
    min: Duration,
    /// The longest wait.
    max: Duration,
    /// A connection that stayed up this long resets the schedule when it fails.
    healthy: Duration,
    /// The wait the next failure gets.
    next: Duration,
    /// Failures since the last reset, for the status.
    failures: u32,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration, healthy: Duration) -> Backoff {
        Backoff {
            min,
            max: max.max(min),
            healthy,
            next: min,
            failures: 0,
        }
    }

    /// A connection attempt failed, or a connection that had been up for `up_for` broke: how
    /// long to wait before the next attempt.
    pub fn failed(&mut self, up_for: Duration) -> Duration {
        if up_for >= self.healthy {
            self.reset();
        }
        let wait = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        self.failures += 1;
        wait
    }

    /// Back to the first step (after an operator re-enables the destination, say).
    pub fn reset(&mut self) {
        self.next = self.min;
        self.failures = 0;
    }

    /// Failures since the last reset.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn schedule(backoff: &mut Backoff, n: usize) -> Vec<u64> {
        (0..n)
            .map(|_| backoff.failed(Duration::ZERO).as_millis() as u64)
            .collect()
    }

    #[test]
    fn doubles_from_min_to_max() {
        let mut backoff = Backoff::new(1000 * MS, 30_000 * MS, 10_000 * MS);
        assert_eq!(
            schedule(&mut backoff, 8),
            [1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
        assert_eq!(backoff.failures(), 8);
    }

    #[test]
    fn a_healthy_connection_resets_the_schedule() {
        let mut backoff = Backoff::new(250 * MS, 2000 * MS, 10_000 * MS);
        assert_eq!(schedule(&mut backoff, 5), [250, 500, 1000, 2000, 2000]);
        // Up for a while but not healthy: the schedule continues.
        assert_eq!(backoff.failed(9_999 * MS), 2000 * MS);
        // Up for the healthy period: starts over.
        assert_eq!(backoff.failed(10_000 * MS), 250 * MS);
        assert_eq!(backoff.failures(), 1);
        assert_eq!(schedule(&mut backoff, 2), [500, 1000]);
        backoff.reset();
        assert_eq!(schedule(&mut backoff, 1), [250]);
    }

    #[test]
    fn equal_min_and_max_is_a_fixed_delay() {
        let mut backoff = Backoff::new(500 * MS, 500 * MS, 10_000 * MS);
        assert_eq!(schedule(&mut backoff, 3), [500, 500, 500]);
        // A max below min is treated as min.
        let mut backoff = Backoff::new(500 * MS, 100 * MS, 10_000 * MS);
        assert_eq!(schedule(&mut backoff, 2), [500, 500]);
    }

    #[test]
    fn never_overflows() {
        let mut backoff = Backoff::new(Duration::MAX / 2, Duration::MAX, Duration::MAX);
        backoff.failed(Duration::ZERO);
        backoff.failed(Duration::ZERO);
        assert_eq!(backoff.failed(Duration::ZERO), Duration::MAX);
    }
}
