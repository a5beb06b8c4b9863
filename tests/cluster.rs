//! The cluster runtime across real processes: `mlmf node` processes on 127.0.0.1, driven
//! only through their HTTP API, serving gpt2_tiny under every strategy and checked against
//! the PyTorch references.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{fixture, read_safetensors, tolerances};
use mlmf::api::types::{InferRequest, LoadRequest};
use mlmf::client::{ClientError, ClusterClient};
use mlmf::exec::{HostTensor, RunOutputs};
use mlmf_actors::auth::ClusterKey;

struct Node {
    child: Child,
    addr: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mlmf-test-{tag}-{}-{}", std::process::id(), fastrand::u32(..)));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn key_file(dir: &Path, key: &str) -> PathBuf {
    let f = dir.join(format!("key-{}", fastrand::u32(..)));
    std::fs::write(&f, key).unwrap();
    f
}

fn spawn(join: Option<&str>, key: &Path, extra: &[&str]) -> Node {
    let addr = format!("127.0.0.1:{}", free_port());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mlmf"));
    cmd.args(["node", "--listen", &addr, "--cluster-key-file"]).arg(key).args(extra);
    if let Some(j) = join {
        cmd.args(["--join", j]);
    }
    let child = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    Node { child, addr }
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    actix_web::rt::System::new().block_on(f)
}

async fn wait_members(client: &ClusterClient, n: usize) {
    let start = Instant::now();
    loop {
        if let Ok(c) = client.cluster().await
            && c["nodes"].as_array().is_some_and(|a| a.len() == n)
        {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "cluster of {n} did not form");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn request(ids: &[i64], outputs: Option<Vec<String>>) -> InferRequest {
    InferRequest {
        input_ids: vec![ids.to_vec()],
        attention_mask: None,
        token_type_ids: None,
        outputs,
        session_id: None,
        priority: None,
        timeout_ms: None,
    }
}

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
        for (i, (id, strategy, replication)) in models.iter().enumerate() {
            let req = LoadRequest {
                id: id.to_string(),
                path: model.display().to_string(),
                strategy: strategy.to_string(),
                replication: *replication,
                placement: None,
                replication_mode: Default::default(),
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
        let mut served_by = std::collections::BTreeSet::new();
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
                if *id == "m-none" {
                    served_by.extend(r.processed_by.clone());
                }
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
        // Replication 2: the round-robin balancer uses both replicas.
        for _ in 0..4 {
            let r = clients[0].infer("m-none", &request(&[1, 2, 3], None)).await.unwrap();
            served_by.extend(r.processed_by);
        }
        assert!(served_by.len() >= 2, "one replica served everything: {served_by:?}");
        // Session affinity: one session stays on one replica; sessions spread over both.
        let mut by_session = std::collections::BTreeMap::new();
        for i in 0..24 {
            let session = format!("user-{}", i % 8);
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
        wait_members(&client, 2).await;
        let load = LoadRequest {
            id: "m".into(),
            path: model.display().to_string(),
            strategy: "pipeline:2".into(),
            replication: 1,
            placement: None,
            replication_mode: Default::default(),
        };
        client.load(&load).await.unwrap();
        client.wait_ready("m", Duration::from_secs(60), |_, _| {}).await.unwrap();
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
        ] {
            assert!(text.contains(needle), "metrics lack {needle}:\n{text}");
        }
    });
    drop((a, b));
    let _ = std::fs::remove_dir_all(dir);
}

trait WaitRef {
    fn wait_with_output_ref(self) -> (std::process::ExitStatus, String);
}

impl WaitRef for Node {
    fn wait_with_output_ref(mut self) -> (std::process::ExitStatus, String) {
        use std::io::Read;
        let start = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "the intruder did not exit");
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        (status, err)
    }
}

