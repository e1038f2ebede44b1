//! Object storage with API-server semantics, shared by `podrun run`, `get`, `logs` and
//! `delete` (and later `podrun server`).
//!
//! Objects live as JSON files under `<state>/objects/<resource>/<namespace>/<name>.json`,
//! each written atomically (temporary file + rename), so any number of podrun processes
//! can read the store while one writes it, and a killed writer never leaves a torn
//! object. Every write takes the next `resourceVersion` from a counter guarded by an
//! exclusive `flock`, as the API server's etcd revision does.
//!
//! This crate must never run containers or speak HTTP: it only stores objects.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Errors from the store; every file error names the path.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A stored object could not be decoded.
    #[error("{path}: corrupt object: {source}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A resource kind as the API names its collection (`pods`, `jobs`, `services`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Resource(pub &'static str);

impl Resource {
    /// `pods`.
    pub const PODS: Resource = Resource("pods");
    /// `jobs` (batch/v1).
    pub const JOBS: Resource = Resource("jobs");
    /// `services`.
    pub const SERVICES: Resource = Resource("services");
}

/// An object's place in the store.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ObjectKey {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

impl ObjectKey {
    /// A key from namespace and name.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

/// The object store in a podrun state directory.
#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
}

/// Objects the store can hold: anything with Kubernetes object metadata.
pub trait StoredObject: Serialize + DeserializeOwned {
    /// The object's metadata.
    fn meta(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    /// The object's metadata, mutably.
    fn meta_mut(&mut self) -> &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
}

macro_rules! stored_object {
    ($($ty:ty),*) => {$(
        impl StoredObject for $ty {
            fn meta(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                &self.metadata
            }
            fn meta_mut(&mut self) -> &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                &mut self.metadata
            }
        }
    )*};
}

stored_object!(
    k8s_openapi::api::core::v1::Pod,
    k8s_openapi::api::batch::v1::Job,
    k8s_openapi::api::core::v1::Service
);

impl Store {
    /// Opens (creating if needed) the store under `state_dir`.
    pub fn open(state_dir: &Path) -> Result<Self> {
        let root = state_dir.join("objects");
        fs::create_dir_all(&root).map_err(io_err(&root))?;
        Ok(Self { root })
    }

