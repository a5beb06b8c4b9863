//! [`HeartbeatSender`] (on every member): sends heartbeats with the node's stats to the
//! coordinator its view names, on a connection of its own, from an arbiter of its own,
//! adopts the newer views the acks carry, and joins again when the coordinator no longer
//! knows this node. Who coordinates is the Raft group's business
//! ([`crate::cluster::raft`]): a silent coordinator only means no acks until the new
//! leader's first committed view names another.

use std::time::Duration;

use actix::{Actor, ActorFutureExt, Arbiter, AsyncContext, Context, Supervisor};

use crate::cluster::joining::join;
use crate::cluster::node::Node;
use crate::cluster::wire::Heartbeat;

use super::stats::StatsSampler;

/// Sends heartbeats to the coordinator and adopts the newer views it answers with; joins
/// again when the coordinator no longer knows this node.
pub struct HeartbeatSender {
    node: Node,
    seq: u64,
    sampler: StatsSampler,
    busy: bool,
}

impl HeartbeatSender {
    /// Starts a sender for `node` on an arbiter of its own, supervised (a member's job; also
    /// a coordinator's that stepped down).
    pub fn start_for(node: &Node) {
        let n = node.clone();
        Supervisor::start_in_arbiter(&Arbiter::new().handle(), move |_| HeartbeatSender::new(n.clone()));
    }

    /// A sender from `node` to the coordinator its view names.
    pub fn new(node: Node) -> HeartbeatSender {
        HeartbeatSender { node, seq: 0, sampler: StatsSampler::default(), busy: false }
    }

    fn beat(&mut self, ctx: &mut Context<Self>) {
        // The coordinator does not heartbeat itself.
        if self.busy || self.node.is_coordinator() {
            return;
        }
        let view = self.node.view();
        let Some(addr) = view.addr_of(&view.coordinator).map(str::to_string) else { return };
        if addr == self.node.addr {
            return;
        }
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
            match node.links.ask_heartbeat(&addr, &hb, interval * 2).await {
                Ok(Ok(ack)) => {
                    node.balancers.member_cpu.write().unwrap_or_else(|e| e.into_inner()).extend(ack.cpu);
                    if let Some(view) = ack.view {
                        node.set_view(view);
                    }
                }
                Ok(Err(e)) if e.status == 404 && !node.leaving.load(std::sync::atomic::Ordering::Acquire) => {
                    tracing::warn!("the coordinator does not know this node; joining again");
                    if let Err(e) = join(&node, &addr).await {
                        tracing::warn!(error = %e, "join failed");
                    }
                }
                Ok(Err(e)) => tracing::debug!(error = %e, "heartbeat refused"),
                Err(e) => tracing::debug!(error = %e, "heartbeat failed"),
            }
        };
        ctx.spawn(actix::fut::wrap_future::<_, Self>(fut).map(|(), me, _| me.busy = false));
    }
}

/// Restarted by its `Supervisor` if it stops.
impl actix::Supervised for HeartbeatSender {}

impl Actor for HeartbeatSender {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let interval = Duration::from_millis(self.node.cfg.health.heartbeat_interval_ms);
        ctx.run_interval(interval, |me, ctx| me.beat(ctx));
    }
}
