//! What operators' tools read, checked by those tools on real node processes:
//! `/openapi.json` by an OpenAPI 3.1 validator (`openapi-spec-validator`), every route of
//! the server found in it, and real answers of every kind validated against its schemas
//! (`jsonschema`, Draft 2020-12); `/metrics` parsed by Prometheus' own Python client parser,
//! its names and label sets conventional and bounded. The tools come from
//! `scripts/setup-test-tools.sh`.

mod common;

use common::fixture;
use common::http::{bearer, get_text, post_json};
use common::nodes::*;
use serde_json::{Value, json};

const VALIDATE: &str = r##"
import json, sys
from openapi_spec_validator import validate
from jsonschema import Draft202012Validator
doc = json.load(open(sys.argv[1]))
validate(doc)
answers = json.load(open(sys.argv[2]))
errors = []
for name, instance in answers:
    schema = {"$ref": "#/components/schemas/" + name, "components": doc["components"]}
    for e in Draft202012Validator(schema).iter_errors(instance):
        errors.append(f"{name}: {e.message} at {list(e.absolute_path)}")
print(json.dumps({"openapi": doc["openapi"], "errors": errors,
                  "paths": {p: sorted(ops) for p, ops in doc["paths"].items()},
                  "schemes": sorted(doc["components"]["securitySchemes"])}))
"##;

/// `(METHOD, path)` of every route `src/api/routes.rs` registers, in OpenAPI's spelling.
fn registered_routes() -> Vec<(String, String)> {
    let src = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/api/routes.rs")).unwrap();
    let mut out = Vec::new();
    for part in src.split(".route(\"").skip(1) {
        let path = &part[..part.find('"').unwrap()];
        let method = part.split("web::").nth(1).and_then(|m| m.split('(').next()).unwrap();
        out.push((method.to_string(), path.to_string()));
    }
    assert!(out.len() >= 15, "{out:?}");
    out
}

