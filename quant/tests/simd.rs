//! Every SIMD kernel (one row, several rows, several rows times two activation rows) against
//! the scalar `vec_dot_unopt` of its type, on random blocks (proptest), including the extreme bytes where saturating
//! instructions would go wrong.
//!
//! Both compute the same integer sums and differ only in the order of f32 operations, so they
//! agree within `2·(blocks + 16)·2^-24` times the magnitudes summed (see `tests/matmul.rs`).

mod common;

use common::{Rng, WEIGHT_TYPES, random_activations, random_weights, scale, scale_offsets};
use mlmf_quant::kernels::{Dot, kernels_for};
use mlmf_quant::{Isa, QuantType, dequantize};
use proptest::prelude::*;

/// How the weight bytes are filled.
#[derive(Debug, Clone, Copy)]
enum Fill {
    Random,
    /// Every byte 0xFF (all values at their maximum; Q8_0 −1, Q6_K scales −1).
    Ones,
    /// Every byte 0x80 (Q8_0 −128, the one value `vpsignb` cannot negate).
    Min,
    Zero,
}

/// How the activations are made.
#[derive(Debug, Clone, Copy)]
enum Act {
    Random,
    /// Every value equal: each quantizes to ±127.
    Flat(f32),
    Alternating,
}

fn weights(ty: QuantType, values: usize, fill: Fill, rng: &mut Rng) -> Vec<u8> {
    let mut w = random_weights(ty, values, rng);
    if ty.is_float() {
        return w;
    }
    let byte = match fill {
        Fill::Random => return w,
        Fill::Ones => 0xFF,
        Fill::Min => 0x80,
        Fill::Zero => 0,
    };
    for b in w.chunks_exact_mut(ty.block_bytes()) {
        b.fill(byte);
        for &off in scale_offsets(ty) {
            b[off..off + 2].copy_from_slice(&scale(rng));
        }
    }
    w
}

fn activations(values: usize, act: Act, rng: &mut Rng) -> Vec<f32> {
    match act {
        Act::Random => random_activations(values, rng),
        Act::Flat(v) => vec![v; values],
        Act::Alternating => (0..values).map(|i| if i % 2 == 0 { 1.5 } else { -1.5 }).collect(),
    }
}

/// `|Σ_c w_c·x̂_c|`-style magnitude: `Σ_c |w_c|·|x̂_c|` plus, for types with minimums, the same
/// with the minimum part alone (its product can cancel the scale part's).
fn magnitude(ty: QuantType, w: &[u8], xh: &[f32]) -> f64 {
    let values = xh.len();
    let mut wf = vec![0f32; values];
    dequantize(ty, w, &mut wf).unwrap();
    let mut total: f64 = wf.iter().zip(xh).map(|(a, b)| (a.abs() * b.abs()) as f64).sum();
    let offs = scale_offsets(ty);
    if offs.len() == 2 {
        let mut only_min = w.to_vec();
        for b in only_min.chunks_exact_mut(ty.block_bytes()) {
            b[offs[0]..offs[0] + 2].fill(0);
        }
        dequantize(ty, &only_min, &mut wf).unwrap();
        total += 2.0 * wf.iter().zip(xh).map(|(a, b)| (a.abs() * b.abs()) as f64).sum::<f64>();
    }
    total
}

