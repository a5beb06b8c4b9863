//! Shared by the benches: checkpoints with random weights written to a temp directory, and
//! node processes with a plain HTTP client ([`nodes`]).
#![allow(dead_code)]

pub mod nodes;

/// The median of `v` (the upper one of an even count).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

use std::path::PathBuf;

/// Deterministic pseudo-normal weights (sum of uniforms), scaled like HF's 0.02 init.
pub fn random(n: usize, seed: &mut u64) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let mut s = 0.0f32;
            for _ in 0..4 {
                *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                s += (*seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
            }
            s * 0.035
        })
        .collect()
}

/// Writes a GPT-2-small-shaped checkpoint (124 M parameters) once.
pub fn gpt2_small() -> PathBuf {
    gpt2("mlmf-bench-gpt2-small", 768, 12, 12, 50257, 1024, 4 * 768)
}

/// A micro GPT-2 about the size of a 16-256-256-16 MLP: one block 16 wide, MLP 256 wide,
/// vocabulary 16 (the model of the HTTP load benchmark).
pub fn gpt2_micro() -> PathBuf {
    gpt2("mlmf-bench-gpt2-micro", 16, 1, 1, 16, 16, 256)
}

/// Writes a GPT-2 checkpoint (hidden `h`, `l` layers, `heads`, vocab `v`, positions `p`, MLP
/// width `inner`) once under the temp dir.
pub fn gpt2(name: &str, h: usize, l: usize, heads: usize, v: usize, p: usize, inner: usize) -> PathBuf {
    let dir = std::env::temp_dir().join(name);
    if dir.join("model.safetensors").is_file() {
        return dir;
    }
    std::fs::create_dir_all(&dir).unwrap();
    let mut shapes: Vec<(String, Vec<usize>)> =
        vec![("wte.weight".into(), vec![v, h]), ("wpe.weight".into(), vec![p, h])];
    for i in 0..l {
        for (n, s) in [
            ("ln_1.weight", vec![h]),
            ("ln_1.bias", vec![h]),
            ("attn.c_attn.weight", vec![h, 3 * h]),
            ("attn.c_attn.bias", vec![3 * h]),
            ("attn.c_proj.weight", vec![h, h]),
            ("attn.c_proj.bias", vec![h]),
            ("ln_2.weight", vec![h]),
            ("ln_2.bias", vec![h]),
            ("mlp.c_fc.weight", vec![h, inner]),
            ("mlp.c_fc.bias", vec![inner]),
            ("mlp.c_proj.weight", vec![inner, h]),
            ("mlp.c_proj.bias", vec![h]),
        ] {
            shapes.push((format!("h.{i}.{n}"), s));
        }
    }
    shapes.push(("ln_f.weight".into(), vec![h]));
    shapes.push(("ln_f.bias".into(), vec![h]));
    let mut seed = 42u64;
    let data: Vec<(String, Vec<usize>, Vec<u8>)> = shapes
        .into_iter()
        .map(|(n, s)| {
            let count = s.iter().product();
            let mut vals = random(count, &mut seed);
            if n.ends_with("ln_1.weight") || n.ends_with("ln_2.weight") || n == "ln_f.weight" {
                vals.iter_mut().for_each(|x| *x += 1.0);
            }
            (n, s, vals.iter().flat_map(|x| x.to_le_bytes()).collect())
        })
        .collect();
    let views: Vec<_> = data
        .iter()
        .map(|(n, s, b)| {
            (n.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b).unwrap())
        })
        .collect();
    safetensors::serialize_to_file(views, None, &dir.join("model.safetensors")).unwrap();
    let config = serde_json::json!({
        "model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "n_embd": h, "n_layer": l, "n_head": heads, "n_inner": inner,
        "n_positions": p, "vocab_size": v, "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5,
        "tie_word_embeddings": true
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    dir
}

/// The JSON that `tests/fixtures/scripts/<script>` writes when run with `args` and `--json`,
/// by the Python of `MLMF_PYTORCH_PYTHON` (or the oracle venv `scripts/bench-generate.sh`
/// makes): PyTorch measured in the same run as the bench. `None`, said on stderr, without it.
pub fn pytorch_script(script: &str, args: &[&str]) -> Option<serde_json::Value> {
    let python = std::env::var_os("MLMF_PYTORCH_PYTHON").map(PathBuf::from).or_else(|| {
        let venv = PathBuf::from(std::env::var_os("HOME")?).join(".cache/mlmf/venv-oracle/bin/python");
        venv.is_file().then_some(venv)
    });
    let Some(python) = python else {
        eprintln!("no Python with torch (MLMF_PYTORCH_PYTHON): no same-run PyTorch comparison");
        return None;
    };
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/scripts").join(script);
    let out = std::env::temp_dir().join(format!("mlmf-bench-pytorch-{}.json", std::process::id()));
    let status = std::process::Command::new(&python).arg(&script).args(args).arg("--json").arg(&out).status();
    if !status.is_ok_and(|s| s.success()) {
        eprintln!("PyTorch bench failed ({}): no same-run comparison", python.display());
        return None;
    }
    let v = serde_json::from_slice(&std::fs::read(&out).ok()?).ok();
    let _ = std::fs::remove_file(&out);
    v
}
