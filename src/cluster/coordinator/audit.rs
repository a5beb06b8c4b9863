//! The audit log: one JSON line per distributed operation (load, ready, unload, migration,
//! takeover, step-down), naming the coordinator, the model, the node, the checkpoint's
//! SHA-256 and the outcome; and the coordinator's memory of its last events (audited
//! operations and alerts), which `GET /v1/events` shows.

use actix::{Context, Handler, Message};

use crate::cluster::wire::ClusterEvent;

use super::actor::Coordinator;

/// Events kept in memory.
const RECENT: usize = 200;

/// The coordinator's recent events, oldest first.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Vec<ClusterEvent>")]
pub struct RecentEventsMsg;

impl Handler<RecentEventsMsg> for Coordinator {
    type Result = Vec<ClusterEvent>;

    fn handle(&mut self, _: RecentEventsMsg, _: &mut Context<Self>) -> Vec<ClusterEvent> {
        self.recent.borrow().iter().cloned().collect()
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// SHA-256 over `config.json` and every safetensors file of the checkpoint at `dir`, in
/// name order (what the audit log records as the checkpoint's identity).
pub(super) fn checkpoint_sha256(dir: &std::path::Path) -> Option<String> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let ckpt = crate::model::Checkpoint::open(dir).ok()?;
    let mut files: Vec<std::path::PathBuf> = ckpt.files.iter().map(|f| f.path.clone()).collect();
    files.sort();
    if let Some(config) = ckpt.config_file() {
        files.insert(0, config);
    }
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    for f in files {
        let mut file = std::fs::File::open(f).ok()?;
        loop {
            let n = file.read(&mut buf).ok()?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
    }
    Some(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

impl Coordinator {
    /// Keeps one event in memory (the last [`RECENT`]).
    pub(super) fn record(&self, kind: &str, name: &str, model: Option<&str>, node: Option<&str>, detail: &str) {
        let mut recent = self.recent.borrow_mut();
        if recent.len() == RECENT {
            recent.pop_front();
        }
        recent.push_back(ClusterEvent {
            time_ms: now_ms(),
            kind: kind.into(),
            name: name.into(),
            model: model.map(str::to_string),
            node: node.map(str::to_string),
            detail: detail.into(),
        });
    }

    /// Appends one record to the audit log, when one is configured, and keeps it in memory.
    pub(super) fn audit(&self, op: &str, model: Option<&str>, node: Option<&str>, outcome: &str) {
        self.record("audit", op, model, node, outcome);
        let Some(path) = &self.node.cfg.audit_log else { return };
        let sha = model.and_then(|m| self.models.get(m)).and_then(|r| r.sha256.clone());
        let line = serde_json::json!({
            "time_ms": now_ms(),
            "actor": self.node.id,
            "op": op,
            "model": model,
            "node": node,
            "checkpoint_sha256": sha,
            "outcome": outcome,
        });
        use std::io::Write;
        let written =
            std::fs::OpenOptions::new().create(true).append(true).open(path).and_then(|mut f| writeln!(f, "{line}"));
        if let Err(e) = written {
            tracing::error!(path = %path.display(), error = %e, "cannot write the audit log");
        }
    }
}
