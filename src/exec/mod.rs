//! Running a [`crate::plan::ShardPlan`] in one process. Every stage boundary and every
//! tensor-parallel partial sum passes through the same bytes the network would carry, so a
//! local run checks the exact numerics of a distributed one.

pub mod embedding;
pub mod generation;
pub mod local;
pub mod outputs;

pub use embedding::EmbedTextError;
pub use generation::{Generated, LocalGeneration};
pub use local::{ExecError, LocalRunner, RunOptions};
pub use outputs::{HostTensor, RunOutputs};
