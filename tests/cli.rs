//! The `mlmf` binary: `run` writes outputs matching the references, bad input exits
//! non-zero with a one-line reason, `inspect` prints the plan, completions and man pages, the
//! client commands' JSON and `status --watch`.

mod common;

use std::process::Command;

use common::{excess, fixture, read_safetensors, tolerances};

fn mlmf() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mlmf"))
}

fn ids(case: &str, seq: usize) -> String {
    let r = read_safetensors(&fixture(case).join("reference.safetensors"));
    r[&format!("seq{seq}.input_ids")].i64.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",")
}

#[test]
fn generate_streams_the_references_greedy_text_in_one_process() {
    for (case, strategy) in [("gpt2_tiny", "layer:2"), ("llama_tiny", "tensor:2")] {
        let refs: serde_json::Value =
            serde_json::from_slice(&std::fs::read(fixture(case).join("generation.json")).unwrap()).unwrap();
        let p = &refs["prompts"][1];
        let out = mlmf()
            .args(["generate", "--model"])
            .arg(fixture(case))
            .args(["--prompt", p["prompt"].as_str().unwrap(), "--max-tokens", "24", "--strategy", strategy])
            .output()
            .unwrap();
        assert!(out.status.success(), "{case}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{}\n", p["new_text"].as_str().unwrap()), "{case}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("24 tokens"), "{case}");
    }
}

#[test]
fn run_writes_outputs_that_match_the_reference() {
    let tmp = tempfile::Builder::new().prefix("mlmf-cli-").tempdir().unwrap();
    for (case, strategy, outputs) in [
        ("gpt2_tiny", "pipeline:3", &["logits", "last_hidden_state"][..]),
        ("llama_tiny", "tensor:2", &["logits", "last_hidden_state"][..]),
        ("bert_tiny", "layer:3", &["last_hidden_state", "pooler_output"][..]),
    ] {
        let out = tmp.path().join(format!("{case}.safetensors"));
        let status = mlmf()
            .args(["run", "--model"])
            .arg(fixture(case))
            .args(["--input-ids", &ids(case, 32), "--strategy", strategy, "--block-outputs", "--out"])
            .arg(&out)
            .output()
            .unwrap();
        assert!(status.status.success(), "{case}: {}", String::from_utf8_lossy(&status.stderr));
        let got = read_safetensors(&out);
        let reference = read_safetensors(&fixture(case).join("reference.safetensors"));
        let tol = tolerances(case);
        let layers = if case == "bert_tiny" { 4 } else { 6 };
        assert_eq!(got.len(), outputs.len() + layers, "{case}: {:?}", got.keys());
        for (name, t) in &got {
            let r = &reference[&format!("seq32.{name}")];
            assert_eq!(t.shape, r.shape, "{case} {name}");
            let (atol, rtol) = tol[name.split('.').next().unwrap()];
            let (worst, max_abs) = excess(&t.f32, &r.f32, atol, rtol);
            assert!(worst <= 0.0, "{case} {name}: max |diff| {max_abs}");
        }
        for o in outputs {
            assert!(got.contains_key(*o), "{case}: no {o}");
        }
    }
}

fn fails_with(args: &[&str], needle: &str) {
    let out = mlmf().args(args).output().unwrap();
    assert!(!out.status.success(), "{args:?} succeeded");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(needle), "{args:?}: stderr {err:?} lacks {needle:?}");
    assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: not one line: {err:?}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn bad_input_exits_non_zero_with_one_line() {
    let gpt2 = fixture("gpt2_tiny");
    let g = gpt2.to_str().unwrap();
    fails_with(&["run", "--model", g, "--input-ids", "3,1000"], "token id 1000 is outside the vocabulary of 1000");
    let long: String = (0..257).map(|i| (i % 1000).to_string()).collect::<Vec<_>>().join(",");
    fails_with(&["run", "--model", g, "--input-ids", &long], "sequence length 257 exceeds the model's 256 positions");
    fails_with(&["run", "--model", g, "--input-ids", "1,2", "--strategy", "diagonal:2"], "bad strategy");
    fails_with(&["run", "--model", g, "--input-ids", "1,2", "--strategy", "tensor:3"], "tensor:3 does not divide");
    fails_with(&["run", "--model", g, "--input-ids", "1,2", "--strategy", "pipeline:7"], "between 1 and 6 stages");
    fails_with(&["run", "--model", g, "--input-ids", "1,2", "--token-type-ids", "0,0"], "token_type_ids are not used");
    fails_with(&["run", "--model", "/nonexistent/model", "--input-ids", "1"], "/nonexistent/model/config.json");
    fails_with(&["run", "--model", g, "--input-ids", "1,x"], "invalid value");
    let l = fixture("llama_tiny");
    fails_with(&["inspect", "--model", l.to_str().unwrap(), "--strategy", "tensor:4"], "2 key/value heads");
}

