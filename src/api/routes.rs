//! The route handlers.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use actix_web::{HttpResponse, web};
use tracing::Instrument;

use mlmf_actors::peer::accept;

use crate::cluster::control::control;
use crate::cluster::infer::{InferOptions, infer};
use crate::cluster::node::Node;
use crate::cluster::wire::{ClusterStatus, LoadModel, MemberState, Migrate, ModelState, ModelStatus, names};
use crate::config::AffinityKey;

use super::admission::Admission;
use super::body::read_json;
use super::error::ApiError;
use crate::cluster::node::model_files::model_tokenizer;
use super::types::{InferRequest, InferResponse, LoadRequest, MigrateRequest, TensorJson};

/// Largest number of tokens (batch × sequence) one request may carry.
pub const MAX_TOKENS: usize = 1 << 16;

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/models", web::post().to(load))
        .route("/v1/models", web::get().to(list))
        .route("/v1/models/{id}", web::get().to(status))
        .route("/v1/models/{id}", web::delete().to(unload))
        .route("/v1/models/{id}/infer", web::post().to(infer_route))
        .route("/v1/models/{id}/migrate", web::post().to(migrate))
        .route("/v1/completions", web::post().to(super::completions::completions))
        .route("/v1/chat/completions", web::post().to(super::chat::chat_completions))
        .route("/v1/embeddings", web::post().to(super::embeddings::embeddings))
        .route("/v1/cluster", web::get().to(cluster))
        .route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics))
        .route("/v1/peer", web::get().to(accept))
        .default_service(web::to(|| async {
            Err::<HttpResponse, _>(ApiError::new(404, "not_found", "no such route"))
        }));
}

fn json<T: serde::Serialize>(status: u16, v: &T) -> HttpResponse {
    let status = actix_web::http::StatusCode::from_u16(status).unwrap_or(actix_web::http::StatusCode::OK);
    HttpResponse::build(status).json(v)
}

async fn load(node: web::Data<Node>, body: web::Payload) -> Result<HttpResponse, ApiError> {
    let req: LoadRequest = read_json(body, node.cfg.requests.max_body_bytes).await?;
    let msg = LoadModel {
        id: req.id,
        path: req.path,
        strategy: req.strategy,
        replication: req.replication,
        placement: req.placement,
        replication_mode: req.replication_mode,
    };
    let status: ModelStatus = control(&node, names::LOAD_MODEL, &msg).await?;
    Ok(json(202, &status))
}

async fn list(node: web::Data<Node>) -> Result<HttpResponse, ApiError> {
    let models: Vec<ModelStatus> = control(&node, names::LIST_MODELS, &()).await?;
    // OpenAI's shape (`object`, `data`) beside mlmf's own (`models`).
    let data: Vec<serde_json::Value> = models
        .iter()
        .map(|m| {
            serde_json::json!({"id": m.id, "object": "model", "created": 0, "owned_by": "mlmf",
                "ready": m.status == ModelState::Ready})
        })
        .collect();
    Ok(json(200, &serde_json::json!({ "object": "list", "data": data, "models": models })))
}

async fn status(node: web::Data<Node>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let s: ModelStatus = control(&node, names::MODEL_STATUS, &id.into_inner()).await?;
    Ok(json(200, &s))
}

async fn unload(node: web::Data<Node>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let () = control(&node, names::UNLOAD_MODEL, &id).await?;
    Ok(json(200, &serde_json::json!({ "deleted": id })))
}

async fn migrate(node: web::Data<Node>, id: web::Path<String>, body: web::Payload) -> Result<HttpResponse, ApiError> {
    let req: MigrateRequest = read_json(body, node.cfg.requests.max_body_bytes).await?;
    let msg = Migrate { model: id.into_inner(), shard: req.shard, from: req.from, to: req.to };
    let status: ModelStatus = control(&node, names::MIGRATE, &msg).await?;
    Ok(json(202, &status))
}

fn valid_output(name: &str, layers: usize) -> bool {
    match name.strip_prefix("block_output.") {
        Some(k) => k.parse::<usize>().is_ok_and(|k| k < layers),
        None => matches!(name, "logits" | "last_hidden_state" | "pooler_output"),
    }
}

