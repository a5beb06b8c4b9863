//! A model's replica autoscaling (`"autoscaling"` of `POST /v1/models`, or of a model the
//! node's TOML declares), with Ray Serve's names; the policy that applies it is
//! [`crate::plan::autoscale`]'s.

use serde::{Deserialize, Serialize};

/// A model's autoscaling (`"autoscaling"` of `POST /v1/models`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Autoscaling {
    /// Fewest replicas per shard.
    pub min_replicas: usize,
    /// Most replicas per shard.
    pub max_replicas: usize,
    /// Requests in flight or queued per replica to aim for.
    #[serde(default = "two")]
    pub target_ongoing_requests: f64,
    /// Seconds a shard must want more replicas before one is added.
    #[serde(default = "upscale_delay")]
    pub upscale_delay_s: f64,
    /// Seconds a shard must want fewer replicas before one is removed.
    #[serde(default = "downscale_delay")]
    pub downscale_delay_s: f64,
    /// Seconds of load samples averaged into the figure the decision is made on.
    #[serde(default = "look_back")]
    pub look_back_period_s: f64,
    /// Tokens per second per replica to aim for (every token through the shard: prompts'
    /// and generated ones). When set, a shard gets the replicas its tokens/s need if that is
    /// more than its requests need; absent, requests alone decide.
    #[serde(default)]
    pub target_tokens_per_s: Option<f64>,
}

fn two() -> f64 {
    2.0
}

fn upscale_delay() -> f64 {
    30.0
}

fn downscale_delay() -> f64 {
    600.0
}

fn look_back() -> f64 {
    30.0
}

impl Autoscaling {
    /// Refuses bounds that cannot hold (`min_replicas` at least 1 and at most
    /// `max_replicas`, at most 64; a positive target; delays of 0 to a day).
    pub fn validate(&self) -> Result<(), String> {
        if self.min_replicas == 0 || self.min_replicas > self.max_replicas || self.max_replicas > 64 {
            return Err(format!(
                "autoscaling: need 1 <= min_replicas <= max_replicas <= 64, got {} and {}",
                self.min_replicas, self.max_replicas
            ));
        }
        if !(self.target_ongoing_requests.is_finite() && self.target_ongoing_requests > 0.0) {
            return Err(format!(
                "autoscaling: target_ongoing_requests must be positive, got {}",
                self.target_ongoing_requests
            ));
        }
        if let Some(t) = self.target_tokens_per_s
            && !(t.is_finite() && t > 0.0)
        {
            return Err(format!("autoscaling: target_tokens_per_s must be positive, got {t}"));
        }
        let delays = [
            ("upscale_delay_s", self.upscale_delay_s),
            ("downscale_delay_s", self.downscale_delay_s),
            ("look_back_period_s", self.look_back_period_s),
        ];
        for (what, d) in delays {
            if !(d.is_finite() && (0.0..=86_400.0).contains(&d)) {
                return Err(format!("autoscaling: {what} must be 0 to 86400 seconds, got {d}"));
            }
        }
        Ok(())
    }
}
