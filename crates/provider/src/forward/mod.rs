//! One paid request's life after its body is read: admission, the trip
//! upstream (a plain answer here, a stream in `stream`), the answer's proof
//! of model, and its end.
//! [`Admitted`] is the one place a request ends: it is charged when an
//! answer was delivered, and released (free) on every other way out,
//! a client that hangs up included.

mod stream;

use std::{sync::Arc, time::Instant};

use axum::{
    body::Body,
    http::{HeaderMap, HeaderValue, StatusCode, Uri, header},
    response::Response,
};
use bytes::Bytes;
use serde::Deserialize;
use tracing::{Instrument, Span};
use zg_core::{
    B256, ErrorCode, OpenAiUsage, Quote, U256, Usage, headers as zh, verifiability::PROOF_ID_HEADER,
};

use crate::{
    admission::Admission,
    broker::{Broker, ServiceRuntime, Target},
    error::ApiError,
    pricing::InFlight,
    store::Issued,
    upstream::UpstreamResponse,
};

/// An admitted request, its worst case reserved. Ends exactly once: with
/// [`Admitted::charge`], with [`Admitted::release`], or, dropped without
/// either (the client left, the charge failed), released in the background.
pub(crate) struct Admitted {
    broker: Arc<Broker>,
    admission: Admission,
    service: Arc<ServiceRuntime>,
    /// What its prices are made of: the prices in force when it came, the
    /// quote it was sent under, the output it asked for.
    basis: PriceBasis,
    /// Counts it in the service's load while it lives.
    _load: InFlight,
    /// Where the request goes upstream.
    url: Uri,
    span: Span,
    ended: bool,
}

/// What an answer's prices come from.
struct PriceBasis {
    current: Quote,
    accepted: Option<Quote>,
    requested_output: u64,
}

/// Admits a request for `target` whose most it may cost is `worst` and
/// that asks for at most `requested_output` tokens per choice.
pub(crate) async fn admit(
    broker: &Arc<Broker>,
    headers: &HeaderMap,
    body: &[u8],
    target: Target,
    (worst, requested_output): (U256, u64),
) -> Result<Admitted, ApiError> {
    let Target { service, url } = target;
    let accepted = broker.accepted_quote(headers, &service)?;
    let current = broker.quote(&service);
    let admission = broker.admit(headers, body, &service, worst).await?;
    let span = tracing::info_span!(
        "request",
        user = %admission.voucher.user,
        provider = %broker.provider,
        request = %admission.id,
        service = %service.config.name,
    );
    Ok(Admitted {
        broker: broker.clone(),
        admission,
        _load: service.pricing.enter(),
        service,
        basis: PriceBasis {
            current,
            accepted,
            requested_output,
        },
        url,
        span,
        ended: false,
    })
}

impl Admitted {
    pub(crate) fn id(&self) -> &str {
        &self.admission.id
    }

    /// The span every log line of this request belongs in.
    pub(crate) fn span(&self) -> Span {
        self.span.clone()
    }

    /// Fetches the answer's proof of model (named by the upstream's
    /// `X-Engine-Proof-Id`, `proof_id`), stores the fee and the proof, and
    /// returns the signed receipt, which binds the proof's digest. Should
    /// the charge fail, the drop releases the request: no receipt, no fee.
    ///
    /// A service registered with a proof method whose answer has no proof
    /// to be had is released instead (free, no receipt, `None`): its client
    /// could not check the answer and would not pay it, and a receipt it
    /// refuses would put the two tallies out of step.
    async fn charge(
        mut self,
        usage: Usage,
        response_digest: B256,
        proof_id: Option<&str>,
    ) -> Result<Option<Issued>, ApiError> {
        let fetched = match proof_id {
            Some(id) => crate::proofs::fetch(&self.broker.http, &self.service, id)
                .await
                .map(Some),
            None => Ok(None),
        };
        let proof = match (fetched, self.service.verifiability.proof_method()) {
            (Ok(Some(proof)), _) => Some(proof),
            (Ok(None), None) => None,
            (Ok(None), Some(method)) => {
                let why = "the upstream named no proof (no X-Engine-Proof-Id header)";
                self.release_unproven(method, why).await;
                return Ok(None);
            }
            (Err(why), Some(method)) => {
                self.release_unproven(method, &why).await;
                return Ok(None);
            }
            (Err(why), None) => {
                tracing::warn!(%why, "the upstream's proof could not be fetched; the receipt binds none");
                None
            }
        };
        let basis = &self.basis;
        let prices = crate::pricing::applied(
            &basis.current,
            basis.accepted.as_ref(),
            usage.input_tokens,
            basis.requested_output,
        );
        let issued = self
            .broker
            .charge(
                &self.admission,
                &self.service,
                (usage, prices),
                response_digest,
                proof,
            )
            .await?;
        self.ended = true;
        Ok(Some(issued))
    }

