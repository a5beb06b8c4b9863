//! The cluster end to end, over real loopback sockets (nodes run in this process, each on its
//! own actix system, as `SimpleDistributedManager` starts them):
//!
//! 1. A 3-stage pipeline of the GPT-2-small shape (seq 128) against the same model in one
//!    process (`LocalRunner`), and against a 1-node cluster (HTTP and JSON alone).
//! 2. HTTP inference throughput and p50/p99 latency at concurrency 1, 8 and 64 for a micro
//!    model the size of a 16-256-256-16 MLP, against a bare actix-web server computing that
//!    MLP in plain Rust. The load generator is in this process too (two threads, awc).
//! 3. Dynamic batching on gpt2_tiny, JSON and binary answers (`MLMF_BENCH_ONLY=batching`).
//! 4. MiniLM embeddings, one sentence per request at concurrency 1 and 64, against
//!    sentence-transformers' `encode` at batch 1 and 32 measured in the same run
//!    (`MLMF_BENCH_ONLY=embeddings`; the weights from `scripts/fetch-minilm.sh`).
//!
//! `cargo bench --bench cluster` (`MLMF_BENCH_QUICK=1` for shorter runs).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use actix_web::{App, HttpResponse, HttpServer, web};
use common::median;
use mlmf::api::types::InferRequest;
use mlmf::client::ClusterClient;
use mlmf::config::NodeConfig;
use mlmf::exec::{LocalRunner, RunOptions};
use mlmf::manager::{DistributedConfigBuilder, FaultToleranceConfig, SimpleDistributedManager};
use mlmf::model::ModelInput;
use mlmf::plan::ShardingStrategy;

fn quick() -> bool {
    std::env::var("MLMF_BENCH_QUICK").is_ok()
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    actix_web::rt::System::new().block_on(f)
}

fn deploy_with(
    model: &std::path::Path,
    id: &str,
    nodes: usize,
    strategy: ShardingStrategy,
    replication: usize,
    node: NodeConfig,
) -> SimpleDistributedManager {
    let addrs = vec!["127.0.0.1:0"; nodes];
    let cfg = DistributedConfigBuilder::new()
        .sharding(strategy)
        .fault_tolerance(FaultToleranceConfig { replication, ..FaultToleranceConfig::default() })
        .node_config(node)
        .build()
        .unwrap();
    block_on(SimpleDistributedManager::deploy(model, id, &addrs, cfg)).unwrap()
}

fn deploy(
    model: &std::path::Path,
    id: &str,
    nodes: usize,
    strategy: ShardingStrategy,
    replication: usize,
) -> SimpleDistributedManager {
    deploy_with(model, id, nodes, strategy, replication, NodeConfig::default())
}

fn pipeline_vs_one_process() -> Vec<String> {
    let dir = common::gpt2_small();
    let runs = if quick() { 3 } else { 10 };
    let ids: Vec<u32> = (0..128).map(|i| (i * 389 + 7) % 50257).collect();
    let local = LocalRunner::load(&dir, &ShardingStrategy::NoSharding, &mlmf::model::default_device()).unwrap();
    let input = ModelInput::single(&ids);
    local.run(&input, RunOptions::default()).unwrap();
    let one = median(
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                local.run(&input, RunOptions::default()).unwrap();
                t.elapsed().as_secs_f64()
            })
            .collect(),
    );
    drop(local);
    let req = InferRequest {
        text: None,
        input_ids: vec![ids.iter().map(|&i| i as i64).collect()],
        attention_mask: None,
        token_type_ids: None,
        outputs: Some(vec!["last_hidden_state".into()]),
        session_id: None,
        priority: None,
        timeout_ms: None,
    };
    let time = |m: &SimpleDistributedManager, id: &str| -> f64 {
        let c = m.client().clone();
        block_on(async {
            c.infer(id, &req).await.unwrap();
            let mut v = Vec::new();
            for _ in 0..runs {
                let t = Instant::now();
                c.infer(id, &req).await.unwrap();
                v.push(t.elapsed().as_secs_f64());
            }
            median(v)
        })
    };
    let single = deploy(&dir, "one", 1, ShardingStrategy::NoSharding, 1);
    let single_t = time(&single, "one");
    single.shutdown();
    let piped = deploy(&dir, "pipe", 3, ShardingStrategy::PipelineSharding { num_stages: 3 }, 1);
    let pipe_t = time(&piped, "pipe");
    piped.shutdown();
    vec![
        "| GPT-2-small shape, seq 128 | median | vs one process |".into(),
        "|---|---|---|".into(),
        format!("| one process (`LocalRunner`, none) | {:.1} ms | 1.00x |", one * 1e3),
        format!("| 1 node over HTTP (none) | {:.1} ms | {:.2}x |", single_t * 1e3, single_t / one),
        format!("| 3 nodes, pipeline:3, over HTTP + websocket | {:.1} ms | {:.2}x |", pipe_t * 1e3, pipe_t / one),
    ]
}

