//! [`Tenants`]: the inference keys that belong to tenants, each with its models and limits
//! ([`crate::config::TenantConfig`]), and what each tenant is using now: its requests in
//! flight, its request and token buckets, and its counters for `/metrics` (labelled with
//! the tenant's name, never its key). The tenants of the node's TOML and of its tenants file
//! are read again every second and on SIGHUP; a tenant that stays (by name) keeps its
//! buckets and counters, so a reload is no way around a limit. A file that does not parse,
//! or a key that is unusable or shared by two tenants, leaves the tenants in use as they are.
//!
//! The limits hold on each node a client reaches: a tenant spreading requests over three
//! nodes gets up to three times its rate (the cluster-wide quota is not there yet).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use mlmf_actors::auth::{ClusterKey, KeyError};

use super::error::ApiError;
use super::rate_limit::Bucket;
use super::types::Priority;
use crate::config::{TenantConfig, TenantsFile};

/// Why the tenants could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    /// The tenants file could not be read.
    #[error("tenants file {path}: {message}")]
    File {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// A tenant's key file is unusable.
    #[error("tenant {tenant:?}: key file {path}: {source}")]
    Key {
        /// The tenant.
        tenant: String,
        /// Its key file.
        path: String,
        /// Why.
        #[source]
        source: KeyError,
    },
    /// A tenant's entry is wrong.
    #[error("tenant {tenant:?}: {message}")]
    Invalid {
        /// The tenant.
        tenant: String,
        /// What is wrong.
        message: String,
    },
}

/// Which limit refused a request (the `limit` of its 429 and of `mlmf_tenant_limited_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Limit {
    /// `requests_per_s`.
    Requests,
    /// `tokens_per_s`.
    Tokens,
    /// `max_concurrent`.
    Concurrent,
}

impl Limit {
    /// The limit's name in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            Limit::Requests => "requests_per_s",
            Limit::Tokens => "tokens_per_s",
            Limit::Concurrent => "max_concurrent",
        }
    }
}

/// A tenant's rules, as last read.
#[derive(Debug, Clone)]
struct Rules {
    key_file: PathBuf,
    models: Vec<String>,
    requests_per_s: Option<f64>,
    tokens_per_s: Option<f64>,
    max_concurrent: Option<usize>,
    max_priority: Option<Priority>,
    burst_s: f64,
}

impl Rules {
    fn of(c: &TenantConfig) -> Result<Rules, TenantError> {
        let invalid = |message: String| TenantError::Invalid { tenant: c.name.clone(), message };
        for (what, v) in
            [("requests_per_s", c.requests_per_s), ("tokens_per_s", c.tokens_per_s), ("burst_s", c.burst_s)]
        {
            if let Some(v) = v
                && !(v.is_finite() && v > 0.0)
            {
                return Err(invalid(format!("{what} must be a positive number, not {v}")));
            }
        }
        if c.max_concurrent == Some(0) {
            return Err(invalid("max_concurrent must be at least 1".into()));
        }
        let max_priority = match c.max_priority.as_deref() {
            None => None,
            Some("high") => Some(Priority::High),
            Some("normal") => Some(Priority::Normal),
            Some("low") => Some(Priority::Low),
            Some(other) => return Err(invalid(format!("max_priority is high, normal or low, not {other:?}"))),
        };
        Ok(Rules {
            key_file: c.key_file.clone(),
            models: c.models.clone(),
            requests_per_s: c.requests_per_s,
            tokens_per_s: c.tokens_per_s,
            max_concurrent: c.max_concurrent,
            max_priority,
            burst_s: c.burst_s.unwrap_or(1.0),
        })
    }
}

/// One tenant and what it is using.
pub struct Tenant {
    /// Its name.
    pub name: String,
    key: RwLock<ClusterKey>,
    rules: RwLock<Rules>,
    requests: Mutex<Option<Bucket>>,
    tokens: Mutex<Option<Bucket>>,
    in_flight: AtomicUsize,
    counters: Counters,
}

/// A tenant's counters.
#[derive(Default)]
struct Counters {
    answered: Mutex<BTreeMap<u16, u64>>,
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
    limited: Mutex<BTreeMap<Limit, u64>>,
}

