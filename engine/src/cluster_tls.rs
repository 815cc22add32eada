//! The identity the processes of one cluster present to each other on the executors'
//! ports (tasks, shuffle and results): a certificate and key chained to the cluster's
//! CA, checked both ways (mutual TLS). Ballista's clients of those ports cannot send a
//! token, so the certificate is the credential.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig};

use crate::error::EngineError;
use crate::scheduler_client::with_scheme;

/// The environment variable (and `--cluster-tls` flag) naming the directory of the
/// cluster's identity.
pub const CLUSTER_TLS_ENV: &str = "STRATA_CLUSTER_TLS";

/// The directory's files, as a Kubernetes TLS Secret with its CA is mounted.
const CA_FILE: &str = "ca.crt";
const CERT_FILE: &str = "tls.crt";
const KEY_FILE: &str = "tls.key";

/// The name every cluster certificate is checked for: executors come and go with new
/// addresses, so a certificate names the cluster rather than a host.
pub const CLUSTER_NAME: &str = "strata-cluster";

/// The cluster's CA, and this process's certificate and key (PEM).
#[derive(Clone)]
pub struct ClusterTls {
    ca: Vec<u8>,
    cert: Vec<u8>,
    key: Vec<u8>,
}

impl std::fmt::Debug for ClusterTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterTls(<redacted>)")
    }
}

impl ClusterTls {
    /// Reads `ca.crt`, `tls.crt` and `tls.key` from `dir`, and checks each is PEM of
    /// what it should hold, so a wrong file is named at start and not at the first task.
    pub fn from_dir(dir: &Path) -> Result<Self, EngineError> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read(&path)
                .map_err(|source| EngineError::ClusterTls {
                    path: path.clone(),
                    why: source.to_string(),
                })
                .map(|bytes| (path, bytes))
        };
        let wrong = |path: PathBuf, what: &str| EngineError::ClusterTls {
            path,
            why: format!("expected {what} (PEM)"),
        };
        let (ca_path, ca) = read(CA_FILE)?;
        let (cert_path, cert) = read(CERT_FILE)?;
        let (key_path, key) = read(KEY_FILE)?;
        for (path, bytes) in [(ca_path, &ca), (cert_path, &cert)] {
            let mut certificates = CertificateDer::pem_slice_iter(bytes);
            if !matches!(certificates.next(), Some(Ok(_))) {
                return Err(wrong(path, "a certificate"));
            }
        }
        if PrivateKeyDer::from_pem_slice(&key).is_err() {
            return Err(wrong(key_path, "a private key"));
        }
        Ok(Self { ca, cert, key })
    }

    /// How this process serves an executor port: its certificate, and only to callers
    /// whose certificate chains to the cluster's CA.
    pub fn server(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(Identity::from_pem(&self.cert, &self.key))
            .client_ca_root(Certificate::from_pem(&self.ca))
    }

    /// How this process calls an executor port: the cluster's CA, the name to check,
    /// and its own certificate.
    fn client(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca))
            .domain_name(CLUSTER_NAME)
            .identity(Identity::from_pem(&self.cert, &self.key))
    }

    /// `endpoint` (an executor's, as Ballista made it: `http://`, tuned by Ballista) made
    /// again as `https://` with this identity; Ballista's settings are set afresh, as a
    /// tonic endpoint cannot be changed to TLS in place.
    pub(crate) fn upgrade(&self, endpoint: &Endpoint) -> Result<Endpoint, tonic::transport::Error> {
        Endpoint::from_shared(with_scheme(&endpoint.uri().to_string(), true))?
            .connect_timeout(Duration::from_secs(20))
            .tcp_keepalive(Some(Duration::from_secs(60)))
            .http2_keep_alive_interval(Duration::from_secs(30))
            // Ballista's shuffle windows: a partition streams without waiting on acks.
            .initial_connection_window_size(Some(64 << 20))
            .initial_stream_window_size(Some(16 << 20))
            .tls_config(self.client())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_wrong_file_is_named() {
        let dir = std::env::temp_dir().join(format!("strata-cluster-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = ClusterTls::from_dir(&dir).unwrap_err().to_string();
        assert!(missing.contains("ca.crt"), "{missing}");
        for name in [CA_FILE, CERT_FILE, KEY_FILE] {
            std::fs::write(dir.join(name), "not pem").unwrap();
        }
        let wrong = ClusterTls::from_dir(&dir).unwrap_err().to_string();
        assert!(
            wrong.contains("ca.crt") && wrong.contains("expected a certificate"),
            "{wrong}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
