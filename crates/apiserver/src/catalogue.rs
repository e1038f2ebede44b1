//! The resource catalogue: every kind podrun serves, with the group, version, plural,
//! singular, kind, short names, verbs, categories and subresources that the Kubernetes API
//! server publishes for it. Discovery, OpenAPI, routing and Table output all read this one
//! table.

/// Every verb of a namespaced or cluster-scoped collection that supports them all.
pub const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
/// Namespaces: everything but `deletecollection`, as upstream.
const NAMESPACE_VERBS: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];
const STATUS_VERBS: &[&str] = &["get", "patch", "update"];

/// Whether a resource lives inside a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `/namespaces/{ns}/{resource}`.
    Namespaced,
    /// `/{resource}` only.
    Cluster,
}

/// A group, version and kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gvk {
    /// API group; `""` is the core group.
    pub group: &'static str,
    /// API version.
    pub version: &'static str,
    /// Kind.
    pub kind: &'static str,
}

impl Gvk {
    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

/// A subresource of a resource (`pods/log`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subresource {
    /// Path segment after the object name.
    pub name: &'static str,
    /// Kind of the object it answers with or takes.
    pub kind: Gvk,
    /// Verbs it supports.
    pub verbs: &'static [&'static str],
}

/// One served resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resource {
    /// Group, version and kind of the objects.
    pub gvk: Gvk,
    /// Plural lowercase name used in paths (`pods`).
    pub plural: &'static str,
    /// Singular lowercase name (`pod`).
    pub singular: &'static str,
    /// Namespaced or cluster-scoped.
    pub scope: Scope,
    /// Short names (`po`).
    pub short_names: &'static [&'static str],
    /// Verbs on the collection and its objects.
    pub verbs: &'static [&'static str],
    /// Categories (`all`).
    pub categories: &'static [&'static str],
    /// Subresources podrun serves.
    pub subresources: &'static [Subresource],
    /// Name of the OpenAPI schema of the kind.
    pub schema: &'static str,
}

impl Resource {
    /// `pods` or `deployments.apps`, as in error messages.
    pub fn group_resource(&self) -> String {
        if self.gvk.group.is_empty() {
            self.plural.to_owned()
        } else {
            format!("{}.{}", self.plural, self.gvk.group)
        }
    }

    /// `Pod` or `Deployment.apps`, as in Invalid messages.
    pub fn group_kind(&self) -> String {
        if self.gvk.group.is_empty() {
            self.gvk.kind.to_owned()
        } else {
            format!("{}.{}", self.gvk.kind, self.gvk.group)
        }
    }

    /// Whether objects live in namespaces.
    pub fn namespaced(&self) -> bool {
        self.scope == Scope::Namespaced
    }

    /// The subresource called `name`.
    pub fn subresource(&self, name: &str) -> Option<&'static Subresource> {
        self.subresources.iter().find(|s| s.name == name)
    }

    /// Whether the collection or its objects support `verb`.
    pub fn supports(&self, verb: &str) -> bool {
        self.verbs.contains(&verb)
    }
}

const fn gvk(group: &'static str, version: &'static str, kind: &'static str) -> Gvk {
    Gvk {
        group,
        version,
        kind,
    }
}

const fn status(kind: Gvk) -> Subresource {
    Subresource {
        name: "status",
        kind,
        verbs: STATUS_VERBS,
    }
}

const fn scale() -> Subresource {
    Subresource {
        name: "scale",
        kind: gvk("autoscaling", "v1", "Scale"),
        verbs: STATUS_VERBS,
    }
}

const POD: Gvk = gvk("", "v1", "Pod");
const NAMESPACE: Gvk = gvk("", "v1", "Namespace");
const SERVICE: Gvk = gvk("", "v1", "Service");
const NODE: Gvk = gvk("", "v1", "Node");
const DEPLOYMENT: Gvk = gvk("apps", "v1", "Deployment");
const REPLICASET: Gvk = gvk("apps", "v1", "ReplicaSet");
const JOB: Gvk = gvk("batch", "v1", "Job");
const CRONJOB: Gvk = gvk("batch", "v1", "CronJob");

