//! Binary tensors over HTTP, spoken from raw sockets (no client code of ours): the KServe v2
//! protocol's binary extension against a model cut across two node processes, the reference
//! inputs sent as the very bytes of the reference file and the outputs read back as bytes;
//! the same outputs as a safetensors answer of `/v1/models/{id}/infer`; metadata, probes and
//! hostile bodies. Then Triton's own Python client (`tritonclient[http]`, from
//! `scripts/setup-test-tools.sh`) against the same nodes.

mod common;

use std::io::{Read, Write};

use common::nodes::*;
use common::{excess, fixture, tolerances};
use serde_json::{Value, json};

/// An HTTP/1.1 exchange on a fresh connection: status, headers (lowercase names), body.
fn exchange(addr: &str, head: &str, body: &[u8]) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "{head}Content-Length: {}\r\nConnection: close\r\n\r\n", body.len()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a header block");
    let text = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = text.lines();
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_string()))
        .collect::<Vec<_>>();
    let mut body = raw[split + 4..].to_vec();
    if headers.iter().any(|(k, v)| k == "transfer-encoding" && v == "chunked") {
        body = dechunk(&body);
    }
    (status, headers, body)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let n = usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap().trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[eol + 2 + n + 2..];
    }
}

/// Triton's HTTP client against a node: `argv` = address, key, the ids as JSON. The ids go
/// as binary INT64, the logits come back binary.
const TRITON: &str = r#"
import json, sys
import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException
addr, key, ids = sys.argv[1], sys.argv[2], np.array([json.loads(sys.argv[3])], dtype=np.int64)
headers = {"Authorization": "Bearer " + key}
c = httpclient.InferenceServerClient(url=addr)
meta = c.get_model_metadata("g", headers=headers)
inp = httpclient.InferInput("input_ids", list(ids.shape), "INT64")
inp.set_data_from_numpy(ids, binary_data=True)
out = httpclient.InferRequestedOutput("logits", binary_data=True)
r = c.infer("g", [inp], outputs=[out], headers=headers)
logits = r.as_numpy("logits")
try:
    bad = httpclient.InferInput("pixels", [1, 1], "INT64")
    bad.set_data_from_numpy(np.array([[1]], dtype=np.int64), binary_data=True)
    c.infer("g", [bad], headers=headers)
    bad_message = "accepted"
except InferenceServerException as e:
    bad_message = str(e)
print(json.dumps({"live": c.is_server_live(), "ready": c.is_server_ready(),
                  "model_ready": c.is_model_ready("g", headers=headers),
                  "inputs": [i["name"] for i in meta["inputs"]], "shape": list(logits.shape),
                  "logits": logits.reshape(-1).tolist(), "bad": bad_message}))
"#;

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
}

