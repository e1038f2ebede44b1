//! Pulling into the store, and what the node asks before each container start:
//! [`ImageService::ensure_image`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use oci_spec::image::ImageConfiguration;

use crate::auth::{Credentials, Keyring};
use crate::client::{Client, ClientError, Endpoint, HostsConfig, read_limited, status_text};
use crate::digest::Digest;
use crate::layer::ApplyOptions;
use crate::manifest::{self, Desc, Platform};
use crate::reference::{InvalidImageName, Reference, apply_default_image_tag};
use crate::store::{ImageRecord, Store, StoreError};

/// The container's `imagePullPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    /// Pull before every start.
    Always,
    /// Pull only when absent.
    IfNotPresent,
    /// Never pull.
    Never,
}

/// What a pull reports while it runs (for a progress display).
#[derive(Debug, Clone)]
pub enum PullEvent {
    /// The reference resolved to this digest.
    Resolved {
        /// The top-level digest.
        digest: Digest,
    },
    /// A layer download starts.
    LayerStarted {
        /// The layer blob.
        digest: Digest,
        /// Its size.
        size: u64,
    },
    /// Bytes of a layer arrived.
    LayerProgress {
        /// The layer blob.
        digest: Digest,
        /// Bytes so far.
        done: u64,
    },
    /// A layer was already stored.
    LayerExists {
        /// The layer blob.
        digest: Digest,
    },
    /// A layer is being unpacked.
    Unpacking {
        /// The layer blob.
        digest: Digest,
    },
}

/// Receives pull progress.
pub type Progress = Arc<dyn Fn(PullEvent) + Send + Sync>;

/// A pull's failure, worded as containerd's.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// The reference could not be resolved.
    #[error("failed to pull and unpack image {reference:?}: failed to resolve image: {message}")]
    Resolve {
        /// The normalised reference.
        reference: String,
        /// Why.
        message: String,
    },
    /// Fetching or storing content failed.
    #[error("failed to pull and unpack image {reference:?}: {message}")]
    Pull {
        /// The normalised reference.
        reference: String,
        /// Why.
        message: String,
    },
}

impl PullError {
    /// Whether the registry said the image does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Resolve { message, .. } if message.ends_with(": not found"))
    }
}

/// An image ready to run: its layers for overlayfs (lowest first) and its config.
#[derive(Debug, Clone)]
pub struct EnsuredImage {
    /// The store record (name, image ID, repo digest).
    pub record: ImageRecord,
    /// The unpacked layer directories, lowest first.
    pub layers: Vec<PathBuf>,
    /// The image config.
    pub config: ImageConfiguration,
    /// Set when this call pulled: how long it took.
    pub pulled_in: Option<PullTimes>,
}

/// How long a pull took, for the kubelet's `Pulled` event
/// (`Successfully pulled image "…" in <pull> (<total> including waiting)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PullTimes {
    /// The pull itself.
    pub pull: Duration,
    /// From the request, including waiting behind other pulls.
    pub total: Duration,
}

impl EnsuredImage {
    /// `<name>@<digest pulled>`, the container status' `imageID`.
    pub fn image_ref(&self) -> String {
        let name = self
            .record
            .name
            .split('@')
            .next()
            .unwrap_or(&self.record.name);
        let repo = match name.rfind(':') {
            Some(i) if !name[i..].contains('/') => &name[..i],
            _ => name,
        };
        format!("{repo}@{}", self.record.target)
    }
}

/// Why `ensure_image` failed, with the kubelet's reason.
#[derive(Debug, thiserror::Error)]
pub enum EnsureError {
    /// `InvalidImageName`.
    #[error(transparent)]
    InvalidImageName(#[from] InvalidImageName),
    /// `ErrImageNeverPull`.
    #[error("Container image {0:?} is not present with pull policy of Never")]
    NeverPull(String),
    /// `ErrImagePull`.
    #[error(transparent)]
    Pull(#[from] PullError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl EnsureError {
    /// The kubelet's waiting reason for this failure.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::InvalidImageName(_) => "InvalidImageName",
            Self::NeverPull(_) => "ErrImageNeverPull",
            Self::Pull(_) | Self::Store(_) => "ErrImagePull",
        }
    }
}

/// What [`ImageService::lookup`] found.
#[derive(Debug)]
pub enum Lookup {
    /// The image is stored and the pod may use it.
    Present(Box<EnsuredImage>),
    /// It must be pulled: hand this to [`ImageService::pull_request`].
    Pull(PullRequest),
}

