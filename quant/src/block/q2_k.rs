//! Q2_K: 256 values in 16 sub-blocks of 16, 2-bit values with 4-bit scales and minimums
//! (`x = d·sc·q − dmin·m`).

use super::{Block, BlockQ8K, F16Bits, QK_K, WeightBlock, assert_block_layout};
use crate::QuantType;

/// ggml's `block_q2_K`. Value `128·h + 32·s + l` is bits `2s..2s+2` of `qs[32·h + l]`, in
/// sub-block `8·h + 2·s + l/16`, whose scale is the low nibble of `scales[...]` and minimum the
/// high nibble.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct BlockQ2K {
    /// Sub-block scales (low nibble) and minimums (high nibble).
    pub scales: [u8; QK_K / 16],
    /// 2-bit values.
    pub qs: [u8; QK_K / 4],
    /// Super-block scale of the scales.
    pub d: F16Bits,
    /// Super-block scale of the minimums.
    pub dmin: F16Bits,
}
assert_block_layout!(BlockQ2K, 84);

unsafe impl Block for BlockQ2K {
    const TYPE: QuantType = QuantType::Q2K;
    const VALUES: usize = QK_K;

    fn to_float(&self, out: &mut [f32]) {
        let d = self.d.to_f32();
        let dmin = self.dmin.to_f32();
        for (v, o) in out[..QK_K].iter_mut().enumerate() {
            let (h, s, l) = (v / 128, (v / 32) % 4, v % 32);
            let q = (self.qs[32 * h + l] >> (2 * s)) & 3;
            let sc = self.scales[v / 16];
            let dl = d * (sc & 0xF) as f32;
            let ml = dmin * (sc >> 4) as f32;
            *o = dl * q as f32 - ml;
        }
    }
}

impl WeightBlock for BlockQ2K {
    type Dot = BlockQ8K;

    fn vec_dot_unopt(xs: &[Self], ys: &[BlockQ8K]) -> f32 {
        let mut sumf = 0f32;
        for (x, y) in xs.iter().zip(&ys[..xs.len()]) {
            // Minimums: Σ_sub-block m · Σ y, from Q8_K's sums of 16.
            let summs: i32 = (0..16).map(|j| y.bsum(j) as i32 * (x.scales[j] >> 4) as i32).sum();
            let mut isum = 0i32;
            for (v, &q8) in y.qs.iter().enumerate() {
                let q = (x.qs[32 * (v / 128) + v % 32] >> (2 * ((v / 32) % 4))) & 3;
                isum += (x.scales[v / 16] & 0xF) as i32 * q as i32 * q8 as i32;
            }
            let dall = y.d() * x.d.to_f32();
            let dmin = y.d() * x.dmin.to_f32();
            sumf += dall * isum as f32 - dmin * summs as f32;
        }
        sumf
    }
}
