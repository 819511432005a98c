//! The gateway's HTTP routes: `/v1/models`, `/v1/chat/completions` (plain
//! and streamed), `/v1/embeddings`, and `/zg/providers` (routing standings).
//! A paid route parses just enough of the body (model, stream, max_tokens,
//! the `zg` limits), ranks the providers, holds the key's worst case, and
//! tries providers in order until one answers.

use super::{Gateway, keys::Hold, keys::KeyRefusal, limits};
use crate::{ClientError, pay::Answer};
use axum::{
    Json, Router,
    body::Body,
    extract::{DefaultBodyLimit, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use bytes::Bytes;
use serde_json::{Map, Value, json};
use std::{collections::BTreeMap, sync::Arc, time::Instant};
use zg_core::{ErrorBody, ErrorCode, Service, ServiceKind, U256, format_amount, wire::routes};

const BODY_LIMIT: usize = 8 * 1024 * 1024;

pub fn router(gateway: Arc<Gateway>) -> Router {
    Router::new()
        .route(routes::MODELS, get(models))
        .route(routes::CHAT_COMPLETIONS, post(chat))
        .route(routes::EMBEDDINGS, post(embeddings))
        .route("/zg/providers", get(providers))
        .route("/health", get(|| async { "ok" }))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::map_response(|r: Response| async move {
            zg_core::wire::http::json_errors(r).await.0
        }))
        .with_state(gateway)
}

async fn chat(State(gw): State<Arc<Gateway>>, headers: HeaderMap, body: Bytes) -> Response {
    proxy(
        &gw,
        &ServiceKind::Chat,
        routes::CHAT_COMPLETIONS,
        &headers,
        body,
    )
    .await
}

async fn embeddings(State(gw): State<Arc<Gateway>>, headers: HeaderMap, body: Bytes) -> Response {
    proxy(
        &gw,
        &ServiceKind::Embeddings,
        routes::EMBEDDINGS,
        &headers,
        body,
    )
    .await
}

async fn providers(State(gw): State<Arc<Gateway>>) -> Response {
    Json(gw.routing.standings()).into_response()
}

/// Marketplace models: one entry per model, with how many providers serve
/// it and the lowest listed prices (decimal 0G per token).
async fn models(State(gw): State<Arc<Gateway>>) -> Response {
    let services = match gw.services(false).await {
        Ok(s) => s,
        Err(e) => return client_error(&e),
    };
    let mut by_model: BTreeMap<&str, Vec<&Service>> = BTreeMap::new();
    for s in services.iter().filter(|s| gw.config.limits.matches(s)) {
        by_model.entry(&s.model).or_default().push(s);
    }
    let data: Vec<Value> = by_model
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
    Json(json!({ "object": "list", "data": data })).into_response()
}

/// What the gateway reads from a request body.
struct Parsed {
    model: String,
    stream: bool,
    max_tokens: Option<u64>,
    limits: Option<limits::BodyLimits>,
    /// The body to send: the original bytes unless the gateway changed it.
    body: Bytes,
    object: Option<Map<String, Value>>,
}

fn parse(body: Bytes) -> Result<Parsed, ClientError> {
    let mut object: Map<String, Value> = serde_json::from_slice(&body)
        .map_err(|e| ClientError::InvalidRequest(format!("the body is not a JSON object: {e}")))?;
    let model = object
        .get("model")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            ClientError::InvalidRequest(
                "the body has no \"model\": name one from /v1/models".into(),
            )
        })?
        .to_owned();
    let stream = object
        .get("stream")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let max_tokens = ["max_tokens", "max_completion_tokens"]
        .iter()
        .find_map(|k| object.get(*k).and_then(Value::as_u64));
    let (limits, object) = match object.remove("zg") {
        Some(zg) => {
            let limits = serde_json::from_value(zg)
                .map_err(|e| ClientError::InvalidRequest(format!("\"zg\" limits: {e}")))?;
            (Some(limits), Some(object))
        }
        None => (None, None),
    };
    Ok(Parsed {
        model,
        stream,
        max_tokens,
        limits,
        body,
        object,
    })
}

async fn proxy(
    gw: &Arc<Gateway>,
    kind: &ServiceKind,
    path: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let started = Instant::now();
    match route(gw, kind, path, headers, bearer, body).await {
        Ok(response) => response,
        Err(Failure::Client(e)) => {
            tracing::info!(error = %e, elapsed_ms = started.elapsed().as_millis() as u64, "request failed");
            client_error(&e)
        }
        Err(Failure::Key(refusal)) => key_error(&refusal),
    }
}

