//! [`HealthConfig`]: heartbeats and failure detection (`[health]` in a node's TOML).

use serde::{Deserialize, Serialize};

/// Failure detection (phi accrual, as Akka's). The defaults are Akka's, as the design has
/// them (1 s heartbeats, 3 s acceptable pause, threshold 8: a dead node is Down after
/// 4-5 s); [`HealthConfig::fast`] halves the interval and the pause, so that a dead node is
/// Down within 3 s (2.2 s measured under full CPU load, with no false Down:
/// `benches/health.rs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// Interval between heartbeats.
    pub heartbeat_interval_ms: u64,
    /// Phi at which a node is declared down.
    pub phi_threshold: f64,
    /// Phi at which a node is suspect.
    pub phi_suspect: f64,
    /// A pause this long is still normal.
    pub acceptable_pause_ms: u64,
    /// Floor on the standard deviation of intervals.
    pub min_std_dev_ms: u64,
    /// How long a node stays down before its replicas are placed elsewhere (a node that
    /// comes back sooner causes no moves).
    pub replace_after_ms: u64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            heartbeat_interval_ms: 1000,
            phi_threshold: 8.0,
            phi_suspect: 3.0,
            acceptable_pause_ms: 3000,
            min_std_dev_ms: 100,
            replace_after_ms: 2000,
        }
    }
}

impl HealthConfig {
    /// Down within 3 s: heartbeats every 500 ms, 1.5 s of acceptable pause, threshold 8
    /// (`[health] heartbeat_interval_ms = 500` and `acceptable_pause_ms = 1500` in TOML).
    pub fn fast() -> HealthConfig {
        HealthConfig { heartbeat_interval_ms: 500, acceptable_pause_ms: 1500, ..HealthConfig::default() }
    }
}
