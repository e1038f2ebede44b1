//! The root of a container that runs from its image, decided as data.
//!
//! [`plan_image_rootfs`] turns the image's unpacked layers, the instance's writable layer and
//! the requested bind mounts into [`MountOp`]s for the child: an overlayfs of the layers with a
//! new upper directory mounted at [`ROOTFS_MOUNTPOINT`] inside the child's private mount
//! namespace, then `/proc`, a minimal `/dev`, `/sys` read-only, the volumes and the working
//! directory, an optional read-only remount and `pivot_root`.
//!
//! Mount targets and the working directory are resolved here, in the parent, **inside the
//! image**: every symlink is followed as the container would see it (an absolute target
//! starts again at the image root, `..` never climbs above it), so the child only receives
//! paths without symlinks under the new root. The upper layer is empty when the plan is made,
//! so what the container sees is what the layers hold; missing components are created in the
//! upper layer, never in a layer or on the host.

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use super::rootfs::{
    EntryKind, MountOp, PlanError, PlannedBind, ROOTFS_MOUNTPOINT, RootView, plan_dev,
    resolve_in_root,
};

/// Largest mount option string the kernel accepts (one page, with its terminating NUL).
const MAX_MOUNT_DATA: usize = 4095;

/// The file systems a container of an image runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRoot {
    /// The image's unpacked layer directories (overlayfs lower-layer form), lowest first.
    pub layers: Vec<PathBuf>,
    /// This instance's writable layer: an empty directory.
    pub upper: PathBuf,
    /// overlayfs' work directory, on the same file system as `upper`: an empty directory.
    pub work: PathBuf,
}

/// What the container sees at a path of its image, before anything is mounted.
pub trait ImageView {
    /// The kind of container path `path` (absolute, without symlinks or `..`), or `None` when
    /// absent.
    fn kind(&self, path: &Path) -> Option<EntryKind>;
}

/// The merged view of overlayfs lower layers on disk: the topmost layer holding an entry
/// decides; a whiteout (character device 0:0) hides it, an opaque directory or a
/// non-directory hides everything below it in lower layers.
#[derive(Debug, Clone)]
pub struct LayerStack<'a> {
    /// Lowest first.
    layers: &'a [PathBuf],
}

impl<'a> LayerStack<'a> {
    /// The view of `layers` (lowest first).
    pub fn new(layers: &'a [PathBuf]) -> Self {
        Self { layers }
    }
}

impl ImageView for LayerStack<'_> {
    fn kind(&self, path: &Path) -> Option<EntryKind> {
        let rel = path.strip_prefix("/").unwrap_or(path);
        if rel.as_os_str().is_empty() {
            return Some(EntryKind::Dir);
        }
        for layer in self.layers.iter().rev() {
            let (present, stop) = ancestors(layer, rel);
            if present {
                let full = layer.join(rel);
                if let Ok(md) = std::fs::symlink_metadata(&full) {
                    let ft = md.file_type();
                    return if ft.is_char_device() && md.rdev() == 0 {
                        None
                    } else if ft.is_dir() {
                        Some(EntryKind::Dir)
                    } else if ft.is_symlink() {
                        Some(EntryKind::Symlink(std::fs::read_link(&full).ok()?))
                    } else {
                        Some(EntryKind::File)
                    };
                }
            }
            if stop {
                return None;
            }
        }
        None
    }
}

/// The parents of `rel` in `layer`, each checked without following anything: whether they
/// are all real directories (so `layer/rel` names this layer's entry and no symlink of a
/// layer is ever followed on the host), and whether lower layers are hidden below them (an
/// opaque directory, or a non-directory, which overlayfs never merges through).
fn ancestors(layer: &Path, rel: &Path) -> (bool, bool) {
    let mut dir = layer.to_path_buf();
    let mut opaque = false;
    for c in rel.parent().into_iter().flat_map(|p| p.components()) {
        dir.push(c);
        match std::fs::symlink_metadata(&dir) {
            Ok(md) if md.is_dir() => opaque |= is_opaque(&dir),
            Ok(_) => return (false, true),
            Err(_) => return (false, opaque),
        }
    }
    (true, opaque)
}

