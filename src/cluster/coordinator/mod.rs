//! [`Coordinator`]: one per cluster, on the node started without `--join`. It owns the
//! membership, the model registry and the shard map: it admits nodes, plans and places
//! models, sends `LoadShard` to the nodes a placement names, tracks their progress, and
//! publishes the [`ClusterView`] every node routes by.
//!
//! - `members`: joins, heartbeats, state changes, leaves, cluster status;
//! - `models`: the model registry, loading and unloading;
//! - `shards`: re-placement, migration, rebalancing, memory left per node.

mod members;
mod models;
mod shards;

pub use members::{ClusterStatusMsg, HeartbeatMsg, JoinMsg, LeaveMsg, RemoveNode};
pub use models::{ListModelsMsg, LoadModelMsg, ModelStatusMsg, ProgressMsg, UnloadModelMsg};
pub use shards::MigrateMsg;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{Actor, ActorContext, ActorFutureExt, Addr, AsyncContext, Context, WrapFuture};

use crate::model::{Checkpoint, ModelConfig};

use super::alerts::{AlertManager, Fire, Notice, Resolve, Severity};
use super::health::HealthMonitor;
use super::state::Node;
use super::wire::{
    ClusterView, Migrate, ModelRoutes, ModelState, ModelStatus, NodeInfo, NodeState, NodeStats, NodeView,
    RegistryEntry, ShardReplicas,
};

struct Member {
    info: NodeInfo,
    state: NodeState,
    stats: NodeStats,
    /// When it last went down, while it is down.
    down_since: Option<Instant>,
    /// When it went down, within the flapping window.
    downs: std::collections::VecDeque<Instant>,
}

impl Member {
    fn new(info: NodeInfo) -> Member {
        Member { info, state: NodeState::Up, stats: NodeStats::default(), down_since: None, downs: Default::default() }
    }
}

struct Record {
    status: ModelStatus,
    config: ModelConfig,
    /// SHA-256 over config.json and the weight files, once computed.
    sha256: Option<String>,
}

