//! [`DistributedConfig`]: how a deployment of nodes in this process is sharded, placed, balanced and kept alive, with
//! the seed's presets (`DevicePlacementConfig::gpu_optimized()`,
//! `LoadBalancingConfig::resource_based()`, `FaultToleranceConfig::high_availability()`).

use std::time::Duration;

use mlmf_actors::auth::ClusterKey;

use crate::plan::{
    DeviceKind, DevicePreference, PlacementRequest, PlacementStrategy, ReplicationMode, ShardingStrategy,
};

use crate::cluster::balancer::PickRoute;
use crate::config::{BalancingStrategy, ConfigError, HealthConfig, NodeConfig};

/// Where shards go.
#[derive(Debug, Clone, PartialEq)]
pub struct DevicePlacementConfig {
    /// How nodes are scored.
    pub strategy: PlacementStrategy,
    /// Device constraint.
    pub device: DevicePreference,
    /// Memory needed per weight byte (activations, workspace).
    pub memory_overhead: f64,
}

impl Default for DevicePlacementConfig {
    fn default() -> Self {
        DevicePlacementConfig {
            strategy: PlacementStrategy::MemoryBased,
            device: DevicePreference::Any,
            memory_overhead: 1.0,
        }
    }
}

impl DevicePlacementConfig {
    /// GPU nodes first (CPU nodes when no GPU has room), fastest nodes filled first.
    pub fn gpu_optimized() -> Self {
        DevicePlacementConfig {
            strategy: PlacementStrategy::ComputeBased,
            device: DevicePreference::Prefer(DeviceKind::Gpu),
            memory_overhead: 1.2,
        }
    }

    /// Bytes spread evenly over all nodes.
    pub fn memory_optimized() -> Self {
        DevicePlacementConfig::default()
    }

    /// The placement request for `replication` replicas.
    pub fn request(&self, replication: usize) -> PlacementRequest {
        PlacementRequest {
            strategy: self.strategy,
            replication,
            device: self.device,
            memory_overhead: self.memory_overhead,
        }
    }
}

/// Load balancing.
#[derive(Clone, Default)]
pub struct LoadBalancingConfig {
    /// The strategy.
    pub strategy: BalancingStrategy,
    /// A user's own strategy: an actor answering `PickRoute`, used instead of `strategy`.
    pub custom: Option<actix::Recipient<PickRoute>>,
}

impl std::fmt::Debug for LoadBalancingConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadBalancingConfig")
            .field("strategy", &self.strategy)
            .field("custom", &self.custom.as_ref().map(|_| "Recipient<PickRoute>"))
            .finish()
    }
}

impl PartialEq for LoadBalancingConfig {
    fn eq(&self, other: &Self) -> bool {
        self.strategy == other.strategy && self.custom.is_none() && other.custom.is_none()
    }
}

impl LoadBalancingConfig {
    /// Power of two choices over peak-EWMA latency × outstanding requests (the default).
    pub fn power_of_two_choices() -> Self {
        LoadBalancingConfig { strategy: BalancingStrategy::PowerOfTwoChoices, custom: None }
    }

    /// Fewest outstanding requests.
    pub fn least_connections() -> Self {
        LoadBalancingConfig { strategy: BalancingStrategy::LeastConnections, custom: None }
    }

    /// Round-robin over replicas.
    pub fn round_robin() -> Self {
        LoadBalancingConfig { strategy: BalancingStrategy::RoundRobin, custom: None }
    }

    /// The replica on the node with the lowest CPU use in its latest heartbeat.
    pub fn resource_based() -> Self {
        LoadBalancingConfig { strategy: BalancingStrategy::ResourceBased, custom: None }
    }
}

/// Replication, retries and failure detection.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultToleranceConfig {
    /// Replicas per shard.
    pub replication: usize,
    /// When a replicated model counts as ready.
    pub replication_mode: ReplicationMode,
    /// Routes tried per request.
    pub max_attempts: usize,
    /// Deadline of one attempt.
    pub attempt_timeout: Duration,
    /// Failure detection.
    pub health: HealthConfig,
}

impl Default for FaultToleranceConfig {
    fn default() -> Self {
        FaultToleranceConfig {
            replication: 1,
            replication_mode: Default::default(),
            max_attempts: 3,
            attempt_timeout: Duration::from_secs(10),
            health: HealthConfig::default(),
        }
    }
}

