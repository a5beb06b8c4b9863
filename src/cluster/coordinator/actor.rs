//! [`Coordinator`]: its state (members, the model registry, migrations in flight, its term),
//! the [`ClusterView`] it proposes to the Raft group on every change (committed by a
//! majority of voters, then applied by every member), and its alert and audit helpers.
//! What it does with each message is in the sibling files.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use actix::{Actor, ActorContext, Addr, AsyncContext, Context, WrapFuture};

use crate::cluster::alerts::{AlertManager, Fire, Notice, Resolve, Severity};
use crate::cluster::health::{Beat, HealthMonitor, StatsSampler};
use crate::cluster::node::Node;
use crate::model::ModelConfig;

use crate::cluster::wire::{
    ClusterView, MemberState, Migrate, ModelRoutes, ModelState, ModelStatus, NodeInfo, NodeStats, NodeView,
    RegistryEntry, ShardReplicas,
};

pub(super) struct Member {
    pub(super) info: NodeInfo,
    pub(super) state: MemberState,
    pub(super) stats: NodeStats,
    /// When it last went down, while it is down.
    pub(super) down_since: Option<Instant>,
    /// When it went down, within the flapping window.
    pub(super) downs: std::collections::VecDeque<Instant>,
}

impl Member {
    pub(super) fn new(info: NodeInfo) -> Member {
        Member {
            info,
            state: MemberState::Up,
            stats: NodeStats::default(),
            down_since: None,
            downs: Default::default(),
        }
    }
}

/// `(directory, part)` → SHA-256, where a part is `config.json`, the index, `header:<file>`
/// or `tensor:<name>` (filled by [`super::digests`]).
pub type DigestCache =
    std::sync::Arc<std::sync::Mutex<std::collections::HashMap<(std::path::PathBuf, String), [u8; 32]>>>;

pub(super) struct Record {
    pub(super) status: ModelStatus,
    pub(super) config: ModelConfig,
    /// SHA-256 over config.json and the weight files, once computed.
    pub(super) sha256: Option<String>,
}

/// The cluster's coordinator.
pub struct Coordinator {
    pub(super) node: Node,
    pub(super) members: BTreeMap<String, Member>,
    pub(super) models: BTreeMap<String, Record>,
    pub(super) version: u64,
    pub(super) health: Option<Addr<HealthMonitor>>,
    pub(super) migrations: Vec<Migrate>,
    pub(super) alerts: Option<Addr<AlertManager>>,
    /// A node joined: rebalancing rounds run until nothing is left to move.
    pub(super) rebalance_pending: bool,
    /// A proposal of the view is scheduled.
    pub(super) propose_scheduled: bool,
    /// The coordinator the committed view named when this one started, if another node.
    pub(super) previous: Option<String>,
    /// Its term: the Raft term this node leads.
    pub(super) term: u64,
    /// The last audited operations and alerts, newest last (`GET /v1/events`).
    pub(super) recent: std::cell::RefCell<std::collections::VecDeque<crate::cluster::wire::ClusterEvent>>,
    /// The alerts it has fired and not resolved, `(rule, key)`: only those make a `resolved`
    /// event (the health checks resolve every rule that does not hold, every time).
    pub(super) firing: std::cell::RefCell<std::collections::BTreeSet<(String, String)>>,
    /// The SHA-256 of checkpoint parts, by (canonical model directory, part), from this
    /// coordinator's first read of each ([`super::digests`]).
    pub(super) digests: DigestCache,
    /// Each autoscaled shard's scaler, by (model, shard).
    pub(super) scalers: std::collections::HashMap<(String, usize), crate::plan::Scaler>,
    /// Replicas autoscaling is loading, as `(model, shard, node)` (their completion is an
    /// `autoscale` event, not a `replace`).
    pub(super) scaling_up: std::collections::HashSet<(String, usize, String)>,
    /// The clock of the scalers.
    pub(super) epoch: Instant,
    /// Declared models whose load was refused (said once, tried again).
    pub(super) declared_refused: std::collections::BTreeSet<String>,
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
    /// The coordinator of a node that leads Raft term `term`, from `view` (the last
    /// committed view: its members and model registry; empty for a new cluster). `me` is
    /// this node as a member (added when the view lacks it). Every live member is watched
    /// from now, so one that never heartbeats again (the previous coordinator, if it died)
    /// goes down as any other. A load the previous coordinator was still running is marked
    /// failed (its progress died with it), and replicas still loading leave the registry.
    pub fn from_view(node: Node, me: NodeInfo, view: &ClusterView, term: u64) -> Coordinator {
        let mut members = BTreeMap::new();
        for v in &view.nodes {
            let mut m = Member::new(v.info.clone());
            m.state = v.state;
            if v.state == MemberState::Down {
                m.down_since = Some(Instant::now());
            }
            members.insert(v.info.id.clone(), m);
        }
        let mine = members.entry(me.id.clone()).or_insert_with(|| Member::new(me.clone()));
        mine.info = me;
        mine.state = MemberState::Up;
        let mut models = BTreeMap::new();
        for e in &view.registry {
            let mut status = e.status.clone();
            if status.status == ModelState::Loading {
                status.status =
                    ModelState::Failed { reason: "the coordinator changed while it was loading; load it again".into() };
            }
            status.progress.retain(|p| p.done);
            models.insert(status.id.clone(), Record { status, config: e.config.clone(), sha256: e.sha256.clone() });
        }
        let previous = Some(view.coordinator.clone()).filter(|c| !c.is_empty() && *c != node.id);
        let version = view.version.max(node.consensus.proposed()) + 1;
        Coordinator {
            node,
            members,
            models,
            version,
            health: None,
            migrations: Vec::new(),
            alerts: None,
            rebalance_pending: false,
            propose_scheduled: false,
            previous,
            term,
            recent: Default::default(),
            firing: Default::default(),
            digests: Default::default(),
            scalers: Default::default(),
            scaling_up: Default::default(),
            epoch: Instant::now(),
            declared_refused: Default::default(),
        }
    }

