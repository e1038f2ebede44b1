//! Kubernetes objects that deploy the webhook on a real cluster: Namespace, ServiceAccount,
//! Secret (serving certificate), Deployment, Service and a MutatingWebhookConfiguration whose
//! entries and selectors mirror Istio's for the default revision.

use serde_json::{Value, json};

use crate::tls::ServingCert;

/// What to render.
#[derive(Debug, Clone)]
pub struct DeployOptions {
    /// Namespace the webhook runs in.
    pub namespace: String,
    /// Service (and Deployment) name.
    pub service: String,
    /// Container image that holds the podrun binary.
    pub image: String,
    /// `reinvocationPolicy` (`Never` or `IfNeeded`).
    pub reinvocation_policy: String,
    /// `failurePolicy` of the webhook entries (`Fail` or `Ignore`).
    pub failure_policy: String,
    /// Extra arguments for `podrun webhook` in the Deployment.
    pub extra_args: Vec<String>,
}

impl Default for DeployOptions {
    fn default() -> Self {
        Self {
            namespace: "podrun-system".into(),
            service: "podrun-webhook".into(),
            image: "podrun/podrun:0.1.0".into(),
            reinvocation_policy: "Never".into(),
            failure_policy: "Fail".into(),
            extra_args: Vec::new(),
        }
    }
}

fn selector(exprs: &[(&str, &str, &[&str])]) -> Value {
    let list: Vec<Value> = exprs
        .iter()
        .map(|(key, op, values)| {
            let mut e = json!({"key": key, "operator": op});
            if !values.is_empty() {
                e["values"] = json!(values);
            }
            e
        })
        .collect();
    json!({"matchExpressions": list})
}

/// The objects, in apply order.
pub fn deploy_objects(opts: &DeployOptions, cert: &ServingCert) -> Vec<Value> {
    let ns = &opts.namespace;
    let name = &opts.service;
    let labels = json!({"app": name});
    let secret = format!("{name}-tls");
    let mut args = vec![
        "webhook".to_owned(),
        "--listen".into(),
        "0.0.0.0:15017".into(),
        "--tls-cert".into(),
        "/etc/podrun-webhook/tls.crt".into(),
        "--tls-key".into(),
        "/etc/podrun-webhook/tls.key".into(),
    ];
    args.extend(opts.extra_args.iter().cloned());
    let ca_bundle = crate::review::base64(cert.ca_pem.as_bytes());
    let client_config = json!({
        "service": {"name": name, "namespace": ns, "path": "/inject", "port": 443},
        "caBundle": ca_bundle,
    });
    let pod_rule = json!([{
        "operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"],
    }]);
    let entry = |entry_name: &str, ns_sel: Value, obj_sel: Value| {
        json!({
            "name": entry_name,
            "clientConfig": client_config,
            "rules": pod_rule,
            "failurePolicy": opts.failure_policy,
            "sideEffects": "None",
            "reinvocationPolicy": opts.reinvocation_policy,
            "admissionReviewVersions": ["v1"],
            "namespaceSelector": ns_sel,
            "objectSelector": obj_sel,
        })
    };
    let not_false: (&str, &str, &[&str]) = ("sidecar.istio.io/inject", "NotIn", &["false"]);
    let webhooks = vec![
        entry(
            "rev.namespace.sidecar-injector.istio.io",
            selector(&[
                ("istio.io/rev", "In", &["default"]),
                ("istio-injection", "DoesNotExist", &[]),
            ]),
            selector(&[not_false]),
        ),
        entry(
            "rev.object.sidecar-injector.istio.io",
            selector(&[
                ("istio.io/rev", "DoesNotExist", &[]),
                ("istio-injection", "DoesNotExist", &[]),
            ]),
            selector(&[not_false, ("istio.io/rev", "In", &["default"])]),
        ),
        entry(
            "namespace.sidecar-injector.istio.io",
            selector(&[("istio-injection", "In", &["enabled"])]),
            selector(&[not_false]),
        ),
        entry(
            "object.sidecar-injector.istio.io",
            selector(&[
                ("istio-injection", "DoesNotExist", &[]),
                ("istio.io/rev", "DoesNotExist", &[]),
            ]),
            selector(&[
                ("sidecar.istio.io/inject", "In", &["true"]),
                ("istio.io/rev", "DoesNotExist", &[]),
            ]),
        ),
    ];
    vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": ns}}),
        json!({
            "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": secret, "namespace": ns},
            "stringData": {"tls.crt": cert.cert_pem, "tls.key": cert.key_pem, "ca.crt": cert.ca_pem},
        }),
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    // The webhook's own pod must never be injected by itself.
                    "metadata": {"labels": {"app": name, "sidecar.istio.io/inject": "false"}},
                    "spec": {
                        "serviceAccountName": name,
                        "containers": [{
                            "name": "webhook",
                            "image": opts.image,
                            "command": ["podrun"],
                            "args": args,
                            "ports": [{"name": "https-webhook", "containerPort": 15017}],
                            "readinessProbe": {"httpGet": {"path": "/healthz", "port": 15017, "scheme": "HTTPS"}},
                            "volumeMounts": [{"name": "tls", "mountPath": "/etc/podrun-webhook", "readOnly": true}],
                            "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "allowPrivilegeEscalation": false,
                                "capabilities": {"drop": ["ALL"]}, "readOnlyRootFilesystem": true},
                        }],
                        "volumes": [{"name": "tls", "secret": {"secretName": secret}}],
                    },
                },
            },
        }),
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"selector": labels, "ports": [{"name": "https-webhook", "port": 443, "targetPort": 15017}]},
        }),
        json!({
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": "podrun-sidecar-injector"},
            "webhooks": webhooks,
        }),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_configuration_mirrors_istio() {
        let cert = ServingCert {
            cert_pem: "C".into(),
            key_pem: "K".into(),
            ca_pem: "CA".into(),
        };
        let objs = deploy_objects(&DeployOptions::default(), &cert);
        let kinds: Vec<&str> = objs.iter().map(|o| o["kind"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            [
                "Namespace",
                "ServiceAccount",
                "Secret",
                "Deployment",
                "Service",
                "MutatingWebhookConfiguration"
            ]
        );
        let mwc = &objs[5];
        let hooks = mwc["webhooks"].as_array().unwrap();
        assert_eq!(hooks.len(), 4);
        for h in hooks {
            assert_eq!(h["sideEffects"], "None");
            assert_eq!(h["clientConfig"]["caBundle"], "Q0E=");
            assert_eq!(h["clientConfig"]["service"]["path"], "/inject");
        }
        assert_eq!(
            hooks[2]["namespaceSelector"]["matchExpressions"][0]["values"][0],
            "enabled"
        );
    }
}
