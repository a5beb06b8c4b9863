//! [`CacheConfig`]: what a node keeps of the shard replicas it unloads (`[cache]` in a
//! node's TOML), so that a replica that comes back soon loads from memory.

use serde::{Deserialize, Serialize};

/// The warm cache of unloaded replicas.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Bytes of unloaded replicas to keep in memory, weights and file mapping included (the
    /// shard's tensors as f32, times `shard_threads`). The least recently unloaded go first
    /// past it. 0 turns the cache off: an unloaded replica's memory is freed at once. The
    /// budget is taken from the memory the node offers shards (as the KV cache budget is).
    pub warm_bytes: u64,
    /// Seconds an unloaded replica is kept at most.
    pub warm_ttl_s: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig { warm_bytes: 0, warm_ttl_s: 600 }
    }
}

impl CacheConfig {
    /// Why this config cannot be used, if it cannot.
    pub fn problem(&self) -> Option<(&'static str, String)> {
        if self.warm_bytes > 0 && self.warm_ttl_s == 0 {
            return Some(("cache.warm_ttl_s", "must be positive when cache.warm_bytes is".into()));
        }
        None
    }
}
