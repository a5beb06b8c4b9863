//! Quantized GGUF models against llama.cpp on the same files, in the same run, at the same
//! thread count (`RAYON_NUM_THREADS`, which `scripts/bench-gguf.sh` sets to 1 and 2 and
//! passes to `llama-bench -t`): decode tokens/s at batch 1 after a 16-token prompt (llama.cpp's
//! `tg`), prefill tokens/s of a 512-token prompt (`pp512`), and this process's resident memory
//! after loading against the file's bytes. mlmf runs in one process (`none`) and, for decode,
//! as a three-node `pipeline:3` of in-process nodes over loopback websockets.
//!
//! The files: SmolLM2-135M-Instruct Q4_1 (`scripts/fetch-smollm2.sh`), and its Q8_0 and
//! Q4_K_M requantizations where `scripts/requantize-smollm2.sh` made them. llama.cpp's
//! binaries come from `scripts/build-llama-cpp.sh` (`MLMF_LLAMA_BIN` names their folder);
//! without them the table says "not built".

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use mlmf::config::NodeConfig;
use mlmf::exec::LocalRunner;
use mlmf::manager::{DistributedConfigBuilder, SimpleDistributedManager};
use mlmf::plan::ShardingStrategy;
use serde_json::json;

fn cache() -> PathBuf {
    std::env::var_os("MLMF_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/mlmf"))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Resident memory of this process, bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// A prompt of `n` ordinary token ids.
fn prompt(n: usize) -> Vec<u32> {
    (0..n as u32).map(|i| 1000 + (i * 37) % 20000).collect()
}

/// `(decode tokens/s, prefill tokens/s of 512, RSS after load)` in one process.
fn local(path: &Path) -> (f64, f64, u64) {
    let device = mlmf::model::default_device();
    let before = rss();
    let runner = LocalRunner::load(path, &ShardingStrategy::NoSharding, &device).unwrap();
    let steps = 64;
    let mut decode = Vec::new();
    for _ in 0..3 {
        let mut g = runner.start_generation();
        g.forward_last(&prompt(16)).unwrap();
        let t = Instant::now();
        let mut token = 1000;
        for _ in 0..steps {
            let logits = g.forward_last(&[token]).unwrap();
            token = logits.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(i, _)| i as u32);
        }
        decode.push(steps as f64 / t.elapsed().as_secs_f64());
    }
    let mut prefill = Vec::new();
    for _ in 0..2 {
        let mut g = runner.start_generation();
        let t = Instant::now();
        g.forward_last(&prompt(512)).unwrap();
        prefill.push(512.0 / t.elapsed().as_secs_f64());
    }
    // After every weight was used: the mapped file's pages resident count here too.
    let loaded = rss().saturating_sub(before);
    (median(decode), median(prefill), loaded)
}

/// Decode tokens/s of one greedy completion through `nodes` in-process nodes as `strategy`.
fn cluster(path: &Path, strategy: ShardingStrategy, nodes: usize) -> f64 {
    let addrs = vec!["127.0.0.1:0"; nodes];
    let cfg = DistributedConfigBuilder::new().sharding(strategy).node_config(NodeConfig::default()).build().unwrap();
    actix_web::rt::System::new().block_on(async {
        let m = SimpleDistributedManager::deploy(path, "g", &addrs, cfg).await.unwrap();
        let ids = prompt(16);
        let body =
            |n: usize| json!({"model": "g", "prompt": ids, "max_tokens": n, "temperature": 0, "ignore_eos": true});
        let mut rates = Vec::new();
        for _ in 0..3 {
            let t = Instant::now();
            m.client().completion(&body(1), |_| {}).await.unwrap();
            let first = t.elapsed().as_secs_f64();
            let t = Instant::now();
            m.client().completion(&body(65), |_| {}).await.unwrap();
            rates.push(64.0 / (t.elapsed().as_secs_f64() - first));
        }
        m.shutdown();
        median(rates)
    })
}

