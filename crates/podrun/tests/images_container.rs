//! What the process of a container sees when it runs from its image, end to end: images
//! written here as OCI layouts (layers as raw tar bytes, so hostile entries can be made;
//! gzip, zstd and plain; OCI and Docker media types), loaded with `podrun load`, run by
//! `podrun run` with `imagePullPolicy: Never`. The spec's acceptance scenarios 5–12, 18–20,
//! 30–34, 36 and 45; a host that stays unchanged throughout. Needs root.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use podrun_images::digest::Digest;

mod registry;

use registry::{stderr, stdout};

// === tar entries as raw bytes ===

fn octal(field: &mut [u8], v: u64) {
    let text = format!("{:0w$o}", v, w = field.len() - 1);
    field[..text.len()].copy_from_slice(text.as_bytes());
}

#[derive(Clone, Copy)]
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: u64,
}

const ROOT: Meta = Meta {
    mode: 0o755,
    uid: 0,
    gid: 0,
    mtime: 1_600_000_000,
};

#[derive(Default)]
struct Tar(Vec<u8>);

impl Tar {
    fn header(&mut self, name: &[u8], typ: u8, size: usize, m: Meta, link: &[u8], dev: (u32, u32)) {
        if name.len() > 100 {
            // GNU long name: a `././@LongLink` entry holding the name.
            let mut long = name.to_vec();
            long.push(0);
            self.header(b"././@LongLink", b'L', long.len(), ROOT, b"", (0, 0));
            self.data(&long);
        }
        let mut h = [0u8; 512];
        let n = name.len().min(100);
        h[..n].copy_from_slice(&name[..n]);
        octal(&mut h[100..108], u64::from(m.mode));
        octal(&mut h[108..116], u64::from(m.uid));
        octal(&mut h[116..124], u64::from(m.gid));
        octal(&mut h[124..136], size as u64);
        octal(&mut h[136..148], m.mtime);
        h[156] = typ;
        h[157..157 + link.len()].copy_from_slice(link);
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        octal(&mut h[329..337], u64::from(dev.0));
        octal(&mut h[337..345], u64::from(dev.1));
        h[148..156].copy_from_slice(b"        ");
        let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
        let text = format!("{sum:06o}\0 ");
        h[148..156].copy_from_slice(text.as_bytes());
        self.0.extend_from_slice(&h);
    }

    fn data(&mut self, data: &[u8]) {
        self.0.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.0.extend(std::iter::repeat_n(0u8, pad));
    }

    fn dir(mut self, name: &str, m: Meta) -> Self {
        self.header(name.as_bytes(), b'5', 0, m, b"", (0, 0));
        self
    }

    fn file(self, name: &str, data: &[u8], m: Meta) -> Self {
        self.file_raw(name.as_bytes(), data, m)
    }

    fn file_raw(mut self, name: &[u8], data: &[u8], m: Meta) -> Self {
        self.header(name, b'0', data.len(), m, b"", (0, 0));
        self.data(data);
        self
    }

    fn symlink(mut self, name: &str, target: &str) -> Self {
        let m = Meta {
            mode: 0o777,
            ..ROOT
        };
        self.header(name.as_bytes(), b'2', 0, m, target.as_bytes(), (0, 0));
        self
    }

    fn hard_link(mut self, name: &str, target: &str) -> Self {
        self.header(name.as_bytes(), b'1', 0, ROOT, target.as_bytes(), (0, 0));
        self
    }

    fn char_device(mut self, name: &str, major: u32, minor: u32) -> Self {
        let m = Meta {
            mode: 0o666,
            ..ROOT
        };
        self.header(name.as_bytes(), b'3', 0, m, b"", (major, minor));
        self
    }

    fn finish(mut self) -> Vec<u8> {
        self.0.extend(std::iter::repeat_n(0u8, 1024));
        self.0
    }
}

const APPLETS: [&str; 19] = [
    "sh", "ls", "cat", "id", "env", "pwd", "echo", "sleep", "touch", "stat", "mkdir", "grep", "wc",
    "test", "tr", "rm", "uniq", "sort", "readlink",
];

