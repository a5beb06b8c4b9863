//! Reading a request body: bytes or JSON of bounded size, refused before it is allocated past
//! the node's limit.

use actix_web::web;
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// Reads a body of at most `limit` bytes: 413 beyond it.
pub async fn read_bytes(mut body: web::Payload, limit: usize) -> Result<web::Bytes, ApiError> {
    let mut buf = web::BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request("invalid_body", e.to_string()))?;
        if buf.len() + chunk.len() > limit {
            return Err(ApiError::new(413, "body_too_large", format!("request body exceeds {limit} bytes")));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// Reads a JSON body of at most `limit` bytes: 413 beyond it, 400 for anything malformed.
pub async fn read_json<T: DeserializeOwned>(body: web::Payload, limit: usize) -> Result<T, ApiError> {
    let buf = read_bytes(body, limit).await?;
    serde_json::from_slice(&buf).map_err(|e| ApiError::bad_request("invalid_json", e.to_string()))
}