#[test]
fn a_killed_node_is_marked_down_its_requests_retried_and_its_replicas_placed_again() {
    let dir = temp_dir("failover");
    let key = key_file(&dir, "a cluster key for the failover test");
    let cfg = dir.join("fast.toml");
    let audit = dir.join("audit.jsonl");
    std::fs::write(
        &cfg,
        format!(
            "audit_log = {:?}\n[health]\nheartbeat_interval_ms = 200\nacceptable_pause_ms = 600\nmin_std_dev_ms = 50\nreplace_after_ms = 300\n[requests]\nattempt_timeout_ms = 3000\n",
            audit.display().to_string()
        ),
    )
    .unwrap();
    let c = ["--config", cfg.to_str().unwrap()];
    let a = spawn(None, &key, &c);
    let mut others = vec![spawn(Some(&a.addr), &key, &c), spawn(Some(&a.addr), &key, &c)];
    let client = ClusterClient::new(&a.addr, Some(ClusterKey::from_file(&key).unwrap()));
    let model = fixture("gpt2_tiny");
    block_on(async {
        wait_members(&client, 3).await;
        let load = LoadRequest {
            id: "m".into(),
            path: model.display().to_string(),
            strategy: "pipeline:2".into(),
            replication: 2,
            placement: None,
            replication_mode: Default::default(),
        };
        client.load(&load).await.unwrap();
        let status = client.wait_ready("m", Duration::from_secs(60), |_, _| {}).await.unwrap();
        // Heartbeats carry the members' resource stats.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let c = client.cluster().await.unwrap();
        for n in c["nodes"].as_array().unwrap() {
            assert!(n["stats"]["memory_total"].as_u64().unwrap() > 0, "{n}");
        }
        // Kill a non-coordinator node that holds a replica.
        let victim_idx = others.iter().position(|n| status.progress.iter().any(|p| p.node == n.addr)).unwrap();
        let victim = others.remove(victim_idx);
        let victim_addr = victim.addr.clone();
        let reference =
            client.infer("m", &request(&[464, 968, 758], None)).await.unwrap().outputs["logits"].data.clone();
        // 16 clients send requests back to back through the kill until replication is whole.
        let stop = std::rc::Rc::new(std::cell::Cell::new(false));
        let clients = (0..16).map(|_| {
            let (client, stop, reference) = (client.clone(), stop.clone(), reference.clone());
            async move {
                let (mut ok, mut failed) = (0usize, Vec::new());
                while !stop.get() {
                    match client.infer("m", &request(&[464, 968, 758], None)).await {
                        Ok(r) => {
                            let worst = r.outputs["logits"]
                                .data
                                .iter()
                                .zip(&reference)
                                .map(|(a, b)| (a - b).abs())
                                .fold(0.0f32, f32::max);
                            assert!(worst < 1e-5, "output differs by {worst}");
                            ok += 1;
                        }
                        Err(e) => failed.push(e.to_string()),
                    }
                }
                (ok, failed)
            }
        });
        let watcher = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            drop(victim);
            let killed = Instant::now();
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
            // Keep the load on a little longer over the restored replicas.
            tokio::time::sleep(Duration::from_millis(300)).await;
            stop.set(true);
            (down_after.unwrap(), whole)
        };
        let (results, (down_after, whole)) = futures_util::join!(futures_util::future::join_all(clients), watcher);
        let served: usize = results.iter().map(|r| r.0).sum();
        let failed: Vec<&String> = results.iter().flat_map(|r| &r.1).collect();
        eprintln!("marked down {down_after:?} after the kill; {served} requests served at concurrency 16");
        assert!(failed.is_empty(), "{} requests failed: {:?}", failed.len(), failed);
        assert!(served > 100, "{served}");
        eprintln!("replication whole {whole:?} after the kill");
        for _ in 0..10 {
            let r = client.infer("m", &request(&[464, 968, 758], None)).await.unwrap();
            assert!(!r.processed_by.contains(&victim_addr));
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
    drop((a, others));
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
        wait_members(&client, 2).await;
        let load = LoadRequest {
            id: "m".into(),
            path: model.display().to_string(),
            strategy: "tensor:2".into(),
            replication: 1,
            placement: None,
            replication_mode: Default::default(),
        };
        client.load(&load).await.unwrap();
        client.wait_ready("m", Duration::from_secs(60), |_, _| {}).await.unwrap();
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
}

fn signal(node: &Node, sig: &str) {
    let ok = Command::new("kill").args([sig, &node.child.id().to_string()]).status().unwrap().success();
    assert!(ok, "kill {sig}");
}

async fn state_of(client: &ClusterClient, id: &str) -> Option<String> {
    let c = client.cluster().await.ok()?;
    c["nodes"]
        .as_array()?
        .iter()
        .find(|n| n["node"]["info"]["id"] == id)
        .and_then(|n| n["node"]["state"].as_str().map(str::to_string))
}

#[test]
fn a_frozen_node_is_routed_around_and_rejoins_by_itself_when_thawed() {
    let dir = temp_dir("sigstop");
    let key = key_file(&dir, "a cluster key for the sigstop test");
    let cfg = dir.join("fast.toml");
    let audit = dir.join("audit.jsonl");
    std::fs::write(
        &cfg,
        format!(
            "audit_log = {:?}\n[health]\nheartbeat_interval_ms = 200\nacceptable_pause_ms = 600\nmin_std_dev_ms = 50\nreplace_after_ms = 5000\n[requests]\nattempt_timeout_ms = 1500\n",
            audit.display().to_string()
        ),
    )
    .unwrap();
    let c = ["--config", cfg.to_str().unwrap()];
    let a = spawn(None, &key, &c);
    let b = spawn(Some(&a.addr), &key, &c);
    let frozen = spawn(Some(&a.addr), &key, &c);
    let client = ClusterClient::new(&a.addr, Some(ClusterKey::from_file(&key).unwrap()));
    let model = fixture("gpt2_tiny");
    block_on(async {
        wait_members(&client, 3).await;
        let load = LoadRequest {
            id: "m".into(),
            path: model.display().to_string(),
            strategy: "none".into(),
            replication: 3,
            placement: None,
            replication_mode: Default::default(),
        };
        client.load(&load).await.unwrap();
        client.wait_ready("m", Duration::from_secs(60), |_, _| {}).await.unwrap();
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
    drop((a, b, frozen));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_live_migration_under_load_fails_no_request() {
    let dir = temp_dir("migrate");
    let key = key_file(&dir, "a cluster key for the migration test");
    let cfg = dir.join("fast.toml");
    std::fs::write(&cfg, "[requests]\nattempt_timeout_ms = 1000\n").unwrap();
    let c = ["--config", cfg.to_str().unwrap()];
    let a = spawn(None, &key, &c);
    let b = spawn(Some(&a.addr), &key, &c);
    let d = spawn(Some(&a.addr), &key, &c);
    let client = ClusterClient::new(&b.addr, Some(ClusterKey::from_file(&key).unwrap()));
    let model = fixture("gpt2_tiny");
    block_on(async {
        wait_members(&client, 3).await;
        let load = LoadRequest {
            id: "m".into(),
            path: model.display().to_string(),
            strategy: "pipeline:2".into(),
            replication: 1,
            placement: None,
            replication_mode: Default::default(),
        };
        client.load(&load).await.unwrap();
        let s = client.wait_ready("m", Duration::from_secs(60), |_, _| {}).await.unwrap();
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
    });
    drop((a, b, d));
    let _ = std::fs::remove_dir_all(dir);
}

/// A minimal SMTP server on 127.0.0.1 that keeps every message it is given.
fn smtp_sink() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let mails = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let store = mails.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let store = store.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let _ = conn.write_all(b"220 sink ESMTP\r\n");
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap_or(0) > 0 {
                    let cmd = line.trim_end().to_ascii_uppercase();
                    if cmd.starts_with("DATA") {
                        let _ = conn.write_all(b"354 go ahead\r\n");
                        let mut body = String::new();
                        loop {
                            let mut l = String::new();
                            if reader.read_line(&mut l).unwrap_or(0) == 0 || l == ".\r\n" {
                                break;
                            }
                            body.push_str(&l);
                        }
                        store.lock().unwrap().push(body);
                        let _ = conn.write_all(b"250 queued\r\n");
                    } else if cmd.starts_with("QUIT") {
                        let _ = conn.write_all(b"221 bye\r\n");
                        break;
                    } else if cmd.starts_with("EHLO") {
                        let _ = conn.write_all(b"250 sink\r\n");
                    } else {
                        let _ = conn.write_all(b"250 ok\r\n");
                    }
                    line.clear();
                }
            });
        }
    });
    (addr, mails)
}

