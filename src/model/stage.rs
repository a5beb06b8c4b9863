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

    /// Embeds a batch of decode steps: row `i` one token at position `pasts[i]`.
    pub fn embed_rows(&self, input: &ModelInput, pasts: &[usize]) -> Result<Tensor<3>, ForwardError> {
        let emb = self
            .embeddings
            .as_ref()
            .ok_or_else(|| ForwardError::StageMismatch("this stage holds no embeddings".into()))?;
        input.validate(&self.config)?;
        if input.batch != pasts.len() || input.seq_len != 1 {
            return Err(ForwardError::InvalidInput(format!(
                "a batch of {} decode steps needs {} rows of one token, not {}x{}",
                pasts.len(),
                pasts.len(),
                input.batch,
                input.seq_len
            )));
        }
        if let Some(p) = pasts.iter().find(|&&p| p + 1 > self.config.max_positions) {
            return Err(ForwardError::InvalidInput(format!(
                "{p} cached positions and a new one exceed the model's {} positions",
                self.config.max_positions
            )));
        }
        Ok(emb.forward_rows(input, pasts, &self.device))
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

    /// Runs every block for a batch of decode steps (`x` is `[rows, 1, hidden]`, `ctx` from
    /// [`ForwardContext::decoding`]), row `i` continuing `caches[i]`, which each gain the
    /// row's new position.
    pub fn run_blocks_rows(
        &self,
        mut x: Tensor<3>,
        ctx: &ForwardContext,
        caches: &mut [KvCache],
    ) -> Result<Tensor<3>, ForwardError> {
        if !self.spec.slice.is_whole() {
            return Err(ForwardError::StageMismatch("a tensor-parallel slice cannot batch decode steps".into()));
        }
        if caches.len() != x.dims()[0] || caches.iter().any(|c| c.layers.len() != self.blocks.len()) {
            return Err(ForwardError::StageMismatch(format!(
                "{} caches for a batch of {} rows at a stage of {} blocks",
                caches.len(),
                x.dims()[0],
                self.blocks.len()
            )));
        }
        for (n, (_, block)) in self.blocks().enumerate() {
            let rows: Vec<&super::kv_cache::LayerKv> = caches.iter().map(|c| &c.layers[n]).collect();
            let mut batch = super::kv_cache::LayerKv::padded(&rows, ctx.past);
            x = block.forward_kv(x, ctx, Some(&mut batch));
            let (k, v) = batch
                .newest()
                .ok_or_else(|| ForwardError::StageMismatch("a block kept no keys for the batch".into()))?;
            for (i, c) in caches.iter_mut().enumerate() {
                c.layers[n].append(k.clone().narrow(0, i, 1), v.clone().narrow(0, i, 1));
            }
        }
        Ok(x)
    }

    /// Applies the head.
    pub fn head(&self, x: Tensor<3>) -> Result<HeadOutput, ForwardError> {
        let head = self.head.as_ref().ok_or_else(|| ForwardError::StageMismatch("this stage holds no head".into()))?;
        Ok(head.forward(x))
    }

    /// One forward of `seq_len` tokens through everything the stage holds (embeddings or a
    /// hidden state of zeros, every block or its slice's partial sums, the head), the answer
    /// dropped: what a new replica does before it serves, so its first request finds the
    /// weights in memory and the kernels ready. Returns the time it took.
    pub fn warm_up(&self, seq_len: usize) -> Result<std::time::Duration, ForwardError> {
        let start = std::time::Instant::now();
        let n = seq_len.clamp(1, self.config.max_positions.max(1));
        let vocab = self.config.vocab_size.max(1) as u32;
        let ids: Vec<u32> = (0..n as u32).map(|i| (i * 7 + 1) % vocab).collect();
        let input = ModelInput::single(&ids);
        let mut x = match &self.embeddings {
            Some(_) => self.embed(&input)?,
            None => Tensor::zeros([1, n, self.config.hidden_size], &self.device),
        };
        let ctx = ForwardContext::new(&self.config, &input, &self.device);
        for (_, block) in self.blocks() {
            if self.spec.slice.is_whole() {
                x = block.forward(x, &ctx);
            } else {
                let _ = block.attention_partial(x.clone(), &ctx).into_data();
                let _ = block.mlp_partial(x.clone()).into_data();
            }
        }
        match &self.head {
            Some(h) => {
                let out = h.forward(x);
                if let Some(l) = out.logits {
                    let _ = l.into_data();
                }
            }
            None => {
                let _ = x.into_data();
            }
        }
        Ok(start.elapsed())
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::model::Checkpoint;

    fn logits(stage: &Stage, x: Tensor<3>) -> Vec<f32> {
        stage.head(x).unwrap().logits.unwrap().into_data().try_to_vec::<f32>().unwrap()
    }

    /// Every kind of stage warms up: whole, pipeline stages without embeddings or head, and
    /// tensor slices.
    #[test]
    fn every_kind_of_stage_warms_up() {
        let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpt2_tiny");
        let ckpt = Arc::new(Checkpoint::open(&dir).unwrap());
        let mapped = ckpt.map().unwrap();
        let device = burn::tensor::Device::flex();
        let cfg = &ckpt.config;
        let n = cfg.num_layers;
        let specs = [
            StageSpec::whole(cfg),
            StageSpec { embeddings: true, layers: 0..n / 2, head: false, slice: TensorSlice::WHOLE },
            StageSpec { embeddings: false, layers: n / 2..n, head: true, slice: TensorSlice::WHOLE },
            StageSpec { embeddings: true, layers: 0..n, head: true, slice: TensorSlice { rank: 1, degree: 2 } },
        ];
        for spec in specs {
            let stage = Stage::load(&mapped, &spec, &device).unwrap();
            stage.warm_up(7).unwrap();
        }
    }

    /// Sequences of different lengths stepped together give each the logits (and the
    /// caches) it gets stepping alone, two steps running.
    #[test]
    fn a_batch_of_decode_steps_equals_each_sequence_alone() {
        for case in ["gpt2_tiny", "llama_tiny"] {
            let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(case);
            let ckpt = Arc::new(Checkpoint::open(&dir).unwrap());
            let mapped = ckpt.map().unwrap();
            let device = burn::tensor::Device::flex();
            let stage = Stage::load(&mapped, &StageSpec::whole(&ckpt.config), &device).unwrap();
            let cfg = &stage.config;
            let prompts: [&[u32]; 3] = [&[5, 9, 12, 40, 7], &[3, 17, 42], &[8, 1, 2, 3, 4, 5, 6, 100]];
            let mut alone = Vec::new();
            for p in prompts {
                let input = ModelInput::single(p);
                let mut cache = stage.new_cache();
                let x = stage.embed(&input).unwrap();
                let ctx = ForwardContext::new(cfg, &input, &device);
                stage.run_blocks_kv(x, &ctx, None, Some(&mut cache)).unwrap();
                alone.push(cache);
            }
            let mut batched = alone.clone();
            let mut pasts: Vec<usize> = prompts.iter().map(|p| p.len()).collect();
            for step in [[11u32, 22, 33], [44, 55, 66]] {
                let mut want = Vec::new();
                for (i, &t) in step.iter().enumerate() {
                    let input = ModelInput::single(&[t]);
                    let x = stage.embed_at(&input, pasts[i]).unwrap();
                    let ctx = ForwardContext::continuing(cfg, &input, pasts[i], &device);
                    let x = stage.run_blocks_kv(x, &ctx, None, Some(&mut alone[i])).unwrap();
                    want.push(logits(&stage, x));
                }
                let input = ModelInput {
                    batch: 3,
                    seq_len: 1,
                    input_ids: step.to_vec(),
                    attention_mask: None,
                    token_type_ids: None,
                };
                let x = stage.embed_rows(&input, &pasts).unwrap();
                let ctx = ForwardContext::decoding(cfg, &pasts, &device);
                let x = stage.run_blocks_rows(x, &ctx, &mut batched).unwrap();
                let got = logits(&stage, x);
                let vocab = cfg.vocab_size;
                for (i, w) in want.iter().enumerate() {
                    let row = &got[i * vocab..(i + 1) * vocab];
                    let worst = row.iter().zip(w).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
                    assert!(worst < 1e-4, "{case}: row {i} differs from its sequence alone by {worst}");
                    assert_eq!(batched[i].positions(), alone[i].positions());
                }
                for p in &mut pasts {
                    *p += 1;
                }
            }
        }
    }
}
