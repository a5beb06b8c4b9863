//! [`NodeConfig`]: how one `mlmf node` runs, from flags and an optional TOML file.
//!
//! A TOML error names the file, the line and the key (unknown keys are errors, so a typo
//! is never silently ignored).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::alerts::AlertConfig;
use super::balancing::BalancingConfig;
use super::batching::BatchingConfig;
use super::cache::CacheConfig;
use super::consensus::ConsensusConfig;
use super::error::ConfigError;
use super::generation::GenerationConfig;
use super::health::HealthConfig;
use super::telemetry::TelemetryConfig;

/// Request handling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RequestConfig {
    /// Overall deadline of one inference request.
    pub timeout_ms: u64,
    /// Deadline of one attempt (one route); a late attempt is retried on another route.
    pub attempt_timeout_ms: u64,
    /// Routes tried per request.
    pub max_attempts: usize,
    /// Largest HTTP body accepted.
    pub max_body_bytes: usize,
    /// Messages waiting per shard replica (in its priority queue) before it answers "overloaded".
    pub shard_queue: usize,
    /// Inference requests served at once over HTTP; more get 429 with `Retry-After`.
    pub max_in_flight: usize,
}

impl Default for RequestConfig {
    fn default() -> Self {
        RequestConfig {
            timeout_ms: 30_000,
            attempt_timeout_ms: 10_000,
            max_attempts: 3,
            max_body_bytes: 8 << 20,
            shard_queue: 256,
            max_in_flight: 1024,
        }
    }
}

/// One node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// `host:port` for the HTTP API and the peer endpoint.
    pub listen: String,
    /// The `host:port` peers and clients reach this node at, when it differs from `listen`
    /// (a node listening on `0.0.0.0:7070` behind a DNS name); `listen` (as bound) when absent.
    pub advertise: Option<String>,
    /// A member to join; none makes this node the coordinator.
    pub join: Option<String>,
    /// Listen on a non-loopback address without a cluster key or without TLS (refused
    /// otherwise: anyone who reaches the port could drive the cluster, or read its traffic).
    pub insecure: bool,
    /// Node id; the listen address when absent.
    pub node_id: Option<String>,
    /// File holding the cluster key (required of peers and HTTP clients when set).
    pub cluster_key_file: Option<PathBuf>,
    /// File holding the admin key: it may load, unload and migrate models and read every
    /// status route, but not run inference. Read again on SIGHUP and every second.
    pub admin_key_file: Option<PathBuf>,
    /// File holding the inference key: it may run inference (`/infer`, completions, chat,
    /// embeddings, KServe) and read `/metrics` and the models' status, nothing else. Read
    /// again on SIGHUP and every second.
    pub inference_key_file: Option<PathBuf>,
    /// Tenants: inference keys with their own models and limits (`[[tenants]]`).
    pub tenants: Vec<super::tenants::TenantConfig>,
    /// A file of more `[[tenants]]`, read again every second and on SIGHUP.
    pub tenants_file: Option<PathBuf>,
    /// Models the coordinator loads when its registry lacks them (`[[models]]`).
    pub models: Vec<super::models::DeclaredModel>,
    /// Directories this node reads models from; empty means any. A model elsewhere is
    /// pulled from a peer that can read it.
    pub model_roots: Vec<PathBuf>,
    /// Where pulled weights and the control plane's Raft log and snapshots are kept. When
    /// absent, pulled weights go to a temporary directory and the Raft log is kept in
    /// memory: a node restarted without it comes back as a new member.
    pub data_dir: Option<PathBuf>,
    /// Memory offered to shards, MiB; the machine's available memory when absent.
    pub memory_mib: Option<u64>,
    /// Compute device: cpu, flex, wgpu, cuda; the best built-in one when absent.
    pub device: Option<String>,
    /// Threads per shard replica.
    pub shard_threads: usize,
    /// HTTP worker threads.
    pub http_workers: usize,
    /// Compressions offered to peers, in order of preference.
    pub compression: Vec<String>,
    /// TLS on the node's port (peers and HTTP API): `cert`, `key`, `ca`, `mutual`.
    pub tls: Option<mlmf_actors::tls::TlsFiles>,
    /// Failure detection.
    pub health: HealthConfig,
    /// The Raft control plane.
    pub consensus: ConsensusConfig,
    /// Alert rules and channels (coordinator only).
    pub alerts: AlertConfig,
    /// Replica moves per rebalancing round after a node joins (0 turns rebalancing off).
    pub rebalance_moves: usize,
    /// Time between rebalancing rounds, milliseconds.
    pub rebalance_interval_ms: u64,
    /// JSON-lines audit log of distributed operations (coordinator only).
    pub audit_log: Option<PathBuf>,
    /// Balancing.
    pub balancing: BalancingConfig,
    /// Request handling.
    pub requests: RequestConfig,
    /// KV caches of generations.
    pub generation: GenerationConfig,
    /// Export of tracing spans (OTLP).
    pub telemetry: TelemetryConfig,
    /// Dynamic batching of forward requests.
    pub batching: BatchingConfig,
    /// What is kept of unloaded shard replicas.
    pub cache: CacheConfig,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            listen: "127.0.0.1:7070".into(),
            advertise: None,
            join: None,
            insecure: false,
            node_id: None,
            cluster_key_file: None,
            admin_key_file: None,
            inference_key_file: None,
            tenants: Vec::new(),
            tenants_file: None,
            models: Vec::new(),
            model_roots: Vec::new(),
            data_dir: None,
            memory_mib: None,
            device: None,
            shard_threads: 1,
            http_workers: 2,
            compression: vec!["lz4".into(), "zstd".into(), "gzip".into(), "none".into()],
            tls: None,
            health: HealthConfig::default(),
            consensus: ConsensusConfig::default(),
            audit_log: None,
            rebalance_moves: 2,
            rebalance_interval_ms: 2000,
            alerts: Default::default(),
            balancing: Default::default(),
            requests: RequestConfig::default(),
            generation: GenerationConfig::default(),
            telemetry: TelemetryConfig::default(),
            batching: BatchingConfig::default(),
            cache: CacheConfig::default(),
        }
    }
}

