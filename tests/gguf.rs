//! GGUF checkpoints: the LLaMA fixture written as llama.cpp's converter writes it (tensor
//! names, dimensions innermost first, the query and key rows permuted for GGML's RoPE,
//! llama.cpp's metadata keys, the tokenizer as `tokenizer.ggml.*` arrays) computes what
//! `transformers` computed from the safetensors, through every split; kept as Q8_0 blocks it
//! stays within the error its 8-bit blocks allow; and broken files give typed errors naming
//! the file and the tensor.

mod common;

use std::path::{Path, PathBuf};

use common::gguf::{llama_to_gguf, llama_to_gguf_rounded};
use common::{compare, fixture, read_safetensors, tolerances};
use mlmf::exec::{LocalRunner, RunOptions};
use mlmf::model::{Checkpoint, ModelInput};
use mlmf::plan::ShardingStrategy;
use mlmf_quant::QuantType;

fn write_gguf(tag: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mlmf-gguf-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("llama_tiny.gguf");
    std::fs::write(&path, bytes).unwrap();
    path
}

fn strategies() -> Vec<ShardingStrategy> {
    vec![
        ShardingStrategy::NoSharding,
        ShardingStrategy::LayerSharding { layers_per_shard: 2 },
        ShardingStrategy::PipelineSharding { num_stages: 3 },
        ShardingStrategy::TensorSharding { degree: 2 },
    ]
}

/// Runs the reference inputs through `path` under every strategy; the failures.
fn run_references(path: &Path, tol: &std::collections::BTreeMap<String, (f32, f32)>) -> Vec<String> {
    let reference = read_safetensors(&fixture("llama_tiny").join("reference.safetensors"));
    let device = mlmf::model::default_device();
    let mut failures = Vec::new();
    for strategy in strategies() {
        let runner = LocalRunner::load(path, &strategy, &device).unwrap_or_else(|e| panic!("{strategy}: {e}"));
        for l in [1, 7, 32] {
            let ids: Vec<u32> = reference[&format!("seq{l}.input_ids")].i64.iter().map(|&i| i as u32).collect();
            let out = runner.run(&ModelInput::single(&ids), RunOptions { block_outputs: true }).unwrap();
            failures.extend(compare(&out, &reference, &format!("seq{l}."), tol, &format!("{strategy} seq{l}")));
        }
    }
    failures
}

/// F32 in a GGUF file is the safetensors' f32: the outputs are `transformers`' within the
/// reference's own tolerances (the same f32 computation; only the file differs).
#[test]
fn an_f32_gguf_matches_the_transformers_references_through_every_split() {
    let path = write_gguf("f32", &llama_to_gguf(&fixture("llama_tiny"), QuantType::F32));
    let ckpt = Checkpoint::open(&path).unwrap();
    let st = Checkpoint::open(&fixture("llama_tiny")).unwrap();
    // llama.cpp stores the epsilon as an f32 (1e-6 reads back as 9.99999997e-7).
    assert_eq!(ckpt.config.norm_eps as f32, st.config.norm_eps as f32);
    let config = mlmf::model::ModelConfig { norm_eps: st.config.norm_eps, ..ckpt.config.clone() };
    assert_eq!(config, st.config, "the config read from llama.cpp's keys");
    assert_eq!(ckpt.tensors.keys().collect::<Vec<_>>(), st.tensors.keys().collect::<Vec<_>>());
    let failures = run_references(&path, &tolerances("llama_tiny"));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // A folder holding the one file opens the same.
    let from_dir = Checkpoint::open(path.parent().unwrap()).unwrap();
    assert_eq!(from_dir.config, ckpt.config);
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
}

/// F16 storage rounds each weight to 11 significant bits (relative error 2^-11 ≈ 4.9e-4).
/// This random model amplifies such rounding along the sequence (measured: 3.5e-2 at the
/// last block of the 32-token input, outputs of std ≈ 1); 0.1 absolute bounds it, while a
/// misplaced row or head moves outputs by whole units.
#[test]
fn an_f16_gguf_stays_within_half_precision_of_the_references() {
    let path = write_gguf("f16", &llama_to_gguf(&fixture("llama_tiny"), QuantType::F16));
    let mut tol = tolerances("llama_tiny");
    for v in tol.values_mut() {
        *v = (0.1, 1e-2);
    }
    let failures = run_references(&path, &tol);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
}

