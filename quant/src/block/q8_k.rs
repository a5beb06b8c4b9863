//! Q8_K: 256 values as 8-bit integers with an f32 scale and the sums of each 16, the
//! activation type that every K-quant dots with (the sums carry the minimums' contribution).

use super::{ActivationBlock, Block, QK_K, assert_block_layout};
use crate::QuantType;

/// ggml's `block_q8_K`, with its f32 and i16 fields as little-endian byte arrays.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct BlockQ8K {
    /// Scale, f32.
    pub d: [u8; 4],
    /// Values.
    pub qs: [i8; QK_K],
    /// Sums of each 16 values, i16.
    pub bsums: [[u8; 2]; QK_K / 16],
}
assert_block_layout!(BlockQ8K, 292);

impl BlockQ8K {
    /// The scale.
    #[inline]
    pub fn d(&self) -> f32 {
        f32::from_le_bytes(self.d)
    }

    /// The sum of values `16·j .. 16·j + 16`.
    #[inline]
    pub fn bsum(&self, j: usize) -> i16 {
        i16::from_le_bytes(self.bsums[j])
    }
}

unsafe impl Block for BlockQ8K {
    const TYPE: QuantType = QuantType::Q8K;
    const VALUES: usize = QK_K;

    fn to_float(&self, out: &mut [f32]) {
        let d = self.d();
        for (&q, o) in self.qs.iter().zip(&mut out[..QK_K]) {
            *o = d * q as f32;
        }
    }
}

impl ActivationBlock for BlockQ8K {
    const ZERO: Self = BlockQ8K { d: [0; 4], qs: [0; QK_K], bsums: [[0; 2]; QK_K / 16] };

    /// ggml's `quantize_row_q8_K_ref`: the scale maps the value of largest magnitude to −127
    /// exactly (`iscale = −127 / max`), values round to nearest, ties to even.
    fn from_float(x: &[f32], out: &mut [Self]) {
        assert_eq!(x.len(), out.len() * QK_K, "Q8_K quantizes 256 values per block");
        for (xb, y) in x.chunks_exact(QK_K).zip(out) {
            let (mut max, mut amax) = (0f32, 0f32);
            for &v in xb {
                if v.abs() > amax {
                    amax = v.abs();
                    max = v;
                }
            }
            if amax == 0.0 {
                *y = Self::ZERO;
                continue;
            }
            let iscale = -127.0 / max;
            for (q, &v) in y.qs.iter_mut().zip(xb) {
                // ggml's `nearest_int` (add 1.5·2^23) is round-half-even for |v| < 2^22.
                *q = ((iscale * v).round_ties_even() as i32).min(127) as i8;
            }
            for (j, s) in y.bsums.iter_mut().enumerate() {
                let sum: i32 = y.qs[16 * j..16 * j + 16].iter().map(|&q| q as i32).sum();
                *s = (sum as i16).to_le_bytes();
            }
            y.d = (1.0 / iscale).to_le_bytes();
        }
    }
}
