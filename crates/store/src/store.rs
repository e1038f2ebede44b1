//! The object rules: create, get, update (main resource and `status`), delete, list.

use base64::Engine as _;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use podrun_model::{PodPhase, format_time};
use serde_json::{Map, Value, json};

use crate::error::{ApiError, FieldError, Result};
use crate::object::{self, meta_mut, meta_str};
use crate::resource::ResourceType;
use crate::selector::Filter;
use crate::storage::{AppendError, EncodedRow, Row, Storage, Write};
use crate::validate;

/// What the server stamps on a new object: the time and the uid it chose. The core
/// makes neither (no clock, no randomness), so tests can fix both.
#[derive(Clone, Debug)]
pub struct Stamp {
    /// Now.
    pub now: Timestamp,
    /// A fresh UUID for `metadata.uid` (its first characters also complete a
    /// `generateName`).
    pub uid: String,
}

/// How dependents are treated when their owner is deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Propagation {
    /// The owner goes at once; the garbage collector deletes the dependents after.
    #[default]
    Background,
    /// The owner stays (with the `foregroundDeletion` finalizer) until every dependent
    /// that blocks it is gone.
    Foreground,
    /// The dependents lose their reference to the owner (the `orphan` finalizer).
    Orphan,
}

/// `DeleteOptions`: preconditions, grace period and propagation.
#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    /// `preconditions.uid`.
    pub uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub resource_version: Option<String>,
    /// `gracePeriodSeconds` (pods; `None`: the pod's own
    /// `terminationGracePeriodSeconds`).
    pub grace_period_seconds: Option<i64>,
    /// `propagationPolicy`.
    pub propagation: Propagation,
}

/// The outcome of a delete.
#[derive(Clone, Debug, PartialEq)]
pub struct Deleted {
    /// The object: its final state if gone, else as now marked for deletion.
    pub object: Value,
    /// `true` if the object is gone; `false` if it is only marked (finalizers, or a
    /// pod's grace period).
    pub gone: bool,
}

/// `ListOptions` that shape a list.
#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    /// Label and field selectors.
    pub filter: Filter,
    /// `limit` (0: everything).
    pub limit: usize,
    /// `continue`: a token from a previous page.
    pub continue_token: Option<String>,
    /// `resourceVersion` with `resourceVersionMatch=Exact`: the list as of that revision.
    pub exact_revision: Option<u64>,
}

/// A list at one revision.
#[derive(Clone, Debug, PartialEq)]
pub struct List {
    /// The revision every item was read at (the list's `resourceVersion`).
    pub revision: u64,
    /// The items, in key order, each with its own `resourceVersion`.
    pub items: Vec<Value>,
    /// `metadata.continue`, when there is more.
    pub continue_token: Option<String>,
}

impl List {
    /// The `<Kind>List` JSON the API server answers.
    pub fn to_json(&self, rt: &ResourceType) -> Value {
        let mut meta = Map::new();
        meta.insert("resourceVersion".into(), self.revision.to_string().into());
        if let Some(c) = &self.continue_token {
            meta.insert("continue".into(), c.clone().into());
        }
        json!({
            "kind": format!("{}List", rt.kind),
            "apiVersion": rt.api_version(),
            "metadata": meta,
            "items": self.items,
        })
    }
}

/// A list at one revision whose items are JSON text ([`Store::list_encoded`]).
#[derive(Clone, Debug)]
pub struct EncodedList {
    /// The revision every item was read at (the list's `resourceVersion`).
    pub revision: u64,
    /// The items, in key order, each one JSON object with its own `resourceVersion`.
    pub items: Vec<Box<serde_json::value::RawValue>>,
    /// `metadata.continue`, when there is more.
    pub continue_token: Option<String>,
}

/// A row read by a list: its key orders the pages.
trait Keyed {
    fn key(&self) -> &String;
}

impl Keyed for Row {
    fn key(&self) -> &String {
        &self.key
    }
}

impl Keyed for EncodedRow {
    fn key(&self) -> &String {
        &self.key
    }
}

/// The object store: the API server's object rules over a [`Storage`].
#[derive(Debug)]
pub struct Store<S> {
    storage: S,
}

const CONTINUE_TOO_OLD: &str = "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.";

