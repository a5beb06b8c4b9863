//! Reading what is on disk into a model: [`ModelConfig::from_file`] / [`ModelConfig::from_json`]
//! (the registry detects the family, the family reads its keys, the config is validated),
//! [`read_config`], and [`Checkpoint::open`], which starts with the config.
//!
//! These are inherent methods of types defined in `config.rs` and `checkpoint.rs`, written
//! here because the families import those files: detecting a family from there would close an
//! import cycle through the registry.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::checkpoint::Checkpoint;
use super::config::ModelConfig;
use super::config_json::ConfigJson;
use super::error::LoadError;
use super::registry;

/// The config file is read whole; anything larger than this is not a config.
const MAX_CONFIG_BYTES: u64 = 4 << 20;

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
            return Err(LoadError::config(path, format!("{len} bytes is too large for a config")));
        }
        let text = std::fs::read(path).map_err(io)?;
        let value: Value =
            serde_json::from_slice(&text).map_err(|e| LoadError::config(path, format!("not valid JSON: {e}")))?;
        Self::from_json(&value, path)
    }

    /// Builds a config from parsed JSON; `path` only names the file in errors.
    pub fn from_json(value: &Value, path: &Path) -> Result<ModelConfig, LoadError> {
        let obj =
            value.as_object().ok_or_else(|| LoadError::config(path, "the top level is not a JSON object".into()))?;
        let json = ConfigJson::new(obj, path);
        let family = registry::detect(&json)?;
        let cfg = family.read_config(&json)?;
        cfg.validate(path, family.heads_divide_hidden(), family.token_types())?;
        Ok(cfg)
    }
}

/// Reads `DIR/config.json`.
pub fn read_config(dir: &Path) -> Result<(PathBuf, ModelConfig), LoadError> {
    let path = dir.join("config.json");
    let cfg = ModelConfig::from_file(&path)?;
    Ok((path, cfg))
}

impl Checkpoint {
    /// Reads `DIR/config.json` and the headers of every safetensors file; or, for a GGUF
    /// file or a folder holding one ([`is_gguf_model`](super::is_gguf_model)), the GGUF
    /// headers ([`Checkpoint::open_gguf`]).
    ///
    /// ```
    /// let ckpt = mlmf::model::Checkpoint::open("tests/fixtures/gpt2_tiny".as_ref()).unwrap();
    /// for t in ckpt.tensors.values() {
    ///     println!("{} {:?} {} {} B", t.name, t.shape, t.dtype.name(), t.bytes);
    /// }
    /// ```
    pub fn open(dir: &Path) -> Result<Checkpoint, LoadError> {
        if super::gguf_open::is_gguf_model(dir) {
            return Checkpoint::open_gguf(dir);
        }
        let (_, config) = read_config(dir)?;
        Checkpoint::read_headers(dir, config)
    }
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
