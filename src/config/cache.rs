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

#[cfg(test)]
mod tests {
    use super::super::NodeConfig;

    /// The example of the warm cache and a declared model's autoscaling in `docs/usage.md`.
    #[test]
    fn the_readme_example_parses_and_a_ttl_of_zero_is_refused() {
        let text = "[[models]]\nid = \"gpt2\"\npath = \"/models/gpt2\"\nstrategy = \"pipeline:2\"\n\
                    autoscaling = { min_replicas = 1, max_replicas = 4, target_ongoing_requests = 4.0, \
                    target_tokens_per_s = 2000.0, upscale_delay_s = 10.0, downscale_delay_s = 300.0 }\n\
                    \n[cache]\nwarm_bytes = 4294967296\n";
        let cfg: NodeConfig = toml::from_str(text).unwrap();
        cfg.validate().unwrap();
        assert_eq!((cfg.cache.warm_bytes, cfg.cache.warm_ttl_s), (4 << 30, 600));
        let a = cfg.models[0].autoscaling.unwrap();
        assert_eq!((a.max_replicas, a.target_tokens_per_s), (4, Some(2000.0)));
        let off: NodeConfig = toml::from_str("[cache]\nwarm_bytes = 1\nwarm_ttl_s = 0\n").unwrap();
        assert!(off.validate().unwrap_err().to_string().contains("cache.warm_ttl_s"));
    }
}
