//! Serving certificates: loaded from PEM files, or generated at start (a throw-away CA plus a
//! serving certificate for the Service's DNS names) so the webhook runs with no PKI at hand.
//! The rustls config always uses the ring provider explicitly, so a second provider elsewhere
//! in the binary can never make it panic.

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Certificate loading or generation failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// PEM could not be read.
    #[error("{what}: {message}")]
    Pem {
        /// Which input.
        what: String,
        /// Why.
        message: String,
    },
    /// rcgen refused.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the pair.
    #[error("TLS configuration rejected: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A serving certificate chain and key, plus the CA that signed it when we generated it.
#[derive(Debug, Clone)]
pub struct ServingCert {
    /// Leaf certificate PEM (followed by any chain).
    pub cert_pem: String,
    /// Private key PEM.
    pub key_pem: String,
    /// CA bundle PEM for `caBundle` (empty when loaded from files without a CA).
    pub ca_pem: String,
}

/// DNS names of a Service: `name`, `name.ns`, `name.ns.svc`, `name.ns.svc.<domain>`.
pub fn service_dns_names(service: &str, namespace: &str, cluster_domain: &str) -> Vec<String> {
    vec![
        service.to_owned(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.{cluster_domain}"),
    ]
}

impl ServingCert {
    /// Generates a CA and a serving certificate for `names` (DNS names or IP addresses).
    pub fn generate(names: &[String]) -> Result<Self, TlsError> {
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "podrun webhook CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);

        let leaf_key = KeyPair::generate()?;
        let mut leaf = CertificateParams::new(names.to_vec())?;
        leaf.distinguished_name.push(
            DnType::CommonName,
            names
                .first()
                .cloned()
                .unwrap_or_else(|| "podrun-webhook".into()),
        );
        leaf.is_ca = IsCa::ExplicitNoCa;
        leaf.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let leaf_cert = leaf.signed_by(&leaf_key, &issuer)?;
        Ok(Self {
            cert_pem: leaf_cert.pem(),
            key_pem: leaf_key.serialize_pem(),
            ca_pem: ca_cert.pem(),
        })
    }

    /// Builds the rustls server config (HTTP/2 and HTTP/1.1 via ALPN).
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(|e| TlsError::Pem {
                    what: "TLS certificate".into(),
                    message: e.to_string(),
                })?;
        if certs.is_empty() {
            return Err(TlsError::Pem {
                what: "TLS certificate".into(),
                message: "no CERTIFICATE block found".into(),
            });
        }
        let key =
            PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).map_err(|e| TlsError::Pem {
                what: "TLS key".into(),
                message: e.to_string(),
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
    fn generated_pair_builds_a_server_config() {
        let names = service_dns_names("podrun-webhook", "podrun-system", "cluster.local");
        let cert = ServingCert::generate(&names).unwrap();
        assert!(cert.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        cert.server_config().unwrap();
    }

    #[test]
    fn garbage_pem_is_a_clear_error() {
        let bad = ServingCert {
            cert_pem: "nope".into(),
            key_pem: "nope".into(),
            ca_pem: String::new(),
        };
        let err = bad.server_config().unwrap_err().to_string();
        assert!(err.contains("TLS certificate"), "{err}");
    }
}
