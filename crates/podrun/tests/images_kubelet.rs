//! The kubelet's image behaviour around pods run from images (no `--host-rootfs`), against a
//! real registry (Debian's `docker-registry` on 127.0.0.1, the fixture image of
//! `scripts/test-images.sh`, a throttling proxy in front of it for a slow registry): the spec's
//! acceptance scenarios 13, 15, 16, 22, 24, 25, 28 (Basic credentials from a pod's
//! dockerconfigjson secret, a missing secret), 29 and 39. Needs root and
//! the packages `scripts/setup.sh` installs.

use std::process::Child;
use std::time::{Duration, Instant};

mod registry;

use registry::{
    Env, REGISTRY_PASSWORD, REGISTRY_USER, Registry, SlowProxy, stderr, stdout, wait_until,
};

fn pod(name: &str, containers: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  restartPolicy: Never\n  containers:\n{containers}"
    )
}

/// Waits at most `limit` for `podrun run` to end; kills it (by PID) if it does not.
fn wait_exit(mut child: Child, limit: Duration) -> std::process::Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("podrun run did not end: {}{}", stdout(&out), stderr(&out));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// Scenario 29: the pull runs off the pod worker, so the pod shows `ContainerCreating` while
/// it pulls, and deleting it cancels the pull at once and leaves no download behind.
#[test]
fn deleting_a_pod_during_a_slow_pull_cancels_the_pull() {
    let env = Env::new();
    let reg = Registry::start(env.dir());
    env.push(&reg, "1", "busybox:1");
    let slow = SlowProxy::start(reg.port, 40_000);
    let image = format!("{}/busybox:1", slow.host());
    let manifest = pod("slow", &format!("  - name: app\n    image: {image}\n"));
    let child = env.spawn_manifest(&manifest, &["--timeout", "60s"]);
    let limit = Duration::from_secs(20);
    env.wait_event(
        "slow",
        "Pulling",
        &format!("Pulling image \"{image}\""),
        limit,
    );
    wait_until(limit, "a download in ingest/", || env.count("ingest") > 0);
    let row = env.ok(&["get", "pod", "slow"]);
    assert!(row.contains("ContainerCreating"), "{row}");
    let t = Instant::now();
    env.ok(&["delete", "pod", "slow"]);
    let took = t.elapsed();
    assert!(env.pod_json("slow").is_none(), "the pod is still there");
    assert!(took < Duration::from_secs(2), "deletion took {took:?}");
    let out = wait_exit(child, Duration::from_secs(10));
    assert_eq!(env.count("ingest"), 0, "a download was left behind");
    assert_eq!(env.ok(&["images", "-q"]), "", "{}", stdout(&out));
    assert!(
        !env.events("slow").iter().any(|e| e.1 == "Pulled"),
        "{:?}",
        env.events("slow")
    );
}

/// The manifest digest of tag `tag` in the fixture's OCI layout (what a registry serves it as).
fn fixture_digest(env: &Env, tag: &str) -> String {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.dir().join("oci/index.json")).unwrap()).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn has(events: &[(String, String, String)], reason: &str, message: &str) -> bool {
    events
        .iter()
        .any(|e| e.1 == reason && e.2.contains(message))
}

