//! OpenAI's official Python SDK (`openai`, pinned in `scripts/setup-test-tools.sh`) pointed at
//! three real `mlmf node` processes, as a user's tools would be: it lists the models, gets a
//! completion whole and streamed (the reference text of `transformers`' greedy `generate`),
//! streams a chat completion through a model's chat template, embeds texts (the SDK asks for
//! base64 by default) and sees a 404 as its `NotFoundError`.
//!
//! The SDK is installed by `scripts/test.sh` when pip can reach PyPI. Without it the test
//! says it is skipped and why, unless `MLMF_REQUIRE_TEST_TOOLS=1` (`.ci/run`), when its
//! absence fails it.

mod common;

use common::fixture;
use common::nodes::*;
use serde_json::{Value, json};

const SCRIPT: &str = r#"
import json, sys
import openai
addr, key, prompt = sys.argv[1], sys.argv[2], sys.argv[3]
c = openai.OpenAI(base_url=f"http://{addr}/v1", api_key=key, max_retries=0, timeout=60)
out = {"version": openai.__version__}
out["models"] = sorted(m.id for m in c.models.list())
r = c.completions.create(model="g", prompt=prompt, max_tokens=24, temperature=0)
out["text"], out["finish"] = r.choices[0].text, r.choices[0].finish_reason
out["usage"] = [r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens]
pieces, finish = [], None
for chunk in c.completions.create(model="g", prompt=prompt, max_tokens=24, temperature=0, stream=True):
    pieces.append(chunk.choices[0].text)
    finish = chunk.choices[0].finish_reason or finish
out["pieces"], out["stream_finish"] = pieces, finish
deltas = []
stream = c.chat.completions.create(model="chat", messages=[{"role": "user", "content": "When a node fails?"}],
                                   max_tokens=12, temperature=0, stream=True)
for chunk in stream:
    if chunk.choices and chunk.choices[0].delta.content:
        deltas.append(chunk.choices[0].delta.content)
out["chat"] = "".join(deltas)
e = c.embeddings.create(model="g", input=["The cluster", "embeds text"])
out["embeddings"] = [d.embedding for d in e.data]
out["embeddings_float"] = [d.embedding for d in c.embeddings.create(model="g", input="The cluster", encoding_format="float").data]
try:
    c.completions.create(model="no-such-model", prompt="x", max_tokens=1)
except openai.NotFoundError as err:
    out["not_found"] = err.status_code
print(json.dumps(out))
"#;

