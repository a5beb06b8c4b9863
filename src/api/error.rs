//! [`ApiError`]: every HTTP error is `{"error":{"code","message"}}` with a fitting status.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

use crate::cluster::infer::InferError;
use crate::cluster::wire::ControlError;

/// An HTTP error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    /// Status.
    pub status: u16,
    /// Machine-readable code.
    pub code: String,
    /// What happened, for a person.
    pub message: String,
}

impl ApiError {
    /// An error.
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> ApiError {
        ApiError { status, code: code.into(), message: message.into() }
    }

    /// 400.
    pub fn bad_request(code: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(400, code, message)
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({"error": {"code": self.code, "message": self.message}})
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        let mut r = HttpResponse::build(self.status_code());
        if self.status == 503 || self.status == 429 {
            r.insert_header(("Retry-After", "1"));
        }
        r.content_type("application/json").body(self.body().to_string())
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        ApiError { status: e.status, code: e.code, message: e.message }
    }
}

impl From<InferError> for ApiError {
    fn from(e: InferError) -> Self {
        let (status, code) = match &e {
            InferError::UnknownModel(_) => (404, "model_not_found"),
            InferError::Invalid(_) => (400, "invalid_input"),
            InferError::Failed { .. } => (503, "inference_failed"),
            InferError::Timeout(_) => (504, "timeout"),
        };
        ApiError::new(status, code, e.to_string())
    }
}
