//! Graceful leave across real processes: a node sent SIGTERM under 8 clients hands its
//! replicas off, drains and exits 0 with no failed request, and every shard keeps its
//! replication on the members left; a stream the leaving node took itself runs to its end
//! before the node goes.

mod common;

use std::time::{Duration, Instant};

use common::fixture;
use common::nodes::*;

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

/// A completion streamed from the node that is told to leave: the node hands off, then waits
/// for the stream it took to finish (every token, then `[DONE]`) before it exits 0.
#[test]
fn a_leaving_node_finishes_the_streams_it_took_before_it_goes() {
    let mut cluster = Cluster::start("leave-stream", 3, |_| String::new());
    let leaver = cluster.nodes.remove(2);
    let client = cluster.client(0);
    block_on(serve_model(&client, 3, "m", &fixture("gpt2_tiny"), "pipeline:3", 2));
    let key = common::http::bearer(&cluster.key);
    let body = serde_json::json!({"model": "m", "prompt": [464, 968, 758], "max_tokens": 120, "temperature": 0,
        "ignore_eos": true, "return_token_ids": true, "stream": true});
    let mut events = common::http::Events::open(&leaver.addr, &key, "/v1/completions", &body);
    let status = events.status;
    assert_eq!(status, 200, "{:?}", events.next_data());
    let mut tokens = 0usize;
    let mut signalled = false;
    let mut done = false;
    while let Some(data) = events.next_data() {
        if data == "[DONE]" {
            done = true;
            break;
        }
        let chunk: serde_json::Value = serde_json::from_str(&data).unwrap();
        assert!(chunk.get("error").is_none(), "{chunk}");
        tokens += chunk["choices"][0]["token_ids"].as_array().map_or(0, Vec::len);
        if tokens >= 5 && !signalled {
            signal(&leaver, "-TERM");
            signalled = true;
        }
    }
    assert!(signalled && done, "the stream ended without [DONE] after {tokens} tokens");
    assert_eq!(tokens, 120);
    let mut leaver = leaver;
    let status = wait_exit(&mut leaver, Duration::from_secs(60), "the node did not leave");
    assert!(status.success(), "{status}");
}
