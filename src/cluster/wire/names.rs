//! Stable message names: the registry of what a node answers on `/v1/peer`, and the typed
//! requests ([`mlmf_actors::remote::RemoteMessage`]) that go by each name.

use super::control::{LoadShard, Progress, ShardLoaded, UnloadShard};
use super::data::{Deliver, ReleaseSequence};
use super::error::ApiError;
use super::membership::{Heartbeat, HeartbeatAck, Join, Leave};
use super::view::ClusterView;
use super::weights::{DigestRequest, Digests, Manifest, ManifestRequest};

/// Stable message names (the registry of what a node answers on `/v1/peer`).
/// [`super::Join`] → [`super::ClusterView`].
pub const JOIN: &str = "Join";
/// [`super::Heartbeat`] → [`super::HeartbeatAck`].
pub const HEARTBEAT: &str = "Heartbeat";
/// A committed [`super::ClusterView`] pushed by the Raft leader right after the commit (the
/// members would otherwise apply it with the next append) → `None` when taken, or the newer
/// view held when the pusher's is of an older term.
pub const VIEW: &str = "View";
/// [`super::LoadModel`] → [`super::ModelStatus`].
pub const LOAD_MODEL: &str = "LoadModel";
/// model id → `()`.
pub const UNLOAD_MODEL: &str = "UnloadModel";
/// model id → [`super::ModelStatus`].
pub const MODEL_STATUS: &str = "ModelStatus";
/// `()` → `Vec<ModelStatus>`.
pub const LIST_MODELS: &str = "ListModels";
/// `()` → [`super::ClusterStatus`].
pub const CLUSTER_STATUS: &str = "ClusterStatus";
/// The coordinator's recent events (`()` → `Vec<ClusterEvent>`).
pub const RECENT_EVENTS: &str = "RecentEvents";
/// [`super::LoadShard`] → [`super::ShardLoaded`].
pub const LOAD_SHARD: &str = "LoadShard";
/// [`super::UnloadShard`] → `()`.
pub const UNLOAD_SHARD: &str = "UnloadShard";
/// [`super::Progress`] → `()`.
pub const PROGRESS: &str = "Progress";
/// [`super::ForwardHeader`] + activation → `Result<(), StageFailure>`.
pub const FORWARD: &str = "Forward";
/// [`super::PartialHeader`] + activation → partial sum bytes.
pub const TP_PARTIAL: &str = "TpPartial";
/// [`super::Deliver`] → `()`.
pub const DELIVER: &str = "Deliver";
/// [`super::ManifestRequest`] → [`super::Manifest`].
pub const MANIFEST: &str = "Manifest";
/// [`super::Migrate`] → [`super::ModelStatus`].
pub const MIGRATE: &str = "Migrate";
/// [`super::Leave`] → `Result<(), ApiError>`.
pub const LEAVE: &str = "Leave";
/// [`super::ReleaseSequence`] → `()`.
pub const RELEASE_SEQUENCE: &str = "ReleaseSequence";
/// [`super::Fetch`] → raw bytes.
pub const FETCH: &str = "Fetch";
/// [`super::DigestRequest`] → [`super::Digests`] (answered by the coordinator).
pub const DIGESTS: &str = "Digests";

/// Raft append-entries (`(AppendEntriesRequest, leader has a quorum)` →
/// `Result<AppendEntriesResponse, RaftError>`), answered by the node's Raft host.
pub const RAFT_APPEND: &str = "RaftAppend";
/// Raft vote (`VoteRequest` → `Result<VoteResponse, RaftError>`).
pub const RAFT_VOTE: &str = "RaftVote";
/// A whole Raft snapshot (`(Vote, SnapshotMeta, snapshot)` → `Result<SnapshotResponse, Fatal>`).
pub const RAFT_SNAPSHOT: &str = "RaftSnapshot";

macro_rules! remote {
    ($($ty:ty => $name:expr, $reply:ty;)*) => {
        $(impl mlmf_actors::remote::RemoteMessage for $ty {
            const NAME: &'static str = $name;
            type Reply = $reply;
        })*
    };
}

remote! {
    Join => JOIN, Result<ClusterView, ApiError>;
    Heartbeat => HEARTBEAT, Result<HeartbeatAck, ApiError>;
    ClusterView => VIEW, Option<ClusterView>;
    LoadShard => LOAD_SHARD, Result<ShardLoaded, String>;
    UnloadShard => UNLOAD_SHARD, ();
    Progress => PROGRESS, ();
    ManifestRequest => MANIFEST, Result<Manifest, String>;
    DigestRequest => DIGESTS, Result<Digests, ApiError>;
    Deliver => DELIVER, ();
    ReleaseSequence => RELEASE_SEQUENCE, ();
    Leave => LEAVE, Result<(), ApiError>;
}
