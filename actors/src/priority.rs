//! [`PriorityMailbox`]: a priority queue in front of a [`SyncArbiter`](actix::SyncArbiter)
//! actor. Messages wait in the queue, highest priority first and FIFO within a priority; the
//! actor's own mailbox carries only [`RunNext`] tokens, one per queued message, and a worker
//! thread handling a token takes whichever message is most urgent *then*. So a
//! high-priority message waits only behind the messages being worked on, however many low
//! ones are queued, and the workers still never sleep while work is queued (a gate that let
//! one message at a time into the mailbox cost a thread hand-off per message).
//!
//! A message whose caller gave up (its receiver dropped: a timeout, a cancelled request)
//! is skipped, not computed. A full queue answers [`Overloaded`] at once.

use std::cmp::{Ordering as CmpOrdering, Reverse};
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use actix::{Actor, Addr, Handler, Message, SyncContext};
use tokio::sync::oneshot;

use crate::registry::{Overloaded, SendError};

type Job<A> = Box<dyn FnOnce(&mut A, &mut SyncContext<A>) -> bool + Send>;

struct Queued<A: Actor<Context = SyncContext<A>>> {
    priority: u8,
    seq: Reverse<u64>,
    job: Job<A>,
}

impl<A: Actor<Context = SyncContext<A>>> PartialEq for Queued<A> {
    fn eq(&self, other: &Self) -> bool {
        (self.priority, self.seq) == (other.priority, other.seq)
    }
}
impl<A: Actor<Context = SyncContext<A>>> Eq for Queued<A> {}
impl<A: Actor<Context = SyncContext<A>>> PartialOrd for Queued<A> {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl<A: Actor<Context = SyncContext<A>>> Ord for Queued<A> {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        (self.priority, self.seq).cmp(&(other.priority, other.seq))
    }
}

/// The queue the tokens point at.
pub struct Queue<A: Actor<Context = SyncContext<A>>> {
    heap: Mutex<BinaryHeap<Queued<A>>>,
    seq: AtomicU64,
    working: AtomicUsize,
}

/// Tells a worker to run the most urgent queued message. The actor handles it by calling
/// [`RunNext::run`]:
///
/// ```ignore
/// impl Handler<RunNext<MyActor>> for MyActor {
///     type Result = ();
///     fn handle(&mut self, next: RunNext<MyActor>, ctx: &mut SyncContext<Self>) {
///         next.run(self, ctx)
///     }
/// }
/// ```
pub struct RunNext<A: Actor<Context = SyncContext<A>>>(Arc<Queue<A>>);

impl<A: Actor<Context = SyncContext<A>>> Message for RunNext<A> {
    type Result = ();
}

impl<A: Actor<Context = SyncContext<A>>> RunNext<A> {
    /// Runs the most urgent message whose caller still waits (skipping abandoned ones); does
    /// nothing when the queue is empty (its message was taken by an earlier token).
    pub fn run(self, act: &mut A, ctx: &mut SyncContext<A>) {
        loop {
            let next = self.0.heap.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let Some(q) = next else { return };
            self.0.working.fetch_add(1, Ordering::AcqRel);
            let ran = (q.job)(act, ctx);
            self.0.working.fetch_sub(1, Ordering::AcqRel);
            if ran {
                return;
            }
        }
    }
}

/// A priority queue of bounded length in front of a sync actor. Cheap to clone.
pub struct PriorityMailbox<A: Actor<Context = SyncContext<A>>> {
    addr: Addr<A>,
    queue: Arc<Queue<A>>,
    capacity: usize,
}

impl<A: Actor<Context = SyncContext<A>>> Clone for PriorityMailbox<A> {
    fn clone(&self) -> Self {
        PriorityMailbox { addr: self.addr.clone(), queue: Arc::clone(&self.queue), capacity: self.capacity }
    }
}

