//! A stage: the part of a model one shard computes. Any of embeddings, a contiguous range of
//! blocks, and the head, optionally restricted to one tensor-parallel slice of every block.
//!
//! [`Stage::load`] is the one loader for every family: it asks the registry for the family of
//! the config and lets it load each part the spec names.

use burn::tensor::{Device, Tensor};

use super::checkpoint::MappedCheckpoint;
use super::config::ModelConfig;
use super::error::{ForwardError, LoadError};
use super::kv_cache::KvCache;
use super::registry;
use super::weights::WeightReader;

// The stage's vocabulary, defined in files of its own so that the families can import it
// without importing the stage loader; re-exported here under the paths it always had.
pub use super::context::{ForwardContext, Rope};
pub use super::input::ModelInput;
pub use super::parts::{Embeddings, Head, HeadOutput, TransformerBlock};
pub use super::spec::{StageSpec, TensorSlice};

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
        let family = registry::family(cfg.arch);
        let r = WeightReader { mapped, prefix: family.prefix(ckpt).to_string(), device };
        let embeddings = if spec.embeddings { Some(family.load_embeddings(&r, cfg)?) } else { None };
        let blocks =
            spec.layers.clone().map(|i| family.load_block(&r, cfg, i, spec.slice)).collect::<Result<_, _>>()?;
        let head = if spec.head { Some(family.load_head(&r, cfg)?) } else { None };
        Ok(Stage { spec: spec.clone(), config: cfg.clone(), device: device.clone(), embeddings, blocks, head })
    }

    /// Embeds a validated input.
    pub fn embed(&self, input: &ModelInput) -> Result<Tensor<3>, ForwardError> {
        self.embed_at(input, 0)
    }

    /// Embeds a validated input whose first token is at position `past` (a generation step
    /// continuing a cache of `past` positions).
    pub fn embed_at(&self, input: &ModelInput, past: usize) -> Result<Tensor<3>, ForwardError> {
        let emb = self
            .embeddings
            .as_ref()
            .ok_or_else(|| ForwardError::StageMismatch("this stage holds no embeddings".into()))?;
        input.validate(&self.config)?;
        if past + input.seq_len > self.config.max_positions {
            return Err(ForwardError::InvalidInput(format!(
                "{past} cached and {} new positions exceed the model's {} positions",
                input.seq_len, self.config.max_positions
            )));
        }
        Ok(emb.forward(input, past, &self.device))
    }

    /// An empty cache for one sequence at this stage.
    pub fn new_cache(&self) -> KvCache {
        KvCache::new(self.blocks.len())
    }

    /// The blocks of this stage, in order, with their model-wide indices.
    pub fn blocks(&self) -> impl Iterator<Item = (usize, &dyn TransformerBlock)> {
        self.spec.layers.clone().zip(self.blocks.iter().map(|b| b.as_ref()))
    }

    /// Runs every block of a whole (unsliced) stage; pushes each block's output to `trace`.
    pub fn run_blocks(
        &self,
        x: Tensor<3>,
        ctx: &ForwardContext,
        trace: Option<&mut Vec<(usize, Tensor<3>)>>,
    ) -> Result<Tensor<3>, ForwardError> {
        self.run_blocks_kv(x, ctx, trace, None)
    }

    /// As [`Stage::run_blocks`], continuing the sequence's `cache` when one is given (its
    /// positions must be `ctx.past`).
    pub fn run_blocks_kv(
        &self,
        mut x: Tensor<3>,
        ctx: &ForwardContext,
        mut trace: Option<&mut Vec<(usize, Tensor<3>)>>,
        mut cache: Option<&mut KvCache>,
    ) -> Result<Tensor<3>, ForwardError> {
        if !self.spec.slice.is_whole() {
            return Err(ForwardError::StageMismatch(
                "a tensor-parallel slice cannot run its blocks alone; its partial sums must be all-reduced".into(),
            ));
        }
        if let Some(c) = cache.as_deref()
            && (c.layers.len() != self.blocks.len() || c.positions() != ctx.past)
        {
            return Err(ForwardError::StageMismatch(format!(
                "a cache of {} blocks and {} positions does not continue {} blocks at position {}",
                c.layers.len(),
                c.positions(),
                self.blocks.len(),
                ctx.past
            )));
        }
        for (n, (i, block)) in self.blocks().enumerate() {
            let kv = cache.as_deref_mut().map(|c| &mut c.layers[n]);
            x = block.forward_kv(x, ctx, kv);
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
