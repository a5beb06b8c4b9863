//! [`LocalShard`]: a shard replica loaded on this node, as the node's registry holds it: the
//! actor, its priority queue, its load and latency figures, and where its weights came from
//! ([`Origin`], what the warm cache checks before it gives an unloaded replica back).

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use mlmf_actors::priority::PriorityMailbox;
use mlmf_actors::registry::SendError;

use crate::cluster::metrics::Histogram;
use crate::cluster::shard::{Carries, ShardActor, ShardHandle};
use crate::cluster::wire::ShardStats;

/// A shard replica loaded on this node.
#[derive(Clone)]
pub struct LocalShard {
    /// The actor and what it holds.
    pub handle: ShardHandle,
    /// Its priority queue of bounded length: the compute threads take the most urgent
    /// waiting message first.
    pub mailbox: PriorityMailbox<ShardActor>,
    /// Bytes read to load it.
    pub bytes: u64,
    /// Whether its weights were pulled from a peer.
    pub pulled: bool,
    /// Time per message, queueing included.
    pub latency: Arc<Mutex<Histogram>>,
    /// Requests in the messages sent to it and not answered yet (queued or computing; a
    /// batch counts its rows).
    pub ongoing: Arc<AtomicUsize>,
    /// Where its weights were read from, when from this node's own files (not pulled).
    pub origin: Option<Origin>,
}

/// Requests counted in a replica's `ongoing` while this lives.
struct Ongoing<'a>(&'a AtomicUsize, usize);

impl<'a> Ongoing<'a> {
    fn add(counter: &'a AtomicUsize, n: usize) -> Ongoing<'a> {
        counter.fetch_add(n, Ordering::Relaxed);
        Ongoing(counter, n)
    }
}

impl Drop for Ongoing<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(self.1, Ordering::Relaxed);
    }
}

/// The model directory a replica was read from, as it was then: what says whether the
/// replica, unloaded and kept, still holds what those files hold.
#[derive(Debug, Clone, PartialEq)]
pub struct Origin {
    /// The canonical model directory.
    pub dir: PathBuf,
    /// Each weight file with its length and modification time when it was read.
    pub files: Vec<(PathBuf, u64, Option<SystemTime>)>,
    /// Bytes the replica holds in memory: its tensors as f32, once per compute thread (an
    /// upper bound for a tensor slice, which holds part of each).
    pub resident: u64,
}

impl Origin {
    /// Stamps of `files` now (absent when one cannot be read).
    pub fn stamp(files: impl IntoIterator<Item = PathBuf>) -> Option<Vec<(PathBuf, u64, Option<SystemTime>)>> {
        files
            .into_iter()
            .map(|p| {
                let m = std::fs::metadata(&p).ok()?;
                let modified = m.modified().ok();
                Some((p, m.len(), modified))
            })
            .collect()
    }

    /// Whether the files are as they were when the replica was read.
    pub fn unchanged(&self) -> bool {
        Origin::stamp(self.files.iter().map(|f| f.0.clone())).is_some_and(|now| now == self.files)
    }
}

impl LocalShard {
    /// Runs `msg` on a compute thread, higher `priority` first; answers "overloaded" at
    /// once when the queue is full.
    pub async fn send<M>(&self, priority: u8, msg: M) -> Result<M::Result, SendError>
    where
        M: actix::Message + Carries + Send + 'static,
        M::Result: Send,
        ShardActor: actix::Handler<M, Result = <M as actix::Message>::Result>,
    {
        let start = std::time::Instant::now();
        // Counted until answered, or until the caller gives up on it (the guard's drop).
        let _ongoing = Ongoing::add(&self.ongoing, msg.requests());
        let out = self.mailbox.send(priority, msg).await;
        self.latency.lock().unwrap_or_else(|e| e.into_inner()).observe(start.elapsed().as_secs_f64());
        out
    }

    /// This replica's stats now.
    pub fn stats(&self, model: &str, shard: usize) -> ShardStats {
        let h = self.latency.lock().unwrap_or_else(|e| e.into_inner());
        ShardStats {
            model: model.to_string(),
            shard,
            in_flight: self.mailbox.working(),
            queued: self.mailbox.queued(),
            messages: h.count(),
            requests: self.ongoing.load(Ordering::Relaxed),
            tokens: self.handle.counters.tokens(),
            tokens_per_s: 0.0,
            cold_messages: self.handle.counters.cold(),
            p50_ms: h.quantile_ms(0.5),
            p99_ms: h.quantile_ms(0.99),
        }
    }
}
