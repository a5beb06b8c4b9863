//! The loaded parts of a stage, as the stage runs them: [`Embeddings`], [`TransformerBlock`]
//! (each sublayer a partial and a combination, for tensor parallelism) and [`Head`] with its
//! [`HeadOutput`]. Each family implements them for its own structs.

use burn::tensor::{Device, Tensor};

use super::context::ForwardContext;
use super::input::ModelInput;
use super::kv_cache::LayerKv;

/// A block, or one tensor-parallel slice of it, as two sublayers each split into a partial
/// computation (on each slice) and a combination (after the partials are summed).
///
/// For a whole block `combine(x, partial(x))` is the sublayer; for slices, the sum of all
/// slices' partials stands in for the whole partial, as Megatron's row-parallel all-reduce.
pub trait TransformerBlock: Send {
    /// This slice's share of the attention sublayer's output projection.
    fn attention_partial(&self, x: Tensor<3>, ctx: &ForwardContext) -> Tensor<3> {
        self.attention_partial_kv(x, ctx, None)
    }
    /// As [`TransformerBlock::attention_partial`], for positions that continue `kv` (the
    /// block's cached keys and values, which this step's are appended to): attention covers
    /// the cached positions and the new ones. Encoders ignore the cache.
    fn attention_partial_kv(&self, x: Tensor<3>, ctx: &ForwardContext, kv: Option<&mut LayerKv>) -> Tensor<3>;
    /// Residual (and post-norm for BERT) after the attention all-reduce.
    fn attention_combine(&self, x: Tensor<3>, sum: Tensor<3>) -> Tensor<3>;
    /// This slice's share of the MLP's output projection.
    fn mlp_partial(&self, h: Tensor<3>) -> Tensor<3>;
    /// Residual (and post-norm for BERT) after the MLP all-reduce.
    fn mlp_combine(&self, h: Tensor<3>, sum: Tensor<3>) -> Tensor<3>;

    /// The whole block on one slice (exact only for a whole block).
    fn forward(&self, x: Tensor<3>, ctx: &ForwardContext) -> Tensor<3> {
        self.forward_kv(x, ctx, None)
    }

    /// As [`TransformerBlock::forward`], continuing the cache `kv`.
    fn forward_kv(&self, x: Tensor<3>, ctx: &ForwardContext, kv: Option<&mut LayerKv>) -> Tensor<3> {
        let a = self.attention_partial_kv(x.clone(), ctx, kv);
        let h = self.attention_combine(x, a);
        let m = self.mlp_partial(h.clone());
        self.mlp_combine(h, m)
    }
}

/// Token ids to the first hidden state.
pub trait Embeddings: Send {
    /// `[batch, seq, hidden]` for a validated input whose first token is at position `past`
    /// (the positions before it are in the cache).
    fn forward(&self, input: &ModelInput, past: usize, device: &Device) -> Tensor<3>;

    /// As [`Embeddings::forward`], row `i` starting at position `pasts[i]` (a batch of decode
    /// steps of sequences of different lengths). Embeddings without positions ignore them.
    fn forward_rows(&self, input: &ModelInput, pasts: &[usize], device: &Device) -> Tensor<3> {
        self.forward(input, pasts.first().copied().unwrap_or(0), device)
    }
}

/// What a head produces.
#[derive(Debug, Clone)]
pub struct HeadOutput {
    /// The final hidden state (after the final norm for decoders).
    pub last_hidden_state: Tensor<3>,
    /// `[batch, seq, vocab]` (decoders).
    pub logits: Option<Tensor<3>>,
    /// `[batch, hidden]` (BERT with a pooler).
    pub pooler_output: Option<Tensor<2>>,
}

/// The last hidden state to the model's outputs.
pub trait Head: Send {
    /// Applies the head to the output of the last block.
    fn forward(&self, x: Tensor<3>) -> HeadOutput;
}
