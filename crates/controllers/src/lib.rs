//! The controllers of podrun, on the object store: Job, CronJob, Deployment → ReplicaSet,
//! ReplicaSet → Pods, Service → EndpointSlice, namespace deletion, and the
//! ownerReferences garbage collector.
//!
//! Each is level-triggered, as kube-runtime's controllers are: a [`Reflector`] per
//! kind lists and then watches the store into a cache (listing again whenever a watch
//! ends, so no change of state is ever missed), changes map to keys in a
//! deduplicating [`WorkQueue`], and a reconciler brings one key's world to what its
//! object asks for, reading the caches and writing the store. The rules live in pure
//! `decide` functions with table tests; the reconcilers only gather their inputs and
//! carry their decisions out.
//!
//! A reconciler that wrote waits until the caches hold its writes before the next
//! key is taken (client-go's expectations, by revision): it never acts twice on a
//! world it has already changed.

pub mod cronjob;
pub mod deployment;
pub mod endpointslice;
pub mod gc;
pub mod job;
pub mod namespace;
pub mod queue;
pub mod reflector;
pub mod replicaset;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use podrun_store::{ApiError, DeleteOptions, Deleted, ResourceType};
use podrun_store_sqlite::SqliteStore;
use serde_json::Value;

pub use queue::WorkQueue;
pub use reflector::{Reflector, key_of, split_key};

/// What a reconciler asks for after one pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing until something changes.
    Done,
    /// Look again after this long (a back-off, a deadline), or sooner on a change.
    RequeueAfter(Duration),
}

/// A controller's rules for one key.
pub trait Reconciler: Send + Sync + 'static {
    /// The controller's name (logs).
    fn name(&self) -> &'static str;
    /// Brings the key's objects to what they ask for.
    fn reconcile(&self, ctx: &mut Ctx<'_>, key: &str, now: Timestamp) -> Result<Action, ApiError>;
}

/// The caches, one per kind the controllers read.
#[derive(Clone, Debug)]
pub struct Informers {
    /// Pods.
    pub pods: Reflector,
    /// ReplicaSets.
    pub replica_sets: Reflector,
    /// Deployments.
    pub deployments: Reflector,
    /// Jobs.
    pub jobs: Reflector,
    /// Services.
    pub services: Reflector,
    /// EndpointSlices.
    pub endpoint_slices: Reflector,
    /// Namespaces.
    pub namespaces: Reflector,
    /// CronJobs.
    pub cron_jobs: Reflector,
}

impl Informers {
    fn new() -> Informers {
        Informers {
            pods: Reflector::new(&ResourceType::PODS),
            replica_sets: Reflector::new(&ResourceType::REPLICA_SETS),
            deployments: Reflector::new(&ResourceType::DEPLOYMENTS),
            jobs: Reflector::new(&ResourceType::JOBS),
            services: Reflector::new(&ResourceType::SERVICES),
            endpoint_slices: Reflector::new(&ResourceType::ENDPOINT_SLICES),
            namespaces: Reflector::new(&ResourceType::NAMESPACES),
            cron_jobs: Reflector::new(&ResourceType::CRON_JOBS),
        }
    }

    /// Every cache.
    pub fn all(&self) -> [&Reflector; 8] {
        [
            &self.pods,
            &self.replica_sets,
            &self.deployments,
            &self.jobs,
            &self.services,
            &self.endpoint_slices,
            &self.namespaces,
            &self.cron_jobs,
        ]
    }

    /// The cache of a kind.
    pub fn of(&self, rt: &ResourceType) -> Option<&Reflector> {
        self.all()
            .into_iter()
            .find(|r| r.resource().plural == rt.plural && r.resource().group == rt.group)
    }

    async fn synced(&self) {
        for r in self.all() {
            r.synced().await;
        }
    }
}

/// What a reconciler reads and writes through: the caches, and the store with every
/// write's revision noted so the runner can wait for the caches to hold it.
pub struct Ctx<'a> {
    /// The store.
    pub store: &'a SqliteStore,
    /// The caches.
    pub informers: &'a Informers,
    written: Vec<(ResourceType, u64)>,
}

