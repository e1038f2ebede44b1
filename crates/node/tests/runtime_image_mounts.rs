//! What a container running from an image sees beyond its layers, as root: the kubelet's
//! masked and read-only `/proc` and `/sys` paths (none for a privileged container), its own
//! cgroup at `/sys/fs/cgroup` in a cgroup namespace, `/dev/mqueue`, a 64 MiB `/dev/shm`, the
//! image's `Volumes` filled from the image and writable under `readOnlyRootFilesystem`, and
//! the image's `StopSignal` sent instead of SIGTERM.
//!
//! The layers are built here from the host's statically linked busybox. These tests need
//! root and fail loudly without it.

mod container_harness;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use container_harness::{install_busybox, log_text, require_image_root, run_to_end, whiteout};
use podrun_node::runtime::image_root::ImageRoot;
use podrun_node::runtime::{BindMount, ContainerLaunch, ContainerProcess, PodIdentity};

/// One layer with busybox and `/data/seed` (owned 1000:1000, mode 0640), `/data/sub/deep`;
/// a second one that adds `/data/top` and whites out `/data/gone`.
fn build_layers(dir: &Path) -> Vec<PathBuf> {
    let base = dir.join("layers/base");
    for d in ["bin", "etc", "data/sub"] {
        std::fs::create_dir_all(base.join(d)).expect("mkdir");
    }
    install_busybox(
        &base,
        &[
            "sh", "ls", "cat", "touch", "echo", "stat", "grep", "wc", "sleep", "[",
        ],
    );
    let seed = base.join("data/seed");
    std::fs::write(&seed, "seeded\n").expect("seed");
    std::fs::set_permissions(&seed, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    std::os::unix::fs::chown(&seed, Some(1000), Some(1000)).expect("chown");
    std::fs::write(base.join("data/sub/deep"), "deep\n").expect("deep");
    std::fs::write(base.join("data/gone"), "lower\n").expect("gone");
    let top = dir.join("layers/top");
    std::fs::create_dir_all(top.join("data")).expect("mkdir");
    std::fs::write(top.join("data/top"), "top\n").expect("top");
    whiteout(&top.join("data/gone"));
    vec![base, top]
}

fn launch(dir: &Path, layers: &[PathBuf], name: &str, script: &str) -> ContainerLaunch {
    let instance = dir.join(format!("pod/{name}/0"));
    ContainerLaunch {
        pod: PodIdentity {
            namespace: "default".into(),
            name: "img".into(),
            uid: "u-img".into(),
        },
        container_name: name.into(),
        argv: vec!["sh".into(), "-c".into(), script.into()],
        env: vec![("PATH".into(), "/bin".into())],
        log_path: dir.join(format!("logs/{name}.log")),
        image: Some(ImageRoot {
            layers: layers.to_vec(),
            upper: instance.join("upper"),
            work: instance.join("work"),
        }),
        ..Default::default()
    }
}

/// Prints one line per check; every path the host kernel lacks is skipped.
fn probe() -> String {
    let masked = podrun_node::runtime::image_root::MASKED_PATHS.join(" ");
    format!(
        "exec 2>/dev/null; \
         for p in {masked}; do \
           if [ -d $p ]; then echo \"$p $(ls -A $p | wc -l)\"; \
           elif [ -e $p ]; then echo \"$p $(cat $p | wc -c)\"; fi; \
         done; \
         for p in /proc/bus /proc/fs /proc/irq; do \
           [ -e $p ] && echo \"$p $(grep -c \" $p [a-z]* ro,\" /proc/mounts)\"; \
         done; \
         echo h > /proc/sys/kernel/hostname && echo procsys-writable || echo procsys-ro; \
         touch /sys/x && echo sys-writable || echo sys-ro; \
         grep -c '^0::/$' /proc/self/cgroup; \
         grep -c ' /sys/fs/cgroup cgroup2 ro,' /proc/mounts; \
         grep -c ' /dev/mqueue mqueue ' /proc/mounts; \
         grep ' /dev/shm ' /proc/mounts | grep -c 'size=65536k'"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proc_and_sys_paths_are_masked_or_read_only_unless_privileged() {
    require_image_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let layers = build_layers(dir.path());
    let (code, out) = run_to_end(&launch(dir.path(), &layers, "plain", &probe())).await;
    assert_eq!(code, 0, "{out}");
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    let n = lines.len();
    assert!(n >= 6, "{out}");
    let checked: Vec<&str> = lines[..n - 6].to_vec();
    let on_host = podrun_node::runtime::image_root::MASKED_PATHS
        .iter()
        .chain(&["/proc/bus", "/proc/fs", "/proc/irq"])
        .filter(|p| Path::new(p).exists())
        .count();
    assert_eq!(checked.len(), on_host, "{out}");
    for line in &checked {
        let (path, n) = line.rsplit_once(' ').expect("path count");
        let want = if path.starts_with("/proc/bus")
            || path.starts_with("/proc/fs")
            || path.starts_with("/proc/irq")
        {
            "1"
        } else {
            "0"
        };
        assert_eq!(n, want, "{path} is not masked or read-only: {out}");
    }
    assert_eq!(
        lines[n - 6..],
        ["procsys-ro", "sys-ro", "1", "1", "1", "1"],
        "(/proc/sys, /sys, cgroup namespace, /sys/fs/cgroup, /dev/mqueue, /dev/shm size) {out}"
    );

    // Privileged: nothing masked, /proc/sys writable (in an own UTS namespace here: the
    // launch asks for one through its hostname), /sys mounted read-write.
    let mut privileged = launch(
        dir.path(),
        &layers,
        "privileged",
        "exec 2>/dev/null; wc -c < /proc/interrupts; \
         echo h > /proc/sys/kernel/hostname && echo procsys-writable || echo procsys-ro; \
         grep -c ' /sys sysfs rw,' /proc/mounts",
    );
    privileged.privileged = true;
    privileged.hostname = Some("img".into());
    let (code, out) = run_to_end(&privileged).await;
    assert_eq!(code, 0, "{out}");
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    assert_ne!(lines[0], "0", "/proc/interrupts masked: {out}");
    assert_eq!(lines[1..], ["procsys-writable", "1"], "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_volumes_are_filled_from_the_image_and_writable_under_a_read_only_root() {
    require_image_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let layers = build_layers(dir.path());
    let mut l = launch(
        dir.path(),
        &layers,
        "vol",
        "cat /data/seed /data/sub/deep /data/top; ls /data/gone 2>/dev/null || echo gone-hidden; \
         stat -c '%u:%g %a' /data/seed; echo new > /data/new && echo volume-writable; \
         touch /x 2>&1; ls /empty | wc -l; touch /empty/f && echo empty-writable",
    );
    l.read_only_rootfs = true;
    l.image_volumes = vec![PathBuf::from("/data"), PathBuf::from("/empty")];
    let (code, out) = run_to_end(&l).await;
    assert_eq!(code, 0, "{out}");
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    assert_eq!(
        lines[..4],
        ["seeded", "deep", "top", "gone-hidden"],
        "{out}"
    );
    assert_eq!(lines[4], "1000:1000 640", "{out}");
    assert_eq!(lines[5], "volume-writable", "{out}");
    assert!(lines[6].contains("Read-only file system"), "{out}");
    assert_eq!(lines[7..], ["0", "empty-writable"], "{out}");
    // The writes went to the container's own copy, never into a layer.
    assert!(!layers[0].join("data/new").exists());
    assert!(!layers[1].join("data/new").exists());
    let seed = std::fs::metadata(layers[0].join("data/seed")).expect("seed");
    assert_eq!(seed.uid(), 1000);

    // A pod volume at the same path wins: the image's files are not copied into it.
    let vol = dir.path().join("podvol");
    std::fs::create_dir_all(&vol).expect("vol");
    let mut l = launch(
        dir.path(),
        &layers,
        "podvol",
        "ls /data | wc -l; echo w > /data/w",
    );
    l.image_volumes = vec![PathBuf::from("/data")];
    l.mounts = vec![BindMount {
        source: vol.clone(),
        target: PathBuf::from("/data"),
        read_only: false,
    }];
    let (code, out) = run_to_end(&l).await;
    assert_eq!((code, out.trim()), (0, "0"), "{out}");
    assert!(vol.join("w").exists());
    assert!(!vol.join("seed").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_stop_signal_replaces_sigterm() {
    require_image_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let layers = build_layers(dir.path());
    let mut l = launch(
        dir.path(),
        &layers,
        "stop",
        "trap 'echo got-usr1; exit 3' USR1; trap 'echo got-term; exit 4' TERM; echo ready; \
         while true; do sleep 0.05; done",
    );
    l.stop_signal = Some(libc::SIGUSR1);
    let c = ContainerProcess::spawn(&l).expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !log_text(&l.log_path).contains("ready") {
        assert!(Instant::now() < deadline, "the container never got ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    c.signal(nix::sys::signal::Signal::SIGTERM).expect("signal");
    let exit = tokio::time::timeout(Duration::from_secs(10), c.wait())
        .await
        .expect("exit");
    tokio::time::timeout(Duration::from_secs(5), c.logs_done())
        .await
        .expect("logs");
    assert_eq!(exit.exit_code, 3, "{}", log_text(&l.log_path));
    assert!(log_text(&l.log_path).ends_with("got-usr1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_joins_the_containers_cgroup_namespace() {
    require_image_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let layers = build_layers(dir.path());
    // The container in a cgroup of its own on the cgroup2 hierarchy, so that a command
    // outside its cgroup namespace would see a longer path than `/`.
    let mounts = std::fs::read_to_string("/proc/self/mounts").expect("mounts");
    let v2 = mounts
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(f[1]))
        })
        .expect("a cgroup2 hierarchy");
    let cgroup = v2.join(format!("podrun-test-exec-{}", std::process::id()));
    std::fs::create_dir(&cgroup).expect("cgroup");
    let mut l = launch(
        dir.path(),
        &layers,
        "exec",
        "while true; do sleep 0.05; done",
    );
    l.cgroup = vec![cgroup.clone()];
    let c = ContainerProcess::spawn(&l).expect("spawn");
    let out = podrun_node::runtime::exec_in(
        &c,
        &[
            "grep".into(),
            "-c".into(),
            "^0::/$".into(),
            "/proc/self/cgroup".into(),
        ],
        &[("PATH".into(), "/bin".into())],
        Duration::from_secs(10),
    )
    .await
    .expect("exec");
    c.signal(nix::sys::signal::Signal::SIGKILL).expect("kill");
    tokio::time::timeout(Duration::from_secs(10), c.wait())
        .await
        .expect("exit");
    let removed = std::fs::remove_dir(&cgroup);
    assert_eq!(
        (out.exit_code, out.text().trim()),
        (0, "1"),
        "{}",
        out.text()
    );
    removed.expect("cgroup removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pods_dev_shm_is_shared_by_its_containers_and_outlives_them() {
    require_image_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let layers = build_layers(dir.path());
    let shm = dir.path().join("pod/shm");
    let mut first = launch(
        dir.path(),
        &layers,
        "first",
        "echo from-first > /dev/shm/note && grep ' /dev/shm ' /proc/mounts | grep -c 'size=65536k'",
    );
    first.pod_shm = Some(shm.clone());
    let mut second = launch(dir.path(), &layers, "second", "cat /dev/shm/note");
    second.pod_shm = Some(shm.clone());
    let (code, out) = run_to_end(&first).await;
    assert_eq!((code, out.trim()), (0, "1"), "{out}");
    let (code, out) = run_to_end(&second).await;
    // The test unmounts what the runtime mounted for the pod (as the pod's teardown does).
    let on_host = std::fs::read_to_string(shm.join("note"));
    let unmounted = nix::mount::umount2(&shm, nix::mount::MntFlags::MNT_DETACH);
    assert_eq!((code, out.as_str()), (0, "from-first"), "{out}");
    assert_eq!(on_host.expect("note on the pod's shm"), "from-first\n");
    unmounted.expect("the pod's shm was a mount of its own");
}
