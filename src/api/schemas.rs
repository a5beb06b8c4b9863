//! The bodies of the API that its handlers build as JSON values rather than from a type,
//! described as types for the OpenAPI document ([`super::openapi`]); the OpenAPI test checks
//! real answers against them.

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;

use crate::cluster::wire::{ClusterStatus, ModelStatus};

/// Every error: `{"error": {"code", "message"}}`, with the HTTP status.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// An error's code and message.
#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Machine-readable: `invalid_request`, `model_not_found`, `overloaded`, ...
    pub code: String,
    /// What happened, naming the field for a bad request.
    pub message: String,
    /// The tenant's limit that refused the request (`requests_per_s`, `tokens_per_s`,
    /// `max_concurrent`), on a 429 `rate_limited` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<String>,
}

/// `GET /v1/models`.
#[derive(Serialize, ToSchema)]
pub struct ModelList {
    /// `list`.
    pub object: String,
    /// OpenAI's shape.
    pub data: Vec<OpenAiModel>,
    /// mlmf's shape: every model's status.
    pub models: Vec<ModelStatus>,
}

/// A model as OpenAI lists it.
#[derive(Serialize, ToSchema)]
pub struct OpenAiModel {
    /// Model id.
    pub id: String,
    /// `model`.
    pub object: String,
    /// Always 0.
    pub created: u64,
    /// `mlmf`.
    pub owned_by: String,
    /// Whether it serves.
    pub ready: bool,
}

/// `DELETE /v1/models/{id}`.
#[derive(Serialize, ToSchema)]
pub struct Deleted {
    /// The model unloaded.
    pub deleted: String,
}

/// `GET /healthz`.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: String,
    /// This node's id.
    pub node: String,
}

/// `GET /readyz`.
#[derive(Serialize, ToSchema)]
pub struct Readiness {
    /// `true`.
    pub ready: bool,
    /// This node's id.
    pub node: String,
    /// Whether it coordinates the cluster.
    pub coordinator: bool,
    /// Whether it is in touch with a majority of the control plane's voters (control-plane
    /// changes through it are refused with `no_quorum` when not).
    pub quorum: bool,
}

/// `GET /v1/cluster`: the status and its summary.
#[derive(Serialize, ToSchema)]
pub struct ClusterOverview {
    /// Members, coordinator, view version.
    #[serde(flatten)]
    pub status: ClusterStatus,
    /// `healthy` (every member up), `degraded` or `unhealthy`.
    pub health: String,
    /// `coordinator` (the coordinator's status) or `local_view` (this node's last committed
    /// view, when it has no quorum or cannot reach the coordinator: no stats).
    pub from: String,
    /// Whether this node is in touch with a majority of the voters.
    pub quorum: bool,
    /// The control plane's Raft group as this node sees it.
    pub raft: crate::cluster::node::RaftStatus,
}

/// `GET /v1/events`.
#[derive(Serialize, ToSchema)]
pub struct Events {
    /// Oldest first.
    pub events: Vec<crate::cluster::wire::ClusterEvent>,
}

/// `POST /v1/completions` answered (and each streamed chunk, with `text_completion`).
#[derive(Serialize, ToSchema)]
pub struct CompletionResponse {
    /// `cmpl-...`.
    pub id: String,
    /// `text_completion`.
    pub object: String,
    /// Unix seconds.
    pub created: u64,
    /// Model id.
    pub model: String,
    /// One choice.
    pub choices: Vec<CompletionChoice>,
    /// Token counts (on the last chunk when streamed).
    pub usage: Option<Usage>,
    /// With `return_token_ids`: the prompt's ids.
    pub prompt_token_ids: Option<Vec<u32>>,
}

/// A completion's text.
#[derive(Serialize, ToSchema)]
pub struct CompletionChoice {
    /// 0.
    pub index: usize,
    /// The text (the step's piece when streamed).
    pub text: String,
    /// `stop`, `length`, or null before the last chunk.
    pub finish_reason: Option<String>,
    /// With `logprobs`.
    pub logprobs: Option<CompletionLogprobs>,
    /// With `return_token_ids`: the generated ids.
    pub token_ids: Option<Vec<u32>>,
}

