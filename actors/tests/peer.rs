//! Peer connections over real loopback sockets: a node's `/v1/peer` route served by
//! actix-web on 127.0.0.1, dialled by the awc client.

use std::sync::Arc;
use std::time::Duration;

use actix_web::{App, HttpServer, web};
use mlmf_actors::auth::ClusterKey;
use mlmf_actors::compression::Compression;
use mlmf_actors::peer::{Handler, PeerClient, PeerConfig, PeerError, accept};

/// Echoes the payload, fails `fail`, and sleeps on `slow`.
fn handler() -> Handler {
    Arc::new(|env, payload| {
        Box::pin(async move {
            match env.name.as_str() {
                "fail" => Err("handler refused".to_string()),
                "slow" => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    Ok(payload)
                }
                _ => Ok(payload),
            }
        })
    })
}

fn start(cfg: PeerConfig) -> String {
    start_with(cfg, handler())
}

fn start_with(cfg: PeerConfig, h: Handler) -> String {
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(cfg.clone()))
            .app_data(web::Data::new(h.clone()))
            .route("/v1/peer", web::get().to(accept))
    })
    .workers(1)
    .bind(("127.0.0.1", 0))
    .unwrap();
    let addr = server.addrs()[0];
    actix_web::rt::spawn(server.run());
    format!("ws://{addr}/v1/peer")
}

fn key(s: &str) -> Option<ClusterKey> {
    Some(ClusterKey::new(s.as_bytes()).unwrap())
}

#[actix_rt::test]
async fn requests_round_trip_with_compression_and_large_payloads() {
    let cfg = PeerConfig { key: key("a cluster key of some length"), ..PeerConfig::default() };
    let url = start(cfg.clone());
    let client = PeerClient::connect(&url, &PeerConfig { compression: vec![Compression::Zstd], ..cfg }).await.unwrap();
    assert_eq!(client.compression(), Compression::Zstd);
    // 4 MiB: far above actix-ws's default 64 KiB frame cap.
    let big: Vec<u8> = (0..4 << 20).map(|i| (i % 251) as u8).collect();
    let back = client.request("echo", &big, Duration::from_secs(10), 1).await.unwrap();
    assert_eq!(back, big);
    // Concurrent requests are answered to the right caller.
    let calls = (0..32u32).map(|i| {
        let c = client.clone();
        async move { (i, c.request("echo", &i.to_le_bytes(), Duration::from_secs(5), 2).await.unwrap()) }
    });
    for (i, back) in futures_util::future::join_all(calls).await {
        assert_eq!(back, i.to_le_bytes());
    }
}

#[actix_rt::test]
async fn wrong_or_missing_key_is_refused() {
    let url = start(PeerConfig { key: key("the right key, long enough"), ..PeerConfig::default() });
    let wrong = PeerConfig { key: key("the wrong key, long enough"), ..PeerConfig::default() };
    assert_eq!(PeerClient::connect(&url, &wrong).await.err(), Some(PeerError::Unauthorized(url.clone())));
    assert_eq!(
        PeerClient::connect(&url, &PeerConfig::default()).await.err(),
        Some(PeerError::Unauthorized(url.clone()))
    );
}

#[actix_rt::test]
async fn deadlines_errors_and_limits() {
    let url = start(PeerConfig::default());
    let client = PeerClient::connect(&url, &PeerConfig::default()).await.unwrap();
    let e = client.request("slow", b"x", Duration::from_millis(50), 3).await.unwrap_err();
    assert!(matches!(e, PeerError::Timeout { .. }), "{e:?}");
    let e = client.request("fail", b"x", Duration::from_secs(5), 4).await.unwrap_err();
    assert_eq!(e, PeerError::Remote("handler refused".into()));
    // The connection still serves after both.
    assert_eq!(client.request("echo", b"ok", Duration::from_secs(5), 5).await.unwrap(), b"ok");
    // A payload above the configured limit is refused before it is sent.
    let small = PeerConfig {
        limits: mlmf_actors::frame::Limits { max_payload: 1024, ..Default::default() },
        ..Default::default()
    };
    let client = PeerClient::connect(&url, &small).await.unwrap();
    let e = client.request("echo", &[0u8; 2048], Duration::from_secs(5), 6).await.unwrap_err();
    assert!(matches!(e, PeerError::Wire(_)), "{e:?}");
}

fn start_tls(cfg: PeerConfig, server: std::sync::Arc<rustls::ServerConfig>) -> String {
    let h = handler();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(cfg.clone()))
            .app_data(web::Data::new(h.clone()))
            .route("/v1/peer", web::get().to(accept))
    })
    .workers(1)
    .bind_rustls_0_23(("127.0.0.1", 0), (*server).clone())
    .unwrap();
    let addr = server.addrs()[0];
    actix_web::rt::spawn(server.run());
    format!("wss://{addr}/v1/peer")
}

