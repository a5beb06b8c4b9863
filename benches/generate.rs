//! Generation speed: prefill and per-token decode with the KV cache, in one process and
//! through a three-stage pipeline of nodes on 127.0.0.1 (every step a real websocket hop per
//! stage), for gpt2_tiny, llama_tiny and the GPT-2-small shape; time to first token of a
//! 1,000-token prompt; cache bytes per token. Prints tables, with PyTorch's `generate` measured
//! in the same run by `tests/fixtures/scripts/bench_generate.py` at the same thread count when
//! its Python is there (`MLMF_PYTORCH_PYTHON`, or the venv `scripts/bench-generate.sh` makes).
//!
//! Then throughput under concurrency: 1, 4, 16 and 64 streams at once on one node and on a
//! three-stage pipeline, with continuous batching off and on, against PyTorch's `generate` at
//! batch 1 and 8.
//!
//! Then chunked prefill: how long the decoding streams stall while a long prompt arrives,
//! with `prefill_chunk_tokens` off and on.
//!
//! `RAYON_NUM_THREADS=1 cargo bench --bench generate` (`MLMF_BENCH_QUICK=1` for fewer steps;
//! `MLMF_BENCH_ONLY=concurrency` or `MLMF_BENCH_ONLY=chunked` for one table alone).

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

/// One process: prefill ms (to the first token's logits), decode ms per token, cache bytes
/// per position; `prompt` tokens then `new` steps.
fn local(dir: &Path, strategy: &str, prompt: usize, new: usize) -> (f64, f64, u64) {
    let device = mlmf::model::default_device();
    let runner = LocalRunner::load(dir, &strategy.parse().unwrap(), &device).unwrap();
    let ids: Vec<u32> = (0..prompt as u32).map(|i| (i * 7 + 3) % 900).collect();
    let runs = if quick() { 2 } else { 5 };
    let (mut prefills, mut steps, mut per_position) = (Vec::new(), Vec::new(), 0);
    for _ in 0..runs {
        let mut generation = runner.start_generation();
        let t = Instant::now();
        generation.forward_last(&ids).unwrap();
        prefills.push(t.elapsed().as_secs_f64() * 1e3);
        let mut token = 5;
        for _ in 0..new {
            let t = Instant::now();
            let logits = generation.forward_last(&[token]).unwrap();
            steps.push(t.elapsed().as_secs_f64() * 1e3);
            token = (logits.len() % 900) as u32;
        }
        per_position = generation.cache_bytes() / generation.positions() as u64;
    }
    (median(prefills), median(if new == 0 { vec![0.0] } else { steps }), per_position)
}

/// PyTorch's figures, measured now by `bench_generate.py` at `threads` threads, when a
/// Python with torch and transformers is there.
fn pytorch(threads: &str) -> Option<serde_json::Value> {
    let threads = if threads == "all" { "2" } else { threads };
    let runs = if quick() { "2" } else { "5" };
    common::pytorch_script("bench_generate.py", &["--threads", threads, "--batches", "1,8", "--runs", runs])
}

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

/// `(decode, end to end)` tokens per second of `streams` greedy completions of `new` tokens
/// after `prompt`-token prompts sent at once to `nodes` in-process nodes cut by `strategy`,
/// continuous batching on or off. Decode: the tokens after each stream's first, over the time
/// from the last stream's first token to the last stream's end (as PyTorch's figure leaves
/// the prefill out); end to end: every token over the whole run, prefills included.
fn concurrent(
    dir: &Path,
    strategy: ShardingStrategy,
    nodes: usize,
    streams: usize,
    prompt: usize,
    new: usize,
    batching: bool,
) -> (f64, f64) {
    let addrs = vec!["127.0.0.1:0"; nodes];
    let node = NodeConfig {
        batching: mlmf::config::BatchingConfig { enabled: batching, ..Default::default() },
        ..NodeConfig::default()
    };
    let cfg = DistributedConfigBuilder::new().sharding(strategy).node_config(node).build().unwrap();
    actix_web::rt::System::new().block_on(async {
        let m = SimpleDistributedManager::deploy(dir, "g", &addrs, cfg).await.unwrap();
        let body = |s: usize| {
            let ids: Vec<u32> = (0..prompt as u32).map(|i| (i * 7 + 3 + s as u32 * 13) % 900).collect();
            json!({"model": "g", "prompt": ids, "max_tokens": new, "temperature": 0, "ignore_eos": true, "stream": true})
        };
        let t = Instant::now();
        let runs = (0..streams).map(|s| {
            let client = m.client();
            let b = body(s);
            async move {
                let mut first = None;
                client.completion(&b, |_| {
                    first.get_or_insert_with(Instant::now);
                }).await.unwrap();
                (first.unwrap_or_else(Instant::now), Instant::now())
            }
        });
        let times = futures_util::future::join_all(runs).await;
        let whole = t.elapsed().as_secs_f64();
        m.shutdown();
        let last_first = times.iter().map(|(f, _)| *f).max().unwrap();
        let last_end = times.iter().map(|(_, e)| *e).max().unwrap();
        let decode = (last_end - last_first).as_secs_f64().max(1e-9);
        ((streams * (new - 1)) as f64 / decode, (streams * new) as f64 / whole)
    })
}

