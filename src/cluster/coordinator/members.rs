//! Membership: joins, heartbeats and their stats checked against the alert rules, state
//! changes from the health monitor (down, up, flapping), graceful leaves, removal, and the
//! cluster status the API shows.

use std::time::{Duration, Instant};

use actix::{AsyncContext, Context, Handler, Message, MessageResult, ResponseFuture};

use super::actor::{Coordinator, Member};
use crate::cluster::alerts::Severity;
use crate::cluster::health::{Beat, Forget, MemberStateChanged, Phis};
use crate::cluster::wire::control::shards_on;
use crate::cluster::wire::{
    ApiError, ClusterStatus, ClusterView, Heartbeat, HeartbeatAck, Join, Leave, MemberState, NodeStats, NodeStatus,
    NodeView,
};

impl Coordinator {
    /// Checks a member's heartbeat stats against the alert thresholds.
    pub(super) fn check_stats(&mut self, id: &str, previous: &NodeStats) {
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
}

impl Coordinator {
    /// A known member joined again holding only `held`: it restarted (or lost replicas), so
    /// every replica the registry places on it that it no longer holds leaves the routes and
    /// is loaded onto it again.
    fn reload_missing(&mut self, node: &str, held: &[(String, usize)], ctx: &mut Context<Self>) {
        let mut loads = Vec::new();
        for (id, rec) in self.models.iter_mut() {
            for p in rec.status.progress.iter_mut().filter(|p| p.node == node && p.done) {
                let Some(spec) = rec.status.plan.shards.get(p.shard) else { continue };
                if !held.iter().any(|(m, s)| m == id && *s == p.shard) {
                    p.done = false;
                    p.loaded = 0;
                    loads.push((id.clone(), rec.status.path.clone(), spec.clone(), p.replica));
                }
            }
        }
        for (id, path, spec, replica) in loads {
            tracing::warn!(model = %id, shard = spec.id, node, "a rejoined node lost its replica; loading it again");
            self.audit(
                "replace",
                Some(&id),
                Some(node),
                &format!("shard {} lost in a restart; loading again", spec.id),
            );
            self.spawn_load(&id, &path, &spec, replica, node, ctx);
        }
    }
}

/// A node asks to join.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<ClusterView, ApiError>")]
pub struct JoinMsg(pub Join);

impl Handler<JoinMsg> for Coordinator {
    type Result = MessageResult<JoinMsg>;

