//! [`MetaValue`]: one metadata value of a GGUF file.

/// A metadata value. Arrays are stored by element type, so that a vocabulary of 262,144
/// strings or scores is one vector, not 262,144 enum values.
#[derive(Debug, Clone, PartialEq)]
pub enum MetaValue {
    /// `uint8`.
    U8(u8),
    /// `int8`.
    I8(i8),
    /// `uint16`.
    U16(u16),
    /// `int16`.
    I16(i16),
    /// `uint32`.
    U32(u32),
    /// `int32`.
    I32(i32),
    /// `uint64`.
    U64(u64),
    /// `int64`.
    I64(i64),
    /// `float32`.
    F32(f32),
    /// `float64`.
    F64(f64),
    /// `bool`.
    Bool(bool),
    /// `string` (UTF-8).
    String(String),
    /// An array of strings.
    StringArray(Vec<String>),
    /// An array of integers of any width, widened.
    IntArray(Vec<i64>),
    /// An array of floats of either width, widened.
    FloatArray(Vec<f64>),
    /// An array of booleans.
    BoolArray(Vec<bool>),
    /// An array of arrays (allowed by the format, used by no model we know): its length only.
    NestedArray(usize),
}

impl MetaValue {
    /// A short name of the value's type for messages (`u32`, `string`, `array of strings`).
    pub fn type_name(&self) -> &'static str {
        match self {
            MetaValue::U8(_) => "u8",
            MetaValue::I8(_) => "i8",
            MetaValue::U16(_) => "u16",
            MetaValue::I16(_) => "i16",
            MetaValue::U32(_) => "u32",
            MetaValue::I32(_) => "i32",
            MetaValue::U64(_) => "u64",
            MetaValue::I64(_) => "i64",
            MetaValue::F32(_) => "f32",
            MetaValue::F64(_) => "f64",
            MetaValue::Bool(_) => "bool",
            MetaValue::String(_) => "string",
            MetaValue::StringArray(_) => "array of strings",
            MetaValue::IntArray(_) => "array of integers",
            MetaValue::FloatArray(_) => "array of floats",
            MetaValue::BoolArray(_) => "array of bools",
            MetaValue::NestedArray(_) => "array of arrays",
        }
    }

    /// The value as an integer, if it is one of the integer types (widened to `i128` so that
    /// every `u64` and `i64` fits).
    pub fn as_integer(&self) -> Option<i128> {
        Some(match *self {
            MetaValue::U8(v) => v.into(),
            MetaValue::I8(v) => v.into(),
            MetaValue::U16(v) => v.into(),
            MetaValue::I16(v) => v.into(),
            MetaValue::U32(v) => v.into(),
            MetaValue::I32(v) => v.into(),
            MetaValue::U64(v) => v.into(),
            MetaValue::I64(v) => v.into(),
            _ => return None,
        })
    }

    /// The number of elements, if the value is an array.
    pub fn array_len(&self) -> Option<usize> {
        match self {
            MetaValue::StringArray(v) => Some(v.len()),
            MetaValue::IntArray(v) => Some(v.len()),
            MetaValue::FloatArray(v) => Some(v.len()),
            MetaValue::BoolArray(v) => Some(v.len()),
            MetaValue::NestedArray(n) => Some(*n),
            _ => None,
        }
    }
}

/// GGUF's value type ids (`gguf_type`), as they appear in a file before each value and
/// before the elements of an array.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValueType {
    /// `uint8`, id 0.
    U8,
    /// `int8`, id 1.
    I8,
    /// `uint16`, id 2.
    U16,
    /// `int16`, id 3.
    I16,
    /// `uint32`, id 4.
    U32,
    /// `int32`, id 5.
    I32,
    /// `float32`, id 6.
    F32,
    /// `bool` (one byte), id 7.
    Bool,
    /// `string` (u64 length, then UTF-8 bytes), id 8.
    String,
    /// `array` (element type, u64 count, then elements), id 9.
    Array,
    /// `uint64`, id 10.
    U64,
    /// `int64`, id 11.
    I64,
    /// `float64`, id 12.
    F64,
}

impl ValueType {
    /// The type of id `id`, `None` for ids GGUF does not define.
    pub fn from_id(id: u32) -> Option<ValueType> {
        Some(match id {
            0 => ValueType::U8,
            1 => ValueType::I8,
            2 => ValueType::U16,
            3 => ValueType::I16,
            4 => ValueType::U32,
            5 => ValueType::I32,
            6 => ValueType::F32,
            7 => ValueType::Bool,
            8 => ValueType::String,
            9 => ValueType::Array,
            10 => ValueType::U64,
            11 => ValueType::I64,
            12 => ValueType::F64,
            _ => return None,
        })
    }

    /// The id written in files.
    pub fn id(self) -> u32 {
        match self {
            ValueType::U8 => 0,
            ValueType::I8 => 1,
            ValueType::U16 => 2,
            ValueType::I16 => 3,
            ValueType::U32 => 4,
            ValueType::I32 => 5,
            ValueType::F32 => 6,
            ValueType::Bool => 7,
            ValueType::String => 8,
            ValueType::Array => 9,
            ValueType::U64 => 10,
            ValueType::I64 => 11,
            ValueType::F64 => 12,
        }
    }

    /// The fewest bytes one value of this type takes in a file: its size for the fixed-size
    /// types, the length prefix of a string, the element type and count of an array. Counts
    /// are checked against the bytes left with it before anything is allocated.
    pub fn min_size(self) -> u64 {
        match self {
            ValueType::U8 | ValueType::I8 | ValueType::Bool => 1,
            ValueType::U16 | ValueType::I16 => 2,
            ValueType::U32 | ValueType::I32 | ValueType::F32 => 4,
            ValueType::U64 | ValueType::I64 | ValueType::F64 | ValueType::String => 8,
            ValueType::Array => 12,
        }
    }
}
