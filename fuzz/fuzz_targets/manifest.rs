//! Fuzzes what `podrun run` does with a manifest before it creates anything: parsing
//! (YAML or JSON, every document), sidecar injection, then the API server's defaulting
//! and validation for each kind podrun admits. Nothing may panic; every refusal must
//! carry a kubectl-style message (a parse error names its source, a validation error is
//! `Kind "name" is invalid: path: …` with a field path); and everything admitted must
//! still parse after a JSON round trip (what is stored is read back by `podrun get`).

#![no_main]

use libfuzzer_sys::fuzz_target;
use podrun_inject::{MeshConfig, NativeSidecars, ObjectOutcome, Runtime, inject_object};
use podrun_model::{Invalid, Object, decode_object, parse_manifest_bytes};

fuzz_target!(|data: &[u8]| {
    let objects = match parse_manifest_bytes(data, "fuzz.yaml") {
        Ok(objects) => objects,
        Err(e) => {
            let message = e.kubectl_message();
            assert!(
                message.starts_with("error: ") || message.starts_with("Error from server"),
                "{message}"
            );
            assert!(message.contains("fuzz.yaml") || message.contains("fuzz"), "{message}");
            return;
        }
    };
    let config = MeshConfig {
        runtime: Runtime::Podrun,
        native_sidecars: NativeSidecars::True,
        podrun_path: "/usr/local/bin/podrun".into(),
        ..MeshConfig::default()
    };
    for (index, object) in objects.into_iter().enumerate() {
        let injected = match inject_object(&object.to_json(), &config, index, &mut Vec::new()) {
            Ok(ObjectOutcome::Injected(v)) => match decode_object(v, "injected") {
                Ok(o) => o,
                Err(e) => panic!("an injected object does not decode: {e}"),
            },
            Ok(ObjectOutcome::Unchanged) => object,
            Err(e) => {
                assert!(!e.to_string().is_empty());
                continue;
            }
        };
        match admit(injected) {
            Ok(admitted) => {
                let again = decode_object(admitted.to_json(), "stored");
                assert!(again.is_ok(), "an admitted object does not read back: {again:?}");
            }
            Err(invalid) => check_invalid(&invalid),
        }
    }
});

/// The admission `podrun run` applies, kind by kind.
fn admit(object: Object) -> Result<Object, Invalid> {
    Ok(match object {
        Object::Pod(p) => Object::Pod(Box::new(podrun_model::admit_pod(*p)?)),
        Object::Job(j) => Object::Job(Box::new(podrun_model::admit_job(*j)?)),
        Object::Service(s) => Object::Service(Box::new(podrun_model::admit_service(*s)?)),
        Object::Deployment(d) => {
            Object::Deployment(Box::new(podrun_model::admit_deployment(*d)?))
        }
        Object::ReplicaSet(r) => {
            Object::ReplicaSet(Box::new(podrun_model::admit_replica_set(*r)?))
        }
        Object::ConfigMap(c) => Object::ConfigMap(Box::new(podrun_model::admit_config_map(*c)?)),
        Object::Secret(s) => Object::Secret(Box::new(podrun_model::admit_secret(*s)?)),
        other => other,
    })
}

/// An API-server-style 422: at least one error, each with a field path and the
/// wording of its kind.
fn check_invalid(invalid: &Invalid) {
    assert!(!invalid.errors.is_empty(), "{invalid}");
    let message = invalid.kubectl_message();
    assert!(
        message.starts_with(&format!("The {} ", invalid.kind)) && message.contains(" is invalid"),
        "{message}"
    );
    for e in &invalid.errors {
        assert!(!e.path.is_empty(), "an error without a field path: {e}");
    }
}
