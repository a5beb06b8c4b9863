//! [`EmbeddingTable`]: a token embedding matrix on the device, or kept in a GGUF file's
//! quantized blocks and dequantized a row at a time when looked up.

use burn::tensor::{Device, Tensor, TensorData};

use super::ops::index_tensor;
use super::quant_linear::QuantLinear;

/// A token embedding table `[vocab, hidden]`: a tensor, or quantized rows dequantized at
/// look-up (a Q8_0 table of 49,152 × 576 stays 30 MB instead of 113 MB of f32).
#[derive(Debug, Clone)]
pub enum EmbeddingTable {
    /// On the device.
    Dense(Tensor<2>),
    /// Quantized rows, one per token.
    Quant(QuantLinear),
}

impl EmbeddingTable {
    /// The rows of `ids`, `[ids.len(), hidden]`. Ids were checked against the vocabulary
    /// (`ModelInput::validate`); one past it reads as zeros rather than panicking.
    pub fn lookup(&self, ids: &[u32], device: &Device) -> Tensor<2> {
        match self {
            EmbeddingTable::Dense(t) => t.clone().select(0, index_tensor(ids, device)),
            EmbeddingTable::Quant(q) => {
                let h = q.in_features();
                let mut out = vec![0f32; ids.len() * h];
                let m = &q.parts()[0];
                for (i, &id) in ids.iter().enumerate() {
                    if (id as usize) < m.rows() {
                        m.dequantize_row(id as usize, &mut out[i * h..(i + 1) * h]);
                    }
                }
                Tensor::from_data(TensorData::new(out, [ids.len(), h]), device)
            }
        }
    }
}
