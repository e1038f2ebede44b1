//! Container images for podrun: image references, an OCI distribution client, a
//! content-addressed store under `<state>/images`, and layer unpacking that never writes outside
//! a layer's directory.
//!
//! The node calls [`ImageService::ensure_image`] before each container start and gets the
//! image's layer chain (for overlayfs, lowest first) and its config.

pub mod digest;
pub mod layer;
pub mod manifest;
pub mod reference;
pub mod store;

/// The largest config (or archive JSON member) read whole.
pub const MAX_JSON: u64 = 20 << 20;
/// The largest manifest or index fetched (containerd's limit).
pub const MAX_MANIFEST: u64 = 4 * 1048 * 1048;
pub mod archive;
pub mod auth;
pub mod client;
pub mod policy;
pub mod process;
pub mod service;

pub use auth::{Credentials, Keyring};
pub use client::HostsConfig;
pub use reference::{InvalidImageName, Reference, ReferenceError, apply_default_image_tag};
pub use service::{
    EnsureError, EnsuredImage, ImageService, Lookup, PullError, PullEvent, PullPolicy, PullRequest,
    PullTimes,
};
pub use store::{ImageRecord, Store, StoreError};
