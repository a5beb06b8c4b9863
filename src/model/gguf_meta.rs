//! Typed access to a GGUF file's model metadata, as [`ConfigJson`](super::config_json) is to a
//! `config.json`: keys are read under the file's architecture (`llama.block_count`), and every
//! error names the key and the file.

use std::path::Path;

use mlmf_gguf::{GgufModel, TensorInfo};

use super::error::LoadError;

/// A GGUF model's metadata read under its `general.architecture`.
#[derive(Debug, Clone, Copy)]
pub struct GgufMeta<'a> {
    model: &'a GgufModel,
    arch: &'a str,
}

impl<'a> GgufMeta<'a> {
    /// The metadata of `model`, whose architecture is `arch`.
    pub fn new(model: &'a GgufModel, arch: &'a str) -> GgufMeta<'a> {
        GgufMeta { model, arch }
    }

    /// The architecture keys are read under.
    pub fn arch(&self) -> &'a str {
        self.arch
    }

    /// The first file of the model.
    pub fn path(&self) -> &'a Path {
        self.model.path()
    }

    /// The model itself (tensors, metadata outside the architecture's keys).
    pub fn model(&self) -> &'a GgufModel {
        self.model
    }

    /// A tensor's header by its GGUF name.
    pub fn tensor(&self, name: &str) -> Option<&'a TensorInfo> {
        self.model.tensors.get(name)
    }

    fn key(&self, suffix: &str) -> String {
        format!("{}.{suffix}", self.arch)
    }

    /// A [`LoadError::Config`] about this file; `message` names the key.
    pub fn error(&self, message: String) -> LoadError {
        LoadError::config(self.path(), message)
    }

    /// `{arch}.{suffix}` as a non-negative integer, `None` when absent.
    pub fn usize_opt(&self, suffix: &str) -> Result<Option<usize>, LoadError> {
        let key = self.key(suffix);
        match self.model.get_u64(&key)? {
            None => Ok(None),
            Some(v) => usize::try_from(v).map(Some).map_err(|_| self.error(format!("{key} = {v} is too large"))),
        }
    }

    /// `{arch}.{suffix}` as a non-negative integer that must be given.
    pub fn usize(&self, suffix: &str) -> Result<usize, LoadError> {
        let key = self.key(suffix);
        self.usize_opt(suffix)?.ok_or_else(|| self.error(format!("missing key {key}")))
    }

    /// `{arch}.{suffix}` as a number, `default` when absent.
    pub fn f64_or(&self, suffix: &str, default: f64) -> Result<f64, LoadError> {
        Ok(self.model.get_f64(&self.key(suffix))?.unwrap_or(default))
    }

    /// `{arch}.{suffix}` as a string, `None` when absent.
    pub fn str_opt(&self, suffix: &str) -> Result<Option<&'a str>, LoadError> {
        Ok(self.model.get_str(&self.key(suffix))?)
    }
}
