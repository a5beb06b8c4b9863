//! `POST /v1/completions`, OpenAI-compatible: a prompt (text or token ids) continued by the
//! cluster, answered whole or streamed as server-sent events (`"stream": true`), one chunk
//! per step, then `data: [DONE]`. The streamed pieces concatenate to the whole answer's text.
//! A client that disconnects stops the sequence and frees its caches on every stage.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::cluster::generation::{GenerateRequest, generate};
use crate::cluster::node::Node;
use crate::generate::{FinishReason, GenerationParams, SamplingParams, Step, TextTokenizer};

use super::admission::{Admission, admitted};
use super::body::read_json;
use super::error::ApiError;
use super::logprobs::Logprobs;
use super::schemas::Usage;
use super::sse;
use super::types::Priority;
use crate::cluster::node::model_files::{model_tokenizer, ready_model};
use crate::cluster::trace::TraceId;
use futures_util::FutureExt;

/// `POST /v1/completions`. Fields of OpenAI's API this server does not implement are refused
/// with a 400 naming them, never silently ignored.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct CompletionRequest {
    /// Model id.
    pub model: String,
    /// The prompt: text, a list of token ids, or a list of one text (OpenAI's batch form).
    pub prompt: Value,
    /// Tokens to generate at most.
    #[serde(default = "sixteen")]
    pub max_tokens: i64,
    /// 0 is greedy.
    #[serde(default = "one")]
    pub temperature: f64,
    /// Nucleus sampling.
    #[serde(default = "one")]
    pub top_p: f64,
    /// Top-k sampling; 0 or -1 keeps every token.
    #[serde(default)]
    pub top_k: i64,
    /// CTRL's repetition penalty; 1 is none.
    #[serde(default = "one")]
    pub repetition_penalty: f64,
    /// Makes sampling reproducible.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Texts that end the completion (not part of it): one string or a list.
    #[serde(default)]
    pub stop: Option<Value>,
    /// Answer as server-sent events.
    #[serde(default)]
    pub stream: bool,
    /// Keep generating past eos.
    #[serde(default)]
    pub ignore_eos: bool,
    /// Also return the prompt's and the completion's token ids.
    #[serde(default)]
    pub return_token_ids: bool,
    /// When the prompt plus `max_tokens` exceed the model's positions: stop there with
    /// `finish_reason: "length"` instead of answering 400.
    #[serde(default)]
    pub truncate_at_max_positions: bool,
    /// Affinity.
    #[serde(default)]
    pub session_id: Option<String>,
    /// Admission priority.
    #[serde(default)]
    pub priority: Option<Priority>,
    /// Completions per prompt: only 1.
    #[serde(default)]
    pub n: Option<i64>,
    /// Return the log-probability of every token and of the `logprobs` most likely tokens at
    /// each position (0 to 20).
    #[serde(default)]
    pub logprobs: Option<Value>,
    /// Return the prompt too, before the completion (and, with `logprobs`, its tokens'
    /// log-probabilities); `max_tokens: 0` then only scores the prompt.
    #[serde(default)]
    pub echo: bool,
}

fn sixteen() -> i64 {
    16
}

fn one() -> f64 {
    1.0
}

fn bad(field: &str, message: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request("invalid_request", format!("{field}: {message}"))
}

