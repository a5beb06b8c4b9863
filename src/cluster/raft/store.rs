//! [`Store`]: the Raft log and its metadata (vote, committed and purged ids, this node's Raft
//! id, the state machine's applied state and snapshot) in one redb database: a file under
//! the node's data directory, so a voter restarted with it rejoins with its log and vote;
//! in memory when the node has none. Every write is one committed redb transaction
//! (durable on disk before Raft is told it is). [`LogStore`] is openraft's log storage over it.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{ErrorVerb, LogId, LogState, RaftLogId, RaftLogReader, Vote};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cluster::wire;

use super::types::{Entry, StorageError, TypeConfig, io_error};

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// The database file under a data directory.
pub const FILE: &str = "raft.redb";

/// The Raft database (cheap to clone).
#[derive(Clone)]
pub struct Store(Arc<Database>);

impl Store {
    /// Opens `<dir>/raft.redb` (created with `dir` when missing), or a database in memory.
    pub fn open(dir: Option<&Path>) -> Result<Store, redb::Error> {
        let db = match dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(redb::StorageError::Io)?;
                Database::create(dir.join(FILE))?
            }
            None => Database::builder().create_with_backend(redb::backends::InMemoryBackend::new())?,
        };
        let tx = db.begin_write()?;
        tx.open_table(LOG)?;
        tx.open_table(META)?;
        tx.commit()?;
        Ok(Store(Arc::new(db)))
    }

    /// This node's Raft id: the one kept here, or a new random one (kept from now on).
    pub fn raft_id(&self) -> Result<u64, String> {
        if let Some(id) = self.get::<u64>("raft_id")? {
            return Ok(id);
        }
        let mut b = [0u8; 8];
        getrandom::fill(&mut b).map_err(|e| e.to_string())?;
        // Never 0, which stands for "not started" elsewhere.
        let id = u64::from_le_bytes(b).max(1);
        self.put("raft_id", &id)?;
        Ok(id)
    }

    /// A metadata value.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, String> {
        let read = || -> Result<Option<Vec<u8>>, redb::Error> {
            let tx = self.0.begin_read()?;
            let t = tx.open_table(META)?;
            Ok(t.get(key)?.map(|v| v.value().to_vec()))
        };
        read().map_err(|e| e.to_string())?.map(|b| wire::from_bytes(&b)).transpose()
    }

    /// Sets metadata values in one transaction.
    pub fn put_all(&self, values: &[(&str, Vec<u8>)]) -> Result<(), String> {
        let write = || -> Result<(), redb::Error> {
            let tx = self.0.begin_write()?;
            {
                let mut t = tx.open_table(META)?;
                for (k, v) in values {
                    t.insert(*k, v.as_slice())?;
                }
            }
            tx.commit()?;
            Ok(())
        };
        write().map_err(|e| e.to_string())
    }

    /// Sets one metadata value.
    pub fn put<T: Serialize>(&self, key: &str, value: &T) -> Result<(), String> {
        self.put_all(&[(key, wire::to_bytes(value)?)])
    }

    fn entries(&self, lo: Bound<u64>, hi: Bound<u64>) -> Result<Vec<Entry>, String> {
        let read = || -> Result<Vec<Vec<u8>>, redb::Error> {
            let tx = self.0.begin_read()?;
            let t = tx.open_table(LOG)?;
            let mut out = Vec::new();
            for row in t.range::<u64>((lo, hi))? {
                out.push(row?.1.value().to_vec());
            }
            Ok(out)
        };
        read().map_err(|e| e.to_string())?.iter().map(|b| wire::from_bytes(b)).collect()
    }

    fn last_entry(&self) -> Result<Option<Entry>, String> {
        let read = || -> Result<Option<Vec<u8>>, redb::Error> {
            let tx = self.0.begin_read()?;
            let t = tx.open_table(LOG)?;
            Ok(t.last()?.map(|(_, v)| v.value().to_vec()))
        };
        read().map_err(|e| e.to_string())?.map(|b| wire::from_bytes(&b)).transpose()
    }

    /// Removes log entries in `range`, and sets `meta` in the same transaction.
    fn remove(&self, lo: Bound<u64>, hi: Bound<u64>, meta: Option<(&str, Vec<u8>)>) -> Result<(), String> {
        let write = || -> Result<(), redb::Error> {
            let tx = self.0.begin_write()?;
            {
                let mut t = tx.open_table(LOG)?;
                t.retain_in::<u64, _>((lo, hi), |_, _| false)?;
                if let Some((k, v)) = &meta {
                    tx.open_table(META)?.insert(*k, v.as_slice())?;
                }
            }
            tx.commit()?;
            Ok(())
        };
        write().map_err(|e| e.to_string())
    }

    fn append(&self, entries: &[Entry]) -> Result<(), String> {
        let rows: Vec<(u64, Vec<u8>)> =
            entries.iter().map(|e| Ok((e.get_log_id().index, wire::to_bytes(e)?))).collect::<Result<_, String>>()?;
        let write = || -> Result<(), redb::Error> {
            let tx = self.0.begin_write()?;
            {
                let mut t = tx.open_table(LOG)?;
                for (i, b) in &rows {
                    t.insert(*i, b.as_slice())?;
                }
            }
            tx.commit()?;
            Ok(())
        };
        write().map_err(|e| e.to_string())
    }
}

