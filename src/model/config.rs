//! The configuration of a model, the same shape for every family: [`ModelConfig`], its parts
//! ([`Architecture`], [`Act`], [`RopeConfig`]) and its validation.
//!
//! Reading one out of `config.json` is the family's (`Family::read_config`, through
//! [`ConfigJson`](super::config_json::ConfigJson), in both the older and the newer
//! `transformers` spellings); [`ModelConfig::from_file`], which detects the family, is in
//! `open.rs`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::LoadError;

/// Bounds on sizes, so that a hostile config cannot make us allocate without limit
/// (the RoPE tables, the attention masks) before a single weight is checked.
const MAX_DIM: usize = 1 << 20;
const MAX_LAYERS: usize = 4096;
const MAX_POSITIONS: usize = 1 << 20;
const MAX_VOCAB: usize = 1 << 24;

/// The model families mlmf runs: one variant per family of the registry (`registry.rs`), which
/// also gives its [`Display`](std::fmt::Display) name, the lowercase spelling it serialises as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Architecture {
    /// GPT-2: learned positions, pre-LN blocks, fused QKV `Conv1D` weights stored `[in, out]`.
    Gpt2,
    /// LLaMA: RMSNorm, rotary positions (rotate-half layout), grouped-query attention, SwiGLU.
    Llama,
    /// BERT: post-LN encoder with token types, attention mask and a pooler.
    Bert,
}

/// The element-wise activation of the MLP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Act {
    /// `x * Φ(x)` with the exact error function (`gelu`).
    GeluExact,
    /// The tanh approximation (`gelu_new`, `gelu_pytorch_tanh`).
    GeluTanh,
    /// `max(0, x)`.
    Relu,
    /// `x * sigmoid(x)` (`silu`, `swish`).
    Silu,
}

impl Act {
    /// The activation of a `transformers` name (`hidden_act`, `activation_function`).
    pub(crate) fn parse(name: &str) -> Option<Act> {
        Some(match name {
            "gelu" | "gelu_python" => Act::GeluExact,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Act::GeluTanh,
            "relu" => Act::Relu,
            "silu" | "swish" => Act::Silu,
            _ => return None,
        })
    }
}

/// How rotary frequencies are scaled.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum RopeScaling {
    /// Plain RoPE.
    Default,
    /// Positions divided by `factor`.
    Linear {
        /// The divisor.
        factor: f64,
    },
    /// Llama 3's frequency-dependent scaling.
    Llama3 {
        /// The overall scale factor.
        factor: f64,
        /// Wavelengths above `original_max_position_embeddings / low_freq_factor` are scaled.
        low_freq_factor: f64,
        /// Wavelengths below `original_max_position_embeddings / high_freq_factor` are kept.
        high_freq_factor: f64,
        /// The context length the model was trained with.
        original_max_position_embeddings: f64,
    },
}

/// Rotary position embedding parameters (LLaMA).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RopeConfig {
    /// The base `θ` of the frequencies.
    pub theta: f64,
    /// Frequency scaling.
    pub scaling: RopeScaling,
}

/// A validated model configuration, the same shape for every architecture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// The family.
    pub arch: Architecture,
    /// Number of token embeddings.
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Number of transformer blocks.
    pub num_layers: usize,
    /// Number of query heads.
    pub num_heads: usize,
    /// Number of key/value heads (equal to `num_heads` without GQA).
    pub num_kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Width of the MLP's inner layer.
    pub intermediate_size: usize,
    /// Longest sequence the model accepts.
    pub max_positions: usize,
    /// Epsilon of the LayerNorm or RMSNorm.
    pub norm_eps: f64,
    /// MLP activation.
    pub act: Act,
    /// Whether the LM head reuses the token embedding matrix.
    pub tie_word_embeddings: bool,
    /// GPT-2: divide attention scores by `sqrt(head_dim)`.
    pub scale_attn_weights: bool,
    /// GPT-2: also divide attention scores by `layer_idx + 1`.
    pub scale_attn_by_inverse_layer_idx: bool,
    /// LLaMA: rotary embedding.
    pub rope: Option<RopeConfig>,
    /// LLaMA: q/k/v/o projections carry biases.
    pub attention_bias: bool,
    /// LLaMA: gate/up/down projections carry biases.
    pub mlp_bias: bool,
    /// BERT: number of token types.
    pub type_vocab_size: usize,
}

impl ModelConfig {
    /// Width of the query projection (`num_heads * head_dim`).
    pub fn q_width(&self) -> usize {
        self.num_heads * self.head_dim
    }

    /// Width of the key and value projections (`num_kv_heads * head_dim`).
    pub fn kv_width(&self) -> usize {
        self.num_kv_heads * self.head_dim
    }

    /// Checks every size against its bounds and the rules between them, naming the key.
    ///
    /// Two rules depend on the family, which says them (`Family::heads_divide_hidden`,
    /// `Family::token_types`): whether the heads must divide the hidden size (the head
    /// width is `hidden_size / num_heads`) and whether `type_vocab_size` must be at least 1.
    pub(crate) fn validate(&self, path: &Path, heads_divide_hidden: bool, token_types: bool) -> Result<(), LoadError> {
        let checks: [(&str, usize, usize); 8] = [
            ("vocab_size", self.vocab_size, MAX_VOCAB),
            ("hidden_size", self.hidden_size, MAX_DIM),
            ("num_hidden_layers", self.num_layers, MAX_LAYERS),
            ("num_attention_heads", self.num_heads, MAX_DIM),
            ("num_key_value_heads", self.num_kv_heads, MAX_DIM),
            ("head_dim", self.head_dim, MAX_DIM),
            ("intermediate_size", self.intermediate_size, MAX_DIM),
            ("max_position_embeddings", self.max_positions, MAX_POSITIONS),
        ];
        for (key, v, max) in checks {
            if v == 0 || v > max {
                return Err(LoadError::config(path, format!("{key} = {v} is out of range 1..={max}")));
            }
        }
        if !self.num_heads.is_multiple_of(self.num_kv_heads) {
            return Err(LoadError::config(
                path,
                format!(
                    "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                    self.num_heads, self.num_kv_heads
                ),
            ));
        }
        if heads_divide_hidden && self.q_width() != self.hidden_size {
            return Err(LoadError::config(
                path,
                format!("hidden size {} is not divisible by {} attention heads", self.hidden_size, self.num_heads),
            ));
        }
        // RoPE rotates the two halves of a head into each other: every rotary family (those
        // whose config has `rope`) needs an even head width.
        if self.rope.is_some() && !self.head_dim.is_multiple_of(2) {
            return Err(LoadError::config(path, format!("head_dim {} must be even for RoPE", self.head_dim)));
        }
        if !(self.norm_eps.is_finite() && self.norm_eps >= 0.0) {
            return Err(LoadError::config(
                path,
                format!("norm epsilon {} is not a finite non-negative number", self.norm_eps),
            ));
        }
        if let Some(rope) = &self.rope
            && !(rope.theta.is_finite() && rope.theta > 1.0)
        {
            return Err(LoadError::config(path, format!("rope_theta {} must be a finite number above 1", rope.theta)));
        }
        if token_types && self.type_vocab_size == 0 {
            return Err(LoadError::config(path, "type_vocab_size must be at least 1".into()));
        }
        Ok(())
    }
}
