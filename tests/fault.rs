//! Faults across real processes: a node killed or frozen under load, live migration, and
//! the alerts those raise, observed by real HTTP and SMTP receivers on 127.0.0.1.

mod common;

use std::time::{Duration, Instant};

use common::fixture;
use common::nodes::*;
use mlmf::client::{ClientError, ClusterClient};

#[test]
fn a_killed_node_is_marked_down_its_requests_retried_and_its_replicas_placed_again() {
    let (smtp, mails) = smtp_sink();
    let (http, posts) = http_sink();
    let mut cluster = Cluster::start("failover", 3, |dir| {
        format!(
            "audit_log = {:?}\n[health]\nheartbeat_interval_ms = 200\nacceptable_pause_ms = 600\nmin_std_dev_ms = 50\nreplace_after_ms = 300\n[requests]\nattempt_timeout_ms = 3000\n\
             [alerts]\nwebhooks = [\"http://{http}/hook\"]\ngroup_ms = 100\n\
             [alerts.smtp]\nserver = \"{smtp}\"\nfrom = \"mlmf@localhost\"\nto = [\"ops@localhost\"]\n",
            dir.join("audit.jsonl").display().to_string()
        )
    });
    let audit = cluster.dir.join("audit.jsonl");
    let client = cluster.client(0);
    let model = fixture("gpt2_tiny");
    block_on(async {
        let status = serve_model(&client, 3, "m", &model, "pipeline:2", 2).await;
        // Heartbeats carry the members' resource stats.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let c = client.cluster().await.unwrap();
        for n in c["nodes"].as_array().unwrap() {
            assert!(n["stats"]["memory_total"].as_u64().unwrap() > 0, "{n}");
            // Per shard replica: in flight, queued, messages, p50/p99.
            for st in n["stats"]["shard_stats"].as_array().unwrap() {
                assert!(st["model"] == "m" && st["p99_ms"].as_f64().is_some(), "{st}");
            }
        }
        // Kill a non-coordinator node that holds a replica.
        let victim_idx = (1..3).find(|&i| status.progress.iter().any(|p| p.node == cluster.nodes[i].addr)).unwrap();
        let victim = cluster.nodes.remove(victim_idx);
        let victim_addr = victim.addr.clone();
        // Every answer is checked against the PyTorch reference.
        let refs = common::read_safetensors(&fixture("gpt2_tiny").join("reference.safetensors"));
        let (atol, rtol) = common::tolerances("gpt2_tiny")["logits"];
        let ids: Vec<i64> = refs["seq7.input_ids"].i64.clone();
        let reference = refs["seq7.logits"].f32.clone();
        // 16 clients send requests back to back through the kill, until replication is whole
        // and at least 2,000 requests were served.
        let stop = std::rc::Rc::new(std::cell::Cell::new(false));
        let served_so_far = std::rc::Rc::new(std::cell::Cell::new(0usize));
        let epoch = Instant::now();
        let clients = (0..16).map(|_| {
            let (client, stop, reference, ids, count) =
                (client.clone(), stop.clone(), reference.clone(), ids.clone(), served_so_far.clone());
            async move {
                let (mut ok, mut failed, mut lat) = (0usize, Vec::new(), Vec::new());
                while !stop.get() {
                    let t = Instant::now();
                    match client.infer("m", &request(&ids, None)).await {
                        Ok(r) => {
                            lat.push((t.duration_since(epoch).as_secs_f64(), t.elapsed().as_secs_f64() * 1e3));
                            let (worst, max_abs) = common::excess(&r.outputs["logits"].data, &reference, atol, rtol);
                            assert!(worst <= 0.0, "logits differ from the reference by {max_abs}");
                            count.set(count.get() + 1);
                            ok += 1;
                        }
                        Err(e) => failed.push(e.to_string()),
                    }
                }
                (ok, failed, lat)
            }
        });
        let watcher = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            drop(victim);
            let killed = Instant::now();
            let killed_at = killed.duration_since(epoch).as_secs_f64();
            let mut down_after = None;
            let whole = loop {
                let c = client.cluster().await.unwrap();
                let state = c["nodes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|n| n["node"]["info"]["id"] == victim_addr.as_str())
                    .map(|n| n["node"]["state"].clone());
                if down_after.is_none() && state == Some("down".into()) {
                    down_after = Some(killed.elapsed());
                    assert_eq!(c["health"], "degraded");
                }
                let s = client.model("m").await.unwrap();
                let ok = (0..s.plan.shards.len()).all(|shard| {
                    s.progress.iter().filter(|p| p.shard == shard && p.done && p.node != victim_addr).count() == 2
                });
                if ok && down_after.is_some() {
                    break killed.elapsed();
                }
                assert!(killed.elapsed() < Duration::from_secs(30), "replication not restored: {:?}", s.progress);
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            // Keep the load on over the restored replicas until 2,000 requests were served.
            while served_so_far.get() < 2000 {
                assert!(killed.elapsed() < Duration::from_secs(120), "only {} served", served_so_far.get());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            stop.set(true);
            (down_after.unwrap(), whole, killed_at)
        };
        let (results, (down_after, whole, killed_at)) =
            futures_util::join!(futures_util::future::join_all(clients), watcher);
        let served: usize = results.iter().map(|r| r.0).sum();
        let failed: Vec<&String> = results.iter().flat_map(|r| &r.1).collect();
        eprintln!("marked down {down_after:?} after the kill; {served} requests served at concurrency 16");
        // Latency before the kill and from the kill until replication is whole (measured, printed).
        let pct = |mut v: Vec<f64>, q: f64| {
            v.sort_by(f64::total_cmp);
            v.get(((v.len() as f64 * q) as usize).min(v.len().saturating_sub(1))).copied().unwrap_or(f64::NAN)
        };
        let all: Vec<(f64, f64)> = results.iter().flat_map(|r| r.2.iter().copied()).collect();
        let steady: Vec<f64> = all.iter().filter(|(t, _)| *t < killed_at).map(|x| x.1).collect();
        let window = killed_at + whole.as_secs_f64();
        let failover: Vec<f64> = all.iter().filter(|(t, _)| *t >= killed_at && *t < window).map(|x| x.1).collect();
        eprintln!(
            "| steady | {} | {:.2} ms | {:.2} ms |\n| failover (kill to replication whole) | {} | {:.2} ms | {:.2} ms |",
            steady.len(),
            pct(steady.clone(), 0.5),
            pct(steady, 0.99),
            failover.len(),
            pct(failover.clone(), 0.5),
            pct(failover, 0.99)
        );
        assert!(failed.is_empty(), "{} requests failed: {:?}", failed.len(), failed);
        assert!(served >= 2000, "{served}");
        eprintln!("replication whole {whole:?} after the kill");
        for _ in 0..10 {
            let r = client.infer("m", &request(&[464, 968, 758], None)).await.unwrap();
            assert!(!r.processed_by.contains(&victim_addr));
        }
        // The kill raised a node_down alert at the webhook and by email, and the lost replicas
        // an under-replication alert, resolved once replication was whole.
        let start = Instant::now();
        loop {
            let posted = posts.lock().unwrap().clone();
            let has = |rule: &str, status: &str| {
                posted.iter().any(|(_, v)| {
                    v["alerts"].as_array().is_some_and(|a| a.iter().any(|e| e["rule"] == rule && e["status"] == status))
                })
            };
            let mailed = mails.lock().unwrap().iter().any(|m| m.contains(&format!("firing node_down {victim_addr}")));
            if has("node_down", "firing") && has("shard_under_replicated", "resolved") && mailed {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(20), "alerts missing: {posted:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Every distributed operation is in the audit log.
        let log = std::fs::read_to_string(&audit).unwrap();
        let ops: Vec<String> = log
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["op"].as_str().unwrap().to_string())
            .collect();
        for op in ["join", "load", "ready", "down", "replace"] {
            assert!(ops.iter().any(|o| o == op), "no {op} in the audit log:\n{log}");
        }
        let ready: serde_json::Value = log
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|v| v["op"] == "ready")
            .unwrap();
        assert_eq!(ready["checkpoint_sha256"].as_str().map(str::len), Some(64), "{ready}");
    });
}

#[test]
fn a_frozen_node_is_routed_around_and_rejoins_by_itself_when_thawed() {
    let cluster = Cluster::start("sigstop", 3, |dir| {
        format!(
            "audit_log = {:?}\n[health]\nheartbeat_interval_ms = 200\nacceptable_pause_ms = 600\nmin_std_dev_ms = 50\nreplace_after_ms = 5000\n[requests]\nattempt_timeout_ms = 1500\n",
            dir.join("audit.jsonl").display().to_string()
        )
    });
    let audit = cluster.dir.join("audit.jsonl");
    let frozen = &cluster.nodes[2];
    let client = cluster.client(0);
    let model = fixture("gpt2_tiny");
    block_on(async {
        serve_model(&client, 3, "m", &model, "none", 3).await;
        signal(&frozen, "-STOP");
        let start = Instant::now();
        while state_of(&client, &frozen.addr).await.as_deref() != Some("down") {
            assert!(start.elapsed() < Duration::from_secs(15), "a frozen node was never marked down");
            // Requests keep being answered meanwhile (retried off the frozen node if picked).
            client.infer("m", &request(&[1, 2, 3], None)).await.unwrap();
        }
        eprintln!("frozen node down after {:?}", start.elapsed());
        for _ in 0..20 {
            let r = client.infer("m", &request(&[1, 2, 3], None)).await.unwrap();
            assert!(!r.processed_by.contains(&frozen.addr), "routed to a down node");
        }
        signal(&frozen, "-CONT");
        let thawed = Instant::now();
        while state_of(&client, &frozen.addr).await.as_deref() != Some("up") {
            assert!(thawed.elapsed() < Duration::from_secs(15), "a thawed node did not come back");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        eprintln!("thawed node up after {:?}", thawed.elapsed());
        // It serves again, with no manual step.
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..30 {
            seen.extend(client.infer("m", &request(&[1, 2, 3], None)).await.unwrap().processed_by);
        }
        assert!(seen.contains(&frozen.addr), "the thawed node gets no requests: {seen:?}");
        // It came back within `replace_after_ms`: nothing was moved (a flap causes no reshuffle).
        tokio::time::sleep(Duration::from_millis(500)).await;
        let log = std::fs::read_to_string(&audit).unwrap();
        assert!(log.contains("\"op\":\"down\"") && log.contains("\"op\":\"up\""), "{log}");
        assert!(!log.contains("\"op\":\"replace\""), "{log}");
    });
}

#[test]
fn a_flapping_node_causes_no_reshuffle_and_raises_a_flapping_alert() {
    let (smtp, mails) = smtp_sink();
    let (http, posts) = http_sink();
    // Every down is shorter than the 4 s grace before re-placement, and each one after the
    // first lasts until the previous down's grace has run out: its timer fires while the
    // node is down again (which once re-placed its replica).
    let cluster = Cluster::start("flap", 3, |dir| {
        format!(
            "audit_log = {:?}\n\
             [health]\nheartbeat_interval_ms = 200\nacceptable_pause_ms = 600\nmin_std_dev_ms = 50\nreplace_after_ms = 4000\n\
             [requests]\nattempt_timeout_ms = 1500\n\
             [alerts]\nwebhooks = [\"http://{http}/hook\"]\ngroup_ms = 100\nflap_count = 3\nflap_window_ms = 60000\n\
             [alerts.smtp]\nserver = \"{smtp}\"\nfrom = \"mlmf@localhost\"\nto = [\"ops@localhost\"]\n",
            dir.join("audit.jsonl").display().to_string()
        )
    });
    let audit = cluster.dir.join("audit.jsonl");
    let client = cluster.client(0);
    let nodes = &cluster.nodes[1..];
    let model = fixture("gpt2_tiny");
    block_on(async {
        // Two replicas on three nodes: a down node's replica would have somewhere to go.
        let s = serve_model(&client, 3, "m", &model, "none", 2).await;
        let victim = nodes.iter().find(|n| s.progress.iter().any(|p| p.node == n.addr)).unwrap();
        let mut previous: Option<Instant> = None;
        for cycle in 0..3 {
            signal(victim, "-STOP");
            let start = Instant::now();
            while state_of(&client, &victim.addr).await.as_deref() != Some("down") {
                assert!(start.elapsed() < Duration::from_secs(20), "cycle {cycle}: never marked down");
                client.infer("m", &request(&[1, 2, 3], None)).await.unwrap();
            }
            let down = Instant::now();
            let past_last_grace = previous.map_or(down, |p| p + Duration::from_millis(4500));
            let until =
                (down + Duration::from_millis(300)).max(past_last_grace).min(down + Duration::from_millis(3500));
            eprintln!("cycle {cycle}: down after {:?}, held until +{:?}", start.elapsed(), until - down);
            previous = Some(down);
            while Instant::now() < until {
                client.infer("m", &request(&[1, 2, 3], None)).await.unwrap();
            }
            signal(victim, "-CONT");
            let thawed = Instant::now();
            while state_of(&client, &victim.addr).await.as_deref() != Some("up") {
                assert!(thawed.elapsed() < Duration::from_secs(15), "cycle {cycle}: never came back");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        // Past every grace period: nothing was moved, and the replicas are where they were.
        tokio::time::sleep(Duration::from_millis(4500)).await;
        let log = std::fs::read_to_string(&audit).unwrap();
        assert_eq!(log.matches("\"op\":\"down\"").count(), 3, "{log}");
        assert!(log.contains("\"op\":\"flapping\""), "{log}");
        assert!(!log.contains("\"op\":\"replace\""), "a flap reshuffled replicas: {log}");
        let after = client.model("m").await.unwrap();
        let placed = |s: &mlmf::cluster::wire::ModelStatus| {
            let mut v: Vec<String> = s.progress.iter().map(|p| p.node.clone()).collect();
            v.sort();
            v
        };
        assert_eq!(placed(&after), placed(&s));
        client.infer("m", &request(&[1, 2, 3], None)).await.unwrap();
        // Each time it was thawed, the flapping node found the coordinator where it was: it
        // never took the coordinator for dead (and took over) for the time it was frozen.
        let seen_by_victim = ClusterClient::new(&victim.addr, Some(cluster.cluster_key())).cluster().await.unwrap();
        assert_eq!(seen_by_victim["coordinator"], cluster.nodes[0].addr.as_str());
        // The flapping alert reached the webhook and the mailbox.
        wait_alert(&posts, &mails, "node_flapping", "firing", &victim.addr).await;
    });
}

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

/// A minimal SMTP server on 127.0.0.1 that keeps every message it is given.
#[test]
fn alerts_for_a_down_node_and_its_recovery_reach_a_webhook_slack_and_smtp() {
    let (smtp, mails) = smtp_sink();
    let (http, posts) = http_sink();
    let cluster = Cluster::start("alerts", 2, |_| {
        format!(
            "[health]\nheartbeat_interval_ms = 200\nacceptable_pause_ms = 600\nmin_std_dev_ms = 50\nreplace_after_ms = 60000\n\
             [alerts]\nwebhooks = [\"http://{http}/hook\"]\nslack_webhooks = [\"http://{http}/slack\"]\ngroup_ms = 100\n\
             [alerts.smtp]\nserver = \"{smtp}\"\nfrom = \"mlmf@localhost\"\nto = [\"ops@localhost\"]\n"
        )
    });
    let b = &cluster.nodes[1];
    let client = cluster.client(0);
    let wait_for = |what: &str, ok: &dyn Fn() -> bool| {
        let start = Instant::now();
        while !ok() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "never saw {what}: {:?} {:?}",
                posts.lock().unwrap(),
                mails.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    block_on(wait_members(&client, 2));
    signal(&b, "-STOP");
    let hook = |status: &str| {
        posts.lock().unwrap().iter().any(|(p, v)| {
            p == "/hook"
                && v["alerts"].as_array().is_some_and(|a| {
                    a.iter().any(|e| e["rule"] == "node_down" && e["status"] == status && e["key"] == b.addr.as_str())
                })
        })
    };
    let slack = |status: &str| {
        let tag = format!("[{}] Critical node_down {}", status.to_uppercase(), b.addr);
        posts.lock().unwrap().iter().any(|(p, v)| p == "/slack" && v["text"].as_str().is_some_and(|t| t.contains(&tag)))
    };
    let mail = |status: &str| {
        let subject = format!("{status} node_down {}", b.addr);
        mails.lock().unwrap().iter().any(|m| m.contains(&subject) && m.contains("ops@localhost"))
    };
    wait_for("the firing webhook", &|| hook("firing"));
    wait_for("the firing Slack message", &|| slack("firing"));
    wait_for("the firing email", &|| mail("firing"));
    // Deduplicated: one firing notification per channel while it stays down.
    std::thread::sleep(Duration::from_millis(600));
    let firing_hooks =
        posts.lock().unwrap().iter().filter(|(p, v)| p == "/hook" && v["alerts"][0]["status"] == "firing").count();
    assert_eq!(firing_hooks, 1);
    signal(&b, "-CONT");
    wait_for("the resolved webhook", &|| hook("resolved"));
    wait_for("the resolved Slack message", &|| slack("resolved"));
    wait_for("the resolved email", &|| mail("resolved"));
}

#[test]
fn sigterm_hands_off_drains_and_leaves_with_no_failed_request() {
    let mut cluster = Cluster::start("leave", 3, |_| String::new());
    let mut leaver = cluster.nodes.remove(2);
    let client = cluster.client(0);
    let model = fixture("gpt2_tiny");
    block_on(async {
        serve_model(&client, 3, "m", &model, "pipeline:3", 2).await;
        let stop = std::rc::Rc::new(std::cell::Cell::new(false));
        let load_clients = (0..8).map(|_| {
            let (client, stop) = (client.clone(), stop.clone());
            async move {
                let (mut ok, mut failed) = (0usize, Vec::new());
                while !stop.get() {
                    match client.infer("m", &request(&[464, 968, 758], None)).await {
                        Ok(_) => ok += 1,
                        Err(e) => failed.push(e.to_string()),
                    }
                }
                (ok, failed)
            }
        });
        let leaving = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            signal(&leaver, "-TERM");
            let start = Instant::now();
            let status = loop {
                if let Some(s) = leaver.child.try_wait().unwrap() {
                    break s;
                }
                assert!(start.elapsed() < Duration::from_secs(60), "the node did not leave");
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            eprintln!("left {:?} after SIGTERM", start.elapsed());
            tokio::time::sleep(Duration::from_millis(300)).await;
            stop.set(true);
            status
        };
        let (results, status) = futures_util::join!(futures_util::future::join_all(load_clients), leaving);
        assert!(status.success(), "{status}");
        let failed: Vec<&String> = results.iter().flat_map(|r| &r.1).collect();
        let served: usize = results.iter().map(|r| r.0).sum();
        assert!(failed.is_empty(), "{} of {} failed: {failed:?}", failed.len(), served + failed.len());
        // Two members left, each shard still with two replicas on them.
        let c = client.cluster().await.unwrap();
        assert_eq!(c["nodes"].as_array().unwrap().len(), 2, "{c}");
        let s = client.model("m").await.unwrap();
        for shard in 0..s.plan.shards.len() {
            assert_eq!(s.progress.iter().filter(|p| p.shard == shard && p.done).count(), 2, "{:?}", s.progress);
        }
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

#[test]
fn when_the_coordinator_dies_a_survivor_takes_over_and_no_request_fails() {
    let mut cluster = Cluster::start("coordinator-death", 3, |dir| {
        format!(
            "audit_log = {:?}\n\
             [health]\nheartbeat_interval_ms = 200\nacceptable_pause_ms = 600\nmin_std_dev_ms = 50\nreplace_after_ms = 300\n\
             [requests]\nattempt_timeout_ms = 3000\n",
            dir.join("audit.jsonl").display().to_string()
        )
    });
    let cluster_key = cluster.cluster_key();
    let client = cluster.client(0);
    let model = fixture("gpt2_tiny");
    let refs = common::read_safetensors(&model.join("reference.safetensors"));
    let (atol, rtol) = common::tolerances("gpt2_tiny")["logits"];
    let ids: Vec<i64> = refs["seq7.input_ids"].i64.clone();
    let reference = refs["seq7.logits"].f32.clone();
    block_on(async {
        // Two replicas of each of two stages on three nodes: the coordinator holds some.
        let before = serve_model(&client, 3, "m", &model, "pipeline:2", 2).await;
        let mut coordinator = cluster.nodes.remove(0);
        let dead = coordinator.addr.clone();
        assert!(before.progress.iter().any(|p| p.node == dead), "the coordinator holds no replica");
        let _ = coordinator.child.kill();
        let _ = coordinator.child.wait();
        let killed = Instant::now();
        let others = &cluster.nodes;
        // 8 clients on the surviving nodes, 400 requests through the takeover: every one
        // answered, and right.
        let served = std::rc::Rc::new(std::cell::Cell::new(0usize));
        let clients = (0..8).map(|i| {
            let client = ClusterClient::new(&others[i % 2].addr, Some(cluster_key.clone()));
            let (ids, reference, served, dead) = (ids.clone(), reference.clone(), served.clone(), dead.clone());
            async move {
                let mut failed = Vec::new();
                while served.get() < 400 {
                    match client.infer("m", &request(&ids, Some(vec!["logits".into()]))).await {
                        Ok(r) => {
                            let got = &r.outputs["logits"].data;
                            let worst = got
                                .iter()
                                .zip(&reference)
                                .map(|(g, w)| (g - w).abs() - (atol + rtol * w.abs()))
                                .fold(f32::MIN, f32::max);
                            assert!(worst <= 0.0, "an answer off the reference by {worst}");
                            assert!(!r.processed_by.contains(&dead), "served by the dead coordinator");
                            served.set(served.get() + 1);
                        }
                        Err(e) => failed.push(e.to_string()),
                    }
                }
                failed
            }
        });
        let failed: Vec<String> = futures_util::future::join_all(clients).await.into_iter().flatten().collect();
        assert!(failed.is_empty(), "{} requests failed: {failed:?}", failed.len());
        // The survivor with the smaller id coordinates, with the dead one down; both
        // survivors agree.
        let successor = others.iter().map(|n| n.addr.clone()).min().unwrap();
        let survivor = ClusterClient::new(&others[1].addr, Some(cluster_key.clone()));
        loop {
            let c = survivor.cluster().await;
            if let Ok(c) = &c
                && c["coordinator"] == successor.as_str()
                && state_of(&survivor, &dead).await.as_deref() == Some("down")
            {
                break;
            }
            assert!(killed.elapsed() < Duration::from_secs(30), "no takeover: {c:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        eprintln!("a successor coordinates {:?} after the kill", killed.elapsed());
        // It took over the registry and makes replication whole again on the survivors.
        loop {
            let s = survivor.model("m").await.unwrap();
            let live = |p: &&mlmf::cluster::wire::ShardProgress| p.done && p.node != dead;
            if (0..2).all(|shard| s.progress.iter().filter(live).filter(|p| p.shard == shard).count() == 2) {
                break;
            }
            assert!(killed.elapsed() < Duration::from_secs(30), "replication not whole: {:?}", s.progress);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // And it runs the control plane: a new model loads and serves through either node.
        survivor.load(&load_request("m2", &model, "none", 2)).await.unwrap();
        survivor.wait_ready("m2", Duration::from_secs(60), |_, _| {}).await.unwrap();
        for n in others {
            let c = ClusterClient::new(&n.addr, Some(cluster_key.clone()));
            assert_eq!(c.models().await.unwrap().len(), 2);
            c.infer("m2", &request(&[1, 2, 3], None)).await.unwrap();
        }
        let log = std::fs::read_to_string(cluster.dir.join("audit.jsonl")).unwrap();
        assert!(log.contains("\"op\":\"takeover\""), "{log}");
    });
}

#[test]
fn a_frozen_coordinator_is_replaced_and_steps_down_when_thawed() {
    let cluster = Cluster::start("coordinator-frozen", 3, |dir| {
        format!(
            "audit_log = {:?}\n\
             [health]\nheartbeat_interval_ms = 200\nacceptable_pause_ms = 600\nmin_std_dev_ms = 50\nreplace_after_ms = 300\n\
             [requests]\nattempt_timeout_ms = 1500\n",
            dir.join("audit.jsonl").display().to_string()
        )
    });
    let old = cluster.nodes[0].addr.clone();
    let successor = cluster.nodes[1..].iter().map(|n| n.addr.clone()).min().unwrap();
    let clients: Vec<ClusterClient> = (0..3).map(|i| cluster.client(i)).collect();
    let model = fixture("gpt2_tiny");
    block_on(async {
        serve_model(&clients[0], 3, "m", &model, "none", 2).await;
        signal(&cluster.nodes[0], "-STOP");
        // Replaced while frozen; the survivors keep serving meanwhile.
        let frozen = Instant::now();
        loop {
            clients[1 + frozen.elapsed().as_millis() as usize % 2]
                .infer("m", &request(&[1, 2, 3], None))
                .await
                .unwrap();
            if let Ok(c) = clients[2].cluster().await
                && c["coordinator"] == successor.as_str()
                && state_of(&clients[2], &old).await.as_deref() == Some("down")
            {
                break;
            }
            assert!(frozen.elapsed() < Duration::from_secs(30), "no takeover from the frozen coordinator");
        }
        signal(&cluster.nodes[0], "-CONT");
        // Thawed, it learns of the newer coordinator, steps down and comes back as a member.
        let thawed = Instant::now();
        loop {
            let own = clients[0].cluster().await;
            if let Ok(c) = &own
                && c["coordinator"] == successor.as_str()
                && state_of(&clients[1], &old).await.as_deref() == Some("up")
            {
                break;
            }
            assert!(thawed.elapsed() < Duration::from_secs(30), "the old coordinator did not step down: {own:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        eprintln!("stepped down and up again {:?} after the thaw", thawed.elapsed());
        // One registry, one coordinator, and every node serves.
        for c in &clients {
            assert_eq!(c.models().await.unwrap().len(), 1);
            assert_eq!(c.cluster().await.unwrap()["coordinator"], successor.as_str());
            c.infer("m", &request(&[1, 2, 3], None)).await.unwrap();
        }
        let log = std::fs::read_to_string(cluster.dir.join("audit.jsonl")).unwrap();
        assert!(log.contains("\"op\":\"takeover\"") && log.contains("\"op\":\"step_down\""), "{log}");
    });
}
