//! AVX2 steps of the K-quants (256-value super-blocks) with Q8_K activations: ports of
//! llama.cpp's `__AVX2__` branches. Unsigned weight bytes times signed activation bytes with
//! `vpmaddubsw` (pairs stay under 2^15: weights < 64, activations within ±127), then
//! `vpmaddwd` by the sub-block scales, one FMA per super-block. The minimums (Q2_K, Q4_K,
//! Q5_K) use Q8_K's sums of 16; Q6_K's −32 and Q3_K's −4 are subtracted as products of their own.

use std::arch::x86_64::*;

use super::{Step, entries, f16, hsum_f32x4, hsum_f32x8};
use crate::block::{BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ6K, BlockQ8K};

/// The 32 bytes at `p`.
#[inline(always)]
unsafe fn load(p: *const u8) -> __m256i {
    unsafe { _mm256_loadu_si256(p.cast()) }
}

/// `vpshufb` control picking 16-bit element `lo` in the low lane and `hi` in the high lane
/// (ggml's `get_scale_shuffle_q3k` / `get_scale_shuffle_k4` tables).
#[inline(always)]
unsafe fn pick16(lo: i16, hi: i16) -> __m256i {
    let ctl = |e: i16| (2 * e) | ((2 * e + 1) << 8);
    unsafe { _mm256_set_m128i(_mm_set1_epi16(ctl(hi)), _mm_set1_epi16(ctl(lo))) }
}

/// Unsigned weight bytes times signed activation bytes, adjacent pairs summed to i16.
#[inline(always)]
unsafe fn maddubs(q: __m256i, q8: __m256i) -> __m256i {
    unsafe { _mm256_maddubs_epi16(q, q8) }
}

/// 16 i16 scales (bytes widened) split into two registers, each half repeated in both lanes.
#[inline(always)]
unsafe fn split_scales(all: __m256i) -> [__m256i; 2] {
    unsafe {
        let l = _mm256_castsi256_si128(all);
        let h = _mm256_extracti128_si256::<1>(all);
        [_mm256_set_m128i(l, l), _mm256_set_m128i(h, h)]
    }
}

/// Q2_K × Q8_K.
pub(super) struct Q2K;

impl Step for Q2K {
    type W = BlockQ2K;
    type A = BlockQ8K;
    type Acc = __m256;

    type Prep = ();

    #[inline(always)]
    unsafe fn zero() -> __m256 {
        unsafe { _mm256_setzero_ps() }
    }

    #[inline(always)]
    unsafe fn prep(_: &BlockQ8K) {}

    #[inline(always)]
    unsafe fn step(mut acc: __m256, x: &BlockQ2K, y: &BlockQ8K, _: ()) -> __m256 {
        unsafe {
            let m3 = _mm256_set1_epi8(3);
            let m4 = _mm_set1_epi8(0xF);
            let shuf = [pick16(0, 1), pick16(2, 3), pick16(4, 5), pick16(6, 7)];
            let d = y.d() * f16(x.d.0);
            let dmin = -y.d() * f16(x.dmin.0);
            let mins_and_scales = _mm_loadu_si128(x.scales.as_ptr().cast());
            let scales8 = _mm_and_si128(mins_and_scales, m4);
            let mins8 = _mm_and_si128(_mm_srli_epi16::<4>(mins_and_scales), m4);
            let prod = _mm256_madd_epi16(_mm256_cvtepi8_epi16(mins8), load(y.bsums.as_ptr().cast()));
            acc = _mm256_fmadd_ps(_mm256_set1_ps(dmin), _mm256_cvtepi32_ps(prod), acc);

            let scales = split_scales(_mm256_cvtepi8_epi16(scales8));
            let mut sumi = _mm256_setzero_si256();
            for (j, sc) in scales.iter().enumerate() {
                let q2bits = load(x.qs.as_ptr().add(32 * j));
                let q8 = y.qs.as_ptr().add(128 * j).cast::<u8>();
                let q2 = [
                    _mm256_and_si256(q2bits, m3),
                    _mm256_and_si256(_mm256_srli_epi16::<2>(q2bits), m3),
                    _mm256_and_si256(_mm256_srli_epi16::<4>(q2bits), m3),
                    _mm256_and_si256(_mm256_srli_epi16::<6>(q2bits), m3),
                ];
                for (k, (q, sh)) in q2.iter().zip(&shuf).enumerate() {
                    let p = maddubs(*q, load(q8.add(32 * k)));
                    sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(_mm256_shuffle_epi8(*sc, *sh), p));
                }
            }
            _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc)
        }
    }

    #[inline(always)]
    unsafe fn add(a: __m256, b: __m256) -> __m256 {
        unsafe { _mm256_add_ps(a, b) }
    }

    #[inline(always)]
    unsafe fn finish(acc: __m256) -> f32 {
        unsafe { hsum_f32x8(acc) }
    }
}

