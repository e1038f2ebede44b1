//! Pod volumes on the host: the directories that containers' `volumeMounts` bind.
//!
//! [`payload`] decides the files of `configMap`, `secret`, `downwardAPI` and `projected`
//! volumes; this module writes them under the pod directory (`volumes/<name>`, then mounted
//! read-only, as the kubelet mounts them), creates `emptyDir` volumes (a tmpfs of
//! `sizeLimit` for `medium: Memory`), hands them to the pod's `fsGroup`, resolves
//! `subPath`, and unmounts what it mounted when the pod ends or after a crash.

pub mod payload;

use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Pod, Volume};

use crate::cgroup::quantity;
use crate::layout::Layout;
use payload::{Allocatable, FileEntry, ObjectLookup};

/// A volume made ready on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedVolume {
    /// The host directory to bind.
    pub path: PathBuf,
    /// The kubelet mounts these volumes read-only whatever the `volumeMount` says.
    pub force_read_only: bool,
}

/// Everything volume preparation needs besides the volume itself.
pub struct VolumeContext<'a> {
    /// The pod.
    pub pod: &'a Pod,
    /// The pod's directory in the state directory.
    pub pod_dir: &'a Path,
    /// The state-directory layout.
    pub layout: &'a Layout,
    /// Whole ConfigMaps/Secrets of the pod's namespace.
    pub lookup: ObjectLookup<'a>,
    /// The pod's `fsGroup`.
    pub fs_group: Option<u32>,
}

/// The node's allocatable cpu and memory: all of the machine's.
pub fn node_allocatable() -> Allocatable {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    let mem_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(0);
    Allocatable {
        cpu_millis: cpus * 1000,
        memory_bytes: mem_kib * 1024,
    }
}

/// Whether `volume` is one this module prepares (the rest, `hostPath`, is the caller's).
pub fn is_managed(volume: &Volume) -> bool {
    volume.empty_dir.is_some()
        || volume.config_map.is_some()
        || volume.secret.is_some()
        || volume.downward_api.is_some()
        || volume.projected.is_some()
}

/// Makes `volume` ready on the host (idempotent within one pod: the data volumes are
/// written once, when the first container that mounts them starts).
pub fn prepare(ctx: &VolumeContext<'_>, volume: &Volume) -> Result<PreparedVolume, String> {
    let dir = ctx.layout.empty_dir(ctx.pod_dir, &volume.name);
    if let Some(ed) = &volume.empty_dir {
        prepare_empty_dir(
            &dir,
            ed.medium.as_deref(),
            ed.size_limit.as_ref().map(|q| q.0.as_str()),
            ctx.fs_group,
        )
        .map_err(|e| format!("emptyDir {:?}: {e}", volume.name))?;
        return Ok(PreparedVolume {
            path: dir,
            force_read_only: false,
        });
    }
    let node = node_allocatable();
    let files = if let Some(cm) = &volume.config_map {
        payload::config_map(cm, ctx.lookup)
    } else if let Some(s) = &volume.secret {
        payload::secret(s, ctx.lookup)
    } else if let Some(d) = &volume.downward_api {
        payload::downward_api(
            d.items.as_deref().unwrap_or_default(),
            d.default_mode,
            ctx.pod,
            node,
        )
    } else if let Some(p) = &volume.projected {
        payload::projected(p, ctx.pod, ctx.lookup, node)
    } else {
        return Err(format!(
            "volume {:?}: only emptyDir, hostPath, configMap, secret, downwardAPI and projected \
             volumes can be mounted by this node",
            volume.name
        ));
    };
    let files = files.map_err(|e| {
        format!(
            "MountVolume.SetUp failed for volume {:?} : {e}",
            volume.name
        )
    })?;
    if !dir.exists() {
        write_payload(&dir, &files, ctx.fs_group)
            .map_err(|e| format!("volume {:?}: writing {}: {e}", volume.name, dir.display()))?;
    }
    Ok(PreparedVolume {
        path: dir,
        force_read_only: true,
    })
}

