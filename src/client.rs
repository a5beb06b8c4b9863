//! [`ClusterClient`]: the HTTP API from Rust (what `mlmf load|infer|status` and the
//! deployment manager use). Runs on an actix runtime.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use mlmf_actors::auth::ClusterKey;

use crate::api::types::{InferRequest, InferResponse, LoadRequest};
use crate::cluster::wire::{ModelState, ModelStatus};

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The node could not be reached.
    #[error("cannot reach {addr}: {message}")]
    Unreachable {
        /// The node.
        addr: String,
        /// Why.
        message: String,
    },
    /// The node answered with an error.
    #[error("{status} {code}: {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// Error code.
        code: String,
        /// Message.
        message: String,
    },
    /// The answer was not what the API promises.
    #[error("unexpected answer: {0}")]
    Decode(String),
}

/// A client of one node's HTTP API.
#[derive(Clone, Debug)]
pub struct ClusterClient {
    addr: String,
    key: Option<ClusterKey>,
    timeout: Duration,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

impl ClusterClient {
    /// A client of the node at `host:port`.
    pub fn new(addr: &str, key: Option<ClusterKey>) -> ClusterClient {
        ClusterClient { addr: addr.to_string(), key, timeout: Duration::from_secs(120), tls: None }
    }

    /// Speaks HTTPS, trusting what `tls` trusts (see `mlmf_actors::tls::client_trusting`).
    pub fn with_tls(mut self, tls: std::sync::Arc<rustls::ClientConfig>) -> ClusterClient {
        self.tls = Some(tls);
        self
    }

