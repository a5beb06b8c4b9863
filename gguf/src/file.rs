//! [`GgufFile`]: one file's header, read and checked.
//!
//! Layout (little-endian): `GGUF`, version (u32), tensor count (u64), key count (u64), the
//! key-value pairs, the tensor infos (name, dimension count, dimensions, type, offset), then
//! padding to the alignment and the data section. Tensor offsets count from the data
//! section's start and are multiples of the alignment (`general.alignment`, default 32).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use crate::input::Reader;
use crate::limits::{MAX_KEYS, MAX_TENSORS};
use crate::metadata::read_metadata;
use crate::tensor::{RawTensor, read_tensor_infos};
use crate::{GgufError, MetaValue, TensorInfo};

/// The alignment of the data section and of each tensor when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;

/// The key that sets the alignment.
pub const ALIGNMENT_KEY: &str = "general.alignment";

/// The fewest bytes a tensor info takes: a name of one byte with its length, one dimension,
/// the dimension count, type and offset.
const MIN_TENSOR_INFO: u64 = 8 + 1 + 4 + 8 + 4 + 8;

/// The fewest bytes a key-value pair takes: a key of one byte with its length, the type, a
/// one-byte value.
const MIN_KEY_VALUE: u64 = 8 + 1 + 4 + 1;

/// One file's header: metadata and tensor infos, every offset checked against the file.
#[derive(Debug, Clone)]
pub struct GgufFile {
    /// The file.
    pub path: PathBuf,
    /// Its length in bytes.
    pub len: u64,
    /// GGUF version: 2 or 3.
    pub version: u32,
    /// Alignment of the data section and of each tensor's data (a power of two).
    pub alignment: u64,
    /// Absolute byte offset of the data section.
    pub data_offset: u64,
    /// The metadata, by key.
    pub metadata: BTreeMap<String, MetaValue>,
    /// The tensors in header order, offsets absolute, `file` 0.
    pub tensors: Vec<TensorInfo>,
}

impl GgufFile {
    /// Reads the header of the file at `path` (buffered reads), never its tensor data.
    ///
    /// ```no_run
    /// let file = mlmf_gguf::GgufFile::read("model.gguf".as_ref())?;
    /// println!("{} tensors, data at byte {}", file.tensors.len(), file.data_offset);
    /// # Ok::<(), mlmf_gguf::GgufError>(())
    /// ```
    pub fn read(path: &Path) -> Result<GgufFile, GgufError> {
        let io = |source| GgufError::Io { path: path.to_path_buf(), source };
        let file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        // Headers are mostly short strings: a large buffer makes them a few big reads.
        parse_from(Reader::new(BufReader::with_capacity(256 << 10, file), path, len))
    }

    /// Parses a whole file held in memory, as [`GgufFile::read`] does; `path` only names the
    /// file in errors, and `len` is `bytes.len()`.
    ///
    /// ```
    /// use mlmf_gguf::{GgufFile, GgufWriter, MetaValue};
    /// let bytes = GgufWriter::new(3).metadata("general.architecture", MetaValue::String("llama".into())).to_bytes();
    /// let file = GgufFile::parse("mem.gguf".as_ref(), &bytes)?;
    /// assert_eq!(file.metadata["general.architecture"], MetaValue::String("llama".into()));
    /// # Ok::<(), mlmf_gguf::GgufError>(())
    /// ```
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<GgufFile, GgufError> {
        parse_from(Reader::new(bytes, path, bytes.len() as u64))
    }

