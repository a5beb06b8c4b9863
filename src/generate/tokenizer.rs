//! [`TextTokenizer`]: a model's HuggingFace tokenizer (`tokenizer.json`, read with the
//! `tokenizers` crate) and its special tokens, from `tokenizer_config.json`,
//! `generation_config.json` and `config.json` (later files fill what earlier ones leave
//! out): bos, eos (one or several), pad, whether a bos is prepended, and the longest input.
//! Every file's size is checked before it is read.

use std::path::{Path, PathBuf};

use serde_json::Value;
use tokenizers::Tokenizer;

use super::error::GenerateError;
use super::json_file::read_json;

/// Largest `tokenizer.json` read (the largest public vocabularies take about 20 MiB).
const MAX_TOKENIZER_BYTES: u64 = 64 << 20;
/// Largest small JSON file read (`tokenizer_config.json` with a chat template, and so on).
const MAX_CONFIG_BYTES: u64 = 4 << 20;

/// A model's tokenizer and special tokens.
pub struct TextTokenizer {
    inner: Tokenizer,
    /// Beginning-of-sequence token.
    pub bos: Option<u32>,
    /// Tokens that end a generation.
    pub eos: Vec<u32>,
    /// Padding token.
    pub pad: Option<u32>,
    /// Whether a bos is prepended to a prompt.
    pub add_bos: bool,
    /// The chat template of `tokenizer_config.json`, when it has one.
    pub chat_template: Option<String>,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer")
            .field("vocab", &self.inner.get_vocab_size(true))
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .field("pad", &self.pad)
            .field("add_bos", &self.add_bos)
            .finish()
    }
}

/// A token as `tokenizer_config.json` writes it: a string, or `{"content": ...}`.
fn token_text(v: &Value) -> Option<&str> {
    v.as_str().or_else(|| v.get("content").and_then(Value::as_str))
}

/// Token ids as `config.json` and `generation_config.json` write them: one or a list.
fn token_ids(v: &Value) -> Vec<u32> {
    match v {
        Value::Array(a) => a.iter().filter_map(Value::as_u64).filter_map(|i| u32::try_from(i).ok()).collect(),
        other => other.as_u64().and_then(|i| u32::try_from(i).ok()).into_iter().collect(),
    }
}

impl TextTokenizer {
    /// The tokenizer of the model directory `dir`; `None` when it has no `tokenizer.json`.
    pub fn load(dir: &Path) -> Result<Option<TextTokenizer>, GenerateError> {
        let path = dir.join("tokenizer.json");
        let Some(json) = read_json(&path, MAX_TOKENIZER_BYTES)? else { return Ok(None) };
        let mut inner: Tokenizer = serde_json::from_value(json)
            .map_err(|e| GenerateError::File { path: path.clone(), message: format!("not a tokenizer: {e}") })?;
        // One sequence at a time, whole: padding would enter the mean of an embedding, and
        // truncation is the caller's (at the model's or sentence-transformers' limit).
        inner.with_padding(None);
        inner
            .with_truncation(None)
            .map_err(|e| GenerateError::File { path: path.clone(), message: format!("truncation: {e}") })?;
        let cfg = read_json(&dir.join("tokenizer_config.json"), MAX_CONFIG_BYTES)?.unwrap_or(Value::Null);
        let generation = read_json(&dir.join("generation_config.json"), MAX_CONFIG_BYTES)?.unwrap_or(Value::Null);
        let model = read_json(&dir.join("config.json"), MAX_CONFIG_BYTES)?.unwrap_or(Value::Null);
        let by_name = |key: &str| cfg.get(key).and_then(token_text).and_then(|t| inner.token_to_id(t));
        let by_id = |key: &str| {
            [&generation, &model].into_iter().find_map(|v| v.get(key).map(token_ids).filter(|ids| !ids.is_empty()))
        };
        let bos = by_name("bos_token").or_else(|| by_id("bos_token_id").and_then(|v| v.first().copied()));
        let mut eos = by_id("eos_token_id").unwrap_or_default();
        if let Some(e) = by_name("eos_token")
            && !eos.contains(&e)
        {
            eos.insert(0, e);
        }
        let pad = by_name("pad_token").or_else(|| by_id("pad_token_id").and_then(|v| v.first().copied()));
        let vocab = inner.get_vocab_size(true) as u32;
        let known = |t: &u32| *t < vocab;
        Ok(Some(TextTokenizer {
            add_bos: cfg.get("add_bos_token").and_then(Value::as_bool).unwrap_or(false) && bos.is_some(),
            chat_template: cfg.get("chat_template").and_then(Value::as_str).map(str::to_string),
            bos: bos.filter(known),
            eos: eos.into_iter().filter(known).collect(),
            pad: pad.filter(known),
            inner,
        }))
    }

