//! Serving an opened broker: check the upstreams' proof methods (and read
//! their capabilities), release
//! what a crashed earlier run left in flight, sync services to the
//! registry, then serve HTTP (and the provider page, on its own address,
//! when `[admin]` says so) and run the settlement loop until shutdown
//! (which lets in-flight requests, streams included, finish).

use std::{future::Future, net::SocketAddr, sync::Arc};

use axum::{Router, serve::Listener};
use hyper_util::{rt::TokioIo, server::graceful::GracefulShutdown, service::TowerToHyperService};
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
    /// The fine-tuning trainer and settlement watcher.
    tuning: Vec<JoinHandle<()>>,
    admin: Option<crate::admin::Served>,
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

    /// Where the provider page listens, when `[admin]` is configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|a| a.addr)
    }

    /// `http://ADDR/`, the provider page, when `[admin]` is configured.
    pub fn admin_url(&self) -> Option<String> {
        self.admin.as_ref().map(|a| format!("http://{}/", a.addr))
    }

    /// The provider page's token (what `[admin] token_env` held, else the
    /// random one made at start), when `[admin]` is configured.
    pub fn admin_token(&self) -> Option<&str> {
        self.admin.as_ref().map(|a| a.token.as_str())
    }

    /// Stops accepting, lets open requests finish, stops settling, and waits.
    pub async fn shutdown(self) -> std::io::Result<()> {
        let _ = self.stop.send(true);
        self.wait().await
    }

    /// Waits until the server ends (after `stop` fires).
    pub async fn wait(self) -> std::io::Result<()> {
        if let Some(settler) = self.settler {
            let _ = settler.await;
        }
        for task in self.tuning {
            let _ = task.await;
        }
        let page = match self.admin {
            Some(admin) => admin
                .task
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e))),
            None => Ok(()),
        };
        let served = self
            .server
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        served.and(page)
    }

    pub fn stopper(&self) -> watch::Sender<bool> {
        self.stop.clone()
    }
}

impl Broker {
    /// Takes over as the provider's broker and serves on `listener` in the
    /// background: checks that each service's upstream produces the proof
    /// method it registers (and reads the capabilities of those whose
    /// config declares none), releases what this replica's earlier run left
    /// in flight (no receipt: free), syncs the services to the registry,
    /// then serves.
    pub async fn serve(mut self, listener: TcpListener) -> Result<Running, StartError> {
        for service in &mut self.services {
            if let Some(capabilities) = crate::probe::upstream(&self.http, service).await? {
                *service = Arc::new(service.with_capabilities(capabilities));
            }
        }
        let released = self.store.release_abandoned(&self.config.replica).await?;
        if released > 0 {
            tracing::warn!(released, replica = %self.config.replica, "released requests a previous run left in flight (they got no receipt: free)");
        }
        let report = registry::sync(
            &self.config,
            self.chain.chain(),
            self.tuner.as_ref().map(|t| t.digest()),
        )
        .await?;
        tracing::info!(listed = ?report.listed, unchanged = ?report.unchanged, extra = ?report.extra, "registry in step");
        let admin = match &self.config.admin {
            Some(config) => Some(crate::admin::bind(config).await?),
            None => None,
        };
        spawn(Arc::new(self), listener, admin)
    }
}

/// Opens a broker from `config` and serves it on `listener` in the background.
pub async fn start(config: Config, listener: TcpListener) -> Result<Running, StartError> {
    Broker::open(config).await?.serve(listener).await
}

/// Serves the broker on `listener` (HTTPS when `[tls]` says so).
fn spawn(
    broker: Arc<Broker>,
    listener: TcpListener,
    admin: Option<crate::admin::Bound>,
) -> Result<Running, StartError> {
    let addr = listener.local_addr()?;
    let acceptor = broker.config.tls.acceptor()?;
    let (stop, stopped) = watch::channel(false);
    let settler = broker
        .config
        .settlement
        .enabled
        .then(|| tokio::spawn(broker.settler().clone().run(stopped.clone())));
    let tuning = broker
        .tuner
        .as_ref()
        .map(|t| t.spawn(stopped.clone()))
        .unwrap_or_default();
    let router = crate::handlers::router(broker.clone());
    let admin = admin
        .map(|bound| crate::admin::serve(broker.clone(), bound, stopped.clone()))
        .transpose()?;
    let mut server_stop = stopped;
    let stopping = async move {
        let _ = server_stop.wait_for(|s| *s).await;
    };
    let scheme = if acceptor.is_some() { "https" } else { "http" };
    let server = match acceptor {
        None => tokio::spawn(serve_http(listener, router, stopping)),
        Some(acceptor) => {
            let listener = crate::tls::TlsListener::new(listener, acceptor)?;
            tokio::spawn(serve_http(listener, router, stopping))
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
        tuning,
        admin,
    })
}

/// Most bytes of a request head HTTP parsing buffers before it gives up
/// with its own 431, which has an empty body (hyper's default is about
/// 400 KiB). Far above the 64 KiB the guard allows, so a header block too
/// large gets the guard's 431 in OpenAI's shape; only a head past 1 MiB
/// (or of more than 100 headers) still gets hyper's, as hyper has no hook
/// for the body of its parse errors.
const MAX_HEAD_BYTES: usize = 1024 * 1024;

/// HTTP/1 on `listener` until `stopping` resolves, then lets open
/// connections finish (axum::serve, with the head limit raised).
async fn serve_http<L: Listener>(
    mut listener: L,
    router: Router,
    stopping: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let mut stopping = std::pin::pin!(stopping);
    loop {
        let io = tokio::select! {
            (io, _) = listener.accept() => io,
            _ = &mut stopping => break,
        };
        let connection = hyper::server::conn::http1::Builder::new()
            .max_buf_size(MAX_HEAD_BYTES)
            .serve_connection(TokioIo::new(io), TowerToHyperService::new(router.clone()));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::trace!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
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
