//! The Python of the test-tools venv (`scripts/setup-test-tools.sh`): OpenAI's SDK, the
//! OpenAPI, JSON Schema and Kubernetes validators, Prometheus' parser, Triton's client.
#![allow(dead_code)]

use std::path::PathBuf;

/// The venv's python, or `None` (the test then says it is skipped) when it is not installed;
/// with `MLMF_REQUIRE_TEST_TOOLS=1` (`.ci/run`) its absence fails the test instead.
pub fn python(test: &str) -> Option<PathBuf> {
    let python = std::env::var_os("MLMF_TEST_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".cache/test-tools"))
        .join("bin/python");
    if python.is_file() {
        return Some(python);
    }
    let why = format!("the test tools are not at {} (run scripts/setup-test-tools.sh)", python.display());
    if std::env::var("MLMF_REQUIRE_TEST_TOOLS").as_deref() == Ok("1") {
        panic!("{why}, and MLMF_REQUIRE_TEST_TOOLS=1");
    }
    eprintln!("SKIPPED {test}: {why}");
    None
}

/// Runs `script` with the venv's python and `args`; its stdout, parsed as JSON.
pub fn run_json(python: &std::path::Path, script: &str, args: &[&str]) -> serde_json::Value {
    let out = std::process::Command::new(python).arg("-c").arg(script).args(args).output().unwrap();
    assert!(out.status.success(), "the script failed:\n{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}
