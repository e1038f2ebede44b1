//! Interactive exec in a running container (`runtime::exec`, what `kubectl exec` runs):
//! stdin, stdout and stderr as pipes with the exit code; a terminal with its initial size,
//! a resize while the command runs and input echoed; the command killed when its session
//! is dropped. These tests need root and fail loudly without it.

use std::path::Path;
use std::time::{Duration, Instant};

use podrun_node::runtime::exec::{ExecStreams, TerminalSize, exec_session};
use podrun_node::runtime::{ContainerLaunch, ContainerProcess, PodIdentity, isolation_available};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

fn require_root() {
    assert!(
        isolation_available(),
        "these tests need root (PID/mount namespaces); run them as root like CI does"
    );
}

fn sleeper(dir: &Path) -> ContainerLaunch {
    ContainerLaunch {
        pod: PodIdentity {
            namespace: "default".into(),
            name: "exec".into(),
            uid: "u-exec".into(),
        },
        container_name: "c".into(),
        argv: vec!["sleep".into(), "1000".into()],
        env: vec![
            ("PATH".into(), "/usr/bin:/bin".into()),
            ("FROM_SPEC".into(), "yes".into()),
        ],
        log_path: dir.join("c/0.log"),
        ..Default::default()
    }
}

/// stdin, stdout and stderr, on a terminal or not.
fn all_streams(tty: bool) -> ExecStreams {
    ExecStreams {
        stdin: true,
        stdout: true,
        stderr: true,
        tty,
    }
}

fn env() -> Vec<(String, String)> {
    vec![
        ("PATH".into(), "/usr/bin:/bin".into()),
        ("FROM_SPEC".into(), "yes".into()),
    ]
}

fn argv(script: &str) -> Vec<String> {
    vec!["sh".into(), "-c".into(), script.into()]
}

async fn read_all(r: &mut (impl AsyncRead + Unpin)) -> String {
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), r.read_to_end(&mut out))
        .await
        .expect("output ends within 20 s")
        .expect("read");
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads from the terminal until `want` has appeared (bounded in time).
async fn read_until(r: &mut (impl AsyncRead + Unpin), seen: &mut String, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut buf = [0u8; 1024];
    while !seen.contains(want) {
        assert!(
            Instant::now() < deadline,
            "{want:?} within 20 s in {seen:?}"
        );
        let n = tokio::time::timeout(Duration::from_secs(20), r.read(&mut buf))
            .await
            .expect("terminal output")
            .expect("read");
        assert!(n > 0, "terminal closed before {want:?}: {seen:?}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
}

#[tokio::test]
async fn pipes_carry_stdin_stdout_stderr_and_the_exit_code() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let container = ContainerProcess::spawn(&sleeper(dir.path())).expect("spawn");
    let streams = all_streams(false);
    let mut s = exec_session(
        &container,
        &argv("cat; echo $FROM_SPEC $$; echo err >&2; exit 7"),
        &env(),
        streams,
        None,
    )
    .await
    .expect("exec");
    let mut stdin = s.stdin.take().unwrap();
    stdin.write_all(b"line one\nline two\n").await.unwrap();
    drop(stdin);
    let (out, err) = tokio::join!(
        read_all(s.stdout.as_mut().unwrap()),
        read_all(s.stderr.as_mut().unwrap())
    );
    let info = tokio::time::timeout(Duration::from_secs(20), s.wait())
        .await
        .expect("exit");
    assert_eq!(info.exit_code, 7);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[..2], ["line one", "line two"], "{out}");
    let (var, pid) = lines[2].split_once(' ').unwrap();
    assert_eq!(var, "yes");
    let pid: u32 = pid.parse().unwrap();
    assert!(pid > 1, "a PID of the container's namespace, not its init");
    assert!(pid < 1000, "a PID of the container's namespace: {pid}");
    assert_eq!(err, "err\n");
}

#[tokio::test]
async fn a_terminal_has_its_size_a_resize_and_echo() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let container = ContainerProcess::spawn(&sleeper(dir.path())).expect("spawn");
    let streams = all_streams(true);
    let mut s = exec_session(
        &container,
        &argv("stty size; echo $TERM; read x; stty size; echo got-$x >&2; exit 2"),
        &env(),
        streams,
        Some(TerminalSize {
            width: 80,
            height: 24,
        }),
    )
    .await
    .expect("exec");
    assert!(s.stderr.is_none(), "a terminal carries stderr too");
    let mut out = s.stdout.take().unwrap();
    let mut seen = String::new();
    read_until(&mut out, &mut seen, "24 80\r\nxterm\r\n").await;
    s.resize(TerminalSize {
        width: 120,
        height: 40,
    })
    .unwrap();
    s.stdin.as_mut().unwrap().write_all(b"hi\n").await.unwrap();
    read_until(&mut out, &mut seen, "got-hi\r\n").await;
    assert!(
        seen.contains("hi\r\n40 120\r\n"),
        "echo, then the new size: {seen:?}"
    );
    let info = tokio::time::timeout(Duration::from_secs(20), s.wait())
        .await
        .expect("exit");
    assert_eq!(info.exit_code, 2);
}

#[tokio::test]
async fn dropping_the_session_kills_the_command() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let container = ContainerProcess::spawn(&sleeper(dir.path())).expect("spawn");
    let s = exec_session(
        &container,
        &argv("sleep 1001 & sleep 1002"),
        &env(),
        ExecStreams {
            stdout: true,
            ..Default::default()
        },
        None,
    )
    .await
    .expect("exec");
    let pid = s.pid();
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    drop(s);
    let deadline = Instant::now() + Duration::from_secs(10);
    // Gone (reaped), not only dead; its background child too (same process group).
    while Path::new(&format!("/proc/{pid}")).exists() || sleeping("1001") {
        assert!(
            Instant::now() < deadline,
            "the command is killed within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        container.try_wait().is_none(),
        "the container itself runs on"
    );
}

fn sleeping(arg: &str) -> bool {
    let want = format!("sleep\0{arg}\0");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .any(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == want.as_bytes()))
}
