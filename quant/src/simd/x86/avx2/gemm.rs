//! Two activation rows at once (prefill and batched decode): each weight block is unpacked once
//! and multiplied with both activation blocks, `R` weight rows at a time, so the unpacking, the
//! weight loads and the activation loads are all shared. Only the 32-value types have it: a
//! K-quant super-block unpacks into more registers than two rows of products leave free.

use std::arch::x86_64::*;

use super::{AHEAD, PREFETCH_GROUP_BYTES, Step, hsum_f32x8};

/// A [`Step`] split into the weight block's unpacking and the product with one activation block.
pub(super) trait Pair: Step {
    /// A weight block, unpacked.
    type XPrep: Copy;
    /// Unpacks a weight block.
    unsafe fn xprep(x: &Self::W) -> Self::XPrep;
    /// `acc` plus the product of the blocks, spread over the 8 lanes (their sum is what counts).
    unsafe fn pair(acc: __m256, x: Self::XPrep, y: Self::Prep) -> __m256;
}

/// `out[c][r] = Σ w_r·y_c` for the rows of `w` (`out[0].len()` of `y[0].len()` blocks each) and
/// the two activation rows `y`, `R` rows at a time.
///
/// # Safety
///
/// The lengths agree as said, and the CPU has the features of the steps.
#[inline(always)]
pub(super) unsafe fn gemm2<K: Pair, const R: usize>(w: &[K::W], y: [&[K::A]; 2], out: [&mut [f32]; 2]) {
    let (nb, rows) = (y[0].len(), out[0].len());
    debug_assert!(y[1].len() == nb && out[1].len() == rows && w.len() == rows * nb);
    let (yp, op) = ([y[0].as_ptr(), y[1].as_ptr()], [out[0].as_mut_ptr(), out[1].as_mut_ptr()]);
    let mut row = 0;
    // SAFETY: every tile reads rows `row..row + R < rows` of `nb` blocks and writes those outputs.
    unsafe {
        while row + R <= rows {
            tile::<K, R>(w.as_ptr(), nb, yp, op, row);
            row += R;
        }
        while row < rows {
            tile::<K, 1>(w.as_ptr(), nb, yp, op, row);
            row += 1;
        }
    }
}

/// Rows `row..row + R` times both activation rows.
#[inline(always)]
unsafe fn tile<K: Pair, const R: usize>(
    w: *const K::W,
    nb: usize,
    y: [*const K::A; 2],
    out: [*mut f32; 2],
    row: usize,
) {
    let size = std::mem::size_of::<K::W>();
    // SAFETY: the caller guarantees rows `row..row + R` and both activation rows exist.
    unsafe {
        let base = w.add(row * nb);
        let mut acc = [[_mm256_setzero_ps(); 2]; R];
        // Prefetch as `gemv` does: interleaved short rows defeat the hardware prefetchers.
        let lines = if R * nb * size <= PREFETCH_GROUP_BYTES { (R * size).div_ceil(64) } else { 0 };
        let ahead = base.wrapping_add(AHEAD * R * nb).cast::<i8>();
        for b in 0..nb {
            let pf = ahead.wrapping_add(b * R * size);
            for l in 0..lines {
                _mm_prefetch::<_MM_HINT_T0>(pf.wrapping_add(64 * l));
            }
            let (p0, p1) = (K::prep(&*y[0].add(b)), K::prep(&*y[1].add(b)));
            for (r, a) in acc.iter_mut().enumerate() {
                let xp = K::xprep(&*base.add(r * nb + b));
                a[0] = K::pair(a[0], xp, p0);
                a[1] = K::pair(a[1], xp, p1);
            }
        }
        for (r, a) in acc.iter().enumerate() {
            *out[0].add(row + r) = hsum_f32x8(a[0]);
            *out[1].add(row + r) = hsum_f32x8(a[1]);
        }
    }
}

/// Declares the `#[target_feature]` entry point `$gemm` (`R` rows at a time) for the pair
/// `$step` and features `$features`.
macro_rules! gemm_entry {
    ($step:ty, $features:literal, $gemm:ident, $rows:literal) => {
        /// Two activation rows; `w.len() == out[c].len() · y[c].len()`.
        #[target_feature(enable = $features)]
        pub(super) fn $gemm(
            w: &[<$step as super::Step>::W],
            y: [&[<$step as super::Step>::A]; 2],
            out: [&mut [f32]; 2],
        ) {
            let (nb, rows) = (y[0].len(), out[0].len());
            assert!(y[1].len() == nb && out[1].len() == rows, "both activation rows must have the same shape");
            assert_eq!(w.len(), rows * nb, "weights must be out.len() rows of y.len() blocks");
            // SAFETY: the features the pair uses are enabled on this function; lengths checked.
            unsafe { super::gemm::gemm2::<$step, $rows>(w, y, out) }
        }
    };
}
pub(super) use gemm_entry;
