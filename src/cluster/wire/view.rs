//! [`ClusterView`]: what every node knows of the cluster, as the coordinator publishes it:
//! members and their states, where each ready model's shards live (the routes), and the
//! whole model registry (so that a successor can take it over).

use serde::{Deserialize, Serialize};

use crate::model::ModelConfig;

use super::control::ModelStatus;
use super::member::{MemberState, NodeInfo};

/// A node in the view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeView {
    /// Who and where.
    pub info: NodeInfo,
    /// Liveness.
    pub state: MemberState,
}

/// One shard of a ready model and the nodes serving it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardReplicas {
    /// Shard id.
    pub shard: usize,
    /// Node ids holding a loaded replica.
    pub nodes: Vec<String>,
}

/// A ready model as routes see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelRoutes {
    /// Model id.
    pub id: String,
    /// Its config (to validate requests at the node that takes them).
    pub config: ModelConfig,
    /// Per stage, its shards in tensor rank order.
    pub stages: Vec<Vec<ShardReplicas>>,
}

/// A model as the coordinator's registry holds it. Every node gets the registry with the
/// view, so that a successor can take it over when the coordinator dies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegistryEntry {
    /// Status, plan, placement, progress.
    pub status: ModelStatus,
    /// The model's config.
    pub config: ModelConfig,
    /// SHA-256 of the checkpoint, once computed.
    pub sha256: Option<String>,
}

/// What every node knows of the cluster: members, where ready models live, and the
/// coordinator's model registry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterView {
    /// Increments each time a successor takes over from a dead coordinator: a view of an
    /// older term comes from a superseded coordinator and is refused.
    pub term: u64,
    /// Increments on every change.
    pub version: u64,
    /// The coordinator's node id.
    pub coordinator: String,
    /// Members.
    pub nodes: Vec<NodeView>,
    /// Ready models.
    pub models: Vec<ModelRoutes>,
    /// Every model the coordinator knows, loading, ready or failed.
    pub registry: Vec<RegistryEntry>,
}

impl ClusterView {
    /// The address of node `id`.
    pub fn addr_of(&self, id: &str) -> Option<&str> {
        self.nodes.iter().find(|n| n.info.id == id).map(|n| n.info.addr.as_str())
    }

    /// The routes of model `id`.
    pub fn model(&self, id: &str) -> Option<&ModelRoutes> {
        self.models.iter().find(|m| m.id == id)
    }
}
