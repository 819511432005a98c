//! Serving the engine's routes on a listener (in a binary, or in-process
//! for the provider broker and tests).

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::engine::Engine;
use crate::{EngineConfig, EngineError};

impl Engine {
    /// The HTTP routes over this engine.
    pub fn router(self: Arc<Self>) -> axum::Router {
        crate::handlers::router(self)
    }
}

/// Serves `engine` on `listener` until the task is dropped or fails.
pub async fn serve(engine: Arc<Engine>, listener: TcpListener) -> std::io::Result<()> {
    axum::serve(listener, engine.router()).await
}

/// A server running in the background of this process.
pub struct ServerHandle {
    addr: SocketAddr,
    engine: Arc<Engine>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl ServerHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR/v1`, what OpenAI clients take as `base_url`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Stops accepting, lets open requests finish, and waits.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        (&mut self.task)
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
    }
}

/// Loads the models of `config` (on a blocking thread) and serves them on
/// `listener` in the background.
pub async fn spawn(
    config: EngineConfig,
    listener: TcpListener,
) -> Result<ServerHandle, EngineError> {
    let engine = tokio::task::spawn_blocking(move || Engine::load(&config))
        .await
        .map_err(|e| EngineError::Llama(format!("loading task failed: {e}")))??;
    let engine = Arc::new(engine);
    let addr = listener.local_addr()?;
    let (tx, rx) = oneshot::channel::<()>();
    let router = engine.clone().router();
    let task = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await
    });
    tracing::info!(%addr, "engine listening");
    Ok(ServerHandle {
        addr,
        engine,
        shutdown: Some(tx),
        task,
    })
}
