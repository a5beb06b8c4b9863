//! The peer transport against a bare actix-ws echo on the same machine: round-trip time and
//! throughput for 64 KiB and 4 MiB messages over 127.0.0.1.
//!
//! - `mlmf-actors`: `PeerClient::request` to the `/v1/peer` route with an echo handler (frame
//!   header, bincode envelope, correlation, deadline; compression none and lz4).
//! - bare: awc websocket to an actix-ws route that sends every binary message back.
//!
//! Throughput keeps 8 messages in flight on one connection. `cargo bench --bench transport`.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use common::median;
use futures_util::{SinkExt, StreamExt};
use mlmf_actors::compression::Compression;
use mlmf_actors::peer::{Handler, PeerClient, PeerConfig, accept};

async fn bare_echo(req: HttpRequest, body: web::Payload) -> Result<HttpResponse, actix_web::Error> {
    let (res, mut session, stream) = actix_ws::handle(&req, body)?;
    let mut stream = stream.max_frame_size(64 << 20).aggregate_continuations().max_continuation_size(64 << 20);
    actix_web::rt::spawn(async move {
        while let Some(Ok(msg)) = stream.recv().await {
            if let actix_ws::AggregatedMessage::Binary(b) = msg
                && session.binary(b).await.is_err()
            {
                break;
            }
        }
    });
    Ok(res)
}

fn start_servers() -> (String, String) {
    let handler: Handler = Arc::new(|_, payload| Box::pin(async move { Ok(payload) }));
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(PeerConfig::default()))
            .app_data(web::Data::new(handler.clone()))
            .route("/v1/peer", web::get().to(accept))
            .route("/bare", web::get().to(bare_echo))
    })
    .workers(1)
    .bind(("127.0.0.1", 0))
    .unwrap();
    let addr = server.addrs()[0];
    actix_web::rt::spawn(server.run());
    (format!("ws://{addr}/v1/peer"), format!("ws://{addr}/bare"))
}

struct Row {
    name: String,
    size: usize,
    rtt_us: f64,
    mb_s: f64,
}

fn payload(size: usize) -> Vec<u8> {
    // Activation-like: f32 values with little redundancy.
    let mut s = 7u64;
    (0..size / 4)
        .flat_map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1);
            ((s >> 33) as f32 / (1u64 << 31) as f32 - 0.5).to_le_bytes()
        })
        .collect()
}

fn iterations(size: usize) -> usize {
    if size > 1 << 20 { 40 } else { 400 }
}

async fn ours(url: &str, compression: Compression, size: usize) -> Row {
    let cfg = PeerConfig { compression: vec![compression], ..PeerConfig::default() };
    let client = PeerClient::connect(url, &cfg).await.unwrap();
    let data = payload(size);
    let n = iterations(size);
    for _ in 0..5 {
        client.request("echo", &data, Duration::from_secs(10), 0).await.unwrap();
    }
    let mut rtts = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let back = client.request("echo", &data, Duration::from_secs(10), 0).await.unwrap();
        rtts.push(t.elapsed().as_secs_f64());
        assert_eq!(back.len(), size);
    }
    let t = Instant::now();
    let window = 8;
    let mut done = 0;
    while done < n {
        let calls = (0..window).map(|_| client.request("echo", &data, Duration::from_secs(30), 0));
        for r in futures_util::future::join_all(calls).await {
            r.unwrap();
        }
        done += window;
    }
    let secs = t.elapsed().as_secs_f64();
    Row {
        name: format!("mlmf-actors ({})", compression.name()),
        size,
        rtt_us: median(rtts) * 1e6,
        mb_s: (done * size * 2) as f64 / secs / 1e6,
    }
}

async fn bare(url: &str, size: usize) -> Row {
    let (_, framed) = awc::Client::new().ws(url).max_frame_size(64 << 20).connect().await.unwrap();
    let (mut sink, mut stream) = framed.split();
    let data = web::Bytes::from(payload(size));
    let n = iterations(size);
    let mut recv = async || loop {
        match stream.next().await {
            Some(Ok(awc::ws::Frame::Binary(b))) => return b.len(),
            Some(Ok(_)) => continue,
            other => panic!("bare echo: {other:?}"),
        }
    };
    for _ in 0..5 {
        sink.send(awc::ws::Message::Binary(data.clone())).await.unwrap();
        recv().await;
    }
    let mut rtts = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        sink.send(awc::ws::Message::Binary(data.clone())).await.unwrap();
        assert_eq!(recv().await, size);
        rtts.push(t.elapsed().as_secs_f64());
    }
    let t = Instant::now();
    let window = 8;
    let mut done = 0;
    while done < n {
        for _ in 0..window {
            sink.send(awc::ws::Message::Binary(data.clone())).await.unwrap();
        }
        for _ in 0..window {
            recv().await;
        }
        done += window;
    }
    let secs = t.elapsed().as_secs_f64();
    Row {
        name: "bare actix-ws echo".into(),
        size,
        rtt_us: median(rtts) * 1e6,
        mb_s: (done * size * 2) as f64 / secs / 1e6,
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rows = actix_web::rt::System::new().block_on(async {
        let (peer, bare_url) = start_servers();
        let mut rows = Vec::new();
        for size in [64 << 10, 4 << 20] {
            rows.push(bare(&bare_url, size).await);
            rows.push(ours(&peer, Compression::None, size).await);
            rows.push(ours(&peer, Compression::Lz4, size).await);
        }
        rows
    });
    println!("\n| transport | message | round trip (median) | throughput (8 in flight, both directions) |");
    println!("|---|---|---|---|");
    for r in &rows {
        let size = if r.size >= 1 << 20 { format!("{} MiB", r.size >> 20) } else { format!("{} KiB", r.size >> 10) };
        println!("| {} | {size} | {:.0} µs | {:.0} MB/s |", r.name, r.rtt_us, r.mb_s);
    }
}