/// overlayfs' opaque marker (`trusted.overlay.opaque`, or `user.overlay.opaque` for layers
/// unpacked without root).
fn is_opaque(dir: &Path) -> bool {
    ["trusted.overlay.opaque", "user.overlay.opaque"]
        .iter()
        .any(|name| {
            let mut buf = [0u8; 4];
            matches!(rustix::fs::lgetxattr(dir, *name, &mut buf), Ok(n) if n >= 1 && buf[0] == b'y')
        })
}

/// Entries the plan puts in the fresh `/dev`, with their kinds.
const DEV_ENTRIES: [(&str, bool); 14] = [
    ("null", false),
    ("zero", false),
    ("full", false),
    ("random", false),
    ("urandom", false),
    ("tty", false),
    ("fd", false),
    ("stdin", false),
    ("stdout", false),
    ("stderr", false),
    ("ptmx", false),
    ("pts", true),
    ("shm", true),
    ("mqueue", true),
];

/// The container's view while planning: the image, the synthetic trees and the volumes
/// mounted so far.
struct Planner<'a> {
    image: &'a dyn ImageView,
    /// Container paths the plan creates (`true` for a directory).
    created: BTreeMap<PathBuf, bool>,
    /// Volumes mounted so far: container path → host source.
    volumes: Vec<(PathBuf, PathBuf)>,
}

impl Planner<'_> {
    fn kind(&self, cpath: &Path) -> Option<EntryKind> {
        if let Some(is_dir) = self.created.get(cpath) {
            return Some(if *is_dir {
                EntryKind::Dir
            } else {
                EntryKind::File
            });
        }
        if let Some((t, src)) = self
            .volumes
            .iter()
            .filter(|(t, _)| cpath.starts_with(t))
            .max_by_key(|(t, _)| t.components().count())
        {
            let host = src.join(cpath.strip_prefix(t).unwrap_or(Path::new("")));
            return host_kind(&host);
        }
        for synthetic in ["/proc", "/sys"] {
            if cpath == Path::new(synthetic) {
                return Some(EntryKind::Dir);
            }
            if cpath.starts_with(synthetic) {
                // Only what the kernel shows there; nothing may be created in it.
                return None;
            }
        }
        if cpath == Path::new("/dev") {
            return Some(EntryKind::Dir);
        }
        if let Ok(rest) = cpath.strip_prefix("/dev") {
            let mut it = rest.components();
            let first = it.next()?.as_os_str().to_os_string();
            let (_, is_dir) = DEV_ENTRIES.iter().find(|(n, _)| first == *n)?;
            return match (it.next(), is_dir) {
                (None, true) => Some(EntryKind::Dir),
                (None, false) => Some(EntryKind::File),
                _ => None,
            };
        }
        self.image.kind(cpath)
    }
}

impl RootView for Planner<'_> {
    fn kind(&self, cpath: &Path) -> Option<EntryKind> {
        Planner::kind(self, cpath)
    }

    fn will_create(
        &mut self,
        parent: &Path,
        path: &Path,
        is_dir: bool,
        target: &Path,
    ) -> Result<(), PlanError> {
        if parent.starts_with("/proc") || parent.starts_with("/sys") {
            // Only what the kernel shows there; nothing may be created in it.
            return Err(PlanError::NotADirectory {
                target: target.to_path_buf(),
                component: path.to_path_buf(),
            });
        }
        self.created.insert(path.to_path_buf(), is_dir);
        Ok(())
    }
}

fn host_kind(path: &Path) -> Option<EntryKind> {
    let md = std::fs::symlink_metadata(path).ok()?;
    Some(if md.is_dir() {
        EntryKind::Dir
    } else if md.file_type().is_symlink() {
        EntryKind::Symlink(std::fs::read_link(path).ok()?)
    } else {
        EntryKind::File
    })
}

