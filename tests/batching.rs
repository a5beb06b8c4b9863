//! Dynamic batching on real node processes: concurrent `/infer` requests of mixed lengths
//! for a causal decoder (gpt2_tiny) and a bidirectional encoder (bert_tiny, where padding
//! would leak into every position if it were not masked) are packed into shared forwards
//! (the node's `mlmf_batch_size` histogram shows batches of more than one) and answer what
//! each request answers alone; concurrent embeddings likewise; and a node killed while
//! batches are in flight costs no request.

mod common;

use std::sync::{Arc, Barrier};

use common::http::{bearer, get_text, post_json};
use common::nodes::*;
use common::{fixture, read_safetensors, tolerances};
use serde_json::{Value, json};

/// `(count, batches of one)` of a node's `mlmf_batch_size` histogram.
fn batch_counts(addr: &str, key: &str) -> (f64, f64) {
    let (_, text) = get_text(addr, key, "/metrics");
    let value = |prefix: &str| {
        text.lines().find(|l| l.starts_with(prefix)).and_then(|l| l.rsplit(' ').next()).unwrap().parse::<f64>().unwrap()
    };
    (value("mlmf_batch_size_count{"), value("mlmf_batch_size_bucket{node=") /* le="1" comes first */)
}

/// Every output of `a` within `atol` of `b`'s, shapes equal.
fn assert_close(what: &str, a: &Value, b: &Value, atol: f64) {
    let (ao, bo) = (a["outputs"].as_object().unwrap(), b["outputs"].as_object().unwrap());
    assert_eq!(ao.keys().collect::<Vec<_>>(), bo.keys().collect::<Vec<_>>(), "{what}");
    for (name, t) in ao {
        assert_eq!(t["shape"], bo[name]["shape"], "{what} {name}");
        let (x, y) = (t["data"].as_array().unwrap(), bo[name]["data"].as_array().unwrap());
        let worst = x.iter().zip(y).map(|(p, q)| (p.as_f64().unwrap() - q.as_f64().unwrap()).abs()).fold(0.0, f64::max);
        assert!(worst <= atol, "{what} {name}: batched differs from alone by {worst} (> {atol})");
    }
}

