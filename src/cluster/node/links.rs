//! [`PeerLinks`]: how this node talks to its peers over `/v1/peer`: requests by message name or
//! typed, on this thread's connections, with heartbeats on connections of their own so that
//! a heartbeat never queues behind a tensor. Bytes each way are counted for `/metrics`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use mlmf_actors::peer::{PeerConfig, PeerError};
use mlmf_actors::pool::PeerPool;
use mlmf_actors::remote::{RemoteMessage, decode_reply, encode_request};

use crate::cluster::metrics::Metrics;

/// Pool keys: each node in a process has its own pair (data, heartbeats).
static NEXT_POOL: AtomicU64 = AtomicU64::new(1);

/// This node's outbound links.
pub struct PeerLinks {
    /// How this node speaks to peers (key, compression, TLS, limits).
    pub config: PeerConfig,
    pool: u64,
    metrics: Arc<Metrics>,
}

impl PeerLinks {
    /// Links speaking `config`, counting bytes into `metrics`.
    pub fn new(config: PeerConfig, metrics: Arc<Metrics>) -> PeerLinks {
        PeerLinks { config, pool: NEXT_POOL.fetch_add(2, Ordering::Relaxed), metrics }
    }

    /// The websocket URL of the peer endpoint at `addr` (`wss://` when links use TLS).
    pub fn url(&self, addr: &str) -> String {
        let scheme = if self.config.tls.is_some() { "wss" } else { "ws" };
        format!("{scheme}://{addr}/v1/peer")
    }

    /// Sends request `name` to the node at `addr` over this thread's connection to it.
    pub async fn call(
        &self,
        addr: &str,
        name: &str,
        payload: &[u8],
        deadline: Duration,
        request_id: u64,
    ) -> Result<Vec<u8>, PeerError> {
        self.call_on(self.pool, addr, name, payload, deadline, request_id).await
    }

    /// Sends a typed message to the node at `addr` and decodes its typed reply.
    pub async fn ask<M: RemoteMessage>(&self, addr: &str, msg: &M, deadline: Duration) -> Result<M::Reply, PeerError> {
        self.ask_on(self.pool, addr, msg, deadline).await
    }

    /// As [`PeerLinks::ask`], on the connections reserved for heartbeats (never behind a tensor).
    pub async fn ask_heartbeat<M: RemoteMessage>(
        &self,
        addr: &str,
        msg: &M,
        deadline: Duration,
    ) -> Result<M::Reply, PeerError> {
        self.ask_on(self.pool + 1, addr, msg, deadline).await
    }

    /// As [`PeerLinks::call`], on the connections reserved for heartbeats (the control
    /// plane's Raft messages go this way).
    pub async fn call_urgent(
        &self,
        addr: &str,
        name: &str,
        payload: &[u8],
        deadline: Duration,
    ) -> Result<Vec<u8>, PeerError> {
        self.call_on(self.pool + 1, addr, name, payload, deadline, 0).await
    }

    async fn ask_on<M: RemoteMessage>(
        &self,
        pool: u64,
        addr: &str,
        msg: &M,
        deadline: Duration,
    ) -> Result<M::Reply, PeerError> {
        let payload = encode_request(msg)?;
        let bytes = self.call_on(pool, addr, M::NAME, &payload, deadline, 0).await?;
        decode_reply::<M>(&bytes)
    }

    async fn call_on(
        &self,
        pool: u64,
        addr: &str,
        name: &str,
        payload: &[u8],
        deadline: Duration,
        request_id: u64,
    ) -> Result<Vec<u8>, PeerError> {
        let pool = PeerPool::local(pool, &self.config);
        self.metrics.bytes_sent.fetch_add(payload.len() as u64, Ordering::Relaxed);
        let out = pool.request(&self.url(addr), name, payload, deadline, request_id).await;
        if let Ok(b) = &out {
            self.metrics.bytes_received.fetch_add(b.len() as u64, Ordering::Relaxed);
        }
        out
    }
}
