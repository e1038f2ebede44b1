//! Container isolation as root: PID namespace kills, private mounts that leave the host
//! untouched, read-only volumes, the termination-message file, and no survivor when podrun
//! itself is SIGKILLed.
//!
//! These tests need root and fail loudly without it.

mod container_harness;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use container_harness::run_to_end;
use nix::sys::signal::Signal;
use podrun_node::runtime::{
    BindMount, ContainerLaunch, ContainerProcess, PodIdentity, isolation_available,
};

fn require_root() {
    assert!(
        isolation_available(),
        "these tests need root (PID/mount namespaces); run them as root like CI does"
    );
}

fn bash(dir: &Path, script: &str) -> ContainerLaunch {
    ContainerLaunch {
        pod: PodIdentity {
            namespace: "default".into(),
            name: "iso".into(),
            uid: "u2".into(),
        },
        container_name: "c".into(),
        restart_count: 0,
        argv: vec!["bash".into(), "-c".into(), script.into()],
        env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        working_dir: None,
        mounts: Vec::new(),
        log_path: dir.join("c/0.log"),
        termination_message: None,
        hostname: None,
        ..Default::default()
    }
}

/// A unique marker for process names and paths of this test run.
fn marker(tag: &str) -> String {
    format!("podrun-test-{tag}-{}-{}", std::process::id(), rand_suffix())
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(Instant::now()) % 1_000_000
}

/// Pids whose argv[0] is `name`.
fn processes_named(name: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").expect("proc").flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        if cmd.split(|&b| b == 0).next() == Some(name.as_bytes()) {
            out.push(pid);
        }
    }
    out
}

async fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_container_leaves_no_process() {
    require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let m = marker("tree");
    // The init forks a child and (through another shell) a grandchild, both named after the
    // marker; the init itself ignores SIGTERM and waits.
    let script = format!(
        "(exec -a {m} sleep 1000) & (bash -c '(exec -a {m} sleep 1000) & wait') & trap '' TERM; wait"
    );
    let c = ContainerProcess::spawn(&bash(dir.path(), &script)).expect("spawn");
    wait_until("the container's processes", Duration::from_secs(10), || {
        processes_named(&m).len() >= 2
    })
    .await;
    c.signal(Signal::SIGKILL).expect("kill");
    let exit = tokio::time::timeout(Duration::from_secs(5), c.wait())
        .await
        .expect("exit");
    assert_eq!(exit.exit_code, 137);
    // The kernel ended every process of the PID namespace before the init could be reaped.
    assert_eq!(processes_named(&m), Vec::<u32>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volumes_mount_at_paths_missing_on_the_host_without_creating_them() {
    require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let vol = tempfile::tempdir().expect("vol");
    std::fs::write(vol.path().join("hello"), "from-volume\n").expect("write");
    let top = format!("/{}", marker("vol"));
    let nested = format!("/etc/{}/conf", marker("etc"));
    let mut l = bash(
        dir.path(),
        &format!(
            "cat {top}/hello; cat {nested}/hello; echo written > {top}/new; test -s /etc/hostname && echo etc-intact; cat /proc/1/cmdline | tr '\\0' ' '; echo; ls /dev"
        ),
    );
    l.mounts = vec![
        BindMount {
            source: vol.path().into(),
            target: top.clone().into(),
            read_only: false,
        },
        BindMount {
            source: vol.path().into(),
            target: nested.clone().into(),
            read_only: false,
        },
    ];
    let (code, out) = run_to_end(&l).await;
    assert_eq!(code, 0, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        &lines[..3],
        &["from-volume", "from-volume", "etc-intact"],
        "{out}"
    );
    // A fresh /proc: PID 1 is the container's own init.
    assert!(lines[3].starts_with("bash -c"), "{out}");
    let devs: Vec<&str> = lines[4..].to_vec();
    for d in ["null", "zero", "urandom", "pts", "shm", "fd"] {
        assert!(devs.contains(&d), "/dev lacks {d}: {devs:?}");
    }
    // Writes reach the volume; nothing was created on the host along the mount paths.
    assert_eq!(
        std::fs::read_to_string(vol.path().join("new")).expect("new"),
        "written\n"
    );
    assert!(!Path::new(&top).exists(), "{top} created on the host");
    let etc_dir = Path::new(&nested).parent().expect("parent");
    assert!(
        !etc_dir.exists(),
        "{} created on the host",
        etc_dir.display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_volume_refuses_writes() {
    require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let vol = tempfile::tempdir().expect("vol");
    let target = format!("/{}", marker("ro"));
    let mut l = bash(
        dir.path(),
        &format!("ls {target} >/dev/null && echo x > {target}/f; echo rc=$?"),
    );
    l.mounts = vec![BindMount {
        source: vol.path().into(),
        target: target.clone().into(),
        read_only: true,
    }];
    let (code, out) = run_to_end(&l).await;
    assert_eq!(code, 0);
    assert!(out.contains("Read-only file system"), "{out}");
    // stdout and stderr are read apart: the shell's error may come after `rc=1`.
    assert!(out.lines().any(|l| l.trim() == "rc=1"), "{out}");
    assert!(!vol.path().join("f").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn termination_message_file_is_bind_mounted() {
    require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let host_file = dir.path().join("c/termination-log");
    let mut l = bash(
        dir.path(),
        "echo -n 'bye now' > /dev/termination-log; exit 2",
    );
    l.termination_message = Some((host_file.clone(), "/dev/termination-log".into()));
    let (code, _) = run_to_end(&l).await;
    assert_eq!(code, 2);
    assert_eq!(
        std::fs::read_to_string(&host_file).expect("message"),
        "bye now"
    );
    assert!(
        !Path::new("/dev/termination-log").exists(),
        "created on the host's /dev"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unhandled_mount_error_is_reported_with_the_target() {
    require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").expect("write");
    // A directory volume onto a path whose parent is a regular file.
    let mut l = bash(dir.path(), "true");
    l.mounts = vec![BindMount {
        source: dir.path().into(),
        target: file.join("sub"),
        read_only: false,
    }];
    let err = ContainerProcess::spawn(&l).expect_err("must fail");
    assert!(err.to_string().contains("is not a directory"), "{err}");
}

/// Helper run in a child test process by `killing_podrun_leaves_no_container_process`: it
/// starts a container whose processes carry the marker, says "ready", then waits to be killed.
#[test]
#[ignore = "helper process for killing_podrun_leaves_no_container_process"]
fn helper_container_owner() {
    let Ok(m) = std::env::var("PODRUN_TEST_MARKER") else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = format!("(exec -a {m} sleep 1000) & exec -a {m} sleep 1000");
        let _c = ContainerProcess::spawn(&bash(dir.path(), &script)).expect("spawn");
        wait_until("the container's processes", Duration::from_secs(10), || {
            processes_named(&m).len() >= 2
        })
        .await;
        println!("ready");
        tokio::time::sleep(Duration::from_secs(60)).await;
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_podrun_leaves_no_container_process() {
    require_root();
    let m = marker("orphan");
    let mut helper = Command::new(std::env::current_exe().expect("exe"))
        .args([
            "--exact",
            "helper_container_owner",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("PODRUN_TEST_MARKER", &m)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start helper");
    let stdout = helper.stdout.take().expect("stdout");
    let ready = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .any(|l| l.contains("ready"))
    });
    let ready = tokio::time::timeout(Duration::from_secs(30), ready).await;
    if !matches!(ready, Ok(Ok(true))) {
        let _ = helper.kill();
        let _ = helper.wait();
        panic!("helper never started its container");
    }
    assert!(processes_named(&m).len() >= 2);
    helper.kill().expect("SIGKILL the helper");
    helper.wait().expect("reap helper");
    // PDEATHSIG kills the container's init; the kernel then kills the rest of its namespace.
    wait_until(
        "the orphaned container to die",
        Duration::from_secs(5),
        || processes_named(&m).is_empty(),
    )
    .await;
}
