//! The `/inject` endpoint as a pure function: HTTP request parts in, HTTP reply out.
//! AdmissionReview parsing, the injection call, failure policy and the response shape live
//! here so they are tested without sockets.

use std::collections::BTreeMap;

use podrun_inject::{MeshConfig, Outcome, PodContext, inject};
use serde_json::{Value, json};

/// What to answer when injection itself fails (bad annotation, unusable pod).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailurePolicy {
    /// Deny the pod with the error message (Istio's behaviour).
    #[default]
    Fail,
    /// Admit the pod unchanged, with the error as an admission warning.
    Ignore,
}

/// An HTTP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status code.
    pub status: u16,
    /// `Content-Type` header value.
    pub content_type: &'static str,
    /// Body bytes.
    pub body: Vec<u8>,
}

/// How a request ended, for the `sidecar_injection_*` counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Patch returned.
    Success,
    /// Policy said no injection.
    Skip,
    /// Injection failed (denied or admitted with a warning).
    Failure,
    /// The request itself was unusable (4xx).
    BadRequest,
}

impl Reply {
    fn text(status: u16, message: &str) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            body: format!("{message}\n").into_bytes(),
        }
    }

    fn json(value: &Value) -> Self {
        Self {
            status: 200,
            content_type: "application/json",
            body: value.to_string().into_bytes(),
        }
    }
}

/// Key/value pairs after `/inject` (`/inject/cluster/c1/net/n1`); `--slash--` stands for `/`
/// and an odd trailing key is ignored. Returns `None` for paths that are not `/inject…`.
pub fn path_params(path: &str) -> Option<BTreeMap<String, String>> {
    let rest = path.strip_prefix("/inject")?;
    if !(rest.is_empty() || rest.starts_with('/')) {
        return None;
    }
    let parts: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    Some(
        parts
            .chunks_exact(2)
            .map(|kv| (kv[0].to_owned(), kv[1].replace("--slash--", "/")))
            .collect(),
    )
}

