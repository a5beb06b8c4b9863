//! [`BatchingConfig`]: how a node packs concurrent forward requests for the same model into
//! one forward per stage (`[batching]` in a node's TOML).

use serde::{Deserialize, Serialize};

/// Dynamic batching of `/infer`, the KServe route and embeddings at the node that takes them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchingConfig {
    /// Pack concurrent requests (off: every request is its own forward).
    pub enabled: bool,
    /// Tokens of one batched forward, padding included (rows × the longest row); a request
    /// larger than this runs alone.
    pub max_batch_tokens: usize,
    /// How long the first request of a batch waits for others, microseconds. 0: a batch
    /// leaves as soon as a forward slot is free, holding whatever queued meanwhile, so that a
    /// lone request never waits.
    pub batch_wait_us: u64,
    /// Batched forwards of one model in flight from this node at once; requests beyond
    /// them queue and go together in the next batch. 0: one per pipeline stage of the model
    /// (every stage busy, none idle waiting for the next batch).
    pub max_batches_in_flight: usize,
    /// How long a batch of decode steps waits for the sequences of the batch before it to
    /// queue their next steps, microseconds (it leaves as soon as they all have).
    pub decode_wait_us: u64,
    /// Longest piece of a prompt prefilled in one forward: a longer prompt goes through the
    /// route in chunks of this many tokens (each continuing the caches of the ones before),
    /// so a stage runs other sequences' decode steps between them instead of stalling on
    /// the whole prompt. 0: every prompt in one forward.
    pub prefill_chunk_tokens: usize,
}

impl Default for BatchingConfig {
    fn default() -> Self {
        BatchingConfig {
            enabled: true,
            max_batch_tokens: 8192,
            batch_wait_us: 0,
            max_batches_in_flight: 0,
            decode_wait_us: 2000,
            prefill_chunk_tokens: 256,
        }
    }
}

impl BatchingConfig {
    /// Why this config cannot be used, if it cannot.
    pub fn problem(&self) -> Option<(&'static str, String)> {
        if self.max_batch_tokens == 0 {
            return Some(("batching.max_batch_tokens", "must be positive".into()));
        }
        if self.batch_wait_us > 1_000_000 || self.decode_wait_us > 1_000_000 {
            return Some(("batching.batch_wait_us", "waits must be at most 1000000 (one second)".into()));
        }
        None
    }
}
