//! The balancing policies: decisions as plain functions over plain data (the
//! [`super::actor::Balancer`] actor only holds the state):
//!
//! - [`BalancingStrategy`]: round-robin, least-connections, weighted (by a node's declared
//!   compute), resource-based (lowest CPU from heartbeats), and the default, power of two
//!   choices over a peak-EWMA latency estimate times outstanding requests (as tower's `p2c`
//!   with `PeakEwma`, after Mitzenmacher, "The Power of Two Choices in Randomized Load
//!   Balancing", 2001, and Finagle's peak EWMA).
//! - [`rendezvous`]: session affinity by highest-random-weight hashing (Thaler & Ravishankar,
//!   1998): a key goes to the replica with the highest `hash(key, node)`, so a joining node
//!   takes only the keys it now wins and nothing else moves.
//! - [`CircuitBreaker`]: closed → open after `threshold` consecutive failures → half-open
//!   after `open_for` (one probe) → closed on success, open again on failure.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use crate::cluster::wire::{ModelRoutes, StageRoute};
use crate::config::BalancingStrategy;

/// What a balancer knows of one candidate node.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Candidate {
    /// Requests outstanding from this balancer to routes through the node.
    pub in_flight: usize,
    /// Peak-EWMA latency estimate, seconds (0 when unknown).
    pub latency: f64,
    /// Declared relative compute (weight).
    pub weight: f64,
    /// CPU use from the latest heartbeat, percent.
    pub cpu: f64,
}

/// The p2c cost of a candidate: latency × (outstanding + 1); an unmeasured node costs as
/// little as the cheapest measured one would with no load, so new nodes get tried.
pub fn p2c_cost(c: &Candidate, default_latency: f64) -> f64 {
    let lat = if c.latency > 0.0 { c.latency } else { default_latency };
    lat * (c.in_flight as f64 + 1.0)
}

/// Index of the chosen candidate. `counter` drives round-robin, `random` (two draws in
/// `[0, 1)`) drives the randomised strategies, so the function stays deterministic.
pub fn choose(strategy: BalancingStrategy, candidates: &[Candidate], counter: u64, random: (f64, f64)) -> usize {
    let n = candidates.len();
    if n <= 1 {
        return 0;
    }
    let pick = |r: f64| ((r * n as f64) as usize).min(n - 1);
    let argmin = |key: &dyn Fn(&Candidate) -> f64| {
        (0..n).min_by(|&a, &b| key(&candidates[a]).total_cmp(&key(&candidates[b])).then(a.cmp(&b))).unwrap_or(0)
    };
    match strategy {
        BalancingStrategy::RoundRobin => (counter % n as u64) as usize,
        BalancingStrategy::LeastConnections => {
            // Ties rotate with the counter, so an idle cluster still spreads requests.
            let min = candidates.iter().map(|c| c.in_flight).min().unwrap_or(0);
            let tied: Vec<usize> = (0..n).filter(|&i| candidates[i].in_flight == min).collect();
            tied[(counter % tied.len() as u64) as usize]
        }
        BalancingStrategy::Weighted => {
            let total: f64 = candidates.iter().map(|c| c.weight.max(0.0)).sum();
            if total <= 0.0 {
                return pick(random.0);
            }
            let mut target = random.0 * total;
            for (i, c) in candidates.iter().enumerate() {
                target -= c.weight.max(0.0);
                if target < 0.0 {
                    return i;
                }
            }
            n - 1
        }
        BalancingStrategy::ResourceBased => argmin(&|c: &Candidate| c.cpu + c.in_flight as f64 * 1e-3),
        BalancingStrategy::PowerOfTwoChoices => {
            let a = pick(random.0);
            let mut b = pick(random.1);
            if b == a {
                b = (a + 1) % n;
            }
            let measured = candidates.iter().filter(|c| c.latency > 0.0).map(|c| c.latency);
            let default_latency = measured.fold(f64::INFINITY, f64::min);
            let default_latency = if default_latency.is_finite() { default_latency } else { 1e-3 };
            if p2c_cost(&candidates[b], default_latency) < p2c_cost(&candidates[a], default_latency) { b } else { a }
        }
    }
}

/// Highest-random-weight choice of one of `nodes` for `key`.
pub fn rendezvous<S: AsRef<str>>(key: &str, nodes: &[S]) -> usize {
    let score = |node: &str| {
        let mut h = DefaultHasher::new();
        key.hash(&mut h);
        node.hash(&mut h);
        h.finish()
    };
    (0..nodes.len()).max_by_key(|&i| (score(nodes[i].as_ref()), std::cmp::Reverse(i))).unwrap_or(0)
}

/// A peak-sensitive exponentially weighted moving average of latency (Finagle, tower): a
/// sample above the estimate replaces it at once; below it, it decays in with time constant
/// `tau`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PeakEwma {
    /// Current estimate, seconds.
    pub estimate: f64,
    last: f64,
    tau: f64,
}

impl PeakEwma {
    /// An empty estimate with decay time `tau` seconds.
    pub fn new(tau: f64) -> PeakEwma {
        PeakEwma { estimate: 0.0, last: 0.0, tau }
    }

