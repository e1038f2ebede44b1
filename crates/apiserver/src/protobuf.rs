//! Protobuf request bodies (`application/vnd.kubernetes.protobuf`), as kubectl's typed
//! clients send them for `kubectl create namespace|configmap|secret|serviceaccount|service|
//! deployment|job|cronjob`: the `k8s\0` magic, a `runtime.Unknown` envelope naming the
//! kind, and the object, decoded with the generated `k8s-pb` types into the JSON form the
//! rest of the server handles. A field this decoder does not carry over is refused with
//! 415 rather than dropped.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::batch::v1 as batch;
use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::Unknown;
use prost::Message;
use serde_json::{Map, Value, json};

use crate::status::ApiError;

/// The four bytes every Kubernetes protobuf body starts with.
pub const MAGIC: &[u8; 4] = b"k8s\0";

type Result<T> = std::result::Result<T, ApiError>;

fn unread(path: &str) -> ApiError {
    let path = if path.is_empty() {
        "a top-level field"
    } else {
        path
    };
    ApiError::unsupported_media_type_with(format!(
        "the protobuf body sets {path}, which this server does not read from protobuf; send the object as JSON"
    ))
}

fn bad(e: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("error decoding the protobuf body: {e}"))
}

/// Fails when `rest` still holds a field that was not carried over.
fn all_read<T: Default + PartialEq>(rest: &T, path: &str) -> Result<()> {
    if *rest == T::default() {
        Ok(())
    } else {
        Err(unread(path))
    }
}

/// `Some("")` is unset: gogo-protobuf writes empty strings.
fn s(v: Option<String>) -> Option<String> {
    v.filter(|x| !x.is_empty())
}

fn put(m: &mut Map<String, Value>, key: &str, v: impl Into<Value>) {
    let v = v.into();
    let empty = match &v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    };
    if !empty {
        m.insert(key.into(), v);
    }
}

fn put_str(m: &mut Map<String, Value>, key: &str, v: Option<String>) {
    if let Some(v) = s(v) {
        m.insert(key.into(), json!(v));
    }
}

fn string_map(m: BTreeMap<String, String>) -> Value {
    json!(m)
}

fn object_meta(m: Option<meta::ObjectMeta>, path: &str) -> Result<Value> {
    let Some(mut m) = m else { return Ok(json!({})) };
    let mut out = Map::new();
    put_str(&mut out, "name", m.name.take());
    put_str(&mut out, "generateName", m.generate_name.take());
    put_str(&mut out, "namespace", m.namespace.take());
    put(
        &mut out,
        "labels",
        string_map(std::mem::take(&mut m.labels)),
    );
    put(
        &mut out,
        "annotations",
        string_map(std::mem::take(&mut m.annotations)),
    );
    put(
        &mut out,
        "finalizers",
        json!(std::mem::take(&mut m.finalizers)),
    );
    // Server-set fields that clients echo back empty.
    m.self_link = None;
    m.uid = s(m.uid.take());
    m.resource_version = s(m.resource_version.take());
    m.generation = m.generation.filter(|g| *g != 0);
    m.deletion_grace_period_seconds = None;
    m.creation_timestamp = m.creation_timestamp.filter(|t| *t != meta::Time::default());
    all_read(&m, path)?;
    Ok(Value::Object(out))
}

fn label_selector(sel: Option<meta::LabelSelector>, path: &str) -> Result<Value> {
    let Some(mut sel) = sel else {
        return Ok(Value::Null);
    };
    let mut out = Map::new();
    out.insert(
        "matchLabels".into(),
        string_map(std::mem::take(&mut sel.match_labels)),
    );
    let exprs: Vec<Value> = std::mem::take(&mut sel.match_expressions)
        .into_iter()
        .map(|e| json!({"key": e.key.unwrap_or_default(), "operator": e.operator.unwrap_or_default(), "values": e.values}))
        .collect();
    put(&mut out, "matchExpressions", exprs);
    all_read(&sel, path)?;
    Ok(Value::Object(out))
}

fn quantities(m: BTreeMap<String, k8s_pb::apimachinery::pkg::api::resource::Quantity>) -> Value {
    json!(
        m.into_iter()
            .map(|(k, q)| (k, q.string.unwrap_or_default()))
            .collect::<BTreeMap<_, _>>()
    )
}

