//! `config.json` of a HuggingFace checkpoint, read into one validated [`ModelConfig`].
//!
//! Both the older and the newer `transformers` spellings are accepted: `n_embd` or
//! `hidden_size`, `rope_theta` at the top level or inside `rope_parameters`, `rope_scaling`
//! or `rope_parameters` for scaled RoPE, and so on.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::config_json::ConfigJson;
use super::error::LoadError;

/// The config file is read whole; anything larger than this is not a config.
const MAX_CONFIG_BYTES: u64 = 4 << 20;
/// Bounds on sizes, so that a hostile config cannot make us allocate without limit
/// (the RoPE tables, the attention masks) before a single weight is checked.
const MAX_DIM: usize = 1 << 20;
const MAX_LAYERS: usize = 4096;
const MAX_POSITIONS: usize = 1 << 20;
const MAX_VOCAB: usize = 1 << 24;

/// The model families mlmf runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Architecture {
    /// GPT-2: learned positions, pre-LN blocks, fused QKV `Conv1D` weights stored `[in, out]`.
    Gpt2,
    /// LLaMA: RMSNorm, rotary positions (rotate-half layout), grouped-query attention, SwiGLU.
    Llama,
    /// BERT: post-LN encoder with token types, attention mask and a pooler.
    Bert,
}

impl std::fmt::Display for Architecture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Architecture::Gpt2 => "gpt2",
            Architecture::Llama => "llama",
            Architecture::Bert => "bert",
        })
    }
}

/// The element-wise activation of the MLP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Act {
    /// `x * Φ(x)` with the exact error function (`gelu`).
    GeluExact,
    /// The tanh approximation (`gelu_new`, `gelu_pytorch_tanh`).
    GeluTanh,
    /// `max(0, x)`.
    Relu,
    /// `x * sigmoid(x)` (`silu`, `swish`).
    Silu,
}

impl Act {
    /// The activation of a `transformers` name (`hidden_act`, `activation_function`).
    pub(crate) fn parse(name: &str) -> Option<Act> {
        Some(match name {
            "gelu" | "gelu_python" => Act::GeluExact,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Act::GeluTanh,
            "relu" => Act::Relu,
            "silu" | "swish" => Act::Silu,
            _ => return None,
        })
    }
}

/// How rotary frequencies are scaled.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum RopeScaling {
    /// Plain RoPE.
    Default,
    /// Positions divided by `factor`.
    Linear {
        /// The divisor.
        factor: f64,
    },
    /// Llama 3's frequency-dependent scaling.
    Llama3 {
        /// The overall scale factor.
        factor: f64,
        /// Wavelengths above `original_max_position_embeddings / low_freq_factor` are scaled.
        low_freq_factor: f64,
        /// Wavelengths below `original_max_position_embeddings / high_freq_factor` are kept.
        high_freq_factor: f64,
        /// The context length the model was trained with.
        original_max_position_embeddings: f64,
    },
}

/// Rotary position embedding parameters (LLaMA).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RopeConfig {
    /// The base `θ` of the frequencies.
    pub theta: f64,
    /// Frequency scaling.
    pub scaling: RopeScaling,
}

/// A validated model configuration, the same shape for every architecture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// The family.
    pub arch: Architecture,
    /// Number of token embeddings.
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Number of transformer blocks.
    pub num_layers: usize,
    /// Number of query heads.
    pub num_heads: usize,
    /// Number of key/value heads (equal to `num_heads` without GQA).
    pub num_kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Width of the MLP's inner layer.
    pub intermediate_size: usize,
    /// Longest sequence the model accepts.
    pub max_positions: usize,
    /// Epsilon of the LayerNorm or RMSNorm.
    pub norm_eps: f64,
    /// MLP activation.
    pub act: Act,
    /// Whether the LM head reuses the token embedding matrix.
    pub tie_word_embeddings: bool,
    /// GPT-2: divide attention scores by `sqrt(head_dim)`.
    pub scale_attn_weights: bool,
    /// GPT-2: also divide attention scores by `layer_idx + 1`.
    pub scale_attn_by_inverse_layer_idx: bool,
    /// LLaMA: rotary embedding.
    pub rope: Option<RopeConfig>,
    /// LLaMA: q/k/v/o projections carry biases.
    pub attention_bias: bool,
    /// LLaMA: gate/up/down projections carry biases.
    pub mlp_bias: bool,
    /// BERT: number of token types.
    pub type_vocab_size: usize,
}

