//! The KServe v2 / Triton inference protocol (`/v2/...`), with its binary tensor extension:
//! a body whose first `Inference-Header-Content-Length` bytes are the JSON header and whose
//! rest is each binary input's raw little-endian bytes in order; an answer laid out the same
//! way when an output asks for `binary_data`. Inputs are `input_ids`, `attention_mask` and
//! `token_type_ids` (`INT64` or `INT32`, shape `[batch, seq]` or `[seq]`); outputs are the
//! `/v1/models/{id}/infer` outputs as `FP32`. Every size is checked against the shape before
//! anything is allocated for it, and the request then goes through the same checks and path
//! as `/v1/models/{id}/infer`.

use std::time::{Duration, Instant};

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tracing::Instrument;

use crate::cluster::node::Node;

use super::admission::Admission;
use super::body::read_bytes;
use super::error::ApiError;
use super::forward::{MAX_TOKENS, run_infer};
use super::tensor_bytes::{OCTET_STREAM, f32_le, ints_le};
use super::trace_context::{request_span, with_trace};
use super::types::{InferRequest, InferResponse};

/// The header that splits a binary body into its JSON header and its tensor bytes.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

/// The only model version mlmf serves.
const VERSION: &str = "1";

#[derive(Debug, Deserialize)]
struct V2Request {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    parameters: Map<String, Value>,
    inputs: Vec<V2Input>,
    #[serde(default)]
    outputs: Option<Vec<V2Output>>,
}

