//! `POST /v1/completions` on three real `mlmf node` processes on 127.0.0.1, spoken to over
//! plain HTTP: greedy completions equal `transformers`' `generate` (ids and text) for
//! gpt2_tiny and llama_tiny under `none`, `layer:2`, `pipeline:3` and `tensor:2`, whole and
//! streamed (the streamed pieces concatenate to the same text); bad requests get a 4xx naming
//! the field and the cluster keeps serving; a node holding a stage of a running stream is
//! killed (kill -9) or frozen (SIGSTOP), and the stream completes with the undisturbed run's
//! tokens.

mod common;

use std::time::{Duration, Instant};

use common::fixture;
use common::http::{Events, bearer, post_json};
use common::nodes::*;
use serde_json::{Value, json};

const STRATEGIES: [&str; 4] = ["none", "layer:2", "pipeline:3", "tensor:2"];

fn ids(v: &Value) -> Vec<u64> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect()
}

/// Reads a stream to its end: the concatenated text, the ids, the last chunk, whether it ended
/// with `[DONE]`.
fn read_stream(mut events: Events, mut each: impl FnMut(usize)) -> (String, Vec<u64>, Value, bool) {
    let (mut text, mut tokens, mut last, mut done) = (String::new(), Vec::new(), Value::Null, false);
    while let Some(data) = events.next_data() {
        if data == "[DONE]" {
            done = true;
            break;
        }
        let chunk: Value = serde_json::from_str(&data).unwrap();
        assert!(chunk.get("error").is_none(), "{chunk}");
        let choice = &chunk["choices"][0];
        text.push_str(choice["text"].as_str().unwrap());
        tokens.extend(ids(&choice["token_ids"]));
        last = chunk;
        each(tokens.len());
    }
    (text, tokens, last, done)
}