impl std::fmt::Debug for Tenant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tenant").field("name", &self.name).finish_non_exhaustive()
    }
}

/// Sets `slot` to a bucket of `rate` (kept, with its level, when it exists), or none.
fn bucket(slot: &Mutex<Option<Bucket>>, rate: Option<f64>, burst_s: f64, now: Instant) {
    let mut b = slot.lock().unwrap_or_else(|e| e.into_inner());
    *b = match (rate, b.take()) {
        (None, _) => None,
        (Some(r), Some(mut old)) => {
            old.set_limits(r, r * burst_s, now);
            Some(old)
        }
        (Some(r), None) => Some(Bucket::new(r, r * burst_s, now)),
    };
}

/// A tenant's request in flight; dropping it frees its place.
#[derive(Debug)]
pub struct TenantSlot(Arc<Tenant>);

impl Drop for TenantSlot {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Tenant {
    fn new(c: &TenantConfig, key: ClusterKey, rules: Rules) -> Tenant {
        let t = Tenant {
            name: c.name.clone(),
            key: RwLock::new(key),
            rules: RwLock::new(rules),
            requests: Mutex::new(None),
            tokens: Mutex::new(None),
            in_flight: AtomicUsize::new(0),
            counters: Counters::default(),
        };
        t.apply_limits();
        t
    }

    /// Makes the buckets follow the rules.
    fn apply_limits(&self) {
        let r = self.rules.read().unwrap_or_else(|e| e.into_inner()).clone();
        let now = Instant::now();
        bucket(&self.requests, r.requests_per_s, r.burst_s, now);
        bucket(&self.tokens, r.tokens_per_s, r.burst_s, now);
    }

    fn refused(&self, limit: Limit, message: String, wait: Duration) -> ApiError {
        *self.counters.limited.lock().unwrap_or_else(|e| e.into_inner()).entry(limit).or_default() += 1;
        let retry = wait.as_secs_f64().ceil().max(1.0) as u64;
        ApiError::new(429, "rate_limited", format!("tenant {:?}: {message}; retry in {retry} s", self.name))
            .with_limit(limit.name(), retry)
    }

    /// Admits one request: a place among its `max_concurrent`, one of its requests per
    /// second, and no tokens owed; or a 429 naming the limit, with `Retry-After`.
    pub fn admit(self: &Arc<Self>) -> Result<TenantSlot, ApiError> {
        let rules = self.rules.read().unwrap_or_else(|e| e.into_inner()).clone();
        let taken = self.in_flight.fetch_add(1, Ordering::AcqRel);
        let slot = TenantSlot(Arc::clone(self));
        if let Some(max) = rules.max_concurrent
            && taken >= max
        {
            let message = format!("{taken} requests in flight (max_concurrent {max})");
            return Err(self.refused(Limit::Concurrent, message, Duration::from_secs(1)));
        }
        let now = Instant::now();
        if let Some(b) = self.tokens.lock().unwrap_or_else(|e| e.into_inner()).as_mut()
            && let Err(wait) = b.open(now)
        {
            let rate = rules.tokens_per_s.unwrap_or_default();
            return Err(self.refused(Limit::Tokens, format!("over its {rate} tokens per second"), wait));
        }
        if let Some(b) = self.requests.lock().unwrap_or_else(|e| e.into_inner()).as_mut()
            && let Err(wait) = b.take(1.0, now)
        {
            let rate = rules.requests_per_s.unwrap_or_default();
            return Err(self.refused(Limit::Requests, format!("over its {rate} requests per second"), wait));
        }
        Ok(slot)
    }

    /// Whether the tenant may use `model` (403 `model_not_allowed` if not).
    pub fn allows(&self, model: &str) -> Result<(), ApiError> {
        let rules = self.rules.read().unwrap_or_else(|e| e.into_inner());
        if rules.models.is_empty() || rules.models.iter().any(|m| m == model) {
            return Ok(());
        }
        Err(ApiError::new(403, "model_not_allowed", format!("tenant {:?} may not use model {model:?}", self.name)))
    }

    /// `asked`, lowered to the tenant's `max_priority`.
    pub fn priority(&self, asked: Priority) -> Priority {
        match self.rules.read().unwrap_or_else(|e| e.into_inner()).max_priority {
            Some(max) if asked.rank() > max.rank() => max,
            _ => asked,
        }
    }