    /// The node's address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    fn request(&self, method: awc::http::Method, path: &str) -> awc::ClientRequest {
        let builder = awc::Client::builder().timeout(self.timeout);
        let (client, scheme) = match &self.tls {
            Some(t) => {
                (builder.connector(awc::Connector::new().rustls_0_23(std::sync::Arc::clone(t))).finish(), "https")
            }
            None => (builder.finish(), "http"),
        };
        let mut req = client.request(method, format!("{scheme}://{}{path}", self.addr));
        if let Some(k) = &self.key {
            req = req.bearer_auth(String::from_utf8_lossy(k.expose()));
        }
        req
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: awc::http::Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let req = self.request(method, path);
        let unreachable = |message: String| ClientError::Unreachable { addr: self.addr.clone(), message };
        let mut resp = match body {
            Some(b) => req.send_json(b).await,
            None => req.send().await,
        }
        .map_err(|e| unreachable(e.to_string()))?;
        let bytes = resp.body().limit(1 << 30).await.map_err(|e| unreachable(e.to_string()))?;
        if !resp.status().is_success() {
            let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            return Err(ClientError::Api {
                status: resp.status().as_u16(),
                code: v["error"]["code"].as_str().unwrap_or("unknown").to_string(),
                message: v["error"]["message"].as_str().unwrap_or("").to_string(),
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// `POST /v1/models`.
    pub async fn load(&self, req: &LoadRequest) -> Result<ModelStatus, ClientError> {
        self.call(awc::http::Method::POST, "/v1/models", Some(req)).await
    }

    /// `GET /v1/models/{id}`.
    pub async fn model(&self, id: &str) -> Result<ModelStatus, ClientError> {
        self.call::<(), _>(awc::http::Method::GET, &format!("/v1/models/{id}"), None).await
    }

    /// `GET /v1/models`.
    pub async fn models(&self) -> Result<Vec<ModelStatus>, ClientError> {
        let v: serde_json::Value = self.call::<(), _>(awc::http::Method::GET, "/v1/models", None).await?;
        serde_json::from_value(v["models"].clone()).map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// `DELETE /v1/models/{id}`.
    pub async fn unload(&self, id: &str) -> Result<(), ClientError> {
        let _: serde_json::Value =
            self.call::<(), _>(awc::http::Method::DELETE, &format!("/v1/models/{id}"), None).await?;
        Ok(())
    }

    /// `POST /v1/completions` (OpenAI's shape; see the API docs for the fields). With
    /// `"stream": true` in `body`, `on_chunk` sees every streamed chunk as it arrives and the
    /// last chunk is returned; otherwise the whole answer is.
    pub async fn completion(
        &self,
        body: &serde_json::Value,
        mut on_chunk: impl FnMut(&serde_json::Value),
    ) -> Result<serde_json::Value, ClientError> {
        if !body["stream"].as_bool().unwrap_or(false) {
            return self.call(awc::http::Method::POST, "/v1/completions", Some(body)).await;
        }
        use futures_util::StreamExt;
        let unreachable = |message: String| ClientError::Unreachable { addr: self.addr.clone(), message };
        let mut resp = self
            .request(awc::http::Method::POST, "/v1/completions")
            .timeout(Duration::from_secs(3600))
            .send_json(body)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        if !resp.status().is_success() {
            let bytes = resp.body().limit(1 << 20).await.map_err(|e| unreachable(e.to_string()))?;
            let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            return Err(ClientError::Api {
                status: resp.status().as_u16(),
                code: v["error"]["code"].as_str().unwrap_or("unknown").to_string(),
                message: v["error"]["message"].as_str().unwrap_or("").to_string(),
            });
        }
        let (mut pending, mut last) = (Vec::new(), serde_json::Value::Null);
        while let Some(part) = resp.next().await {
            pending.extend_from_slice(&part.map_err(|e| unreachable(e.to_string()))?);
            while let Some(i) = pending.windows(2).position(|w| w == b"\n\n") {
                let event: Vec<u8> = pending.drain(..i + 2).collect();
                let text = String::from_utf8_lossy(&event);
                for data in text.lines().filter_map(|l| l.strip_prefix("data: ")) {
                    if data == "[DONE]" {
                        return Ok(last);
                    }
                    let chunk: serde_json::Value =
                        serde_json::from_str(data).map_err(|e| ClientError::Decode(e.to_string()))?;
                    if let Some(e) = chunk.get("error") {
                        return Err(ClientError::Api {
                            status: 503,
                            code: e["code"].as_str().unwrap_or("unknown").to_string(),
                            message: e["message"].as_str().unwrap_or("").to_string(),
                        });
                    }
                    on_chunk(&chunk);
                    last = chunk;
                }
            }
        }
        Err(ClientError::Decode("the stream ended before [DONE]".into()))
    }

    /// `POST /v1/chat/completions`, whole (OpenAI's shape; see the API docs for the fields).
    pub async fn chat(&self, body: &serde_json::Value) -> Result<serde_json::Value, ClientError> {
        self.call(awc::http::Method::POST, "/v1/chat/completions", Some(body)).await
    }

    /// `POST /v1/embeddings` with texts: one vector per text, in the texts' order.
    pub async fn embeddings(&self, model: &str, texts: &[&str]) -> Result<Vec<Vec<f32>>, ClientError> {
        let body = serde_json::json!({"model": model, "input": texts});
        let v: serde_json::Value = self.call(awc::http::Method::POST, "/v1/embeddings", Some(&body)).await?;
        let mut out: Vec<Option<Vec<f32>>> = vec![None; texts.len()];
        for item in v["data"].as_array().into_iter().flatten() {
            let slot = item["index"].as_u64().and_then(|i| out.get_mut(i as usize));
            let vector: Option<Vec<f32>> =
                item["embedding"].as_array().and_then(|e| e.iter().map(|x| x.as_f64().map(|x| x as f32)).collect());
            if let (Some(slot), Some(vector)) = (slot, vector) {
                *slot = Some(vector);
            }
        }
        out.into_iter()
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| ClientError::Decode("an embedding is missing from the answer".into()))
    }

    /// `POST /v1/models/{id}/infer`.
    pub async fn infer(&self, id: &str, req: &InferRequest) -> Result<InferResponse, ClientError> {
        self.call(awc::http::Method::POST, &format!("/v1/models/{id}/infer"), Some(req)).await
    }

    /// `POST /v1/models/{id}/migrate`: starts moving a replica; see [`ClusterClient::migrate_and_wait`].
    pub async fn migrate(&self, id: &str, req: &crate::api::types::MigrateRequest) -> Result<ModelStatus, ClientError> {
        self.call(awc::http::Method::POST, &format!("/v1/models/{id}/migrate"), Some(req)).await
    }

    /// Moves a replica and waits until routes use the target and the source no longer holds it.
    pub async fn migrate_and_wait(
        &self,
        id: &str,
        req: &crate::api::types::MigrateRequest,
        timeout: Duration,
    ) -> Result<ModelStatus, ClientError> {
        self.migrate(id, req).await?;
        let start = std::time::Instant::now();
        loop {
            let s = self.model(id).await?;
            let on = |n: &str| s.progress.iter().any(|p| p.shard == req.shard && p.node == n && p.done);
            if on(&req.to) && !on(&req.from) {
                return Ok(s);
            }
            if start.elapsed() > timeout {
                return Err(ClientError::Api {
                    status: 504,
                    code: "timeout".into(),
                    message: "migration did not finish".into(),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `GET /v1/cluster`.
    pub async fn cluster(&self) -> Result<serde_json::Value, ClientError> {
        self.call::<(), _>(awc::http::Method::GET, "/v1/cluster", None).await
    }

    /// `GET /readyz` succeeded.
    pub async fn ready(&self) -> bool {
        self.call::<(), serde_json::Value>(awc::http::Method::GET, "/readyz", None).await.is_ok()
    }

    /// Polls the model until it is ready or failed, calling `progress(loaded, total)`.
    pub async fn wait_ready(
        &self,
        id: &str,
        timeout: Duration,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<ModelStatus, ClientError> {
        let start = std::time::Instant::now();
        loop {
            let s = self.model(id).await?;
            let loaded = s.progress.iter().map(|p| p.loaded).sum();
            let total = s.progress.iter().map(|p| p.total).sum();
            progress(loaded, total);
            match &s.status {
                ModelState::Ready => return Ok(s),
                ModelState::Failed { reason } => {
                    return Err(ClientError::Api { status: 500, code: "load_failed".into(), message: reason.clone() });
                }
                ModelState::Loading if start.elapsed() > timeout => {
                    return Err(ClientError::Api {
                        status: 504,
                        code: "timeout".into(),
                        message: format!("model {id} not ready after {timeout:?}"),
                    });
                }
                ModelState::Loading => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
}
