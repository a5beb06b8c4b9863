//! The threshold alert rules on real node processes, and the secrets of the alert channels:
//! `memory`, `p99_latency` and `error_rate` fire from the heartbeats' figures (thresholds set
//! low enough to be crossed) and `error_rate` resolves again; the email goes over STARTTLS to
//! an SMTP server on 127.0.0.1 with a certificate of its own CA, authenticated with the
//! password from its file; and neither the webhooks' tokens nor the password reach the
//! nodes' logs, a failing webhook included.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::fixture;
use common::http::{bearer, post_json};
use common::nodes::*;
use serde_json::{Value, json};

/// A node process with `config`, logging at debug into `log`.
fn node(join: Option<&str>, key: &std::path::Path, config: &std::path::Path, log: &std::path::Path) -> Node {
    let addr = format!("127.0.0.1:{}", free_port());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mlmf"));
    cmd.args(["node", "--listen", &addr, "--cluster-key-file"]).arg(key).arg("--config").arg(config);
    cmd.env("RUST_LOG", "mlmf=debug");
    if let Some(j) = join {
        cmd.args(["--join", j]);
    }
    let file = std::fs::File::create(log).unwrap();
    let child = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(file).spawn().unwrap();
    Node { child, addr }
}

/// Whether the webhook saw `rule` with `status` (for any key).
fn hooked(posts: &Posts, rule: &str, status: &str) -> bool {
    posts.lock().unwrap().iter().any(|(path, v)| {
        path.starts_with("/hook/")
            && v["alerts"].as_array().is_some_and(|a| a.iter().any(|e| e["rule"] == rule && e["status"] == status))
    })
}

fn wait_for(what: &str, within: Duration, ok: impl Fn() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < within, "{what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn threshold_rules_fire_and_resolve_and_alert_secrets_stay_out_of_the_logs() {
    let dir = temp_dir("alerts");
    let key = key_file(&dir, "a cluster key for the alerts test");
    let tls = mlmf_actors::tls::self_signed(&dir.join("smtp-tls"), false).unwrap();
    let (smtp, mails) = smtp_tls_sink(tls.load().unwrap().server);
    let (http, posts) = http_sink();
    let closed = free_port();
    let password = dir.join("smtp-password");
    std::fs::write(&password, "pa55-Secret-word\n").unwrap();
    let config = dir.join("node.toml");
    std::fs::write(
        &config,
        format!(
            "[health]\nheartbeat_interval_ms = 200\n\
             [alerts]\nwebhooks = [\"http://{http}/hook/T0KEN-hook-a1b2\", \"http://127.0.0.1:{closed}/hook/T0KEN-dead-c3d4\"]\n\
             group_ms = 100\nmemory_percent = 0.01\np99_ms = 0.001\nerror_rate = 0.5\n\
             [alerts.smtp]\nserver = \"localhost:{}\"\nfrom = \"mlmf@localhost\"\nto = [\"ops@localhost\"]\n\
             tls = \"starttls\"\nca = \"{}\"\nusername = \"ops\"\npassword_file = \"{}\"\n",
            smtp.rsplit_once(':').unwrap().1,
            tls.ca.display(),
            password.display()
        ),
    )
    .unwrap();
    let logs = [dir.join("node-0.log"), dir.join("node-1.log")];
    let first = node(None, &key, &config, &logs[0]);
    let second = node(Some(&first.addr), &key, &config, &logs[1]);
    let client =
        mlmf::client::ClusterClient::new(&first.addr, Some(mlmf_actors::auth::ClusterKey::from_file(&key).unwrap()));
    block_on(serve_model(&client, 2, "g", &fixture("gpt2_tiny"), "none", 2));
    let auth = bearer(&key);
    let ids: Vec<u32> = (0..32).map(|i| (i * 31 + 7) % 1000).collect();

    // Memory above 0.01% of the machine: fires for both nodes at their next heartbeat.
    wait_for("memory alert at the webhook", Duration::from_secs(20), || hooked(&posts, "memory", "firing"));
    // Requests answered: their p99 is above a microsecond.
    for _ in 0..5 {
        let (status, v) = post_json(&first.addr, &auth, "/v1/models/g/infer", &json!({"input_ids": [ids]}));
        assert_eq!(status, 200, "{v}");
    }
    wait_for("p99_latency alert at the webhook", Duration::from_secs(20), || hooked(&posts, "p99_latency", "firing"));
    // Requests that cannot finish within their 1 ms: 504s, all of them failed.
    for _ in 0..60 {
        let (status, v) =
            post_json(&first.addr, &auth, "/v1/models/g/infer", &json!({"input_ids": [ids], "timeout_ms": 1}));
        assert!(status >= 500, "a 1 ms deadline was met? {status} {v}");
    }
    wait_for("error_rate alert at the webhook", Duration::from_secs(20), || hooked(&posts, "error_rate", "firing"));
    // Then only answered requests, for more than a heartbeat: the error rate resolves.
    let start = Instant::now();
    while !hooked(&posts, "error_rate", "resolved") {
        assert!(start.elapsed() < Duration::from_secs(30), "error_rate never resolved: {:?}", posts.lock().unwrap());
        let (status, _) = post_json(&first.addr, &auth, "/v1/models/g/infer", &json!({"input_ids": [[1, 2, 3]]}));
        assert_eq!(status, 200);
    }
    let firing: Vec<Value> = posts
        .lock()
        .unwrap()
        .iter()
        .flat_map(|(_, v)| v["alerts"].as_array().cloned().unwrap_or_default())
        .filter(|e| e["rule"] == "error_rate" && e["status"] == "firing")
        .collect();
    assert_eq!(firing[0]["severity"], "critical", "{firing:?}");
    assert!(firing[0]["summary"].as_str().unwrap().contains("requests failed"), "{firing:?}");

    // The email came over TLS, authenticated with the password from the file.
    wait_for("an email over STARTTLS", Duration::from_secs(20), || {
        mails.lock().unwrap().iter().any(|m| m.body.contains("error_rate"))
    });
    for m in mails.lock().unwrap().iter() {
        assert!(m.tls, "a mail was sent in clear");
        assert_eq!(m.auth.as_deref(), Some("ops:pa55-Secret-word"));
    }

    // The dead webhook failed, and the logs name neither token nor the password.
    drop(second);
    drop(first);
    let text: String = logs.iter().map(|l| std::fs::read_to_string(l).unwrap()).collect();
    assert!(text.contains("alert webhook failed"), "the dead webhook's failure was not logged");
    for secret in ["T0KEN-hook-a1b2", "T0KEN-dead-c3d4", "pa55-Secret-word"] {
        assert!(!text.contains(secret), "{secret} reached a node's log");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
