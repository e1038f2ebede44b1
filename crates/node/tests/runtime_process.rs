//! Container processes end to end: exit codes, signals, exit latency, logs, exec.
//!
//! These tests start real processes and, as root (which CI is), real PID and mount
//! namespaces. They need root and fail loudly without it.

use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use podrun_node::runtime::{
    BindMount, ContainerLaunch, ContainerProcess, ExecError, PodIdentity, SpawnError, exec_in,
    isolation_available,
};

fn require_root() {
    assert!(
        isolation_available(),
        "these tests need root (PID/mount namespaces); run them as root like CI does"
    );
}

fn launch(dir: &Path, argv: &[&str]) -> ContainerLaunch {
    ContainerLaunch {
        pod: PodIdentity {
            namespace: "default".into(),
            name: "p".into(),
            uid: "u1".into(),
        },
        container_name: "c".into(),
        restart_count: 0,
        argv: argv.iter().map(|s| s.to_string()).collect(),
        env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        working_dir: None,
        mounts: Vec::new(),
        log_path: dir.join("c/0.log"),
        termination_message: None,
        hostname: None,
        ..Default::default()
    }
}

fn sh(dir: &Path, script: &str) -> ContainerLaunch {
    launch(dir, &["sh", "-c", script])
}

async fn run(l: &ContainerLaunch) -> (i32, Option<i32>, String) {
    let c = ContainerProcess::spawn(l).expect("spawn");
    let exit = tokio::time::timeout(Duration::from_secs(20), c.wait())
        .await
        .expect("exit within 20s");
    tokio::time::timeout(Duration::from_secs(5), c.logs_done())
        .await
        .expect("logs done");
    let log = std::fs::read_to_string(&l.log_path).unwrap_or_default();
    (exit.exit_code, exit.signal, log)
}

