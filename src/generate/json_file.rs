//! The small JSON files of a model folder (tokenizer, generation, sentence-transformers
//! configs), each read only when it is no larger than its limit.

use std::path::Path;

use serde_json::Value;

use super::error::GenerateError;

/// Reads `path` as JSON when it exists and is at most `max` bytes.
pub fn read_json(path: &Path, max: u64) -> Result<Option<Value>, GenerateError> {
    let Some(bytes) = read_bytes(path, max)? else { return Ok(None) };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| GenerateError::File { path: path.into(), message: format!("not valid JSON: {e}") })
}

/// Reads `path` as UTF-8 text (a chat template) when it exists and is at most `max` bytes.
pub fn read_text(path: &Path, max: u64) -> Result<Option<String>, GenerateError> {
    let Some(bytes) = read_bytes(path, max)? else { return Ok(None) };
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|e| GenerateError::File { path: path.into(), message: format!("not UTF-8 text: {e}") })
}

/// The bytes of `path` when it exists and is at most `max` bytes (checked before reading).
fn read_bytes(path: &Path, max: u64) -> Result<Option<Vec<u8>>, GenerateError> {
    let io = |source| GenerateError::Io { path: path.to_path_buf(), source };
    let len = match std::fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    if len > max {
        return Err(GenerateError::File {
            path: path.into(),
            message: format!("{len} bytes is over the {max} allowed"),
        });
    }
    std::fs::read(path).map(Some).map_err(io)
}
