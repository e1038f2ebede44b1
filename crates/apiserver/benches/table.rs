//! Costs of the pure answer paths, each beside a baseline measured in the same run:
//! * a Table of 1,000 pods with native sidecars (`kubectl get pods`) printed from the
//!   pods' JSON text as a list hands it over, against decoding that text into JSON values
//!   first and printing the Table of the values;
//! * a strategic merge patch shaped like `kubectl apply`'s on a Deployment, against a JSON
//!   merge patch of the same document;
//! * building every OpenAPI document, done once per server start.
//!
//! `cargo bench -p podrun-apiserver --bench table` prints p50/p99 over `RUNS` runs.

use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;
use podrun_apiserver::backend::encode_object;
use podrun_apiserver::catalogue::lookup;
use podrun_apiserver::table::{self, IncludeObject};
use podrun_apiserver::{openapi, patch};
use serde_json::value::RawValue;
use serde_json::{Value, json};

const RUNS: usize = 50;

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn measure(name: &str, mut f: impl FnMut()) -> Duration {
    let mut v: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    let p50 = pct(&mut v, 0.5);
    println!(
        "{name:<52} p50 {:>10.1?}  p99 {:>10.1?}",
        p50,
        pct(&mut v, 0.99)
    );
    p50
}

fn pod(i: usize) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("sleep-6d4b9c8f7d-{i:05}"), "namespace": "default", "uid": format!("u-{i}"),
                     "resourceVersion": format!("{}", 1000 + i), "creationTimestamp": "2026-11-25T19:00:00Z",
                     "labels": {"app": "sleep", "pod-template-hash": "6d4b9c8f7d"}},
        "spec": {"nodeName": "local",
                 "initContainers": [{"name": "istio-init", "image": "proxyv2"}, {"name": "istio-proxy", "image": "proxyv2", "restartPolicy": "Always"}],
                 "containers": [{"name": "sleep", "image": "curl", "command": ["/bin/sleep", "infinity"]}]},
        "status": {"phase": "Running", "podIP": "198.18.0.7", "podIPs": [{"ip": "198.18.0.7"}],
            "conditions": [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}],
            "initContainerStatuses": [
                {"name": "istio-init", "ready": true, "restartCount": 0, "image": "proxyv2", "imageID": "", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                {"name": "istio-proxy", "ready": true, "started": true, "restartCount": 1, "image": "proxyv2", "imageID": "", "state": {"running": {}},
                 "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2026-11-25T19:01:00Z"}}}],
            "containerStatuses": [{"name": "sleep", "ready": true, "started": true, "restartCount": 0, "image": "curl", "imageID": "", "state": {"running": {}}}]}})
}

fn main() {
    let pods: Vec<Value> = (0..1000).map(pod).collect();
    let resource = lookup("", "v1", "pods").unwrap();
    let now: Timestamp = "2026-11-25T20:00:00Z".parse().unwrap();
    // A list's items as the store hands them over: JSON text.
    let texts: Vec<Box<RawValue>> = pods.iter().map(encode_object).collect();
    let base = measure(
        "baseline: the pods' text decoded, Table of the values",
        || {
            let values: Vec<Value> = texts
                .iter()
                .map(|t| serde_json::from_str(t.get()).unwrap())
                .collect();
            let t = table::table(
                resource,
                &values,
                "5000",
                None,
                IncludeObject::Metadata,
                now,
            )
            .unwrap();
            std::hint::black_box(serde_json::to_vec(&t).unwrap());
        },
    );
    let t = measure("Table of 1,000 pods from their text, serialised", || {
        let t = table::table_encoded(resource, &texts, "5000", None, IncludeObject::Metadata, now)
            .unwrap();
        std::hint::black_box(t);
    });
    println!(
        "{:<52} {:.2}x",
        "Table from text / from decoded values",
        t.as_secs_f64() / base.as_secs_f64()
    );

    let deploy = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "sleep", "namespace": "default",
        "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "sleep"}},
                 "template": {"metadata": {"labels": {"app": "sleep"}},
                              "spec": {"serviceAccountName": "sleep", "containers": [{"name": "sleep", "image": "curl", "env": [{"name": "A", "value": "1"}]}]}}}});
    let smp = br#"{"metadata":{"annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{\"x\":1}"}},
        "spec":{"replicas":2,"template":{"spec":{"serviceAccountName":null,
        "$setElementOrder/containers":[{"name":"sleep"},{"name":"istio-proxy"}],
        "containers":[{"name":"istio-proxy","image":"proxyv2"},{"name":"sleep","env":[{"name":"B","value":"2"}]}]}}}}"#;
    let merge = br#"{"metadata":{"annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{\"x\":1}"}},
        "spec":{"replicas":2,"template":{"spec":{"serviceAccountName":null,
        "containers":[{"name":"sleep","image":"curl","env":[{"name":"A","value":"1"},{"name":"B","value":"2"}]},{"name":"istio-proxy","image":"proxyv2"}]}}}}"#;
    let base = measure("baseline: JSON merge patch on a Deployment", || {
        std::hint::black_box(patch::merge_patch(&deploy, merge).unwrap());
    });
    let s = measure("strategic merge patch on a Deployment", || {
        std::hint::black_box(
            patch::strategic_merge_patch(&deploy, smp, "io.k8s.api.apps.v1.Deployment").unwrap(),
        );
    });
    println!(
        "{:<52} {:.2}x",
        "strategic / merge",
        s.as_secs_f64() / base.as_secs_f64()
    );

    measure("OpenAPI index + 5 documents, built and serialised", || {
        std::hint::black_box(serde_json::to_vec(&openapi::index()).unwrap());
        for (g, v) in [
            ("", "v1"),
            ("apps", "v1"),
            ("batch", "v1"),
            ("events.k8s.io", "v1"),
            ("discovery.k8s.io", "v1"),
        ] {
            std::hint::black_box(serde_json::to_vec(&openapi::document(g, v).unwrap()).unwrap());
        }
    });
}
