//! A node that cannot read a model pulls its bytes from a peer and checks every part
//! against the SHA-256 the coordinator recorded from its own read, never against the
//! sender's own figures. The test gives one peer a different checkpoint at the same path (a
//! mount namespace of its own, with a corrupted copy bind-mounted over the model directory):
//! the puller, which asks that peer first, refuses its bytes, takes them from the coordinator
//! instead, and serves the reference's logits. Needs root for the mount namespace; skipped
//! with a message otherwise (failed with `MLMF_REQUIRE_TEST_TOOLS=1`).

mod common;

use std::os::unix::fs::FileExt;
use std::process::{Command, Stdio};

use common::nodes::*;
use common::{fixture, read_safetensors, tolerances};
use mlmf::client::ClusterClient;
use mlmf::exec::{HostTensor, RunOutputs};
use mlmf_actors::auth::ClusterKey;

fn mount_namespaces() -> bool {
    Command::new("unshare").args(["-m", "true"]).status().is_ok_and(|s| s.success())
}

/// `mlmf node` with `args`, logging into `log`; with `bind = Some((over, from))`, inside a
/// mount namespace of its own where `from` is bind-mounted over `over`.
fn node(args: &[&str], log: &std::path::Path, bind: Option<(&std::path::Path, &std::path::Path)>) -> Node {
    let addr = format!("127.0.0.1:{}", free_port());
    let bin = env!("CARGO_BIN_EXE_mlmf");
    let mut cmd = match bind {
        None => Command::new(bin),
        Some((over, from)) => {
            let mut c = Command::new("unshare");
            c.args(["-m", "sh", "-c", r#"mount --bind "$0" "$1" && shift && exec "$@""#]).arg(from).arg(over).arg(bin);
            c
        }
    };
    cmd.args(["node", "--listen", &addr]).args(args).env("RUST_LOG", "mlmf=info");
    let file = std::fs::File::create(log).unwrap();
    let child = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(file).spawn().unwrap();
    Node { child, addr }
}

#[test]
fn pulled_weights_are_checked_against_the_coordinators_record_not_the_senders() {
    if !mount_namespaces() {
        let why = "cannot create a mount namespace (unshare -m needs root)";
        assert!(std::env::var("MLMF_REQUIRE_TEST_TOOLS").as_deref() != Ok("1"), "{why}, and MLMF_REQUIRE_TEST_TOOLS=1");
        eprintln!("SKIPPED pulled_weights_are_checked_against_the_coordinators_record_not_the_senders: {why}");
        return;
    }
    let dir = temp_dir("weight-pull");
    let key = key_file(&dir, "a cluster key for the weight pull test");
    // The model, and a copy whose weights differ in 4 KiB of one file's data.
    let (model, corrupt, empty) = (dir.join("model"), dir.join("corrupt"), dir.join("no-models-here"));
    for d in [&model, &corrupt, &empty] {
        std::fs::create_dir_all(d).unwrap();
    }
    for entry in std::fs::read_dir(fixture("gpt2_tiny")).unwrap() {
        let p = entry.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, model.join(p.file_name().unwrap())).unwrap();
            std::fs::copy(&p, corrupt.join(p.file_name().unwrap())).unwrap();
        }
    }
    let weights = std::fs::OpenOptions::new().write(true).open(corrupt.join("model.safetensors")).unwrap();
    let len = weights.metadata().unwrap().len();
    weights.write_all_at(&[0x3c; 4096], len / 2).unwrap();
    drop(weights);

    let keyf = key.to_str().unwrap();
    let logs = [dir.join("coordinator.log"), dir.join("corrupt.log"), dir.join("puller.log")];
    let coordinator = node(&["--cluster-key-file", keyf, "--node-id", "c-coordinator"], &logs[0], None);
    let join = coordinator.addr.clone();
    // Member ids sort "a-corrupt" before "c-coordinator": the puller asks the corrupt peer first.
    let corrupt_node = node(
        &["--cluster-key-file", keyf, "--node-id", "a-corrupt", "--join", &join],
        &logs[1],
        Some((&model, &corrupt)),
    );
    let puller = node(
        &[
            "--cluster-key-file",
            keyf,
            "--node-id",
            "b-puller",
            "--join",
            &join,
            "--model-root",
            empty.to_str().unwrap(),
        ],
        &logs[2],
        None,
    );
    let client = ClusterClient::new(&coordinator.addr, Some(ClusterKey::from_file(&key).unwrap()));
    let status = block_on(serve_model(&client, 3, "g", &model, "none", 3));
    let pulled: Vec<&str> = status.progress.iter().filter(|p| p.pulled).map(|p| p.node.as_str()).collect();
    assert_eq!(pulled, ["b-puller"], "{:?}", status.progress);

    let log = std::fs::read_to_string(&logs[2]).unwrap();
    assert!(
        log.contains("does not match the SHA-256 the coordinator recorded"),
        "the puller took the corrupt peer's bytes without noticing:\n{log}"
    );
    // The puller's replica answers what the reference says (its bytes came from the
    // coordinator); requests through it land on its own replica first or on another.
    let reference = read_safetensors(&fixture("gpt2_tiny").join("reference.safetensors"));
    let tol = tolerances("gpt2_tiny");
    let ids = &reference["seq7.input_ids"].i64;
    let at_puller = ClusterClient::new(&puller.addr, Some(ClusterKey::from_file(&key).unwrap()));
    let mut served_by_puller = 0;
    for i in 0..40 {
        let mut req = request(ids, Some(vec!["logits".into()]));
        req.session_id = Some(format!("s{i}"));
        let r = block_on(at_puller.infer("g", &req)).unwrap();
        if !r.processed_by.iter().any(|n| n == "b-puller") {
            continue;
        }
        served_by_puller += 1;
        let out = RunOutputs {
            tensors: r.outputs.into_iter().map(|(k, t)| (k, HostTensor { shape: t.shape, data: t.data })).collect(),
        };
        let failures = common::compare(&out, &reference, "seq7.", &tol, "the puller's replica");
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }
    assert!(served_by_puller > 0, "no request reached the puller's replica");
    drop((puller, corrupt_node, coordinator));
    let _ = std::fs::remove_dir_all(&dir);
}
