//! Errors of planning and placement.

/// Why a strategy could not be planned or placed. Each names the shard and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The strategy string does not parse.
    #[error("bad strategy {input:?}: {reason} (expected none, layer:K, pipeline:S or tensor:D)")]
    BadStrategy {
        /// What was given.
        input: String,
        /// Why it does not parse.
        reason: String,
    },
    /// The strategy does not fit this model.
    #[error("{0}")]
    Unsatisfiable(String),
    /// A custom strategy returned stages that do not cover the model.
    #[error("custom strategy {name}: {reason}")]
    InvalidCustom {
        /// The strategy's name.
        name: String,
        /// What is wrong with its stages.
        reason: String,
    },
    /// A shard replica has no node that can take it.
    #[error("cannot place shard {shard} ({what}) replica {replica}: {reason}")]
    Infeasible {
        /// The shard id.
        shard: usize,
        /// What the shard holds.
        what: String,
        /// Which replica.
        replica: usize,
        /// Why no node fits.
        reason: String,
    },
}
