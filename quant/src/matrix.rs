//! [`QMatrix`]: a weight matrix of any weight type, its blocks shared with whoever owns the
//! bytes (a memory map, a `Vec`), and the row and column selections that sharding needs.

use std::ops::Range;
use std::sync::Arc;

use crate::block::{ActivationBlock, BlockQ8_0, block_bytes};
use crate::kernels::kernels;
use crate::{QuantError, QuantType};

/// Bytes shared with whoever owns them (a memory map, a `Vec`).
pub type SharedBytes = Arc<dyn AsRef<[u8]> + Send + Sync>;

/// A weight matrix `[rows, cols]`: rows are output features, columns input features, and a row
/// is `cols / block_values` blocks, exactly ggml's layout of a tensor with `ne0 = cols`.
///
/// Any [`QuantType`] except the activation-only Q8_1 and Q8_K; F32, F16 and BF16 included.
/// Cloning shares the bytes.
#[derive(Clone)]
pub struct QMatrix {
    ty: QuantType,
    rows: usize,
    cols: usize,
    row_bytes: usize,
    data: SharedBytes,
    start: usize,
}

impl std::fmt::Debug for QMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QMatrix")
            .field("ty", &self.ty)
            .field("rows", &self.rows)
            .field("cols", &self.cols)
            .field("storage_bytes", &self.storage_bytes())
            .finish()
    }
}

/// Bytes of one row of `cols` values of `ty`.
pub(crate) fn row_bytes(ty: QuantType, cols: usize) -> Result<usize, QuantError> {
    let block = ty.block_values();
    if !cols.is_multiple_of(block) {
        return Err(QuantError::NotWholeBlocks { ty, values: cols, block });
    }
    (cols / block).checked_mul(ty.block_bytes()).ok_or(QuantError::Overflow { ty, rows: 1, cols })
}

impl QMatrix {
    /// A matrix over `data[range]`, which must hold exactly `rows × row bytes`. Does not copy.
    ///
    /// # Errors
    ///
    /// [`QuantError::Unsupported`] for Q8_1 and Q8_K, [`QuantError::NotWholeBlocks`] when `cols`
    /// is not a whole number of blocks, [`QuantError::Overflow`], [`QuantError::RangeOutOfBounds`]
    /// when `range` is not inside `data`, [`QuantError::LengthMismatch`] when it has the wrong
    /// length.
    pub fn new(
        ty: QuantType,
        rows: usize,
        cols: usize,
        data: SharedBytes,
        range: Range<usize>,
    ) -> Result<QMatrix, QuantError> {
        if matches!(ty, QuantType::Q8_1 | QuantType::Q8K) {
            return Err(QuantError::Unsupported { ty, op: "a weight matrix" });
        }
        let row_bytes = row_bytes(ty, cols)?;
        let total = rows.checked_mul(row_bytes).ok_or(QuantError::Overflow { ty, rows, cols })?;
        let len = (*data).as_ref().len();
        if range.start > range.end || range.end > len {
            return Err(QuantError::RangeOutOfBounds { what: "byte range", start: range.start, end: range.end, len });
        }
        if range.len() != total {
            return Err(QuantError::LengthMismatch { what: "bytes of the matrix", expected: total, got: range.len() });
        }
        Ok(QMatrix { ty, rows, cols, row_bytes, data, start: range.start })
    }

    /// A matrix owning `data`, which must be exactly `rows × row bytes` (errors as [`QMatrix::new`]).
    pub fn from_vec(ty: QuantType, rows: usize, cols: usize, data: Vec<u8>) -> Result<QMatrix, QuantError> {
        let len = data.len();
        QMatrix::new(ty, rows, cols, Arc::new(data), 0..len)
    }

    /// The type of the blocks.
    pub fn ty(&self) -> QuantType {
        self.ty
    }

    /// Output features.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Input features.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Bytes of one row.
    pub fn row_bytes(&self) -> usize {
        self.row_bytes
    }

    /// Bytes of its blocks.
    pub fn storage_bytes(&self) -> usize {
        self.rows * self.row_bytes
    }

    /// The blocks, row after row.
    ///
    /// # Panics
    ///
    /// If the owner's `as_ref` now returns fewer bytes than when the matrix was made.
    pub fn bytes(&self) -> &[u8] {
        &(*self.data).as_ref()[self.start..self.start + self.storage_bytes()]
    }

    /// The blocks of row `row`.
    ///
    /// # Panics
    ///
    /// If `row >= rows`.
    pub fn row(&self, row: usize) -> &[u8] {
        assert!(row < self.rows, "row {row} of a matrix of {} rows", self.rows);
        &self.bytes()[row * self.row_bytes..(row + 1) * self.row_bytes]
    }

