//! `POST /v1/embeddings`, OpenAI-compatible: the request's inputs (text or token ids) parsed
//! and bounded here, embedded by [`crate::cluster::embedding::embed`] (the model's pooling,
//! normalisation and truncation), answered in OpenAI's shape.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::cluster::embedding::{EmbedInput, embed};
use crate::cluster::node::Node;

use super::admission::Admission;
use super::body::read_json;
use super::error::ApiError;

/// Most inputs one request may embed.
const MAX_INPUTS: usize = 256;

/// `POST /v1/embeddings`.
#[derive(Debug, Clone, Deserialize)]
pub struct EmbeddingRequest {
    /// Model id.
    pub model: String,
    /// A text, a list of texts, a list of token ids, or a list of lists of token ids.
    pub input: Value,
    /// Only `float`.
    #[serde(default)]
    pub encoding_format: Option<String>,
}

fn bad(field: &str, message: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request("invalid_request", format!("{field}: {message}"))
}

fn ids_of(v: &[Value]) -> Result<Vec<u32>, ApiError> {
    v.iter()
        .map(|i| i.as_u64().and_then(|i| u32::try_from(i).ok()))
        .collect::<Option<Vec<u32>>>()
        .ok_or_else(|| bad("input", "token ids must be non-negative integers"))
}

fn inputs(v: &Value) -> Result<Vec<EmbedInput>, ApiError> {
    let shape = "must be a text, a list of texts, a list of token ids or a list of lists of token ids";
    let count = match v {
        Value::Array(a) if a.iter().all(Value::is_number) => 1,
        Value::Array(a) => a.len(),
        _ => 1,
    };
    if count > MAX_INPUTS {
        return Err(bad("input", format!("at most {MAX_INPUTS} inputs per request")));
    }
    Ok(match v {
        Value::String(s) => vec![EmbedInput::Text(s.clone())],
        Value::Array(a) if a.is_empty() => return Err(bad("input", "is empty")),
        Value::Array(a) if a.iter().all(Value::is_string) => {
            a.iter().map(|s| EmbedInput::Text(s.as_str().unwrap_or_default().to_string())).collect()
        }
        Value::Array(a) if a.iter().all(Value::is_number) => vec![EmbedInput::Ids(ids_of(a)?)],
        Value::Array(a) if a.iter().all(Value::is_array) => a
            .iter()
            .map(|x| x.as_array().map(|x| ids_of(x)).unwrap_or_else(|| Err(bad("input", shape))).map(EmbedInput::Ids))
            .collect::<Result<_, _>>()?,
        _ => return Err(bad("input", shape)),
    })
}

/// `POST /v1/embeddings`.
pub async fn embeddings(node: web::Data<Node>, body: web::Payload) -> Result<HttpResponse, ApiError> {
    let mut admitted = Admission::enter(&node, None)?;
    let result = serve(&node, body, &mut admitted).await;
    admitted.end(&result);
    result
}

async fn serve(node: &Node, body: web::Payload, admitted: &mut Admission) -> Result<HttpResponse, ApiError> {
    let req: EmbeddingRequest = read_json(body, node.cfg.requests.max_body_bytes).await?;
    admitted.model(&req.model);
    if req.encoding_format.as_deref().is_some_and(|f| f != "float") {
        return Err(bad("encoding_format", "only \"float\" is supported"));
    }
    let done = embed(node, &req.model, inputs(&req.input)?, fastrand::u64(..)).await?;
    let data: Vec<Value> = done
        .embeddings
        .into_iter()
        .enumerate()
        .map(|(index, embedding)| json!({"object": "embedding", "index": index, "embedding": embedding}))
        .collect();
    Ok(HttpResponse::Ok().json(json!({"object": "list", "data": data, "model": req.model,
        "usage": {"prompt_tokens": done.tokens, "total_tokens": done.tokens}})))
}
