//! [`PeerPool`]: one connection per peer, dialled on first use and dialled again, with
//! exponential backoff, after it drops.
//!
//! A [`PeerClient`] belongs to the actix runtime (thread) that made it, so a pool is
//! per thread: [`PeerPool::local`] hands out this thread's pool for a given pool id. Two
//! threads talking to the same peer therefore use two connections; the heartbeat sender runs
//! on its own arbiter and so never shares a connection (or a queue) with a large tensor.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::peer::{PeerClient, PeerConfig, PeerError};

/// Delays between connection attempts: `initial`, doubled each time, at most `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// First delay.
    pub initial: Duration,
    /// Largest delay.
    pub max: Duration,
    /// Longest a request spends dialling before it fails (a peer that refuses connections
    /// this long is taken as gone, so the caller can route around it).
    pub budget: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { initial: Duration::from_millis(25), max: Duration::from_secs(1), budget: Duration::from_millis(300) }
    }
}

impl Backoff {
    /// The delay before attempt `n` (0-based; attempt 0 has none).
    pub fn delay(&self, n: u32) -> Duration {
        if n == 0 {
            return Duration::ZERO;
        }
        self.initial.saturating_mul(1u32 << (n - 1).min(16)).min(self.max)
    }
}

/// This thread's connections, by peer URL.
pub struct PeerPool {
    cfg: PeerConfig,
    backoff: Backoff,
    conns: RefCell<HashMap<String, PeerClient>>,
}

thread_local! {
    static POOLS: RefCell<HashMap<u64, Rc<PeerPool>>> = RefCell::new(HashMap::new());
}

impl PeerPool {
    /// A pool (not shared with any thread).
    pub fn new(cfg: PeerConfig, backoff: Backoff) -> PeerPool {
        PeerPool { cfg, backoff, conns: RefCell::new(HashMap::new()) }
    }

    /// This thread's pool `id`, made from `cfg` on first use.
    pub fn local(id: u64, cfg: &PeerConfig) -> Rc<PeerPool> {
        POOLS.with(|p| {
            Rc::clone(
                p.borrow_mut().entry(id).or_insert_with(|| Rc::new(PeerPool::new(cfg.clone(), Backoff::default()))),
            )
        })
    }

    /// Drops this thread's pool `id` (its connections close).
    pub fn forget_local(id: u64) {
        POOLS.with(|p| p.borrow_mut().remove(&id));
    }

    /// A live connection to `url`, dialling (with backoff) until `within` has passed. A
    /// refused key is final: it is not retried.
    pub async fn get(&self, url: &str, within: Duration) -> Result<PeerClient, PeerError> {
        if let Some(c) = self.conns.borrow().get(url).filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        let start = Instant::now();
        let mut attempt = 0;
        loop {
            let delay = self.backoff.delay(attempt);
            if start.elapsed() + delay > within && attempt > 0 {
                return Err(PeerError::Connect {
                    url: url.into(),
                    message: format!("gave up after {attempt} attempts"),
                });
            }
            tokio::time::sleep(delay).await;
            // Another task on this thread may have connected while we slept.
            if let Some(c) = self.conns.borrow().get(url).filter(|c| !c.is_closed()) {
                return Ok(c.clone());
            }
            match PeerClient::connect(url, &self.cfg).await {
                Ok(c) => {
                    self.conns.borrow_mut().insert(url.to_string(), c.clone());
                    return Ok(c);
                }
                Err(e @ PeerError::Unauthorized(_)) => return Err(e),
                Err(e) => {
                    tracing::debug!(%url, attempt, error = %e, "peer connect failed");
                    attempt += 1;
                    if start.elapsed() >= within {
                        return Err(e);
                    }
                }
            }
        }
    }

    /// Sends one request to `url` (dialling first if needed) and waits up to `deadline`,
    /// connection time included. Never resent: delivery is at most once.
    pub async fn request(
        &self,
        url: &str,
        name: &str,
        payload: &[u8],
        deadline: Duration,
        request_id: u64,
    ) -> Result<Vec<u8>, PeerError> {
        let start = Instant::now();
        let client = self.get(url, deadline.min(self.backoff.budget)).await?;
        let left = deadline.saturating_sub(start.elapsed()).max(Duration::from_millis(1));
        let result = client.request(name, payload, left, request_id).await;
        if matches!(result, Err(PeerError::Closed)) {
            self.conns.borrow_mut().remove(url);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let b = Backoff {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(50),
            budget: Duration::from_secs(1),
        };
        let d: Vec<u64> = (0..6).map(|n| b.delay(n).as_millis() as u64).collect();
        assert_eq!(d, vec![0, 10, 20, 40, 50, 50]);
        assert_eq!(b.delay(60), Duration::from_millis(50));
    }
}
