//! Q8_0: 32 values as 8-bit integers with one f16 scale (`x = d·q`). A weight type and the
//! activation type that Q4_0, Q5_0 and Q8_0 weights dot with.

use super::{ActivationBlock, Block, F16Bits, WeightBlock, assert_block_layout};
use crate::QuantType;

/// ggml's `block_q8_0`.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct BlockQ8_0 {
    /// Scale.
    pub d: F16Bits,
    /// Values.
    pub qs: [i8; 32],
}
assert_block_layout!(BlockQ8_0, 34);

unsafe impl Block for BlockQ8_0 {
    const TYPE: QuantType = QuantType::Q8_0;
    const VALUES: usize = 32;

    fn to_float(&self, out: &mut [f32]) {
        let d = self.d.to_f32();
        for (&q, o) in self.qs.iter().zip(&mut out[..32]) {
            *o = q as f32 * d;
        }
    }
}

impl WeightBlock for BlockQ8_0 {
    type Dot = BlockQ8_0;

    fn vec_dot_unopt(xs: &[Self], ys: &[BlockQ8_0]) -> f32 {
        let mut sumf = 0f32;
        for (x, y) in xs.iter().zip(&ys[..xs.len()]) {
            let sumi: i32 = x.qs.iter().zip(&y.qs).map(|(&a, &b)| a as i32 * b as i32).sum();
            sumf += sumi as f32 * (x.d.to_f32() * y.d.to_f32());
        }
        sumf
    }
}

impl ActivationBlock for BlockQ8_0 {
    const ZERO: Self = BlockQ8_0 { d: F16Bits([0; 2]), qs: [0; 32] };

    /// ggml's `quantize_row_q8_0_ref`: `d = max|x| / 127`, `q = round(x / d)` (half away from 0).
    fn from_float(x: &[f32], out: &mut [Self]) {
        assert_eq!(x.len(), out.len() * 32, "Q8_0 quantizes 32 values per block");
        for (xb, y) in x.chunks_exact(32).zip(out) {
            let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs()));
            let d = amax / 127.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            y.d = F16Bits::from_f32(d);
            for (q, &v) in y.qs.iter_mut().zip(xb) {
                *q = (v * id).round() as i8;
            }
        }
    }
}