async fn infer_route(
    node: web::Data<Node>,
    id: web::Path<String>,
    http: actix_web::HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let model = id.into_inner();
    let start = Instant::now();
    let mut admitted = Admission::enter(&node, Some(&model))?;
    let client_ip = http.peer_addr().map(|a| a.ip().to_string());
    let result = serve_infer(&node, &model, body, start, client_ip).await;
    admitted.end(&result);
    result.map(|r| json(200, &r))
}

async fn serve_infer(
    node: &Node,
    model: &str,
    body: web::Payload,
    start: Instant,
    client_ip: Option<String>,
) -> Result<InferResponse, ApiError> {
    let mut req: InferRequest = read_json(body, node.cfg.requests.max_body_bytes).await?;
    if let Some(text) = req.text.take() {
        if !req.input_ids.is_empty() {
            return Err(ApiError::bad_request("invalid_request", "text: give text or input_ids, not both"));
        }
        let tok = model_tokenizer(node, model)?
            .ok_or_else(|| ApiError::bad_request("invalid_request", "text: this model has no tokenizer"))?;
        let ids = tok.encode(&text).map_err(|e| ApiError::bad_request("invalid_request", format!("text: {e}")))?;
        req.input_ids = vec![ids.into_iter().map(i64::from).collect()];
    }
    let input = req.to_input(MAX_TOKENS)?;
    let view = node.view();
    let Some(routes) = view.model(model) else {
        // Distinguish "loading" from "unknown" for the client.
        return match control::<_, ModelStatus>(node, names::MODEL_STATUS, &model.to_string()).await {
            Ok(s) => Err(ApiError::new(503, "model_not_ready", format!("model {model:?} is {:?}", s.status))),
            Err(_) => Err(ApiError::new(404, "model_not_found", format!("no model {model:?}"))),
        };
    };
    let layers = routes.config.num_layers;
    if let Some(bad) = req.outputs.iter().flatten().find(|o| !valid_output(o, layers)) {
        return Err(ApiError::bad_request("unknown_output", format!("unknown output {bad:?}")));
    }
    let block_outputs = req.outputs.as_ref().is_some_and(|o| o.iter().any(|n| n.starts_with("block_output.")));
    let request_id = fastrand::u64(..);
    let opts = InferOptions {
        block_outputs,
        deadline: req.timeout_ms.map(|ms| Duration::from_millis(ms.clamp(1, 600_000))),
        outputs: req.outputs.clone(),
        session: match node.cfg.balancing.affinity_key {
            AffinityKey::Session => req.session_id.clone(),
            AffinityKey::ClientIp => client_ip,
            AffinityKey::Model => Some(model.to_string()),
        },
        priority: req.priority.unwrap_or_default().rank(),
        ..InferOptions::default()
    };
    let span = tracing::info_span!("infer", request_id = format!("{request_id:016x}"), %model);
    let served = match infer(node, model, input, opts, request_id).instrument(span).await {
        Ok(s) => s,
        // A request racing an unload: say the model is gone rather than that routes failed.
        Err(e @ crate::cluster::infer::InferError::Failed { .. }) => {
            return match control::<_, ModelStatus>(node, names::MODEL_STATUS, &model.to_string()).await {
                Err(c) if c.status == 404 => Err(ApiError::new(404, "model_not_found", format!("no model {model:?}"))),
                _ => Err(e.into()),
            };
        }
        Err(e) => return Err(e.into()),
    };
    let mut outputs = served.outputs.tensors;
    if let Some(wanted) = &req.outputs {
        if let Some(missing) = wanted.iter().find(|w| !outputs.contains_key(*w)) {
            return Err(ApiError::bad_request("unknown_output", format!("this model has no output {missing:?}")));
        }
        outputs.retain(|k, _| wanted.contains(k));
    } else {
        outputs.retain(|k, _| !k.starts_with("block_output."));
    }
    Ok(InferResponse {
        model: model.to_string(),
        outputs: outputs.into_iter().map(|(k, t)| (k, TensorJson { shape: t.shape, data: t.data })).collect(),
        processed_by: served.processed_by,
        processing_time_ms: start.elapsed().as_secs_f64() * 1000.0,
        attempts: served.attempts,
        request_id: format!("{request_id:016x}"),
    })
}

async fn cluster(node: web::Data<Node>) -> Result<HttpResponse, ApiError> {
    let s: ClusterStatus = control(&node, names::CLUSTER_STATUS, &()).await?;
    let health = if s.nodes.iter().all(|n| n.node.state == MemberState::Up) {
        "healthy"
    } else if s.nodes.iter().any(|n| n.node.state == MemberState::Up) {
        "degraded"
    } else {
        "unhealthy"
    };
    let mut v = serde_json::to_value(&s).map_err(|e| ApiError::new(500, "internal", e.to_string()))?;
    v["health"] = health.into();
    Ok(json(200, &v))
}