impl<A> PriorityMailbox<A>
where
    A: Actor<Context = SyncContext<A>> + Handler<RunNext<A>>,
{
    /// A queue of at most `capacity` waiting messages in front of `addr`.
    pub fn new(addr: Addr<A>, capacity: usize) -> PriorityMailbox<A> {
        let queue = Queue { heap: Mutex::new(BinaryHeap::new()), seq: AtomicU64::new(0), working: AtomicUsize::new(0) };
        PriorityMailbox { addr, queue: Arc::new(queue), capacity: capacity.max(1) }
    }

    /// Queues `msg` at `priority` (higher first) and waits for the answer; answers
    /// [`Overloaded`] at once when `capacity` messages already wait.
    pub async fn send<M>(&self, priority: u8, msg: M) -> Result<M::Result, SendError>
    where
        M: Message + Send + 'static,
        M::Result: Send,
        A: Handler<M, Result = <M as Message>::Result>,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job<A> = Box::new(move |act: &mut A, ctx: &mut SyncContext<A>| {
            if tx.is_closed() {
                return false;
            }
            let _ = tx.send(<A as Handler<M>>::handle(act, msg, ctx));
            true
        });
        {
            let mut heap = self.queue.heap.lock().unwrap_or_else(|e| e.into_inner());
            if heap.len() >= self.capacity {
                return Err(Overloaded { capacity: self.capacity }.into());
            }
            let seq = Reverse(self.queue.seq.fetch_add(1, Ordering::Relaxed));
            heap.push(Queued { priority, seq, job });
        }
        // The token goes after the message, so whichever worker takes it finds work.
        if self.addr.try_send(RunNext(Arc::clone(&self.queue))).is_err() {
            return Err(SendError::Mailbox("the actor's threads are gone".into()));
        }
        rx.await.map_err(|_| SendError::Mailbox("the actor dropped the message".into()))
    }

    /// Messages waiting now.
    pub fn queued(&self) -> usize {
        self.queue.heap.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Messages being worked on now.
    pub fn working(&self) -> usize {
        self.queue.working.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix::SyncArbiter;
    use std::time::Duration;

    type Log = Arc<Mutex<Vec<&'static str>>>;

    /// Records the name of every message it computes.
    struct Worker(Log);
    impl Actor for Worker {
        type Context = SyncContext<Self>;
    }

    #[derive(Message)]
    #[rtype(result = "String")]
    struct Work {
        name: &'static str,
        /// Held until the test lets it finish.
        hold: Option<std::sync::mpsc::Receiver<()>>,
    }

    fn work(name: &'static str) -> Work {
        Work { name, hold: None }
    }

    impl Handler<Work> for Worker {
        type Result = String;
        fn handle(&mut self, w: Work, _: &mut SyncContext<Self>) -> String {
            self.0.lock().unwrap().push(w.name);
            if let Some(hold) = w.hold {
                let _ = hold.recv();
            }
            w.name.to_string()
        }
    }

    impl Handler<RunNext<Worker>> for Worker {
        type Result = ();
        fn handle(&mut self, next: RunNext<Worker>, ctx: &mut SyncContext<Self>) {
            next.run(self, ctx)
        }
    }

    fn start(capacity: usize) -> (PriorityMailbox<Worker>, Log) {
        let log: Log = Arc::default();
        let l = Arc::clone(&log);
        (PriorityMailbox::new(SyncArbiter::start(1, move || Worker(Arc::clone(&l))), capacity), log)
    }

    /// Occupies the one worker until the returned sender is used or dropped.
    async fn occupy(
        mailbox: &PriorityMailbox<Worker>,
        log: &Log,
    ) -> (std::sync::mpsc::Sender<()>, actix_rt::task::JoinHandle<String>) {
        let (release, hold) = std::sync::mpsc::channel();
        let m = mailbox.clone();
        let busy = actix_rt::spawn(async move { m.send(0, Work { name: "busy", hold: Some(hold) }).await.unwrap() });
        while log.lock().unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        (release, busy)
    }

    async fn until_queued(mailbox: &PriorityMailbox<Worker>, n: usize) {
        while mailbox.queued() < n {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    #[actix_rt::test]
    async fn the_most_urgent_waiting_message_runs_next() {
        let (mailbox, log) = start(16);
        let (release, busy) = occupy(&mailbox, &log).await;
        let mut tasks = Vec::new();
        for (i, (name, prio)) in [("low-1", 0u8), ("low-2", 0), ("normal", 1), ("high", 2)].into_iter().enumerate() {
            let m = mailbox.clone();
            tasks.push(actix_rt::spawn(async move { m.send(prio, work(name)).await.unwrap() }));
            until_queued(&mailbox, i + 1).await;
        }
        assert_eq!((mailbox.working(), mailbox.queued()), (1, 4));
        release.send(()).unwrap();
        busy.await.unwrap();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*log.lock().unwrap(), vec!["busy", "high", "normal", "low-1", "low-2"]);
    }

    #[actix_rt::test]
    async fn a_full_queue_answers_overloaded_and_abandoned_messages_are_skipped() {
        let (mailbox, log) = start(2);
        let (release, busy) = occupy(&mailbox, &log).await;
        // Two wait; a third is refused at once.
        let m = mailbox.clone();
        let abandoned = actix_rt::spawn(async move { m.send(0, work("abandoned")).await });
        until_queued(&mailbox, 1).await;
        let m = mailbox.clone();
        let kept = actix_rt::spawn(async move { m.send(0, work("kept")).await });
        until_queued(&mailbox, 2).await;
        let refused = mailbox.send(0, work("refused")).await;
        assert!(matches!(refused, Err(SendError::Overloaded(Overloaded { capacity: 2 }))), "{refused:?}");
        // The caller of one waiting message gives up before the worker is free: it is never
        // computed, and the other one still is.
        abandoned.abort();
        let _ = abandoned.await;
        release.send(()).unwrap();
        assert_eq!(busy.await.unwrap(), "busy");
        assert_eq!(kept.await.unwrap().unwrap(), "kept");
        assert_eq!(*log.lock().unwrap(), vec!["busy", "kept"]);
        // The worker counts itself done just after answering.
        while mailbox.working() > 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(mailbox.queued(), 0);
    }
}
