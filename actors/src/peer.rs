//! Peer connections over websocket: the `/v1/peer` route on a node's actix-web server and
//! the client that dials it (awc). One binary websocket message carries one [`frame`].
//!
//! - Authentication in the handshake: `Authorization: Bearer <cluster key>`, compared in
//!   constant time; a missing or wrong key gets 401 before the upgrade.
//! - Compression negotiated in the handshake: the client lists what it speaks in
//!   `x-mlmf-compression`, the server answers with its first preference among them.
//! - Sizes: actix-ws and awc cap frames at 64 KiB by default; both ends raise the cap to
//!   exactly what [`Limits`] allows, so a larger message is refused, never buffered.
//! - Every request has a deadline; a late answer is dropped, the caller gets
//!   [`PeerError::Timeout`].
//!
//! Delivery: at most once per message, ordered per connection.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix_web::http::header::{AUTHORIZATION, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::AggregatedMessage;
use futures_util::future::LocalBoxFuture;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot};

use crate::auth::ClusterKey;
use crate::codec::{Bincode2, Codec};
use crate::compression::{Compression, negotiate};
use crate::error::WireError;
use crate::frame::{self, Envelope, Kind, Limits};

/// Header in which each side lists or picks a compression.
pub const COMPRESSION_HEADER: &str = "x-mlmf-compression";

/// Answers a request: its envelope and payload in, the response payload (or an error
/// message) out. Runs on the actix worker that accepted the connection.
pub type Handler = Arc<dyn Fn(Envelope, Vec<u8>) -> LocalBoxFuture<'static, Result<Vec<u8>, String>> + Send + Sync>;

/// How a node speaks to peers.
#[derive(Clone)]
pub struct PeerConfig {
    /// Required of every peer when set.
    pub key: Option<ClusterKey>,
    /// Compressions in order of preference.
    pub compression: Vec<Compression>,
    /// Size limits.
    pub limits: Limits,
    /// TLS for outgoing connections (`wss://` URLs); the listener's side is the server's.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl Default for PeerConfig {
    fn default() -> Self {
        PeerConfig { key: None, compression: Compression::ALL.to_vec(), limits: Limits::default(), tls: None }
    }
}

impl PeerConfig {
    /// Largest websocket message either end accepts.
    fn max_message(&self) -> usize {
        self.limits.max_payload + self.limits.max_envelope + 16
    }
}

/// Why a peer call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    /// The connection could not be made.
    #[error("connect to {url}: {message}")]
    Connect {
        /// Where.
        url: String,
        /// Why.
        message: String,
    },
    /// The peer refused our key (HTTP 401).
    #[error("peer {0} refused the cluster key")]
    Unauthorized(String),
    /// A frame could not be encoded or decoded.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// No answer within the deadline.
    #[error("no answer to {name} within {deadline:?}")]
    Timeout {
        /// The message name.
        name: String,
        /// The deadline.
        deadline: Duration,
    },
    /// The peer's handler answered with an error.
    #[error("peer error: {0}")]
    Remote(String),
    /// The connection is closed.
    #[error("connection closed")]
    Closed,
}

fn compression_list(cs: &[Compression]) -> String {
    cs.iter().map(|c| c.name()).collect::<Vec<_>>().join(",")
}

fn parse_compressions(v: Option<&HeaderValue>) -> Vec<Compression> {
    let Some(s) = v.and_then(|v| v.to_str().ok()) else { return Vec::new() };
    s.split(',').filter_map(|n| Compression::from_name(n.trim())).collect()
}

fn error_body(code: &str, message: &str) -> HttpResponse {
    let body = serde_json::json!({"error": {"code": code, "message": message}});
    HttpResponse::Unauthorized().content_type("application/json").body(body.to_string())
}

