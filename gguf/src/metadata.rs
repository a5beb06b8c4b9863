//! Reading the metadata section: keys and values of every GGUF type, arrays widened into
//! [`MetaValue`]'s vectors.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use crate::input::{Reader, What};
use crate::limits::{MAX_ARRAY_LEN, MAX_KEY_BYTES, MAX_METADATA_MEMORY, MAX_NESTING, MAX_STRING_BYTES};
use crate::{GgufError, MetaValue, ValueType};

/// Reads `count` key-value pairs.
pub(crate) fn read_metadata<R: Read>(
    r: &mut Reader<'_, R>,
    count: usize,
) -> Result<BTreeMap<String, MetaValue>, GgufError> {
    let mut map = BTreeMap::new();
    let mut budget = Budget { path: r.path(), used: 0 };
    for i in 0..count {
        let key = r.string(MAX_KEY_BYTES, &|| format!("metadata key #{i}"))?;
        if key.is_empty() {
            return Err(GgufError::BadMetadata {
                path: r.path().to_path_buf(),
                key,
                message: format!("key #{i} is empty"),
            });
        }
        if map.contains_key(&key) {
            return Err(GgufError::DuplicateKey { path: r.path().to_path_buf(), key });
        }
        budget.take(key.len() as u64 + 64, &key)?;
        let value = read_value(r, &key, &mut budget)?;
        map.insert(key, value);
    }
    Ok(map)
}

/// Memory the metadata takes once read, counted before each allocation.
struct Budget<'p> {
    path: &'p Path,
    used: u64,
}

impl Budget<'_> {
    fn take(&mut self, bytes: u64, key: &str) -> Result<(), GgufError> {
        let used = self.used.saturating_add(bytes);
        if used > MAX_METADATA_MEMORY {
            return Err(GgufError::TooLarge {
                path: self.path.to_path_buf(),
                what: format!("the metadata's size in memory (bytes, at key `{key}`)"),
                count: used,
                limit: MAX_METADATA_MEMORY,
            });
        }
        self.used = used;
        Ok(())
    }
}

/// Reads a value type id.
fn value_type<R: Read>(r: &mut Reader<'_, R>, key: &str, what: What) -> Result<ValueType, GgufError> {
    let id = r.u32(what)?;
    ValueType::from_id(id).ok_or_else(|| GgufError::UnknownValueType {
        path: r.path().to_path_buf(),
        key: key.to_string(),
        id,
    })
}

/// Reads one value: its type id, then the value.
fn read_value<R: Read>(r: &mut Reader<'_, R>, key: &str, budget: &mut Budget) -> Result<MetaValue, GgufError> {
    let ty = value_type(r, key, &|| format!("the type of `{key}`"))?;
    let what = || format!("the value of `{key}`");
    Ok(match ty {
        ValueType::String => {
            let len = r.string_len(MAX_STRING_BYTES, &what)?;
            budget.take(len, key)?;
            let bytes = r.bytes(len, &what)?;
            let s = String::from_utf8(bytes)
                .map_err(|_| GgufError::NotUtf8 { path: r.path().to_path_buf(), what: what() })?;
            MetaValue::String(s)
        }
        ValueType::Array => read_array(r, key, budget)?,
        // As llama.cpp reads it: any byte but 0 is true.
        ValueType::Bool => MetaValue::Bool(r.array::<1>(&what)?[0] != 0),
        ValueType::F32 => MetaValue::F32(f32::from_le_bytes(r.array(&what)?)),
        ValueType::F64 => MetaValue::F64(f64::from_le_bytes(r.array(&what)?)),
        ValueType::U8 => MetaValue::U8(r.array::<1>(&what)?[0]),
        ValueType::I8 => MetaValue::I8(i8::from_le_bytes(r.array(&what)?)),
        ValueType::U16 => MetaValue::U16(u16::from_le_bytes(r.array(&what)?)),
        ValueType::I16 => MetaValue::I16(i16::from_le_bytes(r.array(&what)?)),
        ValueType::U32 => MetaValue::U32(u32::from_le_bytes(r.array(&what)?)),
        ValueType::I32 => MetaValue::I32(i32::from_le_bytes(r.array(&what)?)),
        ValueType::U64 => MetaValue::U64(u64::from_le_bytes(r.array(&what)?)),
        ValueType::I64 => MetaValue::I64(i64::from_le_bytes(r.array(&what)?)),
    })
}

