//! What an actix application that embeds a node does with its [`RunningNode`] besides
//! serving HTTP: generate and embed text through the cluster from this process, with no
//! HTTP hop to itself. The requests are checked exactly as `/v1/completions` and
//! `/v1/embeddings` check them; they do not count against the node's HTTP in-flight bound.

use futures_util::Stream;

use crate::api::ApiError;
use crate::api::completions::CompletionRequest;
use crate::api::types::Priority;
use crate::cluster::embedding::{EmbedError, EmbedInput, embed};
use crate::cluster::generation::{GenerateRequest, generate};
use crate::cluster::node::Node;
use crate::cluster::node::model_files::{model_tokenizer, ready_model};
use crate::generate::{GeneratedPiece, GenerationRequest};

use super::boot::RunningNode;

impl RunningNode {
    /// Generates a completion on the cluster, streamed piece by piece as it is generated;
    /// runs on the current actix runtime. Dropping the stream stops the sequence and frees
    /// its caches on every stage.
    ///
    /// ```no_run
    /// use futures_util::StreamExt;
    /// use mlmf::generate::GenerationRequest;
    /// # async fn demo(node: mlmf::server::RunningNode) -> Result<(), mlmf::api::ApiError> {
    /// let mut pieces = std::pin::pin!(node.generate(&GenerationRequest::new("gpt2", "The cluster")));
    /// while let Some(piece) = pieces.next().await {
    ///     print!("{}", piece?.text);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn generate(&self, req: &GenerationRequest) -> impl Stream<Item = Result<GeneratedPiece, ApiError>> + use<> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let (node, body) = (self.node.clone(), req.body());
        actix_web::rt::spawn(async move {
            if let Err(e) = stream(&node, body, &tx).await {
                let _ = tx.send(Err(e));
            }
        });
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) })
    }

    /// The embeddings of `texts` with model `model` (its pooling, normalisation and
    /// truncation), computed by the cluster.
    pub async fn embed(&self, model: &str, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let inputs = texts.iter().map(|t| EmbedInput::Text(t.to_string())).collect();
        Ok(embed(&self.node, model, inputs, fastrand::u64(..), crate::cluster::trace::TraceId::random())
            .await?
            .embeddings)
    }
}

async fn stream(
    node: &Node,
    body: serde_json::Value,
    tx: &tokio::sync::mpsc::UnboundedSender<Result<GeneratedPiece, ApiError>>,
) -> Result<(), ApiError> {
    let req: CompletionRequest =
        serde_json::from_value(body).map_err(|e| ApiError::bad_request("invalid_request", e.to_string()))?;
    let cfg = ready_model(node, &req.model)?;
    let tok = model_tokenizer(node, &req.model)?;
    let (prompt, params) = req.to_params(tok.as_deref(), cfg.vocab_size, cfg.max_positions)?;
    let gen_req = GenerateRequest {
        model: req.model.clone(),
        prompt,
        params,
        session: None,
        priority: Priority::default().rank(),
        echo: false,
        trace: crate::cluster::trace::TraceId::random(),
    };
    generate(node, gen_req, tok, fastrand::u64(..), |step| tx.send(Ok(GeneratedPiece::of(step))).is_ok()).await?;
    Ok(())
}
