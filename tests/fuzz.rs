//! Bounded property-based fuzzing of the decoders that read bytes from the network or from
//! files: peer frames (envelope and payload, every compression), decompression, every wire
//! message, checkpoint files (`config.json`, safetensors headers, the index, GGUF files with
//! their tokenizers), tokenizer
//! files, and the JSON and KServe bodies of a live node. Each target gets arbitrary bytes and
//! mutations of a valid input (bytes changed, cut, extended), and must answer with an error,
//! never a panic, a hang or an allocation the input asked for. 256 cases per target in CI
//! (`PROPTEST_CASES` raises it for the long runs recorded in `BENCHMARKS.md`).

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use mlmf::cluster::wire;
use mlmf_actors::codec::Bincode2;
use mlmf_actors::compression::Compression;
use mlmf_actors::frame::{self, Envelope, Kind, Limits};
use proptest::prelude::*;

fn cases(default: u32) -> ProptestConfig {
    let n = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    ProptestConfig { cases: n, failure_persistence: None, ..ProptestConfig::default() }
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max)
}

/// `valid` with up to 8 bytes changed, then cut at some point or extended by up to 16 bytes.
fn mutated(valid: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    (prop::collection::vec((any::<usize>(), any::<u8>()), 0..8), any::<usize>(), bytes(16), 0u8..3).prop_map(
        move |(flips, cut, tail, how)| {
            let mut v = valid.clone();
            let n = v.len().max(1);
            for (i, b) in flips {
                if let Some(x) = v.get_mut(i % n) {
                    *x = b;
                }
            }
            match how {
                0 => v.truncate(cut % (v.len() + 1)),
                1 => v.extend(tail),
                _ => {}
            }
            v
        },
    )
}

/// Arbitrary bytes, or a mutation of one of `valid`.
fn input(valid: Vec<Vec<u8>>, max: usize) -> BoxedStrategy<Vec<u8>> {
    let mut options: Vec<BoxedStrategy<Vec<u8>>> = vec![bytes(max).boxed()];
    options.extend(valid.into_iter().map(|v| mutated(v).boxed()));
    proptest::strategy::Union::new(options).boxed()
}

fn valid_frames() -> Vec<Vec<u8>> {
    let codec = Bincode2::<{ 64 << 20 }>;
    let env = Envelope { name: "Forward".into(), correlation: 7, kind: Kind::Request, deadline_ms: 500, request_id: 9 };
    let limits = Limits { compress_threshold: 8, ..Limits::default() };
    let payload: Vec<u8> = (0..300u32).flat_map(|i| (i % 7).to_le_bytes()).collect();
    [Compression::None, Compression::Lz4, Compression::Zstd, Compression::Gzip]
        .into_iter()
        .map(|c| frame::encode(&codec, &env, &payload, c, &limits).unwrap())
        .collect()
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn peer_frames(b in input(valid_frames(), 512)) {
        let limits = Limits { max_payload: 1 << 20, ..Limits::default() };
        if let Ok((_, payload)) = frame::decode(&Bincode2::<{ 64 << 20 }>, &b, &limits) {
            prop_assert!(payload.len() <= limits.max_payload);
        }
    }

    #[test]
    fn decompression(c in 0u8..4, b in input(
        [Compression::Lz4, Compression::Zstd, Compression::Gzip]
            .into_iter()
            .map(|c| c.compress(&vec![3u8; 4096]).unwrap())
            .collect(),
        512,
    )) {
        let c = Compression::from_id(c).unwrap();
        if let Ok(out) = c.decompress(&b, 1 << 16) {
            prop_assert!(out.len() <= 1 << 16);
        }
    }

    #[test]
    fn wire_messages(b in input(
        vec![
            wire::to_bytes(&wire::ClusterView::default()).unwrap(),
            wire::to_bytes(&wire::NodeStats::default()).unwrap(),
            wire::to_bytes(&wire::Fetch { path: "/m".into(), file: 0, offset: 8, len: 64 }).unwrap(),
            wire::to_bytes(&wire::DigestRequest { model: "g".into(), tensors: vec!["wte.weight".into()] }).unwrap(),
        ],
        512,
    )) {
        // Every message a peer can send, decoded from the same bytes.
        let _ = wire::from_bytes::<wire::ClusterView>(&b);
        let _ = wire::from_bytes::<wire::Join>(&b);
        let _ = wire::from_bytes::<wire::Heartbeat>(&b);
        let _ = wire::from_bytes::<wire::HeartbeatAck>(&b);
        let _ = wire::from_bytes::<wire::Leave>(&b);
        let _ = wire::from_bytes::<wire::LoadModel>(&b);
        let _ = wire::from_bytes::<wire::LoadShard>(&b);
        let _ = wire::from_bytes::<wire::UnloadShard>(&b);
        let _ = wire::from_bytes::<wire::Progress>(&b);
        let _ = wire::from_bytes::<wire::Migrate>(&b);
        let _ = wire::from_bytes::<wire::ManifestRequest>(&b);
        let _ = wire::from_bytes::<wire::Manifest>(&b);
        let _ = wire::from_bytes::<wire::Fetch>(&b);
        let _ = wire::from_bytes::<wire::DigestRequest>(&b);
        let _ = wire::from_bytes::<wire::Digests>(&b);
        let _ = wire::from_bytes::<wire::Deliver>(&b);
        let _ = wire::from_bytes::<wire::ReleaseSequence>(&b);
        let _ = wire::from_bytes::<wire::ModelStatus>(&b);
        let _ = wire::unpack::<wire::ForwardHeader>(b.clone());
        let _ = wire::unpack::<wire::PartialHeader>(b);
    }
}

