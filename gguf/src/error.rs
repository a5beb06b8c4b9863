//! [`GgufError`]: everything that can be wrong with a GGUF file or a set of them.

use std::path::PathBuf;

use crate::tensor::type_hint;

/// What is wrong with a GGUF file, a split set or a model directory.
///
/// Every variant names the file (`path`) and, where there is one, the tensor or metadata key,
/// so that a message printed to a user says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// A file or directory could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file does not start with `GGUF`.
    #[error("{path}: not a GGUF file (it starts with {}, not \"GGUF\")", show_magic(.found))]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// Its first four bytes.
        found: [u8; 4],
    },
    /// The header's version is not 2 or 3.
    #[error("{path}: {}", version_hint(*.version))]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version as read (little-endian).
        version: u32,
    },
    /// The file ends before something its header says is there.
    #[error("{path}: the file ends inside {what}; it is truncated or corrupt (download it again)")]
    Truncated {
        /// The file.
        path: PathBuf,
        /// What was being read, and where.
        what: String,
    },
    /// A count or length is larger than the file could hold or than a fixed cap of this
    /// reader (see [`crate::limits`]).
    #[error(
        "{path}: {what} is {count}, over the limit of {limit} (what the rest of the file can hold, \
         or a fixed cap of mlmf); the file is corrupt"
    )]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// What was counted.
        what: String,
        /// The count or length found.
        count: u64,
        /// The largest value accepted there.
        limit: u64,
    },
    /// A string (a key, a value, a tensor name) is not UTF-8.
    #[error("{path}: {what} is not valid UTF-8")]
    NotUtf8 {
        /// The file.
        path: PathBuf,
        /// Which string, naming its key or tensor.
        what: String,
    },
    /// A metadata value has a type id that GGUF does not define.
    #[error("{path}: metadata key `{key}` has value type id {id}, which GGUF does not define (0 to 12)")]
    UnknownValueType {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// The type id found.
        id: u32,
    },
    /// The same metadata key appears twice.
    #[error("{path}: metadata key `{key}` appears twice")]
    DuplicateKey {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
    },
    /// A tensor's type is one mlmf does not compute with, or no ggml type at all.
    #[error("{path}: tensor `{tensor}` {}", type_hint(*.id))]
    UnknownTensorType {
        /// The file.
        path: PathBuf,
        /// The tensor.
        tensor: String,
        /// ggml's type id found.
        id: u32,
    },
    /// A tensor's name is empty.
    #[error("{path}: tensor #{index} {message}")]
    BadTensorName {
        /// The file.
        path: PathBuf,
        /// The tensor's position in the header.
        index: u64,
        /// What is wrong.
        message: String,
    },
    /// A tensor's dimensions are impossible for its type.
    #[error("{path}: tensor `{tensor}`: {message}")]
    BadShape {
        /// The file.
        path: PathBuf,
        /// The tensor.
        tensor: String,
        /// What is wrong.
        message: String,
    },
    /// A tensor's data offset is not a multiple of the file's alignment.
    #[error("{path}: tensor `{tensor}` starts at data offset {offset}, not a multiple of the alignment {alignment}")]
    Misaligned {
        /// The file.
        path: PathBuf,
        /// The tensor.
        tensor: String,
        /// Its offset from the start of the data section.
        offset: u64,
        /// The file's alignment.
        alignment: u64,
    },
    /// A tensor's data lies (partly) outside the file.
    #[error("{path}: tensor `{tensor}`: {message}")]
    OutOfBounds {
        /// The file.
        path: PathBuf,
        /// The tensor.
        tensor: String,
        /// Where its data is and where the file ends.
        message: String,
    },
    /// Two tensors share bytes of the data section.
    #[error("{path}: the data of tensors `{first}` and `{second}` overlap; the file is corrupt")]
    Overlap {
        /// The file.
        path: PathBuf,
        /// The tensor that starts first.
        first: String,
        /// The tensor that starts inside it.
        second: String,
    },
    /// The same tensor name appears twice in a file.
    #[error("{path}: tensor `{tensor}` appears twice")]
    DuplicateTensor {
        /// The file.
        path: PathBuf,
        /// The tensor.
        tensor: String,
    },
    /// A metadata value is missing, has the wrong type or an impossible value.
    #[error("{path}: metadata key `{key}`: {message}")]
    BadMetadata {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A split set is incomplete or its parts disagree.
    #[error("{path}: {message}")]
    Split {
        /// The part at fault (or the part that was opened).
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A directory holds no `.gguf` file.
    #[error("{dir}: no .gguf file in this directory")]
    NoGguf {
        /// The directory.
        dir: PathBuf,
    },
    /// A directory holds more than one model, and it is not clear which to open.
    #[error("{dir}: more than one GGUF model here ({}); name the file to open", .found.join(", "))]
    Ambiguous {
        /// The directory.
        dir: PathBuf,
        /// The models found: file names, a split set as its first part and its part count.
        found: Vec<String>,
    },
}

/// The first bytes of a file, printable and quoted.
fn show_magic(found: &[u8; 4]) -> String {
    format!("\"{}\"", found.escape_ascii())
}

/// Why a version is refused, with what to do about it.
fn version_hint(version: u32) -> String {
    match version {
        1 => "GGUF v1 is no longer supported (it used 32-bit counts); convert the model again with a \
              current llama.cpp"
            .to_string(),
        // A big-endian file's version 2 or 3 reads as 0x0200_0000 or 0x0300_0000 here.
        v if v & 0xFFFF == 0 && matches!(v.swap_bytes(), 2 | 3) => {
            format!("a big-endian GGUF v{} file; mlmf reads little-endian GGUF only", v.swap_bytes())
        }
        v => format!("GGUF version {v} is not supported (mlmf reads versions 2 and 3)"),
    }
}
