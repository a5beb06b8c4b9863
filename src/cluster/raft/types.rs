//! The control plane's Raft types: a member is its Raft id and a [`RaftPeer`] (node id and
//! address), a log entry's data is a [`Command`], and a snapshot is the registry itself
//! ([`RegistrySnapshot`]).

use serde::{Deserialize, Serialize};

use crate::cluster::wire::ClusterView;

/// A member of the Raft group as the log records it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftPeer {
    /// Its node id.
    pub id: String,
    /// Its `host:port`.
    pub addr: String,
}

/// What a log entry changes: the coordinator's members and model registry as a whole, at
/// one version of its term (each join, leave, down and up, load, unload, re-placement,
/// migration and rebalancing move is one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// The next view.
    View(Box<ClusterView>),
}

/// The state machine as a snapshot: the last committed view.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RegistrySnapshot {
    /// The view, once one was committed.
    pub view: Option<ClusterView>,
}

openraft::declare_raft_types!(
    /// The Raft type configuration of the control plane.
    pub TypeConfig:
        D = Command,
        R = (),
        NodeId = u64,
        Node = RaftPeer,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = RegistrySnapshot,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A log entry.
pub type Entry = openraft::Entry<TypeConfig>;
/// A storage error.
pub type StorageError = openraft::StorageError<u64>;
/// The Raft handle.
pub type Raft = openraft::Raft<TypeConfig>;

/// A storage error from anything displayable.
pub fn io_error(verb: openraft::ErrorVerb, e: impl std::fmt::Display) -> StorageError {
    openraft::StorageIOError::new(openraft::ErrorSubject::Store, verb, openraft::AnyError::error(e)).into()
}