#[derive(Debug, Deserialize)]
struct V2Input {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Map<String, Value>,
    #[serde(default)]
    data: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct V2Output {
    name: String,
    #[serde(default)]
    parameters: Map<String, Value>,
}

/// What the answer must look like: the request's id, and per output its name and whether
/// it goes as bytes.
struct Answer {
    id: Option<String>,
    outputs: Option<Vec<(String, bool)>>,
    binary_default: bool,
}

/// An error as the KServe v2 protocol answers it, `{"error": "<message>"}` (Triton's clients
/// read that string), with mlmf's `code` beside it and `Retry-After` on 429 and 503.
fn v2_error(e: &ApiError) -> HttpResponse {
    let status =
        actix_web::http::StatusCode::from_u16(e.status).unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = HttpResponse::build(status);
    if e.status == 503 || e.status == 429 {
        r.insert_header(("Retry-After", "1"));
    }
    r.json(json!({"error": e.message, "code": e.code}))
}

/// `result`, its error in the protocol's shape.
fn v2(result: Result<HttpResponse, ApiError>) -> HttpResponse {
    result.unwrap_or_else(|e| v2_error(&e))
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_request", message)
}

fn flag(parameters: &Map<String, Value>, key: &str) -> Result<Option<bool>, ApiError> {
    match parameters.get(key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(bad(format!("parameters.{key} must be a boolean"))),
    }
}

/// `[batch, seq]` of an input's shape, checked: one or two dimensions, none negative, at
/// most [`MAX_TOKENS`] elements.
fn dims(input: &V2Input) -> Result<(usize, usize), ApiError> {
    let name = &input.name;
    let (batch, seq) = match input.shape.as_slice() {
        [s] => (1, *s),
        [b, s] => (*b, *s),
        _ => return Err(bad(format!("{name}: shape must be [batch, seq] or [seq]"))),
    };
    let (Ok(batch), Ok(seq)) = (usize::try_from(batch), usize::try_from(seq)) else {
        return Err(bad(format!("{name}: a dimension is negative")));
    };
    if batch.checked_mul(seq).is_none_or(|n| n > MAX_TOKENS) {
        return Err(ApiError::bad_request("too_many_tokens", format!("{name}: more than {MAX_TOKENS} elements")));
    }
    Ok((batch, seq))
}

/// Integers of a JSON `data` field (flat or nested, row-major), at most `n` of them.
fn json_ints(name: &str, data: &Value, n: usize, out: &mut Vec<i64>) -> Result<(), ApiError> {
    match data {
        Value::Array(items) => items.iter().try_for_each(|v| json_ints(name, v, n, out)),
        Value::Number(x) if out.len() < n => {
            out.push(x.as_i64().ok_or_else(|| bad(format!("{name}: {x} is not an integer")))?);
            Ok(())
        }
        Value::Number(_) => Err(bad(format!("{name}: data has more than the shape's {n} elements"))),
        _ => Err(bad(format!("{name}: data must hold integers"))),
    }
}

/// The request in `body` (JSON header, then `binary` bytes), as an `/infer` request and the
/// shape of its answer.
fn parse(body: &[u8], header_len: usize) -> Result<(InferRequest, Answer), ApiError> {
    let req: V2Request = serde_json::from_slice(&body[..header_len])
        .map_err(|e| ApiError::bad_request("invalid_json", format!("inference header: {e}")))?;
    let mut binary = &body[header_len..];
    let mut infer = InferRequest {
        text: None,
        input_ids: Vec::new(),
        attention_mask: None,
        token_type_ids: None,
        outputs: None,
        session_id: None,
        priority: None,
        timeout_ms: None,
    };
    let mut seen = Vec::new();
    for input in &req.inputs {
        if seen.contains(&input.name.as_str()) {
            return Err(bad(format!("input {:?} is given twice", input.name)));
        }
        seen.push(input.name.as_str());
        let (batch, seq) = dims(input)?;
        let n = batch * seq;
        let width = match input.datatype.as_str() {
            "INT64" => 8,
            "INT32" => 4,
            other => return Err(bad(format!("{}: datatype {other} (INT64 or INT32 expected)", input.name))),
        };
        let values = match (input.parameters.get("binary_data_size"), &input.data) {
            (Some(size), None) => {
                let size = size.as_u64().ok_or_else(|| bad(format!("{}: binary_data_size", input.name)))?;
                if size != (n * width) as u64 {
                    return Err(bad(format!("{}: binary_data_size {size} is not {n} x {width} bytes", input.name)));
                }
                if binary.len() < size as usize {
                    return Err(bad(format!("{}: the body ends before its {size} bytes", input.name)));
                }
                let (mine, rest) = binary.split_at(size as usize);
                binary = rest;
                ints_le(mine, width)
            }
            (None, Some(data)) => {
                let mut out = Vec::with_capacity(n);
                json_ints(&input.name, data, n, &mut out)?;
                if out.len() != n {
                    return Err(bad(format!("{}: data has {} elements, the shape {n}", input.name, out.len())));
                }
                out
            }
            (Some(_), Some(_)) => return Err(bad(format!("{}: give data or binary_data_size, not both", input.name))),
            (None, None) => return Err(bad(format!("{}: no data and no binary_data_size", input.name))),
        };
        let rows: Vec<Vec<i64>> = values.chunks(seq.max(1)).map(<[i64]>::to_vec).collect();
        match input.name.as_str() {
            "input_ids" => infer.input_ids = rows,
            "attention_mask" => infer.attention_mask = Some(rows),
            "token_type_ids" => infer.token_type_ids = Some(rows),
            other => {
                return Err(bad(format!(
                    "unknown input {other:?} (input_ids, attention_mask and token_type_ids are accepted)"
                )));
            }
        }
    }
    if !binary.is_empty() {
        return Err(bad(format!("{} bytes after the last binary input", binary.len())));
    }
    if let Some(t) = req.parameters.get("timeout") {
        // Triton's per-request timeout, in microseconds.
        let us = t.as_u64().ok_or_else(|| bad("parameters.timeout must be microseconds"))?;
        infer.timeout_ms = Some(Duration::from_micros(us).as_millis().max(1) as u64);
    }
    let binary_default = flag(&req.parameters, "binary_data_output")?.unwrap_or(false);
    let outputs = match &req.outputs {
        Some(list) => {
            let mut out = Vec::with_capacity(list.len());
            for o in list {
                out.push((o.name.clone(), flag(&o.parameters, "binary_data")?.unwrap_or(binary_default)));
            }
            infer.outputs = Some(out.iter().map(|(n, _)| n.clone()).collect());
            Some(out)
        }
        None => None,
    };
    Ok((infer, Answer { id: req.id, outputs, binary_default }))
}

/// The answer's bytes and content type: a JSON header (then each binary output's bytes).
fn encode(model: &str, answer: Answer, served: InferResponse) -> (Vec<u8>, Option<usize>) {
    let order: Vec<(String, bool)> = match answer.outputs {
        Some(o) => o,
        None => served.outputs.keys().map(|k| (k.clone(), answer.binary_default)).collect(),
    };
    let mut tail = Vec::new();
    let mut outputs = Vec::with_capacity(order.len());
    for (name, binary) in order {
        let Some(t) = served.outputs.get(&name) else { continue };
        let mut o = json!({"name": name, "datatype": "FP32", "shape": t.shape});
        if binary {
            let bytes = f32_le(&t.data);
            o["parameters"] = json!({"binary_data_size": bytes.len()});
            tail.extend(bytes);
        } else {
            o["data"] = json!(t.data);
        }
        outputs.push(o);
    }
    let mut header = json!({
        "model_name": model,
        "model_version": VERSION,
        "outputs": outputs,
        "parameters": {
            "request_id": served.request_id,
            "processed_by": served.processed_by.join(","),
            "attempts": served.attempts,
        },
    });
    if let Some(id) = answer.id {
        header["id"] = json!(id);
    }
    let mut body = serde_json::to_vec(&header).unwrap_or_default();
    if tail.is_empty() {
        return (body, None);
    }
    let len = body.len();
    body.extend(tail);
    (body, Some(len))
}

/// The JSON header's length: the binary extension's header, else the whole body.
fn header_length(http: &HttpRequest, body_len: usize) -> Result<usize, ApiError> {
    let Some(v) = http.headers().get(HEADER_LENGTH) else { return Ok(body_len) };
    let n = v
        .to_str()
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .ok_or_else(|| bad("Inference-Header-Content-Length must be a byte count"))?;
    if n > body_len {
        return Err(bad(format!("Inference-Header-Content-Length {n} exceeds the body's {body_len} bytes")));
    }
    Ok(n)
}

/// The model id of a `/v2/models/{id}/...` route.
fn model_of(http: &HttpRequest) -> String {
    http.match_info().get("id").unwrap_or_default().to_string()
}

/// One forward pass in the KServe v2 protocol, JSON or binary.
#[utoipa::path(post, path = "/v2/models/{id}/infer", tag = "kserve",
    params(("id" = String, Path, description = "Model id"),
        ("Inference-Header-Content-Length" = Option<usize>, Header, description = "Binary tensor extension: the JSON header's length; the tensors' bytes follow it")),
    request_body(content = super::schemas::V2InferRequest, description = "The JSON header (then, with the binary extension, each binary input's little-endian bytes)"),
    responses((status = 200, description = "The outputs (a JSON header, then binary outputs' bytes when any was asked for as binary_data)", body = super::schemas::V2InferResponse),
        (status = 400, description = "A field is wrong: the message names it", body = super::schemas::V2Error),
        (status = 404, description = "No such model", body = super::schemas::V2Error),
        (status = 403, description = "The tenant's key may not use this model", body = super::schemas::V2Error),
        (status = 429, description = "Too many requests in flight on this node, or the tenant is over a limit; see Retry-After", body = super::schemas::V2Error),
        (status = 503, description = "The model is loading, or no route could serve it", body = super::schemas::V2Error)))]
