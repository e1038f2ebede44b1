//! The storage seam: an append-only log of rows, one per write, laid out as k3s's kine
//! lays out its single table. The row's revision is the global revision (and the
//! object's `resourceVersion`); a row records whether it created or deleted its key and
//! which revision it replaced, and carries the previous value so a watch can tell an
//! object that left a selector from one that changed inside it.
//!
//! A backend promises: revisions strictly increase and are never reused (not even after
//! compaction); [`Storage::append`] compares the key's latest revision and appends in one
//! atomic step; a read at revision `R` sees exactly the rows `<= R`.

use std::collections::BTreeMap;
use std::convert::Infallible;

use serde_json::Value;

/// One write, as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// The global revision of this write.
    pub revision: u64,
    /// The object's key (`/registry/pods/default/x`).
    pub key: String,
    /// The write created the key.
    pub created: bool,
    /// The write deleted the key (`value` is then the object's final state).
    pub deleted: bool,
    /// The revision this write replaced (0 for a creation).
    pub prev_revision: u64,
    /// The object after the write (its last state for a deletion).
    pub value: Value,
    /// The object before the write (`None` for a creation). Only [`Storage::events`]
    /// must fill it; reads of the current state may leave it out.
    pub prev_value: Option<Value>,
}

/// A live object as stored, left encoded: what a list reads when it answers JSON as it is
/// (see [`Storage::range_encoded`]).
#[derive(Clone, Debug, PartialEq)]
pub struct EncodedRow {
    /// The revision of the object's latest write.
    pub revision: u64,
    /// The object's key.
    pub key: String,
    /// The object's JSON as stored (one JSON object).
    pub value: Vec<u8>,
}

/// A write to append: the backend gives it the next revision.
#[derive(Clone, Debug, PartialEq)]
pub struct Write {
    /// The object's key.
    pub key: String,
    /// Creates the key: it must not exist (`prev_revision` is 0).
    pub created: bool,
    /// Deletes the key.
    pub deleted: bool,
    /// The key's latest live revision this write was decided against (0: absent).
    pub prev_revision: u64,
    /// The new value (the final state for a deletion).
    pub value: Value,
    /// The value this write replaces.
    pub prev_value: Option<Value>,
}

/// Why an append did not happen.
#[derive(Debug)]
pub enum AppendError<E> {
    /// The key's latest live revision is not the one the write was decided against
    /// (0 if the key is absent): another writer came first.
    Conflict {
        /// The key's latest live revision now.
        current: u64,
    },
    /// The backend failed.
    Storage(E),
}

/// A backend of the object store.
pub trait Storage {
    /// The backend's own error.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The newest revision written (0 for an empty store).
    fn revision(&self) -> Result<u64, Self::Error>;

    /// The newest revision compacted away: history at or below it is gone.
    fn compacted(&self) -> Result<u64, Self::Error>;

    /// The key's latest row, if the key exists (its latest row is not a deletion).
    fn get(&self, key: &str) -> Result<Option<Row>, Self::Error>;

    /// The live objects under `prefix` as of `revision`, in key order, with keys after
    /// `start_after` (`""`: from the start), at most `limit` of them.
    fn range(
        &self,
        prefix: &str,
        start_after: &str,
        revision: u64,
        limit: usize,
    ) -> Result<Vec<Row>, Self::Error>;

    /// [`Storage::range`] with each value left as the stored JSON. A backend that stores
    /// JSON answers it without decoding; the default encodes [`Storage::range`]'s values.
    fn range_encoded(
        &self,
        prefix: &str,
        start_after: &str,
        revision: u64,
        limit: usize,
    ) -> Result<Vec<EncodedRow>, Self::Error> {
        Ok(self
            .range(prefix, start_after, revision, limit)?
            .into_iter()
            .map(|row| EncodedRow {
                revision: row.revision,
                key: row.key,
                value: serde_json::to_vec(&row.value).expect("JSON values serialise"),
            })
            .collect())
    }

