//! Errors of the model layer: reading checkpoints and running stages.

use std::path::{Path, PathBuf};

/// Everything that can go wrong while reading a checkpoint or building its weights.
///
/// Each variant carries what a user needs to act: the file, the tensor, the key.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A file could not be opened, read or mapped.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// `config.json` is missing a key, has a wrong type or an impossible value.
    #[error("{path}: {message}")]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong, naming the key.
        message: String,
    },
    /// The architecture named in `config.json` is not one mlmf runs.
    #[error("{path}: unknown architecture {name:?} (supported: {supported})")]
    UnknownArchitecture {
        /// The config file.
        path: PathBuf,
        /// The `model_type` or architecture name found.
        name: String,
        /// The families mlmf runs, comma-separated (from the registry).
        supported: String,
    },
    /// A safetensors file is malformed (header, offsets, dtypes, length).
    #[error("{path}: {message}")]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// `model.safetensors.index.json` is malformed.
    #[error("{path}: {message}")]
    Index {
        /// The index file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The directory has neither `model.safetensors` nor an index.
    #[error("{dir}: no model.safetensors or model.safetensors.index.json")]
    NoWeights {
        /// The model directory.
        dir: PathBuf,
    },
    /// A tensor the architecture needs is not in the checkpoint.
    #[error("{dir}: tensor {tensor:?} is missing from the checkpoint")]
    MissingTensor {
        /// The model directory.
        dir: PathBuf,
        /// The tensor name expected.
        tensor: String,
    },
    /// A tensor has a shape that does not fit the config.
    #[error("{path}: tensor {tensor:?} has shape {found:?}, config implies {expected:?}")]
    WrongShape {
        /// The file holding the tensor.
        path: PathBuf,
        /// The tensor name.
        tensor: String,
        /// The shape in the file.
        found: Vec<usize>,
        /// The shape the config implies.
        expected: Vec<usize>,
    },
    /// A tensor is stored in a dtype mlmf does not compute with.
    #[error("{path}: tensor {tensor:?} has dtype {dtype}, expected F32, F16, BF16 or F64")]
    UnsupportedDtype {
        /// The file holding the tensor.
        path: PathBuf,
        /// The tensor name.
        tensor: String,
        /// The dtype found.
        dtype: String,
    },
    /// A GGUF file is malformed or holds what mlmf does not run.
    #[error(transparent)]
    Gguf(#[from] mlmf_gguf::GgufError),
    /// Quantized blocks could not be read or computed with.
    #[error("{path}: tensor {tensor:?}: {message}")]
    Quant {
        /// The file holding the tensor.
        path: PathBuf,
        /// The tensor name.
        tensor: String,
        /// What is wrong.
        message: String,
    },
    /// A stage was asked for layers or a slice the model does not have.
    #[error("invalid stage: {0}")]
    InvalidStage(String),
}

impl LoadError {
    /// A [`LoadError::Config`]: `message` (naming the key) about the config file at `path`.
    pub(crate) fn config(path: &Path, message: String) -> LoadError {
        LoadError::Config { path: path.to_path_buf(), message }
    }
}

/// Errors while running a stage on an input.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// The request does not fit the model (token ids, lengths, masks).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// Activation bytes could not be decoded.
    #[error("invalid activation: {0}")]
    InvalidActivation(String),
    /// The stage does not hold what the call needs (for example a head).
    #[error("stage mismatch: {0}")]
    StageMismatch(String),
    /// burn failed to read a tensor back.
    #[error("backend: {0}")]
    Backend(String),
}
