//! `POST /v1/chat/completions`, OpenAI-compatible: the `messages` rendered through the model's
//! chat template (as `apply_chat_template` renders them, with the assistant's turn opened),
//! tokenized as they are, then generated exactly as `/v1/completions` does, with the same
//! fields; answered as `chat.completion`, or streamed as `chat.completion.chunk` deltas.

use std::sync::Arc;

use actix_web::{HttpResponse, web};
use serde_json::{Value, json};

use crate::cluster::generation::{GenerateRequest, generate};
use crate::cluster::node::Node;
use crate::generate::{ChatMessage, Step, render_chat};

use super::admission::{Admission, admitted};
use super::body::read_json;
use super::completions::{CompletionRequest, finish_name, now_s, usage};
use super::error::ApiError;
use super::logprobs::chat_content;
use super::sse;
use crate::cluster::node::model_files::{model_tokenizer, ready_model};
use crate::cluster::trace::TraceId;
use futures_util::FutureExt;

fn bad(field: &str, message: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request("invalid_request", format!("{field}: {message}"))
}

/// `POST /v1/chat/completions`: the messages through the model's chat template, then a
/// completion; streamed as `chat.completion.chunk` deltas.
#[utoipa::path(post, path = "/v1/chat/completions", tag = "openai", request_body = super::schemas::ChatCompletionRequest,
    responses((status = 200, description = "The answer (or, streamed, text/event-stream of chat.completion.chunk)",
            body = super::schemas::ChatCompletionResponse), super::schemas::OpenAiErrors))]
pub async fn chat_completions(
    node: web::Data<Node>,
    http: actix_web::HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let n = node.clone();
    admitted(&n, &http, move |trace, slot| serve(node, body, trace, slot).boxed_local()).await
}

/// Answers a chat completion; a streamed one takes `admitted` into the task that streams it.
async fn serve(
    node: web::Data<Node>,
    body: web::Payload,
    trace: TraceId,
    admitted: &mut Option<Admission>,
) -> Result<HttpResponse, ApiError> {
    let body: Value = read_json(body, node.cfg.requests.max_body_bytes).await?;
    let Value::Object(mut obj) = body else { return Err(bad("body", "must be a JSON object")) };
    let messages = obj.remove("messages").ok_or_else(|| bad("messages", "is required"))?;
    let messages: Vec<ChatMessage> = serde_json::from_value(messages)
        .map_err(|e| bad("messages", format!("each needs a role and a content: {e}")))?;
    if messages.is_empty() {
        return Err(bad("messages", "is empty"));
    }
    if obj.contains_key("echo") {
        return Err(bad("echo", "is not a field of chat completions"));
    }
    // OpenAI's chat shape: `logprobs: true` and `top_logprobs: k`; the completion's is `logprobs: k`.
    let with_logprobs = match obj.remove("logprobs") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::Bool(true)) => true,
        Some(_) => return Err(bad("logprobs", "must be true or false")),
    };
    match obj.remove("top_logprobs") {
        None | Some(Value::Null) => {}
        Some(_) if !with_logprobs => return Err(bad("top_logprobs", "needs logprobs: true")),
        Some(k) => {
            obj.insert("logprobs".into(), k);
        }
    }
    if with_logprobs && !obj.contains_key("logprobs") {
        obj.insert("logprobs".into(), json!(0));
    }
    if let Some(m) = obj.remove("max_completion_tokens") {
        obj.insert("max_tokens".into(), m);
    }
    let model = obj.get("model").and_then(Value::as_str).ok_or_else(|| bad("model", "is required"))?.to_string();
    Admission::name_model(admitted, &model)?;
    let cfg = ready_model(&node, &model)?;
    let tok = model_tokenizer(&node, &model)?.ok_or_else(|| bad("model", format!("{model:?} has no tokenizer")))?;
    let template = tok.chat_template.as_deref().ok_or_else(|| {
        bad("model", format!("{model:?} has no chat template (tokenizer_config.json has no chat_template)"))
    })?;
    let special = |id: Option<u32>| id.map(|i| tok.token(i)).unwrap_or_default();
    let rendered = render_chat(template, &messages, &special(tok.bos), &special(tok.eos.first().copied()), true)
        .map_err(|e| ApiError::bad_request("invalid_request", e.to_string()))?;
    let ids = tok.encode_plain(&rendered).map_err(|e| bad("messages", e))?;
    obj.insert("prompt".into(), json!(ids));
    let req: CompletionRequest =
        serde_json::from_value(Value::Object(obj)).map_err(|e| ApiError::bad_request("invalid_json", e.to_string()))?;
    let (prompt, params) = req.to_params(Some(&tok), cfg.vocab_size, cfg.max_positions)?;
    let gen_req = GenerateRequest {
        model: model.clone(),
        prompt: prompt.clone(),
        params,
        session: req.session_id.clone(),
        priority: Admission::of(admitted)?.priority(req.priority).rank(),
        echo: false,
        trace,
    };
    let (id, created, request_id) = (format!("chatcmpl-{:016x}", fastrand::u64(..)), now_s(), fastrand::u64(..));
    if !req.stream {
        let mut steps = Vec::new();
        let done = generate(&node, gen_req, Some(tok.clone()), request_id, |s| {
            if with_logprobs {
                steps.push(s.clone());
            }
            true
        })
        .await?;
        let seq = &done.sequence;
        Admission::of(admitted)?.tokens(prompt.len(), seq.generated().len());
        let logprobs = if with_logprobs { chat_content(&tok, &steps) } else { Value::Null };
        return Ok(HttpResponse::Ok().json(json!({"id": id, "object": "chat.completion", "created": created,
            "model": model, "usage": usage(prompt.len(), seq.generated().len()),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": seq.text()},
                "logprobs": logprobs, "finish_reason": finish_name(seq.finish_reason())}]})));
    }
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let node = node.into_inner();
    let prompt_len = prompt.len();
    let mut admitted = Admission::take(admitted)?;
    // The stream runs in the request's span, which stays open until the last event.
    let stream = async move {
        let chunk_tok = Arc::clone(&tok);
        let chunk = |delta: Value, step: Option<&Step>, generated: usize| {
            let finish = finish_name(step.and_then(|s| s.finish));
            let logprobs = match step {
                Some(s) if with_logprobs => chat_content(&chunk_tok, std::slice::from_ref(s)),
                _ => Value::Null,
            };
            let mut c = json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}]});
            if step.is_some_and(|s| s.finish.is_some()) {
                c["usage"] = json!(usage(prompt_len, generated));
            }
            sse::event(&c)
        };
        let _ = tx.send(chunk(json!({"role": "assistant", "content": ""}), None, 0));
        let mut generated = 0;
        let result = generate(&Arc::clone(&node), gen_req, Some(tok), request_id, |step| {
            generated += 1;
            tx.send(chunk(json!({"content": step.piece}), Some(step), generated)).is_ok()
        })
        .await;
        admitted.tokens(prompt_len, generated);
        sse::finish(&tx, result.map_err(ApiError::from), &mut admitted);
    };
    actix_web::rt::spawn(tracing::Instrument::instrument(stream, tracing::Span::current()));
    Ok(sse::response(rx))
}
