//! Manifests, indexes and configs (OCI and Docker schema 2), read through `oci-spec`, and the
//! platform choice for an index.

use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest};

use crate::digest::Digest;

/// OCI manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker schema 2 manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// What a pull accepts.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// A descriptor: media type, digest, size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desc {
    /// Media type.
    pub media_type: String,
    /// Content digest.
    pub digest: Digest,
    /// Content length.
    pub size: u64,
}

/// An image manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The config blob.
    pub config: Desc,
    /// Layer blobs, lowest first.
    pub layers: Vec<Desc>,
}

/// A platform as an index names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// `linux`.
    pub os: String,
    /// `amd64`, `arm64`, …
    pub architecture: String,
    /// `v8`, … or "".
    pub variant: String,
}

impl Platform {
    /// The host's platform in OCI words.
    pub fn host() -> Self {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            other => other,
        };
        Self {
            os: "linux".into(),
            architecture: architecture.into(),
            variant: String::new(),
        }
    }

    /// Parses `os/arch[/variant]`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut it = s.split('/');
        let (Some(os), Some(arch)) = (it.next(), it.next()) else {
            return Err(format!("invalid platform {s:?}: want os/arch[/variant]"));
        };
        Ok(Self {
            os: os.into(),
            architecture: arch.into(),
            variant: it.next().unwrap_or("").into(),
        })
    }

    fn matches(&self, other: &Platform) -> bool {
        let norm = |v: &str, arch: &str| match (arch, v) {
            ("arm64", "v8") | ("amd64", "v1") => String::new(),
            _ => v.to_owned(),
        };
        self.os == other.os
            && self.architecture == other.architecture
            && (self.variant.is_empty()
                || norm(&self.variant, &self.architecture)
                    == norm(&other.variant, &other.architecture))
    }
}

fn desc(d: &oci_spec::image::Descriptor) -> Result<Desc, String> {
    Ok(Desc {
        media_type: d.media_type().to_string(),
        digest: Digest::parse(d.digest().as_ref())?,
        size: d.size(),
    })
}

/// Whether a manifest body (with its Content-Type, which may be empty) is an index.
pub fn is_index(media_type: &str, body: &[u8]) -> bool {
    if media_type == OCI_INDEX || media_type == DOCKER_LIST {
        return true;
    }
    if media_type == OCI_MANIFEST || media_type == DOCKER_MANIFEST {
        return false;
    }
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(default)]
        manifests: Option<serde_json::Value>,
    }
    serde_json::from_slice::<Probe>(body)
        .map(|p| p.manifests.is_some())
        .unwrap_or(false)
}

/// Reads a manifest.
pub fn parse_manifest(body: &[u8]) -> Result<Manifest, String> {
    let m =
        ImageManifest::from_reader(body).map_err(|e| format!("failed to parse manifest: {e}"))?;
    Ok(Manifest {
        config: desc(m.config())?,
        layers: m.layers().iter().map(desc).collect::<Result<_, _>>()?,
    })
}

/// Chooses the manifest of `want` in an index: `no match for platform in manifest: not found`
/// when there is none.
pub fn select_platform(body: &[u8], want: &Platform) -> Result<Desc, String> {
    let idx = ImageIndex::from_reader(body).map_err(|e| format!("failed to parse index: {e}"))?;
    for m in idx.manifests() {
        let Some(p) = m.platform() else { continue };
        let p = Platform {
            os: p.os().to_string(),
            architecture: p.architecture().to_string(),
            variant: p.variant().clone().unwrap_or_default(),
        };
        if want.matches(&p) {
            return desc(m);
        }
    }
    Err("no match for platform in manifest: not found".to_owned())
}

/// Reads an image config.
pub fn parse_config(body: &[u8]) -> Result<ImageConfiguration, String> {
    ImageConfiguration::from_reader(body).map_err(|e| format!("failed to parse image config: {e}"))
}

/// The config's layer diff IDs, lowest first.
pub fn diff_ids(config: &[u8]) -> Result<Vec<Digest>, String> {
    parse_config(config)?
        .rootfs()
        .diff_ids()
        .iter()
        .map(|d| Digest::parse(d))
        .collect()
}
