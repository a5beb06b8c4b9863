//! LLaMA on burn: RMSNorm, RoPE in HF's rotate-half layout, grouped-query attention, SwiGLU
//! MLP; `nn.Linear` weights stored `[out, in]`; optional biases; tied or untied LM head.

use burn::tensor::{Device, Tensor};

use super::checkpoint::{Checkpoint, RowOrder};
use super::config::{Act, Architecture, ModelConfig, RopeConfig, RopeScaling};
use super::config_json::ConfigJson;
use super::context::ForwardContext;
use super::decoder_head::{DecoderHead, lm_head_tensor, load_lm_head};
use super::embedding_table::EmbeddingTable;
use super::error::LoadError;
use super::family::{Family, NamedShape};
use super::gguf_meta::GgufMeta;
use super::gguf_names::{llama_like, rope_projection};
use super::input::ModelInput;
use super::kv_cache::LayerKv;
use super::ops::{Linear, RmsNorm, activate, attention, split_heads};
use super::parts::{Embeddings, Head, TransformerBlock};
use super::spec::TensorSlice;
use super::weights::WeightReader;

/// The token embedding, which a tied LM head reuses.
const EMBED_TOKENS: &str = "embed_tokens.weight";

/// LLaMA: `model_type` `llama`, classes `LlamaForCausalLM`, `LlamaModel`, ...
pub(crate) struct Llama;

impl Family for Llama {
    fn arch(&self) -> Architecture {
        Architecture::Llama
    }

