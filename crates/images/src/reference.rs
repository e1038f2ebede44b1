//! Image references: parsing and normalisation as the kubelet and containerd do it.
//!
//! Grammar (distribution's `reference` package):
//! `[domain/]path[:tag][@digest]`, path components `[a-z0-9]+` joined by `.`, `_`, `__` or dashes,
//! tag `[\w][\w.-]{0,127}`, digest `algorithm:hex` with at least 32 hex digits, name ≤ 255 bytes.
//! The first component is a domain if it is `localhost`, contains `.` or `:`, or has an
//! uppercase letter; otherwise the domain is `docker.io` and a one-component path gets `library/`.
//! Pure: no I/O.

use std::fmt;

/// The domain short names resolve to.
pub const DEFAULT_DOMAIN: &str = "docker.io";
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
const OFFICIAL_REPO_PREFIX: &str = "library/";
const NAME_TOTAL_LENGTH_MAX: usize = 255;

/// Why a reference did not parse; the texts are distribution's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// Anything the grammar rejects.
    #[error("invalid reference format")]
    InvalidFormat,
    /// The path has uppercase letters (found before the grammar is tried).
    #[error("invalid reference format: repository name ({0}) must be lowercase")]
    UppercaseRemote(String),
    /// The whole string would parse lowercased.
    #[error("repository name must be lowercase")]
    ContainsUppercase,
    /// Longer than 255 bytes.
    #[error("repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters")]
    NameTooLong,
    /// A bare 64-hex-digit name, which would be ambiguous with an image ID.
    #[error("invalid repository name ({0}), cannot specify 64-byte hexadecimal strings")]
    HexName(String),
    /// A digest whose algorithm is not sha256.
    #[error("unsupported digest algorithm")]
    UnsupportedDigest,
    /// A sha256 digest of the wrong length.
    #[error("invalid checksum digest length")]
    DigestLength,
}

/// A normalised reference: domain, path, optional tag and digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<String>,
}

