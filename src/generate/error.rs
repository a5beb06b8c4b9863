//! [`GenerateError`]: why text could not be turned into ids, ids into text, or a request
//! into a generation, naming the file, the field or the limit.

use std::path::PathBuf;

/// A generation failure.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// A tokenizer file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A tokenizer file is malformed or unsupported.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The model has no tokenizer, so text cannot be used with it.
    #[error("model directory {0} has no tokenizer.json: send token ids instead of text")]
    NoTokenizer(PathBuf),
    /// Encoding or decoding failed.
    #[error("tokenizer: {0}")]
    Tokenize(String),
    /// A GGUF file's tokenizer metadata is malformed or unsupported (the message names the key).
    #[error("GGUF {key}: {message}")]
    Vocab {
        /// The metadata key (`tokenizer.ggml.merges`).
        key: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A request field is out of range (the message names the field).
    #[error("{field}: {message}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// Why.
        message: String,
    },
}
