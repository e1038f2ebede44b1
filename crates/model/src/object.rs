//! The API objects podrun understands, as one enum over the k8s-openapi types.

use k8s_openapi::Resource;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// One API object of a kind podrun supports.
///
/// Boxed because the k8s-openapi structs are large and differ a lot in size.
#[derive(Clone, Debug, PartialEq)]
pub enum Object {
    /// `v1` `Pod`.
    Pod(Box<Pod>),
    /// `batch/v1` `Job`.
    Job(Box<Job>),
    /// `batch/v1` `CronJob`.
    CronJob(Box<CronJob>),
    /// `v1` `Service`.
    Service(Box<Service>),
    /// `v1` `ServiceAccount`.
    ServiceAccount(Box<ServiceAccount>),
    /// `apps/v1` `Deployment`.
    Deployment(Box<Deployment>),
    /// `apps/v1` `ReplicaSet`.
    ReplicaSet(Box<ReplicaSet>),
    /// `v1` `ConfigMap`.
    ConfigMap(Box<ConfigMap>),
    /// `v1` `Secret`.
    Secret(Box<Secret>),
    /// `v1` `Namespace`.
    Namespace(Box<Namespace>),
}

/// `(apiVersion, kind)` of every supported kind, in the order of [`Object`].
pub const SUPPORTED_KINDS: &[(&str, &str)] = &[
    (Pod::API_VERSION, Pod::KIND),
    (Job::API_VERSION, Job::KIND),
    (CronJob::API_VERSION, CronJob::KIND),
    (Service::API_VERSION, Service::KIND),
    (ServiceAccount::API_VERSION, ServiceAccount::KIND),
    (Deployment::API_VERSION, Deployment::KIND),
    (ReplicaSet::API_VERSION, ReplicaSet::KIND),
    (ConfigMap::API_VERSION, ConfigMap::KIND),
    (Secret::API_VERSION, Secret::KIND),
    (Namespace::API_VERSION, Namespace::KIND),
];

// === impl Object ===

macro_rules! each_variant {
    ($self:expr, $o:ident => $body:expr) => {
        match $self {
            Object::Pod($o) => $body,
            Object::Job($o) => $body,
            Object::CronJob($o) => $body,
            Object::Service($o) => $body,
            Object::ServiceAccount($o) => $body,
            Object::Deployment($o) => $body,
            Object::ReplicaSet($o) => $body,
            Object::ConfigMap($o) => $body,
            Object::Secret($o) => $body,
            Object::Namespace($o) => $body,
        }
    };
}

/// Exposes the Resource constants of the boxed value without naming its type.
fn kind_of<T: Resource>(_: &T) -> &'static str {
    T::KIND
}

fn api_version_of<T: Resource>(_: &T) -> &'static str {
    T::API_VERSION
}

impl Object {
    /// The object's `kind`, e.g. `Pod`.
    pub fn kind(&self) -> &'static str {
        each_variant!(self, o => kind_of(o.as_ref()))
    }

    /// The object's `apiVersion`, e.g. `batch/v1`.
    pub fn api_version(&self) -> &'static str {
        each_variant!(self, o => api_version_of(o.as_ref()))
    }

    /// `metadata.name`, if set.
    pub fn name(&self) -> Option<&str> {
        self.metadata().name.as_deref()
    }

    /// `metadata.namespace`, if set. Always `None` for a Namespace, which is
    /// cluster-scoped.
    pub fn namespace(&self) -> Option<&str> {
        if matches!(self, Object::Namespace(_)) {
            return None;
        }
        self.metadata().namespace.as_deref()
    }

    /// Is this kind namespaced (everything but `Namespace`)?
    pub fn is_namespaced(&self) -> bool {
        !matches!(self, Object::Namespace(_))
    }

    /// The object's metadata.
    pub fn metadata(&self) -> &ObjectMeta {
        each_variant!(self, o => &o.metadata)
    }

    /// The object's metadata, mutable.
    pub fn metadata_mut(&mut self) -> &mut ObjectMeta {
        each_variant!(self, o => &mut o.metadata)
    }

    /// Where the object's pod spec sits in [`Object::to_json`], as a JSON pointer: `""`
    /// for a Pod, its pod template for a Job, Deployment or ReplicaSet, its Job
    /// template's pod template for a CronJob; `None` for kinds without pods.
    pub fn pod_template_pointer(&self) -> Option<&'static str> {
        match self {
            Object::Pod(_) => Some(""),
            Object::Job(_) | Object::Deployment(_) | Object::ReplicaSet(_) => {
                Some("/spec/template")
            }
            Object::CronJob(_) => Some("/spec/jobTemplate/spec/template"),
            _ => None,
        }
    }

    /// The object as JSON, with `apiVersion` and `kind` set.
    pub fn to_json(&self) -> serde_json::Value {
        // Serialising these derived structs into a Value cannot fail: every
        // map key is a string and no custom serializer reports errors.
        each_variant!(self, o => serde_json::to_value(o.as_ref()).unwrap_or(serde_json::Value::Null))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_name_namespace() {
        let mut pod = Pod::default();
        pod.metadata.name = Some("p".into());
        pod.metadata.namespace = Some("ns".into());
        let o = Object::Pod(Box::new(pod));
        assert_eq!(o.kind(), "Pod");
        assert_eq!(o.api_version(), "v1");
        assert_eq!(o.name(), Some("p"));
        assert_eq!(o.namespace(), Some("ns"));
        assert_eq!(o.to_json()["kind"], "Pod");

        let job = Object::Job(Box::default());
        assert_eq!((job.api_version(), job.kind()), ("batch/v1", "Job"));
        let mut ns = Namespace::default();
        ns.metadata.namespace = Some("ignored".into());
        let ns = Object::Namespace(Box::new(ns));
        assert_eq!(ns.namespace(), None);
        assert!(!ns.is_namespaced());
    }
}