    /// Charges `prompt` and `completion` tokens to the tenant's token bucket and counters.
    pub fn charge(&self, prompt: usize, completion: usize) {
        self.counters.prompt_tokens.fetch_add(prompt as u64, Ordering::Relaxed);
        self.counters.completion_tokens.fetch_add(completion as u64, Ordering::Relaxed);
        if let Some(b) = self.tokens.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            b.charge((prompt + completion) as f64, Instant::now());
        }
    }

    /// Records how one of its requests was answered.
    pub fn answered(&self, status: u16) {
        *self.counters.answered.lock().unwrap_or_else(|e| e.into_inner()).entry(status).or_default() += 1;
    }
}

/// Every tenant of a node.
pub struct Tenants {
    inline: Vec<TenantConfig>,
    file: Option<PathBuf>,
    list: RwLock<Vec<Arc<Tenant>>>,
    stamp: Mutex<Vec<Option<(SystemTime, u64)>>>,
}

impl std::fmt::Debug for Tenants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self.list().iter().map(|t| t.name.clone()).collect();
        f.debug_struct("Tenants").field("file", &self.file).field("tenants", &names).finish()
    }
}

impl Default for Tenants {
    fn default() -> Self {
        Tenants { inline: Vec::new(), file: None, list: RwLock::new(Vec::new()), stamp: Mutex::new(Vec::new()) }
    }
}

