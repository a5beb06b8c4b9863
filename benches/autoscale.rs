//! Step load with replica autoscaling off and on, in the same run on the same machine.
//! Three `mlmf node` processes on 127.0.0.1 serve gpt2_tiny (`none`, one replica to start);
//! clients send greedy completions of 8 tokens back to back, spread over the nodes, at
//! concurrency 1 for 30 s, 64 for 60 s, then 1 for 60 s. Run once with a fixed replica and
//! once with `autoscaling: {min_replicas: 1, max_replicas: 3, ...}`. Prints, per 5 s window,
//! throughput, p50 and p99 and the replicas serving; then the time from each step to the
//! replicas that followed it serving, and a summary of the two runs.
//!
//! `cargo bench --bench autoscale` (about 6 minutes); `MLMF_STEP_SCALE=0.5` halves every
//! phase. Not in CI.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::nodes::{fixture, free_port, http, start, wait_for};

const POLICY: &str = r#"{"min_replicas":1,"max_replicas":3,"target_ongoing_requests":1.0,"upscale_delay_s":2.0,"downscale_delay_s":15.0,"look_back_period_s":2.0}"#;
const BODY: &str = r#"{"model":"g","prompt":[464,968,758,11,290],"max_tokens":8,"temperature":0,"ignore_eos":true}"#;
const WINDOW_S: f64 = 5.0;

/// One answer: when it finished (s since the load began), its latency (s), whether it was ok.
type Answer = (f64, f64, bool);

struct Run {
    answers: Vec<Answer>,
    /// (s since the load began, replicas serving).
    replicas: Vec<(f64, usize)>,
}

fn serving(status: &str) -> usize {
    let v: serde_json::Value = serde_json::from_str(status).unwrap_or_default();
    v["progress"].as_array().map_or(0, |p| p.iter().filter(|r| r["done"] == true).count())
}