impl FaultToleranceConfig {
    /// Two replicas of every shard, three routes per request, short attempts.
    pub fn high_availability() -> Self {
        FaultToleranceConfig {
            replication: 2,
            replication_mode: Default::default(),
            max_attempts: 3,
            attempt_timeout: Duration::from_secs(5),
            health: HealthConfig::default(),
        }
    }
}

/// A deployment's configuration.
#[derive(Debug, Clone)]
pub struct DistributedConfig {
    /// How the model is cut.
    pub sharding: ShardingStrategy,
    /// Where shards go.
    pub placement: DevicePlacementConfig,
    /// Balancing.
    pub balancing: LoadBalancingConfig,
    /// Fault tolerance.
    pub fault_tolerance: FaultToleranceConfig,
    /// Cluster key for the nodes' links and HTTP API.
    pub cluster_key: Option<ClusterKey>,
    /// The template of every node's config (listen, join and the fault-tolerance settings
    /// are set per node by the deployment).
    pub node: NodeConfig,
}

impl Default for DistributedConfig {
    fn default() -> Self {
        DistributedConfig {
            sharding: ShardingStrategy::NoSharding,
            placement: DevicePlacementConfig::default(),
            balancing: LoadBalancingConfig::default(),
            fault_tolerance: FaultToleranceConfig::default(),
            cluster_key: None,
            node: NodeConfig::default(),
        }
    }
}

/// Builds a [`DistributedConfig`].
///
/// ```
/// use mlmf::manager::*;
/// use mlmf::plan::ShardingStrategy;
/// let cfg = DistributedConfigBuilder::new()
///     .sharding(ShardingStrategy::PipelineSharding { num_stages: 3 })
///     .device_placement(DevicePlacementConfig::gpu_optimized())
///     .load_balancing(LoadBalancingConfig::resource_based())
///     .fault_tolerance(FaultToleranceConfig::high_availability())
///     .build()
///     .unwrap();
/// assert_eq!(cfg.fault_tolerance.replication, 2);
/// ```
#[derive(Debug, Clone, Default)]
pub struct DistributedConfigBuilder {
    cfg: DistributedConfig,
}

impl DistributedConfigBuilder {
    /// Defaults: no sharding, memory-based placement, round-robin, one replica.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sharding strategy.
    pub fn sharding(mut self, s: ShardingStrategy) -> Self {
        self.cfg.sharding = s;
        self
    }

    /// Placement.
    pub fn device_placement(mut self, p: DevicePlacementConfig) -> Self {
        self.cfg.placement = p;
        self
    }

    /// Balancing.
    pub fn load_balancing(mut self, b: LoadBalancingConfig) -> Self {
        self.cfg.balancing = b;
        self
    }

    /// Fault tolerance.
    pub fn fault_tolerance(mut self, f: FaultToleranceConfig) -> Self {
        self.cfg.fault_tolerance = f;
        self
    }

    /// Cluster key (at least 16 bytes).
    pub fn cluster_key(mut self, key: ClusterKey) -> Self {
        self.cfg.cluster_key = Some(key);
        self
    }

    /// The template of every node's config (threads per shard, HTTP workers, limits, TLS).
    pub fn node_config(mut self, node: NodeConfig) -> Self {
        self.cfg.node = node;
        self
    }

    /// A user's own balancing strategy: an actor answering `PickRoute`.
    pub fn custom_balancer(mut self, balancer: actix::Recipient<PickRoute>) -> Self {
        self.cfg.balancing.custom = Some(balancer);
        self
    }

    /// Checks and returns the config.
    pub fn build(self) -> Result<DistributedConfig, ConfigError> {
        let f = &self.cfg.fault_tolerance;
        if f.replication == 0 || f.replication > 16 {
            return Err(ConfigError::Invalid { key: "fault_tolerance.replication", message: "must be 1..=16".into() });
        }
        if f.max_attempts == 0 || f.max_attempts > 16 {
            return Err(ConfigError::Invalid { key: "fault_tolerance.max_attempts", message: "must be 1..=16".into() });
        }
        if !(self.cfg.placement.memory_overhead >= 1.0 && self.cfg.placement.memory_overhead.is_finite()) {
            return Err(ConfigError::Invalid {
                key: "placement.memory_overhead",
                message: "must be at least 1.0".into(),
            });
        }
        Ok(self.cfg)
    }
}
