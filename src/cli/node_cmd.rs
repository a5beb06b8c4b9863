//! `mlmf node`: one cluster node (HTTP API and peer endpoint on one port).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::config::NodeConfig;

/// Arguments of `mlmf node`.
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// `host:port` for the HTTP API and the peer endpoint.
    #[arg(long)]
    pub listen: Option<String>,
    /// A member of the cluster to join; without it this node is the coordinator.
    #[arg(long)]
    pub join: Option<String>,
    /// The `host:port` others reach this node at (when it listens on 0.0.0.0, say).
    #[arg(long)]
    pub advertise: Option<String>,
    /// Allow a non-loopback --listen without a cluster key or without TLS.
    #[arg(long)]
    pub insecure: bool,
    /// File holding the cluster key (at least 16 bytes).
    #[arg(long)]
    pub cluster_key_file: Option<PathBuf>,
    /// File holding the admin key (load, unload, migrate, status; no inference); rotate it
    /// by rewriting the file (read again every second, and on SIGHUP).
    #[arg(long)]
    pub admin_key_file: Option<PathBuf>,
    /// File holding the inference key (inference routes, `/metrics`, models' status); rotate
    /// it by rewriting the file.
    #[arg(long)]
    pub inference_key_file: Option<PathBuf>,
    /// File of tenants (`[[tenants]]`: name, key file, models and limits); read again every
    /// second and on SIGHUP.
    #[arg(long)]
    pub tenants_file: Option<PathBuf>,
    /// TOML config (flags override it).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Node id (default: the listen address).
    #[arg(long)]
    pub node_id: Option<String>,
    /// Directory this node may read models from (repeatable; default: any).
    #[arg(long = "model-root")]
    pub model_roots: Vec<PathBuf>,
    /// Memory offered to shards, MiB (default: the machine's available memory).
    #[arg(long)]
    pub memory_mib: Option<u64>,
    /// Compute device: cpu, flex, wgpu, cuda.
    #[arg(long)]
    pub device: Option<String>,
    /// TLS certificate chain (PEM) for the node's port; needs --tls-key and --tls-ca.
    #[arg(long, requires_all = ["tls_key", "tls_ca"])]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// CA (PEM) that signs every node's certificate; peers are verified against it.
    #[arg(long, requires = "tls_cert")]
    pub tls_ca: Option<PathBuf>,
    /// Mutual TLS: peers and HTTP clients must present a certificate signed by the CA.
    #[arg(long, requires = "tls_cert")]
    pub mtls: bool,
    /// Exit when the parent process exits (used by `mlmf serve`).
    #[arg(long, hide = true)]
    pub exit_with_parent: bool,
}

impl NodeArgs {
    /// The config these flags describe.
    pub fn config(&self) -> Result<NodeConfig, String> {
        let mut cfg = match &self.config {
            Some(f) => NodeConfig::from_file(f).map_err(|e| e.to_string())?,
            None => NodeConfig::default(),
        };
        if let Some(l) = &self.listen {
            cfg.listen = l.clone();
        } else if self.config.is_none() {
            return Err("--listen is required (or give it in --config)".into());
        }
        if self.join.is_some() {
            cfg.join = self.join.clone();
        }
        if self.advertise.is_some() {
            cfg.advertise = self.advertise.clone();
        }
        cfg.insecure |= self.insecure;
        if self.cluster_key_file.is_some() {
            cfg.cluster_key_file = self.cluster_key_file.clone();
        }
        if self.admin_key_file.is_some() {
            cfg.admin_key_file = self.admin_key_file.clone();
        }
        if self.inference_key_file.is_some() {
            cfg.inference_key_file = self.inference_key_file.clone();
        }
        if self.tenants_file.is_some() {
            cfg.tenants_file = self.tenants_file.clone();
        }
        if self.node_id.is_some() {
            cfg.node_id = self.node_id.clone();
        }
        if !self.model_roots.is_empty() {
            cfg.model_roots = self.model_roots.clone();
        }
        if self.memory_mib.is_some() {
            cfg.memory_mib = self.memory_mib;
        }
        if self.device.is_some() {
            cfg.device = self.device.clone();
        }
        if let (Some(cert), Some(key), Some(ca)) = (&self.tls_cert, &self.tls_key, &self.tls_ca) {
            cfg.tls = Some(mlmf_actors::tls::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                ca: ca.clone(),
                mutual: self.mtls,
            });
        }
        cfg.validate().map_err(|e| e.to_string())?;
        Ok(cfg)
    }
}

/// Runs the node until it is killed (or its parent exits, with `--exit-with-parent`).
pub fn node(args: NodeArgs) -> Result<(), String> {
    let cfg = args.config()?;
    let parent = std::os::unix::process::parent_id();
    actix_web::rt::System::new().block_on(async move {
        let running = crate::server::start(cfg).await.map_err(|e| e.to_string())?;
        println!("mlmf node {} listening on {}", running.node.id, running.node.addr);
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| format!("cannot watch SIGTERM: {e}"))?;
        loop {
            tokio::select! {
                _ = term.recv() => {
                    tracing::info!("SIGTERM: leaving the cluster");
                    let left = crate::cluster::joining::leave(&running.node, Duration::from_secs(60)).await;
                    // Requests have drained; peer connections would hold a graceful stop open.
                    running.server.stop(false).await;
                    return left.map_err(|e| e.to_string());
                }
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
            if args.exit_with_parent && std::os::unix::process::parent_id() != parent {
                tracing::info!("parent exited; stopping");
                running.server.stop(false).await;
                return Ok(());
            }
        }
    })
}
