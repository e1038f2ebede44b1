//! The storage conformance suite over SQLite, and what only a file-backed store has:
//! reopening, schema versions, the old layout.

use podrun_store::{AppendError, ResourceType as R, Row, Storage, Store, Write};
use podrun_store_sqlite::{Error, SqliteStorage};
use serde_json::json;
use tempfile::TempDir;

/// A store in a directory that is removed when the test ends.
struct Temp {
    storage: SqliteStorage,
    _dir: TempDir,
}

impl Temp {
    fn new() -> Temp {
        let dir = tempfile::tempdir().expect("tempdir");
        Temp {
            storage: SqliteStorage::open(dir.path()).expect("open"),
            _dir: dir,
        }
    }
}

impl Storage for Temp {
    type Error = Error;
    fn revision(&self) -> Result<u64, Error> {
        self.storage.revision()
    }
    fn compacted(&self) -> Result<u64, Error> {
        self.storage.compacted()
    }
    fn get(&self, key: &str) -> Result<Option<Row>, Error> {
        self.storage.get(key)
    }
    fn range(
        &self,
        prefix: &str,
        start_after: &str,
        revision: u64,
        limit: usize,
    ) -> Result<Vec<Row>, Error> {
        self.storage.range(prefix, start_after, revision, limit)
    }
    fn append(&mut self, write: Write) -> Result<u64, AppendError<Error>> {
        self.storage.append(write)
    }
    fn events(&self, prefix: &str, after: u64, limit: usize) -> Result<Vec<Row>, Error> {
        self.storage.events(prefix, after, limit)
    }
    fn compact(&mut self, revision: u64) -> Result<(), Error> {
        self.storage.compact(revision)
    }
}

podrun_store::storage_suite!(Temp::new());

fn stamp(n: u32) -> podrun_store::Stamp {
    podrun_store::Stamp {
        now: k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).expect("time"),
        uid: format!("uid-{n}"),
    }
}

#[test]
fn objects_and_revisions_survive_reopening() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (rev, compacted) = {
        let mut s = Store::new(SqliteStorage::open(dir.path()).expect("open"));
        s.create(
            &R::NAMESPACES,
            None,
            json!({"metadata": {"name": "default"}}),
            &stamp(0),
        )
        .expect("ns");
        for i in 0..3 {
            s.create(
                &R::CONFIG_MAPS,
                Some("default"),
                json!({"metadata": {"name": format!("c{i}")}}),
                &stamp(i + 1),
            )
            .expect("cm");
        }
        // Compaction removes the newest row (a deletion): its revision must not come back.
        s.delete(
            &R::CONFIG_MAPS,
            Some("default"),
            "c2",
            &Default::default(),
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        )
        .expect("delete");
        let head = s.revision().expect("rev");
        s.compact(head).expect("compact");
        (head, s.compacted().expect("compacted"))
    };
    let mut s = Store::new(SqliteStorage::open(dir.path()).expect("reopen"));
    assert_eq!(s.revision().expect("rev"), rev);
    assert_eq!(s.compacted().expect("compacted"), compacted);
    assert_eq!(
        s.list(&R::CONFIG_MAPS, None, &Default::default())
            .expect("list")
            .items
            .len(),
        2
    );
    let next = s
        .create(
            &R::CONFIG_MAPS,
            Some("default"),
            json!({"metadata": {"name": "c9"}}),
            &stamp(9),
        )
        .expect("create");
    assert_eq!(next["metadata"]["resourceVersion"], (rev + 1).to_string());
}

#[test]
fn another_schema_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    drop(SqliteStorage::open(dir.path()).expect("open"));
    let conn = rusqlite::Connection::open(dir.path().join("store.db")).expect("sqlite");
    conn.execute(
        "UPDATE meta SET value = 7 WHERE name = 'schema_version'",
        [],
    )
    .expect("bump");
    drop(conn);
    let e = SqliteStorage::open(dir.path()).expect_err("schema 7");
    assert!(matches!(e, Error::Schema { found: 7, .. }), "{e}");
    assert!(
        e.to_string()
            .contains("store schema version 7, this podrun reads version 1"),
        "{e}"
    );
}

#[test]
fn the_old_json_layout_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("objects/pods/default")).expect("old layout");
    let e = SqliteStorage::open(dir.path()).expect_err("old layout");
    assert!(matches!(e, Error::OldLayout { .. }));
    assert!(
        e.to_string()
            .contains("written by an older podrun (objects as JSON files under objects/)"),
        "{e}"
    );
    assert!(
        !dir.path().join("store.db").exists(),
        "nothing was created beside it"
    );
}

#[test]
fn two_connections_see_one_sequence() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut a = Store::new(SqliteStorage::open(dir.path()).expect("a"));
    let mut b = Store::new(SqliteStorage::open(dir.path()).expect("b"));
    a.create(
        &R::NAMESPACES,
        None,
        json!({"metadata": {"name": "default"}}),
        &stamp(0),
    )
    .expect("ns");
    let x = a
        .create(
            &R::CONFIG_MAPS,
            Some("default"),
            json!({"metadata": {"name": "x"}}),
            &stamp(1),
        )
        .expect("a");
    let y = b
        .create(
            &R::CONFIG_MAPS,
            Some("default"),
            json!({"metadata": {"name": "y"}}),
            &stamp(2),
        )
        .expect("b");
    let rv = |v: &serde_json::Value| {
        v["metadata"]["resourceVersion"]
            .as_str()
            .expect("rv")
            .parse::<u64>()
            .expect("n")
    };
    assert_eq!(rv(&y), rv(&x) + 1);
    // A writer that decided on stale state loses, whatever connection it used.
    let mut stale = b.get(&R::CONFIG_MAPS, Some("default"), "x").expect("read");
    let mut fresh = stale.clone();
    fresh["data"] = json!({"k": "a"});
    a.update(&R::CONFIG_MAPS, Some("default"), "x", fresh)
        .expect("a writes");
    stale["data"] = json!({"k": "b"});
    let e = b
        .update(&R::CONFIG_MAPS, Some("default"), "x", stale)
        .expect_err("b is stale");
    assert_eq!(e.code(), 409);
}
