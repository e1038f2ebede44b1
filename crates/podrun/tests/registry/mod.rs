//! A real registry for the image tests: Debian's `docker-registry` on 127.0.0.1 (a free
//! port, a temporary storage directory, killed by PID) holding the test images that
//! `scripts/test-images.sh` builds offline from the static busybox (umoci), pushed with skopeo.
//! Needs root and the packages `scripts/setup.sh` installs; fails loudly without them.

// Each test binary uses a part of this module.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn require_tools() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the image tests need root"
    );
    for t in ["docker-registry", "skopeo", "umoci", "busybox"] {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(t).is_file()))
            .unwrap_or(false);
        assert!(found, "{t} is missing: run scripts/setup.sh");
    }
}

/// The user of [`Registry::start_with_auth`].
pub const REGISTRY_USER: &str = "user";
/// Its password.
pub const REGISTRY_PASSWORD: &str = "s3cret";
/// bcrypt of [`REGISTRY_PASSWORD`] (cost 4, so each request is cheap), as htpasswd files
/// hold it.
const REGISTRY_BCRYPT: &str = "$2b$04$FFNPwzsqOHEQLqCRz9V5euylm7VhAqS3US.6GzlkhdGgv2ofbks/G";

pub struct Registry {
    pub child: Child,
    pub port: u16,
    pub log: PathBuf,
}

