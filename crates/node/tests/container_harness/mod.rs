//! Shared pieces of the runtime tests that run one container to its end: the container's
//! log as text, and image layers built from the host's statically linked busybox.

// Each test binary uses a part of this module.
#![allow(dead_code)]

use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::Duration;

use podrun_node::runtime::{ContainerLaunch, ContainerProcess};

/// The host's statically linked busybox the layers are built from.
pub const BUSYBOX: &str = "/bin/busybox";

/// Fails loudly unless the tests can mount overlayfs in their own mount namespaces.
pub fn require_image_root() {
    assert!(
        podrun_node::runtime::isolation_available(),
        "these tests need root (mount namespaces, overlayfs); run them as root like CI does"
    );
}

/// The container's output: each log line without its timestamp, stream and tag.
pub fn log_text(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.splitn(4, ' ').nth(3))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Spawns the container and waits (at most 20 s, then 5 s for its logs) for it to end;
/// its exit code and output.
pub async fn run_to_end(l: &ContainerLaunch) -> (i32, String) {
    let c = ContainerProcess::spawn(l).expect("spawn");
    let exit = tokio::time::timeout(Duration::from_secs(20), c.wait())
        .await
        .expect("exit");
    tokio::time::timeout(Duration::from_secs(5), c.logs_done())
        .await
        .expect("logs");
    (exit.exit_code, log_text(&l.log_path))
}

/// `bin/busybox` in the layer `base` (its `bin` made already) with `applets` linked to it.
pub fn install_busybox(base: &Path, applets: &[&str]) {
    std::fs::copy(BUSYBOX, base.join("bin/busybox")).expect("copy busybox");
    for applet in applets {
        symlink("busybox", base.join("bin").join(applet)).expect("applet");
    }
}

/// An overlay whiteout (a 0:0 character device) at `path`.
pub fn whiteout(path: &Path) {
    nix::sys::stat::mknod(
        path,
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::empty(),
        0,
    )
    .expect("whiteout");
}
