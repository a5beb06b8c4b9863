//! The model registry: loading (plan, placement, `LoadShard` to each node, progress, when a
//! model is ready under its replication mode), unloading, and the status the API shows.

use std::path::PathBuf;
use std::time::Duration;

use actix::{ActorFutureExt, AsyncContext, Context, Handler, Message, MessageResult, WrapFuture};

use crate::model::{Checkpoint, ModelLayout};
use crate::plan::{NodeInventory, ShardPlan, ShardingStrategy, place};

use super::actor::{Coordinator, Member, Record};
use super::audit::checkpoint_sha256;
use crate::cluster::wire::{
    ApiError, LoadModel, LoadShard, MemberState, ModelState, ModelStatus, Progress, ShardLoaded, ShardProgress,
    UnloadShard,
};

impl Coordinator {
    pub(super) fn load(&mut self, req: LoadModel, ctx: &mut Context<Self>) -> Result<ModelStatus, ApiError> {
        let id_ok = !req.id.is_empty()
            && req.id.len() <= 64
            && req.id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !id_ok {
            return Err(ApiError::bad_request("invalid_id", "model id must be 1-64 characters of A-Z a-z 0-9 - _ ."));
        }
        if let Some(r) = self.models.get(&req.id)
            && !matches!(r.status.status, ModelState::Failed { .. })
        {
            return Err(ApiError::new(409, "model_exists", format!("model {:?} is already loaded", req.id)));
        }
        if req.replication == 0 || req.replication > 16 {
            return Err(ApiError::bad_request("invalid_replication", "replication must be 1..=16"));
        }
        let mut req = req;
        if let Some(a) = &req.autoscaling {
            a.validate().map_err(|e| ApiError::bad_request("invalid_autoscaling", e))?;
            req.replication = req.replication.clamp(a.min_replicas, a.max_replicas);
        }
        let strategy: ShardingStrategy = req
            .strategy
            .parse()
            .map_err(|e: crate::plan::PlanError| ApiError::bad_request("invalid_strategy", e.to_string()))?;
        let path = PathBuf::from(&req.path);
        if !path.is_absolute() {
            return Err(ApiError::bad_request("invalid_path", format!("path {:?} must be absolute", req.path)));
        }
        if !self.node.checkpoints.can_read(&path) {
            return Err(ApiError::bad_request(
                "unreadable_path",
                format!(
                    "the coordinator cannot read a model at {:?} (no config.json or GGUF file, or outside its model roots)",
                    req.path
                ),
            ));
        }
        let ckpt = Checkpoint::open(&path).map_err(|e| ApiError::bad_request("invalid_checkpoint", e.to_string()))?;
        let layout = ModelLayout::from_checkpoint(&ckpt)
            .map_err(|e| ApiError::bad_request("invalid_checkpoint", e.to_string()))?;
        let plan =
            ShardPlan::new(&layout, &strategy).map_err(|e| ApiError::bad_request("invalid_strategy", e.to_string()))?;
        let live: Vec<&Member> = self.members.values().filter(|m| m.state == MemberState::Up).collect();
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
        let placement =
            place(&plan, &inventory, &preq).map_err(|e| ApiError::unavailable("placement_failed", e.to_string()))?;
        let progress: Vec<ShardProgress> = placement
            .assignments
            .iter()
            .map(|a| ShardProgress::pending(a.shard, a.replica, &a.node, plan.shards[a.shard].bytes))
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
            autoscaling: req.autoscaling,
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
        // The load is a committed entry of the registry before it is answered (a loading
        // model is in the view's registry, not yet in its routes).
        self.publish_soon(ctx);
        Ok(status)
    }

