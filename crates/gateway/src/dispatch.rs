//! One paid request's way through the market, apart from HTTP: read just
//! enough of the body (model and `models` fallbacks, stream, max tokens and
//! choices, the capabilities it needs, the `zg` limits and the `provider`
//! routing object, both stripped), rank the providers that fit per model,
//! hold the key's worst case, try them in order until one answers (failing
//! over before the first byte, topping up escrow once on
//! `insufficient_escrow`), and close the hold at the receipt's fee, which
//! the answer's `usage.cost` shows; a paid answer is offered to the auditor
//! (`X-ZG-Audit: always` makes it audited whatever the sample).

use crate::{
    Gateway, cost,
    keys::{Answered, Hold, KeyRefusal},
    limits,
    ranking::Quoted,
    routing::ProviderPrefs,
};
use bytes::Bytes;
use serde_json::{Map, Value, json};
use std::{sync::Arc, time::Instant};
use zg_client::{Answer, ClientError, PaidReceipt, ServiceFilter, StreamAnswer, pay::BodyStream};
use zg_core::{Address, ErrorCode, Service, ServiceKind, U256, capability, wire::routes};

/// A paid route of the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Chat,
    /// The legacy text endpoint, served by chat services that list it.
    Completions,
    Embeddings,
}

impl Endpoint {
    fn kind(self) -> ServiceKind {
        match self {
            Self::Chat | Self::Completions => ServiceKind::Chat,
            Self::Embeddings => ServiceKind::Embeddings,
        }
    }

    fn path(self) -> &'static str {
        match self {
            Self::Chat => routes::CHAT_COMPLETIONS,
            Self::Completions => routes::COMPLETIONS,
            Self::Embeddings => routes::EMBEDDINGS,
        }
    }
}

/// What the gateway reads from a request body.
struct Parsed {
    /// The model asked for, then the `models` fallbacks, each once.
    models: Vec<String>,
    stream: bool,
    max_tokens: Option<u64>,
    /// Sequences the answer may hold: `n` times the prompts of a batch.
    sequences: u64,
    limits: Option<limits::BodyLimits>,
    prefs: ProviderPrefs,
    /// Capabilities a service needs to serve the request as asked.
    needed: Vec<&'static str>,
    /// The body as received.
    body: Bytes,
    /// The body without the gateway's own fields.
    object: Map<String, Value>,
    /// Whether `object` (with its first model) differs from `body`.
    changed: bool,
}

impl Parsed {
    /// The body to send to a service of `model`.
    fn body_for(&self, model: &str) -> Bytes {
        if !self.changed && model == self.models[0] {
            return self.body.clone();
        }
        let mut object = self.object.clone();
        object.insert("model".into(), Value::from(model));
        Bytes::from(serde_json::to_vec(&object).unwrap_or_default())
    }
}

