//! [`HealthMonitor`] (on the coordinator): feeds every member's heartbeats to a
//! [`PhiAccrual`] detector, checks phi on a tick, and reports each change of a member's
//! state (up, suspect, down, up again) to its subscriber, the coordinator.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use actix::{Actor, AsyncContext, Context, Handler, Message, Recipient};

use crate::cluster::wire::MemberState;
use crate::config::HealthConfig;

use super::phi::{PhiAccrual, state_of};

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
pub struct MemberStateChanged {
    /// Node id.
    pub node: String,
    /// New state.
    pub state: MemberState,
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
    watched: HashMap<String, (PhiAccrual, MemberState)>,
    subscriber: Recipient<MemberStateChanged>,
}

impl HealthMonitor {
    /// A monitor reporting to `subscriber`.
    pub fn new(cfg: HealthConfig, subscriber: Recipient<MemberStateChanged>) -> HealthMonitor {
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
            if next != *state && !(*state == MemberState::Down && next != MemberState::Down) {
                tracing::warn!(%node, phi, from = ?*state, to = ?next, "node state changed");
                *state = next;
                self.subscriber.do_send(MemberStateChanged { node: node.clone(), state: next, phi });
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
            self.watched.entry(msg.node.clone()).or_insert_with(|| (PhiAccrual::new(&cfg), MemberState::Up));
        if fresh {
            self.subscriber.do_send(MemberStateChanged { node: msg.node.clone(), state: MemberState::Up, phi: 0.0 });
        }
        if *state == MemberState::Down {
            det.restart(now);
        } else {
            det.heartbeat(now);
        }
        if *state != MemberState::Up {
            tracing::info!(node = %msg.node, "node is up again");
            *state = MemberState::Up;
            self.subscriber.do_send(MemberStateChanged { node: msg.node, state: MemberState::Up, phi: 0.0 });
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

/// Restarted by its `Supervisor` if it stops; detectors start again from the next heartbeat.
impl actix::Supervised for HealthMonitor {}
