//! Matrix-vector products (one activation row, as in decoding) per weight type, on the shapes
//! of SmolLM2-135M's MLP as `[rows = outputs, cols = inputs]`: 576×1536 (down) and 1536×576
//! (up, gate; K-quants skipped, 576 is not whole super-blocks), on one thread and on all of
//! rayon's threads. Throughput is reported as bytes of weights streamed per second;
//! multiply by `2·values / bytes` for FLOP/s (printed once per type at the start).
//!
//! `cargo bench -p mlmf-quant --bench matvec [-- FILTER]`; `MLMF_QUANT_ISA=scalar` (or `avx2`)
//! caps the instruction set for comparison.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use mlmf_quant::{Isa, QMatrix, QuantType};

const TYPES: [QuantType; 13] = [
    QuantType::Q4_0,
    QuantType::Q4_1,
    QuantType::Q5_0,
    QuantType::Q5_1,
    QuantType::Q8_0,
    QuantType::Q2K,
    QuantType::Q3K,
    QuantType::Q4K,
    QuantType::Q5K,
    QuantType::Q6K,
    QuantType::F32,
    QuantType::F16,
    QuantType::BF16,
];

/// Random weight bytes with finite f16 scales (small, so values stay ordinary).
fn weights(ty: QuantType, rows: usize, cols: usize) -> QMatrix {
    let mut state = 0x1234_5678_9abc_def0u64 ^ ty.ggml_id() as u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let n = rows * cols;
    let bytes: Vec<u8> = match ty {
        QuantType::F32 => (0..n).flat_map(|_| ((next() % 1000) as f32 / 1000.0 - 0.5).to_le_bytes()).collect(),
        QuantType::F16 | QuantType::BF16 => (0..n).flat_map(|_| [(next() % 256) as u8, 0x3c]).collect(),
        _ => {
            let mut b: Vec<u8> = (0..ty.bytes_for(n as u64).unwrap()).map(|_| next() as u8).collect();
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
            b
        }
    };
    QMatrix::from_vec(ty, rows, cols, bytes).unwrap()
}

fn matvec(c: &mut Criterion) {
    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let threads = rayon::current_num_threads();
    eprintln!("instruction set: {}, threads: {threads}", Isa::detected().name());
    for (rows, cols) in [(576, 1536), (1536, 576)] {
        let mut group = c.benchmark_group(format!("matvec_{rows}x{cols}"));
        group.warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(1)).sample_size(20);
        let x: Vec<f32> = (0..cols).map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0).collect();
        for ty in TYPES {
            if cols % ty.block_values() != 0 {
                // Rows of 576 are not whole K-quant super-blocks; llama.cpp's quantizer falls
                // back to another type for such tensors.
                continue;
            }
            let m = weights(ty, rows, cols);
            group.throughput(Throughput::Bytes(m.storage_bytes() as u64));
            let mut out = vec![0f32; rows];
            group.bench_function(BenchmarkId::new(format!("{ty}/1t"), ""), |b| {
                one.install(|| b.iter(|| m.matmul(black_box(&x), 1, black_box(&mut out))))
            });
            group.bench_function(BenchmarkId::new(format!("{ty}/{threads}t"), ""), |b| {
                b.iter(|| m.matmul(black_box(&x), 1, black_box(&mut out)))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, matvec);
criterion_main!(benches);
