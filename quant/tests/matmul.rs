//! `QMatrix::matmul` against dequantize-then-f32-matmul.
//!
//! # The tolerance
//!
//! A quantized product computes `Σ_c w_c·x̂_c` where `x̂` is the activation row after its
//! quantization to 8 bits (the integer sums are exact; only f32 rounding follows). So
//! `|out − Σ w·x| ≤ Σ_c |w_c|·|x_c − x̂_c| + rounding`, and the activation error per value is
//! bounded by its block's largest magnitude `amax`:
//!
//! - Q8_0 / Q8_1 (32 values): `q = round(x·127/amax)` so `|x − q·d| ≤ d/2` with
//!   `d = amax/127`; `x̂ = q·f16(d)`, and the f16 scale is off by at most `2^-11·d`, times
//!   `|q| ≤ 127`: `|x − x̂| ≤ amax·(0.5 + 127·2^-11)/127 ≈ 0.00443·amax` (plus `127·2^-25` when
//!   `d` is an f16 subnormal).
//! - Q8_K (256 values): the scale stays f32, `|x − x̂| ≤ amax/254` (times `1 + 2^-20` for
//!   the f32 roundings of the scale).
//! - Q4_1 / Q5_1 add `m·s` for the minimum `m`, where Q8_1's `s = f16(d·Σq)` stands for
//!   `Σx̂ = f16(d)·Σq`: the difference `|m|·|s − f16(d)·Σq|` is computed from the blocks.
//! - f32 rounding: every block's term is a few roundings and the terms are summed in at most
//!   `blocks + 16` steps, so the error is under `(blocks + 16)·2^-24` times the sum of the
//!   magnitudes involved, `Σ_c (|scale part_c| + |minimum part_c|)·(|x_c| + ε_c)` (the parts
//!   come from dequantizing with the minimum, resp. the scale, zeroed: for K-quants `d·isum` and
//!   `dmin·Σm·bsum` can nearly cancel).
//!
//! The tight test replaces `x` by `x̂`: then only the rounding terms remain, which catches any
//! mistake in a kernel's layout however small.

mod common;

use common::{Rng, WEIGHT_TYPES, random_activations, random_weights, scale_offsets};
use mlmf_quant::kernels::{Dot, kernels};
use mlmf_quant::{Isa, QMatrix, QuantType, dequantize};

/// The weights dequantized with their minimum (`keep_scale`) or their scale zeroed.
fn part(ty: QuantType, w: &[u8], keep_scale: bool) -> Vec<f32> {
    let mut w = w.to_vec();
    let offs = scale_offsets(ty);
    if ty.is_float() || offs.len() < 2 {
        // No minimum: everything is the scale part.
        let mut out = vec![0f32; w.len() / ty.block_bytes() * ty.block_values()];
        dequantize(ty, &w, &mut out).unwrap();
        return if keep_scale { out } else { vec![0.0; out.len()] };
    }
    let (d, m) = (offs[0], offs[1]);
    for b in w.chunks_exact_mut(ty.block_bytes()) {
        let zero = if keep_scale { m } else { d };
        b[zero..zero + 2].fill(0);
    }
    let mut out = vec![0f32; w.len() / ty.block_bytes() * ty.block_values()];
    dequantize(ty, &w, &mut out).unwrap();
    out
}

struct Case {
    ty: QuantType,
    rows: usize,
    cols: usize,
    n: usize,
    w: Vec<u8>,
    x: Vec<f32>,
}

impl Case {
    fn new(ty: QuantType, rows: usize, cols: usize, n: usize, seed: u64) -> Case {
        let mut rng = Rng::new(seed);
        Case {
            ty,
            rows,
            cols,
            n,
            w: random_weights(ty, rows * cols, &mut rng),
            x: random_activations(n * cols, &mut rng),
        }
    }

    fn matrix(&self) -> QMatrix {
        QMatrix::from_vec(self.ty, self.rows, self.cols, self.w.clone()).unwrap()
    }

    /// `x̂` (the activations as the kernels see them), per-value bound `ε` on `|x − x̂|`, and for
    /// types with a minimum the per-row term `Σ_b |m_b|·|s_b − f16(d_b)·Σq_b|` per activation row.
    fn quantized_activations(&self) -> (Vec<f32>, Vec<f32>, Vec<Vec<f32>>) {
        let Some(Dot::Quant { act, quantize, .. }) = kernels(self.ty).dot else {
            return (self.x.clone(), vec![0.0; self.x.len()], vec![]);
        };
        let bv = act.block_values();
        let ab = self.cols / bv * act.block_bytes();
        let mut xh = vec![0f32; self.x.len()];
        let mut eps = vec![0f32; self.x.len()];
        let mut s_err = Vec::new();
        for i in 0..self.n {
            let xr = &self.x[i * self.cols..(i + 1) * self.cols];
            let mut q = vec![0u8; ab];
            quantize(xr, &mut q);
            dequantize(act, &q, &mut xh[i * self.cols..(i + 1) * self.cols]).unwrap();
            for (b, xb) in xr.chunks(bv).enumerate() {
                let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs()));
                let e = if bv == 32 {
                    amax * (0.5 + 127.0 / 2048.0) / 127.0 + 127.0 * 2f32.powi(-25)
                } else {
                    amax / 254.0 * (1.0 + 2f32.powi(-20))
                };
                eps[i * self.cols + b * bv..i * self.cols + (b + 1) * bv].fill(e);
            }
            if act == QuantType::Q8_1 {
                let f16 = |b: &[u8]| half::f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32() as f64;
                let per_row = (0..self.rows)
                    .map(|r| {
                        let wr = &self.w[r * self.cols / 32 * self.ty.block_bytes()..];
                        (0..self.cols / 32)
                            .map(|b| {
                                let blk = &q[b * 36..(b + 1) * 36];
                                let sum: i32 = blk[4..].iter().map(|&v| v as i8 as i32).sum();
                                let m = f16(&wr[b * self.ty.block_bytes() + 2..]);
                                (m.abs() * (f16(&blk[2..]) - f16(blk) * sum as f64).abs()) as f32
                            })
                            .sum::<f32>()
                    })
                    .collect();
                s_err.push(per_row);
            }
        }
        (xh, eps, s_err)
    }
}

