//! Failure detection and heartbeats.
//!
//! [`PhiAccrual`] is the detector of Hayashibara et al. (2004) as Akka implements it: the
//! intervals between heartbeats are taken as normally distributed, and phi is
//! `-log10(P(a heartbeat is still to come after this long))`, computed with Akka's logistic
//! approximation of the normal CDF. An acceptable pause is added to the mean, and the
//! standard deviation has a floor, so that a steady sender is not declared dead by jitter.
//! Pure and clock-free: the caller passes times in.
//!
//! [`HealthMonitor`] (on the coordinator) feeds it and reports state changes;
//! [`HeartbeatSender`] (on every other node) sends heartbeats with sysinfo stats on a
//! connection of its own, from an arbiter of its own.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use actix::{Actor, AsyncContext, Context, Handler, Message, Recipient};

use crate::config::HealthConfig;

use super::state::Node;
use mlmf_actors::peer::PeerError;

use super::wire::{ClusterView, Heartbeat, NodeState, NodeStats};

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
pub fn state_of(phi: f64, cfg: &HealthConfig) -> NodeState {
    if phi >= cfg.phi_threshold {
        NodeState::Down
    } else if phi >= cfg.phi_suspect {
        NodeState::Suspect
    } else {
        NodeState::Up
    }
}

/// A heartbeat arrived from `node`.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct Beat {
    /// Sender.
    pub node: String,
}

/// Stop watching `node`.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct Forget {
    /// Node id.
    pub node: String,
}

/// A node's state changed.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct NodeStateChanged {
    /// Node id.
    pub node: String,
    /// New state.
    pub state: NodeState,
    /// Phi when it changed.
    pub phi: f64,
}

/// Phi of every watched node, and the longest interval between its heartbeats (seconds).
#[derive(Debug, Clone, Message)]
#[rtype(result = "HashMap<String, (f64, f64)>")]
pub struct Phis;

/// Watches heartbeats and reports state changes to a subscriber (the coordinator).
pub struct HealthMonitor {
    cfg: HealthConfig,
    epoch: Instant,
    watched: HashMap<String, (PhiAccrual, NodeState)>,
    subscriber: Recipient<NodeStateChanged>,
}

impl HealthMonitor {
    /// A monitor reporting to `subscriber`.
    pub fn new(cfg: HealthConfig, subscriber: Recipient<NodeStateChanged>) -> HealthMonitor {
        HealthMonitor { cfg, epoch: Instant::now(), watched: HashMap::new(), subscriber }
    }

    fn now(&self) -> f64 {
        self.epoch.elapsed().as_secs_f64()
    }

    fn check(&mut self) {
        let now = self.now();
        for (node, (det, state)) in self.watched.iter_mut() {
            let phi = det.phi(now);
            let next = state_of(phi, &self.cfg);
            // A node comes back only through a heartbeat, never by phi falling on its own.
            if next != *state && !(*state == NodeState::Down && next != NodeState::Down) {
                tracing::warn!(%node, phi, from = ?*state, to = ?next, "node state changed");
                *state = next;
                self.subscriber.do_send(NodeStateChanged { node: node.clone(), state: next, phi });
            }
        }
    }
}

impl Actor for HealthMonitor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let tick = Duration::from_millis((self.cfg.heartbeat_interval_ms / 10).clamp(10, 100));
        ctx.run_interval(tick, |me, _| me.check());
    }
}

impl Handler<Beat> for HealthMonitor {
    type Result = ();

    fn handle(&mut self, msg: Beat, _: &mut Context<Self>) {
        let now = self.now();
        let cfg = self.cfg.clone();
        // A node first heard of is up (the subscriber may hold it down: a coordinator taken
        // for dead, back and stepped down).
        let fresh = !self.watched.contains_key(&msg.node);
        let (det, state) =
            self.watched.entry(msg.node.clone()).or_insert_with(|| (PhiAccrual::new(&cfg), NodeState::Up));
        if fresh {
            self.subscriber.do_send(NodeStateChanged { node: msg.node.clone(), state: NodeState::Up, phi: 0.0 });
        }
        if *state == NodeState::Down {
            det.restart(now);
        } else {
            det.heartbeat(now);
        }
        if *state != NodeState::Up {
            tracing::info!(node = %msg.node, "node is up again");
            *state = NodeState::Up;
            self.subscriber.do_send(NodeStateChanged { node: msg.node, state: NodeState::Up, phi: 0.0 });
        }
    }
}

impl Handler<Forget> for HealthMonitor {
    type Result = ();

    fn handle(&mut self, msg: Forget, _: &mut Context<Self>) {
        self.watched.remove(&msg.node);
    }
}

impl Handler<Phis> for HealthMonitor {
    type Result = actix::MessageResult<Phis>;

