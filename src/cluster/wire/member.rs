//! A member as the cluster knows it: who and where ([`NodeInfo`]), its [`MemberState`], and
//! the resource and load figures its heartbeats carry ([`NodeStats`], [`ShardStats`]).

use serde::{Deserialize, Serialize};

use crate::plan::DeviceKind;

/// A node as the cluster knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeInfo {
    /// Node id (unique in the cluster).
    pub id: String,
    /// `host:port` of its HTTP API and peer endpoint.
    pub addr: String,
    /// Memory it offers to shards.
    pub memory_bytes: u64,
    /// Device kind.
    pub device: DeviceKind,
    /// Relative compute.
    pub compute: f64,
    /// Its id in the control plane's Raft group (random, kept in its data directory: a node
    /// restarted without that directory is a new Raft member).
    pub raft_id: u64,
}

/// A node's liveness as the health monitor sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MemberState {
    /// Heartbeats arrive.
    Up,
    /// Heartbeats are late (phi above the suspect threshold).
    Suspect,
    /// Declared failed (phi above the threshold); routed around.
    Down,
    /// Leaving on request (SIGTERM): routed around while its replicas move elsewhere.
    Leaving,
}

/// Resource stats a heartbeat carries.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeStats {
    /// Total memory of the machine.
    pub memory_total: u64,
    /// Memory in use on the machine.
    pub memory_used: u64,
    /// Resident memory of this process.
    pub process_memory: u64,
    /// Machine-wide CPU use, percent.
    pub cpu_percent: f32,
    /// Shards loaded on the node.
    pub shards: usize,
    /// Requests this node is running a stage of, now.
    pub in_flight: usize,
    /// Requests this node has taken over HTTP.
    pub requests: u64,
    /// Of those, answered with a 5xx.
    pub errors: u64,
    /// p99 latency of successful requests since the previous heartbeat, ms (bucket bound).
    pub p99_ms: f64,
    /// Each loaded shard replica.
    pub shard_stats: Vec<ShardStats>,
    /// Bytes of the KV caches of the sequences this node serves.
    #[serde(default)]
    pub kv_cache_bytes: u64,
    /// Sequence caches held (one per shard replica and sequence).
    #[serde(default)]
    pub kv_caches: usize,
}

/// One shard replica's load and latency on its node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ShardStats {
    /// Model id.
    pub model: String,
    /// Shard id.
    pub shard: usize,
    /// Messages being computed.
    pub in_flight: usize,
    /// Messages waiting for a compute thread.
    pub queued: usize,
    /// Messages handled since it loaded.
    pub messages: u64,
    /// Requests in its queued and computing messages (a batch counts its rows): the load
    /// figure autoscaling reads.
    #[serde(default)]
    pub requests: usize,
    /// Tokens through it since it loaded (every row's positions of the inputs it computed).
    #[serde(default)]
    pub tokens: u64,
    /// Tokens per second through it since the node's previous heartbeat.
    #[serde(default)]
    pub tokens_per_s: f64,
    /// Of the requests its compute threads handled, those before its warm-up forward had
    /// finished (0 for every replica that joined the routes warm).
    #[serde(default)]
    pub cold_messages: u64,
    /// Median time per message (queueing included), ms, as a bucket bound.
    pub p50_ms: f64,
    /// 99th percentile, ms, as a bucket bound.
    pub p99_ms: f64,
}