/// Q3_K × Q8_K.
pub(super) struct Q3K;

impl Step for Q3K {
    type W = BlockQ3K;
    type A = BlockQ8K;
    type Acc = __m256;

    type Prep = ();

    #[inline(always)]
    unsafe fn zero() -> __m256 {
        unsafe { _mm256_setzero_ps() }
    }

    #[inline(always)]
    unsafe fn prep(_: &BlockQ8K) {}

    #[inline(always)]
    unsafe fn step(acc: __m256, x: &BlockQ3K, y: &BlockQ8K, _: ()) -> __m256 {
        unsafe {
            const KMASK1: u32 = 0x03030303;
            const KMASK2: u32 = 0x0f0f0f0f;
            let m3 = _mm256_set1_epi8(3);
            let m4 = _mm256_set1_epi8(4);
            let shuf = [pick16(0, 1), pick16(2, 3), pick16(4, 5), pick16(6, 7)];
            let d = y.d() * f16(x.d.0);
            let s = &x.scales;
            let aux = [
                u32::from_le_bytes([s[0], s[1], s[2], s[3]]),
                u32::from_le_bytes([s[4], s[5], s[6], s[7]]),
                u32::from_le_bytes([s[8], s[9], s[10], s[11]]),
            ];
            let scales128 = _mm_set_epi32(
                (((aux[1] >> 4) & KMASK2) | (((aux[2] >> 6) & KMASK1) << 4)) as i32,
                (((aux[0] >> 4) & KMASK2) | (((aux[2] >> 4) & KMASK1) << 4)) as i32,
                ((aux[1] & KMASK2) | (((aux[2] >> 2) & KMASK1) << 4)) as i32,
                ((aux[0] & KMASK2) | ((aux[2] & KMASK1) << 4)) as i32,
            );
            let scales = split_scales(_mm256_cvtepi8_epi16(_mm_sub_epi8(scales128, _mm_set1_epi8(32))));

            let hbits = load(x.hmask.as_ptr());
            // Bit `4j + k` of each hmask byte is the high bit of the k-th 32 of half j.
            let mut bit = _mm256_set1_epi8(1);
            let mut sumi = _mm256_setzero_si256();
            for (j, sc) in scales.iter().enumerate() {
                let q3bits = load(x.qs.as_ptr().add(32 * j));
                let q8 = y.qs.as_ptr().add(128 * j).cast::<u8>();
                let q3l = [
                    _mm256_and_si256(q3bits, m3),
                    _mm256_and_si256(_mm256_srli_epi16::<2>(q3bits), m3),
                    _mm256_and_si256(_mm256_srli_epi16::<4>(q3bits), m3),
                    _mm256_and_si256(_mm256_srli_epi16::<6>(q3bits), m3),
                ];
                for (k, (ql, sh)) in q3l.iter().zip(&shuf).enumerate() {
                    // 4 where the high bit is clear: the value is `low − 4` there.
                    let clear = _mm256_cmpeq_epi8(_mm256_and_si256(hbits, bit), _mm256_setzero_si256());
                    let q3h = _mm256_and_si256(clear, m4);
                    bit = _mm256_slli_epi16::<1>(bit);
                    let q8k = load(q8.add(32 * k));
                    let p = _mm256_sub_epi16(maddubs(*ql, q8k), maddubs(q3h, q8k));
                    sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(_mm256_shuffle_epi8(*sc, *sh), p));
                }
            }
            _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc)
        }
    }

    #[inline(always)]
    unsafe fn add(a: __m256, b: __m256) -> __m256 {
        unsafe { _mm256_add_ps(a, b) }
    }

    #[inline(always)]
    unsafe fn finish(acc: __m256) -> f32 {
        unsafe { hsum_f32x8(acc) }
    }
}