fn revision_of(obj: &Value) -> u64 {
    podrun_store::object::meta_str(obj, "resourceVersion")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

impl Ctx<'_> {
    fn note(&mut self, rt: &ResourceType, obj: &Value) {
        self.written.push((*rt, revision_of(obj)));
    }

    /// Creates an object.
    pub fn create(
        &mut self,
        rt: &ResourceType,
        namespace: Option<&str>,
        obj: Value,
    ) -> Result<Value, ApiError> {
        let v = self.store.create(rt, namespace, obj)?;
        self.note(rt, &v);
        Ok(v)
    }

    /// Replaces an object (a `metadata.resourceVersion` in it is a precondition).
    pub fn update(
        &mut self,
        rt: &ResourceType,
        namespace: Option<&str>,
        name: &str,
        obj: Value,
    ) -> Result<Value, ApiError> {
        let v = self.store.update(rt, namespace, name, obj)?;
        self.note(rt, &v);
        Ok(v)
    }

    /// Replaces an object's status.
    pub fn update_status(
        &mut self,
        rt: &ResourceType,
        namespace: Option<&str>,
        name: &str,
        obj: Value,
    ) -> Result<Value, ApiError> {
        let v = self.store.update_status(rt, namespace, name, obj)?;
        self.note(rt, &v);
        Ok(v)
    }

    /// Deletes an object.
    pub fn delete(
        &mut self,
        rt: &ResourceType,
        namespace: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Deleted, ApiError> {
        let d = self.store.delete(rt, namespace, name, opts)?;
        self.note(rt, &d.object);
        Ok(d)
    }
}

/// How long a runner waits for the caches to hold its writes before going on anyway.
const EXPECTATION_TIMEOUT: Duration = Duration::from_secs(2);

async fn run_controller(
    reconciler: Arc<dyn Reconciler>,
    queue: WorkQueue,
    store: SqliteStore,
    informers: Informers,
) {
    informers.synced().await;
    loop {
        let key = queue.next().await;
        let mut ctx = Ctx {
            store: &store,
            informers: &informers,
            written: Vec::new(),
        };
        let result = reconciler.reconcile(&mut ctx, &key, podrun_store_sqlite::now());
        for (rt, revision) in std::mem::take(&mut ctx.written) {
            if let Some(cache) = informers.of(&rt) {
                cache.wait_for(revision, EXPECTATION_TIMEOUT).await;
            }
        }
        match result {
            Ok(Action::Done) => {}
            Ok(Action::RequeueAfter(d)) => queue.add_after(&key, d),
            // Another writer got there first: look again at the newer state.
            Err(e) if e.code() == 409 => queue.add_after(&key, Duration::from_millis(20)),
            // What was to be changed is gone; its own event brings the key back if needed.
            Err(e) if e.code() == 404 => {}
            Err(e) => {
                tracing::warn!(
                    controller = reconciler.name(),
                    key,
                    error = e.message(),
                    "reconcile failed"
                );
                queue.add_after(&key, Duration::from_millis(500));
            }
        }
    }
}

/// The running controllers; dropping this stops them.
#[derive(Debug)]
pub struct Controllers {
    informers: Informers,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Controllers {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Controllers {
    /// The caches the controllers read (tests look at their relists).
    pub fn informers(&self) -> &Informers {
        &self.informers
    }

    /// Starts every controller on the store. Needs a tokio runtime.
    pub fn start(store: &SqliteStore) -> Controllers {
        let informers = Informers::new();
        let jobs = WorkQueue::new();
        let replica_sets = WorkQueue::new();
        let deployments = WorkQueue::new();
        let services = WorkQueue::new();
        let namespaces = WorkQueue::new();
        let collector = WorkQueue::new();
        let cron_jobs = WorkQueue::new();

        // Owner → the owner's queue, by the controller reference.
        let by_owner = |kind: &'static str, q: &WorkQueue| {
            let q = q.clone();
            Box::new(move |obj: &Value| {
                if let Some(owner) = controller_of(obj)
                    && owner.0 == kind
                {
                    match podrun_store::object::meta_str(obj, "namespace") {
                        Some(ns) => q.add(&format!("{ns}/{}", owner.1)),
                        None => q.add(&owner.1),
                    }
                }
            }) as reflector::Handler
        };
        let own = |q: &WorkQueue| {
            let q = q.clone();
            Box::new(move |obj: &Value| q.add(&key_of(obj))) as reflector::Handler
        };

        informers.jobs.on_change(own(&jobs));
        informers.pods.on_change(by_owner("Job", &jobs));
        informers.replica_sets.on_change(own(&replica_sets));
        informers
            .pods
            .on_change(by_owner("ReplicaSet", &replica_sets));
        informers.deployments.on_change(own(&deployments));
        informers
            .replica_sets
            .on_change(by_owner("Deployment", &deployments));
        informers.services.on_change(own(&services));
        informers
            .pods
            .on_change(endpointslice::pod_handler(&informers.services, &services));
        informers
            .endpoint_slices
            .on_change(endpointslice::slice_handler(&services));
        informers.namespaces.on_change(own(&namespaces));
        informers.cron_jobs.on_change(own(&cron_jobs));
        informers.jobs.on_change(by_owner("CronJob", &cron_jobs));
        for cache in gc::COLLECTED {
            if let Some(r) = informers.of(cache) {
                r.on_change(gc::handler(cache, &informers, &collector));
            }
        }

        let mut tasks: Vec<_> = informers
            .all()
            .iter()
            .map(|r| r.spawn(store.clone()))
            .collect();
        let controllers: [(Arc<dyn Reconciler>, WorkQueue); 7] = [
            (Arc::new(job::JobController), jobs),
            (Arc::new(replicaset::ReplicaSetController), replica_sets),
            (Arc::new(deployment::DeploymentController), deployments),
            (Arc::new(endpointslice::EndpointSliceController), services),
            (Arc::new(namespace::NamespaceController), namespaces),
            (Arc::new(gc::GarbageCollector), collector),
            (Arc::new(cronjob::CronJobController), cron_jobs),
        ];
        for (r, q) in controllers {
            tasks.push(tokio::spawn(run_controller(
                r,
                q,
                store.clone(),
                informers.clone(),
            )));
        }
        Controllers { informers, tasks }
    }
}

/// The object's controller reference: its owner's kind, name and uid.
pub fn controller_of(obj: &Value) -> Option<(String, String, String)> {
    obj.pointer("/metadata/ownerReferences")?
        .as_array()?
        .iter()
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
        .map(|r| {
            let s = |f: &str| r.get(f).and_then(Value::as_str).unwrap_or("").to_string();
            (s("kind"), s("name"), s("uid"))
        })
}

/// The objects of `cache` whose controller is the object with `uid`.
pub fn owned_by(cache: &Reflector, namespace: Option<&str>, uid: &str) -> Vec<Value> {
    cache
        .list()
        .into_iter()
        .filter(|o| podrun_store::object::meta_str(o, "namespace") == namespace)
        .filter(|o| controller_of(o).is_some_and(|c| c.2 == uid))
        .collect()
}

/// The latest `finishedAt` of the pod's terminated containers, if any has terminated.
pub(crate) fn last_finished_at(pod: &k8s_openapi::api::core::v1::Pod) -> Option<Timestamp> {
    pod.status
        .as_ref()?
        .container_statuses
        .iter()
        .flatten()
        .filter_map(|cs| cs.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
        .map(|t| t.0)
        .max()
}

/// A duration from `now` until `at`, zero if passed.
pub fn until(at: Timestamp, now: Timestamp) -> Duration {
    Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO)
}

/// A k8s-openapi value from JSON, or a 500 naming what did not fit.
pub fn typed<K: serde::de::DeserializeOwned>(v: &Value) -> Result<K, ApiError> {
    K::deserialize(v).map_err(ApiError::internal)
}

/// JSON from a k8s-openapi value.
pub fn untyped<K: serde::Serialize>(v: &K) -> Result<Value, ApiError> {
    serde_json::to_value(v).map_err(ApiError::internal)
}
