//! The node's HTTP server: every route of [`super::routes`] and the peer websocket on one
//! listener, behind the bearer-key check of [`super::access`] (the peer route checks the
//! cluster key itself, in its handshake), over TLS when configured.

use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, web};

use crate::cluster::node::Node;
use crate::cluster::peer_handler;

use super::routes;

/// Paths that need no key: the probes, the API's description, its reference page and the
/// dashboard's page (what they show is read with the key).
const PUBLIC: [&str; 7] = ["/", "/healthz", "/readyz", "/v2/health/live", "/v2/health/ready", "/openapi.json", "/docs"];

/// Builds the node's server on `listener` (not yet running), admitting requests with the keys
/// of `access` (and starting its reload of the scoped keys' files).
pub fn serve(
    node: Node,
    listener: TcpListener,
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    access: std::sync::Arc<super::access::Access>,
) -> std::io::Result<Server> {
    access.watch();
    let workers = node.cfg.http_workers;
    let handler = peer_handler::handler(node.clone());
    let peer_cfg = node.links.config.clone();
    let server = HttpServer::new(move || {
        let access = std::sync::Arc::clone(&access);
        App::new()
            .app_data(web::Data::from(std::sync::Arc::clone(&access)))
            .app_data(web::Data::new(node.clone()))
            .app_data(web::Data::new(peer_cfg.clone()))
            .app_data(web::Data::new(handler.clone()))
            .wrap_fn(move |req, srv| {
                use actix_web::HttpMessage;
                use actix_web::dev::Service;
                let checked = match req.path() {
                    // The peer route checks the cluster key itself, before the upgrade.
                    "/v1/peer" => Ok(None),
                    // Probes and the public description of the API carry no secret.
                    p if PUBLIC.contains(&p) => Ok(None),
                    p => {
                        let token = req
                            .headers()
                            .get(actix_web::http::header::AUTHORIZATION)
                            .and_then(|v| v.to_str().ok())
                            .and_then(|s| s.strip_prefix("Bearer "))
                            .map(|t| t.trim().as_bytes());
                        access.check(req.method(), p, token)
                    }
                };
                // A tenant's request carries its tenant to the handler (its limits apply there).
                let fut = checked.map(|tenant| {
                    if let Some(t) = tenant {
                        req.extensions_mut().insert(t);
                    }
                    srv.call(req)
                });
                async move {
                    match fut {
                        Ok(f) => f.await,
                        Err(e) => Err(e.into()),
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
