//! [`TextTokenizer`]: a model's HuggingFace tokenizer (`tokenizer.json`, read with the
//! `tokenizers` crate) and its special tokens, from `tokenizer_config.json`,
//! `generation_config.json` and `config.json` (later files fill what earlier ones leave
//! out): bos, eos (one or several), pad, whether a bos is prepended, and the longest input;
//! its chat template from `tokenizer_config.json`, else `chat_template.jinja` or
//! `chat_template.json` beside it (where transformers 5 saves it). Every file's size is checked
//! before it is read. A GGUF file's tokenizer comes from its metadata instead
//! ([`TextTokenizer::from_gguf_vocab`]).

use std::path::{Path, PathBuf};

use serde_json::Value;
use tokenizers::Tokenizer;

use super::error::GenerateError;
use super::gguf_metadata;
use super::gguf_vocab::{GgufVocab, adds_bos, build_tokenizer};
use super::json_file::{read_json, read_text};

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
    /// The chat template (`tokenizer_config.json`'s, `chat_template.jinja`, `chat_template.json`,
    /// or a GGUF file's `tokenizer.chat_template`), when there is one.
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
        if crate::model::is_gguf_model(dir) {
            return Self::from_gguf(&gguf_metadata::open(dir)?);
        }
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
        let chat_template = match cfg.get("chat_template").and_then(Value::as_str) {
            Some(t) => Some(t.to_string()),
            None => chat_template_file(dir)?,
        };
        let vocab = inner.get_vocab_size(true) as u32;
        let known = |t: &u32| *t < vocab;
        Ok(Some(TextTokenizer {
            add_bos: cfg.get("add_bos_token").and_then(Value::as_bool).unwrap_or(false) && bos.is_some(),
            chat_template,
            bos: bos.filter(known),
            eos: eos.into_iter().filter(known).collect(),
            pad: pad.filter(known),
            inner,
        }))
    }

    /// The tokenizer a GGUF model carries in its metadata (`tokenizer.ggml.*` and
    /// `tokenizer.chat_template`); `None` when it carries none.
    pub fn from_gguf(model: &mlmf_gguf::GgufModel) -> Result<Option<TextTokenizer>, GenerateError> {
        match gguf_metadata::vocab_of(model)? {
            None => Ok(None),
            Some((vocab, template)) => Self::from_gguf_vocab(&vocab, template).map(Some),
        }
    }

    /// The tokenizer a GGUF file's metadata describes, as transformers builds it
    /// ([`build_tokenizer`]): bos, eos and pad from the file's ids, the eos alone ending a
    /// generation, and a bos prepended as the file's `add_bos_token` says (absent: as
    /// transformers' class for the kind, [`adds_bos`]).
    pub fn from_gguf_vocab(v: &GgufVocab, chat_template: Option<String>) -> Result<TextTokenizer, GenerateError> {
        // `build_tokenizer` has checked every id against the vocabulary.
        Ok(TextTokenizer {
            inner: build_tokenizer(v)?,
            bos: v.bos,
            eos: v.eos.into_iter().collect(),
            pad: v.pad,
            add_bos: adds_bos(v),
            chat_template,
        })
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

/// The chat template transformers 5 saves beside `tokenizer_config.json`: `chat_template.jinja`,
/// or `chat_template.json` (`{"chat_template": "..."}`).
fn chat_template_file(dir: &Path) -> Result<Option<String>, GenerateError> {
    if let Some(template) = read_text(&dir.join("chat_template.jinja"), MAX_CONFIG_BYTES)? {
        return Ok(Some(template));
    }
    let json = read_json(&dir.join("chat_template.json"), MAX_CONFIG_BYTES)?;
    Ok(json.as_ref().and_then(|j| j.get("chat_template")).and_then(Value::as_str).map(str::to_string))
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
    fn the_chat_template_is_read_from_beside_tokenizer_config() {
        let dir = std::env::temp_dir().join(format!("mlmf-chat-template-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(fixture("gpt2_tiny").join("tokenizer.json"), dir.join("tokenizer.json")).unwrap();
        let template = |dir: &Path| TextTokenizer::require(dir).unwrap().chat_template;
        assert_eq!(template(&dir), None);
        std::fs::write(dir.join("chat_template.json"), r#"{"chat_template": "from json"}"#).unwrap();
        assert_eq!(template(&dir).as_deref(), Some("from json"));
        std::fs::write(dir.join("chat_template.jinja"), "{{ messages }}").unwrap();
        assert_eq!(template(&dir).as_deref(), Some("{{ messages }}"), "the .jinja file comes first");
        std::fs::write(dir.join("tokenizer_config.json"), r#"{"chat_template": "from config"}"#).unwrap();
        assert_eq!(template(&dir).as_deref(), Some("from config"), "tokenizer_config.json comes first");
        std::fs::write(dir.join("tokenizer_config.json"), "{}").unwrap();
        std::fs::write(dir.join("chat_template.jinja"), vec![b' '; MAX_CONFIG_BYTES as usize + 1]).unwrap();
        let e = TextTokenizer::load(&dir).unwrap_err().to_string();
        assert!(e.contains("chat_template.jinja") && e.contains("allowed"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_gguf_vocabulary_gives_its_special_tokens() {
        let tokens: Vec<String> =
            ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "h", "i", "hi"].map(String::from).into();
        let (types, merges) = ([3, 3, 3, 1, 1, 1], ["h i".to_string()]);
        let v = GgufVocab {
            model: "gpt2",
            tokens: &tokens,
            token_types: Some(&types),
            merges: Some(&merges),
            bos: Some(1),
            eos: Some(2),
            pad: Some(2),
            ..Default::default()
        };
        let t = TextTokenizer::from_gguf_vocab(&v, Some("{{ x }}".into())).unwrap();
        assert_eq!((t.bos, t.eos.as_slice(), t.pad, t.add_bos), (Some(1), &[2][..], Some(2), false));
        assert_eq!(t.encode("<|im_start|>hi<|im_end|>").unwrap(), [1, 5, 2]);
        let t = TextTokenizer::from_gguf_vocab(&GgufVocab { add_bos: Some(true), ..v }, None).unwrap();
        assert_eq!(t.encode("hi").unwrap(), [1, 5]);
        assert_eq!(t.decode(&[1, 5, 2]).unwrap(), "hi");
        let bad = GgufVocab { eos: Some(6), ..v };
        assert!(TextTokenizer::from_gguf_vocab(&bad, None).unwrap_err().to_string().contains("eos_token_id"));
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
