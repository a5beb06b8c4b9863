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
    let wait = opts.deadline.unwrap_or_else(|| node.cfg.request_timeout());
    let (tx, rx) = oneshot::channel();
    let priority = opts.priority;
    let member = Member { input, opts, request_id, deadline: Instant::now() + wait, reply: tx };
    if node.batches.push(model, priority, member, slots) {
        let (node, model) = (node.clone(), model.to_string());
        actix_web::rt::spawn(async move { drive(&node, &model, priority).await });
    }
    match tokio::time::timeout(wait, rx).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(_)) => {
            Err(InferError::Failed { attempts: 0, last: "the batch was dropped".into(), node: String::new() })
        }
        Err(_) => Err(InferError::Timeout(wait)),
    }
}

/// Holds one forward slot of `(model, priority)`: takes batches until none waits.
async fn drive(node: &Node, model: &str, priority: u8) {
    let cfg = node.cfg.batching.clone();
    let mut slot = Slot { node, model, priority, held: true };
    loop {
        if cfg.batch_wait_us > 0 {
            tokio::time::sleep(Duration::from_micros(cfg.batch_wait_us)).await;
        }
        let Some(batch) = node.batches.take(model, priority, cfg.max_batch_tokens) else {
            // `take` gave the slot back, atomically with finding the queue empty.
            slot.held = false;
            return;
        };
        run_batch(node, model, batch).await;
    }
}

/// A forward slot held by a driver: given back if the driver stops without `take` having
/// given it back (its task dropped), so the queue is never left without a free slot.
struct Slot<'a> {
    node: &'a Node,
    model: &'a str,
    priority: u8,
    held: bool,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if self.held {
            self.node.batches.release(self.model, self.priority);
        }
    }
}

/// One batched forward, its outputs delivered to every member.
async fn run_batch(node: &Node, model: &str, mut batch: Vec<Member>) {
    if batch.len() == 1 {
        let m = batch.pop().expect("one member");
        let answer = infer(node, model, m.input, m.opts, m.request_id).await;
        let _ = m.reply.send(answer);
        return;
    }
    let now = Instant::now();
    let deadline = batch.iter().map(|m| m.deadline.saturating_duration_since(now)).max().unwrap_or_default();
    let (input, layout) = pack(&batch.iter().map(|m| &m.input).collect::<Vec<_>>());
    let opts =
        merged_options(&batch.iter().map(|m| &m.opts).collect::<Vec<_>>(), deadline.max(Duration::from_millis(1)));
    let request_id = batch[0].request_id;
    tracing::debug!(model, members = batch.len(), rows = input.batch, seq = input.seq_len, "batched forward");
    match infer(node, model, input, opts, request_id).await {
        Ok(served) => {
            let wanted: Vec<Option<&Vec<String>>> = batch.iter().map(|m| m.opts.outputs.as_ref()).collect();
            match split(&served.outputs, &layout, &wanted) {
                Ok(parts) => {
                    for (m, outputs) in batch.into_iter().zip(parts) {
                        let (processed_by, route) = (served.processed_by.clone(), served.route.clone());
                        let _ =
                            m.reply.send(Ok(InferResult { outputs, processed_by, attempts: served.attempts, route }));
                    }
                }
                Err(e) => {
                    let last = format!("splitting a batch: {e}");
                    for m in batch {
                        let _ = m.reply.send(Err(InferError::Failed {
                            attempts: served.attempts,
                            last: last.clone(),
                            node: String::new(),
                        }));
                    }
                }
            }
        }
        // Someone's input was refused after all: everyone again, alone.
        Err(InferError::Invalid(_)) => {
            join_all(batch.into_iter().map(|m| async move {
                let answer = infer(node, model, m.input, m.opts, m.request_id).await;
                let _ = m.reply.send(answer);
            }))
            .await;
        }
        Err(e) => {
            for m in batch {
                let _ = m.reply.send(Err(e.clone()));
            }
        }
    }
}
