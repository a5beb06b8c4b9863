//! AVX2 kernels: ports of the `__AVX2__` branches of llama.cpp's
//! `ggml/src/ggml-cpu/arch/x86/quants.c` (`ggml_vec_dot_*`), plus the float dots.
//!
//! Each quantized type implements [`Step`]: one block of weights times one block of
//! activations, added into an accumulator. Two drivers turn a step into kernels: [`dot`] for one
//! row (two accumulators in turn, so consecutive FMAs do not wait on each other) and [`gemv`]
//! for consecutive rows, `R` at a time, sharing each activation block between them; with rows
//! of a few hundred values the per-row setup and final horizontal sum otherwise cost as much
//! as the products.
//!
//! The byte products are generic over [`ByteDot`]; thin `#[target_feature]` wrappers
//! instantiate the bodies for plain AVX2 (`vpmaddubsw` + `vpmaddwd`) and for AVX-512 VNNI
//! (`vpdpbusd`, and BW's byte masks), as ggml's `mul_sum_us8_pairs_float` does with `#ifdef`s. The bodies are
//! `#[inline(always)]`, so the intrinsics inline into the wrappers that enable the features.

mod exact;
mod exact_blocks;
mod float;
mod gemm;
mod k_quants;
mod legacy;
mod quantize;

use std::arch::x86_64::*;

use super::{ExactFn, FloatKernels, QuantKernels, QuantizeFn};
use crate::QuantType;
use crate::block::{Block, as_blocks};

/// The operations that have a shorter form with AVX-512 (BW, VL, VNNI) than with AVX2.
pub(super) trait ByteDot {
    /// `acc + Σ_{k<4} ax[4i+k]·sy[4i+k]` per i32 lane `i`, `ax` unsigned, `sy` signed. The plain
    /// AVX2 form saturates pairs at i16, so callers keep `|ax·sy|` pairs under 2^15.
    unsafe fn dpbusd(acc: __m256i, ax: __m256i, sy: __m256i) -> __m256i;

    /// Byte `i` is `byte` where bit `i` of the little-endian `qh` is set, 0 elsewhere.
    unsafe fn bits_to_bytes(qh: [u8; 4], byte: i8) -> __m256i;
}

/// AVX2: `vpmaddubsw` then `vpmaddwd` by ones; bits spread by a shuffle and a compare.
pub(super) struct Avx2;

impl ByteDot for Avx2 {
    #[inline(always)]
    unsafe fn dpbusd(acc: __m256i, ax: __m256i, sy: __m256i) -> __m256i {
        unsafe { _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(ax, sy), _mm256_set1_epi16(1))) }
    }

    #[inline(always)]
    unsafe fn bits_to_bytes(qh: [u8; 4], byte: i8) -> __m256i {
        unsafe { _mm256_and_si256(bytes_from_bits_32(qh), _mm256_set1_epi8(byte)) }
    }
}

/// AVX-512 on 256-bit registers: `vpdpbusd`; bits as a byte mask.
pub(super) struct Vnni;

impl ByteDot for Vnni {
    #[inline(always)]
    unsafe fn dpbusd(acc: __m256i, ax: __m256i, sy: __m256i) -> __m256i {
        unsafe { _mm256_dpbusd_epi32(acc, ax, sy) }
    }

    #[inline(always)]
    unsafe fn bits_to_bytes(qh: [u8; 4], byte: i8) -> __m256i {
        unsafe { _mm256_maskz_mov_epi8(u32::from_le_bytes(qh), _mm256_set1_epi8(byte)) }
    }
}

/// One weight type's inner step: a block of weights times a block of activations.
pub(super) trait Step {
    /// The weight block.
    type W: Block;
    /// The activation block.
    type A: Block;
    /// The running sum.
    type Acc: Copy;
    /// What is loaded or computed from an activation block alone, once for all the rows.
    type Prep: Copy;
    /// The empty sum.
    unsafe fn zero() -> Self::Acc;
    /// The part of the step that depends on the activation block only.
    unsafe fn prep(y: &Self::A) -> Self::Prep;
    /// `acc + x·y`, with `p = prep(y)`.
    unsafe fn step(acc: Self::Acc, x: &Self::W, y: &Self::A, p: Self::Prep) -> Self::Acc;
    /// Two sums as one.
    unsafe fn add(a: Self::Acc, b: Self::Acc) -> Self::Acc;
    /// The sum as one number.
    unsafe fn finish(acc: Self::Acc) -> f32;
}

