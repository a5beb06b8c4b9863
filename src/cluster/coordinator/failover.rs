//! [`Failover`]: the actor that changes this node's role in the control plane, as the Raft
//! host asks: it starts a coordinator when this node leads the Raft group with a quorum (one
//! rebuilt from the last committed view, in the Raft term it leads), and stops it when this
//! node no longer leads or is cut off from the majority (the node's heartbeat sender then
//! heartbeats the coordinator its view names, as every member's does). The Raft host asks
//! with a [`RoleChange`] sent to the recipient this actor installs in the node's
//! [`ControlRole`](crate::cluster::node::ControlRole).

use actix::{Actor, Addr, Arbiter, Context, Handler};

use crate::cluster::joining::node_info;
use crate::cluster::node::{Node, RoleChange};

use super::actor::{Coordinator, StepDown};

/// Changes this node's role; holds its coordinator actor while it coordinates.
pub struct Failover {
    node: Node,
    coordinator: Option<Addr<Coordinator>>,
}

impl Failover {
    /// Starts the failover actor of `node` on the current arbiter.
    pub fn start_for(node: &Node) -> Addr<Failover> {
        let addr = Failover { node: node.clone(), coordinator: None }.start();
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
            RoleChange::Lead { view, term } => {
                let me = node_info(&self.node);
                self.coordinate(move |n| Coordinator::from_view(n, me, &view, term));
            }
            RoleChange::StepDown => {
                self.node.role.stop_coordinating();
                if let Some(c) = self.coordinator.take() {
                    c.do_send(StepDown);
                }
            }
        }
    }
}