fn under(root: &Path, container_path: &Path) -> PathBuf {
    root.join(container_path.strip_prefix("/").unwrap_or(container_path))
}

fn is_normal_absolute(p: &Path) -> bool {
    p.is_absolute()
        && p.components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
}

/// overlayfs' mount options for `root` (upper layers first in `lowerdir`).
pub fn overlay_options(root: &ImageRoot, empty_lower: &Path) -> Result<String, PlanError> {
    let mut lowers: Vec<&Path> = root.layers.iter().rev().map(PathBuf::as_path).collect();
    if lowers.is_empty() {
        lowers.push(empty_lower);
    }
    let mut all = lowers.clone();
    all.push(&root.upper);
    all.push(&root.work);
    for p in &all {
        let text = p.to_string_lossy();
        if !p.is_absolute() || text.contains([':', ',', '\\']) {
            return Err(PlanError::BadLayerPath(p.to_path_buf()));
        }
    }
    let lowerdir = lowers
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(":");
    let options = format!(
        "lowerdir={lowerdir},upperdir={},workdir={}",
        root.upper.display(),
        root.work.display()
    );
    if options.len() > MAX_MOUNT_DATA {
        return Err(PlanError::TooManyLayers(root.layers.len()));
    }
    Ok(options)
}

/// `/proc` and `/sys` paths hidden from a container that is not privileged: the kubelet's
/// default `procMount` list (pkg/securitycontext), which it hands to the runtime through the
/// CRI; each thermal-throttle directory of a CPU is added by [`masked_paths`].
pub const MASKED_PATHS: [&str; 12] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// `/proc` paths a container that is not privileged sees read-only (the kubelet's default).
pub const READ_ONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// [`MASKED_PATHS`] with the `thermal_throttle` directory of every CPU this host has, and
/// whether each is a directory (as the host's `/proc` and `/sys` show it: same kernel).
pub fn masked_paths() -> Vec<(PathBuf, bool)> {
    let mut out: Vec<PathBuf> = MASKED_PATHS.iter().map(PathBuf::from).collect();
    if let Ok(cpus) = std::fs::read_dir("/sys/devices/system/cpu") {
        let mut extra: Vec<PathBuf> = cpus
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_prefix("cpu"))
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            })
            .map(|e| e.path().join("thermal_throttle"))
            .filter(|p| p.exists())
            .collect();
        extra.sort();
        out.extend(extra);
    }
    out.into_iter()
        .map(|p| {
            let dir = std::fs::metadata(&p).map(|m| m.is_dir()).unwrap_or(false);
            (p, dir)
        })
        .collect()
}

/// What a container of an image takes from its config beyond argv, env, working directory
/// and user: the `StopSignal` (sent instead of SIGTERM) and the `Volumes`.
pub fn apply_image_config(
    launch: &mut super::ContainerLaunch,
    image: &podrun_images::EnsuredImage,
) {
    let Some(cfg) = image.config.config().as_ref() else {
        return;
    };
    launch.stop_signal = cfg.stop_signal().as_deref().and_then(|s| {
        let sig = parse_signal(s);
        if sig.is_none() {
            tracing::warn!(signal = %s, container = %launch.container_name, "the image's StopSignal is unknown; SIGTERM stops the container");
        }
        sig
    });
    launch.image_volumes = cfg
        .volumes()
        .iter()
        .flatten()
        .map(|v| clean_container_path(v))
        .collect();
    launch.image_volumes.sort();
    launch.image_volumes.dedup();
}

/// A signal as the image config names it (moby's `ParseSignal`): a number, or a name with
/// or without `SIG`, any case.
pub fn parse_signal(text: &str) -> Option<i32> {
    let text = text.trim();
    if let Ok(n) = text.parse::<i32>() {
        return (1..=libc::SIGRTMAX()).contains(&n).then_some(n);
    }
    let upper = text.to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    format!("SIG{bare}")
        .parse::<nix::sys::signal::Signal>()
        .ok()
        .map(|s| s as i32)
}

