//! Configuration as plain data: how one node runs ([`NodeConfig`], read from TOML and flags),
//! and its parts (health, consensus, balancing, alerts, requests, the compute backend). Nothing here
//! depends on another folder of the crate: the layers above turn these values into their own
//! actors and policies.

pub mod alerts;
pub mod autoscaling;
pub mod balancing;
pub mod batching;
pub mod cache;
pub mod consensus;
pub mod device;
pub mod error;
pub mod generation;
pub mod health;
pub mod models;
pub mod node_config;
pub mod telemetry;
pub mod tenants;

pub use alerts::{AlertConfig, SmtpConfig, SmtpTls};
pub use autoscaling::Autoscaling;
pub use balancing::{AffinityKey, BalancingConfig, BalancingStrategy};
pub use batching::BatchingConfig;
pub use cache::CacheConfig;
pub use consensus::ConsensusConfig;
pub use device::Backend;
pub use error::ConfigError;
pub use generation::GenerationConfig;
pub use health::HealthConfig;
pub use models::DeclaredModel;
pub use node_config::{NodeConfig, RequestConfig};
pub use telemetry::TelemetryConfig;
pub use tenants::{TenantConfig, TenantsFile};