fn container(mut c: core::Container, path: &str) -> Result<Value> {
    let mut out = Map::new();
    out.insert("name".into(), json!(c.name.take().unwrap_or_default()));
    put_str(&mut out, "image", c.image.take());
    put(&mut out, "command", json!(std::mem::take(&mut c.command)));
    put(&mut out, "args", json!(std::mem::take(&mut c.args)));
    put_str(&mut out, "workingDir", c.working_dir.take());
    let mut ports = Vec::new();
    for (i, mut p) in std::mem::take(&mut c.ports).into_iter().enumerate() {
        let mut po = Map::new();
        put_str(&mut po, "name", p.name.take());
        if let Some(n) = p.container_port.take() {
            po.insert("containerPort".into(), json!(n));
        }
        if let Some(n) = p.host_port.take().filter(|n| *n != 0) {
            po.insert("hostPort".into(), json!(n));
        }
        put_str(&mut po, "protocol", p.protocol.take());
        put_str(&mut po, "hostIP", p.host_ip.take());
        all_read(&p, &format!("{path}.ports[{i}]"))?;
        ports.push(Value::Object(po));
    }
    put(&mut out, "ports", ports);
    let mut env = Vec::new();
    for (i, mut e) in std::mem::take(&mut c.env).into_iter().enumerate() {
        let mut eo = Map::new();
        eo.insert("name".into(), json!(e.name.take().unwrap_or_default()));
        if let Some(v) = e.value.take() {
            eo.insert("value".into(), json!(v));
        }
        all_read(&e, &format!("{path}.env[{i}]"))?;
        env.push(Value::Object(eo));
    }
    put(&mut out, "env", env);
    if let Some(mut r) = c.resources.take() {
        let mut ro = Map::new();
        put(&mut ro, "limits", quantities(std::mem::take(&mut r.limits)));
        put(
            &mut ro,
            "requests",
            quantities(std::mem::take(&mut r.requests)),
        );
        all_read(&r, &format!("{path}.resources"))?;
        out.insert("resources".into(), Value::Object(ro));
    }
    put_str(&mut out, "imagePullPolicy", c.image_pull_policy.take());
    put_str(
        &mut out,
        "terminationMessagePath",
        c.termination_message_path.take(),
    );
    put_str(
        &mut out,
        "terminationMessagePolicy",
        c.termination_message_policy.take(),
    );
    put_str(&mut out, "restartPolicy", c.restart_policy.take());
    for (key, v) in [
        ("stdin", c.stdin.take()),
        ("stdinOnce", c.stdin_once.take()),
        ("tty", c.tty.take()),
    ] {
        if v == Some(true) {
            out.insert(key.into(), json!(true));
        }
    }
    all_read(&c, path)?;
    Ok(Value::Object(out))
}

fn pod_template(t: Option<core::PodTemplateSpec>, path: &str) -> Result<Value> {
    let Some(mut t) = t else { return Ok(json!({})) };
    let mut out = Map::new();
    out.insert(
        "metadata".into(),
        object_meta(t.metadata.take(), &format!("{path}.metadata"))?,
    );
    let mut spec = t.spec.take().unwrap_or_default();
    let sp = format!("{path}.spec");
    let mut so = Map::new();
    let mut containers = Vec::new();
    for (i, c) in std::mem::take(&mut spec.containers).into_iter().enumerate() {
        containers.push(container(c, &format!("{sp}.containers[{i}]"))?);
    }
    so.insert("containers".into(), Value::Array(containers));
    let mut init = Vec::new();
    for (i, c) in std::mem::take(&mut spec.init_containers)
        .into_iter()
        .enumerate()
    {
        init.push(container(c, &format!("{sp}.initContainers[{i}]"))?);
    }
    put(&mut so, "initContainers", init);
    put_str(&mut so, "restartPolicy", spec.restart_policy.take());
    put_str(
        &mut so,
        "serviceAccountName",
        spec.service_account_name.take(),
    );
    put_str(&mut so, "dnsPolicy", spec.dns_policy.take());
    put_str(&mut so, "schedulerName", spec.scheduler_name.take());
    if let Some(g) = spec.termination_grace_period_seconds.take() {
        so.insert("terminationGracePeriodSeconds".into(), json!(g));
    }
    // Go value fields arrive even when unset: empty strings and `false` mean unset.
    for f in [
        &mut spec.service_account,
        &mut spec.node_name,
        &mut spec.hostname,
        &mut spec.subdomain,
        &mut spec.priority_class_name,
    ] {
        if f.as_deref() == Some("") {
            *f = None;
        }
    }
    for f in [
        &mut spec.host_network,
        &mut spec.host_pid,
        &mut spec.host_ipc,
    ] {
        if *f == Some(false) {
            *f = None;
        }
    }
    put(
        &mut so,
        "nodeSelector",
        string_map(std::mem::take(&mut spec.node_selector)),
    );
    // An empty security context is what `kubectl create` always sends.
    if spec.security_context == Some(core::PodSecurityContext::default()) {
        spec.security_context = None;
    }
    if let Err(e) = all_read(&spec, &sp) {
        tracing::debug!(?spec, "unread pod spec fields");
        return Err(e);
    }
    out.insert("spec".into(), Value::Object(so));
    all_read(&t, path)?;
    Ok(Value::Object(out))
}

