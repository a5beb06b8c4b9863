//! [`Network`]: Raft's messages to peers over `/v1/peer` (on the connections reserved for
//! heartbeats, so an election never queues behind a tensor), encoded as the wire encodes
//! everything, with a deadline each. Every answer a peer gives is recorded in [`Contacts`],
//! which is how a leader knows it still reaches a majority; the leader tells followers so
//! with each append-entries, so a follower of a leader cut off from the majority knows it
//! has no quorum either. Each message names the Raft id it is for, and a node answers only
//! those meant for its own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::error::{
    Fatal, InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, ReplicationClosed, StreamingError,
    Unreachable,
};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, SnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{RaftNetwork, RaftNetworkFactory, Snapshot, Vote};
use serde::Serialize;
use serde::de::DeserializeOwned;

use mlmf_actors::peer::PeerError;

use crate::cluster::node::Node;
use crate::cluster::wire::{self, names};

use super::types::{RaftPeer, TypeConfig};

/// The refusal of a Raft message meant for another Raft id than the answering node's.
pub const MISADDRESSED: &str = "misaddressed Raft message";

/// When each peer last answered, and whether this node (as leader) reaches a quorum.
#[derive(Clone, Default)]
pub struct Contacts(Arc<Mutex<ContactsInner>>);

#[derive(Default)]
struct ContactsInner {
    answered: HashMap<u64, Instant>,
    leader_quorum: bool,
}

impl Contacts {
    /// Records an answer from `peer`.
    pub fn answered(&self, peer: u64) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).answered.insert(peer, Instant::now());
    }

    /// How many of `voters` answered within `within` (`me` counts as always answering).
    pub fn reached(&self, me: u64, voters: &[u64], within: Duration) -> usize {
        let held = self.0.lock().unwrap_or_else(|e| e.into_inner());
        voters.iter().filter(|v| **v == me || held.answered.get(v).is_some_and(|t| t.elapsed() <= within)).count()
    }

    /// Sets whether this node, as leader, reaches a quorum (told to followers).
    pub fn set_leader_quorum(&self, yes: bool) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).leader_quorum = yes;
    }

    fn leader_quorum(&self) -> bool {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).leader_quorum
    }
}

/// Makes a [`Link`] per peer.
pub struct Network {
    /// The node whose links carry the messages.
    pub node: Node,
    /// Where answers are recorded.
    pub contacts: Contacts,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Link;

    async fn new_client(&mut self, target: u64, peer: &RaftPeer) -> Link {
        Link { node: self.node.clone(), target, addr: peer.addr.clone(), contacts: self.contacts.clone() }
    }
}

/// Raft's messages to one peer.
pub struct Link {
    node: Node,
    target: u64,
    addr: String,
    contacts: Contacts,
}

/// openraft's error for a message, and for a snapshot.
type MessageError = RPCError<u64, RaftPeer, RaftError<u64>>;
type SnapshotError = StreamingError<TypeConfig, Fatal<u64>>;

/// Why a message got no answer.
enum Failed {
    Unreachable(PeerError),
    Network(String),
}

impl Link {
    async fn send<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        name: &str,
        req: &Req,
        deadline: Duration,
    ) -> Result<Resp, Failed> {
        let payload =
            wire::to_bytes(&(self.target, wire::to_bytes(req).map_err(Failed::Network)?)).map_err(Failed::Network)?;
        let bytes = self.node.links.call_urgent(&self.addr, name, &payload, deadline).await.map_err(|e| match e {
            PeerError::Connect { .. } | PeerError::Closed | PeerError::Timeout { .. } => Failed::Unreachable(e),
            // Another incarnation of the member answers at its address: as good as gone.
            PeerError::Remote(ref m) if m.starts_with(MISADDRESSED) => Failed::Unreachable(e),
            other => Failed::Network(other.to_string()),
        })?;
        let answer = wire::from_bytes(&bytes).map_err(Failed::Network)?;
        self.contacts.answered(self.target);
        Ok(answer)
    }
}

impl Failed {
    /// As openraft's error for a message (`RPCError`) or a snapshot (`StreamingError`).
    fn into_error<E: From<Unreachable> + From<NetworkError>>(self) -> E {
        match self {
            Failed::Unreachable(e) => Unreachable::new(&e).into(),
            Failed::Network(m) => NetworkError::new(&std::io::Error::other(m)).into(),
        }
    }
}

impl RaftNetwork<TypeConfig> for Link {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, MessageError> {
        let req = (rpc, self.contacts.leader_quorum());
        let answer: Result<AppendEntriesResponse<u64>, RaftError<u64>> =
            self.send(names::RAFT_APPEND, &req, option.hard_ttl()).await.map_err(Failed::into_error::<MessageError>)?;
        answer.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<InstallSnapshotResponse<u64>, RPCError<u64, RaftPeer, RaftError<u64, InstallSnapshotError>>> {
        // Snapshots go whole (`full_snapshot`): the registry is small.
        Err(RPCError::Network(NetworkError::new(&std::io::Error::other("snapshots are sent whole"))))
    }

    async fn vote(&mut self, rpc: VoteRequest<u64>, option: RPCOption) -> Result<VoteResponse<u64>, MessageError> {
        let answer: Result<VoteResponse<u64>, RaftError<u64>> =
            self.send(names::RAFT_VOTE, &rpc, option.hard_ttl()).await.map_err(Failed::into_error::<MessageError>)?;
        answer.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote<u64>,
        snapshot: Snapshot<TypeConfig>,
        _cancel: impl std::future::Future<Output = ReplicationClosed>,
        option: RPCOption,
    ) -> Result<SnapshotResponse<u64>, SnapshotError> {
        let req = (vote, snapshot.meta, *snapshot.snapshot);
        let deadline = option.hard_ttl().max(Duration::from_secs(10));
        let answer: Result<SnapshotResponse<u64>, Fatal<u64>> =
            self.send(names::RAFT_SNAPSHOT, &req, deadline).await.map_err(Failed::into_error::<SnapshotError>)?;
        answer.map_err(|e| StreamingError::RemoteError(RemoteError::new(self.target, e)))
    }
}
