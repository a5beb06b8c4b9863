//! What an architecture provides, as one trait: [`Family`]. Everything that differs between
//! GPT-2, LLaMA and BERT is a method here, so that what is common (config detection, the
//! layout of a checkpoint, the stage loader, the per-request checks) is written once, above
//! the families, and reaches a family through the registry (`registry.rs`).
//!
//! A family's file imports this trait and the building blocks below it (`config.rs`,
//! `config_json.rs`, `checkpoint.rs`, `weights.rs`, `ops.rs`, `parts.rs`, `context.rs`,
//! `input.rs`, `spec.rs`), never `stage.rs`, `layout.rs`, `request.rs`, `open.rs` or the
//! registry: those import the families, so the model files form no cycle. What a new family
//! takes is said in `registry.rs`.

use super::checkpoint::{Checkpoint, RowOrder};
use super::config::{Architecture, ModelConfig};
use super::config_json::ConfigJson;
use super::error::LoadError;
use super::gguf_meta::GgufMeta;
use super::parts::{Embeddings, Head, TransformerBlock};
use super::spec::TensorSlice;
use super::weights::WeightReader;

/// A tensor name with the shape the config implies.
pub type NamedShape = (String, Vec<usize>);

/// One model family: how to recognise, describe and load its checkpoints.
///
/// Implemented by a unit struct per family (`gpt2::Gpt2`, ...); the registry holds them as
/// `&'static dyn Family`.
pub trait Family: Send + Sync {
    /// The [`Architecture`] its configs carry.
    fn arch(&self) -> Architecture;

    /// Its name: how [`Architecture`] displays, and how it serialises (`"gpt2"`).
    fn name(&self) -> &'static str;

    /// The `model_type` values of `config.json` that name it.
    fn model_types(&self) -> &'static [&'static str];

    /// Prefixes of the first `architectures` class name that name it, for configs without a
    /// `model_type` (`"GPT2"` for `GPT2LMHeadModel`).
    fn architecture_prefixes(&self) -> &'static [&'static str];

    /// Reads its config out of `config.json`, with its own spellings and defaults. The result
    /// is checked afterwards (`ModelConfig::validate`), with the two rules below.
    fn read_config(&self, json: &ConfigJson) -> Result<ModelConfig, LoadError>;

    /// Whether its head width is `hidden_size / num_heads`, so that the heads must divide the
    /// hidden size (GPT-2, BERT); LLaMA reads `head_dim` on its own.
    fn heads_divide_hidden(&self) -> bool;

    /// Whether it embeds token types (BERT): then `type_vocab_size` must be at least 1, and
    /// only then may an input carry `token_type_ids`.
    fn token_types(&self) -> bool;

    /// Whether a query attends only to itself and earlier positions (decoders), rather than
    /// to the whole sequence (encoders).
    fn causal(&self) -> bool;

    /// Whether the head's LM matrix is the token embedding matrix, so that a model's
    /// parameters count it once.
    fn lm_head_tied(&self, cfg: &ModelConfig) -> bool;

    /// The name prefix of the checkpoint's tensors (`transformer.` for `GPT2LMHeadModel`),
    /// empty for a bare model.
    fn prefix(&self, ckpt: &Checkpoint) -> &'static str;

    /// Full names (under `prefix`) and shapes of the embedding tensors.
    fn embedding_tensors(&self, cfg: &ModelConfig, prefix: &str) -> Vec<NamedShape>;

    /// Full names and shapes of block `i`'s tensors.
    fn block_tensors(&self, cfg: &ModelConfig, prefix: &str, i: usize) -> Vec<NamedShape>;

    /// Full names and shapes of the head's tensors. The checkpoint is consulted for optional
    /// parts (BERT's pooler).
    fn head_tensors(&self, ckpt: &Checkpoint, prefix: &str) -> Vec<NamedShape>;

    /// Loads the embeddings; `r` reads under the checkpoint's prefix.
    fn load_embeddings(&self, r: &WeightReader, cfg: &ModelConfig) -> Result<Box<dyn Embeddings>, LoadError>;

    /// Loads block `i`, whole or one tensor-parallel slice of it.
    fn load_block(
        &self,
        r: &WeightReader,
        cfg: &ModelConfig,
        i: usize,
        slice: TensorSlice,
    ) -> Result<Box<dyn TransformerBlock>, LoadError>;

    /// Loads the head.
    fn load_head(&self, r: &WeightReader, cfg: &ModelConfig) -> Result<Box<dyn Head>, LoadError>;

    /// The `general.architecture` values of the GGUF files it reads; none by default.
    fn gguf_architectures(&self) -> &'static [&'static str] {
        &[]
    }

    /// Reads its config out of a GGUF file's metadata (llama.cpp's keys). Checked afterwards
    /// as [`Family::read_config`]'s is.
    fn read_gguf_config(&self, meta: &GgufMeta) -> Result<ModelConfig, LoadError> {
        Err(meta.error(format!("{} models are not read from GGUF files", self.name())))
    }

    /// The full `transformers` name of the GGUF tensor `name` and the order of its rows in
    /// the file; `None` for a tensor the family does not use (it stays listed by its own name).
    fn gguf_tensor(&self, _cfg: &ModelConfig, _name: &str) -> Option<(String, RowOrder)> {
        None
    }
}
