//! SIGKILL in the middle of a burst of writes loses no acknowledged write.
//!
//! The test re-runs its own binary as the child (`crash_child_writer`, ignored unless
//! the parent runs it): the child creates 1,000 objects, printing each acknowledged
//! resourceVersion to a pipe; the parent SIGKILLs it after 300 acknowledgements,
//! reopens the store and checks every acknowledged write is there.

use std::io::{BufRead, BufReader, Write as _};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

use podrun_store::{ListOptions, ResourceType as R, Stamp, Store};
use podrun_store_sqlite::SqliteStorage;
use serde_json::json;

const CHILD_DIR: &str = "PODRUN_STORE_CRASH_CHILD_DIR";
const BURST: usize = 1000;
const KILL_AFTER: usize = 300;

fn stamp(i: usize) -> Stamp {
    Stamp {
        now: k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).expect("time"),
        uid: format!("uid-{i}"),
    }
}

#[test]
#[ignore = "the child half of sigkill_mid_burst_keeps_every_acknowledged_write"]
fn crash_child_writer() {
    // Only the parent test runs this half, with the directory to write to.
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let mut store = Store::new(SqliteStorage::open(dir.as_ref()).expect("open"));
    let mut out = std::io::stdout().lock();
    for i in 0..BURST {
        let obj = json!({"metadata": {"name": format!("c{i}")}, "data": {"i": i.to_string()}});
        let created = store
            .create(&R::CONFIG_MAPS, Some("default"), obj, &stamp(i))
            .expect("create");
        let rv = created["metadata"]["resourceVersion"].as_str().expect("rv");
        writeln!(out, "ACK c{i} {rv}").expect("pipe");
        out.flush().expect("pipe");
    }
}

#[test]
fn sigkill_mid_burst_keeps_every_acknowledged_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let mut s = Store::new(SqliteStorage::open(dir.path()).expect("open"));
        s.create(
            &R::NAMESPACES,
            None,
            json!({"metadata": {"name": "default"}}),
            &stamp(BURST),
        )
        .expect("namespace");
    }
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "crash_child_writer",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("child");
    let lines = BufReader::new(child.stdout.take().expect("stdout"));
    let mut acked: Vec<(String, u64)> = Vec::new();
    for line in lines.lines() {
        let line = line.expect("read");
        // The harness prints its own text before the first line.
        let Some(at) = line.find("ACK ") else {
            continue;
        };
        let rest = &line[at + 4..];
        let (name, rv) = rest.split_once(' ').expect("ACK name rv");
        acked.push((name.to_string(), rv.parse().expect("rv")));
        if acked.len() == KILL_AFTER {
            child.kill().expect("SIGKILL");
        }
    }
    let status = child.wait().expect("wait");
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "the child was killed, not finished: {status}"
    );
    assert!(
        acked.len() >= KILL_AFTER && acked.len() < BURST,
        "killed midway: {} acknowledged",
        acked.len()
    );
    assert!(
        acked.windows(2).all(|w| w[0].1 < w[1].1),
        "acknowledged revisions increase"
    );

    let mut s = Store::new(SqliteStorage::open(dir.path()).expect("reopen after SIGKILL"));
    for (name, rv) in &acked {
        let got = s
            .get(&R::CONFIG_MAPS, Some("default"), name)
            .unwrap_or_else(|e| panic!("acknowledged {name} at {rv} is lost: {e}"));
        assert_eq!(got["metadata"]["resourceVersion"], rv.to_string(), "{name}");
    }
    let stored = s
        .list(&R::CONFIG_MAPS, Some("default"), &ListOptions::default())
        .expect("list");
    // At most one write was committed but not yet acknowledged when the signal came.
    assert!(
        stored.items.len() == acked.len() || stored.items.len() == acked.len() + 1,
        "{} stored, {} acknowledged",
        stored.items.len(),
        acked.len()
    );
    let last = acked.last().expect("some").1;
    let head = s.revision().expect("revision");
    assert!(head >= last);
    let next = s
        .create(
            &R::CONFIG_MAPS,
            Some("default"),
            json!({"metadata": {"name": "after"}}),
            &stamp(BURST + 1),
        )
        .expect("write after restart");
    let next_rv: u64 = next["metadata"]["resourceVersion"]
        .as_str()
        .expect("rv")
        .parse()
        .expect("n");
    assert_eq!(
        next_rv,
        head + 1,
        "revisions keep increasing after the restart"
    );
}
