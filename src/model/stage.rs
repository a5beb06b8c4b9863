//! A stage: the part of a model one shard computes. Any of embeddings, a contiguous range of
//! blocks, and the head, optionally restricted to one tensor-parallel slice of every block.

use std::ops::Range;

use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::checkpoint::MappedCheckpoint;
use super::config::{Architecture, ModelConfig, RopeConfig, RopeScaling};
use super::error::{ForwardError, LoadError};
use super::ops::{MASKED, tensor};
use super::{bert, gpt2, llama};

/// One Megatron-style slice of every block: `rank` of `degree` equal parts of the attention
/// heads (and key/value heads) and of the MLP's inner columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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

/// What a stage holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StageSpec {
    /// The token (and position) embeddings.
    pub embeddings: bool,
    /// The blocks, by index; may be empty.
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
            if cfg.arch != Architecture::Bert {
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

/// Rotary tables for one request: `cos`, `sin` of shape `[seq, head_dim]` (rotate-half layout).
#[derive(Debug, Clone)]
pub struct Rope {
    cos: Tensor<4>,
    sin: Tensor<4>,
}

impl Rope {
    /// Tables for positions `0..seq_len`, computed in f32 as HF does.
    pub fn new(rope: &RopeConfig, head_dim: usize, seq_len: usize, device: &Device) -> Rope {
        let half = head_dim / 2;
        let inv_freq: Vec<f32> = (0..half)
            .map(|j| {
                let base = 1.0f32 / (rope.theta as f32).powf((2 * j) as f32 / head_dim as f32);
                scale_frequency(base, &rope.scaling)
            })
            .collect();
        let mut cos = Vec::with_capacity(seq_len * head_dim);
        let mut sin = Vec::with_capacity(seq_len * head_dim);
        for pos in 0..seq_len {
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
    /// `[batch, 1, seq, seq]`: 0 where a query may attend, [`MASKED`] elsewhere.
    pub mask_bias: Tensor<4>,
    /// Rotary tables (LLaMA).
    pub rope: Option<Rope>,
}

impl ForwardContext {
    /// Builds the mask (causal for decoders, padding from the attention mask) and RoPE tables.
    pub fn new(cfg: &ModelConfig, input: &ModelInput, device: &Device) -> ForwardContext {
        let (b, l) = (input.batch, input.seq_len);
        let causal = cfg.arch != Architecture::Bert;
        let mut bias = vec![0.0f32; b * l * l];
        for bi in 0..b {
            for i in 0..l {
                for j in 0..l {
                    let padded = input.attention_mask.as_ref().is_some_and(|m| m[bi * l + j] == 0);
                    if (causal && j > i) || padded {
                        bias[(bi * l + i) * l + j] = MASKED;
                    }
                }
            }
        }
        let rope = cfg.rope.as_ref().map(|r| Rope::new(r, cfg.head_dim, l, device));
        ForwardContext { mask_bias: tensor(bias, [b, 1, l, l], device), rope }
    }
}

/// A block, or one tensor-parallel slice of it, as two sublayers each split into a partial
/// computation (on each slice) and a combination (after the partials are summed).
///
/// For a whole block `combine(x, partial(x))` is the sublayer; for slices, the sum of all
/// slices' partials stands in for the whole partial, as Megatron's row-parallel all-reduce.
pub trait TransformerBlock: Send {
    /// This slice's share of the attention sublayer's output projection.
    fn attention_partial(&self, x: Tensor<3>, ctx: &ForwardContext) -> Tensor<3>;
    /// Residual (and post-norm for BERT) after the attention all-reduce.
    fn attention_combine(&self, x: Tensor<3>, sum: Tensor<3>) -> Tensor<3>;
    /// This slice's share of the MLP's output projection.
    fn mlp_partial(&self, h: Tensor<3>) -> Tensor<3>;
    /// Residual (and post-norm for BERT) after the MLP all-reduce.
    fn mlp_combine(&self, h: Tensor<3>, sum: Tensor<3>) -> Tensor<3>;

    /// The whole block on one slice (exact only for a whole block).
    fn forward(&self, x: Tensor<3>, ctx: &ForwardContext) -> Tensor<3> {
        let a = self.attention_partial(x.clone(), ctx);
        let h = self.attention_combine(x, a);
        let m = self.mlp_partial(h.clone());
        self.mlp_combine(h, m)
    }
}

/// Token ids to the first hidden state.
pub trait Embeddings: Send {
    /// `[batch, seq, hidden]` for a validated input.
    fn forward(&self, input: &ModelInput, device: &Device) -> Tensor<3>;
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

/// A loaded stage on a device.
pub struct Stage {
    /// What it holds.
    pub spec: StageSpec,
    /// The model's config.
    pub config: ModelConfig,
    /// The device its tensors live on.
    pub device: Device,
    embeddings: Option<Box<dyn Embeddings>>,
    blocks: Vec<Box<dyn TransformerBlock>>,
    head: Option<Box<dyn Head>>,
}

impl std::fmt::Debug for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stage").field("spec", &self.spec).field("arch", &self.config.arch).finish()
    }
}

impl Stage {
    /// Materialises the tensors of `spec` (and only those) from a mapped checkpoint.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use mlmf::model::{Checkpoint, ModelInput, Stage, StageSpec};
    /// let ckpt = Arc::new(Checkpoint::open("tests/fixtures/gpt2_tiny".as_ref()).unwrap());
    /// let mapped = ckpt.map().unwrap();
    /// let device = burn::tensor::Device::flex();
    /// let stage = Stage::load(&mapped, &StageSpec::whole(&ckpt.config), &device).unwrap();
    /// let out = stage.run(&ModelInput::single(&[3, 17, 42]), None).unwrap();
    /// ```
    pub fn load(mapped: &MappedCheckpoint, spec: &StageSpec, device: &Device) -> Result<Stage, LoadError> {
        let ckpt = mapped.checkpoint();
        let cfg = &ckpt.config;
        spec.validate(cfg)?;
        let parts = match cfg.arch {
            Architecture::Gpt2 => gpt2::load(mapped, spec, device)?,
            Architecture::Llama => llama::load(mapped, spec, device)?,
            Architecture::Bert => bert::load(mapped, spec, device)?,
        };
        Ok(Stage {
            spec: spec.clone(),
            config: cfg.clone(),
            device: device.clone(),
            embeddings: parts.embeddings,
            blocks: parts.blocks,
            head: parts.head,
        })
    }

    /// Embeds a validated input.
    pub fn embed(&self, input: &ModelInput) -> Result<Tensor<3>, ForwardError> {
        let emb = self
            .embeddings
            .as_ref()
            .ok_or_else(|| ForwardError::StageMismatch("this stage holds no embeddings".into()))?;
        input.validate(&self.config)?;
        Ok(emb.forward(input, &self.device))
    }

    /// The blocks of this stage, in order, with their model-wide indices.
    pub fn blocks(&self) -> impl Iterator<Item = (usize, &dyn TransformerBlock)> {
        self.spec.layers.clone().zip(self.blocks.iter().map(|b| b.as_ref()))
    }

    /// Runs every block of a whole (unsliced) stage; pushes each block's output to `trace`.
    pub fn run_blocks(
        &self,
        mut x: Tensor<3>,
        ctx: &ForwardContext,
        mut trace: Option<&mut Vec<(usize, Tensor<3>)>>,
    ) -> Result<Tensor<3>, ForwardError> {
        if !self.spec.slice.is_whole() {
            return Err(ForwardError::StageMismatch(
                "a tensor-parallel slice cannot run its blocks alone; its partial sums must be all-reduced".into(),
            ));
        }
        for (i, block) in self.blocks() {
            x = block.forward(x, ctx);
            if let Some(t) = trace.as_deref_mut() {
                t.push((i, x.clone()));
            }
        }
        Ok(x)
    }

    /// Applies the head.
    pub fn head(&self, x: Tensor<3>) -> Result<HeadOutput, ForwardError> {
        let head = self.head.as_ref().ok_or_else(|| ForwardError::StageMismatch("this stage holds no head".into()))?;
        Ok(head.forward(x))
    }

    /// Runs a whole-model stage end to end (embeddings, blocks, head).
    pub fn run(
        &self,
        input: &ModelInput,
        trace: Option<&mut Vec<(usize, Tensor<3>)>>,
    ) -> Result<HeadOutput, ForwardError> {
        let x = self.embed(input)?;
        let ctx = ForwardContext::new(&self.config, input, &self.device);
        let x = self.run_blocks(x, &ctx, trace)?;
        self.head(x)
    }
}

/// What an architecture's loader returns for a stage.
pub(crate) struct StageParts {
    pub embeddings: Option<Box<dyn Embeddings>>,
    pub blocks: Vec<Box<dyn TransformerBlock>>,
    pub head: Option<Box<dyn Head>>,
}
