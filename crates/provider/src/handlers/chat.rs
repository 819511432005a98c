//! `POST /v1/chat/completions`: reads what admission needs from the body
//! (model, max_tokens, stream), caps max_tokens at the service's limit,
//! forces `stream_options.include_usage` on streams, then admits and proxies.

use std::sync::Arc;

use axum::{extract::State, http::HeaderMap, response::Response};
use bytes::Bytes;
use serde::Deserialize;
use tracing::Instrument;
use zg_core::ServiceKind;

use crate::{broker::Broker, error::ApiError, forward, metrics};

#[derive(Deserialize)]
struct Peek<'a> {
    #[serde(borrow)]
    model: Option<std::borrow::Cow<'a, str>>,
    max_tokens: Option<serde_json::Value>,
    max_completion_tokens: Option<serde_json::Value>,
    #[serde(default)]
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
}

#[derive(Deserialize)]
struct StreamOptions {
    include_usage: Option<bool>,
}

pub(super) async fn completions(
    State(broker): State<Arc<Broker>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let peek: Peek = serde_json::from_slice(&body).map_err(|e| {
        ApiError::invalid(format!("the body is not a chat completion request: {e}"))
    })?;
    let model = peek.model.as_deref().ok_or_else(|| {
        ApiError::invalid("`model` is required: name a service of GET /v1/models")
            .with_param("model")
    })?;
    let service = broker.service(model, &ServiceKind::Chat)?;
    let cap = service.config.max_output_tokens;
    let asked = match peek
        .max_completion_tokens
        .as_ref()
        .or(peek.max_tokens.as_ref())
    {
        None | Some(serde_json::Value::Null) => None,
        Some(v) => Some(v.as_u64().filter(|n| *n > 0).ok_or_else(|| {
            ApiError::invalid(format!("max_tokens must be a positive integer, got {v}"))
                .with_param("max_tokens")
        })?),
    };
    let max_out = asked.map_or(cap, |n| n.min(cap));
    let stream = peek.stream.unwrap_or(false);
    let user_wants_usage = peek
        .stream_options
        .and_then(|o| o.include_usage)
        .unwrap_or(false);
    let needs_rewrite =
        model != service.config.model || asked != Some(max_out) || (stream && !user_wants_usage);

    let forward = if needs_rewrite {
        let mut value: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| ApiError::invalid(format!("the body is not JSON: {e}")))?;
        let object = value
            .as_object_mut()
            .ok_or_else(|| ApiError::invalid("the body must be a JSON object"))?;
        object.insert("model".into(), service.config.model.clone().into());
        object.remove("max_completion_tokens");
        object.insert("max_tokens".into(), max_out.into());
        if stream {
            object.insert(
                "stream_options".into(),
                serde_json::json!({ "include_usage": true }),
            );
        }
        Bytes::from(serde_json::to_vec(&value).map_err(ApiError::internal)?)
    } else {
        body.clone()
    };

    let worst = service.prices.worst_case(body.len(), max_out);
    let admitted = forward::admit(&broker, &headers, &body, service, worst).await?;
    let span = admitted.span();
    if stream {
        metrics::global().request(metrics::Kind::ChatStream);
        forward::stream(admitted, forward, user_wants_usage)
            .instrument(span)
            .await
    } else {
        metrics::global().request(metrics::Kind::Chat);
        forward::plain(admitted, forward).instrument(span).await
    }
}
