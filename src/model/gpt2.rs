//! GPT-2 on burn: learned absolute positions, pre-LN blocks, fused QKV `Conv1D` weights
//! stored `[in, out]`, tied or untied LM head.

use burn::tensor::{Device, Tensor};

use super::checkpoint::Checkpoint;
use super::config::{Act, Architecture, ModelConfig};
use super::config_json::ConfigJson;
use super::context::ForwardContext;
use super::decoder_head::{DecoderHead, lm_head_tensor, load_lm_head};
use super::error::LoadError;
use super::family::{Family, NamedShape};
use super::input::ModelInput;
use super::kv_cache::LayerKv;
use super::ops::{LayerNorm, Linear, activate, attention, index_tensor, split_heads};
use super::parts::{Embeddings, Head, TransformerBlock};
use super::spec::TensorSlice;
use super::weights::WeightReader;

/// The token embedding, which a tied LM head reuses.
const WTE: &str = "wte.weight";

/// GPT-2: `model_type` `gpt2`, classes `GPT2LMHeadModel`, `GPT2Model`, ...
pub(crate) struct Gpt2;

impl Family for Gpt2 {
    fn arch(&self) -> Architecture {
        Architecture::Gpt2
    }

    fn name(&self) -> &'static str {
        "gpt2"
    }

    fn model_types(&self) -> &'static [&'static str] {
        &["gpt2"]
    }

    fn architecture_prefixes(&self) -> &'static [&'static str] {
        &["GPT2"]
    }

    /// The older spellings (`n_embd`, `n_head`, `n_layer`, `n_positions`) or the newer ones.
    fn read_config(&self, json: &ConfigJson) -> Result<ModelConfig, LoadError> {
        let hidden = json.usize(&["n_embd", "hidden_size"])?;
        let heads = json.usize(&["n_head", "num_attention_heads"])?;
        let inner = json.usize_opt(&["n_inner", "intermediate_size"])?.unwrap_or(4 * hidden);
        Ok(ModelConfig {
            arch: Architecture::Gpt2,
            vocab_size: json.usize(&["vocab_size"])?,
            hidden_size: hidden,
            num_layers: json.usize(&["n_layer", "num_hidden_layers"])?,
            num_heads: heads,
            num_kv_heads: heads,
            head_dim: hidden.checked_div(heads).unwrap_or(0),
            intermediate_size: inner,
            max_positions: json.usize(&["n_positions", "max_position_embeddings"])?,
            norm_eps: json.f64_or(&["layer_norm_epsilon", "layer_norm_eps"], 1e-5)?,
            act: json.act(&["activation_function", "hidden_act"], Act::GeluTanh)?,
            tie_word_embeddings: json.bool_or(&["tie_word_embeddings"], true)?,
            scale_attn_weights: json.bool_or(&["scale_attn_weights"], true)?,
            scale_attn_by_inverse_layer_idx: json.bool_or(&["scale_attn_by_inverse_layer_idx"], false)?,
            rope: None,
            attention_bias: true,
            mlp_bias: true,
            type_vocab_size: 0,
        })
    }

    fn heads_divide_hidden(&self) -> bool {
        true
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

    /// `transformer.` for `GPT2LMHeadModel` checkpoints, empty for `GPT2Model`.
    fn prefix(&self, ckpt: &Checkpoint) -> &'static str {
        if ckpt.tensors.contains_key("transformer.h.0.ln_1.weight") { "transformer." } else { "" }
    }

    fn embedding_tensors(&self, cfg: &ModelConfig, p: &str) -> Vec<NamedShape> {
        vec![
            (format!("{p}{WTE}"), vec![cfg.vocab_size, cfg.hidden_size]),
            (format!("{p}wpe.weight"), vec![cfg.max_positions, cfg.hidden_size]),
        ]
    }

    fn block_tensors(&self, cfg: &ModelConfig, p: &str, i: usize) -> Vec<NamedShape> {
        let (h, m) = (cfg.hidden_size, cfg.intermediate_size);
        let b = format!("{p}h.{i}.");
        vec![
            (format!("{b}ln_1.weight"), vec![h]),
            (format!("{b}ln_1.bias"), vec![h]),
            (format!("{b}attn.c_attn.weight"), vec![h, 3 * h]),
            (format!("{b}attn.c_attn.bias"), vec![3 * h]),
            (format!("{b}attn.c_proj.weight"), vec![h, h]),
            (format!("{b}attn.c_proj.bias"), vec![h]),
            (format!("{b}ln_2.weight"), vec![h]),
            (format!("{b}ln_2.bias"), vec![h]),
            (format!("{b}mlp.c_fc.weight"), vec![h, m]),
            (format!("{b}mlp.c_fc.bias"), vec![m]),
            (format!("{b}mlp.c_proj.weight"), vec![m, h]),
            (format!("{b}mlp.c_proj.bias"), vec![h]),
        ]
    }

    /// `ln_f` and the LM matrix, which is `wte` when tied.
    fn head_tensors(&self, ckpt: &Checkpoint, p: &str) -> Vec<NamedShape> {
        let cfg = &ckpt.config;
        let h = cfg.hidden_size;
        vec![(format!("{p}ln_f.weight"), vec![h]), (format!("{p}ln_f.bias"), vec![h]), lm_head_tensor(cfg, p, WTE)]
    }

    fn load_embeddings(&self, r: &WeightReader, cfg: &ModelConfig) -> Result<Box<dyn Embeddings>, LoadError> {
        let (h, v) = (cfg.hidden_size, cfg.vocab_size);
        Ok(Box::new(Gpt2Embeddings {
            wte: r.matrix(WTE, [v, h])?,
            wpe: r.matrix("wpe.weight", [cfg.max_positions, h])?,
        }))
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
        let lm_head = load_lm_head(r, cfg, WTE)?;
        let norm = r.layer_norm("ln_f", cfg.hidden_size, cfg.norm_eps)?;
        Ok(Box::new(DecoderHead { norm, lm_head }))
    }
}

