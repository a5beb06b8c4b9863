//! Q4_1: 32 values as 4-bit integers with an f16 scale and minimum (`x = d·q + m`).

use super::{Block, BlockQ8_1, F16Bits, WeightBlock, assert_block_layout};
use crate::QuantType;

/// ggml's `block_q4_1`: nibbles as in Q4_0, no offset, plus the block minimum `m`.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct BlockQ4_1 {
    /// Scale.
    pub d: F16Bits,
    /// Minimum.
    pub m: F16Bits,
    /// Nibbles.
    pub qs: [u8; 16],
}
assert_block_layout!(BlockQ4_1, 20);

unsafe impl Block for BlockQ4_1 {
    const TYPE: QuantType = QuantType::Q4_1;
    const VALUES: usize = 32;

    fn to_float(&self, out: &mut [f32]) {
        let d = self.d.to_f32();
        let m = self.m.to_f32();
        let (lo, hi) = out[..32].split_at_mut(16);
        for ((&q, l), h) in self.qs.iter().zip(lo).zip(hi) {
            *l = d * (q & 0xF) as f32 + m;
            *h = d * (q >> 4) as f32 + m;
        }
    }
}

impl WeightBlock for BlockQ4_1 {
    type Dot = BlockQ8_1;

    fn vec_dot_unopt(xs: &[Self], ys: &[BlockQ8_1]) -> f32 {
        let mut sumf = 0f32;
        for (x, y) in xs.iter().zip(&ys[..xs.len()]) {
            let mut sumi = 0i32;
            for j in 0..16 {
                sumi += (x.qs[j] & 0xF) as i32 * y.qs[j] as i32 + (x.qs[j] >> 4) as i32 * y.qs[j + 16] as i32;
            }
            // The minimum contributes m·Σy, and Q8_1 carries Σy (times its scale) as `s`.
            sumf += (x.d.to_f32() * y.d.to_f32()) * sumi as f32 + x.m.to_f32() * y.s.to_f32();
        }
        sumf
    }
}
