//! Q6_K: 256 values in 16 sub-blocks of 16, 6-bit values offset by 32 with 8-bit scales
//! (`x = d·sc·(q − 32)`).

use super::{Block, BlockQ8K, F16Bits, QK_K, WeightBlock, assert_block_layout};
use crate::QuantType;

/// ggml's `block_q6_K`. In each half `h` of 128 values, value `128·h + 32·k + l` has low nibble
/// from `ql[64·h + 32·(k % 2) + l]` (low nibble for `k < 2`, high otherwise) and high 2 bits
/// `2k..2k+2` of `qh[32·h + l]`.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct BlockQ6K {
    /// Low nibbles.
    pub ql: [u8; QK_K / 2],
    /// High 2 bits.
    pub qh: [u8; QK_K / 4],
    /// Sub-block scales.
    pub scales: [i8; QK_K / 16],
    /// Super-block scale.
    pub d: F16Bits,
}
assert_block_layout!(BlockQ6K, 210);

impl BlockQ6K {
    /// Value `v` (0..256) as a signed integer in −32..=31.
    #[inline]
    pub(crate) fn q(&self, v: usize) -> i32 {
        let (h, k, l) = (v / 128, (v / 32) % 4, v % 32);
        let b = self.ql[64 * h + 32 * (k % 2) + l];
        let low = if k < 2 { b & 0xF } else { b >> 4 };
        let high = (self.qh[32 * h + l] >> (2 * k)) & 3;
        (low | (high << 4)) as i32 - 32
    }
}

unsafe impl Block for BlockQ6K {
    const TYPE: QuantType = QuantType::Q6K;
    const VALUES: usize = QK_K;

    fn to_float(&self, out: &mut [f32]) {
        let d = self.d.to_f32();
        for (v, o) in out[..QK_K].iter_mut().enumerate() {
            *o = (d * self.scales[v / 16] as f32) * self.q(v) as f32;
        }
    }
}

impl WeightBlock for BlockQ6K {
    type Dot = BlockQ8K;

    fn vec_dot_unopt(xs: &[Self], ys: &[BlockQ8K]) -> f32 {
        let mut sumf = 0f32;
        for (x, y) in xs.iter().zip(&ys[..xs.len()]) {
            let mut isum = 0i32;
            for (v, &q8) in y.qs.iter().enumerate() {
                isum += x.scales[v / 16] as i32 * x.q(v) * q8 as i32;
            }
            sumf += x.d.to_f32() * y.d() * isum as f32;
        }
        sumf
    }
}
