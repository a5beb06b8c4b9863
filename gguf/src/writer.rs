//! [`GgufWriter`]: writes GGUF files, for tests and tools.
//!
//! It writes what it is given as llama.cpp would lay it out (metadata in order, tensor data
//! each at the next multiple of the alignment) and checks nothing: a key written twice, data
//! of the wrong length or a tensor type mlmf does not compute with all go into the file as
//! given, which is what tests of the reader need.

use std::io;
use std::path::Path;

use mlmf_quant::QuantType;

use crate::file::{ALIGNMENT_KEY, DEFAULT_ALIGNMENT};
use crate::{MetaValue, ValueType};

/// A writer of GGUF files (v2 or v3, little-endian), for tests and tools.
///
/// ```
/// use mlmf_gguf::{GgufFile, GgufWriter, MetaValue};
/// use mlmf_quant::QuantType;
///
/// let bytes = GgufWriter::new(3)
///     .metadata("general.architecture", MetaValue::String("llama".into()))
///     .metadata("llama.block_count", MetaValue::U32(1))
///     .tensor("output_norm.weight", QuantType::F32, &[4], vec![0; 16])
///     .to_bytes();
/// let file = GgufFile::parse("test.gguf".as_ref(), &bytes)?;
/// assert_eq!(file.tensors[0].dims, vec![4]);
/// # Ok::<(), mlmf_gguf::GgufError>(())
/// ```
#[derive(Debug, Clone)]
pub struct GgufWriter {
    version: u32,
    alignment: Option<u64>,
    metadata: Vec<(String, MetaValue, Option<ValueType>)>,
    tensors: Vec<WriterTensor>,
}

/// A tensor to write.
#[derive(Debug, Clone)]
struct WriterTensor {
    name: String,
    type_id: u32,
    dims: Vec<u64>,
    data: Vec<u8>,
}

impl GgufWriter {
    /// An empty file of GGUF version `version` (2 or 3 for a file the reader accepts; any
    /// other number is written as given).
    pub fn new(version: u32) -> Self {
        GgufWriter { version, alignment: None, metadata: Vec::new(), tensors: Vec::new() }
    }

    /// Appends a key-value pair. Integer arrays are written as `int32` when every value fits,
    /// else `int64`; float arrays as `float32` when every value is exact in it, else
    /// `float64`; `NestedArray(n)` as `n` empty arrays.
    pub fn metadata(mut self, key: &str, value: MetaValue) -> Self {
        self.metadata.push((key.to_string(), value, None));
        self
    }

    /// Appends an array with elements of type `elem` (an `IntArray` as `uint8` ... `int64`,
    /// a `FloatArray` as `float32` or `float64`); values are cast (`as`) to it.
    ///
    /// # Panics
    /// When `value` is not an array that `elem` can hold: a mistake in the calling code.
    pub fn metadata_array(mut self, key: &str, elem: ValueType, value: MetaValue) -> Self {
        let fits = match (&value, elem) {
            (MetaValue::IntArray(_), t) => matches!(
                t,
                ValueType::U8
                    | ValueType::I8
                    | ValueType::U16
                    | ValueType::I16
                    | ValueType::U32
                    | ValueType::I32
                    | ValueType::U64
                    | ValueType::I64
            ),
            (MetaValue::FloatArray(_), t) => matches!(t, ValueType::F32 | ValueType::F64),
            (MetaValue::StringArray(_), t) => t == ValueType::String,
            (MetaValue::BoolArray(_), t) => t == ValueType::Bool,
            (MetaValue::NestedArray(_), t) => t == ValueType::Array,
            _ => false,
        };
        assert!(fits, "GgufWriter::metadata_array: a {} cannot be written as {elem:?}", value.type_name());
        self.metadata.push((key.to_string(), value, Some(elem)));
        self
    }

    /// Sets the alignment of the data section and of each tensor, and writes it as
    /// `general.alignment` (a `u32`, before every other key). Without it the alignment is 32
    /// and the key is not written. A value that is not a power of two makes a file readers
    /// refuse.
    pub fn alignment(mut self, alignment: u64) -> Self {
        self.alignment = Some(alignment);
        self
    }

    /// Appends a tensor of type `ty` with dimensions `dims` (GGUF order, innermost first) and
    /// its raw data.
    pub fn tensor(self, name: &str, ty: QuantType, dims: &[u64], data: Vec<u8>) -> Self {
        self.tensor_raw(name, ty.ggml_id(), dims, data)
    }

    /// Appends a tensor of ggml type id `type_id`, which may be one mlmf does not compute with.
    pub fn tensor_raw(mut self, name: &str, type_id: u32, dims: &[u64], data: Vec<u8>) -> Self {
        self.tensors.push(WriterTensor { name: name.to_string(), type_id, dims: dims.to_vec(), data });
        self
    }

