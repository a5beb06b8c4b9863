//! Failure detection under full CPU load: does a busy machine make the phi-accrual detector
//! declare a live node Down, and how fast is a really dead one found while the CPU is full?
//!
//! For each heartbeat setting: three `mlmf node` processes on 127.0.0.1 serve gpt2_tiny
//! (`pipeline:3`, replication 2) while this process spins two busy threads per core and 16
//! clients send inference requests back to back. The coordinator's audit log records every
//! Suspect and Down; `/v1/cluster` gives the longest interval the detector saw between two
//! heartbeats of any node (how close the load came to a false Down). Then, with the CPU still
//! full, one node is killed with SIGKILL and the time until it is marked Down is taken.
//!
//! `cargo bench --bench health` (`MLMF_BENCH_QUICK=1` for 8 s of load instead of 30 s;
//! `MLMF_BENCH_HOGS_PER_CORE=8` for a harsher load).

#[path = "../tests/common/nodes.rs"]
mod nodes;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nodes::*;

struct Row {
    setting: String,
    secs: f64,
    served: usize,
    failed: usize,
    longest_gap_ms: f64,
    suspects: usize,
    downs: usize,
    kill_to_down: Option<f64>,
}

fn audit_count(path: &PathBuf, op: &str) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["op"] == op)
        .count()
}

fn run(heartbeat_ms: u64, pause_ms: u64, secs: f64) -> Row {
    let mut cluster = Cluster::start("health-bench", 3, |dir| {
        format!(
            "audit_log = {:?}\n[health]\nheartbeat_interval_ms = {heartbeat_ms}\nacceptable_pause_ms = {pause_ms}\n",
            dir.join("audit.jsonl").display().to_string()
        )
    });
    let audit = cluster.dir.join("audit.jsonl");
    let client = cluster.client(0);
    let model = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpt2_tiny");
    block_on(async {
        serve_model(&client, 3, "m", &model, "pipeline:3", 2).await;
    });

    // Full CPU: two spinning threads per core (`MLMF_BENCH_HOGS_PER_CORE`), at the nodes'
    // own priority.
    let stop = Arc::new(AtomicBool::new(false));
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let per_core = std::env::var("MLMF_BENCH_HOGS_PER_CORE").ok().and_then(|v| v.parse().ok()).unwrap_or(2usize);
    let hogs: Vec<_> = (0..per_core * cores)
        .map(|_| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for i in 0..10_000u64 {
                        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
                    }
                }
                x
            })
        })
        .collect();
    // 16 clients on two threads.
    let load_stop = Arc::new(AtomicBool::new(false));
    let (served, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let (client, stop, served, failed) =
                (client.clone(), Arc::clone(&load_stop), Arc::clone(&served), Arc::clone(&failed));
            std::thread::spawn(move || {
                block_on(async move {
                    let tasks = (0..8).map(|_| {
                        let (client, stop, served, failed) =
                            (client.clone(), Arc::clone(&stop), Arc::clone(&served), Arc::clone(&failed));
                        async move {
                            while !stop.load(Ordering::Relaxed) {
                                match client.infer("m", &request(&[1, 2, 3, 4, 5, 6, 7], None)).await {
                                    Ok(_) => served.fetch_add(1, Ordering::Relaxed),
                                    Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                                };
                            }
                        }
                    });
                    futures_util::future::join_all(tasks).await;
                })
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(secs));
    load_stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let (suspects, downs) = (audit_count(&audit, "suspect"), audit_count(&audit, "down"));
    // The detector keeps the longest interval it saw between two heartbeats of each node.
    let longest_gap_ms = block_on(async {
        let c = client.cluster().await.unwrap();
        c["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| n["heartbeat_gap_max_ms"].as_f64())
            .fold(0.0, f64::max)
    });

    // A real death, the CPU still full.
    let mut victim = cluster.nodes.remove(2);
    let victim_id = victim.addr.clone();
    let _ = victim.child.kill();
    let t = Instant::now();
    let kill_to_down = block_on(async {
        while t.elapsed() < Duration::from_secs(30) {
            if state_of(&client, &victim_id).await.as_deref() == Some("down") {
                return Some(t.elapsed().as_secs_f64());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    });
    stop.store(true, Ordering::Relaxed);
    for h in hogs {
        h.join().unwrap();
    }
    drop((victim, cluster));
    Row {
        setting: format!("heartbeat {heartbeat_ms} ms, acceptable pause {pause_ms} ms"),
        secs,
        served: served.load(Ordering::Relaxed),
        failed: failed.load(Ordering::Relaxed),
        longest_gap_ms,
        suspects,
        downs,
        kill_to_down,
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let secs = if std::env::var("MLMF_BENCH_QUICK").is_ok() { 8.0 } else { 30.0 };
    let settings =
        [(1000, 3000, "the defaults (Akka's)"), (500, 1500, "HealthConfig::fast()"), (200, 600, "the fault tests'")];
    let rows: Vec<Row> = settings
        .into_iter()
        .map(|(h, p, name)| {
            let mut r = run(h, p, secs);
            r.setting = format!("{name}: {}", r.setting);
            r
        })
        .collect();
    println!(
        "\n| detector (phi threshold 8) | under full CPU | requests served / failed | longest heartbeat interval seen | Suspect events | false Down | kill → Down, CPU full |"
    );
    println!("|---|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {:.0} s | {} / {} | {:.0} ms | {} | {} | {} |",
            r.setting,
            r.secs,
            r.served,
            r.failed,
            r.longest_gap_ms,
            r.suspects,
            r.downs,
            r.kill_to_down.map_or("not within 30 s".to_string(), |s| format!("{s:.2} s"))
        );
    }
}
