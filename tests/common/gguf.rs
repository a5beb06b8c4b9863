//! GGUF files made from the `transformers` fixtures, the way llama.cpp's
//! `convert_hf_to_gguf.py` writes a LLaMA: its tensor names, dimensions innermost first, the
//! query and key rows of each head permuted for GGML's RoPE, llama.cpp's metadata keys, and
//! the tokenizer as `tokenizer.ggml.*` arrays. Matrices are stored in a type chosen by the
//! test (F32, F16 or Q8_0; a matrix whose rows are not whole Q8_0 blocks stays F32, as
//! llama.cpp's own fallback keeps it in a float type).

use std::collections::BTreeMap;
use std::path::Path;

use mlmf_gguf::{GgufWriter, MetaValue, ValueType};
use mlmf_quant::QuantType;
use serde_json::Value;

/// llama.cpp's `LlamaModel.permute`: row `h·d + s·d/2 + j` of a head moves to `h·d + 2j + s`.
fn permute(data: &[f32], rows: usize, cols: usize, heads: usize) -> Vec<f32> {
    let d = rows / heads;
    let mut out = vec![0f32; data.len()];
    for h in 0..heads {
        for s in 0..2 {
            for j in 0..d / 2 {
                let from = h * d + s * d / 2 + j;
                let to = h * d + 2 * j + s;
                out[to * cols..(to + 1) * cols].copy_from_slice(&data[from * cols..(from + 1) * cols]);
            }
        }
    }
    out
}

/// The bytes of `data` stored as `ty` (F32, F16 or Q8_0).
fn store(ty: QuantType, data: &[f32]) -> Vec<u8> {
    match ty {
        QuantType::F32 => data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        QuantType::F16 => data.iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect(),
        QuantType::Q8_0 => mlmf_quant::quantize_q8_0(data).unwrap(),
        other => panic!("the fixture writer stores F32, F16 or Q8_0, not {other}"),
    }
}

/// The GGUF name of a `transformers` LLaMA tensor.
fn gguf_name(hf: &str) -> String {
    let hf = hf.strip_prefix("model.").unwrap_or(hf);
    let outer = [("embed_tokens", "token_embd"), ("norm", "output_norm"), ("lm_head", "output")];
    let (stem, kind) = hf.rsplit_once('.').unwrap();
    if let Some(rest) = stem.strip_prefix("layers.") {
        let (i, part) = rest.split_once('.').unwrap();
        let block = [
            ("input_layernorm", "attn_norm"),
            ("self_attn.q_proj", "attn_q"),
            ("self_attn.k_proj", "attn_k"),
            ("self_attn.v_proj", "attn_v"),
            ("self_attn.o_proj", "attn_output"),
            ("post_attention_layernorm", "ffn_norm"),
            ("mlp.gate_proj", "ffn_gate"),
            ("mlp.up_proj", "ffn_up"),
            ("mlp.down_proj", "ffn_down"),
        ];
        let g = block.iter().find(|(h, _)| *h == part).unwrap_or_else(|| panic!("{hf}")).1;
        return format!("blk.{i}.{g}.{kind}");
    }
    let g = outer.iter().find(|(h, _)| *h == stem).unwrap_or_else(|| panic!("{hf}")).1;
    format!("{g}.{kind}")
}

/// A LLaMA folder of `transformers` (`config.json`, `model.safetensors`, `tokenizer.json`)
/// as one GGUF file, its matrices stored as `ty`.
pub fn llama_to_gguf(dir: &Path, ty: QuantType) -> Vec<u8> {
    convert(dir, ty, false)
}

/// As [`llama_to_gguf`], each matrix rounded to `ty`'s blocks and back, stored as F32: the
/// weights a `ty` file holds, computed in f32.
pub fn llama_to_gguf_rounded(dir: &Path, ty: QuantType) -> Vec<u8> {
    convert(dir, ty, true)
}