/// Scenario 39: `rmi` refuses an image a running pod's container was created from (exit 1,
/// naming the container), `--prune` keeps it and removes the unused one, and once the pod is
/// gone `rmi` removes it and everything it alone used. The host's mount table never shows
/// the container's overlay (scenario 44).
#[test]
fn rmi_refuses_an_image_in_use_and_prune_keeps_it() {
    let env = Env::new();
    let reg = Registry::start(env.dir());
    env.push(&reg, "1", "busybox:1");
    env.push(&reg, "2", "busybox:2");
    let image = format!("{}/busybox:1", reg.host());
    let unused = format!("{}/busybox:2", reg.host());
    env.ok(&["pull", &unused]);
    let manifest = pod(
        "user",
        &format!("  - name: app\n    image: {image}\n    command: [sleep, \"60\"]\n"),
    );
    let child = env.spawn_manifest(&manifest, &["--timeout", "90s"]);
    wait_until(Duration::from_secs(20), "the pod to run", || {
        env.pod_json("user")
            .is_some_and(|p| p["status"]["phase"] == "Running")
    });
    // Scenario 44: the container's overlay lives in its own mount namespace only.
    let state = env.state().display().to_string();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts
            .lines()
            .any(|l| l.contains(" - overlay ") && l.contains(&state)),
        "{mounts}"
    );
    let refused = env.podrun(&["rmi", &image]);
    assert_eq!(refused.status.code(), Some(1), "{}", stdout(&refused));
    assert_eq!(
        stderr(&refused),
        format!(
            "error: image \"{image}\" is in use by container default/user/app\n\
             error: unable to remove the image(s)\n"
        )
    );
    assert_eq!(env.ok(&["rmi", "--prune"]), format!("Deleted: {unused}\n"));
    let all = env.podrun(&["rmi", "--all"]);
    assert_eq!(all.status.code(), Some(1));
    let listed = env.ok(&["images"]);
    assert!(
        listed.contains(&format!("{}/busybox", reg.host())),
        "{listed}"
    );
    assert_eq!(
        env.count("layers"),
        2,
        "the running image's layers were collected"
    );
    env.ok(&["delete", "pod", "user", "--now"]);
    wait_exit(child, Duration::from_secs(20));
    assert_eq!(env.ok(&["rmi", &image]), format!("Deleted: {image}\n"));
    assert_eq!(env.count("layers"), 0);
    assert_eq!(env.count("blobs/sha256"), 0);
}

/// Scenarios 13 and 28 (missing secret): with the registry stopped, an `IfNotPresent` image
/// pulled before runs ("already present … can be accessed by the pod") while an `Always` one
/// fails with `connection refused`; a missing pull secret gives `FailedToRetrieveImagePullSecret`
/// and the pull goes on without it.
#[test]
fn present_images_run_without_the_registry_and_missing_secrets_are_reported() {
    let env = Env::new();
    let reg = Registry::start(env.dir());
    env.push(&reg, "1", "busybox:1");
    let image = format!("{}/busybox:1", reg.host());
    let reg_host = reg.host();
    env.ok(&["pull", &image]);
    drop(reg);
    let manifest = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: offline\nspec:\n  restartPolicy: Never\n\
         \x20 imagePullSecrets:\n  - name: nope\n  - name: gone\n  containers:\n\
         \x20 - name: present\n    image: {image}\n    command: [echo, present]\n\
         \x20 - name: always\n    image: {image}\n    imagePullPolicy: Always\n    command: [echo, always]\n"
    );
    let child = env.spawn_manifest(&manifest, &["--timeout", "60s"]);
    wait_until(Duration::from_secs(20), "the containers to settle", || {
        env.pod_json("offline").is_some_and(|p| {
            let s = &p["status"]["containerStatuses"];
            s[0]["state"]["terminated"]["reason"] == "Completed"
                && s[1]["state"]["waiting"]["reason"] == "ErrImagePull"
        })
    });
    assert_eq!(env.logs("offline", "present").trim(), "present");
    // Scenario 14: a container not created yet shows the spec's image and no image ID; one
    // created from the stored image its name and `<repository>@<digest>`.
    let status = env.pod_json("offline").unwrap();
    let statuses = &status["status"]["containerStatuses"];
    assert_eq!(statuses[1]["image"], image.as_str(), "{statuses}");
    assert_eq!(statuses[1]["imageID"], "", "{statuses}");
    assert_eq!(statuses[0]["image"], image.as_str(), "{statuses}");
    assert!(
        statuses[0]["imageID"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}/busybox@sha256:", reg_host)),
        "{statuses}"
    );
    let events = env.events("offline");
    assert!(
        has(
            &events,
            "Pulled",
            &format!(
                "Container image \"{image}\" already present on machine and can be accessed by the pod"
            )
        ),
        "{events:?}"
    );
    assert!(
        events.iter().any(|e| e.0 == "Warning"
            && e.1 == "Failed"
            && e.2
                .starts_with(&format!("Failed to pull image \"{image}\": "))
            && e.2.contains(": connect: connection refused")),
        "{events:?}"
    );
    assert!(
        events.iter().any(|e| e.0 == "Warning"
            && e.1 == "FailedToRetrieveImagePullSecret"
            && e.2
                == "Unable to retrieve some image pull secrets (nope, gone); attempting to pull \
                    the image may not succeed."),
        "{events:?}"
    );
    env.ok(&["delete", "pod", "offline", "--now"]);
    // kubectl's STATUS shows the first container's state here (`Completed`), as upstream's
    // printer does when it walks the statuses backwards.
    wait_exit(child, Duration::from_secs(20));
}

