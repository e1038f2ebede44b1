//! [`SqliteStorage`]: the [`Storage`] log in one SQLite table, as k3s's kine keeps it.
//!
//! ```text
//! log(revision INTEGER PRIMARY KEY AUTOINCREMENT,   -- the global revision
//!     key TEXT, created INTEGER, deleted INTEGER,   -- /registry/pods/default/x
//!     prev_revision INTEGER, value BLOB, prev_value BLOB)
//! index log_key_revision(key, revision)             -- get, and a list at a revision
//! meta(name TEXT PRIMARY KEY, value INTEGER)        -- schema_version, compact_revision
//! ```
//!
//! `AUTOINCREMENT` (not a plain rowid) because compaction deletes rows, possibly the
//! newest (a deletion): a plain rowid would then hand out that revision again and a
//! resourceVersion would go backwards. WAL with `synchronous=FULL`: each write is one
//! `BEGIN IMMEDIATE` transaction whose commit is fsync'd before the call returns, and
//! other processes read the file while one writes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use podrun_store::{AppendError, EncodedRow, Row, Storage, Write};
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};

/// The schema this podrun writes.
pub const SCHEMA_VERSION: i64 = 1;

/// The database's file name inside the state directory.
pub const DB_FILE: &str = "store.db";

/// The file every writer touches after each commit, inside the state directory: its
/// modification wakes the watches of every instance (see [`crate::notify`]).
pub const CHANGED_FILE: &str = "store.changed";

/// Errors of the SQLite backend.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// SQLite failed.
    #[error("{path}: {source}")]
    Sqlite {
        /// The database.
        path: PathBuf,
        /// The cause.
        source: rusqlite::Error,
    },
    /// A stored value is not JSON.
    #[error("{path}: corrupt object at revision {revision}: {source}")]
    Corrupt {
        /// The database.
        path: PathBuf,
        /// The row.
        revision: u64,
        /// The cause.
        source: serde_json::Error,
    },
    /// The state directory holds objects in the layout of an older podrun.
    #[error(
        "{dir}: this state directory was written by an older podrun (objects as JSON files under objects/); this podrun keeps them in {DB_FILE} and does not read the old layout. Use another --state-dir, or remove {dir}/objects once no older podrun uses it"
    )]
    OldLayout {
        /// The state directory.
        dir: PathBuf,
    },
    /// The database has a schema this podrun does not know.
    #[error(
        "{path}: store schema version {found}, this podrun reads version {SCHEMA_VERSION}: written by a different podrun; use the podrun that wrote it, or another --state-dir"
    )]
    Schema {
        /// The database.
        path: PathBuf,
        /// The version found.
        found: i64,
    },
    /// The state directory could not be created.
    #[error("{path}: {source}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// The object log in SQLite.
#[derive(Debug)]
pub struct SqliteStorage {
    conn: Connection,
    path: PathBuf,
    changed: Option<std::fs::File>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS log (
    revision INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL,
    created INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    prev_revision INTEGER NOT NULL,
    value BLOB NOT NULL,
    prev_value BLOB
);
CREATE INDEX IF NOT EXISTS log_key_revision ON log (key, revision);
";

/// A key after every key that starts with `prefix` (keys are ASCII: names and
/// namespaces are DNS names).
fn prefix_end(prefix: &str) -> String {
    let mut b = prefix.as_bytes().to_vec();
    while let Some(last) = b.pop() {
        if last < 0x7f {
            b.push(last + 1);
            return String::from_utf8(b).unwrap_or_else(|_| "\u{7f}".into());
        }
    }
    "\u{7f}".into()
}

impl SqliteStorage {
    /// Opens (creating if needed) the store of a state directory: `<dir>/store.db`.
    pub fn open(dir: &Path) -> Result<SqliteStorage, Error> {
        if dir.join("objects").is_dir() {
            return Err(Error::OldLayout {
                dir: dir.to_path_buf(),
            });
        }
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(DB_FILE);
        let err = |source| Error::Sqlite {
            path: path.clone(),
            source,
        };
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(err)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(err)?;
        let tx_conn = &conn;
        tx_conn.execute_batch("BEGIN IMMEDIATE").map_err(err)?;
        let setup = (|| -> Result<(), Error> {
            tx_conn.execute_batch(SCHEMA).map_err(err)?;
            let found: Option<i64> = tx_conn
                .query_row(
                    "SELECT value FROM meta WHERE name = 'schema_version'",
                    [],
                    |r| r.get(0),
                )
                .optional()
                .map_err(err)?;
            match found {
                None => {
                    tx_conn
                        .execute(
                            "INSERT INTO meta (name, value) VALUES ('schema_version', ?1), ('compact_revision', 0)",
                            [SCHEMA_VERSION],
                        )
                        .map_err(err)?;
                }
                Some(v) if v == SCHEMA_VERSION => {}
                Some(found) => {
                    return Err(Error::Schema {
                        path: path.clone(),
                        found,
                    });
                }
            }
            Ok(())
        })();
        match setup {
            Ok(()) => tx_conn.execute_batch("COMMIT").map_err(err)?,
            Err(e) => {
                let _ = tx_conn.execute_batch("ROLLBACK");
                return Err(e);
            }
        }
        // Best effort: without it, other instances still see the write, only later.
        let changed = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(CHANGED_FILE))
            .ok();
        Ok(SqliteStorage {
            conn,
            path,
            changed,
        })
    }

