//! The table from a [`QuantType`] to its implementation, as ggml's `type_traits_cpu`: how its
//! blocks turn into f32, which activation type it dots with, and the dot kernels for an
//! instruction set.

use std::sync::OnceLock;

use crate::QuantType;
use crate::block::{
    ActivationBlock, Block, BlockQ2K, BlockQ3K, BlockQ4_0, BlockQ4_1, BlockQ4K, BlockQ5_0, BlockQ5_1, BlockQ5K,
    BlockQ6K, BlockQ8_0, BlockQ8_1, BlockQ8K, WeightBlock, as_blocks, as_blocks_mut, to_float_blocks,
};
use crate::float;
use crate::simd::{
    self, FloatDotFn, FloatGemvFn, FloatKernels, Isa, QuantDotFn, QuantGemm2Fn, QuantGemvFn, QuantKernels, QuantizeFn,
};

/// Dequantizes whole blocks (bytes) into f32 values.
pub type ToFloatFn = fn(&[u8], &mut [f32]);

/// How a weight row of one type is multiplied with activations.
#[derive(Clone, Copy)]
pub enum Dot {
    /// Float weights times f32 activations.
    Float {
        /// The product of one weight row (bytes) with one activation row.
        dot: FloatDotFn,
        /// The products of consecutive weight rows with one activation row.
        gemv: FloatGemvFn,
    },
    /// Quantized weights: activations are quantized to `act` first, then dotted in integers.
    Quant {
        /// The activation type (Q8_0, Q8_1 or Q8_K).
        act: QuantType,
        /// Quantizes f32 activations into blocks of `act` (bytes).
        quantize: QuantizeFn,
        /// The product of one weight row with one quantized activation row.
        dot: QuantDotFn,
        /// The products of consecutive weight rows with one quantized activation row.
        gemv: QuantGemvFn,
        /// The same with two activation rows at once, where there is such a kernel.
        gemm2: Option<QuantGemm2Fn>,
    },
}

/// What the crate knows how to do with one type under one instruction set.
#[derive(Clone, Copy)]
pub struct Kernels {
    /// The type.
    pub ty: QuantType,
    /// Dequantizes whole blocks (bytes) into `out` (values).
    pub to_float: ToFloatFn,
    /// The product used by `QMatrix::matmul`; `None` for the activation-only Q8_1 and Q8_K.
    pub dot: Option<Dot>,
    /// The scalar reference product, which `dot` is tested against.
    pub dot_unopt: Option<Dot>,
    /// The instruction set `dot` runs on (`Scalar` where there is no SIMD kernel for the type).
    pub isa: Isa,
}

/// The kernels of `ty` for the instruction set this CPU runs ([`Isa::detected`]).
pub fn kernels(ty: QuantType) -> &'static Kernels {
    kernels_for(Isa::detected(), ty)
}

/// The kernels of `ty` under `isa`, which must be one of [`Isa::available`] (others fall back
/// to the scalar kernels).
pub fn kernels_for(isa: Isa, ty: QuantType) -> &'static Kernels {
    static TABLES: [OnceLock<Vec<Kernels>>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    let slot = match isa {
        Isa::Scalar => 0,
        Isa::Avx2 => 1,
        Isa::Avx2Vnni => 2,
    };
    let table = TABLES[slot].get_or_init(|| QuantType::ALL.iter().map(|&t| build(isa, t)).collect());
    // `ALL` lists every variant, so the position exists.
    let i = QuantType::ALL.iter().position(|&t| t == ty).unwrap_or(0);
    &table[i]
}

