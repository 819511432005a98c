//! TLS as a client (rustls on ring, no OpenSSL): the roots every https
//! connection trusts (webpki's Mozilla roots plus the operator's own CA
//! files), and the HTTP client the chain RPC goes through.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

pub use rustls::ClientConfig;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(
        "reading CA certificates from {path}: {reason}; expected a PEM file with one or more CERTIFICATE blocks"
    )]
    Ca { path: PathBuf, reason: String },
    #[error("TLS setup: {0}")]
    Setup(String),
}

/// The crypto every TLS connection of this process uses. reqwest builds
/// its default client from the process-wide provider, so it is set once.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    let ring = Arc::new(rustls::crypto::ring::default_provider());
    // Err means one is installed already (ours, or the embedding program's).
    let _ = rustls::crypto::CryptoProvider::install_default((*ring).clone());
    rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or(ring)
}

/// Reads the certificates of a PEM file.
pub fn read_certs(
    path: &Path,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, TlsError> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let err = |reason: String| TlsError::Ca {
        path: path.to_path_buf(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no certificate in it".into()));
    }
    Ok(certs)
}

/// A client config trusting webpki's roots and the CAs in `extra_ca` (PEM).
pub fn client_config(extra_ca: &[PathBuf]) -> Result<ClientConfig, TlsError> {
    let mut roots =
        rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for path in extra_ca {
        for cert in read_certs(path)? {
            roots.add(cert).map_err(|e| TlsError::Ca {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        }
    }
    Ok(ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Setup(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The HTTP client of chain RPCs (http:// and https:// with webpki's
/// roots), made once: clones share its connection pool.
pub fn rpc_client() -> Result<reqwest::Client, TlsError> {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    if let Some(client) = CLIENT.get() {
        return Ok(client.clone());
    }
    let client = build_rpc_client(&[])?;
    Ok(CLIENT.get_or_init(|| client).clone())
}

/// The HTTP client of a chain RPC that also trusts the CAs in `extra_ca`
/// (an RPC behind a private CA); the shared [`rpc_client`] when none.
pub fn rpc_client_trusting(extra_ca: &[PathBuf]) -> Result<reqwest::Client, TlsError> {
    if extra_ca.is_empty() {
        return rpc_client();
    }
    build_rpc_client(extra_ca)
}

fn build_rpc_client(extra_ca: &[PathBuf]) -> Result<reqwest::Client, TlsError> {
    reqwest::Client::builder()
        .tls_backend_preconfigured(client_config(extra_ca)?)
        .build()
        .map_err(|e| TlsError::Setup(format!("building the RPC client: {e}")))
}
