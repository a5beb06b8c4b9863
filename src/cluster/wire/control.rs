//! Model control messages: loading and unloading a model (the coordinator's registry, its
//! [`ModelStatus`]), and the per-replica orders and reports between the coordinator and the
//! nodes (load, unload, progress, migrate).

use serde::{Deserialize, Serialize};

use crate::plan::{Autoscaling, Placement, PlacementRequest, ReplicationMode, ShardPlan, ShardSpec};

/// Load a model (HTTP `POST /v1/models`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadModel {
    /// Model id.
    pub id: String,
    /// The model directory.
    pub path: String,
    /// Strategy string as in `mlmf run`.
    pub strategy: String,
    /// Replicas per shard.
    pub replication: usize,
    /// Placement options (the default places by memory on any device).
    pub placement: Option<PlacementRequest>,
    /// When the model counts as ready.
    pub replication_mode: ReplicationMode,
    /// Replicas that follow the load, within bounds.
    pub autoscaling: Option<Autoscaling>,
}

/// A model's lifecycle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ModelState {
    /// Shards are loading.
    Loading,
    /// Every shard has its replicas.
    Ready,
    /// Loading failed.
    Failed {
        /// Why.
        reason: String,
    },
}

/// One replica's loading progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ShardProgress {
    /// Shard id.
    pub shard: usize,
    /// Replica index.
    pub replica: usize,
    /// Node id.
    pub node: String,
    /// Bytes read so far.
    pub loaded: u64,
    /// Bytes to read.
    pub total: u64,
    /// Whether the replica is loaded.
    pub done: bool,
    /// Whether its weights were pulled from a peer.
    pub pulled: bool,
    /// Milliseconds from the load's start to the replica in memory (read or pulled).
    #[serde(default)]
    pub load_ms: Option<u64>,
    /// Milliseconds of its warm-up forward, run before it joined the routes.
    #[serde(default)]
    pub warmup_ms: Option<u64>,
    /// Whether it came back from its node's warm cache (kept in memory since it was
    /// unloaded there) rather than from the files.
    #[serde(default)]
    pub from_warm_cache: bool,
}

/// `model/shard` for every replica `statuses` place on `node`, as `/v1/cluster` lists them.
pub fn shards_on<'a>(statuses: impl IntoIterator<Item = &'a ModelStatus>, node: &str) -> Vec<String> {
    statuses
        .into_iter()
        .flat_map(|s| s.progress.iter().filter(|p| p.node == node).map(move |p| format!("{}/{}", s.id, p.shard)))
        .collect()
}

/// A model as `GET /v1/models/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ModelStatus {
    /// Model id.
    pub id: String,
    /// The model directory.
    pub path: String,
    /// The strategy.
    pub strategy: String,
    /// Replicas per shard.
    pub replication: usize,
    /// When it counts as ready.
    pub replication_mode: ReplicationMode,
    /// Lifecycle.
    pub status: ModelState,
    /// The plan.
    pub plan: ShardPlan,
    /// Where every replica lives.
    pub placement: Placement,
    /// Per replica progress.
    pub progress: Vec<ShardProgress>,
    /// Its autoscaling, when its replicas follow the load.
    pub autoscaling: Option<Autoscaling>,
}

/// Load one shard replica.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadShard {
    /// Model id.
    pub model: String,
    /// The model directory (as the coordinator reads it).
    pub path: String,
    /// Replica index.
    pub replica: usize,
    /// The shard.
    pub shard: ShardSpec,
    /// Addresses of peers to pull from when this node cannot read `path`.
    pub sources: Vec<String>,
    /// Where to report progress.
    pub coordinator: String,
}

/// A loaded replica.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardLoaded {
    /// Bytes read.
    pub bytes: u64,
    /// Whether they were pulled from a peer.
    pub pulled: bool,
    /// Milliseconds from the load's start to the replica in memory.
    pub load_ms: u64,
    /// Milliseconds of its warm-up forward.
    pub warmup_ms: u64,
    /// Whether it came back from the node's warm cache.
    pub from_warm_cache: bool,
}

/// Unload a model's shards from a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnloadShard {
    /// Model id.
    pub model: String,
    /// Only this shard (all of the model's shards when absent).
    pub shard: Option<usize>,
}

/// Move one replica of a shard from one node to another, with no failed request: load on
/// the target, switch routes, drain, unload from the source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Migrate {
    /// Model id.
    pub model: String,
    /// Shard id.
    pub shard: usize,
    /// Node id holding the replica now.
    pub from: String,
    /// Node id to move it to.
    pub to: String,
}

/// Loading progress of one replica.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Model id.
    pub model: String,
    /// Shard id.
    pub shard: usize,
    /// Node id.
    pub node: String,
    /// Bytes so far.
    pub loaded: u64,
    /// Bytes in all.
    pub total: u64,
}

impl ShardProgress {
    /// A replica of `shard` placed on `node`, its `total` bytes still to load.
    pub fn pending(shard: usize, replica: usize, node: &str, total: u64) -> ShardProgress {
        ShardProgress {
            shard,
            replica,
            node: node.to_string(),
            loaded: 0,
            total,
            done: false,
            pulled: false,
            load_ms: None,
            warmup_ms: None,
            from_warm_cache: false,
        }
    }
}

impl ModelStatus {
    /// Loaded replicas of each shard of the plan, by shard id.
    pub fn loaded_per_shard(&self) -> Vec<usize> {
        (0..self.plan.shards.len()).map(|s| self.progress.iter().filter(|p| p.shard == s && p.done).count()).collect()
    }
}

/// A node actor loads a replica when told to.
impl actix::Message for LoadShard {
    type Result = Result<ShardLoaded, String>;
}

/// Something the coordinator recorded: an audited operation or an alert it raised, resolved
/// or noticed. The last ones are kept in memory for `GET /v1/events` (the audit log file,
/// when configured, keeps them all).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ClusterEvent {
    /// Unix milliseconds.
    pub time_ms: u64,
    /// `audit`, `alert`, `notice` or `resolved`.
    pub kind: String,
    /// The audited operation (`join`, `load`, `down`, ...) or the alert rule.
    pub name: String,
    /// The model concerned.
    pub model: Option<String>,
    /// The node concerned (or the alert's key).
    pub node: Option<String>,
    /// The outcome, or the alert's summary.
    pub detail: String,
}