/// llama-bench's `(tg, pp512)` tokens/s on `path` at `threads`, `None` where it is not built.
fn llama_bench(path: &Path, threads: &str) -> Option<(f64, f64)> {
    let bin = std::env::var_os("MLMF_LLAMA_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache().join("llama.cpp-0.3.36/bin"))
        .join("llama-bench");
    if !bin.is_file() {
        return None;
    }
    let out = Command::new(&bin)
        .args(["-m", path.to_str()?, "-t", threads, "-p", "512", "-n", "64", "-r", "3", "-o", "json"])
        .output()
        .ok()?;
    let runs: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let rate = |prompt: u64| {
        runs.as_array()?.iter().find(|r| r["n_prompt"].as_u64() == Some(prompt)).and_then(|r| r["avg_ts"].as_f64())
    };
    Some((rate(0)?, rate(512)?))
}

/// llama.cpp's resident memory after loading `path` (a 1-token run of llama-cli is not in the
/// build; llama-bench's peak RSS at one decode token stands in), from `/usr/bin/time`.
fn llama_rss(path: &Path, threads: &str) -> Option<u64> {
    let bin = std::env::var_os("MLMF_LLAMA_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache().join("llama.cpp-0.3.36/bin"))
        .join("llama-bench");
    let out = Command::new("/usr/bin/time")
        .args(["-f", "%M", bin.to_str()?, "-m", path.to_str()?, "-t", threads, "-p", "0", "-n", "1", "-r", "1"])
        .output()
        .ok()?;
    let err = String::from_utf8_lossy(&out.stderr);
    err.lines().last()?.trim().parse::<u64>().ok().map(|kb| kb * 1024)
}

fn main() {
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "2".into());
    let dir = cache().join("smollm2");
    let files: Vec<PathBuf> = ["Q4_1", "Q8_0", "Q4_K_M"]
        .iter()
        .map(|t| dir.join(format!("SmolLM2-135M-Instruct.{t}.gguf")))
        .filter(|p| p.is_file())
        .collect();
    if files.is_empty() {
        println!("no SmolLM2 GGUF file in {} (scripts/fetch-smollm2.sh)", dir.display());
        return;
    }
    println!(
        "threads {threads}; mlmf's quantized products: {} with {:?} activations",
        mlmf_quant::Isa::detected().name(),
        mlmf::model::quant_linear::activations()
    );
    println!();
    println!(
        "| SmolLM2-135M, {threads} thread(s) | file | mlmf decode | llama.cpp decode | ratio | mlmf pp512 | llama.cpp pp512 | ratio | mlmf pipeline:3 decode (÷ one node) | mlmf RSS growth after load and generation | llama.cpp peak RSS |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for f in files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let bytes = std::fs::metadata(&f).map(|m| m.len()).unwrap_or(0);
        let (tg, pp, mem) = local(&f);
        let one = cluster(&f, ShardingStrategy::NoSharding, 1);
        let piped = cluster(&f, ShardingStrategy::PipelineSharding { num_stages: 3 }, 3);
        let anchor = llama_bench(&f, &threads);
        let anchor_rss = llama_rss(&f, &threads);
        let fmt = |v: Option<f64>| v.map_or("not built".into(), |v| format!("{v:.1} tok/s"));
        let ratio = |a: f64, b: Option<f64>| b.map_or("-".into(), |b| format!("{:.2}x", a / b));
        println!(
            "| {name} | {:.1} MB | {tg:.1} tok/s | {} | {} | {pp:.0} tok/s | {} | {} | {piped:.1} tok/s ({:.2}x of {one:.1}) | {:.0} MB | {} |",
            bytes as f64 / 1e6,
            fmt(anchor.map(|a| a.0)),
            ratio(tg, anchor.map(|a| a.0)),
            fmt(anchor.map(|a| a.1)),
            ratio(pp, anchor.map(|a| a.1)),
            piped / one,
            mem as f64 / 1e6,
            anchor_rss.map_or("-".into(), |r| format!("{:.0} MB", r as f64 / 1e6)),
        );
    }
}
