//! Headless Chromium (Debian's package, `scripts/setup-chromium.sh`) driven over the DevTools
//! protocol on a websocket: navigate, evaluate JavaScript, take a screenshot, and collect
//! every JavaScript exception and `console.error` the page produces.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};

/// Chromium's path, or `None` (the test then says it is skipped) when it is not installed;
/// with `MLMF_REQUIRE_TEST_TOOLS=1` its absence fails the test instead.
pub fn chromium(test: &str) -> Option<PathBuf> {
    let found = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].iter().map(PathBuf::from).find(|p| p.is_file());
    if found.is_none() {
        let why = "chromium is not installed (run scripts/setup-chromium.sh)";
        if std::env::var("MLMF_REQUIRE_TEST_TOOLS").as_deref() == Ok("1") {
            panic!("{why}, and MLMF_REQUIRE_TEST_TOOLS=1");
        }
        eprintln!("SKIPPED {test}: {why}");
    }
    found
}

/// A running headless Chromium and its profile directory (both gone on drop).
pub struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    /// The DevTools port.
    pub port: u16,
}

impl Browser {
    /// Starts Chromium with a fresh profile and no network of its own beyond what pages ask.
    pub fn start(chromium: &std::path::Path) -> Browser {
        let profile = tempfile::Builder::new().prefix("mlmf-test-chromium-").tempdir().unwrap();
        let child = Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                "--remote-allow-origins=*",
                "--window-size=1400,1000",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let file = profile.path().join("DevToolsActivePort");
        let start = Instant::now();
        let port = loop {
            if let Some(p) = std::fs::read_to_string(&file).ok().and_then(|t| t.lines().next()?.parse().ok()) {
                break p;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "chromium did not open its DevTools port");
            std::thread::sleep(Duration::from_millis(100));
        };
        Browser { child, _profile: profile, port }
    }

    /// The websocket of the first page target.
    pub async fn page(&self) -> Page {
        let list: Value = awc::Client::new()
            .get(format!("http://127.0.0.1:{}/json/list", self.port))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let url = list
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["type"] == "page")
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .unwrap()
            .to_string();
        let (_, ws) = awc::Client::new().ws(url).max_frame_size(64 << 20).connect().await.unwrap();
        let mut page = Page { ws, next: 0, errors: Vec::new() };
        for domain in ["Runtime.enable", "Page.enable"] {
            page.call(domain, json!({})).await;
        }
        page
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One page, spoken to over the DevTools protocol.
pub struct Page {
    ws: actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>,
    next: u64,
    /// JavaScript exceptions and `console.error` messages seen so far.
    pub errors: Vec<String>,
}

impl Page {
    /// Calls `method` and returns its result, noting the events that arrive meanwhile.
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let msg = json!({"id": id, "method": method, "params": params}).to_string();
        self.ws.send(awc::ws::Message::Text(msg.into())).await.unwrap();
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(60), self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("no answer to {method}"))
                .expect("the DevTools socket closed")
                .unwrap();
            let text = match frame {
                awc::ws::Frame::Text(t) => t,
                awc::ws::Frame::Binary(b) => b,
                _ => continue,
            };
            let v: Value = serde_json::from_slice(&text).unwrap();
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
            match v["method"].as_str() {
                Some("Runtime.exceptionThrown") => {
                    self.errors.push(format!("exception: {}", v["params"]["exceptionDetails"]));
                }
                Some("Runtime.consoleAPICalled") if v["params"]["type"] == "error" => {
                    self.errors.push(format!("console.error: {}", v["params"]["args"]));
                }
                _ => {}
            }
        }
    }

    /// Opens `url` and waits until its document has loaded.
    pub async fn navigate(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": url})).await;
        self.wait_for(&format!("location.href === {url:?} && document.readyState === 'complete'"), 30).await;
    }

    /// The value of JavaScript expression `js` (awaited when it is a promise).
    pub async fn eval(&mut self, js: &str) -> Value {
        let r =
            self.call("Runtime.evaluate", json!({"expression": js, "returnByValue": true, "awaitPromise": true})).await;
        if let Some(e) = r.get("exceptionDetails") {
            panic!("{js}: {e}");
        }
        r["result"]["value"].clone()
    }

    /// Waits (up to `secs`) until `js` evaluates to `true` (an exception counts as not yet:
    /// the element may not be there).
    pub async fn wait_for(&mut self, js: &str, secs: u64) {
        let start = Instant::now();
        loop {
            let r = self.call("Runtime.evaluate", json!({"expression": js, "returnByValue": true})).await;
            if r["result"]["value"] == json!(true) {
                return;
            }
            let page = self.eval("document.body ? document.body.innerText : ''").await;
            assert!(start.elapsed() < Duration::from_secs(secs), "never true: {js}\npage:\n{page}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// A PNG of the page.
    pub async fn screenshot(&mut self) -> Vec<u8> {
        use base64::Engine;
        let r = self.call("Page.captureScreenshot", json!({"format": "png", "captureBeyondViewport": true})).await;
        base64::engine::general_purpose::STANDARD.decode(r["data"].as_str().unwrap()).unwrap()
    }
}
