//! `QMatrix::matmul_exact` against dequantize-then-f64 dot, for every weight type.
//!
//! # The tolerance
//!
//! The reference is `Σ_c w_c·x_c` in f64 with `w = dequantize(W)` (f32) and `x` the f32
//! activations: every product of two f32 is exact in f64 and the f64 sum's own error is ~2^-29
//! times smaller than what is tested, so it stands for the exact value.
//!
//! `matmul_exact` dequantizes each weight to the same f32 as `dequantize` (the in-register
//! dequantizers repeat `to_float`'s operations; where they fuse `d·q + m` into one FMA the
//! product `d·q` is exact, so the rounding is the same) and sums the products in f32, with FMA
//! or after rounding each product. Any order of summing `cols` terms in f32, each product
//! rounded at most once, is within `γ_cols·Σ|w·x|` of the exact sum, `γ_k = k·u/(1 − k·u)`,
//! `u = 2^-24` (Higham, *Accuracy and Stability of Numerical Algorithms*, §4.2): a chain has
//! at most `cols` additions whichever way it is split (lanes, chunks, the horizontal sum), plus
//! one for the product. So the test allows
//!
//! `|out − ref| ≤ (cols + 2)·2^-24·(1 + 2^-20)·Σ|w·x| + 2^-120`,
//!
//! the last term for sums of subnormal products. This is tight: a single value read from the
//! wrong place, with a wrong nibble or scale, moves the result by about `|w·x|` of that value,
//! orders above the bound once `cols` is more than a few; and the 8-bit path (`matmul`) misses
//! it by far on these inputs, which the last test checks so the bound is known to bite.

mod common;

use common::{Rng, WEIGHT_TYPES, random_activations, random_weights};
use mlmf_quant::{Activations, Isa, QMatrix, QuantType};

struct Case {
    m: QMatrix,
    n: usize,
    x: Vec<f32>,
    /// `Σ w·x` in f64 per output, `[n, rows]`.
    exact: Vec<f64>,
    /// `Σ |w·x|` per output.
    magnitude: Vec<f64>,
}

fn case(ty: QuantType, rows: usize, cols: usize, n: usize, seed: u64) -> Case {
    let mut rng = Rng::new(seed);
    let w = random_weights(ty, rows * cols, &mut rng);
    let x = random_activations(n * cols, &mut rng);
    let m = QMatrix::from_vec(ty, rows, cols, w).unwrap();
    let deq = m.dequantize();
    let mut exact = vec![0f64; n * rows];
    let mut magnitude = vec![0f64; n * rows];
    for i in 0..n {
        for r in 0..rows {
            let (mut s, mut a) = (0f64, 0f64);
            for c in 0..cols {
                let p = deq[r * cols + c] as f64 * x[i * cols + c] as f64;
                s += p;
                a += p.abs();
            }
            exact[i * rows + r] = s;
            magnitude[i * rows + r] = a;
        }
    }
    Case { m, n, x, exact, magnitude }
}

/// The bound of the module comment.
fn tolerance(cols: usize, magnitude: f64) -> f64 {
    (cols as f64 + 2.0) * 2f64.powi(-24) * (1.0 + 2f64.powi(-20)) * magnitude + 2f64.powi(-120)
}

/// Checks `out` against the case; `slack` multiplies the bound.
fn check(c: &Case, out: &[f32], slack: f64, what: &str) {
    let (rows, cols) = (c.m.rows(), c.m.cols());
    for (k, (&o, (&e, &mag))) in out.iter().zip(c.exact.iter().zip(&c.magnitude)).enumerate() {
        let tol = slack * tolerance(cols, mag);
        assert!(
            (o as f64 - e).abs() <= tol,
            "{what} {} [{rows}x{cols}] n={} out[{}, {}] = {o}, exact {e}, |diff| {} > {tol}",
            c.m.ty(),
            c.n,
            k / rows,
            k % rows,
            (o as f64 - e).abs()
        );
    }
}

