//! AVX2 kernels of the exact product: quantized weights times f32 activations, the weights
//! dequantized exactly as `dequantize` does and multiplied with FMA.
//!
//! Two shapes:
//!
//! - one activation row (decoding), types with an [`Exact`] dequantizer: four weight rows at a
//!   time, each block dequantized 8 values at a time in registers and multiplied by the same 8
//!   activations, loaded once for the four rows;
//! - several activation rows, or a type without an [`Exact`] dequantizer: four weight rows are
//!   dequantized [`CHUNK`] values at a time into a 4 KiB buffer (L1-resident), then every
//!   activation row is multiplied with it in tiles of up to 3 activation rows × 4 weight rows,
//!   so each block is dequantized once for all the activation rows of the call.

use std::arch::x86_64::*;
use std::marker::PhantomData;

use super::exact_blocks::{Q4_0, Q4_1, Q4K, Q6K, Q8_0};
use super::{AHEAD, PREFETCH_GROUP_BYTES, hsum_f32x8};
use crate::QuantType;
use crate::block::{Block, BlockQ2K, BlockQ3K, BlockQ5_0, BlockQ5_1, BlockQ5K, as_blocks, to_float_blocks};
use crate::simd::ExactFn;

/// Values of a row dequantized at once: 4 rows of 256 f32 are 4 KiB, which stay in L1 while
/// every activation row passes over them. Every block size (32, 256) divides it.
const CHUNK: usize = 256;
/// Weight rows per group.
const ROWS: usize = 4;
/// Weight rows per group of the in-register kernel.
const GEMV_ROWS: usize = 4;

/// A block type dequantized 8 values at a time in registers.
pub(super) trait Exact {
    /// The block.
    type W: Block;
    /// What `group` needs from the block's scales, computed once per block.
    type P: Copy;
    /// The block's scales, ready for `group`.
    unsafe fn prep(w: &Self::W) -> Self::P;
    /// Values `8g..8g + 8` of the block, bit for bit as its `to_float`, with `p = prep(w)`.
    unsafe fn group(w: &Self::W, p: &Self::P, g: usize) -> __m256;
}

/// Whole blocks of one type into f32 values.
trait Dequant {
    /// The block.
    type W: Block;
    /// `out.len() == w.len() · VALUES`.
    unsafe fn dequant(w: &[Self::W], out: &mut [f32]);
}

/// [`Dequant`] with an [`Exact`] dequantizer.
struct Regs<E>(PhantomData<E>);

impl<E: Exact> Dequant for Regs<E> {
    type W = E::W;

    #[inline(always)]
    unsafe fn dequant(w: &[E::W], out: &mut [f32]) {
        debug_assert_eq!(out.len(), w.len() * E::W::VALUES);
        for (b, o) in w.iter().zip(out.chunks_exact_mut(E::W::VALUES)) {
            // SAFETY: group `g < VALUES / 8` writes `o[8g..8g + 8]`, inside `o`.
            unsafe {
                let p = E::prep(b);
                for g in 0..E::W::VALUES / 8 {
                    _mm256_storeu_ps(o.as_mut_ptr().add(8 * g), E::group(b, &p, g));
                }
            }
        }
    }
}

/// [`Dequant`] with the block's scalar `to_float`.
struct Scalar<B>(PhantomData<B>);

impl<B: Block> Dequant for Scalar<B> {
    type W = B;

    #[inline(always)]
    unsafe fn dequant(w: &[B], out: &mut [f32]) {
        to_float_blocks(w, out);
    }
}

/// The checked shapes of a call: `(rows, cols)`, weights as blocks.
#[inline(always)]
fn shapes<'a, B: Block>(w: &'a [u8], row_bytes: usize, x: &[&[f32]], out: &[&mut [f32]]) -> (&'a [B], usize, usize) {
    assert!(!x.is_empty() && x.len() == out.len(), "as many activation rows as output rows");
    let (cols, rows) = (x[0].len(), out[0].len());
    assert!(x.iter().all(|r| r.len() == cols), "activation rows differ in length");
    assert!(out.iter().all(|r| r.len() == rows), "output rows differ in length");
    assert!(cols.is_multiple_of(B::VALUES), "{cols} columns are not whole {} blocks", B::TYPE);
    assert_eq!(row_bytes, cols / B::VALUES * std::mem::size_of::<B>(), "row bytes do not match the columns");
    assert_eq!(w.len(), rows * row_bytes, "weights must be {rows} rows of {row_bytes} bytes");
    let Some(blocks) = as_blocks::<B>(w) else { panic!("{} weights are not whole blocks", B::TYPE) };
    (blocks, rows, cols)
}