/// One row: `Σ x·y`. `y` has at least as many blocks as `x`.
#[inline(always)]
pub(super) unsafe fn dot<K: Step>(x: &[K::W], y: &[K::A]) -> f32 {
    unsafe {
        let (mut a0, mut a1) = (K::zero(), K::zero());
        let mut xs = x.chunks_exact(2);
        let mut ys = y.chunks_exact(2);
        for (xp, yp) in (&mut xs).zip(&mut ys) {
            a0 = K::step(a0, &xp[0], &yp[0], K::prep(&yp[0]));
            a1 = K::step(a1, &xp[1], &yp[1], K::prep(&yp[1]));
        }
        for (bx, by) in xs.remainder().iter().zip(ys.remainder()) {
            a0 = K::step(a0, bx, by, K::prep(by));
        }
        K::finish(K::add(a0, a1))
    }
}

/// How many groups of rows ahead [`gemv`] prefetches.
pub(super) const AHEAD: usize = 2;
/// Groups of rows longer than this are not prefetched: they stream well by themselves, and
/// what is fetched so far ahead would leave L1 before it is used.
pub(super) const PREFETCH_GROUP_BYTES: usize = 16 << 10;

/// `out.len()` consecutive rows of `y.len()` blocks each (`w`), `R` rows at a time.
///
/// # Safety
///
/// `w.len() == out.len() · y.len()`, and the CPU has the features of the steps.
#[inline(always)]
pub(super) unsafe fn gemv<K: Step, const R: usize>(w: &[K::W], y: &[K::A], out: &mut [f32]) {
    let nb = y.len();
    debug_assert_eq!(w.len(), out.len() * nb);
    let mut groups = out.chunks_exact_mut(R);
    let mut row = 0;
    for o in &mut groups {
        // SAFETY: rows `row..row + R` exist (`out` has them) and have `nb` blocks each.
        unsafe {
            let base = w.as_ptr().add(row * nb);
            let mut acc = [K::zero(); R];
            // Rows interleaved R ways end every few hundred bytes, too soon for the hardware
            // prefetchers to run ahead: fetch the rows `AHEAD` groups on, spread over this loop.
            let group_bytes = R * nb * std::mem::size_of::<K::W>();
            let lines =
                if group_bytes <= PREFETCH_GROUP_BYTES { (R * std::mem::size_of::<K::W>()).div_ceil(64) } else { 0 };
            let ahead = base.wrapping_add(AHEAD * R * nb).cast::<i8>();
            for (b, yb) in y.iter().enumerate() {
                let pf = ahead.wrapping_add(b * R * std::mem::size_of::<K::W>());
                for l in 0..lines {
                    _mm_prefetch::<_MM_HINT_T0>(pf.wrapping_add(64 * l));
                }
                let p = K::prep(yb);
                for (k, a) in acc.iter_mut().enumerate() {
                    *a = K::step(*a, &*base.add(k * nb + b), yb, p);
                }
            }
            for (o, a) in o.iter_mut().zip(acc) {
                *o = K::finish(a);
            }
        }
        row += R;
    }
    for o in groups.into_remainder() {
        // SAFETY: as above, for the remaining rows one at a time.
        *o = unsafe { dot::<K>(&w[row * nb..(row + 1) * nb], y) };
        row += 1;
    }
}

