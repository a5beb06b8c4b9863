//! Server-sent events: a response whose body is the events a task sends into a channel (the
//! channel closes when the client goes away, which is how the task learns it), and the
//! events themselves.

use actix_web::{HttpResponse, web};
use futures_util::StreamExt;
use serde_json::Value;

use super::admission::Admission;
use super::error::ApiError;

/// The last event of a stream.
pub const DONE: &str = "data: [DONE]\n\n";

/// One event carrying `v`.
pub fn event(v: &Value) -> String {
    format!("data: {v}\n\n")
}

/// An event carrying an error, for a failure after the stream began.
pub fn error_event(e: &ApiError) -> String {
    event(&e.body())
}

/// Ends a stream into `tx` as its generation ended: an error event when it failed, then
/// `[DONE]`; `admitted` records 200, the failure's status, or (the client went away) none.
pub fn finish<T>(
    tx: &tokio::sync::mpsc::UnboundedSender<String>,
    result: Result<T, ApiError>,
    admitted: &mut Admission,
) {
    if let Err(e) = &result {
        let _ = tx.send(error_event(e));
    }
    if tx.send(DONE.to_string()).is_ok() {
        admitted.end(&result);
    }
}

/// A `text/event-stream` response of the events sent into `rx`.
pub fn response(rx: tokio::sync::mpsc::UnboundedReceiver<String>) -> HttpResponse {
    let events = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|s| (Ok::<_, actix_web::Error>(web::Bytes::from(s)), rx))
    });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .streaming(events.boxed_local())
}
