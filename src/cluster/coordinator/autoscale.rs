//! Autoscaling rounds: for every ready model with autoscaling, each shard's requests in
//! flight and queued (a batch counted by its rows; summed over its replicas, from the
//! members' heartbeats) go to its
//! [`Scaler`]; a replica is added where the placement rules allow (a live member without
//! that shard, with room, holding the fewest replicas), loaded and warmed before it joins
//! the routes, or the idlest one leaves the routes, drains for an attempt's time and is
//! unloaded, as a migration's source is. Every change is a committed view, an audit event and
//! a metric. One change per shard at a time: a shard with a replica still loading waits.

use std::time::Duration;

use actix::{AsyncContext, Context};

use super::actor::Coordinator;
use crate::cluster::wire::{MemberState, ModelState, ShardProgress};
use crate::plan::Load;
use crate::plan::placement::Assignment;

impl Coordinator {
    /// Requests in flight and queued on the live replicas of `model`'s `shard` (a batch
    /// counts its rows), by node.
    fn ongoing(&self, model: &str, shard: usize) -> Vec<(String, f64)> {
        self.replica_loads(model, shard).map(|(node, load)| (node, load.ongoing)).collect()
    }

    /// Each live replica's load (requests and tokens/s) of `model`'s `shard`, by node.
    fn replica_loads<'a>(&'a self, model: &'a str, shard: usize) -> impl Iterator<Item = (String, Load)> + 'a {
        self.members.values().filter(|m| m.state == MemberState::Up).flat_map(move |m| {
            m.stats.shard_stats.iter().filter(move |s| s.model == model && s.shard == shard).map(|s| {
                let ongoing = s.requests.max(s.in_flight + s.queued) as f64;
                (m.info.id.clone(), Load { ongoing, tokens_per_s: s.tokens_per_s })
            })
        })
    }

    /// One round over every autoscaled model's shards.
    pub(super) fn autoscale_round(&mut self, ctx: &mut Context<Self>) {
        let now = self.epoch.elapsed().as_secs_f64();
        let mut changes = Vec::new();
        for (id, rec) in &self.models {
            let Some(policy) = rec.status.autoscaling else { continue };
            if rec.status.status != ModelState::Ready {
                continue;
            }
            for shard in 0..rec.status.plan.shards.len() {
                let busy = rec.status.progress.iter().any(|p| p.shard == shard && !p.done)
                    || self.migrations.iter().any(|m| m.model == *id && m.shard == shard);
                let serving = rec
                    .status
                    .progress
                    .iter()
                    .filter(|p| p.shard == shard && p.done)
                    .filter(|p| self.members.get(&p.node).is_some_and(|m| m.state == MemberState::Up))
                    .count();
                let load = self.replica_loads(id, shard).fold(Load::default(), |a, (_, l)| Load {
                    ongoing: a.ongoing + l.ongoing,
                    tokens_per_s: a.tokens_per_s + l.tokens_per_s,
                });
                let scaler = self.scalers.entry((id.clone(), shard)).or_default();
                if busy {
                    // A change in progress: the wait for the next starts once it is done.
                    scaler.reset();
                    continue;
                }
                if let Some(want) = scaler.decide(&policy, serving, load, now) {
                    changes.push((id.clone(), shard, serving, want, scaler.load(), policy));
                }
            }
        }
        for (model, shard, from, to, load, policy) in changes {
            let target = policy.target_ongoing_requests;
            let mut why =
                format!("shard {shard}: {from} -> {to} replicas ({:.1} ongoing, target {target} each", load.ongoing);
            if let Some(t) = policy.target_tokens_per_s {
                why.push_str(&format!("; {:.0} tokens/s, target {t} each", load.tokens_per_s));
            }
            why.push(')');
            if to > from {
                self.add_replica(&model, shard, &why, ctx);
            } else if to < from {
                self.remove_replica(&model, shard, &why, ctx);
            }
        }
    }