/// ggml's unpacking of Q4_K/Q5_K scales: 8 scales in bytes 0..8, 8 minimums in 8..16.
#[inline(always)]
fn k4_scales_mins(s: &[u8; 12]) -> [u32; 4] {
    const KMASK1: u32 = 0x3f3f3f3f;
    const KMASK2: u32 = 0x0f0f0f0f;
    const KMASK3: u32 = 0x03030303;
    let u = [
        u32::from_le_bytes([s[0], s[1], s[2], s[3]]),
        u32::from_le_bytes([s[4], s[5], s[6], s[7]]),
        u32::from_le_bytes([s[8], s[9], s[10], s[11]]),
    ];
    [
        u[0] & KMASK1,
        (u[2] & KMASK2) | (((u[0] >> 6) & KMASK3) << 4),
        u[1] & KMASK1,
        ((u[2] >> 4) & KMASK2) | (((u[1] >> 6) & KMASK3) << 4),
    ]
}

/// The minimums' term of a Q4_K/Q5_K block, `Σ_sub-block m·Σy` as 4 i32 lanes, and the 8
/// scales as 16-bit values repeated in both lanes.
#[inline(always)]
unsafe fn k4_setup(scales: &[u8; 12], y: &BlockQ8K) -> (__m128i, __m256i) {
    unsafe {
        let u = k4_scales_mins(scales);
        let mins_and_scales = _mm256_cvtepu8_epi16(_mm_set_epi32(u[3] as i32, u[2] as i32, u[1] as i32, u[0] as i32));
        let q8sums = load(y.bsums.as_ptr().cast());
        let q8s = _mm_hadd_epi16(_mm256_castsi256_si128(q8sums), _mm256_extracti128_si256::<1>(q8sums));
        let prod = _mm_madd_epi16(_mm256_extracti128_si256::<1>(mins_and_scales), q8s);
        let sc = _mm256_castsi256_si128(mins_and_scales);
        (prod, _mm256_set_m128i(sc, sc))
    }
}

/// Q4_K × Q8_K: the minimums' term accumulates in the second register.
pub(super) struct Q4K;

impl Step for Q4K {
    type W = BlockQ4K;
    type A = BlockQ8K;
    type Acc = (__m256, __m128);

    type Prep = ();

    #[inline(always)]
    unsafe fn zero() -> (__m256, __m128) {
        unsafe { (_mm256_setzero_ps(), _mm_setzero_ps()) }
    }

    #[inline(always)]
    unsafe fn prep(_: &BlockQ8K) {}

