//! Soak: mixed requests for a long time while nodes die and come back. Three `mlmf node`
//! processes on 127.0.0.1 serve gpt2_tiny (`pipeline:3`, replication 2) and bert_tiny (`none`,
//! replication 2); 32 clients send forwards, greedy completions of 8 tokens and embeddings
//! back to back, each to a live node (as a load balancer in front would); every two minutes
//! one node (in turn, the first coordinator included) is killed with SIGKILL and started
//! again with the same id, joining a live one. Prints a row per minute: requests and failures
//! by kind, p99 latency, each node's RSS. A request counts as failed when a live node answered
//! it with an error or not at all; requests in flight on the killed node are counted apart
//! (their connection dies with it).
//!
//! `cargo bench --bench soak` (30 minutes; `MLMF_SOAK_MINUTES`, `MLMF_SOAK_KILL_EVERY_S`,
//! `MLMF_SOAK_CLIENTS` to change it). Not in CI.

mod common;

use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::nodes::{fixture, free_port, http, start};

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

struct Node {
    id: String,
    addr: String,
    child: Option<Child>,
}

fn rss_mib(child: &Child) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

#[derive(Default)]
struct Window {
    ok: [usize; 3],
    failed: [usize; 3],
    on_killed: usize,
    latencies: Vec<f64>,
}

