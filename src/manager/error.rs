//! [`DeployError`]: why deploying nodes in this process, or asking them, failed.

use crate::client::ClientError;

/// Why a deployment failed.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// An address is not a loopback `host:port` (in-process nodes listen on loopback only).
    #[error("address {0:?}: in-process nodes listen on 127.0.0.1 only; start other machines with `mlmf node`")]
    NotLoopback(String),
    /// A node did not start.
    #[error("node {addr}: {message}")]
    Node {
        /// Its address.
        addr: String,
        /// Why.
        message: String,
    },
    /// The model path.
    #[error("{path}: {message}")]
    Path {
        /// The path.
        path: String,
        /// Why.
        message: String,
    },
    /// The cluster answered with an error.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The configuration.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}