pub(crate) async fn infer(node: web::Data<Node>, http: HttpRequest, body: web::Payload) -> HttpResponse {
    let model = model_of(&http);
    let start = Instant::now();
    let mut admitted = match Admission::enter(&node, &http, Some(&model)) {
        Ok(a) => a,
        Err(e) => return v2_error(&e),
    };
    let client_ip = http.peer_addr().map(|a| a.ip().to_string());
    let (span, trace) = request_span(&http);
    let result = async {
        let raw = read_bytes(body, node.cfg.requests.max_body_bytes).await?;
        let (req, answer) = parse(&raw, header_length(&http, raw.len())?)?;
        let served = run_infer(&node, &model, req, start, client_ip, trace, &admitted).await?;
        let (bytes, header) = encode(&model, answer, served);
        let mut r = HttpResponse::Ok();
        match header {
            Some(n) => r.content_type(OCTET_STREAM).insert_header((HEADER_LENGTH, n.to_string())),
            None => r.content_type("application/json"),
        };
        Ok(r.body(bytes))
    }
    .instrument(span.clone())
    .await;
    admitted.end(&result);
    v2(with_trace(result, trace, &span))
}

/// A model's metadata: its inputs and outputs with their datatypes and shapes (-1: any).
#[utoipa::path(get, path = "/v2/models/{id}", tag = "kserve", params(("id" = String, Path, description = "Model id")),
    responses((status = 200, description = "The model's metadata", body = Object),
        (status = 404, description = "No such model, or it is not ready", body = super::schemas::V2Error)))]
