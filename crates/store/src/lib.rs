//! The object store's pure core: the Kubernetes API server's object rules over a
//! [`Storage`] trait, for every kind podrun serves.
//!
//! It owns: server stamping (uid, creationTimestamp, generation, deletionTimestamp and
//! grace period), create/update/delete with uid and resourceVersion preconditions,
//! finalizers, the status subresource, one global revision (an object's
//! `resourceVersion` is the revision of its last write), lists at one revision with
//! label and field selectors and paging, watches from any revision still retained
//! (bookmarks, initial events, `410 Expired` beyond the window), compaction, and
//! garbage-collection order. Every error is the API server's `Status`, word for word,
//! so a server can put it on the wire as it is.
//!
//! It never reads a clock, draws a random number, touches a file or spawns a task:
//! time and uids come in as a [`Stamp`], and storage is a trait. Backends live in
//! driver crates (`podrun-store-sqlite`); [`MemoryStorage`] is the reference.
//!
//! Objects are `serde_json::Value`s inside (every kind alike, unknown fields kept as
//! sent); typed access goes through k8s-openapi's `Resource` trait
//! ([`Store::get_as`]).
//!
//! ```
//! use podrun_store::{MemoryStorage, ResourceType, Stamp, Store};
//! use serde_json::json;
//!
//! let mut store = Store::new(MemoryStorage::new());
//! let stamp = Stamp {
//!     now: k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
//!     uid: "6f1c2a4e-0000-4000-8000-000000000001".into(),
//! };
//! let ns = json!({"metadata": {"name": "default"}});
//! store.create(&ResourceType::NAMESPACES, None, ns, &stamp)?;
//! let pod = json!({"metadata": {"name": "web"}, "spec": {"containers": []}});
//! let pod = store.create(&ResourceType::PODS, Some("default"), pod, &stamp)?;
//! assert_eq!(pod["metadata"]["resourceVersion"], "2");
//! assert_eq!(pod["status"]["phase"], "Pending");
//! let err = store.get(&ResourceType::PODS, Some("default"), "db").unwrap_err();
//! assert_eq!(err.message(), r#"pods "db" not found"#);
//! # Ok::<(), podrun_store::ApiError>(())
//! ```
//!
//! Why rows and not objects: the storage is an append-only log with one row per write
//! (as k3s's kine keeps etcd's model in one SQL table). The row id is the revision, so
//! the resourceVersion counter cannot be torn from the data it numbers, a watch is a
//! range scan from a revision, and a list at revision `R` is "the newest row of each
//! key at or below `R`". Each row also keeps the value it replaced, so a watch with a
//! selector can tell an object that left its selection (a `DELETED` for that watch)
//! from one that changed inside it.

pub mod error;
pub mod gc;
pub mod object;
pub mod resource;
pub mod selector;
pub mod storage;
pub mod store;
#[cfg(any(test, feature = "test-suite"))]
pub mod suite;
pub mod validate;
pub mod watch;

pub use error::{ApiError, FieldError, Result};
pub use resource::ResourceType;
pub use selector::{FieldSelector, Filter, LabelSelector};
pub use storage::{AppendError, EncodedRow, MemoryStorage, Row, Storage, Write};
pub use store::{
    DeleteOptions, Deleted, EncodedList, List, ListOptions, Propagation, Stamp, Store,
};
pub use watch::{EventType, INITIAL_EVENTS_END, Watch, WatchEvent, WatchOptions};
