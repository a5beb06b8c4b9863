//! A request against its model: [`ModelInput::validate`] and [`ForwardContext::new`], the two
//! per-request steps whose rules depend on the family (token types, causal attention).
//!
//! They are inherent methods of types defined in `input.rs` and `context.rs`, written here
//! because the families import those files: asking the registry for the family from there
//! would close an import cycle.

use burn::tensor::Device;

use super::config::ModelConfig;
use super::context::{ForwardContext, Rope};
use super::error::ForwardError;
use super::input::ModelInput;
use super::ops::{MASKED, tensor};
use super::registry;

impl ModelInput {
    /// Checks the input against the model, with a one-line reason on failure.
    pub fn validate(&self, cfg: &ModelConfig) -> Result<(), ForwardError> {
        let bad = |m: String| Err(ForwardError::InvalidInput(m));
        if self.batch == 0 || self.seq_len == 0 {
            return bad("input_ids is empty".into());
        }
        let n = self.batch.checked_mul(self.seq_len);
        if n != Some(self.input_ids.len()) {
            return bad(format!("{} token ids do not form {} x {}", self.input_ids.len(), self.batch, self.seq_len));
        }
        if self.seq_len > cfg.max_positions {
            return bad(format!(
                "sequence length {} exceeds the model's {} positions",
                self.seq_len, cfg.max_positions
            ));
        }
        if let Some(bad_id) = self.input_ids.iter().find(|&&t| t as usize >= cfg.vocab_size) {
            return bad(format!("token id {bad_id} is outside the vocabulary of {}", cfg.vocab_size));
        }
        if let Some(mask) = &self.attention_mask {
            if mask.len() != self.input_ids.len() {
                return bad(format!("attention_mask has {} values for {} tokens", mask.len(), self.input_ids.len()));
            }
            if mask.iter().any(|&m| m > 1) {
                return bad("attention_mask values must be 0 or 1".into());
            }
        }
        if let Some(tt) = &self.token_type_ids {
            if !registry::family(cfg.arch).token_types() {
                return bad(format!("token_type_ids are not used by {}", cfg.arch));
            }
            if tt.len() != self.input_ids.len() {
                return bad(format!("token_type_ids has {} values for {} tokens", tt.len(), self.input_ids.len()));
            }
            if let Some(t) = tt.iter().find(|&&t| t as usize >= cfg.type_vocab_size) {
                return bad(format!("token type {t} is outside the {} types", cfg.type_vocab_size));
            }
        }
        Ok(())
    }
}

impl ForwardContext {
    /// Builds the mask (causal for decoders, padding from the attention mask) and RoPE tables.
    pub fn new(cfg: &ModelConfig, input: &ModelInput, device: &Device) -> ForwardContext {
        ForwardContext::continuing(cfg, input, 0, device)
    }

    /// As [`ForwardContext::new`], for an input whose first token is at position `past`: the
    /// `past` cached positions before it are attended to as well (the attention mask covers
    /// the new tokens only), and RoPE continues from `past`.
    pub fn continuing(cfg: &ModelConfig, input: &ModelInput, past: usize, device: &Device) -> ForwardContext {
        let (b, l) = (input.batch, input.seq_len);
        let t = past + l;
        let causal = registry::family(cfg.arch).causal();
        let mut bias = vec![0.0f32; b * l * t];
        for bi in 0..b {
            for i in 0..l {
                for j in 0..t {
                    let padded = j >= past && input.attention_mask.as_ref().is_some_and(|m| m[bi * l + j - past] == 0);
                    if (causal && j > past + i) || padded {
                        bias[(bi * l + i) * t + j] = MASKED;
                    }
                }
            }
        }
        let rope = cfg.rope.as_ref().map(|r| Rope::at(r, cfg.head_dim, past, l, device));
        ForwardContext { mask_bias: tensor(bias, [b, 1, l, t], device), rope, past }
    }

    /// A batch of decode steps (one new token per row), row `i` continuing a cache of
    /// `pasts[i]` positions. The caches are laid out padded to the longest
    /// ([`super::kv_cache::LayerKv::padded`]) with the new token after them: row `i` attends
    /// its own positions and the new one, never the padding. `past` is the padded length.
    pub fn decoding(cfg: &ModelConfig, pasts: &[usize], device: &Device) -> ForwardContext {
        let len = pasts.iter().copied().max().unwrap_or(0);
        let t = len + 1;
        let mut bias = vec![0.0f32; pasts.len() * t];
        for (i, &p) in pasts.iter().enumerate() {
            for j in p..len {
                bias[i * t + j] = MASKED;
            }
        }
        let rope = cfg.rope.as_ref().map(|r| Rope::rows(r, cfg.head_dim, pasts, device));
        ForwardContext { mask_bias: tensor(bias, [pasts.len(), 1, 1, t], device), rope, past: len }
    }
}
