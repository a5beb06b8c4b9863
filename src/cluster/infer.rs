//! A request's path through the cluster.
//!
//! The node that takes a request ([`infer`]) validates it, asks its balancer for a route and
//! sends the request to the first stage. Each stage ([`run_stage`]) computes and passes the
//! activation, as raw bytes, straight to the next stage's node; the last stage delivers the
//! outputs to the node that took the request, which waits for them under a deadline. On a
//! failure or a timeout that node retries on a route avoiding the node that failed.
//!
//! A tensor-parallel stage is run by its lead (rank 0): for every sublayer of every block,
//! each member computes its partial sum, the partials come back to the lead and are summed
//! there, and the lead applies the residual: an all-reduce through the lead.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::future::{LocalBoxFuture, join_all};

use crate::exec::HostTensor;
use crate::model::ModelInput;
use crate::model::activation::decode_f32;

use super::balancer::{NoRoute, PickRoute, RequestDone};
use super::node::{LocalShard, Node};
use super::shard::{Forward, ShardError, StageOutput, TpOutput, TpStep};
use super::wire::{self, Deliver, ForwardHeader, PartialHeader, StageFailure, Sublayer, names};

pub use super::infer_types::{InferError, InferOptions, InferResult};

struct InFlight<'a>(&'a Node);

