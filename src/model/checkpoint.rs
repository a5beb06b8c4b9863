//! A checkpoint directory: `config.json` plus `model.safetensors` or a sharded set of
//! `*.safetensors` listed by `model.safetensors.index.json`.
//!
//! [`Checkpoint::open`] (in `open.rs`: it detects the family of the config) reads only the
//! config and the safetensors headers (a few bytes per tensor), validating every length and
//! offset against the file before anything is allocated. [`Checkpoint::map`] then
//! memory-maps the files so that a stage materialises only the tensors (or the slices of
//! tensors) it holds.
//!
//! A GGUF file (`gguf_checkpoint.rs`) opens into the same [`Checkpoint`]: its tensors under
//! the names `transformers` gives them, its quantized types as [`StoredDtype::Quant`].

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;
use serde::Serialize;
use serde_json::Value;

use super::config::ModelConfig;
use super::error::LoadError;
pub use super::stored::{RowOrder, StoredDtype};

/// Largest safetensors header accepted (the safetensors crate uses the same bound).
const MAX_HEADER_BYTES: u64 = 100_000_000;
/// Largest index file accepted.
const MAX_INDEX_BYTES: u64 = 64 << 20;
const SINGLE_FILE: &str = "model.safetensors";
/// The index of a checkpoint split over several safetensors files.
pub const INDEX_FILE: &str = "model.safetensors.index.json";

/// One tensor as the headers describe it.
#[derive(Debug, Clone, Serialize)]
pub struct TensorEntry {
    /// The tensor's name.
    pub name: String,
    /// Index into [`Checkpoint::files`].
    pub file: usize,
    /// Stored dtype.
    pub dtype: StoredDtype,
    /// Shape, row-major.
    pub shape: Vec<usize>,
    /// Absolute byte offset of the data in its file.
    pub offset: u64,
    /// Length of the data in bytes.
    pub bytes: u64,
    /// How its rows are ordered in the file.
    pub row_order: RowOrder,
}

/// One safetensors file of a checkpoint.
#[derive(Debug, Clone, Serialize)]
pub struct WeightFile {
    /// Its path.
    pub path: PathBuf,
    /// Its length in bytes.
    pub len: u64,
    /// Where a GGUF file's tensor data starts (its header, metadata and tensor infos end);
    /// `None` for safetensors, whose header says it.
    pub gguf_data_start: Option<u64>,
}

impl WeightFile {
    /// The file's name (what a peer rebuilding the checkpoint calls it).
    pub fn name(&self) -> Result<String, String> {
        self.path
            .file_name()
            .and_then(|s| s.to_str())
            .map(str::to_string)
            .ok_or_else(|| "file name is not UTF-8".into())
    }

    /// Where its safetensors header ends (8 + the header length the file starts with),
    /// read again from the file and checked against its length.
    pub fn header_end(&self) -> Result<u64, String> {
        use std::os::unix::fs::FileExt;
        if let Some(start) = self.gguf_data_start {
            return Ok(start);
        }
        let mut len8 = [0u8; 8];
        std::fs::File::open(&self.path)
            .and_then(|h| h.read_exact_at(&mut len8, 0))
            .map_err(|e| format!("{}: {e}", self.path.display()))?;
        let end = 8u64.saturating_add(u64::from_le_bytes(len8));
        if end > self.len {
            return Err(format!("{}: header beyond the file", self.path.display()));
        }
        Ok(end)
    }
}

/// A checkpoint known by its headers: config, files and tensor table. No weights are read.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// The model directory.
    pub dir: PathBuf,
    /// The validated config.
    pub config: ModelConfig,
    /// The safetensors files.
    pub files: Vec<WeightFile>,
    /// Every tensor by name.
    pub tensors: BTreeMap<String, TensorEntry>,
    /// The GGUF model it was read from (its metadata holds the tokenizer), if any.
    pub gguf: Option<Arc<mlmf_gguf::GgufModel>>,
}

