//! The `[tls]` section: HTTPS served by the broker itself (certificate chain
//! and key in PEM), and the extra CA roots trusted, beside webpki's, for
//! https upstreams and the chain RPC. Handshakes run off the accept loop, so a slow client
//! can't hold up the others.

use std::{io, net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use serde::Deserialize;
use tokio::{net::TcpListener, sync::mpsc};
use tokio_rustls::{TlsAcceptor, server::TlsStream};

use crate::error::StartError;

/// A client that has not finished its handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain served (leaf first); HTTPS when set with `key`.
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`.
    pub key: Option<PathBuf>,
    /// PEM files of CAs trusted for https upstreams and the chain RPC
    /// beside webpki's roots.
    #[serde(default)]
    pub extra_ca: Vec<PathBuf>,
}

impl TlsConfig {
    /// Whether the broker serves HTTPS.
    pub fn serves_https(&self) -> bool {
        self.cert.is_some()
    }

    /// The acceptor for `cert` and `key`; None for plain HTTP.
    pub fn acceptor(&self) -> Result<Option<TlsAcceptor>, StartError> {
        let (cert, key) = match (&self.cert, &self.key) {
            (None, None) => return Ok(None),
            (Some(cert), Some(key)) => (cert, key),
            _ => {
                return Err(StartError::Config(
                    "tls: expected both cert and key (PEM files), got only one".into(),
                ));
            }
        };
        use rustls::pki_types::{PrivateKeyDer, pem::PemObject};
        let chain = zg_chain::tls::read_certs(cert)
            .map_err(|e| StartError::Config(format!("tls.cert: {e}")))?;
        let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
            StartError::Config(format!(
                "tls.key: reading a PEM private key from {}: {e}",
                key.display()
            ))
        })?;
        let config = rustls::ServerConfig::builder_with_provider(zg_chain::tls::provider())
            .with_safe_default_protocol_versions()
            .and_then(|b| b.with_no_client_auth().with_single_cert(chain, key))
            .map_err(|e| {
                StartError::Config(format!(
                    "tls: the certificate {} and its key don't make a server identity: {e}",
                    cert.display()
                ))
            })?;
        let mut config = config;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Some(TlsAcceptor::from(Arc::new(config))))
    }

    /// The client config of https upstreams.
    pub fn upstream_client(&self) -> Result<rustls::ClientConfig, StartError> {
        zg_chain::tls::client_config(&self.extra_ca)
            .map_err(|e| StartError::Config(format!("tls.extra_ca: {e}")))
    }
}

/// A TCP listener that hands out finished TLS connections.
pub struct TlsListener {
    addr: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<tokio::net::TcpStream>, SocketAddr)>,
}

impl TlsListener {
    /// Accepts on `listener` in the background until the listener is dropped.
    pub fn new(listener: TcpListener, acceptor: TlsAcceptor) -> io::Result<Self> {
        let addr = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    accepted = listener.accept() => accepted,
                    // The server stopped: let the port go.
                    _ = tx.closed() => return,
                };
                let (tcp, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!(error = %e, "accepting a TCP connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self { addr, ready })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accept task ended: nothing will come again.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.addr)
    }
}
