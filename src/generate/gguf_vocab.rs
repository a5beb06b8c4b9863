//! [`build_tokenizer`]: a HuggingFace [`Tokenizer`] from a GGUF file's tokenizer metadata
//! (`tokenizer.ggml.*`), shaped as `transformers` shapes it when it loads a GGUF
//! (`AutoTokenizer.from_pretrained(dir, gguf_file=...)`: its `integrations/gguf` tokenizer
//! mapping, the `LlamaTokenizer`, `GemmaTokenizer` and `GPT2Tokenizer` it hands the vocabulary
//! to, and `generate_merges`), so that both give the same ids.
//!
//! `tokenizer.ggml.model` decides the shape:
//! - `gpt2`: byte-level BPE, GPT-2's `ByteLevel` pre-tokenizer and decoder. The vocabulary is
//!   keyed as the merges spell it (a token not written in GPT-2's byte alphabet is respelled).
//!   `tokenizer.ggml.pre` picks the split regex for the names transformers lists (Llama 3,
//!   Qwen 2, Qwen 3.5, Tekken, GPT-4o); every other name, `smollm` and `default` included,
//!   keeps GPT-2's. `add_space_prefix` is not read, as transformers' `GPT2Tokenizer` does not.
//! - `llama`: SentencePiece BPE with byte fallback (`<0x41>`): `Metaspace` writes spaces as `▁`
//!   and puts one before the text unless `add_space_prefix` is false; the merges are the file's
//!   or, when it has none, derived from the vocabulary and ordered by score. A vocabulary that
//!   writes a run of spaces as spaces is Gemma's: those tokens are respelled with `▁`, merges
//!   are ordered by position, and a normalizer turns spaces into `▁` with no prefix.
//!
//! Control tokens (type 3) and the bos, eos, unk and pad tokens are special added tokens.
//! Verified: the `gpt2` shape, id for id against transformers 5.24 on a real file
//! (SmolLM2-135M-Instruct, pre `smollm`). Not verified: the `llama` and Gemma shapes, written
//! from transformers' source and tested only on made-up vocabularies (no SentencePiece GGUF was
//! at hand); Phi-3, which transformers tells apart by architecture, is built as plain `llama`.

use std::collections::{HashMap, HashSet};

use serde_json::{Value, json};
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::{BPE, Merges, Vocab};
use tokenizers::normalizers::replace::Replace;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::pre_tokenizers::sequence::Sequence as PreTokenizerSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{
    AddedToken, DecoderWrapper, Model, PostProcessorWrapper, PreTokenizerWrapper, SplitDelimiterBehavior, Tokenizer,
};

use super::error::GenerateError;

/// A GGUF file's tokenizer metadata (`tokenizer.ggml.*`), borrowed. `Default` is empty: fill in
/// what the file states (`GgufVocab { model, tokens, ..Default::default() }`).
#[derive(Debug, Clone, Copy, Default)]
pub struct GgufVocab<'a> {
    /// `tokenizer.ggml.model`: `gpt2` (byte-level BPE) or `llama` (SentencePiece BPE with
    /// scores and byte fallback); any other is an error naming it.
    pub model: &'a str,
    /// `tokenizer.ggml.pre`, llama.cpp's name for the pre-tokenizer (`smollm`, `llama-bpe`, `qwen2`).
    pub pre: Option<&'a str>,
    /// `tokenizer.ggml.tokens`, by id.
    pub tokens: &'a [String],
    /// `tokenizer.ggml.token_type`: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte.
    pub token_types: Option<&'a [i64]>,
    /// `tokenizer.ggml.scores`, by id (what orders derived merges).
    pub scores: Option<&'a [f64]>,
    /// `tokenizer.ggml.merges`, each two tokens and one space (`"a b"`), highest priority first.
    pub merges: Option<&'a [String]>,
    /// `tokenizer.ggml.bos_token_id`.
    pub bos: Option<u32>,
    /// `tokenizer.ggml.eos_token_id`.
    pub eos: Option<u32>,
    /// `tokenizer.ggml.unknown_token_id`.
    pub unk: Option<u32>,
    /// `tokenizer.ggml.padding_token_id`.
    pub pad: Option<u32>,
    /// `tokenizer.ggml.add_bos_token`.
    pub add_bos: Option<bool>,
    /// `tokenizer.ggml.add_eos_token`.
    pub add_eos: Option<bool>,
    /// `tokenizer.ggml.add_space_prefix`.
    pub add_space_prefix: Option<bool>,
}

