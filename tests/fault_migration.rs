//! Replicas moved under load across real processes: a live migration of a shard
//! (`POST /v1/models/{id}/migrate`) and the rebalancing onto a node that joins fail no
//! request; bad migrations are refused, and a finished one is announced at a real webhook
//! and SMTP sink on 127.0.0.1.

mod common;

use std::time::{Duration, Instant};

use common::fixture;
use common::nodes::*;
use mlmf::client::ClientError;

#[test]
fn a_live_migration_under_load_fails_no_request() {
    let (smtp, mails) = smtp_sink();
    let (http, posts) = http_sink();
    let cluster = Cluster::start("migrate", 3, |_| {
        format!(
            "[requests]\nattempt_timeout_ms = 1000\n\
             [alerts]\nwebhooks = [\"http://{http}/hook\"]\ngroup_ms = 100\n\
             [alerts.smtp]\nserver = \"{smtp}\"\nfrom = \"mlmf@localhost\"\nto = [\"ops@localhost\"]\n"
        )
    });
    let (a, b, d) = (&cluster.nodes[0], &cluster.nodes[1], &cluster.nodes[2]);
    let client = cluster.client(1);
    let model = fixture("gpt2_tiny");
    block_on(async {
        let s = serve_model(&client, 3, "m", &model, "pipeline:2", 1).await;
        let from = s.progress.iter().find(|p| p.shard == 0).unwrap().node.clone();
        let to = [&a.addr, &b.addr, &d.addr]
            .into_iter()
            .find(|n| !s.progress.iter().any(|p| &&p.node == n))
            .unwrap()
            .clone();
        let reference =
            client.infer("m", &request(&[464, 968, 758], None)).await.unwrap().outputs["logits"].data.clone();
        let stop = std::rc::Rc::new(std::cell::Cell::new(false));
        let load_clients = (0..8).map(|_| {
            let (client, stop, reference) = (client.clone(), stop.clone(), reference.clone());
            async move {
                let (mut ok, mut failed, mut via) = (0usize, Vec::new(), std::collections::BTreeSet::new());
                while !stop.get() {
                    match client.infer("m", &request(&[464, 968, 758], None)).await {
                        Ok(r) => {
                            assert_eq!(r.outputs["logits"].data, reference);
                            via.insert(r.processed_by[0].clone());
                            ok += 1;
                        }
                        Err(e) => failed.push(e.to_string()),
                    }
                }
                (ok, failed, via)
            }
        });
        let mover = async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let req = mlmf::api::types::MigrateRequest { shard: 0, from: from.clone(), to: to.clone() };
            let s = client.migrate_and_wait("m", &req, Duration::from_secs(30)).await.unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
            stop.set(true);
            s
        };
        let (results, after) = futures_util::join!(futures_util::future::join_all(load_clients), mover);
        let failed: Vec<&String> = results.iter().flat_map(|r| &r.1).collect();
        let served: usize = results.iter().map(|r| r.0).sum();
        let via: std::collections::BTreeSet<&String> = results.iter().flat_map(|r| &r.2).collect();
        assert!(failed.is_empty(), "{} of {} requests failed: {failed:?}", failed.len(), served + failed.len());
        assert!(via.contains(&from) && via.contains(&to), "stage 0 ran on {via:?}, not both {from} and {to}");
        assert_eq!(after.progress.iter().filter(|p| p.shard == 0).map(|p| &p.node).collect::<Vec<_>>(), vec![&to]);
        // Bad migrations are refused with reasons.
        let bad = mlmf::api::types::MigrateRequest { shard: 0, from: from.clone(), to: to.clone() };
        assert!(matches!(client.migrate("m", &bad).await, Err(ClientError::Api { status: 400, .. })));
        let bad = mlmf::api::types::MigrateRequest { shard: 9, from: to.clone(), to: from.clone() };
        assert!(matches!(client.migrate("m", &bad).await, Err(ClientError::Api { status: 400, .. })));
        // The finished migration is announced at the webhook and by email.
        wait_alert(&posts, &mails, "shard_migrated", "notice", "m/0").await;
    });
}

#[test]
fn a_node_that_joins_takes_replicas_a_few_moves_at_a_time_with_no_failed_request() {
    let cluster = Cluster::start("scaleout", 2, |dir| {
        format!(
            "rebalance_moves = 1\nrebalance_interval_ms = 300\naudit_log = {:?}\n",
            dir.join("audit.jsonl").display().to_string()
        )
    });
    let audit = cluster.dir.join("audit.jsonl");
    let client = cluster.client(0);
    let model = fixture("gpt2_tiny");
    block_on(async {
        serve_model(&client, 2, "m", &model, "layer:1", 1).await;
        let joiner = cluster.join();
        let stop = std::rc::Rc::new(std::cell::Cell::new(false));
        let load_clients = (0..4).map(|_| {
            let (client, stop) = (client.clone(), stop.clone());
            async move {
                let mut failed = Vec::new();
                while !stop.get() {
                    if let Err(e) = client.infer("m", &request(&[464, 968, 758], None)).await {
                        failed.push(e.to_string());
                    }
                }
                failed
            }
        });
        let watcher = async {
            let start = Instant::now();
            loop {
                let s = client.model("m").await.unwrap();
                let on_joiner = s.progress.iter().filter(|p| p.node == joiner.addr && p.done).count();
                // 6 shards on 3 nodes: the joiner ends with 2.
                if on_joiner == 2 && s.progress.iter().all(|p| p.done) {
                    break;
                }
                assert!(start.elapsed() < Duration::from_secs(30), "no rebalance onto the joiner: {:?}", s.progress);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            stop.set(true);
        };
        let (failed, ()) = futures_util::join!(futures_util::future::join_all(load_clients), watcher);
        let failed: Vec<String> = failed.into_iter().flatten().collect();
        assert!(failed.is_empty(), "{failed:?}");
        let log = std::fs::read_to_string(&audit).unwrap();
        assert_eq!(log.matches("\"op\":\"rebalance\"").count(), 2, "{log}");
        drop(joiner);
    });
}
