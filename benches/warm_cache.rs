//! Load time of a shard replica from the node's warm cache against a load from the files,
//! on a real `mlmf node` process (`[cache] warm_bytes` = 2 GiB): gpt2_tiny (20 MB) and a
//! GPT-2-small-shaped checkpoint (124 M parameters, 498 MB, random weights). Three ways, each
//! repeated: a cold load (the weight files dropped from the page cache with
//! `posix_fadvise(DONTNEED)`, then read from disk), a load from the page cache (the files
//! read before, the kept replica made stale by a new modification time), and a warm-cache
//! hit (the replica kept since its unload). Prints the node's `load_ms` and `warmup_ms` and
//! the client's time from `POST /v1/models` to ready, medians.
//!
//! `cargo bench --bench warm_cache` (about a minute). Not in CI.

mod common;

use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use common::nodes::{fixture, free_port, http, start, wait_for};
use common::{gpt2_small, median};

const ROUNDS: usize = 5;

/// One load's figures: node load_ms, node warmup_ms, client ms to ready.
type Figures = (f64, f64, f64);

fn metric(addr: &str, key: &str, name: &str) -> f64 {
    let text = http(addr, key, "GET", "/metrics", "").map(|r| r.1).unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Drops `file` from the page cache.
fn drop_cached(file: &Path) {
    let f = std::fs::File::open(file).unwrap();
    f.sync_all().unwrap();
    // SAFETY: a plain syscall on an open descriptor.
    let rc = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    assert_eq!(rc, 0, "posix_fadvise");
}

/// Makes the kept replica of `dir` stale (a new modification time of its weights).
fn touch(dir: &Path) {
    let f = std::fs::File::options().write(true).open(dir.join("model.safetensors")).unwrap();
    f.set_modified(SystemTime::now()).unwrap();
}

/// (node load_ms, node warmup_ms, client ms from the request to ready, from the warm cache).
fn load(addr: &str, key: &str, dir: &Path) -> (f64, f64, f64, bool) {
    let body = format!(r#"{{"id":"m","path":{:?},"strategy":"none","replication":1}}"#, dir);
    let t = Instant::now();
    let answer = http(addr, key, "POST", "/v1/models", &body);
    assert!(answer.as_ref().is_some_and(|(s, _)| *s < 300), "load: {answer:?}");
    loop {
        let s = http(addr, key, "GET", "/v1/models/m", "").map(|r| r.1).unwrap_or_default();
        if s.contains("\"ready\"") {
            let ms = t.elapsed().as_secs_f64() * 1e3;
            let v: serde_json::Value = serde_json::from_str(&s).unwrap();
            let p = &v["progress"][0];
            let f = |k: &str| p[k].as_f64().unwrap_or(f64::NAN);
            return (f("load_ms"), f("warmup_ms"), ms, p["from_warm_cache"] == true);
        }
        assert!(t.elapsed() < Duration::from_secs(120), "not ready: {s}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn unload(addr: &str, key: &str) {
    let kept = metric(addr, key, "mlmf_warm_cache_replicas");
    assert!(http(addr, key, "DELETE", "/v1/models/m", "").is_some_and(|(s, _)| s < 300));
    let t = Instant::now();
    while metric(addr, key, "mlmf_warm_cache_replicas") <= kept {
        assert!(t.elapsed() < Duration::from_secs(30), "the replica was not kept");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("mlmf-warm-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("key");
    std::fs::write(&key, "the warm cache benchmark's cluster key").unwrap();
    let bearer = std::fs::read_to_string(&key).unwrap();
    let config = dir.join("node.toml");
    std::fs::write(&config, "[cache]\nwarm_bytes = 2147483648\n").unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut node = start("n0", &addr, &key, None, &dir.join("n0.log"), &["--config", config.to_str().unwrap()]);
    assert!(wait_for(&addr, &bearer, "/readyz", "", Duration::from_secs(60)));
    // Copies, so that touching them leaves the fixtures alone.
    let models = [("gpt2_tiny (20 MB)", fixture("gpt2_tiny")), ("GPT-2 small shape (498 MB)", gpt2_small())];
    println!("| checkpoint | load | node load_ms | node warmup_ms | client ms to ready |");
    println!("|---|---|---|---|---|");
    for (name, src) in models {
        let copy = dir.join(src.file_name().unwrap());
        std::fs::create_dir_all(&copy).unwrap();
        for f in ["config.json", "model.safetensors"] {
            std::fs::copy(src.join(f), copy.join(f)).unwrap();
        }
        let mut rows: Vec<(&str, Vec<Figures>)> =
            vec![("cold (page cache dropped)", vec![]), ("page cache", vec![]), ("warm cache hit", vec![])];
        load(&addr, &bearer, &copy);
        for _ in 0..ROUNDS {
            unload(&addr, &bearer);
            touch(&copy);
            drop_cached(&copy.join("model.safetensors"));
            let (l, w, c, hit) = load(&addr, &bearer, &copy);
            assert!(!hit);
            rows[0].1.push((l, w, c));
            unload(&addr, &bearer);
            touch(&copy);
            let (l, w, c, hit) = load(&addr, &bearer, &copy);
            assert!(!hit);
            rows[1].1.push((l, w, c));
            unload(&addr, &bearer);
            let (l, w, c, hit) = load(&addr, &bearer, &copy);
            assert!(hit, "the kept replica was not given back");
            rows[2].1.push((l, w, c));
        }
        assert!(http(&addr, &bearer, "DELETE", "/v1/models/m", "").is_some_and(|(s, _)| s < 300));
        for (how, v) in rows {
            let m = |f: fn(&Figures) -> f64| median(v.iter().map(f).collect());
            println!("| {name} | {how} | {:.0} | {:.0} | {:.0} |", m(|r| r.0), m(|r| r.1), m(|r| r.2));
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    println!(
        "\nwarm cache on the node: {} hits, {} misses, {} evictions",
        metric(&addr, &bearer, "mlmf_warm_cache_hits_total"),
        metric(&addr, &bearer, "mlmf_warm_cache_misses_total"),
        metric(&addr, &bearer, "mlmf_warm_cache_evictions_total")
    );
    let _ = node.kill();
    let _ = node.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