    /// Tells every watching instance that a commit happened: one byte rewritten in
    /// place, after the commit is visible (a wake-up on the WAL file itself can come
    /// before the commit is).
    fn announce(&self) {
        if let Some(f) = &self.changed {
            use std::os::unix::fs::FileExt as _;
            let _ = f.write_at(b"\n", 0);
        }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, source: rusqlite::Error) -> Error {
        Error::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    fn row(&self, r: &rusqlite::Row<'_>) -> rusqlite::Result<RawRow> {
        Ok(RawRow {
            revision: r.get::<_, i64>(0)? as u64,
            key: r.get(1)?,
            created: r.get(2)?,
            deleted: r.get(3)?,
            prev_revision: r.get::<_, i64>(4)? as u64,
            // Text or blob: rows written by hand (the sqlite3 CLI) are usually text.
            value: r.get_ref(5)?.as_bytes()?.to_vec(),
            prev_value: match r.get_ref(6)? {
                rusqlite::types::ValueRef::Null => None,
                v => Some(v.as_bytes()?.to_vec()),
            },
        })
    }

    fn decode(&self, raw: RawRow) -> Result<Row, Error> {
        let corrupt = |source| Error::Corrupt {
            path: self.path.clone(),
            revision: raw.revision,
            source,
        };
        let value = serde_json::from_slice(&raw.value).map_err(corrupt)?;
        let prev_value = match &raw.prev_value {
            Some(p) => Some(serde_json::from_slice(p).map_err(corrupt)?),
            None => None,
        };
        Ok(Row {
            revision: raw.revision,
            key: raw.key,
            created: raw.created,
            deleted: raw.deleted,
            prev_revision: raw.prev_revision,
            value,
            prev_value,
        })
    }

    fn query(&self, sql: &str, params: impl rusqlite::Params) -> Result<Vec<Row>, Error> {
        self.query_raw(sql, params)?
            .into_iter()
            .map(|r| self.decode(r))
            .collect()
    }

    fn query_raw(&self, sql: &str, params: impl rusqlite::Params) -> Result<Vec<RawRow>, Error> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(|e| self.err(e))?;
        stmt.query_map(params, |r| self.row(r))
            .map_err(|e| self.err(e))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.err(e))
    }

    /// The live rows of a range, undecoded. SQLite takes a bare column of a MAX()
    /// aggregate from the row that has the maximum, so `deleted` is the newest row's: the
    /// group scan runs in index order and stops after `limit` live keys.
    fn range_raw(
        &self,
        prefix: &str,
        start_after: &str,
        revision: u64,
        limit: usize,
    ) -> Result<Vec<RawRow>, Error> {
        let sql = "SELECT l.revision, l.key, l.created, l.deleted, l.prev_revision, l.value, NULL
             FROM (SELECT key, MAX(revision) AS rev, deleted FROM log
                   WHERE key >= ?1 AND key < ?2 AND key > ?3 AND revision <= ?4
                   GROUP BY key HAVING deleted = 0 ORDER BY key LIMIT ?5) m
             JOIN log l ON l.revision = m.rev ORDER BY m.key";
        self.query_raw(
            sql,
            params![
                prefix,
                prefix_end(prefix),
                start_after,
                revision as i64,
                limit.min(i64::MAX as usize) as i64
            ],
        )
    }
}

struct RawRow {
    revision: u64,
    key: String,
    created: bool,
    deleted: bool,
    prev_revision: u64,
    value: Vec<u8>,
    prev_value: Option<Vec<u8>>,
}

const COLUMNS: &str = "revision, key, created, deleted, prev_revision, value, prev_value";

impl Storage for SqliteStorage {
    type Error = Error;

    fn revision(&self) -> Result<u64, Error> {
        // The AUTOINCREMENT counter: the newest revision ever handed out, even if
        // compaction removed its row.
        let seq: Option<i64> = self
            .conn
            .prepare_cached("SELECT seq FROM sqlite_sequence WHERE name = 'log'")
            .and_then(|mut s| s.query_row([], |r| r.get(0)).optional())
            .map_err(|e| self.err(e))?;
        Ok(seq.unwrap_or(0) as u64)
    }