/// busybox with its applets, `/etc/passwd` (root, app 1000) and `/etc/group` (app 1000,
/// extra 2000 with app), `/tmp`.
fn busybox_layer() -> Vec<u8> {
    let busybox = std::fs::read("/bin/busybox").expect("busybox-static is installed");
    let mut t = Tar::default()
        .dir("bin/", ROOT)
        .file("bin/busybox", &busybox, ROOT);
    for a in APPLETS {
        t = t.symlink(&format!("bin/{a}"), "busybox");
    }
    t.dir("etc/", ROOT)
        .file(
            "etc/passwd",
            b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n",
            Meta {
                mode: 0o644,
                ..ROOT
            },
        )
        .file(
            "etc/group",
            b"root:x:0:\napp:x:1000:\nextra:x:2000:app\n",
            Meta {
                mode: 0o644,
                ..ROOT
            },
        )
        .dir(
            "tmp/",
            Meta {
                mode: 0o1777,
                ..ROOT
            },
        )
        .finish()
}

// === OCI layouts ===

#[derive(Clone, Copy, PartialEq)]
enum Comp {
    Plain,
    Gzip,
    Zstd,
}

fn compress(data: &[u8], comp: Comp) -> Vec<u8> {
    let tool = match comp {
        Comp::Plain => return data.to_vec(),
        Comp::Gzip => ["gzip", "-nc"],
        Comp::Zstd => ["zstd", "-qc"],
    };
    let mut child = Command::new(tool[0])
        .arg(tool[1])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", tool[0]));
    let mut stdin = child.stdin.take().unwrap();
    let input = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success());
    out.stdout
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Writes an OCI layout of one image into `dir`: `layers` (tar bytes, compression) lowest
/// first and the config's `config` object; Docker media types when `docker`.
fn write_layout(dir: &Path, layers: &[(Vec<u8>, Comp)], config: serde_json::Value, docker: bool) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |data: &[u8]| -> (String, usize) {
        let d = Digest::of(data);
        std::fs::write(blobs.join(d.hex()), data).unwrap();
        (d.to_string(), data.len())
    };
    let mut diff_ids = Vec::new();
    let mut descs = Vec::new();
    for (tar, comp) in layers {
        diff_ids.push(Digest::of(tar).to_string());
        let (digest, size) = put(&compress(tar, *comp));
        let media = match (docker, comp) {
            (true, _) => "application/vnd.docker.image.rootfs.diff.tar.gzip",
            (false, Comp::Plain) => "application/vnd.oci.image.layer.v1.tar",
            (false, Comp::Gzip) => "application/vnd.oci.image.layer.v1.tar+gzip",
            (false, Comp::Zstd) => "application/vnd.oci.image.layer.v1.tar+zstd",
        };
        descs.push(serde_json::json!({"mediaType": media, "digest": digest, "size": size}));
    }
    let cfg = serde_json::json!({
        "architecture": arch(),
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let (cfg_digest, cfg_size) = put(&serde_json::to_vec(&cfg).unwrap());
    let (manifest_type, config_type) = if docker {
        (
            "application/vnd.docker.distribution.manifest.v2+json",
            "application/vnd.docker.container.image.v1+json",
        )
    } else {
        (
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.oci.image.config.v1+json",
        )
    };
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": {"mediaType": config_type, "digest": cfg_digest, "size": cfg_size},
        "layers": descs,
    });
    let (m_digest, m_size) = put(&serde_json::to_vec(&manifest).unwrap());
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": manifest_type, "digest": m_digest, "size": m_size}],
    });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}

// === running podrun ===

struct Env {
    tmp: tempfile::TempDir,
    passwd: Vec<u8>,
}

