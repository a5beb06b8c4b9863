//! How an [`ApiError`] (defined with the wire types, since the coordinator's answers carry it
//! between nodes) becomes an HTTP response: `{"error":{"code","message"}}` with its status,
//! and `Retry-After` on 429 and 503; and how an inference failure maps to one.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

use crate::cluster::embedding::EmbedError;
use crate::cluster::generation::GenerateError;
use crate::cluster::infer::InferError;
pub use crate::cluster::wire::ApiError;

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        let mut r = HttpResponse::build(self.status_code());
        if let Some(s) = self.retry_after_s {
            r.insert_header(("Retry-After", s.to_string()));
        } else if self.status == 503 || self.status == 429 {
            r.insert_header(("Retry-After", "1"));
        }
        r.content_type("application/json").body(self.body().to_string())
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

impl From<EmbedError> for ApiError {
    fn from(e: EmbedError) -> Self {
        match e {
            EmbedError::Model(e) => e,
            EmbedError::Input(_) => ApiError::bad_request("invalid_request", e.to_string()),
            EmbedError::Infer(e) => e.into(),
            EmbedError::NoHiddenState => ApiError::new(500, "no_hidden_state", e.to_string()),
        }
    }
}

impl From<GenerateError> for ApiError {
    fn from(e: GenerateError) -> Self {
        ApiError::new(503, "generation_failed", e.to_string())
    }
}
