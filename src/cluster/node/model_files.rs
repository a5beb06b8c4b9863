//! What a request needs of a ready model besides its routes: its config, and the files of its
//! folder (tokenizer, pooling) read once per node from the path its registry entry names.

use std::path::PathBuf;
use std::sync::Arc;

use crate::generate::{Pooling, TextTokenizer};
use crate::model::ModelConfig;

use super::Node;
use crate::cluster::wire::ApiError;

/// The config of ready model `model`; 404 when there is none.
pub fn ready_model(node: &Node, model: &str) -> Result<ModelConfig, ApiError> {
    let view = node.view();
    let routes =
        view.model(model).ok_or_else(|| ApiError::new(404, "model_not_found", format!("no ready model {model:?}")))?;
    Ok(routes.config.clone())
}

/// The folder of `model` as its registry entry names it, when this node may read it.
fn model_dir(node: &Node, model: &str) -> Option<PathBuf> {
    let view = node.view();
    let path = view.registry.iter().find(|e| e.status.id == model).map(|e| PathBuf::from(&e.status.path))?;
    node.checkpoints.can_read(&path).then_some(path)
}

/// The tokenizer of `model` (`None` when its folder has none or this node cannot read it).
pub fn model_tokenizer(node: &Node, model: &str) -> Result<Option<Arc<TextTokenizer>>, ApiError> {
    match model_dir(node, model) {
        Some(dir) => node.tokenizers.get(&dir).map_err(|e| ApiError::new(500, "tokenizer", e.to_string())),
        None => Ok(None),
    }
}

/// The pooling of `model` (mean, unnormalised, when its folder says nothing).
pub fn model_pooling(node: &Node, model: &str) -> Result<Pooling, ApiError> {
    match model_dir(node, model) {
        Some(dir) => node.tokenizers.pooling(&dir).map_err(|e| ApiError::new(500, "pooling", e.to_string())),
        None => Ok(Pooling::default()),
    }
}
