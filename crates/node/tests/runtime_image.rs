//! Containers running from an image's layers as root: the overlay root with a fresh
//! writable layer per instance, the minimal `/dev`, read-only `/sys`, whiteouts, volumes and
//! the working directory resolved inside the image, `readOnlyRootFilesystem`, and a host
//! that stays unchanged whatever the image's symlinks point at.
//!
//! The layers are built here from the host's statically linked busybox. These tests need
//! root and fail loudly without it.

mod container_harness;

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use container_harness::{install_busybox, require_image_root, run_to_end, whiteout};
use podrun_node::runtime::image_root::ImageRoot;
use podrun_node::runtime::{BindMount, ContainerLaunch, PodIdentity};

/// Two layers: a base with busybox, `/etc/passwd`, `/etc/gone` and a symlink `/data ->
/// <host_target>`; a top layer that whites out `/etc/gone` and adds `/etc/top`.
fn build_layers(dir: &Path, host_target: &Path) -> Vec<PathBuf> {
    let base = dir.join("layers/base");
    for d in ["bin", "etc", "tmp"] {
        std::fs::create_dir_all(base.join(d)).expect("mkdir");
    }
    install_busybox(
        &base,
        &[
            "sh", "ls", "cat", "touch", "pwd", "echo", "stat", "mount", "grep",
        ],
    );
    std::fs::write(base.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").expect("passwd");
    std::fs::write(base.join("etc/gone"), "lower\n").expect("gone");
    std::fs::write(base.join("image-marker"), "from-image\n").expect("marker");
    symlink(host_target, base.join("data")).expect("data link");
    let top = dir.join("layers/top");
    std::fs::create_dir_all(top.join("etc")).expect("mkdir");
    std::fs::write(top.join("etc/top"), "top\n").expect("top");
    whiteout(&top.join("etc/gone"));
    vec![base, top]
}

fn launch(dir: &Path, layers: &[PathBuf], restart: i32, script: &str) -> ContainerLaunch {
    let instance = dir.join(format!("pod/c/{restart}"));
    ContainerLaunch {
        pod: PodIdentity {
            namespace: "default".into(),
            name: "img".into(),
            uid: "u-img".into(),
        },
        container_name: "c".into(),
        restart_count: restart,
        argv: vec!["sh".into(), "-c".into(), script.into()],
        env: vec![("PATH".into(), "/bin".into())],
        log_path: dir.join(format!("logs/c/{restart}.log")),
        image: Some(ImageRoot {
            layers: layers.to_vec(),
            upper: instance.join("upper"),
            work: instance.join("work"),
        }),
        ..Default::default()
    }
}

fn sentinel() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("podrun-sentinel-")
        .tempdir()
        .expect("sentinel")
}

fn host_unchanged(sentinel: &Path) {
    let left: Vec<_> = std::fs::read_dir(sentinel)
        .expect("sentinel")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "host sentinel dir was written: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_root_is_the_image_with_minimal_dev_read_only_sys_and_whiteouts() {
    require_image_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let s = sentinel();
    let layers = build_layers(dir.path(), s.path());
    let script = "ls / | tr '\\n' ' '; echo; cat /image-marker; ls /dev | tr '\\n' ' '; echo; \
                  touch /sys/x 2>/dev/null && echo sys-writable || echo sys-ro; \
                  cat /etc/gone 2>/dev/null || echo gone-hidden; cat /etc/top";
    let (code, out) = run_to_end(&launch(dir.path(), &layers, 0, script)).await;
    assert_eq!(code, 0, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    let root: Vec<&str> = lines[0].split_whitespace().collect();
    for want in [
        "bin",
        "data",
        "dev",
        "etc",
        "image-marker",
        "proc",
        "sys",
        "tmp",
    ] {
        assert!(root.contains(&want), "/ lacks {want}: {root:?}");
    }
    for host_only in ["usr", "home", "work", "root", "var"] {
        assert!(
            !root.contains(&host_only),
            "host's /{host_only} is visible: {root:?}"
        );
    }
    assert_eq!(lines[1], "from-image");
    let dev: Vec<&str> = lines[2].split_whitespace().collect();
    for want in ["null", "zero", "urandom", "pts", "shm", "fd"] {
        assert!(dev.contains(&want), "/dev lacks {want}: {dev:?}");
    }
    assert!(!dev.contains(&"sda") && !dev.contains(&"vda"), "{dev:?}");
    assert_eq!(lines[3], "sys-ro");
    assert_eq!(lines[4], "gone-hidden");
    assert_eq!(lines[5], "top");
    host_unchanged(s.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_land_in_the_instance_upper_and_a_restart_starts_empty() {
    require_image_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let s = sentinel();
    let layers = build_layers(dir.path(), s.path());
    let first = launch(dir.path(), &layers, 0, "echo hi > /tmp/x && cat /tmp/x");
    let (code, out) = run_to_end(&first).await;
    assert_eq!((code, out.as_str()), (0, "hi"));
    let upper = &first.image.as_ref().expect("image").upper;
    assert_eq!(
        std::fs::read_to_string(upper.join("tmp/x")).expect("upper"),
        "hi\n"
    );
    assert!(!layers[0].join("tmp/x").exists(), "a layer was written");
    // The next instance (and the same instance started again) sees none of it.
    for restart in [1, 0] {
        let mut again = launch(
            dir.path(),
            &layers,
            restart,
            "cat /tmp/x 2>/dev/null || echo absent",
        );
        again.log_path = dir.path().join(format!("logs/again-{restart}.log"));
        let (_, out) = run_to_end(&again).await;
        assert_eq!(out, "absent", "restart {restart}");
    }
    host_unchanged(s.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volumes_follow_image_symlinks_inside_the_root_and_never_reach_the_host() {
    require_image_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let s = sentinel();
    // The image's `/data` points at the host's sentinel path: the volume must land on that
    // path inside the image, created in the upper layer.
    let layers = build_layers(dir.path(), s.path());
    let vol = dir.path().join("vol");
    std::fs::create_dir_all(&vol).expect("vol");
    std::fs::write(vol.join("in-volume"), "v\n").expect("vol file");
    let mut l = launch(
        dir.path(),
        &layers,
        0,
        &format!(
            "cat {}/in-volume && echo w > /data/written && pwd",
            s.path().display()
        ),
    );
    l.mounts = vec![BindMount {
        source: vol.clone(),
        target: PathBuf::from("/data"),
        read_only: false,
    }];
    l.working_dir = Some(PathBuf::from("/work/dir"));
    let (code, out) = run_to_end(&l).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(out, "v\n/work/dir");
    assert_eq!(
        std::fs::read_to_string(vol.join("written")).expect("written"),
        "w\n"
    );
    host_unchanged(s.path());
    assert!(
        !Path::new("/work/dir").exists(),
        "working dir made on the host"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_root_filesystem_keeps_volumes_and_dev_shm_writable() {
    require_image_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let s = sentinel();
    let layers = build_layers(dir.path(), s.path());
    let vol = dir.path().join("vol");
    std::fs::create_dir_all(&vol).expect("vol");
    let mut l = launch(
        dir.path(),
        &layers,
        0,
        "touch /x 2>&1; touch /vol/ok && touch /dev/shm/ok && echo writable",
    );
    l.mounts = vec![BindMount {
        source: vol.clone(),
        target: PathBuf::from("/vol"),
        read_only: false,
    }];
    l.read_only_rootfs = true;
    let (code, out) = run_to_end(&l).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Read-only file system"), "{out}");
    assert!(out.ends_with("writable"), "{out}");
    assert!(vol.join("ok").exists());
    host_unchanged(s.path());
}
