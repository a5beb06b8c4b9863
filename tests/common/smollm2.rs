//! SmolLM2-135M-Instruct's GGUF file and its references, for the tests that use them (see
//! `tests/smollm2.rs` for the rule they check by).

use std::path::PathBuf;

use serde_json::Value;

use super::fixture;

/// The margin below which a step is a near-tie that 8-bit activations may flip (see above).
pub const NEAR_TIE: f64 = 0.5;

/// The GGUF file, or `None` (with a SKIPPED line) when it is not installed and not required.
pub fn smollm2() -> Option<PathBuf> {
    let path = std::env::var_os("MLMF_SMOLLM2").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
            .join(".cache/mlmf/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    });
    if path.is_file() {
        return Some(path);
    }
    if std::env::var("MLMF_REQUIRE_SMOLLM2").is_ok_and(|v| v == "1") {
        panic!("{} is required (scripts/fetch-smollm2.sh installs it)", path.display());
    }
    println!("SKIPPED: {} is not installed (scripts/fetch-smollm2.sh)", path.display());
    None
}

/// The reference cases: 5 prompts and 3 chats, each with `input_ids`, `new_ids`, `top2_margins`.
pub fn cases() -> Vec<(String, Value)> {
    let refs: Value = serde_json::from_slice(&std::fs::read(fixture("smollm2_135m/references.json")).unwrap()).unwrap();
    let mut out = Vec::new();
    for kind in ["generation", "chat"] {
        for (i, c) in refs[kind].as_array().unwrap().iter().enumerate() {
            out.push((format!("{kind} {i}"), c.clone()));
        }
    }
    out
}

pub fn ids(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

pub fn margins(v: &Value) -> Vec<f64> {
    v["top2_margins"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

/// Indices of the `k` largest values, best first.
pub fn top_k(row: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..row.len()).collect();
    idx.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
    idx.truncate(k);
    idx
}
