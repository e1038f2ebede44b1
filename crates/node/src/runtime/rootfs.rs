//! The container's private view of the host root, decided as data.
//!
//! [`plan_rootfs`] turns the host root listing and the requested bind mounts into a list of
//! [`MountOp`]s; the child process only executes that list (it may not allocate between clone
//! and exec). The plan never creates anything on the host file system: the new root is a
//! tmpfs holding the host's top-level entries bind-mounted, and a host directory that would
//! need a new entry (a mount point) is "shadowed" — replaced by a tmpfs that mirrors its
//! entries — so the mount point is created on tmpfs. Inside a volume the mount point is
//! created in the volume itself, as runc does. `/dev` is a fresh minimal device tree and
//! `/proc` a fresh procfs of the container's PID namespace.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// Host directory on which the container's root tmpfs is mounted (in the child's private
/// mount namespace only; the host sees an empty directory).
pub const ROOTFS_MOUNTPOINT: &str = "/run/podrun/rootfs";

/// Kind of a file-system entry, as needed to mirror it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A directory.
    Dir,
    /// A symbolic link with its target.
    Symlink(PathBuf),
    /// Anything else (regular file, socket, device, fifo): mirrored by a file bind mount.
    File,
}

/// Read access to the host file system, so the planner is testable with a fake.
pub trait HostView {
    /// The kind of `path` (without following a final symlink), or `None` if it is absent.
    fn kind(&self, path: &Path) -> Option<EntryKind>;
    /// The entries of directory `path`.
    fn list(&self, path: &Path) -> std::io::Result<Vec<(OsString, EntryKind)>>;
}

/// The real host file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct RealHost;

impl HostView for RealHost {
    fn kind(&self, path: &Path) -> Option<EntryKind> {
        let md = std::fs::symlink_metadata(path).ok()?;
        Some(if md.is_dir() {
            EntryKind::Dir
        } else if md.file_type().is_symlink() {
            EntryKind::Symlink(std::fs::read_link(path).ok()?)
        } else {
            EntryKind::File
        })
    }

    fn list(&self, path: &Path) -> std::io::Result<Vec<(OsString, EntryKind)>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(path)? {
            let entry = entry?;
            let ft = entry.file_type()?;
            let kind = if ft.is_dir() {
                EntryKind::Dir
            } else if ft.is_symlink() {
                EntryKind::Symlink(std::fs::read_link(entry.path())?)
            } else {
                EntryKind::File
            };
            out.push((entry.file_name(), kind));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}

/// One step of building the container's root. Paths are absolute host paths as seen by the
/// child before `pivot_root` (that is, under [`ROOTFS_MOUNTPOINT`]), except bind sources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountOp {
    /// Make every mount of the new namespace private so nothing propagates to the host.
    MakeRootPrivate,
    /// Mount a tmpfs at `target` (`nodev` unless it is the container's `/dev`).
    Tmpfs {
        /// Where.
        target: PathBuf,
        /// Device nodes work on it (only `/dev`).
        devices: bool,
        /// Mount options (`mode=…`).
        options: String,
    },
    /// Mark `target` unbindable so recursive binds of its parents skip it.
    MakeUnbindable {
        /// Where.
        target: PathBuf,
    },
    /// Create a directory.
    Mkdir {
        /// Path to create.
        path: PathBuf,
    },
    /// Create an empty file (a mount point for a file bind mount).
    Touch {
        /// Path to create.
        path: PathBuf,
    },
    /// Create a symbolic link.
    Symlink {
        /// The link's target text.
        target: PathBuf,
        /// The link to create.
        link: PathBuf,
    },
    /// Create a character device node.
    CharDevice {
        /// Path to create.
        path: PathBuf,
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
    /// Recursive bind mount.
    Bind {
        /// Host path.
        source: PathBuf,
        /// Mount point.
        target: PathBuf,
        /// Make the whole bound tree read-only.
        read_only: bool,
    },
    /// Mount a file system of `fstype` (proc, devpts, mqueue).
    Special {
        /// File system type and source name.
        fstype: String,
        /// Mount point.
        target: PathBuf,
        /// `MS_*` flags.
        flags: u64,
        /// Mount options.
        options: String,
    },
    /// Hide `target` as runc masks a path: a directory under an empty read-only tmpfs, a
    /// file under the container's `/dev/null` (`null`). A missing path is skipped.
    Mask {
        /// Where.
        target: PathBuf,
        /// `target` is a directory.
        dir: bool,
        /// The container's `/dev/null` (before `pivot_root`).
        null: PathBuf,
    },
    /// Bind `target` onto itself read-only (with its submounts). A missing path is skipped.
    ReadOnlyPath {
        /// Where.
        target: PathBuf,
    },
    /// Enter a new cgroup namespace rooted at the container's cgroup (joined before any
    /// mount operation).
    NewCgroupNamespace,
    /// Make the single mount at `target` read-only (its submounts keep their flags).
    ReadOnly {
        /// Where.
        target: PathBuf,
    },
    /// Switch the root to `new_root` and detach the old one.
    PivotRoot {
        /// The new root.
        new_root: PathBuf,
    },
}

/// A requested bind mount in container terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedBind {
    /// Host path (directory or file).
    pub source: PathBuf,
    /// Absolute path inside the container.
    pub target: PathBuf,
    /// Read-only.
    pub read_only: bool,
}

