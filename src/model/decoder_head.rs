//! The head GPT-2 and LLaMA share: the final norm (GPT-2's LayerNorm, LLaMA's RMSNorm), then
//! the LM matrix, which is the token embedding matrix when tied and `lm_head.weight` else.

use burn::tensor::Tensor;

use super::config::ModelConfig;
use super::error::LoadError;
use super::family::NamedShape;
use super::ops::{LayerNorm, Linear, RmsNorm};
use super::parts::{Head, HeadOutput};
use super::weights::WeightReader;

/// The untied LM matrix's name. `transformers` keeps it outside the model's prefix
/// (`lm_head.weight` next to `transformer.h.0...`).
const LM_HEAD: &str = "lm_head.weight";

/// The final norm of a decoder: GPT-2's LayerNorm `ln_f`, LLaMA's RMSNorm `norm`.
pub(crate) trait FinalNorm: Send + 'static {
    /// Normalises `[batch, seq, hidden]`.
    fn normalise(&self, x: Tensor<3>) -> Tensor<3>;
}

impl FinalNorm for LayerNorm {
    fn normalise(&self, x: Tensor<3>) -> Tensor<3> {
        self.forward(x)
    }
}

impl FinalNorm for RmsNorm {
    fn normalise(&self, x: Tensor<3>) -> Tensor<3> {
        self.forward(x)
    }
}

/// Final norm, then the LM matrix: the last hidden state and the logits.
pub(crate) struct DecoderHead<N> {
    /// Applied to the last block's output.
    pub norm: N,
    /// `[hidden, vocab]`, no bias.
    pub lm_head: Linear,
}

impl<N: FinalNorm> Head for DecoderHead<N> {
    fn forward(&self, x: Tensor<3>) -> HeadOutput {
        let last = self.norm.normalise(x);
        let logits = self.lm_head.forward(last.clone());
        HeadOutput { last_hidden_state: last, logits: Some(logits), pooler_output: None }
    }
}

/// The full name and shape of the LM matrix: the embedding `{p}{embedding}` when tied.
pub(crate) fn lm_head_tensor(cfg: &ModelConfig, p: &str, embedding: &str) -> NamedShape {
    let lm = if cfg.tie_word_embeddings { format!("{p}{embedding}") } else { LM_HEAD.to_string() };
    (lm, vec![cfg.vocab_size, cfg.hidden_size])
}

/// Loads the LM matrix, stored `[vocab, hidden]`, as a bias-free layer `[hidden, vocab]`;
/// `embedding` is the token embedding's name under the prefix, read when tied.
pub(crate) fn load_lm_head(r: &WeightReader, cfg: &ModelConfig, embedding: &str) -> Result<Linear, LoadError> {
    let (h, v) = (cfg.hidden_size, cfg.vocab_size);
    if cfg.tie_word_embeddings {
        r.linear_whole(embedding, [v, h])
    } else {
        WeightReader { mapped: r.mapped, prefix: String::new(), device: r.device }.linear_whole(LM_HEAD, [v, h])
    }
}