struct Gpt2Embeddings {
    wte: Tensor<2>,
    wpe: Tensor<2>,
}

impl Embeddings for Gpt2Embeddings {
    fn forward(&self, input: &ModelInput, past: usize, device: &Device) -> Tensor<3> {
        let (b, l) = (input.batch, input.seq_len);
        let h = self.wte.dims()[1];
        let tokens = self.wte.clone().select(0, index_tensor(&input.input_ids, device));
        let positions: Vec<u32> = (0..b).flat_map(|_| past as u32..(past + l) as u32).collect();
        let pos = self.wpe.clone().select(0, index_tensor(&positions, device));
        (tokens + pos).reshape([b, l, h])
    }

    fn forward_rows(&self, input: &ModelInput, pasts: &[usize], device: &Device) -> Tensor<3> {
        let (b, l) = (input.batch, input.seq_len);
        let h = self.wte.dims()[1];
        let tokens = self.wte.clone().select(0, index_tensor(&input.input_ids, device));
        let positions: Vec<u32> = pasts.iter().flat_map(|&p| p as u32..(p + l) as u32).collect();
        let pos = self.wpe.clone().select(0, index_tensor(&positions, device));
        (tokens + pos).reshape([b, l, h])
    }
}

struct Gpt2Block {
    ln_1: LayerNorm,
    /// Columns `q_r | k_r | v_r` of `c_attn` for this slice's heads.
    qkv: Linear,
    proj: Linear,
    ln_2: LayerNorm,
    fc: Linear,
    fc_proj: Linear,
    heads: usize,
    scale: f64,
    act: Act,
}

impl TransformerBlock for Gpt2Block {
    fn attention_partial_kv(&self, x: Tensor<3>, ctx: &ForwardContext, kv: Option<&mut LayerKv>) -> Tensor<3> {
        let qkv = self.qkv.forward(self.ln_1.forward(x));
        let w = self.qkv.out_features() / 3;
        let q = split_heads(qkv.clone().narrow(2, 0, w), self.heads);
        let k = split_heads(qkv.clone().narrow(2, w, w), self.heads);
        let v = split_heads(qkv.narrow(2, 2 * w, w), self.heads);
        let (k, v) = match kv {
            Some(cache) => cache.append(k, v),
            None => (k, v),
        };
        self.proj.forward(attention(q, k, v, &ctx.mask_bias, self.scale))
    }

    fn attention_combine(&self, x: Tensor<3>, sum: Tensor<3>) -> Tensor<3> {
        x + sum
    }

    fn mlp_partial(&self, h: Tensor<3>) -> Tensor<3> {
        self.fc_proj.forward(activate(self.act, self.fc.forward(self.ln_2.forward(h))))
    }

    fn mlp_combine(&self, h: Tensor<3>, sum: Tensor<3>) -> Tensor<3> {
        h + sum
    }
}

fn load_block(r: &WeightReader, cfg: &ModelConfig, i: usize, s: TensorSlice) -> Result<Gpt2Block, LoadError> {
    let (h, m, d) = (cfg.hidden_size, cfg.intermediate_size, cfg.head_dim);
    let heads = s.part(cfg.num_heads);
    let cols = heads.start * d..heads.end * d;
    let qkv_cols = [cols.clone(), h + cols.start..h + cols.end, 2 * h + cols.start..2 * h + cols.end];
    let mlp = s.part(m);
    let b = format!("h.{i}.");
    let mut scale = if cfg.scale_attn_weights { 1.0 / (d as f64).sqrt() } else { 1.0 };
    if cfg.scale_attn_by_inverse_layer_idx {
        scale /= (i + 1) as f64;
    }
    Ok(Gpt2Block {
        ln_1: r.layer_norm(&format!("{b}ln_1"), h, cfg.norm_eps)?,
        qkv: r.linear_in_out(&format!("{b}attn.c_attn"), [h, 3 * h], &[0..h], &qkv_cols, true)?,
        proj: r.linear_in_out(&format!("{b}attn.c_proj"), [h, h], &[cols], &[0..h], s.owns_bias())?,
        ln_2: r.layer_norm(&format!("{b}ln_2"), h, cfg.norm_eps)?,
        fc: r.linear_in_out(&format!("{b}mlp.c_fc"), [h, m], &[0..h], &[mlp.clone()], true)?,
        fc_proj: r.linear_in_out(&format!("{b}mlp.c_proj"), [m, h], &[mlp], &[0..h], s.owns_bias())?,
        heads: heads.len(),
        scale,
        act: cfg.act,
    })
}
