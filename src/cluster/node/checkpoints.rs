//! [`CheckpointCache`]: the model directories this node may read (its `model_roots`), and
//! each checkpoint it reads mapped once, shared by every shard replica loaded from it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::model::{Checkpoint, MappedCheckpoint};

/// Mapped checkpoints by directory, and the rule for which directories may be read.
pub struct CheckpointCache {
    node: String,
    roots: Vec<PathBuf>,
    mapped: Mutex<HashMap<PathBuf, Arc<MappedCheckpoint>>>,
}

impl CheckpointCache {
    /// A cache for node `node`, reading only under `roots` (anywhere when empty).
    pub fn new(node: &str, roots: Vec<PathBuf>) -> CheckpointCache {
        CheckpointCache { node: node.to_string(), roots, mapped: Mutex::new(HashMap::new()) }
    }

    /// Whether this node may and can read the model at `path`: a `transformers` folder with
    /// its `config.json`, or a GGUF model (a file, or a folder holding one).
    pub fn can_read(&self, path: &Path) -> bool {
        let Ok(real) = path.canonicalize() else { return false };
        let allowed =
            self.roots.is_empty() || self.roots.iter().any(|r| r.canonicalize().is_ok_and(|r| real.starts_with(r)));
        allowed && (real.join("config.json").is_file() || crate::model::is_gguf_model(&real))
    }

    /// The mapped checkpoint at `path`, opened once per node.
    pub fn open(&self, path: &Path) -> Result<Arc<MappedCheckpoint>, String> {
        if !self.can_read(path) {
            return Err(format!("node {} cannot read {}", self.node, path.display()));
        }
        let key = path.canonicalize().map_err(|e| format!("{}: {e}", path.display()))?;
        if let Some(m) = self.mapped.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Ok(Arc::clone(m));
        }
        let ckpt = Arc::new(Checkpoint::open(&key).map_err(|e| e.to_string())?);
        let mapped = Arc::new(ckpt.map().map_err(|e| e.to_string())?);
        self.mapped.lock().unwrap_or_else(|e| e.into_inner()).insert(key, Arc::clone(&mapped));
        Ok(mapped)
    }

    /// Forgets every mapping once no shard replica is loaded (`live_shards` is 0).
    pub fn release_unused(&self, live_shards: usize) {
        if live_shards == 0 {
            self.mapped.lock().unwrap_or_else(|e| e.into_inner()).clear();
        }
    }
}
