//! The few tensor building blocks the architectures share, on burn's device-agnostic tensors.

use burn::tensor::activation;
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::config::Act;
use super::quant_linear::QuantLinear;

/// Additive mask value for positions a query must not see. Large enough that `exp` of it
/// underflows to exactly 0 next to any real score, finite so that a fully masked row gives a
/// uniform softmax instead of NaN (as HF's `finfo.min` does).
pub const MASKED: f32 = -1.0e30;

/// The weight of a [`Linear`]: an f32 tensor `[in, out]`, or quantized blocks computed as
/// stored (`quant_linear.rs`).
#[derive(Debug, Clone)]
pub enum LinearWeight {
    /// `[in, out]` on the device.
    Dense(Tensor<2>),
    /// Quantized rows `[out, in]`, on the host.
    Quant(QuantLinear),
}

/// A layer `y = x W + b`.
#[derive(Debug, Clone)]
pub struct Linear {
    /// The weight.
    pub weight: LinearWeight,
    /// `[out]`, absent for bias-free layers and for the non-zero ranks of a row-parallel split.
    pub bias: Option<Tensor<1>>,
}

impl Linear {
    /// A layer with an f32 weight `[in, out]`.
    pub fn dense(weight: Tensor<2>, bias: Option<Tensor<1>>) -> Linear {
        Linear { weight: LinearWeight::Dense(weight), bias }
    }

    /// Applies the layer to `[batch, seq, in]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [b, l, i] = x.dims();
        let out = self.out_features();
        let y = match &self.weight {
            LinearWeight::Dense(w) => x.reshape([b * l, i]).matmul(w.clone()),
            LinearWeight::Quant(q) => q.forward(x).reshape([b * l, out]),
        };
        let y = match &self.bias {
            Some(bias) => y + bias.clone().unsqueeze::<2>(),
            None => y,
        };
        y.reshape([b, l, out])
    }

    /// Output width.
    pub fn out_features(&self) -> usize {
        match &self.weight {
            LinearWeight::Dense(w) => w.dims()[1],
            LinearWeight::Quant(q) => q.out_features(),
        }
    }

    /// Concatenates layers with the same input along their outputs, so that one product
    /// computes them all (q|k|v, gate|up). Biases are kept only if every part has one.
    /// Quantized parts stay quantized when every part is; a mix is computed in f32.
    pub fn concat_outputs(parts: Vec<Linear>) -> Linear {
        let bias = if parts.iter().all(|p| p.bias.is_some()) {
            Some(Tensor::cat(parts.iter().filter_map(|p| p.bias.clone()).collect(), 0))
        } else {
            None
        };
        let quant: Option<Vec<QuantLinear>> = parts
            .iter()
            .map(|p| match &p.weight {
                LinearWeight::Quant(q) => Some(q.clone()),
                LinearWeight::Dense(_) => None,
            })
            .collect();
        if let Some(q) = quant.and_then(QuantLinear::concat) {
            return Linear { weight: LinearWeight::Quant(q), bias };
        }
        let device = bias.as_ref().map(|b| b.device()).or_else(|| {
            parts.iter().find_map(|p| match &p.weight {
                LinearWeight::Dense(w) => Some(w.device()),
                LinearWeight::Quant(_) => None,
            })
        });
        let device = device.unwrap_or_else(Device::flex);
        let dense = parts
            .into_iter()
            .map(|p| match p.weight {
                LinearWeight::Dense(w) => w,
                LinearWeight::Quant(q) => tensor(q.dequantize_t(), [q.in_features(), q.out_features()], &device),
            })
            .collect();
        Linear { weight: LinearWeight::Dense(Tensor::cat(dense, 1)), bias }
    }
}

/// LayerNorm over the last dimension.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    /// Scale.
    pub weight: Tensor<1>,
    /// Shift.
    pub bias: Tensor<1>,
    /// Epsilon.
    pub eps: f64,
}

impl LayerNorm {
    /// Normalises `[batch, seq, hidden]`: burn's fused layer norm (one pass per row on the
    /// flex CPU backend, where the op-by-op form took eight tensor ops and their
    /// allocations; the same composition elsewhere).
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        burn::tensor::module::layer_norm(x, self.weight.clone(), Some(self.bias.clone()), self.eps)
    }
}

/// RMSNorm over the last dimension: `x / sqrt(mean(x²) + eps) * w`.
#[derive(Debug, Clone)]
pub struct RmsNorm {
    /// Scale.
    pub weight: Tensor<1>,
    /// Epsilon.
    pub eps: f64,
}

impl RmsNorm {
    /// Normalises `[batch, seq, hidden]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let ms = x.clone().square().mean_dim(2);
        x * (ms + self.eps).sqrt().recip() * self.weight.clone().unsqueeze::<3>()
    }
}

