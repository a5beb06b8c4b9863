//! [`TelemetryConfig`]: where a node exports its tracing spans (`[telemetry]` in a node's
//! TOML). Export is off unless an OTLP endpoint is configured here or in the standard
//! `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` variables.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// OpenTelemetry export of one node's spans.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// The OTLP/HTTP collector, `http://host:4318` or `https://...` (spans go to
    /// `<endpoint>/v1/traces` as protobuf); absent: the `OTEL_EXPORTER_OTLP_*` variables
    /// decide, and without them nothing is exported.
    pub otlp_endpoint: Option<String>,
    /// A PEM file of the CA that signs an `https` collector's certificate (an operator's own
    /// CA); the Mozilla roots when absent.
    pub otlp_ca: Option<PathBuf>,
    /// `service.name` of the exported spans (`OTEL_SERVICE_NAME` wins when set).
    pub service_name: String,
    /// The share of new traces sampled, 0.0 to 1.0; a request that arrives with a
    /// `traceparent` follows its caller's sampling decision.
    pub sample_ratio: f64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig { otlp_endpoint: None, otlp_ca: None, service_name: "mlmf".into(), sample_ratio: 1.0 }
    }
}

impl TelemetryConfig {
    /// Why this config cannot be used, if it cannot.
    pub fn problem(&self) -> Option<(&'static str, String)> {
        if let Some(e) = &self.otlp_endpoint
            && !(e.starts_with("http://") || e.starts_with("https://"))
        {
            return Some(("telemetry.otlp_endpoint", format!("must start with http:// or https://, not {e:?}")));
        }
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            return Some(("telemetry.sample_ratio", "must be between 0.0 and 1.0".into()));
        }
        if self.service_name.trim().is_empty() {
            return Some(("telemetry.service_name", "must not be empty".into()));
        }
        None
    }
}
