//! [`AlertConfig`]: the alert rules' thresholds and the channels notifications go to
//! (`[alerts]` in a node's TOML; read by the coordinator's alert manager).

use serde::{Deserialize, Serialize};

/// SMTP delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// `host:port` of the SMTP server (plain SMTP; for a relay on the same host or network).
    pub server: String,
    /// Sender address.
    pub from: String,
    /// Recipients.
    pub to: Vec<String>,
}

/// Rules, thresholds and channels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertConfig {
    /// Webhooks receiving the JSON group.
    pub webhooks: Vec<String>,
    /// Slack-compatible webhooks receiving `{"text": ...}`.
    pub slack_webhooks: Vec<String>,
    /// Email.
    pub smtp: Option<SmtpConfig>,
    /// Alerts within this window go out together.
    pub group_ms: u64,
    /// Notifications per channel per minute.
    pub max_per_minute: usize,
    /// `error_rate` fires above this fraction of failed requests.
    pub error_rate: f64,
    /// `p99_latency` fires above this, milliseconds.
    pub p99_ms: f64,
    /// `memory` fires above this percentage of machine memory.
    pub memory_percent: f64,
    /// `node_flapping` fires when a node goes down this many times within `flap_window_ms`
    /// (0: never), and resolves once a whole window passes without it going down.
    pub flap_count: usize,
    /// The window for `flap_count`, milliseconds.
    pub flap_window_ms: u64,
}

impl Default for AlertConfig {
    fn default() -> Self {
        AlertConfig {
            webhooks: Vec::new(),
            slack_webhooks: Vec::new(),
            smtp: None,
            group_ms: 200,
            max_per_minute: 30,
            error_rate: 0.5,
            p99_ms: 5000.0,
            memory_percent: 95.0,
            flap_count: 3,
            flap_window_ms: 60_000,
        }
    }
}