    fn compacted(&self) -> Result<u64, Error> {
        let v: i64 = self
            .conn
            .prepare_cached("SELECT value FROM meta WHERE name = 'compact_revision'")
            .and_then(|mut s| s.query_row([], |r| r.get(0)))
            .map_err(|e| self.err(e))?;
        Ok(v as u64)
    }

    fn get(&self, key: &str) -> Result<Option<Row>, Error> {
        // The previous value is for watches; a read does without it.
        let sql = "SELECT revision, key, created, deleted, prev_revision, value, NULL FROM log
                   WHERE key = ?1 ORDER BY revision DESC LIMIT 1";
        Ok(self.query(sql, [key])?.pop().filter(|r| !r.deleted))
    }

    fn range(
        &self,
        prefix: &str,
        start_after: &str,
        revision: u64,
        limit: usize,
    ) -> Result<Vec<Row>, Error> {
        self.range_raw(prefix, start_after, revision, limit)?
            .into_iter()
            .map(|r| self.decode(r))
            .collect()
    }

    fn range_encoded(
        &self,
        prefix: &str,
        start_after: &str,
        revision: u64,
        limit: usize,
    ) -> Result<Vec<EncodedRow>, Error> {
        Ok(self
            .range_raw(prefix, start_after, revision, limit)?
            .into_iter()
            .map(|r| EncodedRow {
                revision: r.revision,
                key: r.key,
                value: r.value,
            })
            .collect())
    }

    fn append(&mut self, write: Write) -> Result<u64, AppendError<Error>> {
        let path = self.path.clone();
        let err = move |source| {
            AppendError::Storage(Error::Sqlite {
                path: path.clone(),
                source,
            })
        };
        let value = serde_json::to_vec(&write.value)
            .map_err(|e| err(rusqlite::Error::ToSqlConversionFailure(Box::new(e))))?;
        let prev_value = write
            .prev_value
            .as_ref()
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| err(rusqlite::Error::ToSqlConversionFailure(Box::new(e))))?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&err)?;
        let latest: Option<(i64, bool)> = tx
            .prepare_cached(
                "SELECT revision, deleted FROM log WHERE key = ?1 ORDER BY revision DESC LIMIT 1",
            )
            .and_then(|mut s| {
                s.query_row([&write.key], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
            })
            .map_err(&err)?;
        let current = match latest {
            Some((rev, false)) => rev as u64,
            _ => 0,
        };
        if current != write.prev_revision {
            return Err(AppendError::Conflict { current });
        }
        tx.prepare_cached(
            "INSERT INTO log (key, created, deleted, prev_revision, value, prev_value) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .and_then(|mut s| {
            s.execute(params![
                write.key,
                write.created,
                write.deleted,
                write.prev_revision as i64,
                value,
                prev_value
            ])
        })
        .map_err(&err)?;
        let rev = tx.last_insert_rowid() as u64;
        tx.commit().map_err(&err)?;
        self.announce();
        Ok(rev)
    }

    fn events(&self, prefix: &str, after: u64, limit: usize) -> Result<Vec<Row>, Error> {
        let sql = format!(
            "SELECT {COLUMNS} FROM log WHERE revision > ?1 AND key >= ?2 AND key < ?3 ORDER BY revision LIMIT ?4"
        );
        self.query(
            &sql,
            params![
                after as i64,
                prefix,
                prefix_end(prefix),
                limit.min(i64::MAX as usize) as i64
            ],
        )
    }

    fn compact(&mut self, revision: u64) -> Result<(), Error> {
        let path = self.path.clone();
        let err = move |source| Error::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&err)?;
        let current: i64 = tx
            .query_row(
                "SELECT value FROM meta WHERE name = 'compact_revision'",
                [],
                |r| r.get(0),
            )
            .map_err(&err)?;
        let head: i64 = tx
            .query_row(
                "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'log'), 0)",
                [],
                |r| r.get(0),
            )
            .map_err(&err)?;
        let revision = (revision as i64).min(head);
        if revision <= current {
            return Ok(());
        }
        tx.execute(
            "DELETE FROM log WHERE revision <= ?1 AND (deleted = 1 OR revision < (
                 SELECT MAX(l2.revision) FROM log l2 WHERE l2.key = log.key AND l2.revision <= ?1))",
            [revision],
        )
        .map_err(&err)?;
        tx.execute(
            "UPDATE meta SET value = ?1 WHERE name = 'compact_revision'",
            [revision],
        )
        .map_err(&err)?;
        tx.commit().map_err(&err)?;
        self.announce();
        Ok(())
    }
}
