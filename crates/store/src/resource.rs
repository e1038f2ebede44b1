//! The kinds podrun serves, each described as the API server's discovery does: group,
//! version, plural, kind, scope, whether it has a `status` subresource, whether the
//! server keeps `metadata.generation`, which name rule applies, and which field
//! selectors it answers.

use serde_json::Value;

use crate::validate::NameRule;

/// One resource: everything the store needs to know about a kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResourceType {
    /// API group (`""` for the core group).
    pub group: &'static str,
    /// API version (`v1`).
    pub version: &'static str,
    /// Plural resource name (`pods`).
    pub plural: &'static str,
    /// Kind (`Pod`).
    pub kind: &'static str,
    /// Namespaced (`true`) or cluster-scoped.
    pub namespaced: bool,
    /// Has a `status` subresource: the main resource ignores `status`, the subresource
    /// changes nothing else.
    pub status_subresource: bool,
    /// The server keeps `metadata.generation`, bumped on every spec change.
    pub generation: bool,
    /// The rule `metadata.name` must follow.
    pub name_rule: NameRule,
    /// Field selectors beyond `metadata.name` and `metadata.namespace`: label and
    /// the object's path to it.
    pub fields: &'static [FieldLabel],
    /// A kind with its own field-label conversion answers an unknown label with
    /// `field label not supported: X`; the others with the generic
    /// `"X" is not a known field selector: …`.
    pub custom_fields: bool,
}

/// A field selector label and where its value lives in the object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldLabel {
    /// The label (`spec.nodeName`).
    pub label: &'static str,
    /// The JSON pointer to the value (`/spec/nodeName`).
    pub pointer: &'static str,
}

const fn fl(label: &'static str, pointer: &'static str) -> FieldLabel {
    FieldLabel { label, pointer }
}

const fn rt(
    group: &'static str,
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
    status_subresource: bool,
    generation: bool,
    name_rule: NameRule,
) -> ResourceType {
    ResourceType {
        group,
        version: "v1",
        plural,
        kind,
        namespaced,
        status_subresource,
        generation,
        name_rule,
        fields: &[],
        custom_fields: false,
    }
}

impl ResourceType {
    /// `namespaces` (cluster-scoped).
    pub const NAMESPACES: ResourceType = ResourceType {
        fields: &[fl("status.phase", "/status/phase")],
        custom_fields: true,
        ..rt(
            "",
            "namespaces",
            "Namespace",
            false,
            true,
            false,
            NameRule::Label,
        )
    };
    /// `pods`.
    pub const PODS: ResourceType = ResourceType {
        fields: &[
            fl("spec.nodeName", "/spec/nodeName"),
            fl("spec.restartPolicy", "/spec/restartPolicy"),
            fl("spec.schedulerName", "/spec/schedulerName"),
            fl("spec.serviceAccountName", "/spec/serviceAccountName"),
            fl("spec.hostNetwork", "/spec/hostNetwork"),
            fl("status.phase", "/status/phase"),
            fl("status.podIP", "/status/podIP"),
            fl("status.nominatedNodeName", "/status/nominatedNodeName"),
        ],
        custom_fields: true,
        ..rt("", "pods", "Pod", true, true, true, NameRule::Subdomain)
    };
    /// `services`.
    pub const SERVICES: ResourceType = rt(
        "",
        "services",
        "Service",
        true,
        true,
        false,
        NameRule::Dns1035Label,
    );
    /// `endpointslices.discovery.k8s.io`.
    pub const ENDPOINT_SLICES: ResourceType = rt(
        "discovery.k8s.io",
        "endpointslices",
        "EndpointSlice",
        true,
        false,
        false,
        NameRule::Subdomain,
    );
    /// `configmaps`.
    pub const CONFIG_MAPS: ResourceType = rt(
        "",
        "configmaps",
        "ConfigMap",
        true,
        false,
        false,
        NameRule::Subdomain,
    );
    /// `secrets`.
    pub const SECRETS: ResourceType = ResourceType {
        fields: &[fl("type", "/type")],
        custom_fields: true,
        ..rt(
            "",
            "secrets",
            "Secret",
            true,
            false,
            false,
            NameRule::Subdomain,
        )
    };
    /// `serviceaccounts`.
    pub const SERVICE_ACCOUNTS: ResourceType = rt(
        "",
        "serviceaccounts",
        "ServiceAccount",
        true,
        false,
        false,
        NameRule::Subdomain,
    );
    /// `events` (core/v1).
    pub const EVENTS: ResourceType = ResourceType {
        fields: &[
            fl("involvedObject.kind", "/involvedObject/kind"),
            fl("involvedObject.namespace", "/involvedObject/namespace"),
            fl("involvedObject.name", "/involvedObject/name"),
            fl("involvedObject.uid", "/involvedObject/uid"),
            fl("involvedObject.apiVersion", "/involvedObject/apiVersion"),
            fl(
                "involvedObject.resourceVersion",
                "/involvedObject/resourceVersion",
            ),
            fl("involvedObject.fieldPath", "/involvedObject/fieldPath"),
            fl("reason", "/reason"),
            fl("reportingComponent", "/reportingComponent"),
            fl("source", "/source/component"),
            fl("type", "/type"),
        ],
        custom_fields: true,
        ..rt(
            "",
            "events",
            "Event",
            true,
            false,
            false,
            NameRule::Subdomain,
        )
    };
    /// `deployments.apps`.
    pub const DEPLOYMENTS: ResourceType = rt(
        "apps",
        "deployments",
        "Deployment",
        true,
        true,
        true,
        NameRule::Subdomain,
    );
    /// `replicasets.apps`.
    pub const REPLICA_SETS: ResourceType = ResourceType {
        fields: &[fl("status.replicas", "/status/replicas")],
        custom_fields: true,
        ..rt(
            "apps",
            "replicasets",
            "ReplicaSet",
            true,
            true,
            true,
            NameRule::Subdomain,
        )
    };
    /// `jobs.batch`.
    pub const JOBS: ResourceType = ResourceType {
        fields: &[fl("status.successful", "/status/succeeded")],
        custom_fields: true,
        ..rt(
            "batch",
            "jobs",
            "Job",
            true,
            true,
            true,
            NameRule::Subdomain,
        )
    };
    /// `cronjobs.batch` (names at most 52 characters: the controller appends a suffix).
    pub const CRON_JOBS: ResourceType = rt(
        "batch",
        "cronjobs",
        "CronJob",
        true,
        true,
        true,
        NameRule::CronJob,
    );

