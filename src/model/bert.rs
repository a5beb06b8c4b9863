//! BERT on burn: word + position + token type embeddings with LayerNorm, post-LN encoder
//! blocks with a padding attention mask, and the tanh pooler over the first token.

use burn::tensor::{Device, Tensor};

use super::checkpoint::Checkpoint;
use super::config::{Act, Architecture, ModelConfig};
use super::config_json::ConfigJson;
use super::context::ForwardContext;
use super::error::LoadError;
use super::family::{Family, NamedShape};
use super::input::ModelInput;
use super::kv_cache::LayerKv;
use super::ops::{LayerNorm, Linear, activate, attention, index_tensor, split_heads};
use super::parts::{Embeddings, Head, HeadOutput, TransformerBlock};
use super::spec::TensorSlice;
use super::weights::WeightReader;

/// BERT: `model_type` `bert`, classes `BertModel`, `BertForMaskedLM`, ...
pub(crate) struct Bert;

impl Family for Bert {
    fn arch(&self) -> Architecture {
        Architecture::Bert
    }

    fn name(&self) -> &'static str {
        "bert"
    }

    fn model_types(&self) -> &'static [&'static str] {
        &["bert"]
    }

    fn architecture_prefixes(&self) -> &'static [&'static str] {
        &["Bert"]
    }

    /// Absolute positions only; two token types unless `type_vocab_size` says otherwise.
    fn read_config(&self, json: &ConfigJson) -> Result<ModelConfig, LoadError> {
        let hidden = json.usize(&["hidden_size"])?;
        let heads = json.usize(&["num_attention_heads"])?;
        if let Some((k, v)) = json.find(&["position_embedding_type"])
            && v.as_str() != Some("absolute")
        {
            return Err(json.error(format!("{k} = {v} is not supported (only \"absolute\")")));
        }
        Ok(ModelConfig {
            arch: Architecture::Bert,
            vocab_size: json.usize(&["vocab_size"])?,
            hidden_size: hidden,
            num_layers: json.usize(&["num_hidden_layers"])?,
            num_heads: heads,
            num_kv_heads: heads,
            head_dim: hidden.checked_div(heads).unwrap_or(0),
            intermediate_size: json.usize(&["intermediate_size"])?,
            max_positions: json.usize(&["max_position_embeddings"])?,
            norm_eps: json.f64_or(&["layer_norm_eps"], 1e-12)?,
            act: json.act(&["hidden_act"], Act::GeluExact)?,
            tie_word_embeddings: true,
            scale_attn_weights: true,
            scale_attn_by_inverse_layer_idx: false,
            rope: None,
            attention_bias: true,
            mlp_bias: true,
            type_vocab_size: json.usize_opt(&["type_vocab_size"])?.unwrap_or(2),
        })
    }

    fn heads_divide_hidden(&self) -> bool {
        true
    }

    fn token_types(&self) -> bool {
        true
    }

    fn causal(&self) -> bool {
        false
    }

    /// BERT's head is the pooler: no LM matrix (an MLM head, tied or not, is not loaded).
    fn lm_head_tied(&self, _cfg: &ModelConfig) -> bool {
        false
    }

    /// `bert.` for task-model checkpoints (`BertForMaskedLM`, ...), empty for `BertModel`.
    fn prefix(&self, ckpt: &Checkpoint) -> &'static str {
        if ckpt.tensors.contains_key("bert.embeddings.word_embeddings.weight")
            || ckpt.tensors.contains_key("bert.encoder.layer.0.attention.self.query.weight")
        {
            "bert."
        } else {
            ""
        }
    }

    fn embedding_tensors(&self, cfg: &ModelConfig, p: &str) -> Vec<NamedShape> {
        let h = cfg.hidden_size;
        vec![
            (format!("{p}embeddings.word_embeddings.weight"), vec![cfg.vocab_size, h]),
            (format!("{p}embeddings.position_embeddings.weight"), vec![cfg.max_positions, h]),
            (format!("{p}embeddings.token_type_embeddings.weight"), vec![cfg.type_vocab_size, h]),
            (format!("{p}embeddings.LayerNorm.weight"), vec![h]),
            (format!("{p}embeddings.LayerNorm.bias"), vec![h]),
        ]
    }

    fn block_tensors(&self, cfg: &ModelConfig, p: &str, i: usize) -> Vec<NamedShape> {
        let (h, m) = (cfg.hidden_size, cfg.intermediate_size);
        let b = format!("{p}encoder.layer.{i}.");
        let mut t = Vec::new();
        for (name, shape) in [
            ("attention.self.query", [h, h]),
            ("attention.self.key", [h, h]),
            ("attention.self.value", [h, h]),
            ("attention.output.dense", [h, h]),
            ("intermediate.dense", [m, h]),
            ("output.dense", [h, m]),
        ] {
            t.push((format!("{b}{name}.weight"), shape.to_vec()));
            t.push((format!("{b}{name}.bias"), vec![shape[0]]));
        }
        for ln in ["attention.output.LayerNorm", "output.LayerNorm"] {
            t.push((format!("{b}{ln}.weight"), vec![h]));
            t.push((format!("{b}{ln}.bias"), vec![h]));
        }
        t
    }

    /// The pooler's dense layer, when the checkpoint has one; else nothing.
    fn head_tensors(&self, ckpt: &Checkpoint, p: &str) -> Vec<NamedShape> {
        let h = ckpt.config.hidden_size;
        if !has_pooler(ckpt) {
            return Vec::new();
        }
        vec![(format!("{p}pooler.dense.weight"), vec![h, h]), (format!("{p}pooler.dense.bias"), vec![h])]
    }

    fn load_embeddings(&self, r: &WeightReader, cfg: &ModelConfig) -> Result<Box<dyn Embeddings>, LoadError> {
        let h = cfg.hidden_size;
        Ok(Box::new(BertEmbeddings {
            word: r.matrix("embeddings.word_embeddings.weight", [cfg.vocab_size, h])?,
            position: r.matrix("embeddings.position_embeddings.weight", [cfg.max_positions, h])?,
            token_type: r.matrix("embeddings.token_type_embeddings.weight", [cfg.type_vocab_size, h])?,
            norm: r.layer_norm("embeddings.LayerNorm", h, cfg.norm_eps)?,
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
        let h = cfg.hidden_size;
        let pooler = if has_pooler(r.mapped.checkpoint()) {
            Some(r.linear_out_in("pooler.dense", [h, h], &[0..h], &[0..h], true)?)
        } else {
            None
        };
        Ok(Box::new(BertHead { pooler }))
    }
}

/// Whether the checkpoint has a pooler.
fn has_pooler(ckpt: &Checkpoint) -> bool {
    ckpt.tensors.contains_key(&format!("{}pooler.dense.weight", Bert.prefix(ckpt)))
}

struct BertEmbeddings {
    word: Tensor<2>,
    position: Tensor<2>,
    token_type: Tensor<2>,
    norm: LayerNorm,
}

impl Embeddings for BertEmbeddings {
    fn forward(&self, input: &ModelInput, _past: usize, device: &Device) -> Tensor<3> {
        let (b, l) = (input.batch, input.seq_len);
        let h = self.word.dims()[1];
        let zeros;
        let types = match &input.token_type_ids {
            Some(t) => t.as_slice(),
            None => {
                zeros = vec![0u32; b * l];
                zeros.as_slice()
            }
        };
        let positions: Vec<u32> = (0..b).flat_map(|_| 0..l as u32).collect();
        let words = self.word.clone().select(0, index_tensor(&input.input_ids, device));
        let types = self.token_type.clone().select(0, index_tensor(types, device));
        let pos = self.position.clone().select(0, index_tensor(&positions, device));
        self.norm.forward((words + types + pos).reshape([b, l, h]))
    }
}

struct BertBlock {
    /// Columns `q_r | k_r | v_r` for this slice's heads.
    qkv: Linear,
    attn_out: Linear,
    attn_norm: LayerNorm,
    inter: Linear,
    out: Linear,
    out_norm: LayerNorm,
    heads: usize,
    head_dim: usize,
    act: Act,
}

impl TransformerBlock for BertBlock {
    /// An encoder attends over its whole input at once: it keeps no cache.
    fn attention_partial_kv(&self, x: Tensor<3>, ctx: &ForwardContext, _kv: Option<&mut LayerKv>) -> Tensor<3> {
        let qkv = self.qkv.forward(x);
        let w = self.heads * self.head_dim;
        let q = split_heads(qkv.clone().narrow(2, 0, w), self.heads);
        let k = split_heads(qkv.clone().narrow(2, w, w), self.heads);
        let v = split_heads(qkv.narrow(2, 2 * w, w), self.heads);
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        self.attn_out.forward(attention(q, k, v, &ctx.mask_bias, scale))
    }

    fn attention_combine(&self, x: Tensor<3>, sum: Tensor<3>) -> Tensor<3> {
        self.attn_norm.forward(sum + x)
    }

    fn mlp_partial(&self, h: Tensor<3>) -> Tensor<3> {
        self.out.forward(activate(self.act, self.inter.forward(h)))
    }

    fn mlp_combine(&self, h: Tensor<3>, sum: Tensor<3>) -> Tensor<3> {
        self.out_norm.forward(sum + h)
    }
}

struct BertHead {
    pooler: Option<Linear>,
}

impl Head for BertHead {
    fn forward(&self, x: Tensor<3>) -> HeadOutput {
        let pooler_output = self.pooler.as_ref().map(|dense| {
            let [b, _, h] = x.dims();
            let first = x.clone().narrow(1, 0, 1);
            dense.forward(first).tanh().reshape([b, h])
        });
        HeadOutput { last_hidden_state: x, logits: None, pooler_output }
    }
}

fn load_block(r: &WeightReader, cfg: &ModelConfig, i: usize, s: TensorSlice) -> Result<BertBlock, LoadError> {
    let (h, m, d) = (cfg.hidden_size, cfg.intermediate_size, cfg.head_dim);
    let heads = s.part(cfg.num_heads);
    let cols = heads.start * d..heads.end * d;
    let mr = s.part(m);
    let b = format!("encoder.layer.{i}.");
    let parts = ["query", "key", "value"]
        .iter()
        .map(|n| r.linear_out_in(&format!("{b}attention.self.{n}"), [h, h], &[cols.clone()], &[0..h], true))
        .collect::<Result<Vec<_>, _>>()?;
    let qkv = Linear::concat_outputs(parts);
    Ok(BertBlock {
        qkv,
        attn_out: r.linear_out_in(&format!("{b}attention.output.dense"), [h, h], &[0..h], &[cols], s.owns_bias())?,
        attn_norm: r.layer_norm(&format!("{b}attention.output.LayerNorm"), h, cfg.norm_eps)?,
        inter: r.linear_out_in(&format!("{b}intermediate.dense"), [m, h], &[mr.clone()], &[0..h], true)?,
        out: r.linear_out_in(&format!("{b}output.dense"), [h, m], &[0..h], &[mr], s.owns_bias())?,
        out_norm: r.layer_norm(&format!("{b}output.LayerNorm"), h, cfg.norm_eps)?,
        heads: heads.len(),
        head_dim: d,
        act: cfg.act,
    })
}
