//! mlmf: load HuggingFace checkpoints onto a cluster of actix actors and serve sharded
//! inference on burn.
//!
//! Layers (see `ARCHITECTURE.md`): [`model`] reads checkpoints and runs stages, [`plan`]
//! turns a model and a sharding strategy into a [`plan::ShardPlan`] and places it on nodes,
//! [`exec`] runs a plan in one process with every stage boundary passing through bytes.

pub mod cli;
pub mod exec;
pub mod model;
pub mod plan;