/// Applies the MLP activation.
///
/// The tanh GELU and SiLU are written through `exp` rather than burn's `tanh`/`sigmoid`:
/// on the flex CPU backend those run 2-5x slower than `exp`, which made the activation a
/// sixth of GPT-2's forward time. The forms are the same functions, rearranged:
/// `0.5·x·(1 + tanh(u)) = x / (1 + e^(-2u))` and `x·σ(x) = x / (1 + e^(-x))`; both stay
/// finite for large |x| (the exponential overflows to +inf and the quotient to ∓0).
pub fn activate<const D: usize>(act: Act, x: Tensor<D>) -> Tensor<D> {
    match act {
        Act::GeluExact => activation::gelu(x),
        Act::GeluTanh => {
            const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;
            let cube = x.clone() * x.clone() * x.clone();
            let u = (x.clone() + cube * 0.044715) * SQRT_2_OVER_PI;
            x / ((u * -2.0).exp() + 1.0)
        }
        Act::Relu => activation::relu(x),
        Act::Silu => x.clone() / (x.neg().exp() + 1.0),
    }
}

/// The last position of `[batch, seq, width]`: all a generation step's head needs.
pub fn last_position(x: Tensor<3>) -> Tensor<3> {
    let l = x.dims()[1];
    x.narrow(1, l - 1, 1)
}

/// `[batch, seq, heads*dim]` -> `[batch, heads, seq, dim]`.
pub fn split_heads(x: Tensor<3>, heads: usize) -> Tensor<4> {
    let [b, l, w] = x.dims();
    x.reshape([b, l, heads, w / heads]).swap_dims(1, 2)
}

/// Scaled dot-product attention with grouped key/value heads.
///
/// `q` is `[b, h, l, d]`, `k` and `v` are `[b, kv, t, d]` with `h` a multiple of `kv`; query
/// head `i` reads key/value head `i / (h / kv)`, as HF's `repeat_kv`. `bias` is additive,
/// `[b, 1, l, t]`. Returns `[b, l, h*d]`. Through burn's fused attention (on the CPU: the
/// scores, softmax and weighted sum per head in one pass, the key/value heads shared
/// without copies, tiled with an online softmax for long sequences).
pub fn attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, bias: &Tensor<4>, scale: f64) -> Tensor<3> {
    let [b, h, l, d] = q.dims();
    let options = burn::tensor::ops::AttentionModuleOptions { scale: Some(scale), softcap: None, is_causal: false };
    let ctx = burn::tensor::module::attention(q, k, v, None, Some(bias.clone()), options);
    ctx.swap_dims(1, 2).reshape([b, l, h * d])
}

/// Builds a tensor from host data.
pub fn tensor<const D: usize>(data: Vec<f32>, shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(data, shape), device)
}

/// Builds an integer index tensor.
pub fn index_tensor(ids: &[u32], device: &Device) -> Tensor<1, Int> {
    let ids: Vec<i64> = ids.iter().map(|&i| i64::from(i)).collect();
    let n = ids.len();
    Tensor::from_data(TensorData::new(ids, [n]), device)
}

/// Transposes a row-major `[rows, cols]` matrix on the host.
pub fn transpose_host(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; data.len()];
    // Blocked so that both sides stay in cache for large matrices.
    const B: usize = 32;
    for r0 in (0..rows).step_by(B) {
        for c0 in (0..cols).step_by(B) {
            for r in r0..(r0 + B).min(rows) {
                for c in c0..(c0 + B).min(cols) {
                    out[c * rows + r] = data[r * cols + c];
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(t: Tensor<1>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    /// The exp-based forms equal the textbook definitions, and stay finite far out.
    #[test]
    fn activations_match_definitions_and_stay_finite() {
        let xs: Vec<f32> = vec![-1e4, -100.0, -20.0, -3.0, -0.5, -1e-3, 0.0, 1e-3, 0.5, 3.0, 20.0, 100.0, 1e4];
        let device = Device::flex();
        let t = tensor(xs.clone(), [xs.len()], &device);
        let gelu = host(activate(Act::GeluTanh, t.clone()));
        let silu = host(activate(Act::Silu, t));
        for (i, &x) in xs.iter().enumerate() {
            let x64 = x as f64;
            let g = 0.5 * x64 * (1.0 + (0.797_884_560_802_865_4 * (x64 + 0.044715 * x64.powi(3))).tanh());
            let s = x64 / (1.0 + (-x64).exp());
            assert!(gelu[i].is_finite() && silu[i].is_finite(), "x={x}");
            assert!((gelu[i] as f64 - g).abs() <= 1e-6 * (1.0 + g.abs()), "gelu({x}) = {} vs {g}", gelu[i]);
            assert!((silu[i] as f64 - s).abs() <= 1e-6 * (1.0 + s.abs()), "silu({x}) = {} vs {s}", silu[i]);
        }
    }
}