impl Env {
    fn new() -> Self {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the image container tests need root"
        );
        for tool in ["gzip", "zstd"] {
            assert!(
                Command::new(tool).arg("--version").output().is_ok(),
                "{tool} is missing"
            );
        }
        assert!(
            Path::new("/bin/busybox").is_file(),
            "busybox-static is missing: run scripts/setup.sh"
        );
        Self {
            tmp: tempfile::tempdir().unwrap(),
            passwd: std::fs::read("/etc/passwd").unwrap(),
        }
    }

    fn dir(&self) -> &Path {
        self.tmp.path()
    }

    fn podrun(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_podrun"))
            .arg("--state-dir")
            .arg(self.dir().join("state"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.podrun(args);
        assert!(
            out.status.success(),
            "podrun {args:?}: {}{}",
            stdout(&out),
            stderr(&out)
        );
        stdout(&out)
    }

    /// Writes and loads an image named `localhost/<name>:1`.
    fn image(&self, name: &str, layers: &[(Vec<u8>, Comp)], config: serde_json::Value) -> String {
        self.image_with(name, layers, config, false)
    }

    fn image_with(
        &self,
        name: &str,
        layers: &[(Vec<u8>, Comp)],
        config: serde_json::Value,
        docker: bool,
    ) -> String {
        let out = self.load(name, layers, config, docker);
        assert!(out.status.success(), "load {name}: {}", stderr(&out));
        format!("localhost/{name}:1")
    }

    fn load(
        &self,
        name: &str,
        layers: &[(Vec<u8>, Comp)],
        config: serde_json::Value,
        docker: bool,
    ) -> Output {
        let layout = self.dir().join(format!("layout-{name}"));
        write_layout(&layout, layers, config, docker);
        let tag = format!("localhost/{name}:1");
        self.podrun(&["load", "-i", layout.to_str().unwrap(), "--tag", &tag])
    }

    /// `podrun run -f - EXTRA…` with `manifest` on stdin, Events written to `events.jsonl`.
    fn run(&self, manifest: &str, extra: &[&str]) -> Output {
        registry::spawn_run_in(self.dir(), manifest, extra)
            .wait_with_output()
            .unwrap()
    }

    fn run_ok(&self, manifest: &str) -> String {
        let out = self.run(manifest, &["--timeout", "60s"]);
        assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
        stdout(&out)
    }

    fn logs(&self, pod: &str, container: &str) -> String {
        self.ok(&["logs", pod, "-c", container])
    }

    /// The Events about `pod`.
    fn event_objects(&self, pod: &str) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir().join("events.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["involvedObject"]["name"] == pod)
            .collect()
    }

    /// Messages of the Events about `pod`.
    fn events(&self, pod: &str) -> Vec<String> {
        self.event_objects(pod)
            .iter()
            .map(|v| v["message"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// The pod's status from `podrun get`.
    fn status(&self, pod: &str) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["get", "pod", pod, "-o", "json"])).unwrap()
    }

    fn host_unchanged(&self, sentinel: &Path) {
        let left: Vec<_> = std::fs::read_dir(sentinel)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert!(left.is_empty(), "host sentinel written: {left:?}");
        assert_eq!(
            std::fs::read("/etc/passwd").unwrap(),
            self.passwd,
            "host /etc/passwd changed"
        );
    }
}

fn pod(name: &str, restart: &str, containers: &str, volumes: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  restartPolicy: {restart}\n  containers:\n{containers}{volumes}"
    )
}

fn container(name: &str, image: &str, rest: &str) -> String {
    format!("  - name: {name}\n    image: {image}\n    imagePullPolicy: Never\n{rest}")
}

fn sentinel() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("podrun-sentinel-")
        .tempdir()
        .unwrap()
}

fn base() -> (Vec<u8>, Comp) {
    (busybox_layer(), Comp::Gzip)
}

// === scenarios ===

