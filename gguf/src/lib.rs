//! GGUF files as llama.cpp writes them (v2 and v3): the header, metadata of every value
//! type, tensor infos and alignment, and models split over several files.
//!
//! Only headers are read; tensor data stays on disk for the caller to memory-map. Every
//! count, length, offset, shape and type is checked against the file before anything is
//! allocated (and against the caps in [`limits`]), and a bad file is a [`GgufError`] naming
//! the file and, where there is one, the tensor or key. No input makes the reader panic; a
//! property test feeds it mutated and random files.
//!
//! ```no_run
//! use mlmf_gguf::GgufModel;
//! let model = GgufModel::open("SmolLM2-135M-Instruct.Q4_1.gguf".as_ref())?;
//! assert_eq!(model.architecture()?, "llama");
//! let embd = &model.tensors["token_embd.weight"];
//! println!("{:?} {} at byte {} of {}", embd.dims, embd.ty, embd.offset, model.files[embd.file].path.display());
//! # Ok::<(), mlmf_gguf::GgufError>(())
//! ```
//!
//! Code map: `file` parses one header with `input` (bounded reads), `metadata` (key-value
//! section) and `tensor` (tensor infos); `getters` reads typed values; `model` and `split`
//! assemble a model from a file, a split set or a directory; `writer` writes files for tests
//! and tools.

#![warn(missing_docs)]

mod error;
mod file;
mod getters;
mod input;
pub mod limits;
mod metadata;
mod model;
mod split;
mod tensor;
mod value;
mod writer;

pub use error::GgufError;
pub use file::{ALIGNMENT_KEY, DEFAULT_ALIGNMENT, GgufFile};
pub use model::{GgufModel, is_gguf};
pub use split::{SPLIT_COUNT, SPLIT_NO, SPLIT_TENSORS_COUNT};
pub use tensor::{TensorInfo, ggml_type_name};
pub use value::{MetaValue, ValueType};
pub use writer::GgufWriter;

#[cfg(test)]
mod testing;
