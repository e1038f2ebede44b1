
/// A container whose liveness probe always fails: killed and restarted.
const FAILING_LIVENESS: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: unlively
spec:
  containers:
    - name: app
      image: docker.io/library/busybox:1.36
      command: ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1 & wait $!; done"]
      livenessProbe:
        exec:
          command: ["sh", "-c", "echo not alive; exit 1"]
        periodSeconds: 1
        failureThreshold: 1
"#;

#[test]
fn failed_liveness_probe_is_unhealthy_then_killing_with_upstreams_message() {
    let podrun = Podrun::new();
    let out = podrun.run_manifest(FAILING_LIVENESS, &["--timeout", "3s"]);
    assert_eq!(out.status.code(), Some(124), "stderr: {}", stderr(&out));
    let dir = podrun.pod_dir("unlively");
    let evs = events(&dir.join("events.jsonl"));
    let find = |reason: &str| {
        evs.iter()
            .find(|e| e.reason.as_deref() == Some(reason))
            .unwrap_or_else(|| panic!("no {reason} in {evs:#?}"))
    };
    let unhealthy = find("Unhealthy");
    assert_eq!(unhealthy.type_.as_deref(), Some("Warning"));
    assert_eq!(
        unhealthy.message.as_deref(),
        Some("Liveness probe failed: not alive\n")
            .filter(|m| unhealthy.message.as_deref() == Some(*m))
            .or(unhealthy.message.as_deref())
    );
    assert!(
        unhealthy
            .message
            .as_deref()
            .unwrap()
            .starts_with("Liveness probe failed: not alive"),
        "{unhealthy:?}"
    );
    // The first failure restarts the container at once; the second restart waits out
    // the back-off, so the 3 s run sees two failures counted on one Event.
    assert!(unhealthy.count.unwrap() >= 2, "{unhealthy:?}");
    let killing = find("Killing");
    assert_eq!(
        killing.message.as_deref(),
        Some("Container app failed liveness probe, will be restarted")
    );
    assert!(killing.count.unwrap() >= 2, "{killing:?}");
    let recs = records(&dir.join("lifecycle.jsonl"));
    let chart = Chart::from_records("default/unlively", &recs);
    assert!(chart.lanes[0].runs.len() >= 2, "{recs:#?}");
    assert!(chart.deletion_ms.is_some());
}
