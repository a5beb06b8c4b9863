//! The messages by which members join, heartbeat and leave, and the cluster's status as
//! `GET /v1/cluster` shows it.

use serde::{Deserialize, Serialize};

use super::member::{NodeInfo, NodeStats};
use super::view::{ClusterView, NodeView};

/// A node leaves the cluster gracefully: `done: false` starts the hand-off (routes avoid
/// it, its replicas are placed elsewhere), `done: true` removes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Leave {
    /// The node.
    pub node: String,
    /// Whether the hand-off is over.
    pub done: bool,
}

/// Asks the coordinator to admit a node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Join {
    /// The node.
    pub node: NodeInfo,
    /// The shard replicas it holds, `(model, shard)`: none after a restart, so that the
    /// coordinator loads again what its registry still places there.
    pub held: Vec<(String, usize)>,
}

/// A heartbeat.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Sender.
    pub node: String,
    /// Increments per heartbeat.
    pub seq: u64,
    /// The view version the sender has.
    pub view_version: u64,
    /// Its stats.
    pub stats: NodeStats,
}

/// The coordinator's answer to a heartbeat: a newer view when the sender's is stale.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeartbeatAck {
    /// The current view, when the sender's version is older.
    pub view: Option<ClusterView>,
    /// Every member's CPU use, percent (for resource-based balancing).
    pub cpu: Vec<(String, f32)>,
}

/// Per node in `GET /v1/cluster`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeStatus {
    /// Who, where, liveness.
    pub node: NodeView,
    /// Latest heartbeat stats.
    pub stats: NodeStats,
    /// Phi of the failure detector now.
    pub phi: f64,
    /// The longest interval between two of its heartbeats the detector has seen, ms.
    #[serde(default)]
    pub heartbeat_gap_max_ms: f64,
    /// `model/shard` loaded there.
    pub shards: Vec<String>,
}

/// `GET /v1/cluster`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ClusterStatus {
    /// The coordinator's node id.
    pub coordinator: String,
    /// View version.
    pub version: u64,
    /// Members.
    pub nodes: Vec<NodeStatus>,
}
