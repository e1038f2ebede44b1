//! The garbage collector: deletes objects whose owners are all gone, drops references
//! to owners that are gone while others remain, finishes foreground deletions once no
//! blocking dependent is left, and orphans dependents for the `orphan` finalizer. The
//! rules are the store core's ([`podrun_store::gc::decide`]); this is their driver.
//!
//! Like upstream's collector, it believes a cache that says an owner is gone only
//! after asking the store: an owner created a moment ago may not be in the cache yet.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use podrun_store::gc::{GcAction, owners};
use podrun_store::{ApiError, DeleteOptions, ResourceType, object};
use serde_json::Value;

use crate::reflector::Handler;
use crate::{Action, Ctx, Informers, Reconciler, WorkQueue, key_of, split_key};

/// The kinds whose ownership the collector follows: an owner reference to any other
/// kind is never taken for dangling.
pub const COLLECTED: &[ResourceType] = &[
    ResourceType::PODS,
    ResourceType::REPLICA_SETS,
    ResourceType::DEPLOYMENTS,
    ResourceType::JOBS,
    ResourceType::CRON_JOBS,
    ResourceType::SERVICES,
    ResourceType::ENDPOINT_SLICES,
];

fn kind(name: &str) -> Option<&'static ResourceType> {
    COLLECTED.iter().find(|rt| rt.kind == name)
}

fn plural(name: &str) -> Option<&'static ResourceType> {
    COLLECTED.iter().find(|rt| rt.plural == name)
}

/// The collector's key of an object: `<plural>/<namespace>/<name>`.
pub fn gc_key(rt: &ResourceType, obj: &Value) -> String {
    format!("{}/{}", rt.plural, key_of(obj))
}

/// Queues the changed object and every object that names it as an owner.
pub fn handler(rt: &ResourceType, informers: &Informers, queue: &WorkQueue) -> Handler {
    let rt = *rt;
    let informers = informers.clone();
    let queue = queue.clone();
    Box::new(move |obj: &Value| {
        queue.add(&gc_key(&rt, obj));
        let uid = object::uid(obj);
        if uid.is_empty() {
            return;
        }
        for dep_rt in COLLECTED {
            let Some(cache) = informers.of(dep_rt) else {
                continue;
            };
            for dep in cache.select(|dep| names_owner(dep, uid)) {
                queue.add(&gc_key(dep_rt, &dep));
            }
        }
    })
}

/// Whether `dep` names the object `uid` among its owners.
fn names_owner(dep: &Value, uid: &str) -> bool {
    dep.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|refs| {
            refs.iter()
                .any(|r| r.get("uid").and_then(Value::as_str) == Some(uid))
        })
}

/// Whether the store confirms that the owner `uid` (of `kind`, `name`, in the
/// dependent's namespace) is gone or waiting for its dependents (foreground).
fn confirmed_gone_or_waiting(
    ctx: &Ctx<'_>,
    namespace: Option<&str>,
    owner_kind: &str,
    name: &str,
    uid: &str,
) -> Result<bool, ApiError> {
    let Some(rt) = kind(owner_kind) else {
        return Ok(false);
    };
    match ctx.store.get(rt, namespace, name) {
        Err(e) if e.code() == 404 => Ok(true),
        Err(e) => Err(e),
        Ok(o) => Ok(object::uid(&o) != uid
            || (object::is_deleting(&o) && object::finalizers(&o).contains(&"foregroundDeletion"))),
    }
}

/// The garbage collector.
#[derive(Debug)]
pub struct GarbageCollector;

impl Reconciler for GarbageCollector {
    fn name(&self) -> &'static str {
        "garbagecollector"
    }

    fn reconcile(&self, ctx: &mut Ctx<'_>, key: &str, _now: Timestamp) -> Result<Action, ApiError> {
        let Some((p, rest)) = key.split_once('/') else {
            return Ok(Action::Done);
        };
        let Some(rt) = plural(p) else {
            return Ok(Action::Done);
        };
        let Some(obj) = ctx.informers.of(rt).and_then(|c| c.get(rest)) else {
            return Ok(Action::Done);
        };
        let refs = owners(&obj);
        // An owner of a kind the collector does not follow is never taken for gone.
        if !object::is_deleting(&obj) && refs.iter().any(|r| kind(&r.kind).is_none()) {
            return Ok(Action::Done);
        }
        // What the decision reads: the object's owners and its dependents; copying only
        // those keeps a reconcile from copying the whole cache.
        let uid = object::uid(&obj);
        let live: Vec<Value> = COLLECTED
            .iter()
            .filter_map(|rt| ctx.informers.of(rt))
            .flat_map(|c| {
                c.select(|o| refs.iter().any(|r| r.uid == object::uid(o)) || names_owner(o, uid))
            })
            .collect();
        let (namespace, name) = split_key(rest);
        let retry = Action::RequeueAfter(Duration::from_millis(100));
        match podrun_store::gc::decide(&obj, &live) {
            GcAction::Keep => Ok(Action::Done),
            GcAction::Delete(propagation) => {
                for r in &refs {
                    if !confirmed_gone_or_waiting(ctx, namespace, &r.kind, &r.name, &r.uid)? {
                        return Ok(retry);
                    }
                }
                let opts = DeleteOptions {
                    uid: Some(object::uid(&obj).to_string()),
                    propagation,
                    ..DeleteOptions::default()
                };
                if object::is_deleting(&obj) && propagation == podrun_store::Propagation::Background
                {
                    return Ok(Action::Done);
                }
                ctx.delete(rt, namespace, name, &opts)?;
                Ok(Action::Done)
            }
            GcAction::DropOwners(uids) => {
                for r in refs.iter().filter(|r| uids.contains(&r.uid)) {
                    if !confirmed_gone_or_waiting(ctx, namespace, &r.kind, &r.name, &r.uid)? {
                        return Ok(retry);
                    }
                }
                let mut updated = obj.clone();
                if let Some(list) = updated
                    .pointer_mut("/metadata/ownerReferences")
                    .and_then(Value::as_array_mut)
                {
                    list.retain(|r| {
                        !uids
                            .iter()
                            .any(|u| r.get("uid").and_then(Value::as_str) == Some(u))
                    });
                }
                ctx.update(rt, namespace, name, updated)?;
                Ok(Action::Done)
            }
            GcAction::RemoveFinalizer(finalizer) => {
                let mut updated = obj.clone();
                if let Some(list) = updated
                    .pointer_mut("/metadata/finalizers")
                    .and_then(Value::as_array_mut)
                {
                    list.retain(|f| f.as_str() != Some(finalizer));
                }
                ctx.update(rt, namespace, name, updated)?;
                Ok(Action::Done)
            }
            GcAction::Orphan(dependents) => {
                let owner_uid = object::uid(&obj).to_string();
                for dep_rt in COLLECTED {
                    let Some(cache) = ctx.informers.of(dep_rt) else {
                        continue;
                    };
                    for dep in cache.select(|d| dependents.iter().any(|u| u == object::uid(d))) {
                        let mut updated = dep.clone();
                        if let Some(list) = updated
                            .pointer_mut("/metadata/ownerReferences")
                            .and_then(Value::as_array_mut)
                        {
                            list.retain(|r| {
                                r.get("uid").and_then(Value::as_str) != Some(&owner_uid)
                            });
                        }
                        let dep_key = key_of(&dep);
                        let (dns, dname) = split_key(&dep_key);
                        ctx.update(dep_rt, dns, dname, updated)?;
                    }
                }
                Ok(Action::RequeueAfter(Duration::from_millis(50)))
            }
        }
    }
}