enum Failure {
    Client(ClientError),
    Key(KeyRefusal),
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        Self::Client(e)
    }
}

async fn route(
    gw: &Arc<Gateway>,
    kind: &ServiceKind,
    path: &str,
    headers: &HeaderMap,
    bearer: Option<&str>,
    body: Bytes,
) -> Result<Response, Failure> {
    let mut parsed = parse(body)?;
    let filter = limits::narrow(
        &gw.config.limits,
        |name| headers.get(name).and_then(|v| v.to_str().ok()),
        parsed.limits.take(),
    )?;
    let mut candidates = candidates(gw, kind, &parsed.model, &filter, false).await?;
    if candidates.is_empty() {
        candidates = candidates_or_explain(gw, kind, &parsed.model, &filter).await?;
    }
    let input_tokens = parsed.body.len() as u64;
    let output_tokens = if *kind == ServiceKind::Embeddings {
        0
    } else {
        parsed.max_tokens.unwrap_or(gw.config.default_max_tokens)
    };
    let ranked = gw
        .routing
        .rank(candidates, input_tokens / 4 + 1, output_tokens.min(256));
    if ranked.is_empty() {
        return Err(ClientError::NoService(format!(
            "every provider of {:?} was caught with a bad receipt this session",
            parsed.model
        ))
        .into());
    }
    // A key with a limit needs a bound on the answer: inject max_tokens if absent.
    if *kind != ServiceKind::Embeddings
        && parsed.max_tokens.is_none()
        && gw.keys.remaining(bearer).await?.is_some()
    {
        let object = parsed
            .object
            .get_or_insert_with(|| serde_json::from_slice(&parsed.body).unwrap_or_default());
        object.insert("max_tokens".into(), json!(output_tokens));
    }
    if let Some(object) = parsed.object.take() {
        parsed.body = Bytes::from(serde_json::to_vec(&object).unwrap_or_default());
    }
    let worst = ranked
        .iter()
        .map(|s| s.prices.worst_case(parsed.body.len(), output_tokens))
        .max()
        .unwrap_or_default();
    let hold = gw.keys.hold(bearer, worst).await?.map_err(Failure::Key)?;
    match attempt(gw, path, &ranked, &parsed, hold).await {
        Ok(response) => Ok(response),
        Err((e, hold)) => {
            gw.keys.settle(hold, U256::ZERO).await?;
            Err(e.into())
        }
    }
}

async fn candidates(
    gw: &Gateway,
    kind: &ServiceKind,
    model: &str,
    filter: &crate::ServiceFilter,
    force: bool,
) -> Result<Vec<Service>, ClientError> {
    Ok(gw
        .services(force)
        .await?
        .iter()
        .filter(|s| s.model == model && s.kind == kind.as_str() && filter.matches(s))
        .cloned()
        .collect())
}

/// Reads the registry again (a provider may have just listed); if still
/// nothing fits, says whether the model is unknown or the limits exclude it.
async fn candidates_or_explain(
    gw: &Gateway,
    kind: &ServiceKind,
    model: &str,
    filter: &crate::ServiceFilter,
) -> Result<Vec<Service>, ClientError> {
    let found = candidates(gw, kind, model, filter, true).await?;
    if !found.is_empty() {
        return Ok(found);
    }
    let services = gw.services(false).await?;
    let listed = services
        .iter()
        .filter(|s| s.model == model && s.kind == kind.as_str())
        .count();
    if listed == 0 {
        let mut models: Vec<&str> = services
            .iter()
            .filter(|s| s.kind == kind.as_str())
            .map(|s| s.model.as_str())
            .collect();
        models.sort_unstable();
        models.dedup();
        return Err(ClientError::NoService(format!(
            "no provider lists {kind} model {model:?}; listed: {models:?}"
        )));
    }
    Err(ClientError::NoService(format!(
        "{listed} provider(s) list {model:?} but none within this request's limits (max price, only/ignore providers, verifiability)"
    )))
}

