//! The storage conformance suite: the core's rules checked end to end over a backend.
//! Written once, generic over [`Storage`]; each backend runs it with
//! [`storage_suite!`](crate::storage_suite), one `#[test]` per rule.

#![allow(missing_docs, clippy::missing_panics_doc)]

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use crate::gc::{self, GcAction};
use crate::resource::ResourceType as R;
use crate::selector::Filter;
use crate::storage::Storage;
use crate::store::{DeleteOptions, List, ListOptions, Propagation, Stamp, Store};
use crate::watch::{EventType, INITIAL_EVENTS_END, WatchOptions};

/// Runs every rule of the suite as its own test, over storages made by `$make`.
#[macro_export]
macro_rules! storage_suite {
    ($make:expr) => {
        $crate::storage_suite!(@tests $make;
            create_stamps_server_fields, create_twice_is_already_exists,
            create_needs_a_live_namespace, names_are_validated_first,
            not_found_names_the_group, stale_update_is_a_conflict,
            generation_follows_spec_only, status_is_a_subresource,
            delete_preconditions, finalizers_hold_deletion,
            pod_grace_period, revision_is_global, label_selectors,
            field_selectors, list_pages_at_one_revision,
            watch_resumes_from_a_revision, watch_follows_selectors,
            watch_too_old_is_expired, watch_list_initial_events, bookmarks,
            compaction_keeps_live_objects, garbage_collection_order,
            namespaces_terminate, seeded_defaults, typed_access);
    };
    (@tests $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                $crate::suite::$name($make);
            }
        )*
    };
}

fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).expect("in range")
}

fn stamp(n: u32) -> Stamp {
    Stamp {
        now: t(0),
        uid: format!("00000000-0000-4000-8000-{n:012x}"),
    }
}

fn store<S: Storage>(storage: S) -> Store<S> {
    let mut s = Store::new(storage);
    for (i, ns) in ["default", "other"].iter().enumerate() {
        s.create(
            &R::NAMESPACES,
            None,
            json!({"metadata": {"name": ns}}),
            &stamp(1000 + i as u32),
        )
        .expect("namespace");
    }
    s
}

fn pod(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
           "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
}

fn rv(obj: &Value) -> u64 {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .expect("rv")
        .parse()
        .expect("number")
}

fn names(items: &[Value]) -> Vec<&str> {
    items
        .iter()
        .map(|o| o["metadata"]["name"].as_str().unwrap_or(""))
        .collect()
}

fn list<S: Storage>(s: &Store<S>, rt: &R, labels: &str, fields: &str) -> Vec<Value> {
    let filter = Filter::parse(rt, labels, fields).expect("selector");
    let opts = ListOptions {
        filter,
        ..ListOptions::default()
    };
    let list = s.list(rt, Some("default"), &opts).expect("list");
    same_encoded(s, rt, Some("default"), &opts, &list);
    list.items
}

/// [`Store::list_encoded`] answers the same page as [`Store::list`], as JSON text.
fn same_encoded<S: Storage>(
    s: &Store<S>,
    rt: &R,
    namespace: Option<&str>,
    opts: &ListOptions,
    list: &List,
) {
    let encoded = s.list_encoded(rt, namespace, opts).expect("encoded list");
    assert_eq!(encoded.revision, list.revision);
    assert_eq!(encoded.continue_token, list.continue_token);
    let items: Vec<Value> = encoded
        .items
        .iter()
        .map(|i| serde_json::from_str(i.get()).expect("JSON"))
        .collect();
    assert_eq!(items, list.items);
}

pub fn create_stamps_server_fields<S: Storage>(storage: S) {
    let mut s = store(storage);
    let mut p = pod("web");
    p["status"] = json!({"phase": "Running"});
    p["metadata"]["uid"] = json!("client-chosen");
    let got = s
        .create(&R::PODS, Some("default"), p, &stamp(1))
        .expect("create");
    assert_eq!(
        got["metadata"]["uid"],
        "00000000-0000-4000-8000-000000000001"
    );
    assert_eq!(got["metadata"]["namespace"], "default");
    assert_eq!(got["metadata"]["creationTimestamp"], "2027-01-15T08:00:00Z");
    assert_eq!(got["metadata"]["generation"], 1);
    assert_eq!(got["status"], json!({"phase": "Pending"}));
    assert_eq!(rv(&got), s.revision().expect("rev"));
    assert_eq!(s.get(&R::PODS, Some("default"), "web").expect("get"), got);
    let cm = s
        .create(
            &R::CONFIG_MAPS,
            Some("default"),
            json!({"metadata": {"name": "c"}, "data": {"a": "1"}}),
            &stamp(2),
        )
        .expect("configmap");
    assert_eq!(cm["kind"], "ConfigMap");
    assert_eq!(cm["apiVersion"], "v1");
    assert!(cm["metadata"].get("generation").is_none());
    let gen_name = s
        .create(
            &R::PODS,
            Some("default"),
            json!({"metadata": {"generateName": "web-"}, "spec": {}}),
            &stamp(3),
        )
        .expect("generateName");
    let n = gen_name["metadata"]["name"].as_str().expect("name");
    assert!(n.starts_with("web-") && n.len() == 9, "{n}");
    let e = s
        .create(
            &R::PODS,
            Some("default"),
            json!({"apiVersion": "apps/v1", "metadata": {"name": "x"}}),
            &stamp(4),
        )
        .expect_err("wrong apiVersion");
    assert_eq!(e.code(), 400);
}

pub fn create_twice_is_already_exists<S: Storage>(storage: S) {
    let mut s = store(storage);
    s.create(&R::PODS, Some("default"), pod("web"), &stamp(1))
        .expect("create");
    let e = s
        .create(&R::PODS, Some("default"), pod("web"), &stamp(2))
        .expect_err("twice");
    assert_eq!(
        (e.code(), e.reason(), e.message()),
        (409, "AlreadyExists", "pods \"web\" already exists")
    );
    let details = e.0.details.as_ref().expect("details");
    assert_eq!(details.kind.as_deref(), Some("pods"));
    assert_eq!(details.name.as_deref(), Some("web"));
    // The same name in another namespace is another object.
    s.create(&R::PODS, Some("other"), pod("web"), &stamp(3))
        .expect("other namespace");
    let d = json!({"metadata": {"name": "d"}, "spec": {"replicas": 1}});
    s.create(&R::DEPLOYMENTS, Some("default"), d.clone(), &stamp(4))
        .expect("deployment");
    let e = s
        .create(&R::DEPLOYMENTS, Some("default"), d, &stamp(5))
        .expect_err("twice");
    assert_eq!(e.message(), "deployments.apps \"d\" already exists");
    assert_eq!(
        e.0.details.as_ref().and_then(|d| d.group.as_deref()),
        Some("apps")
    );
}

