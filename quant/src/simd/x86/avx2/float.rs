//! AVX2 dots of float weights (F32, F16, BF16) with f32 activations. One row: four FMA
//! accumulators of 8 lanes (FMA latency is 4 cycles, two issue per cycle). Several rows: four
//! rows at a time, two accumulators each, every activation load shared by the four.

use std::arch::x86_64::*;

use super::{PREFETCH_GROUP_BYTES, hsum_f32x8};
use crate::QuantType;
use crate::simd::FloatKernels;

/// A float weight type: how 8 weights are loaded and one is read.
trait Float {
    /// Bytes per weight.
    const WIDTH: usize;
    /// The 8 weights at `p` as f32.
    unsafe fn load8(p: *const u8) -> __m256;
    /// The weight of `bytes` (`WIDTH` of them).
    fn one(bytes: &[u8]) -> f32;
}

struct F32;
impl Float for F32 {
    const WIDTH: usize = 4;
    #[inline(always)]
    unsafe fn load8(p: *const u8) -> __m256 {
        unsafe { _mm256_loadu_ps(p.cast()) }
    }
    #[inline(always)]
    fn one(b: &[u8]) -> f32 {
        f32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }
}

struct F16;
impl Float for F16 {
    const WIDTH: usize = 2;
    #[inline(always)]
    unsafe fn load8(p: *const u8) -> __m256 {
        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p.cast())) }
    }
    #[inline(always)]
    fn one(b: &[u8]) -> f32 {
        half::f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32()
    }
}

struct Bf16;
impl Float for Bf16 {
    const WIDTH: usize = 2;
    #[inline(always)]
    unsafe fn load8(p: *const u8) -> __m256 {
        // A bf16 is the high half of an f32.
        unsafe { _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(_mm_loadu_si128(p.cast())))) }
    }
    #[inline(always)]
    fn one(b: &[u8]) -> f32 {
        f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16)
    }
}

