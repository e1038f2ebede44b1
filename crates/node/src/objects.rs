//! The node's typed view of the object store (`<state>/store.db`): the same store
//! `podrun get`, `logs` and `delete` open from another terminal, and the controllers
//! watch. The store stamps uids, timestamps and resourceVersions; the node only asks.

use std::path::Path;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use podrun_store::{ApiError, DeleteOptions, ListOptions, ResourceType};
use podrun_store_sqlite::SqliteStore;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Errors of the store, as the API server words them, or of opening it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server's answer (`pods "x" not found`, `… already exists`, …).
    #[error("{0}")]
    Api(#[from] ApiError),
    /// The state directory's store cannot be opened (an older layout, another schema).
    #[error(transparent)]
    Open(#[from] podrun_store_sqlite::Error),
    /// The state directory cannot be made.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A stored object does not decode as its kind.
    #[error("stored object does not decode: {0}")]
    Decode(#[from] serde_json::Error),
}

/// The line kubectl prints for an API error: `Error from server (AlreadyExists): pods
/// "x" already exists`, or `The Pod "x" is invalid: …` for a 422.
pub fn kubectl_message(e: &ApiError) -> String {
    if e.code() == 422 {
        format!("The {}", e.message())
    } else {
        format!("Error from server ({}): {}", e.reason(), e.message())
    }
}

/// A resource kind the node stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resource(pub &'static ResourceType);

impl Resource {
    /// `pods`.
    pub const PODS: Resource = Resource(&ResourceType::PODS);
    /// `jobs.batch`.
    pub const JOBS: Resource = Resource(&ResourceType::JOBS);
    /// `services`.
    pub const SERVICES: Resource = Resource(&ResourceType::SERVICES);
    /// `configmaps`.
    pub const CONFIG_MAPS: Resource = Resource(&ResourceType::CONFIG_MAPS);
    /// `secrets`.
    pub const SECRETS: Resource = Resource(&ResourceType::SECRETS);
    /// `deployments.apps`.
    pub const DEPLOYMENTS: Resource = Resource(&ResourceType::DEPLOYMENTS);
    /// `replicasets.apps`.
    pub const REPLICA_SETS: Resource = Resource(&ResourceType::REPLICA_SETS);
    /// `endpointslices.discovery.k8s.io`.
    pub const ENDPOINT_SLICES: Resource = Resource(&ResourceType::ENDPOINT_SLICES);
}

/// A namespaced object's place in the store.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ObjectKey {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

impl ObjectKey {
    /// A key from namespace and name.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

/// Objects with Kubernetes object metadata.
pub trait StoredObject: Serialize + DeserializeOwned {
    /// The object's metadata.
    fn meta(&self) -> &ObjectMeta;
    /// The object's metadata, mutably.
    fn meta_mut(&mut self) -> &mut ObjectMeta;
}

macro_rules! stored_object {
    ($($ty:ty),*) => {$(
        impl StoredObject for $ty {
            fn meta(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn meta_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    )*};
}

stored_object!(
    k8s_openapi::api::core::v1::Pod,
    k8s_openapi::api::batch::v1::Job,
    k8s_openapi::api::core::v1::Service,
    k8s_openapi::api::core::v1::ConfigMap,
    k8s_openapi::api::core::v1::Secret,
    k8s_openapi::api::apps::v1::Deployment,
    k8s_openapi::api::apps::v1::ReplicaSet
);

/// The store of a state directory, typed.
#[derive(Clone, Debug)]
pub struct Store {
    inner: SqliteStore,
}

impl Store {
    /// Opens the store of `state_dir` (refusing a layout of an older podrun) and makes
    /// sure the default namespaces exist.
    pub fn open(state_dir: &Path) -> Result<Store, Error> {
        std::fs::create_dir_all(state_dir)?;
        let inner = SqliteStore::open(state_dir)?;
        inner.lock().seed_defaults(podrun_store_sqlite::stamp)?;
        Ok(Store { inner })
    }

    /// The store underneath (watches, the controllers).
    pub fn sqlite(&self) -> &SqliteStore {
        &self.inner
    }

    /// One object, `None` if there is none.
    pub fn get<T: DeserializeOwned>(
        &self,
        r: Resource,
        key: &ObjectKey,
    ) -> Result<Option<T>, Error> {
        match self.inner.get(r.0, Some(&key.namespace), &key.name) {
            Ok(v) => Ok(Some(serde_json::from_value(v)?)),
            Err(e) if e.code() == 404 => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Every object of a kind, in one namespace or all.
    pub fn list<T: DeserializeOwned>(
        &self,
        r: Resource,
        namespace: Option<&str>,
    ) -> Result<Vec<T>, Error> {
        let list = self.inner.list(r.0, namespace, &ListOptions::default())?;
        list.items
            .into_iter()
            .map(|v| serde_json::from_value(v).map_err(Error::from))
            .collect()
    }

    /// Creates an object; `obj` becomes what the store stamped (uid, timestamps,
    /// resourceVersion, a name completed from `generateName`).
    pub fn create<T: StoredObject>(&self, r: Resource, obj: &mut T) -> Result<(), Error> {
        let ns = obj
            .meta()
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let mut v = serde_json::to_value(&*obj)?;
        let status = v.as_object_mut().and_then(|m| m.remove("status"));
        let mut stored = self.inner.create(r.0, Some(&ns), v)?;
        // What the creator already knows of the status (a ConfigMap has none) goes
        // through the status subresource, as a kubelet or controller would write it.
        if let Some(status) = status.filter(|s| !s.is_null() && r.0.status_subresource) {
            let mut with = stored.clone();
            with["status"] = merge_status(stored.get("status"), status);
            stored = self
                .inner
                .update_status(r.0, Some(&ns), &name_of(&stored), with)?;
        }
        *obj = serde_json::from_value(stored)?;
        Ok(())
    }

    /// Writes an object's status (unconditionally: the writer owns it); `obj` gets the
    /// stored resourceVersion. A gone object is `NotFound`.
    pub fn put_status<T: StoredObject>(&self, r: Resource, obj: &mut T) -> Result<(), Error> {
        let ns = obj
            .meta()
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let name = obj.meta().name.clone().unwrap_or_default();
        let mut v = serde_json::to_value(&*obj)?;
        if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("resourceVersion");
        }
        let stored = retry(|| self.inner.update_status(r.0, Some(&ns), &name, v.clone()))?;
        // Only the revision comes back: the writer's copy stays the writer's.
        obj.meta_mut().resource_version =
            podrun_store::object::meta_str(&stored, "resourceVersion").map(str::to_string);
        Ok(())
    }

    /// Deletes an object as `kubectl delete` does (pods with their grace period, the
    /// request's when given). Returns whether it is gone (else it is only marked).
    pub fn delete(
        &self,
        r: Resource,
        key: &ObjectKey,
        grace_period_seconds: Option<i64>,
    ) -> Result<bool, Error> {
        let opts = DeleteOptions {
            grace_period_seconds,
            ..DeleteOptions::default()
        };
        Ok(retry(|| {
            self.inner
                .delete(r.0, Some(&key.namespace), &key.name, &opts)
        })?
        .gone)
    }

    /// Removes a pod whose containers are gone (the kubelet's final delete: grace
    /// period 0, for this uid only).
    pub fn remove_pod(&self, key: &ObjectKey, uid: &str) -> Result<(), Error> {
        let opts = DeleteOptions {
            grace_period_seconds: Some(0),
            uid: Some(uid.to_string()),
            ..DeleteOptions::default()
        };
        match retry(|| {
            self.inner
                .delete(&ResourceType::PODS, Some(&key.namespace), &key.name, &opts)
        }) {
            Ok(_) => Ok(()),
            Err(e) if e.code() == 404 || e.code() == 409 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// Runs a write again when another writer committed between its read and its write
/// (`409`): these writes carry no precondition of their own, so the newer state is
/// theirs to act on. A few tries; the last answer is returned.
fn retry<T>(mut write: impl FnMut() -> Result<T, ApiError>) -> Result<T, ApiError> {
    let mut tries = 0;
    loop {
        match write() {
            Err(e) if e.code() == 409 && tries < 5 => tries += 1,
            other => return other,
        }
    }
}

fn name_of(v: &Value) -> String {
    podrun_store::object::name(v).to_string()
}

/// The status a creator sent, over the one the store reset to (so `phase` stays set).
fn merge_status(reset: Option<&Value>, sent: Value) -> Value {
    let mut out = reset.cloned().unwrap_or(Value::Object(Default::default()));
    if let (Some(o), Value::Object(s)) = (out.as_object_mut(), sent) {
        for (k, v) in s {
            o.insert(k, v);
        }
    }
    out
}