    /// Records a sample of `rtt` seconds at time `now` (seconds).
    pub fn observe(&mut self, rtt: f64, now: f64) {
        if self.estimate == 0.0 || rtt > self.estimate {
            self.estimate = rtt;
        } else {
            let w = (-(now - self.last).max(0.0) / self.tau).exp();
            self.estimate = self.estimate * w + rtt * (1.0 - w);
        }
        self.last = now;
    }
}

/// A circuit breaker's state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BreakerState {
    /// Requests pass; counts consecutive failures.
    Closed {
        /// Consecutive failures so far.
        failures: u32,
    },
    /// Requests are refused until `until` (seconds).
    Open {
        /// When to let a probe through.
        until: f64,
    },
    /// One probe is allowed; its outcome closes or reopens the breaker.
    HalfOpen {
        /// Whether the probe is out.
        probing: bool,
    },
}

/// One node's circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CircuitBreaker {
    /// State now.
    pub state: BreakerState,
    /// Consecutive failures that open it.
    pub threshold: u32,
    /// How long it stays open, seconds.
    pub open_for: f64,
}

impl CircuitBreaker {
    /// A closed breaker.
    pub fn new(threshold: u32, open_for: f64) -> CircuitBreaker {
        CircuitBreaker { state: BreakerState::Closed { failures: 0 }, threshold: threshold.max(1), open_for }
    }

    /// Whether a request may go through at `now` (taking the half-open probe if so).
    pub fn allow(&mut self, now: f64) -> bool {
        match self.state {
            BreakerState::Closed { .. } => true,
            BreakerState::Open { until } if now >= until => {
                self.state = BreakerState::HalfOpen { probing: true };
                true
            }
            BreakerState::Open { .. } => false,
            BreakerState::HalfOpen { probing: false } => {
                self.state = BreakerState::HalfOpen { probing: true };
                true
            }
            BreakerState::HalfOpen { probing: true } => false,
        }
    }

    /// Whether a request could go through at `now`, without taking the probe.
    pub fn would_allow(&self, now: f64) -> bool {
        match self.state {
            BreakerState::Closed { .. } | BreakerState::HalfOpen { probing: false } => true,
            BreakerState::Open { until } => now >= until,
            BreakerState::HalfOpen { probing: true } => false,
        }
    }

    /// A request through the node succeeded.
    pub fn success(&mut self) {
        self.state = BreakerState::Closed { failures: 0 };
    }

    /// A request through the node failed at `now`.
    pub fn failure(&mut self, now: f64) {
        self.state = match self.state {
            BreakerState::Closed { failures } if failures + 1 < self.threshold => {
                BreakerState::Closed { failures: failures + 1 }
            }
            _ => BreakerState::Open { until: now + self.open_for },
        };
    }
}

/// Why no route could be picked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoRoute {
    /// No ready model by that id.
    #[error("model {0:?} is not ready on this cluster")]
    UnknownModel(String),
    /// Every replica of some shard is down or excluded.
    #[error("no live replica of shard {shard} of model {model:?}")]
    NoReplica {
        /// Model id.
        model: String,
        /// Shard id.
        shard: usize,
    },
}