    /// The matrix made of `ranges` of rows, in order: shares the bytes when they are one
    /// contiguous run, copies the blocks otherwise; never dequantizes.
    ///
    /// # Panics
    ///
    /// If a range is reversed or reaches past `rows` (a caller bug: row counts come from the
    /// model's shape, which `new` has checked).
    pub fn select_rows(&self, ranges: &[Range<usize>]) -> QMatrix {
        for r in ranges {
            assert!(r.start <= r.end && r.end <= self.rows, "rows {r:?} of a matrix of {} rows", self.rows);
        }
        let rows: usize = ranges.iter().map(|r| r.len()).sum();
        let mut nonempty = ranges.iter().filter(|r| !r.is_empty());
        let contiguous = match nonempty.next() {
            None => Some(0),
            Some(first) => {
                let mut end = first.end;
                let mut ok = true;
                for r in nonempty {
                    ok &= r.start == end;
                    end = r.end;
                }
                ok.then_some(first.start)
            }
        };
        if let Some(first) = contiguous {
            return QMatrix { rows, start: self.start + first * self.row_bytes, ..self.clone() };
        }
        let bytes = self.bytes();
        let mut out = Vec::with_capacity(rows * self.row_bytes);
        for r in ranges {
            out.extend_from_slice(&bytes[r.start * self.row_bytes..r.end * self.row_bytes]);
        }
        QMatrix { rows, data: Arc::new(out), start: 0, ..self.clone() }
    }

    /// Rows of several matrices of the same type and columns, concatenated (q|k|v). Copies.
    ///
    /// # Errors
    ///
    /// [`QuantError::Incompatible`] when `parts` is empty or disagree on type or columns.
    pub fn concat_rows(parts: &[QMatrix]) -> Result<QMatrix, QuantError> {
        let Some(first) = parts.first() else {
            return Err(QuantError::Incompatible("no matrices to concatenate".into()));
        };
        for p in parts {
            if p.ty != first.ty || p.cols != first.cols {
                return Err(QuantError::Incompatible(format!(
                    "concatenating rows of {} [{}, {}] with {} [{}, {}]",
                    first.ty, first.rows, first.cols, p.ty, p.rows, p.cols
                )));
            }
        }
        let rows = parts.iter().map(|p| p.rows).sum();
        let mut out = Vec::with_capacity(parts.iter().map(|p| p.storage_bytes()).sum());
        for p in parts {
            out.extend_from_slice(p.bytes());
        }
        QMatrix::from_vec(first.ty, rows, first.cols, out)
    }

    /// The columns `ranges` of every row, in order. When every range starts and ends on a block
    /// boundary the blocks are copied as they are; otherwise the selection is dequantized and
    /// re-quantized to Q8_0 (when its width is a multiple of 32) or kept as F32. Returns the
    /// matrix and whether it was re-blocked (dequantized into a new type).
    ///
    /// # Errors
    ///
    /// [`QuantError::RangeOutOfBounds`] for a reversed range or one past `cols`.
    pub fn select_cols(&self, ranges: &[Range<usize>]) -> Result<(QMatrix, bool), QuantError> {
        for r in ranges {
            if r.start > r.end || r.end > self.cols {
                return Err(QuantError::RangeOutOfBounds {
                    what: "column range",
                    start: r.start,
                    end: r.end,
                    len: self.cols,
                });
            }
        }
        let width: usize = ranges.iter().map(|r| r.len()).sum();
        let bv = self.ty.block_values();
        let bb = self.ty.block_bytes();
        if ranges.iter().all(|r| r.start % bv == 0 && r.end % bv == 0) {
            let mut out = Vec::with_capacity(self.rows * (width / bv) * bb);
            for row in 0..self.rows {
                let src = self.row(row);
                for r in ranges {
                    out.extend_from_slice(&src[r.start / bv * bb..r.end / bv * bb]);
                }
            }
            return Ok((QMatrix::from_vec(self.ty, self.rows, width, out)?, false));
        }
        let mut row = vec![0f32; self.cols];
        let mut picked = Vec::with_capacity(width);
        let requant = width.is_multiple_of(32);
        let mut out = Vec::new();
        for i in 0..self.rows {
            self.dequantize_row(i, &mut row);
            picked.clear();
            for r in ranges {
                picked.extend_from_slice(&row[r.clone()]);
            }
            if requant {
                let mut blocks = vec![BlockQ8_0::ZERO; width / 32];
                BlockQ8_0::from_float(&picked, &mut blocks);
                out.extend_from_slice(block_bytes(&blocks));
            } else {
                out.extend(picked.iter().flat_map(|v| v.to_le_bytes()));
            }
        }
        let ty = if requant { QuantType::Q8_0 } else { QuantType::F32 };
        Ok((QMatrix::from_vec(ty, self.rows, width, out)?, true))
    }

    /// The whole matrix as f32 `[rows, cols]`, row-major.
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.rows * self.cols];
        (kernels(self.ty).to_float)(self.bytes(), &mut out);
        out
    }

    /// Row `row` as f32 into `out`.
    ///
    /// # Panics
    ///
    /// If `row >= rows` or `out.len() != cols` (caller bugs).
    pub fn dequantize_row(&self, row: usize, out: &mut [f32]) {
        assert_eq!(out.len(), self.cols, "a row has {} values", self.cols);
        (kernels(self.ty).to_float)(self.row(row), out);
    }
}