const KINDS: [&str; 3] = ["forward", "completion", "embedding"];

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let minutes: f64 = env("MLMF_SOAK_MINUTES", 30.0);
    let kill_every = Duration::from_secs(env("MLMF_SOAK_KILL_EVERY_S", 120));
    let clients: usize = env("MLMF_SOAK_CLIENTS", 32);
    let dir = std::env::temp_dir().join(format!("mlmf-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("key");
    std::fs::write(&key, "the soak test's cluster key, long enough").unwrap();
    let bearer = std::fs::read_to_string(&key).unwrap();
    let mut nodes: Vec<Node> = ["n0", "n1", "n2"]
        .iter()
        .map(|id| Node { id: id.to_string(), addr: format!("127.0.0.1:{}", free_port()), child: None })
        .collect();
    let log = |id: &str| dir.join(format!("{id}.log"));
    let first = nodes[0].addr.clone();
    for (i, n) in nodes.iter_mut().enumerate() {
        n.child = Some(start(&n.id, &n.addr, &key, (i > 0).then_some(first.as_str()), &log(&n.id), &[]));
        std::thread::sleep(Duration::from_millis(500));
    }
    std::thread::sleep(Duration::from_secs(2));
    for (id, model, strategy) in [("g", "gpt2_tiny", "pipeline:3"), ("b", "bert_tiny", "none")] {
        let body = format!(r#"{{"id":"{id}","path":{:?},"strategy":"{strategy}","replication":2}}"#, fixture(model));
        let answer = http(&first, &bearer, "POST", "/v1/models", &body);
        assert!(answer.as_ref().is_some_and(|(s, _)| *s < 300), "load {id}: {answer:?}");
    }
    let ready = Instant::now();
    while ["g", "b"].iter().any(|m| {
        !http(&first, &bearer, "GET", &format!("/v1/models/{m}"), "").is_some_and(|(_, b)| b.contains("\"ready\""))
    }) {
        assert!(ready.elapsed() < Duration::from_secs(120), "models not ready");
        std::thread::sleep(Duration::from_millis(200));
    }

    let addrs: Arc<Vec<String>> = Arc::new(nodes.iter().map(|n| n.addr.clone()).collect());
    let down: Arc<Vec<AtomicBool>> = Arc::new((0..3).map(|_| AtomicBool::new(false)).collect());
    let window = Arc::new(Mutex::new(Window::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let turn = Arc::new(AtomicUsize::new(0));
    let bodies = [
        ("/v1/models/g/infer", r#"{"input_ids":[[464,968,758,318,257,132,13]],"outputs":["logits"]}"#),
        ("/v1/completions", r#"{"model":"g","prompt":[464,968,758],"max_tokens":8,"temperature":0,"ignore_eos":true}"#),
        ("/v1/embeddings", r#"{"model":"b","input":[[101,592,208,102]]}"#),
    ];
    let workers: Vec<_> = (0..clients)
        .map(|c| {
            let (addrs, down, window, stop, turn, bearer) = (
                Arc::clone(&addrs),
                Arc::clone(&down),
                Arc::clone(&window),
                Arc::clone(&stop),
                Arc::clone(&turn),
                bearer.clone(),
            );
            std::thread::spawn(move || {
                let mut k = c;
                while !stop.load(Ordering::Relaxed) {
                    let kind = k % 3;
                    k += 1;
                    let live: Vec<usize> = (0..3).filter(|&i| !down[i].load(Ordering::Relaxed)).collect();
                    let target = live[turn.fetch_add(1, Ordering::Relaxed) % live.len()];
                    let t = Instant::now();
                    let answer = http(&addrs[target], &bearer, "POST", bodies[kind].0, bodies[kind].1);
                    let secs = t.elapsed().as_secs_f64();
                    let mut w = window.lock().unwrap();
                    match answer {
                        Some((200, _)) => {
                            w.ok[kind] += 1;
                            w.latencies.push(secs);
                        }
                        _ if down[target].load(Ordering::Relaxed) => w.on_killed += 1,
                        Some((status, body)) => {
                            w.failed[kind] += 1;
                            eprintln!(
                                "{} via {}: {status} {}",
                                KINDS[kind],
                                addrs[target],
                                &body[..body.len().min(200)]
                            );
                        }
                        None => {
                            w.failed[kind] += 1;
                            eprintln!("{} via {}: no answer", KINDS[kind], addrs[target]);
                        }
                    }
                }
            })
        })
        .collect();

    println!("soak: {minutes} min, {clients} clients, a node killed and restarted every {} s", kill_every.as_secs());
    println!(
        "| minute | forwards ok / failed | completions ok / failed | embeddings ok / failed | lost with the killed node | p99 | RSS n0 / n1 / n2 (MiB) | event |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let started = Instant::now();
    let mut last_kill = Instant::now();
    let mut victim = 0usize;
    let mut event = String::new();
    let (mut total_ok, mut total_failed, mut total_lost) = (0usize, 0usize, 0usize);
    let mut minute = 0;
    let mut not_back = 0;
    while started.elapsed().as_secs_f64() < minutes * 60.0 {
        std::thread::sleep(Duration::from_secs(1));
        if last_kill.elapsed() >= kill_every {
            last_kill = Instant::now();
            let v = victim % 3;
            victim += 1;
            down[v].store(true, Ordering::Relaxed);
            if let Some(mut child) = nodes[v].child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
            std::thread::sleep(Duration::from_secs(2));
            let join = nodes.iter().enumerate().find(|(i, _)| *i != v).map(|(_, n)| n.addr.clone()).unwrap();
            nodes[v].child = Some(start(&nodes[v].id, &nodes[v].addr, &key, Some(&join), &log(&nodes[v].id), &[]));
            let back = Instant::now();
            while http(&nodes[v].addr, &bearer, "GET", "/readyz", "").is_none_or(|(s, _)| s != 200)
                && back.elapsed() < Duration::from_secs(60)
            {
                std::thread::sleep(Duration::from_millis(200));
            }
            down[v].store(false, Ordering::Relaxed);
            if back.elapsed() >= Duration::from_secs(60) {
                not_back += 1;
            }
            event.push_str(&format!("{} killed, back in {:.1} s; ", nodes[v].id, back.elapsed().as_secs_f64() + 2.0));
        }
        if started.elapsed() >= Duration::from_secs(60 * (minute + 1)) {
            minute += 1;
            let mut w = std::mem::take(&mut *window.lock().unwrap());
            w.latencies.sort_by(f64::total_cmp);
            let p99 = w.latencies.get(w.latencies.len().saturating_sub(1) * 99 / 100).copied().unwrap_or(f64::NAN);
            let rss: Vec<String> =
                nodes.iter().map(|n| n.child.as_ref().map_or("-".into(), |c| format!("{:.0}", rss_mib(c)))).collect();
            println!(
                "| {minute} | {} / {} | {} / {} | {} / {} | {} | {:.0} ms | {} | {} |",
                w.ok[0],
                w.failed[0],
                w.ok[1],
                w.failed[1],
                w.ok[2],
                w.failed[2],
                w.on_killed,
                p99 * 1e3,
                rss.join(" / "),
                event.trim_end_matches("; ")
            );
            event.clear();
            total_ok += w.ok.iter().sum::<usize>();
            total_failed += w.failed.iter().sum::<usize>();
            total_lost += w.on_killed;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.join();
    }
    println!(
        "\ntotal: {total_ok} answered, {total_failed} failed at live nodes (goal 0), {total_lost} lost with a killed node"
    );
    for n in &mut nodes {
        if let Some(mut c) = n.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
    if not_back > 0 {
        println!("{not_back} restarted node(s) did not answer /readyz within 60 s");
    }
    if total_failed == 0 && not_back == 0 {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        println!("the nodes' logs are in {}", dir.display());
    }
}
