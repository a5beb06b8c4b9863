//! The shard map kept whole: re-placing the replicas a down node held, live migration
//! (load on the target, switch routes, drain, unload), rebalancing rounds after joins, and
//! the memory each node has left for more replicas.

use std::collections::HashMap;
use std::time::Duration;

use actix::{AsyncContext, Context, Handler, Message, MessageResult};

use super::actor::Coordinator;
use crate::cluster::alerts::Severity;
use crate::cluster::wire::{ApiError, MemberState, Migrate, ModelState, ModelStatus, ShardProgress};

impl Coordinator {
    /// Bytes of the replicas assigned to each node (every model; loaded, loading or moving).
    pub(super) fn assigned_bytes(&self) -> HashMap<String, u64> {
        let mut bytes: HashMap<String, u64> = HashMap::new();
        for p in self.models.values().flat_map(|r| r.status.progress.iter()) {
            *bytes.entry(p.node.clone()).or_default() += p.total;
        }
        bytes
    }

    /// What a member's offered memory has left for another shard.
    pub(super) fn room(&self, node: &str, assigned: &HashMap<String, u64>) -> u64 {
        let offered = self.members.get(node).map_or(0, |m| m.info.memory_bytes);
        offered.saturating_sub(assigned.get(node).copied().unwrap_or(0))
    }

    /// Places again the replicas a down node held, on live nodes without that shard, until
    /// every shard has its replication again (as far as nodes allow).
    pub(super) fn replace_replicas_of(&mut self, dead: &str, ctx: &mut Context<Self>) {
        // Down for the whole grace period, not merely down again after coming back within it
        // (the timer of an earlier down must not move anything for a later one): a flapping
        // node causes no reshuffle.
        let grace =
            Duration::from_millis(self.node.cfg.health.replace_after_ms).saturating_sub(Duration::from_millis(5));
        let due = self.members.get(dead).is_some_and(|m| match m.state {
            MemberState::Leaving => true,
            MemberState::Down => m.down_since.is_some_and(|t| t.elapsed() >= grace),
            MemberState::Up | MemberState::Suspect => false,
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
                let Some(bytes) = rec.status.plan.shards.get(shard).map(|s| s.bytes) else { continue };
                let target = self
                    .members
                    .values()
                    .filter(|m| m.state == MemberState::Up && !holders.contains(&m.info.id.as_str()))
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
                let Some(spec) = rec.status.plan.shards.get(shard).cloned() else { continue };
                loads.push((id.clone(), rec.status.path.clone(), spec, replica, target));
            }
        }
        for (id, path, spec, replica, target) in loads {
            if let Some(rec) = self.models.get_mut(&id) {
                rec.status.progress.retain(|p| !(p.shard == spec.id && p.replica == replica));
                rec.status.progress.push(ShardProgress::pending(spec.id, replica, &target, spec.bytes));
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

    pub(super) fn migrate(&mut self, m: Migrate, ctx: &mut Context<Self>) -> Result<ModelStatus, ApiError> {
        let rec = self.models.get(&m.model).ok_or_else(|| ApiError::not_found(format!("no model {:?}", m.model)))?;
        if rec.status.status != ModelState::Ready {
            return Err(ApiError::new(409, "model_not_ready", format!("model {:?} is not ready", m.model)));
        }
        let spec = rec.status.plan.shards.get(m.shard).cloned().ok_or_else(|| {
            ApiError::bad_request("invalid_shard", format!("model {:?} has no shard {}", m.model, m.shard))
        })?;
        let source =
            rec.status.progress.iter().find(|p| p.shard == m.shard && p.node == m.from && p.done).ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_source",
                    format!("{} holds no loaded replica of shard {}", m.from, m.shard),
                )
            })?;
        let replica = source.replica;
        if rec.status.progress.iter().any(|p| p.shard == m.shard && p.node == m.to) {
            return Err(ApiError::bad_request("invalid_target", format!("{} already holds shard {}", m.to, m.shard)));
        }
        if self.members.get(&m.to).is_none_or(|t| t.state != MemberState::Up) {
            return Err(ApiError::bad_request("invalid_target", format!("{} is not a live member", m.to)));
        }
        let room = self.room(&m.to, &self.assigned_bytes());
        if room < spec.bytes {
            return Err(ApiError::new(
                409,
                "insufficient_memory",
                format!("{} has {room} bytes left for shards; shard {} needs {}", m.to, m.shard, spec.bytes),
            ));
        }
        if self.migrations.iter().any(|x| x.model == m.model && x.shard == m.shard) {
            return Err(ApiError::new(409, "migration_in_progress", format!("shard {} is already moving", m.shard)));
        }
        let path = rec.status.path.clone();
        if let Some(rec) = self.models.get_mut(&m.model) {
            rec.status.progress.push(ShardProgress::pending(m.shard, replica, &m.to, spec.bytes));
        }
        tracing::info!(model = %m.model, shard = m.shard, from = %m.from, to = %m.to, "migrating");
        self.audit("migrate", Some(&m.model), Some(&m.to), &format!("shard {} from {}: loading", m.shard, m.from));
        self.migrations.push(m.clone());
        self.spawn_load(&m.model, &path, &spec, replica, &m.to, ctx);
        self.models.get(&m.model).map(|r| r.status.clone()).ok_or_else(|| ApiError::not_found("gone"))
    }