/// One activation row times `out.len()` rows of `nb` blocks, `R` rows at a time, dequantizing
/// in registers.
///
/// # Safety
///
/// `w.len() == out.len() · nb`, `x.len() == nb · VALUES`; the CPU has AVX2 and FMA.
#[inline(always)]
unsafe fn gemv_rows<E: Exact, const R: usize>(w: &[E::W], nb: usize, x: &[f32], out: &mut [f32]) {
    let v = E::W::VALUES;
    let size = std::mem::size_of::<E::W>();
    // As the int8 `gemv`: interleaved short rows outrun the hardware prefetchers.
    let lines = if R * nb * size <= PREFETCH_GROUP_BYTES { (R * size).div_ceil(64) } else { 0 };
    for (i, o) in out.chunks_exact_mut(R).enumerate() {
        // SAFETY: rows `R·i..R·i + R` exist, block `b < nb` of each, values `b·v + 8g + 8 <= x.len()`.
        unsafe {
            let base = w.as_ptr().add(R * i * nb);
            let ahead = base.wrapping_add(AHEAD * R * nb).cast::<i8>();
            let mut acc = [_mm256_setzero_ps(); R];
            for b in 0..nb {
                let pf = ahead.wrapping_add(b * R * size);
                for l in 0..lines {
                    _mm_prefetch::<_MM_HINT_T0>(pf.wrapping_add(64 * l));
                }
                let blk: [&E::W; R] = std::array::from_fn(|k| &*base.add(k * nb + b));
                let p: [E::P; R] = std::array::from_fn(|k| E::prep(blk[k]));
                for g in 0..v / 8 {
                    let xv = _mm256_loadu_ps(x.as_ptr().add(b * v + 8 * g));
                    for k in 0..R {
                        acc[k] = _mm256_fmadd_ps(E::group(blk[k], &p[k], g), xv, acc[k]);
                    }
                }
            }
            for (o, a) in o.iter_mut().zip(acc) {
                *o = hsum_f32x8(a);
            }
        }
    }
}

/// One activation row, dequantizing in registers.
#[inline(always)]
unsafe fn gemv<E: Exact>(w: &[E::W], x: &[f32], out: &mut [f32]) {
    let nb = x.len() / E::W::VALUES;
    let whole = out.len() / GEMV_ROWS * GEMV_ROWS;
    let (head, tail) = out.split_at_mut(whole);
    // SAFETY: the caller's shapes, split at a row boundary.
    unsafe {
        gemv_rows::<E, GEMV_ROWS>(&w[..whole * nb], nb, x, head);
        gemv_rows::<E, 1>(&w[whole * nb..], nb, x, tail);
    }
}

/// `s[g][k] = Σ_c buf[k·CHUNK + c] · x[g][c]` for `c < len`: `G` activation rows times the four
/// buffered weight rows, two accumulators per pair when `G == 1` so that FMAs do not wait on
/// each other.
///
/// # Safety
///
/// `buf` holds `ROWS · CHUNK` values, `len <= CHUNK`, each `x[g]` has `len` values.
#[inline(always)]
unsafe fn tile<const G: usize>(buf: &[f32; ROWS * CHUNK], len: usize, x: [*const f32; G]) -> [[f32; ROWS]; G] {
    let bp = buf.as_ptr();
    let mut s = [[0f32; ROWS]; G];
    // SAFETY: lane group `i < len / 8` reads values `8i..8i + 8 <= len` of each row and of `x[g]`.
    unsafe {
        let mut acc = [[[_mm256_setzero_ps(); 2]; G]; ROWS];
        let groups = len / 8;
        let par = if G == 1 { 2 } else { 1 };
        for i in 0..groups {
            let xv: [__m256; G] = std::array::from_fn(|g| _mm256_loadu_ps(x[g].add(8 * i)));
            for (k, a) in acc.iter_mut().enumerate() {
                let wv = _mm256_loadu_ps(bp.add(k * CHUNK + 8 * i));
                for g in 0..G {
                    a[g][i % par] = _mm256_fmadd_ps(wv, xv[g], a[g][i % par]);
                }
            }
        }
        for (k, a) in acc.iter().enumerate() {
            for g in 0..G {
                let mut v = hsum_f32x8(_mm256_add_ps(a[g][0], a[g][1]));
                for c in groups * 8..len {
                    v += buf[k * CHUNK + c] * *x[g].add(c);
                }
                s[g][k] = v;
            }
        }
    }
    s
}

/// Adds tile sums `s` to `out[j + g][r0 + k]` for the `nr` rows that exist.
#[inline(always)]
fn add_tile<const G: usize>(out: &mut [&mut [f32]], j: usize, r0: usize, nr: usize, s: [[f32; ROWS]; G]) {
    for (g, sg) in s.iter().enumerate() {
        for (o, v) in out[j + g][r0..r0 + nr].iter_mut().zip(sg) {
            *o += v;
        }
    }
}

