//! [`NodeActor`] and starting a node: the HTTP API and the peer endpoint on one port, the
//! node's actors each on an arbiter of its own, and joining the cluster.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{Actor, Arbiter, Context, Handler, Message, ResponseFuture, Supervisor};
use actix_web::dev::ServerHandle;

use mlmf_actors::auth::ClusterKey;

use crate::config::NodeConfig;
use crate::plan::DeviceKind;

use super::coordinator::Coordinator;
use super::health::HeartbeatSender;
use super::loader;
use super::state::Node;
use super::wire::{ClusterView, Join, LoadShard, NodeInfo, ShardLoaded};

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Bad configuration (key file, device).
    #[error("{0}")]
    Config(String),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// The cluster refused or could not be reached.
    #[error("cannot join {addr}: {message}")]
    Join {
        /// The member dialled.
        addr: String,
        /// Why.
        message: String,
    },
}

/// Owns this node's shard lifecycle: loads run here, one arbiter away from HTTP.
pub struct NodeActor {
    node: Node,
}

impl Actor for NodeActor {
    type Context = Context<Self>;
}

/// Restarted by its `Supervisor` if it stops; the shards it loaded live in the node's registry.
impl actix::Supervised for NodeActor {}

/// Load a shard replica here.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<ShardLoaded, String>")]
pub struct LoadShardMsg(pub LoadShard);

impl Handler<LoadShardMsg> for NodeActor {
    type Result = ResponseFuture<Result<ShardLoaded, String>>;

    fn handle(&mut self, msg: LoadShardMsg, _: &mut Context<Self>) -> Self::Result {
        let node = self.node.clone();
        Box::pin(async move { loader::load_shard(&node, msg.0).await })
    }
}

/// Drops every shard of `model` held here (their threads stop once idle).
pub fn unload_local(node: &Node, model: &str, shard: Option<usize>) {
    let gone = node.shards.remove_where(|k| k.0 == model && shard.is_none_or(|s| s == k.1));
    if !gone.is_empty() {
        tracing::info!(%model, shards = gone.len(), "unloaded");
    }
    node.release_checkpoints();
}

fn info(node: &Node) -> NodeInfo {
    let memory_bytes = node.cfg.memory_mib.map(|m| m << 20).unwrap_or_else(|| {
        let mut sys = sysinfo::System::new();
        sys.refresh_memory();
        sys.available_memory()
    });
    let device = match node.cfg.device.as_deref() {
        Some("wgpu") | Some("cuda") => DeviceKind::Gpu,
        _ => DeviceKind::Cpu,
    };
    NodeInfo { id: node.id.clone(), addr: node.addr.clone(), memory_bytes, device, compute: 1.0 }
}

/// Asks the member at `addr` (which forwards to nothing: it must be the coordinator or
/// know it) to admit this node; adopts the view it answers with.
pub async fn join(node: &Node, addr: &str) -> Result<ClusterView, NodeError> {
    let fail = |message: String| NodeError::Join { addr: addr.to_string(), message };
    let view = node
        .ask(addr, &Join { node: info(node) }, Duration::from_secs(10))
        .await
        .map_err(|e| fail(e.to_string()))?
        .map_err(|e| fail(e.message))?;
    node.set_view(view.clone());
    node.joined.store(true, std::sync::atomic::Ordering::Release);
    Ok(view)
}