/// Scenarios 15 and 16: an image loaded from a `docker save` archive runs with the default
/// `IfNotPresent` and shows its normalised name; an image pinned by digest runs, an unknown
/// digest is not found.
#[test]
fn loaded_and_digest_pinned_images_run() {
    let env = Env::new();
    let reg = Registry::start(env.dir());
    env.push(&reg, "1", "busybox:1");
    let d = env.dir().display().to_string();
    env.skopeo(
        &format!("oci:{d}/oci:1"),
        &format!("docker-archive:{d}/bb.tar:busybox:1.36"),
        &[],
    );
    assert_eq!(
        env.ok(&["load", "-i", &format!("{d}/bb.tar")]),
        "Loaded image: docker.io/library/busybox:1.36\n"
    );
    let pinned = format!("{}/busybox@{}", reg.host(), fixture_digest(&env, "1"));
    let unknown = format!("{}/busybox@sha256:{}", reg.host(), "0".repeat(64));
    let manifest = pod(
        "digests",
        &format!(
            "  - name: loaded\n    image: busybox:1.36\n    command: [echo, loaded]\n\
             \x20 - name: pinned\n    image: {pinned}\n    command: [echo, pinned]\n\
             \x20 - name: unknown\n    image: {unknown}\n    command: [echo, unknown]\n"
        ),
    );
    let child = env.spawn_manifest(&manifest, &["--timeout", "60s"]);
    let state = |c: &serde_json::Value, n: &str| {
        c["status"]["containerStatuses"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["name"] == n))
            .map(|s| s["state"].clone())
            .unwrap_or_default()
    };
    wait_until(Duration::from_secs(20), "the containers to settle", || {
        env.pod_json("digests").is_some_and(|p| {
            state(&p, "loaded")["terminated"]["reason"] == "Completed"
                && state(&p, "pinned")["terminated"]["reason"] == "Completed"
                && state(&p, "unknown")["waiting"]["reason"] == "ErrImagePull"
        })
    });
    assert_eq!(env.logs("digests", "loaded").trim(), "loaded");
    assert_eq!(env.logs("digests", "pinned").trim(), "pinned");
    let status = env.pod_json("digests").unwrap();
    let statuses = status["status"]["containerStatuses"].as_array().unwrap();
    let by_name = |n: &str| statuses.iter().find(|s| s["name"] == n).unwrap().clone();
    assert_eq!(by_name("loaded")["image"], "docker.io/library/busybox:1.36");
    assert!(
        by_name("loaded")["imageID"]
            .as_str()
            .unwrap()
            .starts_with("docker.io/library/busybox@sha256:"),
        "{}",
        by_name("loaded")
    );
    assert_eq!(
        by_name("pinned")["imageID"],
        serde_json::Value::String(pinned.clone())
    );
    let waiting = &by_name("unknown")["state"]["waiting"];
    assert_eq!(waiting["reason"], "ErrImagePull", "{waiting}");
    assert!(
        waiting["message"]
            .as_str()
            .unwrap()
            .ends_with(&format!("failed to resolve image: {unknown}: not found")),
        "{waiting}"
    );
    // The loaded image was used as it is: no pull of it.
    let events = env.events("digests");
    assert!(!has(&events, "Pulling", "busybox:1.36"), "{events:?}");
    env.ok(&["delete", "pod", "digests", "--now"]);
    wait_exit(child, Duration::from_secs(20));
}

