//! [`KvStore`]: the KV caches of the sequences this node serves, for all of its shard
//! replicas, keyed by model, shard and sequence. The node's byte budget
//! (`[generation] kv_cache_bytes`) holds for all of them together: past it the least recently
//! used caches are dropped; a cache idle past `idle_timeout_ms` is dropped too. A dropped
//! cache is rebuilt by the node that holds the sequence, which replays its tokens.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::config::GenerationConfig;
use crate::model::KvCache;

/// `(model, shard, sequence)`.
pub type KvKey = (String, usize, u64);

struct Entry {
    cache: KvCache,
    bytes: u64,
    used: Instant,
}

/// The caches of one node.
pub struct KvStore {
    entries: Mutex<HashMap<KvKey, Entry>>,
    budget: u64,
    idle: Duration,
    bytes: AtomicU64,
    /// Caches dropped to stay within the budget.
    pub evicted: AtomicU64,
    /// Caches dropped after idling.
    pub expired: AtomicU64,
}

impl KvStore {
    /// A store within `cfg`'s budget and idle timeout.
    pub fn new(cfg: &GenerationConfig) -> KvStore {
        KvStore {
            entries: Mutex::new(HashMap::new()),
            budget: cfg.kv_cache_bytes,
            idle: Duration::from_millis(cfg.idle_timeout_ms),
            bytes: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            expired: AtomicU64::new(0),
        }
    }

    /// Takes `key`'s cache out for a step; `None` when there is none (never made, dropped).
    pub fn take(&self, key: &KvKey) -> Option<KvCache> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let e = entries.remove(key)?;
        self.bytes.fetch_sub(e.bytes, Ordering::Relaxed);
        Some(e.cache)
    }

    /// Puts `key`'s cache back after a step, then drops idle caches and, while the budget is
    /// exceeded, the least recently used ones (the one just put last of all).
    pub fn put(&self, key: KvKey, cache: KvCache) {
        let now = Instant::now();
        let bytes = cache.bytes();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = entries.insert(key.clone(), Entry { cache, bytes, used: now }) {
            self.bytes.fetch_sub(old.bytes, Ordering::Relaxed);
        }
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.expire_locked(&mut entries, now);
        while self.bytes.load(Ordering::Relaxed) > self.budget {
            let Some(lru) =
                entries.iter().filter(|(k, _)| **k != key).min_by_key(|(_, e)| e.used).map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(e) = entries.remove(&lru) {
                self.bytes.fetch_sub(e.bytes, Ordering::Relaxed);
                self.evicted.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(model = %lru.0, shard = lru.1, seq = lru.2, "KV cache evicted");
            }
        }
        if self.bytes.load(Ordering::Relaxed) > self.budget
            && let Some(e) = entries.remove(&key)
        {
            // Alone over the budget: not kept at all.
            self.bytes.fetch_sub(e.bytes, Ordering::Relaxed);
            self.evicted.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Keeps the entries `keep` accepts, counting the others' bytes out; how many went.
    fn retain(&self, entries: &mut HashMap<KvKey, Entry>, keep: impl Fn(&KvKey, &Entry) -> bool) -> usize {
        let before = entries.len();
        entries.retain(|k, e| {
            let kept = keep(k, e);
            if !kept {
                self.bytes.fetch_sub(e.bytes, Ordering::Relaxed);
            }
            kept
        });
        before - entries.len()
    }

    fn expire_locked(&self, entries: &mut HashMap<KvKey, Entry>, now: Instant) {
        let gone = self.retain(entries, |_, e| now.duration_since(e.used) < self.idle);
        self.expired.fetch_add(gone as u64, Ordering::Relaxed);
    }

    /// Drops idle caches now.
    pub fn expire(&self) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        self.expire_locked(&mut entries, Instant::now());
    }

    /// Drops every cache of sequence `seq` of `model` (it finished, or its client left).
    pub fn release(&self, model: &str, seq: u64) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        self.retain(&mut entries, |k, _| !(k.0 == model && k.2 == seq));
    }

    /// Drops every cache of `model` (unloaded).
    pub fn release_model(&self, model: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        self.retain(&mut entries, |k, _| k.0 != model);
    }

    /// Bytes held now.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Caches held now.
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Tensor;

    fn cache(positions: usize) -> KvCache {
        let device = crate::model::default_device();
        let mut c = KvCache::new(1);
        let t = || Tensor::<4>::zeros([1, 2, positions, 4], &device);
        c.layers[0].append(t(), t());
        c
    }

    #[test]
    fn the_budget_drops_the_least_recently_used_and_idle_caches_expire() {
        // One cache of 10 positions: 2 tensors x 2 heads x 10 x 4 x 4 bytes = 640 bytes.
        let store = KvStore::new(&GenerationConfig { kv_cache_bytes: 1500, idle_timeout_ms: 60_000 });
        let key = |s| ("m".to_string(), 0, s);
        store.put(key(1), cache(10));
        store.put(key(2), cache(10));
        assert_eq!((store.len(), store.bytes()), (2, 1280));
        store.put(key(3), cache(10));
        assert!(store.take(&key(1)).is_none(), "the least recently used went first");
        assert_eq!((store.len(), store.evicted.load(Ordering::Relaxed)), (2, 1));
        store.release("m", 2);
        assert_eq!((store.len(), store.bytes()), (1, 640));
        let short = KvStore::new(&GenerationConfig { kv_cache_bytes: 1 << 20, idle_timeout_ms: 1 });
        short.put(key(1), cache(10));
        std::thread::sleep(Duration::from_millis(5));
        short.expire();
        assert_eq!((short.len(), short.bytes(), short.expired.load(Ordering::Relaxed)), (0, 0, 1));
    }
}