impl Checkpoint {
    /// Reads the headers of every safetensors file of `dir`, whose config has been read
    /// ([`Checkpoint::open`], in `open.rs`, reads the config first, then calls this).
    pub(crate) fn read_headers(dir: &Path, config: ModelConfig) -> Result<Checkpoint, LoadError> {
        let files = weight_files(dir)?;
        let mut tensors = BTreeMap::new();
        let mut weight_files = Vec::new();
        for (i, (path, expected)) in files.into_iter().enumerate() {
            let (len, entries) = read_header(&path, i)?;
            for name in &expected {
                if !entries.iter().any(|e| &e.name == name) {
                    return Err(LoadError::Index {
                        path: dir.join(INDEX_FILE),
                        message: format!("tensor {name:?} is listed in {} but not stored there", path.display()),
                    });
                }
            }
            for e in entries {
                if let Some(prev) = tensors.insert(e.name.clone(), e) {
                    return Err(LoadError::Safetensors {
                        path,
                        message: format!("tensor {:?} is stored in more than one file", prev.name),
                    });
                }
            }
            weight_files.push(WeightFile { path, len, gguf_data_start: None });
        }
        Ok(Checkpoint { dir: dir.to_path_buf(), config, files: weight_files, tensors, gguf: None })
    }

    /// Its `config.json`; `None` for a GGUF model, whose config is in its metadata.
    pub fn config_file(&self) -> Option<PathBuf> {
        self.gguf.is_none().then(|| self.dir.join("config.json"))
    }

    /// The entry of `name`, or [`LoadError::MissingTensor`].
    pub fn tensor(&self, name: &str) -> Result<&TensorEntry, LoadError> {
        self.tensors
            .get(name)
            .ok_or_else(|| LoadError::MissingTensor { dir: self.dir.clone(), tensor: name.to_string() })
    }

    /// Total bytes of all stored tensors.
    pub fn total_bytes(&self) -> u64 {
        self.tensors.values().map(|t| t.bytes).sum()
    }

    /// Memory-maps every file so that tensors can be read.
    pub fn map(self: &Arc<Self>) -> Result<MappedCheckpoint, LoadError> {
        let mut maps = Vec::with_capacity(self.files.len());
        for f in &self.files {
            let file = File::open(&f.path).map_err(|source| LoadError::Io { path: f.path.clone(), source })?;
            // SAFETY: the map is read-only. A checkpoint rewritten under a running node is
            // outside what mlmf guards against (as with every mmap-based loader); the length
            // is re-checked so that a file truncated since `open` is an error, not a SIGBUS
            // at the first read.
            let map =
                Arc::new(unsafe { Mmap::map(&file) }.map_err(|source| LoadError::Io { path: f.path.clone(), source })?);
            if map.len() as u64 != f.len {
                return Err(LoadError::Safetensors {
                    path: f.path.clone(),
                    message: format!("file changed size since its header was read ({} -> {} bytes)", f.len, map.len()),
                });
            }
            maps.push(map);
        }
        Ok(MappedCheckpoint { ckpt: Arc::clone(self), maps })
    }
}

/// The safetensors files of `dir`, each with the tensor names the index expects there.
fn weight_files(dir: &Path) -> Result<Vec<(PathBuf, Vec<String>)>, LoadError> {
    let single = dir.join(SINGLE_FILE);
    let index = dir.join(INDEX_FILE);
    if index.is_file() {
        return read_index(dir, &index);
    }
    if single.is_file() {
        return Ok(vec![(single, Vec::new())]);
    }
    Err(LoadError::NoWeights { dir: dir.to_path_buf() })
}

