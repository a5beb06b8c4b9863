//! The names llama.cpp's converter gives a decoder's tensors in a GGUF file, and the names
//! `transformers` gives the same tensors, so that a GGUF checkpoint is laid out as the
//! families expect (`token_embd.weight` is `model.embed_tokens.weight`).

/// GGUF's name of a block's tensor (after `blk.N.`, before `.weight`/`.bias`) and the
/// `transformers` name of a LLaMA-shaped family's (LLaMA, Mistral, Qwen 2 and 3).
const LLAMA_BLOCK: &[(&str, &str)] = &[
    ("attn_norm", "input_layernorm"),
    ("attn_q", "self_attn.q_proj"),
    ("attn_k", "self_attn.k_proj"),
    ("attn_v", "self_attn.v_proj"),
    ("attn_output", "self_attn.o_proj"),
    ("attn_q_norm", "self_attn.q_norm"),
    ("attn_k_norm", "self_attn.k_norm"),
    ("ffn_norm", "post_attention_layernorm"),
    ("ffn_gate", "mlp.gate_proj"),
    ("ffn_up", "mlp.up_proj"),
    ("ffn_down", "mlp.down_proj"),
];

/// The tensors outside the blocks, for the same families.
const LLAMA_OUTER: &[(&str, &str)] =
    &[("token_embd", "model.embed_tokens"), ("output_norm", "model.norm"), ("output", "lm_head")];

/// The `transformers` name of a LLaMA-shaped decoder's GGUF tensor `name`, `None` for a
/// tensor it has no use for (llama.cpp's `rope_freqs`, say).
pub(crate) fn llama_like(name: &str) -> Option<String> {
    let (stem, kind) = name.rsplit_once('.')?;
    if kind != "weight" && kind != "bias" {
        return None;
    }
    if let Some(rest) = stem.strip_prefix("blk.") {
        let (i, part) = rest.split_once('.')?;
        let i: usize = i.parse().ok()?;
        let hf = LLAMA_BLOCK.iter().find(|(g, _)| *g == part)?.1;
        return Some(format!("model.layers.{i}.{hf}.{kind}"));
    }
    let hf = LLAMA_OUTER.iter().find(|(g, _)| *g == stem)?.1;
    Some(format!("{hf}.{kind}"))
}

/// Whether a `transformers` name is a block's query or key projection weight, the two that
/// llama.cpp permutes for its RoPE in LLaMA files (`q` true for the query).
pub(crate) fn rope_projection(hf_name: &str) -> Option<bool> {
    if hf_name.ends_with(".self_attn.q_proj.weight") || hf_name.ends_with(".self_attn.q_proj.bias") {
        Some(true)
    } else if hf_name.ends_with(".self_attn.k_proj.weight") || hf_name.ends_with(".self_attn.k_proj.bias") {
        Some(false)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_as_transformers_names_them() {
        assert_eq!(llama_like("token_embd.weight").unwrap(), "model.embed_tokens.weight");
        assert_eq!(llama_like("output.weight").unwrap(), "lm_head.weight");
        assert_eq!(llama_like("blk.12.attn_q.bias").unwrap(), "model.layers.12.self_attn.q_proj.bias");
        assert_eq!(llama_like("blk.0.ffn_norm.weight").unwrap(), "model.layers.0.post_attention_layernorm.weight");
        assert_eq!(llama_like("rope_freqs.weight"), None);
        assert_eq!(llama_like("blk.x.attn_q.weight"), None);
        assert_eq!(llama_like("blk.0.attn_q.scales"), None);
        assert_eq!(rope_projection("model.layers.3.self_attn.k_proj.weight"), Some(false));
        assert_eq!(rope_projection("model.layers.3.self_attn.v_proj.weight"), None);
    }
}
