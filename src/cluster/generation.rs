//! Generation across the cluster. The node that takes a completion holds its [`Sequence`]
//! (prompt, generated tokens, sampler, stop conditions); each step sends only the newest
//! token through the sequence's route, every stage continuing its KV cache of the sequence,
//! and the last stage returns the next-token logits. A prompt longer than `[batching]
//! prefill_chunk_tokens` is prefilled in chunks of that many tokens, one message each
//! continuing the caches of the chunks before it, so the stages run other sequences' decode
//! steps in between instead of stalling on the whole prompt. The route is kept while it works (it
//! holds the caches). When a step fails (a node died, froze, or dropped the cache), the
//! holder picks another route avoiding the failed node and replays the prompt and the tokens
//! generated so far into it (one prefill, chunked like a prompt), then carries on: the tokens are those of an
//! undisturbed run. A step is identified by its sequence and position, so a retried step is
//! computed again from there, never applied twice. When the sequence ends, or the caller
//! stops it, every node that held a stage drops its caches.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use crate::generate::sampler::{log_softmax, top_logprobs};
use crate::generate::{GenerationParams, Sequence, Step, TextTokenizer};
use crate::model::ModelInput;

use super::batching::step_batched;
use super::infer::{InferError, InferOptions};
use super::node::Node;
use super::wire::{KvStep, ReleaseSequence, StageRoute};

/// One completion to generate.
#[derive(Debug, Clone)]
pub struct GenerateRequest {
    /// Model id.
    pub model: String,
    /// Prompt token ids.
    pub prompt: Vec<u32>,
    /// Sampling, stops, `max_tokens`.
    pub params: GenerationParams,
    /// Session id (affinity of the first route).
    pub session: Option<String>,
    /// Admission priority at every shard.
    pub priority: u8,
    /// Score the prompt too: the log-probability of every prompt token after the ones before
    /// it (the first prefill then returns every position's logits).
    pub echo: bool,
    /// The W3C trace every step belongs to.
    pub trace: super::trace::TraceId,
}

/// A token's log-probability and the most likely tokens at its position.
pub type TokenScore = (f32, Vec<(u32, f32)>);

/// A finished (or stopped) generation.
#[derive(Debug, Clone)]
pub struct Generation {
    /// The sequence: prompt, generated ids, text, why it ended.
    pub sequence: Sequence,
    /// Times the sequence was replayed into a new route after a failure.
    pub replays: usize,
    /// Nodes that held a stage of it.
    pub nodes: Vec<String>,
    /// With `echo`: the scores of prompt tokens 1.. (the first has nothing before it).
    pub prompt_scores: Vec<TokenScore>,
}

/// Why a generation stopped early.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenerateError {
    /// A step could not be served, even after replays.
    #[error(transparent)]
    Infer(#[from] InferError),
    /// The sequence could not continue (tokenizer, decoding).
    #[error("{0}")]
    Sequence(String),
}

/// Failed steps in a row (without a token in between) before the sequence fails. A cache
/// dropped for the budget costs one replay and then the sequence moves on, so this bounds
/// only failures that make no progress.
const MAX_FAILURES_IN_A_ROW: usize = 8;

