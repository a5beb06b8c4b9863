//! [`AlertConfig`]: the alert rules' thresholds and the channels notifications go to
//! (`[alerts]` in a node's TOML; read by the coordinator's alert manager).

use serde::{Deserialize, Serialize};

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// STARTTLS when the server offers it, plain otherwise (refused with credentials).
    #[default]
    Opportunistic,
    /// STARTTLS, and no mail when the server does not offer it or its certificate fails.
    Starttls,
    /// TLS from the first byte (SMTPS, usually port 465).
    Tls,
    /// Plain SMTP (a relay on the same host; refused with credentials).
    None,
}

/// SMTP delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// `host:port` of the SMTP server.
    pub server: String,
    /// Sender address.
    pub from: String,
    /// Recipients.
    pub to: Vec<String>,
    /// `opportunistic` (default), `starttls`, `tls` or `none`.
    #[serde(default)]
    pub tls: SmtpTls,
    /// A PEM file of the CA that signed the server's certificate, trusted besides the
    /// Mozilla roots (an operator's own CA).
    #[serde(default)]
    pub ca: Option<std::path::PathBuf>,
    /// User to authenticate as (with `password_file`; needs `tls` = `starttls` or `tls`).
    #[serde(default)]
    pub username: Option<String>,
    /// A file holding the password (read when a mail is sent, held in zeroizing memory,
    /// never logged).
    #[serde(default)]
    pub password_file: Option<std::path::PathBuf>,
}

impl SmtpConfig {
    /// Why this SMTP setup cannot be used, if it cannot.
    pub fn problem(&self) -> Option<(&'static str, String)> {
        if self.username.is_some() != self.password_file.is_some() {
            return Some(("alerts.smtp.username", "username and password_file go together".into()));
        }
        if self.username.is_some() && matches!(self.tls, SmtpTls::Opportunistic | SmtpTls::None) {
            return Some((
                "alerts.smtp.tls",
                "credentials need tls = \"starttls\" or \"tls\" (they are never sent in clear)".into(),
            ));
        }
        None
    }
}

/// Rules, thresholds and channels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertConfig {
    /// Webhooks receiving the JSON group.
    pub webhooks: Vec<String>,
    /// Slack-compatible webhooks receiving `{"text": ...}`.
    pub slack_webhooks: Vec<String>,
    /// Email.
    pub smtp: Option<SmtpConfig>,
    /// Alerts within this window go out together.
    pub group_ms: u64,
    /// Notifications per channel per minute.
    pub max_per_minute: usize,
    /// `error_rate` fires above this fraction of failed requests.
    pub error_rate: f64,
    /// `p99_latency` fires above this, milliseconds.
    pub p99_ms: f64,
    /// `memory` fires above this percentage of machine memory.
    pub memory_percent: f64,
    /// `node_flapping` fires when a node goes down this many times within `flap_window_ms`
    /// (0: never), and resolves once a whole window passes without it going down.
    pub flap_count: usize,
    /// The window for `flap_count`, milliseconds.
    pub flap_window_ms: u64,
}

impl Default for AlertConfig {
    fn default() -> Self {
        AlertConfig {
            webhooks: Vec::new(),
            slack_webhooks: Vec::new(),
            smtp: None,
            group_ms: 200,
            max_per_minute: 30,
            error_rate: 0.5,
            p99_ms: 5000.0,
            memory_percent: 95.0,
            flap_count: 3,
            flap_window_ms: 60_000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_credentials_are_never_configured_for_a_clear_connection() {
        let base: SmtpConfig = toml::from_str("server = \"mail:587\"\nfrom = \"a@b\"\nto = [\"c@d\"]\n").unwrap();
        assert_eq!(base.tls, SmtpTls::Opportunistic);
        assert!(base.problem().is_none());
        let with = |tls: SmtpTls, user: bool, file: bool| SmtpConfig {
            tls,
            username: user.then(|| "ops".into()),
            password_file: file.then(|| "/run/secrets/smtp".into()),
            ..base.clone()
        };
        assert!(with(SmtpTls::Starttls, true, true).problem().is_none());
        assert!(with(SmtpTls::Tls, true, true).problem().is_none());
        for tls in [SmtpTls::Opportunistic, SmtpTls::None] {
            assert_eq!(with(tls, true, true).problem().unwrap().0, "alerts.smtp.tls");
        }
        assert_eq!(with(SmtpTls::Starttls, true, false).problem().unwrap().0, "alerts.smtp.username");
        assert!(toml::from_str::<SmtpConfig>("server = \"m:1\"\nfrom = \"a\"\nto = []\ntls = \"ssl\"\n").is_err());
    }
}