/// Scenarios 5 and 6: the image user against runAsUser/runAsGroup (the kubelet passes the
/// image's uid as runAsUser, so the image's group part never reaches the runtime).
#[test]
fn image_users_and_run_as_overrides_give_the_kubelets_ids() {
    let env = Env::new();
    let named = env.image(
        "named",
        &[base()],
        serde_json::json!({"User": "app", "Env": ["PATH=/bin"]}),
    );
    let pair = env.image(
        "pair",
        &[base()],
        serde_json::json!({"User": "1000:2000", "Env": ["PATH=/bin"]}),
    );
    let unknown = env.image(
        "unknown",
        &[base()],
        serde_json::json!({"User": "4242:4242", "Env": ["PATH=/bin"]}),
    );
    let ids = "    command: [sh, -c, \"id -u; id -g; id -G\"]\n";
    let manifest = pod(
        "users",
        "Never",
        &[
            container("named", &named, ids),
            container(
                "root",
                &named,
                &format!("{ids}    securityContext: {{runAsUser: 0}}\n"),
            ),
            container(
                "other",
                &named,
                &format!("{ids}    securityContext: {{runAsUser: 4242}}\n"),
            ),
            container("pair", &pair, ids),
            container("unknown", &unknown, ids),
        ]
        .concat(),
        "",
    );
    env.run_ok(&manifest);
    let lines =
        |c: &str| -> Vec<String> { env.logs("users", c).lines().map(String::from).collect() };
    let named = lines("named");
    assert_eq!(named[..2], ["1000", "1000"], "{named:?}");
    assert!(named[2].split(' ').any(|g| g == "2000"), "{named:?}");
    assert_eq!(lines("root")[..2], ["0", "0"]);
    assert_eq!(lines("other")[..2], ["4242", "0"]);
    assert_eq!(lines("pair")[..2], ["1000", "1000"]);
    assert_eq!(lines("unknown")[..2], ["4242", "0"]);
}

