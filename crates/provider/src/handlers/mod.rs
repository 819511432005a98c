//! The HTTP routes of the broker and what the paid ones share: sending the
//! body upstream, reading `usage`, and answering with the receipt headers.

mod account;
mod chat;
mod embeddings;
mod health;
mod models;
mod receipts;
mod vouchers;

use std::{sync::Arc, time::Instant};

use axum::{
    Router,
    body::Body,
    extract::DefaultBodyLimit,
    http::{HeaderValue, StatusCode, header},
    response::Response,
    routing::{get, post},
};
use bytes::Bytes;
use serde::Deserialize;
use zg_core::{ErrorCode, Usage, headers as zh};

use crate::{
    broker::{Broker, Paid},
    error::ApiError,
    upstream::UpstreamResponse,
};

/// Largest request body accepted (a long chat history, a batch of inputs).
const BODY_LIMIT: usize = 8 * 1024 * 1024;

pub fn router(broker: Arc<Broker>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat::completions))
        .route("/v1/embeddings", post(embeddings::embeddings))
        .route("/v1/models", get(models::list))
        .route("/v1/receipts/{id}", get(receipts::get))
        .route("/v1/account/{user}", get(account::statement))
        .route("/v1/vouchers", post(vouchers::ack))
        .route("/health", get(health::health))
        .route("/metrics", get(health::metrics))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(broker)
}

async fn not_found() -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        "no such route: this broker serves /v1/chat/completions, /v1/embeddings, /v1/models, /v1/receipts/{id}, /v1/account/{user}, /v1/vouchers",
    )
}

/// `usage` as OpenAI-compatible servers report it.
#[derive(Deserialize, Default, Clone, Copy)]
pub(crate) struct UsageJson {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
}

impl From<UsageJson> for Usage {
    fn from(u: UsageJson) -> Self {
        Usage {
            input_tokens: u.prompt_tokens,
            output_tokens: u.completion_tokens,
        }
    }
}

#[derive(Deserialize)]
struct WithUsage {
    usage: Option<UsageJson>,
}

/// Sends a non-streaming request upstream and answers with its body and the
/// receipt: the fee from the upstream's `usage`, free if the upstream fails.
pub(crate) async fn proxy_plain(
    broker: &Broker,
    paid: Paid,
    body: Bytes,
) -> Result<Response, ApiError> {
    let response = send_upstream(broker, &paid, body).await?;
    let status = response.status();
    let bytes = match response.bytes().await {
        Ok(b) => b,
        Err(e) => {
            broker.release(&paid, &e.to_string()).await;
            return Err(upstream_failed(&paid, e));
        }
    };
    if !status.is_success() {
        broker.release(&paid, &format!("status {status}")).await;
        return Err(upstream_refused(status, &bytes));
    }
    let usage = match serde_json::from_slice::<WithUsage>(&bytes) {
        Ok(WithUsage { usage: Some(u) }) => Usage::from(u),
        _ => {
            // Without the upstream's own counts there is nothing honest to bill.
            tracing::warn!(request = %paid.id(), "upstream answer carries no usage; answering free");
            Usage::default()
        }
    };
    let receipt = broker
        .charge(&paid, usage, zg_core::keccak256(&bytes))
        .await?;
    let mut out = Response::new(Body::from(bytes));
    let headers = out.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = HeaderValue::from_str(&receipt.json) {
        headers.insert(zh::RECEIPT, v);
    }
    if let Ok(v) = HeaderValue::from_str(paid.id()) {
        headers.insert(zh::REQUEST_ID, v);
    }
    Ok(out)
}

pub(crate) fn upstream_failed(paid: &Paid, e: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        ErrorCode::UpstreamFailed,
        format!(
            "the model server of service {:?} failed: {e}; this request cost nothing, retry or pick another provider",
            paid.service.config.name
        ),
    )
}

/// An upstream error answer: a 4xx is the request's fault (passed on as
/// invalid_request with the upstream's message), anything else upstream_failed.
pub(crate) fn upstream_refused(status: StatusCode, body: &[u8]) -> ApiError {
    let message = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.pointer("/error/message")
                .and_then(|m| m.as_str())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned());
    if status.is_client_error() {
        ApiError::invalid(format!(
            "the model server refused the request ({status}): {message}; it cost nothing"
        ))
    } else {
        ApiError::new(
            ErrorCode::UpstreamFailed,
            format!("the model server failed ({status}): {message}; this request cost nothing"),
        )
    }
}

/// Sends the request upstream; a request that never gets an answer is
/// released (free) and reported as `upstream_failed`.
pub(crate) async fn send_upstream(
    broker: &Broker,
    paid: &Paid,
    body: Bytes,
) -> Result<UpstreamResponse, ApiError> {
    let started = Instant::now();
    let sent = broker
        .http
        .post(&paid.service.url, &paid.service.headers, body)
        .await;
    match sent {
        Ok(response) => {
            crate::metrics::global().upstream_latency(started.elapsed());
            Ok(response)
        }
        Err(e) => {
            broker.release(paid, &e.to_string()).await;
            Err(upstream_failed(paid, e))
        }
    }
}