/// Reads an array's element type and length, checking the length against the bytes left.
fn array_header<R: Read>(r: &mut Reader<'_, R>, key: &str) -> Result<(ValueType, usize), GgufError> {
    let elem = value_type(r, key, &|| format!("the element type of array `{key}`"))?;
    let n = r.u64(&|| format!("the length of array `{key}`"))?;
    let n = r.count(n, elem.min_size(), MAX_ARRAY_LEN, &|| format!("the length of array `{key}`"))?;
    Ok((elem, n))
}

/// Reads an array (after its type id `array`).
fn read_array<R: Read>(r: &mut Reader<'_, R>, key: &str, budget: &mut Budget) -> Result<MetaValue, GgufError> {
    let (elem, n) = array_header(r, key)?;
    let item = |j: usize| move || format!("item {j} of array `{key}`");
    Ok(match elem {
        ValueType::String => {
            budget.take(n as u64 * size_of::<String>() as u64, key)?;
            let mut items = Vec::with_capacity(n);
            for j in 0..n {
                let what = item(j);
                let len = r.string_len(MAX_STRING_BYTES, &what)?;
                budget.take(len, key)?;
                let bytes = r.bytes(len, &what)?;
                let s = String::from_utf8(bytes)
                    .map_err(|_| GgufError::NotUtf8 { path: r.path().to_path_buf(), what: what() })?;
                items.push(s);
            }
            MetaValue::StringArray(items)
        }
        ValueType::F32 | ValueType::F64 => {
            budget.take(n as u64 * 8, key)?;
            let mut items = Vec::with_capacity(n);
            for j in 0..n {
                items.push(match elem {
                    ValueType::F32 => f32::from_le_bytes(r.array(&item(j))?) as f64,
                    _ => f64::from_le_bytes(r.array(&item(j))?),
                });
            }
            MetaValue::FloatArray(items)
        }
        ValueType::Bool => {
            budget.take(n as u64, key)?;
            let mut items = Vec::with_capacity(n);
            for j in 0..n {
                items.push(r.array::<1>(&item(j))?[0] != 0);
            }
            MetaValue::BoolArray(items)
        }
        ValueType::Array => {
            for _ in 0..n {
                skip_array(r, key, 1)?;
            }
            MetaValue::NestedArray(n)
        }
        int => {
            budget.take(n as u64 * 8, key)?;
            let mut items = Vec::with_capacity(n);
            for j in 0..n {
                items.push(read_int(r, int, key, j)?);
            }
            MetaValue::IntArray(items)
        }
    })
}

/// Reads one element of an integer array, widened to `i64`.
fn read_int<R: Read>(r: &mut Reader<'_, R>, ty: ValueType, key: &str, j: usize) -> Result<i64, GgufError> {
    let what = || format!("item {j} of array `{key}`");
    Ok(match ty {
        ValueType::U8 => r.array::<1>(&what)?[0].into(),
        ValueType::I8 => i8::from_le_bytes(r.array(&what)?).into(),
        ValueType::U16 => u16::from_le_bytes(r.array(&what)?).into(),
        ValueType::I16 => i16::from_le_bytes(r.array(&what)?).into(),
        ValueType::U32 => u32::from_le_bytes(r.array(&what)?).into(),
        ValueType::I32 => i32::from_le_bytes(r.array(&what)?).into(),
        ValueType::I64 => i64::from_le_bytes(r.array(&what)?),
        _ => {
            let v = u64::from_le_bytes(r.array(&what)?);
            // Wrapping would hand the caller a wrong number without a word.
            i64::try_from(v).map_err(|_| GgufError::BadMetadata {
                path: r.path().to_path_buf(),
                key: key.to_string(),
                message: format!("item {j} of this u64 array is {v}, larger than an i64 can hold"),
            })?
        }
    })
}

/// Passes over an array inside an array (which no model uses), `depth` levels down.
fn skip_array<R: Read>(r: &mut Reader<'_, R>, key: &str, depth: u32) -> Result<(), GgufError> {
    if depth > MAX_NESTING {
        return Err(GgufError::BadMetadata {
            path: r.path().to_path_buf(),
            key: key.to_string(),
            message: format!("arrays nested more than {MAX_NESTING} deep"),
        });
    }
    let (elem, n) = array_header(r, key)?;
    let what = || format!("a nested array of `{key}`");
    match elem {
        ValueType::String => {
            for _ in 0..n {
                let len = r.string_len(MAX_STRING_BYTES, &what)?;
                r.skip(len, &what)?;
            }
        }
        ValueType::Array => {
            for _ in 0..n {
                skip_array(r, key, depth + 1)?;
            }
        }
        // `count` checked n * size against the bytes left, so this cannot overflow.
        fixed => r.skip(n as u64 * fixed.min_size(), &what)?,
    }
    Ok(())
}
