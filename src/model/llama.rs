//! LLaMA on burn: RMSNorm, RoPE in HF's rotate-half layout, grouped-query attention, SwiGLU
//! MLP; `nn.Linear` weights stored `[out, in]`; optional biases; tied or untied LM head.

use burn::tensor::{Device, Tensor};

use super::checkpoint::{Checkpoint, MappedCheckpoint};
use super::config::{Act, ModelConfig};
use super::context::ForwardContext;
use super::error::LoadError;
use super::input::ModelInput;
use super::layout::NamedShape;
use super::ops::{Linear, RmsNorm, activate, attention, index_tensor, split_heads};
use super::parts::{Embeddings, Head, HeadOutput, TransformerBlock};
use super::spec::{StageSpec, TensorSlice};
use super::stage::StageParts;
use super::weights::WeightReader;

/// `model.` for `LlamaForCausalLM` checkpoints, empty for `LlamaModel`.
pub(crate) fn prefix(ckpt: &Checkpoint) -> &'static str {
    if ckpt.tensors.contains_key("model.embed_tokens.weight") || ckpt.tensors.contains_key("model.norm.weight") {
        "model."
    } else {
        ""
    }
}

pub(crate) fn embedding_tensors(cfg: &ModelConfig, p: &str) -> Vec<NamedShape> {
    vec![(format!("{p}embed_tokens.weight"), vec![cfg.vocab_size, cfg.hidden_size])]
}

pub(crate) fn layer_tensors(cfg: &ModelConfig, p: &str, i: usize) -> Vec<NamedShape> {
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

pub(crate) fn head_tensors(cfg: &ModelConfig, p: &str) -> Vec<NamedShape> {
    let lm = if cfg.tie_word_embeddings { format!("{p}embed_tokens.weight") } else { "lm_head.weight".to_string() };
    vec![(format!("{p}norm.weight"), vec![cfg.hidden_size]), (lm, vec![cfg.vocab_size, cfg.hidden_size])]
}

struct LlamaEmbeddings {
    table: Tensor<2>,
}

impl Embeddings for LlamaEmbeddings {
    fn forward(&self, input: &ModelInput, device: &Device) -> Tensor<3> {
        let h = self.table.dims()[1];
        self.table.clone().select(0, index_tensor(&input.input_ids, device)).reshape([input.batch, input.seq_len, h])
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
    fn attention_partial(&self, x: Tensor<3>, ctx: &ForwardContext) -> Tensor<3> {
        let qkv = self.qkv.forward(self.input_norm.forward(x));
        let (qw, kw) = (self.heads * self.head_dim, self.kv_heads * self.head_dim);
        let mut q = split_heads(qkv.clone().narrow(2, 0, qw), self.heads);
        let mut k = split_heads(qkv.clone().narrow(2, qw, kw), self.kv_heads);
        let v = split_heads(qkv.narrow(2, qw + kw, kw), self.kv_heads);
        if let Some(rope) = &ctx.rope {
            q = rope.apply(q);
            k = rope.apply(k);
        }
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

struct LlamaHead {
    norm: RmsNorm,
    lm_head: Linear,
}

impl Head for LlamaHead {
    fn forward(&self, x: Tensor<3>) -> HeadOutput {
        let last = self.norm.forward(x);
        let logits = self.lm_head.forward(last.clone());
        HeadOutput { last_hidden_state: last, logits: Some(logits), pooler_output: None }
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

pub(crate) fn load(mapped: &MappedCheckpoint, spec: &StageSpec, device: &Device) -> Result<StageParts, LoadError> {
    let ckpt = mapped.checkpoint();
    let cfg = &ckpt.config;
    let r = WeightReader { mapped, prefix: prefix(ckpt).to_string(), device };
    let (h, v) = (cfg.hidden_size, cfg.vocab_size);
    let embeddings: Option<Box<dyn Embeddings>> = if spec.embeddings {
        Some(Box::new(LlamaEmbeddings { table: r.matrix("embed_tokens.weight", [v, h])? }))
    } else {
        None
    };
    let blocks = spec
        .layers
        .clone()
        .map(|i| load_block(&r, cfg, i, spec.slice).map(|b| Box::new(b) as Box<dyn TransformerBlock>))
        .collect::<Result<Vec<_>, _>>()?;
    let head: Option<Box<dyn Head>> = if spec.head {
        let lm = if cfg.tie_word_embeddings {
            r.matrix_t("embed_tokens.weight", [v, h])?
        } else {
            WeightReader { mapped, prefix: String::new(), device }.matrix_t("lm_head.weight", [v, h])?
        };
        Some(Box::new(LlamaHead {
            norm: RmsNorm { weight: r.vector("norm.weight", h)?, eps: cfg.norm_eps },
            lm_head: Linear { weight: lm, bias: None },
        }))
    } else {
        None
    };
    Ok(StageParts { embeddings, blocks, head })
}