    #[inline(always)]
    unsafe fn step(acc: (__m256, __m128), x: &BlockQ4K, y: &BlockQ8K, _: ()) -> (__m256, __m128) {
        unsafe {
            let m4 = _mm256_set1_epi8(0xF);
            let d = y.d() * f16(x.d.0);
            let dmin = -y.d() * f16(x.dmin.0);
            let (prod, scales) = k4_setup(&x.scales, y);
            let acc_m = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(prod), acc.1);
            let mut sumi = _mm256_setzero_si256();
            for j in 0..4 {
                let scale_l = _mm256_shuffle_epi8(scales, pick16(2 * j as i16, 2 * j as i16));
                let scale_h = _mm256_shuffle_epi8(scales, pick16(2 * j as i16 + 1, 2 * j as i16 + 1));
                let q4bits = load(x.qs.as_ptr().add(32 * j));
                let q4l = _mm256_and_si256(q4bits, m4);
                let q4h = _mm256_and_si256(_mm256_srli_epi16::<4>(q4bits), m4);
                let q8 = y.qs.as_ptr().add(64 * j).cast::<u8>();
                let pl = _mm256_madd_epi16(scale_l, maddubs(q4l, load(q8)));
                let ph = _mm256_madd_epi16(scale_h, maddubs(q4h, load(q8.add(32))));
                sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(pl, ph));
            }
            (_mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc.0), acc_m)
        }
    }

    #[inline(always)]
    unsafe fn add(a: (__m256, __m128), b: (__m256, __m128)) -> (__m256, __m128) {
        unsafe { (_mm256_add_ps(a.0, b.0), _mm_add_ps(a.1, b.1)) }
    }

    #[inline(always)]
    unsafe fn finish(acc: (__m256, __m128)) -> f32 {
        unsafe { hsum_f32x8(acc.0) + hsum_f32x4(acc.1) }
    }
}

/// Q5_K × Q8_K: as Q4_K with the fifth bits.
pub(super) struct Q5K;

impl Step for Q5K {
    type W = BlockQ5K;
    type A = BlockQ8K;
    type Acc = (__m256, __m128);

    type Prep = ();

    #[inline(always)]
    unsafe fn zero() -> (__m256, __m128) {
        unsafe { (_mm256_setzero_ps(), _mm_setzero_ps()) }
    }

    #[inline(always)]
    unsafe fn prep(_: &BlockQ8K) {}

    #[inline(always)]
    unsafe fn step(acc: (__m256, __m128), x: &BlockQ5K, y: &BlockQ8K, _: ()) -> (__m256, __m128) {
        unsafe {
            let m4 = _mm256_set1_epi8(0xF);
            let m16 = _mm256_set1_epi8(16);
            let d = y.d() * f16(x.d.0);
            let dmin = -y.d() * f16(x.dmin.0);
            let (prod, scales) = k4_setup(&x.scales, y);
            let acc_m = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(prod), acc.1);
            let hbits = load(x.qh.as_ptr());
            let mut bit = _mm256_set1_epi8(1);
            let mut sumi = _mm256_setzero_si256();
            for j in 0..4 {
                let scale_0 = _mm256_shuffle_epi8(scales, pick16(2 * j as i16, 2 * j as i16));
                let scale_1 = _mm256_shuffle_epi8(scales, pick16(2 * j as i16 + 1, 2 * j as i16 + 1));
                let q5bits = load(x.qs.as_ptr().add(32 * j));
                // 16 where the fifth bit is set.
                let set0 = _mm256_cmpeq_epi8(_mm256_and_si256(hbits, bit), bit);
                bit = _mm256_slli_epi16::<1>(bit);
                let set1 = _mm256_cmpeq_epi8(_mm256_and_si256(hbits, bit), bit);
                bit = _mm256_slli_epi16::<1>(bit);
                let q5_0 = _mm256_or_si256(_mm256_and_si256(q5bits, m4), _mm256_and_si256(set0, m16));
                let q5_1 =
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(q5bits), m4), _mm256_and_si256(set1, m16));
                let q8 = y.qs.as_ptr().add(64 * j).cast::<u8>();
                let p0 = _mm256_madd_epi16(scale_0, maddubs(q5_0, load(q8)));
                let p1 = _mm256_madd_epi16(scale_1, maddubs(q5_1, load(q8.add(32))));
                sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p0, p1));
            }
            (_mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc.0), acc_m)
        }
    }

    #[inline(always)]
    unsafe fn add(a: (__m256, __m128), b: (__m256, __m128)) -> (__m256, __m128) {
        unsafe { (_mm256_add_ps(a.0, b.0), _mm_add_ps(a.1, b.1)) }
    }

    #[inline(always)]
    unsafe fn finish(acc: (__m256, __m128)) -> f32 {
        unsafe { hsum_f32x8(acc.0) + hsum_f32x4(acc.1) }
    }
}

