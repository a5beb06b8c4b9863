//! Sharding strategies: how a model is cut into stages and slices.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use crate::model::{ModelLayout, StageSpec};

use super::error::PlanError;

/// A user's own way to cut a model. It returns the stages in order, each as the list of its
/// tensor-parallel members (one member for an unsliced stage); [`super::ShardPlan::new`]
/// checks that they cover the model.
///
/// ```
/// use mlmf::model::{ModelLayout, StageSpec, TensorSlice};
/// use mlmf::plan::{CustomSharding, PlanError};
///
/// /// Embeddings and head alone, all blocks in the middle.
/// #[derive(Debug)]
/// struct EndsApart;
/// impl CustomSharding for EndsApart {
///     fn name(&self) -> &str { "ends-apart" }
///     fn stages(&self, layout: &ModelLayout) -> Result<Vec<Vec<StageSpec>>, PlanError> {
///         let n = layout.layers.len();
///         let one = |embeddings, layers, head| vec![StageSpec { embeddings, layers, head, slice: TensorSlice::WHOLE }];
///         Ok(vec![one(true, 0..0, false), one(false, 0..n, false), one(false, n..n, true)])
///     }
/// }
/// ```
pub trait CustomSharding: fmt::Debug + Send + Sync {
    /// A short name, shown in plans.
    fn name(&self) -> &str;
    /// The stages, in order.
    fn stages(&self, layout: &ModelLayout) -> Result<Vec<Vec<StageSpec>>, PlanError>;
}

/// How to cut a model.
#[derive(Debug, Clone)]
pub enum ShardingStrategy {
    /// The whole model in one shard (a full replica per node).
    NoSharding,
    /// Consecutive blocks, `layers_per_shard` per shard; embeddings with the first, head with
    /// the last.
    LayerSharding {
        /// Blocks per shard.
        layers_per_shard: usize,
    },
    /// `num_stages` contiguous stages balanced by weight bytes (embeddings and head included).
    PipelineSharding {
        /// Number of stages.
        num_stages: usize,
    },
    /// One stage of `degree` Megatron-style slices of every block.
    TensorSharding {
        /// Number of slices; must divide the attention heads and key/value heads.
        degree: usize,
    },
    /// A user-defined cut.
    Custom(Arc<dyn CustomSharding>),
}

impl PartialEq for ShardingStrategy {
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
    }
}

impl fmt::Display for ShardingStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShardingStrategy::NoSharding => f.write_str("none"),
            ShardingStrategy::LayerSharding { layers_per_shard } => write!(f, "layer:{layers_per_shard}"),
            ShardingStrategy::PipelineSharding { num_stages } => write!(f, "pipeline:{num_stages}"),
            ShardingStrategy::TensorSharding { degree } => write!(f, "tensor:{degree}"),
            ShardingStrategy::Custom(c) => write!(f, "custom:{}", c.name()),
        }
    }
}

impl FromStr for ShardingStrategy {
    type Err = PlanError;

    /// Parses `none`, `layer:K`, `pipeline:S` or `tensor:D` (K, S, D ≥ 1).
    ///
    /// ```
    /// use mlmf::plan::ShardingStrategy;
    /// let s: ShardingStrategy = "pipeline:3".parse().unwrap();
    /// assert_eq!(s, ShardingStrategy::PipelineSharding { num_stages: 3 });
    /// assert!("pipeline:0".parse::<ShardingStrategy>().is_err());
    /// ```
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &str| PlanError::BadStrategy { input: s.to_string(), reason: reason.to_string() };
        let s_trim = s.trim();
        if s_trim == "none" {
            return Ok(ShardingStrategy::NoSharding);
        }
        let (kind, n) = s_trim.split_once(':').ok_or_else(|| bad("missing ':N'"))?;
        let n: usize = n.parse().map_err(|_| bad("N is not a positive integer"))?;
        if n == 0 {
            return Err(bad("N must be at least 1"));
        }
        match kind {
            "layer" => Ok(ShardingStrategy::LayerSharding { layers_per_shard: n }),
            "pipeline" => Ok(ShardingStrategy::PipelineSharding { num_stages: n }),
            "tensor" => Ok(ShardingStrategy::TensorSharding { degree: n }),
            _ => Err(bad("unknown kind")),
        }
    }
}
