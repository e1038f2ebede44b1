//! Volumes on the real file system: payload files with their modes and fsGroup, a
//! memory-backed emptyDir with its size limit, subPath checks, and the clean-up of mounts.
//!
//! The tmpfs and ownership tests need root and fail loudly without it.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use podrun_node::volume::{self, payload::FileEntry};

fn require_root() {
    assert!(
        podrun_node::runtime::isolation_available(),
        "these tests need root (mount, chown); run them as root like CI does"
    );
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn payload_is_written_with_modes_and_nested_paths() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("volumes/cfg");
    let files = [
        FileEntry {
            path: "a.conf".into(),
            data: b"A=1\n".to_vec(),
            mode: 0o644,
        },
        FileEntry {
            path: "nested/key".into(),
            data: b"secret".to_vec(),
            mode: 0o400,
        },
    ];
    volume::write_payload(&target, &files, None).unwrap();
    assert_eq!(
        std::fs::read_to_string(target.join("a.conf")).unwrap(),
        "A=1\n"
    );
    assert_eq!(std::fs::read(target.join("nested/key")).unwrap(), b"secret");
    assert_eq!(mode(&target.join("a.conf")), 0o644);
    assert_eq!(mode(&target.join("nested/key")), 0o400);
    // Written atomically: no temporary directory left behind.
    let names: Vec<String> = std::fs::read_dir(dir.path().join("volumes"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["cfg"]);
}

#[test]
fn fs_group_owns_payload_and_empty_dir_with_setgid() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("secret");
    let files = [FileEntry {
        path: "token".into(),
        data: b"t".to_vec(),
        mode: 0o400,
    }];
    volume::write_payload(&target, &files, Some(2000)).unwrap();
    let md = std::fs::metadata(target.join("token")).unwrap();
    assert_eq!(md.gid(), 2000);
    assert_eq!(mode(&target.join("token")), 0o440);
    let ed = dir.path().join("scratch");
    volume::prepare_empty_dir(&ed, None, None, Some(2000)).unwrap();
    let md = std::fs::metadata(&ed).unwrap();
    assert_eq!(md.gid(), 2000);
    assert_eq!(mode(&ed), 0o2777);
    let plain = dir.path().join("plain");
    volume::prepare_empty_dir(&plain, None, None, None).unwrap();
    assert_eq!(mode(&plain), 0o777);
}

/// Unmounts whatever the test mounted under its directory, even on failure.
struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        volume::unmount_all(&self.0);
    }
}

#[test]
fn memory_empty_dir_is_a_tmpfs_of_size_limit_and_is_unmounted() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let _guard = Unmount(dir.path().to_path_buf());
    let ed = dir.path().join("volumes/cache");
    volume::prepare_empty_dir(&ed, Some("Memory"), Some("16Mi"), None).unwrap();
    assert!(volume::is_mount_point(&ed));
    let st = nix::sys::statfs::statfs(&ed).unwrap();
    assert_eq!(st.filesystem_type(), nix::sys::statfs::TMPFS_MAGIC);
    let size = st.blocks() * st.block_size() as u64;
    assert_eq!(size, 16 * 1024 * 1024);
    assert_eq!(mode(&ed), 0o777);
    // Idempotent: a second container of the pod does not stack a second tmpfs.
    volume::prepare_empty_dir(&ed, Some("Memory"), Some("16Mi"), None).unwrap();
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert_eq!(volume::mounts_under(&info, dir.path()).len(), 1);
    // Writing beyond the limit fails with ENOSPC.
    let big = vec![0u8; 17 * 1024 * 1024];
    let err = std::fs::write(ed.join("big"), &big).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
    assert_eq!(volume::unmount_all(dir.path()), 1);
    assert!(!volume::is_mount_point(&ed));
    let err = volume::prepare_empty_dir(&dir.path().join("x"), Some("HugePages"), None, None)
        .unwrap_err();
    assert!(err.contains("not supported"), "{err}");
}

#[test]
fn sub_path_stays_inside_the_volume() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("vol");
    std::fs::create_dir_all(&base).unwrap();
    let p = volume::sub_path(&base, "a/b").unwrap();
    assert!(p.is_dir() && p.ends_with("a/b"));
    assert!(volume::sub_path(&base, "../x").unwrap_err().contains(".."));
    assert!(
        volume::sub_path(&base, "/etc")
            .unwrap_err()
            .contains("relative")
    );
    std::os::unix::fs::symlink("/etc", base.join("evil")).unwrap();
    assert!(
        volume::sub_path(&base, "evil")
            .unwrap_err()
            .contains("outside")
    );
    std::fs::write(base.join("file"), b"x").unwrap();
    assert!(volume::sub_path(&base, "file").unwrap().is_file());
}

#[test]
fn lookup_converts_node_data_to_bytes() {
    let m = std::collections::HashMap::from([("k".to_string(), "v".to_string())]);
    assert_eq!(
        volume::lookup_from(Some(m)),
        Some(BTreeMap::from([("k".to_string(), b"v".to_vec())]))
    );
    assert_eq!(volume::lookup_from(None), None);
}