/// Scenarios 7 and 8: runAsNonRoot against the image's user, an unknown user and no command
/// at all, with the kubelet's and containerd's words.
#[test]
fn run_as_non_root_unknown_users_and_missing_commands_are_refused() {
    let env = Env::new();
    let named = env.image(
        "named",
        &[base()],
        serde_json::json!({"User": "app", "Cmd": ["sh", "-c", "echo ok"], "Env": ["PATH=/bin"]}),
    );
    let rootless = env.image(
        "rootless",
        &[base()],
        serde_json::json!({"Cmd": ["sh", "-c", "echo ok"], "Env": ["PATH=/bin"]}),
    );
    let numeric = env.image(
        "numeric",
        &[base()],
        serde_json::json!({"User": "1000", "Cmd": ["sh", "-c", "echo numeric-ok"], "Env": ["PATH=/bin"]}),
    );
    let nobody = env.image(
        "nobody",
        &[base()],
        serde_json::json!({"User": "nobody2", "Cmd": ["sh", "-c", "echo ok"], "Env": ["PATH=/bin"]}),
    );
    let bare = env.image("bare", &[base()], serde_json::json!({"Env": ["PATH=/bin"]}));
    let strict = "    securityContext: {runAsNonRoot: true}\n";
    let manifest = pod(
        "refused",
        "Never",
        &[
            container("named", &named, strict),
            container("rootless", &rootless, strict),
            container("numeric", &numeric, strict),
            container("nobody", &nobody, ""),
            container("bare", &bare, ""),
        ]
        .concat(),
        "",
    );
    let out = env.run(&manifest, &["--timeout", "8s"]);
    assert_eq!(
        out.status.code(),
        Some(124),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let rows = stdout(&out);
    assert!(rows.contains("CreateContainerConfigError"), "{rows}");
    let uid = env
        .event_objects("refused")
        .iter()
        .find_map(|v| v["involvedObject"]["uid"].as_str().map(String::from))
        .unwrap_or_default();
    let events = env.events("refused");
    let has = |want: &str| events.iter().any(|m| m == want);
    let label = format!("refused_default({uid})");
    assert!(
        has(&format!(
            "Error: container has runAsNonRoot and image has non-numeric user (app), cannot verify user is non-root (pod: \"{label}\", container: named)"
        )),
        "{events:#?}"
    );
    assert!(
        has(&format!(
            "Error: container has runAsNonRoot and image will run as root (pod: \"{label}\", container: rootless)"
        )),
        "{events:#?}"
    );
    assert!(
        events
            .iter()
            .any(|m| m.starts_with("Error: ") && m.contains("no users found")),
        "{events:#?}"
    );
    assert!(
        events
            .iter()
            .any(|m| m.starts_with("Error: ") && m.contains("no command specified")),
        "{events:#?}"
    );
    // A numeric non-root image user passes.
    assert!(
        env.event_objects("refused")
            .iter()
            .any(|v| v["reason"] == "Started"
                && v["involvedObject"]["fieldPath"]
                    .as_str()
                    .is_some_and(|f| f.contains("numeric"))),
        "{events:#?}"
    );
}

/// Scenarios 9–11: the root is the image's, with a minimal /dev, a read-only /sys, the pod's
/// /etc/hosts, /etc/resolv.conf and /etc/hostname; writes stay in the instance (not in the
/// layers, not in another pod, not after a restart) while an emptyDir survives the restart;
/// readOnlyRootFilesystem leaves the emptyDir, /dev/shm and /etc/hosts writable.
#[test]
fn the_container_sees_its_image_its_own_writes_and_the_pods_files() {
    let env = Env::new();
    let image = env.image(
        "plain",
        &[base()],
        serde_json::json!({"Env": ["PATH=/bin"], "Cmd": ["sh"]}),
    );
    let view = "    command: [sh, -c, \"ls / | tr '\\\\n' ' '; echo; ls /dev | tr '\\\\n' ' '; echo; \
                touch /sys/x 2>/dev/null && echo sys-rw || echo sys-ro; cat /etc/hostname; \
                grep -c view /etc/hosts; test -s /etc/resolv.conf && echo resolv\"]\n";
    // First instance writes /tmp/x and fails; the second finds the emptyDir mark only.
    let restart = "    command: [sh, -c, \"if test -e /scratch/ran; then cat /tmp/x 2>/dev/null || echo tmp-gone; cat /scratch/ran /dev/shm/s; \
                   else echo mine > /tmp/x; echo kept > /scratch/ran; echo shm-kept > /dev/shm/s; exit 1; fi\"]\n    \
                   volumeMounts: [{name: scratch, mountPath: /scratch}]\n";
    let read_only = "    command: [sh, -c, \"touch /x 2>&1; touch /scratch/w /dev/shm/w && echo h >> /etc/hosts && echo writable; \
                     echo x >> /etc/hostname || echo hostname-ro; echo x >> /etc/resolv.conf || echo resolv-ro\"]\n    \
                     securityContext: {readOnlyRootFilesystem: true}\n    \
                     volumeMounts: [{name: scratch, mountPath: /scratch}]\n";
    let volumes = "  volumes:\n  - {name: scratch, emptyDir: {}}\n";
    let view_pod = pod(
        "view",
        "Never",
        &[
            container("view", &image, view),
            container("ro", &image, read_only),
        ]
        .concat(),
        volumes,
    );
    let restart_pod = pod(
        "again",
        "OnFailure",
        &container("again", &image, restart),
        volumes,
    );
    let other = pod(
        "other",
        "Never",
        &container(
            "other",
            &image,
            "    command: [sh, -c, \"cat /tmp/x 2>/dev/null || echo not-shared\"]\n",
        ),
        "",
    );
    env.run_ok(&format!("{view_pod}\n---\n{restart_pod}\n---\n{other}"));

    let out = env.logs("view", "view");
    let lines: Vec<&str> = out.lines().collect();
    let root: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        root,
        ["bin", "dev", "etc", "proc", "sys", "tmp"],
        "/ is not the image's: {out}"
    );
    let dev: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        dev,
        [
            "fd",
            "full",
            "mqueue",
            "null",
            "ptmx",
            "pts",
            "random",
            "shm",
            "stderr",
            "stdin",
            "stdout",
            "termination-log",
            "tty",
            "urandom",
            "zero"
        ],
        "{out}"
    );
    assert_eq!(lines[2..], ["sys-ro", "view", "1", "resolv"], "{out}");

    let ro = env.logs("view", "ro");
    assert!(ro.contains("touch: /x: Read-only file system"), "{ro}");
    // containerd: /etc/hostname and /etc/resolv.conf are read-only with the root.
    let rest: Vec<&str> = ro.lines().filter(|l| !l.contains("Read-only")).collect();
    assert_eq!(rest, ["writable", "hostname-ro", "resolv-ro"], "{ro}");

    // The pod's /dev/shm (the sandbox's) outlives the container's restart.
    assert_eq!(
        env.logs("again", "again").trim(),
        "tmp-gone\nkept\nshm-kept"
    );
    let restarts = env.status("again")["status"]["containerStatuses"][0]["restartCount"].clone();
    assert_eq!(restarts, 1);
    assert_eq!(env.logs("other", "other").trim(), "not-shared");
    // Every pod's shm is unmounted with the pod.
    let pods = env.dir().join("state/pods");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(pods.to_str().unwrap()),
        "mounts left under {}",
        pods.display()
    );
    // Nothing was written into the unpacked layers.
    let layers = env.dir().join("state/images/layers");
    for l in std::fs::read_dir(&layers).unwrap().flatten() {
        assert!(!l.path().join("tmp/x").exists(), "a layer was written");
    }
}