/// Every activation row times every weight row, through the dequantization buffer.
///
/// # Safety
///
/// The CPU has AVX2 and FMA (and whatever `D::dequant` uses).
#[inline(always)]
unsafe fn buffered<D: Dequant>(w: &[u8], row_bytes: usize, x: &[&[f32]], out: &mut [&mut [f32]]) {
    let (w, rows, cols) = shapes::<D::W>(w, row_bytes, x, out);
    let v = D::W::VALUES;
    let nb = cols / v;
    for o in out.iter_mut() {
        o.fill(0.0);
    }
    // Rows past the last one stay zero in the buffer; their sums are not written.
    let mut buf = [0f32; ROWS * CHUNK];
    for r0 in (0..rows).step_by(ROWS) {
        let nr = ROWS.min(rows - r0);
        for c0 in (0..cols).step_by(CHUNK) {
            let len = CHUNK.min(cols - c0);
            for k in 0..nr {
                let row = &w[(r0 + k) * nb..(r0 + k + 1) * nb];
                // SAFETY: `D` runs on this CPU (the caller's contract); `len` values of whole blocks.
                unsafe { D::dequant(&row[c0 / v..(c0 + len) / v], &mut buf[k * CHUNK..k * CHUNK + len]) };
            }
            let xs = |j: usize| x[j][c0..c0 + len].as_ptr();
            let mut j = 0;
            while j < x.len() {
                // Tiles of 3 (12 accumulators), and 2 + 2 rather than 3 + 1.
                let g = match x.len() - j {
                    4 => 2,
                    r => r.min(3),
                };
                // SAFETY: `buf` is full size, `len <= CHUNK`, each `x[j][c0..]` has `len` values.
                unsafe {
                    match g {
                        1 => add_tile(out, j, r0, nr, tile::<1>(&buf, len, [xs(j)])),
                        2 => add_tile(out, j, r0, nr, tile::<2>(&buf, len, [xs(j), xs(j + 1)])),
                        _ => add_tile(out, j, r0, nr, tile::<3>(&buf, len, [xs(j), xs(j + 1), xs(j + 2)])),
                    }
                }
                j += g;
            }
        }
    }
}

/// The exact product for a type with an [`Exact`] dequantizer.
#[inline(always)]
unsafe fn run_regs<E: Exact>(w: &[u8], row_bytes: usize, x: &[&[f32]], out: &mut [&mut [f32]]) {
    let (wb, _, _) = shapes::<E::W>(w, row_bytes, x, out);
    if let ([x0], [o0]) = (x, &mut *out) {
        // SAFETY: shapes checked; the caller has the CPU features.
        unsafe { gemv::<E>(wb, x0, o0) };
    } else {
        // SAFETY: as above.
        unsafe { buffered::<Regs<E>>(w, row_bytes, x, out) };
    }
}

/// Declares a `#[target_feature]` entry `$name` running `$body` (one of the drivers above).
macro_rules! exact_entry {
    ($name:ident, $driver:ident :: < $t:ty >) => {
        #[target_feature(enable = "avx2,fma,f16c")]
        fn $name(w: &[u8], row_bytes: usize, x: &[&[f32]], out: &mut [&mut [f32]]) {
            // SAFETY: the features the drivers use are enabled on this function.
            unsafe { $driver::<$t>(w, row_bytes, x, out) }
        }
    };
}

exact_entry!(q4_0, run_regs::<Q4_0>);
exact_entry!(q4_1, run_regs::<Q4_1>);
exact_entry!(q8_0, run_regs::<Q8_0>);
exact_entry!(q4_k, run_regs::<Q4K>);
exact_entry!(q6_k, run_regs::<Q6K>);
exact_entry!(q5_0, buffered::<Scalar<BlockQ5_0>>);
exact_entry!(q5_1, buffered::<Scalar<BlockQ5_1>>);
exact_entry!(q2_k, buffered::<Scalar<BlockQ2K>>);
exact_entry!(q3_k, buffered::<Scalar<BlockQ3K>>);
exact_entry!(q5_k, buffered::<Scalar<BlockQ5K>>);

/// The AVX2 exact product of quantized type `ty`; `None` for float types (their f32 product is
/// already exact) and activation-only types. The caller has checked the CPU features.
pub(super) fn kernel(ty: QuantType) -> Option<ExactFn> {
    use QuantType as T;
    // SAFETY (of every call below): handed out only after the features were detected.
    Some(match ty {
        T::Q4_0 => |w, rb, x, o| unsafe { q4_0(w, rb, x, o) },
        T::Q4_1 => |w, rb, x, o| unsafe { q4_1(w, rb, x, o) },
        T::Q8_0 => |w, rb, x, o| unsafe { q8_0(w, rb, x, o) },
        T::Q4K => |w, rb, x, o| unsafe { q4_k(w, rb, x, o) },
        T::Q6K => |w, rb, x, o| unsafe { q6_k(w, rb, x, o) },
        T::Q5_0 => |w, rb, x, o| unsafe { q5_0(w, rb, x, o) },
        T::Q5_1 => |w, rb, x, o| unsafe { q5_1(w, rb, x, o) },
        T::Q2K => |w, rb, x, o| unsafe { q2_k(w, rb, x, o) },
        T::Q3K => |w, rb, x, o| unsafe { q3_k(w, rb, x, o) },
        T::Q5K => |w, rb, x, o| unsafe { q5_k(w, rb, x, o) },
        _ => return None,
    })
}
