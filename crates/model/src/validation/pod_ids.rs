//! User and group IDs in a pod's security contexts (upstream
//! `validatePodSpecSecurityContext` and `ValidateSecurityContext`, the ID
//! part): `runAsUser`, `runAsGroup`, `fsGroup` and `supplementalGroups` must
//! be in 0..=2147483647. Out of range, the kubelet could only refuse to start
//! the container and keep retrying; the API server refuses the object.

use k8s_openapi::api::core::v1::{Container, PodSpec, SecurityContext};

use crate::field::{FieldError, Path};
use crate::names;

/// Largest user or group ID the API server accepts (`math.MaxInt32`).
const MAX_ID: i64 = i32::MAX as i64;

/// Out-of-range IDs in the pod's and every container's security context.
pub(crate) fn validate_security_ids(spec: &PodSpec, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(sc) = &spec.security_context {
        let p = path.child("securityContext");
        check(&mut errs, sc.run_as_user, &p.child("runAsUser"));
        check(&mut errs, sc.run_as_group, &p.child("runAsGroup"));
        check(&mut errs, sc.fs_group, &p.child("fsGroup"));
        for (i, g) in sc.supplemental_groups.iter().flatten().enumerate() {
            check(&mut errs, Some(*g), &p.child("supplementalGroups").index(i));
        }
    }
    let lists: [(&[Container], &str); 2] = [
        (&spec.containers, "containers"),
        (
            spec.init_containers.as_deref().unwrap_or(&[]),
            "initContainers",
        ),
    ];
    for (list, name) in lists {
        for (i, c) in list.iter().enumerate() {
            if let Some(sc) = &c.security_context {
                container(
                    &mut errs,
                    sc,
                    &path.child(name).index(i).child("securityContext"),
                );
            }
        }
    }
    errs
}

fn container(errs: &mut Vec<FieldError>, sc: &SecurityContext, path: &Path) {
    check(errs, sc.run_as_user, &path.child("runAsUser"));
    check(errs, sc.run_as_group, &path.child("runAsGroup"));
}

fn check(errs: &mut Vec<FieldError>, id: Option<i64>, path: &Path) {
    if let Some(id) = id
        && !(0..=MAX_ID).contains(&id)
    {
        errs.push(FieldError::invalid_num(
            path,
            id,
            names::inclusive_range_error(0, MAX_ID),
        ));
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{Container, PodSecurityContext, PodSpec, SecurityContext};

    use super::*;

    #[test]
    fn negative_and_too_large_ids_are_refused_with_their_paths() {
        let spec = PodSpec {
            security_context: Some(PodSecurityContext {
                run_as_user: Some(-1),
                fs_group: Some(1 << 31),
                supplemental_groups: Some(vec![5, -3]),
                ..Default::default()
            }),
            containers: vec![Container {
                name: "a".into(),
                security_context: Some(SecurityContext {
                    run_as_group: Some(-2),
                    run_as_user: Some(1000),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        };
        let errs: Vec<String> = validate_security_ids(&spec, &Path::new("spec"))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            errs,
            [
                "spec.securityContext.runAsUser: Invalid value: -1: must be between 0 and 2147483647, inclusive",
                "spec.securityContext.fsGroup: Invalid value: 2147483648: must be between 0 and 2147483647, inclusive",
                "spec.securityContext.supplementalGroups[1]: Invalid value: -3: must be between 0 and 2147483647, inclusive",
                "spec.containers[0].securityContext.runAsGroup: Invalid value: -2: must be between 0 and 2147483647, inclusive",
            ]
        );
    }
}
