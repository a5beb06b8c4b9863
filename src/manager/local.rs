//! The deployment API of the seed, for an application that embeds mlmf:
//! [`SimpleDistributedManager`] starts nodes in this process (each on its own actix system
//! and thread, listening on loopback), loads a model onto them and serves
//! [`InferenceRequest`]s through the same HTTP API any client uses.
//!
//! ```no_run
//! use mlmf::manager::{InferenceRequest, SimpleDistributedManager};
//! use mlmf::plan::ShardingStrategy;
//! # async fn demo() -> Result<(), mlmf::manager::DeployError> {
//! let addrs = ["127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"];
//! let m = SimpleDistributedManager::create_cluster_deployment(
//!     "tests/fixtures/gpt2_tiny", "gpt2", &addrs, ShardingStrategy::LayerSharding { layers_per_shard: 2 },
//! ).await?;
//! let r = m.inference(InferenceRequest::new("gpt2", vec![vec![464, 968, 758]])).await?;
//! println!("{:?} by {:?} in {} ms", r.outputs["logits"].shape, r.processed_by, r.processing_time_ms);
//! m.shutdown();
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use mlmf_actors::auth::ClusterKey;

use crate::api::types::{InferRequest, LoadRequest};
pub use crate::api::types::{Priority, TensorJson};
use crate::client::{ClientError, ClusterClient};
use crate::cluster::wire::ModelStatus;
use crate::config::NodeConfig;

use super::deployment::{DistributedConfig, DistributedConfigBuilder};
pub use super::error::DeployError;
use crate::generate::{GeneratedPiece, GenerationRequest};
use crate::plan::ShardingStrategy;

/// One inference request (the seed's shape).
#[derive(Debug, Clone, PartialEq)]
pub struct InferenceRequest {
    /// Model id.
    pub model_id: String,
    /// `[batch][seq]` token ids.
    pub input_data: Vec<Vec<i64>>,
    /// Session id.
    pub session_id: Option<String>,
    /// Priority.
    pub priority: Priority,
}

impl InferenceRequest {
    /// A normal-priority request without a session.
    pub fn new(model_id: &str, input_data: Vec<Vec<i64>>) -> Self {
        InferenceRequest { model_id: model_id.into(), input_data, session_id: None, priority: Priority::Normal }
    }
}

/// The answer.
#[derive(Debug, Clone, PartialEq)]
pub struct InferenceResponse {
    /// Outputs by name.
    pub outputs: BTreeMap<String, TensorJson>,
    /// Nodes that ran a stage.
    pub processed_by: Vec<String>,
    /// Time the cluster took.
    pub processing_time_ms: f64,
}

struct LocalNode {
    addr: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LocalNode {
    fn start(
        cfg: NodeConfig,
        key: Option<ClusterKey>,
        balancer: Option<actix::Recipient<crate::cluster::balancer::PickRoute>>,
    ) -> Result<LocalNode, DeployError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let listen = cfg.listen.clone();
        let thread = std::thread::Builder::new()
            .name(format!("mlmf-node-{listen}"))
            .spawn(move || {
                let sys = actix::System::new();
                sys.block_on(async move {
                    match crate::server::start_with(cfg, key, balancer).await {
                        Ok(r) => {
                            let _ = tx.send(Ok(r.node.addr.clone()));
                            // Serve until the manager drops us.
                            let _ = stop_rx.await;
                            r.server.stop(false).await;
                            actix::System::current().stop();
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e.to_string()));
                            actix::System::current().stop();
                        }
                    }
                });
                // Lets the system process the stop, which stops the node's arbiters.
                let _ = sys.run();
            })
            .map_err(|e| DeployError::Node { addr: listen.clone(), message: e.to_string() })?;
        match rx.recv() {
            Ok(Ok(addr)) => Ok(LocalNode { addr, stop: Some(stop_tx), thread: Some(thread) }),
            Ok(Err(message)) => Err(DeployError::Node { addr: listen, message }),
            Err(_) => Err(DeployError::Node { addr: listen, message: "node thread exited".into() }),
        }
    }
}

impl Drop for LocalNode {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A model deployed on nodes running in this process.
pub struct SimpleDistributedManager {
    nodes: Vec<LocalNode>,
    client: ClusterClient,
    model_id: String,
}

fn loopback(addr: &str) -> Result<String, DeployError> {
    let sa: SocketAddr = addr.parse().map_err(|_| DeployError::NotLoopback(addr.to_string()))?;
    if !sa.ip().is_loopback() {
        return Err(DeployError::NotLoopback(addr.to_string()));
    }
    Ok(sa.to_string())
}

impl SimpleDistributedManager {
    /// One node on a free loopback port serving the whole model.
    pub async fn create_single_node_deployment(
        model_path: impl AsRef<Path>,
        model_id: &str,
    ) -> Result<SimpleDistributedManager, DeployError> {
        Self::deploy(model_path.as_ref(), model_id, &["127.0.0.1:0"], DistributedConfig::default()).await
    }

    /// Nodes on `addresses` (loopback; port 0 picks a free one), the model cut by `strategy`.
    pub async fn create_cluster_deployment(
        model_path: impl AsRef<Path>,
        model_id: &str,
        addresses: &[&str],
        strategy: ShardingStrategy,
    ) -> Result<SimpleDistributedManager, DeployError> {
        let cfg = DistributedConfigBuilder::new().sharding(strategy).build()?;
        Self::deploy(model_path.as_ref(), model_id, addresses, cfg).await
    }

