//! Forward latency per case: whole model vs pipeline stages vs tensor slices, on the tiny
//! reference models (seq 32) and a GPT-2-small-shaped model (12 layers, 768 wide, vocab
//! 50257, seq 128, random weights written by this benchmark). Ends with a table against
//! PyTorch's eager forward measured in the same run at the same thread count by
//! `tests/fixtures/scripts/bench.py` (when a Python with torch is there: `MLMF_PYTORCH_PYTHON`
//! or the venv `scripts/bench-generate.sh` makes; else the one-thread anchors of
//! `tests/fixtures/latency.json`, measured on another day).
//!
//! `RAYON_NUM_THREADS=1 cargo bench --bench forward` for one thread; `MLMF_DEVICE=ndarray`
//! (with `--features ndarray` or `openblas`) for the ndarray backend.

use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion};
use mlmf::exec::{LocalRunner, RunOptions};
use mlmf::model::ModelInput;

mod common;
use common::gpt2_small;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn device() -> burn::tensor::Device {
    mlmf::model::device_by_name(&std::env::var("MLMF_DEVICE").unwrap_or_else(|_| "default".into()))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn bench_model(c: &mut Criterion, group: &str, dir: &Path, seq: usize, strategies: &[&str], samples: usize) {
    let device = device();
    let mut g = c.benchmark_group(group);
    g.sample_size(samples).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));
    let vocab = mlmf::model::Checkpoint::open(dir).unwrap().config.vocab_size as u32;
    let ids: Vec<u32> = (0..seq as u32).map(|i| (i * 7919 + 13) % vocab).collect();
    let input = ModelInput::single(&ids);
    for s in strategies {
        let runner = LocalRunner::load(dir, &s.parse().unwrap(), &device).unwrap();
        g.bench_with_input(BenchmarkId::from_parameter(s), &input, |b, input| {
            b.iter(|| runner.run(input, RunOptions::default()).unwrap())
        });
    }
    g.finish();
}

/// One GPT-2-small MLP matmul, `[128, 768] x [768, 3072]`, to read the backend's GFLOP/s.
fn bench_sgemm(c: &mut Criterion) {
    use burn::tensor::{Distribution, Tensor};
    let device = device();
    let a: Tensor<2> = Tensor::random([128, 768], Distribution::Default, &device);
    let b: Tensor<2> = Tensor::random([768, 3072], Distribution::Default, &device);
    let mut g = c.benchmark_group("sgemm");
    g.sample_size(30).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    g.bench_function("128x768x3072", |bench| bench.iter(|| a.clone().matmul(b.clone()).into_data()));
    g.finish();
}

/// burn's fused attention (what the models use) against the same attention as separate
/// matmul, softmax and matmul ops, interleaved in one run, on the shapes the models meet: a
/// tiny model's forward, GPT-2-small's forward, a decode step over 128 cached positions and a
/// 256-token chunk of a 1,000-token prompt.
fn bench_attention(c: &mut Criterion) {
    use burn::tensor::{Distribution, Tensor, activation};
    let device = device();
    let mut g = c.benchmark_group("attention");
    g.sample_size(20).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    for (name, h, l, t, d) in [
        ("tiny_32", 4, 32, 32, 16),
        ("small_128", 12, 128, 128, 64),
        ("decode_128", 12, 1, 129, 64),
        ("chunk_256x1000", 12, 256, 1000, 64),
    ] {
        let q: Tensor<4> = Tensor::random([1, h, l, d], Distribution::Default, &device);
        let k: Tensor<4> = Tensor::random([1, h, t, d], Distribution::Default, &device);
        let v: Tensor<4> = Tensor::random([1, h, t, d], Distribution::Default, &device);
        let bias: Tensor<4> = Tensor::zeros([1, 1, l, t], &device);
        let scale = 1.0 / (d as f64).sqrt();
        g.bench_function(BenchmarkId::new("fused", name), |bench| {
            bench.iter(|| mlmf::model::ops::attention(q.clone(), k.clone(), v.clone(), &bias, scale).into_data())
        });
        g.bench_function(BenchmarkId::new("matmul_softmax_matmul", name), |bench| {
            bench.iter(|| {
                let scores = q.clone().matmul(k.clone().swap_dims(2, 3)) * scale + bias.clone();
                activation::softmax(scores, 3).matmul(v.clone()).swap_dims(1, 2).reshape([1, l, h * d]).into_data()
            })
        });
    }
    g.finish();
}

