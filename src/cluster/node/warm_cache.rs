//! [`WarmCache`]: shard replicas this node unloaded, kept whole (weights in memory, files
//! mapped, compute threads parked) within a byte budget (`[cache] warm_bytes`), so that one
//! loaded again soon comes back from memory instead of from disk. The least recently
//! unloaded go first past the budget, and each goes after `warm_ttl_s`. A kept replica is
//! given back only for the same model, the same shard and the same files, unchanged since
//! they were read (length and modification time), and only after a warm-up forward answers.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::config::CacheConfig;
use crate::plan::ShardSpec;

use super::local_shard::LocalShard;

/// One replica kept (only one read from this node's files, so with an origin).
struct Kept {
    model: String,
    shard: LocalShard,
    since: Instant,
}

impl Kept {
    fn resident(&self) -> u64 {
        self.shard.origin.as_ref().map_or(0, |o| o.resident)
    }
}

/// Unloaded replicas kept in memory, and what became of the loads that looked for them.
pub struct WarmCache {
    budget: u64,
    ttl: Duration,
    kept: Mutex<VecDeque<Kept>>,
    /// Loads given a kept replica.
    pub hits: AtomicU64,
    /// Loads that found none (or only one whose files changed since), while the cache is on.
    pub misses: AtomicU64,
    /// Replicas dropped: past the budget, past their time, or stale.
    pub evictions: AtomicU64,
}

impl WarmCache {
    /// A cache of `cfg.warm_bytes` (off at 0).
    pub fn new(cfg: &CacheConfig) -> WarmCache {
        WarmCache {
            budget: cfg.warm_bytes,
            ttl: Duration::from_secs(cfg.warm_ttl_s),
            kept: Mutex::new(VecDeque::new()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Kept>> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps `shard`, just unloaded from `model`, when it was read from this node's own files
    /// and fits the budget (the oldest kept go to make room); otherwise drops it, which frees
    /// its memory once its last request has finished.
    pub fn keep(&self, model: &str, shard: LocalShard) {
        let Some(resident) = shard.origin.as_ref().map(|o| o.resident) else { return };
        if self.budget == 0 {
            return;
        }
        if resident > self.budget {
            self.evictions.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let mut kept = self.lock();
        let mut used: u64 = kept.iter().map(Kept::resident).sum();
        while used + resident > self.budget {
            let Some(old) = kept.pop_front() else { break };
            used -= old.resident();
            self.evictions.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(model = %old.model, shard = old.shard.handle.spec.id, "warm cache: evicted for room");
        }
        tracing::debug!(%model, shard = shard.handle.spec.id, resident, "warm cache: kept an unloaded replica");
        kept.push_back(Kept { model: model.to_string(), shard, since: Instant::now() });
    }

    /// The kept replica of `model`'s shard `spec` read from `dir`, if one is kept and its
    /// files have not changed since; counted as a hit or a miss while the cache is on.
    pub fn take(&self, model: &str, spec: &ShardSpec, dir: &Path) -> Option<LocalShard> {
        if self.budget == 0 {
            return None;
        }
        let dir = dir.canonicalize().ok();
        let found = {
            let mut kept = self.lock();
            let at = kept.iter().position(|k| {
                k.model == model
                    && k.shard.handle.spec == *spec
                    && k.shard.origin.as_ref().is_some_and(|o| Some(&o.dir) == dir.as_ref())
            });
            at.and_then(|i| kept.remove(i))
        };
        match found {
            Some(k) if k.shard.origin.as_ref().is_some_and(|o| o.unchanged()) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                Some(k.shard)
            }
            stale => {
                if stale.is_some() {
                    tracing::info!(%model, shard = spec.id, "warm cache: the files changed since; loading them again");
                    self.evictions.fetch_add(1, Ordering::Relaxed);
                }
                self.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Drops the replicas kept longer than `warm_ttl_s`.
    pub fn expire(&self) {
        let mut kept = self.lock();
        let before = kept.len();
        kept.retain(|k| k.since.elapsed() < self.ttl);
        self.evictions.fetch_add((before - kept.len()) as u64, Ordering::Relaxed);
    }

    /// Bytes held by the kept replicas.
    pub fn bytes(&self) -> u64 {
        self.lock().iter().map(Kept::resident).sum()
    }

    /// Replicas kept.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