impl ModelConfig {
    /// Reads and validates `config.json` at `path`.
    ///
    /// ```no_run
    /// let cfg = mlmf::model::ModelConfig::from_file("model/config.json".as_ref()).unwrap();
    /// println!("{} with {} layers", cfg.arch, cfg.num_layers);
    /// ```
    pub fn from_file(path: &Path) -> Result<ModelConfig, LoadError> {
        let io = |source| LoadError::Io { path: path.to_path_buf(), source };
        let len = std::fs::metadata(path).map_err(io)?.len();
        if len > MAX_CONFIG_BYTES {
            return Err(cfg_err(path, format!("{len} bytes is too large for a config")));
        }
        let text = std::fs::read(path).map_err(io)?;
        let value: Value = serde_json::from_slice(&text).map_err(|e| cfg_err(path, format!("not valid JSON: {e}")))?;
        Self::from_json(&value, path)
    }

    /// Builds a config from parsed JSON; `path` only names the file in errors.
    pub fn from_json(value: &Value, path: &Path) -> Result<ModelConfig, LoadError> {
        let obj = value.as_object().ok_or_else(|| cfg_err(path, "the top level is not a JSON object".into()))?;
        let json = ConfigJson::new(obj, path);
        let arch = detect_arch(obj, path)?;
        let cfg = match arch {
            Architecture::Gpt2 => read_gpt2(&json)?,
            Architecture::Llama => read_llama(&json)?,
            Architecture::Bert => read_bert(&json)?,
        };
        cfg.validate(path)?;
        Ok(cfg)
    }

    /// Width of the query projection (`num_heads * head_dim`).
    pub fn q_width(&self) -> usize {
        self.num_heads * self.head_dim
    }

    /// Width of the key and value projections (`num_kv_heads * head_dim`).
    pub fn kv_width(&self) -> usize {
        self.num_kv_heads * self.head_dim
    }

    fn validate(&self, path: &Path) -> Result<(), LoadError> {
        let checks: [(&str, usize, usize); 8] = [
            ("vocab_size", self.vocab_size, MAX_VOCAB),
            ("hidden_size", self.hidden_size, MAX_DIM),
            ("num_hidden_layers", self.num_layers, MAX_LAYERS),
            ("num_attention_heads", self.num_heads, MAX_DIM),
            ("num_key_value_heads", self.num_kv_heads, MAX_DIM),
            ("head_dim", self.head_dim, MAX_DIM),
            ("intermediate_size", self.intermediate_size, MAX_DIM),
            ("max_position_embeddings", self.max_positions, MAX_POSITIONS),
        ];
        for (key, v, max) in checks {
            if v == 0 || v > max {
                return Err(cfg_err(path, format!("{key} = {v} is out of range 1..={max}")));
            }
        }
        if !self.num_heads.is_multiple_of(self.num_kv_heads) {
            return Err(cfg_err(
                path,
                format!(
                    "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                    self.num_heads, self.num_kv_heads
                ),
            ));
        }
        if self.arch != Architecture::Llama && self.q_width() != self.hidden_size {
            return Err(cfg_err(
                path,
                format!("hidden size {} is not divisible by {} attention heads", self.hidden_size, self.num_heads),
            ));
        }
        if self.arch == Architecture::Llama && !self.head_dim.is_multiple_of(2) {
            return Err(cfg_err(path, format!("head_dim {} must be even for RoPE", self.head_dim)));
        }
        if !(self.norm_eps.is_finite() && self.norm_eps >= 0.0) {
            return Err(cfg_err(path, format!("norm epsilon {} is not a finite non-negative number", self.norm_eps)));
        }
        if let Some(rope) = &self.rope
            && !(rope.theta.is_finite() && rope.theta > 1.0)
        {
            return Err(cfg_err(path, format!("rope_theta {} must be a finite number above 1", rope.theta)));
        }
        if self.arch == Architecture::Bert && self.type_vocab_size == 0 {
            return Err(cfg_err(path, "type_vocab_size must be at least 1".into()));
        }
        Ok(())
    }
}

fn cfg_err(path: &Path, message: String) -> LoadError {
    LoadError::config(path, message)
}