/// Leaves the cluster gracefully: routes stop using this node, its replicas are loaded
/// elsewhere, requests in flight finish, then the coordinator forgets it. Returns when it
/// is safe to exit (or after `timeout`).
pub async fn leave(node: &Node, timeout: Duration) -> Result<(), NodeError> {
    let view = node.view();
    let fail = |message: String| NodeError::Join { addr: view.coordinator.clone(), message };
    let Some(coordinator) = view.addr_of(&view.coordinator).map(str::to_string) else { return Ok(()) };
    if node.is_coordinator() {
        return Ok(());
    }
    let start = Instant::now();
    node.leaving.store(true, std::sync::atomic::Ordering::Release);
    let leave = |done| super::wire::Leave { node: node.id.clone(), done };
    node.ask(&coordinator, &leave(false), Duration::from_secs(10))
        .await
        .map_err(|e| fail(e.to_string()))?
        .map_err(|e| fail(e.message))?;
    // Hand-off: every ready model has its replication on other nodes again.
    while start.elapsed() < timeout {
        let models: Vec<super::wire::ModelStatus> =
            super::peer_handler::control(node, super::wire::names::LIST_MODELS, &())
                .await
                .map_err(|e| fail(e.message))?;
        let handed = models.iter().filter(|m| m.status == super::wire::ModelState::Ready).all(|m| {
            (0..m.plan.shards.len()).all(|s| {
                m.progress.iter().filter(|p| p.shard == s && p.done && p.node != node.id).count() >= m.replication
            })
        });
        if handed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Drain: requests already routed here finish.
    tokio::time::sleep(Duration::from_millis(200)).await;
    while node.in_flight.load(std::sync::atomic::Ordering::Relaxed) > 0 && start.elapsed() < timeout {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    node.ask(&coordinator, &leave(true), Duration::from_secs(10))
        .await
        .map_err(|e| fail(e.to_string()))?
        .map_err(|e| fail(e.message))?;
    Ok(())
}

/// A started node.
pub struct RunningNode {
    /// Its shared state.
    pub node: Node,
    /// Stops its HTTP server.
    pub server: ServerHandle,
}

/// Starts sending heartbeats to the coordinator (a member's job; also a coordinator's that
/// stepped down).
pub fn start_heartbeats(node: &Node) {
    let n = node.clone();
    Supervisor::start_in_arbiter(&Arbiter::new().handle(), move |_| HeartbeatSender::new(n.clone()));
}

/// Starts a node from `cfg` on the current actix system: binds, serves, and joins the
/// cluster at `cfg.join` (retrying with backoff for up to 30 s while it is unreachable) or
/// becomes its coordinator.
pub async fn start(cfg: NodeConfig) -> Result<RunningNode, NodeError> {
    let key = match &cfg.cluster_key_file {
        Some(f) => Some(ClusterKey::from_file(f).map_err(|e| NodeError::Config(e.to_string()))?),
        None => None,
    };
    start_with_key(cfg, key).await
}

/// As [`start`], with the cluster key given rather than read from `cfg.cluster_key_file`.
pub async fn start_with_key(cfg: NodeConfig, key: Option<ClusterKey>) -> Result<RunningNode, NodeError> {
    start_with(cfg, key, None).await
}

/// As [`start_with_key`], routing requests with a user's own strategy: an actor that
/// answers [`super::balancer::PickRoute`].
pub async fn start_with(
    cfg: NodeConfig,
    key: Option<ClusterKey>,
    balancer: Option<actix::Recipient<super::balancer::PickRoute>>,
) -> Result<RunningNode, NodeError> {
    cfg.validate().map_err(|e| NodeError::Config(e.to_string()))?;
    let device = match &cfg.device {
        Some(d) => crate::model::device_by_name(d).map_err(NodeError::Config)?,
        None => crate::model::default_device(),
    };
    let listener =
        TcpListener::bind(&cfg.listen).map_err(|source| NodeError::Bind { addr: cfg.listen.clone(), source })?;
    let bound = listener.local_addr().map_err(|source| NodeError::Bind { addr: cfg.listen.clone(), source })?;
    let tls = match &cfg.tls {
        Some(files) => Some(files.load().map_err(|e| NodeError::Config(e.to_string()))?),
        None => None,
    };
    let node = Node::new(cfg.clone(), bound.to_string(), key, device, tls.as_ref().map(|t| Arc::clone(&t.client)));
    if let Some(b) = balancer {
        let _ = node.custom_balancer.set(b);
    }
    let n = node.clone();
    let _ = node.node_actor.set(Supervisor::start_in_arbiter(&Arbiter::new().handle(), move |_| NodeActor { node: n }));
    if cfg.join.is_none() {
        let (n, me) = (node.clone(), info(&node));
        let coordinator = Coordinator::start_in_arbiter(&Arbiter::new().handle(), move |_| Coordinator::new(n, me));
        *node.coordinator.write().unwrap_or_else(|e| e.into_inner()) = Some(coordinator);
        node.joined.store(true, std::sync::atomic::Ordering::Release);
    }
    let server = crate::api::serve(node.clone(), listener, tls.map(|t| t.server))
        .map_err(|source| NodeError::Bind { addr: cfg.listen.clone(), source })?;
    let handle = server.handle();
    actix_web::rt::spawn(server);
    tracing::info!(node = %node.id, addr = %node.addr, coordinator = node.is_coordinator(), "node started");
    if let Some(seed) = &cfg.join {
        let start = Instant::now();
        let mut delay = Duration::from_millis(100);
        loop {
            match join(&node, seed).await {
                Ok(view) => {
                    tracing::info!(coordinator = %view.coordinator, members = view.nodes.len(), "joined");
                    break;
                }
                Err(NodeError::Join { message, .. })
                    if message.contains("refused the cluster key") || message.contains("already used") =>
                {
                    handle.stop(false).await;
                    return Err(NodeError::Join { addr: seed.clone(), message });
                }
                Err(e) if start.elapsed() > Duration::from_secs(30) => {
                    handle.stop(false).await;
                    return Err(e);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "join failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
            }
        }
        start_heartbeats(&node);
    }
    Ok(RunningNode { node, server: handle })
}