pub(crate) async fn metadata(node: web::Data<Node>, http: HttpRequest) -> HttpResponse {
    let model = model_of(&http);
    let view = node.view();
    let Some(routes) = view.model(&model) else {
        return v2_error(&ApiError::new(404, "model_not_found", format!("no ready model {model:?}")));
    };
    let cfg = &routes.config;
    let tensor =
        |name: &str, datatype: &str, shape: Vec<i64>| json!({"name": name, "datatype": datatype, "shape": shape});
    let mut inputs = vec![tensor("input_ids", "INT64", vec![-1, -1]), tensor("attention_mask", "INT64", vec![-1, -1])];
    let family = crate::model::registry::family(cfg.arch);
    if family.token_types() {
        inputs.push(tensor("token_type_ids", "INT64", vec![-1, -1]));
    }
    let hidden = cfg.hidden_size as i64;
    let mut outputs = vec![tensor("last_hidden_state", "FP32", vec![-1, -1, hidden])];
    if family.causal() {
        outputs.insert(0, tensor("logits", "FP32", vec![-1, -1, cfg.vocab_size as i64]));
    } else {
        outputs.push(tensor("pooler_output", "FP32", vec![-1, hidden]));
    }
    HttpResponse::Ok().json(json!({
        "name": model, "versions": [VERSION], "platform": "mlmf", "inputs": inputs, "outputs": outputs,
    }))
}

/// Whether a model is ready (200) or not (503), as KServe's probes ask.
#[utoipa::path(get, path = "/v2/models/{id}/ready", tag = "kserve", params(("id" = String, Path, description = "Model id")),
    responses((status = 200, description = "Ready", body = Object), (status = 503, description = "Not ready or unknown", body = super::schemas::V2Error)))]
pub(crate) async fn model_ready(node: web::Data<Node>, http: HttpRequest) -> HttpResponse {
    let model = model_of(&http);
    match node.view().model(&model) {
        Some(_) => HttpResponse::Ok().json(json!({"name": model, "ready": true})),
        None => v2_error(&ApiError::new(503, "model_not_ready", format!("model {model:?} is not ready here"))),
    }
}

/// The server's metadata: name, version and the protocol extensions it speaks.
#[utoipa::path(get, path = "/v2", tag = "kserve", responses((status = 200, description = "Server metadata", body = Object)))]
pub(crate) async fn server_metadata() -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "name": "mlmf", "version": env!("CARGO_PKG_VERSION"), "extensions": ["binary_tensor_data"],
    }))
}

/// Liveness in KServe's shape.
#[utoipa::path(get, path = "/v2/health/live", tag = "kserve", security(()), responses((status = 200, description = "Live", body = Object)))]
pub(crate) async fn live() -> HttpResponse {
    HttpResponse::Ok().json(json!({"live": true}))
}

/// Readiness in KServe's shape (the node has joined a cluster).
#[utoipa::path(get, path = "/v2/health/ready", tag = "kserve", security(()),
    responses((status = 200, description = "Ready", body = Object), (status = 503, description = "Not joined yet", body = super::schemas::V2Error)))]