pub fn create_needs_a_live_namespace<S: Storage>(storage: S) {
    let mut s = store(storage);
    let e = s
        .create(&R::PODS, Some("nope"), pod("web"), &stamp(1))
        .expect_err("no namespace");
    assert_eq!(
        (e.code(), e.message()),
        (404, "namespaces \"nope\" not found")
    );
    s.delete(
        &R::NAMESPACES,
        None,
        "other",
        &DeleteOptions::default(),
        t(1),
    )
    .expect("delete ns");
    let e = s
        .create(&R::PODS, Some("other"), pod("web"), &stamp(2))
        .expect_err("terminating");
    assert_eq!(e.code(), 403);
    assert_eq!(
        e.message(),
        "pods \"web\" is forbidden: unable to create new content in namespace other because it is being terminated"
    );
    let cause =
        &e.0.details
            .as_ref()
            .and_then(|d| d.causes.clone())
            .expect("causes")[0];
    assert_eq!(cause.reason.as_deref(), Some("NamespaceTerminating"));
    let mut p = pod("web");
    p["metadata"]["namespace"] = json!("other");
    let e = s
        .create(&R::PODS, Some("default"), p, &stamp(3))
        .expect_err("mismatch");
    assert_eq!(
        e.message(),
        "the namespace of the provided object does not match the namespace sent on the request"
    );
}

pub fn names_are_validated_first<S: Storage>(storage: S) {
    let mut s = store(storage);
    let before = s.revision().expect("rev");
    let e = s
        .create(&R::PODS, Some("default"), pod("Bad_Name"), &stamp(1))
        .expect_err("bad");
    assert_eq!(e.code(), 422);
    assert_eq!(
        e.message(),
        "Pod \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
    );
    let cause =
        &e.0.details
            .as_ref()
            .expect("details")
            .causes
            .as_ref()
            .expect("causes")[0];
    assert_eq!(cause.field.as_deref(), Some("metadata.name"));
    let e = s
        .create(
            &R::SERVICES,
            Some("default"),
            json!({"metadata": {"name": "1svc"}, "spec": {}}),
            &stamp(2),
        )
        .expect_err("dns-1035");
    assert!(
        e.message().contains("a DNS-1035 label must consist of"),
        "{}",
        e.message()
    );
    let e = s
        .create(
            &R::NAMESPACES,
            None,
            json!({"metadata": {"name": "a.b"}}),
            &stamp(3),
        )
        .expect_err("label");
    assert!(e.message().contains("RFC 1123 label"), "{}", e.message());
    let e = s
        .create(
            &R::PODS,
            Some("default"),
            json!({"metadata": {}}),
            &stamp(4),
        )
        .expect_err("no name");
    assert_eq!(
        e.message(),
        "Pod \"\" is invalid: metadata.name: Required value: name or generateName is required"
    );
    let e = s.get(&R::PODS, Some("default"), "../x").expect_err("path");
    assert_eq!(
        (e.code(), e.message()),
        (400, "\"../x\": may not contain '/'")
    );
    let e = s
        .create(&R::PODS, Some("a/b"), pod("x"), &stamp(5))
        .expect_err("namespace path");
    assert_eq!(e.code(), 400);
    assert_eq!(s.revision().expect("rev"), before, "nothing was written");
}

pub fn not_found_names_the_group<S: Storage>(storage: S) {
    let s = store(storage);
    let e = s.get(&R::PODS, Some("default"), "x").expect_err("absent");
    assert_eq!(
        (e.code(), e.reason(), e.message()),
        (404, "NotFound", "pods \"x\" not found")
    );
    let e = s
        .get(&R::DEPLOYMENTS, Some("default"), "x")
        .expect_err("absent");
    assert_eq!(e.message(), "deployments.apps \"x\" not found");
    let e = s
        .get(&R::ENDPOINT_SLICES, Some("default"), "x")
        .expect_err("absent");
    assert_eq!(
        e.message(),
        "endpointslices.discovery.k8s.io \"x\" not found"
    );
    let e = s.get(&R::NAMESPACES, None, "x").expect_err("absent");
    assert_eq!(e.message(), "namespaces \"x\" not found");
    assert_eq!(e.to_json()["kind"], "Status");
    assert_eq!(e.to_json()["details"]["kind"], "namespaces");
}

pub fn stale_update_is_a_conflict<S: Storage>(storage: S) {
    let mut s = store(storage);
    let first = s
        .create(&R::PODS, Some("default"), pod("web"), &stamp(1))
        .expect("create");
    let mut a = first.clone();
    a["metadata"]["labels"] = json!({"v": "a"});
    let a = s
        .update(&R::PODS, Some("default"), "web", a)
        .expect("first writer");
    assert!(rv(&a) > rv(&first));
    let mut b = first.clone();
    b["metadata"]["labels"] = json!({"v": "b"});
    let e = s
        .update(&R::PODS, Some("default"), "web", b.clone())
        .expect_err("stale");
    assert_eq!((e.code(), e.reason()), (409, "Conflict"));
    assert_eq!(
        e.message(),
        "Operation cannot be fulfilled on pods \"web\": the object has been modified; please apply your changes to the latest version and try again"
    );
    // Without a resourceVersion the update is unconditional.
    b["metadata"]
        .as_object_mut()
        .expect("meta")
        .remove("resourceVersion");
    let b = s
        .update(&R::PODS, Some("default"), "web", b)
        .expect("unconditional");
    assert_eq!(b["metadata"]["labels"]["v"], "b");
    let mut c = b.clone();
    c["metadata"]["uid"] = json!("another");
    let e = s
        .update(&R::PODS, Some("default"), "web", c)
        .expect_err("uid");
    assert_eq!(e.code(), 422);
    assert!(
        e.message()
            .contains("metadata.uid: Invalid value: \"another\": field is immutable")
    );
    let e = s
        .update(&R::PODS, Some("default"), "nope", pod("nope"))
        .expect_err("absent");
    assert_eq!(e.code(), 404);
    let e = s
        .update(&R::PODS, Some("default"), "web", pod("other"))
        .expect_err("name");
    assert_eq!(
        e.message(),
        "the name of the object (other) does not match the name on the URL (web)"
    );
    // Server fields survive a client that sends them changed.
    let mut d = s.get(&R::PODS, Some("default"), "web").expect("get");
    d["metadata"]["creationTimestamp"] = json!("2000-01-01T00:00:00Z");
    d["metadata"]["labels"] = json!({"v": "d"});
    let d = s
        .update(&R::PODS, Some("default"), "web", d)
        .expect("update");
    assert_eq!(
        d["metadata"]["creationTimestamp"],
        first["metadata"]["creationTimestamp"]
    );
    // An update that changes nothing writes nothing.
    let same = s
        .update(&R::PODS, Some("default"), "web", d.clone())
        .expect("no-op");
    assert_eq!(rv(&same), rv(&d));
}

