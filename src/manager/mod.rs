//! The deployment API of the seed, for an application that embeds mlmf: a
//! [`DistributedConfig`] (sharding, placement, balancing, fault tolerance, with the seed's
//! presets) and the [`SimpleDistributedManager`] that starts nodes in this process and serves
//! [`InferenceRequest`]s through the same HTTP API any client uses.

pub mod deployment;
pub mod error;
pub mod generation;
pub mod local;

pub use crate::generate::{GeneratedPiece, GenerationRequest};
pub use deployment::{
    DevicePlacementConfig, DistributedConfig, DistributedConfigBuilder, FaultToleranceConfig, LoadBalancingConfig,
};
pub use error::DeployError;
pub use local::{InferenceRequest, InferenceResponse, Priority, SimpleDistributedManager, TensorJson};