/// Every resource podrun serves, core group first, then the named groups in the order the
/// API server lists them (`apps`, `events.k8s.io`, `batch`, `discovery.k8s.io`).
pub static RESOURCES: &[Resource] = &[
    Resource {
        gvk: gvk("", "v1", "ConfigMap"),
        plural: "configmaps",
        singular: "configmap",
        scope: Scope::Namespaced,
        short_names: &["cm"],
        verbs: ALL_VERBS,
        categories: &[],
        subresources: &[],
        schema: "io.k8s.api.core.v1.ConfigMap",
    },
    Resource {
        gvk: gvk("", "v1", "Endpoints"),
        plural: "endpoints",
        singular: "endpoints",
        scope: Scope::Namespaced,
        short_names: &["ep"],
        verbs: ALL_VERBS,
        categories: &[],
        subresources: &[],
        schema: "io.k8s.api.core.v1.Endpoints",
    },
    Resource {
        gvk: gvk("", "v1", "Event"),
        plural: "events",
        singular: "event",
        scope: Scope::Namespaced,
        short_names: &["ev"],
        verbs: ALL_VERBS,
        categories: &[],
        subresources: &[],
        schema: "io.k8s.api.core.v1.Event",
    },
    Resource {
        gvk: NAMESPACE,
        plural: "namespaces",
        singular: "namespace",
        scope: Scope::Cluster,
        short_names: &["ns"],
        verbs: NAMESPACE_VERBS,
        categories: &[],
        subresources: &[
            Subresource {
                name: "finalize",
                kind: NAMESPACE,
                verbs: &["update"],
            },
            status(NAMESPACE),
        ],
        schema: "io.k8s.api.core.v1.Namespace",
    },
    Resource {
        gvk: NODE,
        plural: "nodes",
        singular: "node",
        scope: Scope::Cluster,
        short_names: &["no"],
        verbs: ALL_VERBS,
        categories: &[],
        subresources: &[status(NODE)],
        schema: "io.k8s.api.core.v1.Node",
    },
    Resource {
        gvk: POD,
        plural: "pods",
        singular: "pod",
        scope: Scope::Namespaced,
        short_names: &["po"],
        verbs: ALL_VERBS,
        categories: &["all"],
        subresources: &[
            Subresource {
                name: "exec",
                kind: gvk("", "v1", "PodExecOptions"),
                verbs: &["create", "get"],
            },
            Subresource {
                name: "log",
                kind: POD,
                verbs: &["get"],
            },
            status(POD),
        ],
        schema: "io.k8s.api.core.v1.Pod",
    },
    Resource {
        gvk: gvk("", "v1", "Secret"),
        plural: "secrets",
        singular: "secret",
        scope: Scope::Namespaced,
        short_names: &[],
        verbs: ALL_VERBS,
        categories: &[],
        subresources: &[],
        schema: "io.k8s.api.core.v1.Secret",
    },
    Resource {
        gvk: gvk("", "v1", "ServiceAccount"),
        plural: "serviceaccounts",
        singular: "serviceaccount",
        scope: Scope::Namespaced,
        short_names: &["sa"],
        verbs: ALL_VERBS,
        categories: &[],
        subresources: &[],
        schema: "io.k8s.api.core.v1.ServiceAccount",
    },
    Resource {
        gvk: SERVICE,
        plural: "services",
        singular: "service",
        scope: Scope::Namespaced,
        short_names: &["svc"],
        verbs: ALL_VERBS,
        categories: &["all"],
        subresources: &[status(SERVICE)],
        schema: "io.k8s.api.core.v1.Service",
    },
    Resource {
        gvk: DEPLOYMENT,
        plural: "deployments",
        singular: "deployment",
        scope: Scope::Namespaced,
        short_names: &["deploy"],
        verbs: ALL_VERBS,
        categories: &["all"],
        subresources: &[scale(), status(DEPLOYMENT)],
        schema: "io.k8s.api.apps.v1.Deployment",
    },
    Resource {
        gvk: REPLICASET,
        plural: "replicasets",
        singular: "replicaset",
        scope: Scope::Namespaced,
        short_names: &["rs"],
        verbs: ALL_VERBS,
        categories: &["all"],
        subresources: &[scale(), status(REPLICASET)],
        schema: "io.k8s.api.apps.v1.ReplicaSet",
    },
    Resource {
        gvk: gvk("events.k8s.io", "v1", "Event"),
        plural: "events",
        singular: "event",
        scope: Scope::Namespaced,
        short_names: &["ev"],
        verbs: ALL_VERBS,
        categories: &[],
        subresources: &[],
        schema: "io.k8s.api.events.v1.Event",
    },
    Resource {
        gvk: CRONJOB,
        plural: "cronjobs",
        singular: "cronjob",
        scope: Scope::Namespaced,
        short_names: &["cj"],
        verbs: ALL_VERBS,
        categories: &["all"],
        subresources: &[status(CRONJOB)],
        schema: "io.k8s.api.batch.v1.CronJob",
    },
    Resource {
        gvk: JOB,
        plural: "jobs",
        singular: "job",
        scope: Scope::Namespaced,
        short_names: &[],
        verbs: ALL_VERBS,
        categories: &["all"],
        subresources: &[status(JOB)],
        schema: "io.k8s.api.batch.v1.Job",
    },
    Resource {
        gvk: gvk("discovery.k8s.io", "v1", "EndpointSlice"),
        plural: "endpointslices",
        singular: "endpointslice",
        scope: Scope::Namespaced,
        short_names: &[],
        verbs: ALL_VERBS,
        categories: &[],
        subresources: &[],
        schema: "io.k8s.api.discovery.v1.EndpointSlice",
    },
];

