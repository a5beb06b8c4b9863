//! [`PhiAccrual`], the failure detector of Hayashibara et al. (2004) as Akka implements it:
//! the intervals between heartbeats are taken as normally distributed, and phi is
//! `-log10(P(a heartbeat is still to come after this long))`, computed with Akka's logistic
//! approximation of the normal CDF. An acceptable pause is added to the mean, and the
//! standard deviation has a floor, so that a steady sender is not declared dead by jitter.
//! Pure and clock-free: the caller passes times in.

use std::collections::VecDeque;

use crate::cluster::wire::MemberState;
use crate::config::HealthConfig;

/// The phi-accrual failure detector for one sender.
#[derive(Debug, Clone)]
pub struct PhiAccrual {
    intervals: VecDeque<f64>,
    last: Option<f64>,
    max_samples: usize,
    min_std_dev: f64,
    acceptable_pause: f64,
    first_interval: f64,
    longest: f64,
}

impl PhiAccrual {
    /// A detector expecting heartbeats every `interval`.
    pub fn new(cfg: &HealthConfig) -> PhiAccrual {
        PhiAccrual {
            intervals: VecDeque::new(),
            last: None,
            max_samples: 1000,
            min_std_dev: cfg.min_std_dev_ms as f64 / 1000.0,
            acceptable_pause: cfg.acceptable_pause_ms as f64 / 1000.0,
            first_interval: cfg.heartbeat_interval_ms as f64 / 1000.0,
            longest: 0.0,
        }
    }

    /// Records a heartbeat at `now` (seconds on any monotonic clock).
    pub fn heartbeat(&mut self, now: f64) {
        match self.last {
            None => {
                // As Akka: seed with the expected interval, ± a quarter, so that phi is
                // defined from the first heartbeat.
                let i = self.first_interval;
                self.intervals.extend([i - i / 4.0, i + i / 4.0]);
            }
            Some(last) => {
                let interval = (now - last).max(0.0);
                self.longest = self.longest.max(interval);
                self.intervals.push_back(interval);
                while self.intervals.len() > self.max_samples {
                    self.intervals.pop_front();
                }
            }
        }
        self.last = Some(now);
    }

    /// Starts over with a heartbeat at `now` after the sender was declared down and came
    /// back: the silence that took it down is not a sample of its normal rhythm, and kept in
    /// the history it would make the next failure take several times longer to detect (4.5 s,
    /// then 11 s, for a node frozen three times with 200 ms heartbeats).
    pub fn restart(&mut self, now: f64) {
        if let Some(last) = self.last {
            self.longest = self.longest.max(now - last);
        }
        self.intervals.clear();
        self.last = None;
        self.heartbeat(now);
    }

    /// The longest interval between two heartbeats seen so far, seconds (how close a busy
    /// sender came to being suspected: phi stays near 0 until the silence nears the mean
    /// interval plus the acceptable pause).
    pub fn longest_interval(&self) -> f64 {
        self.longest
    }

    /// Phi at `now`; 0 before the first heartbeat.
    pub fn phi(&self, now: f64) -> f64 {
        let Some(last) = self.last else { return 0.0 };
        let n = self.intervals.len() as f64;
        let mean = self.intervals.iter().sum::<f64>() / n;
        let var = self.intervals.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
        let std = var.sqrt().max(self.min_std_dev);
        let mean = mean + self.acceptable_pause;
        let t = now - last;
        let y = (t - mean) / std;
        let e = (-y * (1.5976 + 0.070566 * y * y)).exp();
        let p = if t > mean { e / (1.0 + e) } else { 1.0 - 1.0 / (1.0 + e) };
        (-p.max(f64::MIN_POSITIVE).log10()).max(0.0) + 0.0
    }
}

