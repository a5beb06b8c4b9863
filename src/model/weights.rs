//! Reading a stage's weights out of a mapped checkpoint onto a burn device.

use std::ops::Range;

use burn::tensor::{Device, Tensor};

use super::checkpoint::MappedCheckpoint;
use super::error::LoadError;
use super::ops::{LayerNorm, Linear, tensor, transpose_host};

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
        Ok(Linear { weight: tensor(w, [rows, cols], self.device), bias })
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
        let w = self.mapped.read_2d(&self.name(&format!("{name}.weight")), shape, outs, ins)?;
        let (rows, cols) = (total(outs), total(ins));
        let bias = if bias { Some(self.vector_part(&format!("{name}.bias"), shape[0], outs)?) } else { None };
        Ok(Linear { weight: tensor(transpose_host(&w, rows, cols), [cols, rows], self.device), bias })
    }
}

fn total(ranges: &[Range<usize>]) -> usize {
    ranges.iter().map(|r| r.len()).sum()
}