/// SHA-256 over `config.json` and every safetensors file of the checkpoint at `dir`, in
/// name order (what the audit log records as the checkpoint's identity).
fn checkpoint_sha256(dir: &std::path::Path) -> Option<String> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let ckpt = Checkpoint::open(dir).ok()?;
    let mut files: Vec<std::path::PathBuf> = ckpt.files.iter().map(|f| f.path.clone()).collect();
    files.sort();
    files.insert(0, dir.join("config.json"));
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    for f in files {
        let mut file = std::fs::File::open(f).ok()?;
        loop {
            let n = file.read(&mut buf).ok()?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
    }
    Some(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// The cluster's coordinator.
pub struct Coordinator {
    node: Node,
    members: BTreeMap<String, Member>,
    models: BTreeMap<String, Record>,
    version: u64,
    health: Option<Addr<HealthMonitor>>,
    migrations: Vec<Migrate>,
    alerts: Option<Addr<AlertManager>>,
    /// A node joined: rebalancing rounds run until nothing is left to move.
    rebalance_pending: bool,
    /// A view push is scheduled.
    push_scheduled: bool,
    /// The dead coordinators this one took over from (empty for the first coordinator).
    took_over_from: Vec<String>,
    /// Its term: 0 for the first coordinator, one more for each takeover.
    term: u64,
}

/// Stop coordinating: a coordinator of a newer term has taken over.
#[derive(Debug, Clone, Copy, actix::Message)]
#[rtype(result = "()")]
pub struct StepDown;

impl actix::Handler<StepDown> for Coordinator {
    type Result = ();

    fn handle(&mut self, _: StepDown, ctx: &mut Context<Self>) {
        self.audit("step_down", None, Some(&self.node.id), "a newer coordinator took over");
        ctx.stop();
    }
}

impl Coordinator {
    /// A coordinator on `node`, which is its first member.
    pub fn new(node: Node, me: NodeInfo) -> Coordinator {
        let mut members = BTreeMap::new();
        members.insert(me.id.clone(), Member::new(me));
        Coordinator::with(node, members, BTreeMap::new(), 0, 0, Vec::new())
    }

    fn with(
        node: Node,
        members: BTreeMap<String, Member>,
        models: BTreeMap<String, Record>,
        version: u64,
        term: u64,
        took_over_from: Vec<String>,
    ) -> Coordinator {
        Coordinator {
            node,
            members,
            models,
            version,
            health: None,
            migrations: Vec::new(),
            alerts: None,
            rebalance_pending: false,
            push_scheduled: false,
            took_over_from,
            term,
        }
    }

    /// A coordinator on `node` taking over from the dead ones in `dead`, with the members
    /// and the model registry of `view` (the last view the dead coordinator published).
    /// The dead are Down from the start, so their replicas are placed again after the usual
    /// grace. A load the dead coordinator was still running is marked failed (its progress
    /// died with it), and replicas still loading are dropped from the registry.
    pub fn from_view(node: Node, view: &ClusterView, dead: Vec<String>) -> Coordinator {
        let now = Instant::now();
        let mut members = BTreeMap::new();
        for v in &view.nodes {
            let mut m = Member::new(v.info.clone());
            if dead.contains(&v.info.id) {
                m.state = NodeState::Down;
                m.down_since = Some(now);
                m.downs.push_back(now);
            } else if v.state == NodeState::Leaving {
                m.state = NodeState::Leaving;
            }
            members.insert(v.info.id.clone(), m);
        }
        let mut models = BTreeMap::new();
        for e in &view.registry {
            let mut status = e.status.clone();
            if status.status == ModelState::Loading {
                status.status =
                    ModelState::Failed { reason: "the coordinator died while it was loading; load it again".into() };
            }
            status.progress.retain(|p| p.done);
            models.insert(status.id.clone(), Record { status, config: e.config.clone(), sha256: e.sha256.clone() });
        }
        Coordinator::with(node, members, models, view.version + 1, view.term + 1, dead)
    }

    fn view(&self) -> ClusterView {
        let nodes: Vec<NodeView> =
            self.members.values().map(|m| NodeView { info: m.info.clone(), state: m.state }).collect();
        let models = self
            .models
            .values()
            .filter(|r| r.status.status == ModelState::Ready)
            .map(|r| {
                let s = &r.status;
                let stages = (0..s.plan.num_stages)
                    .map(|stage| {
                        s.plan
                            .stage(stage)
                            .map(|shard| ShardReplicas {
                                shard: shard.id,
                                nodes: s
                                    .progress
                                    .iter()
                                    .filter(|p| p.shard == shard.id && p.done)
                                    .filter(|p| self.members.get(&p.node).is_some_and(|m| m.state != NodeState::Down))
                                    .map(|p| p.node.clone())
                                    .collect(),
                            })
                            .collect()
                    })
                    .collect();
                ModelRoutes { id: s.id.clone(), config: r.config.clone(), stages }
            })
            .collect();
        let registry = self
            .models
            .values()
            .map(|r| RegistryEntry { status: r.status.clone(), config: r.config.clone(), sha256: r.sha256.clone() })
            .collect();
        ClusterView {
            term: self.term,
            version: self.version,
            coordinator: self.node.id.clone(),
            nodes,
            models,
            registry,
        }
    }

    /// Bumps the version and sends the view to every member.
    fn publish(&mut self, ctx: &mut Context<Self>) {
        self.version += 1;
        self.node.set_view(self.view());
        self.push_view(ctx);
    }

    /// As [`Self::publish`], with the pushes coalesced: a burst of joins (a thousand nodes
    /// starting) sends each member one view, not one per join. A member that misses one
    /// gets it with its next heartbeat ack.
    fn publish_soon(&mut self, ctx: &mut Context<Self>) {
        self.version += 1;
        self.node.set_view(self.view());
        if !self.push_scheduled {
            self.push_scheduled = true;
            ctx.run_later(Duration::from_millis(20), |me, ctx| {
                me.push_scheduled = false;
                me.push_view(ctx);
            });
        }
    }

    /// Sends the view to every member, down ones included: a member this coordinator holds
    /// down may be alive and following a newer coordinator, and its answer (the newer view)
    /// is how a coordinator that was away learns it has been replaced.
    fn push_view(&mut self, ctx: &mut Context<Self>) {
        let view = Arc::new(self.view());
        for m in self.members.values().filter(|m| m.info.id != self.node.id) {
            let (node, addr, view) = (self.node.clone(), m.info.addr.clone(), Arc::clone(&view));
            ctx.spawn(
                async move {
                    match node.ask(&addr, view.as_ref(), Duration::from_secs(3)).await {
                        Ok(newer) => newer,
                        Err(e) => {
                            tracing::debug!(%addr, error = %e, "view push failed; the next heartbeat carries it");
                            None
                        }
                    }
                }
                .into_actor(self)
                .map(|newer, me, _| {
                    if let Some(v) = newer.filter(|v| v.term > me.term) {
                        // Superseded: adopting the newer view steps this node down.
                        me.node.set_view(v);
                    }
                }),
            );
        }
    }

    fn fire(&self, rule: &str, key: &str, severity: Severity, summary: String) {
        if let Some(a) = &self.alerts {
            a.do_send(Fire { rule: rule.into(), key: key.into(), severity, summary });
        }
    }

    fn notice(&self, rule: &str, key: &str, summary: String) {
        if let Some(a) = &self.alerts {
            a.do_send(Notice(Fire { rule: rule.into(), key: key.into(), severity: Severity::Info, summary }));
        }
    }

    fn resolve(&self, rule: &str, key: &str) {
        if let Some(a) = &self.alerts {
            a.do_send(Resolve { rule: rule.into(), key: key.into() });
        }
    }

    /// Appends one record to the audit log, when one is configured.
    fn audit(&self, op: &str, model: Option<&str>, node: Option<&str>, outcome: &str) {
        let Some(path) = &self.node.cfg.audit_log else { return };
        let sha = model.and_then(|m| self.models.get(m)).and_then(|r| r.sha256.clone());
        let time_ms =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
        let line = serde_json::json!({
            "time_ms": time_ms as u64,
            "actor": self.node.id,
            "op": op,
            "model": model,
            "node": node,
            "checkpoint_sha256": sha,
            "outcome": outcome,
        });
        use std::io::Write;
        let written =
            std::fs::OpenOptions::new().create(true).append(true).open(path).and_then(|mut f| writeln!(f, "{line}"));
        if let Err(e) = written {
            tracing::error!(path = %path.display(), error = %e, "cannot write the audit log");
        }
    }
}

/// Starts a coordinator on `node` in place of the dead ones in `dead`, from the last `view`
/// they published (see [`Coordinator::from_view`]).
pub fn take_over(node: &Node, view: &ClusterView, dead: Vec<String>) {
    let mut held = node.coordinator.write().unwrap_or_else(|e| e.into_inner());
    if held.is_some() {
        tracing::warn!("this node coordinates already");
        return;
    }
    let (n, view) = (node.clone(), view.clone());
    let arbiter = actix::Arbiter::new();
    *held = Some(Coordinator::start_in_arbiter(&arbiter.handle(), move |_| Coordinator::from_view(n, &view, dead)));
}

impl Actor for Coordinator {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // The coordinator's own stats, sampled as other members' heartbeats are (a sampler
        // kept across samples, so CPU use is measured over the interval).
        let mut sampler = super::health::StatsSampler::default();
        let every = Duration::from_millis(self.node.cfg.health.heartbeat_interval_ms);
        ctx.run_interval(every, move |me, _| {
            let id = me.node.id.clone();
            let stats = sampler.sample(&me.node);
            me.node.member_cpu.write().unwrap_or_else(|e| e.into_inner()).insert(id.clone(), stats.cpu_percent);
            if let Some(m) = me.members.get_mut(&id) {
                let previous = std::mem::replace(&mut m.stats, stats);
                me.check_stats(&id, &previous);
            }
        });
        if self.node.cfg.rebalance_moves > 0 {
            let every = Duration::from_millis(self.node.cfg.rebalance_interval_ms.max(100));
            ctx.run_interval(every, |me, ctx| me.rebalance_round(ctx));
        }
        let (cfg, me) = (self.node.cfg.health.clone(), ctx.address().recipient());
        self.health = Some(actix::Supervisor::start(move |_| HealthMonitor::new(cfg.clone(), me.clone())));
        let (cfg, id) = (self.node.cfg.alerts.clone(), self.node.id.clone());
        self.alerts = Some(actix::Supervisor::start(move |_| AlertManager::new(cfg.clone(), id.clone())));
        if !self.took_over_from.is_empty() {
            // Taking over: watch every live member from now (one that never heartbeats again
            // goes down like any other), and treat the dead coordinators as down nodes.
            if let Some(h) = &self.health {
                for m in self.members.values().filter(|m| m.state == NodeState::Up && m.info.id != self.node.id) {
                    h.do_send(super::health::Beat { node: m.info.id.clone() });
                }
            }
            let after = Duration::from_millis(self.node.cfg.health.replace_after_ms);
            for dead in self.took_over_from.clone() {
                tracing::warn!(%dead, "taking over as coordinator");
                self.audit("takeover", None, Some(&dead), &format!("{} coordinates in its place", self.node.id));
                self.fire("node_down", &dead, Severity::Critical, format!("the coordinator {dead} is down"));
                ctx.run_later(after, move |me, ctx| me.replace_replicas_of(&dead, ctx));
            }
        }
        self.publish(ctx);
    }
}
