//! `POST /v1/embeddings`, OpenAI-compatible: each input (text or token ids) runs through the
//! cluster for its last hidden state, pooled on the node that took the request as the model's
//! sentence-transformers configuration says (mean, CLS or max; normalised when `modules.json`
//! lists Normalize), after truncation at its `max_seq_length`.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::cluster::infer::{InferOptions, infer};
use crate::cluster::node::Node;
use crate::model::ModelInput;

use super::body::read_json;
use super::error::ApiError;
use super::model_files::{model_pooling, model_tokenizer, ready_model};

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

enum Input {
    Text(String),
    Ids(Vec<u32>),
}

fn bad(field: &str, message: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request("invalid_request", format!("{field}: {message}"))
}

fn ids_of(v: &[Value], vocab: usize) -> Result<Vec<u32>, ApiError> {
    v.iter()
        .map(|i| i.as_u64().and_then(|i| u32::try_from(i).ok()).filter(|&i| (i as usize) < vocab))
        .collect::<Option<Vec<u32>>>()
        .ok_or_else(|| bad("input", format!("token ids must be integers in 0..{vocab}")))
}

fn inputs(v: &Value, vocab: usize) -> Result<Vec<Input>, ApiError> {
    let shape = "must be a text, a list of texts, a list of token ids or a list of lists of token ids";
    let out = match v {
        Value::String(s) => vec![Input::Text(s.clone())],
        Value::Array(a) if a.is_empty() => return Err(bad("input", "is empty")),
        Value::Array(a) if a.iter().all(Value::is_string) => {
            a.iter().map(|s| Input::Text(s.as_str().unwrap_or_default().to_string())).collect()
        }
        Value::Array(a) if a.iter().all(Value::is_number) => vec![Input::Ids(ids_of(a, vocab)?)],
        Value::Array(a) if a.iter().all(Value::is_array) => a
            .iter()
            .map(|x| x.as_array().map(|x| ids_of(x, vocab)).unwrap_or_else(|| Err(bad("input", shape))).map(Input::Ids))
            .collect::<Result<_, _>>()?,
        _ => return Err(bad("input", shape)),
    };
    if out.len() > MAX_INPUTS {
        return Err(bad("input", format!("at most {MAX_INPUTS} inputs per request")));
    }
    Ok(out)
}

/// `POST /v1/embeddings`.
pub async fn embeddings(node: web::Data<Node>, body: web::Payload) -> Result<HttpResponse, ApiError> {
    let req: EmbeddingRequest = read_json(body, node.cfg.requests.max_body_bytes).await?;
    if req.encoding_format.as_deref().is_some_and(|f| f != "float") {
        return Err(bad("encoding_format", "only \"float\" is supported"));
    }
    let cfg = ready_model(&node, &req.model)?;
    let tok = model_tokenizer(&node, &req.model)?;
    let pooling = model_pooling(&node, &req.model)?;
    let limit = pooling.max_seq_length.unwrap_or(cfg.max_positions).min(cfg.max_positions);
    let mut data = Vec::new();
    let mut tokens = 0;
    for (index, input) in inputs(&req.input, cfg.vocab_size)?.into_iter().enumerate() {
        let mut ids = match input {
            Input::Text(t) => {
                let tok = tok.as_ref().ok_or_else(|| bad("input", "this model has no tokenizer: send token ids"))?;
                let mut ids = tok.encode_with_special_tokens(&t).map_err(|e| bad("input", e))?;
                if ids.len() > limit {
                    // As sentence-transformers truncates: the closing special token stays.
                    let last = ids[ids.len() - 1];
                    ids.truncate(limit - 1);
                    ids.push(last);
                }
                ids
            }
            Input::Ids(ids) => ids,
        };
        if ids.is_empty() {
            return Err(bad("input", format!("input {index} is empty")));
        }
        ids.truncate(limit);
        tokens += ids.len();
        let opts = InferOptions { outputs: Some(vec!["last_hidden_state".into()]), ..InferOptions::default() };
        let served = infer(&node, &req.model, ModelInput::single(&ids), opts, fastrand::u64(..)).await?;
        let states = served
            .outputs
            .tensors
            .get("last_hidden_state")
            .ok_or_else(|| ApiError::new(500, "no_hidden_state", "the model returned no last hidden state"))?;
        let width = states.shape.last().copied().unwrap_or(0);
        let embedding = pooling.pool(&states.data, ids.len(), width);
        data.push(json!({"object": "embedding", "index": index, "embedding": embedding}));
    }
    Ok(HttpResponse::Ok().json(json!({"object": "list", "data": data, "model": req.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})))
}
