//! [`LocalRunner`]: a whole plan loaded in one process.

use std::path::Path;
use std::sync::Arc;

use burn::tensor::{Device, Tensor};

use crate::model::activation::{decode, encode};
use crate::model::{Checkpoint, ForwardContext, ForwardError, KvCache, LoadError, ModelInput, ModelLayout, Stage};
use crate::plan::{PlanError, ShardPlan, ShardingStrategy};

use super::outputs::{HostTensor, RunOutputs};

/// Why a local run failed.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The checkpoint could not be read.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The strategy does not fit the model.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The input or a stage failed.
    #[error(transparent)]
    Forward(#[from] ForwardError),
}

/// What to collect besides the model's outputs.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Also return `block_output.K`, the raw output of every block K.
    pub block_outputs: bool,
}

/// Every shard of a plan loaded on one device, run stage after stage.
pub struct LocalRunner {
    /// The plan being run.
    pub plan: ShardPlan,
    /// The model's layout.
    pub layout: ModelLayout,
    /// Per stage, its members in rank order.
    pub(super) stages: Vec<Vec<Stage>>,
    pub(super) device: Device,
}

impl LocalRunner {
    /// Reads the headers, plans `strategy`, and loads every shard from the mapped files.
    ///
    /// ```
    /// use mlmf::exec::{LocalRunner, RunOptions};
    /// use mlmf::model::ModelInput;
    /// let device = mlmf::model::default_device();
    /// let runner = LocalRunner::load("tests/fixtures/gpt2_tiny".as_ref(), &"tensor:2".parse().unwrap(), &device).unwrap();
    /// let out = runner.run(&ModelInput::single(&[3, 17, 42]), RunOptions::default()).unwrap();
    /// assert_eq!(out.tensors["logits"].shape, vec![1, 3, 1000]);
    /// ```
    pub fn load(dir: &Path, strategy: &ShardingStrategy, device: &Device) -> Result<LocalRunner, ExecError> {
        let ckpt = Arc::new(Checkpoint::open(dir)?);
        let layout = ModelLayout::from_checkpoint(&ckpt)?;
        let plan = ShardPlan::new(&layout, strategy)?;
        let mapped = ckpt.map()?;
        let mut stages: Vec<Vec<Stage>> = (0..plan.num_stages).map(|_| Vec::new()).collect();
        for shard in &plan.shards {
            stages[shard.stage].push(Stage::load(&mapped, &shard.spec, device)?);
        }
        Ok(LocalRunner { plan, layout, stages, device: device.clone() })
    }

    /// Runs one request through every stage.
    pub fn run(&self, input: &ModelInput, opts: RunOptions) -> Result<RunOutputs, ExecError> {
        let cfg = &self.layout.config;
        input.validate(cfg)?;
        let ctx = ForwardContext::new(cfg, input, &self.device);
        let mut trace: Vec<(usize, Tensor<3>)> = Vec::new();
        let mut boundary: Option<Vec<u8>> = None;
        let mut outputs = RunOutputs::default();
        let last = self.stages.len() - 1;
        for (s, members) in self.stages.iter().enumerate() {
            let lead = &members[0];
            let mut x = match boundary.take() {
                None => lead.embed(input)?,
                Some(bytes) => decode::<3>(&bytes, &self.device)?,
            };
            let traced = opts.block_outputs.then_some(&mut trace);
            x = if members.len() == 1 {
                lead.run_blocks(x, &ctx, traced)?
            } else {
                run_tensor_group(members, x, &ctx, traced, None, &self.device)?
            };
            if s == last {
                outputs = RunOutputs::from_head(lead.head(x)?)?;
            } else {
                boundary = Some(encode(x)?);
            }
        }
        for (k, t) in trace {
            outputs.tensors.insert(format!("block_output.{k}"), HostTensor::from_tensor(t)?);
        }
        Ok(outputs)
    }

    /// The device the shards live on.
    pub fn device(&self) -> &Device {
        &self.device
    }
}

/// Runs a tensor-parallel group block by block: every member computes its partial sums, the
/// partials travel as bytes and are summed (the all-reduce), and the residual is applied.
/// With `caches` (one per member, in rank order), each member continues its own cache of its
/// heads' keys and values.
pub(super) fn run_tensor_group(
    members: &[Stage],
    mut x: Tensor<3>,
    ctx: &ForwardContext,
    mut trace: Option<&mut Vec<(usize, Tensor<3>)>>,
    mut caches: Option<&mut [KvCache]>,
    device: &Device,
) -> Result<Tensor<3>, ForwardError> {
    let blocks: Vec<Vec<_>> = members.iter().map(|m| m.blocks().collect::<Vec<_>>()).collect();
    let all_reduce = |partials: Vec<Tensor<3>>| -> Result<Tensor<3>, ForwardError> {
        let mut sum: Option<Tensor<3>> = None;
        for p in partials {
            let p = decode::<3>(&encode(p)?, device)?;
            sum = Some(match sum {
                None => p,
                Some(s) => s + p,
            });
        }
        sum.ok_or_else(|| ForwardError::StageMismatch("empty tensor group".into()))
    };
    for i in 0..blocks[0].len() {
        let (layer, lead) = blocks[0][i];
        let attn = match caches.as_deref_mut() {
            Some(c) => blocks
                .iter()
                .zip(c.iter_mut())
                .map(|(b, cache)| b[i].1.attention_partial_kv(x.clone(), ctx, Some(&mut cache.layers[i])))
                .collect(),
            None => blocks.iter().map(|b| b[i].1.attention_partial(x.clone(), ctx)).collect(),
        };
        let h = lead.attention_combine(x, all_reduce(attn)?);
        let mlp = blocks.iter().map(|b| b[i].1.mlp_partial(h.clone())).collect();
        x = lead.mlp_combine(h, all_reduce(mlp)?);
        if let Some(t) = trace.as_deref_mut() {
            t.push((layer, x.clone()));
        }
    }
    Ok(x)
}
