//! The SQLite backend answers exactly as the in-memory reference does, over a long
//! pseudo-random sequence of creates, updates, status updates, deletes with finalizers
//! and compactions: every answer, every list at every retained revision, every watch.

use k8s_openapi::jiff::Timestamp;
use podrun_store::{
    DeleteOptions, ListOptions, MemoryStorage, ResourceType as R, Stamp, Storage, Store,
    WatchOptions,
};
use podrun_store_sqlite::SqliteStorage;
use serde_json::{Value, json};

/// A small deterministic generator (xorshift), so a failure replays.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn step<S: Storage>(s: &mut Store<S>, op: u64, name: &str, i: u64) -> Result<Value, String> {
    let now = Timestamp::from_second(1_800_000_000 + i as i64).expect("time");
    let stamp = Stamp {
        now,
        uid: format!("uid-{i}"),
    };
    let r = match op {
        0 | 1 => {
            let mut p = json!({"metadata": {"name": name, "labels": {"n": (i % 3).to_string()}},
                               "spec": {"nodeName": if i.is_multiple_of(2) { "a" } else { "b" }}});
            if i.is_multiple_of(5) {
                p["metadata"]["finalizers"] = json!(["example.com/hold"]);
            }
            s.create(&R::PODS, Some("default"), p, &stamp)
        }
        2 | 3 => s.get(&R::PODS, Some("default"), name).and_then(|mut p| {
            p["metadata"]["labels"]["n"] = json!((i % 4).to_string());
            if op == 3 {
                p["spec"]["x"] = json!(i);
                p["metadata"]["finalizers"] = json!([]);
            }
            s.update(&R::PODS, Some("default"), name, p)
        }),
        4 => s.get(&R::PODS, Some("default"), name).and_then(|mut p| {
            p["status"] = json!({"phase": if i.is_multiple_of(2) { "Running" } else { "Failed" }});
            s.update_status(&R::PODS, Some("default"), name, p)
        }),
        5 => {
            let opts = DeleteOptions {
                grace_period_seconds: Some((i % 3) as i64),
                ..DeleteOptions::default()
            };
            s.delete(&R::PODS, Some("default"), name, &opts, now)
                .map(|d| json!({"gone": d.gone, "object": d.object}))
        }
        _ => {
            let head = s.revision().expect("rev");
            s.compact(head.saturating_sub(i % 20))
                .map(|()| json!({"compacted": s.compacted().expect("c")}))
        }
    };
    r.map_err(|e| format!("{} {}", e.code(), e.message()))
}

#[test]
fn sqlite_answers_as_the_reference_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut mem = Store::new(MemoryStorage::new());
    let mut sql = Store::new(SqliteStorage::open(dir.path()).expect("open"));
    let ns = json!({"metadata": {"name": "default"}});
    let stamp = Stamp {
        now: Timestamp::UNIX_EPOCH,
        uid: "ns".into(),
    };
    assert_eq!(
        mem.create(&R::NAMESPACES, None, ns.clone(), &stamp)
            .expect("mem"),
        sql.create(&R::NAMESPACES, None, ns, &stamp).expect("sql")
    );
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let (mut ok, mut failed) = (0, 0);
    for i in 0..600 {
        let op = rng.below(7);
        let name = format!("p{}", rng.below(8));
        let a = step(&mut mem, op, &name, i);
        let b = step(&mut sql, op, &name, i);
        assert_eq!(a, b, "step {i}: op {op} on {name}");
        if a.is_ok() { ok += 1 } else { failed += 1 }
    }
    // The sequence exercises both outcomes, and compaction.
    assert!(ok > 200 && failed > 50, "{ok} answered, {failed} refused");
    let (head, compacted) = (mem.revision().expect("rev"), mem.compacted().expect("c"));
    assert_eq!(
        (sql.revision().expect("rev"), sql.compacted().expect("c")),
        (head, compacted)
    );
    assert!(compacted > 0);
    for rev in compacted..=head {
        for (labels, fields) in [
            ("", ""),
            ("n=1", ""),
            ("", "spec.nodeName=a"),
            ("n in (0,2)", "status.phase!=Failed"),
        ] {
            let filter = podrun_store::Filter::parse(&R::PODS, labels, fields).expect("filter");
            let opts = ListOptions {
                filter,
                exact_revision: Some(rev),
                limit: 3,
                ..ListOptions::default()
            };
            let a = mem
                .list(&R::PODS, Some("default"), &opts)
                .map_err(|e| e.message().to_string());
            let b = sql
                .list(&R::PODS, Some("default"), &opts)
                .map_err(|e| e.message().to_string());
            assert_eq!(a, b, "list at {rev} {labels:?} {fields:?}");
        }
    }
    let filter = podrun_store::Filter::parse(&R::PODS, "n!=3", "").expect("filter");
    let opts = WatchOptions {
        filter,
        resource_version: Some(compacted.to_string()),
        ..WatchOptions::default()
    };
    let (mut wa, _) = mem.watch(&R::PODS, Some("default"), &opts).expect("watch");
    let (mut wb, _) = sql.watch(&R::PODS, Some("default"), &opts).expect("watch");
    let (ea, eb) = (
        wa.catch_up(&mem).expect("events"),
        wb.catch_up(&sql).expect("events"),
    );
    assert!(!ea.is_empty());
    assert_eq!(ea, eb);
}