/// Compares `got` with `Σ w·x` (`tight`: with `x̂`), within the bound derived above.
fn check(case: &Case, got: &[f32], tight: bool, what: &str) {
    let (xh, eps, s_err) = case.quantized_activations();
    let w = case.matrix().dequantize();
    let (sp, mp) = (part(case.ty, &case.w, true), part(case.ty, &case.w, false));
    let blocks = case.cols / case.ty.block_values().max(8);
    let round = (blocks + 16) as f64 * 2f64.powi(-24);
    for i in 0..case.n {
        for r in 0..case.rows {
            let (mut exact, mut act_err, mut mag) = (0f64, 0f64, 0f64);
            for c in 0..case.cols {
                let (wi, k) = (r * case.cols + c, i * case.cols + c);
                let xv = if tight { xh[k] } else { case.x[k] } as f64;
                exact += w[wi] as f64 * xv;
                if !tight {
                    act_err += (w[wi].abs() * eps[k]) as f64;
                }
                mag += (sp[wi].abs() + mp[wi].abs()) as f64 * (case.x[k].abs() + eps[k]) as f64;
            }
            let s_term = s_err.get(i).map_or(0.0, |v: &Vec<f32>| v[r] as f64);
            let tol = act_err + s_term + round * mag + 1e-30;
            let g = got[i * case.rows + r] as f64;
            assert!(
                (g - exact).abs() <= tol,
                "{what} {} [{}x{}] n={} out[{i},{r}] = {g}, expected {exact} ± {tol} (|Σ|w||x|| ≈ {mag})",
                case.ty,
                case.rows,
                case.cols,
                case.n
            );
        }
    }
}

#[test]
fn every_type_and_isa_matches_dequantized_product() {
    for ty in WEIGHT_TYPES {
        for (rows, cols, n) in [(7, 512, 1), (5, 256, 3)] {
            let case = Case::new(ty, rows, cols, n, ty.ggml_id() as u64 * 31 + n as u64);
            let m = case.matrix();
            let mut out = vec![0f32; n * rows];
            m.matmul_unopt(&case.x, n, &mut out);
            check(&case, &out, true, "scalar (tight)");
            check(&case, &out, false, "scalar");
            for isa in Isa::available() {
                m.matmul_isa(isa, &case.x, n, &mut out);
                check(&case, &out, true, isa.name());
                check(&case, &out, false, isa.name());
            }
            m.matmul(&case.x, n, &mut out);
            check(&case, &out, false, "default");
        }
    }
}

#[test]
fn threads_do_not_change_the_result() {
    let pool1 = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let pool4 = rayon::ThreadPoolBuilder::new().num_threads(4).build().unwrap();
    for ty in [QuantType::Q4_1, QuantType::Q6K, QuantType::F16] {
        for n in [1, 3, 40] {
            let case = Case::new(ty, 300, 512, n, 99 + n as u64);
            let m = case.matrix();
            let (mut a, mut b) = (vec![0f32; n * 300], vec![1f32; n * 300]);
            pool1.install(|| m.matmul(&case.x, n, &mut a));
            pool4.install(|| m.matmul(&case.x, n, &mut b));
            assert_eq!(a, b, "{ty} n={n}");
            if n == 3 {
                check(&case, &b, false, "4 threads");
            }
        }
    }
}

#[test]
fn empty_shapes() {
    let m = QMatrix::from_vec(QuantType::Q4_0, 0, 32, vec![]).unwrap();
    m.matmul(&[0.0; 64], 2, &mut []);
    let m = QMatrix::from_vec(QuantType::Q4_0, 2, 32, vec![0; 36]).unwrap();
    m.matmul(&[], 0, &mut []);
}

#[test]
#[should_panic(expected = "x must be")]
fn wrong_activation_length_panics() {
    let m = QMatrix::from_vec(QuantType::Q4_0, 2, 32, vec![0; 36]).unwrap();
    m.matmul(&[0.0; 31], 1, &mut [0.0; 2]);
}
