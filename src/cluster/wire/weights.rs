//! Weight transfer: a node that cannot read a checkpoint asks a peer for its [`Manifest`]
//! (files, tensor offsets) and pulls the byte ranges it needs with [`Fetch`], checking every
//! byte against the [`Digests`] the coordinator recorded from its own read of the checkpoint
//! (so a peer cannot vouch for its own bytes).

use serde::{Deserialize, Serialize};

/// Ask a peer which bytes make up a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestRequest {
    /// The model directory.
    pub path: String,
    /// Tensors wanted, with their SHA-256.
    pub tensors: Vec<String>,
}

/// One file of a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestFile {
    /// File name inside the model directory.
    pub name: String,
    /// Length in bytes.
    pub len: u64,
    /// End of its safetensors header (8 + header length).
    pub header_end: u64,
}

/// One tensor's bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestTensor {
    /// Name.
    pub name: String,
    /// Index into [`Manifest::files`].
    pub file: usize,
    /// Absolute offset in the file.
    pub offset: u64,
    /// Length.
    pub len: u64,
    /// SHA-256 of those bytes.
    pub sha256: [u8; 32],
}

/// What a puller needs to rebuild the parts of a checkpoint it reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// `config.json`.
    pub config_json: Vec<u8>,
    /// `model.safetensors.index.json`, when the checkpoint has one.
    pub index_json: Option<Vec<u8>>,
    /// The safetensors files.
    pub files: Vec<ManifestFile>,
    /// The tensors asked for.
    pub tensors: Vec<ManifestTensor>,
}

/// Read a byte range of one checkpoint file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fetch {
    /// The model directory.
    pub path: String,
    /// Index into [`Manifest::files`].
    pub file: usize,
    /// Start.
    pub offset: u64,
    /// Length (at most [`FETCH_MAX`]).
    pub len: u64,
}

/// The largest range one [`Fetch`] returns.
pub const FETCH_MAX: u64 = 4 << 20;

/// Ask the coordinator for the SHA-256 it recorded of a model's checkpoint: `config.json`,
/// the index, every file's header and the tensors named.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DigestRequest {
    /// Model id (the coordinator answers for models it loads, at the path it loads them from).
    pub model: String,
    /// The tensors wanted.
    pub tensors: Vec<String>,
}

/// The coordinator's SHA-256 of a checkpoint's parts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Digests {
    /// Of `config.json`.
    pub config_json: [u8; 32],
    /// Of `model.safetensors.index.json`, when there is one.
    pub index_json: Option<[u8; 32]>,
    /// Of each safetensors file's header (its first `header_end` bytes), by file name.
    pub headers: Vec<(String, [u8; 32])>,
    /// Of each tensor's bytes, by name.
    pub tensors: Vec<(String, [u8; 32])>,
}
