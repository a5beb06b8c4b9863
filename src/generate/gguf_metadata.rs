//! A GGUF model's tokenizer metadata read into a [`GgufVocab`]: every `tokenizer.ggml.*` key
//! with the type it must have (a wrong type is an error naming the key), and the chat
//! template of `tokenizer.chat_template`.

use std::path::Path;

use mlmf_gguf::{GgufError, GgufModel};

use super::error::GenerateError;
use super::gguf_vocab::GgufVocab;

fn file_error(path: &Path, e: GgufError) -> GenerateError {
    GenerateError::File { path: path.to_path_buf(), message: e.to_string() }
}

/// An id key as `u32`; an id past `u32` is an error naming the key.
fn id(model: &GgufModel, key: &'static str) -> Result<Option<u32>, GenerateError> {
    match model.get_u64(key).map_err(|e| file_error(model.path(), e))? {
        None => Ok(None),
        Some(v) => u32::try_from(v)
            .map(Some)
            .map_err(|_| GenerateError::Vocab { key, message: format!("{v} is not a token id") }),
    }
}

/// The tokenizer metadata of `model` and its chat template; `None` when the file carries no
/// tokenizer (`tokenizer.ggml.model` absent).
pub fn vocab_of(model: &GgufModel) -> Result<Option<(GgufVocab<'_>, Option<String>)>, GenerateError> {
    let err = |e| file_error(model.path(), e);
    let Some(kind) = model.get_str("tokenizer.ggml.model").map_err(err)? else { return Ok(None) };
    let tokens = model
        .get_str_array("tokenizer.ggml.tokens")
        .map_err(err)?
        .ok_or(GenerateError::Vocab { key: "tokenizer.ggml.tokens", message: "missing".into() })?;
    let vocab = GgufVocab {
        model: kind,
        pre: model.get_str("tokenizer.ggml.pre").map_err(err)?,
        tokens,
        token_types: model.get_int_array("tokenizer.ggml.token_type").map_err(err)?,
        scores: model.get_float_array("tokenizer.ggml.scores").map_err(err)?,
        merges: model.get_str_array("tokenizer.ggml.merges").map_err(err)?,
        bos: id(model, "tokenizer.ggml.bos_token_id")?,
        eos: id(model, "tokenizer.ggml.eos_token_id")?,
        unk: id(model, "tokenizer.ggml.unknown_token_id")?,
        pad: id(model, "tokenizer.ggml.padding_token_id")?,
        add_bos: model.get_bool("tokenizer.ggml.add_bos_token").map_err(err)?,
        add_eos: model.get_bool("tokenizer.ggml.add_eos_token").map_err(err)?,
        add_space_prefix: model.get_bool("tokenizer.ggml.add_space_prefix").map_err(err)?,
    };
    let template = model.get_str("tokenizer.chat_template").map_err(err)?.map(str::to_string);
    Ok(Some((vocab, template)))
}

/// Opens the GGUF model at `path` (a file, a split set's first part, a folder holding one).
pub fn open(path: &Path) -> Result<GgufModel, GenerateError> {
    GgufModel::open(path).map_err(|e| file_error(path, e))
}