fn job_spec(j: Option<batch::JobSpec>, path: &str) -> Result<Value> {
    let Some(mut j) = j else { return Ok(json!({})) };
    let mut out = Map::new();
    for (key, v) in [
        ("parallelism", j.parallelism.take()),
        ("completions", j.completions.take()),
        ("backoffLimit", j.backoff_limit.take()),
        (
            "ttlSecondsAfterFinished",
            j.ttl_seconds_after_finished.take(),
        ),
    ] {
        if let Some(v) = v {
            out.insert(key.into(), json!(v));
        }
    }
    if let Some(v) = j.active_deadline_seconds.take() {
        out.insert("activeDeadlineSeconds".into(), json!(v));
    }
    if let Some(v) = j.suspend.take() {
        out.insert("suspend".into(), json!(v));
    }
    put_str(&mut out, "completionMode", j.completion_mode.take());
    let sel = label_selector(j.selector.take(), &format!("{path}.selector"))?;
    put(&mut out, "selector", sel);
    if let Some(m) = j.manual_selector.take() {
        out.insert("manualSelector".into(), json!(m));
    }
    out.insert(
        "template".into(),
        pod_template(j.template.take(), &format!("{path}.template"))?,
    );
    all_read(&j, path)?;
    Ok(Value::Object(out))
}

fn envelope(body: &[u8]) -> Result<(String, String, Vec<u8>)> {
    let rest = body.strip_prefix(MAGIC.as_slice()).ok_or_else(|| {
        ApiError::bad_request(
            "the protobuf body does not start with the Kubernetes magic bytes \"k8s\\x00\"",
        )
    })?;
    let u = Unknown::decode(rest).map_err(bad)?;
    if s(u.content_encoding.clone()).is_some() {
        return Err(ApiError::unsupported_media_type_with(
            "the protobuf body has a content encoding this server does not read".into(),
        ));
    }
    let tm = u.type_meta.unwrap_or_default();
    Ok((
        tm.api_version.unwrap_or_default(),
        tm.kind.unwrap_or_default(),
        u.raw.unwrap_or_default(),
    ))
}