/// The concurrency table: tokens/s per stream count, batching off and on, one node and a
/// three-stage pipeline, against PyTorch's batch 1 and 8 decode tokens/s.
fn concurrency_table(torch: Option<&serde_json::Value>, threads: &str) {
    let new = if quick() { 16 } else { 64 };
    println!("
throughput under concurrency, RAYON_NUM_THREADS={threads} (mlmf: generated tokens/s end to end, prefills included; PyTorch: decode tokens/s of generate)");
    println!(
        "| model | streams | 1 node, batching off | 1 node, batching on | pipeline:3 on 3 nodes, off | pipeline:3 on 3 nodes, on | PyTorch batch 1 | PyTorch batch 8 |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let small = common::gpt2_small();
    // 64 streams of the GPT-2-small shape take minutes per cell on one core: 16 unless asked.
    let most_small = std::env::var("MLMF_BENCH_SMALL_STREAMS").ok().and_then(|v| v.parse().ok()).unwrap_or(16);
    for (name, key, dir, prompt, steps) in [
        ("gpt2_tiny", "gpt2_tiny/p32_n64", fixture("gpt2_tiny"), 32, new),
        ("llama_tiny", "llama_tiny/p32_n64", fixture("llama_tiny"), 32, new),
        ("GPT-2-small shape", "gpt2_small_shape/p128_n32", small, 128, new / 2),
    ] {
        let torch_at = |b: usize| {
            torch.and_then(|t| t["results"][format!("{key}_b{b}")]["decode_tokens_per_s"].as_f64()).unwrap_or(f64::NAN)
        };
        let most = if name.starts_with("GPT-2-small") { most_small } else { 64 };
        for streams in [1, 4, 16, 64].into_iter().filter(|&s| s <= most) {
            let pipe = ShardingStrategy::PipelineSharding { num_stages: 3 };
            let cells = [
                concurrent(&dir, ShardingStrategy::NoSharding, 1, streams, prompt, steps, false),
                concurrent(&dir, ShardingStrategy::NoSharding, 1, streams, prompt, steps, true),
                concurrent(&dir, pipe.clone(), 3, streams, prompt, steps, false),
                concurrent(&dir, pipe, 3, streams, prompt, steps, true),
            ];
            let cell = |(d, e): (f64, f64)| format!("{d:.0} ({e:.0})");
            println!(
                "| {name} | {streams} | {} | {} | {} | {} | {:.0} | {:.0} |",
                cell(cells[0]),
                cell(cells[1]),
                cell(cells[2]),
                cell(cells[3]),
                torch_at(1),
                torch_at(8)
            );
        }
    }
}

/// `(largest gap, p99 gap, median gap between tokens of the decoding streams in ms, time to
/// first token of the long prompt in ms)`: `streams` greedy streams decode on one node while a
/// `long`-token prompt arrives, prefilled in chunks of `chunk` tokens (0: whole).
fn stall(dir: &Path, streams: usize, long: usize, chunk: usize) -> (f64, f64, f64, f64) {
    let node = NodeConfig {
        batching: mlmf::config::BatchingConfig { prefill_chunk_tokens: chunk, ..Default::default() },
        ..NodeConfig::default()
    };
    let cfg = DistributedConfigBuilder::new().sharding(ShardingStrategy::NoSharding).node_config(node).build().unwrap();
    let new = if quick() { 24 } else { 48 };
    actix_web::rt::System::new().block_on(async {
        let m = SimpleDistributedManager::deploy(dir, "g", &["127.0.0.1:0"], cfg).await.unwrap();
        let ids = |n: usize, s: u32| -> Vec<u32> { (0..n as u32).map(|i| (i * 7 + 3 + s * 13) % 900).collect() };
        let decoding = (0..streams).map(|s| {
            let client = m.client();
            let b = json!({"model": "g", "prompt": ids(16, s as u32), "max_tokens": new, "temperature": 0,
                           "ignore_eos": true, "stream": true});
            async move {
                let mut times = Vec::new();
                client.completion(&b, |_| times.push(Instant::now())).await.unwrap();
                times.windows(2).map(|w| (w[1] - w[0]).as_secs_f64() * 1e3).collect::<Vec<_>>()
            }
        });
        let client = m.client();
        let prompt =
            json!({"model": "g", "prompt": ids(long, 99), "max_tokens": 1, "temperature": 0, "ignore_eos": true});
        let arriving = async move {
            // Once the streams are decoding.
            actix_web::rt::time::sleep(std::time::Duration::from_millis(300)).await;
            let t = Instant::now();
            client.completion(&prompt, |_| {}).await.unwrap();
            t.elapsed().as_secs_f64() * 1e3
        };
        let (gaps, ttft) = futures_util::future::join(futures_util::future::join_all(decoding), arriving).await;
        m.shutdown();
        let mut gaps: Vec<f64> = gaps.into_iter().flatten().collect();
        gaps.sort_by(|a, b| a.total_cmp(b));
        let at = |q: f64| gaps[((gaps.len() - 1) as f64 * q).round() as usize];
        (at(1.0), at(0.99), at(0.5), ttft)
    })
}

/// The chunked-prefill table: the GPT-2-small shape on one node, 4 streams decoding while a
/// 1,000-token prompt arrives.
fn chunked_table(threads: &str) {
    let small = common::gpt2_small();
    println!(
        "\nchunked prefill, GPT-2-small shape, 1 node, RAYON_NUM_THREADS={threads}: 4 streams decoding while a 1000-token prompt arrives"
    );
    println!("| prefill_chunk_tokens | decode gap, largest | p99 | median | long prompt's time to first token |");
    println!("|---|---|---|---|---|");
    for chunk in [0, 256, 128, 64] {
        let (max, p99, p50, ttft) = stall(&small, 4, 1000, chunk);
        let name = if chunk == 0 { "0 (whole prompt)".to_string() } else { chunk.to_string() };
        println!("| {name} | {max:.0} ms | {p99:.0} ms | {p50:.0} ms | {ttft:.0} ms |");
    }
}

fn main() {
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all".into());
    if std::env::var("MLMF_BENCH_ONLY").is_ok_and(|v| v == "chunked") {
        chunked_table(&threads);
        return;
    }
    let torch = pytorch(&threads);
    if std::env::var("MLMF_BENCH_ONLY").is_ok_and(|v| v == "concurrency") {
        concurrency_table(torch.as_ref(), &threads);
        return;
    }
    let new = if quick() { 16 } else { 64 };
    let small = common::gpt2_small();
    let mut rows = Vec::new();
    let mut versus = Vec::new();
    for (name, key, dir, prompt, steps) in [
        ("gpt2_tiny", "gpt2_tiny/p32_n64_b1", fixture("gpt2_tiny"), 32, new),
        ("llama_tiny", "llama_tiny/p32_n64_b1", fixture("llama_tiny"), 32, new),
        ("GPT-2-small shape", "gpt2_small_shape/p128_n32_b1", small.clone(), 128, new / 2),
    ] {
        let (prefill, one, per_position) = local(&dir, "none", prompt, steps);
        let (_, piped_local, _) = local(&dir, "pipeline:3", prompt, steps);
        let nodes = cluster(&dir, ShardingStrategy::PipelineSharding { num_stages: 3 }, 3, prompt, steps);
        let single = cluster(&dir, ShardingStrategy::NoSharding, 1, prompt, steps);
        rows.push(format!(
            "| {name}, {prompt} / {steps} | {prefill:.1} ms | {one:.2} ms ({:.0} tok/s) | {piped_local:.2} ms | {single:.2} ms | {nodes:.2} ms | {:.2}x | {:.1} KiB |",
            1e3 / one,
            nodes / single,
            per_position as f64 / 1024.0
        ));
        if let Some(r) = torch.as_ref().map(|t| &t["results"][key]) {
            let (tp, td) =
                (r["prefill_ms"].as_f64().unwrap_or(f64::NAN), r["decode_ms_per_step"].as_f64().unwrap_or(f64::NAN));
            versus.push(format!(
                "| {name}, {prompt} / {steps} | {tp:.1} ms | {prefill:.1} ms | {td:.2} ms ({:.0} tok/s) | {one:.2} ms ({:.0} tok/s) | {:.2}x |",
                1e3 / td,
                1e3 / one,
                td / one
            ));
        }
    }
    // Time to first token of a 1,000-token prompt: prefill with the head on the last position.
    let (ttft, _, _) = local(&small, "none", 1000, 0);
    println!("\ngeneration with the KV cache, batch 1, RAYON_NUM_THREADS={threads}");
    println!(
        "| model, prompt / new tokens | prefill (one process) | decode per token, one process | pipeline:3 in one process | 1 node over HTTP | pipeline:3 on 3 nodes | 3 nodes / 1 node | cache per token |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
    concurrency_table(torch.as_ref(), &threads);
    chunked_table(&threads);
    let Some(torch) = torch else {
        println!("\n(no PyTorch in this run: set MLMF_PYTORCH_PYTHON or run scripts/bench-generate.sh)");
        println!("time to first token, GPT-2-small shape, 1000-token prompt: mlmf {ttft:.0} ms");
        return;
    };
    println!("\nagainst PyTorch {} generate (same run, {} threads)", torch["torch"], torch["threads"]);
    println!(
        "| model, prompt / new tokens | PyTorch prefill | mlmf prefill | PyTorch decode per token | mlmf decode per token | mlmf tok/s / PyTorch tok/s |"
    );
    println!("|---|---|---|---|---|---|");
    for r in versus {
        println!("{r}");
    }
    let torch_ttft = torch["results"]["gpt2_small_shape/ttft_p1000"]["ttft_ms"].as_f64().unwrap_or(f64::NAN);
    println!(
        "time to first token, GPT-2-small shape, 1000-token prompt: PyTorch {torch_ttft:.0} ms, mlmf {ttft:.0} ms ({:.2}x)",
        ttft / torch_ttft
    );
}
