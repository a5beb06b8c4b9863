//! [`Balancer`]: picks a route for each request, one replica of every shard, skipping nodes
//! that are down, that failed this request already, or whose circuit breaker is open. The
//! choices are the pure functions of [`super::balancing`] (and [`round_robin`]); the actor
//! holds the counters, outstanding requests, latency estimates and breakers.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use actix::{Actor, Context, Handler, Message, MessageResult};
use serde::{Deserialize, Serialize};

use super::balancing::{BalancingStrategy, Candidate, CircuitBreaker, PeakEwma, choose, rendezvous};

use super::wire::{ClusterView, ModelRoutes, NodeState, StageRoute};

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

/// The view changed.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct SetView(pub Arc<ClusterView>);

/// Pick a route for one request to `model`, avoiding `avoid`.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<Vec<StageRoute>, NoRoute>")]
pub struct PickRoute {
    /// Model id.
    pub model: String,
    /// Nodes this request already failed on.
    pub avoid: Vec<String>,
    /// Session id: the same session goes to the same replicas while they live.
    pub session: Option<String>,
    /// The view the route is to be picked from (what a user's own strategy needs; the
    /// built-in balancer keeps its own from `SetView`).
    pub view: Arc<ClusterView>,
}

/// A request picked by [`PickRoute`] finished.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct RequestDone {
    /// The route it took.
    pub route: Vec<StageRoute>,
    /// How long it took.
    pub latency: Duration,
    /// The node that failed it, if it failed.
    pub failed: Option<String>,
}

/// What requests are kept together by affinity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AffinityKey {
    /// The request's `session_id` (requests without one are balanced freely).
    #[default]
    Session,
    /// The client's IP address.
    ClientIp,
    /// The model id (every request of a model on the same replicas while they live).
    Model,
}

/// How a balancer chooses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BalancingConfig {
    /// The strategy.
    pub strategy: BalancingStrategy,
    /// Route requests with the same affinity key to the same replicas (rendezvous hashing).
    pub session_affinity: bool,
    /// What the affinity key is: the request's `session_id`, the client's IP address, or
    /// the model id.
    pub affinity_key: AffinityKey,
    /// Consecutive failures that open a node's circuit breaker.
    pub breaker_threshold: u32,
    /// How long an open breaker keeps a node out, milliseconds.
    pub breaker_open_ms: u64,
}

impl Default for BalancingConfig {
    fn default() -> Self {
        BalancingConfig {
            strategy: BalancingStrategy::default(),
            session_affinity: true,
            affinity_key: AffinityKey::Session,
            breaker_threshold: 5,
            breaker_open_ms: 5000,
        }
    }
}

/// Routes requests of one thread of one node.
pub struct Balancer {
    cfg: BalancingConfig,
    view: Arc<ClusterView>,
    counters: HashMap<String, u64>,
    in_flight: HashMap<String, usize>,
    latency: HashMap<String, PeakEwma>,
    breakers: HashMap<String, CircuitBreaker>,
    cpu: Arc<RwLock<HashMap<String, f32>>>,
    epoch: Instant,
}

impl Balancer {
    /// A balancer choosing by `cfg`, reading members' CPU from `cpu`.
    pub fn new(cfg: BalancingConfig, cpu: Arc<RwLock<HashMap<String, f32>>>) -> Balancer {
        Balancer {
            cfg,
            view: Arc::default(),
            counters: HashMap::new(),
            in_flight: HashMap::new(),
            latency: HashMap::new(),
            breakers: HashMap::new(),
            cpu,
            epoch: Instant::now(),
        }
    }

    fn candidate(&self, node: &str, cpu: &HashMap<String, f32>) -> Candidate {
        Candidate {
            in_flight: self.in_flight.get(node).copied().unwrap_or(0),
            latency: self.latency.get(node).map(|e| e.estimate).unwrap_or(0.0),
            weight: self.view.nodes.iter().find(|n| n.info.id == node).map(|n| n.info.compute).unwrap_or(1.0),
            cpu: cpu.get(node).copied().unwrap_or(0.0) as f64,
        }
    }

