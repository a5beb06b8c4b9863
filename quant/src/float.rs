//! The float types F32, F16 and BF16: little-endian values stored one by one. Their rows
//! dequantize by conversion, and they dot with f32 activations in f32.

/// Writes the f32 values of `bytes` (little-endian f32) to `out`.
pub(crate) fn f32_to_float(bytes: &[u8], out: &mut [f32]) {
    for (c, o) in bytes.chunks_exact(4).zip(out) {
        *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    }
}

/// Writes the f32 values of `bytes` (little-endian IEEE halves) to `out`.
pub(crate) fn f16_to_float(bytes: &[u8], out: &mut [f32]) {
    for (c, o) in bytes.chunks_exact(2).zip(out) {
        *o = half::f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32();
    }
}

/// Writes the f32 values of `bytes` (little-endian bfloat16: the high half of an f32) to `out`.
pub(crate) fn bf16_to_float(bytes: &[u8], out: &mut [f32]) {
    for (c, o) in bytes.chunks_exact(2).zip(out) {
        *o = f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16);
    }
}

/// `Σ w·x` with `w` little-endian f32: the scalar reference.
pub(crate) fn dot_f32_unopt(w: &[u8], x: &[f32]) -> f32 {
    dot_with(w, 4, x, |c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
}

/// `Σ w·x` with `w` little-endian f16: the scalar reference.
pub(crate) fn dot_f16_unopt(w: &[u8], x: &[f32]) -> f32 {
    dot_with(w, 2, x, |c| half::f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32())
}

/// `Σ w·x` with `w` little-endian bf16: the scalar reference.
pub(crate) fn dot_bf16_unopt(w: &[u8], x: &[f32]) -> f32 {
    dot_with(w, 2, x, |c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16))
}

/// `out[r] = Σ w_r·x` over `out.len()` rows of `row_bytes` (F32): the scalar reference.
pub(crate) fn gemv_f32_unopt(w: &[u8], row_bytes: usize, x: &[f32], out: &mut [f32]) {
    gemv_with(w, row_bytes, x, out, dot_f32_unopt)
}

/// [`gemv_f32_unopt`] for F16.
pub(crate) fn gemv_f16_unopt(w: &[u8], row_bytes: usize, x: &[f32], out: &mut [f32]) {
    gemv_with(w, row_bytes, x, out, dot_f16_unopt)
}

/// [`gemv_f32_unopt`] for BF16.
pub(crate) fn gemv_bf16_unopt(w: &[u8], row_bytes: usize, x: &[f32], out: &mut [f32]) {
    gemv_with(w, row_bytes, x, out, dot_bf16_unopt)
}

fn gemv_with(w: &[u8], row_bytes: usize, x: &[f32], out: &mut [f32], dot: fn(&[u8], &[f32]) -> f32) {
    assert_eq!(w.len(), out.len() * row_bytes, "weights must be out.len() rows");
    for (o, row) in out.iter_mut().zip(w.chunks_exact(row_bytes.max(1))) {
        *o = dot(row, x);
    }
}

/// Eight running sums, like a SIMD lane set, so the scalar path rounds about as the vector
/// paths do and the compiler can vectorize the loop.
fn dot_with(w: &[u8], width: usize, x: &[f32], load: impl Fn(&[u8]) -> f32) -> f32 {
    assert_eq!(w.len(), x.len() * width, "weight row and activations must have the same length");
    let mut acc = [0f32; 8];
    let mut wc = w.chunks_exact(8 * width);
    let mut xc = x.chunks_exact(8);
    for (wb, xb) in (&mut wc).zip(&mut xc) {
        for (k, a) in acc.iter_mut().enumerate() {
            *a += load(&wb[k * width..(k + 1) * width]) * xb[k];
        }
    }
    let mut tail = 0f32;
    for (wv, &xv) in wc.remainder().chunks_exact(width).zip(xc.remainder()) {
        tail += load(wv) * xv;
    }
    acc.iter().sum::<f32>() + tail
}