/// Standard base64 (RFC 4648, with padding), as Kubernetes expects for `patch`.
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Handles `POST /inject…` with the given `Content-Type` and body.
pub fn handle_inject(
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
    config: &MeshConfig,
    failure_policy: FailurePolicy,
) -> (Reply, Verdict) {
    let bad = |status, msg: &str| (Reply::text(status, msg), Verdict::BadRequest);
    let Some(params) = path_params(path) else {
        return bad(404, &format!("no such endpoint {path}"));
    };
    let media = content_type
        .and_then(|c| c.split(';').next())
        .map(|c| c.trim().to_ascii_lowercase());
    if media.as_deref() != Some("application/json") {
        return bad(
            415,
            &format!(
                "invalid Content-Type {:?}, expected application/json",
                content_type.unwrap_or("")
            ),
        );
    }
    if body.is_empty() {
        return bad(400, "no body found");
    }
    let review: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return bad(400, &format!("could not decode body as JSON: {e}")),
    };
    let api_version = review
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let kind = review.get("kind").and_then(Value::as_str).unwrap_or("");
    if kind != "AdmissionReview"
        || !matches!(
            api_version,
            "admission.k8s.io/v1" | "admission.k8s.io/v1beta1"
        )
    {
        return bad(
            400,
            &format!(
                "expected an admission.k8s.io/v1 AdmissionReview, got apiVersion {api_version:?} kind {kind:?}"
            ),
        );
    }
    let Some(request) = review.get("request").filter(|r| r.is_object()) else {
        return bad(400, "AdmissionReview has no request");
    };
    let Some(uid) = request
        .get("uid")
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty())
    else {
        return bad(400, "AdmissionReview request has no uid");
    };
    let req_kind = request
        .pointer("/kind/kind")
        .and_then(Value::as_str)
        .unwrap_or("");
    let req_group = request
        .pointer("/kind/group")
        .and_then(Value::as_str)
        .unwrap_or("");
    if req_kind != "Pod" || !req_group.is_empty() {
        return bad(
            400,
            &format!(
                "only core/v1 Pods can be injected, got kind {req_kind:?} in group {req_group:?}"
            ),
        );
    }
    let Some(object) = request.get("object").filter(|o| o.is_object()) else {
        return bad(400, "AdmissionReview request has no Pod object");
    };
    let mut pod = object.clone();
    // managedFields is the API server's bookkeeping; never diff or patch it.
    if let Some(meta) = pod.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    let ctx = PodContext {
        namespace: request
            .get("namespace")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
        path_params: params,
        ..PodContext::default()
    };
    let envelope = |response: Value| json!({"apiVersion": api_version, "kind": "AdmissionReview", "response": response});
    let pod_name = pod
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .or_else(|| {
            pod.pointer("/metadata/generateName")
                .and_then(Value::as_str)
        })
        .unwrap_or("")
        .to_owned();
    match inject(&pod, &ctx, config) {
        Ok(Outcome::Skipped(skip)) => {
            tracing::debug!(pod = %pod_name, "skipping injection: pod {skip}");
            (
                Reply::json(&envelope(json!({"uid": uid, "allowed": true}))),
                Verdict::Skip,
            )
        }
        Ok(Outcome::Injected(done)) => {
            // Invariant: a Patch is a list of plain JSON operations; serialising cannot fail.
            let patch = serde_json::to_vec(&done.patch).expect("patch serialises");
            let mut response = json!({
                "uid": uid,
                "allowed": true,
                "patchType": "JSONPatch",
                "patch": base64(&patch),
            });
            if !done.warnings.is_empty() {
                response["warnings"] = json!(done.warnings);
            }
            tracing::info!(pod = %pod_name, mode = ?done.mode, "injected");
            (Reply::json(&envelope(response)), Verdict::Success)
        }
        Err(err) => {
            tracing::warn!(pod = %pod_name, "injection failed: {err}");
            let message = format!("injection failed: {err}");
            let response = match failure_policy {
                FailurePolicy::Fail => json!({
                    "uid": uid,
                    "allowed": false,
                    "status": {"message": message, "code": 400, "status": "Failure", "reason": "BadRequest"},
                }),
                FailurePolicy::Ignore => {
                    json!({"uid": uid, "allowed": true, "warnings": [message]})
                }
            };
            (Reply::json(&envelope(response)), Verdict::Failure)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (plain, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), enc);
        }
    }

    #[test]
    fn path_params_pairs() {
        let p = path_params("/inject/cluster/c2/net/n--slash--2/odd").unwrap();
        assert_eq!(p.get("cluster").map(String::as_str), Some("c2"));
        assert_eq!(p.get("net").map(String::as_str), Some("n/2"));
        assert_eq!(p.len(), 2);
        assert!(path_params("/inject/").unwrap().is_empty());
        assert!(path_params("/injector").is_none());
    }

    fn review(object: Value) -> Vec<u8> {
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "u-1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "namespace": "shop", "operation": "CREATE", "object": object}})
        .to_string()
        .into_bytes()
    }

    #[test]
    fn status_codes_for_bad_requests() {
        let c = MeshConfig::default();
        let p = FailurePolicy::Fail;
        assert_eq!(
            handle_inject("/inject", Some("text/plain"), b"{}", &c, p)
                .0
                .status,
            415
        );
        assert_eq!(
            handle_inject("/inject", Some("application/json"), b"", &c, p)
                .0
                .status,
            400
        );
        assert_eq!(
            handle_inject("/inject", Some("application/json"), b"{oops", &c, p)
                .0
                .status,
            400
        );
        assert_eq!(
            handle_inject("/inject", Some("application/json"), b"[1]", &c, p)
                .0
                .status,
            400
        );
        let foreign = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "x", "kind": {"group": "apps", "version": "v1", "kind": "Deployment"}, "object": {}}});
        let (r, v) = handle_inject(
            "/inject",
            Some("application/json"),
            foreign.to_string().as_bytes(),
            &c,
            p,
        );
        assert_eq!((r.status, v), (400, Verdict::BadRequest));
        assert!(String::from_utf8_lossy(&r.body).contains("only core/v1 Pods"));
    }

    #[test]
    fn injection_error_follows_failure_policy() {
        let pod = json!({"metadata": {"name": "p", "annotations": {"sidecar.istio.io/interceptionMode": "bogus"}},
            "spec": {"containers": [{"name": "a", "image": "x"}]}});
        let c = MeshConfig::default();
        let (r, v) = handle_inject(
            "/inject",
            Some("application/json"),
            &review(pod.clone()),
            &c,
            FailurePolicy::Fail,
        );
        assert_eq!(v, Verdict::Failure);
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["response"]["allowed"], false);
        assert!(
            body["response"]["status"]["message"]
                .as_str()
                .unwrap()
                .contains("interceptionMode")
        );
        let (r, _) = handle_inject(
            "/inject",
            Some("application/json"),
            &review(pod),
            &c,
            FailurePolicy::Ignore,
        );
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["response"]["allowed"], true);
        assert!(body["response"].get("patch").is_none());
        assert!(
            body["response"]["warnings"][0]
                .as_str()
                .unwrap()
                .contains("interceptionMode")
        );
    }

    #[test]
    fn skipped_pod_is_allowed_without_patch() {
        let pod = json!({"metadata": {"name": "p", "annotations": {"sidecar.istio.io/inject": "false"}},
            "spec": {"containers": [{"name": "a", "image": "x"}]}});
        let (r, v) = handle_inject(
            "/inject",
            Some("application/json"),
            &review(pod),
            &MeshConfig::default(),
            FailurePolicy::Fail,
        );
        assert_eq!(v, Verdict::Skip);
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["response"], json!({"uid": "u-1", "allowed": true}));
    }
}
