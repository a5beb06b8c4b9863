//! `QMatrix`: validation of the bytes, and row and column selection against the dequantized
//! matrix.

mod common;

use std::sync::Arc;

use common::{Rng, WEIGHT_TYPES, random_weights};
use mlmf_quant::{QMatrix, QuantError, QuantType, SharedBytes};

fn random_matrix(ty: QuantType, rows: usize, cols: usize, seed: u64) -> QMatrix {
    let mut rng = Rng::new(seed);
    QMatrix::from_vec(ty, rows, cols, random_weights(ty, rows * cols, &mut rng)).unwrap()
}

#[test]
fn new_checks_shape_and_range() {
    let data: SharedBytes = Arc::new(vec![0u8; 100 + 2 * 144]);
    let m = QMatrix::new(QuantType::Q4K, 2, 256, data.clone(), 100..388).unwrap();
    assert_eq!((m.rows(), m.cols(), m.storage_bytes(), m.row_bytes()), (2, 256, 288, 144));
    assert!(matches!(
        QMatrix::new(QuantType::Q4K, 2, 256, data.clone(), 99..388),
        Err(QuantError::LengthMismatch { expected: 288, got: 289, .. })
    ));
    assert!(matches!(
        QMatrix::new(QuantType::Q4K, 2, 256, data.clone(), 101..389),
        Err(QuantError::RangeOutOfBounds { .. })
    ));
    assert!(matches!(
        QMatrix::new(QuantType::Q4K, 2, 100, data.clone(), 0..0),
        Err(QuantError::NotWholeBlocks { values: 100, .. })
    ));
    assert!(matches!(QMatrix::new(QuantType::Q8K, 1, 256, data.clone(), 0..292), Err(QuantError::Unsupported { .. })));
    assert!(matches!(QMatrix::new(QuantType::Q8_1, 1, 32, data, 0..36), Err(QuantError::Unsupported { .. })));
    assert!(matches!(QMatrix::from_vec(QuantType::F32, usize::MAX / 2, 2, vec![]), Err(QuantError::Overflow { .. })));
}

#[test]
fn dequantize_row_is_a_row_of_dequantize() {
    for ty in WEIGHT_TYPES {
        let cols = 2 * ty.block_values().max(32);
        let m = random_matrix(ty, 3, cols, 1);
        let all = m.dequantize();
        let mut row = vec![0f32; cols];
        for r in 0..3 {
            m.dequantize_row(r, &mut row);
            assert_eq!(row, &all[r * cols..(r + 1) * cols], "{ty}");
        }
    }
}

#[test]
fn select_rows_shares_or_copies_the_rows() {
    for ty in WEIGHT_TYPES {
        let cols = ty.block_values().max(32);
        let m = random_matrix(ty, 10, cols, 2);
        let all = m.dequantize();
        let rows = |rs: &[std::ops::Range<usize>]| -> Vec<f32> {
            rs.iter().flat_map(|r| all[r.start * cols..r.end * cols].iter().copied()).collect()
        };
        let one = |r: std::ops::Range<usize>| vec![r];
        for ranges in [one(2..5), vec![2..5, 5..7], vec![7..9, 0..2], vec![1..1, 3..4, 0..1], vec![], one(0..10)] {
            let s = m.select_rows(&ranges);
            assert_eq!(s.rows(), ranges.iter().map(|r| r.len()).sum::<usize>());
            assert_eq!(s.dequantize(), rows(&ranges), "{ty} {ranges:?}");
        }
        // One contiguous run shares the bytes: same address.
        assert_eq!(m.select_rows(&[2..4, 4..6]).bytes().as_ptr(), m.row(2).as_ptr());
    }
}

#[test]
fn concat_rows_stacks_matrices() {
    let a = random_matrix(QuantType::Q5K, 2, 512, 3);
    let b = random_matrix(QuantType::Q5K, 3, 512, 4);
    let c = QMatrix::concat_rows(&[a.clone(), b.clone()]).unwrap();
    assert_eq!(c.rows(), 5);
    assert_eq!(c.dequantize(), [a.dequantize(), b.dequantize()].concat());
    let other = random_matrix(QuantType::Q4K, 1, 512, 5);
    assert!(matches!(QMatrix::concat_rows(&[a.clone(), other]), Err(QuantError::Incompatible(_))));
    let narrow = random_matrix(QuantType::Q5K, 1, 256, 5);
    assert!(matches!(QMatrix::concat_rows(&[a, narrow]), Err(QuantError::Incompatible(_))));
    assert!(QMatrix::concat_rows(&[]).is_err());
}

#[test]
fn select_cols_on_block_boundaries_copies_blocks() {
    for ty in WEIGHT_TYPES {
        let bv = ty.block_values().max(32);
        let cols = 4 * bv;
        let m = random_matrix(ty, 3, cols, 6);
        let all = m.dequantize();
        let ranges = [2 * bv..3 * bv, 0..bv];
        let (s, reblocked) = m.select_cols(&ranges).unwrap();
        assert!(!reblocked);
        assert_eq!((s.ty(), s.rows(), s.cols()), (ty, 3, 2 * bv));
        let expect: Vec<f32> = (0..3)
            .flat_map(|r| ranges.iter().flat_map(move |c| (c.clone()).map(move |c| (r, c))))
            .map(|(r, c)| all[r * cols + c])
            .collect();
        assert_eq!(s.dequantize(), expect, "{ty}");
    }
}

#[test]
fn select_cols_off_block_boundaries_reblocks() {
    let m = random_matrix(QuantType::Q4K, 2, 512, 7);
    let all = m.dequantize();
    let pick = |ranges: &[std::ops::Range<usize>]| -> Vec<f32> {
        let mut out = Vec::new();
        for r in 0..2 {
            for c in ranges {
                out.extend_from_slice(&all[r * 512 + c.start..r * 512 + c.end]);
            }
        }
        out
    };
    // 64 wide: re-quantized to Q8_0, within Q8_0's rounding (half a step of max|x|/127).
    let ranges = [16..48, 300..332];
    let (s, reblocked) = m.select_cols(&ranges).unwrap();
    assert!(reblocked);
    assert_eq!((s.ty(), s.cols()), (QuantType::Q8_0, 64));
    let expect = pick(&ranges);
    for (blk, (got, want)) in s.dequantize().chunks(32).zip(expect.chunks(32)).enumerate() {
        let amax = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() <= amax / 127.0 * 0.6, "block {blk}: {g} vs {w}");
        }
    }
    // 20 wide: kept as F32, exactly.
    let cols_5_25 = [std::ops::Range { start: 5, end: 25 }];
    let (s, reblocked) = m.select_cols(&cols_5_25).unwrap();
    assert!(reblocked);
    assert_eq!((s.ty(), s.cols()), (QuantType::F32, 20));
    assert_eq!(s.dequantize(), pick(&cols_5_25));
    let past_end = [std::ops::Range { start: 500, end: 513 }];
    assert!(matches!(m.select_cols(&past_end), Err(QuantError::RangeOutOfBounds { .. })));
}
