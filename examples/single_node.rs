//! One node in this process serving the whole model (no sharding).
//!
//! `cargo run --example single_node [MODEL_DIR]`

use mlmf::manager::{InferenceRequest, SimpleDistributedManager};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let model = std::env::args().nth(1).unwrap_or_else(|| "tests/fixtures/gpt2_tiny".into());
    actix_web::rt::System::new().block_on(async {
        let manager = SimpleDistributedManager::create_single_node_deployment(&model, "gpt2").await?;
        println!("serving on {:?}", manager.addresses());
        let r = manager.inference(InferenceRequest::new("gpt2", vec![vec![464, 968, 758, 21, 318]])).await?;
        let logits = &r.outputs["logits"];
        let last = &logits.data[logits.data.len() - logits.shape[2]..];
        let next = (0..last.len()).max_by(|&a, &b| last[a].total_cmp(&last[b])).unwrap_or(0);
        println!(
            "logits {:?}, next token {next}, by {:?} in {:.2} ms",
            logits.shape, r.processed_by, r.processing_time_ms
        );
        assert_eq!(r.processed_by.len(), 1);
        manager.shutdown();
        Ok(())
    })
}
