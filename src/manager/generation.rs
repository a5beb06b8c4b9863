//! Text generation through a [`SimpleDistributedManager`](super::SimpleDistributedManager):
//! [`GenerationRequest`] in, a stream of [`GeneratedPiece`]s out, served by the cluster's
//! `/v1/completions` (each node holding its stage's KV cache; the node that took the request
//! holds the sequence).

use futures_util::Stream;

use crate::client::ClusterClient;

use super::error::DeployError;
use crate::generate::{GeneratedPiece, GenerationRequest};

/// Streams `req` from the node `client` speaks to; runs on the current actix runtime.
pub fn stream(
    client: &ClusterClient,
    req: &GenerationRequest,
) -> impl Stream<Item = Result<GeneratedPiece, DeployError>> + use<> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let (client, body) = (client.clone(), req.body());
    actix_web::rt::spawn(async move {
        let sent = client
            .completion(&body, |chunk| {
                let c = &chunk["choices"][0];
                let piece = GeneratedPiece {
                    text: c["text"].as_str().unwrap_or_default().to_string(),
                    token_ids: c["token_ids"]
                        .as_array()
                        .map(|a| a.iter().filter_map(|t| t.as_u64().map(|t| t as u32)).collect())
                        .unwrap_or_default(),
                    finish_reason: c["finish_reason"].as_str().map(str::to_string),
                };
                let _ = tx.send(Ok(piece));
            })
            .await;
        if let Err(e) = sent {
            let _ = tx.send(Err(DeployError::from(e)));
        }
    });
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) })
}