pub fn generation_follows_spec_only<S: Storage>(storage: S) {
    let mut s = store(storage);
    let d = json!({"metadata": {"name": "d"}, "spec": {"replicas": 1}});
    let d = s
        .create(&R::DEPLOYMENTS, Some("default"), d, &stamp(1))
        .expect("create");
    assert_eq!(d["metadata"]["generation"], 1);
    let mut l = d.clone();
    l["metadata"]["labels"] = json!({"a": "b"});
    let l = s
        .update(&R::DEPLOYMENTS, Some("default"), "d", l)
        .expect("labels");
    assert_eq!(
        l["metadata"]["generation"], 1,
        "metadata changes keep the generation"
    );
    let mut sp = l.clone();
    sp["spec"]["replicas"] = json!(3);
    let sp = s
        .update(&R::DEPLOYMENTS, Some("default"), "d", sp)
        .expect("spec");
    assert_eq!(sp["metadata"]["generation"], 2);
    let mut st = sp.clone();
    st["status"] = json!({"replicas": 3});
    let st = s
        .update_status(&R::DEPLOYMENTS, Some("default"), "d", st)
        .expect("status");
    assert_eq!(
        st["metadata"]["generation"], 2,
        "status changes keep the generation"
    );
    let mut g = st.clone();
    g["metadata"]["generation"] = json!(40);
    let g = s
        .update(&R::DEPLOYMENTS, Some("default"), "d", g)
        .expect("client generation");
    assert_eq!(
        g["metadata"]["generation"], 2,
        "clients cannot set the generation"
    );
}

pub fn status_is_a_subresource<S: Storage>(storage: S) {
    let mut s = store(storage);
    let p = s
        .create(&R::PODS, Some("default"), pod("web"), &stamp(1))
        .expect("create");
    let mut main = p.clone();
    main["status"] = json!({"phase": "Running"});
    main["metadata"]["labels"] = json!({"x": "y"});
    let main = s
        .update(&R::PODS, Some("default"), "web", main)
        .expect("main");
    assert_eq!(
        main["status"]["phase"], "Pending",
        "the main resource ignores status"
    );
    let mut st = main.clone();
    st["status"] = json!({"phase": "Running"});
    st["metadata"]["labels"] = json!({"x": "changed"});
    st["spec"]["nodeName"] = json!("n1");
    let st = s
        .update_status(&R::PODS, Some("default"), "web", st)
        .expect("status");
    assert_eq!(st["status"]["phase"], "Running");
    assert_eq!(
        st["metadata"]["labels"]["x"], "y",
        "status ignores the rest"
    );
    assert!(st["spec"].get("nodeName").is_none());
    let e = s
        .update_status(
            &R::CONFIG_MAPS,
            Some("default"),
            "c",
            json!({"metadata": {"name": "c"}}),
        )
        .expect_err("no status subresource");
    assert_eq!(e.code(), 404);
    let mut stale = main.clone();
    stale["status"] = json!({"phase": "Failed"});
    let e = s
        .update_status(&R::PODS, Some("default"), "web", stale)
        .expect_err("stale");
    assert_eq!(e.code(), 409);
}

pub fn delete_preconditions<S: Storage>(storage: S) {
    let mut s = store(storage);
    let p = s
        .create(
            &R::CONFIG_MAPS,
            Some("default"),
            json!({"metadata": {"name": "c"}}),
            &stamp(1),
        )
        .expect("create");
    let e = s
        .delete(
            &R::CONFIG_MAPS,
            Some("default"),
            "c",
            &DeleteOptions {
                uid: Some("u2".into()),
                ..DeleteOptions::default()
            },
            t(1),
        )
        .expect_err("uid");
    assert_eq!(
        e.message(),
        "Operation cannot be fulfilled on configmaps \"c\": Precondition failed: UID in precondition: u2, UID in object meta: 00000000-0000-4000-8000-000000000001"
    );
    let e = s
        .delete(
            &R::CONFIG_MAPS,
            Some("default"),
            "c",
            &DeleteOptions {
                resource_version: Some("1".into()),
                ..DeleteOptions::default()
            },
            t(1),
        )
        .expect_err("rv");
    assert_eq!(e.code(), 409);
    assert!(e.message().contains(
        "Precondition failed: ResourceVersion in precondition: 1, ResourceVersion in object meta:"
    ));
    let opts = DeleteOptions {
        uid: Some(p["metadata"]["uid"].as_str().expect("uid").into()),
        resource_version: Some(rv(&p).to_string()),
        ..DeleteOptions::default()
    };
    let d = s
        .delete(&R::CONFIG_MAPS, Some("default"), "c", &opts, t(1))
        .expect("delete");
    assert!(d.gone);
    assert!(rv(&d.object) > rv(&p));
    assert_eq!(
        s.get(&R::CONFIG_MAPS, Some("default"), "c")
            .expect_err("gone")
            .code(),
        404
    );
    let e = s
        .delete(
            &R::CONFIG_MAPS,
            Some("default"),
            "c",
            &DeleteOptions::default(),
            t(2),
        )
        .expect_err("twice");
    assert_eq!(e.message(), "configmaps \"c\" not found");
    // A deleted name can be created again, as a new object.
    let again = s
        .create(
            &R::CONFIG_MAPS,
            Some("default"),
            json!({"metadata": {"name": "c"}}),
            &stamp(9),
        )
        .expect("again");
    assert_ne!(again["metadata"]["uid"], p["metadata"]["uid"]);
}