async fn healthz(node: web::Data<Node>) -> HttpResponse {
    json(200, &serde_json::json!({"status": "ok", "node": node.id}))
}

async fn readyz(node: web::Data<Node>) -> HttpResponse {
    if node.joined.load(Ordering::Acquire) {
        json(200, &serde_json::json!({"ready": true, "node": node.id, "coordinator": node.is_coordinator()}))
    } else {
        json(503, &ApiError::new(503, "not_ready", "this node has not joined a cluster yet").body())
    }
}

async fn metrics(node: web::Data<Node>) -> HttpResponse {
    let view = node.view();
    let id = node.id.replace('"', "");
    let mut extra = String::new();
    extra.push_str("# HELP mlmf_shards_loaded Shard replicas loaded on this node.\n# TYPE mlmf_shards_loaded gauge\n");
    extra.push_str(&format!("mlmf_shards_loaded{{node=\"{id}\"}} {}\n", node.shards.len()));
    extra.push_str("# HELP mlmf_in_flight Stage runs in progress on this node.\n# TYPE mlmf_in_flight gauge\n");
    extra.push_str(&format!("mlmf_in_flight{{node=\"{id}\"}} {}\n", node.in_flight.load(Ordering::Relaxed)));
    extra.push_str("# HELP mlmf_node_up Whether each member is up (1), suspect (0.5) or down (0), as this node's view has it.\n# TYPE mlmf_node_up gauge\n");
    for n in &view.nodes {
        let v = match n.state {
            MemberState::Up => 1.0,
            MemberState::Suspect => 0.5,
            MemberState::Down => 0.0,
            MemberState::Leaving => 0.25,
        };
        extra.push_str(&format!("mlmf_node_up{{node=\"{id}\",member=\"{}\"}} {v}\n", n.info.id.replace('"', "")));
    }
    extra.push_str(
        "# HELP mlmf_shard_in_flight Messages a shard replica is computing.\n# TYPE mlmf_shard_in_flight gauge\n",
    );
    extra.push_str("# HELP mlmf_shard_queued Messages waiting for a shard replica.\n# TYPE mlmf_shard_queued gauge\n");
    extra.push_str("# HELP mlmf_shard_latency_ms Time per message at a shard replica (p50, p99; bucket bounds).\n# TYPE mlmf_shard_latency_ms gauge\n");
    for ((model, shard), l) in node.shards.entries() {
        let s = l.stats(&model, shard);
        let labels = format!("node=\"{id}\",model=\"{}\",shard=\"{shard}\"", model.replace('"', ""));
        extra.push_str(&format!("mlmf_shard_in_flight{{{labels}}} {}\n", s.in_flight));
        extra.push_str(&format!("mlmf_shard_queued{{{labels}}} {}\n", s.queued));
        extra.push_str(&format!("mlmf_shard_latency_ms{{{labels},quantile=\"0.5\"}} {}\n", s.p50_ms));
        extra.push_str(&format!("mlmf_shard_latency_ms{{{labels},quantile=\"0.99\"}} {}\n", s.p99_ms));
    }
    extra.push_str("# HELP mlmf_kv_cache_bytes Bytes of the KV caches of the sequences this node serves.\n# TYPE mlmf_kv_cache_bytes gauge\n");
    extra.push_str(&format!("mlmf_kv_cache_bytes{{node=\"{id}\"}} {}\n", node.kv.bytes()));
    extra.push_str("# HELP mlmf_kv_cache_evictions_total KV caches dropped to stay within the byte budget.\n# TYPE mlmf_kv_cache_evictions_total counter\n");
    extra.push_str(&format!(
        "mlmf_kv_cache_evictions_total{{node=\"{id}\"}} {}\n",
        node.kv.evicted.load(Ordering::Relaxed)
    ));
    extra.push_str("# HELP mlmf_models_ready Models ready to serve.\n# TYPE mlmf_models_ready gauge\n");
    extra.push_str(&format!("mlmf_models_ready{{node=\"{id}\"}} {}\n", view.models.len()));
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(node.metrics.render(&node.id, &extra))
}
