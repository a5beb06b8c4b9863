//! The activation quantizers against ggml's reference semantics: Q8_0 bit for bit against
//! gguf-py's (which is bit-exact with `quantize_row_q8_0_ref`), Q8_1 and Q8_K by their
//! defining properties, and the SIMD quantizers bit for bit against the scalar ones.

mod common;

use common::{Rng, random_activations};
use mlmf_quant::block::{ActivationBlock, Block, BlockQ8_1, BlockQ8K};
use mlmf_quant::kernels::{Dot, kernels_for};
use mlmf_quant::{Isa, QuantError, QuantType, quantize_q8_0};
use proptest::prelude::*;

#[test]
fn q8_0_matches_gguf_py_bit_for_bit() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/");
    let x = std::fs::read(format!("{dir}q8_0_quantize.f32")).unwrap();
    let x: Vec<f32> = x.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    let expected = std::fs::read(format!("{dir}q8_0_quantize.blocks")).unwrap();
    assert_eq!(quantize_q8_0(&x).unwrap(), expected);
}

#[test]
fn q8_0_refuses_partial_blocks() {
    assert!(matches!(quantize_q8_0(&[1.0; 33]), Err(QuantError::NotWholeBlocks { .. })));
    assert_eq!(quantize_q8_0(&[]).unwrap(), Vec::<u8>::new());
}

#[test]
fn q8_1_is_q8_0_plus_scaled_sum() {
    let mut rng = Rng::new(7);
    let x = random_activations(32 * 16, &mut rng);
    let q8_0 = quantize_q8_0(&x).unwrap();
    let mut q8_1 = vec![BlockQ8_1::ZERO; 16];
    BlockQ8_1::from_float(&x, &mut q8_1);
    for (b, a) in q8_1.iter().zip(q8_0.chunks_exact(34)) {
        // Same scale and values as Q8_0 (both are ggml's amax/127 with roundf).
        assert_eq!(b.d.0, [a[0], a[1]]);
        assert!(b.qs.iter().zip(&a[2..]).all(|(&q, &r)| q as u8 == r));
        let sum: i32 = b.qs.iter().map(|&q| q as i32).sum();
        let amax = b.qs.iter().map(|q| q.unsigned_abs()).max().unwrap();
        assert!(amax == 127 || sum == 0);
        let expect = half::f16::from_f32(sum as f32 * b.d.to_f32()).to_f32();
        // `s` is rounded from the f32 scale, not the f16 one: equal to within an f16 ulp.
        assert!((b.s.to_f32() - expect).abs() <= expect.abs() * 2f32.powi(-9) + 1e-6, "{} vs {expect}", b.s.to_f32());
    }
}

#[test]
fn q8_k_maps_the_largest_magnitude_to_minus_127() {
    let mut rng = Rng::new(8);
    let mut x = random_activations(256 * 4, &mut rng);
    x[256..512].fill(0.0);
    let mut q = vec![BlockQ8K::ZERO; 4];
    BlockQ8K::from_float(&x, &mut q);
    for (b, xb) in q.iter().zip(x.chunks_exact(256)) {
        for j in 0..16 {
            let s: i32 = b.qs[16 * j..16 * j + 16].iter().map(|&v| v as i32).sum();
            assert_eq!(b.bsum(j) as i32, s);
        }
        let (imax, _) =
            xb.iter().enumerate().fold((0, 0f32), |(i, m), (j, v)| if v.abs() > m { (j, v.abs()) } else { (i, m) });
        if xb[imax] == 0.0 {
            assert_eq!(b.d(), 0.0);
            continue;
        }
        assert_eq!(b.qs[imax], -127);
        let mut back = [0f32; 256];
        b.to_float(&mut back);
        for (v, w) in xb.iter().zip(&back) {
            assert!((v - w).abs() <= b.d().abs() * 0.5001, "{v} vs {w}");
        }
    }
}

/// The quantizer `kernels_for(isa, weight type)` uses for its activations.
fn quantizer(isa: Isa, weights: QuantType) -> (QuantType, mlmf_quant::simd::QuantizeFn) {
    match kernels_for(isa, weights).dot {
        Some(Dot::Quant { act, quantize, .. }) => (act, quantize),
        _ => unreachable!("quantized weight types quantize their activations"),
    }
}

/// SIMD and scalar quantizers write the same bytes.
fn same_bytes(x: &[f32]) -> Result<(), TestCaseError> {
    for weights in [QuantType::Q4_0, QuantType::Q4_1, QuantType::Q4K] {
        let (act, scalar) = quantizer(Isa::Scalar, weights);
        if !x.len().is_multiple_of(act.block_values()) {
            continue;
        }
        let bytes = act.bytes_for(x.len() as u64).unwrap() as usize;
        let mut want = vec![0u8; bytes];
        scalar(x, &mut want);
        for isa in Isa::available() {
            let mut got = vec![0xAAu8; bytes];
            (quantizer(isa, weights).1)(x, &mut got);
            prop_assert_eq!(&got, &want, "{} {}", isa.name(), act);
        }
    }
    Ok(())
}

#[test]
fn simd_quantizers_match_scalar_on_edges() {
    let mut x = vec![0f32; 512];
    same_bytes(&x).unwrap();
    // Ties: x·127/amax lands on k + 0.5 (Q8_0/Q8_1 round away from zero, Q8_K to even).
    for (i, v) in x.iter_mut().enumerate() {
        *v = (i % 32) as f32 + 0.5 - 16.0;
    }
    x[31] = 127.0;
    x[255] = -127.0;
    same_bytes(&x).unwrap();
    // The first of two values of largest magnitude, negative, sets Q8_K's sign.
    x[3] = -200.0;
    x[4] = 200.0;
    same_bytes(&x).unwrap();
}

proptest! {
    #[test]
    fn simd_quantizers_match_scalar(seed: u64, blocks in 1usize..5, scale in -20i32..20) {
        let mut rng = Rng::new(seed);
        let x: Vec<f32> = random_activations(256 * blocks, &mut rng).iter().map(|v| v * 2f32.powi(scale)).collect();
        same_bytes(&x)?;
    }
}
