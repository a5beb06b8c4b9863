//! [`QMatrix::matmul`]: activations times a weight matrix, ggml's way. Quantized weights get
//! their activations quantized once per call (to Q8_0, Q8_1 or Q8_K, as the weight type asks)
//! into a thread-local scratch buffer, then every output is one `vec_dot` of a weight row with
//! an activation row. The output rows are split across rayon's threads, also for a single
//! activation row, so one decode step uses every thread; small products stay on one thread.

use std::cell::Cell;

use rayon::prelude::*;

use crate::QMatrix;
use crate::kernels::{Dot, Kernels, kernels, kernels_for};
use crate::simd::Isa;

/// Products below this many multiply-adds run on the calling thread: waking other threads
/// costs a few microseconds, about what 2^16 multiply-adds take.
const MIN_PARALLEL_WORK: usize = 1 << 16;
/// Each parallel task gets at least this many multiply-adds, so task overhead stays small.
const MIN_TASK_WORK: usize = 1 << 15;
/// Tasks per thread, so that uneven progress (another process on a core) is evened out.
const TASKS_PER_THREAD: usize = 4;
/// The most activation rows [`for_outputs`] hands to one call.
pub(crate) const MAX_GROUP: usize = 8;
/// Bytes of weights a task multiplies with every activation row before moving on, so that
/// they are read from memory once and from the L2 cache for the other activation rows.
const L2_WEIGHTS: usize = 128 << 10;

thread_local! {
    /// The quantized activations of the current call, kept between calls to avoid allocating.
    static SCRATCH: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// Runs `f` on a scratch buffer of `len` bytes, reusing this thread's buffer. A nested call
/// (from a rayon task run while waiting) finds the buffer taken and allocates its own.
fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
    let mut buf = SCRATCH.with(Cell::take);
    if buf.len() < len {
        buf.resize(len, 0);
    }
    let r = f(&mut buf[..len]);
    SCRATCH.with(|s| s.set(buf));
    r
}

/// The output pointer, shared by tasks that write disjoint elements.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: tasks write disjoint ranges (distinct output rows), see `for_outputs`.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

impl QMatrix {
    /// `out[i, r] = Σ_c x[i, c] · W[r, c]` for `n` activation rows: `x` is `[n, cols]`
    /// row-major, `out` is `[n, rows]`. Quantized types quantize the activations as ggml does
    /// (Q8_0 for Q4_0/Q5_0/Q8_0, Q8_1 for Q4_1/Q5_1, Q8_K for the K-quants) and use integer dot
    /// products; float types use f32 dots. Spread across rayon's threads by output rows.
    ///
    /// # Panics
    ///
    /// If `x.len() != n * cols` or `out.len() != n * rows` (caller bugs).
    pub fn matmul(&self, x: &[f32], n: usize, out: &mut [f32]) {
        matmul(self, kernels(self.ty()), x, n, out);
    }

    /// [`QMatrix::matmul`] with the kernels of instruction set `isa` (for benchmarks and tests;
    /// an `isa` this CPU lacks runs the scalar kernels).
    ///
    /// # Panics
    ///
    /// As [`QMatrix::matmul`].
    pub fn matmul_isa(&self, isa: Isa, x: &[f32], n: usize, out: &mut [f32]) {
        let isa = if isa.is_supported() { isa } else { Isa::Scalar };
        matmul(self, kernels_for(isa, self.ty()), x, n, out);
    }

    /// [`QMatrix::matmul`] with the scalar reference kernels (`vec_dot_unopt`).
    ///
    /// # Panics
    ///
    /// As [`QMatrix::matmul`].
    pub fn matmul_unopt(&self, x: &[f32], n: usize, out: &mut [f32]) {
        let k = kernels(self.ty());
        let unopt = Kernels { dot: k.dot_unopt, ..*k };
        matmul(self, &unopt, x, n, out);
    }
}

/// Checks a product's slice lengths (caller bugs panic, naming the shapes) and settles the
/// empty ones: `false` when nothing is left to compute.
pub(crate) fn has_work(m: &QMatrix, x: &[f32], n: usize, out: &mut [f32]) -> bool {
    let (rows, cols) = (m.rows(), m.cols());
    assert_eq!(x.len(), n * cols, "x must be [n, cols] = [{n}, {cols}]");
    assert_eq!(out.len(), n * rows, "out must be [n, rows] = [{n}, {rows}]");
    if cols == 0 {
        out.fill(0.0);
    }
    !out.is_empty() && cols != 0
}

