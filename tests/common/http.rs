//! A plain HTTP/1.1 client over a std TcpStream, for what `ClusterClient` does not speak:
//! OpenAI-shaped JSON routes, and server-sent event streams read event by event (chunked
//! transfer encoding decoded by hand, so the test sees the bytes the server sent).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

/// The bearer token of a cluster key file.
pub fn bearer(key: &Path) -> String {
    std::fs::read_to_string(key).unwrap().trim().to_string()
}

fn send(addr: &str, key: &str, path: &str, body: &str) -> BufReader<TcpStream> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    BufReader::new(s)
}

/// Status line and headers (lowercased names).
fn head(r: &mut BufReader<TcpStream>) -> (u16, Vec<(String, String)>) {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let status = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut headers = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    (status, headers)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// A body, de-chunked when it is chunked.
struct Body {
    r: BufReader<TcpStream>,
    chunked: bool,
    left: usize,
    done: bool,
}

impl Body {
    /// The next bytes of the body; empty at its end.
    fn next(&mut self) -> Vec<u8> {
        if self.done {
            return Vec::new();
        }
        if !self.chunked {
            let mut all = Vec::new();
            self.r.read_to_end(&mut all).unwrap();
            self.done = true;
            return all;
        }
        if self.left == 0 {
            let mut line = String::new();
            self.r.read_line(&mut line).unwrap();
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or("0"), 16).unwrap_or(0);
            if size == 0 {
                self.done = true;
                return Vec::new();
            }
            self.left = size;
        }
        let mut buf = vec![0u8; self.left];
        self.r.read_exact(&mut buf).unwrap();
        self.left = 0;
        let mut crlf = [0u8; 2];
        self.r.read_exact(&mut crlf).unwrap();
        buf
    }
}

/// GETs `path` and returns the status and the body as text.
pub fn get_text(addr: &str, key: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\nConnection: close\r\n\r\n")
        .unwrap();
    let (status, all) = answer(BufReader::new(s));
    (status, String::from_utf8_lossy(&all).into_owned())
}

/// The sum of `name`'s samples in the node at `addr`'s `/metrics`, those with every label
/// of `labels`.
pub fn metric(addr: &str, key: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let (status, text) = get_text(addr, key, "/metrics");
    assert_eq!(status, 200);
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter(|l| labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

/// The status and the whole body of an answer.
fn answer(r: BufReader<TcpStream>) -> (u16, Vec<u8>) {
    let (status, _, all) = answer_with_headers(r);
    (status, all)
}

/// The status, the headers (lowercased names) and the whole body of an answer.
fn answer_with_headers(mut r: BufReader<TcpStream>) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let (status, headers) = head(&mut r);
    let chunked = header(&headers, "transfer-encoding").is_some_and(|v| v.contains("chunked"));
    let mut b = Body { r, chunked, left: 0, done: false };
    let mut all = Vec::new();
    loop {
        let part = b.next();
        if part.is_empty() {
            break;
        }
        all.extend(part);
    }
    (status, headers, all)
}

/// POSTs `body` and returns the status and the JSON answer.
pub fn post_json(addr: &str, key: &str, path: &str, body: &Value) -> (u16, Value) {
    let (status, _, answer) = post(addr, key, path, body);
    (status, answer)
}

/// POSTs `body` and returns the status, the headers (lowercased names) and the JSON answer.
pub fn post(addr: &str, key: &str, path: &str, body: &Value) -> (u16, Vec<(String, String)>, Value) {
    let (status, headers, all) = answer_with_headers(send(addr, key, path, &body.to_string()));
    (status, headers, serde_json::from_slice(&all).unwrap_or(Value::Null))
}

/// The value of header `name` (lowercase) among `headers`.
pub fn header_of<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    header(headers, name)
}

/// A server-sent event stream.
pub struct Events {
    body: Body,
    pending: Vec<u8>,
    /// The answer's status.
    pub status: u16,
    /// Its content type.
    pub content_type: String,
}

impl Events {
    /// POSTs `body` and opens its answer as an event stream.
    pub fn open(addr: &str, key: &str, path: &str, body: &Value) -> Events {
        let mut r = send(addr, key, path, &body.to_string());
        let (status, headers) = head(&mut r);
        let chunked = header(&headers, "transfer-encoding").is_some_and(|v| v.contains("chunked"));
        let content_type = header(&headers, "content-type").unwrap_or("").to_string();
        Events { body: Body { r, chunked, left: 0, done: false }, pending: Vec::new(), status, content_type }
    }

    /// The next event's `data`, or `None` at the end of the stream.
    pub fn next_data(&mut self) -> Option<String> {
        loop {
            if let Some(i) = self.pending.windows(2).position(|w| w == b"\n\n") {
                let event: Vec<u8> = self.pending.drain(..i + 2).collect();
                let event = String::from_utf8(event).expect("an event is UTF-8");
                let data: Vec<&str> = event.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
                return Some(data.join("\n"));
            }
            let part = self.body.next();
            if part.is_empty() {
                return None;
            }
            self.pending.extend(part);
        }
    }
}
