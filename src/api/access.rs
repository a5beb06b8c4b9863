//! Who may call what: the cluster key (peers, and every route), the admin key (the
//! control-plane routes and every status route, no inference), the inference key (the
//! serving routes, `/metrics` and the models' status, nothing else), and the tenants' keys
//! (what the inference key may, within each tenant's models and limits: [`super::tenants`]).
//! The scoped keys and the tenants live in files read again every second and on SIGHUP, so
//! any of them is rotated without a restart.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::Method;
use mlmf_actors::auth::{ClusterKey, KeyError, KeyFile};

use super::error::ApiError;
use super::tenants::{Tenant, Tenants};

/// What a route does, for the keys' scopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Changes the cluster: load, unload, migrate.
    Control,
    /// Runs inference.
    Inference,
    /// Reads what serving needs: the models' list and status, KServe metadata, `/metrics`.
    ServingRead,
    /// Reads the rest: the cluster, its events, the dashboard's data.
    ClusterRead,
}

/// The scope of `method` on `path`.
pub fn scope(method: &Method, path: &str) -> Scope {
    let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    match (method, parts.as_slice()) {
        (&Method::POST, ["", "v1", "models"]) => Scope::Control,
        (&Method::DELETE, ["", "v1", "models", _]) => Scope::Control,
        (&Method::POST, ["", "v1", "models", _, "migrate"]) => Scope::Control,
        (&Method::GET, ["", "v1", "models", ..]) | (&Method::GET, ["", "v2", ..]) | (&Method::GET, ["", "metrics"]) => {
            Scope::ServingRead
        }
        (&Method::GET, _) => Scope::ClusterRead,
        // Every other write is inference (and an unknown route answers 404 to either key).
        _ => Scope::Inference,
    }
}

/// The keys a node accepts over HTTP.
#[derive(Debug, Default)]
pub struct Access {
    cluster: Option<ClusterKey>,
    admin: Option<KeyFile>,
    inference: Option<KeyFile>,
    /// The tenants and their keys.
    pub tenants: Tenants,
}

impl Access {
    /// The cluster key, the scoped keys read from their files, and the tenants.
    pub fn new(
        cluster: Option<ClusterKey>,
        admin: Option<&std::path::Path>,
        inference: Option<&std::path::Path>,
        tenants: Tenants,
    ) -> Result<Access, KeyError> {
        Ok(Access {
            cluster,
            admin: admin.map(KeyFile::open).transpose()?,
            inference: inference.map(KeyFile::open).transpose()?,
            tenants,
        })
    }

    /// Whether any key is required at all.
    pub fn required(&self) -> bool {
        self.cluster.is_some() || self.admin.is_some() || self.inference.is_some() || self.tenants.configured()
    }

    /// Whether the bearer token `presented` may call `method` on `path`: `Err` with 401 for
    /// no or an unknown key, 403 for a key outside its scope; `Ok` with the tenant whose key
    /// it is, if it is a tenant's.
    pub fn check(
        &self,
        method: &Method,
        path: &str,
        presented: Option<&[u8]>,
    ) -> Result<Option<Arc<Tenant>>, ApiError> {
        if !self.required() {
            return Ok(None);
        }
        let Some(token) = presented else {
            return Err(ApiError::new(401, "unauthorized", "missing or wrong bearer token"));
        };
        if self.cluster.as_ref().is_some_and(|k| k.verify(token)) {
            return Ok(None);
        }
        let scope = scope(method, path);
        let forbidden = |who: &str, may: &str| {
            Err(ApiError::new(
                403,
                "forbidden",
                format!("the {who} key may not {} {path}; it may {may}", method.as_str()),
            ))
        };
        if self.admin.as_ref().is_some_and(|k| k.verify(token)) {
            return match scope {
                Scope::Inference => {
                    forbidden("admin", "load, unload and migrate models and read status (use the inference key)")
                }
                _ => Ok(None),
            };
        }
        if self.inference.as_ref().is_some_and(|k| k.verify(token)) {
            return match scope {
                Scope::Inference | Scope::ServingRead => Ok(None),
                _ => forbidden("inference", "run inference and read /metrics and the models' status"),
            };
        }
        if let Some(tenant) = self.tenants.find(token) {
            return match scope {
                Scope::Inference | Scope::ServingRead => Ok(Some(tenant)),
                _ => forbidden("tenant", "run inference on its models and read /metrics and the models' status"),
            };
        }
        Err(ApiError::new(401, "unauthorized", "missing or wrong bearer token"))
    }

    /// Reads the scoped keys' files again; logs a rotation or a refused file (never a key).
    pub fn reload(&self, why: &str, force: bool) {
        self.tenants.reload(why, force);
        for (name, key) in [("admin", &self.admin), ("inference", &self.inference)] {
            let Some(key) = key else { continue };
            match key.reload() {
                Ok(true) => tracing::info!(key = name, file = %key.path().display(), why, "key rotated"),
                Ok(false) => {}
                Err(e) => tracing::error!(
                    key = name, file = %key.path().display(), error = %e, "key file unusable; the key in use stays"
                ),
            }
        }
    }

    /// Reads the scoped keys and the tenants again every second and on SIGHUP, on the current actix system,
    /// for as long as the system runs.
    pub fn watch(self: &Arc<Self>) {
        if self.admin.is_none() && self.inference.is_none() && !self.tenants.configured() {
            return;
        }
        let access = Arc::clone(self);
        actix_web::rt::spawn(async move {
            let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                let hangup = async {
                    match hup.as_mut() {
                        Some(h) => h.recv().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = hangup => access.reload("SIGHUP", true),
                    _ = tick.tick() => access.reload("file changed", false),
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_fall_in_their_scopes() {
        let (get, post, delete) = (Method::GET, Method::POST, Method::DELETE);
        assert_eq!(scope(&post, "/v1/models"), Scope::Control);
        assert_eq!(scope(&delete, "/v1/models/g"), Scope::Control);
        assert_eq!(scope(&post, "/v1/models/g/migrate"), Scope::Control);
        assert_eq!(scope(&post, "/v1/models/g/infer"), Scope::Inference);
        assert_eq!(scope(&post, "/v1/completions"), Scope::Inference);
        assert_eq!(scope(&post, "/v2/models/g/infer"), Scope::Inference);
        assert_eq!(scope(&get, "/v1/models"), Scope::ServingRead);
        assert_eq!(scope(&get, "/v1/models/g"), Scope::ServingRead);
        assert_eq!(scope(&get, "/v2/models/g"), Scope::ServingRead);
        assert_eq!(scope(&get, "/metrics"), Scope::ServingRead);
        assert_eq!(scope(&get, "/v1/cluster"), Scope::ClusterRead);
        assert_eq!(scope(&get, "/v1/events"), Scope::ClusterRead);
    }
}
