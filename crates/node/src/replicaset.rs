//! Deployments and ReplicaSets, as far as one node needs them: a Deployment gets one
//! ReplicaSet named `<deployment>-<pod-template-hash>`, and a ReplicaSet keeps
//! `replicas` pods named `<replicaset>-<5 chars>` running, replacing pods that end,
//! until the node stops.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use tokio::sync::broadcast::error::RecvError;

use crate::{Error, Node, NodeEvent, new_uid, random_suffix};

/// The `pod-template-hash` label value: FNV-1a (32 bit) of the template, encoded with
/// the alphabet upstream's `SafeEncodeString` uses, so it never looks like a word.
pub fn pod_template_hash(template: &PodTemplateSpec) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let bytes = serde_json::to_vec(template).unwrap_or_default();
    let mut hash: u32 = 0x811c_9dc5;
    for b in bytes {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash.to_string()
        .bytes()
        .map(|b| ALPHABET[usize::from(b) % ALPHABET.len()] as char)
        .collect()
}

/// The ReplicaSet a Deployment owns.
pub fn replica_set_for(deployment: &Deployment) -> ReplicaSet {
    let name = deployment.metadata.name.clone().unwrap_or_default();
    let spec = &deployment.spec;
    let hash = pod_template_hash(&spec.template);
    let mut template = spec.template.clone();
    let meta = template.metadata.get_or_insert_with(Default::default);
    meta.labels
        .get_or_insert_with(BTreeMap::new)
        .insert("pod-template-hash".into(), hash.clone());
    let mut labels = meta.labels.clone().unwrap_or_default();
    labels.insert("pod-template-hash".into(), hash.clone());
    let mut selector = spec.selector.clone();
    selector
        .match_labels
        .get_or_insert_with(BTreeMap::new)
        .insert("pod-template-hash".into(), hash.clone());
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some(format!("{name}-{hash}")),
            namespace: deployment.metadata.namespace.clone(),
            labels: Some(labels),
            owner_references: Some(vec![owner("apps/v1", "Deployment", &deployment.metadata)]),
            ..Default::default()
        },
        spec: ReplicaSetSpec {
            replicas: Some(spec.replicas.unwrap_or(1)),
            min_ready_seconds: spec.min_ready_seconds,
            selector,
            template: Some(template),
        },
        status: None,
    }
}

fn owner(api_version: &str, kind: &str, meta: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: api_version.into(),
        kind: kind.into(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// A pod for the ReplicaSet, named `<replicaset>-<5 chars>`.
fn pod_for(rs: &ReplicaSet) -> Pod {
    let name = rs.metadata.name.clone().unwrap_or_default();
    let template = rs.spec.template.clone().unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            name: Some(format!("{name}-{}", random_suffix())),
            generate_name: Some(format!("{name}-")),
            namespace: rs.metadata.namespace.clone(),
            owner_references: Some(vec![owner("apps/v1", "ReplicaSet", &rs.metadata)]),
            ..meta
        },
        spec: template.spec,
        status: None,
    }
}

/// Creates the Deployment's ReplicaSet and runs it.
pub(crate) fn create_deployment(node: &Node, mut deployment: Deployment) -> Result<(), Error> {
    deployment.metadata.uid = Some(new_uid());
    deployment.metadata.creation_timestamp = Some(Time(crate::now()));
    create_replica_set(node, replica_set_for(&deployment))
}

/// Runs a ReplicaSet's controller: keep `replicas` pods until the node stops.
pub(crate) fn create_replica_set(node: &Node, mut rs: ReplicaSet) -> Result<(), Error> {
    rs.metadata.uid = Some(new_uid());
    rs.metadata.creation_timestamp = Some(Time(crate::now()));
    let replicas = rs.spec.replicas.unwrap_or(1).max(0);
    let node = node.clone();
    let mut events = node.subscribe();
    let uid = rs.metadata.uid.clone().unwrap_or_default();
    let mut live = Vec::new();
    for _ in 0..replicas {
        live.push(start_pod(&node, &rs)?);
    }
    tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(NodeEvent::PodFinished(pod)) => {
                    let ours = pod
                        .metadata
                        .owner_references
                        .iter()
                        .flatten()
                        .any(|o| o.uid == uid);
                    let name = pod.metadata.name.clone().unwrap_or_default();
                    if !ours || !live.contains(&name) {
                        continue;
                    }
                    live.retain(|n| n != &name);
                    if node.is_stopping() {
                        if live.is_empty() {
                            return;
                        }
                        continue;
                    }
                    match start_pod(&node, &rs) {
                        Ok(n) => live.push(n),
                        Err(e) => tracing::error!(%e, "replica set cannot replace a pod"),
                    }
                }
                Err(RecvError::Closed) => return,
                _ => {}
            }
        }
    });
    Ok(())
}

fn start_pod(node: &Node, rs: &ReplicaSet) -> Result<String, Error> {
    let pod = podrun_model::admit_pod(pod_for(rs)).map_err(|e| Error::Invalid(e.to_string()))?;
    let pod = node.create_pod(pod)?;
    Ok(pod.metadata.name.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_hash_is_stable_and_uses_the_safe_alphabet() {
        let t = PodTemplateSpec::default();
        let h = pod_template_hash(&t);
        assert_eq!(h, pod_template_hash(&t));
        assert!(
            h.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)),
            "{h}"
        );
        let mut other = t.clone();
        other.metadata = Some(ObjectMeta {
            name: Some("x".into()),
            ..Default::default()
        });
        assert_ne!(h, pod_template_hash(&other));
    }

    #[test]
    fn replica_set_is_named_after_the_deployment_and_hash() {
        let d = Deployment {
            metadata: ObjectMeta {
                name: Some("sleep".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let rs = replica_set_for(&d);
        let hash = pod_template_hash(&d.spec.template);
        assert_eq!(
            rs.metadata.name.as_deref(),
            Some(format!("sleep-{hash}").as_str())
        );
        assert_eq!(rs.spec.replicas, Some(1));
        let pod = pod_for(&rs);
        let name = pod.metadata.name.unwrap();
        assert!(
            name.starts_with(&format!("sleep-{hash}-"))
                && name.len() == format!("sleep-{hash}-").len() + 5
        );
    }
}