pub fn finalizers_hold_deletion<S: Storage>(storage: S) {
    let mut s = store(storage);
    let j = json!({"metadata": {"name": "j", "finalizers": ["example.com/x"]}, "spec": {}});
    s.create(&R::JOBS, Some("default"), j, &stamp(1))
        .expect("create");
    let (mut w, _) = s
        .watch(
            &R::JOBS,
            Some("default"),
            &WatchOptions {
                resource_version: Some(s.revision().expect("rev").to_string()),
                ..WatchOptions::default()
            },
        )
        .expect("watch");
    let d = s
        .delete(
            &R::JOBS,
            Some("default"),
            "j",
            &DeleteOptions::default(),
            t(5),
        )
        .expect("mark");
    assert!(!d.gone);
    assert_eq!(
        d.object["metadata"]["deletionTimestamp"],
        "2027-01-15T08:00:05Z"
    );
    assert_eq!(d.object["metadata"]["deletionGracePeriodSeconds"], 0);
    assert_eq!(
        d.object["metadata"]["generation"], 2,
        "marking bumps the generation"
    );
    let mut more = s.get(&R::JOBS, Some("default"), "j").expect("still there");
    more["metadata"]["finalizers"] = json!(["example.com/x", "example.com/y"]);
    let e = s
        .update(&R::JOBS, Some("default"), "j", more)
        .expect_err("no new finalizers");
    assert_eq!(
        e.message(),
        "Job \"j\" is invalid: metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{\"example.com/y\"}"
    );
    let mut got = s.get(&R::JOBS, Some("default"), "j").expect("still there");
    // A client cannot clear the deletionTimestamp.
    got["metadata"]["deletionTimestamp"] = Value::Null;
    got["metadata"]["finalizers"] = json!([]);
    let last = s
        .update(&R::JOBS, Some("default"), "j", got)
        .expect("remove finalizer");
    assert_eq!(
        s.get(&R::JOBS, Some("default"), "j")
            .expect_err("gone")
            .code(),
        404
    );
    let evs = w.catch_up(&s).expect("events");
    let kinds: Vec<_> = evs.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [EventType::Modified, EventType::Deleted]);
    assert_eq!(rv(&evs[1].object), rv(&last));
    // Foreground propagation adds its finalizer and holds the owner.
    s.create(
        &R::DEPLOYMENTS,
        Some("default"),
        json!({"metadata": {"name": "d"}, "spec": {}}),
        &stamp(2),
    )
    .expect("d");
    let opts = DeleteOptions {
        propagation: Propagation::Foreground,
        ..DeleteOptions::default()
    };
    let d = s
        .delete(&R::DEPLOYMENTS, Some("default"), "d", &opts, t(6))
        .expect("foreground");
    assert!(!d.gone);
    assert_eq!(
        d.object["metadata"]["finalizers"],
        json!(["foregroundDeletion"])
    );
}

pub fn pod_grace_period<S: Storage>(storage: S) {
    let mut s = store(storage);
    let mut p = pod("web");
    p["spec"]["nodeName"] = json!("n1");
    s.create(&R::PODS, Some("default"), p, &stamp(1))
        .expect("create");
    let d = s
        .delete(
            &R::PODS,
            Some("default"),
            "web",
            &DeleteOptions::default(),
            t(10),
        )
        .expect("graceful");
    assert!(!d.gone);
    assert_eq!(d.object["metadata"]["deletionGracePeriodSeconds"], 30);
    assert_eq!(
        d.object["metadata"]["deletionTimestamp"],
        "2027-01-15T08:00:40Z"
    );
    let longer = DeleteOptions {
        grace_period_seconds: Some(60),
        ..DeleteOptions::default()
    };
    let same = s
        .delete(&R::PODS, Some("default"), "web", &longer, t(11))
        .expect("longer");
    assert_eq!(
        rv(&same.object),
        rv(&d.object),
        "a longer grace period changes nothing"
    );
    let shorter = DeleteOptions {
        grace_period_seconds: Some(5),
        ..DeleteOptions::default()
    };
    let short = s
        .delete(&R::PODS, Some("default"), "web", &shorter, t(12))
        .expect("shorter");
    assert_eq!(short.object["metadata"]["deletionGracePeriodSeconds"], 5);
    let now = DeleteOptions {
        grace_period_seconds: Some(0),
        ..DeleteOptions::default()
    };
    let gone = s
        .delete(&R::PODS, Some("default"), "web", &now, t(13))
        .expect("kubelet's final delete");
    assert!(gone.gone);
    // An unbound pod goes at once.
    s.create(&R::PODS, Some("default"), pod("pending"), &stamp(2))
        .expect("create");
    assert!(
        s.delete(
            &R::PODS,
            Some("default"),
            "pending",
            &DeleteOptions::default(),
            t(14)
        )
        .expect("delete")
        .gone
    );
}

pub fn revision_is_global<S: Storage>(storage: S) {
    let mut s = store(storage);
    let mut last = s.revision().expect("rev");
    for i in 0..5u32 {
        let a = s
            .create(&R::PODS, Some("default"), pod(&format!("p{i}")), &stamp(i))
            .expect("pod");
        let b = s
            .create(
                &R::SECRETS,
                Some("other"),
                json!({"metadata": {"name": format!("s{i}")}}),
                &stamp(100 + i),
            )
            .expect("secret");
        assert!(rv(&a) > last && rv(&b) > rv(&a));
        last = rv(&b);
    }
    assert_eq!(s.revision().expect("rev"), last);
}

fn labelled<S: Storage>(s: &mut Store<S>) {
    let set = [
        ("a", json!({"app": "web", "tier": "front", "n": "3"})),
        ("b", json!({"app": "web", "tier": "back", "n": "10"})),
        ("c", json!({"app": "db"})),
        ("d", json!({})),
    ];
    for (i, (name, labels)) in set.into_iter().enumerate() {
        let mut p = pod(name);
        p["metadata"]["labels"] = labels;
        s.create(&R::PODS, Some("default"), p, &stamp(i as u32))
            .expect("pod");
    }
}

pub fn label_selectors<S: Storage>(storage: S) {
    let mut s = store(storage);
    labelled(&mut s);
    let cases: &[(&str, &[&str])] = &[
        ("", &["a", "b", "c", "d"]),
        ("app=web", &["a", "b"]),
        ("app==web,tier=back", &["b"]),
        ("app!=web", &["c", "d"]),
        ("app in (db, web)", &["a", "b", "c"]),
        ("app notin (web)", &["c", "d"]),
        ("tier", &["a", "b"]),
        ("!tier", &["c", "d"]),
        ("n>5", &["b"]),
        ("n<5", &["a"]),
        ("app=web,tier in (front),!missing", &["a"]),
    ];
    for (sel, want) in cases {
        assert_eq!(
            names(&list(&s, &R::PODS, sel, "")),
            *want,
            "selector {sel:?}"
        );
    }
    for bad in ["app in web", "app=(", "n>x", "a b", "Bad Key=1", "x=a b"] {
        let e = Filter::parse(&R::PODS, bad, "").expect_err(bad);
        assert_eq!(e.code(), 400, "{bad}");
    }
}

