//! Layer application: formats, whiteouts, links, metadata, and hostile layers built as raw tar
//! bytes. Run as root (ownership, devices and `trusted.*` xattrs need it).

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use podrun_images::layer::{ApplyOptions, apply_layer};

fn require_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "these tests need root (ownership, devices, trusted xattrs)"
    );
}

/// One raw tar entry: the name bytes go into the header as they are.
struct E<'a> {
    name: &'a [u8],
    kind: u8,
    link: &'a [u8],
    data: &'a [u8],
    mode: u32,
    uid: u32,
    mtime: u64,
    dev: (u32, u32),
}

fn e<'a>(name: &'a [u8], kind: u8) -> E<'a> {
    E {
        name,
        kind,
        link: b"",
        data: b"",
        mode: 0o644,
        uid: 0,
        mtime: 1_600_000_000,
        dev: (0, 0),
    }
}

fn octal(field: &mut [u8], v: u64) {
    let s = format!("{:0width$o}", v, width = field.len() - 1);
    field[..s.len()].copy_from_slice(s.as_bytes());
}

fn raw_tar(entries: &[E<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for en in entries {
        let mut h = [0u8; 512];
        h[..en.name.len()].copy_from_slice(en.name);
        octal(&mut h[100..108], en.mode as u64);
        octal(&mut h[108..116], en.uid as u64);
        octal(&mut h[116..124], en.uid as u64);
        octal(&mut h[124..136], en.data.len() as u64);
        octal(&mut h[136..148], en.mtime);
        h[156] = en.kind;
        h[157..157 + en.link.len()].copy_from_slice(en.link);
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        octal(&mut h[329..337], en.dev.0 as u64);
        octal(&mut h[337..345], en.dev.1 as u64);
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|b| *b as u32).sum();
        let s = format!("{sum:06o}\0 ");
        h[148..156].copy_from_slice(s.as_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(en.data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

struct Fixture {
    _tmp: tempfile::TempDir,
    base: PathBuf,
    sentinel: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().to_path_buf();
        let sentinel = base.join("sentinel");
        fs::create_dir(&sentinel).unwrap();
        Self {
            _tmp: tmp,
            base,
            sentinel,
        }
    }

    fn layer(&self, name: &str) -> PathBuf {
        let p = self.base.join("layers").join(name);
        fs::create_dir_all(&p).unwrap();
        p
    }

    fn sentinel_empty(&self) {
        assert_eq!(
            fs::read_dir(&self.sentinel).unwrap().count(),
            0,
            "something was written outside the layer"
        );
    }

    /// A path inside the layer that points at the sentinel through as many `..` as needed.
    fn escape(&self, layer: &Path) -> String {
        let depth = layer.components().count();
        format!(
            "{}{}",
            "../".repeat(depth + 2),
            self.sentinel.strip_prefix("/").unwrap().display()
        )
    }
}

fn apply(
    data: &[u8],
    target: &Path,
    lowers: &[&Path],
) -> Result<podrun_images::layer::Applied, String> {
    apply_layer(data, target, lowers, ApplyOptions { privileged: true }).map_err(|e| e.0)
}

#[test]
fn traversal_names_stay_inside() {
    require_root();
    let f = Fixture::new();
    let l = f.layer("1");
    let up = format!("{}/pwned", f.escape(&l));
    let abs = format!("{}/abs", f.sentinel.display());
    let mut a = e(up.as_bytes(), b'0');
    a.data = b"x";
    let mut b = e(abs.as_bytes(), b'0');
    b.data = b"y";
    apply(&raw_tar(&[a, b]), &l, &[]).unwrap();
    f.sentinel_empty();
    let inner = l.join(f.sentinel.strip_prefix("/").unwrap());
    assert_eq!(fs::read(inner.join("pwned")).unwrap(), b"x");
    assert_eq!(fs::read(inner.join("abs")).unwrap(), b"y");
}

#[test]
fn symlink_escapes_are_contained() {
    require_root();
    let f = Fixture::new();
    let l = f.layer("1");
    let s = f.sentinel.to_str().unwrap().as_bytes().to_vec();
    let rel = f.escape(&l);
    let mut abs_link = e(b"evil", b'2');
    abs_link.link = &s;
    let mut rel_link = e(b"evil2", b'2');
    rel_link.link = rel.as_bytes();
    let mut w1 = e(b"evil/pwned", b'0');
    w1.data = b"1";
    let mut w2 = e(b"evil2/pwned", b'0');
    w2.data = b"2";
    apply(&raw_tar(&[abs_link, rel_link, w1, w2]), &l, &[]).unwrap();
    f.sentinel_empty();
    let inner = l.join(f.sentinel.strip_prefix("/").unwrap());
    assert_eq!(fs::read(inner.join("pwned")).unwrap(), b"2");
    // The symlinks themselves keep their targets verbatim.
    assert_eq!(fs::read_link(l.join("evil")).unwrap(), f.sentinel);
}

#[test]
fn symlink_loop_is_a_clean_error() {
    require_root();
    let f = Fixture::new();
    let l = f.layer("1");
    let mut a = e(b"a", b'2');
    a.link = b"b";
    let mut b = e(b"b", b'2');
    b.link = b"a";
    let err = apply(&raw_tar(&[a, b, e(b"a/x", b'0')]), &l, &[]).unwrap_err();
    assert!(err.contains("too many levels of symbolic links"), "{err}");
}

#[test]
fn hard_link_escape_is_refused_or_contained() {
    require_root();
    let f = Fixture::new();
    let l = f.layer("1");
    let passwd_links = fs::metadata("/etc/passwd").unwrap().nlink();
    let mut h = e(b"stolen", b'1');
    h.link = b"../../../../../../etc/passwd";
    let err = apply(&raw_tar(&[h]), &l, &[]).unwrap_err();
    assert!(err.contains("target not found"), "{err}");
    assert_eq!(fs::metadata("/etc/passwd").unwrap().nlink(), passwd_links);
    // With the image's own /etc/passwd, the link lands on that.
    let l2 = f.layer("2");
    let mut p = e(b"etc/passwd", b'0');
    p.data = b"root:x:0:0::/:/bin/sh\n";
    let mut h = e(b"stolen", b'1');
    h.link = b"../../../../../../etc/passwd";
    apply(&raw_tar(&[e(b"etc", b'5'), p, h]), &l2, &[]).unwrap();
    assert_eq!(
        fs::metadata(l2.join("stolen")).unwrap().ino(),
        fs::metadata(l2.join("etc/passwd")).unwrap().ino()
    );
    assert_eq!(fs::metadata("/etc/passwd").unwrap().nlink(), passwd_links);
}

#[test]
fn bad_whiteout_names_are_refused() {
    require_root();
    let f = Fixture::new();
    for name in [&b".wh.."[..], b".wh...", b"dir/.wh.."] {
        let l = f.layer(&format!("w{}", name.len()));
        let err = apply(&raw_tar(&[e(name, b'0')]), &l, &[]).unwrap_err();
        assert!(err.contains("invalid whiteout name"), "{err}");
    }
    f.sentinel_empty();
}

#[test]
fn whiteouts_and_opaque_directories_in_overlay_form() {
    require_root();
    let f = Fixture::new();
    let lower = f.layer("lower");
    apply(
        &raw_tar(&[
            e(b"f", b'0'),
            e(b"d", b'5'),
            e(b"d/old", b'0'),
            e(b"keep", b'0'),
            e(b"g", b'0'),
        ]),
        &lower,
        &[],
    )
    .unwrap();
    let upper = f.layer("upper");
    apply(
        &raw_tar(&[
            e(b".wh.f", b'0'),
            e(b"d/new", b'0'),
            e(b"d/.wh..wh..opq", b'0'),
            // Same layer: the whiteout does not hide this layer's own file, in either order.
            e(b"g", b'0'),
            e(b".wh.g", b'0'),
            e(b".wh.h", b'0'),
            e(b"h", b'0'),
        ]),
        &upper,
        &[&lower],
    )
    .unwrap();
    let st = fs::symlink_metadata(upper.join("f")).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_char_device(
        &st.file_type()
    ));
    assert_eq!(st.rdev(), 0);
    let mut buf = [0u8; 4];
    let n = rustix::fs::getxattr(
        upper.join("d").as_path(),
        "trusted.overlay.opaque",
        &mut buf,
    )
    .unwrap();
    assert_eq!(&buf[..n], b"y");
    assert!(upper.join("d/new").exists());
    assert!(fs::symlink_metadata(upper.join("g")).unwrap().is_file());
    assert!(fs::symlink_metadata(upper.join("h")).unwrap().is_file());
    assert!(!upper.join("keep").exists());
}

#[test]
fn metadata_links_devices_and_formats() {
    require_root();
    let f = Fixture::new();
    let lower = f.layer("lower");
    let mut base = e(b"bin/tool", b'0');
    base.data = b"tool";
    apply(&raw_tar(&[e(b"bin", b'5'), base]), &lower, &[]).unwrap();
    let l = f.layer("1");
    let mut suid = e(b"bin/suid", b'0');
    suid.mode = 0o4755;
    suid.data = b"s";
    let mut owned = e(b"home/app/f", b'0');
    owned.mode = 0o640;
    owned.uid = 1000;
    owned.mtime = 1_234_567_890;
    let mut hl = e(b"bin/tool-link", b'1');
    hl.link = b"bin/tool";
    let mut sl = e(b"lib", b'2');
    sl.link = b"/usr/lib";
    let mut dev = e(b"dev/null", b'3');
    dev.dev = (1, 3);
    let mut link_lib = e(b"lib/x", b'0');
    link_lib.data = b"via symlink";
    let tar = raw_tar(&[suid, owned, hl, sl, e(b"usr/lib", b'5'), link_lib, dev]);
    // The same layer gzip- and zstd-compressed gives the same diff ID.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    let gz = gz.finish().unwrap();
    let zst = zstd::encode_all(&tar[..], 3).unwrap();
    let plain = apply(&tar, &l, &[&lower]).unwrap();
    for (i, blob) in [gz, zst].iter().enumerate() {
        let other = f.layer(&format!("c{i}"));
        assert_eq!(
            apply(blob, &other, &[&lower]).unwrap().diff_id,
            plain.diff_id
        );
    }
    let m = fs::metadata(l.join("bin/suid")).unwrap();
    assert_eq!(m.permissions().mode() & 0o7777, 0o4755);
    let m = fs::metadata(l.join("home/app/f")).unwrap();
    assert_eq!(
        (m.uid(), m.gid(), m.mode() & 0o7777, m.mtime()),
        (1000, 1000, 0o640, 1_234_567_890)
    );
    // A hard link to a lower layer's file copies it up and shares the inode in this layer.
    assert_eq!(
        fs::metadata(l.join("bin/tool")).unwrap().ino(),
        fs::metadata(l.join("bin/tool-link")).unwrap().ino()
    );
    assert_eq!(fs::read(l.join("bin/tool-link")).unwrap(), b"tool");
    // A file under a symlinked directory lands where the symlink points, inside the layer.
    assert_eq!(fs::read(l.join("usr/lib/x")).unwrap(), b"via symlink");
    let d = fs::symlink_metadata(l.join("dev/null")).unwrap();
    assert_eq!(d.rdev(), rustix::fs::makedev(1, 3));
    f.sentinel_empty();
}

#[test]
fn devices_are_skipped_without_privilege() {
    require_root();
    let f = Fixture::new();
    let l = f.layer("1");
    let mut dev = e(b"dev/null", b'3');
    dev.dev = (1, 3);
    let applied = apply_layer(
        &raw_tar(&[dev])[..],
        &l,
        &[],
        ApplyOptions { privileged: false },
    )
    .unwrap();
    assert!(!l.join("dev/null").exists());
    assert_eq!(applied.warnings.len(), 1, "{:?}", applied.warnings);
}

#[test]
fn long_names_are_a_clean_error() {
    require_root();
    let f = Fixture::new();
    let l = f.layer("1");
    let mut b = tar::Builder::new(Vec::new());
    let long = "d/".repeat(2100) + "f";
    let mut h = tar::Header::new_gnu();
    h.set_size(0);
    h.set_mode(0o644);
    b.append_data(&mut h, &long, &[][..]).unwrap();
    let err = apply(&b.into_inner().unwrap(), &l, &[]).unwrap_err();
    assert!(
        err.contains("File name too long") || err.contains("too long"),
        "{err}"
    );
}

#[test]
fn unprivileged_layers_mark_opaque_directories_with_user_xattrs() {
    require_root();
    let f = Fixture::new();
    let l = f.layer("1");
    let mut owned = e(b"d/f", b'0');
    owned.uid = 1000;
    apply_layer(
        &raw_tar(&[
            e(b"d", b'5'),
            owned,
            e(b"d/.wh..wh..opq", b'0'),
            e(b".wh.gone", b'0'),
        ])[..],
        &l,
        &[],
        ApplyOptions { privileged: false },
    )
    .unwrap();
    let mut buf = [0u8; 4];
    let n = rustix::fs::getxattr(l.join("d").as_path(), "user.overlay.opaque", &mut buf).unwrap();
    assert_eq!(&buf[..n], b"y");
    assert!(
        rustix::fs::getxattr(l.join("d").as_path(), "trusted.overlay.opaque", &mut buf).is_err()
    );
    // Owners are not kept without privilege.
    assert_eq!(fs::metadata(l.join("d/f")).unwrap().uid(), 0);
    assert_eq!(fs::symlink_metadata(l.join("gone")).unwrap().rdev(), 0);
}
