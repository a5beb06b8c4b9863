//! AVX2 steps of the 32-value types: Q4_0 and Q5_0 with Q8_0, Q4_1 and Q5_1 with Q8_1, Q8_0
//! with Q8_0. llama.cpp's shape: unpack a block to 32 bytes, one byte dot product, one FMA by
//! the product of the two scales. Three departures, all exact in integers:
//!
//! - the activation block's bytes, scales and sums are prepared once per block for all the
//!   rows of a `gemv` (and unpacked weights once for both activation rows of a `gemm2`);
//! - Q4_0 and Q5_0 multiply their unsigned values and start the integer sum at `−o·Σy`
//!   (`Σ(q − o)·y = Σq·y − o·Σy`, offset `o` = 8 or 16, `Σy` once per activation block),
//!   where llama.cpp moves signs around with two `vpsignb` per block and row;
//! - the minimums' term `m·s` of Q4_1 and Q5_1 is summed in a vector lane, not a scalar chain.

use std::arch::x86_64::*;
use std::marker::PhantomData;

use super::gemm::{Pair, gemm_entry};
use super::{ByteDot, Step, dot_i8, entries, f16x1_at, f16x2_at, hsum_f32x8, nibbles_32};
use crate::block::{BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, BlockQ8_1};

/// The 32 signed bytes of a Q8 activation block.
#[inline(always)]
unsafe fn load_q8(qs: &[i8; 32]) -> __m256i {
    unsafe { _mm256_loadu_si256(qs.as_ptr().cast()) }
}

/// The address of a block, for loading its leading scale fields in one go.
#[inline(always)]
fn at<B>(b: &B) -> *const u8 {
    (b as *const B).cast()
}

/// `acc + (dx·dy)·sum`, `dx` and `dy` in lane 0.
#[inline(always)]
unsafe fn fma_scaled(acc: __m256, dx: __m128, dy: __m128, sum: __m256i) -> __m256 {
    unsafe { _mm256_fmadd_ps(_mm256_broadcastss_ps(_mm_mul_ss(dx, dy)), _mm256_cvtepi32_ps(sum), acc) }
}

/// A Q4_0 block's values as unsigned bytes (0..16).
#[inline(always)]
unsafe fn q4_0_bytes<D: ByteDot>(x: &BlockQ4_0) -> __m256i {
    unsafe { nibbles_32(&x.qs) }
}

/// A Q5_0 block's values as unsigned bytes (0..32).
#[inline(always)]
unsafe fn q5_0_bytes<D: ByteDot>(x: &BlockQ5_0) -> __m256i {
    unsafe { _mm256_or_si256(nibbles_32(&x.qs), D::bits_to_bytes(x.qh, 0x10)) }
}

/// A Q4_1 block's values as unsigned bytes.
#[inline(always)]
unsafe fn q4_1_bytes<D: ByteDot>(x: &BlockQ4_1) -> __m256i {
    unsafe { nibbles_32(&x.qs) }
}

/// A Q5_1 block's values as unsigned bytes.
#[inline(always)]
unsafe fn q5_1_bytes<D: ByteDot>(x: &BlockQ5_1) -> __m256i {
    unsafe { _mm256_or_si256(nibbles_32(&x.qs), D::bits_to_bytes(x.qh, 0x10)) }
}

/// Implements the parts of [`Step`] that are the same for every type with one accumulator.
macro_rules! one_acc {
    () => {
        type Acc = __m256;

        #[inline(always)]
        unsafe fn zero() -> __m256 {
            unsafe { _mm256_setzero_ps() }
        }

        #[inline(always)]
        unsafe fn add(a: __m256, b: __m256) -> __m256 {
            unsafe { _mm256_add_ps(a, b) }
        }

        #[inline(always)]
        unsafe fn finish(acc: __m256) -> f32 {
            unsafe { hsum_f32x8(acc) }
        }
    };
}

