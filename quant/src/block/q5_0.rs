//! Q5_0: 32 values as 5-bit integers offset by 16, one f16 scale (`x = d·(q − 16)`).

use super::{Block, BlockQ8_0, F16Bits, WeightBlock, assert_block_layout};
use crate::QuantType;

/// ggml's `block_q5_0`: low 4 bits as Q4_0's nibbles, bit 4 of value `j` is bit `j` of `qh`.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct BlockQ5_0 {
    /// Scale.
    pub d: F16Bits,
    /// Fifth bits, little-endian u32.
    pub qh: [u8; 4],
    /// Low nibbles.
    pub qs: [u8; 16],
}
assert_block_layout!(BlockQ5_0, 22);

impl BlockQ5_0 {
    /// Value `j` (0..32) as an unsigned 5-bit integer.
    #[inline]
    pub(crate) fn q(&self, j: usize) -> u8 {
        let qh = u32::from_le_bytes(self.qh);
        let low = if j < 16 { self.qs[j] & 0xF } else { self.qs[j - 16] >> 4 };
        low | ((((qh >> j) & 1) as u8) << 4)
    }
}

unsafe impl Block for BlockQ5_0 {
    const TYPE: QuantType = QuantType::Q5_0;
    const VALUES: usize = 32;

    fn to_float(&self, out: &mut [f32]) {
        let d = self.d.to_f32();
        for (j, o) in out[..32].iter_mut().enumerate() {
            *o = d * (self.q(j) as i32 - 16) as f32;
        }
    }
}

impl WeightBlock for BlockQ5_0 {
    type Dot = BlockQ8_0;

    fn vec_dot_unopt(xs: &[Self], ys: &[BlockQ8_0]) -> f32 {
        let mut sumf = 0f32;
        for (x, y) in xs.iter().zip(&ys[..xs.len()]) {
            let sumi: i32 = (0..32).map(|j| (x.q(j) as i32 - 16) * y.qs[j] as i32).sum();
            sumf += (x.d.to_f32() * y.d.to_f32()) * sumi as f32;
        }
        sumf
    }
}
