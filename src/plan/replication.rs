//! [`ReplicationMode`]: when a model whose shards are replicated counts as ready to serve.
//! The replicas that are still loading keep loading and join the routes as they finish.

use serde::{Deserialize, Serialize};

/// When a replicated model is ready to serve.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReplicationMode {
    /// Every replica of every shard is loaded.
    #[default]
    Sync,
    /// A majority of every shard's replicas is loaded.
    Quorum,
    /// One replica of every shard is loaded.
    Async,
}

impl ReplicationMode {
    /// Loaded replicas each shard needs before the model is ready.
    pub fn needed(self, replication: usize) -> usize {
        match self {
            ReplicationMode::Sync => replication,
            ReplicationMode::Quorum => replication / 2 + 1,
            ReplicationMode::Async => 1,
        }
        .min(replication)
        .max(1)
    }

    /// Whether every shard has enough loaded replicas: `loaded[s]` is the number of loaded
    /// replicas of shard `s`.
    pub fn ready(self, replication: usize, loaded: &[usize]) -> bool {
        let need = self.needed(replication);
        loaded.iter().all(|&n| n >= need)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replication_modes_need_all_a_majority_or_one() {
        // Shard 0: 2 of 3 loaded; shard 1: 1 of 3.
        let loaded = [2, 1];
        assert!(ReplicationMode::Async.ready(3, &loaded));
        assert!(!ReplicationMode::Quorum.ready(3, &loaded));
        assert!(!ReplicationMode::Sync.ready(3, &loaded));
        assert_eq!((1..=5).map(|r| ReplicationMode::Quorum.needed(r)).collect::<Vec<_>>(), vec![1, 2, 2, 3, 3]);
        assert!(ReplicationMode::Sync.ready(3, &[3, 3]));
    }
}
