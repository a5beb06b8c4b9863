//! What a checkpoint is made of, part by part (embeddings, each block, head): tensor names,
//! parameter counts and bytes. Built from the headers alone, with the tensor names its family
//! gives (through the registry); the planner works on this.

use serde::Serialize;

use super::checkpoint::{Checkpoint, StoredDtype};
use super::config::ModelConfig;
use super::error::LoadError;
use super::registry;

/// Defined with the trait that gives them; re-exported under the path it always had.
pub use super::family::NamedShape;

/// One part of a model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Part {
    /// The tensors it reads.
    pub tensors: Vec<String>,
    /// Number of parameters.
    pub params: u64,
    /// Stored bytes.
    pub bytes: u64,
}

/// A model described part by part, with every tensor checked against the config.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelLayout {
    /// The config.
    pub config: ModelConfig,
    /// Token (and position) embeddings.
    pub embeddings: Part,
    /// One entry per block.
    pub layers: Vec<Part>,
    /// Final norm and LM head, or the pooler.
    pub head: Part,
}

impl ModelLayout {
    /// Lists each part's tensors and checks that every one exists with the shape the config
    /// implies: a checkpoint that does not fit its config fails here, before any weight
    /// is read.
    pub fn from_checkpoint(ckpt: &Checkpoint) -> Result<ModelLayout, LoadError> {
        let cfg = &ckpt.config;
        let family = registry::family(cfg.arch);
        let p = family.prefix(ckpt);
        let emb = family.embedding_tensors(cfg, p);
        let layers: Vec<Vec<NamedShape>> = (0..cfg.num_layers).map(|i| family.block_tensors(cfg, p, i)).collect();
        let head = family.head_tensors(ckpt, p);
        Ok(ModelLayout {
            config: cfg.clone(),
            embeddings: part(ckpt, emb)?,
            layers: layers.into_iter().map(|l| part(ckpt, l)).collect::<Result<_, _>>()?,
            head: part(ckpt, head)?,
        })
    }

    /// Bytes of everything.
    pub fn total_bytes(&self) -> u64 {
        self.embeddings.bytes + self.layers.iter().map(|l| l.bytes).sum::<u64>() + self.head.bytes
    }

    /// Parameters of everything (a tied LM head counted once).
    pub fn total_params(&self) -> u64 {
        self.embeddings.params + self.layers.iter().map(|l| l.params).sum::<u64>() + self.head_own_params()
    }

    /// Whether the head's LM matrix is the token embedding matrix (counted once).
    pub fn lm_head_tied(&self) -> bool {
        registry::family(self.config.arch).lm_head_tied(&self.config)
    }

    /// Parameters of the head that are not the (tied) embedding matrix.
    fn head_own_params(&self) -> u64 {
        if self.lm_head_tied() {
            self.head.params - (self.config.vocab_size * self.config.hidden_size) as u64
        } else {
            self.head.params
        }
    }
}

fn part(ckpt: &Checkpoint, tensors: Vec<NamedShape>) -> Result<Part, LoadError> {
    let mut params = 0u64;
    let mut bytes = 0u64;
    let mut names = Vec::with_capacity(tensors.len());
    for (name, shape) in tensors {
        let e = ckpt.tensor(&name)?;
        if e.shape != shape {
            return Err(LoadError::WrongShape {
                path: ckpt.files[e.file].path.clone(),
                tensor: name,
                found: e.shape.clone(),
                expected: shape,
            });
        }
        if let StoredDtype::Other(d) = e.dtype {
            return Err(LoadError::UnsupportedDtype {
                path: ckpt.files[e.file].path.clone(),
                tensor: name,
                dtype: d.to_string(),
            });
        }
        params += shape.iter().product::<usize>() as u64;
        bytes += e.bytes;
        names.push(name);
    }
    Ok(Part { tensors: names, params, bytes })
}
