//! [`ControlRole`]: whether this node coordinates the cluster, and how its parts reach the
//! coordinator actor and the failover logic without depending on them: the coordinator
//! answers [`ControlMessage`]s through a recipient installed here, and the Raft host, which
//! finds this node's role must change (it became the leader with a quorum, or lost either),
//! sends a [`RoleChange`] to the recipient the failover actor installed.

use std::sync::{OnceLock, RwLock};

use actix::{Message, Recipient};

use crate::cluster::wire::ClusterView;

/// A control-plane message for the coordinator on this node: its stable wire name and its
/// encoded payload; answered with the encoded reply.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<Vec<u8>, String>")]
pub struct ControlMessage {
    /// One of the control names of [`crate::cluster::wire::names`].
    pub name: String,
    /// The encoded request.
    pub payload: Vec<u8>,
}

/// A change of this node's role, carried out by the failover actor.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub enum RoleChange {
    /// This node leads the Raft group, with a quorum: coordinate from the last committed
    /// view's members and registry, in Raft term `term`.
    Lead {
        /// The last committed view.
        view: ClusterView,
        /// The Raft term it leads.
        term: u64,
    },
    /// This node no longer leads, or is cut off from the majority: stop coordinating and
    /// heartbeat as a member.
    StepDown,
}

/// This node's place in the control plane.
#[derive(Default)]
pub struct ControlRole {
    coordinator: RwLock<Option<Recipient<ControlMessage>>>,
    changes: OnceLock<Recipient<RoleChange>>,
}

impl ControlRole {
    /// The coordinator actor, when this node coordinates.
    pub fn coordinator(&self) -> Option<Recipient<ControlMessage>> {
        self.coordinator.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether this node is the coordinator.
    pub fn is_coordinator(&self) -> bool {
        self.coordinator.read().unwrap_or_else(|e| e.into_inner()).is_some()
    }

    /// Installs the coordinator `start` starts, unless this node coordinates already
    /// (checked and set under one lock, so two takeovers never race). Whether it started.
    pub fn become_coordinator(&self, start: impl FnOnce() -> Recipient<ControlMessage>) -> bool {
        let mut held = self.coordinator.write().unwrap_or_else(|e| e.into_inner());
        if held.is_some() {
            return false;
        }
        *held = Some(start());
        true
    }

    /// Stops routing control messages to this node's coordinator; whether it had one.
    pub fn stop_coordinating(&self) -> bool {
        self.coordinator.write().unwrap_or_else(|e| e.into_inner()).take().is_some()
    }

    /// Where [`RoleChange`]s go (set once, by the failover actor).
    pub fn on_change(&self, recipient: Recipient<RoleChange>) {
        let _ = self.changes.set(recipient);
    }

    /// Asks the failover actor to carry out `change`.
    pub fn change(&self, change: RoleChange) {
        match self.changes.get() {
            Some(r) => r.do_send(change),
            None => tracing::error!(?change, "no failover actor to change this node's role"),
        }
    }
}