fn write_temp(dir: &std::path::Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn the_openapi_document_validates_lists_every_route_and_describes_real_answers() {
    let Some(python) =
        common::tools::python("the_openapi_document_validates_lists_every_route_and_describes_real_answers")
    else {
        return;
    };
    let cluster = Cluster::start("openapi", 2, |_| String::new());
    let (addr, key) = (cluster.nodes[0].addr.clone(), bearer(&cluster.key));
    block_on(serve_model(&cluster.client(0), 2, "g", &fixture("gpt2_tiny"), "layer:2", 1));
    // The description and its page need no key.
    let (status, doc) = get_text(&addr, "", "/openapi.json");
    assert_eq!(status, 200);
    let (status, page) = get_text(&addr, "", "/docs");
    assert!(status == 200 && page.contains("/openapi.json"), "{status}");
    // Real answers of each described kind.
    let get = |path: &str| -> Value { serde_json::from_str(&get_text(&addr, &key, path).1).unwrap() };
    let post = |path: &str, body: Value| -> Value {
        let (status, v) = post_json(&addr, &key, path, &body);
        assert!(status < 500, "{path}: {v}");
        v
    };
    let mut answers = vec![
        ("ModelList", get("/v1/models")),
        ("ModelStatus", get("/v1/models/g")),
        ("ClusterOverview", get("/v1/cluster")),
        ("Health", get("/healthz")),
        ("Readiness", get("/readyz")),
        ("ErrorBody", get("/v1/models/nope")),
        ("InferResponse", post("/v1/models/g/infer", json!({"input_ids": [[464, 968, 758]]}))),
        ("ErrorBody", post("/v1/completions", json!({"model": "g", "prompt": "x", "top_p": 7}))),
        (
            "CompletionResponse",
            post(
                "/v1/completions",
                json!({"model": "g", "prompt": "The cluster", "max_tokens": 4, "logprobs": 2, "return_token_ids": true}),
            ),
        ),
        (
            "CompletionResponse",
            post(
                "/v1/completions",
                json!({"model": "g", "prompt": "The", "max_tokens": 0, "echo": true, "logprobs": 1}),
            ),
        ),
        ("EmbeddingResponse", post("/v1/embeddings", json!({"model": "g", "input": ["a", "b"]}))),
        ("EmbeddingResponse", post("/v1/embeddings", json!({"model": "g", "input": "a", "encoding_format": "base64"}))),
        (
            "V2InferResponse",
            post(
                "/v2/models/g/infer",
                json!({"id": "r1", "inputs": [{"name": "input_ids", "shape": [1, 3], "datatype": "INT64", "data": [464, 968, 758]}]}),
            ),
        ),
        (
            "V2Error",
            post(
                "/v2/models/g/infer",
                json!({"inputs": [{"name": "input_ids", "shape": [1, 3], "datatype": "FP16", "data": []}]}),
            ),
        ),
    ];
    let mut events = common::http::Events::open(
        &addr,
        &key,
        "/v1/completions",
        &json!({"model": "g", "prompt": "The cluster", "max_tokens": 3, "stream": true}),
    );
    while let Some(data) = events.next_data().filter(|d| d != "[DONE]") {
        answers.push(("CompletionResponse", serde_json::from_str(&data).unwrap()));
    }
    let dir = tempfile::Builder::new().prefix("mlmf-test-openapi-").tempdir().unwrap();
    let doc_file = write_temp(dir.path(), "openapi.json", &doc);
    let answers_file = write_temp(dir.path(), "answers.json", &serde_json::to_string(&answers).unwrap());
    let got = common::tools::run_json(&python, VALIDATE, &[&doc_file, &answers_file]);
    assert_eq!(got["openapi"], "3.1.0");
    assert_eq!(got["errors"], json!([]), "answers that do not match their schema");
    assert_eq!(got["schemes"], json!(["cluster_key"]));
    for (method, path) in registered_routes() {
        let ops = &got["paths"][&path];
        assert!(
            ops.as_array().is_some_and(|o| o.iter().any(|m| m == method.as_str())),
            "{method} {path} is served but not in /openapi.json: {}",
            got["paths"]
        );
    }
}

#[test]
fn metrics_parse_with_prometheus_parser_with_conventional_names_and_bounded_labels() {
    let Some(python) =
        common::tools::python("metrics_parse_with_prometheus_parser_with_conventional_names_and_bounded_labels")
    else {
        return;
    };
    let cluster = Cluster::start("metrics", 2, |_| String::new());
    let (addr, key) = (cluster.nodes[0].addr.clone(), bearer(&cluster.key));
    block_on(serve_model(&cluster.client(0), 2, "g", &fixture("gpt2_tiny"), "pipeline:2", 1));
    for body in [json!({"model": "g", "prompt": "The cluster", "max_tokens": 5}), json!({"model": "zz", "prompt": "x"})]
    {
        post_json(&addr, &key, "/v1/completions", &body);
    }
    post_json(&addr, &key, "/v1/models/g/infer", &json!({"input_ids": [[1, 2, 3]]}));
    post_json(&addr, &key, "/v1/models/random-name-1/infer", &json!({"input_ids": [[1, 2, 3]]}));
    let (status, text) = get_text(&addr, &key, "/metrics");
    assert_eq!(status, 200);
    let families = common::tools::parse_metrics(&python, &text);
    let families = families.as_array().unwrap();
    let names: Vec<&str> = families.iter().map(|f| f["name"].as_str().unwrap()).collect();
    // Every family once (the parser merges none: the text groups each one).
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), names.len(), "a family appears twice: {names:?}");
    for f in families {
        let (name, kind) = (f["name"].as_str().unwrap(), f["type"].as_str().unwrap());
        assert!(name.starts_with("mlmf_"), "{name}");
        assert!(!f["help"].as_str().unwrap().is_empty(), "{name} has no HELP");
        assert!(matches!(kind, "counter" | "gauge" | "histogram"), "{name}: {kind}");
        if name != "mlmf_shard_latency_ms" {
            assert!(!name.ends_with("_ms") && !name.contains("_ms_"), "{name}: use base units (seconds)");
        }
        for s in f["samples"].as_array().unwrap() {
            let sample = s[0].as_str().unwrap();
            match kind {
                "counter" => assert!(sample.ends_with("_total") || sample.ends_with("_created"), "{sample}"),
                "histogram" => {
                    assert!(["_bucket", "_sum", "_count", "_created"].iter().any(|x| sample.ends_with(x)), "{sample}")
                }
                _ => {}
            }
            // Labels name only what the cluster itself has: never a client's model name.
            if let Some(m) = s[1]["model"].as_str() {
                assert!(m == "g" || m == "(unknown)", "{sample} has model label {m:?}");
            }
        }
    }
    for want in [
        "mlmf_requests",
        "mlmf_request_duration_seconds",
        "mlmf_time_to_first_token_seconds",
        "mlmf_time_per_output_token_seconds",
        "mlmf_generated_tokens",
        "mlmf_kv_cache_bytes",
        "mlmf_shard_queued",
        "mlmf_http_in_flight",
        "mlmf_shard_latency_seconds",
    ] {
        assert!(names.contains(&want), "no {want} in {names:?}");
    }
    // Every series the Grafana dashboard in deploy/ queries is one this node exports.
    let samples: std::collections::BTreeSet<&str> =
        families.iter().flat_map(|f| f["samples"].as_array().unwrap()).map(|s| s[0].as_str().unwrap()).collect();
    let dashboard: Value = serde_json::from_slice(
        &std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/grafana/mlmf-dashboard.json")).unwrap(),
    )
    .unwrap();
    let mut queried = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().unwrap() {
            let expr = t["expr"].as_str().unwrap();
            for word in expr.split(|c: char| !(c.is_alphanumeric() || c == '_')).filter(|w| w.starts_with("mlmf_")) {
                assert!(samples.contains(word), "the Grafana dashboard queries {word}, which the node does not export");
                queried += 1;
            }
        }
    }
    assert!(queried >= 12, "{queried}");
    let ttft = families.iter().find(|f| f["name"] == "mlmf_time_to_first_token_seconds").unwrap();
    let count = ttft["samples"].as_array().unwrap().iter().find(|s| s[0] == "mlmf_time_to_first_token_seconds_count");
    assert_eq!(count.map(|s| s[2].as_f64().unwrap()), Some(1.0), "one sequence generated");
}

