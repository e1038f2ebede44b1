//! Golden injection cases: one folder per case under `tests/cases/<case>/` holding
//! `input.yaml` (one Pod or workload), optional `config.yaml` (a `MeshConfig`),
//! `expected.yaml` (the injected object) and `patch.json` (the JSON Patch for the pod or pod
//! template). `PODRUN_UPDATE_GOLDEN=1 cargo test -p podrun-inject --test golden` rewrites the
//! expected files; review the diff by hand before committing.
//!
//! Every case also checks that the patch applied to the input gives exactly the expected
//! object, that injecting the output again changes nothing, and that the manifest (CLI)
//! path gives the same object as the pod (webhook) path.

// The harness reads and writes the golden files; the core under test does no I/O.
#![allow(clippy::disallowed_methods)]

use std::fs;
use std::path::{Path, PathBuf};

use podrun_inject::{MeshConfig, Outcome, PodContext, Workload, inject, inject_manifests};
use serde_json::Value;

fn template_ptr(kind: &str) -> Option<&'static str> {
    match kind {
        "Pod" => Some(""),
        "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" | "Job" => Some("/spec/template"),
        "CronJob" => Some("/spec/jobTemplate/spec/template"),
        _ => None,
    }
}

/// Injects `obj`; returns the new object and the patch for its pod (template).
fn run_case(obj: &Value, config: &MeshConfig) -> (Value, Value) {
    let kind = obj["kind"].as_str().expect("input has a kind");
    let ptr = template_ptr(kind).unwrap_or_else(|| panic!("unsupported kind {kind}"));
    let pod = obj.pointer(ptr).expect("pod template present").clone();
    let ns = obj
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let ctx = PodContext {
        namespace: ns,
        workload: (kind != "Pod").then(|| Workload {
            name: obj["metadata"]["name"].as_str().unwrap().to_owned(),
            kind: kind.to_owned(),
            api_version: obj["apiVersion"].as_str().unwrap().to_owned(),
        }),
        ..PodContext::default()
    };
    match inject(&pod, &ctx, config).expect("injection succeeds") {
        Outcome::Skipped(_) => (obj.clone(), Value::Array(vec![])),
        Outcome::Injected(done) => {
            let mut out = obj.clone();
            if ptr.is_empty() {
                out = done.pod;
            } else {
                *out.pointer_mut(ptr).unwrap() = done.pod;
            }
            (out, serde_json::to_value(&done.patch).unwrap())
        }
    }
}

fn cases() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases");
    let mut dirs: Vec<PathBuf> = fs::read_dir(&root)
        .expect("tests/cases exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("input.yaml").is_file())
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn golden_cases() {
    let update = std::env::var_os("PODRUN_UPDATE_GOLDEN").is_some_and(|v| v == "1");
    let dirs = cases();
    assert!(
        dirs.len() >= 15,
        "expected the golden case folders, found {}",
        dirs.len()
    );
    let mut failures = Vec::new();
    for dir in &dirs {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let input_text = fs::read_to_string(dir.join("input.yaml")).unwrap();
        let input: Value = serde_saphyr::from_str(&input_text)
            .unwrap_or_else(|e| panic!("{name}: input.yaml: {e}"));
        let config = match fs::read_to_string(dir.join("config.yaml")) {
            Ok(text) => MeshConfig::from_yaml(&text).unwrap_or_else(|e| panic!("{name}: {e}")),
            Err(_) => MeshConfig::default(),
        };
        let (output, patch) = run_case(&input, &config);

        // The patch must turn the input pod into the output pod exactly.
        let ptr = template_ptr(input["kind"].as_str().unwrap()).unwrap();
        let mut patched = input.pointer(ptr).unwrap().clone();
        let p: json_patch::Patch = serde_json::from_value(patch.clone()).unwrap();
        json_patch::patch(&mut patched, &p).unwrap_or_else(|e| panic!("{name}: patch fails: {e}"));
        assert_eq!(
            &patched,
            output.pointer(ptr).unwrap(),
            "{name}: patch result differs"
        );

        // Idempotent: injecting the output again changes nothing.
        let (again, again_patch) = run_case(&output, &config);
        assert_eq!(again, output, "{name}: re-injection changed the object");
        assert_eq!(
            again_patch,
            Value::Array(vec![]),
            "{name}: re-injection patch not empty"
        );

        // The CLI path (multi-document manifest) agrees with the pod path.
        let cli = inject_manifests(&input_text, &config).expect("manifest path");
        let cli_obj: Value = serde_saphyr::from_str(&cli.yaml).unwrap();
        assert_eq!(cli_obj, output, "{name}: CLI output differs");

        let expected_path = dir.join("expected.yaml");
        let patch_path = dir.join("patch.json");
        if update {
            fs::write(&expected_path, serde_saphyr::to_string(&output).unwrap()).unwrap();
            fs::write(
                &patch_path,
                serde_json::to_string_pretty(&patch).unwrap() + "\n",
            )
            .unwrap();
            continue;
        }
        let expected: Value = match fs::read_to_string(&expected_path) {
            Ok(t) => serde_saphyr::from_str(&t).unwrap(),
            Err(_) => {
                failures.push(format!(
                    "{name}: expected.yaml missing (run with PODRUN_UPDATE_GOLDEN=1)"
                ));
                continue;
            }
        };
        let expected_patch: Value = match fs::read_to_string(&patch_path) {
            Ok(t) => serde_json::from_str(&t).unwrap(),
            Err(_) => {
                failures.push(format!("{name}: patch.json missing"));
                continue;
            }
        };
        if expected != output {
            failures.push(format!(
                "{name}: output differs from expected.yaml\n--- got ---\n{}",
                serde_saphyr::to_string(&output).unwrap()
            ));
        }
        if expected_patch != patch {
            failures.push(format!(
                "{name}: patch differs from patch.json\n--- got ---\n{}",
                serde_json::to_string_pretty(&patch).unwrap()
            ));
        }
        // The stored patch, applied to the input, must also give the stored expectation.
        let mut from_stored = input.pointer(ptr).unwrap().clone();
        let sp: json_patch::Patch = serde_json::from_value(expected_patch).unwrap();
        json_patch::patch(&mut from_stored, &sp).unwrap();
        if Some(&from_stored) != expected.pointer(ptr) {
            failures.push(format!("{name}: patch.json does not produce expected.yaml"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
