//! [`Admission`]: one inference request (`/infer`, completions, chat, embeddings) counted
//! against the node's bound of requests in flight (`[requests] max_in_flight`; past it the
//! answer is 429 at once rather than a queue without limit), and recorded in the per-model
//! request metrics when it ends. A streamed answer holds its admission until its last event,
//! so a long stream counts as in flight for as long as it runs.

use std::sync::atomic::Ordering;
use std::time::Instant;

use actix_web::{HttpRequest, HttpResponse};
use futures_util::future::LocalBoxFuture;

use crate::cluster::node::Node;
use crate::cluster::trace::TraceId;

use super::error::ApiError;
use super::trace_context::{request_span, with_trace};

/// The metrics label of a request for a model that is not ready (bounded: arbitrary names
/// from clients never become labels).
const UNKNOWN_MODEL: &str = "(unknown)";

/// The status recorded for a request that ended without an answer (the client went away).
const CLIENT_CLOSED: u16 = 499;

/// An admitted request; dropping it frees its place and records it.
pub struct Admission {
    node: Node,
    label: Option<String>,
    start: Instant,
    status: u16,
}

impl Admission {
    /// Admits a request on `node` (for `model` when the route names it), or answers 429 when
    /// `max_in_flight` are in flight.
    pub fn enter(node: &Node, model: Option<&str>) -> Result<Admission, ApiError> {
        node.requests.fetch_add(1, Ordering::Relaxed);
        let taken = node.http_in_flight.fetch_add(1, Ordering::AcqRel);
        let mut admitted = Admission { node: node.clone(), label: None, start: Instant::now(), status: 429 };
        if let Some(m) = model {
            admitted.model(m);
        }
        let limit = node.cfg.requests.max_in_flight;
        if taken >= limit {
            let e = ApiError::new(
                429,
                "overloaded",
                format!("{taken} requests in flight on this node (limit {limit}); retry later"),
            );
            admitted.status = e.status;
            return Err(e);
        }
        admitted.status = CLIENT_CLOSED;
        Ok(admitted)
    }

    /// Names the request's model (its metrics label when it is a ready model).
    pub fn model(&mut self, model: &str) {
        if self.node.view().model(model).is_some() {
            self.label = Some(model.to_string());
        }
    }

    /// Records how the request was answered (an error's status, or 200).
    pub fn end<T>(&mut self, result: &Result<T, ApiError>) {
        self.status = match result {
            Ok(_) => 200,
            Err(e) => e.status,
        };
    }

    /// Names the model of the admission in `slot` (see [`Admission::model`]).
    pub fn name_model(slot: &mut Option<Admission>, model: &str) {
        if let Some(a) = slot.as_mut() {
            a.model(model);
        }
    }

    /// The admission in `slot`, taken by a task that streams the answer.
    pub fn take(slot: &mut Option<Admission>) -> Result<Admission, ApiError> {
        slot.take().ok_or_else(|| ApiError::new(500, "internal", "the request was not admitted"))
    }
}

/// The frame of an OpenAI-compatible route: the request admitted (or a 429), its trace taken
/// from `http`, `serve` run with both (a streamed answer takes the admission out of the slot
/// into its task), the outcome recorded, and the answer's `traceparent` set.
pub async fn admitted(
    node: &Node,
    http: &HttpRequest,
    serve: impl for<'a> FnOnce(TraceId, &'a mut Option<Admission>) -> LocalBoxFuture<'a, Result<HttpResponse, ApiError>>,
) -> Result<HttpResponse, ApiError> {
    let mut slot = Some(Admission::enter(node, None)?);
    let (span, trace) = request_span(http);
    let result = tracing::Instrument::instrument(serve(trace, &mut slot), span.clone()).await;
    if let Some(a) = slot.as_mut() {
        a.end(&result);
    }
    with_trace(result, trace, &span)
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.node.http_in_flight.fetch_sub(1, Ordering::AcqRel);
        let model = self.label.as_deref().unwrap_or(UNKNOWN_MODEL);
        let ok = self.status == 200;
        self.node.metrics.request(model, self.status, ok.then(|| self.start.elapsed().as_secs_f64()));
    }
}
