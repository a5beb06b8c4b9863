//! The small JSON files of a model folder (tokenizer, generation, sentence-transformers
//! configs), each read only when it is no larger than its limit.

use std::path::Path;

use serde_json::Value;

use super::error::GenerateError;

/// Reads `path` as JSON when it exists and is at most `max` bytes.
pub fn read_json(path: &Path, max: u64) -> Result<Option<Value>, GenerateError> {
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
    let bytes = std::fs::read(path).map_err(io)?;
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| GenerateError::File { path: path.into(), message: format!("not valid JSON: {e}") })
}
