//! Named output tensors on the host, and writing them as safetensors.

use std::collections::BTreeMap;
use std::path::Path;

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::model::activation::to_host;
use crate::model::{ForwardError, HeadOutput};

/// An f32 tensor on the host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostTensor {
    /// Shape, row-major.
    pub shape: Vec<usize>,
    /// Elements.
    pub data: Vec<f32>,
}

impl HostTensor {
    /// Reads a tensor back to the host.
    pub fn from_tensor<const D: usize>(t: Tensor<D>) -> Result<HostTensor, ForwardError> {
        let (shape, data) = to_host(t)?;
        Ok(HostTensor { shape, data })
    }
}

/// A run's outputs by name (`logits`, `last_hidden_state`, `pooler_output`, `block_output.K`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunOutputs {
    /// The tensors.
    pub tensors: BTreeMap<String, HostTensor>,
}

impl RunOutputs {
    /// The model's outputs from a head: `last_hidden_state`, and `logits` or `pooler_output`
    /// where the model has them.
    pub fn from_head(head: HeadOutput) -> Result<RunOutputs, ForwardError> {
        let mut out = RunOutputs::default();
        out.tensors.insert("last_hidden_state".into(), HostTensor::from_tensor(head.last_hidden_state)?);
        if let Some(l) = head.logits {
            out.tensors.insert("logits".into(), HostTensor::from_tensor(l)?);
        }
        if let Some(p) = head.pooler_output {
            out.tensors.insert("pooler_output".into(), HostTensor::from_tensor(p)?);
        }
        Ok(out)
    }

    /// Serialises every tensor as F32 safetensors bytes.
    pub fn to_safetensors(&self) -> Result<Vec<u8>, safetensors::SafeTensorError> {
        let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = self
            .tensors
            .iter()
            .map(|(k, t)| (k.clone(), t.shape.clone(), t.data.iter().flat_map(|v| v.to_le_bytes()).collect()))
            .collect();
        let views = bytes
            .iter()
            .map(|(k, shape, b)| {
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), b).map(|v| (k.clone(), v))
            })
            .collect::<Result<Vec<_>, _>>()?;
        safetensors::serialize(views, None)
    }

    /// Writes [`Self::to_safetensors`] to `path`.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let bytes = self.to_safetensors().map_err(std::io::Error::other)?;
        std::fs::write(path, bytes)
    }
}