impl<'a> InFlight<'a> {
    fn new(node: &'a Node) -> Self {
        node.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(node)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves one request taken by `node`.
pub async fn infer(
    node: &Node,
    model: &str,
    input: ModelInput,
    opts: InferOptions,
    request_id: u64,
) -> Result<InferResult, InferError> {
    let view = node.view();
    let routes = view.model(model).ok_or_else(|| InferError::UnknownModel(model.to_string()))?;
    input.validate(&routes.config).map_err(|e| InferError::Invalid(e.to_string()))?;
    let deadline = opts.deadline.unwrap_or_else(|| node.cfg.request_timeout());
    let start = Instant::now();
    let balancer = node.balancer();
    let mut avoid: Vec<String> = opts.avoid.clone();
    let mut last = String::from("no attempt");
    let mut last_node = String::new();
    let max = opts.max_attempts.unwrap_or(node.cfg.requests.max_attempts).max(1);
    let mut pinned = opts.route.clone();
    for attempt in 1..=max {
        let left = deadline.saturating_sub(start.elapsed());
        if left.is_zero() {
            return Err(InferError::Timeout(deadline));
        }
        let pick = PickRoute {
            model: model.to_string(),
            avoid: avoid.clone(),
            session: opts.session.clone(),
            view: Arc::clone(&view),
        };
        let attempt_start = Instant::now();
        let from_balancer = pinned.is_none();
        let picked = match (pinned.take(), node.balancers.custom.get()) {
            (Some(route), _) => Ok(Ok(route)),
            (None, Some(custom)) => custom.send(pick).await,
            (None, None) => balancer.send(pick).await,
        };
        let route = match picked {
            Ok(Ok(r)) => r,
            Ok(Err(NoRoute::UnknownModel(m))) => return Err(InferError::UnknownModel(m)),
            Ok(Err(e)) if !avoid.is_empty() => {
                // Every replica of a shard failed this request once: give them one more chance.
                last = e.to_string();
                avoid.clear();
                continue;
            }
            Ok(Err(e)) => {
                return Err(InferError::Failed { attempts: attempt - 1, last: e.to_string(), node: last_node });
            }
            Err(e) => return Err(InferError::Failed { attempts: attempt - 1, last: e.to_string(), node: last_node }),
        };
        // A user's balancer may answer anything: a route with a stage of no member is refused.
        let Some(first) = route.first().and_then(|s| s.first()).map(|m| m.1.clone()) else {
            return Err(InferError::Failed {
                attempts: attempt - 1,
                last: "the balancer picked an empty route".into(),
                node: last_node,
            });
        };
        if route.iter().any(Vec::is_empty) {
            return Err(InferError::Failed {
                attempts: attempt - 1,
                last: "the balancer picked a route with an empty stage".into(),
                node: last_node,
            });
        }
        let delivery = fastrand::u64(..);
        let (tx, rx) = tokio::sync::oneshot::channel();
        node.pending.insert(delivery, tx);
        let header = ForwardHeader {
            request_id,
            delivery,
            model: model.to_string(),
            route: route.clone(),
            stage: 0,
            input: input.clone(),
            reply_to: node.id.clone(),
            block_outputs: opts.block_outputs,
            outputs: opts.outputs.clone(),
            priority: opts.priority,
            blocks: Vec::new(),
            processed_by: Vec::new(),
            kv: opts.kv,
            kv_batch: opts.kv_batch.clone(),
            trace: opts.trace,
            parent: super::trace::SpanParent::of(&tracing::Span::current()),
        };
        let attempt_left = node.cfg.attempt_timeout().min(left);
        let sent = tokio::time::timeout(attempt_left, send_stage(node, &first, header, Vec::new())).await;
        let failure = match sent {
            Err(_) => {
                Some(StageFailure { node: first.clone(), message: "stage timed out".into(), invalid_request: false })
            }
            Ok(Err(f)) => Some(f),
            Ok(Ok(())) => None,
        };
        let outcome = match failure {
            Some(f) => Err(f),
            None => {
                let wait = attempt_left.saturating_sub(attempt_start.elapsed());
                match tokio::time::timeout(wait.max(Duration::from_millis(1)), rx).await {
                    Ok(Ok(d)) => d.result.map(|o| (o, d.processed_by)),
                    _ => Err(StageFailure {
                        node: route.last().and_then(|s| s.first()).map(|m| m.1.clone()).unwrap_or_default(),
                        message: "no delivery before the attempt deadline".into(),
                        invalid_request: false,
                    }),
                }
            }
        };
        node.pending.remove(&delivery);
        let failed = outcome.as_ref().err().filter(|f| !f.invalid_request).map(|f| f.node.clone());
        if from_balancer {
            balancer.do_send(RequestDone { route: route.clone(), latency: attempt_start.elapsed(), failed });
        }
        match outcome {
            Ok((outputs, processed_by)) => {
                return Ok(InferResult { outputs, processed_by, attempts: attempt, route });
            }
            Err(f) if f.invalid_request => return Err(InferError::Invalid(f.message)),
            Err(f) => {
                tracing::warn!(request_id, attempt, node = %f.node, error = %f.message, "attempt failed; retrying elsewhere");
                node.metrics.retries.fetch_add(1, Ordering::Relaxed);
                last = format!("{}: {}", f.node, f.message);
                last_node = f.node.clone();
                // This node too: its replica may be gone (a rejoin that lost it, before the
                // coordinator has noticed) while a peer's serves. With every route avoided,
                // the next pick clears the list and tries them all again.
                avoid.push(f.node);
            }
        }
    }
    Err(InferError::Failed { attempts: max, last, node: last_node })
}

/// Runs `header.stage` on node `target`: here, or over the wire.
fn send_stage<'a>(
    node: &'a Node,
    target: &'a str,
    header: ForwardHeader,
    hidden: Vec<u8>,
) -> LocalBoxFuture<'a, Result<(), StageFailure>> {
    Box::pin(async move {
        if target == node.id {
            return run_stage(node, header, hidden).await;
        }
        let fail = |message: String| StageFailure { node: target.to_string(), message, invalid_request: false };
        let addr = node.addr_of(target).ok_or_else(|| fail("not in the view".into()))?;
        let payload = wire::pack(&header, &hidden).map_err(fail)?;
        let answer = node
            .links
            .call(&addr, names::FORWARD, &payload, node.cfg.attempt_timeout(), header.request_id)
            .await
            .map_err(|e| fail(e.to_string()))?;
        wire::from_bytes::<Result<(), StageFailure>>(&answer).map_err(fail)?
    })
}

fn local_shard(node: &Node, model: &str, shard: usize) -> Result<LocalShard, StageFailure> {
    node.shards.get(&(model.to_string(), shard)).ok_or_else(|| StageFailure {
        node: node.id.clone(),
        message: format!("shard {shard} of {model:?} is not loaded here"),
        invalid_request: false,
    })
}

fn shard_failure(node: &Node, e: ShardError) -> StageFailure {
    let invalid_request = matches!(e, ShardError::Invalid { .. });
    StageFailure { node: node.id.clone(), message: e.to_string(), invalid_request }
}

fn send_failure(node: &Node, e: mlmf_actors::registry::SendError) -> StageFailure {
    StageFailure { node: node.id.clone(), message: e.to_string(), invalid_request: false }
}

/// Runs `msg` on a local shard at priority `prio`, mapping both failure layers.
async fn on_shard<M, R>(node: &Node, shard: &LocalShard, prio: u8, msg: M) -> Result<R, StageFailure>
where
    M: actix::Message<Result = Result<R, ShardError>> + super::shard::Carries + Send + 'static,
    R: Send + 'static,
    super::shard::ShardActor: actix::Handler<M, Result = M::Result>,
{
    shard.send(prio, msg).await.map_err(|e| send_failure(node, e))?.map_err(|e| shard_failure(node, e))
}

