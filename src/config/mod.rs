//! Configuration: a node's ([`NodeConfig`], TOML) and a deployment's ([`DistributedConfig`]
//! and its builder, the seed's Rust API).

pub mod deployment;
pub mod node;

pub use deployment::{
    DevicePlacementConfig, DistributedConfig, DistributedConfigBuilder, FaultToleranceConfig, LoadBalancingConfig,
};
pub use node::{ConfigError, HealthConfig, NodeConfig, RequestConfig};
