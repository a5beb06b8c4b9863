//! A three-node cluster on 127.0.0.1 with layer sharding: each shard holds two blocks, and
//! the activation travels node to node. (The seed dialled 10.0.0.x; these nodes are local.)
//!
//! `cargo run --example cluster_layer_sharding [MODEL_DIR]`

use mlmf::manager::{InferenceRequest, SimpleDistributedManager};
use mlmf::plan::ShardingStrategy;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let model = std::env::args().nth(1).unwrap_or_else(|| "tests/fixtures/gpt2_tiny".into());
    actix_web::rt::System::new().block_on(async {
        let addresses = ["127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"];
        let manager = SimpleDistributedManager::create_cluster_deployment(
            &model,
            "gpt2-layers",
            &addresses,
            ShardingStrategy::LayerSharding { layers_per_shard: 2 },
        )
        .await?;
        let status = manager.status().await?;
        for s in &status.plan.shards {
            println!("shard {} ({}) on {:?}", s.id, s.describe(), status.placement.nodes_of(s.id));
        }
        let r = manager.inference(InferenceRequest::new("gpt2-layers", vec![vec![464, 968, 758]])).await?;
        println!(
            "logits {:?} through {:?} in {:.2} ms",
            r.outputs["logits"].shape, r.processed_by, r.processing_time_ms
        );
        assert_eq!(r.processed_by.len(), status.plan.num_stages);
        manager.shutdown();
        Ok(())
    })
}
