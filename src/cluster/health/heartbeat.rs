//! [`HeartbeatSender`] (on every member): sends heartbeats with the node's stats to the
//! coordinator on a connection of its own, from an arbiter of its own, adopts the newer views
//! the acks carry, and joins again when the coordinator no longer knows this node. When the
//! coordinator falls silent it asks the failover actor to take over, if this node is the
//! successor (see [`crate::cluster::coordinator::succession`]).

use std::time::{Duration, Instant};

use actix::{Actor, ActorFutureExt, Arbiter, AsyncContext, Context, Supervisor};

use mlmf_actors::peer::PeerError;

use crate::cluster::coordinator::succession::{Succession, after_silence, successor};
use crate::cluster::joining::join;
use crate::cluster::node::{Node, RoleChange};
use crate::cluster::wire::Heartbeat;

use super::stats::StatsSampler;

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

impl HeartbeatSender {
    /// Starts a sender for `node` on an arbiter of its own, supervised (a member's job; also
    /// a coordinator's that stepped down).
    pub fn start_for(node: &Node) {
        let n = node.clone();
        Supervisor::start_in_arbiter(&Arbiter::new().handle(), move |_| HeartbeatSender::new(n.clone()));
    }

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
        let Some(target) = successor(&view, &self.dead) else { return };
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
        // The coordinator the view names, not a successor still taking over.
        let named = target == view.coordinator;
        self.busy = true;
        let fut = async move {
            match node.links.ask_heartbeat(&addr, &hb, interval * 2).await {
                Ok(Ok(ack)) => {
                    node.balancers.member_cpu.write().unwrap_or_else(|e| e.into_inner()).extend(ack.cpu);
                    if let Some(view) = ack.view {
                        node.set_view(view);
                    }
                    Answer::Answered
                }
                Ok(Err(e)) if e.status == 404 && !node.leaving.load(std::sync::atomic::Ordering::Acquire) => {
                    tracing::warn!("the coordinator does not know this node; joining again");
                    if let Err(e) = join(&node, &addr).await {
                        tracing::warn!(error = %e, "join failed");
                    }
                    Answer::Answered
                }
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "heartbeat refused");
                    Answer::Refused
                }
                // The coordinator itself no longer coordinates: it restarted (at the same
                // address, before anyone took it for dead) and has no state. As good as dead:
                // a successor takes over, and it joins that one.
                Err(PeerError::Remote(e)) if named && e.contains("is not the coordinator") => {
                    tracing::debug!(error = %e, "the coordinator lost its role (restarted?)");
                    Answer::Silent
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
                        me.last_ok = Instant::now();
                        me.silent = 0;
                        match after_silence(&view, &mut me.dead, &target, &me.node.id) {
                            Succession::TakeOver => me
                                .node
                                .role
                                .change(RoleChange::TakeOver { view: (*view).clone(), dead: me.dead.clone() }),
                            Succession::Follow(next) => tracing::warn!(successor = ?next, "following the successor"),
                        }
                    }
                }
            }
        }));
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
