//! Replica autoscaling on three real node processes: a model loaded with `min_replicas: 1,
//! max_replicas: 3` grows to three replicas of its shard while 24 clients keep requests in
//! flight, and shrinks back to one after the load stops and the downscale delay passes, with
//! no failed request in either direction. Each new replica is warmed (its status records the
//! warm-up forward) before it joins the routes: its compute threads handle no request before
//! the warm-up has finished (`mlmf_shard_cold_messages_total` stays 0 while
//! `mlmf_shard_messages_total` grows), so no request is retried on another route
//! (`mlmf_retries_total` stays 0 on every node). Every decision
//! is an audit event and a metric, and the replica count is in `/metrics`. Grown again, the
//! two nodes that gave their replica up give back the one their warm cache kept.

mod common;

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use common::fixture;
use common::http::{bearer, get_text, metric};
use common::nodes::{Cluster, block_on, load_request, request};
use mlmf::client::ClusterClient;
use mlmf::plan::Autoscaling;

#[test]
fn replicas_follow_the_load_up_to_max_and_back_to_min_without_a_failed_request() {
    let cluster = Cluster::start("autoscale", 3, |_| {
        "[health]\nheartbeat_interval_ms = 200\nacceptable_pause_ms = 2000\n[cache]\nwarm_bytes = 100000000\n"
            .to_string()
    });
    let key = bearer(&cluster.key);
    let addrs: Vec<String> = cluster.nodes.iter().map(|n| n.addr.clone()).collect();
    let clients: Vec<ClusterClient> = (0..3).map(|i| cluster.client(i)).collect();
    let policy = Autoscaling {
        min_replicas: 1,
        max_replicas: 3,
        target_ongoing_requests: 1.0,
        upscale_delay_s: 1.0,
        downscale_delay_s: 3.0,
        look_back_period_s: 1.0,
        target_tokens_per_s: None,
    };
    block_on(async {
        common::nodes::wait_members(&clients[0], 3).await;
        let mut req = load_request("m", &fixture("gpt2_tiny"), "none", 1);
        req.autoscaling = Some(policy);
        clients[0].load(&req).await.unwrap();
        clients[0].wait_ready("m", Duration::from_secs(60), |_, _| {}).await.unwrap();
        let serving = |s: &mlmf::cluster::wire::ModelStatus| s.progress.iter().filter(|p| p.done).count();
        assert_eq!(serving(&clients[0].model("m").await.unwrap()), 1);

        // Up: 24 clients back to back, spread over the three nodes, until three replicas
        // serve and have served for two seconds more.
        let (grown, served, s) = grow_to_three(&clients).await;
        eprintln!("3 replicas {grown:?} after the load began; {served} requests served");
        // Each replica warmed before it served.
        assert!(s.progress.iter().all(|p| p.warmup_ms.is_some() && p.load_ms.is_some()), "{:?}", s.progress);
        let s = clients[0].model("m").await.unwrap();
        let nodes: std::collections::BTreeSet<&str> = s.progress.iter().map(|p| p.node.as_str()).collect();
        assert_eq!(nodes.len(), 3, "one replica per node (anti-affinity): {:?}", s.progress);
        // No request reached a replica before it could serve: each new replica's compute
        // threads handled none before its warm-up forward had finished, and it did serve
        // after it; none was retried elsewhere.
        for a in &addrs {
            let labels = [("model", "m"), ("shard", "0")];
            assert_eq!(metric(a, &key, "mlmf_shard_cold_messages_total", &labels), 0.0, "cold messages on {a}");
            assert!(
                metric(a, &key, "mlmf_shard_messages_total", &labels) > 0.0,
                "no message reached the replica on {a}"
            );
            assert_eq!(metric(a, &key, "mlmf_retries_total", &[]), 0.0, "retries on {a}");
        }
        for a in &addrs {
            assert_eq!(metric(a, &key, "mlmf_shard_replicas", &[("model", "m"), ("shard", "0")]), 3.0, "{a}");
        }

        // Down: one client at a time, slowly, through the downscale delay.
        let start = Instant::now();
        let (mut ok, mut failed) = (0usize, Vec::new());
        loop {
            match clients[ok % 3].infer("m", &request(&[464, 968, 758], None)).await {
                Ok(_) => ok += 1,
                Err(e) => failed.push(e.to_string()),
            }
            let s = clients[0].model("m").await.unwrap();
            if serving(&s) == 1 && s.progress.len() == 1 {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(60), "replicas did not shrink to 1: {:?}", s.progress);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let shrunk = start.elapsed();
        eprintln!("back to 1 replica {shrunk:?} after the load stopped; {ok} requests served meanwhile");
        assert!(shrunk >= Duration::from_secs(3), "shrank before the downscale delay: {shrunk:?}");
        assert!(failed.is_empty(), "failed while replicas were removed: {failed:?}");
        // Served by the one left, on every node's routes.
        tokio::time::sleep(Duration::from_millis(500)).await;
        for c in &clients {
            c.infer("m", &request(&[1, 2, 3], None)).await.unwrap();
        }

        // Every decision was audited and counted on the coordinator.
        let events = get_text(&addrs[0], &key, "/v1/events").1;
        let autoscale = events.matches("\"autoscale\"").count();
        assert!(autoscale >= 4, "{events}");
        // Each added replica's completion is an autoscale event (not a re-placement's).
        let parsed: serde_json::Value = serde_json::from_str(&events).unwrap();
        let loaded = parsed["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["name"] == "autoscale" && e["detail"].as_str().unwrap_or("").contains("warmed in"))
            .count();
        assert_eq!(loaded, 2, "{events}");
        let coordinator = clients[0].cluster().await.unwrap()["coordinator"].as_str().unwrap().to_string();
        let at = cluster.nodes.iter().map(|n| n.addr.clone()).find(|a| *a == coordinator).unwrap_or(addrs[0].clone());
        let ups = metric(&at, &key, "mlmf_autoscale_decisions_total", &[("model", "m"), ("direction", "up")]);
        let downs = metric(&at, &key, "mlmf_autoscale_decisions_total", &[("model", "m"), ("direction", "down")]);
        assert_eq!((ups, downs), (2.0, 2.0), "decisions on {at}");

        // Up again, once the two replicas removed have drained and been unloaded: the two
        // nodes that gave their replica up kept it in their warm cache, and give it back
        // instead of reading the files again.
        let start = Instant::now();
        while addrs.iter().map(|a| metric(a, &key, "mlmf_warm_cache_replicas", &[])).sum::<f64>() < 2.0 {
            assert!(start.elapsed() < Duration::from_secs(60), "the drained replicas were not kept");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let (regrown, _, s) = grow_to_three(&clients).await;
        eprintln!("3 replicas again {regrown:?} after the load began");
        let kept = s.progress.iter().filter(|p| p.from_warm_cache).count();
        assert_eq!(kept, 2, "the re-added replicas came from the warm cache: {:?}", s.progress);
        let hits: f64 = addrs.iter().map(|a| metric(a, &key, "mlmf_warm_cache_hits_total", &[])).sum();
        assert_eq!(hits, 2.0);
        for a in &addrs {
            let labels = [("model", "m"), ("shard", "0")];
            assert_eq!(metric(a, &key, "mlmf_shard_cold_messages_total", &labels), 0.0, "cold messages on {a}");
            assert_eq!(metric(a, &key, "mlmf_retries_total", &[]), 0.0, "retries on {a}");
        }
    });
}

/// Runs 24 clients back to back against model `m`, spread over the nodes, until three of its
/// replicas serve and have served for two seconds more; asserts that none of their requests
/// failed. Returns when the third replica began serving, the requests served, and the status.
async fn grow_to_three(clients: &[ClusterClient]) -> (Duration, usize, mlmf::cluster::wire::ModelStatus) {
    let serving = |s: &mlmf::cluster::wire::ModelStatus| s.progress.iter().filter(|p| p.done).count();
    let stop = Rc::new(Cell::new(false));
    let load = (0..24).map(|i| {
        let (client, stop) = (clients[i % clients.len()].clone(), stop.clone());
        async move {
            let (mut ok, mut failed) = (0usize, Vec::new());
            while !stop.get() {
                match client.infer("m", &request(&[464, 968, 758, 11, 290], None)).await {
                    Ok(_) => ok += 1,
                    Err(e) => failed.push(e.to_string()),
                }
            }
            (ok, failed)
        }
    });
    let start = Instant::now();
    let watch = async {
        let mut grown = None;
        loop {
            let s = clients[0].model("m").await.unwrap();
            if serving(&s) == 3 && grown.is_none() {
                grown = Some(start.elapsed());
            }
            if grown.is_some_and(|g| start.elapsed() > g + Duration::from_secs(2)) {
                stop.set(true);
                return (grown.unwrap(), s);
            }
            assert!(start.elapsed() < Duration::from_secs(60), "replicas did not grow to 3: {:?}", s.progress);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let (results, (grown, status)) = futures_util::join!(futures_util::future::join_all(load), watch);
    let served: usize = results.iter().map(|r| r.0).sum();
    let failed: Vec<&String> = results.iter().flat_map(|r| &r.1).collect();
    assert!(
        failed.is_empty(),
        "{} failed while replicas were added: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    (grown, served, status)
}

/// A model the node's TOML declares (`[[models]]`, autoscaling included) is loaded by the
/// coordinator with no `POST /v1/models`, once there are members to place it on.
#[test]
fn a_model_declared_in_the_toml_is_loaded_with_its_autoscaling() {
    let model = fixture("gpt2_tiny");
    let cluster = Cluster::start("declared", 2, |_| {
        format!(
            "[[models]]\nid = \"d\"\npath = {:?}\nreplication = 2\nautoscaling = {{ min_replicas = 1, max_replicas = 2, \
             target_ongoing_requests = 4.0 }}\n",
            model.display().to_string()
        )
    });
    block_on(async {
        common::nodes::wait_members(&cluster.client(0), 2).await;
        let client = cluster.client(0);
        // Not there until the coordinator's next round finds two members to place it on.
        let start = Instant::now();
        let s = loop {
            if let Ok(s) = client.model("d").await
                && s.status == mlmf::cluster::wire::ModelState::Ready
            {
                break s;
            }
            assert!(start.elapsed() < Duration::from_secs(60), "the declared model was not loaded");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let a = s.autoscaling.expect("the status carries the autoscaling");
        assert_eq!((a.min_replicas, a.max_replicas, a.target_ongoing_requests), (1, 2, 4.0));
        assert_eq!((a.upscale_delay_s, a.downscale_delay_s), (30.0, 600.0), "Ray Serve's defaults");
        assert_eq!(s.replication, 2);
        client.infer("d", &request(&[1, 2, 3], None)).await.unwrap();
    });
}

/// Tokens/s alone can grow a shard: with `target_ongoing_requests` far above anything four
/// clients make, their tokens per second past `target_tokens_per_s` ask for the second
/// replica, and the decision says so.
#[test]
fn tokens_per_second_past_their_target_add_a_replica() {
    let cluster = Cluster::start("autoscale-tokens", 2, |_| {
        "[health]\nheartbeat_interval_ms = 200\nacceptable_pause_ms = 2000\n".to_string()
    });
    let key = bearer(&cluster.key);
    let addrs: Vec<String> = cluster.nodes.iter().map(|n| n.addr.clone()).collect();
    let clients: Vec<ClusterClient> = (0..2).map(|i| cluster.client(i)).collect();
    let policy = Autoscaling {
        min_replicas: 1,
        max_replicas: 2,
        target_ongoing_requests: 1000.0,
        upscale_delay_s: 1.0,
        downscale_delay_s: 600.0,
        look_back_period_s: 1.0,
        target_tokens_per_s: Some(20.0),
    };
    block_on(async {
        common::nodes::wait_members(&clients[0], 2).await;
        let mut req = load_request("t", &fixture("gpt2_tiny"), "none", 1);
        req.autoscaling = Some(policy);
        clients[0].load(&req).await.unwrap();
        clients[0].wait_ready("t", Duration::from_secs(60), |_, _| {}).await.unwrap();
        let stop = Rc::new(Cell::new(false));
        let load = (0..4).map(|i| {
            let (client, stop) = (clients[i % 2].clone(), stop.clone());
            async move {
                let mut failed = Vec::new();
                while !stop.get() {
                    if let Err(e) = client.infer("t", &request(&[464, 968, 758, 11, 290], None)).await {
                        failed.push(e.to_string());
                    }
                }
                failed
            }
        });
        let watch = async {
            let start = Instant::now();
            loop {
                let s = clients[0].model("t").await.unwrap();
                if s.progress.iter().filter(|p| p.done).count() == 2 {
                    break;
                }
                assert!(start.elapsed() < Duration::from_secs(60), "no second replica: {:?}", s.progress);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            stop.set(true);
        };
        let (failed, ()) = futures_util::join!(futures_util::future::join_all(load), watch);
        let failed: Vec<&String> = failed.iter().flatten().collect();
        assert!(failed.is_empty(), "{failed:?}");
        let tokens: f64 = addrs.iter().map(|a| metric(a, &key, "mlmf_shard_tokens_total", &[("model", "t")])).sum();
        assert!(tokens >= 5.0, "tokens counted: {tokens}");
        let events = get_text(&addrs[0], &key, "/v1/events").1;
        assert!(events.contains("1 -> 2 replicas") && events.contains("tokens/s, target 20"), "{events}");
    });
}
