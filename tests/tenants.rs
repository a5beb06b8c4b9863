//! Tenants on a real node process: each tenant's key reaches only its models; a tenant over
//! its requests per second gets 429 `rate_limited` naming the limit, with `Retry-After`,
//! while another tenant's requests keep being served; a tenant's generations are charged to
//! its tokens per second, and its requests at once are bounded; its counters appear in
//! `/metrics` under its name (never its key), as Prometheus' own parser reads them; a tenant
//! added to the tenants file is served within seconds, without a restart.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::fixture;
use common::http::{Events, get_text, header_of, post, post_json};
use common::nodes::{Cluster, block_on, serve_model};
use serde_json::json;

fn key(dir: &Path, name: &str) -> (String, String) {
    let text = format!("the key of tenant {name}, long enough");
    let file = dir.join(format!("{name}.key"));
    std::fs::write(&file, &text).unwrap();
    (file.display().to_string(), text)
}

const INFER: &str = "/v1/models/g/infer";

#[test]
fn tenants_get_their_models_their_rates_and_their_own_counters() {
    let mut keys = std::collections::BTreeMap::new();
    let cluster = Cluster::start("tenants", 1, |dir| {
        let mut toml = format!("tenants_file = {:?}\n", dir.join("tenants.toml").display().to_string());
        for (name, rules) in [
            ("slow", "models = [\"g\"]\nrequests_per_s = 2.0"),
            ("fast", "requests_per_s = 1000.0"),
            ("thrifty", "models = [\"g\"]\ntokens_per_s = 4.0\nburst_s = 1.0"),
            ("single", "max_concurrent = 1"),
        ] {
            let (file, text) = key(dir, name);
            keys.insert(name, text);
            toml.push_str(&format!("[[tenants]]\nname = \"{name}\"\nkey_file = {file:?}\n{rules}\n"));
        }
        std::fs::write(dir.join("tenants.toml"), "").unwrap();
        toml
    });
    let addr = cluster.nodes[0].addr.clone();
    block_on(async {
        serve_model(&cluster.client(0), 1, "g", &fixture("gpt2_tiny"), "none", 1).await;
        serve_model(&cluster.client(0), 1, "h", &fixture("gpt2_tiny"), "none", 1).await;
    });
    let body = json!({"input_ids": [[1, 2, 3]]});

    // Models: "slow" may use g only; its key is no admin key either.
    let (status, e) = post_json(&addr, &keys["slow"], "/v1/models/h/infer", &body);
    assert_eq!((status, e["error"]["code"].as_str()), (403, Some("model_not_allowed")), "{e}");
    let (status, e) = post_json(&addr, &keys["slow"], "/v1/completions", &json!({"model": "h", "prompt": "x"}));
    assert_eq!((status, e["error"]["code"].as_str()), (403, Some("model_not_allowed")), "{e}");
    let (status, _) = post_json(&addr, &keys["slow"], "/v1/models", &json!({"id": "x", "path": "/nope"}));
    assert_eq!(status, 403, "a tenant's key loads nothing");
    assert_eq!(post_json(&addr, &keys["fast"], "/v1/models/h/infer", &body).0, 200, "fast may use every model");

    // Rates: "slow" sends back to back; "fast" is served between each of its refusals.
    let start = Instant::now();
    let (mut served, mut refused, mut fast_served) = (0, 0, 0);
    while start.elapsed() < Duration::from_secs(3) {
        let (status, headers, e) = post(&addr, &keys["slow"], INFER, &body);
        match status {
            200 => served += 1,
            429 => {
                refused += 1;
                assert_eq!(e["error"]["code"], "rate_limited", "{e}");
                assert_eq!(e["error"]["limit"], "requests_per_s", "{e}");
                let retry: u64 = header_of(&headers, "retry-after").unwrap().parse().unwrap();
                assert!((1..=2).contains(&retry), "Retry-After {retry}");
                assert!(!e.to_string().contains(&keys["slow"]), "no key in an error");
            }
            other => panic!("slow: {other} {e}"),
        }
        let (status, e) = post_json(&addr, &keys["fast"], INFER, &body);
        assert_eq!(status, 200, "fast is served whatever slow does: {e}");
        fast_served += 1;
    }
    let elapsed = start.elapsed().as_secs_f64();
    // A full bucket of 2 (one second of burst) plus 2 a second, and one for rounding.
    let allowed = 2.0 + 2.0 * elapsed + 1.0;
    assert!(served as f64 <= allowed, "slow served {served} in {elapsed:.1} s (allowed {allowed:.1})");
    assert!(served >= 2 && refused > 0, "slow: {served} served, {refused} refused");
    assert!(fast_served > served, "fast {fast_served}, slow {served}");

    // Tokens: one completion of 8 tokens (3 prompt tokens + 8) leaves "thrifty" in debt.
    let completion = json!({"model": "g", "prompt": [1, 2, 3], "max_tokens": 8, "temperature": 0});
    let (status, done) = post_json(&addr, &keys["thrifty"], "/v1/completions", &completion);
    assert_eq!(status, 200, "{done}");
    let used = done["usage"]["total_tokens"].as_u64().unwrap();
    assert!(used > 4, "{done}");
    let (status, headers, e) = post(&addr, &keys["thrifty"], "/v1/completions", &completion);
    assert_eq!((status, e["error"]["limit"].as_str()), (429, Some("tokens_per_s")), "{e}");
    assert!(header_of(&headers, "retry-after").is_some());

    // Requests at once: while one stream of "single" is open, its next request is refused.
    let stream = json!({"model": "g", "prompt": [1, 2, 3], "max_tokens": 200, "stream": true});
    let mut open = Events::open(&addr, &keys["single"], "/v1/completions", &stream);
    assert_eq!(open.status, 200);
    assert!(open.next_data().is_some(), "the stream started");
    let (status, e) = post_json(&addr, &keys["single"], INFER, &body);
    assert_eq!((status, e["error"]["limit"].as_str()), (429, Some("max_concurrent")), "{e}");
    while open.next_data().is_some() {}
    drop(open);
    wait_until("the stream's place freed", || post_json(&addr, &keys["single"], INFER, &body).0 == 200);

    // A tenant added to the tenants file is served without a restart.
    let (file, late) = key(&cluster.dir, "late");
    std::fs::write(cluster.dir.join("tenants.toml"), format!("[[tenants]]\nname = \"late\"\nkey_file = {file:?}\n"))
        .unwrap();
    wait_until("the new tenant served", || post_json(&addr, &late, INFER, &body).0 == 200);

    // Counters per tenant, under its name.
    let (status, text) = get_text(&addr, &keys["fast"], "/metrics");
    assert_eq!(status, 200);
    for k in keys.values() {
        assert!(!text.contains(k.as_str()), "a key in /metrics");
    }
    let sample = |name: &str, labels: &[(&str, &str)]| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(&format!("{name}{{")))
            .filter(|l| labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .sum()
    };
    assert_eq!(sample("mlmf_tenant_requests_total", &[("tenant", "slow"), ("status", "200")]), served as f64);
    assert!(sample("mlmf_tenant_limited_total", &[("tenant", "slow"), ("limit", "requests_per_s")]) >= refused as f64);
    assert_eq!(sample("mlmf_tenant_tokens_total", &[("tenant", "thrifty"), ("kind", "completion")]), 8.0);
    assert!(sample("mlmf_tenant_errors_total", &[("tenant", "slow")]) >= (refused + 2) as f64);
    assert!(sample("mlmf_tenant_requests_total", &[("tenant", "late"), ("status", "200")]) >= 1.0);
    if let Some(python) = common::tools::python("tenants_get_their_models_their_rates_and_their_own_counters") {
        let families = common::tools::parse_metrics(&python, &text);
        let names: Vec<&str> = families.as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
        for want in ["mlmf_tenant_requests", "mlmf_tenant_tokens", "mlmf_tenant_limited", "mlmf_tenant_in_flight"] {
            assert!(names.contains(&want), "{want} not among {names:?}");
        }
    }
}

fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < Duration::from_secs(20), "{what}: not within 20 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}
