//! Real `mlmf node` processes on 127.0.0.1 and the receivers the fault tests need.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mlmf::api::types::{InferRequest, LoadRequest};
use mlmf::client::ClusterClient;

pub type Posts = std::sync::Arc<std::sync::Mutex<Vec<(String, serde_json::Value)>>>;
pub type Mails = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

pub struct Node {
    pub child: Child,
    pub addr: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mlmf-test-{tag}-{}-{}", std::process::id(), fastrand::u32(..)));
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub fn key_file(dir: &Path, key: &str) -> PathBuf {
    let f = dir.join(format!("key-{}", fastrand::u32(..)));
    std::fs::write(&f, key).unwrap();
    f
}

/// As [`spawn`], logging at `RUST_LOG=mlmf=debug` into the file `log`.
pub fn spawn_logged(join: Option<&str>, key: &Path, log: &Path) -> Node {
    let addr = format!("127.0.0.1:{}", free_port());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mlmf"));
    cmd.args(["node", "--listen", &addr, "--cluster-key-file"]).arg(key).env("RUST_LOG", "mlmf=debug");
    if let Some(j) = join {
        cmd.args(["--join", j]);
    }
    let file = std::fs::File::create(log).unwrap();
    let child = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(file).spawn().unwrap();
    Node { child, addr }
}

pub fn spawn(join: Option<&str>, key: &Path, extra: &[&str]) -> Node {
    let addr = format!("127.0.0.1:{}", free_port());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mlmf"));
    cmd.args(["node", "--listen", &addr, "--cluster-key-file"]).arg(key).args(extra);
    if let Some(j) = join {
        cmd.args(["--join", j]);
    }
    let stderr = debug_log(&mut cmd, &addr);
    let child = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(stderr).spawn().unwrap();
    Node { child, addr }
}

/// Where a node's stderr goes: piped (errors only), or, when `MLMF_TEST_LOGS` names a
/// directory, into `<dir>/<addr>.log` at `RUST_LOG=mlmf=debug` (for reading a failure).
pub fn debug_log(cmd: &mut Command, addr: &str) -> Stdio {
    let Some(dir) = std::env::var_os("MLMF_TEST_LOGS") else { return Stdio::piped() };
    let dir = PathBuf::from(dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{}.log", addr.replace(':', "_")));
    let file = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
    cmd.env("RUST_LOG", "mlmf=debug,openraft=info");
    Stdio::from(file)
}

pub fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    actix_web::rt::System::new().block_on(f)
}

pub async fn wait_members(client: &ClusterClient, n: usize) {
    let start = Instant::now();
    loop {
        if let Ok(c) = client.cluster().await
            && c["nodes"].as_array().is_some_and(|a| a.len() == n)
        {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "cluster of {n} did not form");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the plain-HTTP node at `addr` answers `/readyz` with 200: it has joined (a
/// node answers `/healthz` before, and the coordinator lists it as a member before its own
/// join has returned, so a control request it takes meanwhile is refused `not_joined`).
pub fn wait_http_ready(addr: &str) {
    use std::io::{Read, Write};
    let start = Instant::now();
    loop {
        let ok = std::net::TcpStream::connect(addr).ok().and_then(|mut s| {
            s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
            write!(s, "GET /readyz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
            let mut head = [0u8; 12];
            s.read_exact(&mut head).ok()?;
            Some(head.starts_with(b"HTTP/1.1 200"))
        });
        if ok == Some(true) {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{addr} did not become ready");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until every one of `clients`' nodes answers `/readyz` (has joined).
pub async fn wait_all_ready(clients: &[ClusterClient]) {
    let start = Instant::now();
    for c in clients {
        while !c.ready().await {
            assert!(start.elapsed() < Duration::from_secs(60), "a node did not become ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

pub fn request(ids: &[i64], outputs: Option<Vec<String>>) -> InferRequest {
    InferRequest {
        text: None,
        input_ids: vec![ids.to_vec()],
        attention_mask: None,
        token_type_ids: None,
        outputs,
        session_id: None,
        priority: None,
        timeout_ms: None,
    }
}

/// `node`'s exit status, waited for at most `within` (`what` is the failure message).
pub fn wait_exit(node: &mut Node, within: Duration, what: &str) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(s) = node.child.try_wait().unwrap() {
            return s;
        }
        assert!(start.elapsed() < within, "{what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub trait WaitRef {
    fn wait_with_output_ref(self) -> (std::process::ExitStatus, String);
}

impl WaitRef for Node {
    fn wait_with_output_ref(mut self) -> (std::process::ExitStatus, String) {
        use std::io::Read;
        let status = wait_exit(&mut self, Duration::from_secs(30), "the intruder did not exit");
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        (status, err)
    }
}

pub fn signal(node: &Node, sig: &str) {
    let ok = Command::new("kill").args([sig, &node.child.id().to_string()]).status().unwrap().success();
    assert!(ok, "kill {sig}");
}

pub async fn state_of(client: &ClusterClient, id: &str) -> Option<String> {
    let c = client.cluster().await.ok()?;
    c["nodes"]
        .as_array()?
        .iter()
        .find(|n| n["node"]["info"]["id"] == id)
        .and_then(|n| n["node"]["state"].as_str().map(str::to_string))
}

/// The lines of an SMTP `DATA` section, up to its closing `.`.
fn mail_data(reader: &mut impl std::io::BufRead) -> String {
    let mut body = String::new();
    loop {
        let mut l = String::new();
        if reader.read_line(&mut l).unwrap_or(0) == 0 || l == ".\r\n" {
            break;
        }
        body.push_str(&l);
    }
    body
}

pub fn smtp_sink() -> (String, Mails) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let mails = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let store = mails.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let store = store.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let _ = conn.write_all(b"220 sink ESMTP\r\n");
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap_or(0) > 0 {
                    let cmd = line.trim_end().to_ascii_uppercase();
                    if cmd.starts_with("DATA") {
                        let _ = conn.write_all(b"354 go ahead\r\n");
                        let body = mail_data(&mut reader);
                        store.lock().unwrap().push(body);
                        let _ = conn.write_all(b"250 queued\r\n");
                    } else if cmd.starts_with("QUIT") {
                        let _ = conn.write_all(b"221 bye\r\n");
                        break;
                    } else if cmd.starts_with("EHLO") {
                        let _ = conn.write_all(b"250 sink\r\n");
                    } else {
                        let _ = conn.write_all(b"250 ok\r\n");
                    }
                    line.clear();
                }
            });
        }
    });
    (addr, mails)
}

/// A mail an SMTP server with STARTTLS received: its text, whether it came over TLS, and the
/// `user:password` it authenticated with (AUTH PLAIN).
#[derive(Debug, Clone)]
pub struct TlsMail {
    pub body: String,
    pub tls: bool,
    pub auth: Option<String>,
}

/// An SMTP server on 127.0.0.1 offering STARTTLS (with the certificate of `tls`) and, once
/// the connection is encrypted, AUTH PLAIN; it keeps every mail with how it came.
pub fn smtp_tls_sink(
    tls: std::sync::Arc<rustls::ServerConfig>,
) -> (String, std::sync::Arc<std::sync::Mutex<Vec<TlsMail>>>) {
    use std::io::{BufRead, BufReader, Read, Write};
    /// One command-response exchange loop; `Some(stream)` back when the client asked for
    /// STARTTLS (the caller wraps it and calls again).
    fn session<S: Read + Write>(
        mut reader: BufReader<S>,
        tls: bool,
        auth: &mut Option<String>,
        store: &std::sync::Mutex<Vec<TlsMail>>,
    ) -> Option<S> {
        use base64::Engine;
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap_or(0) > 0 {
            let cmd = line.trim_end().to_string();
            let upper = cmd.to_ascii_uppercase();
            let reply: Vec<u8> = if upper.starts_with("EHLO") {
                if tls { b"250-sink\r\n250 AUTH PLAIN\r\n".to_vec() } else { b"250-sink\r\n250 STARTTLS\r\n".to_vec() }
            } else if upper.starts_with("STARTTLS") && !tls {
                let _ = reader.get_mut().write_all(b"220 go ahead\r\n");
                return Some(reader.into_inner());
            } else if upper.starts_with("AUTH PLAIN") && tls {
                let b64 = cmd.split_whitespace().nth(2).unwrap_or("");
                let raw = base64::engine::general_purpose::STANDARD.decode(b64).unwrap_or_default();
                let parts: Vec<String> = raw.split(|&b| b == 0).map(|p| String::from_utf8_lossy(p).into()).collect();
                *auth = Some(format!(
                    "{}:{}",
                    parts.get(1).cloned().unwrap_or_default(),
                    parts.get(2).cloned().unwrap_or_default()
                ));
                b"235 authenticated\r\n".to_vec()
            } else if upper.starts_with("AUTH") {
                b"504 not here\r\n".to_vec()
            } else if upper.starts_with("DATA") {
                let _ = reader.get_mut().write_all(b"354 go ahead\r\n");
                let body = mail_data(&mut reader);
                store.lock().unwrap().push(TlsMail { body, tls, auth: auth.clone() });
                b"250 queued\r\n".to_vec()
            } else if upper.starts_with("QUIT") {
                let _ = reader.get_mut().write_all(b"221 bye\r\n");
                return None;
            } else {
                b"250 ok\r\n".to_vec()
            };
            let _ = reader.get_mut().write_all(&reply);
            let _ = reader.get_mut().flush();
            line.clear();
        }
        None
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let mails = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let store = mails.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let (store, tls) = (store.clone(), tls.clone());
            std::thread::spawn(move || {
                let _ = conn.write_all(b"220 sink ESMTP\r\n");
                let mut auth = None;
                if let Some(plain) = session(BufReader::new(conn), false, &mut auth, &store) {
                    let Ok(server) = rustls::ServerConnection::new(tls) else { return };
                    let stream = rustls::StreamOwned::new(server, plain);
                    session(BufReader::new(stream), true, &mut auth, &store);
                }
            });
        }
    });
    (addr, mails)
}

/// An HTTP server on 127.0.0.1 that keeps every JSON body POSTed to it, by path.
pub fn http_sink() -> (String, Posts) {
    sink(|req, body| (req.path().to_string(), serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null)))
}

/// An HTTP server on 127.0.0.1 that answers every request 200 and keeps what `keep` makes
/// of it.
pub fn sink<T: Send + 'static>(
    keep: impl Fn(&actix_web::HttpRequest, actix_web::web::Bytes) -> T + Clone + Send + 'static,
) -> (String, std::sync::Arc<std::sync::Mutex<Vec<T>>>) {
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let store = got.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let server = actix_web::HttpServer::new(move || {
                let (store, keep) = (store.clone(), keep.clone());
                actix_web::App::new().default_service(actix_web::web::to(
                    move |req: actix_web::HttpRequest, body: actix_web::web::Bytes| {
                        let kept = keep(&req, body);
                        store.lock().unwrap().push(kept);
                        async { actix_web::HttpResponse::Ok().finish() }
                    },
                ))
            })
            .workers(1)
            .bind(("127.0.0.1", 0))
            .unwrap();
            tx.send(server.addrs()[0].to_string()).unwrap();
            server.run().await.unwrap();
        })
    });
    (rx.recv().unwrap(), got)
}

