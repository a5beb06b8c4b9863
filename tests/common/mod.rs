//! Shared helpers of the integration tests: the reference fixtures and tolerant comparison.
#![allow(dead_code)]

pub mod browser;
pub mod gguf;
pub mod http;
pub mod netns;
pub mod nodes;
pub mod smollm2;
pub mod tools;

use std::collections::BTreeMap;
use std::path::PathBuf;

use mlmf::exec::RunOutputs;

/// `tests/fixtures/NAME`.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// A tensor read from a reference file, as f32 (or i64 for ids).
#[derive(Debug, Clone)]
pub struct RefTensor {
    pub shape: Vec<usize>,
    pub f32: Vec<f32>,
    pub i64: Vec<i64>,
}

/// Every tensor of a safetensors file.
pub fn read_safetensors(path: &std::path::Path) -> BTreeMap<String, RefTensor> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("valid safetensors");
    st.tensors()
        .into_iter()
        .map(|(name, v)| {
            let data = v.data();
            let (f, i) = match v.dtype() {
                safetensors::Dtype::F32 => {
                    (data.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect(), Vec::new())
                }
                safetensors::Dtype::I64 => {
                    (Vec::new(), data.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect())
                }
                d => panic!("unexpected dtype {d:?}"),
            };
            (name, RefTensor { shape: v.shape().to_vec(), f32: f, i64: i })
        })
        .collect()
}

/// `(atol, rtol)` per output family from `reference.json`.
pub fn tolerances(case: &str) -> BTreeMap<String, (f32, f32)> {
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture(case).join("reference.json")).unwrap()).unwrap();
    v["tolerances"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, t)| {
            (
                k.clone(),
                (t["suggested_atol"].as_f64().unwrap() as f32, t["suggested_rtol"].as_f64().unwrap_or(1e-4) as f32),
            )
        })
        .collect()
}

/// The worst `|a - b| - (atol + rtol |b|)` over all elements; `<= 0` means within tolerance.
pub fn excess(actual: &[f32], expected: &[f32], atol: f32, rtol: f32) -> (f32, f32) {
    assert_eq!(actual.len(), expected.len());
    let mut worst = f32::NEG_INFINITY;
    let mut max_abs = 0.0f32;
    for (a, b) in actual.iter().zip(expected) {
        let d = (a - b).abs();
        if d.is_nan() {
            return (f32::INFINITY, f32::INFINITY);
        }
        max_abs = max_abs.max(d);
        worst = worst.max(d - (atol + rtol * b.abs()));
    }
    (worst, max_abs)
}

/// Compares every output of `out` against `reference[prefix + name]`; returns failure lines.
pub fn compare(
    out: &RunOutputs,
    reference: &BTreeMap<String, RefTensor>,
    prefix: &str,
    tol: &BTreeMap<String, (f32, f32)>,
    label: &str,
) -> Vec<String> {
    let mut failures = Vec::new();
    for (name, t) in &out.tensors {
        let family = name.split('.').next().unwrap();
        let (atol, rtol) = tol[family];
        let Some(r) = reference.get(&format!("{prefix}{name}")) else {
            failures.push(format!("{label}: reference has no {prefix}{name}"));
            continue;
        };
        if r.shape != t.shape {
            failures.push(format!("{label}: {name} shape {:?} != reference {:?}", t.shape, r.shape));
            continue;
        }
        let (worst, max_abs) = excess(&t.data, &r.f32, atol, rtol);
        if worst > 0.0 {
            failures.push(format!("{label}: {name} max |diff| {max_abs:e} exceeds atol {atol:e} + rtol {rtol:e}"));
        }
    }
    failures
}