/// Why a root could not be planned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// Mount target is not an absolute, normal path.
    #[error("mount target {0:?} must be an absolute path without \"..\"")]
    BadTarget(PathBuf),
    /// Mount source is missing.
    #[error("mount source {0:?}: no such file or directory")]
    MissingSource(PathBuf),
    /// A component of the target path is a file.
    #[error("mount target {target:?}: {component:?} is not a directory")]
    NotADirectory {
        /// Requested target.
        target: PathBuf,
        /// The offending component.
        component: PathBuf,
    },
    /// Symlinks loop.
    #[error("mount target {0:?}: too many levels of symbolic links")]
    SymlinkLoop(PathBuf),
    /// An image layer, upper or work directory path overlayfs cannot take.
    #[error("image layer path {0:?} must be absolute and contain no ':', ',' or '\\'")]
    BadLayerPath(PathBuf),
    /// The layer list does not fit in overlayfs' mount options.
    #[error("image has too many layers ({0}) for one overlay mount")]
    TooManyLayers(usize),
    /// The host root could not be read.
    #[error("reading host directory {path:?}: {message}")]
    HostRead {
        /// Directory.
        path: PathBuf,
        /// Error text.
        message: String,
    },
}

const MS_NOSUID: u64 = libc::MS_NOSUID;
const MS_NODEV: u64 = libc::MS_NODEV;
const MS_NOEXEC: u64 = libc::MS_NOEXEC;

/// Host top-level entries never mirrored: `/proc` and `/dev` are fresh per container.
const SYNTHETIC_TOP: [&str; 2] = ["proc", "dev"];

