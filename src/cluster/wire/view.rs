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

    /// Whether every index in the view points at something in it: each registry entry's
    /// shards numbered `0..n` in order, each in one of its plan's stages, each progress entry
    /// and assignment naming one of its shards. A view that arrives from a peer (pushed, in a
    /// heartbeat answer, in a Raft entry or snapshot) is checked before it is adopted, since
    /// the coordinator indexes its plans with these numbers.
    pub fn check(&self) -> Result<(), String> {
        for e in &self.registry {
            let (id, plan) = (&e.status.id, &e.status.plan);
            for (i, s) in plan.shards.iter().enumerate() {
                if s.id != i {
                    return Err(format!("model {id:?}: shard {i} is numbered {}", s.id));
                }
                if s.stage >= plan.num_stages {
                    return Err(format!("model {id:?}: shard {i} is in stage {} of {}", s.stage, plan.num_stages));
                }
            }
            let n = plan.shards.len();
            let shards =
                e.status.progress.iter().map(|p| p.shard).chain(e.status.placement.assignments.iter().map(|a| a.shard));
            if let Some(bad) = shards.into_iter().find(|s| *s >= n) {
                return Err(format!("model {id:?}: shard {bad} named, the plan has {n}"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::cluster::wire::control::{ModelState, ShardProgress};
    use crate::model::{Checkpoint, ModelLayout};
    use crate::plan::placement::Assignment;
    use crate::plan::{Placement, ReplicationMode, ShardPlan, ShardingStrategy};

    /// A registry holding gpt2_tiny in two pipeline stages.
    pub(crate) fn two_stages() -> ClusterView {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpt2_tiny");
        let layout = ModelLayout::from_checkpoint(&Checkpoint::open(&dir).unwrap()).unwrap();
        let plan = ShardPlan::new(&layout, &ShardingStrategy::PipelineSharding { num_stages: 2 }).unwrap();
        let status = ModelStatus {
            id: "m".into(),
            path: dir.display().to_string(),
            strategy: "pipeline:2".into(),
            replication: 1,
            replication_mode: ReplicationMode::default(),
            status: ModelState::Ready,
            plan,
            placement: Placement { assignments: Vec::new(), node_bytes: Default::default() },
            progress: Vec::new(),
            autoscaling: None,
        };
        let entry = RegistryEntry { status, config: layout.config, sha256: None };
        ClusterView { registry: vec![entry], ..ClusterView::default() }
    }

    #[test]
    fn a_view_naming_shards_its_plans_lack_is_refused() {
        assert_eq!(two_stages().check(), Ok(()));
        let mut v = two_stages();
        let p = ShardProgress { done: true, ..ShardProgress::pending(99, 0, "a", 0) };
        v.registry[0].status.progress.push(p);
        assert!(v.check().unwrap_err().contains("shard 99"), "{:?}", v.check());
        let mut v = two_stages();
        v.registry[0].status.placement.assignments.push(Assignment { shard: 2, replica: 0, node: "a".into() });
        assert!(v.check().is_err());
        let mut v = two_stages();
        v.registry[0].status.plan.shards[1].id = 0;
        assert!(v.check().is_err());
        let mut v = two_stages();
        v.registry[0].status.plan.shards[1].stage = 2;
        assert!(v.check().is_err());
    }
}
