//! `mlmf load`, `mlmf infer`, `mlmf status`: the HTTP API of a running cluster.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use mlmf_actors::auth::ClusterKey;

use crate::api::types::{InferRequest, LoadRequest};
use crate::client::ClusterClient;

/// Where the cluster is.
#[derive(Debug, Args)]
pub struct Target {
    /// Any node's `host:port`.
    #[arg(long, default_value = "127.0.0.1:7070")]
    pub addr: String,
    /// File holding the cluster key.
    #[arg(long)]
    pub cluster_key_file: Option<PathBuf>,
    /// Speak HTTPS, trusting this CA (PEM).
    #[arg(long)]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for a cluster with mutual TLS; needs --tls-key and --tls-ca.
    #[arg(long, requires_all = ["tls_key", "tls_ca"])]
    pub tls_cert: Option<PathBuf>,
    /// Client key (PEM).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

impl Target {
    /// A client of the node at `addr`, with the key and TLS given.
    pub fn client(&self) -> Result<ClusterClient, String> {
        let key = match &self.cluster_key_file {
            Some(f) => Some(ClusterKey::from_file(f).map_err(|e| e.to_string())?),
            None => None,
        };
        let client = ClusterClient::new(&self.addr, key);
        let tls = match (&self.tls_ca, &self.tls_cert, &self.tls_key) {
            (Some(ca), Some(cert), Some(key)) => {
                let files =
                    mlmf_actors::tls::TlsFiles { cert: cert.clone(), key: key.clone(), ca: ca.clone(), mutual: true };
                Some(files.load().map_err(|e| e.to_string())?.client)
            }
            (Some(ca), None, None) => Some(mlmf_actors::tls::client_trusting(ca).map_err(|e| e.to_string())?),
            _ => None,
        };
        Ok(match tls {
            Some(t) => client.with_tls(t),
            None => client,
        })
    }
}

/// Where a text command runs: on a model folder in this process (`--model`, cut by
/// `--strategy` on `--device`), or on a running cluster (`--id`, at `--addr`).
#[derive(Debug, Args)]
pub struct ModelSource {
    /// Model directory (config.json, *.safetensors, tokenizer.json): run in this process.
    #[arg(long, conflicts_with = "id")]
    pub model: Option<PathBuf>,
    /// Model id on a running cluster (see --addr): run there.
    #[arg(long, required_unless_present = "model")]
    pub id: Option<String>,
    /// The cluster (with --id).
    #[command(flatten)]
    pub target: Target,
    /// none | layer:K | pipeline:S | tensor:D (with --model).
    #[arg(long, default_value = "none")]
    pub strategy: String,
    /// Compute device (with --model): default, flex (cpu), ndarray, wgpu, cuda.
    #[arg(long, default_value = "default")]
    pub device: String,
}

impl ModelSource {
    /// The model in `dir` loaded in this process as `--strategy` and `--device` say.
    pub fn runner(&self, dir: &std::path::Path) -> Result<crate::exec::LocalRunner, String> {
        let device = crate::model::device_by_name(&self.device)?;
        let strategy = self.strategy.parse().map_err(|e| format!("{e}"))?;
        crate::exec::LocalRunner::load(dir, &strategy, &device).map_err(|e| e.to_string())
    }
}

/// Arguments of `mlmf load`.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// The cluster.
    #[command(flatten)]
    pub target: Target,
    /// Model id.
    #[arg(long)]
    pub id: String,
    /// Model directory (made absolute).
    #[arg(long)]
    pub model: PathBuf,
    /// none | layer:K | pipeline:S | tensor:D
    #[arg(long, default_value = "none")]
    pub strategy: String,
    /// Replicas per shard.
    #[arg(long, default_value_t = 1)]
    pub replication: usize,
    /// When the model counts as ready: sync (every replica), quorum, async (one per shard).
    #[arg(long, default_value = "sync", value_parser = ["sync", "quorum", "async"])]
    pub replication_mode: String,
    /// Return at once instead of showing progress until ready.
    #[arg(long)]
    pub no_wait: bool,
    /// Print the model's status as JSON (when it is ready, or at once with --no-wait).
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `mlmf infer`.
#[derive(Debug, Args)]
pub struct InferArgs {
    /// The cluster.
    #[command(flatten)]
    pub target: Target,
    /// Model id.
    #[arg(long)]
    pub id: String,
    /// Token ids, comma-separated (one sequence).
    #[arg(long, value_delimiter = ',', required = true)]
    pub input_ids: Vec<i64>,
    /// Attention mask, comma-separated 0/1.
    #[arg(long, value_delimiter = ',')]
    pub attention_mask: Option<Vec<i64>>,
    /// Token type ids, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub token_type_ids: Option<Vec<i64>>,
    /// Outputs to return, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub outputs: Option<Vec<String>>,
    /// Print the whole JSON answer instead of a summary.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `mlmf status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The cluster.
    #[command(flatten)]
    pub target: Target,
    /// Show one model instead of the cluster.
    #[arg(long)]
    pub id: Option<String>,
    /// Print JSON: `{"cluster", "models"}`, or the model's status.
    #[arg(long, conflicts_with = "watch")]
    pub json: bool,
    /// Redraw the table every `--interval-ms` until interrupted.
    #[arg(long)]
    pub watch: bool,
    /// Refresh interval of `--watch`.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(100..))]
    pub interval_ms: u64,
}

fn block_on<T>(f: impl std::future::Future<Output = Result<T, String>>) -> Result<T, String> {
    actix_web::rt::System::new().block_on(f)
}

/// Shows loading progress as a bar until the model is ready.
pub async fn wait_with_bar(client: &ClusterClient, id: &str) -> Result<crate::cluster::wire::ModelStatus, String> {
    let bar = indicatif::ProgressBar::new(1);
    bar.set_style(
        indicatif::ProgressStyle::with_template("loading {msg} [{bar:30}] {bytes}/{total_bytes}")
            .map_err(|e| e.to_string())?
            .progress_chars("=> "),
    );
    bar.set_message(id.to_string());
    let s = client
        .wait_ready(id, Duration::from_secs(3600), |loaded, total| {
            bar.set_length(total.max(1));
            bar.set_position(loaded);
        })
        .await
        .map_err(|e| e.to_string());
    bar.finish_and_clear();
    s
}

/// `mlmf load`.
pub fn load(a: LoadArgs) -> Result<(), String> {
    let client = a.target.client()?;
    let path = std::path::absolute(&a.model).map_err(|e| format!("{}: {e}", a.model.display()))?;
    let req = LoadRequest {
        id: a.id.clone(),
        path: path.display().to_string(),
        strategy: a.strategy,
        replication: a.replication,
        placement: None,
        replication_mode: match a.replication_mode.as_str() {
            "quorum" => crate::plan::ReplicationMode::Quorum,
            "async" => crate::plan::ReplicationMode::Async,
            _ => crate::plan::ReplicationMode::Sync,
        },
        autoscaling: None,
    };
    block_on(async move {
        let s = client.load(&req).await.map_err(|e| e.to_string())?;
        if !a.json {
            println!("{}: {} shards, {} replicas placed", s.id, s.plan.shards.len(), s.placement.assignments.len());
        }
        let s = if a.no_wait { s } else { wait_with_bar(&client, &a.id).await? };
        if a.json {
            println!("{}", serde_json::to_string(&s).map_err(|e| e.to_string())?);
        } else if !a.no_wait {
            let pulled = s.progress.iter().filter(|p| p.pulled).count();
            println!("{}: ready ({} replicas, {pulled} pulled from peers)", s.id, s.progress.len());
        }
        Ok(())
    })
}

/// `mlmf infer`.
pub fn infer(a: InferArgs) -> Result<(), String> {
    let client = a.target.client()?;
    let req = InferRequest {
        text: None,
        input_ids: vec![a.input_ids],
        attention_mask: a.attention_mask.map(|m| vec![m]),
        token_type_ids: a.token_type_ids.map(|m| vec![m]),
        outputs: a.outputs,
        session_id: None,
        priority: None,
        timeout_ms: None,
    };
    block_on(async move {
        let r = client.infer(&a.id, &req).await.map_err(|e| e.to_string())?;
        if a.json {
            println!("{}", serde_json::to_string(&r).map_err(|e| e.to_string())?);
            return Ok(());
        }
        for (name, t) in &r.outputs {
            let head: Vec<String> = t.data.iter().take(6).map(|v| format!("{v:.5}")).collect();
            println!("{name} {:?}: [{}, ...]", t.shape, head.join(", "));
        }
        println!(
            "processed_by: {}  ({:.2} ms, {} attempt(s))",
            r.processed_by.join(" -> "),
            r.processing_time_ms,
            r.attempts
        );
        Ok(())
    })
}

/// `mlmf status`.
pub fn status(a: StatusArgs) -> Result<(), String> {
    let client = a.target.client()?;
    block_on(async move {
        if let Some(id) = &a.id {
            let s = client.model(id).await.map_err(|e| e.to_string())?;
            println!("{}", serde_json::to_string_pretty(&s).map_err(|e| e.to_string())?);
            return Ok(());
        }
        loop {
            let c = client.cluster().await.map_err(|e| e.to_string())?;
            let models = client.models().await.map_err(|e| e.to_string())?;
            if a.json {
                println!("{}", serde_json::json!({"cluster": c, "models": models}));
                return Ok(());
            }
            let table = status_table(&c, &models);
            if !a.watch {
                print!("{table}");
                return Ok(());
            }
            // Clear the screen and draw again from its top.
            print!("\x1b[2J\x1b[H{table}");
            use std::io::Write;
            let _ = std::io::stdout().flush();
            tokio::time::sleep(Duration::from_millis(a.interval_ms)).await;
        }
    })
}

/// The cluster's nodes and models as an aligned table.
fn status_table(c: &serde_json::Value, models: &[crate::cluster::wire::ModelStatus]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "cluster {} (coordinator {}, view {})",
        c["health"].as_str().unwrap_or("?"),
        c["coordinator"].as_str().unwrap_or("?"),
        c["version"]
    );
    let _ = writeln!(
        out,
        "{:<22} {:<8} {:>6} {:>6} {:>9} {:>9} {:>9}  shards",
        "NODE", "STATE", "PHI", "CPU%", "MEM MiB", "KV MiB", "IN FLIGHT"
    );
    for n in c["nodes"].as_array().into_iter().flatten() {
        let s = &n["stats"];
        let _ = writeln!(
            out,
            "{:<22} {:<8} {:>6.2} {:>6.1} {:>9} {:>9.1} {:>9}  {}",
            n["node"]["info"]["id"].as_str().unwrap_or("?"),
            n["node"]["state"].as_str().unwrap_or("?"),
            n["phi"].as_f64().unwrap_or(0.0),
            s["cpu_percent"].as_f64().unwrap_or(0.0),
            s["process_memory"].as_u64().unwrap_or(0) >> 20,
            s["kv_cache_bytes"].as_u64().unwrap_or(0) as f64 / (1 << 20) as f64,
            s["in_flight"].as_u64().unwrap_or(0),
            n["shards"]
                .as_array()
                .map(|s| s.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(","))
                .unwrap_or_default(),
        );
    }
    let _ = writeln!(out, "{:<22} {:<10} {:<14} {:>8} {:>7}", "MODEL", "STATUS", "STRATEGY", "REPLICAS", "LOADED");
    for m in models {
        let (loaded, total) = m.progress.iter().fold((0u64, 0u64), |(l, t), p| (l + p.loaded, t + p.total));
        let status = match &m.status {
            crate::cluster::wire::ModelState::Loading => "loading".to_string(),
            crate::cluster::wire::ModelState::Ready => "ready".to_string(),
            crate::cluster::wire::ModelState::Failed { reason } => format!("failed: {reason}"),
        };
        let _ = writeln!(
            out,
            "{:<22} {:<10} {:<14} {:>8} {:>6.0}%",
            m.id,
            status,
            m.strategy,
            m.replication,
            100.0 * loaded as f64 / total.max(1) as f64
        );
    }
    out
}
