//! Applying one layer (a tar stream, gzip, zstd or plain) into its own directory, in the form
//! overlayfs expects of a lower layer: a whiteout is a character device 0/0, an opaque directory
//! carries `trusted.overlay.opaque=y`.
//!
//! Every path is resolved by podrun itself against the merged view of this layer over its lower
//! layers (`..` stops at the root, absolute symlinks restart at the root, symlinks are followed in
//! the merged view), and every physical operation then happens beneath the layer directory through
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` and `*at` calls that never follow the last
//! component: no entry can write outside the layer directory.

use std::ffi::OsStr;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{self as rfs, AtFlags, Mode, OFlags, ResolveFlags};

use crate::digest::{Digest, HashingReader};

const MAX_SYMLINK_FOLLOWS: u32 = 40;
const PATH_MAX: usize = 4096;
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
const USER_OPAQUE_XATTR: &str = "user.overlay.opaque";

/// Why a layer could not be applied. The whole layer is then discarded by the caller.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LayerError(pub String);

impl LayerError {
    fn io(what: &str, path: &[Vec<u8>], e: impl Into<io::Error>) -> Self {
        Self(format!("{what} {}: {}", display(path), os_text(&e.into())))
    }
}

/// How a layer is applied.
#[derive(Debug, Clone, Copy)]
pub struct ApplyOptions {
    /// Running as root: ownership is kept and device nodes are created.
    pub privileged: bool,
}

impl ApplyOptions {
    /// Privileged when the process runs as root.
    pub fn for_current_user() -> Self {
        Self {
            privileged: rustix::process::geteuid().is_root(),
        }
    }
}

/// What applying a layer found.
#[derive(Debug, Clone)]
pub struct Applied {
    /// sha256 of the uncompressed tar stream.
    pub diff_id: Digest,
    /// Length of the uncompressed tar stream.
    pub uncompressed_size: u64,
    /// Entries skipped (device nodes without privilege).
    pub warnings: Vec<String>,
}

/// The compression of a layer blob, found from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// An uncompressed tar stream.
    None,
    /// gzip.
    Gzip,
    /// zstd.
    Zstd,
}

impl Compression {
    /// Detects the compression from the magic bytes at the start of `head`.
    pub fn detect(head: &[u8]) -> Self {
        if head.starts_with(&[0x1f, 0x8b]) {
            Self::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Self::Zstd
        } else {
            Self::None
        }
    }
}

/// Decompresses `reader` by its magic bytes.
pub fn decompress<'a>(reader: impl Read + 'a) -> io::Result<Box<dyn Read + 'a>> {
    let mut buf = BufReader::with_capacity(256 * 1024, reader);
    let head = buf.fill_buf()?;
    Ok(match Compression::detect(head) {
        Compression::None => Box::new(buf),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buf)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(buf)?),
    })
}

/// Applies the layer read from `blob` into the empty directory `target`, with `lowers` (topmost
/// first) as the layers beneath it.
pub fn apply_layer(
    blob: impl Read,
    target: &Path,
    lowers: &[&Path],
    options: ApplyOptions,
) -> Result<Applied, LayerError> {
    let open = |p: &Path| {
        rfs::open(
            p,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| LayerError(format!("open {}: {}", p.display(), io::Error::from(e))))
    };
    let mut layers = vec![open(target)?];
    for l in lowers {
        layers.push(open(l)?);
    }
    let stream =
        decompress(blob).map_err(|e| LayerError(format!("failed to detect compression: {e}")))?;
    let mut hashing = HashingReader::new(stream);
    let mut applier = Applier {
        layers,
        options,
        dirs: Vec::new(),
        written: Default::default(),
        warnings: Vec::new(),
    };
    {
        let mut archive = tar::Archive::new(ZeroTail {
            inner: &mut hashing,
            tail: 0,
        });
        let entries = archive
            .entries()
            .map_err(|e| LayerError(format!("failed to read layer: {e}")))?;
        for entry in entries {
            let entry = entry.map_err(|e| LayerError(format!("failed to read layer: {e}")))?;
            applier.entry(entry)?;
        }
    }
    // The diff ID covers the whole stream, including padding after the end-of-archive blocks.
    io::copy(&mut hashing, &mut io::sink())
        .map_err(|e| LayerError(format!("failed to read layer: {e}")))?;
    applier.finish_dirs()?;
    let (diff_id, uncompressed_size) = hashing.finish();
    Ok(Applied {
        diff_id,
        uncompressed_size,
        warnings: applier.warnings,
    })
}

/// After the stream ends, up to 1535 zero bytes: a layer that stops right after its last file's
/// data, without padding or end-of-archive blocks (as some tools write them), reads as complete,
/// as Go's `archive/tar` accepts it. The zeros are not part of the diff ID.
struct ZeroTail<R> {
    inner: R,
    tail: usize,
}

impl<R: Read> Read for ZeroTail<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 || buf.is_empty() {
            return Ok(n);
        }
        let n = buf.len().min(511 + 1024 - self.tail);
        buf[..n].fill(0);
        self.tail += n;
        Ok(n)
    }
}

/// An OS error as Go words it (`no space left on device`), other errors as they are.
pub(crate) fn os_text(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => {
            let s = rustix::io::Errno::from_raw_os_error(n).to_string();
            let s = s.split(" (os error").next().unwrap_or(&s).to_owned();
            let mut c = s.chars();
            match c.next() {
                Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
                None => s,
            }
        }
        None => e.to_string(),
    }
}

type Comps = Vec<Vec<u8>>;

struct DirMeta {
    path: Comps,
    mode: u32,
    mtime: u64,
}

/// What the merged view holds at a path.
enum Found {
    Missing,
    /// A directory; `in_top` when this layer already has it; the topmost one's mode and owner.
    Dir {
        in_top: bool,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    Symlink(Vec<u8>),
    /// A whiteout in this layer itself.
    TopWhiteout,
    /// A regular file, device or fifo, in layer `layer`.
    Other {
        layer: usize,
    },
}

struct Applier {
    /// This layer first, then its lowers, topmost first.
    layers: Vec<OwnedFd>,
    options: ApplyOptions,
    dirs: Vec<DirMeta>,
    written: std::collections::HashSet<Comps>,
    warnings: Vec<String>,
}

fn display(c: &[Vec<u8>]) -> String {
    let mut s = String::from("/");
    s.push_str(
        &c.iter()
            .map(|x| String::from_utf8_lossy(x).into_owned())
            .collect::<Vec<_>>()
            .join("/"),
    );
    s
}

/// Cleans a tar name as `filepath.Clean("/" + name)`: `..` stops at the root.
fn clean(name: &[u8]) -> Comps {
    let mut out: Comps = Vec::new();
    for c in name.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                out.pop();
            }
            c => out.push(c.to_vec()),
        }
    }
    out
}

fn join(c: &[Vec<u8>]) -> Vec<u8> {
    if c.is_empty() {
        return b".".to_vec();
    }
    c.join(&b'/')
}

fn is_whiteout(st: &rfs::Stat) -> bool {
    rfs::FileType::from_raw_mode(st.st_mode) == rfs::FileType::CharacterDevice && st.st_rdev == 0
}

impl Applier {
    /// Opens directory `path` beneath layer `layer`, never following a symlink.
    fn open_dir(&self, layer: usize, path: &[Vec<u8>]) -> io::Result<OwnedFd> {
        let p = join(path);
        rfs::openat2(
            self.layers[layer].as_fd(),
            OsStr::from_bytes(&p),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
        )
        .map_err(io::Error::from)
    }

    fn lstat(&self, layer: usize, path: &[Vec<u8>]) -> io::Result<Option<rfs::Stat>> {
        let (name, parent) = path.split_last().expect("non-empty path");
        let dir = match self.open_dir(layer, parent) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        match rfs::statat(&dir, OsStr::from_bytes(name), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(st)),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn is_opaque(&self, layer: usize, path: &[Vec<u8>]) -> bool {
        let Ok(fd) = self.open_dir(layer, path) else {
            return false;
        };
        let mut buf = [0u8; 4];
        [OPAQUE_XATTR, USER_OPAQUE_XATTR]
            .iter()
            .any(|n| matches!(rfs::fgetxattr(&fd, *n, &mut buf), Ok(1) if buf[0] == b'y'))
    }

    /// Looks `path` up in the merged view of this layer over its lowers, as overlayfs would.
    fn lookup(&self, path: &[Vec<u8>]) -> Result<Found, LayerError> {
        let mut candidates: Vec<usize> = (0..self.layers.len()).collect();
        for i in 0..path.len() {
            let prefix = &path[..=i];
            let mut found: Option<(usize, rfs::Stat)> = None;
            let mut next = Vec::new();
            for &l in &candidates {
                let st = self
                    .lstat(l, prefix)
                    .map_err(|e| LayerError::io("lstat", prefix, e))?;
                let Some(st) = st else { continue };
                if is_whiteout(&st) {
                    if found.is_none() && l == 0 && i == path.len() - 1 {
                        return Ok(Found::TopWhiteout);
                    }
                    break;
                }
                let is_dir = rfs::FileType::from_raw_mode(st.st_mode) == rfs::FileType::Directory;
                if found.is_none() {
                    found = Some((l, st));
                }
                if !is_dir {
                    break;
                }
                next.push(l);
                if self.is_opaque(l, prefix) {
                    break;
                }
            }
            let Some((l, st)) = found else {
                return Ok(Found::Missing);
            };
            let ft = rfs::FileType::from_raw_mode(st.st_mode);
            if i == path.len() - 1 {
                return Ok(match ft {
                    rfs::FileType::Directory => Found::Dir {
                        in_top: l == 0,
                        mode: st.st_mode & 0o7777,
                        uid: st.st_uid,
                        gid: st.st_gid,
                    },
                    rfs::FileType::Symlink => {
                        let (name, parent) = prefix.split_last().expect("non-empty");
                        let dir = self
                            .open_dir(l, parent)
                            .map_err(|e| LayerError::io("open", parent, e))?;
                        let target = rfs::readlinkat(&dir, OsStr::from_bytes(name), Vec::new())
                            .map_err(|e| LayerError::io("readlink", prefix, e))?;
                        Found::Symlink(target.into_bytes())
                    }
                    _ => Found::Other { layer: l },
                });
            }
            if ft != rfs::FileType::Directory {
                return Ok(Found::Other { layer: l });
            }
            candidates = next;
        }
        Ok(Found::Dir {
            in_top: true,
            mode: 0o755,
            uid: 0,
            gid: 0,
        })
    }

    /// Resolves `comps` as a directory path in the merged view, following symlinks inside the
    /// root, and makes sure each directory exists in this layer (copied up or created 0755).
    fn resolve_dir(&mut self, comps: &[Vec<u8>]) -> Result<Comps, LayerError> {
        let mut cur: Comps = Vec::new();
        let mut queue: std::collections::VecDeque<Vec<u8>> = comps.iter().cloned().collect();
        let mut follows = 0u32;
        while let Some(c) = queue.pop_front() {
            match c.as_slice() {
                b"" | b"." => continue,
                b".." => {
                    cur.pop();
                    continue;
                }
                _ => {}
            }
            let mut p = cur.clone();
            p.push(c);
            match self.lookup(&p)? {
                Found::Dir { in_top: true, .. } => {}
                Found::Dir {
                    in_top: false,
                    mode,
                    uid,
                    gid,
                } => self.mkdir_top(&p, mode, Some((uid, gid)), false)?,
                Found::Missing => self.mkdir_top(&p, 0o755, None, false)?,
                Found::TopWhiteout => {
                    // A directory replacing what this layer whited out hides the lower one entirely.
                    self.remove_top(&p)?;
                    self.mkdir_top(&p, 0o755, None, true)?;
                }
                Found::Symlink(target) => {
                    follows += 1;
                    if follows > MAX_SYMLINK_FOLLOWS {
                        return Err(LayerError(format!(
                            "{}: too many levels of symbolic links",
                            display(&p)
                        )));
                    }
                    if target.first() == Some(&b'/') {
                        cur.clear();
                    }
                    for t in target.split(|b| *b == b'/').rev() {
                        queue.push_front(t.to_vec());
                    }
                    continue;
                }
                Found::Other { .. } => {
                    return Err(LayerError(format!("{}: not a directory", display(&p))));
                }
            }
            cur = p;
        }
        Ok(cur)
    }

    fn mkdir_top(
        &mut self,
        p: &[Vec<u8>],
        mode: u32,
        owner: Option<(u32, u32)>,
        opaque: bool,
    ) -> Result<(), LayerError> {
        let (name, parent) = p.split_last().expect("non-empty");
        let dir = self
            .open_dir(0, parent)
            .map_err(|e| LayerError::io("open", parent, e))?;
        rfs::mkdirat(&dir, OsStr::from_bytes(name), Mode::from_raw_mode(0o700))
            .map_err(|e| LayerError::io("mkdir", p, e))?;
        if let Some((uid, gid)) = owner {
            self.chown_at(&dir, name, uid, gid, p)?;
        }
        if opaque {
            let fd = self
                .open_dir(0, p)
                .map_err(|e| LayerError::io("open", p, e))?;
            self.set_opaque(&fd, p)?;
        }
        self.dirs.push(DirMeta {
            path: p.to_vec(),
            mode,
            mtime: 0,
        });
        Ok(())
    }

    fn set_opaque(&self, fd: &OwnedFd, p: &[Vec<u8>]) -> Result<(), LayerError> {
        let name = if self.options.privileged {
            OPAQUE_XATTR
        } else {
            USER_OPAQUE_XATTR
        };
        rfs::fsetxattr(fd, name, b"y", rfs::XattrFlags::empty())
            .map_err(|e| LayerError::io("set opaque on", p, e))
    }

    fn chown_at(
        &self,
        dir: &OwnedFd,
        name: &[u8],
        uid: u32,
        gid: u32,
        p: &[Vec<u8>],
    ) -> Result<(), LayerError> {
        if !self.options.privileged {
            return Ok(());
        }
        // SAFETY-free: raw IDs from the tar header are what containerd passes to lchown too.
        let (u, g) = (rfs::Uid::from_raw(uid), rfs::Gid::from_raw(gid));
        rfs::chownat(
            dir,
            OsStr::from_bytes(name),
            Some(u),
            Some(g),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| LayerError::io("chown", p, e))
    }

    /// Removes whatever this layer has at `p`, recursively.
    fn remove_top(&self, p: &[Vec<u8>]) -> Result<(), LayerError> {
        let (name, parent) = p.split_last().expect("non-empty");
        let dir = self
            .open_dir(0, parent)
            .map_err(|e| LayerError::io("open", parent, e))?;
        remove_all(&dir, name).map_err(|e| LayerError::io("remove", p, e))
    }

    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<(), LayerError> {
        let name = entry.path_bytes().into_owned();
        if name.len() >= PATH_MAX {
            return Err(LayerError(format!(
                "{}...: file name too long",
                String::from_utf8_lossy(&name[..64])
            )));
        }
        let comps = clean(&name);
        let header = entry.header().clone();
        let kind = header.entry_type();
        if kind == tar::EntryType::XGlobalHeader {
            return Ok(());
        }
        let Some((base, parent)) = comps.split_last() else {
            // The root itself: nothing to create.
            return Ok(());
        };
        let (base, parent) = (base.clone(), parent.to_vec());
        if let Some(victim) = base.strip_prefix(b".wh.") {
            return self.whiteout(&parent, victim, &name);
        }
        let parent = self.resolve_dir(&parent)?;
        let mut full = parent.clone();
        full.push(base.clone());
        let dir = self
            .open_dir(0, &parent)
            .map_err(|e| LayerError::io("open", &parent, e))?;
        let bname = OsStr::from_bytes(&base);
        let mode = header
            .mode()
            .map_err(|e| LayerError(format!("{}: {e}", display(&full))))?
            & 0o7777;
        let uid = header.uid().unwrap_or(0) as u32;
        let gid = header.gid().unwrap_or(0) as u32;
        let mtime = header.mtime().unwrap_or(0);
        let existing = match rfs::statat(&dir, bname, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Some(rfs::FileType::from_raw_mode(st.st_mode)),
            Err(rustix::io::Errno::NOENT) => None,
            Err(e) => return Err(LayerError::io("lstat", &full, e)),
        };
        let merge_dir =
            kind == tar::EntryType::Directory && existing == Some(rfs::FileType::Directory);
        if existing.is_some() && !merge_dir {
            remove_all(&dir, &base).map_err(|e| LayerError::io("remove", &full, e))?;
        }
        let xattrs = pax_xattrs(&mut entry);
        match kind {
            tar::EntryType::Directory => {
                if !merge_dir {
                    rfs::mkdirat(&dir, bname, Mode::from_raw_mode(0o700))
                        .map_err(|e| LayerError::io("mkdir", &full, e))?;
                }
                self.chown_at(&dir, &base, uid, gid, &full)?;
                let fd = self
                    .open_dir(0, &full)
                    .map_err(|e| LayerError::io("open", &full, e))?;
                self.set_xattrs(fd.as_fd(), &xattrs, &full)?;
                self.dirs.retain(|d| d.path != full);
                self.dirs.push(DirMeta {
                    path: full.clone(),
                    mode,
                    mtime,
                });
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                let fd = rfs::openat(
                    &dir,
                    bname,
                    OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::WRONLY
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(|e| LayerError::io("create", &full, e))?;
                let mut file = std::fs::File::from(fd);
                io::copy(&mut entry, &mut file).map_err(|e| LayerError::io("write", &full, e))?;
                file.flush()
                    .map_err(|e| LayerError::io("write", &full, e))?;
                if self.options.privileged {
                    rfs::fchown(
                        &file,
                        Some(rfs::Uid::from_raw(uid)),
                        Some(rfs::Gid::from_raw(gid)),
                    )
                    .map_err(|e| LayerError::io("chown", &full, e))?;
                }
                rfs::fchmod(&file, Mode::from_raw_mode(mode))
                    .map_err(|e| LayerError::io("chmod", &full, e))?;
                self.set_xattrs(file.as_fd(), &xattrs, &full)?;
                set_times_fd(file.as_fd(), mtime)
                    .map_err(|e| LayerError::io("set times on", &full, e))?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .map(|c| c.into_owned())
                    .unwrap_or_default();
                rfs::symlinkat(OsStr::from_bytes(&target), &dir, bname)
                    .map_err(|e| LayerError::io("symlink", &full, e))?;
                self.chown_at(&dir, &base, uid, gid, &full)?;
                set_times_at(&dir, &base, mtime)
                    .map_err(|e| LayerError::io("set times on", &full, e))?;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|c| c.into_owned())
                    .unwrap_or_default();
                self.hard_link(&target, &dir, &base, &full)?;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let ft = match kind {
                    tar::EntryType::Char => rfs::FileType::CharacterDevice,
                    tar::EntryType::Block => rfs::FileType::BlockDevice,
                    _ => rfs::FileType::Fifo,
                };
                if ft != rfs::FileType::Fifo && !self.options.privileged {
                    self.warnings
                        .push(format!("skipped device {} (needs root)", display(&full)));
                    return Ok(());
                }
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                rfs::mknodat(
                    &dir,
                    bname,
                    ft,
                    Mode::from_raw_mode(mode & 0o777),
                    rfs::makedev(major, minor),
                )
                .map_err(|e| LayerError::io("mknod", &full, e))?;
                self.chown_at(&dir, &base, uid, gid, &full)?;
                if mode & 0o7000 != 0 || ft == rfs::FileType::Fifo {
                    rfs::chmodat(&dir, bname, Mode::from_raw_mode(mode), AtFlags::empty())
                        .map_err(|e| LayerError::io("chmod", &full, e))?;
                }
                set_times_at(&dir, &base, mtime)
                    .map_err(|e| LayerError::io("set times on", &full, e))?;
            }
            other => {
                return Err(LayerError(format!(
                    "unhandled tar header type {:?} for {}",
                    other.as_byte() as char,
                    display(&full)
                )));
            }
        }
        self.written.insert(full);
        Ok(())
    }

    fn whiteout(
        &mut self,
        parent: &[Vec<u8>],
        victim: &[u8],
        name: &[u8],
    ) -> Result<(), LayerError> {
        if victim == b".wh..opq" {
            let d = self.resolve_dir(parent)?;
            let fd = self
                .open_dir(0, &d)
                .map_err(|e| LayerError::io("open", &d, e))?;
            return self.set_opaque(&fd, &d);
        }
        if victim.starts_with(b".wh.") {
            // Other `.wh..wh.` names are markers of aufs; ignored as containerd does.
            return Ok(());
        }
        if victim.is_empty() || victim == b"." || victim == b".." {
            return Err(LayerError(format!(
                "invalid whiteout name: {}",
                String::from_utf8_lossy(name)
            )));
        }
        let d = self.resolve_dir(parent)?;
        let mut full = d.clone();
        full.push(victim.to_vec());
        if self.written.contains(&full) {
            // A file this layer wrote is not hidden by this layer's own whiteout.
            return Ok(());
        }
        let dir = self
            .open_dir(0, &d)
            .map_err(|e| LayerError::io("open", &d, e))?;
        match rfs::statat(&dir, OsStr::from_bytes(victim), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(_) => remove_all(&dir, victim).map_err(|e| LayerError::io("remove", &full, e))?,
            Err(rustix::io::Errno::NOENT) => {}
            Err(e) => return Err(LayerError::io("lstat", &full, e)),
        }
        rfs::mknodat(
            &dir,
            OsStr::from_bytes(victim),
            rfs::FileType::CharacterDevice,
            Mode::empty(),
            0,
        )
        .map_err(|e| LayerError::io("create whiteout", &full, e))
    }

    fn hard_link(
        &mut self,
        target: &[u8],
        dir: &OwnedFd,
        base: &[u8],
        full: &[Vec<u8>],
    ) -> Result<(), LayerError> {
        let comps = clean(target);
        let Some((tname, tparent)) = comps.split_last() else {
            return Err(LayerError(format!(
                "hard link {} to the root",
                display(full)
            )));
        };
        let tparent = self.resolve_dir(tparent)?;
        let mut tpath = tparent.clone();
        tpath.push(tname.clone());
        match self.lookup(&tpath)? {
            Found::Other { layer: 0 } | Found::Symlink(_) if self.exists_in_top(&tpath) => {}
            Found::Other { layer } => self.copy_up(layer, &tpath)?,
            _ => {
                return Err(LayerError(format!(
                    "hard link {} to {}: target not found or a directory",
                    display(full),
                    display(&tpath)
                )));
            }
        }
        let tdir = self
            .open_dir(0, &tparent)
            .map_err(|e| LayerError::io("open", &tparent, e))?;
        rfs::linkat(
            &tdir,
            OsStr::from_bytes(tname),
            dir,
            OsStr::from_bytes(base),
            AtFlags::empty(),
        )
        .map_err(|e| LayerError::io("link", full, e))
    }

    fn exists_in_top(&self, p: &[Vec<u8>]) -> bool {
        matches!(self.lstat(0, p), Ok(Some(_)))
    }

    /// Copies a file of a lower layer into this layer at the same path, keeping its metadata.
    fn copy_up(&mut self, layer: usize, p: &[Vec<u8>]) -> Result<(), LayerError> {
        let (name, parent) = p.split_last().expect("non-empty");
        let src_dir = self
            .open_dir(layer, parent)
            .map_err(|e| LayerError::io("open", parent, e))?;
        let st = rfs::statat(&src_dir, OsStr::from_bytes(name), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| LayerError::io("lstat", p, e))?;
        if rfs::FileType::from_raw_mode(st.st_mode) != rfs::FileType::RegularFile {
            return Err(LayerError(format!(
                "hard link to {}: only regular files of lower layers can be linked",
                display(p)
            )));
        }
        let src = rfs::openat(
            &src_dir,
            OsStr::from_bytes(name),
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| LayerError::io("open", p, e))?;
        let dst_dir = self
            .open_dir(0, parent)
            .map_err(|e| LayerError::io("open", parent, e))?;
        let dst = rfs::openat(
            &dst_dir,
            OsStr::from_bytes(name),
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| LayerError::io("create", p, e))?;
        let (mut src, mut dst) = (std::fs::File::from(src), std::fs::File::from(dst));
        io::copy(&mut src, &mut dst).map_err(|e| LayerError::io("copy up", p, e))?;
        if self.options.privileged {
            rfs::fchown(
                &dst,
                Some(rfs::Uid::from_raw(st.st_uid)),
                Some(rfs::Gid::from_raw(st.st_gid)),
            )
            .map_err(|e| LayerError::io("chown", p, e))?;
        }
        rfs::fchmod(&dst, Mode::from_raw_mode(st.st_mode & 0o7777))
            .map_err(|e| LayerError::io("chmod", p, e))?;
        set_times_fd(dst.as_fd(), st.st_mtime as u64)
            .map_err(|e| LayerError::io("set times on", p, e))?;
        Ok(())
    }

    fn set_xattrs(
        &self,
        fd: BorrowedFd<'_>,
        xattrs: &[(String, Vec<u8>)],
        p: &[Vec<u8>],
    ) -> Result<(), LayerError> {
        for (k, v) in xattrs {
            match rfs::fsetxattr(fd, k.as_str(), v, rfs::XattrFlags::empty()) {
                Ok(()) => {}
                // Unsupported by the filesystem, or a namespace this user may not write: skipped.
                Err(rustix::io::Errno::NOTSUP | rustix::io::Errno::PERM) => {}
                Err(e) => return Err(LayerError::io(&format!("set xattr {k} on"), p, e)),
            }
        }
        Ok(())
    }

    /// Directory modes and mtimes go last: adding children changes a directory's mtime, and a
    /// read-only mode must not stop later entries.
    fn finish_dirs(&mut self) -> Result<(), LayerError> {
        let mut dirs = std::mem::take(&mut self.dirs);
        dirs.sort_by_key(|d| std::cmp::Reverse(d.path.len()));
        for d in dirs {
            let fd = self
                .open_dir(0, &d.path)
                .map_err(|e| LayerError::io("open", &d.path, e))?;
            rfs::fchmod(&fd, Mode::from_raw_mode(d.mode))
                .map_err(|e| LayerError::io("chmod", &d.path, e))?;
            set_times_fd(fd.as_fd(), d.mtime)
                .map_err(|e| LayerError::io("set times on", &d.path, e))?;
        }
        Ok(())
    }
}

fn pax_xattrs<R: Read>(entry: &mut tar::Entry<'_, R>) -> Vec<(String, Vec<u8>)> {
    let Ok(Some(exts)) = entry.pax_extensions() else {
        return Vec::new();
    };
    exts.filter_map(Result::ok)
        .filter_map(|e| {
            let key = e.key().ok()?;
            let name = key.strip_prefix("SCHILY.xattr.")?;
            Some((name.to_owned(), e.value_bytes().to_vec()))
        })
        .collect()
}

fn timestamps(mtime: u64) -> rfs::Timestamps {
    let t = rfs::Timespec {
        tv_sec: mtime as i64,
        tv_nsec: 0,
    };
    rfs::Timestamps {
        last_access: t,
        last_modification: t,
    }
}

fn set_times_fd(fd: BorrowedFd<'_>, mtime: u64) -> io::Result<()> {
    rfs::futimens(fd, &timestamps(mtime)).map_err(Into::into)
}

fn set_times_at(dir: &OwnedFd, name: &[u8], mtime: u64) -> io::Result<()> {
    rfs::utimensat(
        dir,
        OsStr::from_bytes(name),
        &timestamps(mtime),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(Into::into)
}

/// Removes `name` in `dir` and everything under it, never following a symlink.
pub(crate) fn remove_all(dir: &OwnedFd, name: &[u8]) -> io::Result<()> {
    let n = OsStr::from_bytes(name);
    let st = match rfs::statat(dir, n, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(rustix::io::Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if rfs::FileType::from_raw_mode(st.st_mode) != rfs::FileType::Directory {
        return rfs::unlinkat(dir, n, AtFlags::empty()).map_err(Into::into);
    }
    let sub = rfs::openat(
        dir,
        n,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    // A read-only directory left by a layer must become writable to be emptied.
    let _ = rfs::fchmod(&sub, Mode::from_raw_mode(0o700));
    let mut names = Vec::new();
    for e in rfs::Dir::read_from(&sub)? {
        let e = e?;
        let b = e.file_name().to_bytes();
        if b != b"." && b != b".." {
            names.push(b.to_vec());
        }
    }
    for child in names {
        remove_all(&sub, &child)?;
    }
    rfs::unlinkat(dir, n, AtFlags::REMOVEDIR).map_err(Into::into)
}

/// Removes a directory tree at `path` (a staging or unreferenced layer directory).
pub fn remove_tree(path: &Path) -> io::Result<()> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "no parent"));
    };
    let dir = rfs::open(
        parent,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    remove_all(&dir, name.as_bytes())
}
