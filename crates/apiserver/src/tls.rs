//! The server's credentials in its state directory: a CA and a serving certificate
//! (generated on first start, kept afterwards), a bearer token, and the kubeconfig that
//! points kubectl at the server with both.
//!
//! Files: `ca.crt`, `ca.key`, `apiserver.crt`, `apiserver.key`, `token` and `kubeconfig`;
//! keys, the token and the kubeconfig are readable by the owner only.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rand::RngCore;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Loading or creating the credentials failed.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// Which file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// rcgen refused.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// A PEM file holds no usable certificate or key.
    #[error("{path}: {message}")]
    Pem {
        /// Which file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// rustls refused the pair.
    #[error("TLS configuration rejected: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The server's CA, serving certificate and token.
#[derive(Clone)]
pub struct Credentials {
    /// The state directory.
    pub dir: PathBuf,
    /// CA certificate PEM.
    pub ca_pem: String,
    /// Serving certificate PEM.
    pub cert_pem: String,
    /// Serving key PEM.
    pub key_pem: String,
    /// The bearer token clients present.
    pub token: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CredentialsError + '_ {
    move |source| CredentialsError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Writes `data` to `path` through a temporary file and a rename, with `mode`.
fn write_file(path: &Path, data: &[u8], mode: u32) -> Result<(), CredentialsError> {
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    f.write_all(data).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode)).map_err(io_err(&tmp))?;
    fs::rename(&tmp, path).map_err(io_err(path))
}

fn read(path: &Path) -> Result<String, CredentialsError> {
    fs::read_to_string(path).map_err(io_err(path))
}

const FILES: [&str; 5] = [
    "ca.crt",
    "ca.key",
    "apiserver.crt",
    "apiserver.key",
    "token",
];

impl Credentials {
    /// Loads the credentials from `dir`, or creates them when any file is missing. The
    /// serving certificate names `localhost`, `127.0.0.1`, `::1` and `extra_names`.
    pub fn load_or_create(dir: &Path, extra_names: &[String]) -> Result<Self, CredentialsError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        if FILES.iter().all(|f| dir.join(f).exists()) {
            return Ok(Self {
                dir: dir.to_owned(),
                ca_pem: read(&dir.join("ca.crt"))?,
                cert_pem: read(&dir.join("apiserver.crt"))?,
                key_pem: read(&dir.join("apiserver.key"))?,
                token: read(&dir.join("token"))?.trim().to_owned(),
            });
        }
        let ca_key = KeyPair::generate()?;
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca.distinguished_name.push(DnType::CommonName, "podrun-ca");
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca.self_signed(&ca_key)?;
        let ca_key_pem = ca_key.serialize_pem();
        let issuer = Issuer::new(ca, ca_key);

