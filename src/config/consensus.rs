//! [`ConsensusConfig`]: the Raft control plane (`[consensus]` in a node's TOML).

use serde::{Deserialize, Serialize};

/// How the control plane's Raft group behaves. The defaults elect a new leader within about
/// 1.5 s of the old one falling silent (an election timeout of 600-1,200 ms after 150 ms
/// heartbeats), and take a node for cut off from the majority after 1 s without a quorum's
/// answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsensusConfig {
    /// Voters wanted (the first nodes to join are voters, later ones learners, promoted
    /// when a voter is lost for good): 1, 3, 5 or 7.
    pub voters: usize,
    /// Interval between the leader's heartbeats (append-entries), milliseconds.
    pub heartbeat_ms: u64,
    /// Shortest election timeout, milliseconds; the longest is twice as long.
    pub election_timeout_ms: u64,
    /// Without a quorum's answer (a leader) or a leader with a quorum (a follower) for this
    /// long, a node counts as cut off: it refuses control-plane writes with `no_quorum`.
    pub quorum_timeout_ms: u64,
    /// Log entries between snapshots (older entries are then purged).
    pub snapshot_every: u64,
}

impl Default for ConsensusConfig {
    fn default() -> Self {
        ConsensusConfig {
            voters: 3,
            heartbeat_ms: 150,
            election_timeout_ms: 600,
            quorum_timeout_ms: 1000,
            snapshot_every: 500,
        }
    }
}

impl ConsensusConfig {
    /// The first key with a bad value, and why.
    pub fn problem(&self) -> Option<(&'static str, String)> {
        if !matches!(self.voters, 1 | 3 | 5 | 7) {
            return Some(("consensus.voters", "must be 1, 3, 5 or 7".into()));
        }
        if self.heartbeat_ms < 10 || self.election_timeout_ms < 3 * self.heartbeat_ms {
            return Some((
                "consensus.election_timeout_ms",
                "heartbeat_ms must be at least 10 and election_timeout_ms at least 3 heartbeats".into(),
            ));
        }
        if self.quorum_timeout_ms < 2 * self.heartbeat_ms {
            return Some(("consensus.quorum_timeout_ms", "must be at least two heartbeats".into()));
        }
        if self.snapshot_every < 10 {
            return Some(("consensus.snapshot_every", "must be at least 10".into()));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_values_are_named() {
        assert_eq!(ConsensusConfig::default().problem(), None);
        let bad = |c: ConsensusConfig| c.problem().map(|(k, _)| k);
        assert_eq!(bad(ConsensusConfig { voters: 2, ..Default::default() }), Some("consensus.voters"));
        let c = ConsensusConfig { election_timeout_ms: 200, ..Default::default() };
        assert_eq!(bad(c), Some("consensus.election_timeout_ms"));
        let c = ConsensusConfig { quorum_timeout_ms: 100, ..Default::default() };
        assert_eq!(bad(c), Some("consensus.quorum_timeout_ms"));
    }
}