/// OpenAI's completion `logprobs` object.
#[derive(Serialize, ToSchema)]
pub struct CompletionLogprobs {
    /// Each token's text.
    pub tokens: Vec<String>,
    /// Each token's log-probability (null for a prompt's first token).
    pub token_logprobs: Vec<Option<f32>>,
    /// The most likely tokens at each position.
    pub top_logprobs: Vec<Option<BTreeMap<String, f32>>>,
    /// Where each token's text starts, in characters.
    pub text_offset: Vec<usize>,
}

/// `POST /v1/chat/completions`: `messages`, and the fields of a completion (less `prompt` and
/// `echo`).
#[derive(Serialize, ToSchema)]
pub struct ChatCompletionRequest {
    /// Model id (its folder has a `chat_template`).
    pub model: String,
    /// The conversation.
    pub messages: Vec<crate::generate::ChatMessage>,
    /// Tokens to generate at most (16).
    pub max_tokens: Option<i64>,
    /// OpenAI's newer name for `max_tokens`.
    pub max_completion_tokens: Option<i64>,
    /// 0 is greedy (1).
    pub temperature: Option<f64>,
    /// Nucleus sampling, in (0, 1].
    pub top_p: Option<f64>,
    /// Top-k sampling; 0 or -1 keeps every token.
    pub top_k: Option<i64>,
    /// Makes sampling reproducible.
    pub seed: Option<u64>,
    /// Texts that end the answer: one string or a list.
    pub stop: Option<Stop>,
    /// Answer as server-sent events.
    pub stream: Option<bool>,
    /// Return each token's log-probability.
    pub logprobs: Option<bool>,
    /// With `logprobs`: the most likely tokens per position, 0 to 20.
    pub top_logprobs: Option<u8>,
}

/// `POST /v1/chat/completions` answered.
#[derive(Serialize, ToSchema)]
pub struct ChatCompletionResponse {
    /// `chatcmpl-...`.
    pub id: String,
    /// `chat.completion`.
    pub object: String,
    /// Unix seconds.
    pub created: u64,
    /// Model id.
    pub model: String,
    /// One choice.
    pub choices: Vec<ChatChoice>,
    /// Token counts.
    pub usage: Usage,
}

/// The assistant's answer.
#[derive(Serialize, ToSchema)]
pub struct ChatChoice {
    /// 0.
    pub index: usize,
    /// `{"role": "assistant", "content"}`.
    pub message: crate::generate::ChatMessage,
    /// `stop` or `length`.
    pub finish_reason: Option<String>,
    /// With `logprobs: true`.
    pub logprobs: Option<ChatLogprobs>,
}

/// OpenAI's chat `logprobs` object.
#[derive(Serialize, ToSchema)]
pub struct ChatLogprobs {
    /// One entry per generated token.
    pub content: Vec<ChatTokenLogprob>,
}

/// A generated token's log-probability.
#[derive(Serialize, ToSchema)]
pub struct ChatTokenLogprob {
    /// Its text.
    pub token: String,
    /// Its log-probability.
    pub logprob: f32,
    /// Its UTF-8 bytes.
    pub bytes: Vec<u8>,
    /// The most likely tokens at its position (without their own `top_logprobs`).
    #[schema(value_type = Vec<Object>)]
    pub top_logprobs: Vec<serde_json::Value>,
}

/// `POST /v1/embeddings` answered.
#[derive(Serialize, ToSchema)]
pub struct EmbeddingResponse {
    /// `list`.
    pub object: String,
    /// One per input, in order.
    pub data: Vec<EmbeddingData>,
    /// Model id.
    pub model: String,
    /// `prompt_tokens` and `total_tokens`.
    pub usage: BTreeMap<String, usize>,
}

