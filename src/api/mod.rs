//! The HTTP API every node serves (actix-web, JSON), and the peer websocket on the same port.
//!
//! `POST /v1/models` · `GET /v1/models` · `GET|DELETE /v1/models/{id}` ·
//! `POST /v1/models/{id}/infer` (JSON, or a safetensors answer) · the KServe v2 protocol under
//! `/v2` (binary tensors included) · `POST /v1/completions`, `POST /v1/chat/completions`, `POST /v1/embeddings` (OpenAI's) · `GET /v1/cluster` · `GET /healthz` · `GET /readyz` ·
//! `GET /metrics` · websocket `/v1/peer`. With a cluster key configured, every request
//! needs `Authorization: Bearer <key>`; an admin key and an inference key may be given too,
//! each allowed part of the routes ([`access`]), and tenants' keys, each with its models and
//! limits ([`tenants`]).

pub mod access;
pub mod admission;
pub mod body;
pub mod chat;
pub mod completions;
pub mod dashboard;
pub mod embeddings;
pub mod error;
pub mod forward;
pub mod kserve;
pub mod logprobs;
pub mod metrics;
pub mod openapi;
pub mod rate_limit;
pub mod routes;
pub mod schemas;
pub mod serve;
pub mod sse;
pub mod tenants;
pub mod tensor_bytes;
pub mod trace_context;
pub mod types;

pub use error::ApiError;
pub use serve::serve;