/// Waits for `members` nodes, loads `model` as `id` with `strategy` and `replication`, and
/// waits (60 s at most) until it is ready.
pub async fn serve_model(
    client: &ClusterClient,
    members: usize,
    id: &str,
    model: &Path,
    strategy: &str,
    replication: usize,
) -> mlmf::cluster::wire::ModelStatus {
    wait_members(client, members).await;
    client.load(&load_request(id, model, strategy, replication)).await.unwrap();
    client.wait_ready(id, Duration::from_secs(60), |_, _| {}).await.unwrap()
}

/// As [`serve_model`] with one replica, placed by load (`LoadBalanced`: the bytes a node
/// already holds over its memory) rather than by the most free memory: a test that needs
/// each stage of a small model on its own node gets it whatever each node's free memory
/// read when it joined (those readings differ by megabytes, more than a tiny stage).
pub async fn serve_model_spread(
    client: &ClusterClient,
    members: usize,
    id: &str,
    model: &Path,
    strategy: &str,
) -> mlmf::cluster::wire::ModelStatus {
    wait_members(client, members).await;
    let mut req = load_request(id, model, strategy, 1);
    req.placement = Some(mlmf::plan::PlacementRequest {
        strategy: mlmf::plan::PlacementStrategy::LoadBalanced,
        ..Default::default()
    });
    client.load(&req).await.unwrap();
    client.wait_ready(id, Duration::from_secs(60), |_, _| {}).await.unwrap()
}