/// Named groups in the order discovery lists them.
pub const GROUPS: &[&str] = &["apps", "events.k8s.io", "batch", "discovery.k8s.io"];

/// The resource `plural` of `group`/`version`.
pub fn lookup(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.gvk.group == group && r.gvk.version == version && r.plural == plural)
}

/// The resource whose objects have kind `kind` in `group`/`version`.
pub fn by_kind(group: &str, version: &str, kind: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.gvk.group == group && r.gvk.version == version && r.gvk.kind == kind)
}

/// The resources of one group-version, in catalogue order.
pub fn in_group_version<'a>(
    group: &'a str,
    version: &'a str,
) -> impl Iterator<Item = &'static Resource> + 'a {
    RESOURCES
        .iter()
        .filter(move |r| r.gvk.group == group && r.gvk.version == version)
}

/// The versions served for `group`, newest first.
pub fn versions(group: &str) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for r in RESOURCES.iter().filter(|r| r.gvk.group == group) {
        if !out.contains(&r.gvk.version) {
            out.push(r.gvk.version);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_find_the_served_resources() {
        let cases = [
            ("", "v1", "pods", Some("Pod")),
            ("", "v1", "namespaces", Some("Namespace")),
            ("apps", "v1", "deployments", Some("Deployment")),
            ("events.k8s.io", "v1", "events", Some("Event")),
            ("batch", "v1", "cronjobs", Some("CronJob")),
            ("apps", "v1", "pods", None),
            ("", "v2", "pods", None),
        ];
        for (group, version, plural, kind) in cases {
            assert_eq!(
                lookup(group, version, plural).map(|r| r.gvk.kind),
                kind,
                "{group}/{version} {plural}"
            );
        }
    }

    #[test]
    fn names_are_unique_per_group_version_and_schemas_exist() {
        let defs = crate::openapi::definitions();
        for (i, a) in RESOURCES.iter().enumerate() {
            for b in &RESOURCES[i + 1..] {
                assert!(
                    !(a.gvk.group == b.gvk.group
                        && a.gvk.version == b.gvk.version
                        && a.plural == b.plural),
                    "{} twice",
                    a.plural
                );
            }
            assert!(defs.contains_key(a.schema), "{} has no schema", a.schema);
            assert!(GROUPS.contains(&a.gvk.group) || a.gvk.group.is_empty());
        }
    }

    #[test]
    fn qualified_names() {
        let d = lookup("apps", "v1", "deployments").unwrap();
        assert_eq!(d.group_resource(), "deployments.apps");
        assert_eq!(d.group_kind(), "Deployment.apps");
        let p = lookup("", "v1", "pods").unwrap();
        assert_eq!(p.group_resource(), "pods");
        assert_eq!(p.group_kind(), "Pod");
        assert!(!lookup("", "v1", "namespaces").unwrap().namespaced());
        assert!(
            !lookup("", "v1", "namespaces")
                .unwrap()
                .supports("deletecollection")
        );
    }
}