/// Tries `ranked` in order until one answers; fails over on provider faults
/// before the first byte, tops up escrow once on `insufficient_escrow`.
async fn attempt(
    gw: &Arc<Gateway>,
    path: &str,
    ranked: &[Service],
    parsed: &Parsed,
    hold: Hold,
) -> Result<Response, (ClientError, Hold)> {
    let mut last = None;
    let mut topped_up = false;
    let mut i = 0;
    while i < ranked.len().min(gw.config.max_attempts.max(1)) {
        let service = &ranked[i];
        let provider = service.provider;
        let started = Instant::now();
        let result = if parsed.stream {
            gw.payer
                .send_stream(service, path, parsed.body.clone())
                .await
                .map(Sent::Stream)
        } else {
            gw.payer
                .send(service, path, parsed.body.clone())
                .await
                .map(|a| Sent::Plain(Box::new(a)))
        };
        match result {
            Ok(sent) => {
                gw.routing.success(provider, started.elapsed());
                return Ok(respond(gw, service, sent, hold).await);
            }
            Err(ClientError::Refused {
                code: Some(ErrorCode::InsufficientEscrow),
                ..
            }) if gw.topup.enabled() && !topped_up => {
                topped_up = true;
                match gw.topup.top_up(&gw.chain, provider).await {
                    Ok(()) => continue,
                    Err(e) => {
                        last = Some(e);
                        i += 1;
                    }
                }
            }
            Err(e) if e.is_provider_fault() => {
                tracing::warn!(%provider, error = %e, "provider failed before the first byte; trying the next");
                let theirs = match &e {
                    ClientError::Refused { status, .. } => *status >= 500,
                    _ => true,
                };
                if theirs {
                    gw.routing.failure(provider);
                }
                last = Some(e);
                i += 1;
                topped_up = false;
            }
            Err(e) => return Err((e, hold)),
        }
    }
    Err((
        last.unwrap_or_else(|| ClientError::NoService("no provider left to try".into())),
        hold,
    ))
}

enum Sent {
    Plain(Box<Answer>),
    Stream(crate::StreamAnswer),
}

async fn respond(gw: &Arc<Gateway>, service: &Service, sent: Sent, hold: Hold) -> Response {
    let provider = service.provider;
    let mut response = match sent {
        Sent::Plain(answer) => {
            let mut status_text = "paid".to_owned();
            let mut fee = U256::ZERO;
            let mut receipt_header = None;
            match &answer.receipt {
                Ok(paid) => {
                    fee = paid.fee;
                    receipt_header = Some(paid.signed.to_header());
                }
                Err(e) => {
                    status_text = receipt_problem(gw, provider, e);
                }
            }
            if let Err(e) = gw.keys.settle(hold, fee).await {
                tracing::warn!(error = %e, "could not record the key's spending");
            }
            let answer = *answer;
            let mut response = Response::new(Body::from(answer.body));
            *response.status_mut() = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
            let h = response.headers_mut();
            if let Some(ct) = answer
                .content_type
                .and_then(|c| HeaderValue::from_str(&c).ok())
            {
                h.insert(header::CONTENT_TYPE, ct);
            }
            if let Some(value) = receipt_header.and_then(|r| HeaderValue::from_str(&r).ok()) {
                h.insert(zg_core::headers::RECEIPT, value);
            }
            if let Ok(value) = HeaderValue::from_str(&fee.to_string()) {
                h.insert("x-zg-fee", value);
            }
            h.insert("x-zg-receipt-status", header_text(&status_text));
            response
        }
        Sent::Stream(answer) => {
            let receipt = answer.receipt;
            let task_gw = gw.clone();
            tokio::spawn(async move {
                let fee = match receipt.await {
                    Ok(Ok(paid)) => paid.fee,
                    Ok(Err(e)) => {
                        receipt_problem(&task_gw, provider, &e);
                        U256::ZERO
                    }
                    Err(_) => U256::ZERO,
                };
                if let Err(e) = task_gw.keys.settle(hold, fee).await {
                    tracing::warn!(error = %e, "could not record the key's spending");
                }
            });
            let mut response = Response::new(Body::from_stream(answer.body));
            *response.status_mut() = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
            let h = response.headers_mut();
            if let Some(ct) = answer
                .content_type
                .and_then(|c| HeaderValue::from_str(&c).ok())
            {
                h.insert(header::CONTENT_TYPE, ct);
            }
            h.insert(
                zg_core::headers::REQUEST_ID,
                header_text(&answer.request_id),
            );
            response
        }
    };
    response
        .headers_mut()
        .insert("x-zg-provider", header_text(&provider.to_string()));
    response
}

/// Logs a receipt that was not paid and keeps the provider from lying twice.
fn receipt_problem(gw: &Gateway, provider: zg_core::Address, e: &ClientError) -> String {
    tracing::warn!(%provider, error = %e, "answer delivered but its receipt was not paid");
    match e {
        ClientError::BadReceipt { fault, .. } => {
            gw.routing.ban(provider, fault.to_string());
            format!("rejected: {fault}")
        }
        other => {
            gw.routing.failure(provider);
            format!("unpaid: {other}")
        }
    }
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
