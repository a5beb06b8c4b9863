//! [`Node`]: what every part of one node shares, each responsibility in a part of its own:
//! identity and configuration (here), the links to peers ([`links`]), the view of the
//! cluster ([`view`]), the balancers ([`balancers`]), the mapped checkpoints
//! ([`checkpoints`]), the loaded shard replicas ([`local_shard`]) and the unloaded ones kept
//! ([`warm_cache`]), and whether this node
//! coordinates ([`role`]).

pub mod balancers;
pub mod checkpoints;
pub mod consensus;
pub mod links;
pub mod local_shard;
pub mod model_files;
pub mod role;
pub mod tokenizers;
pub mod view;
pub mod warm_cache;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::{Arc, OnceLock};

use actix::Recipient;
use burn::tensor::Device;
use dashmap::DashMap;
use tokio::sync::oneshot;

use mlmf_actors::auth::ClusterKey;
use mlmf_actors::compression::Compression;
use mlmf_actors::peer::PeerConfig;
use mlmf_actors::registry::Registry;

use crate::config::NodeConfig;

use super::kv_store::KvStore;
use super::metrics::Metrics;
use super::wire::{ClusterView, Deliver, LoadShard};

pub use balancers::BalancerPool;
pub use checkpoints::CheckpointCache;
pub use consensus::{Consensus, Propose, RaftCall, RaftStatus};
pub use links::PeerLinks;
pub use local_shard::{LocalShard, Origin};
pub use role::{ControlMessage, ControlRole, RoleChange};
pub use tokenizers::TokenizerCache;
pub use view::{Offer, ViewHolder};
pub use warm_cache::WarmCache;

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
    /// The cluster key, when one is configured.
    pub key: Option<ClusterKey>,
    /// The compute device.
    pub device: Device,
    /// How this node reaches its peers.
    pub links: PeerLinks,
    /// The view of the cluster this node routes by.
    pub view: ViewHolder,
    /// Whether this node coordinates, and how its parts reach the coordinator.
    pub role: ControlRole,
    /// The control plane's Raft group as this node sees it.
    pub consensus: Consensus,
    /// The balancers that pick routes for the requests this node takes.
    pub balancers: BalancerPool,
    /// Mapped checkpoints this node can read, by directory.
    pub checkpoints: CheckpointCache,
    /// Each model's tokenizer, for the requests this node takes.
    pub tokenizers: TokenizerCache,
    /// Loaded shards by `(model, shard id)`.
    pub shards: Registry<(String, usize), LocalShard>,
    /// Unloaded shard replicas kept in memory (`[cache] warm_bytes`).
    pub warm: WarmCache,
    /// The KV caches of the sequences this node's shard replicas serve.
    pub kv: Arc<KvStore>,
    /// Requests waiting to be batched, and what was batched.
    pub batches: crate::cluster::batch_queue::BatchQueues,
    /// Requests this node took, waiting for their last stage, by attempt id.
    pub pending: DashMap<u64, oneshot::Sender<Deliver>>,
    /// The node actor, which loads shard replicas here.
    pub loader: OnceLock<Recipient<LoadShard>>,
    /// Set once the node has joined (or is the coordinator).
    pub joined: AtomicBool,
    /// Set when the node is leaving: it must not join again.
    pub leaving: AtomicBool,
    /// Counters and histograms for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Stage runs in progress on this node.
    pub in_flight: AtomicUsize,
    /// HTTP requests taken.
    pub requests: AtomicU64,
    /// Inference requests being served over HTTP now.
    pub http_in_flight: AtomicUsize,
}

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
        let compression = cfg.compression.iter().filter_map(|c| Compression::from_name(c));
        let peer = PeerConfig { key: key.clone(), compression: compression.collect(), tls, ..PeerConfig::default() };
        let id = cfg.node_id.clone().unwrap_or_else(|| addr.clone());
        let metrics = Arc::new(Metrics::default());
        Node(Arc::new(NodeInner {
            links: PeerLinks::new(peer, Arc::clone(&metrics)),
            view: ViewHolder::default(),
            role: ControlRole::default(),
            consensus: Consensus::default(),
            balancers: BalancerPool::new(cfg.balancing.clone()),
            checkpoints: CheckpointCache::new(&id, cfg.model_roots.clone()),
            tokenizers: TokenizerCache::default(),
            shards: Registry::default(),
            warm: WarmCache::new(&cfg.cache),
            kv: Arc::new(KvStore::new(&cfg.generation)),
            batches: Default::default(),
            pending: DashMap::new(),
            loader: OnceLock::new(),
            joined: AtomicBool::new(false),
            leaving: AtomicBool::new(false),
            metrics,
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            http_in_flight: AtomicUsize::new(0),
            cfg,
            id,
            addr,
            key,
            device,
        }))
    }

    /// The current view.
    pub fn view(&self) -> Arc<ClusterView> {
        self.view.get()
    }

    /// Adopts `view` when it is newer than the one held, and tells the balancers. A view of
    /// an older term is refused: the newer view held is returned, for the superseded
    /// coordinator that sent it. (Whether this node coordinates follows the Raft group,
    /// never a view.)
    pub fn set_view(&self, view: ClusterView) -> Option<Arc<ClusterView>> {
        let view_version = view.version;
        let view = match self.view.offer(view) {
            Offer::Refused(newer) => return Some(newer),
            Offer::Ignored => return None,
            Offer::Invalid(why) => {
                tracing::warn!(version = view_version, error = %why, "an invalid cluster view refused");
                return None;
            }
            Offer::Adopted(view) => view,
        };
        self.balancers.set_view(&view);
        None
    }

    /// This thread's balancer (see [`BalancerPool::local`]).
    pub fn balancer(&self) -> actix::Addr<super::balancer::Balancer> {
        self.balancers.local(|| self.view())
    }

    /// Whether this node is the coordinator.
    pub fn is_coordinator(&self) -> bool {
        self.role.is_coordinator()
    }

    /// The address of node `id` in the current view.
    pub fn addr_of(&self, id: &str) -> Option<String> {
        if id == self.id {
            return Some(self.addr.clone());
        }
        self.view().addr_of(id).map(str::to_string)
    }

    /// Forgets cached checkpoints once no loaded shard uses them.
    pub fn release_checkpoints(&self) {
        self.checkpoints.release_unused(self.shards.len());
    }

    /// Where pulled weights go.
    pub fn data_dir(&self) -> PathBuf {
        self.cfg.data_dir.clone().unwrap_or_else(|| {
            let safe: String = self.id.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
            std::env::temp_dir().join(format!("mlmf-{safe}"))
        })
    }
}