/// `LLAMA_TOKEN_TYPE_CONTROL`.
const CONTROL: i64 = 3;
/// Tokens longer than this (in characters) give no derived merges: deriving costs the square of
/// a token's length, and no SentencePiece vocabulary has pieces this long.
const MAX_DERIVED_CHARS: usize = 256;

/// The error for metadata key `key`.
fn invalid(key: &'static str, message: impl Into<String>) -> GenerateError {
    GenerateError::Vocab { key, message: message.into() }
}

/// `invalid(key, e)` for a `tokenizers` error `e`.
fn from(key: &'static str) -> impl FnOnce(tokenizers::Error) -> GenerateError {
    move |e| invalid(key, e.to_string())
}

/// The tokenizer `v` describes, after checking its lengths and ids (a hostile file's ids out of
/// range, lengths that disagree or merges naming unknown tokens are errors, never a panic).
///
/// ```
/// use mlmf::generate::gguf_vocab::{GgufVocab, build_tokenizer};
/// let (tokens, merges) = (["h", "i", "hi"].map(String::from), ["h i".to_string()]);
/// let v = GgufVocab { model: "gpt2", tokens: &tokens, merges: Some(&merges), ..Default::default() };
/// assert_eq!(build_tokenizer(&v).unwrap().encode("hi", false).unwrap().get_ids(), [2]);
/// ```
pub fn build_tokenizer(v: &GgufVocab) -> Result<Tokenizer, GenerateError> {
    validate(v)?;
    let mut tokenizer = match v.model {
        "gpt2" => byte_level(v)?,
        "llama" if v.tokens.iter().any(|t| is_space_run(t)) => gemma(v)?,
        "llama" => sentencepiece(v)?,
        other => {
            return Err(invalid("tokenizer.ggml.model", format!("{other:?} is not supported (gpt2 and llama are)")));
        }
    };
    add_special_tokens(&mut tokenizer, v);
    tokenizer.with_post_processor(post_processor(v)?);
    Ok(tokenizer)
}

/// Whether a prompt starts with the bos: the file's `add_bos_token`, else the default of the
/// transformers class for the kind (`GPT2Tokenizer` no; `LlamaTokenizer` and `GemmaTokenizer`
/// yes, as llama.cpp for SentencePiece). transformers itself ignores the file's key.
pub fn adds_bos(v: &GgufVocab) -> bool {
    v.add_bos.unwrap_or(v.model == "llama") && v.bos.is_some()
}

fn validate(v: &GgufVocab) -> Result<(), GenerateError> {
    let n = v.tokens.len();
    if n == 0 || u32::try_from(n).is_err() {
        return Err(invalid("tokenizer.ggml.tokens", format!("{n} tokens")));
    }
    let lengths = [
        ("tokenizer.ggml.token_type", v.token_types.map(<[i64]>::len)),
        ("tokenizer.ggml.scores", v.scores.map(<[f64]>::len)),
    ];
    for (key, len) in lengths {
        if let Some(len) = len
            && len != n
        {
            return Err(invalid(key, format!("{len} entries for {n} tokens")));
        }
    }
    let ids = [
        ("tokenizer.ggml.bos_token_id", v.bos),
        ("tokenizer.ggml.eos_token_id", v.eos),
        ("tokenizer.ggml.unknown_token_id", v.unk),
        ("tokenizer.ggml.padding_token_id", v.pad),
    ];
    for (key, id) in ids {
        if let Some(id) = id
            && id as usize >= n
        {
            return Err(invalid(key, format!("id {id} is past the {n} tokens")));
        }
    }
    Ok(())
}

