//! AVX2 quantizers of f32 activations into Q8_0, Q8_1 and Q8_K blocks, bit for bit what the
//! scalar `from_float` (ggml's `quantize_row_*_ref`) writes for finite inputs. The scalar
//! versions spend most of their time in `roundf` calls; here `round` (half away from zero) is
//! `trunc` plus a correction, and Q8_K's round-half-even is the hardware's rounding mode.
//! (llama.cpp's own AVX2 `quantize_row_q8_0` rounds halves to even and so differs from its
//! reference; these do not.)

use std::arch::x86_64::*;

use crate::block::{BlockQ8_0, BlockQ8_1, BlockQ8K, F16Bits, QK_K};

/// `|x|`.
#[inline(always)]
unsafe fn abs(x: __m256) -> __m256 {
    unsafe { _mm256_andnot_ps(_mm256_set1_ps(-0.0), x) }
}

/// The largest lane.
#[inline(always)]
unsafe fn hmax(x: __m256) -> f32 {
    unsafe {
        let mut m = _mm_max_ps(_mm256_extractf128_ps::<1>(x), _mm256_castps256_ps128(x));
        m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        m = _mm_max_ss(m, _mm_movehdup_ps(m));
        _mm_cvtss_f32(m)
    }
}

/// `round(v)` with halves away from zero, as C's `roundf`: truncate, then step away from zero
/// where the dropped fraction is at least one half (`v − trunc(v)` is exact).
#[inline(always)]
unsafe fn round_away(v: __m256) -> __m256 {
    unsafe {
        let t = _mm256_round_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(v);
        let half = _mm256_cmp_ps::<_CMP_GE_OQ>(abs(_mm256_sub_ps(v, t)), _mm256_set1_ps(0.5));
        let one = _mm256_or_ps(_mm256_set1_ps(1.0), _mm256_and_ps(v, _mm256_set1_ps(-0.0)));
        _mm256_add_ps(t, _mm256_and_ps(half, one))
    }
}

/// 32 i32 lanes (four registers, in order) as 32 i8, saturating.
#[inline(always)]
unsafe fn pack_i8(i: [__m256i; 4]) -> __m256i {
    unsafe {
        // The packs work within 128-bit lanes; the permutation restores the order.
        let a = _mm256_packs_epi32(i[0], i[1]);
        let b = _mm256_packs_epi32(i[2], i[3]);
        _mm256_permutevar8x32_epi32(_mm256_packs_epi16(a, b), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7))
    }
}

/// The sum of the 8 lanes.
#[inline(always)]
unsafe fn hsum_i32(x: __m256i) -> i32 {
    unsafe {
        let s = _mm_add_epi32(_mm256_castsi256_si128(x), _mm256_extracti128_si256::<1>(x));
        let s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
        _mm_cvtsi128_si32(_mm_add_epi32(s, _mm_shuffle_epi32::<0b01>(s)))
    }
}

/// The nearest half (ties to even, as `half::f16::from_f32`).
#[inline(always)]
unsafe fn to_f16(v: f32) -> F16Bits {
    unsafe {
        F16Bits((_mm_extract_epi16::<0>(_mm_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm_set_ss(v))) as u16).to_le_bytes())
    }
}

/// One block of 32: the scale `d` and the rounded values as i32 lanes.
#[inline(always)]
unsafe fn q8_32(x: &[f32]) -> (f32, [__m256i; 4]) {
    debug_assert_eq!(x.len(), 32);
    unsafe {
        let p = x.as_ptr();
        let v = [_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8)), _mm256_loadu_ps(p.add(16)), _mm256_loadu_ps(p.add(24))];
        let amax = hmax(_mm256_max_ps(_mm256_max_ps(abs(v[0]), abs(v[1])), _mm256_max_ps(abs(v[2]), abs(v[3]))));
        let d = amax / 127.0;
        let id = _mm256_set1_ps(if d != 0.0 { 1.0 / d } else { 0.0 });
        let q = [
            _mm256_cvttps_epi32(round_away(_mm256_mul_ps(v[0], id))),
            _mm256_cvttps_epi32(round_away(_mm256_mul_ps(v[1], id))),
            _mm256_cvttps_epi32(round_away(_mm256_mul_ps(v[2], id))),
            _mm256_cvttps_epi32(round_away(_mm256_mul_ps(v[3], id))),
        ];
        (d, q)
    }
}

