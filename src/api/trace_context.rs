//! The W3C `traceparent` of an HTTP request: the trace a request joins (the client's, when it
//! sends a valid header; a new one otherwise), and the header the answer carries back so that
//! a client sees the trace id its request's spans share on every node.

use actix_web::HttpRequest;
use actix_web::HttpResponse;

use crate::cluster::trace::TraceId;

/// The trace of `req`.
pub fn trace_of(req: &HttpRequest) -> TraceId {
    req.headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(TraceId::from_traceparent)
        .unwrap_or_else(TraceId::random)
}

/// `result` with a `traceparent` header naming `trace` when it is an answer (errors keep
/// their own shape).
pub fn with_trace<E>(result: Result<HttpResponse, E>, trace: TraceId) -> Result<HttpResponse, E> {
    result.map(|mut r| {
        if let Ok(v) = actix_web::http::header::HeaderValue::from_str(&trace.traceparent(fastrand::u64(1..))) {
            r.headers_mut().insert(actix_web::http::header::HeaderName::from_static("traceparent"), v);
        }
        r
    })
}
