//! Reading a stage's weights out of a mapped checkpoint onto a burn device.
//!
//! A GGUF file's quantized matrices stay in their blocks where the device computes on the
//! host ([`computes_quantized`]): the layer keeps the memory map's bytes when it uses a
//! matrix's rows as stored, and copies only the blocks of the rows it selects otherwise
//! (a tensor-parallel slice, the query and key rows that llama.cpp permutes). Elsewhere they
//! are dequantized to f32 at load.

use std::ops::Range;
use std::sync::Arc;

use burn::tensor::{Device, Tensor};
use mlmf_quant::{QMatrix, SharedBytes};

use super::checkpoint::{MappedCheckpoint, RowOrder, StoredDtype, TensorEntry};
use super::embedding_table::EmbeddingTable;
use super::error::LoadError;
use super::ops::{LayerNorm, Linear, LinearWeight, tensor, transpose_host};
use super::quant_linear::{QuantLinear, computes_quantized};

/// Reads named tensors (under a name prefix such as `transformer.`) onto a device.
pub struct WeightReader<'a> {
    /// The mapped checkpoint.
    pub mapped: &'a MappedCheckpoint,
    /// Prepended to every name.
    pub prefix: String,
    /// Where the tensors go.
    pub device: &'a Device,
}

impl WeightReader<'_> {
    fn name(&self, n: &str) -> String {
        format!("{}{n}", self.prefix)
    }

    /// A whole 1-D tensor.
    pub fn vector(&self, name: &str, len: usize) -> Result<Tensor<1>, LoadError> {
        self.vector_part(name, len, &[0..len])
    }

    /// The concatenation of `ranges` of a 1-D tensor.
    pub fn vector_part(&self, name: &str, len: usize, ranges: &[Range<usize>]) -> Result<Tensor<1>, LoadError> {
        let data = self.mapped.read_1d(&self.name(name), len, ranges)?;
        let n = data.len();
        Ok(tensor(data, [n], self.device))
    }

    /// A whole 2-D tensor as stored.
    pub fn matrix(&self, name: &str, shape: [usize; 2]) -> Result<Tensor<2>, LoadError> {
        let data = self.mapped.read(&self.name(name), &shape)?;
        Ok(tensor(data, shape, self.device))
    }

    /// A whole 2-D tensor stored `[rows, cols]`, transposed to `[cols, rows]`.
    pub fn matrix_t(&self, name: &str, shape: [usize; 2]) -> Result<Tensor<2>, LoadError> {
        let data = self.mapped.read(&self.name(name), &shape)?;
        Ok(tensor(transpose_host(&data, shape[0], shape[1]), [shape[1], shape[0]], self.device))
    }

    /// A LayerNorm `{name}.weight` / `{name}.bias` of width `len`.
    pub fn layer_norm(&self, name: &str, len: usize, eps: f64) -> Result<LayerNorm, LoadError> {
        Ok(LayerNorm {
            weight: self.vector(&format!("{name}.weight"), len)?,
            bias: self.vector(&format!("{name}.bias"), len)?,
            eps,
        })
    }

    /// A layer stored `[in, out]` (GPT-2's `Conv1D`), restricted to input rows `ins` and
    /// output columns `outs`; the bias (over `outs`) only when `bias` is true.
    pub fn linear_in_out(
        &self,
        name: &str,
        shape: [usize; 2],
        ins: &[Range<usize>],
        outs: &[Range<usize>],
        bias: bool,
    ) -> Result<Linear, LoadError> {
        let w = self.mapped.read_2d(&self.name(&format!("{name}.weight")), shape, ins, outs)?;
        let (rows, cols) = (total(ins), total(outs));
        let bias = if bias { Some(self.vector_part(&format!("{name}.bias"), shape[1], outs)?) } else { None };
        Ok(Linear::dense(tensor(w, [rows, cols], self.device), bias))
    }

    /// A layer stored `[out, in]` (`nn.Linear`), restricted to output rows `outs` and input
    /// columns `ins`, transposed to `[in, out]`; the bias only when `bias` is true.
    pub fn linear_out_in(
        &self,
        name: &str,
        shape: [usize; 2],
        outs: &[Range<usize>],
        ins: &[Range<usize>],
        bias: bool,
    ) -> Result<Linear, LoadError> {
        let bias = if bias { Some(self.vector_part(&format!("{name}.bias"), shape[0], outs)?) } else { None };
        let weight = self.name(&format!("{name}.weight"));
        if let Some(q) = self.quantized(&weight, shape, outs, ins)? {
            return Ok(Linear { weight: LinearWeight::Quant(q), bias });
        }
        let w = self.mapped.read_2d(&weight, shape, outs, ins)?;
        let (rows, cols) = (total(outs), total(ins));
        Ok(Linear::dense(tensor(transpose_host(&w, rows, cols), [cols, rows], self.device), bias))
    }

    /// An embedding table stored `[vocab, hidden]`: kept quantized where the device computes
    /// quantized, else on the device.
    pub fn embedding_table(&self, name: &str, shape: [usize; 2]) -> Result<EmbeddingTable, LoadError> {
        let full = self.name(name);
        match self.quantized(&full, shape, &[0..shape[0]], &[0..shape[1]])? {
            Some(q) => Ok(EmbeddingTable::Quant(q)),
            None => Ok(EmbeddingTable::Dense(self.matrix(name, shape)?)),
        }
    }

    /// A bias-free layer whose weight is the matrix `name` stored `[out, in]` whole (an LM
    /// head): quantized where it can be, else transposed onto the device.
    pub fn linear_whole(&self, name: &str, shape: [usize; 2]) -> Result<Linear, LoadError> {
        self.linear_out_in_weight(name, shape)
    }

    fn linear_out_in_weight(&self, name: &str, shape: [usize; 2]) -> Result<Linear, LoadError> {
        let full = self.name(name);
        if let Some(q) = self.quantized(&full, shape, &[0..shape[0]], &[0..shape[1]])? {
            return Ok(Linear { weight: LinearWeight::Quant(q), bias: None });
        }
        Ok(Linear::dense(self.matrix_t(name, shape)?, None))
    }

    /// The rows `outs` and columns `ins` of the quantized matrix `full` (stored `[out, in]`),
    /// as blocks; `None` when it is not quantized or the device dequantizes.
    fn quantized(
        &self,
        full: &str,
        shape: [usize; 2],
        outs: &[Range<usize>],
        ins: &[Range<usize>],
    ) -> Result<Option<QuantLinear>, LoadError> {
        let (e, bytes) = self.mapped.raw(full)?;
        let StoredDtype::Quant(ty) = e.dtype else { return Ok(None) };
        if !computes_quantized(self.device) {
            return Ok(None);
        }
        let path = &self.mapped.checkpoint().files[e.file].path;
        let bad = |message: String| LoadError::Quant { path: path.clone(), tensor: full.to_string(), message };
        if e.shape != shape {
            return Err(LoadError::WrongShape {
                path: path.clone(),
                tensor: full.to_string(),
                found: e.shape.clone(),
                expected: shape.to_vec(),
            });
        }
        let map = self.mapped.map_of(e.file).ok_or_else(|| bad("its file is not mapped".into()))?;
        let shared: SharedBytes = Arc::clone(map) as SharedBytes;
        let start = e.offset as usize;
        debug_assert_eq!(bytes.len() as u64, e.bytes);
        let m = QMatrix::new(ty, shape[0], shape[1], shared, start..start + bytes.len())
            .map_err(|err| bad(err.to_string()))?;
        let m = m.select_rows(&stored_rows(e, shape[0], outs));
        let whole = matches!(ins, [r] if r.start == 0 && r.end == shape[1]);
        let m = if whole {
            m
        } else {
            let (m, reblocked) = m.select_cols(ins).map_err(|err| bad(err.to_string()))?;
            if reblocked {
                tracing::info!(
                    tensor = full,
                    from = ty.name(),
                    to = m.ty().name(),
                    "columns cut inside {} blocks: the slice is re-blocked",
                    ty.name()
                );
            }
            m
        };
        Ok(QuantLinear::new(vec![m]))
    }
}

/// The stored rows of the model's rows `outs` of `e`, as ranges (one range per selected range
/// when the rows are stored in order, one per row otherwise).
fn stored_rows(e: &TensorEntry, rows: usize, outs: &[Range<usize>]) -> Vec<Range<usize>> {
    if e.row_order == RowOrder::Stored {
        return outs.to_vec();
    }
    let mut ranges: Vec<Range<usize>> = Vec::new();
    for r in outs.iter().cloned().flatten() {
        let s = e.row_order.stored_row(r, rows);
        match ranges.last_mut() {
            Some(last) if last.end == s => last.end += 1,
            _ => ranges.push(s..s + 1),
        }
    }
    ranges
}

fn total(ranges: &[Range<usize>]) -> usize {
    ranges.iter().map(|r| r.len()).sum()
}