/// Q8_0 blocks computed as stored (activations quantized to 8 bits per 32, integer dot
/// products) against the same weights dequantized to f32 and computed in f32, which the F32
/// test ties to `transformers`: the two differ only by the activations' rounding (half a
/// step of max|x|/127 per element, at each of the six products of a block). This random
/// model amplifies rounding along its depth and sequence (F16 weights, 8 times finer, moved
/// it by 3.5e-2 above), so the bound is coarse: measured worst 0.97 on outputs of std ≈ 1 at
/// the last block of the 32-token input, bound 1.5; the first block of one token, before any
/// amplification, measured 0.023, bound 0.05. The products themselves are held to a derived
/// bound in `mlmf-quant`'s tests, and the real model's numerics in `tests/smollm2.rs`.
#[test]
fn a_q8_0_gguf_computed_in_blocks_equals_its_weights_in_f32_within_activation_rounding() {
    let q8 = write_gguf("q8", &llama_to_gguf(&fixture("llama_tiny"), QuantType::Q8_0));
    let f32 = write_gguf("q8f32", &llama_to_gguf_rounded(&fixture("llama_tiny"), QuantType::Q8_0));
    let ckpt = Checkpoint::open(&q8).unwrap();
    assert_eq!(ckpt.tensors["model.layers.0.self_attn.q_proj.weight"].dtype.name(), "Q8_0");
    assert_eq!(
        ckpt.tensors["model.layers.0.mlp.down_proj.weight"].dtype.name(),
        "F32",
        "688 columns: not whole blocks"
    );
    // The file's bytes, not an f32 expansion, are what placement counts.
    assert!(ckpt.total_bytes() < Checkpoint::open(&fixture("llama_tiny")).unwrap().total_bytes() / 2);
    let reference = read_safetensors(&fixture("llama_tiny").join("reference.safetensors"));
    let device = mlmf::model::default_device();
    let mut worst = 0f32;
    for strategy in strategies() {
        let quant = LocalRunner::load(&q8, &strategy, &device).unwrap();
        let dense = LocalRunner::load(&f32, &strategy, &device).unwrap();
        for l in [1, 7, 32] {
            let ids: Vec<u32> = reference[&format!("seq{l}.input_ids")].i64.iter().map(|&i| i as u32).collect();
            let a = quant.run(&ModelInput::single(&ids), RunOptions { block_outputs: true }).unwrap();
            let b = dense.run(&ModelInput::single(&ids), RunOptions { block_outputs: true }).unwrap();
            for (name, t) in &a.tensors {
                let (_, max_abs) = common::excess(&t.data, &b.tensors[name].data, 0.0, 0.0);
                let bound = if l == 1 && name == "block_output.0" { 5e-2 } else { 1.5 };
                assert!(max_abs <= bound, "{strategy} seq{l} {name}: {max_abs}");
                worst = worst.max(max_abs);
            }
        }
    }
    println!("Q8_0 in blocks vs its weights in f32: worst |diff| {worst:e}");
    for p in [q8, f32] {
        std::fs::remove_dir_all(p.parent().unwrap()).unwrap();
    }
}

/// The tokenizer of the file equals the folder's `tokenizer.json` on every text.
#[test]
fn the_gguf_tokenizer_equals_the_folders() {
    let path = write_gguf("tok", &llama_to_gguf(&fixture("llama_tiny"), QuantType::F32));
    let from_gguf = mlmf::generate::TextTokenizer::require(&path).unwrap();
    let from_json = mlmf::generate::TextTokenizer::require(&fixture("llama_tiny")).unwrap();
    for text in ["Hello world", "  two  spaces", "naïve café, 東京 🙂", "fn main() { println!(\"x\"); }", "\n\n\t"]
    {
        assert_eq!(from_gguf.encode_plain(text).unwrap(), from_json.encode_plain(text).unwrap(), "{text:?}");
    }
    assert_eq!(from_gguf.eos, vec![1]);
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
}

/// Broken files: each a typed error naming the file (and the tensor where there is one),
/// never a panic.
#[test]
fn broken_gguf_files_give_errors_naming_file_and_tensor() {
    let good = llama_to_gguf(&fixture("llama_tiny"), QuantType::Q8_0);
    let path = write_gguf("broken", &good);
    let name = path.display().to_string();
    let err = |bytes: &[u8]| {
        std::fs::write(&path, bytes).unwrap();
        Checkpoint::open(&path).map(|_| ()).unwrap_err().to_string()
    };
    // Truncated inside the data: the last tensor lies past the end.
    let e = err(&good[..good.len() - 100]);
    assert!(e.contains(&name) && (e.contains("blk.") || e.contains("output")), "{e}");
    // Bad magic.
    let mut bad = good.clone();
    bad[0] = b'X';
    let e = err(&bad);
    assert!(e.contains(&name) && e.contains("not a GGUF file"), "{e}");
    // Cut in the header.
    let e = err(&good[..40]);
    assert!(e.contains(&name), "{e}");
    // An architecture mlmf does not read from GGUF.
    let mut other = good.clone();
    let at = other.windows(5).position(|w| w == b"llama").unwrap();
    other[at..at + 5].copy_from_slice(b"mamba");
    let e = err(&other);
    assert!(e.contains("mamba"), "{e}");
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
}