fn convert(dir: &Path, ty: QuantType, rounded: bool) -> Vec<u8> {
    let config: Value = serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    let u = |k: &str| MetaValue::U32(config[k].as_u64().unwrap() as u32);
    let (heads, kv) =
        (config["num_attention_heads"].as_u64().unwrap(), config["num_key_value_heads"].as_u64().unwrap());
    let theta = config["rope_parameters"]["rope_theta"].as_f64().or(config["rope_theta"].as_f64()).unwrap_or(1e4);
    let mut w = GgufWriter::new(3)
        .metadata("general.architecture", MetaValue::String("llama".into()))
        .metadata("general.name", MetaValue::String(dir.file_name().unwrap().to_string_lossy().into()))
        .metadata("llama.block_count", u("num_hidden_layers"))
        .metadata("llama.context_length", u("max_position_embeddings"))
        .metadata("llama.embedding_length", u("hidden_size"))
        .metadata("llama.feed_forward_length", u("intermediate_size"))
        .metadata("llama.attention.head_count", MetaValue::U32(heads as u32))
        .metadata("llama.attention.head_count_kv", MetaValue::U32(kv as u32))
        .metadata("llama.attention.key_length", u("head_dim"))
        .metadata("llama.attention.value_length", u("head_dim"))
        .metadata("llama.rope.freq_base", MetaValue::F32(theta as f32))
        .metadata(
            "llama.attention.layer_norm_rms_epsilon",
            MetaValue::F32(config["rms_norm_eps"].as_f64().unwrap() as f32),
        )
        .metadata("llama.vocab_size", u("vocab_size"));
    w = with_tokenizer(w, dir);
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<String> = st.names().into_iter().map(str::to_string).collect();
    names.sort();
    for name in names {
        let t = st.tensor(&name).unwrap();
        assert_eq!(t.dtype(), safetensors::Dtype::F32, "{name}");
        let mut data: Vec<f32> = t.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
        let shape = t.shape().to_vec();
        if shape.len() == 2 && name.ends_with("q_proj.weight") {
            data = permute(&data, shape[0], shape[1], heads as usize);
        } else if shape.len() == 2 && name.ends_with("k_proj.weight") {
            data = permute(&data, shape[0], shape[1], kv as usize);
        }
        let cols = *shape.last().unwrap();
        let mut this = if shape.len() == 2 && (ty != QuantType::Q8_0 || cols % 32 == 0) { ty } else { QuantType::F32 };
        if rounded && this != QuantType::F32 {
            let mut back = vec![0f32; data.len()];
            mlmf_quant::dequantize(this, &store(this, &data), &mut back).unwrap();
            (data, this) = (back, QuantType::F32);
        }
        let dims: Vec<u64> = shape.iter().rev().map(|&d| d as u64).collect();
        w = w.tensor(&gguf_name(&name), this, &dims, store(this, &data));
    }
    w.to_bytes()
}

/// The folder's `tokenizer.json` (a byte-level BPE) as llama.cpp's `gpt2` tokenizer arrays.
fn with_tokenizer(w: GgufWriter, dir: &Path) -> GgufWriter {
    let tok: Value = serde_json::from_slice(&std::fs::read(dir.join("tokenizer.json")).unwrap()).unwrap();
    let vocab: BTreeMap<u64, String> =
        tok["model"]["vocab"].as_object().unwrap().iter().map(|(t, id)| (id.as_u64().unwrap(), t.clone())).collect();
    let special: Vec<u64> = tok["added_tokens"].as_array().unwrap().iter().map(|a| a["id"].as_u64().unwrap()).collect();
    let tokens: Vec<String> = vocab.values().cloned().collect();
    let types: Vec<i64> = vocab.keys().map(|id| if special.contains(id) { 3 } else { 1 }).collect();
    let merges: Vec<String> = tok["model"]["merges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| match m {
            Value::String(s) => s.clone(),
            Value::Array(p) => format!("{} {}", p[0].as_str().unwrap(), p[1].as_str().unwrap()),
            other => panic!("merge {other}"),
        })
        .collect();
    w.metadata("tokenizer.ggml.model", MetaValue::String("gpt2".into()))
        .metadata("tokenizer.ggml.pre", MetaValue::String("gpt-2".into()))
        .metadata("tokenizer.ggml.tokens", MetaValue::StringArray(tokens))
        .metadata_array("tokenizer.ggml.token_type", ValueType::I32, MetaValue::IntArray(types))
        .metadata("tokenizer.ggml.merges", MetaValue::StringArray(merges))
        .metadata("tokenizer.ggml.bos_token_id", MetaValue::U32(0))
        .metadata("tokenizer.ggml.eos_token_id", MetaValue::U32(1))
        .metadata("tokenizer.ggml.add_bos_token", MetaValue::Bool(false))
}