fn compare(ty: QuantType, blocks: usize, rows: usize, seed: u64, fill: Fill, act: Act) -> Result<(), TestCaseError> {
    let values = blocks * ty.block_values().max(32);
    let mut rng = Rng::new(seed);
    let w = weights(ty, rows * values, fill, &mut rng);
    let rb = w.len() / rows;
    let x = activations(values, act, &mut rng);
    for isa in Isa::available().into_iter().filter(|&i| i != Isa::Scalar) {
        let k = kernels_for(isa, ty);
        // Per row: (simd dot, simd gemv, scalar dot), and the activations the kernels saw.
        let mut gemv_out = vec![f32::NAN; rows];
        let (results, xh): (Vec<(f32, f32)>, Vec<f32>) = match (k.dot, k.dot_unopt) {
            (Some(Dot::Float { dot, gemv }), Some(Dot::Float { dot: unopt, .. })) => {
                gemv(&w, rb, &x, &mut gemv_out);
                (w.chunks(rb).map(|r| (dot(r, &x), unopt(r, &x))).collect(), x.clone())
            }
            (Some(Dot::Quant { act, quantize, dot, gemv, gemm2 }), Some(Dot::Quant { dot: unopt, .. })) => {
                let quantized = |x: &[f32]| {
                    let mut q = vec![0u8; act.bytes_for(values as u64).unwrap() as usize];
                    quantize(x, &mut q);
                    let mut xh = vec![0f32; values];
                    dequantize(act, &q, &mut xh).unwrap();
                    (q, xh)
                };
                let (q, xh) = quantized(&x);
                gemv(&w, rb, &q, &mut gemv_out);
                if let Some(gemm2) = gemm2 {
                    // Two activation rows at once: the first as above, the second another.
                    let x2: Vec<f32> = x.iter().rev().map(|v| v * -0.5 + 0.25).collect();
                    let (q2, xh2) = quantized(&x2);
                    let (mut o0, mut o1) = (vec![f32::NAN; rows], vec![f32::NAN; rows]);
                    gemm2(&w, rb, [&q, &q2], [&mut o0, &mut o1]);
                    for (r, row) in w.chunks(rb).enumerate() {
                        for (got, want, xh) in [(o0[r], unopt(row, &q), &xh), (o1[r], unopt(row, &q2), &xh2)] {
                            let n = values / ty.block_values();
                            let tol = 2.0 * (n + 16) as f64 * 2f64.powi(-24) * magnitude(ty, row, xh) + 1e-30;
                            prop_assert!(
                                (got as f64 - want as f64).abs() <= tol,
                                "{} gemm2 {ty} row {r}/{rows} ({blocks} blocks, {fill:?}, {act:?}): simd {got} vs scalar {want}",
                                isa.name()
                            );
                        }
                    }
                }
                (w.chunks(rb).map(|r| (dot(r, &q), unopt(r, &q))).collect(), xh)
            }
            _ => unreachable!("weight types have products"),
        };
        let n = values / ty.block_values().max(8);
        for (r, ((got, want), g)) in results.iter().zip(&gemv_out).enumerate() {
            let tol = 2.0 * (n + 16) as f64 * 2f64.powi(-24) * magnitude(ty, &w[r * rb..(r + 1) * rb], &xh) + 1e-30;
            for (what, v) in [("dot", *got), ("gemv", *g)] {
                prop_assert!(
                    (v as f64 - *want as f64).abs() <= tol,
                    "{} {what} {ty} row {r}/{rows} ({blocks} blocks, {fill:?}, {act:?}): simd {v} vs scalar {want} (tolerance {tol})",
                    isa.name()
                );
            }
        }
    }
    Ok(())
}

fn fill() -> impl Strategy<Value = Fill> {
    prop_oneof![6 => Just(Fill::Random), 1 => Just(Fill::Ones), 1 => Just(Fill::Min), 1 => Just(Fill::Zero)]
}

fn act() -> impl Strategy<Value = Act> {
    prop_oneof![6 => Just(Act::Random), 1 => Just(Act::Flat(-2.0)), 1 => Just(Act::Flat(0.0)), 1 => Just(Act::Alternating)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn simd_equals_scalar(
        ty in proptest::sample::select(WEIGHT_TYPES.to_vec()),
        blocks in 1usize..11,
        rows in 1usize..10,
        seed: u64,
        fill in fill(),
        act in act(),
    ) {
        compare(ty, blocks, rows, seed, fill, act)?;
    }
}

#[test]
fn simd_equals_scalar_on_every_type_and_edge() {
    for ty in WEIGHT_TYPES {
        for fill in [Fill::Random, Fill::Ones, Fill::Min, Fill::Zero] {
            for act in [Act::Random, Act::Flat(-2.0), Act::Flat(3.0), Act::Alternating] {
                for (blocks, rows) in [(1, 1), (2, 5), (3, 4), (8, 9)] {
                    compare(ty, blocks, rows, 5, fill, act).unwrap();
                }
            }
        }
    }
}