/// Byte-level BPE (`tokenizer.ggml.model` = `gpt2`).
fn byte_level(v: &GgufVocab) -> Result<Tokenizer, GenerateError> {
    let spelling = byte_spelling();
    let respell =
        |t: &String| if is_byte_level(t) { t.clone() } else { t.bytes().map(|b| spelling[b as usize]).collect() };
    let vocab: Vocab = v.tokens.iter().enumerate().map(|(i, t)| (respell(t), i as u32)).collect();
    let merges = merges(v, v.tokens, None)?;
    let model = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .continuing_subword_prefix(String::new())
        .end_of_word_suffix(String::new());
    let mut tokenizer = Tokenizer::new(model.build().map_err(from("tokenizer.ggml.merges"))?);
    let pre: PreTokenizerWrapper = match v.pre.and_then(split_regex) {
        Some(regex) => {
            let split = Split::new(SplitPattern::Regex(regex.into()), SplitDelimiterBehavior::Isolated, false)
                .map_err(from("tokenizer.ggml.pre"))?;
            PreTokenizerSequence::new(vec![split.into(), ByteLevel::new(false, true, false).into()]).into()
        }
        None => ByteLevel::new(false, true, true).into(),
    };
    tokenizer.with_pre_tokenizer(Some(pre));
    tokenizer.with_decoder(Some(ByteLevel::default()));
    Ok(tokenizer)
}

/// SentencePiece BPE (`tokenizer.ggml.model` = `llama`), as transformers' `LlamaTokenizer`
/// (non-legacy: no normalizer, `Metaspace` prepending on the first piece only).
fn sentencepiece(v: &GgufVocab) -> Result<Tokenizer, GenerateError> {
    let merges = merges(v, v.tokens, None)?;
    let unk = v.unk.map(|u| v.tokens[u as usize].clone());
    let mut tokenizer = Tokenizer::new(spm_bpe(index_vocab(v.tokens), merges, unk)?);
    let prefix = v.add_space_prefix.unwrap_or(true);
    let scheme = if prefix { PrependScheme::First } else { PrependScheme::Never };
    tokenizer.with_pre_tokenizer(Some(Metaspace::new('▁', scheme, false)));
    let mut decoders = spm_decoders()?;
    if prefix {
        decoders.push(Strip::new(' ', 1, 0).into());
    }
    tokenizer.with_decoder(Some(DecoderSequence::new(decoders)));
    Ok(tokenizer)
}

/// Gemma's SentencePiece BPE, as transformers' `GemmaTokenizer`: runs of spaces respelled with
/// `▁`, merges ordered by position (most of Gemma's scores are one shared value), spaces turned
/// into `▁` by a normalizer, no prefix.
fn gemma(v: &GgufVocab) -> Result<Tokenizer, GenerateError> {
    let tokens: Vec<String> =
        v.tokens.iter().map(|t| if is_space_run(t) { "▁".repeat(t.chars().count()) } else { t.clone() }).collect();
    let merges = merges(v, &tokens, Some(&|i| -(i as f64)))?;
    let unk = v.unk.map(|u| tokens[u as usize].clone()).or_else(|| tokens.iter().find(|t| *t == "<unk>").cloned());
    let mut tokenizer = Tokenizer::new(spm_bpe(index_vocab(&tokens), merges, unk)?);
    let replace = Replace::new(" ", "▁").map_err(from("tokenizer.ggml.tokens"))?;
    tokenizer.with_normalizer(Some(replace));
    let split = Split::new(SplitPattern::String(" ".into()), SplitDelimiterBehavior::MergedWithPrevious, false)
        .map_err(from("tokenizer.ggml.tokens"))?;
    tokenizer.with_pre_tokenizer(Some(split));
    tokenizer.with_decoder(Some(DecoderSequence::new(spm_decoders()?)));
    Ok(tokenizer)
}