/// `deploy/`: the Kubernetes manifests pass `kubernetes-validate --strict` (the Kubernetes
/// 1.37 schemas, offline), the node TOML in their ConfigMap is one `mlmf node` accepts, and
/// the entrypoint is valid shell. (The Grafana dashboard is checked against live series in
/// the metrics test.)
#[test]
fn the_deployment_files_validate() {
    let Some(python) = common::tools::python("the_deployment_files_validate") else {
        return;
    };
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifests = root.join("deploy/k8s/mlmf.yaml");
    let validate = python.with_file_name("kubernetes-validate");
    let out = std::process::Command::new(&validate).arg("--strict").arg(&manifests).output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "kubernetes-validate:\n{said}");
    for kind in ["configmap/", "service/mlmf", "statefulset/mlmf", "poddisruptionbudget/mlmf"] {
        assert!(said.contains(kind), "{kind} not validated:\n{said}");
    }
    // The HorizontalPodAutoscaler recipe on mlmf's own queue metric, and its adapter rule on a
    // series a node really exports.
    let hpa = root.join("deploy/k8s/autoscaling.yaml");
    let out = std::process::Command::new(&validate).arg("--strict").arg(&hpa).output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "kubernetes-validate:\n{said}");
    for kind in ["horizontalpodautoscaler/mlmf", "configmap/mlmf-prometheus-adapter"] {
        assert!(said.contains(kind), "{kind} not validated:\n{said}");
    }
    let recipe = std::fs::read_to_string(&hpa).unwrap();
    let metrics_rs = std::fs::read_to_string(root.join("src/api/metrics.rs")).unwrap();
    assert!(recipe.contains("name: mlmf_http_in_flight") && metrics_rs.contains("\"mlmf_http_in_flight\""));
    // The ConfigMap's node.toml, as the node reads it.
    let yaml = std::fs::read_to_string(&manifests).unwrap();
    let block = yaml.split("node.toml: |\n").nth(1).unwrap().split("\n---").next().unwrap();
    let toml: String = block.lines().map(|l| l.strip_prefix("    ").unwrap_or(l)).collect::<Vec<_>>().join("\n");
    let dir = tempfile::Builder::new().prefix("mlmf-test-deploy-").tempdir().unwrap();
    let file = dir.path().join("node.toml");
    std::fs::write(&file, toml).unwrap();
    mlmf::config::NodeConfig::from_file(&file).unwrap_or_else(|e| panic!("the ConfigMap's node.toml: {e}"));
    let sh = std::process::Command::new("sh").arg("-n").arg(root.join("deploy/entrypoint.sh")).status().unwrap();
    assert!(sh.success(), "deploy/entrypoint.sh is not valid shell");
}