/// Declares `#[target_feature]` entry points `$dot` and `$gemv` (`R` rows at a time) for the
/// step `$step` and features `$features`.
macro_rules! entries {
    ($step:ty, $features:literal, $dot:ident, $gemv:ident, $rows:literal) => {
        /// One row.
        #[target_feature(enable = $features)]
        pub(super) fn $dot(x: &[<$step as super::Step>::W], y: &[<$step as super::Step>::A]) -> f32 {
            // SAFETY: the features the step uses are enabled on this function.
            unsafe { super::dot::<$step>(x, y) }
        }

        /// Consecutive rows; `w.len() == out.len() · y.len()`.
        #[target_feature(enable = $features)]
        pub(super) fn $gemv(w: &[<$step as super::Step>::W], y: &[<$step as super::Step>::A], out: &mut [f32]) {
            assert_eq!(w.len(), out.len() * y.len(), "weights must be out.len() rows of y.len() blocks");
            // SAFETY: the features the step uses are enabled on this function; lengths checked.
            unsafe { super::gemv::<$step, $rows>(w, y, out) }
        }
    };
}
pub(super) use entries;

/// Σ x·y per i32 lane (groups of four) for signed `x` and `y`: ggml's `mul_sum_i8_pairs`,
/// moving `x`'s sign onto `y` so the unsigned×signed product applies. `y` must not hold −128.
#[inline(always)]
pub(super) unsafe fn dot_i8<D: ByteDot>(acc: __m256i, x: __m256i, y: __m256i) -> __m256i {
    unsafe { D::dpbusd(acc, _mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x)) }
}

/// The sum of the 8 lanes.
#[inline(always)]
pub(super) unsafe fn hsum_f32x8(x: __m256) -> f32 {
    unsafe {
        let mut r = _mm_add_ps(_mm256_extractf128_ps::<1>(x), _mm256_castps256_ps128(x));
        r = _mm_add_ps(r, _mm_movehl_ps(r, r));
        r = _mm_add_ss(r, _mm_movehdup_ps(r));
        _mm_cvtss_f32(r)
    }
}

/// The sum of the 4 lanes.
#[inline(always)]
pub(super) unsafe fn hsum_f32x4(x: __m128) -> f32 {
    unsafe {
        let r = _mm_add_ps(x, _mm_movehl_ps(x, x));
        _mm_cvtss_f32(_mm_add_ss(r, _mm_movehdup_ps(r)))
    }
}

/// The two halves at `p` as f32 lanes 0 and 1 (lanes 2 and 3 are zero).
#[inline(always)]
pub(super) unsafe fn f16x2_at(p: *const u8) -> __m128 {
    // One 32-bit load: building the pair from two fields makes LLVM shuffle bytes in scalars.
    unsafe { _mm_cvtph_ps(_mm_loadu_si32(p)) }
}

/// The half at `p` as f32 lane 0 (the other lanes are zero).
#[inline(always)]
pub(super) unsafe fn f16x1_at(p: *const u8) -> __m128 {
    unsafe { _mm_cvtph_ps(_mm_loadu_si16(p)) }
}

/// One half as f32.
#[inline(always)]
pub(super) unsafe fn f16(bits: [u8; 2]) -> f32 {
    unsafe { _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(u16::from_le_bytes(bits) as i32))) }
}

/// 32 nibbles of 16 bytes as 32 bytes: low nibbles in the low lane, high nibbles in the high.
#[inline(always)]
pub(super) unsafe fn nibbles_32(qs: &[u8; 16]) -> __m256i {
    unsafe {
        let tmp = _mm_loadu_si128(qs.as_ptr().cast());
        _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16::<4>(tmp), tmp), _mm256_set1_epi8(0xF))
    }
}

/// Bit `i` of the little-endian u32 `qh` as byte `i`: 0xFF when set, 0 when clear.
#[inline(always)]
pub(super) unsafe fn bytes_from_bits_32(qh: [u8; 4]) -> __m256i {
    unsafe {
        let x32 = u32::from_le_bytes(qh) as i32;
        let shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
        let bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(x32), shuf);
        let bit_mask = _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe);
        _mm256_cmpeq_epi8(_mm256_or_si256(bytes, bit_mask), _mm256_set1_epi64x(-1))
    }
}