    /// Sends `LoadShard` for one replica to `member` and reports back to [`Self::shard_done`].
    pub(super) fn spawn_load(
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
            .filter(|m| m.state == MemberState::Up && m.info.addr != target)
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
                return crate::cluster::loader::load_shard(&node, msg).await;
            }
            node.links.ask(&target, &msg, Duration::from_secs(1800)).await.map_err(|e| e.to_string())?
        };
        ctx.spawn(
            fut.into_actor(self).map(move |result, me, ctx| {
                me.shard_done(ShardDone { model, shard, replica, node: member, result }, ctx)
            }),
        );
    }

    pub(super) fn shard_done(&mut self, done: ShardDone, ctx: &mut Context<Self>) {
        let Some(rec) = self.models.get_mut(&done.model) else { return };
        if rec.status.status == ModelState::Ready {
            // A re-placed replica, or one still loading after an async/quorum ready: it
            // joins the routes when loaded.
            let entry = rec.status.progress.iter_mut().find(|p| p.shard == done.shard && p.node == done.node);
            let scaled = self.scaling_up.remove(&(done.model.clone(), done.shard, done.node.clone()));
            let kind = if scaled { "autoscale" } else { "replace" };
            match (done.result, entry) {
                (Ok(loaded), Some(p)) => {
                    p.done = true;
                    p.loaded = loaded.bytes;
                    p.total = loaded.bytes;
                    p.pulled = loaded.pulled;
                    p.load_ms = Some(loaded.load_ms);
                    p.warmup_ms = Some(loaded.warmup_ms);
                    p.from_warm_cache = loaded.from_warm_cache;
                    let (load_ms, warmup_ms) = (loaded.load_ms, loaded.warmup_ms);
                    let from = if loaded.from_warm_cache { " from the warm cache" } else { "" };
                    let what = format!("shard {} loaded{from} in {load_ms} ms, warmed in {warmup_ms} ms", done.shard);
                    self.audit(kind, Some(&done.model), Some(&done.node), &what);
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
                    self.audit(kind, Some(&done.model), Some(&done.node), &format!("error: {reason}"));
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
                    p.load_ms = Some(loaded.load_ms);
                    p.warmup_ms = Some(loaded.warmup_ms);
                    p.from_warm_cache = loaded.from_warm_cache;
                }
                let s = &rec.status;
                if s.replication_mode.ready(s.replication, &s.loaded_per_shard()) {
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

    pub(super) fn unload_from(&mut self, model: &str, nodes: Vec<String>, ctx: &mut Context<Self>) {
        self.unload_shard_from(model, None, nodes, ctx);
    }

    pub(super) fn unload_shard_from(
        &mut self,
        model: &str,
        shard: Option<usize>,
        nodes: Vec<String>,
        ctx: &mut Context<Self>,
    ) {
        let mut nodes = nodes;
        nodes.sort();
        nodes.dedup();
        let unload = UnloadShard { model: model.to_string(), shard };
        for n in nodes {
            if n == self.node.id {
                crate::cluster::node_actor::unload_local(&self.node, model, shard);
                continue;
            }
            let Some(addr) = self.members.get(&n).map(|m| m.info.addr.clone()) else { continue };
            let (node, unload) = (self.node.clone(), unload.clone());
            ctx.spawn(
                async move {
                    let _ = node.links.ask(&addr, &unload, Duration::from_secs(10)).await;
                }
                .into_actor(self),
            );
        }
    }
}

#[derive(Debug)]
pub(super) struct ShardDone {
    model: String,
    shard: usize,
    replica: usize,
    node: String,
    result: Result<ShardLoaded, String>,
}

/// Load a model.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<ModelStatus, ApiError>")]
pub struct LoadModelMsg(pub LoadModel);

impl Handler<LoadModelMsg> for Coordinator {
    type Result = MessageResult<LoadModelMsg>;

    fn handle(&mut self, msg: LoadModelMsg, ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(self.load(msg.0, ctx))
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
#[rtype(result = "Result<(), ApiError>")]
pub struct UnloadModelMsg(pub String);

impl Handler<UnloadModelMsg> for Coordinator {
    type Result = MessageResult<UnloadModelMsg>;

    fn handle(&mut self, msg: UnloadModelMsg, ctx: &mut Context<Self>) -> Self::Result {
        let Some(rec) = self.models.remove(&msg.0) else {
            return MessageResult(Err(ApiError::not_found(format!("no model {:?}", msg.0))));
        };
        tracing::info!(model = %msg.0, "unloading model");
        self.audit("unload", Some(&msg.0), None, "ok");
        // A model loaded again under this id starts its autoscaling afresh.
        self.scalers.retain(|k, _| k.0 != msg.0);
        self.scaling_up.retain(|k| k.0 != msg.0);
        let nodes = rec.status.placement.assignments.iter().map(|a| a.node.clone()).collect();
        self.publish(ctx);
        self.unload_from(&msg.0, nodes, ctx);
        MessageResult(Ok(()))
    }
}

/// One model's status.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<ModelStatus, ApiError>")]
pub struct ModelStatusMsg(pub String);

impl Handler<ModelStatusMsg> for Coordinator {
    type Result = MessageResult<ModelStatusMsg>;

    fn handle(&mut self, msg: ModelStatusMsg, _: &mut Context<Self>) -> Self::Result {
        MessageResult(
            self.models
                .get(&msg.0)
                .map(|r| self.as_committed(&r.status))
                .ok_or_else(|| ApiError::not_found(format!("no model {:?}", msg.0))),
        )
    }
}

impl Coordinator {
    /// `status`, still `loading` until the view that makes it ready is committed and has
    /// reached the members (a client told "ready" may use any node at once).
    fn as_committed(&self, status: &ModelStatus) -> ModelStatus {
        let mut s = status.clone();
        let delivered = self.node.consensus.delivered();
        let ready =
            |e: &crate::cluster::wire::RegistryEntry| e.status.id == s.id && e.status.status == ModelState::Ready;
        if s.status == ModelState::Ready && !delivered.is_some_and(|v| v.registry.iter().any(ready)) {
            s.status = ModelState::Loading;
        }
        s
    }
}

/// Every model's status.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Vec<ModelStatus>")]
pub struct ListModelsMsg;

impl Handler<ListModelsMsg> for Coordinator {
    type Result = MessageResult<ListModelsMsg>;

    fn handle(&mut self, _: ListModelsMsg, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.models.values().map(|r| self.as_committed(&r.status)).collect())
    }
}

impl Coordinator {
    /// Loads every model of the TOML's `[[models]]` that the registry lacks; one that cannot
    /// be placed yet (too few members) is tried again at the next round, and said once.
    pub(super) fn load_declared(&mut self, ctx: &mut Context<Self>) {
        for m in self.node.cfg.models.clone() {
            if self.models.contains_key(&m.id) {
                continue;
            }
            let req = LoadModel {
                id: m.id.clone(),
                path: m.path.clone(),
                strategy: m.strategy.clone(),
                replication: m.replication,
                placement: None,
                replication_mode: Default::default(),
                autoscaling: m.autoscaling,
            };
            match self.load(req, ctx) {
                Ok(_) => tracing::info!(model = %m.id, "loading a model the configuration declares"),
                Err(e) if self.declared_refused.insert(m.id.clone()) => {
                    tracing::warn!(model = %m.id, error = %e, "a declared model cannot load yet; trying again");
                    self.audit("load", Some(&m.id), None, &format!("declared in the configuration: {e}"));
                }
                Err(_) => {}
            }
        }
    }
}