/// `filepath.Clean("/" + p)`: absolute, `..` stopping at the root.
fn clean_container_path(p: &str) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in Path::new(p).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// containerd's rule for the pod's files in a container: `/etc/hostname` and
/// `/etc/resolv.conf` are read-only exactly when the root file system is, `/etc/hosts` stays
/// writable.
pub fn pod_file_modes(binds: &mut [PlannedBind], read_only_root: bool) {
    for b in binds.iter_mut() {
        if b.target == Path::new("/etc/hostname") || b.target == Path::new("/etc/resolv.conf") {
            b.read_only = read_only_root;
        } else if b.target == Path::new("/etc/hosts") {
            b.read_only = false;
        }
    }
}

/// The image's `Volumes` as containerd's CRI makes them: a new directory per volume under
/// `dir`, filled with what the image holds at that path (owners, modes, symlinks kept),
/// bind-mounted writable even under `readOnlyRootFilesystem`. A volume at a path where a
/// pod volume is `mounted` is left to that volume.
pub fn prepare_image_volumes(
    root: &ImageRoot,
    volumes: &[PathBuf],
    mounted: &[PathBuf],
    dir: &Path,
) -> std::io::Result<Vec<PlannedBind>> {
    let mut binds = Vec::new();
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    for (i, target) in volumes.iter().enumerate() {
        if mounted.iter().any(|m| m == target) || target == Path::new("/") {
            continue;
        }
        let source = dir.join(i.to_string());
        std::fs::create_dir_all(&source)?;
        let stack = LayerStack::new(&root.layers);
        let mut probe = Probe(&stack);
        if let Ok((resolved, _)) = resolve_in_root(&mut probe, target, true)
            && stack.kind(&resolved) == Some(EntryKind::Dir)
        {
            copy_merged(&root.layers, &resolved, &source)?;
        }
        binds.push(PlannedBind {
            source,
            target: target.clone(),
            read_only: false,
        });
    }
    Ok(binds)
}

/// The image as it is, for finding what a volume path holds: nothing may be created.
struct Probe<'a>(&'a LayerStack<'a>);

impl RootView for Probe<'_> {
    fn kind(&self, cpath: &Path) -> Option<EntryKind> {
        self.0.kind(cpath)
    }

    fn will_create(&mut self, _: &Path, _: &Path, _: bool, target: &Path) -> Result<(), PlanError> {
        Err(PlanError::MissingSource(target.to_path_buf()))
    }
}

/// Copies directory `cdir` of the merged view of `layers` (lowest first) into `dest` (an
/// existing directory): the topmost layer holding a name decides, whiteouts hide, an
/// opaque directory or a non-directory stops the lower layers. Devices, fifos and sockets
/// are left out; hard links become copies.
fn copy_merged(layers: &[PathBuf], cdir: &Path, dest: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{PermissionsExt, lchown};
    let rel = cdir.strip_prefix("/").unwrap_or(cdir);
    let mut entries: BTreeMap<std::ffi::OsString, Option<PathBuf>> = BTreeMap::new();
    let mut dir_meta = None;
    for layer in layers.iter().rev() {
        let (present, stop) = if rel.as_os_str().is_empty() {
            (true, false)
        } else {
            ancestors(layer, rel)
        };
        let here = layer.join(rel);
        let md = if present {
            std::fs::symlink_metadata(&here).ok()
        } else {
            None
        };
        match md {
            Some(md) if md.is_dir() => {
                if dir_meta.is_none() {
                    dir_meta = Some(md);
                }
                for e in std::fs::read_dir(&here)? {
                    let e = e?;
                    let md = e.metadata()?;
                    let whiteout = md.file_type().is_char_device() && md.rdev() == 0;
                    entries
                        .entry(e.file_name())
                        .or_insert_with(|| (!whiteout).then(|| e.path()));
                }
                if is_opaque(&here) {
                    break;
                }
            }
            Some(_) => break,
            None => {}
        }
        if stop {
            break;
        }
    }
    if let Some(md) = dir_meta {
        std::fs::set_permissions(dest, std::fs::Permissions::from_mode(md.mode() & 0o7777))?;
        lchown(dest, Some(md.uid()), Some(md.gid()))?;
    }
    for (name, src) in entries {
        let Some(src) = src else { continue };
        let to = dest.join(&name);
        let md = std::fs::symlink_metadata(&src)?;
        let ft = md.file_type();
        if ft.is_dir() {
            std::fs::create_dir(&to)?;
            copy_merged(layers, &cdir.join(&name), &to)?;
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src)?, &to)?;
            lchown(&to, Some(md.uid()), Some(md.gid()))?;
        } else if ft.is_file() {
            std::fs::copy(&src, &to)?;
            lchown(&to, Some(md.uid()), Some(md.gid()))?;
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(md.mode() & 0o7777))?;
        }
    }
    Ok(())
}

