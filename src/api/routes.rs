//! The route handlers.

use std::sync::atomic::Ordering;
use std::time::Instant;

use actix_web::{HttpResponse, web};
use tracing::Instrument;

use mlmf_actors::peer::accept;

use crate::cluster::control::control;
use crate::cluster::node::Node;
use crate::cluster::wire::{
    ClusterEvent, ClusterStatus, LoadModel, MemberState, Migrate, ModelState, ModelStatus, names,
};

use super::admission::Admission;
use super::body::read_json;
use super::error::ApiError;
use super::schemas::{ClusterOverview, Deleted, ErrorBody, Events, Health, ModelList, Readiness};
use super::tensor_bytes::{OCTET_STREAM, safetensors_answer, wants_bytes};
use super::trace_context::{request_span, with_trace};
use super::types::{InferRequest, InferResponse, LoadRequest, MigrateRequest};
use crate::cluster::trace::TraceId;

pub use super::forward::MAX_TOKENS;

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
        .route("/v2", web::get().to(super::kserve::server_metadata))
        .route("/v2/health/live", web::get().to(super::kserve::live))
        .route("/v2/health/ready", web::get().to(super::kserve::ready))
        .route("/v2/models/{id}", web::get().to(super::kserve::metadata))
        .route("/v2/models/{id}/ready", web::get().to(super::kserve::model_ready))
        .route("/v2/models/{id}/infer", web::post().to(super::kserve::infer))
        .route("/v1/cluster", web::get().to(cluster))
        .route("/v1/events", web::get().to(events))
        .route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(super::metrics::metrics))
        .route("/v1/peer", web::get().to(accept))
        .route("/", web::get().to(super::dashboard::dashboard))
        .default_service(web::to(|| async {
            Err::<HttpResponse, _>(ApiError::new(404, "not_found", "no such route"))
        }));
}

fn json<T: serde::Serialize>(status: u16, v: &T) -> HttpResponse {
    let status = actix_web::http::StatusCode::from_u16(status).unwrap_or(actix_web::http::StatusCode::OK);
    HttpResponse::build(status).json(v)
}

/// Loads a model: plans it, places its shard replicas and starts loading them.
#[utoipa::path(post, path = "/v1/models", tag = "models", request_body = LoadRequest,
    responses((status = 202, description = "Loading began", body = ModelStatus), (status = 400, description = "A field is wrong: the message names it", body = ErrorBody),
        (status = 409, description = "A model by that id exists", body = ErrorBody)))]
pub(crate) async fn load(node: web::Data<Node>, body: web::Payload) -> Result<HttpResponse, ApiError> {
    let req: LoadRequest = read_json(body, node.cfg.requests.max_body_bytes).await?;
    let msg = LoadModel {
        id: req.id,
        path: req.path,
        strategy: req.strategy,
        replication: req.replication,
        placement: req.placement,
        replication_mode: req.replication_mode,
        autoscaling: req.autoscaling,
    };
    let status: ModelStatus = control(&node, names::LOAD_MODEL, &msg).await?;
    Ok(json(202, &status))
}

/// Every model, in mlmf's shape (`models`) and OpenAI's (`object`, `data`).
#[utoipa::path(get, path = "/v1/models", tag = "models",
    responses((status = 200, description = "The models", body = ModelList)))]
pub(crate) async fn list(node: web::Data<Node>) -> Result<HttpResponse, ApiError> {
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

/// One model: plan, placement, per replica progress.
#[utoipa::path(get, path = "/v1/models/{id}", tag = "models", params(("id" = String, Path, description = "Model id")),
    responses((status = 200, description = "The model", body = ModelStatus),
        (status = 404, description = "No such model", body = ErrorBody)))]
pub(crate) async fn status(node: web::Data<Node>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let s: ModelStatus = control(&node, names::MODEL_STATUS, &id.into_inner()).await?;
    Ok(json(200, &s))
}

/// Unloads a model from every node.
#[utoipa::path(delete, path = "/v1/models/{id}", tag = "models", params(("id" = String, Path, description = "Model id")),
    responses((status = 200, description = "Unloaded", body = Deleted),
        (status = 404, description = "No such model", body = ErrorBody)))]
pub(crate) async fn unload(node: web::Data<Node>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let () = control(&node, names::UNLOAD_MODEL, &id).await?;
    Ok(json(200, &serde_json::json!({ "deleted": id })))
}

/// Moves one replica of a shard to another node (load, switch routes, drain, unload).
#[utoipa::path(post, path = "/v1/models/{id}/migrate", tag = "models", request_body = MigrateRequest,
    params(("id" = String, Path, description = "Model id")),
    responses((status = 202, description = "The migration began", body = ModelStatus), (status = 400, description = "A field is wrong: the message names it", body = ErrorBody),
        (status = 404, description = "No such model", body = ErrorBody)))]
pub(crate) async fn migrate(
    node: web::Data<Node>,
    id: web::Path<String>,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let req: MigrateRequest = read_json(body, node.cfg.requests.max_body_bytes).await?;
    let msg = Migrate { model: id.into_inner(), shard: req.shard, from: req.from, to: req.to };
    let status: ModelStatus = control(&node, names::MIGRATE, &msg).await?;
    Ok(json(202, &status))
}