    /// The directory holding the store.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, resource: Resource, key: &ObjectKey) -> PathBuf {
        self.root
            .join(resource.0)
            .join(&key.namespace)
            .join(format!("{}.json", key.name))
    }

    /// Reads one object; `None` when it does not exist.
    pub fn get<T: StoredObject>(&self, resource: Resource, key: &ObjectKey) -> Result<Option<T>> {
        read_object(&self.path(resource, key))
    }

    /// Lists the objects of a resource, in one namespace or all (`None`), sorted by
    /// namespace then name as the API server lists them.
    pub fn list<T: StoredObject>(
        &self,
        resource: Resource,
        namespace: Option<&str>,
    ) -> Result<Vec<T>> {
        let dir = self.root.join(resource.0);
        let namespaces: Vec<String> = match namespace {
            Some(ns) => vec![ns.to_string()],
            None => sorted_entries(&dir)?,
        };
        let mut out = Vec::new();
        for ns in namespaces {
            let ns_dir = dir.join(&ns);
            for file in sorted_entries(&ns_dir)? {
                if let Some(name) = file.strip_suffix(".json") {
                    let key = ObjectKey::new(ns.clone(), name);
                    if let Some(obj) = read_object(&self.path(resource, &key))? {
                        out.push(obj);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Writes an object (create or replace), stamping the next `resourceVersion`.
    /// Returns the version written.
    pub fn put<T: StoredObject>(&self, resource: Resource, obj: &mut T) -> Result<u64> {
        let meta = obj.meta();
        let key = ObjectKey::new(
            meta.namespace.clone().unwrap_or_else(|| "default".into()),
            meta.name.clone().unwrap_or_default(),
        );
        let path = self.path(resource, &key);
        let _lock = self.lock()?;
        let rv = self.bump_revision()?;
        obj.meta_mut().resource_version = Some(rv.to_string());
        let bytes = serde_json::to_vec_pretty(obj).map_err(|source| Error::Corrupt {
            path: path.clone(),
            source,
        })?;
        write_atomic(&path, &bytes)?;
        Ok(rv)
    }

    /// Removes an object; returns whether it existed.
    pub fn delete(&self, resource: Resource, key: &ObjectKey) -> Result<bool> {
        let path = self.path(resource, key);
        let _lock = self.lock()?;
        match fs::remove_file(&path) {
            Ok(()) => {
                self.bump_revision()?;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// The store-wide revision: the highest `resourceVersion` handed out.
    pub fn revision(&self) -> Result<u64> {
        let path = self.root.join("revision");
        match fs::read_to_string(&path) {
            Ok(s) => Ok(s.trim().parse().unwrap_or(0)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    fn bump_revision(&self) -> Result<u64> {
        let path = self.root.join("revision");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err(&path))?;
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(io_err(&path))?;
        let next = text.trim().parse::<u64>().unwrap_or(0) + 1;
        file.set_len(0).map_err(io_err(&path))?;
        file.rewind().map_err(io_err(&path))?;
        file.write_all(next.to_string().as_bytes())
            .map_err(io_err(&path))?;
        Ok(next)
    }

    fn lock(&self) -> Result<FileLock> {
        FileLock::exclusive(&self.root.join(".lock"))
    }
}

/// An exclusive `flock`, released on drop (or when the process dies).
#[derive(Debug)]
pub struct FileLock {
    _file: File,
}

impl FileLock {
    /// Blocks until the lock on `path` is held.
    pub fn exclusive(path: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(io_err(path))?;
        // SAFETY: flock on a file descriptor we own; no memory is involved.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        if rc != 0 {
            return Err(io_err(path)(io::Error::last_os_error()));
        }
        Ok(Self { _file: file })
    }
}

fn read_object<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| Error::Corrupt {
                path: path.to_path_buf(),
                source,
            }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path)(e)),
    }
}

fn sorted_entries(dir: &Path) -> Result<Vec<String>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(dir)(e)),
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    Ok(names)
}

/// Writes `bytes` to `path` atomically: readers see the old or the new file, never a mix.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("object"),
        std::process::id()
    ));
    fs::write(&tmp, bytes).map_err(io_err(&tmp))?;
    fs::rename(&tmp, path).map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod(ns: &str, name: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                namespace: Some(ns.into()),
                name: Some(name.into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn put_get_list_delete_round_trip_with_increasing_resource_versions() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut a = pod("default", "a");
        let mut b = pod("default", "b");
        let mut c = pod("other", "c");
        let rv_a = store.put(Resource::PODS, &mut a).unwrap();
        let rv_b = store.put(Resource::PODS, &mut b).unwrap();
        let rv_c = store.put(Resource::PODS, &mut c).unwrap();
        assert!(rv_a < rv_b && rv_b < rv_c);
        let got: Pod = store
            .get(Resource::PODS, &ObjectKey::new("default", "b"))
            .unwrap()
            .unwrap();
        assert_eq!(got.metadata.resource_version.as_deref(), Some("2"));
        let all: Vec<Pod> = store.list(Resource::PODS, None).unwrap();
        let names: Vec<_> = all
            .iter()
            .map(|p| p.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, ["a", "b", "c"]);
        let default: Vec<Pod> = store.list(Resource::PODS, Some("default")).unwrap();
        assert_eq!(default.len(), 2);
        assert!(
            store
                .delete(Resource::PODS, &ObjectKey::new("default", "a"))
                .unwrap()
        );
        assert!(
            !store
                .delete(Resource::PODS, &ObjectKey::new("default", "a"))
                .unwrap()
        );
        assert_eq!(store.revision().unwrap(), 4);
    }

    #[test]
    fn a_reopened_store_finds_its_objects_and_revision() {
        let dir = tempfile::tempdir().unwrap();
        Store::open(dir.path())
            .unwrap()
            .put(Resource::PODS, &mut pod("default", "x"))
            .unwrap();
        let store = Store::open(dir.path()).unwrap();
        let x: Option<Pod> = store
            .get(Resource::PODS, &ObjectKey::new("default", "x"))
            .unwrap();
        assert!(x.is_some());
        assert_eq!(store.revision().unwrap(), 1);
    }

    #[test]
    fn a_corrupt_object_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let path = store.root().join("pods/default/bad.json");
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, b"{not json").unwrap();
        let err = store
            .get::<Pod>(Resource::PODS, &ObjectKey::new("default", "bad"))
            .unwrap_err();
        assert!(err.to_string().contains("bad.json"), "{err}");
    }
}
