//! The control plane on Raft (openraft): every control-plane change (join, leave, down and
//! up, load, unload, re-placement, migration, rebalancing moves) is the coordinator's next
//! view, committed by a majority of voters before any node routes by it; the leader is the
//! coordinator; a node cut off from the majority refuses control-plane writes.
//!
//! - [`types`]: the Raft type configuration, a member, a command, a snapshot;
//! - [`store`]: the log and its metadata in redb, under the node's data directory;
//! - [`state_machine`]: the registry, the last committed view;
//! - [`network`]: Raft's messages over `/v1/peer`, and who answered when;
//! - [`membership`]: who votes, as a pure function of the committed view;
//! - [`host`]: the actor running it all on one node.

pub mod host;
pub mod membership;
pub mod network;
pub mod state_machine;
pub mod store;
pub mod types;

pub use host::{RaftHost, RaftHostError};
