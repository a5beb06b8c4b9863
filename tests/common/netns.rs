//! A network of our own for partition tests: one network namespace per node, each with a
//! veth into a bridge that lives in a namespace of its own, addresses `10.201.0.x` that exist
//! only inside them, all created by the test and deleted when the [`Lab`] drops. A link is
//! cut by setting the node's veth down inside its namespace: the node keeps running and
//! answers on its own address, and the test reaches it from a thread that entered that
//! namespace ([`Lab::run_in`]). Needs root and iproute2; [`Lab::new`] says why it cannot
//! and returns `None` (CI, which sets `MLMF_REQUIRE_TEST_TOOLS=1`, fails instead).
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use super::nodes::Node;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A bridge and one namespace per node.
pub struct Lab {
    prefix: String,
    n: usize,
    /// The nodes started in it, by index.
    pub nodes: Vec<Option<Node>>,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).stdin(Stdio::null()).output().map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

impl Lab {
    /// A lab of `n` namespaces, or `None` (with the reason printed) where namespaces cannot
    /// be made here.
    pub fn new(n: usize) -> Option<Lab> {
        // Short names: interface names have 15 characters at most.
        let prefix = format!("m{}x{}", std::process::id() % 100_000, NEXT.fetch_add(1, Ordering::Relaxed));
        let mut lab = Lab { prefix, n, nodes: (0..n).map(|_| None).collect() };
        match lab.build() {
            Ok(()) => Some(lab),
            Err(e) => {
                let why = format!("network namespaces unavailable ({e}); run as root with iproute2 to test partitions");
                assert!(std::env::var_os("MLMF_REQUIRE_TEST_TOOLS").is_none(), "{why}");
                eprintln!("skipped: {why}");
                None
            }
        }
    }

    fn bridge(&self) -> String {
        format!("{}b", self.prefix)
    }

    /// Node `i`'s namespace.
    pub fn ns(&self, i: usize) -> String {
        format!("{}n{i}", self.prefix)
    }

    fn veth(&self, i: usize) -> String {
        format!("{}v{i}", self.prefix)
    }

    /// Node `i`'s address (only inside the lab).
    pub fn ip(&self, i: usize) -> String {
        format!("10.201.0.{}", i + 1)
    }

    fn build(&mut self) -> Result<(), String> {
        let br = self.bridge();
        ip(&["netns", "add", &br])?;
        ip(&["-n", &br, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &br, "link", "set", "br0", "up"])?;
        for i in 0..self.n {
            let (ns, veth, peer) = (self.ns(i), self.veth(i), format!("{}p{i}", self.prefix));
            ip(&["netns", "add", &ns])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            ip(&["-n", &ns, "link", "add", &veth, "type", "veth", "peer", "name", &peer, "netns", &br])?;
            ip(&["-n", &br, "link", "set", &peer, "master", "br0"])?;
            ip(&["-n", &br, "link", "set", &peer, "up"])?;
            ip(&["-n", &ns, "addr", "add", &format!("{}/24", self.ip(i)), "dev", &veth])?;
            ip(&["-n", &ns, "link", "set", &veth, "up"])?;
        }
        Ok(())
    }

    /// Cuts node `i` off from every other node (its link down).
    pub fn cut(&self, i: usize) {
        ip(&["-n", &self.ns(i), "link", "set", &self.veth(i), "down"]).unwrap();
    }

    /// Puts node `i`'s link back.
    pub fn heal(&self, i: usize) {
        ip(&["-n", &self.ns(i), "link", "set", &self.veth(i), "up"]).unwrap();
    }

    /// Starts `mlmf node` as node `i` (port 7070 on its address) with `config` and the
    /// cluster `key`, joining node `join` if given; `--insecure` since it listens on an
    /// address that is not loopback (the lab's, which nothing outside it reaches).
    pub fn start(&mut self, i: usize, join: Option<usize>, key: &Path, config: &Path, log: &Path) {
        let addr = format!("{}:7070", self.ip(i));
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns(i), env!("CARGO_BIN_EXE_mlmf"), "node", "--listen", &addr, "--insecure"])
            .arg("--cluster-key-file")
            .arg(key)
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "mlmf=info,openraft=warn");
        if let Some(j) = join {
            cmd.args(["--join", &format!("{}:7070", self.ip(j))]);
        }
        let file = std::fs::File::create(log).unwrap();
        let child = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(file).spawn().unwrap();
        self.nodes[i] = Some(Node { child, addr });
    }

    /// Node `i`'s `host:port`.
    pub fn addr(&self, i: usize) -> String {
        format!("{}:7070", self.ip(i))
    }

    /// Runs `f` on a thread inside node `i`'s namespace (its sockets are that node's
    /// network's), on an actix system of its own, and returns what it returns.
    pub fn run_in<T: Send + 'static, F: std::future::Future<Output = T> + 'static>(
        &self,
        i: usize,
        f: impl FnOnce() -> F + Send + 'static,
    ) -> T {
        let path = format!("/run/netns/{}", self.ns(i));
        std::thread::spawn(move || {
            enter(&path);
            actix_web::rt::System::new().block_on(f())
        })
        .join()
        .unwrap()
    }
}

/// Moves the calling thread into the network namespace at `path`.
pub fn enter(path: &str) {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path).unwrap();
    // SAFETY: setns on a file descriptor we own; it changes only this thread's namespace.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.nodes.clear();
        for i in 0..self.n {
            let _ = ip(&["netns", "del", &self.ns(i)]);
        }
        let _ = ip(&["netns", "del", &self.bridge()]);
    }
}
