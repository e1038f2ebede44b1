//! The store's figures, each beside a baseline measured in the same run:
//! writes/s against raw SQLite inserts with the same durability; list latency at
//! 1,000 and 10,000 pods against a raw select and JSON decode of the same rows; a
//! write's fan-out to 100 watches against one watch; resident memory against the
//! process before it opened the store.
//!
//! `cargo bench -p podrun-store-sqlite --bench store` (optimised build). Each figure
//! is the median of its rounds.

use std::path::Path;
use std::time::{Duration, Instant};

use podrun_store::{ListOptions, ResourceType as R, Stamp, Store, WatchOptions};
use podrun_store_sqlite::{SqliteStorage, SqliteStore};
use serde_json::{Value, json};

const WRITES: usize = 1000;
const ROUNDS: usize = 3;
const LIST_ROUNDS: usize = 11;
const FAN_OUT_WRITES: usize = 30;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn pod(ns: &str, i: usize) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("web-{i:05}"), "namespace": ns,
                     "labels": {"app": "web", "pod-template-hash": "5d4f8c7b9"},
                     "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
        "spec": {"nodeName": "local", "restartPolicy": "Always", "terminationGracePeriodSeconds": 30,
                 "initContainers": [{"name": "istio-proxy", "image": "proxyv2:1.28", "restartPolicy": "Always",
                                     "args": ["proxy", "sidecar"], "ports": [{"containerPort": 15090, "name": "http-envoy-prom"}]}],
                 "containers": [{"name": "web", "image": "nginx:1.29", "command": ["nginx", "-g", "daemon off;"],
                                 "ports": [{"containerPort": 80}],
                                 "readinessProbe": {"httpGet": {"path": "/", "port": 80}, "periodSeconds": 5}}]},
    })
}

fn stamp(i: usize) -> Stamp {
    Stamp {
        now: podrun_store_sqlite::now(),
        uid: format!("00000000-0000-4000-8000-{i:012x}"),
    }
}

fn store(dir: &Path) -> Store<SqliteStorage> {
    let mut s = Store::new(SqliteStorage::open(dir).expect("open"));
    for ns in ["default", "small", "big"] {
        s.create(
            &R::NAMESPACES,
            None,
            json!({"metadata": {"name": ns}}),
            &stamp(0),
        )
        .expect("namespace");
    }
    s
}

fn podrun_writes(root: &Path, round: usize) -> f64 {
    let dir = root.join(format!("writes-{round}"));
    let mut s = store(&dir);
    let start = Instant::now();
    for i in 0..WRITES {
        s.create(&R::PODS, Some("default"), pod("default", i), &stamp(i))
            .expect("create");
    }
    WRITES as f64 / start.elapsed().as_secs_f64()
}

fn raw_writes(root: &Path, round: usize) -> f64 {
    let dir = root.join(format!("raw-{round}"));
    std::fs::create_dir_all(&dir).expect("dir");
    let conn = rusqlite::Connection::open(dir.join("raw.db")).expect("open");
    conn.pragma_update(None, "journal_mode", "WAL")
        .expect("wal");
    conn.pragma_update(None, "synchronous", "FULL")
        .expect("full");
    conn.execute_batch(
        "CREATE TABLE raw (id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL, value BLOB NOT NULL)",
    )
    .expect("table");
    let values: Vec<Vec<u8>> = (0..WRITES)
        .map(|i| serde_json::to_vec(&pod("default", i)).expect("json"))
        .collect();
    let mut stmt = conn
        .prepare("INSERT INTO raw (key, value) VALUES (?1, ?2)")
        .expect("prepare");
    let start = Instant::now();
    for (i, v) in values.iter().enumerate() {
        // One transaction per insert (autocommit), fsync'd as the store's writes are.
        stmt.execute(rusqlite::params![
            format!("/registry/pods/default/web-{i:05}"),
            v
        ])
        .expect("insert");
    }
    WRITES as f64 / start.elapsed().as_secs_f64()
}