/// Generates `req` on the cluster from `node`. `on_step` sees every step as it is taken and
/// returns `false` to stop (the client went away); the caches are dropped either way.
pub async fn generate(
    node: &Node,
    req: GenerateRequest,
    tok: Option<Arc<TextTokenizer>>,
    request_id: u64,
    mut on_step: impl FnMut(&Step) -> bool,
) -> Result<Generation, GenerateError> {
    let seq_id = fastrand::u64(..);
    let start = std::time::Instant::now();
    let mut first_token: Option<std::time::Instant> = None;
    let eos = tok.as_ref().map(|t| t.eos.clone()).unwrap_or_default();
    let mut seq = Sequence::new(req.prompt.clone(), req.params.clone(), eos, tok.is_some());
    let mut route: Option<Vec<StageRoute>> = None;
    let mut used: BTreeSet<String> = BTreeSet::new();
    let mut avoid: Vec<String> = Vec::new();
    let (mut replays, mut failures) = (0, 0);
    let mut outcome = Ok(());
    let mut prompt_scores: Option<Vec<TokenScore>> = None;
    // Positions the route's caches hold (0 without a route), and with `echo` the logits of
    // the prompt chunks prefilled so far.
    let (mut cached, mut prefilled) = (0usize, false);
    let mut echo_logits: Vec<f32> = Vec::new();
    let chunk = match node.cfg.batching.prefill_chunk_tokens {
        0 => usize::MAX,
        n => n,
    };
    while (req.params.max_tokens > 0 || (req.echo && prompt_scores.is_none())) && seq.finish_reason().is_none() {
        if route.is_none() {
            (cached, prefilled) = (0, false);
            echo_logits.clear();
        }
        let first = cached == 0;
        let ids = seq.ids();
        // The next piece not in the caches: a whole prompt, a chunk of a long one, or the
        // newest token.
        let end = ids.len().min(cached.saturating_add(chunk));
        let (input, past) = (ids[cached..end].to_vec(), cached);
        let last_piece = end == ids.len();
        let all_logits = req.echo && prompt_scores.is_none();
        if !(prefilled || first && last_piece) {
            node.metrics.prefill_chunks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let opts = InferOptions {
            outputs: Some(vec!["logits".into()]),
            session: req.session.clone(),
            priority: req.priority,
            kv: Some(KvStep { seq: seq_id, past, all_logits }),
            kv_batch: Vec::new(),
            route: route.clone(),
            avoid: avoid.clone(),
            // A step on the sequence's route cannot move: its caches are there. A failure
            // replays the sequence instead, on any route.
            max_attempts: if first { None } else { Some(1) },
            deadline: None,
            block_outputs: false,
            trace: req.trace,
        };
        match step_batched(node, &req.model, ModelInput::single(&input), opts, request_id).await {
            Ok(served) => {
                used.extend(served.route.iter().flatten().map(|(_, n)| n.clone()));
                route = Some(served.route);
                avoid.clear();
                failures = 0;
                cached = end;
                prefilled |= last_piece;
                let Some(logits) = served.outputs.tensors.get("logits") else {
                    outcome = Err(GenerateError::Sequence("the last stage returned no logits".into()));
                    break;
                };
                let vocab = logits.shape.last().copied().unwrap_or(0);
                if vocab == 0 || logits.data.len() < vocab {
                    outcome = Err(GenerateError::Sequence(format!("logits of shape {:?}", logits.shape)));
                    break;
                }
                if all_logits {
                    echo_logits.extend_from_slice(&logits.data);
                }
                if !last_piece {
                    // A chunk of a long prompt: its logits are not sampled.
                    continue;
                }
                if all_logits {
                    let rows = echo_logits.len() / vocab;
                    let prompt = seq.prompt();
                    let k = req.params.logprobs;
                    prompt_scores = Some(
                        (1..prompt.len().min(rows + 1))
                            .map(|i| {
                                let lp = log_softmax(&echo_logits[(i - 1) * vocab..i * vocab]);
                                let top = if k > 0 { top_logprobs(&lp, k) } else { Vec::new() };
                                (lp[prompt[i] as usize], top)
                            })
                            .collect(),
                    );
                    echo_logits = Vec::new();
                    if req.params.max_tokens == 0 {
                        break;
                    }
                }
                let last = &logits.data[logits.data.len() - vocab..];
                let step = match seq.step(last, tok.as_deref()) {
                    Ok(s) => s,
                    Err(e) => {
                        outcome = Err(GenerateError::Sequence(e.to_string()));
                        break;
                    }
                };
                node.metrics.generated_tokens.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                first_token.get_or_insert_with(std::time::Instant::now);
                if !on_step(&step) {
                    tracing::info!(request_id, "the client went away; the sequence stops");
                    break;
                }
            }
            Err(e @ (InferError::Failed { .. } | InferError::Timeout(_))) if failures < MAX_FAILURES_IN_A_ROW => {
                failures += 1;
                replays += 1;
                if let InferError::Failed { node: failed, .. } = &e
                    && !failed.is_empty()
                    && *failed != node.id
                {
                    avoid = vec![failed.clone()];
                }
                tracing::warn!(request_id, seq = seq_id, position = past, error = %e, "generation step failed; replaying on another route");
                node.metrics.retries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                route = None;
            }
            Err(e) => {
                outcome = Err(e.into());
                break;
            }
        }
    }
    release(node, &req.model, seq_id, &used);
    if let Some(first) = first_token {
        let later = seq.generated().len().saturating_sub(1);
        let per_token = (later > 0).then(|| first.elapsed().as_secs_f64() / later as f64);
        node.metrics.generation(&req.model, (first - start).as_secs_f64(), per_token);
    }
    outcome?;
    let prompt_scores = prompt_scores.unwrap_or_default();
    Ok(Generation { sequence: seq, replays, nodes: used.into_iter().collect(), prompt_scores })
}

/// Tells every node in `nodes` to drop the caches of sequence `seq`: at once here, and in
/// the background for the others, so that the answer never waits on a node that died (its
/// caches expire with it).
fn release(node: &Node, model: &str, seq: u64, nodes: &BTreeSet<String>) {
    let msg = ReleaseSequence { model: model.to_string(), seq };
    if nodes.contains(&node.id) {
        node.kv.release(model, seq);
    }
    let peers: Vec<(String, String)> =
        nodes.iter().filter(|n| **n != node.id).filter_map(|n| node.addr_of(n).map(|addr| (n.clone(), addr))).collect();
    if peers.is_empty() {
        return;
    }
    let node = node.clone();
    actix_web::rt::spawn(async move {
        let asks = peers.iter().map(|(n, addr)| {
            let (node, msg) = (&node, &msg);
            async move {
                if let Err(e) = node.links.ask(addr, msg, Duration::from_secs(2)).await {
                    tracing::debug!(node = %n, error = %e, "could not release a sequence's caches (they expire)");
                }
            }
        });
        futures_util::future::join_all(asks).await;
    });
}