/// 16 -> 256 -> 256 -> 16 with ReLU, in plain Rust.
struct Mlp {
    w: Vec<Vec<f32>>,
}

impl Mlp {
    fn new() -> Mlp {
        let mut seed = 1u64;
        let w = [(16, 256), (256, 256), (256, 16)].iter().map(|(i, o)| common::random(i * o, &mut seed)).collect();
        Mlp { w }
    }

    fn forward(&self, x: &[f32]) -> Vec<f32> {
        let mut h = x.to_vec();
        for (k, (i, o)) in [(16usize, 256usize), (256, 256), (256, 16)].iter().enumerate() {
            let mut out = vec![0.0f32; *o];
            for (a, xa) in h.iter().enumerate().take(*i) {
                let row = &self.w[k][a * o..(a + 1) * o];
                for (b, wb) in row.iter().enumerate() {
                    out[b] += xa * wb;
                }
            }
            if k < 2 {
                out.iter_mut().for_each(|v| *v = v.max(0.0));
            }
            h = out;
        }
        h
    }
}

fn start_bare() -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        block_on(async move {
            let mlp = web::Data::new(Mlp::new());
            let server = HttpServer::new(move || {
                App::new().app_data(mlp.clone()).route(
                    "/infer",
                    web::post().to(|mlp: web::Data<Mlp>, body: web::Json<serde_json::Value>| async move {
                        let x: Vec<f32> = body["input"]
                            .as_array()
                            .map(|a| a.iter().map(|v| v.as_f64().unwrap_or(0.0) as f32).collect())
                            .unwrap_or_default();
                        if x.len() != 16 {
                            return HttpResponse::BadRequest().finish();
                        }
                        HttpResponse::Ok().json(serde_json::json!({"output": mlp.forward(&x)}))
                    }),
                )
            })
            .workers(2)
            .bind(("127.0.0.1", 0))
            .unwrap();
            tx.send(server.addrs()[0].to_string()).unwrap();
            server.run().await.unwrap();
        })
    });
    rx.recv().unwrap()
}

struct Load {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: usize,
}

/// `concurrency` clients on two threads, each sending `body` to `url` back to back for `secs`.
fn load(url: &str, body: Arc<Vec<u8>>, concurrency: usize, secs: f64, key: Option<String>) -> Load {
    load_with(url, body, concurrency, secs, key, &[])
}