/// The alphabet `generateName` suffixes use (no vowels, no confusable characters).
const NAME_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn storage_err(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(e)
}

/// Marks `new` (a copy of `old`) for deletion: `deletionTimestamp` `grace` seconds after
/// `now`, the grace period, the finalizers, a generation bump on the first mark, and a
/// Namespace's `Terminating` phase.
fn mark_deleted(
    rt: &ResourceType,
    old: &Value,
    new: &mut Value,
    finalizers: &[String],
    grace: i64,
    now: Timestamp,
) {
    let deadline = now
        .checked_add(SignedDuration::from_secs(grace))
        .unwrap_or(now);
    let meta = meta_mut(new);
    meta.insert("deletionTimestamp".into(), format_time(deadline).into());
    meta.insert("deletionGracePeriodSeconds".into(), grace.into());
    if !finalizers.is_empty() {
        meta.insert("finalizers".into(), json!(finalizers));
    }
    if rt.generation && !object::is_deleting(old) {
        let g = meta.get("generation").and_then(Value::as_i64).unwrap_or(0);
        meta.insert("generation".into(), (g + 1).into());
    }
    if *rt == ResourceType::NAMESPACES
        && let Some(m) = new.as_object_mut()
    {
        let status = m.entry("status").or_insert_with(|| json!({}));
        if let Some(s) = status.as_object_mut() {
            s.insert("phase".into(), "Terminating".into());
        }
    }
}

/// The object as read: `metadata.resourceVersion` is its row's revision.
pub(crate) fn object_of(row: &Row) -> Value {
    let mut v = row.value.clone();
    object::set_revision(&mut v, row.revision);
    v
}

impl<S: Storage> Store<S> {
    /// A store over `storage`.
    pub fn new(storage: S) -> Store<S> {
        Store { storage }
    }

    /// The storage underneath.
    pub fn storage(&self) -> &S {
        &self.storage
    }

    /// The storage underneath, mutably.
    pub fn storage_mut(&mut self) -> &mut S {
        &mut self.storage
    }

    /// The newest revision.
    pub fn revision(&self) -> Result<u64> {
        self.storage.revision().map_err(storage_err)
    }

    /// The newest revision compacted away.
    pub fn compacted(&self) -> Result<u64> {
        self.storage.compacted().map_err(storage_err)
    }

    /// Forgets history at or below `revision`.
    pub fn compact(&mut self, revision: u64) -> Result<()> {
        self.storage.compact(revision).map_err(storage_err)
    }

    /// Checks a namespace and name from a request path: a path segment, never a key
    /// separator.
    fn check_path(rt: &ResourceType, namespace: Option<&str>, name: Option<&str>) -> Result<()> {
        if rt.namespaced && namespace.is_none_or(str::is_empty) && name.is_some() {
            return Err(ApiError::bad_request(
                "the server could not find the requested resource",
            ));
        }
        for (what, v) in [("namespace", namespace), ("name", name)] {
            if let Some(v) = v {
                if what == "name" && v.is_empty() {
                    return Err(ApiError::bad_request("resource name may not be empty"));
                }
                validate::path_segment(v).map_err(|why| {
                    ApiError::bad_request(format!("{}: {why}", crate::error::quote(v)))
                })?;
            }
        }
        Ok(())
    }

