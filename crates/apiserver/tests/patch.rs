//! Strategic merge patches exactly as kubectl 1.37 sent them for `kubectl apply` (recorded
//! against the spec's recording server), applied to the objects its first `apply` created.

use podrun_apiserver::patch::{PatchError, strategic_merge_patch};
use serde_json::{Value, json};

/// `kubectl apply -f pod.yaml`: the POST body.
const POD_CREATE: &str = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"annotations\":{},\"labels\":{\"app\":\"sleep\"},\"name\":\"sleep\",\"namespace\":\"default\"},\"spec\":{\"containers\":[{\"command\":[\"/bin/sleep\",\"infinity\"],\"image\":\"curlimages/curl\",\"name\":\"sleep\"},{\"args\":[\"proxy\",\"sidecar\"],\"image\":\"docker.io/istio/proxyv2:1.24.0\",\"name\":\"istio-proxy\"}],\"initContainers\":[{\"args\":[\"istio-iptables\",\"-p\",\"15001\"],\"image\":\"docker.io/istio/proxyv2:1.24.0\",\"name\":\"istio-init\"}]}}\n"},"labels":{"app":"sleep"},"name":"sleep","namespace":"default"},"spec":{"containers":[{"command":["/bin/sleep","infinity"],"image":"curlimages/curl","name":"sleep"},{"args":["proxy","sidecar"],"image":"docker.io/istio/proxyv2:1.24.0","name":"istio-proxy"}],"initContainers":[{"args":["istio-iptables","-p","15001"],"image":"docker.io/istio/proxyv2:1.24.0","name":"istio-init"}]}}"#;
/// `kubectl apply` after the proxy image changed: the PATCH body.
const POD_PATCH: &str = r#"{"metadata":{"annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"annotations\":{},\"labels\":{\"app\":\"sleep\"},\"name\":\"sleep\",\"namespace\":\"default\"},\"spec\":{\"containers\":[{\"command\":[\"/bin/sleep\",\"infinity\"],\"image\":\"curlimages/curl\",\"name\":\"sleep\"},{\"args\":[\"proxy\",\"sidecar\"],\"image\":\"docker.io/istio/proxyv2:1.25.0\",\"name\":\"istio-proxy\"}],\"initContainers\":[{\"args\":[\"istio-iptables\",\"-p\",\"15001\"],\"image\":\"docker.io/istio/proxyv2:1.25.0\",\"name\":\"istio-init\"}]}}\n"}},"spec":{"$setElementOrder/containers":[{"name":"sleep"},{"name":"istio-proxy"}],"$setElementOrder/initContainers":[{"name":"istio-init"}],"containers":[{"image":"docker.io/istio/proxyv2:1.25.0","name":"istio-proxy"}],"initContainers":[{"image":"docker.io/istio/proxyv2:1.25.0","name":"istio-init"}]}}"#;
/// `kubectl apply -f sleep.yaml`: the Deployment's POST body.
const DEPLOYMENT_CREATE: &str = r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\"metadata\":{\"annotations\":{},\"name\":\"sleep\",\"namespace\":\"default\"},\"spec\":{\"replicas\":1,\"selector\":{\"matchLabels\":{\"app\":\"sleep\"}},\"template\":{\"metadata\":{\"labels\":{\"app\":\"sleep\"}},\"spec\":{\"containers\":[{\"command\":[\"/bin/sleep\",\"infinity\"],\"image\":\"curlimages/curl\",\"imagePullPolicy\":\"IfNotPresent\",\"name\":\"sleep\",\"volumeMounts\":[{\"mountPath\":\"/etc/sleep/tls\",\"name\":\"secret-volume\"}]}],\"serviceAccountName\":\"sleep\",\"terminationGracePeriodSeconds\":0,\"volumes\":[{\"name\":\"secret-volume\",\"secret\":{\"optional\":true,\"secretName\":\"sleep-secret\"}}]}}}}\n"},"name":"sleep","namespace":"default"},"spec":{"replicas":1,"selector":{"matchLabels":{"app":"sleep"}},"template":{"metadata":{"labels":{"app":"sleep"}},"spec":{"containers":[{"command":["/bin/sleep","infinity"],"image":"curlimages/curl","imagePullPolicy":"IfNotPresent","name":"sleep","volumeMounts":[{"mountPath":"/etc/sleep/tls","name":"secret-volume"}]}],"serviceAccountName":"sleep","terminationGracePeriodSeconds":0,"volumes":[{"name":"secret-volume","secret":{"optional":true,"secretName":"sleep-secret"}}]}}}}"#;
/// `kubectl apply` after `replicas: 2` and `serviceAccountName` removed.
const DEPLOYMENT_PATCH: &str = r#"{"metadata":{"annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\"metadata\":{\"annotations\":{},\"name\":\"sleep\",\"namespace\":\"default\"},\"spec\":{\"replicas\":2,\"selector\":{\"matchLabels\":{\"app\":\"sleep\"}},\"template\":{\"metadata\":{\"labels\":{\"app\":\"sleep\"}},\"spec\":{\"containers\":[{\"command\":[\"/bin/sleep\",\"infinity\"],\"image\":\"curlimages/curl\",\"imagePullPolicy\":\"IfNotPresent\",\"name\":\"sleep\",\"volumeMounts\":[{\"mountPath\":\"/etc/sleep/tls\",\"name\":\"secret-volume\"}]}],\"terminationGracePeriodSeconds\":0,\"volumes\":[{\"name\":\"secret-volume\",\"secret\":{\"optional\":true,\"secretName\":\"sleep-secret\"}}]}}}}\n"}},"spec":{"replicas":2,"template":{"spec":{"serviceAccountName":null}}}}"#;