    /// As [`TextTokenizer::load`], an error when the directory has no tokenizer.
    pub fn require(dir: &Path) -> Result<TextTokenizer, GenerateError> {
        Self::load(dir)?.ok_or_else(|| GenerateError::NoTokenizer(PathBuf::from(dir)))
    }

    /// The ids of `text`, with the bos prepended when the model's config asks for it.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, GenerateError> {
        let enc = self.inner.encode(text, false).map_err(|e| GenerateError::Tokenize(e.to_string()))?;
        let mut ids = Vec::with_capacity(enc.len() + 1);
        if self.add_bos
            && let Some(b) = self.bos
        {
            ids.push(b);
        }
        ids.extend_from_slice(enc.get_ids());
        Ok(ids)
    }

    /// The ids of `text` exactly, nothing added (a rendered chat template holds its own special
    /// tokens, as `apply_chat_template` tokenizes it).
    pub fn encode_plain(&self, text: &str) -> Result<Vec<u32>, GenerateError> {
        let enc = self.inner.encode(text, false).map_err(|e| GenerateError::Tokenize(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// The ids of `text` with the tokenizer's own special tokens added as its post-processor
    /// says (`[CLS] … [SEP]` for BERT): how encoders and sentence-transformers take text.
    pub fn encode_with_special_tokens(&self, text: &str) -> Result<Vec<u32>, GenerateError> {
        let enc = self.inner.encode(text, true).map_err(|e| GenerateError::Tokenize(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// The text of `ids`, special tokens left out (bytes that do not form a character are
    /// U+FFFD, as HuggingFace's lossy decode writes them).
    pub fn decode(&self, ids: &[u32]) -> Result<String, GenerateError> {
        self.inner.decode(ids, true).map_err(|e| GenerateError::Tokenize(e.to_string()))
    }

    /// The text of one token, special tokens included (for `logprobs`; bytes that do not form
    /// a character alone are U+FFFD).
    pub fn token(&self, id: u32) -> String {
        self.inner.decode(&[id], false).unwrap_or_default()
    }

    /// Whether `id` ends a generation.
    pub fn is_eos(&self, id: u32) -> bool {
        self.eos.contains(&id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
    }

    #[test]
    fn the_fixtures_tokenizers_encode_the_reference_prompts() {
        for (model, bos, eos) in [("gpt2_tiny", 0, 0), ("llama_tiny", 0, 1)] {
            let t = TextTokenizer::require(&fixture(model)).unwrap();
            assert_eq!((t.bos, t.eos.first().copied(), t.add_bos), (Some(bos), Some(eos), false), "{model}");
            let refs: Value =
                serde_json::from_slice(&std::fs::read(fixture(model).join("generation.json")).unwrap()).unwrap();
            for p in refs["prompts"].as_array().unwrap() {
                let ids: Vec<u32> =
                    p["input_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
                assert_eq!(t.encode(p["prompt"].as_str().unwrap()).unwrap(), ids, "{model}");
                let new: Vec<u32> =
                    p["new_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
                assert_eq!(t.decode(&new).unwrap(), p["new_text"].as_str().unwrap(), "{model}");
            }
        }
    }

    #[test]
    fn a_directory_without_a_tokenizer_says_so() {
        assert!(TextTokenizer::load(&fixture("bert_tiny")).unwrap().is_none());
        let e = TextTokenizer::require(&fixture("bert_tiny")).unwrap_err().to_string();
        assert!(e.contains("tokenizer.json"), "{e}");
    }

    #[test]
    fn a_corrupt_tokenizer_is_an_error_naming_the_file() {
        let dir = std::env::temp_dir().join(format!("mlmf-tok-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("tokenizer.json"), b"{\"model\": 3}").unwrap();
        let e = TextTokenizer::load(&dir).unwrap_err().to_string();
        assert!(e.contains("tokenizer.json"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
