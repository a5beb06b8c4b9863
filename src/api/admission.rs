//! [`Admission`]: one inference request (`/infer`, completions, chat, embeddings, KServe)
//! counted against the node's bound of requests in flight (`[requests] max_in_flight`; past
//! it the answer is 429 at once rather than a queue without limit) and, for a tenant's key,
//! against the tenant's limits and models ([`super::tenants`]); recorded in the per-model
//! (and per-tenant) metrics when it ends. A streamed answer holds its admission until its
//! last event, so a long stream counts as in flight for as long as it runs.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use actix_web::{HttpMessage, HttpRequest, HttpResponse};
use futures_util::future::LocalBoxFuture;

use crate::cluster::node::Node;
use crate::cluster::trace::TraceId;

use super::error::ApiError;
use super::tenants::{Tenant, TenantSlot};
use super::trace_context::{request_span, with_trace};
use super::types::Priority;

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
    tenant: Option<Arc<Tenant>>,
    /// The tenant's place in flight, freed on drop.
    _slot: Option<TenantSlot>,
}

impl Admission {
    /// Admits the request `http` on `node` (for `model` when the route names it), or answers
    /// 429 when `max_in_flight` are in flight or its tenant is over a limit, 403 when its
    /// tenant may not use `model`.
    pub fn enter(node: &Node, http: &HttpRequest, model: Option<&str>) -> Result<Admission, ApiError> {
        node.requests.fetch_add(1, Ordering::Relaxed);
        let taken = node.http_in_flight.fetch_add(1, Ordering::AcqRel);
        let tenant = http.extensions().get::<Arc<Tenant>>().cloned();
        let mut admitted =
            Admission { node: node.clone(), label: None, start: Instant::now(), status: 429, tenant, _slot: None };
        if let Some(t) = admitted.tenant.clone() {
            match t.admit() {
                Ok(slot) => admitted._slot = Some(slot),
                Err(e) => return Err(admitted.refuse(e)),
            }
        }
        if let Some(m) = model {
            admitted.model(m)?;
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

    /// Records `e` as the answer and returns it.
    fn refuse(&mut self, e: ApiError) -> ApiError {
        self.status = e.status;
        e
    }

    /// Names the request's model (its metrics label when it is a ready model); 403 when the
    /// tenant may not use it.
    pub fn model(&mut self, model: &str) -> Result<(), ApiError> {
        if let Some(t) = &self.tenant
            && let Err(e) = t.allows(model)
        {
            return Err(self.refuse(e));
        }
        if self.node.view().model(model).is_some() {
            self.label = Some(model.to_string());
        }
        Ok(())
    }

    /// The priority a request asking for `asked` gets (its tenant's `max_priority` at most).
    pub fn priority(&self, asked: Option<Priority>) -> Priority {
        let asked = asked.unwrap_or_default();
        self.tenant.as_ref().map_or(asked, |t| t.priority(asked))
    }

    /// Charges the tokens the request used to its tenant.
    pub fn tokens(&self, prompt: usize, completion: usize) {
        if let Some(t) = &self.tenant {
            t.charge(prompt, completion);
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
    pub fn name_model(slot: &mut Option<Admission>, model: &str) -> Result<(), ApiError> {
        match slot.as_mut() {
            Some(a) => a.model(model),
            None => Ok(()),
        }
    }

    /// The admission in `slot` (a request's, until a stream takes it).
    pub fn of(slot: &Option<Admission>) -> Result<&Admission, ApiError> {
        slot.as_ref().ok_or_else(|| ApiError::new(500, "internal", "the request was not admitted"))
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
    let mut slot = Some(Admission::enter(node, http, None)?);
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
        if let Some(t) = &self.tenant {
            t.answered(self.status);
        }
    }
}
