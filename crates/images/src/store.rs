//! The content-addressed image store under `<state>/images` (mode 0700):
//!
//! ```text
//! oci-layout, index.json   an OCI layout; one descriptor per image name
//! blobs/sha256/<hex>       verified blobs, shared by all images
//! ingest/<rnd>             downloads in progress
//! layers/<chain hex>/      one unpacked layer per chain ID, in overlayfs' lower-layer form
//! layers/<chain>.tmp-<rnd> a layer being unpacked
//! lock                     flock held while index.json, layers/ or the blobs are changed
//! ```
//!
//! Every blob and layer becomes visible by a rename after it is complete and synced, so a kill at
//! any moment leaves only `ingest/*` and `*.tmp-*` debris, which [`Store::open`] removes.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::{Digest, Hasher};
use crate::layer::{self, ApplyOptions};

/// Annotation: the image's full name (containerd's).
pub const ANNOTATION_NAME: &str = "io.containerd.image.name";
/// Annotation: the OCI reference name (the tag part).
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
const ANNOTATION_MANIFEST: &str = "podrun.io/manifest";
const ANNOTATION_IMAGE_ID: &str = "podrun.io/image-id";
const ANNOTATION_CHAIN_ID: &str = "podrun.io/chain-id";
const ANNOTATION_LOADED: &str = "podrun.io/loaded";
const ANNOTATION_PULLED_WITH: &str = "podrun.io/pulled-with";
const ANNOTATION_SIZE: &str = "podrun.io/size";

/// A store error, with the path or step that failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file system operation failed.
    #[error("{what}: {source}")]
    Io {
        /// The operation and path.
        what: String,
        /// The cause.
        source: io::Error,
    },
    /// A blob did not match its descriptor.
    #[error("unexpected commit digest {got}, expected {want}: failed precondition")]
    DigestMismatch {
        /// What the bytes hash to.
        got: Digest,
        /// What the descriptor says.
        want: Digest,
    },
    /// A blob was longer or shorter than its descriptor.
    #[error("unexpected commit size {got}, expected {want}: failed precondition")]
    SizeMismatch {
        /// Bytes received.
        got: u64,
        /// The descriptor's size.
        want: u64,
    },
    /// Unpacking a layer failed.
    #[error("failed to extract layer {digest}: {message}")]
    Layer {
        /// The layer's diff ID.
        digest: Digest,
        /// Why.
        message: String,
    },
    /// A layer's content did not hash to the config's diff ID.
    #[error("wrong diff id {got} calculated on extraction {want:?}")]
    WrongDiffId {
        /// What the content hashes to.
        got: Digest,
        /// The config's diff ID.
        want: String,
    },
    /// Malformed stored data.
    #[error("{0}")]
    Corrupt(String),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> StoreError {
    let what = what.into();
    move |source| StoreError::Io { what, source }
}

