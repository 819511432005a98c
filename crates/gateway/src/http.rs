//! The gateway's HTTP edge: `/v1/models`, `/v1/chat/completions`,
//! `/v1/responses` and `/v1/completions` (plain and streamed), `/v1/embeddings`, and
//! `/zg/providers` (ranking standings); the files and fine-tuning routes
//! ([`crate::fine_tuning`]) and the web page's routes ([`crate::web`]) are
//! merged next to them.
//! A paid route hands the body to [`crate::dispatch`] and writes out what
//! comes back, or the OpenAI-shaped error.

use crate::{
    Gateway, audit,
    dispatch::{Delivered, DeliveredBody, Endpoint, Failure, dispatch},
    keys::KeyRefusal,
};
use axum::{
    Json, Router,
    body::Body,
    extract::{DefaultBodyLimit, Path, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use bytes::Bytes;
use serde_json::{Value, json};
use std::{collections::BTreeMap, sync::Arc, time::Instant};
use tracing::Instrument;
use zg_client::ClientError;
use zg_core::{ErrorBody, ErrorCode, Service, format_amount, wire::routes};

const BODY_LIMIT: usize = 8 * 1024 * 1024;

pub(crate) fn router(gateway: Arc<Gateway>) -> Router {
    Router::new()
        .route(routes::MODELS, get(models))
        .route("/v1/models/{*id}", get(model))
        .route(routes::CHAT_COMPLETIONS, post(chat))
        .route(routes::COMPLETIONS, post(completions))
        .route(routes::EMBEDDINGS, post(embeddings))
        .route("/v1/responses", post(responses))
        .route("/zg/providers", get(providers))
        .route("/health", get(|| async { "ok" }))
        .merge(crate::fine_tuning::router())
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::map_response(|r: Response| async move {
            zg_core::wire::http::json_errors(r).await.0
        }))
        .with_state(gateway.clone())
        .merge(crate::web::router(gateway))
        .fallback(not_found)
}

/// Any other path: OpenAI's error shape, as the `/v1` routes' refusals (the
/// merged web routes leave the router's own fallback outside their layer).
async fn not_found() -> Response {
    zg_core::wire::http::json_errors(StatusCode::NOT_FOUND.into_response())
        .await
        .0
}

async fn chat(State(gw): State<Arc<Gateway>>, headers: HeaderMap, body: Bytes) -> Response {
    if crate::fine_tuning::names_fine_tuned(&body)
        && let Some(answer) = crate::fine_tuning::answer_locally(&gw, &headers, &body).await
    {
        return answer;
    }
    proxy(&gw, Endpoint::Chat, &headers, body).await
}

/// OpenAI's Responses API, answered as a chat completion ([`crate::responses`]).
async fn responses(State(gw): State<Arc<Gateway>>, headers: HeaderMap, body: Bytes) -> Response {
    let request = match crate::responses::to_chat(&body) {
        Ok(r) => r,
        Err(message) => return refusal(ErrorCode::InvalidRequest, &message),
    };
    let answer = chat(State(gw), headers, request.chat.clone()).await;
    crate::responses::from_chat(answer, request).await
}

async fn completions(State(gw): State<Arc<Gateway>>, headers: HeaderMap, body: Bytes) -> Response {
    proxy(&gw, Endpoint::Completions, &headers, body).await
}

async fn embeddings(State(gw): State<Arc<Gateway>>, headers: HeaderMap, body: Bytes) -> Response {
    proxy(&gw, Endpoint::Embeddings, &headers, body).await
}

async fn providers(State(gw): State<Arc<Gateway>>) -> Response {
    Json(gw.ranking.standings()).into_response()
}

/// Marketplace models: one entry per model, with how many providers serve
/// it and the lowest listed prices (decimal 0G per token); then the user's
/// fine-tuned models.
async fn models(State(gw): State<Arc<Gateway>>) -> Response {
    match model_list(&gw).await {
        Ok(data) => Json(json!({ "object": "list", "data": data })).into_response(),
        Err(e) => client_error(&e),
    }
}

/// One model of `/v1/models` (`client.models.retrieve`), or OpenAI's 404.
async fn model(State(gw): State<Arc<Gateway>>, Path(id): Path<String>) -> Response {
    match model_list(&gw).await {
        Ok(data) => match data.into_iter().find(|m| m["id"] == id.as_str()) {
            Some(entry) => Json(entry).into_response(),
            None => refusal(
                ErrorCode::UnknownModel,
                &format!("no model {id:?} is offered: GET /v1/models lists them"),
            ),
        },
        Err(e) => client_error(&e),
    }
}

async fn model_list(gw: &Gateway) -> Result<Vec<Value>, ClientError> {
    let services = gw.services(false).await?;
    let mut by_model: BTreeMap<&str, Vec<&Service>> = BTreeMap::new();
    for s in services.iter().filter(|s| gw.config.limits.matches(s)) {
        by_model.entry(&s.model).or_default().push(s);
    }
    let mut data: Vec<Value> = by_model
        .into_iter()
        .map(|(model, list)| {
            let min_in = list
                .iter()
                .map(|s| s.prices.input)
                .min()
                .unwrap_or_default();
            let min_out = list
                .iter()
                .map(|s| s.prices.output)
                .min()
                .unwrap_or_default();
            json!({
                "id": model,
                "object": "model",
                "created": list.iter().map(|s| s.updated_at).max().unwrap_or_default(),
                "owned_by": "zg-serving",
                "kind": list[0].kind,
                "providers": list.len(),
                "min_input_price": format_amount(min_in),
                "min_output_price": format_amount(min_out),
            })
        })
        .collect();
    data.extend(gw.fine_tuning.models().await);
    Ok(data)
}

async fn proxy(
    gw: &Arc<Gateway>,
    endpoint: Endpoint,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let started = Instant::now();
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let audit = match audit::asked(header(audit::HEADER)) {
        Ok(always) => always,
        Err(e) => return client_error(&e),
    };
    // The provider and request id join in the payer's span within.
    let span = tracing::info_span!("gateway_request", user = %gw.payer.user(), ?endpoint);
    match dispatch(gw, endpoint, header, bearer, body, audit)
        .instrument(span)
        .await
    {
        Ok(delivered) => respond(delivered),
        Err(Failure::Client(e)) => {
            tracing::info!(error = %e, elapsed_ms = started.elapsed().as_millis() as u64, "request failed");
            client_error(&e)
        }
        Err(Failure::Key(refusal)) => key_error(&refusal),
    }
}

/// Writes a delivered answer out with the gateway's headers: which provider
/// answered, and for a whole answer its receipt, fee and whether it was paid.
fn respond(delivered: Delivered) -> Response {
    let Delivered {
        provider,
        status,
        content_type,
        body,
    } = delivered;
    let mut response = match body {
        DeliveredBody::Whole {
            bytes,
            receipt,
            fee,
            receipt_status,
        } => {
            let mut response = Response::new(Body::from(bytes));
            let h = response.headers_mut();
            if let Some(value) = receipt.and_then(|r| HeaderValue::from_str(&r).ok()) {
                h.insert(zg_core::headers::RECEIPT, value);
            }
            if let Ok(value) = HeaderValue::from_str(&fee.to_string()) {
                h.insert("x-zg-fee", value);
            }
            h.insert("x-zg-receipt-status", header_text(&receipt_status));
            response
        }
        DeliveredBody::Stream { chunks, request_id } => {
            let mut response = Response::new(Body::from_stream(chunks));
            response
                .headers_mut()
                .insert(zg_core::headers::REQUEST_ID, header_text(&request_id));
            response
        }
    };
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let h = response.headers_mut();
    if let Some(ct) = content_type.and_then(|c| HeaderValue::from_str(&c).ok()) {
        h.insert(header::CONTENT_TYPE, ct);
    }
    h.insert("x-zg-provider", header_text(&provider.to_string()));
    response
}

fn header_text(text: &str) -> HeaderValue {
    let clean: String = text
        .chars()
        .filter(|c| (' '..='~').contains(c))
        .take(500)
        .collect();
    HeaderValue::from_str(&clean).unwrap_or(HeaderValue::from_static("-"))
}

fn error_body(status: u16, code: &str, kind: &str, message: &str) -> Response {
    let body = ErrorBody::raw(code, kind, message, None);
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
        Json(body),
    )
        .into_response()
}