/// A pull [`ImageService::lookup`] decided on.
#[derive(Debug, Clone)]
pub struct PullRequest {
    reference: Reference,
    creds: Vec<Credentials>,
    policy: PullPolicy,
    requested: Instant,
}

impl PullRequest {
    /// The normalised reference to pull.
    pub fn reference(&self) -> &Reference {
        &self.reference
    }
}

/// Pulls, stores and unpacks images.
#[derive(Clone)]
pub struct ImageService {
    /// Pulls run one at a time (the kubelet's default `serializeImagePulls`); a caller waiting
    /// here for the same image finds it present when its turn comes.
    pull_lock: Arc<tokio::sync::Mutex<()>>,
    store: Store,
    hosts: HostsConfig,
    platform: Platform,
    apply: ApplyOptions,
}

impl ImageService {
    /// A service over the store at `root`.
    pub fn open(root: impl Into<PathBuf>, hosts: HostsConfig) -> Result<Self, StoreError> {
        Ok(Self {
            pull_lock: Arc::new(tokio::sync::Mutex::new(())),
            store: Store::open(root)?,
            hosts,
            platform: Platform::host(),
            apply: ApplyOptions::for_current_user(),
        })
    }

    /// Pulls for another platform than the host's.
    pub fn with_platform(mut self, platform: Platform) -> Self {
        self.platform = platform;
        self
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// What the node calls before each container start: the image named `spec` (as written in
    /// the pod) under `policy`, pulled with `keyring` if it must be. [`Self::lookup`] then
    /// [`Self::pull_request`].
    pub async fn ensure_image(
        &self,
        spec: &str,
        policy: PullPolicy,
        keyring: &Keyring,
    ) -> Result<EnsuredImage, EnsureError> {
        match self.lookup(spec, policy, keyring)? {
            Lookup::Present(image) => Ok(*image),
            Lookup::Pull(request) => self.pull_request(request).await,
        }
    }

    /// The part of [`Self::ensure_image`] that needs no network: the reference checked, and
    /// the stored image if `policy` lets the pod use it; otherwise the pull to make.
    pub fn lookup(
        &self,
        spec: &str,
        policy: PullPolicy,
        keyring: &Keyring,
    ) -> Result<Lookup, EnsureError> {
        let with_tag = apply_default_image_tag(spec)?;
        let reference = Reference::parse_normalized(&with_tag)
            .map_err(|source| InvalidImageName {
                spec: spec.to_owned(),
                source,
            })?
            .to_pull_ref();
        let creds = keyring.lookup(reference.domain(), reference.path());
        if let Some(image) = self.present(&reference, policy, &creds)? {
            return Ok(Lookup::Present(Box::new(image)));
        }
        if policy == PullPolicy::Never {
            return Err(EnsureError::NeverPull(spec.to_owned()));
        }
        Ok(Lookup::Pull(PullRequest {
            reference,
            creds,
            policy,
            requested: Instant::now(),
        }))
    }

    /// Carries out a pull [`Self::lookup`] asked for, after waiting for the pulls before it.
    /// Dropping the future cancels the pull and leaves nothing in `ingest/`.
    pub async fn pull_request(&self, request: PullRequest) -> Result<EnsuredImage, EnsureError> {
        let PullRequest {
            reference,
            creds,
            policy,
            requested,
        } = request;
        let _turn = self.pull_lock.lock().await;
        // Another caller may have pulled it while this one waited.
        if let Some(image) = self.present(&reference, policy, &creds)? {
            return Ok(image);
        }
        let start = Instant::now();
        let record = self.pull_with_keyring(&reference, &creds, None).await?;
        let times = PullTimes {
            pull: start.elapsed(),
            total: requested.elapsed(),
        };
        Ok(self.open_image(record, Some(times))?)
    }

    /// The stored image, if `policy` lets this pod use it without pulling: preloaded, pulled
    /// anonymously, or pulled with credentials the pod also presents.
    fn present(
        &self,
        reference: &Reference,
        policy: PullPolicy,
        creds: &[Credentials],
    ) -> Result<Option<EnsuredImage>, StoreError> {
        if policy == PullPolicy::Always {
            return Ok(None);
        }
        let Some(record) = self.store.record(&reference.to_string())? else {
            return Ok(None);
        };
        let usable = record.loaded
            || record.pulled_with.is_empty()
            || creds.iter().any(|c| c.fingerprint() == record.pulled_with);
        if usable || policy == PullPolicy::Never {
            return Ok(Some(self.open_image(record, None)?));
        }
        Ok(None)
    }

    /// Tries each matching credential in turn, then (with none) anonymously.
    async fn pull_with_keyring(
        &self,
        reference: &Reference,
        creds: &[Credentials],
        progress: Option<Progress>,
    ) -> Result<ImageRecord, PullError> {
        let mut last = None;
        for c in creds {
            match self
                .pull(reference, Some(c.clone()), progress.clone())
                .await
            {
                Ok(r) => return Ok(r),
                Err(e) => last = Some(e),
            }
        }
        match last {
            Some(e) => Err(e),
            None => self.pull(reference, None, progress).await,
        }
    }

    /// The layers and config of a stored image, unpacking any layer not yet unpacked.
    pub fn open_image(
        &self,
        record: ImageRecord,
        pulled_in: Option<PullTimes>,
    ) -> Result<EnsuredImage, StoreError> {
        let m = manifest::parse_manifest(&self.store.read_blob(&record.manifest, crate::MAX_JSON)?)
            .map_err(StoreError::Corrupt)?;
        let config_bytes = self.store.read_blob(&m.config.digest, crate::MAX_JSON)?;
        let config = manifest::parse_config(&config_bytes).map_err(StoreError::Corrupt)?;
        let diff_ids = manifest::diff_ids(&config_bytes).map_err(StoreError::Corrupt)?;
        let pairs: Vec<(Digest, Digest)> = m
            .layers
            .iter()
            .map(|l| l.digest.clone())
            .zip(diff_ids)
            .collect();
        let layers = self.store.unpack(&pairs, self.apply, |_| {})?;
        Ok(EnsuredImage {
            record,
            layers,
            config,
            pulled_in,
        })
    }

    /// Pulls `reference` (normalised) into the store and unpacks it; an unchanged image fetches
    /// only its manifest.
    pub async fn pull(
        &self,
        reference: &Reference,
        credentials: Option<Credentials>,
        progress: Option<Progress>,
    ) -> Result<ImageRecord, PullError> {
        let reference = reference.to_pull_ref();
        let name = reference.to_string();
        let resolve_err = |message: String| PullError::Resolve {
            reference: name.clone(),
            message,
        };
        let pull_err = |message: String| PullError::Pull {
            reference: name.clone(),
            message,
        };
        let emit = |e: PullEvent| {
            if let Some(p) = &progress {
                p(e);
            }
        };
        let fingerprint = credentials
            .as_ref()
            .map(Credentials::fingerprint)
            .unwrap_or_default();
        let client = Client::new(credentials);
        let endpoints = self
            .hosts
            .endpoints(reference.domain())
            .map_err(&resolve_err)?;
        let repo = reference.path();

        // Resolve: HEAD on the manifest at each endpoint in turn.
        let mut resolved: Option<(Endpoint, Desc)> = None;
        let mut last_err = String::new();
        for ep in &endpoints {
            match resolve(&client, ep, repo, reference.object(), &name).await {
                Ok(desc) => {
                    resolved = Some((ep.clone(), desc));
                    break;
                }
                Err(e) => last_err = e,
            }
        }
        let Some((ep, top)) = resolved else {
            return Err(resolve_err(last_err));
        };
        if let Some(d) = reference.digest()
            && top.digest.as_str() != d
        {
            return Err(resolve_err(format!(
                "{name}: resolved to {} instead of the digest asked for",
                top.digest
            )));
        }
        emit(PullEvent::Resolved {
            digest: top.digest.clone(),
        });

        let top_bytes = self
            .fetch_small(&client, &ep, repo, "manifests", &top)
            .await
            .map_err(&pull_err)?;
        let mut size = top.size;
        let manifest_desc = if manifest::is_index(&top.media_type, &top_bytes) {
            let chosen =
                manifest::select_platform(&top_bytes, &self.platform).map_err(&pull_err)?;
            self.fetch_small(&client, &ep, repo, "manifests", &chosen)
                .await
                .map_err(&pull_err)?;
            size += chosen.size;
            chosen
        } else {
            top.clone()
        };
        let m = manifest::parse_manifest(
            &self
                .store
                .read_blob(&manifest_desc.digest, crate::MAX_JSON)
                .map_err(|e| pull_err(e.to_string()))?,
        )
        .map_err(&pull_err)?;
        let config_bytes = self
            .fetch_small(&client, &ep, repo, "blobs", &m.config)
            .await
            .map_err(&pull_err)?;
        size += m.config.size;
        let diff_ids = manifest::diff_ids(&config_bytes).map_err(&pull_err)?;
        if diff_ids.len() != m.layers.len() {
            return Err(pull_err(format!(
                "mismatched image rootfs and manifest layers: {} diff ids, {} layers",
                diff_ids.len(),
                m.layers.len()
            )));
        }
        if let Some(l) = m
            .layers
            .iter()
            .find(|l| l.media_type.contains("+encrypted") || l.media_type.contains(".foreign."))
        {
            return Err(pull_err(format!(
                "unsupported layer media type {} ({})",
                l.media_type, l.digest
            )));
        }
        for l in &m.layers {
            size += l.size;
            if self.store.has_blob(&l.digest, l.size) {
                emit(PullEvent::LayerExists {
                    digest: l.digest.clone(),
                });
                continue;
            }
            emit(PullEvent::LayerStarted {
                digest: l.digest.clone(),
                size: l.size,
            });
            self.fetch_blob(&client, &ep, repo, l, &emit)
                .await
                .map_err(&pull_err)?;
        }
        // Unpack (counted in the pull), then publish the name.
        let pairs: Vec<(Digest, Digest)> = m
            .layers
            .iter()
            .map(|l| l.digest.clone())
            .zip(diff_ids.iter().cloned())
            .collect();
        let chain_id = pairs.iter().fold(None, |c: Option<Digest>, (_, d)| {
            Some(Digest::chain(c.as_ref(), d))
        });
        let store = self.store.clone();
        let apply = self.apply;
        let progress2 = progress.clone();
        tokio::task::spawn_blocking(move || {
            store.unpack(&pairs, apply, |d| {
                if let Some(p) = &progress2 {
                    p(PullEvent::Unpacking { digest: d.clone() });
                }
            })
        })
        .await
        .map_err(|e| pull_err(format!("unpack task: {e}")))?
        .map_err(|e| pull_err(e.to_string()))?;
        let record = ImageRecord {
            name: name.clone(),
            media_type: top.media_type.clone(),
            target: top.digest.clone(),
            target_size: top.size,
            manifest: manifest_desc.digest.clone(),
            image_id: m.config.digest.clone(),
            chain_id,
            loaded: false,
            pulled_with: fingerprint,
            size,
        };
        let _lock = self.store.lock().map_err(|e| pull_err(e.to_string()))?;
        self.store
            .put_record(&record)
            .map_err(|e| pull_err(e.to_string()))?;
        Ok(record)
    }

    /// Fetches a manifest, index or config (if not stored), verifies and stores it.
    async fn fetch_small(
        &self,
        client: &Client,
        ep: &Endpoint,
        repo: &str,
        kind: &str,
        d: &Desc,
    ) -> Result<Vec<u8>, String> {
        if self.store.has_blob(&d.digest, d.size) {
            return self
                .store
                .read_blob(&d.digest, crate::MAX_JSON)
                .map_err(|e| e.to_string());
        }
        let limit = if kind == "manifests" {
            crate::MAX_MANIFEST
        } else {
            crate::MAX_JSON
        };
        if d.size > limit {
            return Err(format!("{} is larger than {limit} bytes", d.digest));
        }
        let accept = (kind == "manifests").then_some(manifest::ACCEPT);
        let f = client
            .fetch(ep, repo, Method::GET, kind, d.digest.as_str(), accept)
            .await
            .map_err(|e| e.to_string())?;
        if f.response.status() != StatusCode::OK {
            return Err(format!(
                "failed to copy: unexpected status from GET request to {}: {}",
                f.url,
                status_text(f.response.status())
            ));
        }
        let body = read_limited(f.response, d.size as usize + 1)
            .await
            .map_err(|e| format!("failed to copy: {e}"))?;
        self.store
            .put_blob(&d.digest, &body)
            .map_err(|e| format!("failed to copy: {e}"))?;
        Ok(body)
    }

    async fn fetch_blob(
        &self,
        client: &Client,
        ep: &Endpoint,
        repo: &str,
        d: &Desc,
        emit: &impl Fn(PullEvent),
    ) -> Result<(), String> {
        let f = client
            .fetch(ep, repo, Method::GET, "blobs", d.digest.as_str(), None)
            .await
            .map_err(|e| e.to_string())?;
        if f.response.status() != StatusCode::OK {
            return Err(format!(
                "failed to copy: unexpected status from GET request to {}: {}",
                f.url,
                status_text(f.response.status())
            ));
        }
        let mut w = self
            .store
            .writer(&d.digest, d.size)
            .map_err(|e| format!("failed to copy: {e}"))?;
        let mut body = f.response.into_body();
        let mut last_emit = 0u64;
        while let Some(frame) = crate::client::next_frame(&mut body)
            .await
            .map_err(|e| format!("failed to copy: {e}"))?
        {
            let frame = frame.map_err(|e| format!("failed to copy: {e}"))?;
            if let Some(data) = frame.data_ref() {
                w.write(data).map_err(|e| format!("failed to copy: {e}"))?;
                if w.written() - last_emit >= 256 * 1024 {
                    last_emit = w.written();
                    emit(PullEvent::LayerProgress {
                        digest: d.digest.clone(),
                        done: last_emit,
                    });
                }
            }
        }
        let written = w.written();
        w.commit().map_err(|e| format!("failed to copy: {e}"))?;
        emit(PullEvent::LayerProgress {
            digest: d.digest.clone(),
            done: written,
        });
        Ok(())
    }
}

/// HEAD on the manifest: its digest, size and media type.
async fn resolve(
    client: &Client,
    ep: &Endpoint,
    repo: &str,
    object: &str,
    name: &str,
) -> Result<Desc, String> {
    let f = client
        .fetch(
            ep,
            repo,
            Method::HEAD,
            "manifests",
            object,
            Some(manifest::ACCEPT),
        )
        .await
        .map_err(|e| match e {
            ClientError::Authorize(_)
            | ClientError::AccessDenied(_)
            | ClientError::Transport { .. } => e.to_string(),
            other => other.to_string(),
        })?;
    let status = f.response.status();
    if status == StatusCode::NOT_FOUND {
        return Err(format!("{name}: not found"));
    }
    if !status.is_success() {
        return Err(format!(
            "unexpected status from HEAD request to {}: {}",
            f.url,
            status_text(status)
        ));
    }
    let h = f.response.headers();
    let media_type = h
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let len = h
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let digest = h
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| Digest::parse(v).ok());
    match (digest, len) {
        (Some(digest), Some(size)) if size > 0 => Ok(Desc {
            media_type,
            digest,
            size,
        }),
        _ => {
            // Without a digest header, GET the manifest and hash it.
            let f = client
                .fetch(
                    ep,
                    repo,
                    Method::GET,
                    "manifests",
                    object,
                    Some(manifest::ACCEPT),
                )
                .await
                .map_err(|e| e.to_string())?;
            if f.response.status() == StatusCode::NOT_FOUND {
                return Err(format!("{name}: not found"));
            }
            let media_type = f
                .response
                .headers()
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            let body = read_limited(f.response, crate::MAX_MANIFEST as usize).await?;
            Ok(Desc {
                media_type,
                digest: Digest::of(&body),
                size: body.len() as u64,
            })
        }
    }
}

