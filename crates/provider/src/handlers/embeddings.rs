//! `POST /v1/embeddings`: the worst case is every byte of input a token; the
//! fee comes from the upstream's `usage.prompt_tokens`.

use std::sync::Arc;

use axum::{extract::State, http::HeaderMap, response::Response};
use bytes::Bytes;
use serde::Deserialize;
use tracing::Instrument;
use zg_core::wire::routes;

use crate::{broker::Broker, error::ApiError, forward, metrics};

#[derive(Deserialize)]
struct Peek<'a> {
    #[serde(borrow)]
    model: Option<std::borrow::Cow<'a, str>>,
}

pub(super) async fn embeddings(
    State(broker): State<Arc<Broker>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let peek: Peek = serde_json::from_slice(&body)
        .map_err(|e| ApiError::invalid(format!("the body is not an embeddings request: {e}")))?;
    let model = peek.model.as_deref().ok_or_else(|| {
        ApiError::invalid("`model` is required: name a service of GET /v1/models")
            .with_param("model")
    })?;
    let target = broker.service(model, routes::EMBEDDINGS)?;
    let service = &target.service;
    let forward = if model != service.config.model {
        let mut value: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| ApiError::invalid(format!("the body is not JSON: {e}")))?;
        if let Some(object) = value.as_object_mut() {
            object.insert("model".into(), service.config.model.clone().into());
        }
        Bytes::from(serde_json::to_vec(&value).map_err(ApiError::internal)?)
    } else {
        body.clone()
    };
    let worst = service.prices.worst_case(body.len(), 0);
    let admitted = forward::admit(&broker, &headers, &body, target, (worst, 0)).await?;
    let span = admitted.span();
    metrics::global().request(metrics::Kind::Embeddings);
    forward::plain(admitted, forward).instrument(span).await
}
