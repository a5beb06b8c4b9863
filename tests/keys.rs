//! Scoped keys on a real node process: the admin key loads, unloads and reads status but runs
//! no inference; the inference key runs inference and reads `/metrics` and the models'
//! status but cannot load, unload, migrate or read the cluster; a wrong key is a 401 and a
//! key outside its scope a 403, both with a JSON error. Either key is rotated by rewriting
//! its file (the old one stops working, the new one works) and on SIGHUP, with the node
//! running all along; an unusable new file leaves the key in use in place.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::fixture;
use common::http::{get_text, post_json};
use common::nodes::*;
use serde_json::{Value, json};

fn delete(addr: &str, key: &str, path: &str) -> u16 {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "DELETE {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

/// Replaces the file's content at once (a rename, as a secret manager does).
fn rotate(path: &std::path::Path, key: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, key).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn until(what: &str, ok: impl Fn() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < Duration::from_secs(10), "{what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn admin_and_inference_keys_keep_to_their_routes_and_rotate_without_a_restart() {
    let dir = temp_dir("keys");
    let cluster = key_file(&dir, "the cluster key of the keys test");
    let (admin_file, inference_file) = (dir.join("admin.key"), dir.join("inference.key"));
    let (admin, inference) = ("admin key number one, 32 bytes..", "inference key number one, 32 b..");
    std::fs::write(&admin_file, admin).unwrap();
    std::fs::write(&inference_file, inference).unwrap();
    let node = spawn(
        None,
        &cluster,
        &["--admin-key-file", admin_file.to_str().unwrap(), "--inference-key-file", inference_file.to_str().unwrap()],
    );
    let addr = node.addr.clone();
    // Ready, not only alive: a node answers /healthz before it leads its Raft group, and a
    // load before that is refused with `not_joined`.
    until("the node is ready", || {
        std::net::TcpStream::connect(&addr).is_ok() && get_text(&addr, "", "/readyz").0 == 200
    });
    let load = json!({"id": "g", "path": fixture("gpt2_tiny"), "strategy": "none", "replication": 1});
    let infer = json!({"input_ids": [[1, 2, 3]]});

    // The inference key cannot load; the admin key can, and reads the status.
    let (status, v) = post_json(&addr, inference, "/v1/models", &load);
    assert_eq!((status, v["error"]["code"].as_str()), (403, Some("forbidden")), "{v}");
    let (status, v) = post_json(&addr, admin, "/v1/models", &load);
    assert!(status < 300, "{status} {v}");
    until("the model is ready", || get_text(&addr, admin, "/v1/models/g").1.contains("\"ready\""));

    // Inference: the inference key, never the admin key.
    let (status, v) = post_json(&addr, inference, "/v1/models/g/infer", &infer);
    assert_eq!(status, 200, "{v}");
    let (status, v) = post_json(&addr, admin, "/v1/models/g/infer", &infer);
    assert_eq!((status, v["error"]["code"].as_str()), (403, Some("forbidden")), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("admin key"), "{v}");
    let (status, v) =
        post_json(&addr, admin, "/v1/completions", &json!({"model": "g", "prompt": [1, 2], "max_tokens": 1}));
    assert_eq!(status, 403, "{v}");
    // Reads: /metrics and the models for both, the cluster for the admin key only.
    for key in [admin, inference] {
        assert_eq!(get_text(&addr, key, "/metrics").0, 200);
        assert_eq!(get_text(&addr, key, "/v1/models").0, 200);
    }
    assert_eq!(get_text(&addr, admin, "/v1/cluster").0, 200);
    let (status, body) = get_text(&addr, inference, "/v1/cluster");
    assert_eq!(status, 403, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["error"]["code"], "forbidden");
    // The inference key cannot unload or migrate.
    assert_eq!(delete(&addr, inference, "/v1/models/g"), 403);
    let (status, _) = post_json(&addr, inference, "/v1/models/g/migrate", &json!({"shard": 0, "to": "x"}));
    assert_eq!(status, 403);
    // A wrong key, or none: 401 with a JSON error.
    let (status, v) = post_json(&addr, "not a key of this cluster at all", "/v1/models/g/infer", &infer);
    assert_eq!((status, v["error"]["code"].as_str()), (401, Some("unauthorized")), "{v}");
    // The cluster key still opens everything.
    let ck = std::fs::read_to_string(&cluster).unwrap();
    assert_eq!(post_json(&addr, ck.trim(), "/v1/models/g/infer", &infer).0, 200);

    // Rotation by rewriting the file: the old inference key stops working, the new works.
    let inference2 = "inference key number two, 32 b..";
    rotate(&inference_file, inference2);
    until("the new inference key works", || post_json(&addr, inference2, "/v1/models/g/infer", &infer).0 == 200);
    assert_eq!(post_json(&addr, inference, "/v1/models/g/infer", &infer).0, 401, "the old inference key still works");
    // An unusable file (too short) is refused: the key in use stays.
    rotate(&inference_file, "short");
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(post_json(&addr, inference2, "/v1/models/g/infer", &infer).0, 200);

    // SIGHUP reads the files again, and does not stop the node (its default action would).
    let admin2 = "admin key number two, 32 bytes..";
    rotate(&admin_file, admin2);
    signal(&node, "-HUP");
    until("the new admin key works after SIGHUP", || get_text(&addr, admin2, "/v1/cluster").0 == 200);
    assert_eq!(get_text(&addr, admin, "/v1/cluster").0, 401);
    assert_eq!(delete(&addr, admin2, "/v1/models/g"), 200);
    let mut node = node;
    assert!(node.child.try_wait().unwrap().is_none(), "the node exited");
    drop(node);
    let _ = std::fs::remove_dir_all(&dir);
}