        let mut names = vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
            "kubernetes".to_owned(),
            "kubernetes.default".to_owned(),
            "kubernetes.default.svc".to_owned(),
        ];
        names.extend(extra_names.iter().cloned());
        let leaf_key = KeyPair::generate()?;
        let mut leaf = CertificateParams::new(names)?;
        leaf.distinguished_name
            .push(DnType::CommonName, "podrun-apiserver");
        leaf.is_ca = IsCa::ExplicitNoCa;
        leaf.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let leaf_cert = leaf.signed_by(&leaf_key, &issuer)?;

        let mut raw = [0u8; 32];
        rand::rng().fill_bytes(&mut raw);
        let token: String = raw.iter().map(|b| format!("{b:02x}")).collect();

        let creds = Self {
            dir: dir.to_owned(),
            ca_pem: ca_cert.pem(),
            cert_pem: leaf_cert.pem(),
            key_pem: leaf_key.serialize_pem(),
            token,
        };
        write_file(&dir.join("ca.key"), ca_key_pem.as_bytes(), 0o600)?;
        write_file(&dir.join("apiserver.key"), creds.key_pem.as_bytes(), 0o600)?;
        write_file(
            &dir.join("token"),
            format!("{}\n", creds.token).as_bytes(),
            0o600,
        )?;
        write_file(&dir.join("ca.crt"), creds.ca_pem.as_bytes(), 0o644)?;
        write_file(&dir.join("apiserver.crt"), creds.cert_pem.as_bytes(), 0o644)?;
        Ok(creds)
    }

    /// Path of the kubeconfig file.
    pub fn kubeconfig_path(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    /// The kubeconfig for a server at `server_url` (`https://127.0.0.1:6443`).
    pub fn kubeconfig(&self, server_url: &str) -> String {
        let ca = self.dir.join("ca.crt");
        let q = |s: &str| serde_json::to_string(s).expect("strings serialise");
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: podrun\n  cluster:\n    server: {}\n    certificate-authority: {}\ncontexts:\n- name: podrun\n  context:\n    cluster: podrun\n    user: podrun\n    namespace: default\ncurrent-context: podrun\nusers:\n- name: podrun\n  user:\n    token: {}\npreferences: {{}}\n",
            q(server_url),
            q(&ca.to_string_lossy()),
            q(&self.token)
        )
    }

    /// Writes the kubeconfig for `server_url` into the state directory (owner-only).
    pub fn write_kubeconfig(&self, server_url: &str) -> Result<PathBuf, CredentialsError> {
        let path = self.kubeconfig_path();
        write_file(&path, self.kubeconfig(server_url).as_bytes(), 0o600)?;
        Ok(path)
    }

    /// Whether an `Authorization` header value carries this server's bearer token.
    pub fn authorizes(&self, authorization: Option<&[u8]>) -> bool {
        let Some(value) = authorization else {
            return false;
        };
        let Some(token) = value
            .strip_prefix(b"Bearer ")
            .or_else(|| value.strip_prefix(b"bearer "))
        else {
            return false;
        };
        let token = token.trim_ascii();
        let want = self.token.as_bytes();
        // Constant time in the token's length.
        token.len() == want.len()
            && token
                .iter()
                .zip(want)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }

    /// The rustls server configuration (ALPN `h2`, then `http/1.1`).
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, CredentialsError> {
        let cert_path = self.dir.join("apiserver.crt");
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(|e| CredentialsError::Pem {
                    path: cert_path.clone(),
                    message: e.to_string(),
                })?;
        if certs.is_empty() {
            return Err(CredentialsError::Pem {
                path: cert_path,
                message: "no CERTIFICATE block found".into(),
            });
        }
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).map_err(|e| {
            CredentialsError::Pem {
                path: self.dir.join("apiserver.key"),
                message: e.to_string(),
            }
        })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs, key)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let a = Credentials::load_or_create(dir.path(), &[]).unwrap();
        assert_eq!(a.token.len(), 64);
        assert!(a.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        a.server_config().unwrap();
        let mode = fs::metadata(dir.path().join("token"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let b = Credentials::load_or_create(dir.path(), &[]).unwrap();
        assert_eq!(a.token, b.token);
        assert_eq!(a.cert_pem, b.cert_pem);
        let path = a.write_kubeconfig("https://127.0.0.1:6443").unwrap();
        let text = fs::read_to_string(path).unwrap();
        assert!(
            text.contains("server: \"https://127.0.0.1:6443\""),
            "{text}"
        );
        assert!(text.contains(&format!("token: \"{}\"", a.token)), "{text}");
    }

    #[test]
    fn bearer_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let c = Credentials::load_or_create(dir.path(), &["podrun.test".into()]).unwrap();
        let good = format!("Bearer {}", c.token);
        assert!(c.authorizes(Some(good.as_bytes())));
        assert!(!c.authorizes(None));
        assert!(!c.authorizes(Some(b"Bearer nope")));
        assert!(!c.authorizes(Some(c.token.as_bytes())));
        let basic = format!("Basic {}", c.token);
        assert!(!c.authorizes(Some(basic.as_bytes())));
    }
}
