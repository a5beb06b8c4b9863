//! What an application asks of a generation through a node handle or the manager
//! ([`GenerationRequest`], which is a `/v1/completions` body), and what it gets back per step
//! ([`GeneratedPiece`]).

use serde_json::{Value, json};

use super::sequence::Step;

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
    /// Top-k sampling (0: off).
    pub top_k: usize,
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
            top_k: 0,
            seed: None,
            stop: Vec::new(),
        }
    }

    /// The request as a streamed `/v1/completions` body (token ids returned).
    pub fn body(&self) -> Value {
        json!({"model": self.model_id, "prompt": self.prompt, "max_tokens": self.max_tokens,
            "temperature": self.temperature, "top_p": self.top_p, "top_k": self.top_k, "seed": self.seed, "stop": self.stop,
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

impl GeneratedPiece {
    /// The piece a step released.
    pub fn of(step: &Step) -> GeneratedPiece {
        GeneratedPiece {
            text: step.piece.clone(),
            token_ids: vec![step.token],
            finish_reason: step.finish.map(|f| f.name().to_string()),
        }
    }
}
