//! Replica autoscaling, as a pure policy: how many replicas a shard needs for the requests
//! it has now ([`Autoscaling`], Ray Serve's names and rule), and when a change is due
//! ([`Scaler`]: a shard's wish to grow must hold for `upscale_delay_s`, its wish to shrink
//! for `downscale_delay_s`, and any change starts both waits again). Time and load are passed
//! in, so the coordinator feeds it the figures its members' heartbeats carry and tests feed it
//! anything.

pub use crate::config::Autoscaling;

/// A shard's load, summed over its replicas.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Load {
    /// Requests in flight and queued (a batch counted by its rows).
    pub ongoing: f64,
    /// Tokens per second through the shard.
    pub tokens_per_s: f64,
}

impl Load {
    /// `ongoing` requests, no token figure.
    pub fn requests(ongoing: f64) -> Load {
        Load { ongoing, tokens_per_s: 0.0 }
    }
}

impl Autoscaling {
    /// The replicas `load` needs: `ceil(ongoing / target_ongoing_requests)`, or
    /// `ceil(tokens_per_s / target_tokens_per_s)` when that is set and more, within the
    /// bounds.
    pub fn desired(&self, load: Load) -> usize {
        let mut want = (load.ongoing.max(0.0) / self.target_ongoing_requests).ceil();
        if let Some(t) = self.target_tokens_per_s {
            want = want.max((load.tokens_per_s.max(0.0) / t).ceil());
        }
        (want.min(self.max_replicas as f64) as usize).clamp(self.min_replicas, self.max_replicas)
    }
}

/// One shard's scaling: its recent load samples, and since when it has wanted more or fewer
/// replicas.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scaler {
    /// `(time, load)` within the look-back period.
    samples: std::collections::VecDeque<(f64, Load)>,
    /// When the wish to grow began (seconds on the caller's clock).
    wants_more_since: Option<f64>,
    /// When the wish to shrink began.
    wants_fewer_since: Option<f64>,
}

impl Scaler {
    /// The replica count the shard should have now, given `current` replicas serving and
    /// its `load` at time `now` (seconds; the mean of the look-back period's samples
    /// decides): `Some(n)` when a change is due, one replica at a time. A count outside the
    /// bounds is brought inside at once.
    pub fn decide(&mut self, policy: &Autoscaling, current: usize, load: Load, now: f64) -> Option<usize> {
        self.samples.push_back((now, load));
        while self.samples.front().is_some_and(|(t, _)| now - t > policy.look_back_period_s) {
            self.samples.pop_front();
        }
        let mean = self.load();
        if current < policy.min_replicas || current > policy.max_replicas {
            self.reset();
            return Some(current.clamp(policy.min_replicas, policy.max_replicas));
        }
        let desired = policy.desired(mean);
        if desired > current {
            self.wants_fewer_since = None;
            let since = *self.wants_more_since.get_or_insert(now);
            if now - since >= policy.upscale_delay_s {
                self.reset();
                return Some(current + 1);
            }
        } else if desired < current {
            self.wants_more_since = None;
            let since = *self.wants_fewer_since.get_or_insert(now);
            if now - since >= policy.downscale_delay_s {
                self.reset();
                return Some(current - 1);
            }
        } else {
            self.reset();
        }
        None
    }

    /// The mean load over the look-back period.
    pub fn load(&self) -> Load {
        if self.samples.is_empty() {
            return Load::default();
        }
        let n = self.samples.len() as f64;
        let ongoing = self.samples.iter().map(|(_, l)| l.ongoing).sum::<f64>() / n;
        let tokens_per_s = self.samples.iter().map(|(_, l)| l.tokens_per_s).sum::<f64>() / n;
        Load { ongoing, tokens_per_s }
    }