/// Scenario 12 and 30–32: an image whose `/data` points at `/etc`, entries that climb out
/// with `..` or absolute names, symlinks to the host's sentinel (absolute and relative)
/// written through, and a hard link to `../../../../etc/passwd`: everything lands inside the
/// image, and the host is unchanged.
#[test]
fn hostile_paths_stay_inside_the_image() {
    let env = Env::new();
    let s = sentinel();
    let sp = s
        .path()
        .to_str()
        .unwrap()
        .trim_start_matches('/')
        .to_owned();
    let passwd_links = std::fs::metadata("/etc/passwd").unwrap().nlink();
    let hostile = Tar::default()
        .symlink("data", "/etc")
        .file(&format!("../../../../{sp}/pwned"), b"dotdot\n", ROOT)
        .file(&format!("/{sp}/abs"), b"abs\n", ROOT)
        .symlink("evil", &format!("/{sp}"))
        .file("evil/through-abs", b"through\n", ROOT)
        .symlink("rel", &format!("../../..//{sp}"))
        .file("rel/through-rel", b"through\n", ROOT)
        .hard_link("passwd-link", "../../../../etc/passwd")
        .finish();
    let image = env.image(
        "hostile",
        &[base(), (hostile, Comp::Gzip)],
        serde_json::json!({"Env": ["PATH=/bin"]}),
    );
    let script = format!(
        "ls /{sp} | tr '\\\\n' ' '; echo; cat /passwd-link | grep -c '^app:'; \
         ls /etc/from-volume 2>/dev/null || echo volume-on-etc; readlink /data; ls /etc | grep -c passwd"
    );
    let manifest = pod(
        "hostile",
        "Never",
        &container(
            "c",
            &image,
            &format!(
                "    command: [sh, -c, \"{script}; touch /data/from-volume\"]\n    \
                 volumeMounts: [{{name: scratch, mountPath: /data}}]\n"
            ),
        ),
        "  volumes:\n  - {name: scratch, emptyDir: {}}\n",
    );
    env.run_ok(&manifest);
    let out = env.logs("hostile", "c");
    let lines: Vec<&str> = out.lines().collect();
    let under: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        under,
        ["abs", "pwned", "through-abs", "through-rel"],
        "{out}"
    );
    // The hard link is the image's /etc/passwd, which has `app`; the host's may not.
    assert_eq!(lines[1], "1", "{out}");
    assert_eq!(lines[2], "volume-on-etc", "{out}");
    assert_eq!(lines[3], "/etc", "{out}");
    // The emptyDir is mounted on the container's /etc (hiding the image's files there).
    assert_eq!(lines[4], "0", "{out}");
    env.host_unchanged(s.path());
    assert_eq!(
        std::fs::metadata("/etc/passwd").unwrap().nlink(),
        passwd_links
    );
    assert!(!Path::new("/etc/from-volume").exists());
}

