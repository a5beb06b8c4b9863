//! A user's own balancing strategy: an actor that answers `PickRoute`, passed to the nodes as
//! a `Recipient`. This one keeps every request on the replicas of the node with the most
//! declared compute (ties: lowest id) and counts the routes it picked.
//!
//! `cargo run --example custom_balancer [MODEL_DIR]`

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use actix::{Actor, Context, Handler, MessageResult};
use mlmf::cluster::balancer::{NoRoute, PickRoute};
use mlmf::cluster::wire::MemberState;
use mlmf::manager::{DistributedConfigBuilder, FaultToleranceConfig, InferenceRequest, SimpleDistributedManager};
use mlmf::plan::ShardingStrategy;

struct Strongest {
    picked: Arc<AtomicUsize>,
}

impl Actor for Strongest {
    type Context = Context<Self>;
}

impl Handler<PickRoute> for Strongest {
    type Result = MessageResult<PickRoute>;

    fn handle(&mut self, msg: PickRoute, _: &mut Context<Self>) -> Self::Result {
        let Some(model) = msg.view.model(&msg.model) else {
            return MessageResult(Err(NoRoute::UnknownModel(msg.model)));
        };
        let rank = |id: &str| {
            let n = msg.view.nodes.iter().find(|n| n.info.id == id);
            let compute = n.map(|n| n.info.compute).unwrap_or(0.0);
            (std::cmp::Reverse((compute * 1000.0) as i64), id.to_string())
        };
        let mut route = Vec::new();
        for stage in &model.stages {
            let mut members = Vec::new();
            for shard in stage {
                let live = shard.nodes.iter().filter(|n| {
                    !msg.avoid.contains(n)
                        && msg.view.nodes.iter().any(|v| &v.info.id == *n && v.state != MemberState::Down)
                });
                let Some(best) = live.min_by_key(|n| rank(n)) else {
                    return MessageResult(Err(NoRoute::NoReplica { model: msg.model, shard: shard.shard }));
                };
                members.push((shard.shard, best.clone()));
            }
            route.push(members);
        }
        self.picked.fetch_add(1, Ordering::Relaxed);
        MessageResult(Ok(route))
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let model = std::env::args().nth(1).unwrap_or_else(|| "tests/fixtures/gpt2_tiny".into());
    actix_web::rt::System::new().block_on(async {
        let picked = Arc::new(AtomicUsize::new(0));
        // The strategy actor runs on its own arbiter; every node sends it `PickRoute`.
        let p = Arc::clone(&picked);
        let strategy = Strongest::start_in_arbiter(&actix::Arbiter::new().handle(), move |_| Strongest { picked: p });
        let config = DistributedConfigBuilder::new()
            .sharding(ShardingStrategy::NoSharding)
            .fault_tolerance(FaultToleranceConfig { replication: 3, ..FaultToleranceConfig::default() })
            .custom_balancer(strategy.recipient())
            .build()?;
        let addresses = ["127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"];
        let manager = SimpleDistributedManager::deploy(model.as_ref(), "gpt2", &addresses, config).await?;
        let mut served = std::collections::BTreeSet::new();
        for _ in 0..6 {
            let r = manager.inference(InferenceRequest::new("gpt2", vec![vec![464, 968, 758]])).await?;
            served.extend(r.processed_by);
        }
        println!(
            "6 requests, {} routes picked by the custom strategy, served by {served:?}",
            picked.load(Ordering::Relaxed)
        );
        assert_eq!(served.len(), 1, "the custom strategy pins one node");
        assert_eq!(picked.load(Ordering::Relaxed), 6);
        manager.shutdown();
        Ok(())
    })
}
