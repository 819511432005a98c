//! Serving an opened broker: check the upstreams' proof methods, release
//! what a crashed earlier run left in flight, sync services to the
//! registry, then serve HTTP and run the settlement loop until shutdown
//! (which lets in-flight requests, streams included, finish).

use std::{future::Future, net::SocketAddr, sync::Arc};

use tokio::{net::TcpListener, sync::watch, task::JoinHandle};

use crate::{broker::Broker, config::Config, error::StartError, registry};

/// A broker serving in the background.
pub struct Running {
    addr: SocketAddr,
    scheme: &'static str,
    broker: Arc<Broker>,
    stop: watch::Sender<bool>,
    server: JoinHandle<std::io::Result<()>>,
    settler: Option<JoinHandle<()>>,
}

impl Running {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR` (or https), the broker's base URL (OpenAI clients add `/v1`).
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// Stops accepting, lets open requests finish, stops settling, and waits.
    pub async fn shutdown(self) -> std::io::Result<()> {
        let _ = self.stop.send(true);
        if let Some(settler) = self.settler {
            let _ = settler.await;
        }
        self.server
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
    }

    /// Waits until the server ends (after `stop` fires).
    pub async fn wait(self) -> std::io::Result<()> {
        if let Some(settler) = self.settler {
            let _ = settler.await;
        }
        self.server
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
    }

    pub fn stopper(&self) -> watch::Sender<bool> {
        self.stop.clone()
    }
}

impl Broker {
    /// Takes over as the provider's broker and serves on `listener` in the
    /// background: checks that each service's upstream produces the proof
    /// method it registers, releases what this replica's earlier run left
    /// in flight (no receipt: free), syncs the services to the registry,
    /// then serves.
    pub async fn serve(self, listener: TcpListener) -> Result<Running, StartError> {
        for service in &self.services {
            crate::proofs::check_upstream(&self.http, service).await?;
        }
        let released = self.store.release_abandoned(&self.config.replica).await?;
        if released > 0 {
            tracing::warn!(released, replica = %self.config.replica, "released requests a previous run left in flight (they got no receipt: free)");
        }
        let report = registry::sync(&self.config, self.chain.chain()).await?;
        tracing::info!(listed = ?report.listed, unchanged = ?report.unchanged, extra = ?report.extra, "registry in step");
        spawn(Arc::new(self), listener)
    }
}

/// Opens a broker from `config` and serves it on `listener` in the background.
pub async fn start(config: Config, listener: TcpListener) -> Result<Running, StartError> {
    Broker::open(config).await?.serve(listener).await
}

/// Serves the broker on `listener` (HTTPS when `[tls]` says so).
fn spawn(broker: Arc<Broker>, listener: TcpListener) -> Result<Running, StartError> {
    let addr = listener.local_addr()?;
    let acceptor = broker.config.tls.acceptor()?;
    let (stop, stopped) = watch::channel(false);
    let settler = broker
        .config
        .settlement
        .enabled
        .then(|| tokio::spawn(broker.settler().clone().run(stopped.clone())));
    let router = crate::handlers::router(broker.clone());
    let mut server_stop = stopped;
    let stopping = async move {
        let _ = server_stop.wait_for(|s| *s).await;
    };
    let scheme = if acceptor.is_some() { "https" } else { "http" };
    let server = match acceptor {
        None => tokio::spawn(
            axum::serve(listener, router)
                .with_graceful_shutdown(stopping)
                .into_future(),
        ),
        Some(acceptor) => {
            let listener = crate::tls::TlsListener::new(listener, acceptor)?;
            tokio::spawn(
                axum::serve(listener, router)
                    .with_graceful_shutdown(stopping)
                    .into_future(),
            )
        }
    };
    tracing::info!(%addr, scheme, provider = %broker.provider, "provider broker listening");
    Ok(Running {
        addr,
        scheme,
        broker,
        stop,
        server,
        settler,
    })
}

/// Runs until `signal` resolves, then shuts down gracefully.
pub async fn serve_until(
    config: Config,
    signal: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let listener = TcpListener::bind(config.listen).await?;
    let running = start(config, listener).await?;
    signal.await;
    tracing::info!("shutting down: finishing requests in flight");
    running.shutdown().await?;
    Ok(())
}
