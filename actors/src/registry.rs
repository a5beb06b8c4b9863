//! [`Registry`]: named local recipients, keyed by what a remote message names (a node id
//! and a shard id, say). actix's `SystemRegistry` holds one actor per type, which cannot
//! tell two shards apart.
//!
//! [`Bounded`] puts a limit on the messages in flight to one actor: past it, a send answers
//! [`Overloaded`] at once instead of queueing without bound or dropping silently.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use actix::dev::ToEnvelope;
use actix::{Actor, Addr, Handler, MailboxError, Message};

/// Local actors (or handles to them) by key. Cheap to clone; shared across threads.
pub struct Registry<K, V> {
    inner: Arc<RwLock<HashMap<K, V>>>,
}

impl<K, V> Clone for Registry<K, V> {
    fn clone(&self) -> Self {
        Registry { inner: Arc::clone(&self.inner) }
    }
}

impl<K: Eq + Hash + Clone, V: Clone> Default for Registry<K, V> {
    fn default() -> Self {
        Registry { inner: Arc::new(RwLock::new(HashMap::new())) }
    }
}

impl<K: Eq + Hash + Clone, V: Clone> Registry<K, V> {
    /// Registers `value` under `key`, returning what was there.
    pub fn insert(&self, key: K, value: V) -> Option<V> {
        self.inner.write().unwrap_or_else(|e| e.into_inner()).insert(key, value)
    }

    /// The value under `key`.
    pub fn get(&self, key: &K) -> Option<V> {
        self.inner.read().unwrap_or_else(|e| e.into_inner()).get(key).cloned()
    }

    /// Removes and returns the value under `key`.
    pub fn remove(&self, key: &K) -> Option<V> {
        self.inner.write().unwrap_or_else(|e| e.into_inner()).remove(key)
    }

    /// Removes every entry `keep` rejects, returning them.
    pub fn remove_where(&self, mut drop: impl FnMut(&K) -> bool) -> Vec<(K, V)> {
        let mut map = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let keys: Vec<K> = map.keys().filter(|k| drop(k)).cloned().collect();
        keys.into_iter().filter_map(|k| map.remove(&k).map(|v| (k, v))).collect()
    }

    /// Every entry.
    pub fn entries(&self) -> Vec<(K, V)> {
        self.inner.read().unwrap_or_else(|e| e.into_inner()).iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.inner.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The actor has `capacity` messages in flight already.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("overloaded: {capacity} messages already in flight")]
pub struct Overloaded {
    /// The limit that was reached.
    pub capacity: usize,
}

/// Why a bounded send failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Too many messages in flight.
    #[error(transparent)]
    Overloaded(#[from] Overloaded),
    /// The actor is gone or dropped the message.
    #[error("mailbox: {0}")]
    Mailbox(String),
}

/// An address with a bound on messages in flight.
pub struct Bounded<A: Actor> {
    addr: Addr<A>,
    in_flight: Arc<AtomicUsize>,
    capacity: usize,
}

impl<A: Actor> Clone for Bounded<A> {
    fn clone(&self) -> Self {
        Bounded { addr: self.addr.clone(), in_flight: Arc::clone(&self.in_flight), capacity: self.capacity }
    }
}

struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl<A: Actor> Bounded<A> {
    /// Wraps `addr`, allowing `capacity` messages in flight.
    pub fn new(addr: Addr<A>, capacity: usize) -> Bounded<A> {
        Bounded { addr, in_flight: Arc::new(AtomicUsize::new(0)), capacity: capacity.max(1) }
    }

    /// Messages in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// The address.
    pub fn addr(&self) -> &Addr<A> {
        &self.addr
    }

    /// Sends `msg` and waits for the answer, or answers [`Overloaded`] at once when
    /// `capacity` messages are in flight.
    pub async fn send<M>(&self, msg: M) -> Result<M::Result, SendError>
    where
        M: Message + Send + 'static,
        M::Result: Send,
        A: Handler<M>,
        A::Context: ToEnvelope<A, M>,
    {
        let now = self.in_flight.fetch_add(1, Ordering::AcqRel);
        let slot = Slot(Arc::clone(&self.in_flight));
        if now >= self.capacity {
            return Err(Overloaded { capacity: self.capacity }.into());
        }
        let result = self.addr.send(msg).await.map_err(|e: MailboxError| SendError::Mailbox(e.to_string()));
        drop(slot);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix::{Context, Message};
    use std::time::Duration;

    struct Slow;
    impl Actor for Slow {
        type Context = Context<Self>;
    }
    #[derive(Message)]
    #[rtype(result = "u32")]
    struct Work(u32);
    impl Handler<Work> for Slow {
        type Result = actix::ResponseFuture<u32>;
        fn handle(&mut self, w: Work, _: &mut Context<Self>) -> Self::Result {
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                w.0
            })
        }
    }

    #[actix_rt::test]
    async fn a_full_actor_answers_overloaded_and_recovers() {
        let b = Bounded::new(Slow.start(), 2);
        let (x, y, z) = futures_util::join!(b.send(Work(1)), b.send(Work(2)), b.send(Work(3)));
        assert_eq!((x, y), (Ok(1), Ok(2)));
        assert_eq!(z, Err(SendError::Overloaded(Overloaded { capacity: 2 })));
        assert_eq!(b.in_flight(), 0);
        assert_eq!(b.send(Work(4)).await, Ok(4));
    }

    #[test]
    fn registry_keys_by_node_and_shard() {
        let r: Registry<(String, usize), &str> = Registry::default();
        r.insert(("n1".into(), 0), "a");
        r.insert(("n1".into(), 1), "b");
        r.insert(("n2".into(), 0), "c");
        assert_eq!(r.get(&("n1".into(), 1)), Some("b"));
        let gone = r.remove_where(|k| k.0 == "n1");
        assert_eq!(gone.len(), 2);
        assert_eq!(r.len(), 1);
    }
}
