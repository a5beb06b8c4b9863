//! The actors of a node and the cluster they form.
//!
//! - [`shard::ShardActor`]: one loaded shard replica computing on a `SyncArbiter` thread,
//!   restarted from the mapped checkpoint after a failure.
//! - [`node::NodeActor`]: a process's shards (load, unload, stats).
//! - [`coordinator::Coordinator`]: membership, the model registry and loading (one per cluster).
//! - [`health::HealthMonitor`]: heartbeats and phi-accrual failure detection.
//! - [`balancer::Balancer`]: picks a route (one replica per shard) for each request.
//! - [`infer`]: a request's path from stage to stage; [`wire`]: what travels between nodes.

pub mod alerts;
pub mod balancer;
pub mod balancing;
pub mod coordinator;
pub mod health;
pub mod infer;
pub mod loader;
pub mod metrics;
pub mod node;
pub mod peer_handler;
pub mod shard;
pub mod state;
pub mod wire;

pub use shard::{Forward, RestartPolicy, ShardActor, ShardError, ShardHandle, StageOutput, Sublayer, TpOutput, TpStep};
