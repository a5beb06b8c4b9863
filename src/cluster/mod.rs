//! The actors of a node and the cluster they form, and what they say to each other.
//!
//! - [`node`]: what one node's parts share ([`node::Node`]); [`node_actor`] loads and
//!   unloads shard replicas; [`shard`]: one loaded replica computing on a `SyncArbiter`
//!   thread, restarted from the mapped checkpoint after a failure; [`loader`]: a replica
//!   from the local mmap or pulled from a peer.
//! - [`coordinator`]: membership, the model registry and loading (one per cluster), and
//!   failover; [`health`]: heartbeats and phi-accrual failure detection; [`alerts`]: the
//!   alert manager; [`joining`]: a member joining and leaving.
//! - [`balancer`]: picks a route (one replica per shard) for each request; [`infer`]: a
//!   request's path from stage to stage.
//! - [`wire`]: what travels between nodes; [`peer_handler`]: what a node answers on
//!   `/v1/peer`; [`control`]: control operations from any node; [`metrics`]: Prometheus text.

pub mod alerts;
pub mod balancer;
pub mod batch_queue;
pub mod batching;
pub mod control;
pub mod coordinator;
pub mod embedding;
pub mod generation;
pub mod health;
pub mod infer;
pub mod infer_types;
pub mod joining;
pub mod kv_store;
pub mod loader;
pub mod metrics;
pub mod node;
pub mod node_actor;
pub mod peer_handler;
pub mod raft;
pub mod shard;
pub mod shard_messages;
pub mod trace;
pub mod wire;

pub use shard::{Forward, RestartPolicy, ShardActor, ShardError, ShardHandle, StageOutput, TpOutput, TpStep};
pub use wire::Sublayer;