    fn pick(&mut self, msg: &PickRoute) -> Result<Vec<StageRoute>, NoRoute> {
        let view = Arc::clone(&self.view);
        let model = view.model(&msg.model).ok_or_else(|| NoRoute::UnknownModel(msg.model.clone()))?;
        let counter = {
            let c = self.counters.entry(msg.model.clone()).or_default();
            *c += 1;
            *c
        };
        let now = self.epoch.elapsed().as_secs_f64();
        let up = |n: &str| {
            !msg.avoid.iter().any(|a| a == n)
                && view.nodes.iter().any(|v| v.info.id == n && matches!(v.state, NodeState::Up | NodeState::Suspect))
        };
        let cpu = self.cpu.read().unwrap_or_else(|e| e.into_inner()).clone();
        let mut route = Vec::with_capacity(model.stages.len());
        for stage in &model.stages {
            let mut members = Vec::with_capacity(stage.len());
            for shard in stage {
                let live: Vec<&String> = shard.nodes.iter().filter(|n| up(n)).collect();
                // Open breakers keep a node out unless nothing else is left.
                let closed: Vec<&String> = live
                    .iter()
                    .copied()
                    .filter(|n| self.breakers.get(n.as_str()).is_none_or(|b| b.would_allow(now)))
                    .collect();
                let pool = if closed.is_empty() { live } else { closed };
                if pool.is_empty() {
                    return Err(NoRoute::NoReplica { model: model.id.clone(), shard: shard.shard });
                }
                let i = match (&msg.session, self.cfg.session_affinity) {
                    (Some(s), true) => rendezvous(s, &pool),
                    _ => {
                        let cands: Vec<Candidate> = pool.iter().map(|n| self.candidate(n, &cpu)).collect();
                        choose(self.cfg.strategy, &cands, counter, (fastrand::f64(), fastrand::f64()))
                    }
                };
                members.push((shard.shard, pool[i].clone()));
            }
            route.push(members);
        }
        let (threshold, open_for) = (self.cfg.breaker_threshold, self.cfg.breaker_open_ms as f64 / 1000.0);
        for node in route_nodes(&route) {
            *self.in_flight.entry(node.clone()).or_default() += 1;
            self.breakers.entry(node).or_insert_with(|| CircuitBreaker::new(threshold, open_for)).allow(now);
        }
        Ok(route)
    }
}

fn route_nodes(route: &[StageRoute]) -> Vec<String> {
    let mut nodes: Vec<String> = route.iter().flatten().map(|(_, n)| n.clone()).collect();
    nodes.sort();
    nodes.dedup();
    nodes
}

impl Actor for Balancer {
    type Context = Context<Self>;
}

/// Restarted by its `Supervisor` if it stops; its view comes back with the next push.
impl actix::Supervised for Balancer {}

impl Handler<SetView> for Balancer {
    type Result = ();

    fn handle(&mut self, msg: SetView, _: &mut Context<Self>) {
        self.view = msg.0;
    }
}

impl Handler<PickRoute> for Balancer {
    type Result = MessageResult<PickRoute>;

    fn handle(&mut self, msg: PickRoute, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.pick(&msg))
    }
}

impl Handler<RequestDone> for Balancer {
    type Result = ();

    fn handle(&mut self, msg: RequestDone, _: &mut Context<Self>) {
        let now = self.epoch.elapsed().as_secs_f64();
        let (threshold, open_for) = (self.cfg.breaker_threshold, self.cfg.breaker_open_ms as f64 / 1000.0);
        for node in route_nodes(&msg.route) {
            if let Some(n) = self.in_flight.get_mut(&node) {
                *n = n.saturating_sub(1);
            }
            let breaker = self.breakers.entry(node.clone()).or_insert_with(|| CircuitBreaker::new(threshold, open_for));
            match &msg.failed {
                Some(f) if *f == node => breaker.failure(now),
                Some(_) => {}
                None => {
                    breaker.success();
                    self.latency
                        .entry(node)
                        .or_insert_with(|| PeakEwma::new(10.0))
                        .observe(msg.latency.as_secs_f64(), now);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
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
