//! The provider page: one server-rendered page on its own address (never on
//! the paid port), behind the admin token (zg-web's sessions), with the
//! books, traffic, errors, settlements, refunds and disputes; an open page
//! refreshes its `data-live` parts on server-sent events. `view` reads the
//! figures (each part on its own, so a chain or upstream that is down
//! costs only its part), `page` draws them.

mod page;
mod view;

use std::{net::SocketAddr, sync::Arc};

use axum::{
    Router,
    body::Body,
    extract::State,
    middleware,
    response::{IntoResponse, Response},
    routing::get,
};
use futures::StreamExt;
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};
use zg_web::Admin;

use crate::{broker::Broker, config::AdminConfig, error::StartError};

/// The page's listener, bound before the broker serves.
pub(crate) struct Bound {
    listener: TcpListener,
    token: String,
    explorer: Option<String>,
}

/// The page being served.
pub(crate) struct Served {
    pub(crate) addr: SocketAddr,
    pub(crate) token: String,
    pub(crate) task: JoinHandle<std::io::Result<()>>,
}

/// What every request of the page shares.
struct PageState {
    broker: Arc<Broker>,
    explorer: Option<String>,
    disputes: view::DisputeCache,
    /// Turns true at shutdown: open event streams end then.
    stopped: watch::Receiver<bool>,
}

/// Binds `[admin].listen` and settles the token (refusing to start on a
/// token variable named but unset).
pub(crate) async fn bind(config: &AdminConfig) -> Result<Bound, StartError> {
    let (token, made) = config.token().map_err(StartError::Config)?;
    let listener = TcpListener::bind(config.listen).await.map_err(|e| {
        StartError::Config(format!(
            "admin.listen: cannot listen on {} for the provider page: {e}",
            config.listen
        ))
    })?;
    if made {
        tracing::warn!(
            url = %format!("http://{}/", listener.local_addr()?),
            %token,
            "provider page: log in with this token (random for this run; set [admin] token_env to choose one)"
        );
    }
    Ok(Bound {
        listener,
        token,
        explorer: config.explorer.clone(),
    })
}

/// Serves the page on `bound` until `stopped` turns true.
pub(crate) fn serve(
    broker: Arc<Broker>,
    bound: Bound,
    stopped: watch::Receiver<bool>,
) -> Result<Served, StartError> {
    let addr = bound.listener.local_addr()?;
    let admin = Admin::new(bound.token.clone(), "zg-serving provider");
    let state = Arc::new(PageState {
        broker,
        explorer: bound.explorer,
        disputes: Default::default(),
        stopped: stopped.clone(),
    });
    let router = Router::new()
        .route("/", get(overview))
        .route("/events", get(events))
        .layer(middleware::from_fn_with_state(admin.clone(), Admin::guard))
        .merge(zg_web::public_routes(admin))
        .layer(middleware::map_response(zg_web::secure))
        .with_state(state);
    let mut stop = stopped;
    let task = tokio::spawn(async move {
        axum::serve(bound.listener, router)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await
    });
    tracing::info!(%addr, "provider page listening");
    Ok(Served {
        addr,
        token: bound.token,
        task,
    })
}

async fn overview(State(state): State<Arc<PageState>>) -> Response {
    let view = view::View::read(&state).await;
    page::render(&view, state.explorer.as_deref()).into_response()
}

/// The page's refresh events, ending at shutdown (else an open page would
/// hold the graceful shutdown forever).
async fn events(State(state): State<Arc<PageState>>) -> Response {
    let (parts, body) = state.broker.live.events().into_response().into_parts();
    let mut stopped = state.stopped.clone();
    let stopping = async move {
        let _ = stopped.wait_for(|s| *s).await;
    };
    let stream = body.into_data_stream().take_until(Box::pin(stopping));
    Response::from_parts(parts, Body::from_stream(stream))
}