/// The `counter`-th round-robin route through `model`, avoiding `avoid` and nodes not up.
///
/// Each shard takes its replicas in turn; a tensor-parallel stage gets one replica of each
/// member. Within a stage, member 0 (tensor rank 0) leads.
pub fn round_robin(
    model: &ModelRoutes,
    counter: u64,
    usable: impl Fn(&str) -> bool,
) -> Result<Vec<StageRoute>, NoRoute> {
    let mut route = Vec::with_capacity(model.stages.len());
    for stage in &model.stages {
        let mut members = Vec::with_capacity(stage.len());
        for shard in stage {
            let live: Vec<&String> = shard.nodes.iter().filter(|n| usable(n)).collect();
            if live.is_empty() {
                return Err(NoRoute::NoReplica { model: model.id.clone(), shard: shard.shard });
            }
            members.push((shard.shard, live[(counter % live.len() as u64) as usize].clone()));
        }
        route.push(members);
    }
    Ok(route)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn c(in_flight: usize, latency: f64) -> Candidate {
        Candidate { in_flight, latency, weight: 1.0, cpu: 0.0 }
    }

    #[test]
    fn each_strategy_prefers_what_it_should() {
        let cs = [c(3, 0.010), c(0, 0.010), c(1, 0.001)];
        assert_eq!(
            (0..6).map(|k| choose(BalancingStrategy::RoundRobin, &cs, k, (0.0, 0.0))).collect::<Vec<_>>(),
            vec![0, 1, 2, 0, 1, 2]
        );
        assert_eq!(choose(BalancingStrategy::LeastConnections, &cs, 7, (0.0, 0.0)), 1);
        // p2c between 0 (cost 0.04) and 2 (cost 0.002): 2.
        assert_eq!(choose(BalancingStrategy::PowerOfTwoChoices, &cs, 0, (0.0, 0.9)), 2);
        let busy = [Candidate { cpu: 90.0, ..c(0, 0.0) }, Candidate { cpu: 10.0, ..c(5, 0.0) }];
        assert_eq!(choose(BalancingStrategy::ResourceBased, &busy, 0, (0.0, 0.0)), 1);
        let w = [Candidate { weight: 1.0, ..c(0, 0.0) }, Candidate { weight: 3.0, ..c(0, 0.0) }];
        let picks: Vec<usize> =
            (0..100).map(|i| choose(BalancingStrategy::Weighted, &w, 0, (i as f64 / 100.0, 0.0))).collect();
        assert_eq!(picks.iter().filter(|&&p| p == 1).count(), 75);
    }

    #[test]
    fn peak_ewma_jumps_up_and_decays_down() {
        let mut e = PeakEwma::new(1.0);
        e.observe(0.010, 0.0);
        e.observe(0.100, 0.1);
        assert_eq!(e.estimate, 0.100);
        e.observe(0.010, 5.1);
        assert!(e.estimate < 0.011, "{}", e.estimate);
    }

    #[test]
    fn breaker_opens_probes_and_closes() {
        let mut b = CircuitBreaker::new(3, 5.0);
        for t in 0..2 {
            b.failure(t as f64);
            assert!(b.allow(t as f64));
        }
        b.failure(2.0);
        assert!(!b.allow(3.0));
        assert!(b.allow(7.0), "half-open probe");
        assert!(!b.allow(7.1), "one probe at a time");
        b.failure(7.2);
        assert!(!b.allow(8.0));
        assert!(b.allow(12.3));
        b.success();
        assert!(b.allow(12.4) && b.allow(12.5));
    }

    proptest! {
        #[test]
        fn choices_are_in_range(n in 1usize..8, k in 0u64..100, r0 in 0.0f64..1.0, r1 in 0.0f64..1.0, loads in proptest::collection::vec(0usize..10, 8)) {
            let cs: Vec<Candidate> = (0..n).map(|i| c(loads[i], 0.001 * (loads[i] + 1) as f64)).collect();
            for s in [BalancingStrategy::RoundRobin, BalancingStrategy::LeastConnections, BalancingStrategy::Weighted, BalancingStrategy::ResourceBased, BalancingStrategy::PowerOfTwoChoices] {
                prop_assert!(choose(s, &cs, k, (r0, r1)) < n);
            }
        }

        #[test]
        fn a_joining_node_takes_keys_only_for_itself(keys in proptest::collection::vec("[a-z0-9]{1,12}", 1..200)) {
            let before = ["n1", "n2", "n3"];
            let after = ["n1", "n2", "n3", "n4"];
            for k in &keys {
                let a = after[rendezvous(k, &after)];
                let b = before[rendezvous(k, &before)];
                prop_assert!(a == b || a == "n4", "{k}: {b} -> {a}");
            }
        }
    }
}

#[cfg(test)]
mod round_robin_tests {
    use super::*;
    use crate::cluster::wire::ShardReplicas;
    use proptest::prelude::*;

    fn model(stages: &[&[&[&str]]]) -> ModelRoutes {
        let mut id = 0;
        ModelRoutes {
            id: "m".into(),
            config: crate::model::Checkpoint::open(
                &std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpt2_tiny"),
            )
            .unwrap()
            .config,
            stages: stages
                .iter()
                .map(|s| {
                    s.iter()
                        .map(|nodes| {
                            id += 1;
                            ShardReplicas { shard: id - 1, nodes: nodes.iter().map(|n| n.to_string()).collect() }
                        })
                        .collect()
                })
                .collect(),
        }
    }

    #[test]
    fn replicas_take_turns_and_avoided_nodes_are_skipped() {
        let m = model(&[&[&["a", "b"]], &[&["b", "c"], &["c", "a"]]]);
        let r1 = round_robin(&m, 0, |_| true).unwrap();
        let r2 = round_robin(&m, 1, |_| true).unwrap();
        assert_eq!(r1, vec![vec![(0, "a".into())], vec![(1, "b".into()), (2, "c".into())]]);
        assert_eq!(r2, vec![vec![(0, "b".into())], vec![(1, "c".into()), (2, "a".into())]]);
        let r = round_robin(&m, 0, |n| n != "a").unwrap();
        assert_eq!(r, vec![vec![(0, "b".into())], vec![(1, "b".into()), (2, "c".into())]]);
        assert_eq!(round_robin(&m, 0, |n| n == "a"), Err(NoRoute::NoReplica { model: "m".into(), shard: 1 }));
    }

    proptest! {
        #[test]
        fn a_route_uses_only_usable_replicas(counter in 0u64..1000, dead in 0usize..3) {
            let names = ["a", "b", "c"];
            let m = model(&[&[&["a", "b"]], &[&["b", "c"]], &[&["c", "a"]]]);
            let r = round_robin(&m, counter, |n| n != names[dead]).unwrap();
            for (stage, members) in r.iter().enumerate() {
                for (shard, node) in members {
                    prop_assert!(node != names[dead]);
                    prop_assert!(m.stages[stage].iter().any(|s| s.shard == *shard && s.nodes.contains(node)));
                }
            }
        }
    }
}
