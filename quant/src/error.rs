//! [`QuantError`]: what can be wrong with the bytes or shapes handed to this crate.

use crate::QuantType;

/// Why a block operation was refused. Every check on bytes that come from outside (a file,
/// the network) reports one of these instead of panicking.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantError {
    /// A byte or value count does not match what the shape and type need.
    #[error("{what}: expected {expected}, got {got}")]
    LengthMismatch {
        /// What was being measured ("bytes of Q4_K data", "output values").
        what: &'static str,
        /// What the shape and type need.
        expected: usize,
        /// What was given.
        got: usize,
    },
    /// A row or buffer is not a whole number of blocks of the type.
    #[error("{values} values are not a whole number of {ty} blocks of {block} values")]
    NotWholeBlocks {
        /// The type.
        ty: QuantType,
        /// The number of values asked for.
        values: usize,
        /// Values per block of `ty`.
        block: usize,
    },
    /// The type cannot be used for this operation (an activation-only type as a weight).
    #[error("{ty} is not supported for {op}")]
    Unsupported {
        /// The type.
        ty: QuantType,
        /// The operation ("a weight matrix").
        op: &'static str,
    },
    /// `rows × row bytes` does not fit in `usize`.
    #[error("{rows} rows of {cols} {ty} values overflow the address space")]
    Overflow {
        /// The type.
        ty: QuantType,
        /// Rows asked for.
        rows: usize,
        /// Columns asked for.
        cols: usize,
    },
    /// A range lies outside what it selects from (bytes of a buffer, columns of a matrix).
    #[error("{what} {start}..{end} is outside 0..{len}")]
    RangeOutOfBounds {
        /// What the range counts ("byte range", "column range").
        what: &'static str,
        /// Start of the range.
        start: usize,
        /// End of the range.
        end: usize,
        /// Length of what it selects from.
        len: usize,
    },
    /// Matrices that must agree on type or columns do not.
    #[error("matrices disagree: {0}")]
    Incompatible(String),
}