    fn handle(&mut self, JoinMsg(join): JoinMsg, ctx: &mut Context<Self>) -> Self::Result {
        let info = join.node;
        if let Some(m) = self.members.get(&info.id)
            && m.info.addr != info.addr
            && m.state != MemberState::Down
        {
            return MessageResult(Err(ApiError::new(
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
        let id = info.id.clone();
        self.members.insert(id.clone(), Member::new(info));
        if known {
            self.reload_missing(&id, &join.held, ctx);
        }
        self.publish_soon(ctx);
        MessageResult(Ok(self.view()))
    }
}

/// A heartbeat arrived.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<HeartbeatAck, ApiError>")]
pub struct HeartbeatMsg(pub Heartbeat);

impl Handler<HeartbeatMsg> for Coordinator {
    type Result = MessageResult<HeartbeatMsg>;

    fn handle(&mut self, HeartbeatMsg(hb): HeartbeatMsg, _: &mut Context<Self>) -> Self::Result {
        if !self.members.contains_key(&hb.node) {
            return MessageResult(Err(ApiError::not_found(format!("unknown node {:?}; join again", hb.node))));
        }
        let Some(m) = self.members.get_mut(&hb.node) else {
            return MessageResult(Err(ApiError::not_found(format!("unknown node {:?}; join again", hb.node))));
        };
        let previous = std::mem::replace(&mut m.stats, hb.stats);
        self.check_stats(&hb.node, &previous);
        if let Some(h) = &self.health {
            h.do_send(Beat { node: hb.node.clone() });
        }
        // A member behind the committed view gets it with the ack (Raft delivers it too).
        let committed = self.node.view();
        let view = (hb.view_version < committed.version).then(|| (*committed).clone());
        let cpu: Vec<(String, f32)> = self.members.values().map(|m| (m.info.id.clone(), m.stats.cpu_percent)).collect();
        self.node.balancers.member_cpu.write().unwrap_or_else(|e| e.into_inner()).extend(cpu.iter().cloned());
        MessageResult(Ok(HeartbeatAck { view, cpu }))
    }
}

impl Handler<MemberStateChanged> for Coordinator {
    type Result = ();

    fn handle(&mut self, msg: MemberStateChanged, ctx: &mut Context<Self>) {
        let Some(m) = self.members.get_mut(&msg.node) else { return };
        if m.state == msg.state || (m.state == MemberState::Leaving && msg.state != MemberState::Down) {
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
            MemberState::Down => {
                m.down_since = Some(now);
                m.downs.push_back(now);
                while m.downs.front().is_some_and(|t| now.duration_since(*t) > window) {
                    m.downs.pop_front();
                }
                if flap_count > 0 && m.downs.len() >= flap_count {
                    flapping = Some(m.downs.len());
                }
            }
            MemberState::Up => m.down_since = None,
            MemberState::Suspect | MemberState::Leaving => {}
        }
        let op = match msg.state {
            MemberState::Down => "down",
            MemberState::Up => "up",
            MemberState::Suspect => "suspect",
            MemberState::Leaving => "leaving",
        };
        self.audit(op, None, Some(&msg.node), &format!("phi {:.2}", msg.phi));
        match msg.state {
            MemberState::Down => self.fire(
                "node_down",
                &msg.node,
                Severity::Critical,
                format!("node {} is down (phi {:.1})", msg.node, msg.phi),
            ),
            MemberState::Up => self.resolve("node_down", &msg.node),
            MemberState::Suspect | MemberState::Leaving => {}
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
        if msg.state == MemberState::Up && was == MemberState::Down {
            // Flapping is over once a whole window passes without another down.
            let node = msg.node.clone();
            ctx.run_later(window, move |me, _| {
                let quiet = me
                    .members
                    .get(&node)
                    .is_none_or(|m| m.state == MemberState::Up && m.downs.back().is_none_or(|t| t.elapsed() >= window));
                if quiet {
                    me.resolve("node_flapping", &node);
                }
            });
        }
        self.publish(ctx);
        match msg.state {
            MemberState::Down => {
                // Wait out a flap before moving anything.
                let node = msg.node.clone();
                let after = Duration::from_millis(self.node.cfg.health.replace_after_ms);
                ctx.run_later(after, move |me, ctx| me.replace_replicas_of(&node, ctx));
            }
            MemberState::Up if was == MemberState::Down => {
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

/// A node leaves gracefully.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<(), ApiError>")]
pub struct LeaveMsg(pub Leave);

impl Handler<LeaveMsg> for Coordinator {
    type Result = MessageResult<LeaveMsg>;

    fn handle(&mut self, LeaveMsg(leave): LeaveMsg, ctx: &mut Context<Self>) -> Self::Result {
        if leave.node == self.node.id {
            return MessageResult(Err(ApiError::bad_request("coordinator", "the coordinator cannot hand itself off")));
        }
        let Some(m) = self.members.get_mut(&leave.node) else {
            return MessageResult(Err(ApiError::not_found(format!("unknown node {:?}", leave.node))));
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
        m.state = MemberState::Leaving;
        tracing::info!(node = %leave.node, "node leaving; handing off its replicas");
        self.audit("leave", None, Some(&leave.node), "handing off");
        self.publish(ctx);
        self.replace_replicas_of(&leave.node, ctx);
        MessageResult(Ok(()))
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
                let shards = shards_on(self.models.values().map(|r| &r.status), &m.info.id);
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
