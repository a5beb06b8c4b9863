//! [`GenerationConfig`]: how a node keeps the KV caches of the sequences it serves
//! (`[generation]` in a node's TOML).

use serde::{Deserialize, Serialize};

/// KV cache limits of one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GenerationConfig {
    /// Bytes of keys and values this node keeps for all sequences together (256 MiB unless
    /// set); past it, the least recently used sequences' caches are dropped (and rebuilt by
    /// replay when needed). Placement reserves it: a node offers shards its memory less this.
    pub kv_cache_bytes: u64,
    /// A sequence's cache idle this long is dropped, milliseconds.
    pub idle_timeout_ms: u64,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        GenerationConfig { kv_cache_bytes: 256 << 20, idle_timeout_ms: 60_000 }
    }
}