/// Scenarios 22 and 24: a pod whose registry is not listening waits in `ErrImagePull`
/// (`connection refused`) and one whose `Never` image is absent in `ErrImageNeverPull`; once
/// the registry starts and the image is loaded, both run at the next retry (10 s).
#[test]
fn pods_run_once_their_registry_starts_or_their_image_is_loaded() {
    let env = Env::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let d = env.dir().display().to_string();
    env.skopeo(
        &format!("oci:{d}/oci:1"),
        &format!("docker-archive:{d}/late.tar:late:1"),
        &[],
    );
    let image = format!("127.0.0.1:{port}/busybox:1");
    let manifest = pod(
        "later",
        &format!(
            "  - name: pulled\n    image: {image}\n    command: [echo, pulled]\n\
             \x20 - name: loaded\n    image: late:1\n    imagePullPolicy: Never\n    command: [echo, loaded]\n"
        ),
    );
    let child = env.spawn_manifest(&manifest, &["--timeout", "60s"]);
    let limit = Duration::from_secs(10);
    env.wait_event("later", "Failed", ": connect: connection refused", limit);
    env.wait_event(
        "later",
        "ErrImageNeverPull",
        "Container image \"late:1\" is not present with pull policy of Never",
        limit,
    );
    let reg = Registry::start_on(env.dir(), port);
    env.push(&reg, "1", "busybox:1");
    env.ok(&["load", "-i", &format!("{d}/late.tar")]);
    let t = Instant::now();
    let out = wait_exit(child, Duration::from_secs(25));
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(t.elapsed() < Duration::from_secs(12), "{:?}", t.elapsed());
    assert_eq!(env.logs("later", "pulled").trim(), "pulled");
    assert_eq!(env.logs("later", "loaded").trim(), "loaded");
}

