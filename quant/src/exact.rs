//! [`QMatrix::matmul_exact`]: activations times a weight matrix with the activations kept in
//! f32. `matmul` quantizes activations to 8 bits, as ggml does, which on a real model moves
//! logits by up to ~1; here each weight block is dequantized (bit for bit as [`crate::dequantize`])
//! and multiplied by the f32 activations, so the result is the f32 product of the dequantized
//! weights up to the order of the f32 additions. Threading is `matmul`'s ([`for_outputs`]).

use crate::QMatrix;
use crate::block::{
    Block, BlockQ2K, BlockQ3K, BlockQ4_0, BlockQ4_1, BlockQ4K, BlockQ5_0, BlockQ5_1, BlockQ5K, BlockQ6K, BlockQ8_0,
    as_blocks, to_float_blocks,
};
use crate::matmul::{MAX_GROUP, for_outputs, has_work};
use crate::simd::{self, ExactFn, Isa};
use crate::types::QuantType;

/// How [`QMatrix::matmul_with`] treats the activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Activations {
    /// Quantized to 8 bits per block, integer dot products: ggml's way and the fastest
    /// ([`QMatrix::matmul`]).
    #[default]
    Int8,
    /// Kept in f32, weights dequantized exactly ([`QMatrix::matmul_exact`]).
    Exact,
}

impl QMatrix {
    /// As `matmul`, with the activations kept in f32: each weight block is dequantized in
    /// registers (or into a small L1-resident buffer) and multiplied by the f32 activations with
    /// FMA. Equals the f32 product of the dequantized weights up to summation order. Float
    /// weight types (F32, F16, BF16) are already multiplied that way by `matmul`.
    ///
    /// # Panics
    ///
    /// If `x.len() != n * cols` or `out.len() != n * rows` (caller bugs).
    pub fn matmul_exact(&self, x: &[f32], n: usize, out: &mut [f32]) {
        self.matmul_exact_isa(Isa::detected(), x, n, out);
    }

    /// [`QMatrix::matmul`] or [`QMatrix::matmul_exact`], as `act` says.
    ///
    /// # Panics
    ///
    /// As [`QMatrix::matmul`].
    pub fn matmul_with(&self, act: Activations, x: &[f32], n: usize, out: &mut [f32]) {
        match act {
            Activations::Int8 => self.matmul(x, n, out),
            Activations::Exact => self.matmul_exact(x, n, out),
        }
    }

    /// [`QMatrix::matmul_exact`] with the kernels of instruction set `isa` (for benchmarks and
    /// tests; an `isa` this CPU lacks runs the scalar kernels).
    ///
    /// # Panics
    ///
    /// As [`QMatrix::matmul`].
    pub fn matmul_exact_isa(&self, isa: Isa, x: &[f32], n: usize, out: &mut [f32]) {
        let isa = if isa.is_supported() { isa } else { Isa::Scalar };
        if self.ty().is_float() {
            self.matmul_isa(isa, x, n, out);
            return;
        }
        let kernel = simd::exact(isa, self.ty()).unwrap_or_else(|| scalar_kernel(self.ty()));
        matmul_exact(self, kernel, x, n, out);
    }
}

fn matmul_exact(m: &QMatrix, kernel: ExactFn, x: &[f32], n: usize, out: &mut [f32]) {
    let (rows, cols) = (m.rows(), m.cols());
    if !has_work(m, x, n, out) {
        return;
    }
    let (w, rb) = (m.bytes(), m.row_bytes());
    // Up to MAX_GROUP activation rows per call: the kernels dequantize each block once for all.
    for_outputs(rows, n, cols, rb, MAX_GROUP, out, |r0, r1, i, outs| {
        let xs: [&[f32]; MAX_GROUP] =
            std::array::from_fn(|k| if k < outs.len() { &x[(i + k) * cols..(i + k + 1) * cols] } else { &[] });
        kernel(&w[r0 * rb..r1 * rb], rb, &xs[..outs.len()], outs);
    });
}

/// The scalar exact product of quantized type `ty`.
fn scalar_kernel(ty: QuantType) -> ExactFn {
    use QuantType as T;
    match ty {
        T::Q4_0 => scalar::<BlockQ4_0>,
        T::Q4_1 => scalar::<BlockQ4_1>,
        T::Q5_0 => scalar::<BlockQ5_0>,
        T::Q5_1 => scalar::<BlockQ5_1>,
        T::Q8_0 => scalar::<BlockQ8_0>,
        T::Q2K => scalar::<BlockQ2K>,
        T::Q3K => scalar::<BlockQ3K>,
        T::Q4K => scalar::<BlockQ4K>,
        T::Q5K => scalar::<BlockQ5K>,
        T::Q6K => scalar::<BlockQ6K>,
        // `QMatrix::new` refuses the activation-only types and floats never get here.
        _ => unreachable!("{ty} has no exact quantized product"),
    }
}

/// Values dequantized at once by the scalar kernel: whole blocks of every type.
const CHUNK: usize = 256;

/// [`ExactFn`] in plain Rust: each row dequantized [`CHUNK`] values at a time, dotted with
/// every activation row.
fn scalar<B: Block>(w: &[u8], row_bytes: usize, x: &[&[f32]], out: &mut [&mut [f32]]) {
    assert!(!x.is_empty() && x.len() == out.len(), "as many activation rows as output rows");
    let (cols, rows) = (x[0].len(), out[0].len());
    assert!(x.iter().all(|r| r.len() == cols) && out.iter().all(|r| r.len() == rows), "ragged rows");
    assert!(cols.is_multiple_of(B::VALUES), "{cols} columns are not whole {} blocks", B::TYPE);
    assert_eq!(row_bytes, cols / B::VALUES * std::mem::size_of::<B>(), "row bytes do not match the columns");
    assert_eq!(w.len(), rows * row_bytes, "weights must be {rows} rows of {row_bytes} bytes");
    let Some(blocks) = as_blocks::<B>(w) else { panic!("{} weights are not whole blocks", B::TYPE) };
    let nb = cols / B::VALUES;
    let mut buf = [0f32; CHUNK];
    for (r, row) in blocks.chunks_exact(nb.max(1)).enumerate().take(rows) {
        for o in out.iter_mut() {
            o[r] = 0.0;
        }
        for c0 in (0..cols).step_by(CHUNK) {
            let len = CHUNK.min(cols - c0);
            to_float_blocks(&row[c0 / B::VALUES..(c0 + len) / B::VALUES], &mut buf[..len]);
            for (xj, oj) in x.iter().zip(out.iter_mut()) {
                oj[r] += buf[..len].iter().zip(&xj[c0..c0 + len]).map(|(a, b)| a * b).sum::<f32>();
            }
        }
    }
}
