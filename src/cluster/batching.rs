//! Dynamic batching at the node that takes requests: concurrent forward requests for the same
//! model and priority are packed into one forward per stage (one message through the
//! pipeline) and cut apart again for their answers ([`super::batch_queue`]).
//!
//! A request arriving while a forward slot of its model is free leaves at once (alone, or
//! with what `batch_wait_us` gathers); requests arriving while every slot is busy queue, and
//! the next free slot takes them together, up to `max_batch_tokens`. So a lone request never
//! waits, and under load the batch grows with the queue. A batch refused as invalid (which
//! the per-request checks before it make unlikely) is retried member by member, so one bad
//! request never fails the others.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use tokio::sync::oneshot;

use crate::model::ModelInput;

use super::batch_queue::{Member, merged_options, pack, split};
use super::infer::{InferError, InferOptions, InferResult, infer};
use super::node::Node;

/// Serves one request taken by `node`, batched with concurrent ones when batching is on and
/// the request is a plain forward (not a generation step, not pinned to a route).
pub async fn infer_batched(
    node: &Node,
    model: &str,
    input: ModelInput,
    opts: InferOptions,
    request_id: u64,
) -> Result<InferResult, InferError> {
    let cfg = &node.cfg.batching;
    if !cfg.enabled || opts.kv.is_some() || opts.route.is_some() || !opts.avoid.is_empty() {
        return infer(node, model, input, opts, request_id).await;
    }
    let view = node.view();
    let routes = view.model(model).ok_or_else(|| InferError::UnknownModel(model.to_string()))?;
    // Checked alone, before it can share a forward with anyone.
    input.validate(&routes.config).map_err(|e| InferError::Invalid(e.to_string()))?;
    let slots = match cfg.max_batches_in_flight {
        0 => routes.stages.len().max(1),
        n => n,
    };
    let member = (input, opts, request_id);
    enqueue(node, model, model.to_string(), member, slots, Kind::Forward).await
}

/// Serves one decode step of a generation (one token continuing its sequence's caches on
/// its route), batched with the ready steps of other sequences on the same route when
/// batching is on: continuous batching, each step joining whichever batch leaves next, so
/// a sequence joins or leaves the batch at any step. A sequence's first prefill is batched
/// with the others starting at the same time (padded, on one route the balancer picks).
/// Replays after a failure, prompt scoring (`echo`) and models with a tensor-parallel stage
/// step alone.
pub async fn step_batched(
    node: &Node,
    model: &str,
    input: ModelInput,
    opts: InferOptions,
    request_id: u64,
) -> Result<InferResult, InferError> {
    let cfg = &node.cfg.batching;
    let one_token = input.seq_len == 1 && input.batch == 1;
    if let Some(k) = opts.kv
        && cfg.enabled
        && k.past == 0
        && !k.all_logits
        && opts.route.is_none()
        && opts.avoid.is_empty()
        && input.batch == 1
    {
        // A sequence's first prefill: with the others starting now, on a route the balancer
        // picks for them all (unless a stage is tensor-parallel).
        let view = node.view();
        let Some(routes) = view.model(model) else { return Err(InferError::UnknownModel(model.to_string())) };
        if routes.stages.iter().all(|s| s.len() == 1) {
            input.validate(&routes.config).map_err(|e| InferError::Invalid(e.to_string()))?;
            let slots = routes.stages.len().max(1);
            let queue = format!("{model}\u{1f}prefill");
            return enqueue(node, model, queue, (input, opts, request_id), slots, Kind::Prefill).await;
        }
    }
    let route = match (&opts.route, opts.kv) {
        (Some(route), Some(k))
            if cfg.enabled && one_token && k.past > 0 && !k.all_logits && route.iter().all(|s| s.len() == 1) =>
        {
            route.clone()
        }
        _ => return infer(node, model, input, opts, request_id).await,
    };
    let slots = route.len().max(1);
    let queue = format!("{model}\u{1f}{route:?}");
    enqueue(node, model, queue, (input, opts, request_id), slots, Kind::Decode).await
}