/// The bytes of a tensor-parallel step (an activation or a partial sum).
fn tp_bytes(node: &Node, out: TpOutput) -> Result<Vec<u8>, StageFailure> {
    match out {
        TpOutput::Bytes(b) => Ok(b),
        TpOutput::Stage(_) => Err(StageFailure {
            node: node.id.clone(),
            message: "unexpected stage output".into(),
            invalid_request: false,
        }),
    }
}

/// Runs this node's stage of a request, then hands the result on: to the next stage, or to
/// the node that took the request.
pub async fn run_stage(node: &Node, header: ForwardHeader, hidden: Vec<u8>) -> Result<(), StageFailure> {
    use tracing::Instrument;
    let span = tracing::info_span!("stage", trace_id = %header.trace, request_id = %format!("{:016x}", header.request_id),
        model = %header.model, stage = header.stage);
    header.parent.adopt(&span, header.trace);
    let this = super::trace::SpanParent::of(&span);
    async move {
        let mut header = header;
        header.parent = this;
        let ran = run_stage_here(node, header, hidden).await;
        tracing::debug!(ok = ran.is_ok(), "stage ran");
        ran
    }
    .instrument(span)
    .await
}

async fn run_stage_here(node: &Node, mut header: ForwardHeader, hidden: Vec<u8>) -> Result<(), StageFailure> {
    let _guard = InFlight::new(node);
    node.metrics.stages.fetch_add(1, Ordering::Relaxed);
    let members = header.route.get(header.stage).cloned().unwrap_or_default();
    let Some((lead_shard, lead_node)) = members.first().cloned() else {
        return Err(StageFailure {
            node: node.id.clone(),
            message: "empty stage in route".into(),
            invalid_request: true,
        });
    };
    if lead_node != node.id {
        return Err(StageFailure {
            node: node.id.clone(),
            message: format!("stage {} is led by {lead_node}", header.stage),
            invalid_request: false,
        });
    }
    let input = Arc::new(header.input.clone());
    let hidden = if header.stage == 0 { None } else { Some(hidden) };
    let prio = header.priority;
    let out = if members.len() == 1 {
        let shard = local_shard(node, &header.model, lead_shard)?;
        let msg = Forward {
            input,
            hidden,
            block_outputs: header.block_outputs,
            kv: header.kv,
            kv_batch: header.kv_batch.clone(),
        };
        on_shard(node, &shard, prio, msg).await?
    } else if !header.kv_batch.is_empty() {
        return Err(StageFailure {
            node: node.id.clone(),
            message: "a tensor-parallel stage does not batch decode steps".into(),
            invalid_request: true,
        });
    } else {
        tensor_parallel(node, &header, &members, input, hidden).await?
    };
    // The lead first, then the other members of a tensor-parallel group.
    header.processed_by.push(node.id.clone());
    for (_, m) in members.iter().skip(1) {
        if *m != node.id && !header.processed_by[header.processed_by.len() - 1..].contains(m) {
            header.processed_by.push(m.clone());
        }
    }
    match out {
        StageOutput::Hidden { bytes, blocks } => {
            header.blocks.extend(blocks);
            header.stage += 1;
            let next =
                header.route.get(header.stage).and_then(|s| s.first()).map(|m| m.1.clone()).ok_or_else(|| {
                    StageFailure {
                        node: node.id.clone(),
                        message: "route ends before the head".into(),
                        invalid_request: false,
                    }
                })?;
            send_stage(node, &next, header, bytes).await
        }
        StageOutput::Final(mut outputs) => {
            for (k, t) in header.blocks.drain(..) {
                outputs.tensors.insert(format!("block_output.{k}"), t);
            }
            if let Some(wanted) = &header.outputs {
                outputs.tensors.retain(|k, _| wanted.contains(k));
            }
            let d = Deliver { delivery: header.delivery, result: Ok(outputs), processed_by: header.processed_by };
            deliver_to(node, &header.reply_to, d, header.request_id).await
        }
    }
}

async fn deliver_to(node: &Node, reply_to: &str, d: Deliver, request_id: u64) -> Result<(), StageFailure> {
    if reply_to == node.id {
        deliver(node, d);
        return Ok(());
    }
    let fail = |message: String| StageFailure { node: reply_to.to_string(), message, invalid_request: false };
    let addr = node.addr_of(reply_to).ok_or_else(|| fail("the requesting node left the view".into()))?;
    let payload = wire::to_bytes(&d).map_err(fail)?;
    node.links
        .call(&addr, names::DELIVER, &payload, node.cfg.attempt_timeout(), request_id)
        .await
        .map_err(|e| fail(e.to_string()))?;
    Ok(())
}