#[actix_rt::test]
async fn mutual_tls_links_carry_requests_and_refuse_strangers() {
    let dir = std::env::temp_dir().join(format!("mlmf-tls-{}", std::process::id()));
    let files = mlmf_actors::tls::self_signed(&dir, true).unwrap();
    let tls = files.load().unwrap();
    let cfg =
        PeerConfig { key: key("a cluster key of some length"), tls: Some(tls.client.clone()), ..PeerConfig::default() };
    let url = start_tls(cfg.clone(), tls.server.clone());
    let client = PeerClient::connect(&url, &cfg).await.unwrap();
    let big: Vec<u8> = (0..1 << 20).map(|i| (i % 253) as u8).collect();
    assert_eq!(client.request("echo", &big, Duration::from_secs(10), 1).await.unwrap(), big);
    // A client of another CA (no certificate the server trusts) is refused in the handshake.
    let other = mlmf_actors::tls::self_signed(&dir.join("other"), true).unwrap().load().unwrap();
    let stranger = PeerConfig { tls: Some(other.client), ..cfg.clone() };
    assert!(matches!(PeerClient::connect(&url, &stranger).await, Err(PeerError::Connect { .. })));
    // A client that trusts the CA but presents no certificate is refused by mutual TLS.
    let anonymous = PeerConfig { tls: Some(mlmf_actors::tls::client_trusting(&files.ca).unwrap()), ..cfg.clone() };
    assert!(PeerClient::connect(&url, &anonymous).await.is_err());
    // Plain websocket to a TLS listener fails too.
    let plain = PeerConfig { tls: None, ..cfg };
    assert!(PeerClient::connect(&url.replace("wss://", "ws://"), &plain).await.is_err());
    let _ = std::fs::remove_dir_all(dir);
}

#[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
struct Add(u32, u32);

impl mlmf_actors::remote::RemoteMessage for Add {
    const NAME: &'static str = "Add";
    type Reply = Result<u32, String>;
}

#[actix_rt::test]
async fn typed_requests_get_typed_replies_through_a_redialling_pool() {
    use mlmf_actors::pool::PeerPool;
    use mlmf_actors::remote::{RemoteMessage, answer};
    let h: Handler = Arc::new(|env, payload| {
        Box::pin(async move {
            match env.name.as_str() {
                Add::NAME => {
                    answer::<Add, _, _>(&payload, |Add(a, b)| async move { a.checked_add(b).ok_or("overflow".into()) })
                        .await
                }
                other => Err(format!("unknown {other}")),
            }
        })
    });
    let url = start_with(PeerConfig::default(), h);
    let pool = PeerPool::new(PeerConfig::default(), Default::default());
    assert_eq!(pool.ask(&url, &Add(2, 3), Duration::from_secs(5)).await, Ok(Ok(5)));
    assert_eq!(pool.ask(&url, &Add(u32::MAX, 1), Duration::from_secs(5)).await, Ok(Err("overflow".into())));
    // Nobody listens here: the pool redials with backoff until the deadline, then says so.
    let dead = "ws://127.0.0.1:9/v1/peer";
    let started = std::time::Instant::now();
    assert!(matches!(pool.ask(dead, &Add(1, 1), Duration::from_millis(300)).await, Err(PeerError::Connect { .. })));
    assert!(started.elapsed() >= Duration::from_millis(150), "{:?}", started.elapsed());
}

/// The receiving side honours the envelope's deadline: work for a caller that gave up is
/// stopped there (the handler's future is dropped), not run to its end.
#[actix_rt::test]
async fn a_request_past_its_deadline_is_stopped_on_the_receiving_side() {
    use std::sync::atomic::{AtomicBool, Ordering};
    struct Stopped(Arc<AtomicBool>);
    impl Drop for Stopped {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let (stopped, finished) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let (s, f) = (stopped.clone(), finished.clone());
    let h: Handler = Arc::new(move |_env, payload| {
        let (s, f) = (s.clone(), f.clone());
        Box::pin(async move {
            let _guard = Stopped(s);
            tokio::time::sleep(Duration::from_secs(30)).await;
            f.store(true, Ordering::SeqCst);
            Ok(payload)
        })
    });
    let cfg = PeerConfig::default();
    let url = start_with(cfg.clone(), h);
    let client = PeerClient::connect(&url, &cfg).await.unwrap();
    let e = client.request("long", b"x", Duration::from_millis(200), 1).await.unwrap_err();
    assert!(matches!(e, PeerError::Timeout { .. }), "{e}");
    for _ in 0..100 {
        if stopped.load(Ordering::SeqCst) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(stopped.load(Ordering::SeqCst), "the handler still runs for a caller that gave up");
    assert!(!finished.load(Ordering::SeqCst));
}
