//! [`LocalShard`]: a shard replica loaded on this node, as the node's registry holds it: the
//! actor, its priority queue, and its load and latency figures.

use std::sync::{Arc, Mutex};

use mlmf_actors::priority::PriorityMailbox;
use mlmf_actors::registry::SendError;

use crate::cluster::metrics::Histogram;
use crate::cluster::shard::{ShardActor, ShardHandle};
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
}

impl LocalShard {
    /// Runs `msg` on a compute thread, higher `priority` first; answers "overloaded" at
    /// once when the queue is full.
    pub async fn send<M>(&self, priority: u8, msg: M) -> Result<M::Result, SendError>
    where
        M: actix::Message + Send + 'static,
        M::Result: Send,
        ShardActor: actix::Handler<M, Result = <M as actix::Message>::Result>,
    {
        let start = std::time::Instant::now();
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
            p50_ms: h.quantile_ms(0.5),
            p99_ms: h.quantile_ms(0.99),
        }
    }
}