pub(crate) async fn ready(node: web::Data<Node>) -> HttpResponse {
    if node.joined.load(std::sync::atomic::Ordering::Acquire) {
        HttpResponse::Ok().json(json!({"ready": true}))
    } else {
        v2_error(&ApiError::new(503, "not_ready", "this node has not joined a cluster yet"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(header: &Value, tail: &[u8]) -> (Vec<u8>, usize) {
        let mut b = serde_json::to_vec(header).unwrap();
        let n = b.len();
        b.extend_from_slice(tail);
        (b, n)
    }

    #[test]
    fn binary_and_json_inputs_give_the_same_request() {
        let ids: Vec<u8> = [464i64, 968, 758, 1, 2, 3].iter().flat_map(|x| x.to_le_bytes()).collect();
        let (b, n) = body(
            &json!({"inputs": [{"name": "input_ids", "shape": [2, 3], "datatype": "INT64", "parameters": {"binary_data_size": 48}}],
                    "outputs": [{"name": "logits", "parameters": {"binary_data": true}}]}),
            &ids,
        );
        let (bin, answer) = parse(&b, n).unwrap();
        assert_eq!(bin.input_ids, vec![vec![464, 968, 758], vec![1, 2, 3]]);
        assert_eq!(answer.outputs.unwrap(), vec![("logits".to_string(), true)]);
        let (b, n) = body(
            &json!({"inputs": [{"name": "input_ids", "shape": [2, 3], "datatype": "INT32", "data": [[464, 968, 758], [1, 2, 3]]}]}),
            &[],
        );
        assert_eq!(parse(&b, n).unwrap().0.input_ids, bin.input_ids);
    }

    #[test]
    fn hostile_headers_are_refused_with_the_field_named() {
        let ids =
            json!({"name": "input_ids", "shape": [1, 2], "datatype": "INT64", "parameters": {"binary_data_size": 16}});
        for (header, tail, needle) in [
            (json!({"inputs": [ids]}), vec![0u8; 8], "ends before"),
            (json!({"inputs": [ids]}), vec![0u8; 24], "after the last binary input"),
            (
                json!({"inputs": [{"name": "input_ids", "shape": [1, 2], "datatype": "INT64", "parameters": {"binary_data_size": 9}}]}),
                vec![0u8; 9],
                "binary_data_size 9",
            ),
            (
                json!({"inputs": [{"name": "input_ids", "shape": [1u64 << 40, 1u64 << 40], "datatype": "INT64", "data": []}]}),
                vec![],
                "elements",
            ),
            (
                json!({"inputs": [{"name": "input_ids", "shape": [-1, 2], "datatype": "INT64", "data": [1, 2]}]}),
                vec![],
                "negative",
            ),
            (
                json!({"inputs": [{"name": "input_ids", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]}),
                vec![],
                "datatype FP32",
            ),
            (
                json!({"inputs": [{"name": "input_ids", "shape": [1, 2], "datatype": "INT64", "data": [1, 2, 3]}]}),
                vec![],
                "more than",
            ),
            (
                json!({"inputs": [{"name": "input_ids", "shape": [1, 2], "datatype": "INT64", "data": [1.5, 2]}]}),
                vec![],
                "not an integer",
            ),
            (
                json!({"inputs": [{"name": "pixels", "shape": [1, 2], "datatype": "INT64", "data": [1, 2]}]}),
                vec![],
                "unknown input",
            ),
            (json!({"inputs": [ids, ids]}), vec![0u8; 32], "twice"),
        ] {
            let (b, n) = body(&header, &tail);
            let e = parse(&b, n).err().unwrap_or_else(|| panic!("{header} was accepted"));
            assert_eq!(e.status, 400);
            assert!(e.message.contains(needle), "{header}: {}", e.message);
        }
        assert_eq!(parse(b"{not json", 9).err().unwrap().code, "invalid_json");
    }
}
