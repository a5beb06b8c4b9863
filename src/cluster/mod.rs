//! The actors of a node. So far: [`shard::ShardActor`], one loaded shard replica computing
//! on a `SyncArbiter` thread, restarted from the mapped checkpoint after a failure.

pub mod shard;

pub use shard::{Forward, RestartPolicy, ShardActor, ShardError, ShardHandle, StageOutput};
