//! A [`ShardPlan`]: which layers or slices each shard holds, its tensors and its bytes.

use std::collections::BTreeSet;
use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::model::{ModelLayout, StageSpec, TensorSlice};

use super::error::PlanError;
use super::partition::balanced;
use super::strategy::ShardingStrategy;

/// One shard: a stage, or one tensor-parallel member of a stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ShardSpec {
    /// Position in [`ShardPlan::shards`].
    pub id: usize,
    /// Index of the pipeline stage it belongs to.
    pub stage: usize,
    /// What it holds.
    pub spec: StageSpec,
    /// The checkpoint tensors it reads (whole or sliced).
    pub tensors: Vec<String>,
    /// Bytes it materialises, in the checkpoint's dtype (block matrices divided by the tensor
    /// degree; norms and biases counted whole).
    pub bytes: u64,
}

impl ShardSpec {
    /// A short description: `emb+layers 0..3+head [slice 1/2]`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.spec.embeddings {
            parts.push("embeddings".to_string());
        }
        if !self.spec.layers.is_empty() {
            parts.push(format!("layers {}..{}", self.spec.layers.start, self.spec.layers.end));
        }
        if self.spec.head {
            parts.push("head".to_string());
        }
        let mut s = parts.join(" + ");
        if !self.spec.slice.is_whole() {
            s.push_str(&format!(" [slice {}/{}]", self.spec.slice.rank, self.spec.slice.degree));
        }
        s
    }
}

/// A model cut into stages; each stage is one shard or a tensor-parallel group of shards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ShardPlan {
    /// The strategy that made it.
    pub strategy: String,
    /// Number of stages.
    pub num_stages: usize,
    /// Shards ordered by stage, then by tensor rank.
    pub shards: Vec<ShardSpec>,
}

impl ShardPlan {
    /// Plans `strategy` for a model.
    ///
    /// ```
    /// use mlmf::model::{Checkpoint, ModelLayout};
    /// use mlmf::plan::{ShardPlan, ShardingStrategy};
    /// let ckpt = Checkpoint::open("tests/fixtures/gpt2_tiny".as_ref()).unwrap();
    /// let layout = ModelLayout::from_checkpoint(&ckpt).unwrap();
    /// let plan = ShardPlan::new(&layout, &"pipeline:3".parse().unwrap()).unwrap();
    /// assert_eq!(plan.num_stages, 3);
    /// ```
    pub fn new(layout: &ModelLayout, strategy: &ShardingStrategy) -> Result<ShardPlan, PlanError> {
        let n = layout.layers.len();
        let cfg = &layout.config;
        let whole = |embeddings: bool, layers: Range<usize>, head: bool| {
            vec![StageSpec { embeddings, layers, head, slice: TensorSlice::WHOLE }]
        };
        let stages: Vec<Vec<StageSpec>> = match strategy {
            ShardingStrategy::NoSharding => vec![whole(true, 0..n, true)],
            ShardingStrategy::LayerSharding { layers_per_shard: k } => {
                if *k == 0 {
                    return Err(PlanError::Unsatisfiable("layers_per_shard must be at least 1".into()));
                }
                let count = n.div_ceil(*k).max(1);
                (0..count).map(|s| whole(s == 0, s * k..((s + 1) * k).min(n), s == count - 1)).collect()
            }
            ShardingStrategy::PipelineSharding { num_stages: s } => {
                if *s == 0 || *s > n {
                    return Err(PlanError::Unsatisfiable(format!(
                        "pipeline:{s} needs between 1 and {n} stages for a model of {n} blocks"
                    )));
                }
                // Embeddings ride with the first block and the head with the last, so that every
                // stage holds at least one block and the balance counts all bytes.
                let mut w: Vec<u64> = layout.layers.iter().map(|l| l.bytes).collect();
                w[0] += layout.embeddings.bytes;
                w[n - 1] += layout.head.bytes;
                let groups = balanced(&w, *s);
                let last = groups.len() - 1;
                groups.into_iter().enumerate().map(|(i, r)| whole(i == 0, r, i == last)).collect()
            }
            ShardingStrategy::TensorSharding { degree: d } => {
                let d = *d;
                if d == 0 || !cfg.num_heads.is_multiple_of(d) || !cfg.num_kv_heads.is_multiple_of(d) {
                    return Err(PlanError::Unsatisfiable(format!(
                        "tensor:{d} does not divide the {} attention heads and {} key/value heads of this {} model \
                         (degrees that do: {})",
                        cfg.num_heads,
                        cfg.num_kv_heads,
                        cfg.arch,
                        valid_degrees(cfg.num_heads, cfg.num_kv_heads)
                    )));
                }
                // Rank 0 also holds the embeddings and the head: the other members only ever
                // see hidden states.
                vec![
                    (0..d)
                        .map(|rank| StageSpec {
                            embeddings: rank == 0,
                            layers: 0..n,
                            head: rank == 0,
                            slice: TensorSlice { rank, degree: d },
                        })
                        .collect(),
                ]
            }
            ShardingStrategy::Custom(c) => {
                let stages = c.stages(layout)?;
                check_cover(layout, &stages)
                    .map_err(|reason| PlanError::InvalidCustom { name: c.name().to_string(), reason })?;
                stages
            }
        };
        Ok(Self::from_stages(layout, strategy.to_string(), stages))
    }