pub fn field_selectors<S: Storage>(storage: S) {
    let mut s = store(storage);
    labelled(&mut s);
    let mut b = s.get(&R::PODS, Some("default"), "b").expect("b");
    b["spec"]["nodeName"] = json!("n1");
    b["status"] = json!({"phase": "Running"});
    s.update(&R::PODS, Some("default"), "b", b.clone())
        .expect("bind");
    let mut b = s.get(&R::PODS, Some("default"), "b").expect("b");
    b["status"] = json!({"phase": "Running"});
    s.update_status(&R::PODS, Some("default"), "b", b)
        .expect("status");
    let cases: &[(&str, &[&str])] = &[
        ("metadata.name=c", &["c"]),
        ("metadata.name!=c", &["a", "b", "d"]),
        ("metadata.namespace==default,metadata.name=a", &["a"]),
        ("spec.nodeName=n1", &["b"]),
        ("spec.nodeName=", &["a", "c", "d"]),
        ("status.phase=Running", &["b"]),
        ("status.phase!=Running", &["a", "c", "d"]),
    ];
    for (sel, want) in cases {
        assert_eq!(
            names(&list(&s, &R::PODS, "", sel)),
            *want,
            "selector {sel:?}"
        );
    }
    for (i, (name, involved)) in [("e1", "a"), ("e2", "b")].into_iter().enumerate() {
        let ev = json!({"metadata": {"name": name}, "involvedObject": {"kind": "Pod", "name": involved, "namespace": "default"}, "reason": "Started", "type": "Normal"});
        s.create(&R::EVENTS, Some("default"), ev, &stamp(50 + i as u32))
            .expect("event");
    }
    assert_eq!(
        names(&list(
            &s,
            &R::EVENTS,
            "",
            "involvedObject.name=b,involvedObject.kind=Pod"
        )),
        ["e2"]
    );
    assert_eq!(
        names(&list(&s, &R::EVENTS, "", "type=Normal,reason=Started")),
        ["e1", "e2"]
    );
    let e = Filter::parse(&R::PODS, "", "spec.foo=1").expect_err("unknown");
    assert_eq!(
        (e.code(), e.message()),
        (400, "field label not supported: spec.foo")
    );
    let e = Filter::parse(&R::CONFIG_MAPS, "", "data.x=1").expect_err("unknown");
    assert_eq!(
        e.message(),
        "\"data.x\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
    );
    let e = Filter::parse(&R::PODS, "", "nonsense").expect_err("syntax");
    assert_eq!(
        e.message(),
        "invalid selector: 'nonsense'; can't understand 'nonsense'"
    );
}

pub fn list_pages_at_one_revision<S: Storage>(storage: S) {
    let mut s = store(storage);
    for i in 0..10u32 {
        s.create(&R::PODS, Some("default"), pod(&format!("p{i}")), &stamp(i))
            .expect("pod");
    }
    s.create(&R::PODS, Some("other"), pod("zz"), &stamp(99))
        .expect("pod");
    let opts = ListOptions {
        limit: 4,
        ..ListOptions::default()
    };
    let first = s.list(&R::PODS, Some("default"), &opts).expect("page 1");
    assert_eq!(names(&first.items), ["p0", "p1", "p2", "p3"]);
    same_encoded(&s, &R::PODS, Some("default"), &opts, &first);
    let token = first.continue_token.clone().expect("more");
    // Writes between pages do not show: every page is read at the first's revision.
    s.delete(
        &R::PODS,
        Some("default"),
        "p5",
        &DeleteOptions::default(),
        t(1),
    )
    .expect("delete");
    s.create(&R::PODS, Some("default"), pod("p45"), &stamp(77))
        .expect("create");
    let opts = ListOptions {
        limit: 4,
        continue_token: Some(token),
        ..ListOptions::default()
    };
    let second = s.list(&R::PODS, Some("default"), &opts).expect("page 2");
    same_encoded(&s, &R::PODS, Some("default"), &opts, &second);
    assert_eq!(second.revision, first.revision);
    assert_eq!(names(&second.items), ["p4", "p5", "p6", "p7"]);
    let third = s
        .list(
            &R::PODS,
            Some("default"),
            &ListOptions {
                limit: 4,
                continue_token: second.continue_token.clone(),
                ..ListOptions::default()
            },
        )
        .expect("page 3");
    assert_eq!(names(&third.items), ["p8", "p9"]);
    assert_eq!(third.continue_token, None);
    // Across namespaces, and with a selector and a limit together.
    let all = s
        .list(&R::PODS, None, &ListOptions::default())
        .expect("all");
    assert_eq!(all.items.len(), 11);
    let filter = Filter::parse(&R::PODS, "", "metadata.name!=p0").expect("filter");
    let opts = ListOptions {
        filter,
        limit: 2,
        ..ListOptions::default()
    };
    let page = s.list(&R::PODS, None, &opts).expect("page");
    assert_eq!(names(&page.items), ["p1", "p2"]);
    same_encoded(&s, &R::PODS, None, &opts, &page);
    let json = page.to_json(&R::PODS);
    assert_eq!(json["kind"], "PodList");
    assert!(json["metadata"]["continue"].is_string());
    let e = s
        .list(
            &R::PODS,
            None,
            &ListOptions {
                continue_token: Some("!!".into()),
                ..ListOptions::default()
            },
        )
        .expect_err("bad token");
    assert_eq!(e.code(), 400);
    // A token older than the retained history is 410 Expired.
    s.compact(s.revision().expect("rev")).expect("compact");
    let e = s
        .list(
            &R::PODS,
            Some("default"),
            &ListOptions {
                limit: 4,
                continue_token: first.continue_token,
                ..ListOptions::default()
            },
        )
        .expect_err("expired");
    assert_eq!((e.code(), e.reason()), (410, "Expired"));
    assert!(
        e.message()
            .starts_with("The provided continue parameter is too old")
    );
}