/// Queues a request in `queue` (starting its driver when a slot is free) and waits for its
/// answer until its deadline.
async fn enqueue(
    node: &Node,
    model: &str,
    queue: String,
    (input, opts, request_id): (ModelInput, InferOptions, u64),
    slots: usize,
    kind: Kind,
) -> Result<InferResult, InferError> {
    let wait = opts.deadline.unwrap_or_else(|| node.cfg.request_timeout());
    let (tx, rx) = oneshot::channel();
    let priority = opts.priority;
    let parent = super::trace::SpanParent::of(&tracing::Span::current());
    let member = Member { input, opts, request_id, deadline: Instant::now() + wait, parent, reply: tx };
    if node.batches.push(&queue, priority, member, slots) {
        let (node, model) = (node.clone(), model.to_string());
        actix_web::rt::spawn(async move { drive(&node, &model, &queue, priority, kind).await });
    }
    match tokio::time::timeout(wait, rx).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(_)) => {
            Err(InferError::Failed { attempts: 0, last: "the batch was dropped".into(), node: String::new() })
        }
        Err(_) => Err(InferError::Timeout(wait)),
    }
}

/// What a queue batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Whole forwards, padded to the longest.
    Forward,
    /// Decode steps of sequences on one route, one row each.
    Decode,
    /// The first prefills of sequences, padded to the longest prompt.
    Prefill,
}

/// Holds one forward slot of queue `queue` (of `model`): takes batches until none waits.
async fn drive(node: &Node, model: &str, queue: &str, priority: u8, kind: Kind) {
    let cfg = node.cfg.batching.clone();
    let mut slot = Slot { node, queue, priority, held: true };
    let mut last = 0;
    loop {
        if kind == Kind::Decode && last > 1 {
            gather(node, queue, priority, last, Duration::from_micros(cfg.decode_wait_us)).await;
        } else if cfg.batch_wait_us > 0 {
            tokio::time::sleep(Duration::from_micros(cfg.batch_wait_us)).await;
        }
        let Some(batch) = node.batches.take(queue, priority, cfg.max_batch_tokens) else {
            // `take` gave the slot back, atomically with finding the queue empty.
            slot.held = false;
            return;
        };
        last = batch.len();
        // The batch runs in a span of the first member's trace, linked to the others'.
        let span = tracing::info_span!("batch", model, kind = ?kind, members = batch.len());
        batch[0].parent.adopt(&span, batch[0].opts.trace);
        for m in &batch[1..] {
            m.parent.link(&span, m.opts.trace);
        }
        let run = async {
            match kind {
                _ if batch.len() == 1 => alone(node, model, batch).await,
                Kind::Forward => run_batch(node, model, batch).await,
                Kind::Decode => run_steps(node, model, batch).await,
                Kind::Prefill => run_prefills(node, model, batch).await,
            }
        };
        tracing::Instrument::instrument(run, span).await;
    }
}

/// Waits (at most `wait`) until `expected` steps queue in `queue`: the sequences of the batch
/// just answered sample their next token and come back at slightly different moments, and a
/// batch leaving with the first of them would split the rest into small ones. A sequence that
/// finished does not come back: the wait then ends at `wait`, once.
async fn gather(node: &Node, queue: &str, priority: u8, expected: usize, wait: Duration) {
    let until = tokio::time::Instant::now() + wait;
    loop {
        // Created before the check: a push between the check and the wait still wakes it.
        let pushed = node.batches.pushed.notified();
        if node.batches.waiting_in(queue, priority) >= expected {
            return;
        }
        if tokio::time::timeout_at(until, pushed).await.is_err() {
            return;
        }
    }
}

/// One batched decode step: every member's token as a row, every member's sequence
/// continued at every stage, each member given its own row of logits.
async fn run_steps(node: &Node, model: &str, batch: Vec<Member>) {
    let deadline = latest_deadline(&batch);
    let first = &batch[0].opts;
    let opts = InferOptions {
        outputs: Some(vec!["logits".into()]),
        session: first.session.clone(),
        priority: first.priority,
        kv_batch: batch.iter().filter_map(|m| m.opts.kv).collect(),
        route: first.route.clone(),
        max_attempts: Some(1),
        deadline: Some(deadline),
        trace: first.trace,
        ..InferOptions::default()
    };
    let input = ModelInput {
        batch: batch.len(),
        seq_len: 1,
        input_ids: batch.iter().flat_map(|m| m.input.input_ids.iter().copied()).collect(),
        attention_mask: None,
        token_type_ids: None,
    };
    let layout = vec![(1, 1); batch.len()];
    tracing::debug!(model, sequences = batch.len(), "batched decode step");
    match infer(node, model, input, opts, batch[0].request_id).await {
        Ok(served) => deliver(batch, &served, split(&served.outputs, &layout, &vec![None; layout.len()])),
        // A member's cache was missing somewhere (dropped for the budget, expired), or the
        // batch was refused: every member steps alone, so only that one replays.
        Err(InferError::Failed { last, .. }) if last.contains("no KV cache of sequence") => {
            alone(node, model, batch).await
        }
        Err(InferError::Invalid(_)) => alone(node, model, batch).await,
        // The route failed (a node died or froze): every sequence replays elsewhere.
        Err(e) => fail_all(batch, e),
    }
}

