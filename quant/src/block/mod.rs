//! ggml's quantized blocks: one `#[repr(C)]` struct per type, laid out byte for byte as in a
//! GGUF file, and the traits that say how each turns back into f32 and dots with activations.
//!
//! The shape follows ggml's `type_traits_cpu` and candle's `quantized::k_quants`:
//!
//! - [`Block`]: any block (size, values, `to_float`);
//! - [`WeightBlock`]: a block stored in weight files, with the activation block type it is
//!   multiplied with ([`WeightBlock::Dot`]: Q8_0, Q8_1 or Q8_K, as ggml pairs them) and the plain
//!   scalar `vec_dot_unopt` that the SIMD kernels of [`crate::simd`] are tested against;
//! - [`ActivationBlock`]: a block that f32 activations are quantized into (`from_float`).
//!
//! Every block struct has alignment 1 (scales are stored as byte pairs, not `u16`), so any byte
//! slice of the right length can be viewed as blocks without copying, whatever its address: a
//! memory map places tensors at arbitrary offsets. Multi-byte fields are little-endian, as GGUF
//! stores them.

mod q2_k;
mod q3_k;
mod q4_0;
mod q4_1;
mod q4_k;
mod q5_0;
mod q5_1;
mod q5_k;
mod q6_k;
mod q8_0;
mod q8_1;
mod q8_k;

pub use q2_k::BlockQ2K;
pub use q3_k::BlockQ3K;
pub use q4_0::BlockQ4_0;
pub use q4_1::BlockQ4_1;
pub use q4_k::BlockQ4K;
pub use q5_0::BlockQ5_0;
pub use q5_1::BlockQ5_1;
pub use q5_k::BlockQ5K;
pub use q6_k::BlockQ6K;
pub use q8_0::BlockQ8_0;
pub use q8_1::BlockQ8_1;
pub use q8_k::BlockQ8K;

use crate::QuantType;

/// Values in a K-quant super-block (ggml's `QK_K`).
pub const QK_K: usize = 256;

/// A little-endian IEEE half stored as two bytes, so that blocks keep alignment 1.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
#[repr(transparent)]
pub struct F16Bits(pub [u8; 2]);

impl F16Bits {
    /// The value as f32 (exact: every half is an f32).
    #[inline]
    pub fn to_f32(self) -> f32 {
        half::f16::from_bits(u16::from_le_bytes(self.0)).to_f32()
    }

    /// The nearest half (ties to even, as ggml's `GGML_FP32_TO_FP16`).
    #[inline]
    pub fn from_f32(v: f32) -> F16Bits {
        F16Bits(half::f16::from_f32(v).to_bits().to_le_bytes())
    }

    /// The raw bits.
    #[inline]
    pub fn bits(self) -> u16 {
        u16::from_le_bytes(self.0)
    }
}

/// A quantized block as ggml lays it out.
///
/// # Safety
///
/// Implementors must be `#[repr(C)]` with alignment 1, no padding, and every bit pattern a valid
/// value (only byte arrays inside), so that [`as_blocks`] may view any bytes as blocks.
pub unsafe trait Block: Copy + Send + Sync + 'static {
    /// The GGUF type of the block.
    const TYPE: QuantType;
    /// Values per block.
    const VALUES: usize;

    /// Writes the block's `VALUES` values to `out[..VALUES]`, computed exactly as gguf-py's
    /// `dequantize` does (same operations in the same order, so the same f32 bits).
    fn to_float(&self, out: &mut [f32]);
}

/// A block type that weights are stored in.
pub trait WeightBlock: Block {
    /// The activation block type ggml quantizes the other operand to for `vec_dot`.
    type Dot: ActivationBlock;

    /// `Σ w·x` over `xs.len()` blocks of weights and as many activation blocks: the plain
    /// scalar port of ggml's `ggml_vec_dot_*_generic`, the reference for the SIMD kernels.
    ///
    /// # Panics
    ///
    /// If `ys` is shorter than `xs` (a caller bug).
    fn vec_dot_unopt(xs: &[Self], ys: &[Self::Dot]) -> f32;