    fn ns<'a>(rt: &ResourceType, namespace: Option<&'a str>) -> Option<&'a str> {
        if rt.namespaced { namespace } else { None }
    }

    /// Reads one object.
    pub fn get(&self, rt: &ResourceType, namespace: Option<&str>, name: &str) -> Result<Value> {
        Store::<S>::check_path(rt, namespace, Some(name))?;
        self.read(rt, Store::<S>::ns(rt, namespace), name)?
            .map(|r| object_of(&r))
            .ok_or_else(|| ApiError::not_found(rt, name))
    }

    fn read(&self, rt: &ResourceType, namespace: Option<&str>, name: &str) -> Result<Option<Row>> {
        self.storage
            .get(&rt.key(namespace, name))
            .map_err(storage_err)
    }

    fn append(&mut self, rt: &ResourceType, name: &str, w: Write) -> Result<u64> {
        let creating = w.created;
        self.storage.append(w).map_err(|e| match e {
            AppendError::Conflict { .. } if creating => ApiError::already_exists(rt, name),
            AppendError::Conflict { .. } => ApiError::modified(rt, name),
            AppendError::Storage(e) => storage_err(e),
        })
    }

    /// Checks `kind` and `apiVersion` (filling them when absent) and that the body is
    /// an object.
    fn check_body(rt: &ResourceType, obj: &mut Value) -> Result<()> {
        let Some(map) = obj.as_object_mut() else {
            return Err(ApiError::bad_request(
                "the body of the request must be a JSON object",
            ));
        };
        let api_version = rt.api_version();
        match map.get("apiVersion").and_then(Value::as_str) {
            Some(v) if v != api_version => {
                return Err(ApiError::bad_request(format!(
                    "the API version in the data ({v}) does not match the expected API version ({api_version})"
                )));
            }
            _ => {}
        }
        match map.get("kind").and_then(Value::as_str) {
            Some(k) if k != rt.kind => {
                return Err(ApiError::bad_request(format!(
                    "the kind in the data ({k}) does not match the expected kind ({})",
                    rt.kind
                )));
            }
            _ => {}
        }
        map.insert("apiVersion".into(), api_version.into());
        map.insert("kind".into(), rt.kind.into());
        Ok(())
    }

    /// Checks the object's namespace against the request's, filling it when absent.
    fn check_namespace(rt: &ResourceType, namespace: Option<&str>, obj: &mut Value) -> Result<()> {
        let meta = meta_mut(obj);
        if !rt.namespaced {
            meta.remove("namespace");
            return Ok(());
        }
        let Some(ns) = namespace.filter(|n| !n.is_empty()) else {
            return Err(ApiError::bad_request(
                "the server could not find the requested resource",
            ));
        };
        match meta.get("namespace").and_then(Value::as_str) {
            Some(n) if !n.is_empty() && n != ns => Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            )),
            _ => {
                meta.insert("namespace".into(), ns.into());
                Ok(())
            }
        }
    }

    /// Creates an object (POST). The server stamps uid, creationTimestamp, generation
    /// and resets status; the namespace must exist and not be terminating.
    pub fn create(
        &mut self,
        rt: &ResourceType,
        namespace: Option<&str>,
        mut obj: Value,
        stamp: &Stamp,
    ) -> Result<Value> {
        Store::<S>::check_body(rt, &mut obj)?;
        let namespace = Store::<S>::ns(rt, namespace);
        Store::<S>::check_namespace(rt, namespace, &mut obj)?;
        if let Some(ns) = namespace {
            validate::path_segment(ns).map_err(|why| {
                ApiError::bad_request(format!("{}: {why}", crate::error::quote(ns)))
            })?;
        }
        let name = Store::<S>::stamp_name(rt, &mut obj, stamp)?;
        if meta_str(&obj, "resourceVersion").is_some_and(|v| !v.is_empty()) {
            return Err(ApiError::bad_request(
                "resourceVersion should not be set on objects to be created",
            ));
        }
        if let Some(ns) = namespace {
            match self.read(&ResourceType::NAMESPACES, None, ns)? {
                None => return Err(ApiError::not_found(&ResourceType::NAMESPACES, ns)),
                Some(row) if object::is_deleting(&row.value) => {
                    let mut err = ApiError::forbidden(
                        rt,
                        &name,
                        &format!(
                            "unable to create new content in namespace {ns} because it is being terminated"
                        ),
                    );
                    if let Some(d) = err.0.details.as_mut() {
                        d.causes = Some(vec![
                            k8s_openapi::apimachinery::pkg::apis::meta::v1::StatusCause {
                                reason: Some("NamespaceTerminating".into()),
                                message: Some(format!("namespace {ns} is being terminated")),
                                field: Some("metadata.namespace".into()),
                            },
                        ]);
                    }
                    return Err(err);
                }
                Some(_) => {}
            }
        }
        Store::<S>::stamp_new(rt, &mut obj, stamp);
        let rev = self.append(
            rt,
            &name,
            Write {
                key: rt.key(namespace, &name),
                created: true,
                deleted: false,
                prev_revision: 0,
                value: obj.clone(),
                prev_value: None,
            },
        )?;
        object::set_revision(&mut obj, rev);
        Ok(obj)
    }

    /// `metadata.name` (or one made from `generateName`), validated.
    fn stamp_name(rt: &ResourceType, obj: &mut Value, stamp: &Stamp) -> Result<String> {
        let meta = meta_mut(obj);
        let mut name = meta
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if name.is_empty() {
            let generate = meta
                .get("generateName")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            if generate.is_empty() {
                return Err(ApiError::invalid(
                    rt,
                    "",
                    &[FieldError::required(
                        "metadata.name",
                        "name or generateName is required",
                    )],
                ));
            }
            let mut base = generate;
            base.truncate(58);
            let suffix: String = stamp
                .uid
                .bytes()
                .filter(u8::is_ascii_hexdigit)
                .take(5)
                .map(|b| NAME_ALPHABET[usize::from(b) % NAME_ALPHABET.len()] as char)
                .collect();
            name = base + &suffix;
            meta.insert("name".into(), name.clone().into());
        }
        let errs = rt.name_rule.check("metadata.name", &name);
        if !errs.is_empty() {
            return Err(ApiError::invalid(rt, &name, &errs));
        }
        Ok(name)
    }

    /// Server-set fields of a new object.
    fn stamp_new(rt: &ResourceType, obj: &mut Value, stamp: &Stamp) {
        let name = object::name(obj).to_string();
        let meta = meta_mut(obj);
        meta.insert("uid".into(), stamp.uid.clone().into());
        meta.insert("creationTimestamp".into(), format_time(stamp.now).into());
        for k in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        ] {
            meta.remove(k);
        }
        if rt.generation {
            meta.insert("generation".into(), 1.into());
        } else {
            meta.remove("generation");
        }
        if *rt == ResourceType::NAMESPACES {
            let labels = meta
                .entry("labels")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Some(l) = labels.as_object_mut() {
                l.insert("kubernetes.io/metadata.name".into(), name.into());
            }
        }
        let Some(map) = obj.as_object_mut() else {
            return;
        };
        if *rt == ResourceType::NAMESPACES {
            let spec = map.entry("spec").or_insert_with(|| json!({}));
            if let Some(spec) = spec.as_object_mut() {
                let fin = spec.entry("finalizers").or_insert_with(|| json!([]));
                if let Some(f) = fin.as_array_mut()
                    && !f.iter().any(|v| v == "kubernetes")
                {
                    f.push("kubernetes".into());
                }
            }
            map.insert("status".into(), json!({"phase": "Active"}));
        } else if *rt == ResourceType::PODS {
            map.insert(
                "status".into(),
                json!({"phase": PodPhase::Pending.as_str()}),
            );
        } else if rt.status_subresource {
            map.insert("status".into(), json!({}));
        }
    }

    /// Replaces an object (PUT on the main resource). `status` is kept as stored for
    /// kinds with a status subresource; `metadata.resourceVersion`, when set, must be
    /// the stored one; `generation` rises when the spec changes. An update that leaves
    /// an object marked for deletion without finalizers completes the deletion.
    pub fn update(
        &mut self,
        rt: &ResourceType,
        namespace: Option<&str>,
        name: &str,
        obj: Value,
    ) -> Result<Value> {
        self.replace(rt, namespace, name, obj, false)
    }

    /// Replaces an object's `status` (PUT on `/status`); nothing else changes.
    pub fn update_status(
        &mut self,
        rt: &ResourceType,
        namespace: Option<&str>,
        name: &str,
        obj: Value,
    ) -> Result<Value> {
        if !rt.status_subresource {
            return Err(ApiError::not_found(rt, name));
        }
        self.replace(rt, namespace, name, obj, true)
    }

    fn replace(
        &mut self,
        rt: &ResourceType,
        namespace: Option<&str>,
        name: &str,
        mut obj: Value,
        status_only: bool,
    ) -> Result<Value> {
        Store::<S>::check_path(rt, namespace, Some(name))?;
        Store::<S>::check_body(rt, &mut obj)?;
        let namespace = Store::<S>::ns(rt, namespace);
        Store::<S>::check_namespace(rt, namespace, &mut obj)?;
        match meta_str(&obj, "name") {
            Some(n) if n != name => {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({n}) does not match the name on the URL ({name})"
                )));
            }
            _ => {
                meta_mut(&mut obj).insert("name".into(), name.into());
            }
        }
        let row = self
            .read(rt, namespace, name)?
            .ok_or_else(|| ApiError::not_found(rt, name))?;
        let old = &row.value;
        if let Some(rv) = meta_str(&obj, "resourceVersion").filter(|v| !v.is_empty())
            && rv != row.revision.to_string()
        {
            return Err(ApiError::modified(rt, name));
        }
        if let Some(uid) = meta_str(&obj, "uid").filter(|v| !v.is_empty())
            && uid != object::uid(old)
        {
            return Err(ApiError::invalid(
                rt,
                name,
                &[FieldError::invalid(
                    "metadata.uid",
                    uid,
                    "field is immutable",
                )],
            ));
        }
        if !status_only && object::is_deleting(old) {
            let before = object::finalizers(old);
            let added: Vec<&str> = object::finalizers(&obj)
                .into_iter()
                .filter(|f| !before.contains(f))
                .collect();
            if !added.is_empty() {
                let list = added
                    .iter()
                    .map(|f| crate::error::quote(f))
                    .collect::<Vec<_>>();
                return Err(ApiError::invalid(
                    rt,
                    name,
                    &[FieldError::forbidden(
                        "metadata.finalizers",
                        &format!(
                            "no new finalizers can be added if the object is being deleted, found new finalizers []string{{{}}}",
                            list.join(", ")
                        ),
                    )],
                ));
            }
        }
        let new = if status_only {
            let mut new = old.clone();
            if let (Some(m), Some(status)) = (new.as_object_mut(), obj.get("status")) {
                m.insert("status".into(), status.clone());
            }
            new
        } else {
            let mut new = obj;
            {
                let keep = [
                    "uid",
                    "creationTimestamp",
                    "deletionTimestamp",
                    "deletionGracePeriodSeconds",
                    "generation",
                ];
                let old_meta = old.get("metadata").and_then(Value::as_object);
                let meta = meta_mut(&mut new);
                for k in keep {
                    match old_meta.and_then(|m| m.get(k)) {
                        Some(v) => meta.insert(k.into(), v.clone()),
                        None => meta.remove(k),
                    };
                }
                meta.remove("resourceVersion");
            }
            if rt.status_subresource
                && let Some(m) = new.as_object_mut()
            {
                match old.get("status") {
                    Some(s) => m.insert("status".into(), s.clone()),
                    None => m.remove("status"),
                };
            }
            if rt.generation && object::spec_part(&new) != object::spec_part(old) {
                let g = old
                    .pointer("/metadata/generation")
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                meta_mut(&mut new).insert("generation".into(), (g + 1).into());
            }
            new
        };
        let mut stored_old = old.clone();
        meta_mut(&mut stored_old).remove("resourceVersion");
        if new == stored_old {
            return Ok(object_of(&row));
        }
        let finished = object::is_deleting(&new)
            && object::finalizers(&new).is_empty()
            && !has_spec_finalizers(rt, &new)
            && new
                .pointer("/metadata/deletionGracePeriodSeconds")
                .and_then(Value::as_i64)
                .unwrap_or(0)
                == 0;
        let rev = self.append(
            rt,
            name,
            Write {
                key: rt.key(namespace, name),
                created: false,
                deleted: finished,
                prev_revision: row.revision,
                value: new.clone(),
                prev_value: Some(row.value.clone()),
            },
        )?;
        let mut new = new;
        object::set_revision(&mut new, rev);
        Ok(new)
    }

    /// Deletes an object (DELETE). With finalizers (or a pod's grace period, or a
    /// namespace's `spec.finalizers`) it is only marked: `deletionTimestamp` and
    /// `deletionGracePeriodSeconds` are set, and it goes when the last finalizer does.
    pub fn delete(
        &mut self,
        rt: &ResourceType,
        namespace: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
        now: Timestamp,
    ) -> Result<Deleted> {
        Store::<S>::check_path(rt, namespace, Some(name))?;
        let namespace = Store::<S>::ns(rt, namespace);
        let row = self
            .read(rt, namespace, name)?
            .ok_or_else(|| ApiError::not_found(rt, name))?;
        let old = &row.value;
        if let Some(uid) = opts.uid.as_deref()
            && uid != object::uid(old)
        {
            return Err(ApiError::conflict(
                rt,
                name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    object::uid(old)
                ),
            ));
        }
        if let Some(rv) = opts.resource_version.as_deref()
            && rv != row.revision.to_string()
        {
            return Err(ApiError::conflict(
                rt,
                name,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                    row.revision
                ),
            ));
        }
        let grace = grace_period(rt, old, opts.grace_period_seconds);
        let mut new = old.clone();
        meta_mut(&mut new).remove("resourceVersion");
        let mut finalizers: Vec<String> = object::finalizers(old)
            .into_iter()
            .map(str::to_string)
            .collect();
        let added = match opts.propagation {
            Propagation::Foreground => Some("foregroundDeletion"),
            Propagation::Orphan => Some("orphan"),
            Propagation::Background => None,
        };
        if let Some(f) = added
            && !finalizers.iter().any(|x| x == f)
            && !object::is_deleting(old)
        {
            finalizers.push(f.to_string());
        }
        // Without finalizers or a grace period the object goes at once; else it is
        // marked for deletion and stays until they are done.
        let gone = finalizers.is_empty() && grace == 0 && !has_spec_finalizers(rt, old);
        if !gone {
            if object::is_deleting(old) {
                // Already marked: only a shorter grace period changes anything.
                let current = old
                    .pointer("/metadata/deletionGracePeriodSeconds")
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                if grace >= current {
                    return Ok(Deleted {
                        object: object_of(&row),
                        gone: false,
                    });
                }
            }
            mark_deleted(rt, old, &mut new, &finalizers, grace, now);
        }
        let rev = self.append(
            rt,
            name,
            Write {
                key: rt.key(namespace, name),
                created: false,
                deleted: gone,
                prev_revision: row.revision,
                value: new.clone(),
                prev_value: Some(row.value.clone()),
            },
        )?;
        object::set_revision(&mut new, rev);
        Ok(Deleted { object: new, gone })
    }

    /// Lists a collection (one namespace, or all with `None`) at one revision, with
    /// selectors and paging.
    pub fn list(
        &self,
        rt: &ResourceType,
        namespace: Option<&str>,
        opts: &ListOptions,
    ) -> Result<List> {
        let (revision, items, continue_token) = self.list_rows(
            rt,
            namespace,
            opts,
            |s, prefix, after, revision, limit| s.range(prefix, after, revision, limit),
            |row: &Row| Ok(opts.filter.matches(rt, &row.value)),
            |row: Row| {
                let mut obj = row.value;
                object::set_revision(&mut obj, row.revision);
                Ok(obj)
            },
        )?;
        Ok(List {
            revision,
            items,
            continue_token,
        })
    }

    /// [`Store::list`] with each item left as JSON text: the stored JSON with its
    /// `resourceVersion` set, never decoded into a tree (only to match selectors, when
    /// there are any). What an API answer that copies the objects as they are reads.
    pub fn list_encoded(
        &self,
        rt: &ResourceType,
        namespace: Option<&str>,
        opts: &ListOptions,
    ) -> Result<EncodedList> {
        let everything = opts.filter.is_empty();
        let corrupt = |row: &EncodedRow, e: serde_json::Error| {
            ApiError::internal(format!(
                "stored object {} at revision {} is not valid JSON: {e}",
                row.key, row.revision
            ))
        };
        let (revision, items, continue_token) = self.list_rows(
            rt,
            namespace,
            opts,
            |s, prefix, after, revision, limit| s.range_encoded(prefix, after, revision, limit),
            |row: &EncodedRow| {
                if everything {
                    return Ok(true);
                }
                let value: Value =
                    serde_json::from_slice(&row.value).map_err(|e| corrupt(row, e))?;
                Ok(opts.filter.matches(rt, &value))
            },
            |row: EncodedRow| {
                object::encoded_with_revision(&row.value, row.revision)
                    .map_err(|e| corrupt(&row, e))
            },
        )?;
        Ok(EncodedList {
            revision,
            items,
            continue_token,
        })
    }

    /// The paging of [`Store::list`] over rows that `read` reads from the storage: keeps
    /// the rows `keep` selects and makes each an item with `item`. Answers the list's
    /// revision, the items and the continue token.
    fn list_rows<R: Keyed, T>(
        &self,
        rt: &ResourceType,
        namespace: Option<&str>,
        opts: &ListOptions,
        read: impl Fn(&S, &str, &str, u64, usize) -> std::result::Result<Vec<R>, S::Error>,
        keep: impl Fn(&R) -> Result<bool>,
        item: impl Fn(R) -> Result<T>,
    ) -> Result<(u64, Vec<T>, Option<String>)> {
        Store::<S>::check_path(rt, namespace, None)?;
        let namespace = Store::<S>::ns(rt, namespace);
        let prefix = rt.prefix(namespace);
        // A fresh list that met a compaction starts again at the new head.
        loop {
            let (revision, mut start_after) = match &opts.continue_token {
                Some(token) => {
                    let (rev, start) = decode_continue(token)?;
                    (rev, format!("{prefix}{start}"))
                }
                None => {
                    let current = self.revision()?;
                    match opts.exact_revision {
                        Some(r) if r > current => {
                            return Err(ApiError::too_large(r, current));
                        }
                        Some(r) => (r, String::new()),
                        None => (current, String::new()),
                    }
                }
            };
            let compacted = self.compacted()?;
            if revision < compacted
                && (opts.continue_token.is_some() || opts.exact_revision.is_some())
            {
                return Err(if opts.continue_token.is_some() {
                    ApiError::expired(CONTINUE_TOO_OLD)
                } else {
                    ApiError::too_old(revision, compacted)
                });
            }
            let want = if opts.limit == 0 {
                usize::MAX
            } else {
                opts.limit
            };
            let chunk = if opts.limit == 0 {
                1024
            } else {
                opts.limit.clamp(64, 1024)
            };
            let mut items = Vec::new();
            let mut last_key = String::new();
            let mut more = false;
            'read: loop {
                let rows = read(&self.storage, &prefix, &start_after, revision, chunk)
                    .map_err(storage_err)?;
                let done = rows.len() < chunk;
                for row in rows {
                    start_after.clone_from(row.key());
                    if !keep(&row)? {
                        continue;
                    }
                    if items.len() == want {
                        more = true;
                        break 'read;
                    }
                    last_key.clone_from(row.key());
                    items.push(item(row)?);
                }
                if done {
                    break;
                }
            }
            // Another process may have compacted history while this one read: the pages
            // could then mix revisions. A fresh list reads again at the new head; a
            // continued or exact one cannot, and is refused.
            let compacted = self.compacted()?;
            if revision < compacted {
                if opts.continue_token.is_none() && opts.exact_revision.is_none() {
                    continue;
                }
                return Err(ApiError::too_old(revision, compacted));
            }
            let continue_token = more.then(|| {
                encode_continue(
                    revision,
                    last_key.strip_prefix(&prefix).unwrap_or(&last_key),
                )
            });
            return Ok((revision, items, continue_token));
        }
    }

    /// Creates what a new cluster starts with, as the API server does at its first
    /// start: the namespaces `default`, `kube-system`, `kube-public` and
    /// `kube-node-lease`, and a ServiceAccount `default` in each. What exists is left
    /// as it is. `stamp` gives each new object its time and uid.
    pub fn seed_defaults(&mut self, mut stamp: impl FnMut() -> Stamp) -> Result<()> {
        const NAMESPACES: [&str; 4] = ["default", "kube-system", "kube-public", "kube-node-lease"];
        let exists = |r: Result<Value>| match r {
            Err(e) if e.code() == 409 => Ok(()),
            other => other.map(drop),
        };
        for ns in NAMESPACES {
            let obj = json!({"metadata": {"name": ns}});
            exists(self.create(&ResourceType::NAMESPACES, None, obj, &stamp()))?;
        }
        for ns in NAMESPACES {
            let obj = json!({"metadata": {"name": "default"}});
            exists(self.create(&ResourceType::SERVICE_ACCOUNTS, Some(ns), obj, &stamp()))?;
        }
        Ok(())
    }

    // === typed helpers ===

    /// Reads one object as a k8s-openapi type.
    pub fn get_as<K>(&self, namespace: Option<&str>, name: &str) -> Result<K>
    where
        K: k8s_openapi::Resource + serde::de::DeserializeOwned,
    {
        let rt = typed::<K>()?;
        from_value(self.get(rt, namespace, name)?)
    }

    /// Creates an object from a k8s-openapi type.
    pub fn create_as<K>(&mut self, namespace: Option<&str>, obj: &K, stamp: &Stamp) -> Result<K>
    where
        K: k8s_openapi::Resource + serde::Serialize + serde::de::DeserializeOwned,
    {
        let rt = typed::<K>()?;
        let v = serde_json::to_value(obj).map_err(storage_err)?;
        from_value(self.create(rt, namespace, v, stamp)?)
    }

    /// Replaces an object from a k8s-openapi type.
    pub fn update_as<K>(&mut self, namespace: Option<&str>, name: &str, obj: &K) -> Result<K>
    where
        K: k8s_openapi::Resource + serde::Serialize + serde::de::DeserializeOwned,
    {
        let rt = typed::<K>()?;
        let v = serde_json::to_value(obj).map_err(storage_err)?;
        from_value(self.update(rt, namespace, name, v)?)
    }

    /// Lists a collection as k8s-openapi values, with the list's revision.
    pub fn list_as<K>(&self, namespace: Option<&str>, opts: &ListOptions) -> Result<(u64, Vec<K>)>
    where
        K: k8s_openapi::Resource + serde::de::DeserializeOwned,
    {
        let rt = typed::<K>()?;
        let list = self.list(rt, namespace, opts)?;
        let items = list
            .items
            .into_iter()
            .map(from_value)
            .collect::<Result<_>>()?;
        Ok((list.revision, items))
    }
}

