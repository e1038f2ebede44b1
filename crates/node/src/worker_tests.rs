//! The worker loop driven with fakes: containers that follow scripts on tokio's paused
//! clock, an in-memory status sink. No root, no processes, no real waiting.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use podrun_testkit::pod::{container, epoch, pod};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

use super::{Clock, Outlet, Timeline, Worker};
use crate::events::Recorder;
use crate::fakes::{FakeRuntime, FakeSink, Journal, Script};
use crate::objects::ObjectKey;
use crate::{NodeEvent, PodCommand};

const S: Duration = Duration::from_secs(1);

/// One pod's worker, running on fakes.
struct Run {
    sink: FakeSink,
    journal: Journal,
    commands: mpsc::UnboundedSender<PodCommand>,
    events: broadcast::Receiver<NodeEvent>,
    done: JoinHandle<Pod>,
    _dir: tempfile::TempDir,
}

impl Run {
    fn start(pod: Pod, scripts: &[(&str, Script)]) -> Run {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let sink = FakeSink::with(&pod);
        let journal = Journal::default();
        let (runtime, inputs) = FakeRuntime::new(scripts, journal.clone());
        let (commands, rx) = mpsc::unbounded_channel();
        let (events_tx, events) = broadcast::channel(1024);
        let outlet = Outlet {
            sink: Arc::new(sink.clone()),
            events: events_tx,
            clock: Clock::following_tokio(epoch()),
        };
        let worker = Worker {
            recorder: Recorder::open(dir.path(), &pod),
            timeline: Timeline::open(dir.path()),
            pod,
            runtime,
            inputs,
            commands: rx,
            outlet: outlet.clone(),
        };
        let done = tokio::spawn(async move {
            let pod = worker.run().await;
            outlet.finish(&pod);
            pod
        });
        Run {
            sink,
            journal,
            commands,
            events,
            done,
            _dir: dir,
        }
    }

    fn delete(&self, grace_period_seconds: Option<i64>) {
        let sent = self.commands.send(PodCommand::Delete {
            grace_period_seconds,
        });
        assert!(sent.is_ok(), "the worker takes commands until it ends");
    }

    /// The worker's end, within `limit` of tokio's (paused) time.
    async fn finished(self, limit: Duration) -> (Pod, FakeSink, Journal) {
        let Ok(pod) = tokio::time::timeout(limit, self.done).await else {
            panic!("the worker did not end in time: {:?}", self.journal.lines());
        };
        let pod = pod.expect("the worker does not panic");
        (pod, self.sink, self.journal)
    }
}

fn phase(pod: &Pod) -> Option<&str> {
    pod.status.as_ref()?.phase.as_deref()
}

fn key() -> ObjectKey {
    ObjectKey::new("default", "web")
}

#[tokio::test(start_paused = true)]
async fn deletion_while_the_pod_starts_cancels_the_start_and_ends_the_pod() {
    let web = pod("web")
        .grace(5)
        .restart_policy("Never")
        .container(container("main"))
        .build();
    // The start waits 10 s (a pull, say); the deletion comes after 1 s.
    let run = Run::start(web, &[("main", Script::serves().starting_in(10 * S))]);
    tokio::time::sleep(S).await;
    run.delete(None);
    let (pod, sink, journal) = run.finished(3 * S).await;

    assert!(
        !journal.lines().contains(&"started main".to_string()),
        "{:?}",
        journal.lines()
    );
    assert_eq!(pod.metadata.deletion_grace_period_seconds, Some(5));
    let writes = sink.writes();
    assert!(writes.last().is_some_and(|w| w.deleting), "{writes:?}");
    assert_eq!(sink.removed(), [(key(), "uid-web".to_string())]);
    assert!(sink.stored(&key()).is_none(), "the final delete removed it");
}