/// Declares a type with unsigned values `q` stored with an offset `o` (`x = d·(q − o)`) dotted
/// with Q8_0: the integer sum of each block starts at `−o·Σy`.
macro_rules! offset_type {
    ($name:ident, $w:ty, $offset:literal, $bytes:ident, $doc:literal) => {
        #[doc = $doc]
        pub(super) struct $name<D>(PhantomData<D>);

        impl<D: ByteDot> Step for $name<D> {
            type W = $w;
            type A = BlockQ8_0;
            /// The activation bytes, its scale, and `−o·Σy` per i32 lane.
            type Prep = (__m256i, __m128, __m256i);
            one_acc!();

            #[inline(always)]
            unsafe fn prep(y: &BlockQ8_0) -> Self::Prep {
                unsafe {
                    let qy = load_q8(&y.qs);
                    let zero = _mm256_setzero_si256();
                    let osum = D::dpbusd(zero, _mm256_set1_epi8($offset), qy);
                    (qy, f16x1_at(at(y)), _mm256_sub_epi32(zero, osum))
                }
            }

            #[inline(always)]
            unsafe fn step(acc: __m256, x: &$w, _: &BlockQ8_0, p: Self::Prep) -> __m256 {
                unsafe { fma_scaled(acc, f16x1_at(at(x)), p.1, D::dpbusd(p.2, $bytes::<D>(x), p.0)) }
            }
        }

        impl<D: ByteDot> Pair for $name<D> {
            /// The unsigned values and the scale.
            type XPrep = (__m256i, __m128);

            #[inline(always)]
            unsafe fn xprep(x: &$w) -> Self::XPrep {
                unsafe { ($bytes::<D>(x), f16x1_at(at(x))) }
            }

            #[inline(always)]
            unsafe fn pair(acc: __m256, x: Self::XPrep, y: Self::Prep) -> __m256 {
                unsafe { fma_scaled(acc, x.1, y.1, D::dpbusd(y.2, x.0, y.0)) }
            }
        }
    };
}

offset_type!(Q4_0, BlockQ4_0, 8, q4_0_bytes, "Q4_0 × Q8_0: `x = d·(q − 8)`.");
offset_type!(Q5_0, BlockQ5_0, 16, q5_0_bytes, "Q5_0 × Q8_0: `x = d·(q − 16)`.");

/// Q8_0 × Q8_0: signed times signed, with ggml's move of the weight's sign onto the activation
/// (an offset of 128 would overflow `vpmaddubsw`'s 16-bit pairs).
pub(super) struct Q8_0<D>(PhantomData<D>);

impl<D: ByteDot> Step for Q8_0<D> {
    type W = BlockQ8_0;
    type A = BlockQ8_0;
    /// The activation bytes and scale.
    type Prep = (__m256i, __m128);
    one_acc!();

    #[inline(always)]
    unsafe fn prep(y: &BlockQ8_0) -> Self::Prep {
        unsafe { (load_q8(&y.qs), f16x1_at(at(y))) }
    }

    #[inline(always)]
    unsafe fn step(acc: __m256, x: &BlockQ8_0, _: &BlockQ8_0, p: Self::Prep) -> __m256 {
        unsafe { fma_scaled(acc, f16x1_at(at(x)), p.1, dot_i8::<D>(_mm256_setzero_si256(), load_q8(&x.qs), p.0)) }
    }
}

impl<D: ByteDot> Pair for Q8_0<D> {
    /// `|q|`, `q` (for its signs) and the scale.
    type XPrep = (__m256i, __m256i, __m128);

    #[inline(always)]
    unsafe fn xprep(x: &BlockQ8_0) -> Self::XPrep {
        unsafe {
            let q = load_q8(&x.qs);
            (_mm256_sign_epi8(q, q), q, f16x1_at(at(x)))
        }
    }

    #[inline(always)]
    unsafe fn pair(acc: __m256, x: Self::XPrep, y: Self::Prep) -> __m256 {
        unsafe { fma_scaled(acc, x.2, y.1, D::dpbusd(_mm256_setzero_si256(), x.0, _mm256_sign_epi8(y.0, x.1))) }
    }
}