fn parse(body: Bytes, endpoint: Endpoint) -> Result<Parsed, ClientError> {
    let invalid = |text: String| ClientError::InvalidRequest(text);
    let mut object: Map<String, Value> = serde_json::from_slice(&body)
        .map_err(|e| invalid(format!("the body is not a JSON object: {e}")))?;
    let mut changed = false;
    let mut take = |key: &str| {
        let value = object.remove(key);
        changed |= value.is_some();
        value
    };
    let fallbacks: Vec<String> = take("models")
        .map(|v| {
            serde_json::from_value(v)
                .map_err(|e| invalid(format!("\"models\" must be a list of model names: {e}")))
        })
        .transpose()?
        .unwrap_or_default();
    let prefs = take("provider")
        .map(ProviderPrefs::parse)
        .transpose()?
        .unwrap_or_default();
    let limits = take("zg")
        .map(|zg| serde_json::from_value(zg).map_err(|e| invalid(format!("\"zg\" limits: {e}"))))
        .transpose()?;
    let model = object
        .get("model")
        .and_then(Value::as_str)
        .map(str::to_owned);
    changed |= model.is_none();
    let mut models: Vec<String> = Vec::new();
    for m in model.into_iter().chain(fallbacks) {
        if !models.contains(&m) {
            models.push(m);
        }
    }
    if models.is_empty() {
        return Err(invalid(
            "the body has no \"model\" (nor \"models\"): name one from /v1/models".into(),
        ));
    }
    let stream = object
        .get("stream")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let max_tokens = ["max_completion_tokens", "max_tokens"]
        .iter()
        .find_map(|k| object.get(*k).and_then(Value::as_u64));
    let n = object.get("n").and_then(Value::as_u64).unwrap_or(1).max(1);
    let prompts = match object.get("prompt") {
        Some(Value::Array(batch))
            if endpoint == Endpoint::Completions
                && batch.iter().all(|p| p.is_string() || p.is_array()) =>
        {
            batch.len().max(1) as u64
        }
        _ => 1,
    };
    let needed = capability::needed(
        &object,
        endpoint == Endpoint::Completions,
        prefs.require_parameters,
    );
    Ok(Parsed {
        models,
        stream,
        max_tokens,
        sequences: n.saturating_mul(prompts),
        limits,
        prefs,
        needed,
        body,
        object,
        changed,
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
/// `bearer` is its API key, `audit` says the request asked for its
/// answer's audit.
pub(crate) async fn dispatch<'h>(
    gw: &Arc<Gateway>,
    endpoint: Endpoint,
    header: impl Fn(&'static str) -> Option<&'h str>,
    bearer: Option<&str>,
    body: Bytes,
    audit: bool,
) -> Result<Delivered, Failure> {
    let mut parsed = parse(body, endpoint)?;
    let mut sources = limits::from_request(header, parsed.limits.take())?;
    sources.push(parsed.prefs.narrowing()?);
    let filter = limits::narrow(&gw.config.limits, sources)?;
    let output_tokens = if endpoint == Endpoint::Embeddings {
        0
    } else {
        parsed.max_tokens.unwrap_or(gw.config.default_max_tokens)
    };
    // A key with a limit needs a bound on the answer: inject max_tokens if absent.
    if endpoint != Endpoint::Embeddings
        && parsed.max_tokens.is_none()
        && gw.keys.remaining(bearer).await?.is_some()
    {
        parsed
            .object
            .insert("max_tokens".into(), json!(output_tokens));
        parsed.changed = true;
    }
    let plan = plan(gw, endpoint, &parsed, &filter, output_tokens).await?;
    let reserved = output_tokens.saturating_mul(parsed.sequences);
    let worst = plan
        .iter()
        .map(|t| t.service.prices.worst_case(t.body.len(), reserved))
        .max()
        .unwrap_or_default();
    let hold = gw.keys.hold(bearer, worst).await?.map_err(Failure::Key)?;
    match attempt(gw, endpoint.path(), &plan, parsed.stream, hold, audit).await {
        Ok(delivered) => Ok(delivered),
        Err((e, hold)) => {
            gw.keys.close(hold, U256::ZERO).await?;
            Err(e.into())
        }
    }
}

/// One provider to try, with the body for its model.
struct Try {
    service: Service,
    body: Bytes,
}

/// The providers to try, in order: per model (the one asked for, then the
/// fallbacks), those within the limits that list the needed capabilities,
/// ranked and arranged as the routing object says.
async fn plan(
    gw: &Gateway,
    endpoint: Endpoint,
    parsed: &Parsed,
    filter: &ServiceFilter,
    output_tokens: u64,
) -> Result<Vec<Try>, ClientError> {
    let input_tokens = estimated_tokens(parsed.body.len());
    let mut plan = Vec::new();
    let mut first_refusal = None;
    for model in &parsed.models {
        let listed = match listed(gw, &endpoint.kind(), model, filter).await {
            Ok(listed) => listed,
            Err(e) => {
                first_refusal.get_or_insert(e);
                continue;
            }
        };
        let able = gw
            .capabilities
            .having(gw.payer.http(), listed, &parsed.needed)
            .await;
        if able.is_empty() {
            first_refusal.get_or_insert(ClientError::NoService(format!(
                "no provider of {model:?} within this request's limits supports {}: their brokers' /v1/models list the capabilities",
                parsed.needed.join(", ")
            )));
            continue;
        }
        let body = parsed.body_for(model);
        let quoted = quoted(gw, &able, &body, output_tokens).await;
        let ranked = gw.ranking.rank(
            able,
            &quoted,
            (input_tokens, output_tokens.min(256)),
            parsed.prefs.sort,
        );
        if ranked.is_empty() {
            first_refusal.get_or_insert(ClientError::NoService(format!(
                "every provider of {model:?} was caught with a bad receipt this session"
            )));
            continue;
        }
        plan.extend(
            parsed
                .prefs
                .arrange(ranked)
                .into_iter()
                .take(gw.config.max_attempts.max(1))
                .map(|service| Try {
                    service,
                    body: body.clone(),
                }),
        );
    }
    if plan.is_empty() {
        return Err(first_refusal
            .unwrap_or_else(|| ClientError::NoService("no provider left to try".into())));
    }
    Ok(plan)
}

/// The quoted prices of each candidate for `body` asking for
/// `output_tokens`, taken (or held) now; a candidate whose broker serves no
/// quote, or can't be reached, is left out (ranked at its ceilings; the
/// request itself finds out). Where the quote prices cached prompt tokens
/// lower, the part of `body` that repeats the last request the provider
/// answered is expected from its cache: the input price is the blend.
async fn quoted(gw: &Gateway, candidates: &[Service], body: &[u8], output_tokens: u64) -> Quoted {
    let input_tokens = estimated_tokens(body.len());
    let taken = futures::future::join_all(candidates.iter().map(|s| gw.payer.quote(s))).await;
    candidates
        .iter()
        .zip(taken)
        .filter_map(|(s, taken)| {
            let q = taken.ok()??.quote;
            let mut prices = q.prices_for(input_tokens, q.requested_output(Some(output_tokens)))?;
            if prices.cached < prices.input {
                let shared = gw.ranking.shared_prefix(s.provider, body) as u64 / 4;
                let (all, cached) = (
                    U256::from(input_tokens),
                    U256::from(shared.min(input_tokens)),
                );
                prices.input = (prices.input.saturating_mul(all - cached)
                    + prices.cached.saturating_mul(cached))
                    / all;
            }
            Some(((s.provider, s.id()), prices))
        })
        .collect()
}

/// Prompt tokens a body of `bytes` bytes holds, about: a token is about
/// four bytes of English text.
fn estimated_tokens(bytes: usize) -> u64 {
    bytes as u64 / 4 + 1
}

fn candidates(
    services: &[Service],
    kind: &ServiceKind,
    model: &str,
    filter: &ServiceFilter,
) -> Vec<Service> {
    services
        .iter()
        .filter(|s| s.model == model && s.kind == kind.as_str() && filter.matches(s))
        .cloned()
        .collect()
}

/// The services of `model` within the limits; when none, reads the registry
/// again (a provider may have just listed), and if still none, says whether
/// the model is unknown or the limits exclude it.
async fn listed(
    gw: &Gateway,
    kind: &ServiceKind,
    model: &str,
    filter: &ServiceFilter,
) -> Result<Vec<Service>, ClientError> {
    let found = candidates(&gw.services(false).await?, kind, model, filter);
    if !found.is_empty() {
        return Ok(found);
    }
    let services = gw.services(true).await?;
    let found = candidates(&services, kind, model, filter);
    if !found.is_empty() {
        return Ok(found);
    }
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

/// Tries the plan in order until one answers; fails over on provider
/// faults before the first byte, tops up escrow once on `insufficient_escrow`.
async fn attempt(
    gw: &Arc<Gateway>,
    path: &str,
    plan: &[Try],
    stream: bool,
    hold: Hold,
    audit: bool,
) -> Result<Delivered, (ClientError, Hold)> {
    let mut last = None;
    let mut topped_up = false;
    let mut i = 0;
    while let Some(Try { service, body }) = plan.get(i) {
        let provider = service.provider;
        let started = Instant::now();
        let result = if stream {
            gw.payer
                .send_stream(service, path, body.clone())
                .await
                .map(Sent::Stream)
        } else {
            gw.payer
                .send(service, path, body.clone())
                .await
                .map(|a| Sent::Plain(Box::new(a)))
        };
        match result {
            Ok(sent) => {
                gw.ranking.success(provider, started.elapsed());
                gw.ranking.answered(provider, body.clone());
                return Ok(deliver(gw, provider, sent, hold, started, audit).await);
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
/// once its stream ends), records the provider's throughput, offers the
/// answer to the auditor, and hands the answer to the HTTP edge with its
/// cost in `usage`.
async fn deliver(
    gw: &Arc<Gateway>,
    provider: Address,
    sent: Sent,
    hold: Hold,
    started: Instant,
    audit: bool,
) -> Delivered {
    match sent {
        Sent::Plain(answer) => {
            let Answer {
                status,
                content_type,
                request_id,
                body,
                receipt,
            } = *answer;
            let ended = Ended {
                provider,
                hold,
                started,
                audit,
                request_id: request_id.as_deref(),
            };
            let (fee, receipt_status) = settle(gw, &receipt, ended).await;
            let body = request_id
                .as_deref()
                .and_then(|id| cost::priced(&body, fee, id))
                .unwrap_or(body);
            let receipt = receipt.ok().map(|paid| paid.signed.to_header());
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
                mut body,
                receipt,
            } = answer;
            let (chunks, tx) = BodyStream::channel();
            let task_gw = gw.clone();
            let id = request_id.clone();
            tokio::spawn(async move {
                use futures::StreamExt;
                let mut priced = cost::StreamCost::default();
                // A reader that left does not stop the reading: the receipt covers the whole body.
                while let Some(chunk) = body.next().await {
                    let pass = chunk.map(|c| priced.push(&c));
                    if !matches!(&pass, Ok(b) if b.is_empty()) {
                        let _ = tx.send(pass).await;
                    }
                }
                let receipt = receipt.await.unwrap_or_else(|_| {
                    Err(ClientError::NoService("the receipt check stopped".into()))
                });
                let ended = Ended {
                    provider,
                    hold,
                    started,
                    audit,
                    request_id: Some(&id),
                };
                let (fee, _) = settle(&task_gw, &receipt, ended).await;
                let end = priced.finish(receipt.is_ok().then_some((fee, id.as_str())));
                if !end.is_empty() {
                    let _ = tx.send(Ok(end)).await;
                }
            });
            Delivered {
                provider,
                status,
                content_type,
                body: DeliveredBody::Stream { chunks, request_id },
            }
        }
    }
}

/// What [`settle`] needs to know about the request whose answer ended.
struct Ended<'a> {
    provider: Address,
    hold: Hold,
    started: Instant,
    /// The request asked for its answer's audit.
    audit: bool,
    /// The broker's id of the request.
    request_id: Option<&'a str>,
}

/// Closes the key's hold at the receipt's fee (zero when it was not paid),
/// records the provider's throughput, offers a paid answer to the auditor
/// (which never waits; `audit`: whatever the sample), notes which key asked
/// (for the web page) and tells open pages; returns the fee and "paid" or
/// why the receipt was not paid.
async fn settle(
    gw: &Gateway,
    receipt: &Result<PaidReceipt, ClientError>,
    ended: Ended<'_>,
) -> (U256, String) {
    let Ended {
        provider,
        hold,
        started,
        audit,
        request_id,
    } = ended;
    let (fee, verdict) = match receipt {
        Ok(paid) => {
            let tokens = u64::try_from(paid.signed.receipt.output_tokens).unwrap_or(u64::MAX);
            gw.ranking.throughput(provider, tokens, started.elapsed());
            gw.audits.offer(paid, audit);
            (paid.fee, "paid".to_owned())
        }
        Err(e) => (U256::ZERO, receipt_problem(gw, provider, e)),
    };
    let key_id = hold.key_id.clone();
    if let Err(e) = gw.keys.close(hold, fee).await {
        tracing::warn!(error = %e, "could not record the key's spending");
    }
    let answered = Answered {
        request_id: request_id.map(str::to_owned),
        receipt: receipt.as_ref().ok().map(|paid| paid.id),
        key_id,
        verdict: verdict.clone(),
        fee,
    };
    if let Err(e) = gw.keys.note(answered).await {
        tracing::warn!(error = %e, "could not note the answer for the web page");
    }
    gw.live.bump();
    (fee, verdict)
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
