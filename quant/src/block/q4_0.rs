//! Q4_0: 32 values as 4-bit integers offset by 8, one f16 scale (`x = d·(q − 8)`).

use super::{Block, BlockQ8_0, F16Bits, WeightBlock, assert_block_layout};
use crate::QuantType;

/// ggml's `block_q4_0`: value `j < 16` is the low nibble of `qs[j]`, value `j + 16` its high nibble.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct BlockQ4_0 {
    /// Scale.
    pub d: F16Bits,
    /// Nibbles.
    pub qs: [u8; 16],
}
assert_block_layout!(BlockQ4_0, 18);

unsafe impl Block for BlockQ4_0 {
    const TYPE: QuantType = QuantType::Q4_0;
    const VALUES: usize = 32;

    fn to_float(&self, out: &mut [f32]) {
        let d = self.d.to_f32();
        let (lo, hi) = out[..32].split_at_mut(16);
        for ((&q, l), h) in self.qs.iter().zip(lo).zip(hi) {
            *l = d * ((q & 0xF) as i32 - 8) as f32;
            *h = d * ((q >> 4) as i32 - 8) as f32;
        }
    }
}

impl WeightBlock for BlockQ4_0 {
    type Dot = BlockQ8_0;

    fn vec_dot_unopt(xs: &[Self], ys: &[BlockQ8_0]) -> f32 {
        let mut sumf = 0f32;
        for (x, y) in xs.iter().zip(&ys[..xs.len()]) {
            let mut sumi = 0i32;
            for j in 0..16 {
                let v0 = (x.qs[j] & 0xF) as i32 - 8;
                let v1 = (x.qs[j] >> 4) as i32 - 8;
                sumi += v0 * y.qs[j] as i32 + v1 * y.qs[j + 16] as i32;
            }
            sumf += sumi as f32 * x.d.to_f32() * y.d.to_f32();
        }
        sumf
    }
}
