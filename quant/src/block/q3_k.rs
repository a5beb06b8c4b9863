//! Q3_K: 256 values in 16 sub-blocks of 16, 3-bit signed values with 6-bit scales
//! (`x = d·(sc − 32)·(q − 4·[high bit clear])`).

use super::{Block, BlockQ8K, F16Bits, QK_K, WeightBlock, assert_block_layout, q3k_scales};
use crate::QuantType;

/// ggml's `block_q3_K`. Value `128·h + 32·s + l` has low bits `2s..2s+2` of `qs[32·h + l]` and
/// high bit `4h + s` of `hmask[l]`; a clear high bit subtracts 4.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct BlockQ3K {
    /// High bits.
    pub hmask: [u8; QK_K / 8],
    /// Low 2 bits.
    pub qs: [u8; QK_K / 4],
    /// 16 scales of 6 bits, packed (see [`q3k_scales`]).
    pub scales: [u8; 12],
    /// Super-block scale.
    pub d: F16Bits,
}
assert_block_layout!(BlockQ3K, 110);

impl BlockQ3K {
    /// Value `v` (0..256) as a signed integer in −4..=3.
    #[inline]
    pub(crate) fn q(&self, v: usize) -> i32 {
        let (h, s, l) = (v / 128, (v / 32) % 4, v % 32);
        let low = ((self.qs[32 * h + l] >> (2 * s)) & 3) as i32;
        let high = (self.hmask[l] >> (4 * h + s)) & 1;
        low - if high == 0 { 4 } else { 0 }
    }
}

unsafe impl Block for BlockQ3K {
    const TYPE: QuantType = QuantType::Q3K;
    const VALUES: usize = QK_K;

    fn to_float(&self, out: &mut [f32]) {
        let d = self.d.to_f32();
        let scales = q3k_scales(&self.scales);
        for (v, o) in out[..QK_K].iter_mut().enumerate() {
            let dl = d * (scales[v / 16] as i32 - 32) as f32;
            *o = dl * self.q(v) as f32;
        }
    }
}

impl WeightBlock for BlockQ3K {
    type Dot = BlockQ8K;

    fn vec_dot_unopt(xs: &[Self], ys: &[BlockQ8K]) -> f32 {
        let mut sumf = 0f32;
        for (x, y) in xs.iter().zip(&ys[..xs.len()]) {
            let scales = q3k_scales(&x.scales);
            let mut isum = 0i32;
            for (v, &q8) in y.qs.iter().enumerate() {
                isum += (scales[v / 16] as i32 - 32) * x.q(v) * q8 as i32;
            }
            sumf += x.d.to_f32() * y.d() * isum as f32;
        }
        sumf
    }
}