/// Scenarios 18–20: gzip, zstd and plain layers and Docker media types all unpack; whiteouts,
/// opaque directories and a same-layer whiteout behave as overlayfs does; hard links share
/// an inode (also to a lower layer's file); setuid, owners, modes, symlinks and mtimes kept.
#[test]
fn layer_formats_whiteouts_links_and_metadata_reach_the_container() {
    let env = Env::new();
    let meta = |mode, uid, gid| Meta {
        mode,
        uid,
        gid,
        mtime: 1_500_000_000,
    };
    let lower = Tar::default()
        .dir("w/", ROOT)
        .file("w/hidden", b"lower\n", ROOT)
        .file("w/kept", b"kept\n", ROOT)
        .dir("opq/", ROOT)
        .file("opq/old", b"old\n", ROOT)
        .file("lower-file", b"shared\n", ROOT)
        .file("zstd-file", b"zstd\n", ROOT)
        .finish();
    let plain = Tar::default()
        .file("plain-file", b"plain\n", ROOT)
        .file("w/.wh.hidden", b"", ROOT)
        .file("opq/.wh..wh..opq", b"", ROOT)
        .file("opq/new", b"new\n", ROOT)
        // A whiteout for a file this same layer writes does not hide it (either order).
        .file("w/.wh.same", b"", ROOT)
        .file("w/same", b"same\n", ROOT)
        .hard_link("link-to-lower", "lower-file")
        .file("meta/suid", b"#!/bin/sh\n", meta(0o4755, 0, 0))
        .file("meta/owned", b"owned\n", meta(0o640, 1000, 1000))
        .file("meta/a", b"a\n", ROOT)
        .hard_link("meta/b", "meta/a")
        .symlink("meta/sym", "../lower-file")
        .finish();
    let image = env.image(
        "formats",
        &[base(), (lower, Comp::Zstd), (plain, Comp::Plain)],
        serde_json::json!({"Env": ["PATH=/bin"]}),
    );
    let docker = env.image_with(
        "docker",
        &[
            base(),
            (
                Tar::default()
                    .file("docker-file", b"docker\n", ROOT)
                    .finish(),
                Comp::Gzip,
            ),
        ],
        serde_json::json!({"Env": ["PATH=/bin"]}),
        true,
    );
    let script = "cat /zstd-file /plain-file; ls /w | tr '\\\\n' ' '; echo; ls /opq | tr '\\\\n' ' '; echo; \
                  stat -c '%i' /meta/a /meta/b | uniq | wc -l; stat -c '%h' /meta/a; \
                  stat -c '%i' /lower-file /link-to-lower | uniq | wc -l; \
                  stat -c '%a %u:%g %Y' /meta/suid /meta/owned; readlink /meta/sym; cat /meta/sym";
    let manifest = pod(
        "formats",
        "Never",
        &[
            container(
                "c",
                &image,
                &format!("    command: [sh, -c, \"{script}\"]\n"),
            ),
            container("d", &docker, "    command: [cat, /docker-file]\n"),
        ]
        .concat(),
        "",
    );
    env.run_ok(&manifest);
    let out = env.logs("formats", "c");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "zstd",
            "plain",
            "kept same ",
            "new ",
            "1",
            "2",
            "1",
            "4755 0:0 1500000000",
            "640 1000:1000 1500000000",
            "../lower-file",
            "shared",
        ],
        "{out}"
    );
    assert_eq!(env.logs("formats", "d").trim(), "docker");
}

