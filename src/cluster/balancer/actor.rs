//! [`Balancer`], the actor: picks a route for each request, one replica of every shard,
//! skipping nodes that are down, that failed this request already, or whose circuit breaker
//! is open. The choices are the pure functions of [`super::policies`]; the actor holds the
//! counters, outstanding requests, latency estimates and breakers.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::cluster::wire::{ClusterView, MemberState, StageRoute};
use crate::config::BalancingConfig;
use actix::{Actor, Context, Handler, Message, MessageResult};

use super::policies::{Candidate, CircuitBreaker, NoRoute, PeakEwma, choose, rendezvous};

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
                && view
                    .nodes
                    .iter()
                    .any(|v| v.info.id == n && matches!(v.state, MemberState::Up | MemberState::Suspect))
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