/// Plans the container root for `binds` (mounted in order of path depth, parents first,
/// like containerd's CRI plugin does).
pub fn plan_rootfs(host: &dyn HostView, binds: &[PlannedBind]) -> Result<Vec<MountOp>, PlanError> {
    let root = PathBuf::from(ROOTFS_MOUNTPOINT);
    let mut binds = binds.to_vec();
    for b in &binds {
        if !is_normal_absolute(&b.target) {
            return Err(PlanError::BadTarget(b.target.clone()));
        }
    }
    binds.sort_by_key(|b| b.target.components().count());

    let mut model = Model {
        host,
        shadowed: BTreeSet::from([PathBuf::from("/"), PathBuf::from("/dev")]),
        created: BTreeSet::from([PathBuf::from("/proc"), PathBuf::from("/dev")]),
        volumes: Vec::new(),
        shadows_needed: Vec::new(),
    };
    // Pass 1: decide mount points (and which host directories need shadowing) for every bind.
    let mut per_bind = Vec::new();
    for b in &binds {
        let source_kind = match host.kind(&b.source) {
            None => return Err(PlanError::MissingSource(b.source.clone())),
            // Bind mounts follow a symlinked source; decide by what it points to.
            Some(EntryKind::Symlink(_)) => match std::fs::metadata(&b.source) {
                Ok(md) if md.is_dir() => EntryKind::Dir,
                Ok(_) => EntryKind::File,
                Err(_) => return Err(PlanError::MissingSource(b.source.clone())),
            },
            Some(k) => k,
        };
        let (resolved, creates) =
            resolve_in_root(&mut model, &b.target, source_kind == EntryKind::Dir)?;
        model.volumes.push((resolved.clone(), b.source.clone()));
        per_bind.push((b, resolved, creates));
    }

    // Pass 2: emit. Base root, then shadows (parents first), then binds in order.
    let mut ops = vec![
        MountOp::MakeRootPrivate,
        MountOp::Tmpfs {
            target: root.clone(),
            devices: false,
            options: "mode=0755".into(),
        },
        MountOp::MakeUnbindable {
            target: root.clone(),
        },
    ];
    mirror_entries(host, Path::new("/"), &root, &SYNTHETIC_TOP, &mut ops)?;
    ops.push(MountOp::Mkdir {
        path: root.join("proc"),
    });
    ops.push(MountOp::Special {
        fstype: "proc".into(),
        target: root.join("proc"),
        flags: MS_NOSUID | MS_NODEV | MS_NOEXEC,
        options: String::new(),
    });
    plan_dev(&root, &mut ops);
    let mut shadows = model.shadows_needed.clone();
    shadows.sort_by_key(|p| p.components().count());
    for dir in &shadows {
        let target = under(&root, dir);
        ops.push(MountOp::Tmpfs {
            target: target.clone(),
            devices: false,
            options: "mode=0755".into(),
        });
        mirror_entries(host, dir, &target, &[], &mut ops)?;
    }
    for (b, resolved, creates) in per_bind {
        for (path, is_dir) in creates {
            let path = under(&root, &path);
            ops.push(if is_dir {
                MountOp::Mkdir { path }
            } else {
                MountOp::Touch { path }
            });
        }
        ops.push(MountOp::Bind {
            source: b.source.clone(),
            target: under(&root, &resolved),
            read_only: b.read_only,
        });
    }
    ops.push(MountOp::PivotRoot { new_root: root });
    Ok(ops)
}

/// Turns a plan into one with a read-only root (`readOnlyRootFilesystem`): the mirrored
/// host entries are bound read-only, and the root tmpfs and every shadow tmpfs are made
/// read-only once all mount points exist in them. The last `volume_binds` binds (the
/// volumes and the termination-message file) stay as requested, and so do `/dev`,
/// `/dev/shm` and `/proc`, as with runc.
pub fn read_only_root(mut ops: Vec<MountOp>, volume_binds: usize) -> Vec<MountOp> {
    let total_binds = ops
        .iter()
        .filter(|op| matches!(op, MountOp::Bind { .. }))
        .count();
    let mirrors = total_binds.saturating_sub(volume_binds);
    let dev = Path::new(ROOTFS_MOUNTPOINT).join("dev");
    let mut seen = 0;
    let mut read_only_tmpfs = Vec::new();
    for op in ops.iter_mut() {
        match op {
            MountOp::Bind { read_only, .. } => {
                if seen < mirrors {
                    *read_only = true;
                }
                seen += 1;
            }
            MountOp::Tmpfs { target, .. } if !target.starts_with(&dev) => {
                read_only_tmpfs.push(target.clone());
            }
            _ => {}
        }
    }
    let at = ops
        .iter()
        .position(|op| matches!(op, MountOp::PivotRoot { .. }))
        .unwrap_or(ops.len());
    // Deepest first is not needed (the flag is per mount), but the root goes last so the
    // shadows' paths are still reached through it.
    read_only_tmpfs.reverse();
    for (i, target) in read_only_tmpfs.into_iter().enumerate() {
        ops.insert(at + i, MountOp::ReadOnly { target });
    }
    ops
}

/// A minimal `/dev` like a container runtime gives: the usual character devices, a private
/// devpts and shm, and the standard symlinks.
pub(crate) fn plan_dev(root: &Path, ops: &mut Vec<MountOp>) {
    let dev = root.join("dev");
    ops.push(MountOp::Mkdir { path: dev.clone() });
    ops.push(MountOp::Tmpfs {
        target: dev.clone(),
        devices: true,
        options: "mode=0755".into(),
    });
    for (name, major, minor) in [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ] {
        ops.push(MountOp::CharDevice {
            path: dev.join(name),
            major,
            minor,
        });
    }
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        ops.push(MountOp::Symlink {
            target: target.into(),
            link: dev.join(link),
        });
    }
    ops.push(MountOp::Mkdir {
        path: dev.join("pts"),
    });
    ops.push(MountOp::Special {
        fstype: "devpts".into(),
        target: dev.join("pts"),
        flags: MS_NOSUID | MS_NOEXEC,
        options: "newinstance,ptmxmode=0666,mode=0620".into(),
    });
    ops.push(MountOp::Mkdir {
        path: dev.join("shm"),
    });
    ops.push(MountOp::Tmpfs {
        target: dev.join("shm"),
        devices: false,
        options: format!("mode=1777,size={}k", DEV_SHM_BYTES / 1024),
    });
    ops.push(MountOp::Mkdir {
        path: dev.join("mqueue"),
    });
    ops.push(MountOp::Special {
        fstype: "mqueue".into(),
        target: dev.join("mqueue"),
        flags: MS_NOSUID | MS_NODEV | MS_NOEXEC,
        options: String::new(),
    });
}

