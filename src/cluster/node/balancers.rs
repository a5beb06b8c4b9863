//! [`BalancerPool`]: the balancers of one node, one per thread that takes requests (so that a
//! request asks for a route without crossing threads), or a user's own strategy in their
//! place. Every balancer gets every view.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use actix::{Addr, Recipient};

use crate::cluster::balancer::{Balancer, PickRoute, SetView};
use crate::cluster::wire::ClusterView;
use crate::config::BalancingConfig;

/// Keys of the per-thread balancer maps: one per node in the process.
static NEXT_POOL: AtomicU64 = AtomicU64::new(1);

thread_local! {
    static BALANCERS: RefCell<HashMap<u64, Addr<Balancer>>> = RefCell::new(HashMap::new());
}

/// A node's balancers.
pub struct BalancerPool {
    cfg: BalancingConfig,
    key: u64,
    started: Mutex<Vec<Addr<Balancer>>>,
    /// A user's own balancing strategy, used instead of the built-in balancers when set.
    pub custom: OnceLock<Recipient<PickRoute>>,
    /// Members' CPU use from the latest heartbeats (for resource-based balancing).
    pub member_cpu: Arc<RwLock<HashMap<String, f32>>>,
}

impl BalancerPool {
    /// Balancers choosing by `cfg`.
    pub fn new(cfg: BalancingConfig) -> BalancerPool {
        BalancerPool {
            cfg,
            key: NEXT_POOL.fetch_add(1, Ordering::Relaxed),
            started: Mutex::new(Vec::new()),
            custom: OnceLock::new(),
            member_cpu: Arc::default(),
        }
    }

    /// This thread's balancer, started on this thread's arbiter on first use with the view
    /// `view` gives.
    pub fn local(&self, view: impl FnOnce() -> Arc<ClusterView>) -> Addr<Balancer> {
        BALANCERS.with(|b| {
            b.borrow_mut()
                .entry(self.key)
                .or_insert_with(|| {
                    let (cfg, cpu) = (self.cfg.clone(), Arc::clone(&self.member_cpu));
                    let addr = actix::Supervisor::start(move |_| Balancer::new(cfg.clone(), Arc::clone(&cpu)));
                    addr.do_send(SetView(view()));
                    self.started.lock().unwrap_or_else(|e| e.into_inner()).push(addr.clone());
                    addr
                })
                .clone()
        })
    }

    /// Tells every balancer of the new view.
    pub fn set_view(&self, view: &Arc<ClusterView>) {
        for b in self.started.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            b.do_send(SetView(Arc::clone(view)));
        }
    }
}