/// Declares a type with a minimum (`x = d·q + m`) dotted with Q8_1, whose `s = d·Σy` carries the
/// minimum's term.
macro_rules! min_type {
    ($name:ident, $w:ty, $bytes:ident, $doc:literal) => {
        #[doc = $doc]
        pub(super) struct $name<D>(PhantomData<D>);

        impl<D: ByteDot> Step for $name<D> {
            type W = $w;
            type A = BlockQ8_1;
            /// Products scaled in the first register; `[dx·dy, m·s]` summed in the second, whose
            /// lane 1 is the minimums' term.
            type Acc = (__m256, __m128);
            /// The activation bytes and `[dy, s]`.
            type Prep = (__m256i, __m128);

            #[inline(always)]
            unsafe fn zero() -> Self::Acc {
                unsafe { (_mm256_setzero_ps(), _mm_setzero_ps()) }
            }

            #[inline(always)]
            unsafe fn prep(y: &BlockQ8_1) -> Self::Prep {
                unsafe { (load_q8(&y.qs), f16x2_at(at(y))) }
            }

            #[inline(always)]
            unsafe fn step(acc: Self::Acc, x: &$w, _: &BlockQ8_1, p: Self::Prep) -> Self::Acc {
                unsafe {
                    // [dx, m] times [dy, s]: both blocks start with their two halves.
                    let s = _mm_mul_ps(f16x2_at(at(x)), p.1);
                    let sum = _mm256_cvtepi32_ps(D::dpbusd(_mm256_setzero_si256(), $bytes::<D>(x), p.0));
                    (_mm256_fmadd_ps(_mm256_broadcastss_ps(s), sum, acc.0), _mm_add_ps(acc.1, s))
                }
            }

            #[inline(always)]
            unsafe fn add(a: Self::Acc, b: Self::Acc) -> Self::Acc {
                unsafe { (_mm256_add_ps(a.0, b.0), _mm_add_ps(a.1, b.1)) }
            }

            #[inline(always)]
            unsafe fn finish(acc: Self::Acc) -> f32 {
                unsafe { hsum_f32x8(acc.0) + _mm_cvtss_f32(_mm_movehdup_ps(acc.1)) }
            }
        }

        impl<D: ByteDot> Pair for $name<D> {
            /// The values and `[d, m]`.
            type XPrep = (__m256i, __m128);

            #[inline(always)]
            unsafe fn xprep(x: &$w) -> Self::XPrep {
                unsafe { ($bytes::<D>(x), f16x2_at(at(x))) }
            }

            #[inline(always)]
            unsafe fn pair(acc: __m256, x: Self::XPrep, y: Self::Prep) -> __m256 {
                unsafe {
                    // [dx·dy, m·s, 0, 0]; the minimums' term joins the sum in lane 0.
                    let s = _mm_mul_ps(x.1, y.1);
                    let sum = _mm256_cvtepi32_ps(D::dpbusd(_mm256_setzero_si256(), x.0, y.0));
                    let acc = _mm256_fmadd_ps(_mm256_broadcastss_ps(s), sum, acc);
                    _mm256_add_ps(acc, _mm256_zextps128_ps256(_mm_insert_ps::<0x4E>(s, s)))
                }
            }
        }
    };
}

min_type!(Q4_1, BlockQ4_1, q4_1_bytes, "Q4_1 × Q8_1: `x = d·q + m`.");
min_type!(Q5_1, BlockQ5_1, q5_1_bytes, "Q5_1 × Q8_1: `x = d·q + m`.");

/// Declares the one-row, several-row and two-activation-row entry points of `$name` for plain
/// AVX2 and for AVX-512 VNNI.
macro_rules! all_entries {
    ($name:ident: $dot:ident, $gemv:ident, $gemm:ident, $dot_vnni:ident, $gemv_vnni:ident, $gemm_vnni:ident) => {
        entries!($name<super::Avx2>, "avx2,fma,f16c", $dot, $gemv, 4);
        entries!($name<super::Vnni>, "avx2,fma,f16c,avx512vnni,avx512vl,avx512bw", $dot_vnni, $gemv_vnni, 4);
        gemm_entry!($name<super::Avx2>, "avx2,fma,f16c", $gemm, 4);
        gemm_entry!($name<super::Vnni>, "avx2,fma,f16c,avx512vnni,avx512vl,avx512bw", $gemm_vnni, 4);
    };
}

all_entries!(Q4_0: q4_0_avx2, q4_0_gemv_avx2, q4_0_gemm_avx2, q4_0_vnni, q4_0_gemv_vnni, q4_0_gemm_vnni);
all_entries!(Q4_1: q4_1_avx2, q4_1_gemv_avx2, q4_1_gemm_avx2, q4_1_vnni, q4_1_gemv_vnni, q4_1_gemm_vnni);
all_entries!(Q5_0: q5_0_avx2, q5_0_gemv_avx2, q5_0_gemm_avx2, q5_0_vnni, q5_0_gemv_vnni, q5_0_gemm_vnni);
all_entries!(Q5_1: q5_1_avx2, q5_1_gemv_avx2, q5_1_gemm_avx2, q5_1_vnni, q5_1_gemv_vnni, q5_1_gemm_vnni);
all_entries!(Q8_0: q8_0_avx2, q8_0_gemv_avx2, q8_0_gemm_avx2, q8_0_vnni, q8_0_gemv_vnni, q8_0_gemm_vnni);