fn spm_bpe(vocab: Vocab, merges: Merges, unk: Option<String>) -> Result<BPE, GenerateError> {
    let mut builder = BPE::builder().vocab_and_merges(vocab, merges).fuse_unk(true).byte_fallback(true);
    if let Some(unk) = unk {
        builder = builder.unk_token(unk);
    }
    builder.build().map_err(from("tokenizer.ggml.merges"))
}

/// `▁` back to spaces, then `<0xE2>`-style byte tokens back to text.
fn spm_decoders() -> Result<Vec<DecoderWrapper>, GenerateError> {
    let replace = Replace::new("▁", " ").map_err(from("tokenizer.ggml.tokens"))?;
    Ok(vec![replace.into(), ByteFallback::new().into(), Fuse::new().into()])
}

/// Token -> id; a token written twice keeps its last id, as a Python dict does.
fn index_vocab(tokens: &[String]) -> Vocab {
    tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect()
}

/// The file's merges, or (none given) those `tokens` imply, ranked by `rank(id)` or else by score.
fn merges(v: &GgufVocab, tokens: &[String], rank: Option<&dyn Fn(usize) -> f64>) -> Result<Merges, GenerateError> {
    if let Some(merges) = v.merges {
        return merges
            .iter()
            .enumerate()
            .map(|(i, m)| match m.split_once(' ') {
                Some((a, b)) if !b.contains(' ') => Ok((a.to_string(), b.to_string())),
                _ => Err(invalid("tokenizer.ggml.merges", format!("merge {i} ({m:?}) is not two tokens and a space"))),
            })
            .collect();
    }
    match (rank, v.scores) {
        (Some(rank), _) => Ok(derive_merges(tokens, rank)),
        (None, Some(scores)) => Ok(derive_merges(tokens, &|i| scores[i])),
        (None, None) => Err(invalid("tokenizer.ggml.scores", "no merges and no scores to derive them from")),
    }
}

/// transformers' `generate_merges`: every split of a token into two tokens of the vocabulary,
/// those of one token ordered by the pieces' ids, all stably ordered by (rank, left length,
/// right length), highest first. Duplicates count once, with their last id.
fn derive_merges(tokens: &[String], rank: &dyn Fn(usize) -> f64) -> Merges {
    let last: HashMap<&str, usize> = tokens.iter().enumerate().map(|(i, t)| (t.as_str(), i)).collect();
    let mut seen = HashSet::with_capacity(tokens.len());
    let mut all = Vec::new();
    for token in tokens {
        let Some(&id) = last.get(token.as_str()) else { continue };
        if !seen.insert(token.as_str()) || token.chars().count() > MAX_DERIVED_CHARS {
            continue;
        }
        let score = rank(id);
        let mut local: Vec<(&str, &str, usize, usize)> = token
            .char_indices()
            .skip(1)
            .filter_map(|(at, _)| {
                let (l, r) = token.split_at(at);
                Some((l, r, *last.get(l)?, *last.get(r)?))
            })
            .collect();
        local.sort_by_key(|&(_, _, li, ri)| (li, ri));
        all.extend(local.into_iter().map(|(l, r, _, _)| (l, r, score, l.chars().count(), r.chars().count())));
    }
    all.sort_by(|a, b| b.2.total_cmp(&a.2).then(b.3.cmp(&a.3)).then(b.4.cmp(&a.4)));
    all.into_iter().map(|(l, r, ..)| (l.to_string(), r.to_string())).collect()
}

/// Control tokens, then the bos, eos, unk and pad tokens, as special added tokens (the latter
/// as transformers' tokenizer classes add their named special tokens).
fn add_special_tokens(tokenizer: &mut Tokenizer, v: &GgufVocab) {
    let byte_level = v.model == "gpt2";
    let mut special: Vec<AddedToken> = v
        .tokens
        .iter()
        .zip(v.token_types.unwrap_or_default())
        // On a byte-level file, a control token not spelled byte-level is a byte sequence
        // llama.cpp mislabelled: transformers leaves it to the merges.
        .filter(|&(t, &kind)| kind == CONTROL && (!byte_level || is_byte_level(t)))
        .map(|(t, _)| AddedToken::from(t.clone(), true))
        .collect();
    for id in [v.bos, v.eos, v.unk, v.pad].into_iter().flatten() {
        let token = &v.tokens[id as usize];
        // One the model cannot spell would be a new id in transformers: left out here.
        if tokenizer.get_model().token_to_id(token).is_some() {
            special.push(AddedToken::from(token.clone(), true));
        }
    }
    tokenizer.add_special_tokens(&special);
}

