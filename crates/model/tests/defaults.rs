//! Defaulting, compared field by field with what a real API server stores.

use podrun_model::{Object, admit_pod, default_job, parse_manifests};
use serde_json::json;

fn one(text: &str) -> Object {
    parse_manifests(text, "t.yaml").unwrap().remove(0)
}

#[test]
fn pod_defaults_match_the_api_server() {
    let Object::Pod(p) = one("apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  initContainers:
  - name: proxy
    image: proxy:1.0
    restartPolicy: Always
    ports: [{containerPort: 15001}]
    readinessProbe: {httpGet: {port: 15021}, timeoutSeconds: 0}
  containers:
  - name: app
    image: busybox
    resources: {limits: {cpu: 500m}}
    lifecycle: {preStop: {httpGet: {port: 80}}}
    env: [{name: NM, valueFrom: {fieldRef: {fieldPath: metadata.name}}}]
  volumes:
  - name: scratch
  - name: cfg
    configMap: {name: c}
")
    else {
        panic!("not a pod")
    };
    let pod = admit_pod(*p).unwrap();
    let v = serde_json::to_value(&pod).unwrap();
    assert_eq!(v["metadata"]["namespace"], "default");
    let spec = &v["spec"];
    assert_eq!(spec["restartPolicy"], "Always");
    assert_eq!(spec["terminationGracePeriodSeconds"], 30);
    assert_eq!(spec["dnsPolicy"], "ClusterFirst");
    assert_eq!(spec["schedulerName"], "default-scheduler");
    assert_eq!(spec["securityContext"], json!({}));
    assert_eq!(spec["enableServiceLinks"], true);
    assert_eq!(spec["serviceAccountName"], "default");
    assert_eq!(spec["serviceAccount"], "default");
    assert_eq!(spec["priority"], 0);
    assert_eq!(spec["preemptionPolicy"], "PreemptLowerPriority");
    assert_eq!(
        spec["tolerations"],
        json!([
            {"effect": "NoExecute", "key": "node.kubernetes.io/not-ready", "operator": "Exists", "tolerationSeconds": 300},
            {"effect": "NoExecute", "key": "node.kubernetes.io/unreachable", "operator": "Exists", "tolerationSeconds": 300}
        ])
    );
    let app = &spec["containers"][0];
    assert_eq!(app["imagePullPolicy"], "Always");
    assert_eq!(app["terminationMessagePath"], "/dev/termination-log");
    assert_eq!(app["terminationMessagePolicy"], "File");
    assert_eq!(app["resources"]["requests"], json!({"cpu": "500m"}));
    assert_eq!(
        app["lifecycle"]["preStop"]["httpGet"],
        json!({"path": "/", "port": 80, "scheme": "HTTP"})
    );
    assert_eq!(app["env"][0]["valueFrom"]["fieldRef"]["apiVersion"], "v1");
    let proxy = &spec["initContainers"][0];
    assert_eq!(proxy["imagePullPolicy"], "IfNotPresent");
    assert_eq!(proxy["ports"][0]["protocol"], "TCP");
    assert_eq!(
        proxy["readinessProbe"],
        json!({"httpGet": {"path": "/", "port": 15021, "scheme": "HTTP"}, "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3})
    );
    assert_eq!(
        spec["volumes"][0],
        json!({"name": "scratch", "emptyDir": {}})
    );
    assert_eq!(spec["volumes"][1]["configMap"]["defaultMode"], 420);
}

#[test]
fn job_defaults() {
    let Object::Job(mut j) = one("apiVersion: batch/v1
kind: Job
metadata: {name: j}
spec:
  template:
    metadata: {labels: {app: j}}
    spec:
      restartPolicy: Never
      containers: [{name: a, image: b}]
")
    else {
        panic!("not a job")
    };
    default_job(&mut j);
    let v = serde_json::to_value(&*j).unwrap();
    assert_eq!(v["metadata"]["labels"], json!({"app": "j"}));
    let spec = &v["spec"];
    assert_eq!(spec["completions"], 1);
    assert_eq!(spec["parallelism"], 1);
    assert_eq!(spec["backoffLimit"], 6);
    assert_eq!(spec["completionMode"], "NonIndexed");
    assert_eq!(spec["suspend"], false);
    assert_eq!(spec["podReplacementPolicy"], "TerminatingOrFailed");
    let tspec = &spec["template"]["spec"];
    assert_eq!(tspec["terminationGracePeriodSeconds"], 30);
    assert_eq!(tspec["containers"][0]["terminationMessagePolicy"], "File");
    // Template defaulting stops at SetDefaults_PodSpec: no Pod-only fields.
    assert!(tspec.get("enableServiceLinks").is_none());
    assert!(tspec.get("tolerations").is_none());

    podrun_model::generate_job_selector(&mut j, "uid-1");
    podrun_model::validate_job(&j).unwrap();
    let labels = j
        .spec
        .as_ref()
        .unwrap()
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .clone()
        .unwrap();
    assert_eq!(labels["batch.kubernetes.io/controller-uid"], "uid-1");
    assert_eq!(labels["job-name"], "j");
}
