//! What travels between nodes: every message that crosses the network, by its stable name.
//!
//! Values are encoded with bincode 2 through [`mlmf_actors::codec`]; activations never go
//! through serde: a payload that carries one is `u32 header length, header, raw bytes`
//! ([`pack`] / [`unpack`]), so a 4 MiB tensor is copied once, not walked element by element.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use mlmf_actors::codec::{Bincode2, Codec};

use crate::exec::{HostTensor, RunOutputs};
use crate::model::{ModelConfig, ModelInput};
use crate::plan::placement::DeviceKind;
use crate::plan::{Placement, ShardPlan, ShardSpec};

use super::shard::Sublayer;

/// Stable message names (the registry of what a node answers on `/v1/peer`).
pub mod names {
    /// [`super::Join`] → [`super::ClusterView`].
    pub const JOIN: &str = "Join";
    /// [`super::Heartbeat`] → [`super::HeartbeatAck`].
    pub const HEARTBEAT: &str = "Heartbeat";
    /// [`super::ClusterView`] pushed by the coordinator → `None` when taken, or the newer
    /// view held when the pusher was superseded (a coordinator of an older term).
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
    /// [`super::Leave`] → `Result<(), ControlError>`.
    pub const LEAVE: &str = "Leave";
    /// [`super::Fetch`] → raw bytes.
    pub const FETCH: &str = "Fetch";
}

macro_rules! remote {
    ($($ty:ty => $name:expr, $reply:ty;)*) => {
        $(impl mlmf_actors::remote::RemoteMessage for $ty {
            const NAME: &'static str = $name;
            type Reply = $reply;
        })*
    };
}

remote! {
    Join => names::JOIN, Result<ClusterView, ControlError>;
    Heartbeat => names::HEARTBEAT, Result<HeartbeatAck, ControlError>;
    ClusterView => names::VIEW, Option<ClusterView>;
    LoadShard => names::LOAD_SHARD, Result<ShardLoaded, String>;
    UnloadShard => names::UNLOAD_SHARD, ();
    Progress => names::PROGRESS, ();
    ManifestRequest => names::MANIFEST, Result<Manifest, String>;
    Deliver => names::DELIVER, ();
    Leave => names::LEAVE, Result<(), ControlError>;
}

/// Largest encoded control message (views, statuses, outputs).
const CONTROL_LIMIT: usize = 256 << 20;

/// Encodes a value.
pub fn to_bytes<T: Serialize>(v: &T) -> Result<Vec<u8>, String> {
    Bincode2::<CONTROL_LIMIT>.encode(v).map_err(|e| e.to_string())
}

/// Decodes a value, refusing anything malformed or over the limit.
pub fn from_bytes<T: DeserializeOwned>(b: &[u8]) -> Result<T, String> {
    Bincode2::<CONTROL_LIMIT>.decode(b).map_err(|e| e.to_string())
}

/// `u32 header length, header, raw`.
pub fn pack<T: Serialize>(header: &T, raw: &[u8]) -> Result<Vec<u8>, String> {
    let h = to_bytes(header)?;
    let len = u32::try_from(h.len()).map_err(|_| "header too large".to_string())?;
    let mut out = Vec::with_capacity(4 + h.len() + raw.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(raw);
    Ok(out)
}

/// The inverse of [`pack`]; the raw part is returned as the rest of `payload`.
pub fn unpack<T: DeserializeOwned>(mut payload: Vec<u8>) -> Result<(T, Vec<u8>), String> {
    if payload.len() < 4 {
        return Err("payload shorter than its header length".into());
    }
    let len = u32::from_le_bytes([payload[0], payload[1], payload[2], payload[3]]) as usize;
    if len > payload.len() - 4 {
        return Err(format!("header length {len} exceeds the payload of {} bytes", payload.len()));
    }
    let header = from_bytes(&payload[4..4 + len])?;
    let raw = payload.split_off(4 + len);
    Ok((header, raw))
}

/// A node as the cluster knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Node id (unique in the cluster).
    pub id: String,
    /// `host:port` of its HTTP API and peer endpoint.
    pub addr: String,
    /// Memory it offers to shards.
    pub memory_bytes: u64,
    /// Device kind.
    pub device: DeviceKind,
    /// Relative compute.
    pub compute: f64,
}

/// A node's liveness as the health monitor sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    /// Heartbeats arrive.
    Up,
    /// Heartbeats are late (phi above the suspect threshold).
    Suspect,
    /// Declared failed (phi above the threshold); routed around.
    Down,
    /// Leaving on request (SIGTERM): routed around while its replicas move elsewhere.
    Leaving,
}

