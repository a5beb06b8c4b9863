//! mlmf: load HuggingFace checkpoints onto a cluster of actix actors and serve sharded
//! inference on burn.
//!
//! Layers (see `ARCHITECTURE.md`): [`model`] reads checkpoints and runs stages, [`plan`]
//! turns a model and a sharding strategy into a [`plan::ShardPlan`] and places it on nodes,
//! [`exec`] runs a plan in one process with every stage boundary passing through bytes.

// Weight selections are lists of ranges (`&[0..h]` selects one range); the lint reads them as
// mistaken `vec![0..h]` element lists, and `&[r.clone()]` reads better than `from_ref`.
#![allow(clippy::single_range_in_vec_init, clippy::cloned_ref_to_slice_refs)]

pub mod api;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod config;
pub mod exec;
pub mod manager;
pub mod model;
pub mod plan;