    fn name(&self) -> &'static str {
        "llama"
    }

    fn model_types(&self) -> &'static [&'static str] {
        &["llama"]
    }

    fn architecture_prefixes(&self) -> &'static [&'static str] {
        &["Llama"]
    }

    /// `head_dim` when given (else `hidden_size / num_attention_heads`), grouped key/value
    /// heads, RoPE parameters ([`read_rope`]), optional biases.
    fn read_config(&self, json: &ConfigJson) -> Result<ModelConfig, LoadError> {
        let hidden = json.usize(&["hidden_size"])?;
        let heads = json.usize(&["num_attention_heads"])?;
        let kv = json.usize_opt(&["num_key_value_heads"])?.unwrap_or(heads);
        let head_dim = match json.usize_opt(&["head_dim"])? {
            Some(d) => d,
            None if heads > 0 => hidden / heads,
            None => 0,
        };
        Ok(ModelConfig {
            arch: Architecture::Llama,
            vocab_size: json.usize(&["vocab_size"])?,
            hidden_size: hidden,
            num_layers: json.usize(&["num_hidden_layers"])?,
            num_heads: heads,
            num_kv_heads: kv,
            head_dim,
            intermediate_size: json.usize(&["intermediate_size"])?,
            max_positions: json.usize_opt(&["max_position_embeddings"])?.unwrap_or(2048),
            norm_eps: json.f64_or(&["rms_norm_eps"], 1e-6)?,
            act: json.act(&["hidden_act"], Act::Silu)?,
            tie_word_embeddings: json.bool_or(&["tie_word_embeddings"], false)?,
            scale_attn_weights: true,
            scale_attn_by_inverse_layer_idx: false,
            rope: Some(read_rope(json)?),
            attention_bias: json.bool_or(&["attention_bias"], false)?,
            mlp_bias: json.bool_or(&["mlp_bias"], false)?,
            type_vocab_size: 0,
        })
    }

    fn heads_divide_hidden(&self) -> bool {
        false
    }

    fn token_types(&self) -> bool {
        false
    }

    fn causal(&self) -> bool {
        true
    }

    fn lm_head_tied(&self, cfg: &ModelConfig) -> bool {
        cfg.tie_word_embeddings
    }

    /// `model.` for `LlamaForCausalLM` checkpoints, empty for `LlamaModel`.
    fn prefix(&self, ckpt: &Checkpoint) -> &'static str {
        if ckpt.tensors.contains_key("model.embed_tokens.weight") || ckpt.tensors.contains_key("model.norm.weight") {
            "model."
        } else {
            ""
        }
    }

    fn embedding_tensors(&self, cfg: &ModelConfig, p: &str) -> Vec<NamedShape> {
        vec![(format!("{p}{EMBED_TOKENS}"), vec![cfg.vocab_size, cfg.hidden_size])]
    }

    fn block_tensors(&self, cfg: &ModelConfig, p: &str, i: usize) -> Vec<NamedShape> {
        let (h, m, q, kv) = (cfg.hidden_size, cfg.intermediate_size, cfg.q_width(), cfg.kv_width());
        let b = format!("{p}layers.{i}.");
        let mut t = vec![
            (format!("{b}input_layernorm.weight"), vec![h]),
            (format!("{b}self_attn.q_proj.weight"), vec![q, h]),
            (format!("{b}self_attn.k_proj.weight"), vec![kv, h]),
            (format!("{b}self_attn.v_proj.weight"), vec![kv, h]),
            (format!("{b}self_attn.o_proj.weight"), vec![h, q]),
            (format!("{b}post_attention_layernorm.weight"), vec![h]),
            (format!("{b}mlp.gate_proj.weight"), vec![m, h]),
            (format!("{b}mlp.up_proj.weight"), vec![m, h]),
            (format!("{b}mlp.down_proj.weight"), vec![h, m]),
        ];
        if cfg.attention_bias {
            t.push((format!("{b}self_attn.q_proj.bias"), vec![q]));
            t.push((format!("{b}self_attn.k_proj.bias"), vec![kv]));
            t.push((format!("{b}self_attn.v_proj.bias"), vec![kv]));
            t.push((format!("{b}self_attn.o_proj.bias"), vec![h]));
        }
        if cfg.mlp_bias {
            t.push((format!("{b}mlp.gate_proj.bias"), vec![m]));
            t.push((format!("{b}mlp.up_proj.bias"), vec![m]));
            t.push((format!("{b}mlp.down_proj.bias"), vec![h]));
        }
        t
    }

    /// The final norm and the LM matrix, which is `embed_tokens` when tied.
    fn head_tensors(&self, ckpt: &Checkpoint, p: &str) -> Vec<NamedShape> {
        let cfg = &ckpt.config;
        vec![(format!("{p}norm.weight"), vec![cfg.hidden_size]), lm_head_tensor(cfg, p, EMBED_TOKENS)]
    }

    fn load_embeddings(&self, r: &WeightReader, cfg: &ModelConfig) -> Result<Box<dyn Embeddings>, LoadError> {
        let (h, v) = (cfg.hidden_size, cfg.vocab_size);
        Ok(Box::new(LlamaEmbeddings { table: r.embedding_table(EMBED_TOKENS, [v, h])?, hidden: h }))
    }

    fn load_block(
        &self,
        r: &WeightReader,
        cfg: &ModelConfig,
        i: usize,
        slice: TensorSlice,
    ) -> Result<Box<dyn TransformerBlock>, LoadError> {
        Ok(Box::new(load_block(r, cfg, i, slice)?))
    }

    fn load_head(&self, r: &WeightReader, cfg: &ModelConfig) -> Result<Box<dyn Head>, LoadError> {
        let lm_head = load_lm_head(r, cfg, EMBED_TOKENS)?;
        let norm = RmsNorm { weight: r.vector("norm.weight", cfg.hidden_size)?, eps: cfg.norm_eps };
        Ok(Box::new(DecoderHead { norm, lm_head }))
    }

    /// llama.cpp writes LLaMA, Mistral and SmolLM files as `llama`.
    fn gguf_architectures(&self) -> &'static [&'static str] {
        &["llama"]
    }

    fn read_gguf_config(&self, m: &GgufMeta) -> Result<ModelConfig, LoadError> {
        read_gguf_config(m)
    }

    /// llama.cpp's converter permutes the query and key rows of each head for GGML's RoPE,
    /// which rotates adjacent pairs where `transformers` rotates the two halves.
    fn gguf_tensor(&self, cfg: &ModelConfig, name: &str) -> Option<(String, RowOrder)> {
        let hf = llama_like(name)?;
        let order = match rope_projection(&hf) {
            Some(true) => RowOrder::RopePairs { heads: cfg.num_heads },
            Some(false) => RowOrder::RopePairs { heads: cfg.num_kv_heads },
            None => RowOrder::Stored,
        };
        Some((hf, order))
    }
}