/// A node leaves the cluster gracefully: `done: false` starts the hand-off (routes avoid
/// it, its replicas are placed elsewhere), `done: true` removes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Leave {
    /// The node.
    pub node: String,
    /// Whether the hand-off is over.
    pub done: bool,
}

/// Resource stats a heartbeat carries.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeStats {
    /// Total memory of the machine.
    pub memory_total: u64,
    /// Memory in use on the machine.
    pub memory_used: u64,
    /// Resident memory of this process.
    pub process_memory: u64,
    /// Machine-wide CPU use, percent.
    pub cpu_percent: f32,
    /// Shards loaded on the node.
    pub shards: usize,
    /// Requests this node is running a stage of, now.
    pub in_flight: usize,
    /// Requests this node has taken over HTTP.
    pub requests: u64,
    /// Of those, answered with a 5xx.
    pub errors: u64,
    /// p99 latency of successful requests since the previous heartbeat, ms (bucket bound).
    pub p99_ms: f64,
    /// Each loaded shard replica.
    pub shard_stats: Vec<ShardStats>,
}

/// One shard replica's load and latency on its node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ShardStats {
    /// Model id.
    pub model: String,
    /// Shard id.
    pub shard: usize,
    /// Messages being computed.
    pub in_flight: usize,
    /// Messages waiting for a compute thread.
    pub queued: usize,
    /// Messages handled since it loaded.
    pub messages: u64,
    /// Median time per message (queueing included), ms, as a bucket bound.
    pub p50_ms: f64,
    /// 99th percentile, ms, as a bucket bound.
    pub p99_ms: f64,
}

/// Asks the coordinator to admit a node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Join {
    /// The node.
    pub node: NodeInfo,
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

/// A node in the view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeView {
    /// Who and where.
    pub info: NodeInfo,
    /// Liveness.
    pub state: NodeState,
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
    pub placement: Option<crate::plan::PlacementRequest>,
    /// When the model counts as ready.
    pub replication_mode: ReplicationMode,
}

/// When a replicated model is ready to serve (the other replicas keep loading and join
/// the routes as they finish).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReplicationMode {
    /// Every replica of every shard is loaded.
    #[default]
    Sync,
    /// A majority of every shard's replicas is loaded.
    Quorum,
    /// One replica of every shard is loaded.
    Async,
}

impl ReplicationMode {
    /// Loaded replicas each shard needs before the model is ready.
    pub fn needed(self, replication: usize) -> usize {
        match self {
            ReplicationMode::Sync => replication,
            ReplicationMode::Quorum => replication / 2 + 1,
            ReplicationMode::Async => 1,
        }
        .min(replication)
        .max(1)
    }

    /// Whether every one of `shards` shards has enough loaded replicas in `progress`.
    pub fn ready(self, replication: usize, shards: usize, progress: &[ShardProgress]) -> bool {
        let need = self.needed(replication);
        (0..shards).all(|s| progress.iter().filter(|p| p.shard == s && p.done).count() >= need)
    }
}

/// A model's lifecycle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
}

/// A model as `GET /v1/models/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
}

/// Per node in `GET /v1/cluster`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// The coordinator's node id.
    pub coordinator: String,
    /// View version.
    pub version: u64,
    /// Members.
    pub nodes: Vec<NodeStatus>,
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

/// One pipeline stage's members on a route: `(shard id, node id)` in tensor rank order.
pub type StageRoute = Vec<(usize, String)>;

/// A request on its way: which stage runs next, and where the result goes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForwardHeader {
    /// The client request's id (for logs across nodes).
    pub request_id: u64,
    /// This attempt's id: the key the taking node waits on.
    pub delivery: u64,
    /// Model id.
    pub model: String,
    /// Per stage, its members.
    pub route: Vec<StageRoute>,
    /// The stage to run now.
    pub stage: usize,
    /// The request.
    pub input: ModelInput,
    /// Node id of the node that took the request.
    pub reply_to: String,
    /// Collect each block's output.
    pub block_outputs: bool,
    /// Outputs to deliver (all when absent): the last stage sends nothing else back.
    pub outputs: Option<Vec<String>>,
    /// Admission priority at every shard (2 high, 1 normal, 0 low).
    pub priority: u8,
    /// Block outputs so far.
    pub blocks: Vec<(usize, HostTensor)>,
    /// Nodes that ran a stage so far.
    pub processed_by: Vec<String>,
}

/// Why a stage could not run, and whether another route could.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageFailure {
    /// The node that failed (or could not be reached).
    pub node: String,
    /// What happened.
    pub message: String,
    /// Whether the request itself is at fault (no retry helps).
    pub invalid_request: bool,
}