fn read_index(dir: &Path, index: &Path) -> Result<Vec<(PathBuf, Vec<String>)>, LoadError> {
    let bad = |message: String| LoadError::Index { path: index.to_path_buf(), message };
    let io = |source| LoadError::Io { path: index.to_path_buf(), source };
    let len = std::fs::metadata(index).map_err(io)?.len();
    if len > MAX_INDEX_BYTES {
        return Err(bad(format!("{len} bytes is too large for an index")));
    }
    let v: Value =
        serde_json::from_slice(&std::fs::read(index).map_err(io)?).map_err(|e| bad(format!("not valid JSON: {e}")))?;
    let map =
        v.get("weight_map").and_then(Value::as_object).ok_or_else(|| bad("missing object \"weight_map\"".into()))?;
    let mut by_file: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (tensor, file) in map {
        let file = file.as_str().ok_or_else(|| bad(format!("file of tensor {tensor:?} is not a string")))?;
        // Only plain file names in the model directory: no paths out of it.
        let plain = !file.is_empty()
            && !file.contains(['/', '\\'])
            && file != "."
            && file != ".."
            && file.ends_with(".safetensors");
        if !plain {
            return Err(bad(format!(
                "tensor {tensor:?} names file {file:?}, which is not a .safetensors file in the model directory"
            )));
        }
        by_file.entry(file.to_string()).or_default().push(tensor.clone());
    }
    if by_file.is_empty() {
        return Err(bad("weight_map is empty".into()));
    }
    Ok(by_file.into_iter().map(|(f, t)| (dir.join(f), t)).collect())
}

/// Reads and validates one safetensors header; returns the file length and its tensors.
fn read_header(path: &Path, file_index: usize) -> Result<(u64, Vec<TensorEntry>), LoadError> {
    let bad = |message: String| LoadError::Safetensors { path: path.to_path_buf(), message };
    let io = |source| LoadError::Io { path: path.to_path_buf(), source };
    let mut f = File::open(path).map_err(io)?;
    let file_len = f.metadata().map_err(io)?.len();
    if file_len < 8 {
        return Err(bad(format!("{file_len} bytes is too short for a safetensors file")));
    }
    let mut len_bytes = [0u8; 8];
    f.read_exact(&mut len_bytes).map_err(io)?;
    let header_len = u64::from_le_bytes(len_bytes);
    if header_len > MAX_HEADER_BYTES {
        return Err(bad(format!("header length {header_len} exceeds the limit of {MAX_HEADER_BYTES}")));
    }
    if header_len > file_len - 8 {
        return Err(bad(format!("header length {header_len} is longer than the file ({file_len} bytes): truncated?")));
    }
    let mut header = vec![0u8; header_len as usize];
    f.read_exact(&mut header).map_err(io)?;
    let json: Value = serde_json::from_slice(&header).map_err(|e| bad(format!("header is not valid JSON: {e}")))?;
    let obj = json.as_object().ok_or_else(|| bad("header is not a JSON object".into()))?;
    let data_start = 8 + header_len;
    let data_len = file_len - data_start;
    let mut entries = Vec::with_capacity(obj.len());
    for (name, info) in obj {
        if name == "__metadata__" {
            continue;
        }
        entries.push(parse_entry(name, info, data_start, data_len, file_index).map_err(bad)?);
    }
    // Data regions must not overlap (the format lays them out back to back).
    let mut spans: Vec<(u64, u64, &str)> =
        entries.iter().map(|e| (e.offset, e.offset + e.bytes, e.name.as_str())).collect();
    spans.sort();
    for w in spans.windows(2) {
        if w[1].0 < w[0].1 {
            return Err(bad(format!("tensors {:?} and {:?} overlap", w[0].2, w[1].2)));
        }
    }
    Ok((file_len, entries))
}