    /// `Σ w·x` as [`WeightBlock::vec_dot_unopt`], with the fastest kernel this CPU runs
    /// ([`crate::kernels::kernels`]).
    ///
    /// # Panics
    ///
    /// If `ys` is shorter than `xs` (a caller bug).
    fn vec_dot(xs: &[Self], ys: &[Self::Dot]) -> f32 {
        let ys = &ys[..xs.len()];
        match crate::kernels::kernels(Self::TYPE).dot {
            Some(crate::kernels::Dot::Quant { dot, .. }) => dot(block_bytes(xs), block_bytes(ys)),
            _ => Self::vec_dot_unopt(xs, ys),
        }
    }
}

/// A block type that f32 activations are quantized into before an integer dot product.
pub trait ActivationBlock: Block {
    /// The all-zero block.
    const ZERO: Self;

    /// Quantizes `x` (`VALUES` values per block, `x.len() == out.len() * VALUES`) as ggml's
    /// `quantize_row_*_ref` does.
    ///
    /// # Panics
    ///
    /// If the lengths disagree (a caller bug).
    fn from_float(x: &[f32], out: &mut [Self]);
}

/// Views `bytes` as blocks of `B`. `None` when the length is not a whole number of blocks.
#[inline]
pub fn as_blocks<B: Block>(bytes: &[u8]) -> Option<&[B]> {
    let size = std::mem::size_of::<B>();
    if !bytes.len().is_multiple_of(size) {
        return None;
    }
    // SAFETY: `Block` guarantees alignment 1, no padding and no invalid bit patterns, and the
    // length is a whole number of blocks, so the bytes are a valid `[B]` of this length.
    Some(unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<B>(), bytes.len() / size) })
}

/// Views `bytes` as mutable blocks of `B`. `None` when the length is not a whole number of blocks.
#[inline]
pub fn as_blocks_mut<B: Block>(bytes: &mut [u8]) -> Option<&mut [B]> {
    let size = std::mem::size_of::<B>();
    if !bytes.len().is_multiple_of(size) {
        return None;
    }
    // SAFETY: as in `as_blocks`; every bit pattern written through `B` is a valid byte.
    Some(unsafe { std::slice::from_raw_parts_mut(bytes.as_mut_ptr().cast::<B>(), bytes.len() / size) })
}

/// The bytes of `blocks`.
#[inline]
pub fn block_bytes<B: Block>(blocks: &[B]) -> &[u8] {
    // SAFETY: `Block` types are plain bytes without padding.
    unsafe { std::slice::from_raw_parts(blocks.as_ptr().cast::<u8>(), std::mem::size_of_val(blocks)) }
}

/// Dequantizes whole blocks: `out.len()` must be `blocks.len() * B::VALUES`.
pub fn to_float_blocks<B: Block>(blocks: &[B], out: &mut [f32]) {
    assert_eq!(out.len(), blocks.len() * B::VALUES, "output length must be blocks × values");
    for (b, o) in blocks.iter().zip(out.chunks_exact_mut(B::VALUES)) {
        b.to_float(o);
    }
}

/// Asserts at compile time that `$ty` is `$size` bytes with alignment 1, as ggml lays it out.
macro_rules! assert_block_layout {
    ($ty:ty, $size:expr) => {
        const _: () = assert!(std::mem::size_of::<$ty>() == $size, "block size differs from ggml's");
        const _: () = assert!(std::mem::align_of::<$ty>() == 1, "blocks must have alignment 1");
    };
}
pub(crate) use assert_block_layout;

/// The 6-bit scale and minimum of sub-block `j` (0..8) of a Q4_K or Q5_K block: ggml's
/// `get_scale_min_k4`.
#[inline]
pub fn scale_min_k4(j: usize, q: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

/// The 16 signed 6-bit scales of a Q3_K block (before the −32 offset is applied: 0..63).
#[inline]
pub fn q3k_scales(s: &[u8; 12]) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        let low = if i < 8 { s[i] & 0xF } else { s[i - 8] >> 4 };
        let high = (s[8 + i % 4] >> (2 * (i / 4))) & 3;
        *o = low | (high << 4);
    }
    out
}
