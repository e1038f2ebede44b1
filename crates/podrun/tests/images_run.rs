//! Pods whose containers run from their images (no `--host-rootfs`), pulled from a real
//! registry: Debian's `docker-registry` on 127.0.0.1 with the fixture image of
//! `scripts/test-images.sh` (Entrypoint `/bin/sh`, Cmd `-c "echo image-cmd"`, Env `PATH=/bin
//! FROM_IMAGE=1`, WorkingDir `/work`, User `app`). The spec's acceptance scenarios 1–5, 21, 23,
//! 24 and a host left unchanged. Needs root and the packages `scripts/setup.sh` installs.

use std::path::Path;
use std::process::Command;

mod registry;

use registry::{Env, Registry, require_tools, stderr, stdout};

fn passwd_hash() -> Vec<u8> {
    std::fs::read("/etc/passwd").unwrap()
}

fn pod(name: &str, containers: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  restartPolicy: Never\n  containers:\n{containers}"
    )
}

#[test]
fn containers_run_the_image_by_the_four_cases_with_its_env_workdir_and_user() {
    let env = Env::new();
    let reg = Registry::start(env.dir());
    env.push(&reg, "1", "busybox:1");
    let sentinel = tempfile::Builder::new()
        .prefix("podrun-sentinel-")
        .tempdir()
        .unwrap();
    let before = passwd_hash();
    let image = format!("{}/busybox:1", reg.host());
    let c = |name: &str, rest: &str| format!("  - name: {name}\n    image: {image}\n{rest}");
    let manifest = pod(
        "img",
        &[
            c("plain", ""),
            c("args", "    args: [\"-c\", \"echo args\"]\n"),
            c("cmd", "    command: [\"/bin/echo\", \"cmd\"]\n"),
            c("both", "    command: [\"/bin/echo\"]\n    args: [\"spec\"]\n"),
            c(
                "env",
                "    command: [env]\n    env:\n    - {name: X, value: \"$(FROM_IMAGE)\"}\n",
            ),
            c(
                "env2",
                "    command: [env]\n    env:\n    - {name: FROM_IMAGE, value: \"2\"}\n",
            ),
            c("pwd", "    command: [pwd]\n"),
            c("wd", "    command: [pwd]\n    workingDir: /tmp/w\n"),
            c("user", "    command: [sh, -c, \"id -u; id -g; id -G\"]\n"),
            c(
                "root",
                "    command: [sh, -c, \"id -u; id -g\"]\n    securityContext: {runAsUser: 0, runAsGroup: 3000}\n",
            ),
            c(
                "escape",
                &format!(
                    "    command: [sh, -c, \"mkdir -p {s} && touch {s}/pwned && ls /\"]\n    securityContext: {{runAsUser: 0}}\n",
                    s = sentinel.path().display()
                ),
            ),
        ]
        .concat(),
    );
    let out = env.run_manifest(&manifest, &["--timeout", "60s"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("Completed"), "{}", stdout(&out));
    assert_eq!(env.logs("img", "plain").trim(), "image-cmd");
    assert_eq!(env.logs("img", "args").trim(), "args");
    assert_eq!(env.logs("img", "cmd").trim(), "cmd");
    assert_eq!(env.logs("img", "both").trim(), "spec");
    let vars = env.logs("img", "env");
    for want in [
        "PATH=/bin",
        "FROM_IMAGE=1",
        "HOSTNAME=img",
        "X=$(FROM_IMAGE)",
    ] {
        assert!(vars.lines().any(|l| l == want), "{want} missing: {vars}");
    }
    let vars = env.logs("img", "env2");
    assert!(vars.lines().any(|l| l == "FROM_IMAGE=2"), "{vars}");
    assert_eq!(env.logs("img", "pwd").trim(), "/work");
    assert_eq!(env.logs("img", "wd").trim(), "/tmp/w");
    let ids: Vec<String> = env.logs("img", "user").lines().map(String::from).collect();
    assert_eq!(ids[0], "1000");
    assert_eq!(ids[1], "1000");
    assert!(ids[2].split(' ').any(|g| g == "2000"), "{ids:?}");
    assert_eq!(env.logs("img", "root").trim(), "0\n3000");
    let root = env.logs("img", "escape");
    assert!(
        root.lines().any(|l| l == "bin") && !root.lines().any(|l| l == "usr"),
        "{root}"
    );
    assert_eq!(
        std::fs::read_dir(sentinel.path()).unwrap().count(),
        0,
        "host written"
    );
    assert_eq!(passwd_hash(), before, "host /etc/passwd changed");
    let status: serde_json::Value =
        serde_json::from_str(&env.ok(&["get", "pod", "img", "-o", "json"])).unwrap();
    let digest = std::fs::read_to_string(env.dir().join("state/images/index.json")).unwrap();
    for s in status["status"]["containerStatuses"].as_array().unwrap() {
        assert_eq!(s["image"], image, "{s}");
        let id = s["imageID"].as_str().unwrap();
        let prefix = format!("{}/busybox@sha256:", reg.host());
        assert!(id.starts_with(&prefix), "{id}");
        assert!(digest.contains(&id[prefix.len() - 7..]), "{id} not stored");
    }
    assert_eq!(
        std::fs::read_dir(env.dir().join("state/pods"))
            .unwrap()
            .flatten()
            .filter(|p| p.path().join("plain/rootfs").exists())
            .count(),
        0,
        "the writable layers outlive the pod"
    );
    // One pull served every container (the second and later found it present).
    assert!(reg.blob_gets() >= 2, "the layers were not fetched");
    assert_eq!(env.count("layers"), 2, "one unpacked directory per layer");
    let events = env.events("img");
    let pulling = format!("Pulling image \"{image}\"");
    assert!(
        events.iter().any(|e| e.1 == "Pulling" && e.2 == pulling),
        "{events:?}"
    );
    assert!(
        events.iter().any(|e| e.1 == "Pulled"
            && e.2
                .starts_with(&format!("Successfully pulled image \"{image}\" in "))
            && e.2.contains(" including waiting). Image size: ")),
        "{events:?}"
    );
}

#[test]
fn image_failures_wait_with_the_kubelets_reasons_and_events() {
    let env = Env::new();
    let reg = Registry::start(env.dir());
    env.push(&reg, "1", "busybox:1");
    let missing = format!("{}/busybox:nope", reg.host());
    let manifest = pod(
        "bad",
        &format!(
            "  - name: missing\n    image: {missing}\n    imagePullPolicy: IfNotPresent\n\
             \x20 - name: never\n    image: {h}/busybox:1\n    imagePullPolicy: Never\n\
             \x20 - name: invalid\n    image: Busybox:1\n",
            h = reg.host()
        ),
    );
    // Pulls of the missing image at 0 and 10 s; at 20 s it is in back-off.
    let out = env.run_manifest(&manifest, &["--timeout", "23s"]);
    assert_eq!(
        out.status.code(),
        Some(124),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let rows = stdout(&out);
    assert!(
        rows.contains("ErrImagePull")
            || rows.contains("ErrImageNeverPull")
            || rows.contains("InvalidImageName"),
        "{rows}"
    );
    let events = env.events("bad");
    let has = |reason: &str, msg: &str| events.iter().any(|e| e.1 == reason && e.2.contains(msg));
    assert!(
        has("Failed", &format!("Failed to pull image \"{missing}\": "))
            && has("Failed", "not found"),
        "{events:?}"
    );
    assert!(has("Failed", "Error: ErrImagePull"), "{events:?}");
    let back_off = format!("Back-off pulling image \"{missing}\"");
    assert!(
        events
            .iter()
            .any(|e| e.0 == "Normal" && e.1 == "BackOff" && e.2 == back_off),
        "{events:?}"
    );
    assert!(has("Failed", "Error: ImagePullBackOff"), "{events:?}");
    let pulls = events
        .iter()
        .filter(|e| e.1 == "Pulling" && e.2.contains("busybox:nope"))
        .count();
    assert_eq!(pulls, 2, "{events:?}");
    assert!(
        has(
            "ErrImageNeverPull",
            &format!(
                "Container image \"{}/busybox:1\" is not present with pull policy of Never",
                reg.host()
            )
        ),
        "{events:?}"
    );
    assert!(
        has(
            "InspectFailed",
            "Failed to apply default image tag \"Busybox:1\": couldn't parse image name \"Busybox:1\": "
        ),
        "{events:?}"
    );
    assert!(has("Failed", "Error: InvalidImageName"), "{events:?}");
}

/// The README's "From an image" commands, run as written (in a scratch directory holding the
/// checkout's `scripts` and `examples`), print what their comments say.
#[test]
fn the_readmes_image_example_runs() {
    require_tools();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let readme = std::fs::read_to_string(repo.join("README.md")).unwrap();
    let section = readme
        .split("## From an image")
        .nth(1)
        .expect("README has a From an image section");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a sh block");
    let commands: Vec<&str> = block
        .lines()
        .map(|l| l.split("  #").next().unwrap_or(l).trim())
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(commands.len(), 5, "{commands:?}");
    let work = tempfile::tempdir().unwrap();
    for d in ["scripts", "examples"] {
        std::os::unix::fs::symlink(repo.join(d), work.path().join(d)).unwrap();
    }
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_podrun")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut outputs = Vec::new();
    for c in &commands {
        let out = Command::new("timeout")
            .args(["120", "sh", "-c", c])
            .current_dir(work.path())
            .env("PATH", &path)
            .env("PODRUN_STATE_DIR", work.path().join("state"))
            .env("PODRUN_LOG", "off")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{c}: {}{}",
            stdout(&out),
            stderr(&out)
        );
        outputs.push(stdout(&out));
    }
    assert_eq!(outputs[2].trim(), "Loaded image: localhost/busybox:1");
    let row: Vec<&str> = outputs[3].split_whitespace().collect();
    assert_eq!(
        &row[..3],
        ["image-pod", "0/1", "Completed"],
        "{}",
        outputs[3]
    );
    assert_eq!(outputs[4].trim(), "image-cmd");
}
