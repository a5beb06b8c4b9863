//! A corpus of malformed HTTP requests and raw socket garbage replayed against a live
//! three-node cluster: every HTTP answer is a 4xx with a JSON error body, no node exits, each
//! node's memory stays within bounds, and the cluster still serves a valid request after.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::fixture;
use common::http::{bearer, post_json};
use common::nodes::*;
use serde_json::{Value, json};

/// Sends `raw` and reads until the server closes; `(status, body)` of the answer, or `None`
/// when the server closed without one.
fn send_raw(addr: &str, raw: &[u8]) -> Option<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let _ = s.write_all(raw);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    let text = String::from_utf8_lossy(&all);
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let split = all.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&all[..split]).to_ascii_lowercase();
    let mut body = all[split..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    Some((status, body))
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(at) = b.windows(2).position(|w| w == b"\r\n") {
        let n = usize::from_str_radix(String::from_utf8_lossy(&b[..at]).trim(), 16).unwrap_or(0);
        if n == 0 || at + 2 + n > b.len() {
            break;
        }
        out.extend_from_slice(&b[at + 2..at + 2 + n]);
        b = &b[(at + 4 + n).min(b.len())..];
    }
    out
}

fn post(addr: &str, key: &str, path: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Whether an error body is JSON naming the error: ours (`{"error":{"code","message"}}`) or
/// KServe's (`{"error": "..."}`).
fn json_error(body: &[u8]) -> bool {
    serde_json::from_slice::<Value>(body)
        .is_ok_and(|v| v["error"]["code"].is_string() && v["error"]["message"].is_string() || v["error"].is_string())
}

#[test]
fn malformed_requests_and_socket_garbage_get_json_4xx_and_the_cluster_keeps_serving() {
    let cluster = Cluster::start("hostile", 3, |_| String::new());
    let key = bearer(&cluster.key);
    block_on(serve_model(&cluster.client(0), 3, "g", &fixture("gpt2_tiny"), "pipeline:3", 1));
    let addrs: Vec<String> = cluster.nodes.iter().map(|n| n.addr.clone()).collect();
    let pids: Vec<u32> = cluster.nodes.iter().map(|n| n.child.id()).collect();
    let before: Vec<u64> = pids.iter().map(|&p| rss_kib(p)).collect();
    let j = "application/json";
    let infer = "/v1/models/g/infer";
    let huge_ids = format!("{{\"input_ids\": [[{}]]}}", vec!["1"; 200_000].join(","));
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let bad_utf8: &[u8] = b"{\"model\": \"g\", \"prompt\": \"\xff\xfe\xfd\"}";
    let kserve = |header: &str, extra: &[u8], header_len: Option<&str>| {
        let mut body = header.as_bytes().to_vec();
        body.extend_from_slice(extra);
        let mut r = format!(
            "POST /v2/models/g/infer HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\
             Content-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n",
            body.len()
        );
        if let Some(h) = header_len {
            r.push_str(&format!("Inference-Header-Content-Length: {h}\r\n"));
        }
        let mut r = format!("{r}\r\n").into_bytes();
        r.extend_from_slice(&body);
        r
    };
    let v2_input = |shape: &str, datatype: &str, size: usize| {
        format!(
            r#"{{"inputs":[{{"name":"input_ids","shape":{shape},"datatype":"{datatype}","parameters":{{"binary_data_size":{size}}}}}]}}"#
        )
    };
    let h = v2_input("[1,2]", "INT64", 16);
    let corpus: Vec<(&str, Vec<u8>)> = vec![
        ("truncated JSON", post(&addrs[0], &key, infer, j, b"{\"input_ids\": [[1, 2")),
        ("ids of the wrong type", post(&addrs[0], &key, infer, j, br#"{"input_ids": "hello"}"#)),
        ("negative id", post(&addrs[0], &key, infer, j, br#"{"input_ids": [[-1]]}"#)),
        ("id beyond the vocabulary", post(&addrs[0], &key, infer, j, br#"{"input_ids": [[99999999]]}"#)),
        ("id beyond u32", post(&addrs[0], &key, infer, j, br#"{"input_ids": [[1e30]]}"#)),
        ("ragged rows", post(&addrs[0], &key, infer, j, br#"{"input_ids": [[1, 2], [3]]}"#)),
        ("no rows", post(&addrs[0], &key, infer, j, br#"{"input_ids": []}"#)),
        ("an empty row", post(&addrs[0], &key, infer, j, br#"{"input_ids": [[]]}"#)),
        ("an unknown output", post(&addrs[0], &key, infer, j, br#"{"input_ids": [[1]], "outputs": ["nope"]}"#)),
        ("a mask of another shape", post(&addrs[0], &key, infer, j, br#"{"input_ids": [[1, 2]], "attention_mask": [[1]]}"#)),
        ("200,000 tokens", post(&addrs[1], &key, infer, j, huge_ids.as_bytes())),
        ("nesting 100,000 deep", post(&addrs[1], &key, infer, j, deep.as_bytes())),
        ("an unknown model", post(&addrs[2], &key, "/v1/models/nope/infer", j, br#"{"input_ids": [[1]]}"#)),
        ("not UTF-8", post(&addrs[2], &key, "/v1/completions", j, bad_utf8)),
        ("max_tokens negative", post(&addrs[0], &key, "/v1/completions", j, br#"{"model": "g", "prompt": "a", "max_tokens": -1}"#)),
        ("temperature a string", post(&addrs[0], &key, "/v1/completions", j, br#"{"model": "g", "prompt": "a", "temperature": "hot"}"#)),
        ("a prompt of objects", post(&addrs[0], &key, "/v1/completions", j, br#"{"model": "g", "prompt": [{"a": 1}]}"#)),
        ("logprobs 1000", post(&addrs[0], &key, "/v1/completions", j, br#"{"model": "g", "prompt": [1], "logprobs": 1000}"#)),
        ("too many stops", post(&addrs[0], &key, "/v1/completions", j, format!(r#"{{"model": "g", "prompt": [1], "stop": {:?}}}"#, vec!["x"; 1000]).as_bytes())),
        ("messages not a list", post(&addrs[1], &key, "/v1/chat/completions", j, br#"{"model": "g", "messages": "hi"}"#)),
        ("an unknown role", post(&addrs[1], &key, "/v1/chat/completions", j, br#"{"model": "g", "messages": [{"role": "wizard", "content": "x"}]}"#)),
        ("no input", post(&addrs[2], &key, "/v1/embeddings", j, br#"{"model": "g", "input": []}"#)),
        ("an empty token list", post(&addrs[2], &key, "/v1/embeddings", j, br#"{"model": "g", "input": [[]]}"#)),
        ("a load outside any path", post(&addrs[0], &key, "/v1/models", j, br#"{"id": "x", "path": "../../etc", "strategy": "none"}"#)),
        ("a bogus strategy", post(&addrs[0], &key, "/v1/models", j, format!(r#"{{"id": "x", "path": {:?}, "strategy": "bogus:9"}}"#, fixture("gpt2_tiny")).as_bytes())),
        ("replication 0", post(&addrs[0], &key, "/v1/models", j, format!(r#"{{"id": "x", "path": {:?}, "strategy": "none", "replication": 0}}"#, fixture("gpt2_tiny")).as_bytes())),
        ("a model id with a slash", post(&addrs[0], &key, "/v1/models", j, format!(r#"{{"id": "a/b", "path": {:?}, "strategy": "none"}}"#, fixture("gpt2_tiny")).as_bytes())),
        ("a migration of a shard that is not there", post(&addrs[0], &key, "/v1/models/g/migrate", j, br#"{"shard": 99, "from": "nobody", "to": "nobody"}"#)),
        ("KServe header longer than the body", kserve(&h, &[0; 16], Some("100000"))),
        ("KServe header length not a number", kserve(&h, &[0; 16], Some("ten"))),
        ("KServe binary size short of the shape", kserve(&h, &[0; 8], Some(&h.len().to_string()))),
        ("KServe negative shape", kserve(&v2_input("[-1,2]", "INT64", 16), &[0; 16], Some(&v2_input("[-1,2]", "INT64", 16).len().to_string()))),
        ("KServe unknown datatype", kserve(&v2_input("[1,2]", "COMPLEX", 16), &[0; 16], Some(&v2_input("[1,2]", "COMPLEX", 16).len().to_string()))),
        ("KServe garbage header", kserve("\u{1}\u{2}not json", &[], Some("10"))),
        ("an unknown route", post(&addrs[0], &key, "/v1/nothing/here", j, b"{}")),
        ("a wrong method", format!("PUT /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").into_bytes()),
        ("no key", b"POST /v1/models/g/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}".to_vec()),
        ("a Content-Length beyond the limit", format!("POST {infer} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: 99999999999\r\nConnection: close\r\n\r\n{{").into_bytes()),
    ];
    let mut failures = Vec::new();
    for (what, raw) in &corpus {
        for addr in &addrs[..1] {
            match send_raw(addr, raw) {
                Some((status, body)) if (400..500).contains(&status) && json_error(&body) => {}
                Some((status, body)) => {
                    failures.push(format!("{what}: {status} {}", String::from_utf8_lossy(&body[..body.len().min(300)])))
                }
                None => failures.push(format!("{what}: no answer")),
            }
        }
    }
    // Bytes that are not HTTP at all, to every node: an answer, when there is one, is a 4xx.
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut garbage = Vec::new();
    for len in [1usize, 7, 64, 1024, 65536] {
        garbage.push(
            (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    (seed >> 56) as u8
                })
                .collect::<Vec<u8>>(),
        );
    }
    garbage.push(format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(100_000)).into_bytes());
    garbage.push(format!("GET / HTTP/1.1\r\n{}\r\n", "X-Flood: 1\r\n".repeat(10_000)).into_bytes());
    garbage.push(b"GET /v1/peer HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: x\r\nSec-WebSocket-Version: 13\r\n\r\n\x81\x05hello".to_vec());
    garbage.push(b"POST /v1/models/g/infer HTTP/1.1\r\nContent-Length: 5\r\n\r\n{".to_vec());
    for addr in &addrs {
        for g in &garbage {
            if let Some((status, _)) = send_raw(addr, g)
                && !(400..500).contains(&status)
            {
                failures.push(format!("garbage of {} bytes to {addr}: status {status}", g.len()));
            }
        }
    }
    assert!(failures.is_empty(), "answers that are not a JSON 4xx:\n{}", failures.join("\n"));
    // Every node is up, serves, and kept its memory.
    for (i, node) in cluster.nodes.iter().enumerate() {
        let alive = std::process::Command::new("kill").args(["-0", &node.child.id().to_string()]).status().unwrap();
        assert!(alive.success(), "node {i} exited");
        let (status, v) = post_json(&node.addr, &key, infer, &json!({"input_ids": [[1, 2, 3]]}));
        assert_eq!(status, 200, "node {i} after the corpus: {v}");
        let after = rss_kib(pids[i]);
        assert!(after < before[i] + 256 * 1024, "node {i} grew from {} to {after} KiB", before[i]);
    }
}