/// A load request for `model` with the default placement and replication mode.
pub fn load_request(id: &str, model: &Path, strategy: &str, replication: usize) -> LoadRequest {
    LoadRequest {
        id: id.into(),
        path: model.display().to_string(),
        strategy: strategy.into(),
        replication,
        placement: None,
        replication_mode: Default::default(),
        autoscaling: None,
    }
}

/// `mlmf node` processes on 127.0.0.1 sharing one cluster key and one config file, the
/// first one coordinating. Dropping it kills them and removes its directory.
pub struct Cluster {
    pub dir: PathBuf,
    pub key: PathBuf,
    pub config: PathBuf,
    pub nodes: Vec<Node>,
}

impl Cluster {
    /// `n` nodes in a fresh directory named after `tag`; `config` writes the TOML given
    /// that directory (for an audit log inside it).
    pub fn start(tag: &str, n: usize, config: impl FnOnce(&Path) -> String) -> Cluster {
        let dir = temp_dir(tag);
        let key = key_file(&dir, &format!("a cluster key for the {tag} test"));
        let path = dir.join("node.toml");
        std::fs::write(&path, config(&dir)).unwrap();
        let mut c = Cluster { dir, key, config: path, nodes: Vec::new() };
        for _ in 0..n {
            let node = c.join();
            wait_http_ready(&node.addr);
            c.nodes.push(node);
        }
        c
    }

