//! [`Failover`]: the actor that changes this node's role in the control plane. It starts the
//! first coordinator of a new cluster, takes over when the heartbeat sender finds the
//! coordinator dead and this node its [`successor`](super::succession::successor) (a
//! coordinator rebuilt from the dead one's last view, in a new term), and steps down when a
//! view of a newer term shows that another node took over while this one was away (it then
//! heartbeats as a member). Lower parts ask for these changes with a
//! [`RoleChange`] sent to the recipient this actor installs in the node's
//! [`ControlRole`](crate::cluster::node::ControlRole).

use actix::{Actor, Addr, Arbiter, Context, Handler};

use crate::cluster::health::HeartbeatSender;
use crate::cluster::node::{Node, RoleChange};
use crate::cluster::wire::NodeInfo;

use super::actor::{Coordinator, StepDown};

/// Changes this node's role; holds its coordinator actor while it coordinates.
pub struct Failover {
    node: Node,
    coordinator: Option<Addr<Coordinator>>,
}

impl Failover {
    /// Starts the failover actor of `node` on the current arbiter. With `first`, this node
    /// is the first coordinator of a new cluster (it coordinates before this returns).
    pub fn start_for(node: &Node, first: Option<NodeInfo>) -> Addr<Failover> {
        let mut failover = Failover { node: node.clone(), coordinator: None };
        if let Some(me) = first {
            failover.coordinate(move |n| Coordinator::new(n, me));
        }
        let addr = failover.start();
        node.role.on_change(addr.clone().recipient());
        addr
    }

    /// Starts the coordinator `make` builds on an arbiter of its own, unless this node
    /// coordinates already.
    fn coordinate(&mut self, make: impl FnOnce(Node) -> Coordinator + Send + 'static) {
        let node = self.node.clone();
        let mut started = None;
        self.node.role.become_coordinator(|| {
            let addr = Coordinator::start_in_arbiter(&Arbiter::new().handle(), move |_| make(node));
            started = Some(addr.clone());
            addr.recipient()
        });
        match started {
            Some(addr) => self.coordinator = Some(addr),
            None => tracing::warn!("this node coordinates already"),
        }
    }
}

impl Actor for Failover {
    type Context = Context<Self>;
}

impl Handler<RoleChange> for Failover {
    type Result = ();

    fn handle(&mut self, change: RoleChange, _: &mut Context<Self>) {
        match change {
            RoleChange::TakeOver { view, dead } => {
                self.coordinate(move |n| Coordinator::from_view(n, &view, dead));
            }
            RoleChange::StepDown => {
                if let Some(c) = self.coordinator.take() {
                    c.do_send(StepDown);
                }
                HeartbeatSender::start_for(&self.node);
            }
        }
    }
}
