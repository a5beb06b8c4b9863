//! [`PriorityGate`]: at most N holders at a time, and waiters admitted highest priority
//! first (FIFO within a priority). Put in front of a mailbox of N workers, it keeps the
//! queue outside the actor, so a high-priority message never waits behind a low one that
//! is merely queued, only behind the N being worked on.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

struct Waiter {
    priority: u8,
    seq: Reverse<u64>,
    tx: oneshot::Sender<()>,
}

impl PartialEq for Waiter {
    fn eq(&self, other: &Self) -> bool {
        (self.priority, self.seq) == (other.priority, other.seq)
    }
}
impl Eq for Waiter {}
impl PartialOrd for Waiter {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Waiter {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.priority, self.seq).cmp(&(other.priority, other.seq))
    }
}

struct State {
    free: usize,
    seq: u64,
    waiting: BinaryHeap<Waiter>,
}

/// A counting gate with priority admission. Cheap to share (`Arc`).
pub struct PriorityGate {
    state: Mutex<State>,
}

/// Held while working; dropping it admits the next waiter.
pub struct Permit {
    gate: Arc<PriorityGate>,
}

impl PriorityGate {
    /// A gate admitting `permits` holders at a time.
    pub fn new(permits: usize) -> Arc<PriorityGate> {
        Arc::new(PriorityGate { state: Mutex::new(State { free: permits.max(1), seq: 0, waiting: BinaryHeap::new() }) })
    }

    /// Waits for a permit; higher `priority` first.
    pub async fn acquire(self: &Arc<Self>, priority: u8) -> Permit {
        let rx = {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if s.free > 0 && s.waiting.is_empty() {
                s.free -= 1;
                return Permit { gate: Arc::clone(self) };
            }
            let (tx, rx) = oneshot::channel();
            s.seq += 1;
            let seq = Reverse(s.seq);
            s.waiting.push(Waiter { priority, seq, tx });
            rx
        };
        // If this future is dropped after the permit was handed over but before it was
        // taken, the guard gives it back.
        let mut guard = Pending { rx: Some(rx), gate: Arc::clone(self) };
        if let Some(rx) = guard.rx.as_mut() {
            let _ = rx.await;
        }
        guard.rx = None;
        Permit { gate: Arc::clone(self) }
    }

    fn release(&self) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(w) = s.waiting.pop() {
            // A waiter that gave up (its future dropped) cannot take the permit: next.
            if w.tx.send(()).is_ok() {
                return;
            }
        }
        s.free += 1;
    }

    /// Waiters now.
    pub fn waiting(&self) -> usize {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).waiting.len()
    }
}

struct Pending {
    rx: Option<oneshot::Receiver<()>>,
    gate: Arc<PriorityGate>,
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(mut rx) = self.rx.take() {
            rx.close();
            if rx.try_recv().is_ok() {
                self.gate.release();
            }
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.gate.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[actix_rt::test]
    async fn high_priority_goes_first_and_fifo_within_a_priority() {
        let gate = PriorityGate::new(1);
        let held = gate.acquire(0).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (name, prio) in [("low-1", 0u8), ("low-2", 0), ("normal", 1), ("high", 2)] {
            let (g, o) = (Arc::clone(&gate), Arc::clone(&order));
            tasks.push(actix_rt::spawn(async move {
                let _p = g.acquire(prio).await;
                o.lock().unwrap().push(name);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(gate.waiting(), 4);
        drop(held);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec!["high", "normal", "low-1", "low-2"]);
    }

    #[actix_rt::test]
    async fn an_abandoned_waiter_does_not_swallow_the_permit() {
        let gate = PriorityGate::new(1);
        let held = gate.acquire(0).await;
        let g = Arc::clone(&gate);
        let abandoned = actix_rt::spawn(async move {
            let _ = g.acquire(5).await;
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
        abandoned.abort();
        let _ = abandoned.await;
        drop(held);
        let _p = tokio::time::timeout(Duration::from_secs(1), gate.acquire(0)).await.expect("permit was lost");
    }
}
