//! Export of a process's tracing spans to an OpenTelemetry collector over OTLP/HTTP
//! (protobuf), when an endpoint is configured ([`TelemetryConfig`] or the standard
//! `OTEL_EXPORTER_OTLP_*` variables). Each span is exported with the W3C trace it belongs
//! to ([`crate::cluster::trace`]), so one request's spans on every node form one trace in
//! Jaeger, Tempo or any OTLP backend. Spans leave in batches from a thread of their own;
//! a collector that is down costs dropped spans, never a stalled request.

use std::sync::Arc;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};

use crate::config::TelemetryConfig;

/// Why span export could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The collector's CA file could not be read or holds no certificate.
    #[error("telemetry.otlp_ca {path}: {message}")]
    Ca {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// The OTLP exporter refused its configuration (an endpoint that is not a URL).
    #[error("OTLP exporter: {0}")]
    Exporter(String),
}

/// Span export of this process; flushes what is left when dropped.
#[derive(Debug)]
pub struct Telemetry {
    provider: SdkTracerProvider,
    endpoint: String,
}

impl Telemetry {
    /// The exporter `cfg` (or the environment) asks for, with `instance` as the
    /// `service.instance.id` of every span (the node id); `None` when no endpoint is set.
    pub fn start(cfg: &TelemetryConfig, instance: &str) -> Result<Option<Telemetry>, TelemetryError> {
        let Some(endpoint) = traces_endpoint(cfg) else { return Ok(None) };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(UreqClient(agent(cfg)?))
            .with_endpoint(endpoint.clone())
            .with_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
        let mut resource = Resource::builder().with_attributes([
            KeyValue::new("service.instance.id", instance.to_string()),
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
        ]);
        if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
            resource = resource.with_service_name(cfg.service_name.clone());
        }
        let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(cfg.sample_ratio)));
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .with_sampler(sampler)
            .build();
        Ok(Some(Telemetry { provider, endpoint }))
    }

    /// The `tracing` layer that turns spans into exported OpenTelemetry spans.
    pub fn layer<S>(&self) -> tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::SdkTracer>
    where
        S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    {
        tracing_opentelemetry::layer().with_tracer(self.provider.tracer("mlmf"))
    }

    /// Where spans go (`.../v1/traces`).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        // Sends the spans still batched; a collector that is gone costs the timeout at most.
        let _ = self.provider.shutdown_with_timeout(Duration::from_secs(5));
    }
}

/// `<endpoint>/v1/traces` of the config, else `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as it is,
/// else `OTEL_EXPORTER_OTLP_ENDPOINT` + `/v1/traces` (the OTLP specification's order).
fn traces_endpoint(cfg: &TelemetryConfig) -> Option<String> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let base = |e: &str| format!("{}/v1/traces", e.trim().trim_end_matches('/'));
    match &cfg.otlp_endpoint {
        Some(e) => Some(base(e)),
        None => {
            var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| var("OTEL_EXPORTER_OTLP_ENDPOINT").map(|e| base(&e)))
        }
    }
}

/// A blocking HTTP agent for the exporter's thread: statuses are answers (the exporter
/// reads them to decide on retries), the whole exchange bounded in time.
fn agent(cfg: &TelemetryConfig) -> Result<ureq::Agent, TelemetryError> {
    let mut config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .max_redirects(0);
    if let Some(path) = &cfg.otlp_ca {
        let bad = |message: String| TelemetryError::Ca { path: path.display().to_string(), message };
        let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        let certs: Vec<ureq::tls::Certificate<'static>> = ureq::tls::parse_pem(&pem)
            .filter_map(|item| match item {
                Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                _ => None,
            })
            .collect();
        if certs.is_empty() {
            return Err(bad("no PEM certificate in it".into()));
        }
        let roots = ureq::tls::RootCerts::Specific(Arc::new(certs));
        config = config.tls_config(ureq::tls::TlsConfig::builder().root_certs(roots).build());
    }
    Ok(config.build().into())
}

/// [`HttpClient`] over ureq (the exporter runs on a thread of its own, where blocking is
/// what it expects).
#[derive(Debug)]
struct UreqClient(ureq::Agent);

/// The most of a collector's answer read (it is a short protobuf or JSON status).
const MAX_ANSWER_BYTES: u64 = 1 << 20;

#[async_trait::async_trait]
impl HttpClient for UreqClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let (parts, body) = request.into_parts();
        let answer = self.0.run(Request::from_parts(parts, body.to_vec()))?;
        let (parts, body) = answer.into_parts();
        let bytes = body.into_with_config().limit(MAX_ANSWER_BYTES).read_to_vec()?;
        Ok(Response::from_parts(parts, Bytes::from(bytes)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_gains_the_traces_path_once() {
        let cfg = |e: &str| TelemetryConfig { otlp_endpoint: Some(e.into()), ..TelemetryConfig::default() };
        assert_eq!(traces_endpoint(&cfg("http://127.0.0.1:4318")).unwrap(), "http://127.0.0.1:4318/v1/traces");
        assert_eq!(traces_endpoint(&cfg("http://127.0.0.1:4318/")).unwrap(), "http://127.0.0.1:4318/v1/traces");
    }

    #[test]
    fn a_ca_file_without_a_certificate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("ca.pem");
        std::fs::write(&f, "not a certificate").unwrap();
        let cfg = TelemetryConfig { otlp_ca: Some(f), ..TelemetryConfig::default() };
        let e = agent(&cfg).unwrap_err().to_string();
        assert!(e.contains("ca.pem") && e.contains("no PEM certificate"), "{e}");
    }
}
