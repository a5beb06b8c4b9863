//! Placement at scale: 10,000 shards (replication 2) onto 1,000 simulated nodes with each
//! strategy, and rebalancing those replicas after 100 more nodes join. Pure functions: no
//! actors, no I/O. `cargo bench --bench placement`.

use std::time::Instant;

use mlmf::model::{StageSpec, TensorSlice};
use mlmf::plan::placement::*;
use mlmf::plan::{ShardPlan, ShardSpec};

fn plan(shards: usize) -> ShardPlan {
    let shards = (0..shards)
        .map(|i| ShardSpec {
            id: i,
            stage: i,
            spec: StageSpec { embeddings: i == 0, layers: i..i + 1, head: false, slice: TensorSlice::WHOLE },
            tensors: Vec::new(),
            bytes: 10_000_000 + (i as u64 * 7919) % 50_000_000,
        })
        .collect::<Vec<_>>();
    ShardPlan { strategy: "bench".into(), num_stages: shards.len(), shards }
}

fn nodes(n: usize) -> Vec<NodeInventory> {
    (0..n)
        .map(|i| NodeInventory {
            id: format!("node-{i:04}"),
            memory_bytes: 2_000_000_000 + (i as u64 % 7) * 500_000_000,
            device: if i % 5 == 0 { DeviceKind::Gpu } else { DeviceKind::Cpu },
            compute: 1.0 + (i % 3) as f64,
            load: (i % 10) as f64 / 10.0,
        })
        .collect()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let p = plan(10_000);
    let ns = nodes(1_000);
    println!("\n| placement of 10,000 shards x2 on 1,000 nodes | median of 5 |");
    println!("|---|---|");
    for (name, strategy) in [
        ("memory-based", PlacementStrategy::MemoryBased),
        ("compute-based", PlacementStrategy::ComputeBased),
        ("load-balanced", PlacementStrategy::LoadBalanced),
    ] {
        let req = PlacementRequest { strategy, replication: 2, ..Default::default() };
        let mut times: Vec<f64> = (0..5)
            .map(|_| {
                let t = Instant::now();
                let placed = place(&p, &ns, &req).expect("feasible");
                assert_eq!(placed.assignments.len(), 20_000);
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        times.sort_by(f64::total_cmp);
        println!("| {name} | {:.1} ms |", times[2]);
    }
    // Rebalancing: the 20,000 replicas placed above, then 100 empty nodes join.
    let placed = place(&p, &ns, &PlacementRequest { replication: 2, ..Default::default() }).expect("feasible");
    let replicas: Vec<(String, usize, String)> =
        placed.assignments.iter().map(|a| ("m".to_string(), a.shard, a.node.clone())).collect();
    let mut live: Vec<String> = ns.iter().map(|n| n.id.clone()).collect();
    live.extend((1_000..1_100).map(|i| format!("node-{i:04}")));
    println!("\n| rebalancing 20,000 replicas after 100 nodes join 1,000 | moves | median of 5 |");
    println!("|---|---|---|");
    for (name, max) in
        [("one round (the default bound, 2 moves)", 2), ("a round of 100 moves", 100), ("until even", usize::MAX)]
    {
        let mut moves = 0;
        let mut times: Vec<f64> = (0..5)
            .map(|_| {
                let t = Instant::now();
                moves = mlmf::plan::rebalance::rebalance(&replicas, &live, max).len();
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        times.sort_by(f64::total_cmp);
        println!("| {name} | {moves} | {:.1} ms |", times[2]);
    }
}
