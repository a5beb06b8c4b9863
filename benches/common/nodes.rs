//! `mlmf node` processes on 127.0.0.1 for the load benchmarks, and a blocking HTTP/1.1
//! client with no pooling (each request its own connection, as many load generators do).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A checkpoint of `tests/fixtures`.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// A port free now on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts node `id` at `addr` with cluster key `key`, joining `join`, its stderr appended to
/// `log`, with `extra` arguments.
pub fn start(id: &str, addr: &str, key: &Path, join: Option<&str>, log: &Path, extra: &[&str]) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mlmf"));
    cmd.args(["node", "--listen", addr, "--node-id", id, "--cluster-key-file"]).arg(key).args(extra);
    if let Some(j) = join {
        cmd.args(["--join", j]);
    }
    let file = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(file).spawn().unwrap()
}

/// `(status, body)` of one request, `None` when the connection failed.
pub fn http(addr: &str, key: &str, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(60))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut all = String::new();
    s.read_to_string(&mut all).ok()?;
    let status = all.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, all.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default()))
}

/// Waits (`within` at most) until `GET path` at `addr` answers 200 with a body containing
/// `needle`; whether it did.
pub fn wait_for(addr: &str, key: &str, path: &str, needle: &str, within: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < within {
        if http(addr, key, "GET", path, "").is_some_and(|(s, b)| s == 200 && b.contains(needle)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}
