//! The controllers on a real SQLite store, with a stand-in kubelet: a task that runs
//! nothing but answers for node `node-a` as a kubelet does through the store — a new
//! pod becomes Running and Ready with an IP, a pod labelled `test/succeed-after-ms`
//! ends Succeeded after that long, and a pod marked for deletion is removed (the
//! kubelet's final delete with grace period 0).
//!
//! A Job deleted by another process (this test binary run again as a child, as
//! `podrun delete job` from another terminal) stays deleted and its pods go; a
//! Deployment's deleted pod is replaced within 2 s; a watch that falls out of the
//! store's window recovers by listing again, without losing a pod's completion.

use std::process::Command;
use std::time::{Duration, Instant};

use podrun_controllers::Controllers;
use podrun_model::format_time;
use podrun_store::{
    DeleteOptions, EventType, ListOptions, ResourceType as R, WatchOptions, object,
};
use podrun_store_sqlite::SqliteStore;
use serde_json::{Value, json};

const CHILD_DIR: &str = "PODRUN_CONTROLLERS_CHILD_DIR";
const NODE: &str = "node-a";

fn open(dir: &std::path::Path) -> SqliteStore {
    let store = SqliteStore::open(dir).expect("open store");
    store
        .lock()
        .seed_defaults(podrun_store_sqlite::stamp)
        .expect("seed");
    store
}

/// The stand-in kubelet for `node-a`.
async fn kubelet(store: SqliteStore) {
    let mut ip = 10u32;
    loop {
        let Ok(mut watch) = store.watch(&R::PODS, None, &WatchOptions::default()) else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        while let Some(event) = watch.next().await {
            if matches!(event.kind, EventType::Deleted | EventType::Bookmark) {
                continue;
            }
            if event.kind == EventType::Error {
                break;
            }
            let pod = event.object;
            if pod.pointer("/spec/nodeName").and_then(Value::as_str) != Some(NODE) {
                continue;
            }
            let ns = object::meta_str(&pod, "namespace").map(str::to_string);
            let name = object::name(&pod).to_string();
            if object::is_deleting(&pod) {
                let opts = DeleteOptions {
                    grace_period_seconds: Some(0),
                    uid: Some(object::uid(&pod).to_string()),
                    ..DeleteOptions::default()
                };
                let _ = store.delete(&R::PODS, ns.as_deref(), &name, &opts);
                continue;
            }
            if pod.pointer("/status/phase").and_then(Value::as_str) != Some("Pending") {
                continue;
            }
            ip += 1;
            let now = format_time(podrun_store_sqlite::now());
            let mut running = pod.clone();
            running["metadata"]
                .as_object_mut()
                .expect("metadata")
                .remove("resourceVersion");
            running["status"] = json!({
                "phase": "Running",
                "podIP": format!("198.18.0.{ip}"),
                "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}],
                "containerStatuses": [{"name": "c", "image": "x", "imageID": "", "ready": true,
                                       "restartCount": 0, "state": {"running": {"startedAt": now}}}],
            });
            let _ = store.update_status(&R::PODS, ns.as_deref(), &name, running.clone());
            let after = pod
                .pointer("/metadata/labels/test~1succeed-after-ms")
                .and_then(Value::as_str)
                .and_then(|s| s.parse::<u64>().ok());
            if let Some(ms) = after {
                let store = store.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    let now = format_time(podrun_store_sqlite::now());
                    running["status"]["phase"] = "Succeeded".into();
                    running["status"]["conditions"][0]["status"] = "False".into();
                    running["status"]["containerStatuses"][0]["state"] = json!({"terminated": {"exitCode": 0, "reason": "Completed", "finishedAt": now}});
                    let _ = store.update_status(&R::PODS, ns.as_deref(), &name, running);
                });
            }
        }
    }
}

fn pods(store: &SqliteStore) -> Vec<Value> {
    store
        .list(&R::PODS, Some("default"), &ListOptions::default())
        .expect("list")
        .items
}

fn phase(pod: &Value) -> &str {
    pod.pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// Polls `f` every 10 ms until it holds or `limit` passes.
async fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    f()
}