/// An HTTP server on 127.0.0.1 that keeps every JSON body POSTed to it, by path.
fn http_sink() -> (String, std::sync::Arc<std::sync::Mutex<Vec<(String, serde_json::Value)>>>) {
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let store = got.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let server = actix_web::HttpServer::new(move || {
                let store = store.clone();
                actix_web::App::new().default_service(actix_web::web::to(
                    move |req: actix_web::HttpRequest, body: actix_web::web::Bytes| {
                        let store = store.clone();
                        async move {
                            let v = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
                            store.lock().unwrap().push((req.path().to_string(), v));
                            actix_web::HttpResponse::Ok().finish()
                        }
                    },
                ))
            })
            .workers(1)
            .bind(("127.0.0.1", 0))
            .unwrap();
            tx.send(server.addrs()[0].to_string()).unwrap();
            server.run().await.unwrap();
        })
    });
    (rx.recv().unwrap(), got)
}

#[test]
fn alerts_for_a_down_node_and_its_recovery_reach_a_webhook_slack_and_smtp() {
    let dir = temp_dir("alerts");
    let key = key_file(&dir, "a cluster key for the alerts test");
    let (smtp, mails) = smtp_sink();
    let (http, posts) = http_sink();
    let cfg = dir.join("alerts.toml");
    std::fs::write(
        &cfg,
        format!(
            "[health]\nheartbeat_interval_ms = 200\nacceptable_pause_ms = 600\nmin_std_dev_ms = 50\nreplace_after_ms = 60000\n\
             [alerts]\nwebhooks = [\"http://{http}/hook\"]\nslack_webhooks = [\"http://{http}/slack\"]\ngroup_ms = 100\n\
             [alerts.smtp]\nserver = \"{smtp}\"\nfrom = \"mlmf@localhost\"\nto = [\"ops@localhost\"]\n"
        ),
    )
    .unwrap();
    let c = ["--config", cfg.to_str().unwrap()];
    let a = spawn(None, &key, &c);
    let b = spawn(Some(&a.addr), &key, &c);
    let client = ClusterClient::new(&a.addr, Some(ClusterKey::from_file(&key).unwrap()));
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
    drop((a, b));
    let _ = std::fs::remove_dir_all(dir);
}
