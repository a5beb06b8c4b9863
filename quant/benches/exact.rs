//! `matmul` (8-bit activations) against `matmul_exact` (f32 activations) on one thread, on the
//! shapes of SmolLM2-135M as `[rows = outputs, cols = inputs]`: the MLP's down (576×1536) and
//! up/gate (1536×576) and the LM head (49152×576), for one activation row (decoding) and for 8
//! (prefill). Prints GMAC/s (multiply-adds of weights by activations per nanosecond), the best
//! of several timed runs, alternating between the two, so that a busy machine slows both alike.
//!
//! `cargo bench -p mlmf-quant --bench exact [-- TYPE...]`, e.g. `-- Q4_1 Q8_0`.

use std::hint::black_box;
use std::time::Instant;

use mlmf_quant::{Isa, QMatrix, QuantType};

/// Random weight bytes with small finite f16 scales.
fn weights(ty: QuantType, rows: usize, cols: usize) -> Option<QMatrix> {
    let mut state = 0x1234_5678_9abc_def0u64 ^ ty.ggml_id() as u64;
    let n = rows * cols;
    let mut b: Vec<u8> = (0..ty.bytes_for(n as u64)?)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let scale = half::f16::from_f32(0.01).to_bits().to_le_bytes();
    let offsets: &[usize] = match ty {
        QuantType::Q2K => &[80, 82],
        QuantType::Q3K => &[108],
        QuantType::Q6K => &[208],
        QuantType::Q4_1 | QuantType::Q5_1 | QuantType::Q4K | QuantType::Q5K => &[0, 2],
        _ => &[0],
    };
    for blk in b.chunks_exact_mut(ty.block_bytes()) {
        for &o in offsets {
            blk[o..o + 2].copy_from_slice(&scale);
        }
    }
    QMatrix::from_vec(ty, rows, cols, b).ok()
}

/// Best GMAC/s of `a` and of `b` over runs of about 30 ms each, alternating between the two
/// so that load from other processes hits both alike.
fn gmacs(macs: usize, mut a: impl FnMut(), mut b: impl FnMut()) -> (f64, f64) {
    a();
    b();
    let start = Instant::now();
    let mut iters = 0usize;
    while start.elapsed().as_millis() < 10 {
        a();
        iters += 1;
    }
    let per_run = (iters * 3).max(1);
    let time = |f: &mut dyn FnMut()| {
        let t = Instant::now();
        for _ in 0..per_run {
            f();
        }
        t.elapsed().as_secs_f64() / per_run as f64
    };
    let (mut best_a, mut best_b) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..7 {
        best_a = best_a.min(time(&mut a));
        best_b = best_b.min(time(&mut b));
    }
    (macs as f64 / best_a / 1e9, macs as f64 / best_b / 1e9)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let types = [QuantType::Q4_1, QuantType::Q8_0, QuantType::Q4_0, QuantType::Q4K, QuantType::Q6K, QuantType::Q5_0];
    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("a thread pool");
    println!("instruction set: {}, one thread; GMAC/s", Isa::detected().name());
    println!("{:<6} {:>12} {:>3} {:>9} {:>9} {:>6}", "type", "shape", "n", "int8", "exact", "ratio");
    for ty in types {
        if !args.is_empty() && !args.iter().any(|a| a.eq_ignore_ascii_case(ty.name())) {
            continue;
        }
        for (rows, cols) in [(576, 1536), (1536, 576), (49152, 576)] {
            let Some(m) = weights(ty, rows, cols) else { continue };
            for n in [1, 8] {
                let x: Vec<f32> = (0..n * cols).map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0).collect();
                let mut out = vec![0f32; n * rows];
                let macs = rows * cols * n;
                let mut out2 = out.clone();
                let (int8, exact) = one.install(|| {
                    gmacs(
                        macs,
                        || m.matmul(black_box(&x), n, black_box(&mut out)),
                        || m.matmul_exact(black_box(&x), n, black_box(&mut out2)),
                    )
                });
                println!(
                    "{:<6} {:>12} {n:>3} {int8:>9.2} {exact:>9.2} {:>6.2}",
                    ty.name(),
                    format!("{rows}x{cols}"),
                    exact / int8
                );
            }
        }
    }
}