#[test]
fn completions_match_transformers_through_every_split_whole_and_streamed() {
    let cluster = Cluster::start("completions", 3, |_| String::new());
    let client = cluster.client(0);
    let key = bearer(&cluster.key);
    block_on(async {
        wait_members(&client, 3).await;
        for model in ["gpt2_tiny", "llama_tiny"] {
            for strategy in STRATEGIES {
                let id = format!("{model}-{}", strategy.replace(':', ""));
                client.load(&load_request(&id, &fixture(model), strategy, 1)).await.unwrap();
            }
        }
        for model in ["gpt2_tiny", "llama_tiny"] {
            for strategy in STRATEGIES {
                let id = format!("{model}-{}", strategy.replace(':', ""));
                client.wait_ready(&id, Duration::from_secs(60), |_, _| {}).await.unwrap();
            }
        }
    });
    for model in ["gpt2_tiny", "llama_tiny"] {
        let refs: Value =
            serde_json::from_slice(&std::fs::read(fixture(model).join("generation.json")).unwrap()).unwrap();
        for strategy in STRATEGIES {
            let id = format!("{model}-{}", strategy.replace(':', ""));
            for (i, p) in refs["prompts"].as_array().unwrap().iter().enumerate() {
                // Each request goes to another node: any node takes completions.
                let addr = &cluster.nodes[i % 3].addr;
                let body = json!({"model": id, "prompt": p["prompt"], "max_tokens": refs["max_new_tokens"],
                    "temperature": 0, "return_token_ids": true});
                let (status, answer) = post_json(addr, &key, "/v1/completions", &body);
                assert_eq!(status, 200, "{answer}");
                let choice = &answer["choices"][0];
                assert_eq!(ids(&choice["token_ids"]), ids(&p["new_ids"]), "{id} prompt {i}");
                assert_eq!(choice["text"], p["new_text"], "{id} prompt {i}");
                assert_eq!(choice["finish_reason"], "length");
                assert_eq!(ids(&answer["prompt_token_ids"]), ids(&p["input_ids"]));
                assert_eq!(answer["object"], "text_completion");
                let n = ids(&p["input_ids"]).len() as u64;
                assert_eq!(
                    answer["usage"],
                    json!({"prompt_tokens": n, "completion_tokens": 24, "total_tokens": n + 24})
                );
                // Streamed: the pieces concatenate to the same text.
                let mut stream_body = body.clone();
                stream_body["stream"] = json!(true);
                let events = Events::open(addr, &key, "/v1/completions", &stream_body);
                assert_eq!(events.status, 200);
                assert!(events.content_type.starts_with("text/event-stream"), "{}", events.content_type);
                let (text, tokens, last, done) = read_stream(events, |_| {});
                assert!(done, "the stream ends with [DONE]");
                assert_eq!(text, p["new_text"].as_str().unwrap(), "{id} prompt {i} streamed");
                assert_eq!(tokens, ids(&p["new_ids"]));
                assert_eq!(last["choices"][0]["finish_reason"], "length");
                assert_eq!(last["usage"]["completion_tokens"], 24);
            }
        }
    }
    // `mlmf generate --id` streams a completion from the cluster to the terminal.
    let p = &serde_json::from_slice::<Value>(&std::fs::read(fixture("llama_tiny").join("generation.json")).unwrap())
        .unwrap()["prompts"][2];
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mlmf"))
        .args(["generate", "--addr", &cluster.nodes[1].addr, "--cluster-key-file"])
        .arg(&cluster.key)
        .args(["--id", "llama_tiny-pipeline3", "--prompt", p["prompt"].as_str().unwrap(), "--max-tokens", "24"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{}\n", p["new_text"].as_str().unwrap()));
    // Every KV cache is released once its sequence ends.
    block_on(async {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let c = client.cluster().await.unwrap();
            let held: u64 =
                c["nodes"].as_array().unwrap().iter().map(|n| n["stats"]["kv_cache_bytes"].as_u64().unwrap_or(0)).sum();
            if held == 0 {
                break;
            }
            assert!(Instant::now() < deadline, "KV caches still held: {c}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
}

#[test]
fn bad_completion_requests_get_a_400_naming_the_field_and_the_cluster_keeps_serving() {
    let cluster = Cluster::start("completions-bad", 1, |_| String::new());
    let client = cluster.client(0);
    let key = bearer(&cluster.key);
    block_on(serve_model(&client, 1, "g", &fixture("gpt2_tiny"), "none", 1));
    let addr = &cluster.nodes[0].addr;
    let cases = [
        (json!({"model": "nope", "prompt": "hi"}), 404, "nope"),
        (json!({"model": "g", "prompt": "hi", "temperature": -1}), 400, "temperature"),
        (json!({"model": "g", "prompt": "hi", "top_p": 0}), 400, "top_p"),
        (json!({"model": "g", "prompt": "hi", "top_p": 1.5}), 400, "top_p"),
        (json!({"model": "g", "prompt": "hi", "max_tokens": 0}), 400, "max_tokens"),
        (json!({"model": "g", "prompt": "hi", "logprobs": "many"}), 400, "logprobs"),
        (json!({"model": "g", "prompt": "hi", "max_tokens": 1000}), 400, "256"),
        (json!({"model": "g", "prompt": ""}), 400, "prompt"),
        (json!({"model": "g", "prompt": [5, 99999]}), 400, "prompt"),
        (json!({"model": "g", "prompt": "hi", "n": 2}), 400, "n"),
        (json!({"model": "g", "prompt": "hi", "stop": [""]}), 400, "stop"),
        (json!({"model": "g", "prompt": "hi", "top_k": -5}), 400, "top_k"),
        (json!({"model": "g", "prompt": 12}), 400, "prompt"),
    ];
    for (body, want, names) in cases {
        let (status, answer) = post_json(addr, &key, "/v1/completions", &body);
        assert_eq!(status, want, "{body} -> {answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(names), "{body} -> {answer}");
    }
    // Past the positions with `truncate_at_max_positions`, it stops there with `length`.
    let body = json!({"model": "g", "prompt": vec![5; 250], "max_tokens": 100, "temperature": 0,
        "truncate_at_max_positions": true, "return_token_ids": true});
    let (status, answer) = post_json(addr, &key, "/v1/completions", &body);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        (answer["choices"][0]["token_ids"].as_array().unwrap().len(), &answer["choices"][0]["finish_reason"]),
        (6, &json!("length"))
    );
    // GET /v1/models answers in OpenAI's shape too; /infer takes text.
    let models: Value = block_on(async {
        let c = awc::Client::default();
        let mut r = c.get(format!("http://{addr}/v1/models")).bearer_auth(&key).send().await.unwrap();
        r.json().await.unwrap()
    });
    assert_eq!(
        (&models["object"], &models["data"][0]["id"], &models["data"][0]["object"]),
        (&json!("list"), &json!("g"), &json!("model"))
    );
    assert_eq!(models["data"][0]["owned_by"], "mlmf");
    let (status, by_text) = post_json(
        addr,
        &key,
        "/v1/models/g/infer",
        &json!({"text": "The cluster will load the model", "outputs": ["logits"]}),
    );
    assert_eq!(status, 200, "{by_text}");
    let (_, by_ids) = post_json(
        addr,
        &key,
        "/v1/models/g/infer",
        &json!({"input_ids": [[52, 72, 69, 757, 649, 884, 344, 669]], "outputs": ["logits"]}),
    );
    assert_eq!(by_text["outputs"], by_ids["outputs"]);
    // A stop string ends the text before it; the cluster still serves.
    let body = json!({"model": "g", "prompt": "The cluster will load the model", "max_tokens": 24, "temperature": 0, "stop": " ser"});
    let (status, answer) = post_json(addr, &key, "/v1/completions", &body);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["choices"][0]["finish_reason"], "stop");
    assert!(!answer["choices"][0]["text"].as_str().unwrap().contains(" ser"), "{answer}");
}

/// Streams 200 tokens from node 0 at replication 2, and once 20 have arrived applies `fault`
/// to another node holding the sequence's caches; the stream must complete with the
/// undisturbed run's tokens.
fn a_stream_survives(tag: &str, fault: &str) {
    let cluster = Cluster::start(tag, 3, |_| {
        "[health]\nheartbeat_interval_ms = 200\nacceptable_pause_ms = 600\nmin_std_dev_ms = 50\nreplace_after_ms = 60000\n\
         [requests]\nattempt_timeout_ms = 2000\n"
            .to_string()
    });
    let client = cluster.client(0);
    let key = bearer(&cluster.key);
    block_on(serve_model(&client, 3, "g", &fixture("gpt2_tiny"), "pipeline:3", 2));
    let addr = cluster.nodes[0].addr.clone();
    let body = json!({"model": "g", "prompt": "When a node fails, the replica", "max_tokens": 200,
        "temperature": 0, "ignore_eos": true, "return_token_ids": true});
    let (status, undisturbed) = post_json(&addr, &key, "/v1/completions", &body);
    assert_eq!(status, 200, "{undisturbed}");
    let want = ids(&undisturbed["choices"][0]["token_ids"]);
    assert_eq!(want.len(), 200);
    let mut stream_body = body.clone();
    stream_body["stream"] = json!(true);
    let events = Events::open(&addr, &key, "/v1/completions", &stream_body);
    let mut victim: Option<usize> = None;
    let (text, tokens, last, done) = read_stream(events, |n| {
        if n == 20 && victim.is_none() {
            // A node other than the one holding the sequence whose stats show its caches.
            victim = block_on(async {
                for _ in 0..50 {
                    let c = client.cluster().await.unwrap();
                    for (i, node) in cluster.nodes.iter().enumerate().skip(1) {
                        let held = c["nodes"].as_array().unwrap().iter().any(|m| {
                            m["node"]["info"]["addr"] == node.addr.as_str()
                                && m["stats"]["kv_cache_bytes"].as_u64().unwrap_or(0) > 0
                        });
                        if held {
                            return Some(i);
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                None
            });
            let i = victim.expect("a node other than the entry holds a stage's cache");
            signal(&cluster.nodes[i], fault);
        }
    });
    assert!(victim.is_some());
    assert!(done, "the stream ends with [DONE]");
    assert_eq!(tokens, want, "the stream continued with the undisturbed run's tokens");
    assert_eq!(text, undisturbed["choices"][0]["text"].as_str().unwrap());
    assert_eq!(last["choices"][0]["finish_reason"], "length");
    if fault == "-STOP" {
        signal(&cluster.nodes[victim.unwrap()], "-CONT");
    }
}

#[test]
fn a_stream_completes_with_the_same_tokens_when_a_stage_node_is_killed() {
    a_stream_survives("completions-kill", "-KILL");
}

#[test]
fn a_stream_completes_with_the_same_tokens_when_a_stage_node_is_frozen() {
    a_stream_survives("completions-freeze", "-STOP");
}

#[test]
fn a_cache_budget_too_small_still_gives_the_same_tokens_and_a_client_that_leaves_frees_its_caches() {
    let refs: Value =
        serde_json::from_slice(&std::fs::read(fixture("gpt2_tiny").join("generation.json")).unwrap()).unwrap();
    let p = &refs["prompts"][0];
    // A budget of one byte keeps no cache: every step replays the sequence, with the same tokens.
    let tiny = Cluster::start("completions-tiny-cache", 2, |_| "[generation]\nkv_cache_bytes = 1\n".into());
    block_on(serve_model(&tiny.client(0), 2, "g", &fixture("gpt2_tiny"), "layer:3", 1));
    let body =
        json!({"model": "g", "prompt": p["prompt"], "max_tokens": 24, "temperature": 0, "return_token_ids": true});
    let (status, answer) = post_json(&tiny.nodes[0].addr, &bearer(&tiny.key), "/v1/completions", &body);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(ids(&answer["choices"][0]["token_ids"]), ids(&p["new_ids"]));
    drop(tiny);
    // A client that disconnects mid-stream: the sequence stops and its caches go.
    let cluster = Cluster::start("completions-leave", 2, |_| "[health]\nheartbeat_interval_ms = 200\n".into());
    let client = cluster.client(0);
    block_on(serve_model(&client, 2, "g", &fixture("gpt2_tiny"), "layer:3", 1));
    let body = json!({"model": "g", "prompt": p["prompt"], "max_tokens": 240, "temperature": 0, "ignore_eos": true, "stream": true});
    let mut events = Events::open(&cluster.nodes[0].addr, &bearer(&cluster.key), "/v1/completions", &body);
    for _ in 0..5 {
        events.next_data().unwrap();
    }
    drop(events);
    let held = || {
        block_on(async {
            let c = client.cluster().await.unwrap();
            c["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n["stats"]["kv_cache_bytes"].as_u64().unwrap_or(0))
                .sum::<u64>()
        })
    };
    // The sequence stopped soon after the client left (it would have gone on to 240 tokens)
    // and its caches were freed on both nodes.
    let generated = || {
        let (_, text) = common::http::get_text(&cluster.nodes[0].addr, &bearer(&cluster.key), "/metrics");
        let line = text.lines().find(|l| l.starts_with("mlmf_generated_tokens_total")).unwrap().to_string();
        line.rsplit(' ').next().unwrap().parse::<u64>().unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let before = generated();
        std::thread::sleep(Duration::from_millis(300));
        if generated() == before && held() == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the sequence of a client that left kept going or kept its caches");
    }
    assert!(generated() < 24 + 200, "the sequence ran on after its client left: {}", generated());
}

#[test]
fn logprobs_and_echo_score_tokens_as_the_reference_logits_say() {
    let cluster = Cluster::start("completions-logprobs", 1, |_| String::new());
    let key = bearer(&cluster.key);
    block_on(serve_model(&cluster.client(0), 1, "g", &fixture("gpt2_tiny"), "pipeline:2", 1));
    let addr = &cluster.nodes[0].addr;
    let refs: Value =
        serde_json::from_slice(&std::fs::read(fixture("gpt2_tiny").join("generation.json")).unwrap()).unwrap();
    let scores = common::read_safetensors(&fixture("gpt2_tiny").join("generation.safetensors"));
    let p = &refs["prompts"][0];
    let log_softmax = |row: &[f32]| -> Vec<f64> {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let lse = row.iter().map(|&x| (x as f64 - max).exp()).sum::<f64>().ln() + max;
        row.iter().map(|&x| x as f64 - lse).collect()
    };
    // The generated tokens' log-probabilities are the log-softmax of the reference scores.
    let body = json!({"model": "g", "prompt": p["prompt"], "max_tokens": 24, "temperature": 0, "logprobs": 3});
    let (status, answer) = post_json(addr, &key, "/v1/completions", &body);
    assert_eq!(status, 200, "{answer}");
    let lp = &answer["choices"][0]["logprobs"];
    let new = ids(&p["new_ids"]);
    let s = &scores["p0.scores"];
    for (step, &t) in new.iter().enumerate() {
        let want = log_softmax(&s.f32[step * 1000..(step + 1) * 1000])[t as usize];
        let got = lp["token_logprobs"][step].as_f64().unwrap();
        assert!((got - want).abs() < 1e-3, "step {step}: {got} vs {want}");
        let top = lp["top_logprobs"][step].as_object().unwrap();
        assert!(!top.is_empty() && top.len() <= 3, "{top:?}");
        // Greedy: the chosen token is the most likely one.
        let best = top.values().map(|v| v.as_f64().unwrap()).fold(f64::NEG_INFINITY, f64::max);
        assert!((best - got).abs() < 1e-6, "step {step}");
    }
    assert_eq!(lp["tokens"].as_array().unwrap().len(), 24);
    // echo with max_tokens 0 scores the prompt: the first token has no log-probability, the
    // others are the log-softmax of the logits one position before (one forward, in-process).
    let prompt = ids(&p["input_ids"]);
    let body = json!({"model": "g", "prompt": p["prompt"], "max_tokens": 0, "echo": true, "logprobs": 1});
    let (status, answer) = post_json(addr, &key, "/v1/completions", &body);
    assert_eq!(status, 200, "{answer}");
    let choice = &answer["choices"][0];
    assert_eq!(choice["text"], p["prompt"]);
    let lp = &choice["logprobs"];
    assert_eq!(lp["tokens"].as_array().unwrap().len(), prompt.len());
    assert!(lp["token_logprobs"][0].is_null() && lp["top_logprobs"][0].is_null());
    let runner =
        mlmf::exec::LocalRunner::load(&fixture("gpt2_tiny"), &"none".parse().unwrap(), &mlmf::model::default_device())
            .unwrap();
    let ids32: Vec<u32> = prompt.iter().map(|&t| t as u32).collect();
    let out = runner.run(&mlmf::model::ModelInput::single(&ids32), Default::default()).unwrap();
    let logits = &out.tensors["logits"].data;
    for i in 1..prompt.len() {
        let want = log_softmax(&logits[(i - 1) * 1000..i * 1000])[prompt[i] as usize];
        let got = lp["token_logprobs"][i].as_f64().unwrap();
        assert!((got - want).abs() < 1e-3, "prompt token {i}: {got} vs {want}");
    }
    assert_eq!(answer["usage"]["completion_tokens"], 0);
    // echo with a stream, and logprobs out of range, are refused.
    for (body, field) in [
        (json!({"model": "g", "prompt": "hi", "echo": true, "stream": true}), "echo"),
        (json!({"model": "g", "prompt": "hi", "logprobs": 50}), "logprobs"),
    ] {
        let (status, answer) = post_json(addr, &key, "/v1/completions", &body);
        assert!(status == 400 && answer["error"]["message"].as_str().unwrap().starts_with(field), "{answer}");
    }
}

#[test]
fn chat_completions_render_the_models_template_and_generate_as_one_process_does() {
    // gpt2_tiny with a ChatML template in its tokenizer_config.json.
    let dir = temp_dir("chat-model");
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(fixture("gpt2_tiny").join(f), dir.join(f)).unwrap();
    }
    let template = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
    let config = json!({"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "add_bos_token": false, "chat_template": template});
    std::fs::write(dir.join("tokenizer_config.json"), config.to_string()).unwrap();
    let cluster = Cluster::start("chat", 2, |_| String::new());
    let key = bearer(&cluster.key);
    block_on(async {
        let client = cluster.client(0);
        serve_model(&client, 2, "chat", &dir, "layer:3", 1).await;
        client.load(&load_request("plain", &fixture("gpt2_tiny"), "none", 1)).await.unwrap();
        client.wait_ready("plain", Duration::from_secs(60), |_, _| {}).await.unwrap();
    });
    let messages =
        json!([{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "When a node fails?"}]);
    let rendered = "<|im_start|>system\nAnswer briefly.<|im_end|>\n<|im_start|>user\nWhen a node fails?<|im_end|>\n<|im_start|>assistant\n";
    let tok = mlmf::generate::TextTokenizer::require(&dir).unwrap();
    let runner = mlmf::exec::LocalRunner::load(&dir, &"none".parse().unwrap(), &mlmf::model::default_device()).unwrap();
    let params = mlmf::generate::GenerationParams {
        max_tokens: 20,
        sampling: mlmf::generate::SamplingParams::greedy(),
        ..Default::default()
    };
    let want = runner.generate(&tok.encode_plain(rendered).unwrap(), params, Some(&tok), |_| {}).unwrap();
    let body = json!({"model": "chat", "messages": messages, "max_completion_tokens": 20, "temperature": 0});
    let (status, answer) = post_json(&cluster.nodes[1].addr, &key, "/v1/chat/completions", &body);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["object"], "chat.completion");
    let choice = &answer["choices"][0];
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(choice["message"]["content"], want.sequence.text());
    assert_eq!(answer["usage"]["prompt_tokens"], tok.encode_plain(rendered).unwrap().len());
    // Streamed: deltas that concatenate to the same content.
    let mut stream_body = body.clone();
    stream_body["stream"] = json!(true);
    let mut events = Events::open(&cluster.nodes[0].addr, &key, "/v1/chat/completions", &stream_body);
    let (mut content, mut last) = (String::new(), Value::Null);
    while let Some(data) = events.next_data() {
        if data == "[DONE]" {
            break;
        }
        let c: Value = serde_json::from_str(&data).unwrap();
        assert_eq!(c["object"], "chat.completion.chunk", "{c}");
        content.push_str(c["choices"][0]["delta"]["content"].as_str().unwrap_or(""));
        last = c;
    }
    assert_eq!(content, want.sequence.text());
    assert_eq!(last["choices"][0]["finish_reason"], "length");
    // logprobs in the chat shape: the chosen tokens' log-probabilities of the one-process run,
    // each with its top 3, the chosen one first under greedy decoding; streamed too.
    let mut lp_body = body.clone();
    lp_body["logprobs"] = json!(true);
    lp_body["top_logprobs"] = json!(3);
    let (status, answer) = post_json(&cluster.nodes[0].addr, &key, "/v1/chat/completions", &lp_body);
    assert_eq!(status, 200, "{answer}");
    let content = answer["choices"][0]["logprobs"]["content"].as_array().unwrap();
    assert_eq!(content.len(), want.steps.len());
    for (entry, step) in content.iter().zip(&want.steps) {
        assert_eq!(entry["token"], tok.token(step.token));
        assert!((entry["logprob"].as_f64().unwrap() - step.logprob as f64).abs() < 1e-4, "{entry}");
        let top = entry["top_logprobs"].as_array().unwrap();
        assert_eq!((top.len(), &top[0]["token"]), (3, &entry["token"]), "{entry}");
        let bytes: Vec<u8> = entry["bytes"].as_array().unwrap().iter().map(|b| b.as_u64().unwrap() as u8).collect();
        assert_eq!(bytes, tok.token(step.token).as_bytes());
    }
    lp_body["stream"] = json!(true);
    let mut events = Events::open(&cluster.nodes[1].addr, &key, "/v1/chat/completions", &lp_body);
    let mut streamed = Vec::new();
    while let Some(data) = events.next_data().filter(|d| d != "[DONE]") {
        let c: Value = serde_json::from_str(&data).unwrap();
        if let Some(e) = c["choices"][0]["logprobs"]["content"].as_array() {
            streamed.extend(e.iter().cloned());
        }
    }
    assert_eq!(&streamed, content);
    // A model without a chat template, and malformed messages: 400s naming the field.
    for (body, field) in [
        (json!({"model": "plain", "messages": messages}), "model"),
        (json!({"model": "chat", "messages": []}), "messages"),
        (json!({"model": "chat", "messages": [{"role": "user"}]}), "messages"),
        (json!({"model": "chat", "messages": messages, "top_logprobs": 2}), "top_logprobs"),
        (json!({"model": "chat", "messages": messages, "logprobs": 3}), "logprobs"),
        (json!({"model": "chat", "messages": messages, "echo": true}), "echo"),
    ] {
        let (status, answer) = post_json(&cluster.nodes[0].addr, &key, "/v1/chat/completions", &body);
        assert!(status == 400 && answer["error"]["message"].as_str().unwrap().starts_with(field), "{body} -> {answer}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// A stream holds its place among the node's requests in flight until it ends: past
/// `max_in_flight` a completion, a chat completion or an embedding is refused with 429 and
/// Retry-After at once; once the streams end the node serves again. Every request is counted
/// per model in `/metrics`, a name that is no ready model under one bounded label.
#[test]
fn streams_hold_their_place_in_flight_and_every_route_is_counted_per_model() {
    let cluster = Cluster::start("completions-bound", 2, |_| {
        "[requests]\nmax_in_flight = 2\nattempt_timeout_ms = 30000\n[health]\nacceptable_pause_ms = 10000\n".into()
    });
    let (addr, key) = (cluster.nodes[0].addr.clone(), bearer(&cluster.key));
    block_on(serve_model(&cluster.client(0), 2, "g", &fixture("gpt2_tiny"), "layer:2", 1));
    let long = json!({"model": "g", "prompt": "The cluster", "max_tokens": 100, "ignore_eos": true,
        "temperature": 0, "stream": true, "return_token_ids": true});
    let mut streams: Vec<Events> = (0..2).map(|_| Events::open(&addr, &key, "/v1/completions", &long)).collect();
    for s in &mut streams {
        s.next_data().unwrap();
    }
    // The second stage's node stops: both streams wait on it, in flight.
    signal(&cluster.nodes[1], "-STOP");
    let short = json!({"model": "g", "prompt": "The cluster", "max_tokens": 2});
    let chat = json!({"model": "g", "messages": [{"role": "user", "content": "hi"}]});
    let embed = json!({"model": "g", "input": "The cluster"});
    for (path, body) in [("/v1/completions", &short), ("/v1/chat/completions", &chat), ("/v1/embeddings", &embed)] {
        let (status, err) = post_json(&addr, &key, path, body);
        assert_eq!((status, err["error"]["code"].as_str()), (429, Some("overloaded")), "{path}: {err}");
    }
    signal(&cluster.nodes[1], "-CONT");
    for s in streams {
        let (_, tokens, last, done) = read_stream(s, |_| {});
        assert!(done && tokens.len() == 99 && last["choices"][0]["finish_reason"] == "length", "{last}");
    }
    let (status, answer) = post_json(&addr, &key, "/v1/completions", &short);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(post_json(&addr, &key, "/v1/embeddings", &embed).0, 200);
    let (status, _) = post_json(&addr, &key, "/v1/completions", &json!({"model": "no-such-model", "prompt": "x"}));
    assert_eq!(status, 404);
    let (_, metrics) = common::http::get_text(&addr, &key, "/metrics");
    let count = |model: &str, status: u16| -> u64 {
        let labels = format!("model=\"{model}\",status=\"{status}\"");
        metrics
            .lines()
            .filter(|l| l.starts_with("mlmf_requests_total{") && l.contains(&labels))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum()
    };
    assert!(count("g", 200) >= 4, "{metrics}");
    assert!(count("(unknown)", 429) == 3 && count("(unknown)", 404) == 1, "{metrics}");
    assert!(!metrics.contains("no-such-model"), "a client's model name became a label");
    // A client that leaves mid-stream gives its place back: nothing stays counted in flight.
    let mut leaving = Events::open(&addr, &key, "/v1/completions", &long);
    leaving.next_data().unwrap();
    drop(leaving);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, metrics) = common::http::get_text(&addr, &key, "/metrics");
        let line = metrics.lines().find(|l| l.starts_with("mlmf_http_in_flight{")).unwrap().to_string();
        if line.ends_with(" 0") {
            break;
        }
        assert!(Instant::now() < deadline, "still counted in flight: {line}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