pub fn watch_resumes_from_a_revision<S: Storage>(storage: S) {
    let mut s = store(storage);
    let a = s
        .create(&R::PODS, Some("default"), pod("a"), &stamp(1))
        .expect("a");
    let from = rv(&a);
    let mut a2 = a.clone();
    a2["metadata"]["labels"] = json!({"x": "1"});
    let a2 = s
        .update(&R::PODS, Some("default"), "a", a2)
        .expect("modify");
    s.create(&R::PODS, Some("other"), pod("elsewhere"), &stamp(2))
        .expect("other ns");
    s.create(
        &R::CONFIG_MAPS,
        Some("default"),
        json!({"metadata": {"name": "c"}}),
        &stamp(3),
    )
    .expect("cm");
    let gone = s
        .delete(
            &R::PODS,
            Some("default"),
            "a",
            &DeleteOptions::default(),
            t(1),
        )
        .expect("delete");
    let opts = WatchOptions {
        resource_version: Some(from.to_string()),
        ..WatchOptions::default()
    };
    let (mut w, initial) = s.watch(&R::PODS, Some("default"), &opts).expect("watch");
    assert!(initial.is_empty());
    let evs = w.catch_up(&s).expect("events");
    let got: Vec<_> = evs.iter().map(|e| (e.kind, rv(&e.object))).collect();
    assert_eq!(
        got,
        [
            (EventType::Modified, rv(&a2)),
            (EventType::Deleted, rv(&gone.object))
        ]
    );
    assert_eq!(evs[0].object["kind"], "Pod");
    assert_eq!(evs[0].to_json()["type"], "MODIFIED");
    // Resuming from the last event's revision sends nothing again; new writes arrive.
    assert!(w.catch_up(&s).expect("again").is_empty());
    let b = s
        .create(&R::PODS, Some("default"), pod("b"), &stamp(4))
        .expect("b");
    let evs = w.catch_up(&s).expect("new");
    assert_eq!(evs.len(), 1);
    assert_eq!(
        (evs[0].kind, rv(&evs[0].object)),
        (EventType::Added, rv(&b))
    );
    // All namespaces.
    let (mut all, _) = s
        .watch(
            &R::PODS,
            None,
            &WatchOptions {
                resource_version: Some(from.to_string()),
                ..WatchOptions::default()
            },
        )
        .expect("watch all");
    assert_eq!(all.catch_up(&s).expect("all").len(), 4);
    // "0" and unset start with the current objects as ADDED.
    let (_, initial) = s
        .watch(
            &R::PODS,
            Some("default"),
            &WatchOptions {
                resource_version: Some("0".into()),
                ..WatchOptions::default()
            },
        )
        .expect("rv 0");
    assert_eq!(
        initial.iter().map(|e| e.kind).collect::<Vec<_>>(),
        [EventType::Added]
    );
}

pub fn watch_follows_selectors<S: Storage>(storage: S) {
    let mut s = store(storage);
    let start = s.revision().expect("rev");
    let filter = Filter::parse(&R::PODS, "app=web", "").expect("filter");
    let opts = WatchOptions {
        filter,
        resource_version: Some(start.to_string()),
        ..WatchOptions::default()
    };
    let (mut w, _) = s.watch(&R::PODS, Some("default"), &opts).expect("watch");
    let p = s
        .create(&R::PODS, Some("default"), pod("p"), &stamp(1))
        .expect("p");
    let mut inn = p.clone();
    inn["metadata"]["labels"] = json!({"app": "web"});
    let inn = s
        .update(&R::PODS, Some("default"), "p", inn)
        .expect("enter");
    let mut tweak = inn.clone();
    tweak["metadata"]["annotations"] = json!({"k": "v"});
    let tweak = s
        .update(&R::PODS, Some("default"), "p", tweak)
        .expect("inside");
    let mut out = tweak.clone();
    out["metadata"]["labels"] = json!({"app": "db"});
    let out = s
        .update(&R::PODS, Some("default"), "p", out)
        .expect("leave");
    s.delete(
        &R::PODS,
        Some("default"),
        "p",
        &DeleteOptions::default(),
        t(1),
    )
    .expect("delete outside");
    let evs = w.catch_up(&s).expect("events");
    let got: Vec<_> = evs.iter().map(|e| e.kind).collect();
    assert_eq!(
        got,
        [EventType::Added, EventType::Modified, EventType::Deleted]
    );
    // Leaving the selector: the object as it was, at the revision it left.
    assert_eq!(evs[2].object["metadata"]["labels"]["app"], "web");
    assert_eq!(rv(&evs[2].object), rv(&out));
}

pub fn watch_too_old_is_expired<S: Storage>(storage: S) {
    let mut s = store(storage);
    let a = s
        .create(&R::PODS, Some("default"), pod("a"), &stamp(1))
        .expect("a");
    let old = rv(&a);
    for i in 0..3 {
        let mut x = s.get(&R::PODS, Some("default"), "a").expect("a");
        x["metadata"]["labels"] = json!({"i": i.to_string()});
        s.update(&R::PODS, Some("default"), "a", x).expect("update");
    }
    let (mut lagging, _) = s
        .watch(
            &R::PODS,
            Some("default"),
            &WatchOptions {
                resource_version: Some(old.to_string()),
                ..WatchOptions::default()
            },
        )
        .expect("watch");
    let head = s.revision().expect("rev");
    s.compact(head - 1).expect("compact");
    let e = s
        .watch(
            &R::PODS,
            Some("default"),
            &WatchOptions {
                resource_version: Some(old.to_string()),
                ..WatchOptions::default()
            },
        )
        .expect_err("too old");
    assert_eq!((e.code(), e.reason()), (410, "Expired"));
    assert_eq!(
        e.message(),
        format!("too old resource version: {old} ({})", head - 1)
    );
    // A watch already open that fell behind the window gets the same.
    let e = lagging.catch_up(&s).expect_err("lagging");
    assert_eq!(e.code(), 410);
    let ev = crate::watch::WatchEvent::error(&e).to_json();
    assert_eq!(ev["type"], "ERROR");
    assert_eq!(ev["object"]["code"], 410);
    // From inside the window it still works.
    let (mut w, _) = s
        .watch(
            &R::PODS,
            Some("default"),
            &WatchOptions {
                resource_version: Some((head - 1).to_string()),
                ..WatchOptions::default()
            },
        )
        .expect("in window");
    assert_eq!(w.catch_up(&s).expect("events").len(), 1);
    let e = s
        .watch(
            &R::PODS,
            Some("default"),
            &WatchOptions {
                resource_version: Some("abc".into()),
                ..WatchOptions::default()
            },
        )
        .expect_err("not a number");
    assert_eq!(e.code(), 400);
}

