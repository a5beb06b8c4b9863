//! Errors of the wire layer.

/// Why a frame could not be encoded or decoded. Every length is checked before anything is
/// allocated, so hostile input ends here rather than in an allocation failure or a panic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The frame is shorter than its fixed header or than the lengths it declares.
    #[error("truncated frame: {0}")]
    Truncated(String),
    /// A declared or produced length exceeds the configured maximum.
    #[error("{what} of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Unknown protocol version.
    #[error("unsupported frame version {0}")]
    Version(u8),
    /// Unknown compression id.
    #[error("unknown compression id {0}")]
    UnknownCompression(u8),
    /// Compressed data is corrupt.
    #[error("{codec} decompression failed: {message}")]
    Decompress {
        /// The compression.
        codec: &'static str,
        /// The underlying error.
        message: String,
    },
    /// The codec could not encode or decode a value.
    #[error("codec: {0}")]
    Codec(String),
}