#[test]
fn the_openai_python_sdk_completes_streams_chats_and_embeds() {
    let Some(python) = common::tools::python("the_openai_python_sdk_completes_streams_chats_and_embeds") else {
        return;
    };
    // gpt2_tiny, and a copy of it with a ChatML template.
    let chat_dir = tempfile::Builder::new().prefix("mlmf-test-openai-chat-").tempdir().unwrap();
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(fixture("gpt2_tiny").join(f), chat_dir.path().join(f)).unwrap();
    }
    let template = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
    let config = json!({"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "chat_template": template});
    std::fs::write(chat_dir.path().join("tokenizer_config.json"), config.to_string()).unwrap();
    let cluster = Cluster::start("openai-sdk", 3, |_| String::new());
    block_on(async {
        let client = cluster.client(0);
        serve_model(&client, 3, "g", &fixture("gpt2_tiny"), "pipeline:3", 1).await;
        client.load(&load_request("chat", chat_dir.path(), "layer:2", 1)).await.unwrap();
        client.wait_ready("chat", std::time::Duration::from_secs(60), |_, _| {}).await.unwrap();
    });
    let refs: Value =
        serde_json::from_slice(&std::fs::read(fixture("gpt2_tiny").join("generation.json")).unwrap()).unwrap();
    let p = &refs["prompts"][0];
    let key = std::fs::read_to_string(&cluster.key).unwrap();
    let got =
        common::tools::run_json(&python, SCRIPT, &[&cluster.nodes[1].addr, key.trim(), p["prompt"].as_str().unwrap()]);
    assert_eq!(got["models"], json!(["chat", "g"]));
    let want = p["new_text"].as_str().unwrap();
    assert_eq!(got["text"], want);
    let streamed: String = got["pieces"].as_array().unwrap().iter().map(|x| x.as_str().unwrap()).collect();
    assert_eq!(streamed, want, "the streamed pieces concatenate to the reference text");
    let finish = if p["stopped"] == "eos" { "stop" } else { "length" };
    assert_eq!((got["finish"].as_str(), got["stream_finish"].as_str()), (Some(finish), Some(finish)));
    let prompt_len = p["input_ids"].as_array().unwrap().len() as u64;
    let completion_len = p["new_ids"].as_array().unwrap().len() as u64;
    assert_eq!(got["usage"], json!([prompt_len, completion_len, prompt_len + completion_len]));
    // The chat stream: what a one-process greedy run of the rendered prompt continues with.
    let rendered = "<|im_start|>user\nWhen a node fails?<|im_end|>\n<|im_start|>assistant\n";
    let tok = mlmf::generate::TextTokenizer::require(chat_dir.path()).unwrap();
    let runner =
        mlmf::exec::LocalRunner::load(chat_dir.path(), &"none".parse().unwrap(), &mlmf::model::default_device())
            .unwrap();
    let params = mlmf::generate::GenerationParams {
        max_tokens: 12,
        sampling: mlmf::generate::SamplingParams::greedy(),
        ..Default::default()
    };
    let chat = runner.generate(&tok.encode_plain(rendered).unwrap(), params, Some(&tok), |_| {}).unwrap();
    assert_eq!(got["chat"], chat.sequence.text());
    // Embeddings: the SDK decoded our base64 into the floats we send as JSON numbers.
    let (status, ours) = common::http::post_json(
        &cluster.nodes[0].addr,
        &common::http::bearer(&cluster.key),
        "/v1/embeddings",
        &json!({"model": "g", "input": ["The cluster", "embeds text"]}),
    );
    assert_eq!(status, 200, "{ours}");
    for i in 0..2 {
        let sdk: Vec<f32> = serde_json::from_value(got["embeddings"][i].clone()).unwrap();
        let json: Vec<f32> = serde_json::from_value(ours["data"][i]["embedding"].clone()).unwrap();
        assert_eq!(sdk, json, "embedding {i}");
    }
    assert_eq!(got["embeddings_float"][0], got["embeddings"][0]);
    assert_eq!(got["not_found"], 404);
}

const SERVE_SCRIPT: &str = r#"
import json, sys
import httpx2, openai
addr, key, ca, prompt = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
c = openai.OpenAI(base_url=f"https://{addr}/v1", api_key=key, max_retries=0, timeout=60,
                  http_client=httpx2.Client(verify=ca))
pieces = [ch.choices[0].text for ch in c.completions.create(model="default", prompt=prompt, max_tokens=24,
                                                              temperature=0, stream=True)]
print(json.dumps({"pieces": pieces}))
"#;

/// The same SDK pointed at `mlmf serve`, over its TLS with the CA it prints, as the README
/// says: the streamed completion is the reference text.
#[test]
fn the_openai_python_sdk_streams_from_mlmf_serve_over_tls() {
    use std::io::BufRead;
    let Some(python) = common::tools::python("the_openai_python_sdk_streams_from_mlmf_serve_over_tls") else {
        return;
    };
    let mut serve = std::process::Command::new(env!("CARGO_BIN_EXE_mlmf"))
        .args(["serve", "--model", fixture("gpt2_tiny").to_str().unwrap(), "--nodes", "2"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(serve.stdout.take().unwrap());
    let (mut addr, mut key, mut ca) = (String::new(), String::new(), String::new());
    let mut seen = String::new();
    while ca.is_empty() || addr.is_empty() {
        let mut line = String::new();
        assert!(stdout.read_line(&mut line).unwrap() > 0, "serve ended early:\n{seen}");
        seen.push_str(&line);
        if let Some(rest) = line.split(" at https://").nth(1) {
            addr = rest.trim().to_string();
        }
        if let Some(rest) = line.strip_prefix("cluster key: ") {
            let mut words = rest.split_whitespace();
            key = std::fs::read_to_string(words.next().unwrap()).unwrap().trim().to_string();
            ca = words.nth(1).unwrap().to_string();
        }
    }
    let refs: Value =
        serde_json::from_slice(&std::fs::read(fixture("gpt2_tiny").join("generation.json")).unwrap()).unwrap();
    let p = &refs["prompts"][0];
    let got = common::tools::run_json(&python, SERVE_SCRIPT, &[&addr, &key, &ca, p["prompt"].as_str().unwrap()]);
    let text: String = got["pieces"].as_array().unwrap().iter().map(|x| x.as_str().unwrap()).collect();
    assert_eq!(text, p["new_text"].as_str().unwrap());
    let _ = std::process::Command::new("kill").args(["-INT", &serve.id().to_string()]).status();
    assert!(serve.wait().unwrap().success());
}