/// Scenario 25: a bad init or sidecar image shows as `Init:ErrImagePull` then
/// `Init:ImagePullBackOff` with the app container `PodInitializing`; of two app containers,
/// one with a bad image, the pod shows `1/2`.
#[test]
fn bad_images_in_init_sidecar_and_app_containers_show_kubectls_statuses() {
    let env = Env::new();
    let reg = Registry::start(env.dir());
    env.push(&reg, "1", "busybox:1");
    let good = format!("{}/busybox:1", reg.host());
    let bad = format!("{}/busybox:nope", reg.host());
    let doc = |name: &str, init: &str, containers: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  restartPolicy: Never\n{init}  containers:\n{containers}"
        )
    };
    let app = format!("  - name: app\n    image: {good}\n    command: [sleep, \"30\"]\n");
    let manifest = [
        doc(
            "badinit",
            &format!(
                "  initContainers:\n  - name: init\n    image: {bad}\n    imagePullPolicy: IfNotPresent\n    command: [echo]\n"
            ),
            &app,
        ),
        doc(
            "badside",
            &format!(
                "  initContainers:\n  - name: side\n    image: {bad}\n    imagePullPolicy: IfNotPresent\n    restartPolicy: Always\n    command: [sleep, \"30\"]\n"
            ),
            &app,
        ),
        doc(
            "twoapps",
            "",
            &format!("{app}  - name: bad\n    image: {bad}\n    imagePullPolicy: IfNotPresent\n"),
        ),
    ]
    .join("---\n");
    // Pulls of the bad image at 0 and 10 s; at 20 s it is in back-off.
    let child = env.spawn_manifest(&manifest, &["--timeout", "40s"]);
    let waiting = |pod: &str, field: &str, ix: usize| {
        env.pod_json(pod)
            .map(|p| p["status"][field][ix]["state"]["waiting"]["reason"].clone())
    };
    wait_until(Duration::from_secs(30), "ImagePullBackOff", || {
        ["badinit", "badside"].iter().all(|p| {
            waiting(p, "initContainerStatuses", 0).is_some_and(|r| r == "ImagePullBackOff")
        }) && waiting("twoapps", "containerStatuses", 1).is_some_and(|r| r == "ImagePullBackOff")
    });
    for pod in ["badinit", "badside"] {
        let app = waiting(pod, "containerStatuses", 0).unwrap();
        assert_eq!(app, "PodInitializing", "{pod}");
    }
    for pod in ["badinit", "badside", "twoapps"] {
        env.ok(&["delete", "pod", pod, "--now"]);
    }
    let out = wait_exit(child, Duration::from_secs(20));
    let rows = stdout(&out);
    let seen = |pod: &str, ready: &str, status: &str| {
        rows.lines().any(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols.len() >= 3 && cols[0] == pod && cols[1] == ready && cols[2] == status
        })
    };
    // A sidecar counts in READY, as kubectl shows it.
    for (pod, ready) in [("badinit", "0/1"), ("badside", "0/2")] {
        assert!(seen(pod, ready, "Init:ErrImagePull"), "{pod}: {rows}");
        assert!(seen(pod, ready, "Init:ImagePullBackOff"), "{pod}: {rows}");
    }
    assert!(seen("twoapps", "1/2", "ErrImagePull"), "{rows}");
    assert!(seen("twoapps", "1/2", "ImagePullBackOff"), "{rows}");
}

/// Scenario 28 against a registry that wants credentials: a pod without a pull secret fails
/// with containerd's authorization error; one whose `kubernetes.io/dockerconfigjson` secret is
/// keyed `127.0.0.1:<port>` pulls and runs.
#[test]
fn pull_secrets_of_the_pod_authenticate_the_pull() {
    let env = Env::new();
    let reg = Registry::start_with_auth(env.dir());
    env.push_with_creds(&reg, "1", "busybox:1");
    let image = format!("{}/busybox:1", reg.host());
    let config = serde_json::json!({
        "auths": {reg.host(): {"username": REGISTRY_USER, "password": REGISTRY_PASSWORD}}
    });
    let manifest = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: regcred\ntype: kubernetes.io/dockerconfigjson\n\
         stringData:\n  .dockerconfigjson: '{config}'\n---\n{}\n---\n{}",
        pod(
            "nosecret",
            &format!("  - name: app\n    image: {image}\n    command: [echo, ok]\n")
        ),
        pod(
            "withsecret",
            &format!("  - name: app\n    image: {image}\n    command: [echo, ok]\n")
        )
        .replace(
            "  containers:",
            "  imagePullSecrets:\n  - name: regcred\n  containers:"
        ),
    );
    let child = env.spawn_manifest(&manifest, &["--timeout", "60s"]);
    let state = |p: &str| {
        env.pod_json(p)
            .map(|p| p["status"]["containerStatuses"][0]["state"].clone())
            .unwrap_or_default()
    };
    wait_until(Duration::from_secs(20), "both pods to settle", || {
        state("withsecret")["terminated"]["reason"] == "Completed"
            && state("nosecret")["waiting"]["reason"] == "ErrImagePull"
    });
    assert_eq!(env.logs("withsecret", "app").trim(), "ok");
    let message = state("nosecret")["waiting"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        message.starts_with(&format!("failed to pull and unpack image \"{image}\": "))
            && message.contains(
                "pull access denied, repository does not exist or may require authorization: \
                 authorization failed: no basic auth credentials"
            ),
        "{message}"
    );
    env.ok(&["delete", "pod", "nosecret", "--now"]);
    wait_exit(child, Duration::from_secs(20));
}