/// Shapes `(rows, cols)` for `ty`: rows not multiples of 4, one block, many blocks, and one
/// large enough to be split across threads.
fn shapes(ty: QuantType, rng: &mut Rng) -> Vec<(usize, usize)> {
    let b = ty.block_values().max(32);
    let mut s = vec![(1, b), (5, b), (7, 2 * b), (300, 2 * b.max(256))];
    for _ in 0..4 {
        let rows = 1 + (rng.next_u64() % 40) as usize;
        let blocks = 1 + (rng.next_u64() % if b >= 256 { 5 } else { 40 }) as usize;
        s.push((rows, blocks * b));
    }
    s
}

#[test]
fn exact_matches_f64_reference() {
    let mut rng = Rng::new(7);
    for ty in WEIGHT_TYPES {
        for (rows, cols) in shapes(ty, &mut rng) {
            for n in [1, 3, 8, 11] {
                let c = case(ty, rows, cols, n, rng.next_u64());
                let mut out = vec![f32::NAN; n * rows];
                c.m.matmul_exact(&c.x, n, &mut out);
                check(&c, &out, 1.0, "matmul_exact");
                for isa in Isa::available() {
                    out.fill(f32::NAN);
                    c.m.matmul_exact_isa(isa, &c.x, n, &mut out);
                    check(&c, &out, 1.0, isa.name());
                }
            }
        }
    }
}

/// The SIMD kernels against the scalar one: both within the bound of the exact value, so
/// within twice the bound of each other.
#[test]
fn simd_matches_scalar() {
    let mut rng = Rng::new(11);
    for ty in WEIGHT_TYPES {
        for n in [1, 2, 3, 4, 5, 8] {
            let (rows, cols) = (9, 4 * ty.block_values().max(32));
            let c = case(ty, rows, cols, n, rng.next_u64());
            let mut scalar = vec![0f32; n * rows];
            c.m.matmul_exact_isa(Isa::Scalar, &c.x, n, &mut scalar);
            for isa in Isa::available() {
                let mut out = vec![0f32; n * rows];
                c.m.matmul_exact_isa(isa, &c.x, n, &mut out);
                for (k, (&a, &b)) in out.iter().zip(&scalar).enumerate() {
                    let tol = 2.0 * tolerance(cols, c.magnitude[k]);
                    assert!((a as f64 - b as f64).abs() <= tol, "{ty} {} n={n} [{k}]: {a} vs scalar {b}", isa.name());
                }
            }
        }
    }
}

#[test]
fn matmul_with_dispatches() {
    let c = case(QuantType::Q4_1, 13, 96, 3, 5);
    let (mut a, mut b) = (vec![0f32; 39], vec![0f32; 39]);
    c.m.matmul_with(Activations::Int8, &c.x, 3, &mut a);
    c.m.matmul(&c.x, 3, &mut b);
    assert_eq!(a, b);
    c.m.matmul_with(Activations::Exact, &c.x, 3, &mut a);
    c.m.matmul_exact(&c.x, 3, &mut b);
    assert_eq!(a, b);
    assert_eq!(Activations::default(), Activations::Int8);
}

/// The bound is tight enough to tell the 8-bit path from the exact one.
#[test]
fn int8_path_misses_the_bound() {
    let c = case(QuantType::Q8_0, 64, 512, 1, 3);
    let mut out = vec![0f32; 64];
    c.m.matmul(&c.x, 1, &mut out);
    let misses = out
        .iter()
        .zip(c.exact.iter().zip(&c.magnitude))
        .filter(|&(&o, (&e, &m))| (o as f64 - e).abs() > tolerance(512, m))
        .count();
    assert!(misses > 32, "only {misses} of 64 outputs of the 8-bit product are outside the bound");
}

/// Empty shapes and zero columns behave as `matmul`.
#[test]
fn empty_shapes() {
    let m = QMatrix::from_vec(QuantType::Q4_1, 3, 0, vec![]).unwrap();
    let mut out = vec![1f32; 6];
    m.matmul_exact(&[], 2, &mut out);
    assert_eq!(out, vec![0.0; 6]);
    let m = QMatrix::from_vec(QuantType::Q8_0, 0, 32, vec![]).unwrap();
    m.matmul_exact(&[0.0; 64], 2, &mut []);
}