/// A bos and eos template where the file asks for them (as transformers'
/// `update_post_processor` writes it); else GPT-2's no-op `ByteLevel` or none.
fn post_processor(v: &GgufVocab) -> Result<Option<PostProcessorWrapper>, GenerateError> {
    let bos = v.bos.filter(|_| adds_bos(v));
    let eos = v.eos.filter(|_| v.add_eos == Some(true));
    if bos.is_none() && eos.is_none() {
        return Ok((v.model == "gpt2").then(|| ByteLevel::new(true, false, true).into()));
    }
    let piece = |id: Option<u32>, type_id: u32| {
        id.map(|id| json!({"SpecialToken": {"id": v.tokens[id as usize], "type_id": type_id}}))
    };
    let part = |seq: &str, type_id| {
        [piece(bos, type_id), Some(json!({"Sequence": {"id": seq, "type_id": type_id}})), piece(eos, type_id)]
    };
    let single: Vec<Value> = part("A", 0).into_iter().flatten().collect();
    let pair: Vec<Value> = part("A", 0).into_iter().chain(part("B", 1)).flatten().collect();
    let tokens: serde_json::Map<String, Value> = [bos, eos]
        .into_iter()
        .flatten()
        .map(|id| {
            let t = &v.tokens[id as usize];
            (t.clone(), json!({"id": t, "ids": [id], "tokens": [t]}))
        })
        .collect();
    let template = json!({"type": "TemplateProcessing", "single": single, "pair": pair, "special_tokens": tokens});
    serde_json::from_value(template).map(Some).map_err(|e| invalid("tokenizer.ggml.bos_token_id", e.to_string()))
}

/// GPT-2's `bytes_to_unicode`: the character each byte is written as.
fn byte_spelling() -> [char; 256] {
    // The 188 printable bytes stand for themselves; the others take 256, 257 ... in order.
    let mut others = 256..;
    std::array::from_fn(|b| match b as u32 {
        code @ (0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF) => char::from_u32(code),
        _ => others.next().and_then(char::from_u32),
    })
    .map(|c| c.unwrap_or('\u{FFFD}'))
}

/// Whether every character of `token` is one of GPT-2's 256 byte characters.
fn is_byte_level(token: &str) -> bool {
    token.chars().all(|c| match c as u32 {
        0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF => true,
        code => (256..256 + 68).contains(&code),
    })
}

/// A token of spaces and other whitespace, at least one space (Python's `str.strip` whitespace).
fn is_space_run(token: &str) -> bool {
    token.contains(' ') && token.chars().all(|c| c.is_whitespace() || ('\x1c'..='\x1f').contains(&c))
}