    fn from_stages(layout: &ModelLayout, strategy: String, stages: Vec<Vec<StageSpec>>) -> ShardPlan {
        let mut shards = Vec::new();
        let num_stages = stages.len();
        for (stage, members) in stages.into_iter().enumerate() {
            for spec in members {
                let (tensors, bytes) = shard_contents(layout, &spec);
                shards.push(ShardSpec { id: shards.len(), stage, spec, tensors, bytes });
            }
        }
        ShardPlan { strategy, num_stages, shards }
    }

    /// The shards of stage `s`, in rank order.
    pub fn stage(&self, s: usize) -> impl Iterator<Item = &ShardSpec> {
        self.shards.iter().filter(move |sh| sh.stage == s)
    }

    /// Total bytes over all shards (one replica).
    pub fn total_bytes(&self) -> u64 {
        self.shards.iter().map(|s| s.bytes).sum()
    }
}

fn valid_degrees(heads: usize, kv: usize) -> String {
    (1..=kv)
        .filter(|d| heads.is_multiple_of(*d) && kv.is_multiple_of(*d))
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Tensors (each listed once) and bytes of a shard.
fn shard_contents(layout: &ModelLayout, spec: &StageSpec) -> (Vec<String>, u64) {
    let mut names = BTreeSet::new();
    let mut tensors = Vec::new();
    let mut bytes = 0u64;
    let degree = spec.slice.degree as u64;
    let mut add = |part: &crate::model::Part, sliced: bool| {
        for t in &part.tensors {
            if names.insert(t.clone()) {
                tensors.push(t.clone());
            }
        }
        bytes += if sliced { part.bytes.div_ceil(degree) } else { part.bytes };
    };
    if spec.embeddings {
        add(&layout.embeddings, false);
    }
    for i in spec.layers.clone() {
        add(&layout.layers[i], true);
    }
    if spec.head {
        // A tied LM head re-reads the embedding matrix (and keeps a transposed copy), so its
        // bytes count again even though the tensor name is listed once.
        add(&layout.head, false);
    }
    (tensors, bytes)
}

/// Checks that custom stages cover embeddings, every block once, and the head, in order.
fn check_cover(layout: &ModelLayout, stages: &[Vec<StageSpec>]) -> Result<(), String> {
    let n = layout.layers.len();
    if stages.is_empty() {
        return Err("no stages".into());
    }
    let mut next_layer = 0;
    for (i, members) in stages.iter().enumerate() {
        let first = members.first().ok_or_else(|| format!("stage {i} has no members"))?;
        let d = first.slice.degree;
        if members.len() != d {
            return Err(format!("stage {i} has {} members for tensor degree {d}", members.len()));
        }
        for (rank, m) in members.iter().enumerate() {
            if m.layers != first.layers || m.slice != (TensorSlice { rank, degree: d }) {
                return Err(format!("stage {i} member {rank} differs in layers or slice"));
            }
            if rank > 0 && (m.embeddings || m.head) {
                return Err(format!("stage {i}: only rank 0 of a tensor group may hold embeddings or head"));
            }
            m.validate(&layout.config).map_err(|e| format!("stage {i}: {e}"))?;
        }
        if first.layers.start != next_layer {
            return Err(format!("stage {i} starts at block {} but block {next_layer} is next", first.layers.start));
        }
        next_layer = first.layers.end;
        if first.embeddings != (i == 0) {
            return Err("embeddings must be held by the first stage only".into());
        }
        if first.head != (i == stages.len() - 1) {
            return Err("the head must be held by the last stage only".into());
        }
    }
    if next_layer != n {
        return Err(format!("blocks {next_layer}..{n} are not covered"));
    }
    Ok(())
}