    fn handle(&mut self, _: Phis, _: &mut Context<Self>) -> Self::Result {
        let now = self.now();
        actix::MessageResult(
            self.watched.iter().map(|(k, (d, _))| (k.clone(), (d.phi(now), d.longest_interval()))).collect(),
        )
    }
}

/// Samples this process and machine for heartbeats.
pub struct StatsSampler {
    sys: sysinfo::System,
    pid: Option<sysinfo::Pid>,
    last_buckets: Vec<u64>,
}

impl Default for StatsSampler {
    fn default() -> Self {
        StatsSampler { sys: sysinfo::System::new(), pid: sysinfo::get_current_pid().ok(), last_buckets: Vec::new() }
    }
}

/// The upper bound (ms) of the bucket holding the 99th percentile of the observations
/// between two cumulative bucket snapshots; 0 when there were none.
pub fn p99_between(before: &[u64], after: &[u64]) -> f64 {
    let n = super::metrics::BUCKETS.len();
    let d = |i: usize| after.get(i).copied().unwrap_or(0).saturating_sub(before.get(i).copied().unwrap_or(0));
    let total = d(n);
    if total == 0 {
        return 0.0;
    }
    let want = (total as f64 * 0.99).ceil() as u64;
    (0..n).find(|&i| d(i) >= want).map(|i| super::metrics::BUCKETS[i] * 1000.0).unwrap_or(f64::INFINITY)
}

impl StatsSampler {
    /// Current stats of `node`.
    pub fn sample(&mut self, node: &Node) -> NodeStats {
        self.sys.refresh_memory();
        self.sys.refresh_cpu_usage();
        let mut process_memory = 0;
        if let Some(pid) = self.pid {
            self.sys.refresh_processes(sysinfo::ProcessesToUpdate::Some(&[pid]), true);
            process_memory = self.sys.process(pid).map(|p| p.memory()).unwrap_or(0);
        }
        NodeStats {
            memory_total: self.sys.total_memory(),
            memory_used: self.sys.used_memory(),
            process_memory,
            cpu_percent: self.sys.global_cpu_usage(),
            shards: node.shards.len(),
            in_flight: node.in_flight.load(std::sync::atomic::Ordering::Relaxed),
            requests: node.requests.load(std::sync::atomic::Ordering::Relaxed),
            errors: node.metrics.errors.load(std::sync::atomic::Ordering::Relaxed),
            shard_stats: node.shards.entries().iter().map(|((m, s), l)| l.stats(m, *s)).collect(),
            p99_ms: {
                let now = node.metrics.latency_buckets();
                let p = p99_between(&self.last_buckets, &now);
                self.last_buckets = now;
                p
            },
        }
    }
}

/// Sends heartbeats to the coordinator and adopts the newer views it answers with; joins
/// again when the coordinator no longer knows this node.
///
/// It also watches the coordinator: when no heartbeat has been answered for the acceptable
/// pause plus two intervals, and at least three in a row met silence (no connection, no
/// answer; a refusal is an answer), the coordinator is taken for dead. Counting attempts,
/// not only time, keeps a node that was itself frozen from blaming the coordinator for the
/// time it was away. Every node then picks the same successor,
/// the live member of its last view with the smallest id, and sends its heartbeats there;
/// the successor takes over with that view's members and model registry. A successor that
/// is silent in turn is passed over the same way.
pub struct HeartbeatSender {
    node: Node,
    seq: u64,
    sampler: StatsSampler,
    busy: bool,
    /// The last answered heartbeat (or the last change of coordinator).
    last_ok: Instant,
    /// Heartbeats in a row that met silence.
    silent: u32,
    /// Coordinators taken for dead in the current term (a newer term's view says who is
    /// down, so the list starts again with it).
    dead: Vec<String>,
    term: u64,
}

/// What one heartbeat found out about the coordinator.
enum Answer {
    Answered,
    Refused,
    Silent,
}

/// The coordinator `view` names, or when that one is in `dead`, its successor: the live
/// member with the smallest id not in `dead`.
pub fn coordinator_of(view: &ClusterView, dead: &[String]) -> Option<String> {
    if !dead.contains(&view.coordinator) {
        return Some(view.coordinator.clone());
    }
    view.nodes
        .iter()
        .filter(|n| matches!(n.state, NodeState::Up | NodeState::Suspect) && !dead.contains(&n.info.id))
        .map(|n| n.info.id.clone())
        .min()
}

impl HeartbeatSender {
    /// A sender from `node` to the coordinator its view names.
    pub fn new(node: Node) -> HeartbeatSender {
        HeartbeatSender {
            node,
            seq: 0,
            sampler: StatsSampler::default(),
            busy: false,
            last_ok: Instant::now(),
            silent: 0,
            dead: Vec::new(),
            term: 0,
        }
    }