fn build(isa: Isa, ty: QuantType) -> Kernels {
    use QuantType as T;
    let (to_float, dot_unopt): (ToFloatFn, Option<Dot>) = match ty {
        T::F32 => (float::f32_to_float, Some(Dot::Float { dot: float::dot_f32_unopt, gemv: float::gemv_f32_unopt })),
        T::F16 => (float::f16_to_float, Some(Dot::Float { dot: float::dot_f16_unopt, gemv: float::gemv_f16_unopt })),
        T::BF16 => {
            (float::bf16_to_float, Some(Dot::Float { dot: float::dot_bf16_unopt, gemv: float::gemv_bf16_unopt }))
        }
        T::Q4_0 => weight::<BlockQ4_0>(),
        T::Q4_1 => weight::<BlockQ4_1>(),
        T::Q5_0 => weight::<BlockQ5_0>(),
        T::Q5_1 => weight::<BlockQ5_1>(),
        T::Q8_0 => weight::<BlockQ8_0>(),
        T::Q2K => weight::<BlockQ2K>(),
        T::Q3K => weight::<BlockQ3K>(),
        T::Q4K => weight::<BlockQ4K>(),
        T::Q5K => weight::<BlockQ5K>(),
        T::Q6K => weight::<BlockQ6K>(),
        T::Q8_1 => (to_float_bytes::<BlockQ8_1>, None),
        T::Q8K => (to_float_bytes::<BlockQ8K>, None),
    };
    let (dot, used) = match dot_unopt {
        Some(Dot::Float { .. }) if let Some(FloatKernels { dot, gemv }) = simd::float_dot(isa, ty) => {
            (Some(Dot::Float { dot, gemv }), isa)
        }
        Some(Dot::Quant { act, quantize, .. })
            if let Some(QuantKernels { dot, gemv, gemm2 }) = simd::quant_dot(isa, ty) =>
        {
            let quantize = simd::quantize(isa, act).unwrap_or(quantize);
            (Some(Dot::Quant { act, quantize, dot, gemv, gemm2 }), isa)
        }
        other => (other, Isa::Scalar),
    };
    Kernels { ty, to_float, dot, dot_unopt, isa: used }
}

/// The scalar entries of a weight block type.
fn weight<W: WeightBlock>() -> (ToFloatFn, Option<Dot>) {
    let dot = Dot::Quant {
        act: W::Dot::TYPE,
        quantize: quantize_bytes::<W::Dot>,
        dot: dot_unopt_bytes::<W>,
        gemv: gemv_unopt_bytes::<W>,
        gemm2: None,
    };
    (to_float_bytes::<W>, Some(dot))
}

/// [`Block::to_float`] over whole blocks given as bytes.
///
/// # Panics
///
/// If `bytes` is not whole blocks or `out` has not one value per value of `bytes`.
fn to_float_bytes<B: Block>(bytes: &[u8], out: &mut [f32]) {
    let blocks =
        as_blocks::<B>(bytes).unwrap_or_else(|| panic!("{} bytes are not whole {} blocks", bytes.len(), B::TYPE));
    to_float_blocks(blocks, out);
}

/// [`ActivationBlock::from_float`] into bytes.
fn quantize_bytes<A: ActivationBlock>(x: &[f32], out: &mut [u8]) {
    let len = out.len();
    let blocks = as_blocks_mut::<A>(out).unwrap_or_else(|| panic!("{len} bytes are not whole {} blocks", A::TYPE));
    A::from_float(x, blocks);
}

/// [`WeightBlock::vec_dot_unopt`] on bytes.
fn dot_unopt_bytes<W: WeightBlock>(w: &[u8], a: &[u8]) -> f32 {
    let (Some(w), Some(a)) = (as_blocks::<W>(w), as_blocks::<W::Dot>(a)) else {
        panic!("{} row or {} activations are not whole blocks", W::TYPE, W::Dot::TYPE);
    };
    assert_eq!(w.len() * W::VALUES, a.len() * W::Dot::VALUES, "weights and activations differ in length");
    W::vec_dot_unopt(w, a)
}

/// [`WeightBlock::vec_dot_unopt`] row by row.
fn gemv_unopt_bytes<W: WeightBlock>(w: &[u8], row_bytes: usize, a: &[u8], out: &mut [f32]) {
    assert_eq!(w.len(), out.len() * row_bytes, "weights must be out.len() rows");
    for (o, row) in out.iter_mut().zip(w.chunks_exact(row_bytes.max(1))) {
        *o = dot_unopt_bytes::<W>(row, a);
    }
}
