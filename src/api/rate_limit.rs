//! [`Bucket`]: a token bucket that may go into debt. It fills at `rate` per second up to
//! `capacity`; a request may start while the level is above zero, and what it uses is taken
//! afterwards, even past zero (a generation's length is known only at its end), so a tenant
//! that overspent waits until the debt is paid back. Time is passed in, so the bucket is a
//! plain value that tests drive.

use std::time::{Duration, Instant};

/// A token bucket.
#[derive(Debug, Clone)]
pub struct Bucket {
    rate: f64,
    capacity: f64,
    level: f64,
    at: Instant,
}

impl Bucket {
    /// Full, filling at `rate` per second up to `capacity` (at least one token).
    pub fn new(rate: f64, capacity: f64, now: Instant) -> Bucket {
        let capacity = capacity.max(1.0);
        Bucket { rate, capacity, level: capacity, at: now }
    }

    /// The same bucket with a new rate and capacity (a reloaded limit), its level kept
    /// within the new capacity.
    pub fn set_limits(&mut self, rate: f64, capacity: f64, now: Instant) {
        self.fill(now);
        self.rate = rate;
        self.capacity = capacity.max(1.0);
        self.level = self.level.min(self.capacity);
    }

    fn fill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.level = (self.level + dt * self.rate).min(self.capacity);
        self.at = now;
    }

    /// Takes `n` if the level covers it; otherwise how long until it would.
    pub fn take(&mut self, n: f64, now: Instant) -> Result<(), Duration> {
        self.fill(now);
        if self.level >= n {
            self.level -= n;
            return Ok(());
        }
        Err(self.wait_for(n))
    }

    /// Whether a request may start: the level is above zero; otherwise how long until it is.
    pub fn open(&mut self, now: Instant) -> Result<(), Duration> {
        self.fill(now);
        if self.level > 0.0 { Ok(()) } else { Err(self.wait_for(f64::MIN_POSITIVE)) }
    }

    /// Takes `n` whatever the level (it may go below zero).
    pub fn charge(&mut self, n: f64, now: Instant) {
        self.fill(now);
        self.level -= n;
    }

    fn wait_for(&self, n: f64) -> Duration {
        if self.rate <= 0.0 {
            return Duration::from_secs(3600);
        }
        Duration::from_secs_f64(((n - self.level) / self.rate).clamp(0.0, 3600.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_full_bucket_spends_its_burst_then_refills_at_its_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(2.0, 2.0, t0);
        assert!(b.take(1.0, t0).is_ok() && b.take(1.0, t0).is_ok());
        let wait = b.take(1.0, t0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.5).abs() < 1e-9, "{wait:?}");
        assert!(b.take(1.0, t0 + Duration::from_millis(500)).is_ok());
    }

    #[test]
    fn a_debt_closes_the_bucket_until_it_is_paid() {
        let t0 = Instant::now();
        let mut b = Bucket::new(10.0, 10.0, t0);
        assert!(b.open(t0).is_ok());
        b.charge(40.0, t0);
        let wait = b.open(t0).unwrap_err();
        assert!((wait.as_secs_f64() - 3.0).abs() < 1e-6, "{wait:?}");
        assert!(b.open(t0 + Duration::from_millis(2900)).is_err());
        assert!(b.open(t0 + Duration::from_millis(3100)).is_ok());
    }

    proptest! {
        /// Over any run of takes, what was taken never exceeds the capacity plus the rate
        /// times the time passed.
        #[test]
        fn never_more_than_capacity_plus_rate_times_time(
            rate in 0.5f64..100.0,
            capacity in 1.0f64..50.0,
            steps in prop::collection::vec((0u64..200, 0.1f64..5.0), 1..200),
        ) {
            let t0 = Instant::now();
            let mut b = Bucket::new(rate, capacity, t0);
            let (mut now, mut taken) = (t0, 0.0);
            for (ms, n) in steps {
                now += Duration::from_millis(ms);
                if b.take(n, now).is_ok() {
                    taken += n;
                }
                let allowed = capacity + rate * now.duration_since(t0).as_secs_f64();
                prop_assert!(taken <= allowed + 1e-9, "{taken} > {allowed}");
            }
        }
    }
}