    /// Forgets both wishes (after a change, or when the count is right); the samples stay.
    pub fn reset(&mut self) {
        self.wants_more_since = None;
        self.wants_fewer_since = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn policy(min: usize, max: usize, up: f64, down: f64) -> Autoscaling {
        Autoscaling {
            min_replicas: min,
            max_replicas: max,
            target_ongoing_requests: 2.0,
            upscale_delay_s: up,
            downscale_delay_s: down,
            look_back_period_s: 0.0,
            target_tokens_per_s: None,
        }
    }

    #[test]
    fn grows_after_the_upscale_delay_and_shrinks_after_the_downscale_delay() {
        let p = policy(1, 3, 2.0, 10.0);
        let mut s = Scaler::default();
        assert_eq!(s.decide(&p, 1, Load::requests(9.0), 0.0), None, "wants 3, waits");
        assert_eq!(s.decide(&p, 1, Load::requests(9.0), 1.9), None);
        assert_eq!(s.decide(&p, 1, Load::requests(9.0), 2.0), Some(2));
        assert_eq!(s.decide(&p, 2, Load::requests(9.0), 2.5), None, "the wait starts again");
        assert_eq!(s.decide(&p, 2, Load::requests(9.0), 4.5), Some(3));
        assert_eq!(s.decide(&p, 3, Load::requests(90.0), 10.0), None, "never above max");
        // A dip shorter than the downscale delay changes nothing.
        assert_eq!(s.decide(&p, 3, Load::requests(0.0), 11.0), None);
        assert_eq!(s.decide(&p, 3, Load::requests(6.0), 15.0), None);
        assert_eq!(s.decide(&p, 3, Load::requests(0.0), 16.0), None);
        assert_eq!(s.decide(&p, 3, Load::requests(0.0), 26.0), Some(2));
        assert_eq!(s.decide(&p, 2, Load::requests(0.0), 27.0), None, "the wait starts again");
        assert_eq!(s.decide(&p, 2, Load::requests(0.0), 37.0), Some(1));
        assert_eq!(s.decide(&p, 1, Load::requests(0.0), 100.0), None, "never below min");
        // Out of bounds (a replica lost, bounds lowered): brought back at once.
        assert_eq!(s.decide(&p, 0, Load::requests(0.0), 101.0), Some(1));
        assert_eq!(s.decide(&p, 5, Load::requests(0.0), 101.0), Some(3));
    }

    #[test]
    fn the_decision_follows_the_mean_of_the_look_back_period() {
        let mut p = policy(1, 3, 0.0, 0.0);
        p.look_back_period_s = 5.0;
        let mut s = Scaler::default();
        // One busy sample among idle ones is not a reason to grow.
        for t in 0..4 {
            assert_eq!(s.decide(&p, 1, Load::requests(0.0), t as f64), None);
        }
        assert_eq!(s.decide(&p, 1, Load::requests(4.0), 4.0), None, "mean 0.8: one replica is enough");
        assert!((s.load().ongoing - 0.8).abs() < 1e-9);
        // Load that lasts moves the mean.
        assert_eq!(s.decide(&p, 1, Load::requests(10.0), 5.0), Some(2), "mean 14/6 wants 2");
    }

    #[test]
    fn bounds_and_targets_are_checked() {
        assert!(policy(1, 3, 1.0, 1.0).validate().is_ok());
        assert!(policy(0, 3, 1.0, 1.0).validate().is_err());
        assert!(policy(4, 3, 1.0, 1.0).validate().is_err());
        assert!(policy(1, 3, -1.0, 1.0).validate().is_err());
        let mut p = policy(1, 3, 1.0, 1.0);
        p.target_ongoing_requests = 0.0;
        assert!(p.validate().is_err());
        assert_eq!(p.max_replicas, 3);
        assert_eq!(policy(2, 5, 0.0, 0.0).desired(Load::requests(0.0)), 2);
        assert_eq!(policy(1, 5, 0.0, 0.0).desired(Load::requests(5.0)), 3);
        assert_eq!(policy(1, 5, 0.0, 0.0).desired(Load::requests(1e9)), 5);
    }

    #[test]
    fn tokens_per_second_ask_for_replicas_when_set() {
        let mut p = policy(1, 4, 0.0, 0.0);
        let busy = Load { ongoing: 1.0, tokens_per_s: 250.0 };
        assert_eq!(p.desired(busy), 1, "requests alone decide without a token target");
        p.target_tokens_per_s = Some(100.0);
        assert_eq!(p.desired(busy), 3, "ceil(250 / 100)");
        assert_eq!(p.desired(Load { ongoing: 7.0, tokens_per_s: 10.0 }), 4, "requests want more: ceil(7 / 2)");
        assert_eq!(p.desired(Load { ongoing: 0.0, tokens_per_s: 1e9 }), 4, "never above max");
        let mut s = Scaler::default();
        assert_eq!(s.decide(&p, 1, busy, 0.0), Some(2));
        p.target_tokens_per_s = Some(0.0);
        assert!(p.validate().is_err());
        p.target_tokens_per_s = Some(f64::NAN);
        assert!(p.validate().is_err());
    }

    proptest! {
        /// Whatever the load: the count stays within the bounds, moves one replica at a
        /// time, and two changes are never closer than the delay of the second one's
        /// direction (so it cannot oscillate faster than the delays allow).
        #[test]
        fn within_bounds_one_step_at_a_time_never_faster_than_the_delays(
            min in 1usize..4,
            extra in 0usize..4,
            up in 0.0f64..20.0,
            down in 0.0f64..60.0,
            tokens_target in prop::option::of(1.0f64..500.0),
            loads in prop::collection::vec((0.0f64..40.0, 0.0f64..5000.0, 0.05f64..5.0), 1..300),
        ) {
            let mut p = policy(min, min + extra, up, down);
            p.target_tokens_per_s = tokens_target;
            let (mut s, mut n, mut now, mut last_change) = (Scaler::default(), min, 0.0, None::<f64>);
            for (ongoing, tokens_per_s, dt) in loads {
                now += dt;
                if let Some(next) = s.decide(&p, n, Load { ongoing, tokens_per_s }, now) {
                    prop_assert!(next == n + 1 || next + 1 == n, "{n} -> {next}");
                    prop_assert!((p.min_replicas..=p.max_replicas).contains(&next));
                    let delay = if next > n { up } else { down };
                    if let Some(t) = last_change {
                        prop_assert!(now - t >= delay - 1e-9, "{n} -> {next} {:.2} s after the last change", now - t);
                    }
                    last_change = Some(now);
                    n = next;
                }
            }
        }
    }
}
