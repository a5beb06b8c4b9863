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

/// Prometheus' own parser (`prometheus_client`) run over `text`: its families as JSON, each
/// `{name, type, help, samples: [[name, labels, value]]}`.
pub fn parse_metrics(python: &std::path::Path, text: &str) -> serde_json::Value {
    const PARSE: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
families = []
for f in text_string_to_metric_families(open(sys.argv[1]).read()):
    families.append({"name": f.name, "type": f.type, "help": f.documentation,
                     "samples": [[s.name, s.labels, s.value] for s in f.samples]})
print(json.dumps(families))
"#;
    let dir = tempfile::Builder::new().prefix("mlmf-test-metrics-").tempdir().unwrap();
    let file = dir.path().join("metrics.txt");
    std::fs::write(&file, text).unwrap();
    run_json(python, PARSE, &[file.to_str().unwrap()])
}
