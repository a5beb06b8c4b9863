//! One forward pass of a parsed inference request, shared by `/v1/models/{id}/infer` and the
//! KServe v2 route: text tokenized, the input checked against the model, the outputs
//! validated, the request batched with concurrent ones, the answer cut to what was asked.

use std::time::{Duration, Instant};

use tracing::Instrument;

use crate::cluster::batching::infer_batched;
use crate::cluster::control::control;
use crate::cluster::infer::InferOptions;
use crate::cluster::node::Node;
use crate::cluster::node::model_files::model_tokenizer;
use crate::cluster::trace::TraceId;
use crate::cluster::wire::{ModelStatus, names};
use crate::config::AffinityKey;

use super::admission::Admission;
use super::error::ApiError;
use super::types::{InferRequest, InferResponse, TensorJson};

/// Largest number of tokens (batch × sequence) one request may carry.
pub const MAX_TOKENS: usize = 1 << 16;

/// One forward pass of a parsed request (from `/v1/models/{id}/infer` or the KServe route),
/// at the priority `admitted` allows, its tokens charged to `admitted`'s tenant.
pub(crate) async fn run_infer(
    node: &Node,
    model: &str,
    mut req: InferRequest,
    start: Instant,
    client_ip: Option<String>,
    trace: TraceId,
    admitted: &Admission,
) -> Result<InferResponse, ApiError> {
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
    admitted.tokens(req.input_ids.iter().map(Vec::len).sum(), 0);
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
        priority: admitted.priority(req.priority).rank(),
        trace,
        ..InferOptions::default()
    };
    let span = tracing::info_span!("infer", trace_id = %trace, request_id = format!("{request_id:016x}"), %model);
    let served = match infer_batched(node, model, input, opts, request_id).instrument(span).await {
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

fn valid_output(name: &str, layers: usize) -> bool {
    match name.strip_prefix("block_output.") {
        Some(k) => k.parse::<usize>().is_ok_and(|k| k < layers),
        None => matches!(name, "logits" | "last_hidden_state" | "pooler_output"),
    }
}
