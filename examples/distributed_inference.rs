//! Distributed inference: tensor parallelism over two nodes (every block's attention heads
//! and MLP columns split, partial sums all-reduced over the websocket transport), many
//! concurrent requests, sessions and priorities, checked against a single-process run.
//!
//! `cargo run --example distributed_inference [MODEL_DIR]`

use mlmf::exec::{LocalRunner, RunOptions};
use mlmf::manager::{InferenceRequest, Priority, SimpleDistributedManager};
use mlmf::model::ModelInput;
use mlmf::plan::ShardingStrategy;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let model = std::env::args().nth(1).unwrap_or_else(|| "tests/fixtures/gpt2_tiny".into());
    let local = LocalRunner::load(model.as_ref(), &ShardingStrategy::NoSharding, &mlmf::model::default_device())?;
    actix_web::rt::System::new().block_on(async {
        let addresses = ["127.0.0.1:0", "127.0.0.1:0"];
        let manager = SimpleDistributedManager::create_cluster_deployment(
            &model,
            "gpt2-tp",
            &addresses,
            ShardingStrategy::TensorSharding { degree: 2 },
        )
        .await?;
        let requests = (0..16u32).map(|i| {
            let ids: Vec<i64> = (0..8).map(|t| ((i * 37 + t * 11) % 1000) as i64).collect();
            let mut req = InferenceRequest::new("gpt2-tp", vec![ids]);
            req.session_id = Some(format!("session-{}", i % 4));
            req.priority = if i % 3 == 0 { Priority::High } else { Priority::Normal };
            req
        });
        let started = std::time::Instant::now();
        let answers = futures_util::future::join_all(requests.clone().map(|r| manager.inference(r))).await;
        let elapsed = started.elapsed();
        let mut worst = 0.0f32;
        for (req, answer) in requests.zip(answers) {
            let answer = answer?;
            let ids: Vec<u32> = req.input_data[0].iter().map(|&t| t as u32).collect();
            let want = local.run(&ModelInput::single(&ids), RunOptions::default())?;
            for (a, b) in answer.outputs["logits"].data.iter().zip(&want.tensors["logits"].data) {
                worst = worst.max((a - b).abs());
            }
        }
        println!("16 concurrent requests in {elapsed:?}; worst |logit difference| vs one process: {worst:e}");
        assert!(worst < 1e-4);
        manager.shutdown();
        Ok(())
    })
}