/// One image name in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRecord {
    /// Fully qualified name: `docker.io/library/busybox:1.36` or `…/busybox@sha256:…`.
    pub name: String,
    /// The media type of what the name points to (an index or a manifest).
    pub media_type: String,
    /// Digest of what the name points to: the repo digest.
    pub target: Digest,
    /// Size of that blob.
    pub target_size: u64,
    /// The platform manifest chosen (same as `target` without an index).
    pub manifest: Digest,
    /// The config digest: the image ID.
    pub image_id: Digest,
    /// Chain ID of the top layer (`None` for an image without layers).
    pub chain_id: Option<Digest>,
    /// Loaded from an archive rather than pulled.
    pub loaded: bool,
    /// Hash of the credentials used for the pull ("" when anonymous).
    pub pulled_with: String,
    /// Bytes of index, manifest, config and layers.
    pub size: u64,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Index {
    schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Vec<IndexEntry>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IndexEntry {
    media_type: String,
    digest: String,
    size: u64,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

impl IndexEntry {
    fn to_record(&self) -> Result<ImageRecord, StoreError> {
        let a = |k: &str| self.annotations.get(k).cloned().unwrap_or_default();
        let dig = |s: &str| Digest::parse(s).map_err(StoreError::Corrupt);
        let target = dig(&self.digest)?;
        Ok(ImageRecord {
            name: a(ANNOTATION_NAME),
            media_type: self.media_type.clone(),
            manifest: match self.annotations.get(ANNOTATION_MANIFEST) {
                Some(m) => dig(m)?,
                None => target.clone(),
            },
            target,
            target_size: self.size,
            image_id: dig(&a(ANNOTATION_IMAGE_ID))?,
            chain_id: match self.annotations.get(ANNOTATION_CHAIN_ID) {
                Some(c) if !c.is_empty() => Some(dig(c)?),
                _ => None,
            },
            loaded: a(ANNOTATION_LOADED) == "true",
            pulled_with: a(ANNOTATION_PULLED_WITH),
            size: a(ANNOTATION_SIZE).parse().unwrap_or(0),
        })
    }

    fn from_record(r: &ImageRecord) -> Self {
        let mut annotations = BTreeMap::new();
        annotations.insert(ANNOTATION_NAME.to_owned(), r.name.clone());
        if let Some(tag) = r
            .name
            .rsplit_once(':')
            .map(|(_, t)| t)
            .filter(|t| !t.contains('/') && !r.name.contains('@'))
        {
            annotations.insert(ANNOTATION_REF_NAME.to_owned(), tag.to_owned());
        }
        annotations.insert(ANNOTATION_MANIFEST.to_owned(), r.manifest.to_string());
        annotations.insert(ANNOTATION_IMAGE_ID.to_owned(), r.image_id.to_string());
        annotations.insert(
            ANNOTATION_CHAIN_ID.to_owned(),
            r.chain_id
                .as_ref()
                .map(Digest::to_string)
                .unwrap_or_default(),
        );
        annotations.insert(ANNOTATION_LOADED.to_owned(), r.loaded.to_string());
        annotations.insert(ANNOTATION_PULLED_WITH.to_owned(), r.pulled_with.clone());
        annotations.insert(ANNOTATION_SIZE.to_owned(), r.size.to_string());
        Self {
            media_type: r.media_type.clone(),
            digest: r.target.to_string(),
            size: r.target_size,
            annotations,
        }
    }
}

/// What a garbage collection removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcReport {
    /// Blobs deleted.
    pub blobs: usize,
    /// Unpacked layers deleted.
    pub layers: usize,
}

/// The image store.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// An exclusive hold on the store's lock file, released on drop.
pub struct StoreLock {
    _file: File,
}

impl Store {
    /// Opens (creating, mode 0700) the store at `root` and removes debris of interrupted pulls,
    /// loads and unpacks.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let root = root.into();
        for d in [
            root.clone(),
            root.join("blobs/sha256"),
            root.join("ingest"),
            root.join("layers"),
        ] {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&d)
                .map_err(io_err(format!("mkdir {}", d.display())))?;
        }
        fs::set_permissions(&root, fs::Permissions::from_mode(0o700))
            .map_err(io_err(format!("chmod {}", root.display())))?;
        let store = Self { root };
        let layout = store.root.join("oci-layout");
        if !layout.exists() {
            store.write_atomic(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        if !store.root.join("index.json").exists() {
            store.write_index(&Index {
                schema_version: 2,
                media_type: Some(MEDIA_INDEX.to_owned()),
                manifests: vec![],
            })?;
        }
        let _lock = store.lock()?;
        store.clean_debris()?;
        Ok(store)
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Takes the store's exclusive lock (blocking).
    pub fn lock(&self) -> Result<StoreLock, StoreError> {
        let path = self.root.join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_err(format!("open {}", path.display())))?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive).map_err(|e| {
            StoreError::Io {
                what: format!("lock {}", path.display()),
                source: e.into(),
            }
        })?;
        Ok(StoreLock { _file: file })
    }

    /// Removes downloads and unpacks left by processes that died. Each live one holds an
    /// exclusive `flock` on its file or staging directory, so another podrun's work in progress
    /// (a pull while `podrun images` runs) is left alone.
    fn clean_debris(&self) -> Result<(), StoreError> {
        let ingest = self.root.join("ingest");
        for e in fs::read_dir(&ingest).map_err(io_err("read ingest"))? {
            let e = e.map_err(io_err("read ingest"))?;
            if is_abandoned(&e.path()) {
                let _ = fs::remove_file(e.path());
            }
        }
        let layers = self.root.join("layers");
        for e in fs::read_dir(&layers).map_err(io_err("read layers"))? {
            let e = e.map_err(io_err("read layers"))?;
            if e.file_name().to_string_lossy().contains(".tmp-") && is_abandoned(&e.path()) {
                layer::remove_tree(&e.path())
                    .map_err(io_err(format!("remove {}", e.path().display())))?;
            }
        }
        for e in fs::read_dir(&self.root).map_err(io_err("read store"))? {
            let e = e.map_err(io_err("read store"))?;
            // index.json is only replaced with the store lock held, which this caller holds.
            if e.file_name().to_string_lossy().contains(".tmp-") {
                let _ = fs::remove_file(e.path());
            }
        }
        Ok(())
    }

    /// A new file in `ingest/` for scratch data (a decompressed or piped archive), locked as
    /// in progress until dropped; the caller removes it.
    pub fn scratch_file(&self) -> Result<(PathBuf, File), StoreError> {
        let path = self.root.join("ingest").join(random_name());
        let file = OpenOptions::new()
            .create_new(true)
            .read(true)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_err(format!("create {}", path.display())))?;
        hold(&file).map_err(io_err(format!("lock {}", path.display())))?;
        Ok((path, file))
    }

    /// Where blob `d` lives.
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(d.hex())
    }

    /// Whether blob `d` is stored with size `size`.
    pub fn has_blob(&self, d: &Digest, size: u64) -> bool {
        fs::metadata(self.blob_path(d))
            .map(|m| m.len() == size)
            .unwrap_or(false)
    }

    /// Reads a small blob (a manifest, index or config) whole, refusing more than `limit` bytes.
    pub fn read_blob(&self, d: &Digest, limit: u64) -> Result<Vec<u8>, StoreError> {
        let p = self.blob_path(d);
        let mut buf = Vec::new();
        File::open(&p)
            .map_err(io_err(format!("open blob {d}")))?
            .take(limit + 1)
            .read_to_end(&mut buf)
            .map_err(io_err(format!("read blob {d}")))?;
        if buf.len() as u64 > limit {
            return Err(StoreError::Corrupt(format!(
                "blob {d} is larger than {limit} bytes"
            )));
        }
        Ok(buf)
    }

    /// Starts writing a blob expected to be `want` with `size` bytes.
    pub fn writer(&self, want: &Digest, size: u64) -> Result<BlobWriter, StoreError> {
        let path = self.root.join("ingest").join(random_name());
        let file = OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_err(format!("create {}", path.display())))?;
        hold(&file).map_err(io_err(format!("lock {}", path.display())))?;
        Ok(BlobWriter {
            file,
            path,
            hasher: Hasher::new(),
            want: want.clone(),
            size,
            store: self.clone(),
        })
    }

    /// Stores `data` as a blob, verifying it is `want`.
    pub fn put_blob(&self, want: &Digest, data: &[u8]) -> Result<(), StoreError> {
        if self.has_blob(want, data.len() as u64) {
            return Ok(());
        }
        let mut w = self.writer(want, data.len() as u64)?;
        w.write(data)?;
        w.commit()
    }

    /// Stores a blob whose digest is not known beforehand (a layer of a docker archive), hashing
    /// it as it is written; refuses more than `limit` bytes.
    pub fn put_stream(&self, r: &mut dyn Read, limit: u64) -> Result<(Digest, u64), StoreError> {
        let path = self.root.join("ingest").join(random_name());
        let result = (|| {
            let mut file = OpenOptions::new()
                .create_new(true)
                .write(true)
                .mode(0o600)
                .open(&path)
                .map_err(io_err(format!("create {}", path.display())))?;
            hold(&file).map_err(io_err(format!("lock {}", path.display())))?;
            let mut hasher = Hasher::new();
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                let n = r.read(&mut buf).map_err(io_err("read blob"))?;
                if n == 0 {
                    break;
                }
                if hasher.len() + n as u64 > limit {
                    return Err(StoreError::SizeMismatch {
                        got: hasher.len() + n as u64,
                        want: limit,
                    });
                }
                hasher.update(&buf[..n]);
                file.write_all(&buf[..n])
                    .map_err(io_err(format!("write {}", path.display())))?;
            }
            let size = hasher.len();
            let digest = hasher.finish();
            file.sync_all()
                .map_err(io_err(format!("sync {}", path.display())))?;
            fs::rename(&path, self.blob_path(&digest))
                .map_err(io_err(format!("rename {}", path.display())))?;
            sync_dir(&self.root.join("blobs/sha256")).map_err(io_err("sync blobs"))?;
            Ok((digest, size))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&path);
        }
        result
    }

    /// Where the unpacked layer with chain ID `chain` lives.
    pub fn layer_path(&self, chain: &Digest) -> PathBuf {
        self.root.join("layers").join(chain.hex())
    }

    /// Unpacks the layers (blob digest, diff ID) in order, each once per chain ID, and returns the
    /// layer directories lowest first. Already unpacked chains are reused.
    pub fn unpack(
        &self,
        layers: &[(Digest, Digest)],
        options: ApplyOptions,
        mut progress: impl FnMut(&Digest),
    ) -> Result<Vec<PathBuf>, StoreError> {
        let mut dirs: Vec<PathBuf> = Vec::new();
        let mut chain: Option<Digest> = None;
        for (blob, diff_id) in layers {
            let c = Digest::chain(chain.as_ref(), diff_id);
            let dir = self.layer_path(&c);
            if !dir.exists() {
                progress(blob);
                self.unpack_one(blob, diff_id, &c, &dirs, options)?;
            }
            dirs.push(dir);
            chain = Some(c);
        }
        Ok(dirs)
    }

    fn unpack_one(
        &self,
        blob: &Digest,
        diff_id: &Digest,
        chain: &Digest,
        lowers: &[PathBuf],
        options: ApplyOptions,
    ) -> Result<(), StoreError> {
        let dest = self.layer_path(chain);
        let tmp = self
            .root
            .join("layers")
            .join(format!("{}.tmp-{}", chain.hex(), random_name()));
        fs::DirBuilder::new()
            .mode(0o755)
            .create(&tmp)
            .map_err(io_err(format!("mkdir {}", tmp.display())))?;
        let staging = File::open(&tmp).map_err(io_err(format!("open {}", tmp.display())))?;
        hold(&staging).map_err(io_err(format!("lock {}", tmp.display())))?;
        let result = (|| {
            let file =
                File::open(self.blob_path(blob)).map_err(io_err(format!("open blob {blob}")))?;
            let lower_refs: Vec<&Path> = lowers.iter().rev().map(PathBuf::as_path).collect();
            let applied = layer::apply_layer(file, &tmp, &lower_refs, options).map_err(|e| {
                StoreError::Layer {
                    digest: blob.clone(),
                    message: e.0,
                }
            })?;
            for w in &applied.warnings {
                tracing::warn!(layer = %blob, "{w}");
            }
            if &applied.diff_id != diff_id {
                return Err(StoreError::WrongDiffId {
                    got: applied.diff_id,
                    want: diff_id.to_string(),
                });
            }
            sync_tree(&tmp).map_err(io_err(format!("sync {}", tmp.display())))?;
            match fs::rename(&tmp, &dest) {
                Ok(()) => {}
                // Another process unpacked the same chain first: theirs is identical.
                Err(e) if dest.exists() => drop(e),
                Err(e) => return Err(io_err(format!("rename {}", tmp.display()))(e)),
            }
            sync_dir(&self.root.join("layers")).map_err(io_err("sync layers"))
        })();
        if tmp.exists() {
            let _ = layer::remove_tree(&tmp);
        }
        result
    }

    /// All image records, in index order.
    pub fn records(&self) -> Result<Vec<ImageRecord>, StoreError> {
        self.read_index()?
            .manifests
            .iter()
            .map(IndexEntry::to_record)
            .collect()
    }

    /// The record named `name`, if any.
    pub fn record(&self, name: &str) -> Result<Option<ImageRecord>, StoreError> {
        Ok(self.records()?.into_iter().find(|r| r.name == name))
    }

    /// Adds or replaces the record with `record.name`. Call with the lock held.
    pub fn put_record(&self, record: &ImageRecord) -> Result<(), StoreError> {
        let mut index = self.read_index()?;
        let entry = IndexEntry::from_record(record);
        match index
            .manifests
            .iter_mut()
            .find(|e| e.annotations.get(ANNOTATION_NAME) == Some(&record.name))
        {
            Some(e) => *e = entry,
            None => index.manifests.push(entry),
        }
        self.write_index(&index)
    }

    /// Removes the record named `name`; whether there was one. Call with the lock held.
    pub fn remove_record(&self, name: &str) -> Result<bool, StoreError> {
        let mut index = self.read_index()?;
        let before = index.manifests.len();
        index
            .manifests
            .retain(|e| e.annotations.get(ANNOTATION_NAME).map(String::as_str) != Some(name));
        let removed = index.manifests.len() != before;
        if removed {
            self.write_index(&index)?;
        }
        Ok(removed)
    }

    /// Deletes blobs and unpacked layers no record refers to, nor any chain in `in_use`.
    /// Call with the lock held.
    pub fn gc(&self, in_use: &HashSet<Digest>) -> Result<GcReport, StoreError> {
        let mut blobs: HashSet<String> = HashSet::new();
        let mut chains: HashSet<String> = in_use.iter().map(|d| d.hex().to_owned()).collect();
        for r in self.records()? {
            blobs.insert(r.target.hex().to_owned());
            blobs.insert(r.manifest.hex().to_owned());
            let manifest = self.read_blob(&r.manifest, crate::MAX_JSON)?;
            let m = crate::manifest::parse_manifest(&manifest).map_err(StoreError::Corrupt)?;
            blobs.insert(m.config.digest.hex().to_owned());
            for l in &m.layers {
                blobs.insert(l.digest.hex().to_owned());
            }
            let config = self.read_blob(&m.config.digest, crate::MAX_JSON)?;
            let diff_ids = crate::manifest::diff_ids(&config).map_err(StoreError::Corrupt)?;
            let mut chain: Option<Digest> = None;
            for d in &diff_ids {
                let c = Digest::chain(chain.as_ref(), d);
                chains.insert(c.hex().to_owned());
                chain = Some(c);
            }
        }
        let mut report = GcReport::default();
        let bdir = self.root.join("blobs/sha256");
        for e in fs::read_dir(&bdir).map_err(io_err("read blobs"))? {
            let e = e.map_err(io_err("read blobs"))?;
            if !blobs.contains(e.file_name().to_string_lossy().as_ref()) {
                fs::remove_file(e.path())
                    .map_err(io_err(format!("remove {}", e.path().display())))?;
                report.blobs += 1;
            }
        }
        let ldir = self.root.join("layers");
        for e in fs::read_dir(&ldir).map_err(io_err("read layers"))? {
            let e = e.map_err(io_err("read layers"))?;
            if !chains.contains(e.file_name().to_string_lossy().as_ref()) {
                layer::remove_tree(&e.path())
                    .map_err(io_err(format!("remove {}", e.path().display())))?;
                report.layers += 1;
            }
        }
        Ok(report)
    }

    fn read_index(&self) -> Result<Index, StoreError> {
        let p = self.root.join("index.json");
        let data = fs::read(&p).map_err(io_err(format!("read {}", p.display())))?;
        serde_json::from_slice(&data)
            .map_err(|e| StoreError::Corrupt(format!("{}: {e}", p.display())))
    }

    fn write_index(&self, index: &Index) -> Result<(), StoreError> {
        let data = serde_json::to_vec(index).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.write_atomic(&self.root.join("index.json"), &data)
    }

    fn write_atomic(&self, path: &Path, data: &[u8]) -> Result<(), StoreError> {
        let tmp = path.with_file_name(format!(
            "{}.tmp-{}",
            path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
            random_name()
        ));
        let mut f = OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io_err(format!("create {}", tmp.display())))?;
        let r = f
            .write_all(data)
            .and_then(|()| f.sync_all())
            .and_then(|()| fs::rename(&tmp, path));
        if let Err(e) = r {
            let _ = fs::remove_file(&tmp);
            return Err(io_err(format!("write {}", path.display()))(e));
        }
        sync_dir(path.parent().unwrap_or(Path::new("."))).map_err(io_err("sync store"))
    }
}