/// Hands a delivery to the request waiting for it (a late one is dropped).
pub fn deliver(node: &Node, d: Deliver) {
    if let Some((_, tx)) = node.pending.remove(&d.delivery) {
        let _ = tx.send(d);
    }
}

async fn tensor_parallel(
    node: &Node,
    header: &ForwardHeader,
    members: &[(usize, String)],
    input: Arc<ModelInput>,
    hidden: Option<Vec<u8>>,
) -> Result<StageOutput, StageFailure> {
    let lead = local_shard(node, &header.model, members[0].0)?;
    let spec = lead.handle.spec.spec.clone();
    let prio = header.priority;
    let step = |shard: LocalShard, msg: TpStep| async move { tp_bytes(node, on_shard(node, &shard, prio, msg).await?) };
    let mut x = match hidden {
        Some(h) if !spec.embeddings => h,
        None if spec.embeddings => {
            let past = header.kv.map(|k| k.past).unwrap_or(0);
            step(lead.clone(), TpStep::Embed { input: Arc::clone(&input), past }).await?
        }
        _ => {
            return Err(StageFailure {
                node: node.id.clone(),
                message: "stage input does not fit the stage".into(),
                invalid_request: false,
            });
        }
    };
    let mut blocks = Vec::new();
    for layer in spec.layers.clone() {
        for sublayer in [Sublayer::Attention, Sublayer::Mlp] {
            let partials = members.iter().map(|(shard, member)| {
                let x = x.clone();
                let input = Arc::clone(&input);
                async move {
                    if member == &node.id {
                        let s = local_shard(node, &header.model, *shard)?;
                        return step(s, TpStep::Partial { input, layer, sublayer, x, kv: header.kv }).await;
                    }
                    let fail = |message: String| StageFailure { node: member.clone(), message, invalid_request: false };
                    let addr = node.addr_of(member).ok_or_else(|| fail("not in the view".into()))?;
                    let h = PartialHeader {
                        request_id: header.request_id,
                        model: header.model.clone(),
                        shard: *shard,
                        layer,
                        sublayer,
                        input: (*input).clone(),
                        priority: prio,
                        kv: header.kv,
                    };
                    let payload = wire::pack(&h, &x).map_err(fail)?;
                    let answer = node
                        .links
                        .call(&addr, names::TP_PARTIAL, &payload, node.cfg.attempt_timeout(), header.request_id)
                        .await
                        .map_err(|e| fail(e.to_string()))?;
                    wire::from_bytes::<Result<Vec<u8>, StageFailure>>(&answer).map_err(fail)?
                }
            });
            let partials = join_all(partials).await.into_iter().collect::<Result<Vec<_>, _>>()?;
            x = step(lead.clone(), TpStep::Combine { layer, sublayer, x, partials }).await?;
        }
        if header.block_outputs {
            let (shape, data) = decode_f32(&x).map_err(|e| StageFailure {
                node: node.id.clone(),
                message: e.to_string(),
                invalid_request: false,
            })?;
            blocks.push((layer, HostTensor { shape, data }));
        }
    }
    let last_only = header.kv.is_some_and(|k| !k.all_logits);
    let out = on_shard(node, &lead, prio, TpStep::Finish { x, last_only }).await?;
    match out {
        TpOutput::Stage(StageOutput::Hidden { bytes, .. }) => Ok(StageOutput::Hidden { bytes, blocks }),
        TpOutput::Stage(StageOutput::Final(mut o)) => {
            for (k, t) in blocks {
                o.tensors.insert(format!("block_output.{k}"), t);
            }
            Ok(StageOutput::Final(o))
        }
        TpOutput::Bytes(_) => {
            Err(StageFailure { node: node.id.clone(), message: "unexpected bytes".into(), invalid_request: false })
        }
    }
}

/// Answers a member's partial sum for a peer's tensor-parallel stage.
pub async fn partial(node: &Node, h: PartialHeader, x: Vec<u8>) -> Result<Vec<u8>, StageFailure> {
    let _guard = InFlight::new(node);
    let shard = local_shard(node, &h.model, h.shard)?;
    let prio = h.priority;
    let msg = TpStep::Partial { input: Arc::new(h.input), layer: h.layer, sublayer: h.sublayer, x, kv: h.kv };
    tp_bytes(node, on_shard(node, &shard, prio, msg).await?)
}
