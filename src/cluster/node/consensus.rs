//! [`Consensus`]: what this node's parts know of the control plane's Raft group, and how they
//! reach its host actor without depending on it: whether this node is in touch with a
//! quorum (control-plane writes are refused with `no_quorum` when it is not), its Raft id,
//! the status `/v1/cluster` shows, and the recipients the host installs for Raft messages
//! from peers and for the coordinator's proposals.

use std::sync::atomic::Ordering;
use std::sync::{OnceLock, RwLock};

use actix::{Message, Recipient};
use serde::{Deserialize, Serialize};

use crate::cluster::wire::{ApiError, ClusterView};

/// A Raft message from a peer (one of the `RAFT_*` names of [`crate::cluster::wire::names`]),
/// answered with the encoded reply.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<Vec<u8>, String>")]
pub struct RaftCall {
    /// The message name.
    pub name: String,
    /// The encoded request.
    pub payload: Vec<u8>,
}

/// The coordinator's proposal: `view` (its members and registry) as the next committed state
/// of the control plane. Answered once committed, or with `no_quorum`.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<(), ApiError>")]
pub struct Propose(pub ClusterView);

/// The Raft group as this node sees it (`raft` in `GET /v1/cluster`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RaftStatus {
    /// This node's Raft id.
    pub id: u64,
    /// `leader`, `follower`, `candidate`, `learner` or `shutdown`.
    pub role: String,
    /// The current term.
    pub term: u64,
    /// The leader's node id, when one is known.
    pub leader: Option<String>,
    /// Whether this node is in touch with a quorum (a leader acknowledged by a majority of
    /// voters, or a follower of such a leader, recently). Control-plane writes need it.
    pub quorum: bool,
    /// Whether it had a quorum and lost it (a node still joining the group has none and is
    /// not cut off: its writes go to the coordinator, which decides).
    pub cut_off: bool,
    /// The voters' node ids.
    pub voters: Vec<String>,
    /// The learners' node ids.
    pub learners: Vec<String>,
    /// The last log index appended here.
    pub last_log_index: Option<u64>,
    /// The last log index applied to the registry here.
    pub last_applied: Option<u64>,
}

/// This node's part in the control plane.
#[derive(Default)]
pub struct Consensus {
    raft_id: OnceLock<u64>,
    status: RwLock<RaftStatus>,
    delivered: RwLock<Option<std::sync::Arc<ClusterView>>>,
    proposed: std::sync::atomic::AtomicU64,
    calls: OnceLock<Recipient<RaftCall>>,
    proposals: OnceLock<Recipient<Propose>>,
}

impl Consensus {
    /// This node's Raft id (0 before the host started).
    pub fn raft_id(&self) -> u64 {
        self.raft_id.get().copied().unwrap_or(0)
    }

    /// Whether this node is in touch with a quorum now.
    pub fn quorum(&self) -> bool {
        self.status.read().unwrap_or_else(|e| e.into_inner()).quorum
    }

    /// Whether this node had a quorum and lost it ([`RaftStatus::cut_off`]).
    pub fn cut_off(&self) -> bool {
        self.status.read().unwrap_or_else(|e| e.into_inner()).cut_off
    }

    /// The answer to a control-plane write without a quorum.
    pub fn no_quorum(&self) -> ApiError {
        ApiError::unavailable(
            "no_quorum",
            "this node is cut off from a majority of the control plane's voters; control-plane changes are refused until it is back (inference goes on)",
        )
    }

    /// `Ok` when a control-plane write may go ahead.
    pub fn check_quorum(&self) -> Result<(), ApiError> {
        if self.quorum() { Ok(()) } else { Err(self.no_quorum()) }
    }

    /// The status as the host last published it.
    pub fn status(&self) -> RaftStatus {
        self.status.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Installs the host (set once, by the Raft host when it starts).
    pub fn install(&self, raft_id: u64, calls: Recipient<RaftCall>, proposals: Recipient<Propose>) {
        let _ = self.raft_id.set(raft_id);
        let _ = self.calls.set(calls);
        let _ = self.proposals.set(proposals);
    }

    /// Publishes the host's view of the group.
    pub fn publish(&self, status: RaftStatus) {
        *self.status.write().unwrap_or_else(|e| e.into_inner()) = status;
    }

    /// The last committed view the leader has also delivered to every member it reaches
    /// (what a client may be told is in force everywhere).
    pub fn delivered(&self) -> Option<std::sync::Arc<ClusterView>> {
        self.delivered.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Records a committed view as delivered.
    pub fn set_delivered(&self, view: ClusterView) {
        *self.delivered.write().unwrap_or_else(|e| e.into_inner()) = Some(std::sync::Arc::new(view));
    }

    /// Hands a Raft message from a peer to the host.
    pub async fn call(&self, name: &str, payload: Vec<u8>) -> Result<Vec<u8>, String> {
        let host = self.calls.get().ok_or("the Raft host is starting")?;
        host.send(RaftCall { name: name.to_string(), payload }).await.map_err(|e| e.to_string())?
    }

    /// The highest view version this node has proposed: a coordinator started again on it
    /// (in the same term) numbers its views above it, so a proposal of the one before that
    /// commits late can never replace a newer view.
    pub fn proposed(&self) -> u64 {
        self.proposed.load(Ordering::Acquire)
    }

    /// Proposes `view` as the next committed state; waits for the commit.
    pub async fn propose(&self, view: ClusterView) -> Result<(), ApiError> {
        self.proposed.fetch_max(view.version, Ordering::AcqRel);
        let host = self.proposals.get().ok_or_else(|| self.no_quorum())?;
        host.send(Propose(view)).await.map_err(|e| ApiError::new(500, "internal", e.to_string()))?
    }
}