/// The split transformers puts before `ByteLevel` for llama.cpp's pre-tokenizer `name`.
fn split_regex(name: &str) -> Option<&'static str> {
    const LLAMA3: &str = concat!(
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}",
        r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
    );
    const QWEN2: &str = concat!(
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}",
        r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
    );
    const QWEN35: &str = concat!(
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}",
        r"| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
    );
    const TEKKEN: &str = concat!(
        r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+",
        r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*",
        r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
    );
    const GPT4O: &str = concat!(
        r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
        r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
        r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
    );
    Some(match name {
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0" | "lfm2"
        | "jina-v5-nano" | "dbrx" | "smaug-bpe" => LLAMA3,
        "tekken" => TEKKEN,
        "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "megrez" => QWEN2,
        "qwen35" => QWEN35,
        "gpt-4o" | "llama4" | "kanana2" | "talkie" | "minimax-m2" => GPT4O,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(s: &[&str]) -> Vec<String> {
        s.iter().map(|t| t.to_string()).collect()
    }

    fn base<'a>(model: &'a str, tokens: &'a [String]) -> GgufVocab<'a> {
        GgufVocab { model, tokens, ..Default::default() }
    }

    fn ids(t: &Tokenizer, text: &str, special: bool) -> Vec<u32> {
        t.encode(text, special).unwrap().get_ids().to_vec()
    }

    #[test]
    fn derived_merges_follow_transformers_generate_merges() {
        // Expected lists printed by transformers' `generate_merges` (with "a" written twice).
        let tokens = strings(&["<unk>", "a", "b", "c", "ab", "bc", "abc", "ca", "cab", "bca", "a", "abca"]);
        let scores = [0.0, -1.0, -2.0, -3.0, -4.0, -4.0, -5.0, -4.0, -6.0, -6.0, -7.0, -5.0];
        let pairs = |m: Merges| m.into_iter().map(|(l, r)| format!("{l} {r}")).collect::<Vec<_>>();
        let by_score = "a b,b c,c a,abc a,ab ca,ab c,a bca,a bc,ca b,bc a,c ab,b ca";
        assert_eq!(pairs(derive_merges(&tokens, &|i| scores[i])).join(","), by_score);
        let by_position = "a b,b c,ab c,a bc,c a,ca b,c ab,bc a,b ca,abc a,ab ca,a bca";
        assert_eq!(pairs(derive_merges(&tokens, &|i| -(i as f64))).join(","), by_position);
    }

    /// `<|endoftext|>`, `<|im_start|>`, then byte-level pieces; `\n` is written raw, as llama.cpp
    /// writes a token it could not spell, and must be respelled `Ċ` to meet the text.
    fn byte_level_vocab() -> (Vec<String>, Vec<i64>, Vec<String>) {
        let tokens = strings(&["<|endoftext|>", "<|im_start|>", "h", "i", "hi", "Ġ", "Ġhi", "\n"]);
        (tokens, vec![3, 3, 1, 1, 1, 1, 1, 1], strings(&["h i", "Ġ hi"]))
    }

    #[test]
    fn byte_level_vocabulary_keeps_control_tokens_whole_under_every_split() {
        let (tokens, types, merges) = byte_level_vocab();
        let v = GgufVocab { token_types: Some(&types), merges: Some(&merges), bos: Some(1), ..base("gpt2", &tokens) };
        for pre in
            [None, Some("smollm"), Some("llama-bpe"), Some("qwen2"), Some("qwen35"), Some("tekken"), Some("gpt-4o")]
        {
            let t = build_tokenizer(&GgufVocab { pre, ..v }).unwrap();
            assert_eq!(ids(&t, "<|im_start|>hi hi\n", false), [1, 4, 6, 7], "{pre:?}");
            assert_eq!(t.decode(&[1, 4, 6, 7], false).unwrap(), "<|im_start|>hi hi\n");
            assert_eq!(t.decode(&[1, 4, 6, 7], true).unwrap(), "hi hi\n");
            assert_eq!(ids(&t, "hi", true), [4], "GPT2Tokenizer adds no bos by default");
        }
    }

    /// `<unk>`, `<s>`, `</s>`, the 256 byte tokens `<0x00>`..`<0xFF>` (ids 3..259), then pieces.
    fn sentencepiece_vocab(extra: &[&str]) -> (Vec<String>, Vec<i64>, Vec<f64>) {
        let mut tokens = strings(&["<unk>", "<s>", "</s>"]);
        tokens.extend((0..=255).map(|b| format!("<0x{b:02X}>")));
        tokens.extend(strings(extra));
        let types = [&[2, 3, 3][..], &[6; 256], &vec![1; extra.len()]].concat();
        let mut scores = vec![0.0; 259];
        scores.extend((0..extra.len()).map(|i| -(i as f64)));
        (tokens, types, scores)
    }

    #[test]
    fn sentencepiece_vocabulary_merges_by_score_and_falls_back_to_bytes() {
        let (tokens, types, mut scores) = sentencepiece_vocab(&["▁", "h", "i", "hi", "▁hi", "▁h"]);
        let (space, hi, space_hi) = (259u32, 262u32, 263u32);
        scores[259..265].copy_from_slice(&[-10.0, 0.0, 0.0, -2.0, -1.0, -3.0]);
        let v = GgufVocab { token_types: Some(&types), scores: Some(&scores), bos: Some(1), ..base("llama", &tokens) };
        let t = build_tokenizer(&GgufVocab { eos: Some(2), unk: Some(0), ..v }).unwrap();
        assert_eq!(ids(&t, "hi hi", false), [space_hi, space_hi]);
        // `é` has no piece: its UTF-8 bytes C3 A9 are the byte tokens 3 + 0xC3 and 3 + 0xA9.
        assert_eq!(ids(&t, "hi é", false), [space_hi, space, 3 + 0xC3, 3 + 0xA9]);
        assert_eq!(t.decode(&[space_hi, space, 3 + 0xC3, 3 + 0xA9], false).unwrap(), "hi é");
        // Only the text's first piece takes the `▁`; `<s>` and `<unk>` are special.
        assert_eq!(ids(&t, "<s>hi<unk>", false), [1, hi, 0]);
        assert_eq!(ids(&t, "hi", true), [1, space_hi], "LlamaTokenizer adds a bos by default");

        let v = GgufVocab { add_space_prefix: Some(false), add_bos: Some(false), ..v };
        let t = build_tokenizer(&v).unwrap();
        assert_eq!(ids(&t, "hi hi", true), [hi, space_hi]);
        assert_eq!(t.decode(&[hi, space_hi], false).unwrap(), "hi hi");
    }

    #[test]
    fn gemma_vocabulary_spells_space_runs_with_the_block() {
        let (tokens, types, scores) = sentencepiece_vocab(&["▁", "  ", "a", "b"]);
        let v = GgufVocab { token_types: Some(&types), scores: Some(&scores), unk: Some(0), ..base("llama", &tokens) };
        let t = build_tokenizer(&v).unwrap();
        // No prefix, spaces become `▁`, and `▁▁` is the file's `"  "` (id 260).
        assert_eq!(ids(&t, "a  b", false), [261, 260, 262]);
        assert_eq!(ids(&t, "a b", false), [261, 259, 262]);
        assert_eq!(t.decode(&[261, 260, 262], false).unwrap(), "a  b");
    }

    #[test]
    fn hostile_metadata_is_an_error_not_a_panic() {
        let (tokens, types, merges) = byte_level_vocab();
        let (short, empty) = ([1.0; 3], Vec::new());
        let (unknown, no_space, three) = (strings(&["h x"]), strings(&["hi"]), strings(&["h i i"]));
        let ok = GgufVocab { token_types: Some(&types), merges: Some(&merges), ..base("gpt2", &tokens) };
        let cases = [
            (GgufVocab { model: "bert", ..ok }, "\"bert\""),
            (GgufVocab { bos: Some(8), ..ok }, "bos_token_id"),
            (GgufVocab { pad: Some(u32::MAX), ..ok }, "padding_token_id"),
            (GgufVocab { token_types: Some(&types[1..]), ..ok }, "token_type"),
            (GgufVocab { scores: Some(&short), ..ok }, "scores"),
            (GgufVocab { merges: Some(&unknown), ..ok }, "merges"),
            (GgufVocab { merges: Some(&no_space), ..ok }, "merges"),
            (GgufVocab { merges: Some(&three), ..ok }, "merges"),
            (GgufVocab { tokens: &empty, ..ok }, "tokens"),
            (GgufVocab { model: "llama", merges: None, ..ok }, "scores"),
        ];
        for (v, key) in cases {
            let e = build_tokenizer(&v).unwrap_err().to_string();
            assert!(e.contains(key), "{e}");
        }
    }
}
