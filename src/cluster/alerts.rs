//! [`AlertManager`]: turns cluster events into notifications, as Alertmanager does.
//!
//! - Rules: `node_down` (a member marked down), `shard_under_replicated` (a replica could not
//!   be placed again), `error_rate` (a node's failed requests over a heartbeat interval above
//!   a fraction), `p99_latency` (a node's p99 above a bound), `memory` (machine memory above
//!   a percentage). The coordinator fires and resolves them.
//! - Deduplication: an alert is identified by `(rule, key)`; firing an active alert again is
//!   a no-op. Grouping: what fires (or resolves) within `group_ms` goes out as one
//!   notification per channel. Rate limit: at most `max_per_minute` notifications per
//!   channel; what is over the limit is counted and reported with the next one.
//! - Channels: the log, a webhook (POST of the JSON group), a Slack-compatible webhook
//!   (`{"text": ...}`), email over SMTP (lettre).

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use actix::{Actor, AsyncContext, Context, Handler, Message};
use serde::{Deserialize, Serialize};

pub use crate::config::{AlertConfig, SmtpConfig};

/// How bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// For information.
    Info,
    /// Needs attention.
    Warning,
    /// Service is at risk.
    Critical,
}

/// One alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Message)]
#[rtype(result = "()")]
pub struct Fire {
    /// The rule (`node_down`, ...).
    pub rule: String,
    /// What it is about (a node id, `model/shard`).
    pub key: String,
    /// How bad.
    pub severity: Severity,
    /// One line for a person.
    pub summary: String,
}

/// The condition behind `(rule, key)` is over.
#[derive(Debug, Clone, PartialEq, Message)]
#[rtype(result = "()")]
pub struct Resolve {
    /// The rule.
    pub rule: String,
    /// The key.
    pub key: String,
}

/// A one-off event worth telling people about (a finished migration): delivered once with
/// status `notice`, neither deduplicated nor resolved.
#[derive(Debug, Clone, PartialEq, Message)]
#[rtype(result = "()")]
pub struct Notice(pub Fire);

/// What a notification says about one alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertEvent {
    /// `firing`, `resolved`, or `notice` (a one-off event).
    pub status: String,
    /// The alert.
    #[serde(flatten)]
    pub alert: Fire,
}

/// One notification: a group of events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// The cluster's coordinator.
    pub cluster: String,
    /// The events.
    pub alerts: Vec<AlertEvent>,
    /// Events dropped since the last notification: a group held back by the rate limit goes
    /// out later, and only events beyond a thousand held back are dropped.
    pub suppressed: usize,
}

impl Notification {
    /// A plain-text rendering (Slack, email).
    pub fn text(&self) -> String {
        let mut lines: Vec<String> = self
            .alerts
            .iter()
            .map(|e| {
                format!(
                    "[{}] {:?} {} {}: {}",
                    e.status.to_uppercase(),
                    e.alert.severity,
                    e.alert.rule,
                    e.alert.key,
                    e.alert.summary
                )
            })
            .collect();
        if self.suppressed > 0 {
            lines.push(format!("({} events dropped while the rate limit held notifications back)", self.suppressed));
        }
        format!("mlmf cluster {}\n{}", self.cluster, lines.join("\n"))
    }
}

/// Events held back by the rate limit at most; older ones beyond it are dropped and counted.
pub const MAX_PENDING: usize = 1000;

/// Pure bookkeeping of active alerts and rate limits (the actor adds timers and I/O).
#[derive(Debug, Default)]
pub struct AlertState {
    active: BTreeMap<(String, String), Fire>,
    pending: Vec<AlertEvent>,
    sent: VecDeque<f64>,
    suppressed: usize,
}

impl AlertState {
    /// Records a firing; false when it was already active (deduplicated).
    pub fn fire(&mut self, f: Fire) -> bool {
        let k = (f.rule.clone(), f.key.clone());
        if self.active.contains_key(&k) {
            return false;
        }
        self.active.insert(k, f.clone());
        self.pending.push(AlertEvent { status: "firing".into(), alert: f });
        true
    }

