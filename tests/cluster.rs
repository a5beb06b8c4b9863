//! The cluster runtime across real processes: `mlmf node` processes on 127.0.0.1, driven
//! only through their HTTP API, serving gpt2_tiny under every strategy and checked against
//! the PyTorch references; hostile requests; TLS; `mlmf serve`.

mod common;

use std::process::Command;
use std::time::Duration;

use common::nodes::*;
use common::{fixture, read_safetensors, tolerances};
use mlmf::api::types::LoadRequest;
use mlmf::client::{ClientError, ClusterClient};
use mlmf::exec::{HostTensor, RunOutputs};
use mlmf_actors::auth::ClusterKey;

#[test]
fn three_nodes_serve_every_strategy_through_http_and_a_node_pulls_what_it_cannot_read() {
    let dir = temp_dir("strategies");
    let key = key_file(&dir, "a cluster key for the strategies test");
    let empty_root = dir.join("no-models-here");
    std::fs::create_dir_all(&empty_root).unwrap();
    let a = spawn(None, &key, &[]);
    let b = spawn(Some(&a.addr), &key, &[]);
    // This node may not read the fixture directory: it must pull its weights from a peer.
    let c = spawn(Some(&a.addr), &key, &["--model-root", empty_root.to_str().unwrap(), "--node-id", "puller"]);
    let k = Some(ClusterKey::from_file(&key).unwrap());
    let clients: Vec<ClusterClient> = [&a, &b, &c].iter().map(|n| ClusterClient::new(&n.addr, k.clone())).collect();
    let model = fixture("gpt2_tiny");
    let reference = read_safetensors(&model.join("reference.safetensors"));
    let tol = tolerances("gpt2_tiny");
    let models =
        [("m-layer", "layer:2", 1), ("m-pipe", "pipeline:3", 1), ("m-tensor", "tensor:2", 1), ("m-none", "none", 2)];
    block_on(async {
        wait_members(&clients[0], 3).await;
        wait_all_ready(&clients).await;
        for (i, (id, strategy, replication)) in models.iter().enumerate() {
            let req = LoadRequest {
                id: id.to_string(),
                path: model.display().to_string(),
                strategy: strategy.to_string(),
                replication: *replication,
                placement: None,
                replication_mode: Default::default(),
                autoscaling: None,
            };
            // Any node takes a load; non-coordinators forward it.
            let s = clients[i % 3].load(&req).await.unwrap_or_else(|e| panic!("{id}: {e}"));
            assert_eq!(s.strategy, *strategy);
        }
        let mut pulled = 0;
        for (id, _, _) in &models {
            let s = clients[1]
                .wait_ready(id, Duration::from_secs(120), |_, _| {})
                .await
                .unwrap_or_else(|e| panic!("{id}: {e}"));
            assert!(s.progress.iter().all(|p| p.done && p.loaded == p.total && p.total > 0), "{id}: {:?}", s.progress);
            for p in &s.progress {
                assert_eq!(p.pulled, p.node == "puller", "{id}: {p:?}");
                pulled += p.pulled as usize;
            }
        }
        assert!(pulled > 0, "the puller node was given no shard");
        let mut failures = Vec::new();
        for (m, (id, strategy, _)) in models.iter().enumerate() {
            for (j, l) in [1usize, 7, 32].into_iter().enumerate() {
                let ids = &reference[&format!("seq{l}.input_ids")].i64;
                let mut outs: Vec<String> = (0..6).map(|k| format!("block_output.{k}")).collect();
                outs.extend(["logits".to_string(), "last_hidden_state".to_string()]);
                let client = &clients[(m + j) % 3];
                let r =
                    client.infer(id, &request(ids, Some(outs))).await.unwrap_or_else(|e| panic!("{id} seq{l}: {e}"));
                assert_eq!(r.outputs.len(), 8);
                assert!(!r.processed_by.is_empty());
                let out = RunOutputs {
                    tensors: r
                        .outputs
                        .into_iter()
                        .map(|(k, t)| (k, HostTensor { shape: t.shape, data: t.data }))
                        .collect(),
                };
                failures.extend(common::compare(
                    &out,
                    &reference,
                    &format!("seq{l}."),
                    &tol,
                    &format!("{strategy} seq{l} via {}", client.addr()),
                ));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        // Replication 2 (the default p2c balancer may keep light sequential traffic on the
        // faster replica): with session affinity, one session stays on one replica and
        // sessions spread over both, so both replicas serve. Rendezvous hashing puts each
        // session on either replica with even odds, so 64 sessions all land on one replica
        // with probability 2^-63 (8 sessions did so once in 128 runs, and CI met that run).
        let mut by_session = std::collections::BTreeMap::new();
        for i in 0..128 {
            let session = format!("user-{}", i % 64);
            let mut req = request(&[1, 2, 3], None);
            req.session_id = Some(session.clone());
            let r = clients[i % 3].infer("m-none", &req).await.unwrap();
            by_session.entry(session).or_insert_with(std::collections::BTreeSet::new).insert(r.processed_by);
        }
        assert!(by_session.values().all(|routes| routes.len() == 1), "{by_session:?}");
        let replicas: std::collections::BTreeSet<_> = by_session.values().flatten().collect();
        assert_eq!(replicas.len(), 2, "{by_session:?}");
        // Unloading removes the model everywhere.
        clients[2].unload("m-layer").await.unwrap();
        let e = clients[1].infer("m-layer", &request(&[1, 2], None)).await.unwrap_err();
        assert!(matches!(e, ClientError::Api { status: 404, .. }), "{e}");
        let r = clients[1].infer("m-pipe", &request(&[1, 2], None)).await.unwrap();
        assert_eq!(r.outputs["logits"].shape, vec![1, 2, 1000]);
    });
    drop((a, b, c));
    let _ = std::fs::remove_dir_all(dir);
}

async fn raw(addr: &str, method: &str, path: &str, token: Option<&str>, body: Vec<u8>) -> (u16, serde_json::Value) {
    let client = awc::Client::builder().timeout(Duration::from_secs(30)).finish();
    let mut req = client.request(method.parse().unwrap(), format!("http://{addr}{path}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let mut resp = req.send_body(body).await.unwrap();
    let bytes = resp.body().limit(64 << 20).await.unwrap();
    let v = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::String(String::from_utf8_lossy(&bytes).into()));
    (resp.status().as_u16(), v)
}

#[test]
fn bad_requests_get_clean_errors_and_the_cluster_keeps_serving() {
    let dir = temp_dir("hostile");
    let secret = "the right cluster key, long enough";
    let key = key_file(&dir, secret);
    let a = spawn(None, &key, &[]);
    let b = spawn(Some(&a.addr), &key, &[]);
    let client = ClusterClient::new(&b.addr, Some(ClusterKey::new(secret.as_bytes()).unwrap()));
    let model = fixture("gpt2_tiny");
    block_on(async {
        serve_model(&client, 2, "m", &model, "pipeline:2", 1).await;
        let t = Some(secret);
        let infer = "/v1/models/m/infer";
        type Case<'a> = (&'a str, &'a str, Option<&'a str>, Vec<u8>, u16, &'a str);
        let cases: Vec<Case> = vec![
            ("POST", "/v1/models/nope/infer", t, br#"{"input_ids":[[1,2]]}"#.to_vec(), 404, "model_not_found"),
            ("POST", infer, t, br#"{"input_ids":[[1,5000]]}"#.to_vec(), 400, "invalid_input"),
            ("POST", infer, t, br#"{"input_ids":[[1,-3]]}"#.to_vec(), 400, "invalid_input"),
            ("POST", infer, t, br#"{"input_ids":[[1,2],[3]]}"#.to_vec(), 400, "invalid_shape"),
            ("POST", infer, t, br#"{"input_ids":[]}"#.to_vec(), 400, "invalid_shape"),
            ("POST", infer, t, br#"{"input_ids":[[1,2]],"attention_mask":[[1]]}"#.to_vec(), 400, "invalid_shape"),
            ("POST", infer, t, br#"{"input_ids":[[1,2]],"outputs":["secrets"]}"#.to_vec(), 400, "unknown_output"),
            ("POST", infer, t, br#"{"input_ids":[[1,2]"#.to_vec(), 400, "invalid_json"),
            ("POST", infer, t, br#"{"input_ids":[[1,2]],"surprise":1}"#.to_vec(), 400, "invalid_json"),
            ("POST", infer, t, vec![b' '; 9 << 20], 413, "body_too_large"),
            ("POST", infer, None, br#"{"input_ids":[[1,2]]}"#.to_vec(), 401, "unauthorized"),
            (
                "POST",
                infer,
                Some("the wrong cluster key, long enough"),
                br#"{"input_ids":[[1,2]]}"#.to_vec(),
                401,
                "unauthorized",
            ),
            ("GET", "/v1/cluster", None, vec![], 401, "unauthorized"),
            ("POST", "/v1/models", t, br#"{"id":"x","path":"relative/dir"}"#.to_vec(), 400, "invalid_path"),
            (
                "POST",
                "/v1/models",
                t,
                format!(r#"{{"id":"x","path":"{}","strategy":"pipeline:0"}}"#, model.display()).into_bytes(),
                400,
                "invalid_strategy",
            ),
            (
                "POST",
                "/v1/models",
                t,
                format!(r#"{{"id":"x","path":"{}","strategy":"tensor:3"}}"#, model.display()).into_bytes(),
                400,
                "invalid_strategy",
            ),
            (
                "POST",
                "/v1/models",
                t,
                format!(r#"{{"id":"m","path":"{}"}}"#, model.display()).into_bytes(),
                409,
                "model_exists",
            ),
            (
                "POST",
                "/v1/models",
                t,
                format!(r#"{{"id":"../x","path":"{}"}}"#, model.display()).into_bytes(),
                400,
                "invalid_id",
            ),
            ("POST", "/v1/models", t, br#"{"id":"x","path":"/no/such/dir"}"#.to_vec(), 400, "unreadable_path"),
            ("GET", "/v1/models/nope", t, vec![], 404, "not_found"),
            ("DELETE", "/v1/models/nope", t, vec![], 404, "not_found"),
            ("GET", "/v2/whatever", t, vec![], 404, "not_found"),
        ];
        for (method, path, token, body, status, code) in cases {
            let (got, v) = raw(&b.addr, method, path, token, body).await;
            assert_eq!((got, v["error"]["code"].as_str()), (status, Some(code)), "{method} {path}: {v}");
            assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
        }
        // A node with the wrong cluster key cannot join, and says why.
        let wrong = key_file(&dir, "an intruder's key, long enough too");
        let intruder = spawn(Some(&a.addr), &wrong, &[]);
        let out = intruder.wait_with_output_ref();
        assert!(!out.0.success(), "the intruder joined");
        assert!(out.1.contains("refused the cluster key"), "{}", out.1);
        // Still serving, and the cluster has two members.
        let r = client.infer("m", &request(&[464, 968, 758], None)).await.unwrap();
        assert_eq!(r.outputs["logits"].shape, vec![1, 3, 1000]);
        assert_eq!(client.cluster().await.unwrap()["nodes"].as_array().unwrap().len(), 2);
        let (s, _) = raw(&a.addr, "GET", "/healthz", t, vec![]).await;
        assert_eq!(s, 200);
        let (s, v) = raw(&b.addr, "GET", "/readyz", t, vec![]).await;
        assert_eq!((s, v["ready"].as_bool()), (200, Some(true)));
        let (s, v) = raw(&b.addr, "GET", "/metrics", t, vec![]).await;
        let text = v.as_str().unwrap_or_default().to_string();
        assert_eq!(s, 200);
        for needle in [
            "mlmf_requests_total{",
            "status=\"400\"",
            "status=\"200\"",
            "mlmf_request_duration_seconds_bucket",
            "mlmf_peer_bytes_sent_total",
            "mlmf_node_up",
            "mlmf_shard_in_flight{",
            "mlmf_shard_latency_ms{",
        ] {
            assert!(text.contains(needle), "metrics lack {needle}:\n{text}");
        }
    });
    drop((a, b));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_mutual_tls_cluster_serves_its_clients_and_refuses_others() {
    let dir = temp_dir("mtls");
    let key = key_file(&dir, "a cluster key for the mtls test");
    let files = mlmf_actors::tls::self_signed(&dir.join("tls"), true).unwrap();
    let tls_args = [
        "--tls-cert",
        files.cert.to_str().unwrap(),
        "--tls-key",
        files.key.to_str().unwrap(),
        "--tls-ca",
        files.ca.to_str().unwrap(),
        "--mtls",
    ];
    let a = spawn(None, &key, &tls_args);
    let b = spawn(Some(&a.addr), &key, &tls_args);
    let k = Some(ClusterKey::from_file(&key).unwrap());
    let client = ClusterClient::new(&b.addr, k.clone()).with_tls(files.load().unwrap().client);
    let model = fixture("gpt2_tiny");
    block_on(async {
        serve_model(&client, 2, "m", &model, "tensor:2", 1).await;
        let r = client.infer("m", &request(&[464, 968, 758], None)).await.unwrap();
        assert_eq!(r.outputs["logits"].shape, vec![1, 3, 1000]);
        assert_eq!(r.processed_by.len(), 2, "{:?}", r.processed_by);
        // Trusting the CA is not enough: mutual TLS wants a client certificate.
        let anonymous =
            ClusterClient::new(&b.addr, k.clone()).with_tls(mlmf_actors::tls::client_trusting(&files.ca).unwrap());
        assert!(matches!(anonymous.cluster().await, Err(ClientError::Unreachable { .. })));
        // Plain HTTP to a TLS port gets nothing.
        assert!(ClusterClient::new(&b.addr, k).cluster().await.is_err());
    });
    drop((a, b));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn serve_starts_a_tls_cluster_loads_the_model_and_says_how_to_call_it() {
    let out = Command::new(env!("CARGO_BIN_EXE_mlmf"))
        .args(["serve", "--model", fixture("gpt2_tiny").to_str().unwrap(), "--nodes", "3", "--strategy", "pipeline:3"])
        .arg("--exit-when-ready")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("serving default (pipeline:3, 3 shards on 3 nodes) at https://127.0.0.1:"), "{stdout}");
    assert!(stdout.contains("curl -s --cacert"), "{stdout}");
    // It also says how to ask for a completion, and shows one (the reference's greedy text).
    assert!(stdout.contains("/v1/completions") && stdout.contains("mlmf generate --addr"), "{stdout}");
    let refs: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture("gpt2_tiny").join("generation.json")).unwrap()).unwrap();
    let text = format!("{:?}", refs["prompts"][0]["new_text"].as_str().unwrap());
    assert!(stdout.contains("completion of \"The cluster will load the model\"") && stdout.contains(&text), "{stdout}");
    // Its key and TLS files lived in a private directory of their own, gone once it exited.
    let dir = key_dir(&stdout);
    assert!(dir.file_name().unwrap().to_str().unwrap().starts_with("mlmf-serve-"), "{}", dir.display());
    assert!(!dir.exists(), "{} is still there", dir.display());
}

/// The directory of the key file `mlmf serve` names on its `cluster key:` line.
fn key_dir(stdout: &str) -> std::path::PathBuf {
    let line = stdout.lines().find(|l| l.starts_with("cluster key: ")).expect("a cluster key line");
    let key = line.trim_start_matches("cluster key: ").split_whitespace().next().unwrap();
    std::path::Path::new(key).parent().unwrap().to_path_buf()
}

/// Ctrl-C stops `mlmf serve` cleanly: the nodes stop, the private directory (0700, with the
/// key and the TLS private key) is removed, and it exits 0.
#[test]
fn serve_interrupted_removes_its_private_directory() {
    use std::io::BufRead;
    use std::os::unix::fs::PermissionsExt;
    let mut child = Command::new(env!("CARGO_BIN_EXE_mlmf"))
        .args(["serve", "--model", fixture("gpt2_tiny").to_str().unwrap(), "--nodes", "2"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        assert!(stdout.read_line(&mut line).unwrap() > 0, "serve ended early:\n{seen}");
        seen.push_str(&line);
        if line.starts_with("completion of") {
            break;
        }
    }
    let dir = key_dir(&seen);
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "{}", dir.display());
    let key_mode = std::fs::metadata(dir.join("cluster.key")).unwrap().permissions().mode() & 0o777;
    assert_eq!(key_mode, 0o600);
    let key = std::fs::read_to_string(dir.join("cluster.key")).unwrap();
    assert!(key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit()), "{key}");
    assert!(Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap().success());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(!dir.exists(), "{} is still there after Ctrl-C", dir.display());
}

#[test]
fn past_its_in_flight_bound_a_node_answers_429_with_retry_after() {
    let cluster = Cluster::start("backpressure", 1, |_| "[requests]\nmax_in_flight = 2\n".into());
    let a = &cluster.nodes[0];
    let secret = std::fs::read_to_string(&cluster.key).unwrap();
    let client = cluster.client(0);
    let model = fixture("gpt2_tiny");
    block_on(async {
        serve_model(&client, 1, "m", &model, "none", 1).await;
        let ids: Vec<i64> = (0..200).map(|i| i % 1000).collect();
        let body = serde_json::to_vec(&serde_json::json!({ "input_ids": [ids] })).unwrap();
        let calls = (0..16).map(|_| {
            let (addr, body, secret) = (a.addr.clone(), body.clone(), secret.clone());
            async move {
                let c = awc::Client::builder().timeout(Duration::from_secs(60)).finish();
                let r = c
                    .post(format!("http://{addr}/v1/models/m/infer"))
                    .bearer_auth(secret.trim())
                    .send_body(body)
                    .await
                    .unwrap();
                (r.status().as_u16(), r.headers().get("retry-after").is_some())
            }
        });
        let answers = futures_util::future::join_all(calls).await;
        let ok = answers.iter().filter(|a| a.0 == 200).count();
        let refused = answers.iter().filter(|a| a.0 == 429).count();
        assert!(ok >= 1 && refused >= 1 && ok + refused == 16, "{answers:?}");
        assert!(answers.iter().filter(|a| a.0 == 429).all(|a| a.1), "429 without Retry-After");
        // And it serves again once the burst is over.
        client.infer("m", &request(&[1, 2, 3], None)).await.unwrap();
    });
}

#[test]
fn a_high_priority_request_overtakes_queued_low_ones() {
    // The shard's priority queue is what is tested: without batching, every low request
    // waits there as its own message (batched, they would wait at the taking node and reach
    // the shard together, as one).
    let cluster = Cluster::start("priority", 1, |_| "[batching]\nenabled = false\n".to_string());
    let (a, key) = (&cluster.nodes[0], &cluster.key);
    let client = cluster.client(0);
    let model = fixture("gpt2_tiny");
    block_on(async {
        serve_model(&client, 1, "m", &model, "none", 1).await;
        let done = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let long: Vec<i64> = (0..250).map(|i| (i * 7) % 1000).collect();
        let lows = (0..12).map(|i| {
            let (client, done, long) = (client.clone(), done.clone(), long.clone());
            async move {
                let mut req = request(&long, Some(vec!["last_hidden_state".into()]));
                req.priority = Some(mlmf::api::types::Priority::Low);
                client.infer("m", &req).await.unwrap();
                done.borrow_mut().push(format!("low-{i}"));
            }
        });
        let (addr, secret) = (a.addr.clone(), std::fs::read_to_string(key).unwrap());
        let high = {
            let (client, done) = (client.clone(), done.clone());
            async move {
                // Arrive once at least four lows wait in the shard's queue (its gauge in
                // /metrics), however fast this machine computes them.
                let http = awc::Client::new();
                loop {
                    let mut r =
                        http.get(format!("http://{addr}/metrics")).bearer_auth(secret.trim()).send().await.unwrap();
                    let text = String::from_utf8(r.body().await.unwrap().to_vec()).unwrap();
                    let queued = text
                        .lines()
                        .filter(|l| l.starts_with("mlmf_shard_queued{"))
                        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                        .sum::<f64>();
                    if queued >= 4.0 {
                        break;
                    }
                    assert!(done.borrow().len() < 12, "the lows finished before four of them were ever queued");
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                let before = done.borrow().len();
                let mut req = request(&[1, 2, 3], None);
                req.priority = Some(mlmf::api::types::Priority::High);
                client.infer("m", &req).await.unwrap();
                done.borrow_mut().push("high".to_string());
                before
            }
        };
        let (_, before) = futures_util::join!(futures_util::future::join_all(lows), high);
        let order = done.borrow().clone();
        let pos = order.iter().position(|n| n == "high").unwrap();
        // Only the low being computed when it arrived (and at most one more that started
        // while its request was on the way) finished ahead of it; four or more were waiting.
        assert!(
            pos <= before + 2,
            "the high-priority request finished {pos}th, {before} lows were done when it was sent: {order:?}"
        );
    });
}

#[test]
fn affinity_by_model_keeps_a_model_on_one_replica_while_it_lives() {
    let cluster = Cluster::start("affinity", 2, |_| "[balancing]\naffinity_key = \"model\"\n".into());
    let client = cluster.client(0);
    let model = fixture("gpt2_tiny");
    block_on(async {
        serve_model(&client, 2, "m", &model, "none", 2).await;
        let mut routes = std::collections::BTreeSet::new();
        for _ in 0..12 {
            routes.insert(client.infer("m", &request(&[1, 2, 3], None)).await.unwrap().processed_by);
        }
        assert_eq!(routes.len(), 1, "{routes:?}");
    });
}

#[test]
fn placement_counts_what_nodes_already_hold_and_refuses_what_does_not_fit() {
    // gpt2_tiny is about 20 MB; each node offers 30 MiB, room for one copy.
    // 30 MiB for weights alone: no KV cache budget reserved out of it.
    let cluster = Cluster::start("room", 2, |_| "memory_mib = 30\n[generation]\nkv_cache_bytes = 0\n".into());
    let client = cluster.client(0);
    let model = fixture("gpt2_tiny");
    block_on(async {
        wait_members(&client, 2).await;
        let mut holder = Vec::new();
        for id in ["m1", "m2"] {
            client.load(&load_request(id, &model, "none", 1)).await.unwrap();
            let s = client.wait_ready(id, Duration::from_secs(60), |_, _| {}).await.unwrap();
            holder.push(s.placement.assignments[0].node.clone());
        }
        assert_ne!(holder[0], holder[1], "the second model went onto the node the first one filled");
        for id in ["m1", "m2"] {
            client.infer(id, &request(&[1, 2, 3], None)).await.unwrap();
        }
        // A third copy fits nowhere: refused at load, with the reason.
        let e = client.load(&load_request("m3", &model, "none", 1)).await.unwrap_err();
        match &e {
            ClientError::Api { status: 503, message, .. } => assert!(message.contains("bytes"), "{e}"),
            _ => panic!("{e}"),
        }
        // Nor can a replica move onto a full node.
        let mv = mlmf::api::types::MigrateRequest { shard: 0, from: holder[0].clone(), to: holder[1].clone() };
        let e = client.migrate("m1", &mv).await.unwrap_err();
        assert!(matches!(&e, ClientError::Api { status: 409, code, .. } if code == "insufficient_memory"), "{e}");
        // Unloading frees the room again.
        client.unload("m2").await.unwrap();
        client.load(&load_request("m3", &model, "none", 1)).await.unwrap();
        let s = client.wait_ready("m3", Duration::from_secs(60), |_, _| {}).await.unwrap();
        assert_eq!(s.placement.assignments[0].node, holder[1]);
        client.infer("m1", &request(&[1, 2, 3], None)).await.unwrap();
    });
}
