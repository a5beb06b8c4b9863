//! Typed access to a `config.json` object: each getter takes the key's spellings (old and new
//! `transformers` names), uses the first that is present and not null, and every error names
//! the key and the file.

use std::path::Path;

use serde_json::{Map, Value};

use super::config::Act;
use super::error::LoadError;

/// A `config.json` object (or an object nested in one) with the path of its file, for errors.
#[derive(Debug, Clone, Copy)]
pub struct ConfigJson<'a> {
    obj: &'a Map<String, Value>,
    path: &'a Path,
}

impl<'a> ConfigJson<'a> {
    /// The object `obj` read from the file at `path`.
    pub fn new(obj: &'a Map<String, Value>, path: &'a Path) -> ConfigJson<'a> {
        ConfigJson { obj, path }
    }

    /// The file the object was read from.
    pub fn path(&self) -> &'a Path {
        self.path
    }

    /// A [`LoadError::Config`] about this file; `message` names the key.
    pub fn error(&self, message: String) -> LoadError {
        LoadError::config(self.path, message)
    }

    /// The raw value of `key`, `null` included.
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.obj.get(key)
    }

    /// The first present, non-null key of `keys`.
    pub fn find<'k>(&self, keys: &[&'k str]) -> Option<(&'k str, &'a Value)> {
        keys.iter().find_map(|k| match self.obj.get(*k) {
            None | Some(Value::Null) => None,
            Some(v) => Some((*k, v)),
        })
    }

    /// A non-negative integer, or `None` when no spelling is given.
    pub fn usize_opt(&self, keys: &[&str]) -> Result<Option<usize>, LoadError> {
        match self.find(keys) {
            None => Ok(None),
            Some((k, v)) => v
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| self.error(format!("{k} must be a non-negative integer, found {v}"))),
        }
    }

    /// A non-negative integer that must be given.
    pub fn usize(&self, keys: &[&str]) -> Result<usize, LoadError> {
        self.usize_opt(keys)?.ok_or_else(|| self.error(format!("missing key {}", keys.join(" or "))))
    }

    /// A number, or `default` when no spelling is given.
    pub fn f64_or(&self, keys: &[&str], default: f64) -> Result<f64, LoadError> {
        match self.find(keys) {
            None => Ok(default),
            Some((k, v)) => v.as_f64().ok_or_else(|| self.error(format!("{k} must be a number, found {v}"))),
        }
    }

    /// A boolean, or `default` when no spelling is given.
    pub fn bool_or(&self, keys: &[&str], default: bool) -> Result<bool, LoadError> {
        match self.find(keys) {
            None => Ok(default),
            Some((k, v)) => v.as_bool().ok_or_else(|| self.error(format!("{k} must be true or false, found {v}"))),
        }
    }

    /// An MLP activation by its `transformers` name, or `default` when no spelling is given.
    pub fn act(&self, keys: &[&str], default: Act) -> Result<Act, LoadError> {
        match self.find(keys) {
            None => Ok(default),
            Some((k, v)) => v.as_str().and_then(Act::parse).ok_or_else(|| {
                self.error(format!(
                    "{k} = {v} is not a supported activation (gelu, gelu_new, gelu_pytorch_tanh, relu, silu)"
                ))
            }),
        }
    }
}
