//! [`Node`]: what every part of one node shares: its identity and config, the shards it
//! holds (a [`Registry`] keyed by model and shard id), the requests it waits on, its view of
//! the cluster, and the addresses of its actors.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use actix::Addr;
use burn::tensor::Device;
use dashmap::DashMap;
use tokio::sync::oneshot;

use mlmf_actors::auth::ClusterKey;
use mlmf_actors::peer::{PeerConfig, PeerError};
use mlmf_actors::pool::PeerPool;
use mlmf_actors::priority::PriorityMailbox;
use mlmf_actors::registry::Registry;
use mlmf_actors::remote::RemoteMessage;

use crate::config::NodeConfig;
use crate::model::{Checkpoint, MappedCheckpoint};

use super::balancer::{Balancer, SetView};
use super::coordinator::Coordinator;
use super::metrics::Metrics;
use super::shard::{ShardActor, ShardHandle};
use super::wire::{ClusterView, Deliver};

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
    pub latency: Arc<Mutex<super::metrics::Histogram>>,
}

impl LocalShard {
    /// Runs `msg` on a compute thread, higher `priority` first; answers "overloaded" at
    /// once when the queue is full.
    pub async fn send<M>(&self, priority: u8, msg: M) -> Result<M::Result, mlmf_actors::registry::SendError>
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
    pub fn stats(&self, model: &str, shard: usize) -> super::wire::ShardStats {
        let h = self.latency.lock().unwrap_or_else(|e| e.into_inner());
        super::wire::ShardStats {
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

/// Everything one node's parts share. Cheap to clone.
#[derive(Clone)]
pub struct Node(Arc<NodeInner>);

/// The shared state itself.
pub struct NodeInner {
    /// Config.
    pub cfg: NodeConfig,
    /// Node id.
    pub id: String,
    /// The bound `host:port`.
    pub addr: String,
    /// How this node speaks to peers.
    pub peer: PeerConfig,
    /// The cluster key, when one is configured.
    pub key: Option<ClusterKey>,
    /// The compute device.
    pub device: Device,
    /// Loaded shards by `(model, shard id)`.
    pub shards: Registry<(String, usize), LocalShard>,
    /// Requests this node took, waiting for their last stage, by attempt id.
    pub pending: DashMap<u64, oneshot::Sender<Deliver>>,
    /// Mapped checkpoints this node can read, by directory.
    pub checkpoints: Mutex<HashMap<PathBuf, Arc<MappedCheckpoint>>>,
    /// The latest view of the cluster.
    pub view: RwLock<Arc<ClusterView>>,
    /// Set once the node has joined (or is the coordinator).
    pub joined: AtomicBool,
    /// Set when the node is leaving: it must not join again.
    pub leaving: AtomicBool,
    /// The coordinator actor, on the coordinator node (until it is superseded).
    pub coordinator: RwLock<Option<Addr<Coordinator>>>,
    /// A user's own balancing strategy, used instead of the built-in balancers when set.
    pub custom_balancer: OnceLock<actix::Recipient<super::balancer::PickRoute>>,
    /// Members' CPU use from the latest heartbeats (for resource-based balancing).
    pub member_cpu: Arc<RwLock<HashMap<String, f32>>>,
    /// The balancers, one per thread that takes requests (see [`Node::balancer`]).
    pub balancers: Mutex<Vec<Addr<Balancer>>>,
    /// The node actor (loads and unloads shards).
    pub node_actor: OnceLock<Addr<super::node::NodeActor>>,
    /// Counters and histograms for `/metrics`.
    pub metrics: Metrics,
    /// Stage runs in progress on this node.
    pub in_flight: AtomicUsize,
    /// HTTP requests taken.
    pub requests: AtomicU64,
    /// Inference requests being served over HTTP now.
    pub http_in_flight: AtomicUsize,
    pool_id: u64,
}

static NEXT_POOL: AtomicU64 = AtomicU64::new(1);

impl std::ops::Deref for Node {
    type Target = NodeInner;
    fn deref(&self) -> &NodeInner {
        &self.0
    }
}

impl Node {
    /// A node bound at `addr`.
    pub fn new(
        cfg: NodeConfig,
        addr: String,
        key: Option<ClusterKey>,
        device: Device,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Node {
        let compression = cfg.compression.iter().filter_map(|c| mlmf_actors::compression::Compression::from_name(c));
        let peer = PeerConfig { key: key.clone(), compression: compression.collect(), tls, ..PeerConfig::default() };
        let id = cfg.node_id.clone().unwrap_or_else(|| addr.clone());
        Node(Arc::new(NodeInner {
            cfg,
            id,
            addr,
            peer,
            key,
            device,
            shards: Registry::default(),
            pending: DashMap::new(),
            checkpoints: Mutex::new(HashMap::new()),
            view: RwLock::new(Arc::new(ClusterView::default())),
            joined: AtomicBool::new(false),
            leaving: AtomicBool::new(false),
            coordinator: RwLock::new(None),
            balancers: Mutex::new(Vec::new()),
            member_cpu: Arc::default(),
            custom_balancer: OnceLock::new(),
            node_actor: OnceLock::new(),
            metrics: Metrics::default(),
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            http_in_flight: AtomicUsize::new(0),
            pool_id: NEXT_POOL.fetch_add(2, Ordering::Relaxed),
        }))
    }

    /// The current view.
    pub fn view(&self) -> Arc<ClusterView> {
        Arc::clone(&self.view.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Adopts `view` when it is newer than the one held, and tells the balancers. A view of
    /// an older term is refused: the newer view held is returned, for the superseded
    /// coordinator that sent it. A view of a newer term naming another coordinator makes
    /// this node step down if it coordinates (it was replaced while it was away).
    pub fn set_view(&self, view: ClusterView) -> Option<Arc<ClusterView>> {
        let mut held = self.view.write().unwrap_or_else(|e| e.into_inner());
        if view.term < held.term {
            return Some(Arc::clone(&held));
        }
        if view.term == held.term && view.version < held.version && held.coordinator == view.coordinator {
            return None;
        }
        let view = Arc::new(view);
        *held = Arc::clone(&view);
        drop(held);
        for b in self.balancers.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            b.do_send(SetView(Arc::clone(&view)));
        }
        if view.coordinator != self.id && self.is_coordinator() {
            let superseded = self.coordinator.write().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(c) = superseded {
                tracing::warn!(coordinator = %view.coordinator, term = view.term, "superseded: stepping down");
                c.do_send(super::coordinator::StepDown);
                super::node::start_heartbeats(self);
            }
        }
        None
    }

    /// The coordinator actor, when this node coordinates.
    pub fn coordinator(&self) -> Option<Addr<Coordinator>> {
        self.coordinator.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// This thread's balancer, started on this thread's arbiter on first use: a request
    /// asks it for a route without crossing threads. Every balancer gets every view.
    pub fn balancer(&self) -> Addr<Balancer> {
        thread_local! {
            static BALANCERS: std::cell::RefCell<HashMap<u64, Addr<Balancer>>> = std::cell::RefCell::new(HashMap::new());
        }
        BALANCERS.with(|b| {
            b.borrow_mut()
                .entry(self.pool_id)
                .or_insert_with(|| {
                    let view = self.view();
                    let (cfg, cpu) = (self.cfg.balancing.clone(), Arc::clone(&self.member_cpu));
                    let addr = actix::Supervisor::start(move |_| Balancer::new(cfg.clone(), Arc::clone(&cpu)));
                    addr.do_send(SetView(view));
                    self.balancers.lock().unwrap_or_else(|e| e.into_inner()).push(addr.clone());
                    addr
                })
                .clone()
        })
    }

    /// Whether this node is the coordinator.
    pub fn is_coordinator(&self) -> bool {
        self.coordinator.read().unwrap_or_else(|e| e.into_inner()).is_some()
    }

    /// The websocket URL of the peer endpoint at `addr` (`wss://` when links use TLS).
    pub fn peer_url(&self, addr: &str) -> String {
        let scheme = if self.peer.tls.is_some() { "wss" } else { "ws" };
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
        self.call_on(self.pool_id, addr, name, payload, deadline, request_id).await
    }

    /// Sends a typed message to the node at `addr` and decodes its typed reply.
    pub async fn ask<M: RemoteMessage>(&self, addr: &str, msg: &M, deadline: Duration) -> Result<M::Reply, PeerError> {
        self.ask_on(self.pool_id, addr, msg, deadline).await
    }

    /// As [`Node::ask`], on the connections reserved for heartbeats (never behind a tensor).
    pub async fn ask_heartbeat<M: RemoteMessage>(
        &self,
        addr: &str,
        msg: &M,
        deadline: Duration,
    ) -> Result<M::Reply, PeerError> {
        self.ask_on(self.pool_id + 1, addr, msg, deadline).await
    }

    async fn ask_on<M: RemoteMessage>(
        &self,
        pool: u64,
        addr: &str,
        msg: &M,
        deadline: Duration,
    ) -> Result<M::Reply, PeerError> {
        let payload = mlmf_actors::remote::encode_request(msg)?;
        let bytes = self.call_on(pool, addr, M::NAME, &payload, deadline, 0).await?;
        mlmf_actors::remote::decode_reply::<M>(&bytes)
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
        let pool = PeerPool::local(pool, &self.peer);
        self.metrics.bytes_sent.fetch_add(payload.len() as u64, Ordering::Relaxed);
        let out = pool.request(&self.peer_url(addr), name, payload, deadline, request_id).await;
        if let Ok(b) = &out {
            self.metrics.bytes_received.fetch_add(b.len() as u64, Ordering::Relaxed);
        }
        out
    }

    /// The address of node `id` in the current view.
    pub fn addr_of(&self, id: &str) -> Option<String> {
        if id == self.id {
            return Some(self.addr.clone());
        }
        self.view().addr_of(id).map(str::to_string)
    }

    /// Whether this node may and can read the model directory `path`.
    pub fn can_read(&self, path: &Path) -> bool {
        let Ok(real) = path.canonicalize() else { return false };
        let allowed = self.cfg.model_roots.is_empty()
            || self.cfg.model_roots.iter().any(|r| r.canonicalize().is_ok_and(|r| real.starts_with(r)));
        allowed && real.join("config.json").is_file()
    }

    /// The mapped checkpoint at `path`, opened once per node.
    pub fn open_local(&self, path: &Path) -> Result<Arc<MappedCheckpoint>, String> {
        if !self.can_read(path) {
            return Err(format!("node {} cannot read {}", self.id, path.display()));
        }
        let key = path.canonicalize().map_err(|e| format!("{}: {e}", path.display()))?;
        if let Some(m) = self.checkpoints.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Ok(Arc::clone(m));
        }
        let ckpt = Arc::new(Checkpoint::open(&key).map_err(|e| e.to_string())?);
        let mapped = Arc::new(ckpt.map().map_err(|e| e.to_string())?);
        self.checkpoints.lock().unwrap_or_else(|e| e.into_inner()).insert(key, Arc::clone(&mapped));
        Ok(mapped)
    }

    /// Forgets cached checkpoints no loaded shard uses.
    pub fn release_checkpoints(&self) {
        let live = self.shards.len();
        if live == 0 {
            self.checkpoints.lock().unwrap_or_else(|e| e.into_inner()).clear();
        }
    }

    /// Where pulled weights go.
    pub fn data_dir(&self) -> PathBuf {
        self.cfg.data_dir.clone().unwrap_or_else(|| {
            let safe: String = self.id.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
            std::env::temp_dir().join(format!("mlmf-{safe}"))
        })
    }
}