fn typed<K: k8s_openapi::Resource>() -> Result<&'static ResourceType> {
    ResourceType::of::<K>().ok_or_else(|| {
        ApiError::bad_request(format!("the server does not serve {}", K::URL_PATH_SEGMENT))
    })
}

fn from_value<K: serde::de::DeserializeOwned>(v: Value) -> Result<K> {
    serde_json::from_value(v).map_err(storage_err)
}

/// A namespace waits for its `spec.finalizers` (the namespace controller's
/// `kubernetes`) as other objects wait for `metadata.finalizers`.
fn has_spec_finalizers(rt: &ResourceType, obj: &Value) -> bool {
    *rt == ResourceType::NAMESPACES
        && obj
            .pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty())
}

/// The grace period of a delete: pods get the request's, else their own
/// `terminationGracePeriodSeconds` (30 by default), and 0 when not yet bound to a node
/// or already finished, as the API server decides; every other kind goes at once.
fn grace_period(rt: &ResourceType, obj: &Value, requested: Option<i64>) -> i64 {
    if *rt != ResourceType::PODS {
        return 0;
    }
    let unbound = obj
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty);
    let finished = obj
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .and_then(PodPhase::from_api)
        .is_some_and(PodPhase::is_terminal);
    if unbound || finished {
        return 0;
    }
    requested
        .or_else(|| {
            obj.pointer("/spec/terminationGracePeriodSeconds")
                .and_then(Value::as_i64)
        })
        .unwrap_or(30)
        .max(0)
}

