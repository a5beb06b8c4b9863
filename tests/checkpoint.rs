//! Checkpoint reading: sharded indexes, BF16/F16 storage, tied and untied heads, name
//! prefixes, and hostile files that must give a typed error naming the file and tensor.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{compare, fixture, read_safetensors, tolerances};
use mlmf::exec::{LocalRunner, RunOptions, RunOutputs};
use mlmf::model::{Checkpoint, ModelInput};
use mlmf::plan::ShardingStrategy;

type Tensors = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

fn load_f32(path: &Path) -> Tensors {
    read_safetensors(path).into_iter().map(|(k, t)| (k, (t.shape, t.f32))).collect()
}

#[derive(Clone, Copy)]
enum Store {
    F32,
    F16,
    BF16,
}

fn encode(data: &[f32], store: Store) -> (safetensors::Dtype, Vec<u8>) {
    match store {
        Store::F32 => (safetensors::Dtype::F32, data.iter().flat_map(|v| v.to_le_bytes()).collect()),
        Store::F16 => {
            (safetensors::Dtype::F16, data.iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect())
        }
        Store::BF16 => {
            (safetensors::Dtype::BF16, data.iter().flat_map(|v| half::bf16::from_f32(*v).to_le_bytes()).collect())
        }
    }
}

fn write_file(path: &Path, tensors: &Tensors, store: Store) {
    let enc: Vec<(String, Vec<usize>, safetensors::Dtype, Vec<u8>)> = tensors
        .iter()
        .map(|(k, (s, d))| {
            let (dt, b) = encode(d, store);
            (k.clone(), s.clone(), dt, b)
        })
        .collect();
    let views: Vec<_> = enc
        .iter()
        .map(|(k, s, dt, b)| (k.clone(), safetensors::tensor::TensorView::new(*dt, s.clone(), b).unwrap()))
        .collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

/// Writes `tensors` into `dir` as one file, or as `shards` files with an index.
fn write_checkpoint(dir: &Path, config: &serde_json::Value, tensors: &Tensors, store: Store, shards: usize) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("config.json"), serde_json::to_vec_pretty(config).unwrap()).unwrap();
    if shards <= 1 {
        write_file(&dir.join("model.safetensors"), tensors, store);
        return;
    }
    let names: Vec<&String> = tensors.keys().collect();
    let per = names.len().div_ceil(shards);
    let mut weight_map = serde_json::Map::new();
    for (i, chunk) in names.chunks(per).enumerate() {
        let file = format!("model-{:05}-of-{shards:05}.safetensors", i + 1);
        let part: Tensors = chunk.iter().map(|k| ((*k).clone(), tensors[*k].clone())).collect();
        write_file(&dir.join(&file), &part, store);
        for k in chunk {
            weight_map.insert((*k).clone(), serde_json::Value::String(file.clone()));
        }
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": weight_map});
    std::fs::write(dir.join("model.safetensors.index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}

fn config(case: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(fixture(case).join("config.json")).unwrap()).unwrap()
}

fn run(dir: &Path, strategy: &str, ids: &[u32]) -> RunOutputs {
    let device = mlmf::model::default_device();
    let s: ShardingStrategy = strategy.parse().unwrap();
    let runner = LocalRunner::load(dir, &s, &device).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    runner.run(&ModelInput::single(ids), RunOptions { block_outputs: true }).unwrap()
}

fn load_err(dir: &Path) -> String {
    let device = mlmf::model::default_device();
    match LocalRunner::load(dir, &ShardingStrategy::NoSharding, &device) {
        Ok(_) => panic!("{} loaded but should not have", dir.display()),
        Err(e) => e.to_string(),
    }
}

const IDS: [u32; 7] = [811, 950, 92, 828, 382, 686, 220];

#[test]
fn half_precision_storage_in_many_files_equals_f32_of_the_same_values() {
    let tmp = tempdir();
    let tensors = load_f32(&fixture("gpt2_tiny/model.safetensors"));
    for (store, round) in [(Store::BF16, bf16_round as fn(f32) -> f32), (Store::F16, f16_round)] {
        let rounded: Tensors =
            tensors.iter().map(|(k, (s, d))| (k.clone(), (s.clone(), d.iter().map(|v| round(*v)).collect()))).collect();
        let half_dir = tmp.path().join("half");
        let f32_dir = tmp.path().join("f32");
        let _ = std::fs::remove_dir_all(&half_dir);
        let _ = std::fs::remove_dir_all(&f32_dir);
        write_checkpoint(&half_dir, &config("gpt2_tiny"), &tensors, store, 3);
        write_checkpoint(&f32_dir, &config("gpt2_tiny"), &rounded, Store::F32, 1);
        let ckpt = Checkpoint::open(&half_dir).unwrap();
        assert_eq!(ckpt.files.len(), 3);
        assert_eq!(ckpt.tensors.len(), tensors.len());
        let a = run(&half_dir, "pipeline:2", &IDS);
        let b = run(&f32_dir, "pipeline:2", &IDS);
        assert_eq!(a, b, "half-precision storage must compute exactly as f32 of the rounded values");
        // And rounding the weights really changed the outputs, so the check above can fail.
        let full = run(&fixture("gpt2_tiny"), "pipeline:2", &IDS);
        assert_ne!(a.tensors["logits"], full.tensors["logits"]);
    }
}

fn bf16_round(v: f32) -> f32 {
    half::bf16::from_f32(v).to_f32()
}
fn f16_round(v: f32) -> f32 {
    half::f16::from_f32(v).to_f32()
}

#[test]
fn untied_head_and_unprefixed_names_match_the_reference() {
    let tmp = tempdir();
    let reference = read_safetensors(&fixture("gpt2_tiny/reference.safetensors"));
    let tol = tolerances("gpt2_tiny");
    let tensors = load_f32(&fixture("gpt2_tiny/model.safetensors"));
    // GPT2Model naming (no `transformer.` prefix) with an explicit, untied lm_head equal to wte.
    let mut renamed: Tensors =
        tensors.iter().map(|(k, v)| (k.trim_start_matches("transformer.").to_string(), v.clone())).collect();
    renamed.insert("lm_head.weight".into(), renamed["wte.weight"].clone());
    let mut cfg = config("gpt2_tiny");
    cfg["tie_word_embeddings"] = false.into();
    let dir = tmp.path().join("untied");
    write_checkpoint(&dir, &cfg, &renamed, Store::F32, 2);
    let out = run(&dir, "tensor:2", &IDS);
    let failures = compare(&out, &reference, "seq7.", &tol, "untied gpt2");
    assert!(failures.is_empty(), "{failures:?}");
    // An untied config with no lm_head is an error naming the tensor.
    renamed.remove("lm_head.weight");
    let dir = tmp.path().join("untied-missing");
    write_checkpoint(&dir, &cfg, &renamed, Store::F32, 1);
    let e = load_err(&dir);
    assert!(e.contains("lm_head.weight") && e.contains("missing"), "{e}");
}

#[test]
fn llama_tied_head_equals_untied_head_with_the_same_matrix() {
    let tmp = tempdir();
    let mut tensors = load_f32(&fixture("llama_tiny/model.safetensors"));
    let lm = tensors.remove("lm_head.weight").unwrap();
    tensors.insert("model.embed_tokens.weight".into(), lm.clone());
    let mut cfg = config("llama_tiny");
    cfg["tie_word_embeddings"] = true.into();
    // Older spelling: rope_theta at the top level.
    cfg.as_object_mut().unwrap().remove("rope_parameters");
    cfg["rope_theta"] = 10000.0.into();
    let tied = tmp.path().join("tied");
    write_checkpoint(&tied, &cfg, &tensors, Store::F32, 1);
    tensors.insert("lm_head.weight".into(), lm);
    let mut cfg2 = config("llama_tiny");
    cfg2["tie_word_embeddings"] = false.into();
    let untied = tmp.path().join("untied");
    write_checkpoint(&untied, &cfg2, &tensors, Store::F32, 1);
    assert_eq!(run(&tied, "layer:2", &IDS), run(&untied, "layer:2", &IDS));
}

#[test]
fn hostile_checkpoints_give_errors_naming_file_and_tensor() {
    let tmp = tempdir();
    let src = fixture("gpt2_tiny");
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    let copy = |name: &str, data: &[u8], cfg: Option<serde_json::Value>| {
        let dir = tmp.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("model.safetensors"), data).unwrap();
        std::fs::write(
            dir.join("config.json"),
            serde_json::to_vec(&cfg.unwrap_or_else(|| config("gpt2_tiny"))).unwrap(),
        )
        .unwrap();
        dir
    };
    // Truncated file: the last tensor's data is cut short.
    let e = load_err(&copy("truncated", &bytes[..bytes.len() - 100], None));
    assert!(e.contains("model.safetensors") && e.contains("out of range"), "{e}");
    // Header length larger than the file.
    let mut long = bytes.clone();
    long[..8].copy_from_slice(&(bytes.len() as u64).to_le_bytes());
    let e = load_err(&copy("long-header", &long, None));
    assert!(e.contains("longer than the file"), "{e}");
    // Absurd header length (never allocated).
    let mut huge = bytes.clone();
    huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    let e = load_err(&copy("huge-header", &huge, None));
    assert!(e.contains("exceeds the limit"), "{e}");
    // Too short to hold a header.
    let e = load_err(&copy("tiny", &bytes[..5], None));
    assert!(e.contains("too short"), "{e}");
    // Offsets out of range and a shape that does not match its bytes.
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&bytes[8..8 + n]).unwrap().to_string();
    let with_header = |h: &str| {
        let mut out = (h.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(&bytes[8 + n..]);
        out
    };
    let mut v: serde_json::Value = serde_json::from_str(&header).unwrap();
    v["transformer.h.0.ln_1.weight"]["data_offsets"] = serde_json::json!([0, 1_000_000_000]);
    let e = load_err(&copy("offsets", &with_header(&v.to_string()), None));
    assert!(e.contains("transformer.h.0.ln_1.weight") && e.contains("out of range"), "{e}");
    let mut v: serde_json::Value = serde_json::from_str(&header).unwrap();
    v["transformer.h.0.ln_1.weight"]["shape"] = serde_json::json!([255]);
    let e = load_err(&copy("shape-bytes", &with_header(&v.to_string()), None));
    assert!(e.contains("transformer.h.0.ln_1.weight") && e.contains("does not match"), "{e}");
    let e = load_err(&copy("garbage", &with_header("{not json"), None));
    assert!(e.contains("not valid JSON"), "{e}");

    // A tensor missing, and a tensor of the wrong shape for the config.
    let tensors = load_f32(&src.join("model.safetensors"));
    let mut missing = tensors.clone();
    missing.remove("transformer.h.3.mlp.c_fc.bias");
    let dir = tmp.path().join("missing");
    write_checkpoint(&dir, &config("gpt2_tiny"), &missing, Store::F32, 1);
    let e = load_err(&dir);
    assert!(e.contains("transformer.h.3.mlp.c_fc.bias"), "{e}");
    let mut wrong = tensors.clone();
    wrong.insert("transformer.h.2.attn.c_proj.weight".into(), (vec![128, 512], vec![0.0; 128 * 512]));
    let dir = tmp.path().join("wrong-shape");
    write_checkpoint(&dir, &config("gpt2_tiny"), &wrong, Store::F32, 1);
    let e = load_err(&dir);
    assert!(e.contains("transformer.h.2.attn.c_proj.weight") && e.contains("[128, 512]"), "{e}");

    // Unknown architecture, broken config, no weights.
    let mut cfg = config("gpt2_tiny");
    cfg["model_type"] = "mamba".into();
    let e = load_err(&copy("unknown-arch", &bytes, Some(cfg)));
    assert!(e.contains("mamba") && e.contains("config.json"), "{e}");
    let dir = tmp.path().join("no-weights");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.json"), serde_json::to_vec(&config("gpt2_tiny")).unwrap()).unwrap();
    assert!(load_err(&dir).contains("no model.safetensors"));

    // An index naming a file outside the model directory.
    let dir = tmp.path().join("escape");
    write_checkpoint(&dir, &config("gpt2_tiny"), &tensors, Store::F32, 2);
    let idx = serde_json::json!({"weight_map": {"transformer.wte.weight": "../../etc/passwd.safetensors"}});
    std::fs::write(dir.join("model.safetensors.index.json"), idx.to_string()).unwrap();
    let e = load_err(&dir);
    assert!(e.contains("index.json") && e.contains("not a .safetensors file in the model directory"), "{e}");
}

#[test]
fn headers_alone_give_names_shapes_dtypes_and_sizes() {
    let ckpt = Checkpoint::open(&fixture("llama_tiny")).unwrap();
    let reference: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture("llama_tiny/reference.json")).unwrap()).unwrap();
    let listed = reference["checkpoint_tensors"].as_object().unwrap();
    assert_eq!(ckpt.tensors.len(), listed.len());
    for (name, info) in listed {
        let e = &ckpt.tensors[name];
        let shape: Vec<usize> =
            info["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
        assert_eq!(e.shape, shape, "{name}");
        assert_eq!(e.dtype.name(), "F32");
        assert_eq!(e.bytes, 4 * shape.iter().product::<usize>() as u64);
    }
}

/// A fresh directory, removed when the test ends (pass or fail).
fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("mlmf-test-checkpoint-").tempdir().unwrap()
}