/// gpt2_tiny's files, as the checkpoint targets' valid inputs.
fn tiny(name: &str) -> Vec<u8> {
    std::fs::read(common::fixture("gpt2_tiny").join(name)).unwrap()
}

fn scratch() -> PathBuf {
    let d = std::env::temp_dir().join(format!("mlmf-fuzz-{}-{}", std::process::id(), fastrand::u64(..)));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The first safetensors bytes: the 8-byte length and the header, and a little data.
fn safetensors_head() -> Vec<u8> {
    let all = tiny("model.safetensors");
    let n = 8 + u64::from_le_bytes(all[..8].try_into().unwrap()) as usize;
    all[..(n + 256).min(all.len())].to_vec()
}

/// Opens the checkpoint in `dir` the way a node does, and on success maps it and reads
/// every tensor; nothing may panic.
fn open_all(dir: &Path) {
    let Ok(ckpt) = mlmf::model::Checkpoint::open(dir) else { return };
    let _ = mlmf::model::ModelLayout::from_checkpoint(&ckpt);
    let ckpt = std::sync::Arc::new(ckpt);
    let Ok(mapped) = ckpt.map() else { return };
    for name in ckpt.tensors.keys() {
        let _ = mapped.raw(name);
    }
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn checkpoint_config(config in input(vec![tiny("config.json")], 256)) {
        let dir = scratch();
        std::fs::write(dir.join("config.json"), &config).unwrap();
        std::fs::write(dir.join("model.safetensors"), tiny("model.safetensors")).unwrap();
        open_all(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn safetensors_headers(head in input(vec![safetensors_head()], 256)) {
        let dir = scratch();
        std::fs::write(dir.join("config.json"), tiny("config.json")).unwrap();
        std::fs::write(dir.join("model.safetensors"), &head).unwrap();
        open_all(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn checkpoint_index(index in input(
        vec![br#"{"metadata": {}, "weight_map": {"wte.weight": "model.safetensors", "x": "../y"}}"#.to_vec()],
        256,
    )) {
        let dir = scratch();
        std::fs::write(dir.join("config.json"), tiny("config.json")).unwrap();
        std::fs::write(dir.join("model.safetensors"), tiny("model.safetensors")).unwrap();
        std::fs::write(dir.join("model.safetensors.index.json"), &index).unwrap();
        open_all(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// llama_tiny as llama.cpp would write it, in Q8_0: the GGUF targets' valid input.
fn tiny_gguf() -> Vec<u8> {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES
        .get_or_init(|| common::gguf::llama_to_gguf(&common::fixture("llama_tiny"), mlmf_quant::QuantType::Q8_0))
        .clone()
}

proptest! {
    // A GGUF file is opened the way a node opens it (headers, layout, the map, every
    // tensor's bytes) and its tokenizer built: nothing may panic.
    #![proptest_config(cases(64))]

    #[test]
    fn gguf_files(file in input(vec![tiny_gguf()], 256)) {
        let dir = scratch();
        let path = dir.join("model.gguf");
        std::fs::write(&path, &file).unwrap();
        open_all(&path);
        if let Ok(Some(tok)) = mlmf::generate::TextTokenizer::load(&path) {
            let _ = tok.encode("hello world");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

proptest! {
    // A tokenizer file is parsed whole (about 60 ms here): fewer cases.
    #![proptest_config(cases(48))]

    #[test]
    fn tokenizer_files(file in input(vec![tiny("tokenizer.json")], 256), config in input(vec![tiny("tokenizer_config.json")], 64)) {
        let dir = scratch();
        std::fs::write(dir.join("tokenizer.json"), &file).unwrap();
        std::fs::write(dir.join("tokenizer_config.json"), &config).unwrap();
        if let Ok(Some(tok)) = mlmf::generate::TextTokenizer::load(&dir) {
            let _ = tok.encode("hello world");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// One node on 127.0.0.1 serving gpt2_tiny, for the body targets: started once, and gone
/// with this process (`--exit-with-parent`).
fn live() -> &'static (String, String) {
    static NODE: OnceLock<(String, String)> = OnceLock::new();
    NODE.get_or_init(|| {
        let dir = common::nodes::temp_dir("fuzz");
        let key = common::nodes::key_file(&dir, "a cluster key for the fuzz targets");
        let addr = format!("127.0.0.1:{}", common::nodes::free_port());
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_mlmf"))
            .args(["node", "--exit-with-parent", "--listen", &addr, "--cluster-key-file"])
            .arg(&key)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let client =
            mlmf::client::ClusterClient::new(&addr, Some(mlmf_actors::auth::ClusterKey::from_file(&key).unwrap()));
        common::nodes::block_on(common::nodes::serve_model(&client, 1, "g", &common::fixture("gpt2_tiny"), "none", 1));
        // Not waited for: it exits when this process does.
        std::mem::forget(child);
        (addr, common::http::bearer(&key))
    })
}

/// Posts `body` raw to `path` and returns the status and whether the body is a JSON error.
fn post_raw(path: &str, content_type: &str, extra: &str, body: &[u8]) -> (u16, bool) {
    use std::io::{Read, Write};
    let (addr, key) = live();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(60))).unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\nContent-Type: {content_type}\r\n{extra}\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = s.write_all(head.as_bytes());
    let _ = s.write_all(body);
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    let status = String::from_utf8_lossy(&all).split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let at = all.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4).unwrap_or(all.len());
    let json = serde_json::from_slice::<serde_json::Value>(&all[at..]).is_ok_and(|v| !v["error"].is_null());
    (status, json)
}

/// JSON documents shaped like the routes' bodies, with values of every type in every place.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::{Value, json};
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        (-1e6f64..1e6).prop_map(|f| json!(f)),
        "[a-z \\\\\"\u{0}-\u{7f}]{0,12}".prop_map(Value::String),
        Just(json!("g")),
        Just(json!([[1, 2, 3]])),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("model".to_string()),
                    Just("input_ids".to_string()),
                    Just("prompt".to_string()),
                    Just("messages".to_string()),
                    Just("input".to_string()),
                    Just("max_tokens".to_string()),
                    Just("temperature".to_string()),
                    Just("outputs".to_string()),
                    Just("stop".to_string()),
                    Just("logprobs".to_string()),
                    Just("inputs".to_string()),
                    Just("role".to_string()),
                    Just("content".to_string()),
                    "[a-z_]{1,8}",
                ],
                inner,
                0..6,
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn http_json_bodies(route in 0usize..5, body in json_value()) {
        let path = ["/v1/models/g/infer", "/v1/completions", "/v1/chat/completions", "/v1/embeddings", "/v1/models"][route];
        let mut body = body;
        if route == 1 && body.is_object() {
            // Keep generations short where the body would start one.
            body["max_tokens"] = serde_json::json!(2);
        }
        let (status, json) = post_raw(path, "application/json", "", body.to_string().as_bytes());
        prop_assert!(status == 200 || status == 202 || ((400..500).contains(&status) && json), "{path} {body}: {status}");
    }

    #[test]
    fn kserve_bodies(header in json_value(), binary in bytes(64), claim in 0usize..200) {
        let h = header.to_string();
        let mut body = h.clone().into_bytes();
        body.extend_from_slice(&binary);
        let extra = format!("Inference-Header-Content-Length: {}\r\n", if claim < 100 { h.len() } else { claim });
        let (status, json) = post_raw("/v2/models/g/infer", "application/octet-stream", &extra, &body);
        prop_assert!(status == 200 || ((400..500).contains(&status) && json), "{h}: {status}");
    }
}
