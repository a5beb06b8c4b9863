//! Generation in one process with a KV cache at every stage: [`LocalGeneration`] prefills a
//! prompt through every stage once, then runs one position per step, each stage member
//! continuing its own cache (a tensor-parallel member caches only its heads). Stage
//! boundaries and partial sums pass through bytes, as in [`LocalRunner::run`].
//! [`LocalRunner::generate`] drives a [`Sequence`] with it.

use burn::tensor::Tensor;

use crate::generate::{GenerationParams, Sequence, Step, TextTokenizer};
use crate::model::activation::{decode, encode};
use crate::model::ops::last_position;
use crate::model::{ForwardContext, ForwardError, KvCache, ModelInput};

use super::local::{ExecError, LocalRunner, run_tensor_group};

/// One sequence's caches across a plan run in this process.
pub struct LocalGeneration<'r> {
    runner: &'r LocalRunner,
    /// Per stage, per member (rank order).
    caches: Vec<Vec<KvCache>>,
}

impl LocalGeneration<'_> {
    /// Positions cached so far.
    pub fn positions(&self) -> usize {
        self.caches.first().and_then(|s| s.first()).map(KvCache::positions).unwrap_or(0)
    }

    /// Bytes the caches hold, every stage member together.
    pub fn cache_bytes(&self) -> u64 {
        self.caches.iter().flatten().map(KvCache::bytes).sum()
    }

    /// Runs `ids` at the next positions through every stage, extending the caches, and
    /// returns the logits of each of them, `[ids.len(), vocab]` row-major.
    pub fn forward(&mut self, ids: &[u32]) -> Result<Vec<f32>, ExecError> {
        self.forward_positions(ids, false)
    }

    /// As [`LocalGeneration::forward`], returning only the last position's logits (`vocab`
    /// values): the head runs on that position alone, as a generation step needs.
    pub fn forward_last(&mut self, ids: &[u32]) -> Result<Vec<f32>, ExecError> {
        self.forward_positions(ids, true)
    }

    fn forward_positions(&mut self, ids: &[u32], last_only: bool) -> Result<Vec<f32>, ExecError> {
        let runner = self.runner;
        let cfg = &runner.layout.config;
        let past = self.positions();
        let input = ModelInput::single(ids);
        let ctx = ForwardContext::continuing(cfg, &input, past, &runner.device);
        let mut boundary: Option<Vec<u8>> = None;
        let last = runner.stages.len() - 1;
        for (s, members) in runner.stages.iter().enumerate() {
            let lead = &members[0];
            let mut x = match boundary.take() {
                None => lead.embed_at(&input, past)?,
                Some(bytes) => decode::<3>(&bytes, &runner.device)?,
            };
            let caches = &mut self.caches[s];
            x = if members.len() == 1 {
                lead.run_blocks_kv(x, &ctx, None, Some(&mut caches[0]))?
            } else {
                run_tensor_group(members, x, &ctx, None, Some(caches), &runner.device)?
            };
            if s == last {
                let x = if last_only { last_position(x) } else { x };
                let logits: Tensor<3> = lead
                    .head(x)?
                    .logits
                    .ok_or_else(|| ForwardError::StageMismatch("this model's head gives no logits".into()))?;
                return logits
                    .into_data()
                    .try_to_vec::<f32>()
                    .map_err(|e| ForwardError::StageMismatch(format!("logits: {e:?}")).into());
            }
            boundary = Some(encode(x)?);
        }
        Err(ForwardError::StageMismatch("the plan has no stage".into()).into())
    }
}

/// A finished local generation.
#[derive(Debug, Clone)]
pub struct Generated {
    /// The sequence: prompt, generated ids, text, why it ended.
    pub sequence: Sequence,
    /// Every step, in order.
    pub steps: Vec<Step>,
}

impl LocalRunner {
    /// A new sequence's caches.
    pub fn start_generation(&self) -> LocalGeneration<'_> {
        let caches = self.stages.iter().map(|members| members.iter().map(|m| m.new_cache()).collect()).collect();
        LocalGeneration { runner: self, caches }
    }

    /// Generates from `prompt`: one prefill, then one cached step per token, until a stop
    /// condition; the prompt and the generated tokens together never exceed the model's
    /// positions (`max_tokens` is capped there, and the sequence ends with `length`).
    /// `on_step` sees each step as it is taken (to stream).
    pub fn generate(
        &self,
        prompt: &[u32],
        mut params: GenerationParams,
        tok: Option<&TextTokenizer>,
        mut on_step: impl FnMut(&Step),
    ) -> Result<Generated, ExecError> {
        let cfg = &self.layout.config;
        if prompt.is_empty() || prompt.len() >= cfg.max_positions {
            return Err(ForwardError::InvalidInput(format!(
                "a prompt of {} tokens leaves no room to generate within the model's {} positions",
                prompt.len(),
                cfg.max_positions
            ))
            .into());
        }
        params.max_tokens = params.max_tokens.min(cfg.max_positions - prompt.len());
        let eos = tok.map(|t| t.eos.clone()).unwrap_or_default();
        let mut seq = Sequence::new(prompt.to_vec(), params.clone(), eos, tok.is_some());
        let mut steps = Vec::new();
        if params.max_tokens == 0 {
            return Ok(Generated { sequence: seq, steps });
        }
        let mut generation = self.start_generation();
        let mut feed = prompt.to_vec();
        loop {
            let logits = generation.forward_last(&feed)?;
            let step = seq.step(&logits, tok).map_err(|e| ForwardError::InvalidInput(e.to_string()))?;
            on_step(&step);
            let done = step.finish.is_some();
            feed = vec![step.token];
            steps.push(step);
            if done {
                break;
            }
        }
        Ok(Generated { sequence: seq, steps })
    }
}