    fn beat(&mut self, ctx: &mut Context<Self>) {
        // A node that took over coordinates itself.
        if self.busy || self.node.is_coordinator() {
            return;
        }
        let view = self.node.view();
        if view.term != self.term {
            self.term = view.term;
            self.dead.clear();
        }
        let Some(target) = coordinator_of(&view, &self.dead) else { return };
        let Some(addr) = view.addr_of(&target).map(str::to_string) else { return };
        self.seq += 1;
        let hb = Heartbeat {
            node: self.node.id.clone(),
            seq: self.seq,
            view_version: view.version,
            stats: self.sampler.sample(&self.node),
        };
        let node = self.node.clone();
        let interval = Duration::from_millis(node.cfg.health.heartbeat_interval_ms);
        self.busy = true;
        let fut = async move {
            match node.ask_heartbeat(&addr, &hb, interval * 2).await {
                Ok(Ok(ack)) => {
                    node.member_cpu.write().unwrap_or_else(|e| e.into_inner()).extend(ack.cpu);
                    if let Some(view) = ack.view {
                        node.set_view(view);
                    }
                    Answer::Answered
                }
                Ok(Err(e)) if e.status == 404 && !node.leaving.load(std::sync::atomic::Ordering::Acquire) => {
                    tracing::warn!("the coordinator does not know this node; joining again");
                    if let Err(e) = super::node::join(&node, &addr).await {
                        tracing::warn!(error = %e, "join failed");
                    }
                    Answer::Answered
                }
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "heartbeat refused");
                    Answer::Refused
                }
                // Alive, but not (yet) the coordinator: a successor still taking over.
                Err(PeerError::Remote(e)) => {
                    tracing::debug!(error = %e, "heartbeat refused");
                    Answer::Refused
                }
                Err(e) => {
                    tracing::debug!(error = %e, "heartbeat failed");
                    Answer::Silent
                }
            }
        };
        ctx.spawn(actix::fut::wrap_future::<_, Self>(fut).map(move |answer, me, _| {
            me.busy = false;
            match answer {
                Answer::Answered => {
                    me.last_ok = Instant::now();
                    me.silent = 0;
                }
                Answer::Refused => me.silent = 0,
                Answer::Silent => {
                    me.silent += 1;
                    let h = &me.node.cfg.health;
                    let limit = Duration::from_millis(h.acceptable_pause_ms + 2 * h.heartbeat_interval_ms);
                    if me.silent >= 3 && me.last_ok.elapsed() > limit && me.node.view().coordinator == view.coordinator
                    {
                        tracing::warn!(coordinator = %target, silent = ?me.last_ok.elapsed(), "the coordinator is gone");
                        me.dead.push(target.clone());
                        me.last_ok = Instant::now();
                        me.silent = 0;
                        let next = coordinator_of(&view, &me.dead);
                        if next.as_deref() == Some(me.node.id.as_str()) {
                            super::coordinator::take_over(&me.node, &view, me.dead.clone());
                        } else {
                            tracing::warn!(successor = ?next, "following the successor");
                        }
                    }
                }
            }
        }));
    }
}

use actix::ActorFutureExt;

/// Restarted by its `Supervisor` if it stops.
impl actix::Supervised for HeartbeatSender {}

/// Restarted by its `Supervisor` if it stops; detectors start again from the next heartbeat.
impl actix::Supervised for HealthMonitor {}

impl Actor for HeartbeatSender {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let interval = Duration::from_millis(self.node.cfg.health.heartbeat_interval_ms);
        ctx.run_interval(interval, |me, ctx| me.beat(ctx));
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
        assert_eq!(state_of(d.phi(last + 2.0), &cfg), NodeState::Up);
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
        assert_eq!(state_of(d.phi(last + 1.5), &cfg), NodeState::Up);
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
    fn every_node_picks_the_same_successor() {
        use super::super::wire::{NodeInfo, NodeView};
        use crate::plan::DeviceKind;
        let node = |id: &str, state| NodeView {
            info: NodeInfo { id: id.into(), addr: id.into(), memory_bytes: 1, device: DeviceKind::Cpu, compute: 1.0 },
            state,
        };
        let view = ClusterView {
            coordinator: "c".into(),
            nodes: vec![
                node("c", NodeState::Up),
                node("b", NodeState::Down),
                node("e", NodeState::Up),
                node("d", NodeState::Suspect),
            ],
            ..ClusterView::default()
        };
        assert_eq!(coordinator_of(&view, &[]).as_deref(), Some("c"));
        // The smallest live id not taken for dead: b is down.
        assert_eq!(coordinator_of(&view, &["c".into()]).as_deref(), Some("d"));
        assert_eq!(coordinator_of(&view, &["c".into(), "d".into()]).as_deref(), Some("e"));
        assert_eq!(coordinator_of(&view, &["c".into(), "d".into(), "e".into()]), None);
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