#[test]
fn the_kserve_binary_protocol_round_trips_the_reference_tensors() {
    let dir = temp_dir("kserve");
    let key_path = key_file(&dir, "a cluster key for the kserve test");
    let a = spawn(None, &key_path, &[]);
    let b = spawn(Some(&a.addr), &key_path, &[]);
    let client =
        mlmf::client::ClusterClient::new(&a.addr, Some(mlmf_actors::auth::ClusterKey::from_file(&key_path).unwrap()));
    block_on(serve_model(&client, 2, "g", &fixture("gpt2_tiny"), "pipeline:2", 1));
    let key = common::http::bearer(&key_path);
    let auth = format!("Host: x\r\nAuthorization: Bearer {key}\r\n");
    let file = std::fs::read(fixture("gpt2_tiny/reference.safetensors")).unwrap();
    let reference = safetensors::SafeTensors::deserialize(&file).unwrap();
    let tol = tolerances("gpt2_tiny");
    for l in [1usize, 7, 32] {
        // The reference ids go out as the reference file's own bytes.
        let ids = reference.tensor(&format!("seq{l}.input_ids")).unwrap();
        assert_eq!(ids.dtype(), safetensors::Dtype::I64);
        let header_json = serde_json::to_vec(&json!({
            "id": format!("seq{l}"),
            "inputs": [{"name": "input_ids", "shape": ids.shape(), "datatype": "INT64",
                        "parameters": {"binary_data_size": ids.data().len()}}],
            "outputs": [{"name": "logits", "parameters": {"binary_data": true}},
                        {"name": "last_hidden_state", "parameters": {"binary_data": true}}],
        }))
        .unwrap();
        let mut body = header_json.clone();
        body.extend_from_slice(ids.data());
        let head = format!(
            "POST /v2/models/g/infer HTTP/1.1\r\n{auth}Content-Type: application/octet-stream\r\nInference-Header-Content-Length: {}\r\n",
            header_json.len()
        );
        let (status, headers, answer) = exchange(&b.addr, &head, &body);
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
        assert_eq!(header(&headers, "content-type"), Some("application/octet-stream"));
        let n: usize = header(&headers, "inference-header-content-length").unwrap().parse().unwrap();
        let meta: Value = serde_json::from_slice(&answer[..n]).unwrap();
        assert_eq!(meta["model_name"], "g");
        assert_eq!(meta["id"], format!("seq{l}"));
        let mut at = n;
        let mut binary = std::collections::BTreeMap::new();
        for o in meta["outputs"].as_array().unwrap() {
            let name = o["name"].as_str().unwrap().to_string();
            assert_eq!(o["datatype"], "FP32");
            let size = o["parameters"]["binary_data_size"].as_u64().unwrap() as usize;
            let shape: Vec<usize> =
                o["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
            assert_eq!(size, shape.iter().product::<usize>() * 4, "{name}");
            let want = reference.tensor(&format!("seq{l}.{name}")).unwrap();
            assert_eq!(shape, want.shape(), "{name}");
            let (atol, rtol) = tol[&name];
            let (worst, _) = excess(&f32s(&answer[at..at + size]), &f32s(want.data()), atol, rtol);
            assert!(worst <= 0.0, "seq{l} {name} beyond the reference's tolerance by {worst}");
            binary.insert(name, answer[at..at + size].to_vec());
            at += size;
        }
        assert_eq!(at, answer.len(), "bytes after the last output");
        assert_eq!(binary.len(), 2);

        // The same request on /v1 with Accept: application/octet-stream: a safetensors file
        // whose tensors are the very same bytes.
        let v1 = json!({"input_ids": [reference.tensor(&format!("seq{l}.input_ids")).unwrap().data()
            .chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect::<Vec<_>>()],
            "outputs": ["logits", "last_hidden_state"]})
        .to_string();
        let head = format!(
            "POST /v1/models/g/infer HTTP/1.1\r\n{auth}Content-Type: application/json\r\nAccept: application/octet-stream\r\n"
        );
        let (status, headers, st) = exchange(&a.addr, &head, v1.as_bytes());
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&st));
        assert_eq!(header(&headers, "content-type"), Some("application/octet-stream"));
        let (_, md) = safetensors::SafeTensors::read_metadata(&st).unwrap();
        let md = md.metadata().clone().unwrap();
        assert_eq!(md["model"], "g");
        assert_eq!(md["processed_by"].split(',').count(), 2, "{md:?}");
        let st = safetensors::SafeTensors::deserialize(&st).unwrap();
        for (name, bytes) in &binary {
            let t = st.tensor(name).unwrap();
            assert_eq!(t.dtype(), safetensors::Dtype::F32);
            assert_eq!(t.data(), bytes.as_slice(), "seq{l} {name}: the two binary answers differ");
        }
    }

    // JSON in and out (INT32, nested data), as a client without the binary extension sends.
    let ids: Vec<i64> = vec![811, 950, 92, 828, 382, 686, 220];
    let body = json!({"inputs": [{"name": "input_ids", "shape": [1, 7], "datatype": "INT32", "data": [ids]}],
                      "outputs": [{"name": "logits"}]})
    .to_string();
    let head = format!("POST /v2/models/g/infer HTTP/1.1\r\n{auth}Content-Type: application/json\r\n");
    let (status, headers, answer) = exchange(&a.addr, &head, body.as_bytes());
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    assert!(header(&headers, "inference-header-content-length").is_none());
    let v: Value = serde_json::from_slice(&answer).unwrap();
    let logits: Vec<f32> =
        v["outputs"][0]["data"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
    let want = f32s(reference.tensor("seq7.logits").unwrap().data());
    let (atol, rtol) = tol["logits"];
    assert!(excess(&logits, &want, atol, rtol).0 <= 0.0);

    // Metadata and probes.
    let get = |path: &str, auth: &str| {
        let (s, _, b) = exchange(&a.addr, &format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}"), b"");
        (s, serde_json::from_slice::<Value>(&b).unwrap_or(Value::Null))
    };
    let bearer = format!("Authorization: Bearer {key}\r\n");
    let (s, meta) = get("/v2/models/g", &bearer);
    assert_eq!(s, 200);
    assert_eq!(meta["inputs"][0]["name"], "input_ids");
    assert_eq!(meta["outputs"][0], json!({"name": "logits", "datatype": "FP32", "shape": [-1, -1, 1000]}));
    assert_eq!(get("/v2", &bearer).1["extensions"], json!(["binary_tensor_data"]));
    assert_eq!(get("/v2/health/live", "").0, 200);
    assert_eq!(get("/v2/health/ready", "").0, 200);
    assert_eq!(get("/v2/models/g/ready", &bearer).0, 200);
    assert_eq!(get("/v2/models/nope/ready", &bearer).0, 503);
    assert_eq!(get("/v2/models/g", "").0, 401);

    // Hostile bodies: a 4xx with a JSON error naming what is wrong, and the node still serves.
    let ids_bin: Vec<u8> = [464i64, 968].iter().flat_map(|x| x.to_le_bytes()).collect();
    let binary_input = |size: usize| json!({"inputs": [{"name": "input_ids", "shape": [1, 2], "datatype": "INT64", "parameters": {"binary_data_size": size}}]});
    let cases: Vec<(Vec<u8>, Option<String>, &str)> = vec![
        // The header length runs past the body.
        (
            {
                let mut b = serde_json::to_vec(&binary_input(16)).unwrap();
                b.extend(&ids_bin);
                b
            },
            Some("100000".into()),
            "exceeds",
        ),
        // The binary size disagrees with the shape.
        (
            {
                let mut b = serde_json::to_vec(&binary_input(12)).unwrap();
                b.extend(&ids_bin[..12]);
                b
            },
            None,
            "binary_data_size 12",
        ),
        // A header that is not JSON.
        (b"{\"inputs\": [".to_vec(), Some("12".into()), "inference header"),
        // A token id past the vocabulary.
        (
            json!({"inputs": [{"name": "input_ids", "shape": [1, 1], "datatype": "INT64", "data": [99999999]}]})
                .to_string()
                .into_bytes(),
            None,
            "",
        ),
    ];
    for (body, explicit, needle) in cases {
        let n = explicit.unwrap_or_else(|| {
            let end = body.iter().rposition(|&c| c == b'}').unwrap() + 1;
            end.to_string()
        });
        let head = format!("POST /v2/models/g/infer HTTP/1.1\r\n{auth}Inference-Header-Content-Length: {n}\r\n");
        let (status, _, answer) = exchange(&a.addr, &head, &body);
        assert!((400..500).contains(&status), "{status}: {}", String::from_utf8_lossy(&answer));
        let e: Value = serde_json::from_slice(&answer).unwrap();
        // The protocol's error shape: a string (Triton's clients print it), and mlmf's code.
        assert!(e["error"].as_str().unwrap().contains(needle), "{e}");
        assert!(e["code"].is_string(), "{e}");
    }
    assert_eq!(get("/v2/models/g/ready", &bearer).0, 200);

    // Triton's client: probes, metadata, and the reference inputs through its binary path.
    if let Some(python) =
        common::tools::python("the_kserve_binary_protocol_round_trips_the_reference_tensors (tritonclient)")
    {
        let ids = reference.tensor("seq32.input_ids").unwrap();
        let ids: Vec<i64> = ids.data().chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect();
        let got = common::tools::run_json(&python, TRITON, &[&b.addr, &key, &serde_json::to_string(&ids).unwrap()]);
        assert_eq!(got["live"], true);
        assert_eq!(got["ready"], true);
        assert_eq!(got["model_ready"], true);
        assert_eq!(got["inputs"], json!(["input_ids", "attention_mask"]));
        assert_eq!(got["shape"], json!([1, 32, 1000]));
        let logits: Vec<f32> = got["logits"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
        let (atol, rtol) = tol["logits"];
        let worst = excess(&logits, &f32s(reference.tensor("seq32.logits").unwrap().data()), atol, rtol).0;
        assert!(worst <= 0.0, "tritonclient's logits beyond the reference's tolerance by {worst}");
        assert!(got["bad"].as_str().unwrap().contains("unknown input"), "{got}");
    }
    drop((b, a));
    let _ = std::fs::remove_dir_all(&dir);
}