fn bounds<RB: RangeBounds<u64>>(range: &RB) -> (Bound<u64>, Bound<u64>) {
    (range.start_bound().cloned(), range.end_bound().cloned())
}

/// openraft's log storage on a [`Store`].
#[derive(Clone)]
pub struct LogStore(pub Store);

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let (lo, hi) = bounds(&range);
        self.0.entries(lo, hi).map_err(|e| io_error(ErrorVerb::Read, e))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let read = |e| io_error(ErrorVerb::Read, e);
        let purged: Option<LogId<u64>> = self.0.get("purged").map_err(read)?.flatten();
        let last = self.0.last_entry().map_err(read)?.map(|e| *e.get_log_id()).or(purged);
        Ok(LogState { last_purged_log_id: purged, last_log_id: last })
    }

    async fn get_log_reader(&mut self) -> LogStore {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError> {
        self.0.put("vote", vote).map_err(|e| io_error(ErrorVerb::Write, e))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError> {
        self.0.get("vote").map_err(|e| io_error(ErrorVerb::Read, e))
    }

    async fn save_committed(&mut self, committed: Option<LogId<u64>>) -> Result<(), StorageError> {
        self.0.put("committed", &committed).map_err(|e| io_error(ErrorVerb::Write, e))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<u64>>, StorageError> {
        Ok(self.0.get::<Option<LogId<u64>>>("committed").map_err(|e| io_error(ErrorVerb::Read, e))?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry>,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let done = self.0.append(&entries);
        callback.log_io_completed(done.clone().map_err(std::io::Error::other));
        done.map_err(|e| io_error(ErrorVerb::Write, e))
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), StorageError> {
        self.0.remove(Bound::Included(log_id.index), Bound::Unbounded, None).map_err(|e| io_error(ErrorVerb::Delete, e))
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), StorageError> {
        let meta = wire::to_bytes(&Some(log_id)).map_err(|e| io_error(ErrorVerb::Write, e))?;
        self.0
            .remove(Bound::Unbounded, Bound::Included(log_id.index), Some(("purged", meta)))
            .map_err(|e| io_error(ErrorVerb::Delete, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload};

    fn entry(index: u64) -> Entry {
        Entry { log_id: LogId::new(CommittedLeaderId::new(1, 7), index), payload: EntryPayload::Blank }
    }

    #[test]
    fn a_log_survives_reopening_its_directory() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(Some(dir.path())).unwrap();
        let id = store.raft_id().unwrap();
        store.append(&(1..=5).map(entry).collect::<Vec<_>>()).unwrap();
        store.put("vote", &Vote::<u64>::new(3, 7)).unwrap();
        store.remove(Bound::Included(4), Bound::Unbounded, None).unwrap();
        store
            .remove(
                Bound::Unbounded,
                Bound::Included(1),
                Some(("purged", wire::to_bytes(&Some(entry(1).log_id)).unwrap())),
            )
            .unwrap();
        drop(store);
        let store = Store::open(Some(dir.path())).unwrap();
        assert_eq!(store.raft_id().unwrap(), id);
        assert_eq!(store.get::<Vote<u64>>("vote").unwrap(), Some(Vote::new(3, 7)));
        let kept: Vec<u64> =
            store.entries(Bound::Unbounded, Bound::Unbounded).unwrap().iter().map(|e| e.log_id.index).collect();
        assert_eq!(kept, vec![2, 3]);
        assert_eq!(store.last_entry().unwrap().map(|e| e.log_id.index), Some(3));
        // A node without a data directory keeps it in memory, with an id of its own.
        let memory = Store::open(None).unwrap();
        assert_ne!(memory.raft_id().unwrap(), id);
    }
}
