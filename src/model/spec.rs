//! What a stage holds: embeddings, a contiguous range of blocks, the head, and the
//! tensor-parallel slice of every block. Plain data, checked against a config; the plans
//! build these and the stage loader reads them.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use super::config::ModelConfig;
use super::error::LoadError;

/// One Megatron-style slice of every block: `rank` of `degree` equal parts of the attention
/// heads (and key/value heads) and of the MLP's inner columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TensorSlice {
    /// Which part, `0..degree`.
    pub rank: usize,
    /// Into how many parts.
    pub degree: usize,
}

impl TensorSlice {
    /// The whole block (degree 1).
    pub const WHOLE: TensorSlice = TensorSlice { rank: 0, degree: 1 };

    /// The part of `0..n` this slice holds (balanced; parts differ by at most one).
    pub fn part(&self, n: usize) -> Range<usize> {
        n * self.rank / self.degree..n * (self.rank + 1) / self.degree
    }

    /// Whether this is the whole block.
    pub fn is_whole(&self) -> bool {
        self.degree == 1
    }

    /// Whether this slice adds the row-parallel output biases (exactly one slice does).
    pub fn owns_bias(&self) -> bool {
        self.rank == 0
    }
}

/// How a range of blocks is written in JSON: `start` included, `end` excluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LayerRange {
    /// First block.
    pub start: usize,
    /// One past the last block.
    pub end: usize,
}

/// What a stage holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StageSpec {
    /// The token (and position) embeddings.
    pub embeddings: bool,
    /// The blocks, by index; may be empty.
    #[schema(value_type = LayerRange)]
    pub layers: Range<usize>,
    /// The final norm and LM head (decoders) or the pooler (BERT).
    pub head: bool,
    /// The tensor-parallel slice of every block.
    pub slice: TensorSlice,
}

impl StageSpec {
    /// The whole model in one stage.
    pub fn whole(cfg: &ModelConfig) -> StageSpec {
        StageSpec { embeddings: true, layers: 0..cfg.num_layers, head: true, slice: TensorSlice::WHOLE }
    }

    /// Checks the spec against a config.
    pub fn validate(&self, cfg: &ModelConfig) -> Result<(), LoadError> {
        let s = self.slice;
        if s.degree == 0 || s.rank >= s.degree {
            return Err(LoadError::InvalidStage(format!("slice rank {} of degree {}", s.rank, s.degree)));
        }
        if !cfg.num_heads.is_multiple_of(s.degree) || !cfg.num_kv_heads.is_multiple_of(s.degree) {
            return Err(LoadError::InvalidStage(format!(
                "tensor degree {} must divide the {} attention heads and {} key/value heads",
                s.degree, cfg.num_heads, cfg.num_kv_heads
            )));
        }
        if s.degree > cfg.intermediate_size {
            return Err(LoadError::InvalidStage(format!(
                "tensor degree {} exceeds the MLP width {}",
                s.degree, cfg.intermediate_size
            )));
        }
        if self.layers.start > self.layers.end || self.layers.end > cfg.num_layers {
            return Err(LoadError::InvalidStage(format!(
                "layers {:?} out of range of {} layers",
                self.layers, cfg.num_layers
            )));
        }
        if !self.embeddings && !self.head && self.layers.is_empty() {
            return Err(LoadError::InvalidStage("a stage must hold something".into()));
        }
        Ok(())
    }
}