/// One forward pass through the model's stages: token ids (or text) in, tensors out.
#[utoipa::path(post, path = "/v1/models/{id}/infer", tag = "inference", request_body = InferRequest,
    params(("id" = String, Path, description = "Model id")),
    responses((status = 200, description = "The outputs: JSON, or with `Accept: application/octet-stream` a safetensors file (F32 tensors by output name; model, request_id, processed_by, attempts and processing_time_ms in its metadata)",
            content((InferResponse = "application/json"), (Vec<u8> = "application/octet-stream"))), (status = 400, description = "A field is wrong: the message names it", body = ErrorBody),
        (status = 404, description = "No such model", body = ErrorBody),
        (status = 429, description = "Too many requests in flight on this node; see Retry-After", body = ErrorBody),
        (status = 503, description = "The model is loading, or no route could serve it", body = ErrorBody),
        (status = 504, description = "No answer within the deadline", body = ErrorBody)))]
pub(crate) async fn infer_route(
    node: web::Data<Node>,
    id: web::Path<String>,
    http: actix_web::HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let model = id.into_inner();
    let start = Instant::now();
    let mut admitted = Admission::enter(&node, &http, Some(&model))?;
    let client_ip = http.peer_addr().map(|a| a.ip().to_string());
    let (span, trace) = request_span(&http);
    let result = serve_infer(&node, &model, body, start, client_ip, trace, &admitted).instrument(span.clone()).await;
    admitted.end(&result);
    let answer = match result {
        Ok(r) if wants_bytes(&http) => {
            safetensors_answer(&r).map(|file| HttpResponse::Ok().content_type(OCTET_STREAM).body(file))
        }
        other => other.map(|r| json(200, &r)),
    };
    with_trace(answer, trace, &span)
}

async fn serve_infer(
    node: &Node,
    model: &str,
    body: web::Payload,
    start: Instant,
    client_ip: Option<String>,
    trace: TraceId,
    admitted: &Admission,
) -> Result<InferResponse, ApiError> {
    let req: InferRequest = read_json(body, node.cfg.requests.max_body_bytes).await?;
    super::forward::run_infer(node, model, req, start, client_ip, trace, admitted).await
}

/// The members, their state, phi and stats, the coordinator and the cluster's health, and the
/// control plane's Raft group as this node sees it (`raft`, with `quorum`). A node without a
/// quorum answers from its last committed view (`from`: `local_view`), with no stats.
#[utoipa::path(get, path = "/v1/cluster", tag = "cluster",
    responses((status = 200, description = "The cluster", body = ClusterOverview)))]
pub(crate) async fn cluster(node: web::Data<Node>) -> Result<HttpResponse, ApiError> {
    let raft = node.consensus.status();
    // A coordinator that is gone (a partition this node has not noticed yet) costs 2 s at most.
    let ask = control::<_, ClusterStatus>(&node, names::CLUSTER_STATUS, &());
    let from_coordinator = match raft.quorum {
        true => tokio::time::timeout(std::time::Duration::from_secs(2), ask).await.ok().and_then(Result::ok),
        false => None,
    };
    let from = if from_coordinator.is_some() { "coordinator" } else { "local_view" };
    let s = from_coordinator.unwrap_or_else(|| local_status(&node));
    let health = if s.nodes.iter().all(|n| n.node.state == MemberState::Up) {
        "healthy"
    } else if s.nodes.iter().any(|n| n.node.state == MemberState::Up) {
        "degraded"
    } else {
        "unhealthy"
    };
    let internal = |e: serde_json::Error| ApiError::new(500, "internal", e.to_string());
    let mut v = serde_json::to_value(&s).map_err(internal)?;
    v["health"] = health.into();
    v["from"] = from.into();
    v["quorum"] = raft.quorum.into();
    v["raft"] = serde_json::to_value(&raft).map_err(internal)?;
    Ok(json(200, &v))
}

/// The cluster as this node's last committed view has it.
fn local_status(node: &Node) -> ClusterStatus {
    let view = node.view();
    let nodes = view
        .nodes
        .iter()
        .map(|n| crate::cluster::wire::NodeStatus {
            node: n.clone(),
            stats: Default::default(),
            phi: 0.0,
            heartbeat_gap_max_ms: 0.0,
            shards: crate::cluster::wire::control::shards_on(view.registry.iter().map(|e| &e.status), &n.info.id),
        })
        .collect();
    ClusterStatus { coordinator: view.coordinator.clone(), version: view.version, nodes }
}

/// The coordinator's last events (at most 200, oldest first): audited operations (joins,
/// loads, downs, migrations, ...) and the alerts it raised, noticed or resolved.
#[utoipa::path(get, path = "/v1/events", tag = "cluster",
    responses((status = 200, description = "The events", body = Events)))]
pub(crate) async fn events(node: web::Data<Node>) -> Result<HttpResponse, ApiError> {
    let events: Vec<ClusterEvent> = control(&node, names::RECENT_EVENTS, &()).await?;
    Ok(json(200, &serde_json::json!({ "events": events })))
}

/// Liveness: the process answers. Needs no key.
#[utoipa::path(get, path = "/healthz", tag = "cluster", security(()),
    responses((status = 200, description = "Alive", body = Health)))]
pub(crate) async fn healthz(node: web::Data<Node>) -> HttpResponse {
    json(200, &serde_json::json!({"status": "ok", "node": node.id}))
}

/// Readiness: the node has joined a cluster (it serves inference on the routes it knows, with
/// or without a quorum; `quorum` says whether it may change the control plane). Needs no key.
#[utoipa::path(get, path = "/readyz", tag = "cluster", security(()),
    responses((status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "Not joined yet", body = ErrorBody)))]
pub(crate) async fn readyz(node: web::Data<Node>) -> HttpResponse {
    if node.joined.load(Ordering::Acquire) {
        let quorum = node.consensus.quorum();
        json(
            200,
            &serde_json::json!({"ready": true, "node": node.id, "coordinator": node.is_coordinator(), "quorum": quorum}),
        )
    } else {
        json(503, &ApiError::new(503, "not_ready", "this node has not joined a cluster yet").body())
    }
}