/// Plans the root of a container running from `root`: the overlay, `/proc`, `/dev`, `/sys`
/// (read-only unless `privileged`) with the container's cgroup at `/sys/fs/cgroup`, the
/// kubelet's masked and read-only paths unless `privileged`, `binds` by depth (parents
/// first) resolved inside the image, `working_dir` created if missing, the overlay made
/// read-only when `read_only`, then `pivot_root`. `empty_lower` is an empty directory
/// standing in for an image without layers.
#[allow(clippy::too_many_arguments)]
pub fn plan_image_rootfs(
    view: &dyn ImageView,
    root: &ImageRoot,
    empty_lower: &Path,
    binds: &[PlannedBind],
    working_dir: Option<&Path>,
    read_only: bool,
    privileged: bool,
) -> Result<Vec<MountOp>, PlanError> {
    let mount_root = PathBuf::from(ROOTFS_MOUNTPOINT);
    let options = overlay_options(root, empty_lower)?;
    let mut binds = binds.to_vec();
    for b in &binds {
        if !is_normal_absolute(&b.target) {
            return Err(PlanError::BadTarget(b.target.clone()));
        }
    }
    if let Some(dir) = working_dir
        && !dir.is_absolute()
    {
        return Err(PlanError::BadTarget(dir.to_path_buf()));
    }
    binds.sort_by_key(|b| b.target.components().count());

    let mut ops = vec![
        MountOp::MakeRootPrivate,
        MountOp::Special {
            fstype: "overlay".into(),
            target: mount_root.clone(),
            flags: libc::MS_NODEV,
            options,
        },
        MountOp::Mkdir {
            path: mount_root.join("proc"),
        },
        MountOp::Special {
            fstype: "proc".into(),
            target: mount_root.join("proc"),
            flags: libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            options: String::new(),
        },
    ];
    plan_dev(&mount_root, &mut ops);
    ops.push(MountOp::Mkdir {
        path: mount_root.join("sys"),
    });
    let ro = if privileged { 0 } else { libc::MS_RDONLY };
    ops.push(MountOp::Special {
        fstype: "sysfs".into(),
        target: mount_root.join("sys"),
        flags: ro | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        options: String::new(),
    });
    // The container's own cgroup as the root of /sys/fs/cgroup (containerd's default
    // private cgroup namespace on cgroup v2), read-only unless privileged.
    ops.push(MountOp::NewCgroupNamespace);
    ops.push(MountOp::Special {
        fstype: "cgroup2".into(),
        target: mount_root.join("sys/fs/cgroup"),
        flags: ro | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        options: String::new(),
    });
    if !privileged {
        let null = mount_root.join("dev/null");
        for (path, dir) in masked_paths() {
            ops.push(MountOp::Mask {
                target: under(&mount_root, &path),
                dir,
                null: null.clone(),
            });
        }
        for path in READ_ONLY_PATHS {
            ops.push(MountOp::ReadOnlyPath {
                target: under(&mount_root, Path::new(path)),
            });
        }
    }

    let mut planner = Planner {
        image: view,
        created: BTreeMap::new(),
        volumes: Vec::new(),
    };
    for b in &binds {
        let source_is_dir = match std::fs::metadata(&b.source) {
            Ok(md) => md.is_dir(),
            Err(_) => return Err(PlanError::MissingSource(b.source.clone())),
        };
        let (resolved, creates) = resolve_in_root(&mut planner, &b.target, source_is_dir)?;
        push_creates(&mount_root, &creates, &mut ops);
        ops.push(MountOp::Bind {
            source: b.source.clone(),
            target: under(&mount_root, &resolved),
            read_only: b.read_only,
        });
        planner.volumes.push((resolved, b.source.clone()));
    }
    if let Some(dir) = working_dir {
        let (_, creates) = resolve_in_root(&mut planner, dir, true)?;
        push_creates(&mount_root, &creates, &mut ops);
    }
    if read_only {
        ops.push(MountOp::ReadOnly {
            target: mount_root.clone(),
        });
    }
    ops.push(MountOp::PivotRoot {
        new_root: mount_root,
    });
    Ok(ops)
}