/// The text of each log line, checking the CRI framing on the way.
fn log_lines(log: &str) -> Vec<(String, String, String)> {
    log.lines()
        .map(|line| {
            let mut parts = line.splitn(4, ' ');
            let ts = parts.next().expect("timestamp");
            assert_eq!(ts.len(), 30, "RFC3339Nano with 9 digits: {ts}");
            assert!(ts.ends_with('Z') && ts.as_bytes()[10] == b'T', "{ts}");
            let stream = parts.next().expect("stream").to_string();
            let tag = parts.next().expect("tag").to_string();
            assert!(tag == "F" || tag == "P", "{line}");
            (stream, tag, parts.next().unwrap_or("").to_string())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_are_reported() {
    require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    assert_eq!(run(&sh(dir.path(), "exit 0")).await.0, 0);
    assert_eq!(run(&sh(dir.path(), "exit 3")).await.0, 3);
    assert_eq!(run(&launch(dir.path(), &["false"])).await.0, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_exit_is_128_plus_the_signal() {
    require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let c = ContainerProcess::spawn(&launch(dir.path(), &["sleep", "100"])).expect("spawn");
    c.signal(Signal::SIGKILL).expect("kill");
    let exit = tokio::time::timeout(Duration::from_secs(5), c.wait())
        .await
        .expect("exit");
    assert_eq!((exit.exit_code, exit.signal), (137, Some(9)));
    // The main process is PID 1 of the container's PID namespace, as in any Kubernetes
    // container: a signal it does not handle (SIGTERM to `sleep`) is ignored.
    let c = ContainerProcess::spawn(&launch(dir.path(), &["sleep", "100"])).expect("spawn");
    c.signal(Signal::SIGTERM).expect("term");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), c.wait())
            .await
            .is_err(),
        "PID 1 died of an unhandled SIGTERM"
    );
    c.signal(Signal::SIGKILL).expect("kill");
    let exit = tokio::time::timeout(Duration::from_secs(5), c.wait())
        .await
        .expect("exit");
    assert_eq!(exit.exit_code, 137);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_reaches_a_trapping_shell() {
    require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let l = sh(
        dir.path(),
        "trap 'echo got-term; exit 7' TERM; echo ready; while :; do sleep 0.05; done",
    );
    let c = ContainerProcess::spawn(&l).expect("spawn");
    // Wait for the trap to be installed (the shell prints after it).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&l.log_path)
        .unwrap_or_default()
        .contains("ready")
    {
        assert!(Instant::now() < deadline, "container never became ready");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    c.signal(Signal::SIGTERM).expect("term");
    let exit = tokio::time::timeout(Duration::from_secs(10), c.wait())
        .await
        .expect("exit");
    assert_eq!(exit.exit_code, 7);
    c.logs_done().await;
    let log = std::fs::read_to_string(&l.log_path).expect("log");
    assert!(log.contains("stdout F got-term"), "{log}");
    // Signalling an exited container is a no-op, not an error.
    c.signal(Signal::SIGKILL).expect("signal after exit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_is_noticed_promptly() {
    require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let c = ContainerProcess::spawn(&launch(dir.path(), &["sleep", "100"])).expect("spawn");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let sent = std::time::SystemTime::now();
    c.signal(Signal::SIGKILL).expect("kill");
    let exit = tokio::time::timeout(Duration::from_secs(5), c.wait())
        .await
        .expect("exit");
    let latency = exit.finished_at.duration_since(sent).unwrap_or_default();
    // Generous bound (a 1 s poll would miss it): the benchmark measures the real figure.
    assert!(
        latency < Duration::from_millis(900),
        "exit noticed after {latency:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_cri_lines_with_both_streams_and_partials() {
    require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    // Ordered output across streams (sleeps keep the arrival order unambiguous), a 20000-byte
    // line (split at 16 KiB) and an unterminated tail.
    let script = "echo out1; sleep 0.05; echo err1 >&2; sleep 0.05; \
                  head -c 20000 /dev/zero | tr '\\0' x; echo; sleep 0.05; printf tail";
    let (code, _, log) = run(&sh(dir.path(), script)).await;
    assert_eq!(code, 0);
    let lines = log_lines(&log);
    let s = |a: &str, b: &str, c: String| (a.to_string(), b.to_string(), c);
    assert_eq!(lines[0], s("stdout", "F", "out1".into()));
    assert_eq!(lines[1], s("stderr", "F", "err1".into()));
    // (Compared by length: a failure message with 16 KiB of x is unreadable.)
    let brief = |l: &(String, String, String)| {
        (
            l.0.clone(),
            l.1.clone(),
            l.2.len(),
            l.2.bytes().all(|b| b == b'x'),
        )
    };
    assert_eq!(
        brief(&lines[2]),
        ("stdout".into(), "P".into(), 16 * 1024, true),
        "{:.200}",
        lines[2].2
    );
    assert_eq!(
        brief(&lines[3]),
        ("stdout".into(), "F".into(), 20000 - 16 * 1024, true),
        "{:.200}",
        lines[3].2
    );
    assert_eq!(lines[4], s("stdout", "P", "tail".into()));
    assert_eq!(lines.len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_workdir_and_hostname_are_applied() {
    require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut l = sh(
        dir.path(),
        "echo \"$A|$HOSTNAME|$(pwd)|$(hostname)|$(env | wc -l)\"",
    );
    l.env.push(("A".into(), "1".into()));
    l.working_dir = Some("/usr".into());
    l.hostname = Some("web-0".into());
    let (code, _, log) = run(&l).await;
    assert_eq!(code, 0);
    // PATH, A, HOSTNAME — and nothing inherited from podrun (sh itself adds PWD).
    assert_eq!(log_lines(&log)[0].2, "1|web-0|/usr|web-0|4");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_errors_are_clear() {
    require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let err =
        ContainerProcess::spawn(&launch(dir.path(), &["no-such-cmd-xyz"])).expect_err("missing");
    assert_eq!(
        err.to_string(),
        "exec: \"no-such-cmd-xyz\": executable file not found in $PATH"
    );
    let err = ContainerProcess::spawn(&launch(dir.path(), &["/nope/x"])).expect_err("missing");
    assert_eq!(
        err.to_string(),
        "exec: \"/nope/x\": stat /nope/x: no such file or directory"
    );
    let plain = dir.path().join("plain-file");
    std::fs::write(&plain, "data").expect("write");
    let plain = plain.to_str().expect("utf8 path");
    let err = ContainerProcess::spawn(&launch(dir.path(), &[plain])).expect_err("not exec");
    assert_eq!(
        err.to_string(),
        format!("exec: \"{plain}\": permission denied")
    );
    let mut l = launch(dir.path(), &["true"]);
    l.working_dir = Some("/no/such/dir".into());
    let err = ContainerProcess::spawn(&l).expect_err("cwd");
    assert_eq!(
        err.to_string(),
        "chdir to cwd (\"/no/such/dir\") failed: no such file or directory"
    );
    assert_eq!(
        ContainerProcess::spawn(&launch(dir.path(), &[])).expect_err("empty"),
        SpawnError::NoCommand
    );
    let mut l = launch(dir.path(), &["true"]);
    l.mounts.push(BindMount {
        source: "/no/such/src".into(),
        target: "/x".into(),
        read_only: false,
    });
    assert!(
        ContainerProcess::spawn(&l)
            .expect_err("src")
            .to_string()
            .contains("/no/such/src")
    );
    // No zombie is left by failed spawns: every child of ours has been reaped.
    assert_eq!(zombie_children(), Vec::<u32>::new());
}

/// Zombie children of this process that stay zombies for a second (other tests running in
/// the same process may briefly have one between an exit and its reaping).
fn zombie_children() -> Vec<u32> {
    let first = zombies_now();
    if first.is_empty() {
        return first;
    }
    std::thread::sleep(Duration::from_secs(1));
    let second = zombies_now();
    first.into_iter().filter(|p| second.contains(p)).collect()
}

fn zombies_now() -> Vec<u32> {
    let me = std::process::id();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").expect("proc").flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the ")" of the command name: state, ppid.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.first() == Some(&"Z") && f.get(1) == Some(&me.to_string().as_str()) {
            out.push(pid);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_in_runs_inside_the_container() {
    require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let vol = tempfile::tempdir().expect("vol");
    std::fs::write(vol.path().join("marker"), "in-volume").expect("marker");
    let target = format!("/podrun-test-exec-{}", std::process::id());
    let mut l = launch(dir.path(), &["sleep", "100"]);
    l.mounts.push(BindMount {
        source: vol.path().into(),
        target: target.clone().into(),
        read_only: false,
    });
    l.working_dir = Some("/etc".into());
    let c = ContainerProcess::spawn(&l).expect("spawn");
    let env = vec![
        ("PATH".to_string(), "/usr/bin:/bin".to_string()),
        ("X".to_string(), "y".to_string()),
    ];
    let argv = |s: &str| vec!["sh".to_string(), "-c".to_string(), s.to_string()];
    let out = exec_in(&c, &argv(&format!("cat {target}/marker; echo \" $X $(pwd)\"; ls /proc | grep -c '^[0-9]'; echo e >&2; exit 4")), &env, Duration::from_secs(10))
        .await
        .expect("exec");
    assert_eq!(out.exit_code, 4);
    // It sees the volume, the container's cwd and only the container's processes (sleep,
    // sh, ls, grep — not the host's).
    let text = out.text();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("in-volume y /etc"));
    let nprocs: usize = lines.next().expect("count").trim().parse().expect("number");
    assert!(
        nprocs <= 5,
        "saw {nprocs} processes: not the container's PID namespace"
    );
    assert_eq!(lines.next(), Some("e"));
    assert!(
        !Path::new(&target).exists(),
        "volume mount point created on the host"
    );

    let started = Instant::now();
    let err = exec_in(&c, &argv("sleep 30"), &env, Duration::from_millis(300))
        .await
        .expect_err("timeout");
    assert_eq!(
        err,
        ExecError::Timeout {
            command: "sh -c sleep 30".into()
        }
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    let err = exec_in(&c, &["nope-xyz".to_string()], &env, Duration::from_secs(5))
        .await
        .expect_err("missing");
    assert_eq!(
        err.to_string(),
        "exec: \"nope-xyz\": executable file not found in $PATH"
    );

    c.signal(Signal::SIGKILL).expect("kill");
    c.wait().await;
    assert_eq!(
        exec_in(&c, &argv("true"), &env, Duration::from_secs(1)).await,
        Err(ExecError::NotRunning)
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(zombie_children(), Vec::<u32>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_an_exec_kills_it() {
    require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let c = ContainerProcess::spawn(&launch(dir.path(), &["sleep", "100"])).expect("spawn");
    let env = vec![("PATH".to_string(), "/usr/bin:/bin".to_string())];
    let marker = format!("podrun-drop-exec-{}", std::process::id());
    let argv = vec![
        "sh".to_string(),
        "-c".to_string(),
        format!("exec -a {marker} sleep 100"),
    ];
    let fut = exec_in(&c, &argv, &env, Duration::from_secs(100));
    // Run it for a while, then drop the future (a hook cancelled by the engine).
    let _ = tokio::time::timeout(Duration::from_millis(300), fut).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        processes_named(&marker).is_empty(),
        "exec'd command survived its dropped future"
    );
}

/// Pids whose argv[0] is `name`.
pub fn processes_named(name: &str) -> Vec<u32> {
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