fn template(labels: Value) -> Value {
    json!({
        "metadata": {"labels": labels},
        "spec": {"nodeName": NODE, "restartPolicy": "Never",
                 "containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}]}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployments_deleted_pod_is_replaced_within_2s() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let _controllers = Controllers::start(&store);
    tokio::spawn(kubelet(store.clone()));
    let mut tpl = template(json!({"app": "web"}));
    tpl["spec"]["restartPolicy"] = "Always".into();
    let deployment = json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": tpl}
    });
    store
        .create(&R::DEPLOYMENTS, Some("default"), deployment)
        .expect("create deployment");
    let running = |store: &SqliteStore| -> Vec<String> {
        pods(store)
            .iter()
            .filter(|p| phase(p) == "Running" && !object::is_deleting(p))
            .map(|p| object::name(p).to_string())
            .collect()
    };
    assert!(
        eventually(Duration::from_secs(10), || running(&store).len() == 2).await,
        "two pods run: {:?}",
        pods(&store)
    );
    let before = running(&store);
    let rs = store
        .list(&R::REPLICA_SETS, Some("default"), &ListOptions::default())
        .expect("list")
        .items;
    assert_eq!(rs.len(), 1);
    assert!(
        before
            .iter()
            .all(|p| p.starts_with(&format!("{}-", object::name(&rs[0])))),
        "pods are named after the ReplicaSet: {before:?}"
    );

    let start = Instant::now();
    store
        .delete(
            &R::PODS,
            Some("default"),
            &before[0],
            &DeleteOptions::default(),
        )
        .expect("delete pod");
    let replaced = eventually(Duration::from_secs(2), || {
        let now = running(&store);
        now.len() == 2 && !now.contains(&before[0])
    })
    .await;
    let took = start.elapsed();
    assert!(replaced, "replaced within 2 s: {:?}", pods(&store));
    eprintln!("deleted pod replaced in {took:?}");
    // The Deployment's status follows.
    assert!(
        eventually(Duration::from_secs(2), || {
            store
                .get(&R::DEPLOYMENTS, Some("default"), "web")
                .is_ok_and(|d| {
                    d.pointer("/status/availableReplicas") == Some(&json!(2))
                        && d.pointer("/status/updatedReplicas") == Some(&json!(2))
                })
        })
        .await
    );
}

#[test]
#[ignore = "the child half of a_job_deleted_from_another_process_stays_deleted_and_its_pods_stop"]
fn child_deletes_the_job() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    // Another process: its own connection to the state directory, no runtime.
    let store = SqliteStore::open(dir.as_ref()).expect("open");
    let deleted = store
        .delete(&R::JOBS, Some("default"), "work", &DeleteOptions::default())
        .expect("delete job");
    assert!(deleted.gone);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_deleted_from_another_process_stays_deleted_and_its_pods_stop() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let _controllers = Controllers::start(&store);
    tokio::spawn(kubelet(store.clone()));
    let job = json!({
        "metadata": {"name": "work"},
        "spec": {"parallelism": 2, "completions": 4, "backoffLimit": 6,
                 "template": template(json!({"app": "work"}))}
    });
    store
        .create(&R::JOBS, Some("default"), job)
        .expect("create job");
    assert!(
        eventually(Duration::from_secs(10), || {
            pods(&store)
                .iter()
                .filter(|p| phase(p) == "Running")
                .count()
                == 2
        })
        .await,
        "two pods run: {:?}",
        pods(&store)
    );
    assert!(
        eventually(Duration::from_secs(2), || {
            store
                .get(&R::JOBS, Some("default"), "work")
                .is_ok_and(|j| j.pointer("/status/active") == Some(&json!(2)))
        })
        .await
    );
    let job = store.get(&R::JOBS, Some("default"), "work").expect("job");
    assert_eq!(
        job.pointer("/metadata/labels/batch.kubernetes.io~1job-name"),
        Some(&json!("work")),
        "the Job carries upstream's labels: {job}"
    );
    assert_eq!(
        job.pointer("/metadata/labels/batch.kubernetes.io~1controller-uid"),
        job.pointer("/metadata/uid")
    );

    let status = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "child_deletes_the_job",
            "--exact",
            "--ignored",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir.path())
        .status()
        .expect("child");
    assert!(status.success(), "the other process deleted the Job");

    assert!(
        eventually(Duration::from_secs(5), || pods(&store).is_empty()).await,
        "the Job's pods are deleted: {:?}",
        pods(&store)
    );
    // Longer than the controllers' reaction time and the first pod-failure back-off
    // would allow: nothing comes back.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        store
            .get(&R::JOBS, Some("default"), "work")
            .unwrap_err()
            .code(),
        404,
        "the Job stays deleted"
    );
    assert!(
        pods(&store).is_empty(),
        "no pod comes back: {:?}",
        pods(&store)
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_watch_that_falls_behind_relists_without_losing_a_pods_completion() {
    let dir = tempfile::tempdir().expect("tempdir");
    drop(open(dir.path()));
    // A window of 20 revisions and room for 2 unread rows per watch: a burst of writes
    // leaves every watch behind the window.
    let store = SqliteStore::open(dir.path())
        .expect("open")
        .with_retained_revisions(20)
        .with_fan_out_buffer(2);
    let controllers = Controllers::start(&store);
    let job = json!({
        "metadata": {"name": "once"},
        "spec": {"completions": 1, "template": template(json!({"app": "once"}))}
    });
    store
        .create(&R::JOBS, Some("default"), job)
        .expect("create job");
    assert!(
        eventually(Duration::from_secs(10), || pods(&store).len() == 1).await,
        "the Job's pod is created"
    );
    let pod = pods(&store).remove(0);
    let relists_before = controllers.informers().pods.relists();

    // As the kubelet would: the pod ends Succeeded, and — with no chance for any task
    // to run (one thread) — 200 more writes follow.
    let mut done = pod.clone();
    done["status"] = json!({"phase": "Succeeded", "containerStatuses": [{"name": "c", "image": "x",
        "imageID": "", "ready": false, "restartCount": 0,
        "state": {"terminated": {"exitCode": 0, "finishedAt": format_time(podrun_store_sqlite::now())}}}]});
    store
        .update_status(&R::PODS, Some("default"), object::name(&pod), done)
        .expect("pod succeeded");
    for i in 0..200 {
        let cm = json!({"metadata": {"name": format!("noise-{i}")}, "data": {"i": i.to_string()}});
        store
            .create(&R::CONFIG_MAPS, Some("default"), cm)
            .expect("noise");
    }

    let complete = eventually(Duration::from_secs(5), || {
        store.get(&R::JOBS, Some("default"), "once").is_ok_and(|j| {
            j.pointer("/status/conditions")
                .and_then(Value::as_array)
                .is_some_and(|c| {
                    c.iter()
                        .any(|c| c["type"] == "Complete" && c["status"] == "True")
                })
                && j.pointer("/status/succeeded") == Some(&json!(1))
        })
    })
    .await;
    assert!(
        controllers.informers().pods.relists() > relists_before,
        "the pod watch fell out of the window and listed again"
    );
    assert!(
        complete,
        "the Job saw its pod's completion: {:?}",
        store.get(&R::JOBS, Some("default"), "once")
    );
}

fn annotation(obj: &Value, key: &str) -> Option<String> {
    obj.pointer("/metadata/annotations")
        .and_then(|a| a.get(key))
        .and_then(Value::as_str)
        .map(str::to_string)
}

fn condition_reason(d: &Value, type_: &str) -> Option<String> {
    d.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .and_then(|c| c["reason"].as_str())
        .map(str::to_string)
}

/// A Deployment rolls to a new template and back: revisions 1, 2, 3, the old
/// ReplicaSet reused for the rollback with its earlier revision kept, and the status
/// `kubectl rollout status` reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_rolls_out_and_back_with_revisions_and_conditions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let _controllers = Controllers::start(&store);
    tokio::spawn(kubelet(store.clone()));
    let mut tpl = template(json!({"app": "roll"}));
    tpl["spec"]["restartPolicy"] = "Always".into();
    let deployment = json!({
        "metadata": {"name": "roll", "annotations": {"kubernetes.io/change-cause": "first"}},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "roll"}}, "template": tpl}
    });
    store
        .create(&R::DEPLOYMENTS, Some("default"), deployment)
        .expect("create deployment");
    let deployment = || {
        store
            .get(&R::DEPLOYMENTS, Some("default"), "roll")
            .expect("get")
    };
    let replica_sets = || {
        store
            .list(&R::REPLICA_SETS, Some("default"), &ListOptions::default())
            .expect("list")
            .items
    };
    let complete = |revision: &str| {
        let d = deployment();
        let generation = d.pointer("/metadata/generation").cloned();
        annotation(&d, "deployment.kubernetes.io/revision").as_deref() == Some(revision)
            && d.pointer("/status/observedGeneration").cloned() == generation
            && d.pointer("/status/updatedReplicas") == Some(&json!(2))
            && d.pointer("/status/replicas") == Some(&json!(2))
            && d.pointer("/status/availableReplicas") == Some(&json!(2))
            && condition_reason(&d, "Progressing").as_deref() == Some("NewReplicaSetAvailable")
            && condition_reason(&d, "Available").as_deref() == Some("MinimumReplicasAvailable")
    };
    assert!(
        eventually(Duration::from_secs(10), || complete("1")).await,
        "revision 1 complete: {}",
        deployment()
    );
    let first = replica_sets();
    assert_eq!(first.len(), 1);
    let first_name = object::name(&first[0]).to_string();
    assert_eq!(
        annotation(&first[0], "deployment.kubernetes.io/revision").as_deref(),
        Some("1")
    );
    assert_eq!(
        annotation(&first[0], "deployment.kubernetes.io/desired-replicas").as_deref(),
        Some("2")
    );
    assert_eq!(
        annotation(&first[0], "deployment.kubernetes.io/max-replicas").as_deref(),
        Some("3")
    );
    assert_eq!(
        annotation(&first[0], "kubernetes.io/change-cause").as_deref(),
        Some("first")
    );

    // A new template: revision 2 on a new ReplicaSet, the old one scaled to 0.
    let change = |image: &str, cause: &str| {
        let mut d = deployment();
        d["spec"]["template"]["spec"]["containers"][0]["image"] = image.into();
        d["metadata"]["annotations"]["kubernetes.io/change-cause"] = cause.into();
        store
            .update(&R::DEPLOYMENTS, Some("default"), "roll", d)
            .expect("update");
    };
    change("busybox:2", "second");
    assert!(
        eventually(Duration::from_secs(15), || complete("2")).await,
        "revision 2 complete: {}",
        deployment()
    );
    let rs = replica_sets();
    assert_eq!(rs.len(), 2, "{rs:?}");
    let second = rs
        .iter()
        .find(|r| object::name(r) != first_name)
        .expect("new");
    assert_eq!(
        annotation(second, "deployment.kubernetes.io/revision").as_deref(),
        Some("2")
    );
    assert_eq!(
        annotation(second, "kubernetes.io/change-cause").as_deref(),
        Some("second")
    );
    let old = rs
        .iter()
        .find(|r| object::name(r) == first_name)
        .expect("old");
    assert_eq!(old.pointer("/spec/replicas"), Some(&json!(0)));

    // Back to the first template: its ReplicaSet comes back as revision 3.
    change("busybox", "third");
    assert!(
        eventually(Duration::from_secs(15), || complete("3")).await,
        "revision 3 complete: {}",
        deployment()
    );
    let rs = replica_sets();
    assert_eq!(rs.len(), 2, "no third ReplicaSet: {rs:?}");
    let back = rs
        .iter()
        .find(|r| object::name(r) == first_name)
        .expect("reused");
    assert_eq!(
        annotation(back, "deployment.kubernetes.io/revision").as_deref(),
        Some("3")
    );
    assert_eq!(
        annotation(back, "deployment.kubernetes.io/revision-history").as_deref(),
        Some("1")
    );
    assert_eq!(back.pointer("/spec/replicas"), Some(&json!(2)));
}
