//! Embeddings on the cluster: each input (a text, tokenized with the model's tokenizer and
//! its special tokens, or token ids) runs through the model's routes for its last hidden
//! state, pooled on the node that took the request as the model's sentence-transformers
//! configuration says, after truncation at its `max_seq_length`. The HTTP route
//! (`/v1/embeddings`) and an embedding application's [`RunningNode`] both call [`embed`].
//!
//! [`RunningNode`]: ../../server/struct.RunningNode.html

use super::batching::infer_batched;
use super::infer::{InferError, InferOptions};
use super::node::Node;
use super::node::model_files::{model_pooling, model_tokenizer, ready_model};
use super::wire::ApiError;
use crate::model::ModelInput;

/// One input to embed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmbedInput {
    /// Text, tokenized with the model's tokenizer (special tokens included).
    Text(String),
    /// Token ids, as they are (cut at the model's limit).
    Ids(Vec<u32>),
}

/// The embeddings of a request's inputs, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedded {
    /// One vector per input.
    pub embeddings: Vec<Vec<f32>>,
    /// Tokens embedded, all inputs together (after truncation).
    pub tokens: usize,
}

/// Why inputs could not be embedded.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// The model is not ready, or its folder could not be read.
    #[error("{}", .0.message)]
    Model(ApiError),
    /// An input is unusable (empty, ids out of the vocabulary, text without a tokenizer).
    #[error("input: {0}")]
    Input(String),
    /// No route could compute an input.
    #[error(transparent)]
    Infer(#[from] InferError),
    /// The last stage returned no hidden state (a model whose head does not give one).
    #[error("the model returned no last hidden state")]
    NoHiddenState,
}

/// Embeds `inputs` with model `model` through the cluster from `node`.
pub async fn embed(
    node: &Node,
    model: &str,
    inputs: Vec<EmbedInput>,
    request_id: u64,
    trace: super::trace::TraceId,
) -> Result<Embedded, EmbedError> {
    let cfg = ready_model(node, model).map_err(EmbedError::Model)?;
    let tok = model_tokenizer(node, model).map_err(EmbedError::Model)?;
    let pooling = model_pooling(node, model).map_err(EmbedError::Model)?;
    let limit = pooling.limit(cfg.max_positions);
    let mut rows: Vec<Vec<u32>> = Vec::with_capacity(inputs.len());
    for (index, input) in inputs.into_iter().enumerate() {
        let ids = match input {
            EmbedInput::Text(t) => {
                let tok = tok
                    .as_ref()
                    .ok_or_else(|| EmbedError::Input("this model has no tokenizer: send token ids".into()))?;
                let mut ids = tok.encode_with_special_tokens(&t).map_err(|e| EmbedError::Input(e.to_string()))?;
                crate::generate::Pooling::truncate_text(&mut ids, limit);
                ids
            }
            EmbedInput::Ids(mut ids) => {
                if let Some(bad) = ids.iter().find(|&&i| i as usize >= cfg.vocab_size) {
                    return Err(EmbedError::Input(format!("token id {bad} is outside 0..{}", cfg.vocab_size)));
                }
                ids.truncate(limit);
                ids
            }
        };
        if ids.is_empty() {
            return Err(EmbedError::Input(format!("input {index} is empty")));
        }
        rows.push(ids);
    }
    // Every input at once: the batcher packs them (and concurrent requests' inputs) into
    // as few forwards as its budget allows.
    let forwards = rows.iter().map(|ids| {
        let opts = InferOptions { outputs: Some(vec!["last_hidden_state".into()]), trace, ..InferOptions::default() };
        infer_batched(node, model, ModelInput::single(ids), opts, request_id)
    });
    let served = futures_util::future::join_all(forwards).await;
    let mut out = Embedded { embeddings: Vec::with_capacity(rows.len()), tokens: 0 };
    for (ids, served) in rows.iter().zip(served) {
        let served = served?;
        out.tokens += ids.len();
        let states = served.outputs.tensors.get("last_hidden_state").ok_or(EmbedError::NoHiddenState)?;
        let width = states.shape.last().copied().unwrap_or(0);
        if width == 0 || states.data.len() != ids.len() * width {
            return Err(EmbedError::NoHiddenState);
        }
        out.embeddings.push(pooling.pool(&states.data, ids.len(), width));
    }
    Ok(out)
}
