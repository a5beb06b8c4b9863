//! Q4_K: 256 values in 8 sub-blocks of 32, 4-bit values with 6-bit scales and minimums
//! (`x = d·sc·q − dmin·m`).

use super::{Block, BlockQ8K, F16Bits, QK_K, WeightBlock, assert_block_layout, scale_min_k4};
use crate::QuantType;

/// ggml's `block_q4_K`. Value `64·j + l` (`l < 32`) is the low nibble of `qs[32·j + l]`, value
/// `64·j + 32 + l` its high nibble; sub-block `v / 32`.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct BlockQ4K {
    /// Super-block scale of the scales.
    pub d: F16Bits,
    /// Super-block scale of the minimums.
    pub dmin: F16Bits,
    /// 8 scales and 8 minimums of 6 bits, packed (see [`scale_min_k4`]).
    pub scales: [u8; 12],
    /// Nibbles.
    pub qs: [u8; QK_K / 2],
}
assert_block_layout!(BlockQ4K, 144);

impl BlockQ4K {
    /// Value `v` (0..256) as an unsigned 4-bit integer.
    #[inline]
    pub(crate) fn q(&self, v: usize) -> u8 {
        let b = self.qs[32 * (v / 64) + v % 32];
        if (v / 32).is_multiple_of(2) { b & 0xF } else { b >> 4 }
    }
}

unsafe impl Block for BlockQ4K {
    const TYPE: QuantType = QuantType::Q4K;
    const VALUES: usize = QK_K;

    fn to_float(&self, out: &mut [f32]) {
        let d = self.d.to_f32();
        let dmin = self.dmin.to_f32();
        for (v, o) in out[..QK_K].iter_mut().enumerate() {
            let (sc, m) = scale_min_k4(v / 32, &self.scales);
            *o = (d * sc as f32) * self.q(v) as f32 - dmin * m as f32;
        }
    }
}

impl WeightBlock for BlockQ4K {
    type Dot = BlockQ8K;

    fn vec_dot_unopt(xs: &[Self], ys: &[BlockQ8K]) -> f32 {
        let mut sumf = 0f32;
        for (x, y) in xs.iter().zip(&ys[..xs.len()]) {
            let (mut isum, mut summs) = (0i32, 0i32);
            for sb in 0..8 {
                let (sc, m) = scale_min_k4(sb, &x.scales);
                let dot: i32 = (32 * sb..32 * sb + 32).map(|v| x.q(v) as i32 * y.qs[v] as i32).sum();
                isum += sc as i32 * dot;
                summs += m as i32 * (y.bsum(2 * sb) as i32 + y.bsum(2 * sb + 1) as i32);
            }
            sumf += x.d.to_f32() * y.d() * isum as f32 - x.dmin.to_f32() * y.d() * summs as f32;
        }
        sumf
    }
}