/// Views a weight row and an activation row as blocks, checking the lengths the kernels rely on.
#[inline(always)]
fn blocks<'a, W: Block, A: Block>(w: &'a [u8], a: &'a [u8]) -> (&'a [W], &'a [A]) {
    let (Some(w), Some(a)) = (as_blocks::<W>(w), as_blocks::<A>(a)) else {
        panic!("{} row or {} activations are not whole blocks", W::TYPE, A::TYPE);
    };
    assert_eq!(w.len() * W::VALUES, a.len() * A::VALUES, "weights and activations differ in length");
    (w, a)
}

/// Views `rows` weight rows of `row_bytes` and an activation row as blocks, checking lengths.
#[inline(always)]
fn gemv_blocks<'a, W: Block, A: Block>(w: &'a [u8], row_bytes: usize, a: &'a [u8], rows: usize) -> (&'a [W], &'a [A]) {
    assert_eq!(w.len(), rows * row_bytes, "weights must be {rows} rows of {row_bytes} bytes");
    let (Some(w), Some(a)) = (as_blocks::<W>(w), as_blocks::<A>(a)) else {
        panic!("{} rows or {} activations are not whole blocks", W::TYPE, A::TYPE);
    };
    assert_eq!(W::VALUES, A::VALUES, "weight and activation blocks differ in size");
    assert_eq!(rows * a.len(), w.len(), "a row must have as many blocks as the activations");
    (w, a)
}

/// The [`QuantKernels`] calling the `#[target_feature]` kernels `$dot`, `$gemv` and, when
/// given, `$gemm` (two activation rows).
macro_rules! quant_entry {
    ($dot:path, $gemv:path, $w:ty, $a:ty) => {
        QuantKernels {
            dot: |w: &[u8], a: &[u8]| -> f32 {
                let (w, a) = blocks::<$w, $a>(w, a);
                // SAFETY: `quant_dot` hands these out only after the CPU features were detected.
                unsafe { $dot(w, a) }
            },
            gemv: |w: &[u8], row_bytes: usize, a: &[u8], out: &mut [f32]| {
                let (w, a) = gemv_blocks::<$w, $a>(w, row_bytes, a, out.len());
                // SAFETY: as above.
                unsafe { $gemv(w, a, out) }
            },
            gemm2: None,
        }
    };
    ($dot:path, $gemv:path, $gemm:path, $w:ty, $a:ty) => {
        QuantKernels {
            gemm2: Some(|w: &[u8], row_bytes: usize, a: [&[u8]; 2], out: [&mut [f32]; 2]| {
                let (wb, a0) = gemv_blocks::<$w, $a>(w, row_bytes, a[0], out[0].len());
                let (_, a1) = gemv_blocks::<$w, $a>(w, row_bytes, a[1], out[1].len());
                // SAFETY: as above.
                unsafe { $gemm(wb, [a0, a1], out) }
            }),
            ..quant_entry!($dot, $gemv, $w, $a)
        }
    };
}