fn matmul(m: &QMatrix, k: &Kernels, x: &[f32], n: usize, out: &mut [f32]) {
    let (rows, cols) = (m.rows(), m.cols());
    if !has_work(m, x, n, out) {
        return;
    }
    let w = m.bytes();
    let rb = m.row_bytes();
    // `QMatrix::new` refuses the activation-only types, the only ones without a product.
    let Some(dot) = k.dot else { unreachable!("{} has no product", m.ty()) };
    match dot {
        Dot::Float { gemv, .. } => {
            for_outputs(rows, n, cols, rb, 1, out, |r0, r1, i, outs| {
                for (k, o) in outs.iter_mut().enumerate() {
                    gemv(&w[r0 * rb..r1 * rb], rb, &x[(i + k) * cols..(i + k + 1) * cols], o);
                }
            });
        }
        Dot::Quant { act, quantize, gemv, gemm2, .. } => {
            // `cols` is whole blocks of the weight type, and its activation type has as many
            // values per block.
            let ab = cols / act.block_values() * act.block_bytes();
            with_scratch(n * ab, |buf| {
                if n * cols >= MIN_PARALLEL_WORK && n > 1 {
                    buf.par_chunks_mut(ab).zip(x.par_chunks(cols)).for_each(|(b, xr)| quantize(xr, b));
                } else {
                    for (b, xr) in buf.chunks_mut(ab).zip(x.chunks(cols)) {
                        quantize(xr, b);
                    }
                }
                let buf = &*buf;
                let act_row = |i: usize| &buf[i * ab..(i + 1) * ab];
                let group = if gemm2.is_some() { 2 } else { 1 };
                for_outputs(rows, n, cols, rb, group, out, |r0, r1, i, outs| {
                    let wr = &w[r0 * rb..r1 * rb];
                    match (gemm2, outs) {
                        (Some(gemm2), [o0, o1]) => gemm2(wr, rb, [act_row(i), act_row(i + 1)], [o0, o1]),
                        (_, outs) => {
                            for (k, o) in outs.iter_mut().enumerate() {
                                gemv(wr, rb, act_row(i + k), o);
                            }
                        }
                    }
                });
            });
        }
    }
}

/// Fills `out` (`[n, rows]`) by calls `f(r0, r1, i, outs)` where `outs[k]` is
/// `out[i + k, r0..r1]` for up to `group` activation rows from `i`, in parallel over ranges of
/// rows. Each task walks its rows in pieces of about [`L2_WEIGHTS`] bytes and, for each piece,
/// every activation row, so the piece is read from memory once. `group <= MAX_GROUP`.
pub(crate) fn for_outputs(
    rows: usize,
    n: usize,
    cols: usize,
    row_bytes: usize,
    group: usize,
    out: &mut [f32],
    f: impl Fn(usize, usize, usize, &mut [&mut [f32]]) + Sync,
) {
    assert!((1..=MAX_GROUP).contains(&group), "groups of 1 to {MAX_GROUP} activation rows");
    let piece = (L2_WEIGHTS / row_bytes.max(1)).max(4);
    let run = |r0: usize, r1: usize, out: OutPtr| {
        for p0 in (r0..r1).step_by(piece) {
            let p1 = (p0 + piece).min(r1);
            for i in (0..n).step_by(group) {
                let g = group.min(n - i);
                // SAFETY: `i + k < n` and `p0 < p1 <= rows`, so each range is inside `out`,
                // whose length the caller checked is `n·rows`; the ranges of different `k` are
                // different rows of `out`, and each task owns its rows `r0..r1`, so no two
                // slices alive at once overlap.
                let mut segs: [&mut [f32]; MAX_GROUP] = Default::default();
                for (k, seg) in segs.iter_mut().take(g).enumerate() {
                    *seg = unsafe { std::slice::from_raw_parts_mut(out.0.add((i + k) * rows + p0), p1 - p0) };
                }
                f(p0, p1, i, &mut segs[..g]);
            }
        }
    };
    let ptr = OutPtr(out.as_mut_ptr());
    let work = rows * n * cols.max(1);
    let threads = rayon::current_num_threads();
    if threads <= 1 || work < MIN_PARALLEL_WORK || rows == 1 {
        run(0, rows, ptr);
        return;
    }
    let per_row = n * cols.max(1);
    let min_rows = MIN_TASK_WORK.div_ceil(per_row).max(1);
    // Multiples of 4 rows, so the kernels' groups of rows stay whole.
    let chunk = rows.div_ceil(threads * TASKS_PER_THREAD).max(min_rows).next_multiple_of(4);
    let tasks = rows.div_ceil(chunk);
    (0..tasks).into_par_iter().for_each(|t| {
        let r0 = t * chunk;
        run(r0, (r0 + chunk).min(rows), ptr);
    });
}
