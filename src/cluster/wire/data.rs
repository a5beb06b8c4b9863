//! The data plane: a request on its way from stage to stage ([`ForwardHeader`]), a
//! tensor-parallel partial sum ([`PartialHeader`]), and the last stage's answer to the node
//! that took the request ([`Deliver`]). Activations follow the headers as raw bytes.

use serde::{Deserialize, Serialize};

use crate::exec::{HostTensor, RunOutputs};
use crate::model::ModelInput;

/// A generation step: which sequence's caches it continues, from which position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvStep {
    /// The sequence (chosen by the node that holds it).
    pub seq: u64,
    /// Positions already cached at every stage; 0 starts (or replays) the sequence, which
    /// drops whatever a stage cached for it before. A step retried at the same `past` is
    /// computed again from there, never applied twice.
    pub past: usize,
    /// Return the logits of every new position (scoring a prompt), not only the last one's.
    pub all_logits: bool,
}

/// Which sublayer of a block a tensor-parallel step is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Sublayer {
    /// Self-attention.
    Attention,
    /// The MLP.
    Mlp,
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
    /// A generation step, whose stages continue the sequence's KV caches.
    pub kv: Option<KvStep>,
    /// The W3C trace the request belongs to (every stage's span carries it).
    pub trace: crate::cluster::trace::TraceId,
    /// A batch of decode steps (one per input row, each continuing its own sequence's
    /// caches) instead of `kv`.
    pub kv_batch: Vec<KvStep>,
    /// The span that sent this stage (the request's on the taking node, then the stage
    /// before's): the parent of this stage's exported span.
    pub parent: crate::cluster::trace::SpanParent,
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
    /// A generation step: the member continues its cache of the sequence.
    pub kv: Option<KvStep>,
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

/// Drop the KV caches of a sequence (it finished, or its client went away).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseSequence {
    /// Model id.
    pub model: String,
    /// The sequence.
    pub seq: u64,
}