fn parse_entry(name: &str, info: &Value, data_start: u64, data_len: u64, file: usize) -> Result<TensorEntry, String> {
    let dtype_s = info.get("dtype").and_then(Value::as_str).ok_or_else(|| format!("tensor {name:?}: missing dtype"))?;
    let dtype = StoredDtype::parse(dtype_s).ok_or_else(|| format!("tensor {name:?}: unknown dtype {dtype_s:?}"))?;
    let shape: Vec<usize> = info
        .get("shape")
        .and_then(Value::as_array)
        .ok_or_else(|| format!("tensor {name:?}: missing shape"))?
        .iter()
        .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
        .collect::<Option<_>>()
        .ok_or_else(|| format!("tensor {name:?}: shape is not a list of non-negative integers"))?;
    let offsets = info
        .get("data_offsets")
        .and_then(Value::as_array)
        .filter(|a| a.len() == 2)
        .and_then(|a| Some((a[0].as_u64()?, a[1].as_u64()?)))
        .ok_or_else(|| format!("tensor {name:?}: data_offsets must be two non-negative integers"))?;
    let (begin, end) = offsets;
    if begin > end || end > data_len {
        return Err(format!(
            "tensor {name:?}: data_offsets [{begin}, {end}] out of range (data section is {data_len} bytes)"
        ));
    }
    let numel = shape.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d as u64));
    let expected = numel.and_then(|n| n.checked_mul(dtype.size() as u64));
    if expected != Some(end - begin) {
        return Err(format!(
            "tensor {name:?}: shape {shape:?} of {dtype_s} does not match its {} data bytes",
            end - begin
        ));
    }
    Ok(TensorEntry {
        name: name.to_string(),
        file,
        dtype,
        shape,
        offset: data_start + begin,
        bytes: end - begin,
        row_order: RowOrder::Stored,
    })
}

/// A checkpoint whose files are memory-mapped; reads tensors, or parts of them, as f32.
#[derive(Debug)]
pub struct MappedCheckpoint {
    ckpt: Arc<Checkpoint>,
    maps: Vec<Arc<Mmap>>,
}

impl MappedCheckpoint {
    /// The checkpoint's headers and config.
    pub fn checkpoint(&self) -> &Arc<Checkpoint> {
        &self.ckpt
    }

    /// The map of file `i` of the checkpoint, for data that keeps it (quantized weights).
    pub fn map_of(&self, i: usize) -> Option<&Arc<Mmap>> {
        self.maps.get(i)
    }

    /// The raw stored bytes of a tensor.
    pub fn raw(&self, name: &str) -> Result<(&TensorEntry, &[u8]), LoadError> {
        let e = self.ckpt.tensor(name)?;
        let map = &self.maps[e.file];
        // Offsets were validated against the file length at open and the map length at map.
        let bytes = &map[e.offset as usize..(e.offset + e.bytes) as usize];
        Ok((e, bytes))
    }