fn detect_arch(obj: &Map<String, Value>, path: &Path) -> Result<Architecture, LoadError> {
    let unknown = |name: String| LoadError::UnknownArchitecture { path: path.to_path_buf(), name };
    if let Some(mt) = obj.get("model_type") {
        let mt = mt.as_str().ok_or_else(|| cfg_err(path, "model_type is not a string".into()))?;
        return match mt {
            "gpt2" => Ok(Architecture::Gpt2),
            "llama" => Ok(Architecture::Llama),
            "bert" => Ok(Architecture::Bert),
            other => Err(unknown(other.to_string())),
        };
    }
    let first = obj
        .get("architectures")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .and_then(Value::as_str)
        .ok_or_else(|| cfg_err(path, "neither model_type nor architectures is given".into()))?;
    if first.starts_with("GPT2") {
        Ok(Architecture::Gpt2)
    } else if first.starts_with("Llama") {
        Ok(Architecture::Llama)
    } else if first.starts_with("Bert") {
        Ok(Architecture::Bert)
    } else {
        Err(unknown(first.to_string()))
    }
}

fn read_gpt2(json: &ConfigJson) -> Result<ModelConfig, LoadError> {
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

fn read_llama(json: &ConfigJson) -> Result<ModelConfig, LoadError> {
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

/// RoPE parameters: `rope_parameters` (transformers 5) or `rope_theta` + `rope_scaling`.
fn read_rope(json: &ConfigJson) -> Result<RopeConfig, LoadError> {
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

fn read_bert(json: &ConfigJson) -> Result<ModelConfig, LoadError> {
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

/// Reads `DIR/config.json`.
pub fn read_config(dir: &Path) -> Result<(PathBuf, ModelConfig), LoadError> {
    let path = dir.join("config.json");
    let cfg = ModelConfig::from_file(&path)?;
    Ok((path, cfg))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<ModelConfig, LoadError> {
        ModelConfig::from_json(&v, Path::new("config.json"))
    }

    #[test]
    fn llama_rope_theta_in_either_place() {
        let base = json!({"model_type":"llama","hidden_size":64,"num_attention_heads":4,"num_hidden_layers":2,
            "intermediate_size":128,"vocab_size":100});
        let mut a = base.clone();
        a["rope_theta"] = json!(500000.0);
        assert_eq!(parse(a).unwrap().rope.unwrap().theta, 500000.0);
        let mut b = base.clone();
        b["rope_parameters"] = json!({"rope_theta": 250000.0, "rope_type": "default"});
        assert_eq!(parse(b).unwrap().rope.unwrap().theta, 250000.0);
        let c = parse(base).unwrap();
        assert_eq!(c.rope.unwrap().theta, 10000.0);
        assert_eq!(c.num_kv_heads, 4);
        assert_eq!(c.head_dim, 16);
        assert!(!c.tie_word_embeddings);
    }

    #[test]
    fn unknown_architecture_is_named() {
        let e = parse(json!({"model_type":"t5"})).unwrap_err();
        assert!(e.to_string().contains("t5"), "{e}");
        let e = parse(json!({"architectures":["MambaForCausalLM"]})).unwrap_err();
        assert!(e.to_string().contains("Mamba"), "{e}");
    }

    #[test]
    fn bad_values_name_the_key() {
        let e = parse(json!({"model_type":"gpt2","n_embd":"wide"})).unwrap_err();
        assert!(e.to_string().contains("n_embd"), "{e}");
        let e = parse(json!({"model_type":"gpt2","n_embd":64,"n_head":3,"n_layer":1,"n_positions":8,"vocab_size":10}))
            .unwrap_err();
        assert!(e.to_string().contains("divisible"), "{e}");
        let e = parse(json!({"model_type":"llama","hidden_size":64,"num_attention_heads":4,"num_key_value_heads":3,
            "num_hidden_layers":2,"intermediate_size":128,"vocab_size":100}))
        .unwrap_err();
        assert!(e.to_string().contains("num_key_value_heads"), "{e}");
        let e =
            parse(json!({"model_type":"bert","hidden_size":64,"num_attention_heads":4,"num_hidden_layers":99999999,
            "intermediate_size":128,"vocab_size":100,"max_position_embeddings":16}))
            .unwrap_err();
        assert!(e.to_string().contains("num_hidden_layers"), "{e}");
    }
}
