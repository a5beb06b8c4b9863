//! Tensors as bytes instead of JSON numbers: little-endian `f32` and integer buffers (the
//! KServe v2 binary extension), and an inference answer as a safetensors file
//! (`Accept: application/octet-stream` on `/v1/models/{id}/infer`).

use std::collections::HashMap;

use super::error::ApiError;
use super::types::InferResponse;

/// The media type of both binary answers.
pub const OCTET_STREAM: &str = "application/octet-stream";

/// `data` as little-endian `f32` bytes.
pub fn f32_le(data: &[f32]) -> Vec<u8> {
    data.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Integers of a little-endian buffer of `width` bytes each (4: `i32`, 8: `i64`).
pub fn ints_le(bytes: &[u8], width: usize) -> Vec<i64> {
    match width {
        4 => bytes.chunks_exact(4).map(|c| i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]]))).collect(),
        _ => bytes
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect(),
    }
}

/// Whether a request's `Accept` asks for bytes rather than JSON.
pub fn wants_bytes(http: &actix_web::HttpRequest) -> bool {
    http.headers()
        .get(actix_web::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|m| m.split(';').next().is_some_and(|m| m.trim() == OCTET_STREAM)))
}

/// `answer` as a safetensors file: every output an `F32` tensor of its shape; the model,
/// request id, nodes, attempts and time in its `__metadata__`.
pub fn safetensors_answer(answer: &InferResponse) -> Result<Vec<u8>, ApiError> {
    let bytes: Vec<(&String, Vec<usize>, Vec<u8>)> =
        answer.outputs.iter().map(|(k, t)| (k, t.shape.clone(), f32_le(&t.data))).collect();
    let mut views = Vec::with_capacity(bytes.len());
    for (name, shape, data) in &bytes {
        let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data)
            .map_err(|e| ApiError::new(500, "internal", format!("output {name}: {e}")))?;
        views.push((name.as_str(), view));
    }
    let metadata = HashMap::from([
        ("model".to_string(), answer.model.clone()),
        ("request_id".to_string(), answer.request_id.clone()),
        ("processed_by".to_string(), answer.processed_by.join(",")),
        ("attempts".to_string(), answer.attempts.to_string()),
        ("processing_time_ms".to_string(), format!("{:.3}", answer.processing_time_ms)),
    ]);
    safetensors::tensor::serialize(views, Some(metadata)).map_err(|e| ApiError::new(500, "internal", e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_round_trip_through_little_endian_bytes() {
        let v: Vec<u8> = [7i64, -1, 50256].iter().flat_map(|x| x.to_le_bytes()).collect();
        assert_eq!(ints_le(&v, 8), [7, -1, 50256]);
        let v: Vec<u8> = [7i32, -1, 50256].iter().flat_map(|x| x.to_le_bytes()).collect();
        assert_eq!(ints_le(&v, 4), [7, -1, 50256]);
        assert_eq!(f32_le(&[1.0]), 1.0f32.to_le_bytes());
    }

    #[test]
    fn a_safetensors_answer_reads_back() {
        let answer = InferResponse {
            model: "m".into(),
            outputs: [(
                "logits".to_string(),
                super::super::types::TensorJson { shape: vec![1, 2], data: vec![0.5, -2.0] },
            )]
            .into(),
            processed_by: vec!["a".into(), "b".into()],
            processing_time_ms: 1.0,
            attempts: 1,
            request_id: "00ff".into(),
        };
        let file = safetensors_answer(&answer).unwrap();
        let (_, meta) = safetensors::SafeTensors::read_metadata(&file).unwrap();
        assert_eq!(meta.metadata().as_ref().unwrap()["processed_by"], "a,b");
        let st = safetensors::SafeTensors::deserialize(&file).unwrap();
        let t = st.tensor("logits").unwrap();
        assert_eq!(t.shape(), [1, 2]);
        assert_eq!(t.data(), f32_le(&[0.5, -2.0]).as_slice());
    }
}
