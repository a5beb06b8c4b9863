//! `POST /v1/embeddings`, OpenAI-compatible: the request's inputs (text or token ids) parsed
//! and bounded here, embedded by [`crate::cluster::embedding::embed`] (the model's pooling,
//! normalisation and truncation), answered in OpenAI's shape.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::cluster::embedding::{EmbedInput, embed};
use crate::cluster::node::Node;

use super::admission::{Admission, admitted};
use super::body::read_json;
use super::error::ApiError;
use crate::cluster::trace::TraceId;
use futures_util::FutureExt;

/// Most inputs one request may embed.
const MAX_INPUTS: usize = 256;

/// `POST /v1/embeddings`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct EmbeddingRequest {
    /// Model id.
    pub model: String,
    /// A text, a list of texts, a list of token ids, or a list of lists of token ids.
    pub input: Value,
    /// `float` (the default: JSON numbers) or `base64` (the little-endian f32 bytes, as
    /// OpenAI's SDKs ask by default).
    #[serde(default)]
    pub encoding_format: Option<String>,
    /// The vectors' width; only the model's own is possible.
    #[serde(default)]
    pub dimensions: Option<u64>,
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

/// `POST /v1/embeddings`: one pooled vector per input.
#[utoipa::path(post, path = "/v1/embeddings", tag = "openai", request_body = EmbeddingRequest,
    responses((status = 200, description = "The embeddings", body = super::schemas::EmbeddingResponse), super::schemas::OpenAiErrors))]
pub async fn embeddings(
    node: web::Data<Node>,
    http: actix_web::HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let n = node.clone();
    admitted(&n, &http, move |trace, slot| serve(node, body, trace, slot).boxed_local()).await
}

async fn serve(
    node: web::Data<Node>,
    body: web::Payload,
    trace: TraceId,
    slot: &mut Option<Admission>,
) -> Result<HttpResponse, ApiError> {
    let req: EmbeddingRequest = read_json(body, node.cfg.requests.max_body_bytes).await?;
    Admission::name_model(slot, &req.model)?;
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(_) => return Err(bad("encoding_format", "must be \"float\" or \"base64\"")),
    };
    let done = embed(&node, &req.model, inputs(&req.input)?, fastrand::u64(..), trace).await?;
    Admission::of(slot)?.tokens(done.tokens, 0);
    let width = done.embeddings.first().map(Vec::len).unwrap_or(0);
    if let Some(d) = req.dimensions.filter(|&d| d != width as u64) {
        return Err(bad("dimensions", format!("this model's embeddings have {width} dimensions, not {d}")));
    }
    let data: Vec<Value> = done
        .embeddings
        .into_iter()
        .enumerate()
        .map(|(index, embedding)| {
            let embedding = if base64 { json!(encode_base64(&embedding)) } else { json!(embedding) };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({"object": "list", "data": data, "model": req.model,
        "usage": {"prompt_tokens": done.tokens, "total_tokens": done.tokens}})))
}

/// The little-endian bytes of `v`, base64 (standard alphabet, padded), as OpenAI encodes them.
fn encode_base64(v: &[f32]) -> String {
    use base64::Engine;
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