    /// Reads a whole tensor as f32 after checking its shape.
    pub fn read(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, LoadError> {
        let (e, bytes) = self.checked(name, shape)?;
        if e.row_order != RowOrder::Stored
            && let [rows, cols] = shape
        {
            return self.select(name, shape, &[0..*rows], &[0..*cols]);
        }
        decode(e, &self.ckpt.files[e.file].path, bytes)
    }

    /// Reads the concatenation of `ranges` of a 1-D tensor of length `len`.
    pub fn read_1d(&self, name: &str, len: usize, ranges: &[Range<usize>]) -> Result<Vec<f32>, LoadError> {
        self.select(name, &[len], &[0..1], ranges)
    }

    /// Reads the sub-matrix `rows × cols` (each a list of ranges, concatenated in order) of a
    /// 2-D tensor of shape `shape`, converting to f32. Only the selected bytes are touched.
    pub fn read_2d(
        &self,
        name: &str,
        shape: [usize; 2],
        rows: &[Range<usize>],
        cols: &[Range<usize>],
    ) -> Result<Vec<f32>, LoadError> {
        self.select(name, &shape, rows, cols)
    }

    /// `rows × cols` of a tensor of 1 or 2 dimensions (a 1-D tensor is one row).
    pub(crate) fn select(
        &self,
        name: &str,
        shape: &[usize],
        rows: &[Range<usize>],
        cols: &[Range<usize>],
    ) -> Result<Vec<f32>, LoadError> {
        let (e, bytes) = self.checked(name, shape)?;
        let path = &self.ckpt.files[e.file].path;
        let (n_rows, row_len) = match shape {
            [n] => (1, *n),
            [r, c] => (*r, *c),
            _ => return Err(LoadError::InvalidStage(format!("{name}: only 1-D and 2-D tensors can be sliced"))),
        };
        let fits = |rs: &[Range<usize>], n: usize| rs.iter().all(|r| r.start <= r.end && r.end <= n);
        if !fits(rows, n_rows) || !fits(cols, row_len) {
            return Err(LoadError::InvalidStage(format!(
                "selection {rows:?} x {cols:?} out of range of {name} {shape:?}"
            )));
        }
        if let (RowOrder::RopePairs { .. }, [n]) = (e.row_order, shape) {
            // A permuted bias: its elements are the rows of the matrix it belongs to.
            let mut whole = Vec::with_capacity(*n);
            decode_into(e, path, bytes, &mut whole)?;
            let model_order: Vec<f32> = (0..*n).map(|i| whole[e.row_order.stored_row(i, *n)]).collect();
            return Ok(cols.iter().flat_map(|c| model_order[c.clone()].iter().copied()).collect());
        }
        let width: usize = cols.iter().map(|c| c.len()).sum();
        let height: usize = rows.iter().map(|r| r.len()).sum();
        let mut out = Vec::with_capacity(height * width);
        if let StoredDtype::Quant(q) = e.dtype {
            // Blocks run along a row: dequantize each selected row whole, keep its columns.
            let row_bytes = q.bytes_for(row_len as u64).unwrap_or(0) as usize;
            let mut row = vec![0f32; row_len];
            for r in rows.iter().cloned().flatten() {
                let s = e.row_order.stored_row(r, n_rows) * row_bytes;
                mlmf_quant::dequantize(q, &bytes[s..s + row_bytes], &mut row).map_err(|err| LoadError::Quant {
                    path: path.clone(),
                    tensor: name.to_string(),
                    message: err.to_string(),
                })?;
                for c in cols {
                    out.extend_from_slice(&row[c.clone()]);
                }
            }
            return Ok(out);
        }
        let size = e.dtype.size();
        for r in rows.iter().cloned().flatten() {
            let r = e.row_order.stored_row(r, n_rows);
            for c in cols {
                let start = (r * row_len + c.start) * size;
                let end = (r * row_len + c.end) * size;
                decode_into(e, path, &bytes[start..end], &mut out)?;
            }
        }
        Ok(out)
    }

    fn checked(&self, name: &str, shape: &[usize]) -> Result<(&TensorEntry, &[u8]), LoadError> {
        let (e, bytes) = self.raw(name)?;
        if e.shape != shape {
            return Err(LoadError::WrongShape {
                path: self.ckpt.files[e.file].path.clone(),
                tensor: name.to_string(),
                found: e.shape.clone(),
                expected: shape.to_vec(),
            });
        }
        Ok((e, bytes))
    }
}

fn decode(e: &TensorEntry, path: &Path, bytes: &[u8]) -> Result<Vec<f32>, LoadError> {
    let mut out = Vec::with_capacity(bytes.len() / e.dtype.size());
    decode_into(e, path, bytes, &mut out)?;
    Ok(out)
}

/// Appends `bytes` (little-endian, of `e.dtype`) to `out` as f32.
fn decode_into(e: &TensorEntry, path: &Path, bytes: &[u8], out: &mut Vec<f32>) -> Result<(), LoadError> {
    match e.dtype {
        StoredDtype::F32 => out.extend(bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
        StoredDtype::F16 => out.extend(bytes.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())),
        StoredDtype::BF16 => {
            out.extend(bytes.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()))
        }
        StoredDtype::F64 => out.extend(
            bytes.chunks_exact(8).map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32),
        ),
        StoredDtype::Quant(q) => {
            let mut tmp = vec![0f32; bytes.len() / q.block_bytes() * q.block_values()];
            mlmf_quant::dequantize(q, bytes, &mut tmp).map_err(|err| LoadError::Quant {
                path: path.to_path_buf(),
                tensor: e.name.clone(),
                message: err.to_string(),
            })?;
            out.extend_from_slice(&tmp);
        }
        StoredDtype::Other(d) => {
            return Err(LoadError::UnsupportedDtype {
                path: path.to_path_buf(),
                tensor: e.name.clone(),
                dtype: d.to_string(),
            });
        }
    }
    Ok(())
}
