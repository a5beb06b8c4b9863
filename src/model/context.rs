//! Per-request state every block reads: the additive attention mask and the rotary tables.
//! [`ForwardContext::new`], which asks the family whether attention is causal, is in
//! `request.rs`.

use burn::tensor::{Device, Tensor};

use super::config::{RopeConfig, RopeScaling};
use super::ops::tensor;

/// Rotary tables for one request: `cos`, `sin` of shape `[seq, head_dim]` (rotate-half layout).
#[derive(Debug, Clone)]
pub struct Rope {
    cos: Tensor<4>,
    sin: Tensor<4>,
}

impl Rope {
    /// Tables for positions `0..seq_len`, computed in f32 as HF does.
    pub fn new(rope: &RopeConfig, head_dim: usize, seq_len: usize, device: &Device) -> Rope {
        Rope::at(rope, head_dim, 0, seq_len, device)
    }

    /// Tables for positions `start..start + seq_len` (a step continuing a cache).
    pub fn at(rope: &RopeConfig, head_dim: usize, start: usize, seq_len: usize, device: &Device) -> Rope {
        let half = head_dim / 2;
        let inv_freq: Vec<f32> = (0..half)
            .map(|j| {
                let base = 1.0f32 / (rope.theta as f32).powf((2 * j) as f32 / head_dim as f32);
                scale_frequency(base, &rope.scaling)
            })
            .collect();
        let mut cos = Vec::with_capacity(seq_len * head_dim);
        let mut sin = Vec::with_capacity(seq_len * head_dim);
        for pos in start..start + seq_len {
            for j in 0..head_dim {
                let angle = pos as f32 * inv_freq[j % half];
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        Rope {
            cos: tensor(cos, [1, 1, seq_len, head_dim], device),
            sin: tensor(sin, [1, 1, seq_len, head_dim], device),
        }
    }

    /// Tables for one position per row (`[rows, 1, 1, head_dim]`): a batch of decode steps,
    /// row `i` at position `positions[i]`.
    pub fn rows(rope: &RopeConfig, head_dim: usize, positions: &[usize], device: &Device) -> Rope {
        let one = |p: usize| Rope::at(rope, head_dim, p, 1, device);
        let tables: Vec<Rope> = positions.iter().map(|&p| one(p)).collect();
        Rope {
            cos: Tensor::cat(tables.iter().map(|t| t.cos.clone()).collect(), 0),
            sin: Tensor::cat(tables.iter().map(|t| t.sin.clone()).collect(), 0),
        }
    }

    /// Rotates `[b, h, seq, d]`: `x * cos + rotate_half(x) * sin`.
    pub fn apply(&self, x: Tensor<4>) -> Tensor<4> {
        let d = x.dims()[3];
        let x1 = x.clone().narrow(3, 0, d / 2);
        let x2 = x.clone().narrow(3, d / 2, d / 2);
        let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
        x * self.cos.clone() + rotated * self.sin.clone()
    }
}

fn scale_frequency(inv_freq: f32, scaling: &RopeScaling) -> f32 {
    match *scaling {
        RopeScaling::Default => inv_freq,
        RopeScaling::Linear { factor } => inv_freq / factor as f32,
        RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position_embeddings: old } => {
            let (factor, low, high, old) = (factor as f32, low_freq_factor as f32, high_freq_factor as f32, old as f32);
            let wavelen = 2.0 * std::f32::consts::PI / inv_freq;
            let low_wavelen = old / low;
            let high_wavelen = old / high;
            if wavelen > low_wavelen {
                inv_freq / factor
            } else if wavelen < high_wavelen {
                inv_freq
            } else {
                let smooth = (old / wavelen - low) / (high - low);
                (1.0 - smooth) * inv_freq / factor + smooth * inv_freq
            }
        }
    }
}

/// Per-request state every block needs: the additive attention mask and the rotary tables.
#[derive(Debug, Clone)]
pub struct ForwardContext {
    /// `[batch, 1, seq, past + seq]`: 0 where a query may attend,
    /// [`MASKED`](super::ops::MASKED) elsewhere.
    pub mask_bias: Tensor<4>,
    /// Positions before this input, held in the caches it continues (0 without a cache).
    pub past: usize,
    /// Rotary tables (LLaMA).
    pub rope: Option<Rope>,
}