/// Puts the pod's shared `/dev/shm` (host directory `shm`, a tmpfs) in place of the
/// container's own in `ops`.
pub fn use_pod_shm(ops: &mut [MountOp], shm: &Path) {
    let target = Path::new(ROOTFS_MOUNTPOINT).join("dev/shm");
    for op in ops.iter_mut() {
        if matches!(op, MountOp::Tmpfs { target: t, .. } if *t == target) {
            *op = MountOp::Bind {
                source: shm.to_path_buf(),
                target: target.clone(),
                read_only: false,
            };
        }
    }
}

/// Size of `/dev/shm`: the kubelet's default for the sandbox's shm (64 MiB).
pub const DEV_SHM_BYTES: u64 = 64 * 1024 * 1024;

/// Recreates the entries of host directory `host_dir` inside `target` (a fresh tmpfs).
fn mirror_entries(
    host: &dyn HostView,
    host_dir: &Path,
    target: &Path,
    skip: &[&str],
    ops: &mut Vec<MountOp>,
) -> Result<(), PlanError> {
    let entries = host.list(host_dir).map_err(|e| PlanError::HostRead {
        path: host_dir.to_path_buf(),
        message: e.to_string(),
    })?;
    for (name, kind) in entries {
        if skip.iter().any(|s| name.as_bytes() == s.as_bytes()) {
            continue;
        }
        let source = host_dir.join(&name);
        let dest = target.join(&name);
        match kind {
            EntryKind::Dir => {
                ops.push(MountOp::Mkdir { path: dest.clone() });
                ops.push(MountOp::Bind {
                    source,
                    target: dest,
                    read_only: false,
                });
            }
            EntryKind::Symlink(link_target) => ops.push(MountOp::Symlink {
                target: link_target,
                link: dest,
            }),
            EntryKind::File => {
                ops.push(MountOp::Touch { path: dest.clone() });
                ops.push(MountOp::Bind {
                    source,
                    target: dest,
                    read_only: false,
                });
            }
        }
    }
    Ok(())
}

fn under(root: &Path, container_path: &Path) -> PathBuf {
    root.join(container_path.strip_prefix("/").unwrap_or(container_path))
}

fn is_normal_absolute(p: &Path) -> bool {
    p.is_absolute()
        && p.components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
}

/// What the container will see, tracked while planning.
struct Model<'a> {
    host: &'a dyn HostView,
    /// Container directories backed by a tmpfs of ours: new entries there touch no host file.
    shadowed: BTreeSet<PathBuf>,
    /// Container paths created by the plan (on tmpfs or inside a volume).
    created: BTreeSet<PathBuf>,
    /// Volume mounts decided so far: container path → host source.
    volumes: Vec<(PathBuf, PathBuf)>,
    /// Host-mirrored directories that must become tmpfs mirrors.
    shadows_needed: Vec<PathBuf>,
}

enum Backing {
    /// Shows host path (through the root mirror, a shadow or the plain host tree).
    Host(PathBuf),
    /// Inside a volume: shows this host path of the volume source.
    Volume(PathBuf),
}

