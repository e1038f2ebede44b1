//! The controllers' figure: a Deployment of 100 replicas reconciled from nothing to
//! 100 available pods — Deployment → ReplicaSet → 100 pods, each made Running and
//! Ready by a stand-in kubelet, the statuses rolled back up — beside a baseline
//! measured in the same run: the same 100 pod creates and 100 status writes made
//! directly, one after another, with nothing to decide (the fsync'd writes alone).
//!
//! `cargo bench -p podrun-controllers --bench deployment` (optimised build). Each
//! figure is the median of its rounds, each round on a fresh store.

use std::time::{Duration, Instant};

use podrun_controllers::Controllers;
use podrun_model::format_time;
use podrun_store::{EventType, ResourceType as R, WatchOptions, object};
use podrun_store_sqlite::SqliteStore;
use serde_json::{Value, json};

const REPLICAS: usize = 100;
const ROUNDS: usize = 5;
const NODE: &str = "node-a";

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn open(dir: &std::path::Path) -> SqliteStore {
    let store = SqliteStore::open(dir).expect("open store");
    store
        .lock()
        .seed_defaults(podrun_store_sqlite::stamp)
        .expect("seed");
    store
}

fn template() -> Value {
    json!({
        "metadata": {"labels": {"app": "web"}},
        "spec": {"nodeName": NODE, "restartPolicy": "Always",
                 "containers": [{"name": "web", "image": "nginx", "ports": [{"containerPort": 80}]}]}
    })
}

/// What a kubelet writes for a pod that started and became ready.
fn running(mut pod: Value, ip: usize) -> Value {
    let now = format_time(podrun_store_sqlite::now());
    if let Some(m) = pod["metadata"].as_object_mut() {
        m.remove("resourceVersion");
    }
    pod["status"] = json!({
        "phase": "Running",
        "podIP": format!("198.18.{}.{}", ip / 250, ip % 250 + 2),
        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}],
        "containerStatuses": [{"name": "web", "image": "nginx", "imageID": "", "ready": true,
                               "restartCount": 0, "state": {"running": {"startedAt": now}}}],
    });
    pod
}

/// The stand-in kubelet: every new pod of the node becomes Running and Ready.
async fn kubelet(store: SqliteStore) {
    let mut ip = 0;
    let Ok(mut watch) = store.watch(&R::PODS, None, &WatchOptions::default()) else {
        return;
    };
    while let Some(event) = watch.next().await {
        if !matches!(event.kind, EventType::Added) {
            continue;
        }
        let pod = event.object;
        if pod.pointer("/spec/nodeName").and_then(Value::as_str) != Some(NODE) {
            continue;
        }
        ip += 1;
        let ns = object::meta_str(&pod, "namespace").map(str::to_string);
        let name = object::name(&pod).to_string();
        let _ = store.update_status(&R::PODS, ns.as_deref(), &name, running(pod, ip));
    }
}

/// Deployment created → `availableReplicas: 100`, with the controllers running.
async fn reconcile_round() -> Duration {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let store = open(dir.path());
    let controllers = Controllers::start(&store);
    let kubelet = tokio::spawn(kubelet(store.clone()));
    let mut watch = store
        .watch(&R::DEPLOYMENTS, None, &WatchOptions::default())
        .expect("watch");
    let start = Instant::now();
    store
        .create(
            &R::DEPLOYMENTS,
            Some("default"),
            json!({"metadata": {"name": "web"},
                   "spec": {"replicas": REPLICAS, "selector": {"matchLabels": {"app": "web"}},
                            "template": template()}}),
        )
        .expect("create");
    while let Some(event) = watch.next().await {
        if event.object.pointer("/status/availableReplicas") == Some(&json!(REPLICAS)) {
            break;
        }
    }
    let took = start.elapsed();
    kubelet.abort();
    drop(controllers);
    took
}

/// The baseline: the same 100 pods created and made Running directly.
fn baseline_round() -> Duration {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let store = open(dir.path());
    let start = Instant::now();
    for i in 0..REPLICAS {
        let mut pod = template();
        pod["metadata"]["name"] = format!("web-{i:03}").into();
        let created = store
            .create(&R::PODS, Some("default"), pod)
            .expect("create pod");
        let name = object::name(&created).to_string();
        store
            .update_status(&R::PODS, Some("default"), &name, running(created, i))
            .expect("status");
    }
    start.elapsed()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut reconcile = Vec::new();
    let mut baseline = Vec::new();
    for _ in 0..ROUNDS {
        baseline.push(baseline_round().as_secs_f64() * 1e3);
        reconcile.push(runtime.block_on(reconcile_round()).as_secs_f64() * 1e3);
    }
    let (r, b) = (median(reconcile.clone()), median(baseline.clone()));
    println!(
        "Deployment of {REPLICAS} replicas, created → {REPLICAS} available, median of {ROUNDS}: {r:.0} ms \
         (rounds {reconcile:.0?})"
    );
    println!(
        "baseline, {REPLICAS} pod creates + {REPLICAS} status writes made directly: {b:.0} ms \
         (rounds {baseline:.0?}); controllers {:.2}× the baseline",
        r / b
    );
}
