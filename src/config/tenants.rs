//! Tenants: who holds an inference key, and what that key may do. Each tenant has its own
//! key (in a file of its own, so the tenants' TOML holds no secret), the models it may use,
//! and its limits: requests per second, tokens per second (prompt and generated tokens
//! together), requests at once, and the highest priority its requests get. Tenants are
//! listed in the node's TOML (`[[tenants]]`) or in a tenants file (`tenants_file`, the same
//! `[[tenants]]` tables) that the node reads again every second and on SIGHUP.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// Its name: the `tenant` label of its metrics and the name in its errors (never its key).
    pub name: String,
    /// The file holding its key (at least 16 bytes, as every key).
    pub key_file: PathBuf,
    /// The models it may use; empty or absent means every model.
    #[serde(default)]
    pub models: Vec<String>,
    /// Requests per second (a token bucket holding `burst_s` seconds of them).
    #[serde(default)]
    pub requests_per_s: Option<f64>,
    /// Prompt and generated tokens per second, charged as requests use them; a request is
    /// refused while the tenant owes tokens.
    #[serde(default)]
    pub tokens_per_s: Option<f64>,
    /// Requests served at once.
    #[serde(default)]
    pub max_concurrent: Option<usize>,
    /// The highest priority its requests get (`high`, `normal`, `low`); one asking for more is
    /// served at this one.
    #[serde(default)]
    pub max_priority: Option<String>,
    /// Seconds of each rate a tenant may spend at once after being idle (default 1).
    #[serde(default)]
    pub burst_s: Option<f64>,
}

/// A tenants file: `[[tenants]]` tables.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantsFile {
    /// The tenants.
    #[serde(default)]
    pub tenants: Vec<TenantConfig>,
}
