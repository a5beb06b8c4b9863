//! mlmf: load HuggingFace checkpoints onto a cluster of actix actors and serve sharded
//! inference on burn.
//!
//! Layers, lowest first (see `ARCHITECTURE.md`; `tests/layering.rs` keeps them one-way):
//! [`config`] is plain configuration; [`model`] reads checkpoints and runs stages; [`plan`]
//! turns a model and a sharding strategy into a [`plan::ShardPlan`] and places it on nodes;
//! [`exec`] runs a plan in one process with every stage boundary passing through bytes;
//! [`cluster`] holds the actors of a node and the cluster; [`api`] is the HTTP API over
//! them; [`server`] boots a node; [`client`], [`manager`] and [`cli`] use running nodes.

// Weight selections are lists of ranges (`&[0..h]` selects one range); the lint reads them as
// mistaken `vec![0..h]` element lists, and `&[r.clone()]` reads better than `from_ref`.
#![allow(clippy::single_range_in_vec_init, clippy::cloned_ref_to_slice_refs)]

pub mod api;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod config;
pub mod exec;
pub mod generate;
pub mod manager;
pub mod model;
pub mod plan;
pub mod server;
