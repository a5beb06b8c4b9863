//! GGUF's tensor types as stored in memory: float types and quantized blocks.
//!
//! This crate knows nothing of files, architectures or clusters. It says how many bytes a
//! row of each type takes, turns blocks back into f32 exactly as `gguf`'s Python
//! `dequantize` does, and multiplies quantized matrices by f32 activations the way ggml does
//! (activations quantized to 8 bits, integer dot products, SIMD chosen at run time).
//!
//! - [`block`]: one `#[repr(C)]` struct per block type and the traits that describe them;
//! - [`kernels`]: the table from a type to its dequantizer and dot kernels;
//! - [`simd`]: the instruction-set specific kernels;
//! - [`QMatrix`]: a weight matrix over shared bytes, with `matmul` (8-bit activations),
//!   `matmul_exact` (f32 activations, see [`Activations`]) and row/column selection.

pub mod block;
mod error;
mod exact;
mod float;
pub mod kernels;
mod matmul;
mod matrix;
pub mod simd;
mod types;

pub use error::QuantError;
pub use exact::Activations;
pub use matrix::{QMatrix, SharedBytes};
pub use simd::Isa;
pub use types::QuantType;

use block::{ActivationBlock, BlockQ8_0, block_bytes};

/// Dequantizes `bytes` (a whole number of blocks of `ty`) into `out`, one f32 per value:
/// exactly what gguf's Python `gguf.quants.dequantize` returns, bit for bit.
///
/// # Errors
///
/// [`QuantError::NotWholeBlocks`] when `out.len()` is not a whole number of blocks,
/// [`QuantError::LengthMismatch`] when `bytes` is not the size of `out.len()` values.
pub fn dequantize(ty: QuantType, bytes: &[u8], out: &mut [f32]) -> Result<(), QuantError> {
    let need = ty.bytes_for(out.len() as u64).ok_or(QuantError::NotWholeBlocks {
        ty,
        values: out.len(),
        block: ty.block_values(),
    })?;
    if need != bytes.len() as u64 {
        return Err(QuantError::LengthMismatch {
            what: "bytes for the values asked",
            expected: usize::try_from(need).unwrap_or(usize::MAX),
            got: bytes.len(),
        });
    }
    (kernels::kernels(ty).to_float)(bytes, out);
    Ok(())
}

/// Quantizes f32 values to Q8_0 blocks as ggml's `quantize_row_q8_0_ref` does, for re-blocking
/// weights.
///
/// # Errors
///
/// [`QuantError::NotWholeBlocks`] when `x.len()` is not a multiple of 32.
pub fn quantize_q8_0(x: &[f32]) -> Result<Vec<u8>, QuantError> {
    if !x.len().is_multiple_of(32) {
        return Err(QuantError::NotWholeBlocks { ty: QuantType::Q8_0, values: x.len(), block: 32 });
    }
    let mut out = vec![0u8; x.len() / 32 * QuantType::Q8_0.block_bytes()];
    match simd::quantize(Isa::detected(), QuantType::Q8_0) {
        Some(fast) => fast(x, &mut out),
        None => {
            let mut blocks = vec![BlockQ8_0::ZERO; x.len() / 32];
            BlockQ8_0::from_float(x, &mut blocks);
            out.copy_from_slice(block_bytes(&blocks));
        }
    }
    Ok(out)
}
