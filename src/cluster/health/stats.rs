//! [`StatsSampler`]: the resource and load figures a heartbeat carries (memory, CPU, shards,
//! requests, errors, per-replica queues and latency), sampled from this process, the machine
//! (sysinfo) and the node's own counters.

use std::collections::HashMap;
use std::time::Instant;

use crate::cluster::metrics::BUCKETS;
use crate::cluster::node::Node;
use crate::cluster::wire::NodeStats;

/// Samples this process and machine for heartbeats.
pub struct StatsSampler {
    sys: sysinfo::System,
    pid: Option<sysinfo::Pid>,
    last_buckets: Vec<u64>,
    /// Each replica's tokens at the previous sample, and when.
    last_tokens: HashMap<(String, usize), (Instant, u64)>,
}

impl Default for StatsSampler {
    fn default() -> Self {
        StatsSampler {
            sys: sysinfo::System::new(),
            pid: sysinfo::get_current_pid().ok(),
            last_buckets: Vec::new(),
            last_tokens: HashMap::new(),
        }
    }
}

/// The upper bound (ms) of the bucket holding the 99th percentile of the observations
/// between two cumulative bucket snapshots; 0 when there were none.
pub fn p99_between(before: &[u64], after: &[u64]) -> f64 {
    let n = BUCKETS.len();
    let d = |i: usize| after.get(i).copied().unwrap_or(0).saturating_sub(before.get(i).copied().unwrap_or(0));
    let total = d(n);
    if total == 0 {
        return 0.0;
    }
    let want = (total as f64 * 0.99).ceil() as u64;
    (0..n).find(|&i| d(i) >= want).map(|i| BUCKETS[i] * 1000.0).unwrap_or(f64::INFINITY)
}

impl StatsSampler {
    /// Each loaded replica's stats, its tokens/s measured since the previous sample (a
    /// replica new since then counts from its load).
    fn shard_stats(&mut self, node: &Node) -> Vec<crate::cluster::wire::ShardStats> {
        let now = Instant::now();
        let mut seen = HashMap::new();
        let stats = node
            .shards
            .entries()
            .iter()
            .map(|((m, s), l)| {
                let mut st = l.stats(m, *s);
                let key = (m.clone(), *s);
                if let Some((then, before)) = self.last_tokens.get(&key) {
                    let dt = now.duration_since(*then).as_secs_f64();
                    if dt > 0.0 && st.tokens >= *before {
                        st.tokens_per_s = (st.tokens - before) as f64 / dt;
                    }
                }
                seen.insert(key, (now, st.tokens));
                st
            })
            .collect();
        self.last_tokens = seen;
        stats
    }

    /// Current stats of `node`.
    pub fn sample(&mut self, node: &Node) -> NodeStats {
        // Kept replicas past their time go at each heartbeat.
        node.warm.expire();
        self.sys.refresh_memory();
        self.sys.refresh_cpu_usage();
        let mut process_memory = 0;
        if let Some(pid) = self.pid {
            self.sys.refresh_processes(sysinfo::ProcessesToUpdate::Some(&[pid]), true);
            process_memory = self.sys.process(pid).map(|p| p.memory()).unwrap_or(0);
        }
        NodeStats {
            memory_total: self.sys.total_memory(),
            memory_used: self.sys.used_memory(),
            process_memory,
            cpu_percent: self.sys.global_cpu_usage(),
            shards: node.shards.len(),
            in_flight: node.in_flight.load(std::sync::atomic::Ordering::Relaxed),
            requests: node.requests.load(std::sync::atomic::Ordering::Relaxed),
            errors: node.metrics.errors.load(std::sync::atomic::Ordering::Relaxed),
            shard_stats: self.shard_stats(node),
            kv_cache_bytes: {
                node.kv.expire();
                node.kv.bytes()
            },
            kv_caches: node.kv.len(),
            p99_ms: {
                let now = node.metrics.latency_buckets();
                let p = p99_between(&self.last_buckets, &now);
                self.last_buckets = now;
                p
            },
        }
    }
}