/// A LLaMA config out of llama.cpp's metadata keys, with llama.cpp's defaults; the LM head is
/// tied when the file has no `output.weight`, the projections carry biases when block 0's
/// query has one.
pub(crate) fn read_gguf_config(m: &GgufMeta) -> Result<ModelConfig, LoadError> {
    let hidden = m.usize("embedding_length")?;
    let heads = m.usize("attention.head_count")?;
    let kv = m.usize_opt("attention.head_count_kv")?.unwrap_or(heads);
    let head_dim = match m.usize_opt("attention.key_length")? {
        Some(d) => d,
        None if heads > 0 => hidden / heads,
        None => 0,
    };
    let vocab = match m.usize_opt("vocab_size")? {
        Some(v) => v,
        None => match m.model().get_str_array("tokenizer.ggml.tokens")? {
            Some(tokens) => tokens.len(),
            None => m.tensor("token_embd.weight").and_then(|t| t.dims.get(1)).map_or(0, |&d| d as usize),
        },
    };
    if m.tensor("rope_freqs.weight").is_some() {
        return Err(m.error(
            "rope_freqs.weight (Llama 3.1's scaled RoPE frequencies, as llama.cpp stores them) is not supported yet"
                .into(),
        ));
    }
    let scaling = match m.str_opt("rope.scaling.type")? {
        None | Some("none") => RopeScaling::Default,
        Some("linear") => RopeScaling::Linear { factor: m.f64_or("rope.scaling.factor", 1.0)? },
        Some(other) => {
            return Err(m.error(format!("{}.rope.scaling.type {other:?} is not supported (none, linear)", m.arch())));
        }
    };
    Ok(ModelConfig {
        arch: Architecture::Llama,
        vocab_size: vocab,
        hidden_size: hidden,
        num_layers: m.usize("block_count")?,
        num_heads: heads,
        num_kv_heads: kv,
        head_dim,
        intermediate_size: m.usize("feed_forward_length")?,
        max_positions: m.usize_opt("context_length")?.unwrap_or(2048),
        norm_eps: m.f64_or("attention.layer_norm_rms_epsilon", 1e-5)?,
        act: Act::Silu,
        tie_word_embeddings: m.tensor("output.weight").is_none(),
        scale_attn_weights: true,
        scale_attn_by_inverse_layer_idx: false,
        rope: Some(RopeConfig { theta: m.f64_or("rope.freq_base", 10000.0)?, scaling }),
        attention_bias: m.tensor("blk.0.attn_q.bias").is_some(),
        mlp_bias: false,
        type_vocab_size: 0,
    })
}

/// RoPE parameters: `rope_parameters` (transformers 5) or `rope_theta` + `rope_scaling`.
pub(crate) fn read_rope(json: &ConfigJson) -> Result<RopeConfig, LoadError> {
    let params = json.find(&["rope_parameters", "rope_scaling"]).map(|(k, v)| (k, v.as_object()));
    let mut theta = json.f64_or(&["rope_theta"], 10000.0)?;
    let mut scaling = RopeScaling::Default;
    if let Some((key, obj)) = params {
        let obj = obj.ok_or_else(|| json.error(format!("{key} must be an object")))?;
        let sub = ConfigJson::new(obj, json.path());
        theta = sub.f64_or(&["rope_theta"], theta)?;
        let kind = sub
            .find(&["rope_type", "type"])
            .map(|(_, v)| v.as_str().unwrap_or("?").to_string())
            .unwrap_or_else(|| "default".into());
        scaling = match kind.as_str() {
            "default" => RopeScaling::Default,
            "linear" => RopeScaling::Linear { factor: sub.f64_or(&["factor"], 1.0)? },
            "llama3" => RopeScaling::Llama3 {
                factor: sub.f64_or(&["factor"], 8.0)?,
                low_freq_factor: sub.f64_or(&["low_freq_factor"], 1.0)?,
                high_freq_factor: sub.f64_or(&["high_freq_factor"], 4.0)?,
                original_max_position_embeddings: sub.f64_or(&["original_max_position_embeddings"], 8192.0)?,
            },
            other => {
                return Err(json.error(format!("{key}.rope_type {other:?} is not supported (default, linear, llama3)")));
            }
        };
        let factor_ok = match scaling {
            RopeScaling::Default => true,
            RopeScaling::Linear { factor } => factor.is_finite() && factor > 0.0,
            RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position_embeddings } => {
                [factor, low_freq_factor, high_freq_factor, original_max_position_embeddings]
                    .iter()
                    .all(|x| x.is_finite() && *x > 0.0)
                    && high_freq_factor != low_freq_factor
            }
        };
        if !factor_ok {
            return Err(json.error(format!("{key} has an invalid scaling factor")));
        }
    }
    Ok(RopeConfig { theta, scaling })
}

struct LlamaEmbeddings {
    table: EmbeddingTable,
    hidden: usize,
}

