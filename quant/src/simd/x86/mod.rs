//! x86-64 kernels: AVX2 (with FMA and F16C), optionally with the 256-bit forms of AVX-512 VNNI
//! and BW; everything older runs the scalar kernels. AMX is deliberately not used.

mod avx2;

use super::{ExactFn, FloatKernels, QuantKernels, QuantizeFn};
use crate::QuantType;

/// Whether the CPU runs the AVX2 kernels (AVX2, FMA and F16C).
pub(crate) fn has_avx2() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c")
}

/// Whether the CPU has the 256-bit forms of AVX-512 VNNI and BW.
pub(crate) fn has_vnni() -> bool {
    is_x86_feature_detected!("avx512vnni")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("avx512bw")
}

/// See [`super::quant_dot`]. The caller has checked [`has_avx2`] (and [`has_vnni`] for `vnni`).
pub(crate) fn quant_dot(ty: QuantType, vnni: bool) -> Option<QuantKernels> {
    avx2::quant_dot(ty, vnni)
}

/// See [`super::float_dot`]. The caller has checked [`has_avx2`].
pub(crate) fn float_dot(ty: QuantType) -> Option<FloatKernels> {
    avx2::float_dot(ty)
}

/// See [`super::quantize`]. The caller has checked [`has_avx2`].
pub(crate) fn quantize(act: QuantType) -> Option<QuantizeFn> {
    avx2::quantize(act)
}

/// See [`super::exact`]. The caller has checked [`has_avx2`].
pub(crate) fn exact(ty: QuantType) -> Option<ExactFn> {
    avx2::exact(ty)
}