pub fn watch_list_initial_events<S: Storage>(storage: S) {
    let mut s = store(storage);
    labelled(&mut s);
    let filter = Filter::parse(&R::PODS, "app=web", "").expect("filter");
    let opts = WatchOptions {
        filter,
        send_initial_events: Some(true),
        resource_version_match: Some("NotOlderThan".into()),
        allow_bookmarks: true,
        ..WatchOptions::default()
    };
    let (mut w, initial) = s
        .watch(&R::PODS, Some("default"), &opts)
        .expect("watch-list");
    let kinds: Vec<_> = initial.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [EventType::Added, EventType::Added, EventType::Bookmark]
    );
    let mark = &initial[2].object;
    assert_eq!(mark["metadata"]["annotations"][INITIAL_EVENTS_END], "true");
    assert_eq!(mark["kind"], "Pod");
    assert_eq!(rv(mark), s.revision().expect("rev"));
    assert!(w.catch_up(&s).expect("nothing new").is_empty());
    let e = s
        .watch(
            &R::PODS,
            Some("default"),
            &WatchOptions {
                send_initial_events: Some(true),
                allow_bookmarks: true,
                ..WatchOptions::default()
            },
        )
        .expect_err("no match");
    assert_eq!(e.code(), 422);
    assert_eq!(
        e.message(),
        "ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan"
    );
    // Without bookmarks the initial events end without the marking bookmark.
    let (_, initial) = s
        .watch(
            &R::PODS,
            Some("default"),
            &WatchOptions {
                send_initial_events: Some(true),
                resource_version_match: Some("NotOlderThan".into()),
                ..WatchOptions::default()
            },
        )
        .expect("no bookmarks");
    assert!(initial.iter().all(|e| e.kind == EventType::Added));
    let e = s
        .watch(
            &R::PODS,
            Some("default"),
            &WatchOptions {
                send_initial_events: Some(true),
                resource_version_match: Some("Exact".into()),
                ..WatchOptions::default()
            },
        )
        .expect_err("exact");
    assert_eq!(
        e.message(),
        "ListOptions.meta.k8s.io \"\" is invalid: [resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan, resourceVersionMatch: Unsupported value: \"Exact\": supported values: \"NotOlderThan\"]"
    );
    let e = s
        .watch(
            &R::PODS,
            Some("default"),
            &WatchOptions {
                resource_version_match: Some("NotOlderThan".into()),
                ..WatchOptions::default()
            },
        )
        .expect_err("match without sendInitialEvents");
    assert_eq!(
        e.message(),
        "ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided"
    );
}

pub fn bookmarks<S: Storage>(storage: S) {
    let mut s = store(storage);
    let head = s.revision().expect("rev").to_string();
    let (mut w, _) = s
        .watch(
            &R::PODS,
            Some("default"),
            &WatchOptions {
                resource_version: Some(head.clone()),
                allow_bookmarks: true,
                ..WatchOptions::default()
            },
        )
        .expect("watch");
    // Writes elsewhere move the bookmark forward without events for this watch.
    s.create(
        &R::CONFIG_MAPS,
        Some("default"),
        json!({"metadata": {"name": "c"}}),
        &stamp(1),
    )
    .expect("cm");
    assert!(w.catch_up(&s).expect("events").is_empty());
    let b = w.bookmark().expect("allowed");
    assert_eq!(b.kind, EventType::Bookmark);
    assert_eq!(rv(&b.object), s.revision().expect("rev"));
    assert_eq!(b.object["apiVersion"], "v1");
    let (w, _) = s
        .watch(
            &R::PODS,
            Some("default"),
            &WatchOptions {
                resource_version: Some(head),
                ..WatchOptions::default()
            },
        )
        .expect("watch");
    assert!(w.bookmark().is_none(), "not asked for");
}

pub fn compaction_keeps_live_objects<S: Storage>(storage: S) {
    let mut s = store(storage);
    for i in 0..5u32 {
        s.create(&R::PODS, Some("default"), pod(&format!("p{i}")), &stamp(i))
            .expect("pod");
    }
    for _ in 0..3 {
        let mut p = s.get(&R::PODS, Some("default"), "p1").expect("p1");
        p["metadata"]["labels"] = json!({"r": rv(&p).to_string()});
        s.update(&R::PODS, Some("default"), "p1", p)
            .expect("update");
    }
    s.delete(
        &R::PODS,
        Some("default"),
        "p2",
        &DeleteOptions::default(),
        t(1),
    )
    .expect("delete");
    let before = s
        .list(&R::PODS, Some("default"), &ListOptions::default())
        .expect("list");
    let head = s.revision().expect("rev");
    s.compact(head).expect("compact");
    assert_eq!(s.compacted().expect("compacted"), head);
    let after = s
        .list(&R::PODS, Some("default"), &ListOptions::default())
        .expect("list");
    assert_eq!(after.items, before.items);
    assert_eq!(s.revision().expect("rev"), head);
    // Revisions keep increasing after compaction.
    let n = s
        .create(&R::PODS, Some("default"), pod("p2"), &stamp(9))
        .expect("again");
    assert_eq!(rv(&n), head + 1);
    let e = s
        .list(
            &R::PODS,
            Some("default"),
            &ListOptions {
                exact_revision: Some(head - 1),
                ..ListOptions::default()
            },
        )
        .expect_err("before the window");
    assert_eq!(e.code(), 410);
    let e = s
        .list(
            &R::PODS,
            Some("default"),
            &ListOptions {
                exact_revision: Some(head + 10),
                ..ListOptions::default()
            },
        )
        .expect_err("future");
    assert_eq!((e.code(), e.reason()), (504, "Timeout"));
}