/// The OCI index media type.
pub const MEDIA_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// A blob being written: hashed as it arrives, visible only after [`BlobWriter::commit`].
pub struct BlobWriter {
    file: File,
    path: PathBuf,
    hasher: Hasher,
    want: Digest,
    size: u64,
    store: Store,
}

impl BlobWriter {
    /// Appends bytes; more than the descriptor's size is refused at once.
    pub fn write(&mut self, data: &[u8]) -> Result<(), StoreError> {
        if self.hasher.len() + data.len() as u64 > self.size {
            return Err(StoreError::SizeMismatch {
                got: self.hasher.len() + data.len() as u64,
                want: self.size,
            });
        }
        self.hasher.update(data);
        self.file
            .write_all(data)
            .map_err(io_err(format!("write {}", self.path.display())))
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.hasher.len()
    }

    /// Verifies size and digest, syncs, and renames the blob into place.
    pub fn commit(mut self) -> Result<(), StoreError> {
        let hasher = std::mem::take(&mut self.hasher);
        let (file, path, want, size, store) =
            (&self.file, &self.path, &self.want, self.size, &self.store);
        let result = (|| {
            if hasher.len() != size {
                return Err(StoreError::SizeMismatch {
                    got: hasher.len(),
                    want: size,
                });
            }
            let got = hasher.finish();
            if &got != want {
                return Err(StoreError::DigestMismatch {
                    got,
                    want: want.clone(),
                });
            }
            file.sync_all()
                .map_err(io_err(format!("sync {}", path.display())))?;
            let dest = store.blob_path(want);
            fs::rename(path, &dest).map_err(io_err(format!("rename {}", path.display())))?;
            sync_dir(&store.root.join("blobs/sha256")).map_err(io_err("sync blobs"))
        })();
        if result.is_err() {
            let _ = fs::remove_file(path);
        }
        result
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        // After a commit the path no longer exists; an abandoned write leaves nothing.
        let _ = fs::remove_file(&self.path);
    }
}

/// Marks a file or directory as in use by this process (released when the fd closes).
fn hold(f: &File) -> io::Result<()> {
    rustix::fs::flock(f, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(Into::into)
}

/// Whether no live process holds `path` (its lock can be taken).
fn is_abandoned(path: &Path) -> bool {
    match File::open(path) {
        Ok(f) => hold(&f).is_ok(),
        Err(_) => false,
    }
}

pub(crate) fn random_name() -> String {
    format!("{:016x}", rand::random::<u64>())
}

fn sync_dir(p: &Path) -> io::Result<()> {
    File::open(p)?.sync_all()
}

/// Syncs every regular file and directory of an unpacked layer before it becomes visible.
fn sync_tree(p: &Path) -> io::Result<()> {
    rustix::fs::syncfs(File::open(p)?).map_err(Into::into)
}
