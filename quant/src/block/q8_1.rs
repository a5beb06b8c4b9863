//! Q8_1: Q8_0 plus the scaled sum of its values, the activation type that Q4_1 and Q5_1
//! weights dot with (the sum carries their minimum's contribution).

use super::{ActivationBlock, Block, F16Bits, assert_block_layout};
use crate::QuantType;

/// ggml's `block_q8_1` (36 bytes; gguf-py's table still says 40, from when `d` and `s` were f32).
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct BlockQ8_1 {
    /// Scale.
    pub d: F16Bits,
    /// `d · Σ qs`.
    pub s: F16Bits,
    /// Values.
    pub qs: [i8; 32],
}
assert_block_layout!(BlockQ8_1, 36);

unsafe impl Block for BlockQ8_1 {
    const TYPE: QuantType = QuantType::Q8_1;
    const VALUES: usize = 32;

    fn to_float(&self, out: &mut [f32]) {
        let d = self.d.to_f32();
        for (&q, o) in self.qs.iter().zip(&mut out[..32]) {
            *o = q as f32 * d;
        }
    }
}

impl ActivationBlock for BlockQ8_1 {
    const ZERO: Self = BlockQ8_1 { d: F16Bits([0; 2]), s: F16Bits([0; 2]), qs: [0; 32] };

    /// ggml's `quantize_row_q8_1_ref`.
    fn from_float(x: &[f32], out: &mut [Self]) {
        assert_eq!(x.len(), out.len() * 32, "Q8_1 quantizes 32 values per block");
        for (xb, y) in x.chunks_exact(32).zip(out) {
            let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs()));
            let d = amax / 127.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            y.d = F16Bits::from_f32(d);
            let mut sum = 0i32;
            for (q, &v) in y.qs.iter_mut().zip(xb) {
                *q = (v * id).round() as i8;
                sum += *q as i32;
            }
            y.s = F16Bits::from_f32(sum as f32 * d);
        }
    }
}