/// As [`load`], with extra request headers.
fn load_with(
    url: &str,
    body: Arc<Vec<u8>>,
    concurrency: usize,
    secs: f64,
    key: Option<String>,
    headers: &[(&'static str, String)],
) -> Load {
    let headers: Arc<Vec<(&'static str, String)>> = Arc::new(headers.to_vec());
    let threads = 2.min(concurrency);
    let stop = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (url, body, stop, key) = (url.to_string(), Arc::clone(&body), Arc::clone(&stop), key.clone());
            let headers = Arc::clone(&headers);
            let per = concurrency / threads + usize::from(t < concurrency % threads);
            std::thread::spawn(move || {
                block_on(async move {
                    let client = awc::Client::builder().timeout(Duration::from_secs(30)).finish();
                    let tasks = (0..per).map(|_| {
                        let (client, url, body, stop, key) =
                            (client.clone(), url.clone(), Arc::clone(&body), Arc::clone(&stop), key.clone());
                        let headers = Arc::clone(&headers);
                        async move {
                            let mut lat = Vec::new();
                            let mut errors = 0;
                            while !stop.load(Ordering::Relaxed) {
                                let t = Instant::now();
                                let mut req = client.post(&url).insert_header(("content-type", "application/json"));
                                for (k, v) in headers.iter() {
                                    req = req.insert_header((*k, v.as_str()));
                                }
                                if let Some(k) = &key {
                                    req = req.bearer_auth(k);
                                }
                                match req.send_body(body.as_ref().clone()).await {
                                    Ok(mut r) if r.status().is_success() => {
                                        let _ = r.body().await;
                                        lat.push(t.elapsed().as_secs_f64());
                                    }
                                    _ => errors += 1,
                                }
                            }
                            (lat, errors)
                        }
                    });
                    futures_util::future::join_all(tasks).await
                })
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    let mut lat = Vec::new();
    let mut errors = 0;
    for h in handles {
        for (l, e) in h.join().unwrap() {
            lat.extend(l);
            errors += e;
        }
    }
    lat.sort_by(f64::total_cmp);
    let pick = |q: f64| {
        lat.get(((lat.len() as f64 * q) as usize).min(lat.len().saturating_sub(1))).copied().unwrap_or(f64::NAN) * 1e3
    };
    Load { rps: lat.len() as f64 / secs, p50_ms: pick(0.5), p99_ms: pick(0.99), errors }
}

fn http_throughput() -> Vec<String> {
    let secs = if quick() { 1.5 } else { 4.0 };
    let bare = start_bare();
    let bare_body = Arc::new(
        serde_json::to_vec(&serde_json::json!({"input": (0..16).map(|i| i as f32 / 16.0).collect::<Vec<_>>()}))
            .unwrap(),
    );
    let micro = common::gpt2_micro();
    let one = deploy(&micro, "micro", 1, ShardingStrategy::NoSharding, 1);
    let two = deploy(&micro, "micro", 2, ShardingStrategy::NoSharding, 2);
    let threads = NodeConfig { shard_threads: 2, ..NodeConfig::default() };
    let one_t2 = deploy_with(&micro, "micro", 1, ShardingStrategy::NoSharding, 1, threads);
    let body = Arc::new(br#"{"input_ids":[[1,2,3,4]],"outputs":["logits"]}"#.to_vec());
    let url = |c: &ClusterClient| format!("http://{}/v1/models/micro/infer", c.addr());
    let mut rows = vec![
        "| server | concurrency | req/s | p50 | p99 | errors | vs bare |".to_string(),
        "|---|---|---|---|---|---|---|".to_string(),
    ];
    for c in [1, 8, 64] {
        let b = load(&format!("http://{bare}/infer"), Arc::clone(&bare_body), c, secs, None);
        let o = load(&url(one.client()), Arc::clone(&body), c, secs, None);
        let t = load(&url(two.client()), Arc::clone(&body), c, secs, None);
        let o2 = load(&url(one_t2.client()), Arc::clone(&body), c, secs, None);
        for (name, l) in [
            ("bare actix-web, MLP 16-256-256-16", &b),
            ("mlmf, 1 node, micro GPT-2", &o),
            ("mlmf, 1 node, 2 threads per shard", &o2),
            ("mlmf, 2 nodes x replication 2", &t),
        ] {
            rows.push(format!(
                "| {name} | {c} | {:.0} | {:.2} ms | {:.2} ms | {} | {:.0}% |",
                l.rps,
                l.p50_ms,
                l.p99_ms,
                l.errors,
                100.0 * l.rps / b.rps
            ));
        }
    }
    one.shutdown();
    two.shutdown();
    one_t2.shutdown();
    rows
}

/// gpt2_tiny (the Ray Serve anchor's model), 7 tokens in, logits out, at concurrency 1, 8
/// and 64: dynamic batching off and on, on one node and on a three-stage pipeline of three
/// nodes; and the same forward answered as bytes (KServe v2 binary) instead of JSON.
fn batching_throughput() -> Vec<String> {
    let secs = if quick() { 1.5 } else { 4.0 };
    let tiny = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpt2_tiny");
    let off = NodeConfig {
        batching: mlmf::config::BatchingConfig { enabled: false, ..Default::default() },
        ..NodeConfig::default()
    };
    let setups = [
        ("1 node, batching off", deploy_with(&tiny, "t", 1, ShardingStrategy::NoSharding, 1, off.clone())),
        ("1 node, batching on", deploy(&tiny, "t", 1, ShardingStrategy::NoSharding, 1)),
        (
            "3-stage pipeline, batching off",
            deploy_with(&tiny, "t", 3, ShardingStrategy::PipelineSharding { num_stages: 3 }, 1, off),
        ),
        (
            "3-stage pipeline, batching on",
            deploy(&tiny, "t", 3, ShardingStrategy::PipelineSharding { num_stages: 3 }, 1),
        ),
    ];
    let ids = [811, 950, 92, 828, 382, 686, 220];
    let json_body =
        Arc::new(serde_json::to_vec(&serde_json::json!({"input_ids": [ids], "outputs": ["logits"]})).unwrap());
    let header = serde_json::to_vec(&serde_json::json!({
        "inputs": [{"name": "input_ids", "shape": [1, 7], "datatype": "INT64", "parameters": {"binary_data_size": 56}}],
        "outputs": [{"name": "logits", "parameters": {"binary_data": true}}],
    }))
    .unwrap();
    let mut binary = header.clone();
    binary.extend(ids.iter().flat_map(|i: &i64| i.to_le_bytes()));
    let binary = Arc::new(binary);
    let binary_headers = [
        ("content-type", "application/octet-stream".to_string()),
        ("inference-header-content-length", header.len().to_string()),
    ];
    let mut rows = vec![
        "| setup | answer | concurrency | req/s | p50 | p99 | errors | vs batching off |".to_string(),
        "|---|---|---|---|---|---|---|---|".to_string(),
    ];
    for c in [1, 8, 64] {
        let mut baseline = f64::NAN;
        for (name, m) in &setups {
            let addr = m.client().addr().to_string();
            let l = load(&format!("http://{addr}/v1/models/t/infer"), Arc::clone(&json_body), c, secs, None);
            if name.ends_with("batching off") {
                baseline = l.rps;
            }
            rows.push(format!(
                "| {name} | JSON | {c} | {:.0} | {:.2} ms | {:.2} ms | {} | {:.2}x |",
                l.rps,
                l.p50_ms,
                l.p99_ms,
                l.errors,
                l.rps / baseline
            ));
            if name.ends_with("batching on") {
                let b = load_with(
                    &format!("http://{addr}/v2/models/t/infer"),
                    Arc::clone(&binary),
                    c,
                    secs,
                    None,
                    &binary_headers,
                );
                rows.push(format!(
                    "| {name} | KServe binary | {c} | {:.0} | {:.2} ms | {:.2} ms | {} | {:.2}x |",
                    b.rps,
                    b.p50_ms,
                    b.p99_ms,
                    b.errors,
                    b.rps / baseline
                ));
            }
        }
    }
    for (_, m) in setups {
        m.shutdown();
    }
    rows
}

/// MiniLM sentences/s: one sentence per `/v1/embeddings` request at concurrency 1 and 64 on
/// one node (batching on and off), against sentence-transformers' `encode` of the same
/// sentence at batch 1 and 32, measured in this run at the same thread count.
fn embeddings_throughput() -> Vec<String> {
    let dir = std::env::var_os("MLMF_MINILM_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".cache/minilm"));
    if !dir.join("model.safetensors").is_file() {
        return vec![format!("(embeddings: no MiniLM weights in {}; run scripts/fetch-minilm.sh)", dir.display())];
    }
    let secs = if quick() { 1.5 } else { 4.0 };
    let sentence = "Rust loads safetensors checkpoints and shards transformer layers across cluster nodes.";
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "2".into());
    let model = dir.to_string_lossy().to_string();
    let secs_arg = secs.to_string();
    let torch = common::pytorch_script(
        "bench_embeddings.py",
        &["--model", &model, "--sentence", sentence, "--threads", &threads, "--secs", &secs_arg],
    );
    let st = |k: &str| torch.as_ref().and_then(|t| t["results"][k].as_f64()).unwrap_or(f64::NAN);
    let off = NodeConfig {
        batching: mlmf::config::BatchingConfig { enabled: false, ..Default::default() },
        ..NodeConfig::default()
    };
    let body = Arc::new(serde_json::to_vec(&serde_json::json!({"model": "e", "input": sentence})).unwrap());
    let mut rows = vec![
        format!(
            "MiniLM-L6 embeddings, one sentence ({} chars) per request, RAYON_NUM_THREADS={threads}; sentence-transformers {} at {} threads, same run",
            sentence.len(),
            torch.as_ref().map_or("-".into(), |t| t["versions"]["sentence_transformers"].to_string()),
            torch.as_ref().map_or("-".into(), |t| t["threads"].to_string()),
        ),
        "| server | concurrency | sentences/s | p50 | p99 | errors | sentence-transformers encode, batch 1 / 32 |"
            .to_string(),
        "|---|---|---|---|---|---|---|".to_string(),
    ];
    for (name, node) in [("mlmf 1 node, batching off", off), ("mlmf 1 node, batching on", NodeConfig::default())] {
        let m = deploy_with(&dir, "e", 1, ShardingStrategy::NoSharding, 1, node);
        let addr = m.client().addr().to_string();
        for c in [1, 64] {
            let l = load(&format!("http://{addr}/v1/embeddings"), Arc::clone(&body), c, secs, None);
            rows.push(format!(
                "| {name} | {c} | {:.0} | {:.2} ms | {:.2} ms | {} | {:.0} / {:.0} |",
                l.rps,
                l.p50_ms,
                l.p99_ms,
                l.errors,
                st("batch1"),
                st("batch32")
            ));
        }
        m.shutdown();
    }
    rows
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let which = std::env::var("MLMF_BENCH_ONLY").unwrap_or_default();
    let mut out = Vec::new();
    if which.is_empty() || which == "pipeline" {
        out.extend(pipeline_vs_one_process());
        out.push(String::new());
    }
    if which.is_empty() || which == "http" {
        out.extend(http_throughput());
        out.push(String::new());
    }
    if which.is_empty() || which == "batching" {
        out.extend(batching_throughput());
        out.push(String::new());
    }
    if which.is_empty() || which == "embeddings" {
        out.extend(embeddings_throughput());
    }
    println!("\n{}", out.join("\n"));
}