/// The AVX2 (or AVX2 + VNNI) products for weights of `ty`. The caller has checked the features.
pub(super) fn quant_dot(ty: QuantType, vnni: bool) -> Option<QuantKernels> {
    use crate::block::*;
    use QuantType as T;
    Some(match (ty, vnni) {
        (T::Q4_0, false) => {
            quant_entry!(legacy::q4_0_avx2, legacy::q4_0_gemv_avx2, legacy::q4_0_gemm_avx2, BlockQ4_0, BlockQ8_0)
        }
        (T::Q4_0, true) => {
            quant_entry!(legacy::q4_0_vnni, legacy::q4_0_gemv_vnni, legacy::q4_0_gemm_vnni, BlockQ4_0, BlockQ8_0)
        }
        (T::Q4_1, false) => {
            quant_entry!(legacy::q4_1_avx2, legacy::q4_1_gemv_avx2, legacy::q4_1_gemm_avx2, BlockQ4_1, BlockQ8_1)
        }
        (T::Q4_1, true) => {
            quant_entry!(legacy::q4_1_vnni, legacy::q4_1_gemv_vnni, legacy::q4_1_gemm_vnni, BlockQ4_1, BlockQ8_1)
        }
        (T::Q5_0, false) => {
            quant_entry!(legacy::q5_0_avx2, legacy::q5_0_gemv_avx2, legacy::q5_0_gemm_avx2, BlockQ5_0, BlockQ8_0)
        }
        (T::Q5_0, true) => {
            quant_entry!(legacy::q5_0_vnni, legacy::q5_0_gemv_vnni, legacy::q5_0_gemm_vnni, BlockQ5_0, BlockQ8_0)
        }
        (T::Q5_1, false) => {
            quant_entry!(legacy::q5_1_avx2, legacy::q5_1_gemv_avx2, legacy::q5_1_gemm_avx2, BlockQ5_1, BlockQ8_1)
        }
        (T::Q5_1, true) => {
            quant_entry!(legacy::q5_1_vnni, legacy::q5_1_gemv_vnni, legacy::q5_1_gemm_vnni, BlockQ5_1, BlockQ8_1)
        }
        (T::Q8_0, false) => {
            quant_entry!(legacy::q8_0_avx2, legacy::q8_0_gemv_avx2, legacy::q8_0_gemm_avx2, BlockQ8_0, BlockQ8_0)
        }
        (T::Q8_0, true) => {
            quant_entry!(legacy::q8_0_vnni, legacy::q8_0_gemv_vnni, legacy::q8_0_gemm_vnni, BlockQ8_0, BlockQ8_0)
        }
        // The K-quants multiply 16-bit sums by sub-block scales with `vpmaddwd`, which VNNI
        // does not shorten: one AVX2 kernel each.
        (T::Q2K, _) => quant_entry!(k_quants::q2_k_avx2, k_quants::q2_k_gemv_avx2, BlockQ2K, BlockQ8K),
        (T::Q3K, _) => quant_entry!(k_quants::q3_k_avx2, k_quants::q3_k_gemv_avx2, BlockQ3K, BlockQ8K),
        (T::Q4K, _) => quant_entry!(k_quants::q4_k_avx2, k_quants::q4_k_gemv_avx2, BlockQ4K, BlockQ8K),
        (T::Q5K, _) => quant_entry!(k_quants::q5_k_avx2, k_quants::q5_k_gemv_avx2, BlockQ5K, BlockQ8K),
        (T::Q6K, _) => quant_entry!(k_quants::q6_k_avx2, k_quants::q6_k_gemv_avx2, BlockQ6K, BlockQ8K),
        _ => return None,
    })
}

/// The AVX2 products of float weights of `ty` with f32 activations. The caller has checked the
/// features.
pub(super) fn float_dot(ty: QuantType) -> Option<FloatKernels> {
    float::kernels(ty)
}

/// The AVX2 quantizer into activation type `act`. The caller has checked the features.
pub(super) fn quantize(act: QuantType) -> Option<QuantizeFn> {
    use crate::block::{BlockQ8_0, BlockQ8_1, BlockQ8K, as_blocks_mut};
    fn out<B: Block>(bytes: &mut [u8]) -> &mut [B] {
        let len = bytes.len();
        as_blocks_mut::<B>(bytes).unwrap_or_else(|| panic!("{len} bytes are not whole {} blocks", B::TYPE))
    }
    // SAFETY (of every call below): handed out only after the features were detected.
    Some(match act {
        QuantType::Q8_0 => |x, b| unsafe { quantize::q8_0(x, out::<BlockQ8_0>(b)) },
        QuantType::Q8_1 => |x, b| unsafe { quantize::q8_1(x, out::<BlockQ8_1>(b)) },
        QuantType::Q8K => |x, b| unsafe { quantize::q8_k(x, out::<BlockQ8K>(b)) },
        _ => return None,
    })
}

/// The AVX2 exact product (f32 activations) of weights of `ty`. The caller has checked the
/// features.
pub(super) fn exact(ty: QuantType) -> Option<ExactFn> {
    exact::kernel(ty)
}
