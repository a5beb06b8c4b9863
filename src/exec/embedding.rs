//! Embeddings in one process: a text tokenized as the model folder says, cut at its
//! `max_seq_length`, run through every stage for its last hidden state and pooled, exactly
//! as a cluster's `/v1/embeddings` computes it.

use crate::generate::{Pooling, TextTokenizer};
use crate::model::{ForwardError, ModelInput};

use super::local::{ExecError, LocalRunner, RunOptions};

impl LocalRunner {
    /// The pooled embedding of `ids` (at most the model's positions).
    pub fn embed_ids(&self, ids: &[u32], pooling: &Pooling) -> Result<Vec<f32>, ExecError> {
        let out = self.run(&ModelInput::single(ids), RunOptions::default())?;
        let states = out
            .tensors
            .get("last_hidden_state")
            .ok_or_else(|| ForwardError::StageMismatch("the model gives no last hidden state".into()))?;
        let width = states.shape.last().copied().unwrap_or(0);
        Ok(pooling.pool(&states.data, ids.len(), width))
    }

    /// The embedding of `text`: tokenized with `tok` (special tokens included), truncated at
    /// the pooling's limit as sentence-transformers truncates, pooled.
    pub fn embed_text(&self, tok: &TextTokenizer, pooling: &Pooling, text: &str) -> Result<Vec<f32>, EmbedTextError> {
        let mut ids = tok.encode_with_special_tokens(text)?;
        Pooling::truncate_text(&mut ids, pooling.limit(self.layout.config.max_positions));
        if ids.is_empty() {
            return Err(EmbedTextError::Empty);
        }
        Ok(self.embed_ids(&ids, pooling)?)
    }
}

/// Why a text could not be embedded.
#[derive(Debug, thiserror::Error)]
pub enum EmbedTextError {
    /// The tokenizer failed.
    #[error(transparent)]
    Tokenize(#[from] crate::generate::GenerateError),
    /// The text has no tokens.
    #[error("the text has no tokens")]
    Empty,
    /// The forward failed.
    #[error(transparent)]
    Exec(#[from] ExecError),
}
