//! Generation speed: prefill and per-token decode with the KV cache, in one process and
//! through a three-stage pipeline of nodes on 127.0.0.1 (every step a real websocket hop per
//! stage), for gpt2_tiny, llama_tiny and the GPT-2-small shape. Prints a table; PyTorch's
//! figures come from `tests/fixtures/scripts/bench_generate.py` (see BENCHMARKS.md).
//!
//! `RAYON_NUM_THREADS=1 cargo bench --bench generate` (`MLMF_BENCH_QUICK=1` for fewer steps).

mod common;

use std::path::{Path, PathBuf};
use std::time::Instant;

use mlmf::config::NodeConfig;
use mlmf::exec::LocalRunner;
use mlmf::manager::{DistributedConfigBuilder, SimpleDistributedManager};
use mlmf::plan::ShardingStrategy;
use serde_json::json;

fn quick() -> bool {
    std::env::var("MLMF_BENCH_QUICK").is_ok_and(|v| v == "1")
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// (prefill ms, decode ms per token) in one process, `prompt` tokens then `new` steps.
fn local(dir: &Path, strategy: &str, prompt: usize, new: usize) -> (f64, f64) {
    let device = mlmf::model::default_device();
    let runner = LocalRunner::load(dir, &strategy.parse().unwrap(), &device).unwrap();
    let ids: Vec<u32> = (0..prompt as u32).map(|i| (i * 7 + 3) % 900).collect();
    let runs = if quick() { 2 } else { 5 };
    let (mut prefills, mut steps) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let mut generation = runner.start_generation();
        let t = Instant::now();
        generation.forward(&ids).unwrap();
        prefills.push(t.elapsed().as_secs_f64() * 1e3);
        let mut token = 5;
        for _ in 0..new {
            let t = Instant::now();
            let logits = generation.forward(&[token]).unwrap();
            steps.push(t.elapsed().as_secs_f64() * 1e3);
            token = (logits.len() % 900) as u32;
        }
    }
    (median(prefills), median(steps))
}

/// Decode ms per token of a greedy completion of `new` tokens served by `nodes` in-process
/// nodes (real sockets) cut by `strategy`, measured by the client (whole request / tokens).
fn cluster(dir: &Path, strategy: ShardingStrategy, nodes: usize, prompt: usize, new: usize) -> f64 {
    let addrs = vec!["127.0.0.1:0"; nodes];
    let cfg = DistributedConfigBuilder::new().sharding(strategy).node_config(NodeConfig::default()).build().unwrap();
    actix_web::rt::System::new().block_on(async {
        let m = SimpleDistributedManager::deploy(dir, "g", &addrs, cfg).await.unwrap();
        let ids: Vec<u32> = (0..prompt as u32).map(|i| (i * 7 + 3) % 900).collect();
        let body =
            |n: usize| json!({"model": "g", "prompt": ids, "max_tokens": n, "temperature": 0, "ignore_eos": true});
        let runs = if quick() { 2 } else { 5 };
        let mut per_token = Vec::new();
        for _ in 0..runs {
            // The prefill's share is measured alone and taken out.
            let t = Instant::now();
            m.client().completion(&body(1), |_| {}).await.unwrap();
            let first = t.elapsed().as_secs_f64();
            let t = Instant::now();
            m.client().completion(&body(new + 1), |_| {}).await.unwrap();
            per_token.push((t.elapsed().as_secs_f64() - first) * 1e3 / new as f64);
        }
        m.shutdown();
        median(per_token)
    })
}

fn main() {
    let new = if quick() { 16 } else { 64 };
    let small = common::gpt2_small();
    let mut rows = Vec::new();
    for (name, dir, prompt, steps) in [
        ("gpt2_tiny", fixture("gpt2_tiny"), 32, new),
        ("llama_tiny", fixture("llama_tiny"), 32, new),
        ("GPT-2-small shape", small.clone(), 128, new / 2),
    ] {
        let (prefill, one) = local(&dir, "none", prompt, steps);
        let (_, piped_local) = local(&dir, "pipeline:3", prompt, steps);
        let nodes = cluster(&dir, ShardingStrategy::PipelineSharding { num_stages: 3 }, 3, prompt, steps);
        let single = cluster(&dir, ShardingStrategy::NoSharding, 1, prompt, steps);
        rows.push(format!(
            "| {name}, {prompt} / {steps} | {prefill:.1} ms | {one:.2} ms ({:.0} tok/s) | {piped_local:.2} ms | {single:.2} ms | {nodes:.2} ms | {:.2}x |",
            1e3 / one,
            nodes / single
        ));
    }
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all".into());
    println!("\ngeneration with the KV cache, batch 1, RAYON_NUM_THREADS={threads}");
    println!(
        "| model, prompt / new tokens | prefill (one process) | decode per token, one process | pipeline:3 in one process | 1 node over HTTP | pipeline:3 on 3 nodes | 3 nodes / 1 node |"
    );
    println!("|---|---|---|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
}