pub fn garbage_collection_order<S: Storage>(storage: S) {
    let mut s = store(storage);
    let d = s
        .create(
            &R::DEPLOYMENTS,
            Some("default"),
            json!({"metadata": {"name": "d"}, "spec": {}}),
            &stamp(1),
        )
        .expect("d");
    let owner = |o: &Value, kind: &str, block: bool| json!([{"apiVersion": "apps/v1", "kind": kind, "name": o["metadata"]["name"], "uid": o["metadata"]["uid"], "controller": true, "blockOwnerDeletion": block}]);
    let rs = s
        .create(&R::REPLICA_SETS, Some("default"), json!({"metadata": {"name": "rs", "ownerReferences": owner(&d, "Deployment", true)}, "spec": {}}), &stamp(2))
        .expect("rs");
    for i in 0..2u32 {
        let mut p = pod(&format!("p{i}"));
        p["metadata"]["ownerReferences"] = owner(&rs, "ReplicaSet", true);
        s.create(&R::PODS, Some("default"), p, &stamp(3 + i))
            .expect("pod");
    }
    let all = |s: &Store<S>| -> Vec<Value> {
        let mut v = s
            .list(&R::DEPLOYMENTS, None, &ListOptions::default())
            .expect("d")
            .items;
        v.extend(
            s.list(&R::REPLICA_SETS, None, &ListOptions::default())
                .expect("rs")
                .items,
        );
        v.extend(
            s.list(&R::PODS, None, &ListOptions::default())
                .expect("pods")
                .items,
        );
        v
    };
    let objs = all(&s);
    let uid = |o: &Value| o["metadata"]["uid"].as_str().expect("uid").to_string();
    let (du, rsu) = (uid(&d), uid(&rs));
    assert_eq!(gc::dependents(&du, &objs).len(), 1);
    assert_eq!(gc::dependents(&rsu, &objs).len(), 2);
    let bg = gc::cascade_order(&du, &objs, Propagation::Background);
    let fg = gc::cascade_order(&du, &objs, Propagation::Foreground);
    assert_eq!(bg[0], du, "background: the owner goes first");
    assert_eq!(bg[1], rsu);
    assert_eq!(fg.last(), Some(&du), "foreground: the owner goes last");
    assert_eq!(fg[2], rsu, "after the pods, before the deployment");
    assert_eq!(
        gc::cascade_order(&du, &objs, Propagation::Orphan),
        std::slice::from_ref(&du)
    );
    for o in &objs {
        assert_eq!(gc::decide(o, &objs), GcAction::Keep);
    }
    // Foreground: the deployment waits for its blocking ReplicaSet, which follows.
    let opts = DeleteOptions {
        propagation: Propagation::Foreground,
        ..DeleteOptions::default()
    };
    s.delete(&R::DEPLOYMENTS, Some("default"), "d", &opts, t(1))
        .expect("foreground");
    let objs = all(&s);
    let find = |objs: &[Value], n: &str| {
        objs.iter()
            .find(|o| o["metadata"]["name"] == n)
            .cloned()
            .expect(n)
    };
    assert_eq!(gc::decide(&find(&objs, "d"), &objs), GcAction::Keep);
    assert_eq!(
        gc::decide(&find(&objs, "rs"), &objs),
        GcAction::Delete(Propagation::Foreground)
    );
    // Background: the owner is gone; its dependents are garbage.
    s.delete(
        &R::REPLICA_SETS,
        Some("default"),
        "rs",
        &DeleteOptions::default(),
        t(2),
    )
    .expect("rs");
    let objs = all(&s);
    assert_eq!(
        gc::decide(&find(&objs, "p0"), &objs),
        GcAction::Delete(Propagation::Background)
    );
    assert_eq!(
        gc::decide(&find(&objs, "d"), &objs),
        GcAction::RemoveFinalizer("foregroundDeletion")
    );
    // An object whose owners are gone or waiting is deleted; one that another owner
    // still holds only drops the dangling and waiting references.
    let mut two = pod("two");
    two["metadata"]["ownerReferences"] = json!([
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": "gone-uid"},
        {"apiVersion": "apps/v1", "kind": "Deployment", "name": "d", "uid": du},
    ]);
    let mut objs = objs;
    objs.push(two.clone());
    assert_eq!(
        gc::decide(&two, &objs),
        GcAction::Delete(Propagation::Background)
    );
    let holder = json!({"metadata": {"name": "holder", "uid": "holder-uid"}});
    two["metadata"]["ownerReferences"]
        .as_array_mut()
        .expect("refs")
        .push(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "name": "holder", "uid": "holder-uid"}),
        );
    objs.push(holder);
    assert_eq!(
        gc::decide(&two, &objs),
        GcAction::DropOwners(vec!["gone-uid".into(), du.clone()])
    );
    // Orphan: the dependents are released before the owner goes.
    let o = s
        .create(
            &R::CONFIG_MAPS,
            Some("default"),
            json!({"metadata": {"name": "o"}}),
            &stamp(20),
        )
        .expect("owner");
    let mut dep = pod("dep");
    dep["metadata"]["ownerReferences"] = owner(&o, "ConfigMap", false);
    s.create(&R::PODS, Some("default"), dep, &stamp(21))
        .expect("dep");
    let opts = DeleteOptions {
        propagation: Propagation::Orphan,
        ..DeleteOptions::default()
    };
    let marked = s
        .delete(&R::CONFIG_MAPS, Some("default"), "o", &opts, t(3))
        .expect("orphan")
        .object;
    let mut objs = all(&s);
    objs.push(marked.clone());
    assert!(matches!(gc::decide(&marked, &objs), GcAction::Orphan(d) if d.len() == 1));
}

pub fn namespaces_terminate<S: Storage>(storage: S) {
    let mut s = store(storage);
    let ns = s.get(&R::NAMESPACES, None, "other").expect("ns");
    assert_eq!(
        ns["metadata"]["labels"]["kubernetes.io/metadata.name"],
        "other"
    );
    assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));
    assert_eq!(ns["status"]["phase"], "Active");
    assert!(ns["metadata"].get("namespace").is_none());
    let d = s
        .delete(
            &R::NAMESPACES,
            None,
            "other",
            &DeleteOptions::default(),
            t(1),
        )
        .expect("delete");
    assert!(!d.gone);
    assert_eq!(d.object["status"]["phase"], "Terminating");
    let mut fin = d.object.clone();
    fin["spec"]["finalizers"] = json!([]);
    s.update(&R::NAMESPACES, None, "other", fin)
        .expect("finalize");
    assert_eq!(
        s.get(&R::NAMESPACES, None, "other")
            .expect_err("gone")
            .code(),
        404
    );
}

pub fn typed_access<S: Storage>(storage: S) {
    let mut s = store(storage);
    let mut p = Pod::default();
    p.metadata.name = Some("typed".into());
    let created: Pod = s.create_as(Some("default"), &p, &stamp(1)).expect("create");
    assert_eq!(
        created.metadata.uid.as_deref(),
        Some("00000000-0000-4000-8000-000000000001")
    );
    let got: Pod = s.get_as(Some("default"), "typed").expect("get");
    assert_eq!(
        got.metadata.resource_version,
        created.metadata.resource_version
    );
    let (rev, pods) = s
        .list_as::<Pod>(Some("default"), &ListOptions::default())
        .expect("list");
    assert_eq!(rev, s.revision().expect("rev"));
    assert_eq!(pods.len(), 1);
    let mut upd = got;
    upd.metadata.labels = Some([("a".to_string(), "b".to_string())].into());
    let upd: Pod = s.update_as(Some("default"), "typed", &upd).expect("update");
    assert_eq!(upd.metadata.labels.expect("labels")["a"], "b");
}

pub fn seeded_defaults<S: Storage>(storage: S) {
    let mut s = Store::new(storage);
    let mut n = 0;
    let mut next = || {
        n += 1;
        stamp(n)
    };
    s.seed_defaults(&mut next).expect("seed");
    let head = s.revision().expect("rev");
    s.seed_defaults(&mut next).expect("seed again");
    assert_eq!(
        s.revision().expect("rev"),
        head,
        "a second seed writes nothing"
    );
    let ns = s
        .list(&R::NAMESPACES, None, &ListOptions::default())
        .expect("namespaces");
    assert_eq!(
        names(&ns.items),
        ["default", "kube-node-lease", "kube-public", "kube-system"]
    );
    let sa = s
        .list(&R::SERVICE_ACCOUNTS, None, &ListOptions::default())
        .expect("service accounts");
    assert_eq!(sa.items.len(), 4);
    assert!(sa.items.iter().all(|a| a["metadata"]["name"] == "default"));
}
