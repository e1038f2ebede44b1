//! Host-filesystem mode: which containers of a pod run on the host's filesystem instead
//! of their image (the pod annotation `podrun.io/host-rootfs`: `"*"` or container names).

use serde_json::Value;

/// The pod annotation listing the containers that run on the host filesystem.
pub const HOST_ROOTFS_ANNOTATION: &str = "podrun.io/host-rootfs";

/// Stamps one pod (or pod template) with [`HOST_ROOTFS_ANNOTATION`]: with `all`, `"*"` when
/// it has none; and always the mesh containers that run the podrun binary (`istio-init`,
/// `istio-proxy` whose command is `podrun`), which run the host's podrun, not an image.
/// Returns whether it changed.
pub fn stamp_host_rootfs(pod: &mut Value, all: bool, podrun: &str) -> bool {
    let mut runtime_containers = Vec::new();
    for list in ["initContainers", "containers"] {
        for c in pod
            .pointer(&format!("/spec/{list}"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = c.get("name").and_then(Value::as_str).unwrap_or_default();
            let runs_podrun = c
                .pointer("/command/0")
                .and_then(Value::as_str)
                .is_some_and(|cmd| cmd == podrun);
            if matches!(name, "istio-init" | "istio-proxy") && runs_podrun {
                runtime_containers.push(name.to_owned());
            }
        }
    }
    let current = pod
        .pointer(&format!(
            "/metadata/annotations/{}",
            HOST_ROOTFS_ANNOTATION.replace('/', "~1")
        ))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let next = match current {
        None if all => "*".to_owned(),
        None if runtime_containers.is_empty() => return false,
        None => runtime_containers.join(","),
        Some(v) if v.split(',').any(|e| e.trim() == "*") => return false,
        Some(v) => {
            let mut names: Vec<String> = v
                .split(',')
                .map(|e| e.trim().to_owned())
                .filter(|e| !e.is_empty())
                .collect();
            let before = names.len();
            for c in runtime_containers {
                if !names.contains(&c) {
                    names.push(c);
                }
            }
            if names.len() == before {
                return false;
            }
            names.join(",")
        }
    };
    let Some(obj) = pod.as_object_mut() else {
        return false;
    };
    let meta = obj
        .entry("metadata")
        .or_insert_with(|| Value::Object(Default::default()));
    let Some(meta) = meta.as_object_mut() else {
        return false;
    };
    let annotations = meta
        .entry("annotations")
        .or_insert_with(|| Value::Object(Default::default()));
    match annotations.as_object_mut() {
        Some(a) => {
            a.insert(HOST_ROOTFS_ANNOTATION.to_owned(), Value::String(next));
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stamps_star_only_when_asked_and_lists_the_mesh_containers() {
        let mut pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "app"}]}});
        assert!(!stamp_host_rootfs(&mut pod, false, "/bin/podrun"));
        assert!(stamp_host_rootfs(&mut pod, true, "/bin/podrun"));
        assert_eq!(pod["metadata"]["annotations"][HOST_ROOTFS_ANNOTATION], "*");
        assert!(!stamp_host_rootfs(&mut pod, true, "/bin/podrun"));

        let mut meshed = json!({"metadata": {"annotations": {HOST_ROOTFS_ANNOTATION: "app"}},
            "spec": {"initContainers": [{"name": "istio-init", "command": ["/bin/podrun", "proxy-init"]}],
                     "containers": [{"name": "app"}, {"name": "istio-proxy", "command": ["envoy"]}]}});
        assert!(stamp_host_rootfs(&mut meshed, true, "/bin/podrun"));
        assert_eq!(
            meshed["metadata"]["annotations"][HOST_ROOTFS_ANNOTATION],
            "app,istio-init"
        );
    }
}
