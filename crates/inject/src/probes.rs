//! App probe rewriting (`pkg/kube/inject/app_probe.go`): HTTP, TCP and gRPC probes and hooks
//! of the app's containers are pointed at the agent's status port, and the original handlers
//! are recorded in `ISTIO_KUBE_APP_PROBERS` so the agent can run them from inside the mesh.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

/// Original handlers keyed by the rewritten path.
pub type Probers = BTreeMap<String, Value>;

const PROBES: [(&str, &str); 3] = [
    ("readinessProbe", "readyz"),
    ("livenessProbe", "livez"),
    ("startupProbe", "startupz"),
];
const HOOKS: [(&str, &str); 2] = [("postStart", "poststartz"), ("preStop", "prestopz")];

/// Resolves a named port against the container's `ports`; numbers pass through.
fn resolve_port(container: &Value, port: &Value) -> Value {
    if let Some(name) = port.as_str() {
        if let Ok(n) = name.parse::<u64>() {
            return json!(n);
        }
        let found = container
            .get("ports")
            .and_then(Value::as_array)
            .and_then(|ports| {
                ports
                    .iter()
                    .find(|p| p.get("name").and_then(Value::as_str) == Some(name))
            })
            .and_then(|p| p.get("containerPort"))
            .cloned();
        if let Some(n) = found {
            return n;
        }
    }
    port.clone()
}

/// Rewrites one handler object (a probe or a lifecycle hook) in place. Returns the record
/// for `ISTIO_KUBE_APP_PROBERS`, or `None` when the handler is not rewritable (e.g. `exec`).
fn rewrite_handler(
    container: &Value,
    handler: &mut Map<String, Value>,
    path: &str,
    status_port: u16,
) -> Option<Value> {
    let already = handler
        .get("httpGet")
        .and_then(|h| h.get("path"))
        .and_then(Value::as_str)
        .is_some_and(|p| p == path);
    if already {
        // Re-injection: the original handler is already recorded in the old proxy's
        // ISTIO_KUBE_APP_PROBERS, which the caller carries over.
        return None;
    }
    let mut record = Map::new();
    // Istio keeps the rest of an httpGet handler (host, httpHeaders) on the rewritten
    // probe, changing only its port, path and an HTTPS scheme.
    let mut new_get = Map::new();
    if let Some(mut http) = handler.remove("httpGet") {
        if let Some(obj) = http.as_object_mut() {
            new_get = obj.clone();
            if new_get.get("scheme").and_then(Value::as_str) == Some("HTTPS") {
                new_get.insert("scheme".into(), json!("HTTP"));
            }
            if let Some(port) = obj.get("port") {
                let resolved = resolve_port(container, port);
                obj.insert("port".into(), resolved);
            }
        }
        record.insert("httpGet".into(), http);
    } else if let Some(mut tcp) = handler.remove("tcpSocket") {
        if let Some(obj) = tcp.as_object_mut()
            && let Some(port) = obj.get("port")
        {
            let resolved = resolve_port(container, port);
            obj.insert("port".into(), resolved);
        }
        record.insert("tcpSocket".into(), tcp);
    } else if let Some(grpc) = handler.remove("grpc") {
        record.insert("grpc".into(), grpc);
    } else {
        return None;
    }
    if let Some(t) = handler
        .get("timeoutSeconds")
        .filter(|t| t.as_u64() != Some(0))
    {
        record.insert("timeoutSeconds".into(), t.clone());
    }
    new_get.insert("path".into(), json!(path));
    new_get.insert("port".into(), json!(status_port));
    handler.insert("httpGet".into(), Value::Object(new_get));
    Some(Value::Object(record))
}

/// Rewrites the probes and hooks of one container, adding records to `probers`.
pub fn rewrite_container(container: &mut Value, status_port: u16, probers: &mut Probers) {
    let Some(name) = container
        .get("name")
        .and_then(Value::as_str)
        .map(str::to_owned)
    else {
        return;
    };
    let snapshot = container.clone();
    let Some(obj) = container.as_object_mut() else {
        return;
    };
    for (field, suffix) in PROBES {
        if let Some(Value::Object(probe)) = obj.get_mut(field) {
            let path = format!("/app-health/{name}/{suffix}");
            if let Some(record) = rewrite_handler(&snapshot, probe, &path, status_port) {
                probers.insert(path, record);
            }
        }
    }
    if let Some(Value::Object(lifecycle)) = obj.get_mut("lifecycle") {
        for (field, suffix) in HOOKS {
            if let Some(Value::Object(hook)) = lifecycle.get_mut(field) {
                let path = format!("/app-lifecycle/{name}/{suffix}");
                if let Some(record) = rewrite_handler(&snapshot, hook, &path, status_port) {
                    probers.insert(path, record);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_probe_keeps_its_headers_and_host_as_istio_does() {
        let mut c = json!({
            "name": "web",
            "readinessProbe": {"httpGet": {
                "port": 8080, "path": "/ready", "host": "web.local",
                "httpHeaders": [{"name": "X-Probe", "value": "1"}]
            }},
        });
        let mut probers = Probers::new();
        rewrite_container(&mut c, 15020, &mut probers);
        assert_eq!(
            c["readinessProbe"],
            json!({"httpGet": {
                "path": "/app-health/web/readyz", "port": 15020, "host": "web.local",
                "httpHeaders": [{"name": "X-Probe", "value": "1"}]
            }})
        );
        assert_eq!(
            probers["/app-health/web/readyz"]["httpGet"]["httpHeaders"],
            json!([{"name": "X-Probe", "value": "1"}])
        );
    }

    #[test]
    fn http_tcp_and_exec_probes() {
        let mut c = json!({
            "name": "hello",
            "ports": [{"name": "http", "containerPort": 8080}],
            "readinessProbe": {"httpGet": {"port": "http", "path": "/ready", "scheme": "HTTPS"}, "periodSeconds": 5},
            "livenessProbe": {"tcpSocket": {"port": 9000}, "timeoutSeconds": 2},
            "startupProbe": {"exec": {"command": ["true"]}},
        });
        let mut probers = Probers::new();
        rewrite_container(&mut c, 15020, &mut probers);
        assert_eq!(
            c["readinessProbe"],
            json!({"httpGet": {"path": "/app-health/hello/readyz", "port": 15020, "scheme": "HTTP"}, "periodSeconds": 5})
        );
        assert_eq!(
            c["livenessProbe"],
            json!({"httpGet": {"path": "/app-health/hello/livez", "port": 15020}, "timeoutSeconds": 2})
        );
        assert_eq!(c["startupProbe"], json!({"exec": {"command": ["true"]}}));
        assert_eq!(
            probers["/app-health/hello/readyz"],
            json!({"httpGet": {"port": 8080, "path": "/ready", "scheme": "HTTPS"}})
        );
        assert_eq!(
            probers["/app-health/hello/livez"],
            json!({"tcpSocket": {"port": 9000}, "timeoutSeconds": 2})
        );
        assert_eq!(probers.len(), 2);
    }
}
