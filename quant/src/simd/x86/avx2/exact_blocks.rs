//! In-register dequantizers for the exact product: each turns 8 values of a block into 8 f32
//! lanes with the same operations, in the same order, as the block's scalar `to_float`, so the
//! lanes are bit for bit what `dequantize` writes. Where `to_float` computes `d·q + m` the
//! product `d·q` is exact in f32 (an f16 times a small integer), so one FMA rounds as the
//! scalar multiply-then-add does.

use std::arch::x86_64::*;

use super::exact::Exact;
use super::f16;
use crate::block::{BlockQ4_0, BlockQ4_1, BlockQ4K, BlockQ6K, BlockQ8_0, scale_min_k4};

/// 8 bytes at `p`, zero-extended to i32 lanes.
#[inline(always)]
unsafe fn u8x8(p: *const u8) -> __m256i {
    unsafe { _mm256_cvtepu8_epi32(_mm_loadl_epi64(p.cast())) }
}

/// The nibbles of the 8 bytes at `p`: the low ones, or the high ones when `high`.
#[inline(always)]
unsafe fn nibbles8(p: *const u8, high: bool) -> __m256i {
    unsafe {
        // A variable shift rather than a branch: `high` is a constant where the loop over groups
        // is unrolled, and the shift folds to an immediate there.
        let v = _mm256_srlv_epi32(u8x8(p), _mm256_set1_epi32(4 * high as i32));
        _mm256_and_si256(v, _mm256_set1_epi32(0xF))
    }
}

/// Q4_0: `d·(q − 8)`. Value `j < 16` is the low nibble of `qs[j]`, `j + 16` its high nibble.
pub(super) struct Q4_0;

impl Exact for Q4_0 {
    type W = BlockQ4_0;
    type P = __m256;

    #[inline(always)]
    unsafe fn prep(w: &BlockQ4_0) -> __m256 {
        unsafe { _mm256_set1_ps(f16(w.d.0)) }
    }

    #[inline(always)]
    unsafe fn group(w: &BlockQ4_0, d: &__m256, g: usize) -> __m256 {
        unsafe {
            let q = nibbles8(w.qs.as_ptr().add(8 * (g % 2)), g >= 2);
            _mm256_mul_ps(*d, _mm256_cvtepi32_ps(_mm256_sub_epi32(q, _mm256_set1_epi32(8))))
        }
    }
}

/// Q4_1: `d·q + m`, nibbles as Q4_0.
pub(super) struct Q4_1;

impl Exact for Q4_1 {
    type W = BlockQ4_1;
    type P = (__m256, __m256);

    #[inline(always)]
    unsafe fn prep(w: &BlockQ4_1) -> (__m256, __m256) {
        unsafe { (_mm256_set1_ps(f16(w.d.0)), _mm256_set1_ps(f16(w.m.0))) }
    }

    #[inline(always)]
    unsafe fn group(w: &BlockQ4_1, p: &(__m256, __m256), g: usize) -> __m256 {
        unsafe {
            let q = nibbles8(w.qs.as_ptr().add(8 * (g % 2)), g >= 2);
            _mm256_fmadd_ps(p.0, _mm256_cvtepi32_ps(q), p.1)
        }
    }
}

/// Q8_0: `q·d`.
pub(super) struct Q8_0;

impl Exact for Q8_0 {
    type W = BlockQ8_0;
    type P = __m256;

    #[inline(always)]
    unsafe fn prep(w: &BlockQ8_0) -> __m256 {
        unsafe { _mm256_set1_ps(f16(w.d.0)) }
    }

    #[inline(always)]
    unsafe fn group(w: &BlockQ8_0, d: &__m256, g: usize) -> __m256 {
        unsafe {
            let q = _mm256_cvtepi8_epi32(_mm_loadl_epi64(w.qs.as_ptr().add(8 * g).cast()));
            _mm256_mul_ps(_mm256_cvtepi32_ps(q), *d)
        }
    }
}

/// Q4_K: `(d·sc)·q − dmin·m` per sub-block of 32.
pub(super) struct Q4K;

impl Exact for Q4K {
    type W = BlockQ4K;
    /// Per sub-block: `d·sc` and `dmin·m`, both exact in f32.
    type P = ([f32; 8], [f32; 8]);

    #[inline(always)]
    unsafe fn prep(w: &BlockQ4K) -> ([f32; 8], [f32; 8]) {
        let (d, dmin) = unsafe { (f16(w.d.0), f16(w.dmin.0)) };
        let (mut sc, mut mn) = ([0f32; 8], [0f32; 8]);
        for j in 0..8 {
            let (s, m) = scale_min_k4(j, &w.scales);
            sc[j] = d * s as f32;
            mn[j] = dmin * m as f32;
        }
        (sc, mn)
    }

    #[inline(always)]
    unsafe fn group(w: &BlockQ4K, p: &([f32; 8], [f32; 8]), g: usize) -> __m256 {
        // Values `64·j + l` and `64·j + 32 + l` are the nibbles of `qs[32·j + l]`.
        let sub = g / 4;
        unsafe {
            let q = nibbles8(w.qs.as_ptr().add(32 * (g / 8) + 8 * (g % 4)), sub % 2 == 1);
            _mm256_fmadd_ps(_mm256_set1_ps(p.0[sub]), _mm256_cvtepi32_ps(q), _mm256_set1_ps(-p.1[sub]))
        }
    }
}

/// Q6_K: `(d·sc)·(q − 32)` per sub-block of 16.
pub(super) struct Q6K;

impl Exact for Q6K {
    type W = BlockQ6K;
    /// `d·sc` per sub-block (exact in f32).
    type P = [f32; 16];

    #[inline(always)]
    unsafe fn prep(w: &BlockQ6K) -> [f32; 16] {
        let d = unsafe { f16(w.d.0) };
        std::array::from_fn(|j| d * w.scales[j] as f32)
    }

    #[inline(always)]
    unsafe fn group(w: &BlockQ6K, p: &[f32; 16], g: usize) -> __m256 {
        // Value `128·h + 32·k + l`: low nibble of `ql[64·h + 32·(k % 2) + l]` (high nibble for
        // k ≥ 2), high two bits `2k..2k+2` of `qh[32·h + l]`.
        let (h, k, l) = (g / 16, (g / 4) % 4, 8 * (g % 4));
        unsafe {
            let low = nibbles8(w.ql.as_ptr().add(64 * h + 32 * (k % 2) + l), k >= 2);
            let hb = _mm256_srlv_epi32(u8x8(w.qh.as_ptr().add(32 * h + l)), _mm256_set1_epi32(2 * k as i32));
            let high = _mm256_slli_epi32::<4>(_mm256_and_si256(hb, _mm256_set1_epi32(3)));
            let q = _mm256_sub_epi32(_mm256_or_si256(low, high), _mm256_set1_epi32(32));
            _mm256_mul_ps(_mm256_set1_ps(p[g / 2]), _mm256_cvtepi32_ps(q))
        }
    }
}