impl Model<'_> {
    fn backing(&self, cpath: &Path) -> Backing {
        let best = self
            .volumes
            .iter()
            .filter(|(t, _)| cpath.starts_with(t))
            .max_by_key(|(t, _)| t.components().count());
        match best {
            Some((t, src)) => {
                Backing::Volume(src.join(cpath.strip_prefix(t).unwrap_or(Path::new(""))))
            }
            None => Backing::Host(cpath.to_path_buf()),
        }
    }

    fn kind(&self, cpath: &Path) -> Option<EntryKind> {
        if self.created.contains(cpath) {
            return Some(EntryKind::Dir);
        }
        // Synthetic trees (/proc, /dev) only hold what the plan puts there.
        if ["/proc", "/dev"].iter().any(|s| cpath.starts_with(s)) {
            return None;
        }
        match self.backing(cpath) {
            Backing::Host(h) | Backing::Volume(h) => self.host.kind(&h),
        }
    }

    /// Whether a new entry may be created in container directory `dir` without touching the
    /// host: it is ours (tmpfs) or part of a volume.
    fn creatable_in(&self, dir: &Path) -> bool {
        self.shadowed.contains(dir)
            || self.created.contains(dir)
            || matches!(self.backing(dir), Backing::Volume(_))
    }
}

impl RootView for Model<'_> {
    fn kind(&self, cpath: &Path) -> Option<EntryKind> {
        Model::kind(self, cpath)
    }

    fn will_create(
        &mut self,
        parent: &Path,
        path: &Path,
        _is_dir: bool,
        _target: &Path,
    ) -> Result<(), PlanError> {
        if !self.creatable_in(parent) {
            self.shadowed.insert(parent.to_path_buf());
            self.shadows_needed.push(parent.to_path_buf());
        }
        self.created.insert(path.to_path_buf());
        Ok(())
    }
}

/// A container's view while its mount points are planned, for [`resolve_in_root`].
pub(crate) trait RootView {
    /// The kind of container path `cpath` (absolute, without symlinks or `..`), `None` when
    /// absent.
    fn kind(&self, cpath: &Path) -> Option<EntryKind>;
    /// Records that `path` (a directory when `is_dir`) will be created in directory
    /// `parent` on the way to `target`; an error refuses the creation.
    fn will_create(
        &mut self,
        parent: &Path,
        path: &Path,
        is_dir: bool,
        target: &Path,
    ) -> Result<(), PlanError>;
}

/// Symlinks followed while resolving one path before giving up (the kernel's limit).
const MAX_SYMLINKS: usize = 40;