impl Registry {
    pub fn start(dir: &Path) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Self::start_on(dir, port)
    }

    pub fn start_on(dir: &Path, port: u16) -> Self {
        Self::start_with(dir, port, "")
    }

    /// A registry that wants Basic credentials `REGISTRY_USER:REGISTRY_PASSWORD` (htpasswd).
    pub fn start_with_auth(dir: &Path) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let htpasswd = dir.join("htpasswd");
        std::fs::write(&htpasswd, format!("{REGISTRY_USER}:{REGISTRY_BCRYPT}\n")).unwrap();
        let auth = format!(
            "auth: {{htpasswd: {{realm: podrun-test, path: {}}}}}\n",
            htpasswd.display()
        );
        Self::start_with(dir, port, &auth)
    }

    fn start_with(dir: &Path, port: u16, extra: &str) -> Self {
        let config = dir.join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog: {{level: error, accesslog: {{disabled: false}}}}\n\
                 storage: {{filesystem: {{rootdirectory: {}/storage}}, delete: {{enabled: true}}, maintenance: {{uploadpurging: {{enabled: false}}}}}}\n\
                 http: {{addr: 127.0.0.1:{port}, secret: podrun-test}}\n\
                 health: {{storagedriver: {{enabled: false}}}}\n{extra}",
                dir.display()
            ),
        )
        .unwrap();
        let log = dir.join(format!("registry-{port}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "registry did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, port, log }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn blob_gets(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .matches("\"GET /v2/busybox/blobs/")
            .count()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Env {
    pub tmp: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Self {
        require_tools();
        let tmp = tempfile::tempdir().unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/test-images.sh");
        let out = Command::new("bash")
            .arg(script)
            .arg(tmp.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "test-images.sh: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self { tmp }
    }

    pub fn dir(&self) -> &Path {
        self.tmp.path()
    }

    pub fn state(&self) -> PathBuf {
        self.dir().join("state")
    }

    /// The config digest of tag `tag` in the fixture's OCI layout: the image ID a pull of
    /// it reports.
    pub fn fixture_image_id(&self, tag: &str) -> String {
        let layout = self.dir().join("oci");
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
        let m = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
            .unwrap();
        let hex = m["digest"]
            .as_str()
            .unwrap()
            .strip_prefix("sha256:")
            .unwrap();
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(layout.join("blobs/sha256").join(hex)).unwrap())
                .unwrap();
        manifest["config"]["digest"].as_str().unwrap().to_owned()
    }

    pub fn skopeo(&self, from: &str, to: &str, extra: &[&str]) {
        let out = Command::new("skopeo")
            .args(["--insecure-policy", "copy", "-q", "--dest-tls-verify=false"])
            .args(extra)
            .arg(from)
            .arg(to)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "skopeo copy {from} {to}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn push(&self, reg: &Registry, tag: &str, name: &str) {
        let from = format!("oci:{}/oci:{tag}", self.dir().display());
        self.skopeo(&from, &format!("docker://{}/{name}", reg.host()), &[]);
    }

    /// [`Env::push`] to a registry of [`Registry::start_with_auth`].
    pub fn push_with_creds(&self, reg: &Registry, tag: &str, name: &str) {
        let from = format!("oci:{}/oci:{tag}", self.dir().display());
        let creds = format!("{REGISTRY_USER}:{REGISTRY_PASSWORD}");
        self.skopeo(
            &from,
            &format!("docker://{}/{name}", reg.host()),
            &["--dest-creds", &creds],
        );
    }

    pub fn podrun(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_podrun"))
            .arg("--state-dir")
            .arg(self.state())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.podrun(args);
        assert!(
            out.status.success(),
            "podrun {args:?}: {}{}",
            stdout(&out),
            stderr(&out)
        );
        stdout(&out)
    }

    pub fn count(&self, sub: &str) -> usize {
        std::fs::read_dir(self.state().join("images").join(sub))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

impl Env {
    /// `podrun run -f - --events <dir>/events.jsonl EXTRA…`, started with `manifest` on stdin.
    pub fn spawn_manifest(&self, manifest: &str, extra: &[&str]) -> Child {
        spawn_run_in(self.dir(), manifest, extra)
    }

    /// [`Env::spawn_manifest`] to its end.
    pub fn run_manifest(&self, manifest: &str, extra: &[&str]) -> Output {
        self.spawn_manifest(manifest, extra)
            .wait_with_output()
            .unwrap()
    }

    pub fn logs(&self, pod: &str, container: &str) -> String {
        self.ok(&["logs", pod, "-c", container])
    }

    /// (type, reason, message) of every Event recorded about `pod`.
    pub fn events(&self, pod: &str) -> Vec<(String, String, String)> {
        std::fs::read_to_string(self.dir().join("events.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["involvedObject"]["name"] == pod)
            .map(|v| {
                let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
                (s("type"), s("reason"), s("message"))
            })
            .collect()
    }

    /// Waits (at most `limit`) until `pod` has an Event with `reason` whose message contains
    /// `text`.
    pub fn wait_event(&self, pod: &str, reason: &str, text: &str, limit: Duration) {
        wait_until(limit, &format!("{reason} {text:?} about {pod}"), || {
            self.events(pod)
                .iter()
                .any(|e| e.1 == reason && e.2.contains(text))
        });
    }

    /// `podrun get pod NAME -o json`, `None` once the pod is gone.
    pub fn pod_json(&self, pod: &str) -> Option<serde_json::Value> {
        let out = self.podrun(&["get", "pod", pod, "-o", "json"]);
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).ok())
            .flatten()
    }
}

/// Polls `cond` every 50 ms for at most `limit`; panics naming `what` when it never holds.
/// `podrun --state-dir DIR/state run -f - --events DIR/events.jsonl EXTRA…`, started with
/// `manifest` on stdin and its stdout and stderr piped.
pub fn spawn_run_in(dir: &Path, manifest: &str, extra: &[&str]) -> Child {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_podrun"))
        .arg("--state-dir")
        .arg(dir.join("state"))
        .args(["run", "-f", "-", "--events"])
        .arg(dir.join("events.jsonl"))
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(manifest.as_bytes())
        .unwrap();
    child
}

pub fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A TCP proxy on 127.0.0.1 in front of `upstream` that sends the upstream's answers back at
/// about `bytes_per_sec` (a slow registry). Its threads end with their connections.
pub struct SlowProxy {
    pub port: u16,
}

impl SlowProxy {
    pub fn start(upstream: u16, bytes_per_sec: usize) -> Self {
        use std::io::{Read, Write};
        use std::net::TcpStream;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let (mut c_read, mut s_write) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c_read, &mut s_write);
                    let _ = s_write.shutdown(std::net::Shutdown::Write);
                });
                let (mut s_read, mut c_write) = (server, client);
                std::thread::spawn(move || {
                    let chunk = (bytes_per_sec / 20).max(1);
                    let mut buf = vec![0u8; chunk];
                    loop {
                        match s_read.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if c_write.write_all(&buf[..n]).is_err() {
                                    break;
                                }
                            }
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    let _ = c_write.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        Self { port }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