fn encode_continue(revision: u64, start_after: &str) -> String {
    let token =
        json!({"v": "meta.k8s.io/v1", "rv": revision, "start": format!("{start_after}\u{0}")});
    base64::engine::general_purpose::STANDARD.encode(token.to_string())
}

fn decode_continue(token: &str) -> Result<(u64, String)> {
    let bad = |why: &str| ApiError::bad_request(format!("continue key is not valid: {why}"));
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(token)
        .map_err(|_| bad("illegal base64 data"))?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|_| bad("invalid JSON"))?;
    if v.get("v").and_then(Value::as_str) != Some("meta.k8s.io/v1") {
        return Err(bad("server does not recognize this encoded key"));
    }
    let rev = v
        .get("rv")
        .and_then(Value::as_u64)
        .filter(|r| *r > 0)
        .ok_or_else(|| bad("incorrect encoded start resourceVersion (version meta.k8s.io/v1)"))?;
    let start = v
        .get("start")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("encoded start key empty (version meta.k8s.io/v1)"))?;
    let start = start.strip_suffix('\u{0}').unwrap_or(start);
    if start.contains('/') && start.split('/').any(|s| s == ".." || s == ".") {
        return Err(bad("path traversal attempt detected"));
    }
    Ok((rev, start.to_string()))
}