    /// The target of a migration has loaded: switch routes to it, drain, unload the source.
    pub(super) fn finish_migration(&mut self, model: &str, shard: usize, to: &str, ctx: &mut Context<Self>) {
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
            if !me.unload_drained(&model, shard, &from, ctx) {
                return;
            }
            me.audit("migrate", Some(&model), Some(&from), &format!("shard {shard}: drained and unloaded"));
            me.notice(
                "shard_migrated",
                &format!("{model}/{shard}"),
                format!("shard {shard} of {model} moved from {from} to {to}; the source is drained and unloaded"),
            );
        });
    }

    /// Unloads a drained replica of `model`'s `shard` from `node`, unless the registry has
    /// placed that shard on `node` again meanwhile (a replica of a node that died while this
    /// one drained is re-placed where the shard still is, and stays): whether it unloaded.
    pub(super) fn unload_drained(&mut self, model: &str, shard: usize, node: &str, ctx: &mut Context<Self>) -> bool {
        let placed_again = self
            .models
            .get(model)
            .is_some_and(|r| r.status.progress.iter().any(|p| p.shard == shard && p.node == node));
        if placed_again {
            self.audit("drain", Some(model), Some(node), &format!("shard {shard}: placed here again; kept"));
            return false;
        }
        self.unload_shard_from(model, Some(shard), vec![node.to_string()], ctx);
        true
    }

    /// One rebalancing round: a bounded number of migrations from the fullest nodes to the
    /// emptiest (a node that joined takes replicas a few at a time).
    pub(super) fn rebalance_round(&mut self, ctx: &mut Context<Self>) {
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
            self.members.values().filter(|m| m.state == MemberState::Up).map(|m| m.info.id.clone()).collect();
        // Only balanced models move: one still missing replicas is re-placement's business.
        let moves = crate::plan::rebalance::rebalance(&replicas, &live, self.node.cfg.rebalance_moves);
        // Replica counts even out only where memory allows: a move to a node without room is
        // dropped, and a round left with none ends the rebalancing (until the next join).
        let mut assigned = self.assigned_bytes();
        let moves: Vec<_> = moves
            .into_iter()
            .filter(|mv| {
                let bytes =
                    self.models.get(&mv.model).and_then(|r| r.status.plan.shards.get(mv.shard)).map(|s| s.bytes);
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
}

/// Move a replica.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<ModelStatus, ApiError>")]
pub struct MigrateMsg(pub Migrate);

impl Handler<MigrateMsg> for Coordinator {
    type Result = MessageResult<MigrateMsg>;

    fn handle(&mut self, msg: MigrateMsg, ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(self.migrate(msg.0, ctx))
    }
}
