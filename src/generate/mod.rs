//! Text generation as plain logic, no actors: a model's tokenizer and special tokens
//! ([`tokenizer`], or built from a GGUF file's metadata by [`gguf_vocab`]), the sampler, seeded
//! per request ([`sampler`]), text released token by token without splitting a character
//! ([`text_stream`]), and one generation's state and stop conditions ([`sequence`]). The node
//! that takes a request holds its [`Sequence`]; the stages only compute logits.

pub mod chat;
pub mod error;
pub mod gguf_metadata;
pub mod gguf_vocab;
pub mod json_file;
pub mod pooling;
pub mod request;
pub mod sampler;
pub mod sequence;
pub mod text_stream;
pub mod tokenizer;

pub use chat::{ChatMessage, render_chat};
pub use error::GenerateError;
pub use gguf_vocab::GgufVocab;
pub use pooling::{Pooling, PoolingMode};
pub use request::{GeneratedPiece, GenerationRequest};
pub use sampler::{Sampler, SamplingParams};
pub use sequence::{FinishReason, GenerationParams, Sequence, Step};
pub use text_stream::TextStream;
pub use tokenizer::TextTokenizer;