    /// The tensor named `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

/// Parses a header from its first byte.
fn parse_from<R: Read>(mut r: Reader<'_, R>) -> Result<GgufFile, GgufError> {
    let path = r.path();
    let magic = r.array::<4>(&|| "the magic number \"GGUF\"".to_string())?;
    if &magic != b"GGUF" {
        return Err(GgufError::BadMagic { path: path.to_path_buf(), found: magic });
    }
    let version = r.u32(&|| "the version".to_string())?;
    // v1 used u32 counts and lengths; v2 and v3 have the same little-endian layout (v3 added
    // big-endian files, whose version reads byte-swapped here and is refused with a hint).
    if version != 2 && version != 3 {
        return Err(GgufError::UnsupportedVersion { path: path.to_path_buf(), version });
    }
    let n_tensors = r.u64(&|| "the tensor count".to_string())?;
    let n_keys = r.u64(&|| "the metadata key count".to_string())?;
    let n_tensors = r.count(n_tensors, MIN_TENSOR_INFO, MAX_TENSORS, &|| "the tensor count".to_string())?;
    let n_keys = r.count(n_keys, MIN_KEY_VALUE, MAX_KEYS, &|| "the metadata key count".to_string())?;

    let metadata = read_metadata(&mut r, n_keys)?;
    let alignment = alignment(path, &metadata)?;
    let raw = read_tensor_infos(&mut r, n_tensors)?;
    // The data section starts at the first multiple of the alignment after the header. The
    // header ends within MAX_HEADER_BYTES, so this cannot overflow for any u64 alignment.
    let data_offset = r.pos().div_ceil(alignment).saturating_mul(alignment);
    let tensors = place_tensors(path, r.len(), alignment, data_offset, raw)?;
    Ok(GgufFile { path: path.to_path_buf(), len: r.len(), version, alignment, data_offset, metadata, tensors })
}

/// The alignment `general.alignment` sets: a power of two, of any integer type (llama.cpp
/// writes and requires a u32; being looser costs nothing).
fn alignment(path: &Path, metadata: &BTreeMap<String, MetaValue>) -> Result<u64, GgufError> {
    let Some(value) = metadata.get(ALIGNMENT_KEY) else {
        return Ok(DEFAULT_ALIGNMENT);
    };
    let bad =
        |message: String| GgufError::BadMetadata { path: path.to_path_buf(), key: ALIGNMENT_KEY.to_string(), message };
    let n =
        value.as_integer().ok_or_else(|| bad(format!("must be an integer (u32), found a {}", value.type_name())))?;
    match u64::try_from(n) {
        Ok(n) if n.is_power_of_two() => Ok(n),
        _ => Err(bad(format!("{n} is not a power of two"))),
    }
}

/// Sets each tensor's absolute offset and checks that its data is aligned, inside the file,
/// and shares no byte with another tensor's.
fn place_tensors(
    path: &Path,
    len: u64,
    alignment: u64,
    data_offset: u64,
    raw: Vec<RawTensor>,
) -> Result<Vec<TensorInfo>, GgufError> {
    let mut tensors = Vec::with_capacity(raw.len());
    for RawTensor { mut info, relative } in raw {
        if relative % alignment != 0 {
            return Err(GgufError::Misaligned {
                path: path.to_path_buf(),
                tensor: info.name,
                offset: relative,
                alignment,
            });
        }
        let end = data_offset.checked_add(relative).and_then(|start| start.checked_add(info.bytes));
        match end {
            Some(end) if end <= len => info.offset = data_offset + relative,
            _ => {
                return Err(GgufError::OutOfBounds {
                    path: path.to_path_buf(),
                    message: format!(
                        "its {} bytes at data offset {relative} (byte {}) end past the end of the file ({len} \
                         bytes); the file is truncated or corrupt",
                        info.bytes,
                        data_offset as u128 + relative as u128,
                    ),
                    tensor: info.name,
                });
            }
        }
        tensors.push(info);
    }
    check_overlap(path, &tensors)?;
    Ok(tensors)
}

/// Fails if two tensors share a byte: sorted by offset, each must end before the next starts.
fn check_overlap(path: &Path, tensors: &[TensorInfo]) -> Result<(), GgufError> {
    let mut order: Vec<&TensorInfo> = tensors.iter().collect();
    order.sort_by_key(|t| t.offset);
    for pair in order.windows(2) {
        if let [a, b] = pair
            && a.offset + a.bytes > b.offset
        {
            return Err(GgufError::Overlap { path: path.to_path_buf(), first: a.name.clone(), second: b.name.clone() });
        }
    }
    Ok(())
}

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;