/// A duration as Go prints it after `Truncate(time.Millisecond)`: `0s`, `313ms`, `1.661s`,
/// `2m3.5s`, `1h0m0s`.
pub fn go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".to_owned();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (h, m, s, frac) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&s.to_string());
    if frac > 0 {
        out.push('.');
        out.push_str(format!("{frac:03}").trim_end_matches('0'));
    }
    out.push('s');
    out
}

/// The kubelet's `Pulled` event message after a pull.
pub fn pulled_message(spec: &str, times: PullTimes, size: u64) -> String {
    format!(
        "Successfully pulled image {spec:?} in {} ({} including waiting). Image size: {size} bytes.",
        go_duration(times.pull),
        go_duration(times.total)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_pulled_message_as_the_kubelet() {
        let ms = Duration::from_millis;
        for (d, want) in [
            (ms(0), "0s"),
            (Duration::from_micros(999), "0s"),
            (ms(313), "313ms"),
            (ms(1661), "1.661s"),
            (ms(123_500), "2m3.5s"),
            (ms(3_600_000), "1h0m0s"),
            (ms(60_000), "1m0s"),
            (ms(3_723_004), "1h2m3.004s"),
        ] {
            assert_eq!(go_duration(d), want, "{d:?}");
        }
        assert_eq!(
            pulled_message(
                "busybox:1",
                PullTimes {
                    pull: ms(313),
                    total: ms(1661)
                },
                2_220_000
            ),
            "Successfully pulled image \"busybox:1\" in 313ms (1.661s including waiting). Image size: 2220000 bytes."
        );
    }
}
