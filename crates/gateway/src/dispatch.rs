//! One paid request's way through the market, apart from HTTP: read just
//! enough of the body (model, stream, max_tokens, the `zg` limits), rank the
//! providers that fit, hold the key's worst case, try providers in order
//! until one answers (failing over before the first byte, topping up escrow
//! once on `insufficient_escrow`), and close the hold at the receipt's fee.

use crate::{
    Gateway,
    keys::{Hold, KeyRefusal},
    limits,
};
use bytes::Bytes;
use serde_json::{Map, Value, json};
use std::{sync::Arc, time::Instant};
use zg_client::{Answer, ClientError, ServiceFilter, StreamAnswer, pay::BodyStream};
use zg_core::{Address, ErrorCode, Service, ServiceKind, U256};

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

/// Why a request was not served: the market's answer, or the API key's.
pub(crate) enum Failure {
    Client(ClientError),
    Key(KeyRefusal),
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        Self::Client(e)
    }
}

/// Serves one paid request: `header` reads the request's `X-ZG-*` limits,
/// `bearer` is its API key.
pub(crate) async fn dispatch<'h>(
    gw: &Arc<Gateway>,
    kind: &ServiceKind,
    path: &str,
    header: impl Fn(&'static str) -> Option<&'h str>,
    bearer: Option<&str>,
    body: Bytes,
) -> Result<Delivered, Failure> {
    let mut parsed = parse(body)?;
    let filter = limits::narrow(&gw.config.limits, header, parsed.limits.take())?;
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
        .ranking
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
        Ok(delivered) => Ok(delivered),
        Err((e, hold)) => {
            gw.keys.close(hold, U256::ZERO).await?;
            Err(e.into())
        }
    }
}

async fn candidates(
    gw: &Gateway,
    kind: &ServiceKind,
    model: &str,
    filter: &ServiceFilter,
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
    filter: &ServiceFilter,
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
) -> Result<Delivered, (ClientError, Hold)> {
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
                gw.ranking.success(provider, started.elapsed());
                return Ok(deliver(gw, provider, sent, hold).await);
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
                    gw.ranking.failure(provider);
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
    Stream(StreamAnswer),
}

/// An answer on its way back to the caller.
pub(crate) struct Delivered {
    pub(crate) provider: Address,
    pub(crate) status: u16,
    pub(crate) content_type: Option<String>,
    pub(crate) body: DeliveredBody,
}

pub(crate) enum DeliveredBody {
    /// The whole answer; its receipt is already checked.
    Whole {
        bytes: Bytes,
        /// The signed receipt, as the header the provider sent it in.
        receipt: Option<String>,
        fee: U256,
        /// "paid", or why the receipt was not paid.
        receipt_status: String,
    },
    /// Chunks as they come; the receipt is checked when the stream ends.
    Stream {
        chunks: BodyStream,
        request_id: String,
    },
}

/// Closes the key's hold at the fee the receipt shows (a streamed answer's
/// once its stream ends), and hands the answer to the HTTP edge.
async fn deliver(gw: &Arc<Gateway>, provider: Address, sent: Sent, hold: Hold) -> Delivered {
    match sent {
        Sent::Plain(answer) => {
            let Answer {
                status,
                content_type,
                body,
                receipt,
            } = *answer;
            let (fee, receipt, receipt_status) = match &receipt {
                Ok(paid) => (paid.fee, Some(paid.signed.to_header()), "paid".to_owned()),
                Err(e) => (U256::ZERO, None, receipt_problem(gw, provider, e)),
            };
            if let Err(e) = gw.keys.close(hold, fee).await {
                tracing::warn!(error = %e, "could not record the key's spending");
            }
            Delivered {
                provider,
                status,
                content_type,
                body: DeliveredBody::Whole {
                    bytes: body,
                    receipt,
                    fee,
                    receipt_status,
                },
            }
        }
        Sent::Stream(answer) => {
            let StreamAnswer {
                status,
                content_type,
                request_id,
                body,
                receipt,
            } = answer;
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
                if let Err(e) = task_gw.keys.close(hold, fee).await {
                    tracing::warn!(error = %e, "could not record the key's spending");
                }
            });
            Delivered {
                provider,
                status,
                content_type,
                body: DeliveredBody::Stream {
                    chunks: body,
                    request_id,
                },
            }
        }
    }
}

/// Logs a receipt that was not paid and keeps the provider from lying twice.
fn receipt_problem(gw: &Gateway, provider: Address, e: &ClientError) -> String {
    tracing::warn!(%provider, error = %e, "answer delivered but its receipt was not paid");
    match e {
        ClientError::BadReceipt { fault, .. } => {
            gw.ranking.ban(provider, fault.to_string());
            format!("rejected: {fault}")
        }
        other => {
            gw.ranking.failure(provider);
            format!("unpaid: {other}")
        }
    }
}
