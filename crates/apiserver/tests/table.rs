//! Table output snapshots: each fixture object is printed as a row of cells the way the
//! Kubernetes API server's printers compute them, at a fixed `now`.

use k8s_openapi::jiff::Timestamp;
use podrun_apiserver::backend::encode_object;
use podrun_apiserver::catalogue::lookup;
use podrun_apiserver::table::{self, IncludeObject};
use serde_json::{Value, json};

const NOW: &str = "2026-11-25T20:00:00Z";
const CREATED: &str = "2026-11-25T19:57:00Z";

fn now() -> Timestamp {
    NOW.parse().unwrap()
}

fn meta(name: &str) -> Value {
    json!({"name": name, "namespace": "default", "uid": "u", "resourceVersion": "7", "creationTimestamp": CREATED, "labels": {"app": name}})
}

/// Renders header and rows as kubectl does with `-o wide` (all cells, `|`-separated).
fn render(group: &str, plural: &str, objects: &[Value]) -> String {
    let r = lookup(group, "v1", plural).unwrap();
    let t = table::table(r, objects, "42", None, IncludeObject::Metadata, now()).unwrap();
    // A list's Table, printed from the objects' JSON text, is the same answer byte for byte.
    let encoded: Vec<_> = objects.iter().map(encode_object).collect();
    for include in [IncludeObject::Metadata, IncludeObject::None] {
        let want = table::table(r, objects, "42", Some("c"), include, now()).unwrap();
        let got = table::table_encoded(r, &encoded, "42", Some("c"), include, now()).unwrap();
        assert_eq!(
            String::from_utf8(got).unwrap(),
            serde_json::to_string(&want).unwrap(),
            "{plural} with {include:?}"
        );
    }
    let mut out = String::new();
    let header: Vec<String> = t["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let name = c["name"].as_str().unwrap().to_uppercase();
            if c["priority"] == 1 {
                format!("{name}*")
            } else {
                name
            }
        })
        .collect();
    out.push_str(&header.join(" | "));
    out.push('\n');
    for row in t["rows"].as_array().unwrap() {
        let cells: Vec<String> = row["cells"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| match c {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect();
        assert_eq!(cells.len(), header.len(), "one cell per column");
        out.push_str(&cells.join(" | "));
        if let Some(c) = row.get("conditions") {
            out.push_str(&format!("  [conditions {c}]"));
        }
        out.push('\n');
    }
    out
}

fn running(name: &str, ready: bool) -> Value {
    json!({"name": name, "ready": ready, "restartCount": 0, "started": true, "image": "i", "imageID": "",
           "state": {"running": {"startedAt": "2026-11-25T19:57:05Z"}}})
}

fn sidecar_pod_spec() -> Value {
    json!({"nodeName": "local",
           "initContainers": [{"name": "istio-init", "image": "proxyv2"}, {"name": "istio-proxy", "image": "proxyv2", "restartPolicy": "Always"}],
           "containers": [{"name": "sleep", "image": "curl"}]})
}

#[test]
fn pods() {
    let init_done = json!({"name": "istio-init", "ready": true, "restartCount": 0, "image": "i", "imageID": "",
        "state": {"terminated": {"exitCode": 0, "reason": "Completed", "finishedAt": "2026-11-25T19:57:03Z"}}});
    let pods = vec![
        // Running with a native sidecar: 2/2.
        json!({"metadata": meta("sleep"), "spec": sidecar_pod_spec(),
               "status": {"phase": "Running", "podIP": "198.18.0.7", "podIPs": [{"ip": "198.18.0.7"}],
                          "conditions": [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}],
                          "initContainerStatuses": [init_done.clone(), running("istio-proxy", true)],
                          "containerStatuses": [running("sleep", true)]}}),
        // Still in the first init container.
        json!({"metadata": meta("init"), "spec": sidecar_pod_spec(),
               "status": {"phase": "Pending",
                          "initContainerStatuses": [
                              {"name": "istio-init", "ready": false, "restartCount": 0, "image": "i", "imageID": "", "state": {"running": {}}},
                              {"name": "istio-proxy", "ready": false, "restartCount": 0, "image": "i", "imageID": "", "state": {"waiting": {"reason": "PodInitializing"}}}],
                          "containerStatuses": [{"name": "sleep", "ready": false, "restartCount": 0, "image": "i", "imageID": "", "state": {"waiting": {"reason": "PodInitializing"}}}]}}),
        // Init container failed with a signal and no reason.
        json!({"metadata": meta("initfail"), "spec": sidecar_pod_spec(),
               "status": {"phase": "Pending",
                          "initContainerStatuses": [{"name": "istio-init", "ready": false, "restartCount": 2, "image": "i", "imageID": "",
                                                     "state": {"terminated": {"exitCode": 137, "signal": 9}}}]}}),
        // Crash looping with restarts: the sidecar's and the app's restarts add up.
        json!({"metadata": meta("crash"), "spec": sidecar_pod_spec(),
               "status": {"phase": "Running",
                          "conditions": [{"type": "Initialized", "status": "True"}],
                          "initContainerStatuses": [init_done.clone(),
                              {"name": "istio-proxy", "ready": true, "started": true, "restartCount": 1, "image": "i", "imageID": "",
                               "state": {"running": {}}, "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2026-11-25T19:58:00Z"}}}],
                          "containerStatuses": [{"name": "sleep", "ready": false, "restartCount": 3, "image": "i", "imageID": "",
                               "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                               "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": "2026-11-25T19:59:15Z"}}}]}}),
        // Finished: the app completed, the sidecar was stopped.
        json!({"metadata": meta("done"), "spec": sidecar_pod_spec(),
               "status": {"phase": "Succeeded",
                          "conditions": [{"type": "Initialized", "status": "True"}],
                          "initContainerStatuses": [init_done.clone(),
                              {"name": "istio-proxy", "ready": false, "started": false, "restartCount": 0, "image": "i", "imageID": "",
                               "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}],
                          "containerStatuses": [{"name": "sleep", "ready": false, "restartCount": 0, "image": "i", "imageID": "",
                               "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}}),
        // One container completed, another still runs and the pod is Ready.
        json!({"metadata": meta("partial"), "spec": {"containers": [{"name": "a"}, {"name": "b"}]},
               "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}],
                          "containerStatuses": [running("a", true),
                              {"name": "b", "ready": false, "restartCount": 0, "image": "i", "imageID": "", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}}),
        // Being deleted.
        json!({"metadata": {"name": "gone", "namespace": "default", "creationTimestamp": CREATED, "deletionTimestamp": "2026-11-25T19:59:59Z"},
               "spec": {"containers": [{"name": "a"}], "readinessGates": [{"conditionType": "x/ok"}, {"conditionType": "y/ok"}]},
               "status": {"phase": "Running", "conditions": [{"type": "x/ok", "status": "True"}], "containerStatuses": [running("a", true)],
                          "nominatedNodeName": "other"}}),
        // Scheduling gated; exit code without reason; no creation timestamp.
        json!({"metadata": {"name": "gated"}, "spec": {"containers": [{"name": "a"}]},
               "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}}),
        json!({"metadata": meta("exit"), "spec": {"containers": [{"name": "a"}]},
               "status": {"phase": "Failed", "containerStatuses": [{"name": "a", "ready": false, "restartCount": 0, "image": "i", "imageID": "", "state": {"terminated": {"exitCode": 3}}}]}}),
    ];
    insta::assert_snapshot!(render("", "pods", &pods));
}

#[test]
fn workloads() {
    let template = json!({"metadata": {"labels": {"app": "sleep"}}, "spec": {"containers": [{"name": "sleep", "image": "curl"}, {"name": "istio-proxy", "image": "proxyv2"}]}});
    let deploy = json!({"metadata": meta("sleep"), "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "sleep"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["web", "api"]}, {"key": "canary", "operator": "DoesNotExist"}]}, "template": template},
                        "status": {"readyReplicas": 1, "updatedReplicas": 2, "availableReplicas": 1}});
    let rs = json!({"metadata": meta("sleep-6d4b9c8f7d"), "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "sleep"}}, "template": template},
                    "status": {"replicas": 1, "readyReplicas": 1}});
    let job_done = json!({"metadata": meta("x"), "spec": {"completions": 1, "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u"}}, "template": template},
                          "status": {"succeeded": 1, "startTime": "2026-11-25T19:57:10Z", "completionTime": "2026-11-25T19:57:31Z",
                                     "conditions": [{"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}]}});
    let job_running = json!({"metadata": meta("y"), "spec": {"parallelism": 3, "template": template},
                             "status": {"active": 3, "startTime": "2026-11-25T19:58:00Z"}});
    let job_new = json!({"metadata": meta("z"), "spec": {"template": template}});
    let cron = json!({"metadata": meta("c"), "spec": {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": template}}},
                      "status": {"lastScheduleTime": "2026-11-25T19:55:00Z", "active": [{"name": "c-1"}]}});
    let cron_tz = json!({"metadata": meta("d"), "spec": {"schedule": "@daily", "timeZone": "Etc/UTC", "suspend": true,
                         "jobTemplate": {"spec": {"selector": {"matchLabels": {"a": "b"}}, "template": template}}}});
    let text = [
        render("apps", "deployments", &[deploy]),
        render("apps", "replicasets", &[rs]),
        render("batch", "jobs", &[job_done, job_running, job_new]),
        render("batch", "cronjobs", &[cron, cron_tz]),
    ]
    .join("\n");
    insta::assert_snapshot!(text);
}

#[test]
fn services_and_config() {
    let services = vec![
        json!({"metadata": meta("sleep"), "spec": {"type": "ClusterIP", "clusterIP": "198.19.0.10", "ports": [{"port": 80, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}], "selector": {"app": "sleep", "a": "b"}}}),
        json!({"metadata": meta("np"), "spec": {"type": "NodePort", "clusterIP": "198.19.0.11", "ports": [{"port": 80, "nodePort": 30080}]}}),
        json!({"metadata": meta("lb"), "spec": {"type": "LoadBalancer", "clusterIP": "198.19.0.12", "ports": [{"port": 443}]}}),
        json!({"metadata": meta("lb2"), "spec": {"type": "LoadBalancer", "clusterIP": "198.19.0.13", "externalIPs": ["203.0.113.9"]},
               "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.1"}, {"hostname": "lb.example"}]}}}),
        json!({"metadata": meta("ext"), "spec": {"type": "ExternalName", "externalName": "db.example"}}),
        json!({"metadata": meta("headless"), "spec": {"clusterIP": "None"}}),
    ];
    let slices = vec![
        json!({"metadata": meta("sleep-abcde"), "addressType": "IPv4", "ports": [{"port": 80}, {"name": "grpc"}],
               "endpoints": [{"addresses": ["198.18.0.7"]}, {"addresses": ["198.18.0.8"]}, {"addresses": ["198.18.0.9"]}, {"addresses": ["198.18.0.10"]}, {"addresses": ["198.18.0.11"]}]}),
        json!({"metadata": meta("empty-xyz"), "addressType": "IPv6", "endpoints": []}),
    ];
    let endpoints = vec![
        json!({"metadata": meta("sleep"), "subsets": [{"addresses": [{"ip": "198.18.0.7"}, {"ip": "198.18.0.8"}], "ports": [{"port": 80}, {"port": 443}]}]}),
        json!({"metadata": meta("none")}),
    ];
    let text = [
        render("", "services", &services),
        render("discovery.k8s.io", "endpointslices", &slices),
        render("", "endpoints", &endpoints),
        render("", "configmaps", &[json!({"metadata": meta("cm"), "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}})]),
        render("", "secrets", &[json!({"metadata": meta("s"), "type": "kubernetes.io/tls", "data": {"tls.crt": "AA==", "tls.key": "AA=="}}), json!({"metadata": meta("o")})]),
        render("", "serviceaccounts", &[json!({"metadata": meta("default")}), json!({"metadata": meta("sleep"), "secrets": [{"name": "t"}]})]),
        render("", "namespaces", &[json!({"metadata": {"name": "default", "creationTimestamp": "2026-11-20T08:00:00Z"}, "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}})]),
        render("", "nodes", &[json!({"metadata": {"name": "local", "creationTimestamp": "2026-09-01T00:00:00Z", "labels": {"node-role.kubernetes.io/control-plane": "", "kubernetes.io/role": "worker"}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}], "addresses": [{"type": "InternalIP", "address": "192.0.2.10"}],
                       "nodeInfo": {"kubeletVersion": "v1.37.0-podrun", "osImage": "Debian GNU/Linux 13", "kernelVersion": "6.12.0", "containerRuntimeVersion": "podrun://0.1.0",
                                    "architecture": "amd64", "bootID": "", "machineID": "", "operatingSystem": "linux", "systemUUID": "", "kubeProxyVersion": ""}}})]),
    ]
    .join("\n");
    insta::assert_snapshot!(text);
}

#[test]
fn events() {
    let core = vec![
        json!({"metadata": meta("sleep.17f3a2c1d0e4b5a6"), "involvedObject": {"kind": "Pod", "namespace": "default", "name": "sleep", "fieldPath": "spec.containers{sleep}"},
               "reason": "Started", "message": "Started container sleep\n", "type": "Normal", "source": {"component": "kubelet", "host": "local"},
               "firstTimestamp": "2026-11-25T19:57:20Z", "lastTimestamp": "2026-11-25T19:59:20Z", "count": 3}),
        json!({"metadata": meta("sleep.2"), "involvedObject": {"kind": "Pod", "name": "sleep"}, "reason": "Scheduled", "message": "ok", "type": "Normal",
               "eventTime": "2026-11-25T19:57:01.123456Z", "reportingComponent": "default-scheduler"}),
    ];
    let v1 = vec![
        json!({"metadata": meta("web.3"), "regarding": {"kind": "Deployment", "name": "web"}, "reason": "ScalingReplicaSet", "note": "Scaled up",
                         "type": "Normal", "eventTime": "2026-11-25T19:58:00.000000Z", "reportingController": "deployment-controller", "reportingInstance": "podrun",
                         "series": {"count": 4, "lastObservedTime": "2026-11-25T19:59:30.000000Z"}}),
    ];
    let text = [
        render("", "events", &core),
        render("events.k8s.io", "events", &v1),
    ]
    .join("\n");
    insta::assert_snapshot!(text);
}

#[test]
fn include_object_and_watch_rows() {
    let pods = lookup("", "v1", "pods").unwrap();
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta("sleep"), "spec": {"containers": [{"name": "a"}]}, "status": {"phase": "Pending"}});
    let t = table::table(
        pods,
        std::slice::from_ref(&pod),
        "42",
        Some("c1"),
        IncludeObject::Metadata,
        now(),
    )
    .unwrap();
    assert_eq!(
        t["metadata"],
        json!({"resourceVersion": "42", "continue": "c1"})
    );
    assert_eq!(
        t["rows"][0]["object"],
        json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta("sleep")})
    );
    let t = table::table(
        pods,
        std::slice::from_ref(&pod),
        "42",
        None,
        IncludeObject::Object,
        now(),
    )
    .unwrap();
    assert_eq!(t["rows"][0]["object"], pod);
    // From JSON text, a whole object lacking them gets `kind` and `apiVersion`.
    let mut bare = pod.clone();
    bare.as_object_mut().unwrap().remove("kind");
    bare.as_object_mut().unwrap().remove("apiVersion");
    let t: Value = serde_json::from_slice(
        &table::table_encoded(
            pods,
            &[encode_object(&bare)],
            "42",
            None,
            IncludeObject::Object,
            now(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(t["rows"][0]["object"], pod);
    // A list's PartialObjectMetadata without metadata is an empty one.
    let t: Value = serde_json::from_slice(
        &table::table_encoded(
            pods,
            &[encode_object(&json!({"spec": {"containers": []}}))],
            "",
            None,
            IncludeObject::Metadata,
            now(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(t["metadata"], json!({}));
    assert_eq!(
        t["rows"][0]["object"],
        json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": {}})
    );
    assert_eq!(t["rows"][0]["cells"][1], "0/0");
    let t = table::table(
        pods,
        std::slice::from_ref(&pod),
        "42",
        None,
        IncludeObject::None,
        now(),
    )
    .unwrap();
    assert_eq!(t["rows"][0]["object"], Value::Null);
    assert_eq!(
        IncludeObject::parse(Some("Object")).unwrap(),
        IncludeObject::Object
    );
    assert_eq!(IncludeObject::parse(None).unwrap(), IncludeObject::Metadata);
    assert_eq!(IncludeObject::parse(Some("All")).unwrap_err().code, 400);

    let first =
        table::watch_event(pods, "ADDED", &pod, true, IncludeObject::Metadata, now()).unwrap();
    assert_eq!(first["type"], "ADDED");
    assert_eq!(first["object"]["kind"], "Table");
    assert_eq!(first["object"]["metadata"]["resourceVersion"], "7");
    assert_eq!(
        first["object"]["columnDefinitions"]
            .as_array()
            .unwrap()
            .len(),
        9
    );
    assert_eq!(first["object"]["rows"].as_array().unwrap().len(), 1);
    let next = table::watch_event(
        pods,
        "MODIFIED",
        &pod,
        false,
        IncludeObject::Metadata,
        now(),
    )
    .unwrap();
    assert_eq!(next["object"]["columnDefinitions"], Value::Null);
    assert_eq!(next["object"]["rows"][0]["cells"][2], "Pending");
}

#[test]
fn human_durations() {
    let cases = [
        (-2, "<invalid>"),
        (-1, "0s"),
        (0, "0s"),
        (45, "45s"),
        (119, "119s"),
        (120, "2m"),
        (200, "3m20s"),
        (599, "9m59s"),
        (600, "10m"),
        (95 * 60, "95m"),
        (3 * 3600, "3h"),
        (4 * 3600 + 5 * 60, "4h5m"),
        (8 * 3600, "8h"),
        (47 * 3600, "47h"),
        (48 * 3600, "2d"),
        (3 * 86400 + 5 * 3600, "3d5h"),
        (8 * 86400, "8d"),
        (729 * 86400, "729d"),
        (730 * 86400, "2y"),
        (731 * 86400, "2y1d"),
        (8 * 365 * 86400, "8y"),
    ];
    for (seconds, want) in cases {
        assert_eq!(table::human_duration(seconds), want, "{seconds}s");
    }
}
