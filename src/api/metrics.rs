//! `GET /metrics`: the node's counters and histograms ([`crate::cluster::metrics`]) and the
//! gauges read off its state now, in Prometheus' text format: every family one group of
//! lines under its `# HELP` and `# TYPE`, names prefixed `mlmf_`, base units (`_seconds`,
//! `_bytes`), counters ending in `_total`, and label values bounded by the cluster's own
//! members, models and shards (and tenants' names, from the configuration).

use std::fmt::Write;
use std::sync::atomic::Ordering;

use actix_web::HttpResponse;
use actix_web::web;

use crate::cluster::node::Node;
use crate::cluster::wire::MemberState;

/// One metric family being written: its header, then its samples.
struct Family(String);

impl Family {
    fn new(name: &str, kind: &str, help: &str) -> Family {
        Family(format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"))
    }

    fn sample(&mut self, name_and_labels: std::fmt::Arguments<'_>, value: impl std::fmt::Display) {
        let _ = writeln!(self.0, "{name_and_labels} {value}");
    }
}

fn quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Prometheus text exposition of this node's metrics.
#[utoipa::path(get, path = "/metrics", tag = "cluster",
    responses((status = 200, description = "Prometheus text format 0.0.4", body = String, content_type = "text/plain")))]
pub(crate) async fn metrics(node: web::Data<Node>, access: Option<web::Data<super::access::Access>>) -> HttpResponse {
    let view = node.view();
    let id = quote(&node.id);
    let gauge = |name: &str, help: &str, v: f64| {
        let mut f = Family::new(name, "gauge", help);
        f.sample(format_args!("{name}{{node=\"{id}\"}}"), v);
        f.0
    };
    let mut families = vec![
        gauge("mlmf_shards_loaded", "Shard replicas loaded on this node.", node.shards.len() as f64),
        gauge("mlmf_in_flight", "Stage runs in progress on this node.", node.in_flight.load(Ordering::Relaxed) as f64),
        gauge(
            "mlmf_http_in_flight",
            "Inference requests admitted on this node and not yet answered (streams until their end).",
            node.http_in_flight.load(Ordering::Relaxed) as f64,
        ),
        gauge(
            "mlmf_kv_cache_bytes",
            "Bytes of the KV caches of the sequences this node serves.",
            node.kv.bytes() as f64,
        ),
        gauge("mlmf_models_ready", "Models ready to serve.", view.models.len() as f64),
    ];
    let mut evictions =
        Family::new("mlmf_kv_cache_evictions_total", "counter", "KV caches dropped to stay within the byte budget.");
    evictions.sample(
        format_args!("mlmf_kv_cache_evictions_total{{node=\"{id}\"}}"),
        node.kv.evicted.load(Ordering::Relaxed),
    );
    families.push(evictions.0);
    let mut up = Family::new(
        "mlmf_node_up",
        "gauge",
        "Whether each member is up (1), leaving (0.25), suspect (0.5) or down (0), as this node's view has it.",
    );
    for n in &view.nodes {
        let v = match n.state {
            MemberState::Up => 1.0,
            MemberState::Suspect => 0.5,
            MemberState::Down => 0.0,
            MemberState::Leaving => 0.25,
        };
        up.sample(format_args!("mlmf_node_up{{node=\"{id}\",member=\"{}\"}}", quote(&n.info.id)), v);
    }
    families.push(up.0);
    let mut replicas = Family::new(
        "mlmf_shard_replicas",
        "gauge",
        "Replicas of each ready model's shard in the routes (as this node's view has them; autoscaling moves it).",
    );
    for m in &view.models {
        for s in m.stages.iter().flatten() {
            let labels = format!("node=\"{id}\",model=\"{}\",shard=\"{}\"", quote(&m.id), s.shard);
            replicas.sample(format_args!("mlmf_shard_replicas{{{labels}}}"), s.nodes.len());
        }
    }
    families.push(replicas.0);
    let mut in_flight = Family::new("mlmf_shard_in_flight", "gauge", "Messages a shard replica is computing.");
    let mut queued =
        Family::new("mlmf_shard_queued", "gauge", "Messages waiting for a shard replica (its queue depth).");
    let mut latency = Family::new(
        "mlmf_shard_latency_seconds",
        "gauge",
        "Time per message at a shard replica (p50, p99; bucket bounds).",
    );
    let mut latency_ms =
        Family::new("mlmf_shard_latency_ms", "gauge", "Deprecated: mlmf_shard_latency_seconds in milliseconds.");
    let mut ongoing = Family::new(
        "mlmf_shard_ongoing_requests",
        "gauge",
        "Requests in a shard replica's queued and computing messages (a batch counts its rows; what autoscaling reads).",
    );
    let mut handled =
        Family::new("mlmf_shard_messages_total", "counter", "Requests a shard replica's compute threads handled.");
    let mut tokens = Family::new(
        "mlmf_shard_tokens_total",
        "counter",
        "Tokens through a shard replica (every row's positions of the inputs it computed).",
    );
    let mut cold = Family::new(
        "mlmf_shard_cold_messages_total",
        "counter",
        "Requests a shard replica handled before its warm-up forward had finished (0 when it joined the routes warm).",
    );
    for ((model, shard), l) in node.shards.entries() {
        let s = l.stats(&model, shard);
        let labels = format!("node=\"{id}\",model=\"{}\",shard=\"{shard}\"", quote(&model));
        in_flight.sample(format_args!("mlmf_shard_in_flight{{{labels}}}"), s.in_flight);
        queued.sample(format_args!("mlmf_shard_queued{{{labels}}}"), s.queued);
        ongoing.sample(format_args!("mlmf_shard_ongoing_requests{{{labels}}}"), s.requests);
        handled.sample(format_args!("mlmf_shard_messages_total{{{labels}}}"), l.handle.counters.handled());
        tokens.sample(format_args!("mlmf_shard_tokens_total{{{labels}}}"), s.tokens);
        cold.sample(format_args!("mlmf_shard_cold_messages_total{{{labels}}}"), s.cold_messages);
        for (q, ms) in [("0.5", s.p50_ms), ("0.99", s.p99_ms)] {
            latency.sample(format_args!("mlmf_shard_latency_seconds{{{labels},quantile=\"{q}\"}}"), ms / 1e3);
            latency_ms.sample(format_args!("mlmf_shard_latency_ms{{{labels},quantile=\"{q}\"}}"), ms);
        }
    }
    families.extend([in_flight.0, queued.0, ongoing.0, latency.0, latency_ms.0, handled.0, tokens.0, cold.0]);
    let counter = |name: &str, help: &str, v: &std::sync::atomic::AtomicU64| {
        let mut f = Family::new(name, "counter", help);
        f.sample(format_args!("{name}{{node=\"{id}\"}}"), v.load(Ordering::Relaxed));
        f.0
    };
    families.extend([
        counter(
            "mlmf_warm_cache_hits_total",
            "Shard loads served by a replica kept in memory since its unload.",
            &node.warm.hits,
        ),
        counter(
            "mlmf_warm_cache_misses_total",
            "Shard loads that found no kept replica (or a stale one) while the warm cache is on.",
            &node.warm.misses,
        ),
        counter(
            "mlmf_warm_cache_evictions_total",
            "Kept replicas dropped: past the byte budget, past warm_ttl_s, or their files changed.",
            &node.warm.evictions,
        ),
        gauge("mlmf_warm_cache_bytes", "Bytes held by the unloaded replicas kept in memory.", node.warm.bytes() as f64),
        gauge("mlmf_warm_cache_replicas", "Unloaded replicas kept in memory.", node.warm.len() as f64),
    ]);
    families.push(gauge(
        "mlmf_batch_queue_depth",
        "Forward requests waiting for a batch slot on this node.",
        node.batches.waiting.load(Ordering::Relaxed) as f64,
    ));
    let mut sizes = Family::new(
        "mlmf_batch_size",
        "histogram",
        "Requests per batched forward sent by this node (dynamic batching).",
    );
    let buckets = node.batches.size_buckets();
    for (bound, count) in crate::cluster::batch_queue::SIZE_BUCKETS.iter().zip(buckets) {
        sizes.sample(format_args!("mlmf_batch_size_bucket{{node=\"{id}\",le=\"{bound}\"}}"), count);
    }
    let (batches, batched) =
        (node.batches.batches.load(Ordering::Relaxed), node.batches.batched.load(Ordering::Relaxed));
    sizes.sample(format_args!("mlmf_batch_size_bucket{{node=\"{id}\",le=\"+Inf\"}}"), batches);
    sizes.sample(format_args!("mlmf_batch_size_sum{{node=\"{id}\"}}"), batched);
    sizes.sample(format_args!("mlmf_batch_size_count{{node=\"{id}\"}}"), batches);
    families.push(sizes.0);
    // The tenants' counters, labelled with their names (from the configuration, so bounded).
    if let Some(a) = access {
        families.push(a.tenants.render(&node.id));
    }
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(node.metrics.render(&node.id, &families.concat()))
}