fn main() {
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all".into());
    // PyTorch first, while the machine is as quiet as it will be for mlmf.
    let torch = common::pytorch_script("bench.py", &["--threads", if threads == "all" { "2" } else { &threads }]);
    let mut c = Criterion::default().configure_from_args();
    bench_sgemm(&mut c);
    bench_attention(&mut c);
    let strategies = ["none", "pipeline:3", "tensor:2"];
    for case in ["gpt2_tiny", "llama_tiny", "bert_tiny"] {
        bench_model(&mut c, case, &fixtures().join(case), 32, &strategies, 30);
    }
    bench_model(&mut c, "gpt2_small_shape", &gpt2_small(), 128, &strategies, 10);
    c.final_summary();
    print_table(torch.as_ref());
}

/// Medians from criterion's estimates next to PyTorch's, measured in this run (or the old
/// one-thread anchors).
fn print_table(torch: Option<&serde_json::Value>) {
    let target = std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| PathBuf::from("target"));
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixtures().join("latency.json")).unwrap()).unwrap();
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all".into());
    let anchor = |key: &str| match torch {
        Some(t) => t["results"][key]["median_ms"].as_f64().unwrap_or(f64::NAN),
        None => saved["anchors_ms_threads1_median"][key].as_f64().unwrap_or(f64::NAN),
    };
    match torch {
        Some(t) => println!(
            "\nforward latency, median ms (threads: {threads}, device: {:?}); PyTorch {} eager at {} threads, this run",
            device(),
            t["versions"]["torch"],
            t["threads"]
        ),
        None => println!(
            "\nforward latency, median ms (threads: {threads}, device: {:?}); PyTorch: saved one-thread anchors",
            device()
        ),
    }
    println!(
        "{:<18} {:>10} {:>12} {:>10} {:>14} {:>8}",
        "model", "none", "pipeline:3", "tensor:2", "pytorch eager", "ratio"
    );
    for (case, key) in [
        ("gpt2_tiny", "gpt2_tiny/b1_seq32/eager"),
        ("llama_tiny", "llama_tiny/b1_seq32/eager"),
        ("bert_tiny", "bert_tiny/b1_seq32/eager"),
        ("gpt2_small_shape", "gpt2_small_shape/b1_seq128/eager"),
    ] {
        let median = |s: &str| -> Option<f64> {
            let p = target.join("criterion").join(case).join(s.replace(':', "_")).join("new/estimates.json");
            let v: serde_json::Value = serde_json::from_slice(&std::fs::read(p).ok()?).ok()?;
            Some(v["median"]["point_estimate"].as_f64()? / 1e6)
        };
        let cells: Vec<String> = ["none", "pipeline:3", "tensor:2"]
            .iter()
            .map(|s| median(s).map_or("-".into(), |m| format!("{m:.2}")))
            .collect();
        let torch = anchor(key);
        let ratio = median("none").map_or("-".into(), |m| format!("{:.2}x", m / torch));
        println!("{case:<18} {:>10} {:>12} {:>10} {:>14.2} {:>8}", cells[0], cells[1], cells[2], torch, ratio);
    }
    let p = target.join("criterion/sgemm/128x768x3072/new/estimates.json");
    if let Some(ns) = std::fs::read(p)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["median"]["point_estimate"].as_f64())
    {
        println!("sgemm 128x768x3072: {:.3} ms = {:.0} GFLOP/s", ns / 1e6, 2.0 * 128.0 * 768.0 * 3072.0 / ns);
    }
}
