//! Models a node's TOML declares (`[[models]]`): whichever node coordinates loads each one
//! the registry lacks, so a cluster started from the same TOML everywhere serves them with
//! no `POST /v1/models`. A model already in the registry (loaded, or loaded by hand and kept)
//! is left as it is.

use serde::{Deserialize, Serialize};

use super::autoscaling::Autoscaling;

/// One declared model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeclaredModel {
    /// Model id.
    pub id: String,
    /// Absolute path of the model directory.
    pub path: String,
    /// Strategy (`none`, `layer:K`, `pipeline:S`, `tensor:D`).
    #[serde(default = "none")]
    pub strategy: String,
    /// Replicas per shard (brought within `autoscaling`'s bounds when it is given).
    #[serde(default = "one")]
    pub replication: usize,
    /// Replicas that follow the load.
    #[serde(default)]
    pub autoscaling: Option<Autoscaling>,
}

fn none() -> String {
    "none".into()
}

fn one() -> usize {
    1
}