/// The state phi puts a node in.
pub fn state_of(phi: f64, cfg: &HealthConfig) -> MemberState {
    if phi >= cfg.phi_threshold {
        MemberState::Down
    } else if phi >= cfg.phi_suspect {
        MemberState::Suspect
    } else {
        MemberState::Up
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phi_rises_with_silence_and_steady_heartbeats_stay_up() {
        let cfg = HealthConfig::default();
        let mut d = PhiAccrual::new(&cfg);
        for i in 0..20 {
            d.heartbeat(i as f64);
        }
        let last = 19.0;
        assert!(d.phi(last + 1.0) < 1.0, "{}", d.phi(last + 1.0));
        assert_eq!(state_of(d.phi(last + 2.0), &cfg), MemberState::Up);
        // With Akka's defaults (1 s, 3 s pause, threshold 8) a silent node is down within ~5 s.
        let down_after = (0..100).map(|i| last + i as f64 * 0.1).find(|t| d.phi(*t) >= cfg.phi_threshold).unwrap();
        assert!(down_after - last > 3.0 && down_after - last < 6.0, "{}", down_after - last);
        // Monotone in the time since the last heartbeat.
        let phis: Vec<f64> = (0..60).map(|i| d.phi(last + i as f64 * 0.1)).collect();
        assert!(phis.windows(2).all(|w| w[1] >= w[0]));
    }

    #[test]
    fn with_the_fast_settings_a_silent_node_is_down_within_three_seconds() {
        let cfg = HealthConfig::fast();
        let mut d = PhiAccrual::new(&cfg);
        for i in 0..20 {
            d.heartbeat(i as f64 * 0.5);
        }
        let last = 9.5;
        // A heartbeat up to three intervals late is normal.
        assert_eq!(state_of(d.phi(last + 1.5), &cfg), MemberState::Up);
        let down_after = (0..300).map(|i| last + i as f64 * 0.01).find(|t| d.phi(*t) >= cfg.phi_threshold).unwrap();
        assert!(down_after - last > 2.0 && down_after - last < 3.0, "{}", down_after - last);
    }

    #[test]
    fn a_node_back_from_down_is_detected_as_fast_as_a_fresh_one() {
        let cfg = HealthConfig { heartbeat_interval_ms: 200, acceptable_pause_ms: 600, ..HealthConfig::default() };
        let down_after = |d: &PhiAccrual, last: f64| {
            (0..2000).map(|i| last + i as f64 * 0.01).find(|t| d.phi(*t) >= cfg.phi_threshold).unwrap() - last
        };
        let mut back = PhiAccrual::new(&cfg);
        let mut t = 0.0;
        for _ in 0..25 {
            back.heartbeat(t);
            t += 0.2;
        }
        // `back` is silent for 2 s (declared down), then beats again; `fresh` starts then.
        t += 2.0;
        let mut kept = back.clone();
        back.restart(t);
        kept.heartbeat(t);
        let mut fresh = PhiAccrual::new(&cfg);
        fresh.heartbeat(t);
        for _ in 0..25 {
            t += 0.2;
            fresh.heartbeat(t);
            back.heartbeat(t);
            kept.heartbeat(t);
        }
        let (f, b, k) = (down_after(&fresh, t), down_after(&back, t), down_after(&kept, t));
        assert!((b - f).abs() < 0.05, "restarted {b:.2} s vs fresh {f:.2} s");
        assert!(k > 1.5 * f, "with the gap in its history: {k:.2} s vs {f:.2} s");
        assert!(back.longest_interval() >= 2.0);
    }

    #[test]
    fn jittery_heartbeats_raise_the_tolerance() {
        let cfg = HealthConfig { acceptable_pause_ms: 0, ..HealthConfig::default() };
        let mut steady = PhiAccrual::new(&cfg);
        let mut jittery = PhiAccrual::new(&cfg);
        let mut t = 0.0;
        for i in 0..50 {
            steady.heartbeat(i as f64);
            t += if i % 2 == 0 { 0.4 } else { 1.6 };
            jittery.heartbeat(t);
        }
        assert!(jittery.phi(t + 2.0) < steady.phi(49.0 + 2.0));
    }
}