    /// One more node, joining the coordinator (the first node; the coordinator itself when
    /// there is none yet).
    pub fn join(&self) -> Node {
        let config = ["--config", self.config.to_str().unwrap()];
        spawn(self.nodes.first().map(|n| n.addr.as_str()), &self.key, &config)
    }

    pub fn cluster_key(&self) -> mlmf_actors::auth::ClusterKey {
        mlmf_actors::auth::ClusterKey::from_file(&self.key).unwrap()
    }

    /// A client of node `i`.
    pub fn client(&self, i: usize) -> ClusterClient {
        ClusterClient::new(&self.nodes[i].addr, Some(self.cluster_key()))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.nodes.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Waits (20 s at most) until an alert event (`rule`, `status`, `key`) has reached both the
/// webhook receiver (at `/hook`) and the SMTP sink.
pub async fn wait_alert(posts: &Posts, mails: &Mails, rule: &str, status: &str, key: &str) {
    let start = Instant::now();
    loop {
        let hooked = posts.lock().unwrap().iter().any(|(path, v)| {
            path == "/hook"
                && v["alerts"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|e| e["rule"] == rule && e["status"] == status && e["key"] == key))
        });
        // Long subjects are folded over lines.
        let subject = format!("{status} {rule} {key}");
        let mailed = mails.lock().unwrap().iter().any(|m| m.replace("\r\n", "").contains(&subject));
        if hooked && mailed {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{status} {rule} {key} not seen at both receivers: {:?}",
            posts.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
