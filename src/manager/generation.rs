//! Text generation through a [`SimpleDistributedManager`](super::SimpleDistributedManager):
//! [`GenerationRequest`] in, a stream of [`GeneratedPiece`]s out, served by the cluster's
//! `/v1/completions` (each node holding its stage's KV cache; the node that took the request
//! holds the sequence).

use futures_util::Stream;
use serde_json::{Value, json};

use crate::client::ClusterClient;

use super::error::DeployError;

/// A completion to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationRequest {
    /// Model id.
    pub model_id: String,
    /// The prompt (tokenized with the model's tokenizer).
    pub prompt: String,
    /// Tokens to generate at most.
    pub max_tokens: usize,
    /// 0 is greedy.
    pub temperature: f32,
    /// Nucleus sampling (1: off).
    pub top_p: f32,
    /// Makes sampling reproducible.
    pub seed: Option<u64>,
    /// Texts that end the completion.
    pub stop: Vec<String>,
}

impl GenerationRequest {
    /// Greedy, 16 tokens.
    pub fn new(model_id: &str, prompt: &str) -> GenerationRequest {
        GenerationRequest {
            model_id: model_id.into(),
            prompt: prompt.into(),
            max_tokens: 16,
            temperature: 0.0,
            top_p: 1.0,
            seed: None,
            stop: Vec::new(),
        }
    }

    fn body(&self) -> Value {
        json!({"model": self.model_id, "prompt": self.prompt, "max_tokens": self.max_tokens,
            "temperature": self.temperature, "top_p": self.top_p, "seed": self.seed, "stop": self.stop,
            "stream": true, "return_token_ids": true})
    }
}

/// One step of a streamed completion.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratedPiece {
    /// The text this step released (may be empty while a character is incomplete).
    pub text: String,
    /// The token chosen.
    pub token_ids: Vec<u32>,
    /// Set on the last piece: `stop` or `length`.
    pub finish_reason: Option<String>,
}

/// Streams `req` from the node `client` speaks to; runs on the current actix runtime.
pub fn stream(
    client: &ClusterClient,
    req: &GenerationRequest,
) -> impl Stream<Item = Result<GeneratedPiece, DeployError>> + use<> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let (client, body) = (client.clone(), req.body());
    actix_web::rt::spawn(async move {
        let sent = client
            .completion(&body, |chunk| {
                let c = &chunk["choices"][0];
                let piece = GeneratedPiece {
                    text: c["text"].as_str().unwrap_or_default().to_string(),
                    token_ids: c["token_ids"]
                        .as_array()
                        .map(|a| a.iter().filter_map(|t| t.as_u64().map(|t| t as u32)).collect())
                        .unwrap_or_default(),
                    finish_reason: c["finish_reason"].as_str().map(str::to_string),
                };
                let _ = tx.send(Ok(piece));
            })
            .await;
        if let Err(e) = sent {
            let _ = tx.send(Err(DeployError::from(e)));
        }
    });
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) })
}
