//! Layers whose weights stay in a GGUF file's quantized blocks: [`QuantLinear`], computed on
//! the host by `mlmf-quant`'s kernels (activations quantized to 8 bits per block, as
//! llama.cpp does).
//!
//! These run only where burn computes on the host (the `flex` and `ndarray` CPU backends):
//! a tensor there is host memory already, so reading it out and back costs a copy of the
//! activations, not of the weights. On GPU devices the loader dequantizes instead
//! (`weights.rs`).

use burn::tensor::{Device, Tensor, TensorData};
use std::sync::OnceLock;

use mlmf_quant::{Activations, QMatrix};

/// How the activations meet quantized weights, from `MLMF_QUANT_ACTIVATIONS`: `exact` (the
/// default) keeps them in f32 and dequantizes each weight block in registers, so a product
/// equals the f32 product of the file's weights (the references `transformers` computes from
/// a GGUF file); `int8` quantizes them to 8 bits per block first, as llama.cpp does: faster,
/// and its logits move by up to about one unit on SmolLM2, enough to flip near-ties (llama.cpp
/// itself answers the reference chat differently for that reason).
pub fn activations() -> Activations {
    static MODE: OnceLock<Activations> = OnceLock::new();
    *MODE.get_or_init(|| match std::env::var("MLMF_QUANT_ACTIVATIONS").as_deref() {
        Ok("int8") => Activations::Int8,
        Ok("exact") | Err(_) => Activations::Exact,
        Ok(other) => {
            tracing::warn!(value = other, "MLMF_QUANT_ACTIVATIONS is exact or int8; computing exact");
            Activations::Exact
        }
    })
}

/// Whether quantized weights are computed as stored on `device` (host backends), rather than
/// dequantized at load. `MLMF_DEQUANTIZE=1` dequantizes everywhere: the f32 computation of
/// the file's weights, for comparing numerics and speed against the blocks.
pub fn computes_quantized(device: &Device) -> bool {
    if std::env::var_os("MLMF_DEQUANTIZE").is_some_and(|v| v == "1") {
        return false;
    }
    #[cfg(feature = "ndarray")]
    #[allow(deprecated)]
    if *device == Device::ndarray() {
        return true;
    }
    *device == Device::flex()
}

/// A bias-free layer `y = x Wᵀ` whose `W` (`[out, in]`, as `nn.Linear` stores it) is one or
/// more quantized matrices with the same input width, their outputs concatenated (q|k|v).
#[derive(Clone)]
pub struct QuantLinear {
    parts: Vec<QMatrix>,
    out: usize,
    inp: usize,
}

impl std::fmt::Debug for QuantLinear {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let types: Vec<&str> = self.parts.iter().map(|p| p.ty().name()).collect();
        f.debug_struct("QuantLinear").field("in", &self.inp).field("out", &self.out).field("types", &types).finish()
    }
}

impl QuantLinear {
    /// The layer of `parts`, which must share their input width; `None` when they do not or
    /// there are none.
    pub fn new(parts: Vec<QMatrix>) -> Option<QuantLinear> {
        let inp = parts.first()?.cols();
        if parts.iter().any(|p| p.cols() != inp) {
            return None;
        }
        let out = parts.iter().map(QMatrix::rows).sum();
        Some(QuantLinear { parts, out, inp })
    }

    /// Output width.
    pub fn out_features(&self) -> usize {
        self.out
    }

    /// Input width.
    pub fn in_features(&self) -> usize {
        self.inp
    }

    /// Bytes of its blocks.
    pub fn storage_bytes(&self) -> usize {
        self.parts.iter().map(QMatrix::storage_bytes).sum()
    }

    /// The parts, in output order.
    pub fn parts(&self) -> &[QMatrix] {
        &self.parts
    }

    /// Concatenates layers with the same input along their outputs.
    pub fn concat(layers: Vec<QuantLinear>) -> Option<QuantLinear> {
        QuantLinear::new(layers.into_iter().flat_map(|l| l.parts).collect())
    }

    /// The weight as f32 `[in, out]`, for a device that does not compute quantized.
    pub fn dequantize_t(&self) -> Vec<f32> {
        let mut w = vec![0f32; self.inp * self.out];
        let mut row = vec![0f32; self.inp];
        let mut o = 0;
        for p in &self.parts {
            for r in 0..p.rows() {
                p.dequantize_row(r, &mut row);
                for (c, v) in row.iter().enumerate() {
                    w[c * self.out + o] = *v;
                }
                o += 1;
            }
        }
        w
    }

    /// Applies the layer to `[batch, seq, in]` on the host.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [b, l, i] = x.dims();
        debug_assert_eq!(i, self.inp, "a quantized layer's input width is checked at load");
        let device = x.device();
        let n = b * l;
        let data = x.into_data().convert::<f32>();
        let xs = data.as_slice::<f32>().expect("converted to f32 above");
        let mut out = vec![0f32; n * self.out];
        let act = activations();
        if let [only] = self.parts.as_slice() {
            only.matmul_with(act, xs, n, &mut out);
        } else {
            let mut at = 0;
            let mut tmp = Vec::new();
            for p in &self.parts {
                let rows = p.rows();
                tmp.clear();
                tmp.resize(n * rows, 0.0);
                p.matmul_with(act, xs, n, &mut tmp);
                for r in 0..n {
                    out[r * self.out + at..r * self.out + at + rows].copy_from_slice(&tmp[r * rows..(r + 1) * rows]);
                }
                at += rows;
            }
        }
        Tensor::from_data(TensorData::new(out, [b, l, self.out]), &device)
    }
}
