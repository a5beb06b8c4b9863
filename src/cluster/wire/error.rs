//! [`ApiError`]: the one error a node's API answers with, over HTTP as
//! `{"error":{"code","message"}}` with its status, and over the peer link when a node forwards
//! a control operation to the coordinator (so the node that took the request answers exactly
//! as the coordinator would).

use serde::{Deserialize, Serialize};

/// A control operation's failure, with the HTTP status it maps to (so a node that forwards
/// an operation to the coordinator answers exactly as the coordinator would).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// Machine-readable code.
    pub code: String,
    /// What happened.
    pub message: String,
    /// The limit that refused the request (a tenant's 429), in the body as `limit`.
    pub limit: Option<String>,
    /// Seconds the client should wait (`Retry-After`; 1 when absent on a 429 or 503).
    pub retry_after_s: Option<u64>,
}

impl ApiError {
    /// An error with `status` and `code`.
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> ApiError {
        ApiError { status, code: code.into(), message: message.into(), limit: None, retry_after_s: None }
    }

    /// 400.
    pub fn bad_request(code: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(400, code, message)
    }

    /// The JSON body: `{"error":{"code","message"}}`.
    pub fn body(&self) -> serde_json::Value {
        let mut body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        if let Some(limit) = &self.limit {
            body["error"]["limit"] = limit.as_str().into();
        }
        body
    }

    /// The same error naming the `limit` that refused it, to be retried in `retry_after_s`.
    pub fn with_limit(mut self, limit: &str, retry_after_s: u64) -> ApiError {
        self.limit = Some(limit.to_string());
        self.retry_after_s = Some(retry_after_s);
        self
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(404, "not_found", message)
    }

    /// 503.
    pub fn unavailable(code: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(503, code, message)
    }
}