impl Embeddings for LlamaEmbeddings {
    fn forward(&self, input: &ModelInput, _past: usize, device: &Device) -> Tensor<3> {
        self.table.lookup(&input.input_ids, device).reshape([input.batch, input.seq_len, self.hidden])
    }
}

struct LlamaBlock {
    input_norm: RmsNorm,
    /// Columns `q_r | k_r | v_r` for this slice's query and key/value heads.
    qkv: Linear,
    o_proj: Linear,
    post_norm: RmsNorm,
    /// Columns `gate_r | up_r`.
    gate_up: Linear,
    down: Linear,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    act: Act,
}

impl TransformerBlock for LlamaBlock {
    fn attention_partial_kv(&self, x: Tensor<3>, ctx: &ForwardContext, kv: Option<&mut LayerKv>) -> Tensor<3> {
        let qkv = self.qkv.forward(self.input_norm.forward(x));
        let (qw, kw) = (self.heads * self.head_dim, self.kv_heads * self.head_dim);
        let mut q = split_heads(qkv.clone().narrow(2, 0, qw), self.heads);
        let mut k = split_heads(qkv.clone().narrow(2, qw, kw), self.kv_heads);
        let v = split_heads(qkv.narrow(2, qw + kw, kw), self.kv_heads);
        if let Some(rope) = &ctx.rope {
            q = rope.apply(q);
            k = rope.apply(k);
        }
        let (k, v) = match kv {
            Some(cache) => cache.append(k, v),
            None => (k, v),
        };
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        self.o_proj.forward(attention(q, k, v, &ctx.mask_bias, scale))
    }

    fn attention_combine(&self, x: Tensor<3>, sum: Tensor<3>) -> Tensor<3> {
        x + sum
    }

    fn mlp_partial(&self, h: Tensor<3>) -> Tensor<3> {
        let gu = self.gate_up.forward(self.post_norm.forward(h));
        let m = self.gate_up.out_features() / 2;
        let gate = gu.clone().narrow(2, 0, m);
        let up = gu.narrow(2, m, m);
        self.down.forward(activate(self.act, gate) * up)
    }

    fn mlp_combine(&self, h: Tensor<3>, sum: Tensor<3>) -> Tensor<3> {
        h + sum
    }
}

fn load_block(r: &WeightReader, cfg: &ModelConfig, i: usize, s: TensorSlice) -> Result<LlamaBlock, LoadError> {
    let (h, m, d) = (cfg.hidden_size, cfg.intermediate_size, cfg.head_dim);
    let (q, kv) = (cfg.q_width(), cfg.kv_width());
    let heads = s.part(cfg.num_heads);
    let kv_heads = s.part(cfg.num_kv_heads);
    let qr = heads.start * d..heads.end * d;
    let kvr = kv_heads.start * d..kv_heads.end * d;
    let mr = s.part(m);
    let b = format!("layers.{i}.");
    let ab = cfg.attention_bias;
    let mb = cfg.mlp_bias;
    let qkv = Linear::concat_outputs(vec![
        r.linear_out_in(&format!("{b}self_attn.q_proj"), [q, h], &[qr.clone()], &[0..h], ab)?,
        r.linear_out_in(&format!("{b}self_attn.k_proj"), [kv, h], &[kvr.clone()], &[0..h], ab)?,
        r.linear_out_in(&format!("{b}self_attn.v_proj"), [kv, h], &[kvr], &[0..h], ab)?,
    ]);
    let gate_up = Linear::concat_outputs(vec![
        r.linear_out_in(&format!("{b}mlp.gate_proj"), [m, h], &[mr.clone()], &[0..h], mb)?,
        r.linear_out_in(&format!("{b}mlp.up_proj"), [m, h], &[mr.clone()], &[0..h], mb)?,
    ]);
    Ok(LlamaBlock {
        input_norm: RmsNorm { weight: r.vector(&format!("{b}input_layernorm.weight"), h)?, eps: cfg.norm_eps },
        qkv,
        o_proj: r.linear_out_in(&format!("{b}self_attn.o_proj"), [h, q], &[0..h], &[qr], ab && s.owns_bias())?,
        post_norm: RmsNorm { weight: r.vector(&format!("{b}post_attention_layernorm.weight"), h)?, eps: cfg.norm_eps },
        gate_up,
        down: r.linear_out_in(&format!("{b}mlp.down_proj"), [h, m], &[0..h], &[mr], mb && s.owns_bias())?,
        heads: heads.len(),
        kv_heads: kv_heads.len(),
        head_dim: d,
        act: cfg.act,
    })
}
