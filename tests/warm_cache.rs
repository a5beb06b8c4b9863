//! The warm cache of unloaded replicas (`[cache] warm_bytes`) on two real node processes:
//! a model unloaded and loaded again comes back from memory on both nodes (its status says
//! so, the hits are counted) and answers exactly as before; a model whose files changed
//! since is read again (a miss, the stale replica dropped); a replica past the byte budget
//! pushes the oldest one out. Every replica, kept or new, ran its warm-up forward before
//! its first request (its cold-message counter stays 0).

mod common;

use std::time::{Duration, Instant, SystemTime};

use common::fixture;
use common::http::{bearer, metric};
use common::nodes::{Cluster, block_on, load_request, request};
use mlmf::client::ClusterClient;
use mlmf::cluster::wire::ModelStatus;

/// The sum of `name`'s samples on every node, those carrying every label of `labels`.
fn total(addrs: &[String], key: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    addrs.iter().map(|a| metric(a, key, name, labels)).sum()
}

/// Copies the fixture `name` into `dir` (so that the test may touch its files).
fn copy_model(name: &str, dir: &std::path::Path) -> std::path::PathBuf {
    let to = dir.join(name);
    std::fs::create_dir_all(&to).unwrap();
    for e in std::fs::read_dir(fixture(name)).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
    to
}

async fn load(client: &ClusterClient, id: &str, path: &std::path::Path) -> ModelStatus {
    client.load(&load_request(id, path, "none", 2)).await.unwrap();
    client.wait_ready(id, Duration::from_secs(60), |_, _| {}).await.unwrap()
}

/// Unloads `id` and waits until `kept` replicas are in the nodes' warm caches.
async fn unload(client: &ClusterClient, id: &str, addrs: &[String], key: &str, kept: f64) {
    client.unload(id).await.unwrap();
    let start = Instant::now();
    while total(addrs, key, "mlmf_warm_cache_replicas", &[]) != kept {
        assert!(start.elapsed() < Duration::from_secs(20), "the unloaded replicas were not kept");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn logits(client: &ClusterClient, id: &str) -> serde_json::Value {
    let r = client.infer(id, &request(&[811, 950, 92, 828, 382, 686, 220], Some(vec!["logits".into()]))).await;
    serde_json::to_value(&r.unwrap().outputs).unwrap()
}

#[test]
fn an_unloaded_replica_comes_back_from_memory_unless_its_files_changed_or_the_budget_is_spent() {
    // Room for one gpt2_tiny replica (about 20 MB as f32) per node, not two.
    let cluster = Cluster::start("warm-cache", 2, |_| "[cache]\nwarm_bytes = 30000000\n".to_string());
    let key = bearer(&cluster.key);
    let addrs: Vec<String> = cluster.nodes.iter().map(|n| n.addr.clone()).collect();
    let client = cluster.client(0);
    let a = copy_model("gpt2_tiny", &cluster.dir.join("a"));
    let b = copy_model("gpt2_tiny", &cluster.dir.join("b"));
    let counted = |name: &str| total(&addrs, &key, name, &[]);
    block_on(async {
        common::nodes::wait_members(&client, 2).await;
        let first = load(&client, "m", &a).await;
        assert!(first.progress.iter().all(|p| !p.from_warm_cache), "{:?}", first.progress);
        let want = logits(&client, "m").await;
        assert_eq!((counted("mlmf_warm_cache_hits_total"), counted("mlmf_warm_cache_misses_total")), (0.0, 2.0));

        // Unloaded, kept, loaded again: from memory on both nodes, the same answer.
        unload(&client, "m", &addrs, &key, 2.0).await;
        let bytes = counted("mlmf_warm_cache_bytes");
        assert!((2.0 * 19e6..2.0 * 30e6).contains(&bytes), "{bytes}");
        let again = load(&client, "m", &a).await;
        assert!(again.progress.iter().all(|p| p.from_warm_cache && p.warmup_ms.is_some()), "{:?}", again.progress);
        assert_eq!(counted("mlmf_warm_cache_hits_total"), 2.0);
        assert_eq!(counted("mlmf_warm_cache_replicas"), 0.0, "given back, no longer kept");
        for _ in 0..4 {
            assert_eq!(logits(&client, "m").await, want, "a kept replica answers as it did");
        }
        assert!(total(&addrs, &key, "mlmf_shard_messages_total", &[("model", "m")]) >= 4.0);
        assert_eq!(total(&addrs, &key, "mlmf_shard_cold_messages_total", &[("model", "m")]), 0.0);

        // The files changed since (a new modification time): read again, not given back.
        unload(&client, "m", &addrs, &key, 2.0).await;
        let weights = std::fs::File::options().write(true).open(a.join("model.safetensors")).unwrap();
        weights.set_modified(SystemTime::now() + Duration::from_secs(5)).unwrap();
        drop(weights);
        let fresh = load(&client, "m", &a).await;
        assert!(fresh.progress.iter().all(|p| !p.from_warm_cache), "{:?}", fresh.progress);
        assert_eq!(counted("mlmf_warm_cache_misses_total"), 4.0);
        assert_eq!(counted("mlmf_warm_cache_evictions_total"), 2.0, "the stale replicas dropped");
        assert_eq!(logits(&client, "m").await, want);

        // Past the budget: keeping another model's replica pushes m's out.
        unload(&client, "m", &addrs, &key, 2.0).await;
        load(&client, "other", &b).await;
        unload(&client, "other", &addrs, &key, 2.0).await;
        assert_eq!(counted("mlmf_warm_cache_evictions_total"), 4.0, "m's replicas made room");
        let cold = load(&client, "m", &a).await;
        assert!(cold.progress.iter().all(|p| !p.from_warm_cache), "{:?}", cold.progress);
        assert_eq!(logits(&client, "m").await, want);
        assert_eq!(counted("mlmf_warm_cache_hits_total"), 2.0);
    });
}