/// Decodes a protobuf body into the object's JSON form (with `apiVersion` and `kind`).
pub fn decode(body: &[u8]) -> Result<Value> {
    let (api_version, kind, raw) = envelope(body)?;
    let raw = raw.as_slice();
    let mut out = Map::new();
    out.insert("apiVersion".into(), json!(api_version));
    out.insert("kind".into(), json!(kind));
    match (api_version.as_str(), kind.as_str()) {
        ("v1", "Namespace") => {
            let mut ns = core::Namespace::decode(raw).map_err(bad)?;
            out.insert(
                "metadata".into(),
                object_meta(ns.metadata.take(), "metadata")?,
            );
            let mut spec = ns.spec.take().unwrap_or_default();
            let mut so = Map::new();
            put(
                &mut so,
                "finalizers",
                json!(std::mem::take(&mut spec.finalizers)),
            );
            all_read(&spec, "spec")?;
            out.insert("spec".into(), Value::Object(so));
            // The API server resets status on create.
            ns.status = None;
            all_read(&ns, "")?;
        }
        ("v1", "ConfigMap") => {
            let mut cm = core::ConfigMap::decode(raw).map_err(bad)?;
            out.insert(
                "metadata".into(),
                object_meta(cm.metadata.take(), "metadata")?,
            );
            put(&mut out, "data", string_map(std::mem::take(&mut cm.data)));
            let binary: BTreeMap<String, Value> = std::mem::take(&mut cm.binary_data)
                .into_iter()
                .map(|(k, v)| {
                    (
                        k,
                        serde_json::to_value(ByteString(v)).expect("bytes serialise"),
                    )
                })
                .collect();
            put(&mut out, "binaryData", json!(binary));
            if let Some(i) = cm.immutable.take() {
                out.insert("immutable".into(), json!(i));
            }
            all_read(&cm, "")?;
        }
        ("v1", "Secret") => {
            let mut sec = core::Secret::decode(raw).map_err(bad)?;
            out.insert(
                "metadata".into(),
                object_meta(sec.metadata.take(), "metadata")?,
            );
            let data: BTreeMap<String, Value> = std::mem::take(&mut sec.data)
                .into_iter()
                .map(|(k, v)| {
                    (
                        k,
                        serde_json::to_value(ByteString(v)).expect("bytes serialise"),
                    )
                })
                .collect();
            put(&mut out, "data", json!(data));
            put(
                &mut out,
                "stringData",
                string_map(std::mem::take(&mut sec.string_data)),
            );
            put_str(&mut out, "type", sec.r#type.take());
            if let Some(i) = sec.immutable.take() {
                out.insert("immutable".into(), json!(i));
            }
            all_read(&sec, "")?;
        }
        ("v1", "ServiceAccount") => {
            let mut sa = core::ServiceAccount::decode(raw).map_err(bad)?;
            out.insert(
                "metadata".into(),
                object_meta(sa.metadata.take(), "metadata")?,
            );
            let pulls: Vec<Value> = std::mem::take(&mut sa.image_pull_secrets)
                .into_iter()
                .map(|r| json!({"name": r.name.unwrap_or_default()}))
                .collect();
            put(&mut out, "imagePullSecrets", pulls);
            if let Some(a) = sa.automount_service_account_token.take() {
                out.insert("automountServiceAccountToken".into(), json!(a));
            }
            all_read(&sa, "")?;
        }
        ("v1", "Service") => {
            let mut svc = core::Service::decode(raw).map_err(bad)?;
            out.insert(
                "metadata".into(),
                object_meta(svc.metadata.take(), "metadata")?,
            );
            let mut spec = svc.spec.take().unwrap_or_default();
            let mut so = Map::new();
            let mut ports = Vec::new();
            for (i, mut p) in std::mem::take(&mut spec.ports).into_iter().enumerate() {
                let mut po = Map::new();
                put_str(&mut po, "name", p.name.take());
                put_str(&mut po, "protocol", p.protocol.take());
                po.insert("port".into(), json!(p.port.take().unwrap_or(0)));
                if let Some(t) = p
                    .target_port
                    .take()
                    .filter(|t| t.r#type.unwrap_or(0) != 0 || t.int_val.unwrap_or(0) != 0)
                {
                    let v = match t.r#type {
                        Some(1) => json!(t.str_val.unwrap_or_default()),
                        _ => json!(t.int_val.unwrap_or(0)),
                    };
                    po.insert("targetPort".into(), v);
                }
                if let Some(n) = p.node_port.take().filter(|n| *n != 0) {
                    po.insert("nodePort".into(), json!(n));
                }
                all_read(&p, &format!("spec.ports[{i}]"))?;
                ports.push(Value::Object(po));
            }
            put(&mut so, "ports", ports);
            put(
                &mut so,
                "selector",
                string_map(std::mem::take(&mut spec.selector)),
            );
            put_str(&mut so, "clusterIP", spec.cluster_ip.take());
            put_str(&mut so, "type", spec.r#type.take());
            put_str(&mut so, "externalName", spec.external_name.take());
            put_str(&mut so, "sessionAffinity", spec.session_affinity.take());
            put_str(
                &mut so,
                "externalTrafficPolicy",
                spec.external_traffic_policy.take(),
            );
            for f in [&mut spec.load_balancer_ip] {
                if f.as_deref() == Some("") {
                    *f = None;
                }
            }
            spec.health_check_node_port = spec.health_check_node_port.filter(|v| *v != 0);
            spec.publish_not_ready_addresses = spec.publish_not_ready_addresses.filter(|v| *v);
            all_read(&spec, "spec")?;
            out.insert("spec".into(), Value::Object(so));
            svc.status = None;
            all_read(&svc, "")?;
        }
        ("apps/v1", "Deployment") => {
            let mut d = apps::Deployment::decode(raw).map_err(bad)?;
            out.insert(
                "metadata".into(),
                object_meta(d.metadata.take(), "metadata")?,
            );
            let mut spec = d.spec.take().unwrap_or_default();
            let mut so = Map::new();
            if let Some(r) = spec.replicas.take() {
                so.insert("replicas".into(), json!(r));
            }
            so.insert(
                "selector".into(),
                label_selector(spec.selector.take(), "spec.selector")?,
            );
            so.insert(
                "template".into(),
                pod_template(spec.template.take(), "spec.template")?,
            );
            // Go value fields: zero means unset.
            spec.min_ready_seconds = spec.min_ready_seconds.filter(|v| *v != 0);
            spec.paused = spec.paused.filter(|v| *v);
            if let Some(mut st) = spec.strategy.take() {
                let mut sto = Map::new();
                put_str(&mut sto, "type", st.r#type.take());
                all_read(&st, "spec.strategy")?;
                so.insert("strategy".into(), Value::Object(sto));
            }
            all_read(&spec, "spec")?;
            out.insert("spec".into(), Value::Object(so));
            d.status = None;
            all_read(&d, "")?;
        }
        ("batch/v1", "Job") => {
            let mut j = batch::Job::decode(raw).map_err(bad)?;
            out.insert(
                "metadata".into(),
                object_meta(j.metadata.take(), "metadata")?,
            );
            out.insert("spec".into(), job_spec(j.spec.take(), "spec")?);
            j.status = None;
            all_read(&j, "")?;
        }
        ("batch/v1", "CronJob") => {
            let mut cj = batch::CronJob::decode(raw).map_err(bad)?;
            out.insert(
                "metadata".into(),
                object_meta(cj.metadata.take(), "metadata")?,
            );
            let mut spec = cj.spec.take().unwrap_or_default();
            let mut so = Map::new();
            so.insert(
                "schedule".into(),
                json!(spec.schedule.take().unwrap_or_default()),
            );
            put_str(&mut so, "timeZone", spec.time_zone.take());
            put_str(&mut so, "concurrencyPolicy", spec.concurrency_policy.take());
            if let Some(v) = spec.starting_deadline_seconds.take() {
                so.insert("startingDeadlineSeconds".into(), json!(v));
            }
            if let Some(v) = spec.suspend.take() {
                so.insert("suspend".into(), json!(v));
            }
            let mut jt = spec.job_template.take().unwrap_or_default();
            let mut jto = Map::new();
            jto.insert(
                "metadata".into(),
                object_meta(jt.metadata.take(), "spec.jobTemplate.metadata")?,
            );
            jto.insert(
                "spec".into(),
                job_spec(jt.spec.take(), "spec.jobTemplate.spec")?,
            );
            all_read(&jt, "spec.jobTemplate")?;
            so.insert("jobTemplate".into(), Value::Object(jto));
            all_read(&spec, "spec")?;
            out.insert("spec".into(), Value::Object(so));
            cj.status = None;
            all_read(&cj, "")?;
        }
        _ => {
            return Err(ApiError::unsupported_media_type_with(format!(
                "this server reads {kind} ({api_version}) bodies as JSON or YAML only"
            )));
        }
    }
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        s.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect()
    }

    fn wrap(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
        let u = Unknown {
            type_meta: Some(k8s_pb::apimachinery::pkg::runtime::TypeMeta {
                api_version: Some(api_version.into()),
                kind: Some(kind.into()),
            }),
            raw: Some(raw),
            content_encoding: Some(String::new()),
            content_type: Some(String::new()),
        };
        let mut out = MAGIC.to_vec();
        out.extend(u.encode_to_vec());
        out
    }

    #[test]
    fn kubectl_create_namespace_capture() {
        // `kubectl create namespace x`, as kubectl 1.37.1 sent it.
        let body = hex(
            "6b 38 73 00 0a 0f 0a 02 76 31 12 09 4e 61 6d 65 73 70 61 63 65 12 19 0a 11 0a 01 78 12 00 1a 00 22 00 2a 00 32 00 38 00 42 00 12 00 1a 02 0a 00 1a 00 22 00",
        );
        assert_eq!(
            decode(&body).unwrap(),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}, "spec": {}})
        );
    }

    #[test]
    fn deployment_as_kubectl_create_builds_it() {
        let labels: BTreeMap<String, String> = [("app".to_owned(), "web".to_owned())].into();
        let d = apps::Deployment {
            metadata: Some(meta::ObjectMeta {
                name: Some("web".into()),
                labels: labels.clone(),
                ..Default::default()
            }),
            spec: Some(apps::DeploymentSpec {
                replicas: Some(2),
                selector: Some(meta::LabelSelector {
                    match_labels: labels.clone(),
                    ..Default::default()
                }),
                template: Some(core::PodTemplateSpec {
                    metadata: Some(meta::ObjectMeta {
                        labels,
                        ..Default::default()
                    }),
                    spec: Some(core::PodSpec {
                        containers: vec![core::Container {
                            name: Some("nginx".into()),
                            image: Some("nginx".into()),
                            ports: vec![core::ContainerPort {
                                container_port: Some(80),
                                ..Default::default()
                            }],
                            resources: Some(Default::default()),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }),
                }),
                strategy: Some(Default::default()),
                ..Default::default()
            }),
            status: Some(Default::default()),
        };
        let v = decode(&wrap("apps/v1", "Deployment", d.encode_to_vec())).unwrap();
        assert_eq!(
            v,
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "strategy": {},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "nginx", "image": "nginx", "ports": [{"containerPort": 80}], "resources": {}}]}}}})
        );
    }

    #[test]
    fn secrets_jobs_and_refusals() {
        let sec = core::Secret {
            metadata: Some(meta::ObjectMeta {
                name: Some("s".into()),
                ..Default::default()
            }),
            data: [("k".to_owned(), b"v".to_vec())].into(),
            r#type: Some("Opaque".into()),
            ..Default::default()
        };
        let v = decode(&wrap("v1", "Secret", sec.encode_to_vec())).unwrap();
        assert_eq!(v["data"], json!({"k": "dg=="}));
        let job = batch::Job {
            metadata: Some(meta::ObjectMeta {
                name: Some("x".into()),
                ..Default::default()
            }),
            spec: Some(batch::JobSpec {
                template: Some(core::PodTemplateSpec {
                    metadata: Some(Default::default()),
                    spec: Some(core::PodSpec {
                        containers: vec![core::Container {
                            name: Some("x".into()),
                            image: Some("busybox".into()),
                            command: vec!["echo".into(), "hi".into()],
                            ..Default::default()
                        }],
                        restart_policy: Some("Never".into()),
                        ..Default::default()
                    }),
                }),
                ..Default::default()
            }),
            status: None,
        };
        let v = decode(&wrap("batch/v1", "Job", job.encode_to_vec())).unwrap();
        assert_eq!(
            v["spec"]["template"]["spec"],
            json!({"containers": [{"name": "x", "image": "busybox", "command": ["echo", "hi"]}], "restartPolicy": "Never"})
        );
        // A field the decoder does not carry over is refused, not dropped.
        let mut probe = job.clone();
        probe
            .spec
            .as_mut()
            .unwrap()
            .template
            .as_mut()
            .unwrap()
            .spec
            .as_mut()
            .unwrap()
            .containers[0]
            .liveness_probe = Some(Default::default());
        let e = decode(&wrap("batch/v1", "Job", probe.encode_to_vec())).unwrap_err();
        assert_eq!(e.code, 415);
        assert!(
            e.message.contains("spec.template.spec.containers[0]"),
            "{}",
            e.message
        );
        assert_eq!(decode(&wrap("v1", "Pod", vec![])).unwrap_err().code, 415);
        assert_eq!(decode(b"{}").unwrap_err().code, 400);
        assert_eq!(
            decode(&[b'k', b'8', b's', 0, 0xff, 0xff]).unwrap_err().code,
            400
        );
    }
}
