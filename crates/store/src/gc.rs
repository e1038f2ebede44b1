//! Garbage-collection order as pure functions over objects and their
//! `ownerReferences`: who depends on whom, what the collector does next for an
//! object, and the order a cascade deletes in (background: owner first; foreground:
//! dependents first, owner last).

use std::collections::{HashMap, HashSet, VecDeque};

use serde_json::Value;

use crate::object;
use crate::store::Propagation;

/// One `ownerReferences` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnerRef {
    /// `uid` of the owner.
    pub uid: String,
    /// `kind` of the owner.
    pub kind: String,
    /// `name` of the owner.
    pub name: String,
    /// `blockOwnerDeletion`: a foreground deletion of the owner waits for this object.
    pub block_owner_deletion: bool,
}

/// The object's `ownerReferences`.
pub fn owners(obj: &Value) -> Vec<OwnerRef> {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map(|refs| {
            refs.iter()
                .map(|r| OwnerRef {
                    uid: r.get("uid").and_then(Value::as_str).unwrap_or("").into(),
                    kind: r.get("kind").and_then(Value::as_str).unwrap_or("").into(),
                    name: r.get("name").and_then(Value::as_str).unwrap_or("").into(),
                    block_owner_deletion: r
                        .get("blockOwnerDeletion")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The objects that name `owner_uid` among their owners.
pub fn dependents<'a>(owner_uid: &str, objects: &'a [Value]) -> Vec<&'a Value> {
    objects
        .iter()
        .filter(|o| owners(o).iter().any(|r| r.uid == owner_uid))
        .collect()
}

/// What the garbage collector does next about one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GcAction {
    /// Nothing.
    Keep,
    /// Delete it: every owner is gone. Background, unless an owner is being deleted in
    /// the foreground, which the dependent then follows.
    Delete(Propagation),
    /// Drop references to these owner uids: those owners are gone but others remain.
    DropOwners(Vec<String>),
    /// Remove this finalizer: the work it stood for is done (`foregroundDeletion` once
    /// no blocking dependent is left, `orphan` once no dependent names the object).
    RemoveFinalizer(&'static str),
    /// Orphan these dependents (remove their reference to this object) before the
    /// `orphan` finalizer can go.
    Orphan(Vec<String>),
}

/// Decides the collector's next step for `obj`, given every object that exists
/// (`live`, which includes `obj`).
pub fn decide(obj: &Value, live: &[Value]) -> GcAction {
    let uid = object::uid(obj);
    let by_uid: HashMap<&str, &Value> = live.iter().map(|o| (object::uid(o), o)).collect();
    let finalizers = object::finalizers(obj);
    if object::is_deleting(obj) {
        let deps = dependents(uid, live);
        if finalizers.contains(&"orphan") {
            if deps.is_empty() {
                return GcAction::RemoveFinalizer("orphan");
            }
            return GcAction::Orphan(deps.iter().map(|d| object::uid(d).to_string()).collect());
        }
        if finalizers.contains(&"foregroundDeletion") {
            // Dependents that do not block go in the background; the owner waits only
            // for blocking ones.
            let blocking = deps.iter().any(|d| {
                owners(d)
                    .iter()
                    .any(|r| r.uid == uid && r.block_owner_deletion)
            });
            if !blocking {
                return GcAction::RemoveFinalizer("foregroundDeletion");
            }
        }
        return GcAction::Keep;
    }
    let refs = owners(obj);
    if refs.is_empty() {
        return GcAction::Keep;
    }
    // As the upstream collector sorts owners: dangling (gone), waiting for their
    // dependents (being deleted in the foreground), and solid.
    let mut dangling = Vec::new();
    let mut waiting = Vec::new();
    let mut solid = 0;
    for r in &refs {
        match by_uid.get(r.uid.as_str()) {
            None => dangling.push(r.uid.clone()),
            Some(o)
                if object::is_deleting(o)
                    && object::finalizers(o).contains(&"foregroundDeletion") =>
            {
                waiting.push(r.uid.clone());
            }
            Some(_) => solid += 1,
        }
    }
    if dangling.is_empty() && waiting.is_empty() {
        return GcAction::Keep;
    }
    if solid > 0 {
        // Another owner still holds it: only the references go.
        dangling.extend(waiting);
        return GcAction::DropOwners(dangling);
    }
    if !waiting.is_empty() && !dependents(uid, live).is_empty() {
        // Its owner waits for it, and it has dependents of its own: they go first.
        return GcAction::Delete(Propagation::Foreground);
    }
    GcAction::Delete(Propagation::Background)
}

/// The uids a cascade from `root_uid` deletes, in the order their deletions complete:
/// background deletes the owner first and then its dependents level by level;
/// foreground removes the deepest dependents first and the owner last. Orphan deletes
/// only the root.
pub fn cascade_order(root_uid: &str, objects: &[Value], propagation: Propagation) -> Vec<String> {
    let mut children: HashMap<&str, Vec<&str>> = HashMap::new();
    for o in objects {
        for r in owners(o) {
            if let Some(owner) = objects.iter().find(|x| object::uid(x) == r.uid) {
                children
                    .entry(object::uid(owner))
                    .or_default()
                    .push(object::uid(o));
            }
        }
    }
    let mut seen = HashSet::new();
    let mut levels = Vec::new();
    let mut queue = VecDeque::from([root_uid]);
    seen.insert(root_uid);
    while let Some(u) = queue.pop_front() {
        levels.push(u.to_string());
        if propagation == Propagation::Orphan {
            break;
        }
        for c in children.get(u).into_iter().flatten() {
            if seen.insert(c) {
                queue.push_back(c);
            }
        }
    }
    if propagation == Propagation::Foreground {
        levels.reverse();
    }
    levels
}