fn apply(original: &str, patch: &str, schema: &str) -> Value {
    let original: Value = serde_json::from_str(original).unwrap();
    strategic_merge_patch(&original, patch.as_bytes(), schema).unwrap()
}

#[test]
fn pod_sidecar_image_change() {
    let out = apply(POD_CREATE, POD_PATCH, "io.k8s.api.core.v1.Pod");
    assert_eq!(
        out["spec"],
        json!({
            "containers": [
                {"command": ["/bin/sleep", "infinity"], "image": "curlimages/curl", "name": "sleep"},
                {"args": ["proxy", "sidecar"], "image": "docker.io/istio/proxyv2:1.25.0", "name": "istio-proxy"}
            ],
            "initContainers": [
                {"args": ["istio-iptables", "-p", "15001"], "image": "docker.io/istio/proxyv2:1.25.0", "name": "istio-init"}
            ]
        })
    );
    let last = out["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
        .as_str()
        .unwrap();
    assert!(last.contains("proxyv2:1.25.0"), "{last}");
    assert_eq!(out["metadata"]["labels"], json!({"app": "sleep"}));
}

#[test]
fn deployment_replicas_and_removed_service_account() {
    let out = apply(
        DEPLOYMENT_CREATE,
        DEPLOYMENT_PATCH,
        "io.k8s.api.apps.v1.Deployment",
    );
    assert_eq!(out["spec"]["replicas"], 2);
    let spec = &out["spec"]["template"]["spec"];
    assert!(spec.get("serviceAccountName").is_none(), "{spec}");
    assert_eq!(
        spec["volumes"],
        json!([{"name": "secret-volume", "secret": {"optional": true, "secretName": "sleep-secret"}}])
    );
    assert_eq!(
        spec["containers"][0]["volumeMounts"],
        json!([{"mountPath": "/etc/sleep/tls", "name": "secret-volume"}])
    );
}

#[test]
fn order_directive_keeps_a_list_the_patch_does_not_touch() {
    // `$setElementOrder` without the list: the live list stays, in the directive's order.
    let out = apply(
        r#"{"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "2"}], "volumes": [{"name": "v"}]}}"#,
        r#"{"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}], "$setElementOrder/volumes": [{"name": "v"}]}}"#,
        "io.k8s.api.core.v1.Pod",
    );
    assert_eq!(
        out["spec"]["containers"],
        json!([{"name": "b", "image": "2"}, {"name": "a", "image": "1"}])
    );
    assert_eq!(out["spec"]["volumes"], json!([{"name": "v"}]));
    // Neither list nor original: nothing appears.
    let out = apply(
        r#"{"spec": {}}"#,
        r#"{"spec": {"$setElementOrder/initContainers": []}}"#,
        "io.k8s.api.core.v1.Pod",
    );
    assert_eq!(out["spec"], json!({}));
}

#[test]
fn refused_patches() {
    let pod = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}], "volumes": [{"name": "v", "emptyDir": {}}]}});
    let cases = [
        // The patch list's order contradicts the directive.
        (
            r#"{"spec": {"$setElementOrder/containers": [{"name": "a"}, {"name": "b"}], "containers": [{"name": "b", "image": "x"}, {"name": "a", "image": "y"}]}}"#,
            "doesn't match $setElementOrder list",
        ),
        // A field outside `$retainKeys`.
        (
            r#"{"spec": {"volumes": [{"name": "v", "$retainKeys": ["name"], "configMap": {"name": "cm"}}]}}"#,
            "invalid patch format of retainKeys",
        ),
    ];
    for (patch, want) in cases {
        match strategic_merge_patch(&pod, patch.as_bytes(), "io.k8s.api.core.v1.Pod") {
            Err(PatchError::BadPatch(m)) => assert!(m.contains(want), "{m}"),
            other => panic!("{patch}: {other:?}"),
        }
    }
}