/// The time left to the member that waits longest (at least a millisecond).
fn latest_deadline(batch: &[Member]) -> Duration {
    let now = Instant::now();
    batch
        .iter()
        .map(|m| m.deadline.saturating_duration_since(now))
        .max()
        .unwrap_or_default()
        .max(Duration::from_millis(1))
}

/// The first prefills of several sequences as one padded forward on one route: every
/// sequence's caches start there, cut to its own prompt, and each gets its last token's
/// logits. Any failure: each prefills alone (a prefill starts its caches afresh, so running
/// it again is safe).
async fn run_prefills(node: &Node, model: &str, batch: Vec<Member>) {
    let deadline = latest_deadline(&batch);
    let (input, layout) = pack(&batch.iter().map(|m| &m.input).collect::<Vec<_>>());
    let first = &batch[0].opts;
    let opts = InferOptions {
        outputs: Some(vec!["logits".into()]),
        session: first.session.clone(),
        priority: first.priority,
        kv_batch: batch.iter().filter_map(|m| m.opts.kv).collect(),
        deadline: Some(deadline),
        trace: first.trace,
        ..InferOptions::default()
    };
    let rows = vec![(1, 1); layout.len()];
    tracing::debug!(model, sequences = batch.len(), seq = input.seq_len, "batched prefill");
    match infer(node, model, input, opts, batch[0].request_id).await {
        Ok(served) => deliver(batch, &served, split(&served.outputs, &rows, &vec![None; rows.len()])),
        Err(_) => alone(node, model, batch).await,
    }
}

fn fail_all(batch: Vec<Member>, e: InferError) {
    for m in batch {
        let _ = m.reply.send(Err(e.clone()));
    }
}

/// Every member of a batch served by itself.
async fn alone(node: &Node, model: &str, batch: Vec<Member>) {
    join_all(batch.into_iter().map(|m| async move {
        let answer = infer(node, model, m.input, m.opts, m.request_id).await;
        let _ = m.reply.send(answer);
    }))
    .await;
}

/// A forward slot held by a driver: given back if the driver stops without `take` having
/// given it back (its task dropped), so the queue is never left without a free slot.
struct Slot<'a> {
    node: &'a Node,
    queue: &'a str,
    priority: u8,
    held: bool,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if self.held {
            self.node.batches.release(self.queue, self.priority);
        }
    }
}

/// One batched forward, its outputs delivered to every member.
async fn run_batch(node: &Node, model: &str, batch: Vec<Member>) {
    let deadline = latest_deadline(&batch);
    let (input, layout) = pack(&batch.iter().map(|m| &m.input).collect::<Vec<_>>());
    let opts = merged_options(&batch.iter().map(|m| &m.opts).collect::<Vec<_>>(), deadline);
    let request_id = batch[0].request_id;
    tracing::debug!(model, members = batch.len(), rows = input.batch, seq = input.seq_len, "batched forward");
    match infer(node, model, input, opts, request_id).await {
        Ok(served) => {
            let parts = {
                let wanted: Vec<Option<&Vec<String>>> = batch.iter().map(|m| m.opts.outputs.as_ref()).collect();
                split(&served.outputs, &layout, &wanted)
            };
            deliver(batch, &served, parts);
        }
        // Someone's input was refused after all: everyone again, alone.
        Err(InferError::Invalid(_)) => alone(node, model, batch).await,
        Err(e) => fail_all(batch, e),
    }
}

/// Each member's part of a served batch (or the reason it could not be cut).
fn deliver(batch: Vec<Member>, served: &InferResult, parts: Result<Vec<crate::exec::RunOutputs>, String>) {
    match parts {
        Ok(parts) => {
            for (m, outputs) in batch.into_iter().zip(parts) {
                let (processed_by, route) = (served.processed_by.clone(), served.route.clone());
                let _ = m.reply.send(Ok(InferResult { outputs, processed_by, attempts: served.attempts, route }));
            }
        }
        Err(e) => {
            let last = format!("splitting a batch: {e}");
            fail_all(batch, InferError::Failed { attempts: served.attempts, last, node: String::new() });
        }
    }
}