    /// The file's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        // max(1): an alignment of 0 (written to test the reader) must not divide by zero here.
        let alignment = self.alignment.unwrap_or(DEFAULT_ALIGNMENT).max(1);
        let mut out = Vec::new();
        out.extend_from_slice(b"GGUF");
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        let n_keys = self.metadata.len() + usize::from(self.alignment.is_some());
        out.extend_from_slice(&(n_keys as u64).to_le_bytes());
        if let Some(a) = self.alignment {
            let value = u32::try_from(a).map_or(MetaValue::U64(a), MetaValue::U32);
            write_pair(&mut out, ALIGNMENT_KEY, &value, None);
        }
        for (key, value, elem) in &self.metadata {
            write_pair(&mut out, key, value, *elem);
        }
        let mut offset = 0u64;
        for t in &self.tensors {
            write_string(&mut out, &t.name);
            out.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&t.type_id.to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
            offset = (offset + t.data.len() as u64).next_multiple_of(alignment);
        }
        pad(&mut out, alignment);
        for t in &self.tensors {
            out.extend_from_slice(&t.data);
            pad(&mut out, alignment);
        }
        out
    }

    /// Writes the file to `path`.
    pub fn write(&self, path: &Path) -> io::Result<()> {
        std::fs::write(path, self.to_bytes())
    }
}

/// Pads `out` with zeros to a multiple of `alignment`.
fn pad(out: &mut Vec<u8>, alignment: u64) {
    let len = (out.len() as u64).next_multiple_of(alignment);
    out.resize(len as usize, 0);
}

fn write_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn write_type(out: &mut Vec<u8>, ty: ValueType) {
    out.extend_from_slice(&ty.id().to_le_bytes());
}

/// Writes a key, the value's type and the value.
fn write_pair(out: &mut Vec<u8>, key: &str, value: &MetaValue, elem: Option<ValueType>) {
    write_string(out, key);
    let scalar = |out: &mut Vec<u8>, ty: ValueType, bytes: &[u8]| {
        write_type(out, ty);
        out.extend_from_slice(bytes);
    };
    match value {
        MetaValue::U8(v) => scalar(out, ValueType::U8, &v.to_le_bytes()),
        MetaValue::I8(v) => scalar(out, ValueType::I8, &v.to_le_bytes()),
        MetaValue::U16(v) => scalar(out, ValueType::U16, &v.to_le_bytes()),
        MetaValue::I16(v) => scalar(out, ValueType::I16, &v.to_le_bytes()),
        MetaValue::U32(v) => scalar(out, ValueType::U32, &v.to_le_bytes()),
        MetaValue::I32(v) => scalar(out, ValueType::I32, &v.to_le_bytes()),
        MetaValue::U64(v) => scalar(out, ValueType::U64, &v.to_le_bytes()),
        MetaValue::I64(v) => scalar(out, ValueType::I64, &v.to_le_bytes()),
        MetaValue::F32(v) => scalar(out, ValueType::F32, &v.to_le_bytes()),
        MetaValue::F64(v) => scalar(out, ValueType::F64, &v.to_le_bytes()),
        MetaValue::Bool(v) => scalar(out, ValueType::Bool, &[u8::from(*v)]),
        MetaValue::String(s) => {
            write_type(out, ValueType::String);
            write_string(out, s);
        }
        array => {
            write_type(out, ValueType::Array);
            write_array(out, array, elem);
        }
    }
}

/// Writes an array's element type, length and elements.
fn write_array(out: &mut Vec<u8>, value: &MetaValue, elem: Option<ValueType>) {
    let header = |out: &mut Vec<u8>, ty: ValueType, n: usize| {
        write_type(out, ty);
        out.extend_from_slice(&(n as u64).to_le_bytes());
    };
    match value {
        MetaValue::StringArray(items) => {
            header(out, ValueType::String, items.len());
            for s in items {
                write_string(out, s);
            }
        }
        MetaValue::BoolArray(items) => {
            header(out, ValueType::Bool, items.len());
            out.extend(items.iter().map(|&b| u8::from(b)));
        }
        MetaValue::NestedArray(n) => {
            header(out, ValueType::Array, *n);
            for _ in 0..*n {
                header(out, ValueType::U8, 0);
            }
        }
        MetaValue::IntArray(items) => {
            let fits_i32 = items.iter().all(|&v| i32::try_from(v).is_ok());
            let ty = elem.unwrap_or(if fits_i32 { ValueType::I32 } else { ValueType::I64 });
            header(out, ty, items.len());
            for &v in items {
                match ty {
                    ValueType::U8 => out.push(v as u8),
                    ValueType::I8 => out.push(v as i8 as u8),
                    ValueType::U16 => out.extend_from_slice(&(v as u16).to_le_bytes()),
                    ValueType::I16 => out.extend_from_slice(&(v as i16).to_le_bytes()),
                    ValueType::U32 => out.extend_from_slice(&(v as u32).to_le_bytes()),
                    ValueType::I32 => out.extend_from_slice(&(v as i32).to_le_bytes()),
                    ValueType::U64 => out.extend_from_slice(&(v as u64).to_le_bytes()),
                    _ => out.extend_from_slice(&v.to_le_bytes()),
                }
            }
        }
        MetaValue::FloatArray(items) => {
            let exact_f32 = items.iter().all(|&v| v.is_nan() || f64::from(v as f32) == v);
            let ty = elem.unwrap_or(if exact_f32 { ValueType::F32 } else { ValueType::F64 });
            header(out, ty, items.len());
            for &v in items {
                match ty {
                    ValueType::F32 => out.extend_from_slice(&(v as f32).to_le_bytes()),
                    _ => out.extend_from_slice(&v.to_le_bytes()),
                }
            }
        }
        // Scalars are written by `write_pair`.
        _ => {}
    }
}
