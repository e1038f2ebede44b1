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
pub use storage::{AppendError, MemoryStorage, Row, Storage, Write};
pub use store::{DeleteOptions, Deleted, List, ListOptions, Propagation, Stamp, Store};
pub use watch::{EventType, INITIAL_EVENTS_END, Watch, WatchEvent, WatchOptions};
