//! The source → worker dispatch driven with an in-memory source whose watch can be
//! lost, and workers that record what they are asked.

use std::time::Duration;

use serde_json::{Value, json};

use super::follow;
use crate::fakes::{Asked, FakeSource, FakeWorkers};

fn unbound(name: &str, uid: &str) -> Value {
    json!({"metadata": {"name": name, "namespace": "default", "uid": uid},
           "spec": {"containers": [{"name": "main", "image": "busybox"}]},
           "status": {"phase": "Pending"}})
}

fn deleting(mut pod: Value, grace: i64) -> Value {
    pod["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z".into();
    pod["metadata"]["deletionGracePeriodSeconds"] = grace.into();
    pod
}

/// Lets the follower run until `done` holds (bounded: tokio's clock is paused, so the
/// steps cost no real time).
async fn until(what: &str, done: impl Fn() -> bool) {
    for _ in 0..200 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never happened: {what}");
}

fn start(source: &FakeSource, workers: &FakeWorkers) -> tokio::task::JoinHandle<()> {
    let w = workers.clone();
    tokio::spawn(follow(source.clone(), move || Some(w.clone())))
}

#[tokio::test(start_paused = true)]
async fn listed_and_watched_pods_are_bound_and_their_deletion_reaches_the_worker() {
    let source = FakeSource::default();
    let workers = FakeWorkers::default();
    source.apply(unbound("a", "uid-a"));
    let follower = start(&source, &workers);
    until("a watch is open", || source.watching()).await;
    source.apply(unbound("b", "uid-b"));
    source.apply(deleting(unbound("a", "uid-a"), 7));
    source.remove("default", "b");
    until("both deletions are passed on", || {
        workers.asked().len() == 4
    })
    .await;
    assert_eq!(
        workers.asked(),
        [
            Asked::Bind("a".into()),
            Asked::Bind("b".into()),
            Asked::Delete("a".into(), Some(7)),
            Asked::Delete("b".into(), Some(0)),
        ]
    );
    follower.abort();
}

#[tokio::test(start_paused = true)]
async fn a_lost_watch_is_relisted_and_a_removal_while_it_was_down_is_not_missed() {
    let source = FakeSource::default();
    let workers = FakeWorkers::default();
    source.apply(unbound("a", "uid-a"));
    source.apply(unbound("b", "uid-b"));
    source.apply(unbound("c", "uid-c"));
    let follower = start(&source, &workers);
    until("a watch is open", || source.watching()).await;
    assert_eq!(workers.asked().len(), 3);

    // The watch is lost; while nobody watches, `a` is removed outright and `b` is
    // removed and created again under a new uid.
    source.break_watch();
    source.remove("default", "a");
    source.remove("default", "b");
    source.apply(unbound("b", "uid-b2"));
    until("the source is listed again", || source.lists() == 2).await;
    until("a watch is open again", || source.watching()).await;

    let after: Vec<Asked> = workers.asked().split_off(3);
    assert!(
        after.contains(&Asked::Delete("a".into(), Some(0))),
        "{after:?}"
    );
    assert!(
        after.contains(&Asked::Delete("b".into(), Some(0))),
        "{after:?}"
    );
    assert!(
        !after
            .iter()
            .any(|a| matches!(a, Asked::Delete(n, _) if n == "c")),
        "{after:?}"
    );
    follower.abort();
}

#[tokio::test(start_paused = true)]
async fn the_follower_stops_when_the_node_is_gone() {
    let source = FakeSource::default();
    source.apply(unbound("a", "uid-a"));
    let follower = tokio::spawn(follow(source.clone(), || None::<FakeWorkers>));
    tokio::time::timeout(Duration::from_secs(1), follower)
        .await
        .expect("ends at once")
        .expect("no panic");
    assert_eq!(source.lists(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_source_lists_then_watches_from_the_revision_of_its_list() {
    use crate::objects::{ObjectKey, Resource, Store};
    use crate::source::{PodSource, StorePodSource};
    use futures::StreamExt;
    use podrun_store::EventType;
    use podrun_testkit::pod::{container, pod};

    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = Store::open(dir.path()).expect("store");
    let create = |name: &str| {
        let mut p = pod(name).container(container("main")).build();
        p.metadata.uid = None;
        p.metadata.creation_timestamp = None;
        store.create(Resource::PODS, &mut p).expect("created");
    };
    create("a");
    let source = StorePodSource(store.sqlite().clone());
    let (pods, revision) = source.list().expect("listed");
    let names: Vec<&str> = pods.iter().map(podrun_store::object::name).collect();
    assert_eq!(names, ["a"]);

    // Written after the list: the watch from its revision sees exactly these.
    create("b");
    store
        .delete(Resource::PODS, &ObjectKey::new("default", "a"), Some(0))
        .expect("deleted");
    let mut watch = source.watch(revision).expect("watching");
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let event = tokio::time::timeout(Duration::from_secs(5), watch.next())
            .await
            .expect("an event in time")
            .expect("the watch goes on");
        seen.push((
            event.kind,
            podrun_store::object::name(&event.object).to_string(),
        ));
    }
    assert_eq!(
        seen,
        [
            (EventType::Added, "b".to_string()),
            (EventType::Deleted, "a".to_string())
        ]
    );
}