/// A client's W3C `traceparent` joins its request to the client's trace: the stages of a
/// three-stage pipeline on three node processes log their spans under that trace id, the
/// answer names it, and a request without one gets a fresh trace of its own.
#[test]
fn a_trace_id_from_traceparent_reaches_every_stage_on_every_node() {
    let dir = tempfile::Builder::new().prefix("mlmf-test-trace-").tempdir().unwrap();
    let key = common::nodes::key_file(dir.path(), "a cluster key for the tracing test");
    let logs: Vec<std::path::PathBuf> = (0..3).map(|i| dir.path().join(format!("node{i}.log"))).collect();
    let first = spawn_logged(None, &key, &logs[0]);
    let others: Vec<Node> = logs[1..].iter().map(|l| spawn_logged(Some(&first.addr), &key, l)).collect();
    let client =
        mlmf::client::ClusterClient::new(&first.addr, Some(mlmf_actors::auth::ClusterKey::from_file(&key).unwrap()));
    block_on(serve_model_spread(&client, 3, "g", &fixture("gpt2_tiny"), "pipeline:3"));
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let body = json!({"input_ids": [[464, 968, 758]]}).to_string();
    let request = |traceparent: Option<&str>| -> String {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&first.addr).unwrap();
        let extra = traceparent.map(|t| format!("traceparent: {t}\r\n")).unwrap_or_default();
        write!(
            s,
            "POST /v1/models/g/infer HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            bearer(&key),
            body.len()
        )
        .unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        answer
    };
    let answer = request(Some(&format!("00-{trace}-00f067aa0ba902b7-01")));
    assert!(answer.to_lowercase().contains(&format!("traceparent: 00-{trace}-")), "{answer}");
    let fresh = request(None);
    let fresh_trace = fresh.to_lowercase().split("traceparent: 00-").nth(1).map(|t| t[..32].to_string()).unwrap();
    assert_ne!(fresh_trace, trace);
    // Each node ran one stage of the traced request, under its trace id.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    for log in &logs {
        loop {
            let text = std::fs::read_to_string(log).unwrap();
            if text.lines().any(|l| l.contains(&format!("trace_id={trace}")) && l.contains("stage ran")) {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{} has no stage of trace {trace}:\n{text}", log.display());
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    drop((others, first));
}

/// An OTLP/HTTP collector on 127.0.0.1: keeps every `/v1/traces` body, decoded by the
/// OpenTelemetry protocol's own protobuf types.
fn otlp_collector() -> (String, std::sync::Arc<std::sync::Mutex<Vec<ExportTraceServiceRequest>>>) {
    common::nodes::sink(|req, body| {
        use prost::Message;
        assert_eq!(req.path(), "/v1/traces");
        let ct = req.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
        assert_eq!(ct, "application/x-protobuf");
        ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf body")
    })
}

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

/// One exported span: its resource's `service.instance.id`, name, ids and parent.
#[derive(Debug, Clone)]
struct Exported {
    node: String,
    service: String,
    name: String,
    trace: String,
    span: String,
    parent: String,
}

fn exported(requests: &[ExportTraceServiceRequest]) -> Vec<Exported> {
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let mut out = Vec::new();
    for r in requests {
        for rs in &r.resource_spans {
            let attr = |k: &str| {
                rs.resource.iter().flat_map(|r| &r.attributes).find(|a| a.key == k).and_then(|a| a.value.clone()).map(
                    |v| match v.value {
                        Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s)) => s,
                        other => format!("{other:?}"),
                    },
                )
            };
            let (node, service) =
                (attr("service.instance.id").unwrap_or_default(), attr("service.name").unwrap_or_default());
            for s in rs.scope_spans.iter().flat_map(|s| &s.spans) {
                out.push(Exported {
                    node: node.clone(),
                    service: service.clone(),
                    name: s.name.clone(),
                    trace: hex(&s.trace_id),
                    span: hex(&s.span_id),
                    parent: hex(&s.parent_span_id),
                });
            }
        }
    }
    out
}

