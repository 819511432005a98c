//! `GET /health` and `GET /metrics` (Prometheus text).

use std::sync::Arc;

use axum::{
    extract::State,
    http::header,
    response::{IntoResponse, Response},
};
use zg_core::U256;

use crate::{broker::Broker, error::ApiError};

pub(super) async fn health(State(broker): State<Arc<Broker>>) -> Result<Response, ApiError> {
    broker.store.tab(broker.provider).await?;
    Ok(
        axum::Json(serde_json::json!({ "status": "ok", "provider": broker.provider.to_string() }))
            .into_response(),
    )
}

pub(super) async fn metrics(State(broker): State<Arc<Broker>>) -> Result<Response, ApiError> {
    let tabs = broker.store.tabs().await?;
    let (unsettled, owed) = tabs.iter().fold((U256::ZERO, U256::ZERO), |(u, o), a| {
        (u.saturating_add(a.unsettled()), o.saturating_add(a.owed))
    });
    let text = crate::metrics::global().render(unsettled, owed);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}
