//! Q5_K: 256 values in 8 sub-blocks of 32, 5-bit values with 6-bit scales and minimums
//! (`x = d·sc·q − dmin·m`).

use super::{Block, BlockQ8K, F16Bits, QK_K, WeightBlock, assert_block_layout, scale_min_k4};
use crate::QuantType;

/// ggml's `block_q5_K`: low nibbles as Q4_K's, bit 4 of value `32·b + l` is bit `b` of `qh[l]`.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct BlockQ5K {
    /// Super-block scale of the scales.
    pub d: F16Bits,
    /// Super-block scale of the minimums.
    pub dmin: F16Bits,
    /// 8 scales and 8 minimums of 6 bits, packed (see [`scale_min_k4`]).
    pub scales: [u8; 12],
    /// Fifth bits.
    pub qh: [u8; QK_K / 8],
    /// Low nibbles.
    pub qs: [u8; QK_K / 2],
}
assert_block_layout!(BlockQ5K, 176);

impl BlockQ5K {
    /// Value `v` (0..256) as an unsigned 5-bit integer.
    #[inline]
    pub(crate) fn q(&self, v: usize) -> u8 {
        let b = self.qs[32 * (v / 64) + v % 32];
        let low = if (v / 32).is_multiple_of(2) { b & 0xF } else { b >> 4 };
        low | (((self.qh[v % 32] >> (v / 32)) & 1) << 4)
    }
}

unsafe impl Block for BlockQ5K {
    const TYPE: QuantType = QuantType::Q5K;
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

impl WeightBlock for BlockQ5K {
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
