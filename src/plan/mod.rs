//! Planning: sharding strategies turn a [`crate::model::ModelLayout`] into a [`ShardPlan`],
//! and [`placement::place`] puts its shards' replicas onto nodes. Pure functions: no actors,
//! no clocks, no I/O.

pub mod autoscale;
pub mod error;
pub mod partition;
pub mod placement;
pub mod rebalance;
pub mod replication;
pub mod shard_plan;
pub mod strategy;

pub use autoscale::{Autoscaling, Load, Scaler};
pub use error::PlanError;
pub use placement::{
    DeviceKind, DevicePreference, NodeInventory, Placement, PlacementRequest, PlacementStrategy, place,
};
pub use replication::ReplicationMode;
pub use shard_plan::{ShardPlan, ShardSpec};
pub use strategy::{CustomSharding, ShardingStrategy};