    /// Nodes on `addresses`, configured by `config` (sharding, placement, fault tolerance, key).
    pub async fn deploy(
        model_path: &Path,
        model_id: &str,
        addresses: &[&str],
        config: DistributedConfig,
    ) -> Result<SimpleDistributedManager, DeployError> {
        let path = std::path::absolute(model_path)
            .map_err(|e| DeployError::Path { path: model_path.display().to_string(), message: e.to_string() })?;
        if addresses.is_empty() {
            return Err(DeployError::NotLoopback(String::new()));
        }
        let addrs: Vec<String> = addresses.iter().map(|a| loopback(a)).collect::<Result<_, _>>()?;
        let ft = &config.fault_tolerance;
        let mut nodes: Vec<LocalNode> = Vec::new();
        for (i, listen) in addrs.iter().enumerate() {
            // The builder's node config for every node, each with its own address and id.
            let node_id =
                config.node.node_id.as_ref().map(|id| if addrs.len() > 1 { format!("{id}-{i}") } else { id.clone() });
            let mut cfg = NodeConfig {
                listen: listen.clone(),
                join: nodes.first().map(|n| n.addr.clone()),
                advertise: None,
                node_id,
                ..config.node.clone()
            };
            cfg.health = ft.health.clone();
            cfg.balancing.strategy = config.balancing.strategy;
            cfg.requests.max_attempts = ft.max_attempts;
            cfg.requests.attempt_timeout_ms = ft.attempt_timeout.as_millis() as u64;
            nodes.push(LocalNode::start(cfg, config.cluster_key.clone(), config.balancing.custom.clone())?);
        }
        let mut client = ClusterClient::new(&nodes[0].addr, config.cluster_key.clone());
        if let Some(files) = &config.node.tls {
            let tls =
                files.load().map_err(|e| DeployError::Node { addr: nodes[0].addr.clone(), message: e.to_string() })?;
            client = client.with_tls(tls.client);
        }
        // Until every node is a member; a refusal (a 4xx: a key the nodes do not take) ends
        // the wait at once, and a timeout says what the last attempt met.
        let start = std::time::Instant::now();
        loop {
            let last = match client.cluster().await {
                Ok(c) if c["nodes"].as_array().map(Vec::len) == Some(nodes.len()) => break,
                Ok(c) => format!("{} of {} nodes joined", c["nodes"].as_array().map_or(0, Vec::len), nodes.len()),
                Err(e @ ClientError::Api { status: 400..500, .. }) => return Err(e.into()),
                Err(e) => e.to_string(),
            };
            if start.elapsed() > Duration::from_secs(30) {
                return Err(DeployError::Node {
                    addr: nodes[0].addr.clone(),
                    message: format!("the nodes did not form a cluster within 30 s; last: {last}"),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let req = LoadRequest {
            id: model_id.to_string(),
            path: path.display().to_string(),
            strategy: config.sharding.to_string(),
            replication: ft.replication,
            placement: Some(config.placement.request(ft.replication)),
            replication_mode: ft.replication_mode,
            autoscaling: None,
        };
        client.load(&req).await?;
        client.wait_ready(model_id, Duration::from_secs(3600), |_, _| {}).await?;
        Ok(SimpleDistributedManager { nodes, client, model_id: model_id.to_string() })
    }

    /// Runs one request on the cluster.
    pub async fn inference(&self, req: InferenceRequest) -> Result<InferenceResponse, DeployError> {
        let body = InferRequest {
            text: None,
            input_ids: req.input_data,
            attention_mask: None,
            token_type_ids: None,
            outputs: None,
            session_id: req.session_id,
            priority: Some(req.priority),
            timeout_ms: None,
        };
        let r = self.client.infer(&req.model_id, &body).await?;
        Ok(InferenceResponse {
            outputs: r.outputs,
            processed_by: r.processed_by,
            processing_time_ms: r.processing_time_ms,
        })
    }

    /// The deployed model's status (plan, placement, progress).
    pub async fn status(&self) -> Result<ModelStatus, DeployError> {
        Ok(self.client.model(&self.model_id).await?)
    }

    /// Moves the replica of `shard` on node `from` to node `to` (load, switch, drain,
    /// unload) and waits until it has moved.
    pub async fn migrate(&self, shard: usize, from: &str, to: &str) -> Result<ModelStatus, DeployError> {
        let req = crate::api::types::MigrateRequest { shard, from: from.into(), to: to.into() };
        Ok(self.client.migrate_and_wait(&self.model_id, &req, Duration::from_secs(600)).await?)
    }

    /// Generates a completion, streamed piece by piece as the cluster produces it.
    ///
    /// ```no_run
    /// use futures_util::StreamExt;
    /// use mlmf::manager::{GenerationRequest, SimpleDistributedManager};
    /// # async fn demo(m: SimpleDistributedManager) -> Result<(), mlmf::manager::DeployError> {
    /// let mut pieces = std::pin::pin!(m.generate(GenerationRequest::new("gpt2", "The cluster")));
    /// while let Some(piece) = pieces.next().await {
    ///     print!("{}", piece?.text);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn generate(
        &self,
        req: GenerationRequest,
    ) -> impl futures_util::Stream<Item = Result<GeneratedPiece, DeployError>> + use<> {
        super::generation::stream(&self.client, &req)
    }

    /// The embeddings of `texts` (the model's pooling, normalisation and truncation), one
    /// vector per text, computed by the cluster.
    pub async fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, DeployError> {
        Ok(self.client.embeddings(&self.model_id, texts).await?)
    }

    /// A client of the first node's HTTP API.
    pub fn client(&self) -> &ClusterClient {
        &self.client
    }

    /// The nodes' addresses.
    pub fn addresses(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.addr.clone()).collect()
    }

    /// Stops every node.
    pub fn shutdown(self) {
        drop(self);
    }
}
