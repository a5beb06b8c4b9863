//! SmolLM2-135M-Instruct's Q4_1 GGUF file served by three real `mlmf node` processes on
//! 127.0.0.1 as `pipeline:3`, `layer:2` and `tensor:3` (9 heads and 3 KV heads: one KV head a
//! member), spoken to over HTTP: the chat answer to the reference question, greedy
//! completions whole and streamed, and teacher-forced scoring through `echo` + `logprobs`,
//! each by the rule of `tests/smollm2.rs` (a near-tie below a top-2 margin of 0.5 may flip).

mod common;

use std::time::Duration;

use common::http::{Events, bearer, post_json};
use common::nodes::*;
use common::smollm2::{NEAR_TIE, cases, ids, margins, smollm2};
use mlmf::generate::TextTokenizer;
use serde_json::{Value, json};

const STRATEGIES: [&str; 3] = ["pipeline:3", "layer:2", "tensor:3"];

/// Ids of a completion, whole or streamed, to `max_tokens` greedy tokens.
fn greedy(addr: &str, key: &str, model: &str, prompt: &[u32], n: usize, stream: bool) -> Vec<u32> {
    let body = json!({"model": model, "prompt": prompt, "max_tokens": n, "temperature": 0,
        "ignore_eos": true, "return_token_ids": true, "stream": stream});
    if !stream {
        let (status, answer) = post_json(addr, key, "/v1/completions", &body);
        assert_eq!(status, 200, "{answer}");
        return ids(&answer["choices"][0]["token_ids"]);
    }
    let mut events = Events::open(addr, key, "/v1/completions", &body);
    let mut out = Vec::new();
    while let Some(data) = events.next_data() {
        if data == "[DONE]" {
            return out;
        }
        let chunk: Value = serde_json::from_str(&data).unwrap();
        assert!(chunk.get("error").is_none(), "{chunk}");
        out.extend(ids(&chunk["choices"][0]["token_ids"]));
    }
    panic!("the stream ended before [DONE]");
}

/// Where `got` parts from `want` before the first near-tie: the failure, if any.
fn free_running(name: &str, got: &[u32], want: &[u32], m: &[f64]) -> Option<String> {
    for k in 0..want.len() {
        if m[k] < NEAR_TIE {
            return None;
        }
        if got.get(k) != Some(&want[k]) {
            return Some(format!("{name}: greedy step {k}: {:?} not {} (margin {:.3})", got.get(k), want[k], m[k]));
        }
    }
    None
}

#[test]
fn three_nodes_serve_smollm2_through_every_split() {
    let Some(path) = smollm2() else { return };
    let tok = TextTokenizer::require(&path).unwrap();
    let cluster = Cluster::start("smollm2", 3, |_| String::new());
    let client = cluster.client(0);
    let key = bearer(&cluster.key);
    block_on(async {
        wait_members(&client, 3).await;
        for s in STRATEGIES {
            client.load(&load_request(&s.replace(':', ""), &path, s, 1)).await.unwrap();
        }
        for s in STRATEGIES {
            client.wait_ready(&s.replace(':', ""), Duration::from_secs(120), |_, _| {}).await.unwrap();
        }
    });
    let mut failures = Vec::new();
    for (si, s) in STRATEGIES.iter().enumerate() {
        let model = s.replace(':', "");
        let addr = &cluster.nodes[si % 3].addr;
        for (name, case) in cases() {
            let name = format!("{s} {name}");
            let (prompt, want, m) = (ids(&case["input_ids"]), ids(&case["new_ids"]), margins(&case));
            // Free-running, whole; streamed for the chats (each step is a network round trip
            // through the split, which a debug build of the nodes makes slow).
            let streams: &[bool] = if name.contains("chat") { &[false, true] } else { &[false] };
            for &stream in streams {
                let got = greedy(addr, &key, &model, &prompt, want.len(), stream);
                failures.extend(free_running(&format!("{name} stream={stream}"), &got, &want, &m));
            }
            // Teacher-forced: the prompt and the reference continuation scored in one pass.
            let all: Vec<u32> = prompt.iter().chain(&want).copied().collect();
            let body = json!({"model": model, "prompt": all, "max_tokens": 0, "echo": true, "logprobs": 3});
            let (status, answer) = post_json(addr, &key, "/v1/completions", &body);
            assert_eq!(status, 200, "{answer}");
            let top = answer["choices"][0]["logprobs"]["top_logprobs"].as_array().unwrap();
            for (k, &w) in want.iter().enumerate() {
                let at = top[prompt.len() + k].as_object().unwrap();
                let best = at.iter().max_by(|a, b| a.1.as_f64().unwrap().total_cmp(&b.1.as_f64().unwrap())).unwrap().0;
                let text = tok.token(w);
                if m[k] >= NEAR_TIE && *best != text {
                    failures.push(format!("{name}: teacher-forced step {k}: best {best:?} not {text:?}"));
                }
                if !at.contains_key(&text) {
                    failures.push(format!("{name}: teacher-forced step {k}: {text:?} not in the top 3 {at:?}"));
                }
            }
        }
        // The chat answer to the reference question, through the file's own template.
        let body = json!({"model": model, "messages": [{"role": "user", "content": "What is the capital of France?"}],
            "max_tokens": 32, "temperature": 0});
        let (status, answer) = post_json(addr, &key, "/v1/chat/completions", &body);
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["choices"][0]["message"]["content"], "The capital of France is Paris.", "{s}");
        assert_eq!(answer["choices"][0]["finish_reason"], "stop");
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}

/// The README's first command: `mlmf serve` without `--model` serves SmolLM2 from the cache
/// (fetched there by `scripts/fetch-smollm2.sh`, SHA-256 checked again) on three nodes as
/// `pipeline:3` and prints the model's answer to the reference question.
#[test]
fn serve_without_a_model_answers_the_question_on_three_nodes() {
    let Some(path) = smollm2() else { return };
    let cache = path.parent().and_then(|p| p.parent()).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mlmf"))
        .args(["serve", "--nodes", "3", "--strategy", "pipeline:3", "--exit-when-ready"])
        .env("MLMF_CACHE", cache)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("pipeline:3, 3 shards on 3 nodes"), "{stdout}");
    assert!(stdout.contains(r#""What is the capital of France?" -> "The capital of France is Paris.""#), "{stdout}");
}
