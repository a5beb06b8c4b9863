//! [`TensorInfo`]: one tensor as a header describes it, and reading the tensor-info section.

use std::collections::HashSet;
use std::io::Read;

use mlmf_quant::QuantType;

use crate::GgufError;
use crate::input::Reader;
use crate::limits::{MAX_DIMS, MAX_TENSOR_NAME_BYTES};

/// One tensor as a header describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// Its name (`blk.0.attn_q.weight`).
    pub name: String,
    /// Its dimensions in GGUF order: `dims[0]` is the innermost (contiguous, a row's length),
    /// the reverse of PyTorch's shape. One to four of them, none zero.
    pub dims: Vec<u64>,
    /// Its type.
    pub ty: QuantType,
    /// Index of the file holding its data in [`crate::GgufModel::files`] (0 in a lone
    /// [`crate::GgufFile`]).
    pub file: usize,
    /// Absolute byte offset of its data in that file.
    pub offset: u64,
    /// Bytes of its data.
    pub bytes: u64,
}

impl TensorInfo {
    /// Its number of values.
    pub fn elements(&self) -> u64 {
        // Checked when the header was read: the product fits an i64.
        self.dims.iter().product()
    }

    /// Its shape the PyTorch way, outermost first (`[rows, row_len]` for a matrix).
    pub fn shape(&self) -> Vec<u64> {
        self.dims.iter().rev().copied().collect()
    }

    /// The byte range of its data in its file.
    pub fn range(&self) -> std::ops::Range<u64> {
        self.offset..self.offset + self.bytes
    }
}

/// A tensor as read, before the data section's start is known.
pub(crate) struct RawTensor {
    pub(crate) info: TensorInfo,
    /// Offset from the start of the data section, as stored.
    pub(crate) relative: u64,
}

/// Reads `count` tensor infos, checking names, shapes and types.
pub(crate) fn read_tensor_infos<R: Read>(r: &mut Reader<'_, R>, count: usize) -> Result<Vec<RawTensor>, GgufError> {
    let mut tensors = Vec::with_capacity(count);
    let mut names = HashSet::with_capacity(count);
    for i in 0..count {
        let name = r.string(MAX_TENSOR_NAME_BYTES, &|| format!("the name of tensor #{i}"))?;
        if name.is_empty() {
            return Err(GgufError::BadTensorName {
                path: r.path().to_path_buf(),
                index: i as u64,
                message: "has an empty name".to_string(),
            });
        }
        if !names.insert(name.clone()) {
            return Err(GgufError::DuplicateTensor { path: r.path().to_path_buf(), tensor: name });
        }
        let (dims, ty, bytes) = read_shape_and_type(r, &name)?;
        let relative = r.u64(&|| format!("the offset of tensor `{name}`"))?;
        tensors.push(RawTensor { info: TensorInfo { name, dims, ty, file: 0, offset: 0, bytes }, relative });
    }
    Ok(tensors)
}

/// Reads a tensor's dimensions and type; returns them with its size in bytes.
fn read_shape_and_type<R: Read>(r: &mut Reader<'_, R>, name: &str) -> Result<(Vec<u64>, QuantType, u64), GgufError> {
    let path = r.path();
    let bad = |message: String| GgufError::BadShape { path: path.to_path_buf(), tensor: name.to_string(), message };
    let n_dims = r.u32(&|| format!("the dimension count of tensor `{name}`"))?;
    if n_dims == 0 || n_dims > MAX_DIMS {
        return Err(bad(format!("{n_dims} dimensions (GGUF allows 1 to {MAX_DIMS})")));
    }
    let mut dims = Vec::with_capacity(n_dims as usize);
    for d in 0..n_dims {
        dims.push(r.u64(&|| format!("dimension {d} of tensor `{name}`"))?);
    }
    if dims.contains(&0) {
        return Err(bad(format!("dimensions {dims:?} include a zero")));
    }
    // ggml counts elements in an i64.
    let elements = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d).filter(|&n| n <= i64::MAX as u64))
        .ok_or_else(|| bad(format!("dimensions {dims:?} hold more than 2^63 values")))?;
    let id = r.u32(&|| format!("the type of tensor `{name}`"))?;
    let ty = QuantType::from_ggml_id(id).ok_or_else(|| GgufError::UnknownTensorType {
        path: path.to_path_buf(),
        tensor: name.to_string(),
        id,
    })?;
    let block = ty.block_values() as u64;
    if dims[0] % block != 0 {
        return Err(bad(format!(
            "a row of {} values is not a whole number of {} blocks of {block} values",
            dims[0],
            ty.name()
        )));
    }
    let bytes = ty
        .bytes_for(elements)
        .ok_or_else(|| bad(format!("{elements} values of {} overflow a byte count", ty.name())))?;
    Ok((dims, ty, bytes))
}

/// ggml's name for type id `id` (`IQ2_XXS`), including types mlmf does not compute with;
/// `None` for ids ggml does not define. Removed types are marked so.
pub fn ggml_type_name(id: u32) -> Option<&'static str> {
    Some(match id {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        4 => "Q4_2 (removed from ggml)",
        5 => "Q4_3 (removed from ggml)",
        6 => "Q5_0",
        7 => "Q5_1",
        8 => "Q8_0",
        9 => "Q8_1",
        10 => "Q2_K",
        11 => "Q3_K",
        12 => "Q4_K",
        13 => "Q5_K",
        14 => "Q6_K",
        15 => "Q8_K",
        16 => "IQ2_XXS",
        17 => "IQ2_XS",
        18 => "IQ3_XXS",
        19 => "IQ1_S",
        20 => "IQ4_NL",
        21 => "IQ3_S",
        22 => "IQ2_S",
        23 => "IQ4_XS",
        24 => "I8",
        25 => "I16",
        26 => "I32",
        27 => "I64",
        28 => "F64",
        29 => "IQ1_M",
        30 => "BF16",
        31 => "Q4_0_4_4 (removed from ggml)",
        32 => "Q4_0_4_8 (removed from ggml)",
        33 => "Q4_0_8_8 (removed from ggml)",
        34 => "TQ1_0",
        35 => "TQ2_0",
        36 => "IQ4_NL_4_4 (removed from ggml)",
        37 => "IQ4_NL_4_8 (removed from ggml)",
        38 => "IQ4_NL_8_8 (removed from ggml)",
        39 => "MXFP4",
        40 => "NVFP4",
        41 => "Q1_0",
        _ => return None,
    })
}

/// The end of a message about a tensor of type id `id` that mlmf cannot use.
pub(crate) fn type_hint(id: u32) -> String {
    let supported: Vec<&str> = (0..64).filter_map(QuantType::from_ggml_id).map(QuantType::name).collect();
    let supported = supported.join(", ");
    match ggml_type_name(id) {
        Some(name) => format!(
            "has type {name} (ggml id {id}), which mlmf does not compute with; use a file quantized to \
             one of {supported}"
        ),
        None => format!("has type id {id}, which is no ggml type; the file is corrupt or newer than mlmf"),
    }
}
