//! Kinds the API serves as views of what the store holds: `events.k8s.io/v1` Events are
//! the store's core `v1` Events in the newer shape, and core `v1` Endpoints are
//! assembled from a Service's EndpointSlices, as the API server's mirroring keeps them
//! in step. Both are read-only here. Pure.

use serde_json::{Map, Value, json};

/// A core `v1` Event as an `events.k8s.io/v1` Event.
pub fn event_v1(core: &Value) -> Value {
    let mut out = Map::new();
    out.insert("kind".into(), json!("Event"));
    out.insert("apiVersion".into(), json!("events.k8s.io/v1"));
    out.insert("metadata".into(), core["metadata"].clone());
    let copy = |out: &mut Map<String, Value>, to: &str, from: &str| {
        if let Some(v) = core.get(from).filter(|v| !v.is_null()) {
            out.insert(to.into(), v.clone());
        }
    };
    copy(&mut out, "eventTime", "eventTime");
    if !out.contains_key("eventTime") {
        out.insert("eventTime".into(), Value::Null);
    }
    copy(&mut out, "series", "series");
    copy(&mut out, "reportingController", "reportingComponent");
    if !out.contains_key("reportingController")
        && let Some(c) = core.pointer("/source/component")
    {
        out.insert("reportingController".into(), c.clone());
    }
    copy(&mut out, "reportingInstance", "reportingInstance");
    copy(&mut out, "action", "action");
    copy(&mut out, "reason", "reason");
    copy(&mut out, "regarding", "involvedObject");
    copy(&mut out, "related", "related");
    copy(&mut out, "note", "message");
    copy(&mut out, "type", "type");
    copy(&mut out, "deprecatedSource", "source");
    copy(&mut out, "deprecatedFirstTimestamp", "firstTimestamp");
    copy(&mut out, "deprecatedLastTimestamp", "lastTimestamp");
    copy(&mut out, "deprecatedCount", "count");
    Value::Object(out)
}

/// The `Endpoints` of a Service from its EndpointSlices (`kubernetes.io/service-name`):
/// one subset per slice port set, ready and not-ready addresses apart. Its
/// `resourceVersion` is the newest of the Service's and the slices'.
pub fn endpoints(service: &Value, slices: &[Value]) -> Value {
    let meta = &service["metadata"];
    let revision = std::iter::once(service)
        .chain(slices)
        .filter_map(|o| {
            o.pointer("/metadata/resourceVersion")?
                .as_str()?
                .parse::<u64>()
                .ok()
        })
        .max()
        .map_or_else(|| meta["resourceVersion"].clone(), |r| json!(r.to_string()));
    let mut subsets = Vec::new();
    for slice in slices {
        let mut ready = Vec::new();
        let mut not_ready = Vec::new();
        for ep in slice["endpoints"].as_array().into_iter().flatten() {
            for ip in ep["addresses"].as_array().into_iter().flatten() {
                let mut a = Map::new();
                a.insert("ip".into(), ip.clone());
                if let Some(n) = ep.get("nodeName") {
                    a.insert("nodeName".into(), n.clone());
                }
                if let Some(t) = ep.get("targetRef") {
                    a.insert("targetRef".into(), t.clone());
                }
                if ep.pointer("/conditions/ready").and_then(Value::as_bool) == Some(false) {
                    not_ready.push(Value::Object(a));
                } else {
                    ready.push(Value::Object(a));
                }
            }
        }
        if ready.is_empty() && not_ready.is_empty() {
            continue;
        }
        let mut subset = Map::new();
        if !ready.is_empty() {
            subset.insert("addresses".into(), Value::Array(ready));
        }
        if !not_ready.is_empty() {
            subset.insert("notReadyAddresses".into(), Value::Array(not_ready));
        }
        let ports: Vec<Value> = slice["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                let mut m = Map::new();
                for k in ["name", "port", "protocol", "appProtocol"] {
                    if let Some(v) = p.get(k).filter(|v| !v.is_null() && *v != "") {
                        m.insert(k.into(), v.clone());
                    }
                }
                Value::Object(m)
            })
            .collect();
        if !ports.is_empty() {
            subset.insert("ports".into(), Value::Array(ports));
        }
        subsets.push(Value::Object(subset));
    }
    let mut labels = meta["labels"].as_object().cloned().unwrap_or_default();
    labels.insert(
        "endpointslice.kubernetes.io/skip-mirror".into(),
        json!("true"),
    );
    let mut out = json!({
        "kind": "Endpoints",
        "apiVersion": "v1",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
            "resourceVersion": revision,
            "creationTimestamp": meta["creationTimestamp"],
            "labels": labels,
        },
    });
    if !subsets.is_empty() {
        out["subsets"] = Value::Array(subsets);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_events_in_the_newer_shape() {
        let core = json!({"metadata": {"name": "p.1", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "p"}, "reason": "Started",
            "message": "Started container app", "type": "Normal", "count": 2,
            "source": {"component": "kubelet"}, "firstTimestamp": "2026-12-07T19:00:00Z"});
        let v = event_v1(&core);
        assert_eq!(v["apiVersion"], "events.k8s.io/v1");
        assert_eq!(v["regarding"]["name"], "p");
        assert_eq!(v["note"], "Started container app");
        assert_eq!(v["reportingController"], "kubelet");
        assert_eq!(v["deprecatedCount"], 2);
        assert_eq!(v["eventTime"], Value::Null);
    }

    #[test]
    fn endpoints_from_slices() {
        let svc =
            json!({"metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}}});
        let slice = json!({"endpoints": [
                {"addresses": ["198.18.0.2"], "conditions": {"ready": true}, "nodeName": "n"},
                {"addresses": ["198.18.0.3"], "conditions": {"ready": false}}],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]});
        let e = endpoints(&svc, &[slice]);
        assert_eq!(e["subsets"][0]["addresses"][0]["ip"], "198.18.0.2");
        assert_eq!(e["subsets"][0]["notReadyAddresses"][0]["ip"], "198.18.0.3");
        assert_eq!(e["subsets"][0]["ports"][0]["port"], 8080);
        assert!(endpoints(&svc, &[]).get("subsets").is_none());
    }
}
