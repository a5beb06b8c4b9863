//! SmolLM2-135M-Instruct's GGUF file and its references, for the tests that use them (see
//! `tests/smollm2.rs` for the rule they check by).

use std::path::PathBuf;

use mlmf::exec::LocalRunner;
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

/// How far exact activations' logits may stray from the f32 references: an order of
/// magnitude over f32 summation-order noise through 30 blocks (measured about 1e-4), two
/// orders under what 8-bit activations move them (about 1).
const EXACT_LOGITS: f32 = 1e-2;

/// Teacher-forced and free-running checks of one case on one runner; returns the failures.
pub fn check_case(runner: &LocalRunner, name: &str, case: &Value, near_tie: f64) -> Vec<String> {
    let (prompt, expected, m) = (ids(&case["input_ids"]), ids(&case["new_ids"]), margins(case));
    let vocab = runner.layout.config.vocab_size;
    let mut failures = Vec::new();
    // Teacher-forced: one forward over the prompt and the reference continuation.
    let all: Vec<u32> = prompt.iter().chain(&expected).copied().collect();
    let logits = runner.start_generation().forward(&all).unwrap();
    let refs = reference_logits();
    let key = match name.rsplit_once(' ') {
        Some((_, i)) if name.contains("chat") => format!("c{i}"),
        Some((_, i)) => format!("p{i}"),
        None => unreachable!(),
    };
    let (top_ids, top_logits) = (&refs[&format!("{key}.top128_ids")], &refs[&format!("{key}.top128_logits")]);
    let mut worst = 0f32;
    for (k, &want) in expected.iter().enumerate() {
        let row = &logits[(prompt.len() - 1 + k) * vocab..(prompt.len() + k) * vocab];
        for j in 0..128 {
            let id = top_ids.i64[k * 128 + j] as usize;
            worst = worst.max((row[id] - top_logits.f32[k * 128 + j]).abs());
        }
        let top = top_k(row, 3);
        if m[k] >= near_tie && top[0] != want as usize {
            failures.push(format!("{name}: teacher-forced step {k}: best {} not {want} (margin {:.3})", top[0], m[k]));
        }
        if !top.contains(&(want as usize)) {
            failures.push(format!("{name}: teacher-forced step {k}: {want} not in the top 3 {top:?}"));
        }
    }
    println!("{name}: worst |logit - reference| over the reference's 128 best, every step: {worst:.4}");
    // Exact activations compute the file's weights in f32, as the references do: only the
    // order of summation differs (measured about 1e-4 on logits of magnitude ~20).
    if mlmf::model::quant_linear::activations() == mlmf_quant::Activations::Exact && worst > EXACT_LOGITS {
        failures.push(format!("{name}: logits {worst} from the reference's, over {EXACT_LOGITS}"));
    }
    // Free-running greedy, up to the first near-tie (which may flip, so it is not compared).
    let mut generation = runner.start_generation();
    let mut feed = prompt.clone();
    for (k, &want) in expected.iter().enumerate() {
        if m[k] < near_tie {
            break;
        }
        let row = generation.forward_last(&feed).unwrap();
        let best = top_k(&row, 1)[0] as u32;
        if best != want {
            failures.push(format!("{name}: greedy step {k}: {best} not {want} (margin {:.3})", m[k]));
            break;
        }
        feed = vec![best];
    }
    failures
}

/// The reference's 128 best logits of every step (`p{i}`, `c{i}`).
pub fn reference_logits() -> &'static std::collections::BTreeMap<String, super::RefTensor> {
    static REFS: std::sync::OnceLock<std::collections::BTreeMap<String, super::RefTensor>> = std::sync::OnceLock::new();
    REFS.get_or_init(|| super::read_safetensors(&fixture("smollm2_135m/references.safetensors")))
}