/// Walks `target` in `view` as the container would see it, following every symlink inside
/// the root (an absolute target starts again at the root, `..` never climbs above it), and
/// returns the resolved path with the entries to create (path, is_dir), parents first. The
/// last component is a directory when `leaf_is_dir`, else a file.
pub(crate) fn resolve_in_root(
    view: &mut dyn RootView,
    target: &Path,
    leaf_is_dir: bool,
) -> Result<(PathBuf, Vec<(PathBuf, bool)>), PlanError> {
    let push_all = |todo: &mut Vec<OsString>, p: &Path| {
        for c in p.components().rev() {
            match c {
                Component::Normal(n) => todo.push(n.to_os_string()),
                Component::ParentDir => todo.push("..".into()),
                _ => {}
            }
        }
    };
    let mut todo = Vec::new();
    push_all(&mut todo, target);
    let mut cur = PathBuf::from("/");
    let mut creates = Vec::new();
    let mut links = 0;
    while let Some(name) = todo.pop() {
        if name == ".." {
            cur.pop();
            continue;
        }
        let next = cur.join(&name);
        let last = todo.is_empty();
        match view.kind(&next) {
            Some(EntryKind::Dir) => cur = next,
            Some(EntryKind::Symlink(t)) => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(PlanError::SymlinkLoop(target.to_path_buf()));
                }
                if t.is_absolute() {
                    cur = PathBuf::from("/");
                }
                push_all(&mut todo, &t);
            }
            Some(EntryKind::File) if last && !leaf_is_dir => cur = next,
            Some(EntryKind::File) => {
                return Err(PlanError::NotADirectory {
                    target: target.to_path_buf(),
                    component: next,
                });
            }
            None => {
                let is_dir = !last || leaf_is_dir;
                view.will_create(&cur, &next, is_dir, target)?;
                creates.push((next.clone(), is_dir));
                cur = next;
            }
        }
    }
    Ok((cur, creates))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// An in-memory host tree: path → kind.
    struct FakeHost(BTreeMap<PathBuf, EntryKind>);

    impl FakeHost {
        fn new(entries: &[(&str, EntryKind)]) -> Self {
            FakeHost(
                entries
                    .iter()
                    .map(|(p, k)| (PathBuf::from(p), k.clone()))
                    .collect(),
            )
        }
    }

    impl HostView for FakeHost {
        fn kind(&self, path: &Path) -> Option<EntryKind> {
            if path == Path::new("/") {
                return Some(EntryKind::Dir);
            }
            self.0.get(path).cloned()
        }
        fn list(&self, path: &Path) -> std::io::Result<Vec<(OsString, EntryKind)>> {
            Ok(self
                .0
                .iter()
                .filter(|(p, _)| p.parent() == Some(path))
                .filter_map(|(p, k)| Some((p.file_name()?.to_os_string(), k.clone())))
                .collect())
        }
    }

    fn host() -> FakeHost {
        use EntryKind::*;
        FakeHost::new(&[
            ("/bin", Symlink("usr/bin".into())),
            ("/usr", Dir),
            ("/usr/bin", Dir),
            ("/etc", Dir),
            ("/etc/hosts", File),
            ("/proc", Dir),
            ("/dev", Dir),
            ("/src", Dir),
            ("/src/sub", Dir),
            ("/msg", File),
        ])
    }

    fn bind(source: &str, target: &str) -> PlannedBind {
        PlannedBind {
            source: source.into(),
            target: target.into(),
            read_only: false,
        }
    }

    /// Mkdir/Touch ops whose directory is (at that point) covered by a host bind mount rather
    /// than by one of the plan's tmpfs mounts: those would create entries on the host.
    fn creates_outside_tmpfs(ops: &[MountOp]) -> Vec<PathBuf> {
        let mut mounts: Vec<(PathBuf, bool)> = Vec::new(); // (target, is_tmpfs), in order
        let mut bad = Vec::new();
        for op in ops {
            match op {
                MountOp::Tmpfs { target, .. } => mounts.push((target.clone(), true)),
                MountOp::Bind { target, .. } => mounts.push((target.clone(), false)),
                MountOp::Mkdir { path } | MountOp::Touch { path } => {
                    let parent = path.parent().unwrap_or(Path::new("/"));
                    // Deepest covering mount wins; among equals, the latest.
                    let cover = mounts
                        .iter()
                        .enumerate()
                        .filter(|(_, (t, _))| parent.starts_with(t))
                        .max_by_key(|(i, (t, _))| (t.components().count(), *i));
                    if !matches!(cover, Some((_, (_, true)))) {
                        bad.push(path.clone());
                    }
                }
                _ => {}
            }
        }
        bad
    }

    #[test]
    fn root_mirrors_top_level_and_skips_proc_and_dev() {
        let ops = plan_rootfs(&host(), &[]).expect("plan");
        let root = Path::new(ROOTFS_MOUNTPOINT);
        assert!(ops.contains(&MountOp::Bind {
            source: "/usr".into(),
            target: root.join("usr"),
            read_only: false
        }));
        assert!(ops.contains(&MountOp::Symlink {
            target: "usr/bin".into(),
            link: root.join("bin")
        }));
        assert!(ops.contains(&MountOp::Touch {
            path: root.join("msg")
        }));
        assert!(!ops.iter().any(|o| matches!(o, MountOp::Bind { source, .. } if source == Path::new("/proc") || source == Path::new("/dev"))));
        assert_eq!(ops.first(), Some(&MountOp::MakeRootPrivate));
        assert_eq!(
            ops.last(),
            Some(&MountOp::PivotRoot {
                new_root: root.into()
            })
        );
    }

    #[test]
    fn new_top_level_target_is_created_on_the_root_tmpfs() {
        let ops = plan_rootfs(&host(), &[bind("/src", "/data/vol")]).expect("plan");
        let root = Path::new(ROOTFS_MOUNTPOINT);
        let i = ops
            .iter()
            .position(|o| {
                *o == MountOp::Mkdir {
                    path: root.join("data"),
                }
            })
            .expect("mkdir data");
        assert_eq!(
            ops[i + 1],
            MountOp::Mkdir {
                path: root.join("data/vol")
            }
        );
        assert_eq!(
            ops[i + 2],
            MountOp::Bind {
                source: "/src".into(),
                target: root.join("data/vol"),
                read_only: false
            }
        );
        assert!(
            creates_outside_tmpfs(&ops).is_empty(),
            "{:?}",
            creates_outside_tmpfs(&ops)
        );
    }

    #[test]
    fn missing_entry_in_host_dir_shadows_that_dir() {
        let ops = plan_rootfs(&host(), &[bind("/src", "/etc/podrun/conf")]).expect("plan");
        let root = Path::new(ROOTFS_MOUNTPOINT);
        let shadow = ops
            .iter()
            .rposition(
                |o| matches!(o, MountOp::Tmpfs { target, .. } if target == &root.join("etc")),
            )
            .expect("etc shadowed");
        // The shadow mirrors /etc's entries, then the mount point is made on it.
        assert_eq!(
            ops[shadow + 1],
            MountOp::Touch {
                path: root.join("etc/hosts")
            }
        );
        assert_eq!(
            ops[shadow + 2],
            MountOp::Bind {
                source: "/etc/hosts".into(),
                target: root.join("etc/hosts"),
                read_only: false
            }
        );
        assert!(ops.contains(&MountOp::Mkdir {
            path: root.join("etc/podrun")
        }));
        assert!(ops.contains(&MountOp::Mkdir {
            path: root.join("etc/podrun/conf")
        }));
        assert!(
            creates_outside_tmpfs(&ops).is_empty(),
            "{:?}",
            creates_outside_tmpfs(&ops)
        );
    }

    #[test]
    fn existing_target_needs_no_mkdir_and_symlinks_are_followed() {
        let ops = plan_rootfs(&host(), &[bind("/src", "/bin")]).expect("plan");
        let root = Path::new(ROOTFS_MOUNTPOINT);
        assert!(ops.contains(&MountOp::Bind {
            source: "/src".into(),
            target: root.join("usr/bin"),
            read_only: false
        }));
    }

    #[test]
    fn dotdot_in_a_symlink_stops_at_the_root_and_the_pod_shm_replaces_the_own() {
        use EntryKind::*;
        let mut h = host();
        h.0.insert("/up".into(), Symlink("../../../usr/./bin".into()));
        let mut ops = plan_rootfs(&h, &[bind("/src", "/up/x")]).expect("plan");
        let root = Path::new(ROOTFS_MOUNTPOINT);
        assert!(ops.contains(&MountOp::Bind {
            source: "/src".into(),
            target: root.join("usr/bin/x"),
            read_only: false
        }));
        use_pod_shm(&mut ops, Path::new("/pods/p/shm"));
        assert!(ops.contains(&MountOp::Bind {
            source: "/pods/p/shm".into(),
            target: root.join("dev/shm"),
            read_only: false
        }));
        assert!(!ops.iter().any(
            |o| matches!(o, MountOp::Tmpfs { target, .. } if target == &root.join("dev/shm"))
        ));
    }

    #[test]
    fn nested_volume_mount_point_is_made_inside_the_outer_volume() {
        let ops =
            plan_rootfs(&host(), &[bind("/src", "/a/b/c"), bind("/src", "/a")]).expect("plan");
        let root = Path::new(ROOTFS_MOUNTPOINT);
        // Parents first: /a is mounted before /a/b/c, and b is made inside the volume.
        let outer = ops
            .iter()
            .position(|o| matches!(o, MountOp::Bind { target, .. } if target == &root.join("a")))
            .expect("outer");
        let mk = ops
            .iter()
            .position(|o| {
                *o == MountOp::Mkdir {
                    path: root.join("a/b"),
                }
            })
            .expect("mkdir b");
        assert!(outer < mk);
    }

    #[test]
    fn file_source_gets_a_file_mount_point_and_bad_targets_are_refused() {
        let ops = plan_rootfs(&host(), &[bind("/msg", "/dev/termination-log")]).expect("plan");
        let root = Path::new(ROOTFS_MOUNTPOINT);
        assert!(ops.contains(&MountOp::Touch {
            path: root.join("dev/termination-log")
        }));
        assert_eq!(
            plan_rootfs(&host(), &[bind("/src", "rel")]),
            Err(PlanError::BadTarget("rel".into()))
        );
        assert_eq!(
            plan_rootfs(&host(), &[bind("/src", "/x/../y")]),
            Err(PlanError::BadTarget("/x/../y".into()))
        );
        assert_eq!(
            plan_rootfs(&host(), &[bind("/nope", "/y")]),
            Err(PlanError::MissingSource("/nope".into()))
        );
        assert!(matches!(
            plan_rootfs(&host(), &[bind("/src", "/etc/hosts/x")]),
            Err(PlanError::NotADirectory { .. })
        ));
    }
}