fn lists(root: &Path) -> (f64, f64, f64, f64) {
    let dir = root.join("lists");
    let mut s = store(&dir);
    let raw = rusqlite::Connection::open(dir.join("raw.db")).expect("raw");
    raw.execute_batch(
        "PRAGMA journal_mode=WAL; CREATE TABLE objects (key TEXT PRIMARY KEY, value BLOB NOT NULL)",
    )
    .expect("raw table");
    // 1,000 pods in one namespace, 9,000 in another: 10,000 across all namespaces.
    let tx = raw.unchecked_transaction().expect("tx");
    for i in 0..10_000 {
        let ns = if i < 1000 { "small" } else { "big" };
        let p = s
            .create(&R::PODS, Some(ns), pod(ns, i), &stamp(i))
            .expect("create");
        tx.execute(
            "INSERT INTO objects (key, value) VALUES (?1, ?2)",
            rusqlite::params![
                format!("/registry/pods/{ns}/web-{i:05}"),
                serde_json::to_vec(&p).expect("json")
            ],
        )
        .expect("raw insert");
    }
    tx.commit().expect("commit");
    let time_list = |ns: Option<&str>, want: usize| {
        median(
            (0..LIST_ROUNDS)
                .map(|_| {
                    let start = Instant::now();
                    let l = s.list(&R::PODS, ns, &ListOptions::default()).expect("list");
                    assert_eq!(l.items.len(), want);
                    start.elapsed().as_secs_f64() * 1e3
                })
                .collect(),
        )
    };
    let time_raw = |prefix: &str, want: usize| {
        median(
            (0..LIST_ROUNDS)
                .map(|_| {
                    let start = Instant::now();
                    let mut stmt = raw
                        .prepare_cached(
                            "SELECT value FROM objects WHERE key >= ?1 AND key < ?2 ORDER BY key",
                        )
                        .expect("prepare");
                    let end = format!("{}0", prefix.trim_end_matches('/'));
                    let items: Vec<Value> = stmt
                        .query_map([prefix, end.as_str()], |r| r.get::<_, Vec<u8>>(0))
                        .expect("query")
                        .map(|v| serde_json::from_slice(&v.expect("row")).expect("json"))
                        .collect();
                    assert_eq!(items.len(), want);
                    start.elapsed().as_secs_f64() * 1e3
                })
                .collect(),
        )
    };
    let small = time_list(Some("small"), 1000);
    let all = time_list(None, 10_000);
    let raw_small = time_raw("/registry/pods/small/", 1000);
    let raw_all = time_raw("/registry/pods/", 10_000);
    (small, raw_small, all, raw_all)
}

async fn fan_out(root: &Path, watchers: usize) -> f64 {
    let dir = root.join(format!("fan-out-{watchers}"));
    let s = SqliteStore::open(&dir).expect("open");
    s.create(
        &R::NAMESPACES,
        None,
        json!({"metadata": {"name": "default"}}),
    )
    .expect("ns");
    let from = s.lock().revision().expect("rev").to_string();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(u64, Instant)>();
    for _ in 0..watchers {
        let opts = WatchOptions {
            resource_version: Some(from.clone()),
            ..WatchOptions::default()
        };
        let mut w = s.watch(&R::PODS, Some("default"), &opts).expect("watch");
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some(e) = w.next().await {
                if tx.send((e.revision(), Instant::now())).is_err() {
                    return;
                }
            }
        });
    }
    let mut samples = Vec::new();
    for i in 0..FAN_OUT_WRITES {
        let start = Instant::now();
        let p = s
            .create(&R::PODS, Some("default"), pod("default", i))
            .expect("create");
        let rv: u64 = p["metadata"]["resourceVersion"]
            .as_str()
            .expect("rv")
            .parse()
            .expect("n");
        let mut got = 0;
        let mut last = start;
        while got < watchers {
            let (r, at) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .expect("fan-out within 10 s")
                .expect("open");
            if r == rv {
                got += 1;
                last = at;
            }
        }
        samples.push(last.duration_since(start).as_secs_f64() * 1e3);
    }
    median(samples)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        // `cargo bench -- --list` and test discovery: nothing to list.
        return;
    }
    let base = std::env::var_os("STORE_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("store-bench"));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).expect("bench dir");
    let rss_start = rss_kib();

    let mut podrun = Vec::new();
    let mut raw = Vec::new();
    for round in 0..ROUNDS {
        // Interleaved, so both see the same disk and the same neighbours.
        podrun.push(podrun_writes(&base, round));
        raw.push(raw_writes(&base, round));
    }
    let (w_podrun, w_raw) = (median(podrun), median(raw));
    println!(
        "writes/s (one fsync'd transaction each, {WRITES} pods, median of {ROUNDS}): podrun store {w_podrun:.0}, raw SQLite insert {w_raw:.0} ({:.2}x)",
        w_podrun / w_raw
    );

    let (small, raw_small, all, raw_all) = lists(&base);
    println!(
        "list 1,000 pods (one namespace, median of {LIST_ROUNDS}): podrun store {small:.2} ms, raw select + JSON decode {raw_small:.2} ms"
    );
    println!(
        "list 10,000 pods (all namespaces, median of {LIST_ROUNDS}): podrun store {all:.2} ms, raw select + JSON decode {raw_all:.2} ms"
    );
    let rss_data = rss_kib();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let one = rt.block_on(fan_out(&base, 1));
    let hundred = rt.block_on(fan_out(&base, 100));
    println!(
        "write to last watch event (median of {FAN_OUT_WRITES} writes): 100 watches {hundred:.2} ms, 1 watch {one:.2} ms"
    );
    let rss_end = rss_kib();
    println!(
        "RSS: {rss_start} KiB at start, {rss_data} KiB after 10,000 pods and their lists, {rss_end} KiB with 100 watches open"
    );
    let _ = std::fs::remove_dir_all(&base);
}