#[test]
fn inspect_prints_architecture_sizes_and_plan() {
    let out = mlmf()
        .args(["inspect", "--model"])
        .arg(fixture("llama_tiny"))
        .args(["--strategy", "pipeline:3", "--nodes", "3", "--replication", "2"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in ["architecture llama", "8 heads / 2 kv heads", "layer 5", "plan pipeline:3 : 3 stage(s)", "node-2"] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    let json = mlmf()
        .args(["inspect", "--json", "--model"])
        .arg(fixture("bert_tiny"))
        .args(["--strategy", "tensor:4"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["plan"]["shards"].as_array().unwrap().len(), 4);
    assert_eq!(v["layout"]["layers"].as_array().unwrap().len(), 4);
}

/// Shell completions and man pages come from the command line's own definition.
#[test]
fn completions_and_man_pages_are_generated_from_the_commands() {
    for shell in ["bash", "zsh", "fish"] {
        let out = mlmf().args(["completions", shell]).output().unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(out.status.success() && text.contains("generate") && text.contains("embed"), "{shell}: {text}");
    }
    let out = mlmf().arg("man").output().unwrap();
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success() && page.contains(".TH mlmf"), "{page}");
    let dir = tempfile::Builder::new().prefix("mlmf-cli-man-").tempdir().unwrap();
    assert!(mlmf().args(["man", "--out-dir"]).arg(dir.path()).status().unwrap().success());
    for page in ["mlmf.1", "mlmf-serve.1", "mlmf-generate.1", "mlmf-status.1"] {
        assert!(dir.path().join(page).is_file(), "{page}");
    }
    fails_with(&["completions", "tcsh"], "tcsh");
}

/// A node that anyone on the network could reach refuses to start without a key and TLS
/// (before it binds anything), unless told `--insecure`.
#[test]
fn a_node_on_a_public_address_needs_a_key_and_tls() {
    fails_with(&["node", "--listen", "0.0.0.0:0"], "refusing to listen on 0.0.0.0:0 without a cluster key or TLS");
    let dir = tempfile::Builder::new().prefix("mlmf-cli-insecure-").tempdir().unwrap();
    let key = dir.path().join("key");
    std::fs::write(&key, "a cluster key long enough for the test").unwrap();
    fails_with(&["node", "--listen", "0.0.0.0:0", "--cluster-key-file", key.to_str().unwrap()], "without TLS");
}

/// The client commands against a running node: `load --json` and `status --json` print the
/// API's JSON, and `status --watch` redraws its table until stopped.
#[test]
fn client_commands_print_json_and_status_watches() {
    let cluster = common::nodes::Cluster::start("cli-status", 1, |_| String::new());
    common::nodes::block_on(common::nodes::wait_members(&cluster.client(0), 1));
    let (addr, key) = (cluster.nodes[0].addr.as_str(), cluster.key.to_str().unwrap());
    let target = ["--addr", addr, "--cluster-key-file", key];
    let out = mlmf()
        .arg("load")
        .args(target)
        .args(["--id", "g", "--model"])
        .arg(fixture("gpt2_tiny"))
        .arg("--json")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((status["id"].as_str(), status["status"].as_str()), (Some("g"), Some("ready")), "{status}");
    let out = mlmf().arg("status").args(target).arg("--json").output().unwrap();
    let all: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(all["cluster"]["nodes"].as_array().unwrap().len(), 1);
    assert_eq!(all["models"][0]["id"], "g");
    let mut watch = mlmf()
        .arg("status")
        .args(target)
        .args(["--watch", "--interval-ms", "200"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let _ = watch.kill();
    let out = watch.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.matches("\x1b[2J").count() >= 3, "{text}");
    assert!(text.contains("MODEL") && text.lines().any(|l| l.starts_with("g ") && l.contains("ready")), "{text}");
}
