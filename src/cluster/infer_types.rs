//! What a request through the cluster asks for ([`InferOptions`]) and what comes of it
//! ([`InferResult`], [`InferError`]): plain data, so that what queues requests (the batcher)
//! can hold them without the path that serves them.

use std::time::Duration;

use crate::exec::RunOutputs;

use super::wire::{KvStep, StageRoute};

/// What to compute besides the model's outputs, and how long to wait.
#[derive(Debug, Clone, Default)]
pub struct InferOptions {
    /// Also return every block's output.
    pub block_outputs: bool,
    /// Overall deadline; the node's configured one when absent.
    pub deadline: Option<Duration>,
    /// Outputs wanted (all when absent); others are dropped at the last stage.
    pub outputs: Option<Vec<String>>,
    /// Session id (affinity).
    pub session: Option<String>,
    /// Admission priority at every shard: 2 high, 1 normal, 0 low.
    pub priority: u8,
    /// A generation step: the stages continue the sequence's KV caches.
    pub kv: Option<KvStep>,
    /// A batch of decode steps, one per input row (one token each), each continuing its own
    /// sequence's caches (instead of `kv`).
    pub kv_batch: Vec<KvStep>,
    /// The route to take (the one that holds the sequence's caches) instead of the
    /// balancer's choice.
    pub route: Option<Vec<StageRoute>>,
    /// Nodes not to route through.
    pub avoid: Vec<String>,
    /// Routes to try at most; the node's configured number when absent.
    pub max_attempts: Option<usize>,
    /// The W3C trace the request belongs to.
    pub trace: super::trace::TraceId,
}

/// A served request.
#[derive(Debug, Clone)]
pub struct InferResult {
    /// The outputs.
    pub outputs: RunOutputs,
    /// Nodes that ran a stage, in order.
    pub processed_by: Vec<String>,
    /// Routes tried.
    pub attempts: usize,
    /// The route that served it.
    pub route: Vec<StageRoute>,
}

/// Why a request was not served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InferError {
    /// No ready model by that id.
    #[error("model {0:?} is not loaded or not ready")]
    UnknownModel(String),
    /// The request does not fit the model.
    #[error("{0}")]
    Invalid(String),
    /// Every route failed.
    #[error("no route could serve the request after {attempts} attempts: {last}")]
    Failed {
        /// Routes tried.
        attempts: usize,
        /// The last failure.
        last: String,
        /// The node of the last failure (empty when no route was found).
        node: String,
    },
    /// The deadline passed.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}
