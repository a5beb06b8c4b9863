//! The [`Coordinator`]: one per cluster, on the node that leads the control plane's Raft
//! group with a quorum ([`crate::cluster::raft`]). It owns the membership, the model registry and the
//! shard map: it admits nodes, plans and places models, sends `LoadShard` to the nodes a
//! placement names, tracks their progress, and publishes the view every node routes by.
//!
//! - [`actor`]: its state, the view it publishes, alerts; [`audit`]: the audit log;
//! - [`members`]: joins, heartbeats, state changes, leaves, cluster status;
//! - [`models`]: the model registry, loading and unloading;
//! - [`shards`]: re-placement, migration, rebalancing, memory left per node;
//! - [`autoscale`]: replicas added and removed as each autoscaled shard's load asks;
//! - [`dispatch`]: control messages by wire name, as the peer route delivers them;
//! - [`digests`]: the checksums a node pulling weights checks every byte against;
//! - [`failover`]: coordinating while this node leads, stepping down when it does not.

pub mod actor;
pub mod audit;
pub mod autoscale;
pub mod digests;
pub mod dispatch;
pub mod failover;
pub mod members;
pub mod models;
pub mod shards;

pub use actor::{Coordinator, StepDown};
pub use failover::Failover;
pub use members::{ClusterStatusMsg, HeartbeatMsg, JoinMsg, LeaveMsg, RemoveNode};
pub use models::{ListModelsMsg, LoadModelMsg, ModelStatusMsg, ProgressMsg, UnloadModelMsg};
pub use shards::MigrateMsg;
