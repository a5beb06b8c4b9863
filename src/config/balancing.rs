//! [`BalancingConfig`]: how a node's balancers choose a route (`[balancing]` in a node's TOML):
//! the [`BalancingStrategy`], session affinity and its [`AffinityKey`], circuit breakers.

use serde::{Deserialize, Serialize};

/// How a replica is chosen among the live ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BalancingStrategy {
    /// Each replica in turn.
    RoundRobin,
    /// Fewest requests outstanding from this balancer.
    LeastConnections,
    /// At random in proportion to each node's declared compute.
    Weighted,
    /// Lowest CPU use reported by heartbeats (ties: fewest outstanding).
    ResourceBased,
    /// Two at random, the one with the lower peak-EWMA latency × (outstanding + 1).
    #[default]
    PowerOfTwoChoices,
}

/// What requests are kept together by affinity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AffinityKey {
    /// The request's `session_id` (requests without one are balanced freely).
    #[default]
    Session,
    /// The client's IP address.
    ClientIp,
    /// The model id (every request of a model on the same replicas while they live).
    Model,
}

/// How a balancer chooses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BalancingConfig {
    /// The strategy.
    pub strategy: BalancingStrategy,
    /// Route requests with the same affinity key to the same replicas (rendezvous hashing).
    pub session_affinity: bool,
    /// What the affinity key is: the request's `session_id`, the client's IP address, or
    /// the model id.
    pub affinity_key: AffinityKey,
    /// Consecutive failures that open a node's circuit breaker.
    pub breaker_threshold: u32,
    /// How long an open breaker keeps a node out, milliseconds.
    pub breaker_open_ms: u64,
}

impl Default for BalancingConfig {
    fn default() -> Self {
        BalancingConfig {
            strategy: BalancingStrategy::default(),
            session_affinity: true,
            affinity_key: AffinityKey::Session,
            breaker_threshold: 5,
            breaker_open_ms: 5000,
        }
    }
}