/// The modification time and length of `path` (what a reload compares).
fn stamp_of(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

impl Tenants {
    /// The tenants of `inline` and of `file`; any error refuses them all (a node does not
    /// start with a tenant it cannot enforce).
    pub fn new(inline: Vec<TenantConfig>, file: Option<PathBuf>) -> Result<Tenants, TenantError> {
        let t = Tenants { inline, file, ..Tenants::default() };
        let list = t.read(&[])?;
        *t.list.write().unwrap_or_else(|e| e.into_inner()) = list;
        *t.stamp.lock().unwrap_or_else(|e| e.into_inner()) = t.stamp();
        Ok(t)
    }

    /// Whether any tenant is configured, or may be (a tenants file is watched).
    pub fn configured(&self) -> bool {
        self.file.is_some() || !self.list().is_empty()
    }

    /// The modification times and lengths of the tenants file and of every tenant's key
    /// file: what a reload without `force` compares.
    fn stamp(&self) -> Vec<Option<(SystemTime, u64)>> {
        let keys: Vec<PathBuf> =
            self.list().iter().map(|t| t.rules.read().unwrap_or_else(|e| e.into_inner()).key_file.clone()).collect();
        self.file.iter().chain(keys.iter()).map(|p| stamp_of(p)).collect()
    }

    fn list(&self) -> Vec<Arc<Tenant>> {
        self.list.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The tenant whose key is `token`.
    pub fn find(&self, token: &[u8]) -> Option<Arc<Tenant>> {
        self.list().into_iter().find(|t| t.key.read().unwrap_or_else(|e| e.into_inner()).verify(token))
    }

    /// Reads every tenant's entry and key; tenants of `old` that stay keep their state.
    fn read(&self, old: &[Arc<Tenant>]) -> Result<Vec<Arc<Tenant>>, TenantError> {
        let mut configs = self.inline.clone();
        if let Some(path) = &self.file {
            let file_error = |message: String| TenantError::File { path: path.display().to_string(), message };
            let text = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
            let parsed: TenantsFile = toml::from_str(&text).map_err(|e| file_error(e.to_string()))?;
            configs.extend(parsed.tenants);
        }
        let mut out: Vec<Arc<Tenant>> = Vec::new();
        let mut keys: Vec<ClusterKey> = Vec::new();
        for c in &configs {
            let invalid = |message: String| TenantError::Invalid { tenant: c.name.clone(), message };
            if c.name.is_empty() || c.name.len() > 64 || c.name.chars().any(|ch| ch.is_control() || ch == '"') {
                return Err(invalid("a name is 1 to 64 characters, without quotes or control characters".into()));
            }
            if out.iter().any(|t| t.name == c.name) {
                return Err(invalid("listed twice".into()));
            }
            let rules = Rules::of(c)?;
            let key = ClusterKey::from_file(&c.key_file).map_err(|source| TenantError::Key {
                tenant: c.name.clone(),
                path: c.key_file.display().to_string(),
                source,
            })?;
            if let Some(i) = keys.iter().position(|k| k.verify(key.expose())) {
                return Err(invalid(format!("its key is also tenant {:?}'s", out[i].name)));
            }
            keys.push(key.clone());
            let tenant = match old.iter().find(|t| t.name == c.name) {
                Some(t) => {
                    *t.key.write().unwrap_or_else(|e| e.into_inner()) = key;
                    *t.rules.write().unwrap_or_else(|e| e.into_inner()) = rules;
                    t.apply_limits();
                    Arc::clone(t)
                }
                None => Arc::new(Tenant::new(c, key, rules)),
            };
            out.push(tenant);
        }
        Ok(out)
    }

    /// Reads the tenants again (`why` is logged); an error keeps the ones in use. Without
    /// `force`, only when the tenants file or a key file changed.
    pub fn reload(&self, why: &str, force: bool) {
        let stamp = self.stamp();
        if !force && *self.stamp.lock().unwrap_or_else(|e| e.into_inner()) == stamp {
            return;
        }
        let old = self.list();
        match self.read(&old) {
            Ok(list) => {
                let names: Vec<&str> = list.iter().map(|t| t.name.as_str()).collect();
                tracing::info!(why, tenants = ?names, "tenants read again");
                *self.list.write().unwrap_or_else(|e| e.into_inner()) = list;
                *self.stamp.lock().unwrap_or_else(|e| e.into_inner()) = self.stamp();
            }
            Err(e) => {
                // Said once per change of the files, not every second.
                *self.stamp.lock().unwrap_or_else(|e| e.into_inner()) = stamp;
                tracing::error!(why, error = %e, "tenants not read again; the tenants in use stay");
            }
        }
    }

    /// The tenants' counters as Prometheus text.
    pub fn render(&self, node: &str) -> String {
        let list = self.list();
        if list.is_empty() {
            return String::new();
        }
        let mut out = String::new();
        let n = node.replace('\\', "\\\\").replace('"', "\\\"");
        let head = |out: &mut String, name: &str, help: &str, kind: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        head(&mut out, "mlmf_tenant_requests_total", "Inference requests of each tenant, by status.", "counter");
        for t in &list {
            for (status, v) in t.counters.answered.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                let _ = writeln!(
                    out,
                    "mlmf_tenant_requests_total{{node=\"{n}\",tenant=\"{}\",status=\"{status}\"}} {v}",
                    t.name
                );
            }
        }
        head(
            &mut out,
            "mlmf_tenant_errors_total",
            "Requests of each tenant answered with an error (4xx or 5xx).",
            "counter",
        );
        for t in &list {
            let errors: u64 =
                t.counters.answered.lock().unwrap_or_else(|e| e.into_inner()).range(400..).map(|(_, v)| v).sum();
            let _ = writeln!(out, "mlmf_tenant_errors_total{{node=\"{n}\",tenant=\"{}\"}} {errors}", t.name);
        }
        head(&mut out, "mlmf_tenant_tokens_total", "Prompt and generated tokens of each tenant.", "counter");
        for t in &list {
            for (kind, v) in [("prompt", &t.counters.prompt_tokens), ("completion", &t.counters.completion_tokens)] {
                let v = v.load(Ordering::Relaxed);
                let _ =
                    writeln!(out, "mlmf_tenant_tokens_total{{node=\"{n}\",tenant=\"{}\",kind=\"{kind}\"}} {v}", t.name);
            }
        }
        head(&mut out, "mlmf_tenant_limited_total", "Requests of each tenant refused by one of its limits.", "counter");
        for t in &list {
            for (limit, v) in t.counters.limited.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                let _ = writeln!(
                    out,
                    "mlmf_tenant_limited_total{{node=\"{n}\",tenant=\"{}\",limit=\"{}\"}} {v}",
                    t.name,
                    limit.name()
                );
            }
        }
        head(&mut out, "mlmf_tenant_in_flight", "Requests of each tenant in flight on this node.", "gauge");
        for t in &list {
            let v = t.in_flight.load(Ordering::Relaxed);
            let _ = writeln!(out, "mlmf_tenant_in_flight{{node=\"{n}\",tenant=\"{}\"}} {v}", t.name);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(dir: &Path, name: &str, key: &str) -> TenantConfig {
        let key_file = dir.join(format!("{name}.key"));
        std::fs::write(&key_file, key).unwrap();
        TenantConfig {
            name: name.into(),
            key_file,
            models: vec!["g".into()],
            requests_per_s: Some(2.0),
            tokens_per_s: None,
            max_concurrent: Some(1),
            max_priority: Some("normal".into()),
            burst_s: None,
        }
    }

    fn scratch() -> PathBuf {
        let d = std::env::temp_dir().join(format!("mlmf-tenants-{}-{}", std::process::id(), fastrand::u64(..)));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn limits_models_and_priority_hold_per_tenant() {
        let dir = scratch();
        let t = Tenants::new(
            vec![tenant(&dir, "a", "the key of tenant a"), tenant(&dir, "b", "the key of tenant b")],
            None,
        )
        .unwrap();
        let a = t.find(b"the key of tenant a").unwrap();
        assert_eq!(a.name, "a");
        assert!(t.find(b"the key of tenant c").is_none());
        assert!(a.allows("g").is_ok());
        assert_eq!(a.allows("other").unwrap_err().code, "model_not_allowed");
        assert_eq!(a.priority(Priority::High), Priority::Normal);
        assert_eq!(a.priority(Priority::Low), Priority::Low);
        // One at a time.
        let held = a.admit().unwrap();
        let e = a.admit().unwrap_err();
        assert_eq!((e.status, e.limit.as_deref()), (429, Some("max_concurrent")));
        drop(held);
        // Two per second: the second admission of this second is the last.
        drop(a.admit().unwrap());
        let e = a.admit().unwrap_err();
        assert_eq!((e.status, e.limit.as_deref(), e.retry_after_s), (429, Some("requests_per_s"), Some(1)));
        // The other tenant is untouched.
        drop(t.find(b"the key of tenant b").unwrap().admit().unwrap());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bad_entries_are_refused_and_a_reload_keeps_state_by_name() {
        let dir = scratch();
        let same = vec![tenant(&dir, "a", "one key for both of them"), tenant(&dir, "b", "one key for both of them")];
        assert!(Tenants::new(same, None).unwrap_err().to_string().contains("also tenant \"a\""));
        let mut zero = tenant(&dir, "a", "the key of tenant a");
        zero.requests_per_s = Some(0.0);
        assert!(Tenants::new(vec![zero], None).is_err());
        let mut prio = tenant(&dir, "a", "the key of tenant a");
        prio.max_priority = Some("urgent".into());
        assert!(Tenants::new(vec![prio], None).is_err());
        let short = tenant(&dir, "a", "short");
        assert!(matches!(Tenants::new(vec![short], None), Err(TenantError::Key { .. })));

        // From a file: a reload that changes the key keeps the tenant's counters.
        let file = dir.join("tenants.toml");
        let key = dir.join("c.key");
        std::fs::write(&key, "the first key of tenant c").unwrap();
        let entry =
            format!("[[tenants]]\nname = \"c\"\nkey_file = {:?}\nrequests_per_s = 1\n", key.display().to_string());
        std::fs::write(&file, &entry).unwrap();
        let t = Tenants::new(Vec::new(), Some(file.clone())).unwrap();
        let c = t.find(b"the first key of tenant c").unwrap();
        drop(c.admit().unwrap());
        std::fs::write(&key, "the second key of tenant c").unwrap();
        t.reload("test", true);
        assert!(t.find(b"the first key of tenant c").is_none());
        let c2 = t.find(b"the second key of tenant c").unwrap();
        assert!(Arc::ptr_eq(&c, &c2), "the same tenant, its bucket kept");
        assert_eq!(c2.admit().unwrap_err().limit.as_deref(), Some("requests_per_s"));
        // A file that no longer parses keeps the tenants in use.
        std::fs::write(&file, "[[tenants]]\nname = ").unwrap();
        t.reload("test", true);
        assert!(t.find(b"the second key of tenant c").is_some());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