#[tokio::test(start_paused = true)]
async fn deletion_of_a_started_pod_kills_it_when_its_grace_period_ends() {
    let web = pod("web").grace(30).container(container("main")).build();
    let run = Run::start(web, &[("main", Script::serves().ignoring_term())]);
    tokio::time::sleep(S).await;
    // The request's grace period wins over the pod's 30 s.
    run.delete(Some(5));
    let (pod, sink, journal) = run.finished(60 * S).await;

    let term = journal.at("term main").expect("SIGTERM sent");
    let kill = journal.at("kill main").expect("SIGKILL sent");
    assert_eq!(term, S, "SIGTERM as the deletion arrives");
    assert_eq!(kill - term, 5 * S, "SIGKILL when the 5 s grace period ends");
    assert_eq!(
        journal.lines(),
        [
            "start main",
            "started main",
            "term main",
            "kill main",
            "exited main 137",
            "teardown"
        ]
    );
    assert_eq!(pod.metadata.deletion_grace_period_seconds, Some(5));
    assert!(
        matches!(phase(&pod), Some("Failed" | "Succeeded")),
        "{pod:?}"
    );
    assert_eq!(sink.removed().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_pod_removed_outright_is_stopped_at_once_with_only_the_minimum_grace() {
    let web = pod("web")
        .grace(30)
        .container(container("main"))
        .container(container("stubborn"))
        .build();
    let run = Run::start(
        web,
        &[
            ("main", Script::serves()),
            ("stubborn", Script::serves().ignoring_term()),
        ],
    );
    tokio::time::sleep(2 * S).await;
    // What the source turns a DELETED event into: grace period 0, not the pod's 30 s.
    run.delete(Some(0));
    let (_, sink, journal) = run.finished(10 * S).await;

    let lines = journal.lines();
    assert_eq!(journal.at("term main"), Some(2 * S), "{lines:?}");
    assert_eq!(journal.at("exited main 143"), Some(2 * S), "{lines:?}");
    assert_eq!(journal.at("term stubborn"), Some(2 * S), "{lines:?}");
    // The kubelet's minimumGracePeriodInSeconds (2 s) is all a stop signal gets.
    assert_eq!(journal.at("kill stubborn"), Some(4 * S), "{lines:?}");
    assert!(journal.at("kill main").is_none(), "{lines:?}");
    assert_eq!(sink.removed().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn status_writes_come_in_order_and_the_last_is_the_terminal_phase() {
    let job = pod("web")
        .restart_policy("Never")
        .container(container("main"))
        .build();
    let mut run = Run::start(job, &[("main", Script::exits(3 * S, 0))]);
    let mut announced = Vec::new();
    let mut events = std::mem::replace(&mut run.events, broadcast::channel(1).1);
    let (pod, sink, journal) = run.finished(10 * S).await;
    while let Ok(NodeEvent::Pod(p)) = events.try_recv() {
        announced.push(phase(&p).map(str::to_string));
    }

    assert_eq!(journal.at("exited main 0"), Some(3 * S));
    let phases: Vec<Option<String>> = sink.writes().into_iter().map(|w| w.phase).collect();
    assert_eq!(phases, announced, "subscribers hear each write, in order");
    let rank = |p: &Option<String>| match p.as_deref() {
        Some("Pending") => 0,
        Some("Running") => 1,
        _ => 2,
    };
    assert!(
        phases.windows(2).all(|w| rank(&w[0]) <= rank(&w[1])),
        "{phases:?}"
    );
    assert!(phases.contains(&Some("Running".into())), "{phases:?}");
    assert_eq!(phases.last(), Some(&Some("Succeeded".to_string())));
    assert_eq!(phase(&pod), Some("Succeeded"));
    let stored = sink.stored(&key()).expect("a finished pod stays");
    assert_eq!(phase(&stored), Some("Succeeded"));
    assert!(sink.removed().is_empty(), "only a deleted pod is removed");
}

#[tokio::test(start_paused = true)]
async fn a_status_write_that_loses_a_race_is_written_again_over_the_latest_object() {
    let job = pod("web")
        .restart_policy("Never")
        .container(container("main"))
        .build();
    let run = Run::start(job, &[("main", Script::exits(3 * S, 0))]);
    // The first write loses twice to another writer.
    run.sink.lose_next(2);
    let (_, sink, _) = run.finished(10 * S).await;

    assert_eq!(sink.conflicts(), 2);
    let writes = sink.writes();
    assert!(
        writes[0].precondition.is_some(),
        "the retry is conditional on the latest object: {writes:?}"
    );
    assert!(
        writes[1..].iter().all(|w| w.precondition.is_none()),
        "later writes are unconditional: {writes:?}"
    );
    let stored = sink.stored(&key()).expect("stored");
    assert_eq!(phase(&stored), Some("Succeeded"));
    let labels = stored.metadata.labels.unwrap_or_default();
    assert!(
        labels.contains_key("touched"),
        "the other writer's change stays"
    );
}

#[tokio::test(start_paused = true)]
async fn a_status_write_that_keeps_losing_gives_up_and_the_worker_goes_on() {
    let job = pod("web")
        .restart_policy("Never")
        .container(container("main"))
        .build();
    let run = Run::start(job, &[("main", Script::exits(3 * S, 0))]);
    // Every try of the first write loses.
    run.sink.lose_next(6);
    let (pod, sink, _) = run.finished(10 * S).await;

    assert_eq!(sink.conflicts(), 6, "a bounded number of tries");
    assert_ne!(
        sink.writes().first().and_then(|w| w.phase.as_deref()),
        Some("Pending"),
        "the first write was given up"
    );
    assert_eq!(phase(&pod), Some("Succeeded"));
    let stored = sink.stored(&key()).expect("stored");
    assert_eq!(phase(&stored), Some("Succeeded"), "later writes land");
}
