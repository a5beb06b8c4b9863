//! Fixed caps on what a GGUF header may hold.
//!
//! Every count and length in a header is first bounded by the bytes left in the file (n items
//! of at least s bytes need n * s bytes). These caps bound it further, so that a file of many
//! gigabytes with a hostile header cannot make the reader allocate or scan gigabytes. Each is
//! far above what real models use; the largest real headers (262,144-token vocabularies with
//! their merges and scores) are a few tens of MB.

/// The header (magic to the start of the data section) ends within this many bytes.
pub const MAX_HEADER_BYTES: u64 = 256 << 20;

/// Bytes the metadata may take in memory once read: arrays are widened (an `u8` array to
/// `i64`, a string to a `String`), so this bounds memory where [`MAX_HEADER_BYTES`] bounds
/// the file.
pub const MAX_METADATA_MEMORY: u64 = 1 << 30;

/// Tensors in one file. The largest models have a few thousand.
pub const MAX_TENSORS: u64 = 1 << 20;

/// Metadata keys in one file. Real files have tens.
pub const MAX_KEYS: u64 = 1 << 20;

/// Elements of one metadata array. The largest vocabularies have 262,144 tokens and about
/// as many merges.
pub const MAX_ARRAY_LEN: u64 = 1 << 24;

/// Bytes of one metadata string value. Chat templates are tens of KB; an embedded
/// `tokenizer.huggingface.json` can be tens of MB.
pub const MAX_STRING_BYTES: u64 = 64 << 20;

/// Bytes of one metadata key. Keys are dotted names such as `llama.context_length`.
pub const MAX_KEY_BYTES: u64 = 64 << 10;

/// Bytes of one tensor name. llama.cpp refuses names of 64 bytes or more; this is looser so
/// that files other tools wrote still open.
pub const MAX_TENSOR_NAME_BYTES: u64 = 1 << 10;

/// Dimensions of one tensor (ggml's `GGML_MAX_DIMS`).
pub const MAX_DIMS: u32 = 4;

/// Depth of arrays inside arrays. No model uses them; their contents are skipped.
pub const MAX_NESTING: u32 = 4;

/// Parts of one split set (`split.count` is a `u16` in llama.cpp).
pub const MAX_SPLIT_PARTS: u64 = u16::MAX as u64;
