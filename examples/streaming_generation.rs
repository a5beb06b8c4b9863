//! Streaming generation from a local three-node cluster: the model is cut into a three-stage
//! pipeline, each node keeps the KV cache of its stage, and the completion streams back piece
//! by piece; the pieces are checked against a one-process run.
//!
//! `cargo run --example streaming_generation [MODEL_DIR] [PROMPT]`

use futures_util::StreamExt;
use mlmf::exec::LocalRunner;
use mlmf::generate::{GenerationParams, SamplingParams, TextTokenizer};
use mlmf::manager::{GenerationRequest, SimpleDistributedManager};
use mlmf::plan::ShardingStrategy;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let model = std::env::args().nth(1).unwrap_or_else(|| "tests/fixtures/llama_tiny".into());
    let prompt = std::env::args().nth(2).unwrap_or_else(|| "When a node fails, the replica".into());
    actix_web::rt::System::new().block_on(async {
        let addresses = ["127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"];
        let manager = SimpleDistributedManager::create_cluster_deployment(
            &model,
            "llama",
            &addresses,
            ShardingStrategy::PipelineSharding { num_stages: 3 },
        )
        .await?;
        let mut req = GenerationRequest::new("llama", &prompt);
        req.max_tokens = 32;
        let mut pieces = std::pin::pin!(manager.generate(req));
        let (mut text, mut tokens) = (String::new(), Vec::new());
        print!("{prompt}");
        while let Some(piece) = pieces.next().await {
            let piece = piece?;
            print!("{}", piece.text);
            text.push_str(&piece.text);
            tokens.extend(piece.token_ids);
        }
        println!();
        // The same greedy completion in one process.
        let tok = TextTokenizer::require(model.as_ref())?;
        let local = LocalRunner::load(model.as_ref(), &ShardingStrategy::NoSharding, &mlmf::model::default_device())?;
        let params = GenerationParams { max_tokens: 32, sampling: SamplingParams::greedy(), ..Default::default() };
        let want = local.generate(&tok.encode(&prompt)?, params, Some(&tok), |_| {})?;
        assert_eq!(tokens, want.sequence.generated(), "the cluster's tokens are the one-process run's");
        assert_eq!(text, want.sequence.text());
        println!("{} tokens streamed from 3 nodes, equal to a one-process run", tokens.len());
        manager.shutdown();
        Ok(())
    })
}
