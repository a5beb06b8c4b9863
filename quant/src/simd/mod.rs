//! SIMD kernels, one submodule per instruction set, chosen at run time.
//!
//! Each kernel computes exactly what the scalar `vec_dot_unopt` of its block type computes
//! (the same integer sums; only the order of the f32 additions differs) and is tested against
//! it. [`Isa::detected`] picks the best set this CPU has; the environment variable
//! `MLMF_QUANT_ISA` (`scalar`, `avx2`, `avx2-vnni`) caps it, for benchmarks and debugging.
//! AMX is deliberately not used.

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86;

use std::sync::OnceLock;

use crate::QuantType;

/// A product of a weight row (blocks of a quantized type) and an activation row (blocks of its
/// activation type), both as bytes.
pub type QuantDotFn = fn(&[u8], &[u8]) -> f32;
/// A product of a weight row of a float type (as bytes) and f32 activations.
pub type FloatDotFn = fn(&[u8], &[f32]) -> f32;
/// Quantizes f32 activations into blocks of an activation type (bytes).
pub type QuantizeFn = fn(&[f32], &mut [u8]);
/// `out[r] = dot(w[r·row_bytes..(r + 1)·row_bytes], a)` for `r < out.len()`: consecutive weight
/// rows times one activation row. Kernels handle several rows at once, sharing the activation
/// loads and the per-call setup.
pub type QuantGemvFn = fn(w: &[u8], row_bytes: usize, a: &[u8], out: &mut [f32]);
/// [`QuantGemvFn`] for float weights and f32 activations.
pub type FloatGemvFn = fn(w: &[u8], row_bytes: usize, x: &[f32], out: &mut [f32]);

/// [`QuantGemvFn`] for two activation rows at once: `out[c][r] = dot(w_r, a[c])`.
pub type QuantGemm2Fn = fn(w: &[u8], row_bytes: usize, a: [&[u8]; 2], out: [&mut [f32]; 2]);

/// The exact product (f32 activations) of consecutive weight rows `w` (`row_bytes` each) with
/// up to 8 activation rows: `out[j][r] = Σ_c x[j][c] · dequantize(w_r)[c]`, as f32 sums. Every
/// `x[j]` has `cols` values, every `out[j]` one value per weight row.
pub type ExactFn = fn(w: &[u8], row_bytes: usize, x: &[&[f32]], out: &mut [&mut [f32]]);

/// The products of one quantized weight type.
#[derive(Clone, Copy)]
pub struct QuantKernels {
    /// One row.
    pub dot: QuantDotFn,
    /// Consecutive rows.
    pub gemv: QuantGemvFn,
    /// Consecutive rows times two activation rows, where the type has such a kernel.
    pub gemm2: Option<QuantGemm2Fn>,
}

/// The products of one float weight type.
#[derive(Clone, Copy)]
pub struct FloatKernels {
    /// One row.
    pub dot: FloatDotFn,
    /// Consecutive rows.
    pub gemv: FloatGemvFn,
}

/// An instruction set the kernels are written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// Portable Rust, whatever the compiler makes of it.
    Scalar,
    /// x86-64 AVX2 with FMA and F16C.
    Avx2,
    /// The AVX2 kernels with AVX-512's 256-bit forms where they are shorter (VNNI's `vpdpbusd`
    /// for byte products, BW's byte masks for Q5's fifth bits); needs AVX-512 VNNI, VL and BW.
    Avx2Vnni,
}

impl Isa {
    /// The best set this CPU supports, capped by `MLMF_QUANT_ISA` when set. Detected once.
    pub fn detected() -> Isa {
        static DETECTED: OnceLock<Isa> = OnceLock::new();
        *DETECTED.get_or_init(|| {
            let cap = match std::env::var("MLMF_QUANT_ISA").as_deref() {
                Ok("scalar") => Isa::Scalar,
                Ok("avx2") => Isa::Avx2,
                _ => Isa::Avx2Vnni,
            };
            Isa::best().min(cap)
        })
    }

    /// Every set this CPU supports, `Scalar` first.
    pub fn available() -> Vec<Isa> {
        [Isa::Scalar, Isa::Avx2, Isa::Avx2Vnni].into_iter().filter(|&i| i.is_supported()).collect()
    }

    /// Whether this CPU runs the kernels of `self` (each set includes the ones before it).
    pub fn is_supported(self) -> bool {
        self <= Isa::best()
    }

    /// The best set this CPU supports, whatever `MLMF_QUANT_ISA` says. Detected once.
    fn best() -> Isa {
        static BEST: OnceLock<Isa> = OnceLock::new();
        *BEST.get_or_init(|| {
            #[cfg(target_arch = "x86_64")]
            {
                if x86::has_avx2() {
                    return if x86::has_vnni() { Isa::Avx2Vnni } else { Isa::Avx2 };
                }
            }
            Isa::Scalar
        })
    }

    /// A short name (`avx2-vnni`).
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx2Vnni => "avx2-vnni",
        }
    }
}

/// The SIMD products of weights of `ty` with their activation type under `isa`, `None` where
/// `isa` has no kernel for `ty` (the caller then uses the scalar one).
///
/// `isa` must be one of [`Isa::available`]: the kernels returned execute its instructions.
pub(crate) fn quant_dot(isa: Isa, ty: QuantType) -> Option<QuantKernels> {
    match isa {
        Isa::Scalar => None,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::Avx2Vnni if isa.is_supported() => x86::quant_dot(ty, isa == Isa::Avx2Vnni),
        _ => None,
    }
}

/// The SIMD products of float weights of `ty` with f32 activations under `isa`, as [`quant_dot`].
pub(crate) fn float_dot(isa: Isa, ty: QuantType) -> Option<FloatKernels> {
    match isa {
        Isa::Scalar => None,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::Avx2Vnni if isa.is_supported() => x86::float_dot(ty),
        _ => None,
    }
}

/// The SIMD quantizer into activation type `act` under `isa` (bit for bit the scalar one on
/// finite values), as [`quant_dot`].
pub(crate) fn quantize(isa: Isa, act: QuantType) -> Option<QuantizeFn> {
    match isa {
        Isa::Scalar => None,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::Avx2Vnni if isa.is_supported() => x86::quantize(act),
        _ => None,
    }
}

/// The SIMD exact product (f32 activations) of quantized weights of `ty` under `isa`, as
/// [`quant_dot`]; `None` for float types, whose product is already exact.
pub(crate) fn exact(isa: Isa, ty: QuantType) -> Option<ExactFn> {
    match isa {
        Isa::Scalar => None,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::Avx2Vnni if isa.is_supported() => x86::exact(ty),
        _ => None,
    }
}