impl CompletionRequest {
    /// The prompt's ids and the generation parameters, every field checked.
    pub fn to_params(
        &self,
        tok: Option<&TextTokenizer>,
        vocab: usize,
        max_positions: usize,
    ) -> Result<(Vec<u32>, GenerationParams), ApiError> {
        if self.n.is_some_and(|n| n != 1) {
            return Err(bad("n", "only one completion per request is supported"));
        }
        let logprobs = match &self.logprobs {
            None | Some(Value::Null) => 0,
            Some(v) => {
                v.as_u64().filter(|&k| k <= 20).ok_or_else(|| bad("logprobs", "must be an integer from 0 to 20"))?
                    as usize
            }
        };
        if self.echo && self.stream {
            return Err(bad("echo", "is supported without stream"));
        }
        let text = |t: &str| -> Result<Vec<u32>, ApiError> {
            let tok = tok.ok_or_else(|| bad("prompt", "this model has no tokenizer: send token ids"))?;
            tok.encode(t).map_err(|e| bad("prompt", e))
        };
        let shape = "must be a string, a list of token ids, or a list of one string";
        let prompt = match &self.prompt {
            Value::String(t) => text(t)?,
            Value::Array(items) if items.len() == 1 && items[0].is_string() => {
                text(items[0].as_str().unwrap_or_default())?
            }
            Value::Array(items) if items.iter().all(Value::is_number) => items
                .iter()
                .map(|i| i.as_u64().and_then(|i| u32::try_from(i).ok()).filter(|&i| (i as usize) < vocab))
                .collect::<Option<Vec<u32>>>()
                .ok_or_else(|| bad("prompt", format!("token ids must be integers in 0..{vocab}")))?,
            Value::Array(items) if items.iter().all(Value::is_string) => {
                return Err(bad("prompt", "one prompt per request"));
            }
            _ => return Err(bad("prompt", shape)),
        };
        if prompt.is_empty() {
            return Err(bad("prompt", "is empty"));
        }
        if self.max_tokens < 1 && !(self.echo && self.max_tokens == 0) {
            return Err(bad("max_tokens", "must be at least 1 (0 only with echo)"));
        }
        let mut max_tokens = self.max_tokens as usize;
        if prompt.len() >= max_positions {
            return Err(bad("prompt", format!("{} tokens fill the model's {max_positions} positions", prompt.len())));
        }
        if prompt.len() + max_tokens > max_positions {
            if !self.truncate_at_max_positions {
                return Err(bad(
                    "max_tokens",
                    format!(
                        "{} prompt tokens + {max_tokens} exceed the model's {max_positions} positions",
                        prompt.len()
                    ),
                ));
            }
            max_tokens = max_positions - prompt.len();
        }
        if self.top_k < -1 {
            return Err(bad("top_k", "must be -1, 0 or positive"));
        }
        let finite = |field, v: f64| if v.is_finite() { Ok(v as f32) } else { Err(bad(field, "must be finite")) };
        let sampling = SamplingParams {
            temperature: finite("temperature", self.temperature)?,
            top_k: self.top_k.max(0) as usize,
            top_p: finite("top_p", self.top_p)?,
            repetition_penalty: finite("repetition_penalty", self.repetition_penalty)?,
            seed: self.seed,
        };
        let stop = match &self.stop {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(v)) => v
                .iter()
                .map(|s| s.as_str().map(str::to_string))
                .collect::<Option<Vec<String>>>()
                .ok_or_else(|| bad("stop", "must be a string or a list of strings"))?,
            Some(_) => return Err(bad("stop", "must be a string or a list of strings")),
        };
        if !stop.is_empty() && tok.is_none() {
            return Err(bad("stop", "stop strings need the model's tokenizer"));
        }
        let params = GenerationParams { max_tokens, sampling, stop, ignore_eos: self.ignore_eos, logprobs };
        params.validate().map_err(|e| ApiError::bad_request("invalid_request", e.to_string()))?;
        Ok((prompt, params))
    }
}

pub(super) fn now_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

pub(super) fn finish_name(r: Option<FinishReason>) -> Value {
    match r {
        Some(FinishReason::Stop) => json!("stop"),
        Some(FinishReason::Length) => json!("length"),
        None => Value::Null,
    }
}

/// `POST /v1/completions`: continues a prompt; with `"stream": true`, server-sent events of
/// [`super::schemas::CompletionResponse`] chunks (the text piece of each step), then `data: [DONE]`.
#[utoipa::path(post, path = "/v1/completions", tag = "openai", request_body = CompletionRequest,
    responses((status = 200, description = "The completion (or, streamed, text/event-stream of chunks of this shape)",
            body = super::schemas::CompletionResponse), super::schemas::OpenAiErrors))]
pub async fn completions(
    node: web::Data<Node>,
    http: actix_web::HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let n = node.clone();
    admitted(&n, &http, move |trace, slot| serve(node, body, trace, slot).boxed_local()).await
}

