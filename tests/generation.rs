//! Generation with a KV cache in one process, through every split, against the PyTorch
//! references of `tests/fixtures/*/generation.json` (greedy `transformers` `generate` with its
//! cache): the same ids and text, and each cached step's logits equal to that step's scores
//! within the forward tolerance.

mod common;

use mlmf::exec::LocalRunner;
use mlmf::generate::{FinishReason, GenerationParams, SamplingParams, TextTokenizer};
use serde_json::Value;

const STRATEGIES: [&str; 4] = ["none", "layer:2", "pipeline:3", "tensor:2"];

fn references(model: &str) -> (Value, std::collections::BTreeMap<String, common::RefTensor>) {
    let dir = common::fixture(model);
    let json: Value = serde_json::from_slice(&std::fs::read(dir.join("generation.json")).unwrap()).unwrap();
    (json, common::read_safetensors(&dir.join("generation.safetensors")))
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

#[test]
fn greedy_generation_matches_transformers_through_every_split() {
    let device = mlmf::model::default_device();
    for model in ["gpt2_tiny", "llama_tiny"] {
        let (refs, _) = references(model);
        let tok = TextTokenizer::require(&common::fixture(model)).unwrap();
        for strategy in STRATEGIES {
            let runner = LocalRunner::load(&common::fixture(model), &strategy.parse().unwrap(), &device).unwrap();
            for p in refs["prompts"].as_array().unwrap() {
                let prompt = tok.encode(p["prompt"].as_str().unwrap()).unwrap();
                assert_eq!(prompt, ids(&p["input_ids"]), "{model}");
                let params = GenerationParams {
                    max_tokens: refs["max_new_tokens"].as_u64().unwrap() as usize,
                    sampling: SamplingParams::greedy(),
                    ..GenerationParams::default()
                };
                let mut streamed = String::new();
                let out = runner.generate(&prompt, params, Some(&tok), |s| streamed.push_str(&s.piece)).unwrap();
                let seq = &out.sequence;
                assert_eq!(seq.generated(), &ids(&p["new_ids"])[..], "{model} {strategy}: {}", p["prompt"]);
                assert_eq!(seq.text(), p["new_text"].as_str().unwrap(), "{model} {strategy}");
                assert_eq!(streamed, seq.text(), "{model} {strategy}: streamed pieces");
                let reason = if p["stopped"] == "eos" { FinishReason::Stop } else { FinishReason::Length };
                assert_eq!(seq.finish_reason(), Some(reason));
            }
        }
    }
}

#[test]
fn each_cached_step_gives_the_references_logits_and_logprobs() {
    let device = mlmf::model::default_device();
    for model in ["gpt2_tiny", "llama_tiny"] {
        let (refs, tensors) = references(model);
        let atol = refs["score_tolerance"]["suggested_atol"].as_f64().unwrap() as f32;
        for strategy in STRATEGIES {
            let runner = LocalRunner::load(&common::fixture(model), &strategy.parse().unwrap(), &device).unwrap();
            let vocab = runner.layout.config.vocab_size;
            for (i, p) in refs["prompts"].as_array().unwrap().iter().enumerate() {
                let scores = &tensors[&format!("p{i}.scores")];
                let new = ids(&p["new_ids"]);
                let mut generation = runner.start_generation();
                let mut feed = ids(&p["input_ids"]);
                let mut worst = 0.0f32;
                for (step, &next) in new.iter().enumerate() {
                    let logits = generation.forward(&feed).unwrap();
                    let last = &logits[logits.len() - vocab..];
                    let want = &scores.f32[step * vocab..(step + 1) * vocab];
                    for (a, b) in last.iter().zip(want) {
                        worst = worst.max((a - b).abs());
                    }
                    // logprobs are the log-softmax of the same logits.
                    let lp = mlmf::generate::sampler::log_softmax(last);
                    let max = want.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
                    let lse = want.iter().map(|&x| (x as f64 - max).exp()).sum::<f64>().ln() + max;
                    assert!((lp[next as usize] as f64 - (want[next as usize] as f64 - lse)).abs() < 1e-3);
                    feed = vec![next];
                }
                assert!(worst <= atol, "{model} {strategy} prompt {i}: logits off by {worst} (atol {atol})");
                assert_eq!(generation.positions(), ids(&p["input_ids"]).len() + new.len() - 1);
                assert!(generation.cache_bytes() > 0);
            }
        }
    }
}

#[test]
fn a_prompt_that_fills_the_positions_is_refused_with_the_numbers() {
    let device = mlmf::model::default_device();
    let runner = LocalRunner::load(&common::fixture("gpt2_tiny"), &"none".parse().unwrap(), &device).unwrap();
    let max = runner.layout.config.max_positions;
    let e = runner.generate(&vec![5; max], GenerationParams::default(), None, |_| {}).unwrap_err().to_string();
    assert!(e.contains(&max.to_string()), "{e}");
    // Near the limit, the sequence stops at the last position with `length`.
    let params = GenerationParams { max_tokens: 100, sampling: SamplingParams::greedy(), ..Default::default() };
    let out = runner.generate(&vec![5; max - 3], params, None, |_| {}).unwrap();
    assert_eq!((out.sequence.generated().len(), out.sequence.finish_reason()), (3, Some(FinishReason::Length)));
}

/// An actix application that embeds nodes generates and embeds through its `RunningNode`
/// handle, with no HTTP hop to itself: two nodes in this process, on loopback sockets, the
/// model cut in two stages across them. Greedy tokens equal the references; an embedding
/// equals the one computed with no cluster at all.
#[test]
fn a_running_node_generates_and_embeds_in_this_process() {
    use futures_util::StreamExt;
    use mlmf::generate::{GenerationRequest, Pooling};
    let (refs, _) = references("gpt2_tiny");
    let dir = common::fixture("gpt2_tiny");
    common::nodes::block_on(async {
        let cfg = mlmf::config::NodeConfig { listen: "127.0.0.1:0".into(), ..Default::default() };
        let first = mlmf::server::start(cfg.clone()).await.unwrap();
        let cfg = mlmf::config::NodeConfig { join: Some(first.node.addr.clone()), ..cfg };
        let second = mlmf::server::start(cfg).await.unwrap();
        let client = mlmf::client::ClusterClient::new(&first.node.addr, None);
        common::nodes::serve_model(&client, 2, "gpt2", &dir, "layer:2", 1).await;
        for (node, p) in [&first, &second].into_iter().cycle().zip(refs["prompts"].as_array().unwrap()) {
            let mut req = GenerationRequest::new("gpt2", p["prompt"].as_str().unwrap());
            req.max_tokens = refs["max_new_tokens"].as_u64().unwrap() as usize;
            let pieces: Vec<_> = node.generate(&req).collect().await;
            let pieces: Vec<_> = pieces.into_iter().map(Result::unwrap).collect();
            let got: Vec<u32> = pieces.iter().flat_map(|x| x.token_ids.clone()).collect();
            assert_eq!(got, ids(&p["new_ids"]), "{}", p["prompt"]);
            let text: String = pieces.iter().map(|x| x.text.as_str()).collect();
            assert_eq!(text, p["new_text"].as_str().unwrap());
            let finish = if p["stopped"] == "eos" { "stop" } else { "length" };
            assert_eq!(pieces.last().unwrap().finish_reason.as_deref(), Some(finish));
        }
        // A bad request is an error on the stream, not a panic.
        let mut bad = GenerationRequest::new("gpt2", "x");
        bad.top_p = 2.0;
        let first_item = std::pin::pin!(second.generate(&bad)).next().await.unwrap();
        assert_eq!(first_item.unwrap_err().status, 400);
        // Embeddings: mean-pooled last hidden states (the folder names no pooling).
        let text = "The cluster embeds this sentence.";
        let got = second.embed("gpt2", &[text]).await.unwrap();
        let runner = LocalRunner::load(&dir, &"none".parse().unwrap(), &mlmf::model::default_device()).unwrap();
        let tok = TextTokenizer::require(&dir).unwrap();
        let want = runner.embed_text(&tok, &Pooling::load(&dir).unwrap(), text).unwrap();
        let worst = got[0].iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(got[0].len() == want.len() && worst < 1e-4, "|diff| {worst:e}");
        assert!(second.embed("nope", &[text]).await.is_err());
        second.server.stop(false).await;
        first.server.stop(false).await;
    });
}

/// Chat templates of seven model families (ChatML, Llama 2 and 3, Zephyr, Gemma, Phi-3,
/// Mistral), rendered with minijinja exactly as `transformers`' `apply_chat_template`
/// rendered them (`tests/fixtures/chat_templates.json`), byte for byte; a conversation a
/// template refuses with `raise_exception` is refused here too.
#[test]
fn chat_templates_render_as_transformers_renders_them() {
    use mlmf::generate::{ChatMessage, render_chat};
    let refs: Value = serde_json::from_slice(&std::fs::read(common::fixture("chat_templates.json")).unwrap()).unwrap();
    let conversations: Vec<Vec<ChatMessage>> = serde_json::from_value(refs["conversations"].clone()).unwrap();
    let cases = refs["cases"].as_array().unwrap();
    assert!(cases.len() >= 40);
    for c in cases {
        let name = c["template"].as_str().unwrap();
        let template = refs["templates"][name].as_str().unwrap();
        let conv = &conversations[c["conversation"].as_u64().unwrap() as usize];
        let open_turn = c["add_generation_prompt"].as_bool().unwrap();
        let got = render_chat(template, conv, "<s>", "</s>", open_turn);
        match (c.get("rendered"), got) {
            (Some(want), Ok(got)) => assert_eq!(got, want.as_str().unwrap(), "{name} {}", c["conversation"]),
            (None, Err(e)) => {
                let want = c["error"].as_str().unwrap();
                assert!(e.to_string().contains(want), "{name}: {e} should say {want:?}");
            }
            (want, got) => panic!("{name} {}: transformers {want:?}, minijinja {got:?}", c["conversation"]),
        }
    }
}

/// A user's balancer that answers an empty route (no stage, a stage of no member, an empty
/// later stage) gets its request refused with a 503, not a panic, and the node keeps serving.
#[test]
fn an_empty_route_from_a_users_balancer_is_a_503() {
    use mlmf::cluster::balancer::{NoRoute, PickRoute};
    use mlmf::cluster::wire::StageRoute;
    struct Empty(usize);
    impl actix::Actor for Empty {
        type Context = actix::Context<Self>;
    }
    impl actix::Handler<PickRoute> for Empty {
        type Result = Result<Vec<StageRoute>, NoRoute>;
        fn handle(&mut self, pick: PickRoute, _: &mut actix::Context<Self>) -> Self::Result {
            self.0 += 1;
            let me = pick.view.nodes.first().map(|n| n.info.id.clone()).unwrap_or_default();
            Ok(match self.0 % 3 {
                0 => Vec::new(),
                1 => vec![Vec::new()],
                _ => vec![vec![(0, me)], Vec::new()],
            })
        }
    }
    common::nodes::block_on(async {
        use actix::Actor;
        let cfg = mlmf::config::NodeConfig { listen: "127.0.0.1:0".into(), ..Default::default() };
        let node = mlmf::server::start_with(cfg, None, Some(Empty(0).start().recipient())).await.unwrap();
        let client = mlmf::client::ClusterClient::new(&node.node.addr, None);
        common::nodes::serve_model(&client, 1, "gpt2", &common::fixture("gpt2_tiny"), "none", 1).await;
        for _ in 0..6 {
            let e = client.infer("gpt2", &common::nodes::request(&[1, 2, 3], None)).await.unwrap_err();
            assert!(e.to_string().contains("empty"), "{e}");
        }
        assert!(client.ready().await);
        node.server.stop(false).await;
    });
}
