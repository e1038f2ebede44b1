//! Sidecar injection inside `podrun run`: `--inject`, or automatically where Istio's
//! webhook would be called (namespace labelled `istio-injection=enabled`, or a pod
//! labelled `sidecar.istio.io/inject=true`). The injected containers run the podrun
//! binary itself (`podrun proxy-init`, `podrun proxy`), so nothing else is installed.

use std::collections::BTreeSet;

use podrun_inject::{
    MeshConfig, NativeSidecars, ObjectOutcome, Runtime, drop_control_plane_volumes, inject_object,
};
use podrun_model::Object;

/// The mesh configuration `podrun run` injects with: native sidecars (podrun's engine
/// is a 1.34 kubelet) whose commands are this very binary.
pub fn config() -> MeshConfig {
    let podrun_path = std::env::current_exe()
        .ok()
        .and_then(|p| p.to_str().map(String::from))
        .unwrap_or_else(|| "podrun".into());
    MeshConfig {
        runtime: Runtime::Podrun,
        native_sidecars: NativeSidecars::True,
        podrun_path,
        // App probes are rewritten onto the proxy's status port (15020) as Istio's
        // default: the proxy runs them against the app from 127.0.0.6.
        ..MeshConfig::default()
    }
}

/// Injects the objects that should be injected; `all` is `--inject`. Messages (skips,
/// warnings) go to `notes`.
pub fn inject_all(
    objects: Vec<Object>,
    all: bool,
    notes: &mut Vec<String>,
) -> Result<Vec<Object>, String> {
    let enabled_namespaces: BTreeSet<String> = objects
        .iter()
        .filter_map(|o| match o {
            Object::Namespace(ns) => {
                let on = ns
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get("istio-injection"))
                    .is_some_and(|v| v == "enabled");
                on.then(|| ns.metadata.name.clone().unwrap_or_default())
            }
            _ => None,
        })
        .collect();
    let config = config();
    let mut checked_proxy_exec = false;
    let mut out = Vec::with_capacity(objects.len());
    for (index, object) in objects.into_iter().enumerate() {
        // A CronJob's pod template is its Job template's: every Job it creates then
        // runs injected pods, as the webhook would inject them at their admission.
        let Some(template) = object.pod_template_pointer() else {
            out.push(object);
            continue;
        };
        let namespace = object
            .metadata()
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let value = object.to_json();
        if !all && !enabled_namespaces.contains(&namespace) && !asks_for_injection(&value, template)
        {
            out.push(object);
            continue;
        }
        if !podrun_node::pod_network_available() {
            // istio-init would install its capture rules in the host's network namespace.
            return Err(format!(
                "{} {:?}: sidecar injection needs pods with their own network namespace, \
                 which this podrun cannot create (run as root)",
                object.kind(),
                object.metadata().name.clone().unwrap_or_default()
            ));
        }
        if !checked_proxy_exec {
            proxy_can_exec(&config.podrun_path)?;
            checked_proxy_exec = true;
        }
        match inject_object(&value, &config, index, notes).map_err(|e| e.to_string())? {
            ObjectOutcome::Injected(mut v) => {
                if let Some(spec) = v.pointer_mut(&format!("{template}/spec")) {
                    drop_control_plane_volumes(spec);
                }
                let injected =
                    podrun_model::decode_object(v, "injected").map_err(|e| e.to_string())?;
                out.push(injected);
            }
            ObjectOutcome::Unchanged => out.push(object),
        }
    }
    Ok(out)
}

/// The injected `istio-proxy` container runs this binary as UID/GID 1337. A binary
/// that user cannot execute (typically under a home or temporary directory of mode
/// 0700) would leave every injected pod failing with `permission denied`; say why up
/// front instead. The kernel decides: the binary is run as that user with `--version`.
fn proxy_can_exec(podrun_path: &str) -> Result<(), String> {
    use std::os::unix::process::CommandExt;
    let status = std::process::Command::new(podrun_path)
        .arg("--version")
        .uid(PROXY_UID)
        .gid(PROXY_UID)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    match status {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Err(format!(
            "the injected istio-proxy container runs {podrun_path} as UID {PROXY_UID}, \
             which cannot execute it ({e}): every directory on its path needs search \
             permission for other users (e.g. chmod o+x), or install podrun where they \
             have it (e.g. /usr/local/bin)"
        )),
        Err(e) => Err(format!(
            "cannot run {podrun_path} as the proxy's UID {PROXY_UID}: {e}"
        )),
    }
}

/// The UID and GID Istio's sidecar runs as.
const PROXY_UID: u32 = 1337;

/// A pod (template) labelled `sidecar.istio.io/inject=true` asks for injection even
/// where its namespace does not. `template` points at the pod (template) in `object`.
fn asks_for_injection(object: &serde_json::Value, template: &str) -> bool {
    object
        .pointer(&format!(
            "{template}/metadata/labels/sidecar.istio.io~1inject"
        ))
        .and_then(serde_json::Value::as_str)
        == Some("true")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_template_labelled_for_injection_asks_for_it() {
        let cron_job = json!({"spec": {"jobTemplate": {"spec": {"template": {"metadata": {
            "labels": {"sidecar.istio.io/inject": "true"}}}}}}});
        assert!(asks_for_injection(
            &cron_job,
            "/spec/jobTemplate/spec/template"
        ));
        assert!(!asks_for_injection(&cron_job, "/spec/template"));
        let pod = json!({"metadata": {"labels": {"sidecar.istio.io/inject": "false"}}});
        assert!(!asks_for_injection(&pod, ""));
    }
}