/// A tensor-parallel partial sum to compute (the activation follows as raw bytes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartialHeader {
    /// Request id (logs).
    pub request_id: u64,
    /// Model id.
    pub model: String,
    /// Shard id of the member.
    pub shard: usize,
    /// Block index.
    pub layer: usize,
    /// Which sublayer.
    pub sublayer: Sublayer,
    /// The request (attention mask).
    pub input: ModelInput,
    /// Admission priority.
    pub priority: u8,
}

/// The last stage's answer to the node that took the request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deliver {
    /// The attempt it answers.
    pub delivery: u64,
    /// Outputs, or why not.
    pub result: Result<RunOutputs, StageFailure>,
    /// Nodes that ran a stage.
    pub processed_by: Vec<String>,
}

/// Ask a peer which bytes make up a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestRequest {
    /// The model directory.
    pub path: String,
    /// Tensors wanted, with their SHA-256.
    pub tensors: Vec<String>,
}

/// One file of a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestFile {
    /// File name inside the model directory.
    pub name: String,
    /// Length in bytes.
    pub len: u64,
    /// End of its safetensors header (8 + header length).
    pub header_end: u64,
}

/// One tensor's bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestTensor {
    /// Name.
    pub name: String,
    /// Index into [`Manifest::files`].
    pub file: usize,
    /// Absolute offset in the file.
    pub offset: u64,
    /// Length.
    pub len: u64,
    /// SHA-256 of those bytes.
    pub sha256: [u8; 32],
}

/// What a puller needs to rebuild the parts of a checkpoint it reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// `config.json`.
    pub config_json: Vec<u8>,
    /// `model.safetensors.index.json`, when the checkpoint has one.
    pub index_json: Option<Vec<u8>>,
    /// The safetensors files.
    pub files: Vec<ManifestFile>,
    /// The tensors asked for.
    pub tensors: Vec<ManifestTensor>,
}

/// Read a byte range of one checkpoint file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fetch {
    /// The model directory.
    pub path: String,
    /// Index into [`Manifest::files`].
    pub file: usize,
    /// Start.
    pub offset: u64,
    /// Length (at most [`FETCH_MAX`]).
    pub len: u64,
}

/// The largest range one [`Fetch`] returns.
pub const FETCH_MAX: u64 = 4 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replication_modes_need_all_a_majority_or_one() {
        let p = |shard, done| ShardProgress {
            shard,
            replica: 0,
            node: String::new(),
            loaded: 0,
            total: 0,
            done,
            pulled: false,
        };
        // Shard 0: 2 of 3 loaded; shard 1: 1 of 3.
        let progress = [p(0, true), p(0, true), p(0, false), p(1, true), p(1, false), p(1, false)];
        assert!(ReplicationMode::Async.ready(3, 2, &progress));
        assert!(!ReplicationMode::Quorum.ready(3, 2, &progress));
        assert!(!ReplicationMode::Sync.ready(3, 2, &progress));
        assert_eq!((1..=5).map(|r| ReplicationMode::Quorum.needed(r)).collect::<Vec<_>>(), vec![1, 2, 2, 3, 3]);
        let all: Vec<ShardProgress> = progress.iter().map(|x| ShardProgress { done: true, ..x.clone() }).collect();
        assert!(ReplicationMode::Sync.ready(3, 2, &all));
    }

    #[test]
    fn pack_round_trips_and_refuses_lies() {
        let h = UnloadShard { model: "m".into(), shard: None };
        let p = pack(&h, &[1, 2, 3]).unwrap();
        let (back, raw): (UnloadShard, Vec<u8>) = unpack(p.clone()).unwrap();
        assert_eq!((back, raw), (h, vec![1, 2, 3]));
        let mut lie = p;
        lie[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(unpack::<UnloadShard>(lie).is_err());
        assert!(unpack::<UnloadShard>(vec![1]).is_err());
    }
}

/// A control operation's failure, with the HTTP status it maps to (so a node that forwards
/// an operation to the coordinator answers exactly as the coordinator would).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ControlError {
    /// HTTP status.
    pub status: u16,
    /// Machine-readable code.
    pub code: String,
    /// What happened.
    pub message: String,
}

impl ControlError {
    /// An error with `status` and `code`.
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> ControlError {
        ControlError { status, code: code.into(), message: message.into() }
    }

    /// 400.
    pub fn bad_request(code: &str, message: impl Into<String>) -> ControlError {
        ControlError::new(400, code, message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> ControlError {
        ControlError::new(404, "not_found", message)
    }

    /// 503.
    pub fn unavailable(code: &str, message: impl Into<String>) -> ControlError {
        ControlError::new(503, code, message)
    }
}