    /// Records a resolution; false when the alert was not active.
    pub fn resolve(&mut self, rule: &str, key: &str) -> bool {
        match self.active.remove(&(rule.to_string(), key.to_string())) {
            Some(f) => {
                self.pending.push(AlertEvent { status: "resolved".into(), alert: f });
                true
            }
            None => false,
        }
    }

    /// Records a one-off event.
    pub fn notice(&mut self, f: Fire) {
        self.pending.push(AlertEvent { status: "notice".into(), alert: f });
    }

    /// The pending group, if the rate limit (`max` per 60 s, at time `now` seconds) allows,
    /// with the count of events dropped since the last one. A group the limit holds back
    /// stays pending (its resolve events included) and goes out with the next one, once
    /// [`AlertState::retry_in`] has passed; only events beyond [`MAX_PENDING`] are dropped.
    pub fn flush(&mut self, now: f64, max: usize) -> Option<(Vec<AlertEvent>, usize)> {
        if self.pending.is_empty() {
            return None;
        }
        while self.sent.front().is_some_and(|t| now - t >= 60.0) {
            self.sent.pop_front();
        }
        if self.sent.len() >= max {
            let over = self.pending.len().saturating_sub(MAX_PENDING);
            self.pending.drain(..over);
            self.suppressed += over;
            return None;
        }
        self.sent.push_back(now);
        Some((std::mem::take(&mut self.pending), std::mem::take(&mut self.suppressed)))
    }

    /// Seconds from `now` until a held-back group may go out (`None`: nothing is held).
    pub fn retry_in(&self, now: f64) -> Option<f64> {
        if self.pending.is_empty() {
            return None;
        }
        Some(self.sent.front().map_or(0.0, |t| (t + 60.0 - now).max(0.0)))
    }

    /// Active alerts.
    pub fn active(&self) -> Vec<Fire> {
        self.active.values().cloned().collect()
    }
}

/// The cluster's alert manager (on the coordinator).
pub struct AlertManager {
    cfg: AlertConfig,
    cluster: String,
    state: AlertState,
    epoch: Instant,
    flush_scheduled: bool,
}

impl AlertManager {
    /// A manager for the cluster coordinated by `cluster`.
    pub fn new(cfg: AlertConfig, cluster: String) -> AlertManager {
        AlertManager { cfg, cluster, state: AlertState::default(), epoch: Instant::now(), flush_scheduled: false }
    }

    fn schedule(&mut self, ctx: &mut Context<Self>) {
        self.schedule_in(ctx, Duration::from_millis(self.cfg.group_ms));
    }

    fn schedule_in(&mut self, ctx: &mut Context<Self>, delay: Duration) {
        if self.flush_scheduled {
            return;
        }
        self.flush_scheduled = true;
        ctx.run_later(delay, |me, ctx| {
            me.flush_scheduled = false;
            let now = me.epoch.elapsed().as_secs_f64();
            if let Some((alerts, suppressed)) = me.state.flush(now, me.cfg.max_per_minute) {
                let n = Notification { cluster: me.cluster.clone(), alerts, suppressed };
                deliver(me.cfg.clone(), n);
            }
            // Held back by the rate limit: sent once the limit allows.
            if let Some(wait) = me.state.retry_in(now) {
                let group = Duration::from_millis(me.cfg.group_ms);
                me.schedule_in(ctx, Duration::from_secs_f64(wait).max(group));
            }
        });
    }
}