    async fn release_unproven(self, method: &str, why: &str) {
        tracing::error!(
            method,
            why,
            "an answer of a proof service has no proof: it is free"
        );
        self.release(&format!("no {method} proof: {why}")).await;
    }

    /// The request got no answer: it costs nothing.
    async fn release(mut self, why: &str) {
        self.ended = true;
        self.broker.release(&self.admission, why).await;
    }

    fn failed(&self, e: impl std::fmt::Display) -> ApiError {
        ApiError::new(
            ErrorCode::UpstreamFailed,
            format!(
                "the model server of service {:?} failed: {e}; this request cost nothing, retry or pick another provider",
                self.service.config.name
            ),
        )
    }

    /// Sends the request upstream; a request that never gets an answer is
    /// released and reported as `upstream_failed`.
    async fn send(self, body: Bytes) -> Result<(Self, UpstreamResponse), ApiError> {
        let started = Instant::now();
        let sent = self
            .broker
            .http
            .post(&self.url, &self.service.headers, body)
            .await;
        match sent {
            Ok(response) => {
                crate::metrics::global().upstream_latency(started.elapsed());
                Ok((self, response))
            }
            Err(e) => {
                let error = if e.body_refused() {
                    too_large(&format!(
                        "it closed the connection before reading the whole body ({e})"
                    ))
                } else {
                    self.failed(&e)
                };
                self.release(&e.to_string()).await;
                Err(error)
            }
        }
    }
}

/// The model server would not take a body this large: the client's mistake.
fn too_large(what: &str) -> ApiError {
    ApiError::new(
        ErrorCode::RequestTooLarge,
        format!(
            "the model server refuses a body this large: {what}; send a smaller request, it cost nothing"
        ),
    )
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime left (the process is ending): the next start
            // releases what this run left admitted.
            return;
        };
        let broker = self.broker.clone();
        let admission = self.admission.clone();
        runtime.spawn(
            async move {
                broker
                    .release(
                        &admission,
                        "the request ended before its answer was delivered",
                    )
                    .await;
            }
            .instrument(self.span.clone()),
        );
    }
}

#[derive(Deserialize)]
struct WithUsage {
    usage: Option<OpenAiUsage>,
}

/// Sends a non-streaming request upstream and answers with its body and the
/// receipt: the fee from the upstream's `usage`, free if the upstream fails.
pub(crate) async fn plain(admitted: Admitted, body: Bytes) -> Result<Response, ApiError> {
    let (admitted, response) = admitted.send(body).await?;
    let status = response.status();
    let proof_id = response.header(PROOF_ID_HEADER).map(str::to_owned);
    let bytes = match response.bytes().await {
        Ok(b) => b,
        Err(e) => {
            let error = admitted.failed(&e);
            admitted.release(&e.to_string()).await;
            return Err(error);
        }
    };
    if !status.is_success() {
        admitted.release(&format!("status {status}")).await;
        return Err(upstream_refused(status, &bytes));
    }
    let usage = match serde_json::from_slice::<WithUsage>(&bytes) {
        Ok(WithUsage { usage: Some(u) }) => Usage::from(u),
        _ => {
            // Without the upstream's own counts there is nothing honest to bill.
            tracing::warn!("upstream answer carries no usage; answering free");
            Usage::default()
        }
    };
    let id = admitted.id().to_owned();
    let receipt = admitted
        .charge(usage, zg_core::keccak256(&bytes), proof_id.as_deref())
        .await?;
    let mut out = Response::new(Body::from(bytes));
    let headers = out.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(v) = receipt.and_then(|r| HeaderValue::from_str(&r.json).ok()) {
        headers.insert(zh::RECEIPT, v);
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        headers.insert(zh::REQUEST_ID, v);
    }
    Ok(out)
}

pub(crate) use stream::stream;

/// An upstream error answer: a 4xx is the request's fault (passed on as
/// invalid_request with the upstream's message, or request_too_large for a
/// body over the model server's limit), anything else upstream_failed.
fn upstream_refused(status: StatusCode, body: &[u8]) -> ApiError {
    // Read loosely: model servers differ in the rest of the error body.
    let message = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.pointer("/error/message")
                .and_then(|m| m.as_str())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned());
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        too_large(&format!("{status}: {message}"))
    } else if status.is_client_error() {
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
