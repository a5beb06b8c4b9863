//! Counters and latency histograms of one node, rendered as Prometheus text.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds of the latency buckets, seconds.
pub const BUCKETS: [f64; 14] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// One histogram.
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    /// The upper bound (ms) of the bucket holding quantile `q` (0 when empty).
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let want = (self.count as f64 * q).ceil() as u64;
        BUCKETS.iter().zip(self.counts).find(|(_, c)| *c >= want).map(|(b, _)| b * 1000.0).unwrap_or(f64::INFINITY)
    }

    /// Observations.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Records one observation.
    pub fn observe(&mut self, seconds: f64) {
        for (i, b) in BUCKETS.iter().enumerate() {
            if seconds <= *b {
                self.counts[i] += 1;
            }
        }
        self.count += 1;
        self.sum += seconds;
    }
}

/// A node's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Inference requests by `(model, HTTP status)`.
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    /// Latency of successful inference requests, by model.
    latency: Mutex<BTreeMap<String, Histogram>>,
    /// Bytes sent to peers.
    pub bytes_sent: AtomicU64,
    /// Bytes received from peers (answers).
    pub bytes_received: AtomicU64,
    /// Attempts retried on another route.
    pub retries: AtomicU64,
    /// Stages run on this node.
    pub stages: AtomicU64,
    /// Inference requests answered with a 5xx.
    pub errors: AtomicU64,
    /// Tokens generated for the sequences this node holds.
    pub generated_tokens: AtomicU64,
    /// Prompt chunks prefilled for the sequences this node holds (prompts longer than
    /// `[batching] prefill_chunk_tokens`).
    pub prefill_chunks: AtomicU64,
    /// Time to first token of the sequences this node held, by model.
    ttft: Mutex<BTreeMap<String, Histogram>>,
    /// Mean time per output token after the first, per sequence, by model.
    tpot: Mutex<BTreeMap<String, Histogram>>,
    /// Autoscaling decisions this node took as coordinator, by `(model, "up"|"down"|"blocked")`.
    autoscaling: Mutex<BTreeMap<(String, &'static str), u64>>,
}

fn label(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

impl Metrics {
    /// Records one inference request.
    pub fn request(&self, model: &str, status: u16, seconds: Option<f64>) {
        if status >= 500 {
            self.errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let model = if model.len() > 64 { "(long)" } else { model };
        *self.requests.lock().unwrap_or_else(|e| e.into_inner()).entry((model.to_string(), status)).or_default() += 1;
        if let Some(s) = seconds {
            self.latency.lock().unwrap_or_else(|e| e.into_inner()).entry(model.to_string()).or_default().observe(s);
        }
    }

    /// Records a finished sequence of `model`: its time to first token, and (when it made
    /// more than one) its mean time per later token.
    pub fn generation(&self, model: &str, first_token_s: f64, per_token_s: Option<f64>) {
        let model = if model.len() > 64 { "(long)" } else { model };
        self.ttft
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(model.to_string())
            .or_default()
            .observe(first_token_s);
        if let Some(t) = per_token_s {
            self.tpot.lock().unwrap_or_else(|e| e.into_inner()).entry(model.to_string()).or_default().observe(t);
        }
    }

    /// Records an autoscaling decision on `model`: `up`, `down`, or `blocked` (no node had
    /// room for another replica).
    pub fn autoscaled(&self, model: &str, direction: &'static str) {
        let model = if model.len() > 64 { "(long)" } else { model };
        *self
            .autoscaling
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((model.to_string(), direction))
            .or_default() += 1;
    }

    /// Latency bucket counts summed over models (cumulative, `+Inf` last).
    pub fn latency_buckets(&self) -> Vec<u64> {
        let mut out = vec![0u64; BUCKETS.len() + 1];
        for h in self.latency.lock().unwrap_or_else(|e| e.into_inner()).values() {
            for (o, c) in out.iter_mut().zip(h.counts) {
                *o += c;
            }
            out[BUCKETS.len()] += h.count;
        }
        out
    }

    /// Prometheus text; `extra` is appended (gauges the caller knows).
    pub fn render(&self, node: &str, extra: &str) -> String {
        let mut out = String::new();
        let n = label(node);
        out.push_str("# HELP mlmf_requests_total Inference requests taken over HTTP, by model and status.\n");
        out.push_str("# TYPE mlmf_requests_total counter\n");
        for ((m, s), v) in self.requests.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(out, "mlmf_requests_total{{node=\"{n}\",model=\"{}\",status=\"{s}\"}} {v}", label(m));
        }
        let histograms = [
            ("mlmf_request_duration_seconds", "Latency of successful inference requests.", &self.latency),
            (
                "mlmf_time_to_first_token_seconds",
                "Time from a generation's start to its first token (prefill and one step), by model.",
                &self.ttft,
            ),
            (
                "mlmf_time_per_output_token_seconds",
                "Mean time per generated token after the first, one observation per sequence, by model.",
                &self.tpot,
            ),
        ];
        for (name, help, by_model) in histograms {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
            for (m, h) in by_model.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                write_histogram(&mut out, name, &format!("node=\"{n}\",model=\"{}\"", label(m)), h);
            }
        }
        for (name, help, v) in [
            ("mlmf_peer_bytes_sent_total", "Bytes sent to peers.", &self.bytes_sent),
            ("mlmf_peer_bytes_received_total", "Bytes received from peers in answers.", &self.bytes_received),
            ("mlmf_retries_total", "Inference attempts retried on another route.", &self.retries),
            ("mlmf_stages_total", "Pipeline stages run on this node.", &self.stages),
            (
                "mlmf_generated_tokens_total",
                "Tokens generated for the sequences this node holds.",
                &self.generated_tokens,
            ),
            (
                "mlmf_prefill_chunks_total",
                "Prompt chunks prefilled for the sequences this node holds (prompts longer than one chunk).",
                &self.prefill_chunks,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name}{{node=\"{n}\"}} {}",
                v.load(Ordering::Relaxed)
            );
        }
        out.push_str(
            "# HELP mlmf_autoscale_decisions_total Autoscaling decisions taken on this node as coordinator, by model and direction (up, down, blocked).\n",
        );
        out.push_str("# TYPE mlmf_autoscale_decisions_total counter\n");
        for ((m, d), v) in self.autoscaling.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(
                out,
                "mlmf_autoscale_decisions_total{{node=\"{n}\",model=\"{}\",direction=\"{d}\"}} {v}",
                label(m)
            );
        }
        out.push_str(extra);
        out
    }
}

/// The `_bucket`, `_sum` and `_count` lines of one histogram with `labels`.
fn write_histogram(out: &mut String, name: &str, labels: &str, h: &Histogram) {
    for (b, c) in BUCKETS.iter().zip(h.counts) {
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{b}\"}} {c}");
    }
    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", h.count);
    let _ = writeln!(out, "{name}_sum{{{labels}}} {}", h.sum);
    let _ = writeln!(out, "{name}_count{{{labels}}} {}", h.count);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative_and_labels_are_escaped() {
        let m = Metrics::default();
        m.request("a\"b", 200, Some(0.003));
        m.request("a\"b", 200, Some(0.2));
        m.request("a\"b", 400, None);
        let text = m.render("n1", "");
        assert!(text.contains("mlmf_requests_total{node=\"n1\",model=\"a\\\"b\",status=\"200\"} 2"), "{text}");
        assert!(text.contains("le=\"0.005\"} 1"), "{text}");
        assert!(text.contains("le=\"0.25\"} 2"), "{text}");
        assert!(text.contains("le=\"+Inf\"} 2"), "{text}");
    }
}