/// Q6_K × Q8_K.
pub(super) struct Q6K;

impl Step for Q6K {
    type W = BlockQ6K;
    type A = BlockQ8K;
    type Acc = __m256;

    type Prep = ();

    #[inline(always)]
    unsafe fn zero() -> __m256 {
        unsafe { _mm256_setzero_ps() }
    }

    #[inline(always)]
    unsafe fn prep(_: &BlockQ8K) {}

    #[inline(always)]
    unsafe fn step(acc: __m256, x: &BlockQ6K, y: &BlockQ8K, _: ()) -> __m256 {
        unsafe {
            let m4 = _mm256_set1_epi8(0xF);
            let m3 = _mm256_set1_epi8(3);
            let m32s = _mm256_set1_epi8(32);
            let d = y.d() * f16(x.d.0);
            let scales = _mm_loadu_si128(x.scales.as_ptr().cast());
            let mut sumi = _mm256_setzero_si256();
            for j in 0..2 {
                let q4bits1 = load(x.ql.as_ptr().add(64 * j));
                let q4bits2 = load(x.ql.as_ptr().add(64 * j + 32));
                let q4bits_h = load(x.qh.as_ptr().add(32 * j));
                let q4h = [
                    _mm256_slli_epi16::<4>(_mm256_and_si256(q4bits_h, m3)),
                    _mm256_slli_epi16::<4>(_mm256_and_si256(_mm256_srli_epi16::<2>(q4bits_h), m3)),
                    _mm256_slli_epi16::<4>(_mm256_and_si256(_mm256_srli_epi16::<4>(q4bits_h), m3)),
                    _mm256_slli_epi16::<4>(_mm256_and_si256(_mm256_srli_epi16::<6>(q4bits_h), m3)),
                ];
                let q6 = [
                    _mm256_or_si256(_mm256_and_si256(q4bits1, m4), q4h[0]),
                    _mm256_or_si256(_mm256_and_si256(q4bits2, m4), q4h[1]),
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(q4bits1), m4), q4h[2]),
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(q4bits2), m4), q4h[3]),
                ];
                let q8 = y.qs.as_ptr().add(128 * j).cast::<u8>();
                for (k, q) in q6.iter().enumerate() {
                    let q8k = load(q8.add(32 * k));
                    // (q − 32)·y as q·y − 32·y: `vpmaddubsw` needs the unsigned operand.
                    let p = _mm256_sub_epi16(maddubs(*q, q8k), maddubs(m32s, q8k));
                    // Scales of sub-blocks 8j + 2k (low lane) and 8j + 2k + 1 (high lane).
                    let is = (8 * j + 2 * k) as u8;
                    let ctl = _mm_set_epi64x(i64::from_le_bytes([is + 1; 8]), i64::from_le_bytes([is; 8]));
                    let sc = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, ctl));
                    sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(sc, p));
                }
            }
            _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc)
        }
    }

    #[inline(always)]
    unsafe fn add(a: __m256, b: __m256) -> __m256 {
        unsafe { _mm256_add_ps(a, b) }
    }

    #[inline(always)]
    unsafe fn finish(acc: __m256) -> f32 {
        unsafe { hsum_f32x8(acc) }
    }
}

entries!(Q2K, "avx2,fma,f16c", q2_k_avx2, q2_k_gemv_avx2, 2);
entries!(Q3K, "avx2,fma,f16c", q3_k_avx2, q3_k_gemv_avx2, 2);
entries!(Q4K, "avx2,fma,f16c", q4_k_avx2, q4_k_gemv_avx2, 2);
entries!(Q5K, "avx2,fma,f16c", q5_k_avx2, q5_k_gemv_avx2, 2);
entries!(Q6K, "avx2,fma,f16c", q6_k_avx2, q6_k_gemv_avx2, 2);
