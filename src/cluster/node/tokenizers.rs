//! [`TokenizerCache`]: each model's tokenizer and pooling, read once per node from the model
//! directory (the path the registry names) the first time a request needs them.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::generate::{GenerateError, Pooling, TextTokenizer};

/// Tokenizers by model directory (`None` remembers a directory without one), and poolings.
#[derive(Default)]
pub struct TokenizerCache(Mutex<HashMap<String, Option<Arc<TextTokenizer>>>>, Mutex<HashMap<String, Pooling>>);

impl TokenizerCache {
    /// The tokenizer of the model directory `dir`, loaded on first use.
    pub fn get(&self, dir: &Path) -> Result<Option<Arc<TextTokenizer>>, GenerateError> {
        let key = dir.to_string_lossy().into_owned();
        if let Some(t) = self.0.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Ok(t.clone());
        }
        let loaded = TextTokenizer::load(dir)?.map(Arc::new);
        self.0.lock().unwrap_or_else(|e| e.into_inner()).insert(key, loaded.clone());
        Ok(loaded)
    }

    /// The pooling of the model directory `dir` (its sentence-transformers files), read on
    /// first use.
    pub fn pooling(&self, dir: &Path) -> Result<Pooling, GenerateError> {
        let key = dir.to_string_lossy().into_owned();
        if let Some(p) = self.1.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Ok(*p);
        }
        let p = Pooling::load(dir)?;
        self.1.lock().unwrap_or_else(|e| e.into_inner()).insert(key, p);
        Ok(p)
    }
}