    pub(super) fn view(&self) -> ClusterView {
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
                                    .filter(|p| self.members.get(&p.node).is_some_and(|m| m.state != MemberState::Down))
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

    /// Bumps the version and proposes the view to the Raft group: once a majority of voters
    /// has it, every member applies it and routes by it (this node included).
    pub(super) fn publish(&mut self, ctx: &mut Context<Self>) {
        self.version += 1;
        self.propose(ctx);
    }

    /// As [`Self::publish`], with the proposals coalesced: a burst of joins (a thousand nodes
    /// starting) makes one log entry, not one per join.
    pub(super) fn publish_soon(&mut self, ctx: &mut Context<Self>) {
        self.version += 1;
        if !self.propose_scheduled {
            self.propose_scheduled = true;
            ctx.run_later(Duration::from_millis(20), |me, ctx| {
                me.propose_scheduled = false;
                me.propose(ctx);
            });
        }
    }

    /// Proposes the current view. One that is not committed (no quorum) is not retried:
    /// this coordinator steps down when its node loses the quorum, and the next one starts
    /// from what was committed.
    fn propose(&mut self, ctx: &mut Context<Self>) {
        let (node, view) = (self.node.clone(), self.view());
        let version = view.version;
        ctx.spawn(
            async move {
                if let Err(e) = node.consensus.propose(view).await {
                    tracing::warn!(version, error = %e, "view not committed");
                }
            }
            .into_actor(self),
        );
    }

    pub(super) fn fire(&self, rule: &str, key: &str, severity: Severity, summary: String) {
        if self.firing.borrow_mut().insert((rule.to_string(), key.to_string())) {
            self.record("alert", rule, None, Some(key), &summary);
        }
        if let Some(a) = &self.alerts {
            a.do_send(Fire { rule: rule.into(), key: key.into(), severity, summary });
        }
    }

    pub(super) fn notice(&self, rule: &str, key: &str, summary: String) {
        self.record("notice", rule, None, Some(key), &summary);
        if let Some(a) = &self.alerts {
            a.do_send(Notice(Fire { rule: rule.into(), key: key.into(), severity: Severity::Info, summary }));
        }
    }

    pub(super) fn resolve(&self, rule: &str, key: &str) {
        if self.firing.borrow_mut().remove(&(rule.to_string(), key.to_string())) {
            self.record("resolved", rule, None, Some(key), "");
        }
        if let Some(a) = &self.alerts {
            a.do_send(Resolve { rule: rule.into(), key: key.into() });
        }
    }
}

impl Actor for Coordinator {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // The coordinator's own stats, sampled as other members' heartbeats are (a sampler
        // kept across samples, so CPU use is measured over the interval).
        let mut sampler = StatsSampler::default();
        let every = Duration::from_millis(self.node.cfg.health.heartbeat_interval_ms);
        ctx.run_interval(every, move |me, _| {
            let id = me.node.id.clone();
            let stats = sampler.sample(&me.node);
            me.node
                .balancers
                .member_cpu
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id.clone(), stats.cpu_percent);
            if let Some(m) = me.members.get_mut(&id) {
                let previous = std::mem::replace(&mut m.stats, stats);
                me.check_stats(&id, &previous);
            }
        });
        self.start_autoscaling(ctx);
        if self.node.cfg.rebalance_moves > 0 {
            let every = Duration::from_millis(self.node.cfg.rebalance_interval_ms.max(100));
            ctx.run_interval(every, |me, ctx| me.rebalance_round(ctx));
        }
        let (cfg, me) = (self.node.cfg.health.clone(), ctx.address().recipient());
        self.health = Some(actix::Supervisor::start(move |_| HealthMonitor::new(cfg.clone(), me.clone())));
        let (cfg, id) = (self.node.cfg.alerts.clone(), self.node.id.clone());
        self.alerts = Some(actix::Supervisor::start(move |_| AlertManager::new(cfg.clone(), id.clone())));
        // Watch every live member from now: one that never heartbeats again goes down like
        // any other (the previous coordinator too, if it died).
        if let Some(h) = &self.health {
            let live = |m: &&Member| m.state != MemberState::Down && m.info.id != self.node.id;
            for m in self.members.values().filter(live) {
                h.do_send(Beat { node: m.info.id.clone() });
            }
        }
        if let Some(previous) = self.previous.clone() {
            tracing::warn!(%previous, term = self.term, "coordinating in a new term");
            self.audit(
                "takeover",
                None,
                Some(&previous),
                &format!("{} coordinates in term {}", self.node.id, self.term),
            );
        }
        // Members down in the committed view have their replicas placed again after the grace.
        let after = Duration::from_millis(self.node.cfg.health.replace_after_ms);
        let down: Vec<String> =
            self.members.values().filter(|m| m.state == MemberState::Down).map(|m| m.info.id.clone()).collect();
        for id in down {
            ctx.run_later(after, move |me, ctx| me.replace_replicas_of(&id, ctx));
        }
        self.publish(ctx);
        if !self.node.cfg.models.is_empty() {
            ctx.run_later(Duration::from_millis(200), |me, ctx| me.load_declared(ctx));
            ctx.run_interval(Duration::from_secs(2), |me, ctx| me.load_declared(ctx));
        }
    }
}