impl Reference {
    /// Parses `s` as `ParseNormalizedNamed` does.
    pub fn parse_normalized(s: &str) -> Result<Self, ReferenceError> {
        if is_hex64(s) {
            return Err(ReferenceError::HexName(s.to_owned()));
        }
        let (domain, remainder) = split_docker_domain(s);
        let remote_name = match remainder.find(':') {
            Some(i) => &remainder[..i],
            None => &remainder,
        };
        if remote_name.to_lowercase() != remote_name {
            return Err(ReferenceError::UppercaseRemote(remote_name.to_owned()));
        }
        let full = format!("{domain}/{remainder}");
        match parse_strict(&full) {
            Ok(r) => Ok(r),
            Err(ReferenceError::InvalidFormat) => {
                if parse_strict(&full.to_lowercase()).is_ok() {
                    Err(ReferenceError::ContainsUppercase)
                } else {
                    Err(ReferenceError::InvalidFormat)
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Builds a reference from parts that are already valid (from the store's own records).
    pub fn from_name_and_digest(name: &Reference, digest: &str) -> Self {
        Self {
            domain: name.domain.clone(),
            path: name.path.clone(),
            tag: None,
            digest: Some(digest.to_owned()),
        }
    }

    /// The registry host, e.g. `docker.io` or `127.0.0.1:5000`.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository path inside the registry, e.g. `library/busybox`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The tag, if one was written.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if one was written.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// `domain/path`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// With `:latest` when neither tag nor digest was given (the kubelet's default tag).
    pub fn with_default_tag(mut self) -> Self {
        if self.tag.is_none() && self.digest.is_none() {
            self.tag = Some("latest".to_owned());
        }
        self
    }

    /// What the runtime pulls: the digest alone when both are given (containerd `ParseDockerRef`).
    pub fn to_pull_ref(&self) -> Self {
        let mut r = self.clone().with_default_tag();
        if r.digest.is_some() {
            r.tag = None;
        }
        r
    }

    /// The same name with another tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Self {
        Self {
            domain: self.domain.clone(),
            path: self.path.clone(),
            tag: Some(tag.to_owned()),
            digest: None,
        }
    }

    /// What the manifest endpoint is asked for: the digest if any, else the tag (`latest` by default).
    pub fn object(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.domain, self.path)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// The kubelet's failure to parse a pod's image, reason `InvalidImageName`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Failed to apply default image tag {spec:?}: couldn't parse image name {spec:?}: {source}")]
pub struct InvalidImageName {
    /// The image as written in the pod.
    pub spec: String,
    /// Why it did not parse.
    pub source: ReferenceError,
}

/// The kubelet's `applyDefaultImageTag`: the spec string with `:latest` appended when it names
/// neither a tag nor a digest (unnormalised, so `busybox` becomes `busybox:latest`).
pub fn apply_default_image_tag(spec: &str) -> Result<String, InvalidImageName> {
    let r = Reference::parse_normalized(spec).map_err(|source| InvalidImageName {
        spec: spec.to_owned(),
        source,
    })?;
    if r.digest.is_none() && r.tag.is_none() {
        return Ok(format!("{spec}:latest"));
    }
    Ok(spec.to_owned())
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn split_docker_domain(name: &str) -> (String, String) {
    let (domain, remote) = match name.split_once('/') {
        None => {
            return (
                DEFAULT_DOMAIN.to_owned(),
                format!("{OFFICIAL_REPO_PREFIX}{name}"),
            );
        }
        Some((d, r)) if d == "localhost" => (d.to_owned(), r.to_owned()),
        Some((d, r)) if d == LEGACY_DEFAULT_DOMAIN => (DEFAULT_DOMAIN.to_owned(), r.to_owned()),
        Some((d, r)) if d.contains(['.', ':']) => (d.to_owned(), r.to_owned()),
        Some((d, r)) if d.to_lowercase() != d => (d.to_owned(), r.to_owned()),
        Some(_) => (DEFAULT_DOMAIN.to_owned(), name.to_owned()),
    };
    if domain == DEFAULT_DOMAIN && !remote.contains('/') {
        return (domain, format!("{OFFICIAL_REPO_PREFIX}{remote}"));
    }
    (domain, remote)
}

/// Parses `domain/path[:tag][@digest]` with an explicit domain.
fn parse_strict(s: &str) -> Result<Reference, ReferenceError> {
    let (rest, digest) = match s.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (s, None),
    };
    let (domain, after) = rest.split_once('/').ok_or(ReferenceError::InvalidFormat)?;
    if !valid_domain(domain) {
        return Err(ReferenceError::InvalidFormat);
    }
    let (path, tag) = match after.rfind(':') {
        Some(i) if !after[i + 1..].contains('/') => (&after[..i], Some(&after[i + 1..])),
        _ => (after, None),
    };
    if !path.split('/').all(valid_path_component) {
        return Err(ReferenceError::InvalidFormat);
    }
    if let Some(t) = tag
        && !valid_tag(t)
    {
        return Err(ReferenceError::InvalidFormat);
    }
    if let Some(d) = digest {
        validate_digest(d)?;
    }
    if domain.len() + 1 + path.len() > NAME_TOTAL_LENGTH_MAX {
        return Err(ReferenceError::NameTooLong);
    }
    Ok(Reference {
        domain: domain.to_owned(),
        path: path.to_owned(),
        tag: tag.map(str::to_owned),
        digest: digest.map(str::to_owned),
    })
}

fn valid_domain(d: &str) -> bool {
    let (host, port) = if let Some(rest) = d.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return false;
        };
        if v6.is_empty()
            || !v6
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return false;
        }
        match after {
            "" => return true,
            p => match p.strip_prefix(':') {
                Some(port) => ("x", Some(port)),
                None => return false,
            },
        }
    } else {
        match d.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (d, None),
        }
    };
    if let Some(p) = port
        && (p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    !host.is_empty()
        && host.split('.').all(|c| {
            let b = c.as_bytes();
            !b.is_empty()
                && b.iter().all(|x| x.is_ascii_alphanumeric() || *x == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
        })
}

fn valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator: `.`, `_`, `__` or one or more `-`.
        let start = i;
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
        if i == start || i >= b.len() || !is_alnum(b[i]) {
            return false;
        }
    }
    true
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    let word = |x: u8| x.is_ascii_alphanumeric() || x == b'_';
    !b.is_empty()
        && b.len() <= 128
        && word(b[0])
        && b[1..].iter().all(|x| word(*x) || *x == b'.' || *x == b'-')
}

fn validate_digest(d: &str) -> Result<(), ReferenceError> {
    let Some((algo, hex)) = d.split_once(':') else {
        return Err(ReferenceError::InvalidFormat);
    };
    let algo_ok = !algo.is_empty()
        && algo.split(['+', '.', '_', '-']).all(|c| {
            let b = c.as_bytes();
            !b.is_empty() && b[0].is_ascii_alphabetic() && b.iter().all(u8::is_ascii_alphanumeric)
        });
    if !algo_ok || hex.len() < 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ReferenceError::InvalidFormat);
    }
    match algo {
        "sha256" if hex.len() != 64 => Err(ReferenceError::DigestLength),
        "sha256" => Ok(()),
        "sha384" | "sha512" => Err(ReferenceError::UnsupportedDigest),
        _ => Err(ReferenceError::UnsupportedDigest),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:8a5e2b6d5b6b2ae1b0f4c7b3b1c0a7c4e29a8b1c9c1e7d4f5e6a7b8c9d0e1f2a";

    #[test]
    fn normalises_like_distribution() {
        let cases = [
            ("busybox", "docker.io/library/busybox"),
            ("busybox:1.36", "docker.io/library/busybox:1.36"),
            ("index.docker.io/busybox", "docker.io/library/busybox"),
            ("docker.io/curlimages/curl", "docker.io/curlimages/curl"),
            ("istio/base:1.2", "docker.io/istio/base:1.2"),
            ("localhost/app", "localhost/app"),
            ("localhost:5000/a/b:t", "localhost:5000/a/b:t"),
            ("127.0.0.1:5999/busybox:1", "127.0.0.1:5999/busybox:1"),
            (
                "registry.example/a__b/c-d/e.f:v_1-x.y",
                "registry.example/a__b/c-d/e.f:v_1-x.y",
            ),
            ("[::1]:5000/x", "[::1]:5000/x"),
            ("Example.COM/app", "Example.COM/app"),
        ];
        for (input, want) in cases {
            let r = Reference::parse_normalized(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.to_string(), want, "{input}");
        }
    }

    #[test]
    fn digests_and_tags() {
        let r = Reference::parse_normalized(&format!("busybox:1@{D}")).unwrap();
        assert_eq!(r.tag(), Some("1"));
        assert_eq!(r.digest(), Some(D));
        assert_eq!(
            r.to_pull_ref().to_string(),
            format!("docker.io/library/busybox@{D}")
        );
        assert_eq!(r.to_pull_ref().object(), D);
        let r = Reference::parse_normalized("busybox").unwrap();
        assert_eq!(
            r.to_pull_ref().to_string(),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(r.to_pull_ref().object(), "latest");
    }

    #[test]
    fn rejects_with_distribution_texts() {
        let hex = "a".repeat(64);
        let long = format!("x/{}", "a".repeat(260));
        let cases: Vec<(&str, String)> = vec![
            (
                "Busybox:1",
                "invalid reference format: repository name (library/Busybox) must be lowercase"
                    .into(),
            ),
            ("busybox:", "invalid reference format".into()),
            ("busybox::1", "invalid reference format".into()),
            ("bus..ybox", "invalid reference format".into()),
            ("-busybox", "invalid reference format".into()),
            ("busybox/", "invalid reference format".into()),
            ("busybox:-x", "invalid reference format".into()),
            (" busybox", "invalid reference format".into()),
            ("", "invalid reference format".into()),
            ("busybox@sha256:abc", "invalid reference format".into()),
            (
                &hex,
                format!(
                    "invalid repository name ({hex}), cannot specify 64-byte hexadecimal strings"
                ),
            ),
            (
                "busybox@sha512:0123456789abcdef0123456789abcdef",
                "unsupported digest algorithm".into(),
            ),
            (
                "busybox@sha256:0123456789abcdef0123456789abcdef",
                "invalid checksum digest length".into(),
            ),
            (
                &long,
                "repository name must not be more than 255 characters".into(),
            ),
        ];
        for (input, want) in cases {
            let err = Reference::parse_normalized(input).expect_err(input);
            assert_eq!(err.to_string(), want, "{input:?}");
        }
    }

    #[test]
    fn kubelet_default_tag() {
        assert_eq!(
            apply_default_image_tag("busybox").unwrap(),
            "busybox:latest"
        );
        assert_eq!(apply_default_image_tag("busybox:1").unwrap(), "busybox:1");
        assert_eq!(
            apply_default_image_tag(&format!("busybox@{D}")).unwrap(),
            format!("busybox@{D}")
        );
        assert_eq!(
            apply_default_image_tag("Busybox:1")
                .unwrap_err()
                .to_string(),
            "Failed to apply default image tag \"Busybox:1\": couldn't parse image name \"Busybox:1\": \
             invalid reference format: repository name (library/Busybox) must be lowercase"
        );
    }
}
