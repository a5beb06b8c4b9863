//! [`Coordinator`]: one per cluster, on the node started without `--join`. It owns the
//! membership, the model registry and the shard map: it admits nodes, plans and places
//! models, sends `LoadShard` to the nodes a placement names, tracks their progress, and
//! publishes the [`ClusterView`] every node routes by.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{
    Actor, ActorFutureExt, Addr, AsyncContext, Context, Handler, Message, MessageResult, ResponseFuture, WrapFuture,
};

use crate::model::{Checkpoint, ModelConfig, ModelLayout};
use crate::plan::{NodeInventory, ShardPlan, ShardingStrategy, place};

use super::alerts::{AlertManager, Fire, Notice, Resolve, Severity};
use super::health::{Beat, Forget, HealthMonitor, NodeStateChanged, Phis};
use super::state::Node;
use super::wire::{
    ClusterStatus, ClusterView, ControlError, Heartbeat, HeartbeatAck, Join, Leave, LoadModel, LoadShard, Migrate,
    ModelRoutes, ModelState, ModelStatus, NodeInfo, NodeState, NodeStats, NodeStatus, NodeView, Progress, ShardLoaded,
    ShardProgress, ShardReplicas, UnloadShard,
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
}

impl Coordinator {
    /// A coordinator on `node`, which is its first member.
    pub fn new(node: Node, me: NodeInfo) -> Coordinator {
        let mut members = BTreeMap::new();
        members.insert(me.id.clone(), Member::new(me));
        Coordinator {
            node,
            members,
            models: BTreeMap::new(),
            version: 0,
            health: None,
            migrations: Vec::new(),
            alerts: None,
            rebalance_pending: false,
            push_scheduled: false,
        }
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
        ClusterView { version: self.version, coordinator: self.node.id.clone(), nodes, models }
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

    fn push_view(&mut self, ctx: &mut Context<Self>) {
        let view = Arc::new(self.view());
        for m in self.members.values().filter(|m| m.info.id != self.node.id && m.state != NodeState::Down) {
            let (node, addr, view) = (self.node.clone(), m.info.addr.clone(), Arc::clone(&view));
            ctx.spawn(
                async move {
                    if let Err(e) = node.ask(&addr, view.as_ref(), Duration::from_secs(3)).await {
                        tracing::debug!(%addr, error = %e, "view push failed; the next heartbeat carries it");
                    }
                }
                .into_actor(self),
            );
        }
    }

    fn load(&mut self, req: LoadModel, ctx: &mut Context<Self>) -> Result<ModelStatus, ControlError> {
        let id_ok = !req.id.is_empty()
            && req.id.len() <= 64
            && req.id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !id_ok {
            return Err(ControlError::bad_request(
                "invalid_id",
                "model id must be 1-64 characters of A-Z a-z 0-9 - _ .",
            ));
        }
        if let Some(r) = self.models.get(&req.id)
            && !matches!(r.status.status, ModelState::Failed { .. })
        {
            return Err(ControlError::new(409, "model_exists", format!("model {:?} is already loaded", req.id)));
        }
        if req.replication == 0 || req.replication > 16 {
            return Err(ControlError::bad_request("invalid_replication", "replication must be 1..=16"));
        }
        let strategy: ShardingStrategy = req
            .strategy
            .parse()
            .map_err(|e: crate::plan::PlanError| ControlError::bad_request("invalid_strategy", e.to_string()))?;
        let path = PathBuf::from(&req.path);
        if !path.is_absolute() {
            return Err(ControlError::bad_request("invalid_path", format!("path {:?} must be absolute", req.path)));
        }
        if !self.node.can_read(&path) {
            return Err(ControlError::bad_request(
                "unreadable_path",
                format!(
                    "the coordinator cannot read a model at {:?} (no config.json, or outside its model roots)",
                    req.path
                ),
            ));
        }
        let ckpt =
            Checkpoint::open(&path).map_err(|e| ControlError::bad_request("invalid_checkpoint", e.to_string()))?;
        let layout = ModelLayout::from_checkpoint(&ckpt)
            .map_err(|e| ControlError::bad_request("invalid_checkpoint", e.to_string()))?;
        let plan = ShardPlan::new(&layout, &strategy)
            .map_err(|e| ControlError::bad_request("invalid_strategy", e.to_string()))?;
        let live: Vec<&Member> = self.members.values().filter(|m| m.state == NodeState::Up).collect();
        // Each node offers what the replicas already assigned to it (every model, loaded or
        // loading) leave of its memory.
        let assigned = self.assigned_bytes();
        let inventory: Vec<NodeInventory> = live
            .iter()
            .map(|m| NodeInventory {
                id: m.info.id.clone(),
                memory_bytes: self.room(&m.info.id, &assigned),
                device: m.info.device,
                compute: m.info.compute,
                load: 0.0,
            })
            .collect();
        let mut preq = req.placement.clone().unwrap_or_default();
        preq.replication = req.replication;
        let placement = place(&plan, &inventory, &preq)
            .map_err(|e| ControlError::unavailable("placement_failed", e.to_string()))?;
        let progress: Vec<ShardProgress> = placement
            .assignments
            .iter()
            .map(|a| ShardProgress {
                shard: a.shard,
                replica: a.replica,
                node: a.node.clone(),
                loaded: 0,
                total: plan.shards[a.shard].bytes,
                done: false,
                pulled: false,
            })
            .collect();
        let status = ModelStatus {
            id: req.id.clone(),
            path: req.path.clone(),
            strategy: strategy.to_string(),
            replication: req.replication,
            replication_mode: req.replication_mode,
            status: ModelState::Loading,
            plan: plan.clone(),
            placement: placement.clone(),
            progress,
        };
        self.models
            .insert(req.id.clone(), Record { status: status.clone(), config: layout.config.clone(), sha256: None });
        tracing::info!(model = %req.id, strategy = %strategy, shards = plan.shards.len(), "loading model");
        for a in &placement.assignments {
            self.spawn_load(&req.id, &req.path, &plan.shards[a.shard], a.replica, &a.node, ctx);
        }
        let (path, id) = (path.clone(), req.id.clone());
        ctx.spawn(
            async move { actix_web::rt::task::spawn_blocking(move || checkpoint_sha256(&path)).await.ok().flatten() }
                .into_actor(self)
                .map(move |sha, me, _| {
                    if let Some(r) = me.models.get_mut(&id) {
                        r.sha256 = sha;
                    }
                }),
        );
        self.audit(
            "load",
            Some(&req.id),
            None,
            &format!("placed {} replicas ({})", placement.assignments.len(), strategy),
        );
        Ok(status)
    }

    /// Sends `LoadShard` for one replica to `member` and reports back to [`Self::shard_done`].
    fn spawn_load(
        &mut self,
        model: &str,
        path: &str,
        spec: &crate::plan::ShardSpec,
        replica: usize,
        member: &str,
        ctx: &mut Context<Self>,
    ) {
        let Some(target) = self.members.get(member).map(|m| m.info.addr.clone()) else { return };
        let sources = self
            .members
            .values()
            .filter(|m| m.state == NodeState::Up && m.info.addr != target)
            .map(|m| m.info.addr.clone())
            .collect();
        let msg = LoadShard {
            model: model.to_string(),
            path: path.to_string(),
            replica,
            shard: spec.clone(),
            sources,
            coordinator: self.node.addr.clone(),
        };
        let node = self.node.clone();
        let (model, shard, member) = (model.to_string(), spec.id, member.to_string());
        let fut = async move {
            if target == node.addr {
                return super::loader::load_shard(&node, msg).await;
            }
            node.ask(&target, &msg, Duration::from_secs(1800)).await.map_err(|e| e.to_string())?
        };
        ctx.spawn(
            fut.into_actor(self).map(move |result, me, ctx| {
                me.shard_done(ShardDone { model, shard, replica, node: member, result }, ctx)
            }),
        );
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

    /// Checks a member's heartbeat stats against the alert thresholds.
    fn check_stats(&mut self, id: &str, previous: &NodeStats) {
        let Some(m) = self.members.get(id) else { return };
        let (s, cfg) = (&m.stats, &self.node.cfg.alerts);
        let mem = if s.memory_total > 0 { 100.0 * s.memory_used as f64 / s.memory_total as f64 } else { 0.0 };
        let fired = [
            ("memory", mem > cfg.memory_percent, Severity::Warning, format!("memory at {mem:.1}% on {id}")),
            (
                "p99_latency",
                s.p99_ms > cfg.p99_ms,
                Severity::Warning,
                format!("p99 latency {:.0} ms on {id}", s.p99_ms),
            ),
        ];
        let requests = s.requests.saturating_sub(previous.requests);
        let errors = s.errors.saturating_sub(previous.errors);
        let rate = if requests >= 10 { errors as f64 / requests as f64 } else { 0.0 };
        let error = (
            "error_rate",
            rate > cfg.error_rate,
            Severity::Critical,
            format!("{errors} of {requests} requests failed on {id}"),
        );
        for (rule, bad, severity, summary) in fired.into_iter().chain([error]) {
            if bad {
                self.fire(rule, id, severity, summary);
            } else if rule != "error_rate" || requests >= 10 {
                self.resolve(rule, id);
            }
        }
    }

    /// One rebalancing round: a bounded number of migrations from the fullest nodes to the
    /// emptiest (a node that joined takes replicas a few at a time).
    fn rebalance_round(&mut self, ctx: &mut Context<Self>) {
        if !self.rebalance_pending || !self.migrations.is_empty() {
            return;
        }
        let ready = self.models.values().filter(|r| r.status.status == ModelState::Ready);
        let replicas: Vec<(String, usize, String)> = ready
            .flat_map(|r| {
                r.status.progress.iter().filter(|p| p.done).map(move |p| (r.status.id.clone(), p.shard, p.node.clone()))
            })
            .collect();
        let live: Vec<String> =
            self.members.values().filter(|m| m.state == NodeState::Up).map(|m| m.info.id.clone()).collect();
        // Only balanced models move: one still missing replicas is re-placement's business.
        let moves = crate::plan::rebalance::rebalance(&replicas, &live, self.node.cfg.rebalance_moves);
        // Replica counts even out only where memory allows: a move to a node without room is
        // dropped, and a round left with none ends the rebalancing (until the next join).
        let mut assigned = self.assigned_bytes();
        let moves: Vec<_> = moves
            .into_iter()
            .filter(|mv| {
                let bytes = self.models.get(&mv.model).and_then(|r| r.status.plan.shards.get(mv.shard)).map(|s| s.bytes);
                let fits = bytes.is_some_and(|b| self.room(&mv.to, &assigned) >= b);
                if fits {
                    *assigned.entry(mv.to.clone()).or_default() += bytes.unwrap_or(0);
                }
                fits
            })
            .collect();
        if moves.is_empty() {
            self.rebalance_pending = false;
        }
        for mv in moves {
            let m = Migrate { model: mv.model, shard: mv.shard, from: mv.from, to: mv.to };
            tracing::info!(model = %m.model, shard = m.shard, from = %m.from, to = %m.to, "rebalancing");
            self.audit("rebalance", Some(&m.model), Some(&m.to), &format!("shard {} from {}", m.shard, m.from));
            if let Err(e) = self.migrate(m, ctx) {
                tracing::warn!(error = %e, "rebalancing move refused");
            }
        }
    }

    /// Bytes of the replicas assigned to each node (every model; loaded, loading or moving).
    fn assigned_bytes(&self) -> HashMap<String, u64> {
        let mut bytes: HashMap<String, u64> = HashMap::new();
        for p in self.models.values().flat_map(|r| r.status.progress.iter()) {
            *bytes.entry(p.node.clone()).or_default() += p.total;
        }
        bytes
    }

    /// What a member's offered memory has left for another shard.
    fn room(&self, node: &str, assigned: &HashMap<String, u64>) -> u64 {
        let offered = self.members.get(node).map_or(0, |m| m.info.memory_bytes);
        offered.saturating_sub(assigned.get(node).copied().unwrap_or(0))
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

    /// Places again the replicas a down node held, on live nodes without that shard, until
    /// every shard has its replication again (as far as nodes allow).
    fn replace_replicas_of(&mut self, dead: &str, ctx: &mut Context<Self>) {
        // Down for the whole grace period, not merely down again after coming back within it
        // (the timer of an earlier down must not move anything for a later one): a flapping
        // node causes no reshuffle.
        let grace = Duration::from_millis(self.node.cfg.health.replace_after_ms).saturating_sub(Duration::from_millis(5));
        let due = self.members.get(dead).is_some_and(|m| match m.state {
            NodeState::Leaving => true,
            NodeState::Down => m.down_since.is_some_and(|t| t.elapsed() >= grace),
            NodeState::Up | NodeState::Suspect => false,
        });
        if !due {
            return;
        }
        let mut loads: Vec<(String, String, crate::plan::ShardSpec, usize, String)> = Vec::new();
        let ids: Vec<String> = self.models.keys().cloned().collect();
        // Replicas and bytes per node, kept up to date with this pass's own choices so that
        // the lost replicas spread instead of all landing on the emptiest node.
        let mut assigned = self.assigned_bytes();
        let mut count: HashMap<String, usize> = HashMap::new();
        for p in self.models.values().flat_map(|r| r.status.progress.iter()) {
            *count.entry(p.node.clone()).or_default() += 1;
        }
        for id in ids {
            let Some(rec) = self.models.get(&id) else { continue };
            if rec.status.status != ModelState::Ready {
                continue;
            }
            let lost: Vec<(usize, usize)> =
                rec.status.progress.iter().filter(|p| p.node == dead).map(|p| (p.shard, p.replica)).collect();
            for (shard, replica) in lost {
                // The live node holding the fewest replicas that does not hold this shard and
                // has room for it.
                let holders: Vec<&str> =
                    rec.status.progress.iter().filter(|p| p.shard == shard).map(|p| p.node.as_str()).collect();
                let bytes = rec.status.plan.shards[shard].bytes;
                let target = self
                    .members
                    .values()
                    .filter(|m| m.state == NodeState::Up && !holders.contains(&m.info.id.as_str()))
                    .filter(|m| self.room(&m.info.id, &assigned) >= bytes)
                    .min_by_key(|m| (count.get(&m.info.id).copied().unwrap_or(0), m.info.id.clone()))
                    .map(|m| m.info.id.clone());
                if let Some(t) = &target {
                    *assigned.entry(t.clone()).or_default() += bytes;
                    *count.entry(t.clone()).or_default() += 1;
                }
                self.fire(
                    "shard_under_replicated",
                    &format!("{id}/{shard}"),
                    Severity::Warning,
                    format!("shard {shard} of {id} lost its replica on {dead}"),
                );
                let Some(target) = target else {
                    tracing::warn!(model = %id, shard, "under-replicated: no live node without this shard has room");
                    self.audit("replace", Some(&id), Some(dead), &format!("shard {shard}: no node to take it"));
                    continue;
                };
                let spec = rec.status.plan.shards[shard].clone();
                loads.push((id.clone(), rec.status.path.clone(), spec, replica, target));
            }
        }
        for (id, path, spec, replica, target) in loads {
            if let Some(rec) = self.models.get_mut(&id) {
                rec.status.progress.retain(|p| !(p.shard == spec.id && p.replica == replica));
                rec.status.progress.push(ShardProgress {
                    shard: spec.id,
                    replica,
                    node: target.clone(),
                    loaded: 0,
                    total: spec.bytes,
                    done: false,
                    pulled: false,
                });
                for a in
                    rec.status.placement.assignments.iter_mut().filter(|a| a.shard == spec.id && a.replica == replica)
                {
                    a.node = target.clone();
                }
            }
            tracing::info!(model = %id, shard = spec.id, from = %dead, to = %target, "re-placing replica");
            self.audit("replace", Some(&id), Some(&target), &format!("shard {} from {dead}", spec.id));
            self.spawn_load(&id, &path, &spec, replica, &target, ctx);
        }
    }

    fn migrate(&mut self, m: Migrate, ctx: &mut Context<Self>) -> Result<ModelStatus, ControlError> {
        let rec =
            self.models.get(&m.model).ok_or_else(|| ControlError::not_found(format!("no model {:?}", m.model)))?;
        if rec.status.status != ModelState::Ready {
            return Err(ControlError::new(409, "model_not_ready", format!("model {:?} is not ready", m.model)));
        }
        let spec = rec.status.plan.shards.get(m.shard).cloned().ok_or_else(|| {
            ControlError::bad_request("invalid_shard", format!("model {:?} has no shard {}", m.model, m.shard))
        })?;
        let source =
            rec.status.progress.iter().find(|p| p.shard == m.shard && p.node == m.from && p.done).ok_or_else(|| {
                ControlError::bad_request(
                    "invalid_source",
                    format!("{} holds no loaded replica of shard {}", m.from, m.shard),
                )
            })?;
        let replica = source.replica;
        if rec.status.progress.iter().any(|p| p.shard == m.shard && p.node == m.to) {
            return Err(ControlError::bad_request(
                "invalid_target",
                format!("{} already holds shard {}", m.to, m.shard),
            ));
        }
        if self.members.get(&m.to).is_none_or(|t| t.state != NodeState::Up) {
            return Err(ControlError::bad_request("invalid_target", format!("{} is not a live member", m.to)));
        }
        let room = self.room(&m.to, &self.assigned_bytes());
        if room < spec.bytes {
            return Err(ControlError::new(
                409,
                "insufficient_memory",
                format!("{} has {room} bytes left for shards; shard {} needs {}", m.to, m.shard, spec.bytes),
            ));
        }
        if self.migrations.iter().any(|x| x.model == m.model && x.shard == m.shard) {
            return Err(ControlError::new(
                409,
                "migration_in_progress",
                format!("shard {} is already moving", m.shard),
            ));
        }
        let path = rec.status.path.clone();
        if let Some(rec) = self.models.get_mut(&m.model) {
            rec.status.progress.push(ShardProgress {
                shard: m.shard,
                replica,
                node: m.to.clone(),
                loaded: 0,
                total: spec.bytes,
                done: false,
                pulled: false,
            });
        }
        tracing::info!(model = %m.model, shard = m.shard, from = %m.from, to = %m.to, "migrating");
        self.audit("migrate", Some(&m.model), Some(&m.to), &format!("shard {} from {}: loading", m.shard, m.from));
        self.migrations.push(m.clone());
        self.spawn_load(&m.model, &path, &spec, replica, &m.to, ctx);
        self.models.get(&m.model).map(|r| r.status.clone()).ok_or_else(|| ControlError::not_found("gone"))
    }

    /// The target of a migration has loaded: switch routes to it, drain, unload the source.
    fn finish_migration(&mut self, model: &str, shard: usize, to: &str, ctx: &mut Context<Self>) {
        let Some(i) = self.migrations.iter().position(|x| x.model == model && x.shard == shard && x.to == to) else {
            return;
        };
        let m = self.migrations.remove(i);
        if let Some(rec) = self.models.get_mut(model) {
            rec.status.progress.retain(|p| !(p.shard == shard && p.node == m.from));
            for a in rec.status.placement.assignments.iter_mut().filter(|a| a.shard == shard && a.node == m.from) {
                a.node = m.to.clone();
            }
        }
        self.publish(ctx);
        // Requests already routed to the source finish there: unload once they have had an
        // attempt's time to drain.
        let drain = self.node.cfg.attempt_timeout();
        let (model, from, to) = (m.model.clone(), m.from.clone(), m.to.clone());
        ctx.run_later(drain, move |me, ctx| {
            me.unload_shard_from(&model, Some(shard), vec![from.clone()], ctx);
            me.audit("migrate", Some(&model), Some(&from), &format!("shard {shard}: drained and unloaded"));
            me.notice(
                "shard_migrated",
                &format!("{model}/{shard}"),
                format!("shard {shard} of {model} moved from {from} to {to}; the source is drained and unloaded"),
            );
        });
    }

    fn shard_done(&mut self, done: ShardDone, ctx: &mut Context<Self>) {
        let Some(rec) = self.models.get_mut(&done.model) else { return };
        if rec.status.status == ModelState::Ready {
            // A re-placed replica, or one still loading after an async/quorum ready: it
            // joins the routes when loaded.
            let entry = rec.status.progress.iter_mut().find(|p| p.shard == done.shard && p.node == done.node);
            match (done.result, entry) {
                (Ok(loaded), Some(p)) => {
                    p.done = true;
                    p.loaded = loaded.bytes;
                    p.total = loaded.bytes;
                    p.pulled = loaded.pulled;
                    self.audit("replace", Some(&done.model), Some(&done.node), &format!("shard {} loaded", done.shard));
                    let whole = self.models.get(&done.model).is_some_and(|r| {
                        r.status.progress.iter().filter(|p| p.shard == done.shard && p.done).count()
                            >= r.status.replication
                    });
                    if whole {
                        self.resolve("shard_under_replicated", &format!("{}/{}", done.model, done.shard));
                    }
                    self.publish(ctx);
                    self.finish_migration(&done.model, done.shard, &done.node, ctx);
                }
                (Err(reason), _) => {
                    tracing::error!(model = %done.model, shard = done.shard, node = %done.node, %reason, "re-placement failed");
                    rec.status.progress.retain(|p| !(p.shard == done.shard && p.node == done.node && !p.done));
                    self.migrations.retain(|x| !(x.model == done.model && x.shard == done.shard && x.to == done.node));
                    self.audit("replace", Some(&done.model), Some(&done.node), &format!("error: {reason}"));
                }
                (Ok(_), None) => {}
            }
            return;
        }
        if rec.status.status != ModelState::Loading {
            return;
        }
        match done.result {
            Ok(loaded) => {
                if let Some(p) =
                    rec.status.progress.iter_mut().find(|p| p.shard == done.shard && p.replica == done.replica)
                {
                    p.done = true;
                    p.loaded = loaded.bytes;
                    p.total = loaded.bytes;
                    p.pulled = loaded.pulled;
                }
                let s = &rec.status;
                if s.replication_mode.ready(s.replication, s.plan.shards.len(), &s.progress) {
                    rec.status.status = ModelState::Ready;
                    tracing::info!(model = %done.model, "model ready");
                    self.audit("ready", Some(&done.model), None, "ok");
                    self.publish(ctx);
                }
            }
            Err(reason) => {
                let reason = format!("shard {} on {}: {reason}", done.shard, done.node);
                tracing::error!(model = %done.model, %reason, "model failed to load");
                rec.status.status = ModelState::Failed { reason: reason.clone() };
                self.audit("load", Some(&done.model), Some(&done.node), &format!("error: {reason}"));
                let Some(rec) = self.models.get(&done.model) else { return };
                let nodes: Vec<String> = rec.status.placement.assignments.iter().map(|a| a.node.clone()).collect();
                self.unload_from(&done.model, nodes, ctx);
            }
        }
    }

    fn unload_from(&mut self, model: &str, nodes: Vec<String>, ctx: &mut Context<Self>) {
        self.unload_shard_from(model, None, nodes, ctx);
    }

    fn unload_shard_from(&mut self, model: &str, shard: Option<usize>, nodes: Vec<String>, ctx: &mut Context<Self>) {
        let mut nodes = nodes;
        nodes.sort();
        nodes.dedup();
        let unload = UnloadShard { model: model.to_string(), shard };
        for n in nodes {
            if n == self.node.id {
                super::node::unload_local(&self.node, model, shard);
                continue;
            }
            let Some(addr) = self.members.get(&n).map(|m| m.info.addr.clone()) else { continue };
            let (node, unload) = (self.node.clone(), unload.clone());
            ctx.spawn(
                async move {
                    let _ = node.ask(&addr, &unload, Duration::from_secs(10)).await;
                }
                .into_actor(self),
            );
        }
    }
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
        self.publish(ctx);
    }
}

#[derive(Debug)]
struct ShardDone {
    model: String,
    shard: usize,
    replica: usize,
    node: String,
    result: Result<ShardLoaded, String>,
}

/// A node asks to join.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<ClusterView, ControlError>")]
pub struct JoinMsg(pub Join);

impl Handler<JoinMsg> for Coordinator {
    type Result = MessageResult<JoinMsg>;

    fn handle(&mut self, JoinMsg(join): JoinMsg, ctx: &mut Context<Self>) -> Self::Result {
        let info = join.node;
        if let Some(m) = self.members.get(&info.id)
            && m.info.addr != info.addr
            && m.state != NodeState::Down
        {
            return MessageResult(Err(ControlError::new(
                409,
                "node_id_taken",
                format!("node id {:?} is already used by {}", info.id, m.info.addr),
            )));
        }
        tracing::info!(node = %info.id, addr = %info.addr, "node joined");
        self.audit("join", None, Some(&info.id), &format!("from {}", info.addr));
        let known = self.members.get(&info.id).is_some_and(|m| m.info.addr == info.addr);
        self.rebalance_pending |= !known;
        if let Some(h) = &self.health {
            h.do_send(Beat { node: info.id.clone() });
        }
        self.members.insert(info.id.clone(), Member::new(info));
        self.publish_soon(ctx);
        MessageResult(Ok(self.view()))
    }
}

/// A heartbeat arrived.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<HeartbeatAck, ControlError>")]
pub struct HeartbeatMsg(pub Heartbeat);

impl Handler<HeartbeatMsg> for Coordinator {
    type Result = MessageResult<HeartbeatMsg>;

    fn handle(&mut self, HeartbeatMsg(hb): HeartbeatMsg, _: &mut Context<Self>) -> Self::Result {
        if !self.members.contains_key(&hb.node) {
            return MessageResult(Err(ControlError::not_found(format!("unknown node {:?}; join again", hb.node))));
        }
        let Some(m) = self.members.get_mut(&hb.node) else {
            return MessageResult(Err(ControlError::not_found(format!("unknown node {:?}; join again", hb.node))));
        };
        let previous = std::mem::replace(&mut m.stats, hb.stats);
        self.check_stats(&hb.node, &previous);
        if let Some(h) = &self.health {
            h.do_send(Beat { node: hb.node.clone() });
        }
        let view = (hb.view_version != self.version).then(|| self.view());
        let cpu: Vec<(String, f32)> = self.members.values().map(|m| (m.info.id.clone(), m.stats.cpu_percent)).collect();
        self.node.member_cpu.write().unwrap_or_else(|e| e.into_inner()).extend(cpu.iter().cloned());
        MessageResult(Ok(HeartbeatAck { view, cpu }))
    }
}

impl Handler<NodeStateChanged> for Coordinator {
    type Result = ();

    fn handle(&mut self, msg: NodeStateChanged, ctx: &mut Context<Self>) {
        let Some(m) = self.members.get_mut(&msg.node) else { return };
        if m.state == msg.state || (m.state == NodeState::Leaving && msg.state != NodeState::Down) {
            return;
        }
        tracing::warn!(node = %msg.node, state = ?msg.state, phi = msg.phi, "membership change");
        let was = m.state;
        m.state = msg.state;
        let (flap_count, window) =
            (self.node.cfg.alerts.flap_count, Duration::from_millis(self.node.cfg.alerts.flap_window_ms));
        let now = Instant::now();
        let mut flapping = None;
        match msg.state {
            NodeState::Down => {
                m.down_since = Some(now);
                m.downs.push_back(now);
                while m.downs.front().is_some_and(|t| now.duration_since(*t) > window) {
                    m.downs.pop_front();
                }
                if flap_count > 0 && m.downs.len() >= flap_count {
                    flapping = Some(m.downs.len());
                }
            }
            NodeState::Up => m.down_since = None,
            NodeState::Suspect | NodeState::Leaving => {}
        }
        let op = match msg.state {
            NodeState::Down => "down",
            NodeState::Up => "up",
            NodeState::Suspect => "suspect",
            NodeState::Leaving => "leaving",
        };
        self.audit(op, None, Some(&msg.node), &format!("phi {:.2}", msg.phi));
        match msg.state {
            NodeState::Down => self.fire(
                "node_down",
                &msg.node,
                Severity::Critical,
                format!("node {} is down (phi {:.1})", msg.node, msg.phi),
            ),
            NodeState::Up => self.resolve("node_down", &msg.node),
            NodeState::Suspect | NodeState::Leaving => {}
        }
        if let Some(n) = flapping {
            self.audit("flapping", None, Some(&msg.node), &format!("down {n} times within {window:?}"));
            self.fire(
                "node_flapping",
                &msg.node,
                Severity::Warning,
                format!("node {} went down {n} times within {window:?}", msg.node),
            );
        }
        if msg.state == NodeState::Up && was == NodeState::Down {
            // Flapping is over once a whole window passes without another down.
            let node = msg.node.clone();
            ctx.run_later(window, move |me, _| {
                let quiet = me.members.get(&node).is_none_or(|m| {
                    m.state == NodeState::Up && m.downs.back().is_none_or(|t| t.elapsed() >= window)
                });
                if quiet {
                    me.resolve("node_flapping", &node);
                }
            });
        }
        self.publish(ctx);
        match msg.state {
            NodeState::Down => {
                // Wait out a flap before moving anything.
                let node = msg.node.clone();
                let after = Duration::from_millis(self.node.cfg.health.replace_after_ms);
                ctx.run_later(after, move |me, ctx| me.replace_replicas_of(&node, ctx));
            }
            NodeState::Up if was == NodeState::Down => {
                // Shards it held that were re-placed meanwhile are no longer its own.
                let stale: Vec<String> = self
                    .models
                    .values()
                    .filter(|r| !r.status.progress.iter().any(|p| p.node == msg.node))
                    .map(|r| r.status.id.clone())
                    .collect();
                for model in stale {
                    self.unload_from(&model, vec![msg.node.clone()], ctx);
                }
            }
            _ => {}
        }
    }
}

/// Load a model.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<ModelStatus, ControlError>")]
pub struct LoadModelMsg(pub LoadModel);

impl Handler<LoadModelMsg> for Coordinator {
    type Result = MessageResult<LoadModelMsg>;

    fn handle(&mut self, msg: LoadModelMsg, ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(self.load(msg.0, ctx))
    }
}

/// A node leaves gracefully.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<(), ControlError>")]
pub struct LeaveMsg(pub Leave);

impl Handler<LeaveMsg> for Coordinator {
    type Result = MessageResult<LeaveMsg>;

    fn handle(&mut self, LeaveMsg(leave): LeaveMsg, ctx: &mut Context<Self>) -> Self::Result {
        if leave.node == self.node.id {
            return MessageResult(Err(ControlError::bad_request(
                "coordinator",
                "the coordinator cannot hand itself off",
            )));
        }
        let Some(m) = self.members.get_mut(&leave.node) else {
            return MessageResult(Err(ControlError::not_found(format!("unknown node {:?}", leave.node))));
        };
        if leave.done {
            self.members.remove(&leave.node);
            if let Some(h) = &self.health {
                h.do_send(Forget { node: leave.node.clone() });
            }
            self.audit("leave", None, Some(&leave.node), "left");
            self.publish(ctx);
            return MessageResult(Ok(()));
        }
        m.state = NodeState::Leaving;
        tracing::info!(node = %leave.node, "node leaving; handing off its replicas");
        self.audit("leave", None, Some(&leave.node), "handing off");
        self.publish(ctx);
        self.replace_replicas_of(&leave.node, ctx);
        MessageResult(Ok(()))
    }
}

/// Move a replica.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<ModelStatus, ControlError>")]
pub struct MigrateMsg(pub Migrate);

impl Handler<MigrateMsg> for Coordinator {
    type Result = MessageResult<MigrateMsg>;

    fn handle(&mut self, msg: MigrateMsg, ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(self.migrate(msg.0, ctx))
    }
}

/// Loading progress from a node.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct ProgressMsg(pub Progress);

impl Handler<ProgressMsg> for Coordinator {
    type Result = ();

    fn handle(&mut self, ProgressMsg(p): ProgressMsg, _: &mut Context<Self>) {
        if let Some(rec) = self.models.get_mut(&p.model)
            && let Some(s) = rec.status.progress.iter_mut().find(|s| s.shard == p.shard && s.node == p.node)
            && !s.done
        {
            s.loaded = p.loaded.min(p.total);
            s.total = p.total;
        }
    }
}

/// Unload a model.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<(), ControlError>")]
pub struct UnloadModelMsg(pub String);

impl Handler<UnloadModelMsg> for Coordinator {
    type Result = MessageResult<UnloadModelMsg>;

    fn handle(&mut self, msg: UnloadModelMsg, ctx: &mut Context<Self>) -> Self::Result {
        let Some(rec) = self.models.remove(&msg.0) else {
            return MessageResult(Err(ControlError::not_found(format!("no model {:?}", msg.0))));
        };
        tracing::info!(model = %msg.0, "unloading model");
        self.audit("unload", Some(&msg.0), None, "ok");
        let nodes = rec.status.placement.assignments.iter().map(|a| a.node.clone()).collect();
        self.publish(ctx);
        self.unload_from(&msg.0, nodes, ctx);
        MessageResult(Ok(()))
    }
}

/// One model's status.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<ModelStatus, ControlError>")]
pub struct ModelStatusMsg(pub String);

impl Handler<ModelStatusMsg> for Coordinator {
    type Result = MessageResult<ModelStatusMsg>;

    fn handle(&mut self, msg: ModelStatusMsg, _: &mut Context<Self>) -> Self::Result {
        MessageResult(
            self.models
                .get(&msg.0)
                .map(|r| r.status.clone())
                .ok_or_else(|| ControlError::not_found(format!("no model {:?}", msg.0))),
        )
    }
}

/// Every model's status.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Vec<ModelStatus>")]
pub struct ListModelsMsg;

impl Handler<ListModelsMsg> for Coordinator {
    type Result = MessageResult<ListModelsMsg>;

    fn handle(&mut self, _: ListModelsMsg, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.models.values().map(|r| r.status.clone()).collect())
    }
}

/// The cluster's members, their stats and shards.
#[derive(Debug, Clone, Message)]
#[rtype(result = "ClusterStatus")]
pub struct ClusterStatusMsg;

impl Handler<ClusterStatusMsg> for Coordinator {
    type Result = ResponseFuture<ClusterStatus>;

