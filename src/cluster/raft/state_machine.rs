//! [`Registry`]: the Raft state machine, the last committed [`ClusterView`] (members and
//! model registry) with the last applied log id and membership, kept in the [`Store`]. Every
//! view it applies becomes the view its node routes by, so inference reads routes from the
//! last committed registry and never waits on Raft. A snapshot is that view.

use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, ErrorVerb, LogId, RaftSnapshotBuilder, Snapshot, SnapshotMeta, StoredMembership};

use crate::cluster::node::Node;
use crate::cluster::wire::{self, ClusterView};

use super::store::Store;
use super::types::{Command, Entry, RaftPeer, RegistrySnapshot, StorageError, TypeConfig, io_error};

/// What the state machine holds.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct Applied {
    last: Option<LogId<u64>>,
    membership: StoredMembership<u64, RaftPeer>,
    view: Option<ClusterView>,
}

/// The state machine of `node`'s Raft group.
#[derive(Clone)]
pub struct Registry {
    store: Store,
    node: Node,
    applied: Applied,
}

/// Whether `next` follows `held` (a later term, or a later version of the same term) and
/// its indices point inside it (an entry that does not is skipped by every member alike).
fn follows(held: Option<&ClusterView>, next: &ClusterView) -> bool {
    if let Err(e) = next.check() {
        tracing::warn!(version = next.version, error = %e, "an invalid committed view skipped");
        return false;
    }
    held.is_none_or(|h| (next.term, next.version) > (h.term, h.version))
}

impl Registry {
    /// The state machine kept in `store`; its view, if any, becomes `node`'s at once (a
    /// restarted node routes by what it last applied).
    pub fn open(store: Store, node: Node) -> Result<Registry, String> {
        let applied: Applied = store.get("applied")?.unwrap_or_default();
        if let Some(v) = &applied.view {
            node.set_view(v.clone());
        }
        Ok(Registry { store, node, applied })
    }

    // openraft's storage traits answer with its `StorageError`, large as it is.
    #[allow(clippy::result_large_err)]
    fn save(&self) -> Result<(), StorageError> {
        self.store.put("applied", &self.applied).map_err(|e| io_error(ErrorVerb::Write, e))
    }

    /// Keeps `snapshot` as the current one, with the applied state when `applied` (one
    /// transaction).
    #[allow(clippy::result_large_err)]
    fn keep(&self, snapshot: &Snapshot<TypeConfig>, applied: bool) -> Result<(), StorageError> {
        let write = |e| io_error(ErrorVerb::Write, e);
        let mut values = vec![("snapshot", wire::to_bytes(&(&snapshot.meta, &*snapshot.snapshot)).map_err(write)?)];
        if applied {
            values.push(("applied", wire::to_bytes(&self.applied).map_err(write)?));
        }
        self.store.put_all(&values).map_err(write)
    }

    fn snapshot(&self) -> Snapshot<TypeConfig> {
        let last = self.applied.last;
        let id = last.map(|l| format!("{}-{}", l.leader_id, l.index)).unwrap_or_else(|| "empty".into());
        Snapshot {
            meta: SnapshotMeta { last_log_id: last, last_membership: self.applied.membership.clone(), snapshot_id: id },
            snapshot: Box::new(RegistrySnapshot { view: self.applied.view.clone() }),
        }
    }
}

impl RaftSnapshotBuilder<TypeConfig> for Registry {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let snapshot = self.snapshot();
        self.keep(&snapshot, false)?;
        Ok(snapshot)
    }
}

impl RaftStateMachine<TypeConfig> for Registry {
    type SnapshotBuilder = Registry;

    async fn applied_state(&mut self) -> Result<(Option<LogId<u64>>, StoredMembership<u64, RaftPeer>), StorageError> {
        Ok((self.applied.last, self.applied.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<()>, StorageError>
    where
        I: IntoIterator<Item = Entry>,
    {
        let mut out = Vec::new();
        let mut changed = false;
        for e in entries {
            self.applied.last = Some(e.log_id);
            match e.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(Command::View(v)) => {
                    if follows(self.applied.view.as_ref(), &v) {
                        self.applied.view = Some(*v);
                        changed = true;
                    }
                }
                EntryPayload::Membership(m) => self.applied.membership = StoredMembership::new(Some(e.log_id), m),
            }
            out.push(());
        }
        self.save()?;
        if changed && let Some(v) = &self.applied.view {
            self.node.set_view(v.clone());
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Registry {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<RegistrySnapshot>, StorageError> {
        Ok(Box::default())
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, RaftPeer>,
        snapshot: Box<RegistrySnapshot>,
    ) -> Result<(), StorageError> {
        self.applied =
            Applied { last: meta.last_log_id, membership: meta.last_membership.clone(), view: snapshot.view.clone() };
        self.keep(&Snapshot { meta: meta.clone(), snapshot: snapshot.clone() }, true)?;
        if let Some(v) = snapshot.view {
            self.node.set_view(v);
        }
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let kept: Option<(SnapshotMeta<u64, RaftPeer>, RegistrySnapshot)> =
            self.store.get("snapshot").map_err(|e| io_error(ErrorVerb::Read, e))?;
        Ok(kept.map(|(meta, data)| Snapshot { meta, snapshot: Box::new(data) }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_later_view_replaces_the_one_held() {
        let v = |term, version| ClusterView { term, version, ..ClusterView::default() };
        assert!(follows(None, &v(0, 0)));
        assert!(follows(Some(&v(1, 5)), &v(1, 6)));
        assert!(follows(Some(&v(1, 5)), &v(2, 0)));
        assert!(!follows(Some(&v(1, 5)), &v(1, 5)));
        assert!(!follows(Some(&v(2, 0)), &v(1, 9)));
        // A later view whose progress names a shard its plan lacks never applies.
        let mut bad = crate::cluster::wire::view::tests::two_stages();
        bad.term = 3;
        bad.registry[0].status.progress.push(crate::cluster::wire::ShardProgress {
            done: true,
            ..crate::cluster::wire::ShardProgress::pending(7, 0, "a", 0)
        });
        assert!(!follows(Some(&v(2, 0)), &bad));
    }
}
