//! The W3C `traceparent` of an HTTP request: the trace a request joins (the client's, when it
//! sends a valid header; a new one otherwise), the span the request runs in (a child of the
//! client's span when spans are exported), and the header the answer carries back so that a
//! client sees the trace id its request's spans share on every node.

use actix_web::HttpRequest;
use actix_web::HttpResponse;

use crate::cluster::trace::{SpanParent, TraceId, exported_trace, parse_traceparent};

/// The span `req` is served in (named by its route pattern, never its path, which may carry
/// anything), and the trace it belongs to: the client's trace when it sent a valid
/// `traceparent`, else the one span export started, else a fresh one.
pub fn request_span(req: &HttpRequest) -> (tracing::Span, TraceId) {
    let route = req.match_pattern().unwrap_or_else(|| "(unmatched)".into());
    let span = tracing::info_span!("request", %route, method = %req.method(), trace_id = tracing::field::Empty);
    let parent = req.headers().get("traceparent").and_then(|v| v.to_str().ok()).and_then(parse_traceparent);
    if let Some((trace, caller)) = parent {
        caller.adopt(&span, trace);
    }
    let trace = exported_trace(&span).or(parent.map(|(t, _)| t)).unwrap_or_else(TraceId::random);
    span.record("trace_id", tracing::field::display(trace));
    (span, trace)
}

/// `result` with a `traceparent` header naming `trace` and the request's `span` when it is
/// an answer (errors keep their own shape).
pub fn with_trace<E>(result: Result<HttpResponse, E>, trace: TraceId, span: &tracing::Span) -> Result<HttpResponse, E> {
    let id = match SpanParent::of(span).span {
        0 => fastrand::u64(1..),
        id => id,
    };
    result.map(|mut r| {
        if let Ok(v) = actix_web::http::header::HeaderValue::from_str(&trace.traceparent(id)) {
            r.headers_mut().insert(actix_web::http::header::HeaderName::from_static("traceparent"), v);
        }
        r
    })
}