/// With `[telemetry] otlp_endpoint` set, every node exports its spans to an OTLP collector:
/// one request through a three-stage pipeline on three node processes is one trace there,
/// its request span a child of the client's `traceparent` span and each stage's span a child
/// of the span that sent it, each named by the node that ran it. A streamed completion (many
/// steps) is one trace too.
#[test]
fn spans_of_one_request_on_three_nodes_reach_an_otlp_collector_as_one_trace() {
    let (collector, got) = otlp_collector();
    let cluster = Cluster::start("otlp", 3, |_| format!("[telemetry]\notlp_endpoint = \"http://{collector}\"\n"));
    let client = cluster.client(0);
    block_on(serve_model_spread(&client, 3, "g", &fixture("gpt2_tiny"), "pipeline:3"));
    let key = common::http::bearer(&cluster.key);
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let caller = "b7ad6b7169203331";
    let raw = |path: &str, body: &str, traceparent: Option<&str>| -> String {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&cluster.nodes[0].addr).unwrap();
        let extra = traceparent.map(|t| format!("traceparent: {t}\r\n")).unwrap_or_default();
        write!(s, "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        answer
    };
    let answer_trace = |answer: &str| -> (String, String) {
        let tp = answer.to_lowercase().split("traceparent: 00-").nth(1).map(|t| t[..49].to_string()).unwrap();
        (tp[..32].to_string(), tp[33..49].to_string())
    };
    let infer = raw(
        "/v1/models/g/infer",
        &json!({"input_ids": [[464, 968, 758]]}).to_string(),
        Some(&format!("00-{trace}-{caller}-01")),
    );
    let (infer_trace, request_span) = answer_trace(&infer);
    assert_eq!(infer_trace, trace);
    let completion = raw(
        "/v1/completions",
        &json!({"model": "g", "prompt": [464, 968, 758], "max_tokens": 3, "stream": true}).to_string(),
        None,
    );
    let (completion_trace, _) = answer_trace(&completion);
    let nodes: std::collections::BTreeSet<String> = cluster.nodes.iter().map(|n| n.addr.clone()).collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(40);
    loop {
        let spans = exported(&got.lock().unwrap());
        let of = |t: &str| spans.iter().filter(|s| s.trace == t).cloned().collect::<Vec<_>>();
        let stage_nodes = |t: &str| {
            of(t)
                .iter()
                .filter(|s| s.name == "stage")
                .map(|s| s.node.clone())
                .collect::<std::collections::BTreeSet<_>>()
        };
        if stage_nodes(trace) == nodes && stage_nodes(&completion_trace) == nodes {
            let traced = of(trace);
            let request = traced.iter().find(|s| s.name == "request").expect("the request's span");
            assert_eq!(request.parent, caller, "the request span continues the client's span");
            assert_eq!(request.span, request_span, "the answer's traceparent names the request span");
            assert_eq!(request.node, cluster.nodes[0].addr);
            let ids: std::collections::BTreeSet<&str> = traced.iter().map(|s| s.span.as_str()).collect();
            for s in traced.iter().filter(|s| s.name == "stage") {
                assert!(
                    ids.contains(s.parent.as_str()),
                    "stage span {s:?} has a parent outside the trace: {traced:#?}"
                );
                assert_eq!(s.service, "mlmf");
            }
            // The stages form a chain: each one's parent is the stage before it (or the
            // request's own spans on the first node).
            assert_eq!(traced.iter().filter(|s| s.name == "stage").count(), 3, "{traced:#?}");
            let completion_spans = of(&completion_trace);
            assert!(completion_spans.iter().filter(|s| s.name == "stage").count() >= 9, "{completion_spans:#?}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the collector has no whole trace; it has {} spans: {spans:#?}",
            spans.len()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}