/// The gateway's own refusal with a stable code.
fn refusal(code: ErrorCode, message: &str) -> Response {
    error_body(
        code.http_status(),
        code.as_str(),
        code.error_type(),
        message,
    )
}

fn client_error(e: &ClientError) -> Response {
    let message = e.to_string();
    let code = |c: ErrorCode| (c.http_status(), c.as_str(), c.error_type());
    let (status, code, kind) = match e {
        ClientError::Refused {
            status, code: c, ..
        } => {
            let c = c.unwrap_or(ErrorCode::UpstreamFailed);
            (*status, c.as_str(), c.error_type())
        }
        ClientError::NoService(_) => code(ErrorCode::UnknownModel),
        ClientError::InvalidRequest(_) => code(ErrorCode::InvalidRequest),
        ClientError::Budget(_) => code(ErrorCode::InsufficientEscrow),
        ClientError::Unreachable { .. }
        | ClientError::MissingReceipt { .. }
        | ClientError::BadReceipt { .. } => code(ErrorCode::UpstreamFailed),
        ClientError::Book { .. } | ClientError::Chain(_) | ClientError::BadStatement { .. } => {
            code(ErrorCode::Internal)
        }
    };
    error_body(status, code, kind, &message)
}

fn key_error(refusal: &KeyRefusal) -> Response {
    match refusal {
        KeyRefusal::Limit { .. } => error_body(
            429,
            "spend_limit_exceeded",
            "insufficient_quota",
            &refusal.to_string(),
        ),
        _ => error_body(
            401,
            "unauthorized",
            "authentication_error",
            &refusal.to_string(),
        ),
    }
}
