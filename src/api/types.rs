//! JSON bodies of the HTTP API.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::ModelInput;

use super::error::ApiError;

/// `POST /v1/models`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoadRequest {
    /// Model id.
    pub id: String,
    /// Absolute path of the model directory.
    pub path: String,
    /// Strategy string as in `mlmf run` (`none`, `layer:K`, `pipeline:S`, `tensor:D`).
    #[serde(default = "none")]
    pub strategy: String,
    /// Replicas per shard.
    #[serde(default = "one")]
    pub replication: usize,
    /// Placement: `{"strategy":"memory_based|compute_based|load_balanced", "device":"any"|{"prefer":"gpu"}|{"require":"gpu"}, "memory_overhead":1.0}`.
    #[serde(default)]
    pub placement: Option<crate::plan::PlacementRequest>,
    /// When the model counts as ready: `sync` (every replica, the default), `quorum` (a
    /// majority of each shard's replicas), `async` (one replica of each shard).
    #[serde(default)]
    pub replication_mode: crate::plan::ReplicationMode,
    /// Replicas per shard that follow the load: `{"min_replicas", "max_replicas",
    /// "target_ongoing_requests", "upscale_delay_s", "downscale_delay_s",
    /// "look_back_period_s", "target_tokens_per_s"}` (Ray Serve's names, and a token target).
    /// The model starts with `replication`
    /// brought within the bounds.
    #[serde(default)]
    pub autoscaling: Option<crate::plan::Autoscaling>,
}

fn none() -> String {
    "none".into()
}

fn one() -> usize {
    1
}

/// `POST /v1/models/{id}/migrate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MigrateRequest {
    /// Shard id.
    pub shard: usize,
    /// Node id holding a replica now.
    pub from: String,
    /// Node id to move it to.
    pub to: String,
}

/// Request priority: at every shard, waiting requests are admitted high first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Ahead of normal and low.
    High,
    /// The default.
    #[default]
    Normal,
    /// Behind the others.
    Low,
}

/// `POST /v1/models/{id}/infer`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InferRequest {
    /// Text, tokenized with the model's tokenizer into one sequence (instead of `input_ids`).
    #[serde(default)]
    pub text: Option<String>,
    /// `[batch][seq]` token ids.
    #[serde(default)]
    pub input_ids: Vec<Vec<i64>>,
    /// `[batch][seq]` of 0/1.
    #[serde(default)]
    pub attention_mask: Option<Vec<Vec<i64>>>,
    /// `[batch][seq]` token types.
    #[serde(default)]
    pub token_type_ids: Option<Vec<Vec<i64>>>,
    /// Outputs to return (`logits`, `last_hidden_state`, `pooler_output`, `block_output.K`);
    /// all of the model's outputs when absent.
    #[serde(default)]
    pub outputs: Option<Vec<String>>,
    /// Session id (for affinity).
    #[serde(default)]
    pub session_id: Option<String>,
    /// Priority.
    #[serde(default)]
    pub priority: Option<Priority>,
    /// Deadline for this request, milliseconds.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

impl Priority {
    /// Its rank at admission (higher first).
    pub fn rank(self) -> u8 {
        match self {
            Priority::High => 2,
            Priority::Normal => 1,
            Priority::Low => 0,
        }
    }
}

/// One output tensor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TensorJson {
    /// Shape.
    pub shape: Vec<usize>,
    /// Row-major elements.
    pub data: Vec<f32>,
}

/// The answer to an inference request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InferResponse {
    /// Model id.
    pub model: String,
    /// Outputs by name.
    pub outputs: BTreeMap<String, TensorJson>,
    /// Nodes that ran a stage, in order.
    pub processed_by: Vec<String>,
    /// Time from taking the request to answering it.
    pub processing_time_ms: f64,
    /// Routes tried.
    pub attempts: usize,
    /// The request id (in every node's logs).
    pub request_id: String,
}

fn matrix<T: Copy>(
    name: &str,
    rows: &[Vec<i64>],
    batch: usize,
    seq: usize,
    conv: impl Fn(i64) -> Option<T>,
    range: &str,
) -> Result<Vec<T>, ApiError> {
    if rows.len() != batch || rows.iter().any(|r| r.len() != seq) {
        return Err(ApiError::bad_request(
            "invalid_shape",
            format!("{name} must have the shape of input_ids, [{batch}][{seq}]"),
        ));
    }
    rows.iter()
        .flatten()
        .map(|v| {
            conv(*v).ok_or_else(|| ApiError::bad_request("invalid_input", format!("{name} value {v} is not {range}")))
        })
        .collect()
}

impl InferRequest {
    /// The model input: rectangular, non-negative, within u32; the model checks the rest.
    pub fn to_input(&self, max_tokens: usize) -> Result<ModelInput, ApiError> {
        let batch = self.input_ids.len();
        let seq = self.input_ids.first().map(Vec::len).unwrap_or(0);
        if batch == 0 || seq == 0 {
            return Err(ApiError::bad_request("invalid_shape", "input_ids must be a non-empty [batch][seq] array"));
        }
        if batch.saturating_mul(seq) > max_tokens {
            return Err(ApiError::bad_request("too_many_tokens", format!("{batch}x{seq} tokens exceed {max_tokens}")));
        }
        if self.input_ids.iter().any(|r| r.len() != seq) {
            return Err(ApiError::bad_request("invalid_shape", "every row of input_ids must have the same length"));
        }
        let ids = matrix("input_ids", &self.input_ids, batch, seq, |v| u32::try_from(v).ok(), "a token id")?;
        let attention_mask = match &self.attention_mask {
            Some(m) => {
                Some(matrix("attention_mask", m, batch, seq, |v| (v == 0 || v == 1).then_some(v as u8), "0 or 1")?)
            }
            None => None,
        };
        let token_type_ids = match &self.token_type_ids {
            Some(m) => Some(matrix("token_type_ids", m, batch, seq, |v| u32::try_from(v).ok(), "a token type")?),
            None => None,
        };
        Ok(ModelInput { batch, seq_len: seq, input_ids: ids, attention_mask, token_type_ids })
    }
}
