//! Kubernetes 1.37 restart rules and `RestartAllContainers` on real processes, in the
//! style of upstream's node e2e harness: every container appends `name Starting`,
//! `name Started` / `name Exiting` lines with a timestamp to a log in a shared emptyDir,
//! and counts its own earlier runs there to decide what this run does.
//!
//! These tests need root (pods run in their own PID and mount namespaces) and fail
//! loudly without it.

mod lifecycle_harness;

use k8s_openapi::api::core::v1::Pod;
use lifecycle_harness::{
    Harness, container_yaml, first_run_exits, lines, only, pos, running_with, sleeps, statuses,
};

fn pod_yaml(name: &str, init: &str, sidecars_and_inits: bool, containers: &str) -> String {
    let inits = if sidecars_and_inits {
        format!("  initContainers:\n{init}")
    } else {
        String::new()
    };
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  restartPolicy: Never\n  terminationGracePeriodSeconds: 30\n  volumes: [{{name: shared, emptyDir: {{}}}}]\n{inits}  containers:\n{containers}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_rule_restarts_a_container_only_on_the_matching_exit_code() {
    let mut h = Harness::new();
    let rule = "    restartPolicy: Never\n    restartPolicyRules: [{action: Restart, exitCodes: {operator: In, values: [42]}}]\n";
    let body = "if [ \"$RUN\" = 0 ]; then echo \"restarter Exiting $(date +%s.%N)\" >> $LOG; exit 42; fi; \
                echo \"restarter Exiting $(date +%s.%N)\" >> $LOG; exit 1";
    let yaml = pod_yaml(
        "rule-42",
        "",
        false,
        &container_yaml("restarter", rule, body),
    );
    let pod = h.create(&yaml);
    let done = h
        .wait_for("rule-42", "pod failed", |p| {
            p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed")
        })
        .await;
    assert_eq!(
        lines(&h.log(&pod)),
        [
            "restarter Starting",
            "restarter Exiting",
            "restarter Starting",
            "restarter Exiting"
        ]
    );
    let st = &statuses(&done, false)[0];
    assert_eq!(st.restart_count, 1);
    let t = st.state.clone().unwrap().terminated.unwrap();
    assert_eq!((t.exit_code, t.reason.as_deref()), (1, Some("Error")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_all_containers_from_a_regular_container() {
    let mut h = Harness::new();
    let rule = "    restartPolicy: Never\n    restartPolicyRules: [{action: RestartAllContainers, exitCodes: {operator: In, values: [42]}}]\n";
    let init = container_yaml("init", "", "echo \"init Exiting $(date +%s.%N)\" >> $LOG");
    let containers = container_yaml("trigger", rule, &first_run_exits("trigger", 42))
        + &container_yaml("worker", "", &sleeps("worker"));
    let pod = h.create(&pod_yaml("restart-all", &init, true, &containers));
    let done = h
        .wait_for("restart-all", "both containers running again", |p| {
            running_with(p, false, "trigger", 1) && running_with(p, false, "worker", 1)
        })
        .await;
    let log = h.log_lines(&pod, 12).await;
    let seq = lines(&log);
    // Per container, and across: the whole first round, the trigger's exit, then the
    // init container again before any regular container of the second round.
    assert_eq!(
        only(&seq, "trigger"),
        [
            "trigger Starting",
            "trigger Exiting",
            "trigger Starting",
            "trigger Started"
        ]
    );
    assert_eq!(
        only(&seq, "worker"),
        [
            "worker Starting",
            "worker Started",
            "worker Starting",
            "worker Started"
        ]
    );
    assert_eq!(
        only(&seq, "init"),
        [
            "init Starting",
            "init Exiting",
            "init Starting",
            "init Exiting"
        ]
    );
    let exit = pos(&seq, "trigger Exiting", 0);
    let init_again = pos(&seq, "init Starting", 1);
    let second_init_done = pos(&seq, "init Exiting", 1);
    assert!(pos(&seq, "worker Started", 0) < exit, "{seq:?}");
    assert!(exit < init_again, "{seq:?}");
    assert!(
        second_init_done < pos(&seq, "trigger Starting", 1),
        "{seq:?}"
    );
    assert!(
        second_init_done < pos(&seq, "worker Starting", 1),
        "{seq:?}"
    );
    // The worker (a shell as PID 1 ignoring SIGTERM) was killed after the 2 s floor,
    // without its grace period; the pod then started again from its init container.
    let gap = log[init_again].2 - log[exit].2;
    assert!(
        (1.5..6.0).contains(&gap),
        "restart began {gap:.2}s after the trigger"
    );
    // Same sandbox: the emptyDir kept the first round's lines; counts and lastState.
    assert_eq!(statuses(&done, true)[0].restart_count, 1);
    for st in statuses(&done, false) {
        let last = st.last_state.unwrap().terminated.unwrap();
        assert_eq!(last.reason.as_deref(), Some("RestartingAllContainers"));
        assert_eq!(last.exit_code, 137);
    }
    assert_eq!(
        done.status.as_ref().unwrap().phase.as_deref(),
        Some("Running")
    );
    h.delete("restart-all").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_all_containers_from_a_sidecar() {
    let mut h = Harness::new();
    // The startup probe makes "started" mean "has logged Started", so main's lines
    // come after the sidecar's in each round.
    let rule = "    restartPolicy: Always\n    restartPolicyRules: [{action: RestartAllContainers, exitCodes: {operator: In, values: [7]}}]\n    startupProbe: {exec: {command: [test, -e, /shared/started]}, periodSeconds: 1, failureThreshold: 30}\n";
    // The marker exists only while an instance that logged `Started` runs; the first
    // instance keeps it until main has logged its start, so the probe's timing on a busy
    // machine cannot make it exit before main ever ran.
    let body = "echo \"sidecar Started $(date +%s.%N)\" >> $LOG; touch /shared/started; \
                if [ \"$RUN\" = 0 ]; then until grep -q 'main Started' $LOG; do sleep 0.1; done; \
                rm -f /shared/started; \
                echo \"sidecar Exiting $(date +%s.%N)\" >> $LOG; exit 7; fi; \
                exec sleep 1000";
    let sidecar = container_yaml("sidecar", rule, body);
    let containers = container_yaml("main", "", &sleeps("main"));
    let pod = h.create(&pod_yaml("restart-all-sc", &sidecar, true, &containers));
    h.wait_for("restart-all-sc", "sidecar and main running again", |p| {
        running_with(p, true, "sidecar", 1) && running_with(p, false, "main", 1)
    })
    .await;
    let seq = lines(&h.log_lines(&pod, 9).await);
    assert_eq!(
        only(&seq, "sidecar"),
        [
            "sidecar Starting",
            "sidecar Started",
            "sidecar Exiting",
            "sidecar Starting",
            "sidecar Started"
        ]
    );
    assert_eq!(
        only(&seq, "main"),
        [
            "main Starting",
            "main Started",
            "main Starting",
            "main Started"
        ]
    );
    // In both rounds main starts after the sidecar started, and the second round only
    // after the sidecar's exit.
    assert!(pos(&seq, "sidecar Started", 0) < pos(&seq, "main Starting", 0));
    assert!(pos(&seq, "sidecar Exiting", 0) < pos(&seq, "sidecar Starting", 1));
    assert!(pos(&seq, "sidecar Started", 1) < pos(&seq, "main Starting", 1));
    h.delete("restart-all-sc").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_all_containers_from_an_init_container() {
    let mut h = Harness::new();
    let rule = "    restartPolicy: Never\n    restartPolicyRules: [{action: RestartAllContainers, exitCodes: {operator: In, values: [42]}}]\n";
    let inits = container_yaml("first", "", "echo \"first Exiting $(date +%s.%N)\" >> $LOG")
        + &container_yaml(
            "second",
            rule,
            "echo \"second Exiting $(date +%s.%N)\" >> $LOG; [ \"$RUN\" = 0 ] && exit 42; exit 0",
        );
    let containers = container_yaml("main", "", &sleeps("main"));
    let pod = h.create(&pod_yaml("restart-all-init", &inits, true, &containers));
    let done = h
        .wait_for("restart-all-init", "main running", |p| {
            running_with(p, false, "main", 0)
        })
        .await;
    assert_eq!(
        lines(&h.log_lines(&pod, 10).await),
        [
            "first Starting",
            "first Exiting",
            "second Starting",
            "second Exiting",
            "first Starting",
            "first Exiting",
            "second Starting",
            "second Exiting",
            "main Starting",
            "main Started",
        ]
    );
    let inits = statuses(&done, true);
    assert_eq!((inits[0].restart_count, inits[1].restart_count), (1, 1));
    h.delete("restart-all-init").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_policy_overrides_the_pod_policy_both_ways() {
    let mut h = Harness::new();
    // Own Never in an Always pod: not restarted, the pod ends Failed.
    let never = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: own-never\nspec:\n  restartPolicy: Always\n  containers:\n  - {name: main, image: busybox, restartPolicy: Never, command: [sh, -c, 'exit 1']}\n";
    h.create(never);
    let done = h
        .wait_for("own-never", "pod failed", |p| {
            p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed")
        })
        .await;
    assert_eq!(statuses(&done, false)[0].restart_count, 0);
    // Own Always in a Never pod: restarted.
    let always = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: own-always\nspec:\n  restartPolicy: Never\n  containers:\n  - {name: main, image: busybox, restartPolicy: Always, command: [sh, -c, 'exit 1']}\n";
    h.create(always);
    h.wait_for("own-always", "container restarted", |p| {
        statuses(p, false).iter().any(|s| s.restart_count > 0)
    })
    .await;
    h.delete("own-always").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_all_condition_is_published_true_then_false() {
    // Upstream's RestartAllContainers e2e without the kubelet restart: a source
    // container exits 42 once, three others run; the condition is seen True during the
    // cleanup, False after, and every container restarted and runs again.
    let mut h = Harness::new();
    let rule = "    restartPolicy: Never\n    restartPolicyRules: [{action: RestartAllContainers, exitCodes: {operator: In, values: [42]}}]\n";
    let mut containers = container_yaml("source", rule, &first_run_exits("source", 42));
    for i in 0..3 {
        containers += &container_yaml(&format!("c{i}"), "", &sleeps(&format!("c{i}")));
    }
    h.create(&pod_yaml("restart-all-cond", "", false, &containers));
    let condition = |p: &Pod, want: &str| {
        p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c.type_ == "AllContainersRestarting" && c.status == want)
            })
    };
    let during = h
        .wait_for("restart-all-cond", "AllContainersRestarting=True", |p| {
            condition(p, "True")
        })
        .await;
    let c = during
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "AllContainersRestarting")
        .unwrap();
    assert_eq!(c.reason.as_deref(), Some("RestartAllContainersStarted"));
    assert_eq!(
        c.message.as_deref(),
        Some("container exited with restart policy rule")
    );
    let done = h
        .wait_for("restart-all-cond", "all restarted and running", |p| {
            condition(p, "False")
                && statuses(p, false).iter().all(|s| {
                    s.restart_count > 0 && s.state.as_ref().is_some_and(|st| st.running.is_some())
                })
        })
        .await;
    assert_eq!(statuses(&done, false).len(), 4);
    h.delete("restart-all-cond").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_completes_after_in_place_restarts_without_counting_failures() {
    // Addendum §2.8: pod policy Never, container policy OnFailure: the container is
    // restarted in place; backoffLimit 0 is never reached because the pod never fails.
    let mut h = Harness::new();
    let yaml = "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: in-place\nspec:\n  backoffLimit: 0\n  template:\n    spec:\n      restartPolicy: Never\n      volumes: [{name: shared, emptyDir: {}}]\n      containers:\n      - name: work\n        image: busybox\n        restartPolicy: OnFailure\n        volumeMounts: [{name: shared, mountPath: /shared}]\n        command: [sh, -c, 'if [ ! -e /shared/ran ]; then touch /shared/ran; exit 3; fi; exit 0']\n";
    h.create_job(yaml);
    let job = h
        .wait_for_job("in-place", |j| {
            j.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| {
                    cs.iter().any(|c| {
                        (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True"
                    })
                })
        })
        .await;
    let st = job.status.unwrap();
    let complete = st
        .conditions
        .unwrap()
        .iter()
        .any(|c| c.type_ == "Complete" && c.status == "True");
    assert!(complete, "the Job completed");
    assert_eq!(st.failed.unwrap_or(0), 0);
    assert_eq!(st.succeeded, Some(1));
}
