//! A custom configuration: pipeline sharding over three stages, GPU-first placement (CPU
//! nodes take the shards when no GPU is present), two replicas of every shard, a cluster key.
//!
//! `cargo run --example custom_configuration [MODEL_DIR]`

use mlmf::manager::{
    DevicePlacementConfig, DistributedConfigBuilder, FaultToleranceConfig, InferenceRequest, LoadBalancingConfig,
    SimpleDistributedManager,
};
use mlmf::plan::ShardingStrategy;
use mlmf_actors::auth::ClusterKey;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let model = std::env::args().nth(1).unwrap_or_else(|| "tests/fixtures/gpt2_tiny".into());
    // A fresh key from the operating system's CSPRNG.
    let (key, _text) = ClusterKey::generate()?;
    let config = DistributedConfigBuilder::new()
        .sharding(ShardingStrategy::PipelineSharding { num_stages: 3 })
        .device_placement(DevicePlacementConfig::gpu_optimized())
        .load_balancing(LoadBalancingConfig::resource_based())
        .fault_tolerance(FaultToleranceConfig::high_availability())
        .cluster_key(key)
        .build()?;
    actix_web::rt::System::new().block_on(async {
        let addresses = ["127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"];
        let manager = SimpleDistributedManager::deploy(model.as_ref(), "gpt2-pipe", &addresses, config).await?;
        let status = manager.status().await?;
        println!("{} stages, {} replicas placed", status.plan.num_stages, status.placement.assignments.len());
        assert_eq!(status.placement.assignments.len(), 2 * status.plan.shards.len());
        let mut routes = std::collections::BTreeSet::new();
        for _ in 0..4 {
            let r = manager.inference(InferenceRequest::new("gpt2-pipe", vec![vec![464, 968, 758]])).await?;
            routes.insert(r.processed_by);
        }
        println!("{} distinct routes over the replicas: {routes:?}", routes.len());
        manager.shutdown();
        Ok(())
    })
}
