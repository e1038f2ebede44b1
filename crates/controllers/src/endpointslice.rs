//! The EndpointSlice controller: one IPv4 EndpointSlice per Service with a selector,
//! named `<service>-<5 chars>`, listing the selected pods that have an IP, with
//! `ready`, `serving` and `terminating` as upstream sets them, and the Service's ports
//! with named `targetPort`s resolved against the pods' container ports.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ObjectReference, Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use podrun_store::{ApiError, DeleteOptions, ResourceType, object};
use serde_json::Value;

use crate::reflector::Handler;
use crate::replicaset::{controller_ref, is_ready};
use crate::{Action, Ctx, Reconciler, Reflector, WorkQueue, key_of, split_key, typed, untyped};

/// The label naming a slice's Service.
pub const SERVICE_NAME: &str = "kubernetes.io/service-name";
/// The label naming who manages a slice.
pub const MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
/// This controller's value of [`MANAGED_BY`].
pub const CONTROLLER: &str = "endpointslice-controller.k8s.io";

/// Whether the Service's selector selects the pod (an empty selector selects nothing:
/// such a Service has no managed slice).
pub fn selects(service: &Service, pod: &Pod) -> bool {
    let Some(sel) = service.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
        return false;
    };
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    !sel.is_empty() && sel.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The endpoints and ports the Service's slice should hold, or `None` for a Service
/// without a selector.
pub fn desired(service: &Service, pods: &[Pod]) -> Option<(Vec<Endpoint>, Vec<EndpointPort>)> {
    let spec = service.spec.as_ref()?;
    spec.selector.as_ref().filter(|s| !s.is_empty())?;
    let selected: Vec<&Pod> = pods
        .iter()
        .filter(|p| p.metadata.namespace == service.metadata.namespace && selects(service, p))
        .collect();
    let mut endpoints: Vec<Endpoint> = selected
        .iter()
        .filter(|p| !podrun_model::is_pod_terminal(p))
        .filter_map(|p| {
            let ip = p.status.as_ref()?.pod_ip.clone()?;
            let terminating = p.metadata.deletion_timestamp.is_some();
            let ready = is_ready(p);
            Some(Endpoint {
                addresses: vec![ip],
                conditions: Some(EndpointConditions {
                    ready: Some(ready && !terminating),
                    serving: Some(ready),
                    terminating: Some(terminating),
                }),
                node_name: p.spec.as_ref().and_then(|s| s.node_name.clone()),
                target_ref: Some(ObjectReference {
                    kind: Some("Pod".into()),
                    name: p.metadata.name.clone(),
                    namespace: p.metadata.namespace.clone(),
                    uid: p.metadata.uid.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            })
        })
        .collect();
    endpoints.sort_by(|a, b| a.addresses.cmp(&b.addresses));
    let ports = spec
        .ports
        .iter()
        .flatten()
        .map(|sp| {
            let port = match &sp.target_port {
                None => Some(sp.port),
                Some(IntOrString::Int(n)) => Some(*n),
                Some(IntOrString::String(name)) => selected.iter().find_map(|p| {
                    p.spec
                        .as_ref()?
                        .containers
                        .iter()
                        .flat_map(|c| c.ports.iter().flatten())
                        .find(|cp| cp.name.as_deref() == Some(name.as_str()))
                        .map(|cp| cp.container_port)
                }),
            };
            EndpointPort {
                name: Some(sp.name.clone().unwrap_or_default()),
                port,
                protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".into())),
                app_protocol: sp.app_protocol.clone(),
            }
        })
        .collect();
    Some((endpoints, ports))
}

/// Queues the Services of the pod's namespace that select it (before or after a change).
pub fn pod_handler(services: &Reflector, queue: &WorkQueue) -> Handler {
    let services = services.clone();
    let queue = queue.clone();
    Box::new(move |pod: &Value| {
        let ns = object::meta_str(pod, "namespace");
        for svc in services.list() {
            if object::meta_str(&svc, "namespace") == ns {
                queue.add(&key_of(&svc));
            }
        }
    })
}

/// Queues a slice's Service (a slice changed or deleted by someone else is put back).
pub fn slice_handler(queue: &WorkQueue) -> Handler {
    let queue = queue.clone();
    Box::new(move |slice: &Value| {
        let ns = object::meta_str(slice, "namespace").unwrap_or("default");
        if let Some(svc) = slice
            .pointer(&format!(
                "/metadata/labels/{}",
                SERVICE_NAME.replace('/', "~1")
            ))
            .and_then(Value::as_str)
        {
            queue.add(&format!("{ns}/{svc}"));
        }
    })
}

/// The EndpointSlice controller.
#[derive(Debug)]
pub struct EndpointSliceController;

impl Reconciler for EndpointSliceController {
    fn name(&self) -> &'static str {
        "endpointslice"
    }

    fn reconcile(&self, ctx: &mut Ctx<'_>, key: &str, _now: Timestamp) -> Result<Action, ApiError> {
        let Some(obj) = ctx.informers.services.get(key) else {
            return Ok(Action::Done);
        };
        if object::is_deleting(&obj) {
            return Ok(Action::Done);
        }
        let service: Service = typed(&obj)?;
        let (namespace, name) = split_key(key);
        let pods = ctx
            .informers
            .pods
            .list()
            .iter()
            .filter(|p| object::meta_str(p, "namespace") == namespace)
            .map(typed::<Pod>)
            .collect::<Result<Vec<_>, _>>()?;
        let Some((endpoints, ports)) = desired(&service, &pods) else {
            return Ok(Action::Done);
        };
        let mut slices: Vec<Value> = ctx
            .informers
            .endpoint_slices
            .list()
            .into_iter()
            .filter(|s| object::meta_str(s, "namespace") == namespace)
            .filter(|s| {
                let label = |k: &str| {
                    s.pointer("/metadata/labels")
                        .and_then(|l| l.get(k))
                        .and_then(Value::as_str)
                        .map(str::to_string)
                };
                label(SERVICE_NAME).as_deref() == Some(name)
                    && label(MANAGED_BY).as_deref() == Some(CONTROLLER)
            })
            .collect();
        slices.sort_by_key(|s| object::name(s).to_string());
        let endpoints_json = untyped(&endpoints)?;
        let ports_json = untyped(&ports)?;
        match slices.first() {
            None => {
                let slice = EndpointSlice {
                    metadata: ObjectMeta {
                        generate_name: Some(format!("{name}-")),
                        namespace: namespace.map(str::to_string),
                        labels: Some(BTreeMap::from([
                            (SERVICE_NAME.to_string(), name.to_string()),
                            (MANAGED_BY.to_string(), CONTROLLER.to_string()),
                        ])),
                        owner_references: Some(vec![controller_ref(
                            "v1",
                            "Service",
                            &service.metadata,
                        )]),
                        ..Default::default()
                    },
                    address_type: "IPv4".into(),
                    endpoints: Some(endpoints),
                    ports: Some(ports),
                };
                ctx.create(&ResourceType::ENDPOINT_SLICES, namespace, untyped(&slice)?)?;
            }
            Some(slice) => {
                let same = |field: &str, want: &Value| {
                    let have = slice
                        .get(field)
                        .cloned()
                        .unwrap_or(Value::Array(Vec::new()));
                    &have == want
                };
                if !same("endpoints", &endpoints_json) || !same("ports", &ports_json) {
                    let mut updated = slice.clone();
                    updated["endpoints"] = endpoints_json;
                    updated["ports"] = ports_json;
                    ctx.update(
                        &ResourceType::ENDPOINT_SLICES,
                        namespace,
                        object::name(slice),
                        updated,
                    )?;
                }
            }
        }
        for extra in slices.iter().skip(1) {
            ctx.delete(
                &ResourceType::ENDPOINT_SLICES,
                namespace,
                object::name(extra),
                &DeleteOptions::default(),
            )?;
        }
        Ok(Action::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(target_port: Value) -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "s1"},
            "spec": {"selector": {"app": "web"},
                     "ports": [{"name": "http", "port": 80, "targetPort": target_port}]}
        }))
        .unwrap()
    }

    fn pod(name: &str, app: &str, ip: Option<&str>, ready: bool, deleting: bool) -> Pod {
        let mut p = json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("u-{name}"),
                         "labels": {"app": app}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": [{"name": "web", "containerPort": 8080}]}]},
            "status": {"phase": "Running",
                       "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}
        });
        if let Some(ip) = ip {
            p["status"]["podIP"] = ip.into();
        }
        if deleting {
            p["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z".into();
        }
        serde_json::from_value(p).unwrap()
    }

    #[test]
    fn selected_pods_with_an_ip_become_endpoints_with_their_conditions() {
        let pods = [
            pod("b", "web", Some("198.18.0.3"), true, false),
            pod("a", "web", Some("198.18.0.2"), false, false),
            pod("c", "web", Some("198.18.0.4"), true, true),
            pod("d", "db", Some("198.18.0.5"), true, false),
            pod("e", "web", None, true, false),
        ];
        let (eps, ports) = desired(&service(json!(8080)), &pods).unwrap();
        let got: Vec<(String, bool, bool, bool)> = eps
            .iter()
            .map(|e| {
                let c = e.conditions.clone().unwrap();
                (
                    e.addresses[0].clone(),
                    c.ready.unwrap(),
                    c.serving.unwrap(),
                    c.terminating.unwrap(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("198.18.0.2".into(), false, false, false),
                ("198.18.0.3".into(), true, true, false),
                ("198.18.0.4".into(), false, true, true),
            ]
        );
        assert_eq!(ports[0].port, Some(8080));
        assert_eq!(ports[0].name.as_deref(), Some("http"));
        assert_eq!(ports[0].protocol.as_deref(), Some("TCP"));
    }

    #[test]
    fn a_named_target_port_resolves_against_the_container_ports() {
        let pods = [pod("a", "web", Some("198.18.0.2"), true, false)];
        let (_, ports) = desired(&service(json!("web")), &pods).unwrap();
        assert_eq!(ports[0].port, Some(8080));
        let (_, ports) = desired(&service(json!("nope")), &pods).unwrap();
        assert_eq!(ports[0].port, None);
    }

    #[test]
    fn a_service_without_a_selector_has_no_managed_slice() {
        let svc: Service = serde_json::from_value(json!({
            "metadata": {"name": "ext", "namespace": "default"},
            "spec": {"ports": [{"port": 80}]}
        }))
        .unwrap();
        assert!(desired(&svc, &[]).is_none());
    }
}