fn push_creates(root: &Path, creates: &[(PathBuf, bool)], ops: &mut Vec<MountOp>) {
    for (path, is_dir) in creates {
        let path = under(root, path);
        ops.push(if *is_dir {
            MountOp::Mkdir { path }
        } else {
            MountOp::Touch { path }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An in-memory image: path → kind.
    struct FakeImage(BTreeMap<PathBuf, EntryKind>);

    impl ImageView for FakeImage {
        fn kind(&self, path: &Path) -> Option<EntryKind> {
            if path == Path::new("/") {
                return Some(EntryKind::Dir);
            }
            self.0.get(path).cloned()
        }
    }

    fn image(entries: &[(&str, EntryKind)]) -> FakeImage {
        FakeImage(
            entries
                .iter()
                .map(|(p, k)| (PathBuf::from(p), k.clone()))
                .collect(),
        )
    }

    fn root() -> ImageRoot {
        ImageRoot {
            layers: vec!["/s/l/a".into(), "/s/l/b".into()],
            upper: "/s/p/c/0/upper".into(),
            work: "/s/p/c/0/work".into(),
        }
    }

    fn resolve(img: &FakeImage, target: &str) -> Result<PathBuf, PlanError> {
        let mut p = Planner {
            image: img,
            created: BTreeMap::new(),
            volumes: Vec::new(),
        };
        resolve_in_root(&mut p, Path::new(target), true).map(|(r, _)| r)
    }

    #[test]
    fn a_lower_layers_symlink_under_an_upper_directory_is_never_followed() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let host = tmp.path().join("host");
        std::fs::create_dir_all(&host).expect("host");
        std::fs::write(host.join("secret"), "host\n").expect("secret");
        let lower = tmp.path().join("lower");
        std::fs::create_dir_all(&lower).expect("lower");
        std::os::unix::fs::symlink(&host, lower.join("a")).expect("link");
        let upper = tmp.path().join("upper");
        std::fs::create_dir_all(upper.join("a")).expect("upper");
        std::fs::write(upper.join("a/mine"), "image\n").expect("mine");
        let layers = vec![lower, upper];
        let stack = LayerStack::new(&layers);
        assert_eq!(stack.kind(Path::new("/a")), Some(EntryKind::Dir));
        assert_eq!(stack.kind(Path::new("/a/mine")), Some(EntryKind::File));
        assert_eq!(stack.kind(Path::new("/a/secret")), None);
        let dest = tmp.path().join("vol");
        std::fs::create_dir_all(&dest).expect("dest");
        copy_merged(&layers, Path::new("/a"), &dest).expect("copy");
        let names: Vec<_> = std::fs::read_dir(&dest)
            .expect("dest")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, ["mine"]);
    }

    #[test]
    fn stop_signals_parse_as_moby_does_and_volume_paths_are_cleaned() {
        assert_eq!(parse_signal("SIGUSR1"), Some(libc::SIGUSR1));
        assert_eq!(parse_signal("usr1"), Some(libc::SIGUSR1));
        assert_eq!(parse_signal("sigquit"), Some(libc::SIGQUIT));
        assert_eq!(parse_signal("9"), Some(9));
        assert_eq!(parse_signal("0"), None);
        assert_eq!(parse_signal("SIGNOPE"), None);
        assert_eq!(parse_signal(""), None);
        assert_eq!(clean_container_path("data"), Path::new("/data"));
        assert_eq!(clean_container_path("/a/../../b/./c/"), Path::new("/b/c"));
    }

    #[test]
    fn overlay_lists_the_top_layer_first_and_refuses_unmountable_paths() {
        let opts = overlay_options(&root(), Path::new("/e")).expect("options");
        assert_eq!(
            opts,
            "lowerdir=/s/l/b:/s/l/a,upperdir=/s/p/c/0/upper,workdir=/s/p/c/0/work"
        );
        let mut r = root();
        r.layers.clear();
        assert!(
            overlay_options(&r, Path::new("/e"))
                .expect("empty")
                .starts_with("lowerdir=/e,")
        );
        r.layers.push("/s/l/a:b".into());
        assert!(matches!(
            overlay_options(&r, Path::new("/e")),
            Err(PlanError::BadLayerPath(_))
        ));
    }

    #[test]
    fn symlinks_and_dotdot_resolve_inside_the_image() {
        use EntryKind::*;
        let img = image(&[
            ("/etc", Dir),
            ("/abs", Symlink("/etc".into())),
            ("/rel", Symlink("../../../../etc".into())),
            ("/host", Symlink("/tmp/podrun-sentinel-x".into())),
            ("/loop", Symlink("/loop".into())),
            ("/file", File),
        ]);
        assert_eq!(resolve(&img, "/abs").expect("abs"), Path::new("/etc"));
        assert_eq!(resolve(&img, "/rel/x").expect("rel"), Path::new("/etc/x"));
        assert_eq!(
            resolve(&img, "/host").expect("host"),
            Path::new("/tmp/podrun-sentinel-x")
        );
        assert!(matches!(
            resolve(&img, "/loop"),
            Err(PlanError::SymlinkLoop(_))
        ));
        assert!(matches!(
            resolve(&img, "/file/x"),
            Err(PlanError::NotADirectory { .. })
        ));
    }

    #[test]
    fn plan_mounts_overlay_then_kernel_trees_then_volumes_and_read_only_last() {
        use EntryKind::*;
        let img = image(&[("/etc", Dir), ("/data", Symlink("/etc".into()))]);
        let src = std::env::temp_dir();
        let binds = [PlannedBind {
            source: src.clone(),
            target: "/data".into(),
            read_only: false,
        }];
        let ops = plan_image_rootfs(
            &img,
            &root(),
            Path::new("/e"),
            &binds,
            Some(Path::new("/w/d")),
            true,
            false,
        )
        .expect("plan");
        let r = Path::new(ROOTFS_MOUNTPOINT);
        assert!(
            matches!(&ops[1], MountOp::Special { fstype, target, .. } if fstype == "overlay" && target == r)
        );
        assert!(ops.iter().any(|op| matches!(op, MountOp::Special { fstype, flags, .. } if fstype == "sysfs" && flags & libc::MS_RDONLY != 0)));
        assert!(ops.contains(&MountOp::Bind {
            source: src,
            target: r.join("etc"),
            read_only: false
        }));
        assert!(ops.contains(&MountOp::Mkdir {
            path: r.join("w/d")
        }));
        let n = ops.len();
        assert_eq!(
            ops[n - 2],
            MountOp::ReadOnly {
                target: r.to_path_buf()
            }
        );
        assert_eq!(
            ops[n - 1],
            MountOp::PivotRoot {
                new_root: r.to_path_buf()
            }
        );
    }
}
