//! `dequantize` against gguf-py's: the fixtures under `tests/data/` hold random blocks of each
//! type and what `gguf.quants.dequantize` (gguf 0.19.0) returned for them, written by
//! `scripts/gen_dequant_fixtures.py`. The comparison is bitwise: gguf-py computes each value
//! with the same f32 operations in the same order (no fused multiply-add), so every value must
//! be the identical f32.

use mlmf_quant::{QuantError, QuantType, dequantize};

fn fixture(ty: QuantType) -> (Vec<u8>, Vec<f32>) {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/");
    let name = ty.name().to_lowercase();
    let blocks = std::fs::read(format!("{dir}{name}.blocks")).expect("fixture blocks");
    let floats = std::fs::read(format!("{dir}{name}.f32")).expect("fixture values");
    let floats = floats.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    (blocks, floats)
}

#[test]
fn matches_gguf_py_bit_for_bit() {
    use QuantType as T;
    for ty in
        [T::F32, T::F16, T::BF16, T::Q4_0, T::Q4_1, T::Q5_0, T::Q5_1, T::Q8_0, T::Q2K, T::Q3K, T::Q4K, T::Q5K, T::Q6K]
    {
        let (blocks, expected) = fixture(ty);
        assert_eq!(blocks.len() as u64, ty.bytes_for(expected.len() as u64).unwrap(), "{ty} fixture sizes");
        let mut out = vec![f32::NAN; expected.len()];
        dequantize(ty, &blocks, &mut out).unwrap();
        for (i, (a, b)) in out.iter().zip(&expected).enumerate() {
            assert_eq!(a.to_bits(), b.to_bits(), "{ty} value {i}: got {a:e}, gguf-py says {b:e}");
        }
    }
}

#[test]
fn activation_types_dequantize_as_d_times_q() {
    // gguf-py has no dequantizer for Q8_1 and Q8_K; their layout is ggml's: Q8_1 = f16 d,
    // f16 s, 32 × i8; Q8_K = f32 d, 256 × i8, 16 × i16 sums.
    let mut q8_1 = vec![0u8; 36];
    q8_1[..2].copy_from_slice(&half::f16::from_f32(0.5).to_bits().to_le_bytes());
    for j in 0..32 {
        q8_1[4 + j] = (j as i8 - 16) as u8;
    }
    let mut out = vec![0f32; 32];
    dequantize(QuantType::Q8_1, &q8_1, &mut out).unwrap();
    assert_eq!(out[0], -8.0);
    assert_eq!(out[31], 7.5);

    let mut q8_k = vec![0u8; 292];
    q8_k[..4].copy_from_slice(&0.25f32.to_le_bytes());
    q8_k[4 + 255] = 100;
    let mut out = vec![0f32; 256];
    dequantize(QuantType::Q8K, &q8_k, &mut out).unwrap();
    assert_eq!(out[255], 25.0);
    assert_eq!(out[0], 0.0);
}

#[test]
fn refuses_wrong_lengths() {
    let mut out = vec![0f32; 32];
    assert!(matches!(dequantize(QuantType::Q4_0, &[0; 17], &mut out), Err(QuantError::LengthMismatch { .. })));
    let mut out = vec![0f32; 33];
    assert!(matches!(dequantize(QuantType::Q4_0, &[0; 18], &mut out), Err(QuantError::NotWholeBlocks { .. })));
    let mut out = vec![0f32; 0];
    assert!(dequantize(QuantType::Q6K, &[], &mut out).is_ok());
}