/// Q8_0, as `BlockQ8_0::from_float`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn q8_0(x: &[f32], out: &mut [BlockQ8_0]) {
    assert_eq!(x.len(), out.len() * 32, "Q8_0 quantizes 32 values per block");
    for (xb, y) in x.chunks_exact(32).zip(out) {
        // SAFETY: `xb` has 32 values; the store writes the block's 32 bytes.
        unsafe {
            let (d, q) = q8_32(xb);
            y.d = to_f16(d);
            _mm256_storeu_si256(y.qs.as_mut_ptr().cast(), pack_i8(q));
        }
    }
}

/// Q8_1, as `BlockQ8_1::from_float`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn q8_1(x: &[f32], out: &mut [BlockQ8_1]) {
    assert_eq!(x.len(), out.len() * 32, "Q8_1 quantizes 32 values per block");
    for (xb, y) in x.chunks_exact(32).zip(out) {
        // SAFETY: as in `q8_0`.
        unsafe {
            let (d, q) = q8_32(xb);
            y.d = to_f16(d);
            let sum = hsum_i32(_mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3])));
            y.s = to_f16(sum as f32 * d);
            _mm256_storeu_si256(y.qs.as_mut_ptr().cast(), pack_i8(q));
        }
    }
}

/// Q8_K, as `BlockQ8K::from_float`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn q8_k(x: &[f32], out: &mut [BlockQ8K]) {
    assert_eq!(x.len(), out.len() * QK_K, "Q8_K quantizes 256 values per block");
    for (xb, y) in x.chunks_exact(QK_K).zip(out) {
        // SAFETY: `xb` has 256 values, read 8 at a time; the stores write the block's 256 bytes.
        unsafe {
            let p = xb.as_ptr();
            let mut m = _mm256_setzero_ps();
            for i in 0..QK_K / 8 {
                m = _mm256_max_ps(m, abs(_mm256_loadu_ps(p.add(8 * i))));
            }
            let amax = hmax(m);
            if amax == 0.0 {
                *y = BlockQ8K { d: [0; 4], qs: [0; QK_K], bsums: [[0; 2]; QK_K / 16] };
                continue;
            }
            // The first value of largest magnitude sets the sign of the scale, as in ggml.
            let Some(&max) = xb.iter().find(|v| v.abs() == amax) else { unreachable!("amax is one of the values") };
            let iscale = -127.0 / max;
            let is = _mm256_set1_ps(iscale);
            let cap = _mm256_set1_epi32(127);
            for c in 0..QK_K / 32 {
                let mut q = [_mm256_setzero_si256(); 4];
                for (k, q) in q.iter_mut().enumerate() {
                    let v = _mm256_mul_ps(is, _mm256_loadu_ps(p.add(32 * c + 8 * k)));
                    let r = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(v);
                    *q = _mm256_min_epi32(_mm256_cvtps_epi32(r), cap);
                }
                y.bsums[2 * c] = (hsum_i32(_mm256_add_epi32(q[0], q[1])) as i16).to_le_bytes();
                y.bsums[2 * c + 1] = (hsum_i32(_mm256_add_epi32(q[2], q[3])) as i16).to_le_bytes();
                _mm256_storeu_si256(y.qs.as_mut_ptr().add(32 * c).cast(), pack_i8(q));
            }
            y.d = (1.0 / iscale).to_le_bytes();
        }
    }
}