/// The `/v1/peer` route: authenticates, negotiates, upgrades, then answers every request
/// frame with `handler`, each request concurrently.
///
/// ```no_run
/// use actix_web::{App, HttpServer, web};
/// use mlmf_actors::peer::{accept, Handler, PeerConfig};
/// # async fn run() -> std::io::Result<()> {
/// let handler: Handler = std::sync::Arc::new(|_env, payload| Box::pin(async move { Ok(payload) }));
/// HttpServer::new(move || {
///     App::new()
///         .app_data(web::Data::new(PeerConfig::default()))
///         .app_data(web::Data::new(handler.clone()))
///         .route("/v1/peer", web::get().to(accept))
/// })
/// .bind(("127.0.0.1", 0))?
/// .run()
/// .await
/// # }
/// ```
pub async fn accept(
    req: HttpRequest,
    body: web::Payload,
    cfg: web::Data<PeerConfig>,
    handler: web::Data<Handler>,
) -> Result<HttpResponse, actix_web::Error> {
    if let Some(key) = &cfg.key {
        let presented = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.strip_prefix("Bearer "))
            .map(str::as_bytes)
            .unwrap_or_default();
        if !key.verify(presented) {
            return Ok(error_body("unauthorized", "missing or wrong cluster key"));
        }
    }
    let chosen = negotiate(&cfg.compression, &parse_compressions(req.headers().get(COMPRESSION_HEADER)));
    let (mut res, session, stream) = actix_ws::handle(&req, body)?;
    res.headers_mut().insert(
        actix_web::http::header::HeaderName::from_static(COMPRESSION_HEADER),
        HeaderValue::from_static(chosen.name()),
    );
    let max = cfg.max_message();
    let mut stream = stream.max_frame_size(max).aggregate_continuations().max_continuation_size(max);
    let cfg = cfg.into_inner();
    let handler = handler.into_inner();
    actix_web::rt::spawn(async move {
        let codec = Bincode2::<4096>;
        while let Some(Ok(msg)) = stream.recv().await {
            match msg {
                AggregatedMessage::Binary(bytes) => {
                    let Ok((env, payload)) = frame::decode(&codec, &bytes, &cfg.limits) else {
                        // A peer that sends garbage is not one we talk to.
                        break;
                    };
                    if env.kind != Kind::Request {
                        continue;
                    }
                    let (handler, mut session, cfg) = (Arc::clone(&handler), session.clone(), Arc::clone(&cfg));
                    actix_web::rt::spawn(async move {
                        let run = handler(env.clone(), payload);
                        // The caller stops waiting at the envelope's deadline: so does the work
                        // here (dropped, so what still waits in a queue is skipped), and no
                        // answer goes back (the caller reports its own timeout, never a race
                        // between the two clocks).
                        let outcome = match env.deadline_ms {
                            0 => run.await,
                            ms => match tokio::time::timeout(Duration::from_millis(u64::from(ms)), run).await {
                                Ok(r) => r,
                                Err(_) => return,
                            },
                        };
                        let (kind, body) = match outcome {
                            Ok(b) => (Kind::Response, b),
                            Err(e) => (Kind::Error, e.into_bytes()),
                        };
                        let reply = Envelope { kind, ..env };
                        if let Ok(f) = frame::encode(&Bincode2::<4096>, &reply, &body, chosen, &cfg.limits) {
                            let _ = session.binary(f).await;
                        }
                    });
                }
                AggregatedMessage::Ping(p) => {
                    let mut s = session.clone();
                    let _ = s.pong(&p).await;
                }
                AggregatedMessage::Close(_) => break,
                _ => {}
            }
        }
        let _ = session.close(None).await;
    });
    Ok(res)
}

type Pending = Rc<RefCell<HashMap<u64, oneshot::Sender<Result<Vec<u8>, PeerError>>>>>;

/// A connection to one peer. Cheap to clone; usable from the actix runtime that made it.
#[derive(Clone)]
pub struct PeerClient {
    url: String,
    outgoing: mpsc::Sender<Vec<u8>>,
    pending: Pending,
    next: Rc<AtomicU64>,
    compression: Compression,
    limits: Limits,
    closed: Rc<Cell<bool>>,
}