    /// Places one more replica of `model`'s `shard` and starts loading it.
    fn add_replica(&mut self, model: &str, shard: usize, why: &str, ctx: &mut Context<Self>) {
        let assigned = self.assigned_bytes();
        let Some(rec) = self.models.get(model) else { return };
        let Some(spec) = rec.status.plan.shards.get(shard).cloned() else { return };
        let holders: Vec<&str> =
            rec.status.progress.iter().filter(|p| p.shard == shard).map(|p| p.node.as_str()).collect();
        let held =
            |node: &str| self.models.values().flat_map(|r| &r.status.progress).filter(|p| p.node == node).count();
        let target = self
            .members
            .values()
            .filter(|m| m.state == MemberState::Up && !holders.contains(&m.info.id.as_str()))
            .filter(|m| self.room(&m.info.id, &assigned) >= spec.bytes)
            .min_by_key(|m| (held(&m.info.id), m.info.id.clone()))
            .map(|m| m.info.id.clone());
        let Some(target) = target else {
            tracing::warn!(model, shard, "autoscaling wants another replica; no live node without it has room");
            self.audit("autoscale", Some(model), None, &format!("{why}: no node has room"));
            self.node.metrics.autoscaled(model, "blocked");
            return;
        };
        let replica = rec.status.progress.iter().filter(|p| p.shard == shard).map(|p| p.replica + 1).max().unwrap_or(0);
        let path = rec.status.path.clone();
        if let Some(rec) = self.models.get_mut(model) {
            rec.status.progress.push(ShardProgress::pending(shard, replica, &target, spec.bytes));
            rec.status.placement.assignments.push(Assignment { shard, replica, node: target.clone() });
            rec.status.replication = rec.status.progress.iter().filter(|p| p.shard == shard).count();
        }
        tracing::info!(model, shard, node = %target, "autoscaling up");
        self.audit("autoscale", Some(model), Some(&target), &format!("{why}: loading on {target}"));
        self.node.metrics.autoscaled(model, "up");
        self.scaling_up.insert((model.to_string(), shard, target.clone()));
        self.spawn_load(model, &path, &spec, replica, &target, ctx);
        self.publish(ctx);
    }

    /// Takes the idlest replica of `model`'s `shard` out of the routes, then unloads it once
    /// the requests already routed to it have had an attempt's time to finish.
    fn remove_replica(&mut self, model: &str, shard: usize, why: &str, ctx: &mut Context<Self>) {
        let load = self.ongoing(model, shard);
        let Some(rec) = self.models.get(model) else { return };
        let idlest = rec
            .status
            .progress
            .iter()
            .filter(|p| p.shard == shard && p.done)
            .min_by(|a, b| {
                let of = |n: &str| load.iter().find(|(m, _)| m == n).map_or(0.0, |(_, o)| *o);
                // The idlest; among equals the newest replica.
                of(&a.node).total_cmp(&of(&b.node)).then(b.replica.cmp(&a.replica))
            })
            .map(|p| (p.node.clone(), p.replica));
        let Some((node, replica)) = idlest else { return };
        if let Some(rec) = self.models.get_mut(model) {
            rec.status.progress.retain(|p| !(p.shard == shard && p.replica == replica));
            rec.status.placement.assignments.retain(|a| !(a.shard == shard && a.replica == replica));
            rec.status.replication = rec.status.progress.iter().filter(|p| p.shard == shard).count();
        }
        tracing::info!(model, shard, %node, "autoscaling down");
        self.audit("autoscale", Some(model), Some(&node), &format!("{why}: draining {node}"));
        self.node.metrics.autoscaled(model, "down");
        self.publish(ctx);
        let drain = self.node.cfg.attempt_timeout();
        let model = model.to_string();
        ctx.run_later(drain, move |me, ctx| {
            if me.unload_drained(&model, shard, &node, ctx) {
                me.audit("autoscale", Some(&model), Some(&node), &format!("shard {shard}: drained and unloaded"));
            }
        });
    }

    /// Starts the rounds, twice a second.
    pub(super) fn start_autoscaling(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(Duration::from_millis(500), |me, ctx| me.autoscale_round(ctx));
    }
}