/// One input's embedding.
#[derive(Serialize, ToSchema)]
pub struct EmbeddingData {
    /// `embedding`.
    pub object: String,
    /// The input's position.
    pub index: usize,
    /// The vector.
    pub embedding: EmbeddingVector,
}

/// An embedding as numbers, or (with `encoding_format: "base64"`) its little-endian f32 bytes
/// in base64.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum EmbeddingVector {
    /// `encoding_format: "float"`.
    Floats(Vec<f32>),
    /// `encoding_format: "base64"`.
    Base64(String),
}

/// One stop text or several.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum Stop {
    /// One text.
    One(String),
    /// Several.
    Many(Vec<String>),
}

/// `usage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Usage {
    /// Prompt tokens.
    pub prompt_tokens: usize,
    /// Generated tokens.
    pub completion_tokens: usize,
    /// Both.
    pub total_tokens: usize,
}

/// A KServe v2 error: the protocol's `error` string, and mlmf's code for it.
#[derive(Serialize, ToSchema)]
pub struct V2Error {
    /// What went wrong, naming the field for a bad request.
    pub error: String,
    /// `invalid_request`, `model_not_found`, `overloaded`, ...
    pub code: String,
}

/// A KServe v2 tensor: its name, datatype and shape, and its elements (row-major, flat or
/// nested) unless they travel as bytes (`parameters.binary_data_size`).
#[derive(Serialize, ToSchema)]
pub struct V2Tensor {
    /// `input_ids`, `attention_mask`, `token_type_ids`; or an output's name.
    pub name: String,
    /// `INT64` or `INT32` in; `FP32` out.
    pub datatype: String,
    /// `[batch, seq]` (or `[seq]`) in; the output's shape out.
    pub shape: Vec<i64>,
    /// `binary_data_size`: this tensor's bytes follow the JSON header.
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<serde_json::Value>,
    /// The elements (numbers, flat or nested row-major), when not binary.
    pub data: Option<Vec<serde_json::Value>>,
}

/// An output asked for: `parameters.binary_data` sends it as bytes.
#[derive(Serialize, ToSchema)]
pub struct V2RequestedOutput {
    /// The output's name.
    pub name: String,
    /// `binary_data`.
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<serde_json::Value>,
}

/// `POST /v2/models/{id}/infer`'s JSON header.
#[derive(Serialize, ToSchema)]
pub struct V2InferRequest {
    /// Echoed in the answer.
    pub id: Option<String>,
    /// `binary_data_output` (every output as bytes unless it says otherwise), `timeout` (µs).
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<serde_json::Value>,
    /// The inputs.
    pub inputs: Vec<V2Tensor>,
    /// The outputs wanted (all when absent).
    pub outputs: Option<Vec<V2RequestedOutput>>,
}

/// `POST /v2/models/{id}/infer`'s JSON header.
#[derive(Serialize, ToSchema)]
pub struct V2InferResponse {
    /// The model.
    pub model_name: String,
    /// `1`.
    pub model_version: String,
    /// The request's `id`, when it gave one.
    pub id: Option<String>,
    /// `request_id`, `processed_by` (comma-separated), `attempts`.
    #[schema(value_type = Object)]
    pub parameters: serde_json::Value,
    /// The outputs, in the order asked.
    pub outputs: Vec<V2Tensor>,
}

/// The errors every OpenAI-compatible route may answer, each as an [`ErrorBody`].
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // a description for the OpenAPI document, never built
pub enum OpenAiErrors {
    /// A field is wrong: the message names it
    #[response(status = 400)]
    BadRequest(#[to_schema] ErrorBody),
    /// No such ready model
    #[response(status = 404)]
    NotFound(#[to_schema] ErrorBody),
    /// The tenant's key may not use this model
    #[response(status = 403)]
    Forbidden(#[to_schema] ErrorBody),
    /// Too many requests in flight on this node, or the tenant is over a limit; see Retry-After
    #[response(status = 429)]
    Overloaded(#[to_schema] ErrorBody),
    /// No route could serve it
    #[response(status = 503)]
    Unavailable(#[to_schema] ErrorBody),
}