    /// Every kind podrun serves.
    pub const ALL: &'static [ResourceType] = &[
        ResourceType::NAMESPACES,
        ResourceType::PODS,
        ResourceType::SERVICES,
        ResourceType::ENDPOINT_SLICES,
        ResourceType::CONFIG_MAPS,
        ResourceType::SECRETS,
        ResourceType::SERVICE_ACCOUNTS,
        ResourceType::EVENTS,
        ResourceType::DEPLOYMENTS,
        ResourceType::REPLICA_SETS,
        ResourceType::JOBS,
        ResourceType::CRON_JOBS,
    ];

    /// The kind for a group and plural (`("apps", "deployments")`).
    pub fn find(group: &str, plural: &str) -> Option<&'static ResourceType> {
        ResourceType::ALL
            .iter()
            .find(|r| r.group == group && r.plural == plural)
    }

    /// The kind of a k8s-openapi type.
    pub fn of<K: k8s_openapi::Resource>() -> Option<&'static ResourceType> {
        ResourceType::find(K::GROUP, K::URL_PATH_SEGMENT)
    }

    /// `apiVersion` as objects carry it (`v1`, `apps/v1`).
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The resource as messages name it: `pods`, `deployments.apps`.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// The storage key of one object: `/registry/pods/default/x`,
    /// `/registry/namespaces/x` (as the API server lays out etcd).
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("/registry/{}/{ns}/{name}", self.plural),
            _ => format!("/registry/{}/{name}", self.plural),
        }
    }

    /// The key prefix of a collection: one namespace, or all of them.
    pub fn prefix(&self, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("/registry/{}/{ns}/", self.plural),
            _ => format!("/registry/{}/", self.plural),
        }
    }

    /// The value of a field-selector label on an object, or `None` if this kind does
    /// not answer that label.
    pub fn field_value(&self, label: &str, obj: &Value) -> Option<String> {
        let pointer = match label {
            "metadata.name" => "/metadata/name",
            "metadata.namespace" => "/metadata/namespace",
            _ => self.fields.iter().find(|f| f.label == label)?.pointer,
        };
        Some(match obj.pointer(pointer) {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        })
    }

    /// The API server's message for a field label this kind does not answer.
    pub fn unknown_field_message(&self, label: &str) -> String {
        if self.custom_fields {
            format!("field label not supported: {label}")
        } else {
            format!(
                "{} is not a known field selector: only \"metadata.name\", \"metadata.namespace\"",
                crate::error::quote(label)
            )
        }
    }
}