impl PeerClient {
    /// Dials `url` (`ws://127.0.0.1:PORT/v1/peer`), presenting the key and our compressions.
    pub async fn connect(url: &str, cfg: &PeerConfig) -> Result<PeerClient, PeerError> {
        let connect_err = |message: String| PeerError::Connect { url: url.to_string(), message };
        let client = match &cfg.tls {
            Some(tls) => awc::Client::builder().connector(awc::Connector::new().rustls_0_23(Arc::clone(tls))).finish(),
            None => awc::Client::new(),
        };
        let mut request = client
            .ws(url)
            .max_frame_size(cfg.max_message())
            .header(COMPRESSION_HEADER, compression_list(&cfg.compression));
        if let Some(key) = &cfg.key {
            let token =
                std::str::from_utf8(key.expose()).map_err(|_| connect_err("cluster key is not UTF-8".into()))?;
            request = request.bearer_auth(token);
        }
        let (response, framed) = match request.connect().await {
            Ok(ok) => ok,
            Err(awc::error::WsClientError::InvalidResponseStatus(s)) if s.as_u16() == 401 => {
                return Err(PeerError::Unauthorized(url.to_string()));
            }
            Err(e) => return Err(connect_err(e.to_string())),
        };
        let compression = parse_compressions(response.headers().get(COMPRESSION_HEADER))
            .first()
            .copied()
            .unwrap_or(Compression::None);
        let (mut sink, mut stream) = framed.split();
        let (outgoing, mut queue) = mpsc::channel::<Vec<u8>>(1024);
        let pending: Pending = Rc::default();
        // Writer: one task owns the sink, so frames leave in the order they were queued.
        actix_web::rt::spawn(async move {
            while let Some(f) = queue.recv().await {
                if sink.send(awc::ws::Message::Binary(f.into())).await.is_err() {
                    break;
                }
            }
            let _ = sink.close().await;
        });
        // Reader: routes each answer to its caller by correlation id.
        let reader_pending = Rc::clone(&pending);
        let closed = Rc::new(Cell::new(false));
        let reader_closed = Rc::clone(&closed);
        let limits = cfg.limits;
        actix_web::rt::spawn(async move {
            while let Some(Ok(item)) = stream.next().await {
                if let awc::ws::Frame::Binary(bytes) = item {
                    let Ok((env, payload)) = frame::decode(&Bincode2::<4096>, &bytes, &limits) else { break };
                    if let Some(tx) = reader_pending.borrow_mut().remove(&env.correlation) {
                        let result = match env.kind {
                            Kind::Error => Err(PeerError::Remote(String::from_utf8_lossy(&payload).into_owned())),
                            _ => Ok(payload),
                        };
                        let _ = tx.send(result);
                    }
                }
            }
            // The connection is gone: every waiting call fails now rather than at its deadline.
            reader_closed.set(true);
            for (_, tx) in reader_pending.borrow_mut().drain() {
                let _ = tx.send(Err(PeerError::Closed));
            }
        });
        Ok(PeerClient {
            url: url.to_string(),
            outgoing,
            pending,
            next: Rc::new(AtomicU64::new(1)),
            compression,
            limits: cfg.limits,
            closed,
        })
    }

    /// Whether the connection has ended (a pool then dials again).
    pub fn is_closed(&self) -> bool {
        self.closed.get() || self.outgoing.is_closed()
    }

    /// The compression this connection negotiated.
    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// The peer's address.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sends a request named `name` and waits for its answer until `deadline`.
    pub async fn request(
        &self,
        name: &str,
        payload: &[u8],
        deadline: Duration,
        request_id: u64,
    ) -> Result<Vec<u8>, PeerError> {
        let correlation = self.next.fetch_add(1, Ordering::Relaxed);
        let env = Envelope {
            name: name.to_string(),
            correlation,
            kind: Kind::Request,
            deadline_ms: deadline.as_millis().min(u32::MAX as u128) as u32,
            request_id,
        };
        let bytes = frame::encode(&Bincode2::<4096>, &env, payload, self.compression, &self.limits)?;
        let (tx, rx) = oneshot::channel();
        self.pending.borrow_mut().insert(correlation, tx);
        if self.outgoing.send(bytes).await.is_err() {
            self.pending.borrow_mut().remove(&correlation);
            return Err(PeerError::Closed);
        }
        match tokio::time::timeout(deadline, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(PeerError::Closed),
            Err(_) => {
                self.pending.borrow_mut().remove(&correlation);
                Err(PeerError::Timeout { name: name.to_string(), deadline })
            }
        }
    }
}

/// Encodes a typed value for a request payload with the default codec.
pub fn to_payload<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, WireError> {
    Bincode2::<{ 64 << 20 }>.encode(value)
}
