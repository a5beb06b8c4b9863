//! The node's HTTP server: every route of [`super::routes`] and the peer websocket on one
//! listener, behind the bearer-key check (the peer route checks the key itself, in its
//! handshake), over TLS when configured.

use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, web};

use crate::cluster::node::Node;
use crate::cluster::peer_handler;

use super::error::ApiError;
use super::routes;

/// Paths that need no key: the probes, the API's description, its reference page and the
/// dashboard's page (what they show is read with the key).
const PUBLIC: [&str; 7] = ["/", "/healthz", "/readyz", "/v2/health/live", "/v2/health/ready", "/openapi.json", "/docs"];

/// Builds the node's server on `listener` (not yet running).
pub fn serve(
    node: Node,
    listener: TcpListener,
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
) -> std::io::Result<Server> {
    let workers = node.cfg.http_workers;
    let handler = peer_handler::handler(node.clone());
    let peer_cfg = node.links.config.clone();
    let server = HttpServer::new(move || {
        let auth_node = node.clone();
        App::new()
            .app_data(web::Data::new(node.clone()))
            .app_data(web::Data::new(peer_cfg.clone()))
            .app_data(web::Data::new(handler.clone()))
            .wrap_fn(move |req, srv| {
                use actix_web::dev::Service;
                let authorised = match &auth_node.key {
                    None => true,
                    // The peer route checks the same key itself, before the upgrade.
                    Some(_) if req.path() == "/v1/peer" => true,
                    // Probes and the public description of the API carry no secret.
                    Some(_) if PUBLIC.contains(&req.path()) => true,
                    Some(key) => req
                        .headers()
                        .get(actix_web::http::header::AUTHORIZATION)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|s| s.strip_prefix("Bearer "))
                        .is_some_and(|t| key.verify(t.trim().as_bytes())),
                };
                let fut = authorised.then(|| srv.call(req));
                async move {
                    match fut {
                        Some(f) => f.await,
                        None => Err(ApiError::new(401, "unauthorized", "missing or wrong bearer token").into()),
                    }
                }
            })
            .configure(routes::configure)
            .configure(super::openapi::configure)
    })
    .workers(workers)
    .disable_signals();
    let server = match tls {
        Some(cfg) => server.listen_rustls_0_23(listener, (*cfg).clone())?,
        None => server.listen(listener)?,
    };
    Ok(server.run())
}