    /// Appends the write if the key's latest live revision is `write.prev_revision`,
    /// and returns its revision. Durable when it returns.
    fn append(&mut self, write: Write) -> Result<u64, AppendError<Self::Error>>;

    /// Rows under `prefix` with revisions after `after`, oldest first, at most `limit`.
    fn events(&self, prefix: &str, after: u64, limit: usize) -> Result<Vec<Row>, Self::Error>;

    /// Forgets history at or below `revision`: superseded rows and deletions go, each
    /// key's live row stays. Watches from before it then get 410 Expired.
    fn compact(&mut self, revision: u64) -> Result<(), Self::Error>;
}

/// Storage in memory: the core's reference backend and the test double.
#[derive(Clone, Debug, Default)]
pub struct MemoryStorage {
    log: BTreeMap<u64, Row>,
    /// Every retained revision of each key, ascending.
    history: BTreeMap<String, Vec<u64>>,
    revision: u64,
    compacted: u64,
}

impl MemoryStorage {
    /// An empty store.
    pub fn new() -> MemoryStorage {
        MemoryStorage::default()
    }

    fn latest_live(&self, key: &str) -> Option<&Row> {
        let rev = *self.history.get(key)?.last()?;
        self.log.get(&rev).filter(|r| !r.deleted)
    }
}

impl Storage for MemoryStorage {
    type Error = Infallible;

    fn revision(&self) -> Result<u64, Infallible> {
        Ok(self.revision)
    }

    fn compacted(&self) -> Result<u64, Infallible> {
        Ok(self.compacted)
    }

    fn get(&self, key: &str) -> Result<Option<Row>, Infallible> {
        Ok(self.latest_live(key).cloned())
    }

    fn range(
        &self,
        prefix: &str,
        start_after: &str,
        revision: u64,
        limit: usize,
    ) -> Result<Vec<Row>, Infallible> {
        let mut out = Vec::new();
        let start = if start_after.is_empty() {
            prefix
        } else {
            start_after
        };
        for (key, revs) in self.history.range(start.to_string()..) {
            if !key.starts_with(prefix) {
                break;
            }
            if key.as_str() <= start_after {
                continue;
            }
            let Some(rev) = revs.iter().rev().find(|r| **r <= revision) else {
                continue;
            };
            let row = &self.log[rev];
            if !row.deleted {
                out.push(row.clone());
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    fn append(&mut self, write: Write) -> Result<u64, AppendError<Infallible>> {
        let current = self.latest_live(&write.key).map_or(0, |r| r.revision);
        if current != write.prev_revision {
            return Err(AppendError::Conflict { current });
        }
        self.revision += 1;
        let rev = self.revision;
        self.history.entry(write.key.clone()).or_default().push(rev);
        self.log.insert(
            rev,
            Row {
                revision: rev,
                key: write.key,
                created: write.created,
                deleted: write.deleted,
                prev_revision: write.prev_revision,
                value: write.value,
                prev_value: write.prev_value,
            },
        );
        Ok(rev)
    }

    fn events(&self, prefix: &str, after: u64, limit: usize) -> Result<Vec<Row>, Infallible> {
        Ok(self
            .log
            .range(after + 1..)
            .map(|(_, r)| r)
            .filter(|r| r.key.starts_with(prefix))
            .take(limit)
            .cloned()
            .collect())
    }

    fn compact(&mut self, revision: u64) -> Result<(), Infallible> {
        let revision = revision.min(self.revision);
        if revision <= self.compacted {
            return Ok(());
        }
        let mut gone = Vec::new();
        for revs in self.history.values_mut() {
            // Keep the newest row at or below `revision` unless it is a deletion, and
            // everything above it.
            let keep_from = revs.iter().rposition(|r| *r <= revision);
            if let Some(i) = keep_from {
                let newest_old = revs[i];
                let drop_newest = self.log[&newest_old].deleted;
                let cut = if drop_newest { i + 1 } else { i };
                gone.extend(revs.drain(..cut));
            }
        }
        for r in gone {
            self.log.remove(&r);
        }
        self.history.retain(|_, revs| !revs.is_empty());
        self.compacted = revision;
        Ok(())
    }
}
