//! What travels between nodes: every message that crosses the network, by its stable name.
//!
//! - [`names`]: the stable names and the typed requests that go by them;
//! - [`member`] and [`membership`]: members, their stats, joining, heartbeats, leaving;
//! - [`view`]: the [`ClusterView`] every node routes by;
//! - [`control`]: loading, unloading and migrating models and their replicas;
//! - [`data`]: a request's way through the stages, and its answer;
//! - [`weights`]: pulling checkpoint byte ranges from a peer;
//! - [`codec`]: how values are encoded; [`error`]: the error every API answers with.

pub mod codec;
pub mod control;
pub mod data;
pub mod error;
pub mod member;
pub mod membership;
pub mod names;
pub mod view;
pub mod weights;

pub use codec::{from_bytes, pack, to_bytes, unpack};
pub use control::{
    ClusterEvent, LoadModel, LoadShard, Migrate, ModelState, ModelStatus, Progress, ShardLoaded, ShardProgress,
    UnloadShard,
};
pub use data::{Deliver, ForwardHeader, KvStep, PartialHeader, ReleaseSequence, StageFailure, StageRoute, Sublayer};
pub use error::ApiError;
pub use member::{MemberState, NodeInfo, NodeStats, ShardStats};
pub use membership::{ClusterStatus, Heartbeat, HeartbeatAck, Join, Leave, NodeStatus};
pub use view::{ClusterView, ModelRoutes, NodeView, RegistryEntry, ShardReplicas};
pub use weights::{DigestRequest, Digests, FETCH_MAX, Fetch, Manifest, ManifestFile, ManifestRequest, ManifestTensor};
