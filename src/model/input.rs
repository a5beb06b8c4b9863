//! One request's inputs: token ids, attention mask and token types of a batch of equally long
//! sequences. Its check against a model, which depends on the family, is
//! [`ModelInput::validate`] in `request.rs`.

use serde::{Deserialize, Serialize};

/// One request's inputs: a batch of equally long token sequences, row-major.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInput {
    /// Sequences in the batch.
    pub batch: usize,
    /// Tokens per sequence.
    pub seq_len: usize,
    /// `batch * seq_len` token ids.
    pub input_ids: Vec<u32>,
    /// `batch * seq_len` of 1 (attend) or 0 (padding); all ones when absent.
    pub attention_mask: Option<Vec<u8>>,
    /// `batch * seq_len` token type ids (BERT); all zeros when absent.
    pub token_type_ids: Option<Vec<u32>>,
}

impl ModelInput {
    /// One sequence, no mask, no token types.
    pub fn single(ids: &[u32]) -> ModelInput {
        ModelInput { batch: 1, seq_len: ids.len(), input_ids: ids.to_vec(), attention_mask: None, token_type_ids: None }
    }
}
