//! Booting a node: the HTTP API and the peer endpoint on one port, the node's actors each on
//! an arbiter of its own (node actor, failover, its member of the control plane's Raft group,
//! heartbeats, the coordinator while it leads), and joining the cluster: the first node
//! founds the Raft group, the others join through any member and are added to it.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{Arbiter, Supervisor};
use actix_web::dev::ServerHandle;

use mlmf_actors::auth::ClusterKey;

use crate::cluster::balancer::PickRoute;
use crate::cluster::coordinator::Failover;
use crate::cluster::health::HeartbeatSender;
use crate::cluster::joining::{JoinError, join};
use crate::cluster::node::Node;
use crate::cluster::node_actor::NodeActor;
use crate::cluster::raft::{RaftHost, RaftHostError};
use crate::config::NodeConfig;

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
    /// The control plane's Raft member could not start (its store, typically).
    #[error("the control plane: {0}")]
    Consensus(#[from] RaftHostError),
}

impl From<JoinError> for NodeError {
    fn from(e: JoinError) -> Self {
        NodeError::Join { addr: e.addr, message: e.message }
    }
}

/// A started node.
pub struct RunningNode {
    /// Its shared state.
    pub node: Node,
    /// Stops its HTTP server.
    pub server: ServerHandle,
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
/// answers [`PickRoute`].
pub async fn start_with(
    cfg: NodeConfig,
    key: Option<ClusterKey>,
    balancer: Option<actix::Recipient<PickRoute>>,
) -> Result<RunningNode, NodeError> {
    cfg.validate().map_err(|e| NodeError::Config(e.to_string()))?;
    if !cfg.insecure && !cfg.listens_on_loopback() && (key.is_none() || cfg.tls.is_none()) {
        return Err(NodeError::Config(format!(
            "refusing to listen on {} without {}: anyone who reaches it could use the cluster (give a cluster key and TLS, or --insecure)",
            cfg.listen,
            match (key.is_none(), cfg.tls.is_none()) {
                (true, true) => "a cluster key or TLS",
                (true, false) => "a cluster key",
                _ => "TLS",
            }
        )));
    }
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
    let addr = cfg.advertise.clone().unwrap_or_else(|| bound.to_string());
    let tenants = crate::api::tenants::Tenants::new(cfg.tenants.clone(), cfg.tenants_file.clone())
        .map_err(|e| NodeError::Config(e.to_string()))?;
    let access = crate::api::access::Access::new(
        key.clone(),
        cfg.admin_key_file.as_deref(),
        cfg.inference_key_file.as_deref(),
        tenants,
    )
    .map_err(|e| NodeError::Config(format!("admin or inference key: {e}")))?;
    let node = Node::new(cfg.clone(), addr, key, device, tls.as_ref().map(|t| Arc::clone(&t.client)));
    if let Some(b) = balancer {
        let _ = node.balancers.custom.set(b);
    }
    let n = node.clone();
    let actor = Supervisor::start_in_arbiter(&Arbiter::new().handle(), move |_| NodeActor::new(n.clone()));
    let _ = node.loader.set(actor.recipient());
    // Whichever node leads the Raft group coordinates; every node can come to lead or stop.
    Failover::start_for(&node);
    let server = crate::api::serve(node.clone(), listener, tls.map(|t| t.server), Arc::new(access))
        .map_err(|source| NodeError::Bind { addr: cfg.listen.clone(), source })?;
    let handle = server.handle();
    actix_web::rt::spawn(server);
    // Peers' Raft messages arrive on the port just opened.
    if let Err(e) = RaftHost::start_for(&node, cfg.join.is_none()).await {
        handle.stop(false).await;
        return Err(e.into());
    }
    if cfg.join.is_none() {
        // The first node founds the group (or, restarted with its data directory, rejoins
        // the one it was in): ready once some node leads.
        let start = Instant::now();
        while !node.is_coordinator()
            && node.consensus.status().leader.is_none()
            && start.elapsed() < Duration::from_secs(10)
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        node.joined.store(true, std::sync::atomic::Ordering::Release);
    }
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
                Err(JoinError { message, .. })
                    if message.contains("refused the cluster key") || message.contains("already used") =>
                {
                    handle.stop(false).await;
                    return Err(NodeError::Join { addr: seed.clone(), message });
                }
                Err(e) if start.elapsed() > Duration::from_secs(30) => {
                    handle.stop(false).await;
                    return Err(e.into());
                }
                Err(e) => {
                    tracing::debug!(error = %e, "join failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
            }
        }
    }
    HeartbeatSender::start_for(&node);
    Ok(RunningNode { node, server: handle })
}