/// `bodies` posted to `path` at once from one thread each, released together.
fn at_once(addr: &str, key: &str, path: &str, bodies: &[Value]) -> Vec<(u16, Value)> {
    let barrier = Arc::new(Barrier::new(bodies.len()));
    std::thread::scope(|s| {
        let handles: Vec<_> = bodies
            .iter()
            .map(|b| {
                let barrier = barrier.clone();
                s.spawn(move || {
                    barrier.wait();
                    post_json(addr, key, path, b)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn concurrent_requests_of_mixed_lengths_share_forwards_and_answer_as_alone() {
    let cluster = Cluster::start("batching", 3, |_| String::new());
    let (addr, key) = (cluster.nodes[0].addr.clone(), bearer(&cluster.key));
    let client = cluster.client(0);
    block_on(serve_model(&client, 3, "g", &fixture("gpt2_tiny"), "pipeline:3", 1));
    block_on(serve_model(&client, 3, "b", &fixture("bert_tiny"), "pipeline:2", 1));
    for (model, case) in [("g", "gpt2_tiny"), ("b", "bert_tiny")] {
        let reference = read_safetensors(&fixture(case).join("reference.safetensors"));
        let ids = &reference["seq32.input_ids"].i64;
        let path = format!("/v1/models/{model}/infer");
        let outputs = if model == "g" { json!(["logits", "last_hidden_state"]) } else { json!(null) };
        let bodies: Vec<Value> =
            (1..=32).map(|l| json!({"input_ids": [ids[..l].to_vec()], "outputs": outputs.clone()})).collect();
        // Alone: one at a time, so each finds a free slot and leaves by itself.
        let alone: Vec<Value> = bodies
            .iter()
            .map(|b| {
                let (status, v) = post_json(&addr, &key, &path, b);
                assert_eq!(status, 200, "{v}");
                v
            })
            .collect();
        let (before, before_single) = batch_counts(&addr, &key);
        // Together: every length twice at once.
        let twice: Vec<Value> = bodies.iter().chain(bodies.iter()).cloned().collect();
        let together = at_once(&addr, &key, &path, &twice);
        let (after, after_single) = batch_counts(&addr, &key);
        let (batches, singles) = (after - before, after_single - before_single);
        assert!(
            batches < twice.len() as f64 && batches > singles,
            "{model}: {batches} batches ({singles} of one) for {} requests",
            twice.len()
        );
        let atol = tolerances(case).values().map(|(a, _)| *a as f64).fold(0.0, f64::max);
        for (i, (status, v)) in together.iter().enumerate() {
            assert_eq!(*status, 200, "{v}");
            let l = i % 32 + 1;
            assert_close(&format!("{model} length {l}"), v, &alone[l - 1], atol);
        }
        // And the whole sequence, batched, still matches PyTorch.
        let (status, v) = &together[31];
        assert_eq!(*status, 200);
        let name = if model == "g" { "logits" } else { "last_hidden_state" };
        let got: Vec<f32> =
            v["outputs"][name]["data"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
        let (atol, rtol) = tolerances(case)[name];
        let worst = common::excess(&got, &reference[&format!("seq32.{name}")].f32, atol, rtol).0;
        assert!(worst <= 0.0, "{model}: batched seq32 {name} beyond the reference's tolerance by {worst}");
    }
    // Embeddings: texts of one request and of concurrent requests batched, each equal to
    // the embedding of its text alone.
    let texts = ["a", "the cluster serves", "one two three four five six seven eight nine ten", "x y"];
    let alone: Vec<Value> = texts
        .iter()
        .map(|t| {
            post_json(&addr, &key, "/v1/embeddings", &json!({"model": "g", "input": t})).1["data"][0]["embedding"]
                .clone()
        })
        .collect();
    let bodies: Vec<Value> = (0..16).map(|_| json!({"model": "g", "input": texts})).collect();
    for (status, v) in at_once(&addr, &key, "/v1/embeddings", &bodies) {
        assert_eq!(status, 200, "{v}");
        for (k, e) in v["data"].as_array().unwrap().iter().enumerate() {
            let (x, y) = (e["embedding"].as_array().unwrap(), alone[k].as_array().unwrap());
            assert_eq!(x.len(), y.len());
            let worst =
                x.iter().zip(y).map(|(p, q)| (p.as_f64().unwrap() - q.as_f64().unwrap()).abs()).fold(0.0, f64::max);
            assert!(worst <= 1e-4, "embedding of {:?}: batched differs from alone by {worst}", texts[k]);
        }
    }
}

#[test]
fn a_node_killed_while_batches_are_in_flight_costs_no_request() {
    let mut cluster = Cluster::start("batching-kill", 3, |_| String::new());
    let (addr, key) = (cluster.nodes[0].addr.clone(), bearer(&cluster.key));
    block_on(serve_model(&cluster.client(0), 3, "g", &fixture("gpt2_tiny"), "layer:2", 2));
    let reference = read_safetensors(&fixture("gpt2_tiny").join("reference.safetensors"));
    let ids = reference["seq32.input_ids"].i64.clone();
    let bodies: Vec<Value> =
        (1..=32).map(|l| json!({"input_ids": [ids[..l].to_vec()], "outputs": ["logits"]})).collect();
    let alone: Vec<Value> = bodies.iter().map(|b| post_json(&addr, &key, "/v1/models/g/infer", b).1).collect();
    let victim = cluster.nodes.remove(2);
    let killer = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(150));
        drop(victim);
    });
    let atol = tolerances("gpt2_tiny")["logits"].0 as f64;
    for round in 0..8 {
        let got = at_once(&addr, &key, "/v1/models/g/infer", &bodies);
        for (i, (status, v)) in got.iter().enumerate() {
            assert_eq!(*status, 200, "round {round}, length {}: {v}", i + 1);
            assert_close(&format!("round {round} length {}", i + 1), v, &alone[i], atol);
        }
    }
    killer.join().unwrap();
}

fn token_ids(v: &Value) -> Vec<u64> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect()
}

/// Continuous batching: 24 concurrent completions on a three-stage pipeline of three node
/// processes, greedy and seeded, with prompts of different lengths, different `max_tokens`
/// (sequences leave the batch at different steps) and staggered starts (they join it mid
/// way), give the tokens each gives alone: the references of `transformers` for the greedy
/// ones, the alone run for the sampled ones. Their decode steps shared forwards.
#[test]
fn concurrent_generations_share_decode_steps_and_give_the_tokens_they_give_alone() {
    let cluster = Cluster::start("batching-generate", 3, |_| String::new());
    let (addr, key) = (cluster.nodes[0].addr.clone(), bearer(&cluster.key));
    for (id, case) in [("g", "gpt2_tiny"), ("l", "llama_tiny")] {
        block_on(serve_model(&cluster.client(0), 3, id, &fixture(case), "pipeline:3", 1));
        let refs: Value =
            serde_json::from_slice(&std::fs::read(fixture(case).join("generation.json")).unwrap()).unwrap();
        let prompts = refs["prompts"].as_array().unwrap();
        let sampled = |p: &Value, seed: u64| {
            json!({"model": id, "prompt": p["input_ids"], "max_tokens": 20, "temperature": 0.9, "top_k": 40,
                   "seed": seed, "return_token_ids": true})
        };
        let alone: Vec<Vec<u64>> = prompts
            .iter()
            .enumerate()
            .map(|(i, p)| {
                token_ids(
                    &post_json(&addr, &key, "/v1/completions", &sampled(p, i as u64 + 7)).1["choices"][0]["token_ids"],
                )
            })
            .collect();
        let (before, before_single) = batch_counts(&addr, &key);
        // (body, expected tokens, start delay in ms)
        let mut jobs: Vec<(Value, Vec<u64>, u64)> = Vec::new();
        for k in 0..4u64 {
            for (i, p) in prompts.iter().enumerate() {
                let n = 8 + 4 * ((k as usize + i) % 5);
                let want: Vec<u64> = token_ids(&p["new_ids"])[..n].to_vec();
                jobs.push((
                    json!({"model": id, "prompt": p["input_ids"], "max_tokens": n, "temperature": 0, "return_token_ids": true}),
                    want,
                    k * 15,
                ));
                jobs.push((sampled(p, i as u64 + 7), alone[i].clone(), k * 15 + 5));
            }
        }
        std::thread::scope(|s| {
            let handles: Vec<_> = jobs
                .iter()
                .map(|(body, want, delay)| {
                    let (addr, key) = (&addr, &key);
                    s.spawn(move || {
                        std::thread::sleep(std::time::Duration::from_millis(*delay));
                        let (status, v) = post_json(addr, key, "/v1/completions", body);
                        assert_eq!(status, 200, "{v}");
                        assert_eq!(&token_ids(&v["choices"][0]["token_ids"]), want, "{id}: {body}");
                    })
                })
                .collect();
            for h in handles {
                h.join().unwrap();
            }
        });
        let (after, after_single) = batch_counts(&addr, &key);
        assert!(after - before > after_single - before_single, "{id}: no decode step was batched");
        // Prompts of different lengths starting at the same instant: their first prefills
        // go padded in shared forwards, each sequence keeping its own prompt's caches.
        let bodies: Vec<Value> = (0..24)
            .map(|k| {
                let p = &prompts[k % prompts.len()];
                json!({"model": id, "prompt": p["input_ids"], "max_tokens": 6 + k % 7, "temperature": 0, "return_token_ids": true})
            })
            .collect();
        for (k, (status, v)) in at_once(&addr, &key, "/v1/completions", &bodies).into_iter().enumerate() {
            assert_eq!(status, 200, "{v}");
            let p = &prompts[k % prompts.len()];
            assert_eq!(
                token_ids(&v["choices"][0]["token_ids"]),
                token_ids(&p["new_ids"])[..6 + k % 7],
                "{id}: request {k}"
            );
        }
    }
}

/// `mlmf_prefill_chunks_total` of a node.
fn prefill_chunks(addr: &str, key: &str) -> u64 {
    let (_, text) = get_text(addr, key, "/metrics");
    let line = text.lines().find(|l| l.starts_with("mlmf_prefill_chunks_total")).unwrap().to_string();
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

/// Chunked prefill: with `prefill_chunk_tokens = 5`, the prompts of 8, 11 and 23 tokens go
/// through a three-stage pipeline of three node processes in 2, 3 and 5 chunks (each
/// continuing the caches of the ones before) while other sequences decode between them; the
/// greedy tokens are `transformers`' references, and `echo`'s prompt scores (gathered
/// chunk by chunk) are those of one whole forward of the prompt.
#[test]
fn long_prompts_are_prefilled_in_chunks_between_other_sequences_decode_steps() {
    let cluster = Cluster::start("batching-chunks", 3, |_| "[batching]\nprefill_chunk_tokens = 5\n".into());
    let (addr, key) = (cluster.nodes[0].addr.clone(), bearer(&cluster.key));
    for (id, case) in [("g", "gpt2_tiny"), ("l", "llama_tiny")] {
        block_on(serve_model(&cluster.client(0), 3, id, &fixture(case), "pipeline:3", 1));
        let refs: Value =
            serde_json::from_slice(&std::fs::read(fixture(case).join("generation.json")).unwrap()).unwrap();
        let prompts = refs["prompts"].as_array().unwrap();
        let chunks: u64 = prompts.iter().map(|p| p["input_ids"].as_array().unwrap().len().div_ceil(5) as u64).sum();
        assert_eq!(chunks, 2 + 3 + 5);
        let before = prefill_chunks(&addr, &key);
        // Three rounds of the three prompts, staggered: the later prompts' chunks arrive
        // while the earlier sequences decode.
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..3u64)
                .flat_map(|round| prompts.iter().enumerate().map(move |(i, p)| (round, i, p)))
                .map(|(round, i, p)| {
                    let (addr, key) = (&addr, &key);
                    s.spawn(move || {
                        std::thread::sleep(std::time::Duration::from_millis(round * 40 + i as u64 * 10));
                        let body = json!({"model": id, "prompt": p["input_ids"], "max_tokens": 24, "temperature": 0,
                                          "return_token_ids": true});
                        let (status, v) = post_json(addr, key, "/v1/completions", &body);
                        assert_eq!(status, 200, "{v}");
                        assert_eq!(
                            token_ids(&v["choices"][0]["token_ids"]),
                            token_ids(&p["new_ids"]),
                            "{id}: prompt {i}"
                        );
                    })
                })
                .collect();
            for h in handles {
                h.join().unwrap();
            }
        });
        assert_eq!(prefill_chunks(&addr, &key) - before, 3 * chunks, "{id}: prompts were not prefilled in chunks");
        // echo: the prompt's scores, chunk by chunk, against one whole forward in-process.
        let p = &prompts[2];
        let prompt: Vec<u32> = token_ids(&p["input_ids"]).iter().map(|&t| t as u32).collect();
        let body = json!({"model": id, "prompt": prompt, "max_tokens": 3, "echo": true, "logprobs": 1, "temperature": 0,
                          "return_token_ids": true});
        let (status, answer) = post_json(&addr, &key, "/v1/completions", &body);
        assert_eq!(status, 200, "{answer}");
        let runner =
            mlmf::exec::LocalRunner::load(&fixture(case), &"none".parse().unwrap(), &mlmf::model::default_device())
                .unwrap();
        let out = runner.run(&mlmf::model::ModelInput::single(&prompt), Default::default()).unwrap();
        let logits = &out.tensors["logits"].data;
        let vocab = logits.len() / prompt.len();
        let lp = &answer["choices"][0]["logprobs"]["token_logprobs"];
        assert!(lp[0].is_null());
        for i in 1..prompt.len() {
            let row = &logits[(i - 1) * vocab..i * vocab];
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            let lse = row.iter().map(|&x| (x as f64 - max).exp()).sum::<f64>().ln() + max;
            let want = row[prompt[i] as usize] as f64 - lse;
            let got = lp[i].as_f64().unwrap();
            assert!((got - want).abs() < 1e-3, "{id}: prompt token {i}: {got} vs {want}");
        }
        assert_eq!(token_ids(&answer["choices"][0]["token_ids"]), token_ids(&p["new_ids"])[..3].to_vec(), "{id}");
    }
}