/// `Σ w·x`, `w` holding `x.len()` weights.
#[inline(always)]
unsafe fn dot<T: Float>(w: &[u8], x: &[f32]) -> f32 {
    debug_assert_eq!(w.len(), x.len() * T::WIDTH);
    let n = x.len();
    let (wp, xp) = (w.as_ptr(), x.as_ptr());
    // SAFETY: lane group `i < n / 8` reads weights `8i..8i + 8` and activations likewise.
    unsafe {
        let mut acc = [_mm256_setzero_ps(); 4];
        let chunks = n / 32;
        for c in 0..chunks {
            for (k, a) in acc.iter_mut().enumerate() {
                let i = 4 * c + k;
                *a = _mm256_fmadd_ps(T::load8(wp.add(8 * i * T::WIDTH)), _mm256_loadu_ps(xp.add(8 * i)), *a);
            }
        }
        for i in 4 * chunks..n / 8 {
            acc[0] = _mm256_fmadd_ps(T::load8(wp.add(8 * i * T::WIDTH)), _mm256_loadu_ps(xp.add(8 * i)), acc[0]);
        }
        let mut s = hsum_f32x8(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
        for (j, &xj) in x.iter().enumerate().skip((n / 8) * 8) {
            s += T::one(&w[j * T::WIDTH..(j + 1) * T::WIDTH]) * xj;
        }
        s
    }
}

/// `out.len()` consecutive rows of `x.len()` weights (`row_bytes` apart), four at a time.
#[inline(always)]
unsafe fn gemv<T: Float>(w: &[u8], row_bytes: usize, x: &[f32], out: &mut [f32]) {
    let n = x.len();
    assert_eq!(row_bytes, n * T::WIDTH, "a row must have as many weights as there are activations");
    assert_eq!(w.len(), out.len() * row_bytes, "weights must be out.len() rows");
    let mut groups = out.chunks_exact_mut(4);
    let mut row = 0;
    for o in &mut groups {
        // SAFETY: rows `row..row + 4` exist; lane group `i < n / 8` is inside each row and `x`.
        unsafe {
            let base = w.as_ptr().add(row * row_bytes);
            let xp = x.as_ptr();
            let mut acc = [[_mm256_setzero_ps(); 2]; 4];
            // One step per cache line of each row: `per_line` groups of 8 weights.
            let per_line = 64 / (8 * T::WIDTH);
            let groups8 = n / 8;
            // As in the quantized `gemv`: the hardware prefetchers lose track of four short
            // interleaved rows, so fetch the next group, a line per row per step. Long rows
            // stream well by themselves, and their next group would not stay in L1.
            let ahead = base.wrapping_add(4 * row_bytes).cast::<i8>();
            let prefetch = 4 * row_bytes <= PREFETCH_GROUP_BYTES;
            for line in 0..groups8 / per_line {
                let offset = 64 * line;
                if prefetch {
                    for k in 0..4 {
                        _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(k * row_bytes + offset));
                    }
                }
                for g in 0..per_line {
                    let i = line * per_line + g;
                    let xv = _mm256_loadu_ps(xp.add(8 * i));
                    for (k, a) in acc.iter_mut().enumerate() {
                        a[g % 2] = _mm256_fmadd_ps(T::load8(base.add(k * row_bytes + 8 * i * T::WIDTH)), xv, a[g % 2]);
                    }
                }
            }
            for i in (groups8 / per_line) * per_line..groups8 {
                let xv = _mm256_loadu_ps(xp.add(8 * i));
                for (k, a) in acc.iter_mut().enumerate() {
                    a[0] = _mm256_fmadd_ps(T::load8(base.add(k * row_bytes + 8 * i * T::WIDTH)), xv, a[0]);
                }
            }
            for (k, (o, a)) in o.iter_mut().zip(acc).enumerate() {
                let mut s = hsum_f32x8(_mm256_add_ps(a[0], a[1]));
                let r = &w[(row + k) * row_bytes..(row + k + 1) * row_bytes];
                for (j, &xj) in x.iter().enumerate().skip((n / 8) * 8) {
                    s += T::one(&r[j * T::WIDTH..(j + 1) * T::WIDTH]) * xj;
                }
                *o = s;
            }
        }
        row += 4;
    }
    for o in groups.into_remainder() {
        // SAFETY: the row exists; `dot` reads inside it and `x`.
        *o = unsafe { dot::<T>(&w[row * row_bytes..(row + 1) * row_bytes], x) };
        row += 1;
    }
}

macro_rules! float_entries {
    ($t:ty, $dot:ident, $gemv:ident) => {
        #[target_feature(enable = "avx2,fma,f16c")]
        fn $dot(w: &[u8], x: &[f32]) -> f32 {
            assert_eq!(w.len(), x.len() * <$t>::WIDTH, "weight row and activations differ in length");
            // SAFETY: the features are enabled on this function; lengths checked.
            unsafe { dot::<$t>(w, x) }
        }

        #[target_feature(enable = "avx2,fma,f16c")]
        fn $gemv(w: &[u8], row_bytes: usize, x: &[f32], out: &mut [f32]) {
            // SAFETY: the features are enabled on this function; `gemv` checks the lengths.
            unsafe { gemv::<$t>(w, row_bytes, x, out) }
        }
    };
}

float_entries!(F32, dot_f32, gemv_f32);
float_entries!(F16, dot_f16, gemv_f16);
float_entries!(Bf16, dot_bf16, gemv_bf16);

/// The kernels of float type `ty`. The caller has checked the CPU features.
pub(super) fn kernels(ty: QuantType) -> Option<FloatKernels> {
    // SAFETY (of every call below): handed out only after the features were detected.
    Some(match ty {
        QuantType::F32 => FloatKernels {
            dot: |w, x| unsafe { dot_f32(w, x) },
            gemv: |w, rb, x, out| unsafe { gemv_f32(w, rb, x, out) },
        },
        QuantType::F16 => FloatKernels {
            dot: |w, x| unsafe { dot_f16(w, x) },
            gemv: |w, rb, x, out| unsafe { gemv_f16(w, rb, x, out) },
        },
        QuantType::BF16 => FloatKernels {
            dot: |w, x| unsafe { dot_bf16(w, x) },
            gemv: |w, rb, x, out| unsafe { gemv_bf16(w, rb, x, out) },
        },
        _ => return None,
    })
}