/// Sends `n` to every channel, each in its own task; failures are logged.
fn deliver(cfg: AlertConfig, n: Notification) {
    for e in &n.alerts {
        match e.alert.severity {
            Severity::Critical => {
                tracing::error!(rule = %e.alert.rule, key = %e.alert.key, status = %e.status, "{}", e.alert.summary)
            }
            _ => tracing::warn!(rule = %e.alert.rule, key = %e.alert.key, status = %e.status, "{}", e.alert.summary),
        }
    }
    let json = serde_json::to_value(&n).unwrap_or_default();
    let text = n.text();
    for url in cfg.webhooks.clone() {
        let body = json.clone();
        actix_web::rt::spawn(async move { post(&url, &body).await });
    }
    for url in cfg.slack_webhooks.clone() {
        let body = serde_json::json!({ "text": text });
        actix_web::rt::spawn(async move { post(&url, &body).await });
    }
    if let Some(smtp) = cfg.smtp.clone() {
        let subject = format!(
            "[mlmf] {} alert(s): {}",
            n.alerts.len(),
            n.alerts
                .iter()
                .map(|e| format!("{} {} {}", e.status, e.alert.rule, e.alert.key))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let body = text.clone();
        actix_web::rt::spawn(async move {
            let sent = actix_web::rt::task::spawn_blocking(move || send_mail(&smtp, &subject, &body)).await;
            if let Ok(Err(e)) | Err(e) = sent.map_err(|e| e.to_string()) {
                tracing::error!(error = %e, "alert email failed");
            }
        });
    }
}

async fn post(url: &str, body: &serde_json::Value) {
    let client = awc::Client::builder().timeout(Duration::from_secs(10)).finish();
    // A webhook's path and query carry its token (Slack's do): the log names the host only.
    let url_shown = redacted(url);
    match client.post(url).send_json(body).await {
        Ok(r) if r.status().is_success() => {}
        Ok(r) => tracing::error!(url = %url_shown, status = %r.status(), "alert webhook refused"),
        Err(e) => tracing::error!(url = %url_shown, error = %redact_in(&e.to_string(), url), "alert webhook failed"),
    }
}

/// `scheme://host[:port]/…` of a URL: what a log may say of a webhook.
pub fn redacted(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    // Credentials before the host (`user:pass@host`) go too.
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    if scheme.is_empty() { format!("{host}/…") } else { format!("{scheme}://{host}/…") }
}

/// `text` with every occurrence of `secret` (and of its path, in case a library quotes it)
/// replaced.
fn redact_in(text: &str, secret: &str) -> String {
    let mut out = text.replace(secret, &redacted(secret));
    if let Some((_, rest)) = secret.split_once("://")
        && let Some(at) = rest.find('/')
        && at + 1 < rest.len()
    {
        out = out.replace(&rest[at..], "/…");
    }
    out
}

fn send_mail(smtp: &SmtpConfig, subject: &str, body: &str) -> Result<(), String> {
    use crate::config::SmtpTls;
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
    use lettre::{Message as Mail, SmtpTransport, Transport};
    let (host, port) = smtp.server.rsplit_once(':').ok_or("smtp.server must be host:port")?;
    let port: u16 = port.parse().map_err(|_| "smtp.server port is not a number")?;
    let mut mail = Mail::builder().from(smtp.from.parse().map_err(|e| format!("smtp.from: {e}"))?).subject(subject);
    for to in &smtp.to {
        mail = mail.to(to.parse().map_err(|e| format!("smtp.to {to}: {e}"))?);
    }
    let mail = mail.body(body.to_string()).map_err(|e| e.to_string())?;
    let params = || -> Result<TlsParameters, String> {
        let mut b = TlsParameters::builder(host.to_string());
        if let Some(ca) = &smtp.ca {
            let pem = std::fs::read(ca).map_err(|e| format!("smtp.ca {}: {e}", ca.display()))?;
            b = b.add_root_certificate(Certificate::from_pem(&pem).map_err(|e| format!("smtp.ca: {e}"))?);
        }
        b.build_rustls().map_err(|e| format!("smtp tls: {e}"))
    };
    let tls = match smtp.tls {
        SmtpTls::None => Tls::None,
        SmtpTls::Opportunistic => Tls::Opportunistic(params()?),
        SmtpTls::Starttls => Tls::Required(params()?),
        SmtpTls::Tls => Tls::Wrapper(params()?),
    };
    let mut transport =
        SmtpTransport::builder_dangerous(host).port(port).tls(tls).timeout(Some(Duration::from_secs(10)));
    if let (Some(user), Some(file)) = (&smtp.username, &smtp.password_file) {
        let password = zeroize::Zeroizing::new(
            std::fs::read_to_string(file).map_err(|e| format!("smtp.password_file {}: {e}", file.display()))?,
        );
        // lettre keeps its own copy for the connection's lifetime (one mail).
        transport = transport.credentials(Credentials::new(user.clone(), password.trim_end().to_string()));
    }
    transport.build().send(&mail).map_err(|e| e.to_string())?;
    Ok(())
}

impl Actor for AlertManager {
    type Context = Context<Self>;
}

impl actix::Supervised for AlertManager {}

impl Handler<Fire> for AlertManager {
    type Result = ();

    fn handle(&mut self, msg: Fire, ctx: &mut Context<Self>) {
        if self.state.fire(msg) {
            self.schedule(ctx);
        }
    }
}

impl Handler<Notice> for AlertManager {
    type Result = ();

    fn handle(&mut self, msg: Notice, ctx: &mut Context<Self>) {
        self.state.notice(msg.0);
        self.schedule(ctx);
    }
}

impl Handler<Resolve> for AlertManager {
    type Result = ();

    fn handle(&mut self, msg: Resolve, ctx: &mut Context<Self>) {
        if self.state.resolve(&msg.rule, &msg.key) {
            self.schedule(ctx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fire(rule: &str, key: &str) -> Fire {
        Fire { rule: rule.into(), key: key.into(), severity: Severity::Critical, summary: "s".into() }
    }

    #[test]
    fn dedup_group_resolve_and_rate_limit() {
        let mut s = AlertState::default();
        assert!(s.fire(fire("node_down", "a")));
        assert!(!s.fire(fire("node_down", "a")), "deduplicated");
        assert!(s.fire(fire("node_down", "b")));
        let (group, suppressed) = s.flush(0.0, 2).unwrap();
        assert_eq!((group.len(), suppressed), (2, 0));
        assert!(!s.resolve("node_down", "c"));
        assert!(s.resolve("node_down", "a"));
        let (group, _) = s.flush(1.0, 2).unwrap();
        assert_eq!(group[0].status, "resolved");
        // Limit of 2 a minute reached: the next group is held back, with its resolve event,
        // until the limit allows, and then goes out with what came meanwhile.
        assert!(s.fire(fire("memory", "a")));
        assert!(s.flush(2.0, 2).is_none());
        assert_eq!(s.retry_in(2.0), Some(58.0));
        assert!(s.resolve("memory", "a"));
        assert!(s.fire(fire("memory", "b")));
        assert!(s.flush(30.0, 2).is_none());
        let (group, suppressed) = s.flush(61.0, 2).unwrap();
        let statuses: Vec<(&str, &str)> = group.iter().map(|e| (e.status.as_str(), e.alert.key.as_str())).collect();
        assert_eq!(statuses, [("firing", "a"), ("resolved", "a"), ("firing", "b")]);
        assert_eq!(suppressed, 0);
        assert_eq!(s.retry_in(61.0), None);
        assert_eq!(s.active().len(), 2);
        // Beyond MAX_PENDING held back, the oldest events are dropped and counted.
        for i in 0..MAX_PENDING + 5 {
            s.notice(fire("shard_migrated", &format!("m/{i}")));
        }
        assert!(s.flush(62.0, 1).is_none(), "one a minute: held back");
        let (group, suppressed) = s.flush(122.0, 1).unwrap();
        assert_eq!((group.len(), suppressed), (MAX_PENDING, 5));
        assert_eq!(group[0].alert.key, "m/5");
        // Notices go out every time and never become active.
        s.notice(fire("shard_migrated", "m/0"));
        s.notice(fire("shard_migrated", "m/0"));
        let (group, _) = s.flush(123.0, 2).unwrap();
        assert_eq!(group.iter().filter(|e| e.status == "notice").count(), 2);
        assert_eq!(s.active().len(), 2);
    }
}