impl NodeConfig {
    /// Reads a TOML file.
    ///
    /// ```
    /// let dir = std::env::temp_dir().join(format!("mlmf-doc-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir).unwrap();
    /// let f = dir.join("node.toml");
    /// std::fs::write(&f, "http_workers = 4\n[health]\nphi_threshold = 10.0\n").unwrap();
    /// let cfg = mlmf::config::NodeConfig::from_file(&f).unwrap();
    /// assert_eq!(cfg.health.phi_threshold, 10.0);
    /// std::fs::write(&f, "[health]\nphi_treshold = 1\n").unwrap();
    /// let e = mlmf::config::NodeConfig::from_file(&f).unwrap_err().to_string();
    /// assert!(e.contains("node.toml") && e.contains("phi_treshold"), "{e}");
    /// ```
    pub fn from_file(path: &Path) -> Result<NodeConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io { path: path.into(), source })?;
        let cfg: NodeConfig = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.into(),
            message: e.to_string().trim_end().replace('\n', " "),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks ranges.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key, message: &str| Err(ConfigError::Invalid { key, message: message.into() });
        if self.shard_threads == 0 || self.shard_threads > 256 {
            return bad("shard_threads", "must be 1..=256");
        }
        if self.http_workers == 0 || self.http_workers > 256 {
            return bad("http_workers", "must be 1..=256");
        }
        if self.requests.max_attempts == 0 || self.requests.max_attempts > 16 {
            return bad("requests.max_attempts", "must be 1..=16");
        }
        if self.requests.max_in_flight == 0 || self.requests.shard_queue == 0 {
            return bad("requests.max_in_flight", "limits must be positive");
        }
        if self.requests.max_body_bytes < 1024 {
            return bad("requests.max_body_bytes", "must be at least 1024");
        }
        if self.requests.attempt_timeout_ms == 0 || self.requests.timeout_ms == 0 {
            return bad("requests.timeout_ms", "timeouts must be positive");
        }
        if self.health.heartbeat_interval_ms < 10 {
            return bad("health.heartbeat_interval_ms", "must be at least 10");
        }
        if !(self.health.phi_suspect > 0.0 && self.health.phi_threshold >= self.health.phi_suspect) {
            return bad("health.phi_threshold", "must be at least health.phi_suspect, which must be positive");
        }
        for c in &self.compression {
            if mlmf_actors::compression::Compression::from_name(c).is_none() {
                return bad("compression", "each entry must be one of none, lz4, zstd, gzip");
            }
        }
        if self.generation.idle_timeout_ms == 0 {
            return bad("generation.idle_timeout_ms", "must be positive");
        }
        let smtp = || self.alerts.smtp.as_ref().and_then(|s| s.problem());
        let problem =
            self.telemetry.problem().or_else(|| self.batching.problem()).or_else(|| self.cache.problem()).or_else(smtp);
        if let Some((key, message)) = problem.or_else(|| self.consensus.problem()) {
            return Err(ConfigError::Invalid { key, message });
        }
        if let Some(d) = &self.device {
            super::device::Backend::parse(d).map_err(|m| ConfigError::Invalid { key: "device", message: m })?;
        }
        Ok(())
    }

    /// Whether `listen` names a loopback address (`127.0.0.0/8`, `::1`, `localhost`).
    pub fn listens_on_loopback(&self) -> bool {
        let host = match self.listen.rsplit_once(':') {
            Some((h, _)) => h.trim_start_matches('[').trim_end_matches(']'),
            None => self.listen.as_str(),
        };
        host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }

    /// The node id.
    pub fn id(&self) -> String {
        self.node_id.clone().unwrap_or_else(|| self.listen.clone())
    }

    /// One attempt's deadline.
    pub fn attempt_timeout(&self) -> Duration {
        Duration::from_millis(self.requests.attempt_timeout_ms)
    }

    /// A request's deadline.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.requests.timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_listen_addresses_are_told_apart() {
        let on = |listen: &str| NodeConfig { listen: listen.into(), ..NodeConfig::default() }.listens_on_loopback();
        assert!(on("127.0.0.1:7070") && on("127.0.0.9:1") && on("[::1]:7070") && on("localhost:7070"));
        assert!(!on("0.0.0.0:7070") && !on("[::]:7070") && !on("10.0.0.5:7070") && !on("node-a.example:7070"));
    }
}