/// Scenarios 33, 34 and 36: bad whiteout names, an over-long name and a symlink loop fail
/// the load with a clean error and leave nothing half-unpacked; a character device is made
/// (as root) but cannot be opened on the `nodev` root.
#[test]
fn bad_layers_fail_cleanly_and_devices_are_inert() {
    let env = Env::new();
    let s = sentinel();
    let base_only = env.image("baseonly", &[base()], serde_json::json!({}));
    assert!(!base_only.is_empty());
    let cases: [(&str, Vec<u8>, &str); 4] = [
        (
            "dotdot",
            Tar::default().file("d/.wh..", b"", ROOT).finish(),
            "invalid whiteout name",
        ),
        (
            "dotdotdot",
            Tar::default().file("d/.wh...", b"", ROOT).finish(),
            "invalid whiteout name",
        ),
        (
            "long",
            Tar::default()
                .file_raw(&vec![b'a'; 4100], b"x", ROOT)
                .finish(),
            "name too long",
        ),
        (
            "loop",
            Tar::default()
                .symlink("l1", "l2")
                .symlink("l2", "l1")
                .file("l1/x", b"x", ROOT)
                .finish(),
            "too many levels of symbolic links",
        ),
    ];
    for (name, layer, want) in cases {
        let out = env.load(
            name,
            &[base(), (layer, Comp::Gzip)],
            serde_json::json!({}),
            false,
        );
        assert!(!out.status.success(), "{name} loaded");
        let err = stderr(&out).to_lowercase();
        assert!(err.contains(want), "{name}: {err}");
        let images = env.ok(&["images"]);
        assert!(!images.contains(&format!("localhost/{name}")), "{images}");
    }
    let layers = env.dir().join("state/images/layers");
    for l in std::fs::read_dir(&layers).unwrap().flatten() {
        let n = l.file_name().to_string_lossy().into_owned();
        assert!(!n.contains(".tmp-"), "half-unpacked layer left: {n}");
    }

    let device = env.image(
        "device",
        &[
            base(),
            (
                Tar::default().char_device("null-dev", 1, 3).finish(),
                Comp::Gzip,
            ),
        ],
        serde_json::json!({"Env": ["PATH=/bin"]}),
    );
    let manifest = pod(
        "device",
        "Never",
        &container(
            "c",
            &device,
            "    command: [sh, -c, \"stat -c '%F %t:%T' /null-dev; cat /null-dev 2>&1 || echo refused\"]\n",
        ),
        "",
    );
    env.run_ok(&manifest);
    let out = env.logs("device", "c");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "character special file 1:3", "{out}");
    assert!(
        out.contains("Permission denied") && out.trim_end().ends_with("refused"),
        "{out}"
    );
    env.host_unchanged(s.path());
}

/// Scenario 45: the image's StopSignal is what a graceful delete sends first; its Volumes are
/// filled from the image and writable under readOnlyRootFilesystem.
#[test]
fn stop_signal_and_image_volumes() {
    let env = Env::new();
    let out_dir = env.dir().join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let content = Tar::default()
        .dir("vol/", ROOT)
        .file(
            "vol/seed",
            b"seeded\n",
            Meta {
                mode: 0o644,
                ..ROOT
            },
        )
        .finish();
    let image = env.image(
        "stopvol",
        &[base(), (content, Comp::Gzip)],
        serde_json::json!({
            "Env": ["PATH=/bin"],
            "StopSignal": "SIGUSR1",
            "Volumes": {"/vol": {}},
        }),
    );
    let script = "trap 'echo got-usr1 > /out/signal; exit 0' USR1; \
                  trap 'echo got-term > /out/signal; exit 0' TERM; \
                  cat /vol/seed > /out/volume; echo new > /vol/new && echo writable >> /out/volume; \
                  touch /x 2>> /out/volume; echo ready > /out/ready; \
                  while true; do sleep 0.1; done";
    let manifest = pod(
        "stopper",
        "Never",
        &container(
            "c",
            &image,
            &format!(
                "    command: [sh, -c, \"{script}\"]\n    \
                 securityContext: {{readOnlyRootFilesystem: true}}\n    \
                 volumeMounts: [{{name: out, mountPath: /out}}]\n"
            ),
        ),
        &format!(
            "  volumes:\n  - {{name: out, hostPath: {{path: {}}}}}\n",
            out_dir.display()
        ),
    );
    let out = env.run(&manifest, &["--timeout", "6s"]);
    assert_eq!(
        out.status.code(),
        Some(124),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert_eq!(
        std::fs::read_to_string(out_dir.join("ready")).unwrap_or_default(),
        "ready\n"
    );
    assert_eq!(
        std::fs::read_to_string(out_dir.join("signal")).unwrap_or_default(),
        "got-usr1\n",
        "the image's StopSignal was not sent first"
    );
    let volume = std::fs::read_to_string(out_dir.join("volume")).unwrap();
    let lines: Vec<&str> = volume.lines().collect();
    assert_eq!(lines[..2], ["seeded", "writable"], "{volume}");
    assert!(lines[2].contains("Read-only file system"), "{volume}");
}