/// Writes the files into a fresh directory next to `dir`, then renames it into place, so
/// a container never sees half a volume.
pub fn write_payload(
    dir: &Path,
    files: &[FileEntry],
    fs_group: Option<u32>,
) -> std::io::Result<()> {
    let parent = dir
        .parent()
        .ok_or_else(|| std::io::Error::other("volume directory has no parent"))?;
    std::fs::create_dir_all(parent)?;
    let tmp = parent.join(format!(
        ".{}.tmp",
        dir.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir(&tmp)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
    for f in files {
        let path = tmp.join(&f.path);
        if let Some(p) = path.parent() {
            std::fs::create_dir_all(p)?;
        }
        std::fs::write(&path, &f.data)?;
        // The kubelet's SetVolumeOwnership for read-only volumes: group fsGroup, readable
        // by the group.
        let mode = if fs_group.is_some() {
            f.mode | 0o440
        } else {
            f.mode
        };
        if let Some(g) = fs_group {
            std::os::unix::fs::chown(&path, None, Some(g))?;
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
    }
    if let Some(g) = fs_group {
        set_group_dir(&tmp, g, 0o2755)?;
    }
    std::fs::rename(&tmp, dir)
}

fn set_group_dir(dir: &Path, gid: u32, mode: u32) -> std::io::Result<()> {
    std::os::unix::fs::chown(dir, None, Some(gid))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
}

/// Creates an emptyDir: mode 0777 as the kubelet makes it, a tmpfs (size `sizeLimit`) for
/// `medium: Memory`, group `fsGroup` with the setgid bit when the pod has one.
pub fn prepare_empty_dir(
    dir: &Path,
    medium: Option<&str>,
    size_limit: Option<&str>,
    fs_group: Option<u32>,
) -> Result<(), String> {
    let memory = match medium.unwrap_or("") {
        "" => false,
        "Memory" => true,
        other => {
            return Err(format!(
                "medium {other:?} is not supported (only \"\" and \"Memory\")"
            ));
        }
    };
    let fresh = !dir.exists();
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if memory && !is_mount_point(dir) {
        let mut options = String::from("mode=0777");
        if let Some(size) = size_limit {
            let bytes = quantity::bytes(size)?;
            if bytes == 0 {
                return Err("sizeLimit must be positive".into());
            }
            options.push_str(&format!(",size={bytes}"));
        }
        mount_tmpfs(dir, &options)
            .map_err(|e| format!("mounting tmpfs on {}: {e}", dir.display()))?;
    }
    if fresh || memory {
        let mode = if fs_group.is_some() { 0o2777 } else { 0o777 };
        match fs_group {
            Some(g) => set_group_dir(dir, g, mode),
            None => std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)),
        }
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    Ok(())
}

/// Whether `dir` is the root of a mount (its device differs from its parent's).
pub fn is_mount_point(dir: &Path) -> bool {
    let (Ok(md), Some(parent)) = (std::fs::metadata(dir), dir.parent()) else {
        return false;
    };
    std::fs::metadata(parent).is_ok_and(|p| p.dev() != md.dev())
}

fn mount_tmpfs(dir: &Path, options: &str) -> std::io::Result<()> {
    let target = CString::new(dir.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    let data = CString::new(options).map_err(std::io::Error::other)?;
    // SAFETY: mount(2) with valid NUL-terminated strings that live across the call.
    let rc = unsafe {
        libc::mount(
            c"tmpfs".as_ptr(),
            target.as_ptr(),
            c"tmpfs".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            data.as_ptr() as *const libc::c_void,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Unmounts every mount podrun made under `pod_dir` (memory-backed emptyDirs), deepest
/// first. Returns how many were unmounted.
pub fn unmount_all(pod_dir: &Path) -> usize {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return 0;
    };
    let mut targets: Vec<PathBuf> = mounts_under(&info, pod_dir);
    targets.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    let mut n = 0;
    for t in targets {
        let Ok(c) = CString::new(t.as_os_str().as_bytes()) else {
            continue;
        };
        // SAFETY: umount2 with a valid path string.
        if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } == 0 {
            n += 1;
        }
    }
    n
}

/// Mount points (5th field of mountinfo) at or under `dir`.
pub fn mounts_under(mountinfo: &str, dir: &Path) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(m.replace("\\040", " ").replace("\\134", "\\")))
        .filter(|m| m.starts_with(dir))
        .collect()
}

/// After a crash: unmounts volumes of pods of this state directory that no live podrun
/// runs. Returns how many mounts were removed.
pub fn remove_leftovers(layout: &Layout) -> usize {
    let mut n = 0;
    if let Ok(rd) = std::fs::read_dir(layout.pods_dir()) {
        for e in rd.flatten() {
            let live = crate::instance::pod_owner(&e.path())
                .is_some_and(|pid| crate::instance::instance_alive(layout, pid));
            if !live {
                n += unmount_all(&e.path());
            }
        }
    }
    n
}

/// The host path for `subPath` of a volume at `base`: relative, without `..`. A missing
/// path is created as a directory, as the kubelet does.
pub fn sub_path(base: &Path, sub: &str) -> Result<PathBuf, String> {
    payload::check_relative_path(sub).map_err(|e| format!("subPath {e}"))?;
    let path = base.join(sub);
    if std::fs::symlink_metadata(&path).is_err() {
        std::fs::create_dir_all(&path).map_err(|e| format!("subPath {sub:?}: {e}"))?;
    }
    // A symlink inside the volume must not lead the bind out of it.
    let real = std::fs::canonicalize(&path).map_err(|e| format!("subPath {sub:?}: {e}"))?;
    let real_base = std::fs::canonicalize(base).map_err(|e| format!("subPath {sub:?}: {e}"))?;
    if !real.starts_with(&real_base) {
        return Err(format!("subPath {sub:?}: points outside the volume"));
    }
    Ok(real)
}

/// ConfigMap/Secret data of the pod's namespace as bytes, from the object store.
pub fn lookup_from(
    map: Option<std::collections::HashMap<String, String>>,
) -> Option<BTreeMap<String, Vec<u8>>> {
    map.map(|m| m.into_iter().map(|(k, v)| (k, v.into_bytes())).collect())
}

/// [`prepare`] with the node's ConfigMaps and Secrets of the pod's namespace.
pub(crate) fn prepare_for(
    shared: &crate::NodeShared,
    pod_dir: &Path,
    pod: &Pod,
    volume: &Volume,
) -> Result<PreparedVolume, String> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let lookup = |kind: &str, name: &str| lookup_from(shared.config_data(kind, &ns, name));
    let fs_group = pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.as_ref())
        .and_then(|s| s.fs_group)
        .and_then(|g| u32::try_from(g).ok());
    let ctx = VolumeContext {
        pod,
        pod_dir,
        layout: &shared.layout,
        lookup: &lookup,
        fs_group,
    };
    prepare(&ctx, volume)
}