fn run(autoscaling: bool, phases: &[(usize, f64)]) -> Run {
    let dir = std::env::temp_dir().join(format!("mlmf-step-{}-{autoscaling}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("key");
    std::fs::write(&key, "the step-load benchmark's cluster key").unwrap();
    let bearer = std::fs::read_to_string(&key).unwrap();
    let addrs: Vec<String> = (0..3).map(|_| format!("127.0.0.1:{}", free_port())).collect();
    let mut children = Vec::new();
    for (i, a) in addrs.iter().enumerate() {
        let log = dir.join(format!("n{i}.log"));
        children.push(start(&format!("n{i}"), a, &key, (i > 0).then_some(addrs[0].as_str()), &log, &[]));
        assert!(wait_for(a, &bearer, "/readyz", "", Duration::from_secs(60)), "node {a} not ready");
    }
    let extra = if autoscaling { format!(r#","autoscaling":{POLICY}"#) } else { String::new() };
    let body = format!(r#"{{"id":"g","path":{:?},"strategy":"none","replication":1{extra}}}"#, fixture("gpt2_tiny"));
    let answer = http(&addrs[0], &bearer, "POST", "/v1/models", &body);
    assert!(answer.as_ref().is_some_and(|(s, _)| *s < 300), "load: {answer:?}");
    assert!(wait_for(&addrs[0], &bearer, "/v1/models/g", "\"ready\"", Duration::from_secs(60)), "not ready");
    for a in &addrs {
        assert!(wait_for(a, &bearer, "/v1/models/g", "\"ready\"", Duration::from_secs(30)), "not ready at {a}");
    }

    let addrs = Arc::new(addrs);
    let concurrency = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let answers = Arc::new(Mutex::new(Vec::new()));
    let turn = Arc::new(AtomicUsize::new(0));
    let began = Instant::now();
    let max_c = phases.iter().map(|p| p.0).max().unwrap_or(1);
    let workers: Vec<_> = (0..max_c)
        .map(|i| {
            let (addrs, concurrency, stop, answers, turn, bearer) = (
                Arc::clone(&addrs),
                Arc::clone(&concurrency),
                Arc::clone(&stop),
                Arc::clone(&answers),
                Arc::clone(&turn),
                bearer.clone(),
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if i >= concurrency.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                    let at = &addrs[turn.fetch_add(1, Ordering::Relaxed) % addrs.len()];
                    let t = Instant::now();
                    let ok = http(at, &bearer, "POST", "/v1/completions", BODY).is_some_and(|(s, _)| s == 200);
                    answers.lock().unwrap().push((began.elapsed().as_secs_f64(), t.elapsed().as_secs_f64(), ok));
                }
            })
        })
        .collect();
    let mut replicas = Vec::new();
    let total: f64 = phases.iter().map(|p| p.1).sum();
    let mut phase = 0;
    let mut phase_end = 0.0;
    while began.elapsed().as_secs_f64() < total {
        let now = began.elapsed().as_secs_f64();
        if now >= phase_end && phase < phases.len() {
            concurrency.store(phases[phase].0, Ordering::Relaxed);
            phase_end += phases[phase].1;
            phase += 1;
        }
        if let Some((200, s)) = http(&addrs[0], &bearer, "GET", "/v1/models/g", "") {
            replicas.push((now, serving(&s)));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.join();
    }
    for mut c in children {
        let _ = c.kill();
        let _ = c.wait();
    }
    let answers = std::mem::take(&mut *answers.lock().unwrap());
    if answers.iter().all(|a| a.2) {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        println!("failed requests: the nodes' logs are in {}", dir.display());
    }
    Run { answers, replicas }
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// (requests/s, p50 ms, p99 ms, failed) of the answers finished in `[from, to)`.
fn figures(answers: &[Answer], from: f64, to: f64) -> (f64, f64, f64, usize) {
    let inside: Vec<&Answer> = answers.iter().filter(|a| a.0 >= from && a.0 < to).collect();
    let mut lat: Vec<f64> = inside.iter().filter(|a| a.2).map(|a| a.1 * 1e3).collect();
    lat.sort_by(f64::total_cmp);
    let failed = inside.iter().filter(|a| !a.2).count();
    (lat.len() as f64 / (to - from), quantile(&lat, 0.5), quantile(&lat, 0.99), failed)
}

/// The first time at or after `from` when `want(replicas)` held.
fn first(replicas: &[(f64, usize)], from: f64, want: impl Fn(usize) -> bool) -> Option<f64> {
    replicas.iter().find(|r| r.0 >= from && want(r.1)).map(|r| r.0 - from)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let scale: f64 = std::env::var("MLMF_STEP_SCALE").ok().and_then(|v| v.parse().ok()).unwrap_or(1.0);
    let phases = [(1, 30.0 * scale), (64, 60.0 * scale), (1, 60.0 * scale)];
    let (up, down, end) = (phases[0].1, phases[0].1 + phases[1].1, phases.iter().map(|p| p.1).sum::<f64>());
    println!(
        "step load on gpt2_tiny, 3 nodes: c=1 {:.0} s, c=64 {:.0} s, c=1 {:.0} s",
        phases[0].1, phases[1].1, phases[2].1
    );
    println!("completions of 8 tokens, greedy; autoscaling on: {POLICY}\n");
    let runs: Vec<(&str, Run)> =
        [("off", false), ("on", true)].into_iter().map(|(name, on)| (name, run(on, &phases))).collect();
    for (name, r) in &runs {
        println!("autoscaling {name}:");
        println!("| window (s) | clients | requests/s | tokens/s | p50 (ms) | p99 (ms) | failed | replicas |");
        println!("|---|---|---|---|---|---|---|---|");
        let mut t = 0.0;
        while t < end {
            let to = (t + WINDOW_S).min(end);
            let (rps, p50, p99, failed) = figures(&r.answers, t, to);
            let clients = if t < up || t >= down { 1 } else { 64 };
            let reps = r.replicas.iter().filter(|x| x.0 >= t && x.0 < to).map(|x| x.1).max().unwrap_or(0);
            println!(
                "| {t:.0}-{to:.0} | {clients} | {rps:.1} | {:.0} | {p50:.0} | {p99:.0} | {failed} | {reps} |",
                rps * 8.0
            );
            t = to;
        }
        let fmt = |x: Option<f64>| x.map_or("never".to_string(), |s| format!("{s:.1} s"));
        println!(
            "step up to 2 replicas serving: {}; to 3: {}; step down back to 1: {}\n",
            fmt(first(&r.replicas, up, |n| n >= 2)),
            fmt(first(&r.replicas, up, |n| n >= 3)),
            fmt(first(&r.replicas, down, |n| n == 1).filter(|_| first(&r.replicas, up, |n| n >= 2).is_some())),
        );
    }
    println!(
        "| autoscaling | c=64 requests/s | c=64 last half requests/s | c=64 p99 (ms) | c=1 after p50 (ms) | failed | most replicas |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (name, r) in &runs {
        let (rps, _, p99, _) = figures(&r.answers, up, down);
        let (late, ..) = figures(&r.answers, (up + down) / 2.0, down);
        let (_, after, ..) = figures(&r.answers, down, end);
        let failed = r.answers.iter().filter(|a| !a.2).count();
        let most = r.replicas.iter().map(|x| x.1).max().unwrap_or(0);
        println!("| {name} | {rps:.1} | {late:.1} | {p99:.0} | {after:.0} | {failed} | {most} |");
    }
}