/// Answers a completion; a streamed one takes `admitted` into the task that streams it.
async fn serve(
    node: web::Data<Node>,
    body: web::Payload,
    trace: TraceId,
    admitted: &mut Option<Admission>,
) -> Result<HttpResponse, ApiError> {
    let req: CompletionRequest = read_json(body, node.cfg.requests.max_body_bytes).await?;
    Admission::name_model(admitted, &req.model)?;
    let cfg = ready_model(&node, &req.model)?;
    let tok = model_tokenizer(&node, &req.model)?;
    let (prompt, params) = req.to_params(tok.as_deref(), cfg.vocab_size, cfg.max_positions)?;
    let id = format!("cmpl-{:016x}", fastrand::u64(..));
    let created = now_s();
    let gen_req = GenerateRequest {
        model: req.model.clone(),
        prompt: prompt.clone(),
        params,
        session: req.session_id.clone(),
        priority: Admission::of(admitted)?.priority(req.priority).rank(),
        echo: req.echo,
        trace,
    };
    let request_id = fastrand::u64(..);
    let with_logprobs = req.logprobs.as_ref().is_some_and(|v| !v.is_null());
    if !req.stream {
        // The steps are kept only for their log-probabilities.
        let mut steps = Vec::new();
        let done = generate(&node, gen_req, tok.clone(), request_id, |s| {
            if with_logprobs {
                steps.push(s.clone());
            }
            true
        })
        .await?;
        let seq = &done.sequence;
        let usage = usage(prompt.len(), seq.generated().len());
        Admission::of(admitted)?.tokens(prompt.len(), seq.generated().len());
        let mut text = seq.text().to_string();
        let mut logprobs = Logprobs::new(tok.as_deref());
        if req.echo {
            let prompt_text = match tok.as_deref() {
                Some(t) => t.decode(&prompt).map_err(|e| ApiError::new(500, "tokenizer", e.to_string()))?,
                None => String::new(),
            };
            text = prompt_text + &text;
            logprobs.push(prompt[0], None);
            for (&id, (lp, top)) in prompt[1..].iter().zip(&done.prompt_scores) {
                logprobs.push(id, Some((*lp, top)));
            }
        }
        for s in &steps {
            logprobs.push(s.token, Some((s.logprob, &s.top)));
        }
        let logprobs = if with_logprobs { logprobs.to_json() } else { Value::Null };
        let mut choice =
            json!({"index": 0, "text": text, "logprobs": logprobs, "finish_reason": finish_name(seq.finish_reason())});
        let mut body = json!({"id": id, "object": "text_completion", "created": created, "model": req.model,
            "choices": [], "usage": usage});
        if req.return_token_ids {
            choice["token_ids"] = json!(seq.generated());
            body["prompt_token_ids"] = json!(prompt);
        }
        body["choices"] = json!([choice]);
        return Ok(HttpResponse::Ok().json(body));
    }
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let node = node.into_inner();
    let (model, with_ids) = (req.model.clone(), req.return_token_ids);
    let shape = StreamShape { id, created, model, with_ids, with_logprobs };
    let admitted = Admission::take(admitted)?;
    // The stream runs in the request's span, which stays open until the last event.
    let stream = stream_completion(node, gen_req, tok, request_id, tx, shape, admitted);
    actix_web::rt::spawn(tracing::Instrument::instrument(stream, tracing::Span::current()));
    Ok(sse::response(rx))
}

pub(super) fn usage(prompt: usize, completion: usize) -> Usage {
    Usage { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion }
}

/// What every chunk of a stream carries.
struct StreamShape {
    id: String,
    created: u64,
    model: String,
    with_ids: bool,
    with_logprobs: bool,
}

/// Runs a streamed completion, one event per step into `tx`; a closed `tx` (the client went
/// away) stops the sequence.
async fn stream_completion(
    node: Arc<Node>,
    req: GenerateRequest,
    tok: Option<Arc<TextTokenizer>>,
    request_id: u64,
    tx: tokio::sync::mpsc::UnboundedSender<String>,
    shape: StreamShape,
    mut admitted: Admission,
) {
    let prompt_len = req.prompt.len();
    let StreamShape { id, created, model, with_ids, with_logprobs } = shape;
    let chunk_tok = tok.clone();
    let chunk = |step: &Step, generated: usize| {
        let mut choice =
            json!({"index": 0, "text": step.piece, "logprobs": null, "finish_reason": finish_name(step.finish)});
        if with_ids {
            choice["token_ids"] = json!([step.token]);
        }
        if with_logprobs {
            let mut lp = Logprobs::new(chunk_tok.as_deref());
            lp.push(step.token, Some((step.logprob, &step.top)));
            choice["logprobs"] = lp.to_json();
        }
        let mut c =
            json!({"id": id, "object": "text_completion", "created": created, "model": model, "choices": [choice]});
        if step.finish.is_some() {
            c["usage"] = json!(usage(prompt_len, generated));
        }
        sse::event(&c)
    };
    let mut generated = 0;
    let result = generate(&node, req, tok, request_id, |step| {
        generated += 1;
        tx.send(chunk(step, generated)).is_ok()
    })
    .await;
    admitted.tokens(prompt_len, generated);
    sse::finish(&tx, result.map_err(ApiError::from), &mut admitted);
}