    fn handle(&mut self, _: ClusterStatusMsg, _: &mut Context<Self>) -> Self::Result {
        let nodes: Vec<NodeStatus> = self
            .members
            .values()
            .map(|m| {
                let shards = self
                    .models
                    .values()
                    .flat_map(|r| {
                        r.status
                            .progress
                            .iter()
                            .filter(|p| p.node == m.info.id)
                            .map(move |p| format!("{}/{}", r.status.id, p.shard))
                    })
                    .collect();
                NodeStatus {
                    node: NodeView { info: m.info.clone(), state: m.state },
                    stats: m.stats.clone(),
                    phi: 0.0,
                    heartbeat_gap_max_ms: 0.0,
                    shards,
                }
            })
            .collect();
        let (coordinator, version, health) = (self.node.id.clone(), self.version, self.health.clone());
        Box::pin(async move {
            let phis = match health {
                Some(h) => h.send(Phis).await.unwrap_or_default(),
                None => Default::default(),
            };
            let nodes = nodes
                .into_iter()
                .map(|mut n| {
                    let (phi, longest) = phis.get(&n.node.info.id).copied().unwrap_or_default();
                    n.phi = phi;
                    n.heartbeat_gap_max_ms = longest * 1e3;
                    n
                })
                .collect();
            ClusterStatus { coordinator, version, nodes }
        })
    }
}

/// A node left for good (operator's request).
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct RemoveNode(pub String);

impl Handler<RemoveNode> for Coordinator {
    type Result = ();

    fn handle(&mut self, msg: RemoveNode, ctx: &mut Context<Self>) {
        if self.members.remove(&msg.0).is_some() {
            if let Some(h) = &self.health {
                h.do_send(Forget { node: msg.0 });
            }
            self.publish(ctx);
        }
    }
}
